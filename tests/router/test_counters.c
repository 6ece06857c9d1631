/* The router's refusal counters count by what a refusal is, wherever it is
 * made: a SEND and a REQUEST refused for one reason count alike, and every
 * registration refused as forbidden counts as forbidden (docs/protocol.md,
 * router.h). Each test starts a router of its own; peers speak raw frames
 * over real sockets (tests/support/peer.h). */
#include <switchboard/router.h>

#include "support/peer.h"

static struct sb_router *R;
static uint16_t PORT;

static void start(unsigned shards, uint32_t max_inflight)
{
	struct sb_router_config cfg;
	int err = 0;
	sb_router_config_init(&cfg);
	cfg.port = 0;
	cfg.shards = shards;
	cfg.log_level = getenv("SB_TEST_LOG") ? 3 : 0;
	if (max_inflight > 0)
		cfg.max_inflight = max_inflight;
	R = sb_router_new(&cfg, &err);
	CHECK(R != NULL);
	CHECK_INT(R != NULL ? sb_router_start(R) : -1, 0);
	PORT = R != NULL ? sb_router_port(R) : 0;
}

static void stop(void)
{
	sb_router_stop(R, 0);
	sb_router_free(R);
	R = NULL;
}

static struct sb_router_stats stats(void)
{
	struct sb_router_stats s;
	sb_router_stats(R, &s);
	return s;
}

/* Everything p sent before has been handled: its shard answers in order. */
static void settle(struct peer *p)
{
	static uint64_t id = 1000;
	struct sb_msg ping = {.kind = SB_PING, .id = ++id};
	peer_send(p, &ping);
	CHECK(peer_expect(p, SB_PONG)->id == id);
}

static void send_to(struct peer *p, unsigned kind, const char *to, const char *name, uint64_t id,
		    uint8_t flags)
{
	struct sb_msg m = {.kind = (uint8_t)kind, .id = id, .flags = flags, .name = v_str(name)};
	m.to = v_str(to);
	peer_send(p, &m);
}

static void expect_error(struct peer *p, uint64_t id, int code)
{
	struct sb_msg *e = peer_expect(p, SB_ERROR);
	CHECK(e->id == id);
	CHECK_INT(e->code, -code);
}

/* Nothing can take a message for a peer that never connected, or for a
 * reserved name the router does not serve: the send is dropped, the
 * request answered, and each counts once as no_handler. */
static void test_a_send_and_a_request_to_nobody_both_count_as_no_handler(void)
{
	start(2, 0);
	struct peer *cli = peer_hello(PORT, "nobody-asker", "client");
	struct sb_router_stats before = stats();

	send_to(cli, SB_SEND, "ghost", "hello", 0, 0);
	send_to(cli, SB_REQUEST, "ghost", "hello", 1, 0);
	expect_error(cli, 1, SB_EUNKNOWNPEER);
	peer_request(cli, "$sb.nope", 2, 0, NULL, 0);
	expect_error(cli, 2, SB_ENOHANDLER);
	settle(cli);
	struct sb_router_stats after = stats();
	CHECK_INT(after.no_handler, before.no_handler + 3);
	CHECK_INT(after.invalid_args, before.invalid_args);
	CHECK_INT(after.forbidden, before.forbidden);
	peer_close(cli);
	stop();
}

/* With BROADCAST, `to` selects peers; one that is no selector (a `*` not
 * at its end) is answered `invalid arguments`, the send dropped, and both
 * count as invalid_args. */
static void test_a_bad_peer_selector_counts_as_invalid_arguments(void)
{
	start(2, 0);
	struct peer *svc = peer_hello(PORT, "both-svc", "service");
	struct peer *cli = peer_hello(PORT, "both-cli", "client");
	peer_register(svc, "both.x", 1);
	struct sb_router_stats before = stats();

	send_to(cli, SB_SEND, "both*svc", "both.x", 0, SB_F_BROADCAST);
	send_to(cli, SB_REQUEST, "both*svc", "both.x", 3, SB_F_BROADCAST);
	expect_error(cli, 3, SB_EINVAL);
	settle(cli);
	peer_expect_silence(svc, 50);
	struct sb_router_stats after = stats();
	CHECK_INT(after.invalid_args, before.invalid_args + 2);
	CHECK_INT(after.no_handler, before.no_handler);
	peer_close(cli);
	peer_close(svc);
	stop();
}

/* A REGISTER refused as forbidden counts as forbidden: a GOODBYE said
 * before (while a request to the service keeps it connected). A client's
 * REGISTER is no refusal: its names are for `to` only. */
static void test_every_forbidden_registration_counts(void)
{
	start(2, 0);
	struct peer *cli = peer_hello(PORT, "reg-cli", "client");
	struct peer *svc = peer_hello(PORT, "reg-svc", "service");
	peer_register(svc, "reg.y", 1);
	peer_request(cli, "reg.y", 2, 0, NULL, 0);
	CHECK(peer_expect(svc, SB_REQUEST) != NULL);
	struct sb_router_stats before = stats();

	struct sb_msg reg = {.kind = SB_REGISTER, .id = 4, .name = v_str("reg.x")};
	peer_send(cli, &reg);
	CHECK(peer_expect(cli, SB_ACK)->id == 4);
	struct sb_msg bye = {.kind = SB_GOODBYE, .text = v_str("leaving"), .deadline_ms = 5000};
	peer_send(svc, &bye);
	reg.id = 5;
	peer_send(svc, &reg);
	expect_error(svc, 5, SB_EFORBIDDEN);
	CHECK_INT(stats().forbidden, before.forbidden + 1);
	peer_close(cli);
	peer_close(svc);
	stop();
}

/* A request refused as overloaded counts in inflight_refused, whether its
 * connection or its shard is full. */
static void test_a_full_shard_counts_its_refusals(void)
{
	start(1, 1);
	struct peer *svc = peer_hello(PORT, "full-svc", "service");
	struct peer *cli = peer_hello(PORT, "full-cli", "client");
	peer_register(svc, "full.x", 1);
	struct sb_router_stats before = stats();

	peer_request(cli, "full.x", 6, 0, NULL, 0);
	CHECK(peer_expect(svc, SB_REQUEST) != NULL);
	peer_request(cli, "full.x", 7, 0, NULL, 0);
	expect_error(cli, 7, SB_EOVERLOADED);
	CHECK_INT(stats().inflight_refused, before.inflight_refused + 1);
	peer_close(cli);
	peer_close(svc);
	stop();
}

int main(void)
{
	RUN(test_a_send_and_a_request_to_nobody_both_count_as_no_handler);
	RUN(test_a_bad_peer_selector_counts_as_invalid_arguments);
	RUN(test_every_forbidden_registration_counts);
	RUN(test_a_full_shard_counts_its_refusals);
	return TEST_EXIT();
}
