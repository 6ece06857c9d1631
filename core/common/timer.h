/* Hierarchical timer wheel, 1 ms resolution: a shard's deadlines (requests,
 * HELLO, idle pings, slow consumers, GOODBYE, accept retries), and the
 * client library's. Single-threaded, no locks, no allocation; timers live
 * in their owners. */
#ifndef SB_CORE_TIMER_H
#define SB_CORE_TIMER_H

#include <stdint.h>

/* Six levels of 64 slots: level L holds timers due 64^L .. 64^(L+1) ms ahead,
 * so the wheel spans 2^36 ms (795 days), far past the 2^32 ms a REQUEST's
 * timeout_ms can ask for. A later expiry waits in the top level's farthest
 * slot and is placed again each time that slot comes round. */
#define SB__WHEEL_BITS   6
#define SB__WHEEL_SLOTS  64
#define SB__WHEEL_LEVELS 6

/* Embed in the object that times out; the callback gets this struct back and
 * recovers its owner by subtracting offsetof(owner, timer). All fields are the
 * wheel's: read expires if you like, write none of them. */
struct sb__timer {
	struct sb__timer *next;          /* next timer in the same list, NULL at the end */
	struct sb__timer **pprev;        /* the link pointing at us; NULL while not armed */
	struct sb__wheel *wheel;         /* wheel we were last armed on, so disarm needs no wheel */
	uint64_t expires;                /* absolute ms at or after which fn is called */
	void (*fn)(struct sb__timer *t); /* called once per expiry, already disarmed */
	uint16_t slot;                   /* level * 64 + slot, or SB__WHEEL_DUE */
};

/* slot of a timer armed with an expiry already behind the wheel's clock. */
#define SB__WHEEL_DUE (SB__WHEEL_LEVELS * SB__WHEEL_SLOTS)

/* Defined here so a shard can embed it; about 3 KiB. Fields are private. */
struct sb__wheel {
	uint64_t clk;               /* next ms to process: all earlier slots are done */
	unsigned count;             /* timers armed, those being fired included */
	struct sb__timer *due;      /* armed with expires < clk: fired first by the next run */
	struct sb__timer *expiring; /* the slot a run is firing, so fn can disarm in it */
	uint64_t occupied[SB__WHEEL_LEVELS]; /* bit s set iff slots[level][s] is not empty */
	struct sb__timer *slots[SB__WHEEL_LEVELS * SB__WHEEL_SLOTS]; /* level * 64 + slot */
};

/* Starts an empty wheel whose clock reads now_ms. Times are milliseconds on
 * any monotonic clock, below 2^62 (a ms clock since boot or since 1970 is). */
void sb__wheel_init(struct sb__wheel *w, uint64_t now_ms);

/* Prepares a timer once, before its first arm; fn runs at each expiry. */
void sb__timer_init(struct sb__timer *t, void (*fn)(struct sb__timer *));

/* Schedules t to fire at expires_ms, moving it if it is already armed (on any
 * wheel). An expiry at or before the last run's now fires on the next run.
 * O(1). expires_ms may be anything up to UINT64_MAX ("never"). */
void sb__timer_arm(struct sb__wheel *w, struct sb__timer *t, uint64_t expires_ms);

/* Unschedules t; a no-op if it is not armed. O(1). Disarm a timer before the
 * memory holding it is freed or reused. */
void sb__timer_disarm(struct sb__timer *t);

/* Non-zero while t is armed; zero from the moment its fn is called. */
int sb__timer_armed(const struct sb__timer *t);

/* Fires every timer with expires <= now_ms, each exactly once and never
 * before its ms; returns how many fired. Timers that were armed for a ms
 * already past fire first; the rest fire in order of expiry (those due the
 * same ms in no particular order). A jump of now_ms costs per occupied slot
 * passed, not per ms, so waking from a suspend is cheap.
 * A timer is disarmed before its fn is called. fn may arm and disarm any
 * timer, itself included: a timer disarmed before its turn does not fire; one
 * armed for a later ms up to now_ms fires in this run; one armed for the ms
 * being fired or earlier fires in the next run (so a fn that re-arms itself
 * for "now" cannot spin the loop forever). fn must not call sb__wheel_run. */
unsigned sb__wheel_run(struct sb__wheel *w, uint64_t now_ms);

/* Milliseconds from now_ms until the next run can have something to do:
 * 0 if a timer is already due, UINT64_MAX if none is armed. Never later than
 * the earliest expiry, and exactly that unless a coarser level must hand
 * timers down first; then it is the time of that hand-down, after which a
 * run leaves the answer exact or closer. Meant as the event loop's wait. */
uint64_t sb__wheel_next(const struct sb__wheel *w, uint64_t now_ms);

/* Timers armed on w. */
unsigned sb__wheel_count(const struct sb__wheel *w);

#endif
