/* The other routers' liveness and peer names unique across them. Shard 0
 * of each router publishes a heartbeat; a router not heard from for the
 * dead time is gone, and what it held ends. A peer's name is claimed in
 * JetStream's key-value store at HELLO (bucket "sbnames", the value the
 * holding router's id); a dead router's claim is taken over. A name from
 * the naming pattern is claimed before it is taken (the next one on a
 * clash), and a name held for a resume token stays claimed while held. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/idmap.h"
#include "common/log.h"
#include "common/nats.h"
#include "router/cluster-int.h"
#include "router/cluster.h"
#include "router/cluster_presence.h"
#include "router/conn-t.h"
#include "router/conn.h"
#include "router/handshake.h"
#include "router/peers.h"
#include "router/request.h"
#include "router/router-t.h"
#include "router/shard.h"

/* Heartbeats: shard 0 of each router publishes sb.hb.<R> every beat_ms
 * (a sixth of the dead time), its incarnation as payload; a router not
 * heard from for dead_ms (--cluster-dead-ms) is gone, and the requests it
 * held end (docs/cluster.md, "Failures"). */
#define DEAD_MS (sh->r->xr->dead_ms)

/* ---- liveness ------------------------------------------------------------- */

/* Router h is alive now (a heartbeat, or it answered). */
struct live *sb__cluster_heard(struct sb__shard *sh, uint64_t h)
{
	struct sb__xshard *xs = sh->xs;
	if (h == 0 || h == xs->self)
		return NULL;
	for (uint32_t i = 0; i < xs->nlive; i++)
		if (xs->live[i].router == h) {
			xs->live[i].seen = sh->now;
			return &xs->live[i];
		}
	if (xs->nlive == xs->live_cap) {
		uint32_t cap = xs->live_cap ? xs->live_cap * 2 : 8;
		struct live *l = realloc(xs->live, cap * sizeof *l);
		if (l == NULL)
			return NULL; /* unknown routers' requests end on their deadlines */
		xs->live = l;
		xs->live_cap = cap;
	}
	xs->live[xs->nlive] = (struct live){.router = h, .seen = sh->now};
	return &xs->live[xs->nlive++];
}

void sb__cluster_on_heartbeat(void *ud, const struct sb__nats_msg *nm)
{
	struct sb__shard *sh = ud;
	const struct sb__xrouter *xr = sh->r->xr;
	/* "sb.hb.<R>": hashed as <R> alone, as inboxes and Sb-Hand name it,
	 * so a heartbeat keeps alive the router our requests know. */
	const size_t pre = sizeof "sb.hb." - 1;
	if (nm->subject_len <= pre)
		return;
	const char *id = nm->subject + pre;
	size_t n = nm->subject_len - pre;
	uint64_t h = sb__cluster_fnv(id, n);
	/* Our id, but not our incarnation: another router was given our
	 * --cluster-name, and our inboxes are its too. */
	if (h == sh->xs->self &&
	    (nm->data_len != strlen(xr->inc) || memcmp(nm->data, xr->inc, nm->data_len) != 0)) {
		if (!sh->xs->clash_said++)
			sb__log(&sh->r->log, 0,
				"shard %u: cluster: another router runs with this router's id %s: "
				"give each router a --cluster-name of its own",
				sh->id, xr->id);
		return;
	}
	struct live *l = sb__cluster_heard(sh, h);
	/* Its id, by which $sb.* asks it (cluster_admin.c). */
	if (l != NULL && l->id[0] == 0 && n < sizeof l->id) {
		memcpy(l->id, id, n);
		l->id[n] = 0;
	}
	sb__xpres_heard(sh, id, n);
}

/* Router h went silent: what it handled for us ends with `peer gone`, what
 * we handle for it is cancelled (nobody is left to answer). */
