/* Several routers as one, over a NATS cluster (docs/cluster.md): each shard
 * speaks NATS from its own loop, subscribes the names its router handles,
 * sends requests and sends with no local handler to the cluster, and
 * carries the answers back. Every hook here is reached only when the shard
 * has a cluster connection (sh->xs != NULL): without --cluster, nothing of
 * it runs. */
#ifndef SB_ROUTER_CLUSTER_H
#define SB_ROUTER_CLUSTER_H

#include <liburing.h>
#include <stdint.h>

#include <switchboard/proto.h>
#include <switchboard/router.h>

#include "common/buf.h"
#include "router/req-t.h"
#include "router/route.h"
#include "router/shard-t.h"

struct sb__asker;
struct sb__conn;

/* How long past its deadline a request from another router may live here:
 * its requester's router ends it and says so; this only bounds an entry
 * whose cancel was lost. */
#define SB__CLUSTER_SLACK_MS 250

/* Where a request from another router came from: its inbox, which names
 * the requesting router, shard and request (sb.i.<R>.<k>.<rid>). */
struct sb__origin {
	const char *inbox;
	size_t len;
};

/** The router's part: its cluster id and its copy of the servers.
 *  @return 0, or SB_ENOMEM */
int sb__cluster_router_init(struct sb_router *r, const struct sb_router_config *c);
void sb__cluster_router_free(struct sb_router *r);
/** The router's cluster id ("r" and 16 hex digits), or NULL outside a cluster. */
const char *sb__cluster_id(const struct sb_router *r);

/** A shard's connection to the cluster (at its start, on its thread),
 *  before any route is made. @return 0, SB_EINVAL (bad servers), SB_ENOMEM */
int sb__cluster_start(struct sb__shard *sh);
/** On the shard's thread as it leaves: its connection closed and freed. */
void sb__cluster_stop(struct sb__shard *sh);

/** An io_uring completion tagged SB__TAG_NATS. */
void sb__cluster_cqe(struct sb__shard *sh, struct io_uring_cqe *cqe);
/** Once per turn, before the output is flushed: the connection's timers,
 *  its output, its socket's polls. */
void sb__cluster_turn(struct sb__shard *sh);
/** The loop's sleep, bounded by the connection's next timer. */
uint64_t sb__cluster_wait(struct sb__shard *sh, uint64_t wait_ms);

/** The shard's replica got a route for a name, or lost its last handler:
 *  the cluster's interest in it follows (its cancels). */
void sb__cluster_route_new(void *sh, struct sb__route *r);
/** The shard got its first handler of a route's name (up 1) or lost its
 *  last (up 0): whether NATS offers it the name's requests follows. */
void sb__cluster_route_here(void *sh, struct sb__route *r, int up);
void sb__cluster_route_gone(struct sb__shard *sh, struct sb__route *r);

/** Request q (this shard's) goes to the cluster: its part made (where it
 *  goes, the caller's role; for a `to`, what this router knew of the name,
 *  the answer if no router has it). @return 0, or SB_ENOMEM */
int sb__cluster_out(struct sb__shard *sh, struct sb__req *q, const struct sb_msg *m, int service,
		    int miss, int spill);
/** Local first (docs/cluster.md): does a request for route @p r, whose
 *  least busy handler here is @p ep, go to another router instead? Only
 *  with `cluster_spill` set, the name in the cluster, another router
 *  alive, and @p ep at `cluster_spill` requests in flight from this shard.
 *  @p spill set: the request's subject names that router ("sb.s.<R>."),
 *  and if it has no handler of the name after all, a handler here takes
 *  the request (never `no handler` while one is here). */
int sb__cluster_spills(struct sb__shard *sh, const struct sb__route *r, uint64_t ep);
/** A request from another router, entered as q: its origin kept (a copy),
 *  so that its answers and a cancel find it. @return 0, or SB_ENOMEM */
int sb__cluster_in(struct sb__shard *sh, struct sb__req *q, const struct sb__origin *o);
/** Request q is being freed: its part of either kind goes with it. */
void sb__cluster_req_free(struct sb__shard *sh, struct sb__req *q);

/** Named peer c (of this shard) connected, or is leaving: its name's
 *  subjects follow, so a `to` from another router finds it. A name held
 *  for c's resume token (hold_ms > 0) stays claimed in the cluster that
 *  long. */
