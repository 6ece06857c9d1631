/* A request on its way across routers as the last handler of its name
 * leaves a router ends at once (docs/cluster.md, "Subjects"): answered by
 * a handler of the name on another router, or `no handler` when there is
 * none, exactly once, never at its deadline as `timeout`. In-process
 * routers over a three-server NATS cluster of their own, each router on
 * its own server: A (the requester), B (named drain-b, whose handler comes
 * and goes), C (a handler that stays, in the second story). B's server
 * serves its monitoring endpoint, where the test sees B's shards let go of
 * the name's subscription. Every wait is bounded. */
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

static struct natsd servers[3];
static struct sb_router *ra, *rb, *rc;
static uint16_t pa, pb, pc;

#define DEADLINE_MS 20000 /* each request's: one lost would end as `timeout` */

/* Under load until no shard of router B holds a subscription to
 * sb.r.<name>, as its server lists them (20 s at most): the moment a
 * request on its way there could be lost has passed, under load. */
static int load_until_unsubscribed(struct xload *l)
{
	char subject[128];
	uint64_t end = now_ms() + 20000, next = 0;
	snprintf(subject, sizeof subject, "\"sb.r.%s\"", l->name);
	while (now_ms() < end) {
		if (now_ms() >= next) {
			char *body = natsd_monitor(&servers[1], "/connz?subs=1&limit=1024");
			int gone = body != NULL && strstr(body, "\"switchboard drain-b.") != NULL &&
				   strstr(body, subject) == NULL;
			free(body);
			if (gone)
				return 1;
			next = now_ms() + 50;
		}
		xload_round(l, -1);
	}
	fprintf(stderr, "router B still subscribes %s\n", subject);
	return 0;
}

#define ROUNDS 6

static void test_requests_on_their_way_as_the_only_handler_leaves_end_at_once_as_no_handler(void)
{
	struct xload l;
	xload_init(&l, pa, "drain.only", DEADLINE_MS);
	l.svc[0] = peer_hello(pb, NULL, "service");
	uint64_t id = 0;

	/* Router B's only handler of the name comes and goes, under a
	 * steady stream of requests from router A, ROUNDS times: whatever
	 * was on its way as it left ends at once, answered or `no handler`,
	 * also when B's shards let go of the name's subscription. */
	for (int round = 0; round < ROUNDS; round++) {
		CHECK(xload_change(&l, 0, SB_REGISTER, ++id));
		CHECK(xload_until_streak(&l, SB_REPLY, 50));
		CHECK(xload_change(&l, 0, SB_UNREGISTER, ++id));
		CHECK(xload_until_streak(&l, (int)-SB_ENOHANDLER, 50));
		CHECK(load_until_unsubscribed(&l));
		CHECK(xload_run(&l, 200));
	}
	CHECK(xload_drain(&l));
	CHECK(l.ended > 1000);
	CHECK_INT(l.timeouts, 0);
	CHECK_INT(l.other, 0);
	CHECK_INT(l.twice, 0);
	CHECK_INT(l.replies + l.no_handler, l.ended);
	xload_free(&l);
}

static void test_requests_on_their_way_as_a_routers_last_handler_leaves_go_to_another_router(void)
{
	struct xload l;
	xload_init(&l, pa, "drain.two", DEADLINE_MS);
	l.svc[0] = peer_hello(pb, NULL, "service");
	l.svc[1] = peer_hello(pc, NULL, "service");
	peer_register(l.svc[1], l.name, 1);
	CHECK(cluster_until_reachable(l.cl, l.svc[1], l.name));
	uint64_t id = 10;

	/* Router C's handler stays; router B's comes and goes: every
	 * request is answered, by one or the other, none `no handler`
	 * (router C has one throughout) and none lost. */
	for (int round = 0; round < ROUNDS; round++) {
		CHECK(xload_change(&l, 0, SB_REGISTER, ++id));
		CHECK(xload_until_served(&l, 0, 50));
		CHECK(xload_change(&l, 0, SB_UNREGISTER, ++id));
		CHECK(load_until_unsubscribed(&l));
		CHECK(xload_run(&l, 200));
	}
	CHECK(xload_drain(&l));
	CHECK(l.ended > 1000);
	CHECK_INT(l.replies, l.ended);
	CHECK_INT(l.no_handler + l.timeouts + l.other, 0);
	CHECK_INT(l.twice, 0);
	xload_free(&l);
}

/* The id of router B's subscription to subject, as its server lists it
 * (/connz?subs=detail): 0 if it has none or the server did not answer. */
static long long sub_id(const char *subject)
{
	char *body = natsd_monitor(&servers[1], "/connz?subs=detail&limit=1024");
	char quoted[160];
	long long sid = 0;
	snprintf(quoted, sizeof quoted, "\"subject\": \"%s\"", subject);
	char *at = body != NULL ? strstr(body, quoted) : NULL;
	char *end = at != NULL ? strchr(at, '}') : NULL;
	char *field = at != NULL ? strstr(at, "\"sid\": \"") : NULL;
	if (field != NULL && field < end)
		sid = strtoll(field + 8, NULL, 10);
	free(body);
	return sid;
}

static void test_a_handler_back_within_the_drain_time_keeps_its_routers_subscription(void)
{
	struct peer *svc = peer_hello(pb, NULL, "service");
	struct peer *cl = peer_hello(pa, NULL, "client");
	uint64_t end = now_ms() + 15000;
	long long sid = 0;

	peer_register(svc, "drain.back", 1);
	CHECK(cluster_until_reachable(cl, svc, "drain.back"));
	while ((sid = sub_id("sb.r.drain.back")) == 0 && now_ms() < end)
		sleep_ms(20);
	CHECK(sid > 0);

	/* Gone and back at once (well within the drain time): answered,
	 * and on the same subscription, no UNSUB and SUB again (once a
	 * request has been answered, B's server has taken whatever B sent
	 * before it). */
	struct sb_msg m = {.kind = SB_UNREGISTER, .id = 2, .name = v_str("drain.back")};
	peer_send(svc, &m);
	CHECK(peer_expect(svc, SB_ACK)->id == 2);
	peer_register(svc, "drain.back", 3);
	CHECK(cluster_until_reachable(cl, svc, "drain.back"));
	CHECK_INT(sub_id("sb.r.drain.back"), sid);
	peer_close(cl);
	peer_close(svc);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	watchdog("test_cluster_drain", 280);
	servers[1].monitor = 1;
	if (natsd_start(servers, 3, 0) != 0)
		return 1;
	ra = cluster_join(servers[0].url);
	struct sb_router_config cfg = router_config();
	cfg.cluster = servers[1].url;
	cfg.cluster_name = "drain-b";
	rb = router_open(&cfg);
	rc = cluster_join(servers[2].url);
	pa = sb_router_port(ra);
	pb = sb_router_port(rb);
	pc = sb_router_port(rc);
	RUN(test_requests_on_their_way_as_the_only_handler_leaves_end_at_once_as_no_handler);
	RUN(test_requests_on_their_way_as_a_routers_last_handler_leaves_go_to_another_router);
	RUN(test_a_handler_back_within_the_drain_time_keeps_its_routers_subscription);
	router_close(ra);
	router_close(rb);
	router_close(rc);
	for (int i = 0; i < 3; i++)
		natsd_stop(&servers[i]);
	return TEST_EXIT();
}
