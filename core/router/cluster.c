/* Several routers as one, over a NATS cluster (docs/cluster.md, decision
 * (b)): each shard has its own connection (core/common/nats.c), polled in
 * its io_uring and flushed with the turn's output.
 *
 * A shard subscribes sb.r.<name> (queue group: one shard of one router
 * gets each) while it has a handler of the name of its own and for the
 * drain time after its last one left, sb.x.r.<name>
 * (plain: cancels) while its replica has a route for the name, and
 * sb.p.<peer>, sb.x.p.<peer> while it holds a named peer, so NATS offers
 * a shard only what it can serve without a hop to another shard. A SEND
 * or REQUEST with no handler here is published, frame unchanged, to
 * sb.r.<name> (sb.p.<peer> for a `to`); a request's reply subject is its inbox sb.i.<R>.<k>.<rid>
 * (router R, shard k, the router's id of its entry), which names it
 * alone: NATS's "no responders" status comes back on it, and becomes `no
 * handler`. The router that takes it (cluster_handle.c) enters it as a
 * request from a remote requester and publishes each answer, patched
 * back to <rid>, to the inbox's shard, sb.i.<R>.<k> (the first says which shard handles
 * it; a turn's answers to one inbox go as one message, cluster_batch.c),
 * where the requester's shard finds the request by the frame's id
 * and hands it the answer as any handler's. A
 * cancel goes to sb.x.<where it went> with the inbox as reply subject;
 * a slow requester's pause and resume to the handling shard's sb.f.<R>.<k>.
 * A request whose handlers here are all full goes to one other router's
 * sb.s.<hash of R>.<name> instead ("Local first"), the next router's if
 * that one has none (it returns it), and comes back to a handler here
 * after the last. A request returned from sb.r.<name> (that router's
 * last handler of it left) goes the same way, and so do the name's
 * requests for a while, so that none is lost as that router's
 * subscription ends (docs/cluster.md, "Subjects").
 * Heartbeats end what a silent router held; peer names are claimed in
 * JetStream's key-value store at HELLO (both in cluster_live.c). The
 * router's settings for all of it are checked and kept in cluster_cfg.c. */
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/idmap.h"
#include "common/log.h"
#include "common/nats.h"
#include "proto/mp.h"
#include "router/balance.h"
#include "router/cluster-int.h"
#include "router/cluster.h"
#include "router/cluster_admin.h"
#include "router/cluster_batch.h"
#include "router/cluster_presence.h"
#include "router/conn-t.h"
#include "router/conn.h"
#include "router/deliver.h"
#include "router/flow.h"
#include "router/handshake.h"
#include "router/mail.h"
#include "router/request.h"
#include "router/router-t.h"
#include "router/shard.h"

uint64_t sb__cluster_fnv(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
	return h | 1; /* never 0 */
}

/* ---- publishing ---------------------------------------------------------- */

/* "<prefix><name>" into out (SUBJ_MAX): 0, or -1 if not a subject. */
int sb__cluster_subject(char *out, const char *prefix, const void *name, size_t len)
{
	size_t p = strlen(prefix);
	if (len == 0 || p + len >= SUBJ_MAX)
		return -1;
	memcpy(out, prefix, p);
	memcpy(out + p, name, len);
	out[p + len] = 0;
	return sb__nats_subject_ok(out, p + len, 0) ? 0 : -1;
}

/* "sb.i.<R>.<k>.<rid>", our inbox for request rid. */
static void inbox_of(const struct sb__xshard *xs, uint64_t rid, char *out, size_t cap)
{
	snprintf(out, cap, "%s.%" PRIu64, xs->inbox, rid);
}

/* ---- flow control: the link's output ------------------------------------- */

/* Pause (1) or resume (0) reading from connection ep of any shard. */
static void pause_ep(struct sb__shard *sh, uint64_t ep, int pause)
{
	if (sb__ep_shard(ep) == sh->id) {
		sb__flow_pause(sh, ep, pause ? 1 : -1);
		return;
	}
	struct sb__mail m = {.type = SB__MAIL_PAUSE, .a = (uint32_t)pause, .b = ep};
	sb__mail(sh, sb__ep_shard(ep), &m);
}

/* A frame of producer went out on the link: past the mark, the producer
 * stops reading until the link has drained to half of it (as a slow
 * client's queue pauses its producers), so the output stays bounded. */
static void congest(struct sb__shard *sh, uint64_t producer)
{
	struct sb__xshard *xs = sh->xs;
	uint64_t old;

	if (producer == 0 || sb__ep_shard(producer) >= SB__MAX_SHARDS ||
	    sb__nats_pending(xs->nc) + xs->batched <= xs->mark)
		return;
	if (xs->npaused == xs->paused_cap) {
		uint32_t cap = xs->paused_cap ? xs->paused_cap * 2 : 16;
		uint64_t *p = realloc(xs->paused, cap * sizeof *p);
		if (p == NULL)
			return; /* no pause: the link's bound still holds */
		xs->paused = p;
		xs->paused_cap = cap;
	}
	if (sb__idmap_put_new(&xs->held, producer, 1, &old) != 0)
		return;
	xs->paused[xs->npaused++] = producer;
	sb__stat_add(&sh->st.pauses, 1);
	pause_ep(sh, producer, 1);
}

void sb__cluster_congest(struct sb__shard *sh, uint64_t producer)
{
	congest(sh, producer);
}

static void uncongest(struct sb__shard *sh)
{
	struct sb__xshard *xs = sh->xs;
	if (xs->npaused == 0 || sb__nats_pending(xs->nc) > xs->mark / 2)
		return;
	for (uint32_t i = 0; i < xs->npaused; i++) {
		sb__idmap_del(&xs->held, xs->paused[i]);
		pause_ep(sh, xs->paused[i], 0);
	}
	xs->npaused = 0;
}

static uint64_t producer_ep(const struct sb__shard *sh)
{
	return sh->producer != NULL ? sh->producer->ep : 0;
}

