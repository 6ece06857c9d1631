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

/* A client registers `cmd`, which only `to` reaches: a service pushes to it
 * by name (a send and a request), another client asking `cmd` by name alone
 * gets `no handler`; a name the client does not handle is refused by the
 * router and counted; the client still cannot call internal handlers. */
static void test_a_client_takes_pushes_by_name_only(void)
{
	router_start(NULL);
	struct watch w[3] = {{0}};
	struct seen pushed = {0};
	struct caller asked = {0};
	struct sb_client *agent = client("agent-1", "client", &w[0]);
	struct sb_client *svc = client("tunnel-1", "service", &w[1]);
	struct sb_client *other = client("other-cli", "client", &w[2]);
	struct sb_client *cs[] = {agent, svc, other};
	struct replies r[5] = {{0}};

	CHECK_INT(sb_client_register(agent, "cmd", NULL, handle_whoami, &asked), 0);
	CHECK_INT(sb_client_register(agent, "cmd.note", NULL, handle_seen, &pushed), 0);
	CHECK_INT(
		sb_client_register(svc, "vault.open",
				   &(struct sb_handler_opts){.size = sizeof(struct sb_handler_opts),
							     .flags = SB_HANDLER_INTERNAL},
				   handle_echo, NULL),
		0);
	pump_online(cs, 3);
	struct sb_opts to_agent = SB_OPTS_INIT;
	to_agent.to = "agent-1";
	to_agent.timeout_ms = LONG_MS;
	CHECK_INT(sb_request(svc, "cmd", NULL, 0, &to_agent, on_reply, &r[0], NULL), 0);
	CHECK_INT(sb_send(svc, "cmd.note", EVENT, sizeof EVENT, &to_agent), 0);
	pump_until(cs, 3, &r[0].terminal, 1, "the agent's answer");
	CHECK_INT(r[0].err, 0);
	CHECK_STR(r[0].outcome, "tunnel-1"); /* the agent knew who asked */
	CHECK_STR(asked.role, "service");
	pump_until(cs, 3, &pushed.n, 1, "the push");
	CHECK(pushed.len == sizeof EVENT && memcmp(pushed.payload, EVENT, sizeof EVENT) == 0);

	/* By name alone, nobody handles `cmd`: the agent's name is not a route. */
	CHECK_INT(sb_request(other, "cmd", NULL, 0, NULL, on_reply, &r[1], NULL), 0);
	pump_until(cs, 3, &r[1].terminal, 1, "no handler");
	CHECK_INT(r[1].err, SB_ENOHANDLER);
	CHECK_STR(r[1].outcome, "no handler for this name");
	CHECK_INT(asked.n, 1);

	/* A name the agent has no handler for: counted, and a request told. */
	uint64_t before = router_stats().to_unhandled;
	CHECK_INT(sb_send(svc, "cmd.other", NULL, 0, &to_agent), 0);
	CHECK_INT(sb_request(svc, "cmd.other", NULL, 0, &to_agent, on_reply, &r[2], NULL), 0);
	pump_until(cs, 3, &r[2].terminal, 1, "the router's refusal");
	CHECK_INT(r[2].err, SB_ENOHANDLER);
	CHECK_STR(r[2].outcome, "peer agent-1 has no handler for cmd.other");
	CHECK_INT(router_stats().to_unhandled, before + 2); /* the send went first */
	CHECK_INT(pushed.n, 1);

	/* Registering gave the agent no service's rights. */
	CHECK_INT(sb_request(agent, "vault.open", NULL, 0, NULL, on_reply, &r[3], NULL), 0);
	pump_until(cs, 3, &r[3].terminal, 1, "forbidden");
	CHECK_INT(r[3].err, SB_EFORBIDDEN);

	sb_client_free(other);
	sb_client_free(svc);
	sb_client_free(agent);
	router_stop();
}

/* Per-peer results of a broadcast to peers, by peer name, in a line each:
 * "agent-1 ok up" or "agent-4 error -1 no handler for this name". */
