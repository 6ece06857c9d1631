/* Argument schemas at the router: a handler registered with one never sees
 * a request or a send that breaks it, from either shard; bad schemas are
 * refused at REGISTER, and registering again replaces one everywhere. An
 * in-process router with two shards; peers speak raw frames, payloads are
 * written as JSON. */
#include <switchboard/router.h>

#include "common/json.h"
#include "support/admin.h"
#include "support/peer.h"
#include "support/router.h"

struct mp {
	struct sb__json_buf b;
};

static struct mp mp_of(const char *json)
{
	struct mp m = {{0}};
	struct sb__json_error e;
	if (sb__json_parse(json, strlen(json), &m.b, &e) != 0) {
		fprintf(stderr, "bad test JSON at %zu: %s: %s\n", e.at, e.what, json);
		CHECK(0);
	}
	return m;
}

static void mp_free(struct mp *m)
{
	sb__json_buf_free(&m->b);
}

/* Sends REGISTER with a schema given as JSON (NULL: nil); returns the
 * router's answer, ACK or ERROR. */
static struct sb_msg *register_with(struct peer *p, const char *name, uint64_t id,
				    const char *schema)
{
	struct sb_msg m = {.kind = SB_REGISTER, .id = id, .name = v_str(name)};
	struct mp s = {{0}};
	if (schema != NULL) {
		s = mp_of(schema);
		m.payload.ptr = (const uint8_t *)s.b.data;
		m.payload.len = (uint32_t)s.b.len;
	}
	peer_send(p, &m);
	mp_free(&s);
	if (peer_recv_within(p, 5000) != 1) {
		CHECK(0);
		memset(&p->m, 0, sizeof p->m);
	}
	CHECK(p->m.id == id);
	return &p->m;
}

static void send_json(struct peer *p, unsigned kind, const char *name, uint64_t id,
		      const char *json)
{
	struct mp a = mp_of(json);
	struct sb_msg m = {.kind = (uint8_t)kind, .id = id, .name = v_str(name)};
	m.payload.ptr = (const uint8_t *)a.b.data;
	m.payload.len = (uint32_t)a.b.len;
	peer_send(p, &m);
	mp_free(&a);
}

static int text_is(const struct sb_msg *m, const char *s)
{
	if (v_is(m->text, s))
		return 1;
	fprintf(stderr, "  text \"%.*s\", expected \"%s\"\n", (int)m->text.len,
		(const char *)m->text.ptr, s);
	return 0;
}

/* Clients until there is one on each of the router's two shards: one
 * checks on the registering shard, the other on a replica. */
static int clients_on_both_shards(struct peer *cli[2], unsigned svc_shard)
{
	struct peer *extra[16] = {0};
	int n = 0;
	cli[0] = cli[1] = NULL;
	for (int i = 0; i < 16 && (cli[0] == NULL || cli[1] == NULL); i++) {
		struct peer *p = peer_hello(PORT, NULL, "client");
		struct peer **slot = &cli[p->shard == svc_shard ? 0 : 1];
		if (*slot == NULL)
			*slot = p;
		else
			extra[n++] = p;
	}
	for (int i = 0; i < n; i++)
		peer_close(extra[i]);
	return cli[0] != NULL && cli[1] != NULL;
}

/* One key per type family, a bounded string and array, nothing else. */
#define FAMILY_SCHEMA                                                                              \
	"{\"keys\": {\"email\": {\"type\": \"str\", \"max\": 16}, \"age\": {\"type\": \"uint\"},"  \
	" \"n\": {\"type\": \"nil\"}, \"b\": {\"type\": \"bool\"}, \"i\": {\"type\": \"int\"},"    \
	" \"f\": {\"type\": \"float\"}, \"x\": {\"type\": \"bin\"},"                               \
	" \"tags\": {\"type\": \"array\", \"max\": 3}, \"m\": {\"type\": \"map\"}},"               \
	" \"required\": [\"email\"], \"additional\": false}"

