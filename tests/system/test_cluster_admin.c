/* $sb.routes, $sb.peers and $sb.stats for the whole cluster
 * (docs/cluster.md, docs/protocol.md): in-process routers A and B joined
 * through a two-server NATS cluster (A on the first server, B on the
 * second), a third with a small max_frame for paging, and a daemon router
 * that is stopped and killed. Test peers over real sockets ask any router
 * and read the MessagePack answer. Every wait is bounded. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <switchboard/router.h>

#include "common/json.h"
#include "support/admin.h"
#include "support/clock.h"
#include "support/cluster.h"
#include "support/daemon.h"
#include "support/http.h"
#include "support/natsd.h"
#include "support/peer.h"
#include "support/proc.h"
#include "support/router.h"
#include "support/testlib.h"

static struct natsd servers[2];
static struct sb_router *ra, *rb;
static uint16_t pa, pb;
static char ida[24], idb[24]; /* the routers' cluster ids */

/* {"local": true}: one router's own answer. */
static const char LOCAL[] = "\x81\xa5local\xc3";

static int is_str(const msgpack_object *o, const char *s)
{
	return o != NULL && str_is(o, s);
}

static void copy_str(const msgpack_object *o, char *out, size_t cap)
{
	out[0] = 0;
	if (o != NULL && o->type == MSGPACK_OBJECT_STR && o->via.str.size < cap) {
		memcpy(out, o->via.str.ptr, o->via.str.size);
		out[o->via.str.size] = 0;
	}
}

/* The cluster id of the router on port, from its own $sb.peers: every
 * peer it lists is its own. */
static void id_of(uint16_t port, char out[24])
{
	struct peer *p = peer_hello(port, NULL, "client");
	msgpack_unpacked u;
	msgpack_object v = ask_router(p, "$sb.peers", LOCAL, sizeof LOCAL - 1, &u);
	CHECK(v.type == MSGPACK_OBJECT_ARRAY && v.via.array.size >= 1);
	copy_str(v.via.array.size > 0 ? map_get(&v.via.array.ptr[0], "router") : NULL, out, 24);
	CHECK(strlen(out) == 17 && out[0] == 'r');
	msgpack_unpacked_destroy(&u);
	peer_close(p);
}

/* o is an array of exactly the strings want[0..n), in that order. */
static int strs_are(const msgpack_object *o, const char *const *want, uint32_t n)
{
	if (o == NULL || o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != n)
		return 0;
	for (uint32_t i = 0; i < n; i++)
		if (!is_str(&o->via.array.ptr[i], want[i]))
			return 0;
	return 1;
}

/* The keys of map o are exactly the strings want[0..n) (in id order). */
static int keys_are(const msgpack_object *o, const char *const *want, uint32_t n)
{
	if (o == NULL || o->type != MSGPACK_OBJECT_MAP || o->via.map.size != n)
		return 0;
	for (uint32_t i = 0; i < n; i++)
		if (!is_str(&o->via.map.ptr[i].key, want[i]))
			return 0;
	return 1;
}

/* The routers' ids sorted, as answers list them. */
static void sorted2(const char *a, const char *b, const char *out[2])
{
	int lt = strcmp(a, b) < 0;
	out[0] = lt ? a : b;
	out[1] = lt ? b : a;
}

/* Asks name of the router p is on until the answer is from exactly the
 * routers ids (sorted) with none missing: a router knows the others from
 * their heartbeats, which take up to half a second to come (15 s at most). */
static msgpack_object ask_all(struct peer *p, const char *name, const void *payload, size_t len,
			      msgpack_unpacked *u, const char *const *ids, uint32_t n)
{
	uint64_t end = now_ms() + 15000;
	for (;;) {
		msgpack_object v = ask_router(p, name, payload, len, u);
		const msgpack_object *r = map_get(&v, "routers");
		int all = r != NULL && r->type == MSGPACK_OBJECT_MAP ? keys_are(r, ids, n)
								     : strs_are(r, ids, n);
		if (all && strs_are(map_get(&v, "missing"), NULL, 0))
			return v;
		if (now_ms() > end) {
			fprintf(stderr, "  %s answered: ", name);
			msgpack_object_print(stderr, v);
			fprintf(stderr, "\n");
			return v;
		}
		msgpack_unpacked_destroy(u);
	}
}

