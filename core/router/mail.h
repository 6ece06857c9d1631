/* Mail between shards in the router's terms: sent in order and never
 * dropped (a full ring's mail waits in a backlog whose producers pause),
 * wakes sent once per turn, and each kind of mail handed to its module. */
#ifndef SB_ROUTER_MAIL_H
#define SB_ROUTER_MAIL_H

#include "router/mail-t.h"
#include "router/mailbox.h"
#include "router/shard-t.h"

/** Mail to another shard (kept in order, never dropped). */
void sb__mail(struct sb__shard *sh, unsigned to, const struct sb__mail *m);

/** Once per turn: what the mail rings hold for this shard, handled. */
void sb__mail_read(struct sb__shard *sh);

/** Once per turn: backlogged mail into rings with room again. */
void sb__mail_flush(struct sb__shard *sh);

/** Once per turn, after the mail: wake the shards sent mail while asleep. */
void sb__mail_wake(struct sb__shard *sh);

/** 1 while mail waits in a backlog or a producer waits on one. */
int sb__mail_backlogged(const struct sb__shard *sh);

/** After every shard thread has exited: what rings and backlogs still hold
 *  is released, while the buffer pools still exist. */
void sb__mail_teardown(struct sb__shard *sh);

#endif
