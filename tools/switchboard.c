/* The switchboard daemon: parses a config file and flags into a router
 * config, runs the router, reloads on SIGHUP and drains on SIGTERM or
 * SIGINT. Everything else is in libswitchboard. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <switchboard/router.h>

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
	O_SLOW_TIMEOUT,
	O_CLUSTER,
};

/* Every setting is a long flag, and the same name is its key in a config
 * file (docs/daemon.md): a flag added here is a config key too. */
static const struct option opts[] = {
	{"addr", required_argument, NULL, 'a'},
	{"port", required_argument, NULL, 'p'},
	{"shards", required_argument, NULL, 's'},
	{"max-frame", required_argument, NULL, 'm'},
	{"timeout", required_argument, NULL, 't'},
	{"out-max", required_argument, NULL, 'o'},
	{"slow-timeout", required_argument, NULL, O_SLOW_TIMEOUT},
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
	{"tls-cert", required_argument, NULL, 'C'},
	{"tls-key", required_argument, NULL, 'K'},
	{"tls-ca", required_argument, NULL, 'A'},
	{"tls-verify-client", no_argument, NULL, 'v'},
	{"tls-allow", required_argument, NULL, 'w'},
	{"tls-deny", required_argument, NULL, 'x'},
	{"cluster", required_argument, NULL, O_CLUSTER},
	{"config", required_argument, NULL, 'f'},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, 'V'},
	{NULL, 0, NULL, 0},
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: switchboard [OPTIONS]\n"
		"\n"
		"Runs the Switchboard message router.\n"
		"\n"
		"  --addr ADDR           IPv4 address to listen on (default 127.0.0.1)\n"
		"  --port PORT           TCP port, 0 for any free port (default 7400)\n"
		"  --shards N            threads, one per core (default: online CPUs)\n"
		"  --max-frame BYTES     largest frame body accepted (default 1048576)\n"
		"  --timeout MS          timeout of requests that give none (default 30000)\n"
		"  --out-max BYTES       output queued per connection: a quarter of it\n"
		"                        pauses whoever feeds it, past it (plus 8 receive\n"
		"                        pools) it is dropped as a slow consumer\n"
		"                        (default 16777216)\n"
		"  --slow-timeout MS     a connection past that quarter whose peer takes\n"
		"                        nothing for this long is dropped as a slow\n"
		"                        consumer; 0 = never (default 10000)\n"
		"  --max-conns N         open connections; more are refused with an\n"
		"                        error (default 65536); the descriptor limit is\n"
		"                        raised to match, as the hard limit allows\n"
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
		"\n"
		"TLS (docs/security.md):\n"
		"  --tls-cert FILE       PEM certificate (chain): the listener speaks TLS 1.3\n"
		"  --tls-key FILE        its PEM private key (default: in the --tls-cert file)\n"
		"  --tls-ca FILE         PEM CA that client certificates must be signed by\n"
		"  --tls-verify-client   require a client certificate (needs --tls-ca)\n"
		"  --tls-allow NAMES     client certificate names (CN or DNS SAN) allowed,\n"
		"                        comma-separated or repeated; '*' matches any run\n"
		"                        of characters (default: every CA-signed name)\n"
		"  --tls-deny NAMES      names refused even if allowed\n"
		"\n"
		"  --cluster URLS        join other routers over a NATS cluster:\n"
		"                        nats://HOST:PORT[,...] (docs/cluster.md)\n"
		"\n"
		"  --config FILE         read settings from FILE first: one `key = value`\n"
		"                        per line, the keys being these flags' names\n"
		"                        (`max-conns = 100`), `#` starts a comment; flags\n"
		"                        given here apply on top. SIGHUP reads it again\n"
		"                        and reloads the TLS files and lists, the secrets\n"
		"                        and the name rules (docs/daemon.md)\n"
		"  --help                this text\n"
		"  --version             print the version and exit\n");
}

/* ---- settings ------------------------------------------------------------- */

/* A list setting's values, NULL-terminated for the router config. */
struct list {
	const char **v;
	size_t n, cap;
	int from_file; /* its values came from the config file */
};

