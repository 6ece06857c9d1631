/* Only the shards with a handler of a name take its requests from the
 * cluster (docs/cluster.md, "Subjects"): a shard subscribes sb.r.<name>
 * when its first handler of the name registers and unsubscribes when its
 * last one goes, and a request NATS handed it just before is passed to a
 * handler on another shard, never answered `no handler` while the router
 * has one. In-process routers over a two-server NATS cluster of their
 * own: router A (the requesters) on the first server, router B (2 shards,
 * named subs-b, the handlers) on the second, which serves its monitoring
 * endpoint: each shard's connection and its subscriptions are what an
 * operator sees there (/connz?subs=1). Every wait is bounded. */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <switchboard/router.h>

#include "support/clock.h"
#include "support/cluster.h"
#include "support/natsd.h"
#include "support/peer.h"
#include "support/proc.h"
#include "support/router.h"
#include "support/testlib.h"
#include "support/xload.h"

static struct natsd servers[2];
static struct sb_router *ra, *rb;
static uint16_t pa, pb;

/* Whether shard k of router B holds a subscription to subject, as the
 * server's /connz lists its connection ("switchboard subs-b.<k>", its
 * subjects after its name, up to the next connection's "cid"): 1, 0, or
 * -1 if the server did not answer. */
static int subscribed(unsigned k, const char *subject)
{
	char *body = natsd_monitor(&servers[1], "/connz?subs=1&limit=1024");
	char name[64], quoted[256];
	if (body == NULL)
		return -1;
	snprintf(name, sizeof name, "\"switchboard subs-b.%u\"", k);
	snprintf(quoted, sizeof quoted, "\"%s\"", subject);
	int found = 0;
	char *c = strstr(body, name);
	if (c != NULL) {
		char *next = strstr(c, "\"cid\"");
		if (next != NULL)
			*next = 0;
		found = strstr(c, quoted) != NULL;
	}
	free(body);
	return found;
}

/* Until shard k's subscription to subject is as wanted (15 s at most). */
static int until_subscribed(unsigned k, const char *subject, int want)
{
	uint64_t end = now_ms() + 15000;
	while (now_ms() < end) {
		if (subscribed(k, subject) == want)
			return 1;
		sleep_ms(20);
	}
	fprintf(stderr, "shard %u of subs-b: %s %s subscribed\n", k, subject,
		want ? "never" : "still");
	return 0;
}

/* A service on router B's shard k: dialled until the kernel puts one there. */
static void unregister(struct peer *p, const char *name, uint64_t id)
{
	struct sb_msg m = {.kind = SB_UNREGISTER, .id = id, .name = v_str(name)};
	peer_send(p, &m);
	CHECK(peer_expect(p, SB_ACK)->id == id);
}

static void test_a_name_is_subscribed_only_on_the_shards_that_have_a_handler_of_it(void)
{
	struct peer *s0 = peer_hello_on(pb, NULL, "service", 0),
		    *s1 = peer_hello_on(pb, NULL, "service", 1);

	/* A handler on shard 1: shard 1 takes the name's requests; shard 0
	 * hears its cancels only (they come in the same turn, after). */
	peer_register(s1, "subs.where", 1);
	CHECK(until_subscribed(1, "sb.r.subs.where", 1));
	CHECK(until_subscribed(0, "sb.x.r.subs.where", 1));
	CHECK_INT(subscribed(0, "sb.r.subs.where"), 0);
	struct peer *cl = peer_hello(pa, NULL, "client");
	CHECK(cluster_until_reachable(cl, s1, "subs.where"));

	/* One on shard 0 too: both take them. */
	peer_register(s0, "subs.where", 2);
	CHECK(until_subscribed(0, "sb.r.subs.where", 1));
	CHECK_INT(subscribed(1, "sb.r.subs.where"), 1);

	/* Shard 1's handler goes: shard 1 stops taking them, still hearing
	 * cancels; shard 0's handler answers. */
	unregister(s1, "subs.where", 3);
	CHECK(until_subscribed(1, "sb.r.subs.where", 0));
	CHECK_INT(subscribed(1, "sb.x.r.subs.where"), 1);
	peer_request(cl, "subs.where", 10, 20000, NULL, 0);
	uint64_t id = peer_expect(s0, SB_REQUEST)->id;
	peer_reply(s0, id, "ok", 0, NULL, 0);
	CHECK(peer_expect(cl, SB_REPLY)->id == 10);

	/* The last goes: no shard has anything of the name. */
	unregister(s0, "subs.where", 4);
	CHECK(until_subscribed(0, "sb.r.subs.where", 0));
	CHECK(until_subscribed(0, "sb.x.r.subs.where", 0));
	CHECK(until_subscribed(1, "sb.x.r.subs.where", 0));
	peer_close(cl);
	peer_close(s0);
	peer_close(s1);
}

