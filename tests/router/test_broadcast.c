/* Broadcast: a send or a request to every handler of a name on both
 * shards, one result per peer naming it and an aggregate that ends it;
 * nobody to ask, internal handlers, a silent handler's timeout, a handler
 * lost, a cancel. An in-process router with two shards; peers speak raw
 * frames. */
#include <switchboard/router.h>

#include <msgpack.h>

#include "support/admin.h"
#include "support/peer.h"
#include "support/router.h"

static int payload_is(struct sb_view v, const void *p, size_t n)
{
	return v.len == n && memcmp(v.ptr, p, n) == 0;
}

/* {"amount": 100, "to": "bob"} */
static const uint8_t TRANSFER[] = {0x82, 0xa6, 'a', 'm', 'o',  'u', 'n', 't',
				   0x64, 0xa2, 't', 'o', 0xa3, 'b', 'o', 'b'};

static const uint8_t BALANCE[] = {0x81, 0xa7, 'b', 'a', 'l', 'a', 'n', 'c', 'e', 0x14};

/* n peers named prefix-0, prefix-1, ... with both shards among them: the
 * kernel picks a shard per connection, so dial on and close the extras. */
static void spread(const char *prefix, const char *role, struct peer **out, int n)
{
	int k = 0, on[2] = {0, 0};
	for (int i = 0; i < 32 && k < n; i++) {
		char name[32];
		snprintf(name, sizeof name, "%s-%d", prefix, i);
		struct peer *p = peer_hello(PORT, name, role);
		int s = (int)(p->shard & 1);
		if (k < n - 1 || on[!s] > 0) {
			out[k++] = p;
			on[s]++;
		} else
			peer_close(p);
	}
	CHECK_INT(k, n);
	CHECK(on[0] > 0 && on[1] > 0);
}

static void close_all(struct peer **p, int n)
{
	for (int i = 0; i < n; i++)
		peer_close(p[i]);
}

/* A SEND or REQUEST with the sample payload, `to` a peer (or NULL). */
static void send_kind(struct peer *p, unsigned kind, const char *to, const char *name, uint64_t id,
		      uint8_t flags, uint32_t timeout)
{
	struct sb_msg m = {.kind = (uint8_t)kind, .id = id, .flags = flags, .name = v_str(name)};
	if (to != NULL)
		m.to = v_str(to);
	m.timeout_ms = timeout;
	m.payload.ptr = TRANSFER;
	m.payload.len = sizeof TRANSFER;
	peer_send(p, &m);
}

static uint64_t uint_at(const msgpack_object *o, const char *k)
{
	const msgpack_object *v = map_get(o, k);
	CHECK(v != NULL && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER);
	return v != NULL && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? v->via.u64 : UINT64_MAX;
}

/* The aggregate that ends a broadcast: REPLY "$sb.all", no MORE, counts. */
static void expect_all(struct peer *p, uint64_t id, unsigned peers, unsigned ok, unsigned errors,
		       unsigned timeouts, unsigned gone)
{
	struct sb_msg *r = peer_expect(p, SB_REPLY);
	CHECK(r->id == id && v_is(r->outcome, "$sb.all"));
	CHECK_INT(r->flags, 0);
	CHECK(r->peer.ptr == NULL);
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	size_t off = 0;
	CHECK(msgpack_unpack_next(&u, (const char *)r->payload.ptr, r->payload.len, &off) ==
	      MSGPACK_UNPACK_SUCCESS);
	CHECK(u.data.type == MSGPACK_OBJECT_MAP && u.data.via.map.size == 5);
	CHECK_INT(uint_at(&u.data, "peers"), peers);
	CHECK_INT(uint_at(&u.data, "ok"), ok);
	CHECK_INT(uint_at(&u.data, "errors"), errors);
	CHECK_INT(uint_at(&u.data, "timeouts"), timeouts);
	CHECK_INT(uint_at(&u.data, "gone"), gone);
	msgpack_unpacked_destroy(&u);
}

static int index_of(struct peer **p, int n, struct sb_view name)
{
	for (int i = 0; i < n; i++)
		if (v_is(name, p[i]->name))
			return i;
	return -1;
}

/* A broadcast request reaches every handler on both shards; each result
 * names its peer, and the aggregate ends it. */
