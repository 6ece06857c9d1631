/* Several routers as one (docs/cluster.md): three in-process routers joined
 * through a two-server NATS cluster of their own (support/natsd.h), router
 * A on the first server, B and C on the second, so a request from C to a
 * service on A crosses NATS's route between the servers. Clients and
 * services are test peers speaking the wire protocol over real sockets;
 * what is checked is what they see. Every wait is bounded. */
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
static struct sb_router *ra, *rb, *rc;
static uint16_t pa, pb, pc;

/* A service on A, a client on C, the name reachable across. */
static void pair(const char *name, struct peer **svc, struct peer **cl)
{
	*svc = peer_hello(pa, NULL, "service");
	peer_register(*svc, name, 1);
	*cl = peer_hello(pc, NULL, "client");
	CHECK(cluster_until_reachable(*cl, *svc, name));
}

static void test_a_request_to_a_service_on_another_router_gets_its_progress_reply_and_errors(void)
{
	struct peer *svc, *cl;
	pair("user.create", &svc, &cl);

	peer_request(cl, "user.create", 7, 20000, "\xa5n=1;2", 6);
	struct sb_msg *q = peer_expect(svc, SB_REQUEST);
	uint64_t rid = q->id;
	CHECK(v_is(q->name, "user.create"));
	CHECK(q->payload.len == 6 && memcmp(q->payload.ptr, "\xa5n=1;2", 6) == 0);
	/* The handler is told the time left, never more than was asked. */
	CHECK(q->timeout_ms > 0 && q->timeout_ms <= 20000);
	peer_reply(svc, rid, "working", SB_F_MORE,
		   "\xa3"
		   "50%",
		   4);
	struct sb_msg *r = peer_expect(cl, SB_REPLY);
	CHECK(r->id == 7 && (r->flags & SB_F_MORE) && !(r->flags & SB_F_CHUNK));
	CHECK(v_is(r->outcome, "working") && r->payload.len == 4);
	peer_reply(svc, rid, "created", 0, "\xa4id-1", 5);
	r = peer_expect(cl, SB_REPLY);
	CHECK(r->id == 7 && !(r->flags & SB_F_MORE) && v_is(r->outcome, "created"));
	CHECK(r->payload.len == 5 && memcmp(r->payload.ptr, "\xa4id-1", 5) == 0);

	/* A handler's error arrives with its code and text. */
	peer_request(cl, "user.create", 8, 20000, NULL, 0);
	rid = peer_expect(svc, SB_REQUEST)->id;
	struct sb_msg e = {.kind = SB_ERROR, .id = rid, .code = (uint32_t)-SB_EINVAL};
	e.text = v_str("no such team");
	peer_send(svc, &e);
	struct sb_msg *got = peer_expect(cl, SB_ERROR);
	CHECK(got->id == 8 && got->code == (uint32_t)-SB_EINVAL && v_is(got->text, "no such team"));
	peer_expect_silence(cl, 100);
	peer_close(cl);
	peer_close(svc);
}

static void test_a_100_chunk_stream_arrives_whole_and_in_order_across_routers(void)
{
	struct peer *svc, *cl;
	pair("log.tail", &svc, &cl);

	peer_request(cl, "log.tail", 11, 20000, NULL, 0);
	uint64_t rid = peer_expect(svc, SB_REQUEST)->id;
	for (unsigned i = 0; i < 100; i++) {
		char chunk[32];
		int n = snprintf(chunk, sizeof chunk, "_line %u", i);
		chunk[0] = (char)(0xa0 | (n - 1)); /* a MessagePack string */
		peer_reply(svc, rid, "line", SB_F_MORE | SB_F_CHUNK, chunk, (size_t)n);
	}
	peer_reply(svc, rid, "done", 0, NULL, 0);
	for (unsigned i = 0; i < 100; i++) {
		char want[32];
		int n = snprintf(want, sizeof want, "_line %u", i);
		want[0] = (char)(0xa0 | (n - 1));
		struct sb_msg *r = peer_expect(cl, SB_REPLY);
		CHECK(r->id == 11 && (r->flags & SB_F_CHUNK) && (r->flags & SB_F_MORE));
		CHECK(r->payload.len == (uint32_t)n &&
		      memcmp(r->payload.ptr, want, (size_t)n) == 0);
	}
	struct sb_msg *r = peer_expect(cl, SB_REPLY);
	CHECK(r->id == 11 && !(r->flags & SB_F_MORE) && v_is(r->outcome, "done"));
	peer_close(cl);
	peer_close(svc);
}

