/* A peer's GOODBYE: nothing new is routed to it, what it has in flight
 * finishes, then it is closed (or at its deadline). */
#ifndef SB_ROUTER_GOODBYE_H
#define SB_ROUTER_GOODBYE_H

#include <stdint.h>

#include <switchboard/proto.h>

#include "router/conn-t.h"
#include "router/shard-t.h"

/** A peer that said GOODBYE is closed once three things hold: no request of
 *  its own is open, every shard has reported that it has none in flight to
 *  it, and its output is sent. The flush decides, where closing is safe. */
static inline int sb__bye_done(const struct sb__conn *c)
{
	return c->bye && c->bye_wait == 0 && c->inflight == 0;
}

/** A GOODBYE frame from c. */
void sb__bye(struct sb__shard *sh, struct sb__conn *c, const struct sb_msg *m);

/** Connection ep (of any shard) said GOODBYE, and this shard learns it;
 *  registered: whether it held a registration (sb__conn_gone). */
void sb__bye_apply(struct sb__shard *sh, uint64_t ep, int registered);

/** This shard has no request in flight to connection ep any more. */
void sb__bye_report(struct sb__shard *sh, uint64_t ep);

#endif
