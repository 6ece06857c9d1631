/* Per-route statistics (rstat.h). */
#include <stdlib.h>
#include <string.h>

#include <switchboard/error.h>

#include "router/rstat.h"

/*
 * Reclaiming a record. It is shared by every shard's route for the name and
 * by the requests in flight that will count into it, and read by $sb.stats
 * on any shard, so it may go only when no shard can touch it any more.
 * Each shard counts its own holders in its own slot (`hold`: its route for
 * the name, and its requests counted under it), a plain field no other
 * thread reads; a shard's first holder takes one of the record's `refs`
 * and its last gives it back, both under the table's lock. With no refs, no
 * route points at the record and no request carries it: no shard can reach
 * it but through the table, which readers walk under that same lock, so
 * once it leaves the table nobody can see it. Per request this costs a
 * plain increment and decrement in a line the shard writes anyway (no
 * atomic read-modify-write on a line every shard shares, as a plain
 * reference count would be); the lock is taken only when a name appears
 * on or leaves a shard. Epochs or hazard pointers would need every shard
 * to publish what it reads; here each writer is already its slot's only one.
 */

/* The record an index entry stands for. */
static struct sb__rstat *rec_of(const struct sb__route *r)
{
	return (struct sb__rstat *)(uintptr_t)r->eps[0].ep;
}

static void rec_free(struct sb__rstat *s)
{
	free(s->per);
	free(s);
}

void sb__rstats_init(struct sb__rstats *t, unsigned nshards)
{
	memset(t, 0, sizeof *t);
	pthread_mutex_init(&t->lock, NULL);
	sb__routes_init(&t->index);
	sb__link_init(&t->idle);
	t->nshards = nshards;
}

void sb__rstats_destroy(struct sb__rstats *t)
{
	for (uint32_t i = 0; t->index.slots != NULL && i <= t->index.mask; i++)
		if (t->index.slots[i] != NULL)
			rec_free(rec_of(t->index.slots[i]));
	sb__routes_destroy(&t->index);
	pthread_mutex_destroy(&t->lock);
}

static struct sb__rstat *create(struct sb__rstats *t, const char *name, uint32_t len)
{
	struct sb__rstat *s = calloc(1, sizeof *s);
	if (s == NULL)
		return NULL;
	s->per = aligned_alloc(64, t->nshards * sizeof *s->per);
	if (s->per == NULL ||
	    sb__routes_add(&t->index, name, len, (uint64_t)(uintptr_t)s, 0, NULL) != 0) {
		rec_free(s);
		return NULL;
	}
	memset(s->per, 0, t->nshards * sizeof *s->per);
	s->len = len;
	memcpy(s->name, name, len);
	sb__link_init(&s->idle);
	return s;
}

struct sb__rstat *sb__rstat_hold(struct sb__rstats *t, const char *name, uint32_t len,
				 unsigned shard)
{
	struct sb__rstat *s;
	if (len >= sizeof s->name)
		return NULL;
	pthread_mutex_lock(&t->lock);
	struct sb__route *r = sb__routes_find(&t->index, name, len);
	s = r != NULL && r->n > 0 ? rec_of(r) : create(t, name, len);
	if (s != NULL && s->per[shard].hold++ == 0 && s->refs++ == 0 && !sb__link_empty(&s->idle)) {
		sb__link_del(&s->idle); /* kept, and held again: its counts go on */
		t->nidle--;
	}
	pthread_mutex_unlock(&t->lock);
	return s;
}

void sb__rstat_drop(struct sb__rstats *t, struct sb__rstat *s, unsigned shard)
{
	if (--s->per[shard].hold > 0)
		return;
	pthread_mutex_lock(&t->lock);
	if (--s->refs == 0) {
		sb__link_add_tail(&t->idle, &s->idle);
		if (++t->nidle > SB__RSTAT_KEEP) {
			struct sb__rstat *old = SB__CONTAINER(t->idle.next, struct sb__rstat, idle);
			sb__link_del(&old->idle);
			t->nidle--;
			sb__routes_del(&t->index, old->name, old->len, (uint64_t)(uintptr_t)old);
			rec_free(old);
		}
	}
	pthread_mutex_unlock(&t->lock);
}

