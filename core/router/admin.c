/* Answers to the router's reserved names, built from what the asking shard
 * can read without stopping anyone: its own route replica (every shard has
 * all routes), the peer directory (under its lock, as at every connect),
 * and the relaxed counters of every shard. Rare requests, so clarity wins
 * over speed here. */
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include <switchboard/error.h>
#include <switchboard/router.h>

#include "proto/mp.h"
#include "proto/schema.h"
#include "router/admin.h"
#include "router/cluster.h"
#include "router/local.h"
#include "router/outq.h"
#include "router/peers.h"
#include "router/request.h"
#include "common/idmap.h"
#include "router/shard.h"

static void pack_str(msgpack_packer *pk, const char *s, size_t n)
{
	msgpack_pack_str(pk, n);
	msgpack_pack_str_body(pk, s, n);
}

static void pack_key(msgpack_packer *pk, const char *k)
{
	pack_str(pk, k, strlen(k));
}

/* A snapshot of the peer directory: endpoint -> index of its entry. */
struct peers {
	struct sb__idmap by_ep; /* ep -> index + 1 */
	struct sb__peer_info *v;
	uint32_t n;
};

static int peers_load(struct sb_router *r, struct peers *p)
{
	sb__idmap_init(&p->by_ep);
	int rc = sb__dir_list(r, &p->v, &p->n);
	for (uint32_t i = 0; rc == 0 && i < p->n; i++)
		if (sb__idmap_put(&p->by_ep, p->v[i].ep, i + 1) != 0)
			rc = SB_ENOMEM;
	return rc;
}

static void peers_free(struct peers *p)
{
	sb__idmap_destroy(&p->by_ep);
	sb__dir_list_free(p->v, p->n);
}

/* MessagePack that is already one whole value (a schema as registered,
 * claims as verified), written as it is. */
static void pack_raw(msgpack_packer *pk, const void *p, size_t len)
{
	pk->callback(pk->data, p, len);
}

/* [{"name": str, "handlers": [{"peer": str, "shard": uint, "internal":
 * bool, "schema": map or nil}]}]; the catch-all's name is "", an
 * in-process handler's peer "(in-process)". */
static int pack_routes(struct sb__shard *sh, msgpack_packer *pk)
{
	struct peers p;
	int rc = peers_load(sh->r, &p);
	const struct sb__routes *t = &sh->routes;
	uint32_t n = 0;
	for (uint32_t i = 0; t->slots != NULL && i <= t->mask; i++)
		n += t->slots[i] != NULL && t->slots[i]->n > 0;
	msgpack_pack_array(pk, n);
	for (uint32_t i = 0; t->slots != NULL && i <= t->mask; i++) {
		const struct sb__route *r = t->slots[i];
		if (r == NULL || r->n == 0)
			continue;
		msgpack_pack_map(pk, 2);
		pack_key(pk, "name");
		pack_str(pk, r->name, r->len);
		pack_key(pk, "handlers");
		msgpack_pack_array(pk, r->n);
		for (uint32_t k = 0; k < r->n; k++) {
			unsigned shard = (unsigned)(r->eps[k].ep >> 56);
			uint64_t at = sb__idmap_get(&p.by_ep, r->eps[k].ep);
			const char *peer = shard == SB__LOCAL_SHARD ? "(in-process)"
					   : at > 0                 ? p.v[at - 1].name
								    : "";
			msgpack_pack_map(pk, 4);
			pack_key(pk, "peer");
			pack_key(pk, peer);
			pack_key(pk, "shard");
			msgpack_pack_uint32(pk, shard);
			pack_key(pk, "internal");
			if (r->eps[k].flags & SB__EP_INTERNAL)
				msgpack_pack_true(pk);
			else
				msgpack_pack_false(pk);
			pack_key(pk, "schema");
			if (r->eps[k].schema != NULL) {
				size_t len;
				const uint8_t *src = sb__schema_source(r->eps[k].schema, &len);
				pack_raw(pk, src, len);
			} else {
				msgpack_pack_nil(pk);
			}
		}
	}
	peers_free(&p);
	return rc;
}