/* ---- flow control: a slow requester on this router, a handler on another --

 * Its answers reach a requester's queue here past the pause mark: the
 * queue names the request (SB__CLUSTER_EP with the request's id) as its
 * producer, and sb__flow_congest() and sb__flow_resume() reach it here.
 * We tell the handling shard (sb.f.<R>.<k>, with the request's inbox), which
 * pauses the handler's connection as it would for a consumer of its own. */

uint64_t sb__cluster_producer(uint64_t rid)
{
	return SB__CLUSTER_EP | (rid & SB__EP_MASK);
}

void sb__cluster_pause(struct sb__shard *sh, uint64_t producer, int pause)
{
	struct sb__xshard *xs = sh->xs;
	uint64_t rid = (uint64_t)sh->id << SB__TAG_SHIFT | (producer & SB__EP_MASK);
	struct sb__req *q = xs != NULL ? sb__reqtab_get(&sh->reqs, rid) : NULL;
	char subj[64], inbox[96];

	if (q == NULL || q->x == NULL || q->x->key != 0 || q->x->hand[0] == 0)
		return; /* ended: its handler was resumed with it */
	snprintf(subj, sizeof subj, "sb.f.%s", q->x->hand);
	inbox_of(xs, rid, inbox, sizeof inbox);
	sb__nats_pub(xs->nc, subj, inbox, NULL, 0, pause ? "p" : "r", 1);
}

/* sb.f.<R>.<k>: a requester's router asks us to pause or resume the
 * handler of one of its requests. */
static void on_flow(void *ud, const struct sb__nats_msg *nm)
{
	struct sb__shard *sh = ud;
	struct sb__req *q = nm->data_len == 1 ? sb__cluster_from(sh, nm) : NULL;
	if (q == NULL)
		return;
	int pause = nm->data[0] == 'p';
	if (pause == q->x->paused)
		return;
	q->x->paused = pause;
	if (pause)
		sb__stat_add(&sh->st.pauses, 1);
	pause_ep(sh, q->handler, pause);
}

/* ---- the requester's side ------------------------------------------------ */

/* Where m goes in the cluster: "sb.p.<peer>" for a `to`, else
 * "sb.r.<name>". 0, or -1 if that is not a subject. */
static int target(char *out, const struct sb_msg *m)
{
	return m->to.ptr != NULL ? sb__cluster_subject(out, "sb.p.", m->to.ptr, m->to.len)
				 : sb__cluster_subject(out, "sb.r.", m->name.ptr, m->name.len);
}

int sb__cluster_spills(struct sb__shard *sh, const struct sb__route *r, uint64_t ep)
{
	uint32_t spill = sh->r->cfg.cluster_spill;
	/* sid[1]: the name is a subject the cluster knows (every shard with
	 * the route has it, with or without a handler of its own). */
	return spill != 0 && r->sid[1] > 0 && sh->xs->nlive > 0 &&
	       sb__idmap_get(&sh->load, ep) >= spill;
}

/* "sb.s.<R>." for router R (its id's hash): where the handlers of R take
 * the requests other routers spill, and only they. */
static void spill_prefix(char *out, size_t cap, uint64_t router)
{
	snprintf(out, cap, "sb.s.%016" PRIx64 ".", router);
}

#define SPILL_PREFIX_LEN 22 /* "sb.s." + 16 hex digits + "." */

/* The slot of name key among the names returned to us: its own, else a
 * free or run-out one to take (NULL: none near). */
static struct xavoid *avoid_slot(struct sb__xshard *xs, uint64_t key, uint64_t now)
{
	struct xavoid *free_one = NULL;
	for (uint32_t i = 0; i < 8; i++) {
		struct xavoid *a = &xs->avoid[(key + i) % SB__XAVOID];
		if (a->key == key)
			return a;
		if (free_one == NULL && (a->key == 0 || a->until <= now))
			free_one = a;
	}
	return free_one;
}

/* Router h returned a request for name (it has no handler of it left,
 * and keeps its subscription for the drain time): the name's requests go
 * to the routers in turn, h last, for twice that, so that none is on its
 * way to h's subscription when it ends (docs/cluster.md, "Subjects"). */
static void avoid(struct sb__shard *sh, const char *name, size_t len, uint64_t h)
{
	struct sb__xshard *xs = sh->xs;
	uint64_t key = sb__cluster_fnv(name, len);
	struct xavoid *a = avoid_slot(xs, key, sh->now);
	if (a == NULL)
		return; /* the drain time's requests may be lost, as before it */
	if (a->key != key)
		xs->navoid += a->key == 0;
	*a = (struct xavoid){key, h, sh->now + 2 * xs->drain_ms};
}

/* Where name's requests start their turn among the live routers: after
 * the one that returned one lately, or -1 if none did. */
static int64_t avoided(struct sb__shard *sh, const struct sb_view *name)
{
	struct sb__xshard *xs = sh->xs;
	if (xs->navoid == 0 || xs->nlive == 0)
		return -1;
	uint64_t key = sb__cluster_fnv((const char *)name->ptr, name->len);
	struct xavoid *a = avoid_slot(xs, key, sh->now);
	if (a == NULL || a->key != key)
		return -1;
	if (a->until <= sh->now) {
		a->key = 0;
		xs->navoid--;
		return -1;
	}
	for (uint32_t i = 0; i < xs->nlive; i++)
		if (xs->live[i].router == a->router)
			return (i + 1) % xs->nlive;
	return xs->spill_rr++ % xs->nlive;
}

