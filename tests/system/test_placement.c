/* Connection placement (docs/architecture.md, "Which shard a connection is
 * on"): a requester whose handlers are all on the other shard moves there,
 * once, without losing, repeating or reordering anything it sent or was
 * sent. Real sockets to an in-process router of 2 shards; which shard a
 * connection lands on is the kernel's hash, so a test dials again until
 * it has the placement it needs (bounded). Every wait is bounded. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <switchboard/router.h>

#include "support/admin.h"
#include "support/clock.h"
#include "support/peer.h"
#include "support/proc.h"
#include "support/router.h"
#include "support/testlib.h"

enum { LONG_MS = 60000, TRIES = 200, N = 1000 };

/* A peer named name on shard `want` (or, with want < 0, on any shard but
 * -want - 1), or NULL if the kernel never put one there. */
static struct peer *hello_on(const char *name, const char *role, int want)
{
	for (int i = 0; i < TRIES; i++) {
		struct peer *p = peer_hello(PORT, name, role);
		if ((want >= 0 && (int)p->shard == want) ||
		    (want < 0 && (int)p->shard != -want - 1))
			return p;
		peer_close(p);
		/* its name is free once the router saw the close: retry until then */
		uint64_t end = now_ms() + 5000;
		while (now_ms() < end) {
			msgpack_unpacked u;
			struct peer *o = peer_hello(PORT, NULL, "client");
			msgpack_object ps = ask_router(o, "$sb.peers", NULL, 0, &u);
			int there = find_by(&ps, "peer", name) != NULL;
			msgpack_unpacked_destroy(&u);
			peer_close(o);
			if (!there)
				break;
		}
	}
	CHECK(!"the kernel never placed the connection where the test needs it");
	return NULL;
}

/* The shard $sb.peers gives peer name (asked by a peer of its own, so the
 * answer queues nothing on name's connection), and how often it is listed. */
