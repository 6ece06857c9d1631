/* sb-cluster-hop: the prototypes behind docs/cluster.md's choice of how a
 * router talks to NATS. Two "routers" (processes) and a two-server NATS
 * cluster on loopback; router A's shard issues 64-byte requests that cross
 * the cluster to router B's shard, which answers. Only the way a router
 * reaches NATS differs between the modes:
 *
 *   inloop   the shard's own loop speaks NATS (core/common/nats.c)
 *   bridge   a bridge thread speaks NATS with the same code, and trades
 *            mail with the shard through the router's rings (mailbox.c)
 *   libnats  Debian's libnats (send-ASAP) in a bridge thread, its
 *            subscription callbacks mailing the shard
 *
 * Reported per mode: round trips per second, p50/p99 of the round trip,
 * and CPU-seconds per million round trips of both routers together and of
 * both NATS servers, read from /proc at the window's edges. Modes run
 * interleaved (A B C A B C), window 1 (latency) and window 64 (rate). */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef SB_HAVE_LIBNATS
#include <nats/nats.h>
#endif

#include <switchboard/error.h>

#include "bench.h"
#include "common/clock.h"
#include "common/nats.h"
#include "router/mailbox.h"

enum mode { M_INLOOP, M_BRIDGE, M_LIBNATS, M_COUNT };
static const char *const mode_name[] = {"inloop", "bridge", "libnats"};

enum { MAIL_REQ = 1, MAIL_REPLY };

#define REQ_SUBJECT "hop.req"
#define INBOX       "hop.inbox.a"

struct job { /* a request on router B, from the bridge to the shard and back */
	char reply[64];
	uint8_t data[64];
};

/* One prototype router: the shard (mailbox side 0) and, in the bridge
 * modes, the bridge (side 1), each with an eventfd to be woken by. */
struct router {
	enum mode mode;
	int requester; /* router A; else router B */
	const char *url;
	struct sb__mailbox *mb;
	int efd[2];
	struct sb__nats *nc;
#ifdef SB_HAVE_LIBNATS
	natsConnection *lnc;
#endif
	/* router A's shard */
	unsigned window;
	double warmup, duration;
	struct sbb_hist hist;
	uint64_t done, t_go, t_end;
	int measuring, finished;
};

static void die(const char *what)
{
	fprintf(stderr, "sb-cluster-hop: %s\n", what);
	_exit(1);
}

/* ---- mail between shard and bridge ---------------------------------------- */

static void mail(struct router *r, unsigned from, unsigned to, uint32_t type, uint64_t b, void *p)
{
	struct sb__mail m = {.type = type, .b = b, .p = p};
	int wake = 0;
	while (sb__mail_send(r->mb, from, to, &m, &wake) == SB_EOVERLOADED)
		sched_yield(); /* a prototype: the router keeps a backlog instead */
	if (wake)
		eventfd_write(r->efd[to], 1);
}

/* Blocks side `me` until mail or fd (if >= 0) is ready, at most ms. */
static short nap(struct router *r, unsigned me, int fd, short events, int ms)
{
	struct pollfd p[2] = {{.fd = r->efd[me], .events = POLLIN}, {.fd = fd, .events = events}};
	short rev = 0;
	eventfd_t v;
	if (!sb__mailbox_sleep(r->mb, me))
		ms = 0;
	if (poll(p, fd >= 0 ? 2 : 1, ms) > 0) {
		if (p[0].revents & POLLIN)
			eventfd_read(r->efd[me], &v);
		rev = fd >= 0 ? p[1].revents : 0;
	}
	sb__mailbox_awake(r->mb, me);
	return rev;
}

/* ---- router A's shard: the load, the clock, the histogram ------------------ */

static void request_data(uint8_t *d, uint64_t stamp)
{
	memset(d, 0xab, 64);
	memcpy(d, &stamp, sizeof stamp);
}

static void on_round_trip(struct router *r, uint64_t stamp)
{
	uint64_t now = sb__now_us();
	if (r->measuring) {
		sbb_hist_record(&r->hist, now - stamp);
		r->done++;
	}
}

