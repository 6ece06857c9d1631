/* Flow control: a consumer past its pause mark pauses whoever feeds it
 * (a sender, a requester, a handler streaming to it) and resumes them once
 * it has drained; one that takes nothing for slow_ms is dropped. */
#ifndef SB_ROUTER_FLOW_H
#define SB_ROUTER_FLOW_H

#include <stdint.h>

#include "common/timer.h"
#include "router/conn-t.h"
#include "router/shard-t.h"

/** Pause (d = 1) or resume (d = -1) reading from connection ep of this
 *  shard: its multishot recv is cancelled, what it still delivers is parked. */
void sb__flow_pause(struct sb__shard *sh, uint64_t ep, int d);

/** c's queue grew with a frame from producer: pause it if c is congested. */
void sb__flow_congest(struct sb__shard *sh, struct sb__conn *c, uint64_t producer);

/** c drained (or is closing): every producer it paused reads again. */
void sb__flow_resume(struct sb__shard *sh, struct sb__conn *c);

/** c passed its pause mark: look again in slow_ms whether it takes anything. */
void sb__flow_watch(struct sb__shard *sh, struct sb__conn *c);

/** The slow-consumer timer of a connection (struct sb__conn's `slow`). */
void sb__flow_on_slow(struct sb__timer *t);

#endif