static void router_gone(struct sb__shard *sh, uint64_t h)
{
	sb__xpres_router_gone(sh, h); /* its peers are announced disconnected */
	for (struct sb__link *l = sh->req_list.next; l != &sh->req_list;) {
		struct sb__link *next = l->next;
		uint64_t next_rid =
			next != &sh->req_list ? SB__CONTAINER(next, struct sb__req, all)->rid : 0;
		struct sb__req *q = SB__CONTAINER(l, struct sb__req, all);
		if (q->x != NULL && q->x->router == h) {
			if (q->handler == SB__CLUSTER_EP) {
				sb__req_fail(sh, q, SB_EPEERGONE,
					     "the router handling it stopped answering");
			} else if (q->requester == SB__REMOTE_REQUESTER) {
				q->ops->cancel(sh, q);
				sb__req_finish(sh, q);
			}
		} else if (q->bc != NULL && q->requester != SB__REMOTE_REQUESTER) {
			sb__xbcast_gone(sh, q, h); /* its part of a broadcast of ours */
		}
		/* Ending one may end others (a slow consumer dropped): start over. */
		if (next != &sh->req_list && sb__reqtab_get(&sh->reqs, next_rid) == NULL)
			next = sh->req_list.next;
		l = next;
	}
}

/* Every beat: shard 0 beats; every shard looks for routers gone silent. */
void sb__cluster_liveness(struct sb__shard *sh)
{
	struct sb__xshard *xs = sh->xs;
	char subj[64];

	if (sh->now < xs->hb_next)
		return;
	xs->hb_next = sh->now + sh->r->xr->beat_ms;
	sb__cluster_unhold(sh, 0);
	sb__cluster_bucket(sh, 0);
	sb__xpres_tick(sh);
	if (sh->id == 0 && sb__nats_ready(xs->nc)) {
		snprintf(subj, sizeof subj, "sb.hb.%s", sh->r->xr->id);
		sb__nats_pub(xs->nc, subj, NULL, NULL, 0, sh->r->xr->inc, strlen(sh->r->xr->inc));
	}
	/* While we cannot hear anyone, silence proves nothing (and what we
	 * had in flight has ended already: lost()). */
	if (!sb__nats_ready(xs->nc)) {
		for (uint32_t i = 0; i < xs->nlive; i++)
			xs->live[i].seen = sh->now;
		return;
	}
	for (uint32_t i = 0; i < xs->nlive;) {
		if (sh->now - xs->live[i].seen <= DEAD_MS) {
			i++;
			continue;
		}
		uint64_t h = xs->live[i].router;
		xs->live[i] = xs->live[--xs->nlive];
		router_gone(sh, h);
	}
}

void sb__cluster_kv_ignore(void *ud, int err, uint64_t rev, const uint8_t *val, size_t len)
{
	(void)ud, (void)err, (void)rev, (void)val, (void)len;
}

/* A name claim in flight: the connection it is for, its HELLO's id. */
struct claim {
	struct sb__shard *sh;
	uint64_t ep;
	uint64_t hello_id;
	int tries;    /* takeovers and claims again after the first claim */
	int updating; /* the claim in flight is a takeover (an update) */
	char name[SB_PEER_MAX + 1];
};

static void claimed(void *ud, int err, uint64_t rev, const uint8_t *val, size_t len);

/* Whether the name's holder (its value: the holding router's id) may be
 * displaced: ourselves (the name is ours already: this router's own
 * directory keeps it unique here), or a router we have not heard from for
 * the dead time while we could hear. */
static int holder_gone(struct sb__shard *sh, const uint8_t *val, size_t len)
{
	struct sb__xshard *xs = sh->xs;
	uint64_t h = sb__cluster_fnv((const char *)val, len);
	if (h == xs->self)
		return 1;
	if (xs->ready_at == 0 || sh->now - xs->ready_at <= DEAD_MS)
		return 0;
	for (uint32_t i = 0; i < xs->nlive; i++)
		if (xs->live[i].router == h)
			return 0;
	return 1;
}

