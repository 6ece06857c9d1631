/* One whole frame from a connection: decoded (a frame that does not
 * decode fails the connection, an unknown kind is answered), held to the
 * handshake's order, and handed to the module of its kind. A handler's
 * REPLY or ERROR has what it cannot mean taken out here, before it goes to
 * the request's shard. */
#include <stdio.h>
#include <string.h>

#include "proto/mp.h"
#include "router/conn.h"
#include "router/edge_auth.h"
#include "router/frame.h"
#include "router/goodbye.h"
#include "router/handshake.h"
#include "router/mail.h"
#include "router/outq.h"
#include "router/peers.h"
#include "router/register.h"
#include "router/request.h"
#include "router/shard.h"

/* Id 0 is the connection's (an ERROR with id 0 is about it), so no
 * request may have it: refused about the connection, before anything
 * else would answer with it. */
static int request_id_ok(struct sb__shard *sh, struct sb__conn *c, const struct sb_msg *m)
{
	if (m->id != 0)
		return 1;
	sb__send_error(sh, c, 0, SB_EINVAL,
		       "REQUEST id 0 is reserved: an ERROR with id 0 is about the connection", 0);
	return 0;
}

/* A handler's REPLY or ERROR, on its way to the shard that owns the
 * request. What a handler cannot mean is taken out first (docs/protocol.md,
 * REPLY): FATAL speaks for its own connection, and forwarded would tell the
 * requester that its connection is closing; an ERROR is always final (MORE
 * marks a broadcast's per-peer results, which the router makes); CHUNK
 * without MORE is a final reply; and `peer` is the router's to set, in
 * broadcast results, so nothing else can pass for one. Flags are patched
 * in place; a `peer` costs a copy of the frame, paid only by a handler
 * that breaks the rule. */
static void on_answer(struct sb__shard *sh, struct sb__conn *c, const struct sb_msg *m,
		      struct sb__buf *b, uint8_t *f, uint32_t len)
{
	uint8_t flags = m->flags;

	if (m->id == 0) /* a connection-level error from the peer */
		return;
	if (m->kind == SB_ERROR)
		flags &= (uint8_t) ~(SB_F_FATAL | SB_F_MORE);
	else if (!(flags & SB_F_MORE))
		flags &= (uint8_t)~SB_F_CHUNK;
	f[SB_PREFIX_LEN + 2] = flags;
	if (m->peer.ptr != NULL) {
		struct sb_msg plain = *m;
		plain.flags = flags;
		plain.peer = (struct sb_view){NULL, 0};
		long n = sb_encoded_size(&plain);
		if (n <= 0 || (b = sb__buf_heap((size_t)n)) == NULL) {
			sb__conn_close(sh, c, "out of memory");
			return;
		}
		sb_encode(&plain, b->data, (size_t)n);
		f = b->data;
		len = (uint32_t)n;
	} else
		sb__buf_get(b);
	unsigned owner = sb__reqid_shard(m->id);
	if (owner == sh->id)
		sb__req_reply(sh, c->ep, b, f, len);
	else if (owner < sh->r->nshards) {
		struct sb__mail ml = {.type = SB__MAIL_REPLY,
				      .a = sh->id,
				      .b = c->ep,
				      .p = b,
				      .c = (uint64_t)(f - b->data) << 32 | len};
		sb__mail(sh, owner, &ml);
	} else {
		sb__stat_add(&sh->st.late_replies, 1);
		sb__buf_put(b, &sh->pool);
	}
}

/* The id of a frame the decoder refused for its kind alone: every kind
 * starts [kind, flags, id], so a canonical head still gives it (else 0). */
static uint64_t frame_id(const uint8_t *f)
{
	return f[SB_PREFIX_LEN + 2] <= 0x7f && f[SB_PREFIX_LEN + 3] == 0xcf
		       ? sb__be64(f + SB_ID_OFFSET)
		       : 0;
}

/* A send outside the token's rules is dropped, a request or registration
 * answered forbidden; each counted. */
