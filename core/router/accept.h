/* The listeners: a multishot accept on each, its backoff when descriptors or
 * memory run out, and the admission of each new connection. */
#ifndef SB_ROUTER_ACCEPT_H
#define SB_ROUTER_ACCEPT_H

#include <liburing.h>

#include "router/shard-t.h"

/* A shard's listeners, as an accept's tag names them. */
enum sb__listener {
	SB__LISTEN_MAIN = 0, /* the router's port: frames (TLS when set) */
	SB__LISTEN_EDGE,     /* ws_port: HTTP calls and WebSocket (conn_ws.c) */
	SB__LISTEN_ADMIN,    /* admin_port: plain HTTP, the admin endpoints only
				(admin_http.c) */
};

/** Prepares the timer that retries a failed accept. */
void sb__accept_init(struct sb__shard *sh);

/** Arms the multishot accept on one of the shard's listening sockets
 *  (enum sb__listener). */
void sb__accept_arm(struct sb__shard *sh, int which);

/** An accept completion of the listener @p which names. */
void sb__accept_cqe(struct sb__shard *sh, struct io_uring_cqe *cqe, int which);

#endif
