/* Per-route statistics (rstat.h). */
#include <stdlib.h>
#include <string.h>

#include <switchboard/error.h>

#include "router/rstat.h"

void sb__rstats_init(struct sb__rstats *t, unsigned nshards)
{
	memset(t, 0, sizeof *t);
	pthread_mutex_init(&t->lock, NULL);
	sb__routes_init(&t->index);
	t->nshards = nshards;
}

void sb__rstats_destroy(struct sb__rstats *t)
{
	for (uint32_t i = 0; i < t->n; i++) {
		free(t->v[i]->per);
		free(t->v[i]);
	}
	free(t->v);
	sb__routes_destroy(&t->index);
	pthread_mutex_destroy(&t->lock);
}

static struct sb__rstat *create(struct sb__rstats *t, const char *name, uint32_t len)
{
	if (t->n == t->cap) {
		uint32_t cap = t->cap ? t->cap * 2 : 16;
		struct sb__rstat **v = realloc(t->v, cap * sizeof *v);
		if (v == NULL)
			return NULL;
		t->v = v;
		t->cap = cap;
	}
	struct sb__rstat *s = calloc(1, sizeof *s);
	if (s == NULL)
		return NULL;
	s->per = aligned_alloc(64, t->nshards * sizeof *s->per);
	if (s->per == NULL || sb__routes_add(&t->index, name, len, t->n, 0, NULL) != 0) {
		free(s->per);
		free(s);
		return NULL;
	}
	memset(s->per, 0, t->nshards * sizeof *s->per);
	s->len = len;
	memcpy(s->name, name, len);
	t->v[t->n++] = s;
	return s;
}

struct sb__rstat *sb__rstat_intern(struct sb__rstats *t, const char *name, uint32_t len)
{
	struct sb__rstat *s;
	if (len >= sizeof s->name)
		return NULL;
	pthread_mutex_lock(&t->lock);
	struct sb__route *r = sb__routes_find(&t->index, name, len);
	s = r != NULL && r->n > 0 ? t->v[r->eps[0].ep] : create(t, name, len);
	pthread_mutex_unlock(&t->lock);
	return s;
}

static unsigned bucket_of(uint64_t us)
{
	if (us < SB__RSTAT_SUB)
		return (unsigned)us;
	unsigned msb = 63u - (unsigned)__builtin_clzll(us);
	unsigned shift = msb - SB__RSTAT_SUB_BITS;
	unsigned i = (shift + 1) * SB__RSTAT_SUB + (unsigned)(us >> shift) - SB__RSTAT_SUB;
	return i < SB__RSTAT_BUCKETS ? i : SB__RSTAT_BUCKETS - 1;
}

/* The upper edge of bucket i: a percentile is reported as at most this. */
static uint64_t bucket_top(unsigned i)
{
	if (i < SB__RSTAT_SUB)
		return i;
	unsigned shift = i / SB__RSTAT_SUB - 1;
	uint64_t lo = (uint64_t)(i % SB__RSTAT_SUB + SB__RSTAT_SUB) << shift;
	return lo + ((uint64_t)1 << shift) - 1;
}

void sb__rstat_latency(struct sb__rstat_shard *s, uint64_t us)
{
	sb__rstat_inc(&s->lat[bucket_of(us)]);
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
			*qs[q++].out = bucket_top(i);
		if (lat[i] > 0)
			out->max_us = bucket_top(i);
	}
}
