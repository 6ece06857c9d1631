/* $sb.routes, $sb.peers and $sb.stats gathered from every router
 * (docs/cluster.md, "$sb.* for the whole cluster").
 *
 * The asking side: an entry on the asker's shard (request.c enters it as
 * any request: its id, its cancel, its requester's inflight count, its
 * timer), this router's own answer taken at once, and one NATS request
 * per router heard from (sb.c.<R>, with the asker's payload and headers
 * Sb-Admin: the name, Sb-Room: the bytes its answer may take). Each ends
 * exactly once (its answer, its timeout, or the connection's loss), and
 * the entry answers when the last has, or at its own deadline, whichever
 * comes first: one answer, never a wait past the deadline. A router that
 * dies while asked (its subscription gone: "no responders") or stays
 * silent is listed under "missing".
 *
 * The asked side: every shard subscribes sb.c.<R> in one queue group and
 * answers with the router's own answer (admin.c) as a REPLY frame, or an
 * ERROR frame.
 *
 * Answers from other routers are checked whole (sb_payload_check) before
 * they are kept, and walked with the codec's reader, copying each value's
 * bytes as they came (a schema or claims exactly as registered). */
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <switchboard/error.h>
#include <switchboard/router.h>

#include "common/nats.h"
#include "proto/mp.h"
#include "router/admin.h"
#include "router/admin_json.h"
#include "router/cluster-int.h"
#include "router/cluster.h"
#include "router/cluster_admin.h"
#include "router/conn.h"
#include "router/local.h"
#include "router/outq.h"
#include "router/request.h"
#include "router/router-t.h"
#include "router/shard.h"

/* How long the other routers have to answer (docs/cluster.md). */
#define ASK_MS 1000

enum what { ROUTES, PEERS, STATS };

static const char *const asked[] = {"$sb.routes", "$sb.peers", "$sb.stats"};

/* One router's part of the answer. */
struct got {
	char id[40];
	uint8_t *p; /* its answer's payload (malloc'd); NULL: none (yet) */
	size_t len;
	int done; /* answered, or given up on */
};

struct sb__xadmin {
	enum what what;
	int http;       /* asked on the admin listener: answered as JSON */
	int keep, head; /* ...its request's keep-alive and HEAD */
	int too_large;  /* a router's own answer was over its bound */
	size_t frame;   /* the answer's bound: max_frame */
	uint32_t n;     /* routers, ourselves first */
	uint32_t left;  /* questions still open */
	struct got g[];
};

/* A question in flight: its callback finds the entry by its id (generation
 * checked: an entry that ended is not found). */
struct ask {
	struct sb__shard *sh;
	uint64_t rid;
	uint32_t i;
};

/* ---- reading MessagePack that was checked whole ---------------------------- */

static int key_is(const struct sb__mp_item *k, const char *s)
{
	size_t n = strlen(s);
	return k->type == SB__MP_STR && k->len == n && memcmp(k->body, s, n) == 0;
}

/* The value of key @p key in the map at @p map: its first byte, and *vend
 * past it; NULL if the map has no such key (or is not a map). */
static const uint8_t *get(const uint8_t *map, const uint8_t *end, const char *key,
			  const uint8_t **vend)
{
	const uint8_t *p = map;
	struct sb__mp_item m, k;
	if (sb__mp_read(&p, end, &m) != SB__MP_OK || m.type != SB__MP_MAP)
		return NULL;
	for (uint32_t i = 0; i < m.len; i++) {
		if (sb__mp_read(&p, end, &k) != SB__MP_OK)
			return NULL;
		const uint8_t *v = p;
		if (sb__mp_skip(&p, end, 1) != 0)
			return NULL;
		if (key_is(&k, key)) {
			*vend = p;
			return v;
		}
	}
	return NULL;
}

/* ---- writing ------------------------------------------------------------- */

static void pack_str(msgpack_packer *pk, const void *s, size_t n)
{
	msgpack_pack_str(pk, n);
	msgpack_pack_str_body(pk, s, n);
}

static void pack_key(msgpack_packer *pk, const char *k)
{
	pack_str(pk, k, strlen(k));
}

static void pack_raw(msgpack_packer *pk, const void *p, size_t len)
{
	pk->callback(pk->data, p, len);
}