/* One reading of the settings: the file, then the flags on top. */
struct settings {
	struct sb_router_config cfg;
	unsigned drain_ms;
	struct list allow, deny;
	const char **owned; /* strings copied from the file, freed with the settings */
	size_t nowned, owned_cap;
	const char *file; /* while reading the file: its name and line, for errors */
	unsigned line;
	char err[512]; /* the first error, "" if none */
};

/* A flag and its value from the command line, kept to apply again after
 * the file on every reload. */
struct arg {
	int opt;
	const char *val;
};

static void fail(struct settings *s, const char *key, const char *val, const char *what)
{
	if (s->err[0] != 0)
		return; /* the first error is the one to fix */
	if (s->file != NULL)
		snprintf(s->err, sizeof s->err, "%s:%u: %s%s%s: %s", s->file, s->line, key,
			 val != NULL ? " = " : "", val != NULL ? val : "", what);
	else
		snprintf(s->err, sizeof s->err, "--%s%s%s: %s", key, val != NULL ? " " : "",
			 val != NULL ? val : "", what);
}

/* Parses a decimal in [lo, hi]; an error names the setting and is kept. */
static unsigned long number(struct settings *s, const char *flag, const char *str, unsigned long lo,
			    unsigned long hi)
{
	char *end, what[96];
	errno = 0;
	unsigned long v = strtoul(str, &end, 10);
	if (errno != 0 || *end != 0 || *str == '-' || *str == 0 || v < lo || v > hi) {
		snprintf(what, sizeof what, "expected a number from %lu to %lu", lo, hi);
		fail(s, flag, str, what);
		return lo;
	}
	return v;
}

static int push(const char ***v, size_t *n, size_t *cap, const char *p)
{
	if (*n + 2 > *cap) { /* room for p and a NULL after it */
		size_t c = *cap ? *cap * 2 : 8;
		const char **nv = realloc(*v, c * sizeof *nv);
		if (nv == NULL)
			return -1;
		*v = nv;
		*cap = c;
	}
	(*v)[(*n)++] = p;
	(*v)[*n] = NULL;
	return 0;
}

static const char *own(struct settings *s, const char *str, size_t len)
{
	char *p = strndup(str, len);
	if (p == NULL || push(&s->owned, &s->nowned, &s->owned_cap, p) != 0) {
		free(p);
		fail(s, "settings", NULL, "out of memory");
		return "";
	}
	return p;
}

/* --tls-allow a,b: each name once. Flags replace a list the file gave
 * instead of adding to it, as they replace any other setting. */
static void list_add(struct settings *s, struct list *l, const char *flag, const char *val)
{
	if (l->n > 0 && l->from_file && s->file == NULL)
		l->n = 0;
	l->from_file = s->file != NULL;
	for (const char *p = val; *p != 0;) {
		size_t len = strcspn(p, ",");
		const char *a = p, *b = p + len;
		while (a < b && (*a == ' ' || *a == '\t'))
			a++;
		while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
			b--;
		if (a == b)
			fail(s, flag, val, "an empty name");
		else if (push(&l->v, &l->n, &l->cap, own(s, a, (size_t)(b - a))) != 0)
			fail(s, flag, val, "out of memory");
		p += len + (p[len] == ',');
	}
}

/* One setting. A flag added to opts[] gets its case here, and then works
 * on the command line and in the config file alike. */