static void claimed(void *ud, int err, uint64_t rev, const uint8_t *val, size_t len)
{
	struct claim *cl = ud;
	struct sb__shard *sh = cl->sh;
	struct sb__xshard *xs = sh->xs;
	struct sb__conn *c = xs->stopping ? NULL : sb__conn_get(sh, cl->ep);
	const char *id = sh->r->xr->id;

	if (c == NULL || c->closing || c->doomed) { /* it left while we asked */
		if (err == 0 && !xs->stopping)
			sb__nats_kv_delete(xs->nc, "sbnames", cl->name, rev, 2000,
					   sb__cluster_kv_ignore, NULL);
		free(cl);
		return;
	}
	if (err == SB_EDUPNAME && cl->tries < 4) {
		/* A dead router's name (or ours): take it over, a compare-and-
		 * swap at the holder's revision, so of two takers one wins. A
		 * takeover that finds the name moved on (its holder let it go
		 * meanwhile) makes the claim again. */
		int was_update = cl->updating, rc = 1;
		cl->tries++;
		cl->updating = 0;
		if (was_update)
			rc = sb__nats_kv_create(xs->nc, "sbnames", c->name, id, strlen(id), 2000,
						claimed, cl);
		else if (val != NULL && holder_gone(sh, val, len)) {
			cl->updating = 1;
			rc = sb__nats_kv_update(xs->nc, "sbnames", c->name, id, strlen(id), rev,
						2000, claimed, cl);
		}
		if (rc == 0)
			return;
		if (rc < 0)
			err = rc;
	}
	if (err == 0) {
		sb__idmap_put(&xs->claims, c->ep, rev);
		sb__hs_welcome(sh, c, cl->hello_id);
	} else if (err == SB_EDUPNAME) {
		/* A token is the router's that gave it: another router cannot
		 * tell its holder from anyone (docs/cluster.md). */
		sb__conn_fail(sh, c, SB_EDUPNAME,
			      c->pr.has_resume
				      ? "another router has this name, or holds it for its "
					"resume token (good only on the router that gave it, "
					"until its grace ends)"
				      : "a peer on another router already has this name");
	} else if (err == SB_ENOHANDLER || err == SB_EOFFLINE) {
		/* No JetStream on the servers ("no responders"), or this
		 * router cut off from them (it serves its local traffic only):
		 * the name is this router's alone. */
		if (!xs->kv_warned++)
			sb__log(&sh->r->log, 1,
				"shard %u: cluster: peer names are not claimed across routers: "
				"%s",
				sh->id, sb_strerror(err));
		sb__hs_welcome(sh, c, cl->hello_id);
	} else {
		/* JetStream is there but did not answer in time (a stalled or
		 * minority server, a full link) or failed: another router may
		 * hold the name, so welcoming would give it twice. The client
		 * tries again. */
		char why[128];
		snprintf(why, sizeof why,
			 "the name could not be claimed across routers (%s); "
			 "try again",
			 sb_strerror(err));
		sb__conn_fail(sh, c, SB_EOVERLOADED, why);
	}
	free(cl);
}

int sb__cluster_claim(struct sb__shard *sh, struct sb__conn *c, uint64_t id)
{
	struct sb__xshard *xs = sh->xs;
	const char *me = sh->r->xr->id;
	struct claim *cl = malloc(sizeof *cl);
	char subj[SUBJ_MAX];

	if (cl == NULL ||
	    sb__cluster_subject(subj, "$KV.sbnames.", c->name, strlen(c->name)) != 0) {
		free(cl);
		return -1;
	}
	*cl = (struct claim){.sh = sh, .ep = c->ep, .hello_id = id};
	snprintf(cl->name, sizeof cl->name, "%s", c->name);
	/* Refused at once (the link down, or full): decided as an answer. */
	int rc = sb__nats_kv_create(xs->nc, "sbnames", c->name, me, strlen(me), 2000, claimed, cl);
	if (rc != 0)
		claimed(cl, rc, 0, NULL, 0);
	return 0;
}

/* ---- the names' bucket ------------------------------------------------------ */

