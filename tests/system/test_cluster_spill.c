/* Local first with spill (docs/cluster.md, "Local first"): a request goes
 * to a handler on its own router unless every handler of the name there
 * has `cluster_spill` requests in flight; then to another router that has
 * the name, trying the live routers in turn, and back to a handler here if
 * none has it. In-process routers over a two-server NATS cluster of their
 * own: router A (spill 2) and Z (spill 0) on the first server, B (the
 * default) on the second. Clients and services are test peers over real
 * sockets; what is checked is which handler each request reaches. Every
 * wait is bounded. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <switchboard/router.h>

#include "support/clock.h"
#include "support/cluster.h"
#include "support/natsd.h"
#include "support/peer.h"
#include "support/proc.h"
#include "support/router.h"
#include "support/testlib.h"

static struct natsd servers[2];
static struct sb_router *ra, *rb, *rz;
static uint16_t pa, pb, pz;

static struct sb_router *join(const char *url, uint32_t spill)
{
	struct sb_router_config cfg = router_config();
	cfg.cluster = url;
	cfg.cluster_spill = spill;
	return router_open(&cfg);
}

/* A service on B for name, reached from a client on port: the name has
 * crossed, and the client's router has heard from B (its first answer). */
static struct peer *far_service(uint16_t port, struct peer **cl, const char *name)
{
	struct peer *far = peer_hello(pb, NULL, "service");
	peer_register(far, name, 1);
	*cl = peer_hello(port, NULL, "client");
	CHECK(cluster_until_reachable(*cl, far, name));
	return far;
}

static void test_a_request_spills_to_another_router_when_every_local_handler_is_full(void)
{
	struct peer *cl, *far = far_service(pa, &cl, "render.page");
	/* Z is alive and known to A as well, without the name: routers take
	 * turns, so one of two spilled requests tries Z first, and goes on. */
	struct peer *zsvc = peer_hello(pz, NULL, "service");
	peer_register(zsvc, "spill.z", 1);
	CHECK(cluster_until_reachable(cl, zsvc, "spill.z"));
	struct peer *near = peer_hello(pa, NULL, "service");
	peer_register(near, "render.page", 1);

	/* Two in flight to the near one: it is full (spill 2)... */
	peer_request(cl, "render.page", 1, 20000, NULL, 0);
	uint64_t n1 = peer_expect(near, SB_REQUEST)->id;
	peer_request(cl, "render.page", 2, 20000, NULL, 0);
	peer_expect(near, SB_REQUEST);
	/* ...so the next two go to B, and their answers come back. */
	peer_request(cl, "render.page", 3, 20000, "\xa1x", 2);
	peer_request(cl, "render.page", 4, 20000, "\xa1x", 2);
	for (int i = 0; i < 2; i++) {
		struct sb_msg *q = peer_expect(far, SB_REQUEST);
		CHECK(v_is(q->name, "render.page") && v_is(q->payload, "\xa1x"));
		peer_reply(far, q->id, "done", 0, "\xa1y", 2);
	}
	for (int i = 0; i < 2; i++) {
		struct sb_msg *r = peer_expect(cl, SB_REPLY);
		CHECK((r->id == 3 || r->id == 4) && v_is(r->outcome, "done") &&
		      v_is(r->payload, "\xa1y"));
	}
	peer_expect_silence(near, 100);
	peer_expect_silence(zsvc, 100);

	/* A cancel of a spilled request reaches the handler it went to. */
	peer_request(cl, "render.page", 5, 20000, NULL, 0);
	uint64_t f5 = peer_expect(far, SB_REQUEST)->id;
	struct sb_msg cancel = {.kind = SB_CANCEL, .id = 5};
	peer_send(cl, &cancel);
	CHECK(peer_expect(far, SB_CANCEL)->id == f5);
	struct sb_msg *e = peer_expect(cl, SB_ERROR);
	CHECK(e->id == 5 && e->code == (uint32_t)-SB_ECANCELLED);

	/* One answered: the near one has room again, and is chosen. */
	peer_reply(near, n1, "done", 0, NULL, 0);
	CHECK(peer_expect(cl, SB_REPLY)->id == 1);
	peer_request(cl, "render.page", 6, 20000, NULL, 0);
	peer_expect(near, SB_REQUEST);
	peer_expect_silence(far, 100);
	peer_close(cl);
	peer_close(near);
	peer_close(far);
	peer_close(zsvc);
}

static void test_a_local_handler_with_room_is_still_chosen_first(void)
{
	struct peer *cl, *far = far_service(pa, &cl, "thumb.make");
	struct peer *near = peer_hello(pa, NULL, "service");
	peer_register(near, "thumb.make", 1);

	/* One in flight (under 2) at a time, 30 times: never B. */
	for (uint64_t id = 1; id <= 30; id++) {
		peer_request(cl, "thumb.make", id, 20000, NULL, 0);
		struct sb_msg *q = peer_expect(near, SB_REQUEST);
		if (id == 1) /* one kept in flight throughout */
			continue;
		peer_reply(near, q->id, "ok", 0, NULL, 0);
		CHECK(peer_expect(cl, SB_REPLY)->id == id);
	}
	peer_expect_silence(far, 100);
	peer_close(cl);
	peer_close(near);
	peer_close(far);
}

