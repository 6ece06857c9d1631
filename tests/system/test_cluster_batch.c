/* A shard's answers to one requesting shard, gathered in one turn, cross
 * the cluster as one NATS message (docs/cluster.md, "Batches"): each
 * answer still arrives once, in order, and a batch that does not add up
 * is dropped with a line in the log, the router serving on. Router A (the
 * requesters) is the daemon, named batch-a, on the first of two NATS
 * servers, its log read by the test; router B (the handlers) is in
 * process on the second, which serves its monitoring endpoint: how many
 * messages B's connections published is what an operator sees there
 * (/connz, in_msgs). Every wait is bounded. */
#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <switchboard/router.h>

#include "support/admin.h"
#include "support/clock.h"
#include "support/cluster.h"
#include "support/daemon.h"
#include "support/natsd.h"
#include "support/peer.h"
#include "support/proc.h"
#include "support/router.h"
#include "support/testlib.h"

static struct natsd servers[2];
static struct daemon da;
static struct sb_router *rb;
static uint16_t pa, pb, mport, maport;
static char logbuf[1 << 16];

/* ---- what an operator sees ------------------------------------------------ */

/* A connection to 127.0.0.1:port, or -1. */
static int dial(uint16_t port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* Reads from fd into buf (cap) until it holds `until` or closes, within
 * 10 s: the bytes read. */
static size_t read_until(int fd, char *buf, size_t cap, const char *until)
{
	size_t len = 0;
	uint64_t end = now_ms() + 10000;
	buf[0] = 0;
	while (len + 1 < cap && (until == NULL || strstr(buf, until) == NULL)) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		uint64_t now = now_ms();
		if (now >= end || poll(&p, 1, (int)(end - now)) <= 0)
			break;
		ssize_t r = read(fd, buf + len, cap - len - 1);
		if (r <= 0)
			break;
		len += (size_t)r;
		buf[len] = 0;
	}
	return len;
}

/* Messages a router's connections have published, summed, as its
 * server's /connz counts them (in_msgs of each "switchboard <name>.<k>",
 * name "batch-b" on the second server, monitoring port mport, "batch-a"
 * on the first, maport); -1 if it did not answer. */
static long long published(uint16_t port, const char *name)
{
	static char body[1 << 18];
	char tag[64];
	int fd = dial(port);
	const char req[] = "GET /connz?limit=1024 HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
	if (fd < 0)
		return -1;
	if (write(fd, req, sizeof req - 1) != (ssize_t)(sizeof req - 1)) {
		close(fd);
		return -1;
	}
	read_until(fd, body, sizeof body, NULL);
	close(fd);
	if (strstr(body, " 200 ") == NULL)
		return -1;
	snprintf(tag, sizeof tag, "\"switchboard %s.", name);
	long long sum = 0;
	/* Each connection's object starts with its "cid"; in_msgs and the
	 * name are among its members. */
	for (char *c = strstr(body, "\"cid\""); c != NULL;) {
		char *next = strstr(c + 5, "\"cid\"");
		if (next != NULL)
			*next = 0;
		char *in = strstr(c, "\"in_msgs\":");
		if (strstr(c, tag) != NULL && in != NULL)
			sum += strtoll(in + 10, NULL, 10);
		if (next != NULL)
			*next = '"';
		c = next;
	}
	return sum;
}

static long long b_published(void)
{
	return published(mport, "batch-b");
}

static long long a_published(void)
{
	return published(maport, "batch-a");
}

/* The daemon's log read on until it holds text (15 s). 1 if it does. */
static int log_says(const char *text)
{
	size_t have = strlen(logbuf);
	uint64_t end = now_ms() + 15000;
	while (strstr(logbuf, text) == NULL && now_ms() < end && have + 1 < sizeof logbuf) {
		struct pollfd p = {.fd = da.err, .events = POLLIN};
		if (poll(&p, 1, 100) != 1)
			continue;
		ssize_t n = read(da.err, logbuf + have, sizeof logbuf - 1 - have);
		if (n <= 0)
			break;
		have += (size_t)n;
		logbuf[have] = 0;
	}
	if (strstr(logbuf, text) != NULL)
		return 1;
	fprintf(stderr, "the log has no \"%s\":\n%s\n", text, logbuf);
	return 0;
}

/* ---- the handler's side ---------------------------------------------------- */

/* val as a MessagePack uint 32 into v (5 bytes): its length. */
static uint32_t u32_of(uint8_t *v, uint32_t val)
{
	v[0] = 0xce;
	v[1] = (uint8_t)(val >> 24);
	v[2] = (uint8_t)(val >> 16);
	v[3] = (uint8_t)(val >> 8);
	v[4] = (uint8_t)val;
	return 5;
}

