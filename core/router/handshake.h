/* The handshake: HELLO, the CHALLENGE and AUTH of shared secrets, the
 * peer's name, WELCOME, and the deadline for all of it. */
#ifndef SB_ROUTER_HANDSHAKE_H
#define SB_ROUTER_HANDSHAKE_H

#include <switchboard/proto.h>

#include "common/timer.h"
#include "router/conn-t.h"
#include "router/shard-t.h"

/** A HELLO frame from c (the first it sends). */
void sb__hs_hello(struct sb__shard *sh, struct sb__conn *c, const struct sb_msg *m);

/** An AUTH frame from c, answering our CHALLENGE. */
void sb__hs_auth(struct sb__shard *sh, struct sb__conn *c, const struct sb_msg *m);

/** c is named and may be welcomed: its WELCOME (HELLO's id), and it is
 *  ready. */
void sb__hs_welcome(struct sb__shard *sh, struct sb__conn *c, uint64_t id);

/** The handshake's deadline (struct sb__conn's `hello_timer`). */
void sb__hs_on_timeout(struct sb__timer *t);

#endif
