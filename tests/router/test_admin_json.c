/* The admin listener's JSON: GET /v1/routes, /v1/peers and /v1/stats over
 * a real socket say what $sb.routes, $sb.peers and $sb.stats say to a peer
 * asking at the same moment, /v1/stats in the same pages (?after=NAME,
 * percent-encoded), and a bad ?after= is a 400 with the edge's error body.
 * An in-process router with two shards and an admin port; peers speak raw
 * frames; HTTP is support/http.c's plain client. */
#include <switchboard/router.h>

#include <msgpack.h>

#include "common/json.h"
#include "support/admin.h"
#include "support/http.h"
#include "support/peer.h"
#include "support/router.h"

/* One answer, its body parsed from JSON by our converter and read with
 * msgpack-c (nil if it was not JSON). */
struct answer {
	struct http_answer h;
	struct sb__json_buf mp;
	msgpack_unpacked u;
	msgpack_object v;
};

static void get_json(const char *target, struct answer *a)
{
	struct sb__json_error e;

	memset(a, 0, sizeof *a);
	http_get(sb_router_admin_port(R), target, &a->h);
	msgpack_unpacked_init(&a->u);
	if (a->h.body != NULL && sb__json_parse(a->h.body, a->h.body_len, &a->mp, &e) == 0) {
		CHECK(msgpack_unpack_next(&a->u, a->mp.data, a->mp.len, NULL) ==
		      MSGPACK_UNPACK_SUCCESS);
		a->v = a->u.data;
	}
}

static void answer_free(struct answer *a)
{
	http_answer_free(&a->h);
	sb__json_buf_free(&a->mp);
	msgpack_unpacked_destroy(&a->u);
}

/* The JSON of one MessagePack object, for comparing values whatever
 * widths their encoders chose. */
static char *json_of(const msgpack_object *o)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct sb__json_buf b = {0};
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_object(&pk, *o);
	CHECK_INT(sb__json_print(sb.data, sb.size, &b), 0);
	msgpack_sbuffer_destroy(&sb);
	return b.data != NULL ? b.data : strdup("");
}

/* Each element of array @p got (the HTTP answer) is the element of @p want
 * ($sb.*) with the same @p key, and the two have as many. */
static void same_elements(const msgpack_object *got, const msgpack_object *want, const char *key)
{
	CHECK(got->type == MSGPACK_OBJECT_ARRAY && want->type == MSGPACK_OBJECT_ARRAY);
	if (got->type != MSGPACK_OBJECT_ARRAY || want->type != MSGPACK_OBJECT_ARRAY)
		return;
	CHECK_INT(got->via.array.size, want->via.array.size);
	for (uint32_t i = 0; i < want->via.array.size; i++) {
		const msgpack_object *w = &want->via.array.ptr[i], *k = map_get(w, key);
		CHECK(k != NULL && k->type == MSGPACK_OBJECT_STR);
		char name[300];
		snprintf(name, sizeof name, "%.*s", (int)k->via.str.size, k->via.str.ptr);
		const msgpack_object *g = find_by(got, key, name);
		CHECK(g != NULL);
		if (g == NULL)
			continue;
		char *gj = json_of(g), *wj = json_of(w);
		CHECK_STR(gj, wj);
		free(gj);
		free(wj);
	}
}

static struct sb_router_config admin_config(void)
{
	struct sb_router_config cfg = router_config();
	cfg.admin_port = 0;
	return cfg;
}

/* An operator's scraper reads the routes (schemas, internal flags), the
 * peers and the counters as JSON, and finds what a peer's $sb requests
 * answer: the same names, handlers, peers and counters. */
