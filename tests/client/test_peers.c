/* Peers through the client library: requests and sends to a named peer,
 * broadcast requests with per-peer results, presence events, and every
 * caller's name across the router's 1,024-sender window. An in-process
 * router; services and clients made with the library. */
#include <switchboard/client.h>
#include <switchboard/router.h>

#include "support/clients.h"
#include "support/peer.h"
#include "support/pump.h"
#include "support/router.h"
#include "support/testlib.h"

/* What a handler learnt about who called it. */
struct caller {
	int n;
	char peer[SB_PEER_MAX + 1];
	char role[16];
	int has_subject;
	uint32_t from;
};

static void handle_whoami(struct sb_call *call, void *ud)
{
	struct caller *w = ud;
	const char *peer = sb_call_peer(call), *role = sb_call_role(call);

	w->n++;
	snprintf(w->peer, sizeof w->peer, "%s", peer != NULL ? peer : "(null)");
	snprintf(w->role, sizeof w->role, "%s", role != NULL ? role : "(null)");
	w->has_subject = sb_call_subject(call) != NULL;
	w->from = sb_call_from(call);
	if (sb_call_is_request(call))
		CHECK_INT(sb_reply(call, w->peer, NULL, 0), 0);
}

static void handle_health(struct sb_call *call, void *ud)
{
	const char *mode = ud;

	if (strcmp(mode, "ok") == 0) {
		uint8_t n[3];
		put_seq(n, 0);
		CHECK_INT(sb_reply_more(call, SB_MORE_CHUNK, "log", n, 3), 0);
		CHECK_INT(sb_reply_more(call, SB_MORE_PROGRESS, "checking", n, 3),
			  0); /* not passed on */
		CHECK_INT(sb_reply(call, "healthy", NULL, 0), 0);
	} else if (strcmp(mode, "sick") == 0)
		CHECK_INT(sb_reply_error(call, SB_EINTERNAL, "disk full", NULL, 0), 0);
	/* "silent": never answers; the router's timeout cancels the call */
}

/* Presence events seen by one client. */
struct sightings {
	int connected, disconnected, other;
	char last[SB_PEER_MAX + 1];
	char role[16];
	uint32_t last_id;
	unsigned last_event; /* the enum's value, as a table indexed by it sees it */
	char last_name[16];  /* sb_presence_name() of it */
};

static void on_presence_event(struct sb_client *c, const struct sb_presence *p, void *ud)
{
	struct sightings *s = ud;

	(void)c;
	if (p->event == SB_PEER_CONNECTED)
		s->connected++;
	else if (p->event == SB_PEER_DISCONNECTED)
		s->disconnected++;
	else
		s->other++;
	snprintf(s->last, sizeof s->last, "%s", p->peer);
	snprintf(s->role, sizeof s->role, "%s", p->role);
	s->last_id = p->peer_id;
	s->last_event = p->event;
	snprintf(s->last_name, sizeof s->last_name, "%s", sb_presence_name(p->event));
	CHECK(p->subject == NULL);
}

/* Every call's sender by name, across the router's 1,024-sender window:
 * the library forgets exactly when the router does, so no call from a
 * sender it was told about lacks its name. */
enum { WIN = 1025 };

static struct lite win[WIN];

struct names_seen {
	int calls, wrong;
};

static void handle_win(struct sb_call *call, void *ud)
{
	struct names_seen *s = ud;
	const char *peer = sb_call_peer(call);
	char want[32] = "?";

	s->calls++;
	for (int i = 0; i < WIN; i++)
		if (win[i].id == sb_call_from(call))
			snprintf(want, sizeof want, "win-%d", i);
	if (peer == NULL || strcmp(peer, want) != 0) {
		if (s->wrong++ == 0)
			fprintf(stderr, "  call from %s named %s\n", want, peer ? peer : "(null)");
	}
}

/* Sends and requests `to` a peer reach it and nobody else, and a
 * handler knows who called; unknown and gone peers are told apart. */