static const struct {
	const char *args, *why;
} VIOLATIONS[] = {
	{"{\"age\": 1}", "missing required key \"email\""},
	{"{\"email\": 5}", "key \"email\": expected str, got uint"},
	{"{\"email\": \"a\", \"age\": -3}", "key \"age\": expected uint, got int"},
	{"{\"email\": \"a\", \"n\": 1}", "key \"n\": expected nil, got uint"},
	{"{\"email\": \"a\", \"b\": \"yes\"}", "key \"b\": expected bool, got str"},
	{"{\"email\": \"a\", \"i\": 1.5}", "key \"i\": expected int, got float"},
	{"{\"email\": \"a\", \"f\": \"1.5\"}", "key \"f\": expected float, got str"},
	{"{\"email\": \"a\", \"x\": \"bytes\"}", "key \"x\": expected bin, got str"},
	{"{\"email\": \"a\", \"tags\": {}}", "key \"tags\": expected array, got map"},
	{"{\"email\": \"a\", \"m\": []}", "key \"m\": expected map, got array"},
	{"{\"email\": \"aaaaaaaaaaaaaaaaaaaa\"}", "key \"email\": string too long (20, limit 16)"},
	{"{\"email\": \"a\", \"tags\": [1, 2, 3, 4]}", "key \"tags\": array too long (4, limit 3)"},
	{"{\"email\": \"a\", \"zzz\": 1}", "unknown key \"zzz\""},
	{"[\"a\"]", "arguments must be a map"},
};

#define NVIOLATIONS (sizeof VIOLATIONS / sizeof VIOLATIONS[0])

static const char VALID[] = "{\"email\": \"ann@example.com\", \"age\": 30, \"n\": null, "
			    "\"b\": true, \"i\": -4, \"f\": 2, \"tags\": [1], \"m\": {}}";

/* A REQUEST whose payload is not MessagePack: {"email": <0xc1>}. */
static void request_malformed(struct peer *p, const char *name, uint64_t id)
{
	static const uint8_t bad[] = {0x81, 0xa5, 'e', 'm', 'a', 'i', 'l', 0xc1};
	struct sb_msg m = {.kind = SB_REQUEST, .id = id, .name = v_str(name)};
	m.payload.ptr = bad;
	m.payload.len = sizeof bad;
	peer_send(p, &m);
}

static void test_requests_breaking_the_schema_never_reach_the_handler(void)
{
	router_start(NULL);
	struct peer *svc = peer_hello(PORT, "users-1", "service");
	struct peer *cli[2];
	CHECK_INT(register_with(svc, "user.create", 1, FAMILY_SCHEMA)->kind, SB_ACK);
	CHECK(clients_on_both_shards(cli, svc->shard));

	for (int c = 0; c < 2 && cli[1] != NULL; c++) {
		for (size_t i = 0; i < NVIOLATIONS; i++) {
			send_json(cli[c], SB_REQUEST, "user.create", 100 + i, VIOLATIONS[i].args);
			struct sb_msg *e = peer_expect(cli[c], SB_ERROR);
			CHECK(e->id == 100 + i);
			CHECK_INT(e->code, -SB_EINVAL);
			CHECK(text_is(e, VIOLATIONS[i].why));
		}
		request_malformed(cli[c], "user.create", 99);
		struct sb_msg *e = peer_expect(cli[c], SB_ERROR);
		CHECK(e->id == 99 && e->code == (uint32_t)-SB_EINVAL);
		CHECK(text_is(e, "arguments are not well-formed MessagePack"));

		/* A good request goes through, and it is the first thing the
		 * handler sees: none of the bad ones got there. */
		send_json(cli[c], SB_REQUEST, "user.create", 7, VALID);
		struct sb_msg *req = peer_expect(svc, SB_REQUEST);
		struct mp want = mp_of(VALID);
		CHECK(req->payload.len == want.b.len &&
		      memcmp(req->payload.ptr, want.b.data, want.b.len) == 0);
		mp_free(&want);
		peer_reply(svc, req->id, "user.created", 0, NULL, 0);
		struct sb_msg *rep = peer_expect(cli[c], SB_REPLY);
		CHECK(rep->id == 7 && v_is(rep->outcome, "user.created"));
	}
	peer_expect_silence(svc, 100);
	CHECK_INT(router_stats().invalid_args, 2 * (NVIOLATIONS + 1));
	peer_close(cli[0]);
	peer_close(cli[1]);
	peer_close(svc);
	router_stop();
}

