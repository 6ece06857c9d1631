/* One peer never stalls another: a consumer that stops reading, flooded
 * with sends, requests or a stream, must not freeze its shard for anybody
 * else, and a flood that ends with the consumer dropped must leave every
 * other connection served. In-process routers (their counters are read
 * directly) and peers on real sockets. Every wait is bounded, and a
 * watchdog turns a stuck test into a failure that names it. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <switchboard/router.h>

#include "support/clock.h"
#include "support/peer.h"
#include "support/proc.h"
#include "support/router.h"

/* A hang guard for each answer a test waits for, not a performance claim. */
enum { ANSWER_MS = 10000 };

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The test router (support/router.h) with this many shards. */
static struct sb_router_config base_config(unsigned shards)
{
	struct sb_router_config cfg = router_config();
	cfg.shards = shards;
	return cfg;
}

/* ---- peers that must not hang the test ------------------------------------------- */

/* Writes all of buf unless the router stops taking bytes until the
 * deadline: a frozen router fails the test instead of hanging it. */
static int write_until(struct peer *p, const void *buf, size_t n, uint64_t deadline)
{
	const uint8_t *q = buf;
	while (n > 0 && now_ms() < deadline) {
		ssize_t w = send(p->fd, q, n, MSG_DONTWAIT);
		if (w > 0) {
			q += w;
			n -= (size_t)w;
		} else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			return 0;
		} else {
			struct pollfd pfd = {.fd = p->fd, .events = POLLOUT};
			poll(&pfd, 1, 5);
		}
	}
	return n == 0;
}

static int send_until(struct peer *p, const struct sb_msg *m, uint64_t deadline)
{
	uint8_t buf[512];
	long n = sb_encode(m, buf, sizeof buf);
	CHECK(n > 0);
	return n > 0 && write_until(p, buf, (size_t)n, deadline);
}

/* The next message of the given kind and id, skipping any other, by the
 * deadline: 1, else 0. */
static int expect_until(struct peer *p, unsigned kind, uint64_t id, uint64_t deadline)
{
	while (now_ms() < deadline) {
		if (peer_recv_within(p, (int)(deadline - now_ms()) + 1) != 1)
			return 0;
		if (p->m.kind == kind && p->m.id == id)
			return 1;
	}
	return 0;
}

static int answers_ping(struct peer *p, uint64_t id)
{
	uint64_t end = now_ms() + ANSWER_MS;
	struct sb_msg ping = {.kind = SB_PING, .id = id};
	return send_until(p, &ping, end) && expect_until(p, SB_PONG, id, end);
}

/* A new connection whose HELLO is answered by WELCOME by the deadline, or
 * NULL (it is closed then). */
static struct peer *hello_until(const char *role, uint64_t deadline)
{
	struct peer *p = peer_dial(PORT);
	struct sb_msg h = {.kind = SB_HELLO, .version = SB_PROTO_VERSION, .role = v_str(role)};
	if (send_until(p, &h, deadline) && expect_until(p, SB_WELCOME, 0, deadline)) {
		p->shard = p->m.payload.len >= 8 ? p->m.payload.ptr[7] : 0;
		return p;
	}
	peer_close(p);
	return NULL;
}

/* A peer that says HELLO and then reads nothing, ever: its receive buffer
 * is small, so the router's output to it backs up at once. */