static void test_to_a_named_peer(void)
{
	router_start(NULL);
	struct watch w[4] = {{0}};
	struct caller at_target = {0}, at_other = {0};
	struct sb_client *target = client("target-1", "service", &w[0]);
	struct sb_client *other = client("other-1", "service", &w[1]);
	struct sb_client *cli = client("asker-1", "client", &w[2]);
	struct sb_client *cs[] = {target, other, cli};
	struct replies r[6] = {{0}};

	CHECK_INT(sb_client_register(target, "whoami", NULL, handle_whoami, &at_target), 0);
	CHECK_INT(sb_client_register(other, "whoami", NULL, handle_whoami, &at_other), 0);
	pump_online(cs, 3);
	for (int i = 0; i < 4; i++)
		CHECK_INT(sb_request(cli, "whoami", NULL, 0,
				     &(struct sb_opts){.size = sizeof(struct sb_opts),
						       .timeout_ms = LONG_MS,
						       .to = "target-1"},
				     on_reply, &r[i], NULL),
			  0);
	CHECK_INT(sb_send(cli, "whoami", EVENT, sizeof EVENT,
			  &(struct sb_opts){.size = sizeof(struct sb_opts), .to = "target-1"}),
		  0);
	struct all_done four = {r, 4};
	pump_cond(cs, 3, all_terminal, &four, "four answers from target-1");
	pump_until(cs, 3, &at_target.n, 5, "the send to target-1");
	CHECK_INT(at_target.n, 5);
	CHECK_INT(at_other.n, 0); /* no load balancing with `to` */
	for (int i = 0; i < 4; i++) {
		CHECK_INT(r[i].err, 0);
		CHECK_STR(r[i].outcome, "asker-1"); /* the handler knew who asked */
	}
	CHECK_STR(at_target.peer, "asker-1");
	CHECK_STR(at_target.role, "client");
	CHECK_INT(at_target.has_subject, 0);
	CHECK_INT(at_target.from, sb_client_peer_id(cli));

	/* The other way: a client can be asked too (it answers "no handler"). */
	CHECK_INT(sb_request(target, "anything", NULL, 0,
			     &(struct sb_opts){.size = sizeof(struct sb_opts),
					       .timeout_ms = LONG_MS,
					       .to = "asker-1"},
			     on_reply, &r[4], NULL),
		  0);
	pump_until(cs, 3, &r[4].terminal, 1, "the client's answer");
	CHECK_INT(r[4].err, SB_ENOHANDLER);

	CHECK_INT(sb_request(cli, "whoami", NULL, 0,
			     &(struct sb_opts){.size = sizeof(struct sb_opts),
					       .timeout_ms = LONG_MS,
					       .to = "ghost"},
			     on_reply, &r[5], NULL),
		  0);
	pump_until(cs, 3, &r[5].terminal, 1, "unknown peer");
	CHECK_INT(r[5].err, SB_EUNKNOWNPEER);
	CHECK_STR(r[5].outcome, "no peer named ghost has connected");
	CHECK_INT(sb_request(cli, "whoami", NULL, 0,
			     &(struct sb_opts){.size = sizeof(struct sb_opts), .to = "bad name"},
			     on_reply, &r[5], NULL),
		  SB_EINVAL);
	/* One peer or every handler, not both; and options the library cannot
	 * read are refused rather than guessed at. */
	struct sb_opts both = SB_OPTS_INIT, tiny = SB_OPTS_INIT;
	both.to = "target";
	both.flags = SB_OPT_ALL;
	tiny.size = 1;
	CHECK_INT(sb_send(cli, "whoami", NULL, 0, &both), SB_EINVAL);
	CHECK_INT(sb_request(cli, "whoami", NULL, 0, &both, on_reply, &r[5], NULL), SB_EINVAL);
	CHECK_INT(sb_send(cli, "whoami", NULL, 0, &tiny), SB_EINVAL);

	/* Gone: until the asker's shard has heard, "peer gone" is possible. */
	sb_client_free(other);
	struct sb_client *left[] = {target, cli};
	int err = 0;
	for (int i = 0; i < 100 && err != SB_ENOTCONNECTED; i++) {
		struct replies g = {0};
		CHECK_INT(sb_request(cli, "whoami", NULL, 0,
				     &(struct sb_opts){.size = sizeof(struct sb_opts),
						       .timeout_ms = LONG_MS,
						       .to = "other-1"},
				     on_reply, &g, NULL),
			  0);
		pump_until(left, 2, &g.terminal, 1, "an answer about other-1");
		err = g.err;
		CHECK(err == SB_ENOTCONNECTED || err == SB_EPEERGONE);
	}
	CHECK_INT(err, SB_ENOTCONNECTED);
	sb_client_free(target);
	sb_client_free(cli);
	router_stop();
}

