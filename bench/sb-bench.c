/* sb-bench: the benchmark harness. Parses the command line, starts the
 * processes a target needs (router or NATS server, and the responder), runs
 * every workload on every target interleaved, and hands the results to the
 * report module. docs/performance.md tells how to read what it prints. */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <switchboard/proto.h>

#include "bench.h"

/* ---- workloads and targets ---------------------------------------------- */

static const struct sbb_workload presets[] = {
	{.name = "rr-64", .shape = SBB_RR, .conns = 4, .window = 64, .size_min = 64},
	{.name = "rr-1k", .shape = SBB_RR, .conns = 4, .window = 64, .size_min = 1024},
	{.name = "lat-64", .shape = SBB_RR, .conns = 1, .window = 1, .size_min = 64},
	/* window: how far the handler may lag behind the sender */
	{.name = "fire-64", .shape = SBB_FIRE, .conns = 1, .window = 32768, .size_min = 64},
	{.name = "stream-4k",
	 .shape = SBB_STREAM,
	 .conns = 4,
	 .window = 8,
	 .size_min = 64,
	 .chunks = 16,
	 .chunk_size = 4096},
	{.name = "fan-64", .shape = SBB_FAN, .conns = 4, .window = 16, .size_min = 64, .fan = 8},
	/* 10,000 connections, each sending about once every half second */
	{.name = "conn-10k",
	 .shape = SBB_RR,
	 .conns = 10000,
	 .window = 1,
	 .size_min = 64,
	 .rate = 20000},
};

int sbb_workload_preset(const char *name, struct sbb_workload *w)
{
	for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
		if (strcmp(presets[i].name, name) == 0) {
			*w = presets[i];
			w->size_max = w->size_min;
			w->warmup = 1;
			w->duration = 5;
			return 0;
		}
	return -1;
}

const char *sbb_workload_unit(const struct sbb_workload *w)
{
	return w->shape == SBB_FIRE ? "msg/s" : "req/s";
}

void sbb_workload_describe(const struct sbb_workload *w, char *buf, size_t cap)
{
	char size[48];
	if (w->size_max > w->size_min)
		snprintf(size, sizeof size, "%zu-%zu B uniform", w->size_min, w->size_max);
	else
		snprintf(size, sizeof size, "%zu B", w->size_min);
	int n = w->shape == SBB_FIRE
			? snprintf(buf, cap, "%u sender%s, handler up to %u behind, %s", w->conns,
				   w->conns > 1 ? "s" : "", w->window * w->conns, size)
			: snprintf(buf, cap, "%u conn%s x %u in flight, %s", w->conns,
				   w->conns > 1 ? "s" : "", w->window, size);
	if (n < 0 || (size_t)n >= cap)
		return;
	if (w->shape == SBB_STREAM)
		n += snprintf(buf + n, cap - (size_t)n, ", %u chunks of %zu B", w->chunks,
			      w->chunk_size);
	else if (w->shape == SBB_FAN)
		n += snprintf(buf + n, cap - (size_t)n, ", %u handlers each reply", w->fan);
	if (w->rate > 0 && (size_t)n < cap)
		snprintf(buf + n, cap - (size_t)n, ", open loop at %.0f req/s", w->rate);
}

int sbb_target_parse(const char *spec, struct sbb_target *t)
{
	static const struct {
		const char *scheme;
		enum sbb_target_kind kind;
	} schemes[] = {{"switchboard-cluster", SBB_T_XSB}, {"nats-cluster", SBB_T_XNATS},
		       {"switchboard-ws", SBB_T_WS},       {"switchboard", SBB_T_SWITCHBOARD},
		       {"direct", SBB_T_DIRECT},           {"nats", SBB_T_NATS}};
	memset(t, 0, sizeof *t);
	snprintf(t->spec, sizeof t->spec, "%s", spec);
	for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
		size_t n = strlen(schemes[i].scheme);
		if (strncmp(spec, schemes[i].scheme, n) != 0)
			continue;
		t->kind = schemes[i].kind;
		snprintf(t->label, sizeof t->label, "%s", schemes[i].scheme);
		snprintf(t->host, sizeof t->host, "127.0.0.1");
		if (spec[n] == 0)
			return 0;
		if (strncmp(spec + n, "://", 3) != 0 || t->kind == SBB_T_DIRECT ||
		    t->kind == SBB_T_WS || t->kind == SBB_T_XSB || t->kind == SBB_T_XNATS)
			return -1;
		const char *hp = spec + n + 3, *colon = strrchr(hp, ':');
		if (colon == NULL || colon == hp || (size_t)(colon - hp) >= sizeof t->host)
			return -1;
		snprintf(t->host, sizeof t->host, "%.*s", (int)(colon - hp), hp);
		long port = strtol(colon + 1, NULL, 10);
		if (port <= 0 || port > 65535)
			return -1;
		t->port = (uint16_t)port;
		/* Another server on the same host, told apart in the tables. */
		snprintf(t->label, sizeof t->label, "%s@%ld", schemes[i].scheme, port);
		return 0;
	}
	return -1;
}

