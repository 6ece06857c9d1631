/* Request table: slots in chunks that never move, each a small header (its
 * generation and free-list link) in front of the caller's entry. */
#include <stdlib.h>
#include <string.h>

#include <switchboard/error.h>

#include "router/reqtab.h"

#if defined(__SANITIZE_ADDRESS__)
#define SB_REQTAB_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SB_REQTAB_ASAN 1
#endif
#endif
#ifdef SB_REQTAB_ASAN
#include <sanitizer/asan_interface.h>
#endif

#define ALIGN 16

/* 16 bytes so the entry right behind it keeps the chunk's 16-byte alignment. */
struct slot_head {
	uint32_t gen;   /* generation of the live entry's id, or of the next one; never 0 */
	uint32_t link;  /* LIVE while allocated, else the next free slot or NONE */
	uint32_t index; /* this slot's number, so an entry pointer leads back to its id */
	uint32_t spare;
};
_Static_assert(sizeof(struct slot_head) == ALIGN, "the entry must stay 16-byte aligned");

/* Link values no slot number (< 2^24) can take. */
#define LIVE UINT32_MAX
#define NONE (UINT32_MAX - 1)

#define SHARD_MASK (~(uint64_t)0 << SB__REQID_SHARD_SHIFT)

/* Under ASan a freed entry is poisoned, so a timer callback or reply path
 * that kept the pointer is caught at its first touch rather than after the
 * slot has gone to another request. */
static void poison(void *entry, size_t n)
{
#ifdef SB_REQTAB_ASAN
	__asan_poison_memory_region(entry, n);
#else
	(void)entry;
	(void)n;
#endif
}

static void unpoison(void *entry, size_t n)
{
#ifdef SB_REQTAB_ASAN
	__asan_unpoison_memory_region(entry, n);
#else
	(void)entry;
	(void)n;
#endif
}

static struct slot_head *head_of(const struct sb__reqtab *t, uint32_t slot)
{
	unsigned char *chunk = t->chunks[slot / SB__REQTAB_CHUNK];
	return (struct slot_head *)(chunk + (size_t)(slot % SB__REQTAB_CHUNK) * t->stride);
}

static size_t entry_bytes(const struct sb__reqtab *t)
{
	return t->stride - sizeof(struct slot_head);
}

static size_t nchunks(uint32_t max_entries)
{
	return (max_entries + (size_t)SB__REQTAB_CHUNK - 1) / SB__REQTAB_CHUNK;
}

static uint64_t make_id(const struct sb__reqtab *t, const struct slot_head *h)
{
	return t->shard_bits | (uint64_t)h->gen << SB__REQID_GEN_SHIFT | h->index;
}

/* The header of the live entry id names, or NULL. Every bit of the id is
 * checked, so no value a peer sends can reach a free or foreign slot. */
static struct slot_head *lookup(const struct sb__reqtab *t, uint64_t id)
{
	uint32_t slot = (uint32_t)id & SB__REQID_SLOT_MASK;

	if ((id & SHARD_MASK) != t->shard_bits || slot >= t->used)
		return NULL;
	struct slot_head *h = head_of(t, slot);
	if (h->link != LIVE || h->gen != (uint32_t)(id >> SB__REQID_GEN_SHIFT))
		return NULL;
	return h;
}

/* The last chunk holds only what max_entries leaves for it, so a small
 * table costs a small allocation. */
static int grow(struct sb__reqtab *t, uint32_t chunk)
{
	uint32_t first = chunk * SB__REQTAB_CHUNK;
	uint32_t n = t->max - first < SB__REQTAB_CHUNK ? t->max - first : SB__REQTAB_CHUNK;

	t->chunks[chunk] = aligned_alloc(ALIGN, n * t->stride);
	return t->chunks[chunk] != NULL ? 0 : SB_ENOMEM;
}

int sb__reqtab_init(struct sb__reqtab *t, unsigned shard, size_t entry_size, uint32_t max_entries)
{
	*t = (struct sb__reqtab){.free_head = NONE};
	if (shard > 255 || entry_size == 0 || max_entries == 0 || max_entries > SB__REQTAB_MAX)
		return SB_EINVAL;
	/* Keeps the bytes of a chunk inside size_t. */
	if (entry_size > SIZE_MAX / SB__REQTAB_CHUNK - 2 * ALIGN)
		return SB_EINVAL;

	t->chunks = calloc(nchunks(max_entries), sizeof *t->chunks);
	if (t->chunks == NULL)
		return SB_ENOMEM;
	t->stride = sizeof(struct slot_head) + (entry_size + ALIGN - 1) / ALIGN * ALIGN;
	t->shard_bits = (uint64_t)shard << SB__REQID_SHARD_SHIFT;
	t->max = max_entries;
	return 0;
}

void sb__reqtab_destroy(struct sb__reqtab *t)
{
	if (t->chunks != NULL) {
		for (size_t c = 0; c < nchunks(t->max); c++)
			free(t->chunks[c]);
		free(t->chunks);
	}
	*t = (struct sb__reqtab){.free_head = NONE};
}

void *sb__reqtab_alloc(struct sb__reqtab *t, uint64_t *id)
{
	struct slot_head *h;
	uint32_t slot;

	if (t->free_head != NONE) {
		/* The slot freed last is likeliest still in cache. */
		slot = t->free_head;
		h = head_of(t, slot);
		t->free_head = h->link;
	} else {
		if (t->used == t->max)
			return NULL;
		slot = t->used;
		if (t->chunks[slot / SB__REQTAB_CHUNK] == NULL &&
		    grow(t, slot / SB__REQTAB_CHUNK) != 0)
			return NULL;
		h = head_of(t, slot);
		h->gen = 1;
		h->index = slot;
		h->spare = 0;
		t->used++;
	}
	h->link = LIVE;
	t->live++;

	void *entry = h + 1;
	unpoison(entry, entry_bytes(t));
	memset(entry, 0, entry_bytes(t));
	*id = make_id(t, h);
	return entry;
}

void *sb__reqtab_get(struct sb__reqtab *t, uint64_t id)
{
	struct slot_head *h = lookup(t, id);
	return h != NULL ? h + 1 : NULL;
}

void sb__reqtab_free(struct sb__reqtab *t, uint64_t id)
{
	struct slot_head *h = lookup(t, id);
	if (h == NULL)
		return;
	h->gen = sb__reqid_gen_next(h->gen);
	h->link = t->free_head;
	t->free_head = h->index;
	t->live--;
	poison(h + 1, entry_bytes(t));
}

uint64_t sb__reqtab_id_of(struct sb__reqtab *t, const void *entry)
{
	const unsigned char *p = entry;
	const struct slot_head *h = (const struct slot_head *)(p - sizeof(struct slot_head));

	return h->link == LIVE ? make_id(t, h) : 0;
}

uint32_t sb__reqtab_live(const struct sb__reqtab *t)
{
	return t->live;
}