static struct peer *deaf_hello(const char *role)
{
	struct peer *p = peer_dial(PORT);
	int small = 4096;
	setsockopt(p->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
	struct sb_msg h = {.kind = SB_HELLO, .version = SB_PROTO_VERSION, .role = v_str(role)};
	peer_send(p, &h);
	peer_expect(p, SB_WELCOME);
	p->shard = p->m.payload.len >= 8 ? p->m.payload.ptr[7] : 0;
	return p;
}

/* A peer on the given shard: dial until the kernel puts one there. */
static struct peer *hello_on(unsigned shard, const char *role, int deaf)
{
	for (int i = 0; i < 200; i++) {
		struct peer *p = deaf ? deaf_hello(role) : peer_hello(PORT, NULL, role);
		if (p->shard == shard)
			return p;
		peer_close(p);
	}
	CHECK(!"no connection landed on the shard asked for");
	return peer_hello(PORT, NULL, role);
}

/* ---- a flood, from a thread of its own ----------------------------------------- */

/* Writes frames back to back, without blocking, until told to stop: a
 * paused sender's writes then simply stop getting through. It reads what
 * comes back (and ignores it), as a client would: a flooder that did not
 * would be a slow consumer of its own answers. */
struct flood {
	struct peer *p;
	uint8_t *bytes; /* whole frames, written over and over */
	size_t len;
	size_t piece;     /* bytes per write at most; 0: as many as go */
	uint64_t next_id; /* requests get ids of their own, as a client gives them */
	_Atomic int stop; /* 1: at the next frame boundary; 2: at once */
	_Atomic int done;
	_Atomic uint64_t written; /* bytes */
	pthread_t t;
};

static void renumber(struct flood *f)
{
	for (size_t off = 0; off < f->len; off += SB_PREFIX_LEN + rd32(f->bytes + off))
		if (f->bytes[off + SB_PREFIX_LEN + 1] == SB_REQUEST)
			sb_patch_id(f->bytes + off, ++f->next_id);
}

static void *flood_main(void *arg)
{
	struct flood *f = arg;
	size_t off = 0;
	int fresh = 1; /* the block is to be numbered before its first byte goes */
	while (!atomic_load(&f->stop) || off != 0) { /* ends on a frame boundary */
		if (fresh)
			renumber(f);
		fresh = 0;
		while (peer_recv_within(f->p, 0) == 1)
			;
		size_t n = f->len - off;
		if (f->piece > 0 && n > f->piece)
			n = f->piece;
		ssize_t w = send(f->p->fd, f->bytes + off, n, MSG_DONTWAIT);
		if (w > 0) {
			off = (off + (size_t)w) % f->len;
			fresh = off == 0;
			atomic_fetch_add(&f->written, (uint64_t)w);
			continue;
		}
		if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			break;
		if (atomic_load(&f->stop) == 2) /* the test gave up on the frame in progress */
			break;
		struct pollfd pfd = {.fd = f->p->fd, .events = POLLOUT};
		poll(&pfd, 1, 5);
	}
	atomic_store(&f->done, 1);
	return NULL;
}

static void flood_start(struct flood *f, struct peer *p, uint8_t *bytes, size_t len)
{
	f->p = p;
	f->bytes = bytes;
	f->len = len;
	atomic_init(&f->stop, 0);
	atomic_init(&f->done, 0);
	atomic_init(&f->written, 0);
	pthread_create(&f->t, NULL, flood_main, f);
}

/* Waits until the flood has been pushed back (nothing got through for half
 * a second), 30 s at most: 1 if it was. */
static int flood_stalls(struct flood *f)
{
	uint64_t end = now_ms() + 30000, last = UINT64_MAX;
	int still = 0;
	while (now_ms() < end && still < 5) {
		sleep_ms(100);
		uint64_t w = atomic_load(&f->written);
		still = w == last ? still + 1 : 0;
		last = w;
	}
	return still >= 5;
}

/* Stops the flood at a frame boundary, or wherever it is by the deadline
 * (the router stopped reading it: the test fails elsewhere). */
static int flood_stop(struct flood *f, uint64_t deadline)
{
	atomic_store(&f->stop, 1);
	while (!atomic_load(&f->done) && now_ms() < deadline)
		sleep_ms(5);
	int whole = atomic_load(&f->done);
	atomic_store(&f->stop, 2);
	pthread_join(f->t, NULL);
	return whole;
}

/* Frames of one message, count times over, back to back. */
static uint8_t *frames(const struct sb_msg *m, int count, size_t *len)
{
	uint8_t one[70000];
	long n = sb_encode(m, one, sizeof one);
	CHECK(n > 0);
	uint8_t *all = malloc((size_t)n * (size_t)count);
	for (int i = 0; i < count; i++)
		memcpy(all + (size_t)i * (size_t)n, one, (size_t)n);
	*len = (size_t)n * (size_t)count;
	return all;
}

/* ---- the neighbours: an echo service and the clients that call it ---------------- */

struct echo {
	struct peer *svc;
	_Atomic int stop;
	pthread_t t;
};

static void *echo_main(void *arg)
{
	struct echo *e = arg;
	while (!atomic_load(&e->stop)) {
		if (peer_recv_within(e->svc, 50) != 1 || e->svc->m.kind != SB_REQUEST)
			continue;
		struct sb_msg r = {.kind = SB_REPLY, .id = e->svc->m.id, .outcome = v_str("ok")};
		send_until(e->svc, &r, now_ms() + ANSWER_MS);
	}
	return NULL;
}

/* The neighbours each make `rounds` request/reply round trips through the
 * echo service and answer a PING each round; a new connection says HELLO
 * each round too. @return the answers that came, of rounds * (2 * n + 1);
 * the first one missing ends the count. */
static int neighbours_served(struct peer **nb, int n, int rounds, uint64_t *id)
{
	int answered = 0;
	for (int r = 0; r < rounds; r++) {
		for (int i = 0; i < n; i++) {
			uint64_t end = now_ms() + ANSWER_MS, rid = ++*id;
			struct sb_msg q = {
				.kind = SB_REQUEST, .id = rid, .name = v_str("noisy.echo")};
			if (!send_until(nb[i], &q, end) || !expect_until(nb[i], SB_REPLY, rid, end))
				return answered;
			answered++;
			if (!answers_ping(nb[i], ++*id))
				return answered;
			answered++;
		}
		struct peer *fresh = hello_until("client", now_ms() + ANSWER_MS);
		if (fresh == NULL)
			return answered;
		answered++;
		peer_close(fresh);
	}
	return answered;
}

/* ---- noisy neighbour ------------------------------------------------------------ */

enum flood_kind { FLOOD_SENDS, FLOOD_REQUESTS, FLOOD_STREAM };

/* One noisy peer floods a consumer that reads nothing, on a 1-shard router
 * with the default receive pool (256 x 16 KiB) and out_max (16 MiB): the
 * flood must be pushed back (its producer paused), and while it is, every
 * other connection of the shard is served and new ones are welcomed. The
 * consumer is not dropped here (slow_ms is long); once it leaves, the noisy
 * peer is served again too. */
static void noisy_flood(enum flood_kind kind)
{
	enum { NEIGHBOURS = 4, ROUNDS = 10 };
	static const char *const what[] = {"sends", "requests", "a stream"};
	struct sb_router_config cfg = base_config(1);
	cfg.slow_ms = 600000;
	router_start(&cfg);

	struct echo e = {.svc = peer_hello(PORT, "noisy-echo", "service")};
	peer_register(e.svc, "noisy.echo", 1);
	atomic_init(&e.stop, 0);
	pthread_create(&e.t, NULL, echo_main, &e);
	struct peer *nb[NEIGHBOURS];
	for (int i = 0; i < NEIGHBOURS; i++)
		nb[i] = peer_hello(PORT, NULL, "client");
	uint64_t id = 0;
	CHECK_INT(neighbours_served(nb, NEIGHBOURS, 1, &id), 2 * NEIGHBOURS + 1);

	/* The consumer that reads nothing, and the noisy producer feeding it:
	 * 64-byte payloads, as many as it can write. Requests carry 256 bytes,
	 * so the consumer's queue passes its pause mark before the requester
	 * reaches its limit of requests in flight (that limit is push-back of
	 * its own, with an error for each request past it). */
	struct peer *deaf, *noisy;
	uint8_t pad[256] = {0xc4, 62};
	struct sb_msg m = {.name = v_str("noisy.sink"), .payload = {pad, 64}};
	if (kind == FLOOD_STREAM) {
		noisy = peer_hello(PORT, "noisy-streamer", "service");
		peer_register(noisy, "noisy.sink", 1);
		deaf = deaf_hello("client");
		struct sb_msg q = {.kind = SB_REQUEST, .id = 1, .name = v_str("noisy.sink")};
		peer_send(deaf, &q);
		m.kind = SB_REPLY;
		m.flags = SB_F_MORE | SB_F_CHUNK;
		m.id = peer_expect(noisy, SB_REQUEST)->id;
		m.name = (struct sb_view){0};
		m.outcome = v_str("chunk");
	} else {
		deaf = deaf_hello("service");
		peer_register(deaf, "noisy.sink", 1);
		noisy = peer_hello(PORT, "noisy-sender", "client");
		m.kind = kind == FLOOD_SENDS ? SB_SEND : SB_REQUEST;
		m.id = 1; /* renumbered as it goes */
		m.timeout_ms = 600000;
		if (kind == FLOOD_REQUESTS) {
			pad[1] = 254;
			m.payload.len = 256;
		}
	}
	size_t len;
	uint8_t *bytes = frames(&m, 256, &len);
	struct sb_router_stats before = router_stats();
	/* One frame per write, as a client writes its messages: each receive
	 * then holds a few frames, and each receive buffer is kept out by the
	 * few of them queued for the consumer. */
	struct flood f = {.next_id = 100, .piece = len / 256};
	flood_start(&f, noisy, bytes, len);

	int stalled = flood_stalls(&f);
	if (!stalled)
		fprintf(stderr, "  %s: the flood was never pushed back\n", what[kind]);
	CHECK(stalled);
	int answered = neighbours_served(nb, NEIGHBOURS, ROUNDS, &id);
	struct sb_router_stats during = router_stats();
	printf("  %s: %llu KiB flooded before the push-back; neighbours answered %d of %d; "
	       "pauses %llu, receives starved %llu, largest queue %llu KiB\n",
	       what[kind], (unsigned long long)atomic_load(&f.written) >> 10, answered,
	       ROUNDS * (2 * NEIGHBOURS + 1), (unsigned long long)(during.pauses - before.pauses),
	       (unsigned long long)(during.recv_starved - before.recv_starved),
	       (unsigned long long)during.queued_peak >> 10);
	CHECK_INT(answered, ROUNDS * (2 * NEIGHBOURS + 1));
	CHECK(during.pauses > before.pauses); /* pushed back by the router, not the kernel */
	CHECK_INT(during.slow_consumers, before.slow_consumers);

	/* The consumer leaves; the producer's flood goes nowhere, and it is
	 * served again. */
	peer_close(deaf);
	flood_stop(&f, now_ms() + ANSWER_MS);
	CHECK(answers_ping(noisy, 99));
	CHECK_INT(neighbours_served(nb, NEIGHBOURS, 1, &id), 2 * NEIGHBOURS + 1);

	free(bytes);
	peer_close(noisy);
	for (int i = 0; i < NEIGHBOURS; i++)
		peer_close(nb[i]);
	atomic_store(&e.stop, 1);
	pthread_join(e.t, NULL);
	peer_close(e.svc);
	router_stop();
}

static void test_noisy_neighbour_sends(void)
{
	noisy_flood(FLOOD_SENDS);
}

static void test_noisy_neighbour_requests(void)
{
	noisy_flood(FLOOD_REQUESTS);
}

static void test_noisy_neighbour_stream(void)
{
	noisy_flood(FLOOD_STREAM);
}

/* ---- slow, or dead ----------------------------------------------------------- */

/* Two requesters of a fast stream: one reads slowly but all the time, the
 * other nothing. Both queues pass their pause marks; the one that reads
 * nothing is dropped as a slow consumer, the slow reader stays however
 * long it takes, because what its socket holds unacknowledged goes down
 * as it reads (a send waiting on its full socket may not complete for
 * longer than slow_ms). On loopback the window opens a 64 KiB segment at
 * a time, so the reader takes many of those per slow_ms. */
static void test_a_slow_reader_stays_a_dead_one_goes(void)
{
	enum { SLOW_MS = 500 };
	struct sb_router_config cfg = base_config(1);
	cfg.out_max = 256u << 10;
	cfg.max_frame = 64u << 10;
	cfg.slow_ms = SLOW_MS;
	router_start(&cfg);

	struct peer *h[2], *rq[2];
	struct flood f[2];
	uint8_t *bytes[2];
	uint8_t chunk[1000] = {0xc5, 0x03, 0xe5};
	for (int i = 0; i < 2; i++) {
		char name[32];
		snprintf(name, sizeof name, "stream.%d", i);
		h[i] = peer_hello(PORT, NULL, "service");
		peer_register(h[i], name, 1);
		rq[i] = i == 0 ? peer_hello(PORT, NULL, "client") : deaf_hello("client");
		struct sb_msg q = {.kind = SB_REQUEST, .id = 1, .name = v_str(name)};
		peer_send(rq[i], &q);
		struct sb_msg m = {.kind = SB_REPLY,
				   .flags = SB_F_MORE | SB_F_CHUNK,
				   .id = peer_expect(h[i], SB_REQUEST)->id,
				   .outcome = v_str("chunk"),
				   .payload = {chunk, sizeof chunk}};
		size_t len;
		bytes[i] = frames(&m, 64, &len);
		f[i].next_id = 0;
		flood_start(&f[i], h[i], bytes[i], len);
	}

	/* rq[0] reads 8 KiB every 5 ms (1.6 MB/s, against a stream that goes
	 * a hundred times faster; 64 KiB per slow_ms would do) for 10 slow_ms. */
	uint64_t start = now_ms(), dead_at = 0, end = start + 10 * SLOW_MS;
	long got = 0;
	int dropped = 0;
	while (now_ms() < end && !dropped) {
		uint8_t buf[8192];
		ssize_t n = recv(rq[0]->fd, buf, sizeof buf, MSG_DONTWAIT);
		got += n > 0 ? n : 0;
		dropped = n == 0;
		if (dead_at == 0 && router_stats().slow_consumers > 0)
			dead_at = now_ms();
		sleep_ms(5);
	}
	struct sb_router_stats st = router_stats();
	printf("  the dead reader went after %llu ms (slow_ms %d); the slow one read %ld KiB in "
	       "%d ms and stays; %llu pauses\n",
	       (unsigned long long)(dead_at - start), SLOW_MS, got >> 10, 10 * SLOW_MS,
	       (unsigned long long)st.pauses);
	CHECK(dead_at != 0);
	CHECK(!dropped);
	CHECK_INT(st.slow_consumers, 1);
	CHECK(st.pauses >= 2); /* both were past their marks */
	CHECK(got > 1000000);  /* it read all along */

	for (int i = 0; i < 2; i++) {
		flood_stop(&f[i], now_ms() + ANSWER_MS);
		free(bytes[i]);
		peer_close(rq[i]);
		peer_close(h[i]);
	}
	router_stop();
}

/* ---- the wedge ---------------------------------------------------------------- */

static unsigned wedge_rounds(void)
{
	const char *e = getenv("SB_WEDGE_ROUNDS");
	return e != NULL ? (unsigned)atoi(e) : 8;
}

/* How a wedge test is set up. */
struct wedge_setup {
	const char *what;
	unsigned sink_shard; /* the flooders' first is on shard 0 */
	unsigned flooders;   /* on shards 0, 1, 0, ... */
	size_t out_max;
	unsigned recv_buffers, recv_buffer_size;
};

/* Clients flood a service that never reads until the router drops the
 * service as a slow consumer, round after round; every connection still
 * answers PING after each: the flooders, and a bystander on each shard.
 * The flood mixes frames routed in place with frames cut across receive
 * buffers, sends with requests, so each flooder is paused, parked,
 * resumed and its parked bytes routed around each drop. */
static void wedge(const struct wedge_setup *w)
{
	enum { MAXF = 8 };
	struct sb_router_config cfg = base_config(2);
	cfg.out_max = w->out_max; /* small bounds: reached with little data */
	cfg.max_frame = (uint32_t)(w->out_max / 4);
	cfg.recv_buffers = w->recv_buffers;
	cfg.recv_buffer_size = w->recv_buffer_size;
	cfg.slow_ms = 100;
	cfg.mail_ring = 64; /* a short ring: the flooders' mail backs up too */
	router_start(&cfg);

	static const uint32_t sizes[] = {24, 1000, 24, 24, 5000, 24, 20000, 300};
	uint8_t *bytes = malloc(1 << 20), blob[20000] = {0xc5};
	size_t len = 0;
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
			if (sizes[i] + 100 > cfg.max_frame)
				continue;
			struct sb_msg m = {.kind = pass ? SB_REQUEST : SB_SEND,
					   .id = 1 + i,
					   .name = v_str("wedge.sink"),
					   .timeout_ms = 600000};
			blob[1] = (uint8_t)((sizes[i] - 3) >> 8);
			blob[2] = (uint8_t)(sizes[i] - 3);
			m.payload = (struct sb_view){blob, sizes[i]};
			long n = sb_encode(&m, bytes + len, (1 << 20) - len);
			CHECK(n > 0);
			len += (size_t)n;
		}

