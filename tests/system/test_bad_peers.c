/* Peers that misbehave, against the daemon: a reader of a big stream that
 * takes one byte at a time (the handler is paused, the daemon's memory
 * bounded), frames torn into single bytes and peers that hang up inside
 * one, floods of quick and half-open connections, and more connections
 * waiting than descriptors to accept them. The others are served
 * throughout, and every descriptor and byte of memory comes back (/proc).
 * Every wait is bounded: a test fails, it never hangs. */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <switchboard/client.h>
#include <switchboard/router.h>

#include "support/admin.h"
#include "support/child.h"
#include "support/clock.h"
#include "support/daemon.h"
#include "support/loop.h"
#include "support/peer.h"
#include "support/proc.h"
#include "support/sanitizer.h"
#include "support/testlib.h"

/* LONG_MS: a request timeout that must not expire during a test. */
enum { LONG_MS = 120000 };

#define SLOW_OUT_MAX (1u << 20) /* --out-max */

#define RECV_POOL (256u * 16384) /* the daemon's receive pool per shard */

#define SLOW_BOUND_KB ((SLOW_OUT_MAX + 8u * RECV_POOL + 2 * RECV_POOL) / 1024)

#define FIREHOSE_CHUNK 65536

static void send_bytewise(struct peer *p, const struct sb_msg *m)
{
	uint8_t buf[512];
	long n = sb_encode(m, buf, sizeof buf);
	CHECK(n > 0);
	for (long i = 0; i < n; i++) {
		peer_raw(p, buf + i, 1);
		if (i % 8 == 0)
			sleep_ms(1); /* separate receives at the router */
	}
}

/* One request from cli answered by svc, both whole frames. */
static void round_trip(struct peer *cli, struct peer *svc, const char *name, uint64_t id)
{
	peer_request(cli, name, id, LONG_MS, NULL, 0);
	uint64_t rid = peer_expect(svc, SB_REQUEST)->id;
	peer_reply(svc, rid, "ok", 0, NULL, 0);
	struct sb_msg *r = peer_expect(cli, SB_REPLY);
	CHECK(r->id == id && v_is(r->outcome, "ok"));
}

enum { QUICK = 2000, HALF_OPEN = 500 };

