/* The other routers' liveness and peer names unique across them. Shard 0
 * of each router publishes a heartbeat; a router not heard from for the
 * dead time is gone, and what it held ends. A peer's name is claimed in
 * JetStream's key-value store at HELLO (bucket "sbnames", the value the
 * holding router's id); a dead router's claim is taken over. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/idmap.h"
#include "common/log.h"
#include "common/nats.h"
#include "router/cluster-int.h"
#include "router/cluster.h"
#include "router/conn-t.h"
#include "router/conn.h"
#include "router/handshake.h"
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
void sb__cluster_heard(struct sb__shard *sh, uint64_t h)
{
	struct sb__xshard *xs = sh->xs;
	if (h == 0 || h == xs->self)
		return;
	for (uint32_t i = 0; i < xs->nlive; i++)
		if (xs->live[i].router == h) {
			xs->live[i].seen = sh->now;
			return;
		}
	if (xs->nlive == xs->live_cap) {
		uint32_t cap = xs->live_cap ? xs->live_cap * 2 : 8;
		struct live *l = realloc(xs->live, cap * sizeof *l);
		if (l == NULL)
			return; /* unknown routers' requests end on their deadlines */
		xs->live = l;
		xs->live_cap = cap;
	}
	xs->live[xs->nlive++] = (struct live){h, sh->now};
}

void sb__cluster_on_heartbeat(void *ud, const struct sb__nats_msg *nm)
{
	struct sb__shard *sh = ud;
	const struct sb__xrouter *xr = sh->r->xr;
	if (nm->subject_len <= 6)
		return;
	uint64_t h = sb__cluster_fnv(nm->subject + 6, nm->subject_len - 6);
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
	sb__cluster_heard(sh, h);
}

/* Router h went silent: what it handled for us ends with `peer gone`, what
 * we handle for it is cancelled (nobody is left to answer). */
static void router_gone(struct sb__shard *sh, uint64_t h)
{
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
		sb__conn_fail(sh, c, SB_EDUPNAME, "a peer on another router already has this name");
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