	struct peer *flooder[MAXF];
	struct flood f[MAXF];
	uint8_t *own[MAXF];
	unsigned nf = w->flooders < MAXF ? w->flooders : MAXF;
	for (unsigned i = 0; i < nf; i++) {
		flooder[i] = hello_on(i % 2, "client", 0);
		own[i] = malloc(len); /* each flood numbers its own requests */
		memcpy(own[i], bytes, len);
		f[i].next_id = 0;
	}
	struct peer *by[2] = {hello_on(0, "client", 0), hello_on(1, "client", 0)};
	unsigned rounds = wedge_rounds(), dropped = 0, served = 0;
	uint64_t t0 = now_ms();
	for (unsigned r = 0; r < rounds; r++) {
		struct peer *sink = hello_on(w->sink_shard, "service", 1);
		peer_register(sink, "wedge.sink", 1);
		uint64_t slow = router_stats().slow_consumers;
		for (unsigned i = 0; i < nf; i++)
			flood_start(&f[i], flooder[i], own[i], len);
		uint64_t end = now_ms() + 30000;
		while (router_stats().slow_consumers == slow && now_ms() < end)
			sleep_ms(5);
		dropped += router_stats().slow_consumers > slow;
		for (unsigned i = 0; i < nf; i++)
			atomic_store(&f[i].stop, 1);
		for (unsigned i = 0; i < nf; i++)
			if (!flood_stop(&f[i], now_ms() + ANSWER_MS))
				fprintf(stderr,
					"  round %u: flooder %u not read for %d ms after the "
					"drop\n",
					r, i, ANSWER_MS);
		unsigned ok = 0;
		for (unsigned i = 0; i < nf; i++)
			ok += (unsigned)answers_ping(flooder[i], 1000 + r);
		ok += (unsigned)answers_ping(by[0], 2000 + r) +
		      (unsigned)answers_ping(by[1], 3000 + r);
		if (ok != nf + 2)
			fprintf(stderr, "  round %u: %u of %u answered PING\n", r, ok, nf + 2);
		served += ok == nf + 2;
		peer_close(sink);
		if (ok != nf + 2)
			break;
	}
	printf("  %s: %u rounds in %llu ms, %u dropped as slow consumers, %u with every "
	       "connection served after\n",
	       w->what, rounds, (unsigned long long)(now_ms() - t0), dropped, served);
	CHECK_INT(dropped, rounds);
	CHECK_INT(served, rounds);
	free(bytes);
	peer_close(by[0]);
	peer_close(by[1]);
	for (unsigned i = 0; i < nf; i++) {
		peer_close(flooder[i]);
		free(own[i]);
	}
	router_stop();
}