int sb__cluster_out(struct sb__shard *sh, struct sb__req *q, const struct sb_msg *m, int service,
		    int miss, int spill)
{
	struct sb__xshard *xs = sh->xs;
	char subj[SUBJ_MAX], prefix[32];
	uint32_t at = 0;
	int64_t from = m->to.ptr == NULL && !spill ? avoided(sh, &m->name) : -1;
	/* The routers alive take turns: one that turns out not to have the
	 * name returns the request (or NATS answers "no responders"), and
	 * the next is tried (spill_next()); after the last, a handler here
	 * takes the request after all (spill_home()). A name another router
	 * returned requests for lately goes the same way, that one last. */
	if (from >= 0 || (spill && xs->nlive > 0)) {
		spill = 1;
		at = from >= 0 ? (uint32_t)from : xs->spill_rr++ % xs->nlive;
		spill_prefix(prefix, sizeof prefix, xs->live[at].router);
		if (sb__cluster_subject(subj, prefix, m->name.ptr, m->name.len) != 0)
			subj[0] = 0;
	} else if (target(subj, m) != 0) {
		spill = 0;
		subj[0] = 0; /* it fails as it is published, as a miss */
	}
	size_t n = strlen(subj);
	struct sb__xreq *x = malloc(sizeof *x + n + 1);
	if (x == NULL)
		return SB_ENOMEM;
	x->key = 0;
	x->service = service;
	x->miss = miss;
	x->told = 0;
	x->router = 0;
	x->hand[0] = 0;
	x->paused = 0;
	x->spilled = spill && n > 0;
	x->spill_at = at;
	x->spill_tries = 1;
	x->back = NULL;
	x->back_len = 0;
	x->batch = 0;
	x->len = (uint32_t)n;
	memcpy(x->s, subj, n + 1);
	q->x = x;
	return 0;
}

void sb__cluster_req_free(struct sb__shard *sh, struct sb__req *q)
{
	if (q->x->paused && sh->xs != NULL) /* its requester's pause ends with it */
		pause_ep(sh, q->handler, 0);
	if (q->x->key != 0 && sh->xs != NULL && sb__idmap_get(&sh->xs->from, q->x->key) == q->rid)
		sb__idmap_del(&sh->xs->from, q->x->key);
	if (q->x->back != NULL)
		sb__buf_put(q->x->back, &sh->pool);
	free(q->x);
	q->x = NULL;
}

void sb__cluster_send(struct sb__shard *sh, const struct sb_msg *m, int service, const uint8_t *f,
		      uint32_t len)
{
	char subj[SUBJ_MAX];
	size_t hn;
	const uint8_t *hdr = sb__xpres_hdr(sh, f, service, &hn);

	/* Nobody answers a SEND: one that finds no router is lost, as a
	 * SEND to a handler that just left is. Gathered with the turn's
	 * others to the same subject, after the requests gathered before it
	 * (cluster_batch.c). */
	if (target(subj, m) != 0 || sb__xbatch_send(sh, subj, strlen(subj), hdr, hn, f, len) != 0)
		sb__stat_add(&sh->st.no_handler, 1);
	else
		congest(sh, producer_ep(sh));
}

/* Request q found nobody in the cluster either: the answer a router alone
 * gives (no handler; for a `to`, what this router knew of the name). */
static void missed(struct sb__shard *sh, struct sb__req *q, const char *why)
{
	char text[SB_TEXT_MAX + 1];
	int peer = q->x->len > 5 && memcmp(q->x->s, "sb.p.", 5) == 0;
	int err = peer ? q->x->miss : SB_ENOHANDLER;

	if (!peer)
		snprintf(text, sizeof text, "no handler for this name%s", why);
	else if (err == SB_ENOTCONNECTED)
		snprintf(text, sizeof text, "peer %s is not connected%s", q->x->s + 5, why);
	else
		snprintf(text, sizeof text, "no peer named %s has connected%s", q->x->s + 5, why);
	sb__stat_add(&sh->st.no_handler, 1);
	sb__req_fail(sh, q, err, text);
}

static int spill_home(struct sb__shard *sh, struct sb__req *q);
static void unsent(struct sb__shard *sh, struct sb__req *q, int rc);

void sb__cluster_deliver(struct sb__shard *sh, struct sb__buf *b, const uint8_t *f, uint32_t len)
{
	struct sb__xshard *xs = sh->xs;
	uint64_t rid = sb__be64(f + SB_ID_OFFSET);
	struct sb__req *q = sb__reqtab_get(&sh->reqs, rid);
	char subj[SUBJ_MAX], inbox[96];
	int kind = f[SB_PREFIX_LEN + 1], rc;

	if (q == NULL || q->x == NULL || q->x->key != 0) {
		sb__buf_put(b, &sh->pool);
		return;
	}
	inbox_of(xs, rid, inbox, sizeof inbox);
	if (kind == SB_CANCEL) {
		/* To whichever router holds it ("sb.x." and where it went; a
		 * spilled one's router hears the name's cancels): the inbox
		 * tells that router which of its requests. */
		if ((q->x->spilled
			     ? sb__cluster_subject(subj, "sb.x.r.", q->x->s + SPILL_PREFIX_LEN,
						   q->x->len - SPILL_PREFIX_LEN)
		     : q->x->len > 3
			     ? sb__cluster_subject(subj, "sb.x.", q->x->s + 3, q->x->len - 3)
			     : -1) == 0) {
			/* Never before the request itself, still gathered. */
			sb__xbatch_flush(sh, q->x->s, q->x->len);
			sb__nats_pub(xs->nc, subj, inbox, NULL, 0, NULL, 0);
		}
		sb__buf_put(b, &sh->pool);
		return;
	}
	/* Spilled: kept (a copy, not the receive buffer) until the other
	 * router answers, for a handler here should it have none. */
	if (q->x->spilled && q->x->back == NULL && (q->x->back = sb__buf_heap(len)) != NULL) {
		memcpy(q->x->back->data, f, len);
		q->x->back_len = len;
	}
	size_t hn;
	const uint8_t *hdr = sb__xpres_hdr(sh, f, q->x->service, &hn);
	/* Gathered with the turn's others to the same subject (cluster_batch.c). */
	rc = q->x->len == 0 ? SB_EINVAL : sb__xbatch_req(sh, q, hdr, hn, f, len);
	sb__buf_put(b, &sh->pool);
	if (rc == 0) {
		congest(sh, producer_ep(sh));
		return;
	}
	unsent(sh, q, rc);
}

