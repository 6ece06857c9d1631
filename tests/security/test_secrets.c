/* Shared-secret authentication end to end: each role proves its own secret
 * (HMAC-SHA256 over the router's fresh nonce, computed here with OpenSSL
 * directly); wrong, replayed and missing proofs are refused, AUTH comes only
 * where it belongs, repeated failures from one address are refused for a
 * while, the client library gives up on a wrong secret, and the secret
 * never crosses the wire. An in-process router per test; raw peers and the
 * client library. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

#include <switchboard/client.h>
#include <switchboard/router.h>

#include "support/admin.h"
#include "support/auth.h"
#include "support/clock.h"
#include "support/peer.h"
#include "support/router.h"
#include "support/testlib.h"

/* A relay between a client and the router that keeps every byte each way,
 * so the test can look at exactly what crossed the network. */
struct relay {
	int lfd;
	uint16_t port;
	_Atomic int stop;
	pthread_t thread;
	uint8_t *up, *down; /* client -> router, router -> client */
	size_t nup, ndown;
};

#define RELAY_CAP (1u << 20)

static void relay_keep(uint8_t *cap, size_t *n, const uint8_t *p, size_t len)
{
	if (*n + len <= RELAY_CAP) {
		memcpy(cap + *n, p, len);
		*n += len;
	}
}

static void *relay_run(void *arg)
{
	struct relay *rl = arg;
	struct pollfd lp = {rl->lfd, POLLIN, 0};
	int a = -1, b = -1;

	while (!atomic_load(&rl->stop) && poll(&lp, 1, 50) == 0)
		;
	if (atomic_load(&rl->stop) || (a = accept(rl->lfd, NULL, NULL)) < 0)
		return NULL;
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(PORT)};
	inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
	b = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(b, (struct sockaddr *)&to, sizeof to) != 0) {
		close(a);
		close(b);
		return NULL;
	}
	uint8_t buf[65536];
	while (!atomic_load(&rl->stop)) {
		struct pollfd fds[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
		if (poll(fds, 2, 50) <= 0)
			continue;
		for (int i = 0; i < 2; i++) {
			if (fds[i].revents == 0)
				continue;
			ssize_t n = read(fds[i].fd, buf, sizeof buf);
			if (n <= 0)
				goto done;
			if (i == 0)
				relay_keep(rl->up, &rl->nup, buf, (size_t)n);
			else
				relay_keep(rl->down, &rl->ndown, buf, (size_t)n);
			if (write(fds[1 - i].fd, buf, (size_t)n) != n)
				goto done;
		}
	}
done:
	close(a);
	close(b);
	return NULL;
}

static void relay_start(struct relay *rl)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof sa;
	memset(rl, 0, sizeof *rl);
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	rl->lfd = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(bind(rl->lfd, (struct sockaddr *)&sa, sizeof sa) == 0);
	CHECK(listen(rl->lfd, 1) == 0);
	CHECK(getsockname(rl->lfd, (struct sockaddr *)&sa, &len) == 0);
	rl->port = ntohs(sa.sin_port);
	rl->up = malloc(RELAY_CAP);
	rl->down = malloc(RELAY_CAP);
	CHECK_INT(pthread_create(&rl->thread, NULL, relay_run, rl), 0);
}

static void relay_stop(struct relay *rl)
{
	atomic_store(&rl->stop, 1);
	pthread_join(rl->thread, NULL);
	close(rl->lfd);
}

/* The kinds of the frames in a captured byte stream, as a bit set. */
static unsigned kinds_in(const uint8_t *p, size_t n)
{
	struct sb_splitter *sp = sb_splitter_new(0);
	unsigned kinds = 0;
	struct sb_view f;
	struct sb_msg m;
	while (sb_splitter_next(sp, &p, &n, &f, NULL) == 1)
		if (sb_decode(f.ptr, f.len, 0, &m, NULL) == 0)
			kinds |= 1u << m.kind;
	sb_splitter_free(sp);
	return kinds;
}

static void on_cap_echo(struct sb_call *call, void *ud)
{
	size_t len;
	const void *p = sb_call_payload(call, &len);
	(void)ud;
	CHECK_INT(sb_reply(call, "echoed", p, len), 0);
}

/* Each role proves its own secret, named or not (an unnamed peer's proof
 * covers the empty name), and then works as usual. */
