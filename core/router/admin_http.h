/* The admin listener's HTTP endpoints (admin_port): one table of
 * {method, path, handler} rows, each handler writing a whole answer into a
 * growing body; every other path is a 404 with the edge's JSON error body.
 * Nothing here upgrades to WebSocket or routes a call. */
#ifndef SB_ROUTER_ADMIN_HTTP_H
#define SB_ROUTER_ADMIN_HTTP_H

#include <stddef.h>

#include "router/conn-t.h"
#include "router/http.h"
#include "router/shard-t.h"

/* An answer's body, grown as it is written. The first failure sticks. */
struct sb__admin_body {
	char *p;    /* malloc'd; NULL until the first write */
	size_t len; /* bytes written */
	size_t cap; /* bytes it holds */
	int err;    /* 0, or SB_ENOMEM once a write failed (answered 500) */
};

/* What a handler answers: a status (200 unless it says otherwise), the
 * body's Content-Type ("application/json" unless it says otherwise) and
 * the body. HEAD gets the same head without the body. */
struct sb__admin_reply {
	int status; /* 0: the handler answers later (sb__admin_http_later()) */
	const char *content_type;
	struct sb__admin_body body;
	struct sb__conn *c; /* the connection asking, its request's keep-alive and HEAD */
	int keep, head;
};

/* A handler runs on the shard that accepted the connection, in its turn:
 * it reads what others write through relaxed atomics or their own locks
 * (admin.c), never stopping a shard, and should be quick. */
typedef void (*sb__admin_fn)(struct sb__shard *sh, const struct sb__http_req *r,
			     struct sb__admin_reply *a);

/* One row of the table (admin_http.c): a GET row answers HEAD too. */
struct sb__admin_route {
	enum sb__http_method method;
	const char *path; /* the whole path, matched exactly (the query aside) */
	sb__admin_fn fn;
};

void sb__admin_put(struct sb__admin_body *b, const void *p, size_t n);
void sb__admin_printf(struct sb__admin_body *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/** A handler that answers later (an answer gathered from other routers):
 *  what c sends meanwhile waits, and the head's deadline stops. */
void sb__admin_http_defer(struct sb__shard *sh, struct sb__conn *c);
/** The answer to c's deferred request (its keep-alive and HEAD as the
 *  reply had them); then c's next request is read. */
void sb__admin_http_later(struct sb__shard *sh, struct sb__conn *c, int keep, int head,
			  struct sb__admin_reply *a);

/** A request's head on an admin connection: answered from the table, or
 *  404/405 with a JSON body; the connection stays open if the request
 *  keeps it alive. */
void sb__admin_http(struct sb__shard *sh, struct sb__conn *c, const struct sb__http_req *r);

#endif
