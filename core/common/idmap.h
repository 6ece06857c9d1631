/* A u64 -> u64 hash map, open addressing with backward-shift deletion: the
 * router's requests by (connection, requester's id) for a cancel, requests
 * in flight per handler, connections per address and the peer replica's
 * indexes; the client library's requests, calls and senders. */
#ifndef SB_CORE_IDMAP_H
#define SB_CORE_IDMAP_H

#include <stdint.h>

struct sb__idmap {
	struct sb__idslot *slots; /* power-of-two array; key 0 marks an empty slot */
	uint32_t mask;            /* slots - 1 */
	uint32_t count;           /* live keys */
};

void sb__idmap_init(struct sb__idmap *m);
void sb__idmap_destroy(struct sb__idmap *m);

/** Insert or replace. Key 0 is not allowed. @return 0 or SB_ENOMEM */
int sb__idmap_put(struct sb__idmap *m, uint64_t key, uint64_t val);

/** Insert unless the key is there: then leave it and set *old to its value.
 *  One probe either way. @return 0 inserted, 1 present, or SB_ENOMEM */
int sb__idmap_put_new(struct sb__idmap *m, uint64_t key, uint64_t val, uint64_t *old);

/** Adds delta to key's value (absent: 0), in one probe. @return the new
 *  value; 0 (and nothing added) if the map could not grow */
uint64_t sb__idmap_add(struct sb__idmap *m, uint64_t key, int64_t delta);

/** The value, or 0 if absent. */
uint64_t sb__idmap_get(const struct sb__idmap *m, uint64_t key);

/** Remove; no-op if absent. */
void sb__idmap_del(struct sb__idmap *m, uint64_t key);

/** Mixes two ids into one key (never 0) for maps keyed by a pair. */
uint64_t sb__idmap_key(uint64_t a, uint64_t b);

#endif
