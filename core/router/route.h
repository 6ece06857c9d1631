/* The route table: message name -> the handler endpoints registered for it.
 * Each shard holds its own replica, updated in order through the mailbox. */
#ifndef SB_CORE_ROUTE_H
#define SB_CORE_ROUTE_H

#include <stddef.h>
#include <stdint.h>

#include "common/idmap.h"
#include "proto/schema.h"

#define SB__EP_INTERNAL 0x1u /* callable by services only */
/* A client's handler: reachable through `to` only, so it lives in the
 * shard's table of direct handlers (sb__shard.direct), never in routes. */
#define SB__EP_DIRECT 0x2u

struct sb__rstat;

/* One handler of a name: a connection somewhere in the router. */
struct sb__endpoint {
	uint64_t ep;               /* connection id: owning shard in the top 8 bits */
	struct sb__schema *schema; /* its argument schema (a reference), or NULL */
	uint32_t flags;            /* SB__EP_* */
	uint32_t at;               /* its place in ep's list of routes (sb__routes.by_ep) */
};

struct sb__route {
	uint32_t hash;   /* of the name */
	uint32_t len;    /* name bytes; 0 is the catch-all */
	uint32_t n, cap; /* endpoints */
	uint32_t rr;     /* round-robin cursor for ties */
	uint32_t nhere;  /* endpoints on the table's own shard (sb__routes.here) */
	struct sb__endpoint *eps;
	struct sb__rstat *stat; /* the name's statistics (register.c sets it; may be NULL) */
	int64_t sid[2];         /* the cluster's subscriptions for it (cluster.c), or 0 */
	char name[];            /* not NUL-terminated */
};

struct sb__routes {
	struct sb__route **slots; /* open addressing, NULL = empty */
	uint32_t mask;
	uint32_t count;
	/* Called with a route that lost its last endpoint, before it is freed
	 * (not by sb__routes_destroy); NULL = nobody asks. */
	void (*on_drop)(void *ctx, struct sb__route *r);
	void *drop_ctx;
	/* Called with a new route once its first endpoint is in; NULL = nobody. */
	void (*on_new)(void *ctx, struct sb__route *r);
	/* Called when a route gets its first endpoint on the table's own
	 * shard (up 1, after on_new) or loses its last one there (up 0,
	 * before on_drop); NULL = nobody. An endpoint is there when its top 8
	 * bits are `here` or `everywhere` (an in-process handler, which every
	 * shard calls itself). */
	void (*on_here)(void *ctx, struct sb__route *r, int up);
	unsigned here, everywhere;
	/* Endpoint -> its routes here (struct sb__ep_routes *), kept when
	 * by_ep_on is set, so that a departure costs the endpoint's own
	 * routes, not the table's (sb__routes_del_ep). */
	struct sb__idmap by_ep;
	int by_ep_on;
};

void sb__routes_init(struct sb__routes *t);
void sb__routes_destroy(struct sb__routes *t);

/** The route for a name (len 0: the catch-all), or NULL. */
struct sb__route *sb__routes_find(const struct sb__routes *t, const void *name, uint32_t len);

/**
 * Add endpoint @p ep to @p name; re-adding updates its flags and schema.
 * @param schema  NULL, or a schema the route takes its own reference to
 * @return 0 or SB_ENOMEM
 */
int sb__routes_add(struct sb__routes *t, const void *name, uint32_t len, uint64_t ep,
		   uint32_t flags, struct sb__schema *schema);

/** Remove @p ep from @p name. @return 1 if it was there, 0 if not */
int sb__routes_del(struct sb__routes *t, const void *name, uint32_t len, uint64_t ep);

/**
 * Remove @p ep from every route (its connection closed or said GOODBYE):
 * O(its routes) with by_ep_on, else O(routes).
 */
void sb__routes_del_ep(struct sb__routes *t, uint64_t ep);

/** The endpoint entry of @p ep in @p r, or NULL. */
struct sb__endpoint *sb__route_endpoint(struct sb__route *r, uint64_t ep);

/**
 * Whether a payload may go to endpoint @p e: 0 if it has no schema (one
 * pointer test) or the payload fits it, else SB_EINVAL with @p why set.
 * Every path that hands a SEND or REQUEST to a handler asks this first.
 */
static inline int sb__endpoint_check(const struct sb__endpoint *e, const uint8_t *payload,
				     size_t len, char *why, size_t whylen)
{
	return e->schema == NULL ? 0 : sb__schema_check(e->schema, payload, len, why, whylen);
}

#endif