static uint64_t uint_of(const msgpack_object *o, const char *key)
{
	const msgpack_object *v = o != NULL ? map_get(o, key) : NULL;
	CHECK(v != NULL && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER);
	return v != NULL && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? v->via.u64 : UINT64_MAX;
}

/* A handler of a name in $sb.routes: its peer is want_peer and its router
 * want_router, for either router. */
static int handler_is(const msgpack_object *h, const char *peer, const char *router)
{
	const msgpack_object *internal = map_get(h, "internal");
	return is_str(map_get(h, "peer"), peer) && is_str(map_get(h, "router"), router) &&
	       map_get(h, "shard") != NULL &&
	       map_get(h, "shard")->type == MSGPACK_OBJECT_POSITIVE_INTEGER && internal != NULL &&
	       internal->type == MSGPACK_OBJECT_BOOLEAN && !internal->via.boolean &&
	       map_get(h, "schema") != NULL && map_get(h, "schema")->type == MSGPACK_OBJECT_NIL;
}

/* An operator asks any router for the routes and sees every router's
 * handlers of each name, each with the router it is on. */
static void test_routes_asked_of_any_router_list_every_routers_handlers(void)
{
	struct peer *sa = peer_hello(pa, "orders-a", "service");
	struct peer *sb = peer_hello(pb, "orders-b", "service");
	peer_register(sa, "orders.place", 1);
	peer_register(sb, "orders.place", 1);
	peer_register(sb, "stock.get", 2);
	const char *ids[2];
	sorted2(ida, idb, ids);

	uint16_t ports[2] = {pa, pb};
	for (int i = 0; i < 2; i++) {
		struct peer *cl = peer_hello(ports[i], NULL, "client");
		msgpack_unpacked u;
		msgpack_object v = ask_all(cl, "$sb.routes", NULL, 0, &u, ids, 2);
		CHECK(v.type == MSGPACK_OBJECT_MAP && v.via.map.size == 3);
		CHECK(strs_are(map_get(&v, "routers"), ids, 2));
		CHECK(strs_are(map_get(&v, "missing"), NULL, 0));
		const msgpack_object *routes = map_get(&v, "routes");
		CHECK(routes != NULL && routes->type == MSGPACK_OBJECT_ARRAY);

		/* One entry per name, in byte order of the names. */
		for (uint32_t k = 1; routes != NULL && k < routes->via.array.size; k++) {
			const msgpack_object *a = map_get(&routes->via.array.ptr[k - 1], "name");
			const msgpack_object *b = map_get(&routes->via.array.ptr[k], "name");
			size_t n = a->via.str.size < b->via.str.size ? a->via.str.size
								     : b->via.str.size;
			int c = memcmp(a->via.str.ptr, b->via.str.ptr, n);
			CHECK(c < 0 || (c == 0 && a->via.str.size < b->via.str.size));
		}
		const msgpack_object *place = find_by(routes, "name", "orders.place");
		const msgpack_object *hs = place != NULL ? map_get(place, "handlers") : NULL;
		CHECK(hs != NULL && hs->type == MSGPACK_OBJECT_ARRAY && hs->via.array.size == 2);
		if (hs != NULL && hs->via.array.size == 2) {
			/* Grouped by router, in the order of their ids. */
			const msgpack_object *h0 = &hs->via.array.ptr[0],
					     *h1 = &hs->via.array.ptr[1];
			const char *p0 = ids[0] == ida ? "orders-a" : "orders-b";
			const char *p1 = ids[0] == ida ? "orders-b" : "orders-a";
			CHECK(handler_is(h0, p0, ids[0]));
			CHECK(handler_is(h1, p1, ids[1]));
		}
		const msgpack_object *stock = find_by(routes, "name", "stock.get");
		hs = stock != NULL ? map_get(stock, "handlers") : NULL;
		CHECK(hs != NULL && hs->type == MSGPACK_OBJECT_ARRAY && hs->via.array.size == 1);
		if (hs != NULL && hs->via.array.size == 1)
			CHECK(handler_is(&hs->via.array.ptr[0], "orders-b", idb));
		msgpack_unpacked_destroy(&u);
		peer_close(cl);
	}
	peer_close(sa);
	peer_close(sb);
}

