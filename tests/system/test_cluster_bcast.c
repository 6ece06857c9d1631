/* Broadcasts across routers (docs/cluster.md, "Broadcast"): three
 * in-process routers on a two-server NATS cluster of their own, A on the
 * first server, B and C on the second, and a daemon router for the one
 * killed mid-broadcast. A broadcast is checked as its requester sees it:
 * one result per handler on every router (`peer` naming the handler, MORE),
 * then exactly one terminal event, with the counts of every router. Every
 * wait is bounded. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>
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

/* A broadcast as its requester saw it: the results by handler, and its
 * one terminal event. */
enum { MAXR = 8 };
struct seen {
	unsigned n; /* final results (REPLY or ERROR with MORE and `peer`) */
	struct {
		char peer[SB_PEER_MAX + 1];
		unsigned kind, code;
	} r[MAXR];
	unsigned chunks;
	int all; /* the terminal event was the aggregate; else an ERROR */
	unsigned end_code;
	uint64_t peers, ok, errors, timeouts, gone;
};

static uint64_t uint_at(const msgpack_object *o, const char *k)
{
	const msgpack_object *v = map_get(o, k);
	CHECK(v != NULL && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER);
	return v != NULL && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? v->via.u64 : UINT64_MAX;
}

/* Takes one frame of broadcast id from cl into s: 1 once it was the
 * terminal event. */
static int take(struct peer *cl, uint64_t id, struct seen *s)
{
	struct sb_msg *m = &cl->m;
	CHECK(m->id == id && (m->kind == SB_REPLY || m->kind == SB_ERROR));
	if (m->flags & SB_F_MORE) {
		CHECK(m->peer.ptr != NULL && m->peer.len <= SB_PEER_MAX);
		if (m->kind == SB_REPLY && (m->flags & SB_F_CHUNK)) {
			s->chunks++;
			return 0;
		}
		CHECK(s->n < MAXR);
		if (s->n < MAXR) {
			snprintf(s->r[s->n].peer, sizeof s->r[s->n].peer, "%.*s", (int)m->peer.len,
				 (const char *)m->peer.ptr);
			s->r[s->n].kind = m->kind;
			s->r[s->n].code = m->kind == SB_ERROR ? m->code : 0;
			s->n++;
		}
		return 0;
	}
	CHECK(m->peer.ptr == NULL);
	if (m->kind == SB_ERROR) {
		s->end_code = m->code;
		return 1;
	}
	CHECK(v_is(m->outcome, "$sb.all"));
	s->all = 1;
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	size_t off = 0;
	CHECK(msgpack_unpack_next(&u, (const char *)m->payload.ptr, m->payload.len, &off) ==
	      MSGPACK_UNPACK_SUCCESS);
	s->peers = uint_at(&u.data, "peers");
	s->ok = uint_at(&u.data, "ok");
	s->errors = uint_at(&u.data, "errors");
	s->timeouts = uint_at(&u.data, "timeouts");
	s->gone = uint_at(&u.data, "gone");
	msgpack_unpacked_destroy(&u);
	return 1;
}

/* Reads broadcast id's frames up to its terminal event (within ms), then
 * checks that nothing follows it. */
static void collect(struct peer *cl, uint64_t id, struct seen *s, int ms)
{
	memset(s, 0, sizeof *s);
	uint64_t end = now_ms() + (uint64_t)ms;
	for (;;) {
		int left = (int)(end > now_ms() ? end - now_ms() : 0);
		if (peer_recv_within(cl, left) != 1) {
			CHECK(!"the broadcast did not end in time");
			return;
		}
		if (take(cl, id, s))
			break;
	}
	peer_expect_silence(cl, 200); /* exactly one terminal event */
}

