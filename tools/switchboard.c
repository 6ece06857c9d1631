/* The switchboard daemon: parses a config file and flags into a router
 * config, runs the router, reloads on SIGHUP and drains on SIGTERM or
 * SIGINT, telling systemd each step (sd_notify) when it runs as a
 * Type=notify service. Everything else is in libswitchboard. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include <switchboard/router.h>

/* Off a terminal (the journal), the daemon's own lines on stderr carry a
 * syslog level as the library's do (core/common/log.c): errors 3,
 * warnings 4. */
static const char *level(int n)
{
	static const char *const prefix[] = {"<3>", "<4>"};
	return isatty(STDERR_FILENO) ? "" : prefix[n == 4];
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
	const char *placement; /* "follow" or "kernel": into cfg.placement */
	struct list allow, deny;
	const char **owned; /* strings copied from the file, freed with the settings */
	size_t nowned, owned_cap;
	const char *file; /* while reading the file: its name and line, for errors */
	unsigned line;
	char err[512]; /* the first error, "" if none */
};

/* How a setting's value is read. */
enum type {
	NUM,  /* a decimal in [lo, hi], into an unsigned field of `size` bytes */
	TEXT, /* a string, kept as given */
	YES,  /* a flag without a value: sets an int to 1 */
	LIST, /* names, comma-separated or repeated (struct list) */
};

/* One setting: its flag (and config key), how its value is read and where
 * it goes, its lines in --help, and whether SIGHUP applies it. This table
 * is the daemon's one list of settings: the getopt options, --help, the
 * config file's keys and the reload's restart-only notes all come from it
 * (docs/daemon.md). */
struct setting {
	const char *section; /* a heading printed before it in --help, or NULL */
	const char *name;    /* --NAME, and NAME in a config file */
	enum type type;
	size_t off, size;                      /* the field in struct settings */
	unsigned long lo, hi;                  /* NUM */
	int reload;                            /* 1: SIGHUP applies it; 0: only a restart does */
	const char *arg;                       /* the value in --help ("MS"), NULL for YES */
	const char *help;                      /* --help text; '\n' continues on the next line */
	const char *(*check)(const char *val); /* TEXT: what is wrong with val, or NULL */
};

static const char *has_counter(const char *val)
{
	return strchr(val, '#') == NULL
		       ? "needs a run of # for the counter (A### gives A001, A002, ...)"
		       : NULL;
}

static const char *is_ipv4(const char *val)
{
	struct in_addr a;
	return inet_pton(AF_INET, val, &a) == 1 ? NULL : "not an IPv4 address (127.0.0.1)";
}

static const char *is_placement(const char *val)
{
	return strcmp(val, "follow") == 0 || strcmp(val, "kernel") == 0
		       ? NULL
		       : "expected follow or kernel";
}

static const char *is_cluster_name(const char *val)
{
	size_t n = strlen(val);
	if (n == 0 || n > 32 ||
	    strspn(val, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			"0123456789-_") != n)
		return "expected 1 to 32 letters, digits, '-' or '_'";
	return NULL;
}

#define CFG(f)        offsetof(struct settings, cfg.f), sizeof(((struct sb_router_config *)0)->f)
#define SET(f)        offsetof(struct settings, f), sizeof(((struct settings *)0)->f)
#define RANGE(lo, hi) lo, hi
#define ANY           0, 0

