/* Broadcasts across routers (docs/cluster.md, "Broadcast"). A broadcast
 * (REQUEST or SEND with BROADCAST) from a requester here is published,
 * frame unchanged, to sb.b.<name>, which every router subscribes (all its
 * shards in one queue group of its own: one copy per router). Each other
 * router runs it as a broadcast of its own, whose requester is remote
 * (bcast.c): its first word is a part's list of the handlers it asks
 * (REPLY, MORE, outcome "$sb.part", payload their names), then each one's
 * result as a requester here would get it (`peer` set, MORE), then its own
 * aggregate ("$sb.all"); or, with nobody there, the refusal a requester
 * would get (`no connected peers`, `forbidden`). Every message names the
 * router (Sb-Hand), so the requester's shard keeps one part per router:
 * the routers it has heard from within the dead time are waited for, a
 * router that answers anyway is taken in while the broadcast lasts. A part
 * that ends normally adds its router's counts to the aggregate; one whose
 * router goes silent ends its handlers still at it with `peer gone`, and
 * at the deadline with `timeout` (and a cancel to sb.x.b, which every
 * shard hears: the one holding the part cancels its handlers). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/nats.h"
#include "proto/mp.h"
#include "router/bcast.h"
#include "router/cluster-int.h"
#include "router/cluster.h"
#include "router/cluster_presence.h"
#include "router/request.h"
#include "router/router-t.h"
#include "router/shard.h"

#define PART "$sb.part" /* a part's first word: the handlers it asks */
#define ALL  "$sb.all"  /* a part's (and the broadcast's) aggregate */

/* One handler of another router's part, as the requester's shard knows it. */
struct xkid {
	uint8_t open; /* owes a final result */
	char peer[SB_PEER_MAX + 1];
};

/* Another router's part of a broadcast of ours. */
struct xpart {
	uint64_t router; /* its id's hash */
	enum { WAITING, OPEN, DONE } state;
	uint32_t n, left;  /* its handlers, those still at it */
	uint32_t ok, errs; /* final results so far (if it dies before its aggregate) */
	struct xkid *kids;
};

struct sb__xbcast {
	uint32_t nparts, cap;
	struct xpart *parts;
	int none;                  /* the answer if no router has anyone */
	char why[SB_TEXT_MAX + 1]; /* ...its text */
	char inbox[96];            /* our inbox for it, a cancel's reply subject */
};

/* ---- the requester's side ------------------------------------------------ */

static int alive(struct sb__shard *sh, const struct sb__req *q, uint64_t rid)
{
	return sb__reqtab_get(&sh->reqs, rid) == q;
}

static void part_end(struct sb__bcast *bc, struct xpart *p)
{
	if (p->state == DONE)
		return;
	p->state = DONE;
	bc->xwait--;
	free(p->kids);
	p->kids = NULL;
}

static struct xpart *part_add(struct sb__xbcast *xb, uint64_t h)
{
	if (xb->nparts == xb->cap) {
		uint32_t cap = xb->cap ? xb->cap * 2 : 4;
		struct xpart *p = realloc(xb->parts, cap * sizeof *p);
		if (p == NULL)
			return NULL;
		xb->parts = p;
		xb->cap = cap;
	}
	struct xpart *p = &xb->parts[xb->nparts++];
	*p = (struct xpart){.router = h, .state = WAITING};
	return p;
}

