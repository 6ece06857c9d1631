/* Mutual TLS end to end: client certificates refused as expired, from
 * another CA, missing, not allowed or denied (what the client is told and
 * what the router logs); the allow-list reloaded while connections carry
 * on, and reloads racing accepts on both shards; a shared secret over TLS;
 * the daemon reloading on SIGHUP from its config file; sbctl over mutual
 * TLS. Certificates made at test time. */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>

#include <switchboard/client.h>
#include <switchboard/router.h>

#include "support/clock.h"
#include "support/pump.h"
#include "support/router.h"
#include "support/testlib.h"
#include "support/tls.h"

static const char *DAEMON, *SBCTL;

/* A TLS client of role client with a certificate and a shared secret. */
static struct sb_client *client_with(uint16_t port, const char *cert, const char *secret,
				     struct tls_watch *w)
{
	struct sb_client_config cfg;
	char c[128], k[128];
	int err = 0;

	sb_client_config_init(&cfg);
	cfg.port = port;
	cfg.reconnect_min_ms = 20;
	cfg.reconnect_max_ms = 200;
	cfg.on_state = tls_on_state;
	cfg.ud = w;
	cfg.tls = 1;
	cfg.tls_ca = at("ca.pem");
	snprintf(c, sizeof c, "%s.pem", at(cert));
	snprintf(k, sizeof k, "%s.key", at(cert));
	cfg.tls_cert = c;
	cfg.tls_key = k;
	cfg.secret = secret;
	struct sb_client *cl = sb_client_new(&cfg, &err);
	CHECK(cl != NULL);
	CHECK_INT(err, 0);
	return cl;
}

static const char *const ALLOW[] = {"alice", "svc-*", NULL};

static const char *const DENY[] = {"svc-evil", NULL};

/* Reloads from another thread while both shards accept: every connection
 * gets whole settings, old or new, and no snapshot is freed under a shard
 * (ASan and TSan watch the reference counts). */
struct reloader {
	struct sb_router *r;
	atomic_int stop;
	int reloads, failed;
};

static void *reload_loop(void *arg)
{
	static const char *const A[] = {"alice", NULL};
	static const char *const B[] = {"alice", "x*", NULL};
	struct reloader *rl = arg;
	struct sb_router_config cfg;

	while (!atomic_load(&rl->stop)) {
		tls_fill(&cfg, &(struct tls_cfg){.cert = "server",
						 .mtls = 1,
						 .allow = rl->reloads % 2 ? A : B});
		rl->failed += sb_router_reload(rl->r, &cfg) != 0;
		rl->reloads++;
	}
	return NULL;
}

static int write_config(const char *allow)
{
	FILE *f = fopen(at("sb.conf"), "w");
	if (f == NULL)
		return -1;
	fprintf(f,
		"# switchboard, as the TLS test runs it\n"
		"port = 0\n"
		"shards = 1\n"
		"tls-cert = %s   # the router's certificate\n"
		"tls-key = %s\n"
		"tls-ca = %s\n"
		"tls-verify-client = yes\n"
		"tls-allow = %s\n",
		at("server.pem"), at("server.key"), at("ca.pem"), allow);
	return fclose(f);
}

/* A line from the daemon's stdout containing `want`, within 5 s. */
static int read_until(int fd, const char *want, char *line, size_t cap)
{
	size_t have = 0;
	uint64_t end = now_ms() + 5000;

	while (now_ms() < end) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 100) != 1)
			continue;
		char ch;
		if (read(fd, &ch, 1) != 1)
			return -1;
		if (ch != '\n') {
			if (have + 1 < cap)
				line[have++] = ch;
			continue;
		}
		line[have] = 0;
		if (strstr(line, want) != NULL)
			return 0;
		have = 0;
	}
	return -1;
}

/* Runs sbctl with args while pumping the service c; its exit code, and its
 * stdout and stderr (joined) in out. */
