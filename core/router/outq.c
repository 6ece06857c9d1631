/* A connection's output queue: frame references in a ring, flushed by one
 * send per loop turn (a sendmsg of up to SB__IOV_MAX segments, with an
 * iovec lent by the shard while it is out) and one send in flight (so
 * frames are never reordered), and bounded: a consumer that
 * cannot keep up is dropped rather than allowed to grow without limit.
 * Small frames queued back to back are gathered into one staging buffer,
 * so that they go out as one iovec. */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/log.h"
#include "router/conn.h"
#include "router/conn_tls.h"
#include "router/conn_ws.h"
#include "router/edge_call.h"
#include "router/flow.h"
#include "router/goodbye.h"
#include "router/move.h"
#include "router/outq.h"
#include "router/shard.h"

/* The list holds endpoint ids, not pointers: a connection freed before the
 * flush is then simply not found. */
void sb__outq_mark(struct sb__shard *sh, struct sb__conn *c)
{
	if (c->dirty)
		return;
	if (sh->ndirty == sh->dirty_cap) {
		uint32_t cap = sh->dirty_cap ? sh->dirty_cap * 2 : 256;
		uint64_t *d = realloc(sh->dirty, cap * sizeof *d);
		if (d == NULL)
			abort(); /* queued output that is never sent would hang its peer */
		sh->dirty = d;
		sh->dirty_cap = cap;
	}
	sh->dirty[sh->ndirty++] = c->ep;
	c->dirty = 1;
}

/* Bytes a connection may queue before it is dropped: out_max, plus the
 * window of what may already be on its way. A shard routes at most its
 * receive pool per loop turn; a pause takes up to two turns to land on
 * another shard, and a resume routes up to a pool of parked bytes at once.
 * Pauses and resumes can race through several such bursts: eight pools
 * (measured: four were passed once in 16 runs) can arrive after the queue
 * crossed the pause mark (out_max / 4) through no fault of the reader. The
 * sending shard also pauses its producers once mail_cap bytes are in flight
 * to one shard, so a receiving shard slow to run cannot find more than that
 * waiting in its ring. */
#define WINDOW_POOLS 8

static size_t queue_limit(const struct sb__shard *sh)
{
	const struct sb_router_config *cfg = &sh->r->cfg;
	return cfg->out_max + WINDOW_POOLS * (size_t)cfg->recv_buffers * cfg->recv_buffer_size;
}

const char *sb__outq_end_why(const struct sb__shard *sh, const struct sb__conn *c)
{
	return c->bye ? "goodbye" : sh->draining ? "router stopped" : "closed after a fatal error";
}

/* Queues a frame (taking over the caller's reference). A connection that
 * cannot keep up is dropped rather than allowed to grow without bound. */
int sb__enqueue(struct sb__shard *sh, struct sb__conn *c, struct sb__buf *b, const uint8_t *p,
		uint32_t len)
{
	/* An HTTP client reads answers, not frames: the one transport test
	 * a frame pays. */
	if (c->xport == SB__XPORT_HTTP)
		return sb__edge_frame(sh, c, b, p, len);
	return sb__outq_put(sh, c, b, p, len);
}

/* Frames up to this size are copied next to the small frame queued before
 * them rather than sent as an iovec of their own: the kernel's work per
 * iovec of a sendmsg (importing it, a segment to copy from) costs more
 * than copying a small frame once, up to about 1 KiB, where the two cost
 * the same (docs/performance.md, "Contiguous send buffer" and "Gathering
 * up to 1 KiB"). Larger frames keep their own iovec, never copied: past
 * 1 KiB the copy costs more than it saves. */
#define GATHER_MAX 1024

/* Appends a small frame to the queue's last segment, itself small or a
 * staging buffer with room, and lets go of the frame's buffer (a receive
 * buffer goes back to the kernel without waiting for the send). The last
 * segment must not be in the send in flight: the kernel may still read
 * it, and its bytes must not move. @return 1 if the frame was taken */
