/* Presence and callers' identities across routers (docs/cluster.md,
 * "Presence and identity").
 *
 * Each shard publishes its own peers' PRESENCE frames (connected,
 * draining, disconnected, with their router's peer id) on
 * sb.pr.<R>.<k>; every shard of every other router hears sb.pr.*.* and
 * tells its own subscribers. One publisher per peer (the peer's shard) and
 * one subscriber connection per shard keep a peer's events in order, as
 * NATS keeps one connection's messages in order for another. A shard's
 * roster (all its peers, as connected or draining frames one after another)
 * goes on sb.ps.<R>.<k> when its connection becomes ready, and to
 * sb.pa.<A>.<j>.<R>.<k> when shard j of router A asks with sb.pq.<R>
 * (every shard asks each router it hears a heartbeat from for the first
 * time, again after declaring it dead, and again after its own
 * reconnect); a roster is the truth about that shard: peers it lists that
 * were unknown are announced connected, known ones it leaves out
 * disconnected. A router declared dead has its peers announced
 * disconnected by every shard.
 *
 * Another router's peer is known here under an alias, a peer id taken
 * from this router's own numbers (so it never clashes with a local one),
 * the same on every shard and for presence and calls: the router-wide
 * table below maps (router, its peer id) to the alias and the identity
 * event. A SEND or REQUEST to another router carries its caller's
 * identity frame in the Sb-From header ("<R>.<peer id>.<hex>"); the
 * receiving router puts the alias in `from` and introduces it as any
 * sender (peers.c, sb__peers_tell()). */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/idmap.h"
#include "common/log.h"
#include "common/nats.h"
#include "proto/mp.h"
#include "router/cluster-int.h"
#include "router/cluster.h"
#include "router/cluster_presence.h"
#include "router/peers.h"
#include "router/router-t.h"
#include "router/shard.h"

/* How long a gone peer's alias is kept: a call it made just before it
 * left may arrive after its disconnect, and finds the same alias. */
#define GONE_KEEP_MS 60000

/* ---- the router-wide table ------------------------------------------------ */

struct xpeer {
	uint64_t key;          /* its router's id hash and its peer id there, mixed */
	uint64_t router;       /* its router's id hash */
	uint32_t alias;        /* its peer id here */
	uint32_t idx;          /* in v */
	uint64_t gone_at;      /* sb__now_ms() when announced gone; 0: connected */
	struct sb__buf *ident; /* its identity event, the alias as peer_id */
	uint32_t ident_len;
};

struct sb__xpres {
	pthread_mutex_t lock;
	struct sb__idmap by_key, by_alias; /* -> struct xpeer * */
	struct xpeer **v;
	uint32_t n, cap;
};

/* ---- a shard's view --------------------------------------------------------- */

/* Another router's peer as this shard's subscribers were told of it. */
struct vpeer {
	uint32_t alias;
	uint32_t shard;  /* its shard on its router */
	uint64_t router; /* its router's id hash */
	uint64_t mark;   /* the roster that listed it last */
	int draining;
	struct sb__buf *ident; /* a reference on its identity event */
	uint32_t ident_len;
};

/* A header block made for a caller of this shard. */
struct hdr {
	size_t len;
	uint8_t b[];
};

struct sb__xview {
	struct sb__idmap by_alias; /* -> index + 1 in v */
	struct vpeer *v;
	uint32_t n, cap;
	uint64_t *known; /* routers asked for their peers */
	uint32_t nknown, known_cap;
	uint64_t mark;         /* the last roster's number */
	struct sb__idmap hdrs; /* (peer id << 1 | service) -> struct hdr * */
	struct hdr *scratch;   /* a header for a caller of another shard */
	char pa[64];           /* "sb.pa.<R>.<k>": where our questions are answered */
	size_t pa_len;
	int warned; /* said once that a roster did not fit */
};

int sb__xpres_router_init(struct sb__xrouter *xr)
{
	struct sb__xpres *xp = calloc(1, sizeof *xp);
	if (xp == NULL)
		return SB_ENOMEM;
	pthread_mutex_init(&xp->lock, NULL);
	sb__idmap_init(&xp->by_key);
	sb__idmap_init(&xp->by_alias);
	xr->xp = xp;
	return 0;
}

