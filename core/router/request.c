/* Forwarding and the request's life. A SEND goes to one handler (or every
 * one, or a named peer) as received, with `from` patched in; a REQUEST gets
 * an entry on its requester's shard (the router's id, its handler, its
 * timer), is forwarded with its id, `from` and `timeout_ms` patched, and
 * ends with exactly one terminal event: every path to that goes through
 * sb__req_finish(). Replies come back here by the id's shard bits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/mp.h"
#include "router/admin.h"
#include "router/balance.h"
#include "router/bcast.h"
#include "router/cluster.h"
#include "router/cluster_admin.h"
#include "router/conn.h"
#include "router/deliver.h"
#include "router/flow.h"
#include "router/local.h"
#include "router/move.h"
#include "router/outq.h"
#include "router/peers.h"
#include "router/request.h"
#include "router/rstat.h"
#include "router/shard.h"

/* ---- a request's end ----------------------------------------------------- */

/* How a request ended, for its name's statistics. */
enum req_end { END_REPLY, END_ERROR, END_TIMEOUT, END_CANCEL };

static void req_count(struct sb__shard *sh, const struct sb__req *q, enum req_end how)
{
	if (q->rs == NULL || how == END_CANCEL)
		return;
	struct sb__rstat_shard *s = &q->rs->per[sh->id];
	if (how == END_TIMEOUT) {
		sb__rstat_inc(&s->timeouts);
		return;
	}
	sb__rstat_inc(how == END_REPLY ? &s->replies : &s->errors);
	sb__rstat_latency(s, sh->now_us - q->t0_us);
}

/* Ends a request for good: every path that answers the requester last
 * comes through here, so none can answer twice. */
void sb__req_finish(struct sb__shard *sh, struct sb__req *q)
{
	struct sb__conn *c = q->requester != SB__LOCAL_REQUESTER
				     ? sb__reqtab_get(&sh->conns, q->requester)
				     : NULL;
	if (c != NULL && --c->inflight == 0 && c->bye && !c->closing)
		sb__outq_mark(sh, c); /* its last request: the flush may close it (GOODBYE) */
	sb__timer_disarm(&q->timer);
	sb__link_del(&q->by_conn);
	sb__link_del(&q->all);
	sb__idmap_del(&sh->cancel, sb__idmap_key(q->requester, q->orig_id));
	if (q->x != NULL)
		sb__cluster_req_free(sh, q);
	if (q->rs != NULL)
		sb__rstat_drop(&sh->r->rstats, q->rs, sh->id);
	q->ops->free(sh, q);
	sb__stat_add(&sh->st.inflight, -1);
	sb__reqtab_free(&sh->reqs, q->rid);
}

/* Ends a request with an error for its requester. */
void sb__req_fail(struct sb__shard *sh, struct sb__req *q, int err, const char *text)
{
	req_count(sh, q,
		  err == SB_ETIMEOUT     ? END_TIMEOUT
		  : err == SB_ECANCELLED ? END_CANCEL
					 : END_ERROR);
	if (q->requester == SB__LOCAL_REQUESTER) {
		sb__local_fail(q->fn, q->ud, q->orig_id, err, text);
	} else if (q->requester == SB__REMOTE_REQUESTER) {
		sb__cluster_fail(sh, q, err, text);
	} else {
		struct sb__conn *c = sb__conn_get(sh, q->requester);
		if (c != NULL)
			sb__send_error(sh, c, q->orig_id, err, text, 0);
	}
	sb__req_finish(sh, q);
}

/* ---- an ordinary request: one handler ------------------------------------ */

static void single_cancel(struct sb__shard *sh, struct sb__req *q)
{
	struct sb_msg m = {.kind = SB_CANCEL, .id = q->rid};
	long n = sb_encoded_size(&m);
	struct sb__buf *b = sb__buf_heap((size_t)n);
	if (b == NULL)
		return;
	sb_encode(&m, b->data, (size_t)n);
	sb__deliver(sh, q->handler, b, b->data, (uint32_t)n);
}

static void single_timeout(struct sb__shard *sh, struct sb__req *q)
{
	sb__stat_add(&sh->st.timeouts, 1);
	single_cancel(sh, q); /* the handler may stop working on it */
	sb__req_fail(sh, q, SB_ETIMEOUT, "no final reply within the request's timeout");
}