/* The result s holds for handler peer: its kind and code, or 0 if none. */
static unsigned result_of(const struct seen *s, const char *peer, unsigned *code)
{
	unsigned found = 0;
	for (unsigned i = 0; i < s->n; i++)
		if (strcmp(s->r[i].peer, peer) == 0) {
			CHECK(found == 0); /* one result per handler */
			found = s->r[i].kind;
			if (code != NULL)
				*code = s->r[i].code;
		}
	return found;
}

static void bcast(struct peer *p, unsigned kind, const char *to, const char *name, uint64_t id,
		  uint32_t timeout)
{
	struct sb_msg m = {.kind = (uint8_t)kind, .id = id, .flags = SB_F_BROADCAST};
	m.name = v_str(name);
	if (to != NULL)
		m.to = v_str(to);
	m.timeout_ms = timeout;
	m.payload = v_str("\xa4ping");
	peer_send(p, &m);
}

/* Broadcasts from cl until its aggregate counts every one of svcs (each
 * answers what it gets): until the requester's router has heard from every
 * router (their heartbeats), it does not wait for those it has not. 1 once
 * it does, within 15 s. */
static int until_every_router_answers(struct peer *cl, const char *name, struct peer **svcs,
				      unsigned n)
{
	uint64_t end = now_ms() + 15000, id = 70000;
	while (now_ms() < end) {
		struct seen s = {0};
		bcast(cl, SB_REQUEST, NULL, name, ++id, 3000);
		for (int done = 0; !done && now_ms() < end;) {
			for (unsigned i = 0; i < n; i++)
				if (peer_recv_within(svcs[i], 5) == 1 &&
				    svcs[i]->m.kind == SB_REQUEST)
					peer_reply(svcs[i], svcs[i]->m.id, "pong", 0, NULL, 0);
			if (peer_recv_within(cl, 5) == 1)
				done = take(cl, id, &s);
		}
		/* Late requests of a round that did not wait for their router. */
		for (unsigned i = 0; i < n; i++)
			while (peer_recv_within(svcs[i], 100) == 1)
				if (svcs[i]->m.kind == SB_REQUEST)
					peer_reply(svcs[i], svcs[i]->m.id, "pong", 0, NULL, 0);
		while (peer_recv_within(cl, 100) == 1)
			;
		if (s.all && s.peers == n && s.ok == n)
			return 1;
	}
	return 0;
}

/* A router is alive while it beats, however long its handlers take: its
 * heartbeats, not only its answers, keep it so (they were once counted
 * under another name than its answers, and a handler quiet for the dead
 * time after its first progress had its request end with `peer gone`). */
static void test_a_handler_on_another_router_may_work_longer_than_the_dead_time(void)
{
	struct peer *svc = peer_hello(pa, NULL, "service");
	peer_register(svc, "batch.run", 1);
	struct peer *cl = peer_hello(pc, NULL, "client");
	CHECK(cluster_until_reachable(cl, svc, "batch.run"));

	peer_request(cl, "batch.run", 41, 60000, NULL, 0);
	uint64_t rid = peer_expect(svc, SB_REQUEST)->id;
	peer_reply(svc, rid, "started", SB_F_MORE, NULL, 0);
	CHECK(peer_expect(cl, SB_REPLY)->id == 41);
	peer_expect_silence(cl, 4500); /* the dead time (3 s) and a check (0.5 s) pass */
	peer_reply(svc, rid, "done", 0, NULL, 0);
	struct sb_msg *r = peer_expect(cl, SB_REPLY);
	CHECK(r->id == 41 && !(r->flags & SB_F_MORE) && v_is(r->outcome, "done"));
	peer_close(cl);
	peer_close(svc);
}

