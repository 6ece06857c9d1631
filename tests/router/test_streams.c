/* Streams and flow control: a 1,000-chunk stream in order, a cancel and a
 * handler lost mid-stream, a requester that reads slowly slowing its
 * stream down, and a consumer that stops reading dropped at its bound. An
 * in-process router with two shards; peers speak raw frames. */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include <switchboard/router.h>

#include "support/peer.h"
#include "support/router.h"

/* The small router's limits, for the bounds its tests assert. */
#define SMALL_OUT_MAX (256u << 10)
#define SMALL_WINDOW  (8u * 64 * 16384) /* 8 x receive pool: see queue_limit() */

/* A router with small queues: bounds reached with little data. A consumer
 * that takes nothing for slow_ms is dropped. */
static void start_small(uint32_t slow_ms)
{
	struct sb_router_config cfg = router_config();
	cfg.out_max = SMALL_OUT_MAX;
	cfg.max_frame = SMALL_OUT_MAX / 4; /* a frame must fit in a connection's queue */
	cfg.recv_buffers = 64;
	cfg.slow_ms = slow_ms;
	router_start(&cfg);
}

/* cli asks fs for "file.read" (id) and gets `chunks` chunks of the stream,
 * which stays open; returns the router's id for it. */
static uint64_t stream_started(struct peer *fs, struct peer *cli, uint64_t id, int chunks)
{
	peer_request(cli, "file.read", id, 0, NULL, 0);
	uint64_t rid = peer_expect(fs, SB_REQUEST)->id;
	for (int i = 0; i < chunks; i++)
		peer_reply(fs, rid, "file.read-chunk", SB_F_MORE | SB_F_CHUNK, NULL, 0);
	for (int i = 0; i < chunks; i++)
		peer_expect(cli, SB_REPLY);
	return rid;
}

/* The handler side of the flow-control test: streams chunks with blocking
 * writes from its own thread, so a paused router shows up as a stall. */
struct streamer {
	struct peer *fs;
	uint64_t rid;
	int chunks;
	_Atomic int written;
};

static void *stream_chunks(void *arg)
{
	static uint8_t chunk[16384 + 3] = {0xc5, 0x40, 0x00};
	struct streamer *st = arg;
	for (int i = 0; i < st->chunks; i++) {
		chunk[3] = (uint8_t)i;
		chunk[4] = (uint8_t)(i >> 8);
		peer_reply(st->fs, st->rid, "file.read-chunk", SB_F_MORE | SB_F_CHUNK, chunk,
			   sizeof chunk);
		atomic_store(&st->written, i + 1);
	}
	peer_reply(st->fs, st->rid, "file.read-done", 0, NULL, 0);
	return NULL;
}

static void test_stream_of_1000_chunks_in_order(void)
{
	router_start(NULL);
	struct peer *fs = peer_hello(PORT, "fs-2", "service");
	struct peer *cli = peer_hello(PORT, "ui-2", "client");
	peer_register(fs, "file.read", 1);

	peer_request(cli, "file.read", 11, 0, NULL, 0);
	uint64_t rid = peer_expect(fs, SB_REQUEST)->id;
	for (unsigned i = 0; i < 1000; i++) {
		uint8_t n[3] = {0xcd, (uint8_t)(i >> 8), (uint8_t)i};
		peer_reply(fs, rid, "file.read-chunk", SB_F_MORE | SB_F_CHUNK, n, 3);
	}
	peer_reply(fs, rid, "file.read-done", 0, NULL, 0);
	for (unsigned i = 0; i < 1000; i++) {
		struct sb_msg *r = peer_expect(cli, SB_REPLY);
		unsigned got = (unsigned)r->payload.ptr[1] << 8 | r->payload.ptr[2];
		if (got != i) {
			CHECK_INT(got, i);
			break;
		}
	}
	CHECK(v_is(peer_expect(cli, SB_REPLY)->outcome, "file.read-done"));
	peer_close(fs);
	peer_close(cli);
	router_stop();
}

static void test_cancel_mid_stream(void)
{
	router_start(NULL);
	struct peer *fs = peer_hello(PORT, "fs-3", "service");
	struct peer *cli = peer_hello(PORT, "ui-3", "client");
	peer_register(fs, "file.read", 1);

	uint64_t rid = stream_started(fs, cli, 12, 10);

	struct sb_msg cancel = {.kind = SB_CANCEL, .id = 12};
	peer_send(cli, &cancel);
	struct sb_msg *e = peer_expect(cli, SB_ERROR);
	CHECK(e->id == 12 && e->code == (uint32_t)-SB_ECANCELLED);
	CHECK(peer_expect(fs, SB_CANCEL)->id == rid); /* the handler hears it */

	/* Chunks the handler had in flight are dropped, not delivered. */
	peer_reply(fs, rid, "file.read-chunk", SB_F_MORE | SB_F_CHUNK, NULL, 0);
	peer_expect_silence(cli, 100);
	peer_close(fs);
	peer_close(cli);
	router_stop();
}

