/* Connections going away, and the routes they take with them: a client
 * that registered nothing leaves every route as it was, a handler's every
 * route leaves every shard (whatever it registered and unregistered
 * before), and other handlers of its names stay. Each shard learns of a
 * departure in order with the peer's presence event, so a watcher on each
 * shard tells when that shard has applied it. An in-process router with
 * two shards; peers speak raw frames. */
#include <stdio.h>
#include <string.h>

#include <switchboard/router.h>

#include "support/peer.h"
#include "support/router.h"

#define NAMES 200

static void subscribe(struct peer *p, uint64_t id)
{
	struct sb_msg m = {.kind = SB_SUBSCRIBE, .id = id, .name = v_str("presence")};
	peer_send(p, &m);
	CHECK(peer_expect(p, SB_ACK)->id == id);
}

static void unregister(struct peer *p, const char *name, uint64_t id)
{
	struct sb_msg m = {.kind = SB_UNREGISTER, .id = id, .name = v_str(name)};
	peer_send(p, &m);
	CHECK(peer_expect(p, SB_ACK)->id == id);
}

/* Waits until watcher w (on its shard) hears that peer `name` is gone:
 * that shard has applied the departure. Other events are skipped. */
static void expect_gone(struct peer *w, const char *name)
{
	for (int i = 0; i < 256; i++) {
		struct sb_msg *m = peer_expect(w, SB_PRESENCE);
		if (m->kind != SB_PRESENCE)
			break;
		if (v_is(m->peer, name) && m->event == SB_PEER_DISCONNECTED)
			return;
	}
	CHECK(!"no disconnected event about the peer");
}

/* A request for name from p: answered by h (NULL: refused with `no
 * handler`). */
static void expect_served_by(struct peer *p, struct peer *h, const char *name, uint64_t id)
{
	peer_request(p, name, id, 10000, NULL, 0);
	if (h == NULL) {
		struct sb_msg *e = peer_expect_past_presence(p, SB_ERROR, 5000);
		CHECK(e->id == id);
		CHECK_INT(e->code, -SB_ENOHANDLER);
		return;
	}
	struct sb_msg *q = peer_expect(h, SB_REQUEST);
	CHECK(v_is(q->name, name));
	peer_reply(h, q->id, "ok", 0, NULL, 0);
	struct sb_msg *r = peer_expect_past_presence(p, SB_REPLY, 5000);
	CHECK(r->id == id && v_is(r->outcome, "ok"));
}

/* Clients come and go on both shards, some with a handler of their own
 * (reachable by `to` only), while a service holds many names: every name
 * still reaches the service from both shards. */
static void test_clients_leaving_keep_every_route_of_a_service(void)
{
	router_start(NULL);
	struct peer *w[2] = {peer_hello_on(PORT, "dw0", "client", 0),
			     peer_hello_on(PORT, "dw1", "client", 1)};
	for (int s = 0; s < 2; s++)
		subscribe(w[s], 1);
	struct peer *svc = peer_hello_on(PORT, "dsvc", "service", 0);
	char name[32];
	for (int i = 0; i < NAMES; i++) {
		snprintf(name, sizeof name, "dep.n%d", i);
		peer_register(svc, name, 100 + (uint64_t)i);
	}
	for (int round = 0; round < 3; round++) {
		struct peer *c[4];
		for (int k = 0; k < 4; k++) {
			char base[16];
			snprintf(base, sizeof base, "dc%d-%d", round, k);
			c[k] = peer_hello_on(PORT, base, "client", (unsigned)k % 2);
			if (k >= 2) /* a client's handler: the direct table */
				peer_register(c[k], "inbox", 1);
		}
		for (int k = 0; k < 4; k++) {
			char gone[48];
			snprintf(gone, sizeof gone, "%s", c[k]->name);
			peer_close(c[k]);
			for (int s = 0; s < 2; s++)
				expect_gone(w[s], gone);
		}
	}
	uint64_t id = 1000;
	for (int i = 0; i < NAMES; i++) {
		snprintf(name, sizeof name, "dep.n%d", i);
		for (int s = 0; s < 2; s++)
			expect_served_by(w[s], svc, name, id++);
	}
	peer_close(svc);
	for (int s = 0; s < 2; s++)
		peer_close(w[s]);
	router_stop();
}

