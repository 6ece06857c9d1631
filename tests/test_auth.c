/* Shared-secret authentication, name rules and the per-peer limits, end to
 * end: an in-process router, peers on real sockets speaking raw frames
 * (tests/peer.h), and the client library. Proofs are computed here with
 * OpenSSL directly, not with the router's code. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <msgpack.h>

#include <switchboard/client.h>
#include <switchboard/router.h>

#include "router/pattern.h"
#include "peer.h"

#define SVC_SECRET "correct horse battery staple"
#define CLI_SECRET "client-secret-7f3a"

static struct sb_router *R;
static uint16_t PORT;

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

/* Any free port, 2 shards, quiet (SB_TEST_LOG=1: every connection logged). */
static struct sb_router_config base_config(void)
{
	struct sb_router_config cfg;
	sb_router_config_init(&cfg);
	cfg.port = 0;
	cfg.shards = 2;
	cfg.log_level = getenv("SB_TEST_LOG") ? 3 : 0;
	return cfg;
}

/* A secret for each role; failures are not held against 127.0.0.1 unless
 * a test asks for it, since every test dials from there. */
static struct sb_router_config secret_config(void)
{
	struct sb_router_config cfg = base_config();
	cfg.secret_service = SVC_SECRET;
	cfg.secret_client = CLI_SECRET;
	cfg.auth_fail_max = 0;
	return cfg;
}

static void start_with(const struct sb_router_config *cfg)
{
	int err = 0;
	R = sb_router_new(cfg, &err);
	CHECK(R != NULL);
	if (R == NULL) {
		fprintf(stderr, "sb_router_new: %s\n", sb_strerror(err));
		exit(1);
	}
	CHECK_INT(sb_router_start(R), 0);
	PORT = sb_router_port(R);
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

/* A raw peer dialling from a given loopback address: limits and failures
 * are per address, and 127.0.0.0/8 gives us as many as we like. */
static struct peer *dial_from(const char *src)
{
	struct peer *p = calloc(1, sizeof *p);
	struct sockaddr_in from = {.sin_family = AF_INET};
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(PORT)};
	inet_pton(AF_INET, src, &from.sin_addr);
	inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
	p->fd = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(bind(p->fd, (struct sockaddr *)&from, sizeof from) == 0);
	CHECK(connect(p->fd, (struct sockaddr *)&to, sizeof to) == 0);
	p->sp = sb_splitter_new(0);
	return p;
}

static void say_hello(struct peer *p, const char *name, const char *role)
{
	struct sb_msg h = {.kind = SB_HELLO, .version = SB_PROTO_VERSION, .role = v_str(role)};
	if (name != NULL)
		h.peer = v_str(name);
	peer_send(p, &h);
}

/* HMAC-SHA256(secret, router_nonce || client_nonce || name), as
 * docs/protocol.md specifies it, computed without the library. */
static void proof_of(const char *secret, const uint8_t rn[32], const uint8_t *cn, size_t cn_len,
		     const char *name, uint8_t out[32])
{
	uint8_t msg[32 + 64 + 64];
	size_t n = 0, name_len = name ? strlen(name) : 0;
	unsigned len = 32;
	memcpy(msg, rn, 32);
	n += 32;
	memcpy(msg + n, cn, cn_len);
	n += cn_len;
	if (name_len > 0)
		memcpy(msg + n, name, name_len);
	n += name_len;
	CHECK(HMAC(EVP_sha256(), secret, (int)strlen(secret), msg, n, out, &len) != NULL);
}

/* Says HELLO and reads the CHALLENGE; the router's nonce goes to rn. */
static void challenged(struct peer *p, const char *name, const char *role, uint8_t rn[32])
{
	say_hello(p, name, role);
	struct sb_msg *ch = peer_expect(p, SB_CHALLENGE);
	CHECK(v_is(ch->mech, "hmac-sha256"));
	CHECK_INT(ch->nonce.len, 32);
	memset(rn, 0, 32);
	if (ch->nonce.len == 32)
		memcpy(rn, ch->nonce.ptr, 32);
}

static struct peer *hello_challenged(const char *name, const char *role, uint8_t rn[32])
{
	struct peer *p = peer_dial(PORT);
	challenged(p, name, role, rn);
	return p;
}

/* Answers a challenge with @p secret; the AUTH's bytes go to wire (for a
 * replay) when it is not NULL. */
