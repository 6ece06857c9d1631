/* $sb.routes, $sb.peers and $sb.stats as a peer asks them, decoded with
 * msgpack-c so the tests read the answers with a reader of their own. */
#include "support/admin.h"

const msgpack_object *map_get(const msgpack_object *o, const char *k)
{
	if (o->type != MSGPACK_OBJECT_MAP)
		return NULL;
	for (uint32_t i = 0; i < o->via.map.size; i++) {
		const msgpack_object *key = &o->via.map.ptr[i].key;
		if (key->type == MSGPACK_OBJECT_STR && key->via.str.size == strlen(k) &&
		    memcmp(key->via.str.ptr, k, key->via.str.size) == 0)
			return &o->via.map.ptr[i].val;
	}
	return NULL;
}

int str_is(const msgpack_object *o, const char *s)
{
	return o != NULL && o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(s) &&
	       memcmp(o->via.str.ptr, s, o->via.str.size) == 0;
}

const msgpack_object *find_by(const msgpack_object *o, const char *k, const char *v)
{
	for (uint32_t i = 0; o->type == MSGPACK_OBJECT_ARRAY && i < o->via.array.size; i++)
		if (str_is(map_get(&o->via.array.ptr[i], k), v))
			return &o->via.array.ptr[i];
	return NULL;
}

msgpack_object ask_router(struct peer *p, const char *name, const void *payload, size_t len,
			  msgpack_unpacked *u)
{
	/* Far from the small ids tests give their own requests: two open
	 * requests on one connection may not share an id. */
	static uint64_t id = UINT64_C(1) << 40;
	peer_request(p, name, ++id, 0, payload, len);
	struct sb_msg *r = peer_expect(p, SB_REPLY);
	CHECK(r->id == id && v_is(r->outcome, "ok"));
	size_t off = 0;
	msgpack_unpacked_init(u);
	CHECK(msgpack_unpack_next(u, (const char *)r->payload.ptr, r->payload.len, &off) ==
	      MSGPACK_UNPACK_SUCCESS);
	CHECK(off == r->payload.len);
	return u->data;
}

uint64_t stat_of(struct peer *p, const char *key)
{
	msgpack_unpacked u;
	msgpack_object st = ask_router(p, "$sb.stats", NULL, 0, &u);
	const msgpack_object *v = map_get(&st, key);
	if (v == NULL || v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		fprintf(stderr, "  $sb.stats has no counter %s\n", key);
	CHECK(v != NULL && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER);
	uint64_t n = v != NULL && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? v->via.u64 : 0;
	msgpack_unpacked_destroy(&u);
	return n;
}
