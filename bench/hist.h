/* Log-linear latency histogram (HdrHistogram-style) for sb-bench.
 * Fixed memory, O(1) record, percentiles within half a bucket (0.4%). */
#ifndef SBB_HIST_H
#define SBB_HIST_H

#include <stdint.h>

/* 128 sub-buckets per power of two: a bucket is at most 1/128 (0.78%) of its
 * value wide, and a percentile reports the bucket's midpoint, so it is within
 * 0.4% of the exact value. Values below 256 are counted exactly. */
#define SBB_HIST_SUB_BITS 7
#define SBB_HIST_SUB      (1u << SBB_HIST_SUB_BITS)
#define SBB_HIST_BUCKETS  ((64 - SBB_HIST_SUB_BITS + 1) * SBB_HIST_SUB)

struct sbb_hist {
	uint64_t n;                       /* values recorded */
	uint64_t min, max;                /* exact extremes */
	double sum;                       /* for the mean */
	uint64_t count[SBB_HIST_BUCKETS]; /* values per bucket */
};

void sbb_hist_reset(struct sbb_hist *h);
void sbb_hist_record(struct sbb_hist *h, uint64_t v);
/** Adds every value of @p from to @p into. */
void sbb_hist_merge(struct sbb_hist *into, const struct sbb_hist *from);
/**
 * The value at quantile @p q (0..1) by nearest rank: the smallest recorded
 * value v such that at least ceil(q * n) values are <= v, as the midpoint of
 * its bucket (exact below 256; q >= 1 gives the exact max).
 * @return 0 when the histogram is empty
 */
uint64_t sbb_hist_quantile(const struct sbb_hist *h, double q);
double sbb_hist_mean(const struct sbb_hist *h);

#endif
