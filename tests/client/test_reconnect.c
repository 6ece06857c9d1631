/* The client library when the router goes away or misbehaves: sends and
 * requests while offline, the local deadline, a malformed reply, GOODBYE
 * and a fatal error, and a restart under its clients with backoff,
 * reconnect and re-registration. Fake routers (a socket and the codec)
 * do what the real one never does; the restarts are real. */
#include <switchboard/client.h>
#include <switchboard/router.h>

#include "support/clients.h"
#include "support/clock.h"
#include "support/peer.h"
#include "support/proc.h"
#include "support/pump.h"
#include "support/router.h"
#include "support/testlib.h"

/* A listening socket that plays the router with the codec directly, so it
 * can do what the real one never does: stay silent, send a malformed
 * payload, send a fatal error. */
struct fake {
	int lfd;
	uint16_t port;
	struct peer *p[32]; /* connections whose HELLO we have not read yet */
	uint64_t accepted_at[32];
	int np;
	struct peer *live; /* the connection we WELCOMEd, if we welcome */
	int welcome;       /* answer HELLO with WELCOME (else close at once) */
	int hellos;
	/* reconnect timing, per client name (the HELLO's peer) */
	char names[64][16];
	uint64_t at[64];
	int nat;
};

static void fake_listen(struct fake *f, uint16_t port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	socklen_t len = sizeof sa;
	int one = 1;

	memset(f, 0, sizeof *f);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	setsockopt(f->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	/* A stopped router frees its port at once, so this bind must work
	 * first time even right after one on the same port. */
	CHECK(bind(f->lfd, (struct sockaddr *)&sa, sizeof sa) == 0);
	CHECK(listen(f->lfd, 64) == 0);
	getsockname(f->lfd, (struct sockaddr *)&sa, &len);
	f->port = ntohs(sa.sin_port);
}

static void fake_close(struct fake *f)
{
	for (int i = 0; i < f->np; i++)
		peer_close(f->p[i]);
	peer_close(f->live);
	close(f->lfd);
	f->np = 0;
	f->live = NULL;
}

static void fake_welcome(struct peer *p, const char *name)
{
	struct sb_msg w = {.kind = SB_WELCOME,
			   .version = SB_PROTO_VERSION,
			   .peer = v_str(name),
			   .peer_id = 9,
			   .max_frame = SB_FRAME_MAX_DEFAULT};
	peer_send(p, &w);
}

/* Every pump turn: accept, read HELLOs, then welcome or hang up. */
static void fake_tick(void *arg)
{
	struct fake *f = arg;
	int fd;

	while (f->np < 32 && (fd = accept(f->lfd, NULL, NULL)) >= 0) {
		struct peer *p = calloc(1, sizeof *p);
		p->fd = fd; /* accept() does not pass O_NONBLOCK on: peer.h blocks */
		p->sp = sb_splitter_new(0);
		f->accepted_at[f->np] = now_ms();
		f->p[f->np++] = p;
	}
	for (int i = 0; i < f->np; i++) {
		struct peer *p = f->p[i];
		int rc = peer_recv_within(p, 0);
		if (rc == -1)
			continue; /* nothing yet */
		if (rc == 1 && p->m.kind == SB_HELLO) {
			f->hellos++;
			if (f->nat < 64) {
				snprintf(f->names[f->nat], sizeof f->names[0], "%.*s",
					 (int)p->m.peer.len, (const char *)p->m.peer.ptr);
				f->at[f->nat++] = f->accepted_at[i];
			}
			if (f->welcome && f->live == NULL) {
				fake_welcome(p, f->names[f->nat - 1]);
				f->live = p;
				p = NULL;
			}
		}
		peer_close(p);
		f->p[i] = f->p[--f->np];
		f->accepted_at[i] = f->accepted_at[f->np];
		i--;
	}
}

static int fake_has_live(void *arg)
{
	struct fake *f = arg;
	return f->live != NULL;
}

/* The next frame from the client on f->live, pumping the client meanwhile. */
static struct sb_msg *fake_expect(struct fake *f, struct sb_client *c, unsigned kind)
{
	uint64_t end = now_ms() + pump_limit_ms;

	while (now_ms() < end) {
		sb_client_process(c, 5);
		if (peer_recv_within(f->live, 0) == 1) {
			CHECK_INT(f->live->m.kind, kind);
			return &f->live->m;
		}
	}
	CHECK(!"the fake router got nothing");
	memset(&f->live->m, 0, sizeof f->live->m);
	return &f->live->m;
}

struct rc_state {
	struct watch *ws, *wc;
	struct replies *ra, *rb;
};

static int both_offline_and_ended(void *arg)
{
	struct rc_state *s = arg;
	return s->ws->offline >= 1 && s->wc->offline >= 1 && s->ra->terminal >= 1 &&
	       s->rb->terminal >= 1;
}

static int both_reconnected(void *arg)
{
	struct rc_state *s = arg;
	return s->ws->reconnected >= 1 && s->wc->reconnected >= 1;
}

static void test_offline_sends(void)
{
	struct watch w = {0};
	struct replies r = {0};
	struct sb_client *c = client_at(free_port(), "lonely-1", "client", &w);
	struct sb_client *cs[] = {c};
	uint64_t id = 77;

	pump_for(cs, 1, 100);
	CHECK_INT(sb_client_online(c), 0);
	CHECK_INT(sb_send(c, "audit.log", EVENT, sizeof EVENT, NULL), SB_EOFFLINE);
	CHECK_INT(sb_request(c, "audit.log", NULL, 0, NULL, on_reply, &r, &id), SB_EOFFLINE);
	CHECK(id == 77); /* untouched on failure */
	CHECK_INT(sb_cancel(c, 1), SB_EINVAL);
	uint64_t t0 = now_ms();
	CHECK_INT(sb_request_wait(
			  c, "audit.log", NULL, 0,
			  &(struct sb_opts){.size = sizeof(struct sb_opts), .timeout_ms = 150},
			  NULL, 0, NULL, NULL),
		  SB_EOFFLINE);
	uint64_t took = now_ms() - t0;
	CHECK(took >= 150 && took < pump_limit_ms);
	CHECK_INT(sb_client_wait_online(c, 50), SB_EOFFLINE); /* no router: gives up in time */
	pump_for(cs, 1, 50);
	CHECK_INT(r.n, 0); /* a refused request never calls back */
	CHECK_INT(w.online + w.offline + w.error, 0);
	sb_client_free(c);
}

static void test_local_deadline_and_bad_payload(void)
{
	static const uint8_t broken[] = {0x82, 0xa1, 'a'}; /* a map that ends too soon */
	struct fake f;
	struct watch w = {0};
	struct replies r1 = {0}, r2 = {0}, r3 = {0};
	uint64_t id1 = 0, id2 = 0, id3 = 0;

	fake_listen(&f, 0);
	f.welcome = 1;
	struct sb_client *c = client_at(f.port, "deadline-1", "client", &w);
	struct sb_client *cs[] = {c};
	pump_tick = fake_tick;
	pump_tick_arg = &f;
	pump_cond(cs, 1, fake_has_live, &f, "the HELLO");
	pump_online(cs, 1);
	pump_tick = NULL;

	/* A router that never answers: the local deadline (timeout + 1 s) ends it. */
	uint64_t t0 = now_ms();
	CHECK_INT(sb_request(c, "silence", NULL, 0,
			     &(struct sb_opts){.size = sizeof(struct sb_opts), .timeout_ms = 50},
			     on_reply, &r1, &id1),
		  0);
	CHECK(fake_expect(&f, c, SB_REQUEST)->id == id1);
	pump_until(cs, 1, &r1.terminal, 1, "the local deadline");
	uint64_t took = r1.at - t0;
	CHECK_INT(r1.err, SB_ETIMEOUT);
	CHECK(took >= 1040 && took < pump_limit_ms);
	CHECK(strstr(r1.outcome, "plus 1 s") != NULL);
	CHECK(fake_expect(&f, c, SB_CANCEL)->id == id1); /* the router may free it */

	/* A reply whose payload is not one MessagePack value fails only its request. */
	CHECK_INT(sb_request(c, "broken", NULL, 0, NULL, on_reply, &r2, &id2), 0);
	CHECK(fake_expect(&f, c, SB_REQUEST)->id == id2);
	peer_reply(f.live, id2, "fine", 0, broken, sizeof broken);
	pump_until(cs, 1, &r2.terminal, 1, "the broken reply");
	CHECK_INT(r2.err, SB_EBADFRAME);
	CHECK_INT(r2.n, 1);
	CHECK_INT(sb_request(c, "fine", NULL, 0, NULL, on_reply, &r3, &id3), 0);
	CHECK(fake_expect(&f, c, SB_REQUEST)->id == id3);
	peer_reply(f.live, id3, "fine", 0, NULL, 0);
	pump_until(cs, 1, &r3.terminal, 1, "the good reply");
	CHECK_INT(r3.err, 0);
	CHECK_INT(w.offline, 0); /* the connection survived */

	/* A reply to nothing we asked, and a reply after the end, are ignored. */
	peer_reply(f.live, id1, "late", 0, NULL, 0);
	peer_reply(f.live, 424242, "stray", 0, NULL, 0);
	pump_for(cs, 1, 50);
	CHECK_INT(r1.n + r2.n + r3.n, 3);
	sb_client_free(c);
	fake_close(&f);
}

static void test_goodbye_and_fatal_error(void)
{
	struct fake f;
	struct watch w = {0};
	struct replies r = {0};
	uint64_t id = 0;

	fake_listen(&f, 0);
	f.welcome = 1;
	struct sb_client *c = client_at(f.port, "bye-1", "client", &w);
	struct sb_client *cs[] = {c};
	pump_tick = fake_tick;
	pump_tick_arg = &f;
	pump_online(cs, 1);

	/* GOODBYE: no new requests, the open one still finishes, sends still go. */
	CHECK_INT(sb_request(c, "job", NULL, 0, NULL, on_reply, &r, &id), 0);
	CHECK(fake_expect(&f, c, SB_REQUEST)->id == id);
	struct sb_msg bye = {.kind = SB_GOODBYE, .text = v_str("router draining")};
	peer_send(f.live, &bye);
	uint64_t end = now_ms() + pump_limit_ms;
	while (sb_client_online(c) && now_ms() < end)
		sb_client_process(c, 5);
	CHECK_INT(sb_client_online(c), 0);
	CHECK_INT(sb_request(c, "job", NULL, 0, NULL, on_reply, &r, NULL), SB_EDRAINING);
	CHECK_INT(sb_send(c, "audit.log", NULL, 0, NULL), 0);
	CHECK_INT(fake_expect(&f, c, SB_SEND)->kind, SB_SEND);
	peer_reply(f.live, id, "finished", 0, NULL, 0);
	pump_until(cs, 1, &r.terminal, 1, "the last reply");
	CHECK_INT(r.err, 0);
	CHECK_STR(r.outcome, "finished");

	/* The close after GOODBYE is OFFLINE with err 0, then a reconnect. */
	peer_close(f.live);
	f.live = NULL;
	pump_until(cs, 1, &w.reconnected, 1, "the reconnect after the goodbye");
	CHECK_INT(w.offline, 1);
	CHECK_INT(w.offline_err, 0);
	CHECK_INT(r.n, 1);

	/* A fatal error that is not about our identity: ERROR, OFFLINE, retry. */
	struct sb_msg fatal = {.kind = SB_ERROR,
			       .flags = SB_F_FATAL,
			       .code = (uint32_t)-SB_EINTERNAL,
			       .text = v_str("out of memory")};
	peer_send(f.live, &fatal);
	peer_close(f.live);
	f.live = NULL;
	pump_until(cs, 1, &w.reconnected, 2, "the reconnect after the fatal error");
	CHECK_INT(w.error, 1);
	CHECK_INT(w.error_err, SB_EINTERNAL);
	CHECK_INT(w.offline, 2);
	CHECK_INT(w.offline_err, SB_EINTERNAL);
	CHECK_INT(w.online, 1);

	/* A router that says GOODBYE and then never closes: we close after its
	 * deadline (0 here) plus the grace, and come back. */
	struct sb_msg bye0 = {.kind = SB_GOODBYE, .text = v_str("stuck")};
	peer_send(f.live, &bye0);
	uint64_t t0 = now_ms();
	pump_until(cs, 1, &w.offline, 3, "our own close of a stuck drain");
	uint64_t took = now_ms() - t0;
	CHECK_INT(w.offline_err, SB_ETIMEOUT);
	CHECK(took >= 1900 && took < pump_limit_ms);
	peer_close(f.live);
	f.live = NULL;
	pump_until(cs, 1, &w.reconnected, 3, "the reconnect after the stuck drain");
	pump_tick = NULL;
	sb_client_free(c);
	fake_close(&f);
}

static void test_reconnect_after_router_restart(void)
{
	struct watch ws = {0}, wc = {0};
	struct replies ra = {0}, rb = {0}, rc = {0};
	struct held h = {.watch_cancel = 1};
	struct rc_state st = {&ws, &wc, &ra, &rb};
	struct sb_router *r2 = router_open_at(0);
	uint16_t port = sb_router_port(r2);
	struct sb_client *svc = client_at(port, "rc-svc", "service", &ws);
	struct sb_client *ui = client_at(port, "rc-ui", "client", &wc);
	struct sb_client *cs[] = {svc, ui};
	struct fake f;

	CHECK_INT(sb_client_register(svc, "rc.echo", NULL, handle_echo, NULL), 0);
	CHECK_INT(sb_client_register(svc, "rc.hold", NULL, handle_hold, &h), 0);
	pump_online(cs, 2);

	/* Request A is at the handler; B is still in the client's output when
	 * the router goes away. */
	CHECK_INT(sb_request(ui, "rc.hold", NULL, 0, NULL, on_reply, &ra, NULL), 0);
	pump_until(cs, 2, &h.calls, 1, "request A at the handler");
	sb_router_stop(r2, 0);
	sb_router_free(r2);
	CHECK_INT(sb_request(ui, "rc.echo", NULL, 0, NULL, on_reply, &rb, NULL), 0);

	/* Something that accepts and hangs up keeps the port, and times the
	 * reconnect attempts. */
	fake_listen(&f, port);
	pump_tick = fake_tick;
	pump_tick_arg = &f;
	pump_cond(cs, 2, both_offline_and_ended, &st, "OFFLINE and both requests ended");
	/* The router ends what it knows with "router draining" before it
	 * closes; what it never saw ends with SB_EOFFLINE. Once each. */
	CHECK_INT(ra.err, SB_EDRAINING);
	CHECK_INT(rb.err, SB_EOFFLINE);
	CHECK_INT(h.cancels, 1);      /* the call in progress was dropped */
	CHECK_INT(ws.offline_err, 0); /* closed after its GOODBYE */
	CHECK_INT(wc.offline_err, 0);
	CHECK_INT(sb_send(ui, "rc.echo", NULL, 0, NULL), SB_EOFFLINE);
	CHECK_INT(sb_request(ui, "rc.echo", NULL, 0, NULL, on_reply, &rc, NULL), SB_EOFFLINE);
	CHECK_INT(sb_client_register(svc, "rc.later", NULL, handle_echo, NULL),
		  0); /* kept for later */

	uint64_t window = now_ms();
	pump_for(cs, 2, 1000);
	window = now_ms() - window;
	pump_tick = NULL;
	fake_close(&f);

	/* Backoff: attempts are MIN_MS apart or more (seen from here, give or
	 * take a stalled pump turn: MIN_MS / 2 still rules out a hot loop), and
	 * far fewer than a fixed MIN_MS would make. */
	int attempts = 0;
	uint64_t prev = 0;
	for (int i = 0; i < f.nat; i++) {
		if (strcmp(f.names[i], "rc-ui") != 0)
			continue;
		if (attempts > 0 && f.at[i] - prev < MIN_MS / 2) {
			fprintf(stderr, "  attempts %" PRIu64 " ms apart\n", f.at[i] - prev);
			CHECK(!"reconnect attempts closer than reconnect_min_ms");
		}
		prev = f.at[i];
		attempts++;
	}
	CHECK(attempts >= 3);
	CHECK(attempts <= (int)(window / MIN_MS) / 2 + 1);

	/* A new router on the same port: both come back by themselves, the
	 * service's handlers with them. */
	struct sb_router *r3 = router_open_at(port);
	pump_cond(cs, 2, both_reconnected, &st, "RECONNECTED on both");
	CHECK(wc.reconnected_at - wc.offline_at >= MIN_MS);
	CHECK_INT(sb_request(ui, "rc.echo", NULL, 0, NULL, on_reply, &rc, NULL), 0);
	pump_until(cs, 2, &rc.terminal, 1, "a request after the restart");
	CHECK_INT(rc.err, 0);
	CHECK_STR(rc.outcome, "echoed");
	struct replies rl = {0};
	CHECK_INT(sb_request(ui, "rc.later", NULL, 0, NULL, on_reply, &rl, NULL), 0);
	pump_until(cs, 2, &rl.terminal, 1, "a handler registered while offline");
	CHECK_INT(rl.err, 0);

	pump_for(cs, 2, 30);
	CHECK_INT(ra.n, 1);
	CHECK_INT(rb.n, 1);
	CHECK_INT(rc.n, 1);
	CHECK_INT(ws.online, 1);
	CHECK_INT(wc.online, 1);
	CHECK_INT(ws.offline, 1);
	CHECK_INT(wc.offline, 1);
	CHECK_INT(ws.reconnected, 1);
	CHECK_INT(wc.reconnected, 1);
	CHECK_INT(ws.error + wc.error, 0);
	sb_client_free(svc);
	sb_client_free(ui);
	sb_router_stop(r3, 0);
	sb_router_free(r3);
}

static void handle_cmd(struct sb_call *call, void *ud)
{
	(void)ud;
	CHECK_INT(sb_reply(call, "done", NULL, 0), 0);
}

/* A network blip: the client's TCP connection dies (the process lives on).
 * It reconnects by itself and is still A001, its handler reachable by that
 * name again; while it is away nobody else can take A001; once it is gone
 * for good, the name waits for it. */
static void test_the_same_name_after_a_lost_connection(void)
{
	struct sb_router_config cfg = router_config();
	cfg.name_pattern = "A###";
	cfg.name_grace_ms = 60000;
	router_start(&cfg);
	struct watch wa = {0}, ws = {0}, wt = {0};
	struct sb_client *agent = client(NULL, "client", &wa);
	struct sb_client *svc = client("tunnel-1", "service", &ws);
	struct sb_client *cs[] = {agent, svc};
	CHECK_INT(sb_client_register(agent, "cmd", NULL, handle_cmd, NULL), 0);
	pump_online(cs, 2);
	CHECK_STR(sb_client_name(agent), "A001");

	CHECK_INT(shutdown(sb_client_fd(agent), SHUT_RDWR), 0);
	pump_until(cs, 2, &wa.reconnected, 1, "the agent back");
	CHECK_INT(wa.offline, 1);
	CHECK_STR(sb_client_name(agent), "A001");
	struct sb_opts to = SB_OPTS_INIT;
	to.to = "A001";
	to.timeout_ms = LONG_MS;
	struct replies r = {0};
	CHECK_INT(sb_request(svc, "cmd", NULL, 0, &to, on_reply, &r, NULL), 0);
	pump_until(cs, 2, &r.terminal, 1, "the agent's answer");
	CHECK_INT(r.err, 0);
	CHECK_STR(r.outcome, "done");

	/* Gone without a GOODBYE: A001 waits for its token, so another client
	 * asking for it is refused (and, a name being its own, gives up). */
	sb_client_free(agent);
	struct sb_client_config tc;
	sb_client_config_init(&tc);
	tc.port = PORT;
	tc.name = "A001";
	tc.reconnect_min_ms = MIN_MS;
	tc.reconnect_max_ms = MAX_MS;
	tc.on_state = on_state;
	tc.ud = &wt;
	/* (Until the router has seen the close, A001 is simply connected.) */
	static const char held[] = "this name is held for the peer that had it";
	for (int i = 0; i < 200; i++) {
		struct sb_client *thief = sb_client_new(&tc, NULL);
		CHECK(thief != NULL);
		CHECK_INT(sb_client_wait_online(thief, 10000), SB_EDUPNAME);
		int is_held = strncmp(sb_client_last_error(thief), held, sizeof held - 1) == 0;
		sb_client_free(thief);
		if (is_held)
			break;
		CHECK(i < 199);
		usleep(5000);
	}
	sb_client_free(svc);
	router_stop();
}

int main(void)
{
	RUN(test_offline_sends);
	RUN(test_local_deadline_and_bad_payload);
	RUN(test_goodbye_and_fatal_error);
	RUN(test_reconnect_after_router_restart);
	RUN(test_the_same_name_after_a_lost_connection);
	return TEST_EXIT();
}
