/* sbctl: send, request, listen and inspect a router from the shell, over the
 * client library. Payloads are typed and printed as JSON (core/common/json.c). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>
#include <switchboard/client.h>
#include <switchboard/proto.h>

#include "common/json.h"

/* Exit codes, part of the interface: scripts branch on them. */
enum {
	EXIT_OK = 0,        /* done; for request, the final reply was not an error */
	EXIT_FAILED = 1,    /* an error reply, a timeout, no handler, connection lost */
	EXIT_USAGE = 2,     /* bad flags or arguments, invalid JSON */
	EXIT_NO_ROUTER = 3, /* the router could not be reached (or refused us) */
};

/* getopt values of the TLS flags: past every letter, so none collides. */
enum { OPT_TLS = 256, OPT_TLS_CA, OPT_TLS_CERT, OPT_TLS_KEY, OPT_TLS_NAME };

/* Which command-specific flags a command takes. */
#define F_TIMEOUT 0x1u
#define F_ECHO    0x2u
#define F_COUNT   0x4u
#define F_TO      0x8u
#define F_ALL     0x10u
#define F_SCHEMA  0x20u

/* Everything the command line says. */
struct opts {
	char host[256];      /* router host, from --router */
	uint16_t port;       /* router port, from --router */
	const char *name;    /* --name: peer name to ask for, or NULL */
	int json;            /* --json: machine output */
	unsigned connect_ms; /* --connect-timeout: how long to wait to be online */
	uint32_t timeout_ms; /* --timeout: request timeout, 0 = the router's */
	int echo;            /* listen --echo */
	unsigned long count; /* listen, presence --count, 0 = forever */
	const char *to;      /* send, request --to: the peer */
	int all;             /* send, request --all: every handler */
	const char *schema;  /* listen --schema: the argument schema as JSON, or NULL */
	unsigned given;      /* F_* flags that appeared, checked against the command */
	const char *admin;   /* prefix of the router's reserved names ("$sb.") */
	const char *secret;  /* from --secret-file, else $SB_SECRET, else NULL */
	int tls;             /* --tls, or any --tls-* flag */
	const char *tls_ca, *tls_cert, *tls_key, *tls_server_name; /* --tls-* files and name */
};

struct command {
	const char *name;       /* "request" */
	unsigned flags;         /* F_* it accepts */
	int min_args, max_args; /* positional arguments after the command name */
	const char *usage;      /* the synopsis after "sbctl [OPTIONS] " */
	const char *summary;    /* one line for the command list */
	const char *help;       /* the rest of "sbctl help COMMAND" */
	int (*run)(const struct opts *o, char **args, int nargs);
};

static const struct command *find_command(const char *name);

static const char global_options[] =
	"Options (before or after the command):\n"
	"  --router HOST:PORT    the router (default 127.0.0.1:7400)\n"
	"  --name NAME           peer name to ask for (default: the router assigns one)\n"
	"  --json                machine output: one JSON object per line\n"
	"  --connect-timeout MS  how long to wait for the router (default 2000)\n"
	"  --secret-file FILE    the shared secret of our role, for a router that\n"
	"                        asks for one (default: $SB_SECRET, else none)\n"
	"  --tls                 connect with TLS 1.3, verifying the router's certificate\n"
	"  --tls-ca FILE         PEM CA the router's certificate must be signed by\n"
	"                        (default: the system's CA certificates)\n"
	"  --tls-server-name N   name the certificate must carry (default: the host)\n"
	"  --tls-cert FILE       PEM client certificate, for routers that require one\n"
	"  --tls-key FILE        its PEM key (default: in the --tls-cert file)\n"
	"                        (each --tls-* flag implies --tls)\n"
	"  --help                this text; after a command, that command's\n"
	"  --version             print the version and exit\n";

static const char exit_codes[] =
	"Exit codes:\n"
	"  0  ok\n"
	"  1  the request ended in an error reply, a timeout or no handler\n"
	"     (stderr says which), or the connection was lost; with --all,\n"
	"     also when any peer's result was an error\n"
	"  2  usage error or invalid JSON\n"
	"  3  cannot connect to the router\n";

static void usage(FILE *out);

/* ---- small helpers -------------------------------------------------------- */

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Parses a decimal in [lo, hi] or exits with a message naming the flag. */
static unsigned long number(const char *flag, const char *s, unsigned long lo, unsigned long hi)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno != 0 || *end != 0 || *s == '-' || *s == 0 || v < lo || v > hi) {
		fprintf(stderr, "sbctl: --%s %s: expected a number from %lu to %lu\n", flag, s, lo,
			hi);
		exit(EXIT_USAGE);
	}
	return v;
}

/* The rules the router applies to a peer name, through the codec. */
static int peer_name_ok(const char *name)
{
	struct sb_msg m = {.kind = SB_HELLO, .version = SB_PROTO_VERSION};
	m.peer = (struct sb_view){(const uint8_t *)name, (uint32_t)strlen(name)};
	m.role = (struct sb_view){(const uint8_t *)"client", 6};
	return sb_encoded_size(&m) > 0;
}

/* A secret file holds the secret and perhaps a newline after it; it is read
 * from a file (or the environment) so it never shows in a process list. */
static const char *read_secret(const char *path)
{
	static char buf[4097];
	FILE *f = fopen(path, "r");
	size_t n = f != NULL ? fread(buf, 1, sizeof buf - 1, f) : 0;

	if (f == NULL || ferror(f) || !feof(f) || n == 0) {
		fprintf(stderr, "sbctl: --secret-file %s: %s\n", path,
			f == NULL ? strerror(errno)
			: n == 0  ? "the file is empty"
				  : "cannot read it whole (4096 bytes at most)");
		if (f != NULL)
			fclose(f);
		exit(EXIT_USAGE);
	}
	fclose(f);
	if (buf[n - 1] == '\n')
		n -= 1 + (n > 1 && buf[n - 2] == '\r');
	buf[n] = 0;
	if (n == 0 || strlen(buf) != n) {
		fprintf(stderr, "sbctl: --secret-file %s: %s\n", path,
			n == 0 ? "the file is empty" : "the secret contains a NUL byte");
		exit(EXIT_USAGE);
	}
	return buf;
}

static void parse_router(struct opts *o, const char *s)
{
	const char *colon = strrchr(s, ':');

	if (colon == NULL || colon == s || (size_t)(colon - s) >= sizeof o->host) {
		fprintf(stderr, "sbctl: --router %s: expected HOST:PORT\n", s);
		exit(EXIT_USAGE);
	}
	memcpy(o->host, s, (size_t)(colon - s));
	o->host[colon - s] = 0;
	o->port = (uint16_t)number("router", colon + 1, 1, 65535);
}

/* The JSON text of a payload, or a note when it cannot be printed (the
 * library has checked it is one MessagePack value, so only depth fails). */
