/* Services made with the client library: a request from inside a handler,
 * a graceful leave in the middle of one, two instances sharing the work and
 * one failing over, a service on its own thread answering a blocking
 * requester, and a name already taken. An in-process router. */
#include <pthread.h>

#include <switchboard/client.h>
#include <switchboard/router.h>

#include "support/clients.h"
#include "support/clock.h"
#include "support/peer.h"
#include "support/pump.h"
#include "support/router.h"
#include "support/testlib.h"

/* users.create asks passwords.encrypt from inside its handler, then replies. */
struct chain {
	struct sb_call *call; /* the users.create call being served */
	uint32_t users_id;    /* what passwords.encrypt must see as "from" */
	int inner_from_ok;
	int inner_calls;
};

static void on_encrypted(const struct sb_reply *rep, void *ud)
{
	struct chain *ch = ud;

	if (rep->more != SB_MORE_NONE)
		return;
	if (rep->err != 0)
		CHECK_INT(sb_reply_error(ch->call, rep->err, rep->outcome, NULL, 0), 0);
	else
		CHECK_INT(sb_reply(ch->call, "user.created", rep->payload, rep->len), 0);
	ch->call = NULL;
}

static void handle_create(struct sb_call *call, void *ud)
{
	struct sb_client *c = sb_call_client(call);
	static const uint8_t pw[] = {0xa6, 's', 'e', 'c', 'r', 'e', 't'};
	struct chain *ch = ud;

	ch->call = call;
	CHECK_INT(
		sb_request(c, "passwords.encrypt", pw, sizeof pw,
			   &(struct sb_opts){.size = sizeof(struct sb_opts), .timeout_ms = LONG_MS},
			   on_encrypted, ch, NULL),
		0);
}

static void handle_encrypt(struct sb_call *call, void *ud)
{
	static const uint8_t hash[] = {0xa4, 'x', 'y', 'z', 'w'};
	struct chain *ch = ud;

	ch->inner_calls++;
	ch->inner_from_ok = sb_call_from(call) == ch->users_id;
	CHECK_INT(sb_reply(call, "encrypted", hash, sizeof hash), 0);
}

/* sb_client_leave(): a service leaving in the middle of a chained call
 * still answers it (the router routes nothing new to it and waits), then
 * the router closes, and the client does not come back. The requester and
 * the inner handler are raw peers on a thread of their own, since leave
 * blocks this one; the inner handler answers only once the router has
 * announced the leaving service as draining. */
struct leave_peers {
	uint16_t port;
	char leaver[SB_PEER_MAX + 1];
	int answered; /* the requester got the reply */
	char outcome[64];
};

static void *leave_peers_run(void *arg)
{
	struct leave_peers *lp = arg;
	struct peer *deps = peer_hello(lp->port, "lv-deps", "service");
	peer_register(deps, "lv.deps", 1);
	struct peer *cli = peer_hello(lp->port, "lv-cli", "client");
	struct sb_msg sub = {.kind = SB_SUBSCRIBE, .id = 1, .name = v_str("presence")};
	peer_send(cli, &sub);
	peer_expect(cli, SB_ACK);
	peer_request(cli, "lv.work", 7, LONG_MS, NULL, 0);
	uint64_t rid = peer_expect(deps, SB_REQUEST)->id; /* the leaver's chained call */
	for (int i = 0; i < 8; i++) {
		struct sb_msg *m = peer_expect(cli, SB_PRESENCE);
		if (m->kind != SB_PRESENCE ||
		    (v_is(m->peer, lp->leaver) && m->event == SB_PEER_DRAINING))
			break;
	}
	peer_reply(deps, rid, "hashed", 0, NULL, 0);
	struct sb_msg *r = peer_expect(cli, SB_REPLY);
	lp->answered = r->kind == SB_REPLY && r->id == 7;
	snprintf(lp->outcome, sizeof lp->outcome, "%.*s", (int)r->outcome.len,
		 (const char *)r->outcome.ptr);
	peer_close(cli);
	peer_close(deps);
	return NULL;
}

static void handle_work(struct sb_call *call, void *ud)
{
	struct sb_client *c = sb_call_client(call);
	struct chain *ch = ud;
	ch->call = call;
	ch->inner_calls++;
	CHECK_INT(
		sb_request(c, "lv.deps", NULL, 0,
			   &(struct sb_opts){.size = sizeof(struct sb_opts), .timeout_ms = LONG_MS},
			   on_encrypted, ch, NULL),
		0);
}

struct runner {
	struct sb_client *c;
	int rc;
};

static void *run_service(void *arg)
{
	struct runner *run = arg;
	run->rc = sb_client_run(run->c);
	return NULL;
}

