/* The shard mailbox: a ck_ring SPSC queue for every ordered pair of shards,
 * and a wake-up handshake that never loses a wake-up nor wakes an awake shard. */
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <ck_pr.h>
#include <ck_ring.h>

#include <switchboard/error.h>

#include "router/mailbox.h"

/*
 * The wake-up handshake. A receiver with nothing left to do calls sleep(),
 * which stores asleep = 1, then looks at every inbound ring. A sender
 * enqueues, then reads asleep. Each puts a full (store-load) fence between
 * its store and its load, and of the two fences one runs first:
 *  - the sender's: its enqueue is visible to the receiver's look, which finds
 *    the ring non-empty, clears asleep and returns 0: it does not sleep;
 *  - the receiver's: its asleep = 1 is visible to the sender's read, which
 *    sees that 1 or a later value: 0 from another sender's exchange (that one
 *    reports the wake), 0 from the receiver itself (it is awake and receives
 *    before it next sleeps), or 1 from a later sleep() (the same again).
 * So a receiver that sleeps is woken by a send it has not received yet.
 * Without the fences, both loads could run before the other side's store
 * left its store buffer (x86 lets a load overtake an earlier store): the
 * receiver would see empty rings, the sender asleep = 0, and the message
 * would wait with nobody awake to take it.
 *
 * The fences are ck_pr's, not C11's: the store the sender must order is ck's
 * own ring index, written with ck_pr outside the C11 memory model. The
 * exchange lets exactly one sender see each 1, so only the first send after a
 * sleep pays for a wake; the plain load before it keeps the flag's cache line
 * shared while the receiver is awake, instead of every send taking it over.
 */

/* ck_ring pads its indices to 64-byte lines; we pad our own state the same. */
#define CACHE_LINE 64

CK_RING_PROTOTYPE(sb__mail, sb__mail)

_Static_assert(sizeof(struct sb__mail) == 32, "two messages per cache line");

/* One direction between two shards. The line alignment keeps it from sharing
 * a cache line with the next ring, whose indices other shards write. */
struct sb__ring {
	alignas(CACHE_LINE) struct ck_ring ring; /* ck's indices, the two sides a line apart */
	struct sb__mail *slots;                  /* ring_entries messages, line aligned */
};

/* What one shard owns as a receiver. The flag that senders read on every send
 * lives apart from the state the receiver writes on every recv. */
struct sb__inbox {
	alignas(CACHE_LINE) atomic_int asleep; /* set by sleep(), cleared by a send or awake() */
	alignas(CACHE_LINE) unsigned next;     /* the sender recv() serves first */
	unsigned *who;  /* recv() scratch: senders with mail, in turn order */
	unsigned *left; /* recv() scratch: how many each of them has */
};

struct sb__mailbox {
	unsigned nshards;
	struct sb__ring *rings;  /* [to * nshards + from]: a receiver's rings are adjacent */
	struct sb__inbox *inbox; /* one per shard */
	struct sb__mail *slots;  /* the slots of every ring, one block */
	unsigned *scratch;       /* who and left of every inbox, one block */
};

/*
 * ThreadSanitizer cannot see ck_pr's inline assembly. Left alone it would
 * report each slot as written by one thread and read by another with nothing
 * in between, and, worse, it would miss the happens-before from a sender's
 * writes to what m.p points at to the receiver that follows the pointer, so
 * every module handing a buffer across shards would report races. These
 * annotations tell it what the ring guarantees, and cost nothing elsewhere.
 */
#if defined(__SANITIZE_THREAD__)
#define SB_MAILBOX_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SB_MAILBOX_TSAN 1
#endif
#endif

#ifdef SB_MAILBOX_TSAN
#include <sanitizer/tsan_interface.h>
void __tsan_ignore_thread_begin(void);
void __tsan_ignore_thread_end(void);
#endif

static struct sb__mail *reserve(struct sb__ring *r)
{
	return ck_ring_enqueue_reserve_spsc_sb__mail(&r->ring, r->slots);
}