static size_t send_auth(struct peer *p, const uint8_t rn[32], const char *secret, const char *name,
			uint8_t *wire, size_t cap)
{
	static const uint8_t cn[16] = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5, 6};
	uint8_t proof[32], buf[256];
	proof_of(secret, rn, cn, sizeof cn, name, proof);
	struct sb_msg a = {.kind = SB_AUTH};
	a.nonce = (struct sb_view){cn, sizeof cn};
	a.proof = (struct sb_view){proof, sizeof proof};
	long n = sb_encode(&a, buf, sizeof buf);
	CHECK(n > 0);
	if (n <= 0)
		return 0;
	peer_raw(p, buf, (size_t)n);
	if (wire != NULL && (size_t)n <= cap)
		memcpy(wire, buf, (size_t)n);
	return (size_t)n;
}

/* A peer through the whole handshake with the given secret. */
static struct peer *auth_hello(const char *name, const char *role, const char *secret)
{
	uint8_t rn[32];
	struct peer *p = hello_challenged(name, role, rn);
	send_auth(p, rn, secret, name, NULL, 0);
	struct sb_msg *w = peer_expect(p, SB_WELCOME);
	p->peer_id = w->peer_id;
	if (name != NULL)
		CHECK(v_is(w->peer, name));
	return p;
}

static void check_text(struct sb_view got, const char *want, int prefix)
{
	int ok = got.ptr != NULL &&
		 (prefix ? got.len >= strlen(want) && memcmp(got.ptr, want, strlen(want)) == 0
			 : v_is(got, want));
	if (!ok)
		fprintf(stderr, "  text \"%.*s\"\n  want \"%s\"%s\n", (int)got.len,
			(const char *)got.ptr, want, prefix ? "..." : "");
	CHECK(ok);
}

/* The next frame is a fatal ERROR @p err saying @p text (a prefix of it
 * with @p prefix), and then the router closes. */
static void expect_fatal(struct peer *p, int err, const char *text, int prefix)
{
	struct sb_msg *e = peer_expect(p, SB_ERROR);
	CHECK_INT(e->code, -err);
	CHECK(e->flags & SB_F_FATAL);
	CHECK_INT(e->id, 0);
	check_text(e->text, text, prefix);
	CHECK_INT(peer_recv_within(p, 5000), 0);
}

/* A non-fatal ERROR for request or registration @p id. */
static void expect_error(struct peer *p, uint64_t id, int err, const char *text)
{
	struct sb_msg *e = peer_expect(p, SB_ERROR);
	CHECK_INT(e->id, id);
	CHECK_INT(e->code, -err);
	CHECK(!(e->flags & SB_F_FATAL));
	check_text(e->text, text, 0);
}