static const char *payload_json(struct sb__json_buf *b, const void *p, size_t len)
{
	b->len = 0;
	if (p == NULL || len == 0)
		return "null";
	if (sb__json_print(p, len, b) != 0)
		return "\"<payload not printable as JSON>\"";
	return b->data;
}

static const char *quoted(struct sb__json_buf *b, const char *s)
{
	/* A one-string MessagePack value printed back gives JSON string escaping. */
	struct sb__json_buf mp = {0};
	size_t n = strlen(s);
	unsigned char h[5] = {0xdb, (unsigned char)(n >> 24), (unsigned char)(n >> 16),
			      (unsigned char)(n >> 8), (unsigned char)n};

	b->len = 0;
	mp.data = malloc(5 + n);
	if (mp.data == NULL)
		return "\"\"";
	memcpy(mp.data, h, 5);
	memcpy(mp.data + 5, s, n);
	int rc = sb__json_print(mp.data, 5 + n, b);
	free(mp.data);
	return rc == 0 ? b->data : "\"\"";
}

/* "error: TEXT (code NAME)" on stderr; with --json also an object on stdout. */
static void print_error(const struct opts *o, int err, const char *text)
{
	struct sb__json_buf b = {0};

	if (text == NULL || *text == 0)
		text = sb_strerror(err);
	fprintf(stderr, "error: %s (code %s)\n", text, sb_errname(err));
	if (o->json)
		printf("{\"error\":\"%s\",\"code\":%d,\"text\":%s}\n", sb_errname(err), err,
		       quoted(&b, text));
	sb__json_buf_free(&b);
}

static int parse_payload(const char *text, struct sb__json_buf *mp)
{
	struct sb__json_error e;

	if (text == NULL)
		return 0; /* no payload: nil */
	if (sb__json_parse(text, strlen(text), mp, &e) != 0) {
		sb__json_buf_free(mp);
		fprintf(stderr, "sbctl: invalid JSON at byte %zu: %s\n", e.at, e.what);
		return -1;
	}
	return 0;
}

/* ---- the connection ------------------------------------------------------- */

/* What on_state saw: a refusal (fatal, or a registration) ends the command. */
struct conn_state {
	int refused; /* the router's code from SB_CLIENT_ERROR, or 0 */
};

static void on_state(struct sb_client *c, enum sb_client_state s, int err, void *ud)
{
	struct conn_state *st = ud;

	(void)c;
	if (s == SB_CLIENT_ERROR && st->refused == 0)
		st->refused = err;
}

static struct conn_state conn;

/* Creates the client and waits until it is online (handlers ACKed), or
 * exits 3: the library retries an unreachable router forever, so the
 * deadline is ours. */
static struct sb_client *connect_router(const struct opts *o, const char *role)
{
	struct sb_client_config cfg;
	int err = 0;

	sb_client_config_init(&cfg);
	cfg.host = o->host;
	cfg.port = o->port;
	cfg.name = o->name;
	cfg.role = role;
	cfg.secret = o->secret;
	cfg.reconnect_min_ms = 50;
	cfg.reconnect_max_ms = 500;
	cfg.on_state = on_state;
	cfg.ud = &conn;
	cfg.tls = o->tls;
	cfg.tls_ca = o->tls_ca;
	cfg.tls_cert = o->tls_cert;
	cfg.tls_key = o->tls_key;
	cfg.tls_server_name = o->tls_server_name;
	/* The library only says a TLS setting is invalid: say which file. */
	const char *files[][2] = {
		{"--tls-ca", o->tls_ca}, {"--tls-cert", o->tls_cert}, {"--tls-key", o->tls_key}};
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
		if (files[i][1] != NULL && access(files[i][1], R_OK) != 0) {
			fprintf(stderr, "sbctl: %s %s: %s\n", files[i][0], files[i][1],
				strerror(errno));
			exit(EXIT_USAGE);
		}
	struct sb_client *c = sb_client_new(&cfg, &err);
	if (c == NULL) {
		if (err == SB_EINVAL && o->tls) {
			fprintf(stderr, "sbctl: the TLS files do not load (not PEM, or the key "
					"does not match the certificate), or --name is invalid\n");
			exit(EXIT_USAGE);
		}
		if (err == SB_EINVAL) {
			fprintf(stderr, "sbctl: --name %s: not a valid peer name\n",
				o->name ? o->name : "");
			exit(EXIT_USAGE);
		}
		fprintf(stderr, "sbctl: cannot create a client: %s\n",
			err == SB_ESYS ? strerror(errno) : sb_strerror(err));
		exit(EXIT_NO_ROUTER);
	}
	return c;
}

static int wait_online(struct sb_client *c, const struct opts *o)
{
	uint64_t deadline = now_ms() + o->connect_ms;

	while (!sb_client_online(c)) {
		uint64_t now = now_ms();
		int rc;
		if (now >= deadline) {
			const char *why = sb_client_last_error(c);
			fprintf(stderr,
				"sbctl: cannot connect to the router at %s:%u (no answer "
				"within %u ms)%s%s\n",
				o->host, o->port, o->connect_ms, *why ? ": " : "", why);
			return EXIT_NO_ROUTER;
		}
		int t = sb_client_timeout(c);
		if (t < 0 || (uint64_t)t > deadline - now)
			t = (int)(deadline - now);
		if ((rc = sb_client_process(c, t)) < 0) {
			const char *why = sb_client_last_error(c);
			fprintf(stderr,
				"sbctl: the router refused the connection: %s (code %s)%s%s\n",
				sb_strerror(rc), sb_errname(rc), *why ? ": " : "", why);
			return EXIT_NO_ROUTER;
		}
	}
	return EXIT_OK;
}

/* Writes what is queued, for at most @p ms: send and listen end right
 * after their last frame, which must not be lost in the output buffer. */
static void flush(struct sb_client *c, unsigned ms)
{
	uint64_t deadline = now_ms() + ms;

	while ((sb_client_events(c) & POLLOUT) && sb_client_fd(c) >= 0) {
		uint64_t now = now_ms();
		if (now >= deadline || sb_client_process(c, (int)(deadline - now)) < 0)
			break;
	}
}

/* sb_send() or sb_request() said no before anything was sent. The payload
 * is ours and well-formed, so SB_EINVAL means the name: a usage error. */
static int refused_locally(const struct opts *o, const char *name, int err)
{
	if (err == SB_EINVAL) {
		fprintf(stderr, "sbctl: %s: not a valid message name\n", name);
		return EXIT_USAGE;
	}
	print_error(o, err, NULL);
	return EXIT_FAILED;
}

/* ---- send and request ----------------------------------------------------- */

