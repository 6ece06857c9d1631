// WebSocket framing micro-benchmarks: what the edge pays per message to
// read a client's masked binary frame (parse, unmask, hand the message
// over) and to write a server frame's header, for our framer
// (core/router/ws.c) and, when Debian's libwslay-dev is installed, for
// wslay's frame layer and its event layer side by side (docs/gateway.md
// has the figures and the decision they made).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <vector>

extern "C" {
#include "router/ws.h"
}
#ifdef SB_HAVE_WSLAY
#include <wslay/wslay.h>
#endif

namespace
{

// 64 KiB (at least one frame) of masked binary frames of @p size bytes each,
// as a browser sends them: whole frames back to back, so the stream can be
// read round and round.
std::vector<uint8_t> frames(size_t size)
{
	const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
	std::vector<uint8_t> out;
	do {
		out.push_back(0x82);
		if (size < 126) {
			out.push_back(0x80 | (uint8_t)size);
		} else {
			out.push_back(0x80 | 126);
			out.push_back((uint8_t)(size >> 8));
			out.push_back((uint8_t)size);
		}
		out.insert(out.end(), key, key + 4);
		for (size_t i = 0; i < size; i++)
			out.push_back((uint8_t)(i * 7) ^ key[i & 3]);
	} while (out.size() < 65536);
	return out;
}

void BM_WsReadMessage(benchmark::State &state)
{
	std::vector<uint8_t> in = frames((size_t)state.range(0));
	sb__ws ws;
	size_t at = 0, used;
	sb__ws_event ev;

	sb__ws_init(&ws, 0, 0);
	for (auto _ : state) {
		// One message: here always one frame, in one piece, by reference.
		if (sb__ws_next(&ws, in.data() + at, in.size() - at, &used, &ev) != SB__WS_MESSAGE)
			state.SkipWithError("not a message");
		benchmark::DoNotOptimize(ev.data);
		at += used;
		if (at == in.size())
			at = 0;
	}
	sb__ws_free(&ws);
	state.SetBytesProcessed((int64_t)state.iterations() * state.range(0));
}
BENCHMARK(BM_WsReadMessage)->Arg(64)->Arg(4096);

void BM_WsWriteHeader(benchmark::State &state)
{
	uint8_t h[SB__WS_HEADER_MAX];
	uint64_t len = (uint64_t)state.range(0);
	for (auto _ : state) {
		benchmark::DoNotOptimize(len);
		size_t n = sb__ws_header(h, SB__WS_BINARY, 1, len);
		benchmark::DoNotOptimize(n);
		benchmark::DoNotOptimize(h);
	}
}
BENCHMARK(BM_WsWriteHeader)->Arg(64)->Arg(4096);

#ifdef SB_HAVE_WSLAY
// The stream as wslay reads it: through a callback that copies into its
// own buffer, round and round.
struct Stream {
	const std::vector<uint8_t> *in;
	size_t at;
};

ssize_t stream_recv(uint8_t *buf, size_t len, Stream *s)
{
	size_t n = s->in->size() - s->at;
	if (n > len)
		n = len;
	memcpy(buf, s->in->data() + s->at, n);
	s->at += n;
	if (s->at == s->in->size())
		s->at = 0;
	return (ssize_t)n;
}

ssize_t frame_recv(uint8_t *buf, size_t len, int, void *user)
{
	return stream_recv(buf, len, static_cast<Stream *>(user));
}

void BM_WslayFrameReadMessage(benchmark::State &state)
{
	std::vector<uint8_t> in = frames((size_t)state.range(0));
	Stream s = {&in, 0};
	wslay_frame_callbacks cb = {nullptr, frame_recv, nullptr};
	wslay_frame_context_ptr ctx;
	wslay_frame_iocb iocb;

	wslay_frame_context_init(&ctx, &cb, &s);
	for (auto _ : state) {
		// wslay hands a frame's payload out in pieces of its 4 KiB buffer,
		// unmasked there: read until the frame's last byte.
		uint64_t got = 0;
		do {
			memset(&iocb, 0, sizeof iocb);
			ssize_t r = wslay_frame_recv(ctx, &iocb);
			if (r < 0) {
				state.SkipWithError("wslay_frame_recv failed");
				break;
			}
			benchmark::DoNotOptimize(iocb.data);
			got += iocb.data_length;
		} while (got < iocb.payload_length);
	}
	wslay_frame_context_free(ctx);
	state.SetBytesProcessed((int64_t)state.iterations() * state.range(0));
}
BENCHMARK(BM_WslayFrameReadMessage)->Arg(64)->Arg(4096);

ssize_t event_recv(wslay_event_context_ptr, uint8_t *buf, size_t len, int, void *user)
{
	return stream_recv(buf, len, static_cast<Stream *>(user));
}

struct EventStream {
	Stream s;
	int messages;
};

void on_msg(wslay_event_context_ptr, const wslay_event_on_msg_recv_arg *arg, void *user)
{
	benchmark::DoNotOptimize(arg->msg);
	static_cast<EventStream *>(user)->messages++;
}

ssize_t event_recv_one(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user)
{
	EventStream *es = static_cast<EventStream *>(user);
	if (es->messages > 0) { // a message came: the call ends ("would block")
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
		return -1;
	}
	return event_recv(ctx, buf, len, flags, &es->s);
}

void BM_WslayEventReadMessage(benchmark::State &state)
{
	std::vector<uint8_t> in = frames((size_t)state.range(0));
	EventStream es = {{&in, 0}, 0};
	wslay_event_callbacks cb = {};
	wslay_event_context_ptr ctx;

	cb.recv_callback = event_recv_one;
	cb.on_msg_recv_callback = on_msg;
	wslay_event_context_server_init(&ctx, &cb, &es);
	int64_t messages = 0;
	for (auto _ : state) {
		es.messages = 0;
		if (wslay_event_recv(ctx) != 0)
			state.SkipWithError("wslay_event_recv failed");
		messages += es.messages;
	}
	wslay_event_context_free(ctx);
	// wslay reads as much as its buffer holds, so one call may finish
	// several messages: count messages, not calls.
	state.counters["ns_per_msg"] = benchmark::Counter(
		(double)messages, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
	state.SetBytesProcessed(messages * state.range(0));
}
BENCHMARK(BM_WslayEventReadMessage)->Arg(64)->Arg(4096);

ssize_t frame_send(const uint8_t *data, size_t len, int, void *)
{
	benchmark::DoNotOptimize(data);
	return (ssize_t)len;
}

void BM_WslayFrameWriteHeader(benchmark::State &state)
{
	// wslay_frame_send writes the header, then hands the payload to the
	// same callback by reference: the callback here takes both and sends
	// nothing, so this is the header's cost plus two calls.
	std::vector<uint8_t> payload((size_t)state.range(0), 'x');
	wslay_frame_callbacks cb = {frame_send, nullptr, nullptr};
	wslay_frame_context_ptr ctx;
	wslay_frame_context_init(&ctx, &cb, nullptr);
	for (auto _ : state) {
		wslay_frame_iocb iocb = {};
		iocb.fin = 1;
		iocb.opcode = WSLAY_BINARY_FRAME;
		iocb.payload_length = payload.size();
		iocb.data = payload.data();
		iocb.data_length = payload.size();
		if (wslay_frame_send(ctx, &iocb) != (ssize_t)payload.size())
			state.SkipWithError("wslay_frame_send failed");
	}
	wslay_frame_context_free(ctx);
}
BENCHMARK(BM_WslayFrameWriteHeader)->Arg(64)->Arg(4096);
#endif

} // namespace