void sb__xbcast_out(struct sb__shard *sh, struct sb__req *q, const struct sb_msg *m, int service,
		    int local_err, const uint8_t *f, uint32_t len)
{
	struct sb__xshard *xs = sh->xs;
	struct sb__xbcast *xb = calloc(1, sizeof *xb);
	char subj[SUBJ_MAX];

	if (xb == NULL)
		return; /* this router's handlers only */
	q->bc->xb = xb;
	xb->none = local_err ? local_err : SB_ENOPEERS;
	if (local_err == SB_EFORBIDDEN)
		snprintf(xb->why, sizeof xb->why, "%.*s is internal: only services may call it",
			 (int)m->name.len, (const char *)m->name.ptr);
	else if (m->to.ptr != NULL)
		snprintf(xb->why, sizeof xb->why, "no connected peer matches %.*s", (int)m->to.len,
			 (const char *)m->to.ptr);
	else
		snprintf(xb->why, sizeof xb->why, "no connected peer handles this name");
	snprintf(xb->inbox, sizeof xb->inbox, "%s.%" PRIu64, xs->inbox, q->rid);
	/* A name that is not a subject is this router's own. */
	if (sb__cluster_subject(subj, "sb.b.", m->name.ptr, m->name.len) != 0)
		return;
	for (uint32_t i = 0; i < xs->nlive; i++)
		if (part_add(xb, xs->live[i].router) == NULL)
			break; /* out of memory: fewer waited for, more taken in */
	size_t hn;
	const uint8_t *hdr = sb__xpres_hdr(sh, f, service, &hn);
	if (sb__nats_pub(xs->nc, subj, xb->inbox, hdr, hn, f, len) != 0) {
		xb->nparts = 0; /* cut off: this router's handlers only */
		return;
	}
	q->bc->xwait = xb->nparts;
	sb__cluster_congest(sh, sh->producer != NULL ? sh->producer->ep : 0);
}

void sb__xbcast_send(struct sb__shard *sh, const struct sb_msg *m, int service, const uint8_t *f,
		     uint32_t len)
{
	struct sb__xshard *xs = sh->xs;
	char subj[SUBJ_MAX];
	size_t hn;
	const uint8_t *hdr = sb__xpres_hdr(sh, f, service, &hn);

	/* The reply subject only names our router (we hear sb.b.> too); nobody
	 * answers a SEND. */
	if (sb__cluster_subject(subj, "sb.b.", m->name.ptr, m->name.len) == 0 &&
	    sb__nats_pub(xs->nc, subj, xs->inbox, hdr, hn, f, len) == 0)
		sb__cluster_congest(sh, sh->producer != NULL ? sh->producer->ep : 0);
}

/* A per-handler ERROR (MORE, `peer` set) for one of a part's handlers. */
static void kid_error(struct sb__shard *sh, struct sb__req *q, const struct xkid *k, int err,
		      const char *text)
{
	struct sb_msg m = {.kind = SB_ERROR, .flags = SB_F_MORE, .id = q->orig_id};
	m.code = (uint32_t)-err;
	m.text = (struct sb_view){(const uint8_t *)text, (uint32_t)strlen(text)};
	m.peer = (struct sb_view){(const uint8_t *)k->peer, (uint32_t)strlen(k->peer)};
	sb__bcast_emit(sh, q, &m);
}

/* Part p ends without its aggregate: its handlers still at it end with
 * err. 0 if q ended meanwhile (its requester dropped). */
static int part_cut(struct sb__shard *sh, struct sb__req *q, struct xpart *p, int err,
		    const char *text)
{
	struct sb__bcast *bc = q->bc;
	uint64_t rid = q->rid;

	if (p->state == OPEN)
		for (uint32_t i = 0; i < p->n; i++) {
			if (!p->kids[i].open)
				continue;
			p->kids[i].open = 0;
			if (err == SB_ETIMEOUT)
				sb__stat_add(&sh->st.timeouts, 1);
			kid_error(sh, q, &p->kids[i], err, text);
			if (!alive(sh, q, rid))
				return 0;
		}
	bc->xn += p->n;
	bc->ok += p->ok;
	bc->errors += p->errs;
	*(err == SB_ETIMEOUT ? &bc->timeouts : &bc->gone) += p->left;
	part_end(bc, p);
	return 1;
}

void sb__xbcast_gone(struct sb__shard *sh, struct sb__req *q, uint64_t h)
{
	struct sb__xbcast *xb = q->bc->xb;
	uint64_t rid = q->rid;

	if (xb == NULL)
		return;
	for (uint32_t i = 0; i < xb->nparts; i++) {
		struct xpart *p = &xb->parts[i];
		if (p->state == DONE || (h != 0 && p->router != h))
			continue;
		if (!part_cut(sh, q, p, SB_EPEERGONE, "the handler's router stopped answering"))
			return;
	}
	if (alive(sh, q, rid))
		sb__bcast_settle(sh, q);
}