static int cmd_send(const struct opts *o, char **args, int nargs)
{
	struct sb__json_buf mp = {0};
	int rc;

	if (parse_payload(nargs > 1 ? args[1] : NULL, &mp) != 0)
		return EXIT_USAGE;
	struct sb_client *c = connect_router(o, "client");
	rc = wait_online(c, o);
	if (rc == EXIT_OK) {
		int err = o->to != NULL ? sb_send_to(c, o->to, args[0], mp.data, mp.len)
			  : o->all      ? sb_broadcast(c, args[0], mp.data, mp.len)
					: sb_send(c, args[0], mp.data, mp.len);
		if (err != 0) {
			rc = refused_locally(o, args[0], err);
		} else {
			flush(c, 2000);
			if (o->json)
				printf("{\"sent\":true}\n");
		}
	}
	sb_client_free(c);
	sb__json_buf_free(&mp);
	return rc;
}

/* One request's progress, for on_reply. */
struct pending {
	const struct opts *o; /* how to print */
	int done;             /* the terminal event came */
	int err;              /* its code (0 for a final reply) */
	int keep;             /* keep the final payload instead of printing it */
	void *payload;        /* with keep: a copy of the final payload */
	size_t len;           /* its length */
	int failed_peers;     /* --all: peers whose result was an error */
};

/* One peer's part of a broadcast request (--all), or its aggregate. */
static void on_all_reply(struct sb_client *c, struct pending *pd, int err, const char *outcome,
			 const void *payload, size_t len, int more)
{
	struct sb__json_buf b = {0}, q = {0}, pq = {0};
	const char *peer = sb_reply_peer(c);
	struct sb_all_counts n;

	if (more == 0) { /* the aggregate: "$sb.all" and the counts */
		pd->done = 1;
		if (sb_all_counts(payload, len, &n) != 0) {
			fprintf(stderr, "sbctl: the aggregate came in an unexpected shape: %s\n",
				payload_json(&b, payload, len));
			pd->err = SB_EBADFRAME;
		} else if (pd->o->json)
			printf("{\"all\":{\"peers\":%u,\"ok\":%u,\"errors\":%u,\"timeouts\":%u,"
			       "\"gone\":%u}}\n",
			       n.peers, n.ok, n.errors, n.timeouts, n.gone);
		else
			printf("all: %u peers, %u ok, %u errors, %u timeouts, %u gone\n", n.peers,
			       n.ok, n.errors, n.timeouts, n.gone);
		sb__json_buf_free(&b);
		return;
	}
	if (peer == NULL)
		peer = "?";
	if (err < 0) {
		pd->failed_peers++;
		if (pd->o->json)
			printf("{\"peer\":%s,\"error\":\"%s\",\"code\":%d,\"text\":%s}\n",
			       quoted(&pq, peer), sb_errname(err), err, quoted(&q, outcome));
		else
			printf("%s  error: %s (code %s)\n", peer, outcome, sb_errname(err));
	} else if (pd->o->json) {
		printf("{\"peer\":%s,\"outcome\":%s,\"more\":%s,\"payload\":%s}\n",
		       quoted(&pq, peer), quoted(&q, outcome),
		       more == SB_MORE_CHUNK ? "true" : "false", payload_json(&b, payload, len));
	} else if (more == SB_MORE_CHUNK) {
		printf("%s  %s  %s  (more: chunk)\n", peer, outcome,
		       payload_json(&b, payload, len));
	} else {
		printf("%s  %s  %s\n", peer, outcome, payload_json(&b, payload, len));
	}
	sb__json_buf_free(&b);
	sb__json_buf_free(&q);
	sb__json_buf_free(&pq);
}

static void on_reply(struct sb_client *c, uint64_t req, int err, const char *outcome,
		     const void *payload, size_t len, int more, void *ud)
{
	struct pending *pd = ud;
	struct sb__json_buf b = {0}, q = {0};

	(void)req;
	if (pd->o->all && (more != 0 || err == 0)) {
		on_all_reply(c, pd, err, outcome, payload, len, more);
		return;
	}
	if (err < 0) {
		print_error(pd->o, err, outcome);
		pd->err = err;
		pd->done = 1;
		return;
	}
	if (!more)
		pd->done = 1;
	if (pd->keep) {
		if (!more && len > 0 && (pd->payload = malloc(len)) != NULL) {
			memcpy(pd->payload, payload, len);
			pd->len = len;
		}
		return;
	}
	const char *json = payload_json(&b, payload, len);
	if (pd->o->json)
		printf("{\"outcome\":%s,\"more\":%s,\"payload\":%s}\n", quoted(&q, outcome),
		       more ? "true" : "false", json);
	else if (more)
		printf("%s  %s  (%s)\n", outcome, json,
		       more == SB_MORE_CHUNK ? "more: chunk" : "more: progress");
	else
		printf("%s  %s\n", outcome, json);
	sb__json_buf_free(&b);
	sb__json_buf_free(&q);
}

/* Requests @p name and processes until its terminal event; the library's
 * local deadline (timeout + 1 s) bounds the wait. */
static int run_request(struct sb_client *c, const char *name, const struct sb__json_buf *mp,
		       struct pending *pd)
{
	const struct opts *o = pd->o;
	int err = o->to != NULL ? sb_request_to(c, o->to, name, mp->data, mp->len, o->timeout_ms,
						on_reply, pd, NULL)
		  : o->all ? sb_request_all(c, name, mp->data, mp->len, o->timeout_ms, on_reply, pd,
					    NULL)
			   : sb_request(c, name, mp->data, mp->len, o->timeout_ms, on_reply, pd,
					NULL);
	if (err != 0)
		return refused_locally(pd->o, name, err);
	while (!pd->done) {
		int t = sb_client_timeout(c);
		if (sb_client_process(c, t < 0 ? 1000 : t) < 0 && !pd->done) {
			print_error(pd->o, SB_EOFFLINE, NULL);
			return EXIT_FAILED;
		}
	}
	return pd->err == 0 && pd->failed_peers == 0 ? EXIT_OK : EXIT_FAILED;
}

static int cmd_request(const struct opts *o, char **args, int nargs)
{
	struct sb__json_buf mp = {0};
	struct pending pd = {.o = o};
	int rc;

	if (parse_payload(nargs > 1 ? args[1] : NULL, &mp) != 0)
		return EXIT_USAGE;
	struct sb_client *c = connect_router(o, "client");
	rc = wait_online(c, o);
	if (rc == EXIT_OK)
		rc = run_request(c, args[0], &mp, &pd);
	sb_client_free(c);
	sb__json_buf_free(&mp);
	return rc;
}

/* ---- listen --------------------------------------------------------------- */

/* What a listener has seen. */
struct listener {
	const struct opts *o; /* what to reply, when to stop */
	unsigned long seen;   /* messages handled */
};

static struct sb_client *stop_on_signal;

