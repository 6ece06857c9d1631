/* Routers knowing each other alive (docs/cluster.md): in-process routers A
 * and B joined through a two-server NATS cluster (A on the first server, B
 * on the second). Test peers over real sockets. Every wait is bounded. */
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

static struct natsd servers[2];
static struct sb_router *ra, *rb;
static uint16_t pa, pb;

/* The routers' heartbeats are what keeps a router known alive: a handler
 * on another router that says nothing for longer than the dead time (3 s)
 * after its first progress is still there, and its reply arrives. */
static void test_a_handler_quiet_past_the_dead_time_on_a_live_router_still_answers(void)
{
	struct peer *svc = peer_hello(pa, NULL, "service");
	peer_register(svc, "slow.report", 1);
	struct peer *cl = peer_hello(pb, NULL, "client");
	CHECK(cluster_until_reachable(cl, svc, "slow.report"));

	peer_request(cl, "slow.report", 5, 60000, NULL, 0);
	uint64_t rid = peer_expect(svc, SB_REQUEST)->id;
	peer_reply(svc, rid, "started", SB_F_MORE, NULL, 0);
	CHECK(peer_expect(cl, SB_REPLY)->id == 5);
	/* Quiet for twice the dead time: only heartbeats cross meanwhile. */
	peer_expect_silence(cl, 6000);
	peer_reply(svc, rid, "done", 0, NULL, 0);
	struct sb_msg *r = peer_expect(cl, SB_REPLY);
	CHECK(r->id == 5 && v_is(r->outcome, "done"));
	peer_close(cl);
	peer_close(svc);
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	(void)argc;
	(void)argv;
	watchdog("test_cluster_admin", 280);
	if (natsd_start(servers, 2, 0) != 0)
		return 1;
	ra = cluster_join(servers[0].url);
	rb = cluster_join(servers[1].url);
	pa = sb_router_port(ra);
	pb = sb_router_port(rb);
	RUN(test_a_handler_quiet_past_the_dead_time_on_a_live_router_still_answers);
	router_close(ra);
	router_close(rb);
	natsd_stop(&servers[0]);
	natsd_stop(&servers[1]);
	return TEST_EXIT();
}
