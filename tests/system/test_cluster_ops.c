/* Running routers as one (docs/cluster.md, "Settings" and "Clients that
 * move"): the NATS connection's credentials and TLS as daemon flags and
 * config fields, the router's name in the cluster and its dead time, the
 * errors a bad value gets, and a client library client that moves to
 * another router when its own is killed. nats-server processes of the
 * test's own (support/natsd.h) with users, tokens and TLS set by their
 * flags; routers are daemons (support/daemon.h) where a flag is what is
 * tested or a router must die by SIGKILL, in-process routers elsewhere.
 * Every wait is bounded. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <switchboard/client.h>
#include <switchboard/router.h>

#include "support/admin.h"
#include "support/clock.h"
#include "support/cluster.h"
#include "support/daemon.h"
#include "support/natsd.h"
#include "support/peer.h"
#include "support/proc.h"
#include "support/pump.h"
#include "support/router.h"
#include "support/testlib.h"
#include "support/tls.h"

static char scratch[64]; /* the test's files: passwords, tokens */

/* scratch/name with text in it; its path in a static buffer of its own. */
static const char *file_with(const char *name, const char *text)
{
	static char paths[4][128];
	static unsigned n;
	char *p = paths[n++ % 4];
	snprintf(p, sizeof paths[0], "%s/%s", scratch, name);
	FILE *f = fopen(p, "w");
	CHECK(f != NULL);
	if (f != NULL) {
		fputs(text, f);
		fclose(f);
	}
	return p;
}

/* The daemon's stderr (its log) read into log until it holds text, within
 * ms. 1 if it did. */
static int log_wait(int fd, char *log, size_t cap, const char *text, unsigned ms)
{
	size_t have = strlen(log);
	uint64_t end = now_ms() + ms;

	while (strstr(log, text) == NULL && now_ms() < end && have + 1 < cap) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		if (poll(&pfd, 1, 100) != 1)
			continue;
		ssize_t n = read(fd, log + have, cap - 1 - have);
		if (n <= 0)
			break;
		have += (size_t)n;
		log[have] = 0;
	}
	if (strstr(log, text) != NULL)
		return 1;
	fprintf(stderr, "the log has no \"%s\":\n%s\n", text, log);
	return 0;
}

static const char *sbctl_path; /* the sbctl binary: set by main() */

/* A program run with args until it exits (10 s): its exit code, and its
 * stdout and stderr in err. */
