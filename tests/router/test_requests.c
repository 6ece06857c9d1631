/* Requests and their answers, one handler and one requester at a time:
 * fire-and-forget, an outcome, progress, errors, timeouts and late replies,
 * no handler, both shard paths, a request from inside a handler. An
 * in-process router with two shards; peers speak raw frames. */
#include <time.h>

#include <switchboard/router.h>

#include "support/clock.h"
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

static void test_fire_and_forget(void)
{
	router_start(NULL);
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
	m.to = v_str("somebody-else");
	peer_send(cli, &m);
	peer_expect_silence(svc, 100);
	CHECK_INT(router_stats().no_handler, 1);
	peer_close(svc);
	peer_close(cli);
	router_stop();
}

static void test_request_reply_with_outcome(void)
{
	router_start(NULL);
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
	peer_reply(bank, rid, "transferred", 0, NULL, 0);
	peer_expect_silence(cli, 100);
	CHECK_INT(router_stats().late_replies, 1);
	peer_close(bank);
	peer_close(cli);
	router_stop();
}

static void test_progress_then_final(void)
{
	router_start(NULL);
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
	router_stop();
}

static void test_timeout_then_late_reply(void)
{
	router_start(NULL);
	struct peer *slow = peer_hello(PORT, "slow-1", "service");
	struct peer *cli = peer_hello(PORT, "ui-4", "client");
	peer_register(slow, "report.build", 1);

	peer_request(cli, "report.build", 21, 50, NULL, 0);
	uint64_t rid = peer_expect(slow, SB_REQUEST)->id;
	struct sb_msg *e = peer_expect(cli, SB_ERROR);
	CHECK(e->id == 21 && e->code == (uint32_t)-SB_ETIMEOUT);
	CHECK(peer_expect(slow, SB_CANCEL)->id == rid);
	peer_reply(slow, rid, "built", 0, NULL, 0);
	peer_expect_silence(cli, 100);
	CHECK_INT(router_stats().timeouts, 1);
	CHECK_INT(router_stats().late_replies, 1);
	peer_close(slow);
	peer_close(cli);
	router_stop();
}

/* A timeout never fires early, even for the request that wakes a shard
 * after a long idle spell (the shard's clock was once stale by its sleep). */
static void test_timeout_after_idle_is_not_early(void)
{
	router_start(NULL);
	struct peer *slow = peer_hello(PORT, "slow-2", "service");
	struct peer *cli = peer_hello(PORT, "ui-4b", "client");
	peer_register(slow, "report.idle", 1);
	struct timespec idle = {1, 0};
	nanosleep(&idle, NULL);

	uint64_t t0 = now_ms();
	peer_request(cli, "report.idle", 22, 500, NULL, 0);
	peer_expect(slow, SB_REQUEST);
	struct sb_msg *e = peer_expect(cli, SB_ERROR);
	CHECK(e->code == (uint32_t)-SB_ETIMEOUT);
	CHECK(now_ms() - t0 >= 500);
	peer_close(slow);
	peer_close(cli);
	router_stop();
}

static void test_no_handler(void)
{
	router_start(NULL);
	struct peer *cli = peer_hello(PORT, "ui-5", "client");
	peer_request(cli, "nobody.home", 5, 0, NULL, 0);
	struct sb_msg *e = peer_expect(cli, SB_ERROR);
	CHECK(e->id == 5 && e->code == (uint32_t)-SB_ENOHANDLER);
	CHECK_INT(e->flags, 0); /* the connection stays */
	peer_close(cli);
	router_stop();
}

/* Clients on both shards reach a handler on one: one same-shard path, one
 * cross-shard, both right after the ACK (registration is visible at once). */
static void test_same_shard_and_cross_shard(void)
{
	router_start(NULL);
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
	router_stop();
}

static void test_chained_request_from_a_handler(void)
{
	router_start(NULL);
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
	router_stop();
}

int main(void)
{
	RUN(test_fire_and_forget);
	RUN(test_request_reply_with_outcome);
	RUN(test_progress_then_final);
	RUN(test_timeout_then_late_reply);
	RUN(test_timeout_after_idle_is_not_early);
	RUN(test_no_handler);
	RUN(test_same_shard_and_cross_shard);
	RUN(test_chained_request_from_a_handler);
	return TEST_EXIT();
}
