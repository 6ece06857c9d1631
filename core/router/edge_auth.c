/* Bearer tokens. The key set is built from files when the
 * router starts and again at each reload (the set in force changes only
 * once a new one loaded whole); each shard reads it through its cache, one
 * atomic load per token. A token's subject becomes the connection's
 * verified identity, as a client certificate's does on TLS; its role and
 * name claims decide what its HELLO may ask, and its name rule claims
 * narrow what the connection may call and register (edge_auth_check()). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "proto/mp.h"
#include "router/conn.h"
#include "router/conn_ws.h"
#include "router/edge_auth.h"
#include "router/peers.h"
#include "router/router-t.h"
#include "router/shard.h"

/* An HS256 secret file: its bytes, minus one trailing newline. */
static int secret_read(const char *path, uint8_t *buf, size_t cap, size_t *len)
{
	size_t n = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return SB_ESYS;
	for (;;) {
		ssize_t r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0 || (n += (size_t)r) == cap)
			break;
	}
	close(fd);
	if (n > 0 && buf[n - 1] == '\n')
		n -= 1 + (n > 1 && buf[n - 2] == '\r');
	*len = n;
	return 0;
}

int sb__edge_keys_load(const struct sb_router_config *c, const struct sb__logger *lg,
		       struct sb__jwt_keys **out)
{
	struct sb__jwt_opts o = {c->jwt_issuer, c->jwt_audience, c->jwt_leeway_s};
	struct sb__jwt_keys *k = NULL;
	uint8_t secret[SB__JWT_SECRET_MAX + 2];
	size_t n = 0;
	char why[160];
	int rc;

	*out = NULL;
	if (c->jwt_keys_file == NULL && c->jwt_secret_file == NULL)
		return 0;
	if ((rc = sb__jwt_keys_new(&o, &k, why, sizeof why)) != 0)
		goto refused;
	if (c->jwt_secret_file != NULL) {
		if (secret_read(c->jwt_secret_file, secret, sizeof secret, &n) != 0) {
			snprintf(why, sizeof why, "%s: %s", c->jwt_secret_file, strerror(errno));
			rc = SB_EINVAL;
			goto refused;
		}
		rc = sb__jwt_keys_add_secret(k, NULL, secret, n, why, sizeof why);
		memset(secret, 0, sizeof secret);
		if (rc != 0)
			goto refused;
	}
	if (c->jwt_keys_file != NULL &&
	    (rc = sb__jwt_keys_load_pem(k, c->jwt_keys_file, why, sizeof why)) < 0)
		goto refused;
	*out = k;
	return 0;
refused:
	sb__log(lg, 0, "bearer tokens: %s", why);
	sb__jwt_keys_put(k);
	return rc == SB_ENOMEM ? SB_ENOMEM : SB_EINVAL;
}

/* ---- a request's token ------------------------------------------------------ */

/* The token: "Authorization: Bearer T", else the cookie sb_token=T. */
static int token_of(const struct sb__http_req *r, struct sb__http_str *t)
{
	static const char bearer[] = "Bearer ";

	if (r->authorization.len > sizeof bearer - 1 &&
	    strncasecmp(r->authorization.p, bearer, sizeof bearer - 1) == 0) {
		t->p = r->authorization.p + sizeof bearer - 1;
		t->len = r->authorization.len - (uint32_t)(sizeof bearer - 1);
		return 1;
	}
	if (r->cookie.len == 0)
		return 0; /* and cookie.p is NULL, which takes no offset */
	const char *p = r->cookie.p, *end = r->cookie.p + r->cookie.len;
	while (p < end) {
		while (p < end && (*p == ' ' || *p == ';'))
			p++;
		const char *e = memchr(p, ';', (size_t)(end - p));
		if (e == NULL)
			e = end;
		size_t kn = sizeof SB__TOKEN_COOKIE - 1;
		if ((size_t)(e - p) > kn && memcmp(p, SB__TOKEN_COOKIE, kn) == 0 && p[kn] == '=') {
			t->p = p + kn + 1;
			t->len = (uint32_t)(e - p - (ptrdiff_t)kn - 1);
			return 1;
		}
		p = e;
	}
	return 0;
}

