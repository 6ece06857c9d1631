/* Bearer tokens (docs/gateway.md, "Tokens"; docs/protocol.md, "A bearer
 * token in HELLO"): tokens signed here with OpenSSL's HMAC (never by the
 * router's code) on HTTP calls, on the WebSocket upgrade and in the HELLO
 * of TCP and WebSocket peers and of the C client. A valid one is served as
 * its subject, which the handler reads from the identity event; expired,
 * wrongly signed, wrong audience, `alg: none` and missing ones are refused
 * (401, or a fatal ERROR on a connection) saying why; a cookie carries one
 * for browsers; the role it grants is the role a HELLO may take; a
 * reload swaps the key; and handlers read a token's claims, which no peer
 * can forge. */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include <switchboard/client.h>
#include <switchboard/proto.h>
#include <switchboard/router.h>

#include "support/admin.h"
#include "support/auth.h"
#include "support/clients.h"
#include "support/clock.h"
#include "support/peer.h"
#include "support/proc.h"
#include "support/pump.h"
#include "support/router.h"
#include "support/testlib.h"

static const char SECRET[] = "a-secret-of-at-least-32-bytes-for-hs256!";
static const char OTHER[] = "another-secret-of-32-bytes-or-more-for-hs256";
static char secret_path[64];

/* ---- tokens, made here --------------------------------------------------------- */

static size_t b64url(const uint8_t *in, size_t n, char *out)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t o = 0;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) |
			     (i + 2 < n ? in[i + 2] : 0);
		out[o++] = a[v >> 18 & 63];
		out[o++] = a[v >> 12 & 63];
		if (i + 1 < n)
			out[o++] = a[v >> 6 & 63];
		if (i + 2 < n)
			out[o++] = a[v & 63];
	}
	out[o] = '\0';
	return o;
}

/* header.claims.HMAC-SHA256(secret) (no signature when secret is NULL). */
static const char *token(const char *header, const char *claims, const char *secret)
{
	static char t[4096];
	size_t n = b64url((const uint8_t *)header, strlen(header), t);
	t[n++] = '.';
	n += b64url((const uint8_t *)claims, strlen(claims), t + n);
	uint8_t mac[32];
	unsigned len = sizeof mac;
	if (secret != NULL)
		HMAC(EVP_sha256(), secret, (int)strlen(secret), (const uint8_t *)t, n, mac, &len);
	t[n++] = '.';
	if (secret != NULL)
		n += b64url(mac, len, t + n);
	t[n] = '\0';
	return t;
}

static const char *HS = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

/* Claims for sub, valid for an hour, for the audience "edge". */
static const char *claims(const char *sub, const char *extra)
{
	static char c[512];
	snprintf(c, sizeof c, "{\"sub\":\"%s\",\"aud\":\"edge\",\"exp\":%lld%s}", sub,
		 (long long)time(NULL) + 3600, extra);
	return c;
}

static void write_secret(const char *s)
{
	FILE *f = fopen(secret_path, "w");
	CHECK(f != NULL);
	fprintf(f, "%s\n", s);
	fclose(f);
}

static struct sb_router_config token_config(void)
{
	struct sb_router_config cfg = router_config();
	cfg.ws_port = 0;
	cfg.jwt_secret_file = secret_path;
	cfg.jwt_audience = "edge";
	return cfg;
}

/* ---- raw HTTP ------------------------------------------------------------------- */

static int dial(uint16_t port)
{
	struct peer *p = peer_dial(port);
	int fd = dup(p->fd);
	peer_close(p);
	return fd;
}

/* Reads within 10 s until @p stop appears or the connection ends. */
static size_t read_until(int fd, char *buf, size_t cap, const char *stop)
{
	size_t have = 0;
	uint64_t deadline = now_ms() + 10000;
	buf[0] = '\0';
	while (have < cap - 1 && now_ms() < deadline && (stop == NULL || !strstr(buf, stop))) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 200) <= 0)
			continue;
		ssize_t got = read(fd, buf + have, cap - 1 - have);
		if (got <= 0)
			break;
		have += (size_t)got;
		buf[have] = '\0';
	}
	return have;
}

/* POST /v1/call/NAME with @p field (a header line, or ""): the status. */
static int call(const char *name, const char *field, char *out, size_t cap)
{
	char req[8192];
	int fd = dial(sb_router_ws_port(R));
	snprintf(req, sizeof req,
		 "POST /v1/call/%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s"
		 "Content-Length: 0\r\n\r\n",
		 name, field);
	CHECK(write(fd, req, strlen(req)) == (ssize_t)strlen(req));
	read_until(fd, out, cap, NULL);
	close(fd);
	int status = 0;
	sscanf(out, "HTTP/1.1 %d", &status);
	return status;
}

static const char *bearer(const char *t)
{
	static char f[4200];
	snprintf(f, sizeof f, "Authorization: Bearer %s\r\n", t);
	return f;
}

/* ---- stories -------------------------------------------------------------------- */