static void test_a_send_reaches_a_handler_on_another_router(void)
{
	struct peer *svc, *cl;
	pair("audit.log", &svc, &cl);

	struct sb_msg s = {.kind = SB_SEND, .name = v_str("audit.log")};
	s.payload = v_str("\xa5login");
	peer_send(cl, &s);
	struct sb_msg *got = peer_expect(svc, SB_SEND);
	CHECK(v_is(got->name, "audit.log") && v_is(got->payload, "\xa5login"));
	peer_close(cl);
	peer_close(svc);
}

/* The router id in $sb.peers: "r" and 16 hex digits. */
static int router_id(const msgpack_object *peer, char out[24])
{
	const msgpack_object *v = peer != NULL ? map_get(peer, "router") : NULL;
	if (v == NULL || v->type != MSGPACK_OBJECT_STR || v->via.str.size != 17 ||
	    v->via.str.ptr[0] != 'r')
		return 0;
	for (uint32_t i = 1; i < 17; i++)
		if (!strchr("0123456789abcdef", v->via.str.ptr[i]))
			return 0;
	memcpy(out, v->via.str.ptr, 17);
	out[17] = 0;
	return 1;
}

/* An operator asking $sb.peers of a router in a cluster learns which router
 * each peer is on: that router's own id, another for another router. */
static void test_peers_name_the_router_they_are_on(void)
{
	struct peer *a = peer_hello(pa, "on-a", "client");
	struct peer *c = peer_hello(pc, "on-c", "client");
	char ida[24] = "", idc[24] = "";
	msgpack_unpacked u;
	msgpack_object v = ask_router(a, "$sb.peers", NULL, 0, &u);
	CHECK(router_id(find_by(&v, "peer", "on-a"), ida));
	msgpack_unpacked_destroy(&u);
	v = ask_router(c, "$sb.peers", NULL, 0, &u);
	CHECK(router_id(find_by(&v, "peer", "on-c"), idc));
	msgpack_unpacked_destroy(&u);
	CHECK(strcmp(ida, idc) != 0);
	peer_close(a);
	peer_close(c);
}

static void test_a_name_no_router_handles_is_no_handler_at_once_not_a_timeout(void)
{
	struct peer *cl = peer_hello(pb, NULL, "client");
	uint64_t t0 = now_ms();
	peer_request(cl, "nobody.anywhere", 3, 60000, NULL, 0);
	struct sb_msg *e = peer_expect(cl, SB_ERROR);
	CHECK(e->id == 3 && e->code == (uint32_t)-SB_ENOHANDLER);
	CHECK(now_ms() - t0 < 5000);
	peer_close(cl);
}

static void test_a_handler_killed_mid_request_ends_it_with_peer_gone(void)
{
	struct peer *svc, *cl;
	pair("job.run", &svc, &cl);

	peer_request(cl, "job.run", 21, 60000, NULL, 0);
	peer_expect(svc, SB_REQUEST);
	uint64_t t0 = now_ms();
	peer_close(svc); /* the handler's connection is gone, mid-request */
	struct sb_msg *e = peer_expect(cl, SB_ERROR);
	CHECK(e->id == 21 && e->code == (uint32_t)-SB_EPEERGONE);
	CHECK(now_ms() - t0 < 5000);
	peer_expect_silence(cl, 100);
	peer_close(cl);
}