static void test_sends_breaking_the_schema_are_dropped_and_counted(void)
{
	router_start(NULL);
	struct peer *svc = peer_hello(PORT, "audit-1", "service");
	struct peer *cli = peer_hello(PORT, NULL, "client");
	CHECK_INT(register_with(svc, "audit.log", 1,
				"{\"keys\": {\"event\": {\"type\": \"str\"}},"
				" \"required\": [\"event\"]}")
			  ->kind,
		  SB_ACK);
	send_json(cli, SB_SEND, "audit.log", 0, "{\"event\": 1}");
	send_json(cli, SB_SEND, "audit.log", 0, "{}");
	send_json(cli, SB_SEND, "audit.log", 0, "{\"event\": \"login\", \"extra\": [1]}");
	struct sb_msg *got = peer_expect(svc, SB_SEND);
	struct mp want = mp_of("{\"event\": \"login\", \"extra\": [1]}");
	CHECK(got->payload.len == want.b.len &&
	      memcmp(got->payload.ptr, want.b.data, want.b.len) == 0);
	mp_free(&want);
	peer_expect_silence(svc, 100);
	peer_expect_silence(cli, 0); /* nobody to tell */
	CHECK_INT(router_stats().invalid_args, 2);
	peer_close(cli);
	peer_close(svc);
	router_stop();
}

static void test_bad_schema_is_refused_at_register(void)
{
	router_start(NULL);
	struct peer *svc = peer_hello(PORT, "users-2", "service");
	struct peer *cli = peer_hello(PORT, NULL, "client");
	struct sb_msg *a = register_with(svc, "user.update", 4,
					 "{\"keys\": {\"age\": {\"type\": \"integer\"}}}");
	CHECK_INT(a->kind, SB_ERROR);
	CHECK_INT(a->code, -SB_EINVAL);
	CHECK(text_is(a, "schema key \"age\": unknown type \"integer\""));
	a = register_with(svc, "user.update", 5, "[\"email\"]");
	CHECK_INT(a->kind, SB_ERROR);
	CHECK(text_is(a, "schema must be a map (or nil for none)"));
	/* Bytes that are not MessagePack at all. */
	static const uint8_t junk[] = {0x82, 0xa4, 'k', 'e', 'y', 's'};
	struct sb_msg m = {.kind = SB_REGISTER, .id = 6, .name = v_str("user.update")};
	m.payload.ptr = junk;
	m.payload.len = sizeof junk;
	peer_send(svc, &m);
	a = peer_expect(svc, SB_ERROR);
	CHECK(a->id == 6 && a->code == (uint32_t)-SB_EINVAL);
	CHECK(text_is(a, "schema is not one well-formed MessagePack value"));

	/* Nothing was registered, and the connection carries on. */
	send_json(cli, SB_REQUEST, "user.update", 8, "{}");
	CHECK_INT(peer_expect(cli, SB_ERROR)->code, -SB_ENOHANDLER);
	CHECK_INT(register_with(svc, "user.update", 9, "{\"required\": [\"id\"]}")->kind, SB_ACK);
	send_json(cli, SB_REQUEST, "user.update", 10, "{}");
	struct sb_msg *e = peer_expect(cli, SB_ERROR);
	CHECK(e->id == 10 && text_is(e, "missing required key \"id\""));
	peer_close(cli);
	peer_close(svc);
	router_stop();
}