static void apply(struct settings *s, int opt, const char *val)
{
	struct sb_router_config *cfg = &s->cfg;

	switch (opt) {
	case 'a':
		cfg->addr = val;
		break;
	case 'p':
		cfg->port = (uint16_t)number(s, "port", val, 0, 65535);
		break;
	case 's':
		cfg->shards = (unsigned)number(s, "shards", val, 1, 64);
		break;
	case 'm':
		cfg->max_frame = (uint32_t)number(s, "max-frame", val, 13, 64u << 20);
		break;
	case 't':
		cfg->default_timeout_ms = (uint32_t)number(s, "timeout", val, 1, 3600000);
		break;
	case 'o':
		cfg->out_max = number(s, "out-max", val, 65536, ULONG_MAX);
		break;
	case 'c':
		cfg->max_conns = (uint32_t)number(s, "max-conns", val, 1, 16u << 20);
		break;
	case 'H':
		cfg->hello_timeout_ms = (uint32_t)number(s, "hello-timeout", val, 0, 3600000);
		break;
	case 'N':
		if (strchr(val, '#') == NULL)
			fail(s, "name-pattern", val,
			     "needs a run of # for the counter (A### gives A001, A002, ...)");
		cfg->name_pattern = val;
		break;
	case 'r':
		cfg->bind_retries = (unsigned)number(s, "bind-retries", val, 0, 1000);
		break;
	case 'R':
		cfg->bind_retry_ms = (unsigned)number(s, "bind-retry-ms", val, 0, 600000);
		break;
	case 'd':
		s->drain_ms = (unsigned)number(s, "drain-ms", val, 0, 3600000);
		break;
	case 'l':
		cfg->log_level = (int)number(s, "log-level", val, 0, 3);
		break;
	case O_SECRET_SERVICE:
		cfg->secret_service = val;
		break;
	case O_SECRET_CLIENT:
		cfg->secret_client = val;
		break;
	case O_SECRET_FILE_SERVICE:
		cfg->secret_service_file = val;
		break;
	case O_SECRET_FILE_CLIENT:
		cfg->secret_client_file = val;
		break;
	case O_ALLOW_REGISTER_SERVICE:
		cfg->allow_register_service = val;
		break;
	case O_ALLOW_CALL_SERVICE:
		cfg->allow_call_service = val;
		break;
	case O_ALLOW_CALL_CLIENT:
		cfg->allow_call_client = val;
		break;
	case O_AUTH_FAIL_MAX:
		cfg->auth_fail_max = (uint32_t)number(s, "auth-fail-max", val, 0, 1000000);
		break;
	case O_AUTH_FAIL_WINDOW:
		cfg->auth_fail_window_ms =
			(uint32_t)number(s, "auth-fail-window", val, 0, 86400000);
		break;
	case O_MAX_CONNS_PER_ADDR:
		cfg->max_conns_per_addr =
			(uint32_t)number(s, "max-conns-per-addr", val, 0, 16u << 20);
		break;
	case O_MAX_INFLIGHT_PER_CONN:
		cfg->max_inflight_per_conn =
			(uint32_t)number(s, "max-inflight-per-conn", val, 1, 1u << 24);
		break;
	case O_MAX_REGISTRATIONS:
		cfg->max_registrations = (uint32_t)number(s, "max-registrations", val, 1, 1u << 24);
		break;
	case O_IDLE_TIMEOUT:
		cfg->idle_ms = (uint32_t)number(s, "idle-timeout", val, 0, 86400000);
		break;
	case O_PONG_TIMEOUT:
		cfg->pong_timeout_ms = (uint32_t)number(s, "pong-timeout", val, 1, 3600000);
		break;
	case O_SLOW_TIMEOUT:
		cfg->slow_ms = (uint32_t)number(s, "slow-timeout", val, 0, 3600000);
		break;
	case 'C':
		cfg->tls_cert = val;
		break;
	case 'K':
		cfg->tls_key = val;
		break;
	case 'A':
		cfg->tls_ca = val;
		break;
	case 'v':
		cfg->tls_verify_client = 1;
		break;
	case 'w':
		list_add(s, &s->allow, "tls-allow", val);
		break;
	case 'x':
		list_add(s, &s->deny, "tls-deny", val);
		break;
	case O_CLUSTER:
		cfg->cluster = val;
		break;
	}
}

static struct settings *settings_new(void)
{
	struct settings *s = calloc(1, sizeof *s);
	if (s == NULL) {
		fprintf(stderr, "switchboard: out of memory\n");
		exit(1);
	}
	sb_router_config_init(&s->cfg);
	s->drain_ms = 5000;
	return s;
}