void sb__xpres_router_free(struct sb__xrouter *xr)
{
	struct sb__xpres *xp = xr->xp;
	if (xp == NULL)
		return;
	for (uint32_t i = 0; i < xp->n; i++) {
		sb__buf_put(xp->v[i]->ident, NULL);
		free(xp->v[i]);
	}
	free(xp->v);
	sb__idmap_destroy(&xp->by_key);
	sb__idmap_destroy(&xp->by_alias);
	pthread_mutex_destroy(&xp->lock);
	free(xp);
	xr->xp = NULL;
}

/* A PRESENCE frame like m's, with this event and peer id, in a heap buffer. */
static struct sb__buf *reframe(const struct sb_msg *m, unsigned event, uint32_t peer_id,
			       uint32_t *len)
{
	struct sb_msg o = {.kind = SB_PRESENCE, .event = event, .peer_id = peer_id};
	o.peer = m->peer;
	o.payload = m->payload;
	long n = sb_encoded_size(&o);
	struct sb__buf *b = n > 0 ? sb__buf_heap((size_t)n) : NULL;
	if (b == NULL)
		return NULL;
	sb_encode(&o, b->data, (size_t)n);
	*len = (uint32_t)n;
	return b;
}

/* Under the lock: the entry of peer m (a PRESENCE frame) of router h,
 * made if absent and @p make; a connected one is not gone. */
static struct xpeer *entry(struct sb__shard *sh, uint64_t h, const struct sb_msg *m, int make)
{
	struct sb__xpres *xp = sh->r->xr->xp;
	uint64_t key = sb__idmap_key(h, m->peer_id);
	struct xpeer *e = (struct xpeer *)(uintptr_t)sb__idmap_get(&xp->by_key, key);

	if (e != NULL || !make) {
		if (e != NULL && make)
			e->gone_at = 0;
		return e;
	}
	if (xp->n == xp->cap) {
		uint32_t cap = xp->cap ? xp->cap * 2 : 64;
		struct xpeer **v = realloc(xp->v, cap * sizeof *v);
		if (v == NULL)
			return NULL;
		xp->v = v;
		xp->cap = cap;
	}
	if ((e = calloc(1, sizeof *e)) == NULL)
		return NULL;
	e->key = key;
	e->router = h;
	e->alias = sb__peers_new_id(sh->r);
	if ((e->ident = reframe(m, SB_PEER_IDENTITY, e->alias, &e->ident_len)) == NULL ||
	    sb__idmap_put(&xp->by_key, key, (uintptr_t)e) != 0) {
		if (e->ident != NULL)
			sb__buf_put(e->ident, NULL);
		free(e);
		return NULL;
	}
	/* Every shard takes references under the lock but drops them outside
	 * it (after sending): its count is atomic from the start. */
	sb__buf_share(e->ident);
	if (sb__idmap_put(&xp->by_alias, e->alias, (uintptr_t)e) != 0) {
		sb__idmap_del(&xp->by_key, key);
		sb__buf_put(e->ident, NULL);
		free(e);
		return NULL;
	}
	e->idx = xp->n;
	xp->v[xp->n++] = e;
	return e;
}

/* The alias of peer m of router h (made if absent), and if @p ident a
 * reference on its identity event. 0 if out of memory. */
static uint32_t alias_of(struct sb__shard *sh, uint64_t h, const struct sb_msg *m,
			 struct sb__buf **ident, uint32_t *ident_len)
{
	struct sb__xpres *xp = sh->r->xr->xp;
	pthread_mutex_lock(&xp->lock);
	struct xpeer *e = entry(sh, h, m, 1);
	uint32_t alias = e != NULL ? e->alias : 0;
	if (e != NULL && ident != NULL) {
		sb__buf_get(e->ident);
		*ident = e->ident;
		*ident_len = e->ident_len;
	}
	pthread_mutex_unlock(&xp->lock);
	return alias;
}

static void mark_gone(struct sb__shard *sh, uint32_t alias)
{
	struct sb__xpres *xp = sh->r->xr->xp;
	pthread_mutex_lock(&xp->lock);
	struct xpeer *e = (struct xpeer *)(uintptr_t)sb__idmap_get(&xp->by_alias, alias);
	if (e != NULL && e->gone_at == 0)
		e->gone_at = sb__now_ms();
	pthread_mutex_unlock(&xp->lock);
}

