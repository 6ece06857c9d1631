/* Registrations: REGISTER and UNREGISTER applied on the handler's shard,
 * mailed to every other shard, and ACKed once every shard has them; each
 * route holding its name's statistics. */
#ifndef SB_ROUTER_REGISTER_H
#define SB_ROUTER_REGISTER_H

#include <switchboard/proto.h>

#include "router/conn-t.h"
#include "router/mail-t.h"
#include "router/route.h"
#include "router/shard-t.h"

/** A REGISTER or UNREGISTER frame from c. */
void sb__register(struct sb__shard *sh, struct sb__conn *c, const struct sb_msg *m);

/** ROUTE_ADD or ROUTE_DEL mail: another shard's registration, applied here. */
void sb__register_apply(struct sb__shard *sh, const struct sb__mail *m);

/** ROUTE_DONE mail: one more shard has applied a change of ours. */
void sb__register_done(struct sb__shard *sh, struct sb__route_sync *sync);

/** The program's in-process handlers, on this shard's replica at start.
 *  @return 0 or SB_ENOMEM */
int sb__register_locals(struct sb__shard *sh);

/** A route lost its last handler here (the route table's on_drop hook). */
void sb__route_dropped(void *ctx, struct sb__route *r);

#endif