static const struct setting table[] = {
	{NULL, "addr", TEXT, CFG(addr), ANY, 0, "ADDR",
	 "IPv4 address to listen on (default 127.0.0.1)", NULL},
	{NULL, "port", NUM, CFG(port), RANGE(0, 65535), 0, "PORT",
	 "TCP port, 0 for any free port (default 7400)", NULL},
	{NULL, "shards", NUM, CFG(shards), RANGE(1, 64), 0, "N",
	 "threads, one per core (default: online CPUs)", NULL},
	{NULL, "max-frame", NUM, CFG(max_frame), RANGE(13, 64u << 20), 0, "BYTES",
	 "largest frame body accepted (default 1048576)", NULL},
	{NULL, "timeout", NUM, CFG(default_timeout_ms), RANGE(1, 3600000), 0, "MS",
	 "timeout of requests that give none (default 30000)", NULL},
	{NULL, "out-max", NUM, CFG(out_max), RANGE(65536, ULONG_MAX), 0, "BYTES",
	 "output queued per connection: a quarter of it\n"
	 "pauses whoever feeds it, past it (plus 8 receive\n"
	 "pools) it is dropped as a slow consumer\n"
	 "(default 16777216)",
	 NULL},
	{NULL, "slow-timeout", NUM, CFG(slow_ms), RANGE(0, 3600000), 0, "MS",
	 "a connection past that quarter whose peer takes\n"
	 "nothing for this long is dropped as a slow\n"
	 "consumer; 0 = never (default 10000)",
	 NULL},
	{NULL, "max-conns", NUM, CFG(max_conns), RANGE(1, 16u << 20), 0, "N",
	 "open connections; more are refused with an\n"
	 "error (default 65536); the descriptor limit is\n"
	 "raised to match, as the hard limit allows",
	 NULL},
	{NULL, "hello-timeout", NUM, CFG(hello_timeout_ms), RANGE(0, 3600000), 0, "MS",
	 "a connection must send HELLO within this, or\n"
	 "it is closed; 0 = never (default 5000)",
	 NULL},
	{NULL, "name-pattern", TEXT, CFG(name_pattern), ANY, 0, "PAT",
	 "names for peers that ask for none: a run of #\n"
	 "is a counter padded to its length, A### gives\n"
	 "A001, A002, ... (default P####)",
	 has_counter},
	{NULL, "name-grace-ms", NUM, CFG(name_grace_ms), RANGE(0, 3600000), 0, "MS",
	 "a peer whose connection is lost keeps its name\n"
	 "this long, for its resume token only; 0 = free\n"
	 "at once (default 30000)",
	 NULL},
	{NULL, "bind-retries", NUM, CFG(bind_retries), RANGE(0, 1000), 0, "N",
	 "retries when the port is busy (default 0)", NULL},
	{NULL, "bind-retry-ms", NUM, CFG(bind_retry_ms), RANGE(0, 600000), 0, "MS",
	 "delay between them (default 1000)", NULL},
	{NULL, "drain-ms", NUM, SET(drain_ms), RANGE(0, 3600000), 1, "MS",
	 "on SIGTERM, how long requests in flight may\n"
	 "finish before connections close (default 5000)",
	 NULL},
	{NULL, "log-level", NUM, CFG(log_level), RANGE(0, 3), 0, "N",
	 "0 errors, 1 lifecycle, 2 connections, 3 debug\n"
	 "(default 1)",
	 NULL},
	{NULL, "placement", TEXT, SET(placement), ANY, 0, "HOW",
	 "which shard a connection is on: follow moves a\n"
	 "requester, once, to the shard of the handlers\n"
	 "it calls; kernel leaves it where the kernel's\n"
	 "hash put it (default follow)",
	 is_placement},

	{"Authentication and name rules (docs/security.md):", "secret-file-service", TEXT,
	 CFG(secret_service_file), ANY, 1, "FILE",
	 "shared secret of role service, read from\n"
	 "FILE (a trailing newline is dropped)",
	 NULL},
	{NULL, "secret-file-client", TEXT, CFG(secret_client_file), ANY, 1, "FILE",
	 "the same for role client. With a secret\n"
	 "for one role only, the other is refused",
	 NULL},
	{NULL, "secret-service", TEXT, CFG(secret_service), ANY, 1, "S",
	 "the secret itself (visible in the process\n"
	 "list: prefer the files)",
	 NULL},
	{NULL, "secret-client", TEXT, CFG(secret_client), ANY, 1, "S", "the same for role client",
	 NULL},
	{NULL, "allow-register-service", TEXT, CFG(allow_register_service), ANY, 1, "P",
	 "names services may register, patterns\n"
	 "such as \"user.*,billing.log\" (default: any)",
	 NULL},
	{NULL, "allow-call-service", TEXT, CFG(allow_call_service), ANY, 1, "P",
	 "names services may send to or request", NULL},
	{NULL, "allow-call-client", TEXT, CFG(allow_call_client), ANY, 1, "P",
	 "names clients may send to or request", NULL},
	{NULL, "auth-fail-max", NUM, CFG(auth_fail_max), RANGE(0, 1000000), 0, "N",
	 "wrong secrets from one address within the window\n"
	 "before it is refused; 0 = never (default 5)",
	 NULL},
	{NULL, "auth-fail-window", NUM, CFG(auth_fail_window_ms), RANGE(0, 86400000), 0, "MS",
	 "that window (default 60000)", NULL},

	{"Limits:", "max-conns-per-addr", NUM, CFG(max_conns_per_addr), RANGE(0, 16u << 20), 0, "N",
	 "connections from one IP address; 0 = no\n"
	 "limit (default 1024)",
	 NULL},
	{NULL, "max-inflight-per-conn", NUM, CFG(max_inflight_per_conn), RANGE(1, 1u << 24), 0, "N",
	 "requests in flight per connection\n"
	 "(default 65536)",
	 NULL},
	{NULL, "max-registrations", NUM, CFG(max_registrations), RANGE(1, 1u << 24), 0, "N",
	 "names registered per connection (default 1024)", NULL},
	{NULL, "idle-timeout", NUM, CFG(idle_ms), RANGE(0, 86400000), 0, "MS",
	 "PING a connection silent this long; 0 = never\n"
	 "(default 60000)",
	 NULL},
	{NULL, "pong-timeout", NUM, CFG(pong_timeout_ms), RANGE(1, 3600000), 0, "MS",
	 "then close it if nothing comes within this\n"
	 "(default 20000)",
	 NULL},

	{"TLS (docs/security.md):", "tls-cert", TEXT, CFG(tls_cert), ANY, 1, "FILE",
	 "PEM certificate (chain): the listener speaks TLS 1.3", NULL},
	{NULL, "tls-key", TEXT, CFG(tls_key), ANY, 1, "FILE",
	 "its PEM private key (default: in the --tls-cert file)", NULL},
	{NULL, "tls-ca", TEXT, CFG(tls_ca), ANY, 1, "FILE",
	 "PEM CA that client certificates must be signed by", NULL},
	{NULL, "tls-verify-client", YES, CFG(tls_verify_client), ANY, 1, NULL,
	 "require a client certificate (needs --tls-ca)", NULL},
	{NULL, "tls-allow", LIST, SET(allow), ANY, 1, "NAMES",
	 "client certificate names (CN or DNS SAN) allowed,\n"
	 "comma-separated or repeated; '*' matches any run\n"
	 "of characters (default: every CA-signed name)",
	 NULL},
	{NULL, "tls-deny", LIST, SET(deny), ANY, 1, "NAMES", "names refused even if allowed", NULL},

	{"The edge (docs/gateway.md):", "ws-port", NUM, CFG(ws_port), RANGE(0, 65535), 0, "PORT",
	 "serve WebSocket (GET /v1/ws) and HTTP calls here;\n"
	 "0 = any free port (default: off); TLS with the\n"
	 "--tls-* settings when they are given",
	 NULL},
	{NULL, "ws-allow-origin", TEXT, CFG(ws_allow_origin), ANY, 0, "O",
	 "browser origins allowed to upgrade or call, comma-\n"
	 "separated; '*' matches any run of characters\n"
	 "(https://*.example.com); default: any",
	 NULL},
	{NULL, "jwt-keys", TEXT, CFG(jwt_keys_file), ANY, 1, "FILE",
	 "PEM public keys (RS256, ES256) bearer tokens are\n"
	 "checked with: every call and upgrade on the edge\n"
	 "then needs a token (SIGHUP reads it again)",
	 NULL},
	{NULL, "jwt-secret-file", TEXT, CFG(jwt_secret_file), ANY, 1, "FILE",
	 "an HS256 secret (32 bytes at least) instead or too", NULL},
	{NULL, "jwt-issuer", TEXT, CFG(jwt_issuer), ANY, 1, "S", "iss tokens must carry", NULL},
	{NULL, "jwt-audience", TEXT, CFG(jwt_audience), ANY, 1, "S", "aud tokens must carry", NULL},
	{NULL, "jwt-leeway", NUM, CFG(jwt_leeway_s), RANGE(0, 300), 1, "S",
	 "clock skew allowed on exp and nbf (default 30)", NULL},

	{"The admin listener (docs/operations.md):", "admin-port", NUM, CFG(admin_port),
	 RANGE(0, 65535), 0, "PORT",
	 "serve GET /metrics (Prometheus) and the admin\n"
	 "pages here, plain HTTP; 0 = any free port\n"
	 "(default: off)",
	 NULL},
	{NULL, "admin-addr", TEXT, CFG(admin_addr), ANY, 0, "ADDR",
	 "IPv4 address of the admin listener (default\n"
	 "127.0.0.1: keep it off public networks)",
	 is_ipv4},

	{"Several routers as one (docs/cluster.md):", "cluster", TEXT, CFG(cluster), ANY, 0, "URLS",
	 "join other routers over a NATS cluster:\n"
	 "nats://HOST:PORT[,...] (tls://HOST:PORT for TLS)",
	 NULL},
	{NULL, "cluster-name", TEXT, CFG(cluster_name), ANY, 0, "ID",
	 "this router's id in the cluster, unique among\n"
	 "them (default: r and 16 random hex digits)",
	 is_cluster_name},
	{NULL, "cluster-dead-ms", NUM, CFG(cluster_dead_ms), RANGE(300, 600000), 0, "MS",
	 "a router silent this long is gone; heartbeats\n"
	 "every sixth of it (default 3000)",
	 NULL},
	{NULL, "cluster-user", TEXT, CFG(cluster_user), ANY, 0, "U",
	 "user for NATS servers that require one", NULL},
	{NULL, "cluster-pass-file", TEXT, CFG(cluster_pass_file), ANY, 0, "FILE",
	 "its password, read from FILE (a trailing\n"
	 "newline is dropped)",
	 NULL},
	{NULL, "cluster-pass", TEXT, CFG(cluster_pass), ANY, 0, "S",
	 "the password itself (visible in the process\n"
	 "list: prefer the file)",
	 NULL},
	{NULL, "cluster-token-file", TEXT, CFG(cluster_token_file), ANY, 0, "FILE",
	 "an authorization token instead, from FILE", NULL},
	{NULL, "cluster-token", TEXT, CFG(cluster_token), ANY, 0, "S", "the token itself", NULL},
	{NULL, "cluster-ca", TEXT, CFG(cluster_ca), ANY, 0, "FILE",
	 "PEM CA the NATS servers' certificates must be\n"
	 "signed by: TLS to every server (without it,\n"
	 "tls:// URLs use the system's CAs)",
	 NULL},
	{NULL, "cluster-cert", TEXT, CFG(cluster_cert), ANY, 0, "FILE",
	 "PEM certificate for servers that verify clients", NULL},
	{NULL, "cluster-key", TEXT, CFG(cluster_key), ANY, 0, "FILE",
	 "its PEM private key (default: in the\n"
	 "--cluster-cert file)",
	 NULL},
	{NULL, "cluster-spill", NUM, CFG(cluster_spill), RANGE(0, 1u << 24), 0, "N",
	 "send a request to another router with the\n"
	 "name once each handler here has N in flight\n"
	 "(default 64; 0 = always a handler here)",
	 NULL},
};
#define NSETTINGS (sizeof table / sizeof table[0])