struct sb__buf *sb__xpres_ident(struct sb__shard *sh, uint32_t alias, uint32_t *len)
{
	struct sb__xpres *xp = sh->r->xr->xp;
	struct sb__buf *b = NULL;
	pthread_mutex_lock(&xp->lock);
	struct xpeer *e = (struct xpeer *)(uintptr_t)sb__idmap_get(&xp->by_alias, alias);
	if (e != NULL) {
		sb__buf_get(e->ident);
		b = e->ident;
		*len = e->ident_len;
	}
	pthread_mutex_unlock(&xp->lock);
	return b;
}

void sb__xpres_tick(struct sb__shard *sh)
{
	struct sb__xpres *xp = sh->r->xr->xp;
	uint64_t now = sb__now_ms();

	if (sh->id != 0)
		return;
	pthread_mutex_lock(&xp->lock);
	for (uint32_t i = 0; i < xp->n;) {
		struct xpeer *e = xp->v[i];
		if (e->gone_at == 0 || now - e->gone_at < GONE_KEEP_MS) {
			i++;
			continue;
		}
		sb__idmap_del(&xp->by_key, e->key);
		sb__idmap_del(&xp->by_alias, e->alias);
		xp->v[i] = xp->v[--xp->n];
		xp->v[i]->idx = i;
		sb__buf_put(e->ident, &sh->pool);
		free(e);
	}
	pthread_mutex_unlock(&xp->lock);
}

/* ---- this shard's subscribers ---------------------------------------------- */

static struct vpeer *vfind(struct sb__xview *w, uint32_t alias)
{
	uint64_t i = sb__idmap_get(&w->by_alias, alias);
	return i != 0 ? &w->v[i - 1] : NULL;
}

/* Tells this shard's subscribers about p. */
static void emit(struct sb__shard *sh, const struct vpeer *p, unsigned event)
{
	struct sb_msg m;
	uint32_t len;

	if (sh->peers.nsubs == 0 || sb_decode(p->ident->data, p->ident_len, 0, &m, NULL) != 0)
		return;
	struct sb__buf *b = reframe(&m, event, p->alias, &len);
	if (b == NULL)
		return;
	sb__peers_emit(sh, 0, b, len);
	sb__buf_put(b, &sh->pool);
}

static struct vpeer *vadd(struct sb__shard *sh, uint32_t alias, uint64_t h, uint32_t k,
			  struct sb__buf *ident, uint32_t ident_len)
{
	struct sb__xview *w = sh->xs->view;
	if (w->n == w->cap) {
		uint32_t cap = w->cap ? w->cap * 2 : 64;
		struct vpeer *v = realloc(w->v, cap * sizeof *v);
		if (v == NULL)
			return NULL;
		w->v = v;
		w->cap = cap;
	}
	if (sb__idmap_put(&w->by_alias, alias, w->n + 1) != 0)
		return NULL;
	w->v[w->n] = (struct vpeer){.alias = alias, .shard = k, .router = h};
	sb__buf_get(ident);
	w->v[w->n].ident = ident;
	w->v[w->n].ident_len = ident_len;
	return &w->v[w->n++];
}

/* p leaves the view: disconnected, told and forgotten. */
static void vgone(struct sb__shard *sh, struct vpeer *p)
{
	struct sb__xview *w = sh->xs->view;
	uint32_t i = (uint32_t)(p - w->v);

	emit(sh, p, SB_PEER_DISCONNECTED);
	mark_gone(sh, p->alias);
	sb__idmap_del(&w->by_alias, p->alias);
	sb__buf_put(p->ident, &sh->pool);
	if (i != --w->n) {
		w->v[i] = w->v[w->n];
		sb__idmap_put(&w->by_alias, w->v[i].alias, i + 1); /* replaces: no growth */
	}
}

/* Event m (a PRESENCE frame of router h's shard k) about one of its peers. */
static void heard_event(struct sb__shard *sh, uint64_t h, uint32_t k, const struct sb_msg *m,
			uint64_t mark)
{
	struct sb__buf *ident = NULL;
	uint32_t ident_len = 0, alias;
	struct vpeer *p;

	if (m->event == SB_PEER_DISCONNECTED) {
		struct sb__xpres *xp = sh->r->xr->xp;
		pthread_mutex_lock(&xp->lock);
		struct xpeer *e = entry(sh, h, m, 0);
		alias = e != NULL ? e->alias : 0;
		pthread_mutex_unlock(&xp->lock);
		if (alias != 0 && (p = vfind(sh->xs->view, alias)) != NULL)
			vgone(sh, p);
		return;
	}
	if ((alias = alias_of(sh, h, m, &ident, &ident_len)) == 0)
		return;
	p = vfind(sh->xs->view, alias);
	if (p == NULL && (p = vadd(sh, alias, h, k, ident, ident_len)) != NULL)
		emit(sh, p, SB_PEER_CONNECTED); /* then draining, if it is */
	if (p != NULL) {
		p->mark = mark;
		if (m->event == SB_PEER_DRAINING && !p->draining) {
			p->draining = 1;
			emit(sh, p, SB_PEER_DRAINING);
		}
	}
	sb__buf_put(ident, &sh->pool);
}

