/* Departures next to a service that holds many names: services with a few
 * names of their own (some alone, some shared with a peer that stays, some
 * shared with the big service, some shared with each other) and clients
 * with `to`-only handlers come and go many times, by closing or by saying
 * GOODBYE, on one shard and on two. After each departure its names end
 * `no handler` or reach the handler left, from every shard, and the big
 * service's names all still reach it. Each shard learns of a departure in
 * order with the peer's presence event, so a watcher on each shard tells
 * when that shard has applied it. An in-process router; peers speak raw
 * frames. */
#include <stdio.h>
#include <string.h>

#include <switchboard/router.h>

#include "support/peer.h"
#include "support/router.h"

#define BIG    20000 /* names of the long-lived service */
#define ROUNDS 6     /* of departures, per shard count */
#define BATCH  500   /* REGISTERs sent before their ACKs are read */
#define SAMPLE 97    /* every SAMPLEth big name is asked for at the end */
#define TRIES  4     /* requests per shared name: every turn of the round robin */
#define WAIT   10000 /* ms for a reply or an event; the machine may be loaded */

static struct peer *w[2]; /* watchers, one per shard */
static unsigned nw;       /* shards */
static uint64_t next_id = 1000;

static void subscribe(struct peer *p)
{
	struct sb_msg m = {.kind = SB_SUBSCRIBE, .id = 1, .name = v_str("presence")};
	peer_send(p, &m);
	CHECK(peer_expect(p, SB_ACK)->id == 1);
}

static void unregister(struct peer *p, const char *name, uint64_t id)
{
	struct sb_msg m = {.kind = SB_UNREGISTER, .id = id, .name = v_str(name)};
	peer_send(p, &m);
	CHECK(peer_expect(p, SB_ACK)->id == id);
}

/* BIG names many.n0 ... on p, pipelined BATCH at a time. */
static void register_big(struct peer *p)
{
	char name[32];
	for (int first = 0; first < BIG; first += BATCH) {
		for (int i = first; i < first + BATCH; i++) {
			snprintf(name, sizeof name, "many.n%d", i);
			struct sb_msg m = {
				.kind = SB_REGISTER, .id = (uint64_t)i + 1, .name = v_str(name)};
			peer_send(p, &m);
		}
		for (int i = first; i < first + BATCH; i++)
			CHECK(peer_expect(p, SB_ACK)->id == (uint64_t)i + 1);
	}
}

/* A request for name from p (to peer `to`, unless NULL): answered by h, or
 * (h NULL) refused with `no handler`. */
static void expect_served_by(struct peer *p, struct peer *h, const char *to, const char *name)
{
	uint64_t id = next_id++;
	struct sb_msg m = {.kind = SB_REQUEST, .id = id, .timeout_ms = WAIT, .name = v_str(name)};
	if (to != NULL)
		m.to = v_str(to);
	peer_send(p, &m);
	if (h == NULL) {
		struct sb_msg *e = peer_expect_past_presence(p, SB_ERROR, WAIT);
		CHECK(e->id == id);
		if (e->code != -SB_ENOHANDLER)
			fprintf(stderr, "  %s: code %d, expected no handler\n", name, e->code);
		CHECK_INT(e->code, -SB_ENOHANDLER);
		return;
	}
	int rc = peer_recv_within(h, WAIT);
	CHECK_INT(rc, 1);
	if (rc != 1 || h->m.kind != SB_REQUEST || !v_is(h->m.name, name)) {
		fprintf(stderr, "  %s did not reach %s\n", name, h->name);
		CHECK(!"the request reached its handler");
		return;
	}
	peer_reply(h, h->m.id, "ok", 0, NULL, 0);
	struct sb_msg *r = peer_expect_past_presence(p, SB_REPLY, WAIT);
	CHECK(r->id == id && v_is(r->outcome, "ok"));
}

/* From every shard, TRIES times: a name with one handler left is the
 * same request every time, and one with several meets each of them. */
static void expect_all_served_by(struct peer *h, const char *to, const char *name)
{
	for (unsigned s = 0; s < nw; s++)
		for (int k = 0; k < (h == NULL ? 1 : TRIES); k++)
			expect_served_by(w[s], h, to, name);
}

/* p leaves, by closing or by GOODBYE (which, with nothing open, ends in a
 * close), and every shard has applied it when this returns. */
static void depart(struct peer *p, int bye)
{
	char gone[SB_PEER_MAX + 1];
	snprintf(gone, sizeof gone, "%s", p->name);
	if (bye) {
		struct sb_msg m = {.kind = SB_GOODBYE, .deadline_ms = WAIT, .text = v_str("bye")};
		peer_send(p, &m);
	} else {
		peer_close(p);
	}
	for (unsigned s = 0; s < nw; s++) {
		for (int i = 0;; i++) {
			struct sb_msg *m = peer_expect(w[s], SB_PRESENCE);
			if (m->kind != SB_PRESENCE || i == 256) {
				CHECK(!"no disconnected event about the peer");
				break;
			}
			if (v_is(m->peer, gone) && m->event == SB_PEER_DISCONNECTED)
				break;
		}
	}
	if (bye)
		peer_close(p);
}

static void big_sample(struct peer *big, int from, int step)
{
	char name[32];
	for (int i = from; i < BIG; i += step) {
		snprintf(name, sizeof name, "many.n%d", i);
		for (unsigned s = 0; s < nw; s++)
			expect_served_by(w[s], big, NULL, name);
	}
}

