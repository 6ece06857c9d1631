/* Streams cut at every offset of the receive buffers: a handler writes
 * chunk replies of many streams at once, many frames to a write(), faster
 * than one receive buffer holds, so frames are cut at nearly every
 * buffer's end and completed in heap copies (docs/architecture.md,
 * "Buffers: receive, forward, recycle"); chunk sizes from 1 byte to three
 * times a receive pool's worth of 8 buffers cut them at every offset.
 * Every chunk arrives byte for byte and in order at every requester, on
 * one shard and with the requesters on both shards of two. A frame cut
 * and completed from the wrong bytes, a buffer recycled while frames in it
 * are still queued, or a receive re-armed twice shows here as a chunk
 * wrong, missing or out of order; a buffer never returned shows as a
 * router that stops reading before the last step. Written for a change
 * to the receive buffers (docs/performance.md, "Bulk receive buffers:
 * before and after") that these must survive. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <switchboard/router.h>

#include "support/peer.h"
#include "support/proc.h"
#include "support/router.h"
#include "support/sanitizer.h"
#include "support/testlib.h"

enum {
	BUF = 1024,           /* receive buffers, 16 of them a shard */
	STREAMS = 12,         /* requesters, one stream each, all at once */
	MAX_CHUNK = 24 * BUF, /* larger than 8 buffers, so copied in pieces */
	WAIT_MS = 30000       /* for any one frame: a loaded machine, not a speed test */
};

#ifdef SB_SANITIZED
#define CHUNKS 60
#else
#define CHUNKS 300
#endif

/* Chunk k of stream s: how many payload bytes. Two primes walk the sizes
 * over 1..MAX_CHUNK, so that frame ends fall at every offset of a buffer;
 * every 16th is tiny (gathered on its way out). */
static uint32_t chunk_len(int s, int k)
{
	if (k % 16 == 5)
		return 1 + (uint32_t)(s + k) % 7;
	return 1 + (uint32_t)((s * 7919L + k * 104729L) % MAX_CHUNK);
}

/* Its payload: a MessagePack bin32 whose bytes start with s and k and are
 * all derived from them, so that a byte of another chunk shows. */
static size_t payload_of(int s, int k, uint8_t *out)
{
	uint32_t n = chunk_len(s, k);
	out[0] = 0xc6;
	out[1] = (uint8_t)(n >> 24);
	out[2] = (uint8_t)(n >> 16);
	out[3] = (uint8_t)(n >> 8);
	out[4] = (uint8_t)n;
	for (uint32_t i = 0; i < n; i++)
		out[5 + i] = i == 0   ? (uint8_t)s
			     : i == 1 ? (uint8_t)k
				      : (uint8_t)(s * 31 + k * 7 + i);
	return 5 + n;
}

static int payload_is(struct sb_view v, int s, int k)
{
	static _Thread_local uint8_t want[5 + MAX_CHUNK];
	size_t n = payload_of(s, k, want);
	return v.len == n && memcmp(v.ptr, want, n) == 0;
}

struct requester {
	struct peer *p;
	int s;
	int got;   /* chunks received intact and in order */
	int bad;   /* chunks wrong or out of order: must stay 0 */
	int final; /* the final reply, after every chunk */
	pthread_t thread;
};

static void *requester_run(void *arg)
{
	struct requester *q = arg;
	while (!q->final) {
		if (peer_recv_within(q->p, WAIT_MS) != 1)
			break;
		struct sb_msg *m = &q->p->m;
		if (m->kind != SB_REPLY)
			continue;
		if (!(m->flags & SB_F_MORE)) {
			q->final = q->got == CHUNKS && v_is(m->outcome, "done") ? 1 : -1;
			break;
		}
		if (m->id == (uint64_t)q->s + 1 && payload_is(m->payload, q->s, q->got))
			q->got++;
		else if (q->bad++ == 0)
			fprintf(stderr, "stream %d: chunk %d wrong (%u bytes)\n", q->s, q->got,
				m->payload.len);
	}
	return NULL;
}

/* Appends frame m to out (flushing it to p when full): the handler writes
 * many frames per write(), as a busy service does. */
static void queue(struct peer *p, uint8_t *out, size_t cap, size_t *len, const struct sb_msg *m)
{
	if (*len + 64 + MAX_CHUNK > cap) {
		peer_raw(p, out, *len);
		*len = 0;
	}
	*len += (size_t)sb_encode(m, out + *len, cap - *len);
}

