/* The switchboard daemon: parses flags into a router config, runs the router,
 * and drains it on SIGTERM or SIGINT. Everything else is in libswitchboard. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <switchboard/router.h>

static void usage(FILE *out)
{
	fprintf(out, "usage: switchboard [OPTIONS]\n"
		     "\n"
		     "Runs the Switchboard message router.\n"
		     "\n"
		     "  --addr ADDR           IPv4 address to listen on (default 127.0.0.1)\n"
		     "  --port PORT           TCP port, 0 for any free port (default 7400)\n"
		     "  --shards N            threads, one per core (default: online CPUs)\n"
		     "  --max-frame BYTES     largest frame body accepted (default 1048576)\n"
		     "  --timeout MS          timeout of requests that give none (default 30000)\n"
		     "  --out-max BYTES       output queued per connection before it is dropped\n"
		     "                        as a slow consumer (default 16777216)\n"
		     "  --max-conns N         open connections; more are refused with an\n"
		     "                        error (default 65536)\n"
		     "  --hello-timeout MS    a connection must send HELLO within this, or\n"
		     "                        it is closed; 0 = never (default 5000)\n"
		     "  --name-pattern PAT    names for peers that ask for none: a run of #\n"
		     "                        is a counter padded to its length, A### gives\n"
		     "                        A001, A002, ... (default P####)\n"
		     "  --bind-retries N      retries when the port is busy (default 0)\n"
		     "  --bind-retry-ms MS    delay between them (default 1000)\n"
		     "  --drain-ms MS         on SIGTERM, how long requests in flight may\n"
		     "                        finish before connections close (default 5000)\n"
		     "  --log-level N         0 errors, 1 lifecycle, 2 connections, 3 debug\n"
		     "                        (default 1)\n"
		     "\n"
		     "Authentication and name rules (docs/security.md):\n"
		     "  --secret-file-service FILE   shared secret of role service, read from\n"
		     "                        FILE (a trailing newline is dropped)\n"
		     "  --secret-file-client FILE    the same for role client. With a secret\n"
		     "                        for one role only, the other is refused\n"
		     "  --secret-service S    --secret-client S   the secret itself (visible\n"
		     "                        in the process list: prefer the files)\n"
		     "  --allow-register-service P   names services may register, patterns\n"
		     "                        such as \"user.*,billing.log\" (default: any)\n"
		     "  --allow-call-service P       names services may send to or request\n"
		     "  --allow-call-client P        names clients may send to or request\n"
		     "  --auth-fail-max N     wrong secrets from one address within the window\n"
		     "                        before it is refused; 0 = never (default 5)\n"
		     "  --auth-fail-window MS that window (default 60000)\n"
		     "\n"
		     "Limits:\n"
		     "  --max-conns-per-addr N     connections from one IP address; 0 = no\n"
		     "                        limit (default 1024)\n"
		     "  --max-inflight-per-conn N  requests in flight per connection\n"
		     "                        (default 65536)\n"
		     "  --max-registrations N names registered per connection (default 1024)\n"
		     "  --idle-timeout MS     PING a connection silent this long; 0 = never\n"
		     "                        (default 60000)\n"
		     "  --pong-timeout MS     then close it if nothing comes within this\n"
		     "                        (default 20000)\n"
		     "  --help                this text\n"
		     "  --version             print the version and exit\n");
}

/* Parses a decimal in [lo, hi] or exits with a message naming the flag. */
static unsigned long number(const char *flag, const char *s, unsigned long lo, unsigned long hi)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno != 0 || *end != 0 || *s == '-' || v < lo || v > hi) {
		fprintf(stderr, "switchboard: --%s %s: expected a number from %lu to %lu\n", flag,
			s, lo, hi);
		exit(2);
	}
	return v;
}

