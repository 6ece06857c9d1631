// Timer wheel micro-benchmarks: a request's timeout armed and then cancelled
// by its reply (the common case), and armed and left to expire as the clock
// advances (a request that times out), with many other timers armed.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

extern "C" {
#include "common/timer.h"
}

namespace
{

uint64_t fired;

void on_expiry(sb__timer *)
{
	fired++;
}

// Five seconds, a typical REQUEST timeout_ms: three levels up the wheel.
constexpr uint64_t kTimeoutMs = 5000;

// Arm, then disarm before it fires, as when the reply beats the timeout.
// Arg: other timers armed meanwhile, spread over the next kTimeoutMs ms.
void BM_TimerArmCancel(benchmark::State &state)
{
	size_t others = static_cast<size_t>(state.range(0));
	std::vector<sb__timer> bg(others);
	sb__wheel w;
	sb__timer t;
	sb__wheel_init(&w, 1000000);
	for (size_t i = 0; i < others; i++) {
		sb__timer_init(&bg[i], on_expiry);
		sb__timer_arm(&w, &bg[i], 1000000 + 1 + i % kTimeoutMs);
	}
	sb__timer_init(&t, on_expiry);
	for (auto _ : state) {
		sb__timer_arm(&w, &t, 1000000 + kTimeoutMs);
		sb__timer_disarm(&t);
	}
	benchmark::DoNotOptimize(w);
	state.SetItemsProcessed(state.iterations());
}

// Every timer expires: a shard starting per_ms requests each ms, each with a
// timeout of Arg ms, none answered. One iteration arms one timer; every
// per_ms-th the clock moves on 1 ms and the wheel runs, firing the per_ms
// timers armed Arg ms before (and handing coarser slots down as they come
// round). The wheel is filled first, so it is in steady state from the start
// with Arg * per_ms timers armed. Reports per timer: arm, its share of the
// runs and cascades, and its callback.
void BM_TimerArmExpire(benchmark::State &state)
{
	constexpr uint64_t per_ms = 100;
	uint64_t timeout = static_cast<uint64_t>(state.range(0));
	std::vector<sb__timer> pool((timeout + 1) * per_ms);
	sb__wheel w;
	uint64_t now = 1000000;
	sb__wheel_init(&w, now);
	for (size_t i = 0; i < pool.size(); i++)
		sb__timer_init(&pool[i], on_expiry);
	// As if requests had been arriving for the last `timeout` ms; the loop
	// below arms those of this ms, which expire at now + timeout.
	size_t next = 0;
	for (uint64_t ms = 1; ms < timeout; ms++)
		for (uint64_t k = 0; k < per_ms; k++)
			sb__timer_arm(&w, &pool[next++], now + ms);
	fired = 0;
	uint64_t k = 0;
	for (auto _ : state) {
		// The pool is a ring: this timer fired a whole timeout ago.
		sb__timer_arm(&w, &pool[next], now + timeout);
		next = next + 1 == pool.size() ? 0 : next + 1;
		if (++k == per_ms) {
			k = 0;
			sb__wheel_run(&w, ++now);
		}
	}
	// A timer still armed when its slot in the ring came round would mean
	// the wheel fell behind: arm() would have moved it, hiding the expiry.
	uint64_t expected = state.iterations() / per_ms * per_ms;
	if (fired != expected)
		state.SkipWithError("a timer did not expire when due");
	state.SetItemsProcessed(state.iterations());
}

} // namespace

BENCHMARK(BM_TimerArmCancel)->Arg(0)->Arg(100000);
// 50 ms: level 0 only, no cascade. 5,000 ms: handed down twice on its way.
BENCHMARK(BM_TimerArmExpire)->Arg(50)->Arg(kTimeoutMs);