void sb__xbcast_timeout(struct sb__shard *sh, struct sb__req *q)
{
	struct sb__xbcast *xb = q->bc->xb;

	sb__xbcast_cancel(sh, q);
	for (uint32_t i = 0; i < xb->nparts; i++)
		if (xb->parts[i].state != DONE &&
		    !part_cut(sh, q, &xb->parts[i], SB_ETIMEOUT,
			      "no final reply within the request's timeout"))
			return;
}

void sb__xbcast_cancel(struct sb__shard *sh, struct sb__req *q)
{
	struct sb__xbcast *xb = q->bc->xb;
	int open = 0;

	for (uint32_t i = 0; i < xb->nparts; i++)
		open |= xb->parts[i].state != DONE;
	/* Every shard of every router hears it; the one holding the part
	 * (its entry keyed by our inbox) cancels its handlers. */
	if (open && sh->xs != NULL)
		sb__nats_pub(sh->xs->nc, "sb.x.b", xb->inbox, NULL, 0, NULL, 0);
}

void sb__xbcast_none(struct sb__shard *sh, struct sb__req *q)
{
	struct sb__xbcast *xb = q->bc->xb;
	char why[SB_TEXT_MAX + 1];
	int err = xb != NULL ? xb->none : SB_ENOPEERS;

	snprintf(why, sizeof why, "%s",
		 xb != NULL ? xb->why : "no connected peer handles this name");
	sb__stat_add(err == SB_EFORBIDDEN ? &sh->st.forbidden
		     : err == SB_EINVAL   ? &sh->st.invalid_args
					  : &sh->st.no_handler,
		     1);
	sb__req_fail(sh, q, err, why);
}

void sb__xbcast_free(struct sb__xbcast *xb)
{
	for (uint32_t i = 0; i < xb->nparts; i++)
		free(xb->parts[i].kids);
	free(xb->parts);
	free(xb);
}

/* "$sb.part": the handlers a part asks, by name. */
static int part_open(struct xpart *p, const struct sb_msg *m)
{
	const uint8_t *s = m->payload.ptr, *end = s + m->payload.len;
	struct sb__mp_item it;

	if (sb__mp_read(&s, end, &it) != SB__MP_OK || it.type != SB__MP_ARRAY)
		return -1;
	struct xkid *kids = calloc(it.len ? it.len : 1, sizeof *kids);
	if (kids == NULL)
		return -1;
	uint32_t n = it.len;
	for (uint32_t i = 0; i < n; i++) {
		if (sb__mp_read(&s, end, &it) != SB__MP_OK || it.type != SB__MP_STR ||
		    it.len > SB_PEER_MAX) {
			free(kids);
			return -1;
		}
		memcpy(kids[i].peer, it.body, it.len);
		kids[i].open = 1;
	}
	p->kids = kids;
	p->n = p->left = n;
	p->state = OPEN;
	return 0;
}

/* "$sb.all": a part's counts, added to the broadcast's. */
static void part_done(struct sb__bcast *bc, struct xpart *p, const struct sb_msg *m)
{
	const uint8_t *s = m->payload.ptr, *end = s + m->payload.len;
	struct sb__mp_item it, k, v;
	uint32_t c[5] = {0};
	static const char *const keys[5] = {"peers", "ok", "errors", "timeouts", "gone"};

	if (sb__mp_read(&s, end, &it) == SB__MP_OK && it.type == SB__MP_MAP)
		for (uint32_t i = 0; i < it.len; i++) {
			if (sb__mp_read(&s, end, &k) != SB__MP_OK ||
			    sb__mp_read(&s, end, &v) != SB__MP_OK)
				break;
			for (int j = 0; j < 5; j++)
				if (k.type == SB__MP_STR && v.type == SB__MP_UINT &&
				    k.len == strlen(keys[j]) && memcmp(k.body, keys[j], k.len) == 0)
					c[j] = (uint32_t)v.u;
		}
	bc->xn += c[0];
	bc->ok += c[1];
	bc->errors += c[2];
	bc->timeouts += c[3];
	bc->gone += c[4];
	part_end(bc, p);
}

