/* Timer wheel tests: a shard arms request timeouts, time moves in small steps
 * and huge jumps, and every timeout fires exactly once, never early, in order. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "support/testlib.h"
#include "common/timer.h"

#define DAY_MS (24 * 3600 * 1000ull)

/* A request entry as the router would hold one: the timer is embedded. */
struct req {
	uint64_t id;
	struct sb__timer timer;
	unsigned fired;     /* times fn was called */
	uint64_t fired_now; /* now_ms of the run that fired it */
};

static struct req *req_of(struct sb__timer *t)
{
	return (struct req *)((char *)t - offsetof(struct req, timer));
}

/* What callbacks check against; run() keeps them current. */
static uint64_t run_now;  /* now_ms of the run in progress */
static uint64_t prev_now; /* now_ms of the run before it */
static int have_prev;     /* there was a run before it */
static uint64_t last_expiry;
static int early, late, unordered;

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void reset_log(void)
{
	run_now = prev_now = last_expiry = 0;
	have_prev = early = late = unordered = 0;
}

static void on_timeout(struct sb__timer *t)
{
	struct req *r = req_of(t);

	CHECK(!sb__timer_armed(t));
	if (t->expires > run_now)
		early++;
	/* The run before had a now past the expiry, yet did not fire it. */
	if (have_prev && t->expires <= prev_now)
		late++;
	if (t->expires < last_expiry)
		unordered++;
	last_expiry = t->expires;
	r->fired++;
	r->fired_now = run_now;
}

static unsigned run(struct sb__wheel *w, uint64_t now)
{
	run_now = now;
	unsigned n = sb__wheel_run(w, now);
	prev_now = now;
	have_prev = 1;
	return n;
}

static void init_reqs(struct req *reqs, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		reqs[i] = (struct req){.id = i + 1};
		sb__timer_init(&reqs[i].timer, on_timeout);
	}
}

static void test_never_early_and_in_order(void)
{
	enum { N = 10000, HORIZON = 100000 };
	struct req *reqs = malloc(N * sizeof *reqs);
	struct sb__wheel w;

	reset_log();
	sb__wheel_init(&w, 0);
	init_reqs(reqs, N);
	for (unsigned i = 0; i < N; i++)
		sb__timer_arm(&w, &reqs[i].timer, rnd() % (HORIZON + 1));
	CHECK_INT(sb__wheel_count(&w), N);

	/* Mostly a few ms a step, now and then a stall of seconds. */
	uint64_t now = 0, total = 0;
	while (now <= HORIZON + 3000) {
		total += run(&w, now);
		now += rnd() % 8 == 0 ? rnd() % 3000 : rnd() % 20;
	}
	CHECK_INT(total, N);
	CHECK_INT(early, 0);
	CHECK_INT(late, 0);
	CHECK_INT(unordered, 0);
	CHECK_INT(sb__wheel_count(&w), 0);
	for (unsigned i = 0; i < N; i++)
		CHECK_INT(reqs[i].fired, 1);
	free(reqs);
}

/* Timers one ms either side of each level boundary, from an aligned clock
 * and from an unaligned one, fire at their very ms. */
static void test_exact_at_every_level_boundary(void)
{
	enum { TOP = 4, N = TOP * 3 * 2 }; /* 64^4 ms is 4.6 hours */
	struct req reqs[N];
	struct sb__wheel w;
	uint64_t start = 1000003; /* not aligned to any level */

	reset_log();
	sb__wheel_init(&w, start);
	init_reqs(reqs, N);
	unsigned n = 0;
	for (unsigned level = 1; level <= TOP; level++) {
		uint64_t edge = (uint64_t)1 << (SB__WHEEL_BITS * level);
		for (int d = -1; d <= 1; d++) {
			sb__timer_arm(&w, &reqs[n++].timer, start + edge + (uint64_t)d);
			/* The same distance from an aligned ms. */
			uint64_t aligned = (start + edge) & ~(edge - 1);
			sb__timer_arm(&w, &reqs[n++].timer, aligned + (uint64_t)d);
		}
	}
	/* Jump to 2 ms short of the next expiry, then cross it ms by ms. */
	uint64_t now = start;
	unsigned fired = 0;
	while (fired < n) {
		fired += run(&w, now);
		uint64_t next = UINT64_MAX;
		for (unsigned i = 0; i < n; i++)
			if (reqs[i].fired == 0 && reqs[i].timer.expires < next)
				next = reqs[i].timer.expires;
		now = next != UINT64_MAX && next - 2 > now ? next - 2 : now + 1;
	}
	CHECK_INT(early, 0);
	CHECK_INT(late, 0);
	for (unsigned i = 0; i < n; i++) {
		CHECK_INT(reqs[i].fired, 1);
		CHECK_INT(reqs[i].fired_now, reqs[i].timer.expires);
	}
}