/* The map at [p, end) with "router": id added (unless it has one). */
static void pack_with_router(msgpack_packer *pk, const uint8_t *p, const uint8_t *end,
			     const char *id)
{
	const uint8_t *body = p, *vend;
	struct sb__mp_item m;
	if (sb__mp_read(&body, end, &m) != SB__MP_OK || m.type != SB__MP_MAP) {
		pack_raw(pk, p, (size_t)(end - p));
		return;
	}
	int has = get(p, end, "router", &vend) != NULL;
	msgpack_pack_map(pk, m.len + !has);
	pack_raw(pk, body, (size_t)(end - body));
	if (!has) {
		pack_key(pk, "router");
		pack_key(pk, id);
	}
}

/* The routers that answered (by id), and those that did not. */
static int by_id(const void *a, const void *b)
{
	return strcmp((*(const struct got *const *)a)->id, (*(const struct got *const *)b)->id);
}

static uint32_t sorted(struct sb__xadmin *xa, struct got **v, int answered)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < xa->n; i++)
		if ((xa->g[i].p != NULL) == answered)
			v[n++] = &xa->g[i];
	qsort(v, n, sizeof *v, by_id);
	return n;
}

static void pack_ids(msgpack_packer *pk, struct got **v, uint32_t n)
{
	msgpack_pack_array(pk, n);
	for (uint32_t i = 0; i < n; i++)
		pack_key(pk, v[i]->id);
}

/* An entry of a router's list: its name (routes), its bytes, its router. */
struct ent {
	const uint8_t *name;
	uint32_t name_len;
	const uint8_t *p, *end;
	uint32_t r; /* the router, in the order of the answered ones */
};

static int name_cmp(const struct ent *a, const struct ent *b)
{
	uint32_t n = a->name_len < b->name_len ? a->name_len : b->name_len;
	int c = memcmp(a->name, b->name, n);
	return c != 0 ? c : (a->name_len > b->name_len) - (a->name_len < b->name_len);
}

static int by_name(const void *x, const void *y)
{
	const struct ent *a = x, *b = y;
	int c = name_cmp(a, b);
	return c != 0 ? c : (a->r > b->r) - (a->r < b->r);
}

/* The entries of the array @p key holds in each answer (the answer itself
 * when key is NULL), each with its "name" if it has one. NULL: no memory. */
static struct ent *entries(struct got **v, uint32_t nv, const char *key, uint32_t *count)
{
	struct ent *e = NULL;
	uint32_t n = 0, cap = 0;
	for (uint32_t r = 0; r < nv; r++) {
		const uint8_t *p = v[r]->p, *end = p + v[r]->len, *vend;
		struct sb__mp_item a, it;
		if (key != NULL && (p = get(p, end, key, &vend)) == NULL)
			continue;
		if (sb__mp_read(&p, end, &a) != SB__MP_OK || a.type != SB__MP_ARRAY)
			continue;
		for (uint32_t i = 0; i < a.len; i++) {
			const uint8_t *at = p, *nend, *name;
			if (sb__mp_skip(&p, end, 1) != 0)
				break;
			if (n == cap) {
				cap = cap ? cap * 2 : 64;
				struct ent *ne = realloc(e, cap * sizeof *e);
				if (ne == NULL) {
					free(e);
					return NULL;
				}
				e = ne;
			}
			e[n] = (struct ent){.p = at, .end = p, .r = r, .name = (const uint8_t *)""};
			if ((name = get(at, p, "name", &nend)) != NULL &&
			    sb__mp_read(&name, nend, &it) == SB__MP_OK && it.type == SB__MP_STR) {
				e[n].name = it.body;
				e[n].name_len = it.len;
			}
			n++;
		}
	}
	*count = n;
	return e != NULL ? e : malloc(1);
}

/* ---- the three answers ---------------------------------------------------- */

/* {"routes": [{"name", "handlers": [{..., "router"}]}], "routers": [ids],
 *  "missing": [ids]}: a name once, with every router's handlers of it. */
