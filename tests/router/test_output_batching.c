/* A connection's output, gathered: small frames queued back to back go out
 * copied into one staging buffer, large ones as they are. Whatever is
 * gathered, a reader must get every frame whole and in order however it
 * reads (in small pieces, stopping until its socket is full: a send then
 * comes back short, though the kernel here does that only a few times a
 * run, since it takes as much as it has room for when it wakes one), the
 * flow control that pauses its senders must let them go again, and a
 * reader that takes nothing must still be dropped as a slow consumer.
 * Frame sizes are checked at the edges too: every size just under and
 * just over the threshold, in runs and alternating.
 * In-process routers (their counters are read directly), peers on real
 * sockets; every wait is bounded, and a watchdog names a stuck test. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <switchboard/router.h>

#include "support/clock.h"
#include "support/peer.h"
#include "support/proc.h"
#include "support/router.h"

/* A hang guard for what a test waits for, not a performance claim. */
enum { ANSWER_MS = 10000, DELIVER_MS = 120000 };

/* ---- the frames: each payload says which it is and is checked byte by byte -- */

/* Payload bytes of frame i: runs of small frames (gathered) between large
 * ones of several sizes (not); a run long enough to fill more than one
 * staging buffer now and then. */
static uint32_t mixed_sizes(uint32_t i)
{
	static const uint32_t large[] = {1500, 4096, 9000, 17000, 40000};
	uint32_t h = i * 2654435761u;
	if (i % 97 == 50)
		return 40000; /* a large one after a long run of small ones */
	if ((h >> 7) % 11 == 0)
		return large[(h >> 12) % (sizeof large / sizeof large[0])];
	return 5 + (h >> 16) % 700;
}

/* Payload bytes of frame i: every size from 400 to 599 and from 900 to
 * 1,149 bytes, so that frames land on each side of the gather threshold
 * (the frame's header adds a few dozen bytes) and of the 512 it was
 * before, and staging buffers fill to every level; first in rising runs
 * (the threshold crossed upwards, then a drop back), then alternating
 * between the two bands (a frame just under it after one just over, and
 * the reverse), with a large frame now and then. */
static uint32_t threshold_sizes(uint32_t i)
{
	static const uint32_t large[] = {1500, 4096, 17000, 40000};
	if (i % 37 == 19)
		return large[(i / 37) % (sizeof large / sizeof large[0])];
	uint32_t k = (i % 5000 < 2500 ? i : i / 2 + (i & 1) * 200) % 450;
	return k < 200 ? 400 + k : 900 + (k - 200);
}

static uint32_t (*payload_size)(uint32_t) = mixed_sizes;

static uint8_t pattern(uint32_t seq, uint32_t k)
{
	return (uint8_t)(seq * 31u + k * 7u + (k >> 8));
}

/* A bin 32 of n bytes (n >= 4): the frame's number, then its pattern. */
static void fill_payload(uint8_t *p, uint32_t seq, uint32_t n)
{
	p[0] = 0xc6;
	p[1] = (uint8_t)(n >> 24);
	p[2] = (uint8_t)(n >> 16);
	p[3] = (uint8_t)(n >> 8);
	p[4] = (uint8_t)n;
	p[5] = (uint8_t)(seq >> 24);
	p[6] = (uint8_t)(seq >> 16);
	p[7] = (uint8_t)(seq >> 8);
	p[8] = (uint8_t)seq;
	for (uint32_t k = 4; k < n; k++)
		p[5 + k] = pattern(seq, k);
}

/* The SENDs of frames [first, first + count) to name, back to back. */
static uint8_t *encode_sends(const char *name, uint32_t first, uint32_t count, size_t *len)
{
	size_t cap = 0;
	for (uint32_t i = first; i < first + count; i++)
		cap += payload_size(i) + 5 + 128;
	uint8_t *all = malloc(cap), *payload = malloc(40000 + 5);
	size_t off = 0;
	for (uint32_t i = first; i < first + count; i++) {
		uint32_t n = payload_size(i);
		fill_payload(payload, i, n);
		struct sb_msg m = {
			.kind = SB_SEND, .name = v_str(name), .payload = {payload, n + 5}};
		long w = sb_encode(&m, all + off, cap - off);
		CHECK(w > 0);
		off += w > 0 ? (size_t)w : 0;
	}
	free(payload);
	*len = off;
	return all;
}

