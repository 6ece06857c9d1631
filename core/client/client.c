/* The client object: its configuration, creation and freeing, the loop that
 * drives it from the caller's event loop (one turn: timers, one poll, reads
 * and their callbacks, writes), and what it tells the program. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <switchboard/client.h>
#include <switchboard/proto.h>

#include "client/client-int.h"
#include "common/clock.h"
#include "common/hmac.h"
#include "common/idmap.h"
#include "common/list.h"
#include "common/timer.h"
#include "common/tls.h"

void sb__client_report(struct sb_client *c, enum sb_client_state s, int err)
{
	if (c->cfg.on_state == NULL)
		return;
	c->in_cb++;
	c->cfg.on_state(c, s, err, c->cfg.ud);
	c->in_cb--;
}

/* Output drained after an SB_EOVERLOADED: tell the producer once. */
static void writable(struct sb_client *c)
{
	c->overloaded = 0;
	if (c->cfg.on_writable == NULL)
		return;
	c->in_cb++;
	c->cfg.on_writable(c, c->cfg.ud);
	c->in_cb--;
}

static int handshaking(const struct sb_client *c)
{
	return c->st == C_CONNECTING || c->st == C_TLS || c->st == C_HELLO || c->st == C_REGISTER;
}

static int tls_pending(const struct sb_client *c)
{
	return c->tls != NULL && sb__tls_pending(c->tls);
}

/* ---- the loop ----------------------------------------------------------- */

static void run_timers(struct sb_client *c)
{
	uint64_t now = sb__now_ms();

	if (c->st == C_WAIT && now >= c->retry_at)
		sb__client_connect(c);
	else if (handshaking(c) && now >= c->hs_deadline)
		sb__client_drop(c, SB_ETIMEOUT);
	else if (c->st == C_DRAINING && now >= c->drain_at)
		sb__client_drop(c, SB_ETIMEOUT);
	sb__wheel_run(&c->wheel, now);
}

/* Milliseconds until run_timers() has work, -1 for never. */
static int next_due(const struct sb_client *c)
{
	uint64_t now = sb__now_ms(), w = sb__wheel_next(&c->wheel, now), at = UINT64_MAX;

	if (c->st == C_WAIT)
		at = c->retry_at;
	else if (handshaking(c))
		at = c->hs_deadline;
	else if (c->st == C_DRAINING)
		at = c->drain_at;
	if (at != UINT64_MAX && (at <= now || at - now < w))
		w = at > now ? at - now : 0;
	if (w == UINT64_MAX)
		return -1;
	return w > INT_MAX ? INT_MAX : (int)w;
}

static void on_socket(struct sb_client *c, short revents)
{
	if (c->st == C_CONNECTING) {
		if (revents & (POLLOUT | POLLERR | POLLHUP))
			sb__client_connect_done(c);
		return;
	}
	if (revents & (POLLIN | POLLHUP | POLLERR))
		sb__client_read(c);
}

/* One turn: timers, one wait, reads and their callbacks, writes, timers. */
int sb__client_step(struct sb_client *c, int timeout_ms)
{
	struct pollfd p[2];
	int wait, n, rc;

	run_timers(c);
	if (c->st == C_DEAD)
		return c->dead_err;
	wait = next_due(c);
	if (timeout_ms >= 0 && (wait < 0 || timeout_ms < wait))
		wait = timeout_ms;
	p[0] = (struct pollfd){.fd = c->wake_fd, .events = POLLIN};
	p[1] = (struct pollfd){.fd = c->fd, .events = sb_client_events(c)};
	n = poll(p, c->fd >= 0 ? 2 : 1, wait);
	if (n < 0)
		return errno == EINTR ? 0 : SB_ESYS;
	if (p[0].revents & POLLIN) {
		uint64_t v;
		ssize_t r = read(c->wake_fd, &v, sizeof v);
		(void)r; /* EAGAIN: another turn drained it first */
	}
	if (c->fd >= 0 && p[1].revents != 0)
		on_socket(c, p[1].revents);
	sb__client_maybe_online(c);
	/* Callbacks above queued their frames: one write takes them all. */
	if (c->fd >= 0 && c->st != C_CONNECTING && (c->out_off < c->out_len || tls_pending(c)) &&
	    (rc = sb__client_write(c)) != 0)
		sb__client_drop(c, rc);
	if (c->overloaded && c->out_len - c->out_off <= c->cfg.out_max / 2)
		writable(c);
	run_timers(c);
	return c->st == C_DEAD ? c->dead_err : 0;
}

