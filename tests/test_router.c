/* The routing engine end to end: an in-process router with two shards, and
 * services and clients on real sockets speaking the wire protocol. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>
#include <stdlib.h>
#include <sys/socket.h>

#include <switchboard/router.h>

#include <msgpack.h>

#include "peer.h"

static struct sb_router *R;
static uint16_t PORT;

/* The small router's limits, for the bounds its tests assert. */
#define SMALL_OUT_MAX (256u << 10)
#define SMALL_WINDOW  (8u * 64 * 16384) /* 8 x receive pool: see queue_limit() */

/* The tests' router settings: any free port, 2 shards, quiet. */
static struct sb_router_config base_config(void)
{
	struct sb_router_config cfg;
	sb_router_config_init(&cfg);
	cfg.port = 0;
	cfg.shards = 2;
	cfg.log_level = 0;
	/* Every test peer dials from 127.0.0.1, and the identity-window test
	 * alone holds 1,025 connections at once. */
	cfg.max_conns_per_addr = 4096;
	return cfg;
}

static struct sb_router *start_with(const struct sb_router_config *cfg)
{
	int err;
	struct sb_router *r = sb_router_new(cfg, &err);
	CHECK(r != NULL);
	CHECK_INT(sb_router_start(r), 0);
	return r;
}

/* slow_ms: 0 keeps the default (for out_max too). */
static struct sb_router *start_slow(unsigned shards, size_t out_max, uint32_t slow_ms)
{
	struct sb_router_config cfg = base_config();
	cfg.shards = shards;
	if (out_max) { /* a frame must fit in a connection's queue */
		cfg.out_max = out_max;
		cfg.max_frame = (uint32_t)out_max / 4;
		cfg.recv_buffers = 64;
		cfg.log_level = getenv("SB_TEST_LOG") ? 3 : 0;
	}
	if (slow_ms)
		cfg.slow_ms = slow_ms;
	return start_with(&cfg);
}

static struct sb_router *start(unsigned shards, size_t out_max)
{
	return start_slow(shards, out_max, 0);
}

/* A test with a router of its own swaps it in; the shared one comes back
 * when the test is done with it. */
static struct sb_router *shared_router;
static uint16_t shared_port;

static void swap_in(struct sb_router *r)
{
	shared_router = R;
	shared_port = PORT;
	R = r;
	PORT = sb_router_port(r);
}

static void swap_out(void)
{
	sb_router_stop(R, 0);
	sb_router_free(R);
	R = shared_router;
	PORT = shared_port;
}

static struct sb_router_stats stats(void)
{
	struct sb_router_stats s;
	sb_router_stats(R, &s);
	return s;
}

static int payload_is(struct sb_view v, const void *p, size_t n)
{
	return v.len == n && memcmp(v.ptr, p, n) == 0;
}

/* {"amount": 100, "to": "bob"} */
static const uint8_t TRANSFER[] = {0x82, 0xa6, 'a', 'm', 'o',  'u', 'n', 't',
				   0x64, 0xa2, 't', 'o', 0xa3, 'b', 'o', 'b'};
static const uint8_t BALANCE[] = {0x81, 0xa7, 'b', 'a', 'l', 'a', 'n', 'c', 'e', 0x14};

static void test_fire_and_forget(void)
{
	struct peer *svc = peer_hello(PORT, "audit-1", "service");
	struct peer *cli = peer_hello(PORT, "shop-1", "client");
	peer_register(svc, "audit.log", 1);

	struct sb_msg m = {.kind = SB_SEND, .name = v_str("audit.log")};
	m.payload.ptr = TRANSFER;
	m.payload.len = sizeof TRANSFER;
	peer_send(cli, &m);
	struct sb_msg *got = peer_expect(svc, SB_SEND);
	CHECK(v_is(got->name, "audit.log"));
	CHECK_INT(got->from, cli->peer_id); /* the router vouches for the sender */
	CHECK(payload_is(got->payload, TRANSFER, sizeof TRANSFER));
	peer_expect_silence(cli, 100); /* fire-and-forget: nothing comes back */

	/* A send to a peer nobody has is dropped and counted, never delivered
	 * to whoever handles the name. */
	uint64_t dropped = stats().no_handler;
	m.to = v_str("somebody-else");
	peer_send(cli, &m);
	peer_expect_silence(svc, 100);
	CHECK_INT(stats().no_handler, dropped + 1);
	peer_close(svc);
	peer_close(cli);
}

static void test_request_reply_with_outcome(void)
{
	struct peer *bank = peer_hello(PORT, "bank-1", "service");
	struct peer *cli = peer_hello(PORT, "shop-2", "client");
	peer_register(bank, "transfer", 1);

	peer_request(cli, "transfer", 7, 5000, TRANSFER, sizeof TRANSFER);
	struct sb_msg *req = peer_expect(bank, SB_REQUEST);
	uint64_t rid = req->id;
	CHECK(rid != 0);
	CHECK_INT(req->from, cli->peer_id);
	CHECK_INT(req->timeout_ms, 5000);
	CHECK(payload_is(req->payload, TRANSFER, sizeof TRANSFER));

	peer_reply(bank, rid, "insufficient funds", 0, BALANCE, sizeof BALANCE);
	struct sb_msg *rep = peer_expect(cli, SB_REPLY);
	CHECK(rep->id == 7); /* the requester's own id comes back */
	CHECK(v_is(rep->outcome, "insufficient funds"));
	CHECK(payload_is(rep->payload, BALANCE, sizeof BALANCE));
	CHECK_INT(rep->flags, 0);

	/* A handler's error ends a request like a final reply; a FATAL flag
	 * on it is the handler's business and is not passed on. */
	peer_request(cli, "transfer", 8, 5000, TRANSFER, sizeof TRANSFER);
	uint64_t rid2 = peer_expect(bank, SB_REQUEST)->id;
	struct sb_msg err = {.kind = SB_ERROR,
			     .id = rid2,
			     .flags = SB_F_FATAL,
			     .code = (uint32_t)-SB_EINVAL,
			     .text = v_str("amount must be positive")};
	peer_send(bank, &err);
	struct sb_msg *e = peer_expect(cli, SB_ERROR);
	CHECK(e->id == 8 && e->code == (uint32_t)-SB_EINVAL && e->flags == 0);
	CHECK(v_is(e->text, "amount must be positive"));

	/* A second final reply to the same request is late: dropped. */
	uint64_t late = stats().late_replies;
	peer_reply(bank, rid, "transferred", 0, NULL, 0);
	peer_expect_silence(cli, 100);
	CHECK_INT(stats().late_replies, late + 1);
	peer_close(bank);
	peer_close(cli);
}

static void test_progress_then_final(void)
{
	static const char *steps[] = {"file.copying", "file.copying", "file.copying"};
	struct peer *fs = peer_hello(PORT, "fs-1", "service");
	struct peer *cli = peer_hello(PORT, "ui-1", "client");
	peer_register(fs, "file.copy", 1);

	peer_request(cli, "file.copy", 3, 0, NULL, 0);
	uint64_t rid = peer_expect(fs, SB_REQUEST)->id;
	for (int i = 0; i < 3; i++) {
		uint8_t pct = (uint8_t)(30 * (i + 1));
		peer_reply(fs, rid, steps[i], SB_F_MORE, &pct, 1);
	}
	peer_reply(fs, rid, "file.copied", 0, NULL, 0);
	for (int i = 0; i < 3; i++) {
		struct sb_msg *r = peer_expect(cli, SB_REPLY);
		CHECK(r->id == 3 && v_is(r->outcome, "file.copying"));
		CHECK_INT(r->flags, SB_F_MORE);
		CHECK_INT(r->payload.ptr[0], 30 * (i + 1));
	}
	struct sb_msg *r = peer_expect(cli, SB_REPLY);
	CHECK(v_is(r->outcome, "file.copied") && r->flags == 0);
	peer_close(fs);
	peer_close(cli);
}

