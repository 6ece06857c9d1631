/* Buffers shared across shards: frames a sender's shard fans out to
 * handlers on both shards, through pools of 8 receive buffers, arrive
 * intact and in order, and every buffer comes back, so both shards still
 * read every connection afterwards. A reference count lost between shards
 * shows here as a frame overwritten while queued (corrupt, out of order or
 * missing), a heap frame freed twice or never (ASan, LeakSanitizer), a
 * plain count racing another shard's atomic one (TSan), or a pool that
 * never refills (the last step fails by its deadline). */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <switchboard/router.h>

#include "support/clock.h"
#include "support/peer.h"
#include "support/proc.h"
#include "support/router.h"
#include "support/sanitizer.h"
#include "support/testlib.h"

enum {
	HANDLERS = 4, /* two on each shard */
	BUF_SIZE = 2048,
	BIG = 3000,     /* every 16th frame: larger than a receive buffer, so a heap copy */
	SMALL = 16,     /* the others: many to a receive buffer */
	WAIT_MS = 30000 /* for any one frame: a loaded machine, not a speed test */
};

#ifdef SB_SANITIZED
#define FRAMES 30000L
#else
#define FRAMES 200000L
#endif

struct handler {
	struct peer *p;
	long got; /* frames received in order and intact */
	long bad; /* frames out of order or corrupt: must stay 0 */
	pthread_t thread;
};

/* Frame k's payload: a MessagePack bin whose bytes start with k and are
 * all derived from it, so that a byte from another frame shows. */
static size_t payload_of(long k, uint8_t *out)
{
	size_t n = k % 16 == 0 ? BIG : SMALL;
	out[0] = 0xc5;
	out[1] = (uint8_t)(n >> 8);
	out[2] = (uint8_t)n;
	for (size_t i = 0; i < n; i++)
		out[3 + i] = i < 8 ? (uint8_t)((uint64_t)k >> (56 - 8 * i)) : (uint8_t)(k * 31 + i);
	return 3 + n;
}

static int payload_is(struct sb_view v, long k)
{
	uint8_t want[3 + BIG];
	size_t n = payload_of(k, want);
	return v.len == n && memcmp(v.ptr, want, n) == 0;
}

static void *handler_run(void *arg)
{
	struct handler *h = arg;
	while (h->got + h->bad < FRAMES) {
		if (peer_recv_within(h->p, WAIT_MS) != 1)
			break;
		if (h->p->m.kind != SB_SEND)
			continue;
		if (payload_is(h->p->m.payload, h->got))
			h->got++;
		else if (h->bad++ == 0)
			fprintf(stderr, "handler on shard %u: frame %ld wrong\n", h->p->shard,
				h->got);
	}
	return NULL;
}

static void test_fan_out_across_shards_returns_every_buffer(void)
{
	struct sb_router_config cfg = router_config();
	cfg.recv_buffers = 8;
	cfg.recv_buffer_size = BUF_SIZE;
	router_start(&cfg);

	struct handler h[HANDLERS];
	struct peer *spare[32];
	int n = 0, nspare = 0, on[2] = {0, 0};
	for (int i = 0; i < 32 && n < HANDLERS; i++) {
		struct peer *p = peer_hello(PORT, NULL, "service");
		if (p->shard < 2 && on[p->shard] < HANDLERS / 2) {
			on[p->shard]++;
			peer_register(p, "fan", 1);
			h[n++] = (struct handler){.p = p};
		} else
			spare[nspare++] = p;
	}
	CHECK_INT(n, HANDLERS);
	struct peer *cli = peer_hello(PORT, NULL, "service");
	if (n < HANDLERS)
		goto out;

	for (int i = 0; i < HANDLERS; i++)
		pthread_create(&h[i].thread, NULL, handler_run, &h[i]);
	/* Written in slices: the sender is paused while the handlers fall
	 * behind, and a blocking write waits for it. */
	static uint8_t out[1 << 20];
	uint8_t pl[3 + BIG];
	size_t len = 0;
	for (long k = 0; k < FRAMES; k++) {
		struct sb_msg m = {.kind = SB_SEND, .flags = SB_F_BROADCAST, .name = v_str("fan")};
		m.payload = (struct sb_view){pl, (uint32_t)payload_of(k, pl)};
		if (len + 4096 > sizeof out) {
			peer_raw(cli, out, len);
			len = 0;
		}
		len += (size_t)sb_encode(&m, out + len, sizeof out - len);
	}
	peer_raw(cli, out, len);
	for (int i = 0; i < HANDLERS; i++) {
		pthread_join(h[i].thread, NULL);
		CHECK_INT(h[i].bad, 0);
		CHECK_INT(h[i].got, FRAMES);
	}

	/* Every buffer back: each handler's shard still reads it, and the
	 * sender's shard still delivers to it. */
	peer_register(cli, "fan.back", 2);
	for (int i = 0; i < HANDLERS; i++) {
		struct sb_msg m = {.kind = SB_SEND, .name = v_str("fan.back")};
		peer_send(h[i].p, &m);
	}
	for (int i = 0; i < HANDLERS; i++)
		peer_expect(cli, SB_SEND);
	struct sb_msg last = {.kind = SB_SEND, .flags = SB_F_BROADCAST, .name = v_str("fan")};
	last.payload = (struct sb_view){pl, (uint32_t)payload_of(FRAMES, pl)};
	peer_send(cli, &last);
	for (int i = 0; i < HANDLERS; i++)
		CHECK(payload_is(peer_expect(h[i].p, SB_SEND)->payload, FRAMES));
	CHECK_INT(router_stats().slow_consumers, 0);
	printf("  %ld frames to %d handlers (%d+%d on the two shards)\n", FRAMES, HANDLERS, on[0],
	       on[1]);
out:
	for (int i = 0; i < n; i++)
		peer_close(h[i].p);
	for (int i = 0; i < nspare; i++)
		peer_close(spare[i]);
	peer_close(cli);
	router_stop();
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	watchdog("test_fan_out_across_shards_returns_every_buffer", 240);
	RUN(test_fan_out_across_shards_returns_every_buffer);
	return TEST_EXIT();
}