static struct xkid *kid_named(struct xpart *p, struct sb_view peer)
{
	for (uint32_t i = 0; p->state == OPEN && i < p->n; i++)
		if (p->kids[i].open && strlen(p->kids[i].peer) == peer.len &&
		    memcmp(p->kids[i].peer, peer.ptr, peer.len) == 0)
			return &p->kids[i];
	return NULL;
}

static int is(struct sb_view v, const char *s)
{
	return v.ptr != NULL && v.len == strlen(s) && memcmp(v.ptr, s, v.len) == 0;
}

void sb__xbcast_in(struct sb__shard *sh, struct sb__req *q, const struct sb__nats_msg *nm)
{
	struct sb__bcast *bc = q->bc;
	struct sb__xbcast *xb = bc->xb;
	uint64_t rid = q->rid;
	const char *hand;
	size_t hand_len;
	struct sb_msg m;

	if (xb == NULL || q->requester == SB__REMOTE_REQUESTER) {
		sb__stat_add(&sh->st.late_replies, nm->status == 0);
		return;
	}
	if (nm->status != 0) /* no responders: not even we hear sb.b.> */
		return;
	if (nm->hdr_len == 0 ||
	    !sb__nats_hdr_get(nm->hdr, nm->hdr_len, "Sb-Hand", &hand, &hand_len) ||
	    nm->data_len < SB_PREFIX_LEN || nm->data_len > UINT32_MAX ||
	    sb_decode(nm->data, (uint32_t)nm->data_len, 0, &m, NULL) != 0 ||
	    (m.kind != SB_REPLY && m.kind != SB_ERROR) || m.id != rid) {
		sb__log(&sh->r->log, 1, "shard %u: cluster: a malformed broadcast answer on %.*s",
			sh->id, (int)nm->subject_len, nm->subject);
		return;
	}
	const char *dot = memchr(hand, '.', hand_len);
	uint64_t h = sb__cluster_fnv(hand, dot != NULL ? (size_t)(dot - hand) : hand_len);
	sb__cluster_heard(sh, h);
	struct xpart *p = NULL;
	for (uint32_t i = 0; i < xb->nparts && p == NULL; i++)
		if (xb->parts[i].router == h)
			p = &xb->parts[i];
	/* A router we had not heard from yet: taken in while the broadcast
	 * waits for others (once it has ended, its part is too late). */
	if (p == NULL && (p = part_add(xb, h)) != NULL)
		bc->xwait++;
	if (p == NULL || p->state == DONE) {
		sb__stat_add(&sh->st.late_replies, 1);
		return;
	}
	int more = m.flags & SB_F_MORE;
	if (m.kind == SB_REPLY && more && m.peer.ptr == NULL && is(m.outcome, PART)) {
		if (p->state == WAITING && part_open(p, &m) != 0)
			sb__log(&sh->r->log, 1, "shard %u: cluster: a malformed broadcast part",
				sh->id);
		return;
	}
	if (more && m.peer.ptr != NULL) { /* one handler's result, or a chunk of it */
		struct xkid *k = kid_named(p, m.peer);
		if (k == NULL) {
			sb__stat_add(&sh->st.late_replies, 1);
			return;
		}
		if (m.kind == SB_ERROR || !(m.flags & SB_F_CHUNK)) {
			k->open = 0;
			p->left--;
			(*(m.kind == SB_REPLY ? &p->ok : &p->errs))++;
		}
		m.id = q->orig_id;
		sb__stat_add(&sh->st.replies, 1);
		sb__bcast_emit(sh, q, &m);
		return;
	}
	if (m.kind == SB_REPLY && !more && is(m.outcome, ALL))
		part_done(bc, p, &m);
	else if (m.kind == SB_ERROR && !more) { /* nobody there for this caller */
		if (m.code != (uint32_t)-SB_ENOPEERS && xb->none == SB_ENOPEERS) {
			xb->none = -(int)m.code;
			snprintf(xb->why, sizeof xb->why, "%.*s", (int)m.text.len,
				 (const char *)m.text.ptr);
		}
		part_end(bc, p);
	} else {
		return;
	}
	if (alive(sh, q, rid))
		sb__bcast_settle(sh, q);
}

