/* The secret handshake from the peer's side, and its refusals. */
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "support/auth.h"
#include "support/clock.h"
#include "support/router.h"
#include "support/testlib.h"

struct sb_router_config secret_config(void)
{
	struct sb_router_config cfg = router_config();
	cfg.secret_service = SVC_SECRET;
	cfg.secret_client = CLI_SECRET;
	cfg.auth_fail_max = 0;
	return cfg;
}

void say_hello(struct peer *p, const char *name, const char *role)
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

void challenged(struct peer *p, const char *name, const char *role, uint8_t rn[32])
{
	say_hello(p, name, role);
	struct sb_msg *ch = peer_expect(p, SB_CHALLENGE);
	CHECK(v_is(ch->mech, "hmac-sha256"));
	CHECK_INT(ch->nonce.len, 32);
	memset(rn, 0, 32);
	if (ch->nonce.len == 32)
		memcpy(rn, ch->nonce.ptr, 32);
}

struct peer *hello_challenged(const char *name, const char *role, uint8_t rn[32])
{
	struct peer *p = peer_dial(PORT);
	challenged(p, name, role, rn);
	return p;
}

size_t send_auth(struct peer *p, const uint8_t rn[32], const char *secret, const char *name,
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

struct peer *auth_hello(const char *name, const char *role, const char *secret)
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

void expect_fatal(struct peer *p, int err, const char *text, int prefix)
{
	struct sb_msg *e = peer_expect(p, SB_ERROR);
	CHECK_INT(e->code, -err);
	CHECK(e->flags & SB_F_FATAL);
	CHECK_INT(e->id, 0);
	check_text(e->text, text, prefix);
	CHECK_INT(peer_recv_within(p, 5000), 0);
}

void expect_refusal(struct peer *p, uint64_t id, int err, const char *text)
{
	struct sb_msg *e = peer_expect(p, SB_ERROR);
	CHECK_INT(e->id, id);
	CHECK_INT(e->code, -err);
	CHECK(!(e->flags & SB_F_FATAL));
	check_text(e->text, text, 0);
}

static void on_states(struct sb_client *c, enum sb_client_state s, int err, void *ud)
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

struct sb_client *lib_client(uint16_t port, const char *name, const char *role, const char *secret,
			     struct states *st)
{
	struct sb_client_config cfg;
	int err = 0;
	sb_client_config_init(&cfg);
	cfg.port = port;
	cfg.name = name;
	cfg.role = strcmp(role, "service") == 0 ? SB_ROLE_SERVICE : SB_ROLE_CLIENT;
	cfg.secret = secret;
	cfg.reconnect_min_ms = 20;
	cfg.reconnect_max_ms = 50;
	cfg.on_state = on_states;
	cfg.ud = st;
	struct sb_client *c = sb_client_new(&cfg, &err);
	CHECK(c != NULL);
	return c;
}

int lib_settle(struct sb_client *c)
{
	int rc = 0;
	for (uint64_t until = now_ms() + 5000; rc == 0 && !sb_client_online(c) && now_ms() < until;)
		rc = sb_client_process(c, 20);
	return rc;
}
