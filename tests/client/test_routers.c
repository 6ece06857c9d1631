/* A client given several routers (cfg.routers, docs/cluster.md "Clients
 * that move"): the list as the library reads it, with what it says about a
 * bad one, and the move to the next router when its router goes, with its
 * handlers registered there and its held sends delivered there. The
 * routers are in-process routers on free ports; no cluster is needed to
 * see a client move. */
#include <stdio.h>
#include <string.h>

#include <switchboard/client.h>
#include <switchboard/router.h>

#include "support/clients.h"
#include "support/clock.h"
#include "support/peer.h"
#include "support/proc.h"
#include "support/pump.h"
#include "support/router.h"
#include "support/testlib.h"

/* sb_client_new() with routers = list: its error (0 if made), and why. */
static int make(const char *list, char *why, size_t cap, struct sb_client **out)
{
	struct sb_client_config cfg;
	int err = 0;

	sb_client_config_init(&cfg);
	cfg.routers = list;
	cfg.why = why;
	cfg.whylen = cap;
	why[0] = 0;
	*out = sb_client_new(&cfg, &err);
	return *out != NULL ? 0 : err;
}

static void refused(const char *list, const char *why_want)
{
	struct sb_client *c;
	char why[256];

	CHECK_INT(make(list, why, sizeof why, &c), SB_EINVAL);
	if (strcmp(why, why_want) != 0) {
		fprintf(stderr, "routers %s: why is \"%s\", want \"%s\"\n", list, why, why_want);
		CHECK(0);
	}
}

static void test_a_bad_router_list_is_refused_saying_which_address_and_why(void)
{
	refused("", "routers: an empty address (HOST:PORT,HOST:PORT)");
	refused("127.0.0.1:7400,", "routers: an empty address (HOST:PORT,HOST:PORT)");
	refused("127.0.0.1:7400, ,127.0.0.1:7401",
		"routers: an empty address (HOST:PORT,HOST:PORT)");
	refused("127.0.0.1",
		"routers: \"127.0.0.1\": expected HOST:PORT (an IPv6 address in brackets: "
		"[::1]:7400)");
	refused("::1:7400", "routers: \"::1:7400\": expected HOST:PORT (an IPv6 address in "
			    "brackets: [::1]:7400)");
	refused("[::1]7400", "routers: \"[::1]7400\": expected [ADDRESS]:PORT");
	refused("[::1", "routers: \"[::1\": expected [ADDRESS]:PORT");
	refused("a:0", "routers: \"a:0\": expected a port from 1 to 65535");
	refused("a:65536", "routers: \"a:65536\": expected a port from 1 to 65535");
	refused("a:99999999999999999999", "routers: \"a:99999999999999999999\": expected a port "
					  "from 1 to 65535");
	refused("a:7x", "routers: \"a:7x\": expected a port from 1 to 65535");
	refused("a:", "routers: \"a:\": expected a port from 1 to 65535");
	refused(":7400", "routers: \":7400\": no host");
	refused("[]:7400", "routers: \"[]:7400\": no host");
	refused("a:1,b:2,c:-3", "routers: \"c:-3\": expected a port from 1 to 65535");
	char many[65 * 8 + 1] = "";
	for (int i = 0; i < 65; i++)
		strcat(many, i ? ",a:1" : "a:1");
	refused(many, "routers: 65 addresses (at most 64)");
	char longhost[300];
	memset(longhost, 'h', 270);
	memcpy(longhost + 270, ":1", 3);
	refused(longhost, "routers: an address of 272 bytes (at most 262)");

	/* Good lists: the first router is the first attempt's, named as
	 * given (spaces around an address dropped). */
	struct sb_client *c;
	char why[256];
	CHECK_INT(make(" 127.0.0.1:1 , [::1]:2,localhost:65535", why, sizeof why, &c), 0);
	CHECK_STR(sb_client_router(c), "127.0.0.1:1");
	sb_client_free(c);
	CHECK_INT(make("[::1]:7400", why, sizeof why, &c), 0);
	CHECK_STR(sb_client_router(c), "[::1]:7400");
	sb_client_free(c);
	/* Without routers: host and port. */
	struct sb_client_config cfg;
	sb_client_config_init(&cfg);
	cfg.port = 7999;
	c = sb_client_new(&cfg, NULL);
	CHECK(c != NULL);
	CHECK_STR(sb_client_router(c), "127.0.0.1:7999");
	sb_client_free(c);
}

