/* The shard mailbox: one lock-free ring per ordered pair of shards, and the
 * handshake that tells a sender when its receiver may be asleep. */
#ifndef SB_CORE_MAILBOX_H
#define SB_CORE_MAILBOX_H

#include <stdint.h>

/* One message between shards, copied by value into the ring so that a send
 * allocates nothing. The router gives the fields their meaning. */
struct sb__mail {
	uint32_t type; /* what the message is, in the router's terms */
	uint32_t a;    /* small argument */
	uint64_t b;    /* wide argument */
	void *p;       /* an object whose ownership crosses with the message */
	uint64_t c;    /* second wide argument */
};

/* Every ring of a router, opaque. Shard numbers run from 0 to nshards - 1. */
struct sb__mailbox;

/**
 * Creates the rings of nshards shards: one per ordered pair (from, to) with
 * from != to, each with ring_entries slots. A ring holds ring_entries - 1
 * messages: ck_ring keeps one slot free to tell full from empty.
 * @param nshards       number of shards, at least 1
 * @param ring_entries  slots per ring, a power of two, at least 4
 * @return the mailbox, or NULL on bad arguments or no memory
 */
struct sb__mailbox *sb__mailbox_new(unsigned nshards, unsigned ring_entries);

/** Frees the mailbox; no shard may use it any more. NULL is ignored. */
void sb__mailbox_free(struct sb__mailbox *mb);

/**
 * Queues a copy of *m from shard `from` to shard `to`, with no fence and no
 * look at `to`'s sleep. Only `from`'s thread may call it. After one or more
 * posts to `to` the caller must call sb__mailbox_wake_due(mb, to), and wake
 * `to` if it says so, at the latest before it blocks itself, or `to` may
 * sleep on the mail for ever: a turn's mail to one shard pays for one fence.
 * @return 0; SB_EOVERLOADED when the ring is full and nothing was queued, the
 *         caller keeps the message and retries later; SB_EINVAL for a shard
 *         number out of range or from == to
 */
int sb__mail_post(struct sb__mailbox *mb, unsigned from, unsigned to, const struct sb__mail *m);

/**
 * After shard `from`'s posts to `to`: whether `to` may be asleep with them
 * waiting, so that the caller must wake it (eventfd, IORING_OP_MSG_RING,
 * ...). One store-load fence. Only the posting thread may call it.
 * @return 1 when this call is the one that must wake `to` (the first after
 *         its sb__mailbox_sleep(), from whichever sender), else 0
 */
int sb__mailbox_wake_due(struct sb__mailbox *mb, unsigned to);

/**
 * sb__mail_post() then sb__mailbox_wake_due(), for one message on its own.
 * @param wake  set to 1 when the caller must wake `to`, else 0
 * @return as sb__mail_post()
 */
int sb__mail_send(struct sb__mailbox *mb, unsigned from, unsigned to, const struct sb__mail *m,
		  int *wake);

/**
 * Takes up to max messages addressed to shard `to`, one per sender in turn,
 * so that a busy sender cannot starve the others; each sender's messages
 * come out in the order it sent them. The next call starts with the sender
 * after the last one served. Only `to`'s thread may call it.
 * @return the number of messages stored in out[0..max)
 */
unsigned sb__mail_recv(struct sb__mailbox *mb, unsigned to, struct sb__mail *out, unsigned max);

/**
 * Shard `to` is about to block in its event loop. Only `to`'s thread may call it.
 * @return 1: it may block; it is marked asleep, and the first send to it
 *         from now on reports wake = 1. 0: mail is waiting, it must not block
 *         and is not marked asleep.
 */
int sb__mailbox_sleep(struct sb__mailbox *mb, unsigned to);

/**
 * Shard `to` woke up, by a wake or by other I/O: later sends stop reporting
 * wake = 1. Only `to`'s thread may call it, before it next receives.
 */
void sb__mailbox_awake(struct sb__mailbox *mb, unsigned to);

/**
 * Messages waiting for shard `to`, for statistics: exact for `to`'s own
 * thread when no one is sending, otherwise a snapshot that may be stale.
 */
unsigned sb__mailbox_pending(struct sb__mailbox *mb, unsigned to);

#endif