static void on_signal(int sig)
{
	(void)sig;
	if (stop_on_signal != NULL)
		sb_client_stop(stop_on_signal); /* the one call that is safe here */
}

static void on_call(struct sb_client *c, struct sb_call *call, void *ud)
{
	struct listener *l = ud;
	struct sb__json_buf b = {0}, q = {0};
	size_t len;
	const void *p = sb_call_payload(call, &len);
	int is_request = sb_call_is_request(call);

	const char *json = payload_json(&b, p, len);
	if (l->o->json)
		printf("{\"name\":%s,\"request\":%s,\"payload\":%s}\n",
		       quoted(&q, sb_call_name(call)), is_request ? "true" : "false", json);
	else
		printf("%s  %s  %s\n", is_request ? "request" : "send", sb_call_name(call), json);
	fflush(stdout);
	if (is_request) {
		int err =
			l->o->echo ? sb_reply(call, "echo", p, len) : sb_reply(call, "ok", NULL, 0);
		if (err != 0)
			fprintf(stderr, "sbctl: reply to %s failed: %s (code %s)\n",
				sb_call_name(call), sb_strerror(err), sb_errname(err));
	}
	sb__json_buf_free(&b);
	sb__json_buf_free(&q);
	if (l->o->count > 0 && ++l->seen >= l->o->count)
		sb_client_stop(c);
}

static int cmd_listen(const struct opts *o, char **args, int nargs)
{
	struct listener l = {.o = o};
	int rc;

	(void)nargs;
	struct sb__json_buf schema = {0};
	char why[1024];
	if (parse_payload(o->schema, &schema) != 0)
		return EXIT_USAGE;
	/* The router's own words, before connecting: the library only says
	 * SB_EINVAL. */
	if (sb_schema_validate(schema.data, schema.len, why, sizeof why) != 0) {
		fprintf(stderr, "sbctl: --schema: %s\n", why);
		sb__json_buf_free(&schema);
		return EXIT_USAGE;
	}
	struct sb_client *c = connect_router(o, "service");
	int err = sb_client_register_schema(c, args[0], 0, schema.data, schema.len, on_call, &l);
	sb__json_buf_free(&schema);
	if (err != 0) {
		fprintf(stderr, "sbctl: cannot listen on %s: %s (code %s)\n", args[0],
			sb_strerror(err), sb_errname(err));
		sb_client_free(c);
		return EXIT_USAGE;
	}
	rc = wait_online(c, o);
	if (rc == EXIT_OK && conn.refused != 0) {
		fprintf(stderr, "sbctl: the router refused to register %s: %s (code %s)\n", args[0],
			sb_strerror(conn.refused), sb_errname(conn.refused));
		rc = EXIT_FAILED;
	}
	if (rc == EXIT_OK) {
		/* Scripts (and the tests) wait for this line before sending. */
		fprintf(stderr, "sbctl: listening on %s\n", args[0]);
		stop_on_signal = c;
		signal(SIGINT, on_signal);
		signal(SIGTERM, on_signal);
		err = sb_client_run(c);
		stop_on_signal = NULL;
		flush(c, 2000);
		if (err != 0) {
			fprintf(stderr, "sbctl: the router refused us: %s (code %s)\n",
				sb_strerror(err), sb_errname(err));
			rc = EXIT_FAILED;
		}
	}
	sb_client_free(c);
	return rc;
}

/* ---- presence -------------------------------------------------------------- */

static void on_presence(struct sb_client *c, const struct sb_presence *p, void *ud)
{
	static const char *const events[] = {[SB_PEER_CONNECTED] = "connected",
					     [SB_PEER_DISCONNECTED] = "disconnected",
					     [SB_PEER_DRAINING] = "draining"};
	struct listener *l = ud;
	struct sb__json_buf q = {0}, s = {0};
	const char *event =
		(unsigned)p->event < sizeof events / sizeof events[0] && events[p->event] != NULL
			? events[p->event]
			: "?";

	if (l->o->json) {
		printf("{\"event\":\"%s\",\"peer\":%s,\"id\":%" PRIu32 ",\"role\":\"%s\"", event,
		       quoted(&q, p->peer), p->peer_id, p->role);
		if (p->subject != NULL)
			printf(",\"subject\":%s", quoted(&s, p->subject));
		printf("}\n");
	} else {
		printf("%s  %s  %" PRIu32 "  %s", event, p->peer, p->peer_id, p->role);
		if (p->subject != NULL)
			printf("  %s", p->subject);
		printf("\n");
	}
	fflush(stdout);
	sb__json_buf_free(&q);
	sb__json_buf_free(&s);
	if (l->o->count > 0 && ++l->seen >= l->o->count)
		sb_client_stop(c);
}

static int cmd_presence(const struct opts *o, char **args, int nargs)
{
	struct listener l = {.o = o};
	int rc;

	(void)args;
	(void)nargs;
	struct sb_client *c = connect_router(o, "client");
	if (sb_client_presence(c, on_presence, &l) != 0) {
		fprintf(stderr, "sbctl: out of memory\n");
		sb_client_free(c);
		return EXIT_FAILED;
	}
	rc = wait_online(c, o); /* online once the router has ACKed the subscription */
	if (rc == EXIT_OK && conn.refused != 0) {
		fprintf(stderr, "sbctl: the router refused the subscription: %s (code %s)\n",
			sb_strerror(conn.refused), sb_errname(conn.refused));
		rc = EXIT_FAILED;
	}
	if (rc == EXIT_OK) {
		fprintf(stderr, "sbctl: watching presence\n");
		stop_on_signal = c;
		signal(SIGINT, on_signal);
		signal(SIGTERM, on_signal);
		int err = sb_client_run(c);
		stop_on_signal = NULL;
		if (err != 0) {
			fprintf(stderr, "sbctl: the router refused us: %s (code %s)\n",
				sb_strerror(err), sb_errname(err));
			rc = EXIT_FAILED;
		}
	}
	sb_client_free(c);
	return rc;
}

/* ---- routes, peers, stats ------------------------------------------------- */

/* A table of text cells printed in aligned columns. */
struct table {
	int cols;     /* columns per row */
	int rows;     /* rows filled, the header included */
	int cap;      /* rows allocated */
	char **cells; /* rows * cols strings, malloc'd */
};

static void table_add(struct table *t, char **row)
{
	if (t->rows == t->cap) {
		int cap = t->cap ? t->cap * 2 : 16;
		char **cells = realloc(t->cells, (size_t)cap * (size_t)t->cols * sizeof *cells);
		if (cells == NULL) {
			for (int i = 0; i < t->cols; i++)
				free(row[i]);
			return;
		}
		t->cells = cells;
		t->cap = cap;
	}
	for (int i = 0; i < t->cols; i++)
		t->cells[t->rows * t->cols + i] = row[i] ? row[i] : strdup("");
	t->rows++;
}