/* The flags that are not settings: getopt returns these for them. */
enum { O_CONFIG = 'f', O_HELP = 'h', O_VERSION = 'V', O_SETTING = 256 };

/* The help column: flags and their values left of it, text from it on. */
#define HELP_COLUMN 24

static void usage(FILE *out)
{
	fprintf(out, "usage: switchboard [OPTIONS]\n\nRuns the Switchboard message router.\n\n");
	for (size_t i = 0; i < NSETTINGS; i++) {
		const struct setting *t = &table[i];
		char left[64];
		if (t->section != NULL)
			fprintf(out, "\n%s\n", t->section);
		int n = snprintf(left, sizeof left, "  --%s%s%s", t->name, t->arg ? " " : "",
				 t->arg ? t->arg : "");
		/* A flag too long for the column puts its text on the next line,
		 * so every description starts in the same column. */
		if (n + 2 > HELP_COLUMN)
			fprintf(out, "%s\n%*s", left, HELP_COLUMN, "");
		else
			fprintf(out, "%s%*s", left, HELP_COLUMN - n, "");
		for (const char *p = t->help; *p != 0;) {
			size_t len = strcspn(p, "\n");
			fprintf(out, "%.*s\n", (int)len, p);
			p += len;
			if (*p == '\n' && *++p != 0)
				fprintf(out, "%*s", HELP_COLUMN, "");
		}
	}
	fprintf(out, "\n"
		     "  --config FILE         read settings from FILE first: one `key = value`\n"
		     "                        per line, the keys being these flags' names\n"
		     "                        (`max-conns = 100`), `#` starts a comment; flags\n"
		     "                        given here apply on top. SIGHUP reads it again\n"
		     "                        and reloads the TLS files and lists, the secrets,\n"
		     "                        the name rules and drain-ms; the others change\n"
		     "                        only with a restart (docs/daemon.md)\n"
		     "  --help                this text\n"
		     "  --version             print the version and exit\n");
}

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

