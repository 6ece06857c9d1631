/* Broadcast requests. The requester's shard keeps one request entry with a
 * list of handlers; every handler gets the same frame by reference. Each
 * handler's final REPLY or ERROR goes to the requester with `peer` set and
 * MORE: the router writes a new small header and queues the handler's
 * payload bytes after it, uncopied. Handlers end one by one (final answer,
 * the shared deadline, disconnect), and when the last has, the requester
 * gets the one terminal event: a REPLY "$sb.all" with the counts. In a
 * cluster the other routers' parts join it (cluster_bcast.c), and a
 * broadcast from another router answers its router instead. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/bcast.h"
#include "router/balance.h"
#include "router/cluster.h"
#include "router/conn.h"
#include "router/deliver.h"
#include "router/flow.h"
#include "router/local.h"
#include "router/outq.h"
#include "router/peers.h"
#include "router/request.h"
#include "router/shard.h"

#define IN_PROCESS "(in-process)" /* the `peer` of an in-process handler, as in $sb.routes */

/* Room for n kids, and for their index if they are that many. */
static struct sb__bcast *bcast_alloc(uint32_t n)
{
	size_t kids = sizeof(struct sb__bcast) + n * sizeof(struct sb__bcast_kid);
	size_t keys = n > SB__BCAST_SCAN ? n * sizeof(struct sb__bcast_key) : 0;
	struct sb__bcast *bc = calloc(1, kids + keys);
	if (bc != NULL && keys > 0)
		bc->by_ep = (struct sb__bcast_key *)((char *)bc + kids);
	return bc;
}

static int key_cmp(const void *a, const void *b)
{
	uint64_t x = ((const struct sb__bcast_key *)a)->ep,
		 y = ((const struct sb__bcast_key *)b)->ep;
	return (x > y) - (x < y);
}

/* Once the kids are in (their order stays: it is the fan-out's). */
static void index_kids(struct sb__bcast *bc)
{
	if (bc->by_ep == NULL)
		return;
	for (uint32_t i = 0; i < bc->n; i++)
		bc->by_ep[i] = (struct sb__bcast_key){bc->kids[i].ep, i};
	qsort(bc->by_ep, bc->n, sizeof bc->by_ep[0], key_cmp);
}

struct sb__bcast *sb__bcast_new(struct sb__shard *sh, const struct sb__route *r, int service)
{
	uint32_t n = 0, nr = r != NULL ? r->n : 0;

	for (uint32_t i = 0; i < nr; i++)
		n += sb__admits(&r->eps[i], service, NULL, NULL) == 0;
	struct sb__bcast *bc = bcast_alloc(n);
	if (bc == NULL)
		return NULL;
	for (uint32_t i = 0; i < nr; i++) {
		if (sb__admits(&r->eps[i], service, NULL, NULL) != 0)
			continue;
		struct sb__bcast_kid *k = &bc->kids[bc->n++];
		uint64_t ep = r->eps[i].ep;
		const char *name = sb__ep_shard(ep) == SB__LOCAL_SHARD ? IN_PROCESS
								       : sb__peers_name_of(sh, ep);
		/* Known here: a peer's PEER_UP travels before its routes. */
		strcpy(k->peer, name != NULL ? name : "(unknown)");
		k->ep = ep;
	}
	bc->left = bc->n;
	index_kids(bc);
	return bc;
}

/* The selected peers, counted, then filled in (sb__peers_select twice). */
struct peers_walk {
	struct sb__shard *sh;
	const struct sb__asker *a;
	const struct sb_msg *m;
	struct sb__bcast *bc; /* NULL: counting */
	uint32_t n;
};

static void walk_peer(void *ctx, const struct sb__peer *p)
{
	struct peers_walk *w = ctx;
	char why[SB_TEXT_MAX + 1];

	if (w->bc == NULL) {
		w->n++;
		return;
	}
	if (w->bc->n == w->n)
		return; /* a peer met since the count (none can be: one turn) */
	struct sb__bcast_kid *k = &w->bc->kids[w->bc->n++];
	const struct sb__endpoint *e = sb__peer_handler(w->sh, w->m->name, p->ep);
	k->ep = p->ep;
	memcpy(k->peer, p->name, p->len + 1);
	k->err = e == NULL ? SB_ENOHANDLER : sb__admits(e, w->a->service, w->m, why);
}

struct sb__bcast *sb__bcast_peers(struct sb__shard *sh, const struct sb__asker *a,
				  const struct sb_msg *m, int *nothing)
{
	struct peers_walk w = {sh, a, m, NULL, 0};
	uint64_t self = a->c != NULL ? a->c->ep : 0;

	sb__peers_select(sh, m->to, self, walk_peer, &w);
	*nothing = w.n == 0;
	if ((w.bc = bcast_alloc(w.n)) == NULL)
		return NULL;
	sb__peers_select(sh, m->to, self, walk_peer, &w);
	w.bc->left = w.bc->n;
	index_kids(w.bc);
	return w.bc;
}