static int gather(struct sb__shard *sh, struct sb__conn *c, struct sb__buf *b, const uint8_t *p,
		  uint32_t len)
{
	struct sb__seg *t = &c->q[(c->q_head + c->q_len - 1) % c->q_cap];
	size_t used = (size_t)(t->p - t->buf->data) + t->len;

	if (c->sending && c->q_len <= c->q_sent)
		return 0;
	/* A staging buffer holds one segment, the one that took it, so the
	 * segment's end is the end of what the buffer holds. */
	if (t->buf->kind == SB__BUF_STAGE && SB__STAGE_SIZE - used >= len) {
		memcpy(t->buf->data + used, p, len);
		t->len += len;
	} else if (t->len <= GATHER_MAX) {
		struct sb__buf *g = sb__stage_get(&sh->pool);
		if (g == NULL)
			return 0; /* then it goes out as an iovec of its own */
		memcpy(g->data, t->p, t->len);
		memcpy(g->data + t->len, p, len);
		sb__buf_put(t->buf, &sh->pool);
		*t = (struct sb__seg){g, g->data, t->len + len};
		c->q_last = g;
	} else
		return 0;
	sb__buf_put(b, &sh->pool);
	return 1;
}

int sb__outq_put(struct sb__shard *sh, struct sb__conn *c, struct sb__buf *b, const uint8_t *p,
		 uint32_t len)
{
	if (c->q_bytes + len > queue_limit(sh)) {
		sb__buf_put(b, &sh->pool);
		sb__stat_add(&sh->st.slow_consumers, 1);
		sb__log(&sh->r->log, 1,
			"peer %s: %zu bytes queued, over its limit of %zu: dropped as a slow "
			"consumer",
			c->name, c->q_bytes + len, queue_limit(sh));
		sb__conn_close(sh, c, "slow consumer");
		return SB_EOVERLOADED;
	}
	/* Plain connections only: TLS gathers its records from the queue
	 * itself, and the edge's sends point into the queue's segments. */
	if (len <= GATHER_MAX && c->q_len > 0 && c->xport == SB__XPORT_PLAIN &&
	    gather(sh, c, b, p, len))
		goto queued;
	if (c->q_len == c->q_cap) {
		uint32_t cap = c->q_cap ? c->q_cap * 2 : 16;
		struct sb__seg *nq = malloc(cap * sizeof *nq);
		if (nq == NULL) {
			sb__buf_put(b, &sh->pool);
			sb__conn_close(sh, c, "out of memory");
			return SB_ENOMEM;
		}
		for (uint32_t i = 0; i < c->q_len; i++)
			nq[i] = c->q[(c->q_head + i) % c->q_cap];
		free(c->q);
		c->q = nq;
		c->q_head = 0;
		c->q_cap = cap;
	}
	/* A frame routed in place keeps its whole receive buffer out of the
	 * kernel's ring until it is sent. A queue that does not drain would
	 * soon hold its pool, and every connection of the pool's shard would
	 * stop being read. So once a pool runs low, a queue with something
	 * in it gets a copy of a frame instead, unless the frame's buffer is
	 * the one its last frame holds already; a queue with nothing in it
	 * sends its frame this turn. */
	if (c->q_len > 0 && c->q_last != b && sb__buf_scarce(b)) {
		struct sb__buf *h = sb__buf_heap(len);
		if (h == NULL) {
			sb__buf_put(b, &sh->pool);
			sb__conn_close(sh, c, "out of memory");
			return SB_ENOMEM;
		}
		memcpy(h->data, p, len);
		sb__buf_put(b, &sh->pool);
		b = h;
		p = h->data;
	}
	c->q[(c->q_head + c->q_len++) % c->q_cap] = (struct sb__seg){b, p, len};
	c->q_last = b;
queued:
	c->q_bytes += len;
	if (c->q_bytes > atomic_load_explicit(&sh->st.queued_peak, memory_order_relaxed))
		atomic_store_explicit(&sh->st.queued_peak, c->q_bytes, memory_order_relaxed);
	if (c->q_bytes > sb__outq_pause_mark(sh) && !sb__timer_armed(&c->slow) &&
	    sh->r->cfg.slow_ms > 0)
		sb__flow_watch(sh, c);
	sb__outq_mark(sh, c);
	return 0;
}

