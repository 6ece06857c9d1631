/* A request in flight, as the requester's shard keeps it from forwarding
 * to its one terminal event. Types only. */
#ifndef SB_ROUTER_REQ_T_H
#define SB_ROUTER_REQ_T_H

#include <stdint.h>

#include <switchboard/router.h>

#include "common/list.h"
#include "common/timer.h"

struct sb__shard;
struct sb__rstat;
struct sb__bcast;
struct sb__buf;
struct sb__req;
struct sb__xreq;
struct sb__xadmin;

/* What a kind of request does at each event of its life, so the request
 * path has no branch per kind: an ordinary request has one handler
 * (request.c), a broadcast many (bcast.c). */
struct sb__req_ops {
	/* A REPLY or ERROR for it from endpoint sender; takes over b's reference. */
	void (*reply)(struct sb__shard *sh, struct sb__req *q, uint64_t sender, struct sb__buf *b,
		      uint8_t *f, uint32_t len);
	/* Its deadline passed. */
	void (*timeout)(struct sb__shard *sh, struct sb__req *q);
	/* It is ending without its answers: tell the handlers still at it. */
	void (*cancel)(struct sb__shard *sh, struct sb__req *q);
	/* Handler ep disconnected, or was gone before the request reached it. */
	void (*gone)(struct sb__shard *sh, struct sb__req *q, uint64_t ep);
	/* Its entry is being freed: release what the kind holds. */
	void (*free)(struct sb__shard *sh, struct sb__req *q);
};

/* A request in flight, owned by the requester's shard. */
struct sb__req {
	struct sb__timer timer;  /* the request's timeout */
	struct sb__link by_conn; /* on the requester's list */
	struct sb__link all;     /* on the shard's list of live requests */
	uint64_t rid;            /* the router's id for it, in the handler's frames */
	uint64_t requester;      /* requesting connection (this shard) */
	uint64_t handler;        /* handling connection (any shard) */
	uint64_t orig_id;        /* the requester's own id, restored on replies */
	struct sb__shard *sh;    /* for the timer callback */
	sb_reply_fn fn;          /* in-process requester: where replies go */
	void *ud;
	struct sb__rstat *rs;          /* the route's statistics, or NULL */
	uint64_t t0_us;                /* when it was forwarded (the shard's turn clock) */
	const struct sb__req_ops *ops; /* its kind */
	struct sb__bcast *bc;          /* a broadcast (bcast.c): its handlers; handler is 0 */
	struct sb__xreq *x;            /* across routers (cluster.c): its name or its origin */
	struct sb__xadmin *xa;         /* $sb.* asked of every router (cluster_admin.c) */
};

#endif
