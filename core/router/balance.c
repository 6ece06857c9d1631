/* Where a message goes, and whether its caller may send it there: the
 * caller's name rule, a `to` peer, the name's handlers and each one's rule
 * (internal handlers are for services, a handler's schema must fit the
 * arguments). Among a name's handlers the caller may reach, a message goes
 * to one on the caller's own shard unless it is busier than the least busy
 * elsewhere, counted by what this shard has in flight to each. */
#include <stdio.h>

#include "router/admin.h"
#include "router/auth.h"
#include "router/balance.h"
#include "router/cluster.h"
#include "router/goodbye.h"
#include "router/pattern.h"
#include "router/peers.h"
#include "router/request.h"
#include "router/shard.h"

/* A handler's entry stays at zero between requests (one probe per change,
 * no churn); sb__conn_gone() removes it. When the last request to a handler
 * that said GOODBYE ends, its shard is told. */
void sb__load_add(struct sb__shard *sh, uint64_t ep, int d)
{
	if (sb__idmap_add(&sh->load, ep, d) == 0 && d < 0 && sh->leaving.count > 0 &&
	    sb__idmap_get(&sh->leaving, ep) != 0) {
		sb__idmap_del(&sh->leaving, ep);
		sb__bye_report(sh, ep);
	}
}

/* The handler for a request: the local one when it is no busier than the
 * least busy elsewhere (no shard hop), else the least busy, ties rotating.
 * "Busy" is what this shard has in flight to it: exact, and free to know. */
static struct sb__endpoint *pick(struct sb__shard *sh, struct sb__route *r, int service)
{
	struct sb__endpoint *best = NULL, *local = NULL;
	uint64_t best_load = UINT64_MAX, local_load = UINT64_MAX;

	for (uint32_t k = 0; k < r->n; k++) {
		struct sb__endpoint *e = &r->eps[(r->rr + k) % r->n];
		if (sb__admits(e, service, NULL, NULL) != 0)
			continue;
		uint64_t load = sb__idmap_get(&sh->load, e->ep);
		if (load < best_load) {
			best = e;
			best_load = load;
		}
		unsigned where = sb__ep_shard(e->ep);
		if ((where == sh->id || where == SB__LOCAL_SHARD) && load < local_load) {
			local = e;
			local_load = load;
		}
	}
	r->rr++;
	return local != NULL && local_load <= best_load ? local : best;
}

struct sb__route *sb__handlers_of(struct sb__shard *sh, struct sb_view name)
{
	struct sb__route *r = sb__routes_find(&sh->routes, name.ptr, name.len);
	if (r == NULL || r->n == 0)
		r = sb__routes_find(&sh->routes, "", 0); /* the catch-all */
	return r != NULL && r->n > 0 ? r : NULL;
}

/* Handlers for the name, but none this caller may reach: each is internal. */
static int internal(const struct sb_msg *m, char *why)
{
	snprintf(why, SB_TEXT_MAX + 1, "%.*s is internal: only services may call it",
		 (int)m->name.len, (const char *)m->name.ptr);
	return SB_EFORBIDDEN;
}

/* Peer ep's handler for the name in table t, else its catch-all there. */
static struct sb__endpoint *handler_of(const struct sb__routes *t, struct sb_view name, uint64_t ep)
{
	struct sb__route *r = sb__routes_find(t, name.ptr, name.len);
	struct sb__endpoint *e = r != NULL ? sb__route_endpoint(r, ep) : NULL;
	if (e == NULL && (r = sb__routes_find(t, "", 0)) != NULL)
		e = sb__route_endpoint(r, ep);
	return e;
}

struct sb__endpoint *sb__peer_handler(struct sb__shard *sh, struct sb_view name, uint64_t ep)
{
	struct sb__endpoint *e = handler_of(&sh->routes, name, ep);
	return e != NULL ? e : handler_of(&sh->direct, name, ep);
}

/* To a named peer: its handler for the name or its catch-all, a service's
 * (in the routes) or a client's (in the direct table). `to` skips load
 * balancing, not the rules: a handler internal is for services, its schema
 * applies, and a peer with no handler for the name is refused here rather
 * than sent something it would drop. */