/* Registering again replaces the schema on every shard, nil removes it;
 * each old block is freed by its last holder (ASan's leak check). */
static void test_register_again_replaces_the_schema(void)
{
	router_start(NULL);
	struct peer *svc = peer_hello(PORT, "users-3", "service");
	struct peer *cli[2];
	CHECK(clients_on_both_shards(cli, svc->shard));
	CHECK_INT(register_with(svc, "user.get", 1, "{\"required\": [\"id\"]}")->kind, SB_ACK);
	CHECK_INT(register_with(svc, "user.get", 2, "{\"required\": [\"name\"]}")->kind, SB_ACK);
	for (int c = 0; c < 2 && cli[1] != NULL; c++) {
		send_json(cli[c], SB_REQUEST, "user.get", 3, "{\"id\": 1}");
		CHECK(text_is(peer_expect(cli[c], SB_ERROR), "missing required key \"name\""));
	}
	CHECK_INT(register_with(svc, "user.get", 4, NULL)->kind, SB_ACK);
	for (int c = 0; c < 2 && cli[1] != NULL; c++) {
		send_json(cli[c], SB_REQUEST, "user.get", 5, "[\"anything\"]");
		struct sb_msg *req = peer_expect(svc, SB_REQUEST);
		peer_reply(svc, req->id, "found", 0, NULL, 0);
		CHECK(v_is(peer_expect(cli[c], SB_REPLY)->outcome, "found"));
	}
	CHECK_INT(register_with(svc, "user.get", 6, "{\"required\": [\"id\"]}")->kind, SB_ACK);
	peer_close(cli[0]);
	peer_close(cli[1]);
	peer_close(svc); /* its routes, and their schema, go on every shard */
	router_stop();
}

/* A JSON Schema, as the gateway's users write them: nested objects, items,
 * enum, const, bounds; every fault named by its path. */
#define ORDER_SCHEMA                                                                               \
	"{\"$schema\": \"https://json-schema.org/draft/2020-12/schema\", \"type\": \"object\","    \
	" \"properties\": {"                                                                       \
	"  \"sku\": {\"type\": \"string\", \"minLength\": 3, \"maxLength\": 8},"                   \
	"  \"qty\": {\"type\": \"integer\", \"minimum\": 1, \"maximum\": 99},"                     \
	"  \"kind\": {\"enum\": [\"retail\", \"wholesale\"]},"                                     \
	"  \"v\": {\"const\": 1},"                                                                 \
	"  \"ship\": {\"type\": \"object\", \"required\": [\"zip\"],"                              \
	"   \"properties\": {\"zip\": {\"type\": \"string\"}}, \"additionalProperties\": false},"  \
	"  \"tags\": {\"type\": \"array\", \"minItems\": 1, \"maxItems\": 2,"                      \
	"   \"items\": {\"type\": \"string\"}},"                                                   \
	"  \"meta\": {\"type\": \"object\", \"additionalProperties\": {\"type\": \"number\"}}},"   \
	" \"required\": [\"sku\", \"qty\"]}"