static void test_flood_then_drop_leaves_everyone_served_same_shard(void)
{
	struct wedge_setup w = {"same shard", 0, 1, 256u << 10, 64, 16384};
	wedge(&w);
}

static void test_flood_then_drop_leaves_everyone_served_cross_shard(void)
{
	struct wedge_setup w = {"cross-shard", 1, 1, 256u << 10, 64, 16384};
	wedge(&w);
}

/* Eight flooders on both shards at once, into one service, with small
 * receive pools (16 x 4 KiB): each is paused by the service, parks what
 * it had in flight, and is resumed and routes it when the service is
 * dropped, often in the middle of another one's frames. */
static void test_flood_then_drop_leaves_everyone_served_many_flooders(void)
{
	struct wedge_setup w = {"many flooders", 1, 8, 64u << 10, 16, 4096};
	wedge(&w);
}

#define RUN_SOME(fn) RUN_WATCHED(fn, 240)

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0); /* a killed run still shows how far it got */
	signal(SIGPIPE, SIG_IGN);
	RUN_SOME(test_noisy_neighbour_sends);
	RUN_SOME(test_noisy_neighbour_requests);
	RUN_SOME(test_noisy_neighbour_stream);
	RUN_SOME(test_a_slow_reader_stays_a_dead_one_goes);
	RUN_SOME(test_flood_then_drop_leaves_everyone_served_same_shard);
	RUN_SOME(test_flood_then_drop_leaves_everyone_served_cross_shard);
	RUN_SOME(test_flood_then_drop_leaves_everyone_served_many_flooders);
	return TEST_EXIT();
}