static void test_a_cancel_and_a_timeout_reach_the_handler_on_the_other_router(void)
{
	struct peer *svc, *cl;
	pair("report.build", &svc, &cl);

	peer_request(cl, "report.build", 31, 60000, NULL, 0);
	uint64_t rid = peer_expect(svc, SB_REQUEST)->id;
	struct sb_msg c = {.kind = SB_CANCEL, .id = 31};
	peer_send(cl, &c);
	struct sb_msg *e = peer_expect(cl, SB_ERROR);
	CHECK(e->id == 31 && e->code == (uint32_t)-SB_ECANCELLED);
	CHECK(peer_expect(svc, SB_CANCEL)->id == rid);
	/* A reply after the cancel reaches nobody. */
	peer_reply(svc, rid, "late", 0, NULL, 0);
	peer_expect_silence(cl, 100);

	/* The requester's router owns the deadline: timeout to the client,
	 * CANCEL to the handler, which was told at most the time asked. */
	peer_request(cl, "report.build", 32, 400, NULL, 0);
	struct sb_msg *q = peer_expect(svc, SB_REQUEST);
	rid = q->id;
	CHECK(q->timeout_ms > 0 && q->timeout_ms <= 400);
	e = peer_expect(cl, SB_ERROR);
	CHECK(e->id == 32 && e->code == (uint32_t)-SB_ETIMEOUT);
	CHECK(peer_expect(svc, SB_CANCEL)->id == rid);

	/* A requester that disconnects cancels its requests on the other router. */
	peer_request(cl, "report.build", 33, 60000, NULL, 0);
	rid = peer_expect(svc, SB_REQUEST)->id;
	peer_close(cl);
	CHECK(peer_expect(svc, SB_CANCEL)->id == rid);
	peer_close(svc);
}

static void test_a_handler_on_the_requesters_own_router_is_chosen_first(void)
{
	struct peer *far, *cl;
	pair("cache.get", &far, &cl);
	struct peer *near = peer_hello(pc, NULL, "service");
	peer_register(near, "cache.get", 1);

	for (uint64_t id = 1; id <= 20; id++) {
		peer_request(cl, "cache.get", id, 20000, NULL, 0);
		struct sb_msg *q = peer_expect(near, SB_REQUEST);
		peer_reply(near, q->id, "hit", 0, NULL, 0);
		CHECK(peer_expect(cl, SB_REPLY)->id == id);
	}
	peer_expect_silence(far, 100);
	/* The near one gone, the far one serves again. */
	peer_close(near);
	CHECK(cluster_until_reachable(cl, far, "cache.get"));
	peer_close(cl);
	peer_close(far);
}

static void request_to(struct peer *cl, const char *to, const char *name, uint64_t id)
{
	struct sb_msg m = {.kind = SB_REQUEST, .id = id, .timeout_ms = 20000};
	m.name = v_str(name);
	m.to = v_str(to);
	peer_send(cl, &m);
}