/* n answers, id[i] with flags and a 4-byte payload val[i] (big-endian), in
 * one write: they reach router B together, in one turn. */
static void answer_all(struct peer *p, const uint64_t *id, const uint32_t *val, unsigned n,
		       uint8_t flags)
{
	size_t cap = (size_t)n * 64, at = 0;
	uint8_t *buf = malloc(cap);
	CHECK(buf != NULL);
	for (unsigned i = 0; i < n; i++) {
		uint8_t v[5];
		struct sb_msg m = {.kind = SB_REPLY, .id = id[i], .flags = flags};
		m.outcome = v_str("ok");
		m.payload.ptr = v;
		m.payload.len = u32_of(v, val[i]);
		long k = sb_encode(&m, buf + at, cap - at);
		CHECK(k > 0);
		at += (size_t)k;
	}
	peer_raw(p, buf, at);
	free(buf);
}

/* The payload of m, a MessagePack uint 32 as u32_of() writes it, or
 * UINT32_MAX. */
static uint32_t val_of(const struct sb_msg *m)
{
	const uint8_t *v = m->payload.ptr;
	if (m->payload.len != 5 || v[0] != 0xce)
		return UINT32_MAX;
	return (uint32_t)v[1] << 24 | (uint32_t)v[2] << 16 | (uint32_t)v[3] << 8 | v[4];
}

/* n requests to name, ids first..first+n-1, each with its id as its
 * value, in one write: they reach router A together, in one turn. */
static void request_all(struct peer *p, const char *name, uint64_t first, unsigned n)
{
	size_t cap = (size_t)n * (64 + strlen(name)), at = 0;
	uint8_t *buf = malloc(cap);
	CHECK(buf != NULL);
	for (unsigned i = 0; i < n; i++) {
		uint8_t v[5];
		struct sb_msg m = {.kind = SB_REQUEST, .id = first + i, .timeout_ms = 60000};
		m.name = v_str(name);
		m.payload.ptr = v;
		m.payload.len = u32_of(v, (uint32_t)(first + i));
		long k = sb_encode(&m, buf + at, cap - at);
		CHECK(k > 0);
		at += (size_t)k;
	}
	peer_raw(p, buf, at);
	free(buf);
}

/* n SENDs to name, each with its value first..first+n-1, in one write:
 * they reach the router together, in one turn. */
static void send_all(struct peer *p, const char *name, uint32_t first, unsigned n)
{
	size_t cap = (size_t)n * (64 + strlen(name)), at = 0;
	uint8_t *buf = malloc(cap);
	CHECK(buf != NULL);
	for (unsigned i = 0; i < n; i++) {
		uint8_t v[5];
		struct sb_msg m = {.kind = SB_SEND};
		m.name = v_str(name);
		m.payload.ptr = v;
		m.payload.len = u32_of(v, first + i);
		long k = sb_encode(&m, buf + at, cap - at);
		CHECK(k > 0);
		at += (size_t)k;
	}
	peer_raw(p, buf, at);
	free(buf);
}

static void request_val(struct peer *p, const char *name, uint64_t id, uint32_t val)
{
	uint8_t v[5];
	peer_request(p, name, id, 60000, v, u32_of(v, val));
}

/* ---- the tests ----------------------------------------------------------- */

#define PIPELINED 2000
#define BURST     250

/* Every request 1..PIPELINED answered once, with its own value
 * (id * @p mul + @p add), in whatever order. */
static void expect_each_once(struct peer *cl, unsigned *got, uint32_t mul, uint32_t add)
{
	for (unsigned i = 0; i < PIPELINED; i++) {
		struct sb_msg *m = peer_expect(cl, SB_REPLY);
		CHECK(m->id >= 1 && m->id <= PIPELINED);
		if (m->id < 1 || m->id > PIPELINED)
			break;
		CHECK_INT(got[m->id], 0);
		CHECK_INT(val_of(m), m->id * mul + add);
		got[m->id]++;
	}
}