static void test_stream_of_1000_chunks_in_order(void)
{
	struct peer *fs = peer_hello(PORT, "fs-2", "service");
	struct peer *cli = peer_hello(PORT, "ui-2", "client");
	peer_register(fs, "file.read", 1);

	peer_request(cli, "file.read", 11, 0, NULL, 0);
	uint64_t rid = peer_expect(fs, SB_REQUEST)->id;
	for (unsigned i = 0; i < 1000; i++) {
		uint8_t n[3] = {0xcd, (uint8_t)(i >> 8), (uint8_t)i};
		peer_reply(fs, rid, "file.read-chunk", SB_F_MORE | SB_F_CHUNK, n, 3);
	}
	peer_reply(fs, rid, "file.read-done", 0, NULL, 0);
	for (unsigned i = 0; i < 1000; i++) {
		struct sb_msg *r = peer_expect(cli, SB_REPLY);
		unsigned got = (unsigned)r->payload.ptr[1] << 8 | r->payload.ptr[2];
		if (got != i) {
			CHECK_INT(got, i);
			break;
		}
	}
	CHECK(v_is(peer_expect(cli, SB_REPLY)->outcome, "file.read-done"));
	peer_close(fs);
	peer_close(cli);
}

/* cli asks fs for "file.read" (id) and gets `chunks` chunks of the stream,
 * which stays open; returns the router's id for it. */
static uint64_t stream_started(struct peer *fs, struct peer *cli, uint64_t id, int chunks)
{
	peer_request(cli, "file.read", id, 0, NULL, 0);
	uint64_t rid = peer_expect(fs, SB_REQUEST)->id;
	for (int i = 0; i < chunks; i++)
		peer_reply(fs, rid, "file.read-chunk", SB_F_MORE | SB_F_CHUNK, NULL, 0);
	for (int i = 0; i < chunks; i++)
		peer_expect(cli, SB_REPLY);
	return rid;
}

static void test_cancel_mid_stream(void)
{
	struct peer *fs = peer_hello(PORT, "fs-3", "service");
	struct peer *cli = peer_hello(PORT, "ui-3", "client");
	peer_register(fs, "file.read", 1);

	uint64_t rid = stream_started(fs, cli, 12, 10);

	struct sb_msg cancel = {.kind = SB_CANCEL, .id = 12};
	peer_send(cli, &cancel);
	struct sb_msg *e = peer_expect(cli, SB_ERROR);
	CHECK(e->id == 12 && e->code == (uint32_t)-SB_ECANCELLED);
	CHECK(peer_expect(fs, SB_CANCEL)->id == rid); /* the handler hears it */

	/* Chunks the handler had in flight are dropped, not delivered. */
	peer_reply(fs, rid, "file.read-chunk", SB_F_MORE | SB_F_CHUNK, NULL, 0);
	peer_expect_silence(cli, 100);
	peer_close(fs);
	peer_close(cli);
}