/* Window edges, told to the parent on stdout so it reads /proc there. */
static void clock_tick(struct router *r)
{
	uint64_t now = sb__now_us();
	if (!r->measuring && !r->finished && now >= r->t_go) {
		r->measuring = 1;
		printf("go\n");
		fflush(stdout);
	} else if (r->measuring && now >= r->t_end) {
		r->measuring = 0;
		r->finished = 1;
		printf("done %llu %llu %llu\n", (unsigned long long)r->done,
		       (unsigned long long)sbb_hist_quantile(&r->hist, 0.5),
		       (unsigned long long)sbb_hist_quantile(&r->hist, 0.99));
		fflush(stdout);
	}
}

/* ---- inloop: the shard speaks NATS itself ---------------------------------- */

static void inloop_reply(void *ud, const struct sb__nats_msg *m)
{
	struct router *r = ud;
	uint64_t stamp;
	uint8_t d[64];
	if (m->data_len < 8)
		return;
	memcpy(&stamp, m->data, 8);
	on_round_trip(r, stamp);
	request_data(d, sb__now_us());
	sb__nats_pub(r->nc, REQ_SUBJECT, INBOX, NULL, 0, d, sizeof d);
}

static void inloop_serve(void *ud, const struct sb__nats_msg *m)
{
	struct router *r = ud;
	char reply[64];
	if (m->reply == NULL || m->reply_len >= sizeof reply)
		return;
	memcpy(reply, m->reply, m->reply_len);
	reply[m->reply_len] = '\0';
	sb__nats_pub(r->nc, reply, NULL, NULL, 0, m->data, m->data_len);
}

static void open_nc(struct router *r)
{
	struct sb__nats_cfg cfg = {
		.servers = r->url, .name = "sb-cluster-hop", .out_max = 8u << 20};
	char why[256];
	if (sb__nats_new(&cfg, &r->nc, why, sizeof why) != 0)
		die(why);
	for (uint64_t end = sb__now_ms() + 10000; !sb__nats_ready(r->nc) && sb__now_ms() < end;)
		sb__nats_poll(r->nc, 50);
	if (!sb__nats_ready(r->nc))
		die("cannot connect to NATS");
}

/* ---- bridge: our NATS code in a thread of its own -------------------------- */

static void bridge_reply(void *ud, const struct sb__nats_msg *m)
{
	struct router *r = ud;
	uint64_t stamp;
	if (m->data_len < 8)
		return;
	memcpy(&stamp, m->data, 8);
	mail(r, 1, 0, MAIL_REPLY, stamp, NULL);
}

static void bridge_serve(void *ud, const struct sb__nats_msg *m)
{
	struct router *r = ud;
	struct job *j = malloc(sizeof *j);
	if (j == NULL || m->reply == NULL || m->reply_len >= sizeof j->reply || m->data_len > 64) {
		free(j);
		return;
	}
	memcpy(j->reply, m->reply, m->reply_len);
	j->reply[m->reply_len] = '\0';
	memcpy(j->data, m->data, m->data_len);
	mail(r, 1, 0, MAIL_REQ, m->data_len, j);
}

static void *bridge_main(void *arg)
{
	struct router *r = arg;
	struct sb__mail in[64];
	for (;;) {
		unsigned n = sb__mail_recv(r->mb, 1, in, 64);
		for (unsigned i = 0; i < n; i++) {
			if (in[i].type == MAIL_REQ) { /* router A: publish a request */
				uint8_t d[64];
				request_data(d, in[i].b);
				sb__nats_pub(r->nc, REQ_SUBJECT, INBOX, NULL, 0, d, sizeof d);
			} else { /* router B: the shard's answer goes out */
				struct job *j = in[i].p;
				sb__nats_pub(r->nc, j->reply, NULL, NULL, 0, j->data, in[i].b);
				free(j);
			}
		}
		if (n > 0) {
			sb__nats_process(r->nc, 0, sb__now_ms());
			continue;
		}
		short rev = nap(r, 1, sb__nats_fd(r->nc), sb__nats_events(r->nc), 100);
		sb__nats_process(r->nc, rev, sb__now_ms());
	}
	return NULL;
}

/* ---- libnats: Debian's client in the bridge --------------------------------- */

#ifdef SB_HAVE_LIBNATS
static void libnats_reply(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *ud)
{
	uint64_t stamp;
	(void)nc, (void)sub;
	if (natsMsg_GetDataLength(msg) >= 8) {
		memcpy(&stamp, natsMsg_GetData(msg), 8);
		mail(ud, 1, 0, MAIL_REPLY, stamp, NULL);
	}
	natsMsg_Destroy(msg);
}

