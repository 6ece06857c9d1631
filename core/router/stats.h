/* The router's counters. One list, SB__STATS, drives the counters each
 * shard keeps (struct sb__stats), their sum in sb_router_stats() and the
 * keys of $sb.stats; the public struct sb_router_stats (router.h) is
 * checked against it below, field by field. Each shard writes its own
 * counters, anyone may read them (relaxed atomics, no locks). */
#ifndef SB_ROUTER_STATS_H
#define SB_ROUTER_STATS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <switchboard/router.h>

/* X(name, how), in struct sb_router_stats's order: how is SUM (added up
 * over shards) or PEAK (the largest any shard saw). A counter is added by
 * adding its line here and its field, with its meaning, to router.h. */
#define SB__STATS(X)                                                                               \
	X(connections, SUM)                                                                        \
	X(frames_in, SUM)                                                                          \
	X(requests, SUM)                                                                           \
	X(replies, SUM)                                                                            \
	X(timeouts, SUM)                                                                           \
	X(late_replies, SUM)                                                                       \
	X(no_handler, SUM)                                                                         \
	X(slow_consumers, SUM)                                                                     \
	X(inflight, SUM)                                                                           \
	X(pauses, SUM)                                                                             \
	X(queued_peak, PEAK)                                                                       \
	X(recv_starved, SUM)                                                                       \
	X(mail_deferred, SUM)                                                                      \
	X(mail_backlog_peak, PEAK)                                                                 \
	X(refused, SUM)                                                                            \
	X(hello_timeouts, SUM)                                                                     \
	X(invalid_args, SUM)                                                                       \
	X(auth_failures, SUM)                                                                      \
	X(auth_blocked, SUM)                                                                       \
	X(forbidden, SUM)                                                                          \
	X(addr_refused, SUM)                                                                       \
	X(inflight_refused, SUM)                                                                   \
	X(register_refused, SUM)                                                                   \
	X(idle_pings, SUM)                                                                         \
	X(idle_timeouts, SUM)                                                                      \
	X(accept_errors, SUM)                                                                      \
	X(to_unhandled, SUM)                                                                       \
	X(moves, SUM)                                                                              \
	X(cluster_msgs, SUM)                                                                       \
	X(cluster_frames, SUM)                                                                     \
	X(cluster_batches, SUM)

/* How a shard's value joins the router's. */
#define SB__STAT_SUM(acc, v)  ((acc) + (v))
#define SB__STAT_PEAK(acc, v) ((acc) > (v) ? (acc) : (v))

/* A shard's counters: only that shard writes them. */
struct sb__stats {
#define SB__STAT_FIELD(name, how) _Atomic uint64_t name;
	SB__STATS(SB__STAT_FIELD)
#undef SB__STAT_FIELD
};

/* struct sb_router_stats has exactly these counters, in this order, each a
 * uint64_t: a field missing from it fails to compile, one out of order or
 * one the list lacks fails these assertions. */
enum sb__stat_index {
#define SB__STAT_INDEX(name, how) SB__STAT_##name,
	SB__STATS(SB__STAT_INDEX)
#undef SB__STAT_INDEX
		SB__NSTATS
};
#define SB__STAT_CHECK(name, how)                                                                  \
	_Static_assert(offsetof(struct sb_router_stats, name) ==                                   \
			       SB__STAT_##name * sizeof(uint64_t),                                 \
		       "struct sb_router_stats: " #name " is not where SB__STATS puts it");
SB__STATS(SB__STAT_CHECK)
#undef SB__STAT_CHECK
_Static_assert(sizeof(struct sb_router_stats) == SB__NSTATS * sizeof(uint64_t),
	       "struct sb_router_stats has a counter SB__STATS does not list");

/** Add to one of this shard's counters. Only this shard writes them: a
 *  plain load and store keep readers race-free without a locked
 *  instruction per message. */
static inline void sb__stat_add(_Atomic uint64_t *c, int64_t d)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + (uint64_t)d,
			      memory_order_relaxed);
}

#endif
