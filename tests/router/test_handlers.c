/* Services with more than one handler of a name: load balanced, failing
 * over when one goes, and internal handlers that serve services and not
 * clients. An in-process router with two shards; peers speak raw frames. */
#include <switchboard/router.h>

#include <msgpack.h>

#include "support/admin.h"
#include "support/peer.h"
#include "support/router.h"

/* Answers every request waiting on a service; returns how many. */
static int serve_all(struct peer *svc, const char *outcome)
{
	int n = 0;
	while (peer_recv_within(svc, 100) == 1) {
		if (svc->m.kind != SB_REQUEST)
			continue;
		peer_reply(svc, svc->m.id, outcome, 0, svc->m.payload.ptr, svc->m.payload.len);
		n++;
	}
	return n;
}

static void register_internal(struct peer *p, const char *name, uint64_t id)
{
	struct sb_msg m = {.kind = SB_REGISTER, .id = id, .flags = SB_F_INTERNAL};
	m.name = v_str(name);
	peer_send(p, &m);
	CHECK(peer_expect(p, SB_ACK)->id == id);
}

static void test_two_handlers_share_and_fail_over(void)
{
	router_start(NULL);
	struct peer *a = peer_hello(PORT, "worker-a", "service");
	struct peer *b = peer_hello(PORT, "worker-b", "service");
	struct peer *cli = peer_hello(PORT, "ui-7", "client");
	peer_register(a, "work", 1);
	peer_register(b, "work", 1);

	for (uint64_t id = 1; id <= 20; id++)
		peer_request(cli, "work", id, 0, NULL, 0);
	int na = serve_all(a, "done"), nb = serve_all(b, "done");
	CHECK_INT(na + nb, 20);
	CHECK(na > 0 && nb > 0);
	for (int i = 0; i < 20; i++)
		CHECK(v_is(peer_expect(cli, SB_REPLY)->outcome, "done"));

	peer_close(a); /* one instance dies: the other keeps serving */
	/* Until the client's shard has seen the close, a request may still go
	 * to a and end with "peer gone" (a correct answer). Ask the router, as
	 * the client's shard sees it, until "work" has one handler left. */
	int left = 2;
	for (int tries = 0; tries < 500 && left != 1; tries++) {
		msgpack_unpacked u;
		msgpack_object routes = ask_router(cli, "$sb.routes", NULL, 0, &u);
		const msgpack_object *r = find_by(&routes, "name", "work");
		const msgpack_object *hs = r ? map_get(r, "handlers") : NULL;
		left = hs != NULL && hs->type == MSGPACK_OBJECT_ARRAY ? (int)hs->via.array.size
								      : -1;
		msgpack_unpacked_destroy(&u);
		if (left != 1)
			usleep(10000);
	}
	CHECK_INT(left, 1);
	for (uint64_t id = 21; id <= 30; id++)
		peer_request(cli, "work", id, 0, NULL, 0);
	CHECK_INT(serve_all(b, "done"), 10);
	for (int i = 0; i < 10; i++)
		peer_expect(cli, SB_REPLY);
	peer_close(b);
	peer_close(cli);
	router_stop();
}

/* An internal handler answers services only; a client hears `forbidden`
 * (not `no handler`: the name is served, just not for it). */