/* ---- options ------------------------------------------------------------ */

struct opts {
	int compare;            /* "sb-bench compare": reps default to 3 */
	int json;               /* JSON on stdout instead of tables */
	int cluster;            /* --cluster: routers across a NATS cluster, side by side */
	int quiet;              /* no live line, no per-run lines */
	const char *report_dir; /* --report: index.html and results.json there */
	const char *shards;     /* router --shards, NULL = its default */
	unsigned idle_names;    /* --names: more names the responder registers */
	char max_regs[16];      /* router --max-registrations that fits them */
	char self[PATH_MAX];    /* this executable, re-run as the responder */
	char router[PATH_MAX];  /* the switchboard daemon */
	char nats[PATH_MAX];    /* nats-server */
};

/* Per-flag overrides applied to every workload named. */
struct overrides {
	long conns, window, chunks, chunk_size, fan;
	size_t size_min, size_max;
	double rate, warmup, duration;
};

static void usage(FILE *f)
{
	fprintf(f, "usage: sb-bench [compare] [OPTIONS]\n"
		   "\n"
		   "Runs workloads against targets side by side and reports throughput,\n"
		   "latency percentiles, and CPU-seconds per million requests and peak RSS\n"
		   "of every process it started. docs/performance.md explains the figures.\n"
		   "\n"
		   "  --workload W[,W..]   rr-64 (default), rr-1k, lat-64, fire-64, stream-4k,\n"
		   "                       fan-64, conn-10k (BENCH.md)\n"
		   "  --target T[,T..]     switchboard (default; starts the router), \n"
		   "                       switchboard-ws (the same router, the load over\n"
		   "                       its WebSocket edge; the responder on TCP),\n"
		   "                       switchboard://HOST:PORT, direct (no router: the\n"
		   "                       zero-hop bound), nats (starts nats-server),\n"
		   "                       nats://HOST:PORT, switchboard-cluster (two\n"
		   "                       routers with --cluster over a two-server NATS\n"
		   "                       cluster: the load on one, the responder on the\n"
		   "                       other), nats-cluster (the same two servers alone)\n"
		   "  --cluster            across routers: rr-64 and lat-64 (unless --workload\n"
		   "                       says otherwise) on switchboard-cluster, switchboard\n"
		   "                       and nats-cluster, with BENCH.md's cluster goals\n"
		   "  --conns C            load connections\n"
		   "  --window W           requests in flight per connection\n"
		   "  --size N | MIN:MAX   request payload bytes, fixed or uniform\n"
		   "  --chunks K           stream: chunk replies per request\n"
		   "  --chunk-size S       stream: bytes per chunk\n"
		   "  --fan N              fan: handlers\n"
		   "  --rate R             open loop at R requests/s in total; latency counts\n"
		   "                       from each request's intended send time\n"
		   "  --warmup S           seconds before measuring (default 1)\n"
		   "  --duration S         seconds measured (default 5)\n"
		   "  --reps N             repetitions, interleaved over targets (default 1,\n"
		   "                       compare: 3)\n"
		   "  --shards N           router shards (default: the router's own)\n"
		   "  --names N            the responder registers N more names\n"
		   "                       (bench.idle.0, ...) that no load is sent to: the\n"
		   "                       route table's size (switchboard targets; the\n"
		   "                       router sb-bench starts allows them)\n"
		   "  --router PATH        switchboard daemon (default: next to sb-bench)\n"
		   "  --nats-server PATH   nats-server (default: from PATH or /usr/sbin)\n"
		   "  --json               every figure and the configuration as JSON\n"
		   "  --report DIR         DIR/index.html (plots) and DIR/results.json\n"
		   "  --quiet              no progress on stderr\n"
		   "\n"
		   "compare: the same, 3 repetitions by default, medians (min-max) and\n"
		   "ratios against the first target, e.g.\n"
		   "  sb-bench compare --workload rr-64 --target switchboard,direct,nats\n"
		   "\n"
		   "sb-bench conns --help: idle connections and names held open on a\n"
		   "running server, for what they cost it\n");
}