static void test_right_secret_is_welcomed(void)
{
	struct sb_router_config cfg = secret_config();
	router_start(&cfg);
	struct peer *svc = auth_hello("bank", "service", SVC_SECRET);
	peer_register(svc, "transfer", 1);
	struct peer *cli = auth_hello(NULL, "client", CLI_SECRET);
	peer_request(cli, "transfer", 7, 0, NULL, 0);
	struct sb_msg *q = peer_expect(svc, SB_REQUEST);
	CHECK(v_is(q->name, "transfer"));
	CHECK_INT(q->from, cli->peer_id);
	peer_reply(svc, q->id, "transferred", 0, NULL, 0);
	struct sb_msg *r = peer_expect(cli, SB_REPLY);
	CHECK_INT(r->id, 7);
	CHECK(v_is(r->outcome, "transferred"));
	CHECK_INT(stat_of(cli, "auth_failures"), 0);
	peer_close(svc);
	peer_close(cli);
	router_stop();
}

/* A wrong secret, the other role's secret, or a proof made for another name
 * is refused with "unauthorized", and the connection closed. */
static void test_wrong_secret_is_refused(void)
{
	struct sb_router_config cfg = secret_config();
	uint8_t rn[32];
	router_start(&cfg);
	struct {
		const char *role, *secret, *proof_name, *text;
	} cases[] = {
		{"service", "guess", "x", "wrong secret for role service"},
		{"service", CLI_SECRET, "x", "wrong secret for role service"},
		{"client", SVC_SECRET, "x", "wrong secret for role client"},
		{"service", SVC_SECRET, "y", "wrong secret for role service"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct peer *p = hello_challenged("x", cases[i].role, rn);
		send_auth(p, rn, cases[i].secret, cases[i].proof_name, NULL, 0);
		expect_fatal(p, SB_EUNAUTHORIZED, cases[i].text, 0);
		peer_close(p);
	}
	struct peer *ok = auth_hello("x", "service", SVC_SECRET);
	CHECK_INT(stat_of(ok, "auth_failures"), 4);
	peer_close(ok);
	router_stop();
}

/* An AUTH captured from a successful handshake is worthless later: every
 * connection gets a fresh nonce, so the old proof no longer matches. */
static void test_replayed_auth_is_refused(void)
{
	struct sb_router_config cfg = secret_config();
	uint8_t rn1[32], rn2[32], wire[256];
	router_start(&cfg);
	struct peer *first = hello_challenged("replay", "service", rn1);
	size_t n = send_auth(first, rn1, SVC_SECRET, "replay", wire, sizeof wire);
	peer_expect(first, SB_WELCOME);
	peer_close(first);

	struct peer *again = hello_challenged("replay", "service", rn2);
	CHECK(memcmp(rn1, rn2, sizeof rn1) != 0);
	peer_raw(again, wire, n);
	expect_fatal(again, SB_EUNAUTHORIZED, "wrong secret for role service", 0);
	peer_close(again);
	router_stop();
}

/* With a secret for services only, clients are refused rather than let in
 * unchecked: a role without a secret is closed, not open. */
static void test_role_without_secret_is_refused(void)
{
	struct sb_router_config cfg = router_config();
	cfg.secret_service = SVC_SECRET;
	router_start(&cfg);
	struct peer *cli = peer_dial(PORT);
	say_hello(cli, "cli", "client");
	expect_fatal(cli, SB_EUNAUTHORIZED, "role client is not accepted: it has no secret", 0);
	peer_close(cli);
	struct peer *svc = auth_hello("svc", "service", SVC_SECRET);
	CHECK_INT(stat_of(svc, "auth_failures"), 1);
	peer_close(svc);
	router_stop();
}

/* AUTH must answer CHALLENGE, come nowhere else, and be well-formed; the
 * HELLO deadline covers the whole handshake. */
static void test_handshake_order(void)
{
	struct sb_router_config cfg = secret_config();
	uint8_t rn[32];
	router_start(&cfg);

	struct peer *p = hello_challenged("o1", "client", rn);
	peer_request(p, "anything", 1, 0, NULL, 0);
	expect_fatal(p, SB_EBADFRAME, "AUTH must answer CHALLENGE", 0);
	peer_close(p);

	p = hello_challenged("o2", "client", rn);
	say_hello(p, "o2", "client");
	expect_fatal(p, SB_EBADFRAME, "AUTH must answer CHALLENGE", 0);
	peer_close(p);

	p = peer_dial(PORT);
	send_auth(p, rn, CLI_SECRET, NULL, NULL, 0);
	expect_fatal(p, SB_EBADFRAME, "HELLO must come first", 0);
	peer_close(p);

	/* A nonce under 16 bytes: the decoder's error, and nothing else. */
	static const uint8_t short_nonce[] = {
		0,    0,  0,  57, 0x96, 3,  0,  0xcf, 0,  0,  0,    0,  0,   0,  0,  0,
		0xc4, 8,  1,  2,  3,    4,  5,  6,    7,  8,  0xc4, 32, 1,   2,  3,  4,
		5,    6,  7,  8,  9,    10, 11, 12,   13, 14, 15,   16, 17,  18, 19, 20,
		21,   22, 23, 24, 25,   26, 27, 28,   29, 30, 31,   32, 0xc0};
	p = hello_challenged("o3", "client", rn);
	peer_raw(p, short_nonce, sizeof short_nonce);
	expect_fatal(p, SB_EBADFRAME, "AUTH field 3 (nonce): field too short (8, limit 16)", 0);
	peer_close(p);

	/* A proof of the wrong length is simply wrong. */
	p = hello_challenged("o4", "client", rn);
	struct sb_msg a = {.kind = SB_AUTH};
	a.nonce = (struct sb_view){rn, 16};
	a.proof = (struct sb_view){rn, 20};
	peer_send(p, &a);
	expect_fatal(p, SB_EUNAUTHORIZED, "wrong secret for role client", 0);
	peer_close(p);

	/* Challenged, then silent: the HELLO deadline still runs. (A router of
	 * its own: the cases above must not race a short deadline.) */
	router_stop();
	cfg.hello_timeout_ms = 1000;
	router_start(&cfg);
	p = hello_challenged("o5", "client", rn);
	expect_fatal(p, SB_ETIMEOUT, "no AUTH within 1000 ms", 0);
	peer_close(p);
	router_stop();

	/* Without secrets there is no CHALLENGE to answer. */
	cfg = router_config();
	router_start(&cfg);
	p = peer_hello(PORT, "o6", "client");
	send_auth(p, rn, CLI_SECRET, NULL, NULL, 0);
	expect_fatal(p, SB_EBADFRAME, "AUTH without a CHALLENGE", 0);
	peer_close(p);
	router_stop();
}

/* After auth_fail_max wrong secrets from one address within the window,
 * that address is refused before any work (even with the right secret, even
 * on a connection challenged before), until the window ends. Other
 * addresses are not affected. */
static void test_repeated_failures_are_refused(void)
{
	struct sb_router_config cfg = secret_config();
	uint8_t rn[32], rn_early[32];
	const char *refused = "too many authentication failures from 127.0.0.1 (limit 2 in 3000 "
			      "ms); retry in ";
	cfg.shards = 1; /* failures are counted per shard */
	cfg.auth_fail_max = 2;
	cfg.auth_fail_window_ms = 3000;
	router_start(&cfg);
	struct peer *early = hello_challenged("early", "service", rn_early);
	for (int i = 0; i < 2; i++) {
		struct peer *p = hello_challenged("guesser", "service", rn);
		send_auth(p, rn, "guess", "guesser", NULL, 0);
		expect_fatal(p, SB_EUNAUTHORIZED, "wrong secret for role service", 0);
		peer_close(p);
	}
	struct peer *p = peer_dial(PORT);
	say_hello(p, "honest", "service");
	expect_fatal(p, SB_EOVERLOADED, refused, 1);
	peer_close(p);
	send_auth(early, rn_early, SVC_SECRET, "early", NULL, 0);
	expect_fatal(early, SB_EOVERLOADED, refused, 1);
	peer_close(early);

	p = peer_dial_from("127.0.0.2", PORT);
	challenged(p, "elsewhere", "service", rn);
	send_auth(p, rn, SVC_SECRET, "elsewhere", NULL, 0);
	peer_expect(p, SB_WELCOME);
	CHECK_INT(stat_of(p, "auth_blocked"), 2);
	CHECK_INT(stat_of(p, "auth_failures"), 2);
	peer_close(p);

	/* The window ends, and 127.0.0.1 is heard again. */
	int welcomed = 0;
	for (uint64_t until = now_ms() + 15000; !welcomed && now_ms() < until;) {
		p = peer_dial(PORT);
		say_hello(p, "returning", "service");
		if (peer_recv_within(p, 5000) == 1 && p->m.kind == SB_CHALLENGE) {
			memcpy(rn, p->m.nonce.ptr, 32);
			send_auth(p, rn, SVC_SECRET, "returning", NULL, 0);
			welcomed = peer_recv_within(p, 5000) == 1 && p->m.kind == SB_WELCOME;
		} else
			sleep_ms(100);
		peer_close(p);
	}
	CHECK(welcomed);
	router_stop();
}

/* A wrong secret, or none for a router that asks, surfaces once through
 * on_state as SB_EUNAUTHORIZED, and the client gives up for good: no
 * reconnect hammers the router. */
static void test_client_library_gives_up_on_a_wrong_secret(void)
{
	struct sb_router_config cfg = secret_config();
	router_start(&cfg);
	const char *secrets[] = {"not it", NULL};
	for (int i = 0; i < 2; i++) {
		struct states st = {0};
		struct sb_client *c = lib_client(PORT, "lib-wrong", "client", secrets[i], &st);
		CHECK_INT(lib_settle(c), SB_EUNAUTHORIZED);
		CHECK_INT(st.online, 0);
		CHECK_INT(st.errors, 1);
		CHECK_INT(st.last_err, SB_EUNAUTHORIZED);
		for (int k = 0; k < 10; k++)
			CHECK_INT(sb_client_process(c, 20), SB_EUNAUTHORIZED);
		CHECK_INT(sb_client_fd(c), -1);
		sb_client_free(c);
	}
	/* One wrong proof only: the client without a secret sent none. */
	CHECK_INT(router_stats().auth_failures, 1);
	router_stop();
}

/* The client library authenticates, registers and makes a request through
 * a relay; the secret's bytes appear nowhere in what the relay carried,
 * while the handshake (CHALLENGE, AUTH, WELCOME) and the work did. */
static void test_secret_never_crosses_the_wire(void)
{
	struct sb_router_config cfg = secret_config();
	struct relay rl;
	struct states st = {0};
	char outcome[64] = "";
	router_start(&cfg);
	relay_start(&rl);
	struct sb_client *c = lib_client(rl.port, "capture-svc", "service", SVC_SECRET, &st);
	CHECK_INT(sb_client_register(c, "cap.echo", NULL, on_cap_echo, NULL), 0);
	CHECK_INT(lib_settle(c), 0);
	CHECK(sb_client_online(c));
	static const uint8_t payload[] = {0xa5, 'h', 'e', 'l', 'l', 'o'};
	CHECK_INT(sb_request_wait(
			  c, "cap.echo", payload, sizeof payload,
			  &(struct sb_opts){.size = sizeof(struct sb_opts), .timeout_ms = 5000},
			  outcome, sizeof outcome, NULL, NULL),
		  0);
	CHECK_STR(outcome, "echoed");
	sb_client_free(c);
	relay_stop(&rl);

	unsigned up = kinds_in(rl.up, rl.nup), down = kinds_in(rl.down, rl.ndown);
	CHECK(up & 1u << SB_HELLO && up & 1u << SB_AUTH && up & 1u << SB_REQUEST);
	CHECK(down & 1u << SB_CHALLENGE && down & 1u << SB_WELCOME && down & 1u << SB_REPLY);
	CHECK(memmem(rl.up, rl.nup, SVC_SECRET, strlen(SVC_SECRET)) == NULL);
	CHECK(memmem(rl.down, rl.ndown, SVC_SECRET, strlen(SVC_SECRET)) == NULL);
	/* Nor a recognisable part of it. */
	CHECK(memmem(rl.up, rl.nup, "horse", 5) == NULL);
	CHECK(memmem(rl.up, rl.nup, "capture-svc", 11) != NULL); /* the capture works */
	free(rl.up);
	free(rl.down);
	router_stop();
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	RUN(test_right_secret_is_welcomed);
	RUN(test_wrong_secret_is_refused);
	RUN(test_replayed_auth_is_refused);
	RUN(test_role_without_secret_is_refused);
	RUN(test_handshake_order);
	RUN(test_repeated_failures_are_refused);
	RUN(test_client_library_gives_up_on_a_wrong_secret);
	RUN(test_secret_never_crosses_the_wire);
	return TEST_EXIT();
}