static void test_disarm_before_expiry_means_no_fire(void)
{
	struct req a, b;
	struct sb__wheel w;

	reset_log();
	sb__wheel_init(&w, 100);
	init_reqs(&a, 1);
	init_reqs(&b, 1);
	/* Disarming one that was never armed, or twice, does nothing. */
	sb__timer_disarm(&a.timer);
	CHECK(!sb__timer_armed(&a.timer));
	sb__timer_arm(&w, &a.timer, 150);
	sb__timer_arm(&w, &b.timer, 150 + 5 * DAY_MS);
	CHECK(sb__timer_armed(&a.timer));
	run(&w, 120);
	sb__timer_disarm(&a.timer);
	sb__timer_disarm(&a.timer);
	sb__timer_disarm(&b.timer);
	CHECK(!sb__timer_armed(&a.timer));
	CHECK_INT(sb__wheel_count(&w), 0);
	CHECK(sb__wheel_next(&w, 120) == UINT64_MAX);
	CHECK_INT(run(&w, 200), 0);
	CHECK_INT(run(&w, 200 + 10 * DAY_MS), 0);
	CHECK_INT(a.fired + b.fired, 0);

	/* A disarmed timer can be armed again and then fires. */
	sb__timer_arm(&w, &a.timer, 250 + 10 * DAY_MS);
	CHECK_INT(run(&w, 250 + 10 * DAY_MS), 1);
	CHECK_INT(a.fired, 1);
}

static void test_rearm_moves_it(void)
{
	struct req a;
	struct sb__wheel w;

	reset_log();
	sb__wheel_init(&w, 0);
	init_reqs(&a, 1);
	sb__timer_arm(&w, &a.timer, 100);
	sb__timer_arm(&w, &a.timer, 50); /* earlier, from another level */
	CHECK_INT(sb__wheel_count(&w), 1);
	CHECK_INT(run(&w, 49), 0);
	CHECK_INT(run(&w, 50), 1);
	CHECK_INT(run(&w, 100), 0);

	sb__timer_arm(&w, &a.timer, 110);
	sb__timer_arm(&w, &a.timer, 5000); /* later: the old slot must not fire it */
	CHECK_INT(sb__wheel_count(&w), 1);
	CHECK_INT(run(&w, 4999), 0);
	CHECK_INT(run(&w, 5000), 1);
	CHECK_INT(a.fired, 2);
	CHECK_INT(a.fired_now, 5000);

	/* Moving it to another wheel leaves the first one empty. */
	struct sb__wheel w2;
	sb__wheel_init(&w2, 5000);
	sb__timer_arm(&w, &a.timer, 6000);
	sb__timer_arm(&w2, &a.timer, 6000);
	CHECK_INT(sb__wheel_count(&w), 0);
	CHECK_INT(sb__wheel_count(&w2), 1);
	CHECK_INT(run(&w, 7000), 0);
	CHECK_INT(run(&w2, 7000), 1);
}

static void test_past_expiry_fires_on_next_run(void)
{
	struct req a, b;
	struct sb__wheel w;

	reset_log();
	sb__wheel_init(&w, 1000);
	init_reqs(&a, 1);
	init_reqs(&b, 1);
	sb__timer_arm(&w, &a.timer, 1000); /* now: due on the first run */
	sb__timer_arm(&w, &b.timer, 3);    /* long past */
	CHECK(sb__wheel_next(&w, 1000) == 0);
	CHECK_INT(run(&w, 1000), 2);

	/* After a run to 2000, an expiry of 2000 or earlier is past too: the
	 * next run fires it even if the clock has not moved. */
	CHECK_INT(run(&w, 2000), 0);
	sb__timer_arm(&w, &a.timer, 2000);
	sb__timer_arm(&w, &b.timer, 1999);
	CHECK(sb__wheel_next(&w, 2000) == 0);
	CHECK_INT(run(&w, 2000), 2);
	CHECK_INT(a.fired + b.fired, 4);
}

/* For the callbacks below: which timers they act on. */
static struct sb__wheel *cb_wheel;
static struct req *cb_other[3];
static uint64_t cb_expiry;