/* Request q did not leave: the link refused it (rc). */
static void unsent(struct sb__shard *sh, struct sb__req *q, int rc)
{
	if (q->x->spilled && spill_home(sh, q))
		return; /* the link did not take it: a handler here does */
	if (rc == SB_EOVERLOADED)
		sb__req_fail(sh, q, SB_EOVERLOADED,
			     "the link to the other routers is congested; try again");
	else
		missed(sh, q,
		       rc == SB_EOFFLINE ? " (the router is not connected to its cluster)" : "");
}

void sb__cluster_unsent(struct sb__shard *sh, uint64_t rid, int rc)
{
	struct sb__req *q = sb__reqtab_get(&sh->reqs, rid);
	if (q != NULL && q->handler == SB__CLUSTER_EP && q->x != NULL && q->bc == NULL)
		unsent(sh, q, rc);
}

/* Spilled request q found no handler on the router it went to (it had
 * none of the name, or its last one just left): the next live router not
 * tried yet gets it (the subject's router part rewritten in place: same
 * length). 0 if every one has been tried. */
static int spill_next(struct sb__shard *sh, struct sb__req *q, uint64_t rid)
{
	struct sb__xshard *xs = sh->xs;
	struct sb__xreq *x = q->x;
	char prefix[32], inbox[96];

	if (x->back == NULL || xs->nlive == 0 || x->spill_tries >= xs->nlive)
		return 0;
	spill_prefix(prefix, sizeof prefix,
		     xs->live[(x->spill_at + x->spill_tries++) % xs->nlive].router);
	memcpy(x->s, prefix, SPILL_PREFIX_LEN);
	inbox_of(xs, rid, inbox, sizeof inbox);
	size_t hn;
	const uint8_t *hdr = sb__xpres_hdr(sh, x->back->data, x->service, &hn);
	return sb__nats_pub(xs->nc, x->s, inbox, hdr, hn, x->back->data, x->back_len) == 0;
}

/* Spilled request q found no handler on any other router: a handler here
 * takes it, as if it had never left. 0 if none is left here either. */
static int spill_home(struct sb__shard *sh, struct sb__req *q)
{
	struct sb__buf *b = q->x->back;
	uint32_t len = q->x->back_len;
	char why[SB_TEXT_MAX + 1];
	struct sb__dest d;
	struct sb_msg m;
	/* Chosen as for a request from another router, which never spills
	 * (its handlers' rules were checked when it was first routed). */
	struct sb__origin o = {q->x->s, q->x->len};
	struct sb__asker a = {.service = q->x->service, .origin = &o};

	if (b == NULL || sb_decode(b->data, len, 0, &m, NULL) != 0 ||
	    sb__reach(sh, &a, &m, &d, why) != 0 || d.kind != SB__DEST_ONE)
		return 0;
	q->x->back = NULL;
	sb__cluster_req_free(sh, q);
	sb__load_add(sh, q->handler, -1);
	q->handler = d.ep;
	sb__load_add(sh, d.ep, 1);
	sb__deliver(sh, d.ep, b, b->data, len);
	return 1;
}

void sb__cluster_no_responders(struct sb__shard *sh, uint64_t rid)
{
	struct sb__req *q = sb__reqtab_get(&sh->reqs, rid);
	if (q == NULL || q->handler != SB__CLUSTER_EP || q->x == NULL || q->bc != NULL)
		return;
	q->x->batch = 0;
	if (!q->x->spilled || (!spill_next(sh, q, rid) && !spill_home(sh, q)))
		missed(sh, q, "");
}

/* Request q came back (frame f, len bytes) from the router NATS handed it
 * to, which has no handler of the name left (cluster_handle.c; nm's
 * Sb-Hand names it): the other live routers are tried in turn as for a
 * spilled request, then a handler here, then it is `no handler`. Each
 * router once, and every hop comes back here: it never circles. */
static void returned(struct sb__shard *sh, struct sb__req *q, const struct sb__nats_msg *nm,
		     const uint8_t *f, uint32_t len)
{
	struct sb__xshard *xs = sh->xs;
	struct sb__xreq *x = q->x;
	struct live *lv = NULL;
	const char *hand;
	size_t hand_len;
	uint64_t h = 0;

	if (nm->hdr_len > 0 &&
	    sb__nats_hdr_get(nm->hdr, nm->hdr_len, "Sb-Hand", &hand, &hand_len)) {
		const char *dot = memrchr(hand, '.', hand_len);
		h = sb__cluster_fnv(hand, dot != NULL ? (size_t)(dot - hand) : hand_len);
		lv = sb__cluster_heard(sh, h);
	}
	if (x->batch != 0) { /* its batch was taken: no "no responders" to come */
		sb__xbatch_answered(sh, x->batch);
		x->batch = 0;
	}
	if (!x->spilled && x->len > 5 && memcmp(x->s, "sb.r.", 5) == 0) {
		/* Kept as a spilled one is, on the subject of a router's own. */
		size_t n = x->len - 5;
		char prefix[32];
		struct sb__buf *b = sb__buf_heap(len);
		struct sb__xreq *y =
			b != NULL ? realloc(x, sizeof *x + SPILL_PREFIX_LEN + n + 1) : NULL;
		if (y == NULL) {
			if (b != NULL)
				sb__buf_put(b, &sh->pool);
			missed(sh, q, "");
			return;
		}
		q->x = x = y;
		avoid(sh, x->s + 5, n, h);
		memmove(x->s + SPILL_PREFIX_LEN, x->s + 5, n + 1);
		spill_prefix(prefix, sizeof prefix, h);
		memcpy(x->s, prefix, SPILL_PREFIX_LEN);
		x->len = (uint32_t)(SPILL_PREFIX_LEN + n);
		memcpy(b->data, f, len);
		x->back = b;
		x->back_len = len;
		x->spilled = 1;
		x->spill_at = lv != NULL ? (uint32_t)(lv - xs->live) : 0;
		x->spill_tries = lv != NULL;
	}
	if (!x->spilled || (!spill_next(sh, q, q->rid) && !spill_home(sh, q)))
		missed(sh, q, "");
}