/* Whether a delivered SEND is frame seq, whole: 1, or 0 (and says how not). */
static int payload_is(const struct sb_msg *m, uint32_t seq)
{
	uint32_t n = payload_size(seq);
	const uint8_t *p = m->payload.ptr;
	if (m->kind != SB_SEND || m->payload.len != n + 5 || p[0] != 0xc6) {
		fprintf(stderr, "  frame %u: kind %u, payload of %u bytes, expected %u\n", seq,
			m->kind, m->payload.len, n + 5);
		return 0;
	}
	uint32_t got = (uint32_t)p[5] << 24 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 8 | p[8];
	if (got != seq) {
		fprintf(stderr, "  frame %u expected, frame %u arrived\n", seq, got);
		return 0;
	}
	for (uint32_t k = 4; k < n; k++)
		if (p[5 + k] != pattern(seq, k)) {
			fprintf(stderr, "  frame %u: byte %u of %u is wrong\n", seq, k, n);
			return 0;
		}
	return 1;
}

/* ---- a sender that cannot hang the test ------------------------------------------ */

/* Writes its bytes without blocking, from a thread of its own, until they
 * are all out or the deadline passes (a paused sender's writes simply stop
 * getting through until it is resumed). */
struct sender {
	struct peer *p;
	const uint8_t *bytes;
	size_t len;
	uint64_t deadline;
	_Atomic int stop; /* give up now */
	_Atomic size_t written;
	pthread_t t;
};

static void *sender_main(void *arg)
{
	struct sender *s = arg;
	size_t off = 0;
	while (off < s->len && !atomic_load(&s->stop) && now_ms() < s->deadline) {
		ssize_t w = send(s->p->fd, s->bytes + off, s->len - off, MSG_DONTWAIT);
		if (w > 0) {
			off += (size_t)w;
			atomic_store(&s->written, off);
			continue;
		}
		if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			break;
		struct pollfd pfd = {.fd = s->p->fd, .events = POLLOUT};
		poll(&pfd, 1, 5);
	}
	return NULL;
}

static void sender_start(struct sender *s, struct peer *p, const uint8_t *bytes, size_t len,
			 uint64_t deadline)
{
	s->p = p;
	s->bytes = bytes;
	s->len = len;
	s->deadline = deadline;
	atomic_init(&s->stop, 0);
	atomic_init(&s->written, 0);
	pthread_create(&s->t, NULL, sender_main, s);
}

/* Waits until the router has stopped taking the sender's bytes (nothing got
 * through for half a second: it paused the sender) or all are out, 30 s at
 * most. */
static void sender_stalls(struct sender *s)
{
	uint64_t end = now_ms() + 30000;
	size_t last = SIZE_MAX;
	int still = 0;
	while (now_ms() < end && still < 5 && last != s->len) {
		sleep_ms(100);
		size_t w = atomic_load(&s->written);
		still = w == last ? still + 1 : 0;
		last = w;
	}
}

/* 1 if every byte went out. */
static int sender_join(struct sender *s)
{
	atomic_store(&s->stop, 1);
	pthread_join(s->t, NULL);
	return atomic_load(&s->written) == s->len;
}

/* ---- a reader that takes a few hundred bytes at a time --------------------------- */

/* A service whose socket holds little, registered for name. Not much less
 * than this: a window of a few KiB is opened so rarely that the stream
 * crawls. */