static void test_a_peer_named_on_another_router_is_reached_with_to(void)
{
	struct peer *svc = peer_hello(pa, "billing-7", "service");
	struct peer *cl = peer_hello(pc, NULL, "client");
	/* `to` reaches a peer's handler of the name (or its catch-all). */
	peer_register(svc, "invoice.get", 1);
	peer_register(svc, "invoice.void", 2);

	/* The name reaches the other routers shortly after the WELCOME:
	 * until then it is an unknown peer there. */
	uint64_t end = now_ms() + 15000, id = 100;
	int reached = 0;
	request_to(cl, "billing-7", "invoice.get", ++id);
	while (!reached && now_ms() < end) {
		if (peer_recv_within(svc, 20) == 1) {
			CHECK_INT(svc->m.kind, SB_REQUEST);
			CHECK(v_is(svc->m.name, "invoice.get"));
			peer_reply(svc, svc->m.id, "found", 0, NULL, 0);
			CHECK(peer_expect(cl, SB_REPLY)->id == id);
			reached = 1;
		} else if (peer_recv_within(cl, 20) == 1) {
			CHECK_INT(cl->m.code, (uint32_t)-SB_EUNKNOWNPEER);
			request_to(cl, "billing-7", "invoice.get", ++id);
		}
	}
	CHECK(reached);

	/* A SEND with `to`, and a cancel of a request with `to`. */
	struct sb_msg s = {.kind = SB_SEND, .name = v_str("invoice.void")};
	s.to = v_str("billing-7");
	peer_send(cl, &s);
	CHECK(v_is(peer_expect(svc, SB_SEND)->name, "invoice.void"));
	request_to(cl, "billing-7", "invoice.get", 500);
	uint64_t rid = peer_expect(svc, SB_REQUEST)->id;
	struct sb_msg c = {.kind = SB_CANCEL, .id = 500};
	peer_send(cl, &c);
	CHECK(peer_expect(cl, SB_ERROR)->code == (uint32_t)-SB_ECANCELLED);
	CHECK(peer_expect(svc, SB_CANCEL)->id == rid);

	/* Nobody anywhere has the name: unknown peer. A name that was on this
	 * router and left (and is nowhere else): not connected. */
	request_to(cl, "nobody-9", "invoice.get", 501);
	struct sb_msg *e = peer_expect(cl, SB_ERROR);
	CHECK(e->id == 501 && e->code == (uint32_t)-SB_EUNKNOWNPEER);
	struct peer *gone = peer_hello(pc, "temp-3", "service");
	peer_close(gone);
	end = now_ms() + 5000;
	do {
		request_to(cl, "temp-3", "invoice.get", 502);
		e = peer_expect(cl, SB_ERROR);
	} while (e->code != (uint32_t)-SB_ENOTCONNECTED && now_ms() < end);
	CHECK(e->id == 502 && e->code == (uint32_t)-SB_ENOTCONNECTED);
	peer_close(cl);
	peer_close(svc);
}

static void test_a_router_killed_mid_request_ends_it_with_peer_gone_within_the_dead_time(void)
{
	/* The handler's router is a daemon of its own, killed without a word:
	 * only its silence (no heartbeat) tells the others. */
	const char *flags[] = {"--cluster", servers[0].url, NULL};
	struct daemon d = daemon_start(0, flags);
	struct peer *svc = peer_hello(d.port, NULL, "service");
	peer_register(svc, "stock.count", 1);
	struct peer *cl = peer_hello(pc, NULL, "client");
	CHECK(cluster_until_reachable(cl, svc, "stock.count"));

	peer_request(cl, "stock.count", 61, 60000, NULL, 0);
	uint64_t rid = peer_expect(svc, SB_REQUEST)->id;
	/* A first progress: the handling router is known to the requester's. */
	peer_reply(svc, rid, "counting", SB_F_MORE, NULL, 0);
	CHECK(peer_expect(cl, SB_REPLY)->id == 61);
	uint64_t t0 = now_ms();
	daemon_kill(&d);
	CHECK(peer_recv_within(cl, 10000) == 1);
	CHECK(cl->m.kind == SB_ERROR && cl->m.id == 61 && cl->m.code == (uint32_t)-SB_EPEERGONE);
	CHECK(now_ms() - t0 < 10000);
	peer_expect_silence(cl, 100);
	peer_close(cl);
	peer_close(svc);
}

/* The handler's side of a stream that outruns the cluster link. */
enum { BIG_CHUNK = 16000, BIG_CHUNKS = 300 };
struct streamer {
	struct peer *svc;
	uint64_t rid;
};

