/* The shard loop: one thread, one io_uring, its own connections, requests,
 * routes and timers. Each turn handles the completions, the mail, the
 * embedding program's inbox and the due timers, flushes the output, and
 * sleeps only when nothing is left. The helpers every part of a shard
 * submits with are here too. */
#ifndef SB_CORE_SHARD_H
#define SB_CORE_SHARD_H

#include <liburing.h>
#include <stdint.h>

#include "router/shard-t.h"

/* io_uring user_data: an operation tag in the top 8 bits, the connection's
 * endpoint (minus its shard bits, which are ours) below. */
enum sb__tag {
	SB__TAG_ACCEPT = 1,
	SB__TAG_RECV,
	SB__TAG_SEND,
	SB__TAG_WAKE,
	SB__TAG_CANCEL,
	SB__TAG_NATS, /* the cluster connection's socket (cluster.c) */
};
#define SB__TAG_SHIFT 56
#define SB__EP_MASK   ((1ull << SB__TAG_SHIFT) - 1)

static inline uint64_t sb__tag(enum sb__tag tag, uint64_t ep)
{
	return (uint64_t)tag << SB__TAG_SHIFT | (ep & SB__EP_MASK);
}

/** The shard an endpoint (a connection id) lives on. */
static inline unsigned sb__ep_shard(uint64_t ep)
{
	return (unsigned)(ep >> SB__TAG_SHIFT);
}

/** A submission slot; a full SQ is handed to the kernel for a fresh one. */
static inline struct io_uring_sqe *sb__sqe(struct sb__shard *sh)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&sh->ring);
	if (sqe == NULL) {
		/* SQ full: hand what we have to the kernel and take a fresh slot. */
		io_uring_submit(&sh->ring);
		sqe = io_uring_get_sqe(&sh->ring);
	}
	return sqe;
}

/** The shard thread's main function. */
void *sb__shard_main(void *arg);

/** After every shard thread has exited: release mail still in flight. */
void sb__shard_teardown(struct sb__shard *sh);

/** Then free the shard's ring, buffers and tables. */
void sb__shard_destroy(struct sb__shard *sh);

#endif
