// Route table micro-benchmarks: finding a name's route, as the router does
// for every SEND and REQUEST, in tables of 16, 1,000 and 10,000 names, for
// names that are registered (hit) and names that are not (miss).
#include <benchmark/benchmark.h>

#include <cstdio>
#include <string>
#include <vector>

extern "C" {
#include "route.h"
}

namespace
{

// Names shaped like real ones ("user.create" is 11 bytes): 13 bytes, a
// service and a method. Lookups walk the names in a scattered order so that
// a large table is not read from one warm cache line.
std::vector<std::string> make_names(size_t n, const char *prefix)
{
	std::vector<std::string> names;
	char buf[32];
	for (size_t i = 0; i < n; i++) {
		size_t k = (i * 7919) % n; // 7919 is prime: a permutation of 0..n-1
		std::snprintf(buf, sizeof buf, "%s%05zu.call", prefix, k);
		names.emplace_back(buf);
	}
	return names;
}

struct Table {
	sb__routes t;

	explicit Table(const std::vector<std::string> &names)
	{
		sb__routes_init(&t);
		uint64_t ep = 1;
		for (const std::string &n : names)
			sb__routes_add(&t, n.data(), static_cast<uint32_t>(n.size()), ep++, 0,
				       nullptr);
	}
	~Table()
	{
		sb__routes_destroy(&t);
	}
};

void find_all(benchmark::State &state, const Table &table, const std::vector<std::string> &names,
	      bool want)
{
	size_t i = 0, wrong = 0;
	for (auto _ : state) {
		const std::string &n = names[i];
		sb__route *r = sb__routes_find(&table.t, n.data(), static_cast<uint32_t>(n.size()));
		benchmark::DoNotOptimize(r);
		wrong += (r != nullptr) != want;
		i = i + 1 == names.size() ? 0 : i + 1;
	}
	if (wrong != 0)
		state.SkipWithError(want ? "a registered name was not found"
					 : "a stray name was found");
	state.SetItemsProcessed(state.iterations());
}

void BM_RouteFindHit(benchmark::State &state)
{
	std::vector<std::string> names = make_names(static_cast<size_t>(state.range(0)), "svc");
	Table table(names);
	find_all(state, table, names, true);
}

// Same length and shape, never registered: the probe runs until an empty slot.
void BM_RouteFindMiss(benchmark::State &state)
{
	size_t n = static_cast<size_t>(state.range(0));
	Table table(make_names(n, "svc"));
	find_all(state, table, make_names(n, "sv_"), false);
}

} // namespace

BENCHMARK(BM_RouteFindHit)->Arg(16)->Arg(1000)->Arg(10000);
BENCHMARK(BM_RouteFindMiss)->Arg(16)->Arg(1000)->Arg(10000);