static int sbctl(struct sb_client *c, char *out, size_t cap, const char *const *args)
{
	const char *argv[16] = {SBCTL};
	int pipefd[2], status = 0;
	size_t n = 1, have = 0;

	while (args[n - 1] != NULL && n < 15) {
		argv[n] = args[n - 1];
		n++;
	}
	argv[n] = NULL;
	CHECK(pipe(pipefd) == 0);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(pipefd[1], 1);
		dup2(pipefd[1], 2);
		close(pipefd[0]);
		execv(SBCTL, (char *const *)argv);
		_exit(127);
	}
	close(pipefd[1]);
	fcntl(pipefd[0], F_SETFL, O_NONBLOCK);
	uint64_t end = now_ms() + pump_limit_ms;
	while (waitpid(pid, &status, WNOHANG) == 0) {
		if (now_ms() >= end) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			CHECK(!"sbctl did not finish");
			break;
		}
		pump_once(&c, 1);
		ssize_t k = read(pipefd[0], out + have, cap - 1 - have);
		if (k > 0)
			have += (size_t)k;
	}
	ssize_t k;
	while ((k = read(pipefd[0], out + have, cap - 1 - have)) > 0)
		have += (size_t)k;
	out[have] = 0;
	close(pipefd[0]);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_mtls_refusals(void)
{
	uint16_t port;
	struct tls_cfg t = {.cert = "server", .mtls = 1, .allow = ALLOW, .deny = DENY};
	struct tls_watch wa = {0}, wb = {0}, wv = {0}, we = {0}, wm = {0}, wn = {0}, ws = {0};

	log_capture();
	struct sb_router *r = tls_router(&t, &port);
	struct sb_client *alice = tls_client(port, "service", "alice", NULL, &wa);
	struct sb_client *billing = tls_client(port, "client", "svc-billing", NULL, &ws);
	struct sb_client *cs[] = {alice, billing};
	CHECK_INT(sb_client_register(alice, "echo", NULL, handle_echo_subject, NULL), 0);
	pump_online(cs, 2); /* alice by name, svc-billing by pattern */

	struct sb_client *bob = tls_client(port, "client", "bob", NULL, &wb);
	expect_refused(bob, &wb, SB_EFORBIDDEN, "certificate name \"bob\" is not allowed");
	struct sb_client *evil = tls_client(port, "client", "svc-evil", NULL, &wv);
	expect_refused(evil, &wv, SB_EFORBIDDEN, "certificate name \"svc-evil\" is denied");
	struct sb_client *eve = tls_client(port, "client", "eve", NULL, &we);
	expect_refused(eve, &we, SB_EUNAUTHORIZED, "certificate expired");
	struct sb_client *mallory = tls_client(port, "client", "mallory", NULL, &wm);
	expect_refused(mallory, &wm, SB_EUNAUTHORIZED, "unknown ca");
	struct sb_client *nobody = tls_client(port, "client", NULL, NULL, &wn);
	expect_refused(nobody, &wn, SB_EUNAUTHORIZED, "certificate required");

	echo_works(cs, 2, billing, 1);             /* the allowed ones were never disturbed */
	CHECK_STR(last_subject, "CN=svc-billing"); /* the handler sees who called, verified */
	CHECK_INT(wa.offline + ws.offline, 0);
	sb_client_free(nobody);
	sb_client_free(mallory);
	sb_client_free(eve);
	sb_client_free(evil);
	sb_client_free(bob);
	sb_client_free(billing);
	sb_client_free(alice);
	router_close(r);

	char *log = log_release();
	expect_logged(log, "refused: certificate name \"bob\" is not allowed");
	expect_logged(log, "refused: certificate name \"svc-evil\" is denied (tls-deny svc-evil)");
	expect_logged(log, "refused: client certificate \"eve\" refused: it has expired");
	expect_logged(log, "refused: client certificate \"mallory\" refused: it is not signed by "
			   "a trusted CA");
	expect_logged(log, "refused: no client certificate (this router requires one)");
	free(log);
}

/* sb_router_reload: a name refused before is let in after, while the
 * connections made before carry on; a bad reload changes nothing. */
