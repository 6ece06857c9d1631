// sb-bench's latency histogram: recording one latency (done for every reply
// the load generator receives, so it must cost next to nothing) and reading
// a percentile (done once per report).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

extern "C" {
#include "hist.h"
}

namespace
{

// Latencies in ns spread like a loaded run's: 20 µs to ~10 ms, so records
// land in many buckets rather than one hot counter.
std::vector<uint64_t> latencies()
{
	std::vector<uint64_t> v(4096);
	uint64_t x = 0x9e3779b97f4a7c15ull;
	for (auto &l : v) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		l = 20000 + (x % 10000000) * (x % 7 == 0 ? 1 : x % 97) / 97;
	}
	return v;
}

void BM_HistRecord(benchmark::State &state)
{
	static sbb_hist h;
	sbb_hist_reset(&h);
	auto v = latencies();
	size_t i = 0;
	for (auto _ : state) {
		sbb_hist_record(&h, v[i++ & 4095]);
	}
	benchmark::DoNotOptimize(h.n);
	state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_HistRecord);

void BM_HistQuantile(benchmark::State &state)
{
	static sbb_hist h;
	sbb_hist_reset(&h);
	for (uint64_t l : latencies())
		sbb_hist_record(&h, l);
	for (auto _ : state)
		benchmark::DoNotOptimize(sbb_hist_quantile(&h, 0.99));
}
BENCHMARK(BM_HistQuantile);

} // namespace