static void test_request_all(void)
{
	router_start(NULL);
	struct watch w[4] = {{0}};
	struct seen got[3] = {{0}};
	static const char *const names[] = {"agent-ok", "agent-sick", "agent-silent"};
	static const char *const modes[] = {"ok", "sick", "silent"};
	struct sb_client *cs[4];
	struct all_replies a = {.names = {names[0], names[1], names[2]}};

	for (int i = 0; i < 3; i++) {
		cs[i] = client(names[i], "service", &w[i]);
		CHECK_INT(
			sb_client_register(cs[i], "health", NULL, handle_health, (void *)modes[i]),
			0);
		CHECK_INT(sb_client_register(cs[i], "notice", NULL, handle_seen, &got[i]), 0);
	}
	cs[3] = client("prober", "client", &w[3]);
	struct sb_client *cli = cs[3];
	pump_online(cs, 4);

	CHECK_INT(sb_send(cli, "notice", EVENT, sizeof EVENT,
			  &(struct sb_opts){.size = sizeof(struct sb_opts), .flags = SB_OPT_ALL}),
		  0);
	for (int i = 0; i < 3; i++)
		pump_until(cs, 4, &got[i].n, 1, "the broadcast send");

	uint64_t req = 0;
	CHECK_INT(sb_request(cli, "health", NULL, 0,
			     &(struct sb_opts){.size = sizeof(struct sb_opts),
					       .timeout_ms = 300,
					       .flags = SB_OPT_ALL},
			     on_all, &a, &req),
		  0);
	CHECK(req != 0);
	pump_until(cs, 4, &a.terminal, 1, "the aggregate");
	pump_for(cs, 4, 30);
	CHECK_INT(a.terminal, 1);
	CHECK_INT(a.after_terminal, 0);
	CHECK_INT(a.err, 0);
	CHECK_INT(a.peer_at_terminal, 0);
	CHECK_INT(a.results, 3);
	CHECK_INT(a.chunks, 1);
	CHECK_INT(a.ok[0], 1);
	CHECK_INT(a.errs[1], SB_EINTERNAL);
	CHECK_INT(a.errs[2], SB_ETIMEOUT);
	CHECK_INT(a.counts_rc, 0);
	CHECK_INT(a.counts.peers, 3);
	CHECK_INT(a.counts.ok, 1);
	CHECK_INT(a.counts.errors, 1);
	CHECK_INT(a.counts.timeouts, 1);
	CHECK_INT(a.counts.gone, 0);

	/* Nobody handles it: one terminal error. */
	struct all_replies none = {0};
	CHECK_INT(sb_request(cli, "nobody.home", NULL, 0,
			     &(struct sb_opts){.size = sizeof(struct sb_opts), .flags = SB_OPT_ALL},
			     on_all, &none, NULL),
		  0);
	pump_until(cs, 4, &none.terminal, 1, "no connected peers");
	CHECK_INT(none.err, SB_ENOPEERS);
	CHECK_INT(none.results, 0);

	/* Cancelled while the silent one holds it: once SB_ECANCELLED, then
	 * nothing, not even the aggregate. */
	struct all_replies cancelled = {.names = {names[0], names[1], names[2]}};
	CHECK_INT(sb_request(cli, "health", NULL, 0,
			     &(struct sb_opts){.size = sizeof(struct sb_opts),
					       .timeout_ms = LONG_MS,
					       .flags = SB_OPT_ALL},
			     on_all, &cancelled, &req),
		  0);
	pump_until(cs, 4, &cancelled.results, 2, "the two who answer");
	CHECK_INT(sb_cancel(cli, req), 0);
	pump_until(cs, 4, &cancelled.terminal, 1, "the cancel");
	pump_for(cs, 4, 50);
	CHECK_INT(cancelled.err, SB_ECANCELLED);
	CHECK_INT(cancelled.after_terminal, 0);

	struct sb_all_counts counts;
	static const uint8_t not_counts[] = {0x81, 0xa5, 'p', 'e', 'e', 'r', 's', 0xa1, 'x'};
	CHECK_INT(sb_all_counts(not_counts, sizeof not_counts, &counts), SB_EINVAL);
	CHECK_INT(sb_all_counts(NULL, 0, &counts), SB_EINVAL);
	for (int i = 0; i < 4; i++)
		sb_client_free(cs[i]);
	router_stop();
}

