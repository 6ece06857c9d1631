// Request table micro-benchmarks: a shard holding N requests in flight
// allocates an id for each new request, looks it up when the reply comes
// back and frees it, in steady state at 1,000 and 100,000 live entries.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

extern "C" {
#include "router/reqtab.h"
}

namespace
{

// The size of the router's struct sb__req on x86-64 (timer, two list links,
// ids, callback): alloc zeroes this many bytes.
struct Entry {
	unsigned char bytes[136];
};

// A table with n live entries and their ids, allocated in order.
struct Table {
	sb__reqtab t;
	std::vector<uint64_t> ids;

	explicit Table(size_t n) : ids(n)
	{
		sb__reqtab_init(&t, 3, sizeof(Entry), 1u << 20);
		for (uint64_t &id : ids)
			sb__reqtab_alloc(&t, &id);
	}
	~Table()
	{
		sb__reqtab_destroy(&t);
	}
};

// The oldest request completes and a new one starts: free then alloc, the
// live count staying at N. The new request reuses the slot just freed
// (last in, first out), so this is the table's best case for the cache.
void BM_ReqtabFreeAlloc(benchmark::State &state)
{
	Table tab(static_cast<size_t>(state.range(0)));
	size_t i = 0;
	for (auto _ : state) {
		sb__reqtab_free(&tab.t, tab.ids[i]);
		void *e = sb__reqtab_alloc(&tab.t, &tab.ids[i]);
		benchmark::DoNotOptimize(e);
		i = i + 1 == tab.ids.size() ? 0 : i + 1;
	}
	state.SetItemsProcessed(state.iterations());
}

// A reply arrives for one of the N requests: the lookup by id. Ids are taken
// in a scattered order, so at 100,000 entries (16 MB) most lookups miss the
// cache as replies from many connections would.
void BM_ReqtabGet(benchmark::State &state)
{
	size_t n = static_cast<size_t>(state.range(0));
	Table tab(n);
	std::vector<uint64_t> order(n);
	for (size_t i = 0; i < n; i++)
		order[i] = tab.ids[(i * 7919) % n]; // 7919 is prime: a permutation
	size_t i = 0, missing = 0;
	for (auto _ : state) {
		void *e = sb__reqtab_get(&tab.t, order[i]);
		benchmark::DoNotOptimize(e);
		missing += e == nullptr;
		i = i + 1 == n ? 0 : i + 1;
	}
	if (missing != 0)
		state.SkipWithError("a live id was not found");
	state.SetItemsProcessed(state.iterations());
}

// A request's whole life in the table: alloc, one lookup by its id when the
// reply comes, free; N others stay live throughout.
void BM_ReqtabLifecycle(benchmark::State &state)
{
	Table tab(static_cast<size_t>(state.range(0)));
	for (auto _ : state) {
		uint64_t id;
		void *e = sb__reqtab_alloc(&tab.t, &id);
		benchmark::DoNotOptimize(e);
		e = sb__reqtab_get(&tab.t, id);
		benchmark::DoNotOptimize(e);
		sb__reqtab_free(&tab.t, id);
	}
	state.SetItemsProcessed(state.iterations());
}

} // namespace

BENCHMARK(BM_ReqtabFreeAlloc)->Arg(1000)->Arg(100000);
BENCHMARK(BM_ReqtabGet)->Arg(1000)->Arg(100000);
BENCHMARK(BM_ReqtabLifecycle)->Arg(1000)->Arg(100000);