/* ---- the handler's side -------------------------------------------------- */

/* A word of broadcast q to its router: every one names us (Sb-Hand). */
static void publish(struct sb__shard *sh, struct sb__req *q, const struct sb_msg *m,
		    uint64_t producer)
{
	struct sb__xshard *xs = sh->xs;
	long n = sb_encoded_size(m);
	uint8_t *f = n > 0 ? malloc((size_t)n) : NULL;

	if (f == NULL || xs == NULL || q->x == NULL) {
		free(f);
		return;
	}
	sb_encode(m, f, (size_t)n);
	/* Refused (the link down or full): the result is lost, and its
	 * requester's router ends the handler's part at the deadline. */
	if (sb__nats_pub(xs->nc, q->x->s, NULL, xs->hand_hdr, xs->hand_hdr_len, f, (size_t)n) == 0)
		sb__cluster_congest(sh, producer);
	free(f);
}

void sb__xbcast_start(struct sb__shard *sh, struct sb__req *q)
{
	struct sb__bcast *bc = q->bc;
	size_t cap = 5;
	for (uint32_t i = 0; i < bc->n; i++)
		cap += 2 + strlen(bc->kids[i].peer);
	uint8_t *pl = malloc(cap), *p = pl;
	if (pl == NULL)
		return;
	*p++ = 0xdd; /* array 32 */
	sb__put_be32(p, bc->n);
	p += 4;
	for (uint32_t i = 0; i < bc->n; i++) {
		size_t len = strlen(bc->kids[i].peer);
		*p++ = 0xd9; /* str 8: a peer name is shorter than 256 */
		*p++ = (uint8_t)len;
		memcpy(p, bc->kids[i].peer, len);
		p += len;
	}
	struct sb_msg m = {.kind = SB_REPLY, .flags = SB_F_MORE, .id = q->orig_id};
	m.outcome = (struct sb_view){(const uint8_t *)PART, (uint32_t)strlen(PART)};
	m.payload = (struct sb_view){pl, (uint32_t)(p - pl)};
	publish(sh, q, &m, 0);
	free(pl);
}

void sb__xbcast_emit(struct sb__shard *sh, struct sb__req *q, const struct sb_msg *m,
		     struct sb__buf *pb, uint64_t producer)
{
	publish(sh, q, m, producer);
	if (pb != NULL)
		sb__buf_put(pb, &sh->pool);
}

/* sb.b.<name>: another router's broadcast, run here as ours would be. */
static void on_bcast(void *ud, const struct sb__nats_msg *nm)
{
	struct sb__shard *sh = ud;
	const char *me = sh->r->xr->id;
	size_t me_len = strlen(me);
	struct sb_msg m;

	/* Ours comes back to us too: its reply subject names its router. */
	if (nm->reply == NULL ||
	    (nm->reply_len > 5 + me_len && memcmp(nm->reply + 5, me, me_len) == 0 &&
	     nm->reply[5 + me_len] == '.'))
		return;
	int bad;
	struct sb__buf *b = sb__cluster_frame(sh, nm, &m, &bad);
	if (b == NULL && !bad)
		return;
	if (b == NULL || (m.kind != SB_SEND && m.kind != SB_REQUEST) ||
	    !(m.flags & SB_F_BROADCAST)) {
		sb__log(&sh->r->log, 1, "shard %u: cluster: a malformed broadcast on %.*s", sh->id,
			(int)nm->subject_len, nm->subject);
		if (b != NULL)
			sb__buf_put(b, &sh->pool);
		return;
	}
	sb__cluster_enter(sh, nm, &m, b, (uint32_t)nm->data_len);
}

int sb__xbcast_subscribe(struct sb__shard *sh)
{
	struct sb__xshard *xs = sh->xs;
	char group[64];

	/* One copy per router: its shards are one queue group of its own. */
	snprintf(group, sizeof group, "sb.b.%s", sh->r->xr->id);
	if (sb__nats_sub(xs->nc, "sb.b.>", group, on_bcast, sh) < 0 ||
	    sb__nats_sub(xs->nc, "sb.x.b", NULL, sb__cluster_on_cancel, sh) < 0)
		return -1;
	return 0;
}