static void single_gone(struct sb__shard *sh, struct sb__req *q, uint64_t ep)
{
	if (q->handler == ep)
		sb__req_fail(sh, q, SB_EPEERGONE, "the handler disconnected");
}

static void single_free(struct sb__shard *sh, struct sb__req *q)
{
	sb__load_add(sh, q->handler, -1);
}

/* Hands a reply to an in-process requester's callback. */
static void reply_local(struct sb__shard *sh, struct sb__req *q, struct sb__buf *b, uint8_t *f,
			uint32_t len)
{
	struct sb_msg m;
	int more = 0;

	if (sb_decode(f, len, SB_DECODE_PAYLOAD, &m, NULL) != 0) {
		sb__local_fail(q->fn, q->ud, q->orig_id, SB_EBADFRAME,
			       "the handler's reply is malformed");
	} else {
		more = m.flags & SB_F_MORE;
		sb__local_reply_frame(q->fn, q->ud, q->orig_id, &m);
	}
	sb__stat_add(&sh->st.replies, 1);
	if (!more) {
		req_count(sh, q, m.kind == SB_REPLY ? END_REPLY : END_ERROR);
		sb__req_finish(sh, q);
	}
	sb__buf_put(b, &sh->pool);
}

static void single_reply(struct sb__shard *sh, struct sb__req *q, uint64_t sender,
			 struct sb__buf *b, uint8_t *f, uint32_t len)
{
	struct sb__conn *c = NULL;

	/* Only the handler a request went to may answer it: anyone else, or
	 * anyone after the request ended, is counted and ignored. */
	if (q->handler == sender && q->requester == SB__LOCAL_REQUESTER) {
		reply_local(sh, q, b, f, len);
		return;
	}
	if (q->handler != sender || (q->requester != SB__REMOTE_REQUESTER &&
				     (c = sb__conn_get(sh, q->requester)) == NULL)) {
		sb__stat_add(&sh->st.late_replies, 1);
		sb__buf_put(b, &sh->pool);
		return;
	}
	int more = f[SB_PREFIX_LEN + 2] & SB_F_MORE;
	/* Another router's answers pause their handler there, by request. */
	uint64_t producer = sender == SB__CLUSTER_EP ? sb__cluster_producer(q->rid) : sender;
	sb_patch_id(f, q->orig_id);
	sb__stat_add(&sh->st.replies, 1);
	if (c == NULL) { /* to the requester's router, before the entry goes */
		/* An answer the cluster link cannot take is lost, and the
		 * request with it: the handler stops, its router times out. */
		int lost = sb__cluster_answer(sh, q, sender, f, len) != 0;
		if (lost)
			single_cancel(sh, q);
		if (!more || lost) {
			req_count(sh, q,
				  !lost && f[SB_PREFIX_LEN + 1] == SB_REPLY ? END_REPLY
									    : END_ERROR);
			sb__req_finish(sh, q);
		}
		sb__buf_put(b, &sh->pool);
		return;
	}
	if (!more) {
		req_count(sh, q, f[SB_PREFIX_LEN + 1] == SB_REPLY ? END_REPLY : END_ERROR);
		sb__req_finish(sh, q);
	}
	if (sb__enqueue(sh, c, b, f, len) == 0)
		sb__flow_congest(sh, c, producer);
}

static const struct sb__req_ops single = {
	.reply = single_reply,
	.timeout = single_timeout,
	.cancel = single_cancel,
	.gone = single_gone,
	.free = single_free,
};

/* ---- what happens to any request ---------------------------------------- */

static void on_timeout(struct sb__timer *t)
{
	struct sb__req *q = SB__CONTAINER(t, struct sb__req, timer);
	q->ops->timeout(q->sh, q);
}

/* A REPLY or ERROR for a request owned by this shard. */
void sb__req_reply(struct sb__shard *sh, uint64_t sender, struct sb__buf *b, uint8_t *f,
		   uint32_t len)
{
	struct sb__req *q = sb__reqtab_get(&sh->reqs, sb__be64(f + SB_ID_OFFSET));

	if (q == NULL) { /* it ended: its terminal event has gone out */
		sb__stat_add(&sh->st.late_replies, 1);
		sb__buf_put(b, &sh->pool);
		return;
	}
	q->ops->reply(sh, q, sender, b, f, len);
}

