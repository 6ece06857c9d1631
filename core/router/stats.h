/* The router's counters: each shard writes its own, anyone may read them
 * (relaxed atomics, no locks), and sb_router_stats() sums them. */
#ifndef SB_ROUTER_STATS_H
#define SB_ROUTER_STATS_H

#include <stdatomic.h>
#include <stdint.h>

/* Counters a shard writes and anyone may read (relaxed atomics: no locks). */
struct sb__stats {
	_Atomic uint64_t frames_in, requests, replies, timeouts, late_replies, no_handler,
		slow_consumers, connections, inflight, pauses, queued_peak, recv_starved,
		mail_deferred, mail_backlog_peak, refused, hello_timeouts, invalid_args;
	_Atomic uint64_t auth_failures, auth_blocked, forbidden, addr_refused, inflight_refused,
		register_refused, idle_pings, idle_timeouts, accept_errors;
};

/** Add to one of this shard's counters. Only this shard writes them: a
 *  plain load and store keep readers race-free without a locked
 *  instruction per message. */
static inline void sb__stat_add(_Atomic uint64_t *c, int64_t d)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + (uint64_t)d,
			      memory_order_relaxed);
}

#endif