static void bucket_made(void *ud, int err, uint64_t rev, const uint8_t *val, size_t len)
{
	struct sb__shard *sh = ud;
	struct sb__xshard *xs = sh->xs;
	(void)rev, (void)val, (void)len;
	if (xs->stopping)
		return;
	if (err == 0) {
		xs->bucket = 2;
		return;
	}
	/* No JetStream (yet): claims meanwhile find no bucket and the names
	 * are this router's own; asked again, less often each time. */
	xs->bucket = 0;
	xs->bucket_next = sh->now + xs->bucket_wait;
	xs->bucket_wait = xs->bucket_wait < 8000 ? xs->bucket_wait * 2 : 8000;
}

void sb__cluster_bucket(struct sb__shard *sh, int reset)
{
	struct sb__xshard *xs = sh->xs;
	if (reset) {
		xs->bucket = 0;
		xs->bucket_next = 0;
		xs->bucket_wait = 500;
	}
	if (xs->bucket != 0 || sh->now < xs->bucket_next || !sb__nats_ready(xs->nc))
		return;
	/* Made by whoever comes first; the same settings find it made. */
	struct sb__nats_kv_opts o = {.memory = 1, .timeout_ms = 5000};
	xs->bucket = 1;
	if (sb__nats_kv_bucket(xs->nc, "sbnames", &o, bucket_made, sh) != 0)
		bucket_made(sh, SB_EOFFLINE, 0, NULL, 0);
}

/* ---- names held for resume tokens ----------------------------------------- */

int sb__cluster_hold(struct sb__shard *sh, const char *name, uint64_t rev, uint32_t hold_ms)
{
	struct sb__xshard *xs = sh->xs;
	if (xs->nholds == xs->holds_cap) {
		uint32_t cap = xs->holds_cap ? xs->holds_cap * 2 : 16;
		struct hold *h = realloc(xs->holds, cap * sizeof *h);
		if (h == NULL)
			return -1;
		xs->holds = h;
		xs->holds_cap = cap;
	}
	struct hold *h = &xs->holds[xs->nholds++];
	h->due = sh->now + hold_ms;
	h->rev = rev;
	snprintf(h->name, sizeof h->name, "%s", name);
	return 0;
}

void sb__cluster_unhold(struct sb__shard *sh, int all)
{
	struct sb__xshard *xs = sh->xs;
	for (uint32_t i = 0; i < xs->nholds;) {
		struct hold *h = &xs->holds[i];
		/* Kept while the link cannot take the delete (it is down, or
		 * full): tried again at the next look. */
		if ((all || sh->now >= h->due) &&
		    (sb__nats_kv_delete(xs->nc, "sbnames", h->name, h->rev, 2000,
					sb__cluster_kv_ignore, NULL) == 0 ||
		     all)) {
			xs->holds[i] = xs->holds[--xs->nholds];
			continue;
		}
		i++;
	}
}

/* ---- names from the naming pattern ------------------------------------------ */

/* Names tried for one HELLO: each clash skips twice as far as the last
 * (another router has been naming from the same pattern), so 12 reach
 * 4,096 names ahead. */
#define NAME_TRIES 12

/* A name from the pattern being claimed for a HELLO that asked for none. */
struct naming {
	struct sb__shard *sh;
	uint64_t ep;
	uint64_t hello_id;
	uint32_t clashes;
	char name[SB_PEER_MAX + 1];
};

static void named(void *ud, int err, uint64_t rev, const uint8_t *val, size_t len);

/* The pattern's next name free here, claimed in the cluster. @return 0:
 * under way (named() will say), or the link's refusal */
static int name_next(struct naming *n)
{
	struct sb__shard *sh = n->sh;
	const char *me = sh->r->xr->id;
	uint32_t skip = n->clashes > 0 ? (1u << (n->clashes - 1)) - 1 : 0;
	char subj[SUBJ_MAX];

	sb__peers_next_name(sh->r, skip, n->name);
	/* A pattern whose names are not subjects: this router's own. */
	if (sb__cluster_subject(subj, "$KV.sbnames.", n->name, strlen(n->name)) != 0)
		return SB_ENOHANDLER;
	return sb__nats_kv_create(sh->xs->nc, "sbnames", n->name, me, strlen(me), 2000, named, n);
}

