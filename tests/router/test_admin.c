/* The router's own names: $sb.routes, $sb.peers and $sb.stats answer any
 * client with what the router knows (per-route counts and latency
 * percentiles included), and other $ names cannot be taken. An in-process
 * router with two shards; peers speak raw frames. */
#include <switchboard/router.h>

#include <msgpack.h>

#include "common/json.h"
#include "support/admin.h"
#include "support/peer.h"
#include "support/router.h"

static uint64_t route_stat(const msgpack_object *route, const char *k)
{
	const msgpack_object *v = route != NULL ? map_get(route, k) : NULL;
	CHECK(v != NULL && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER);
	return v != NULL && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? v->via.u64 : 0;
}

/* $sb.routes, $sb.peers and $sb.stats answer with what the router knows,
 * to any client; other $ names are the router's and cannot be taken. */
static void test_reserved_names(void)
{
	router_start(NULL);
	struct peer *svc = peer_hello(PORT, "admin-svc", "service");
	struct peer *cli = peer_hello(PORT, "admin-cli", "client");
	peer_register(svc, "admin.work", 1);
	msgpack_unpacked u;

	msgpack_object routes = ask_router(cli, "$sb.routes", NULL, 0, &u);
	const msgpack_object *route = find_by(&routes, "name", "admin.work");
	CHECK(route != NULL);
	const msgpack_object *hs = route ? map_get(route, "handlers") : NULL;
	CHECK(hs != NULL && hs->type == MSGPACK_OBJECT_ARRAY && hs->via.array.size == 1);
	if (hs != NULL && hs->via.array.size == 1) {
		CHECK(str_is(map_get(&hs->via.array.ptr[0], "peer"), "admin-svc"));
		const msgpack_object *sh = map_get(&hs->via.array.ptr[0], "shard");
		CHECK(sh != NULL && sh->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
		      sh->via.u64 == svc->shard);
	}
	msgpack_unpacked_destroy(&u);

	msgpack_object peers = ask_router(cli, "$sb.peers", NULL, 0, &u);
	const msgpack_object *me = find_by(&peers, "peer", "admin-svc");
	CHECK(me != NULL && str_is(map_get(me, "role"), "service"));
	const msgpack_object *pid = me ? map_get(me, "id") : NULL;
	CHECK(pid != NULL && pid->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
	      pid->via.u64 == svc->peer_id);
	CHECK(find_by(&peers, "peer", "admin-cli") != NULL);
	msgpack_unpacked_destroy(&u);

	msgpack_object st = ask_router(cli, "$sb.stats", NULL, 0, &u);
	const msgpack_object *conns = map_get(&st, "connections");
	CHECK(conns != NULL && conns->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
	      conns->via.u64 >= 2);
	const msgpack_object *shards = map_get(&st, "shards");
	CHECK(shards != NULL && shards->type == MSGPACK_OBJECT_ARRAY &&
	      shards->via.array.size == sb_router_shards(R));
	msgpack_unpacked_destroy(&u);

	peer_request(cli, "$sb.nothing", 9, 0, NULL, 0);
	struct sb_msg *e = peer_expect(cli, SB_ERROR);
	CHECK(e->id == 9 && e->code == (uint32_t)-SB_ENOHANDLER);
	CHECK(v_is(e->text, "the router serves no such name"));
	struct sb_msg reg = {.kind = SB_REGISTER, .id = 10, .name = v_str("$sb.routes")};
	peer_send(svc, &reg);
	e = peer_expect(svc, SB_ERROR);
	CHECK(e->id == 10 && e->code == (uint32_t)-SB_EINVAL);
	peer_close(svc);
	peer_close(cli);
	router_stop();
}

/* $sb.stats counts each name's requests by how they ended, summed over the
 * shards the requesters are on, with latency percentiles. */
