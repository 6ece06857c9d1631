/* Log-linear latency histogram: see hist.h for the precision it promises
 * and tests/unit/test_hist.c for the check that it keeps it. */
#include "hist.h"

#include <math.h>
#include <string.h>

static unsigned bucket_of(uint64_t v)
{
	if (v < SBB_HIST_SUB)
		return (unsigned)v;
	unsigned msb = 63u - (unsigned)__builtin_clzll(v);
	unsigned shift = msb - SBB_HIST_SUB_BITS;
	/* v >> shift lies in [SUB, 2*SUB): the top 8 bits, leading 1 included. */
	return (shift + 1) * SBB_HIST_SUB + (unsigned)(v >> shift) - SBB_HIST_SUB;
}

/* Midpoint of bucket i; the inverse of bucket_of() to within half a width. */
static uint64_t value_of(unsigned i)
{
	if (i < 2 * SBB_HIST_SUB)
		return i;
	unsigned shift = i / SBB_HIST_SUB - 1;
	uint64_t lo = (uint64_t)(i % SBB_HIST_SUB + SBB_HIST_SUB) << shift;
	return lo + ((uint64_t)1 << shift) / 2;
}

void sbb_hist_reset(struct sbb_hist *h)
{
	memset(h, 0, sizeof *h);
}

void sbb_hist_record(struct sbb_hist *h, uint64_t v)
{
	h->count[bucket_of(v)]++;
	if (h->n == 0 || v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
	h->n++;
	h->sum += (double)v;
}

void sbb_hist_merge(struct sbb_hist *into, const struct sbb_hist *from)
{
	if (from->n == 0)
		return;
	for (unsigned i = 0; i < SBB_HIST_BUCKETS; i++)
		into->count[i] += from->count[i];
	if (into->n == 0 || from->min < into->min)
		into->min = from->min;
	if (from->max > into->max)
		into->max = from->max;
	into->n += from->n;
	into->sum += from->sum;
}

uint64_t sbb_hist_quantile(const struct sbb_hist *h, double q)
{
	if (h->n == 0)
		return 0;
	if (q >= 1)
		return h->max;
	uint64_t rank = (uint64_t)ceil(q * (double)h->n), seen = 0;
	if (rank == 0)
		rank = 1;
	for (unsigned i = 0; i < SBB_HIST_BUCKETS; i++) {
		seen += h->count[i];
		if (seen >= rank) {
			/* The midpoint can overshoot the true max in a sparse top
			 * bucket; the exact extremes bound every answer. */
			uint64_t v = value_of(i);
			return v > h->max ? h->max : v < h->min ? h->min : v;
		}
	}
	return h->max;
}

double sbb_hist_mean(const struct sbb_hist *h)
{
	return h->n ? h->sum / (double)h->n : 0;
}