static void test_presence(void)
{
	router_start(NULL);
	struct watch ww = {0}, wn = {0};
	struct sightings s = {0};
	struct sb_client *watcher = client("watcher-1", "client", &ww);
	CHECK_INT(sb_client_presence(watcher, on_presence_event, &s), 0);
	struct sb_client *one[] = {watcher};
	pump_online(one, 1); /* online once the subscription is ACKed */

	struct sb_client *comer = client("comer-1", "service", &wn);
	struct sb_client *both[] = {watcher, comer};
	pump_online(both, 2);
	pump_until(both, 2, &s.connected, 1, "comer-1 connected");
	CHECK_STR(s.last, "comer-1");
	CHECK_STR(s.role, "service");
	CHECK_INT(s.last_id, sb_client_peer_id(comer));
	/* The values start at 1 (the wire's): a table indexed by them has a
	 * slot 0 that nothing uses, or the name helper spares the table. */
	CHECK_INT(s.last_event, 1);
	CHECK_STR(s.last_name, "connected");
	sb_client_free(comer);
	pump_until(one, 1, &s.disconnected, 1, "comer-1 disconnected");
	CHECK_STR(s.last, "comer-1");
	CHECK_INT(s.last_event, 2);
	CHECK_STR(s.last_name, "disconnected");

	/* Unsubscribed: no more events. */
	CHECK_INT(sb_client_presence(watcher, NULL, NULL), 0);
	pump_for(one, 1, 30);
	comer = client("comer-2", "client", &wn);
	struct sb_client *again[] = {watcher, comer};
	pump_online(again, 2);
	pump_for(again, 2, 100);
	CHECK_INT(s.connected, 1);
	CHECK_INT(s.other, 0);
	CHECK_INT(ww.error, 0);
	sb_client_free(comer);
	sb_client_free(watcher);
	router_stop();
}

static void test_caller_identity_window(void)
{
	router_start(NULL);
	struct watch w = {0};
	struct names_seen seen = {0};
	struct sb_client *svc = client("win-svc", "service", &w);
	struct sb_client *cs[] = {svc};

	CHECK_INT(sb_client_register(svc, "win", NULL, handle_win, &seen), 0);
	pump_online(cs, 1);
	for (int i = 0; i < WIN; i++) {
		char name[32];
		snprintf(name, sizeof name, "win-%d", i);
		lite_hello(&win[i], PORT, name);
	}
	/* 1,024 senders fill the window; the first one again is still known
	 * on both sides, without a second introduction. */
	for (int i = 0; i < WIN - 1; i++) {
		lite_send(&win[i], "win");
		if (i % 64 == 0)
			pump_for(cs, 1, 1);
	}
	pump_until(cs, 1, &seen.calls, WIN - 1, "one send from each of 1,024");
	lite_send(&win[0], "win");
	pump_until(cs, 1, &seen.calls, WIN, "the first again");
	/* The 1,025th turns the window over; senders from before it are
	 * introduced again, and the library follows. */
	int again[] = {WIN - 1, 0, 1, 2, WIN - 1, 3, 0};
	for (size_t i = 0; i < sizeof again / sizeof again[0]; i++)
		lite_send(&win[again[i]], "win");
	pump_until(cs, 1, &seen.calls, WIN + 7, "the second round");
	CHECK_INT(seen.wrong, 0);
	for (int i = 0; i < WIN; i++)
		close(win[i].fd);
	sb_client_free(svc);
	router_stop();
}

int main(void)
{
	RUN(test_to_a_named_peer);
	RUN(test_request_all);
	RUN(test_presence);
	RUN(test_caller_identity_window);
	return TEST_EXIT();
}