static int parse_size(const char *s, size_t *v)
{
	char *end;
	double d = strtod(s, &end);
	if (*end == 'k' || *end == 'K')
		d *= 1024, end++;
	if (*end != 0 && *end != ':')
		return -1;
	*v = (size_t)d;
	return d > 0 ? 0 : -1;
}

static void find_programs(struct opts *o)
{
	ssize_t n = readlink("/proc/self/exe", o->self, sizeof o->self - 1);
	o->self[n > 0 ? n : 0] = 0;
	char dir[PATH_MAX];
	snprintf(dir, sizeof dir, "%s", o->self);
	snprintf(o->router, sizeof o->router, "%s/switchboard", dirname(dir));
	snprintf(o->nats, sizeof o->nats, "nats-server");
	/* Debian installs nats-server in /usr/sbin, which a user's PATH often lacks. */
	if (access("/usr/sbin/nats-server", X_OK) == 0)
		snprintf(o->nats, sizeof o->nats, "/usr/sbin/nats-server");
}

static int split_list(char *s, char **out, unsigned max)
{
	unsigned n = 0;
	for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ",")) {
		if (n == max)
			return -1;
		out[n++] = tok;
	}
	return (int)n;
}

/* ---- one run ------------------------------------------------------------ */

static const char *fan_skip_reason(const struct sbb_target *t)
{
	if (t->kind == SBB_T_DIRECT)
		return "fan-64: no meaning for direct (one responder, nothing fans out)";
	return NULL;
}

/* Waits until a server accepts connections; NATS cannot tell us otherwise. */
static int wait_listening(const char *host, uint16_t port)
{
	for (int i = 0; i < 500; i++) {
		int fd = sbb_dial(host, port);
		if (fd >= 0) {
			close(fd);
			return 0;
		}
		struct timespec ts = {0, 10000000};
		nanosleep(&ts, NULL);
	}
	return -1;
}

static void add_proc(struct sbb_result *r, const char *role, pid_t pid)
{
	struct sbb_proc *p = &r->proc[r->nprocs++];
	snprintf(p->role, sizeof p->role, "%s", role);
	p->pid = pid;
}

/* The router; with @p cluster ("nats://...") joined to a NATS cluster. */
static int start_router(const struct opts *o, struct sbb_result *r, pid_t *pid, int *out,
			uint16_t *port, uint16_t *ws_port, const char *cluster)
{
	char line[256];
	/* The load all comes from 127.0.0.1: the router's limit per address
	 * (1,024 by default) would refuse conn-10k's connections past it. */
	char *argv[20] = {
		(char *)o->router,      "--port", "0", "--log-level", "0", "--drain-ms", "100",
		"--max-conns-per-addr", "0"};
	int n = 9;
	if (ws_port != NULL) {
		argv[n++] = "--ws-port";
		argv[n++] = "0";
	}
	if (o->shards) {
		argv[n++] = "--shards";
		argv[n++] = (char *)o->shards;
	}
	if (o->idle_names > 0) {
		argv[n++] = "--max-registrations";
		argv[n++] = (char *)o->max_regs;
	}
	if (cluster != NULL) {
		argv[n++] = "--cluster";
		argv[n++] = (char *)cluster;
	}
	argv[n] = NULL;
	*pid = sbb_proc_spawn(argv, out, 0);
	if (*pid < 0 || sbb_proc_read_line(*out, line, sizeof line, 5000) != 0 ||
	    strstr(line, ":") == NULL) {
		snprintf(r->note, sizeof r->note, "the router (%s) did not start", o->router);
		return -1;
	}
	*port = (uint16_t)atoi(strrchr(line, ':') + 1);
	if (ws_port != NULL) {
		if (sbb_proc_read_line(*out, line, sizeof line, 5000) != 0 ||
		    strstr(line, "WebSocket") == NULL) {
			snprintf(r->note, sizeof r->note, "the router (%s) has no WebSocket edge",
				 o->router);
			return -1;
		}
		*ws_port = (uint16_t)atoi(strrchr(line, ':') + 1);
	}
	add_proc(r, "switchboard", *pid);
	return 0;
}