static void test_a_broadcast_gets_a_result_from_every_handler_on_every_router(void)
{
	struct peer *ha = peer_hello(pa, "health-a", "service");
	struct peer *hb = peer_hello(pb, "health-b", "service");
	struct peer *hc = peer_hello(pc, "health-c", "service");
	peer_register(ha, "health", 1);
	peer_register(hb, "health", 1);
	peer_register(hc, "health", 1);
	struct peer *cl = peer_hello(pc, NULL, "client");

	bcast(cl, SB_REQUEST, NULL, "health", 5, 20000);
	struct sb_msg *q = peer_expect(ha, SB_REQUEST);
	uint64_t ra_id = q->id;
	CHECK(v_is(q->name, "health") && v_is(q->payload, "\xa4ping") && q->timeout_ms <= 20000);
	uint64_t rb_id = peer_expect(hb, SB_REQUEST)->id;
	uint64_t rc_id = peer_expect(hc, SB_REQUEST)->id;
	/* A chunk (passed on), a progress update (not: it would look like a
	 * final result), then each handler's final word. */
	peer_reply(ha, ra_id, "log", SB_F_MORE | SB_F_CHUNK, "\x01", 1);
	peer_reply(ha, ra_id, "working", SB_F_MORE, NULL, 0);
	peer_reply(ha, ra_id, "healthy", 0, "\xa2ok", 3);
	struct sb_msg e = {.kind = SB_ERROR, .id = rb_id, .code = (uint32_t)-SB_EINVAL};
	e.text = v_str("disk full");
	peer_send(hb, &e);
	peer_reply(hc, rc_id, "healthy", 0, NULL, 0);

	struct seen s;
	collect(cl, 5, &s, 20000);
	unsigned code = 0;
	CHECK_INT(s.n, 3);
	CHECK_INT(s.chunks, 1);
	CHECK_INT(result_of(&s, "health-a", NULL), SB_REPLY);
	CHECK_INT(result_of(&s, "health-b", &code), SB_ERROR);
	CHECK_INT(code, (uint32_t)-SB_EINVAL);
	CHECK_INT(result_of(&s, "health-c", NULL), SB_REPLY);
	CHECK(s.all);
	CHECK_INT(s.peers, 3);
	CHECK_INT(s.ok, 2);
	CHECK_INT(s.errors, 1);
	CHECK_INT(s.timeouts, 0);
	CHECK_INT(s.gone, 0);

	/* From a router with none of the handlers. */
	struct peer *cl_b = peer_hello(pb, NULL, "client");
	peer_register(ha, "health.deep", 2);
	peer_register(hc, "health.deep", 2);
	bcast(cl_b, SB_REQUEST, NULL, "health.deep", 6, 20000);
	peer_reply(ha, peer_expect(ha, SB_REQUEST)->id, "healthy", 0, NULL, 0);
	peer_reply(hc, peer_expect(hc, SB_REQUEST)->id, "healthy", 0, NULL, 0);
	collect(cl_b, 6, &s, 20000);
	CHECK_INT(s.n, 2);
	CHECK_INT(result_of(&s, "health-a", NULL), SB_REPLY);
	CHECK_INT(result_of(&s, "health-c", NULL), SB_REPLY);
	CHECK(s.all && s.peers == 2 && s.ok == 2 && s.errors == 0);
	peer_expect_silence(ha, 100);
	peer_expect_silence(hc, 100);
	peer_expect_silence(hb, 1);
	peer_close(cl_b);
	peer_close(cl);
	peer_close(ha);
	peer_close(hb);
	peer_close(hc);
}

static void test_a_broadcast_send_reaches_every_handler_on_every_router_once(void)
{
	struct peer *h[3] = {peer_hello(pa, NULL, "service"), peer_hello(pb, NULL, "service"),
			     peer_hello(pc, NULL, "service")};
	for (int i = 0; i < 3; i++)
		peer_register(h[i], "cache.flush", 1);
	struct peer *cl = peer_hello(pb, NULL, "client");
	bcast(cl, SB_SEND, NULL, "cache.flush", 0, 0);
	for (int i = 0; i < 3; i++) {
		struct sb_msg *m = peer_expect(h[i], SB_SEND);
		CHECK(v_is(m->name, "cache.flush") && v_is(m->payload, "\xa4ping"));
	}
	for (int i = 0; i < 3; i++) {
		peer_expect_silence(h[i], 200); /* once each: one copy per router */
		peer_close(h[i]);
	}
	peer_expect_silence(cl, 100);
	peer_close(cl);
}