static void libnats_serve(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *ud)
{
	struct job *j = malloc(sizeof *j);
	const char *reply = natsMsg_GetReply(msg);
	int len = natsMsg_GetDataLength(msg);
	(void)nc, (void)sub;
	if (j != NULL && reply != NULL && strlen(reply) < sizeof j->reply && len <= 64) {
		snprintf(j->reply, sizeof j->reply, "%s", reply);
		memcpy(j->data, natsMsg_GetData(msg), (size_t)len);
		mail(ud, 1, 0, MAIL_REQ, (uint64_t)len, j);
	} else {
		free(j);
	}
	natsMsg_Destroy(msg);
}

static void *libnats_bridge_main(void *arg)
{
	struct router *r = arg;
	struct sb__mail in[64];
	for (;;) {
		unsigned n = sb__mail_recv(r->mb, 1, in, 64);
		for (unsigned i = 0; i < n; i++) {
			if (in[i].type == MAIL_REQ) {
				uint8_t d[64];
				request_data(d, in[i].b);
				natsConnection_PublishRequest(r->lnc, REQ_SUBJECT, INBOX, d, 64);
			} else {
				struct job *j = in[i].p;
				natsConnection_Publish(r->lnc, j->reply, j->data, (int)in[i].b);
				free(j);
			}
		}
		if (n == 0)
			nap(r, 1, -1, 0, 100);
	}
	return NULL;
}

static void open_libnats(struct router *r)
{
	natsOptions *o;
	natsSubscription *sub;
	if (natsOptions_Create(&o) != NATS_OK || natsOptions_SetURL(o, r->url) != NATS_OK ||
	    natsOptions_SetSendAsap(o, true) != NATS_OK ||
	    natsOptions_SetNoEcho(o, true) != NATS_OK ||
	    natsConnection_Connect(&r->lnc, o) != NATS_OK)
		die("libnats: cannot connect");
	if (r->requester) {
		if (natsConnection_Subscribe(&sub, r->lnc, INBOX, libnats_reply, r) != NATS_OK)
			die("libnats: subscribe");
	} else if (natsConnection_QueueSubscribe(&sub, r->lnc, REQ_SUBJECT, "hop", libnats_serve,
						 r) != NATS_OK) {
		die("libnats: subscribe");
	}
	natsConnection_Flush(r->lnc);
}
#endif

/* ---- a router process ------------------------------------------------------- */

/* The shard of a bridge mode: requests out (A) or answers (B) by mail. */
static void shard_by_mail(struct router *r)
{
	struct sb__mail in[64];
	if (r->requester)
		for (unsigned i = 0; i < r->window; i++)
			mail(r, 0, 1, MAIL_REQ, sb__now_us(), NULL);
	while (!r->finished) {
		unsigned n = sb__mail_recv(r->mb, 0, in, 64);
		for (unsigned i = 0; i < n; i++) {
			if (in[i].type == MAIL_REPLY) {
				on_round_trip(r, in[i].b);
				mail(r, 0, 1, MAIL_REQ, sb__now_us(), NULL);
			} else { /* router B: the handler answers at once */
				mail(r, 0, 1, MAIL_REPLY, in[i].b, in[i].p);
			}
		}
		if (r->requester)
			clock_tick(r);
		if (n == 0)
			nap(r, 0, -1, 0, 50);
	}
}

static void probe_reply(void *ud, int err, const struct sb__nats_msg *m)
{
	(void)m;
	*(int *)ud = err == 0 ? 1 : -1;
}

/* Until a request crosses the cluster and comes back: routes and
 * interest are in place before the clock starts. */
static void await_cluster(const char *url)
{
	struct router p = {.url = url};
	open_nc(&p);
	for (uint64_t end = sb__now_ms() + 15000; sb__now_ms() < end;) {
		int got = 0;
		sb__nats_request(p.nc, REQ_SUBJECT, NULL, 0, "probe----", 9, 1000, probe_reply,
				 &got);
		while (got == 0)
			sb__nats_poll(p.nc, 50);
		if (got == 1) {
			sb__nats_free(p.nc);
			return;
		}
		usleep(20000);
	}
	die("no responder across the cluster");
}