/* Reserve and commit rather than ck's one-call enqueue: the release has to
 * come before the index store that lets the receiver take the slot. */
static void commit(struct sb__ring *r)
{
#ifdef SB_MAILBOX_TSAN
	__tsan_release(r);
#endif
	ck_ring_enqueue_commit_spsc(&r->ring);
}

static bool take(struct sb__ring *r, struct sb__mail *out)
{
#ifdef SB_MAILBOX_TSAN
	/* A slot's reuse is ordered by ck's consumer index, which TSan cannot
	 * see, and no annotation fits between ck's copy and that index store;
	 * so the receiver's copy is hidden from it instead, into a local so
	 * that the caller's buffer stays checked. */
	struct sb__mail m;
	__tsan_ignore_thread_begin();
	bool ok = ck_ring_dequeue_spsc_sb__mail(&r->ring, r->slots, &m);
	__tsan_ignore_thread_end();
	if (ok) {
		__tsan_acquire(r);
		*out = m;
	}
	return ok;
#else
	return ck_ring_dequeue_spsc_sb__mail(&r->ring, r->slots, out);
#endif
}

struct sb__mailbox *sb__mailbox_new(unsigned nshards, unsigned ring_entries)
{
	if (nshards == 0 || ring_entries < 4 || (ring_entries & (ring_entries - 1)) != 0)
		return NULL;

	/* Refused before any allocation: a sanitizer aborts on a huge request
	 * instead of returning NULL. */
	size_t n = nshards, pairs, ring_bytes, inbox_bytes, per_ring, slot_bytes, scratch_bytes;
	/* Each receiver's scratch in whole lines of its own: it writes them on
	 * every recv, and a line shared with another receiver would bounce. */
	size_t line = CACHE_LINE / sizeof(unsigned);
	size_t stride = (2 * n + line - 1) / line * line;
	if (__builtin_mul_overflow(n, n, &pairs) ||
	    __builtin_mul_overflow(pairs, sizeof(struct sb__ring), &ring_bytes) ||
	    __builtin_mul_overflow(n, sizeof(struct sb__inbox), &inbox_bytes) ||
	    __builtin_mul_overflow((size_t)ring_entries, sizeof(struct sb__mail), &per_ring) ||
	    __builtin_mul_overflow(pairs - n, per_ring, &slot_bytes) ||
	    __builtin_mul_overflow(n, stride * sizeof(unsigned), &scratch_bytes))
		return NULL;

	struct sb__mailbox *mb = calloc(1, sizeof *mb);
	if (mb == NULL)
		return NULL;
	mb->nshards = nshards;
	/* aligned_alloc wants a multiple of the alignment: rings, inboxes and
	 * scratch are whole lines, and a ring's slots at least 4 * 32 bytes. */
	mb->rings = aligned_alloc(CACHE_LINE, ring_bytes);
	mb->inbox = aligned_alloc(CACHE_LINE, inbox_bytes);
	mb->scratch = aligned_alloc(CACHE_LINE, scratch_bytes);
	if (slot_bytes > 0)
		mb->slots = aligned_alloc(CACHE_LINE, slot_bytes);
	if (mb->rings == NULL || mb->inbox == NULL || mb->scratch == NULL ||
	    (slot_bytes > 0 && mb->slots == NULL))
		goto fail;

	memset(mb->rings, 0, ring_bytes);
	memset(mb->inbox, 0, inbox_bytes);
	size_t used = 0;
	for (size_t to = 0; to < n; to++) {
		for (size_t from = 0; from < n; from++) {
			if (from == to)
				continue;
			struct sb__ring *r = &mb->rings[to * n + from];
			ck_ring_init(&r->ring, ring_entries);
			r->slots = mb->slots + used * ring_entries;
			used++;
		}
		struct sb__inbox *ib = &mb->inbox[to];
		atomic_init(&ib->asleep, 0);
		ib->next = 0;
		ib->who = mb->scratch + stride * to;
		ib->left = ib->who + n;
	}
	return mb;

fail:
	sb__mailbox_free(mb);
	return NULL;
}