static void settings_free(struct settings *s)
{
	for (size_t i = 0; i < s->nowned; i++)
		free((char *)s->owned[i]);
	free(s->owned);
	free(s->allow.v);
	free(s->deny.v);
	free(s);
}

static char *trim(char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	size_t n = strlen(p);
	while (n > 0 &&
	       (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '\n' || p[n - 1] == '\r'))
		p[--n] = 0;
	return p;
}

static int yes_no(const char *v)
{
	static const char *yes[] = {"", "1", "yes", "true", "on"};
	static const char *no[] = {"0", "no", "false", "off"};
	for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
		if (strcmp(v, yes[i]) == 0)
			return 1;
	for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
		if (strcmp(v, no[i]) == 0)
			return 0;
	return -1;
}

/* One `key = value` line of the config file. */
static void file_line(struct settings *s, char *line)
{
	char *hash = line;
	/* A comment starts at '#' at the line's start or after a blank, so a
	 * value may still hold one ("tls-allow = team#1" is a name). */
	while ((hash = strchr(hash, '#')) != NULL) {
		if (hash == line || hash[-1] == ' ' || hash[-1] == '\t') {
			*hash = 0;
			break;
		}
		hash++;
	}
	char *eq = strchr(line, '='), *val = NULL;
	if (eq != NULL) {
		*eq = 0;
		val = trim(eq + 1);
	}
	char *key = trim(line);
	if (*key == 0) {
		if (val != NULL)
			fail(s, "(no key)", val, "a value without a key");
		return;
	}
	const struct option *o = opts;
	while (o->name != NULL && strcmp(o->name, key) != 0)
		o++;
	if (o->name == NULL || o->val == 'f' || o->val == 'h' || o->val == 'V') {
		fail(s, key, NULL,
		     "not a setting (the keys are switchboard's long flags: switchboard --help)");
		return;
	}
	if (o->has_arg == no_argument) {
		int on = yes_no(val != NULL ? val : "");
		if (on < 0)
			fail(s, key, val, "expected yes or no");
		else if (on)
			apply(s, o->val, NULL);
		return;
	}
	if (val == NULL || *val == 0) {
		fail(s, key, NULL, "needs a value (key = value)");
		return;
	}
	apply(s, o->val, own(s, val, strlen(val)));
}

static void load_file(struct settings *s, const char *path)
{
	char line[4096];
	FILE *f = fopen(path, "r");

	if (f == NULL) {
		snprintf(s->err, sizeof s->err, "--config %s: %s", path, strerror(errno));
		return;
	}
	s->file = path;
	s->line = 0;
	while (s->err[0] == 0 && fgets(line, sizeof line, f) != NULL) {
		s->line++;
		if (strchr(line, '\n') == NULL && !feof(f))
			fail(s, "line", NULL, "longer than 4095 bytes");
		else
			file_line(s, line);
	}
	if (s->err[0] == 0 && ferror(f))
		snprintf(s->err, sizeof s->err, "--config %s: %s", path, strerror(errno));
	fclose(f);
	s->file = NULL;
}

/* The settings in force: the defaults, the file, then the flags. */
static struct settings *build(const char *config, const struct arg *args, size_t nargs)
{
	struct settings *s = settings_new();

	if (config != NULL)
		load_file(s, config);
	for (size_t i = 0; i < nargs && s->err[0] == 0; i++)
		apply(s, args[i].opt, args[i].val);
	if (s->cfg.max_frame > s->cfg.out_max)
		s->cfg.out_max = s->cfg.max_frame;
	s->cfg.tls_allow = s->allow.v;
	s->cfg.tls_deny = s->deny.v;
	return s;
}

/* SIGHUP: the file and flags again; the router takes what reloads. */
static void reload(struct sb_router *r, const char *config, const struct arg *args, size_t nargs,
		   unsigned *drain_ms)
{
	struct settings *s = build(config, args, nargs);

	if (s->err[0] != 0)
		printf("switchboard: SIGHUP: %s; the settings in force stay\n", s->err);
	else if (sb_router_reload(r, &s->cfg) != 0)
		printf("switchboard: SIGHUP: reload refused (the log says why); the settings in "
		       "force stay\n");
	else {
		*drain_ms = s->drain_ms;
		printf("switchboard: SIGHUP: settings reloaded%s%s\n", config ? " from " : "",
		       config ? config : "");
	}
	settings_free(s); /* the router keeps nothing of it */
}

