/* Connections: the handshake's rules (unique names, who may register what),
 * names assigned from a pattern, the connection limit and the HELLO
 * deadline, a stop that drains, and a port already taken. In-process
 * routers with two shards; peers speak raw frames. */
#include <errno.h>

#include <switchboard/router.h>

#include "support/clock.h"
#include "support/peer.h"
#include "support/router.h"

static void close_all(struct peer **p, int n)
{
	for (int i = 0; i < n; i++)
		peer_close(p[i]);
}

static void test_handshake_rules(void)
{
	struct sb_router_config cfg = router_config();
	cfg.name_grace_ms = 0; /* names free at once: the grace has its own test */
	router_start(&cfg);
	struct peer *first = peer_hello(PORT, "unique-1", "client");
	struct peer *dup = peer_dial(PORT);
	struct sb_msg h = {
		.kind = SB_HELLO, .version = 1, .peer = v_str("unique-1"), .role = v_str("client")};
	peer_send(dup, &h);
	struct sb_msg *e = peer_expect(dup, SB_ERROR);
	CHECK(e->code == (uint32_t)-SB_EDUPNAME && (e->flags & SB_F_FATAL));
	CHECK_INT(peer_recv_within(dup, 2000), 0);
	peer_close(dup);

	/* The first holder of the name is undisturbed. */
	struct sb_msg ping = {.kind = SB_PING, .id = 77};
	peer_send(first, &ping);
	CHECK(peer_expect(first, SB_PONG)->id == 77);

	/* A client's name is for `to` only (test_peers.c), so it steals no
	 * route and is taken; nobody may register a reserved name. */
	struct sb_msg reg = {.kind = SB_REGISTER, .id = 2, .name = v_str("steal.me")};
	peer_send(first, &reg);
	CHECK(peer_expect(first, SB_ACK)->id == 2);
	struct peer *svc = peer_hello(PORT, NULL, "service"); /* assigned a name */
	reg.name = v_str("$sb.routes");
	peer_send(svc, &reg);
	CHECK(peer_expect(svc, SB_ERROR)->code == (uint32_t)-SB_EINVAL);

	/* A name freed by a disconnect can be taken again. */
	peer_close(first);
	for (int i = 0; i < 50; i++) { /* the close reaches the router asynchronously */
		struct peer *again = peer_dial(PORT);
		peer_send(again, &h);
		int ok = peer_recv_within(again, 5000) == 1 && again->m.kind == SB_WELCOME;
		peer_close(again);
		if (ok)
			break;
		CHECK(i < 49);
	}
	peer_close(svc);
	router_stop();
}

static void test_assigned_names_follow_the_pattern(void)
{
	struct sb_router_config cfg = router_config();
	int err = 0;
	static const char *bad[] = {
		"nohash",
		"A#B#",
		"with #space",
		"",
		"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx#", /* no room for 10 digits
									     */
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		cfg.name_pattern = bad[i];
		struct sb_router *r = sb_router_new(&cfg, &err);
		CHECK(r == NULL);
		CHECK_INT(err, SB_EINVAL);
		sb_router_free(r);
	}
	cfg.name_pattern =
		"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx#"; /* 54 bytes and 10
									      digits: just fits */
	struct sb_router *fits = sb_router_new(&cfg, &err);
	CHECK(fits != NULL);
	sb_router_free(fits);
	char pattern[] = "A###";
	cfg.name_pattern = pattern;
	router_start(&cfg);
	pattern[0] = 'X'; /* the router keeps its own copy */
	struct peer *p[6];
	p[0] = peer_hello(PORT, NULL, "client");
	p[1] = peer_hello(PORT, NULL, "service");
	p[2] = peer_hello(PORT, "A003", "client"); /* takes the pattern's next name itself */
	p[3] = peer_hello(PORT, NULL, "client");   /* so the pattern skips it */
	p[4] = peer_hello(PORT, "A005", "client");
	p[5] = peer_hello(PORT, NULL, "client");
	CHECK_STR(p[0]->name, "A001");
	CHECK_STR(p[1]->name, "A002");
	CHECK_STR(p[3]->name, "A004");
	CHECK_STR(p[5]->name, "A006");
	CHECK(p[1]->peer_id > p[0]->peer_id);
	close_all(p, 6);
	router_stop();

	/* The default pattern: P and four digits. */
	router_start(NULL);
	struct peer *anon = peer_hello(PORT, NULL, "client");
	CHECK(strlen(anon->name) == 5 && anon->name[0] == 'P');
	peer_close(anon);
	router_stop();
}