static void table_print(struct table *t)
{
	size_t w[8] = {0};

	for (int r = 0; r < t->rows; r++)
		for (int i = 0; i < t->cols; i++) {
			const char *s = t->cells[r * t->cols + i];
			size_t n = s ? strlen(s) : 0;
			if (n > w[i])
				w[i] = n;
		}
	for (int r = 0; r < t->rows; r++) {
		for (int i = 0; i < t->cols; i++) {
			const char *s = t->cells[r * t->cols + i];
			if (i == t->cols - 1)
				printf("%s\n", s ? s : "");
			else
				printf("%-*s  ", (int)w[i], s ? s : "");
		}
	}
	for (int i = 0; i < t->rows * t->cols; i++)
		free(t->cells[i]);
	free(t->cells);
	memset(t, 0, sizeof *t);
}

static void table_header(struct table *t, int cols, ...)
{
	char *row[8];
	va_list ap;

	memset(t, 0, sizeof *t);
	t->cols = cols;
	va_start(ap, cols);
	for (int i = 0; i < cols; i++)
		row[i] = strdup(va_arg(ap, const char *));
	va_end(ap);
	table_add(t, row);
}

/* A cell: strings as they are, anything else as its JSON; "-" if absent. */
static char *cell(const msgpack_object *o)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct sb__json_buf b = {0};

	if (o == NULL)
		return strdup("-");
	if (o->type == MSGPACK_OBJECT_STR) {
		/* Not strndup: the bytes are not NUL-terminated, and ASan's
		 * strict_string_checks rightly reads strndup's argument as a string. */
		char *s = malloc(o->via.str.size + 1);
		if (s != NULL) {
			memcpy(s, o->via.str.ptr, o->via.str.size);
			s[o->via.str.size] = 0;
		}
		return s;
	}
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_object(&pk, *o);
	char *s = sb__json_print(sb.data, sb.size, &b) == 0 ? strdup(b.data) : strdup("?");
	msgpack_sbuffer_destroy(&sb);
	sb__json_buf_free(&b);
	return s;
}

static int str_is(const msgpack_object *o, const char *s)
{
	size_t n = strlen(s);
	return o->type == MSGPACK_OBJECT_STR && o->via.str.size == n &&
	       memcmp(o->via.str.ptr, s, n) == 0;
}

static const msgpack_object *field(const msgpack_object *map, const char *key)
{
	if (map == NULL || map->type != MSGPACK_OBJECT_MAP)
		return NULL;
	for (uint32_t i = 0; i < map->via.map.size; i++)
		if (str_is(&map->via.map.ptr[i].key, key))
			return &map->via.map.ptr[i].val;
	return NULL;
}

/* Each returns 0 when the reply had the documented shape and was printed. */
static int print_routes(const msgpack_object *v)
{
	struct table t;

	if (v->type != MSGPACK_OBJECT_ARRAY)
		return -1;
	table_header(&t, 3, "NAME", "PEER", "SHARD");
	for (uint32_t i = 0; i < v->via.array.size; i++) {
		const msgpack_object *route = &v->via.array.ptr[i];
		const msgpack_object *hs = field(route, "handlers");
		uint32_t n = hs && hs->type == MSGPACK_OBJECT_ARRAY ? hs->via.array.size : 0;
		if (n == 0) {
			char *row[3] = {cell(field(route, "name")), strdup("-"), strdup("-")};
			table_add(&t, row);
		}
		for (uint32_t j = 0; j < n; j++) {
			const msgpack_object *h = &hs->via.array.ptr[j];
			char *row[3] = {j == 0 ? cell(field(route, "name")) : strdup(""),
					cell(field(h, "peer")), cell(field(h, "shard"))};
			table_add(&t, row);
		}
	}
	table_print(&t);
	return 0;
}

static int print_peers(const msgpack_object *v)
{
	struct table t;

	if (v->type != MSGPACK_OBJECT_ARRAY)
		return -1;
	table_header(&t, 4, "PEER", "ID", "ROLE", "SHARD");
	for (uint32_t i = 0; i < v->via.array.size; i++) {
		const msgpack_object *p = &v->via.array.ptr[i];
		char *row[4] = {cell(field(p, "peer")), cell(field(p, "id")),
				cell(field(p, "role")), cell(field(p, "shard"))};
		table_add(&t, row);
	}
	table_print(&t);
	return 0;
}

static int print_stats(const msgpack_object *v)
{
	struct table t;

	if (v->type != MSGPACK_OBJECT_MAP)
		return -1;
	table_header(&t, 2, "COUNTER", "VALUE");
	for (uint32_t i = 0; i < v->via.map.size; i++) {
		const msgpack_object *k = &v->via.map.ptr[i].key;
		if (str_is(k, "shards") || str_is(k, "routes") || str_is(k, "routes_more"))
			continue; /* tables of their own below; every page is fetched */
		char *row[2] = {cell(k), cell(&v->via.map.ptr[i].val)};
		table_add(&t, row);
	}
	table_print(&t);
	const msgpack_object *shards = field(v, "shards");
	if (shards != NULL && shards->type == MSGPACK_OBJECT_ARRAY) {
		printf("\n");
		table_header(&t, 3, "SHARD", "CONNECTIONS", "INFLIGHT");
		for (uint32_t i = 0; i < shards->via.array.size; i++) {
			const msgpack_object *s = &shards->via.array.ptr[i];
			char *row[3] = {cell(field(s, "shard")), cell(field(s, "connections")),
					cell(field(s, "inflight"))};
			table_add(&t, row);
		}
		table_print(&t);
	}
	const msgpack_object *routes = field(v, "routes");
	if (routes != NULL && routes->type == MSGPACK_OBJECT_ARRAY && routes->via.array.size > 0) {
		printf("\n");
		table_header(&t, 8, "ROUTE", "REQUESTS", "SENDS", "REPLIES", "ERRORS", "TIMEOUTS",
			     "P50_US", "P99_US");
		for (uint32_t i = 0; i < routes->via.array.size; i++) {
			const msgpack_object *r = &routes->via.array.ptr[i];
			const msgpack_object *name = field(r, "name");
			int catch_all = name != NULL && str_is(name, "");
			char *row[8] = {catch_all ? strdup("(catch-all)") : cell(name),
					cell(field(r, "requests")),
					cell(field(r, "sends")),
					cell(field(r, "replies")),
					cell(field(r, "errors")),
					cell(field(r, "timeouts")),
					cell(field(r, "p50_us")),
					cell(field(r, "p99_us"))};
			table_add(&t, row);
		}
		table_print(&t);
	}
	return 0;
}