/* Bytewise, a prefix first: the order $sb.stats pages in. */
static int name_cmp(const char *a, uint32_t alen, const char *b, uint32_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);
	return c != 0 ? c : (alen > blen) - (alen < blen);
}

static int by_name(const void *x, const void *y)
{
	const struct sb__rstat *a = *(struct sb__rstat *const *)x;
	const struct sb__rstat *b = *(struct sb__rstat *const *)y;
	return name_cmp(a->name, a->len, b->name, b->len);
}

long sb__rstats_sorted(struct sb__rstats *t, const char *after, uint32_t after_len,
		       struct sb__rstat ***out)
{
	long n = 0;
	struct sb__rstat **v = malloc((t->index.count + 1) * sizeof *v);
	if (v == NULL)
		return -1;
	for (uint32_t i = 0; t->index.slots != NULL && i <= t->index.mask; i++) {
		const struct sb__route *r = t->index.slots[i];
		if (r == NULL)
			continue;
		struct sb__rstat *s = rec_of(r);
		if (after == NULL || name_cmp(s->name, s->len, after, after_len) > 0)
			v[n++] = s;
	}
	qsort(v, (size_t)n, sizeof *v, by_name);
	*out = v;
	return n;
}

unsigned sb__rstat_bucket(uint64_t us)
{
	if (us < SB__RSTAT_SUB)
		return (unsigned)us;
	unsigned msb = 63u - (unsigned)__builtin_clzll(us);
	unsigned shift = msb - SB__RSTAT_SUB_BITS;
	unsigned i = (shift + 1) * SB__RSTAT_SUB + (unsigned)(us >> shift) - SB__RSTAT_SUB;
	return i < SB__RSTAT_BUCKETS ? i : SB__RSTAT_BUCKETS - 1;
}

/* The upper edge of bucket i: a percentile is reported as at most this. */
uint64_t sb__rstat_bucket_top(unsigned i)
{
	if (i < SB__RSTAT_SUB)
		return i;
	unsigned shift = i / SB__RSTAT_SUB - 1;
	uint64_t lo = (uint64_t)(i % SB__RSTAT_SUB + SB__RSTAT_SUB) << shift;
	return lo + ((uint64_t)1 << shift) - 1;
}

void sb__rstat_latency(struct sb__rstat_shard *s, uint64_t us)
{
	sb__rstat_inc(&s->lat[sb__rstat_bucket(us)]);
	atomic_store_explicit(&s->lat_sum_us,
			      atomic_load_explicit(&s->lat_sum_us, memory_order_relaxed) + us,
			      memory_order_relaxed);
}

static uint64_t ld(const _Atomic uint64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

void sb__rstat_sum(const struct sb__rstats *t, const struct sb__rstat *s, struct sb__rstat_sum *out)
{
	uint64_t lat[SB__RSTAT_BUCKETS] = {0}, n = 0;

	memset(out, 0, sizeof *out);
	for (unsigned k = 0; k < t->nshards; k++) {
		const struct sb__rstat_shard *p = &s->per[k];
		out->requests += ld(&p->requests);
		out->sends += ld(&p->sends);
		out->replies += ld(&p->replies);
		out->errors += ld(&p->errors);
		out->timeouts += ld(&p->timeouts);
		for (unsigned i = 0; i < SB__RSTAT_BUCKETS; i++)
			lat[i] += ld(&p->lat[i]);
	}
	for (unsigned i = 0; i < SB__RSTAT_BUCKETS; i++)
		n += lat[i];
	if (n == 0)
		return;
	/* Percentile q is the first bucket where the running count reaches
	 * ceil(q * n): p99 of 100 samples is the 99th, not the 100th. */
	const struct {
		uint64_t *out;
		unsigned permille;
	} qs[] = {{&out->p50_us, 500}, {&out->p90_us, 900}, {&out->p99_us, 990}};
	uint64_t run = 0;
	unsigned q = 0;
	for (unsigned i = 0; i < SB__RSTAT_BUCKETS; i++) {
		run += lat[i];
		while (q < 3 && run * 1000 >= n * qs[q].permille && run > 0)
			*qs[q++].out = sb__rstat_bucket_top(i);
		if (lat[i] > 0)
			out->max_us = sb__rstat_bucket_top(i);
	}
}
