/* TLS on a connection. OpenSSL runs over a BIO pair, never over the
 * socket: a receive is copied into the pair (its buffer goes back to the
 * kernel at once) and decrypted into a heap buffer that takes the normal
 * frame path; queued frames are sealed into records and sent with sendmsg
 * straight from the pair. Handshake and records never block the shard. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "common/log.h"
#include "common/tls.h"
#include "router/conn.h"
#include "router/conn_tls.h"
#include "router/conn_ws.h"
#include "router/flow.h"
#include "router/goodbye.h"
#include "router/outq.h"
#include "router/peers.h"
#include "router/shard.h"

/* A TLS connection's pair holds this much ciphertext coming in (a
 * receive is fed in passes, each decrypted at once) and going out (a whole
 * record and the start of the next, sealed while the first is sent). The
 * pair keeps both for the connection's life: 24 KiB, not 48, per idle
 * connection made the difference at 10,000 of them. */
#define TLS_IN_SIZE  4096
#define TLS_OUT_SIZE 20480
#define TLS_GATHER   4096 /* frames smaller than this share records */

/* A peer's address for the log lines that refuse it. */
static void peer_addr(const struct sb__conn *c, char *buf, size_t cap)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof sa;
	char ip[INET_ADDRSTRLEN];

	if (getpeername(c->fd, (struct sockaddr *)&sa, &len) == 0 && sa.sin_family == AF_INET &&
	    inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof ip) != NULL)
		snprintf(buf, cap, "%s:%u", ip, ntohs(sa.sin_port));
	else
		snprintf(buf, cap, "(unknown address)");
}

/* A TLS connection that cannot go on: the log says who and why. The peer
 * hears it as a fatal ERROR over TLS when the handshake finished (a name
 * not allowed), else as the alert OpenSSL queued; then it is closed. */
static void tls_fail(struct sb__shard *sh, struct sb__conn *c, int err)
{
	char from[64];

	peer_addr(c, from, sizeof from);
	if (c->ready)
		sb__log(&sh->r->log, 1, "peer %s (%s): TLS failed: %s", c->name, from,
			sb__tls_why(c->tls));
	else
		sb__log(&sh->r->log, 1, "TLS connection from %s refused: %s", from,
			sb__tls_why(c->tls));
	if (err == SB_EFORBIDDEN && sb__tls_done(c->tls))
		sb__send_error(sh, c, 0, err, sb__tls_why(c->tls), SB_F_FATAL);
	c->doomed = 1;
	sb__outq_mark(sh, c); /* what there is to say goes out, then the close */
}

/* The TLS settings a shard accepts with: its cached reference, renewed
 * (under tls_lock) only after a reload. Never on a message's path. */
static struct sb__tls_ctx *router_tls(struct sb__shard *sh)
{
	struct sb_router *r = sh->r;

	/* One relaxed-cost load per accept; the lock only after a reload. */
	if (atomic_load_explicit(&r->tls_gen, memory_order_acquire) != sh->tls_gen ||
	    sh->tls == NULL) {
		struct sb__tls_ctx *old = sh->tls;
		pthread_mutex_lock(&r->tls_lock);
		sh->tls = r->tls;
		sb__tls_ctx_get(sh->tls);
		sh->tls_gen = atomic_load_explicit(&r->tls_gen, memory_order_relaxed);
		pthread_mutex_unlock(&r->tls_lock);
		sb__tls_ctx_put(old);
	}
	return sh->tls;
}

int sb__conn_tls_start(struct sb__shard *sh, struct sb__conn *c)
{
	c->tls = sb__tls_new(router_tls(sh), NULL, TLS_IN_SIZE, TLS_OUT_SIZE);
	c->xport = SB__XPORT_TLS;
	return c->tls != NULL ? 0 : SB_ENOMEM;
}

/* Plain bytes on a TLS listener: a client without TLS, most likely. It
 * gets an ERROR it can read rather than an alert it cannot. */