static void test_pipelined_requests_across_routers_are_each_answered_once_in_fewer_messages(void)
{
	struct peer *svc = peer_hello(pb, NULL, "service");
	struct peer *cl = peer_hello(pa, NULL, "client");
	static unsigned got[PIPELINED + 1];
	uint64_t ids[BURST];
	uint32_t vals[BURST];

	peer_register(svc, "batch.echo", 1);
	CHECK(cluster_until_reachable(cl, svc, "batch.echo"));
	long long before = b_published();
	CHECK(before >= 0);

	/* Every request on its way at once; the service answers them in
	 * bursts, each with a value made from its request's. */
	for (uint32_t i = 1; i <= PIPELINED; i++)
		request_val(cl, "batch.echo", i, i);
	for (unsigned done = 0; done < PIPELINED;) {
		unsigned n = 0;
		while (n < BURST && done + n < PIPELINED) {
			struct sb_msg *m = peer_expect(svc, SB_REQUEST);
			ids[n] = m->id;
			vals[n] = val_of(m) * 7 + 1;
			n++;
		}
		answer_all(svc, ids, vals, n, 0);
		done += n;
	}
	/* The requester gets each answer once, its own: answers keep their
	 * request's id in a batch. */
	memset(got, 0, sizeof got);
	expect_each_once(cl, got, 7, 1);
	peer_expect_silence(cl, 300);

	/* Router B published far fewer messages than answers: a burst's
	 * answers to one inbox left as one (heartbeats are the rest). */
	long long after = b_published();
	fprintf(stderr, "router B published %lld NATS messages for %d answers\n", after - before,
		PIPELINED);
	CHECK(after - before > 0);
	CHECK(after - before < PIPELINED / 4);
	peer_close(cl);
	peer_close(svc);
}

/* A turn's requests to one name leave router A as one NATS message. */
static void test_pipelined_requests_leave_the_requesters_router_in_fewer_messages(void)
{
	struct peer *svc = peer_hello(pb, NULL, "service");
	struct peer *cl = peer_hello(pa, NULL, "client");
	static unsigned got[PIPELINED + 1];
	uint64_t ids[BURST];
	uint32_t vals[BURST];

	peer_register(svc, "batch.req", 1);
	CHECK(cluster_until_reachable(cl, svc, "batch.req"));
	long long before = a_published();
	CHECK(before >= 0);

	/* Bursts of requests, each in one write; the service answers each
	 * burst as it has it all. */
	memset(got, 0, sizeof got);
	for (unsigned done = 0; done < PIPELINED; done += BURST) {
		request_all(cl, "batch.req", done + 1, BURST);
		for (unsigned n = 0; n < BURST; n++) {
			struct sb_msg *m = peer_expect(svc, SB_REQUEST);
			ids[n] = m->id;
			vals[n] = val_of(m) * 3 + 2;
		}
		answer_all(svc, ids, vals, BURST, 0);
	}
	expect_each_once(cl, got, 3, 2);
	peer_expect_silence(cl, 300);
	peer_expect_silence(svc, 100);

	long long after = a_published();
	fprintf(stderr, "router A published %lld NATS messages for %d requests\n", after - before,
		PIPELINED);
	CHECK(after - before > 0);
	CHECK(after - before < PIPELINED / 4);
	peer_close(cl);
	peer_close(svc);
}

#define SENDS 2000

/* A turn's SENDs to one name leave router A as one NATS message; router
 * B's handler gets each once, in the order they were written. */
static void
test_many_sends_in_one_write_reach_a_handler_on_another_router_in_order_in_fewer_messages(void)
{
	struct peer *svc = peer_hello(pb, NULL, "service");
	struct peer *cl = peer_hello(pa, NULL, "client");

	peer_register(svc, "batch.fire", 1);
	CHECK(cluster_until_reachable(cl, svc, "batch.fire"));
	long long before = a_published();
	CHECK(before >= 0);

	for (unsigned done = 0; done < SENDS; done += BURST)
		send_all(cl, "batch.fire", done + 1, BURST);
	for (uint32_t want = 1; want <= SENDS; want++) {
		struct sb_msg *m = peer_expect(svc, SB_SEND);
		CHECK(v_is(m->name, "batch.fire"));
		if (val_of(m) != want) {
			CHECK_INT(val_of(m), want);
			break;
		}
	}
	peer_expect_silence(svc, 300);

	long long after = a_published();
	fprintf(stderr, "router A published %lld NATS messages for %d sends\n", after - before,
		SENDS);
	CHECK(after - before > 0);
	CHECK(after - before < SENDS / 4);
	peer_close(cl);
	peer_close(svc);
}

#define MIXED 600

/* SENDs and REQUESTs to one name in one write: router B's handler sees
 * them in the order they were written (each kind batched with its own,
 * one batch sent before a frame of the other kind joins a new one), and
 * each request is answered once. */
