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

int wait_online(struct sb_client *c, const struct opts *o)
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
