/* Asking the router about itself: its $sb.* names over a test peer, and the
 * MessagePack answers read with msgpack-c (not the router's reader). */
#ifndef SB_TEST_ADMIN_H
#define SB_TEST_ADMIN_H

#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "support/peer.h"

/* The value of key k in MessagePack map o, or NULL. */
const msgpack_object *map_get(const msgpack_object *o, const char *k);
/* o is the string s. */
int str_is(const msgpack_object *o, const char *s);
/* The element of array o whose key k is the string v, or NULL. */
const msgpack_object *find_by(const msgpack_object *o, const char *k, const char *v);

/* Requests the router's own name (with a payload, or nil) and decodes the
 * answer, which must be an "ok" REPLY, into u (the caller destroys it). */
msgpack_object ask_router(struct peer *p, const char *name, const void *payload, size_t len,
			  msgpack_unpacked *u);
/* One counter of $sb.stats, as peer p reads it; it must be there. */
uint64_t stat_of(struct peer *p, const char *key);

#endif
