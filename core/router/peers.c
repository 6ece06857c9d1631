/* The peer directory. Names are claimed in one router-wide table under a
 * lock, at the handshake only; each shard then learns of the peer by mail
 * (PEER_UP, PEER_DOWN, PEER_DRAIN from the peer's own shard, applied there
 * at once) and answers `to`, broadcast names, presence and identity from
 * its replica without a lock. The replica can lag behind the table, never
 * run ahead of it, so a hit in it is trusted and only a miss asks the
 * table: a peer that just got its WELCOME is addressable from every shard
 * at once, and "unknown peer" is never said of a name that is taken. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/hmac.h"
#include "proto/mp.h"
#include "router/peers.h"
#include "router/cluster.h"
#include "router/cluster_presence.h"
#include "router/conn.h"
#include "router/mail.h"
#include "router/outq.h"
#include "router/shard.h"

/* ---- name -> peer map --------------------------------------------------- */

/* FNV-1a: names are at most 64 bytes, and the map is probed per `to`, not
 * per routed frame. */
static uint32_t name_hash(const void *name, uint32_t len)
{
	const uint8_t *p = name;
	uint32_t h = 2166136261u;
	for (uint32_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 16777619u;
	return h;
}

/* The slot holding the name, or the empty slot where it would go. */
static struct sb__peer **pm_slot(const struct sb__peermap *m, const void *name, uint32_t len,
				 uint32_t h)
{
	for (uint32_t i = h & m->mask;; i = (i + 1) & m->mask) {
		struct sb__peer *p = m->slots[i];
		if (p == NULL || (p->hash == h && p->len == len && memcmp(p->name, name, len) == 0))
			return &m->slots[i];
	}
}

static struct sb__peer *pm_find(const struct sb__peermap *m, const void *name, uint32_t len)
{
	if (m->slots == NULL)
		return NULL;
	return *pm_slot(m, name, len, name_hash(name, len));
}

static int pm_grow(struct sb__peermap *m)
{
	uint32_t n = m->slots == NULL ? 64 : (m->mask + 1) * 2;
	uint32_t old_n = m->slots == NULL ? 0 : m->mask + 1;
	struct sb__peer **old = m->slots, **s = calloc(n, sizeof *s);

	if (s == NULL)
		return SB_ENOMEM;
	m->slots = s;
	m->mask = n - 1;
	for (uint32_t i = 0; i < old_n; i++)
		if (old[i] != NULL)
			*pm_slot(m, old[i]->name, old[i]->len, old[i]->hash) = old[i];
	free(old);
	return 0;
}

/* Inserts p, whose name is not in the map. @return 0 or SB_ENOMEM */
static int pm_put(struct sb__peermap *m, struct sb__peer *p)
{
	if ((m->count + 1) * 2 > (m->slots == NULL ? 0 : m->mask + 1) && pm_grow(m) != 0)
		return SB_ENOMEM;
	*pm_slot(m, p->name, p->len, p->hash) = p;
	m->count++;
	return 0;
}

/* Removes p's slot and re-seats the rest of its probe run. */
static void pm_del(struct sb__peermap *m, const struct sb__peer *p)
{
	struct sb__peer **s = pm_slot(m, p->name, p->len, p->hash);
	uint32_t i = (uint32_t)(s - m->slots);

	if (*s != p)
		return;
	*s = NULL;
	m->count--;
	for (uint32_t j = (i + 1) & m->mask; m->slots[j] != NULL; j = (j + 1) & m->mask) {
		struct sb__peer *q = m->slots[j];
		m->slots[j] = NULL;
		*pm_slot(m, q->name, q->len, q->hash) = q;
	}
}

static void pm_destroy(struct sb__peermap *m)
{
	free(m->slots);
	m->slots = NULL;
	m->mask = m->count = 0;
}

static void peer_free(struct sb__peer *p)
{
	if (p->ident != NULL)
		sb__buf_put(p->ident, NULL);
	free(p->subject);
	free(p->claims);
	free(p);
}

/* ---- naming pattern ----------------------------------------------------- */

/* The first '#' and the length of its run. */
static const char *pattern_run(const char *p, size_t *run)
{
	const char *h = strchr(p, '#');
	*run = h != NULL ? strspn(h, "#") : 0;
	return h;
}

int sb__name_pattern_ok(const char *p)
{
	char probe[SB_PEER_MAX + 1];
	size_t run, n = p != NULL ? strlen(p) : 0;
	const char *h = p != NULL ? pattern_run(p, &run) : NULL;

	/* A second run would repeat the counter to no purpose: refused, so a
	 * pattern means one thing. A uint32 counter takes up to 10 digits. */
	if (h == NULL || strchr(h + run, '#') != NULL ||
	    n - run + (run > 10 ? run : 10) > SB_PEER_MAX)
		return 0;
	for (size_t i = 0; i <= n; i++)
		probe[i] = p[i] == '#' ? '0' : p[i];
	/* The codec checks the characters the way it checks a HELLO's name. */
	struct sb_msg hello = {.kind = SB_HELLO, .version = SB_PROTO_VERSION};
	hello.peer = (struct sb_view){(const uint8_t *)probe, (uint32_t)n};
	hello.role = (struct sb_view){(const uint8_t *)"client", 6};
	return sb_encoded_size(&hello) > 0;
}

static uint32_t format_name(const char *pattern, uint32_t counter, char *out)
{
	size_t run;
	const char *h = pattern_run(pattern, &run);
	int n = snprintf(out, SB_PEER_MAX + 1, "%.*s%0*u%s", (int)(h - pattern), pattern, (int)run,
			 counter, h + run);
	return n > 0 && n <= (int)SB_PEER_MAX ? (uint32_t)n : 0;
}

/* ---- the router-wide table ---------------------------------------------- */

int sb__dir_init(struct sb__dir *d, const char *pattern, uint32_t grace_ms)
{
	memset(d, 0, sizeof *d);
	sb__link_init(&d->tombs);
	d->counter = d->next_id = 1;
	d->grace_ms = grace_ms;
	d->pattern = strdup(pattern != NULL ? pattern : SB__PATTERN_DEFAULT);
	return d->pattern != NULL ? 0 : SB_ENOMEM;
}

void sb__dir_destroy(struct sb__dir *d)
{
	for (uint32_t i = 0; d->names.slots != NULL && i <= d->names.mask; i++)
		if (d->names.slots[i] != NULL)
			peer_free(d->names.slots[i]);
	pm_destroy(&d->names);
	free(d->pattern);
	d->pattern = NULL;
}

/* A gone peer's name still kept for its token. */
static int held(const struct sb__peer *p, uint64_t now)
{
	return p->ep == 0 && p->held_until > now;
}

/* Whether c showed the token of p, the name's last holder. */
static int owner(const struct sb__conn *c, const struct sb__peer *p)
{
	return p->tokened && c->pr.has_resume &&
	       sb__hmac_equal(c->pr.resume, p->token, SB__RESUME_LEN);
}

/* Takes a name for c: the one it asked for, or the pattern's next free one.
 * Tombstones give way: a name is unique among connected peers only, but
 * within its grace an assigned name of a gone peer goes to its token only.
 * A name a peer chose without a token is never held: that peer restarted
 * asks for it again, with no token to show, and must get it. A peer that
 * shows a token takes part (a router restarted since knows none of them),
 * so every claim of an assigned name or by a token gets a fresh token
 * (the one shown dies with it).
 * @return 0, SB_EDUPNAME, SB_EOVERLOADED (c showed the token of a holder
 *         still connected: its close has not been seen yet), SB_ENOMEM */
static int dir_claim(struct sb_router *r, struct sb_view wanted, struct sb__conn *c, char *why)
{
	struct sb__dir *d = &r->dir;
	char name[SB_PEER_MAX + 1];
	uint32_t len;
	struct sb__peer *p;
	uint64_t now = sb__now_ms();
	int rc = 0;

	pthread_mutex_lock(&r->names_lock);
	if (wanted.ptr != NULL) {
		len = wanted.len;
		memcpy(name, wanted.ptr, len);
		name[len] = 0;
		p = pm_find(&d->names, name, len);
		if (p != NULL && p->ep != 0) {
			rc = owner(c, p) ? SB_EOVERLOADED : SB_EDUPNAME;
			snprintf(why, SB__WHY_MAX, "%s",
				 rc == SB_EDUPNAME
					 ? "a connected peer already has this name"
					 : "this name's previous connection has not closed "
					   "yet: try again");
			goto out;
		}
		if (p != NULL && held(p, now) && !owner(c, p)) {
			rc = SB_EDUPNAME;
			snprintf(why, SB__WHY_MAX,
				 "this name is held for the peer that had it (%llu ms more) and "
				 "only its resume token takes it",
				 (unsigned long long)(p->held_until - now));
			goto out;
		}
	} else {
		/* Ends: at most one try per connected or held name of the
		 * pattern's form, plus one. */
		do {
			len = format_name(d->pattern, d->counter, name);
			d->counter = d->counter == UINT32_MAX ? 1 : d->counter + 1;
			p = len > 0 ? pm_find(&d->names, name, len) : NULL;
		} while (len == 0 || (p != NULL && (p->ep != 0 || held(p, now))));
	}
	/* Held if lost: from the pattern (here, or picked by the cluster's
	 * claim: sb__peers_next_name()), or asked for with a token. */
	int assigned = wanted.ptr == NULL || c->pr.has_resume || c->pr.pattern;
	if (p == NULL) {
		if ((p = calloc(1, sizeof *p)) == NULL) {
			rc = SB_ENOMEM;
			snprintf(why, SB__WHY_MAX, "out of memory");
			goto out;
		}
		memcpy(p->name, name, len + 1);
		p->len = len;
		p->hash = name_hash(name, len);
		sb__link_init(&p->link);
		if (pm_put(&d->names, p) != 0) {
			free(p);
			rc = SB_ENOMEM;
			snprintf(why, SB__WHY_MAX, "out of memory");
			goto out;
		}
	} else { /* the name of a peer that left */
		sb__link_del(&p->link);
		d->ntombs--;
		free(p->subject);
		p->subject = NULL;
		free(p->claims);
		p->claims = NULL;
		p->claims_len = 0;
		p->draining = 0;
		p->held_until = 0;
	}
	/* Without randomness there is no token: the name is simply not held. */
	c->pr.has_token =
		assigned && d->grace_ms > 0 && sb__hmac_nonce(p->token, SB__RESUME_LEN) == 0;
	p->tokened = c->pr.has_token;
	if (!c->pr.has_token)
		memset(p->token, 0, sizeof p->token);
	memcpy(c->pr.token, p->token, SB__RESUME_LEN);
	p->ep = c->ep;
	p->service = c->service;
	p->peer_id = d->next_id;
	d->next_id = d->next_id == UINT32_MAX ? 1 : d->next_id + 1;
	if (c->pr.subject != NULL)
		p->subject = strdup(c->pr.subject); /* NULL on failure: shown without it */
	if (c->pr.claims != NULL && (p->claims = malloc(c->pr.claims_len)) != NULL) {
		memcpy(p->claims, c->pr.claims, c->pr.claims_len); /* or shown without */
		p->claims_len = c->pr.claims_len;
	}
	c->peer_id = p->peer_id;
	memcpy(c->name, name, len + 1);
out:
	pthread_mutex_unlock(&r->names_lock);
	return rc;
}

uint32_t sb__peers_next_name(struct sb_router *r, uint32_t skip, char *out)
{
	struct sb__dir *d = &r->dir;
	uint64_t now = sb__now_ms();
	struct sb__peer *p;
	uint32_t len;

	pthread_mutex_lock(&r->names_lock);
	d->counter = d->counter > UINT32_MAX - skip ? 1 : d->counter + skip;
	/* Ends as dir_claim()'s loop does. */
	do {
		len = format_name(d->pattern, d->counter, out);
		d->counter = d->counter == UINT32_MAX ? 1 : d->counter + 1;
		p = len > 0 ? pm_find(&d->names, out, len) : NULL;
	} while (len == 0 || (p != NULL && (p->ep != 0 || held(p, now))));
	pthread_mutex_unlock(&r->names_lock);
	return len;
}

/* @return how long the name is held for c's token (ms), 0 if not */
static uint32_t dir_release(struct sb_router *r, const struct sb__conn *c)
{
	struct sb__dir *d = &r->dir;
	uint32_t hold = 0;

	pthread_mutex_lock(&r->names_lock);
	struct sb__peer *p = pm_find(&d->names, c->name, (uint32_t)strlen(c->name));
	if (p != NULL && p->ep == c->ep) {
		p->ep = 0;
		/* Held for a welcomed connection that was lost, not for a peer
		 * that said GOODBYE (it is not coming back), an HTTP call (no
		 * name of its own to come back to), or a handshake refused
		 * after the claim (the cluster's). */
		p->held_until =
			c->pr.has_token && c->ready && !p->draining && c->xport != SB__XPORT_HTTP
				? sb__now_ms() + d->grace_ms
				: 0;
		hold = p->held_until != 0 ? d->grace_ms : 0;
		sb__link_add_tail(&d->tombs, &p->link);
		if (++d->ntombs > SB__TOMBS_MAX) {
			struct sb__peer *old = SB__CONTAINER(d->tombs.next, struct sb__peer, link);
			sb__link_del(&old->link);
			pm_del(&d->names, old);
			peer_free(old);
			d->ntombs--;
		}
	}
	pthread_mutex_unlock(&r->names_lock);
	return hold;
}

/* The table's answer for a name the replica does not have; *leaving says
 * a connected peer said GOODBYE. */
static int dir_lookup(struct sb_router *r, struct sb_view name, uint64_t *ep, int *leaving)
{
	int rc;

	pthread_mutex_lock(&r->names_lock);
	struct sb__peer *p = pm_find(&r->dir.names, name.ptr, name.len);
	rc = p == NULL ? SB_EUNKNOWNPEER : p->ep == 0 ? SB_ENOTCONNECTED : 0;
	*leaving = rc == 0 && p->draining;
	if (rc == 0)
		*ep = p->ep;
	pthread_mutex_unlock(&r->names_lock);
	return rc;
}

/* A peer that said GOODBYE, for `to` lookups that miss the replica. */
static void dir_drain(struct sb_router *r, const struct sb__conn *c)
{
	pthread_mutex_lock(&r->names_lock);
	struct sb__peer *p = pm_find(&r->dir.names, c->name, (uint32_t)strlen(c->name));
	if (p != NULL && p->ep == c->ep)
		p->draining = 1;
	pthread_mutex_unlock(&r->names_lock);
}

uint32_t sb__peers_new_id(struct sb_router *r)
{
	pthread_mutex_lock(&r->names_lock);
	uint32_t id = r->dir.next_id;
	r->dir.next_id = id == UINT32_MAX ? 1 : id + 1;
	pthread_mutex_unlock(&r->names_lock);
	return id;
}

int sb__dir_list(struct sb_router *r, struct sb__peer_info **v, uint32_t *n)
{
	const struct sb__peermap *m = &r->dir.names;
	int rc = 0;

	*n = 0;
	pthread_mutex_lock(&r->names_lock);
	*v = calloc(m->count + 1, sizeof **v);
	for (uint32_t i = 0; *v != NULL && m->slots != NULL && i <= m->mask; i++) {
		const struct sb__peer *p = m->slots[i];
		if (p == NULL || p->ep == 0)
			continue;
		struct sb__peer_info *e = &(*v)[(*n)++];
		memcpy(e->name, p->name, p->len + 1);
		e->ep = p->ep;
		e->peer_id = p->peer_id;
		e->service = p->service;
		if (p->subject != NULL && (e->subject = strdup(p->subject)) == NULL)
			rc = SB_ENOMEM;
		if (p->claims != NULL && (e->claims = malloc(p->claims_len)) == NULL)
			rc = SB_ENOMEM;
		else if (p->claims != NULL) {
			memcpy(e->claims, p->claims, p->claims_len);
			e->claims_len = p->claims_len;
		}
	}
	pthread_mutex_unlock(&r->names_lock);
	return *v != NULL ? rc : SB_ENOMEM;
}

void sb__dir_list_free(struct sb__peer_info *v, uint32_t n)
{
	for (uint32_t i = 0; v != NULL && i < n; i++) {
		free(v[i].subject);
		free(v[i].claims);
	}
	free(v);
}

/* ---- a shard's replica -------------------------------------------------- */

void sb__replica_init(struct sb__replica *t)
{
	memset(t, 0, sizeof *t);
	sb__link_init(&t->all);
	sb__idmap_init(&t->by_id);
	sb__idmap_init(&t->by_ep);
}

void sb__replica_destroy(struct sb__replica *t)
{
	while (!sb__link_empty(&t->all)) {
		struct sb__peer *p = SB__CONTAINER(t->all.next, struct sb__peer, link);
		sb__link_del(&p->link);
		peer_free(p);
	}
	pm_destroy(&t->names);
	sb__idmap_destroy(&t->by_id);
	sb__idmap_destroy(&t->by_ep);
	free(t->subs);
	t->subs = NULL;
	t->nsubs = t->subs_cap = 0;
}

static struct sb__peer *by_id(const struct sb__replica *t, uint32_t id)
{
	return (struct sb__peer *)(uintptr_t)sb__idmap_get(&t->by_id, id);
}

const struct sb__peer *sb__peers_by_id(const struct sb__shard *sh, uint32_t id)
{
	return by_id(&sh->peers, id);
}

static struct sb__peer *by_ep(const struct sb__replica *t, uint64_t ep)
{
	return (struct sb__peer *)(uintptr_t)sb__idmap_get(&t->by_ep, ep);
}

/* Takes over p. Mail from different shards may bring a name's new holder
 * before the old one's PEER_DOWN: the larger peer_id is the newer one. */
static void rep_add(struct sb__replica *t, struct sb__peer *p)
{
	if (sb__idmap_put(&t->by_id, p->peer_id, (uintptr_t)p) != 0 ||
	    sb__idmap_put(&t->by_ep, p->ep, (uintptr_t)p) != 0) {
		/* Out of memory: without the record, lookups of this peer fall
		 * back to the router-wide table, which is slower but right. */
		sb__idmap_del(&t->by_id, p->peer_id);
		peer_free(p);
		return;
	}
	sb__link_add_tail(&t->all, &p->link);
	struct sb__peer *old = pm_find(&t->names, p->name, p->len);
	if (old == NULL)
		pm_put(&t->names, p); /* on failure: found by the table instead */
	else if (old->peer_id < p->peer_id)
		*pm_slot(&t->names, p->name, p->len, p->hash) = p;
}

static void rep_del(struct sb__replica *t, struct sb__peer *p)
{
	if (pm_find(&t->names, p->name, p->len) == p)
		pm_del(&t->names, p);
	sb__idmap_del(&t->by_id, p->peer_id);
	sb__idmap_del(&t->by_ep, p->ep);
	sb__link_del(&p->link);
	peer_free(p);
}

/* A record of c for one shard's replica. */
static struct sb__peer *record_of(const struct sb__conn *c)
{
	struct sb__peer *p = calloc(1, sizeof *p);

	if (p == NULL)
		return NULL;
	p->ep = c->ep;
	p->peer_id = c->peer_id;
	p->service = c->service;
	p->len = (uint32_t)strlen(c->name);
	memcpy(p->name, c->name, p->len + 1);
	p->hash = name_hash(p->name, p->len);
	sb__link_init(&p->link);
	if (c->pr.subject != NULL && (p->subject = strdup(c->pr.subject)) == NULL) {
		free(p);
		return NULL;
	}
	if (c->pr.claims != NULL) {
		if ((p->claims = malloc(c->pr.claims_len)) == NULL) {
			free(p->subject);
			free(p);
			return NULL;
		}
		memcpy(p->claims, c->pr.claims, c->pr.claims_len);
		p->claims_len = c->pr.claims_len;
	}
	return p;
}

/* ---- events ------------------------------------------------------------- */

/* The identity payload: {"role": ..., "subject": ..., "claims": {...}},
 * subject and claims only if any. The claims are the router's own copy of
 * a verified token's: nothing a peer sends reaches them. */
static size_t ident_payload(const struct sb__peer *p, uint8_t *out)
{
	size_t n = 0;
	const char *role = p->service ? "service" : "client";

	out[n++] = (uint8_t)(0x81 + (p->subject != NULL) + (p->claims != NULL));
	out[n++] = 0xa4;
	memcpy(out + n, "role", 4);
	n += 4;
	out[n++] = (uint8_t)(0xa0 | strlen(role));
	memcpy(out + n, role, strlen(role));
	n += strlen(role);
	if (p->subject != NULL) {
		size_t len = strlen(p->subject); /* at most SB_TEXT_MAX */
		out[n++] = 0xa7;
		memcpy(out + n, "subject", 7);
		n += 7;
		if (len < 32) {
			out[n++] = (uint8_t)(0xa0 | len);
		} else if (len < 256) {
			out[n++] = 0xd9;
			out[n++] = (uint8_t)len;
		} else {
			out[n++] = 0xda;
			out[n++] = (uint8_t)(len >> 8);
			out[n++] = (uint8_t)len;
		}
		memcpy(out + n, p->subject, len);
		n += len;
	}
	if (p->claims != NULL) {
		out[n++] = 0xa6;
		memcpy(out + n, "claims", 6);
		n += 6;
		memcpy(out + n, p->claims, p->claims_len);
		n += p->claims_len;
	}
	return n;
}

/* A PRESENCE frame about p in a heap buffer holding one reference. */
struct sb__buf *sb__peers_frame(const struct sb__peer *p, unsigned event, uint32_t *len)
{
	uint8_t pl[48 + SB_TEXT_MAX + SB__PEERS_CLAIMS_MAX];
	struct sb_msg m = {.kind = SB_PRESENCE, .event = event, .peer_id = p->peer_id};

	m.peer = (struct sb_view){(const uint8_t *)p->name, p->len};
	m.payload = (struct sb_view){pl, (uint32_t)ident_payload(p, pl)};
	long n = sb_encoded_size(&m);
	struct sb__buf *b = n > 0 ? sb__buf_heap((size_t)n) : NULL;
	if (b == NULL)
		return NULL;
	sb_encode(&m, b->data, (size_t)n);
	*len = (uint32_t)n;
	return b;
}

void sb__peers_emit(struct sb__shard *sh, uint64_t about, struct sb__buf *b, uint32_t len)
{
	struct sb__replica *t = &sh->peers;
	uint32_t n = t->nsubs;

	/* A copy: queueing may drop a slow subscriber, which edits the list. */
	uint64_t *subs = n > 0 ? malloc(n * sizeof *subs) : NULL;
	if (subs == NULL)
		return;
	memcpy(subs, t->subs, n * sizeof *subs);
	for (uint32_t i = 0; i < n; i++) {
		struct sb__conn *c = subs[i] != about ? sb__conn_get(sh, subs[i]) : NULL;
		if (c == NULL)
			continue;
		sb__buf_get(b);
		sb__enqueue(sh, c, b, b->data, len);
	}
	free(subs);
}

/* Tells this shard's subscribers, one encoded frame shared by all. A peer
 * is not told about itself. */
static void presence_emit(struct sb__shard *sh, const struct sb__peer *p, unsigned event)
{
	uint32_t len;

	if (sh->peers.nsubs == 0)
		return;
	struct sb__buf *b = sb__peers_frame(p, event, &len);
	if (b == NULL)
		return;
	sb__peers_emit(sh, p->ep, b, len);
	sb__buf_put(b, &sh->pool);
}

static void apply_up(struct sb__shard *sh, struct sb__peer *p)
{
	uint64_t ep = p->ep;
	rep_add(&sh->peers, p);
	if ((p = by_ep(&sh->peers, ep)) != NULL)
		presence_emit(sh, p, SB_PEER_CONNECTED);
}

/* A peer is found by its peer_id alone (never reused): the PEER_MOVED of
 * a peer that moved shards (move.c) comes from the shard it left, so its
 * PEER_DOWN or PEER_DRAIN, from the shard it went to, may come first. */
static void apply_down(struct sb__shard *sh, uint64_t ep, uint32_t id)
{
	struct sb__peer *p = by_id(&sh->peers, id);
	(void)ep;
	if (p == NULL)
		return;
	presence_emit(sh, p, SB_PEER_DISCONNECTED);
	rep_del(&sh->peers, p);
}

static void apply_drain(struct sb__shard *sh, uint64_t ep, uint32_t id)
{
	struct sb__peer *p = by_id(&sh->peers, id);
	(void)ep;
	if (p == NULL || p->draining)
		return;
	p->draining = 1;
	presence_emit(sh, p, SB_PEER_DRAINING);
}

/* Tells every other shard; per-target FIFO keeps a peer's own changes in
 * order, and its frames behind its PEER_UP. */
static void publish(struct sb__shard *sh, const struct sb__conn *c, enum sb__mail_type type)
{
	for (unsigned to = 0; to < sh->r->nshards; to++) {
		if (to == sh->id)
			continue;
		struct sb__mail m = {.type = type, .a = c->peer_id, .b = c->ep, .c = c->nregs > 0};
		if (type == SB__MAIL_PEER_UP && (m.p = record_of(c)) == NULL)
			continue; /* that shard falls back to the router-wide table */
		sb__mail(sh, to, &m);
	}
}

int sb__peers_join(struct sb__shard *sh, struct sb__conn *c, struct sb_view wanted, char *why)
{
	int rc = dir_claim(sh->r, wanted, c, why);
	if (rc != 0)
		return rc;
	c->named = 1;
	if (sh->xs != NULL)
		sb__cluster_peer_up(sh, c);
	struct sb__peer *p = record_of(c);
	if (p != NULL)
		apply_up(sh, p);
	publish(sh, c, SB__MAIL_PEER_UP);
	if (sh->xs != NULL)
		sb__xpres_local(sh, c->peer_id, SB_PEER_CONNECTED);
	return 0;
}

static void sub_remove(struct sb__replica *t, uint64_t ep)
{
	for (uint32_t i = 0; i < t->nsubs; i++)
		if (t->subs[i] == ep) {
			t->subs[i] = t->subs[--t->nsubs];
			return;
		}
}

void sb__peers_leave(struct sb__shard *sh, struct sb__conn *c)
{
	if (c->pr.presence) {
		sub_remove(&sh->peers, c->ep);
		c->pr.presence = 0;
	}
	if (!c->named)
		return;
	uint32_t hold = dir_release(sh->r, c);
	if (sh->xs != NULL) {
		sb__cluster_peer_down(sh, c, hold);
		sb__xpres_local(sh, c->peer_id, SB_PEER_DISCONNECTED);
	}
	c->named = 0;
	apply_down(sh, c->ep, c->peer_id);
	publish(sh, c, SB__MAIL_PEER_DOWN);
}

void sb__peers_moved(struct sb__shard *sh, uint64_t old, uint64_t ep, uint32_t id)
{
	struct sb__peer *p = by_id(&sh->peers, id);
	if (p == NULL || p->ep != old)
		return; /* gone already, or never known here: the table has it */
	sb__idmap_del(&sh->peers.by_ep, old);
	p->ep = ep;
	if (sb__idmap_put(&sh->peers.by_ep, ep, (uintptr_t)p) != 0)
		rep_del(&sh->peers, p); /* out of memory: found by the table instead */
}

void sb__peers_dir_move(struct sb_router *r, const struct sb__conn *c, uint64_t old)
{
	pthread_mutex_lock(&r->names_lock);
	struct sb__peer *p = pm_find(&r->dir.names, c->name, (uint32_t)strlen(c->name));
	if (p != NULL && p->ep == old)
		p->ep = c->ep;
	pthread_mutex_unlock(&r->names_lock);
}

void sb__peers_drain(struct sb__shard *sh, struct sb__conn *c)
{
	if (!c->named)
		return;
	dir_drain(sh->r, c);
	apply_drain(sh, c->ep, c->peer_id);
	publish(sh, c, SB__MAIL_PEER_DRAIN);
	if (sh->xs != NULL)
		sb__xpres_local(sh, c->peer_id, SB_PEER_DRAINING);
}

void sb__peers_conn_free(struct sb__conn *c)
{
	sb__idmap_destroy(&c->pr.told);
	free(c->pr.subject);
	c->pr.subject = NULL;
	free(c->pr.claims);
	c->pr.claims = NULL;
}

int sb__peers_set_claims(struct sb__conn *c, const void *mp, size_t len)
{
	if (len > SB__PEERS_CLAIMS_MAX)
		return SB_ETOOLARGE;
	uint8_t *s = malloc(len > 0 ? len : 1);
	if (s == NULL)
		return SB_ENOMEM;
	memcpy(s, mp, len);
	free(c->pr.claims);
	c->pr.claims = s;
	c->pr.claims_len = (uint32_t)len;
	return 0;
}

int sb__peers_set_subject(struct sb__conn *c, const char *subject, size_t len)
{
	if (len > SB_TEXT_MAX)
		return SB_ETOOLARGE;
	char *s = malloc(len + 1);
	if (s == NULL)
		return SB_ENOMEM;
	memcpy(s, subject, len);
	s[len] = 0;
	free(c->pr.subject);
	c->pr.subject = s;
	return 0;
}

void sb__peers_on_mail(struct sb__shard *sh, const struct sb__mail *m)
{
	switch (m->type) {
	case SB__MAIL_PEER_UP:
		apply_up(sh, m->p);
		break;
	case SB__MAIL_PEER_DOWN:
		apply_down(sh, m->b, m->a);
		break;
	case SB__MAIL_PEER_DRAIN:
		apply_drain(sh, m->b, m->a);
		break;
	default:
		break;
	}
}

void sb__peers_release_mail(const struct sb__mail *m)
{
	if (m->type == SB__MAIL_PEER_UP)
		peer_free(m->p);
}

int sb__peers_resolve(struct sb__shard *sh, struct sb_view name, uint64_t *ep, char *why)
{
	const struct sb__peer *p = pm_find(&sh->peers.names, name.ptr, name.len);
	int rc, leaving = 0;

	if (p != NULL) {
		*ep = p->ep;
		rc = 0;
		leaving = p->draining;
	} else
		rc = dir_lookup(sh->r, name, ep, &leaving);
	/* It said GOODBYE: nothing new goes to it. */
	if (leaving) {
		snprintf(why, SB__WHY_MAX, "peer %.*s is leaving: it said GOODBYE", (int)name.len,
			 (const char *)name.ptr);
		return SB_ENOTCONNECTED;
	}
	if (rc == SB_EUNKNOWNPEER)
		snprintf(why, SB__WHY_MAX, "no peer named %.*s has connected", (int)name.len,
			 (const char *)name.ptr);
	else if (rc == SB_ENOTCONNECTED)
		snprintf(why, SB__WHY_MAX, "peer %.*s is not connected", (int)name.len,
			 (const char *)name.ptr);
	return rc;
}

void sb__peers_hello(struct sb__conn *c, struct sb_view payload)
{
	const uint8_t *p = payload.ptr, *end;
	struct sb__mp_item it;

	c->pr.has_resume = 0;
	if (p == NULL) /* an HTTP caller's HELLO, made by the edge */
		return;
	end = p + payload.len;
	if (sb__mp_read(&p, end, &it) != SB__MP_OK || it.type != SB__MP_MAP)
		return;
	for (uint32_t pair = 0; pair < it.len; pair++) {
		struct sb__mp_item key, v;
		if (sb__mp_read(&p, end, &key) != SB__MP_OK)
			return;
		int is_resume = key.type == SB__MP_STR && key.len == 6 &&
				memcmp(key.body, "resume", 6) == 0;
		/* The value, skipped whole: a count of items still to read. */
		for (uint64_t left = 1; left > 0; left--) {
			if (sb__mp_read(&p, end, &v) != SB__MP_OK)
				return;
			if (is_resume) {
				if (v.type == SB__MP_BIN && v.len == SB__RESUME_LEN) {
					memcpy(c->pr.resume, v.body, SB__RESUME_LEN);
					c->pr.has_resume = 1;
				}
				return;
			}
			if (v.type == SB__MP_ARRAY)
				left += v.len;
			else if (v.type == SB__MP_MAP)
				left += 2 * (uint64_t)v.len;
		}
	}
}

/* ---- selectors (a broadcast to peers) ------------------------------------ */

static int is_role(struct sb_view sel, const char *role)
{
	size_t n = strlen(role);
	return sel.len == n + 1 && sel.ptr[0] == '@' && memcmp(sel.ptr + 1, role, n) == 0;
}

int sb__peers_selector_ok(struct sb_view sel)
{
	if (sel.len > 0 && sel.ptr[0] == '@')
		return is_role(sel, "client") || is_role(sel, "service");
	const uint8_t *star = memchr(sel.ptr, '*', sel.len);
	return star == NULL || star == sel.ptr + sel.len - 1;
}

static int selects(struct sb_view sel, const struct sb__peer *p)
{
	if (sel.ptr[0] == '@')
		return is_role(sel, "service") == (p->service != 0);
	if (sel.ptr[sel.len - 1] == '*')
		return p->len >= sel.len - 1 && memcmp(p->name, sel.ptr, sel.len - 1) == 0;
	return p->len == sel.len && memcmp(p->name, sel.ptr, sel.len) == 0;
}

void sb__peers_select(struct sb__shard *sh, struct sb_view sel, uint64_t self,
		      void (*fn)(void *ctx, const struct sb__peer *p), void *ctx)
{
	struct sb__replica *t = &sh->peers;

	for (struct sb__link *l = t->all.next; l != &t->all; l = l->next) {
		const struct sb__peer *p = SB__CONTAINER(l, struct sb__peer, link);
		/* A name's older holder lingers until its PEER_DOWN comes. */
		if (p->ep == self || p->draining || pm_find(&t->names, p->name, p->len) != p)
			continue;
		if (selects(sel, p))
			fn(ctx, p);
	}
}

const char *sb__peers_name_of(struct sb__shard *sh, uint64_t ep)
{
	const struct sb__peer *p = by_ep(&sh->peers, ep);
	return p != NULL ? p->name : NULL;
}

void sb__peers_subscribe(struct sb__shard *sh, struct sb__conn *c, const struct sb_msg *m)
{
	struct sb__replica *t = &sh->peers;

	if (m->name.len != 8 || memcmp(m->name.ptr, "presence", 8) != 0) {
		sb__send_error(sh, c, m->id, SB_EINVAL,
			       "unknown topic: the router publishes \"presence\" only", 0);
		return;
	}
	if (m->flags & SB_F_OFF) {
		if (c->pr.presence)
			sub_remove(t, c->ep);
		c->pr.presence = 0;
	} else if (!c->pr.presence) {
		if (t->nsubs == t->subs_cap) {
			uint32_t cap = t->subs_cap ? t->subs_cap * 2 : 16;
			uint64_t *s = realloc(t->subs, cap * sizeof *s);
			if (s == NULL) {
				sb__send_error(sh, c, m->id, SB_EINTERNAL, "out of memory", 0);
				return;
			}
			t->subs = s;
			t->subs_cap = cap;
		}
		t->subs[t->nsubs++] = c->ep;
		c->pr.presence = 1;
	}
	struct sb_msg ack = {.kind = SB_ACK, .id = m->id};
	sb__send_msg(sh, c, &ack);
}

/* ---- identity ----------------------------------------------------------- */

/* Bytes of the str or nil at p, in a frame the codec has already checked. */
static uint32_t str_bytes(const uint8_t *p)
{
	if ((*p & 0xe0) == 0xa0)
		return 1u + (*p & 0x1fu);
	switch (*p) {
	case 0xd9:
		return 2u + p[1];
	case 0xda:
		return 3u + ((uint32_t)p[1] << 8 | p[2]);
	case 0xdb:
		return 5u + sb__be32(p + 1);
	default: /* nil */
		return 1;
	}
}

/* `from` of a SEND or REQUEST: after the canonical head, `name` and `to`. */
uint32_t sb__peers_frame_from(const uint8_t *f)
{
	const uint8_t *p = f + SB_PREFIX_LEN + 3 + 9; /* fixarray, kind, flags, id */
	p += str_bytes(p);                            /* name */
	p += str_bytes(p);                            /* to */
	return sb__be32(p + 1);                       /* 0xce, then 4 bytes */
}

int sb__peers_tell(struct sb__shard *sh, struct sb__conn *c, const uint8_t *f)
{
	uint8_t kind = f[SB_PREFIX_LEN + 1];
	if (kind != SB_SEND && kind != SB_REQUEST)
		return 0;
	uint32_t from = sb__peers_frame_from(f);
	if (from == 0 || from == c->pr.told_last) /* 0: the embedding program */
		return 0;
	if (sb__idmap_get(&c->pr.told, from) != 0) {
		c->pr.told_last = from;
		return 0;
	}
	struct sb__peer *p = by_id(&sh->peers, from);
	struct sb__buf *ident = NULL;
	uint32_t ident_len = 0;
	if (p != NULL) {
		if (p->ident == NULL &&
		    (p->ident = sb__peers_frame(p, SB_PEER_IDENTITY, &p->ident_len)) == NULL)
			return 0;
		sb__buf_get(p->ident);
		ident = p->ident;
		ident_len = p->ident_len;
	} else if (sh->xs == NULL || (ident = sb__xpres_ident(sh, from, &ident_len)) == NULL) {
		return 0; /* unknown here: its record could not be made */
	}
	/* Forget them all at once, a rule the receiver can follow exactly
	 * (docs/protocol.md) so it needs to keep no more than we do. */
	if (c->pr.told.count >= SB__TOLD_MAX) {
		sb__idmap_destroy(&c->pr.told);
		sb__idmap_init(&c->pr.told);
	}
	if (sb__idmap_put(&c->pr.told, from, 1) != 0) {
		sb__buf_put(ident, &sh->pool);
		return 0;
	}
	c->pr.told_last = from;
	return sb__enqueue(sh, c, ident, ident->data, ident_len);
}
