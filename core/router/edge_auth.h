/* Bearer tokens: the key set built from the router's settings (at start
 * and at each reload), the token a connection presents (on the edge:
 * Authorization: Bearer, or the sb_token cookie; on any transport: the
 * HELLO's "token"), and what its verified claims make of a connection:
 * its identity, its role, its name and its name rules. */
#ifndef SB_ROUTER_EDGE_AUTH_H
#define SB_ROUTER_EDGE_AUTH_H

#include <stddef.h>

#include <switchboard/proto.h>
#include <switchboard/router.h>

#include "common/log.h"
#include "router/conn-t.h"
#include "common/timer.h"
#include "router/http.h"
#include "router/jwt.h"
#include "router/pattern.h"
#include "router/shard-t.h"

#define SB__TOKEN_COOKIE "sb_token" /* for browsers, which cannot set a header on a WebSocket */

/* What a verified token made of a connection (c->tok), for its life. */
struct sb__tok {
	uint8_t service;               /* it grants role service */
	uint8_t rules;                 /* its sb_allow_call or sb_allow_register narrow */
	char name[SB_PEER_MAX + 1];    /* the peer name(s) it allows ("" any; "x*") */
	char sub[SB__JWT_SUB_MAX + 1]; /* its subject */
	int64_t exp;                   /* its exp, seconds since the epoch */
	struct sb__patterns call;      /* sb_allow_call (any: not given) */
	struct sb__patterns reg;       /* sb_allow_register (the same) */
	struct sb__timer timer;        /* the token runs out: the connection is closed */
	struct sb__conn *conn;         /* whose it is (for the timer) */
};

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
 * Without a token: refused if @p required, else nothing (a WebSocket
 * upgrade, whose HELLO may carry the token).
 * @return 0; SB_EUNAUTHORIZED (no token, or a bad one: @p why says which)
 */
int sb__edge_token(struct sb__shard *sh, struct sb__conn *c, const struct sb__http_req *r,
		   int required, char *why, size_t cap);

/**
 * The token of a HELLO's payload ({"token": T}), if it has one: @p t set
 * and 1; 0 without one; -1 when "token" is not a string.
 */
int sb__hello_token(struct sb_view payload, struct sb_view *t);

/**
 * A token presented in a HELLO, verified with the key set in force and its
 * claims applied to c. @return 0; SB_EUNAUTHORIZED (@p why: the check that
 * failed, or that the router has no keys)
 */
int sb__tok_present(struct sb__shard *sh, struct sb__conn *c, const char *t, size_t len, char *why,
		    size_t cap);

/** c's token runs out at its exp plus the leeway: then it is closed. */
void sb__tok_arm(struct sb__shard *sh, struct sb__conn *c);

/** Frees c's token state (none: nothing). */
void sb__tok_free(struct sb__conn *c);

/**
 * Whether a token's name rules let c send, request (@p kind SB_SEND,
 * SB_REQUEST) or register @p name; other kinds pass. A token narrows the
 * configured rules, which the router checks as for any peer.
 * @return 0 or SB_EFORBIDDEN (@p why, as a configured rule's refusal)
 */
int sb__edge_may(const struct sb__conn *c, unsigned kind, struct sb_view name, char *why,
		 size_t cap);

/**
 * A HELLO on a connection a token authenticated: the role and the name
 * must be the token's to give. @return 0 or SB_EFORBIDDEN (@p why)
 */
int sb__edge_hello(const struct sb__conn *c, int service, struct sb_view peer, char *why,
		   size_t cap);

#endif