/* What p receives next while c is processed (c may be the handler), within
 * 10 s; NULL (a failure) if nothing. */
static struct sb_msg *recv_pumping(struct peer *p, struct sb_client *c)
{
	for (uint64_t end = now_ms() + 10000; now_ms() < end;) {
		pump_once(&c, 1);
		if (peer_recv_within(p, 0) == 1)
			return &p->m;
	}
	CHECK(!"nothing arrived within 10 s");
	return NULL;
}

/* The client's router is the one at port. */
struct on_port {
	struct sb_client *c;
	char want[32];
};

static int on_router(void *arg)
{
	struct on_port *o = arg;
	return sb_client_online(o->c) && strcmp(sb_client_router(o->c), o->want) == 0;
}

static void test_a_client_whose_router_stops_moves_to_the_next_and_serves_there(void)
{
	struct sb_router *a = router_open(NULL), *b = router_open(NULL);
	uint16_t pa = sb_router_port(a), pb = sb_router_port(b), dead = free_port();
	char list[96];
	/* Nothing listens at the first: the client goes on to a. */
	snprintf(list, sizeof list, "127.0.0.1:%u,127.0.0.1:%u,127.0.0.1:%u", dead, pa, pb);

	struct watch w = {0};
	struct sb_client_config cfg;
	sb_client_config_init(&cfg);
	cfg.routers = list;
	cfg.role = SB_ROLE_SERVICE;
	cfg.reconnect_min_ms = MIN_MS;
	cfg.reconnect_max_ms = MAX_MS;
	cfg.on_state = on_state;
	cfg.ud = &w;
	cfg.offline_queue_bytes = 4096;
	int calls = 0;
	struct sb_client *svc = sb_client_new(&cfg, NULL);
	CHECK(svc != NULL);
	CHECK_INT(sb_client_register(svc, "stock.level", NULL, handle_echo, &calls), 0);
	struct on_port o = {svc, ""};
	snprintf(o.want, sizeof o.want, "127.0.0.1:%u", pa);
	CHECK(pump_cond(&svc, 1, on_router, &o, "online on the second router"));

	struct peer *on_a = peer_hello(pa, NULL, "client");
	peer_request(on_a, "stock.level", 1, LONG_MS, "\xa2on", 3);
	struct sb_msg *r = recv_pumping(on_a, svc);
	CHECK(r != NULL && r->kind == SB_REPLY && r->id == 1 && v_is(r->outcome, "echoed"));
	peer_close(on_a);

	/* A watcher on b, for the send held while the client moves. */
	struct peer *audit = peer_hello(pb, NULL, "service");
	peer_register(audit, "audit.moved", 1);

	router_close(a);
	CHECK(pump_until(&svc, 1, &w.offline, 1, "offline once its router stopped"));
	/* Held while offline, written to the next router once online there. */
	CHECK_INT(sb_send(svc, "audit.moved", "\xa4held", 5, NULL), 0);
	CHECK_INT((int)sb_client_offline_queued(svc), 1);
	snprintf(o.want, sizeof o.want, "127.0.0.1:%u", pb);
	CHECK(pump_cond(&svc, 1, on_router, &o, "reconnected on the third router"));
	CHECK_INT(w.reconnected, 1);
	struct sb_msg *held = recv_pumping(audit, svc);
	CHECK(held != NULL && held->kind == SB_SEND && v_is(held->name, "audit.moved") &&
	      v_is(held->payload, "\xa4held"));

	/* Its handler was registered again there, and answers. */
	struct peer *on_b = peer_hello(pb, NULL, "client");
	peer_request(on_b, "stock.level", 2, LONG_MS, "\xa2on", 3);
	r = recv_pumping(on_b, svc);
	CHECK(r != NULL && r->kind == SB_REPLY && r->id == 2 && v_is(r->outcome, "echoed"));
	CHECK_INT(calls, 2);
	peer_close(on_b);
	peer_close(audit);
	sb_client_free(svc);
	router_close(b);
}

int main(void)
{
	watchdog("test_routers", 120);
	RUN(test_a_bad_router_list_is_refused_saying_which_address_and_why);
	RUN(test_a_client_whose_router_stops_moves_to_the_next_and_serves_there);
	return TEST_EXIT();
}
