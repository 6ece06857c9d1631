/* Open addressing with linear probing. Deletion shifts later entries back
 * instead of leaving tombstones, so a map that churns never slows down. */
#include <stdlib.h>

#include <switchboard/error.h>

#include "common/idmap.h"

struct sb__idslot {
	uint64_t key; /* 0 = empty */
	uint64_t val;
};

/* splitmix64's finaliser: spreads sequential ids over the table. */
static uint64_t mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* A key's home slot: one multiply (Fibonacci hashing), whose high half is
 * well mixed even for sequential endpoint ids. Four times cheaper than
 * mix(), and every probe, insert and backward shift starts here. */
static uint32_t home(const struct sb__idmap *m, uint64_t key)
{
	return (uint32_t)((key * 0x9e3779b97f4a7c15ull) >> 32) & m->mask;
}

uint64_t sb__idmap_key(uint64_t a, uint64_t b)
{
	uint64_t k = mix(a) ^ (b * 0x9e3779b97f4a7c15ull);
	return k != 0 ? k : 1;
}

void sb__idmap_init(struct sb__idmap *m)
{
	m->slots = NULL;
	m->mask = 0;
	m->count = 0;
}

void sb__idmap_destroy(struct sb__idmap *m)
{
	free(m->slots);
	sb__idmap_init(m);
}

static int grow(struct sb__idmap *m)
{
	uint32_t n = m->slots == NULL ? 64 : (m->mask + 1) * 2;
	struct sb__idslot *old = m->slots;
	uint32_t old_n = m->slots == NULL ? 0 : m->mask + 1;
	struct sb__idslot *s = calloc(n, sizeof *s);

	if (s == NULL)
		return SB_ENOMEM;
	m->slots = s;
	m->mask = n - 1;
	m->count = 0;
	for (uint32_t i = 0; i < old_n; i++)
		if (old[i].key != 0)
			sb__idmap_put(m, old[i].key, old[i].val);
	free(old);
	return 0;
}

/* The slot holding key, inserted with value 0 if absent; NULL if the map
 * could not grow. */
static struct sb__idslot *slot_for(struct sb__idmap *m, uint64_t key)
{
	/* Keep the load under 1/2: probes stay short without tombstones. */
	if ((m->count + 1) * 2 > (m->slots == NULL ? 0 : m->mask + 1) && grow(m) != 0)
		return NULL;
	for (uint32_t i = home(m, key);; i = (i + 1) & m->mask) {
		if (m->slots[i].key == key)
			return &m->slots[i];
		if (m->slots[i].key == 0) {
			m->slots[i] = (struct sb__idslot){key, 0};
			m->count++;
			return &m->slots[i];
		}
	}
}

int sb__idmap_put(struct sb__idmap *m, uint64_t key, uint64_t val)
{
	struct sb__idslot *s = slot_for(m, key);
	if (s == NULL)
		return SB_ENOMEM;
	s->val = val;
	return 0;
}

int sb__idmap_put_new(struct sb__idmap *m, uint64_t key, uint64_t val, uint64_t *old)
{
	uint32_t count = m->count; /* growing re-counts to the same number */
	struct sb__idslot *s = slot_for(m, key);
	if (s == NULL)
		return SB_ENOMEM;
	if (m->count == count) {
		*old = s->val;
		return 1;
	}
	s->val = val;
	return 0;
}

uint64_t sb__idmap_add(struct sb__idmap *m, uint64_t key, int64_t delta)
{
	struct sb__idslot *s = slot_for(m, key);
	return s != NULL ? s->val += (uint64_t)delta : 0;
}

uint64_t sb__idmap_get(const struct sb__idmap *m, uint64_t key)
{
	if (m->slots == NULL)
		return 0;
	for (uint32_t i = home(m, key);; i = (i + 1) & m->mask) {
		if (m->slots[i].key == key)
			return m->slots[i].val;
		if (m->slots[i].key == 0)
			return 0;
	}
}

void sb__idmap_del(struct sb__idmap *m, uint64_t key)
{
	uint32_t i;

	if (m->slots == NULL)
		return;
	for (i = home(m, key); m->slots[i].key != key; i = (i + 1) & m->mask)
		if (m->slots[i].key == 0)
			return;
	/* Shift back every later entry of the run that may sit past its home. */
	for (uint32_t j = (i + 1) & m->mask; m->slots[j].key != 0; j = (j + 1) & m->mask) {
		uint32_t h = home(m, m->slots[j].key);
		/* Entry j may move to i only if its home is not in (i, j]. */
		if (((j - h) & m->mask) >= ((j - i) & m->mask)) {
			m->slots[i] = m->slots[j];
			i = j;
		}
	}
	m->slots[i].key = 0;
	m->count--;
}
