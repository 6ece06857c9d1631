/* Reference-counted byte buffers: receive buffers lent to the kernel through a
 * provided-buffer ring, heap buffers for reassembled or router-made frames,
 * and staging buffers that gather small frames for one send. */
#ifndef SB_CORE_BUF_H
#define SB_CORE_BUF_H

#include <liburing.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* What the last put does with a buffer. */
enum sb__buf_kind {
	SB__BUF_HEAP = 0, /* freed */
	SB__BUF_RING,     /* recycled into its pool's buffer ring */
	SB__BUF_STAGE,    /* kept on its pool's staging list (owner shard only) */
};

/* A frame forwarded to N connections holds N references to the buffer it
 * arrived in, so broadcast and cross-shard delivery never copy it. A buffer
 * is local until a reference is handed to another thread (sb__buf_share()):
 * until then its one thread counts with plain instructions, from then on
 * every thread counts atomically (buf.c has why no count is lost). */
struct sb__buf {
	unsigned refs;               /* holders; the last put recycles or frees it. Plain while
					local, __atomic once shared: not atomic_uint, so that
					ThreadSanitizer reports a plain count another thread races */
	uint16_t bid;                /* ring buffers: id in the buffer ring */
	uint8_t kind;                /* enum sb__buf_kind */
	uint8_t shared;              /* 1 once another thread may hold a reference; cleared
					only when the buffer is handed out afresh */
	struct sb__bufpool *pool;    /* ring and staging buffers: the owning shard's pool */
	const _Atomic unsigned *low; /* ring buffers: the pool's flag (below), read
					without touching the pool's busy line */
	struct sb__buf *next_free;   /* on the owner's return stack */
	uint8_t *data;               /* the bytes */
};

#define SB__STAGE_SIZE 16384 /* bytes of a staging buffer */
#define SB__STAGE_KEEP 64    /* staging buffers a pool keeps for reuse */

/* One shard's receive buffers: `count` buffers of `size` bytes registered as
 * buffer group `bgid` of that shard's io_uring; and its staging buffers. */
struct sb__bufpool {
	struct io_uring_buf_ring *br; /* the ring shared with the kernel */
	uint8_t *mem;                 /* count * size bytes of buffer space */
	struct sb__buf *bufs;         /* one header per buffer */
	unsigned count, size;
	uint16_t bgid;
	unsigned pending; /* buffers added but not yet published */
	unsigned out;     /* buffers held by the kernel's or our side */
	/* 1 while the pool runs low: from 7/8 of it out on our side until
	 * 3/4. Any shard queueing one of its buffers reads it, only the owner
	 * writes it, and only when it changes: it has a cache line of its
	 * own, away from the counters the owner writes per buffer. */
	_Atomic unsigned *low;
	unsigned low_on, low_off, is_low; /* the marks, and the owner's copy of *low */
	/* Buffers other shards released, recycled by the owner. C11 atomics
	 * rather than ck_stack: ThreadSanitizer can see these orderings. */
	_Atomic(struct sb__buf *) returned;
	/* Staging buffers (SB__STAGE_SIZE bytes) that no one holds: only the
	 * owner takes and releases them (they never leave its output
	 * queues), so a plain list does, bounded by SB__STAGE_KEEP. */
	struct sb__buf *stages;
	unsigned nstages;
};

/**
 * Allocate the pool and register it with @p ring as buffer group @p bgid.
 * @return 0, SB_ENOMEM, or SB_ESYS (errno set) if the kernel refuses
 */
int sb__bufpool_init(struct sb__bufpool *p, struct io_uring *ring, uint16_t bgid, unsigned count,
		     unsigned size);
void sb__bufpool_destroy(struct sb__bufpool *p, struct io_uring *ring);

/** The buffer the kernel filled, from a recv completion's buffer id. */
struct sb__buf *sb__bufpool_get(struct sb__bufpool *p, uint16_t bid);

/** Whether b is a receive buffer of a pool that is running low, so that a
 *  holder that may keep it long should copy what it needs and let it go. */
static inline int sb__buf_scarce(const struct sb__buf *b)
{
	return b->kind == SB__BUF_RING && atomic_load_explicit(b->low, memory_order_relaxed);
}

/**
 * Owner shard only: give back buffers other shards released, and publish
 * every recycled buffer to the kernel in one step.
 * @return how many buffers the kernel got back
 */
unsigned sb__bufpool_flush(struct sb__bufpool *p);

/** Owner shard only: a staging buffer of SB__STAGE_SIZE bytes holding one
 *  reference, reused from @p p's list or allocated; NULL if out of memory.
 *  Its last put (by the owner) gives it back to the list. */
struct sb__buf *sb__stage_get(struct sb__bufpool *p);

/** A heap buffer of @p size bytes holding one reference, or NULL. */
struct sb__buf *sb__buf_heap(size_t size);

/**
 * A reference to @p b is about to become reachable from another thread (mail
 * to another shard, a router-wide table): from now on its count is atomic
 * for every holder. Call it while holding a reference, before the release
 * that publishes it (the ring's commit, the table's unlock). A buffer only
 * moved whole to another thread, its sender keeping no reference (the
 * embedding program's inbox), needs no mark: it has one thread at a time.
 */
static inline void sb__buf_share(struct sb__buf *b)
{
	/* Written only while 0, i.e. by its one thread: once it is 1, other
	 * threads read it, and a second store would race their loads. */
	if (!b->shared)
		b->shared = 1;
}

static inline void sb__buf_get(struct sb__buf *b)
{
	if (b->shared)
		__atomic_fetch_add(&b->refs, 1, __ATOMIC_RELAXED);
	else
		b->refs++;
}

/**
 * Drop a reference. The last one frees a heap buffer, keeps a staging
 * buffer for reuse, or recycles a ring buffer: directly if it belongs to
 * @p mine (the caller's own pool),
 * otherwise through its owner's return stack, since only the owner may
 * touch its buffer ring. A frame that crossed shards is released by the
 * receiving shard, so the caller cannot assume ownership.
 * @param mine  the calling shard's pool, or NULL when no shard is running
 */
void sb__buf_put(struct sb__buf *b, struct sb__bufpool *mine);

#endif