static void test_a_broadcast_that_no_router_handles_is_no_connected_peers(void)
{
	struct peer *cl = peer_hello(pb, NULL, "client");
	bcast(cl, SB_REQUEST, NULL, "nobody.anywhere", 3, 60000);
	struct seen s;
	collect(cl, 3, &s, 10000); /* at once, not at the deadline */
	CHECK(!s.all && s.n == 0);
	CHECK_INT(s.end_code, (uint32_t)-SB_ENOPEERS);

	/* Handlers only for services, on another router: a client is
	 * refused as on their router (`forbidden`), a service is served. */
	struct peer *in = peer_hello(pa, "insider", "service");
	struct sb_msg reg = {.kind = SB_REGISTER, .id = 5, .flags = SB_F_INTERNAL};
	reg.name = v_str("secret.rotate");
	peer_send(in, &reg);
	peer_expect(in, SB_ACK);
	bcast(cl, SB_REQUEST, NULL, "secret.rotate", 4, 60000);
	collect(cl, 4, &s, 10000);
	CHECK(!s.all && s.n == 0);
	CHECK_INT(s.end_code, (uint32_t)-SB_EFORBIDDEN);
	struct peer *svc = peer_hello(pc, NULL, "service");
	bcast(svc, SB_REQUEST, NULL, "secret.rotate", 5, 60000);
	peer_reply(in, peer_expect(in, SB_REQUEST)->id, "rotated", 0, NULL, 0);
	collect(svc, 5, &s, 10000);
	CHECK(s.all && s.peers == 1 && s.ok == 1);
	CHECK_INT(result_of(&s, "insider", NULL), SB_REPLY);
	peer_close(svc);
	peer_close(in);
	peer_close(cl);
}

/* The clients p's router lists in $sb.peers. */
static unsigned clients_on(struct peer *p)
{
	msgpack_unpacked u;
	/* This router's own peers: a cluster's answer is every router's. */
	static const char local[] = "\x81\xa5local\xc3";
	msgpack_object v = ask_router(p, "$sb.peers", local, sizeof local - 1, &u);
	unsigned n = 0;
	for (uint32_t i = 0; v.type == MSGPACK_OBJECT_ARRAY && i < v.via.array.size; i++) {
		const msgpack_object *role = map_get(&v.via.array.ptr[i], "role");
		n += role != NULL && str_is(role, "client");
	}
	msgpack_unpacked_destroy(&u);
	return n;
}

/* Until p's router lists want clients (those of earlier tests have left). */
static int until_clients(struct peer *p, unsigned want)
{
	for (uint64_t end = now_ms() + 10000; now_ms() < end;) {
		if (clients_on(p) == want)
			return 1;
		peer_expect_silence(p, 50);
	}
	return 0;
}