/* A peer's count in $sb.peers, and whether each is on router. */
static int peer_count(const msgpack_object *peers, const char *name, const char *router)
{
	int n = 0;
	for (uint32_t i = 0; peers != NULL && i < peers->via.array.size; i++) {
		const msgpack_object *p = &peers->via.array.ptr[i];
		if (is_str(map_get(p, "peer"), name)) {
			CHECK(is_str(map_get(p, "router"), router));
			n++;
		}
	}
	return n;
}

static void test_peers_lists_the_peers_of_every_router_with_their_router(void)
{
	struct peer *alice = peer_hello(pa, "alice", "client");
	struct peer *bob = peer_hello(pb, "bob", "service");
	const char *ids[2];
	sorted2(ida, idb, ids);

	msgpack_unpacked u;
	msgpack_object v = ask_all(bob, "$sb.peers", NULL, 0, &u, ids, 2);
	CHECK(v.type == MSGPACK_OBJECT_MAP && v.via.map.size == 3);
	CHECK(strs_are(map_get(&v, "routers"), ids, 2));
	CHECK(strs_are(map_get(&v, "missing"), NULL, 0));
	const msgpack_object *peers = map_get(&v, "peers");
	CHECK(peers != NULL && peers->type == MSGPACK_OBJECT_ARRAY);
	CHECK_INT(peer_count(peers, "alice", ida), 1);
	CHECK_INT(peer_count(peers, "bob", idb), 1);
	const msgpack_object *a = find_by(peers, "peer", "alice");
	CHECK(a != NULL && is_str(map_get(a, "role"), "client"));
	CHECK(a != NULL && uint_of(a, "id") == alice->peer_id);
	const msgpack_object *b = find_by(peers, "peer", "bob");
	CHECK(b != NULL && is_str(map_get(b, "role"), "service"));
	CHECK(b != NULL && uint_of(b, "id") == bob->peer_id);
	msgpack_unpacked_destroy(&u);
	peer_close(alice);
	peer_close(bob);
}

/* n requests from cl to name, each answered by svc (on cl's own router:
 * local first). */
static void requests(struct peer *cl, struct peer *svc, const char *name, int n)
{
	for (int i = 0; i < n; i++) {
		peer_request(cl, name, (uint64_t)i + 1, 20000, NULL, 0);
		uint64_t rid = peer_expect(svc, SB_REQUEST)->id;
		peer_reply(svc, rid, "ok", 0, NULL, 0);
		CHECK(peer_expect(cl, SB_REPLY)->id == (uint64_t)i + 1);
	}
}