void sb__cluster_peer_up(struct sb__shard *sh, const struct sb__conn *c);
void sb__cluster_peer_down(struct sb__shard *sh, const struct sb__conn *c, uint32_t hold_ms);

/** Peer c (named as it asked in its HELLO, id) claims its name in the
 *  cluster. @return 0: the claim is made, and its answer welcomes c (or
 *  fails it with `duplicate name`); else welcome it now (no cluster
 *  answer to wait for: the name is this router's alone) */
int sb__cluster_claim(struct sb__shard *sh, struct sb__conn *c, uint64_t id);

/** Peer c (its HELLO, id, asked for no name) gets the naming pattern's
 *  next name that no router holds: claimed in the cluster first, then
 *  taken here, then welcomed (or refused). @return 0: under way; else
 *  name it here at once (out of memory) */
int sb__cluster_name(struct sb__shard *sh, struct sb__conn *c, uint64_t id);

/** A frame for SB__CLUSTER_EP (the REQUEST of a request sent to the
 *  cluster, or its CANCEL); takes over b's reference. */
void sb__cluster_deliver(struct sb__shard *sh, struct sb__buf *b, const uint8_t *f, uint32_t len);
/** The producer a requester's queue names for the answers of request rid
 *  (this shard's) from another router; sb__flow_* pause and resume it
 *  with sb__cluster_pause(). */
uint64_t sb__cluster_producer(uint64_t rid);
void sb__cluster_pause(struct sb__shard *sh, uint64_t producer, int pause);

/** A SEND with no handler on this router, from a caller of this role. */
void sb__cluster_send(struct sb__shard *sh, const struct sb_msg *m, int service, const uint8_t *f,
		      uint32_t len);

/** A handler's answer (id already patched back) for remote request q, to
 *  its router; the handler (endpoint sender) is paused while the link's
 *  output is past its mark. @return 0, or the link's refusal (the answer
 *  is lost: past the link's bound, or the link is down) */
int sb__cluster_answer(struct sb__shard *sh, struct sb__req *q, uint64_t sender, const uint8_t *f,
		       uint32_t len);
/** The terminal error of remote request q, to its router. */
void sb__cluster_fail(struct sb__shard *sh, struct sb__req *q, int err, const char *text);
/** A request from another router refused before it had an entry. */
void sb__cluster_refuse(struct sb__shard *sh, const struct sb__origin *o, uint64_t id, int err,
			const char *text);

/* ---- broadcasts across routers (cluster_bcast.c) ------------------------ */

struct sb__xbcast;
struct sb__buf;

/** Broadcast request q (this shard's, from a requester here; m its frame
 *  as decoded, f as patched) goes to every other router too: their parts
 *  are awaited (the routers heard from), q's aggregate waits for them.
 *  @p local_err: why this router has nobody for the caller (SB_EFORBIDDEN:
 *  its handlers are internal), else 0. */
void sb__xbcast_out(struct sb__shard *sh, struct sb__req *q, const struct sb_msg *m, int service,
		    int local_err, const uint8_t *f, uint32_t len);
/** A broadcast SEND goes to every other router too. */
void sb__xbcast_send(struct sb__shard *sh, const struct sb_msg *m, int service, const uint8_t *f,
		     uint32_t len);
/** Broadcast q from another router: its router is told which handlers are
 *  asked, before any result. */
void sb__xbcast_start(struct sb__shard *sh, struct sb__req *q);
/** A result of broadcast q from another router, to that router (pb, if
 *  any, holds m's payload; its reference is taken over). */
void sb__xbcast_emit(struct sb__shard *sh, struct sb__req *q, const struct sb_msg *m,
		     struct sb__buf *pb, uint64_t producer);
/** q's deadline: the other routers' handlers still at it time out. */
void sb__xbcast_timeout(struct sb__shard *sh, struct sb__req *q);
/** q ends without its answers: the other routers cancel their parts. */
void sb__xbcast_cancel(struct sb__shard *sh, struct sb__req *q);
/** Nobody on any router: q ends with `no connected peers` (or why not). */
void sb__xbcast_none(struct sb__shard *sh, struct sb__req *q);
void sb__xbcast_free(struct sb__xbcast *xb);

#endif