/* One service holds BIG names all along; a keeper service and a keeper
 * client stay too. Each round two services and a client come and leave:
 *   a: many.n<x> (also big's), dm.shared (also keeper's), dm.pair<r>
 *      (also b's), dm.a<r>.0-5 alone (dm.a<r>.2 and .5 unregistered,
 *      dm.a<r>.4 registered twice);
 *   b: dm.pair<r>, dm.shared, dm.b<r>;
 *   c: a client, `to`-only handlers inbox (also the keeper client's) and
 *      dm.c<r>.
 * a and c close in even rounds and say GOODBYE in odd ones, b the other
 * way round; homes alternate between shards. */
static void churn(unsigned shards)
{
	struct sb_router_config cfg = router_config();
	cfg.shards = shards;
	cfg.max_registrations = BIG;
	router_start(&cfg);
	nw = shards;
	for (unsigned s = 0; s < nw; s++) {
		char base[16];
		snprintf(base, sizeof base, "mw%u", s);
		w[s] = peer_hello_on(PORT, base, "client", s);
		subscribe(w[s]);
	}
	struct peer *big = peer_hello_on(PORT, "mbig", "service", 0);
	register_big(big);
	struct peer *keeper = peer_hello_on(PORT, "mkeep", "service", shards - 1);
	peer_register(keeper, "dm.shared", 1);
	struct peer *kc = peer_hello_on(PORT, "mkc", "client", 0);
	peer_register(kc, "inbox", 1);
	char name[48], kc_name[SB_PEER_MAX + 1];
	snprintf(kc_name, sizeof kc_name, "%s", kc->name);

	for (int r = 0; r < ROUNDS; r++) {
		int bye = r % 2;
		unsigned home = (unsigned)r % shards;
		char base[3][16];
		for (int k = 0; k < 3; k++) /* names stay taken for a while after */
			snprintf(base[k], sizeof base[k], "m%c%d", 'a' + k, r);
		struct peer *a = peer_hello_on(PORT, base[0], "service", home);
		struct peer *b = peer_hello_on(PORT, base[1], "service", (home + 1) % shards);
		struct peer *c = peer_hello_on(PORT, base[2], "client", home);
		char mine[48], pair[32], own_b[32], own_c[32], a_name[6][32];
		snprintf(mine, sizeof mine, "many.n%d", r * 1009 % BIG);
		snprintf(pair, sizeof pair, "dm.pair%d", r);
		snprintf(own_b, sizeof own_b, "dm.b%d", r);
		snprintf(own_c, sizeof own_c, "dm.c%d", r);
		peer_register(a, mine, 1);
		peer_register(a, "dm.shared", 2);
		peer_register(a, pair, 3);
		for (int k = 0; k < 6; k++) {
			snprintf(a_name[k], sizeof a_name[k], "dm.a%d.%d", r, k);
			peer_register(a, a_name[k], 10 + (uint64_t)k);
		}
		unregister(a, a_name[2], 20);
		unregister(a, a_name[5], 21); /* the last, moved to dm.a<r>.2's place */
		peer_register(a, a_name[4], 22);
		peer_register(b, pair, 1);
		peer_register(b, "dm.shared", 2);
		peer_register(b, own_b, 3);
		peer_register(c, "inbox", 1);
		peer_register(c, own_c, 2);
		char c_name[SB_PEER_MAX + 1];
		snprintf(c_name, sizeof c_name, "%s", c->name);
		expect_all_served_by(a, NULL, a_name[0]);
		expect_all_served_by(c, c_name, own_c);

		depart(a, bye);
		for (int k = 0; k < 6; k++)
			expect_all_served_by(NULL, NULL, a_name[k]);
		expect_all_served_by(big, NULL, mine);
		expect_all_served_by(b, NULL, pair);
		for (unsigned s = 0; s < nw; s++) /* keeper and b, nobody else */
			for (int k = 0; k < TRIES; k++) {
				uint64_t id = next_id++;
				peer_request(w[s], "dm.shared", id, WAIT, NULL, 0);
				struct pollfd pfd[2] = {{.fd = keeper->fd, .events = POLLIN},
							{.fd = b->fd, .events = POLLIN}};
				struct peer *h = NULL;
				if (poll(pfd, 2, WAIT) > 0)
					h = pfd[0].revents & POLLIN ? keeper : b;
				CHECK(h != NULL);
				if (h == NULL)
					continue;
				struct sb_msg *q = peer_expect(h, SB_REQUEST);
				CHECK(v_is(q->name, "dm.shared"));
				peer_reply(h, q->id, "ok", 0, NULL, 0);
				struct sb_msg *rep =
					peer_expect_past_presence(w[s], SB_REPLY, WAIT);
				CHECK(rep->id == id);
			}

		depart(b, !bye);
		expect_all_served_by(NULL, NULL, pair);
		expect_all_served_by(NULL, NULL, own_b);
		expect_all_served_by(keeper, NULL, "dm.shared");

		depart(c, bye);
		expect_all_served_by(kc, kc_name, "inbox");
		big_sample(big, r, BIG / 16);
	}
	big_sample(big, 0, SAMPLE);
	snprintf(name, sizeof name, "many.n%d", BIG - 1);
	expect_all_served_by(big, NULL, name);
	peer_close(kc);
	peer_close(keeper);
	peer_close(big);
	for (unsigned s = 0; s < nw; s++)
		peer_close(w[s]);
	router_stop();
}

static void test_services_and_clients_leaving_one_shard_keep_the_routes_of_those_that_stay(void)
{
	churn(1);
}

static void test_services_and_clients_leaving_two_shards_keep_the_routes_of_those_that_stay(void)
{
	churn(2);
}

int main(void)
{
	RUN(test_services_and_clients_leaving_one_shard_keep_the_routes_of_those_that_stay);
	RUN(test_services_and_clients_leaving_two_shards_keep_the_routes_of_those_that_stay);
	return TEST_EXIT();
}