/* A number setting's value, whatever the width of its field. */
static unsigned long long num_get(const struct settings *s, const struct setting *t)
{
	const char *f = (const char *)s + t->off;
	uint16_t v16;
	uint32_t v32;
	uint64_t v64;
	switch (t->size) {
	case 2:
		memcpy(&v16, f, 2);
		return v16;
	case 4:
		memcpy(&v32, f, 4);
		return v32;
	default:
		memcpy(&v64, f, 8);
		return v64;
	}
}

static void num_set(struct settings *s, const struct setting *t, unsigned long v)
{
	char *f = (char *)s + t->off;
	uint16_t v16 = (uint16_t)v;
	uint32_t v32 = (uint32_t)v;
	uint64_t v64 = v;
	memcpy(f,
	       t->size == 2   ? (void *)&v16
	       : t->size == 4 ? (void *)&v32
			      : (void *)&v64,
	       t->size);
}

/* One setting from a flag or a config line. */
static void apply(struct settings *s, const struct setting *t, const char *val)
{
	void *f = (char *)s + t->off;
	const char *why;

	switch (t->type) {
	case NUM:
		num_set(s, t, number(s, t->name, val, t->lo, t->hi));
		break;
	case TEXT:
		if (t->check != NULL && (why = t->check(val)) != NULL)
			fail(s, t->name, val, why);
		memcpy(f, &val, sizeof val);
		break;
	case YES:
		*(int *)f = 1;
		break;
	case LIST:
		list_add(s, f, t->name, val);
		break;
	}
}

