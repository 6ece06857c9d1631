/* Route table replica: a hash of names to endpoint arrays. Lookups run per
 * routed frame and touch one slot and one contiguous array. An index of
 * each endpoint's routes lets a departure visit only those. */
#include <stdlib.h>
#include <string.h>

#include <switchboard/error.h>

#include "router/route.h"

/* One endpoint's routes in a table (sb__routes.by_ep), in no order: the
 * endpoint's entry in route r[k] has at == k, so an UNREGISTER takes its
 * route off the list in O(1), and a departure visits only these. */
struct sb__ep_routes {
	uint32_t n, cap;
	struct sb__route *r[];
};

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
	sb__idmap_init(&t->by_ep);
	t->by_ep_on = 0;
}

/* Whether ep is a handler on the table's own shard (on_here counts them). */
static int is_here(const struct sb__routes *t, uint64_t ep)
{
	unsigned where = (unsigned)(ep >> 56);
	return where == t->here || where == t->everywhere;
}

static struct sb__ep_routes *routes_of(const struct sb__routes *t, uint64_t ep)
{
	return (struct sb__ep_routes *)(uintptr_t)sb__idmap_get(&t->by_ep, ep);
}

void sb__routes_destroy(struct sb__routes *t)
{
	for (uint32_t i = 0; t->slots != NULL && i <= t->mask; i++)
		if (t->slots[i] != NULL) {
			for (uint32_t k = 0; k < t->slots[i]->n; k++) {
				uint64_t ep = t->slots[i]->eps[k].ep;
				sb__schema_unref(t->slots[i]->eps[k].schema);
				free(routes_of(t, ep)); /* once: its entry goes with it */
				sb__idmap_del(&t->by_ep, ep);
			}
			free(t->slots[i]->eps);
			free(t->slots[i]);
		}
	free(t->slots);
	sb__idmap_destroy(&t->by_ep);
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

/* Puts r on ep's list and tells e its place there. A full list is copied
 * into a larger one, not realloc'ed: the map's value must stay valid if
 * replacing it fails. */
static int index_add(struct sb__routes *t, uint64_t ep, struct sb__route *r, struct sb__endpoint *e)
{
	struct sb__ep_routes *l = routes_of(t, ep);
	if (l == NULL || l->n == l->cap) {
		uint32_t cap = l == NULL ? 4 : l->cap * 2;
		struct sb__ep_routes *nl = malloc(sizeof *nl + cap * sizeof nl->r[0]);
		if (nl == NULL)
			return SB_ENOMEM;
		nl->n = l == NULL ? 0 : l->n;
		nl->cap = cap;
		if (l != NULL)
			memcpy(nl->r, l->r, l->n * sizeof l->r[0]);
		if (sb__idmap_put(&t->by_ep, ep, (uint64_t)(uintptr_t)nl) != 0) {
			free(nl);
			return SB_ENOMEM;
		}
		free(l);
		l = nl;
	}
	e->at = l->n;
	l->r[l->n++] = r;
	return 0;
}

/* Takes r (at place k) off ep's list; the last one takes its place. */
static void index_del(struct sb__routes *t, uint64_t ep, uint32_t k)
{
	struct sb__ep_routes *l = routes_of(t, ep);
	struct sb__route *last = l->r[--l->n];
	if (k != l->n) {
		l->r[k] = last;
		sb__route_endpoint(last, ep)->at = k;
	}
	if (l->n == 0) {
		free(l);
		sb__idmap_del(&t->by_ep, ep);
	}
}

/* Empties slot i and re-seats the rest of its probe run. */
static void unseat(struct sb__routes *t, uint32_t i)
{
	t->slots[i] = NULL;
	t->count--;
	for (uint32_t j = (i + 1) & t->mask; t->slots[j] != NULL; j = (j + 1) & t->mask) {
		struct sb__route *r = t->slots[j];
		t->slots[j] = NULL;
		t->slots[find_slot(t, r->name, r->len, r->hash)] = r;
	}
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
		if (eps == NULL)
			goto nomem;
		r->eps = eps;
		r->cap = cap;
	}
	e = &r->eps[r->n];
	*e = (struct sb__endpoint){.ep = ep, .schema = schema, .flags = flags};
	if (t->by_ep_on && index_add(t, ep, r, e) != 0)
		goto nomem;
	r->n++;
	if (r->n == 1 && t->on_new != NULL)
		t->on_new(t->drop_ctx, r);
	if (is_here(t, ep) && ++r->nhere == 1 && t->on_here != NULL)
		t->on_here(t->drop_ctx, r, 1);
	return 0;
nomem:
	sb__schema_unref(schema);
	if (r->n == 0) { /* made above: nobody has seen it */
		free(r->eps);
		free(r);
		unseat(t, i);
	}
	return SB_ENOMEM;
}

/* Removes the route at slot i and re-seats the rest of its probe run. */
static void drop_route(struct sb__routes *t, uint32_t i)
{
	if (t->on_drop != NULL)
		t->on_drop(t->drop_ctx, t->slots[i]);
	free(t->slots[i]->eps);
	free(t->slots[i]);
	unseat(t, i);
}

/* Takes entry e (of ep) off route r, found at slot i, and r off the
 * table if that was its last (ep's list is the caller's). */
static void take_off(struct sb__routes *t, uint32_t i, struct sb__route *r, struct sb__endpoint *e,
		     uint64_t ep)
{
	sb__schema_unref(e->schema);
	*e = r->eps[--r->n];
	if (is_here(t, ep) && --r->nhere == 0 && t->on_here != NULL)
		t->on_here(t->drop_ctx, r, 0);
	if (r->n == 0)
		drop_route(t, i);
}

static int del_at(struct sb__routes *t, uint32_t i, uint64_t ep)
{
	struct sb__route *r = t->slots[i];
	struct sb__endpoint *e = sb__route_endpoint(r, ep);
	if (e == NULL)
		return 0;
	if (t->by_ep_on)
		index_del(t, ep, e->at);
	take_off(t, i, r, e, ep);
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
	if (t->by_ep_on) {
		struct sb__ep_routes *l = routes_of(t, ep);
		if (l == NULL)
			return;
		sb__idmap_del(&t->by_ep, ep);
		for (uint32_t k = 0; k < l->n; k++) {
			struct sb__route *r = l->r[k];
			take_off(t, find_slot(t, r->name, r->len, r->hash), r,
				 sb__route_endpoint(r, ep), ep);
		}
		free(l);
		return;
	}
	/* After a removal, look at the same slot again: drop_route() may have
	 * re-seated a not yet visited route into it. */
	for (uint32_t i = 0; t->slots != NULL && i <= t->mask;) {
		if (t->slots[i] != NULL && del_at(t, i, ep))
			continue;
		i++;
	}
}
