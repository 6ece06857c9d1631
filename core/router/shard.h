/* Shards: one thread, one io_uring, its own connections, requests, routes
 * and timers. Shards share nothing but the mailbox and the peer-name table. */
#ifndef SB_CORE_SHARD_H
#define SB_CORE_SHARD_H

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <switchboard/proto.h>
#include <switchboard/router.h>

#include "router/conn-t.h"
#include "router/local-t.h"
#include "router/mailbox.h"
#include "router/mail-t.h"
#include "router/req-t.h"
#include "router/router-t.h"
#include "router/shard-t.h"
#include "common/tls.h"

/** The shard thread's main function. */
void *sb__shard_main(void *arg);

/** Run an in-process handler for a frame routed to it (local.c). */
void sb__local_run(struct sb__shard *sh, unsigned idx, const uint8_t *f, uint32_t len);

/** A reply or error for a request this shard owns, from endpoint sender;
 *  takes over the reference on b. */
void sb__shard_reply(struct sb__shard *sh, uint64_t sender, struct sb__buf *b, uint8_t *f,
		     uint32_t len);

/** After every shard thread has exited: release mail still in flight. */
void sb__shard_teardown(struct sb__shard *sh);

/** Then free the shard's ring, buffers and tables. */
void sb__shard_destroy(struct sb__shard *sh);

/** Log a line to stderr when @p level <= the configured level. */
void sb__log(const struct sb_router *r, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/** The TLS settings a shard accepts with: its cached reference, renewed
 * (under tls_lock) only after a reload. Never on a message's path. */
struct sb__tls_ctx *sb__router_tls(struct sb__shard *sh);

/** A connection's verified client certificate: its name (CN, else first
 * DNS SAN) and its subject ("CN=alice,O=Example"), or NULL when the
 * connection is plain or presented none. Valid while the connection is. */
static inline const char *sb__conn_cert_name(const struct sb__conn *c)
{
	return c->tls != NULL ? sb__tls_peer_name(c->tls) : NULL;
}

static inline const char *sb__conn_cert_subject(const struct sb__conn *c)
{
	return c->tls != NULL ? sb__tls_peer_subject(c->tls) : NULL;
}

/* For the modules that extend the shard (peers.c, bcast.c): shard.c's
 * own helpers, which only the shard's thread may call. */

/** A live connection of this shard, or NULL (gone or closing). */
struct sb__conn *sb__conn_get(struct sb__shard *sh, uint64_t ep);

/** Queue bytes of b for c, taking over the caller's reference; a consumer
 *  over its limit is closed. @return 0, SB_EOVERLOADED or SB_ENOMEM */
int sb__enqueue(struct sb__shard *sh, struct sb__conn *c, struct sb__buf *b, const uint8_t *p,
		uint32_t len);

/** Encode a router-made message and queue it for c. */
int sb__send_msg(struct sb__shard *sh, struct sb__conn *c, const struct sb_msg *m);

/** A (non-fatal unless flags say so) ERROR for c. */
void sb__send_error(struct sb__shard *sh, struct sb__conn *c, uint64_t id, int err,
		    const char *text, uint8_t flags);

/** Mail to another shard (kept in order, never dropped). */
void sb__mail(struct sb__shard *sh, unsigned to, const struct sb__mail *m);

/** A frame (b's reference taken over) for connection ep on any shard, or
 *  an in-process handler. */
void sb__deliver(struct sb__shard *sh, uint64_t ep, struct sb__buf *b, const uint8_t *p,
		 uint32_t len);

/** Flow control: c's queue grew with a reply from producer. */
void sb__congest(struct sb__shard *sh, struct sb__conn *c, uint64_t producer);

/** Requests this shard has in flight to a handler, for load balancing. */
void sb__load_add(struct sb__shard *sh, uint64_t ep, int d);

/** End request q for good (its entry is freed). */
void sb__req_finish(struct sb__shard *sh, struct sb__req *q);

/** Add to one of this shard's counters. */
void sb__stat_add(_Atomic uint64_t *c, int64_t d);

#endif
