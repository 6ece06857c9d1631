/* Presence and callers' identities across routers (docs/cluster.md,
 * "Presence and identity"): in-process routers A and C on a two-server
 * NATS cluster of their own (A on the first server, C on the second, so
 * what crosses takes NATS's route), and daemons where a router must die
 * without a word. What is checked is what a watcher and a handler see over
 * real sockets. Every wait is bounded. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <switchboard/router.h>

#include "support/clock.h"
#include "support/cluster.h"
#include "support/daemon.h"
#include "support/natsd.h"
#include "support/peer.h"
#include "support/proc.h"
#include "support/router.h"
#include "support/testlib.h"

static struct natsd servers[2];
static struct sb_router *ra, *rc;
static uint16_t pa, pc;

/* Heartbeats are what keep a quiet request alive across routers: one that
 * waits longer than the dead time between answers is not ended. */
static void test_a_quiet_request_across_routers_outlives_the_dead_time(void)
{
	struct peer *svc = peer_hello(pa, NULL, "service");
	peer_register(svc, "slow.think", 1);
	struct peer *cl = peer_hello(pc, NULL, "client");
	CHECK(cluster_until_reachable(cl, svc, "slow.think"));

	peer_request(cl, "slow.think", 9, 60000, NULL, 0);
	uint64_t rid = peer_expect(svc, SB_REQUEST)->id;
	peer_reply(svc, rid, "thinking", SB_F_MORE, NULL, 0);
	CHECK(peer_expect(cl, SB_REPLY)->id == 9);
	/* Twice the dead time without a word on the request. */
	peer_expect_silence(cl, 6000);
	peer_reply(svc, rid, "thought", 0, NULL, 0);
	struct sb_msg *r = peer_expect(cl, SB_REPLY);
	CHECK(r->id == 9 && v_is(r->outcome, "thought"));
	peer_close(cl);
	peer_close(svc);
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc < 2) {
		fprintf(stderr, "usage: test_system_cluster_presence PATH-TO-SWITCHBOARD\n");
		return 2;
	}
	daemon_path = argv[1];
	watchdog("test_cluster_presence", 280);
	if (natsd_start(servers, 2, 0) != 0)
		return 1;
	ra = cluster_join(servers[0].url);
	rc = cluster_join(servers[1].url);
	pa = sb_router_port(ra);
	pc = sb_router_port(rc);
	RUN(test_a_quiet_request_across_routers_outlives_the_dead_time);
	router_close(ra);
	router_close(rc);
	natsd_stop(&servers[0]);
	natsd_stop(&servers[1]);
	return TEST_EXIT();
}