static int reach_peer(struct sb__shard *sh, const struct sb__asker *a, const struct sb_msg *m,
		      struct sb__dest *d, char *why)
{
	d->ep = 0;
	int rc = sb__peers_resolve(sh, m->to, &d->ep, why);
	/* Not here (a peer here that said GOODBYE has its ep): perhaps on
	 * another router, never for a request that came from one. */
	if (rc != 0 && d->ep == 0 && sh->xs != NULL && a->origin == NULL) {
		d->kind = SB__DEST_CLUSTER;
		d->miss = rc;
		d->spill = 0;
		return 0;
	}
	if (rc != 0)
		return rc;
	struct sb__endpoint *e = sb__peer_handler(sh, m->name, d->ep);
	if (e == NULL) {
		sb__stat_add(&sh->st.to_unhandled, 1);
		snprintf(why, SB_TEXT_MAX + 1, "peer %.*s has no handler for %.*s", (int)m->to.len,
			 (const char *)m->to.ptr, (int)m->name.len, (const char *)m->name.ptr);
		return SB_ENOHANDLER;
	}
	if ((rc = sb__admits(e, a->service, m, why)) == SB_EFORBIDDEN)
		snprintf(why, SB_TEXT_MAX + 1, "this peer handles the name for services only");
	d->kind = SB__DEST_PEER;
	return rc;
}

/* To every handler the caller may reach. A request is one frame for all of
 * them, so it must fit each one's schema: the first it breaks refuses it
 * whole (handlers of one name normally share one schema). */
static int reach_all(struct sb__shard *sh, const struct sb__asker *a, const struct sb_msg *m,
		     struct sb__dest *d, char *why)
{
	const struct sb_msg *args = m->kind == SB_REQUEST ? m : NULL;
	int any = 0;
	for (uint32_t i = 0; i < d->r->n; i++) {
		int rc = sb__admits(&d->r->eps[i], a->service, args, why);
		if (rc == SB_EINVAL)
			return rc;
		any |= rc == 0;
	}
	d->kind = SB__DEST_ALL;
	/* Internal here, perhaps not on another router (cluster_bcast.c). */
	return any || (sh->xs != NULL && a->origin == NULL) ? 0 : internal(m, why);
}

int sb__reach(struct sb__shard *sh, const struct sb__asker *a, const struct sb_msg *m,
	      struct sb__dest *d, char *why)
{
	/* The name rule of a connection's role: the embedding program has none. */
	if (a->c != NULL && sb__auth_may_call(sh->auth.pol, a->service, m->name) != 0) {
		sb__patterns_refusal(why, SB_TEXT_MAX + 1, m->name,
				     &sh->auth.pol->call[a->service]);
		return SB_EFORBIDDEN;
	}
	/* BROADCAST with `to`: every connected peer the selector picks. */
	if (m->to.ptr != NULL && (m->flags & SB_F_BROADCAST)) {
		if (!sb__peers_selector_ok(m->to)) {
			snprintf(why, SB_TEXT_MAX + 1,
				 "a broadcast's `to` selects peers: @client, @service, or a peer "
				 "name pattern (`*` only at its end)");
			return SB_EINVAL;
		}
		d->kind = SB__DEST_PEERS;
		return 0;
	}
	if (m->to.ptr != NULL)
		return reach_peer(sh, a, m, d, why);
	if (m->kind == SB_REQUEST && sb__admin_name(m->name)) {
		d->kind = SB__DEST_ROUTER;
		return 0;
	}
	if ((d->r = sb__handlers_of(sh, m->name)) == NULL) {
		/* Another router's, perhaps; never for a request that came from
		 * one (each router offers the cluster only its own handlers). */
		if (sh->xs != NULL && a->origin == NULL) {
			/* A broadcast goes to every router (cluster_bcast.c),
			 * with nobody here. */
			d->kind = m->flags & SB_F_BROADCAST ? SB__DEST_ALL : SB__DEST_CLUSTER;
			d->r = NULL;
			d->spill = 0;
			return 0;
		}
		int all = m->flags & SB_F_BROADCAST;
		snprintf(why, SB_TEXT_MAX + 1, "%s",
			 all ? "no connected peer handles this name" : "no handler for this name");
		return all ? SB_ENOPEERS : SB_ENOHANDLER;
	}
	if (m->flags & SB_F_BROADCAST)
		return reach_all(sh, a, m, d, why);
	struct sb__endpoint *e = pick(sh, d->r, a->service);
	if (e == NULL)
		return internal(m, why);
	d->kind = SB__DEST_ONE;
	d->ep = e->ep;
	/* Local first, unless the least busy handler here is full: then
	 * another router's (never for a request that came from one). */
	if (sh->xs != NULL && m->kind == SB_REQUEST && a->origin == NULL &&
	    sb__cluster_spills(sh, d->r, e->ep)) {
		d->kind = SB__DEST_CLUSTER;
		d->spill = 1;
	}
	return sb__admits(e, a->service, m, why);
}