struct peer_results {
	char lines[8][96];
	int n, terminal, err;
	struct sb_all_counts counts;
};

static void on_peer_result(const struct sb_reply *r, void *ud)
{
	struct peer_results *a = ud;

	if (r->more == SB_MORE_NONE) {
		a->terminal++;
		a->err = r->err;
		if (r->err == 0)
			CHECK_INT(sb_all_counts(r->payload, r->len, &a->counts), 0);
		return;
	}
	CHECK_INT(r->more, SB_MORE_RESULT);
	CHECK(r->peer != NULL && a->n < 8);
	if (r->peer == NULL || a->n == 8)
		return;
	if (r->err == 0)
		snprintf(a->lines[a->n++], sizeof a->lines[0], "%s ok %s", r->peer, r->outcome);
	else
		snprintf(a->lines[a->n++], sizeof a->lines[0], "%s error %d %s", r->peer, r->err,
			 r->outcome);
}

static int has_line(const struct peer_results *a, const char *line)
{
	for (int i = 0; i < a->n; i++)
		if (strcmp(a->lines[i], line) == 0)
			return 1;
	return 0;
}

static void handle_up(struct sb_call *call, void *ud)
{
	(void)ud;
	if (sb_call_is_request(call))
		CHECK_INT(sb_reply(call, sb_call_name(call), NULL, 0), 0);
}

/* Every connected agent is asked, handler or not: two answer with their
 * handler, one with its catch-all, and the one with neither shows as `no
 * handler`; a peer the selector does not pick is not asked. By role too,
 * and a send to them all counts the agent it could not reach. */
