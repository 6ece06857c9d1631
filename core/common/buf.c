/* Receive-buffer pools, staging buffers and heap buffers. Ring buffers go
 * back to the kernel in batches; a pool that runs low says so, for holders
 * that could keep its buffers long (a connection's output queue, a paused
 * connection's parked bytes) to copy instead. Staging buffers are reused
 * from a short list rather than allocated per send. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <switchboard/error.h>

#include "common/buf.h"

/*
 * Why no count is lost. A buffer's count changes with plain instructions
 * while it is local and atomically once it is shared, and the two kinds
 * never touch one buffer at once:
 *  - Local: one thread holds every reference, the shard whose kernel filled
 *    it (sb__bufpool_get), the thread that allocated it (sb__buf_heap), or
 *    the thread it was moved to whole, its sender keeping nothing (the
 *    embedding program's inbox, under a lock). Only that thread can reach
 *    the buffer, so only it reads or writes refs: plain ++ and -- are exact.
 *  - Becoming shared: a reference reaches another thread only through a
 *    hand-off that is a release by its sender and an acquire by its receiver
 *    (a mail ring's commit and take, a mutex's unlock and lock). The sender
 *    sets the mark before that release (sb__mail() for DELIVER and REPLY;
 *    the cluster's router-wide identity frames as they are made, under the
 *    lock). The acquire makes the mark and every plain count before it
 *    visible, so the receiver reads shared = 1 and a count that includes its
 *    reference, and counts atomically from then on; the sender reads its own
 *    mark, so its next operation is atomic too. No plain operation follows
 *    the mark on any thread. A holder that passes the buffer on (to a third
 *    shard, or back) finds it marked and writes nothing.
 *  - The owner drops its last reference while another shard still holds
 *    one: both decrements are atomic, so exactly one of them takes the count
 *    from 1 to 0, and that one recycles the buffer (through its owner's
 *    return stack when it is not the owner) or frees it. acq_rel on the
 *    decrement orders every holder's reads of the bytes before the reuse.
 *  - The mark is read before the decrement (after it, another thread may
 *    already have recycled the buffer), and cleared only when the owner hands
 *    a recycled ring buffer out afresh (sb__bufpool_get): the last put's
 *    release has reached the owner by then (its own decrement reads the
 *    others'; the return stack's exchange is an acquire), so no thread reads
 *    the mark any more. A heap buffer is freed with its mark.
 * A hand-off without the mark is the bug this rules out: two threads doing
 * plain ++ and -- lose counts, and a buffer is reused while queued or never
 * recycled. refs is a plain unsigned with __atomic builtins rather than an
 * atomic_uint so that ThreadSanitizer reports exactly that, a plain access
 * racing another thread's.
 */

int sb__bufpool_init(struct sb__bufpool *p, struct io_uring *ring, uint16_t bgid, unsigned count,
		     unsigned size)
{
	struct io_uring_buf_reg reg = {0};
	size_t ring_bytes = count * sizeof(struct io_uring_buf);

	memset(p, 0, sizeof *p);
	if (count == 0 || count > 32768 || (count & (count - 1)) != 0)
		return SB_EINVAL;
	/* The ring must be page-aligned; mmap gives that and zeroed memory. */
	p->br = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (p->br == MAP_FAILED) {
		p->br = NULL;
		return SB_ENOMEM;
	}
	p->mem = malloc((size_t)count * size);
	p->bufs = calloc(count, sizeof *p->bufs);
	p->low = aligned_alloc(64, 64);
	if (p->mem == NULL || p->bufs == NULL || p->low == NULL)
		goto fail;
	atomic_init(p->low, 0);
	p->count = count;
	p->size = size;
	p->bgid = bgid;
	p->low_on = count - count / 8;
	p->low_off = count - count / 4;
	atomic_init(&p->returned, NULL);
	io_uring_buf_ring_init(p->br);
	reg.ring_addr = (unsigned long)p->br;
	reg.ring_entries = count;
	reg.bgid = bgid;
	if (io_uring_register_buf_ring(ring, &reg, 0) != 0)
		goto fail_sys;
	for (unsigned i = 0; i < count; i++) {
		struct sb__buf *b = &p->bufs[i];
		b->bid = (uint16_t)i;
		b->kind = SB__BUF_RING;
		b->pool = p;
		b->low = p->low;
		b->data = p->mem + (size_t)i * size;
		io_uring_buf_ring_add(p->br, b->data, size, b->bid, io_uring_buf_ring_mask(count),
				      (int)i);
	}
	io_uring_buf_ring_advance(p->br, (int)count);
	return 0;
fail_sys:
	free(p->mem);
	free(p->bufs);
	free(p->low);
	munmap(p->br, ring_bytes);
	p->br = NULL;
	return SB_ESYS;
fail:
	free(p->mem);
	free(p->bufs);
	free(p->low);
	munmap(p->br, ring_bytes);
	p->br = NULL;
	return SB_ENOMEM;
}

