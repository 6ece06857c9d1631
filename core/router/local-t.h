/* Embedding: the in-process handlers a program registers, and the inbox
 * its sends, requests and answers wait in for a shard. Types only. */
#ifndef SB_ROUTER_LOCAL_T_H
#define SB_ROUTER_LOCAL_T_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <switchboard/router.h>

#include "common/idmap.h"
#include "common/list.h"

struct sb__buf;
struct sb__schema;
struct sb_call;

/* An in-process handler (sb_router_handle). */
struct sb__local {
	char *name; /* NULL: the catch-all */
	uint32_t len;
	uint32_t flags;            /* SB__EP_* */
	struct sb__schema *schema; /* its argument schema (a reference), or NULL */
	sb_handler_fn fn;
	void *ud;
};

/* What the embedding program's threads hand a shard: a send, request or
 * cancel, encoded by the caller's thread and routed by the shard; or (ep
 * set) an in-process call's answer from a thread other than the shard's. */
struct sb__inject {
	struct sb__buf *frame; /* NULL: no answer, only the call to release */
	uint32_t len;
	sb_reply_fn fn; /* requests: where replies go */
	void *ud;
	uint64_t ep;          /* an answer: the handler's endpoint, else 0 */
	struct sb_call *call; /* an answer: the call its final answer releases */
};

/* The queue a shard takes injected messages from. A mutex is fine here:
 * only the embedding program's calls pass through it, never the network. */
struct sb__inbox {
	pthread_mutex_t lock;
	struct sb__inject *items;
	uint32_t n, cap;
	_Atomic uint32_t pending; /* lets the shard skip the lock when empty */
	/* The shard's open in-process calls (local_call.c), its thread's only. */
	struct sb__idmap calls; /* key(handler ep, request id) -> struct lcall * */
	struct sb__link live;   /* every one, for the router's free */
};

#endif