/* ---- subjects --------------------------------------------------------------- */

/* "<R>.<k>" at s (n bytes), the end of a subject: R's hash and k. 0, or -1. */
static int origin(const char *s, size_t n, uint64_t *h, uint32_t *k)
{
	const char *dot = memchr(s, '.', n);
	if (dot == NULL || dot == s || dot + 1 == s + n || s + n - dot > 6)
		return -1;
	uint32_t v = 0;
	for (const char *p = dot + 1; p < s + n; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		v = v * 10 + (uint32_t)(*p - '0');
	}
	*h = sb__cluster_fnv(s, (size_t)(dot - s));
	*k = v;
	return 0;
}

/* A PRESENCE frame of another router: whole, and about a peer. */
static int event_ok(const uint8_t *f, size_t n, struct sb_msg *m, size_t *used)
{
	if (n < SB_PREFIX_LEN)
		return 0;
	size_t len = SB_PREFIX_LEN + (size_t)sb__be32(f);
	if (len > n || sb_decode(f, len, 0, m, NULL) != 0 || m->kind != SB_PRESENCE ||
	    m->event < SB_PEER_CONNECTED || m->event > SB_PEER_DRAINING || m->peer_id == 0 ||
	    m->peer.len == 0)
		return 0;
	*used = len;
	return 1;
}

/* sb.pr.<R>.<k>: one event of another router's peer. */
static void on_live(void *ud, const struct sb__nats_msg *nm)
{
	struct sb__shard *sh = ud;
	struct sb_msg m;
	uint64_t h;
	uint32_t k;
	size_t used;

	if (nm->subject_len <= 6 || origin(nm->subject + 6, nm->subject_len - 6, &h, &k) != 0 ||
	    h == sh->xs->self || !event_ok(nm->data, nm->data_len, &m, &used) ||
	    used != nm->data_len)
		return;
	/* Life, as a heartbeat is: a router that dies before its first
	 * heartbeat reached us still has its peers announced gone. */
	sb__cluster_heard(sh, h);
	heard_event(sh, h, k, &m, 0);
}

/* A roster of router h's shard k: every peer it has now. */
static void roster_in(struct sb__shard *sh, uint64_t h, uint32_t k, const uint8_t *p, size_t n)
{
	struct sb__xview *w = sh->xs->view;
	uint64_t mark = ++w->mark;
	struct sb_msg m;
	size_t used;

	sb__cluster_heard(sh, h);
	while (n > 0 && event_ok(p, n, &m, &used)) {
		if (m.event != SB_PEER_DISCONNECTED)
			heard_event(sh, h, k, &m, mark);
		p += used;
		n -= used;
	}
	if (n != 0) {
		sb__log(&sh->r->log, 1, "shard %u: cluster: a malformed roster", sh->id);
		return; /* nothing concluded from part of one */
	}
	for (uint32_t i = 0; i < w->n;) {
		struct vpeer *v = &w->v[i];
		if (v->router == h && v->shard == k && v->mark != mark)
			vgone(sh, v); /* the last one moved here: look at i again */
		else
			i++;
	}
}

/* sb.ps.<R>.<k>: a shard that (re)connected tells its peers. */
static void on_roster(void *ud, const struct sb__nats_msg *nm)
{
	struct sb__shard *sh = ud;
	uint64_t h;
	uint32_t k;
	if (nm->subject_len > 6 && origin(nm->subject + 6, nm->subject_len - 6, &h, &k) == 0 &&
	    h != sh->xs->self)
		roster_in(sh, h, k, nm->data, nm->data_len);
}