static void test_stats_sum_every_router_and_keep_each_routers_own(void)
{
	struct peer *sa = peer_hello(pa, NULL, "service");
	struct peer *sb = peer_hello(pb, NULL, "service");
	struct peer *ca = peer_hello(pa, NULL, "client");
	struct peer *cb = peer_hello(pb, NULL, "client");
	peer_register(sa, "tally", 1);
	peer_register(sb, "tally", 1);
	requests(ca, sa, "tally", 3);
	requests(cb, sb, "tally", 5);
	const char *ids[2];
	sorted2(ida, idb, ids);

	msgpack_unpacked u;
	msgpack_object v = ask_all(ca, "$sb.stats", NULL, 0, &u, ids, 2);
	CHECK(v.type == MSGPACK_OBJECT_MAP);
	const msgpack_object *routers = map_get(&v, "routers");
	CHECK(keys_are(routers, ids, 2));
	CHECK(strs_are(map_get(&v, "missing"), NULL, 0));
	CHECK(map_get(&v, "shards") == NULL); /* each router's, under "routers" */
	const msgpack_object *more = map_get(&v, "routes_more");
	CHECK(more != NULL && more->type == MSGPACK_OBJECT_BOOLEAN && !more->via.boolean);
	const msgpack_object *ra_ = routers != NULL ? map_get(routers, ida) : NULL;
	const msgpack_object *rb_ = routers != NULL ? map_get(routers, idb) : NULL;
	CHECK(ra_ != NULL && rb_ != NULL);
	if (ra_ == NULL || rb_ == NULL) {
		msgpack_unpacked_destroy(&u);
		return;
	}

	/* Every counter at the top is the routers' sum (a peak: the higher),
	 * and each router's own are there with its shards and no routes. */
	uint32_t counters = 0;
	for (uint32_t i = 0; i < ra_->via.map.size; i++) {
		const msgpack_object *k = &ra_->via.map.ptr[i].key;
		char key[64];
		copy_str(k, key, sizeof key);
		if (strcmp(key, "shards") == 0)
			continue;
		uint64_t x = uint_of(ra_, key), y = uint_of(rb_, key), top = uint_of(&v, key);
		if (strcmp(key, "queued_peak") == 0 || strcmp(key, "mail_backlog_peak") == 0)
			CHECK(top == (x > y ? x : y));
		else if (top != x + y) {
			fprintf(stderr, "  %s: %llu at the top, %llu + %llu\n", key,
				(unsigned long long)top, (unsigned long long)x,
				(unsigned long long)y);
			CHECK(top == x + y);
		}
		counters++;
	}
	CHECK_INT(counters, 31); /* struct sb_router_stats, each summed */
	CHECK(uint_of(ra_, "requests") >= 3 && uint_of(rb_, "requests") >= 5);
	const msgpack_object *sh = map_get(ra_, "shards");
	CHECK(sh != NULL && sh->type == MSGPACK_OBJECT_ARRAY && sh->via.array.size == 2);
	CHECK(map_get(ra_, "routes") == NULL && map_get(ra_, "routes_more") == NULL);

	/* The name's counts per router, each entry naming its router. */
	const msgpack_object *routes = map_get(&v, "routes");
	CHECK(routes != NULL && routes->type == MSGPACK_OBJECT_ARRAY);
	int seen = 0;
	for (uint32_t i = 0; routes != NULL && i < routes->via.array.size; i++) {
		const msgpack_object *r = &routes->via.array.ptr[i];
		if (!is_str(map_get(r, "name"), "tally"))
			continue;
		int on_a = is_str(map_get(r, "router"), ida);
		CHECK(on_a || is_str(map_get(r, "router"), idb));
		CHECK(uint_of(r, "requests") == (on_a ? 3u : 5u));
		CHECK(uint_of(r, "replies") == (on_a ? 3u : 5u));
		CHECK(uint_of(r, "errors") == 0 && uint_of(r, "timeouts") == 0);
		/* The two are side by side, in the order of the routers' ids. */
		CHECK(is_str(map_get(r, "router"), ids[seen]));
		seen++;
	}
	CHECK_INT(seen, 2);
	msgpack_unpacked_destroy(&u);
	peer_close(ca);
	peer_close(cb);
	peer_close(sa);
	peer_close(sb);
}

/* A router whose max_frame holds a few routes a page: every route of
 * every router, walked with "after", comes exactly once, a name's routes
 * from both routers on one page, the names in order. */
