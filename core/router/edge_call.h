/* HTTP/JSON calls on the edge's port: POST /v1/call/NAME and
 * /v1/send/NAME become a REQUEST or SEND frame from the connection, as if
 * a peer had sent it, and the frames that answer it become one HTTP answer
 * with a JSON body (docs/gateway.md, "HTTP calls"). */
#ifndef SB_ROUTER_EDGE_CALL_H
#define SB_ROUTER_EDGE_CALL_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "router/conn-t.h"
#include "router/http.h"
#include "router/shard-t.h"

#define SB__CALL_PREFIX "/v1/call/"
#define SB__SEND_PREFIX "/v1/send/"
#define SB__HELD_MAX    65536u /* bytes of later requests read while a call is out */

/** Whether @p path is a call's or a send's URL. */
int sb__edge_call_path(struct sb__http_str path);

/** A call's head: checked, its name and timeout kept, its body awaited.
 *  A refusal is answered (the connection stays open when it can). */
void sb__edge_call_head(struct sb__shard *sh, struct sb__conn *c, const struct sb__http_req *r);

/** A piece of the body (copied). */
void sb__edge_call_body(struct sb__shard *sh, struct sb__conn *c, const uint8_t *p, size_t n);

/** The request is complete: its frame goes the frame path. */
void sb__edge_call_end(struct sb__shard *sh, struct sb__conn *c);

/**
 * A frame the router queued for an HTTP connection (REPLY, ERROR, and
 * what an HTTP client has no use for: WELCOME, PRESENCE, PING), taking over
 * the reference on b. The final one is written as the call's answer.
 * @return 0
 */
int sb__edge_frame(struct sb__shard *sh, struct sb__conn *c, struct sb__buf *b, const uint8_t *p,
		   uint32_t len);

/** The HTTP status an error code is answered with (docs/gateway.md). */
int sb__edge_status(int err);

#endif
