// Shard mailbox micro-benchmarks: the cost of one message through a ck_ring
// between two shards, on one thread (no cache line ever moves) and between
// two threads (every index and slot line moves between cores). ns per message.
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>
#include <thread>

extern "C" {
#include <switchboard/error.h>

#include "router/mailbox.h"
}

namespace
{

// The shard loop's batch (core/router/shard.c receives 64 at a time).
constexpr unsigned kBatch = 64;

// A poll of a full or empty ring found nothing to do. Spin a little, then
// give the core away: when other load leaves the two threads one core, a
// thread that spun out its whole time slice would make each ring's worth of
// messages wait a scheduler tick (a first version measured 1 ms a message).
void backoff(unsigned &idle)
{
	if (++idle % 64 != 0) {
#if defined(__x86_64__) || defined(__i386__)
		__builtin_ia32_pause();
#endif
	} else {
		std::this_thread::yield();
	}
}

// One send and one receive on the same thread: the fixed cost a message pays
// (copy in, index stores, the send's store-load fence, copy out) with every
// line already in this core's cache. Shard 1 sends to shard 0.
void BM_MailSendRecv(benchmark::State &state)
{
	sb__mailbox *mb = sb__mailbox_new(2, 4096);
	sb__mail m{}, out;
	int wake;
	for (auto _ : state) {
		m.b++;
		sb__mail_send(mb, 1, 0, &m, &wake);
		unsigned n = sb__mail_recv(mb, 0, &out, 1);
		benchmark::DoNotOptimize(n);
		benchmark::DoNotOptimize(out);
	}
	sb__mailbox_free(mb);
	state.SetItemsProcessed(state.iterations());
}

// The same, 64 sends then one receive of all 64, as a busy shard drains its
// inbox: what batching saves on the receive side. Reports per message.
void BM_MailSendRecvBatch(benchmark::State &state)
{
	sb__mailbox *mb = sb__mailbox_new(2, 4096);
	sb__mail m{}, out[kBatch];
	int wake;
	for (auto _ : state) {
		for (unsigned i = 0; i < kBatch; i++) {
			m.b++;
			sb__mail_send(mb, 1, 0, &m, &wake);
		}
		unsigned n = sb__mail_recv(mb, 0, out, kBatch);
		benchmark::DoNotOptimize(n);
		benchmark::DoNotOptimize(out);
	}
	sb__mailbox_free(mb);
	state.SetItemsProcessed(state.iterations() * kBatch);
	state.counters["time_per_msg"] =
		benchmark::Counter(static_cast<double>(state.iterations() * kBatch),
				   benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// Two threads, shard 1 (a producer thread) sending to shard 0 (the benchmark
// thread) as fast as the ring lets it; the consumer takes up to 64 per
// receive like the shard loop. One iteration is one message received, so the
// time per iteration is the sustained cost per message, set by the slower
// side. The consumer never sleeps (it polls an empty ring), so no wake-up is
// ever due: this is the ring alone, not the eventfd handshake.
// Needs two free cores: on a loaded machine the figure is mostly scheduling.
void BM_MailTransfer(benchmark::State &state)
{
	sb__mailbox *mb = sb__mailbox_new(2, static_cast<unsigned>(state.range(0)));
	std::atomic<bool> stop{false};
	std::thread producer([&] {
		sb__mail m{};
		int wake;
		unsigned idle = 0;
		while (!stop.load(std::memory_order_relaxed)) {
			m.b++;
			if (sb__mail_send(mb, 1, 0, &m, &wake) != 0) {
				m.b--; // full: the same message again
				backoff(idle);
			}
		}
	});

	sb__mail out[kBatch];
	unsigned have = 0, next = 0;
	uint64_t expect = 1, bad = 0;
	unsigned idle = 0;
	for (auto _ : state) {
		while (next == have) {
			have = sb__mail_recv(mb, 0, out, kBatch);
			next = 0;
			if (have == 0)
				backoff(idle);
		}
		// Each message exactly once and in order: a broken ring must not
		// pass for a fast one.
		bad += out[next++].b != expect++;
	}
	stop.store(true, std::memory_order_relaxed);
	producer.join();
	sb__mailbox_free(mb);
	if (bad != 0)
		state.SkipWithError("messages lost, repeated or out of order");
	state.SetItemsProcessed(state.iterations());
}

} // namespace

BENCHMARK(BM_MailSendRecv);
BENCHMARK(BM_MailSendRecvBatch);
// 64 slots as in the tests, 4,096 as the router's default up to 8 shards.
BENCHMARK(BM_MailTransfer)->Arg(64)->Arg(4096)->UseRealTime();
