/* Bearer tokens on the edge: the key set built from the router's settings
 * (at start and at each reload), the token a request carries
 * (Authorization: Bearer, or the sb_token cookie), and what its verified
 * claims make of a connection: its identity, its role and its name. */
#ifndef SB_ROUTER_EDGE_AUTH_H
#define SB_ROUTER_EDGE_AUTH_H

#include <stddef.h>

#include <switchboard/proto.h>
#include <switchboard/router.h>

#include "common/log.h"
#include "router/conn-t.h"
#include "router/http.h"
#include "router/jwt.h"
#include "router/shard-t.h"

#define SB__TOKEN_COOKIE "sb_token" /* for browsers, which cannot set a header on a WebSocket */

/**
 * The key set @p c asks for: *out NULL when it names no key (tokens off).
 * A file that does not load, or a bad setting, is logged with its reason.
 * @return 0, SB_EINVAL or SB_ENOMEM
 */
int sb__edge_keys_load(const struct sb_router_config *c, const struct sb__logger *lg,
		       struct sb__jwt_keys **out);

/**
 * With tokens on, the request's token verified and its claims applied to
 * c (a later request must name the same subject). Tokens off: nothing.
 * @return 0; SB_EUNAUTHORIZED (no token, or a bad one: @p why says which)
 */
int sb__edge_token(struct sb__shard *sh, struct sb__conn *c, const struct sb__http_req *r,
		   char *why, size_t cap);

/**
 * Whether a token's name rules let c send, request (@p kind SB_SEND,
 * SB_REQUEST) or register @p name; other kinds pass. A token narrows the
 * configured rules, which the router checks as for any peer.
 * @return 0 or SB_EFORBIDDEN (@p why, as a configured rule's refusal)
 */
int sb__edge_may(const struct sb__conn *c, unsigned kind, struct sb_view name, char *why,
		 size_t cap);

/**
 * A HELLO on an edge connection a token authenticated: the role and the
 * name must be the token's to give. @return 0 or SB_EFORBIDDEN (@p why)
 */
int sb__edge_hello(const struct sb__conn *c, int service, struct sb_view peer, char *why,
		   size_t cap);

#endif