static int merge_routes(struct sb__xadmin *xa, struct got **v, uint32_t nv, struct got **m,
			uint32_t nm, msgpack_packer *pk)
{
	uint32_t n, names = 0;
	struct ent *e = entries(v, nv, NULL, &n);
	if (e == NULL)
		return SB_ENOMEM;
	qsort(e, n, sizeof *e, by_name);
	for (uint32_t i = 0; i < n; i++)
		names += i == 0 || name_cmp(&e[i - 1], &e[i]) != 0;
	msgpack_pack_map(pk, 3);
	pack_key(pk, "routes");
	msgpack_pack_array(pk, names);
	for (uint32_t i = 0; i < n;) {
		uint32_t j = i, handlers = 0;
		for (; j < n && name_cmp(&e[i], &e[j]) == 0; j++) {
			const uint8_t *hend, *h = get(e[j].p, e[j].end, "handlers", &hend);
			struct sb__mp_item a;
			if (h != NULL && sb__mp_read(&h, hend, &a) == SB__MP_OK &&
			    a.type == SB__MP_ARRAY)
				handlers += a.len;
		}
		msgpack_pack_map(pk, 2);
		pack_key(pk, "name");
		pack_str(pk, e[i].name, e[i].name_len);
		pack_key(pk, "handlers");
		msgpack_pack_array(pk, handlers);
		for (uint32_t k = i; k < j; k++) {
			const uint8_t *hend, *h = get(e[k].p, e[k].end, "handlers", &hend);
			struct sb__mp_item a;
			if (h == NULL || sb__mp_read(&h, hend, &a) != SB__MP_OK ||
			    a.type != SB__MP_ARRAY)
				continue;
			for (uint32_t x = 0; x < a.len; x++) {
				const uint8_t *at = h;
				sb__mp_skip(&h, hend, 1);
				pack_with_router(pk, at, h, v[e[k].r]->id);
			}
		}
		i = j;
	}
	free(e);
	pack_key(pk, "routers");
	pack_ids(pk, v, nv);
	pack_key(pk, "missing");
	pack_ids(pk, m, nm);
	(void)xa;
	return 0;
}

/* {"peers": [{..., "router"}], "routers": [ids], "missing": [ids]}. */
static int merge_peers(struct sb__xadmin *xa, struct got **v, uint32_t nv, struct got **m,
		       uint32_t nm, msgpack_packer *pk)
{
	uint32_t n;
	struct ent *e = entries(v, nv, NULL, &n);
	if (e == NULL)
		return SB_ENOMEM;
	msgpack_pack_map(pk, 3);
	pack_key(pk, "peers");
	msgpack_pack_array(pk, n);
	for (uint32_t i = 0; i < n; i++)
		pack_with_router(pk, e[i].p, e[i].end, v[e[i].r]->id);
	free(e);
	pack_key(pk, "routers");
	pack_ids(pk, v, nv);
	pack_key(pk, "missing");
	pack_ids(pk, m, nm);
	(void)xa;
	return 0;
}

/* A uint of a router's $sb.stats, 0 if absent. */
static uint64_t counter(const struct got *g, const char *key)
{
	const uint8_t *vend, *p = get(g->p, g->p + g->len, key, &vend);
	struct sb__mp_item it;
	return p != NULL && sb__mp_read(&p, vend, &it) == SB__MP_OK && it.type == SB__MP_UINT ? it.u
											      : 0;
}

/* {counters summed (peaks: the highest), "routers": {id: {counters,
 *  "shards"}}, "missing": [ids], "routes": [{..., "router"}] by name,
 *  "routes_more"}: a name's routes from every router on one page, the page
 *  cut where a router's own page ended and to fit max_frame. */