static int start_nats(const struct opts *o, struct sbb_result *r, pid_t *pid, uint16_t *port)
{
	char p[8];
	*port = sbb_free_port();
	snprintf(p, sizeof p, "%u", *port);
	char *argv[] = {(char *)o->nats, "-a", "127.0.0.1", "-p", p, NULL};
	*pid = sbb_proc_spawn(argv, NULL, 1);
	if (*pid < 0 || wait_listening("127.0.0.1", *port) != 0) {
		snprintf(r->note, sizeof r->note,
			 "nats-server (%s) did not start: tools/dev bench-setup installs it",
			 o->nats);
		return -1;
	}
	add_proc(r, "nats-server", *pid);
	return 0;
}

/* Two nats-servers as one cluster (routes both ways), as docs/cluster.md's
 * prototype runs them; url[i] is server i's client URL. */
static int start_nats_cluster(const struct opts *o, struct sbb_result *r, pid_t pid[2],
			      uint16_t port[2], char url[2][64])
{
	uint16_t cport[2];
	for (int i = 0; i < 2; i++) {
		port[i] = sbb_free_port();
		cport[i] = sbb_free_port();
	}
	for (int i = 0; i < 2; i++) {
		char p[8], own[64], other[64];
		snprintf(p, sizeof p, "%u", port[i]);
		snprintf(own, sizeof own, "nats://127.0.0.1:%u", cport[i]);
		snprintf(other, sizeof other, "nats://127.0.0.1:%u", cport[1 - i]);
		snprintf(url[i], 64, "nats://127.0.0.1:%u", port[i]);
		char *argv[] = {
			(char *)o->nats, "-a", "127.0.0.1", "-p",  p,   "--cluster_name", "sbbench",
			"--cluster",     own,  "--routes",  other, NULL};
		pid[i] = sbb_proc_spawn(argv, NULL, 1);
		if (pid[i] < 0 || wait_listening("127.0.0.1", port[i]) != 0) {
			snprintf(
				r->note, sizeof r->note,
				"nats-server (%s) did not start: tools/dev bench-setup installs it",
				o->nats);
			return -1;
		}
		add_proc(r, "nats-server", pid[i]);
	}
	return 0;
}

/* Sends one bench.echo request on c and reads for up to @p ms: 1 if a
 * reply (any) came back, 0 if none or an ERROR (no handler yet), -1 if the
 * connection broke. */
static int probe_once(struct sbb_conn *c, int nats, uint64_t id, int ms)
{
	uint8_t buf[4096];
	if (nats) {
		uint8_t *d = sbb_nats_pub(c, "bench.echo", 10, "_INBOX.sbbprobe", 15, 16);
		memset(d, 0, 16);
	} else {
		struct sb_msg m = {.kind = SB_REQUEST, .id = id, .timeout_ms = 2000};
		m.name = (struct sb_view){(const uint8_t *)"bench.echo", 10};
		sbb_sb_stamped(c, &m, 0, 16);
	}
	if (sbb_conn_flush_all(c) != 0)
		return -1;
	uint64_t end = sbb_now_ns() + (uint64_t)ms * 1000000;
	while (sbb_now_ns() < end) {
		ssize_t n = sbb_recv_wait(c->fd, buf, sizeof buf,
					  (int)((end - sbb_now_ns()) / 1000000) + 1);
		if (n <= 0)
			return 0;
		if (nats) { /* nothing but our probes' replies comes to the inbox */
			if (memmem(buf, (size_t)n, "MSG _INBOX.sbbprobe", 19) != NULL)
				return 1;
			continue;
		}
		const uint8_t *p = buf;
		size_t len = (size_t)n;
		struct sb_view f;
		while (sb_splitter_next(c->sp, &p, &len, &f, NULL) == 1) {
			struct sb_msg m;
			if (sb_decode(f.ptr, f.len, 0, &m, NULL) != 0)
				return -1;
			if (m.kind == SB_REPLY && m.id == id)
				return 1;
			if (m.kind == SB_ERROR && m.id == id)
				return 0;
		}
	}
	return 0;
}