static int run(const char *path, const char *const *args, char *err, size_t cap)
{
	const char *argv[24] = {path};
	int n = 1, pipefd[2], status = 0;

	for (int i = 0; args[i] != NULL && n < 23; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	CHECK(pipe(pipefd) == 0);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(pipefd[1], STDERR_FILENO);
		dup2(pipefd[1], STDOUT_FILENO);
		close(pipefd[0]);
		execv(path, (char *const *)argv);
		_exit(127);
	}
	close(pipefd[1]);
	size_t have = 0;
	ssize_t r;
	uint64_t end = now_ms() + 10000;
	struct pollfd pfd = {.fd = pipefd[0], .events = POLLIN};
	while (have + 1 < cap && now_ms() < end && poll(&pfd, 1, 100) >= 0) {
		if (!(pfd.revents & (POLLIN | POLLHUP)))
			continue;
		if ((r = read(pipefd[0], err + have, cap - 1 - have)) <= 0)
			break;
		have += (size_t)r;
	}
	err[have] = 0;
	close(pipefd[0]);
	if (!wait_exit(pid, &status, 10000)) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		CHECK(!"it did not exit within 10 s");
		return -1;
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The daemon with args (on any free port) until it exits. */
static int daemon_refuses(const char *const *args, char *err, size_t cap)
{
	const char *all[24] = {"--port", "0"};
	for (int i = 0; args[i] != NULL && i < 21; i++)
		all[i + 2] = args[i];
	return run(daemon_path, all, err, cap);
}

/* A service on the router at port a reached by a client on the router at
 * port b: the two routers are one. */
static void routers_are_one(uint16_t a, uint16_t b, const char *name)
{
	struct peer *svc = peer_hello(a, NULL, "service");
	peer_register(svc, name, 1);
	struct peer *cl = peer_hello(b, NULL, "client");
	CHECK(cluster_until_reachable(cl, svc, name));
	peer_close(cl);
	peer_close(svc);
}

static void test_routers_join_a_nats_cluster_that_requires_a_password(void)
{
	const char *auth[] = {"--user", "sb-router", "--pass", "s3cret-pw", NULL};
	struct natsd s = {.extra = auth};
	CHECK_INT(natsd_start(&s, 1, 0), 0);

	/* A daemon with the password in a file (a trailing newline, as an
	 * editor leaves it), an embedded router with it in its config. */
	const char *flags[] = {"--cluster",
			       s.url,
			       "--cluster-user",
			       "sb-router",
			       "--cluster-pass-file",
			       file_with("nats-pass", "s3cret-pw\n"),
			       NULL};
	struct daemon a = daemon_start(0, flags);
	struct sb_router_config cfg = router_config();
	cfg.cluster = s.url;
	cfg.cluster_user = "sb-router";
	cfg.cluster_pass = "s3cret-pw";
	struct sb_router *b = router_open(&cfg);
	routers_are_one(a.port, sb_router_port(b), "billing.charge");
	routers_are_one(sb_router_port(b), a.port, "billing.refund");
	router_close(b);
	daemon_stop(&a);

	/* A token, from a file, on a server that wants one. */
	const char *tok[] = {"--auth", "t0ken-for-routers", NULL};
	struct natsd t = {.extra = tok};
	CHECK_INT(natsd_start(&t, 1, 0), 0);
	cfg = router_config();
	cfg.cluster = t.url;
	cfg.cluster_token_file = file_with("nats-token", "t0ken-for-routers\n");
	struct sb_router *c = router_open(&cfg), *d = router_open(&cfg);
	routers_are_one(sb_router_port(c), sb_router_port(d), "billing.token");
	router_close(c);
	router_close(d);
	natsd_stop(&t);
	natsd_stop(&s);
}

static void test_a_wrong_cluster_password_is_a_clear_error(void)
{
	const char *auth[] = {"--user", "sb-router", "--pass", "s3cret-pw", NULL};
	struct natsd s = {.extra = auth};
	CHECK_INT(natsd_start(&s, 1, 0), 0);

	/* The server says why in the router's log; the router still serves
	 * its own clients. */
	const char *flags[] = {"--cluster",
			       s.url,
			       "--cluster-user",
			       "sb-router",
			       "--cluster-pass-file",
			       file_with("wrong-pass", "not-the-password\n"),
			       NULL};
	struct daemon_opts o = {.capture_err = 1};
	struct daemon d = daemon_start_opts(0, flags, &o);
	char log[16384] = "";
	CHECK(log_wait(d.err, log, sizeof log, "the server says", 15000));
	CHECK(log_wait(d.err, log, sizeof log, "Authorization Violation", 15000));
	struct peer *svc = peer_hello(d.port, NULL, "service");
	peer_register(svc, "local.only", 1);
	struct peer *cl = peer_hello(d.port, NULL, "client");
	peer_request(cl, "local.only", 5, 10000, NULL, 0);
	peer_reply(svc, peer_expect(svc, SB_REQUEST)->id, "ok", 0, NULL, 0);
	CHECK(peer_expect(cl, SB_REPLY)->id == 5);
	peer_close(cl);
	peer_close(svc);
	daemon_stop(&d);
	natsd_stop(&s);
}

/* A bad value stops the daemon before it starts (exit 2), saying which
 * setting and why. */
static void refused_with(const char *const *args, const char *text)
{
	char err[4096];
	CHECK_INT(daemon_refuses(args, err, sizeof err), 2);
	if (strstr(err, text) == NULL) {
		fprintf(stderr, "want \"%s\" in:\n%s\n", text, err);
		CHECK(0);
	}
}

static void test_a_bad_cluster_setting_is_refused_saying_which_and_why(void)
{
	/* Checked as the flags are read. */
	refused_with((const char *[]){"--cluster-name", "edge.a", NULL},
		     "--cluster-name edge.a: expected 1 to 32 letters, digits, '-' or '_'");
	refused_with(
		(const char *[]){"--cluster-name", "a-name-far-longer-than-thirty-two-bytes", NULL},
		"expected 1 to 32 letters");
	refused_with((const char *[]){"--cluster-dead-ms", "100", NULL},
		     "--cluster-dead-ms 100: expected a number from 300 to 600000");
	/* Checked by the router, which logs why. */
	char url[64];
	snprintf(url, sizeof url, "nats://127.0.0.1:%u", free_port());
	refused_with((const char *[]){"--cluster-user", "u", NULL}, "cluster_user: needs cluster");
	refused_with((const char *[]){"--cluster", url, "--cluster-user", "u",
				      "--cluster-pass-file", "/nonexistent/pass", NULL},
		     "cluster_pass_file /nonexistent/pass: No such file or directory");
	refused_with((const char *[]){"--cluster", url, "--cluster-user", "u", NULL},
		     "cluster_user needs cluster_pass");
	refused_with((const char *[]){"--cluster", url, "--cluster-user", "u", "--cluster-pass",
				      "p", "--cluster-pass-file", file_with("p2", "p\n"), NULL},
		     "cluster_pass: given both as a string and as a file");
	refused_with((const char *[]){"--cluster", url, "--cluster-token-file",
				      file_with("empty", "\n"), NULL},
		     "cluster_token_file");
	refused_with(
		(const char *[]){"--cluster", url, "--cluster-ca", "/nonexistent/ca.pem", NULL},
		"/nonexistent/ca.pem");
	refused_with((const char *[]){"--cluster", url, "--cluster-key", "/x.key", NULL},
		     "cluster_key needs cluster_cert");
	refused_with((const char *[]){"--cluster", url, "--cluster-user", "u", "--cluster-pass",
				      "p", "--cluster-token", "t", NULL},
		     "cluster_token and cluster_user: one or the other");

	/* The same settings of an embedded router: SB_EINVAL. */
	struct sb_router_config cfg = router_config();
	int err = 0;
	cfg.cluster = url;
	cfg.cluster_dead_ms = 299;
	CHECK(sb_router_new(&cfg, &err) == NULL && err == SB_EINVAL);
	cfg.cluster_dead_ms = 3000;
	cfg.cluster_name = "";
	CHECK(sb_router_new(&cfg, &err) == NULL && err == SB_EINVAL);
	cfg.cluster_name = "a>b";
	CHECK(sb_router_new(&cfg, &err) == NULL && err == SB_EINVAL);
}

static char certs[4][160]; /* ca.pem, server.pem, server.key, alice.pem/key stem */

static void test_routers_join_over_tls_with_client_certificates(void)
{
	CHECK_INT(certs_make(), 0);
	snprintf(certs[0], sizeof certs[0], "%s", at("ca.pem"));
	snprintf(certs[1], sizeof certs[1], "%s", at("server.pem"));
	snprintf(certs[2], sizeof certs[2], "%s", at("server.key"));
	/* The server verifies its clients' certificates too (mutual TLS). */
	const char *tls[] = {"--tls",       "--tlscert",   certs[1], "--tlskey", certs[2],
			     "--tlsverify", "--tlscacert", certs[0], NULL};
	struct natsd s = {.extra = tls};
	CHECK_INT(natsd_start(&s, 1, 0), 0);

	char url[64], alice[160], alice_key[160];
	snprintf(url, sizeof url, "tls://127.0.0.1:%u", s.port);
	snprintf(alice, sizeof alice, "%s", at("alice.pem"));
	snprintf(alice_key, sizeof alice_key, "%s", at("alice.key"));
	/* tls:// with the CA as a daemon's flags; nats:// with the CA (TLS
	 * to every server) in an embedded router's config. */
	const char *flags[] = {"--cluster",
			       url,
			       "--cluster-ca",
			       certs[0],
			       "--cluster-cert",
			       alice,
			       "--cluster-key",
			       alice_key,
			       NULL};
	struct daemon a = daemon_start(0, flags);
	struct sb_router_config cfg = router_config();
	cfg.cluster = s.url;
	cfg.cluster_ca = certs[0];
	cfg.cluster_cert = alice;
	cfg.cluster_key = alice_key;
	struct sb_router *b = router_open(&cfg);
	routers_are_one(a.port, sb_router_port(b), "vault.open");
	routers_are_one(sb_router_port(b), a.port, "vault.close");
	router_close(b);
	daemon_stop(&a);

	/* Without a certificate the server refuses the router: said in its
	 * log, as an error. */
	const char *nocert[] = {"--cluster", url, "--cluster-ca", certs[0], NULL};
	struct daemon_opts o = {.capture_err = 1};
	struct daemon d = daemon_start_opts(0, nocert, &o);
	char log[16384] = "";
	CHECK(log_wait(d.err, log, sizeof log, "cluster: cannot join: TLS: ", 15000));
	CHECK(log_wait(d.err, log, sizeof log, "certificate", 15000));
	daemon_stop(&d);
	natsd_stop(&s);
	certs_remove();
}

/* The "router" $sb.peers gives for the peer named name, as seen from p. */
static int router_of(struct peer *p, const char *name, char *out, size_t cap)
{
	msgpack_unpacked u;
	/* This router's own peers: a cluster's answer is every router's. */
	static const char local[] = "\x81\xa5local\xc3";
	msgpack_object v = ask_router(p, "$sb.peers", local, sizeof local - 1, &u);
	const msgpack_object *e = find_by(&v, "peer", name);
	const msgpack_object *r = e != NULL ? map_get(e, "router") : NULL;
	int ok = r != NULL && r->type == MSGPACK_OBJECT_STR && r->via.str.size < cap;
	if (ok) {
		memcpy(out, r->via.str.ptr, r->via.str.size);
		out[r->via.str.size] = 0;
	}
	msgpack_unpacked_destroy(&u);
	return ok;
}

static void test_a_named_router_is_listed_under_its_name(void)
{
	struct natsd s = {0};
	CHECK_INT(natsd_start(&s, 1, 0), 0);
	const char *flags[] = {"--cluster", s.url, "--cluster-name", "edge-a_1", NULL};
	struct daemon a = daemon_start(0, flags);
	struct sb_router_config cfg = router_config();
	cfg.cluster = s.url;
	cfg.cluster_name = "edge-b";
	struct sb_router *b = router_open(&cfg);

	struct peer *p = peer_hello(a.port, "lister", "client");
	char id[64] = "";
	CHECK(router_of(p, "lister", id, sizeof id));
	CHECK_STR(id, "edge-a_1");
	peer_close(p);
	p = peer_hello(sb_router_port(b), "lister-b", "client");
	CHECK(router_of(p, "lister-b", id, sizeof id));
	CHECK_STR(id, "edge-b");
	peer_close(p);
	/* Its name is in every subject it answers on: requests cross both
	 * ways. */
	routers_are_one(a.port, sb_router_port(b), "named.one");
	routers_are_one(sb_router_port(b), a.port, "named.two");
	router_close(b);
	daemon_stop(&a);
	natsd_stop(&s);
}

static void test_two_routers_given_one_name_say_so_in_their_logs(void)
{
	struct natsd s = {0};
	CHECK_INT(natsd_start(&s, 1, 0), 0);
	const char *flags[] = {"--cluster", s.url, "--cluster-name", "twin", NULL};
	struct daemon_opts o = {.capture_err = 1};
	struct daemon a = daemon_start_opts(0, flags, &o);
	struct daemon b = daemon_start_opts(0, flags, &o);
	char log_a[16384] = "", log_b[16384] = "";
	const char *said = "another router runs with this router's id twin";
	CHECK(log_wait(a.err, log_a, sizeof log_a, said, 15000));
	CHECK(log_wait(b.err, log_b, sizeof log_b, said, 15000));
	daemon_stop(&a);
	daemon_stop(&b);
	natsd_stop(&s);
}

/* Router A's heartbeats keep a name held there from being taken over on
 * router B however long after the dead time: a takeover is only for a
 * router gone silent. */
static void test_a_name_held_on_a_live_router_stays_refused_past_the_dead_time(void)
{
	struct natsd js = {0};
	CHECK_INT(natsd_start(&js, 1, 1), 0);
	struct sb_router_config cfg = router_config();
	cfg.cluster = js.url;
	cfg.cluster_dead_ms = 600; /* heartbeats every 100 ms */
	struct sb_router *a = router_open(&cfg), *b = router_open(&cfg);
	uint16_t pa = sb_router_port(a), pb = sb_router_port(b);
	char why[256];
	struct peer *holder = NULL, *other = NULL;

	/* Until the names' bucket is there, names are each router's own. */
	uint64_t end = now_ms() + 15000;
	int refused = 0;
	while (!refused && now_ms() < end) {
		peer_close(holder);
		holder = NULL;
		if (!cluster_hello_as(pa, "ledger-9", &holder, why, sizeof why))
			continue;
		refused = !cluster_hello_as(pb, "ledger-9", &other, why, sizeof why);
		peer_close(other);
		other = NULL;
	}
	CHECK(refused);
	/* Five dead times and more, asking all along: never given away. */
	unsigned asked = 0;
	for (end = now_ms() + 3000; now_ms() < end; asked++) {
		int got = cluster_hello_as(pb, "ledger-9", &other, why, sizeof why);
		CHECK(!got);
		peer_close(other);
		other = NULL;
		if (got)
			break;
	}
	CHECK(asked > 3);
	peer_close(holder);
	router_close(a);
	router_close(b);
	natsd_stop(&js);
}

/* ---- a client that moves -------------------------------------------------- */

struct moves {
	int online, offline, reconnected;
};

static void on_moves(struct sb_client *c, enum sb_client_state s, int err, void *ud)
{
	struct moves *m = ud;
	(void)c, (void)err;
	m->online += s == SB_CLIENT_ONLINE;
	m->offline += s == SB_CLIENT_OFFLINE;
	m->reconnected += s == SB_CLIENT_RECONNECTED;
}

static void handle_count(struct sb_call *call, void *ud)
{
	int *n = ud;
	char out[16];
	int len = snprintf(out + 1, sizeof out - 1, "n%d", ++*n);
	out[0] = (char)(0xa0 | len);
	sb_reply(call, "counted", out, (size_t)len + 1);
}

/* A request from cl (a peer) for name, answered by svc (a client library
 * service this thread drives), once the cluster has its interest: `no
 * handler` (or `peer gone`) until then, and asked again, for 20 s. */
static int reach_pumping(struct peer *cl, struct sb_client *svc, const char *name, uint64_t *id)
{
	uint64_t end = now_ms() + 20000;

	peer_request(cl, name, ++*id, 10000, NULL, 0);
	while (now_ms() < end) {
		pump_once(&svc, 1);
		if (peer_recv_within(cl, 0) != 1)
			continue;
		if (cl->m.kind == SB_REPLY && cl->m.id == *id)
			return v_is(cl->m.outcome, "counted");
		CHECK_INT(cl->m.kind, SB_ERROR);
		CHECK(cl->m.code == (uint32_t)-SB_ENOHANDLER ||
		      cl->m.code == (uint32_t)-SB_EPEERGONE);
		peer_request(cl, name, ++*id, 10000, NULL, 0);
	}
	return 0;
}

static int moved_to(void *arg)
{
	void **a = arg;
	struct sb_client *c = a[0];
	const struct moves *m = a[2];
	return m->reconnected > 0 && sb_client_online(c) && strcmp(sb_client_router(c), a[1]) == 0;
}

static void
test_a_client_whose_router_is_killed_moves_to_another_and_its_handlers_answer_again(void)
{
	/* JetStream: the service's name is claimed across the routers. */
	struct natsd s = {0};
	CHECK_INT(natsd_start(&s, 1, 1), 0);
	const char *flags[] = {"--cluster", s.url, "--cluster-dead-ms", "1200", NULL};
	struct daemon a = daemon_start(0, flags), b = daemon_start(0, flags);
	struct sb_router *c = cluster_join(s.url);
	char list[64], at_other[32];
	snprintf(list, sizeof list, "127.0.0.1:%u, 127.0.0.1:%u", a.port, b.port);

	struct moves m = {0};
	struct sb_client_config cfg;
	sb_client_config_init(&cfg);
	cfg.routers = list;
	cfg.name = "stock-svc";
	cfg.role = SB_ROLE_SERVICE;
	cfg.reconnect_min_ms = 40;
	cfg.reconnect_max_ms = 320;
	cfg.on_state = on_moves;
	cfg.ud = &m;
	int calls = 0;
	struct sb_client *svc = sb_client_new(&cfg, NULL);
	CHECK(svc != NULL);
	CHECK_INT(sb_client_register(svc, "stock.level", NULL, handle_count, &calls), 0);
	/* Online once its name is claimed (overloaded, and tried again,
	 * while the routers' bucket is being made). */
	unsigned limit = pump_limit_ms;
	pump_limit_ms = 20000;
	CHECK(pump_online(&svc, 1));
	/* On A, or on B if A refused the first claim with `overloaded` (the
	 * bucket not made yet) and it went on to the next router. */
	struct daemon *on = &a, *other = &b;
	if (atoi(sb_client_router(svc) + strlen("127.0.0.1:")) == b.port)
		on = &b, other = &a;
	CHECK(atoi(sb_client_router(svc) + strlen("127.0.0.1:")) == on->port);
	snprintf(at_other, sizeof at_other, "127.0.0.1:%u", other->port);

	/* A client on a third router reaches it. */
	struct peer *cl = peer_hello(sb_router_port(c), NULL, "client");
	uint64_t id = 0;
	CHECK(reach_pumping(cl, svc, "stock.level", &id));

	daemon_kill(on);
	/* Its name, held for it by the dead router until the other holds
	 * that router dead: refused meanwhile, and tried again until it is
	 * the other's. */
	void *args[3] = {svc, at_other, &m};
	CHECK(pump_cond(&svc, 1, moved_to, args, "the service moved to the other router"));
	pump_limit_ms = limit;
	CHECK_INT(m.offline, 1);
	CHECK_STR(sb_client_name(svc), "stock-svc");
	/* Its handler answers from B: requests from C reach it again. */
	int before = calls;
	CHECK(reach_pumping(cl, svc, "stock.level", &id));
	CHECK(calls > before);
	peer_close(cl);
	sb_client_free(svc);
	router_close(c);
	daemon_stop(other);
	natsd_stop(&s);
}

static void test_sbctl_given_several_routers_uses_the_first_that_answers(void)
{
	struct sb_router *r = router_open(NULL);
	char list[64], out[4096];
	uint16_t dead = free_port(), dead2 = free_port();
	snprintf(list, sizeof list, "127.0.0.1:%u,127.0.0.1:%u", dead, sb_router_port(r));
	CHECK_INT(
		run(sbctl_path, (const char *[]){"--router", list, "stats", NULL}, out, sizeof out),
		0);
	/* Each refused: the last one's reason, after a round. */
	snprintf(list, sizeof list, "127.0.0.1:%u,127.0.0.1:%u", dead, dead2);
	CHECK_INT(
		run(sbctl_path, (const char *[]){"--router", list, "stats", NULL}, out, sizeof out),
		3);
	char want[256];
	snprintf(want, sizeof want,
		 "sbctl: cannot connect to the router at 127.0.0.1:%u, nor to the others in "
		 "%s: connection refused\n",
		 dead2, list);
	CHECK_STR(out, want);
	CHECK_INT(run(sbctl_path, (const char *[]){"--router", "127.0.0.1:1,:7", "stats", NULL},
		      out, sizeof out),
		  2);
	CHECK_STR(out, "sbctl: --router 127.0.0.1:1,:7: \":7\": no host\n");
	router_close(r);
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc < 3) {
		fprintf(stderr,
			"usage: test_system_cluster_ops PATH-TO-SWITCHBOARD PATH-TO-SBCTL\n");
		return 2;
	}
	daemon_path = argv[1];
	sbctl_path = argv[2];
	watchdog("test_cluster_ops", 280);
	snprintf(scratch, sizeof scratch, "/tmp/sb-cluster-ops-XXXXXX");
	if (mkdtemp(scratch) == NULL)
		return 1;
	RUN(test_routers_join_a_nats_cluster_that_requires_a_password);
	RUN(test_a_wrong_cluster_password_is_a_clear_error);
	RUN(test_a_bad_cluster_setting_is_refused_saying_which_and_why);
	RUN(test_routers_join_over_tls_with_client_certificates);
	RUN(test_a_named_router_is_listed_under_its_name);
	RUN(test_two_routers_given_one_name_say_so_in_their_logs);
	RUN(test_a_name_held_on_a_live_router_stays_refused_past_the_dead_time);
	RUN(test_a_client_whose_router_is_killed_moves_to_another_and_its_handlers_answer_again);
	RUN(test_sbctl_given_several_routers_uses_the_first_that_answers);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", scratch);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", scratch);
	return TEST_EXIT();
}