/* sb.pa.<A>.<j>.<R>.<k>: an answer to our question. */
static void on_answer(void *ud, const struct sb__nats_msg *nm)
{
	struct sb__shard *sh = ud;
	struct sb__xview *w = sh->xs->view;
	uint64_t h;
	uint32_t k;
	if (nm->subject_len > w->pa_len + 1 &&
	    origin(nm->subject + w->pa_len + 1, nm->subject_len - w->pa_len - 1, &h, &k) == 0 &&
	    h != sh->xs->self)
		roster_in(sh, h, k, nm->data, nm->data_len);
}

/* This shard's peers, as frames one after another, to subject. */
static void roster_out(struct sb__shard *sh, const char *subject)
{
	struct sb__xview *w = sh->xs->view;
	uint8_t *out = NULL;
	size_t n = 0, cap = 0;
	int ok = 1;

	for (struct sb__link *l = sh->peers.all.next; l != &sh->peers.all && ok; l = l->next) {
		const struct sb__peer *p = SB__CONTAINER(l, struct sb__peer, link);
		uint32_t len;
		if (p->ep == 0 || sb__ep_shard(p->ep) != sh->id)
			continue;
		struct sb__buf *b = sb__peers_frame(
			p, p->draining ? SB_PEER_DRAINING : SB_PEER_CONNECTED, &len);
		if (b == NULL) {
			ok = 0;
			break;
		}
		if (n + len > cap) {
			size_t c = cap ? cap * 2 : 4096;
			while (c < n + len)
				c *= 2;
			uint8_t *o = realloc(out, c);
			if (o == NULL) {
				sb__buf_put(b, &sh->pool);
				ok = 0;
				break;
			}
			out = o;
			cap = c;
		}
		memcpy(out + n, b->data, len);
		n += len;
		sb__buf_put(b, &sh->pool);
	}
	/* A roster cut short would have the others forget peers we have. */
	int rc = ok ? sb__nats_pub(sh->xs->nc, subject, NULL, NULL, 0, out, n) : SB_ENOMEM;
	if (rc != 0 && rc != SB_EOFFLINE && !w->warned++)
		sb__log(&sh->r->log, 1,
			"shard %u: cluster: this shard's peers could not be told to the other "
			"routers (%s): their presence there is incomplete",
			sh->id, sb_strerror(rc));
	free(out);
}

/* sb.pq.<R>: another router's shard asks for our peers. */
static void on_query(void *ud, const struct sb__nats_msg *nm)
{
	struct sb__shard *sh = ud;
	char subj[SUBJ_MAX];
	if (nm->reply == NULL || nm->reply_len + 40 >= sizeof subj)
		return;
	snprintf(subj, sizeof subj, "%.*s.%s.%u", (int)nm->reply_len, nm->reply, sh->r->xr->id,
		 sh->id);
	if (sb__nats_subject_ok(subj, strlen(subj), 0))
		roster_out(sh, subj);
}

/* ---- the shard's part --------------------------------------------------------- */

int sb__xpres_start(struct sb__shard *sh)
{
	struct sb__xshard *xs = sh->xs;
	struct sb__xview *w = calloc(1, sizeof *w);
	char sub[96];

	if (w == NULL)
		return SB_ENOMEM;
	sb__idmap_init(&w->by_alias);
	sb__idmap_init(&w->hdrs);
	snprintf(w->pa, sizeof w->pa, "sb.pa.%s.%u", sh->r->xr->id, sh->id);
	w->pa_len = strlen(w->pa);
	xs->view = w;
	snprintf(sub, sizeof sub, "%s.*.*", w->pa);
	char query[64];
	snprintf(query, sizeof query, "sb.pq.%s", sh->r->xr->id);
	if (sb__nats_sub(xs->nc, "sb.pr.*.*", NULL, on_live, sh) < 0 ||
	    sb__nats_sub(xs->nc, "sb.ps.*.*", NULL, on_roster, sh) < 0 ||
	    sb__nats_sub(xs->nc, query, NULL, on_query, sh) < 0 ||
	    sb__nats_sub(xs->nc, sub, NULL, on_answer, sh) < 0)
		return SB_ENOMEM;
	return 0;
}