/* ---- lifecycle ---------------------------------------------------------- */

static void defaults(struct sb_client_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->size = sizeof *cfg;
	cfg->host = "127.0.0.1";
	cfg->port = 7400;
	cfg->role = SB_ROLE_CLIENT;
	cfg->reconnect_min_ms = 100;
	cfg->reconnect_max_ms = 5000;
	cfg->out_max = 16u << 20;
}

/* A program built against an older header has a shorter struct: only
 * `size` bytes of it are the program's, the rest stays at its default. */
void sb_client_config_init_size(struct sb_client_config *cfg, size_t size)
{
	struct sb_client_config d;

	defaults(&d);
	if (size > sizeof d)
		size = sizeof d;
	d.size = size;
	memcpy(cfg, &d, size);
}

/* Why sb_client_new() failed, where the program asked for it. */
static void say(const struct sb_client_config *given, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void say(const struct sb_client_config *given, const char *fmt, ...)
{
	va_list ap;

	/* A config too short to hold the buffer cannot have given one. */
	if (given == NULL ||
	    given->size < offsetof(struct sb_client_config, whylen) + sizeof given->whylen ||
	    given->why == NULL || given->whylen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(given->why, given->whylen, fmt, ap);
	va_end(ap);
}

/* The caller's config over the defaults, as much of it as it has. */
static int config_read(const struct sb_client_config *in, struct sb_client_config *out)
{
	defaults(out);
	if (in == NULL)
		return 0;
	/* Too short to hold the why buffer either: nothing can be said. */
	if (in->size < offsetof(struct sb_client_config, port) + sizeof in->port)
		return SB_EINVAL;
	memcpy(out, in, in->size < sizeof *out ? in->size : sizeof *out);
	out->size = sizeof *out;
	return 0;
}

static const char *role_name(enum sb_role role)
{
	return role == SB_ROLE_SERVICE ? "service" : "client";
}

/* A compact JWS: base64url parts joined by dots, within the router's
 * bound. The router verifies the rest; this keeps a wrong string (a
 * file name, a token with its "Bearer ") from being sent at all. */
static int token_ok(const char *t)
{
	size_t n = strlen(t);

	if (n == 0 || n > SB__CLIENT_TOKEN_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)t[i]) && t[i] != '-' && t[i] != '_' && t[i] != '.')
			return 0;
	return 1;
}

/* 1 if @p cfg can be used, else 0 after saying which setting is wrong
 * and why (to @p given's why buffer). */
static int config_ok(const struct sb_client_config *cfg, const struct sb_client_config *given)
{
	struct sb_msg hello = {.kind = SB_HELLO, .version = SB_PROTO_VERSION};
	const char *tls_only = cfg->tls_ca != NULL            ? "tls_ca"
			       : cfg->tls_server_name != NULL ? "tls_server_name"
			       : cfg->tls_cert != NULL        ? "tls_cert"
			       : cfg->tls_key != NULL         ? "tls_key"
							      : NULL;

	if (cfg->host == NULL || cfg->host[0] == 0) {
		say(given, "host: %s", cfg->host == NULL ? "NULL" : "empty");
		return 0;
	}
	if (cfg->port == 0) {
		say(given, "port: 0 is not a port to connect to");
		return 0;
	}
	if (cfg->role != SB_ROLE_CLIENT && cfg->role != SB_ROLE_SERVICE) {
		say(given, "role: %d is not in enum sb_role", (int)cfg->role);
		return 0;
	}
	if (cfg->reconnect_min_ms == 0) {
		say(given, "reconnect_min_ms: 0 (it must be at least 1)");
		return 0;
	}
	if (cfg->reconnect_max_ms < cfg->reconnect_min_ms) {
		say(given, "reconnect_max_ms: %u is below reconnect_min_ms %u",
		    cfg->reconnect_max_ms, cfg->reconnect_min_ms);
		return 0;
	}
	if (cfg->out_max == 0) {
		say(given, "out_max: 0 (it must be at least 1)");
		return 0;
	}
	/* TLS settings without TLS would quietly send everything in clear. */
	if (!cfg->tls && tls_only != NULL) {
		say(given, "%s: set without tls (everything would go in clear)", tls_only);
		return 0;
	}
	if (cfg->secret != NULL &&
	    (cfg->secret[0] == 0 || strlen(cfg->secret) > SB__HMAC_SECRET_MAX)) {
		say(given, "secret: %s", cfg->secret[0] == 0 ? "empty" : "too long");
		return 0;
	}
	if (cfg->token != NULL && !token_ok(cfg->token)) {
		say(given, "token: %s",
		    cfg->token[0] == 0 ? "empty"
		    : strlen(cfg->token) > SB__CLIENT_TOKEN_MAX
			    ? "over 8192 bytes"
			    : "not a compact JWT (base64url parts joined by dots)");
		return 0;
	}
	/* The codec checks the name the way the router will. */
	hello.peer = sb__client_view(cfg->name);
	hello.role = sb__client_view(role_name(cfg->role));
	if (sb_encoded_size(&hello) <= 0) {
		say(given,
		    "name: \"%.64s%s\" is not a peer name (1 to %u bytes, printable, no "
		    "spaces)",
		    cfg->name ? cfg->name : "", cfg->name && strlen(cfg->name) > 64 ? "..." : "",
		    SB_PEER_MAX);
		return 0;
	}
	return 1;
}