/* HELLO asking for name with the resume token tok (NULL: none); the answer. */
static struct sb_msg *hello_resume(struct peer *p, const char *name, const uint8_t *tok)
{
	uint8_t pl[1 + 7 + 2 + 16] = {0x81, 0xa6, 'r', 'e', 's', 'u', 'm', 'e', 0xc4, 16};
	struct sb_msg h = {.kind = SB_HELLO, .version = 1, .role = v_str("client")};
	h.peer = v_str(name);
	if (tok != NULL) {
		memcpy(pl + 10, tok, 16);
		h.payload = (struct sb_view){pl, sizeof pl};
	}
	peer_send(p, &h);
	CHECK_INT(peer_recv_within(p, 5000), 1);
	return &p->m;
}

static int is_held(const struct sb_msg *m)
{
	static const char held[] = "this name is held for the peer that had it (";
	return m->kind == SB_ERROR && m->code == (uint32_t)-SB_EDUPNAME &&
	       (m->flags & SB_F_FATAL) && m->text.len > sizeof held - 1 &&
	       memcmp(m->text.ptr, held, sizeof held - 1) == 0;
}

/* A peer whose connection is lost keeps its name, assigned or not, for its
 * resume token: anyone else (a forged token too) is refused as for a name
 * in use, the pattern skips it, the token takes it back (with a new token),
 * and after the grace the name is free. */
static void test_a_lost_peer_keeps_its_name_for_its_token(void)
{
	struct sb_router_config cfg = router_config();
	cfg.name_pattern = "A###";
	cfg.name_grace_ms = 60000;
	router_start(&cfg);
	struct peer *a = peer_hello(PORT, NULL, "client");
	CHECK_STR(a->name, "A001");
	CHECK(a->has_resume);
	uint8_t tok[16], forged[16];
	memcpy(tok, a->resume, 16);
	memcpy(forged, tok, 16);
	forged[15] ^= 1;
	peer_close(a); /* lost, not a GOODBYE */

	/* Until the router has seen the close, A001 is connected. */
	struct sb_msg *m = NULL;
	for (int i = 0; i < 200; i++) {
		struct peer *other = peer_dial(PORT);
		m = hello_resume(other, "A001", NULL);
		int held = is_held(m);
		CHECK(held || m->code == (uint32_t)-SB_EDUPNAME);
		peer_close(other);
		if (held)
			break;
		CHECK(i < 199);
		usleep(5000);
	}
	struct peer *forger = peer_dial(PORT);
	CHECK(is_held(hello_resume(forger, "A001", forged)));
	peer_close(forger);
	struct peer *next = peer_hello(PORT, NULL, "client");
	CHECK_STR(next->name, "A002"); /* A001 is skipped while held */

	struct peer *back = peer_dial(PORT);
	m = hello_resume(back, "A001", tok);
	CHECK(m->kind == SB_WELCOME && v_is(m->peer, "A001"));
	CHECK(m->payload.len == 33 && memcmp(m->payload.ptr + 17, tok, 16) != 0);
	/* The token it showed is spent; a second HELLO with it is a duplicate. */
	struct peer *again = peer_dial(PORT);
	m = hello_resume(again, "A001", tok);
	CHECK(m->kind == SB_ERROR && m->code == (uint32_t)-SB_EDUPNAME);
	peer_close(again);
	peer_close(back);
	peer_close(next);
	router_stop();

	/* After the grace the name is free, token or not. */
	cfg.name_grace_ms = 100;
	router_start(&cfg);
	a = peer_hello(PORT, NULL, "client");
	CHECK_STR(a->name, "A001");
	peer_close(a);
	uint64_t deadline = now_ms() + 10000;
	for (;;) {
		struct peer *late = peer_dial(PORT);
		m = hello_resume(late, "A001", NULL);
		int ok = m->kind == SB_WELCOME, dup = m->code == (uint32_t)-SB_EDUPNAME;
		peer_close(late);
		if (ok)
			break;
		CHECK(dup);
		CHECK(now_ms() < deadline);
		if (now_ms() >= deadline)
			break;
		usleep(10000);
	}
	/* A token this router never gave (it restarted since): the free name
	 * asked for is given, and held from then on (a token comes with it). */
	struct peer *known = peer_dial(PORT);
	m = hello_resume(known, "A042", tok);
	CHECK(m->kind == SB_WELCOME && v_is(m->peer, "A042") && m->payload.len == 33);
	peer_close(known);
	router_stop();
}