static int merge_stats(struct sb__xadmin *xa, struct got **v, uint32_t nv, struct got **m,
		       uint32_t nm, msgpack_packer *pk, msgpack_sbuffer *sb)
{
	static const struct {
		const char *name;
		int peak;
	} c[] = {
#define SUM            0
#define PEAK           1
#define KEY(name, how) {#name, how},
		SB__STATS(KEY)
#undef KEY
#undef SUM
#undef PEAK
	};
	size_t nc = sizeof c / sizeof c[0];
	uint32_t n;
	struct ent *e = entries(v, nv, "routes", &n);
	if (e == NULL)
		return SB_ENOMEM;
	qsort(e, n, sizeof *e, by_name);

	msgpack_pack_map(pk, (uint32_t)nc + 4);
	for (size_t i = 0; i < nc; i++) {
		uint64_t acc = 0;
		for (uint32_t r = 0; r < nv; r++) {
			uint64_t x = counter(v[r], c[i].name);
			acc = c[i].peak ? (x > acc ? x : acc) : acc + x;
		}
		pack_key(pk, c[i].name);
		msgpack_pack_uint64(pk, acc);
	}
	pack_key(pk, "routers");
	msgpack_pack_map(pk, nv);
	for (uint32_t r = 0; r < nv; r++) {
		const uint8_t *p = v[r]->p, *end = p + v[r]->len;
		struct sb__mp_item mp, k;
		uint32_t keep = 0;
		pack_key(pk, v[r]->id);
		for (int pass = 0; pass < 2; pass++) {
			p = v[r]->p;
			if (sb__mp_read(&p, end, &mp) != SB__MP_OK || mp.type != SB__MP_MAP) {
				msgpack_pack_map(pk, 0);
				break;
			}
			if (pass == 1)
				msgpack_pack_map(pk, keep);
			for (uint32_t i = 0; i < mp.len; i++) {
				const uint8_t *at = p;
				if (sb__mp_read(&p, end, &k) != SB__MP_OK ||
				    sb__mp_skip(&p, end, 1) != 0)
					break;
				if (key_is(&k, "routes") || key_is(&k, "routes_more"))
					continue;
				if (pass == 0)
					keep++;
				else
					pack_raw(pk, at, (size_t)(p - at));
			}
		}
	}
	pack_key(pk, "missing");
	pack_ids(pk, m, nm);

	/* Where the page ends: at the lowest last name of a router that had
	 * more, so that every name up to it is there from every router and
	 * the next page (after it) leaves none out. */
	const struct ent *cut = NULL;
	int more = 0;
	for (uint32_t r = 0; r < nv; r++) {
		const uint8_t *bend, *b = get(v[r]->p, v[r]->p + v[r]->len, "routes_more", &bend);
		struct sb__mp_item it;
		if (b == NULL || sb__mp_read(&b, bend, &it) != SB__MP_OK ||
		    it.type != SB__MP_BOOL || !it.u)
			continue;
		more = 1;
		const struct ent *last = NULL;
		for (uint32_t i = 0; i < n; i++)
			if (e[i].r == r && (last == NULL || name_cmp(&e[i], last) > 0))
				last = &e[i];
		static const struct ent none = {.name = (const uint8_t *)""};
		if (last == NULL)
			last = &none; /* none fit: nothing after "" is sure */
		if (cut == NULL || name_cmp(last, cut) < 0)
			cut = last;
	}
	/* The routes last, a name's routes whole, in what max_frame leaves. */
	msgpack_sbuffer rb;
	msgpack_packer rp;
	msgpack_sbuffer_init(&rb);
	msgpack_packer_init(&rp, &rb, msgpack_sbuffer_write);
	size_t used = sb->size + 64;
	size_t room = xa->frame > used ? xa->frame - used : 0;
	uint32_t taken = 0;
	for (uint32_t i = 0; i < n;) {
		if (cut != NULL && name_cmp(&e[i], cut) > 0)
			break;
		uint32_t j = i;
		size_t before = rb.size;
		for (; j < n && name_cmp(&e[i], &e[j]) == 0; j++)
			pack_with_router(&rp, e[j].p, e[j].end, v[e[j].r]->id);
		if (rb.size > room) {
			rb.size = before;
			more = 1;
			break;
		}
		taken += j - i;
		i = j;
	}
	pack_key(pk, "routes_more");
	if (more)
		msgpack_pack_true(pk);
	else
		msgpack_pack_false(pk);
	pack_key(pk, "routes");
	msgpack_pack_array(pk, taken);
	if (rb.size > 0)
		msgpack_sbuffer_write(sb, rb.data, rb.size);
	msgpack_sbuffer_destroy(&rb);
	free(e);
	return 0;
}

/* ---- the asking side ----------------------------------------------------- */

