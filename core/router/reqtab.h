/* Per-shard request table: hands out the 64-bit id a forwarded request travels
 * under and finds its entry again when the reply brings the id back. */
#ifndef SB_CORE_REQTAB_H
#define SB_CORE_REQTAB_H

#include <stddef.h>
#include <stdint.h>

/* Id layout, most significant bit first:
 *
 *   63      56 55                            24 23             0
 *   +---------+--------------------------------+----------------+
 *   |  shard  |           generation           |      slot      |
 *   +---------+--------------------------------+----------------+
 *      8 bits              32 bits                   24 bits
 *
 * The shard comes first so any thread can route a reply from the id alone.
 * The generation of a slot moves on each time its entry is freed, so a reply
 * that arrives after its request timed out carries an old generation and
 * finds nothing, even when the slot already serves a newer request. It is 32
 * bits because freed slots are reused last-in first-out: on a quiet shard one
 * slot takes nearly every request, and 2^32 reuses of it (71 minutes at a
 * million requests a second) must pass before an old id could match again.
 * That leaves 24 bits of slot: 16,777,216 entries in flight per shard.
 * Generations run 1 .. 2^32 - 1, skipping 0 on wrap, so no id is ever 0,
 * which the wire uses for "no id". */
#define SB__REQID_SHARD_SHIFT 56
#define SB__REQID_GEN_SHIFT   24
#define SB__REQID_SLOT_MASK   ((1u << SB__REQID_GEN_SHIFT) - 1)
#define SB__REQTAB_MAX        (SB__REQID_SLOT_MASK + 1u) /* largest max_entries */

/* Entries come in chunks of this many, allocated as the live count first
 * needs them, so memory follows the high-water mark and entries never move. */
#define SB__REQTAB_CHUNK 4096u

/* Defined here so a shard can embed it. Fields are private. */
struct sb__reqtab {
	unsigned char **chunks; /* chunk table; NULL entries not yet allocated */
	size_t stride;          /* bytes per slot: header, then the entry, both 16-aligned */
	uint64_t shard_bits;    /* the shard, already shifted into place */
	uint32_t max;           /* most entries live at once */
	uint32_t used;          /* slots ever handed out; each below is initialised */
	uint32_t live;          /* entries allocated and not freed */
	uint32_t free_head;     /* most recently freed slot, or none */
};

/* Which shard owns an id, from the id alone. */
static inline unsigned sb__reqid_shard(uint64_t id)
{
	return (unsigned)(id >> SB__REQID_SHARD_SHIFT);
}

/* The generation after gen: never 0, so the id stays non-zero. */
static inline uint32_t sb__reqid_gen_next(uint32_t gen)
{
	return gen == UINT32_MAX ? 1 : gen + 1;
}

/* Builds an id from its parts (see the layout above). */
static inline uint64_t sb__reqid_make(unsigned shard, uint32_t gen, uint32_t slot)
{
	return (uint64_t)shard << SB__REQID_SHARD_SHIFT | (uint64_t)gen << SB__REQID_GEN_SHIFT |
	       (slot & SB__REQID_SLOT_MASK);
}

/* Prepares an empty table for shard (< 256) whose entries are caller structs
 * of entry_size bytes, at most max_entries (1 .. SB__REQTAB_MAX) live at
 * once. Allocates only the chunk table; entries come later.
 * @return 0, SB_EINVAL for an argument out of range, or SB_ENOMEM */
int sb__reqtab_init(struct sb__reqtab *t, unsigned shard, size_t entry_size, uint32_t max_entries);

/* Frees all memory of the table; every entry pointer dies with it. */
void sb__reqtab_destroy(struct sb__reqtab *t);

/* A zeroed, 16-byte aligned entry and its id in *id. The pointer stays valid
 * until the entry is freed. O(1); reuses the most recently freed slot.
 * @return the entry, or NULL when max_entries are live or a new chunk cannot
 *         be allocated (either way the caller answers "overloaded") */
void *sb__reqtab_alloc(struct sb__reqtab *t, uint64_t *id);

/* The live entry id names, or NULL if the id was freed, is stale, malformed,
 * 0, or belongs to another shard. Safe on any 64-bit value. O(1). */
void *sb__reqtab_get(struct sb__reqtab *t, uint64_t id);

/* Frees the entry id names, making the id and every pointer to the entry
 * dead. A no-op on an id that sb__reqtab_get would refuse. */
void sb__reqtab_free(struct sb__reqtab *t, uint64_t id);

/* The id of a live entry of t (for a timer callback that holds only the
 * entry); 0 if the entry has been freed. */
uint64_t sb__reqtab_id_of(struct sb__reqtab *t, const void *entry);

/* Entries allocated and not yet freed. */
uint32_t sb__reqtab_live(const struct sb__reqtab *t);

#endif
