/* A peer's GOODBYE (docs/protocol.md). Its shard tells every shard; each
 * takes the peer's endpoints off its route replica, so nothing new is
 * routed to it, and reports once its own requests to the peer have ended.
 * The peer is closed when every shard has reported, it has no request of
 * its own open and its output is sent, or at its deadline. */
#include "common/clock.h"
#include "router/conn.h"
#include "router/goodbye.h"
#include "router/mail.h"
#include "router/outq.h"
#include "router/peers.h"
#include "router/shard.h"

/* This shard has no request in flight to connection ep any more. */
void sb__bye_report(struct sb__shard *sh, uint64_t ep)
{
	if (sb__ep_shard(ep) != sh->id) {
		struct sb__mail m = {.type = SB__MAIL_BYE_DONE, .b = ep};
		sb__mail(sh, sb__ep_shard(ep), &m);
		return;
	}
	struct sb__conn *c = sb__conn_get(sh, ep);
	if (c != NULL && c->bye && c->bye_wait > 0 && --c->bye_wait == 0)
		sb__outq_mark(sh, c);
}

/* Connection ep (of any shard) said GOODBYE, and this shard learns it: its
 * names leave this shard's routes, so nothing new is routed to it (a `to`
 * is refused by the replica's draining mark, set just before), and its
 * shard hears once this shard's requests to it have ended. */
void sb__bye_apply(struct sb__shard *sh, uint64_t ep, int registered)
{
	if (registered) { /* as at a close (sb__conn_gone) */
		sb__routes_del_ep(&sh->routes, ep);
		sb__routes_del_ep(&sh->direct, ep);
	}
	/* Out of memory, it is reported at once: at worst its requests from
	 * here end with `peer gone`, as at a close. */
	if (sb__idmap_get(&sh->load, ep) == 0 || sb__idmap_put(&sh->leaving, ep, 1) != 0)
		sb__bye_report(sh, ep);
}

/* What is still open at the deadline ends as at a close: requesters hear
 * `peer gone`, handlers get CANCEL. */
static void on_bye_deadline(struct sb__timer *t)
{
	struct sb__conn *c = SB__CONTAINER(t, struct sb__conn, hello_timer);
	sb__conn_close(c->sh, c, "its GOODBYE's deadline passed");
}

/* The peer finishes what it has, then is closed (docs/protocol.md). The
 * deadline is capped at max_timeout_ms: by then every request it had has
 * ended by itself, and a peer that keeps asking cannot stay forever. */
void sb__bye(struct sb__shard *sh, struct sb__conn *c, const struct sb_msg *m)
{
	uint32_t cap = sh->r->cfg.max_timeout_ms;
	uint32_t ms = m->deadline_ms < cap ? m->deadline_ms : cap;

	if (c->bye)
		return; /* the first one's deadline stands */
	c->bye = 1;
	c->bye_wait = (uint8_t)sh->r->nshards;
	sb__peers_drain(sh, c); /* presence, and every other shard's bye_apply */
	sb__bye_apply(sh, c->ep, c->nregs > 0);
	if (ms == 0) {
		c->doomed = 1; /* now, as at a close */
	} else {
		/* The handshake's timer is long done. A fresh clock: the turn's
		 * may predate the frame, and the deadline must never come early. */
		sb__timer_init(&c->hello_timer, on_bye_deadline);
		sb__timer_arm(&sh->wheel, &c->hello_timer, sb__now_ms() + ms);
	}
	sb__outq_mark(sh, c);
}
