/* What the tests of routers acting as one share (docs/cluster.md): a test
 * router joined to a NATS cluster, waiting until a registration has
 * reached the other routers, and a HELLO that may meet a name held on
 * another router. */
#ifndef SB_TEST_CLUSTER_H
#define SB_TEST_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include <switchboard/router.h>

#include "support/peer.h"

/* A test router (support/router.h's defaults) joined to the cluster
 * through the NATS servers at url ("nats://...[,nats://...]"). */
struct sb_router *cluster_join(const char *url);

/* A request from cl for name, answered by svc on another router once the
 * cluster has its interest: a registration reaches the other routers
 * shortly after its ACK (NATS spreads the subscription), so until then the
 * answer is `no handler` (or `peer gone` from a local handler that just
 * left) and the request is made again, for up to 15 s. 1 if it arrived. */
int cluster_until_reachable(struct peer *cl, struct peer *svc, const char *name);

/* HELLO as the service name on port: 1 welcomed (*out the peer), 0
 * refused as a duplicate name (*out NULL, the refusal's text in why).
 * `overloaded` (JetStream did not answer the claim in time on a loaded
 * machine) is tried again, five times at most, as a client would. */
int cluster_hello_as(uint16_t port, const char *name, struct peer **out, char *why, size_t cap);

#endif