static void test_stats_pages_hold_every_routers_routes_once_with_after(void)
{
	struct sb_router_config cfg = router_config();
	cfg.cluster = servers[1].url;
	cfg.max_frame = 8192;
	cfg.out_max = 1 << 20;
	struct sb_router *rs = router_open(&cfg);
	char ids_[24];
	id_of(sb_router_port(rs), ids_);
	struct peer *sa = peer_hello(pa, NULL, "service");
	struct peer *sb = peer_hello(pb, NULL, "service");
	enum { NAMES = 40 };
	for (int i = 0; i < NAMES; i++) {
		char name[32];
		snprintf(name, sizeof name, "page.%02d", i);
		peer_register(sa, name, (uint64_t)i + 1);
		peer_register(sb, name, (uint64_t)i + 1);
	}
	const char *three[3] = {ida, idb, ids_};
	for (int i = 0; i < 2; i++) /* sorted */
		for (int j = 0; j < 2 - i; j++)
			if (strcmp(three[j], three[j + 1]) > 0) {
				const char *t = three[j];
				three[j] = three[j + 1];
				three[j + 1] = t;
			}
	struct peer *cl = peer_hello(sb_router_port(rs), NULL, "client");
	msgpack_unpacked u;
	/* Until the new router has heard both others. */
	msgpack_object v = ask_all(cl, "$sb.stats", NULL, 0, &u, three, 3);
	CHECK(keys_are(map_get(&v, "routers"), three, 3));
	msgpack_unpacked_destroy(&u);

	int count[NAMES][2] = {{0}}, pages = 0;
	char after[64] = "", prev[64] = "";
	for (int more = 1; more && pages < 200; pages++) {
		char arg[80];
		size_t n = strlen(after), len = 0;
		if (pages > 0) {
			memcpy(arg,
			       "\x81\xa5"
			       "after",
			       7);
			arg[7] = (char)(0xa0 | n);
			memcpy(arg + 8, after, n);
			len = n + 8;
		}
		v = ask_router(cl, "$sb.stats", len ? arg : NULL, len, &u);
		CHECK(strs_are(map_get(&v, "missing"), NULL, 0));
		const msgpack_object *routes = map_get(&v, "routes");
		const msgpack_object *m = map_get(&v, "routes_more");
		CHECK(routes != NULL && routes->type == MSGPACK_OBJECT_ARRAY && m != NULL);
		if (routes == NULL || m == NULL)
			break;
		more = m->via.boolean;
		CHECK(!more || routes->via.array.size > 0);
		for (uint32_t i = 0; i < routes->via.array.size; i++) {
			char name[64];
			copy_str(map_get(&routes->via.array.ptr[i], "name"), name, sizeof name);
			CHECK(strcmp(prev, name) <= 0 || pages == 0);
			snprintf(prev, sizeof prev, "%s", name);
			int k;
			if (sscanf(name, "page.%d", &k) == 1 && k >= 0 && k < NAMES) {
				int on_a =
					is_str(map_get(&routes->via.array.ptr[i], "router"), ida);
				CHECK(on_a ||
				      is_str(map_get(&routes->via.array.ptr[i], "router"), idb));
				count[k][!on_a]++;
			}
		}
		/* A name's routes whole on the page that has any of them. */
		if (routes->via.array.size > 0) {
			copy_str(
				map_get(&routes->via.array.ptr[routes->via.array.size - 1], "name"),
				after, sizeof after);
			int k;
			if (sscanf(after, "page.%d", &k) == 1 && k >= 0 && k < NAMES)
				CHECK(count[k][0] == 1 && count[k][1] == 1);
		}
		msgpack_unpacked_destroy(&u);
	}
	CHECK(pages > 1 && pages < 200); /* it took more than one page, and ended */
	for (int k = 0; k < NAMES; k++)
		CHECK(count[k][0] == 1 && count[k][1] == 1);
	peer_close(cl);
	peer_close(sa);
	peer_close(sb);
	router_close(rs);
}