/* [{"peer": str, "id": uint, "role": str, "shard": uint, "subject": str,
 *   "claims": map, "router": str}]: subject and claims as the peer's
 * identity event has them (absent when it has none), router only in a
 * cluster (every peer listed is this router's own). */
static int pack_peers(struct sb__shard *sh, msgpack_packer *pk)
{
	struct peers p;
	int rc = peers_load(sh->r, &p);
	const char *router = sb__cluster_id(sh->r);
	msgpack_pack_array(pk, p.n);
	for (uint32_t i = 0; i < p.n; i++) {
		const struct sb__peer_info *e = &p.v[i];
		msgpack_pack_map(pk,
				 4 + (e->subject != NULL) + (e->claims != NULL) + (router != NULL));
		pack_key(pk, "peer");
		pack_key(pk, e->name);
		pack_key(pk, "id");
		msgpack_pack_uint32(pk, e->peer_id);
		pack_key(pk, "role");
		pack_key(pk, e->service ? "service" : "client");
		pack_key(pk, "shard");
		msgpack_pack_uint32(pk, (uint32_t)(e->ep >> 56));
		if (e->subject != NULL) {
			pack_key(pk, "subject");
			pack_key(pk, e->subject);
		}
		if (e->claims != NULL) {
			pack_key(pk, "claims");
			pack_raw(pk, e->claims, e->claims_len);
		}
		if (router != NULL) {
			pack_key(pk, "router");
			pack_key(pk, router);
		}
	}
	peers_free(&p);
	return rc;
}

/* The routes $sb.stats lists: by name, those after the asker's "after"
 * (see docs/protocol.md), as many as fit in room bytes. */
struct page {
	const char *after; /* NULL: from the first name */
	uint32_t after_len;
	size_t room; /* bytes the routes may take */
	uint32_t n;  /* routes packed */
	int more;    /* some were left out for room */
};

/* {"name": str, "requests": uint, ..., "max_us": uint} per route, into pk,
 * under the table's lock: a record is freed only under it. */
static int pack_route_page(struct sb_router *r, msgpack_packer *pk, msgpack_sbuffer *sb,
			   struct page *pg)
{
	struct sb__rstats *t = &r->rstats;
	struct sb__rstat **v;
	pthread_mutex_lock(&t->lock);
	long n = sb__rstats_sorted(t, pg->after, pg->after_len, &v);
	for (long i = 0; i < n; i++) {
		struct sb__rstat_sum s;
		size_t before = sb->size;
		sb__rstat_sum(t, v[i], &s);
		const struct {
			const char *name;
			uint64_t v;
		} c[] = {
			{"requests", s.requests}, {"sends", s.sends},       {"replies", s.replies},
			{"errors", s.errors},     {"timeouts", s.timeouts}, {"p50_us", s.p50_us},
			{"p90_us", s.p90_us},     {"p99_us", s.p99_us},     {"max_us", s.max_us},
		};
		msgpack_pack_map(pk, 1 + sizeof c / sizeof c[0]);
		pack_key(pk, "name");
		pack_str(pk, v[i]->name, v[i]->len);
		for (size_t k = 0; k < sizeof c / sizeof c[0]; k++) {
			pack_key(pk, c[k].name);
			msgpack_pack_uint64(pk, c[k].v);
		}
		if (sb->size > pg->room) { /* the next page starts with this one */
			sb->size = before;
			pg->more = 1;
			break;
		}
		pg->n++;
	}
	pthread_mutex_unlock(&t->lock);
	if (n >= 0)
		free(v);
	return n < 0 ? SB_ENOMEM : 0;
}

/* The asker's arguments to $sb.stats: nil, or a map whose "after" names
 * the last route of the previous page. Other keys are ignored (room for
 * later ones). Read in place with the codec's reader: the payload is the
 * asker's, and a MessagePack library's unpacker allocates for the counts
 * it declares before it reads a byte of them (128 GiB, the fuzzer found).
 * @return 0, or SB_EINVAL with why set */