/* Encodes a router-made message and queues it. */
int sb__send_msg(struct sb__shard *sh, struct sb__conn *c, const struct sb_msg *m)
{
	long n = sb_encoded_size(m);
	struct sb__buf *b = n > 0 ? sb__buf_heap((size_t)n) : NULL;
	if (b == NULL)
		return SB_ENOMEM;
	sb_encode(m, b->data, (size_t)n);
	return sb__enqueue(sh, c, b, b->data, (uint32_t)n);
}

void sb__send_error(struct sb__shard *sh, struct sb__conn *c, uint64_t id, int err,
		    const char *text, uint8_t flags)
{
	struct sb_msg m = {.kind = SB_ERROR, .flags = flags, .id = id, .code = (uint32_t)-err};
	m.text.ptr = (const uint8_t *)text;
	m.text.len = (uint32_t)strlen(text);
	sb__send_msg(sh, c, &m);
}

/* One sendmsg with every queued segment, up to SB__IOV_MAX; a doomed
 * connection with nothing left to send is closed. */
static void flush_conn(struct sb__shard *sh, struct sb__conn *c)
{
	if (c->sending || c->closing)
		return;
	if (sb__bye_done(c))
		c->doomed = 1; /* its GOODBYE is honoured: closed once its output is out */
	if (c->xport != SB__XPORT_PLAIN) {
		if (c->xport == SB__XPORT_TLS)
			sb__conn_tls_flush(sh, c);
		else
			sb__conn_ws_flush(sh, c);
		return;
	}
	if (c->q_len == 0) {
		if (c->doomed)
			sb__conn_close(sh, c, sb__outq_end_why(sh, c));
		return;
	}
	uint32_t n = c->q_len < SB__IOV_MAX ? c->q_len : SB__IOV_MAX;
	if (n == 1) { /* the usual case once small frames are gathered */
		const struct sb__seg *s = &c->q[c->q_head];
		sb__outq_send1(sh, c, s->p, s->len);
	} else {
		struct iovec iov[SB__IOV_MAX];
		for (uint32_t i = 0; i < n; i++) {
			const struct sb__seg *s = &c->q[(c->q_head + i) % c->q_cap];
			iov[i] = (struct iovec){.iov_base = (void *)s->p, .iov_len = s->len};
		}
		if (sb__outq_sendv(sh, c, iov, n) != 0) {
			sb__conn_close(sh, c, "out of memory");
			return;
		}
	}
	c->q_sent = n;
}

/* Iovecs kept for the next sends: enough for a loop turn's sends of a busy
 * shard without malloc, bounded so that a burst does not hold its peak. */
#define SENDV_KEEP 64

/* send and sendmsg, not write and writev: MSG_NOSIGNAL keeps a peer that
 * vanished from raising SIGPIPE in whatever program embeds the router. */
void sb__outq_send1(struct sb__shard *sh, struct sb__conn *c, const void *p, size_t n)
{
	struct io_uring_sqe *sqe = sb__sqe(sh);
	io_uring_prep_send(sqe, c->fd, p, n, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, sb__tag(SB__TAG_SEND, c->ep));
	c->sending = 1;
}