static void test_route_stats(void)
{
	router_start(NULL);
	struct peer *svc = peer_hello(PORT, "rs-svc", "service");
	struct peer *cli[2] = {peer_hello(PORT, "rs-cli-0", "client"),
			       peer_hello(PORT, "rs-cli-1", "client")};
	peer_register(svc, "rs.work", 1);
	msgpack_unpacked u;

	/* Six requests from two clients: four replies, one error, one timeout. */
	for (uint64_t id = 1; id <= 6; id++)
		peer_request(cli[id % 2], "rs.work", id, id == 6 ? 50 : 0, NULL, 0);
	for (int i = 0, answered = 0; i < 6; i++) {
		struct sb_msg *q = peer_expect(svc, SB_REQUEST);
		if (q->timeout_ms <= 50) /* left to time out */
			continue;
		if (answered++ < 4) {
			peer_reply(svc, q->id, "done", 0, NULL, 0);
		} else {
			struct sb_msg e = {
				.kind = SB_ERROR, .id = q->id, .code = 9, .text = v_str("no")};
			peer_send(svc, &e);
		}
	}
	int replies = 0, errors = 0, timeouts = 0;
	for (int k = 0; k < 2; k++)
		for (int i = 0; i < 3; i++) {
			CHECK_INT(peer_recv_within(cli[k], 5000), 1);
			const struct sb_msg *m = &cli[k]->m;
			if (m->kind == SB_REPLY)
				replies++;
			else if (m->kind == SB_ERROR && m->code == (uint32_t)-SB_ETIMEOUT)
				timeouts++;
			else if (m->kind == SB_ERROR)
				errors++;
		}
	CHECK_INT(replies, 4);
	CHECK_INT(errors, 1);
	CHECK_INT(timeouts, 1);
	peer_expect(svc, SB_CANCEL); /* for the request that timed out */
	for (int i = 0; i < 3; i++) {
		struct sb_msg snd = {.kind = SB_SEND, .name = v_str("rs.work")};
		peer_send(cli[0], &snd);
	}
	for (int i = 0; i < 3; i++)
		peer_expect(svc, SB_SEND);

	msgpack_object st = ask_router(cli[1], "$sb.stats", NULL, 0, &u);
	const msgpack_object *routes = map_get(&st, "routes");
	CHECK(routes != NULL && routes->type == MSGPACK_OBJECT_ARRAY);
	const msgpack_object *r = routes != NULL ? find_by(routes, "name", "rs.work") : NULL;
	CHECK(r != NULL);
	CHECK_INT(route_stat(r, "requests"), 6);
	CHECK_INT(route_stat(r, "replies"), 4);
	CHECK_INT(route_stat(r, "errors"), 1);
	CHECK_INT(route_stat(r, "timeouts"), 1);
	CHECK_INT(route_stat(r, "sends"), 3);
	uint64_t p50 = route_stat(r, "p50_us"), p90 = route_stat(r, "p90_us");
	uint64_t p99 = route_stat(r, "p99_us"), max = route_stat(r, "max_us");
	CHECK(p50 <= p90 && p90 <= p99 && p99 <= max);
	msgpack_unpacked_destroy(&u);
	peer_close(svc);
	peer_close(cli[0]);
	peer_close(cli[1]);
	router_stop();
}

/* The JSON of one MessagePack object, for comparing values whatever
 * widths their encoders chose. */
static const char *json_of(const msgpack_object *o, struct sb__json_buf *b)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_object(&pk, *o);
	sb__json_buf_free(b);
	CHECK_INT(sb__json_print(sb.data, sb.size, b), 0);
	msgpack_sbuffer_destroy(&sb);
	return b->data != NULL ? b->data : "";
}

/* An operator reading $sb.routes sees, for each handler of a name, whether
 * it is internal and the argument schema it registered, as registered. */
static void test_routes_show_each_handlers_schema_and_internal_flag(void)
{
	static const char schema[] =
		"{\"keys\":{\"email\":{\"type\":\"str\",\"max\":255},\"age\":{\"type\":"
		"[\"uint\",\"nil\"],\"min\":18}},\"required\":[\"email\"],\"additional\":false}";
	router_start(NULL);
	struct peer *typed = peer_hello(PORT, "typed-svc", "service");
	struct peer *plain = peer_hello(PORT, "plain-svc", "service");
	struct peer *cli = peer_hello(PORT, "routes-cli", "client");
	struct sb__json_buf mp = {0}, b = {0};
	struct sb__json_error je;
	CHECK_INT(sb__json_parse(schema, strlen(schema), &mp, &je), 0);
	struct sb_msg reg = {.kind = SB_REGISTER,
			     .flags = SB_F_INTERNAL,
			     .id = 1,
			     .name = v_str("user.create"),
			     .payload = {(const uint8_t *)mp.data, (uint32_t)mp.len}};
	peer_send(typed, &reg);
	CHECK(peer_expect(typed, SB_ACK)->id == 1);
	peer_register(plain, "user.create", 2);

	msgpack_unpacked u;
	msgpack_object routes = ask_router(cli, "$sb.routes", NULL, 0, &u);
	const msgpack_object *route = find_by(&routes, "name", "user.create");
	const msgpack_object *hs = route != NULL ? map_get(route, "handlers") : NULL;
	CHECK(hs != NULL && hs->type == MSGPACK_OBJECT_ARRAY && hs->via.array.size == 2);
	const msgpack_object *t = hs != NULL ? find_by(hs, "peer", "typed-svc") : NULL;
	const msgpack_object *p = hs != NULL ? find_by(hs, "peer", "plain-svc") : NULL;
	CHECK(t != NULL && p != NULL);
	if (t != NULL && p != NULL) {
		const msgpack_object *in = map_get(t, "internal"), *s = map_get(t, "schema");
		CHECK(in != NULL && in->type == MSGPACK_OBJECT_BOOLEAN && in->via.boolean);
		CHECK(s != NULL && s->type == MSGPACK_OBJECT_MAP);
		if (s != NULL)
			CHECK_STR(json_of(s, &b), schema);
		in = map_get(p, "internal");
		s = map_get(p, "schema");
		CHECK(in != NULL && in->type == MSGPACK_OBJECT_BOOLEAN && !in->via.boolean);
		CHECK(s != NULL && s->type == MSGPACK_OBJECT_NIL);
	}
	msgpack_unpacked_destroy(&u);
	sb__json_buf_free(&mp);
	sb__json_buf_free(&b);
	peer_close(typed);
	peer_close(plain);
	peer_close(cli);
	router_stop();
}

int main(void)
{
	RUN(test_reserved_names);
	RUN(test_routes_show_each_handlers_schema_and_internal_flag);
	RUN(test_route_stats);
	return TEST_EXIT();
}