static void test_a_call_with_a_valid_token_is_served_as_its_subject(void)
{
	write_secret(SECRET);
	struct sb_router_config cfg = token_config();
	router_start(&cfg);
	struct peer *svc = peer_hello(PORT, "svc", "service");
	svc->see_identity = 1;
	peer_register(svc, "whoami", 1);
	char out[4096];

	int fd = dial(sb_router_ws_port(R));
	char req[8192];
	snprintf(req, sizeof req,
		 "POST /v1/call/whoami HTTP/1.1\r\nHost: x\r\n%sContent-Length: 0\r\n\r\n",
		 bearer(token(HS, claims("ada@example.com", ""), SECRET)));
	CHECK(write(fd, req, strlen(req)) == (ssize_t)strlen(req));
	struct sb_msg *m = peer_expect(svc, SB_PRESENCE);
	/* The identity event: its payload holds the verified subject. */
	CHECK(m->payload.len > 0 &&
	      memmem(m->payload.ptr, m->payload.len, "ada@example.com", 15) != NULL);
	m = peer_expect(svc, SB_REQUEST);
	peer_reply(svc, m->id, "you", 0,
		   "\xa3"
		   "ada",
		   4);
	read_until(fd, out, sizeof out, "}");
	CHECK(strncmp(out, "HTTP/1.1 200 ", 13) == 0);
	CHECK(strstr(out, "{\"outcome\":\"you\",\"data\":\"ada\"}") != NULL);
	/* The next call on the same connection: the same subject, or 401. */
	snprintf(req, sizeof req,
		 "POST /v1/call/whoami HTTP/1.1\r\nHost: x\r\n%sContent-Length: 0\r\n\r\n",
		 bearer(token(HS, claims("eve@example.com", ""), SECRET)));
	CHECK(write(fd, req, strlen(req)) == (ssize_t)strlen(req));
	read_until(fd, out, sizeof out, "}");
	CHECK(strncmp(out, "HTTP/1.1 401 ", 13) == 0);
	CHECK(strstr(out, "not this connection's") != NULL);
	close(fd);
	peer_close(svc);
	router_stop();
}

static void test_tokens_that_do_not_pass_are_answered_401_with_why(void)
{
	write_secret(SECRET);
	struct sb_router_config cfg = token_config();
	router_start(&cfg);
	char out[4096], c[512];

	CHECK_INT(call("x", "", out, sizeof out), 401);
	CHECK(strstr(out,
		     "\"code\":\"SB_EUNAUTHORIZED\",\"message\":\"a bearer token is required") !=
	      NULL);
	snprintf(c, sizeof c, "{\"sub\":\"ada\",\"aud\":\"edge\",\"exp\":%lld}",
		 (long long)time(NULL) - 3600);
	CHECK_INT(call("x", bearer(token(HS, c, SECRET)), out, sizeof out), 401);
	CHECK(strstr(out, "expired") != NULL);
	CHECK_INT(call("x", bearer(token(HS, claims("ada", ""), OTHER)), out, sizeof out), 401);
	CHECK(strstr(out, "bad signature") != NULL);
	snprintf(c, sizeof c, "{\"sub\":\"ada\",\"aud\":\"other\",\"exp\":%lld}",
		 (long long)time(NULL) + 3600);
	CHECK_INT(call("x", bearer(token(HS, c, SECRET)), out, sizeof out), 401);
	CHECK(strstr(out, "wrong audience") != NULL);
	CHECK_INT(call("x", bearer(token("{\"alg\":\"none\"}", claims("ada", ""), NULL)), out,
		       sizeof out),
		  401);
	CHECK(strstr(out, "alg none is refused") != NULL);
	/* A token's call rule narrows what it may call: 403 outside it. */
	const char *narrow = token(HS, claims("ada", ",\"sb_allow_call\":\"a.*\""), SECRET);
	char nb[4200];
	snprintf(nb, sizeof nb, "%s", bearer(narrow));
	CHECK_INT(call("x", nb, out, sizeof out), 403);
	CHECK(strstr(out, "\"code\":\"SB_EFORBIDDEN\"") != NULL);
	CHECK(strstr(out, "sb_allow_call") != NULL);
	CHECK_INT(call("a.b", nb, out, sizeof out), 404); /* allowed: nobody handles it */
	/* Patterns a configured rule would refuse make the token refused. */
	CHECK_INT(call("x", bearer(token(HS, claims("ada", ",\"sb_allow_call\":\"a*b\""), SECRET)),
		       out, sizeof out),
		  401);
	/* A good one gets as far as the call: nobody handles x. */
	CHECK_INT(call("x", bearer(token(HS, claims("ada", ""), SECRET)), out, sizeof out), 404);
	router_stop();
}

/* ---- the upgrade ------------------------------------------------------------------ */

static const char *UPGRADE = "GET /v1/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
			     "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
			     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

/* An upgrade with @p field: the connection, its answer's head in @p out. */
static int upgrade(const char *field, char *out, size_t cap)
{
	char req[8192];
	int fd = dial(sb_router_ws_port(R));
	snprintf(req, sizeof req, "%s%s\r\n", UPGRADE, field);
	CHECK(write(fd, req, strlen(req)) == (ssize_t)strlen(req));
	read_until(fd, out, cap, "\r\n\r\n");
	return fd;
}

