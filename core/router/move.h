/* Connection placement: a requester whose handlers are all on another
 * shard moves to that shard, once, so its requests and their replies stop
 * crossing between shards (docs/architecture.md, "Which shard a connection
 * is on"). */
#ifndef SB_ROUTER_MOVE_H
#define SB_ROUTER_MOVE_H

#include <stdint.h>

#include "router/conn-t.h"
#include "router/mail-t.h"
#include "router/route.h"
#include "router/shard-t.h"

struct sb__mail;

/**
 * A SEND or REQUEST of c that sb__reach() gave to handler @p ep of route
 * @p r: when c may move and every handler of the name it may reach is on
 * shard sb__ep_shard(ep), c stops being routed here and moves there, this
 * frame first. The caller then routes nothing more of c.
 * @param service  c's role, as the handlers' rules see it
 * @return 1 if c is moving (the frame is not routed here), else 0
 */
int sb__move_maybe(struct sb__shard *sh, struct sb__conn *c, const struct sb__route *r, uint64_t ep,
		   int service);

/** c, moving, has no I/O left here: hand it to its new shard. Called
 *  where its last receive or send completes; c is gone after it. */
void sb__move_ship(struct sb__shard *sh, struct sb__conn *c);

/** Whether c, moving, is ready to be shipped: no receive, send or output. */
static inline int sb__move_ready(const struct sb__conn *c)
{
	return c->moving && !c->recv_armed && !c->sending && c->q_len == 0 && !c->closing;
}

/**
 * Mail for connection @p ep (a DELIVER's or a PAUSE's) that may have
 * moved: where it goes.
 * @param to  set to the shard to forward the mail to, or -1
 * @return the endpoint here to act on (ep itself, or the connection's
 *         endpoint here when ep is the one it had on the shard it left),
 *         or 0 with *to set
 */
uint64_t sb__move_follow(struct sb__shard *sh, uint64_t ep, int *to);

/** The mail of a move (SB__MAIL_CONN_MOVE, SB__MAIL_PEER_MOVED,
 *  SB__MAIL_MOVE_END). */
void sb__move_on_mail(struct sb__shard *sh, const struct sb__mail *m);

/** c is closing: the shard it came from stops forwarding its mail. */
void sb__move_closed(struct sb__shard *sh, struct sb__conn *c);

/** Frees a CONN_MOVE mail's connection without adopting it: the router is
 *  stopping. */
void sb__move_release(const struct sb__mail *m);

#endif