static void *stream_out(void *arg)
{
	struct streamer *st = arg;
	static uint8_t chunk[BIG_CHUNK];
	for (unsigned i = 0; i < BIG_CHUNKS; i++) {
		/* A MessagePack bin 16 of BIG_CHUNK - 3 bytes, numbered. */
		chunk[0] = 0xc5;
		chunk[1] = (uint8_t)((BIG_CHUNK - 3) >> 8);
		chunk[2] = (uint8_t)(BIG_CHUNK - 3);
		memcpy(chunk + 3, &i, sizeof i);
		peer_reply(st->svc, st->rid, "part", SB_F_MORE | SB_F_CHUNK, chunk, sizeof chunk);
	}
	peer_reply(st->svc, st->rid, "done", 0, NULL, 0);
	return NULL;
}

static uint64_t pauses_of(struct sb_router *r)
{
	struct sb_router_stats st;
	sb_router_stats(r, &st);
	return st.pauses;
}

static void test_a_handler_that_outruns_a_stalled_link_is_paused_and_loses_nothing(void)
{
	/* A router of its own whose link holds 1 MiB at most, on the first
	 * server, which is then stopped: what the handler streams piles up in
	 * that router's link until the handler is paused. */
	struct sb_router_config cfg = router_config();
	cfg.cluster = servers[0].url;
	cfg.out_max = 1u << 20;
	struct sb_router *rd = router_open(&cfg);
	struct peer *svc = peer_hello(sb_router_port(rd), NULL, "service");
	peer_register(svc, "dump.all", 1);
	struct peer *cl = peer_hello(pc, NULL, "client");
	CHECK(cluster_until_reachable(cl, svc, "dump.all"));

	peer_request(cl, "dump.all", 41, 60000, NULL, 0);
	struct streamer st = {svc, peer_expect(svc, SB_REQUEST)->id};
	uint64_t before = pauses_of(rd);
	kill(servers[0].pid, SIGSTOP);
	pthread_t t;
	pthread_create(&t, NULL, stream_out, &st);
	uint64_t end = now_ms() + 10000;
	while (pauses_of(rd) == before && now_ms() < end)
		peer_recv_within(svc, 10); /* nothing comes: a bounded wait */
	CHECK(pauses_of(rd) > before);
	kill(servers[0].pid, SIGCONT);

	unsigned got = 0;
	for (; got < BIG_CHUNKS; got++) {
		struct sb_msg *r = peer_expect(cl, SB_REPLY);
		unsigned n = ~0u;
		if (r->payload.len == BIG_CHUNK)
			memcpy(&n, r->payload.ptr + 3, sizeof n);
		if (r->id != 41 || !(r->flags & SB_F_CHUNK) || n != got)
			break;
	}
	CHECK_INT(got, BIG_CHUNKS);
	struct sb_msg *r = peer_expect(cl, SB_REPLY);
	CHECK(r->id == 41 && !(r->flags & SB_F_MORE) && v_is(r->outcome, "done"));
	pthread_join(t, NULL);
	peer_close(cl);
	peer_close(svc);
	router_close(rd);
}

/* A requester's side of a stream that it reads only later. */
enum { SLOW_CHUNK = 64000, SLOW_CHUNKS = 1500 };
static _Atomic unsigned slow_written;

static void *stream_slow(void *arg)
{
	struct streamer *st = arg;
	static uint8_t chunk[SLOW_CHUNK];
	for (unsigned i = 0; i < SLOW_CHUNKS; i++) {
		chunk[0] = 0xc5; /* bin 16 */
		chunk[1] = (uint8_t)((SLOW_CHUNK - 3) >> 8);
		chunk[2] = (uint8_t)(SLOW_CHUNK - 3);
		memcpy(chunk + 3, &i, sizeof i);
		peer_reply(st->svc, st->rid, "part", SB_F_MORE | SB_F_CHUNK, chunk, sizeof chunk);
		slow_written++;
	}
	peer_reply(st->svc, st->rid, "done", 0, NULL, 0);
	return NULL;
}