/* The kid of handler ep, or NULL. Every answer and every handler lost
 * asks: a linear scan would make a broadcast O(handlers^2). */
static struct sb__bcast_kid *kid_of(struct sb__bcast *bc, uint64_t ep)
{
	if (bc->by_ep == NULL) {
		for (uint32_t i = 0; i < bc->n; i++)
			if (bc->kids[i].ep == ep)
				return &bc->kids[i];
		return NULL;
	}
	uint32_t lo = 0, hi = bc->n;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (bc->by_ep[mid].ep < ep)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < bc->n && bc->by_ep[lo].ep == ep ? &bc->kids[bc->by_ep[lo].kid] : NULL;
}

/* Queueing to the requester may drop it as a slow consumer, which ends
 * its requests: after every emit, q may be gone. */
static int alive(struct sb__shard *sh, const struct sb__req *q, uint64_t rid)
{
	return sb__reqtab_get(&sh->reqs, rid) == q;
}

static void kid_end(struct sb__shard *sh, struct sb__bcast *bc, struct sb__bcast_kid *k,
		    uint32_t *counter)
{
	k->open = 0;
	bc->left--;
	(*counter)++;
	sb__load_add(sh, k->ep, -1);
}

/* A result for the requester. With pb, m's header is encoded alone and the
 * payload (in pb, whose reference is taken over) queued after it, uncopied;
 * without, m is encoded whole. */
static void emit(struct sb__shard *sh, struct sb__req *q, const struct sb_msg *m,
		 struct sb__buf *pb, uint64_t producer)
{
	if (q->requester == SB__REMOTE_REQUESTER) { /* to its router (cluster_bcast.c) */
		sb__xbcast_emit(sh, q, m, pb, producer);
		return;
	}
	if (q->requester == SB__LOCAL_REQUESTER) {
		sb__local_reply_frame(q->fn, q->ud, q->orig_id, m);
		if (pb != NULL)
			sb__buf_put(pb, &sh->pool);
		return;
	}
	struct sb__conn *c = sb__conn_get(sh, q->requester);
	if (c == NULL) {
		if (pb != NULL)
			sb__buf_put(pb, &sh->pool);
		return;
	}
	if (pb == NULL) {
		sb__send_msg(sh, c, m);
		return;
	}
	uint8_t head[SB_PREFIX_LEN + SB_HEADER_MAX];
	long n = sb_encode_head(m, head, sizeof head);
	struct sb__buf *h = n > 0 ? sb__buf_heap((size_t)n) : NULL;
	if (h == NULL) {
		sb__buf_put(pb, &sh->pool);
		return;
	}
	memcpy(h->data, head, (size_t)n);
	if (sb__enqueue(sh, c, h, h->data, (uint32_t)n) != 0) {
		sb__buf_put(pb, &sh->pool);
		return;
	}
	if (sb__enqueue(sh, c, pb, m->payload.ptr, m->payload.len) == 0)
		sb__flow_congest(sh, c, producer);
}

/* A peer a broadcast to peers did not ask: its result, at once. */
static void kid_refused(struct sb__shard *sh, struct sb__req *q, struct sb__bcast_kid *k,
			const uint8_t *f, uint32_t len);

/* An ERROR about one handler, `peer` set, MORE: the request goes on. */
static void emit_error(struct sb__shard *sh, struct sb__req *q, const struct sb__bcast_kid *k,
		       int err, const char *text)
{
	struct sb_msg m = {.kind = SB_ERROR, .flags = SB_F_MORE, .id = q->orig_id};
	m.code = (uint32_t)-err;
	m.text = (struct sb_view){(const uint8_t *)text, (uint32_t)strlen(text)};
	m.peer = (struct sb_view){(const uint8_t *)k->peer, (uint32_t)strlen(k->peer)};
	emit(sh, q, &m, NULL, 0);
}

static size_t put_uint(uint8_t *p, uint32_t v)
{
	if (v < 128) {
		p[0] = (uint8_t)v;
		return 1;
	}
	p[0] = 0xce;
	p[1] = (uint8_t)(v >> 24);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 8);
	p[4] = (uint8_t)v;
	return 5;
}

static size_t put_key(uint8_t *p, const char *k)
{
	size_t n = strlen(k);
	p[0] = (uint8_t)(0xa0 | n);
	memcpy(p + 1, k, n);
	return n + 1;
}