static void arm_other(struct sb__timer *t)
{
	on_timeout(t);
	sb__timer_arm(cb_wheel, &cb_other[0]->timer, cb_expiry);
}

static void test_fn_arming_a_timer_due_now(void)
{
	struct req a, b;
	struct sb__wheel w;

	/* Documented: a timer armed by a fn for the ms being fired (or before)
	 * fires in the next run, which sb__wheel_next says is due at once. */
	reset_log();
	sb__wheel_init(&w, 0);
	init_reqs(&a, 1);
	init_reqs(&b, 1);
	a.timer.fn = arm_other;
	cb_wheel = &w;
	cb_other[0] = &b;
	cb_expiry = 10;
	sb__timer_arm(&w, &a.timer, 10);
	CHECK_INT(run(&w, 20), 1);
	CHECK_INT(b.fired, 0);
	CHECK(sb__timer_armed(&b.timer));
	CHECK_INT(sb__wheel_count(&w), 1);
	CHECK(sb__wheel_next(&w, 20) == 0);
	CHECK_INT(run(&w, 20), 1);
	CHECK_INT(b.fired, 1);

	/* Armed for a later ms that this run still reaches: fires in it. */
	cb_expiry = 35;
	sb__timer_arm(&w, &a.timer, 30);
	CHECK_INT(run(&w, 40), 2);
	CHECK_INT(b.fired, 2);
	CHECK_INT(b.fired_now, 40);

	/* A ms this run does not reach: stays armed for later. */
	cb_expiry = 1000;
	sb__timer_arm(&w, &a.timer, 50);
	CHECK_INT(run(&w, 999), 1);
	CHECK_INT(run(&w, 1000), 1);
	CHECK_INT(b.fired, 3);
}

static unsigned self_fires;

static void rearm_self(struct sb__timer *t)
{
	self_fires++;
	if (self_fires < 1000)
		sb__timer_arm(cb_wheel, t, t->expires + cb_expiry);
}

static void test_fn_rearming_itself(void)
{
	struct req a;
	struct sb__wheel w;

	/* Every 7 ms: one run over 700 ms fires it 100 times, each on its ms. */
	sb__wheel_init(&w, 0);
	init_reqs(&a, 1);
	a.timer.fn = rearm_self;
	cb_wheel = &w;
	cb_expiry = 7;
	self_fires = 0;
	sb__timer_arm(&w, &a.timer, 7);
	CHECK_INT(run(&w, 700), 100);
	CHECK_INT(a.timer.expires, 707);

	/* Re-arming for the same ms cannot spin: one firing per run. */
	cb_expiry = 0;
	CHECK_INT(run(&w, 800), 1);
	CHECK_INT(run(&w, 800), 1);
	CHECK_INT(run(&w, 800), 1);
	sb__timer_disarm(&a.timer);
	CHECK_INT(run(&w, 800), 0);
}

static void disarm_others(struct sb__timer *t)
{
	on_timeout(t);
	for (unsigned i = 0; i < 3; i++)
		if (cb_other[i] != NULL)
			sb__timer_disarm(&cb_other[i]->timer);
}

static void test_fn_disarming_a_timer_due_in_the_same_run(void)
{
	struct req r[4];
	struct sb__wheel w;

	reset_log();
	sb__wheel_init(&w, 0);
	init_reqs(r, 4);
	/* r0 and r1 share a ms, so whichever fires first disarms the other
	 * straight off the list being fired; r2 is due later in the run, r3
	 * is far off on a high level. */
	r[0].timer.fn = r[1].timer.fn = disarm_others;
	cb_wheel = &w;
	sb__timer_arm(&w, &r[0].timer, 100);
	sb__timer_arm(&w, &r[1].timer, 100);
	sb__timer_arm(&w, &r[2].timer, 150);
	sb__timer_arm(&w, &r[3].timer, 3 * DAY_MS);
	cb_other[0] = &r[0];
	cb_other[1] = &r[1];
	cb_other[2] = &r[2];
	CHECK_INT(run(&w, 10 * DAY_MS), 2); /* one of r0/r1, and r3 */
	CHECK_INT(r[0].fired + r[1].fired, 1);
	CHECK_INT(r[2].fired, 0);
	CHECK_INT(r[3].fired, 1);
	CHECK_INT(sb__wheel_count(&w), 0);
	cb_other[0] = cb_other[1] = cb_other[2] = NULL;
}

