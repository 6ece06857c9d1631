/* Which handler a message goes to. A name's route lists its handlers;
 * among those the caller may reach (internal ones only for services), a
 * request goes to one on the caller's own shard unless it is busier than
 * the least busy elsewhere, counted by what this shard has in flight to
 * each. A handler's schema must then fit the arguments. */
#include <stdio.h>

#include "router/balance.h"
#include "router/goodbye.h"
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
struct sb__endpoint *sb__pick(struct sb__shard *sh, struct sb__route *r, int service)
{
	struct sb__endpoint *best = NULL, *local = NULL;
	uint64_t best_load = UINT64_MAX, local_load = UINT64_MAX;

	for (uint32_t k = 0; k < r->n; k++) {
		struct sb__endpoint *e = &r->eps[(r->rr + k) % r->n];
		if ((e->flags & SB__EP_INTERNAL) && !service)
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

struct sb__route *sb__lookup(struct sb__shard *sh, struct sb_view name)
{
	struct sb__route *r = sb__routes_find(&sh->routes, name.ptr, name.len);
	if (r == NULL || r->n == 0)
		r = sb__routes_find(&sh->routes, "", 0); /* the catch-all */
	return r != NULL && r->n > 0 ? r : NULL;
}

/* How peer ep handles m's name, if it registered it. `to` skips load
 * balancing, not the rules: its internal flag (a client may not reach an
 * internal handler) and its schema still apply. */
struct sb__endpoint *sb__to_endpoint(struct sb__shard *sh, const struct sb_msg *m, uint64_t ep)
{
	struct sb__route *r = sb__routes_find(&sh->routes, m->name.ptr, m->name.len);
	return r != NULL ? sb__route_endpoint(r, ep) : NULL;
}

/* The caller found handlers for the name but may reach none of them: each
 * is internal, and it is not a service. Requests hear `forbidden`; sends
 * have nobody to tell and are counted. The one place internal handlers are
 * refused. */
void sb__refuse_internal(struct sb__shard *sh, const struct sb__asker *a, const struct sb_msg *m)
{
	char why[SB_NAME_MAX + 64];
	sb__stat_add(&sh->st.forbidden, 1);
	if (m->kind != SB_REQUEST)
		return;
	snprintf(why, sizeof why, "%.*s is internal: only services may call it", (int)m->name.len,
		 (const char *)m->name.ptr);
	sb__answer_error(sh, a, m->id, SB_EFORBIDDEN, why);
}

/* Whether a message's arguments fit the schema of the handler it is for;
 * when not, a request is answered `invalid arguments` with the reason and
 * a send is dropped, both counted. Callers test e->schema first, so a
 * handler without a schema costs one pointer test. */
int sb__args_ok(struct sb__shard *sh, const struct sb__asker *a, const struct sb_msg *m,
		const struct sb__endpoint *e)
{
	char why[SB_TEXT_MAX + 1];
	if (sb__endpoint_check(e, m->payload.ptr, m->payload.len, why, sizeof why) == 0)
		return 1;
	sb__stat_add(&sh->st.invalid_args, 1);
	if (m->kind == SB_REQUEST)
		sb__answer_error(sh, a, m->id, SB_EINVAL, why);
	return 0;
}

/* A broadcast request goes to every handler of a name as one frame, so it
 * must fit every schema among them: the first it breaks refuses it whole
 * (handlers of one name normally share one schema). */
int sb__bcast_args_ok(struct sb__shard *sh, const struct sb__asker *a, const struct sb_msg *m,
		      const struct sb__route *r)
{
	for (uint32_t i = 0; i < r->n; i++) {
		const struct sb__endpoint *e = &r->eps[i];
		if (e->schema != NULL && (a->service || !(e->flags & SB__EP_INTERNAL)) &&
		    !sb__args_ok(sh, a, m, e))
			return 0;
	}
	return 1;
}