void sb__xpres_stop(struct sb__shard *sh)
{
	struct sb__xview *w = sh->xs != NULL ? sh->xs->view : NULL;
	if (w == NULL)
		return;
	for (uint32_t i = 0; i < w->n; i++)
		sb__buf_put(w->v[i].ident, &sh->pool);
	free(w->v);
	free(w->known);
	free(w->scratch);
	/* The headers of peers still connected as the shard stops. */
	for (struct sb__link *l = sh->peers.all.next; l != &sh->peers.all; l = l->next) {
		const struct sb__peer *p = SB__CONTAINER(l, struct sb__peer, link);
		for (uint64_t s = 0; s < 2; s++) {
			uint64_t key = (uint64_t)p->peer_id << 1 | s;
			free((void *)(uintptr_t)sb__idmap_get(&w->hdrs, key));
			sb__idmap_del(&w->hdrs, key);
		}
	}
	sb__idmap_destroy(&w->hdrs);
	sb__idmap_destroy(&w->by_alias);
	free(w);
	sh->xs->view = NULL;
}

void sb__xpres_connected(struct sb__shard *sh)
{
	struct sb__xview *w = sh->xs->view;
	char subj[64];

	/* What was said while we were away is lost (NATS delivers at most
	 * once): ask everyone again as their heartbeats come, and tell them
	 * what we have. */
	w->nknown = 0;
	snprintf(subj, sizeof subj, "sb.ps.%s.%u", sh->r->xr->id, sh->id);
	roster_out(sh, subj);
}

void sb__xpres_local(struct sb__shard *sh, uint32_t peer_id, unsigned event)
{
	struct sb__xview *w = sh->xs->view;
	const struct sb__peer *p = sb__peers_by_id(sh, peer_id);
	char subj[64];
	uint32_t len;

	if (event == SB_PEER_DISCONNECTED)
		for (uint64_t s = 0; s < 2; s++) {
			uint64_t key = (uint64_t)peer_id << 1 | s;
			free((void *)(uintptr_t)sb__idmap_get(&w->hdrs, key));
			sb__idmap_del(&w->hdrs, key);
		}
	struct sb__buf *b = p != NULL ? sb__peers_frame(p, event, &len) : NULL;
	if (b == NULL)
		return; /* its record could not be made: unknown to the others too */
	snprintf(subj, sizeof subj, "sb.pr.%s.%u", sh->r->xr->id, sh->id);
	sb__nats_pub(sh->xs->nc, subj, NULL, NULL, 0, b->data, len);
	sb__buf_put(b, &sh->pool);
}

void sb__xpres_heard(struct sb__shard *sh, const char *r, size_t len)
{
	struct sb__xview *w = sh->xs->view;
	uint64_t h = sb__cluster_fnv(r, len);
	char subj[SUBJ_MAX];

	if (h == sh->xs->self)
		return;
	for (uint32_t i = 0; i < w->nknown; i++)
		if (w->known[i] == h)
			return;
	if (w->nknown == w->known_cap) {
		uint32_t cap = w->known_cap ? w->known_cap * 2 : 8;
		uint64_t *k = realloc(w->known, cap * sizeof *k);
		if (k == NULL)
			return;
		w->known = k;
		w->known_cap = cap;
	}
	if (sb__cluster_subject(subj, "sb.pq.", r, len) != 0 ||
	    sb__nats_pub(sh->xs->nc, subj, w->pa, NULL, 0, NULL, 0) != 0)
		return; /* asked at its next heartbeat */
	w->known[w->nknown++] = h;
}

void sb__xpres_router_gone(struct sb__shard *sh, uint64_t h)
{
	struct sb__xview *w = sh->xs->view;

	for (uint32_t i = 0; i < w->nknown; i++)
		if (w->known[i] == h) {
			w->known[i] = w->known[--w->nknown];
			break;
		}
	for (uint32_t i = 0; i < w->n;) {
		if (w->v[i].router == h)
			vgone(sh, &w->v[i]);
		else
			i++;
	}
}

/* ---- a caller's identity ------------------------------------------------------ */

static const char hexd[] = "0123456789abcdef";