/* A masked binary message holding @p m; then the first frame of the
 * router's first binary message, decoded into @p got (its bytes in buf). */
static void ws_exchange(int fd, const struct sb_msg *m, struct sb_msg *got, uint8_t *buf,
			size_t cap)
{
	uint8_t f[1024], w[1100];
	long n = sb_encode(m, f, sizeof f);
	size_t h = 2;
	CHECK(n > 0 && n < 65536);
	w[0] = 0x82;
	if (n < 126)
		w[1] = (uint8_t)(0x80 | n);
	else { /* a HELLO with a token: the 16-bit length */
		w[1] = 0x80 | 126;
		w[2] = (uint8_t)(n >> 8);
		w[3] = (uint8_t)n;
		h = 4;
	}
	memset(w + h, 0, 4); /* a zero key: the payload as it is */
	memcpy(w + h + 4, f, (size_t)n);
	CHECK(write(fd, w, (size_t)n + h + 4) == (ssize_t)((size_t)n + h + 4));
	/* Until the first message's first frame is in (its length prefix read). */
	size_t have = 0;
	uint64_t deadline = now_ms() + 10000;
	while (now_ms() < deadline) {
		if (have >= 8) {
			size_t hh = (buf[1] & 0x7f) == 126 ? 4 : 2;
			uint32_t b = (uint32_t)buf[hh] << 24 | (uint32_t)buf[hh + 1] << 16 |
				     (uint32_t)buf[hh + 2] << 8 | buf[hh + 3];
			if (have >= hh + SB_PREFIX_LEN + b)
				break;
		}
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 200) <= 0)
			continue;
		ssize_t r = read(fd, buf + have, cap - have);
		if (r <= 0)
			break;
		have += (size_t)r;
	}
	h = (buf[1] & 0x7f) == 126 ? 4 : 2;
	CHECK(have > h && buf[0] == 0x82);
	uint32_t body = (uint32_t)buf[h] << 24 | (uint32_t)buf[h + 1] << 16 |
			(uint32_t)buf[h + 2] << 8 | buf[h + 3];
	CHECK(sb_decode(buf + h, SB_PREFIX_LEN + body, 0, got, NULL) == 0);
}

static void test_the_upgrade_takes_a_token_from_a_cookie_and_its_role(void)
{
	write_secret(SECRET);
	struct sb_router_config cfg = token_config();
	router_start(&cfg);
	char out[4096], field[4200];
	uint8_t buf[4096];
	struct sb_msg got;

	/* No token at the upgrade: the HELLO must carry one, or it is refused. */
	int fd = upgrade("", out, sizeof out);
	CHECK(strncmp(out, "HTTP/1.1 101 ", 13) == 0);
	struct sb_msg bare = {.kind = SB_HELLO, .id = 1, .version = 1};
	bare.role = v_str("client");
	ws_exchange(fd, &bare, &got, buf, sizeof buf);
	CHECK(got.kind == SB_ERROR && (int)-got.code == SB_EUNAUTHORIZED);
	CHECK(v_is(got.text, "a bearer token is required (in the upgrade, or the HELLO's token)"));
	close(fd);

	/* A client token: HELLO as a client is welcomed, as a service refused. */
	snprintf(field, sizeof field, "Cookie: theme=dark; sb_token=%s\r\n",
		 token(HS, claims("browser-user", ""), SECRET));
	fd = upgrade(field, out, sizeof out);
	CHECK(strncmp(out, "HTTP/1.1 101 ", 13) == 0);
	struct sb_msg hello = {.kind = SB_HELLO, .id = 1, .version = 1};
	hello.role = v_str("service");
	ws_exchange(fd, &hello, &got, buf, sizeof buf);
	CHECK_INT(got.kind, SB_ERROR);
	CHECK((int)-got.code == SB_EFORBIDDEN);
	close(fd);
	fd = upgrade(field, out, sizeof out);
	hello.role = v_str("client");
	ws_exchange(fd, &hello, &got, buf, sizeof buf);
	CHECK_INT(got.kind, SB_WELCOME);
	close(fd);

	/* A service token with a name: that name, as a service, no secret. */
	snprintf(field, sizeof field, "Authorization: Bearer %s\r\n",
		 token(HS, claims("svc-7", ",\"sb_role\":\"service\",\"sb_name\":\"tunnel-*\""),
		       SECRET));
	fd = upgrade(field, out, sizeof out);
	hello.role = v_str("service");
	hello.peer = v_str("other");
	ws_exchange(fd, &hello, &got, buf, sizeof buf);
	CHECK_INT(got.kind, SB_ERROR);
	CHECK(got.text.len > 0 && memmem(got.text.ptr, got.text.len, "tunnel-*", 8) != NULL);
	close(fd);
	fd = upgrade(field, out, sizeof out);
	hello.peer = v_str("tunnel-1");
	ws_exchange(fd, &hello, &got, buf, sizeof buf);
	CHECK_INT(got.kind, SB_WELCOME);
	CHECK(v_is(got.peer, "tunnel-1"));
	close(fd);
	router_stop();
}