static int dial_nowait(uint16_t port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int fds_settle(pid_t pid, int want, unsigned ms)
{
	uint64_t end = now_ms() + ms;
	while (fd_count(pid) != want && now_ms() < end)
		sleep_ms(10);
	return fd_count(pid);
}

/* One flood: quick connections, then half-open ones, the good client
 * served throughout; every descriptor comes back. */
static void flood_once(struct daemon *d, struct peer *cli, struct peer *svc, int fds_base)
{
	static int half[HALF_OPEN];
	uint8_t hello[128];
	struct sb_msg hm = {.kind = SB_HELLO, .version = SB_PROTO_VERSION, .role = v_str("client")};
	long hn = sb_encode(&hm, hello, sizeof hello);

	/* Quick connect and close; every third says HELLO first and leaves
	 * before reading the WELCOME. */
	int failed = 0;
	for (int i = 0; i < QUICK; i++) {
		int fd = dial_nowait(d->port);
		failed += fd < 0;
		if (fd >= 0 && i % 3 == 0)
			(void)!write(fd, hello, (size_t)hn);
		if (fd >= 0)
			close(fd);
		if (i % 100 == 99)
			round_trip(cli, svc, "flood.echo", 10 + (uint64_t)i);
	}
	CHECK_INT(failed, 0);
	CHECK_INT(fds_settle(d->pid, fds_base, 5000), fds_base);

	/* Half-open: connected, never a word. The router holds them (no
	 * HELLO deadline yet) and keeps serving. */
	for (int i = 0; i < HALF_OPEN; i++) {
		half[i] = dial_nowait(d->port);
		CHECK(half[i] >= 0);
		if (i % 50 == 49)
			round_trip(cli, svc, "flood.echo", 5000 + (uint64_t)i);
	}
	CHECK_INT(fds_settle(d->pid, fds_base + HALF_OPEN, 5000), fds_base + HALF_OPEN);
	round_trip(cli, svc, "flood.echo", 9000);
	for (int i = 0; i < HALF_OPEN; i++)
		if (half[i] >= 0)
			close(half[i]);
	CHECK_INT(fds_settle(d->pid, fds_base, 5000), fds_base);
	round_trip(cli, svc, "flood.echo", 9001);
}

static int fds_reached(void *arg)
{
	const struct daemon *d = arg;
	return fd_count(d->pid) >= 64;
}

static void test_slow_consumer_pauses_the_stream(void)
{
	static const char *const flags[] = {"--out-max", "1048576", NULL};
	struct daemon d = daemon_start(0, flags);
	struct sb_splitter *sp = sb_splitter_new(0);
	long base, peak = 0, got_bytes = 0, frames = 0, bad = 0;
	long mid_sent = 0;

	loop_reset();
	struct child *hose = child_ready("stream", d.port, "slow.read", FIREHOSE_CHUNK);
	struct peer *reader = peer_hello(d.port, "slow-reader", "client");
	loop_for(200);
	base = rss_kb(d.pid);
	peer_request(reader, "slow.read", 1, LONG_MS, NULL, 0);

	/* Read one byte at a time, slowly, for 4 s, watching the router's
	 * memory and the handler's progress. */
	uint64_t start = now_ms(), next_sample = start;
	while (now_ms() - start < 4000) {
		uint8_t byte;
		struct pollfd p = {.fd = reader->fd, .events = POLLIN};
		if (poll(&p, 1, 1) == 1) {
			ssize_t n = read(reader->fd, &byte, 1);
			if (n <= 0) {
				CHECK(!"the router dropped the slow reader");
				break;
			}
			got_bytes++;
			if (got_bytes % 100 == 0)
				sleep_ms(1); /* 100 KB/s at most */
			const uint8_t *in = &byte;
			size_t left = 1;
			struct sb_view f;
			while (sb_splitter_next(sp, &in, &left, &f, NULL) == 1) {
				struct sb_msg m;
				if (sb_decode(f.ptr, f.len, SB_DECODE_PAYLOAD, &m, NULL) != 0 ||
				    m.kind != SB_REPLY || m.id != 1 ||
				    chunk_seq(m.payload.ptr, m.payload.len) != (uint32_t)frames)
					bad++;
				frames++;
			}
		}
		if (now_ms() >= next_sample) {
			long kb = rss_kb(d.pid);
			peak = kb > peak ? kb : peak;
			next_sample += 50;
			child_read(hose);
			if (mid_sent == 0 && now_ms() - start >= 2000)
				mid_sent = hose->v[0];
		}
		loop_turn(0);
	}
	child_read(hose);
	long sent = hose->v[0], overloaded = hose->v[1];
	printf("  daemon RSS %ld kB, peak +%ld kB (bound %u kB); handler sent %ld KiB (%ld KiB "
	       "in the last 2 s), blocked %ld times; reader got %ld bytes, %ld frames\n",
	       base, peak - base, SLOW_BOUND_KB, sent / 1024, (sent - mid_sent) / 1024, overloaded,
	       got_bytes, frames);
	/* The documented bound: out_max plus the window of eight receive
	 * pools; plus the receive pools of both shards, which the daemon
	 * touches for the first time during this stream. */
	CHECK_RSS(peak - base < (long)SLOW_BOUND_KB);
	CHECK_INT(bad, 0);
	CHECK(got_bytes > 0);
	/* The policy: the handler is paused, so its sends block. Unpaused, it
	 * would have sent the router its whole stream by now. */
	CHECK(overloaded > 0);
	CHECK(sent < 64L << 20);
	CHECK(sent - mid_sent < 16L << 20);

	/* The reader leaves: the router ends the stream and tells the
	 * handler, even though its reads are paused. */
	peer_close(reader);
	loop_until(&hose->v[2], 1, 10000, "the handler told its requester left");
	sb_splitter_free(sp);
	child_drop(hose);
	daemon_stop(&d);
}

static void test_torn_frames(void)
{
	struct daemon d = daemon_start(0, NULL);
	int fds_before = fd_count(d.pid);

	/* Every frame of a conversation, one byte at a time. */
	struct peer *svc = peer_dial(d.port);
	struct sb_msg hello = {.kind = SB_HELLO,
			       .version = SB_PROTO_VERSION,
			       .role = v_str("service"),
			       .peer = v_str("torn-svc")};
	send_bytewise(svc, &hello);
	peer_expect(svc, SB_WELCOME);
	struct sb_msg reg = {.kind = SB_REGISTER, .id = 1, .name = v_str("torn.echo")};
	send_bytewise(svc, &reg);
	CHECK(peer_expect(svc, SB_ACK)->id == 1);
	struct peer *cli = peer_hello(d.port, "torn-cli", "client");
	struct sb_msg req = {.kind = SB_REQUEST,
			     .id = 42,
			     .timeout_ms = LONG_MS,
			     .name = v_str("torn.echo"),
			     .payload = v_str("\xa5hello")};
	send_bytewise(cli, &req);
	struct sb_msg *got = peer_expect(svc, SB_REQUEST);
	CHECK(v_is(got->payload, "\xa5hello"));
	struct sb_msg rep = {.kind = SB_REPLY, .id = got->id, .outcome = v_str("ok")};
	send_bytewise(svc, &rep);
	CHECK(peer_expect(cli, SB_REPLY)->id == 42);

	/* A second client's request stays open at the handler across all the
	 * hang-ups below. */
	struct peer *waiting = peer_hello(d.port, "torn-waiting", "client");
	peer_request(waiting, "torn.echo", 7, LONG_MS, NULL, 0);
	uint64_t waiting_rid = peer_expect(svc, SB_REQUEST)->id;

	/* Peers that hang up inside a frame, cut at every offset of a
	 * request, some with a FIN and some with a reset. Between each, the
	 * well-behaved pair completes a request. */
	uint8_t frame[512];
	long n = sb_encode(&req, frame, sizeof frame);
	for (long cut = 1; cut < n; cut++) {
		struct peer *torn = peer_hello(d.port, NULL, "client");
		peer_raw(torn, frame, (size_t)cut);
		if (cut % 2) {
			struct linger lg = {1, 0};
			setsockopt(torn->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
		}
		peer_close(torn);
		round_trip(cli, svc, "torn.echo", 100 + (uint64_t)cut);
	}
	/* A prefix promising a big body that never comes, and a peer that
	 * never finishes its HELLO. */
	struct peer *promise = peer_hello(d.port, NULL, "client");
	uint8_t big[4] = {0, 0, 0x40, 0};
	peer_raw(promise, big, sizeof big);
	peer_raw(promise, frame + 4, 10);
	struct peer *mute = peer_dial(d.port);
	peer_raw(mute, frame, 3);
	round_trip(cli, svc, "torn.echo", 99);
	peer_close(promise);
	peer_close(mute);

	peer_reply(svc, waiting_rid, "late but fine", 0, NULL, 0);
	struct sb_msg *w = peer_expect(waiting, SB_REPLY);
	CHECK(w->id == 7 && v_is(w->outcome, "late but fine"));
	round_trip(cli, svc, "torn.echo", 1000);
	peer_close(waiting);
	peer_close(cli);
	peer_close(svc);

	/* Every descriptor comes back. */
	uint64_t end = now_ms() + 5000;
	while (fd_count(d.pid) != fds_before && now_ms() < end)
		sleep_ms(10);
	CHECK_INT(fd_count(d.pid), fds_before);
	daemon_stop(&d);
}

static void test_connection_flood(void)
{
	struct daemon d = daemon_start(0, NULL);
	struct peer *svc = peer_hello(d.port, "flood-svc", "service");
	peer_register(svc, "flood.echo", 1);
	struct peer *cli = peer_hello(d.port, "flood-cli", "client");
	round_trip(cli, svc, "flood.echo", 1);
	int fds_base = fd_count(d.pid);
	long rss_base = rss_kb(d.pid);

	/* The first flood grows the connection table to 500 slots; the
	 * second must reuse them. Tolerance RSS_SLACK_KB: a leak of 1 KiB
	 * per connection would be 2.4 MiB. */
	flood_once(&d, cli, svc, fds_base);
	long rss_first = rss_kb(d.pid);
	flood_once(&d, cli, svc, fds_base);
	long rss_end = rss_kb(d.pid);
	printf("  daemon: %d fds before and after; RSS %ld kB before, %ld after one flood, %ld "
	       "after two\n",
	       fds_base, rss_base, rss_first, rss_end);
	CHECK_RSS(rss_end <= rss_first + RSS_SLACK_KB);
	peer_close(cli);
	peer_close(svc);
	daemon_stop(&d);
}

/* With `ulimit -n 64` and 100 connections waiting, accepts fail: the
 * router must not spin (it once burnt a core for as long as that lasted),
 * must count and log it once, keep serving the connections it has, and
 * accept again once descriptors come back. */
static void test_out_of_descriptors_backs_off(void)
{
	enum { WAITING = 100 };
	static const char *const flags[] = {"--hello-timeout", "0", "--log-level", "1", NULL};
	struct daemon_opts o = {.nofile = 64, .capture_err = 1};
	loop_reset(); /* loop_wait() below waits on the daemon alone */
	struct daemon d = daemon_start_opts(0, flags, &o);
	struct peer *cli = peer_hello(d.port, "fd-cli", "client");
	int held[WAITING];
	for (int i = 0; i < WAITING; i++)
		held[i] = dial_nowait(d.port);
	loop_wait(fds_reached, &d, 10000, "the daemon out of descriptors");
	uint64_t failed = stat_of(cli, "accept_errors");
	CHECK(failed > 0);

	long hz = sysconf(_SC_CLK_TCK), before = cpu_ticks(d.pid);
	uint64_t t0 = now_ms();
	sleep_ms(1000); /* the window the CPU is measured over */
	long used = cpu_ticks(d.pid) - before;
	uint64_t window = now_ms() - t0;
	printf("  daemon out of descriptors: %ld ticks of CPU in %llu ms (%ld per s), %llu failed "
	       "accepts by then\n",
	       used, (unsigned long long)window, hz, (unsigned long long)failed);
	CHECK(used >= 0 && used * 1000 < (long)window * hz / 5); /* under a fifth of a core */
	CHECK(stat_of(cli, "accept_errors") >= failed);

	for (int i = 0; i < WAITING; i++)
		if (held[i] >= 0)
			close(held[i]);
	struct peer *late = peer_hello(d.port, "fd-late", "client"); /* accepted again */
	CHECK(late->peer_id != 0);
	peer_close(late);
	peer_close(cli);

	/* Each shard that failed says so once it accepts again, at its next
	 * retry (up to a second later): read the log until then. */
	static char log[16384];
	size_t have = 0;
	uint64_t until = now_ms() + 10000;
	fcntl(d.err, F_SETFL, O_NONBLOCK);
	for (;;) {
		ssize_t n = read(d.err, log + have, sizeof log - 1 - have);
		if (n > 0)
			have += (size_t)n;
		log[have] = 0;
		int failing = 0, back = 0;
		for (const char *p = log; (p = strstr(p, "accept failed: ")) != NULL; p++)
			failing++;
		for (const char *p = log; (p = strstr(p, "accepting again after")) != NULL; p++)
			back++;
		if ((failing > 0 && back >= failing) || now_ms() >= until)
			break;
		struct pollfd pfd = {.fd = d.err, .events = POLLIN};
		poll(&pfd, 1, 100);
	}
	int episodes = 0;
	for (const char *p = log; (p = strstr(p, "accept failed: Too many open files")) != NULL;
	     p++)
		episodes++;
	CHECK(strstr(log, "warning: RLIMIT_NOFILE is 64") != NULL);
	CHECK(episodes >= 1 && episodes <= 2); /* once per shard */
	CHECK(strstr(log, "accepting again after") != NULL);
	if (episodes < 1 || episodes > 2)
		fprintf(stderr, "  the daemon's log:\n%s", log);
	daemon_stop(&d);
}

/* Each test under a watchdog; SB_TEST_ONLY=slow runs only the tests whose
 * name contains "slow" (see RUN). */
#define RUN_SOME(fn) RUN_WATCHED(fn, 150)

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "child") == 0)
		return child_main(argc, argv);
	if (argc != 2) {
		fprintf(stderr, "usage: %s PATH-TO-SWITCHBOARD\n", argv[0]);
		return 2;
	}
	daemon_path = argv[1];
	setvbuf(stdout, NULL, _IOLBF, 0); /* a killed run still shows how far it got */
	signal(SIGPIPE, SIG_IGN);
	/* Half-open connections need descriptors: here, and in the daemon. */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 4096) {
		rl.rlim_cur = rl.rlim_max < 4096 ? rl.rlim_max : 4096;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	RUN_SOME(test_slow_consumer_pauses_the_stream);
	RUN_SOME(test_torn_frames);
	RUN_SOME(test_connection_flood);
	RUN_SOME(test_out_of_descriptors_backs_off);
	return TEST_EXIT();
}
