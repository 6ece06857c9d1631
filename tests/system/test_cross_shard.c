/* Across shards: 1,000,000 messages over every ordered pair of 8
 * connections on two shards, each SEND delivered exactly once and each
 * request answered exactly once; and a stop in the middle of a cross-shard
 * burst, which must still end. In-process routers; raw connections driven
 * by threads of their own. Every wait is bounded. */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <switchboard/client.h>
#include <switchboard/router.h>

#include "support/clock.h"
#include "support/loop.h"
#include "support/peer.h"
#include "support/proc.h"
#include "support/router.h"
#include "support/testlib.h"

/* LONG_MS: a request timeout that must not expire during a test. */
enum { LONG_MS = 120000 };

static int no_inflight(void *arg)
{
	(void)arg;
	return router_stats().inflight == 0;
}

/* The router frees a request's state as soon as it ends; the count may lag
 * a terminal event by one shard turn, so wait a little for it. */
static void check_inflight_drains(void)
{
	uint64_t end = now_ms() + 5000;
	while (!no_inflight(NULL) && now_ms() < end)
		loop_turn(10);
	CHECK_INT(router_stats().inflight, 0);
}

enum { XN = 8, XWINDOW = 512 };

/* One connection of the load, driven by a thread of its own. Message k of
 * connection i goes to connection (i + 1 + k % 7) % 8, so every ordered
 * pair of connections, and so every pair of shards, carries traffic; odd
 * k are requests, even k fire-and-forget. */
struct xconn {
	int fd;
	int idx;
	unsigned shard;
	uint32_t peer_id;
	long total;                   /* messages to originate */
	long sent;                    /* originated so far */
	long replies;                 /* terminal replies to our requests */
	long dup_replies, bad_frames; /* must stay 0 */
	long sends_from[XN];          /* SENDs received, by origin */
	long requests_from[XN];       /* REQUESTs received (and answered), by origin */
	uint8_t *done;                /* per request: its terminal reply arrived */
	atomic_int finished;          /* set by the thread: everything above is complete */
	pthread_t thread;
};

static struct xconn X[XN];

static uint32_t x_ids[XN];

static atomic_int x_stop;

static long x_per_conn;

static int x_index_of(uint32_t peer_id)
{
	for (int i = 0; i < XN; i++)
		if (x_ids[i] == peer_id)
			return i;
	return -1;
}

/* How many SENDs and REQUESTs connection `from` makes to connection `to`. */
static long x_exp_sends[XN][XN], x_exp_requests[XN][XN]; /* [from][to] */

/* What connection `from` sends to connection `to`, counted once up front. */
static void x_count_expected(void)
{
	memset(x_exp_sends, 0, sizeof x_exp_sends);
	memset(x_exp_requests, 0, sizeof x_exp_requests);
	for (int from = 0; from < XN; from++)
		for (long k = 0; k < x_per_conn; k++) {
			int to = (from + 1 + (int)(k % 7)) % XN;
			if (k % 2)
				x_exp_requests[from][to]++;
			else
				x_exp_sends[from][to]++;
		}
}

static void x_expected(int from, int to, long *sends, long *requests)
{
	*sends = x_exp_sends[from][to];
	*requests = x_exp_requests[from][to];
}

static void x_frame(struct xconn *x, uint8_t *out, size_t *len, long k)
{
	char name[8];
	uint8_t pl[5] = {0xce, (uint8_t)(k >> 24), (uint8_t)(k >> 16), (uint8_t)(k >> 8),
			 (uint8_t)k};
	struct sb_msg m = {.kind = k % 2 ? SB_REQUEST : SB_SEND, .id = (uint64_t)k + 1};
	snprintf(name, sizeof name, "x.%d", (x->idx + 1 + (int)(k % 7)) % XN);
	m.name = v_str(name);
	m.timeout_ms = LONG_MS;
	m.payload.ptr = pl;
	m.payload.len = sizeof pl;
	long n = sb_encode(&m, out + *len, 64);
	if (n > 0)
		*len += (size_t)n;
}

static void x_handle(struct xconn *x, const struct sb_msg *m, uint8_t *out, size_t *len)
{
	int from = x_index_of(m->from);
	if (m->kind == SB_SEND && from >= 0) {
		x->sends_from[from]++;
	} else if (m->kind == SB_REQUEST && from >= 0) {
		x->requests_from[from]++;
		struct sb_msg r = {.kind = SB_REPLY, .id = m->id, .outcome = v_str("ok")};
		r.payload = m->payload;
		long n = sb_encode(&r, out + *len, 64);
		if (n > 0)
			*len += (size_t)n;
	} else if (m->kind == SB_PRESENCE && m->event == SB_PEER_IDENTITY) {
		/* the router introduces each sender before its first message */
	} else if (m->kind == SB_REPLY && m->flags == 0 && m->id >= 1 &&
		   m->id <= (uint64_t)x->total) {
		if (x->done[m->id - 1]++)
			x->dup_replies++;
		else
			x->replies++;
	} else {
		x->bad_frames++; /* an ERROR, or something else unexpected */
	}
}