static void plain_refused(struct sb__shard *sh, struct sb__conn *c)
{
	char from[64];

	peer_addr(c, from, sizeof from);
	sb__log(&sh->r->log, 1, "connection from %s refused: it does not speak TLS", from);
	sb__tls_free(c->tls);
	c->tls = NULL;
	if (c->edge != NULL) { /* an http:// or ws:// client of the edge: told in HTTP */
		sb__conn_ws_refuse(sh, c, 400, SB_EUNAUTHORIZED,
				   "this port requires TLS (https://, wss://)");
		sb__outq_mark(sh, c);
		return;
	}
	c->xport = SB__XPORT_PLAIN;
	sb__conn_fail(sh, c, SB_EUNAUTHORIZED, "this router requires TLS");
}

/* The handshake, with what was fed. @return 1 once done (and allowed),
 * 0 while it waits for more, -1 once the connection is failing. */
static int tls_handshake(struct sb__shard *sh, struct sb__conn *c)
{
	struct sb__tls *t = c->tls;
	int rc = sb__tls_handshake(t);

	if (rc < 0) {
		tls_fail(sh, c, rc);
		return -1;
	}
	if (sb__tls_pending(t))
		sb__outq_mark(sh, c); /* the handshake's next flight */
	if (rc == 1 && sb__tls_peer_subject(t) != NULL) {
		/* The verified subject becomes part of the peer's identity. */
		const char *subject = sb__tls_peer_subject(t);
		if (sb__peers_set_subject(c, subject, strlen(subject)) != 0) {
			sb__conn_close(sh, c, "out of memory");
			return -1;
		}
		if (sh->r->log.level >= 2) {
			char from[64];
			peer_addr(c, from, sizeof from);
			sb__log(&sh->r->log, 2, "TLS connection from %s: client certificate \"%s\"",
				from, subject);
		}
	}
	return rc;
}

/* Plaintext collected from one receive: one heap buffer sized to the
 * ciphertext (plaintext is shorter, give or take a record held back from
 * an earlier receive), handed to the frame path when full or at the end. */
struct plain {
	struct sb__buf *b;
	uint32_t used, cap;
};

static void plain_take(struct sb__shard *sh, struct sb__conn *c, struct plain *pl)
{
	if (pl->b != NULL && pl->used > 0 && c->edge != NULL)
		sb__conn_ws_in(sh, c, pl->b, pl->used); /* wss: HTTP, then WebSocket */
	else if (pl->b != NULL && pl->used > 0)
		sb__conn_take(sh, c, pl->b, pl->used);
	else if (pl->b != NULL)
		sb__buf_put(pl->b, &sh->pool);
	pl->b = NULL;
	pl->used = 0;
	pl->cap = sh->r->cfg.recv_buffer_size; /* full once: more may follow */
}

/* Decrypts every whole record in the pair. @return 0 once the connection
 * is failing or closing. */
static int tls_read(struct sb__shard *sh, struct sb__conn *c, struct plain *pl)
{
	for (;;) {
		if (pl->b == NULL && (pl->b = sb__buf_heap(pl->cap)) == NULL) {
			sb__conn_close(sh, c, "out of memory");
			return 0;
		}
		long n = sb__tls_read(c->tls, pl->b->data + pl->used, pl->cap - pl->used);
		if (n > 0 && (pl->used += (uint32_t)n) == pl->cap)
			plain_take(sh, c, pl);
		if (c->closing || c->doomed)
			return 0;
		if (n == 0)
			return 1;
		if (n == SB__TLS_EOF) {
			plain_take(sh, c, pl); /* what came before the close_notify */
			if (!c->closing && !c->doomed)
				sb__conn_close(sh, c, "peer closed");
			return 0;
		}
		if (n < 0) {
			tls_fail(sh, c, (int)n);
			return 0;
		}
	}
}

/* Ciphertext from a TLS connection, copied into its pair (so its receive
 * buffer goes back to the kernel at once, whatever the frames in it), in
 * as many passes as the pair needs; the plaintext reaches the frame path
 * in one piece. */