/* Long options without a short letter. */
enum {
	O_SECRET_SERVICE = 256,
	O_SECRET_CLIENT,
	O_SECRET_FILE_SERVICE,
	O_SECRET_FILE_CLIENT,
	O_ALLOW_REGISTER_SERVICE,
	O_ALLOW_CALL_SERVICE,
	O_ALLOW_CALL_CLIENT,
	O_AUTH_FAIL_MAX,
	O_AUTH_FAIL_WINDOW,
	O_MAX_CONNS_PER_ADDR,
	O_MAX_INFLIGHT_PER_CONN,
	O_MAX_REGISTRATIONS,
	O_IDLE_TIMEOUT,
	O_PONG_TIMEOUT,
};

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"addr", required_argument, NULL, 'a'},
		{"port", required_argument, NULL, 'p'},
		{"shards", required_argument, NULL, 's'},
		{"max-frame", required_argument, NULL, 'm'},
		{"timeout", required_argument, NULL, 't'},
		{"out-max", required_argument, NULL, 'o'},
		{"max-conns", required_argument, NULL, 'c'},
		{"hello-timeout", required_argument, NULL, 'H'},
		{"name-pattern", required_argument, NULL, 'N'},
		{"bind-retries", required_argument, NULL, 'r'},
		{"bind-retry-ms", required_argument, NULL, 'R'},
		{"drain-ms", required_argument, NULL, 'd'},
		{"log-level", required_argument, NULL, 'l'},
		{"secret-service", required_argument, NULL, O_SECRET_SERVICE},
		{"secret-client", required_argument, NULL, O_SECRET_CLIENT},
		{"secret-file-service", required_argument, NULL, O_SECRET_FILE_SERVICE},
		{"secret-file-client", required_argument, NULL, O_SECRET_FILE_CLIENT},
		{"allow-register-service", required_argument, NULL, O_ALLOW_REGISTER_SERVICE},
		{"allow-call-service", required_argument, NULL, O_ALLOW_CALL_SERVICE},
		{"allow-call-client", required_argument, NULL, O_ALLOW_CALL_CLIENT},
		{"auth-fail-max", required_argument, NULL, O_AUTH_FAIL_MAX},
		{"auth-fail-window", required_argument, NULL, O_AUTH_FAIL_WINDOW},
		{"max-conns-per-addr", required_argument, NULL, O_MAX_CONNS_PER_ADDR},
		{"max-inflight-per-conn", required_argument, NULL, O_MAX_INFLIGHT_PER_CONN},
		{"max-registrations", required_argument, NULL, O_MAX_REGISTRATIONS},
		{"idle-timeout", required_argument, NULL, O_IDLE_TIMEOUT},
		{"pong-timeout", required_argument, NULL, O_PONG_TIMEOUT},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	struct sb_router_config cfg;
	unsigned drain_ms = 5000;
	int o, err;

	sb_router_config_init(&cfg);
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'a':
			cfg.addr = optarg;
			break;
		case 'p':
			cfg.port = (uint16_t)number("port", optarg, 0, 65535);
			break;
		case 's':
			cfg.shards = (unsigned)number("shards", optarg, 1, 64);
			break;
		case 'm':
			cfg.max_frame = (uint32_t)number("max-frame", optarg, 13, 64u << 20);
			break;
		case 't':
			cfg.default_timeout_ms = (uint32_t)number("timeout", optarg, 1, 3600000);
			break;
		case 'o':
			cfg.out_max = number("out-max", optarg, 65536, ULONG_MAX);
			break;
		case 'c':
			cfg.max_conns = (uint32_t)number("max-conns", optarg, 1, 16u << 20);
			break;
		case 'H':
			cfg.hello_timeout_ms =
				(uint32_t)number("hello-timeout", optarg, 0, 3600000);
			break;
		case 'N':
			if (strchr(optarg, '#') == NULL) {
				fprintf(stderr,
					"switchboard: --name-pattern %s: needs a run of # for the "
					"counter (A### gives A001, A002, ...)\n",
					optarg);
				return 2;
			}
			cfg.name_pattern = optarg;
			break;
		case 'r':
			cfg.bind_retries = (unsigned)number("bind-retries", optarg, 0, 1000);
			break;
		case 'R':
			cfg.bind_retry_ms = (unsigned)number("bind-retry-ms", optarg, 0, 600000);
			break;
		case 'd':
			drain_ms = (unsigned)number("drain-ms", optarg, 0, 3600000);
			break;
		case 'l':
			cfg.log_level = (int)number("log-level", optarg, 0, 3);
			break;
		case O_SECRET_SERVICE:
			cfg.secret_service = optarg;
			break;
		case O_SECRET_CLIENT:
			cfg.secret_client = optarg;
			break;
		case O_SECRET_FILE_SERVICE:
			cfg.secret_service_file = optarg;
			break;
		case O_SECRET_FILE_CLIENT:
			cfg.secret_client_file = optarg;
			break;
		case O_ALLOW_REGISTER_SERVICE:
			cfg.allow_register_service = optarg;
			break;
		case O_ALLOW_CALL_SERVICE:
			cfg.allow_call_service = optarg;
			break;
		case O_ALLOW_CALL_CLIENT:
			cfg.allow_call_client = optarg;
			break;
		case O_AUTH_FAIL_MAX:
			cfg.auth_fail_max = (uint32_t)number("auth-fail-max", optarg, 0, 1000000);
			break;
		case O_AUTH_FAIL_WINDOW:
			cfg.auth_fail_window_ms =
				(uint32_t)number("auth-fail-window", optarg, 0, 86400000);
			break;
		case O_MAX_CONNS_PER_ADDR:
			cfg.max_conns_per_addr =
				(uint32_t)number("max-conns-per-addr", optarg, 0, 16u << 20);
			break;
		case O_MAX_INFLIGHT_PER_CONN:
			cfg.max_inflight_per_conn =
				(uint32_t)number("max-inflight-per-conn", optarg, 1, 1u << 24);
			break;
		case O_MAX_REGISTRATIONS:
			cfg.max_registrations =
				(uint32_t)number("max-registrations", optarg, 1, 1u << 24);
			break;
		case O_IDLE_TIMEOUT:
			cfg.idle_ms = (uint32_t)number("idle-timeout", optarg, 0, 86400000);
			break;
		case O_PONG_TIMEOUT:
			cfg.pong_timeout_ms = (uint32_t)number("pong-timeout", optarg, 1, 3600000);
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("switchboard %s (protocol 1)\n", SB_VERSION_STRING);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "switchboard: unexpected argument %s\n", argv[optind]);
		return 2;
	}
	if (cfg.max_frame > cfg.out_max)
		cfg.out_max = cfg.max_frame;

	/* Block the stop signals before any shard thread exists, so they all
	 * inherit the mask and only sigwait() below ever sees them. */
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	signal(SIGPIPE, SIG_IGN);

	struct sb_router *r = sb_router_new(&cfg, &err);
	if (r == NULL && err == SB_EINVAL && cfg.name_pattern != NULL &&
	    strcmp(cfg.name_pattern, "P####") != 0) {
		fprintf(stderr,
			"switchboard: --name-pattern %s: expected one run of # and a peer name "
			"around it (no spaces, at most 54 bytes besides the counter)\n",
			cfg.name_pattern);
		return 2;
	}
	if (r == NULL) {
		/* A bad secret or rule was logged above with its reason. */
		if (err == SB_EINVAL) {
			fprintf(stderr, "switchboard: cannot start: invalid configuration\n");
			return 1;
		}
		fprintf(stderr, "switchboard: cannot start on %s:%u: %s\n", cfg.addr, cfg.port,
			err == SB_ESYS ? strerror(errno) : sb_strerror(err));
		return 1;
	}
	if ((err = sb_router_start(r)) != 0) {
		fprintf(stderr, "switchboard: cannot start: %s (%s)\n", sb_strerror(err),
			strerror(errno));
		sb_router_free(r);
		return 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("switchboard %s: listening on %s:%u (%u shards)\n", SB_VERSION_STRING, cfg.addr,
	       sb_router_port(r), sb_router_shards(r));

	int sig;
	sigwait(&stop, &sig);
	printf("switchboard: %s, draining for up to %u ms\n", sig == SIGTERM ? "SIGTERM" : "SIGINT",
	       drain_ms);
	sb_router_stop(r, drain_ms);
	sb_router_free(r);
	printf("switchboard: stopped\n");
	return 0;
}