static void test_timeout_then_late_reply(void)
{
	struct peer *slow = peer_hello(PORT, "slow-1", "service");
	struct peer *cli = peer_hello(PORT, "ui-4", "client");
	peer_register(slow, "report.build", 1);
	uint64_t timeouts = stats().timeouts, late = stats().late_replies;

	peer_request(cli, "report.build", 21, 50, NULL, 0);
	uint64_t rid = peer_expect(slow, SB_REQUEST)->id;
	struct sb_msg *e = peer_expect(cli, SB_ERROR);
	CHECK(e->id == 21 && e->code == (uint32_t)-SB_ETIMEOUT);
	CHECK(peer_expect(slow, SB_CANCEL)->id == rid);
	peer_reply(slow, rid, "built", 0, NULL, 0);
	peer_expect_silence(cli, 100);
	CHECK_INT(stats().timeouts, timeouts + 1);
	CHECK_INT(stats().late_replies, late + 1);
	peer_close(slow);
	peer_close(cli);
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A timeout never fires early, even for the request that wakes a shard
 * after a long idle spell (the shard's clock was once stale by its sleep). */
static void test_timeout_after_idle_is_not_early(void)
{
	struct peer *slow = peer_hello(PORT, "slow-2", "service");
	struct peer *cli = peer_hello(PORT, "ui-4b", "client");
	peer_register(slow, "report.idle", 1);
	struct timespec idle = {1, 0};
	nanosleep(&idle, NULL);

	uint64_t t0 = mono_ms();
	peer_request(cli, "report.idle", 22, 500, NULL, 0);
	peer_expect(slow, SB_REQUEST);
	struct sb_msg *e = peer_expect(cli, SB_ERROR);
	CHECK(e->code == (uint32_t)-SB_ETIMEOUT);
	CHECK(mono_ms() - t0 >= 500);
	peer_close(slow);
	peer_close(cli);
}

static void test_no_handler(void)
{
	struct peer *cli = peer_hello(PORT, "ui-5", "client");
	peer_request(cli, "nobody.home", 5, 0, NULL, 0);
	struct sb_msg *e = peer_expect(cli, SB_ERROR);
	CHECK(e->id == 5 && e->code == (uint32_t)-SB_ENOHANDLER);
	CHECK_INT(e->flags, 0); /* the connection stays */
	peer_close(cli);
}

static void test_handler_killed_mid_stream(void)
{
	struct peer *fs = peer_hello(PORT, "fs-4", "service");
	struct peer *cli = peer_hello(PORT, "ui-6", "client");
	peer_register(fs, "file.read", 1);

	stream_started(fs, cli, 31, 3);
	peer_close(fs);
	struct sb_msg *e = peer_expect(cli, SB_ERROR);
	CHECK(e->id == 31 && e->code == (uint32_t)-SB_EPEERGONE);
	peer_close(cli);
}

/* Answers every request waiting on a service; returns how many. */
static int serve_all(struct peer *svc, const char *outcome)
{
	int n = 0;
	while (peer_recv_within(svc, 100) == 1) {
		if (svc->m.kind != SB_REQUEST)
			continue;
		peer_reply(svc, svc->m.id, outcome, 0, svc->m.payload.ptr, svc->m.payload.len);
		n++;
	}
	return n;
}

/* The value of key k in MessagePack map o, or NULL. */
static const msgpack_object *map_get(const msgpack_object *o, const char *k)
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

static int str_is(const msgpack_object *o, const char *s)
{
	return o != NULL && o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(s) &&
	       memcmp(o->via.str.ptr, s, o->via.str.size) == 0;
}

/* The element of array o whose key k is the string v, or NULL. */
static const msgpack_object *find_by(const msgpack_object *o, const char *k, const char *v)
{
	for (uint32_t i = 0; o->type == MSGPACK_OBJECT_ARRAY && i < o->via.array.size; i++)
		if (str_is(map_get(&o->via.array.ptr[i], k), v))
			return &o->via.array.ptr[i];
	return NULL;
}

/* Asks the router for one of its own names; the reply's payload, decoded. */
static msgpack_object ask_router(struct peer *p, const char *name, msgpack_unpacked *u)
{
	static uint64_t id = 500;
	peer_request(p, name, ++id, 0, NULL, 0);
	struct sb_msg *r = peer_expect(p, SB_REPLY);
	CHECK(r->id == id && v_is(r->outcome, "ok"));
	size_t off = 0;
	msgpack_unpacked_init(u);
	CHECK(msgpack_unpack_next(u, (const char *)r->payload.ptr, r->payload.len, &off) ==
	      MSGPACK_UNPACK_SUCCESS);
	CHECK(off == r->payload.len);
	return u->data;
}

static void test_two_handlers_share_and_fail_over(void)
{
	struct peer *a = peer_hello(PORT, "worker-a", "service");
	struct peer *b = peer_hello(PORT, "worker-b", "service");
	struct peer *cli = peer_hello(PORT, "ui-7", "client");
	peer_register(a, "work", 1);
	peer_register(b, "work", 1);

	for (uint64_t id = 1; id <= 20; id++)
		peer_request(cli, "work", id, 0, NULL, 0);
	int na = serve_all(a, "done"), nb = serve_all(b, "done");
	CHECK_INT(na + nb, 20);
	CHECK(na > 0 && nb > 0);
	for (int i = 0; i < 20; i++)
		CHECK(v_is(peer_expect(cli, SB_REPLY)->outcome, "done"));

	peer_close(a); /* one instance dies: the other keeps serving */
	/* Until the client's shard has seen the close, a request may still go
	 * to a and end with "peer gone" (a correct answer). Ask the router, as
	 * the client's shard sees it, until "work" has one handler left. */
	int left = 2;
	for (int tries = 0; tries < 500 && left != 1; tries++) {
		msgpack_unpacked u;
		msgpack_object routes = ask_router(cli, "$sb.routes", &u);
		const msgpack_object *r = find_by(&routes, "name", "work");
		const msgpack_object *hs = r ? map_get(r, "handlers") : NULL;
		left = hs != NULL && hs->type == MSGPACK_OBJECT_ARRAY ? (int)hs->via.array.size
								      : -1;
		msgpack_unpacked_destroy(&u);
		if (left != 1)
			usleep(10000);
	}
	CHECK_INT(left, 1);
	for (uint64_t id = 21; id <= 30; id++)
		peer_request(cli, "work", id, 0, NULL, 0);
	CHECK_INT(serve_all(b, "done"), 10);
	for (int i = 0; i < 10; i++)
		peer_expect(cli, SB_REPLY);
	peer_close(b);
	peer_close(cli);
}

/* Clients on both shards reach a handler on one: one same-shard path, one
 * cross-shard, both right after the ACK (registration is visible at once). */
static void test_same_shard_and_cross_shard(void)
{
	struct peer *svc = peer_hello(PORT, "echo-1", "service");
	struct peer *cli[16] = {0};
	int same = -1, other = -1;

	peer_register(svc, "echo", 1);
	for (int i = 0; i < 16 && (same < 0 || other < 0); i++) {
		char name[16];
		snprintf(name, sizeof name, "ui-8-%d", i);
		cli[i] = peer_hello(PORT, name, "client");
		if (cli[i]->shard == svc->shard && same < 0)
			same = i;
		if (cli[i]->shard != svc->shard && other < 0)
			other = i;
	}
	CHECK(same >= 0 && other >= 0);
	for (int k = 0; k < 2 && same >= 0 && other >= 0; k++) {
		struct peer *c = cli[k == 0 ? same : other];
		peer_request(c, "echo", 40 + (uint64_t)k, 0, TRANSFER, sizeof TRANSFER);
		struct sb_msg *req = peer_expect(svc, SB_REQUEST);
		CHECK_INT(req->from, c->peer_id);
		peer_reply(svc, req->id, "echoed", 0, req->payload.ptr, req->payload.len);
		struct sb_msg *rep = peer_expect(c, SB_REPLY);
		CHECK(rep->id == 40 + (uint64_t)k);
		CHECK(payload_is(rep->payload, TRANSFER, sizeof TRANSFER));
	}
	for (int i = 0; i < 16; i++)
		peer_close(cli[i]);
	peer_close(svc);
}

static void test_chained_request_from_a_handler(void)
{
	struct peer *users = peer_hello(PORT, "users-1", "service");
	struct peer *pw = peer_hello(PORT, "passwords-1", "service");
	struct peer *cli = peer_hello(PORT, "signup-1", "client");
	peer_register(users, "users.create", 1);
	peer_register(pw, "passwords.encrypt", 1);

	peer_request(cli, "users.create", 50, 0, NULL, 0);
	uint64_t outer = peer_expect(users, SB_REQUEST)->id;
	/* Inside its handler, users asks passwords before answering. */
	peer_request(users, "passwords.encrypt", 900, 0, NULL, 0);
	struct sb_msg *inner = peer_expect(pw, SB_REQUEST);
	CHECK_INT(inner->from, users->peer_id);
	peer_reply(pw, inner->id, "encrypted", 0, NULL, 0);
	CHECK(peer_expect(users, SB_REPLY)->id == 900);
	peer_reply(users, outer, "user.created", 0, NULL, 0);
	struct sb_msg *r = peer_expect(cli, SB_REPLY);
	CHECK(r->id == 50 && v_is(r->outcome, "user.created"));
	peer_close(users);
	peer_close(pw);
	peer_close(cli);
}

static void register_internal(struct peer *p, const char *name, uint64_t id)
{
	struct sb_msg m = {.kind = SB_REGISTER, .id = id, .flags = SB_F_INTERNAL};
	m.name = v_str(name);
	peer_send(p, &m);
	CHECK(peer_expect(p, SB_ACK)->id == id);
}

/* An internal handler answers services only; a client hears `forbidden`
 * (not `no handler`: the name is served, just not for it). */
static void test_internal_handler_is_for_services(void)
{
	struct peer *pw = peer_hello(PORT, "passwords-2", "service");
	struct peer *cli = peer_hello(PORT, "signup-2", "client");
	struct peer *users = peer_hello(PORT, "users-2", "service");
	register_internal(pw, "passwords.encrypt", 1);
	uint64_t refused = stats().forbidden;

	peer_request(cli, "passwords.encrypt", 60, 0, NULL, 0);
	struct sb_msg *e = peer_expect(cli, SB_ERROR);
	CHECK(e->id == 60);
	CHECK_INT(e->code, -SB_EFORBIDDEN);
	CHECK(v_is(e->text, "passwords.encrypt is internal: only services may call it"));
	struct sb_msg s = {.kind = SB_SEND, .name = v_str("passwords.encrypt")};
	peer_send(cli, &s); /* a send has nobody to tell: dropped, counted */
	peer_expect_silence(pw, 100);
	CHECK_INT(stats().forbidden, refused + 2);
	/* A broadcast request reaches no handler either: forbidden, not "no
	 * connected peers". */
	struct sb_msg all = {.kind = SB_REQUEST, .id = 62, .flags = SB_F_BROADCAST};
	all.name = v_str("passwords.encrypt");
	peer_send(cli, &all);
	e = peer_expect(cli, SB_ERROR);
	CHECK(e->id == 62);
	CHECK_INT(e->code, -SB_EFORBIDDEN);
	peer_expect_silence(pw, 50);

	peer_request(users, "passwords.encrypt", 61, 0, NULL, 0);
	struct sb_msg *req = peer_expect(pw, SB_REQUEST);
	CHECK_INT(req->from, users->peer_id);
	peer_reply(pw, req->id, "encrypted", 0, NULL, 0);
	CHECK(peer_expect(users, SB_REPLY)->id == 61);
	peer_send(users, &s);
	CHECK(v_is(peer_expect(pw, SB_SEND)->name, "passwords.encrypt"));
	peer_close(pw);
	peer_close(cli);
	peer_close(users);
}

/* One name, two handlers, one internal: clients always reach the public
 * one, services are balanced over both. */
static void test_internal_and_public_handlers_of_one_name(void)
{
	struct peer *inside = peer_hello(PORT, "work-internal", "service");
	struct peer *outside = peer_hello(PORT, "work-public", "service");
	struct peer *cli = peer_hello(PORT, "ui-9", "client");
	struct peer *svc = peer_hello(PORT, "batch-1", "service");
	register_internal(inside, "work2", 1);
	peer_register(outside, "work2", 1);
	uint64_t refused = stats().forbidden;

	for (uint64_t id = 1; id <= 10; id++)
		peer_request(cli, "work2", id, 0, NULL, 0);
	CHECK_INT(serve_all(outside, "done"), 10);
	CHECK_INT(serve_all(inside, "done"), 0);
	for (int i = 0; i < 10; i++)
		CHECK(v_is(peer_expect(cli, SB_REPLY)->outcome, "done"));

	for (uint64_t id = 11; id <= 30; id++)
		peer_request(svc, "work2", id, 0, NULL, 0);
	int ni = serve_all(inside, "done"), no = serve_all(outside, "done");
	CHECK_INT(ni + no, 20);
	CHECK(ni > 0 && no > 0);
	for (int i = 0; i < 20; i++)
		peer_expect(svc, SB_REPLY);
	CHECK_INT(stats().forbidden, refused);

	/* With the public one gone, clients are refused again. */
	struct sb_msg un = {.kind = SB_UNREGISTER, .id = 2, .name = v_str("work2")};
	peer_send(outside, &un);
	CHECK(peer_expect(outside, SB_ACK)->id == 2);
	peer_request(cli, "work2", 31, 0, NULL, 0);
	CHECK_INT(peer_expect(cli, SB_ERROR)->code, -SB_EFORBIDDEN);
	peer_close(inside);
	peer_close(outside);
	peer_close(cli);
	peer_close(svc);
}

static void test_handshake_rules(void)
{
	struct peer *first = peer_hello(PORT, "unique-1", "client");
	struct peer *dup = peer_dial(PORT);
	struct sb_msg h = {
		.kind = SB_HELLO, .version = 1, .peer = v_str("unique-1"), .role = v_str("client")};
	peer_send(dup, &h);
	struct sb_msg *e = peer_expect(dup, SB_ERROR);
	CHECK(e->code == (uint32_t)-SB_EDUPNAME && (e->flags & SB_F_FATAL));
	CHECK_INT(peer_recv_within(dup, 2000), 0);
	peer_close(dup);

	/* The first holder of the name is undisturbed. */
	struct sb_msg ping = {.kind = SB_PING, .id = 77};
	peer_send(first, &ping);
	CHECK(peer_expect(first, SB_PONG)->id == 77);

	/* Clients may not register; nobody may register a reserved name. */
	struct sb_msg reg = {.kind = SB_REGISTER, .id = 2, .name = v_str("steal.me")};
	peer_send(first, &reg);
	CHECK(peer_expect(first, SB_ERROR)->code == (uint32_t)-SB_EFORBIDDEN);
	struct peer *svc = peer_hello(PORT, NULL, "service"); /* assigned a name */
	reg.name = v_str("$sb.routes");
	peer_send(svc, &reg);
	CHECK(peer_expect(svc, SB_ERROR)->code == (uint32_t)-SB_EINVAL);

	/* A name freed by a disconnect can be taken again. */
	peer_close(first);
	for (int i = 0; i < 50; i++) { /* the close reaches the router asynchronously */
		struct peer *again = peer_dial(PORT);
		peer_send(again, &h);
		int ok = peer_recv_within(again, 5000) == 1 && again->m.kind == SB_WELCOME;
		peer_close(again);
		if (ok)
			break;
		CHECK(i < 49);
	}
	peer_close(svc);
}

/* 100,000 requests over 4 connections, 2 handlers: every one must end with
 * exactly one final reply carrying its own payload. */
enum { CLIENTS = 4, HANDLERS = 2, WINDOW = 64, LOAD_MAX = 100000 };

/* total requests over 4 connections, 2 handlers: every one must end with
 * exactly one final reply carrying its own payload. */
static void run_load(unsigned total)
{
	struct peer *h[HANDLERS], *c[CLIENTS];
	static uint8_t answered[LOAD_MAX + 1];
	memset(answered, 0, sizeof answered);
	unsigned sent[CLIENTS] = {0}, done = 0, wrong = 0, twice = 0;

	for (int i = 0; i < HANDLERS; i++) {
		char name[16];
		snprintf(name, sizeof name, "load-h%d", i);
		h[i] = peer_hello(PORT, name, "service");
		peer_register(h[i], "load.echo", 1);
	}
	for (int i = 0; i < CLIENTS; i++) {
		char name[16];
		snprintf(name, sizeof name, "load-c%d", i);
		c[i] = peer_hello(PORT, name, "client");
	}
	unsigned per = total / CLIENTS, inflight[CLIENTS] = {0};
	while (done < total) {
		/* Keep each client's window full. Ids are global sequence numbers. */
		for (int i = 0; i < CLIENTS; i++)
			while (inflight[i] < WINDOW && sent[i] < per) {
				uint32_t seq = (uint32_t)i * per + sent[i]++ + 1;
				uint8_t pl[5] = {0xce, (uint8_t)(seq >> 24), (uint8_t)(seq >> 16),
						 (uint8_t)(seq >> 8), (uint8_t)seq};
				peer_request(c[i], "load.echo", seq, 10000, pl, 5);
				inflight[i]++;
			}
		struct pollfd pfd[CLIENTS + HANDLERS];
		for (int i = 0; i < HANDLERS; i++)
			pfd[i] = (struct pollfd){.fd = h[i]->fd, .events = POLLIN};
		for (int i = 0; i < CLIENTS; i++)
			pfd[HANDLERS + i] = (struct pollfd){.fd = c[i]->fd, .events = POLLIN};
		if (poll(pfd, CLIENTS + HANDLERS, 5000) <= 0) {
			CHECK(!"stalled: no progress for 5 s");
			break;
		}
		for (int i = 0; i < HANDLERS; i++)
			if (pfd[i].revents)
				while (peer_recv_within(h[i], 0) == 1)
					if (h[i]->m.kind == SB_REQUEST)
						peer_reply(h[i], h[i]->m.id, "echoed", 0,
							   h[i]->m.payload.ptr,
							   h[i]->m.payload.len);
		for (int i = 0; i < CLIENTS; i++)
			if (pfd[HANDLERS + i].revents)
				while (peer_recv_within(c[i], 0) == 1) {
					struct sb_msg *m = &c[i]->m;
					uint64_t id = m->id;
					uint32_t seq = m->payload.len == 5
							       ? (uint32_t)m->payload.ptr[1] << 24 |
									 (uint32_t)m->payload.ptr[2]
										 << 16 |
									 (uint32_t)m->payload.ptr[3]
										 << 8 |
									 m->payload.ptr[4]
							       : 0;
					if (m->kind != SB_REPLY || seq != id || id == 0 ||
					    id > total)
						wrong++;
					else if (answered[id]++)
						twice++;
					done++;
					inflight[i]--;
				}
	}
	CHECK_INT(done, total);
	CHECK_INT(wrong, 0);
	CHECK_INT(twice, 0);
	for (unsigned id = 1; id <= total; id++)
		if (answered[id] != 1) {
			CHECK_INT(answered[id], 1);
			break;
		}
	CHECK_INT(stats().inflight, 0);
	for (int i = 0; i < HANDLERS; i++)
		peer_close(h[i]);
	for (int i = 0; i < CLIENTS; i++)
		peer_close(c[i]);
}

static void test_100k_requests_each_answered_once(void)
{
	run_load(100000);
}

/* A service and a client on different shards (the kernel picks a shard per
 * connection, so dial until it spreads them). */
static void cross_pair(const char *prefix, struct peer **svc, struct peer **cli)
{
	*svc = *cli = NULL;
	for (int i = 0; i < 16 && (*cli == NULL || (*cli)->shard == (*svc)->shard); i++) {
		char name[32];
		snprintf(name, sizeof name, "%s-%d", prefix, i);
		struct peer *p = peer_hello(PORT, name, i == 0 ? "service" : "client");
		if (i == 0)
			*svc = p;
		else if (*cli == NULL && p->shard != (*svc)->shard)
			*cli = p;
		else
			peer_close(p);
	}
	CHECK(*svc != NULL && *cli != NULL);
}

/* With rings of 4 slots between shards, mail finds them full all the
 * time: it must wait in order, never be dropped or reordered. */
static void test_full_mail_rings_lose_nothing(void)
{
	struct sb_router_config cfg = base_config();
	cfg.mail_ring = 4;
	swap_in(start_with(&cfg));
	run_load(20000);
	/* Whether requests cross shards depends on where the kernel put each
	 * connection; the 1,000-chunk cross-shard stream below always does. */
	struct peer *svc, *cli;
	cross_pair("ring", &svc, &cli);
	peer_register(svc, "ring.stream", 1);
	peer_request(cli, "ring.stream", 1, 0, NULL, 0);
	uint64_t rid = peer_expect(svc, SB_REQUEST)->id;
	for (unsigned i = 0; i < 1000; i++) {
		uint8_t n[3] = {0xcd, (uint8_t)(i >> 8), (uint8_t)i};
		peer_reply(svc, rid, "chunk", SB_F_MORE | SB_F_CHUNK, n, 3);
	}
	peer_reply(svc, rid, "done", 0, NULL, 0);
	for (unsigned i = 0; i < 1000; i++) {
		struct sb_msg *r = peer_expect(cli, SB_REPLY);
		unsigned got = r->payload.len == 3
				       ? (unsigned)r->payload.ptr[1] << 8 | r->payload.ptr[2]
				       : 99999;
		if (got != i) {
			CHECK_INT(got, i);
			break;
		}
	}
	CHECK(v_is(peer_expect(cli, SB_REPLY)->outcome, "done"));
	CHECK(stats().mail_deferred > 0); /* rings were full, and nothing was lost */
	peer_close(svc);
	peer_close(cli);
	swap_out();
}

struct flood {
	struct peer *p;
	const uint8_t *bytes;
	size_t len;
};

static void *flood_writer(void *arg)
{
	struct flood *f = arg;
	peer_raw(f->p, f->bytes, f->len);
	return NULL;
}

/* A sender much faster than the ring to its target's shard: the mail that
 * waits is bounded, because the sender's reads pause while its shard's
 * backlog is long, and every message still arrives, in order. */
static void test_mail_backlog_is_bounded(void)
{
	enum { N = 60000, RING = 4, BUF = 2048 };
	struct sb_router_config cfg = base_config();
	cfg.mail_ring = RING;
	cfg.recv_buffer_size = BUF;
	swap_in(start_with(&cfg));
	struct peer *svc, *cli;
	cross_pair("backlog", &svc, &cli);
	peer_register(svc, "backlog.sink", 1);

	size_t frame = 0, len = 0;
	uint8_t *bytes = malloc((size_t)N * 64);
	for (uint32_t i = 0; i < N; i++) {
		uint8_t pl[5] = {0xce, (uint8_t)(i >> 24), (uint8_t)(i >> 16), (uint8_t)(i >> 8),
				 (uint8_t)i};
		struct sb_msg m = {.kind = SB_SEND, .name = v_str("backlog.sink")};
		m.payload = (struct sb_view){pl, sizeof pl};
		long n = sb_encode(&m, bytes + len, 64);
		CHECK(n > 0);
		frame = (size_t)n;
		len += frame;
	}
	struct flood f = {cli, bytes, len};
	pthread_t t;
	pthread_create(&t, NULL, flood_writer, &f);
	for (uint32_t i = 0; i < N; i++) {
		struct sb_msg *m = peer_expect(svc, SB_SEND);
		uint32_t got = m->payload.len == 5 ? (uint32_t)m->payload.ptr[1] << 24 |
							     (uint32_t)m->payload.ptr[2] << 16 |
							     (uint32_t)m->payload.ptr[3] << 8 |
							     m->payload.ptr[4]
						   : UINT32_MAX;
		if (got != i) {
			CHECK_INT(got, i);
			break;
		}
	}
	pthread_join(t, NULL);
	/* The backlog stops the sender once it holds a ring's worth; the rest of
	 * the receive buffer being routed still joins it, plus the frame that
	 * straddled into that buffer. */
	struct sb_router_stats s = stats();
	CHECK(s.mail_deferred > 0);
	CHECK(s.pauses > 0);
	if (s.mail_backlog_peak > RING + BUF / frame + 2)
		fprintf(stderr, "  backlog peak %llu mails, bound %zu\n",
			(unsigned long long)s.mail_backlog_peak, RING + BUF / frame + 2);
	CHECK(s.mail_backlog_peak <= RING + BUF / frame + 2);
	free(bytes);
	peer_close(svc);
	peer_close(cli);
	swap_out();
}

/* With a receive pool of 8 small buffers, receives run dry all the time:
 * every stop must be re-armed and no byte lost. */
static void test_tiny_receive_pool_loses_nothing(void)
{
	struct sb_router_config cfg = base_config();
	cfg.recv_buffers = 8;
	cfg.recv_buffer_size = 512;
	swap_in(start_with(&cfg));
	run_load(20000);
	CHECK(stats().recv_starved > 0); /* the path was taken, not just allowed */
	swap_out();
}

/* The handler side of the flow-control test: streams chunks with blocking
 * writes from its own thread, so a paused router shows up as a stall. */
struct streamer {
	struct peer *fs;
	uint64_t rid;
	int chunks;
	_Atomic int written;
};

static void *stream_chunks(void *arg)
{
	static uint8_t chunk[16384 + 3] = {0xc5, 0x40, 0x00};
	struct streamer *st = arg;
	for (int i = 0; i < st->chunks; i++) {
		chunk[3] = (uint8_t)i;
		chunk[4] = (uint8_t)(i >> 8);
		peer_reply(st->fs, st->rid, "file.read-chunk", SB_F_MORE | SB_F_CHUNK, chunk,
			   sizeof chunk);
		atomic_store(&st->written, i + 1);
	}
	peer_reply(st->fs, st->rid, "file.read-done", 0, NULL, 0);
	return NULL;
}

/* A requester that reads slowly slows its stream down: the router stops
 * reading the handler instead of queueing 32 MiB or dropping anyone. The
 * requester reads nothing at all for a while here, so the slow-consumer
 * clock is set well past the longest the test waits. */
static void test_slow_requester_slows_the_stream(void)
{
	/* small queues: bounds reached with little data */
	swap_in(start_slow(2, SMALL_OUT_MAX, 600000));

	struct peer *fs = peer_hello(PORT, "fs-big", "service");
	struct peer *cli = peer_hello(PORT, "lazy", "client");
	peer_register(fs, "file.read", 1);
	peer_request(cli, "file.read", 1, 60000, NULL, 0);
	struct streamer st = {.fs = fs, .rid = peer_expect(fs, SB_REQUEST)->id, .chunks = 2048};
	atomic_init(&st.written, 0);
	pthread_t t;
	pthread_create(&t, NULL, stream_chunks, &st);

	/* Wait until the handler is stuck: the router paused it and it has made
	 * no progress for 0.5 s (a busy machine may just be slow: 20 s at most). */
	int last = -1, still = 0;
	for (int tick = 0; tick < 200 && (still < 5 || stats().pauses == 0); tick++) {
		struct timespec ts = {0, 100 * 1000000};
		nanosleep(&ts, NULL);
		int now = atomic_load(&st.written);
		still = now == last ? still + 1 : 0;
		last = now;
	}
	CHECK(last < st.chunks); /* it could not write everything: pushed back */
	CHECK(stats().pauses >= 1);
	CHECK(stats().queued_peak <= SMALL_OUT_MAX + SMALL_WINDOW);
	CHECK_INT(stats().slow_consumers, 0);

	/* Now the requester reads; every chunk arrives, in order. */
	for (int i = 0; i < st.chunks; i++) {
		struct sb_msg *r = peer_expect(cli, SB_REPLY);
		int got = r->payload.len > 4 ? r->payload.ptr[3] | r->payload.ptr[4] << 8 : -1;
		if (got != (i & 0xffff)) {
			CHECK_INT(got, i);
			break;
		}
	}
	CHECK(v_is(peer_expect(cli, SB_REPLY)->outcome, "file.read-done"));
	pthread_join(t, NULL);
	CHECK(stats().queued_peak <= SMALL_OUT_MAX + SMALL_WINDOW);
	CHECK_INT(stats().slow_consumers, 0);
	peer_close(cli);
	peer_close(fs);
	swap_out();
}

/* A service that stops reading while sends pour in pauses their sender at
 * its mark; taking nothing for slow_ms, it is dropped, and the router's
 * memory stays bounded. */
static void test_slow_consumer_is_dropped(void)
{
	/* small queues: bounds reached with little data */
	swap_in(start_slow(2, SMALL_OUT_MAX, 300));

	struct peer *sink = peer_dial(PORT);
	int small = 4096;
	setsockopt(sink->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
	struct sb_msg h = {
		.kind = SB_HELLO, .version = 1, .peer = v_str("sink"), .role = v_str("service")};
	peer_send(sink, &h);
	peer_expect(sink, SB_WELCOME);
	peer_register(sink, "firehose", 1);
	struct peer *cli = peer_hello(PORT, "hose", "client");

	static uint8_t blob[16384 + 3] = {0xc5, 0x40, 0x00};
	struct sb_msg m = {.kind = SB_SEND, .name = v_str("firehose")};
	m.payload.ptr = blob;
	m.payload.len = sizeof blob;
	/* 32 MiB at most; the sink reads none. The writes block while the
	 * router holds the sender paused, until the sink is dropped. */
	for (int i = 0; i < 2048 && stats().slow_consumers == 0; i++)
		peer_send(cli, &m);
	for (int i = 0; i < 100 && stats().slow_consumers == 0; i++) {
		struct timespec ts = {0, 10 * 1000000};
		nanosleep(&ts, NULL);
	}
	CHECK_INT(stats().slow_consumers, 1);
	CHECK(stats().pauses >= 1);
	CHECK(stats().queued_peak <= SMALL_OUT_MAX + SMALL_WINDOW);
	/* The sender is served again. */
	struct sb_msg ping = {.kind = SB_PING, .id = 5};
	peer_send(cli, &ping);
	CHECK(peer_expect(cli, SB_PONG)->id == 5);
	peer_close(cli);
	peer_close(sink);
	swap_out();
}

static void test_stop_drains(void)
{
	struct peer *svc = peer_hello(PORT, "drain-svc", "service");
	struct peer *cli = peer_hello(PORT, "drain-cli", "client");
	peer_register(svc, "slow.job", 1);
	peer_request(cli, "slow.job", 61, 0, NULL, 0);
	peer_expect(svc, SB_REQUEST);

	sb_router_stop(R, 100); /* nobody answers: the deadline ends it */
	CHECK(v_is(peer_expect(cli, SB_GOODBYE)->text, "router draining"));
	struct sb_msg *e = peer_expect(cli, SB_ERROR);
	CHECK(e->id == 61 && e->code == (uint32_t)-SB_EDRAINING);
	CHECK_INT(peer_recv_within(cli, 2000), 0); /* then the connection closes */
	peer_close(svc);
	peer_close(cli);
	sb_router_free(R);
	R = NULL;
}

/* The connection past max_conns is told why and closed; the others keep
 * working, and a place that frees up can be taken again. */
static void test_connection_limit(void)
{
	struct sb_router_config cfg = base_config();
	cfg.max_conns = 3;
	swap_in(start_with(&cfg));
	struct peer *p[3];
	for (int i = 0; i < 3; i++) {
		char name[16];
		snprintf(name, sizeof name, "lim-%d", i);
		p[i] = peer_hello(PORT, name, "client");
	}
	struct peer *extra = peer_dial(PORT);
	struct sb_msg *e = peer_expect(extra, SB_ERROR);
	CHECK(e->code == (uint32_t)-SB_EOVERLOADED && (e->flags & SB_F_FATAL));
	CHECK(v_is(e->text, "too many connections (limit 3)"));
	CHECK_INT(peer_recv_within(extra, 2000), 0);
	peer_close(extra);
	CHECK_INT(stats().refused, 1);
	for (int i = 0; i < 3; i++) {
		struct sb_msg ping = {.kind = SB_PING, .id = 70u + (unsigned)i};
		peer_send(p[i], &ping);
		CHECK(peer_expect(p[i], SB_PONG)->id == 70u + (unsigned)i);
	}
	/* The router frees a place once it has seen the close: retry until. */
	peer_close(p[0]);
	int welcomed = 0;
	for (int tries = 0; tries < 100 && !welcomed; tries++) {
		struct peer *q = peer_dial(PORT);
		struct sb_msg h = {
			.kind = SB_HELLO, .version = SB_PROTO_VERSION, .role = v_str("client")};
		peer_send(q, &h);
		if (peer_recv_within(q, 2000) == 1 && q->m.kind == SB_WELCOME)
			welcomed = 1;
		else
			usleep(10000);
		peer_close(q);
	}
	CHECK(welcomed);
	peer_close(p[1]);
	peer_close(p[2]);
	swap_out();
}

/* A connection that does not finish HELLO in time is told why and closed,
 * never before its deadline; one that did is left alone. */
static void test_hello_deadline(void)
{
	struct sb_router_config cfg = base_config();
	cfg.hello_timeout_ms = 200;
	swap_in(start_with(&cfg));
	struct peer *ok = peer_hello(PORT, "prompt", "client");
	uint64_t t0 = mono_ms(); /* before the connects: the router's clock starts after */
	struct peer *silent = peer_dial(PORT);
	struct peer *partial = peer_dial(PORT);
	peer_raw(partial, "\x00\x00\x00\x20\x97\x01", 6); /* half a HELLO */
	struct peer *late[2] = {silent, partial};
	for (int i = 0; i < 2; i++) {
		struct sb_msg *e = peer_expect(late[i], SB_ERROR);
		CHECK(e->code == (uint32_t)-SB_ETIMEOUT && (e->flags & SB_F_FATAL));
		CHECK(v_is(e->text, "no HELLO within 200 ms"));
		CHECK(mono_ms() - t0 >= 200);
		CHECK_INT(peer_recv_within(late[i], 2000), 0);
	}
	CHECK_INT(stats().hello_timeouts, 2);
	struct sb_msg ping = {.kind = SB_PING, .id = 9};
	peer_send(ok, &ping);
	CHECK(peer_expect(ok, SB_PONG)->id == 9);
	peer_close(ok);
	peer_close(silent);
	peer_close(partial);
	swap_out();
}

/* $sb.routes, $sb.peers and $sb.stats answer with what the router knows,
 * to any client; other $ names are the router's and cannot be taken. */
static void test_reserved_names(void)
{
	struct peer *svc = peer_hello(PORT, "admin-svc", "service");
	struct peer *cli = peer_hello(PORT, "admin-cli", "client");
	peer_register(svc, "admin.work", 1);
	msgpack_unpacked u;

	msgpack_object routes = ask_router(cli, "$sb.routes", &u);
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

	msgpack_object peers = ask_router(cli, "$sb.peers", &u);
	const msgpack_object *me = find_by(&peers, "peer", "admin-svc");
	CHECK(me != NULL && str_is(map_get(me, "role"), "service"));
	const msgpack_object *pid = me ? map_get(me, "id") : NULL;
	CHECK(pid != NULL && pid->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
	      pid->via.u64 == svc->peer_id);
	CHECK(find_by(&peers, "peer", "admin-cli") != NULL);
	msgpack_unpacked_destroy(&u);

	msgpack_object st = ask_router(cli, "$sb.stats", &u);
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
}

static uint64_t route_stat(const msgpack_object *route, const char *k)
{
	const msgpack_object *v = route != NULL ? map_get(route, k) : NULL;
	CHECK(v != NULL && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER);
	return v != NULL && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? v->via.u64 : 0;
}

/* $sb.stats counts each name's requests by how they ended, summed over the
 * shards the requesters are on, with latency percentiles. */
static void test_route_stats(void)
{
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

	msgpack_object st = ask_router(cli[1], "$sb.stats", &u);
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
}

static void test_busy_port_is_reported(void)
{
	struct sb_router_config cfg;
	int err = 0;
	struct sb_router *a = start(1, 0);
	sb_router_config_init(&cfg);
	cfg.port = sb_router_port(a);
	cfg.shards = 1;
	cfg.log_level = 0;
	cfg.bind_retries = 2;
	cfg.bind_retry_ms = 10;
	/* A second router must not quietly join the first one's port (which
	 * SO_REUSEPORT alone would allow): it retries, then says it is busy. */
	struct sb_router *b = sb_router_new(&cfg, &err);
	CHECK(b == NULL);
	CHECK_INT(err, SB_ESYS);
	CHECK_INT(errno, EADDRINUSE);
	sb_router_free(b);
	sb_router_stop(a, 0);
	sb_router_free(a);

	/* Once a router is stopped its port is free at once: a restart on
	 * the same port needs no retries. */
	cfg.bind_retries = 0;
	b = sb_router_new(&cfg, &err);
	CHECK(b != NULL);
	sb_router_free(b);
}

/* ---- peers: names, `to`, broadcast, presence, identity -------------------- */

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

static void test_assigned_names_follow_the_pattern(void)
{
	struct sb_router_config cfg = base_config();
	int err = 0;
	static const char *bad[] = {
		"nohash",
		"A#B#",
		"with #space",
		"",
		"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx#", /* no room for 10 digits
									     */
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		cfg.name_pattern = bad[i];
		struct sb_router *r = sb_router_new(&cfg, &err);
		CHECK(r == NULL);
		CHECK_INT(err, SB_EINVAL);
		sb_router_free(r);
	}
	cfg.name_pattern =
		"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx#"; /* 54 bytes and 10
									      digits: just fits */
	struct sb_router *fits = sb_router_new(&cfg, &err);
	CHECK(fits != NULL);
	sb_router_free(fits);
	char pattern[] = "A###";
	cfg.name_pattern = pattern;
	swap_in(start_with(&cfg));
	pattern[0] = 'X'; /* the router keeps its own copy */
	struct peer *p[6];
	p[0] = peer_hello(PORT, NULL, "client");
	p[1] = peer_hello(PORT, NULL, "service");
	p[2] = peer_hello(PORT, "A003", "client"); /* takes the pattern's next name itself */
	p[3] = peer_hello(PORT, NULL, "client");   /* so the pattern skips it */
	p[4] = peer_hello(PORT, "A005", "client");
	p[5] = peer_hello(PORT, NULL, "client");
	CHECK_STR(p[0]->name, "A001");
	CHECK_STR(p[1]->name, "A002");
	CHECK_STR(p[3]->name, "A004");
	CHECK_STR(p[5]->name, "A006");
	CHECK(p[1]->peer_id > p[0]->peer_id);
	close_all(p, 6);
	swap_out();

	/* The default pattern: P and four digits. */
	struct peer *anon = peer_hello(PORT, NULL, "client");
	CHECK(strlen(anon->name) == 5 && anon->name[0] == 'P');
	peer_close(anon);
}

/* cli asks `to` tgt; tgt gets it whatever it registered, and answers. */
static void request_to(struct peer *cli, struct peer *tgt, const char *name, uint64_t id)
{
	send_kind(cli, SB_REQUEST, tgt->name, name, id, 0, 5000);
	struct sb_msg *req = peer_expect(tgt, SB_REQUEST);
	CHECK(v_is(req->name, name));
	CHECK_INT(req->from, cli->peer_id);
	CHECK(payload_is(req->payload, TRANSFER, sizeof TRANSFER));
	peer_reply(tgt, req->id, "here", 0, BALANCE, sizeof BALANCE);
	struct sb_msg *rep = peer_expect(cli, SB_REPLY);
	CHECK(rep->id == id && v_is(rep->outcome, "here"));
	CHECK(rep->peer.ptr == NULL);
	CHECK(payload_is(rep->payload, BALANCE, sizeof BALANCE));
}

/* To a named peer from its own shard and from the other: no registration
 * needed, load balancing skipped, clients addressable too. */
static void test_send_and_request_to_a_peer(void)
{
	struct peer *p[3];
	spread("to", "client", p, 3);
	struct peer *tgt = p[2]; /* spread() keeps the other shard for last */
	struct peer *lb = peer_hello(PORT, "to-lb", "service");
	peer_register(lb, "anything", 1); /* would take it without `to` */
	for (int i = 0; i < 2; i++) {
		request_to(p[i], tgt, "anything", 100 + (uint64_t)i);
		send_kind(p[i], SB_SEND, tgt->name, "anything", 0, 0, 0);
		struct sb_msg *m = peer_expect(tgt, SB_SEND);
		CHECK(v_is(m->name, "anything"));
		CHECK_INT(m->from, p[i]->peer_id);
	}
	/* The other way round: to a peer on either shard. */
	request_to(tgt, p[0], "x.y", 110);
	request_to(tgt, p[1], "x.y", 111);
	peer_expect_silence(lb, 100);

	/* A duplicate name is refused; the first holder is still addressable. */
	struct peer *dup = peer_dial(PORT);
	struct sb_msg h = {.kind = SB_HELLO, .version = 1, .role = v_str("client")};
	h.peer = v_str(tgt->name);
	peer_send(dup, &h);
	CHECK(peer_expect(dup, SB_ERROR)->code == (uint32_t)-SB_EDUPNAME);
	peer_close(dup);
	request_to(p[0], tgt, "still.there", 112);
	peer_close(lb);
	close_all(p, 3);
}

static void test_unknown_peer_and_peer_not_connected(void)
{
	struct peer *cli = peer_hello(PORT, "asker", "client");
	send_kind(cli, SB_REQUEST, "ghost", "hello", 1, 0, 1000);
	struct sb_msg *e = peer_expect(cli, SB_ERROR);
	CHECK(e->id == 1 && e->code == (uint32_t)-SB_EUNKNOWNPEER && e->flags == 0);
	CHECK(v_is(e->text, "no peer named ghost has connected"));

	/* A send to nobody is dropped and counted: there is no one to tell. */
	uint64_t dropped = stats().no_handler;
	send_kind(cli, SB_SEND, "ghost", "hello", 0, 0, 0);
	struct sb_msg ping = {.kind = SB_PING, .id = 2};
	peer_send(cli, &ping);
	CHECK(peer_expect(cli, SB_PONG)->id == 2);
	CHECK_INT(stats().no_handler, dropped + 1);

	/* `to` and BROADCAST contradict each other. */
	send_kind(cli, SB_REQUEST, "asker", "hello", 3, SB_F_BROADCAST, 1000);
	e = peer_expect(cli, SB_ERROR);
	CHECK(e->id == 3 && e->code == (uint32_t)-SB_EINVAL && e->flags == 0);

	/* Known, then gone. Until the asker's shard has heard of the close,
	 * the request may reach the closed connection: "peer gone". */
	struct peer *leaver = peer_hello(PORT, "leaver", "client");
	peer_close(leaver);
	int code = 0;
	for (uint64_t id = 10; id < 200 && code != -SB_ENOTCONNECTED; id++) {
		send_kind(cli, SB_REQUEST, "leaver", "hello", id, 0, 2000);
		e = peer_expect(cli, SB_ERROR);
		CHECK(e->id == id);
		code = -(int)e->code;
		CHECK(code == SB_ENOTCONNECTED || code == SB_EPEERGONE);
		if (code != SB_ENOTCONNECTED)
			usleep(5000);
	}
	CHECK_INT(code, SB_ENOTCONNECTED);
	CHECK(v_is(e->text, "peer leaver is not connected"));

	/* The name is free again, and a new holder is addressable. */
	struct peer *back = peer_hello(PORT, "leaver", "client");
	for (uint64_t id = 300; id < 500; id++) {
		send_kind(cli, SB_REQUEST, "leaver", "hello", id, 0, 2000);
		int rc = peer_recv_within(back, 100);
		if (rc == 1 && back->m.kind == SB_REQUEST) {
			peer_reply(back, back->m.id, "back", 0, NULL, 0);
			CHECK(v_is(peer_expect(cli, SB_REPLY)->outcome, "back"));
			break;
		}
		e = peer_expect(cli, SB_ERROR); /* the replica still had the old one */
		CHECK(e->id == id && (e->code == (uint32_t)-SB_EPEERGONE ||
				      e->code == (uint32_t)-SB_ENOTCONNECTED));
		CHECK(id < 499);
	}
	peer_close(back);
	peer_close(cli);
}

/* A broadcast request reaches every handler on both shards; each result
 * names its peer, and the aggregate ends it. */
static void test_broadcast_request_collects_every_peer(void)
{
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
	uint64_t late = stats().late_replies;
	peer_reply(h[1], rid, "again", 0, NULL, 0);
	peer_expect_silence(cli, 100);
	CHECK_INT(stats().late_replies, late + 1);
	CHECK_INT(stats().inflight, 0);
	peer_close(cli);
	close_all(h, 3);
}

static void test_broadcast_to_nobody(void)
{
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
}

/* A silent handler times out on its own: the others' results are not held
 * back behind it (they arrive first), and it gets a CANCEL. */
static void test_broadcast_timeout_holds_nobody_back(void)
{
	struct peer *h[3];
	spread("bt", "service", h, 3);
	for (int i = 0; i < 3; i++)
		peer_register(h[i], "slowpoke", 1);
	struct peer *cli = peer_hello(PORT, "bt-cli", "client");
	uint64_t timeouts = stats().timeouts;

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
	CHECK_INT(stats().timeouts, timeouts + 1);
	peer_reply(h[1], rid, "too late", 0, NULL, 0);
	peer_expect_silence(cli, 100);
	peer_close(cli);
	close_all(h, 3);
}

static void test_broadcast_handler_killed(void)
{
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
}

static void test_broadcast_cancel(void)
{
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
	CHECK_INT(stats().inflight, 0);
	peer_close(cli);
	close_all(h, 2);
}

static void subscribe(struct peer *p, uint64_t id, uint8_t flags)
{
	struct sb_msg m = {
		.kind = SB_SUBSCRIBE, .id = id, .flags = flags, .name = v_str("presence")};
	peer_send(p, &m);
	CHECK(peer_expect(p, SB_ACK)->id == id);
}

/* A PRESENCE event about peer name (id), with its role in the payload. */
static void expect_presence(struct peer *sub, unsigned event, const char *name, uint32_t id,
			    const char *role)
{
	struct sb_msg *m = peer_expect(sub, SB_PRESENCE);
	/* Peers of earlier tests close as they end; their shard's news of it
	 * may reach the subscriber's shard after it subscribed. Skip those. */
	for (int i = 0; i < 64 && m->kind == SB_PRESENCE && !v_is(m->peer, name) &&
			(m->event == SB_PEER_DISCONNECTED || m->event == SB_PEER_DRAINING);
	     i++)
		m = peer_expect(sub, SB_PRESENCE);
	CHECK_INT(m->event, event);
	CHECK(v_is(m->peer, name));
	CHECK_INT(m->peer_id, id);
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	CHECK(msgpack_unpack_next(&u, (const char *)m->payload.ptr, m->payload.len, NULL) ==
	      MSGPACK_UNPACK_SUCCESS);
	CHECK(str_is(map_get(&u.data, "role"), role));
	CHECK(map_get(&u.data, "subject") == NULL); /* no TLS here */
	msgpack_unpacked_destroy(&u);
}

/* A subscriber hears peers on the other shard connect, drain and leave. */
static void test_presence_across_shards(void)
{
	struct peer *sub = peer_hello(PORT, "watcher", "client");
	struct sb_msg bad = {.kind = SB_SUBSCRIBE, .id = 1, .name = v_str("weather")};
	peer_send(sub, &bad);
	struct sb_msg *e = peer_expect(sub, SB_ERROR);
	CHECK(e->id == 1 && e->code == (uint32_t)-SB_EINVAL && e->flags == 0);
	subscribe(sub, 2, 0);

	/* Connect until one lands on the other shard; each is seen. */
	struct peer *p = NULL;
	const char *role = "client";
	for (int i = 0; i < 16 && p == NULL; i++) {
		char name[32];
		snprintf(name, sizeof name, "comer-%d", i);
		role = i % 2 ? "service" : "client";
		struct peer *q = peer_hello(PORT, name, role);
		expect_presence(sub, SB_PEER_CONNECTED, q->name, q->peer_id, role);
		if (q->shard != sub->shard) {
			p = q;
			break;
		}
		uint32_t id = q->peer_id;
		peer_close(q);
		expect_presence(sub, SB_PEER_DISCONNECTED, name, id, role);
	}
	CHECK(p != NULL);
	if (p == NULL) {
		peer_close(sub);
		return;
	}
	struct sb_msg bye = {.kind = SB_GOODBYE, .text = v_str("leaving")};
	peer_send(p, &bye);
	expect_presence(sub, SB_PEER_DRAINING, p->name, p->peer_id, role);
	CHECK_INT(peer_recv_within(p, 2000), 0); /* the router closes it */
	expect_presence(sub, SB_PEER_DISCONNECTED, p->name, p->peer_id, role);
	peer_close(p);

	/* Unsubscribed: silence. */
	subscribe(sub, 3, SB_F_OFF);
	struct peer *q = peer_hello(PORT, "unseen", "client");
	peer_close(q);
	peer_expect_silence(sub, 200);
	peer_close(sub);
}

/* Before the first frame from a sender, a handler is told who it is; the
 * sender cannot pass for anyone else. */
static void test_identity_before_first_frame(void)
{
	struct peer *svc = peer_hello(PORT, "id-svc", "service");
	svc->see_identity = 1;
	peer_register(svc, "whoami", 1);
	struct peer *a = peer_hello(PORT, "id-a", "client");
	struct peer *b = peer_hello(PORT, "id-b", "service");

	/* a claims to be someone else in `from`: overwritten. */
	struct sb_msg m = {.kind = SB_REQUEST, .id = 1, .name = v_str("whoami"), .from = 4242};
	peer_send(a, &m);
	struct sb_msg *id = peer_expect(svc, SB_PRESENCE);
	CHECK_INT(id->event, SB_PEER_IDENTITY);
	CHECK(v_is(id->peer, "id-a"));
	CHECK_INT(id->peer_id, a->peer_id);
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	CHECK(msgpack_unpack_next(&u, (const char *)id->payload.ptr, id->payload.len, NULL) ==
	      MSGPACK_UNPACK_SUCCESS);
	CHECK(str_is(map_get(&u.data, "role"), "client"));
	msgpack_unpacked_destroy(&u);
	struct sb_msg *req = peer_expect(svc, SB_REQUEST);
	CHECK_INT(req->from, a->peer_id);
	peer_reply(svc, req->id, "you are id-a", 0, NULL, 0);
	peer_expect(a, SB_REPLY);

	/* Told once: the next frame from a comes alone. */
	m.id = 2;
	m.kind = SB_SEND;
	peer_send(a, &m);
	CHECK_INT(peer_expect(svc, SB_SEND)->from, a->peer_id);

	/* Another sender is introduced in turn, then a again needs nothing. */
	struct sb_msg s = {.kind = SB_SEND, .name = v_str("whoami"), .from = a->peer_id};
	peer_send(b, &s);
	id = peer_expect(svc, SB_PRESENCE);
	CHECK(id->event == SB_PEER_IDENTITY && v_is(id->peer, "id-b"));
	CHECK_INT(peer_expect(svc, SB_SEND)->from, b->peer_id);
	peer_send(a, &m);
	CHECK_INT(peer_expect(svc, SB_SEND)->from, a->peer_id);
	CHECK_INT(svc->identities, 0);
	peer_close(a);
	peer_close(b);
	peer_close(svc);
}

/* The identity or the SEND it precedes, from sender id. */
static void expect_from(struct peer *svc, int identity, uint32_t id)
{
	struct sb_msg *m = peer_expect(svc, identity ? SB_PRESENCE : SB_SEND);
	if (identity)
		CHECK(m->event == SB_PEER_IDENTITY && m->peer_id == id);
	else
		CHECK_INT(m->from, id);
}

/* A connection is told about 1,024 senders; the 1,025th makes the router
 * forget them all, and each is introduced again at its next frame: the
 * rule a client library can follow to keep exactly what it needs. */
static void test_identity_window(void)
{
	enum { N = 1025 };
	static struct lite s[N];
	struct peer *svc = peer_hello(PORT, "win-svc", "service");
	svc->see_identity = 1;
	peer_register(svc, "win", 1);
	for (int i = 0; i < N; i++) {
		char name[32];
		snprintf(name, sizeof name, "win-%d", i);
		lite_hello(&s[i], PORT, name);
		lite_send(&s[i], "win");
		expect_from(svc, 1, s[i].id); /* a new sender: introduced */
		expect_from(svc, 0, s[i].id);
	}
	lite_send(&s[N - 1], "win"); /* the one told last is still known */
	expect_from(svc, 0, s[N - 1].id);
	lite_send(&s[0], "win"); /* forgotten with the rest: introduced again */
	expect_from(svc, 1, s[0].id);
	expect_from(svc, 0, s[0].id);
	lite_send(&s[1], "win");
	expect_from(svc, 1, s[1].id);
	expect_from(svc, 0, s[1].id);
	for (int i = 0; i < N; i++)
		close(s[i].fd);
	peer_close(svc);
}

int main(void)
{
	R = start(2, 0);
	PORT = sb_router_port(R);
	RUN(test_fire_and_forget);
	RUN(test_request_reply_with_outcome);
	RUN(test_progress_then_final);
	RUN(test_stream_of_1000_chunks_in_order);
	RUN(test_cancel_mid_stream);
	RUN(test_timeout_then_late_reply);
	RUN(test_timeout_after_idle_is_not_early);
	RUN(test_no_handler);
	RUN(test_handler_killed_mid_stream);
	RUN(test_two_handlers_share_and_fail_over);
	RUN(test_same_shard_and_cross_shard);
	RUN(test_chained_request_from_a_handler);
	RUN(test_internal_handler_is_for_services);
	RUN(test_internal_and_public_handlers_of_one_name);
	RUN(test_handshake_rules);
	RUN(test_100k_requests_each_answered_once);
	RUN(test_tiny_receive_pool_loses_nothing);
	RUN(test_reserved_names);
	RUN(test_route_stats);
	RUN(test_assigned_names_follow_the_pattern);
	RUN(test_send_and_request_to_a_peer);
	RUN(test_unknown_peer_and_peer_not_connected);
	RUN(test_broadcast_request_collects_every_peer);
	RUN(test_broadcast_to_nobody);
	RUN(test_broadcast_timeout_holds_nobody_back);
	RUN(test_broadcast_handler_killed);
	RUN(test_broadcast_cancel);
	RUN(test_presence_across_shards);
	RUN(test_identity_before_first_frame);
	RUN(test_identity_window);
	RUN(test_full_mail_rings_lose_nothing);
	RUN(test_mail_backlog_is_bounded);
	RUN(test_slow_requester_slows_the_stream);
	RUN(test_slow_consumer_is_dropped);
	RUN(test_stop_drains);
	RUN(test_connection_limit);
	RUN(test_hello_deadline);
	RUN(test_busy_port_is_reported);
	return TEST_EXIT();
}