static void test_a_tokens_name_rules_narrow_what_a_websocket_peer_may_do(void)
{
	write_secret(SECRET);
	struct sb_router_config cfg = token_config();
	router_start(&cfg);
	char out[4096], field[4200];
	uint8_t buf[4096];
	struct sb_msg got;

	snprintf(field, sizeof field, "Authorization: Bearer %s\r\n",
		 token(HS,
		       claims("svc", ",\"sb_role\":\"service\",\"sb_allow_call\":[\"a.*\"],"
				     "\"sb_allow_register\":\"svc.*\""),
		       SECRET));
	int fd = upgrade(field, out, sizeof out);
	struct sb_msg m = {.kind = SB_HELLO, .id = 1, .version = 1};
	m.role = v_str("service");
	ws_exchange(fd, &m, &got, buf, sizeof buf);
	CHECK_INT(got.kind, SB_WELCOME);
	m = (struct sb_msg){.kind = SB_REGISTER, .id = 2, .name = v_str("other")};
	ws_exchange(fd, &m, &got, buf, sizeof buf);
	CHECK(got.kind == SB_ERROR && got.id == 2 && (int)-got.code == SB_EFORBIDDEN);
	m = (struct sb_msg){.kind = SB_REGISTER, .id = 3, .name = v_str("svc.x")};
	ws_exchange(fd, &m, &got, buf, sizeof buf);
	CHECK(got.kind == SB_ACK && got.id == 3);
	m = (struct sb_msg){.kind = SB_REQUEST, .id = 4, .name = v_str("b.c"), .timeout_ms = 1000};
	ws_exchange(fd, &m, &got, buf, sizeof buf);
	CHECK(got.kind == SB_ERROR && got.id == 4 && (int)-got.code == SB_EFORBIDDEN);
	CHECK(got.text.len > 0 && memmem(got.text.ptr, got.text.len, "sb_allow_call", 13) != NULL);
	/* A name it may call goes on to be routed: nobody handles a.x. */
	m = (struct sb_msg){.kind = SB_REQUEST, .id = 5, .name = v_str("a.x"), .timeout_ms = 1000};
	ws_exchange(fd, &m, &got, buf, sizeof buf);
	CHECK(got.kind == SB_ERROR && got.id == 5 && (int)-got.code == SB_ENOHANDLER);
	CHECK(router_stats().forbidden >= 2);
	close(fd);
	router_stop();
}

static size_t token_payload(const char *t, uint8_t *out);

/* Its token shown at the upgrade, or in its HELLO (@p in_hello). */
static void ws_token_expires(int in_hello)
{
	write_secret(SECRET);
	struct sb_router_config cfg = token_config();
	cfg.jwt_leeway_s = 0;
	router_start(&cfg);
	char out[4096], field[4200], c[256];
	uint8_t buf[4096];
	struct sb_msg got;

	snprintf(c, sizeof c, "{\"sub\":\"brief\",\"aud\":\"edge\",\"exp\":%lld}",
		 (long long)time(NULL) + 2);
	snprintf(field, sizeof field, "Authorization: Bearer %s\r\n", token(HS, c, SECRET));
	int fd = upgrade(in_hello ? "" : field, out, sizeof out);
	CHECK(strncmp(out, "HTTP/1.1 101 ", 13) == 0);
	struct sb_msg hello = {.kind = SB_HELLO, .id = 1, .version = 1};
	uint8_t pl[4200];
	hello.role = v_str("client");
	if (in_hello)
		hello.payload =
			(struct sb_view){pl, (uint32_t)token_payload(token(HS, c, SECRET), pl)};
	ws_exchange(fd, &hello, &got, buf, sizeof buf);
	CHECK_INT(got.kind, SB_WELCOME);
	/* Then, within a few seconds and unasked: the ERROR, and close 1008. */
	uint64_t t0 = now_ms();
	size_t have = 0;
	while (have < sizeof buf && now_ms() < t0 + 10000) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 200) <= 0)
			continue;
		ssize_t r = read(fd, buf + have, sizeof buf - have);
		if (r <= 0)
			break;
		have += (size_t)r;
	}
	CHECK(now_ms() - t0 < 9000);
	int saw_error = 0, close_code = 0;
	for (size_t at = 0; at + 2 <= have;) {
		size_t h = 2, len = buf[at + 1] & 0x7f;
		if (len == 126) {
			len = (size_t)buf[at + 2] << 8 | buf[at + 3];
			h = 4;
		}
		if (at + h + len > have)
			break;
		if ((buf[at] & 0x0f) == 0x2 && sb_decode(buf + at + h, len, 0, &got, NULL) == 0 &&
		    got.kind == SB_ERROR && (int)-got.code == SB_EUNAUTHORIZED)
			saw_error = 1;
		if ((buf[at] & 0x0f) == 0x8 && len >= 2)
			close_code = buf[at + h] << 8 | buf[at + h + 1];
		at += h + len;
	}
	CHECK(saw_error);
	CHECK_INT(close_code, 1008);
	close(fd);
	router_stop();
}