static void test_local_true_gives_one_routers_answer(void)
{
	struct peer *sa = peer_hello(pa, "here-a", "service");
	struct peer *sb = peer_hello(pb, "there-b", "service");
	peer_register(sa, "only.here", 1);
	peer_register(sb, "only.there", 1);
	const char *ids[2];
	sorted2(ida, idb, ids);
	msgpack_unpacked u;
	/* Once the whole cluster's answer has both, the local one has one. */
	ask_all(sa, "$sb.peers", NULL, 0, &u, ids, 2);
	msgpack_unpacked_destroy(&u);

	msgpack_object v = ask_router(sa, "$sb.peers", LOCAL, sizeof LOCAL - 1, &u);
	CHECK(v.type == MSGPACK_OBJECT_ARRAY);
	CHECK(find_by(&v, "peer", "here-a") != NULL && find_by(&v, "peer", "there-b") == NULL);
	for (uint32_t i = 0; v.type == MSGPACK_OBJECT_ARRAY && i < v.via.array.size; i++)
		CHECK(is_str(map_get(&v.via.array.ptr[i], "router"), ida));
	msgpack_unpacked_destroy(&u);

	v = ask_router(sa, "$sb.routes", LOCAL, sizeof LOCAL - 1, &u);
	CHECK(v.type == MSGPACK_OBJECT_ARRAY);
	CHECK(find_by(&v, "name", "only.here") != NULL &&
	      find_by(&v, "name", "only.there") == NULL);
	const msgpack_object *h = find_by(&v, "name", "only.here");
	h = h != NULL ? map_get(h, "handlers") : NULL;
	CHECK(h != NULL && h->via.array.size == 1 &&
	      map_get(&h->via.array.ptr[0], "router") == NULL);
	msgpack_unpacked_destroy(&u);

	/* $sb.stats's arguments together: "after" with "local". */
	static const char both[] = "\x82\xa5local\xc3\xa5"
				   "after\xa9only.here";
	v = ask_router(sa, "$sb.stats", both, sizeof both - 1, &u);
	CHECK(v.type == MSGPACK_OBJECT_MAP && map_get(&v, "routers") == NULL &&
	      map_get(&v, "missing") == NULL);
	const msgpack_object *sh = map_get(&v, "shards");
	CHECK(sh != NULL && sh->type == MSGPACK_OBJECT_ARRAY && sh->via.array.size == 2);
	const msgpack_object *routes = map_get(&v, "routes");
	CHECK(routes != NULL && find_by(routes, "name", "only.here") == NULL);
	for (uint32_t i = 0; routes != NULL && i < routes->via.array.size; i++)
		CHECK(map_get(&routes->via.array.ptr[i], "router") == NULL);
	msgpack_unpacked_destroy(&u);

	/* Bad arguments are refused as on a router alone. */
	static const char bad[] = "\x81\xa5"
				  "after\x05";
	peer_request(sa, "$sb.stats", 9, 0, bad, sizeof bad - 1);
	struct sb_msg *e = peer_expect(sa, SB_ERROR);
	CHECK(e->id == 9 && e->code == (uint32_t)-SB_EINVAL);
	CHECK(v_is(e->text, "$sb.stats: \"after\" must be a string"));
	peer_close(sa);
	peer_close(sb);
}

/* $sb.peers from A, in the cluster's form: its "missing", and whether the
 * daemon's peer is listed. */
static void peers_from(struct peer *p, uint64_t id, const char *const *missing, uint32_t nm,
		       int with_d)
{
	peer_request(p, "$sb.peers", id, 0, NULL, 0);
	struct sb_msg *r = peer_expect(p, SB_REPLY);
	CHECK(r->id == id && v_is(r->outcome, "ok"));
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	CHECK(msgpack_unpack_next(&u, (const char *)r->payload.ptr, r->payload.len, NULL) ==
	      MSGPACK_UNPACK_SUCCESS);
	if (!strs_are(map_get(&u.data, "missing"), missing, nm)) {
		fprintf(stderr, "  $sb.peers %llu answered: ", (unsigned long long)id);
		msgpack_object_print(stderr, u.data);
		fprintf(stderr, "\n");
		CHECK(!"the routers missing are those expected");
	}
	const msgpack_object *peers = map_get(&u.data, "peers");
	CHECK((find_by(peers, "peer", "on-d") != NULL) == with_d);
	CHECK(find_by(peers, "peer", "on-a") != NULL);
	msgpack_unpacked_destroy(&u);
}

/* GET path on A's admin listener, its JSON body read back as MessagePack
 * (nil if it is not JSON) into u. */
static msgpack_object get_json(int fd, const char *path, struct http_answer *h,
			       struct sb__json_buf *mp, msgpack_unpacked *u)
{
	struct sb__json_error e;
	memset(mp, 0, sizeof *mp);
	msgpack_unpacked_init(u);
	if (fd >= 0)
		http_ask(fd, "GET", path, NULL, h);
	else
		http_get(sb_router_admin_port(ra), path, h);
	CHECK_INT(h->status, 200);
	if (h->body != NULL && sb__json_parse(h->body, h->body_len, mp, &e) == 0)
		CHECK(msgpack_unpack_next(u, mp->data, mp->len, NULL) == MSGPACK_UNPACK_SUCCESS);
	return u->data;
}

static void got_free(struct http_answer *h, struct sb__json_buf *mp, msgpack_unpacked *u)
{
	http_answer_free(h);
	sb__json_buf_free(mp);
	msgpack_unpacked_destroy(u);
}

/* The admin listener's /v1/routes, /v1/peers and /v1/stats give what the $sb names give: the whole
 * cluster's, or with ?local=true this router's own; requests that follow
 * one on a kept-alive connection are answered after it, in order. */
