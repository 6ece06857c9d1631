/* sb-tls-rr: what TLS costs the router. rr-64 (4 connections x 64 requests
 * in flight, 64-byte payloads, a closed loop) through the client library
 * against the daemon, plain and TLS interleaved, with each process's CPU. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <switchboard/client.h>

#include "bench.h"

enum { CONNS = 4, WINDOW = 64, RESPONDERS = 2, PAYLOAD = 64, RUNS_MAX = 64 };

struct opts {
	const char *router; /* the daemon */
	double warmup, duration;
	unsigned reps, shards;
	char dir[64]; /* certificates */
};

struct result {
	int tls;
	double rate;                 /* requests per second in the window */
	double router, resp, loader; /* CPU-seconds per million requests */
	double cores;                /* the router's CPU divided by the window */
	double rss;                  /* the router's peak RSS, MiB */
};

static const uint8_t payload[PAYLOAD] = {0xc4, PAYLOAD - 2}; /* bin8 of 62 zero bytes */
static uint64_t done;                                        /* requests completed */
static int stopping; /* the clients are being freed: their requests end */

static void usage(FILE *out)
{
	fprintf(out, "usage: sb-tls-rr [--router PATH] [--warmup S] [--duration S] [--reps N]\n"
		     "                 [--shards N]\n"
		     "rr-64 through the client library against the daemon, plain and TLS\n"
		     "interleaved (plain TLS plain TLS ...), with the router's CPU per request.\n"
		     "Defaults: build/release/bin/switchboard, 1 s warm-up, 5 s measured,\n"
		     "3 repetitions, 2 shards. Certificates are made with the openssl CLI.\n");
}

static int make_certs(struct opts *o)
{
	char cmd[1024];
	snprintf(o->dir, sizeof o->dir, "/tmp/sb-tls-rr-XXXXXX");
	if (mkdtemp(o->dir) == NULL)
		return -1;
	snprintf(cmd, sizeof cmd,
		 "(cd %s && K='-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes' && "
		 "openssl req -x509 $K -keyout ca.key -out ca.pem -days 2 -subj /CN=bench-ca && "
		 "openssl req $K -keyout server.key -out server.csr -subj /CN=router && "
		 "printf 'subjectAltName=IP:127.0.0.1\\n' > ext && "
		 "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
		 "-out server.pem -days 2 -extfile ext) >/dev/null 2>&1",
		 o->dir);
	return system(cmd) == 0 ? 0 : -1;
}

static struct sb_client *connect_to(const struct opts *o, uint16_t port, int tls, const char *role)
{
	struct sb_client_config cfg;
	char ca[128];
	int err = 0;

	snprintf(ca, sizeof ca, "%s/ca.pem", o->dir);
	sb_client_config_init(&cfg);
	cfg.port = port;
	cfg.role = strcmp(role, "service") == 0 ? SB_ROLE_SERVICE : SB_ROLE_CLIENT;
	cfg.tls = tls;
	cfg.tls_ca = tls ? ca : NULL;
	struct sb_client *c = sb_client_new(&cfg, &err);
	if (c == NULL) {
		fprintf(stderr, "sb-tls-rr: client: %s\n", sb_strerror(err));
		exit(1);
	}
	return c;
}

/* One poll over every client, then a process each. */
static void pump(struct sb_client **cs, int n, int wait)
{
	struct pollfd p[CONNS + RESPONDERS];
	for (int i = 0; i < n; i++)
		p[i] = (struct pollfd){.fd = sb_client_fd(cs[i]),
				       .events = sb_client_events(cs[i])};
	poll(p, (nfds_t)n, wait);
	for (int i = 0; i < n; i++)
		if (sb_client_process(cs[i], 0) < 0) {
			fprintf(stderr, "sb-tls-rr: a client gave up: %s\n",
				sb_client_last_error(cs[i]));
			exit(1);
		}
}

static int all_online(struct sb_client **cs, int n)
{
	for (int i = 0; i < n; i++)
		if (!sb_client_online(cs[i]))
			return 0;
	return 1;
}