static int stats_args(struct sb_view args, struct page *pg, char *why, size_t whylen)
{
	const uint8_t *p = args.ptr, *end = args.ptr + args.len;
	struct sb__mp_item map, key, val;

	if (args.len == 0)
		return 0;
	if (sb__mp_read(&p, end, &map) != SB__MP_OK)
		goto bad;
	if (map.type != SB__MP_MAP)
		return 0;
	for (uint32_t i = 0; i < map.len; i++) {
		const uint8_t *at = p;
		if (sb__mp_read(&p, end, &key) != SB__MP_OK)
			goto bad;
		if (key.type != SB__MP_STR || key.len != 5 || memcmp(key.body, "after", 5) != 0) {
			p = at; /* the key may be a map itself */
			if (sb__mp_skip(&p, end, 2) != 0)
				goto bad;
			continue;
		}
		if (sb__mp_read(&p, end, &val) != SB__MP_OK)
			goto bad;
		if (val.type != SB__MP_STR) {
			snprintf(why, whylen, "$sb.stats: \"after\" must be a string");
			return SB_EINVAL;
		}
		pg->after = (const char *)val.body;
		pg->after_len = val.len;
	}
	return 0;
bad:
	snprintf(why, whylen, "$sb.stats: the arguments are not one MessagePack value");
	return SB_EINVAL;
}

/* {"connections": uint, ..., "shards": [{"shard", "connections", "inflight"}],
 *  "routes": [...], "routes_more": bool}: the routes fill what is left of
 *  frame bytes, so the answer always fits. */
static int pack_stats(struct sb__shard *sh, msgpack_packer *pk, msgpack_sbuffer *sb,
		      struct sb_view args, size_t frame, char *why, size_t whylen)
{
	struct sb_router *r = sh->r;
	struct sb_router_stats s;
	struct page pg = {0};
	int rc = stats_args(args, &pg, why, whylen);
	if (rc != 0)
		return rc;
	sb_router_stats(r, &s);
	const struct {
		const char *name;
		uint64_t v;
	} c[] = {
#define KEY(name, how) {#name, s.name},
		SB__STATS(KEY)
#undef KEY
	};
	size_t nc = sizeof c / sizeof c[0];
	msgpack_pack_map(pk, (uint32_t)nc + 3);
	for (size_t i = 0; i < nc; i++) {
		pack_key(pk, c[i].name);
		msgpack_pack_uint64(pk, c[i].v);
	}
	pack_key(pk, "shards");
	msgpack_pack_array(pk, r->nshards);
	for (unsigned i = 0; i < r->nshards; i++) {
		const struct sb__stats *st = &r->shards[i].st;
		msgpack_pack_map(pk, 3);
		pack_key(pk, "shard");
		msgpack_pack_uint32(pk, i);
		pack_key(pk, "connections");
		msgpack_pack_uint64(pk,
				    atomic_load_explicit(&st->connections, memory_order_relaxed));
		pack_key(pk, "inflight");
		msgpack_pack_uint64(pk, atomic_load_explicit(&st->inflight, memory_order_relaxed));
	}
	/* The routes go last, in what max_frame leaves: the REPLY's own header
	 * is under 32 bytes, "routes_more" and the array's header under 32. */
	msgpack_sbuffer rb;
	msgpack_packer rp;
	msgpack_sbuffer_init(&rb);
	msgpack_packer_init(&rp, &rb, msgpack_sbuffer_write);
	size_t used = sb->size + 64;
	pg.room = frame > used ? frame - used : 0;
	rc = pack_route_page(r, &rp, &rb, &pg);
	pack_key(pk, "routes_more");
	if (pg.more)
		msgpack_pack_true(pk);
	else
		msgpack_pack_false(pk);
	pack_key(pk, "routes");
	msgpack_pack_array(pk, pg.n);
	if (rb.size > 0)
		msgpack_sbuffer_write(sb, rb.data, rb.size);
	msgpack_sbuffer_destroy(&rb);
	return rc;
}