/* ---- under load ---------------------------------------------------------- */

static void
test_requests_from_another_router_are_all_answered_while_handlers_move_between_shards(void)
{
	struct xload l;
	xload_init(&l, pa, "subs.move", 10000);
	l.svc[0] = peer_hello_on(pb, NULL, "service", 0);
	l.svc[1] = peer_hello_on(pb, NULL, "service", 1);
	peer_register(l.svc[1], l.name, 1);
	CHECK(cluster_until_reachable(l.cl, l.svc[1], l.name));
	xload_send(&l);
	CHECK(xload_run(&l, 200));

	/* The handler moves from shard to shard, six times over, each time
	 * registered on the new shard before it leaves the old one, with
	 * requests flowing throughout: none may end unanswered. */
	uint64_t id = 10;
	for (int round = 0; round < 6; round++) {
		int to = round % 2 == 0 ? 0 : 1, from = 1 - to;
		CHECK(xload_change(&l, to, SB_REGISTER, ++id));
		CHECK(xload_run(&l, 100));
		CHECK(xload_change(&l, from, SB_UNREGISTER, ++id));
		CHECK(xload_run(&l, 300));
	}
	CHECK(xload_drain(&l));
	CHECK(l.ended > 2000);
	CHECK_INT(l.replies, l.ended);
	CHECK_INT(l.no_handler + l.timeouts + l.other, 0);
	unregister(l.svc[1], l.name, ++id);
	xload_free(&l);
}

static void test_the_last_handler_leaving_under_load_gives_no_handler_only_once_none_is_left(void)
{
	struct xload l;
	xload_init(&l, pa, "subs.last", 10000);
	l.svc[0] = peer_hello_on(pb, NULL, "service", 0);
	l.svc[1] = peer_hello_on(pb, NULL, "service", 1);
	peer_register(l.svc[0], l.name, 1);
	CHECK(cluster_until_reachable(l.cl, l.svc[0], l.name));
	peer_register(l.svc[1], l.name, 2);
	xload_send(&l);
	CHECK(xload_run(&l, 300));

	/* One of two leaves: the other answers everything. */
	CHECK(xload_change(&l, 1, SB_UNREGISTER, 3));
	CHECK(xload_run(&l, 300));
	CHECK_INT(l.no_handler + l.timeouts + l.other, 0);

	/* The last leaves: until then nothing failed, and once it has gone
	 * every request is `no handler`. What was on its way as it left is
	 * answered or `no handler` (router B drains the name's subscription:
	 * docs/cluster.md, "Subjects"); nothing ends at its deadline. */
	CHECK_INT(l.no_handler + l.timeouts + l.other, 0);
	CHECK(xload_change(&l, 0, SB_UNREGISTER, 4));
	CHECK(xload_until_streak(&l, (int)-SB_ENOHANDLER, 50));
	CHECK(xload_drain(&l));
	CHECK_INT(l.other, 0);
	CHECK_INT(l.timeouts, 0);
	CHECK_INT(l.twice, 0);
	CHECK_INT(l.replies + l.no_handler, l.ended);
	xload_free(&l);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	watchdog("test_cluster_subs", 280);
	servers[1].monitor = 1;
	if (natsd_start(servers, 2, 0) != 0)
		return 1;
	ra = cluster_join(servers[0].url);
	struct sb_router_config cfg = router_config();
	cfg.cluster = servers[1].url;
	cfg.cluster_name = "subs-b";
	rb = router_open(&cfg);
	pa = sb_router_port(ra);
	pb = sb_router_port(rb);
	RUN(test_a_name_is_subscribed_only_on_the_shards_that_have_a_handler_of_it);
	RUN(test_requests_from_another_router_are_all_answered_while_handlers_move_between_shards);
	RUN(test_the_last_handler_leaving_under_load_gives_no_handler_only_once_none_is_left);
	router_close(ra);
	router_close(rb);
	natsd_stop(&servers[0]);
	natsd_stop(&servers[1]);
	return TEST_EXIT();
}