static void test_json_endpoints_say_what_the_sb_names_say(void)
{
	static const char schema[] = "{\"keys\":{\"email\":{\"type\":\"str\",\"max\":255}},"
				     "\"required\":[\"email\"],\"additional\":false}";
	struct sb_router_config cfg = admin_config();
	router_start(&cfg);
	CHECK(sb_router_admin_port(R) != 0);
	struct peer *svc = peer_hello(PORT, "json-svc", "service");
	struct peer *other = peer_hello(PORT, "json-other", "service");
	struct peer *cli = peer_hello(PORT, "json-cli", "client");
	struct sb__json_buf mp = {0};
	struct sb__json_error je;
	CHECK_INT(sb__json_parse(schema, strlen(schema), &mp, &je), 0);
	struct sb_msg reg = {.kind = SB_REGISTER,
			     .flags = SB_F_INTERNAL,
			     .id = 1,
			     .name = v_str("user.create"),
			     .payload = {(const uint8_t *)mp.data, (uint32_t)mp.len}};
	peer_send(svc, &reg);
	CHECK(peer_expect(svc, SB_ACK)->id == 1);
	peer_register(other, "user.create", 2);
	peer_register(other, "ping", 3);
	peer_request(svc, "ping", 4, 0, NULL, 0);
	peer_reply(other, peer_expect(other, SB_REQUEST)->id, "pong", 0, NULL, 0);
	CHECK(v_is(peer_expect(svc, SB_REPLY)->outcome, "pong"));

	struct answer a;
	msgpack_unpacked u;
	get_json("/v1/routes", &a);
	CHECK_INT(a.h.status, 200);
	char ct[64];
	CHECK_STR(http_field(&a.h, "Content-Type", ct, sizeof ct), "application/json");
	msgpack_object routes = ask_router(cli, "$sb.routes", NULL, 0, &u);
	same_elements(&a.v, &routes, "name");
	/* ...and what the routes hold is there: the schema, the flag. */
	const msgpack_object *r = find_by(&a.v, "name", "user.create");
	const msgpack_object *hs = r != NULL ? map_get(r, "handlers") : NULL;
	const msgpack_object *h = hs != NULL ? find_by(hs, "peer", "json-svc") : NULL;
	CHECK(h != NULL);
	if (h != NULL) {
		char *s = json_of(map_get(h, "schema"));
		CHECK_STR(s, schema);
		free(s);
		const msgpack_object *in = map_get(h, "internal");
		CHECK(in != NULL && in->type == MSGPACK_OBJECT_BOOLEAN && in->via.boolean);
	}
	msgpack_unpacked_destroy(&u);
	answer_free(&a);

	get_json("/v1/peers", &a);
	CHECK_INT(a.h.status, 200);
	msgpack_object peers = ask_router(cli, "$sb.peers", NULL, 0, &u);
	same_elements(&a.v, &peers, "peer");
	CHECK_INT(a.v.type == MSGPACK_OBJECT_ARRAY ? a.v.via.array.size : 0, 3);
	msgpack_unpacked_destroy(&u);
	answer_free(&a);

	/* The counters move with every frame, the HTTP read's own aside:
	 * the same keys, the same shards, the same per-route counts (nothing
	 * is routed between the two reads). */
	get_json("/v1/stats", &a);
	CHECK_INT(a.h.status, 200);
	msgpack_object st = ask_router(cli, "$sb.stats", NULL, 0, &u);
	CHECK(a.v.type == MSGPACK_OBJECT_MAP && st.type == MSGPACK_OBJECT_MAP);
	CHECK_INT(a.v.type == MSGPACK_OBJECT_MAP ? a.v.via.map.size : 0, st.via.map.size);
	for (uint32_t i = 0; st.type == MSGPACK_OBJECT_MAP && i < st.via.map.size; i++) {
		char k[64];
		const msgpack_object *key = &st.via.map.ptr[i].key;
		snprintf(k, sizeof k, "%.*s", (int)key->via.str.size, key->via.str.ptr);
		const msgpack_object *g = map_get(&a.v, k);
		CHECK(g != NULL && g->type == st.via.map.ptr[i].val.type);
	}
	const msgpack_object *gr = map_get(&a.v, "routes"), *wr = map_get(&st, "routes");
	CHECK(gr != NULL && wr != NULL);
	if (gr != NULL && wr != NULL)
		same_elements(gr, wr, "name");
	const msgpack_object *ping = gr != NULL ? find_by(gr, "name", "ping") : NULL;
	CHECK(ping != NULL && map_get(ping, "replies") != NULL &&
	      map_get(ping, "replies")->via.u64 == 1);
	msgpack_unpacked_destroy(&u);
	answer_free(&a);

	sb__json_buf_free(&mp);
	peer_close(svc);
	peer_close(other);
	peer_close(cli);
	router_stop();
}

