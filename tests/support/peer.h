/* A blocking test peer that speaks the wire protocol through the codec: what
 * the router tests use to play clients and services over real sockets. */
#ifndef SB_TEST_PEER_H
#define SB_TEST_PEER_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <switchboard/proto.h>

#include "support/testlib.h"

struct peer {
	int fd;
	struct sb_splitter *sp;
	uint8_t in[65536];          /* bytes read but not yet split */
	const uint8_t *next;        /* first unsplit byte in `in` */
	size_t left;                /* unsplit bytes */
	uint8_t frame[1 << 21];     /* the last frame received */
	struct sb_msg m;            /* the last message received (views into frame) */
	uint32_t peer_id;           /* from WELCOME */
	char name[SB_PEER_MAX + 1]; /* from WELCOME */
	unsigned shard;             /* from WELCOME's payload */
	uint8_t resume[16];         /* ...and its resume token, if has_resume */
	int has_resume;
	int see_identity;    /* return identity events (PRESENCE 4) too; by default they
				are counted and skipped, as most tests are not about them */
	unsigned identities; /* identity events skipped */
};

static inline struct sb_view v_str(const char *s)
{
	struct sb_view v = {(const uint8_t *)s, (uint32_t)strlen(s)};
	return v;
}

static inline int v_is(struct sb_view v, const char *s)
{
	return v.ptr != NULL && v.len == strlen(s) && memcmp(v.ptr, s, v.len) == 0;
}

/* A connection to 127.0.0.1:port, nothing said yet. */
struct peer *peer_dial(uint16_t port);
/* The same from a given loopback address (127.0.0.0/8): limits and
 * failures are counted per address. */
struct peer *peer_dial_from(const char *src, uint16_t port);
void peer_close(struct peer *p); /* NULL is fine */

void peer_raw(struct peer *p, const void *b, size_t n); /* every byte, blocking */
void peer_send(struct peer *p, const struct sb_msg *m);

/* Next message within timeout_ms: 1, or 0 on close, -1 on timeout/error. */
int peer_recv_within(struct peer *p, int timeout_ms);
/* The next message, which must be of the given kind (5 s at most). */
struct sb_msg *peer_expect(struct peer *p, unsigned kind);
/* The next message that is not a presence event (a watcher hears them
 * between its replies), which must be of the given kind; each within
 * timeout_ms. */
struct sb_msg *peer_expect_past_presence(struct peer *p, unsigned kind, int timeout_ms);
/* Nothing arrives within ms (the router stays silent). */
void peer_expect_silence(struct peer *p, int ms);

/* Dials, says HELLO as name (NULL: let the router pick) and role, and
 * reads the WELCOME: peer_id, name and shard are filled in. */
struct peer *peer_hello(uint16_t port, const char *name, const char *role);
/* peer_hello until the kernel puts the connection on the given shard
 * (200 tries), named base-N (base NULL: the router picks the names). */
struct peer *peer_hello_on(uint16_t port, const char *base, const char *role, unsigned shard);
/* REGISTER name (NULL: the catch-all) with id, and its ACK. */
void peer_register(struct peer *p, const char *name, uint64_t id);
void peer_request(struct peer *p, const char *name, uint64_t id, uint32_t timeout,
		  const void *payload, size_t len);
void peer_reply(struct peer *p, uint64_t id, const char *outcome, uint8_t flags,
		const void *payload, size_t len);

/* A sender without the test peer's 2 MiB of buffers, for tests that need
 * a thousand of them: a socket that said HELLO and read its WELCOME. */
struct lite {
	int fd;
	uint32_t id;
};

void lite_hello(struct lite *l, uint16_t port, const char *name);
void lite_send(struct lite *l, const char *name); /* a SEND of name, no payload */

#endif