static void run_router(struct router *r)
{
	pthread_t t;
	r->mb = sb__mailbox_new(2, 4096);
	r->efd[0] = eventfd(0, EFD_NONBLOCK);
	r->efd[1] = eventfd(0, EFD_NONBLOCK);
	sbb_hist_reset(&r->hist);
	if (r->requester)
		await_cluster(r->url);
	r->t_go = sb__now_us() + (uint64_t)(r->warmup * 1e6);
	r->t_end = r->t_go + (uint64_t)(r->duration * 1e6);

	if (r->mode == M_LIBNATS) {
#ifdef SB_HAVE_LIBNATS
		open_libnats(r);
		pthread_create(&t, NULL, libnats_bridge_main, r);
#else
		die("built without libnats (apt-get install libnats-dev, then rebuild)");
#endif
	} else {
		open_nc(r);
		if (r->requester)
			sb__nats_sub(r->nc, INBOX, NULL,
				     r->mode == M_INLOOP ? inloop_reply : bridge_reply, r);
		else
			sb__nats_sub(r->nc, REQ_SUBJECT, "hop",
				     r->mode == M_INLOOP ? inloop_serve : bridge_serve, r);
		while (sb__nats_pending(r->nc) > 0)
			sb__nats_poll(r->nc, 10);
		if (r->mode == M_BRIDGE)
			pthread_create(&t, NULL, bridge_main, r);
	}
	if (!r->requester) {
		printf("ready\n");
		fflush(stdout);
	}
	if (r->mode != M_INLOOP) {
		shard_by_mail(r);
		_exit(0);
	}
	if (r->requester) {
		for (unsigned i = 0; i < r->window; i++) {
			uint8_t d[64];
			request_data(d, sb__now_us());
			sb__nats_pub(r->nc, REQ_SUBJECT, INBOX, NULL, 0, d, sizeof d);
		}
	}
	while (!r->finished) {
		sb__nats_poll(r->nc, 50);
		if (r->requester)
			clock_tick(r);
	}
	_exit(0);
}

/* ---- the parent: servers, routers, /proc -------------------------------------- */

static pid_t fork_router(struct router *r, int *out)
{
	int p[2];
	if (pipe(p) != 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(p[1], STDOUT_FILENO);
		close(p[0]);
		close(p[1]);
		run_router(r);
	}
	close(p[1]);
	*out = p[0];
	return pid;
}

static pid_t start_server(const char *path, uint16_t port, uint16_t cport, uint16_t other,
			  const char *name)
{
	char p[8], c[48], r[48];
	snprintf(p, sizeof p, "%u", port);
	snprintf(c, sizeof c, "nats://127.0.0.1:%u", cport);
	snprintf(r, sizeof r, "nats://127.0.0.1:%u", other);
	char *argv[] = {(char *)path,     "-a",  "127.0.0.1", "-p", p,          "-n", (char *)name,
			"--cluster_name", "hop", "--cluster", c,    "--routes", r,    NULL};
	return sbb_proc_spawn(argv, NULL, 1);
}

struct result {
	double rate, cpu_routers, cpu_servers;
	uint64_t p50, p99;
};

static int run_one(enum mode m, unsigned window, double duration, const char *url1,
		   const char *url2, const pid_t servers[2], struct result *res)
{
	struct router a = {.mode = m,
			   .requester = 1,
			   .url = url1,
			   .window = window,
			   .warmup = 1.0,
			   .duration = duration};
	struct router b = {.mode = m, .url = url2};
	char line[256];
	int oa, ob;
	double c0[4], c1[4];
	unsigned long long n, p50, p99;
	pid_t pb = fork_router(&b, &ob), pa;

	if (pb < 0 || sbb_proc_read_line(ob, line, sizeof line, 15000) != 0 ||
	    strcmp(line, "ready") != 0)
		return -1;
	pa = fork_router(&a, &oa);
	if (pa < 0 || sbb_proc_read_line(oa, line, sizeof line, 30000) != 0 ||
	    strcmp(line, "go") != 0)
		return -1;
	pid_t who[4] = {pa, pb, servers[0], servers[1]};
	for (int i = 0; i < 4; i++)
		c0[i] = sbb_proc_cpu(who[i]);
	if (sbb_proc_read_line(oa, line, sizeof line, (int)(duration * 1000) + 15000) != 0 ||
	    sscanf(line, "done %llu %llu %llu", &n, &p50, &p99) != 3)
		return -1;
	for (int i = 0; i < 4; i++)
		c1[i] = sbb_proc_cpu(who[i]);
	sbb_proc_stop(pa);
	sbb_proc_stop(pb);
	close(oa);
	close(ob);
	res->rate = (double)n / duration;
	res->p50 = p50;
	res->p99 = p99;
	res->cpu_routers = n ? (c1[0] - c0[0] + c1[1] - c0[1]) / (double)n * 1e6 : 0;
	res->cpu_servers = n ? (c1[2] - c0[2] + c1[3] - c0[3]) / (double)n * 1e6 : 0;
	return 0;
}