static void test_huge_expiries_after_a_big_jump(void)
{
	enum { N = 7 };
	struct req reqs[N];
	struct sb__wheel w;
	uint64_t t0 = 1700000000000ull; /* a wall clock in ms */
	uint64_t at[N] = {
		t0 + 10 * 3600 * 1000ull,   /* 10 hours */
		t0 + 3 * DAY_MS + 17,       /* 3 days */
		t0 + 49 * DAY_MS + 1234,    /* the largest u32 timeout */
		t0 + 795 * DAY_MS,          /* near the wheel's span */
		t0 + 796 * DAY_MS + 5,      /* just past it */
		t0 + 20 * 365 * DAY_MS + 3, /* far past it */
		UINT64_MAX,                 /* never */
	};

	reset_log();
	sb__wheel_init(&w, t0);
	init_reqs(reqs, N);
	for (unsigned i = 0; i < N; i++)
		sb__timer_arm(&w, &reqs[i].timer, at[i]);

	/* Suspend-sized jumps: to 1 ms short of each expiry, then onto it. */
	for (unsigned i = 0; i + 1 < N; i++) {
		CHECK_INT(run(&w, at[i] - 1), 0);
		CHECK_INT(reqs[i].fired, 0);
		CHECK(sb__wheel_next(&w, at[i] - 1) <= 1);
		CHECK_INT(run(&w, at[i]), 1);
		CHECK_INT(reqs[i].fired_now, at[i]);
		CHECK_INT(sb__wheel_count(&w), N - 1 - i);
	}
	/* A thousand years on, "never" has still not fired. */
	CHECK_INT(run(&w, t0 + 1000 * 365 * DAY_MS), 0);
	CHECK(sb__timer_armed(&reqs[N - 1].timer));
	CHECK(sb__wheel_next(&w, t0) != UINT64_MAX);
	CHECK_INT(early, 0);
	CHECK_INT(late, 0);
}

/* Past the wheel's span a timer is parked and placed again later; whatever
 * the clock's alignment, it still fires on its ms. */
static void test_beyond_the_span_fires_on_the_ms(void)
{
	const uint64_t span = (uint64_t)1 << (SB__WHEEL_BITS * SB__WHEEL_LEVELS);
	const uint64_t top = span >> SB__WHEEL_BITS; /* one top-level slot */
	uint64_t starts[] = {
		0, top, span, 7 * span + 3 * top + 12345, 1700000000000ull, rnd() % (span * 64)};
	uint64_t offsets[] = {span - 1,        span,       span + 1,     span + top / 2,
			      span + top - 1,  span + top, 2 * span - 1, 2 * span + top + 1,
			      5 * span + 12345};

	for (unsigned s = 0; s < sizeof starts / sizeof starts[0]; s++)
		for (unsigned o = 0; o < sizeof offsets / sizeof offsets[0]; o++) {
			struct sb__wheel w;
			struct req r;
			uint64_t e = starts[s] + offsets[o];

			reset_log();
			sb__wheel_init(&w, starts[s]);
			init_reqs(&r, 1);
			sb__timer_arm(&w, &r.timer, e);
			CHECK_INT(run(&w, e - 1), 0);
			CHECK(sb__wheel_next(&w, e - 1) <= 1);
			CHECK_INT(run(&w, e), 1);
			CHECK_INT(r.fired_now, e);
		}
}

/* The smallest time to an armed timer's expiry, by looking at all of them. */
static uint64_t brute_next(struct req *reqs, unsigned n, uint64_t now)
{
	uint64_t best = UINT64_MAX;
	for (unsigned i = 0; i < n; i++) {
		if (!sb__timer_armed(&reqs[i].timer))
			continue;
		uint64_t e = reqs[i].timer.expires;
		uint64_t d = e > now ? e - now : 0;
		if (d < best)
			best = d;
	}
	return best;
}

