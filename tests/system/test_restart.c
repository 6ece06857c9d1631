/* The daemon restarted under client library clients: killed without a word,
 * then stopped gracefully; each time the open request ends once, both
 * clients report OFFLINE, come back by themselves to the new daemon on the
 * same port, re-register, and are served. Every wait is bounded. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <switchboard/client.h>
#include <switchboard/router.h>

#include "support/clock.h"
#include "support/daemon.h"
#include "support/loop.h"
#include "support/proc.h"
#include "support/testlib.h"

/* LONG_MS: a request timeout that must not expire during a test. */
enum { LONG_MS = 120000 };

struct watch {
	long online, offline, reconnected, error;
	int offline_err;
};

static void on_watch(struct sb_client *c, enum sb_client_state s, int err, void *ud)
{
	struct watch *w = ud;
	(void)c;
	if (s == SB_CLIENT_ONLINE)
		w->online++;
	else if (s == SB_CLIENT_OFFLINE) {
		w->offline++;
		w->offline_err = err;
	} else if (s == SB_CLIENT_RECONNECTED)
		w->reconnected++;
	else
		w->error++;
}

static struct sb_client *watched(uint16_t port, const char *name, const char *role, struct watch *w)
{
	return loop_client_with(port, name, role, on_watch, w);
}

static void handle_echo(struct sb_call *call, void *ud)
{
	(void)ud;
	sb_reply(call, "echoed", NULL, 0);
}

static void handle_hold(struct sb_call *call, void *ud)
{
	*(struct sb_call **)ud = call; /* the connection's loss ends it */
}

static void test_router_restart(void)
{
	struct daemon d = daemon_start(0, NULL);
	uint16_t port = d.port;
	struct watch ws = {0}, wc = {0};
	struct sb_call *held = NULL;

	loop_reset();
	struct sb_client *svc = watched(port, "rs-svc", "service", &ws);
	struct sb_client *ui = watched(port, "rs-ui", "client", &wc);
	CHECK_INT(sb_client_register(svc, "rs.echo", NULL, handle_echo, NULL), 0);
	CHECK_INT(sb_client_register(svc, "rs.hold", NULL, handle_hold, &held), 0);
	loop_wait(loop_online, NULL, 20000, "both clients online");
	RQ = calloc(8, sizeof *RQ);
	terminals = 0;
	CHECK_INT(
		sb_request(ui, "rs.echo", NULL, 0,
			   &(struct sb_opts){.size = sizeof(struct sb_opts), .timeout_ms = LONG_MS},
			   rq_reply, (void *)0, NULL),
		0);
	CHECK_INT(
		sb_request(ui, "rs.hold", NULL, 0,
			   &(struct sb_opts){.size = sizeof(struct sb_opts), .timeout_ms = LONG_MS},
			   rq_reply, (void *)1, NULL),
		0);
	loop_until(&terminals, 1, 10000, "the first reply");
	uint64_t end = now_ms() + 10000;
	while (held == NULL && now_ms() < end)
		loop_turn(10);
	CHECK(held != NULL);

	/* Killed without a word: both see OFFLINE, the open request ends once
	 * with SB_EOFFLINE. */
	daemon_kill(&d);
	loop_until(&wc.offline, 1, 10000, "the client offline");
	loop_until(&ws.offline, 1, 10000, "the service offline");
	CHECK_INT(RQ[1].terminal, 1);
	CHECK_INT(RQ[1].err, SB_EOFFLINE);
	CHECK_INT(
		sb_request(ui, "rs.echo", NULL, 0,
			   &(struct sb_opts){.size = sizeof(struct sb_opts), .timeout_ms = LONG_MS},
			   rq_reply, (void *)2, NULL),
		SB_EOFFLINE);
	loop_for(300); /* a few failed attempts */

	/* Back on the same port: both reconnect, the handlers re-register,
	 * and new requests succeed. */
	d = daemon_start(port, NULL);
	CHECK_INT(d.port, port);
	loop_until(&wc.reconnected, 1, 20000, "the client reconnected");
	loop_until(&ws.reconnected, 1, 20000, "the service reconnected");
	CHECK_INT(
		sb_request(ui, "rs.echo", NULL, 0,
			   &(struct sb_opts){.size = sizeof(struct sb_opts), .timeout_ms = LONG_MS},
			   rq_reply, (void *)3, NULL),
		0);
	loop_until(&terminals, 3, 10000, "a reply after the restart");
	CHECK_INT(RQ[3].err, 0);
	CHECK_STR(RQ[3].outcome, "echoed");

	/* Once more with a graceful stop: OFFLINE says it was planned. */
	daemon_stop(&d);
	loop_until(&wc.offline, 2, 10000, "the client offline again");
	loop_until(&ws.offline, 2, 10000, "the service offline again");
	CHECK_INT(wc.offline_err, 0);
	d = daemon_start(port, NULL);
	loop_until(&wc.reconnected, 2, 20000, "the client reconnected again");
	loop_until(&ws.reconnected, 2, 20000, "the service reconnected again");
	CHECK_INT(
		sb_request(ui, "rs.echo", NULL, 0,
			   &(struct sb_opts){.size = sizeof(struct sb_opts), .timeout_ms = LONG_MS},
			   rq_reply, (void *)4, NULL),
		0);
	loop_until(&terminals, 4, 10000, "a reply after the second restart");
	CHECK_INT(RQ[4].err, 0);

	loop_for(30);
	CHECK_INT(ws.online + wc.online, 2);
	CHECK_INT(ws.error + wc.error, 0);
	for (int i = 0; i < 5; i++)
		CHECK_INT(RQ[i].terminal + RQ[i].after, i == 2 ? 0 : 1);
	free(RQ);
	RQ = NULL;
	sb_client_free(svc);
	sb_client_free(ui);
	daemon_stop(&d);
}

/* Each test under a watchdog; SB_TEST_ONLY=slow runs only the tests whose
 * name contains "slow" (see RUN). */
#define RUN_SOME(fn) RUN_WATCHED(fn, 150)

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s PATH-TO-SWITCHBOARD\n", argv[0]);
		return 2;
	}
	daemon_path = argv[1];
	setvbuf(stdout, NULL, _IOLBF, 0); /* a killed run still shows how far it got */
	signal(SIGPIPE, SIG_IGN);
	RUN_SOME(test_router_restart);
	return TEST_EXIT();
}