static void test_the_admin_listener_answers_for_the_whole_cluster_or_local(void)
{
	struct peer *alice = peer_hello(pa, "v1-alice", "client");
	struct peer *bob = peer_hello(pb, "v1-bob", "client");
	const char *ids[2];
	sorted2(ida, idb, ids);
	msgpack_unpacked u;
	ask_all(alice, "$sb.peers", NULL, 0, &u, ids, 2); /* both routers known */
	msgpack_unpacked_destroy(&u);

	struct http_answer h;
	struct sb__json_buf mp;
	msgpack_object v = get_json(-1, "/v1/peers", &h, &mp, &u);
	CHECK(strs_are(map_get(&v, "routers"), ids, 2));
	CHECK(strs_are(map_get(&v, "missing"), NULL, 0));
	CHECK_INT(peer_count(map_get(&v, "peers"), "v1-alice", ida), 1);
	CHECK_INT(peer_count(map_get(&v, "peers"), "v1-bob", idb), 1);
	got_free(&h, &mp, &u);

	v = get_json(-1, "/v1/peers?local=true", &h, &mp, &u);
	CHECK(v.type == MSGPACK_OBJECT_ARRAY);
	CHECK(find_by(&v, "peer", "v1-alice") != NULL && find_by(&v, "peer", "v1-bob") == NULL);
	got_free(&h, &mp, &u);

	v = get_json(-1, "/v1/stats", &h, &mp, &u);
	CHECK(keys_are(map_get(&v, "routers"), ids, 2) && map_get(&v, "shards") == NULL);
	got_free(&h, &mp, &u);
	v = get_json(-1, "/v1/stats?after=%7E", &h, &mp, &u); /* after "~": none */
	CHECK(map_get(&v, "routes") != NULL && map_get(&v, "routes")->via.array.size == 0);
	got_free(&h, &mp, &u);

	/* Pipelined: the second waits for the first's gathered answer. */
	int fd = http_dial(NULL, sb_router_admin_port(ra));
	static const char first[] = "GET /v1/peers HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
	CHECK(write(fd, first, sizeof first - 1) == (ssize_t)(sizeof first - 1));
	v = get_json(fd, "/v1/routes", &h, &mp, &u); /* answers the first */
	CHECK(map_get(&v, "peers") != NULL && map_get(&v, "routes") == NULL);
	got_free(&h, &mp, &u);
	v = get_json(fd, "/v1/routes?local=true", &h, &mp, &u); /* the second's */
	CHECK(map_get(&v, "routes") != NULL && map_get(&v, "peers") == NULL);
	got_free(&h, &mp, &u);
	close(fd);
	peer_close(alice);
	peer_close(bob);
}

/* SIGSTOP, and wait until every thread of pid (our child) has stopped:
 * kill() returns before they do. */
static void stop(pid_t pid)
{
	int st = 0;
	CHECK(kill(pid, SIGSTOP) == 0);
	CHECK(waitpid(pid, &st, WUNTRACED) == pid && WIFSTOPPED(st));
}

/* A router that stops answering (SIGSTOP) is listed under "missing" at
 * the deadline, the others' answers given all the same, exactly once;
 * one killed while asked is missing too, never a hang. */