static void test_a_broadcast_to_clients_reaches_clients_on_every_router(void)
{
	/* Agents are clients on every router: two with a handler for the
	 * name, one without (its result: `no handler`). */
	struct peer *ag_a = peer_hello(pa, "agent-a", "client");
	struct peer *ag_b = peer_hello(pb, "agent-b", "client");
	struct peer *ag_c = peer_hello(pc, "agent-c", "client");
	peer_register(ag_a, "status", 1);
	peer_register(ag_c, "status", 1);
	struct peer *boss = peer_hello(pc, "boss", "service");
	CHECK(until_clients(ag_a, 1) && until_clients(ag_b, 1) && until_clients(ag_c, 1));

	bcast(boss, SB_REQUEST, "@client", "status", 8, 20000);
	peer_reply(ag_a, peer_expect(ag_a, SB_REQUEST)->id, "up", 0, NULL, 0);
	peer_reply(ag_c, peer_expect(ag_c, SB_REQUEST)->id, "up", 0, NULL, 0);
	struct seen s;
	collect(boss, 8, &s, 20000);
	unsigned code = 0;
	CHECK_INT(s.n, 3);
	CHECK_INT(result_of(&s, "agent-a", NULL), SB_REPLY);
	CHECK_INT(result_of(&s, "agent-b", &code), SB_ERROR);
	CHECK_INT(code, (uint32_t)-SB_ENOHANDLER);
	CHECK_INT(result_of(&s, "agent-c", NULL), SB_REPLY);
	CHECK(s.all && s.peers == 3 && s.ok == 2 && s.errors == 1 && s.timeouts == 0 &&
	      s.gone == 0);

	/* A name pattern, as a send: each agent with a handler gets it once. */
	bcast(boss, SB_SEND, "agent-*", "status", 0, 0);
	CHECK(v_is(peer_expect(ag_a, SB_SEND)->name, "status"));
	CHECK(v_is(peer_expect(ag_c, SB_SEND)->name, "status"));
	peer_expect_silence(ag_a, 200);
	peer_expect_silence(ag_b, 1);
	peer_expect_silence(ag_c, 1);

	/* A pattern nobody on any router matches. */
	bcast(boss, SB_REQUEST, "nobody-*", "status", 9, 20000);
	collect(boss, 9, &s, 10000);
	CHECK(!s.all && s.end_code == (uint32_t)-SB_ENOPEERS);
	peer_close(boss);
	peer_close(ag_a);
	peer_close(ag_b);
	peer_close(ag_c);
}

static void test_a_cancel_and_a_timeout_of_a_broadcast_reach_the_handlers_on_every_router(void)
{
	struct peer *ha = peer_hello(pa, "slow-a", "service");
	struct peer *hc = peer_hello(pc, "slow-c", "service");
	peer_register(ha, "report", 1);
	peer_register(hc, "report", 1);
	struct peer *cl = peer_hello(pb, NULL, "client");

	bcast(cl, SB_REQUEST, NULL, "report", 31, 60000);
	uint64_t id_a = peer_expect(ha, SB_REQUEST)->id;
	uint64_t id_c = peer_expect(hc, SB_REQUEST)->id;
	struct sb_msg c = {.kind = SB_CANCEL, .id = 31};
	peer_send(cl, &c);
	struct sb_msg *e = peer_expect(cl, SB_ERROR);
	CHECK(e->id == 31 && e->code == (uint32_t)-SB_ECANCELLED && e->flags == 0);
	CHECK(peer_expect(ha, SB_CANCEL)->id == id_a);
	CHECK(peer_expect(hc, SB_CANCEL)->id == id_c);
	peer_reply(ha, id_a, "late", 0, NULL, 0); /* reaches nobody */
	peer_expect_silence(cl, 200);

	/* Silent handlers time out, each with its own result, at the
	 * requester's deadline; each is told to stop. */
	bcast(cl, SB_REQUEST, NULL, "report", 32, 700);
	id_a = peer_expect(ha, SB_REQUEST)->id;
	id_c = peer_expect(hc, SB_REQUEST)->id;
	struct seen s;
	collect(cl, 32, &s, 10000);
	unsigned code = 0;
	CHECK_INT(s.n, 2);
	CHECK_INT(result_of(&s, "slow-a", &code), SB_ERROR);
	CHECK_INT(code, (uint32_t)-SB_ETIMEOUT);
	CHECK_INT(result_of(&s, "slow-c", &code), SB_ERROR);
	CHECK_INT(code, (uint32_t)-SB_ETIMEOUT);
	CHECK(s.all && s.peers == 2 && s.timeouts == 2 && s.ok == 0 && s.gone == 0);
	CHECK(peer_expect(ha, SB_CANCEL)->id == id_a);
	CHECK(peer_expect(hc, SB_CANCEL)->id == id_c);
	peer_close(cl);
	peer_close(ha);
	peer_close(hc);
}