static void echo(struct sb_call *call, void *ud)
{
	size_t n;
	const void *p = sb_call_payload(call, &n);
	(void)ud;
	sb_reply(call, "ok", p, n);
}

/* The responder, a process of its own: echoes until killed. */
static void responder(const struct opts *o, uint16_t port, int tls, int ready_fd)
{
	struct sb_client *cs[RESPONDERS];
	for (int i = 0; i < RESPONDERS; i++) {
		cs[i] = connect_to(o, port, tls, "service");
		sb_client_register(cs[i], "bench.echo", NULL, echo, NULL);
	}
	while (!all_online(cs, RESPONDERS))
		pump(cs, RESPONDERS, 10);
	if (write(ready_fd, "r", 1) != 1)
		_exit(1);
	for (;;)
		pump(cs, RESPONDERS, 100);
}

/* Closed loop: every final reply sends the next request (ud: the client). */
static void on_reply(const struct sb_reply *rep, void *ud)
{
	struct sb_client *c = ud;

	if (rep->more != SB_MORE_NONE || stopping)
		return;
	if (rep->err != 0) {
		fprintf(stderr, "sb-tls-rr: a request failed: %s (%s)\n", sb_strerror(rep->err),
			rep->outcome);
		exit(1);
	}
	done++;
	sb_request(c, "bench.echo", payload, sizeof payload, NULL, on_reply, c, NULL);
}

