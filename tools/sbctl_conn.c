/* sbctl: connecting to the router (TLS, secrets, waiting to be online,
 * flushing before exit) and printing payloads and errors. */
#include <errno.h>
#include <inttypes.h>
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
#include "sbctl.h"

uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

const char *payload_json(struct sb__json_buf *b, const void *p, size_t len)
{
	b->len = 0;
	if (p == NULL || len == 0)
		return "null";
	if (sb__json_print(p, len, b) != 0)
		return "\"<payload not printable as JSON>\"";
	return b->data;
}

const char *quoted(struct sb__json_buf *b, const char *s)
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
void print_error(const struct opts *o, int err, const char *text)
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

void print_reply_error(const struct opts *o, const struct sb_reply *rep)
{
	struct sb__json_buf b = {0}, q = {0}, d = {0};

	if (rep->err != SB_EAPP || rep->app_code == NULL) {
		print_error(o, rep->err, rep->outcome);
		return;
	}
	fprintf(stderr, "error: %s (app code %s)\n", rep->outcome, rep->app_code);
	if (rep->len > 0)
		fprintf(stderr, "details: %s\n", payload_json(&d, rep->payload, rep->len));
	if (o->json)
		printf("{\"error\":\"EAPP\",\"code\":%d,\"text\":%s,\"app_code\":%s,"
		       "\"details\":%s}\n",
		       rep->err, quoted(&b, rep->outcome), quoted(&q, rep->app_code),
		       payload_json(&d, rep->payload, rep->len));
	sb__json_buf_free(&b);
	sb__json_buf_free(&q);
	sb__json_buf_free(&d);
}

int parse_payload(const char *text, struct sb__json_buf *mp)
{
	struct sb__json_error e;

	if (text == NULL)
		return 0; /* no payload: nil */
	if (sb__json_parse(text, strlen(text), mp, &e) != 0) {
		sb__json_buf_free(mp);
		fprintf(stderr, "sbctl: invalid JSON at byte %zu: %s%s\n", e.at, e.what,
			e.at == 0 ? " (a string is JSON in quotes: '\"text\"', or use --str)" : "");
		return -1;
	}
	return 0;
}

/* The bytes of FILE ("-": stdin), whole, NUL-terminated (a JSON text must
 * not run on past them). NULL after a message on stderr. */
static char *read_all(const char *path, size_t *len)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	size_t n = 0, cap = 0;
	char *buf = NULL;

	if (f == NULL) {
		fprintf(stderr, "sbctl: @%s: %s\n", path, strerror(errno));
		return NULL;
	}
	for (;;) {
		if (cap - n < 2) {
			/* Far past any router's frame limit: stop reading instead
			 * of filling the memory. */
			if (cap >= PAYLOAD_FILE_MAX) {
				fprintf(stderr, "sbctl: @%s: larger than %u bytes\n", path,
					PAYLOAD_FILE_MAX);
				goto fail;
			}
			cap = cap == 0 ? 65536 : cap * 2;
			char *p = realloc(buf, cap);
			if (p == NULL) {
				fprintf(stderr, "sbctl: @%s: out of memory\n", path);
				goto fail;
			}
			buf = p;
		}
		size_t r = fread(buf + n, 1, cap - n - 1, f);
		n += r;
		if (r == 0)
			break;
	}
	if (ferror(f)) {
		fprintf(stderr, "sbctl: @%s: %s\n", path, strerror(errno));
		goto fail;
	}
	if (f != stdin)
		fclose(f);
	buf[n] = 0;
	*len = n;
	return buf;
fail:
	if (f != stdin)
		fclose(f);
	free(buf);
	return NULL;
}

/* A MessagePack str of the n bytes at s. */
static int str_payload(const char *s, size_t n, struct sb__json_buf *mp)
{
	unsigned char h[5];
	size_t hl;

	if (n < 32) {
		h[0] = (unsigned char)(0xa0 | n);
		hl = 1;
	} else if (n < 256) {
		h[0] = 0xd9;
		h[1] = (unsigned char)n;
		hl = 2;
	} else if (n < 65536) {
		h[0] = 0xda;
		h[1] = (unsigned char)(n >> 8);
		h[2] = (unsigned char)n;
		hl = 3;
	} else {
		h[0] = 0xdb;
		h[1] = (unsigned char)(n >> 24);
		h[2] = (unsigned char)(n >> 16);
		h[3] = (unsigned char)(n >> 8);
		h[4] = (unsigned char)n;
		hl = 5;
	}
	if ((mp->data = malloc(hl + n + 1)) == NULL) {
		fprintf(stderr, "sbctl: out of memory\n");
		return -1;
	}
	memcpy(mp->data, h, hl);
	memcpy(mp->data + hl, s, n);
	mp->len = mp->cap = hl + n;
	mp->data[mp->len] = 0;
	return 0;
}