static void test_sends_and_requests_to_one_name_in_one_write_keep_their_order_across_routers(void)
{
	struct peer *svc = peer_hello(pb, NULL, "service");
	struct peer *cl = peer_hello(pa, NULL, "client");
	static uint8_t buf[MIXED * 64];
	static uint64_t ids[MIXED];
	size_t at = 0;
	unsigned nreq = 0;

	peer_register(svc, "batch.mixed", 1);
	CHECK(cluster_until_reachable(cl, svc, "batch.mixed"));
	/* Runs of 1 to 4 of a kind: sends, then requests, then sends... */
	for (unsigned i = 0, run = 0; i < MIXED; run++) {
		unsigned len = 1 + run % 4;
		for (unsigned j = 0; j < len && i < MIXED; j++, i++) {
			uint8_t v[5];
			struct sb_msg m = {.kind = run % 2 ? SB_REQUEST : SB_SEND};
			if (m.kind == SB_REQUEST) {
				m.id = i + 1;
				m.timeout_ms = 60000;
			}
			m.name = v_str("batch.mixed");
			m.payload.ptr = v;
			m.payload.len = u32_of(v, i);
			long k = sb_encode(&m, buf + at, sizeof buf - at);
			CHECK(k > 0);
			at += (size_t)k;
		}
	}
	peer_raw(cl, buf, at);
	for (unsigned i = 0, run = 0; i < MIXED; run++) {
		unsigned len = 1 + run % 4;
		for (unsigned j = 0; j < len && i < MIXED; j++, i++) {
			CHECK_INT(peer_recv_within(svc, 10000), 1);
			struct sb_msg *m = &svc->m;
			CHECK_INT(m->kind, run % 2 ? SB_REQUEST : SB_SEND);
			CHECK_INT(val_of(m), i);
			if (m->kind == SB_REQUEST)
				ids[nreq++] = m->id;
			if (val_of(m) != i)
				goto out;
		}
	}
	for (unsigned i = 0; i < nreq; i++)
		peer_reply(svc, ids[i], "ok", 0, NULL, 0);
	static unsigned got[MIXED + 1];
	memset(got, 0, sizeof got);
	for (unsigned i = 0; i < nreq; i++) {
		struct sb_msg *m = peer_expect(cl, SB_REPLY);
		CHECK(m->id >= 1 && m->id <= MIXED);
		if (m->id < 1 || m->id > MIXED)
			break;
		CHECK_INT(got[m->id], 0);
		got[m->id]++;
	}
	peer_expect_silence(cl, 300);
out:
	peer_close(cl);
	peer_close(svc);
}

/* Router B's own counters ($sb.stats, docs/protocol.md) as its client's
 * sends leave for a handler on router A: every send is a frame counted
 * once, in fewer messages, most of them batches, and no message counted
 * that B's server did not see published. */
static void test_the_cluster_counters_count_the_messages_frames_and_batches_a_router_publishes(void)
{
	struct peer *svc = peer_hello(pa, NULL, "service");
	struct peer *cl = peer_hello(pb, NULL, "client");

	peer_register(svc, "batch.count", 1);
	CHECK(cluster_until_reachable(cl, svc, "batch.count"));
	struct sb_router_stats s0, s1;
	sb_router_stats(rb, &s0);
	long long pub0 = b_published();
	CHECK(pub0 >= 0);

	for (unsigned done = 0; done < SENDS; done += BURST)
		send_all(cl, "batch.count", done + 1, BURST);
	for (uint32_t want = 1; want <= SENDS; want++)
		if (val_of(peer_expect(svc, SB_SEND)) != want) {
			CHECK(0);
			break;
		}
	sb_router_stats(rb, &s1);
	long long pub1 = b_published();
	uint64_t msgs = s1.cluster_msgs - s0.cluster_msgs;
	uint64_t frames = s1.cluster_frames - s0.cluster_frames;
	uint64_t batches = s1.cluster_batches - s0.cluster_batches;
	fprintf(stderr,
		"router B: %" PRIu64 " messages, %" PRIu64 " frames, %" PRIu64
		" batches; its server saw %lld published\n",
		msgs, frames, batches, pub1 - pub0);
	CHECK_INT(frames, SENDS);
	CHECK(msgs >= 1 && msgs < SENDS / 4);
	CHECK(batches >= 1 && batches <= msgs);
	CHECK(pub1 - pub0 >= (long long)msgs);
	/* $sb.stats says the same, summed over the cluster's routers. */
	CHECK(stat_of(cl, "cluster_frames") >= s1.cluster_frames);
	CHECK(stat_of(cl, "cluster_batches") >= s1.cluster_batches);
	CHECK(stat_of(cl, "cluster_msgs") >= s1.cluster_msgs);
	peer_close(cl);
	peer_close(svc);
}

#define NOBODY 300

