/* sb-bench conns: holds many idle connections (and, if asked, many registered
 * names) open on a router or a NATS server, so that what they cost the
 * server can be read from /proc while nothing else moves
 * (docs/performance.md, "How cost grows"). Each connection completes its
 * handshake (HELLO and WELCOME; for NATS, CONNECT then PING and PONG) and
 * then says nothing, or (--conn-names) first registers a few names of its
 * own, so that closing it costs what a departing service costs. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <switchboard/proto.h>

#include "bench.h"

struct opts {
	const char *host;
	uint16_t port;
	int nats;            /* NATS protocol, else switchboard frames */
	unsigned conns;      /* idle connections */
	unsigned per_src;    /* connections per source address */
	unsigned names;      /* names registered, on the service connections */
	unsigned per_svc;    /* names per service connection */
	const char *prefix;  /* names are PREFIX0, PREFIX1, ... */
	unsigned conn_names; /* names each of the `conns` registers, as a service */
	double hold;         /* seconds to hold after "ready", 0 = until a signal */
};

static void usage(FILE *f)
{
	fprintf(f, "usage: sb-bench conns --port P [--host H] [--proto sb|nats] [--conns N]\n"
		   "                      [--per-source K] [--names N] [--names-per-conn M]\n"
		   "                      [--prefix P] [--conn-names R] [--hold S]\n"
		   "Opens N connections to H:P (default 127.0.0.1), each through its\n"
		   "handshake, then idle; K per source address 127.0.0.1, 127.0.0.2, ...\n"
		   "(default 20000: one address has ~28,000 ports per destination). With\n"
		   "--names, service connections register N names P0, P1, ... (default\n"
		   "prefix growth.), M per connection (default: all on one). With\n"
		   "--conn-names, each of the N connections is a service and registers R\n"
		   "names of its own, PcI.0 ... PcI.R-1 for connection I. Prints\n"
		   "\"ready N\" when all are open and holds them for S seconds, or until\n"
		   "SIGINT or SIGTERM. The descriptor limit is raised as far as allowed.\n");
}

static void source_of(const struct opts *o, unsigned i, char *buf, size_t cap)
{
	unsigned s = i / o->per_src + 1; /* 127.0.0.1 first */
	snprintf(buf, cap, "127.%u.%u.%u", (s >> 16) & 255, (s >> 8) & 255, s & 255);
}

/* One connection through its handshake (and, with --conn-names, its
 * names, connection i's); its buffers are freed, its descriptor kept.
 * @return the descriptor, or -1. */
static int open_idle(const struct opts *o, const char *src, const char *role, unsigned i)
{
	struct sbb_conn c;
	sbb_conn_init(&c, -1, 0);
	int ok;
	if (o->nats) {
		static const char hello[] = "CONNECT {\"verbose\":false,\"pedantic\":false,"
					    "\"name\":\"sb-bench-conns\"}\r\n";
		c.fd = sbb_dial_from(src, o->host, o->port);
		sbb_out_put(&c, hello, sizeof hello - 1);
		ok = c.fd >= 0 && sbb_nats_sync(&c) == 0;
	} else {
		char prefix[160];
		snprintf(prefix, sizeof prefix, "%sc%u.", o->prefix, i);
		c.fd = sbb_dial_from(src, o->host, o->port);
		ok = sbb_sb_hello(&c, role) == 0 &&
		     (o->conn_names == 0 ||
		      sbb_sb_register_many(&c, prefix, 0, o->conn_names) == 0);
	}
	int fd = c.fd;
	c.fd = -1;
	sbb_conn_free(&c);
	if (!ok && fd >= 0)
		close(fd);
	return ok ? fd : -1;
}

/* Names on a service connection of their own, kept open until we exit. */
static int register_names(const struct opts *o, unsigned first, unsigned n)
{
	struct sbb_conn c;
	sbb_conn_init(&c, sbb_dial_from(NULL, o->host, o->port), 0);
	if (sbb_sb_hello(&c, "service") != 0 || sbb_sb_register_many(&c, o->prefix, first, n) != 0)
		return -1;
	c.fd = -1;
	sbb_conn_free(&c);
	return 0;
}

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

int sbb_conns_main(int argc, char **argv)
{
	static const struct option lo[] = {
		{"host", required_argument, NULL, 'H'},
		{"port", required_argument, NULL, 'p'},
		{"proto", required_argument, NULL, 'P'},
		{"conns", required_argument, NULL, 'c'},
		{"per-source", required_argument, NULL, 's'},
		{"names", required_argument, NULL, 'n'},
		{"names-per-conn", required_argument, NULL, 'm'},
		{"prefix", required_argument, NULL, 'x'},
		{"conn-names", required_argument, NULL, 'k'},
		{"hold", required_argument, NULL, 't'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct opts o = {.host = "127.0.0.1", .per_src = 20000, .prefix = "growth."};
	int opt;
	while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (opt) {
		case 'H':
			o.host = optarg;
			break;
		case 'p':
			o.port = (uint16_t)atoi(optarg);
			break;
		case 'P':
			o.nats = strcmp(optarg, "nats") == 0;
			if (!o.nats && strcmp(optarg, "sb") != 0) {
				usage(stderr);
				return 2;
			}
			break;
		case 'c':
			o.conns = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 's':
			o.per_src = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'n':
			o.names = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'm':
			o.per_svc = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'x':
			o.prefix = optarg;
			break;
		case 'k':
			o.conn_names = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 't':
			o.hold = strtod(optarg, NULL);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (o.port == 0 || o.per_src == 0 || ((o.names > 0 || o.conn_names > 0) && o.nats)) {
		usage(stderr);
		return 2;
	}
	if (o.per_svc == 0)
		o.per_svc = o.names;
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rlim_t need = (rlim_t)o.conns + o.names / (o.per_svc ? o.per_svc : 1) + 64;
		if (rl.rlim_max < need)
			rl.rlim_max = need; /* as root; otherwise the next line fails */
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0 && getrlimit(RLIMIT_NOFILE, &rl) == 0) {
			rl.rlim_cur = rl.rlim_max;
			setrlimit(RLIMIT_NOFILE, &rl);
		}
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	for (unsigned i = 0; i < o.names; i += o.per_svc) {
		unsigned n = o.names - i < o.per_svc ? o.names - i : o.per_svc;
		if (register_names(&o, i, n) != 0) {
			fprintf(stderr, "sb-bench conns: registering names %u-%u failed\n", i,
				i + n - 1);
			return 1;
		}
	}
	for (unsigned i = 0; i < o.conns && !stop; i++) {
		char src[32];
		source_of(&o, i, src, sizeof src);
		if (open_idle(&o, src, o.conn_names > 0 ? "service" : "client", i) < 0) {
			fprintf(stderr, "sb-bench conns: connection %u (from %s) failed\n", i + 1,
				src);
			return 1;
		}
	}
	printf("ready %u\n", o.conns);
	fflush(stdout);
	uint64_t end = sbb_now_ns() + (uint64_t)(o.hold * 1e9);
	while (!stop && (o.hold <= 0 || sbb_now_ns() < end)) {
		struct timespec ts = {0, 50000000};
		nanosleep(&ts, NULL);
	}
	return 0;
}