static long x_requests_of(long total)
{
	return total / 2;
}

static int x_finished(const struct xconn *x)
{
	if (x->sent < x->total || x->replies < x_requests_of(x->total))
		return 0;
	for (int f = 0; f < XN; f++) {
		long s, q;
		x_expected(f, x->idx, &s, &q);
		if (x->sends_from[f] < s || x->requests_from[f] < q)
			return 0;
	}
	return 1;
}

static void *x_run(void *arg)
{
	struct xconn *x = arg;
	struct sb_splitter *sp = sb_splitter_new(0);
	size_t out_cap = 1 << 20, out_len = 0, out_off = 0;
	uint8_t *out = malloc(out_cap), in[65536];
	int finished = 0;

	fcntl(x->fd, F_SETFL, O_NONBLOCK);
	while (!atomic_load(&x_stop)) {
		/* Originate, keeping at most XWINDOW requests open. */
		while (x->sent < x->total && x->sent / 2 - x->replies < XWINDOW &&
		       out_len + 64 < out_cap / 2)
			x_frame(x, out, &out_len, x->sent++);
		struct pollfd p = {.fd = x->fd,
				   .events = (short)(POLLIN | (out_off < out_len ? POLLOUT : 0))};
		if (poll(&p, 1, 100) < 0)
			break;
		if (p.revents & POLLIN) {
			ssize_t n = read(x->fd, in, sizeof in);
			if (n <= 0) {
				x->bad_frames++;
				break;
			}
			const uint8_t *next = in;
			size_t left = (size_t)n;
			struct sb_view f;
			int rc;
			while ((rc = sb_splitter_next(sp, &next, &left, &f, NULL)) == 1) {
				struct sb_msg m;
				if (sb_decode(f.ptr, f.len, 0, &m, NULL) != 0) {
					x->bad_frames++;
					continue;
				}
				if (out_len + 64 > out_cap) { /* replies always fit */
					out_cap *= 2;
					out = realloc(out, out_cap);
				}
				x_handle(x, &m, out, &out_len);
			}
			if (rc < 0)
				x->bad_frames++;
		}
		if (out_off < out_len) {
			ssize_t w = write(x->fd, out + out_off, out_len - out_off);
			if (w > 0)
				out_off += (size_t)w;
			if (out_off == out_len)
				out_off = out_len = 0;
			else if (out_off > out_cap / 4) {
				memmove(out, out + out_off, out_len - out_off);
				out_len -= out_off;
				out_off = 0;
			}
		}
		if (!finished && out_len == 0 && x_finished(x)) {
			finished = 1; /* keep serving the others until told to stop */
			atomic_store(&x->finished, 1);
		}
	}
	free(out);
	sb_splitter_free(sp);
	return NULL;
}

static int x_all_finished(void)
{
	for (int i = 0; i < XN; i++)
		if (!atomic_load(&X[i].finished))
			return 0;
	return 1;
}