static void test_a_broadcast_to_every_agent(void)
{
	router_start(NULL);
	struct watch w[6] = {{0}};
	struct sb_client *cs[6];
	const char *names[] = {"agent-1", "agent-2", "agent-3", "agent-4", "tunnel", "bystander"};
	for (int i = 0; i < 6; i++)
		cs[i] = client(names[i], i == 4 ? "service" : "client", &w[i]);
	CHECK_INT(sb_client_register(cs[0], "health", NULL, handle_up, NULL), 0);
	CHECK_INT(sb_client_register(cs[1], "health", NULL, handle_up, NULL), 0);
	CHECK_INT(sb_client_register(cs[2], NULL, NULL, handle_up, NULL), 0); /* catch-all */
	CHECK_INT(sb_client_register(cs[5], "health", NULL, handle_up, NULL), 0);
	/* For later: each peer's own rules (ACKed before ONLINE). */
	static const uint8_t need_k[] = {0x81, 0xa8, 'r', 'e',  'q',  'u', 'i',
					 'r',  'e',  'd', 0x91, 0xa1, 'k'};
	struct sb_handler_opts internal = SB_HANDLER_OPTS_INIT, schema = SB_HANDLER_OPTS_INIT;
	internal.flags = SB_HANDLER_INTERNAL;
	schema.schema = need_k;
	schema.schema_len = sizeof need_k;
	CHECK_INT(sb_client_register(cs[0], "strict", &internal, handle_up, NULL), 0);
	CHECK_INT(sb_client_register(cs[5], "strict", &schema, handle_up, NULL), 0);
	pump_online(cs, 6);

	struct sb_opts peers = SB_OPTS_INIT;
	peers.flags = SB_OPT_PEERS;
	peers.to = "agent-*";
	peers.timeout_ms = LONG_MS;
	struct peer_results a = {0};
	CHECK_INT(sb_request(cs[4], "health", NULL, 0, &peers, on_peer_result, &a, NULL), 0);
	pump_until(cs, 6, &a.terminal, 1, "the aggregate");
	CHECK_INT(a.err, 0);
	CHECK_INT(a.n, 4);
	CHECK(has_line(&a, "agent-1 ok health"));
	CHECK(has_line(&a, "agent-2 ok health"));
	CHECK(has_line(&a, "agent-3 ok health"));
	CHECK(has_line(&a, "agent-4 error -1 no handler for this name"));
	CHECK(a.counts.peers == 4 && a.counts.ok == 3 && a.counts.errors == 1);

	/* By role: every client, the bystander too (a client may ask: it is
	 * not asked itself). */
	struct peer_results b = {0};
	peers.to = "@client";
	CHECK_INT(sb_request(cs[0], "health", NULL, 0, &peers, on_peer_result, &b, NULL), 0);
	pump_until(cs, 6, &b.terminal, 1, "the aggregate by role");
	CHECK_INT(b.n, 4);
	CHECK(has_line(&b, "bystander ok health") && has_line(&b, "agent-4 error -1 no handler "
								  "for this name"));
	CHECK(!has_line(&b, "agent-1 ok health"));
	CHECK(b.counts.peers == 4 && b.counts.ok == 3 && b.counts.errors == 1);

	/* Nobody picked, and selectors that select nothing sensible. */
	struct peer_results c = {0};
	peers.to = "nobody-*";
	CHECK_INT(sb_request(cs[4], "health", NULL, 0, &peers, on_peer_result, &c, NULL), 0);
	pump_until(cs, 6, &c.terminal, 1, "no peers");
	CHECK_INT(c.err, SB_ENOPEERS);
	peers.to = "a*b";
	CHECK_INT(sb_send(cs[4], "health", NULL, 0, &peers), SB_EINVAL);
	peers.to = "@robots";
	CHECK_INT(sb_send(cs[4], "health", NULL, 0, &peers), SB_EINVAL);
	peers.to = NULL;
	CHECK_INT(sb_send(cs[4], "health", NULL, 0, &peers), SB_EINVAL);

	/* Each peer's own rules, each a result: an internal handler is not a
	 * client's to call, a schema refuses what breaks it. */
	struct watch wn = {0};
	struct sb_client *asker = client("asker", "client", &wn);
	struct sb_client *all[] = {cs[0], cs[1], cs[2], cs[3], cs[4], cs[5], asker};
	pump_online(all, 7);
	struct peer_results d = {0};
	peers.to = "@client";
	CHECK_INT(sb_request(asker, "strict", NULL, 0, &peers, on_peer_result, &d, NULL), 0);
	pump_until(all, 7, &d.terminal, 1, "every client's own answer");
	CHECK_INT(d.n, 5);
	CHECK(has_line(&d, "agent-1 error -8 this peer handles the name for services only"));
	CHECK(has_line(&d, "bystander error -9 missing required key \"k\""));
	CHECK(has_line(&d, "agent-2 error -1 no handler for this name"));
	CHECK(has_line(&d, "agent-3 ok strict")); /* its catch-all */
	CHECK(has_line(&d, "agent-4 error -1 no handler for this name"));
	CHECK(d.counts.peers == 5 && d.counts.ok == 1 && d.counts.errors == 4);
	sb_client_free(asker);

	/* A send to them all: agent-4 is counted, not silently skipped. */
	uint64_t before = router_stats().to_unhandled;
	peers.to = "agent-*";
	CHECK_INT(sb_send(cs[4], "health", NULL, 0, &peers), 0);
	struct peer_results done = {0}; /* a request after it: both counted by then */
	CHECK_INT(sb_request(cs[4], "health", NULL, 0, &peers, on_peer_result, &done, NULL), 0);
	pump_until(cs, 6, &done.terminal, 1, "the request after the send");
	CHECK_INT(router_stats().to_unhandled, before + 2);
	for (int i = 0; i < 6; i++)
		sb_client_free(cs[i]);
	router_stop();
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

	/* The other way: a client can be asked too; one that registered
	 * nothing has no handler for the name (the router says so). */
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
	RUN(test_a_client_takes_pushes_by_name_only);
	RUN(test_a_broadcast_to_every_agent);
	RUN(test_request_all);
	RUN(test_presence);
	RUN(test_caller_identity_window);
	return TEST_EXIT();
}
