/* sb-bench's latency histogram: for samples shaped like real latencies, every
 * percentile it reports is within its stated precision of the exact value
 * taken from the sorted samples. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "hist.h"
#include "support/testlib.h"

#define N 200000

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static struct sbb_hist h;
static uint64_t v[N];

/* Records v[0..n), then compares each percentile with the nearest-rank value
 * of the sorted samples: half a bucket, 1/256 of the value, is the promise. */
static void check_against_sorted(size_t n)
{
	static const double qs[] = {0.0001, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999, 1.0};
	sbb_hist_reset(&h);
	for (size_t i = 0; i < n; i++)
		sbb_hist_record(&h, v[i]);
	qsort(v, n, sizeof v[0], cmp_u64);
	CHECK_INT(h.n, n);
	CHECK_INT(h.min, v[0]);
	CHECK_INT(h.max, v[n - 1]);
	for (size_t k = 0; k < sizeof qs / sizeof qs[0]; k++) {
		size_t rank = (size_t)ceil(qs[k] * (double)n);
		uint64_t exact = v[rank - 1], got = sbb_hist_quantile(&h, qs[k]);
		double err = fabs((double)got - (double)exact);
		if (err > (double)exact / 256.0 + 0.5) {
			fprintf(stderr, "q %g: got %llu, exact %llu\n", qs[k],
				(unsigned long long)got, (unsigned long long)exact);
			CHECK(0);
		}
	}
}

/* Latencies spread over six decades, 1 us to 1 s in ns, as a loaded run has. */
static void log_uniform_spread(void)
{
	for (size_t i = 0; i < N; i++)
		v[i] = (uint64_t)exp(log(1e3) + (double)(rnd() % 1000000) / 1e6 * log(1e6));
	check_against_sorted(N);
}

/* A tight peak with a long thin tail: p99.99 lands on a sparse bucket. */
static void peak_with_tail(void)
{
	for (size_t i = 0; i < N; i++)
		v[i] = i % 1000 == 0 ? 1000000 + rnd() % 50000000 : 180000 + rnd() % 20000;
	check_against_sorted(N);
}

/* Below 256 every value has its own bucket: percentiles are exact. */
static void small_values_exact(void)
{
	for (size_t i = 0; i < N; i++)
		v[i] = rnd() % 256;
	check_against_sorted(N);
	CHECK_INT(sbb_hist_quantile(&h, 0.5), v[N / 2 - 1]);
}

/* The extremes of uint64_t land in the first and last buckets. */
static void full_range(void)
{
	sbb_hist_reset(&h);
	sbb_hist_record(&h, 0);
	sbb_hist_record(&h, UINT64_MAX);
	CHECK_INT(sbb_hist_quantile(&h, 0.5), 0);
	CHECK(sbb_hist_quantile(&h, 1.0) == UINT64_MAX);
}

/* Merging two halves gives the same answers as recording everything once. */
static void merge_equals_whole(void)
{
	static struct sbb_hist a, b;
	sbb_hist_reset(&a);
	sbb_hist_reset(&b);
	sbb_hist_reset(&h);
	for (size_t i = 0; i < N; i++) {
		uint64_t x = 1000 + rnd() % 10000000;
		sbb_hist_record(i % 2 ? &a : &b, x);
		sbb_hist_record(&h, x);
	}
	sbb_hist_merge(&a, &b);
	CHECK_INT(a.n, h.n);
	CHECK_INT(sbb_hist_quantile(&a, 0.99), sbb_hist_quantile(&h, 0.99));
	CHECK_INT(a.max, h.max);
}

int main(void)
{
	RUN(log_uniform_spread);
	RUN(peak_with_tail);
	RUN(small_values_exact);
	RUN(full_range);
	RUN(merge_equals_whole);
	return TEST_EXIT();
}