static void test_broadcast_request_collects_every_peer(void)
{
	router_start(NULL);
	struct peer *h[3];
	spread("bc", "service", h, 3);
	for (int i = 0; i < 3; i++)
		peer_register(h[i], "health", 1);
	struct peer *cli = peer_hello(PORT, "bc-cli", "client");

	/* Fire-and-forget broadcast: every handler gets it once. */
	send_kind(cli, SB_SEND, NULL, "health", 0, SB_F_BROADCAST, 0);
	for (int i = 0; i < 3; i++) {
		struct sb_msg *m = peer_expect(h[i], SB_SEND);
		CHECK_INT(m->from, cli->peer_id);
	}

	send_kind(cli, SB_REQUEST, NULL, "health", 42, SB_F_BROADCAST, 5000);
	uint64_t rid = 0;
	for (int i = 0; i < 3; i++) {
		struct sb_msg *req = peer_expect(h[i], SB_REQUEST);
		CHECK(payload_is(req->payload, TRANSFER, sizeof TRANSFER));
		CHECK_INT(req->from, cli->peer_id);
		CHECK(rid == 0 || req->id == rid); /* one frame for all */
		rid = req->id;
	}
	/* h0: a chunk, then a progress update (not passed on), then healthy;
	 * h1: healthy; h2: an error. */
	uint8_t one = 1;
	peer_reply(h[0], rid, "log", SB_F_MORE | SB_F_CHUNK, &one, 1);
	peer_reply(h[0], rid, "checking", SB_F_MORE, NULL, 0);
	peer_reply(h[0], rid, "healthy", 0, BALANCE, sizeof BALANCE);
	peer_reply(h[1], rid, "healthy", 0, NULL, 0);
	struct sb_msg err = {.kind = SB_ERROR, .id = rid, .code = (uint32_t)-SB_EINVAL};
	err.text = v_str("disk full");
	peer_send(h[2], &err);

	int seen[3] = {0}, chunks = 0;
	for (int n = 0; n < 4; n++) {
		CHECK_INT(peer_recv_within(cli, 5000), 1);
		struct sb_msg *r = &cli->m;
		CHECK(r->id == 42 && (r->flags & SB_F_MORE));
		int i = index_of(h, 3, r->peer);
		CHECK(i >= 0);
		if (i < 0)
			continue;
		if (r->kind == SB_REPLY && (r->flags & SB_F_CHUNK)) {
			CHECK(i == 0 && seen[0] == 0); /* in order, before h0's final */
			CHECK(r->payload.len == 1 && r->payload.ptr[0] == 1);
			chunks++;
		} else if (i == 2) {
			CHECK(r->kind == SB_ERROR && r->code == (uint32_t)-SB_EINVAL);
			CHECK(v_is(r->text, "disk full"));
			seen[2]++;
		} else {
			CHECK(r->kind == SB_REPLY && v_is(r->outcome, "healthy"));
			CHECK(i != 0 || payload_is(r->payload, BALANCE, sizeof BALANCE));
			seen[i]++;
		}
	}
	CHECK(chunks == 1 && seen[0] == 1 && seen[1] == 1 && seen[2] == 1);
	expect_all(cli, 42, 3, 2, 1, 0, 0);

	/* An answer after a handler's final one is late: dropped. */
	peer_reply(h[1], rid, "again", 0, NULL, 0);
	peer_expect_silence(cli, 100);
	CHECK_INT(router_stats().late_replies, 1);
	CHECK_INT(router_stats().inflight, 0);
	peer_close(cli);
	close_all(h, 3);
	router_stop();
}

static void test_broadcast_to_nobody(void)
{
	router_start(NULL);
	struct peer *cli = peer_hello(PORT, "bc-lonely", "client");
	struct peer *svc = peer_hello(PORT, "bc-internal", "service");
	send_kind(cli, SB_REQUEST, NULL, "nobody.home", 1, SB_F_BROADCAST, 1000);
	struct sb_msg *e = peer_expect(cli, SB_ERROR);
	CHECK(e->id == 1 && e->code == (uint32_t)-SB_ENOPEERS && e->flags == 0);

	/* Internal handlers are not for a client (forbidden), but are for a
	 * service. */
	struct sb_msg reg = {
		.kind = SB_REGISTER, .id = 5, .flags = SB_F_INTERNAL, .name = v_str("secret")};
	peer_send(svc, &reg);
	peer_expect(svc, SB_ACK);
	send_kind(cli, SB_REQUEST, NULL, "secret", 2, SB_F_BROADCAST, 1000);
	CHECK(peer_expect(cli, SB_ERROR)->code == (uint32_t)-SB_EFORBIDDEN);
	struct peer *peer_svc = peer_hello(PORT, "bc-insider", "service");
	send_kind(peer_svc, SB_REQUEST, NULL, "secret", 3, SB_F_BROADCAST, 1000);
	uint64_t rid = peer_expect(svc, SB_REQUEST)->id;
	peer_reply(svc, rid, "ok", 0, NULL, 0);
	struct sb_msg *r = peer_expect(peer_svc, SB_REPLY);
	CHECK(v_is(r->peer, "bc-internal") && (r->flags & SB_F_MORE));
	expect_all(peer_svc, 3, 1, 1, 0, 0, 0);
	peer_close(peer_svc);
	peer_close(svc);
	peer_close(cli);
	router_stop();
}

/* A silent handler times out on its own: the others' results are not held
 * back behind it (they arrive first), and it gets a CANCEL. */
