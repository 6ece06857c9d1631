// Route table micro-benchmarks: finding a name's route, as the router does
// for every SEND and REQUEST, in tables of 16, 1,000 and 10,000 names, for
// names that are registered (hit) and names that are not (miss); and the
// name rule checked before it (core/router/pattern.c).
#include <benchmark/benchmark.h>

#include <cstdio>
#include <string>
#include <vector>

extern "C" {
#include "router/pattern.h"
#include "router/route.h"
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

// The call rule every SEND and REQUEST passes: with no rule (the default,
// range 0) and with four patterns where the name matches only the last.
void BM_CallRule(benchmark::State &state)
{
	const char *text = state.range(0) ? "user.*,billing.*,audit.log,svc*" : nullptr;
	std::vector<std::string> names = make_names(1000, "svc");
	sb__patterns p{};
	char why[256];
	if (sb__patterns_compile(&p, "allow_call_client", text, why, sizeof why) != 0) {
		sb__patterns_free(&p);
		state.SkipWithError(why);
		return;
	}
	size_t i = 0, refused = 0;
	for (auto _ : state) {
		const std::string &n = names[i];
		sb_view v = {reinterpret_cast<const uint8_t *>(n.data()),
			     static_cast<uint32_t>(n.size())};
		int ok = sb__patterns_allow(&p, v);
		benchmark::DoNotOptimize(ok);
		refused += !ok;
		i = i + 1 == names.size() ? 0 : i + 1;
	}
	sb__patterns_free(&p);
	if (refused != 0)
		state.SkipWithError("an allowed name was refused");
	state.SetItemsProcessed(state.iterations());
}

} // namespace

BENCHMARK(BM_RouteFindHit)->Arg(16)->Arg(1000)->Arg(10000);
BENCHMARK(BM_RouteFindMiss)->Arg(16)->Arg(1000)->Arg(10000);
BENCHMARK(BM_CallRule)->Arg(0)->Arg(1);