static void test_chained_request_from_a_handler(void)
{
	router_start(NULL);
	static const uint8_t hash[] = {0xa4, 'x', 'y', 'z', 'w'};
	struct watch wu = {0}, wp = {0}, wc = {0};
	struct replies r = {0};
	struct chain ch = {0};
	struct sb_client *users = client("users-1", "service", &wu);
	struct sb_client *pw = client("passwords-1", "service", &wp);
	struct sb_client *ui = client("signup-1", "client", &wc);
	struct sb_client *cs[] = {users, pw, ui};

	CHECK_INT(sb_client_register(users, "users.create", NULL, handle_create, &ch), 0);
	CHECK_INT(
		sb_client_register(pw, "passwords.encrypt",
				   &(struct sb_handler_opts){.size = sizeof(struct sb_handler_opts),
							     .flags = SB_HANDLER_INTERNAL},
				   handle_encrypt, &ch),
		0);
	pump_online(cs, 3);
	ch.users_id = sb_client_peer_id(users);
	CHECK_INT(sb_request(ui, "users.create", NULL, 0, NULL, on_reply, &r, NULL), 0);
	pump_until(cs, 3, &r.terminal, 1, "user.created");
	pump_for(cs, 3, 30);
	CHECK_INT(r.n, 1);
	CHECK_INT(r.err, 0);
	CHECK_STR(r.outcome, "user.created");
	CHECK(r.len == sizeof hash && memcmp(r.payload, hash, sizeof hash) == 0);
	CHECK_INT(ch.inner_calls, 1);
	CHECK_INT(ch.inner_from_ok, 1);
	CHECK(ch.call == NULL);

	/* The internal handler is not for clients. */
	struct replies direct = {0};
	CHECK_INT(sb_request(ui, "passwords.encrypt", NULL, 0, NULL, on_reply, &direct, NULL), 0);
	pump_until(cs, 3, &direct.terminal, 1, "the refusal");
	CHECK_INT(direct.err, SB_EFORBIDDEN);
	CHECK_STR(direct.outcome, "passwords.encrypt is internal: only services may call it");
	CHECK_INT(ch.inner_calls, 1);
	sb_client_free(users);
	sb_client_free(pw);
	sb_client_free(ui);
	router_stop();
}

static void test_leave_finishes_its_calls_first(void)
{
	router_start(NULL);
	struct watch w = {0};
	struct chain ch = {0};
	struct leave_peers lp = {.port = PORT};
	struct sb_client *svc = client("lv-svc", "service", &w);
	pthread_t t;

	CHECK_INT(sb_client_register(svc, "lv.work", NULL, handle_work, &ch), 0);
	CHECK_INT(sb_client_wait_online(svc, pump_limit_ms), 0);
	snprintf(lp.leaver, sizeof lp.leaver, "%s", sb_client_name(svc));
	CHECK_INT(pthread_create(&t, NULL, leave_peers_run, &lp), 0);
	pump_until(&svc, 1, &ch.inner_calls, 1, "the chained call");
	uint64_t t0 = now_ms();
	CHECK_INT(sb_client_leave(svc, "shutting down", 10000), 0);
	CHECK(now_ms() - t0 < 10000); /* closed by the router when done, not at the deadline */
	pthread_join(t, NULL);
	CHECK(lp.answered);
	CHECK_STR(lp.outcome, "user.created");
	CHECK_INT(w.offline, 1);
	CHECK_INT(w.offline_err, 0);
	CHECK_INT(sb_client_fd(svc), -1);
	CHECK_INT(sb_client_process(svc, 50), SB_EOFFLINE); /* and no reconnect */
	CHECK_INT(w.reconnected, 0);
	sb_client_free(svc);
	router_stop();
}

/* Two instances of one service share the requests; when one goes away the
 * other answers everything, and every request still ends exactly once. */
static void test_two_instances_share_and_fail_over(void)
{
	router_start(NULL);
	struct watch wa = {0}, wb = {0}, wc = {0};
	int served_a = 0, served_b = 0;
	struct sb_client *a = client("worker-a", "service", &wa);
	struct sb_client *b = client("worker-b", "service", &wb);
	struct sb_client *cli = client("foreman", "client", &wc);
	struct sb_client *all[] = {a, b, cli}, *left[] = {b, cli};
	static struct replies r[40];

	memset(r, 0, sizeof r);
	CHECK_INT(sb_client_register(a, "work", NULL, handle_echo, &served_a), 0);
	CHECK_INT(sb_client_register(b, "work", NULL, handle_echo, &served_b), 0);
	pump_online(all, 3);
	for (int i = 0; i < 20; i++)
		CHECK_INT(sb_request(cli, "work", NULL, 0, NULL, on_reply, &r[i], NULL), 0);
	struct all_done first = {r, 20};
	pump_cond(all, 3, all_terminal, &first, "20 answers from two instances");
	CHECK_INT(served_a + served_b, 20);
	CHECK(served_a > 0 && served_b > 0); /* both took a share */

	sb_client_free(a); /* one instance dies */
	pump_for(left, 2, 50);
	for (int i = 20; i < 40; i++)
		CHECK_INT(sb_request(cli, "work", NULL, 0, NULL, on_reply, &r[i], NULL), 0);
	struct all_done second = {r + 20, 20};
	pump_cond(left, 2, all_terminal, &second, "20 answers from the survivor");
	CHECK_INT(served_b - (20 - served_a), 20);
	for (int i = 0; i < 40; i++) {
		CHECK_INT(r[i].terminal, 1);
		CHECK_INT(r[i].err, 0);
		CHECK_INT(r[i].after_terminal, 0);
	}
	sb_client_free(b);
	sb_client_free(cli);
	router_stop();
}

