/* GET /metrics on the admin listener: the router's counters in the
 * Prometheus text exposition format 0.0.4, written by our own code from
 * what $sb.stats reads (stats.h per shard, rstat.h per route). The
 * families and their labels are listed in docs/operations.md. */
#ifndef SB_ROUTER_METRICS_H
#define SB_ROUTER_METRICS_H

#include "router/admin_http.h"

/* Latency buckets exported: one per power of two of microseconds, their
 * tops 2^k - 1 us for k in [FIRST, LAST] (15 us to about 71 minutes, past
 * the longest timeout), then +Inf. */
#define SB__METRICS_LE_FIRST 4
#define SB__METRICS_LE_LAST  32

/** The exposition, as an admin endpoint (admin_http.h). */
void sb__metrics_http(struct sb__shard *sh, const struct sb__http_req *r,
		      struct sb__admin_reply *a);

/** @p s as a label value: backslash, double quote and line feed escaped,
 *  as the format wants. */
void sb__metrics_label(struct sb__admin_body *b, const char *s, size_t len);

#endif
