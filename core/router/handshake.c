/* The handshake: HELLO (protocol version, role, and perhaps a bearer
 * token), then with secrets configured and no token the CHALLENGE and the
 * AUTH that must prove one (an address that keeps failing is refused for
 * a while), then the peer's name and WELCOME; all of it within
 * hello_timeout_ms. Policies and proofs are core/router/auth.c's, tokens
 * core/router/edge_auth.c's. */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "router/auth.h"
#include "router/cluster.h"
#include "router/conn.h"
#include "router/conn_ws.h"
#include "router/edge_auth.h"
#include "router/handshake.h"
#include "router/outq.h"
#include "router/peers.h"
#include "router/shard.h"

static void hello_done(struct sb__shard *sh, struct sb__conn *c, uint64_t id, struct sb_view peer);
static void auth_challenge(struct sb__shard *sh, struct sb__conn *c, const struct sb_msg *m);
static int auth_refused(struct sb__shard *sh, struct sb__conn *c);

/* A token in the HELLO: verified (an address that keeps giving bad ones
 * is refused for a while, as for wrong secrets), its claims made the
 * connection's. @return 0, or -1 with the connection failed */
static int hello_token(struct sb__shard *sh, struct sb__conn *c, const struct sb_msg *m)
{
	char why[SB_TEXT_MAX], a[INET_ADDRSTRLEN];
	struct sb_view t;
	int has = sb__hello_token(m->payload, &t);

	if (has == 0) {
		/* With tokens on, an edge peer shows one: at its upgrade, or here. */
		if (c->edge == NULL || c->tok != NULL ||
		    sb__jwt_slot_current(&sh->r->jwt, &sh->jwt) == NULL)
			return 0;
		snprintf(why, sizeof why,
			 "a bearer token is required (in the upgrade, or the HELLO's token)");
	} else if (auth_refused(sh, c))
		return -1;
	else if (has < 0)
		snprintf(why, sizeof why, "the HELLO's token is not a string");
	else if (sb__tok_present(sh, c, (const char *)t.ptr, t.len, why, sizeof why) == 0)
		return 0;
	else if (sb__jwt_slot_current(&sh->r->jwt, &sh->jwt) != NULL)
		sb__auth_failed(&sh->auth, &sh->r->cfg, c->addr, sh->now);
	sb__stat_add(&sh->st.auth_failures, 1);
	sb__log(&sh->r->log, 1, "%s refused: %s", sb__conn_addr(c, a, sizeof a), why);
	sb__conn_fail(sh, c, SB_EUNAUTHORIZED, why);
	return -1;
}

void sb__hs_hello(struct sb__shard *sh, struct sb__conn *c, const struct sb_msg *m)
{
	if (c->named) { /* its name is being claimed across routers: not ready yet */
		sb__conn_fail(sh, c, SB_EBADFRAME, "HELLO sent twice");
		return;
	}
	if (m->version < SB_PROTO_VERSION) {
		sb__conn_fail(sh, c, SB_EUNSUPPORTED, "this router speaks protocol version 1");
		return;
	}
	if (m->role.len == 7 && memcmp(m->role.ptr, "service", 7) == 0)
		c->service = 1;
	else if (!(m->role.len == 6 && memcmp(m->role.ptr, "client", 6) == 0)) {
		sb__conn_fail(sh, c, SB_EINVAL, "role must be \"service\" or \"client\"");
		return;
	}
	if (hello_token(sh, c, m) != 0)
		return;
	sb__peers_hello(c, m->payload);
	/* A token said who the peer is: its HELLO may ask only what the token
	 * gives, and needs no secret (HTTP calls ask no name). */
	if (c->tok != NULL) {
		char why[SB_TEXT_MAX];
		if (c->xport != SB__XPORT_HTTP &&
		    sb__edge_hello(c, c->service, m->peer, why, sizeof why) != 0) {
			sb__conn_fail(sh, c, SB_EFORBIDDEN, why);
			return;
		}
		hello_done(sh, c, m->id, m->peer);
		return;
	}
	/* The edge is open to browsers: a service there must prove a secret
	 * (docs/gateway.md). */
	if (c->service && c->edge != NULL && sh->auth.pol->secret[1] == NULL) {
		sb__conn_fail(sh, c, SB_EFORBIDDEN,
			      "role service on the WebSocket edge needs a service secret");
		return;
	}
	/* With a secret configured, the rest of the handshake waits for the
	 * AUTH that answers our CHALLENGE. */
	if (sh->auth.pol->any_secret)
		auth_challenge(sh, c, m);
	else
		hello_done(sh, c, m->id, m->peer);
}

