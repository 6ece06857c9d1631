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

#include "router/admin.h"
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
	free(p->v);
}

/* [{"name": str, "handlers": [{"peer": str, "shard": uint}]}]; the
 * catch-all's name is "", an in-process handler's peer "(in-process)". */
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
			msgpack_pack_map(pk, 2);
			pack_key(pk, "peer");
			pack_key(pk, peer);
			pack_key(pk, "shard");
			msgpack_pack_uint32(pk, shard);
		}
	}
	peers_free(&p);
	return rc;
}

/* [{"peer": str, "id": uint, "role": str, "shard": uint}] */
static int pack_peers(struct sb__shard *sh, msgpack_packer *pk)
{
	struct peers p;
	int rc = peers_load(sh->r, &p);
	msgpack_pack_array(pk, p.n);
	for (uint32_t i = 0; i < p.n; i++) {
		msgpack_pack_map(pk, 4);
		pack_key(pk, "peer");
		pack_key(pk, p.v[i].name);
		pack_key(pk, "id");
		msgpack_pack_uint32(pk, p.v[i].peer_id);
		pack_key(pk, "role");
		pack_key(pk, p.v[i].service ? "service" : "client");
		pack_key(pk, "shard");
		msgpack_pack_uint32(pk, (uint32_t)(p.v[i].ep >> 56));
	}
	peers_free(&p);
	return rc;
}

/* [{"name": str, "requests": uint, ..., "p99_us": uint}]: every name that
 * has ever had a handler, with counts since the router started. */
static int pack_route_stats(struct sb_router *r, msgpack_packer *pk)
{
	struct sb__rstats *t = &r->rstats;
	pthread_mutex_lock(&t->lock); /* names may be added meanwhile */
	msgpack_pack_array(pk, t->n);
	for (uint32_t i = 0; i < t->n; i++) {
		struct sb__rstat_sum s;
		sb__rstat_sum(t, t->v[i], &s);
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
		pack_str(pk, t->v[i]->name, t->v[i]->len);
		for (size_t k = 0; k < sizeof c / sizeof c[0]; k++) {
			pack_key(pk, c[k].name);
			msgpack_pack_uint64(pk, c[k].v);
		}
	}
	pthread_mutex_unlock(&t->lock);
	return 0;
}

/* {"connections": uint, ..., "shards": [{"shard", "connections", "inflight"}],
 *  "routes": [...]} */
static int pack_stats(struct sb__shard *sh, msgpack_packer *pk)
{
	struct sb_router *r = sh->r;
	struct sb_router_stats s;
	sb_router_stats(r, &s);
	const struct {
		const char *name;
		uint64_t v;
	} c[] = {
		{"connections", s.connections},
		{"frames_in", s.frames_in},
		{"requests", s.requests},
		{"replies", s.replies},
		{"timeouts", s.timeouts},
		{"late_replies", s.late_replies},
		{"no_handler", s.no_handler},
		{"slow_consumers", s.slow_consumers},
		{"inflight", s.inflight},
		{"pauses", s.pauses},
		{"queued_peak", s.queued_peak},
		{"recv_starved", s.recv_starved},
		{"mail_deferred", s.mail_deferred},
		{"mail_backlog_peak", s.mail_backlog_peak},
		{"refused", s.refused},
		{"hello_timeouts", s.hello_timeouts},
		{"invalid_args", s.invalid_args},
		{"auth_failures", s.auth_failures},
		{"auth_blocked", s.auth_blocked},
		{"forbidden", s.forbidden},
		{"addr_refused", s.addr_refused},
		{"inflight_refused", s.inflight_refused},
		{"register_refused", s.register_refused},
		{"idle_pings", s.idle_pings},
		{"idle_timeouts", s.idle_timeouts},
	};
	size_t nc = sizeof c / sizeof c[0];
	msgpack_pack_map(pk, (uint32_t)nc + 2);
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
	pack_key(pk, "routes");
	return pack_route_stats(r, pk);
}

int sb__admin_answer(struct sb__shard *sh, struct sb_view name, char **payload, size_t *len)
{
	static const struct {
		const char *name;
		int (*pack)(struct sb__shard *, msgpack_packer *);
	} answers[] = {
		{"$sb.routes", pack_routes},
		{"$sb.peers", pack_peers},
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
		int rc = answers[i].pack(sh, &pk);
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