static int unhex(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

const uint8_t *sb__xpres_hdr(struct sb__shard *sh, const uint8_t *f, int service, size_t *len)
{
	struct sb__xshard *xs = sh->xs;
	struct sb__xview *w = xs->view;
	uint32_t from = sb__peers_frame_from(f);
	uint64_t key = (uint64_t)from << 1 | (service != 0);
	struct hdr *hd;

	*len = service ? xs->svc_hdr_len : 0;
	if (from == 0)
		return service ? xs->svc_hdr : NULL;
	if ((hd = (struct hdr *)(uintptr_t)sb__idmap_get(&w->hdrs, key)) != NULL) {
		*len = hd->len;
		return hd->b;
	}
	const struct sb__peer *p = sb__peers_by_id(sh, from);
	uint32_t n;
	struct sb__buf *b = p != NULL ? sb__peers_frame(p, SB_PEER_IDENTITY, &n) : NULL;
	if (b == NULL) /* unknown here: the handler sees it as from the program */
		return service ? xs->svc_hdr : NULL;
	size_t vcap = 40 + 2 * (size_t)n;
	char *val = malloc(vcap);
	hd = val != NULL ? malloc(sizeof *hd + vcap + 64) : NULL;
	if (hd == NULL) {
		free(val);
		sb__buf_put(b, &sh->pool);
		return service ? xs->svc_hdr : NULL;
	}
	int at = snprintf(val, vcap, "%s.%" PRIu32 ".", sh->r->xr->id, from);
	for (uint32_t i = 0; i < n; i++) {
		val[at++] = hexd[b->data[i] >> 4];
		val[at++] = hexd[b->data[i] & 15];
	}
	val[at] = 0;
	sb__buf_put(b, &sh->pool);
	struct sb__nats_hdr h[2] = {{"Sb-From", val}, {"Sb-Svc", "1"}};
	long hn = sb__nats_hdr_build(hd->b, vcap + 64, h, service ? 2 : 1);
	free(val);
	if (hn <= 0 || (size_t)hn > vcap + 64) {
		free(hd);
		return service ? xs->svc_hdr : NULL;
	}
	hd->len = (size_t)hn;
	/* Kept while the caller is connected: its own shard publishes its
	 * calls, and forgets it as it leaves (sb__xpres_local()). */
	if (sb__ep_shard(p->ep) != sh->id || sb__idmap_put(&w->hdrs, key, (uintptr_t)hd) != 0) {
		free(w->scratch);
		w->scratch = hd;
	}
	*len = hd->len;
	return hd->b;
}

uint32_t sb__xpres_caller(struct sb__shard *sh, const struct sb__nats_msg *nm)
{
	struct sb__xpres *xp = sh->r->xr->xp;
	const char *v;
	size_t n;

	if (nm->hdr_len == 0 || !sb__nats_hdr_get(nm->hdr, nm->hdr_len, "Sb-From", &v, &n))
		return 0;
	/* "<R>.<peer id>.<hex of its identity frame>" */
	const char *d1 = memchr(v, '.', n);
	const char *d2 = d1 != NULL ? memchr(d1 + 1, '.', (size_t)(v + n - d1 - 1)) : NULL;
	if (d1 == NULL || d1 == v || d2 == NULL || d2 - d1 > 11 || d2 == d1 + 1)
		return 0;
	uint64_t id = 0;
	for (const char *p = d1 + 1; p < d2; p++) {
		if (*p < '0' || *p > '9')
			return 0;
		id = id * 10 + (uint64_t)(*p - '0');
	}
	uint64_t h = sb__cluster_fnv(v, (size_t)(d1 - v));
	if (id == 0 || id > UINT32_MAX || h == sh->xs->self)
		return 0;
	/* Known already: most calls. */
	pthread_mutex_lock(&xp->lock);
	struct xpeer *e = (struct xpeer *)(uintptr_t)sb__idmap_get(&xp->by_key,
								   sb__idmap_key(h, (uint32_t)id));
	uint32_t alias = e != NULL ? e->alias : 0;
	pthread_mutex_unlock(&xp->lock);
	if (alias != 0)
		return alias;
	const char *hex = d2 + 1;
	size_t hn = (size_t)(v + n - hex);
	if (hn == 0 || hn % 2 != 0)
		return 0;
	uint8_t *f = malloc(hn / 2);
	if (f == NULL)
		return 0;
	for (size_t i = 0; i < hn / 2; i++) {
		int hi = unhex(hex[2 * i]), lo = unhex(hex[2 * i + 1]);
		if (hi < 0 || lo < 0) {
			free(f);
			return 0;
		}
		f[i] = (uint8_t)(hi << 4 | lo);
	}
	struct sb_msg m;
	if (sb_decode(f, hn / 2, 0, &m, NULL) == 0 && m.kind == SB_PRESENCE &&
	    m.event == SB_PEER_IDENTITY && m.peer_id == id && m.peer.len > 0 &&
	    SB_PREFIX_LEN + (size_t)sb__be32(f) == hn / 2)
		alias = alias_of(sh, h, &m, NULL, NULL);
	free(f);
	return alias;
}
