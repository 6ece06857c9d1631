/* A connection's output: the queue of frame references, flushed by one
 * sendmsg per loop turn, and the bounds that keep it from growing without
 * limit. Only the shard's thread may call these. */
#ifndef SB_ROUTER_OUTQ_H
#define SB_ROUTER_OUTQ_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <switchboard/proto.h>

#include "router/conn-t.h"
#include "router/router-t.h"
#include "router/shard-t.h"

/** The pause mark: past it, a connection's queue pauses whoever feeds it
 *  (sb__flow_congest()) and starts the slow-consumer clock. */
static inline size_t sb__outq_pause_mark(const struct sb__shard *sh)
{
	return sh->r->cfg.out_max / 4;
}

/** Queue bytes of b for c, taking over the caller's reference; a consumer
 *  over its limit is closed. @return 0, SB_EOVERLOADED or SB_ENOMEM */
int sb__enqueue(struct sb__shard *sh, struct sb__conn *c, struct sb__buf *b, const uint8_t *p,
		uint32_t len);

/** The same for bytes that are not a frame to route (an HTTP answer):
 *  queued as they are, whatever c's transport. */
int sb__outq_put(struct sb__shard *sh, struct sb__conn *c, struct sb__buf *b, const uint8_t *p,
		 uint32_t len);

/** Encode a router-made message and queue it for c. */
int sb__send_msg(struct sb__shard *sh, struct sb__conn *c, const struct sb_msg *m);

/** A (non-fatal unless flags say so) ERROR for c. */
void sb__send_error(struct sb__shard *sh, struct sb__conn *c, uint64_t id, int err,
		    const char *text, uint8_t flags);

/** c has output to flush (or a close to decide) at the end of this turn. */
void sb__outq_mark(struct sb__shard *sh, struct sb__conn *c);

/** Why a connection whose output is all out is closed: its GOODBYE, the
 *  drain, or the fatal ERROR it was sent (the log says which). */
const char *sb__outq_end_why(const struct sb__shard *sh, const struct sb__conn *c);

/** The end of a turn: one sendmsg per connection marked. */
void sb__outq_flush(struct sb__shard *sh);

/** Starts c's send of the n bytes at p, its only send in flight: one
 *  buffer needs no iovec, so none is held while it is out. */
void sb__outq_send1(struct sb__shard *sh, struct sb__conn *c, const void *p, size_t n);

/** Starts c's sendmsg of the first n (>= 2) entries of iov, copied into
 *  an iovec held until the send completes. @return 0, or SB_ENOMEM (then
 *  nothing was started). */
int sb__outq_sendv(struct sb__shard *sh, struct sb__conn *c, const struct iovec *iov, unsigned n);

/** The iovecs a shard keeps for its sends, freed when it ends. */
void sb__outq_sendv_destroy(struct sb__shard *sh);

/** A sendmsg of c completed with @p res (bytes, or -errno). */
void sb__outq_sent(struct sb__shard *sh, struct sb__conn *c, int res);

/** Drops n bytes of plaintext from the head of c's queue (TLS: sealed). */
void sb__outq_consume(struct sb__shard *sh, struct sb__conn *c, size_t n);

#endif
