/* Embedding: the in-process handlers a program registers, and the inbox
 * its sends and requests wait in for a shard. Types only. */
#ifndef SB_ROUTER_LOCAL_T_H
#define SB_ROUTER_LOCAL_T_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <switchboard/router.h>

struct sb__buf;
struct sb__schema;

/* An in-process handler (sb_router_handle). */
struct sb__local {
	char *name; /* NULL: the catch-all */
	uint32_t len;
	uint32_t flags;            /* SB__EP_* */
	struct sb__schema *schema; /* its argument schema (a reference), or NULL */
	sb_local_fn fn;
	void *ud;
};

/* A send or request from the embedding program, encoded by the caller's
 * thread and routed by a shard. */
struct sb__inject {
	struct sb__buf *frame;
	uint32_t len;
	sb_reply_fn fn; /* requests: where replies go */
	void *ud;
};

/* The queue a shard takes injected messages from. A mutex is fine here:
 * only the embedding program's calls pass through it, never the network. */
struct sb__inbox {
	pthread_mutex_t lock;
	struct sb__inject *items;
	uint32_t n, cap;
	_Atomic uint32_t pending; /* lets the shard skip the lock when empty */
};

#endif