static void test_a_websocket_peer_is_closed_when_its_token_expires(void)
{
	ws_token_expires(0);
	ws_token_expires(1);
}

static void test_a_reload_rotates_the_key(void)
{
	write_secret(SECRET);
	struct sb_router_config cfg = token_config();
	router_start(&cfg);
	char out[4096];
	char old_t[4096], new_t[4096];
	snprintf(old_t, sizeof old_t, "%s", bearer(token(HS, claims("ada", ""), SECRET)));
	snprintf(new_t, sizeof new_t, "%s", bearer(token(HS, claims("ada", ""), OTHER)));

	CHECK_INT(call("x", old_t, out, sizeof out), 404);
	CHECK_INT(call("x", new_t, out, sizeof out), 401);
	write_secret(OTHER);
	CHECK_INT(sb_router_reload(R, &cfg), 0);
	CHECK_INT(call("x", old_t, out, sizeof out), 401);
	CHECK(strstr(out, "bad signature") != NULL);
	CHECK_INT(call("x", new_t, out, sizeof out), 404);
	/* A key that does not load is refused; the one in force stays. */
	write_secret("short");
	CHECK_INT(sb_router_reload(R, &cfg), SB_EINVAL);
	CHECK_INT(call("x", new_t, out, sizeof out), 404);
	router_stop();
	/* ...and refused at the start. */
	int err = 0;
	CHECK(sb_router_new(&cfg, &err) == NULL && err == SB_EINVAL);
}

/* ---- a token in HELLO (TCP, TLS and WebSocket alike) ---------------------------- */

/* HELLO's payload {"token": T}. */
static size_t token_payload(const char *t, uint8_t *out)
{
	size_t n = strlen(t), at = 0;
	out[at++] = 0x81;
	memcpy(out + at, "\xa5token", 6);
	at += 6;
	out[at++] = 0xda;
	out[at++] = (uint8_t)(n >> 8);
	out[at++] = (uint8_t)n;
	memcpy(out + at, t, n);
	return at + n;
}

static void hello_with_token(struct peer *p, const char *name, const char *role, const char *t)
{
	static uint8_t pl[8300];
	struct sb_msg m = {.kind = SB_HELLO, .version = SB_PROTO_VERSION, .role = v_str(role)};
	if (name != NULL)
		m.peer = v_str(name);
	m.payload = (struct sb_view){pl, (uint32_t)token_payload(t, pl)};
	peer_send(p, &m);
}

static void test_a_tcp_peer_with_a_token_in_its_hello_is_served_as_its_subject(void)
{
	write_secret(SECRET);
	struct sb_router_config cfg = token_config();
	/* With secrets too: a token replaces the CHALLENGE. */
	cfg.secret_service = SVC_SECRET;
	cfg.secret_client = CLI_SECRET;
	router_start(&cfg);
	struct peer *svc = auth_hello("svc", "service", SVC_SECRET);
	svc->see_identity = 1;
	peer_register(svc, "whoami", 1);

	struct peer *p = peer_dial(PORT);
	hello_with_token(
		p, "tcp-7", "service",
		token(HS,
		      claims("ada@example.com", ",\"sb_role\":\"service\",\"sb_name\":"
						"\"tcp-*\",\"sb_allow_register\":\"ada.*\""),
		      SECRET));
	struct sb_msg *w = peer_expect(p, SB_WELCOME);
	CHECK(v_is(w->peer, "tcp-7"));
	/* Its name rules hold on TCP as on the edge. */
	struct sb_msg reg = {.kind = SB_REGISTER, .id = 2, .name = v_str("other")};
	peer_send(p, &reg);
	expect_refusal(p, 2, SB_EFORBIDDEN,
		       "\"other\" is not allowed by sb_allow_register = \"ada.*\"");
	peer_register(p, "ada.x", 3);
	peer_request(p, "whoami", 4, 0, NULL, 0);
	struct sb_msg *m = peer_expect(svc, SB_PRESENCE);
	CHECK(m->payload.len > 0 &&
	      memmem(m->payload.ptr, m->payload.len, "ada@example.com", 15) != NULL);
	m = peer_expect(svc, SB_REQUEST);
	peer_reply(svc, m->id, "you", 0, NULL, 0);
	CHECK(v_is(peer_expect(p, SB_REPLY)->outcome, "you"));
	/* $sb.peers shows the identity the token gave, as its identity event
	 * does; a peer that proved a secret has no subject or claims. */
	msgpack_unpacked u;
	msgpack_object peers = ask_router(svc, "$sb.peers", NULL, 0, &u);
	const msgpack_object *me = find_by(&peers, "peer", "tcp-7");
	CHECK(me != NULL && str_is(map_get(me, "subject"), "ada@example.com"));
	const msgpack_object *cl = me != NULL ? map_get(me, "claims") : NULL;
	CHECK(cl != NULL && str_is(map_get(cl, "sub"), "ada@example.com") &&
	      str_is(map_get(cl, "sb_allow_register"), "ada.*"));
	const msgpack_object *other = find_by(&peers, "peer", "svc");
	CHECK(other != NULL && map_get(other, "subject") == NULL &&
	      map_get(other, "claims") == NULL && map_get(other, "router") == NULL);
	msgpack_unpacked_destroy(&u);
	peer_close(p);

	/* The role and the name are the token's to give. */
	p = peer_dial(PORT);
	hello_with_token(p, "tcp-8", "service", token(HS, claims("bob", ""), SECRET));
	expect_fatal(p, SB_EFORBIDDEN, "the token does not grant role service", 0);
	peer_close(p);
	peer_close(svc);
	router_stop();
}