static void test_spill_zero_never_leaves_the_router(void)
{
	struct peer *cl, *far = far_service(pz, &cl, "index.add");
	struct peer *near = peer_hello(pz, NULL, "service");
	peer_register(near, "index.add", 1);

	/* 200 in flight to one handler, none answered: all stay on Z. */
	for (uint64_t id = 1; id <= 200; id++)
		peer_request(cl, "index.add", id, 20000, NULL, 0);
	for (unsigned i = 0; i < 200; i++)
		peer_expect(near, SB_REQUEST);
	peer_expect_silence(far, 200);
	peer_close(cl);
	peer_close(near);
	peer_close(far);
}

static void test_a_full_local_handler_still_serves_what_no_other_router_can(void)
{
	/* B is alive and known to A (through another name), but has no
	 * handler of this one: a spill there finds nobody and comes back. */
	struct peer *cl, *far = far_service(pa, &cl, "spill.ping");
	struct peer *near = peer_hello(pa, NULL, "service");
	peer_register(near, "only.here", 1);

	for (uint64_t id = 1; id <= 6; id++)
		peer_request(cl, "only.here", id, 20000, NULL, 0);
	for (unsigned i = 0; i < 6; i++) {
		struct sb_msg *q = peer_expect(near, SB_REQUEST);
		peer_reply(near, q->id, "ok", 0, NULL, 0);
	}
	for (unsigned i = 0; i < 6; i++)
		CHECK_INT(peer_expect(cl, SB_REPLY)->kind, SB_REPLY);
	peer_expect_silence(far, 100);
	peer_close(cl);
	peer_close(near);
	peer_close(far);
}

static void test_a_full_local_handler_serves_while_its_router_is_cut_off(void)
{
	/* Routers 1 (spill 1) and 2 on a NATS server of their own; 1 has
	 * heard from 2, then loses its server: a spill cannot leave, and the
	 * local handler takes it, never `no handler`. */
	struct natsd solo = {0};
	if (natsd_start(&solo, 1, 0) != 0) {
		CHECK(0);
		return;
	}
	struct sb_router *r1 = join(solo.url, 1), *r2 = join(solo.url, 64);
	uint16_t p1 = sb_router_port(r1), p2 = sb_router_port(r2);
	struct peer *other = peer_hello(p2, NULL, "service");
	peer_register(other, "cut.ping", 1);
	struct peer *cl = peer_hello(p1, NULL, "client");
	CHECK(cluster_until_reachable(cl, other, "cut.ping"));
	struct peer *near = peer_hello(p1, NULL, "service");
	peer_register(near, "cut.work", 1);

	/* Cut off: a name nobody has says so once router 1 has noticed. */
	natsd_kill(&solo);
	uint64_t end = now_ms() + 15000, id = 1000;
	int cut = 0;
	while (!cut && now_ms() < end) {
		peer_request(cl, "nobody.has", ++id, 20000, NULL, 0);
		struct sb_msg *e = peer_expect(cl, SB_ERROR);
		cut = strstr((const char *)e->text.ptr, "not connected to its cluster") != NULL;
	}
	CHECK(cut);

	for (uint64_t i = 1; i <= 4; i++)
		peer_request(cl, "cut.work", i, 20000, NULL, 0);
	for (unsigned i = 0; i < 4; i++) {
		struct sb_msg *q = peer_expect(near, SB_REQUEST);
		peer_reply(near, q->id, "ok", 0, NULL, 0);
	}
	for (unsigned i = 0; i < 4; i++)
		CHECK_INT(peer_expect(cl, SB_REPLY)->kind, SB_REPLY);
	peer_close(cl);
	peer_close(near);
	peer_close(other);
	router_close(r1);
	router_close(r2);
	natsd_stop(&solo);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	watchdog("test_cluster_spill", 280);
	if (natsd_start(servers, 2, 0) != 0)
		return 1;
	ra = join(servers[0].url, 2);
	rz = join(servers[0].url, 0);
	rb = join(servers[1].url, 64);
	pa = sb_router_port(ra);
	pz = sb_router_port(rz);
	pb = sb_router_port(rb);
	RUN(test_a_request_spills_to_another_router_when_every_local_handler_is_full);
	RUN(test_a_local_handler_with_room_is_still_chosen_first);
	RUN(test_spill_zero_never_leaves_the_router);
	RUN(test_a_full_local_handler_still_serves_what_no_other_router_can);
	RUN(test_a_full_local_handler_serves_while_its_router_is_cut_off);
	router_close(ra);
	router_close(rz);
	router_close(rb);
	natsd_stop(&servers[0]);
	natsd_stop(&servers[1]);
	return TEST_EXIT();
}