/* Our inbox: an answer for one of our requests, or NATS saying nobody took it. */
static void inbox_in(struct sb__shard *sh, const struct sb__nats_msg *nm)
{
	struct sb__xshard *xs = sh->xs;
	const char *tok = nm->subject + xs->inbox_len + 1;
	size_t n = nm->subject_len - xs->inbox_len - 1;
	uint64_t rid = 0;
	struct sb_msg m;
	const uint8_t *f = nm->data;
	uint32_t len = (uint32_t)nm->data_len;
	/* An answer comes to the shard's inbox and says which request by its
	 * frame's id; NATS's 503 comes to the request's own reply subject. */
	int shared = nm->subject_len == xs->inbox_len;

	if (shared) {
		if (nm->status != 0 || nm->data_len < SB_PREFIX_LEN || nm->data_len > UINT32_MAX ||
		    sb_decode(f, len, 0, &m, NULL) != 0)
			goto malformed;
		rid = m.id;
	} else {
		if (nm->subject_len <= xs->inbox_len + 1 || n > 20)
			return;
		if (tok[0] == 'b') { /* a request batch's: "no responders" ends each */
			for (size_t i = 1; i < n; i++) {
				if (tok[i] < '0' || tok[i] > '9')
					return;
				rid = rid * 10 + (uint64_t)(tok[i] - '0');
			}
			if (nm->status == 503)
				sb__xbatch_missed(sh, rid);
			return;
		}
		for (size_t i = 0; i < n; i++) {
			if (tok[i] < '0' || tok[i] > '9')
				return;
			rid = rid * 10 + (uint64_t)(tok[i] - '0');
		}
	}
	struct sb__req *q = sb__reqtab_get(&sh->reqs, rid);
	if (q != NULL && q->bc != NULL) { /* a part of a broadcast (cluster_bcast.c) */
		sb__xbcast_in(sh, q, nm);
		return;
	}
	if (q == NULL || q->handler != SB__CLUSTER_EP) {
		sb__stat_add(&sh->st.late_replies, nm->status == 0);
		return;
	}
	if (nm->status == 503) { /* no router subscribed: nobody handles it */
		sb__cluster_no_responders(sh, rid);
		return;
	}
	/* On its own reply subject, the request itself: returned. */
	if (!shared && nm->status == 0 && nm->data_len >= SB_PREFIX_LEN &&
	    nm->data_len <= UINT32_MAX && sb_decode(f, len, 0, &m, NULL) == 0 &&
	    m.kind == SB_REQUEST && m.id == rid) {
		returned(sh, q, nm, f, len);
		return;
	}
	/* Another router's frame goes to our client as it is: it must be an
	 * answer to this very request, and whole. */
	if ((!shared && (nm->status != 0 || nm->data_len < SB_PREFIX_LEN ||
			 nm->data_len > UINT32_MAX || sb_decode(f, len, 0, &m, NULL) != 0)) ||
	    (m.kind != SB_REPLY && m.kind != SB_ERROR) || m.id != rid)
		goto malformed;
	if (q->x->batch != 0) { /* its batch was taken: no "no responders" to come */
		sb__xbatch_answered(sh, q->x->batch);
		q->x->batch = 0;
	}
	if (q->x->back != NULL) { /* the other router has it: no way back */
		sb__buf_put(q->x->back, &sh->pool);
		q->x->back = NULL;
	}
	const char *hand;
	size_t hand_len;
	if (q->x->router == 0 && nm->hdr_len > 0 &&
	    sb__nats_hdr_get(nm->hdr, nm->hdr_len, "Sb-Hand", &hand, &hand_len) &&
	    hand_len < sizeof q->x->hand) {
		const char *dot = memrchr(hand, '.', hand_len);
		q->x->router = sb__cluster_fnv(hand, dot != NULL ? (size_t)(dot - hand) : hand_len);
		memcpy(q->x->hand, hand, hand_len);
		q->x->hand[hand_len] = 0;
		sb__cluster_heard(sh, q->x->router);
	}
	struct sb__buf *b = sb__buf_heap(len);
	if (b == NULL)
		return;
	memcpy(b->data, f, len);
	sb__req_reply(sh, SB__CLUSTER_EP, b, b->data, len);
	return;
malformed:
	sb__log(&sh->r->log, 1, "shard %u: cluster: a malformed answer on %.*s", sh->id,
		(int)nm->subject_len, nm->subject);
}

static void inbox_each(struct sb__shard *sh, const struct sb__nats_msg *nm, size_t unused)
{
	(void)unused;
	inbox_in(sh, nm);
}

/* Several answers in one message (cluster_batch.c) are taken one by one,
 * each as if it had come alone with the batch's headers; a batch whose
 * frames do not add up is dropped whole, before any of them is used. */
static void on_inbox(void *ud, const struct sb__nats_msg *nm)
{
	struct sb__shard *sh = ud;
	const char *count;
	size_t count_len;

	if (nm->hdr_len == 0 || nm->status != 0 ||
	    !sb__nats_hdr_get(nm->hdr, nm->hdr_len, "Sb-Batch", &count, &count_len)) {
		inbox_in(sh, nm);
		return;
	}
	sb__xbatch_each(sh, nm, count, count_len,
			nm->subject_len != sh->xs->inbox_len ? "not on the answers' subject" : NULL,
			inbox_each, 0);
}

/* ---- interest ------------------------------------------------------------ */

void sb__cluster_route_new(void *ctx, struct sb__route *r)
{
	struct sb__shard *sh = ctx;
	char subj[SUBJ_MAX];

	/* The catch-all and names that are not subjects (a `*` or `>` token
	 * would subscribe to other names) stay this router's own. Cancels come
	 * to every shard that has the route, not only to those with a handler
	 * of the name: a shard that took a request as its last handler left
	 * and passed it to a handler on another shard holds its entry. */
	if (sb__cluster_subject(subj, "sb.x.r.", r->name, r->len) != 0)
		return;
	r->sid[1] = sb__nats_sub(sh->xs->nc, subj, NULL, sb__cluster_on_cancel, sh);
	if (r->sid[1] < 0)
		r->sid[1] = 0;
}