/* Names as a URL carries them: every byte outside the unreserved set as
 * %XX, as encodeURIComponent() does. */
static void pct(const char *s, char *out, size_t cap)
{
	size_t n = 0;
	for (; *s != 0 && n + 4 < cap; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    strchr("-_.!~*'()", c) != NULL)
			out[n++] = (char)c;
		else
			n += (size_t)snprintf(out + n, cap - n, "%%%02X", c);
	}
	out[n] = 0;
}

/* More routes than one frame holds: /v1/stats gives them a page at a time,
 * as $sb.stats does, and ?after=NAME (percent-encoded, whatever the name
 * holds: & + % ? # / and UTF-8) reads on, every name once. A bad ?after=
 * is refused with a 400 that says why. */
static void test_stats_pages_read_on_after_a_percent_encoded_name(void)
{
	enum { NAMES = 90 };
	static const char *const odd[] = {"a&b", "a+b", "a%b", "a?b",
					  "a#b", "a/b", "a=b", "\xc3\xbc"};
	struct sb_router_config cfg = admin_config();
	cfg.max_frame = 4096;
	router_start(&cfg);
	struct peer *svc = peer_hello(PORT, "pages-svc", "service");
	char names[NAMES][32];
	for (int i = 0; i < NAMES; i++) {
		snprintf(names[i], sizeof names[i], "%s.%02d", odd[i % 8], i);
		struct sb_msg m = {
			.kind = SB_REGISTER, .id = 1 + (uint64_t)i, .name = v_str(names[i])};
		peer_send(svc, &m);
	}
	for (int i = 0; i < NAMES; i++)
		peer_expect(svc, SB_ACK);

	int seen = 0, pages = 0, more = 1;
	char last[64] = "", target[256], enc[200];
	while (more && pages < NAMES) {
		struct answer a;
		pct(last, enc, sizeof enc);
		snprintf(target, sizeof target, pages == 0 ? "/v1/stats" : "/v1/stats?after=%s",
			 enc);
		get_json(target, &a);
		CHECK_INT(a.h.status, 200);
		const msgpack_object *routes = map_get(&a.v, "routes");
		const msgpack_object *m = map_get(&a.v, "routes_more");
		CHECK(routes != NULL && routes->type == MSGPACK_OBJECT_ARRAY);
		CHECK(m != NULL && m->type == MSGPACK_OBJECT_BOOLEAN);
		more = m != NULL && m->type == MSGPACK_OBJECT_BOOLEAN && m->via.boolean;
		for (uint32_t i = 0; routes != NULL && i < routes->via.array.size; i++) {
			const msgpack_object *name = map_get(&routes->via.array.ptr[i], "name");
			CHECK(name != NULL && name->type == MSGPACK_OBJECT_STR);
			if (name == NULL || name->type != MSGPACK_OBJECT_STR)
				break;
			char got[64];
			snprintf(got, sizeof got, "%.*s", (int)name->via.str.size,
				 name->via.str.ptr);
			/* In byte order, each after the one before. */
			CHECK(strcmp(got, last) > 0);
			snprintf(last, sizeof last, "%s", got);
			seen++;
		}
		answer_free(&a);
		pages++;
	}
	CHECK_INT(seen, NAMES);
	CHECK(pages > 1);

	struct answer a;
	get_json("/v1/stats?after=%zz", &a);
	CHECK_INT(a.h.status, 400);
	CHECK(str_is(map_get(&a.v, "code"), "SB_EINVAL"));
	CHECK(str_is(map_get(&a.v, "message"),
		     "after must name a route: at most 255 bytes, percent-encoded"));
	answer_free(&a);
	peer_close(svc);
	router_stop();
}

int main(void)
{
	RUN(test_json_endpoints_say_what_the_sb_names_say);
	RUN(test_stats_pages_read_on_after_a_percent_encoded_name);
	return TEST_EXIT();
}