void sb__req_cancel(struct sb__shard *sh, uint64_t requester, uint64_t id)
{
	uint64_t rid = sb__idmap_get(&sh->cancel, sb__idmap_key(requester, id));
	struct sb__req *q = rid ? sb__reqtab_get(&sh->reqs, rid) : NULL;
	if (q == NULL || q->requester != requester || q->orig_id != id)
		return; /* already ended: its terminal event is on its way */
	q->ops->cancel(sh, q);
	sb__req_fail(sh, q, SB_ECANCELLED, "cancelled by the requester");
}

void sb__req_gone(struct sb__shard *sh, uint64_t rid, uint64_t ep)
{
	struct sb__req *q = sb__reqtab_get(&sh->reqs, rid);
	if (q != NULL)
		q->ops->gone(sh, q, ep);
}

void sb__req_gone_all(struct sb__shard *sh, uint64_t ep)
{
	/* O(live requests): a disconnect is rare next to messages, and an
	 * index per handler would cost on every request. */
	for (struct sb__link *l = sh->req_list.next; l != &sh->req_list;) {
		struct sb__link *next = l->next;
		uint64_t next_rid =
			next != &sh->req_list ? SB__CONTAINER(next, struct sb__req, all)->rid : 0;
		struct sb__req *q = SB__CONTAINER(l, struct sb__req, all);
		q->ops->gone(sh, q, ep);
		/* Answering can drop a requester as a slow consumer, which ends
		 * its requests, `next` perhaps among them: then start over. Nothing
		 * is done twice: failed requests have left the list, and a
		 * broadcast's gone handler is already closed. */
		if (next != &sh->req_list && sb__reqtab_get(&sh->reqs, next_rid) == NULL)
			next = sh->req_list.next;
		l = next;
	}
}

void sb__req_requester_gone(struct sb__shard *sh, struct sb__conn *c)
{
	while (c->reqs.next != &c->reqs) {
		struct sb__req *q = SB__CONTAINER(c->reqs.next, struct sb__req, by_conn);
		q->ops->cancel(sh, q);
		sb__req_finish(sh, q);
	}
}

/* ---- refusals ------------------------------------------------------------ */

/* Whether rid (from the cancel map) is an open request of c with this id:
 * the map's key mixes the two, so a hit is checked. */
static int is_open(struct sb__shard *sh, const struct sb__conn *c, uint64_t id, uint64_t rid)
{
	const struct sb__req *q = rid ? sb__reqtab_get(&sh->reqs, rid) : NULL;
	return q != NULL && q->requester == c->ep && q->orig_id == id;
}

/* Two open requests of one connection cannot share an id: every answer to
 * either would carry it, and an answer to the second would end the first
 * in the requester's eyes. So the second is refused about the connection
 * (id 0), and no other answer may go before that check: the routed path
 * makes it as it enters the id in the cancel map (one probe, as before),
 * every answer to a request not yet entered makes it here (errors only).
 * @return 1 if the id is taken (and the request refused) */
int sb__id_taken(struct sb__shard *sh, struct sb__conn *c, uint64_t id, uint64_t rid)
{
	char why[128];

	if (!is_open(sh, c, id, rid))
		return 0;
	snprintf(why, sizeof why,
		 "REQUEST id %llu is already open on this connection: ids of open requests must "
		 "differ",
		 (unsigned long long)id);
	sb__send_error(sh, c, 0, SB_EINVAL, why, 0);
	return 1;
}

uint64_t sb__open_rid(struct sb__shard *sh, const struct sb__conn *c, uint64_t id)
{
	return sb__idmap_get(&sh->cancel, sb__idmap_key(c->ep, id));
}

/* A refused request's answer: to the program's callback, or to the
 * connection unless its id is taken (then that is what it hears). */
static void answer_error(struct sb__shard *sh, const struct sb__asker *a, uint64_t id, int err,
			 const char *text)
{
	if (a->origin != NULL)
		sb__cluster_refuse(sh, a->origin, id, err, text);
	else if (a->c == NULL)
		sb__local_fail(a->fn, a->ud, id, err, text);
	else if (!sb__id_taken(sh, a->c, id, sb__open_rid(sh, a->c, id)))
		sb__send_error(sh, a->c, id, err, text, 0);
}