static void test_a_requester_that_reads_slowly_holds_back_the_handler_on_the_other_router(void)
{
	/* 96 MB streamed to a requester that reads nothing yet: its router
	 * would drop it as a slow consumer past 16 MiB + 8 receive pools (48
	 * MiB) queued, unless the handler on the other router is paused. The
	 * margin is for what is already on its way when the pause is sent
	 * (the NATS server buffers for a router that reads slower than the
	 * other publishes, as under a sanitizer). */
	struct sb_router_config cfg = router_config();
	cfg.cluster = servers[1].url;
	struct sb_router *re = router_open(&cfg);
	struct peer *svc, *cl = peer_hello(sb_router_port(re), NULL, "client");
	svc = peer_hello(pa, NULL, "service");
	peer_register(svc, "video.get", 1);
	CHECK(cluster_until_reachable(cl, svc, "video.get"));

	peer_request(cl, "video.get", 71, 60000, NULL, 0);
	struct streamer st = {svc, peer_expect(svc, SB_REQUEST)->id};
	uint64_t before = pauses_of(ra);
	pthread_t t;
	pthread_create(&t, NULL, stream_slow, &st);
	/* The handler writes until it is held back: its count stops moving
	 * (looked at every 300 ms, 30 s at most). */
	unsigned last = ~0u;
	for (uint64_t end = now_ms() + 30000; now_ms() < end && slow_written < SLOW_CHUNKS;) {
		if (slow_written == last)
			break;
		last = slow_written;
		peer_recv_within(svc, 300); /* nothing comes: a bounded wait */
	}
	CHECK(slow_written < SLOW_CHUNKS);
	CHECK(pauses_of(ra) > before);

	unsigned got = 0;
	for (; got < SLOW_CHUNKS; got++) {
		struct sb_msg *r = peer_expect(cl, SB_REPLY);
		unsigned n = ~0u;
		if (r->payload.len == SLOW_CHUNK)
			memcpy(&n, r->payload.ptr + 3, sizeof n);
		if (r->id != 71 || !(r->flags & SB_F_CHUNK) || n != got)
			break;
	}
	CHECK_INT(got, SLOW_CHUNKS);
	struct sb_msg *r = peer_expect(cl, SB_REPLY);
	CHECK(r->id == 71 && !(r->flags & SB_F_MORE) && v_is(r->outcome, "done"));
	pthread_join(t, NULL);
	peer_close(cl);
	peer_close(svc);
	router_close(re);
}

/* The text of the last refusal hello_as() saw. */
static char last_refusal[256];

static int hello_as(uint16_t port, const char *name, struct peer **out)
{
	return cluster_hello_as(port, name, out, last_refusal, sizeof last_refusal);
}

static void test_a_name_taken_on_one_router_is_refused_on_another(void)
{
	/* Names are claimed in JetStream's key-value store: a server of its
	 * own with JetStream, and two routers on it. */
	struct natsd js;
	if (natsd_start(&js, 1, 1) != 0) {
		CHECK(0);
		return;
	}
	struct sb_router *r1 = cluster_join(js.url), *r2 = cluster_join(js.url);
	uint16_t p1 = sb_router_port(r1), p2 = sb_router_port(r2);
	struct peer *first = NULL, *second = NULL;

	/* The names' bucket is made as the routers connect; until then a
	 * name is each router's alone. Both ask until the second is refused. */
	uint64_t end = now_ms() + 15000;
	int refused = 0;
	while (!refused && now_ms() < end) {
		peer_close(first);
		first = NULL;
		/* Refused: the last round's second peer's claim, still leaving. */
		if (!hello_as(p1, "ledger-1", &first))
			continue;
		refused = !hello_as(p2, "ledger-1", &second);
		peer_close(second);
		second = NULL;
	}
	CHECK(refused && first != NULL);
	/* Still refused while the first holds it; free again once it left. */
	CHECK(!hello_as(p2, "ledger-1", &second));
	peer_close(first);
	end = now_ms() + 10000;
	int taken = 0;
	while (!taken && now_ms() < end)
		taken = hello_as(p2, "ledger-1", &second);
	CHECK(taken);
	CHECK(!hello_as(p1, "ledger-1", &first));
	peer_close(second);
	router_close(r1);
	router_close(r2);
	natsd_stop(&js);
}

