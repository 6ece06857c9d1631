/* A connection's life on its shard: receiving into provided buffers,
 * cutting frames (and reassembling those cut by a buffer's end), parking
 * what arrives while paused, idle checks, and the close. */
#ifndef SB_ROUTER_CONN_H
#define SB_ROUTER_CONN_H

#include <liburing.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/buf.h"
#include "common/timer.h"
#include "router/conn-t.h"
#include "router/reqtab.h"
#include "router/shard-t.h"

/** A live connection of this shard, or NULL (gone or closing). */
static inline struct sb__conn *sb__conn_get(struct sb__shard *sh, uint64_t ep)
{
	struct sb__conn *c = sb__reqtab_get(&sh->conns, ep);
	return c != NULL && !c->closing ? c : NULL;
}

/** Arms c's multishot recv, unless one is outstanding. */
void sb__conn_arm_recv(struct sb__shard *sh, struct sb__conn *c);

/** Re-arms the receives that stopped for want of buffers. */
void sb__conn_rearm_starved(struct sb__shard *sh);

/** A receive completion of c. */
void sb__conn_recv(struct sb__shard *sh, struct sb__conn *c, struct io_uring_cqe *cqe);

/** Received bytes (b's reference taken over) into the frame path: routed
 *  now, or parked while c is paused. */
void sb__conn_take(struct sb__shard *sh, struct sb__conn *c, struct sb__buf *b, uint32_t len);

/** The same for @p len bytes at @p p inside b (a WebSocket message). */
void sb__conn_take_at(struct sb__shard *sh, struct sb__conn *c, struct sb__buf *b, uint8_t *p,
		      uint32_t len);

/** Routes what c parked while paused, in order, until paused again. */
void sb__conn_unpark(struct sb__shard *sh, struct sb__conn *c);

/** A fatal error: tell the peer, then close once the error is on the wire. */
void sb__conn_fail(struct sb__shard *sh, struct sb__conn *c, int err, const char *text);

/** Stops routing to and from c; its memory goes once no I/O refers to it. */
void sb__conn_close(struct sb__shard *sh, struct sb__conn *c, const char *why);

/** Frees c unless a completion or a routing pass still refers to it. */
void sb__conn_free(struct sb__shard *sh, struct sb__conn *c);

/**
 * Connection ep (of any shard) closed: what this shard holds for it goes.
 * @param registered  0 if it held no registration when it closed (its
 *                    routes are not looked for), else 1
 */
void sb__conn_gone(struct sb__shard *sh, uint64_t ep, int registered);

/** The handshake is done: the idle check starts. */
void sb__conn_idle_start(struct sb__shard *sh, struct sb__conn *c);

/** The idle check's timer (struct sb__conn's `idle_timer`). */
void sb__conn_on_idle(struct sb__timer *t);

/** c's remote IPv4 address as text, in @p buf. */
const char *sb__conn_addr(const struct sb__conn *c, char *buf, socklen_t cap);

#endif