static void test_a_router_that_does_not_answer_is_listed_missing(void)
{
	const char *flags[] = {"--cluster", servers[0].url, NULL};
	struct daemon d = daemon_start(0, flags);
	char idd[24];
	id_of(d.port, idd);
	struct peer *on_d = peer_hello(d.port, "on-d", "client");
	struct peer *on_a = peer_hello(pa, "on-a", "client");
	const char *three[3] = {ida, idb, idd};
	for (int i = 0; i < 2; i++)
		for (int j = 0; j < 2 - i; j++)
			if (strcmp(three[j], three[j + 1]) > 0) {
				const char *t = three[j];
				three[j] = three[j + 1];
				three[j + 1] = t;
			}
	msgpack_unpacked u;
	ask_all(on_a, "$sb.peers", NULL, 0, &u, three, 3);
	msgpack_unpacked_destroy(&u);
	peers_from(on_a, 1, NULL, 0, 1);

	const char *missing[1] = {idd};
	stop(d.pid);
	peers_from(on_a, 2, missing, 1, 0);
	/* Cancelled while it waits: `cancelled`, and nothing at the deadline. */
	peer_request(on_a, "$sb.peers", 4, 0, NULL, 0);
	struct sb_msg c = {.kind = SB_CANCEL, .id = 4};
	peer_send(on_a, &c);
	struct sb_msg *e = peer_expect(on_a, SB_ERROR);
	CHECK(e->id == 4 && e->code == (uint32_t)-SB_ECANCELLED);
	peer_expect_silence(on_a, 1200); /* past the 1 s deadline */
	/* The stopped router's late answers reach nobody. */
	kill(d.pid, SIGCONT);
	peer_expect_silence(on_a, 500);

	/* Killed while asked: stopped so the question waits, then killed. */
	stop(d.pid);
	peer_request(on_a, "$sb.peers", 3, 0, NULL, 0);
	daemon_kill(&d);
	struct sb_msg *r = peer_expect(on_a, SB_REPLY);
	CHECK(r->id == 3 && v_is(r->outcome, "ok"));
	msgpack_unpacked_init(&u);
	CHECK(msgpack_unpack_next(&u, (const char *)r->payload.ptr, r->payload.len, NULL) ==
	      MSGPACK_UNPACK_SUCCESS);
	CHECK(strs_are(map_get(&u.data, "missing"), missing, 1));
	msgpack_unpacked_destroy(&u);
	peer_expect_silence(on_a, 200);
	peer_close(on_a);
	peer_close(on_d);
}

/* The routers' heartbeats are what keeps a router known alive: a handler
 * on another router that says nothing for longer than the dead time (3 s)
 * after its first progress is still there, and its reply arrives. */
static void test_a_handler_quiet_past_the_dead_time_on_a_live_router_still_answers(void)
{
	struct peer *svc = peer_hello(pa, NULL, "service");
	peer_register(svc, "slow.report", 1);
	struct peer *cl = peer_hello(pb, NULL, "client");
	CHECK(cluster_until_reachable(cl, svc, "slow.report"));

	peer_request(cl, "slow.report", 5, 60000, NULL, 0);
	uint64_t rid = peer_expect(svc, SB_REQUEST)->id;
	peer_reply(svc, rid, "started", SB_F_MORE, NULL, 0);
	CHECK(peer_expect(cl, SB_REPLY)->id == 5);
	/* Quiet for twice the dead time: only heartbeats cross meanwhile. */
	peer_expect_silence(cl, 6000);
	peer_reply(svc, rid, "done", 0, NULL, 0);
	struct sb_msg *r = peer_expect(cl, SB_REPLY);
	CHECK(r->id == 5 && v_is(r->outcome, "done"));
	peer_close(cl);
	peer_close(svc);
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc < 2) {
		fprintf(stderr, "usage: test_system_cluster_admin PATH-TO-SWITCHBOARD\n");
		return 2;
	}
	daemon_path = argv[1];
	watchdog("test_cluster_admin", 280);
	if (natsd_start(servers, 2, 0) != 0)
		return 1;
	struct sb_router_config cfg = router_config();
	cfg.cluster = servers[0].url;
	cfg.admin_port = 0; /* A's admin listener */
	ra = router_open(&cfg);
	rb = cluster_join(servers[1].url);
	pa = sb_router_port(ra);
	pb = sb_router_port(rb);
	id_of(pa, ida);
	id_of(pb, idb);
	RUN(test_a_handler_quiet_past_the_dead_time_on_a_live_router_still_answers);
	RUN(test_routes_asked_of_any_router_list_every_routers_handlers);
	RUN(test_peers_lists_the_peers_of_every_router_with_their_router);
	RUN(test_stats_sum_every_router_and_keep_each_routers_own);
	RUN(test_stats_pages_hold_every_routers_routes_once_with_after);
	RUN(test_local_true_gives_one_routers_answer);
	RUN(test_the_admin_listener_answers_for_the_whole_cluster_or_local);
	RUN(test_a_router_that_does_not_answer_is_listed_missing);
	router_close(ra);
	router_close(rb);
	natsd_stop(&servers[0]);
	natsd_stop(&servers[1]);
	return TEST_EXIT();
}