/* Someone asks for name until it is free (the router sees a close in its
 * own time); it is never refused as held. */
static void take_when_free(const char *name)
{
	for (int i = 0; i < 200; i++) {
		struct peer *b = peer_dial(PORT);
		struct sb_msg *m = hello_resume(b, name, NULL);
		int ok = m->kind == SB_WELCOME;
		CHECK(ok || (m->code == (uint32_t)-SB_EDUPNAME && !is_held(m)));
		peer_close(b);
		if (ok)
			break;
		CHECK(i < 199);
		usleep(5000);
	}
}

/* Names that are not held: an assigned one whose peer said GOODBYE (it is
 * not coming back), and one a peer chose (no token: a restarted peer asks
 * for it again and gets it). */
static void test_names_not_held(void)
{
	struct sb_router_config cfg = router_config();
	cfg.name_grace_ms = 60000;
	router_start(&cfg);
	struct peer *a = peer_hello(PORT, NULL, "client");
	CHECK(a->has_resume);
	char assigned[SB_PEER_MAX + 1];
	snprintf(assigned, sizeof assigned, "%s", a->name);
	struct sb_msg bye = {.kind = SB_GOODBYE, .text = v_str("done"), .deadline_ms = 0};
	peer_send(a, &bye);
	CHECK_INT(peer_recv_within(a, 5000), 0); /* the router closes */
	peer_close(a);
	take_when_free(assigned);

	struct peer *chose = peer_hello(PORT, "billing-1", "service");
	CHECK(!chose->has_resume);
	peer_close(chose);
	take_when_free("billing-1");
	router_stop();
}

static void test_stop_drains(void)
{
	router_start(NULL);
	struct peer *svc = peer_hello(PORT, "drain-svc", "service");
	struct peer *cli = peer_hello(PORT, "drain-cli", "client");
	peer_register(svc, "slow.job", 1);
	peer_request(cli, "slow.job", 61, 0, NULL, 0);
	peer_expect(svc, SB_REQUEST);

	sb_router_stop(R, 100); /* nobody answers: the deadline ends it */
	CHECK(v_is(peer_expect(cli, SB_GOODBYE)->text, "router draining"));
	struct sb_msg *e = peer_expect(cli, SB_ERROR);
	CHECK(e->id == 61 && e->code == (uint32_t)-SB_EDRAINING);
	CHECK_INT(peer_recv_within(cli, 2000), 0); /* then the connection closes */
	peer_close(svc);
	peer_close(cli);
	sb_router_free(R);
	R = NULL;
}

/* The connection past max_conns is told why and closed; the others keep
 * working, and a place that frees up can be taken again. */
