/* Hierarchical timer wheel: coarse levels hand their timers down as the clock
 * nears them, so every timer reaches the 1 ms level and fires at its exact ms. */
#include <stddef.h>

#include "common/timer.h"

#define SPAN ((uint64_t)1 << (SB__WHEEL_BITS * SB__WHEEL_LEVELS))
#define MASK (SB__WHEEL_SLOTS - 1u)

static uint64_t bit(unsigned s)
{
	return (uint64_t)1 << s;
}

static void link_first(struct sb__timer **head, struct sb__timer *t)
{
	t->next = *head;
	if (t->next != NULL)
		t->next->pprev = &t->next;
	*head = t;
	t->pprev = head;
}

static void unlink_timer(struct sb__timer *t)
{
	*t->pprev = t->next;
	if (t->next != NULL)
		t->next->pprev = t->pprev;
	t->next = NULL;
	t->pprev = NULL;
}

/* Level L slot s is visited (fired at level 0, handed down above it) at each
 * ms k * 64^L with k % 64 == s. A timer goes to the level of the highest
 * 6-bit group of delta = e - clk, because with 64^L <= delta < 64^(L+1) the
 * first visit of its slot from clk on is at e rounded down to a multiple of
 * 64^L: never after e, and the previous visit was before clk. Handed down
 * level by level, it reaches level 0 and fires at e exactly. */
static void place(struct sb__wheel *w, struct sb__timer *t)
{
	uint64_t e = t->expires;

	if (e < w->clk) {
		/* Its slot has been passed: waiting in the wheel would be a whole
		 * revolution late. */
		t->slot = SB__WHEEL_DUE;
		link_first(&w->due, t);
		return;
	}
	uint64_t delta = e - w->clk;
	if (delta >= SPAN) {
		/* Too far for any slot: park it in the last one the top level can
		 * reach. Its visit comes before the expiry, and placing it again
		 * then either parks it further on or finds it a real slot. */
		delta = SPAN - 1;
		e = w->clk + delta;
	}
	unsigned level = 0;
	while (delta >> (SB__WHEEL_BITS * (level + 1)) != 0)
		level++;
	unsigned s = (unsigned)(e >> (SB__WHEEL_BITS * level)) & MASK;
	t->slot = (uint16_t)(level * SB__WHEEL_SLOTS + s);
	link_first(&w->slots[t->slot], t);
	w->occupied[level] |= bit(s);
}

/* The first ms at or after clk that visits an occupied slot of level, or
 * UINT64_MAX. Found from the bitmap, so a run over a quiet hour costs as much
 * as one over a quiet ms. */
static uint64_t next_visit(const struct sb__wheel *w, unsigned level)
{
	uint64_t occ = w->occupied[level];
	if (occ == 0)
		return UINT64_MAX;
	unsigned shift = SB__WHEEL_BITS * level;
	/* The slot of the period clk is in was visited when that period began. */
	uint64_t k = (w->clk + (((uint64_t)1 << shift) - 1)) >> shift;
	unsigned from = (unsigned)k & MASK;
	uint64_t rot = from == 0 ? occ : occ >> from | occ << (SB__WHEEL_SLOTS - from);
	return (k + (unsigned)__builtin_ctzll(rot)) << shift;
}

static uint64_t next_event(const struct sb__wheel *w)
{
	uint64_t at = UINT64_MAX;
	for (unsigned level = 0; level < SB__WHEEL_LEVELS; level++) {
		uint64_t v = next_visit(w, level);
		if (v < at)
			at = v;
	}
	return at;
}

/* Moves a slot's timers to wherever they belong from clk on: a lower level,
 * or (parked far timers) a later slot of the top level. */
static void cascade(struct sb__wheel *w, unsigned level, unsigned s)
{
	struct sb__timer *t = w->slots[level * SB__WHEEL_SLOTS + s];

	w->slots[level * SB__WHEEL_SLOTS + s] = NULL;
	w->occupied[level] &= ~bit(s);
	while (t != NULL) {
		struct sb__timer *next = t->next;
		place(w, t);
		t = next;
	}
}

/* The list about to fire hangs off the wheel, not a local: a fn that disarms
 * a timer due in the same ms unlinks it from there like from any slot. */
static void take(struct sb__wheel *w, struct sb__timer **head)
{
	w->expiring = *head;
	if (w->expiring != NULL)
		w->expiring->pprev = &w->expiring;
	*head = NULL;
}

static unsigned fire(struct sb__wheel *w)
{
	unsigned n = 0;
	struct sb__timer *t;

	while ((t = w->expiring) != NULL) {
		unlink_timer(t);
		w->count--;
		n++;
		t->fn(t);
	}
	return n;
}

void sb__wheel_init(struct sb__wheel *w, uint64_t now_ms)
{
	*w = (struct sb__wheel){.clk = now_ms};
}

void sb__timer_init(struct sb__timer *t, void (*fn)(struct sb__timer *))
{
	*t = (struct sb__timer){.fn = fn};
}

void sb__timer_arm(struct sb__wheel *w, struct sb__timer *t, uint64_t expires_ms)
{
	sb__timer_disarm(t);
	t->wheel = w;
	t->expires = expires_ms;
	place(w, t);
	w->count++;
}

void sb__timer_disarm(struct sb__timer *t)
{
	if (t->pprev == NULL)
		return;
	struct sb__wheel *w = t->wheel;
	unlink_timer(t);
	w->count--;
	/* Recomputed from the head rather than cleared: a timer on the expiring
	 * list still names its old slot, which may have been filled again. */
	if (t->slot < SB__WHEEL_DUE && w->slots[t->slot] == NULL)
		w->occupied[t->slot / SB__WHEEL_SLOTS] &= ~bit(t->slot % SB__WHEEL_SLOTS);
}

int sb__timer_armed(const struct sb__timer *t)
{
	return t->pprev != NULL;
}

unsigned sb__wheel_run(struct sb__wheel *w, uint64_t now_ms)
{
	unsigned fired = 0;

	take(w, &w->due);
	fired += fire(w);
	while (w->clk <= now_ms) {
		uint64_t at = next_event(w);
		if (at > now_ms) {
			w->clk = now_ms + 1;
			break;
		}
		w->clk = at;
		for (unsigned level = SB__WHEEL_LEVELS - 1; level > 0; level--) {
			unsigned shift = SB__WHEEL_BITS * level;
			if ((at & (((uint64_t)1 << shift) - 1)) != 0)
				continue;
			unsigned s = (unsigned)(at >> shift) & MASK;
			if (w->occupied[level] & bit(s))
				cascade(w, level, s);
		}
		unsigned s = (unsigned)at & MASK;
		take(w, &w->slots[s]);
		w->occupied[0] &= ~bit(s);
		/* Before any fn runs: a timer it arms for this ms must go to the
		 * due list, since this slot's next visit is 64 ms away. */
		w->clk = at + 1;
		fired += fire(w);
	}
	return fired;
}

uint64_t sb__wheel_next(const struct sb__wheel *w, uint64_t now_ms)
{
	if (w->count == 0)
		return UINT64_MAX;
	if (w->due != NULL || w->expiring != NULL)
		return 0;
	uint64_t at = next_event(w);
	return at > now_ms ? at - now_ms : 0;
}

unsigned sb__wheel_count(const struct sb__wheel *w)
{
	return w->count;
}