static int tok_allows(struct sb__shard *sh, struct sb__conn *c, const struct sb_msg *m)
{
	char why[SB_TEXT_MAX];

	if (sb__edge_may(c, m->kind, m->name, why, sizeof why) == 0)
		return 1;
	sb__stat_add(&sh->st.forbidden, 1);
	if (m->kind != SB_SEND)
		sb__send_error(sh, c, m->id, SB_EFORBIDDEN, why, 0);
	return 0;
}

/* One whole frame from a connection; b holds the caller's reference. */
void sb__frame(struct sb__shard *sh, struct sb__conn *c, struct sb__buf *b, uint8_t *f,
	       uint32_t len)
{
	struct sb_msg m;
	struct sb_fault_info fi;
	int rc;

	sb__stat_add(&sh->st.frames_in, 1);
	if (c->doomed || c->closing)
		return;
	if ((rc = sb_decode(f, len, 0, &m, &fi)) != 0) {
		char why[256];
		sb_fault_describe(&fi, why, sizeof why);
		/* An unknown kind is a newer peer, not a broken one. */
		if (rc == SB_EUNSUPPORTED)
			sb__send_error(sh, c, frame_id(f), rc, why, 0);
		else
			sb__conn_fail(sh, c, rc, why);
		return;
	}
	if (c->hs != NULL && m.kind != SB_AUTH) {
		sb__conn_fail(sh, c, SB_EBADFRAME, "AUTH must answer CHALLENGE");
		return;
	}
	if (!c->ready && c->hs == NULL && m.kind != SB_HELLO) {
		sb__conn_fail(sh, c, SB_EBADFRAME, "HELLO must come first");
		return;
	}
	/* A token's name rules narrow what its peer may send, request and
	 * register (a WebSocket peer's were held to them as its message came). */
	if (c->tok != NULL && c->tok->rules && c->edge == NULL && !tok_allows(sh, c, &m))
		return;
	switch (m.kind) {
	case SB_HELLO:
		if (c->ready)
			sb__conn_fail(sh, c, SB_EBADFRAME, "HELLO sent twice");
		else
			sb__hs_hello(sh, c, &m);
		break;
	case SB_AUTH:
		if (c->hs == NULL)
			sb__conn_fail(sh, c, SB_EBADFRAME, "AUTH without a CHALLENGE");
		else
			sb__hs_auth(sh, c, &m);
		break;
	case SB_REGISTER:
	case SB_UNREGISTER:
		c->regd = 1; /* a route change of its may be in flight: it stays (move.c) */
		sb__register(sh, c, &m);
		break;
	case SB_SEND:
	case SB_REQUEST: {
		struct sb__asker a = {.c = c, .from = c->peer_id, .service = c->service};
		if (m.kind == SB_REQUEST && !request_id_ok(sh, c, &m))
			break;
		if (m.kind == SB_SEND)
			sb__forward_send(sh, &a, &m, b, f, len);
		else
			sb__forward_request(sh, &a, &m, b, f, len);
		break;
	}
	case SB_REPLY:
	case SB_ERROR:
		on_answer(sh, c, &m, b, f, len);
		break;
	case SB_CANCEL:
		sb__req_cancel(sh, c->ep, m.id);
		break;
	case SB_PING: {
		struct sb_msg pong = {.kind = SB_PONG, .id = m.id};
		sb__send_msg(sh, c, &pong);
		break;
	}
	case SB_PONG:
		break;
	case SB_SUBSCRIBE:
		sb__peers_subscribe(sh, c, &m);
		break;
	case SB_GOODBYE:
		sb__bye(sh, c, &m);
		break;
	default: { /* CHALLENGE, WELCOME, ACK, PRESENCE */
		char why[96];
		snprintf(why, sizeof why, "%s is sent by the router; it is not accepted from peers",
			 sb_kind_name(m.kind));
		sb__send_error(sh, c, m.id, SB_EUNSUPPORTED, why, 0);
		break;
	}
	}
}