/* STREAMS requesters (on shard k % nshards), one handler on shard 0: every
 * stream's chunks, interleaved, then every final reply. */
static void run_streams(unsigned nshards)
{
	struct sb_router_config cfg = router_config();
	cfg.shards = nshards;
	cfg.placement = SB_PLACEMENT_KERNEL; /* the requesters stay where they are put */
	cfg.recv_buffers = 16;
	cfg.recv_buffer_size = BUF;
	router_start(&cfg);

	struct peer *fs = peer_hello_on(PORT, NULL, "service", 0);
	peer_register(fs, "blob.read", 1);
	struct requester q[STREAMS];
	for (int s = 0; s < STREAMS; s++) {
		q[s] = (struct requester){.p = peer_hello_on(PORT, NULL, "client", s % nshards),
					  .s = s};
		uint8_t which = (uint8_t)s; /* a positive fixint */
		peer_request(q[s].p, "blob.read", (uint64_t)s + 1, 0, &which, 1);
	}
	uint64_t rid[STREAMS];
	for (int i = 0; i < STREAMS; i++) {
		struct sb_msg *m = peer_expect(fs, SB_REQUEST);
		CHECK_INT(m->payload.len, 1);
		int s = m->payload.ptr[0];
		CHECK(s < STREAMS);
		if (s >= STREAMS)
			goto out;
		rid[s] = m->id;
	}
	for (int s = 0; s < STREAMS; s++)
		pthread_create(&q[s].thread, NULL, requester_run, &q[s]);

	/* Written in slices: the handler is paused while the requesters fall
	 * behind, and a blocking write waits for it. */
	static uint8_t out[256 << 10];
	static uint8_t pl[5 + MAX_CHUNK];
	size_t len = 0;
	for (int k = 0; k < CHUNKS; k++)
		for (int s = 0; s < STREAMS; s++) {
			struct sb_msg m = {.kind = SB_REPLY,
					   .id = rid[s],
					   .flags = SB_F_MORE | SB_F_CHUNK,
					   .outcome = v_str("chunk")};
			m.payload = (struct sb_view){pl, (uint32_t)payload_of(s, k, pl)};
			queue(fs, out, sizeof out, &len, &m);
		}
	for (int s = 0; s < STREAMS; s++) {
		struct sb_msg m = {.kind = SB_REPLY, .id = rid[s], .outcome = v_str("done")};
		queue(fs, out, sizeof out, &len, &m);
	}
	peer_raw(fs, out, len);

	for (int s = 0; s < STREAMS; s++) {
		pthread_join(q[s].thread, NULL);
		CHECK_INT(q[s].bad, 0);
		CHECK_INT(q[s].got, CHUNKS);
		CHECK_INT(q[s].final, 1);
	}
	CHECK_INT(router_stats().slow_consumers, 0);

	/* Every buffer back: the handler's shard still reads it and every
	 * requester's, and delivers to each. */
	for (int s = 0; s < STREAMS; s++) {
		uint8_t which = (uint8_t)s;
		peer_request(q[s].p, "blob.read", 100 + (uint64_t)s, 0, &which, 1);
		struct sb_msg *m = peer_expect(fs, SB_REQUEST);
		peer_reply(fs, m->id, "again", 0, NULL, 0);
		CHECK_INT(peer_expect(q[s].p, SB_REPLY)->id, 100 + (uint64_t)s);
	}
	printf("  %d streams of %d chunks (1-%d bytes) on %u shard(s)\n", STREAMS, CHUNKS,
	       MAX_CHUNK, nshards);
out:
	for (int s = 0; s < STREAMS; s++)
		peer_close(q[s].p);
	peer_close(fs);
	router_stop();
}

static void test_chunks_cut_at_every_offset_arrive_exact_and_in_order_on_one_shard(void)
{
	run_streams(1);
}

static void test_chunks_cut_at_every_offset_arrive_exact_and_in_order_across_shards(void)
{
	run_streams(2);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	RUN_WATCHED(test_chunks_cut_at_every_offset_arrive_exact_and_in_order_on_one_shard, 240);
	RUN_WATCHED(test_chunks_cut_at_every_offset_arrive_exact_and_in_order_across_shards, 240);
	return TEST_EXIT();
}