/* Every thread of pid is stopped (state T): kill() only queues SIGSTOP, and
 * a server thread already running may still answer a request sent right
 * after it. 1 once they are, within 5 s. */
static int all_stopped(pid_t pid)
{
	char path[64];
	for (uint64_t end = now_ms() + 5000; now_ms() < end;) {
		int running = 0, seen = 0;
		snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
		DIR *d = opendir(path);
		struct dirent *e;
		if (d == NULL)
			return 0;
		while ((e = readdir(d)) != NULL) {
			char st[256], *paren;
			if (e->d_name[0] == '.')
				continue;
			snprintf(path, sizeof path, "/proc/%d/task/%.20s/stat", (int)pid,
				 e->d_name);
			FILE *f = fopen(path, "r");
			if (f == NULL)
				continue;
			size_t n = fread(st, 1, sizeof st - 1, f);
			fclose(f);
			st[n] = 0;
			paren = strrchr(st, ')'); /* the state follows the name: "pid (name) T" */
			seen++;
			running += paren == NULL || paren[1] != ' ' || paren[2] != 'T';
		}
		closedir(d);
		if (seen > 0 && running == 0)
			return 1;
		struct timespec ts = {0, 2000000};
		nanosleep(&ts, NULL);
	}
	return 0;
}

static void test_a_name_is_not_given_twice_while_jetstream_does_not_answer(void)
{
	/* Router 1 holds the name; JetStream's server is then stopped, so
	 * router 2's claim gets no answer (a timeout, not "no JetStream"):
	 * the HELLO is refused with `overloaded` (try again), not welcomed. */
	struct natsd js;
	if (natsd_start(&js, 1, 1) != 0) {
		CHECK(0);
		return;
	}
	struct sb_router *r1 = cluster_join(js.url), *r2 = cluster_join(js.url);
	uint16_t p1 = sb_router_port(r1), p2 = sb_router_port(r2);
	struct peer *first = NULL, *second = NULL;

	/* Claimed once the bucket is there: router 2 refuses the name. */
	uint64_t end = now_ms() + 15000;
	int held = 0;
	while (!held && now_ms() < end) {
		peer_close(first);
		first = NULL;
		if (!hello_as(p1, "ledger-2", &first))
			continue;
		/* Refused for router 1's claim, not for a ledger-2 of an earlier
		 * round (welcomed before the bucket was there) whose close router
		 * 2 has not seen yet. */
		held = !hello_as(p2, "ledger-2", &second) &&
		       strstr(last_refusal, "another router") != NULL;
		peer_close(second);
		second = NULL;
	}
	CHECK(held && first != NULL);

	kill(js.pid, SIGSTOP);
	CHECK(all_stopped(js.pid));
	struct peer *p = peer_dial(p2);
	struct sb_msg h = {.kind = SB_HELLO, .id = 1, .version = SB_PROTO_VERSION};
	h.role = v_str("service");
	h.peer = v_str("ledger-2");
	peer_send(p, &h);
	CHECK_INT(peer_recv_within(p, 8000), 1);
	CHECK_INT(p->m.kind, SB_ERROR);
	CHECK_INT(p->m.code, (uint32_t)-SB_EOVERLOADED);
	if (p->m.kind == SB_ERROR && p->m.code != (uint32_t)-SB_EOVERLOADED)
		fprintf(stderr, "  refused with: %.*s\n", (int)p->m.text.len,
			(const char *)p->m.text
				.ptr); /* which path answered: the claim or the directory */
	peer_close(p);
	kill(js.pid, SIGCONT);

	/* JetStream back: the name is still router 1's. */
	CHECK(!hello_as(p2, "ledger-2", &second));
	peer_close(first);
	router_close(r1);
	router_close(r2);
	natsd_stop(&js);
}

