/* $sb.routes, $sb.peers and $sb.stats for the whole cluster
 * (docs/cluster.md): in a cluster, the shard asked enters the request as
 * an entry of its own kind, asks every router it has heard a heartbeat
 * from (sb.c.<R>, one shard of each answers) with a deadline of 1 s, and
 * answers once with the union, each entry naming its router, and the
 * routers that did not answer in time as "missing". {"local": true} in
 * the payload keeps the answer of one router (admin.c). */
#ifndef SB_ROUTER_CLUSTER_ADMIN_H
#define SB_ROUTER_CLUSTER_ADMIN_H

#include <stdint.h>

#include <switchboard/proto.h>

struct sb__shard;
struct sb__conn;
struct sb__req;
struct sb__req_ops;

/* The kind of a gathered $sb.* request (request.c enters it). */
extern const struct sb__req_ops sb__xadmin_ops;

/** Whether request m to a reserved name is answered for the whole
 *  cluster: the shard is in one, the name is $sb.routes, $sb.peers or
 *  $sb.stats, and its payload does not say {"local": true}. */
int sb__xadmin_wanted(const struct sb__shard *sh, const struct sb_msg *m);

/** Entry q (this shard's, its requester and timer set) for m: this
 *  router's answer taken now, every other live router asked, answered
 *  when all have or at the deadline (1 s, or @p timeout_ms if shorter).
 *  q may have ended when this returns. */
void sb__xadmin_ask(struct sb__shard *sh, struct sb__req *q, const struct sb_msg *m,
		    uint32_t timeout_ms);

/** GET /v1/routes, /v1/peers, /v1/stats on admin connection c (deferred:
 *  admin_http.c): the same, answered as JSON with sb__admin_json_later(),
 *  with c's keep-alive and HEAD. */
void sb__xadmin_http(struct sb__shard *sh, struct sb__conn *c, struct sb_view name,
		     struct sb_view args, int keep, int head);

/** On the shard's connection as it starts: the cluster's questions to
 *  this router (sb.c.<R>, a queue group of its shards). */
void sb__xadmin_start(struct sb__shard *sh);

#endif
