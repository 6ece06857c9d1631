/* Limits per address and per connection: connections from one address,
 * requests in flight and names registered on one connection, and idle
 * connections pinged and closed when nothing answers. An in-process router
 * per test; raw peers and the client library. */
#include <signal.h>

#include <switchboard/client.h>
#include <switchboard/router.h>

#include "support/admin.h"
#include "support/auth.h"
#include "support/clock.h"
#include "support/peer.h"
#include "support/router.h"
#include "support/testlib.h"

static void ping_pong(struct peer *p, uint64_t id)
{
	struct sb_msg ping = {.kind = SB_PING, .id = id};
	peer_send(p, &ping);
	CHECK_INT(peer_expect(p, SB_PONG)->id, id);
}

/* Past max_conns_per_addr, a connection from that address is told why and
 * closed; the others, and other addresses, carry on. */
static void test_connections_per_address(void)
{
	struct sb_router_config cfg = router_config();
	cfg.max_conns_per_addr = 2;
	router_start(&cfg);
	struct peer *a = peer_hello(PORT, "pa-1", "client");
	struct peer *b = peer_hello(PORT, "pa-2", "client");
	struct peer *extra = peer_dial(PORT);
	expect_fatal(extra, SB_EOVERLOADED, "too many connections from 127.0.0.1 (limit 2)", 0);
	peer_close(extra);
	struct peer *other = peer_dial_from("127.0.0.3", PORT);
	say_hello(other, "pa-other", "client");
	peer_expect(other, SB_WELCOME);
	ping_pong(a, 1);
	ping_pong(b, 2);
	CHECK_INT(stat_of(other, "addr_refused"), 1);
	/* A place freed is a place again, once the router has seen the close. */
	peer_close(a);
	int welcomed = 0;
	for (int tries = 0; tries < 100 && !welcomed; tries++) {
		struct peer *q = peer_dial(PORT);
		say_hello(q, NULL, "client");
		welcomed = peer_recv_within(q, 5000) == 1 && q->m.kind == SB_WELCOME;
		peer_close(q);
		if (!welcomed)
			sleep_ms(10);
	}
	CHECK(welcomed);
	peer_close(b);
	peer_close(other);
	router_stop();
}

/* Past max_inflight_per_conn, a request is answered "overloaded" and the
 * connection stays; a finished request frees a place, and another
 * connection has places of its own. */
static void test_requests_in_flight_per_connection(void)
{
	struct sb_router_config cfg = router_config();
	cfg.max_inflight_per_conn = 3;
	router_start(&cfg);
	struct peer *svc = peer_hello(PORT, "if-svc", "service");
	struct peer *cli = peer_hello(PORT, "if-cli", "client");
	struct peer *other = peer_hello(PORT, "if-other", "client");
	peer_register(svc, "slow", 1);
	uint64_t rid[3];
	for (uint64_t i = 1; i <= 3; i++) {
		peer_request(cli, "slow", i, 0, NULL, 0);
		rid[i - 1] = peer_expect(svc, SB_REQUEST)->id;
	}
	peer_request(cli, "slow", 4, 0, NULL, 0);
	expect_refusal(cli, 4, SB_EOVERLOADED,
		       "too many requests in flight on this connection (limit 3)");
	peer_request(other, "slow", 40, 0, NULL, 0);
	peer_expect(svc, SB_REQUEST);
	peer_reply(svc, rid[0], "done", 0, NULL, 0);
	CHECK_INT(peer_expect(cli, SB_REPLY)->id, 1);
	peer_request(cli, "slow", 5, 0, NULL, 0);
	CHECK(v_is(peer_expect(svc, SB_REQUEST)->name, "slow"));
	CHECK_INT(stat_of(cli, "inflight_refused"), 1);
	peer_close(cli);
	peer_close(other);
	peer_close(svc);
	router_stop();
}

/* Past max_registrations, a REGISTER of a new name is answered
 * "overloaded"; registering a name again takes no place, and an
 * UNREGISTER gives one back. */
static void test_registrations_per_connection(void)
{
	struct sb_router_config cfg = router_config();
	cfg.max_registrations = 2;
	router_start(&cfg);
	struct peer *svc = peer_hello(PORT, "rg-svc", "service");
	peer_register(svc, "a", 1);
	peer_register(svc, "b", 2);
	struct sb_msg reg = {.kind = SB_REGISTER, .id = 3, .name = v_str("c")};
	peer_send(svc, &reg);
	expect_refusal(svc, 3, SB_EOVERLOADED,
		       "too many names registered on this connection (limit 2)");
	peer_register(svc, "a", 4);
	struct sb_msg unreg = {.kind = SB_UNREGISTER, .id = 5, .name = v_str("b")};
	peer_send(svc, &unreg);
	CHECK_INT(peer_expect(svc, SB_ACK)->id, 5);
	peer_register(svc, "c", 6);
	CHECK_INT(stat_of(svc, "register_refused"), 1);
	peer_close(svc);
	router_stop();
}

/* A silent connection is sent a PING after idle_ms, and closed with
 * "timeout" when nothing comes back; one that answers stays, and so does a
 * client library peer that does nothing at all. */
static void test_idle_connections_are_pinged(void)
{
	struct sb_router_config cfg = router_config();
	struct states st = {0};
	char outcome[64];
	cfg.idle_ms = 150;
	cfg.pong_timeout_ms = 1000; /* room for a loaded machine to answer */
	router_start(&cfg);

	struct peer *silent = peer_hello(PORT, "silent", "client");
	peer_expect(silent, SB_PING);
	expect_fatal(silent, SB_ETIMEOUT, "no PONG within 1000 ms", 0);
	peer_close(silent);

	struct peer *alive = peer_hello(PORT, "alive", "client");
	for (int i = 0; i < 2; i++) {
		struct sb_msg *ping = peer_expect(alive, SB_PING);
		struct sb_msg pong = {.kind = SB_PONG, .id = ping->id};
		peer_send(alive, &pong);
	}
	CHECK_INT(stat_of(alive, "idle_timeouts"), 1);
	peer_close(alive);

	struct sb_client *c = lib_client(PORT, "idle-lib", "client", NULL, &st);
	CHECK_INT(lib_settle(c), 0);
	uint64_t pings = router_stats().idle_pings;
	for (uint64_t until = now_ms() + 10000;
	     router_stats().idle_pings < pings + 3 && now_ms() < until;)
		CHECK_INT(sb_client_process(c, 20), 0);
	CHECK(router_stats().idle_pings >= pings + 3);
	CHECK(sb_client_online(c));
	CHECK_INT(st.offline, 0);
	CHECK_INT(sb_request_wait(
			  c, "$sb.stats", NULL, 0,
			  &(struct sb_opts){.size = sizeof(struct sb_opts), .timeout_ms = 5000},
			  outcome, sizeof outcome, NULL, NULL),
		  0);
	CHECK_INT(router_stats().idle_timeouts, 1);
	sb_client_free(c);
	router_stop();
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	RUN(test_connections_per_address);
	RUN(test_requests_in_flight_per_connection);
	RUN(test_registrations_per_connection);
	RUN(test_idle_connections_are_pinged);
	return TEST_EXIT();
}