static void test_reload_swaps_allow_list(void)
{
	static const char *const ALICE[] = {"alice", NULL};
	static const char *const BOTH[] = {"alice", "bob", NULL};
	uint16_t port;
	struct tls_cfg t = {.cert = "server", .mtls = 1, .allow = ALICE};
	struct sb_router_config cfg;
	struct tls_watch wa = {0}, wb1 = {0}, wb2 = {0}, wb3 = {0}, wb4 = {0};

	log_capture();
	struct sb_router *r = tls_router(&t, &port);
	struct sb_client *alice = tls_client(port, "service", "alice", NULL, &wa);
	CHECK_INT(sb_client_register(alice, "echo", NULL, handle_echo_subject, NULL), 0);
	pump_online(&alice, 1);

	struct sb_client *bob = tls_client(port, "client", "bob", NULL, &wb1);
	expect_refused(bob, &wb1, SB_EFORBIDDEN, "\"bob\" is not allowed");
	sb_client_free(bob);

	t.allow = BOTH;
	tls_fill(&cfg, &t);
	CHECK_INT(sb_router_reload(r, &cfg), 0);
	bob = tls_client(port, "client", "bob", NULL, &wb2);
	struct sb_client *cs[] = {alice, bob};
	pump_online(cs, 2);
	echo_works(cs, 2, bob, 2); /* bob is new; alice's connection is from before */

	/* Refused reloads: the settings in force stay. */
	tls_fill(&cfg, &t);
	cfg.tls_cert = at("missing.pem");
	CHECK_INT(sb_router_reload(r, &cfg), SB_EINVAL);
	tls_fill(&cfg, &(struct tls_cfg){.cert = "eve", .mtls = 1}); /* expired */
	CHECK_INT(sb_router_reload(r, &cfg), SB_EINVAL);
	tls_fill(&cfg, NULL); /* TLS off */
	CHECK_INT(sb_router_reload(r, &cfg), SB_EINVAL);
	struct sb_client *bob2 = tls_client(port, "client", "bob", NULL, &wb3);
	pump_online(&bob2, 1);
	sb_client_free(bob2);

	/* Narrowed again: new connections as bob are refused, the one
	 * already open is not dropped. */
	t.allow = ALICE;
	tls_fill(&cfg, &t);
	CHECK_INT(sb_router_reload(r, &cfg), 0);
	struct sb_client *bob3 = tls_client(port, "client", "bob", NULL, &wb4);
	expect_refused(bob3, &wb4, SB_EFORBIDDEN, "\"bob\" is not allowed");
	sb_client_free(bob3);
	echo_works(cs, 2, bob, 3);
	CHECK_INT(wa.offline + wb2.offline, 0);
	sb_client_free(bob);
	sb_client_free(alice);
	router_close(r);

	char *log = log_release();
	expect_logged(log, "reloaded: TLS 1.3: certificate CN=server; client certificates "
			   "required, 2 allowed, 0 denied");
	expect_logged(log, "reload refused: tls-cert ");
	expect_logged(log, "missing.pem: No such file or directory");
	expect_logged(log, "reload refused: tls-cert ");
	expect_logged(log, "eve.pem: the certificate has expired");
	expect_logged(log, "reload refused: TLS cannot be turned off without a restart");
	free(log);
}

static void test_reload_races_accepts(void)
{
	static const char *const A[] = {"alice", NULL};
	uint16_t port;
	struct tls_cfg t = {.cert = "server", .mtls = 1, .allow = A};
	struct reloader rl = {.r = tls_router(&t, &port)};
	pthread_t th;
	int online = 0;

	CHECK(pthread_create(&th, NULL, reload_loop, &rl) == 0);
	for (int i = 0; i < 16; i++) {
		struct tls_watch w = {0};
		struct sb_client *c = tls_client(port, "client", "alice", NULL, &w);
		online += pump_online(&c, 1);
		sb_client_free(c);
	}
	atomic_store(&rl.stop, 1);
	pthread_join(th, NULL);
	CHECK_INT(online, 16);
	CHECK_INT(rl.failed, 0);
	CHECK(rl.reloads > 0);
	router_close(rl.r);
}