static void on_expiry(struct sb__timer *tm);

/* A verified token's claims made c's: its subject the verified identity,
 * its role, name and name rules, kept as long as the connection. */
static int tok_apply(struct sb__conn *c, const struct sb__jwt_claims *cl, char *why, size_t cap)
{
	struct sb__tok *t = calloc(1, sizeof *t);

	if (t == NULL) {
		snprintf(why, cap, "out of memory");
		return SB_EUNAUTHORIZED;
	}
	/* Its name rules, compiled once: a token's patterns are checked as a
	 * configured rule's are (and were, by the verifier). */
	if ((cl->has_allow_call &&
	     sb__patterns_compile(&t->call, "sb_allow_call", cl->allow_call, why, cap) != 0) ||
	    (cl->has_allow_register &&
	     sb__patterns_compile(&t->reg, "sb_allow_register", cl->allow_register, why, cap) != 0))
		goto fail;
	if (sb__peers_set_subject(c, cl->sub, strlen(cl->sub)) != 0 ||
	    sb__peers_set_claims(c, cl->mp, cl->mp_len) != 0) {
		snprintf(why, cap, "out of memory");
		goto fail;
	}
	t->rules = cl->has_allow_call || cl->has_allow_register;
	snprintf(t->sub, sizeof t->sub, "%s", cl->sub);
	snprintf(t->name, sizeof t->name, "%s", cl->name);
	t->service = strcmp(cl->role, "service") == 0;
	t->exp = cl->exp;
	t->conn = c;
	sb__timer_init(&t->timer, on_expiry);
	c->tok = t;
	return 0;
fail:
	sb__patterns_free(&t->call);
	sb__patterns_free(&t->reg);
	free(t);
	return SB_EUNAUTHORIZED;
}

/* A token checked with the set in force; a second one on a connection
 * (a later call on a kept-alive one) must name the same caller. */
static int tok_check(struct sb__conn *c, struct sb__jwt_keys *k, const char *t, size_t len,
		     char *why, size_t cap)
{
	struct sb__jwt_claims cl;

	if (sb__jwt_verify(k, t, len, (int64_t)time(NULL), &cl, why, cap) != 0)
		return SB_EUNAUTHORIZED;
	if (c->tok != NULL) {
		if (strcmp(c->tok->sub, cl.sub) != 0) {
			snprintf(why, cap, "the token's subject is not this connection's");
			return SB_EUNAUTHORIZED;
		}
		return 0;
	}
	return tok_apply(c, &cl, why, cap);
}

int sb__edge_token(struct sb__shard *sh, struct sb__conn *c, const struct sb__http_req *r,
		   int required, char *why, size_t cap)
{
	struct sb__jwt_keys *k = sb__jwt_slot_current(&sh->r->jwt, &sh->jwt);
	struct sb__http_str t;

	if (k == NULL)
		return 0;
	if (!token_of(r, &t)) {
		if (!required)
			return 0;
		snprintf(why, cap,
			 "a bearer token is required (Authorization: Bearer, or the %s "
			 "cookie)",
			 SB__TOKEN_COOKIE);
		return SB_EUNAUTHORIZED;
	}
	return tok_check(c, k, t.p, t.len, why, cap);
}