/* NATS's "no responders" for a batch ends every request in it. */
static void test_a_request_batch_to_a_name_nobody_handles_ends_each_with_no_handler_once(void)
{
	struct peer *svc = peer_hello(pb, NULL, "service");
	struct peer *cl = peer_hello(pa, NULL, "client");
	static unsigned got[NOBODY + 1];

	peer_register(svc, "batch.gone", 1);
	CHECK(cluster_until_reachable(cl, svc, "batch.gone"));
	peer_close(svc);
	/* Until router B's interest is gone from the servers too: a lone
	 * request ends `no handler` from NATS's "no responders", router B
	 * publishing nothing (while it drains the name, it returns the
	 * request to router A, a message of its own: docs/cluster.md,
	 * "Subjects"). None is lost on the way: none ends at its deadline. */
	uint64_t end = now_ms() + 20000;
	int gone = 0;
	for (uint64_t id = 1000000; !gone && now_ms() < end; id++) {
		long long b0 = b_published();
		peer_request(cl, "batch.gone", id, 4000, NULL, 0);
		struct sb_msg *m = peer_expect(cl, SB_ERROR);
		CHECK(m->id == id);
		CHECK_INT(m->code, (uint32_t)-SB_ENOHANDLER);
		gone = b0 >= 0 && b_published() == b0;
	}
	CHECK(gone);

	long long before = a_published();
	request_all(cl, "batch.gone", 1, NOBODY);
	memset(got, 0, sizeof got);
	for (unsigned i = 0; i < NOBODY; i++) {
		struct sb_msg *m = peer_expect(cl, SB_ERROR);
		CHECK(m->id >= 1 && m->id <= NOBODY);
		if (m->id < 1 || m->id > NOBODY)
			break;
		CHECK_INT(m->code, (uint32_t)-SB_ENOHANDLER);
		CHECK_INT(got[m->id], 0);
		got[m->id]++;
	}
	peer_expect_silence(cl, 300);
	long long after = a_published();
	fprintf(stderr, "router A published %lld NATS messages for %d requests nobody handles\n",
		after - before, NOBODY);
	CHECK(after - before < NOBODY / 4);
	peer_close(cl);
}

#define STREAMS 4
#define CHUNKS  1000
#define STEP    50

static void test_interleaved_streams_across_routers_arrive_whole_and_in_order(void)
{
	struct peer *svc = peer_hello(pb, NULL, "service");
	struct peer *cl = peer_hello(pa, NULL, "client");
	uint64_t rid[STREAMS], ids[STREAMS * STEP];
	uint32_t vals[STREAMS * STEP], next[STREAMS + 1] = {0};
	int ended[STREAMS + 1] = {0};

	peer_register(svc, "batch.stream", 1);
	CHECK(cluster_until_reachable(cl, svc, "batch.stream"));
	for (uint64_t i = 1; i <= STREAMS; i++)
		peer_request(cl, "batch.stream", i, 60000, NULL, 0);
	for (unsigned i = 0; i < STREAMS; i++)
		rid[i] = peer_expect(svc, SB_REQUEST)->id;

	/* Chunks of every stream interleaved, STEP of each per write; the
	 * requester reads as it goes (flow control stays end to end). */
	unsigned read = 0;
	for (uint32_t c = 0; c < CHUNKS; c += STEP) {
		unsigned n = 0;
		for (uint32_t k = c; k < c + STEP; k++)
			for (unsigned s = 0; s < STREAMS; s++) {
				ids[n] = rid[s];
				vals[n++] = k;
			}
		answer_all(svc, ids, vals, n, SB_F_MORE);
		while (read < (c + STEP / 2) * STREAMS && peer_recv_within(cl, 100) == 1) {
			struct sb_msg *m = &cl->m;
			CHECK(m->kind == SB_REPLY && m->id >= 1 && m->id <= STREAMS);
			if (m->kind != SB_REPLY || m->id < 1 || m->id > STREAMS)
				break;
			CHECK_INT(val_of(m), next[m->id]);
			next[m->id]++;
			read++;
		}
	}
	uint32_t last[STREAMS];
	for (unsigned s = 0; s < STREAMS; s++)
		last[s] = CHUNKS + 7;
	answer_all(svc, rid, last, STREAMS, 0);
	for (unsigned left = STREAMS; left > 0;) {
		struct sb_msg *m = peer_expect(cl, SB_REPLY);
		CHECK(m->id >= 1 && m->id <= STREAMS);
		if (m->id < 1 || m->id > STREAMS)
			break;
		CHECK(!ended[m->id]);
		if (m->flags & SB_F_MORE) {
			CHECK_INT(val_of(m), next[m->id]);
			next[m->id]++;
		} else {
			CHECK_INT(next[m->id], CHUNKS);
			CHECK_INT(val_of(m), CHUNKS + 7);
			ended[m->id] = 1;
			left--;
		}
	}
	peer_expect_silence(cl, 300);
	peer_close(cl);
	peer_close(svc);
}

#define DYING 40

/* The error that ends a request comes after the answers gathered before
 * it, never ahead of them. */