/* A service that registered names, unregistered one and registered another
 * twice goes away, from either shard: none of its names reaches it from
 * either shard, and a name another service also handles stays with that
 * one. */
static void test_a_leaving_service_takes_all_its_routes_from_every_shard(void)
{
	for (unsigned home = 0; home < 2; home++) {
		router_start(NULL);
		struct peer *w[2] = {peer_hello_on(PORT, "lw0", "client", 0),
				     peer_hello_on(PORT, "lw1", "client", 1)};
		for (int s = 0; s < 2; s++)
			subscribe(w[s], 1);
		struct peer *svc = peer_hello_on(PORT, "lsvc", "service", home);
		struct peer *other = peer_hello_on(PORT, "lother", "service", 1 - home);
		peer_register(svc, "dep.a", 1);
		peer_register(svc, "dep.b", 2);
		peer_register(svc, "dep.c", 3);
		peer_register(svc, "dep.b", 4); /* again: still one registration */
		unregister(svc, "dep.a", 5);
		peer_register(other, "dep.b", 1);
		for (int s = 0; s < 2; s++)
			expect_served_by(w[s], svc, "dep.c", 10 + (uint64_t)s);

		char gone[48];
		snprintf(gone, sizeof gone, "%s", svc->name);
		peer_close(svc);
		uint64_t id = 20;
		for (int s = 0; s < 2; s++) {
			expect_gone(w[s], gone);
			expect_served_by(w[s], NULL, "dep.a", id++);
			expect_served_by(w[s], NULL, "dep.c", id++);
			for (int k = 0; k < 4; k++) /* no turn of the round robin is its */
				expect_served_by(w[s], other, "dep.b", id++);
		}
		peer_close(other);
		for (int s = 0; s < 2; s++)
			peer_close(w[s]);
		router_stop();
	}
}

/* A service whose every name was unregistered before it left, and one that
 * registered none, leave the names of the others alone. */
static void test_a_service_with_nothing_registered_leaves_others_alone(void)
{
	router_start(NULL);
	struct peer *w[2] = {peer_hello_on(PORT, "nw0", "client", 0),
			     peer_hello_on(PORT, "nw1", "client", 1)};
	for (int s = 0; s < 2; s++)
		subscribe(w[s], 1);
	struct peer *keep = peer_hello_on(PORT, "nkeep", "service", 1);
	peer_register(keep, "dep.x", 1);
	struct peer *emptied = peer_hello_on(PORT, "nemptied", "service", 0);
	struct peer *idle = peer_hello_on(PORT, "nidle", "service", 1);
	peer_register(emptied, "dep.x", 1);
	unregister(emptied, "dep.x", 2);
	struct peer *leaving[2] = {emptied, idle};
	uint64_t id = 10;
	for (int l = 0; l < 2; l++) { /* one at a time: their events' order is known */
		char gone[48];
		snprintf(gone, sizeof gone, "%s", leaving[l]->name);
		peer_close(leaving[l]);
		for (int s = 0; s < 2; s++) {
			expect_gone(w[s], gone);
			for (int k = 0; k < 4; k++)
				expect_served_by(w[s], keep, "dep.x", id++);
		}
	}
	peer_close(keep);
	for (int s = 0; s < 2; s++)
		peer_close(w[s]);
	router_stop();
}

int main(void)
{
	RUN(test_clients_leaving_keep_every_route_of_a_service);
	RUN(test_a_leaving_service_takes_all_its_routes_from_every_shard);
	RUN(test_a_service_with_nothing_registered_leaves_others_alone);
	return TEST_EXIT();
}