int sb__hello_token(struct sb_view payload, struct sb_view *t)
{
	const uint8_t *p = payload.ptr, *end;
	struct sb__mp_item it;

	if (payload.ptr == NULL) /* an HTTP caller's HELLO, made by the edge */
		return 0;
	end = payload.ptr + payload.len;
	if (sb__mp_read(&p, end, &it) != SB__MP_OK || it.type != SB__MP_MAP)
		return 0; /* free-form information, without a token */
	for (uint32_t pair = 0; pair < it.len; pair++) {
		struct sb__mp_item key, v;
		if (sb__mp_read(&p, end, &key) != SB__MP_OK)
			return 0;
		int is_token =
			key.type == SB__MP_STR && key.len == 5 && memcmp(key.body, "token", 5) == 0;
		/* The value, skipped whole: a count of items still to read. */
		for (uint64_t left = 1; left > 0; left--) {
			if (sb__mp_read(&p, end, &v) != SB__MP_OK)
				return is_token ? -1 : 0;
			if (is_token) {
				if (v.type != SB__MP_STR)
					return -1;
				*t = (struct sb_view){v.body, v.len};
				return 1;
			}
			if (v.type == SB__MP_ARRAY)
				left += v.len;
			else if (v.type == SB__MP_MAP)
				left += 2 * (uint64_t)v.len;
		}
	}
	return 0;
}

int sb__tok_present(struct sb__shard *sh, struct sb__conn *c, const char *t, size_t len, char *why,
		    size_t cap)
{
	struct sb__jwt_keys *k = sb__jwt_slot_current(&sh->r->jwt, &sh->jwt);

	if (k == NULL) {
		snprintf(why, cap,
			 "bearer tokens are not accepted: this router has no token keys "
			 "(--jwt-keys, --jwt-secret-file)");
		return SB_EUNAUTHORIZED;
	}
	return tok_check(c, k, t, len, why, cap);
}

/* A peer's token ran out: it hears why, and goes. A new connection with a
 * fresh token carries on. */
static void on_expiry(struct sb__timer *tm)
{
	struct sb__tok *t = SB__CONTAINER(tm, struct sb__tok, timer);
	struct sb__conn *c = t->conn;
	struct sb__shard *sh = c->sh;

	if (c->doomed || c->closing)
		return;
	sb__log(&sh->r->log, 2, "peer %s: its bearer token expired",
		c->name[0] ? c->name : "(handshake)");
	if (c->edge != NULL)
		sb__conn_ws_token_expired(sh, c);
	else
		sb__conn_fail(sh, c, SB_EUNAUTHORIZED, "the bearer token expired");
}

void sb__tok_arm(struct sb__shard *sh, struct sb__conn *c)
{
	struct sb__tok *t = c->tok;
	int64_t left = t->exp + (int64_t)sh->r->cfg.jwt_leeway_s - (int64_t)time(NULL);

	sb__timer_arm(&sh->wheel, &t->timer, sh->now + (left > 0 ? (uint64_t)left * 1000u : 0));
}

void sb__tok_free(struct sb__conn *c)
{
	if (c->tok == NULL)
		return;
	sb__timer_disarm(&c->tok->timer);
	sb__patterns_free(&c->tok->call);
	sb__patterns_free(&c->tok->reg);
	free(c->tok);
	c->tok = NULL;
}

int sb__edge_may(const struct sb__conn *c, unsigned kind, struct sb_view name, char *why,
		 size_t cap)
{
	const struct sb__patterns *rule = kind == SB_REGISTER ? &c->tok->reg : &c->tok->call;

	if ((kind != SB_SEND && kind != SB_REQUEST && kind != SB_REGISTER) ||
	    (rule->any || rule->text == NULL) || sb__patterns_allow(rule, name))
		return 0;
	sb__patterns_refusal(why, cap, name, rule);
	return SB_EFORBIDDEN;
}

int sb__edge_hello(const struct sb__conn *c, int service, struct sb_view peer, char *why,
		   size_t cap)
{
	const struct sb__tok *t = c->tok;
	size_t n = strlen(t->name);

	if (service && !t->service) {
		snprintf(why, cap, "the token does not grant role service");
		return SB_EFORBIDDEN;
	}
	if (n == 0)
		return 0;
	int prefix = t->name[n - 1] == '*';
	size_t want = prefix ? n - 1 : n;
	if (peer.ptr == NULL || peer.len < want || memcmp(peer.ptr, t->name, want) != 0 ||
	    (!prefix && peer.len != want)) {
		snprintf(why, cap, "the token allows the peer name %s only", t->name);
		return SB_EFORBIDDEN;
	}
	return 0;
}