static void test_next_never_exceeds_the_earliest_expiry(void)
{
	enum { N = 500 };
	struct req *reqs = malloc(N * sizeof *reqs);
	struct sb__wheel w;
	uint64_t now = 5000;

	reset_log();
	sb__wheel_init(&w, now);
	init_reqs(reqs, N);
	unsigned armed = 0;
	for (unsigned step = 0; step < 200000; step++) {
		struct req *r = &reqs[rnd() % N];
		switch (rnd() % 4) {
		case 0:
		case 1: {
			/* Spread over every level: 1 .. 2^40 ms ahead. (Not
			 * past ones: those fire a run "late", by contract.) */
			uint64_t span = (uint64_t)1 << (rnd() % 41);
			if (!sb__timer_armed(&r->timer))
				armed++;
			sb__timer_arm(&w, &r->timer, now + 1 + rnd() % span);
			break;
		}
		case 2:
			if (sb__timer_armed(&r->timer))
				armed--;
			sb__timer_disarm(&r->timer);
			break;
		default: {
			uint64_t step_ms = rnd() % 4 == 0 ? rnd() % 100000 : rnd() % 70;
			now += step_ms;
			armed -= run(&w, now);
			break;
		}
		}
		uint64_t want = brute_next(reqs, N, now);
		uint64_t got = sb__wheel_next(&w, now);
		CHECK_INT(sb__wheel_count(&w), armed);
		if (want == UINT64_MAX)
			CHECK(got == UINT64_MAX);
		else if (got > want) {
			CHECK(got <= want);
			break;
		}
	}
	CHECK_INT(early, 0);
	CHECK_INT(late, 0);
	free(reqs);
}

/* An event loop that sleeps exactly sb__wheel_next each time, as the router's
 * will: every timer fires on its very ms, with few wakeups that fire nothing. */
static void test_event_loop_sleeping_next_fires_on_the_ms(void)
{
	enum { N = 3000 };
	struct req *reqs = malloc(N * sizeof *reqs);
	struct sb__wheel w;
	uint64_t now = 123456789;

	reset_log();
	sb__wheel_init(&w, now);
	init_reqs(reqs, N);
	for (unsigned i = 0; i < N; i++) {
		uint64_t span = (uint64_t)1 << (rnd() % 33);
		sb__timer_arm(&w, &reqs[i].timer, now + rnd() % span);
	}
	unsigned wakeups = 0, idle = 0, fired = 0;
	while (sb__wheel_count(&w) > 0 && wakeups < 100000) {
		uint64_t wait = sb__wheel_next(&w, now);
		now += wait;
		unsigned n = run(&w, now);
		fired += n;
		wakeups++;
		idle += n == 0;
	}
	CHECK_INT(fired, N);
	for (unsigned i = 0; i < N; i++)
		CHECK_INT(reqs[i].fired_now, reqs[i].timer.expires);
	/* An idle wakeup is a timer moving down a level; each timer does so at
	 * most once per level. */
	CHECK(idle <= N * (SB__WHEEL_LEVELS - 1));
	CHECK_INT(unordered, 0);
	free(reqs);
}

static void test_count(void)
{
	struct req r[5];
	struct sb__wheel w;

	reset_log();
	sb__wheel_init(&w, 0);
	init_reqs(r, 5);
	CHECK_INT(sb__wheel_count(&w), 0);
	CHECK(sb__wheel_next(&w, 0) == UINT64_MAX);
	for (unsigned i = 0; i < 5; i++)
		sb__timer_arm(&w, &r[i].timer, 10 * (i + 1));
	CHECK_INT(sb__wheel_count(&w), 5);
	sb__timer_arm(&w, &r[0].timer, 60); /* re-arm does not add */
	CHECK_INT(sb__wheel_count(&w), 5);
	sb__timer_disarm(&r[1].timer);
	sb__timer_disarm(&r[1].timer);
	CHECK_INT(sb__wheel_count(&w), 4);
	CHECK_INT(run(&w, 30), 1);
	CHECK_INT(sb__wheel_count(&w), 3);
	CHECK_INT(sb__wheel_next(&w, 30), 10);
	CHECK_INT(run(&w, 100), 3);
	CHECK_INT(sb__wheel_count(&w), 0);
}

int main(void)
{
	RUN(test_never_early_and_in_order);
	RUN(test_exact_at_every_level_boundary);
	RUN(test_disarm_before_expiry_means_no_fire);
	RUN(test_rearm_moves_it);
	RUN(test_past_expiry_fires_on_next_run);
	RUN(test_fn_arming_a_timer_due_now);
	RUN(test_fn_rearming_itself);
	RUN(test_fn_disarming_a_timer_due_in_the_same_run);
	RUN(test_huge_expiries_after_a_big_jump);
	RUN(test_beyond_the_span_fires_on_the_ms);
	RUN(test_next_never_exceeds_the_earliest_expiry);
	RUN(test_event_loop_sleeping_next_fires_on_the_ms);
	RUN(test_count);
	return TEST_EXIT();
}
