/* One whole frame from a connection: decoded, checked against the
 * handshake's state and the protocol's rules, and handed to the module of
 * its kind. */
#ifndef SB_ROUTER_FRAME_H
#define SB_ROUTER_FRAME_H

#include <stdint.h>

#include "common/buf.h"
#include "router/conn-t.h"
#include "router/shard-t.h"

/** A frame from c; b holds the caller's reference (which stays its). */
void sb__frame(struct sb__shard *sh, struct sb__conn *c, struct sb__buf *b, uint8_t *f,
	       uint32_t len);

#endif