/* What a refusal counts as, by its code alone: so a send and a request
 * refused for one reason count alike, wherever they were refused. */
static _Atomic uint64_t *refusal_counter(struct sb__stats *st, int err)
{
	switch (err) {
	case SB_EFORBIDDEN:
		return &st->forbidden;
	case SB_EINVAL:
		return &st->invalid_args;
	case SB_ENOHANDLER:
	case SB_ENOPEERS:
	case SB_EUNKNOWNPEER:
	case SB_ENOTCONNECTED:
		return &st->no_handler;
	case SB_EOVERLOADED:
		return &st->inflight_refused;
	default:
		return NULL;
	}
}

void sb__refuse(struct sb__shard *sh, const struct sb__asker *a, const struct sb_msg *m, int err,
		const char *why)
{
	_Atomic uint64_t *n = refusal_counter(&sh->st, err);
	/* A broadcast from another router that finds nobody here is no
	 * refusal: its own router counts the broadcast's end. */
	if (n != NULL && !(err == SB_ENOPEERS && a->origin != NULL))
		sb__stat_add(n, 1);
	if (m->kind == SB_REQUEST)
		answer_error(sh, a, m->id, err, why);
}

/* ---- forwarding ---------------------------------------------------------- */

/* A send to every peer a selector picks: each by its handler for the name
 * or its catch-all; one without is counted as a `to` would be. */
struct send_walk {
	struct sb__shard *sh;
	const struct sb__asker *a;
	const struct sb_msg *m;
	struct sb__buf *b;
	uint8_t *f;
	uint32_t len;
};

static void send_peer(void *ctx, const struct sb__peer *p)
{
	struct send_walk *w = ctx;
	char why[SB_TEXT_MAX + 1];
	const struct sb__endpoint *e = sb__peer_handler(w->sh, w->m->name, p->ep);
	int rc = e == NULL ? SB_ENOHANDLER : sb__admits(e, w->a->service, w->m, why);

	if (rc != 0) {
		if (rc == SB_ENOHANDLER)
			sb__stat_add(&w->sh->st.to_unhandled, 1);
		sb__refuse(w->sh, w->a, w->m, rc, why);
		return;
	}
	sb__buf_get(w->b); /* one reference per peer, no copy */
	sb__deliver(w->sh, p->ep, w->b, w->f, w->len);
}

void sb__forward_send(struct sb__shard *sh, const struct sb__asker *a, const struct sb_msg *m,
		      struct sb__buf *b, uint8_t *f, uint32_t len)
{
	char why[SB_TEXT_MAX + 1];
	struct sb__dest d;
	int rc = sb__reach(sh, a, m, &d, why);

	if (rc != 0) { /* fire-and-forget has nobody to tell: counted, dropped */
		sb__refuse(sh, a, m, rc, why);
		return;
	}
	if (d.kind == SB__DEST_ONE && a->c != NULL && sb__ep_shard(d.ep) != sh->id &&
	    sb__move_maybe(sh, a->c, d.r, d.ep, a->service))
		return; /* routed on the shard it moves to */
	sb_patch_u32(f, m->from_off, a->from);
	if (d.kind == SB__DEST_CLUSTER) {
		sb__cluster_send(sh, m, a->service, f, len);
		return;
	}
	int wide = sh->xs != NULL && a->origin == NULL; /* a broadcast to every router */
	if (d.kind == SB__DEST_PEERS) {
		struct send_walk w = {sh, a, m, b, f, len};
		sb__peers_select(sh, m->to, a->c != NULL ? a->c->ep : 0, send_peer, &w);
		if (wide)
			sb__xbcast_send(sh, m, a->service, f, len);
		return;
	}
	if (d.kind != SB__DEST_ALL) {
		if (d.kind == SB__DEST_ONE && d.r->stat != NULL)
			sb__rstat_inc(&d.r->stat->per[sh->id].sends);
		sb__buf_get(b);
		sb__deliver(sh, d.ep, b, f, len);
		return;
	}
	if (wide)
		sb__xbcast_send(sh, m, a->service, f, len);
	for (uint32_t i = 0; d.r != NULL && i < d.r->n; i++) {
		const struct sb__endpoint *e = &d.r->eps[i];
		if ((rc = sb__admits(e, a->service, m, why)) != 0) {
			if (rc != SB_EFORBIDDEN) /* an internal one is simply not this caller's */
				sb__refuse(sh, a, m, rc, why);
			continue;
		}
		if (d.r->stat != NULL)
			sb__rstat_inc(&d.r->stat->per[sh->id].sends);
		sb__buf_get(b); /* one reference per destination, no copy */
		sb__deliver(sh, e->ep, b, f, len);
	}
}

