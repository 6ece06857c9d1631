/* Embedding: in-process handlers that run on shard threads, and sends and
 * requests from the embedding program, all without a socket. */
#ifndef SB_ROUTER_LOCAL_H
#define SB_ROUTER_LOCAL_H

#include <stdint.h>

#include "router/local-t.h"
#include "router/shard-t.h"

/** Run in-process handler @p idx for a frame routed to it. */
void sb__local_run(struct sb__shard *sh, unsigned idx, const uint8_t *f, uint32_t len);

/** Once per turn: the program's sends and requests queued for this shard. */
void sb__local_read(struct sb__shard *sh);

/** After every shard thread has exited: requests still queued get their
 *  one answer (the router stopped), and the inbox is emptied. */
void sb__local_teardown(struct sb__shard *sh);

#endif
