/* The listeners: a multishot accept on each, its backoff when descriptors or
 * memory run out, and the admission of each new connection. */
#ifndef SB_ROUTER_ACCEPT_H
#define SB_ROUTER_ACCEPT_H

#include <liburing.h>

#include "router/shard-t.h"

/** Prepares the timer that retries a failed accept. */
void sb__accept_init(struct sb__shard *sh);

/** Arms the multishot accept on the shard's listening socket (@p edge 0)
 *  or on the edge's (1). */
void sb__accept_arm(struct sb__shard *sh, int edge);

/** An accept completion of the listener @p edge names. */
void sb__accept_cqe(struct sb__shard *sh, struct io_uring_cqe *cqe, int edge);

#endif
