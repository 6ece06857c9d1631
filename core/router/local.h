/* Embedding: in-process handlers that run on shard threads, and sends and
 * requests from the embedding program, all without a socket. */
#ifndef SB_ROUTER_LOCAL_H
#define SB_ROUTER_LOCAL_H

#include <stdint.h>

#include <switchboard/proto.h>

#include "common/buf.h"
#include "router/local-t.h"
#include "router/shard-t.h"

/** Run in-process handler @p idx for a frame routed to it (a CANCEL
 *  reaches its call's on_cancel). */
void sb__local_run(struct sb__shard *sh, unsigned idx, const uint8_t *f, uint32_t len);

/** At a shard thread's start: answers made on it go straight to the shard. */
void sb__local_thread(struct sb__shard *sh);

/** Queue an in-process call's answer (frame @p b, or NULL) from handler
 *  @p ep for @p shard; with @p call, release that call after it. Takes
 *  over b. @return 0, SB_EDRAINING once stopping, SB_ENOMEM */
int sb__local_post(struct sb_router *r, unsigned shard, struct sb__buf *b, uint32_t len,
		   uint64_t ep, struct sb_call *call);

/** Free an in-process call, on the shard that owns it. */
void sb__local_release(struct sb__shard *sh, struct sb_call *call);

/** With the router: the in-process calls still open on a shard. */
void sb__local_calls_free(struct sb__inbox *in);

/** Call an in-process requester's @p fn with one reply (see struct
 *  sb_reply): the views are copied NUL-terminated on the stack. */
void sb__local_answer(sb_reply_fn fn, void *ud, uint64_t req, int err, struct sb_view text,
		      struct sb_view payload, enum sb_more more, struct sb_view peer);

/** The terminal error of an in-process request, for @p fn. */
void sb__local_fail(sb_reply_fn fn, void *ud, uint64_t req, int err, const char *text);

/** A decoded REPLY or ERROR frame for an in-process requester's @p fn. */
void sb__local_reply_frame(sb_reply_fn fn, void *ud, uint64_t req, const struct sb_msg *m);

/** Once per turn: the program's sends and requests queued for this shard. */
void sb__local_read(struct sb__shard *sh);

/** After every shard thread has exited: requests still queued get their
 *  one answer (the router stopped), and the inbox is emptied. */
void sb__local_teardown(struct sb__shard *sh);

#endif