void sb__conn_tls_in(struct sb__shard *sh, struct sb__conn *c, const uint8_t *p, uint32_t len)
{
	struct plain pl = {.cap = len + 256 < sh->r->cfg.recv_buffer_size
					  ? len + 256
					  : sh->r->cfg.recv_buffer_size};

	if (sb__tls_plain(c->tls, p, len)) {
		plain_refused(sh, c);
		return;
	}
	while (len > 0 && !c->closing && !c->doomed) {
		size_t n = sb__tls_feed(c->tls, p, len);
		if (n == 0) { /* each pass empties the pair: cannot happen, never spin */
			sb__conn_close(sh, c, "TLS input stalled");
			break;
		}
		p += n;
		len -= (uint32_t)n;
		if (!sb__tls_done(c->tls)) {
			int rc = tls_handshake(sh, c);
			if (rc < 0)
				break;
			if (rc == 0)
				continue;
		}
		if (!tls_read(sh, c, &pl))
			break;
	}
	if (pl.b != NULL && !c->closing && !c->doomed)
		plain_take(sh, c, &pl);
	else if (pl.b != NULL)
		sb__buf_put(pl.b, &sh->pool);
}

/* One record from the head of the queue: a large frame straight from its
 * buffer, small ones gathered first (a record per 64-byte frame would
 * cost a seal and 22 bytes each). @return plaintext bytes taken, 0 when
 * the pair is full, or an error. */
static long tls_encrypt(struct sb__shard *sh, struct sb__conn *c)
{
	struct sb__seg *s = &c->q[c->q_head];
	size_t room = sb__tls_room(c->tls), n = 0;
	long w;

	if (room == 0)
		return sb__tls_write(c->tls, s->p, 0); /* 0, or the error that stopped it */
	if (s->len >= TLS_GATHER || c->q_len == 1)
		w = sb__tls_write(c->tls, s->p, s->len);
	else {
		for (uint32_t i = 0; i < c->q_len && n < room; i++) {
			const struct sb__seg *g = &c->q[(c->q_head + i) % c->q_cap];
			if (i > 0 && g->len >= TLS_GATHER)
				break;
			size_t k = g->len < room - n ? g->len : room - n;
			memcpy(sh->tls_stage + n, g->p, k);
			n += k;
		}
		w = sb__tls_write(c->tls, sh->tls_stage, n);
	}
	if (w > 0)
		sb__outq_consume(sh, c, (size_t)w);
	return w;
}

/* A TLS connection's output: queued frames become records while the pair
 * has room, then one sendmsg sends the ciphertext from the pair's own
 * buffer, where it stays, unmoved, until the send completes. */
void sb__conn_tls_flush(struct sb__shard *sh, struct sb__conn *c)
{
	struct sb__tls *t = c->tls;
	const uint8_t *p;
	size_t n;

	if (!sb__tls_done(t) && c->q_len > 0)
		sb__outq_consume(sh, c, c->q_bytes); /* nothing can be said before a handshake */
	while (c->q_len > 0) {
		long w = tls_encrypt(sh, c);
		if (w == 0)
			break;
		if (w < 0) {
			sb__outq_consume(sh, c, c->q_bytes);
			tls_fail(sh, c, (int)w);
		}
	}
	if (c->doomed && c->q_len == 0 && !sb__tls_pending(t))
		sb__tls_close_notify(t); /* once: the pass after it closes */
	if ((n = sb__tls_out(t, &p)) == 0) {
		if (c->doomed && c->q_len == 0)
			sb__conn_close(sh, c, sb__outq_end_why(sh, c));
		return;
	}
	sb__outq_send1(sh, c, p, n);
	c->q_sent = 0;
}

void sb__conn_tls_sent(struct sb__shard *sh, struct sb__conn *c, size_t n)
{
	sb__tls_sent(c->tls, n);
	if (c->nproducers > 0 && c->q_bytes <= sb__outq_pause_mark(sh) / 2)
		sb__flow_resume(sh, c);
	if (c->q_len > 0 || c->doomed || sb__bye_done(c) || sb__tls_pending(c->tls))
		sb__outq_mark(sh, c);
}