static void test_a_router_killed_mid_broadcast_does_not_hang_it(void)
{
	/* The handler's router is a daemon of its own, killed without a word:
	 * only its silence (no heartbeat) tells the others. */
	const char *flags[] = {"--cluster", servers[0].url, NULL};
	struct daemon d = daemon_start(0, flags);
	struct peer *hd = peer_hello(d.port, "doomed", "service");
	struct peer *hc = peer_hello(pc, "survivor", "service");
	peer_register(hd, "inventory", 1);
	peer_register(hc, "inventory", 1);
	struct peer *cl = peer_hello(pc, NULL, "client");
	struct peer *both[2] = {hd, hc};
	CHECK(until_every_router_answers(cl, "inventory", both, 2));

	bcast(cl, SB_REQUEST, NULL, "inventory", 61, 60000);
	peer_expect(hd, SB_REQUEST);
	peer_reply(hc, peer_expect(hc, SB_REQUEST)->id, "counted", 0, NULL, 0);
	/* The survivor's result is out before the doomed router goes. */
	CHECK_INT(peer_recv_within(cl, 10000), 1);
	CHECK(cl->m.kind == SB_REPLY && v_is(cl->m.peer, "survivor"));
	daemon_kill(&d);
	struct seen s;
	collect(cl, 61, &s, 15000); /* the dead time (3 s), far before the deadline */
	unsigned code = 0;
	CHECK_INT(s.n, 1);
	CHECK_INT(result_of(&s, "doomed", &code), SB_ERROR);
	CHECK_INT(code, (uint32_t)-SB_EPEERGONE);
	CHECK(s.all && s.peers == 2 && s.ok == 1 && s.gone == 1 && s.timeouts == 0);
	peer_close(cl);
	peer_close(hd);
	peer_close(hc);
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc < 2) {
		fprintf(stderr, "usage: test_system_cluster_bcast PATH-TO-SWITCHBOARD\n");
		return 2;
	}
	daemon_path = argv[1];
	watchdog("test_cluster_bcast", 280);
	if (natsd_start(servers, 2, 0) != 0)
		return 1;
	ra = cluster_join(servers[0].url);
	rb = cluster_join(servers[1].url);
	rc = cluster_join(servers[1].url);
	pa = sb_router_port(ra);
	pb = sb_router_port(rb);
	pc = sb_router_port(rc);
	RUN(test_a_handler_on_another_router_may_work_longer_than_the_dead_time);
	/* Every router has heard the others' heartbeats, on every shard. */
	struct peer *w[3] = {peer_hello(pa, NULL, "service"), peer_hello(pb, NULL, "service"),
			     peer_hello(pc, NULL, "service")};
	for (int i = 0; i < 3; i++)
		peer_register(w[i], "warm.up", 1);
	for (int i = 0; i < 3; i++) {
		struct peer *cl = peer_hello(i == 0 ? pa : i == 1 ? pb : pc, NULL, "client");
		CHECK(until_every_router_answers(cl, "warm.up", w, 3));
		peer_close(cl);
	}
	for (int i = 0; i < 3; i++)
		peer_close(w[i]);
	RUN(test_a_broadcast_gets_a_result_from_every_handler_on_every_router);
	RUN(test_a_broadcast_send_reaches_every_handler_on_every_router_once);
	RUN(test_a_broadcast_that_no_router_handles_is_no_connected_peers);
	RUN(test_a_broadcast_to_clients_reaches_clients_on_every_router);
	RUN(test_a_cancel_and_a_timeout_of_a_broadcast_reach_the_handlers_on_every_router);
	RUN(test_a_router_killed_mid_broadcast_does_not_hang_it);
	router_close(ra);
	router_close(rb);
	router_close(rc);
	natsd_stop(&servers[0]);
	natsd_stop(&servers[1]);
	return TEST_EXIT();
}