/* Peer c takes name (claimed at rev) here, or (name NULL: the cluster
 * could not be asked) the pattern's next name as a router alone does.
 * @return 0 welcomed; else the directory's refusal, c not yet failed */
static int take(struct sb__shard *sh, struct sb__conn *c, const struct naming *n, const char *name,
		uint64_t rev, char *why)
{
	struct sb_view v = {(const uint8_t *)name, name != NULL ? (uint32_t)strlen(name) : 0};
	c->pr.pattern = name != NULL;
	int rc = sb__peers_join(sh, c, v, why);
	if (rc != 0)
		return rc;
	if (rev != 0)
		sb__idmap_put(&sh->xs->claims, c->ep, rev);
	sb__hs_welcome(sh, c, n->hello_id);
	return 0;
}

static void named(void *ud, int err, uint64_t rev, const uint8_t *val, size_t len)
{
	struct naming *n = ud;
	struct sb__shard *sh = n->sh;
	struct sb__xshard *xs = sh->xs;
	struct sb__conn *c = xs->stopping ? NULL : sb__conn_get(sh, n->ep);
	char why[SB__WHY_MAX];
	(void)val, (void)len;

	if (c == NULL || c->closing || c->doomed) { /* it left while we asked */
		if (err == 0 && !xs->stopping)
			sb__nats_kv_delete(xs->nc, "sbnames", n->name, rev, 2000,
					   sb__cluster_kv_ignore, NULL);
		free(n);
		return;
	}
	for (;;) {
		if (err == 0) {
			int rc = take(sh, c, n, n->name, rev, why);
			if (rc == 0) {
				free(n);
				return;
			}
			sb__nats_kv_delete(xs->nc, "sbnames", n->name, rev, 2000,
					   sb__cluster_kv_ignore, NULL);
			if (rc != SB_EDUPNAME) {
				sb__conn_fail(sh, c, rc, why);
				free(n);
				return;
			}
			/* A peer here asked for this very name since (its claim
			 * takes ours over): the next one. */
			err = SB_EDUPNAME;
		}
		/* Another router's (or one of ours that just left, its delete
		 * on its way): the next name. A name from the pattern never
		 * takes one over, not even a dead router's: there are more. */
		if (err != SB_EDUPNAME || ++n->clashes >= NAME_TRIES)
			break;
		if ((err = name_next(n)) == 0)
			return;
	}
	if (err == SB_ENOHANDLER || err == SB_EOFFLINE) {
		/* No JetStream, or this router cut off from the cluster: its
		 * names are its own, as for a name asked for. */
		if (!xs->kv_warned++)
			sb__log(&sh->r->log, 1,
				"shard %u: cluster: peer names are not claimed across routers: "
				"%s",
				sh->id, sb_strerror(err));
		int rc = take(sh, c, n, NULL, 0, why);
		if (rc != 0)
			sb__conn_fail(sh, c, rc, why);
	} else if (err == SB_EDUPNAME) {
		sb__conn_fail(sh, c, SB_EOVERLOADED,
			      "other routers hold the naming pattern's next names; try again");
	} else {
		char text[128];
		snprintf(text, sizeof text,
			 "a name could not be claimed across routers (%s); try again",
			 sb_strerror(err));
		sb__conn_fail(sh, c, SB_EOVERLOADED, text);
	}
	free(n);
}

int sb__cluster_name(struct sb__shard *sh, struct sb__conn *c, uint64_t id)
{
	struct naming *n = malloc(sizeof *n);
	if (n == NULL)
		return -1;
	*n = (struct naming){.sh = sh, .ep = c->ep, .hello_id = id};
	int rc = name_next(n);
	if (rc != 0) /* refused at once (the link down, or full): decided as an answer */
		named(n, rc, 0, NULL, 0);
	return 0;
}