static int drain_room(struct sb__xshard *xs)
{
	uint32_t cap = xs->drain_cap ? xs->drain_cap * 2 : 8;
	struct xdrain *d = realloc(xs->drain, cap * sizeof *d);
	if (d == NULL)
		return 0;
	xs->drain = d;
	xs->drain_cap = cap;
	return 1;
}

/* The last handler of r's name here left: its sb.r subscription stays for
 * the drain time, so that what NATS routed to us before our UNSUB reached
 * the other servers arrives (the handlers' server drops a message for a
 * queue group it has no member of left, and nobody hears of it) and goes
 * back to its router (cluster_handle.c). */
static void drain(struct sb__shard *sh, struct sb__route *r)
{
	struct sb__xshard *xs = sh->xs;
	char *name = malloc(r->len);

	if (name == NULL || (xs->ndrain == xs->drain_cap && !drain_room(xs))) {
		free(name);
		sb__nats_unsub(xs->nc, r->sid[0]);
		return;
	}
	memcpy(name, r->name, r->len);
	xs->drain[xs->ndrain++] = (struct xdrain){sh->now + xs->drain_ms, r->sid[0], r->len, name};
}

/* A handler of name is back during its drain time: the subscription kept
 * (its sid), no UNSUB and SUB again. 0 if none. */
static int64_t undrain(struct sb__xshard *xs, const char *name, uint32_t len)
{
	for (uint32_t i = 0; i < xs->ndrain; i++) {
		struct xdrain *d = &xs->drain[i];
		if (d->len != len || memcmp(d->name, name, len) != 0)
			continue;
		int64_t sid = d->sid;
		free(d->name);
		memmove(d, d + 1, (xs->ndrain - i - 1) * sizeof *d);
		xs->ndrain--;
		return sid;
	}
	return 0;
}

/* Drain times that are up: unsubscribed. */
static void drained(struct sb__shard *sh)
{
	struct sb__xshard *xs = sh->xs;
	uint32_t n = 0;
	while (n < xs->ndrain && xs->drain[n].due <= sh->now) {
		sb__nats_unsub(xs->nc, xs->drain[n].sid);
		free(xs->drain[n].name);
		n++;
	}
	if (n > 0) {
		memmove(xs->drain, xs->drain + n, (xs->ndrain - n) * sizeof *xs->drain);
		xs->ndrain -= n;
	}
}

void sb__cluster_route_here(void *ctx, struct sb__route *r, int up)
{
	struct sb__shard *sh = ctx;
	char subj[SUBJ_MAX];

	if (!up) {
		if (r->sid[0] > 0)
			drain(sh, r);
		r->sid[0] = 0;
		return;
	}
	/* Only a shard with a handler of the name takes its requests, so
	 * NATS never hands one to a shard that would pass it to another
	 * (docs/cluster.md, "Subjects"). What other routers spill to this
	 * one comes on sb.s.<our hash>.> (sb__cluster_start()). */
	if (sb__cluster_subject(subj, "sb.r.", r->name, r->len) != 0)
		return;
	r->sid[0] = undrain(sh->xs, r->name, r->len);
	if (r->sid[0] == 0)
		r->sid[0] = sb__nats_sub(sh->xs->nc, subj, subj, sb__cluster_on_call, sh);
	if (r->sid[0] < 0)
		r->sid[0] = 0;
}

void sb__cluster_route_gone(struct sb__shard *sh, struct sb__route *r)
{
	for (int i = 0; i < 2; i++)
		if (r->sid[i] > 0)
			sb__nats_unsub(sh->xs->nc, r->sid[i]);
}

void sb__cluster_peer_up(struct sb__shard *sh, const struct sb__conn *c)
{
	struct sb__xshard *xs = sh->xs;
	char subj[SUBJ_MAX];
	int64_t sid;

	/* A name that is not a subject stays this router's own. */
	if (sb__cluster_subject(subj, "sb.p.", c->name, strlen(c->name)) != 0)
		return;
	/* In a queue group: should two routers hold the name (names are not
	 * yet unique across routers), one of them gets each message, never
	 * both. */
	if ((sid = sb__nats_sub(xs->nc, subj, subj, sb__cluster_on_call, sh)) > 0)
		sb__idmap_put(&xs->psub, c->ep, (uint64_t)sid);
	sb__cluster_subject(subj, "sb.x.p.", c->name, strlen(c->name));
	if ((sid = sb__nats_sub(xs->nc, subj, NULL, sb__cluster_on_cancel, sh)) > 0)
		sb__idmap_put(&xs->pxsub, c->ep, (uint64_t)sid);
}

void sb__cluster_peer_down(struct sb__shard *sh, const struct sb__conn *c, uint32_t hold_ms)
{
	struct sb__xshard *xs = sh->xs;
	uint64_t rev = sb__idmap_get(&xs->claims, c->ep);
	if (rev != 0) { /* only ours: at its revision */
		if (hold_ms == 0 || sb__cluster_hold(sh, c->name, rev, hold_ms) != 0)
			sb__nats_kv_delete(xs->nc, "sbnames", c->name, rev, 2000,
					   sb__cluster_kv_ignore, NULL);
		sb__idmap_del(&xs->claims, c->ep);
	}
	struct sb__idmap *maps[2] = {&xs->psub, &xs->pxsub};
	for (int i = 0; i < 2; i++) {
		uint64_t sid = sb__idmap_get(maps[i], c->ep);
		if (sid != 0) {
			sb__nats_unsub(xs->nc, (int64_t)sid);
			sb__idmap_del(maps[i], c->ep);
		}
	}
}

/* ---- the connection in the shard's loop ---------------------------------- */

/* The connection went: what was in flight through it may be lost (NATS
 * delivers at most once), so every request across routers ends now. */