static void test_bad_tokens_in_a_hello_are_refused_saying_why_and_counted(void)
{
	write_secret(SECRET);
	struct sb_router_config cfg = token_config();
	cfg.shards = 1; /* failures are counted per shard */
	cfg.auth_fail_max = 4;
	cfg.auth_fail_window_ms = 60000;
	router_start(&cfg);
	char c[4][256];
	const char *bad[4],
		*why[4] = {"expired", "bad signature", "wrong audience", "alg none is refused"};

	snprintf(c[0], sizeof c[0], "{\"sub\":\"ada\",\"aud\":\"edge\",\"exp\":%lld}",
		 (long long)time(NULL) - 3600);
	snprintf(c[2], sizeof c[2], "{\"sub\":\"ada\",\"aud\":\"other\",\"exp\":%lld}",
		 (long long)time(NULL) + 3600);
	static char keep[4][4096];
	snprintf(keep[0], sizeof keep[0], "%s", token(HS, c[0], SECRET));
	snprintf(keep[1], sizeof keep[1], "%s", token(HS, claims("ada", ""), OTHER));
	snprintf(keep[2], sizeof keep[2], "%s", token(HS, c[2], SECRET));
	snprintf(keep[3], sizeof keep[3], "%s",
		 token("{\"alg\":\"none\"}", claims("ada", ""), NULL));
	for (int i = 0; i < 4; i++) {
		bad[i] = keep[i];
		struct peer *p = peer_dial(PORT);
		hello_with_token(p, NULL, "client", bad[i]);
		expect_fatal(p, SB_EUNAUTHORIZED, why[i], 0);
		peer_close(p);
	}
	CHECK_INT(router_stats().auth_failures, 4);
	/* The address gave too many: even a good token waits for the window. */
	struct peer *p = peer_dial(PORT);
	hello_with_token(p, NULL, "client", token(HS, claims("ada", ""), SECRET));
	expect_fatal(p, SB_EOVERLOADED, "too many authentication failures from 127.0.0.1", 1);
	peer_close(p);
	p = peer_dial_from("127.0.0.2", PORT);
	hello_with_token(p, NULL, "client", token(HS, claims("ada", ""), SECRET));
	peer_expect(p, SB_WELCOME);
	peer_close(p);
	router_stop();
}

static void test_a_token_to_a_router_without_keys_is_refused(void)
{
	struct sb_router_config cfg = router_config();
	router_start(&cfg);
	struct peer *p = peer_dial(PORT);
	hello_with_token(p, NULL, "client", token(HS, claims("ada", ""), SECRET));
	expect_fatal(p, SB_EUNAUTHORIZED,
		     "bearer tokens are not accepted: this router has no token keys "
		     "(--jwt-keys, --jwt-secret-file)",
		     0);
	peer_close(p);
	/* A HELLO without one is welcomed as before. */
	peer_close(peer_hello(PORT, NULL, "client"));
	router_stop();
}

static void test_a_tcp_peer_is_closed_when_its_token_expires(void)
{
	write_secret(SECRET);
	struct sb_router_config cfg = token_config();
	cfg.jwt_leeway_s = 0;
	router_start(&cfg);
	char c[256];
	snprintf(c, sizeof c, "{\"sub\":\"brief\",\"aud\":\"edge\",\"exp\":%lld}",
		 (long long)time(NULL) + 2);
	struct peer *p = peer_dial(PORT);
	hello_with_token(p, NULL, "client", token(HS, c, SECRET));
	peer_expect(p, SB_WELCOME);
	/* Within a few seconds and unasked: why, then the close. */
	expect_fatal(p, SB_EUNAUTHORIZED, "the bearer token expired", 0);
	peer_close(p);
	router_stop();
}

static void test_a_websocket_peer_may_bring_its_token_in_its_hello(void)
{
	write_secret(SECRET);
	struct sb_router_config cfg = token_config();
	router_start(&cfg);
	char out[4096];
	uint8_t buf[4096], pl[4200];
	struct sb_msg got;

	int fd = upgrade("", out, sizeof out);
	CHECK(strncmp(out, "HTTP/1.1 101 ", 13) == 0);
	struct sb_msg hello = {.kind = SB_HELLO, .id = 1, .version = 1};
	hello.role = v_str("client");
	hello.payload.ptr = pl;
	hello.payload.len = (uint32_t)token_payload(token(HS, claims("ws", ""), SECRET), pl);
	ws_exchange(fd, &hello, &got, buf, sizeof buf);
	CHECK_INT(got.kind, SB_WELCOME);
	close(fd);

	/* One already shown at the upgrade: a second must name the same caller. */
	char field[4200];
	snprintf(field, sizeof field, "Authorization: Bearer %s\r\n",
		 token(HS, claims("ws", ""), SECRET));
	fd = upgrade(field, out, sizeof out);
	hello.payload.len = (uint32_t)token_payload(token(HS, claims("eve", ""), SECRET), pl);
	ws_exchange(fd, &hello, &got, buf, sizeof buf);
	CHECK(got.kind == SB_ERROR && (int)-got.code == SB_EUNAUTHORIZED);
	CHECK(v_is(got.text, "the token's subject is not this connection's"));
	close(fd);
	router_stop();
}

