/* Where a SEND or REQUEST goes, and whether its caller may send it there:
 * the caller's name rule, a `to` peer, the name's handlers and the rules
 * of each (internal handlers are for services, a handler's schema must fit
 * the arguments), and load balancing among those the caller may reach.
 * Every such decision of the router is made here, so a send and a request
 * refused for one reason are refused (and counted) alike. */
#ifndef SB_ROUTER_BALANCE_H
#define SB_ROUTER_BALANCE_H

#include <stdint.h>

#include <switchboard/proto.h>

#include "router/route.h"
#include "router/shard-t.h"

struct sb__asker;

/* Where a message goes, as sb__reach() decided it. */
struct sb__dest {
	enum {
		SB__DEST_ONE,     /* one handler of the name, load-balanced: ep */
		SB__DEST_ALL,     /* every handler of the name it may reach (BROADCAST) */
		SB__DEST_PEER,    /* the `to` peer, whether it registered the name or not: ep */
		SB__DEST_ROUTER,  /* the router itself answers ($sb.*) */
		SB__DEST_CLUSTER, /* no handler here: another router's (cluster.c) */
		SB__DEST_PEERS,   /* every connected peer `to` selects (BROADCAST with `to`) */
	} kind;
	struct sb__route *r; /* ONE, ALL: the name's route (its statistics, its handlers) */
	uint64_t ep;         /* ONE, PEER: the endpoint */
	int miss;            /* CLUSTER, for a `to`: this router's answer if no router has it */
	int spill;           /* CLUSTER: every handler here is full; another router's */
};

/**
 * May a caller reach handler @p e with message @p m? The one rule of a
 * handler: an internal one is for services; and, when @p m is given, its
 * schema (if it has one) must fit m's arguments. A handler without a
 * schema costs one pointer test.
 * @param service  the caller is a service (or the embedding program)
 * @param m        NULL: the role alone
 * @param why      set on SB_EINVAL, in SB_TEXT_MAX + 1 bytes
 * @return 0, SB_EFORBIDDEN or SB_EINVAL
 */
static inline int sb__admits(const struct sb__endpoint *e, int service, const struct sb_msg *m,
			     char *why)
{
	if ((e->flags & SB__EP_INTERNAL) && !service)
		return SB_EFORBIDDEN;
	if (m != NULL &&
	    sb__endpoint_check(e, m->payload.ptr, m->payload.len, why, SB_TEXT_MAX + 1) != 0)
		return SB_EINVAL;
	return 0;
}

/**
 * Where SEND or REQUEST @p m from @p a goes, and whether it may: the
 * caller's name rule (a connection's role); a broadcast's peer selector
 * (`to` with BROADCAST: SB__DEST_PEERS, each peer judged as it is reached);
 * a `to` peer that never connected, is gone, or said GOODBYE, and that
 * peer's own rule for the name; the name's handlers (none, every one
 * internal, the chosen one's schema, and for a broadcast request the
 * schema of every one it would reach). A broadcast send's handlers are
 * held to their schemas one by one as it is delivered.
 * @param why  set to the refusal's text, in SB_TEXT_MAX + 1 bytes
 * @return 0 with *d set; or SB_EFORBIDDEN, SB_EINVAL, SB_ENOHANDLER,
 *         SB_ENOPEERS, SB_EUNKNOWNPEER, SB_ENOTCONNECTED
 */
int sb__reach(struct sb__shard *sh, const struct sb__asker *a, const struct sb_msg *m,
	      struct sb__dest *d, char *why);

/** The route for @p name, else the catch-all's, that has a handler on
 *  the router; NULL if neither has one. */
struct sb__route *sb__handlers_of(struct sb__shard *sh, struct sb_view name);

/** Peer @p ep's handler for @p name, or its catch-all: a service's (in the
 *  routes) or a client's (in the direct table); NULL if it has neither. */
struct sb__endpoint *sb__peer_handler(struct sb__shard *sh, struct sb_view name, uint64_t ep);

/** Requests this shard has in flight to a handler, for load balancing. */
void sb__load_add(struct sb__shard *sh, uint64_t ep, int d);

#endif