static void test_a_router_that_loses_its_nats_server_ends_its_requests_across_routers(void)
{
	/* The client's router is on the first server, the service's on the
	 * second; the first server is killed mid-request. */
	struct peer *svc = peer_hello(pc, NULL, "service");
	peer_register(svc, "mail.send", 1);
	struct peer *cl = peer_hello(pa, NULL, "client");
	CHECK(cluster_until_reachable(cl, svc, "mail.send"));

	peer_request(cl, "mail.send", 81, 60000, NULL, 0);
	uint64_t rid = peer_expect(svc, SB_REQUEST)->id;
	uint64_t t0 = now_ms();
	natsd_kill(&servers[0]);
	/* The requester's router ends it at once: a reply may have been lost
	 * with the connection. */
	struct sb_msg *e = peer_expect(cl, SB_ERROR);
	CHECK(e->id == 81 && e->code == (uint32_t)-SB_EPEERGONE);
	CHECK(now_ms() - t0 < 5000);
	/* The handler's router hears no more heartbeats from it, and cancels. */
	CHECK(peer_recv_within(svc, 10000) == 1);
	CHECK(svc->m.kind == SB_CANCEL && svc->m.id == rid);

	/* The server back: the router reconnects with its subscriptions. */
	CHECK_INT(natsd_restart(&servers[0]), 0);
	CHECK(cluster_until_reachable(cl, svc, "mail.send"));
	peer_close(cl);
	peer_close(svc);
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc < 2) {
		fprintf(stderr, "usage: test_system_cluster PATH-TO-SWITCHBOARD\n");
		return 2;
	}
	daemon_path = argv[1];
	watchdog("test_cluster", 280);
	if (natsd_start(servers, 2, 0) != 0)
		return 1;
	ra = cluster_join(servers[0].url);
	rb = cluster_join(servers[1].url);
	rc = cluster_join(servers[1].url);
	pa = sb_router_port(ra);
	pb = sb_router_port(rb);
	pc = sb_router_port(rc);
	RUN(test_a_request_to_a_service_on_another_router_gets_its_progress_reply_and_errors);
	RUN(test_a_100_chunk_stream_arrives_whole_and_in_order_across_routers);
	RUN(test_a_send_reaches_a_handler_on_another_router);
	RUN(test_peers_name_the_router_they_are_on);
	RUN(test_a_name_no_router_handles_is_no_handler_at_once_not_a_timeout);
	RUN(test_a_handler_killed_mid_request_ends_it_with_peer_gone);
	RUN(test_a_cancel_and_a_timeout_reach_the_handler_on_the_other_router);
	RUN(test_a_handler_on_the_requesters_own_router_is_chosen_first);
	RUN(test_a_peer_named_on_another_router_is_reached_with_to);
	RUN(test_a_router_killed_mid_request_ends_it_with_peer_gone_within_the_dead_time);
	RUN(test_a_requester_that_reads_slowly_holds_back_the_handler_on_the_other_router);
	RUN(test_a_handler_that_outruns_a_stalled_link_is_paused_and_loses_nothing);
	RUN(test_a_name_taken_on_one_router_is_refused_on_another);
	RUN(test_a_name_is_not_given_twice_while_jetstream_does_not_answer);
	RUN(test_a_router_that_loses_its_nats_server_ends_its_requests_across_routers);
	router_close(ra);
	router_close(rb);
	router_close(rc);
	natsd_stop(&servers[0]);
	natsd_stop(&servers[1]);
	return TEST_EXIT();
}