int sb__outq_sendv(struct sb__shard *sh, struct sb__conn *c, const struct iovec *iov, unsigned n)
{
	struct sb__sendv *v = sh->sv_free;
	if (v != NULL) {
		sh->sv_free = v->next;
		sh->nsv_free--;
	} else if ((v = malloc(sizeof *v)) == NULL)
		return SB_ENOMEM;
	memcpy(v->iov, iov, n * sizeof *iov);
	v->msg = (struct msghdr){.msg_iov = v->iov, .msg_iovlen = n};
	c->sv = v; /* the kernel may read it until the completion */
	struct io_uring_sqe *sqe = sb__sqe(sh);
	io_uring_prep_sendmsg(sqe, c->fd, &v->msg, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, sb__tag(SB__TAG_SEND, c->ep));
	c->sending = 1;
	return 0;
}

static void sendv_put(struct sb__shard *sh, struct sb__conn *c)
{
	struct sb__sendv *v = c->sv;
	c->sv = NULL;
	if (sh->nsv_free >= SENDV_KEEP) {
		free(v);
		return;
	}
	v->next = sh->sv_free;
	sh->sv_free = v;
	sh->nsv_free++;
}

void sb__outq_sendv_destroy(struct sb__shard *sh)
{
	while (sh->sv_free != NULL) {
		struct sb__sendv *v = sh->sv_free;
		sh->sv_free = v->next;
		free(v);
	}
	sh->nsv_free = 0;
}

void sb__outq_flush(struct sb__shard *sh)
{
	for (uint32_t i = 0; i < sh->ndirty; i++) {
		struct sb__conn *c = sb__conn_get(sh, sh->dirty[i]);
		if (c != NULL) {
			c->dirty = 0;
			flush_conn(sh, c);
		}
	}
	sh->ndirty = 0;
}

/* A sendmsg completed: release what went out, keep the rest in order. */
void sb__outq_sent(struct sb__shard *sh, struct sb__conn *c, int res)
{
	c->sending = 0;
	if (c->sv != NULL)
		sendv_put(sh, c);
	if (c->closing) {
		sb__conn_free(sh, c);
		return;
	}
	if (res < 0) {
		sb__conn_close(sh, c, strerror(-res));
		return;
	}
	c->out_total += (uint64_t)res; /* the slow-consumer clock's evidence */
	if (c->xport != SB__XPORT_PLAIN) {
		if (c->xport == SB__XPORT_TLS)
			sb__conn_tls_sent(sh, c, (size_t)res);
		else
			sb__conn_ws_sent(sh, c, (size_t)res);
		return;
	}
	size_t left = (size_t)res;
	for (uint32_t i = 0; i < c->q_sent && left > 0; i++) {
		struct sb__seg *s = &c->q[c->q_head];
		if (left < s->len) { /* partial: resume inside this segment */
			s->p += left;
			s->len -= (uint32_t)left;
			c->q_bytes -= left;
			break;
		}
		left -= s->len;
		c->q_bytes -= s->len;
		sb__buf_put(s->buf, &sh->pool);
		c->q_head = (c->q_head + 1) % c->q_cap;
		c->q_len--;
	}
	if (c->nproducers > 0 && c->q_bytes <= sb__outq_pause_mark(sh) / 2)
		sb__flow_resume(sh, c);
	if ((c->doomed || sb__bye_done(c)) && c->q_len == 0)
		sb__conn_close(sh, c, sb__outq_end_why(sh, c));
	else if (c->q_len > 0)
		sb__outq_mark(sh, c);
	else if (sb__move_ready(c))
		sb__move_ship(sh, c); /* c is gone */
}

/* Drops n bytes of plaintext from the head of the queue: encrypted, or
 * (before a handshake) unsayable. */
void sb__outq_consume(struct sb__shard *sh, struct sb__conn *c, size_t n)
{
	c->q_bytes -= n;
	while (n > 0) {
		struct sb__seg *s = &c->q[c->q_head];
		if (n < s->len) {
			s->p += n;
			s->len -= (uint32_t)n;
			return;
		}
		n -= s->len;
		sb__buf_put(s->buf, &sh->pool);
		c->q_head = (c->q_head + 1) % c->q_cap;
		c->q_len--;
	}
}