/* The service runs sb_client_run() on its own thread (as a program would),
 * the requester blocks in sb_request_wait(): the TSan build checks that two
 * clients on two threads share nothing. */
static void test_request_wait_blocking(void)
{
	router_start(NULL);
	static const uint8_t ping[] = {0xa4, 'p', 'i', 'n', 'g'};
	struct watch ws = {0}, wc = {0}, wl = {0};
	struct sb_client *svc = client("wait-svc", "service", &ws);
	struct sb_client *ui = client("wait-ui", "client", &wc);
	struct sb_client *cs[] = {svc, ui};
	struct runner run = {svc, -1};
	pthread_t th;
	int served = 0;
	char outcome[64];
	void *reply = NULL;
	size_t len = 0;

	CHECK_INT(sb_client_register(svc, "wait.echo", NULL, handle_echo, &served), 0);
	pump_online(cs, 2);
	CHECK_INT(pthread_create(&th, NULL, run_service, &run), 0);
	for (int i = 0; i < 20; i++) {
		CHECK_INT(sb_request_wait(ui, "wait.echo", ping, sizeof ping,
					  &(struct sb_opts){.size = sizeof(struct sb_opts),
							    .timeout_ms = LONG_MS},
					  outcome, sizeof outcome, &reply, &len),
			  0);
		CHECK_STR(outcome, "echoed");
		CHECK(len == sizeof ping && reply != NULL && memcmp(reply, ping, len) == 0);
		free(reply);
		reply = NULL;
	}
	CHECK_INT(sb_request_wait(
			  ui, "nobody.home", NULL, 0,
			  &(struct sb_opts){.size = sizeof(struct sb_opts), .timeout_ms = LONG_MS},
			  outcome, sizeof outcome, &reply, &len),
		  SB_ENOHANDLER);
	CHECK(reply == NULL && len == 0);

	/* Called before the client is online, it waits for it first. */
	struct sb_client *late = client("wait-late", "client", &wl);
	CHECK_INT(sb_client_online(late), 0);
	CHECK_INT(sb_request_wait(
			  late, "wait.echo", NULL, 0,
			  &(struct sb_opts){.size = sizeof(struct sb_opts), .timeout_ms = LONG_MS},
			  outcome, sizeof outcome, NULL, NULL),
		  0);
	CHECK_STR(outcome, "echoed");
	CHECK_INT(wl.online, 1);

	/* sb_client_wait_online() does the same wait alone. */
	struct watch wl2 = {0};
	struct sb_client *later = client("wait-later", "client", &wl2);
	CHECK_INT(sb_client_online(later), 0);
	CHECK_INT(sb_client_wait_online(later, LONG_MS), 0);
	CHECK_INT(sb_client_online(later), 1);
	CHECK_INT(wl2.online, 1);
	sb_client_free(later);

	sb_client_stop(svc); /* from this thread: the one cross-thread call */
	CHECK_INT(pthread_join(th, NULL), 0);
	CHECK_INT(run.rc, 0);
	CHECK_INT(served, 21);
	sb_client_free(late);
	sb_client_free(svc);
	sb_client_free(ui);
	router_stop();
}

static void test_duplicate_name(void)
{
	router_start(NULL);
	struct watch wa = {0}, wb = {0};
	struct sb_client *a = client("dup-1", "client", &wa);
	struct sb_client *cs[] = {a};

	pump_online(cs, 1);
	struct sb_client *b = client("dup-1", "client", &wb);
	struct sb_client *both[] = {a, b};
	pump_until(both, 2, &wb.error, 1, "the refusal");
	CHECK_INT(wb.error_err, SB_EDUPNAME);
	CHECK_INT(sb_client_process(b, 0), SB_EDUPNAME); /* given up, and says why */
	CHECK_INT(sb_client_fd(b), -1);
	CHECK_INT(sb_client_timeout(b), -1);

	/* No retry loop: the router sees nothing more from it. */
	struct sb_router_stats before, after;
	sb_router_stats(R, &before);
	pump_for(both, 2, 300);
	sb_router_stats(R, &after);
	CHECK_INT(after.frames_in, before.frames_in);
	CHECK_INT(wb.error, 1);
	CHECK_INT(wb.online + wb.offline + wb.reconnected, 0);
	CHECK_INT(sb_client_run(b), SB_EDUPNAME); /* returns instead of spinning */
	CHECK_INT(sb_send(b, "audit.log", NULL, 0, NULL), SB_EOFFLINE);
	/* The holder of the name is undisturbed. */
	CHECK_INT(sb_client_online(a), 1);
	CHECK_INT(wa.offline + wa.error, 0);
	sb_client_free(b);
	sb_client_free(a);
	router_stop();
}

int main(void)
{
	RUN(test_chained_request_from_a_handler);
	RUN(test_leave_finishes_its_calls_first);
	RUN(test_two_instances_share_and_fail_over);
	RUN(test_request_wait_blocking);
	RUN(test_duplicate_name);
	return TEST_EXIT();
}