static void test_internal_handler_is_for_services(void)
{
	router_start(NULL);
	struct peer *pw = peer_hello(PORT, "passwords-2", "service");
	struct peer *cli = peer_hello(PORT, "signup-2", "client");
	struct peer *users = peer_hello(PORT, "users-2", "service");
	register_internal(pw, "passwords.encrypt", 1);

	peer_request(cli, "passwords.encrypt", 60, 0, NULL, 0);
	struct sb_msg *e = peer_expect(cli, SB_ERROR);
	CHECK(e->id == 60);
	CHECK_INT(e->code, -SB_EFORBIDDEN);
	CHECK(v_is(e->text, "passwords.encrypt is internal: only services may call it"));
	struct sb_msg s = {.kind = SB_SEND, .name = v_str("passwords.encrypt")};
	peer_send(cli, &s); /* a send has nobody to tell: dropped, counted */
	peer_expect_silence(pw, 100);
	CHECK_INT(router_stats().forbidden, 2);
	/* A broadcast request reaches no handler either: forbidden, not "no
	 * connected peers". */
	struct sb_msg all = {.kind = SB_REQUEST, .id = 62, .flags = SB_F_BROADCAST};
	all.name = v_str("passwords.encrypt");
	peer_send(cli, &all);
	e = peer_expect(cli, SB_ERROR);
	CHECK(e->id == 62);
	CHECK_INT(e->code, -SB_EFORBIDDEN);
	peer_expect_silence(pw, 50);

	peer_request(users, "passwords.encrypt", 61, 0, NULL, 0);
	struct sb_msg *req = peer_expect(pw, SB_REQUEST);
	CHECK_INT(req->from, users->peer_id);
	peer_reply(pw, req->id, "encrypted", 0, NULL, 0);
	CHECK(peer_expect(users, SB_REPLY)->id == 61);
	peer_send(users, &s);
	CHECK(v_is(peer_expect(pw, SB_SEND)->name, "passwords.encrypt"));
	peer_close(pw);
	peer_close(cli);
	peer_close(users);
	router_stop();
}

/* One name, two handlers, one internal: clients always reach the public
 * one, services are balanced over both. */
static void test_internal_and_public_handlers_of_one_name(void)
{
	/* serve_all() stops at 100 ms of silence, and a requester moving to
	 * its handlers' shard can be that late on a loaded machine: where
	 * the requests come from is not what this is about. */
	struct sb_router_config cfg = router_config();
	cfg.placement = SB_PLACEMENT_KERNEL;
	router_start(&cfg);
	struct peer *inside = peer_hello(PORT, "work-internal", "service");
	struct peer *outside = peer_hello(PORT, "work-public", "service");
	struct peer *cli = peer_hello(PORT, "ui-9", "client");
	struct peer *svc = peer_hello(PORT, "batch-1", "service");
	register_internal(inside, "work2", 1);
	peer_register(outside, "work2", 1);

	for (uint64_t id = 1; id <= 10; id++)
		peer_request(cli, "work2", id, 0, NULL, 0);
	CHECK_INT(serve_all(outside, "done"), 10);
	CHECK_INT(serve_all(inside, "done"), 0);
	for (int i = 0; i < 10; i++)
		CHECK(v_is(peer_expect(cli, SB_REPLY)->outcome, "done"));

	for (uint64_t id = 11; id <= 30; id++)
		peer_request(svc, "work2", id, 0, NULL, 0);
	int ni = serve_all(inside, "done"), no = serve_all(outside, "done");
	CHECK_INT(ni + no, 20);
	CHECK(ni > 0 && no > 0);
	for (int i = 0; i < 20; i++)
		peer_expect(svc, SB_REPLY);
	CHECK_INT(router_stats().forbidden, 0);

	/* With the public one gone, clients are refused again. */
	struct sb_msg un = {.kind = SB_UNREGISTER, .id = 2, .name = v_str("work2")};
	peer_send(outside, &un);
	CHECK(peer_expect(outside, SB_ACK)->id == 2);
	peer_request(cli, "work2", 31, 0, NULL, 0);
	CHECK_INT(peer_expect(cli, SB_ERROR)->code, -SB_EFORBIDDEN);
	peer_close(inside);
	peer_close(outside);
	peer_close(cli);
	peer_close(svc);
	router_stop();
}

int main(void)
{
	RUN(test_two_handlers_share_and_fail_over);
	RUN(test_internal_handler_is_for_services);
	RUN(test_internal_and_public_handlers_of_one_name);
	return TEST_EXIT();
}