/* Each connection takes a descriptor: take as many as max_conns needs, up
 * to the hard limit. The library warns if that is still too few. */
static void raise_nofile(uint32_t max_conns, unsigned shards)
{
	struct rlimit rl;
	rlim_t need = (rlim_t)max_conns + 3u * (shards ? shards : 64u) + 16u;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= need)
		return;
	rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > need ? need : rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
}

int main(int argc, char **argv)
{
	struct arg *args = calloc((size_t)argc, sizeof *args);
	struct settings *s = NULL;
	const char *config = NULL;
	size_t nargs = 0;
	int o, err, rc = 2;

	if (args == NULL)
		return 1;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'f':
			config = optarg;
			break;
		case 'h':
			usage(stdout);
			rc = 0;
			goto out;
		case 'V':
			printf("switchboard %s (protocol 1)\n", SB_VERSION_STRING);
			rc = 0;
			goto out;
		case '?':
			usage(stderr);
			goto out;
		default:
			args[nargs++] = (struct arg){o, optarg};
		}
	}
	if (optind < argc) {
		fprintf(stderr, "switchboard: unexpected argument %s\n", argv[optind]);
		goto out;
	}
	s = build(config, args, nargs);
	if (s->err[0] != 0) {
		fprintf(stderr, "switchboard: %s\n", s->err);
		goto out;
	}
	unsigned drain_ms = s->drain_ms;

	/* Block the signals before any shard thread exists, so they all
	 * inherit the mask and only sigwait() below ever sees them. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	raise_nofile(s->cfg.max_conns, s->cfg.shards);
	struct sb_router *r = sb_router_new(&s->cfg, &err);
	if (r == NULL && err == SB_EINVAL) {
		/* TLS, secrets and rules say what is wrong in the log; the other
		 * settings are checked as a whole, so the likely one is named here. */
		int pattern =
			s->cfg.name_pattern != NULL && strcmp(s->cfg.name_pattern, "P####") != 0;
		if (pattern)
			fprintf(stderr,
				"switchboard: --name-pattern %s: expected one run of # and a peer "
				"name around it (no spaces, at most 54 bytes besides the "
				"counter)\n",
				s->cfg.name_pattern);
		if (!pattern)
			fprintf(stderr, "switchboard: invalid settings (the log above names a TLS, "
					"secret or name-rule one)\n");
		goto out;
	}
	if (r == NULL) {
		fprintf(stderr, "switchboard: cannot start on %s:%u: %s\n", s->cfg.addr,
			s->cfg.port, err == SB_ESYS ? strerror(errno) : sb_strerror(err));
		rc = 1;
		goto out;
	}
	if ((err = sb_router_start(r)) != 0) {
		fprintf(stderr, "switchboard: cannot start: %s (%s)\n", sb_strerror(err),
			strerror(errno));
		sb_router_free(r);
		rc = 1;
		goto out;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("switchboard %s: listening on %s:%u (%u shards%s)\n", SB_VERSION_STRING, s->cfg.addr,
	       sb_router_port(r), sb_router_shards(r), s->cfg.tls_cert != NULL ? ", TLS" : "");

	int sig;
	for (;;) {
		sigwait(&sigs, &sig);
		if (sig != SIGHUP)
			break;
		reload(r, config, args, nargs, &drain_ms);
	}
	printf("switchboard: %s, draining for up to %u ms\n", sig == SIGTERM ? "SIGTERM" : "SIGINT",
	       drain_ms);
	sb_router_stop(r, drain_ms);
	sb_router_free(r);
	printf("switchboard: stopped\n");
	rc = 0;
out:
	if (s != NULL)
		settings_free(s);
	free(args);
	return rc;
}
