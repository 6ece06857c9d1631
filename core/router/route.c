/* Route table replica: a hash of names to endpoint arrays. Lookups run per
 * routed frame and touch one slot and one contiguous array. */
#include <stdlib.h>
#include <string.h>

#include <switchboard/error.h>

#include "router/route.h"

/* Eight bytes a step: a byte-at-a-time hash (FNV-1a) was a chain of one
 * multiply per character, and every routed frame hashes its name. */
static uint64_t fold(uint64_t h, uint64_t w)
{
	h = (h ^ w) * 0xff51afd7ed558ccdull;
	return h ^ h >> 32;
}

static uint32_t hash(const void *name, uint32_t len)
{
	const uint8_t *p = name;
	uint64_t h = 0x9e3779b97f4a7c15ull ^ len, w;
	for (; len >= 8; p += 8, len -= 8) {
		memcpy(&w, p, 8);
		h = fold(h, w);
	}
	if (len >= 4) { /* the tail as two overlapping 4-byte reads */
		uint32_t a, b;
		memcpy(&a, p, 4);
		memcpy(&b, p + len - 4, 4);
		h = fold(h, (uint64_t)a << 32 | b);
	} else if (len > 0) {
		h = fold(h, (uint64_t)p[0] << 16 | (uint64_t)p[len / 2] << 8 | p[len - 1]);
	}
	return (uint32_t)(fold(h, 0) >> 32);
}

void sb__routes_init(struct sb__routes *t)
{
	t->slots = NULL;
	t->mask = 0;
	t->count = 0;
	t->on_drop = NULL;
	t->drop_ctx = NULL;
	t->on_new = NULL;
	t->on_here = NULL;
	t->here = t->everywhere = 0;
}

/* Whether ep is a handler on the table's own shard (on_here counts them). */
static int is_here(const struct sb__routes *t, uint64_t ep)
{
	unsigned where = (unsigned)(ep >> 56);
	return where == t->here || where == t->everywhere;
}

void sb__routes_destroy(struct sb__routes *t)
{
	for (uint32_t i = 0; t->slots != NULL && i <= t->mask; i++)
		if (t->slots[i] != NULL) {
			for (uint32_t k = 0; k < t->slots[i]->n; k++)
				sb__schema_unref(t->slots[i]->eps[k].schema);
			free(t->slots[i]->eps);
			free(t->slots[i]);
		}
	free(t->slots);
	sb__routes_init(t);
}

static uint32_t find_slot(const struct sb__routes *t, const void *name, uint32_t len, uint32_t h)
{
	for (uint32_t i = h & t->mask;; i = (i + 1) & t->mask) {
		struct sb__route *r = t->slots[i];
		if (r == NULL || (r->hash == h && r->len == len && memcmp(r->name, name, len) == 0))
			return i;
	}
}

struct sb__route *sb__routes_find(const struct sb__routes *t, const void *name, uint32_t len)
{
	if (t->slots == NULL)
		return NULL;
	return t->slots[find_slot(t, name, len, hash(name, len))];
}

static int grow(struct sb__routes *t)
{
	uint32_t n = t->slots == NULL ? 64 : (t->mask + 1) * 2;
	struct sb__route **old = t->slots;
	uint32_t old_n = old == NULL ? 0 : t->mask + 1;
	struct sb__route **s = calloc(n, sizeof *s);

	if (s == NULL)
		return SB_ENOMEM;
	t->slots = s;
	t->mask = n - 1;
	for (uint32_t i = 0; i < old_n; i++)
		if (old[i] != NULL)
			s[find_slot(t, old[i]->name, old[i]->len, old[i]->hash)] = old[i];
	free(old);
	return 0;
}

struct sb__endpoint *sb__route_endpoint(struct sb__route *r, uint64_t ep)
{
	for (uint32_t i = 0; i < r->n; i++)
		if (r->eps[i].ep == ep)
			return &r->eps[i];
	return NULL;
}

int sb__routes_add(struct sb__routes *t, const void *name, uint32_t len, uint64_t ep,
		   uint32_t flags, struct sb__schema *schema)
{
	uint32_t h = hash(name, len);

	if ((t->count + 1) * 2 > (t->slots == NULL ? 0 : t->mask + 1) && grow(t) != 0)
		return SB_ENOMEM;
	uint32_t i = find_slot(t, name, len, h);
	struct sb__route *r = t->slots[i];
	if (r == NULL) {
		r = calloc(1, sizeof *r + len);
		if (r == NULL)
			return SB_ENOMEM;
		r->hash = h;
		r->len = len;
		memcpy(r->name, name, len);
		t->slots[i] = r;
		t->count++;
	}
	struct sb__endpoint *e = sb__route_endpoint(r, ep);
	if (schema != NULL)
		sb__schema_ref(schema);
	if (e != NULL) {
		sb__schema_unref(e->schema);
		e->flags = flags;
		e->schema = schema;
		return 0;
	}
	if (r->n == r->cap) {
		uint32_t cap = r->cap ? r->cap * 2 : 4;
		struct sb__endpoint *eps = realloc(r->eps, cap * sizeof *eps);
		if (eps == NULL) {
			sb__schema_unref(schema);
			return SB_ENOMEM;
		}
		r->eps = eps;
		r->cap = cap;
	}
	r->eps[r->n++] = (struct sb__endpoint){.ep = ep, .schema = schema, .flags = flags};
	if (r->n == 1 && t->on_new != NULL)
		t->on_new(t->drop_ctx, r);
	if (is_here(t, ep) && ++r->nhere == 1 && t->on_here != NULL)
		t->on_here(t->drop_ctx, r, 1);
	return 0;
}

/* Removes the route at slot i and re-seats the rest of its probe run. */
static void drop_route(struct sb__routes *t, uint32_t i)
{
	if (t->on_drop != NULL)
		t->on_drop(t->drop_ctx, t->slots[i]);
	free(t->slots[i]->eps);
	free(t->slots[i]);
	t->slots[i] = NULL;
	t->count--;
	for (uint32_t j = (i + 1) & t->mask; t->slots[j] != NULL; j = (j + 1) & t->mask) {
		struct sb__route *r = t->slots[j];
		t->slots[j] = NULL;
		t->slots[find_slot(t, r->name, r->len, r->hash)] = r;
	}
}

static int del_at(struct sb__routes *t, uint32_t i, uint64_t ep)
{
	struct sb__route *r = t->slots[i];
	struct sb__endpoint *e = sb__route_endpoint(r, ep);
	if (e == NULL)
		return 0;
	sb__schema_unref(e->schema);
	*e = r->eps[--r->n];
	if (is_here(t, ep) && --r->nhere == 0 && t->on_here != NULL)
		t->on_here(t->drop_ctx, r, 0);
	if (r->n == 0)
		drop_route(t, i);
	return 1;
}

int sb__routes_del(struct sb__routes *t, const void *name, uint32_t len, uint64_t ep)
{
	if (t->slots == NULL)
		return 0;
	uint32_t i = find_slot(t, name, len, hash(name, len));
	return t->slots[i] != NULL ? del_at(t, i, ep) : 0;
}

void sb__routes_del_ep(struct sb__routes *t, uint64_t ep)
{
	/* After a removal, look at the same slot again: drop_route() may have
	 * re-seated a not yet visited route into it. */
	for (uint32_t i = 0; t->slots != NULL && i <= t->mask;) {
		if (t->slots[i] != NULL && del_at(t, i, ep))
			continue;
		i++;
	}
}
