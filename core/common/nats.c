/* The NATS connection: the servers in turn with jittered backoff, TLS after
 * INFO, CONNECT with headers and no_responders, subscriptions replayed on
 * every reconnect, a bounded output buffer, PING/PONG liveness, and requests
 * on one wildcard inbox (the key-value primitives are requests: nats_kv.c).
 * The configuration and the connection's making and freeing: nats_cfg.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <switchboard/error.h>

#include "common/clock.h"
#include "common/idmap.h"
#include "common/nats-int.h"
#include "common/tls.h"

#define UNSUB_GRACE_MS 2000        /* an ended subscription still takes what was on its way */
#define TLS_PAIR       (64u << 10) /* ciphertext held each way */
#define OUT_KEEP       (256u << 10)
#define PAYLOAD_MAX    (64u << 20) /* the most an INFO's max_payload is believed */
#define INBOX_PREFIX   "_INBOX."

/* ---- output ------------------------------------------------------------- */

static int out_reserve(struct sb__nats *nc, size_t n)
{
	size_t cap = nc->out_cap;
	uint8_t *p;

	if (nc->out_cap - nc->out_len >= n)
		return 0;
	if (nc->out_off > 0) {
		memmove(nc->out, nc->out + nc->out_off, nc->out_len - nc->out_off);
		nc->out_len -= nc->out_off;
		nc->out_off = 0;
		if (nc->out_cap - nc->out_len >= n)
			return 0;
	}
	while (cap - nc->out_len < n)
		cap *= 2;
	if ((p = realloc(nc->out, cap)) == NULL)
		return SB_ENOMEM;
	nc->out = p;
	nc->out_cap = cap;
	return 0;
}

/* Control lines (CONNECT, SUB, PING, PONG) are never refused: they are
 * small, and the bound is there for publishes. */
static int out_put(struct sb__nats *nc, const void *p, size_t n)
{
	if (out_reserve(nc, n) != 0)
		return SB_ENOMEM;
	memcpy(nc->out + nc->out_len, p, n);
	nc->out_len += n;
	return 0;
}

size_t sb__nats_pending(const struct sb__nats *nc)
{
	return nc->out_len - nc->out_off;
}

static void note_pending(struct sb__nats *nc)
{
	size_t p = sb__nats_pending(nc);
	if (p > nc->st_.pending_peak)
		nc->st_.pending_peak = p;
}

static void event(struct sb__nats *nc, enum sb__nats_event ev, const char *text)
{
	if (nc->cfg.on_event)
		nc->cfg.on_event(nc->cfg.ud, ev, text);
}