/* The request ends with an error: as JSON on the admin listener. */
static void fail(struct sb__shard *sh, struct sb__req *q, int err, const char *why)
{
	struct sb__xadmin *xa = q->xa;
	if (xa == NULL || !xa->http) {
		sb__req_fail(sh, q, err, why);
		return;
	}
	struct sb__conn *c = sb__conn_get(sh, q->requester);
	if (c != NULL && !c->closing)
		sb__admin_json_later(sh, c, xa->keep, xa->head, err, NULL, 0, why);
	sb__req_finish(sh, q);
}

/* Every answer is in, or the deadline came: the one answer. */
static void answer(struct sb__shard *sh, struct sb__req *q)
{
	struct sb__xadmin *xa = q->xa;
	struct got **v = malloc((xa->n + 1) * sizeof *v), **m = malloc((xa->n + 1) * sizeof *m);
	msgpack_sbuffer sb;
	msgpack_packer pk;
	int rc = v == NULL || m == NULL ? SB_ENOMEM : 0;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	if (rc == 0 && xa->too_large)
		rc = SB_ETOOLARGE;
	if (rc == 0) {
		uint32_t nv = sorted(xa, v, 1), nm = sorted(xa, m, 0);
		rc = xa->what == ROUTES  ? merge_routes(xa, v, nv, m, nm, &pk)
		     : xa->what == PEERS ? merge_peers(xa, v, nv, m, nm, &pk)
					 : merge_stats(xa, v, nv, m, nm, &pk, &sb);
	}
	free(v);
	free(m);
	if (rc == 0 && (sb.data == NULL || sb_payload_check((uint8_t *)sb.data, sb.size) != 0))
		rc = SB_ENOMEM; /* a failed write leaves a gap: never send a broken value */
	struct sb_msg r = {
		.kind = SB_REPLY, .id = q->orig_id, .outcome = {(const uint8_t *)"ok", 2}};
	r.payload = (struct sb_view){(const uint8_t *)sb.data, (uint32_t)sb.size};
	long size = rc == 0 ? sb_encoded_size(&r) : 0;
	/* The asker refuses frames over max_frame, and would drop us for it. */
	if (rc == 0 && (size < 0 || (uint64_t)size - SB_PREFIX_LEN > sh->r->cfg.max_frame))
		rc = SB_ETOOLARGE;
	if (rc != 0) {
		msgpack_sbuffer_destroy(&sb);
		fail(sh, q, rc,
		     rc == SB_ETOOLARGE ? "the answer is larger than max_frame" : "out of memory");
		return;
	}
	if (xa->http) {
		struct sb__conn *c = sb__conn_get(sh, q->requester);
		if (c != NULL && !c->closing)
			sb__admin_json_later(sh, c, xa->keep, xa->head, 0, sb.data, sb.size, NULL);
	} else if (q->requester == SB__LOCAL_REQUESTER) {
		sb__local_answer(q->fn, q->ud, q->orig_id, 0, r.outcome, r.payload, SB_MORE_NONE,
				 (struct sb_view){NULL, 0});
	} else {
		struct sb__conn *c = sb__conn_get(sh, q->requester);
		if (c != NULL)
			sb__send_msg(sh, c, &r);
	}
	msgpack_sbuffer_destroy(&sb);
	sb__req_finish(sh, q);
}

static void on_answer(void *ud, int err, const struct sb__nats_msg *nm)
{
	struct ask *k = ud;
	struct sb__shard *sh = k->sh;
	struct sb__req *q =
		sh->xs != NULL && !sh->xs->stopping ? sb__reqtab_get(&sh->reqs, k->rid) : NULL;
	struct sb__xadmin *xa = q != NULL && q->ops == &sb__xadmin_ops ? q->xa : NULL;

	if (xa == NULL || k->i >= xa->n || xa->g[k->i].done) {
		free(k); /* it was answered at its deadline, or its asker left */
		return;
	}
	struct got *g = &xa->g[k->i];
	struct sb_msg msg;
	g->done = 1;
	xa->left--;
	/* Its REPLY frame, checked whole; an ERROR, "no responders" (it left
	 * the cluster), a timeout or a lost connection: missing. */
	if (err == 0 && nm != NULL && nm->status == 0 && nm->data_len <= UINT32_MAX &&
	    sb_decode(nm->data, nm->data_len, SB_DECODE_PAYLOAD, &msg, NULL) == 0) {
		if (msg.kind == SB_REPLY && msg.payload.len > 0 &&
		    (g->p = malloc(msg.payload.len)) != NULL) {
			memcpy(g->p, msg.payload.ptr, msg.payload.len);
			g->len = msg.payload.len;
		} else if (msg.kind == SB_ERROR && msg.code == (uint32_t)-SB_ETOOLARGE) {
			xa->too_large = 1;
		}
		sb__cluster_heard(sh, sb__cluster_fnv(g->id, strlen(g->id)));
	}
	free(k);
	if (xa->left == 0)
		answer(sh, q);
}