/* Shared secrets over TLS: the challenge and proof travel inside the
 * records; one sb_router_reload() swaps the secret and the allow-list
 * together, and a refusal of either leaves both as they were. */
static void test_secret_over_tls(void)
{
	static const char *const ALICE[] = {"alice", NULL};
	static const char *const BOTH[] = {"alice", "bob", NULL};
	struct sb_router_config cfg;
	struct tls_cfg t = {.cert = "server", .mtls = 1, .allow = ALICE};
	struct tls_watch w[5] = {{0}};
	int err = 0;

	log_capture();
	tls_fill(&cfg, &t);
	cfg.secret_client = "first-secret";
	struct sb_router *r = sb_router_new(&cfg, &err);
	CHECK(r != NULL);
	if (r == NULL)
		return;
	CHECK_INT(sb_router_start(r), 0);
	uint16_t port = sb_router_port(r);

	struct sb_client *ok = client_with(port, "alice", "first-secret", &w[0]);
	pump_online(&ok, 1);
	struct sb_client *wrong = client_with(port, "alice", "guess", &w[1]);
	expect_refused(wrong, &w[1], SB_EUNAUTHORIZED, "wrong secret");
	sb_client_free(wrong);

	/* Both at once; then an unreadable secret file refuses the lot. */
	t.allow = BOTH;
	tls_fill(&cfg, &t);
	cfg.secret_client = "second-secret";
	CHECK_INT(sb_router_reload(r, &cfg), 0);
	struct sb_client *bob = client_with(port, "bob", "second-secret", &w[2]);
	pump_online(&bob, 1);
	tls_fill(&cfg, &(struct tls_cfg){.cert = "server", .mtls = 1, .allow = ALICE});
	cfg.secret_client_file = at("nothere.secret"); /* unreadable: refused */
	CHECK_INT(sb_router_reload(r, &cfg), SB_ESYS);
	struct sb_client *bob2 = client_with(port, "bob", "second-secret", &w[3]);
	pump_online(&bob2, 1);       /* still bob allowed, still the second secret */
	CHECK(sb_client_online(ok)); /* the first connection never noticed */
	CHECK_INT(w[0].offline, 0);
	sb_client_free(bob2);
	sb_client_free(bob);
	sb_client_free(ok);
	router_close(r);
	char *log = log_release();
	expect_logged(log, "reloaded: TLS 1.3: certificate CN=server; client certificates "
			   "required, 2 allowed, 0 denied");
	expect_logged(log, "reload refused, the rules in force stay: secret_client_file ");
	free(log);
}