static void drop(struct sb__nats *nc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int write_tls(struct sb__nats *nc)
{
	for (;;) {
		while (nc->out_off < nc->out_len) {
			long n = sb__tls_write(nc->tls, nc->out + nc->out_off,
					       nc->out_len - nc->out_off);
			if (n < 0)
				return (int)n;
			if (n == 0)
				break;
			nc->out_off += (size_t)n;
		}
		const uint8_t *p;
		size_t len = sb__tls_out(nc->tls, &p);
		if (len == 0)
			return 0;
		ssize_t n = send(nc->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			sb__tls_sent(nc->tls, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		return SB_ESYS;
	}
}

/* Sends what the socket takes now. */
static void do_write(struct sb__nats *nc)
{
	int rc = 0;
	if (nc->fd < 0 || nc->st == ST_CONNECTING || nc->st == ST_WAIT)
		return;
	if (nc->tls != NULL) {
		/* Before the handshake is done, only its own records go out. */
		rc = sb__tls_done(nc->tls) ? write_tls(nc) : 0;
		if (rc == 0 && !sb__tls_done(nc->tls)) {
			const uint8_t *p;
			size_t len;
			while ((len = sb__tls_out(nc->tls, &p)) > 0) {
				ssize_t n = send(nc->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
				if (n <= 0) {
					if (n < 0 && errno == EINTR)
						continue;
					if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
						break;
					rc = SB_ESYS;
					break;
				}
				sb__tls_sent(nc->tls, (size_t)n);
			}
		}
	} else {
		while (nc->out_off < nc->out_len) {
			ssize_t n = send(nc->fd, nc->out + nc->out_off, nc->out_len - nc->out_off,
					 MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n > 0) {
				nc->out_off += (size_t)n;
				continue;
			}
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				break;
			rc = SB_ESYS;
			break;
		}
	}
	if (rc != 0) {
		drop(nc, "write: %s", rc == SB_ESYS ? strerror(errno) : sb__tls_why(nc->tls));
		return;
	}
	if (nc->out_off == nc->out_len) {
		nc->out_off = nc->out_len = 0;
		if (nc->out_cap > OUT_KEEP) { /* one burst must not pin its memory */
			uint8_t *p = realloc(nc->out, 16u << 10);
			if (p != NULL) {
				nc->out = p;
				nc->out_cap = 16u << 10;
			}
		}
	}
	if (nc->refused && sb__nats_pending(nc) <= nc->cfg.out_max / 2) {
		nc->refused = 0;
		event(nc, SB__NATS_WRITABLE, "");
	}
}

void sb__nats_flush(struct sb__nats *nc)
{
	do_write(nc);
}

/* ---- connecting --------------------------------------------------------- */

static uint64_t rnd(struct sb__nats *nc)
{
	uint64_t x = nc->rng;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	nc->rng = x;
	return x;
}

/* The first attempt after a ready connection is lost goes to the next
 * server at once: the cluster is probably fine and only one server went.
 * After that, full jitter between the minimum and a ceiling doubling per
 * failed round of all servers, so routers cut off together do not all
 * come back in the same millisecond. */
static uint64_t backoff(struct sb__nats *nc)
{
	uint64_t lo = nc->cfg.backoff_min_ms, hi = lo;
	unsigned rounds = nc->attempt / (nc->nsrv ? nc->nsrv : 1);

	if (nc->attempt++ == 0)
		return 0;
	for (unsigned i = 0; i <= rounds && hi < nc->cfg.backoff_max_ms; i++)
		hi *= 2;
	if (hi > nc->cfg.backoff_max_ms)
		hi = nc->cfg.backoff_max_ms;
	return lo + rnd(nc) % (hi - lo + 1);
}

void sb__nats_fail_requests(struct sb__nats *nc, int err)
{
	while (nc->reqs) {
		struct req *r = nc->reqs;
		nc->reqs = r->next;
		r->fn(r->ud, err, NULL);
		free(r);
	}
}

static void drop(struct sb__nats *nc, const char *fmt, ...)
{
	va_list ap;
	int was_ready = nc->st == ST_READY;

	if (nc->dropping)
		return;
	nc->dropping = 1;
	va_start(ap, fmt);
	vsnprintf(nc->why, sizeof nc->why, fmt, ap);
	va_end(ap);
	if (nc->fd >= 0)
		close(nc->fd);
	nc->fd = -1;
	sb__tls_free(nc->tls);
	nc->tls = NULL;
	nc->gen++;
	nc->in_len = 0;
	nc->out_off = nc->out_len = 0;
	nc->st = ST_WAIT;
	nc->cur = (nc->cur + 1) % nc->nsrv;
	nc->retry_at = sb__now_ms() + backoff(nc);
	if (nc->refused) { /* nothing is pending any more */
		nc->refused = 0;
		event(nc, SB__NATS_WRITABLE, "");
	}
	if (was_ready)
		event(nc, SB__NATS_DISCONNECTED, nc->why);
	else
		event(nc, SB__NATS_ATTEMPT_FAILED, nc->why);
	sb__nats_fail_requests(nc, SB_EOFFLINE);
	nc->dropping = 0;
}

/* With nothing listening on a local port, connect() may pick that very
 * port as its source and connect the socket to itself. */
static int connected_to_self(int fd)
{
	union addr self, peer;
	socklen_t a = sizeof self, b = sizeof peer;

	if (getsockname(fd, &self.sa, &a) != 0 || getpeername(fd, &peer.sa, &b) != 0)
		return 0;
	return a == b && memcmp(&self, &peer, a) == 0;
}

static void start_connect(struct sb__nats *nc)
{
	struct server *s = &nc->srv[nc->cur];
	int one = 1;

	nc->deadline = sb__now_ms() + nc->cfg.connect_ms;
	nc->fd = socket(s->a.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (nc->fd < 0) {
		drop(nc, "socket: %s", strerror(errno));
		return;
	}
	setsockopt(nc->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	nc->gen++;
	if (connect(nc->fd, &s->a.sa, s->alen) == 0 || errno == EINPROGRESS) {
		nc->st = ST_CONNECTING;
		return;
	}
	drop(nc, "connect to %s: %s", s->url, strerror(errno));
}

/* A JSON string's body: quotes, backslashes and control bytes escaped. */
static size_t json_str(char *o, size_t cap, const char *s)
{
	size_t n = 0;
	for (; *s && n + 7 < cap; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			o[n++] = '\\';
			o[n++] = (char)c;
		} else if (c < 0x20) {
			n += (size_t)snprintf(o + n, cap - n, "\\u%04x", c);
		} else {
			o[n++] = (char)c;
		}
	}
	o[n] = '\0';
	return n;
}

static int put_field(struct sb__nats *nc, const char *name, const char *v)
{
	char buf[1200];
	int n = snprintf(buf, sizeof buf, ",\"%s\":\"", name);
	n += (int)json_str(buf + n, sizeof buf - (size_t)n - 2, v);
	buf[n++] = '"';
	return out_put(nc, buf, (size_t)n);
}

static int put_sub(struct sb__nats *nc, const struct sub *s)
{
	char line[2 * SB__NATS_SUBJECT_MAX + 48];
	return out_put(nc, line, sb__nats_sub_write(line, s->subject, s->queue, (uint64_t)s->sid));
}

/* After INFO (and TLS): CONNECT, every subscription, then PING. The PONG
 * says the server took them all: only then is the connection ready, so a
 * request published after CONNECTED always meets its subscriptions. */
static void say_connect(struct sb__nats *nc)
{
	struct server *s = &nc->srv[nc->cur];
	const char *user = s->user ? s->user : nc->cfg.user;
	const char *pass = s->user ? s->pass : nc->cfg.pass;
	char head[256];
	int rc;

	snprintf(head, sizeof head,
		 "CONNECT {\"verbose\":false,\"pedantic\":false,\"tls_required\":%s,"
		 "\"lang\":\"c\",\"version\":\"sb-0.2\",\"protocol\":1,\"echo\":%s,"
		 "\"headers\":true,\"no_responders\":true",
		 nc->tls ? "true" : "false", nc->cfg.echo ? "true" : "false");
	rc = out_put(nc, head, strlen(head));
	if (rc == 0 && nc->cfg.name)
		rc = put_field(nc, "name", nc->cfg.name);
	if (rc == 0 && user)
		rc = put_field(nc, "user", user);
	if (rc == 0 && pass)
		rc = put_field(nc, "pass", pass);
	if (rc == 0 && nc->cfg.token)
		rc = put_field(nc, "auth_token", nc->cfg.token);
	if (rc == 0)
		rc = out_put(nc, "}\r\n", 3);
	for (struct sub *x = nc->subs; x && rc == 0; x = x->next)
		rc = put_sub(nc, x);
	if (rc == 0)
		rc = out_put(nc, "PING\r\n", 6);
	if (rc != 0) {
		drop(nc, "out of memory");
		return;
	}
	nc->st = ST_PONG;
}

static void on_info(struct sb__nats *nc, const char *j, size_t n)
{
	uint64_t mp;
	int b, tls_required = 0;

	if (sb__nats_json_u64(j, n, "max_payload", &mp) && mp > 0)
		nc->max_payload = mp < PAYLOAD_MAX ? (size_t)mp : PAYLOAD_MAX;
	nc->headers = sb__nats_json_bool(j, n, "headers", &b) && b;
	if (sb__nats_json_bool(j, n, "tls_required", &b))
		tls_required = b;
	if (nc->st != ST_INFO)
		return; /* a later INFO: cluster changes; the limits above still apply */
	if (tls_required && nc->tls_ctx == NULL) {
		drop(nc, "%s requires TLS: give a tls:// URL or a CA", nc->srv[nc->cur].url);
		return;
	}
	if (!tls_required && (nc->srv[nc->cur].tls || nc->cfg.tls_ca)) {
		drop(nc, "%s does not offer TLS", nc->srv[nc->cur].url);
		return;
	}
	if (!tls_required) {
		say_connect(nc);
		return;
	}
	nc->tls = sb__tls_new(nc->tls_ctx, nc->srv[nc->cur].host, TLS_PAIR, TLS_PAIR);
	if (nc->tls == NULL) {
		drop(nc, "out of memory");
		return;
	}
	nc->st = ST_TLS;
	if ((b = sb__tls_handshake(nc->tls)) < 0)
		drop(nc, "TLS: %s", sb__tls_why(nc->tls));
}

/* ---- input -------------------------------------------------------------- */

static void deliver_reply(struct sb__nats *nc, const struct sb__nats_msg *m)
{
	uint64_t token = 0;
	struct req **pp, *r;
	const char *t = m->subject + nc->inbox_len;
	size_t tl = m->subject_len - nc->inbox_len;

	if (m->subject_len <= nc->inbox_len || tl > 19)
		return;
	for (size_t i = 0; i < tl; i++) {
		if (t[i] < '0' || t[i] > '9')
			return;
		token = token * 10 + (uint64_t)(t[i] - '0');
	}
	for (pp = &nc->reqs; (r = *pp) != NULL; pp = &r->next)
		if (r->token == token)
			break;
	if (r == NULL)
		return; /* timed out already, or a second reply */
	*pp = r->next;
	r->fn(r->ud, m->status == 503 ? SB_ENOHANDLER : 0, m);
	free(r);
}

/* Handles one parsed operation. @return 0, or -1 when the connection was
 * dropped (the input buffer is gone). */
static int on_op(struct sb__nats *nc, const struct sb__nats_in *in)
{
	uint64_t gen = nc->gen;
	struct sub *s;

	switch (in->op) {
	case SB__NATS_INFO:
		on_info(nc, in->text, in->text_len);
		break;
	case SB__NATS_PING:
		if (out_put(nc, "PONG\r\n", 6) != 0)
			drop(nc, "out of memory");
		break;
	case SB__NATS_PONG:
		nc->pings_out = 0;
		if (nc->st == ST_PONG) {
			nc->st = ST_READY;
			nc->attempt = 0;
			nc->st_.connects++;
			nc->ping_at = sb__now_ms() + nc->cfg.ping_ms;
			event(nc, SB__NATS_CONNECTED, nc->srv[nc->cur].url);
		}
		break;
	case SB__NATS_OK:
		break;
	case SB__NATS_ERR: {
		char text[256];
		snprintf(text, sizeof text, "%.*s", (int)in->text_len, in->text);
		event(nc, SB__NATS_SERVER_ERROR, text);
		/* The server closes after every -ERR but these two. */
		if (nc->gen == gen && strstr(text, "Invalid Subject") == NULL &&
		    strstr(text, "Permissions Violation") == NULL)
			drop(nc, "server: %s", text);
		break;
	}
	case SB__NATS_MSG:
		if (nc->st != ST_READY && nc->st != ST_PONG)
			break;
		nc->st_.msgs_in++;
		if ((int64_t)in->msg.sid == nc->inbox_sid && nc->inbox_sid != 0) {
			deliver_reply(nc, &in->msg);
			break;
		}
		s = (struct sub *)(uintptr_t)sb__idmap_get(&nc->sids, in->msg.sid);
		if (s != NULL)
			s->fn(s->ud, &in->msg);
		break;
	}
	return nc->gen == gen ? 0 : -1;
}

/* Plaintext in: parse every whole operation, keep the rest. */
static void feed(struct sb__nats *nc, const uint8_t *p, size_t n)
{
	size_t limit = SB__NATS_LINE_MAX + nc->max_payload + 64;

	while (n > 0) {
		size_t take, off = 0;
		if (nc->in_cap - nc->in_len < n && nc->in_cap < limit) {
			size_t cap = nc->in_cap;
			uint8_t *q;
			while (cap - nc->in_len < n && cap < limit)
				cap *= 2;
			if ((q = realloc(nc->in, cap)) == NULL) {
				drop(nc, "out of memory");
				return;
			}
			nc->in = q;
			nc->in_cap = cap;
		}
		take = nc->in_cap - nc->in_len < n ? nc->in_cap - nc->in_len : n;
		if (take == 0) {
			drop(nc, "protocol: an operation over %zu bytes", nc->in_cap);
			return;
		}
		memcpy(nc->in + nc->in_len, p, take);
		nc->in_len += take;
		p += take;
		n -= take;
		for (;;) {
			struct sb__nats_in in;
			long used = sb__nats_parse(nc->in + off, nc->in_len - off, nc->max_payload,
						   &in);
			if (used == 0)
				break;
			if (used < 0) {
				drop(nc, "protocol: the server sent what NATS does not say");
				return;
			}
			off += (size_t)used;
			if (on_op(nc, &in) != 0)
				return;
		}
		memmove(nc->in, nc->in + off, nc->in_len - off);
		nc->in_len -= off;
	}
}

static void tls_in(struct sb__nats *nc, const uint8_t *p, size_t n)
{
	uint64_t gen = nc->gen;

	while (n > 0 && nc->gen == gen) {
		size_t k = sb__tls_feed(nc->tls, p, n);
		p += k;
		n -= k;
		if (nc->st == ST_TLS) {
			int rc = sb__tls_handshake(nc->tls);
			if (rc < 0) {
				drop(nc, "TLS: %s", sb__tls_why(nc->tls));
				return;
			}
			if (rc == 0) {
				if (k == 0) {
					drop(nc, "TLS: no progress");
					return;
				}
				continue;
			}
			say_connect(nc);
			if (nc->gen != gen)
				return;
		}
		for (;;) {
			uint8_t buf[16384];
			long m = sb__tls_read(nc->tls, buf, sizeof buf);
			if (m > 0) {
				feed(nc, buf, (size_t)m);
				if (nc->gen != gen)
					return;
				continue;
			}
			if (m == 0)
				break;
			drop(nc, "TLS: %s", m == SB__TLS_EOF ? "closed" : sb__tls_why(nc->tls));
			return;
		}
		if (k == 0) {
			drop(nc, "TLS: stuck");
			return;
		}
	}
}

static void do_read(struct sb__nats *nc)
{
	uint64_t gen = nc->gen;

	nc->more = 0;
	for (unsigned i = 0; i < nc->cfg.reads_max && nc->gen == gen; i++) {
		ssize_t n = recv(nc->fd, nc->rbuf, READ_CHUNK, MSG_DONTWAIT);
		if (n > 0) {
			/* Traffic proves the server alive: PING only when quiet. */
			nc->ping_at = sb__now_ms() + nc->cfg.ping_ms;
			nc->pings_out = 0;
			if (nc->tls != NULL)
				tls_in(nc, nc->rbuf, (size_t)n);
			else
				feed(nc, nc->rbuf, (size_t)n);
			/* A short read emptied the socket: what comes after it
			 * wakes the owner's poll. Asking again only to hear
			 * EAGAIN was a syscall per message on the way of every
			 * answer across routers. */
			if ((size_t)n < READ_CHUNK)
				return;
			nc->more = i + 1 == nc->cfg.reads_max && nc->gen == gen;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		drop(nc, "%s closed the connection%s%s", nc->srv[nc->cur].url, n < 0 ? ": " : "",
		     n < 0 ? strerror(errno) : "");
		return;
	}
}

/* ---- the owner's loop --------------------------------------------------- */

int sb__nats_fd(const struct sb__nats *nc)
{
	return nc->fd;
}

uint64_t sb__nats_socket_gen(const struct sb__nats *nc)
{
	return nc->gen;
}

int sb__nats_more(const struct sb__nats *nc)
{
	return nc->fd >= 0 && nc->more;
}

short sb__nats_events(const struct sb__nats *nc)
{
	if (nc->fd < 0)
		return 0;
	if (nc->st == ST_CONNECTING)
		return POLLOUT;
	if (sb__nats_pending(nc) > 0 || (nc->tls && sb__tls_pending(nc->tls)))
		return POLLIN | POLLOUT;
	return POLLIN;
}

static uint64_t next_due(const struct sb__nats *nc)
{
	uint64_t due = UINT64_MAX;
	if (nc->st == ST_WAIT)
		due = nc->retry_at;
	else if (nc->st != ST_READY)
		due = nc->deadline;
	else
		due = nc->ping_at;
	for (const struct req *r = nc->reqs; r; r = r->next)
		if (r->deadline < due)
			due = r->deadline;
	return due;
}

int sb__nats_timeout(const struct sb__nats *nc, uint64_t now_ms)
{
	uint64_t due = next_due(nc);
	if (due <= now_ms)
		return 0;
	return due - now_ms > 60000 ? 60000 : (int)(due - now_ms);
}

static void run_timers(struct sb__nats *nc, uint64_t now)
{
	struct req **pp = &nc->reqs, *r;

	if (nc->gone != NULL)
		sb__nats_forget_gone(nc, now);
	while ((r = *pp) != NULL) {
		if (r->deadline <= now) {
			*pp = r->next;
			r->fn(r->ud, SB_ETIMEOUT, NULL);
			free(r);
			pp = &nc->reqs; /* the callback may have changed the list */
			continue;
		}
		pp = &r->next;
	}
	if (nc->st == ST_WAIT) {
		if (now >= nc->retry_at)
			start_connect(nc);
		return;
	}
	if (nc->st != ST_READY) {
		if (now >= nc->deadline)
			drop(nc, "%s: no handshake within %u ms", nc->srv[nc->cur].url,
			     nc->cfg.connect_ms);
		return;
	}
	if (now >= nc->ping_at) {
		if (nc->pings_out >= nc->cfg.pings_max) {
			drop(nc, "%s: %u PINGs unanswered", nc->srv[nc->cur].url, nc->pings_out);
			return;
		}
		if (out_put(nc, "PING\r\n", 6) != 0) {
			drop(nc, "out of memory");
			return;
		}
		nc->pings_out++;
		nc->ping_at = now + nc->cfg.ping_ms;
	}
}

void sb__nats_process(struct sb__nats *nc, short revents, uint64_t now_ms)
{
	if (nc->st == ST_CONNECTING && (revents & (POLLOUT | POLLERR | POLLHUP))) {
		int e = 0;
		socklen_t len = sizeof e;
		if (getsockopt(nc->fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0 || e != 0) {
			drop(nc, "connect to %s: %s", nc->srv[nc->cur].url,
			     strerror(e ? e : errno));
		} else if (connected_to_self(nc->fd)) {
			drop(nc, "connect to %s: connected to itself", nc->srv[nc->cur].url);
		} else {
			nc->st = ST_INFO;
			revents |= POLLIN; /* INFO may be there already */
		}
	}
	if (nc->fd >= 0 && nc->st != ST_CONNECTING && (revents & (POLLIN | POLLERR | POLLHUP)))
		do_read(nc);
	run_timers(nc, now_ms);
	do_write(nc);
	note_pending(nc);
}

void sb__nats_poll(struct sb__nats *nc, int ms)
{
	struct pollfd p = {.fd = nc->fd, .events = sb__nats_events(nc)};
	int t = sb__nats_timeout(nc, sb__now_ms());
	short rev = 0;

	if (t > ms)
		t = ms;
	if (p.fd >= 0) {
		if (poll(&p, 1, t) > 0)
			rev = p.revents;
	} else if (t > 0) {
		poll(NULL, 0, t);
	}
	sb__nats_process(nc, rev, sb__now_ms());
}

int sb__nats_ready(const struct sb__nats *nc)
{
	return nc->st == ST_READY;
}

int sb__nats_writable(const struct sb__nats *nc)
{
	return !nc->refused;
}

size_t sb__nats_max_payload(const struct sb__nats *nc)
{
	return nc->max_payload;
}

const char *sb__nats_url(const struct sb__nats *nc)
{
	return nc->st == ST_READY ? nc->srv[nc->cur].url : "";
}

void sb__nats_stats(const struct sb__nats *nc, struct sb__nats_stats *st)
{
	*st = nc->st_;
}

const char *sb__nats_last_error(const struct sb__nats *nc)
{
	return nc->why;
}

/* ---- messages ----------------------------------------------------------- */

int sb__nats_pub(struct sb__nats *nc, const char *subject, const char *reply, const uint8_t *hdr,
		 size_t hdr_len, const void *data, size_t len)
{
	size_t sl = strlen(subject), rl = reply ? strlen(reply) : 0, need;

	if (!sb__nats_subject_ok(subject, sl, 0) || (reply && !sb__nats_subject_ok(reply, rl, 0)))
		return SB_EINVAL;
	if (nc->st != ST_READY)
		return SB_EOFFLINE;
	if (hdr_len > 0 && !nc->headers)
		return SB_EUNSUPPORTED;
	if (hdr_len + len > nc->max_payload)
		return SB_ETOOLARGE;
	need = sb__nats_pub_size(sl, rl, hdr_len, len);
	if (sb__nats_pending(nc) + nc->held + need > nc->cfg.out_max) {
		nc->refused = 1;
		nc->st_.refused++;
		return SB_EOVERLOADED;
	}
	if (out_reserve(nc, need) != 0)
		return SB_ENOMEM;
	nc->out_len += sb__nats_pub_write(nc->out + nc->out_len, subject, sl, reply, rl, hdr,
					  hdr_len, data, len);
	nc->st_.msgs_out++;
	note_pending(nc);
	return 0;
}

void sb__nats_hold(struct sb__nats *nc, size_t bytes)
{
	nc->held = bytes;
}

int64_t sb__nats_sub(struct sb__nats *nc, const char *subject, const char *queue,
		     sb__nats_msg_fn *fn, void *ud)
{
	struct sub *s, **pp;

	if (!sb__nats_subject_ok(subject, strlen(subject), 1) ||
	    (queue && !sb__nats_subject_ok(queue, strlen(queue), 0)) || fn == NULL)
		return SB_EINVAL;
	if ((s = calloc(1, sizeof *s)) == NULL)
		return SB_ENOMEM;
	s->subject = strdup(subject);
	s->queue = queue ? strdup(queue) : NULL;
	if (s->subject == NULL || (queue && s->queue == NULL))
		goto fail;
	s->sid = nc->next_sid++;
	s->fn = fn;
	s->ud = ud;
	if (sb__idmap_put(&nc->sids, (uint64_t)s->sid, (uint64_t)(uintptr_t)s) != 0)
		goto fail;
	/* Now if connected; otherwise say_connect() sends it with the rest. */
	if ((nc->st == ST_READY || nc->st == ST_PONG) && put_sub(nc, s) != 0) {
		sb__idmap_del(&nc->sids, (uint64_t)s->sid);
		goto fail;
	}
	for (pp = &nc->subs; *pp; pp = &(*pp)->next)
		;
	*pp = s;
	return s->sid;
fail:
	free(s->subject);
	free(s->queue);
	free(s);
	return SB_ENOMEM;
}

void sb__nats_unsub(struct sb__nats *nc, int64_t sid)
{
	struct sub **pp, *s;
	char line[32];

	for (pp = &nc->subs; (s = *pp) != NULL; pp = &s->next)
		if (s->sid == sid)
			break;
	if (s == NULL)
		return;
	*pp = s->next;
	if (nc->st == ST_READY || nc->st == ST_PONG)
		out_put(nc, line, sb__nats_unsub_write(line, (uint64_t)sid));
	/* What the server sent before it took the UNSUB still arrives: it
	 * goes to fn for a while yet rather than vanish unseen (no "no
	 * responders" would tell its publisher). Never replayed. */
	s->gone_at = sb__now_ms() + UNSUB_GRACE_MS;
	s->next = nc->gone;
	nc->gone = s;
}

/* Ended subscriptions whose grace is over are forgotten. */
void sb__nats_forget_gone(struct sb__nats *nc, uint64_t now)
{
	for (struct sub **pp = &nc->gone, *s; (s = *pp) != NULL;) {
		if (s->gone_at > now) {
			pp = &s->next;
			continue;
		}
		*pp = s->next;
		sb__idmap_del(&nc->sids, (uint64_t)s->sid);
		free(s->subject);
		free(s->queue);
		free(s);
	}
}

static void on_inbox(void *ud, const struct sb__nats_msg *m)
{
	(void)ud, (void)m; /* never called: on_op() routes the inbox itself */
}

int sb__nats_request(struct sb__nats *nc, const char *subject, const uint8_t *hdr, size_t hdr_len,
		     const void *data, size_t len, unsigned timeout_ms, sb__nats_reply_fn *fn,
		     void *ud)
{
	char reply[80], sub[64];
	struct req *r;
	int rc;

	if (nc->inbox_sid == 0) {
		uint8_t b[8];
		if (getrandom(b, sizeof b, 0) != sizeof b)
			memcpy(b, &nc->rng, sizeof b);
		nc->inbox_len = (size_t)snprintf(nc->inbox, sizeof nc->inbox,
						 INBOX_PREFIX "%02x%02x%02x%02x%02x%02x%02x%02x.",
						 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]);
		snprintf(sub, sizeof sub, "%s*", nc->inbox);
		int64_t sid = sb__nats_sub(nc, sub, NULL, on_inbox, NULL);
		if (sid < 0)
			return (int)sid;
		nc->inbox_sid = sid;
	}
	snprintf(reply, sizeof reply, "%s%llu", nc->inbox, (unsigned long long)nc->next_token);
	if ((r = calloc(1, sizeof *r)) == NULL)
		return SB_ENOMEM;
	rc = sb__nats_pub(nc, subject, reply, hdr, hdr_len, data, len);
	if (rc != 0) {
		free(r);
		return rc;
	}
	r->token = nc->next_token++;
	r->deadline = sb__now_ms() + timeout_ms;
	r->fn = fn;
	r->ud = ud;
	r->next = nc->reqs;
	nc->reqs = r;
	return 0;
}