static const struct {
	const char *args, *why;
} ORDER_FAULTS[] = {
	{"{\"sku\": \"abc\"}", "qty: required key missing"},
	{"{\"sku\": \"abc\", \"qty\": 1, \"ship\": {\"zip\": 75001}}",
	 "ship.zip: expected string, got integer"},
	{"{\"sku\": \"abc\", \"qty\": 1, \"ship\": {\"zip\": \"1\", \"door\": 2}}",
	 "ship.door: unknown key"},
	{"{\"sku\": \"abc\", \"qty\": 1, \"tags\": [\"a\", 2]}",
	 "tags[1]: expected string, got integer"},
	{"{\"sku\": \"abc\", \"qty\": 1, \"tags\": []}",
	 "tags: array too short (0 items, limit 1)"},
	{"{\"sku\": \"abc\", \"qty\": 1, \"tags\": [\"a\", \"b\", \"c\"]}",
	 "tags: array too long (3 items, limit 2)"},
	{"{\"sku\": \"ab\", \"qty\": 1}", "sku: string too short (2 characters, limit 3)"},
	{"{\"sku\": \"\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\", \"qty\": 1}",
	 "sku: string too long (9 characters, limit 8)"},
	{"{\"sku\": \"abc\", \"qty\": 100}", "qty: value too large (100, limit 99)"},
	{"{\"sku\": \"abc\", \"qty\": 0}", "qty: value too small (0, limit 1)"},
	{"{\"sku\": \"abc\", \"qty\": 1.5}", "qty: expected integer, got number"},
	{"{\"sku\": \"abc\", \"qty\": 1, \"kind\": \"gift\"}", "kind: not one of the enum values"},
	{"{\"sku\": \"abc\", \"qty\": 1, \"v\": 2}", "v: not the const value"},
	{"{\"sku\": \"abc\", \"qty\": 1, \"meta\": {\"w\": \"heavy\"}}",
	 "meta.w: expected number, got string"},
	{"[\"abc\", 1]", "expected object, got array"},
};

#define NORDER_FAULTS (sizeof ORDER_FAULTS / sizeof ORDER_FAULTS[0])

static const char ORDER_OK[] = "{\"sku\": \"\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\","
			       " \"qty\": 2.0, \"kind\": \"retail\", \"v\": 1,"
			       " \"ship\": {\"zip\": \"75001\"}, \"tags\": [\"gift\"],"
			       " \"meta\": {\"w\": 1.5}, \"note\": [\"anything\"]}";

static void test_json_schema_faults_are_named_by_path_on_both_shards(void)
{
	router_start(NULL);
	struct peer *svc = peer_hello(PORT, "orders-1", "service");
	struct peer *cli[2];
	CHECK_INT(register_with(svc, "order.place", 1, ORDER_SCHEMA)->kind, SB_ACK);
	CHECK(clients_on_both_shards(cli, svc->shard));

	for (int c = 0; c < 2 && cli[1] != NULL; c++) {
		for (size_t i = 0; i < NORDER_FAULTS; i++) {
			send_json(cli[c], SB_REQUEST, "order.place", 100 + i, ORDER_FAULTS[i].args);
			struct sb_msg *e = peer_expect(cli[c], SB_ERROR);
			CHECK(e->id == 100 + i);
			CHECK_INT(e->code, -SB_EINVAL);
			CHECK(text_is(e, ORDER_FAULTS[i].why));
		}
		/* The good order is the first thing the handler sees. */
		send_json(cli[c], SB_REQUEST, "order.place", 7, ORDER_OK);
		struct sb_msg *req = peer_expect(svc, SB_REQUEST);
		struct mp want = mp_of(ORDER_OK);
		CHECK(req->payload.len == want.b.len &&
		      memcmp(req->payload.ptr, want.b.data, want.b.len) == 0);
		mp_free(&want);
		peer_reply(svc, req->id, "order.placed", 0, NULL, 0);
		CHECK(v_is(peer_expect(cli[c], SB_REPLY)->outcome, "order.placed"));
	}
	peer_expect_silence(svc, 100);
	CHECK_INT(router_stats().invalid_args, 2 * NORDER_FAULTS);
	peer_close(cli[0]);
	peer_close(cli[1]);
	peer_close(svc);
	router_stop();
}

