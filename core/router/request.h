/* Forwarding: SENDs and REQUESTs on their way to handlers, with the
 * fixed-width fields patched in place; a request's life on its requester's
 * shard, from its entry to its one terminal event; replies on their way
 * back. */
#ifndef SB_ROUTER_REQUEST_H
#define SB_ROUTER_REQUEST_H

#include <stdint.h>

#include <switchboard/proto.h>
#include <switchboard/router.h>

#include "common/buf.h"
#include "router/conn-t.h"
#include "router/req-t.h"
#include "router/shard-t.h"

struct sb__origin;

/* Who asked: a connection of this shard, the embedding program, or a
 * requester on another router. */
struct sb__asker {
	struct sb__conn *c; /* NULL: in-process */
	uint32_t from;      /* peer id stamped into what it sends */
	int service;        /* may call internal handlers */
	sb_reply_fn fn;     /* in-process: where replies go */
	void *ud;
	const struct sb__origin *origin; /* from another router (cluster.c), else NULL */
};

/** A SEND from a (b holds the caller's reference, which stays the caller's). */
void sb__forward_send(struct sb__shard *sh, const struct sb__asker *a, const struct sb_msg *m,
		      struct sb__buf *b, uint8_t *f, uint32_t len);

/** A REQUEST from a: refused, answered by the router, or forwarded. */
void sb__forward_request(struct sb__shard *sh, const struct sb__asker *a, const struct sb_msg *m,
			 struct sb__buf *b, uint8_t *f, uint32_t len);

/** A reply or error for a request this shard owns, from endpoint sender;
 *  takes over the reference on b. */
void sb__req_reply(struct sb__shard *sh, uint64_t sender, struct sb__buf *b, uint8_t *f,
		   uint32_t len);

/** A CANCEL from the requester (a connection's ep, or SB__LOCAL_REQUESTER)
 *  of its request @p id. */
void sb__req_cancel(struct sb__shard *sh, uint64_t requester, uint64_t id);

/** Ends q with an error for its requester. */
void sb__req_fail(struct sb__shard *sh, struct sb__req *q, int err, const char *text);

/** Request rid of this shard lost its handler ep (ep closed, or was gone
 *  before the request reached it). */
void sb__req_gone(struct sb__shard *sh, uint64_t rid, uint64_t ep);

/** Handler ep (of any shard) closed: this shard's requests to it end. */
void sb__req_gone_all(struct sb__shard *sh, uint64_t ep);

/** Requester c is closing: its requests end, their handlers get CANCEL. */
void sb__req_requester_gone(struct sb__shard *sh, struct sb__conn *c);

/** Ends q for good (its entry is freed). */
void sb__req_finish(struct sb__shard *sh, struct sb__req *q);

/** Every refusal of a SEND or REQUEST: counted by its code alone (forbidden,
 *  invalid_args, no_handler, inflight_refused, or nothing), so a send and
 *  a request refused for one reason count alike; a request is answered. */
void sb__refuse(struct sb__shard *sh, const struct sb__asker *a, const struct sb_msg *m, int err,
		const char *why);
/** The open request of c with this id, by the cancel map (0: none). */
uint64_t sb__open_rid(struct sb__shard *sh, const struct sb__conn *c, uint64_t id);

/** 1 if rid is an open request of c with this id: then the new request
 *  with the same id has been refused about the connection (id 0). */
int sb__id_taken(struct sb__shard *sh, struct sb__conn *c, uint64_t id, uint64_t rid);

#endif