static void free_list(struct sb__link *head, size_t off)
{
	while (!sb__link_empty(head)) {
		struct sb__link *l = head->next;
		sb__link_del(l);
		free((char *)l - off);
	}
}

/* Frees the memory; the connection is closed and nothing is open. */
static void destroy(struct sb_client *c)
{
	/* Calls a handler still holds lose their sender with them. */
	for (struct sb__link *l = c->orphans.next; l != &c->orphans; l = l->next) {
		struct call *k = SB__CONTAINER(l, struct call, link);
		sb__client_ident_put(k->ident);
		k->ident = NULL;
		sb__call_headers_free(&k->base);
	}
	free_list(&c->orphans, offsetof(struct call, link));
	sb__client_idents_forget(c);
	sb__idmap_destroy(&c->idents);
	free_list(&c->spare_calls, offsetof(struct call, link));
	free_list(&c->spare_reqs, offsetof(struct req, link));
	for (unsigned i = 0; i < c->nh; i++) {
		free(c->h[i].name);
		free(c->h[i].schema);
	}
	free(c->h);
	sb__idmap_destroy(&c->reqs);
	sb__idmap_destroy(&c->calls);
	sb_splitter_free(c->sp);
	if (c->wake_fd >= 0)
		close(c->wake_fd);
	sb__tls_ctx_put(c->tls_ctx);
	free(c->server_name);
	free(c->tin);
	free(c->in);
	free(c->out);
	sb__client_offline_clear(c);
	free(c->host);
	sb__client_routers_free(c->addrs, c->naddrs);
	free(c->name);
	free(c->role);
	if (c->secret != NULL) {
		sb__hmac_wipe(c->secret, strlen(c->secret));
		free(c->secret);
	}
	if (c->hello_resume != NULL) {
		sb__hmac_wipe(c->hello_resume, c->hello_resume_len);
		free(c->hello_resume);
	}
	if (c->hello != NULL) {
		sb__hmac_wipe(c->hello, c->hello_len);
		free(c->hello);
	}
	free(c);
}

struct sb_client *sb_client_new(const struct sb_client_config *given, int *err)
{
	struct sb_client_config full;
	const struct sb_client_config *cfg = &full;
	struct sb_client *c = NULL;
	int e = SB_EINVAL;