/* {"local": true} in the asker's payload: checked whole first, since a
 * count the bytes cannot hold would be read past. */
static int local_asked(struct sb_view args)
{
	const uint8_t *p = args.ptr, *end = args.ptr + args.len;
	struct sb__mp_item m, k, v;

	if (args.len == 0 || sb_payload_check(args.ptr, args.len) != 0 ||
	    sb__mp_read(&p, end, &m) != SB__MP_OK || m.type != SB__MP_MAP)
		return 0;
	for (uint32_t i = 0; i < m.len; i++) {
		if (sb__mp_read(&p, end, &k) != SB__MP_OK)
			return 0;
		const uint8_t *at = p;
		if (key_is(&k, "local") && sb__mp_read(&at, end, &v) == SB__MP_OK &&
		    v.type == SB__MP_BOOL && v.u)
			return 1;
		if (sb__mp_skip(&p, end, 1) != 0)
			return 0;
	}
	return 0;
}

static int what_of(struct sb_view name)
{
	for (int i = 0; i < 3; i++)
		if (name.len == strlen(asked[i]) && memcmp(name.ptr, asked[i], name.len) == 0)
			return i;
	return -1;
}

int sb__xadmin_wanted(const struct sb__shard *sh, const struct sb_msg *m)
{
	return sh->xs != NULL && what_of(m->name) >= 0 && !local_asked(m->payload);
}

/* Entry q asks every router for name with args: xa made (its kind set by
 * the caller), ours taken, the others asked. */
static void ask(struct sb__shard *sh, struct sb__req *q, struct sb__xadmin *xa, struct sb_view name,
		struct sb_view args, uint32_t deadline)
{
	struct sb__xshard *xs = sh->xs;
	uint32_t n = xa->n;
	char why[128] = "out of memory";

	q->xa = xa;
	xa->what = (enum what)what_of(name);
	xa->frame = sh->r->cfg.max_frame;
	/* Ours first: bad arguments are refused as on a router alone. */
	struct got *g = &xa->g[0];
	size_t room = xa->frame;
	char *p;
	int rc = sb__admin_answer_in(sh, name, args, room, &p, &g->len, why, sizeof why);
	/* Each router's page of $sb.stats gets a share of what max_frame
	 * leaves after every router's counters (ours measured, the others'
	 * alike), a fifth kept for the router named on each route. */
	if (rc == 0 && xa->what == STATS) {
		const uint8_t *rend, *r = get((uint8_t *)p, (uint8_t *)p + g->len, "routes", &rend);
		size_t fixed = g->len - (r != NULL ? (size_t)(rend - r) : 0);
		size_t all = fixed * (n + 1) + 64, pmax = sb__nats_max_payload(xs->nc);
		room = fixed + (all < xa->frame ? (xa->frame - all) / n / 5 * 4 : 0);
		if (pmax > 1024 && room > pmax - 1024)
			room = pmax - 1024;
		if (room < xa->frame) {
			free(p);
			rc = sb__admin_answer_in(sh, name, args, room, &p, &g->len, why,
						 sizeof why);
		}
	}
	if (rc != 0) {
		if (rc == SB_EINVAL)
			sb__stat_add(&sh->st.invalid_args, 1);
		fail(sh, q, rc, rc == SB_EINVAL ? why : "out of memory");
		return;
	}
	g->p = (uint8_t *)p;
	g->done = 1;
	snprintf(g->id, sizeof g->id, "%s", sh->r->xr->id);

