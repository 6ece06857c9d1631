/* Registrations. A REGISTER or UNREGISTER is applied by the handler's shard
 * at once (after the name rule and max_registrations allow it, and its
 * schema compiles), then mailed to every other shard; the ACK goes once
 * every shard has applied it, so an ACKed handler is reachable from any
 * connection. A service's handlers go into the routes, and each route holds
 * its name's statistics while it has a handler; a client's go into the
 * direct table, which only `to` looks at, so a client can be pushed to by
 * name without ever taking a public route. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/cluster.h"
#include "router/conn.h"
#include "router/local-t.h"
#include "router/mail.h"
#include "router/outq.h"
#include "router/pattern.h"
#include "router/register.h"
#include "router/shard.h"

/* Gives a newly made route its name's statistics, shared by every shard;
 * the route holds them until it goes (sb__route_dropped). */
static void route_stat(struct sb__shard *sh, const void *name, uint32_t len)
{
	struct sb__route *r = sb__routes_find(&sh->routes, name, len);
	if (r != NULL && r->stat == NULL)
		r->stat = sb__rstat_hold(&sh->r->rstats, name, len, sh->id);
}

/* A route lost its last handler here: its statistics may be released
 * (requests still counted under them hold them on). */
void sb__route_dropped(void *ctx, struct sb__route *r)
{
	struct sb__shard *sh = ctx;
	if (r->stat != NULL)
		sb__rstat_drop(&sh->r->rstats, r->stat, sh->id);
	if (sh->xs != NULL)
		sb__cluster_route_gone(sh, r);
}

static void send_ack(struct sb__shard *sh, uint64_t ep, uint64_t id)
{
	struct sb__conn *c = sb__conn_get(sh, ep);
	struct sb_msg ack = {.kind = SB_ACK, .id = id};
	if (c != NULL)
		sb__send_msg(sh, c, &ack);
}

/* Sends a route change to every other shard; the ACK follows the last
 * ROUTE_DONE (or goes at once with one shard). */
static void route_mail(struct sb__shard *sh, enum sb__mail_type type, const struct sb_view *name,
		       uint64_t ep, uint32_t flags, struct sb__schema *schema, uint64_t id)
{
	if (sh->r->nshards == 1) {
		send_ack(sh, ep, id);
		return;
	}
	struct sb__route_sync *sync = malloc(sizeof *sync);
	if (sync == NULL)
		abort(); /* a shard missing a route update would misroute for good */
	*sync = (struct sb__route_sync){ep, id, sh->r->nshards - 1};
	for (unsigned to = 0; to < sh->r->nshards; to++) {
		if (to == sh->id)
			continue;
		struct sb__mail_name *n = malloc(sizeof *n + name->len);
		if (n == NULL)
			abort();
		n->sync = sync;
		n->schema = schema; /* every replica points at the one block */
		if (schema != NULL)
			sb__schema_ref(schema);
		n->len = name->len;
		memcpy(n->name, name->ptr, name->len);
		struct sb__mail m = {.type = type, .a = flags, .b = ep, .p = n};
		sb__mail(sh, to, &m);
	}
}

void sb__register_done(struct sb__shard *sh, struct sb__route_sync *sync)
{
	if (--sync->remaining > 0)
		return;
	send_ack(sh, sync->ep, sync->id);
	free(sync);
}

void sb__register_apply(struct sb__shard *sh, const struct sb__mail *m)
{
	struct sb__mail_name *n = m->p;
	int direct = (m->a & SB__EP_DIRECT) != 0;
	struct sb__routes *t = direct ? &sh->direct : &sh->routes;
	if (m->type == SB__MAIL_ROUTE_ADD) {
		if (sb__routes_add(t, n->name, n->len, m->b, m->a, n->schema) == 0 && !direct)
			route_stat(sh, n->name, n->len);
		sb__schema_unref(n->schema);
	} else
		sb__routes_del(t, n->name, n->len, m->b);
	struct sb__mail done = {.type = SB__MAIL_ROUTE_DONE, .p = n->sync};
	sb__mail(sh, sb__ep_shard(m->b), &done);
	free(n);
}