/* routes, peers and stats are requests to the router's reserved names. */
static int cmd_admin(const struct opts *o, const char *what, int (*print)(const msgpack_object *))
{
	struct sb__json_buf nil = {0}, b = {0};
	struct pending pd = {.o = o, .keep = 1};
	char name[128];
	int rc;

	snprintf(name, sizeof name, "%s%s", o->admin, what);
	struct sb_client *c = connect_router(o, "client");
	rc = wait_online(c, o);
	if (rc == EXIT_OK)
		rc = run_request(c, name, &nil, &pd);
	sb_client_free(c);
	if (rc != EXIT_OK)
		return rc;
	if (o->json) {
		printf("%s\n", payload_json(&b, pd.payload, pd.len));
	} else {
		msgpack_unpacked u;
		msgpack_unpacked_init(&u);
		int shaped = pd.len > 0 &&
			     msgpack_unpack_next(&u, pd.payload, pd.len, NULL) ==
				     MSGPACK_UNPACK_SUCCESS &&
			     print(&u.data) == 0;
		msgpack_unpacked_destroy(&u);
		if (!shaped) {
			fprintf(stderr, "sbctl: %s replied in an unexpected shape; as JSON:\n",
				name);
			printf("%s\n", payload_json(&b, pd.payload, pd.len));
		}
	}
	sb__json_buf_free(&b);
	free(pd.payload);
	return EXIT_OK;
}

static int cmd_routes(const struct opts *o, char **args, int nargs)
{
	(void)args;
	(void)nargs;
	return cmd_admin(o, "routes", print_routes);
}

static int cmd_peers(const struct opts *o, char **args, int nargs)
{
	(void)args;
	(void)nargs;
	return cmd_admin(o, "peers", print_peers);
}

/* $sb.stats lists the routes a page at a time (docs/protocol.md): ask
 * again after the last name while "routes_more" says so, and print (or
 * give as JSON) the first answer with every page's routes in it. */
enum { STATS_PAGES_MAX = 4096 };

static int cmd_stats(const struct opts *o, char **args, int nargs)
{
	static msgpack_unpacked pages[STATS_PAGES_MAX];
	static void *bytes[STATS_PAGES_MAX]; /* what pages[] point into */
	struct sb__json_buf arg = {0}, b = {0};
	msgpack_object *routes = NULL;
	uint32_t nroutes = 0;
	int npages = 0, rc = EXIT_OK, more = 1;
	char name[128];

	(void)args;
	(void)nargs;
	snprintf(name, sizeof name, "%sstats", o->admin);
	struct sb_client *c = connect_router(o, "client");
	rc = wait_online(c, o);
	while (rc == EXIT_OK && more && npages < STATS_PAGES_MAX) {
		struct pending pd = {.o = o, .keep = 1};
		rc = run_request(c, name, &arg, &pd);
		msgpack_unpacked *u = &pages[npages];
		msgpack_unpacked_init(u);
		npages++;
		const msgpack_object *rs = NULL, *m = NULL;
		if (rc == EXIT_OK && pd.len > 0 &&
		    msgpack_unpack_next(u, pd.payload, pd.len, NULL) == MSGPACK_UNPACK_SUCCESS) {
			rs = field(&u->data, "routes");
			m = field(&u->data, "routes_more");
		}
		bytes[npages - 1] = pd.payload;
		if (rc != EXIT_OK)
			break;
		if (rs == NULL || rs->type != MSGPACK_OBJECT_ARRAY) {
			more = 0; /* not the documented shape: shown as it came below */
			continue;
		}
		msgpack_object *nr =
			realloc(routes, (nroutes + rs->via.array.size + 1) * sizeof *nr);
		if (nr == NULL) {
			rc = EXIT_FAILED;
			break;
		}
		routes = nr;
		memcpy(routes + nroutes, rs->via.array.ptr, rs->via.array.size * sizeof *nr);
		nroutes += rs->via.array.size;
		more = m != NULL && m->type == MSGPACK_OBJECT_BOOLEAN && m->via.boolean &&
		       rs->via.array.size > 0;
		if (more) { /* {"after": the last name of this page} */
			const msgpack_object *last =
				field(&rs->via.array.ptr[rs->via.array.size - 1], "name");
			if (last == NULL || last->type != MSGPACK_OBJECT_STR ||
			    last->via.str.size > 255) {
				more = 0;
				continue;
			}
			size_t n = last->via.str.size;
			char *d = realloc(arg.data, n + 10);
			if (d == NULL) {
				rc = EXIT_FAILED;
				break;
			}
			memcpy(d,
			       "\x81\xa5"
			       "after\xd9",
			       8);
			d[8] = (char)n;
			memcpy(d + 9, last->via.str.ptr, n);
			arg = (struct sb__json_buf){.data = d, .len = n + 9, .cap = n + 10};
		}
	}
	sb_client_free(c);
	if (rc == EXIT_OK && npages > 0) {
		/* The first answer, its routes those of every page. */
		msgpack_object all = pages[0].data;
		msgpack_object_kv *kv = NULL;
		if (all.type == MSGPACK_OBJECT_MAP && routes != NULL &&
		    (kv = malloc(all.via.map.size * sizeof *kv)) != NULL) {
			memcpy(kv, all.via.map.ptr, all.via.map.size * sizeof *kv);
			for (uint32_t i = 0; i < all.via.map.size; i++)
				if (str_is(&kv[i].key, "routes")) {
					kv[i].val.via.array.ptr = routes;
					kv[i].val.via.array.size = nroutes;
				} else if (str_is(&kv[i].key, "routes_more"))
					kv[i].val.via.boolean = false;
			all.via.map.ptr = kv;
		}
		msgpack_sbuffer sb;
		msgpack_packer pk;
		msgpack_sbuffer_init(&sb);
		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		msgpack_pack_object(&pk, all);
		if (o->json)
			printf("%s\n", payload_json(&b, sb.data, sb.size));
		else if (print_stats(&all) != 0) {
			fprintf(stderr, "sbctl: %s replied in an unexpected shape; as JSON:\n",
				name);
			printf("%s\n", payload_json(&b, sb.data, sb.size));
		}
		msgpack_sbuffer_destroy(&sb);
		free(kv);
	}
	for (int i = 0; i < npages; i++) {
		msgpack_unpacked_destroy(&pages[i]);
		free(bytes[i]);
	}
	free(routes);
	sb__json_buf_free(&arg);
	sb__json_buf_free(&b);
	return rc;
}

/* ---- help ----------------------------------------------------------------- */

static void command_help(FILE *out, const struct command *cmd)
{
	fprintf(out, "usage: sbctl [OPTIONS] %s\n\n%s\n%s\n%s", cmd->usage, cmd->help,
		global_options, exit_codes);
}