	char rooms[24];
	snprintf(rooms, sizeof rooms, "%zu", room);
	struct sb__nats_hdr h[2] = {{"Sb-Admin", asked[xa->what]}, {"Sb-Room", rooms}};
	uint8_t hdr[128];
	long hn = sb__nats_hdr_build(hdr, sizeof hdr, h, 2);
	uint32_t k = 1;
	for (uint32_t i = 0; i < xs->nlive; i++) {
		char subj[SUBJ_MAX];
		if (xs->live[i].id[0] == 0)
			continue;
		g = &xa->g[k];
		snprintf(g->id, sizeof g->id, "%s", xs->live[i].id);
		struct ask *a = malloc(sizeof *a);
		if (a != NULL)
			*a = (struct ask){sh, q->rid, k};
		k++;
		/* Refused at once (the link down or full): missing now. */
		if (a == NULL || hn <= 0 ||
		    sb__cluster_subject(subj, "sb.c.", g->id, strlen(g->id)) ||
		    sb__nats_request(xs->nc, subj, hdr, (size_t)hn, args.ptr, args.len, deadline,
				     on_answer, a) != 0) {
			free(a);
			g->done = 1;
			continue;
		}
		xa->left++;
	}
	if (xa->left == 0) {
		answer(sh, q);
		return;
	}
	sb__timer_arm(&sh->wheel, &q->timer, sh->now + deadline);
}

/* An xa for the routers this shard knows, or NULL. */
static struct sb__xadmin *xadmin_new(const struct sb__xshard *xs)
{
	uint32_t n = 1;
	for (uint32_t i = 0; i < xs->nlive; i++)
		n += xs->live[i].id[0] != 0;
	struct sb__xadmin *xa = calloc(1, sizeof *xa + n * sizeof xa->g[0]);
	if (xa != NULL)
		xa->n = n;
	return xa;
}

void sb__xadmin_ask(struct sb__shard *sh, struct sb__req *q, const struct sb_msg *m,
		    uint32_t timeout_ms)
{
	struct sb__xadmin *xa = xadmin_new(sh->xs);
	if (xa == NULL) {
		sb__req_fail(sh, q, SB_ENOMEM, "out of memory");
		return;
	}
	ask(sh, q, xa, m->name, m->payload, timeout_ms < ASK_MS ? timeout_ms : ASK_MS);
}

static void on_deadline(struct sb__timer *t)
{
	struct sb__req *q = SB__CONTAINER(t, struct sb__req, timer);
	q->ops->timeout(q->sh, q);
}

void sb__xadmin_http(struct sb__shard *sh, struct sb__conn *c, struct sb_view name,
		     struct sb_view args, int keep, int head)
{
	uint64_t rid;
	struct sb__xadmin *xa = what_of(name) >= 0 ? xadmin_new(sh->xs) : NULL;
	struct sb__req *q = xa != NULL ? sb__reqtab_alloc(&sh->reqs, &rid) : NULL;
	if (q == NULL) {
		free(xa);
		sb__admin_json_later(sh, c, keep, head, SB_ENOMEM, NULL, 0, NULL);
		return;
	}
	/* An entry as request.c makes one, the connection its requester (its
	 * close ends it), with no id of its own: one request at a time. */
	xa->http = 1;
	xa->keep = keep;
	xa->head = head;
	q->rid = rid;
	q->requester = c->ep;
	q->handler = 0;
	q->ops = &sb__xadmin_ops;
	q->sh = sh;
	sb__link_init(&q->by_conn);
	c->inflight++;
	sb__link_add(&c->reqs, &q->by_conn);
	sb__link_add(&sh->req_list, &q->all);
	sb__timer_init(&q->timer, on_deadline);
	sb__stat_add(&sh->st.inflight, 1);
	ask(sh, q, xa, name, args, ASK_MS);
}

static void xadmin_reply(struct sb__shard *sh, struct sb__req *q, uint64_t sender,
			 struct sb__buf *b, uint8_t *f, uint32_t len)
{
	(void)q, (void)sender, (void)f, (void)len;
	sb__stat_add(&sh->st.late_replies, 1); /* nobody was sent it */
	sb__buf_put(b, &sh->pool);
}