static struct settings *settings_new(void)
{
	struct settings *s = calloc(1, sizeof *s);
	if (s == NULL) {
		fprintf(stderr, "%sswitchboard: out of memory\n", level(3));
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
	const struct setting *t = table;
	while (t < table + NSETTINGS && strcmp(t->name, key) != 0)
		t++;
	if (t == table + NSETTINGS) {
		fail(s, key, NULL,
		     "not a setting (the keys are switchboard's long flags: switchboard --help)");
		return;
	}
	if (t->type == YES) {
		int on = yes_no(val != NULL ? val : "");
		if (on < 0)
			fail(s, key, val, "expected yes or no");
		else if (on)
			apply(s, t, NULL);
		return;
	}
	if (val == NULL || *val == 0) {
		fail(s, key, NULL, "needs a value (key = value)");
		return;
	}
	apply(s, t, own(s, val, strlen(val)));
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
		apply(s, &table[args[i].opt - O_SETTING], args[i].val);
	if (s->cfg.max_frame > s->cfg.out_max)
		s->cfg.out_max = s->cfg.max_frame;
	s->cfg.tls_allow = s->allow.v;
	s->cfg.tls_deny = s->deny.v;
	if (s->placement != NULL && strcmp(s->placement, "kernel") == 0)
		s->cfg.placement = SB_PLACEMENT_KERNEL;
	return s;
}

/* What a setting SIGHUP does not apply is said rather than passed over, so
 * an edited config file never fails silently. Lists are not compared:
 * every list setting reloads. */
static void note_restart_only(const struct settings *now, const struct settings *asked)
{
	for (const struct setting *t = table; t < table + NSETTINGS; t++) {
		if (t->reload)
			continue;
		if ((t->type == NUM || t->type == YES) && num_get(now, t) != num_get(asked, t))
			fprintf(stderr,
				"%sswitchboard: reload: %s changes only with a restart (still "
				"%llu, not %llu)\n",
				level(4), t->name, num_get(now, t), num_get(asked, t));
		if (t->type == TEXT) {
			const char *a, *b;
			memcpy(&a, (const char *)now + t->off, sizeof a);
			memcpy(&b, (const char *)asked + t->off, sizeof b);
			/* A secret's value is not written out, only that it differs. */
			int secret = strcmp(t->name, "cluster-pass") == 0 ||
				     strcmp(t->name, "cluster-token") == 0;
			if (secret &&
			    ((a == NULL) != (b == NULL) || (a != NULL && strcmp(a, b) != 0)))
				fprintf(stderr,
					"%sswitchboard: reload: %s changes only with a restart\n",
					level(4), t->name);
			else if ((a == NULL) != (b == NULL) || (a != NULL && strcmp(a, b) != 0))
				fprintf(stderr,
					"%sswitchboard: reload: %s changes only with a restart "
					"(still "
					"%s, not %s)\n",
					level(4), t->name, a != NULL ? a : "its default",
					b != NULL ? b : "its default");
		}
	}
}

/* SIGHUP: the file and flags again; the router takes what reloads. */
static void reload(struct sb_router *r, const struct settings *now, const char *config,
		   const struct arg *args, size_t nargs, unsigned *drain_ms)
{
	struct settings *s = build(config, args, nargs);

	if (s->err[0] != 0)
		printf("switchboard: SIGHUP: %s; the settings in force stay\n", s->err);
	else if (sb_router_reload(r, &s->cfg) != 0)
		printf("switchboard: SIGHUP: reload refused (the log says why); the settings in "
		       "force stay\n");
	else {
		note_restart_only(now, s);
		*drain_ms = s->drain_ms;
		printf("switchboard: SIGHUP: settings reloaded%s%s\n", config ? " from " : "",
		       config ? config : "");
	}
	settings_free(s); /* the router keeps nothing of it */
}

/* systemd's notify protocol (sd_notify(3)); without NOTIFY_SOCKET (not
 * under systemd) each call does nothing. MONOTONIC_USEC goes with
 * RELOADING=1: systemd 253 and later (Type=notify-reload) want it, older
 * ones ignore it. */
static void notify(const char *state)
{
	sd_notify(0, state);
}

static void notify_reloading(void)
{
	char msg[64];
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu",
		 (unsigned long long)ts.tv_sec * 1000000ull +
			 (unsigned long long)ts.tv_nsec / 1000);
	notify(msg);
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
	struct option opts[NSETTINGS + 4];
	for (size_t i = 0; i < NSETTINGS; i++)
		opts[i] = (struct option){table[i].name,
					  table[i].type == YES ? no_argument : required_argument,
					  NULL, O_SETTING + (int)i};
	opts[NSETTINGS] = (struct option){"config", required_argument, NULL, O_CONFIG};
	opts[NSETTINGS + 1] = (struct option){"help", no_argument, NULL, O_HELP};
	opts[NSETTINGS + 2] = (struct option){"version", no_argument, NULL, O_VERSION};
	opts[NSETTINGS + 3] = (struct option){NULL, 0, NULL, 0};
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case O_CONFIG:
			config = optarg;
			break;
		case O_HELP:
			usage(stdout);
			rc = 0;
			goto out;
		case O_VERSION:
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
		fprintf(stderr, "%sswitchboard: unexpected argument %s\n", level(3), argv[optind]);
		goto out;
	}
	s = build(config, args, nargs);
	if (s->err[0] != 0) {
		fprintf(stderr, "%sswitchboard: %s\n", level(3), s->err);
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
				"%sswitchboard: --name-pattern %s: expected one run of # and a "
				"peer name around it (no spaces, at most 54 bytes besides the "
				"counter)\n",
				level(3), s->cfg.name_pattern);
		if (!pattern)
			fprintf(stderr,
				"%sswitchboard: invalid settings (the log above names a TLS, "
				"secret, name-rule or cluster one)\n",
				level(3));
		goto out;
	}
	if (r == NULL) {
		fprintf(stderr, "%sswitchboard: cannot start on %s:%u: %s\n", level(3), s->cfg.addr,
			s->cfg.port, err == SB_ESYS ? strerror(errno) : sb_strerror(err));
		rc = 1;
		goto out;
	}
	if ((err = sb_router_start(r)) != 0) {
		fprintf(stderr, "%sswitchboard: cannot start: %s (%s)\n", level(3),
			sb_strerror(err), strerror(errno));
		sb_router_free(r);
		rc = 1;
		goto out;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("switchboard %s: listening on %s:%u (%u shards%s)\n", SB_VERSION_STRING, s->cfg.addr,
	       sb_router_port(r), sb_router_shards(r), s->cfg.tls_cert != NULL ? ", TLS" : "");
	if (sb_router_ws_port(r) != 0)
		printf("switchboard: WebSocket and HTTP on %s:%u\n", s->cfg.addr,
		       sb_router_ws_port(r));
	if (sb_router_admin_port(r) != 0)
		printf("switchboard: admin on http://%s:%u/ (the page; /metrics for Prometheus)\n",
		       s->cfg.admin_addr, sb_router_admin_port(r));

	/* sb_router_start() returned: every shard listens on every port. */
	char status[160];
	snprintf(status, sizeof status, "READY=1\nSTATUS=listening on %s:%u (%u shards)",
		 s->cfg.addr, sb_router_port(r), sb_router_shards(r));
	notify(status);

	/* With WatchdogSec=, systemd wants WATCHDOG=1 within WATCHDOG_USEC: it
	 * is sent at half of that, between signals. It shows this thread
	 * alive; the shards do not report to it. */
	uint64_t wd_usec = 0;
	if (sd_watchdog_enabled(0, &wd_usec) <= 0)
		wd_usec = 0;
	struct timespec wd = {(time_t)(wd_usec / 2 / 1000000),
			      (long)(wd_usec / 2 % 1000000) * 1000};
	int sig;
	for (;;) {
		if (wd_usec > 0) {
			sig = sigtimedwait(&sigs, NULL, &wd);
			if (sig < 0) { /* the half-period passed (or EINTR): a ping */
				notify("WATCHDOG=1");
				continue;
			}
		} else
			sigwait(&sigs, &sig);
		if (sig != SIGHUP)
			break;
		notify_reloading();
		reload(r, s, config, args, nargs, &drain_ms);
		notify("READY=1");
	}
	notify("STOPPING=1\nSTATUS=draining");
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
