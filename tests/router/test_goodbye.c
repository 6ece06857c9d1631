/* GOODBYE from a peer, in both its roles: a handler that leaves finishes
 * the requests it has and takes no new ones, a requester that leaves still
 * gets its replies, and the deadline GOODBYE gives (capped) ends what is
 * left. An in-process router with two shards; peers speak raw frames. */
#include <poll.h>

#include <switchboard/router.h>

#include "support/clock.h"
#include "support/peer.h"
#include "support/router.h"

/* An ERROR with this id, code and flags, and (unless NULL) this text. */
static void expect_error(struct peer *p, uint64_t id, int code, uint8_t flags, const char *text)
{
	struct sb_msg *e = peer_expect(p, SB_ERROR);
	CHECK(e->id == id);
	CHECK_INT(e->code, -code);
	CHECK_INT(e->flags, flags);
	if (text != NULL && !v_is(e->text, text)) {
		fprintf(stderr, "  text \"%.*s\", expected \"%s\"\n", (int)e->text.len,
			(const char *)e->text.ptr, text);
		CHECK(v_is(e->text, text));
	}
}

static void send_to(struct peer *p, unsigned kind, const char *to, const char *name, uint64_t id)
{
	struct sb_msg m = {.kind = (uint8_t)kind, .id = id, .name = v_str(name)};
	m.to = v_str(to);
	peer_send(p, &m);
}

static void subscribe(struct peer *p, uint64_t id)
{
	struct sb_msg m = {.kind = SB_SUBSCRIBE, .id = id, .name = v_str("presence")};
	peer_send(p, &m);
	CHECK(peer_expect(p, SB_ACK)->id == id);
}

/* The next presence event about `name` (others are skipped). */
static void expect_event(struct peer *p, unsigned event, const char *name)
{
	for (int i = 0; i < 16; i++) {
		struct sb_msg *m = peer_expect(p, SB_PRESENCE);
		if (m->kind != SB_PRESENCE)
			return;
		if (v_is(m->peer, name)) {
			CHECK_INT(m->event, event);
			return;
		}
	}
	CHECK(!"no presence event about the peer");
}

static void goodbye(struct peer *p, uint32_t deadline_ms)
{
	struct sb_msg bye = {.kind = SB_GOODBYE, .text = v_str("shutting down")};
	bye.deadline_ms = deadline_ms;
	peer_send(p, &bye);
}

/* A handler that says GOODBYE gets no new requests (by name or `to`), from
 * either shard, finishes the ones it has, and is closed once they are done. */
static void test_goodbye_lets_a_handler_finish_its_requests(void)
{
	router_start(NULL);
	struct peer *svc = peer_hello_on(PORT, "gb-svc", "service", 0);
	struct peer *c[2] = {peer_hello_on(PORT, "gb-c0", "client", 0),
			     peer_hello_on(PORT, "gb-c1", "client", 1)};
	peer_register(svc, "gb.work", 1);
	for (int i = 0; i < 2; i++)
		subscribe(c[i], 1);
	uint64_t rid[2];
	for (int i = 0; i < 2; i++) {
		peer_request(c[i], "gb.work", 10 + (uint64_t)i, 10000, NULL, 0);
		rid[i] = peer_expect(svc, SB_REQUEST)->id;
	}
	goodbye(svc, 10000);
	for (int i = 0; i < 2; i++) { /* each shard has heard of it */
		expect_event(c[i], SB_PEER_DRAINING, svc->name);
		peer_request(c[i], "gb.work", 20 + (uint64_t)i, 10000, NULL, 0);
		expect_error(c[i], 20 + (uint64_t)i, SB_ENOHANDLER, 0, NULL);
		char why[96];
		snprintf(why, sizeof why, "peer %s is leaving: it said GOODBYE", svc->name);
		send_to(c[i], SB_REQUEST, svc->name, "gb.work", 30 + (uint64_t)i);
		expect_error(c[i], 30 + (uint64_t)i, SB_ENOTCONNECTED, 0, why);
	}
	struct sb_msg reg = {.kind = SB_REGISTER, .id = 2, .name = v_str("gb.more")};
	peer_send(svc, &reg);
	expect_error(svc, 2, SB_EFORBIDDEN, 0,
		     "this connection said GOODBYE: it registers no more names");
	peer_expect_silence(svc, 100);

	for (int i = 0; i < 2; i++) {
		peer_reply(svc, rid[i], "done", 0, NULL, 0);
		struct sb_msg *r = peer_expect(c[i], SB_REPLY);
		CHECK(r->id == 10 + (uint64_t)i && v_is(r->outcome, "done"));
	}
	CHECK_INT(peer_recv_within(svc, 5000), 0); /* nothing left: closed */
	for (int i = 0; i < 2; i++) {
		expect_event(c[i], SB_PEER_DISCONNECTED, svc->name);
		peer_close(c[i]);
	}
	peer_close(svc);
	router_stop();
}

/* A requester that says GOODBYE keeps its requests (its handlers are not
 * told to cancel), may still make new ones, gets every reply, and is
 * closed after the last. */