void sb__mailbox_free(struct sb__mailbox *mb)
{
	if (mb == NULL)
		return;
	free(mb->rings);
	free(mb->inbox);
	free(mb->slots);
	free(mb->scratch);
	free(mb);
}

int sb__mail_send(struct sb__mailbox *mb, unsigned from, unsigned to, const struct sb__mail *m,
		  int *wake)
{
	*wake = 0;
	if (from >= mb->nshards || to >= mb->nshards || from == to)
		return SB_EINVAL;

	struct sb__ring *r = &mb->rings[(size_t)to * mb->nshards + from];
	struct sb__mail *slot = reserve(r);
	if (slot == NULL)
		return SB_EOVERLOADED;
	*slot = *m;
	commit(r);

	ck_pr_fence_store_load();
	atomic_int *asleep = &mb->inbox[to].asleep;
	if (atomic_load(asleep) == 1 && atomic_exchange(asleep, 0) == 1)
		*wake = 1;
	return 0;
}

unsigned sb__mail_recv(struct sb__mailbox *mb, unsigned to, struct sb__mail *out, unsigned max)
{
	unsigned n = mb->nshards;
	struct sb__ring *in = &mb->rings[(size_t)to * n];
	struct sb__inbox *ib = &mb->inbox[to];
	unsigned *who = ib->who, *left = ib->left;
	unsigned nwho = 0, got = 0, last = 0;

	/* Count each sender's mail once, so that a message costs the same however
	 * many senders are idle. Mail that arrives meanwhile waits for the next
	 * call, which comes: sleep() does not let the shard block while any waits. */
	unsigned from = ib->next;
	for (unsigned i = 0; i < n; i++) {
		if (from != to) {
			unsigned k = ck_ring_size(&in[from].ring);
			if (k > 0) {
				who[nwho] = from;
				left[nwho] = k;
				nwho++;
			}
		}
		from = from + 1 == n ? 0 : from + 1;
	}

	while (got < max && nwho > 0) {
		unsigned keep = 0;
		for (unsigned j = 0; j < nwho && got < max; j++) {
			/* Cannot fail while only this thread takes from the ring;
			 * if a caller broke that, better no message than garbage. */
			if (!take(&in[who[j]], &out[got]))
				continue;
			got++;
			last = who[j];
			if (--left[j] > 0) {
				who[keep] = who[j];
				left[keep] = left[j];
				keep++;
			}
		}
		nwho = keep;
	}
	if (got > 0)
		ib->next = last + 1 == n ? 0 : last + 1;
	return got;
}

unsigned sb__mailbox_pending(struct sb__mailbox *mb, unsigned to)
{
	unsigned n = mb->nshards, sum = 0;
	struct sb__ring *in = &mb->rings[(size_t)to * n];
	for (unsigned from = 0; from < n; from++)
		if (from != to)
			sum += ck_ring_size(&in[from].ring);
	return sum;
}

int sb__mailbox_sleep(struct sb__mailbox *mb, unsigned to)
{
	atomic_int *asleep = &mb->inbox[to].asleep;

	/* Mail in sight: no mark, which a sender could take and wake us for nothing. */
	if (sb__mailbox_pending(mb, to) != 0)
		return 0;
	atomic_store(asleep, 1);
	ck_pr_fence_store_load();
	if (sb__mailbox_pending(mb, to) == 0)
		return 1;
	/* A sender may have taken the 1 already and will wake us for nothing;
	 * a spurious wake costs one loop turn, a lost one a stuck shard. */
	atomic_store(asleep, 0);
	return 0;
}

void sb__mailbox_awake(struct sb__mailbox *mb, unsigned to)
{
	atomic_int *asleep = &mb->inbox[to].asleep;

	/* Relaxed: this store only spares senders a needless wake; no lost wake
	 * can follow from it, since the shard receives before it sleeps again and
	 * sleep() orders itself. Usually a sender has cleared it: then no write. */
	if (atomic_load_explicit(asleep, memory_order_relaxed) != 0)
		atomic_store_explicit(asleep, 0, memory_order_relaxed);
}