	if (config_read(given, &full) != 0 || !config_ok(cfg, given))
		goto fail;
	sb__hmac_init();
	e = SB_ENOMEM;
	if ((c = calloc(1, sizeof *c)) == NULL)
		goto fail;
	c->fd = c->wake_fd = -1;
	sb__link_init(&c->open);
	sb__link_init(&c->spare_reqs);
	sb__link_init(&c->live);
	sb__link_init(&c->orphans);
	sb__link_init(&c->spare_calls);
	sb__idmap_init(&c->reqs);
	sb__idmap_init(&c->calls);
	sb__idmap_init(&c->idents);
	sb__link_init(&c->idents_all);
	sb__wheel_init(&c->wheel, sb__now_ms());
	atomic_init(&c->stop, 0);
	c->cfg = *cfg;
	c->host = strdup(cfg->host);
	c->role = strdup(role_name(cfg->role));
	c->name = cfg->name != NULL ? strdup(cfg->name) : NULL;
	c->secret = cfg->secret != NULL ? strdup(cfg->secret) : NULL;
	c->in = malloc(IN_SIZE);
	c->out = malloc(OUT_INIT);
	c->out_cap = OUT_INIT;
	if (c->host == NULL || c->role == NULL || (cfg->name != NULL && c->name == NULL) ||
	    (cfg->secret != NULL && c->secret == NULL) || c->in == NULL || c->out == NULL)
		goto fail;
	c->cfg.host = c->host;
	c->cfg.routers = NULL; /* parsed into c->addrs */
	if (cfg->routers != NULL) {
		char why[400];
		if ((e = sb__client_routers_parse(cfg->routers, &c->addrs, &c->naddrs, why,
						  sizeof why)) != 0) {
			if (e == SB_EINVAL)
				say(given, "%s", why);
			goto fail;
		}
		e = SB_ENOMEM;
	} else {
		if ((c->addrs = calloc(1, sizeof *c->addrs)) == NULL ||
		    (c->addrs[0].host = strdup(cfg->host)) == NULL)
			goto fail;
		c->naddrs = 1;
		c->addrs[0].port = cfg->port;
		snprintf(c->addrs[0].text, sizeof c->addrs[0].text,
			 strchr(cfg->host, ':') != NULL ? "[%.256s]:%u" : "%.256s:%u", cfg->host,
			 (unsigned)cfg->port);
	}
	c->cfg.name = c->name;
	c->cfg.secret = c->secret;
	c->cfg.token = NULL; /* it lives on in c->hello */
	if (cfg->token != NULL && sb__client_hello_token(c, cfg->token) != 0)
		goto fail;
	c->cfg.tls_ca = c->cfg.tls_server_name = c->cfg.tls_cert = c->cfg.tls_key = NULL;
	if (cfg->tls) {
		char why[320];
		/* NULL: each router's host name, as each attempt connects. */
		c->server_name = cfg->tls_server_name ? strdup(cfg->tls_server_name) : NULL;
		c->tin = malloc(IN_SIZE);
		if ((cfg->tls_server_name != NULL && c->server_name == NULL) || c->tin == NULL)
			goto fail;
		if ((e = sb__tls_client_ctx(cfg->tls_ca, cfg->tls_cert, cfg->tls_key, &c->tls_ctx,
					    why, sizeof why)) != 0) {
			say(given, "%s", why);
			goto fail;
		}
		e = SB_ENOMEM;
	}
	c->service = cfg->role == SB_ROLE_SERVICE;
	c->next_id = c->next_ctl = 1;
	c->max_frame = SB_FRAME_MAX_DEFAULT;
	c->send_call.c = c;
	c->send_call.ident = NULL;
	sb__link_init(&c->send_call.link);
	c->rng = (sb__now_ms() * 0x9e3779b97f4a7c15ull) ^ (uint64_t)(uintptr_t)c ^
		 (uint64_t)getpid();
	if (c->rng == 0)
		c->rng = 1;
	e = SB_ESYS;
	if ((c->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
		int saved = errno;
		say(given, "eventfd: %s", strerror(saved));
		errno = saved;
		goto fail;
	}
	sb__client_connect(c);
	return c;
fail:
	if (e == SB_ENOMEM)
		say(given, "out of memory");
	if (c != NULL)
		destroy(c);
	if (err != NULL)
		*err = e;
	return NULL;
}

void sb_client_free(struct sb_client *c)
{
	if (c == NULL)
		return;
	if (c->in_cb > 0) { /* the caller's stack still holds c: freeing it would crash later */
		fprintf(stderr, "switchboard: sb_client_free() called from a client callback\n");
		abort();
	}
	/* Replies a handler just gave should reach the router if they can;
	 * over TLS, followed by a close_notify. */
	if (c->tls != NULL)
		sb__tls_close_notify(c->tls);
	if (c->fd >= 0 && c->st != C_CONNECTING && (c->out_off < c->out_len || tls_pending(c)))
		sb__client_write(c);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	sb__tls_free(c->tls);
	c->tls = NULL;
	c->conn_gen++;
	c->st = C_DEAD;
	c->dead_err = SB_EOFFLINE;
	sb__client_fail_requests(c, SB_EOFFLINE, "the client was freed");
	sb__client_kill_calls(c, SB_EOFFLINE);
	destroy(c);
}

int sb_client_fd(const struct sb_client *c)
{
	return c->fd;
}

short sb_client_events(const struct sb_client *c)
{
	if (c->fd < 0)
		return 0;
	if (c->st == C_CONNECTING)
		return POLLOUT;
	return (short)(POLLIN | (c->out_off < c->out_len || tls_pending(c) ? POLLOUT : 0));
}

int sb_client_timeout(const struct sb_client *c)
{
	return c->st == C_DEAD ? -1 : next_due(c);
}

int sb_client_process(struct sb_client *c, int timeout_ms)
{
	if (c->in_cb > 0) /* the frame being dispatched lives in the buffer we would read into */
		return SB_EINVAL;
	return sb__client_step(c, timeout_ms);
}

int sb_client_run(struct sb_client *c)
{
	int rc = 0;

	if (c->in_cb > 0)
		return SB_EINVAL;
	while (rc == 0 && !atomic_exchange(&c->stop, 0))
		rc = sb__client_step(c, -1);
	return rc;
}

void sb_client_stop(struct sb_client *c)
{
	uint64_t one = 1;

	atomic_store(&c->stop, 1);
	ssize_t r = write(c->wake_fd, &one, sizeof one);
	(void)r; /* only fails when the counter is already huge: the poll wakes anyway */
}

int sb_client_online(const struct sb_client *c)
{
	return c->st == C_READY;
}

const char *sb_client_name(const struct sb_client *c)
{
	return c->peer[0] != 0 ? c->peer : c->name;
}

const char *sb_client_last_error(const struct sb_client *c)
{
	return c->last_error;
}

uint32_t sb_client_peer_id(const struct sb_client *c)
{
	return sb__client_welcomed(c) ? c->peer_id : 0;
}

/* Processes until the client is online, or until deadline (ms). */
int sb__client_wait_online_until(struct sb_client *c, uint64_t deadline)
{
	while (!sb_client_online(c)) {
		uint64_t now = sb__now_ms();
		if (now >= deadline)
			return SB_EOFFLINE;
		int rc = sb__client_step(c, deadline - now > INT_MAX ? INT_MAX
								     : (int)(deadline - now));
		if (rc != 0)
			return rc;
	}
	return 0;
}

int sb_client_wait_online(struct sb_client *c, uint32_t timeout_ms)
{
	if (c->in_cb > 0)
		return SB_EINVAL;
	return sb__client_wait_online_until(c, sb__now_ms() + timeout_ms);
}

/* GOODBYE, then process until the router has let everything finish and
 * closed: the router routes nothing new here, while this client's own
 * requests and the calls its handlers hold run to their end. */
int sb_client_leave(struct sb_client *c, const char *reason, uint32_t deadline_ms)
{
	struct sb_msg bye = {.kind = SB_GOODBYE, .deadline_ms = deadline_ms};

	bye.text = sb__client_view(reason != NULL ? reason : "");
	if (c->in_cb > 0 || sb_encoded_size(&bye) < 0)
		return SB_EINVAL;
	if (c->st == C_DEAD)
		return c->leaving ? c->left_err : c->dead_err;
	c->leaving = 1;
	if (!sb__client_welcomed(c)) { /* nothing under way at a router: just stop */
		sb__client_drop(c, 0);
		return 0;
	}
	int rc = sb__client_queue(c, &bye, 1);
	if (rc != 0) {
		sb__client_drop(c, rc);
		return rc;
	}
	/* The router closes by the deadline; a little later, we do. */
	uint64_t deadline = sb__now_ms() + deadline_ms + DRAIN_GRACE_MS;
	while (c->st != C_DEAD) {
		uint64_t now = sb__now_ms();
		if (now >= deadline) {
			sb__client_drop(c, SB_ETIMEOUT);
			break;
		}
		sb__client_step(c, deadline - now > INT_MAX ? INT_MAX : (int)(deadline - now));
	}
	return c->left_err;
}