/* The deadline: what has come is the answer, the rest is missing. */
static void xadmin_timeout(struct sb__shard *sh, struct sb__req *q)
{
	if (q->xa == NULL) {
		sb__req_fail(sh, q, SB_ETIMEOUT, "no answer within the request's timeout");
		return;
	}
	for (uint32_t i = 0; i < q->xa->n; i++)
		q->xa->g[i].done = 1;
	q->xa->left = 0;
	answer(sh, q);
}

/* The questions still out end on their own (their answers find no entry). */
static void xadmin_cancel(struct sb__shard *sh, struct sb__req *q)
{
	(void)sh, (void)q;
}

static void xadmin_gone(struct sb__shard *sh, struct sb__req *q, uint64_t ep)
{
	(void)sh, (void)q, (void)ep;
}

static void xadmin_free(struct sb__shard *sh, struct sb__req *q)
{
	(void)sh;
	if (q->xa == NULL)
		return;
	for (uint32_t i = 0; i < q->xa->n; i++)
		free(q->xa->g[i].p);
	free(q->xa);
	q->xa = NULL;
}

const struct sb__req_ops sb__xadmin_ops = {
	.reply = xadmin_reply,
	.timeout = xadmin_timeout,
	.cancel = xadmin_cancel,
	.gone = xadmin_gone,
	.free = xadmin_free,
};

/* ---- the asked side ------------------------------------------------------ */

/* sb.c.<R>: another router asks for our answer to a $sb name. */
static void on_question(void *ud, const struct sb__nats_msg *nm)
{
	struct sb__shard *sh = ud;
	const char *name = NULL, *rs = NULL;
	size_t name_len = 0, rs_len = 0, room = sh->r->cfg.max_frame;
	char why[128] = "", *p = NULL, digits[24];
	size_t len = 0;
	int rc = SB_EINVAL;

	if (nm->reply == NULL)
		return;
	if (nm->hdr_len > 0 &&
	    sb__nats_hdr_get(nm->hdr, nm->hdr_len, "Sb-Admin", &name, &name_len)) {
		if (sb__nats_hdr_get(nm->hdr, nm->hdr_len, "Sb-Room", &rs, &rs_len) &&
		    rs_len < sizeof digits) {
			memcpy(digits, rs, rs_len);
			digits[rs_len] = 0;
			size_t want = strtoull(digits, NULL, 10);
			if (want > 0 && want < room)
				room = want;
		}
		rc = sb__admin_answer_in(
			sh, (struct sb_view){(const uint8_t *)name, (uint32_t)name_len},
			(struct sb_view){nm->data, (uint32_t)nm->data_len}, room, &p, &len, why,
			sizeof why);
	}
	struct sb_msg r = {.kind = SB_REPLY, .outcome = {(const uint8_t *)"ok", 2}};
	if (rc == 0) {
		r.payload = (struct sb_view){(const uint8_t *)p, (uint32_t)len};
		long n = sb_encoded_size(&r);
		if (n < 0 || (size_t)n + 64 > sb__nats_max_payload(sh->xs->nc))
			rc = SB_ETOOLARGE;
	}
	if (rc != 0) {
		const char *text = rc == SB_ETOOLARGE ? "the answer is larger than a message"
				   : why[0] != 0      ? why
						      : sb_strerror(rc);
		r = (struct sb_msg){.kind = SB_ERROR, .code = (uint32_t)-rc};
		r.text = (struct sb_view){(const uint8_t *)text, (uint32_t)strlen(text)};
	}
	long n = sb_encoded_size(&r);
	uint8_t *f = n > 0 ? malloc((size_t)n) : NULL;
	if (f != NULL && sb_encode(&r, f, (size_t)n) == n) {
		char inbox[SUBJ_MAX];
		if (nm->reply_len < sizeof inbox) {
			memcpy(inbox, nm->reply, nm->reply_len);
			inbox[nm->reply_len] = 0;
			sb__nats_pub(sh->xs->nc, inbox, NULL, NULL, 0, f, (size_t)n);
		}
	}
	free(f);
	free(p);
}

void sb__xadmin_start(struct sb__shard *sh)
{
	char subj[SUBJ_MAX];
	if (sb__cluster_subject(subj, "sb.c.", sh->r->xr->id, strlen(sh->r->xr->id)) == 0)
		sb__nats_sub(sh->xs->nc, subj, subj, on_question, sh);
}
