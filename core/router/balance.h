/* Which handler a message goes to: the name's route, load balancing over
 * its handlers, and the rules of each (internal handlers are for services,
 * a handler's schema must fit the arguments). */
#ifndef SB_ROUTER_BALANCE_H
#define SB_ROUTER_BALANCE_H

#include <stdint.h>

#include <switchboard/proto.h>

#include "router/route.h"
#include "router/shard-t.h"

struct sb__asker;

/** The route for a name (else the catch-all's) with a handler, or NULL. */
struct sb__route *sb__lookup(struct sb__shard *sh, struct sb_view name);

/** The handler for a request among r's (internal ones only for services):
 *  the local one when it is no busier than the least busy elsewhere, else
 *  the least busy, ties rotating; NULL if each one is internal. */
struct sb__endpoint *sb__pick(struct sb__shard *sh, struct sb__route *r, int service);

/** How peer ep handles m's name, if it registered it. */
struct sb__endpoint *sb__to_endpoint(struct sb__shard *sh, const struct sb_msg *m, uint64_t ep);

/** The caller found handlers but may reach none of them (each internal). */
void sb__refuse_internal(struct sb__shard *sh, const struct sb__asker *a, const struct sb_msg *m);

/** Whether m's arguments fit e's schema; refused and counted when not. */
int sb__args_ok(struct sb__shard *sh, const struct sb__asker *a, const struct sb_msg *m,
		const struct sb__endpoint *e);

/** The same for every handler of r a broadcast request would reach. */
int sb__bcast_args_ok(struct sb__shard *sh, const struct sb__asker *a, const struct sb_msg *m,
		      const struct sb__route *r);

/** Requests this shard has in flight to a handler, for load balancing. */
void sb__load_add(struct sb__shard *sh, uint64_t ep, int d);

#endif