void sb__bufpool_destroy(struct sb__bufpool *p, struct io_uring *ring)
{
	while (p->stages != NULL) {
		struct sb__buf *b = p->stages;
		p->stages = b->next_free;
		free(b);
	}
	p->nstages = 0;
	if (p->br == NULL)
		return;
	io_uring_unregister_buf_ring(ring, p->bgid);
	munmap(p->br, p->count * sizeof(struct io_uring_buf));
	free(p->mem);
	free(p->bufs);
	free(p->low);
	p->br = NULL;
}

struct sb__buf *sb__bufpool_get(struct sb__bufpool *p, uint16_t bid)
{
	struct sb__buf *b = &p->bufs[bid];
	b->refs = 1;
	b->shared = 0;
	if (++p->out >= p->low_on && !p->is_low) {
		p->is_low = 1;
		atomic_store_explicit(p->low, 1, memory_order_relaxed);
	}
	return b;
}

static void recycle(struct sb__bufpool *p, struct sb__buf *b)
{
	io_uring_buf_ring_add(p->br, b->data, p->size, b->bid, io_uring_buf_ring_mask(p->count),
			      (int)p->pending);
	p->pending++;
	if (--p->out <= p->low_off && p->is_low) {
		p->is_low = 0;
		atomic_store_explicit(p->low, 0, memory_order_relaxed);
	}
}

unsigned sb__bufpool_flush(struct sb__bufpool *p)
{
	/* Take the whole stack at once: no ABA, since nothing is popped singly. */
	struct sb__buf *b = atomic_exchange_explicit(&p->returned, NULL, memory_order_acquire);
	while (b != NULL) {
		struct sb__buf *next = b->next_free;
		recycle(p, b);
		b = next;
	}
	unsigned n = p->pending;
	if (n > 0)
		io_uring_buf_ring_advance(p->br, (int)n);
	p->pending = 0;
	return n;
}

struct sb__buf *sb__buf_heap(size_t size)
{
	/* Header and bytes in one allocation: one malloc, one free, one miss. */
	struct sb__buf *b = malloc(sizeof *b + size);
	if (b == NULL)
		return NULL;
	memset(b, 0, sizeof *b);
	b->refs = 1;
	b->data = (uint8_t *)(b + 1);
	return b;
}

struct sb__buf *sb__stage_get(struct sb__bufpool *p)
{
	struct sb__buf *b = p->stages;
	if (b != NULL) {
		p->stages = b->next_free;
		p->nstages--;
		b->refs = 1; /* a stage never leaves its shard: never shared */
		return b;
	}
	if ((b = sb__buf_heap(SB__STAGE_SIZE)) == NULL)
		return NULL;
	b->kind = SB__BUF_STAGE;
	b->pool = p;
	return b;
}

/* Past SB__STAGE_KEEP, a burst's staging buffers go back to the heap: a
 * pool keeps what a busy turn reuses, not what one slow consumer held. */
static void stage_keep(struct sb__bufpool *p, struct sb__buf *b)
{
	if (p->nstages >= SB__STAGE_KEEP) {
		free(b);
		return;
	}
	b->next_free = p->stages;
	p->stages = b;
	p->nstages++;
}

void sb__buf_put(struct sb__buf *b, struct sb__bufpool *mine)
{
	if (b->shared) {
		if (__atomic_fetch_sub(&b->refs, 1, __ATOMIC_ACQ_REL) != 1)
			return;
	} else if (--b->refs != 0)
		return;
	if (b->kind == SB__BUF_HEAP)
		free(b);
	else if (b->kind == SB__BUF_STAGE)
		stage_keep(b->pool, b);
	else if (b->pool == mine)
		recycle(b->pool, b);
	else {
		struct sb__buf *head =
			atomic_load_explicit(&b->pool->returned, memory_order_relaxed);
		do
			b->next_free = head;
		while (!atomic_compare_exchange_weak_explicit(
			&b->pool->returned, &head, b, memory_order_release, memory_order_relaxed));
	}
}