/* Once the last handler has ended: the aggregate, the request's terminal
 * event. */
static void maybe_end(struct sb__shard *sh, struct sb__req *q)
{
	struct sb__bcast *bc = q->bc;
	uint8_t pl[64];
	size_t n = 0;

	if (bc->left > 0 || bc->hold || bc->xwait > 0)
		return;
	if (bc->n + bc->xn == 0) { /* nobody on any router (a local broadcast has one) */
		sb__xbcast_none(sh, q);
		return;
	}
	/* {"peers": N, "ok": n, "errors": n, "timeouts": n, "gone": n} */
	const struct {
		const char *key;
		uint32_t v;
	} counts[] = {{"peers", bc->n + bc->xn},
		      {"ok", bc->ok},
		      {"errors", bc->errors},
		      {"timeouts", bc->timeouts},
		      {"gone", bc->gone}};
	pl[n++] = 0x85;
	for (size_t i = 0; i < 5; i++) {
		n += put_key(pl + n, counts[i].key);
		n += put_uint(pl + n, counts[i].v);
	}
	struct sb_msg m = {.kind = SB_REPLY, .id = q->orig_id};
	m.outcome = (struct sb_view){(const uint8_t *)"$sb.all", 7};
	m.payload = (struct sb_view){pl, (uint32_t)n};
	if (q->requester == SB__REMOTE_REQUESTER) { /* its inbox goes with the entry */
		emit(sh, q, &m, NULL, 0);
		sb__req_finish(sh, q);
		return;
	}
	/* The entry goes first: a requester dropped while we queue must not
	 * find it and end it a second time. */
	struct sb__req copy = *q;
	copy.bc = NULL;
	sb__req_finish(sh, q);
	emit(sh, &copy, &m, NULL, 0);
}

void sb__bcast_fanout(struct sb__shard *sh, struct sb__req *q, struct sb__buf *b, const uint8_t *f,
		      uint32_t len)
{
	struct sb__bcast *bc = q->bc;
	uint64_t rid = q->rid;

	/* An in-process handler answers inside sb__deliver(), and the
	 * requester may be dropped on the way: hold the aggregate until every
	 * copy is out, and stop if the request ended meanwhile. */
	bc->hold = 1;
	if (q->requester == SB__REMOTE_REQUESTER) /* its router learns who is asked */
		sb__xbcast_start(sh, q);
	for (uint32_t i = 0; i < bc->n; i++) {
		struct sb__bcast_kid *k = &bc->kids[i];
		if (k->err != 0) {
			kid_refused(sh, q, k, f, len);
			if (!alive(sh, q, rid))
				return;
			continue;
		}
		k->open = 1;
		sb__load_add(sh, k->ep, 1);
		sb__buf_get(b); /* one reference per handler, no copy */
		sb__deliver(sh, k->ep, b, f, len);
		if (!alive(sh, q, rid))
			return;
	}
	bc->hold = 0;
	maybe_end(sh, q);
}

static void kid_refused(struct sb__shard *sh, struct sb__req *q, struct sb__bcast_kid *k,
			const uint8_t *f, uint32_t len)
{
	char why[SB_TEXT_MAX + 1] = "no handler for this name";
	const struct sb__endpoint *e;
	struct sb_msg m;

	q->bc->left--;
	q->bc->errors++;
	if (k->err == SB_ENOHANDLER)
		sb__stat_add(&sh->st.to_unhandled, 1);
	else if (k->err == SB_EFORBIDDEN)
		snprintf(why, sizeof why, "this peer handles the name for services only");
	else if (sb_decode(f, len, 0, &m, NULL) != 0 || /* the schema's own words again */
		 (e = sb__peer_handler(sh, m.name, k->ep)) == NULL ||
		 sb__admits(e, 1, &m, why) != SB_EINVAL)
		snprintf(why, sizeof why, "the arguments break this peer's schema");
	emit_error(sh, q, k, k->err, why);
}

static void bcast_reply(struct sb__shard *sh, struct sb__req *q, uint64_t sender, struct sb__buf *b,
			uint8_t *f, uint32_t len)
{
	struct sb__bcast *bc = q->bc;
	struct sb__bcast_kid *k = kid_of(bc, sender);
	struct sb_msg m;
	uint64_t rid = q->rid;

	if (k == NULL || !k->open || sb_decode(f, len, 0, &m, NULL) != 0) {
		sb__stat_add(&sh->st.late_replies, 1);
		sb__buf_put(b, &sh->pool);
		return;
	}
	int final = m.kind == SB_ERROR || !(m.flags & SB_F_MORE);
	/* A progress update would reach the requester as REPLY + MORE + peer,
	 * exactly what a handler's final result looks like there: it is not
	 * passed on (docs/protocol.md). Chunks are told apart by CHUNK. */
	if (!final && !(m.flags & SB_F_CHUNK)) {
		sb__buf_put(b, &sh->pool);
		return;
	}
	if (final)
		kid_end(sh, bc, k, m.kind == SB_REPLY ? &bc->ok : &bc->errors);
	m.flags |= SB_F_MORE;
	m.id = q->orig_id;
	m.peer = (struct sb_view){(const uint8_t *)k->peer, (uint32_t)strlen(k->peer)};
	sb__stat_add(&sh->st.replies, 1);
	emit(sh, q, &m, b, sender);
	if (final && alive(sh, q, rid))
		maybe_end(sh, q);
}

