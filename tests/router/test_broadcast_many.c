/* A broadcast to many handlers (more than the router scans one by one):
 * every handler's answer reaches the requester once, named, whatever the
 * order the answers come in; a second answer is late and dropped; a
 * handler lost and a selected peer with no handler each get their one
 * result; the aggregate counts them all. An in-process router with two
 * shards; peers speak raw frames. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <switchboard/router.h>

#include <msgpack.h>

#include "support/clock.h"
#include "support/peer.h"
#include "support/router.h"

#define HANDLERS 120 /* registered for the name */
#define IDLE     20  /* selected by `to`, no handler */

static uint64_t uint_at(const msgpack_object *o, const char *k)
{
	for (uint32_t i = 0; o->type == MSGPACK_OBJECT_MAP && i < o->via.map.size; i++) {
		const msgpack_object_kv *kv = &o->via.map.ptr[i];
		if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen(k) &&
		    memcmp(kv->key.via.str.ptr, k, strlen(k)) == 0 &&
		    kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
			return kv->val.via.u64;
	}
	CHECK(!"no such count in the aggregate");
	return UINT64_MAX;
}

/* The aggregate that ends a broadcast: REPLY "$sb.all", no MORE, counts. */
static void expect_all(struct sb_msg *r, uint64_t id, unsigned peers, unsigned ok, unsigned errors,
		       unsigned gone)
{
	CHECK(r->kind == SB_REPLY && r->id == id && v_is(r->outcome, "$sb.all"));
	CHECK_INT(r->flags, 0);
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	size_t off = 0;
	CHECK(msgpack_unpack_next(&u, (const char *)r->payload.ptr, r->payload.len, &off) ==
	      MSGPACK_UNPACK_SUCCESS);
	CHECK_INT(uint_at(&u.data, "peers"), peers);
	CHECK_INT(uint_at(&u.data, "ok"), ok);
	CHECK_INT(uint_at(&u.data, "errors"), errors);
	CHECK_INT(uint_at(&u.data, "timeouts"), 0);
	CHECK_INT(uint_at(&u.data, "gone"), gone);
	msgpack_unpacked_destroy(&u);
}

static int index_of(struct peer **p, int n, struct sb_view name)
{
	for (int i = 0; i < n; i++)
		if (p[i] != NULL && v_is(name, p[i]->name))
			return i;
	return -1;
}

/* Waits (bounded) until the router has counted `want` late replies. */
static void expect_late(uint64_t want)
{
	uint64_t until = now_ms() + 10000;
	while (router_stats().late_replies < want && now_ms() < until)
		usleep(1000);
	CHECK_INT(router_stats().late_replies, want);
}

/* Handler i's part, answered last to first: 0 "yes", 1 an error, 2 "yes"
 * then "again" (late), 3 (with `lose`) it disconnects. */
static void answer(struct peer **h, const uint64_t *rid, int lose)
{
	for (int i = HANDLERS - 1; i >= 0; i--) {
		int kind = i % 4 == 3 && !lose ? 0 : i % 4;
		if (kind == 1) {
			struct sb_msg err = {.kind = SB_ERROR, .id = rid[i]};
			err.code = (uint32_t)-SB_EINVAL;
			err.text = v_str("not today");
			peer_send(h[i], &err);
		} else if (kind == 3) {
			peer_close(h[i]);
			h[i] = NULL;
		} else {
			peer_reply(h[i], rid[i], "yes", 0, NULL, 0);
			if (kind == 2)
				peer_reply(h[i], rid[i], "again", 0, NULL, 0);
		}
	}
}