static void test_goodbye_lets_a_requester_get_its_replies(void)
{
	router_start(NULL);
	struct peer *h = peer_hello_on(PORT, "gr-h", "service", 1);
	struct peer *cli = peer_hello_on(PORT, "gr-cli", "client", 0);
	peer_register(h, "gr.work", 1);
	uint64_t rid[3];
	for (int i = 0; i < 2; i++) {
		peer_request(cli, "gr.work", 1 + (uint64_t)i, 10000, NULL, 0);
		rid[i] = peer_expect(h, SB_REQUEST)->id;
	}
	goodbye(cli, 10000);
	peer_expect_silence(h, 200); /* no CANCEL */
	peer_reply(h, rid[0], "one", 0, NULL, 0);
	CHECK(peer_expect(cli, SB_REPLY)->id == 1);
	peer_request(cli, "gr.work", 3, 10000, NULL, 0);
	rid[2] = peer_expect(h, SB_REQUEST)->id;
	peer_reply(h, rid[2], "three", 0, NULL, 0);
	CHECK(peer_expect(cli, SB_REPLY)->id == 3);
	peer_expect_silence(cli, 200); /* one still open: not closed */
	peer_reply(h, rid[1], "two", 0, NULL, 0);
	CHECK(peer_expect(cli, SB_REPLY)->id == 2);
	CHECK_INT(peer_recv_within(cli, 5000), 0);
	peer_close(cli);
	peer_close(h);
	router_stop();
}

/* At the deadline GOODBYE gave, what is still open ends as at a close: its
 * requesters hear `peer gone`, its handlers get CANCEL. Never before it. */
static void test_goodbye_deadline_ends_what_is_left(void)
{
	router_start(NULL);
	struct peer *svc = peer_hello_on(PORT, "gd-svc", "service", 1);
	struct peer *cli = peer_hello_on(PORT, "gd-cli", "client", 0);
	peer_register(svc, "gd.slow", 1);
	peer_request(cli, "gd.slow", 1, 10000, NULL, 0);
	peer_expect(svc, SB_REQUEST);
	uint64_t t0 = now_ms();
	goodbye(svc, 300);
	expect_error(cli, 1, SB_EPEERGONE, 0, NULL);
	CHECK(now_ms() - t0 >= 300);
	CHECK_INT(peer_recv_within(svc, 5000), 0);

	struct peer *h = peer_hello_on(PORT, "gd-h", "service", 0);
	peer_register(h, "gd.slow2", 1);
	peer_request(cli, "gd.slow2", 2, 10000, NULL, 0);
	uint64_t rid = peer_expect(h, SB_REQUEST)->id;
	t0 = now_ms();
	goodbye(cli, 200);
	CHECK(peer_expect(h, SB_CANCEL)->id == rid);
	CHECK(now_ms() - t0 >= 200);
	CHECK_INT(peer_recv_within(cli, 5000), 0);
	peer_close(h);
	peer_close(cli);
	peer_close(svc);
	router_stop();
}

/* A deadline past the longest request timeout the router allows
 * (max_timeout_ms) is cut to it: by then every request the peer had has
 * ended, and a peer that keeps asking cannot hold its connection forever. */
static void test_goodbye_deadline_is_capped(void)
{
	struct sb_router_config cfg = router_config();
	cfg.max_timeout_ms = 400;
	router_start(&cfg);
	struct peer *h = peer_hello(PORT, "gc-h", "service");
	struct peer *cli = peer_hello(PORT, "gc-cli", "client");
	peer_register(h, "gc.silent", 1);
	peer_request(cli, "gc.silent", 1, 0, NULL, 0); /* open before the GOODBYE */
	peer_expect(h, SB_REQUEST);
	uint64_t t0 = now_ms(), id = 2, closed_at = 0, sent = t0, gap = 0;
	goodbye(cli, UINT32_MAX);
	while (closed_at == 0 && now_ms() - t0 < 10000) {
		/* A new request every 50 ms keeps one open (each lives 400 ms). */
		peer_request(cli, "gc.silent", id++, 0, NULL, 0);
		gap = now_ms() - sent > gap ? now_ms() - sent : gap;
		sent = now_ms();
		struct pollfd pfd = {.fd = cli->fd, .events = POLLIN};
		if (poll(&pfd, 1, 50) == 1)
			while (closed_at == 0) {
				int rc = peer_recv_within(cli, 0);
				if (rc == 0)
					closed_at = now_ms();
				if (rc != 1)
					break;
			}
	}
	CHECK(closed_at != 0); /* not held by its requests */
	/* Never before the cap, as long as a request was open all along: a
	 * test thread stalled past a request's 400 ms on a loaded machine
	 * leaves none, and then an early close is right. */
	if (gap < 300)
		CHECK(closed_at - t0 >= 400);
	else
		printf("  (a %llu ms gap between requests: the lower bound is not checked)\n",
		       (unsigned long long)gap);
	peer_close(cli);
	peer_close(h);
	router_stop();
}

int main(void)
{
	RUN(test_goodbye_lets_a_handler_finish_its_requests);
	RUN(test_goodbye_lets_a_requester_get_its_replies);
	RUN(test_goodbye_deadline_ends_what_is_left);
	RUN(test_goodbye_deadline_is_capped);
	return TEST_EXIT();
}