static int cmp_d(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;
	return a < b ? -1 : a > b;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_d);
	return v[n / 2];
}

int main(int argc, char **argv)
{
	double duration = 3;
	int reps = 3, modes[M_COUNT] = {1, 1, 1};
	const char *server = access("/usr/sbin/nats-server", X_OK) == 0 ? "/usr/sbin/nats-server"
									: "nats-server";
	static struct result res[M_COUNT][2][9];

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--duration") == 0 && i + 1 < argc) {
			duration = atof(argv[++i]);
		} else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
			reps = atoi(argv[++i]);
		} else if (strcmp(argv[i], "--modes") == 0 && i + 1 < argc) {
			const char *s = argv[++i];
			for (int k = 0; k < M_COUNT; k++)
				modes[k] = strstr(s, mode_name[k]) != NULL;
		} else {
			fprintf(stderr, "usage: sb-cluster-hop [--duration S] [--reps N] [--modes "
					"inloop,bridge,libnats]\n");
			return 2;
		}
	}
	if (reps < 1 || reps > 9 || duration <= 0)
		return 2;
#ifndef SB_HAVE_LIBNATS
	modes[M_LIBNATS] = 0;
#endif
	signal(SIGPIPE, SIG_IGN);
	uint16_t p1 = sbb_free_port(), p2 = sbb_free_port(), c1 = sbb_free_port(),
		 c2 = sbb_free_port();
	pid_t servers[2] = {start_server(server, p1, c1, c2, "hop1"),
			    start_server(server, p2, c2, c1, "hop2")};
	char url1[64], url2[64];
	snprintf(url1, sizeof url1, "nats://127.0.0.1:%u", p1);
	snprintf(url2, sizeof url2, "nats://127.0.0.1:%u", p2);
	usleep(500000); /* the routes are checked by the first probe */

	static const unsigned windows[2] = {1, 64};
	for (int rep = 0; rep < reps; rep++)
		for (int w = 0; w < 2; w++)
			for (int m = 0; m < M_COUNT; m++) {
				if (!modes[m])
					continue;
				if (run_one(m, windows[w], duration, url1, url2, servers,
					    &res[m][w][rep]) != 0) {
					fprintf(stderr, "sb-cluster-hop: %s window %u failed\n",
						mode_name[m], windows[w]);
					return 1;
				}
				fprintf(stderr, "  %s w=%u rep %d: %.0f/s p50 %llu us\n",
					mode_name[m], windows[w], rep + 1, res[m][w][rep].rate,
					(unsigned long long)res[m][w][rep].p50);
			}
	sbb_proc_stop(servers[0]);
	sbb_proc_stop(servers[1]);

	printf("one request/reply hop between two routers through a 2-server NATS cluster,\n"
	       "64-byte payloads; medians of %d interleaved runs of %.0f s\n\n",
	       reps, duration);
	printf("| mode | w=1 p50 / p99 (us) | w=1 routers CPU-s/M | w=64 round trips/s | "
	       "w=64 routers CPU-s/M | w=64 servers CPU-s/M |\n|---|---|---|---|---|---|\n");
	for (int m = 0; m < M_COUNT; m++) {
		double v[6][9];
		if (!modes[m])
			continue;
		for (int r = 0; r < reps; r++) {
			v[0][r] = (double)res[m][0][r].p50;
			v[1][r] = (double)res[m][0][r].p99;
			v[2][r] = res[m][0][r].cpu_routers;
			v[3][r] = res[m][1][r].rate;
			v[4][r] = res[m][1][r].cpu_routers;
			v[5][r] = res[m][1][r].cpu_servers;
		}
		printf("| %s | %.0f / %.0f | %.1f | %.0f | %.2f | %.2f |\n", mode_name[m],
		       median(v[0], reps), median(v[1], reps), median(v[2], reps),
		       median(v[3], reps), median(v[4], reps), median(v[5], reps));
	}
	return 0;
}