static int shard_of(const char *name, int *listed)
{
	msgpack_unpacked u;
	struct peer *o = peer_hello(PORT, NULL, "client");
	msgpack_object ps = ask_router(o, "$sb.peers", NULL, 0, &u);
	int shard = -1, n = 0;
	for (uint32_t i = 0; ps.type == MSGPACK_OBJECT_ARRAY && i < ps.via.array.size; i++) {
		const msgpack_object *e = &ps.via.array.ptr[i];
		if (str_is(map_get(e, "peer"), name)) {
			n++;
			const msgpack_object *s = map_get(e, "shard");
			if (s != NULL && s->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
				shard = (int)s->via.u64;
		}
	}
	msgpack_unpacked_destroy(&u);
	peer_close(o);
	if (listed != NULL)
		*listed = n;
	return shard;
}

/* Waits (bounded) until $sb.peers puts name on shard want. */
static int wait_shard(const char *name, int want)
{
	uint64_t end = now_ms() + 10000;
	int s;
	while ((s = shard_of(name, NULL)) != want && now_ms() < end)
		sleep_ms(10);
	return s;
}

static void encode_into(uint8_t *buf, size_t cap, size_t *len, const struct sb_msg *m)
{
	long n = sb_encode(m, buf + *len, cap - *len);
	CHECK(n > 0);
	if (n > 0)
		*len += (size_t)n;
}

/* The handler answers n requests in order, each with its own payload. */
static void answer(struct peer *h, int n)
{
	for (int i = 0; i < n; i++) {
		struct sb_msg *m = peer_expect(h, SB_REQUEST);
		if (m == NULL)
			return;
		peer_reply(h, m->id, "ok", 0, m->payload.ptr, m->payload.len);
	}
}

static struct sb_router_config config(uint32_t placement)
{
	struct sb_router_config cfg = router_config();
	cfg.shards = 2;
	cfg.placement = placement;
	cfg.name_grace_ms = 0;
	return cfg;
}

/* 1,000 requests written at once by a client on the other shard than the
 * only handler: the first moves it, and every reply comes back once, with
 * its id, in order; the client is then on the handler's shard. */
static void test_a_requester_moves_to_its_handlers_shard_and_every_reply_arrives_once(void)
{
	struct sb_router_config cfg = config(SB_PLACEMENT_FOLLOW);
	router_start(&cfg);
	struct peer *h = peer_hello(PORT, "pl-echo", "service");
	peer_register(h, "pl.echo", 1);
	struct peer *c = hello_on("pl-cli", "client", -(int)h->shard - 1);
	if (c == NULL)
		goto out;
	static uint8_t buf[N * 64];
	size_t len = 0;
	for (uint64_t k = 1; k <= N; k++) {
		uint8_t pl[9] = {0xcf};
		for (int b = 0; b < 8; b++)
			pl[1 + b] = (uint8_t)(k >> (56 - 8 * b));
		struct sb_msg m = {.kind = SB_REQUEST, .id = k, .timeout_ms = LONG_MS};
		m.name = v_str("pl.echo");
		m.payload.ptr = pl;
		m.payload.len = sizeof pl;
		encode_into(buf, sizeof buf, &len, &m);
	}
	peer_raw(c, buf, len);
	answer(h, N);
	static uint8_t seen[N + 1];
	memset(seen, 0, sizeof seen);
	int dups = 0, got = 0, in_order = 1;
	for (int i = 0; i < N; i++) {
		struct sb_msg *m = peer_expect(c, SB_REPLY);
		if (m == NULL)
			break;
		CHECK(m->id >= 1 && m->id <= N);
		if (m->id < 1 || m->id > N)
			continue;
		if (m->id != (uint64_t)i + 1)
			in_order = 0;
		dups += seen[m->id]++ > 0;
		got++;
	}
	CHECK_INT(got, N);
	CHECK_INT(dups, 0);
	CHECK(in_order);
	int listed = 0;
	CHECK_INT(wait_shard("pl-cli", (int)h->shard), (int)h->shard);
	shard_of("pl-cli", &listed);
	CHECK_INT(listed, 1);
	CHECK_INT(router_stats().moves, 1);
out:
	peer_close(c);
	peer_close(h);
	router_stop();
}

/* A SEND that moves its sender reaches the handler, and the sends after
 * it arrive after it, in order. */
static void test_the_send_that_moves_its_sender_arrives_first_and_the_rest_in_order(void)
{
	struct sb_router_config cfg = config(SB_PLACEMENT_FOLLOW);
	router_start(&cfg);
	struct peer *h = peer_hello(PORT, "pl-sink", "service");
	peer_register(h, "pl.sink", 1);
	struct peer *c = hello_on("pl-sender", "client", -(int)h->shard - 1);
	if (c == NULL)
		goto out;
	static uint8_t buf[N * 64];
	size_t len = 0;
	for (uint32_t k = 0; k < N; k++) {
		uint8_t pl[5] = {0xce, (uint8_t)(k >> 24), (uint8_t)(k >> 16), (uint8_t)(k >> 8),
				 (uint8_t)k};
		struct sb_msg m = {.kind = SB_SEND};
		m.name = v_str("pl.sink");
		m.payload.ptr = pl;
		m.payload.len = sizeof pl;
		encode_into(buf, sizeof buf, &len, &m);
	}
	peer_raw(c, buf, len);
	uint32_t next = 0;
	for (uint32_t k = 0; k < N; k++) {
		struct sb_msg *m = peer_expect(h, SB_SEND);
		if (m == NULL || m->payload.len != 5)
			break;
		const uint8_t *p = m->payload.ptr;
		uint32_t v =
			(uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];
		CHECK_INT(v, next);
		if (v != next)
			break;
		next++;
	}
	CHECK_INT(next, N);
	CHECK_INT(wait_shard("pl-sender", (int)h->shard), (int)h->shard);
	CHECK_INT(router_stats().moves, 1);
out:
	peer_close(c);
	peer_close(h);
	router_stop();
}

/* A third peer asks for the moving client by name all through its move:
 * every one of its requests is answered, once (the client has no handler,
 * so each is refused; none is lost in the move). */
/* A fire-and-forget sender that closes its socket right after its sends
 * (sbctl send does): the move finds the end of the stream behind the
 * frames and must carry them all the same. */
static void test_a_sender_that_closes_at_once_still_has_every_send_delivered(void)
{
	struct sb_router_config cfg = config(SB_PLACEMENT_FOLLOW);
	router_start(&cfg);
	struct peer *h = peer_hello(PORT, "pl-sink2", "service");
	peer_register(h, "pl.sink2", 1);
	struct peer *c = hello_on("pl-closer", "client", -(int)h->shard - 1);
	if (c == NULL)
		goto out;
	static uint8_t buf[16 * 64];
	size_t len = 0;
	for (uint32_t k = 0; k < 16; k++) {
		uint8_t pl[1] = {(uint8_t)k};
		struct sb_msg m = {.kind = SB_SEND};
		m.name = v_str("pl.sink2");
		m.payload.ptr = pl;
		m.payload.len = sizeof pl;
		encode_into(buf, sizeof buf, &len, &m);
	}
	peer_raw(c, buf, len);
	peer_close(c);
	c = NULL;
	for (uint32_t k = 0; k < 16; k++) {
		struct sb_msg *m = peer_expect(h, SB_SEND);
		CHECK(m != NULL && m->payload.len == 1 && m->payload.ptr[0] == k);
		if (m == NULL)
			break;
	}
	CHECK_INT(router_stats().moves, 1);
out:
	peer_close(c);
	peer_close(h);
	router_stop();
}

static void test_requests_to_a_moving_client_by_name_are_each_answered(void)
{
	struct sb_router_config cfg = config(SB_PLACEMENT_FOLLOW);
	router_start(&cfg);
	struct peer *h = peer_hello(PORT, "pl-h3", "service");
	peer_register(h, "pl.work", 1);
	struct peer *c = hello_on("pl-target", "client", -(int)h->shard - 1);
	struct peer *t = peer_hello(PORT, "pl-third", "service");
	if (c == NULL)
		goto out;
	enum { M = 300 };
	static uint8_t buf[M * 64];
	size_t len = 0;
	for (uint64_t k = 1; k <= M; k++) {
		struct sb_msg m = {.kind = SB_REQUEST, .id = k, .timeout_ms = LONG_MS};
		m.name = v_str("pl.anything");
		m.to = v_str("pl-target");
		encode_into(buf, sizeof buf, &len, &m);
	}
	/* Half before the client's first request, half after it. */
	peer_raw(t, buf, len / 2);
	peer_request(c, "pl.work", 1, LONG_MS, NULL, 0);
	peer_raw(t, buf + len / 2, len - len / 2);
	answer(h, 1);
	CHECK(peer_expect(c, SB_REPLY) != NULL);
	int answered = 0;
	for (int i = 0; i < M; i++) {
		struct sb_msg *m = peer_expect(t, SB_ERROR);
		if (m == NULL)
			break;
		answered++;
	}
	CHECK_INT(answered, M);
	peer_expect_silence(t, 100);
	CHECK_INT(router_stats().moves, 1);
out:
	peer_close(t);
	peer_close(c);
	peer_close(h);
	router_stop();
}

/* Once it moved, its name is listed once, and released when it leaves:
 * another client can take it. */
static void test_a_moved_clients_name_is_released_when_it_disconnects(void)
{
	struct sb_router_config cfg = config(SB_PLACEMENT_FOLLOW);
	router_start(&cfg);
	struct peer *h = peer_hello(PORT, "pl-h4", "service");
	peer_register(h, "pl.work", 1);
	struct peer *c = hello_on("pl-leaver", "client", -(int)h->shard - 1);
	if (c == NULL)
		goto out;
	peer_request(c, "pl.work", 1, LONG_MS, NULL, 0);
	answer(h, 1);
	CHECK(peer_expect(c, SB_REPLY) != NULL);
	CHECK_INT(router_stats().moves, 1);
	int listed = 0;
	CHECK_INT(shard_of("pl-leaver", &listed), (int)h->shard);
	CHECK_INT(listed, 1);
	peer_close(c);
	c = NULL;
	uint64_t end = now_ms() + 10000;
	while (shard_of("pl-leaver", &listed) >= 0 && now_ms() < end)
		sleep_ms(10);
	CHECK_INT(listed, 0);
	struct peer *again = peer_hello(PORT, "pl-leaver", "client");
	CHECK(strcmp(again->name, "pl-leaver") == 0);
	peer_request(again, "pl.work", 2, LONG_MS, NULL, 0);
	answer(h, 1);
	CHECK(peer_expect(again, SB_REPLY) != NULL);
	peer_close(again);
out:
	peer_close(c);
	peer_close(h);
	router_stop();
}

/* A service that registered a handler stays where it is, whatever it
 * calls; so does every connection with placement kernel. */
static void check_stays(uint32_t placement, const char *role, int registers)
{
	struct sb_router_config cfg = config(placement);
	router_start(&cfg);
	struct peer *h = peer_hello(PORT, "pl-h5", "service");
	peer_register(h, "pl.work", 1);
	struct peer *c = hello_on("pl-stayer", role, -(int)h->shard - 1);
	if (c == NULL)
		goto out;
	unsigned home = c->shard;
	if (registers)
		peer_register(c, "pl.own", 1);
	for (uint64_t k = 1; k <= 20; k++) {
		peer_request(c, "pl.work", k, LONG_MS, NULL, 0);
		answer(h, 1);
		struct sb_msg *m = peer_expect(c, SB_REPLY);
		CHECK(m != NULL && m->id == k);
	}
	CHECK_INT(shard_of("pl-stayer", NULL), (int)home);
	CHECK_INT(router_stats().moves, 0);
out:
	peer_close(c);
	peer_close(h);
	router_stop();
}

static void test_a_service_with_a_handler_never_moves(void)
{
	check_stays(SB_PLACEMENT_FOLLOW, "service", 1);
}

static void test_with_placement_kernel_nothing_moves(void)
{
	check_stays(SB_PLACEMENT_KERNEL, "client", 0);
}

/* Moved to its handler's shard, a client that then calls a name handled
 * on the shard it left is answered from there, and does not move back. */
static void test_a_moved_client_does_not_move_back(void)
{
	struct sb_router_config cfg = config(SB_PLACEMENT_FOLLOW);
	router_start(&cfg);
	struct peer *h = peer_hello(PORT, "pl-h6", "service");
	peer_register(h, "pl.work", 1);
	struct peer *c = hello_on("pl-once", "client", -(int)h->shard - 1);
	struct peer *back = NULL;
	if (c == NULL)
		goto out;
	unsigned old = c->shard;
	back = hello_on("pl-back", "service", (int)old);
	if (back == NULL)
		goto out;
	peer_register(back, "pl.back", 1);
	peer_request(c, "pl.work", 1, LONG_MS, NULL, 0);
	answer(h, 1);
	CHECK(peer_expect(c, SB_REPLY) != NULL);
	CHECK_INT(shard_of("pl-once", NULL), (int)h->shard);
	for (uint64_t k = 2; k <= 21; k++) {
		peer_request(c, "pl.back", k, LONG_MS, NULL, 0);
		answer(back, 1);
		struct sb_msg *m = peer_expect(c, SB_REPLY);
		CHECK(m != NULL && m->id == k);
	}
	CHECK_INT(shard_of("pl-once", NULL), (int)h->shard);
	CHECK_INT(router_stats().moves, 1);
out:
	peer_close(back);
	peer_close(c);
	peer_close(h);
	router_stop();
}

#define RUN_SOME(fn) RUN_WATCHED(fn, 150)

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	RUN_SOME(test_a_requester_moves_to_its_handlers_shard_and_every_reply_arrives_once);
	RUN_SOME(test_the_send_that_moves_its_sender_arrives_first_and_the_rest_in_order);
	RUN_SOME(test_a_sender_that_closes_at_once_still_has_every_send_delivered);
	RUN_SOME(test_requests_to_a_moving_client_by_name_are_each_answered);
	RUN_SOME(test_a_moved_clients_name_is_released_when_it_disconnects);
	RUN_SOME(test_a_service_with_a_handler_never_moves);
	RUN_SOME(test_with_placement_kernel_nothing_moves);
	RUN_SOME(test_a_moved_client_does_not_move_back);
	return TEST_EXIT();
}