void sb__forward_request(struct sb__shard *sh, const struct sb__asker *a, const struct sb_msg *m,
			 struct sb__buf *b, uint8_t *f, uint32_t len)
{
	const struct sb_router_config *cfg = &sh->r->cfg;
	char why[SB_TEXT_MAX + 1];
	struct sb__dest d;
	uint64_t rid;
	int rc;

	if (sh->draining) {
		sb__refuse(sh, a, m, SB_EDRAINING, "the router is shutting down");
		return;
	}
	if ((rc = sb__reach(sh, a, m, &d, why)) != 0) {
		sb__refuse(sh, a, m, rc, why);
		return;
	}
	if (d.kind == SB__DEST_ONE && a->c != NULL && sb__ep_shard(d.ep) != sh->id &&
	    sb__move_maybe(sh, a->c, d.r, d.ep, a->service))
		return; /* routed on the shard it moves to */
	/* In a cluster, $sb.* asks every router: an entry of its own kind. */
	int gather = d.kind == SB__DEST_ROUTER && a->origin == NULL && sb__xadmin_wanted(sh, m);
	if (d.kind == SB__DEST_ROUTER && !gather) {
		if (a->origin != NULL)
			sb__refuse(sh, a, m, SB_EFORBIDDEN, "$sb.* answers on the router asked");
		else
			sb__admin_request(sh, a, m);
		return;
	}
	if (a->c != NULL && a->c->inflight >= cfg->max_inflight_per_conn) {
		snprintf(why, sizeof why,
			 "too many requests in flight on this connection (limit %u)",
			 cfg->max_inflight_per_conn);
		sb__refuse(sh, a, m, SB_EOVERLOADED, why);
		return;
	}
	/* A broadcast's handlers: those of the route the caller may reach, or
	 * the peers the selector picks. */
	struct sb__bcast *bc = NULL;
	int nothing = 0;
	if (d.kind == SB__DEST_ALL && (bc = sb__bcast_new(sh, d.r, a->service)) == NULL) {
		sb__refuse(sh, a, m, SB_ENOMEM, "out of memory");
		return;
	}
	int wide = sh->xs != NULL && a->origin == NULL; /* a broadcast to every router */
	if (d.kind == SB__DEST_PEERS &&
	    ((bc = sb__bcast_peers(sh, a, m, &nothing)) == NULL || (nothing && !wide))) {
		free(bc);
		if (nothing)
			snprintf(why, sizeof why, "no connected peer matches %.*s", (int)m->to.len,
				 (const char *)m->to.ptr);
		sb__refuse(sh, a, m, nothing ? SB_ENOPEERS : SB_ENOMEM,
			   nothing ? why : "out of memory");
		return;
	}
	uint64_t target = bc != NULL || gather         ? 0
			  : d.kind == SB__DEST_CLUSTER ? SB__CLUSTER_EP
						       : d.ep;
	struct sb__req *q = sb__reqtab_alloc(&sh->reqs, &rid);
	if (q == NULL) {
		free(bc);
		snprintf(why, sizeof why, "too many requests in flight on this shard (limit %u)",
			 cfg->max_inflight);
		sb__refuse(sh, a, m, SB_EOVERLOADED, why);
		return;
	}
	if (a->origin != NULL) {
		/* From another router: its cancels find it by its inbox
		 * (cluster.c), and its id is that router's, so it has no key
		 * here (one would never be deleted, and could take the key of a
		 * request of the embedding program's). */
	} else if (a->c == NULL) { /* its id, for sb_router_cancel(): unique by construction */
		if (sb__idmap_put(&sh->cancel, sb__idmap_key(SB__LOCAL_REQUESTER, m->id), rid) !=
		    0) {
			sb__reqtab_free(&sh->reqs, rid);
			free(bc);
			sb__refuse(sh, a, m, SB_ENOMEM, "out of memory");
			return;
		}
	} else { /* its id, for a CANCEL; an id in use is refused */
		uint64_t key = sb__idmap_key(a->c->ep, m->id), old = 0;
		if (sb__idmap_put_new(&sh->cancel, key, rid, &old) == 1) {
			if (sb__id_taken(sh, a->c, m->id, old)) {
				sb__reqtab_free(&sh->reqs, rid);
				free(bc);
				return;
			}
			sb__idmap_put(&sh->cancel, key, rid); /* another pair's key, alike */
		}
	}
	/* Across routers: the request's part of the cluster's (cluster.c). */
	if ((d.kind == SB__DEST_CLUSTER &&
	     sb__cluster_out(sh, q, m, a->service, d.miss, d.spill) != 0) ||
	    (a->origin != NULL && sb__cluster_in(sh, q, a->origin) != 0)) {
		if (a->c != NULL)
			sb__idmap_del(&sh->cancel, sb__idmap_key(a->c->ep, m->id));
		sb__reqtab_free(&sh->reqs, rid);
		sb__refuse(sh, a, m, SB_ENOMEM, "out of memory");
		return;
	}
	uint32_t timeout = m->timeout_ms ? m->timeout_ms : cfg->default_timeout_ms;
	if (timeout > cfg->max_timeout_ms)
		timeout = cfg->max_timeout_ms;
	q->rid = rid;
	q->requester = a->c != NULL        ? a->c->ep
		       : a->origin != NULL ? SB__REMOTE_REQUESTER
					   : SB__LOCAL_REQUESTER;
	q->handler = target;
	q->ops = bc != NULL ? &sb__bcast_ops : gather ? &sb__xadmin_ops : &single;
	q->bc = bc;
	q->orig_id = m->id;
	q->sh = sh;
	q->fn = a->fn;
	q->ud = a->ud;
	/* Per-route counts cover requests the router balanced over a name's
	 * handlers; those to a named peer or to all of them are not in them. */
	q->rs = d.kind == SB__DEST_ONE ? d.r->stat : NULL;
	q->t0_us = sh->now_us;
	if (q->rs != NULL) {
		sb__rstat_take(q->rs, sh->id); /* counted when it ends, route or not */
		sb__rstat_inc(&q->rs->per[sh->id].requests);
	}
	sb__link_init(&q->by_conn);
	if (a->c != NULL) {
		a->c->inflight++;
		sb__link_add(&a->c->reqs, &q->by_conn);
	}
	sb__link_add(&sh->req_list, &q->all);
	sb__timer_init(&q->timer, on_timeout);
	/* From another router, whose own timer ends it: ours only keeps the
	 * entry from outliving a cancel that was lost. */
	sb__timer_arm(&sh->wheel, &q->timer,
		      sh->now + timeout + (a->origin != NULL ? SB__CLUSTER_SLACK_MS : 0));
	if (bc == NULL && !gather)
		sb__load_add(sh, target, 1);
	sb__stat_add(&sh->st.inflight, 1);
	if (gather) { /* q may end here */
		sb__xadmin_ask(sh, q, m, timeout);
		return;
	}
	sb__stat_add(&sh->st.requests, 1);

	/* The frame goes on as received; only fixed-width fields change. */
	sb_patch_id(f, rid);
	sb_patch_u32(f, m->from_off, a->from);
	sb_patch_u32(f, m->timeout_ms_off, timeout);
	if (bc != NULL) { /* one frame, one reference per handler; q may end here */
		if (wide) /* a router's handlers here all internal: its answer if no other has one
			   */
			sb__xbcast_out(sh, q, m, a->service,
				       d.kind == SB__DEST_ALL && d.r != NULL && bc->n == 0
					       ? SB_EFORBIDDEN
					       : 0,
				       f, len);
		sb__bcast_fanout(sh, q, b, f, len);
		return;
	}
	sb__buf_get(b);
	sb__deliver(sh, target, b, f, len);
}