/* The peer is who it says it may be: name it (as asked, or from the
 * pattern), tell every shard, and welcome it. */
static void hello_done(struct sb__shard *sh, struct sb__conn *c, uint64_t id, struct sb_view peer)
{
	char why[SB__WHY_MAX];
	/* Across routers a name from the pattern is claimed in the whole
	 * cluster before it is taken here (cluster_live.c), which then
	 * welcomes the peer. An HTTP call goes on at once, so its name is
	 * this router's own (docs/cluster.md). */
	if (sh->xs != NULL && peer.ptr == NULL && c->xport != SB__XPORT_HTTP &&
	    sb__cluster_name(sh, c, id) == 0)
		return;
	int rc = sb__peers_join(sh, c, peer, why);
	if (rc != 0) {
		sb__conn_fail(sh, c, rc, why);
		return;
	}
	/* Across routers the name must be free in the whole cluster too: the
	 * WELCOME waits for its claim (cluster.c). */
	if (sh->xs != NULL && peer.ptr != NULL && sb__cluster_claim(sh, c, id) == 0)
		return;
	sb__hs_welcome(sh, c, id);
}

void sb__hs_welcome(struct sb__shard *sh, struct sb__conn *c, uint64_t id)
{
	c->ready = 1;
	sb__timer_disarm(&c->hello_timer);
	/* A peer lives as long as its token (an upgrade's is armed already;
	 * an HTTP caller's token is read again on each call). */
	if (c->tok != NULL && c->xport != SB__XPORT_HTTP && !sb__timer_armed(&c->tok->timer))
		sb__tok_arm(sh, c);
	sb__conn_idle_start(sh, c);
	sb__log(&sh->r->log, 2, "peer %s connected (%s, shard %u)", c->name,
		c->service ? "service" : "client", sh->id);

	struct sb_msg w = {.kind = SB_WELCOME,
			   .id = id,
			   .version = SB_PROTO_VERSION,
			   .peer_id = c->peer_id,
			   .max_frame = sh->r->cfg.max_frame};
	w.peer.ptr = (const uint8_t *)c->name;
	w.peer.len = (uint32_t)strlen(c->name);
	/* {"shard": N}: which shard serves the peer, for logs and tests; and
	 * {"resume": bin 16}, the token that takes the name back after a
	 * lost connection (docs/protocol.md). */
	uint8_t info[8 + 8 + 2 + SB__RESUME_LEN] = {0x81, 0xa5, 's', 'h',
						    'a',  'r',  'd', (uint8_t)sh->id};
	size_t n = 8;
	if (c->pr.has_token) {
		static const uint8_t key[] = {0xa6, 'r', 'e',  's',           'u',
					      'm',  'e', 0xc4, SB__RESUME_LEN};
		info[0] = 0x82;
		memcpy(info + n, key, sizeof key);
		n += sizeof key;
		memcpy(info + n, c->pr.token, SB__RESUME_LEN);
		n += SB__RESUME_LEN;
	}
	w.payload.ptr = info;
	w.payload.len = (uint32_t)n;
	sb__send_msg(sh, c, &w);
}

/* An address that gave too many wrong secrets lately is refused until its
 * window ends, before any work is done for it: no nonce, no HMAC. */