static void test_a_handler_that_dies_after_a_burst_of_chunks_gives_every_chunk_then_peer_gone(void)
{
	struct peer *svc = peer_hello(pb, NULL, "service");
	struct peer *cl = peer_hello(pa, NULL, "client");
	uint64_t ids[DYING];
	uint32_t vals[DYING];

	peer_register(svc, "batch.dying", 1);
	CHECK(cluster_until_reachable(cl, svc, "batch.dying"));
	peer_request(cl, "batch.dying", 9, 60000, NULL, 0);
	uint64_t id = peer_expect(svc, SB_REQUEST)->id;
	for (unsigned i = 0; i < DYING; i++) {
		ids[i] = id;
		vals[i] = i;
	}
	answer_all(svc, ids, vals, DYING, SB_F_MORE);
	peer_close(svc); /* with its chunks still in router B's socket */
	for (uint32_t i = 0; i < DYING; i++) {
		struct sb_msg *m = peer_expect(cl, SB_REPLY);
		CHECK(m->id == 9 && (m->flags & SB_F_MORE));
		CHECK_INT(val_of(m), i);
	}
	struct sb_msg *e = peer_expect(cl, SB_ERROR);
	CHECK(e->id == 9);
	CHECK_INT(e->code, (uint32_t)-SB_EPEERGONE);
	peer_expect_silence(cl, 300);
	peer_close(cl);
}

/* A raw NATS client publishes HPUB subject with header Sb-Batch: count
 * and payload p (n bytes), then waits for the server's PONG. */
static void publish_batch_to(const char *subject, const char *reply, const char *count,
			     const void *p, size_t n);

static void publish_batch(const char *subject, const char *count, const void *p, size_t n)
{
	publish_batch_to(subject, NULL, count, p, n);
}

/* The same with a reply subject (NULL: none). */
static void publish_batch_to(const char *subject, const char *reply, const char *count,
			     const void *p, size_t n)
{
	char hdr[128], line[256], buf[4096];
	int fd = dial(servers[0].port);
	CHECK(fd >= 0);
	CHECK(read_until(fd, buf, sizeof buf, "\r\n") > 0 && strncmp(buf, "INFO", 4) == 0);
	int hn = snprintf(hdr, sizeof hdr, "NATS/1.0\r\nSb-Batch: %s\r\n\r\n", count);
	int ln = snprintf(line, sizeof line,
			  "CONNECT {\"verbose\":false,\"headers\":true}\r\nHPUB %s %s%s%d %zu\r\n",
			  subject, reply ? reply : "", reply ? " " : "", hn, (size_t)hn + n);
	CHECK(write(fd, line, (size_t)ln) == ln);
	CHECK(write(fd, hdr, (size_t)hn) == hn);
	if (n > 0)
		CHECK(write(fd, p, n) == (ssize_t)n);
	CHECK(write(fd, "\r\nPING\r\n", 8) == 8);
	CHECK(read_until(fd, buf, sizeof buf, "PONG") > 0 && strstr(buf, "PONG") != NULL);
	close(fd);
}

static void test_a_malformed_batch_is_dropped_with_a_line_in_the_log_and_the_router_serves_on(void)
{
	struct peer *svc = peer_hello(pb, NULL, "service");
	struct peer *cl = peer_hello(pa, NULL, "client");
	uint8_t two[64];
	struct sb_msg r = {.kind = SB_REPLY, .id = 12345, .flags = SB_F_MORE};
	r.outcome = v_str("ok");
	long k = sb_encode(&r, two, 32);
	CHECK(k > 0 && k <= 32);
	memcpy(two + k, two, (size_t)k);                                 /* two whole frames */
	uint8_t longer[10] = {0, 0, 0, 2, 0xc0, 0, 0, 0xff, 0xff, 0xff}; /* the second: 16 MiB */
	uint8_t junk[10] = {0, 0, 0, 1, 0xc1, 0, 0, 0, 1, 0xc1};

	peer_register(svc, "batch.after", 1);
	CHECK(cluster_until_reachable(cl, svc, "batch.after"));
	for (unsigned s = 0; s < 2; s++) {
		char subject[64];
		snprintf(subject, sizeof subject, "sb.i.batch-a.%u", s);
		publish_batch(subject, "x2", two, (size_t)k * 2);
		publish_batch(subject, "1", two, (size_t)k);
		publish_batch(subject, "99999999999", two, (size_t)k * 2);
		publish_batch(subject, "3", two, (size_t)k * 2);
		publish_batch(subject, "2", longer, sizeof longer);
		publish_batch(subject, "2", two, (size_t)k * 2 - 1);
		publish_batch(subject, "1", NULL, 0);
		uint8_t more[80];
		memcpy(more, two, (size_t)k * 2);
		more[k * 2] = 0;
		publish_batch(subject, "2", more, (size_t)k * 2 + 1);
		/* Whole, but its frames are not answers: each dropped alone. */
		publish_batch(subject, "2", junk, sizeof junk);
		/* Whole, answers to no request of ours: late, dropped. */
		publish_batch(subject, "2", two, (size_t)k * 2);
		snprintf(subject, sizeof subject, "sb.i.batch-a.%u.77", s);
		publish_batch(subject, "2", two, (size_t)k * 2);
	}
	CHECK(log_says("a malformed batch on sb.i.batch-a.0: a bad frame count"));
	CHECK(log_says("a malformed batch on sb.i.batch-a.1: fewer frames than its count"));
	CHECK(log_says("a malformed batch on sb.i.batch-a.0: a frame longer than the batch"));
	CHECK(log_says("a malformed batch on sb.i.batch-a.1: bytes after its last frame"));
	CHECK(log_says("a malformed batch on sb.i.batch-a.0.77: not on the answers' subject"));
	CHECK(log_says("a malformed answer on sb.i.batch-a.1"));
	peer_expect_silence(cl, 200);

	/* The router serves on, across routers and batches too. */
	peer_request(cl, "batch.after", 5, 20000, NULL, 0);
	peer_request(cl, "batch.after", 6, 20000, NULL, 0);
	uint64_t ids[2];
	uint32_t vals[2] = {50, 60};
	ids[0] = peer_expect(svc, SB_REQUEST)->id;
	ids[1] = peer_expect(svc, SB_REQUEST)->id;
	answer_all(svc, ids, vals, 2, 0);
	struct sb_msg *m = peer_expect(cl, SB_REPLY);
	CHECK_INT(val_of(m), m->id * 10);
	m = peer_expect(cl, SB_REPLY);
	CHECK_INT(val_of(m), m->id * 10);
	peer_close(cl);
	peer_close(svc);
}

