/* The admin listener's JSON answers: GET /v1/routes, /v1/peers and
 * /v1/stats give what $sb.routes, $sb.peers and $sb.stats answer, printed
 * as JSON by the converter the edge and sbctl share, so the two can never
 * say different things (docs/operations.md, "Admin page"). In a cluster
 * each answers for every router, once gathered (cluster_admin.c);
 * ?local=true keeps this router's own. Rows of the admin listener's table
 * (admin_http.c). */
#ifndef SB_ROUTER_ADMIN_JSON_H
#define SB_ROUTER_ADMIN_JSON_H

#include "router/admin_http.h"

/** GET /v1/routes: $sb.routes as JSON. */
void sb__admin_json_routes(struct sb__shard *sh, const struct sb__http_req *r,
			   struct sb__admin_reply *a);

/** GET /v1/peers: $sb.peers as JSON. */
void sb__admin_json_peers(struct sb__shard *sh, const struct sb__http_req *r,
			  struct sb__admin_reply *a);

/** GET /v1/stats[?after=NAME]: $sb.stats as JSON, a page of routes at a
 *  time as $sb.stats gives them; NAME percent-encoded, 400 if it cannot
 *  be a name (over 255 bytes, a bad escape). */
void sb__admin_json_stats(struct sb__shard *sh, const struct sb__http_req *r,
			  struct sb__admin_reply *a);

/** In a cluster: the answer gathered for c's deferred request (rc 0: the
 *  MessagePack mp; else its error, why for SB_EINVAL), as JSON. */
void sb__admin_json_later(struct sb__shard *sh, struct sb__conn *c, int keep, int head, int rc,
			  const char *mp, size_t mplen, const char *why);

#endif