/* Reads the results up to the aggregate: one per peer of `all`, named. */
static void collect(struct peer *cli, uint64_t id, struct peer **all, int n, const char **gone,
		    int lose)
{
	int seen[HANDLERS + IDLE] = {0}, results = 0, extra = 0;
	for (;;) {
		CHECK_INT(peer_recv_within(cli, 10000), 1);
		struct sb_msg *r = &cli->m;
		if (r->kind == 0 || !(r->flags & SB_F_MORE)) {
			expect_all(r, id, (unsigned)n, HANDLERS / 2 + (lose ? 0 : HANDLERS / 4),
				   HANDLERS / 4 + (n > HANDLERS ? IDLE : 0),
				   lose ? HANDLERS / 4 : 0);
			break;
		}
		CHECK(r->id == id);
		results++;
		int i = index_of(all, n, r->peer);
		if (i < 0 && lose) { /* one that left: its name is kept in gone[] */
			for (int k = 0; k < HANDLERS && i < 0; k++)
				if (gone[k] != NULL && v_is(r->peer, gone[k]))
					i = k;
		}
		CHECK(i >= 0);
		if (i < 0) {
			extra++;
			continue;
		}
		seen[i]++;
		int kind = i >= HANDLERS ? 4 : i % 4 == 3 && !lose ? 0 : i % 4;
		if (kind == 0 || kind == 2)
			CHECK(r->kind == SB_REPLY && v_is(r->outcome, "yes"));
		else if (kind == 1)
			CHECK(r->kind == SB_ERROR && r->code == (uint32_t)-SB_EINVAL &&
			      v_is(r->text, "not today"));
		else if (kind == 3)
			CHECK(r->kind == SB_ERROR && r->code == (uint32_t)-SB_EPEERGONE);
		else
			CHECK(r->kind == SB_ERROR && r->code == (uint32_t)-SB_ENOHANDLER);
	}
	CHECK_INT(results, n);
	CHECK_INT(extra, 0);
	for (int i = 0; i < n; i++)
		if (seen[i] != 1) {
			fprintf(stderr, "  peer %d: %d results\n", i, seen[i]);
			CHECK_INT(seen[i], 1);
		}
}

/* By name, then by a `to` selector that also picks peers with no handler;
 * in the second, a quarter of the handlers leave instead of answering. */
static void test_broadcast_to_many_handlers_gets_one_result_from_each(void)
{
	router_start(NULL);
	struct peer *all[HANDLERS + IDLE];
	static char names[HANDLERS][SB_PEER_MAX + 1];
	const char *gone[HANDLERS] = {0};
	int on[2] = {0, 0};
	for (int i = 0; i < HANDLERS + IDLE; i++) {
		char name[32];
		snprintf(name, sizeof name, i < HANDLERS ? "bm-%d" : "bm-idle-%d", i);
		all[i] = peer_hello(PORT, name, "service");
		on[all[i]->shard & 1]++;
		if (i < HANDLERS)
			peer_register(all[i], "poll", 1);
	}
	CHECK(on[0] > 0 && on[1] > 0); /* both shards' handlers */
	struct peer *cli = peer_hello(PORT, "many-cli", "client");
	uint64_t rid[HANDLERS], late = router_stats().late_replies;

	for (int round = 0; round < 2; round++) {
		uint64_t id = 40 + (uint64_t)round;
		struct sb_msg m = {.kind = SB_REQUEST, .id = id, .flags = SB_F_BROADCAST};
		m.name = v_str("poll");
		m.timeout_ms = 30000;
		if (round == 1)
			m.to = v_str("bm-*");
		peer_send(cli, &m);
		for (int i = 0; i < HANDLERS; i++) {
			struct sb_msg *q = peer_expect(all[i], SB_REQUEST);
			CHECK(v_is(q->name, "poll"));
			rid[i] = q->id;
		}
		if (round == 1)
			for (int i = 3; i < HANDLERS; i += 4) {
				memcpy(names[i], all[i]->name, sizeof names[i]);
				gone[i] = names[i];
			}
		answer(all, rid, round == 1);
		collect(cli, id, all, round == 0 ? HANDLERS : HANDLERS + IDLE, gone, round == 1);
		late += HANDLERS / 4;
		expect_late(late);
	}
	peer_expect_silence(cli, 100); /* nothing after the aggregate */
	CHECK_INT(router_stats().inflight, 0);
	peer_close(cli);
	for (int i = 0; i < HANDLERS + IDLE; i++)
		peer_close(all[i]);
	router_stop();
}

int main(void)
{
	RUN(test_broadcast_to_many_handlers_gets_one_result_from_each);
	return TEST_EXIT();
}