static void bcast_gone(struct sb__shard *sh, struct sb__req *q, uint64_t ep)
{
	struct sb__bcast *bc = q->bc;
	struct sb__bcast_kid *k = kid_of(bc, ep);
	uint64_t rid = q->rid;

	if (k == NULL || !k->open)
		return;
	kid_end(sh, bc, k, &bc->gone);
	emit_error(sh, q, k, SB_EPEERGONE, "the handler disconnected");
	if (alive(sh, q, rid))
		maybe_end(sh, q);
}

/* One CANCEL frame, shared by every handler that gets it. */
static struct sb__buf *cancel_frame(uint64_t rid, uint32_t *len)
{
	struct sb_msg m = {.kind = SB_CANCEL, .id = rid};
	long n = sb_encoded_size(&m);
	struct sb__buf *b = n > 0 ? sb__buf_heap((size_t)n) : NULL;
	if (b != NULL) {
		sb_encode(&m, b->data, (size_t)n);
		*len = (uint32_t)n;
	}
	return b;
}

static void bcast_timeout(struct sb__shard *sh, struct sb__req *q)
{
	struct sb__bcast *bc = q->bc;
	uint64_t rid = q->rid;
	uint32_t len = 0;
	struct sb__buf *cancel = cancel_frame(rid, &len);

	for (uint32_t i = 0; i < bc->n; i++) {
		struct sb__bcast_kid *k = &bc->kids[i];
		if (!k->open)
			continue;
		if (cancel != NULL) { /* the handler may stop working on it */
			sb__buf_get(cancel);
			sb__deliver(sh, k->ep, cancel, cancel->data, len);
		}
		kid_end(sh, bc, k, &bc->timeouts);
		sb__stat_add(&sh->st.timeouts, 1);
		emit_error(sh, q, k, SB_ETIMEOUT, "no final reply within the request's timeout");
		if (!alive(sh, q, rid))
			break;
	}
	if (cancel != NULL)
		sb__buf_put(cancel, &sh->pool);
	if (alive(sh, q, rid) && bc->xb != NULL)
		sb__xbcast_timeout(sh, q); /* the other routers' handlers too */
	if (alive(sh, q, rid))
		maybe_end(sh, q);
}

static void bcast_cancel(struct sb__shard *sh, struct sb__req *q)
{
	struct sb__bcast *bc = q->bc;
	uint32_t len = 0;
	struct sb__buf *cancel = cancel_frame(q->rid, &len);

	for (uint32_t i = 0; i < bc->n; i++) {
		struct sb__bcast_kid *k = &bc->kids[i];
		if (!k->open)
			continue;
		if (cancel != NULL) {
			sb__buf_get(cancel);
			sb__deliver(sh, k->ep, cancel, cancel->data, len);
		}
		k->open = 0;
		sb__load_add(sh, k->ep, -1);
	}
	if (cancel != NULL)
		sb__buf_put(cancel, &sh->pool);
	if (bc->xb != NULL)
		sb__xbcast_cancel(sh, q);
}

static void bcast_free(struct sb__shard *sh, struct sb__req *q)
{
	struct sb__bcast *bc = q->bc;

	for (uint32_t i = 0; i < bc->n; i++)
		if (bc->kids[i].open)
			sb__load_add(sh, bc->kids[i].ep, -1);
	if (bc->xb != NULL)
		sb__xbcast_free(bc->xb);
	free(bc);
	q->bc = NULL;
}

void sb__bcast_emit(struct sb__shard *sh, struct sb__req *q, const struct sb_msg *m)
{
	emit(sh, q, m, NULL, 0);
}

void sb__bcast_settle(struct sb__shard *sh, struct sb__req *q)
{
	maybe_end(sh, q);
}

const struct sb__req_ops sb__bcast_ops = {
	.reply = bcast_reply,
	.timeout = bcast_timeout,
	.cancel = bcast_cancel,
	.gone = bcast_gone,
	.free = bcast_free,
};