static void lost(struct sb__shard *sh)
{
	for (struct sb__link *l = sh->req_list.next; l != &sh->req_list;) {
		struct sb__link *next = l->next;
		uint64_t next_rid =
			next != &sh->req_list ? SB__CONTAINER(next, struct sb__req, all)->rid : 0;
		struct sb__req *q = SB__CONTAINER(l, struct sb__req, all);
		if (q->handler == SB__CLUSTER_EP) {
			sb__req_fail(
				sh, q, SB_EPEERGONE,
				"the router lost its cluster connection while the handler had it");
		} else if (q->requester == SB__REMOTE_REQUESTER) {
			q->ops->cancel(sh, q);
			sb__req_finish(sh, q);
		} else if (q->bc != NULL) {
			sb__xbcast_gone(sh, q, 0);
		}
		/* Ending one may end others (a slow consumer dropped): start over. */
		if (next != &sh->req_list && sb__reqtab_get(&sh->reqs, next_rid) == NULL)
			next = sh->req_list.next;
		l = next;
	}
}

static void on_event(void *ud, enum sb__nats_event ev, const char *text)
{
	struct sb__shard *sh = ud;
	switch (ev) {
	case SB__NATS_CONNECTED: {
		sb__log(&sh->r->log, 1, "shard %u: cluster: connected to %s as %s", sh->id, text,
			sh->xs->inbox);
		sh->xs->ready_at = sh->now ? sh->now : 1;
		sh->xs->failed_said = 0;
		sb__cluster_bucket(sh, 1);
		sb__xpres_connected(sh);
		break;
	}
	case SB__NATS_DISCONNECTED:
		sh->xs->ready_at = 0;
		sb__xbatch_drop(sh);
		sb__log(&sh->r->log, 1, "shard %u: cluster: %s", sh->id, text);
		lost(sh);
		break;
	case SB__NATS_SERVER_ERROR:
		sb__log(&sh->r->log, 0, "shard %u: cluster: the server says %s", sh->id, text);
		break;
	case SB__NATS_ATTEMPT_FAILED: {
		/* A wrong CA, a certificate the server wants, a server down:
		 * said once per reason until the connection is made, as an
		 * error, since the router is cut off from the cluster. */
		uint64_t h = sb__cluster_fnv(text, strlen(text));
		if (h != sh->xs->failed_said)
			sb__log(&sh->r->log, 0, "shard %u: cluster: cannot join: %s", sh->id, text);
		sh->xs->failed_said = h;
		break;
	}
	case SB__NATS_WRITABLE:
		break;
	}
}

int sb__cluster_start(struct sb__shard *sh)
{
	struct sb__xrouter *xr = sh->r->xr;
	struct sb__xshard *xs = calloc(1, sizeof *xs);
	char name[64], why[256];

	if (xs == NULL)
		return SB_ENOMEM;
	sb__idmap_init(&xs->from);
	sb__idmap_init(&xs->held);
	sb__idmap_init(&xs->claims);
	sb__idmap_init(&xs->psub);
	sb__idmap_init(&xs->pxsub);
	xs->mark = sh->r->cfg.out_max / 4;
	snprintf(xs->inbox, sizeof xs->inbox, "sb.i.%s.%u", xr->id, sh->id);
	xs->inbox_len = strlen(xs->inbox);
	snprintf(name, sizeof name, "switchboard %s.%u", xr->id, sh->id);
	struct sb__nats_hdr h = {"Sb-Svc", "1"};
	long n = sb__nats_hdr_build(xs->svc_hdr, sizeof xs->svc_hdr, &h, 1);
	xs->svc_hdr_len = n > 0 ? (size_t)n : 0;
	/* Bounded as a client's queue is (docs/architecture.md): a quarter of
	 * out_max pauses the producers, and eight receive pools above out_max
	 * hold what was routed before a pause took effect (mail to another
	 * shard takes turns to arrive). Only past that is an answer lost. */
	const struct sb_router_config *cfg = &sh->r->cfg;
	struct sb__nats_cfg nc = sb__cluster_nats_cfg(xr);
	nc.name = name;
	nc.out_max = cfg->out_max + 8ull * cfg->recv_buffers * cfg->recv_buffer_size;
	xs->link_max = nc.out_max;
	nc.on_event = on_event;
	nc.ud = sh;
	sh->xs = xs;
	if (sb__nats_new(&nc, &xs->nc, why, sizeof why) != 0) {
		sb__log(&sh->r->log, 0, "shard %u: cluster: %s", sh->id, why);
		sb__idmap_destroy(&xs->from);
		sb__idmap_destroy(&xs->held);
		sb__idmap_destroy(&xs->psub);
		sb__idmap_destroy(&xs->pxsub);
		free(xs);
		sh->xs = NULL;
		return SB_EINVAL;
	}
	xs->self = sb__cluster_fnv(xr->id, strlen(xr->id));
	char hand[40];
	snprintf(hand, sizeof hand, "%s.%u", xr->id, sh->id);
	struct sb__nats_hdr hh = {"Sb-Hand", hand};
	n = sb__nats_hdr_build(xs->hand_hdr, sizeof xs->hand_hdr, &hh, 1);
	xs->hand_hdr_len = n > 0 ? (size_t)n : 0;
	/* Long enough for a request NATS routed to us before our UNSUB of a
	 * name reached the other servers to arrive, and for its router to
	 * have stopped sending us the name's: the dead time, which any
	 * message between two routers must already take less than (a router
	 * silent that long is gone). */
	xs->drain_ms = xr->dead_ms;
	char sub[96], flow[96], spill[32], spillq[32];
	snprintf(sub, sizeof sub, "%s.*", xs->inbox);
	snprintf(flow, sizeof flow, "sb.f.%s", hand);
	/* Every name spilled or returned to us, on every shard, in a queue
	 * group of the router's: never unsubscribed, so none is lost on its
	 * way as a handler leaves; one for a name we have no handler of goes
	 * back (cluster_handle.c) as NATS's 503 would. */
	snprintf(spillq, sizeof spillq, "sb.s.%016" PRIx64, xs->self);
	snprintf(spill, sizeof spill, "sb.s.%016" PRIx64 ".>", xs->self);
	if (sb__nats_sub(xs->nc, spill, spillq, sb__cluster_on_call, sh) < 0 ||
	    sb__nats_sub(xs->nc, xs->inbox, NULL, on_inbox, sh) < 0 ||
	    sb__nats_sub(xs->nc, sub, NULL, on_inbox, sh) < 0 ||
	    sb__nats_sub(xs->nc, "sb.hb.*", NULL, sb__cluster_on_heartbeat, sh) < 0 ||
	    sb__nats_sub(xs->nc, flow, NULL, on_flow, sh) < 0 || sb__xbcast_subscribe(sh) < 0 ||
	    sb__xpres_start(sh) != 0) {
		sb__cluster_stop(sh);
		return SB_ENOMEM;
	}
	sb__xadmin_start(sh);
	return 0;
}