/* The answers that take no arguments. */
static int pack_routes_answer(struct sb__shard *sh, msgpack_packer *pk, msgpack_sbuffer *sb,
			      struct sb_view args, size_t frame, char *why, size_t whylen)
{
	(void)sb;
	(void)args;
	(void)frame;
	(void)why;
	(void)whylen;
	return pack_routes(sh, pk);
}

static int pack_peers_answer(struct sb__shard *sh, msgpack_packer *pk, msgpack_sbuffer *sb,
			     struct sb_view args, size_t frame, char *why, size_t whylen)
{
	(void)sb;
	(void)args;
	(void)frame;
	(void)why;
	(void)whylen;
	return pack_peers(sh, pk);
}

int sb__admin_answer(struct sb__shard *sh, struct sb_view name, struct sb_view args, char **payload,
		     size_t *len, char *why, size_t whylen)
{
	return sb__admin_answer_in(sh, name, args, sh->r->cfg.max_frame, payload, len, why, whylen);
}

int sb__admin_answer_in(struct sb__shard *sh, struct sb_view name, struct sb_view args,
			size_t frame, char **payload, size_t *len, char *why, size_t whylen)
{
	static const struct {
		const char *name;
		int (*pack)(struct sb__shard *, msgpack_packer *, msgpack_sbuffer *, struct sb_view,
			    size_t, char *, size_t);
	} answers[] = {
		{"$sb.routes", pack_routes_answer},
		{"$sb.peers", pack_peers_answer},
		{"$sb.stats", pack_stats},
	};
	for (size_t i = 0; i < sizeof answers / sizeof answers[0]; i++) {
		if (name.len != strlen(answers[i].name) ||
		    memcmp(name.ptr, answers[i].name, name.len) != 0)
			continue;
		msgpack_sbuffer sb;
		msgpack_packer pk;
		msgpack_sbuffer_init(&sb);
		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		int rc = answers[i].pack(sh, &pk, &sb, args, frame, why, whylen);
		/* A failed write leaves a gap: never send a broken value. */
		if (rc != 0 || sb.data == NULL ||
		    sb_payload_check((uint8_t *)sb.data, sb.size) != 0) {
			msgpack_sbuffer_destroy(&sb);
			return rc != 0 ? rc : SB_ENOMEM;
		}
		*payload = sb.data; /* malloc'd by the sbuffer: the caller frees it */
		*len = sb.size;
		return 0;
	}
	return SB_ENOHANDLER;
}

/* A request to one of the router's own names ($sb.routes, ...). */
void sb__admin_request(struct sb__shard *sh, const struct sb__asker *a, const struct sb_msg *m)
{
	char *p, why[128];
	size_t n;
	int rc = sb__admin_answer(sh, m->name, m->payload, &p, &n, why, sizeof why);
	if (rc != 0) {
		sb__refuse(sh, a, m, rc,
			   rc == SB_ENOHANDLER ? "the router serves no such name"
			   : rc == SB_EINVAL   ? why
					       : "out of memory");
		return;
	}
	struct sb_msg r = {.kind = SB_REPLY, .id = m->id, .outcome = {(const uint8_t *)"ok", 2}};
	r.payload = (struct sb_view){(const uint8_t *)p, (uint32_t)n};
	long size = sb_encoded_size(&r);
	/* The asker refuses frames over max_frame, and would drop us for it. */
	if (size < 0 || (uint64_t)size - SB_PREFIX_LEN > sh->r->cfg.max_frame)
		sb__refuse(sh, a, m, SB_ETOOLARGE, "the answer is larger than max_frame");
	else if (a->c == NULL)
		sb__local_answer(a->fn, a->ud, m->id, 0, r.outcome, r.payload, SB_MORE_NONE,
				 (struct sb_view){NULL, 0});
	else if (!sb__id_taken(sh, a->c, m->id, sb__open_rid(sh, a->c, m->id)))
		sb__send_msg(sh, a->c, &r);
	free(p);
}