int read_payload(const struct opts *o, const char *arg, struct sb__json_buf *mp)
{
	const char *text = arg;
	char *file = NULL;
	size_t len = arg != NULL ? strlen(arg) : 0;
	int rc;

	if (arg == NULL) {
		if (o->str) {
			fprintf(stderr, "sbctl: --str needs a payload: a text, @FILE or @-\n");
			return -1;
		}
		return 0; /* no payload: nil */
	}
	if (arg[0] == '@') {
		if ((file = read_all(arg + 1, &len)) == NULL)
			return -1;
		text = file;
	}
	if (o->str)
		rc = str_payload(text, len, mp);
	else if (file != NULL && strlen(file) != len) {
		fprintf(stderr, "sbctl: @%s: invalid JSON: a NUL byte at byte %zu\n", arg + 1,
			strlen(file));
		rc = -1;
	} else
		rc = parse_payload(text, mp);
	free(file);
	return rc;
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

int router_refused(void)
{
	return conn.refused;
}

/* Creates the client and waits until it is online (handlers ACKed), or
 * exits 3: the library retries an unreachable router forever, so the
 * deadline is ours. */
struct sb_client *connect_router(const struct opts *o, enum sb_role role)
{
	struct sb_client_config cfg;
	char why[512] = "";
	int err = 0;

	sb_client_config_init(&cfg);
	cfg.routers = o->routers;
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
	cfg.why = why;
	cfg.whylen = sizeof why;
	/* In the flags' words, before the library's. */
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
		if (err == SB_EINVAL && strncmp(why, "routers: ", 9) == 0) {
			fprintf(stderr, "sbctl: --router %s: %s\n", o->routers, why + 9);
			exit(EXIT_USAGE);
		}
		if (err == SB_EINVAL && strncmp(why, "name:", 5) == 0) {
			fprintf(stderr, "sbctl: --name %s: not a valid peer name\n",
				o->name ? o->name : "");
			exit(EXIT_USAGE);
		}
		if (err == SB_EINVAL) { /* the TLS files: "tls-key k.pem does not belong to ..." */
			fprintf(stderr, "sbctl: %s%s\n", strncmp(why, "tls-", 4) == 0 ? "--" : "",
				why);
			exit(EXIT_USAGE);
		}
		fprintf(stderr, "sbctl: cannot create a client: %s\n",
			why[0] != 0 ? why : sb_strerror(err));
		exit(EXIT_NO_ROUTER);
	}
	return c;
}

int wait_online(struct sb_client *c, const struct opts *o)
{
	uint64_t deadline = now_ms() + o->connect_ms;

	while (!sb_client_online(c)) {
		uint64_t now = now_ms();
		int rc;
		/* No socket and a reason: an attempt failed, and the library
		 * waits to try again. A user at a shell wants the reason now,
		 * not after the timeout; --wait is for a router still coming up. */
		if (!o->wait && sb_client_fd(c) < 0 && *sb_client_last_error(c) != 0 &&
		    strcmp(sb_client_router(c), o->last) == 0) {
			/* With several routers, once each has failed: the error is
			 * the last one's. */
			fprintf(stderr, "sbctl: cannot connect to the router at %s%s%s: %s\n",
				o->nrouters > 1 ? sb_client_router(c) : o->routers,
				o->nrouters > 1 ? ", nor to the others in " : "",
				o->nrouters > 1 ? o->routers : "", sb_client_last_error(c));
			return EXIT_NO_ROUTER;
		}
		if (now >= deadline) {
			const char *why = sb_client_last_error(c);
			fprintf(stderr,
				"sbctl: cannot connect to the router at %s (no answer "
				"within %u ms)%s%s\n",
				o->routers, o->connect_ms, *why ? ": " : "", why);
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
void flush(struct sb_client *c, unsigned ms)
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
int refused_locally(const struct opts *o, const char *name, int err)
{
	if (err == SB_EINVAL) {
		fprintf(stderr, "sbctl: %s: not a valid message name\n", name);
		return EXIT_USAGE;
	}
	print_error(o, err, NULL);
	return EXIT_FAILED;
}