static void test_the_c_client_connects_with_a_token(void)
{
	write_secret(SECRET);
	struct sb_router_config cfg = token_config();
	cfg.secret_client = CLI_SECRET; /* asked of peers without a token */
	router_start(&cfg);
	struct peer *svc = peer_dial(PORT);
	hello_with_token(svc, "svc", "service",
			 token(HS, claims("svc", ",\"sb_role\":\"service\""), SECRET));
	peer_expect(svc, SB_WELCOME);
	svc->see_identity = 1;
	peer_register(svc, "who", 1);

	struct sb_client_config cc;
	sb_client_config_init(&cc);
	cc.port = PORT;
	cc.name = "lib-tok";
	cc.token = token(HS, claims("lib@example.com", ""), SECRET);
	cc.on_state = NULL;
	int err = 0;
	struct sb_client *c = sb_client_new(&cc, &err);
	CHECK(c != NULL);
	CHECK_INT(lib_settle(c), 0);
	CHECK(sb_client_online(c));
	CHECK_INT(sb_send(c, "who", NULL, 0, NULL), 0);
	CHECK_INT(sb_client_process(c, 0), 0); /* writes it */
	struct sb_msg *m = peer_expect(svc, SB_PRESENCE);
	CHECK(memmem(m->payload.ptr, m->payload.len, "lib@example.com", 15) != NULL);
	sb_client_free(c);

	/* An expired one: refused once, and the client gives up. */
	char x[256];
	snprintf(x, sizeof x, "{\"sub\":\"lib\",\"aud\":\"edge\",\"exp\":%lld}",
		 (long long)time(NULL) - 3600);
	sb_client_config_init(&cc);
	cc.port = PORT;
	cc.token = token(HS, x, SECRET);
	cc.reconnect_min_ms = 20;
	cc.reconnect_max_ms = 50;
	c = sb_client_new(&cc, &err);
	CHECK(c != NULL);
	CHECK_INT(lib_settle(c), SB_EUNAUTHORIZED);
	CHECK(strstr(sb_client_last_error(c), "expired") != NULL);
	sb_client_free(c);

	/* What is not a token is refused before anything is sent. */
	const char *not_tokens[] = {"", "Bearer abc.def.ghi", "a b"};
	for (int i = 0; i < 3; i++) {
		cc.token = not_tokens[i];
		CHECK(sb_client_new(&cc, &err) == NULL && err == SB_EINVAL);
	}
	peer_close(svc);
	router_stop();
}

/* ---- the claims, for handlers --------------------------------------------------- */

/* What a handler of the C client saw of its caller's claims. */
struct seen_claims {
	int n;
	int has;
	size_t len;
	uint8_t mp[1024];
};

static void handle_claims(struct sb_call *call, void *ud)
{
	struct seen_claims *s = ud;
	size_t len = 99;
	const void *mp = sb_call_claims(call, &len);

	s->n++;
	s->has = mp != NULL;
	s->len = len;
	if (mp != NULL && len <= sizeof s->mp)
		memcpy(s->mp, mp, len);
	sb_reply(call, "ok", NULL, 0);
}

/* An in-process handler: the claims it sees, as its reply's payload. */
static void handle_claims_local(struct sb_call *call, void *ud)
{
	size_t len;
	const void *mp = sb_call_claims(call, &len);
	(void)ud;
	sb_reply(call, mp != NULL ? "claims" : "none", mp, len);
}

static int seen_one(void *arg)
{
	return ((struct seen_claims *)arg)->n > 0;
}

/* HELLO's payload {"token": T (if any), "claims": {"tenant": "evil"}}:
 * a peer's attempt to name its own claims. */
static size_t forged_payload(const char *t, uint8_t *out)
{
	static const uint8_t forged[] = "\xa6"
					"claims"
					"\x81\xa6"
					"tenant"
					"\xa4"
					"evil";
	size_t at = 0;
	if (t != NULL) {
		at = token_payload(t, out);
		out[0] = 0x82;
	} else {
		out[at++] = 0x81;
	}
	memcpy(out + at, forged, sizeof forged - 1);
	return at + sizeof forged - 1;
}

/* A request to "claims" from a peer that says HELLO with @p payload; what
 * the handler saw in *s. */