static void test_handler_killed_mid_stream(void)
{
	router_start(NULL);
	struct peer *fs = peer_hello(PORT, "fs-4", "service");
	struct peer *cli = peer_hello(PORT, "ui-6", "client");
	peer_register(fs, "file.read", 1);

	stream_started(fs, cli, 31, 3);
	peer_close(fs);
	struct sb_msg *e = peer_expect(cli, SB_ERROR);
	CHECK(e->id == 31 && e->code == (uint32_t)-SB_EPEERGONE);
	peer_close(cli);
	router_stop();
}

/* A requester that reads slowly slows its stream down: the router stops
 * reading the handler instead of queueing 32 MiB or dropping anyone. The
 * requester reads nothing at all for a while here, so the slow-consumer
 * clock is set well past the longest the test waits. */
static void test_slow_requester_slows_the_stream(void)
{
	start_small(600000);

	struct peer *fs = peer_hello(PORT, "fs-big", "service");
	struct peer *cli = peer_hello(PORT, "lazy", "client");
	peer_register(fs, "file.read", 1);
	peer_request(cli, "file.read", 1, 60000, NULL, 0);
	struct streamer st = {.fs = fs, .rid = peer_expect(fs, SB_REQUEST)->id, .chunks = 2048};
	atomic_init(&st.written, 0);
	pthread_t t;
	pthread_create(&t, NULL, stream_chunks, &st);

	/* Wait until the handler is stuck: the router paused it and it has made
	 * no progress for 0.5 s (a busy machine may just be slow: 20 s at most). */
	int last = -1, still = 0;
	for (int tick = 0; tick < 200 && (still < 5 || router_stats().pauses == 0); tick++) {
		struct timespec ts = {0, 100 * 1000000};
		nanosleep(&ts, NULL);
		int now = atomic_load(&st.written);
		still = now == last ? still + 1 : 0;
		last = now;
	}
	CHECK(last < st.chunks); /* it could not write everything: pushed back */
	CHECK(router_stats().pauses >= 1);
	CHECK(router_stats().queued_peak <= SMALL_OUT_MAX + SMALL_WINDOW);
	CHECK_INT(router_stats().slow_consumers, 0);

	/* Now the requester reads; every chunk arrives, in order. */
	for (int i = 0; i < st.chunks; i++) {
		struct sb_msg *r = peer_expect(cli, SB_REPLY);
		int got = r->payload.len > 4 ? r->payload.ptr[3] | r->payload.ptr[4] << 8 : -1;
		if (got != (i & 0xffff)) {
			CHECK_INT(got, i);
			break;
		}
	}
	CHECK(v_is(peer_expect(cli, SB_REPLY)->outcome, "file.read-done"));
	pthread_join(t, NULL);
	CHECK(router_stats().queued_peak <= SMALL_OUT_MAX + SMALL_WINDOW);
	CHECK_INT(router_stats().slow_consumers, 0);
	peer_close(cli);
	peer_close(fs);
	router_stop();
}

/* A service that stops reading while sends pour in pauses their sender at
 * its mark; taking nothing for slow_ms, it is dropped, and the router's
 * memory stays bounded. */
static void test_slow_consumer_is_dropped(void)
{
	start_small(300);

	struct peer *sink = peer_dial(PORT);
	int small = 4096;
	setsockopt(sink->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
	struct sb_msg h = {
		.kind = SB_HELLO, .version = 1, .peer = v_str("sink"), .role = v_str("service")};
	peer_send(sink, &h);
	peer_expect(sink, SB_WELCOME);
	peer_register(sink, "firehose", 1);
	struct peer *cli = peer_hello(PORT, "hose", "client");

	static uint8_t blob[16384 + 3] = {0xc5, 0x40, 0x00};
	struct sb_msg m = {.kind = SB_SEND, .name = v_str("firehose")};
	m.payload.ptr = blob;
	m.payload.len = sizeof blob;
	/* 32 MiB at most; the sink reads none. The writes block while the
	 * router holds the sender paused, until the sink is dropped. */
	for (int i = 0; i < 2048 && router_stats().slow_consumers == 0; i++)
		peer_send(cli, &m);
	for (int i = 0; i < 100 && router_stats().slow_consumers == 0; i++) {
		struct timespec ts = {0, 10 * 1000000};
		nanosleep(&ts, NULL);
	}
	CHECK_INT(router_stats().slow_consumers, 1);
	CHECK(router_stats().pauses >= 1);
	CHECK(router_stats().queued_peak <= SMALL_OUT_MAX + SMALL_WINDOW);
	/* The sender is served again. */
	struct sb_msg ping = {.kind = SB_PING, .id = 5};
	peer_send(cli, &ping);
	CHECK(peer_expect(cli, SB_PONG)->id == 5);
	peer_close(cli);
	peer_close(sink);
	router_stop();
}

int main(void)
{
	RUN(test_stream_of_1000_chunks_in_order);
	RUN(test_cancel_mid_stream);
	RUN(test_handler_killed_mid_stream);
	RUN(test_slow_requester_slows_the_stream);
	RUN(test_slow_consumer_is_dropped);
	return TEST_EXIT();
}