/* One counter of $sb.stats, as any peer reads it. */
static uint64_t stat_of(struct peer *p, const char *key)
{
	static uint64_t id = 90000;
	uint64_t v = UINT64_MAX;
	msgpack_unpacked u;

	peer_request(p, "$sb.stats", ++id, 0, NULL, 0);
	struct sb_msg *r = peer_expect(p, SB_REPLY);
	CHECK_INT(r->id, id);
	msgpack_unpacked_init(&u);
	if (r->kind == SB_REPLY &&
	    msgpack_unpack_next(&u, (const char *)r->payload.ptr, r->payload.len, NULL) ==
		    MSGPACK_UNPACK_SUCCESS &&
	    u.data.type == MSGPACK_OBJECT_MAP)
		for (uint32_t i = 0; i < u.data.via.map.size; i++) {
			const msgpack_object_kv *kv = &u.data.via.map.ptr[i];
			if (kv->key.type == MSGPACK_OBJECT_STR &&
			    kv->key.via.str.size == strlen(key) &&
			    memcmp(kv->key.via.str.ptr, key, strlen(key)) == 0 &&
			    kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
				v = kv->val.via.u64;
		}
	msgpack_unpacked_destroy(&u);
	if (v == UINT64_MAX)
		fprintf(stderr, "  $sb.stats has no counter %s\n", key);
	CHECK(v != UINT64_MAX);
	return v;
}

static void ping_pong(struct peer *p, uint64_t id)
{
	struct sb_msg ping = {.kind = SB_PING, .id = id};
	peer_send(p, &ping);
	CHECK_INT(peer_expect(p, SB_PONG)->id, id);
}

/* ---- shared-secret authentication ---------------------------------------- */

/* Each role proves its own secret, named or not (an unnamed peer's proof
 * covers the empty name), and then works as usual. */
static void test_right_secret_is_welcomed(void)
{
	struct sb_router_config cfg = secret_config();
	start_with(&cfg);
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
	stop();
}

/* A wrong secret, the other role's secret, or a proof made for another name
 * is refused with "unauthorized", and the connection closed. */
static void test_wrong_secret_is_refused(void)
{
	struct sb_router_config cfg = secret_config();
	uint8_t rn[32];
	start_with(&cfg);
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
	stop();
}

/* An AUTH captured from a successful handshake is worthless later: every
 * connection gets a fresh nonce, so the old proof no longer matches. */
static void test_replayed_auth_is_refused(void)
{
	struct sb_router_config cfg = secret_config();
	uint8_t rn1[32], rn2[32], wire[256];
	start_with(&cfg);
	struct peer *first = hello_challenged("replay", "service", rn1);
	size_t n = send_auth(first, rn1, SVC_SECRET, "replay", wire, sizeof wire);
	peer_expect(first, SB_WELCOME);
	peer_close(first);

	struct peer *again = hello_challenged("replay", "service", rn2);
	CHECK(memcmp(rn1, rn2, sizeof rn1) != 0);
	peer_raw(again, wire, n);
	expect_fatal(again, SB_EUNAUTHORIZED, "wrong secret for role service", 0);
	peer_close(again);
	stop();
}

/* With a secret for services only, clients are refused rather than let in
 * unchecked: a role without a secret is closed, not open. */
static void test_role_without_secret_is_refused(void)
{
	struct sb_router_config cfg = base_config();
	cfg.secret_service = SVC_SECRET;
	start_with(&cfg);
	struct peer *cli = peer_dial(PORT);
	say_hello(cli, "cli", "client");
	expect_fatal(cli, SB_EUNAUTHORIZED, "role client is not accepted: it has no secret", 0);
	peer_close(cli);
	struct peer *svc = auth_hello("svc", "service", SVC_SECRET);
	CHECK_INT(stat_of(svc, "auth_failures"), 1);
	peer_close(svc);
	stop();
}

/* AUTH must answer CHALLENGE, come nowhere else, and be well-formed; the
 * HELLO deadline covers the whole handshake. */
static void test_handshake_order(void)
{
	struct sb_router_config cfg = secret_config();
	uint8_t rn[32];
	start_with(&cfg);

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
	stop();
	cfg.hello_timeout_ms = 1000;
	start_with(&cfg);
	p = hello_challenged("o5", "client", rn);
	expect_fatal(p, SB_ETIMEOUT, "no AUTH within 1000 ms", 0);
	peer_close(p);
	stop();

	/* Without secrets there is no CHALLENGE to answer. */
	cfg = base_config();
	start_with(&cfg);
	p = peer_hello(PORT, "o6", "client");
	send_auth(p, rn, CLI_SECRET, NULL, NULL, 0);
	expect_fatal(p, SB_EBADFRAME, "AUTH without a CHALLENGE", 0);
	peer_close(p);
	stop();
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
	start_with(&cfg);
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

	p = dial_from("127.0.0.2");
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
	stop();
}

/* ---- the client library --------------------------------------------------- */

struct states {
	int online, offline, errors, last_err;
};

static void on_state(struct sb_client *c, enum sb_client_state s, int err, void *ud)
{
	struct states *st = ud;
	(void)c;
	st->online += s == SB_CLIENT_ONLINE || s == SB_CLIENT_RECONNECTED;
	st->offline += s == SB_CLIENT_OFFLINE;
	if (s == SB_CLIENT_ERROR) {
		st->errors++;
		st->last_err = err;
	}
}

static struct sb_client *lib_client(uint16_t port, const char *name, const char *role,
				    const char *secret, struct states *st)
{
	struct sb_client_config cfg;
	int err = 0;
	sb_client_config_init(&cfg);
	cfg.port = port;
	cfg.name = name;
	cfg.role = role;
	cfg.secret = secret;
	cfg.reconnect_min_ms = 20;
	cfg.reconnect_max_ms = 50;
	cfg.on_state = on_state;
	cfg.ud = st;
	struct sb_client *c = sb_client_new(&cfg, &err);
	CHECK(c != NULL);
	return c;
}

/* Processes until online or refused for good; bounded. */
static int lib_settle(struct sb_client *c)
{
	int rc = 0;
	for (uint64_t until = now_ms() + 5000; rc == 0 && !sb_client_online(c) && now_ms() < until;)
		rc = sb_client_process(c, 20);
	return rc;
}

/* A wrong secret, or none for a router that asks, surfaces once through
 * on_state as SB_EUNAUTHORIZED, and the client gives up for good: no
 * reconnect hammers the router. */
static void test_client_library_gives_up_on_a_wrong_secret(void)
{
	struct sb_router_config cfg = secret_config();
	start_with(&cfg);
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
	CHECK_INT(stats().auth_failures, 1);
	stop();
}

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

static void on_cap_echo(struct sb_client *c, struct sb_call *call, void *ud)
{
	size_t len;
	const void *p = sb_call_payload(call, &len);
	(void)c;
	(void)ud;
	CHECK_INT(sb_reply(call, "echoed", p, len), 0);
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
	start_with(&cfg);
	relay_start(&rl);
	struct sb_client *c = lib_client(rl.port, "capture-svc", "service", SVC_SECRET, &st);
	CHECK_INT(sb_client_register(c, "cap.echo", 0, on_cap_echo, NULL), 0);
	CHECK_INT(lib_settle(c), 0);
	CHECK(sb_client_online(c));
	static const uint8_t payload[] = {0xa5, 'h', 'e', 'l', 'l', 'o'};
	CHECK_INT(sb_request_wait(c, "cap.echo", payload, sizeof payload, 5000, outcome,
				  sizeof outcome, NULL, NULL),
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
	stop();
}

/* ---- name rules ----------------------------------------------------------- */

/* Clients never register; services register only names their rule allows
 * (the catch-all only with "*"); each role calls only names its rule
 * allows, the router's own names included. A refused request is answered
 * "forbidden" naming the rule; a refused send is dropped and counted. */
static void test_name_rules(void)
{
	struct sb_router_config cfg = base_config();
	cfg.allow_register_service = "user.*, billing.log";
	cfg.allow_call_client = "user.*,$sb.stats";
	start_with(&cfg);
	struct peer *svc = peer_hello(PORT, "rules-svc", "service");
	struct peer *cli = peer_hello(PORT, "rules-cli", "client");

	struct sb_msg reg = {.kind = SB_REGISTER, .id = 1, .name = v_str("user.x")};
	peer_send(cli, &reg);
	expect_error(cli, 1, SB_EFORBIDDEN, "only services may register handlers");
	peer_register(svc, "user.create", 2);
	peer_register(svc, "billing.log", 3);
	reg.id = 4;
	reg.name = v_str("billing.other");
	peer_send(svc, &reg);
	expect_error(svc, 4, SB_EFORBIDDEN,
		     "\"billing.other\" is not allowed by allow_register_service = \"user.*, "
		     "billing.log\"");
	reg.id = 5;
	reg.name = (struct sb_view){NULL, 0};
	peer_send(svc, &reg);
	expect_error(svc, 5, SB_EFORBIDDEN,
		     "the catch-all is not allowed by allow_register_service = \"user.*, "
		     "billing.log\"");

	peer_request(cli, "billing.log", 6, 0, NULL, 0);
	expect_error(cli, 6, SB_EFORBIDDEN,
		     "\"billing.log\" is not allowed by allow_call_client = \"user.*,$sb.stats\"");
	peer_request(cli, "$sb.peers", 7, 0, NULL, 0);
	expect_error(cli, 7, SB_EFORBIDDEN,
		     "\"$sb.peers\" is not allowed by allow_call_client = \"user.*,$sb.stats\"");
	struct sb_msg send = {.kind = SB_SEND, .name = v_str("billing.log")};
	peer_send(cli, &send);
	send.name = v_str("user.create");
	peer_send(cli, &send);
	/* In order from one connection: had the first not been dropped, it
	 * would arrive first. */
	CHECK(v_is(peer_expect(svc, SB_SEND)->name, "user.create"));
	peer_request(cli, "user.create", 8, 0, NULL, 0);
	struct sb_msg *q = peer_expect(svc, SB_REQUEST);
	CHECK(v_is(q->name, "user.create"));
	peer_reply(svc, q->id, "created", 0, NULL, 0);
	CHECK_INT(peer_expect(cli, SB_REPLY)->id, 8);

	/* Services have no call rule here: anything goes. */
	peer_request(svc, "billing.log", 9, 0, NULL, 0);
	q = peer_expect(svc, SB_REQUEST);
	peer_reply(svc, q->id, "logged", 0, NULL, 0);
	CHECK_INT(peer_expect(svc, SB_REPLY)->id, 9);
	/* The client's REGISTER too: every forbidden refusal counts. */
	CHECK_INT(stat_of(cli, "forbidden"), 6);
	peer_close(svc);
	peer_close(cli);
	stop();
}

/* ---- limits --------------------------------------------------------------- */

/* Past max_conns_per_addr, a connection from that address is told why and
 * closed; the others, and other addresses, carry on. */
static void test_connections_per_address(void)
{
	struct sb_router_config cfg = base_config();
	cfg.max_conns_per_addr = 2;
	start_with(&cfg);
	struct peer *a = peer_hello(PORT, "pa-1", "client");
	struct peer *b = peer_hello(PORT, "pa-2", "client");
	struct peer *extra = peer_dial(PORT);
	expect_fatal(extra, SB_EOVERLOADED, "too many connections from 127.0.0.1 (limit 2)", 0);
	peer_close(extra);
	struct peer *other = dial_from("127.0.0.3");
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
	stop();
}

/* Past max_inflight_per_conn, a request is answered "overloaded" and the
 * connection stays; a finished request frees a place, and another
 * connection has places of its own. */
static void test_requests_in_flight_per_connection(void)
{
	struct sb_router_config cfg = base_config();
	cfg.max_inflight_per_conn = 3;
	start_with(&cfg);
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
	expect_error(cli, 4, SB_EOVERLOADED,
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
	stop();
}

/* Past max_registrations, a REGISTER of a new name is answered
 * "overloaded"; registering a name again takes no place, and an
 * UNREGISTER gives one back. */
static void test_registrations_per_connection(void)
{
	struct sb_router_config cfg = base_config();
	cfg.max_registrations = 2;
	start_with(&cfg);
	struct peer *svc = peer_hello(PORT, "rg-svc", "service");
	peer_register(svc, "a", 1);
	peer_register(svc, "b", 2);
	struct sb_msg reg = {.kind = SB_REGISTER, .id = 3, .name = v_str("c")};
	peer_send(svc, &reg);
	expect_error(svc, 3, SB_EOVERLOADED,
		     "too many names registered on this connection (limit 2)");
	peer_register(svc, "a", 4);
	struct sb_msg unreg = {.kind = SB_UNREGISTER, .id = 5, .name = v_str("b")};
	peer_send(svc, &unreg);
	CHECK_INT(peer_expect(svc, SB_ACK)->id, 5);
	peer_register(svc, "c", 6);
	CHECK_INT(stat_of(svc, "register_refused"), 1);
	peer_close(svc);
	stop();
}

/* A silent connection is sent a PING after idle_ms, and closed with
 * "timeout" when nothing comes back; one that answers stays, and so does a
 * client library peer that does nothing at all. */
static void test_idle_connections_are_pinged(void)
{
	struct sb_router_config cfg = base_config();
	struct states st = {0};
	char outcome[64];
	cfg.idle_ms = 150;
	cfg.pong_timeout_ms = 1000; /* room for a loaded machine to answer */
	start_with(&cfg);

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
	uint64_t pings = stats().idle_pings;
	for (uint64_t until = now_ms() + 10000; stats().idle_pings < pings + 3 && now_ms() < until;)
		CHECK_INT(sb_client_process(c, 20), 0);
	CHECK(stats().idle_pings >= pings + 3);
	CHECK(sb_client_online(c));
	CHECK_INT(st.offline, 0);
	CHECK_INT(
		sb_request_wait(c, "$sb.stats", NULL, 0, 5000, outcome, sizeof outcome, NULL, NULL),
		0);
	CHECK_INT(stats().idle_timeouts, 1);
	sb_client_free(c);
	stop();
}

/* ---- reload and configuration --------------------------------------------- */

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	CHECK(f != NULL);
	if (f != NULL) {
		fputs(text, f);
		fclose(f);
	}
}

/* sb_router_reload swaps secrets and rules under running connections: a
 * handshake challenged before keeps its secret, new ones need the new; a
 * connection's calls are judged by the new rule at once; a bad config
 * changes nothing; secret files are read again. */
static void test_reload(void)
{
	struct sb_router_config cfg = secret_config();
	char path[64];
	uint8_t rn[32];
	snprintf(path, sizeof path, "/tmp/sb-test-auth-%d", (int)getpid());
	cfg.secret_service = "old-secret";
	cfg.allow_call_client = "a.*";
	start_with(&cfg);
	struct peer *pending = hello_challenged("pending", "service", rn);
	struct peer *cli = auth_hello("rl-cli", "client", CLI_SECRET);
	peer_request(cli, "b.x", 1, 0, NULL, 0);
	expect_error(cli, 1, SB_EFORBIDDEN,
		     "\"b.x\" is not allowed by allow_call_client = \"a.*\"");

	struct sb_router_config next = cfg;
	next.secret_service = "new-secret";
	next.allow_call_client = "b.*";
	CHECK_INT(sb_router_reload(R, &next), 0);
	send_auth(pending, rn, "old-secret", "pending", NULL, 0);
	peer_expect(pending, SB_WELCOME);
	struct peer *p = hello_challenged("late", "service", rn);
	send_auth(p, rn, "old-secret", "late", NULL, 0);
	expect_fatal(p, SB_EUNAUTHORIZED, "wrong secret for role service", 0);
	peer_close(p);
	struct peer *fresh = auth_hello("fresh", "service", "new-secret");
	peer_request(cli, "b.x", 2, 0, NULL, 0);
	expect_error(cli, 2, SB_ENOHANDLER, "no handler for this name");
	peer_request(cli, "a.x", 3, 0, NULL, 0);
	expect_error(cli, 3, SB_EFORBIDDEN,
		     "\"a.x\" is not allowed by allow_call_client = \"b.*\"");

	struct sb_router_config bad = next;
	bad.allow_call_client = "b*x";
	CHECK_INT(sb_router_reload(R, &bad), SB_EINVAL);
	peer_request(cli, "b.y", 4, 0, NULL, 0);
	expect_error(cli, 4, SB_ENOHANDLER, "no handler for this name");

	struct sb_router_config from_file = next;
	from_file.secret_service = NULL;
	from_file.secret_service_file = path;
	write_file(path, "file-secret\n");
	CHECK_INT(sb_router_reload(R, &from_file), 0);
	peer_close(auth_hello("f1", "service", "file-secret"));
	write_file(path, "rotated");
	CHECK_INT(sb_router_reload(R, &from_file), 0);
	peer_close(auth_hello("f2", "service", "rotated"));
	p = hello_challenged("f3", "service", rn);
	send_auth(p, rn, "file-secret", "f3", NULL, 0);
	expect_fatal(p, SB_EUNAUTHORIZED, "wrong secret for role service", 0);
	peer_close(p);
	unlink(path);
	CHECK_INT(sb_router_reload(R, &from_file), SB_ESYS);
	CHECK_INT(errno, ENOENT);
	peer_close(auth_hello("f4", "service", "rotated"));

	peer_close(pending);
	peer_close(fresh);
	peer_close(cli);
	stop();
}

/* Bad rules and secrets are refused at start, with the reason logged. */
static void test_config_is_checked(void)
{
	struct {
		const char *register_service, *call_client, *secret, *secret_file;
		uint32_t idle_ms, pong_ms;
		int err;
	} cases[] = {
		{NULL, "a*b", NULL, NULL, 0, 1, SB_EINVAL},
		{"user.*,,billing.*", NULL, NULL, NULL, 0, 1, SB_EINVAL},
		{"user .x", NULL, NULL, NULL, 0, 1, SB_EINVAL},
		{NULL, NULL, "", NULL, 0, 1, SB_EINVAL},
		{NULL, NULL, "s", "/dev/null", 0, 1, SB_EINVAL},
		{NULL, NULL, NULL, "/dev/null", 0, 1, SB_EINVAL}, /* empty */
		{NULL, NULL, NULL, "/nonexistent/secret", 0, 1, SB_ESYS},
		{NULL, NULL, NULL, NULL, 100, 0, SB_EINVAL},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct sb_router_config cfg = base_config();
		int err = 0;
		cfg.log_level = -1; /* these are meant to fail: keep the log quiet */
		cfg.allow_register_service = cases[i].register_service;
		cfg.allow_call_client = cases[i].call_client;
		cfg.secret_client = cases[i].secret;
		cfg.secret_client_file = cases[i].secret_file;
		cfg.idle_ms = cases[i].idle_ms;
		cfg.pong_timeout_ms = cases[i].pong_ms;
		struct sb_router *r = sb_router_new(&cfg, &err);
		CHECK(r == NULL);
		if (err != cases[i].err)
			fprintf(stderr, "  case %zu\n", i);
		CHECK_INT(err, cases[i].err);
		sb_router_free(r);
	}

	/* A secret file's trailing newline is not part of the secret; spaces
	 * around patterns are not part of them either. */
	char path[64];
	snprintf(path, sizeof path, "/tmp/sb-test-auth-cfg-%d", (int)getpid());
	write_file(path, "abc\r\n");
	struct sb_router_config cfg = base_config();
	cfg.secret_client_file = path;
	cfg.secret_service = SVC_SECRET;
	cfg.allow_call_client = " $sb.stats ,x.* ";
	start_with(&cfg);
	unlink(path); /* read once at start */
	struct peer *p = auth_hello("nl", "client", "abc");
	CHECK_INT(stat_of(p, "auth_failures"), 0);
	peer_close(p);
	stop();
}

/* The pattern matcher on its own: exact names, prefixes, "*", the
 * catch-all, and the edges of each. */
static void test_patterns(void)
{
	static const struct {
		const char *rule, *name; /* name "" is the catch-all */
		int allowed;
	} cases[] = {
		{"user.*", "user.create", 1},
		{"user.*", "user.", 1},
		{"user.*", "user", 0},
		{"user.*", "users.x", 0},
		{"user.*", "", 0},
		{"billing.log", "billing.log", 1},
		{"billing.log", "billing.lo", 0},
		{"billing.log", "billing.logs", 0},
		{"a.*,b.x,c*", "c", 1},
		{"a.*,b.x,c*", "b.x", 1},
		{"a.*,b.x,c*", "b.y", 0},
		{"x.*,*", "anything", 1},
		{"x.*,*", "", 1},
		{"caf\xc3\xa9.*", "caf\xc3\xa9.menu", 1},
		{"caf\xc3\xa9.*", "cafe.menu", 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct sb__patterns p = {0};
		char why[256];
		CHECK_INT(sb__patterns_compile(&p, "rule", cases[i].rule, why, sizeof why), 0);
		struct sb_view name = v_str(cases[i].name);
		if (sb__patterns_allow(&p, name) != cases[i].allowed)
			fprintf(stderr, "  %s against %s\n", cases[i].name, cases[i].rule);
		CHECK_INT(sb__patterns_allow(&p, name), cases[i].allowed);
		sb__patterns_free(&p);
	}
	struct sb__patterns none = {0};
	char why[256];
	CHECK_INT(sb__patterns_compile(&none, "rule", NULL, why, sizeof why), 0);
	CHECK(sb__patterns_allow(&none, v_str("")));
	sb__patterns_free(&none);
	const char *bad[] = {"", ",", "a,", "a**", "*a", "a b", "a\tb", "a.*,b*c"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct sb__patterns p = {0};
		int rc = sb__patterns_compile(&p, "rule", bad[i], why, sizeof why);
		if (rc != SB_EINVAL)
			fprintf(stderr, "  \"%s\" was accepted\n", bad[i]);
		CHECK_INT(rc, SB_EINVAL);
		CHECK(rc != SB_EINVAL || strncmp(why, "rule: ", 6) == 0);
		sb__patterns_free(&p);
	}
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	RUN(test_patterns);
	RUN(test_right_secret_is_welcomed);
	RUN(test_wrong_secret_is_refused);
	RUN(test_replayed_auth_is_refused);
	RUN(test_role_without_secret_is_refused);
	RUN(test_handshake_order);
	RUN(test_repeated_failures_are_refused);
	RUN(test_client_library_gives_up_on_a_wrong_secret);
	RUN(test_secret_never_crosses_the_wire);
	RUN(test_name_rules);
	RUN(test_connections_per_address);
	RUN(test_requests_in_flight_per_connection);
	RUN(test_registrations_per_connection);
	RUN(test_idle_connections_are_pinged);
	RUN(test_reload);
	RUN(test_config_is_checked);
	return TEST_EXIT();
}