static void ask_claims(struct sb_client *svc, struct seen_claims *s, const uint8_t *pl, size_t n)
{
	struct peer *p = peer_dial(PORT);
	struct sb_msg h = {.kind = SB_HELLO, .version = SB_PROTO_VERSION, .role = v_str("client")};
	h.payload = (struct sb_view){pl, (uint32_t)n};
	peer_send(p, &h);
	peer_expect(p, SB_WELCOME);
	memset(s, 0, sizeof *s);
	peer_request(p, "claims", 2, 0, NULL, 0);
	CHECK(pump_cond(&svc, 1, seen_one, s, "the handler runs"));
	CHECK_INT(sb_client_process(svc, 0), 0); /* writes its reply */
	CHECK(v_is(peer_expect(p, SB_REPLY)->outcome, "ok"));
	peer_close(p);
}

static void test_a_handler_reads_the_claims_of_its_callers_token_and_nobody_forges_them(void)
{
	write_secret(SECRET);
	struct sb_router_config cfg = token_config();
	struct sb_router *r = router_new(&cfg);
	CHECK_INT(sb_router_handle(r, "claims.local", NULL, handle_claims_local, NULL), 0);
	router_start_with(r);
	struct watch w = {0};
	struct sb_client *svc = client_at(PORT, "svc", "service", &w);
	CHECK(pump_online(&svc, 1));
	struct seen_claims s;
	CHECK_INT(sb_client_register(svc, "claims", NULL, handle_claims, &s), 0);
	pump_for(&svc, 1, 50);

	/* A token with claims of its own: the handler gets them all, as one
	 * MessagePack map, in the token's order. */
	static uint8_t pl[8300];
	const char *t = token(HS, claims("ada", ",\"tenant\":\"acme\",\"seats\":5"), SECRET);
	ask_claims(svc, &s, pl, token_payload(t, pl));
	CHECK(s.has);
	CHECK(s.len > 5 && s.len <= sizeof s.mp);
	CHECK_INT(s.mp[0], 0x85); /* sub, aud, exp, tenant, seats */
	CHECK(memmem(s.mp, s.len,
		     "\xa3sub\xa3"
		     "ada",
		     8) != NULL);
	CHECK(memmem(s.mp, s.len,
		     "\xa6tenant\xa4"
		     "acme",
		     12) != NULL);
	CHECK(memmem(s.mp, s.len, "\xa5seats\x05", 7) != NULL);

	/* An in-process handler sees the same map. */
	struct peer *p = peer_dial(PORT);
	hello_with_token(p, NULL, "client", t);
	peer_expect(p, SB_WELCOME);
	peer_request(p, "claims.local", 2, 0, NULL, 0);
	struct sb_msg *m = peer_expect(p, SB_REPLY);
	CHECK(v_is(m->outcome, "claims"));
	CHECK(m->payload.len == s.len && memcmp(m->payload.ptr, s.mp, s.len) == 0);
	peer_close(p);
	p = peer_hello(PORT, NULL, "client");
	peer_request(p, "claims.local", 2, 0, NULL, 0);
	CHECK(v_is(peer_expect(p, SB_REPLY)->outcome, "none"));
	peer_close(p);

	/* No token: no claims, whatever the HELLO says. */
	ask_claims(svc, &s, NULL, 0);
	CHECK(!s.has && s.len == 0);
	ask_claims(svc, &s, pl, forged_payload(NULL, pl));
	CHECK(!s.has && s.len == 0);

	/* A token and a "claims" of its own making: the token's alone. */
	t = token(HS, claims("bob", ",\"tenant\":\"bobco\""), SECRET);
	ask_claims(svc, &s, pl, forged_payload(t, pl));
	CHECK(s.has);
	CHECK(memmem(s.mp, s.len, "bobco", 5) != NULL);
	CHECK(memmem(s.mp, s.len, "evil", 4) == NULL);
	sb_client_free(svc);
	router_stop();
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	watchdog("test_tokens", 120);
	snprintf(secret_path, sizeof secret_path, "/tmp/sb-test-jwt-%d", (int)getpid());
	RUN(test_a_call_with_a_valid_token_is_served_as_its_subject);
	RUN(test_tokens_that_do_not_pass_are_answered_401_with_why);
	RUN(test_the_upgrade_takes_a_token_from_a_cookie_and_its_role);
	RUN(test_a_tokens_name_rules_narrow_what_a_websocket_peer_may_do);
	RUN(test_a_websocket_peer_is_closed_when_its_token_expires);
	RUN(test_a_reload_rotates_the_key);
	RUN(test_a_tcp_peer_with_a_token_in_its_hello_is_served_as_its_subject);
	RUN(test_bad_tokens_in_a_hello_are_refused_saying_why_and_counted);
	RUN(test_a_token_to_a_router_without_keys_is_refused);
	RUN(test_a_tcp_peer_is_closed_when_its_token_expires);
	RUN(test_a_websocket_peer_may_bring_its_token_in_its_hello);
	RUN(test_the_c_client_connects_with_a_token);
	RUN(test_a_handler_reads_the_claims_of_its_callers_token_and_nobody_forges_them);
	unlink(secret_path);
	return TEST_EXIT();
}