/* Until a request from the load's side reaches the responder on the other
 * side and comes back: the responder's interest (its SUB, or router B's
 * subscription for its registration) reaches the first server shortly
 * after it is made, and a request sent before is lost (NATS) or answered
 * `no handler` (the router). At most 20 s. */
static int await_crossing(struct sbb_result *r, int nats, uint16_t port)
{
	struct sbb_conn c;
	int ok = 0;
	sbb_conn_init(&c, -1, 0);
	if (nats) {
		if (sbb_nats_connect(&c, "127.0.0.1", port) != 0)
			goto out;
		sbb_out_put(&c, "SUB _INBOX.sbbprobe 1\r\n", 23);
		if (sbb_nats_sync(&c) != 0)
			goto out;
	} else if ((c.fd = sbb_dial("127.0.0.1", port)) < 0 || sbb_sb_hello(&c, "client") != 0) {
		goto out;
	}
	uint64_t end = sbb_now_ns() + 20000000000ull;
	for (uint64_t id = 1; !ok && sbb_now_ns() < end; id++) {
		int rc = probe_once(&c, nats, id, 200);
		if (rc < 0)
			break;
		ok = rc;
		if (!ok) { /* `no handler` comes at once: do not spin */
			struct timespec ts = {0, 20000000};
			nanosleep(&ts, NULL);
		}
	}
out:
	sbb_conn_free(&c);
	if (!ok)
		snprintf(r->note, sizeof r->note,
			 "no request crossed the cluster to the responder within 20 s");
	return ok ? 0 : -1;
}

static int start_responder(const struct opts *o, struct sbb_result *r, const char *host,
			   uint16_t *port, int stats_fd, pid_t *pid, int *out)
{
	const struct sbb_workload *w = &r->work;
	char hp[96], chunks[16], csize[24], fan[16], sfd[16], idle[16], line[64];
	snprintf(hp, sizeof hp, "%s:%u", host, *port);
	snprintf(chunks, sizeof chunks, "%u", w->shape == SBB_STREAM ? w->chunks : 0);
	snprintf(csize, sizeof csize, "%zu", w->chunk_size);
	snprintf(fan, sizeof fan, "%u", w->shape == SBB_FAN ? w->fan : 0);
	snprintf(sfd, sizeof sfd, "%d", stats_fd);
	snprintf(idle, sizeof idle, "%u", o->idle_names);
	int direct = r->target.kind == SBB_T_DIRECT;
	char *argv[] = {(char *)o->self,
			"responder",
			"--proto",
			r->target.kind == SBB_T_NATS || r->target.kind == SBB_T_XNATS ? "nats"
										      : "sb",
			"--chunks",
			chunks,
			"--chunk-size",
			csize,
			"--fan",
			fan,
			"--names",
			idle,
			"--stats-fd",
			sfd,
			direct ? "--listen" : "--connect",
			direct ? NULL : hp,
			NULL};
	*pid = sbb_proc_spawn(argv, out, 0);
	/* 100,000 names take seconds to register on a loaded machine. */
	int wait_ms = 5000 + (int)(o->idle_names / 10);
	if (*pid < 0 || sbb_proc_read_line(*out, line, sizeof line, wait_ms) != 0 ||
	    strncmp(line, "ready ", 6) != 0) {
		snprintf(r->note, sizeof r->note, "the responder did not start");
		return -1;
	}
	if (direct)
		*port = (uint16_t)atoi(line + 6);
	add_proc(r, "responder", *pid);
	return 0;
}