static void test_unsupported_json_schema_keyword_is_refused_at_register(void)
{
	router_start(NULL);
	struct peer *svc = peer_hello(PORT, "orders-2", "service");
	struct peer *cli = peer_hello(PORT, NULL, "client");
	struct sb_msg *a = register_with(svc, "order.place", 1,
					 "{\"type\": \"object\", \"properties\": {\"ship\":"
					 " {\"properties\": {\"zip\": {\"type\": \"string\","
					 " \"pattern\": \"^[0-9]{5}$\"}}}}}");
	CHECK_INT(a->kind, SB_ERROR);
	CHECK_INT(a->code, -SB_EINVAL);
	CHECK(text_is(a, "ship.zip: unsupported JSON Schema keyword \"pattern\""));
	a = register_with(svc, "order.place", 2, "{\"$ref\": \"#/$defs/order\"}");
	CHECK_INT(a->kind, SB_ERROR);
	CHECK(text_is(a, "unsupported JSON Schema keyword \"$ref\""));
	/* Nothing registered; a good schema after it is. */
	send_json(cli, SB_REQUEST, "order.place", 3, "{}");
	CHECK_INT(peer_expect(cli, SB_ERROR)->code, -SB_ENOHANDLER);
	CHECK_INT(register_with(svc, "order.place", 4, "{\"type\": \"object\"}")->kind, SB_ACK);
	send_json(cli, SB_REQUEST, "order.place", 5, "7");
	CHECK(text_is(peer_expect(cli, SB_ERROR), "expected object, got integer"));
	peer_close(cli);
	peer_close(svc);
	router_stop();
}

/* $sb.routes shows each handler's schema as it was registered, in either
 * format, and none for a handler without one. */
static void test_routes_show_the_schema_as_registered(void)
{
	router_start(NULL);
	struct peer *svc = peer_hello(PORT, "orders-3", "service");
	struct peer *cli = peer_hello(PORT, NULL, "client");
	static const char *const schemas[] = {ORDER_SCHEMA, FAMILY_SCHEMA, NULL};
	static const char *const names[] = {"order.place", "user.create", "user.plain"};
	for (int i = 0; i < 3; i++)
		CHECK_INT(register_with(svc, names[i], 1 + (uint64_t)i, schemas[i])->kind, SB_ACK);
	msgpack_unpacked u;
	msgpack_object routes = ask_router(cli, "$sb.routes", NULL, 0, &u);
	for (int i = 0; i < 3; i++) {
		const msgpack_object *route = find_by(&routes, "name", names[i]);
		const msgpack_object *hs = route != NULL ? map_get(route, "handlers") : NULL;
		CHECK(hs != NULL && hs->type == MSGPACK_OBJECT_ARRAY && hs->via.array.size == 1);
		if (hs == NULL || hs->type != MSGPACK_OBJECT_ARRAY || hs->via.array.size != 1)
			continue;
		const msgpack_object *got = map_get(&hs->via.array.ptr[0], "schema");
		if (schemas[i] == NULL) {
			CHECK(got != NULL && got->type == MSGPACK_OBJECT_NIL);
			continue;
		}
		CHECK(got != NULL);
		if (got == NULL)
			continue;
		/* Packed again by msgpack-c, it is the registered bytes. */
		msgpack_sbuffer sb;
		msgpack_packer pk;
		msgpack_sbuffer_init(&sb);
		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		msgpack_pack_object(&pk, *got);
		struct mp want = mp_of(schemas[i]);
		CHECK(sb.size == want.b.len && memcmp(sb.data, want.b.data, sb.size) == 0);
		mp_free(&want);
		msgpack_sbuffer_destroy(&sb);
	}
	msgpack_unpacked_destroy(&u);
	peer_close(cli);
	peer_close(svc);
	router_stop();
}

int main(void)
{
	RUN(test_requests_breaking_the_schema_never_reach_the_handler);
	RUN(test_sends_breaking_the_schema_are_dropped_and_counted);
	RUN(test_bad_schema_is_refused_at_register);
	RUN(test_register_again_replaces_the_schema);
	RUN(test_json_schema_faults_are_named_by_path_on_both_shards);
	RUN(test_unsupported_json_schema_keyword_is_refused_at_register);
	RUN(test_routes_show_the_schema_as_registered);
	return TEST_EXIT();
}