static void test_daemon_reloads_on_sighup(void)
{
	int out[2];
	char line[512];
	struct tls_watch wa = {0}, wb1 = {0}, wb2 = {0};

	CHECK_INT(write_config("alice"), 0);
	CHECK(pipe(out) == 0);
	pid_t pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(out[1], 1);
		dup2(null, 2);
		close(out[0]);
		execl(DAEMON, DAEMON, "--config", at("sb.conf"), (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	CHECK_INT(read_until(out[0], "listening on 127.0.0.1:", line, sizeof line), 0);
	const char *p = strstr(line, "127.0.0.1:");
	uint16_t port = p != NULL ? (uint16_t)atoi(p + 10) : 0;
	CHECK(port > 0);
	CHECK(strstr(line, "TLS") != NULL);

	struct sb_client *alice = tls_client(port, "service", "alice", NULL, &wa);
	CHECK_INT(sb_client_register(alice, "echo", NULL, handle_echo_subject, NULL), 0);
	pump_online(&alice, 1);
	struct sb_client *bob = tls_client(port, "client", "bob", NULL, &wb1);
	expect_refused(bob, &wb1, SB_EFORBIDDEN, "\"bob\" is not allowed");
	sb_client_free(bob);

	CHECK_INT(write_config("alice, bob"), 0);
	kill(pid, SIGHUP);
	CHECK_INT(read_until(out[0], "SIGHUP: settings reloaded", line, sizeof line), 0);
	bob = tls_client(port, "client", "bob", NULL, &wb2);
	struct sb_client *cs[] = {alice, bob};
	pump_online(cs, 2);
	echo_works(cs, 2, bob, 4);
	CHECK_INT(wa.offline, 0);

	/* A broken file is refused and changes nothing. */
	FILE *f = fopen(at("sb.conf"), "a");
	if (f != NULL) {
		fputs("tls-alow = mallory\n", f);
		fclose(f);
	}
	kill(pid, SIGHUP);
	CHECK_INT(read_until(out[0], "tls-alow: not a setting", line, sizeof line), 0);
	CHECK(strstr(line, "sb.conf:9: ") != NULL);
	echo_works(cs, 2, bob, 5);

	sb_client_free(bob);
	sb_client_free(alice);
	kill(pid, SIGTERM);
	int status = 0;
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(out[0]);
}

static void test_sbctl_over_tls(void)
{
	static const char *const ALICE[] = {"alice", NULL};
	uint16_t port;
	struct tls_cfg t = {.cert = "server", .mtls = 1, .allow = ALICE};
	struct sb_router *r = tls_router(&t, &port);
	struct tls_watch wa = {0};
	char router[32], out[2048];

	snprintf(router, sizeof router, "127.0.0.1:%u", port);
	struct sb_client *alice = tls_client(port, "service", "alice", NULL, &wa);
	CHECK_INT(sb_client_register(alice, "echo", NULL, handle_echo_subject, NULL), 0);
	pump_online(&alice, 1);

	const char *ok[] = {"--router",   router,          "--tls-ca",  at("ca.pem"),
			    "--tls-cert", at("alice.pem"), "--tls-key", at("alice.key"),
			    "request",    "echo",          "{\"n\":1}", NULL};
	CHECK_INT(sbctl(alice, out, sizeof out, ok), 0);
	CHECK(strstr(out, "echoed  {\"n\":1}") != NULL);

	const char *bob[] = {"--router",   router,        "--tls-ca",  at("ca.pem"),
			     "--tls-cert", at("bob.pem"), "--tls-key", at("bob.key"),
			     "request",    "echo",        NULL};
	CHECK_INT(sbctl(alice, out, sizeof out, bob), 3);
	CHECK(strstr(out, "forbidden (code EFORBIDDEN): certificate name \"bob\" is not "
			  "allowed") != NULL);

	const char *rogue[] = {"--router", router, "--tls-ca", at("rogue-ca.pem"), "routes", NULL};
	CHECK_INT(sbctl(alice, out, sizeof out, rogue), 3);
	CHECK(strstr(out, "router certificate \"server\" refused: it is not signed by a "
			  "trusted CA") != NULL);

	const char *missing[] = {"--router", router, "--tls-ca", at("nothere.pem"), "routes", NULL};
	CHECK_INT(sbctl(alice, out, sizeof out, missing), 2);
	CHECK(strstr(out, "nothere.pem: No such file or directory") != NULL);
	if (sb_test_failures > 0)
		fprintf(stderr, "  sbctl said: %s\n", out);
	sb_client_free(alice);
	router_close(r);
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: test_security_mtls PATH-TO-SWITCHBOARD PATH-TO-SBCTL\n");
		return 2;
	}
	DAEMON = argv[1];
	SBCTL = argv[2];
	signal(SIGPIPE, SIG_IGN);
	pump_limit_ms = 10000;
	if (certs_make() != 0) {
		fprintf(stderr,
			"cannot make certificates with openssl in %s (see make.log there)\n",
			at(""));
		return 1;
	}
	RUN(test_mtls_refusals);
	RUN(test_reload_swaps_allow_list);
	RUN(test_reload_races_accepts);
	RUN(test_secret_over_tls);
	RUN(test_daemon_reloads_on_sighup);
	RUN(test_sbctl_over_tls);
	certs_remove();
	return TEST_EXIT();
}