static void run_one(const struct opts *o, struct sbb_result *r)
{
	const struct sbb_target *t = &r->target;
	pid_t server = -1, responder = -1, server2[3] = {-1, -1, -1};
	int server_out = -1, responder_out = -1, server2_out = -1;
	uint16_t port = t->port, ws_port = 0, rport = 0;
	uint16_t nport[2] = {0, 0}, port2 = 0;
	char url[2][64];
	const char *host = t->host;
	struct sbb_stats *stats = MAP_FAILED;
	const char *skip = r->work.shape == SBB_FAN ? fan_skip_reason(t) : NULL;
	if (skip) {
		r->status = SBB_SKIPPED;
		snprintf(r->note, sizeof r->note, "%s", skip);
		return;
	}
	r->status = SBB_FAILED;
	int stats_fd = -1;
	if (t->kind == SBB_T_SWITCHBOARD && port == 0 &&
	    start_router(o, r, &server, &server_out, &port, NULL, NULL) != 0)
		goto out;
	if (t->kind == SBB_T_WS &&
	    start_router(o, r, &server, &server_out, &port, &ws_port, NULL) != 0)
		goto out;
	if (t->kind == SBB_T_NATS && port == 0 && start_nats(o, r, &server, &port) != 0)
		goto out;
	/* Across a cluster: the load on the first router (or server), the
	 * responder on the second, so every request crosses NATS's route. */
	if ((t->kind == SBB_T_XSB || t->kind == SBB_T_XNATS) &&
	    start_nats_cluster(o, r, server2, nport, url) != 0)
		goto out;
	if (t->kind == SBB_T_XNATS) {
		port = nport[0];
		rport = nport[1];
	}
	if (t->kind == SBB_T_XSB &&
	    (start_router(o, r, &server, &server_out, &port, NULL, url[0]) != 0 ||
	     start_router(o, r, &server2[2], &server2_out, &port2, NULL, url[1]) != 0))
		goto out;
	if (t->kind == SBB_T_XSB)
		rport = port2;
	if (rport == 0)
		rport = port;
	/* Made after the server started and without MFD_CLOEXEC: only the
	 * responder inherits it, and maps the same page. */
	stats_fd = memfd_create("sb-bench-stats", 0);
	if (stats_fd < 0 || ftruncate(stats_fd, sizeof *stats) != 0)
		goto out;
	stats = mmap(NULL, sizeof *stats, PROT_READ | PROT_WRITE, MAP_SHARED, stats_fd, 0);
	if (stats == MAP_FAILED)
		goto out;
	if (start_responder(o, r, host, &rport, stats_fd, &responder, &responder_out) != 0)
		goto out;
	if (t->kind == SBB_T_DIRECT)
		port = rport;
	if ((t->kind == SBB_T_XSB || t->kind == SBB_T_XNATS) &&
	    await_crossing(r, t->kind == SBB_T_XNATS, port) != 0)
		goto out;
	add_proc(r, "sb-bench", 0);
	r->status = SBB_OK;
	struct sbb_run run = {
		.work = &r->work,
		.drv = t->kind == SBB_T_NATS || t->kind == SBB_T_XNATS ? &sbb_drv_nats
		       : t->kind == SBB_T_WS                           ? &sbb_drv_ws
								       : &sbb_drv_sb,
		.host = host,
		.port = t->kind == SBB_T_WS ? ws_port : port,
		.stats = stats,
		.progress = !o->quiet && isatty(STDERR_FILENO),
		.label = t->label,
	};
	sbb_gen_run(&run, r);
out:
	sbb_proc_stop(responder);
	sbb_proc_stop(server);
	for (int i = 2; i >= 0; i--) /* the routers before their NATS servers */
		sbb_proc_stop(server2[i]);
	if (server2_out >= 0)
		close(server2_out);
	if (responder_out >= 0)
		close(responder_out);
	if (server_out >= 0)
		close(server_out);
	if (stats != MAP_FAILED)
		munmap(stats, sizeof *stats);
	if (stats_fd >= 0)
		close(stats_fd);
}

/* One line per finished run on stderr: what the live line showed stays on
 * the screen. */
static void log_run(const struct sbb_result *r)
{
	fprintf(stderr, "sb-bench: %-9s %-12s rep %u: ", r->work.name, r->target.label, r->rep + 1);
	if (r->status != SBB_OK) {
		fprintf(stderr, "%s: %s\n", r->status == SBB_SKIPPED ? "skipped" : "FAILED",
			r->note);
		return;
	}
	fprintf(stderr, "%.0f %s", (double)r->done / r->secs, sbb_workload_unit(&r->work));
	if (r->hist)
		fprintf(stderr, ", p50 %.0f us, p99 %.0f us",
			(double)sbb_hist_quantile(r->hist, 0.5) / 1e3,
			(double)sbb_hist_quantile(r->hist, 0.99) / 1e3);
	fprintf(stderr, "\n");
}

/* ---- main --------------------------------------------------------------- */