int sb__register_locals(struct sb__shard *sh)
{
	for (unsigned i = 0; i < sh->r->nlocals; i++) {
		const struct sb__local *l = &sh->r->locals[i];
		if (sb__routes_add(&sh->routes, l->name ? l->name : "", l->len,
				   (uint64_t)SB__LOCAL_SHARD << SB__TAG_SHIFT | i, l->flags,
				   l->schema) != 0)
			return SB_ENOMEM;
		route_stat(sh, l->name ? l->name : "", l->len);
	}
	return 0;
}

/* A registration refused as forbidden counts as one, whatever forbade it:
 * the role, a name rule, a GOODBYE (as a refused call does, sb__refuse()). */
static void forbidden(struct sb__shard *sh, struct sb__conn *c, uint64_t id, const char *why)
{
	sb__stat_add(&sh->st.forbidden, 1);
	sb__send_error(sh, c, id, SB_EFORBIDDEN, why, 0);
}

/* allow_register_service (for the public routes a service takes), then
 * max_registrations (a name registered again takes no new place).
 * @return -1 refused (answered), 1 a new name, 0 not */
static int register_allowed(struct sb__shard *sh, struct sb__conn *c, uint64_t id,
			    struct sb_view name, const struct sb__routes *t)
{
	const struct sb__patterns *rule = &sh->auth.pol->reg;
	uint32_t limit = sh->r->cfg.max_registrations;
	char why[SB_TEXT_MAX];

	if (c->service && !sb__patterns_allow(rule, name)) {
		sb__patterns_refusal(why, sizeof why, name, rule);
		forbidden(sh, c, id, why);
		return -1;
	}
	struct sb__route *r = sb__routes_find(t, name.ptr, name.len);
	if (r != NULL && sb__route_endpoint(r, c->ep) != NULL)
		return 0;
	if (c->nregs >= limit) {
		snprintf(why, sizeof why, "too many names registered on this connection (limit %u)",
			 limit);
		sb__stat_add(&sh->st.register_refused, 1);
		sb__send_error(sh, c, id, SB_EOVERLOADED, why, 0);
		return -1;
	}
	return 1;
}

void sb__register(struct sb__shard *sh, struct sb__conn *c, const struct sb_msg *m)
{
	struct sb_view name = m->name.ptr ? m->name : (struct sb_view){(const uint8_t *)"", 0};
	uint32_t flags =
		(m->flags & SB_F_INTERNAL ? SB__EP_INTERNAL : 0) | (c->service ? 0 : SB__EP_DIRECT);
	struct sb__routes *t = c->service ? &sh->routes : &sh->direct;
	struct sb__schema *schema = NULL;
	char why[SB_TEXT_MAX + 1];
	int rc;

	if (name.len > 0 && name.ptr[0] == '$') {
		sb__send_error(sh, c, m->id, SB_EINVAL, "names starting with $ are reserved", 0);
		return;
	}
	if (m->kind == SB_REGISTER && c->bye) {
		forbidden(sh, c, m->id, "this connection said GOODBYE: it registers no more names");
		return;
	}
	if (m->kind == SB_REGISTER) {
		int fresh = register_allowed(sh, c, m->id, name, t);
		if (fresh < 0)
			return;
		/* Compiled once, here; the other shards get the same block. */
		rc = sb__schema_compile(m->payload.ptr, m->payload.len, &schema, why, sizeof why);
		if (rc != 0) {
			sb__send_error(sh, c, m->id, rc == SB_EINVAL ? SB_EINVAL : SB_EINTERNAL,
				       rc == SB_EINVAL ? why : "out of memory", 0);
			return;
		}
		if (sb__routes_add(t, name.ptr, name.len, c->ep, flags, schema) != 0) {
			sb__schema_unref(schema);
			sb__send_error(sh, c, m->id, SB_EINTERNAL, "out of memory", 0);
			return;
		}
		c->nregs += (uint32_t)fresh;
		if (c->service)
			route_stat(sh, name.ptr, name.len);
		route_mail(sh, SB__MAIL_ROUTE_ADD, &name, c->ep, flags, schema, m->id);
		sb__schema_unref(schema); /* the routes and the mail hold theirs */
	} else {
		c->nregs -= (uint32_t)sb__routes_del(t, name.ptr, name.len, c->ep);
		route_mail(sh, SB__MAIL_ROUTE_DEL, &name, c->ep, flags & SB__EP_DIRECT, NULL,
			   m->id);
	}
}