void sb__cluster_stop(struct sb__shard *sh)
{
	struct sb__xshard *xs = sh->xs;
	if (xs == NULL)
		return;
	sb__cluster_unhold(sh, 1); /* a router that leaves keeps no token */
	xs->stopping = 1;
	sb__xbatch_flush(sh, NULL, 0);
	sb__nats_flush(xs->nc); /* the last claims' deletes, as far as the socket takes them */
	sb__nats_free(xs->nc);
	sb__xpres_stop(sh);
	sb__idmap_destroy(&xs->from);
	sb__idmap_destroy(&xs->claims);
	sb__idmap_destroy(&xs->held);
	sb__idmap_destroy(&xs->psub);
	sb__idmap_destroy(&xs->pxsub);
	for (uint32_t i = 0; i < xs->ndrain; i++)
		free(xs->drain[i].name);
	free(xs->drain);
	free(xs->paused);
	free(xs->live);
	free(xs->holds);
	sb__xbatch_free(sh);
	free(xs);
	sh->xs = NULL;
}

/* After the connection ran: whether its socket may hold more than one
 * process() took (it reads a bounded amount), so the next turn reads on
 * without waiting for a poll that new bytes alone would fire. */
static void ran(struct sb__shard *sh)
{
	sh->xs->hot = sb__nats_more(sh->xs->nc);
}

/* Poll user data: the tag, then the arm's number and whether it is the
 * POLLOUT one, so a completion of a poll since replaced is told apart. */
static uint64_t poll_ud(uint64_t seq, int out)
{
	return sb__tag(SB__TAG_NATS, seq << 1 | (uint64_t)out);
}

void sb__cluster_cqe(struct sb__shard *sh, struct io_uring_cqe *cqe)
{
	struct sb__xshard *xs = sh->xs;
	uint64_t ud = io_uring_cqe_get_data64(cqe) & SB__EP_MASK;
	uint64_t seq = ud >> 1;
	int out = (int)(ud & 1);

	if (out && seq == xs->out_seq)
		xs->out_armed = 0;
	else if (!out && seq == xs->in_seq && !(cqe->flags & IORING_CQE_F_MORE))
		xs->in_armed = 0;
	if (cqe->res <= 0)
		return;
	sb__nats_process(xs->nc, (short)cqe->res, sh->now);
	ran(sh);
}

static void poll_remove(struct sb__shard *sh, uint64_t ud)
{
	struct io_uring_sqe *sqe = sb__sqe(sh);
	io_uring_prep_poll_remove(sqe, ud);
	io_uring_sqe_set_data64(sqe, sb__tag(SB__TAG_CANCEL, 0));
}

static void poll_arm(struct sb__shard *sh, int fd, int out)
{
	struct sb__xshard *xs = sh->xs;
	struct io_uring_sqe *sqe = sb__sqe(sh);
	uint64_t seq = ++xs->seq;
	if (out) {
		io_uring_prep_poll_add(sqe, fd, POLLOUT);
		xs->out_seq = seq;
		xs->out_armed = 1;
	} else {
		io_uring_prep_poll_multishot(sqe, fd, POLLIN);
		xs->in_seq = seq;
		xs->in_armed = 1;
	}
	io_uring_sqe_set_data64(sqe, poll_ud(seq, out));
}

void sb__cluster_turn(struct sb__shard *sh)
{
	struct sb__xshard *xs = sh->xs;

	if (xs->hot || sh->now >= xs->due) {
		sb__nats_process(xs->nc, xs->hot ? POLLIN : 0, sh->now);
		ran(sh);
	}
	sb__cluster_liveness(sh);
	drained(sh);
	sb__xbatch_flush(sh, NULL, 0); /* the turn's answers, a message per inbox */
	sb__nats_flush(xs->nc);
	uncongest(sh);
	/* A new socket (often with the old one's number): the old polls hold
	 * the old one open until removed. */
	uint64_t gen = sb__nats_socket_gen(xs->nc);
	if (gen != xs->gen) {
		if (xs->in_armed)
			poll_remove(sh, poll_ud(xs->in_seq, 0));
		if (xs->out_armed)
			poll_remove(sh, poll_ud(xs->out_seq, 1));
		xs->in_armed = xs->out_armed = 0;
		xs->in_seq = xs->out_seq = 0;
		xs->gen = gen;
	}
	int fd = sb__nats_fd(xs->nc);
	if (fd >= 0 && !xs->in_armed)
		poll_arm(sh, fd, 0);
	if (fd >= 0 && (sb__nats_events(xs->nc) & POLLOUT) && !xs->out_armed)
		poll_arm(sh, fd, 1);
	xs->due = sh->now + (uint64_t)sb__nats_timeout(xs->nc, sh->now);
}

uint64_t sb__cluster_wait(struct sb__shard *sh, uint64_t wait_ms)
{
	struct sb__xshard *xs = sh->xs;
	if (xs->hot)
		return 0;
	uint64_t due = xs->due < xs->hb_next ? xs->due : xs->hb_next;
	if (xs->ndrain > 0 && xs->drain[0].due < due)
		due = xs->drain[0].due;
	uint64_t left = due > sh->now ? due - sh->now : 0;
	return left < wait_ms ? left : wait_ms;
}