static void run(const struct opts *o, int tls, struct result *res)
{
	char shards[16], cert[128], key[128], line[256];
	int out = -1, ready[2];

	snprintf(shards, sizeof shards, "%u", o->shards);
	snprintf(cert, sizeof cert, "%s/server.pem", o->dir);
	snprintf(key, sizeof key, "%s/server.key", o->dir);
	char *argv[] = {(char *)o->router,
			"--port",
			"0",
			"--shards",
			shards,
			"--log-level",
			"0",
			tls ? "--tls-cert" : NULL,
			cert,
			"--tls-key",
			key,
			NULL};
	pid_t router = sbb_proc_spawn(argv, &out, 0);
	if (router < 0 || sbb_proc_read_line(out, line, sizeof line, 5000) != 0 ||
	    strstr(line, "127.0.0.1:") == NULL) {
		fprintf(stderr, "sb-tls-rr: %s did not start\n", o->router);
		exit(1);
	}
	uint16_t port = (uint16_t)atoi(strstr(line, "127.0.0.1:") + 10);

	if (pipe(ready) != 0)
		exit(1);
	pid_t resp = fork();
	if (resp == 0) {
		/* Dies with us: a run that fails must not leave it polling. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(ready[0]);
		responder(o, port, tls, ready[1]);
	}
	close(ready[1]);
	char r;
	if (read(ready[0], &r, 1) != 1) {
		fprintf(stderr, "sb-tls-rr: the responder did not come online\n");
		exit(1);
	}
	close(ready[0]);

	struct sb_client *cs[CONNS];
	for (int i = 0; i < CONNS; i++)
		cs[i] = connect_to(o, port, tls, "client");
	while (!all_online(cs, CONNS))
		pump(cs, CONNS, 10);
	done = 0;
	for (int i = 0; i < CONNS; i++)
		for (int k = 0; k < WINDOW; k++)
			sb_request(cs[i], "bench.echo", payload, sizeof payload, NULL, on_reply,
				   cs[i], NULL);
	uint64_t t0 = sbb_now_ns(), warm_end = t0 + (uint64_t)(o->warmup * 1e9);
	while (sbb_now_ns() < warm_end)
		pump(cs, CONNS, 100);
	uint64_t n0 = done, w0 = sbb_now_ns();
	double c_router = sbb_proc_cpu(router), c_resp = sbb_proc_cpu(resp),
	       c_self = sbb_proc_cpu(0);
	uint64_t end = w0 + (uint64_t)(o->duration * 1e9);
	while (sbb_now_ns() < end)
		pump(cs, CONNS, 100);
	uint64_t n1 = done, w1 = sbb_now_ns();
	double secs = (double)(w1 - w0) / 1e9, m = (double)(n1 - n0) / 1e6;
	res->tls = tls;
	res->rate = (double)(n1 - n0) / secs;
	res->router = (sbb_proc_cpu(router) - c_router) / m;
	res->cores = (sbb_proc_cpu(router) - c_router) / secs;
	res->resp = (sbb_proc_cpu(resp) - c_resp) / m;
	res->loader = (sbb_proc_cpu(0) - c_self) / m;
	res->rss = sbb_proc_peak_rss(router);
	stopping = 1;
	for (int i = 0; i < CONNS; i++)
		sb_client_free(cs[i]);
	stopping = 0;
	kill(resp, SIGKILL);
	waitpid(resp, NULL, 0);
	sbb_proc_stop(router);
	close(out);
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(const struct result *rs, unsigned n, int tls, size_t off)
{
	double v[RUNS_MAX];
	unsigned k = 0;
	for (unsigned i = 0; i < n; i++)
		if (rs[i].tls == tls)
			v[k++] = *(const double *)((const char *)&rs[i] + off);
	qsort(v, k, sizeof v[0], cmp);
	return k == 0 ? 0 : k % 2 ? v[k / 2] : (v[k / 2 - 1] + v[k / 2]) / 2;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"router", required_argument, NULL, 'r'},
		{"warmup", required_argument, NULL, 'w'},
		{"duration", required_argument, NULL, 'd'},
		{"reps", required_argument, NULL, 'n'},
		{"shards", required_argument, NULL, 's'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct opts o = {.router = "build/release/bin/switchboard",
			 .warmup = 1,
			 .duration = 5,
			 .reps = 3,
			 .shards = 2};
	struct result rs[RUNS_MAX];
	int opt;

	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 'r':
			o.router = optarg;
			break;
		case 'w':
			o.warmup = atof(optarg);
			break;
		case 'd':
			o.duration = atof(optarg);
			break;
		case 'n':
			o.reps = (unsigned)atoi(optarg);
			break;
		case 's':
			o.shards = (unsigned)atoi(optarg);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (o.reps == 0 || o.reps > RUNS_MAX / 2 || o.duration <= 0 || o.shards == 0) {
		usage(stderr);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (make_certs(&o) != 0) {
		fprintf(stderr, "sb-tls-rr: openssl could not make certificates in %s\n", o.dir);
		return 1;
	}
	printf("rr-64 through the client library: %d conns x %d in flight, %d B; %u shards; "
	       "%.0f s warm-up + %.0f s measured; plain and TLS interleaved, %u reps\n\n",
	       CONNS, WINDOW, PAYLOAD, o.shards, o.warmup, o.duration, o.reps);
	printf("| run | mode | req/s | router CPU-s/M | router cores | responder CPU-s/M | "
	       "generator CPU-s/M | router peak RSS MiB |\n|---|---|---|---|---|---|---|---|\n");
	unsigned n = 0;
	for (unsigned rep = 0; rep < o.reps; rep++)
		for (int tls = 0; tls <= 1; tls++, n++) {
			run(&o, tls, &rs[n]);
			printf("| %u | %s | %.0f | %.2f | %.2f | %.2f | %.2f | %.1f |\n", rep + 1,
			       tls ? "TLS" : "plain", rs[n].rate, rs[n].router, rs[n].cores,
			       rs[n].resp, rs[n].loader, rs[n].rss);
			fflush(stdout);
		}
	double rp = median(rs, n, 0, offsetof(struct result, rate));
	double rt = median(rs, n, 1, offsetof(struct result, rate));
	double cp = median(rs, n, 0, offsetof(struct result, router));
	double ct = median(rs, n, 1, offsetof(struct result, router));
	printf("\nmedians: plain %.0f req/s, %.2f router CPU-s/M; TLS %.0f req/s, %.2f router "
	       "CPU-s/M\nTLS/plain: req/s %.2fx, router CPU per request %.2fx\n",
	       rp, cp, rt, ct, rp > 0 ? rt / rp : 0, cp > 0 ? ct / cp : 0);
	char cmd[96];
	snprintf(cmd, sizeof cmd, "rm -rf %s", o.dir);
	return system(cmd) == 0 ? 0 : 1;
}