static void test_cross_shard_exactly_once(void)
{
	/* 1,000,000 in every build: about 1 s in Release, 7 s under ASan,
	 * 12 s under TSan on two cores. SB_FAULTS_MESSAGES overrides. */
	long total = 1000000;
	if (getenv("SB_FAULTS_MESSAGES") != NULL)
		total = atol(getenv("SB_FAULTS_MESSAGES"));
	x_per_conn = (total / XN + 1) & ~1L; /* even: half requests, half sends */
	x_count_expected();
	router_start(NULL);
	uint16_t port = PORT;
	struct peer *spare[64];
	int nspare = 0, on[2] = {0, 0}, n = 0;

	/* Four connections on each shard: the kernel spreads them by hash, so
	 * dial until both shards have four. */
	for (int tries = 0; n < XN && tries < 64; tries++) {
		struct peer *p = peer_hello(port, NULL, "service");
		if (p->shard < 2 && on[p->shard] < XN / 2) {
			on[p->shard]++;
			memset(&X[n], 0, sizeof X[n]);
			X[n].fd = p->fd;
			X[n].idx = n;
			X[n].shard = p->shard;
			X[n].peer_id = p->peer_id;
			x_ids[n] = p->peer_id;
			char name[8];
			snprintf(name, sizeof name, "x.%d", n);
			peer_register(p, name, 1);
			p->fd = -1; /* the thread owns it now */
			n++;
		}
		spare[nspare++] = p;
	}
	CHECK_INT(n, XN);
	if (n < XN)
		goto out;

	uint64_t start = now_ms();
	atomic_store(&x_stop, 0);
	for (int i = 0; i < XN; i++) {
		X[i].total = x_per_conn;
		X[i].done = calloc((size_t)x_per_conn, 1);
		pthread_create(&X[i].thread, NULL, x_run, &X[i]);
	}
	uint64_t deadline = start + 240000; /* a hang guard, not a speed test */
	while (!x_all_finished() && now_ms() < deadline)
		sleep_ms(20);
	CHECK(x_all_finished());
	/* A little longer: a duplicate would arrive now. */
	sleep_ms(100);
	atomic_store(&x_stop, 1);
	for (int i = 0; i < XN; i++)
		pthread_join(X[i].thread, NULL);
	uint64_t took = now_ms() - start;

	long sends = 0, requests = 0, replies = 0;
	for (int i = 0; i < XN; i++) {
		struct xconn *x = &X[i];
		CHECK_INT(x->sent, x_per_conn);
		CHECK_INT(x->replies, x_requests_of(x_per_conn));
		CHECK_INT(x->dup_replies, 0);
		CHECK_INT(x->bad_frames, 0);
		for (int f = 0; f < XN; f++) {
			long s, q;
			x_expected(f, i, &s, &q);
			CHECK_INT(x->sends_from[f], s);
			CHECK_INT(x->requests_from[f], q);
			sends += x->sends_from[f];
			requests += x->requests_from[f];
		}
		replies += x->replies;
		free(x->done);
	}
	struct sb_router_stats s = router_stats();
	CHECK_INT(s.requests, requests);
	CHECK_INT(s.replies, requests);
	CHECK_INT(s.slow_consumers, 0);
	check_inflight_drains();
	printf("  %ld messages (%ld sends, %ld requests, %ld replies) over %u+%u connections "
	       "in %" PRIu64 " ms; %" PRIu64 " mail deferred\n",
	       sends + requests, sends, requests, replies, on[0], on[1], took, s.mail_deferred);
out:
	for (int i = 0; i < nspare; i++)
		peer_close(spare[i]);
	for (int i = 0; i < n; i++)
		close(X[i].fd);
	router_stop();
}

/* With 64-slot rings between shards, a burst of mail from one shard to the
 * other waits in the sender's backlog. A stop right then must still end:
 * the receiving shard may not leave while mail for it is backlogged, or the
 * sender waits forever for room in a ring nobody reads. */
static void test_stop_during_cross_shard_burst(void)
{
	enum { BURST = 20000 };
	for (int round = 0; round < 5; round++) {
		struct sb_router_config cfg;
		int err = 0;
		sb_router_config_init(&cfg);
		cfg.port = 0;
		cfg.shards = 2;
		cfg.log_level = 0;
		cfg.mail_ring = 64;
		struct sb_router *r = sb_router_new(&cfg, &err);
		CHECK(r != NULL);
		CHECK_INT(sb_router_start(r), 0);
		uint16_t port = sb_router_port(r);
		struct peer *svc = NULL, *cli = NULL, *spare[32];
		int nspare = 0;

		for (int i = 0; i < 32 && (svc == NULL || cli == NULL); i++) {
			struct peer *p = peer_hello(port, NULL, i == 0 ? "service" : "client");
			if (svc == NULL)
				svc = p;
			else if (p->shard != svc->shard)
				cli = p;
			else
				spare[nspare++] = p;
		}
		CHECK(cli != NULL);
		if (cli != NULL) {
			peer_register(svc, "burst.sink", 1);
			/* Every SEND crosses to the service's shard. */
			static uint8_t frames[BURST * 32];
			size_t len = 0;
			struct sb_msg m = {.kind = SB_SEND, .name = v_str("burst.sink")};
			for (int i = 0; i < BURST; i++)
				len += (size_t)sb_encode(&m, frames + len, sizeof frames - len);
			peer_raw(cli, frames, len);
			sleep_ms((unsigned)round); /* stop at a different point each round */
		}
		watchdog("sb_router_stop during a cross-shard burst", 20);
		sb_router_stop(r, 0);
		watchdog("test_stop_during_cross_shard_burst", 150);
		sb_router_free(r);
		peer_close(svc);
		peer_close(cli);
		for (int i = 0; i < nspare; i++)
			peer_close(spare[i]);
	}
}

/* Each test under a watchdog; SB_TEST_ONLY=slow runs only the tests whose
 * name contains "slow" (see RUN). */
#define RUN_SOME(fn) RUN_WATCHED(fn, 150)

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0); /* a killed run still shows how far it got */
	signal(SIGPIPE, SIG_IGN);
	RUN_SOME(test_cross_shard_exactly_once);
	RUN_SOME(test_stop_during_cross_shard_burst);
	return TEST_EXIT();
}