static int auth_refused(struct sb__shard *sh, struct sb__conn *c)
{
	const struct sb_router_config *cfg = &sh->r->cfg;
	uint64_t left = sb__auth_blocked(&sh->auth, cfg, c->addr, sh->now);
	char why[200], a[INET_ADDRSTRLEN];

	if (left == 0)
		return 0;
	snprintf(why, sizeof why,
		 "too many authentication failures from %s (limit %u in %u ms); retry in %llu ms",
		 sb__conn_addr(c, a, sizeof a), cfg->auth_fail_max, cfg->auth_fail_window_ms,
		 (unsigned long long)left);
	sb__stat_add(&sh->st.auth_blocked, 1);
	sb__conn_fail(sh, c, SB_EOVERLOADED, why);
	return 1;
}

static void auth_challenge(struct sb__shard *sh, struct sb__conn *c, const struct sb_msg *m)
{
	char why[64], a[INET_ADDRSTRLEN];

	if (sh->auth.pol->secret[c->service] == NULL) {
		snprintf(why, sizeof why, "role %s is not accepted: it has no secret",
			 c->service ? "service" : "client");
		sb__stat_add(&sh->st.auth_failures, 1);
		sb__log(&sh->r->log, 1, "%s refused: %s", sb__conn_addr(c, a, sizeof a), why);
		sb__conn_fail(sh, c, SB_EUNAUTHORIZED, why);
		return;
	}
	if (auth_refused(sh, c))
		return;
	if ((c->hs = sb__auth_hs_new(sh->auth.pol, m)) == NULL) {
		sb__conn_fail(sh, c, SB_EINTERNAL, "cannot start the authentication");
		return;
	}
	struct sb_msg ch = {.kind = SB_CHALLENGE, .id = m->id};
	ch.nonce = (struct sb_view){c->hs->nonce, sizeof c->hs->nonce};
	ch.mech = (struct sb_view){(const uint8_t *)SB__HMAC_MECH, sizeof SB__HMAC_MECH - 1};
	sb__send_msg(sh, c, &ch);
}

void sb__hs_auth(struct sb__shard *sh, struct sb__conn *c, const struct sb_msg *m)
{
	struct sb__auth_hs *hs = c->hs;
	char why[64], a[INET_ADDRSTRLEN];

	if (auth_refused(sh, c))
		return;
	if (!sb__auth_check(hs, c->service, m)) {
		snprintf(why, sizeof why, "wrong secret for role %s",
			 c->service ? "service" : "client");
		sb__auth_failed(&sh->auth, &sh->r->cfg, c->addr, sh->now);
		sb__stat_add(&sh->st.auth_failures, 1);
		sb__log(&sh->r->log, 1, "%s (peer name %s) refused: %s",
			sb__conn_addr(c, a, sizeof a), hs->named ? hs->name : "not given", why);
		sb__conn_fail(sh, c, SB_EUNAUTHORIZED, why);
		return;
	}
	c->hs = NULL;
	struct sb_view peer = {hs->named ? (const uint8_t *)hs->name : NULL, hs->name_len};
	hello_done(sh, c, hs->hello_id, peer);
	sb__auth_hs_free(hs);
}

/* A connection silent past its handshake deadline holds a descriptor and
 * a max_conns place for nothing: tell it why, and close it. */
void sb__hs_on_timeout(struct sb__timer *t)
{
	struct sb__conn *c = SB__CONTAINER(t, struct sb__conn, hello_timer);
	char why[64];
	if (c->doomed)
		return; /* already failed for something else, and closing */
	snprintf(why, sizeof why, "no %s within %u ms", c->hs != NULL ? "AUTH" : "HELLO",
		 c->sh->r->cfg.hello_timeout_ms);
	sb__stat_add(&c->sh->st.hello_timeouts, 1);
	sb__conn_fail(c->sh, c, SB_ETIMEOUT, why);
}
