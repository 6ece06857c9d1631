// Codec micro-benchmarks: encode and decode of a REQUEST with a 64-byte and a
// 4 KiB payload, the splitter over a buffer of many frames, and the in-place
// id patch the router does per forwarded frame. Reports ns per frame.
#include <benchmark/benchmark.h>

#include <cstring>
#include <vector>

#include <switchboard/proto.h>

namespace
{

// A REQUEST like the router sees in rr-64 / rr-1k: name, fixed-width from and
// timeout, and an opaque bin payload of `payload` bytes in total.
struct Sample {
	std::vector<uint8_t> payload, frame;
	sb_msg msg{};

	explicit Sample(size_t payload_bytes)
	{
		size_t body = payload_bytes - (payload_bytes <= 257 ? 2 : 3);
		payload.resize(payload_bytes);
		if (payload_bytes <= 257) {
			payload[0] = 0xc4;
			payload[1] = static_cast<uint8_t>(body);
		} else {
			payload[0] = 0xc5;
			payload[1] = static_cast<uint8_t>(body >> 8);
			payload[2] = static_cast<uint8_t>(body);
		}
		msg.kind = SB_REQUEST;
		msg.id = 123456789;
		msg.name = {reinterpret_cast<const uint8_t *>("user.create"), 11};
		msg.timeout_ms = 5000;
		msg.payload = {payload.data(), static_cast<uint32_t>(payload.size())};
		frame.resize(static_cast<size_t>(sb_encoded_size(&msg)));
		sb_encode(&msg, frame.data(), frame.size());
	}
};

void BM_Encode(benchmark::State &state)
{
	Sample s(static_cast<size_t>(state.range(0)));
	std::vector<uint8_t> out(s.frame.size());
	for (auto _ : state) {
		long n = sb_encode(&s.msg, out.data(), out.size());
		benchmark::DoNotOptimize(n);
		benchmark::ClobberMemory();
	}
	state.SetItemsProcessed(state.iterations());
	state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(s.frame.size()));
}

// What a sender does before writev(header, payload): no payload copy.
void BM_EncodeHead(benchmark::State &state)
{
	Sample s(static_cast<size_t>(state.range(0)));
	uint8_t head[SB_HEADER_MAX + SB_PREFIX_LEN];
	for (auto _ : state) {
		long n = sb_encode_head(&s.msg, head, sizeof head);
		benchmark::DoNotOptimize(n);
		benchmark::ClobberMemory();
	}
	state.SetItemsProcessed(state.iterations());
}

// The router's decode: header only, payload untouched.
void BM_Decode(benchmark::State &state)
{
	Sample s(static_cast<size_t>(state.range(0)));
	sb_msg m;
	for (auto _ : state) {
		int rc = sb_decode(s.frame.data(), s.frame.size(), 0, &m, nullptr);
		benchmark::DoNotOptimize(rc);
		benchmark::DoNotOptimize(m);
	}
	state.SetItemsProcessed(state.iterations());
}

// The client library's decode: also checks the payload is one value.
void BM_DecodeCheckPayload(benchmark::State &state)
{
	Sample s(static_cast<size_t>(state.range(0)));
	sb_msg m;
	for (auto _ : state) {
		int rc = sb_decode(s.frame.data(), s.frame.size(), SB_DECODE_PAYLOAD, &m, nullptr);
		benchmark::DoNotOptimize(rc);
		benchmark::DoNotOptimize(m);
	}
	state.SetItemsProcessed(state.iterations());
}

// Splitting a 64 KiB receive buffer full of frames: cost per frame yielded.
void BM_Split(benchmark::State &state)
{
	Sample s(static_cast<size_t>(state.range(0)));
	std::vector<uint8_t> stream;
	while (stream.size() + s.frame.size() <= 65536)
		stream.insert(stream.end(), s.frame.begin(), s.frame.end());
	size_t per_buffer = stream.size() / s.frame.size();
	sb_splitter *sp = sb_splitter_new(0);
	for (auto _ : state) {
		const uint8_t *in = stream.data();
		size_t len = stream.size();
		sb_view f;
		while (sb_splitter_next(sp, &in, &len, &f, nullptr) == 1)
			benchmark::DoNotOptimize(f);
	}
	sb_splitter_free(sp);
	state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(per_buffer));
}

void BM_PatchId(benchmark::State &state)
{
	Sample s(64);
	uint64_t id = 0;
	for (auto _ : state) {
		sb_patch_id(s.frame.data(), ++id);
		benchmark::ClobberMemory();
	}
	state.SetItemsProcessed(state.iterations());
}

} // namespace

BENCHMARK(BM_Encode)->Arg(64)->Arg(4096);
BENCHMARK(BM_EncodeHead)->Arg(64)->Arg(4096);
BENCHMARK(BM_Decode)->Arg(64)->Arg(4096);
BENCHMARK(BM_DecodeCheckPayload)->Arg(64)->Arg(4096);
BENCHMARK(BM_Split)->Arg(64)->Arg(4096);
BENCHMARK(BM_PatchId);