static struct peer *narrow_service(const char *name)
{
	struct peer *p = peer_dial(PORT);
	int small = 65536;
	setsockopt(p->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
	struct sb_msg h = {.kind = SB_HELLO, .version = SB_PROTO_VERSION, .role = v_str("service")};
	peer_send(p, &h);
	peer_expect(p, SB_WELCOME);
	p->shard = p->m.payload.len >= 8 ? p->m.payload.ptr[7] : 0;
	peer_register(p, name, 1);
	return p;
}

/* Takes the frames in [in, in + len): each is frame first + *good, whole,
 * or a presence event (peers coming and going). @return 0 once one is not */
static int take(struct sb_splitter *sp, const uint8_t *in, size_t len, uint32_t first,
		uint32_t count, uint32_t *good)
{
	struct sb_view f;
	int rc;
	while ((rc = sb_splitter_next(sp, &in, &len, &f, NULL)) != 0) {
		struct sb_msg m;
		if (rc < 0 || sb_decode(f.ptr, f.len, 0, &m, NULL) != 0)
			return 0;
		if (m.kind == SB_PRESENCE)
			continue;
		if (*good >= count || !payload_is(&m, first + *good))
			return 0;
		++*good;
	}
	return 1;
}

/* Stops reading until the router has filled p's socket (what it holds
 * unread has not grown for 300 ms; 10 s at most): a send that found less
 * room than it carried comes back short, and sends wait in flight for
 * room while more frames are queued and gathered behind them. */
static void hold(struct peer *p)
{
	uint64_t end = now_ms() + 10000;
	int last = -1, unread = 0, still = 0;
	while (now_ms() < end && still < 3) {
		sleep_ms(100);
		if (ioctl(p->fd, FIONREAD, &unread) != 0)
			break;
		still = unread == last ? still + 1 : 0;
		last = unread;
	}
}

/* Reads frames [first, first + count) in pieces of 1 to 700 bytes, holding
 * now and then, checking each frame as it comes, by the deadline. @return
 * frames that arrived whole and in order before the first that did not */
static uint32_t read_in_pieces(struct peer *p, uint32_t first, uint32_t count, uint64_t deadline)
{
	struct sb_splitter *sp = sb_splitter_new(1u << 20);
	uint8_t piece[700];
	uint32_t good = 0, held = 0, h = 12345;
	/* What the test peer read past its last frame comes first. */
	int ok = take(sp, p->next, p->left, first, count, &good);
	p->left = 0;
	while (ok && good < count && now_ms() < deadline) {
		if (good >= held + count / 6) {
			hold(p);
			held = good;
		}
		h = h * 1103515245u + 12345u;
		size_t want = 1 + (h >> 16) % sizeof piece;
		ssize_t n = recv(p->fd, piece, want, MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
			fprintf(stderr, "  the router closed the reader after %u frames\n", good);
			break;
		}
		if (n < 0) {
			struct pollfd pfd = {.fd = p->fd, .events = POLLIN};
			poll(&pfd, 1, 5);
			continue;
		}
		ok = take(sp, piece, (size_t)n, first, count, &good);
	}
	CHECK(sb_splitter_buffered(sp) == 0); /* nothing after the last frame */
	sb_splitter_free(sp);
	return good;
}

static int answers_ping(struct peer *p, uint64_t id)
{
	struct sb_msg ping = {.kind = SB_PING, .id = id};
	peer_send(p, &ping);
	uint64_t end = now_ms() + ANSWER_MS;
	while (now_ms() < end)
		if (peer_recv_within(p, (int)(end - now_ms()) + 1) != 1)
			return 0;
		else if (p->m.kind == SB_PONG && p->m.id == id)
			return 1;
	return 0;
}

/* ---- the stories --------------------------------------------------------------- */

/* A client sends a few thousand frames, small ones in runs between large
 * ones, to a service that reads a few hundred bytes at a time and stops
 * now and then: its queue passes the pause mark again and again (the
 * client is paused, then let go), frames are gathered behind sends that
 * wait for room, and the service gets every frame whole and in order.
 * Then it is still connected and served, and a second burst goes through
 * as the first. */
static void slow_reader_gets_everything_in_order(unsigned shards)
{
	enum { COUNT = 2500 };
	struct sb_router_config cfg = router_config();
	cfg.shards = shards;
	cfg.out_max = 256u << 10; /* the pause mark at 64 KiB: crossed all along */
	cfg.max_frame = 64u << 10;
	router_start(&cfg);

	struct peer *svc = narrow_service("batch.sink");
	struct peer *cl =
		peer_hello_on(PORT, NULL, "client", shards > 1 ? (svc->shard + 1) % shards : 0);
	uint32_t whole = 0;
	for (uint32_t burst = 0; burst < 2; burst++) {
		size_t len;
		uint8_t *bytes = encode_sends("batch.sink", burst * COUNT, COUNT, &len);
		struct sender s;
		uint64_t deadline = now_ms() + DELIVER_MS;
		sender_start(&s, cl, bytes, len, deadline);
		/* The service reads nothing until the client's bytes stop getting
		 * through (it is paused) or all are out. */
		sender_stalls(&s);
		uint32_t got = read_in_pieces(svc, burst * COUNT, COUNT, deadline);
		CHECK(sender_join(&s));
		CHECK_INT(got, COUNT);
		whole += got;
		free(bytes);
	}
	struct sb_router_stats st = router_stats();
	printf("  %u shard(s): %u of %u frames arrived whole and in order; %u pauses\n", shards,
	       whole, 2 * COUNT, (unsigned)st.pauses);
	CHECK(st.pauses >= 1); /* the queue passed its mark: the client was paused */
	CHECK_INT(st.slow_consumers, 0);
	CHECK(answers_ping(svc, 7));
	CHECK(answers_ping(cl, 8));
	peer_close(cl);
	peer_close(svc);
	router_stop();
}

static void test_a_slow_reader_gets_small_and_large_frames_whole_and_in_order(void)
{
	slow_reader_gets_everything_in_order(1);
}

static void test_a_slow_reader_gets_them_whole_and_in_order_across_shards(void)
{
	slow_reader_gets_everything_in_order(2);
}

/* The same with frames of every size around the gather threshold: the
 * ones just under it copied into staging buffers behind each other, the
 * ones just over it sent as they are, between and after them. */
static void test_frames_just_under_and_over_the_gather_threshold_arrive_whole_and_in_order(void)
{
	payload_size = threshold_sizes;
	slow_reader_gets_everything_in_order(1);
	slow_reader_gets_everything_in_order(2);
	payload_size = mixed_sizes;
}

/* A client floods small frames at a service that reads nothing: they are
 * gathered, and the service is still dropped as a slow consumer once its
 * queue is past the pause mark and nothing moves for slow_ms. The client,
 * paused meanwhile, is let go: it is served after. */
static void test_a_service_that_reads_nothing_is_dropped_for_small_frames_too(void)
{
	struct sb_router_config cfg = router_config();
	cfg.shards = 1;
	cfg.out_max = 256u << 10;
	cfg.max_frame = 64u << 10;
	cfg.slow_ms = 100;
	router_start(&cfg);

	struct peer *svc = narrow_service("batch.deaf");
	struct peer *cl = peer_hello(PORT, NULL, "client");
	uint8_t payload[100] = {0xc4, 98};
	struct sb_msg m = {.kind = SB_SEND, .name = v_str("batch.deaf"), .payload = {payload, 100}};
	uint8_t one[256];
	long n = sb_encode(&m, one, sizeof one);
	CHECK(n > 0);
	enum { COPIES = 40000 }; /* ~5 MB: twenty times the limit */
	uint8_t *bytes = malloc((size_t)n * COPIES);
	for (int i = 0; i < COPIES; i++)
		memcpy(bytes + (size_t)i * (size_t)n, one, (size_t)n);

	struct sender s;
	sender_start(&s, cl, bytes, (size_t)n * COPIES, now_ms() + 30000);
	uint64_t end = now_ms() + 30000;
	while (router_stats().slow_consumers == 0 && now_ms() < end)
		sleep_ms(5);
	sender_join(&s);
	struct sb_router_stats st = router_stats();
	CHECK_INT(st.slow_consumers, 1);
	CHECK(st.pauses >= 1);

	/* The service finds its connection closed once it reads what its socket
	 * held. */
	int closed = 0;
	end = now_ms() + ANSWER_MS;
	while (!closed && now_ms() < end) {
		uint8_t buf[65536];
		ssize_t r = recv(svc->fd, buf, sizeof buf, MSG_DONTWAIT);
		if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
			closed = 1;
		else if (r < 0) {
			struct pollfd pfd = {.fd = svc->fd, .events = POLLIN};
			poll(&pfd, 1, 5);
		}
	}
	CHECK(closed);
	/* The client was paused by the full queue: dropping it let the client go. */
	CHECK(answers_ping(cl, 9));
	free(bytes);
	peer_close(cl);
	peer_close(svc);
	router_stop();
}

#define RUN_SOME(fn) RUN_WATCHED(fn, 240)

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0); /* a killed run still shows how far it got */
	signal(SIGPIPE, SIG_IGN);
	RUN_SOME(test_a_slow_reader_gets_small_and_large_frames_whole_and_in_order);
	RUN_SOME(test_a_slow_reader_gets_them_whole_and_in_order_across_shards);
	RUN_SOME(test_frames_just_under_and_over_the_gather_threshold_arrive_whole_and_in_order);
	RUN_SOME(test_a_service_that_reads_nothing_is_dropped_for_small_frames_too);
	return TEST_EXIT();
}