static void test_broadcast_timeout_holds_nobody_back(void)
{
	router_start(NULL);
	struct peer *h[3];
	spread("bt", "service", h, 3);
	for (int i = 0; i < 3; i++)
		peer_register(h[i], "slowpoke", 1);
	struct peer *cli = peer_hello(PORT, "bt-cli", "client");

	send_kind(cli, SB_REQUEST, NULL, "slowpoke", 7, SB_F_BROADCAST, 400);
	uint64_t rid = 0;
	for (int i = 0; i < 3; i++)
		rid = peer_expect(h[i], SB_REQUEST)->id;
	peer_reply(h[0], rid, "fast", 0, NULL, 0);
	peer_reply(h[2], rid, "fast", 0, NULL, 0);
	for (int n = 0; n < 2; n++) {
		struct sb_msg *r = peer_expect(cli, SB_REPLY);
		CHECK(v_is(r->outcome, "fast") && (r->flags & SB_F_MORE));
		CHECK(v_is(r->peer, h[0]->name) || v_is(r->peer, h[2]->name));
	}
	struct sb_msg *e = peer_expect(cli, SB_ERROR);
	CHECK(e->id == 7 && e->code == (uint32_t)-SB_ETIMEOUT && (e->flags & SB_F_MORE));
	CHECK(v_is(e->peer, h[1]->name));
	expect_all(cli, 7, 3, 2, 0, 1, 0);
	CHECK(peer_expect(h[1], SB_CANCEL)->id == rid);
	CHECK_INT(router_stats().timeouts, 1);
	peer_reply(h[1], rid, "too late", 0, NULL, 0);
	peer_expect_silence(cli, 100);
	peer_close(cli);
	close_all(h, 3);
	router_stop();
}

static void test_broadcast_handler_killed(void)
{
	router_start(NULL);
	struct peer *h[2];
	spread("bk", "service", h, 2);
	for (int i = 0; i < 2; i++)
		peer_register(h[i], "fragile", 1);
	struct peer *cli = peer_hello(PORT, "bk-cli", "client");

	send_kind(cli, SB_REQUEST, NULL, "fragile", 9, SB_F_BROADCAST, 5000);
	uint64_t rid = peer_expect(h[0], SB_REQUEST)->id;
	peer_expect(h[1], SB_REQUEST);
	char gone[SB_PEER_MAX + 1];
	memcpy(gone, h[1]->name, sizeof gone);
	peer_close(h[1]);
	struct sb_msg *e = peer_expect(cli, SB_ERROR);
	CHECK(e->id == 9 && e->code == (uint32_t)-SB_EPEERGONE && (e->flags & SB_F_MORE));
	CHECK(v_is(e->peer, gone));
	peer_reply(h[0], rid, "fine", 0, NULL, 0);
	CHECK(v_is(peer_expect(cli, SB_REPLY)->peer, h[0]->name));
	expect_all(cli, 9, 2, 1, 0, 0, 1);
	peer_close(cli);
	peer_close(h[0]);
	router_stop();
}

static void test_broadcast_cancel(void)
{
	router_start(NULL);
	struct peer *h[2];
	spread("bx", "service", h, 2);
	for (int i = 0; i < 2; i++)
		peer_register(h[i], "endless", 1);
	struct peer *cli = peer_hello(PORT, "bx-cli", "client");

	send_kind(cli, SB_REQUEST, NULL, "endless", 11, SB_F_BROADCAST, 0);
	uint64_t rid = peer_expect(h[0], SB_REQUEST)->id;
	peer_expect(h[1], SB_REQUEST);
	peer_reply(h[0], rid, "done", 0, NULL, 0);
	CHECK(v_is(peer_expect(cli, SB_REPLY)->peer, h[0]->name));
	struct sb_msg cancel = {.kind = SB_CANCEL, .id = 11};
	peer_send(cli, &cancel);
	struct sb_msg *e = peer_expect(cli, SB_ERROR);
	CHECK(e->id == 11 && e->code == (uint32_t)-SB_ECANCELLED && e->flags == 0);
	CHECK(e->peer.ptr == NULL);
	/* Only the handler still working on it hears the cancel. */
	CHECK(peer_expect(h[1], SB_CANCEL)->id == rid);
	peer_expect_silence(h[0], 100);
	peer_reply(h[1], rid, "done", 0, NULL, 0);
	peer_expect_silence(cli, 100);
	CHECK_INT(router_stats().inflight, 0);
	peer_close(cli);
	close_all(h, 2);
	router_stop();
}

int main(void)
{
	RUN(test_broadcast_request_collects_every_peer);
	RUN(test_broadcast_to_nobody);
	RUN(test_broadcast_timeout_holds_nobody_back);
	RUN(test_broadcast_handler_killed);
	RUN(test_broadcast_cancel);
	return TEST_EXIT();
}