static void
test_a_malformed_request_batch_is_dropped_with_a_line_in_the_log_and_the_router_serves_on(void)
{
	struct peer *svc = peer_hello(pa, NULL, "service");
	struct peer *cl = peer_hello(pb, NULL, "client");
	uint8_t two[128];
	struct sb_msg r = {.kind = SB_REQUEST, .id = 4321, .timeout_ms = 5000};
	r.name = v_str("batch.here");
	long k = sb_encode(&r, two, 64);
	CHECK(k > 0 && k <= 64);
	memcpy(two + k, two, (size_t)k); /* two whole frames */
	two[k + SB_ID_OFFSET + 7] ^= 1;  /* the second's id: 4320 */

	peer_register(svc, "batch.here", 1);
	CHECK(cluster_until_reachable(cl, svc, "batch.here"));
	const char *s = "sb.r.batch.here";
	publish_batch_to(s, NULL, "2", two, (size_t)k * 2);
	publish_batch_to(s, "sb.i.raw.0.77", "2", two, (size_t)k * 2);
	publish_batch_to(s, "b12", "2", two, (size_t)k * 2);
	publish_batch_to(s, "sb.i.raw.0.b12", "x2", two, (size_t)k * 2);
	publish_batch_to(s, "sb.i.raw.0.b12", "3", two, (size_t)k * 2);
	publish_batch_to(s, "sb.i.raw.0.b12", "2", two, (size_t)k * 2 - 1);
	CHECK(log_says("a malformed batch on sb.r.batch.here: a bad reply subject"));
	CHECK(log_says("a malformed batch on sb.r.batch.here: a bad frame count"));
	CHECK(log_says("a malformed batch on sb.r.batch.here: fewer frames than its count"));
	CHECK(log_says("a malformed batch on sb.r.batch.here: a frame longer than the batch"));
	peer_expect_silence(svc, 200);

	/* A good one from a raw client: each request reaches the handler. */
	publish_batch_to(s, "sb.i.raw.0.b12", "2", two, (size_t)k * 2);
	uint64_t a = peer_expect(svc, SB_REQUEST)->id;
	uint64_t b = peer_expect(svc, SB_REQUEST)->id;
	CHECK(a != b);
	peer_reply(svc, a, "ok", 0, NULL, 0); /* to sb.i.raw.0: nobody there */
	peer_reply(svc, b, "ok", 0, NULL, 0);

	/* The router serves on, across routers. */
	peer_request(cl, "batch.here", 5, 20000, NULL, 0);
	uint64_t id = peer_expect(svc, SB_REQUEST)->id;
	peer_reply(svc, id, "ok", 0, NULL, 0);
	CHECK(peer_expect(cl, SB_REPLY)->id == 5);
	peer_close(cl);
	peer_close(svc);
}