static void test_connection_limit(void)
{
	struct sb_router_config cfg = router_config();
	cfg.max_conns = 3;
	router_start(&cfg);
	struct peer *p[3];
	for (int i = 0; i < 3; i++) {
		char name[16];
		snprintf(name, sizeof name, "lim-%d", i);
		p[i] = peer_hello(PORT, name, "client");
	}
	struct peer *extra = peer_dial(PORT);
	struct sb_msg *e = peer_expect(extra, SB_ERROR);
	CHECK(e->code == (uint32_t)-SB_EOVERLOADED && (e->flags & SB_F_FATAL));
	CHECK(v_is(e->text, "too many connections (limit 3)"));
	CHECK_INT(peer_recv_within(extra, 2000), 0);
	peer_close(extra);
	CHECK_INT(router_stats().refused, 1);
	for (int i = 0; i < 3; i++) {
		struct sb_msg ping = {.kind = SB_PING, .id = 70u + (unsigned)i};
		peer_send(p[i], &ping);
		CHECK(peer_expect(p[i], SB_PONG)->id == 70u + (unsigned)i);
	}
	/* The router frees a place once it has seen the close: retry until. */
	peer_close(p[0]);
	int welcomed = 0;
	for (int tries = 0; tries < 100 && !welcomed; tries++) {
		struct peer *q = peer_dial(PORT);
		struct sb_msg h = {
			.kind = SB_HELLO, .version = SB_PROTO_VERSION, .role = v_str("client")};
		peer_send(q, &h);
		if (peer_recv_within(q, 2000) == 1 && q->m.kind == SB_WELCOME)
			welcomed = 1;
		else
			usleep(10000);
		peer_close(q);
	}
	CHECK(welcomed);
	peer_close(p[1]);
	peer_close(p[2]);
	router_stop();
}

/* A connection that does not finish HELLO in time is told why and closed,
 * never before its deadline; one that did is left alone. */
static void test_hello_deadline(void)
{
	struct sb_router_config cfg = router_config();
	cfg.hello_timeout_ms = 200;
	router_start(&cfg);
	struct peer *ok = peer_hello(PORT, "prompt", "client");
	uint64_t t0 = now_ms(); /* before the connects: the router's clock starts after */
	struct peer *silent = peer_dial(PORT);
	struct peer *partial = peer_dial(PORT);
	peer_raw(partial, "\x00\x00\x00\x20\x97\x01", 6); /* half a HELLO */
	struct peer *late[2] = {silent, partial};
	for (int i = 0; i < 2; i++) {
		struct sb_msg *e = peer_expect(late[i], SB_ERROR);
		CHECK(e->code == (uint32_t)-SB_ETIMEOUT && (e->flags & SB_F_FATAL));
		CHECK(v_is(e->text, "no HELLO within 200 ms"));
		CHECK(now_ms() - t0 >= 200);
		CHECK_INT(peer_recv_within(late[i], 2000), 0);
	}
	CHECK_INT(router_stats().hello_timeouts, 2);
	struct sb_msg ping = {.kind = SB_PING, .id = 9};
	peer_send(ok, &ping);
	CHECK(peer_expect(ok, SB_PONG)->id == 9);
	peer_close(ok);
	peer_close(silent);
	peer_close(partial);
	router_stop();
}

static void test_busy_port_is_reported(void)
{
	struct sb_router_config cfg;
	int err = 0;
	struct sb_router_config one = router_config();
	one.shards = 1;
	struct sb_router *a = router_open(&one);
	sb_router_config_init(&cfg);
	cfg.port = sb_router_port(a);
	cfg.shards = 1;
	cfg.log_level = 0;
	cfg.bind_retries = 2;
	cfg.bind_retry_ms = 10;
	/* A second router must not quietly join the first one's port (which
	 * SO_REUSEPORT alone would allow): it retries, then says it is busy. */
	struct sb_router *b = sb_router_new(&cfg, &err);
	CHECK(b == NULL);
	CHECK_INT(err, SB_ESYS);
	CHECK_INT(errno, EADDRINUSE);
	sb_router_free(b);
	sb_router_stop(a, 0);
	sb_router_free(a);

	/* Once a router is stopped its port is free at once: a restart on
	 * the same port needs no retries. */
	cfg.bind_retries = 0;
	b = sb_router_new(&cfg, &err);
	CHECK(b != NULL);
	sb_router_free(b);
}

int main(void)
{
	RUN(test_handshake_rules);
	RUN(test_assigned_names_follow_the_pattern);
	RUN(test_a_lost_peer_keeps_its_name_for_its_token);
	RUN(test_names_not_held);
	RUN(test_stop_drains);
	RUN(test_connection_limit);
	RUN(test_hello_deadline);
	RUN(test_busy_port_is_reported);
	return TEST_EXIT();
}