static int cmd_help(const struct opts *o, char **args, int nargs)
{
	(void)o;
	if (nargs == 0) {
		usage(stdout);
		return EXIT_OK;
	}
	const struct command *cmd = find_command(args[0]);
	if (cmd == NULL) {
		fprintf(stderr, "sbctl: unknown command %s (sbctl help lists them)\n", args[0]);
		return EXIT_USAGE;
	}
	command_help(stdout, cmd);
	return EXIT_OK;
}

static const struct command commands[] = {
	{"send", F_TO | F_ALL, 1, 2, "send NAME [JSON] [--to PEER | --all]",
	 "send a message, fire-and-forget",
	 "Sends a message to one handler of NAME; nothing comes back. JSON is the\n"
	 "payload (omitted: null). Prints nothing ({\"sent\":true} with --json) once\n"
	 "the message is written to the router; whether a handler took it is not\n"
	 "reported.\n"
	 "\n"
	 "  --to PEER             to the peer named PEER instead, whatever it handles\n"
	 "  --all                 to every handler of NAME\n",
	 cmd_send},
	{"request", F_TIMEOUT | F_TO | F_ALL, 1, 2,
	 "request NAME [JSON] [--timeout MS] [--to PEER | --all]",
	 "send a request and print every reply",
	 "Sends a request to NAME and prints each reply as it arrives:\n"
	 "  OUTCOME  PAYLOAD                       the final reply\n"
	 "  OUTCOME  PAYLOAD  (more: progress)     a progress update\n"
	 "  OUTCOME  PAYLOAD  (more: chunk)        a stream chunk\n"
	 "With --json, one object per line: {\"outcome\":...,\"more\":bool,\"payload\":...}.\n"
	 "An error prints \"error: TEXT (code NAME)\" on stderr (and with --json\n"
	 "{\"error\":NAME,\"code\":N,\"text\":TEXT} on stdout) and exits 1.\n"
	 "\n"
	 "With --all, every handler of NAME answers; each result, as it arrives:\n"
	 "  PEER  OUTCOME  PAYLOAD                 a peer's reply\n"
	 "  PEER  OUTCOME  PAYLOAD  (more: chunk)  a chunk of a peer's stream\n"
	 "  PEER  error: TEXT (code NAME)          a peer's error, timeout, or loss\n"
	 "then the tally:\n"
	 "  all: N peers, N ok, N errors, N timeouts, N gone\n"
	 "With --json: {\"peer\":...,\"outcome\":...,\"more\":bool,\"payload\":...},\n"
	 "{\"peer\":...,\"error\":NAME,\"code\":N,\"text\":...}, then {\"all\":{\"peers\":N,\n"
	 "\"ok\":N,\"errors\":N,\"timeouts\":N,\"gone\":N}}. Exits 1 if any peer failed.\n"
	 "\n"
	 "  --timeout MS          the request's timeout (default: the router's, 30 s);\n"
	 "                        with --all, every peer's\n"
	 "  --to PEER             ask the peer named PEER, whatever it handles\n"
	 "  --all                 ask every handler of NAME\n",
	 cmd_request},
	{"listen", F_ECHO | F_COUNT | F_SCHEMA, 1, 1,
	 "listen NAME [--echo] [--count N] [--schema JSON]",
	 "handle NAME: print what arrives and reply",
	 "Registers a handler for NAME and prints each message that arrives:\n"
	 "  send  NAME  PAYLOAD       or     request  NAME  PAYLOAD\n"
	 "With --json: {\"name\":...,\"request\":bool,\"payload\":...}. Requests are\n"
	 "answered with outcome \"ok\" and a null payload. Prints \"sbctl: listening\n"
	 "on NAME\" on stderr once registered; SIGINT or SIGTERM stops it (exit 0).\n"
	 "\n"
	 "  --echo                reply with outcome \"echo\" and the same payload\n"
	 "  --count N             exit after N messages\n"
	 "  --schema JSON         register with this argument schema: the router\n"
	 "                        refuses requests that break it (\"invalid arguments\",\n"
	 "                        naming the key) before they arrive, e.g.\n"
	 "                        '{\"keys\": {\"email\": {\"type\": \"str\"}},\n"
	 "                          \"required\": [\"email\"], \"additional\": false}'\n"
	 "                        (format: docs/protocol.md, \"Argument schemas\")\n",
	 cmd_listen},
	{"presence", F_COUNT, 0, 0, "presence [--count N]", "print peers as they come and go",
	 "Subscribes to the router's presence events and prints one line each:\n"
	 "  EVENT  PEER  ID  ROLE [SUBJECT]\n"
	 "EVENT is connected, draining (the peer said goodbye) or disconnected;\n"
	 "SUBJECT is the peer's certificate subject under TLS. With --json:\n"
	 "{\"event\":...,\"peer\":...,\"id\":N,\"role\":...[,\"subject\":...]}. Prints\n"
	 "\"sbctl: watching presence\" on stderr once subscribed; SIGINT or SIGTERM\n"
	 "stops it (exit 0). Peers already connected are not listed: see peers.\n"
	 "\n"
	 "  --count N             exit after N events\n",
	 cmd_presence},
	{"routes", F_TIMEOUT, 0, 0, "routes [--timeout MS]",
	 "the router's names and their handlers",
	 "Asks the router ($sb.routes) for every name and its handlers; prints a\n"
	 "table NAME PEER SHARD (a name with several handlers takes several rows).\n"
	 "With --json, the reply itself: [{\"name\":...,\"handlers\":[{\"peer\":...,\n"
	 "\"shard\":N}]}].\n"
	 "\n"
	 "  --timeout MS          the request's timeout (default: the router's)\n",
	 cmd_routes},
	{"peers", F_TIMEOUT, 0, 0, "peers [--timeout MS]", "the peers connected to the router",
	 "Asks the router ($sb.peers) for its connected peers; prints a table\n"
	 "PEER ID ROLE SHARD. With --json, the reply itself:\n"
	 "[{\"peer\":...,\"id\":N,\"role\":...,\"shard\":N}].\n"
	 "\n"
	 "  --timeout MS          the request's timeout (default: the router's)\n",
	 cmd_peers},
	{"stats", F_TIMEOUT, 0, 0, "stats [--timeout MS]",
	 "the router's counters, per shard and per route",
	 "Asks the router ($sb.stats) for its counters; prints COUNTER VALUE rows,\n"
	 "a table SHARD CONNECTIONS INFLIGHT, and a table of every route with its\n"
	 "requests, sends, replies, errors, timeouts and latency percentiles (us,\n"
	 "request to final answer). The router lists routes a page at a time;\n"
	 "every page is fetched. With --json, the reply with every page's routes:\n"
	 "{\"COUNTER\":N,...,\"shards\":[{\"shard\":N,\"connections\":N,\"inflight\":N}],\n"
	 "\"routes\":[{\"name\":...,\"requests\":N,...,\"p99_us\":N}],\"routes_more\":false}.\n"
	 "\n"
	 "  --timeout MS          the request's timeout (default: the router's)\n",
	 cmd_stats},
	{"help", 0, 0, 1, "help [COMMAND]", "this text, or a command's",
	 "Prints the list of commands, or COMMAND's flags and output.\n", cmd_help},
};

