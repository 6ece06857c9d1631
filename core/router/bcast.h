/* Broadcast requests: one REQUEST to every handler of a name, or to every
 * connected peer a selector picks, answered with one result per handler or
 * peer (REPLY or ERROR, `peer` set, MORE) and one final aggregate, all
 * owned by the requester's shard. */
#ifndef SB_CORE_BCAST_H
#define SB_CORE_BCAST_H

#include <stdint.h>

#include <switchboard/proto.h>

struct sb__shard;
struct sb__req;
struct sb__req_ops;
struct sb__route;
struct sb__buf;
struct sb__asker;
struct sb__xbcast;

/* One handler of a broadcast. */
struct sb__bcast_kid {
	uint64_t ep;                /* the handler's connection (or in-process handler) */
	uint8_t open;               /* delivered and not ended: it owes a final answer */
	int err;                    /* a peer not asked: SB_ENOHANDLER, SB_EFORBIDDEN or
				       SB_EINVAL, its result without a word from it */
	char peer[SB_PEER_MAX + 1]; /* its name, for `peer` in its results */
};

/* A kid's place in a broadcast's index (struct sb__bcast's by_ep). */
struct sb__bcast_key {
	uint64_t ep;
	uint32_t kid; /* its index in kids */
};

/* Up to this many handlers, a reply's is found by a linear scan: nothing
 * to build per broadcast. */
#define SB__BCAST_SCAN 16u

/* A broadcast in flight: hangs off its request entry (q->bc). Every handler
 * gets the same frame, with the request's one router id, so the fan-out
 * shares the bytes; a reply finds its handler by the connection it came
 * from. */
struct sb__bcast {
	uint32_t n;                          /* handlers */
	uint32_t left;                       /* handlers not ended */
	uint32_t ok, errors, timeouts, gone; /* how each ended, for the aggregate */
	uint8_t hold;          /* fanning out: the aggregate waits until every copy is out */
	uint32_t xn;           /* other routers' handlers, for the aggregate (cluster_bcast.c) */
	uint32_t xwait;        /* other routers' parts not ended */
	struct sb__xbcast *xb; /* across routers: the other routers' parts, or NULL */
	/* The kids by ep, for a reply to find its handler in O(log n) (a
	 * linear scan at 1,000 handlers was a third of the router's CPU);
	 * NULL below SB__BCAST_SCAN handlers, which are scanned. */
	struct sb__bcast_key *by_ep;
	struct sb__bcast_kid kids[];
};

/** The handlers of route @p r the caller may reach (sb__admits(): internal
 *  ones only for services; sb__reach() made sure there is one, unless the
 *  broadcast goes to other routers too: then none, or r NULL), each with
 *  its peer name, or NULL out of memory. Not yet attached to a request. */
struct sb__bcast *sb__bcast_new(struct sb__shard *sh, const struct sb__route *r, int service);
/** Every connected peer that @p m's `to` selects (sb__peers_select()),
 *  each with its handler for the name or its catch-all, or the error it
 *  will be answered for (no handler, internal, schema); NULL out of
 *  memory. @p nothing set when no peer is selected. */
struct sb__bcast *sb__bcast_peers(struct sb__shard *sh, const struct sb__asker *a,
				  const struct sb_msg *m, int *nothing);
/** Sends frame f (patched, b holding the caller's reference, which stays
 *  the caller's) to every handler of q's broadcast. q may end meanwhile. */
void sb__bcast_fanout(struct sb__shard *sh, struct sb__req *q, struct sb__buf *b, const uint8_t *f,
		      uint32_t len);

/** A result for q's requester (`peer` set and MORE, or the terminal
 *  event), m encoded whole; q may end meanwhile (a slow consumer). */
void sb__bcast_emit(struct sb__shard *sh, struct sb__req *q, const struct sb_msg *m);
/** After a part of q ended: the aggregate, if nothing is left. */
void sb__bcast_settle(struct sb__shard *sh, struct sb__req *q);

/* A broadcast's events: one result per handler, then the aggregate. */
extern const struct sb__req_ops sb__bcast_ops;

#endif