static int apply(struct sbb_workload *w, const struct overrides *v)
{
	if (v->conns)
		w->conns = (unsigned)v->conns;
	if (v->window)
		w->window = (unsigned)v->window;
	if (v->size_min)
		w->size_min = v->size_min, w->size_max = v->size_max;
	if (v->chunks)
		w->chunks = (unsigned)v->chunks;
	if (v->chunk_size)
		w->chunk_size = (size_t)v->chunk_size;
	if (v->fan)
		w->fan = (unsigned)v->fan;
	if (v->rate >= 0)
		w->rate = v->rate;
	if (v->warmup >= 0)
		w->warmup = v->warmup;
	if (v->duration > 0)
		w->duration = v->duration;
	/* The stamp must fit: 8 bytes, after a 5-byte bin header on the wire. */
	if (w->size_min < 16 || w->size_max > (512u << 10) || w->conns == 0 || w->window == 0 ||
	    (w->shape == SBB_STREAM && (w->chunk_size < 16 || w->chunk_size > (512u << 10))) ||
	    (w->shape == SBB_FAN && w->fan == 0) || w->duration > SBB_MAX_SECONDS - 1)
		return -1;
	return 0;
}

int main(int argc, char **argv)
{
	static struct opts o;
	static struct sbb_campaign cp;
	struct overrides v = {.rate = -1, .warmup = -1};
	char *wlist = "rr-64", *tlist = "switchboard", *names[8];
	long reps = 0;
	int wlist_given = 0;
	if (argc > 1 && strcmp(argv[1], "responder") == 0)
		return sbb_responder_main(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "conns") == 0)
		return sbb_conns_main(argc - 1, argv + 1);
	size_t n = (size_t)snprintf(cp.command, sizeof cp.command, "sb-bench");
	for (int i = 1; i < argc && n < sizeof cp.command; i++)
		n += (size_t)snprintf(cp.command + n, sizeof cp.command - n, " %s", argv[i]);
	if (argc > 1 && strcmp(argv[1], "compare") == 0) {
		o.compare = 1;
		argv++, argc--;
	}
	static const struct option lopts[] = {
		{"workload", required_argument, NULL, 'w'},
		{"target", required_argument, NULL, 't'},
		{"conns", required_argument, NULL, 'c'},
		{"window", required_argument, NULL, 'W'},
		{"size", required_argument, NULL, 'z'},
		{"chunks", required_argument, NULL, 'k'},
		{"chunk-size", required_argument, NULL, 'K'},
		{"fan", required_argument, NULL, 'f'},
		{"rate", required_argument, NULL, 'r'},
		{"warmup", required_argument, NULL, 'u'},
		{"duration", required_argument, NULL, 'd'},
		{"reps", required_argument, NULL, 'n'},
		{"shards", required_argument, NULL, 's'},
		{"names", required_argument, NULL, 'm'},
		{"router", required_argument, NULL, 'R'},
		{"nats-server", required_argument, NULL, 'N'},
		{"json", no_argument, NULL, 'j'},
		{"cluster", no_argument, NULL, 'C'},
		{"report", required_argument, NULL, 'o'},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	find_programs(&o);
	int c;
	while ((c = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
		switch (c) {
		case 'w':
			wlist = optarg;
			wlist_given = 1;
			break;
		case 't':
			tlist = optarg;
			break;
		case 'c':
			v.conns = atol(optarg);
			break;
		case 'W':
			v.window = atol(optarg);
			break;
		case 'z':
			if (parse_size(optarg, &v.size_min) != 0)
				goto bad;
			v.size_max = v.size_min;
			if (strchr(optarg, ':') && parse_size(strchr(optarg, ':') + 1, &v.size_max))
				goto bad;
			break;
		case 'k':
			v.chunks = atol(optarg);
			break;
		case 'K': {
			size_t s;
			if (parse_size(optarg, &s) != 0)
				goto bad;
			v.chunk_size = (long)s;
			break;
		}
		case 'f':
			v.fan = atol(optarg);
			break;
		case 'r':
			v.rate = atof(optarg);
			break;
		case 'u':
			v.warmup = atof(optarg);
			break;
		case 'd':
			v.duration = atof(optarg);
			break;
		case 'n':
			reps = atol(optarg);
			break;
		case 's':
			o.shards = optarg;
			break;
		case 'm':
			o.idle_names = (unsigned)strtoul(optarg, NULL, 10);
			/* bench.echo and bench.fire share the connection */
			snprintf(o.max_regs, sizeof o.max_regs, "%u", o.idle_names + 2);
			break;
		case 'R':
			snprintf(o.router, sizeof o.router, "%s", optarg);
			break;
		case 'N':
			snprintf(o.nats, sizeof o.nats, "%s", optarg);
			break;
		case 'j':
			o.json = 1;
			break;
		case 'C':
			o.cluster = 1;
			break;
		case 'o':
			o.report_dir = optarg;
			break;
		case 'q':
			o.quiet = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			goto bad;
		}
	}
	if (optind != argc)
		goto bad;
	if (o.cluster) { /* split_list() writes into the lists: they must be ours */
		static char cw[] = "rr-64,lat-64",
			    ct[] = "switchboard-cluster,switchboard,nats-cluster";
		if (strcmp(tlist, "switchboard") != 0) {
			fprintf(stderr, "sb-bench: --cluster picks its own targets\n");
			goto bad;
		}
		if (!wlist_given)
			wlist = cw;
		tlist = ct;
	}
	int nw = split_list(wlist, names, 8);
	for (int i = 0; i < nw; i++) {
		if (sbb_workload_preset(names[i], &cp.work[i]) != 0) {
			fprintf(stderr, "sb-bench: unknown workload %s\n", names[i]);
			goto bad;
		}
		if (apply(&cp.work[i], &v) != 0) {
			fprintf(stderr,
				"sb-bench: %s: sizes 16 B..512 KiB, conns and window "
				"at least 1, duration under 10 min\n",
				names[i]);
			goto bad;
		}
	}
	int nt = split_list(tlist, names, 8);
	for (int i = 0; i < nt; i++)
		if (sbb_target_parse(names[i], &cp.target[i]) != 0) {
			fprintf(stderr, "sb-bench: bad target %s\n", names[i]);
			goto bad;
		}
	if (nw <= 0 || nt <= 0)
		goto bad;
	snprintf(cp.router, sizeof cp.router, "%s", o.router);
	snprintf(cp.nats, sizeof cp.nats, "%s", o.nats);
	snprintf(cp.shards, sizeof cp.shards, "%s", o.shards ? o.shards : "");
	cp.nwork = (unsigned)nw;
	cp.ntarget = (unsigned)nt;
	cp.reps = reps > 0 ? (unsigned)reps : o.compare ? 3 : 1;
	cp.res = calloc((size_t)cp.nwork * cp.reps * cp.ntarget, sizeof *cp.res);
	if (cp.res == NULL)
		return 1;
	signal(SIGPIPE, SIG_IGN);
	/* conn-10k needs a descriptor per connection, and the router's limit
	 * is inherited from ours. */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}

	/* Interleaved A B C A B C: drift in the machine's speed then lands on
	 * every target alike instead of on whichever ran last. */
	for (unsigned w = 0; w < cp.nwork; w++)
		for (unsigned rep = 0; rep < cp.reps; rep++)
			for (unsigned t = 0; t < cp.ntarget; t++) {
				struct sbb_result *r = sbb_campaign_at(&cp, w, rep, t);
				r->work = cp.work[w];
				r->target = cp.target[t];
				r->rep = rep;
				if (rep > 0 &&
				    sbb_campaign_at(&cp, w, 0, t)->status == SBB_SKIPPED) {
					*r = *sbb_campaign_at(&cp, w, 0, t);
					r->rep = rep;
					continue;
				}
				run_one(&o, r);
				/* Progress only on a terminal; why a run did not
				 * happen is news wherever stderr goes. */
				if (!o.quiet && (isatty(STDERR_FILENO) || r->status != SBB_OK))
					log_run(r);
			}

	if (o.json) {
		sbb_report_json(stdout, &cp);
	} else if (!o.compare && cp.reps == 1 && cp.ntarget == 1) {
		for (unsigned w = 0; w < cp.nwork; w++)
			sbb_report_run(stdout, sbb_campaign_at(&cp, w, 0, 0));
	} else {
		sbb_report_compare(stdout, &cp);
	}
	if (o.report_dir && sbb_report_html(o.report_dir, &cp) != 0) {
		fprintf(stderr, "sb-bench: cannot write the report in %s: %s\n", o.report_dir,
			strerror(errno));
		return 1;
	}
	int failed = 0;
	for (size_t i = 0; i < (size_t)cp.nwork * cp.reps * cp.ntarget; i++)
		failed |= cp.res[i].status == SBB_FAILED;
	return failed;
bad:
	usage(stderr);
	return 2;
}