static void
test_a_malformed_send_batch_is_dropped_with_a_line_in_the_log_and_the_router_serves_on(void)
{
	struct peer *svc = peer_hello(pa, NULL, "service");
	struct peer *cl = peer_hello(pb, NULL, "client");
	uint8_t two[128], v[5];
	struct sb_msg m = {.kind = SB_SEND};
	m.name = v_str("batch.sent");
	m.payload.ptr = v;
	m.payload.len = u32_of(v, 7);
	long k = sb_encode(&m, two, 64);
	CHECK(k > 0 && k <= 64);
	memcpy(two + k, two, (size_t)k); /* two whole frames */
	two[2 * k - 1] = 8;              /* the second's value: 8 */
	uint8_t req[128];
	struct sb_msg r = {.kind = SB_REQUEST, .id = 99, .timeout_ms = 5000};
	r.name = v_str("batch.sent");
	long rk = sb_encode(&r, req, 64);
	CHECK(rk > 0 && rk <= 64);
	memcpy(req + rk, two, (size_t)k); /* a request, then a send */

	peer_register(svc, "batch.sent", 1);
	CHECK(cluster_until_reachable(cl, svc, "batch.sent"));
	const char *s = "sb.r.batch.sent";
	publish_batch_to(s, NULL, "x2", two, (size_t)k * 2);
	publish_batch_to(s, NULL, "3", two, (size_t)k * 2);
	publish_batch_to(s, NULL, "2", two, (size_t)k * 2 - 1);
	publish_batch_to(s, NULL, "1", two, (size_t)k);
	CHECK(log_says("a malformed batch on sb.r.batch.sent: a bad frame count"));
	CHECK(log_says("a malformed batch on sb.r.batch.sent: fewer frames than its count"));
	CHECK(log_says("a malformed batch on sb.r.batch.sent: a frame longer than the batch"));
	peer_expect_silence(svc, 200);
	/* Whole, but its first frame is a request: that one dropped alone. */
	publish_batch_to(s, NULL, "2", req, (size_t)(rk + k));
	CHECK(log_says("a malformed call on sb.r.batch.sent"));
	CHECK_INT(val_of(peer_expect(svc, SB_SEND)), 7);
	peer_expect_silence(svc, 200);

	/* A good one from a raw client: each send reaches the handler, in order. */
	publish_batch_to(s, NULL, "2", two, (size_t)k * 2);
	CHECK_INT(val_of(peer_expect(svc, SB_SEND)), 7);
	CHECK_INT(val_of(peer_expect(svc, SB_SEND)), 8);

	/* The router serves on, across routers. */
	send_all(cl, "batch.sent", 20, 3);
	for (uint32_t want = 20; want < 23; want++)
		CHECK_INT(val_of(peer_expect(svc, SB_SEND)), want);
	peer_close(cl);
	peer_close(svc);
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	watchdog("test_cluster_batch", 280);
	if (argc < 2) {
		fprintf(stderr, "usage: test_cluster_batch SWITCHBOARD\n");
		return 2;
	}
	daemon_path = argv[1];
	servers[0].monitor = servers[1].monitor = 1;
	if (natsd_start(servers, 2, 0) != 0)
		return 1;
	maport = servers[0].mport;
	mport = servers[1].mport;
	const char *flags[] = {
		"--cluster", servers[0].url, "--cluster-name", "batch-a", "--log-level", "1", NULL};
	struct daemon_opts o = {.capture_err = 1};
	da = daemon_start_opts(0, flags, &o);
	struct sb_router_config cfg = router_config();
	cfg.cluster = servers[1].url;
	cfg.cluster_name = "batch-b";
	rb = router_open(&cfg);
	pa = da.port;
	pb = sb_router_port(rb);
	RUN(test_pipelined_requests_across_routers_are_each_answered_once_in_fewer_messages);
	RUN(test_interleaved_streams_across_routers_arrive_whole_and_in_order);
	RUN(test_a_handler_that_dies_after_a_burst_of_chunks_gives_every_chunk_then_peer_gone);
	RUN(test_a_malformed_batch_is_dropped_with_a_line_in_the_log_and_the_router_serves_on);
	RUN(test_pipelined_requests_leave_the_requesters_router_in_fewer_messages);
	RUN(test_a_request_batch_to_a_name_nobody_handles_ends_each_with_no_handler_once);
	RUN(test_a_malformed_request_batch_is_dropped_with_a_line_in_the_log_and_the_router_serves_on);
	RUN(test_many_sends_in_one_write_reach_a_handler_on_another_router_in_order_in_fewer_messages);
	RUN(test_sends_and_requests_to_one_name_in_one_write_keep_their_order_across_routers);
	RUN(test_the_cluster_counters_count_the_messages_frames_and_batches_a_router_publishes);
	RUN(test_a_malformed_send_batch_is_dropped_with_a_line_in_the_log_and_the_router_serves_on);
	daemon_stop(&da);
	router_close(rb);
	natsd_stop(&servers[0]);
	natsd_stop(&servers[1]);
	return TEST_EXIT();
}