static const struct command *find_command(const char *name)
{
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

static void usage(FILE *out)
{
	fprintf(out, "usage: sbctl [OPTIONS] COMMAND [ARGS]\n"
		     "\n"
		     "Talks to a Switchboard router: sends, requests (to one handler, one\n"
		     "peer by name, or every handler), listens, watches peers come and go,\n"
		     "and shows its routes, peers and counters. Payloads are JSON.\n"
		     "\n"
		     "Commands:\n");
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (strlen(commands[i].usage) <= 38)
			fprintf(out, "  %-38s %s\n", commands[i].usage, commands[i].summary);
		else /* the summary goes under it, in its column */
			fprintf(out, "  %s\n  %-38s %s\n", commands[i].usage, "",
				commands[i].summary);
	fprintf(out,
		"\n%s\n"
		"JSON: objects, arrays, strings, integers (int64/uint64), floats,\n"
		"true/false/null. MessagePack bin prints as {\"$bin\":\"<hex>\"}. A JSON\n"
		"argument that starts with '-' goes after \"--\": sbctl send n -- -5\n"
		"\n%s",
		global_options, exit_codes);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"router", required_argument, NULL, 'r'},
		{"name", required_argument, NULL, 'n'},
		{"json", no_argument, NULL, 'j'},
		{"connect-timeout", required_argument, NULL, 'C'},
		{"secret-file", required_argument, NULL, 'S'},
		{"timeout", required_argument, NULL, 't'},
		{"echo", no_argument, NULL, 'e'},
		{"count", required_argument, NULL, 'c'},
		{"to", required_argument, NULL, 'T'},
		{"all", no_argument, NULL, 'A'},
		{"schema", required_argument, NULL, 's'},
		{"tls", no_argument, NULL, OPT_TLS},
		{"tls-ca", required_argument, NULL, OPT_TLS_CA},
		{"tls-cert", required_argument, NULL, OPT_TLS_CERT},
		{"tls-key", required_argument, NULL, OPT_TLS_KEY},
		{"tls-server-name", required_argument, NULL, OPT_TLS_NAME},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	struct opts o = {.host = "127.0.0.1", .port = 7400, .connect_ms = 2000};
	int help = 0, opt;

	/* A test hook: the router's own names cannot be served by a stand-in,
	 * so tests of the table layout point sbctl at other names. */
	o.admin = getenv("SBCTL_TEST_ADMIN_PREFIX") ? getenv("SBCTL_TEST_ADMIN_PREFIX") : "$sb.";
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
		switch (opt) {
		case 'r':
			parse_router(&o, optarg);
			break;
		case 'n':
			o.name = optarg;
			break;
		case 'j':
			o.json = 1;
			break;
		case 'C':
			o.connect_ms = (unsigned)number("connect-timeout", optarg, 1, 3600000);
			break;
		case 'S':
			o.secret = read_secret(optarg);
			break;
		case 't':
			o.timeout_ms = (uint32_t)number("timeout", optarg, 1, 3600000);
			o.given |= F_TIMEOUT;
			break;
		case 'e':
			o.echo = 1;
			o.given |= F_ECHO;
			break;
		case 'c':
			o.count = number("count", optarg, 1, ULONG_MAX);
			o.given |= F_COUNT;
			break;
		case 'T':
			o.to = optarg;
			o.given |= F_TO;
			break;
		case 'A':
			o.all = 1;
			o.given |= F_ALL;
			break;
		case 's':
			o.schema = optarg;
			o.given |= F_SCHEMA;
			break;
		case OPT_TLS:
			o.tls = 1;
			break;
		case OPT_TLS_CA:
			o.tls = 1;
			o.tls_ca = optarg;
			break;
		case OPT_TLS_CERT:
			o.tls = 1;
			o.tls_cert = optarg;
			break;
		case OPT_TLS_KEY:
			o.tls = 1;
			o.tls_key = optarg;
			break;
		case OPT_TLS_NAME:
			o.tls = 1;
			o.tls_server_name = optarg;
			break;
		case 'h':
			help = 1;
			break;
		case 'V':
			printf("sbctl %s (protocol 1)\n", SB_VERSION_STRING);
			return EXIT_OK;
		case ':':
			fprintf(stderr, "sbctl: %s needs a value\n", argv[optind - 1]);
			return EXIT_USAGE;
		default:
			fprintf(stderr, "sbctl: unknown option %s (sbctl help lists them)\n",
				argv[optind - 1]);
			return EXIT_USAGE;
		}
	}
	if (o.secret == NULL && getenv("SB_SECRET") != NULL && getenv("SB_SECRET")[0] != 0)
		o.secret = getenv("SB_SECRET");
	if (o.secret != NULL && strlen(o.secret) > 4096) {
		fprintf(stderr, "sbctl: SB_SECRET: longer than 4096 bytes\n");
		return EXIT_USAGE;
	}
	char **args = argv + optind;
	int nargs = argc - optind;
	if (nargs == 0) {
		usage(help ? stdout : stderr);
		return help ? EXIT_OK : EXIT_USAGE;
	}
	const struct command *cmd = find_command(args[0]);
	if (cmd == NULL) {
		fprintf(stderr, "sbctl: unknown command %s (sbctl help lists them)\n", args[0]);
		return EXIT_USAGE;
	}
	if (help) {
		command_help(stdout, cmd);
		return EXIT_OK;
	}
	args++;
	nargs--;
	if (o.given & ~cmd->flags) {
		unsigned bad = o.given & ~cmd->flags;
		fprintf(stderr, "sbctl: %s does not take %s (sbctl %s --help)\n", cmd->name,
			bad & F_TIMEOUT ? "--timeout"
			: bad & F_ECHO  ? "--echo"
			: bad & F_COUNT ? "--count"
			: bad & F_TO    ? "--to"
			: bad & F_ALL   ? "--all"
					: "--schema",
			cmd->name);
		return EXIT_USAGE;
	}
	if (o.to != NULL && o.all) {
		fprintf(stderr, "sbctl: --to and --all exclude each other: one peer, or all of "
				"them\n");
		return EXIT_USAGE;
	}
	if (o.to != NULL && !peer_name_ok(o.to)) {
		fprintf(stderr, "sbctl: --to %s: not a valid peer name\n", o.to);
		return EXIT_USAGE;
	}
	if (nargs < cmd->min_args || nargs > cmd->max_args) {
		fprintf(stderr, "usage: sbctl [OPTIONS] %s\n", cmd->usage);
		return EXIT_USAGE;
	}
	return cmd->run(&o, args, nargs);
}
