/* A whole frame to an endpoint anywhere: an in-process handler runs it on
 * this shard, another shard gets it by mail, a connection here gets it
 * queued (after the sender's identity) and may pause its producer. */
#ifndef SB_ROUTER_DELIVER_H
#define SB_ROUTER_DELIVER_H

#include <stdint.h>

#include "common/buf.h"
#include "router/shard-t.h"

/** A frame (b's reference taken over) for endpoint ep, fed by connection
 *  producer (0: by the router or the embedding program). */
void sb__deliver_from(struct sb__shard *sh, uint64_t ep, struct sb__buf *b, const uint8_t *p,
		      uint32_t len, uint64_t producer);

/** The same, fed by whatever connection's frames are being routed now. */
void sb__deliver(struct sb__shard *sh, uint64_t ep, struct sb__buf *b, const uint8_t *p,
		 uint32_t len);

#endif
