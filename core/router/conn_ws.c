/* The edge's transport. A connection of the edge's port starts as HTTP:
 * its head is read by the bounded parser (http.c) within the handshake's
 * deadline, and either upgraded to WebSocket (GET /v1/ws, subprotocol
 * switchboard.v1, an allowed Origin) or refused with a status and a JSON
 * body. After the upgrade each binary message carries whole Switchboard
 * frames, unmasked in place in the receive buffer and routed by reference
 * as on TCP; the output queue's frames go out as binary messages of whole
 * frames, each header written beside them, the frames never copied. */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "common/log.h"
#include "common/tls.h"
#include "proto/mp.h"
#include "router/conn.h"
#include "router/admin_http.h"
#include "router/conn_ws.h"
#include "router/edge_auth.h"
#include "router/edge_call.h"
#include "router/flow.h"
#include "router/goodbye.h"
#include "router/handshake.h"
#include "router/outq.h"
#include "router/shard.h"

/* Our messages hold whole frames up to this many bytes (one frame larger
 * than it goes alone): what a client's default bound takes (1 MiB in
 * Python's websockets and Node's ws), and the bound we read with. */
static uint64_t message_max(const struct sb__shard *sh)
{
	return (uint64_t)sh->r->cfg.max_frame + SB_PREFIX_LEN;
}

static void on_deadline(struct sb__timer *t);

int sb__conn_ws_start(struct sb__shard *sh, struct sb__conn *c)
{
	struct sb__http_limits lim = {
		.head_max = SB__HTTP_HEAD_MAX,
		.line_max = SB__HTTP_LINE_MAX,
		.fields_max = SB__HTTP_FIELDS_MAX,
		.pipeline_max = 1, /* one call out at a time; later bytes are held */
		.body_max = sh->r->cfg.max_frame,
	};
	struct sb__edge *e = calloc(1, sizeof *e);

	if (e == NULL)
		return SB_ENOMEM;
	if (sb__http_init(&e->http, &lim) != 0) {
		free(e);
		return SB_ENOMEM;
	}
	sb__ws_init(&e->ws_in, message_max(sh), 0);
	e->reading = 1;
	c->edge = e;
	c->xport = SB__XPORT_HTTP;
	/* One deadline from the accept to the HELLO's end: the head, the
	 * upgrade and the handshake all fit in it, or the peer is cut off. */
	sb__timer_init(&c->hello_timer, on_deadline);
	return 0;
}

void sb__conn_ws_free(struct sb__conn *c)
{
	if (c->edge == NULL)
		return;
	sb__http_free(&c->edge->http);
	sb__ws_free(&c->edge->ws_in);
	free(c->edge->body);
	free(c->edge->held);
	sb__json_buf_free(&c->edge->chunks);
	free(c->edge);
	c->edge = NULL;
}

/* ---- origins ---------------------------------------------------------------- */

/* `*` matches any run of bytes; without case. The backtrack keeps it
 * linear in practice (one star's position remembered). */
static int glob(const char *p, size_t pn, const char *s, size_t sn)
{
	size_t pi = 0, si = 0, star = (size_t)-1, mark = 0;

	while (si < sn) {
		if (pi < pn && p[pi] == '*') {
			star = pi++;
			mark = si;
		} else if (pi < pn &&
			   tolower((unsigned char)p[pi]) == tolower((unsigned char)s[si])) {
			pi++;
			si++;
		} else if (star != (size_t)-1) {
			pi = star + 1;
			si = ++mark;
		} else
			return 0;
	}
	while (pi < pn && p[pi] == '*')
		pi++;
	return pi == pn;
}

int sb__ws_origin_ok(const char *list, const char *origin, size_t len)
{
	if (list == NULL)
		return 1;
	for (const char *p = list; *p != '\0';) {
		while (*p == ' ' || *p == ',')
			p++;
		const char *end = p;
		while (*end != '\0' && *end != ',')
			end++;
		const char *last = end;
		while (last > p && last[-1] == ' ')
			last--;
		if (last > p && glob(p, (size_t)(last - p), origin, len))
			return 1;
		p = end;
	}
	return 0;
}

/* ---- output ----------------------------------------------------------------- */

void sb__edge_put_raw(struct sb__shard *sh, struct sb__conn *c, struct sb__buf *b, size_t n)
{
	if (sb__outq_put(sh, c, b, b->data, (uint32_t)n) == 0)
		c->edge->raw_left += n;
}

static void queue_raw(struct sb__shard *sh, struct sb__conn *c, const char *p, size_t n)
{
	struct sb__buf *b = sb__buf_heap(n);
	if (b == NULL) {
		sb__conn_close(sh, c, "out of memory");
		return;
	}
	memcpy(b->data, p, n);
	sb__edge_put_raw(sh, c, b, n);
}

void sb__conn_ws_refuse(struct sb__shard *sh, struct sb__conn *c, int status, int err,
			const char *why)
{
	char buf[1024];
	struct sb__http_out o;

	sb__http_out_init(&o, buf, sizeof buf);
	sb__http_error(&o, status, err, why, 0);
	if (sb__http_out_done(&o) == 0)
		queue_raw(sh, c, o.p, o.len);
	c->edge->reading = 0;
	c->doomed = 1;
}

/* A WebSocket close to send once what is queued is out; nothing more is
 * read. The first reason given is the one sent. */
static void want_close(struct sb__shard *sh, struct sb__conn *c, uint16_t code, const char *why)
{
	struct sb__edge *e = c->edge;

	e->reading = 0;
	if (e->close_code == 0) {
		e->close_code = code;
		snprintf(e->close_why, sizeof e->close_why, "%s", why);
	}
	c->doomed = 1;
	sb__outq_mark(sh, c);
}

/* The bytes of the queue's head that make whole frames, up to the message
 * bound (one larger frame alone) and to the iovec's room. */
static uint64_t whole_frames(struct sb__shard *sh, const struct sb__conn *c, uint32_t max_segs)
{
	uint64_t total = 0, cut = 0, left = 0, limit = message_max(sh);
	uint8_t pre[SB_PREFIX_LEN];
	unsigned have = 0;

	for (uint32_t i = 0; i < c->q_len && i < max_segs; i++) {
		const struct sb__seg *s = &c->q[(c->q_head + i) % c->q_cap];
		uint32_t off = 0;
		while (off < s->len) {
			if (left == 0) { /* a frame starts: its prefix, maybe across segments */
				while (have < SB_PREFIX_LEN && off < s->len) {
					pre[have++] = s->p[off++];
					total++;
				}
				if (have < SB_PREFIX_LEN)
					break;
				have = 0;
				left = sb__be32(pre);
				if (cut > 0 && total + left > limit)
					return cut;
				if (left == 0) {
					cut = total;
					continue;
				}
			}
			uint32_t take = s->len - off < left ? s->len - off : (uint32_t)left;
			off += take;
			total += take;
			left -= take;
			if (left == 0)
				cut = total;
		}
	}
	return cut;
}

static void add_iov(struct iovec *iov, unsigned *k, const void *p, size_t n)
{
	iov[*k] = (struct iovec){.iov_base = (void *)p, .iov_len = n};
	(*k)++;
}

/* Segments of the queue's head covering @p bytes (from where the last
 * send stopped), as far as the iovec goes. */
static void add_queue(struct sb__conn *c, struct iovec *iov, unsigned *k, uint64_t bytes)
{
	for (uint32_t i = 0; i < c->q_len && bytes > 0 && *k < SB__IOV_MAX; i++) {
		const struct sb__seg *s = &c->q[(c->q_head + i) % c->q_cap];
		size_t n = s->len < bytes ? s->len : (size_t)bytes;
		add_iov(iov, k, s->p, n);
		bytes -= n;
	}
}

/* The close frame, the last thing we send: for a close we were asked to
 * send, with its code; for a connection failing its Switchboard protocol
 * (its ERROR went out first) 1008; for a goodbye or a drain 1000 or 1001. */
static void put_close(struct sb__shard *sh, struct sb__conn *c)
{
	struct sb__edge *e = c->edge;
	uint16_t code = e->close_code;
	const char *why = e->close_why;

	if (code == 0) {
		code = c->bye ? SB__WS_NORMAL : sh->draining ? SB__WS_GOING_AWAY : SB__WS_POLICY;
		why = c->bye ? "goodbye" : sh->draining ? "router draining" : "fatal error";
	}
	if (code == SB__WS_NO_STATUS) { /* the client's close had no code: neither has ours */
		e->ctl_len = (uint8_t)sb__ws_header(e->ctl, SB__WS_CLOSE, 1, 0);
	} else
		e->ctl_len = (uint8_t)sb__ws_close_frame(e->ctl, code, why);
	e->ctl_off = 0;
	e->close_sent = 1;
}

static void start_send(struct sb__shard *sh, struct sb__conn *c, const struct iovec *iov,
		       unsigned k)
{
	if (k == 1)
		sb__outq_send1(sh, c, iov[0].iov_base, iov[0].iov_len);
	else if (sb__outq_sendv(sh, c, iov, k) != 0) {
		sb__conn_close(sh, c, "out of memory");
		return;
	}
	c->q_sent = 0;
}

static size_t http_in(struct sb__shard *sh, struct sb__conn *c, uint8_t *p, size_t len);

/* The iovec of what goes out next (in iov, SB__IOV_MAX entries): raw
 * answers alone, else a control frame between messages and a message of
 * whole frames. @return entries; *done is set when nothing is left to say
 * and the connection may close. */
static unsigned build(struct sb__shard *sh, struct sb__conn *c, struct iovec *iov, int *done)
{
	struct sb__edge *e = c->edge;
	unsigned k = 0;

	*done = 0;
	if (e->raw_left > 0) { /* HTTP answers go out as they are, alone */
		add_queue(c, iov, &k, e->raw_left);
		return k;
	}
	if (!e->ws) {
		if (c->q_len > 0) /* nothing but answers is said before the upgrade */
			sb__outq_consume(sh, c, c->q_bytes);
		*done = c->doomed;
		return 0;
	}
	if (e->close_sent && e->ctl_off == e->ctl_len && e->ctl_len == 0) {
		*done = 1;
		return 0;
	}
	int between = e->hdr_off == e->hdr_len && e->msg_left == 0;
	if (between && e->ctl_len == 0 && !e->close_sent) {
		if (c->doomed && c->q_len == 0)
			put_close(sh, c);
		else if (e->pong_len > 0) {
			memcpy(e->ctl, e->pong, e->pong_len);
			e->ctl_len = e->pong_len;
			e->ctl_off = 0;
			e->pong_len = 0;
		}
	}
	if (e->ctl_off < e->ctl_len) /* always first: it was begun between messages */
		add_iov(iov, &k, e->ctl + e->ctl_off, (size_t)(e->ctl_len - e->ctl_off));
	if (between && !e->close_sent && c->q_len > 0) {
		uint64_t m = whole_frames(sh, c, SB__IOV_MAX - 2);
		if (m > 0) {
			e->msg_left = m;
			e->hdr_len = (uint8_t)sb__ws_header(e->hdr, SB__WS_BINARY, 1, m);
			e->hdr_off = 0;
		}
	}
	if (e->hdr_off < e->hdr_len)
		add_iov(iov, &k, e->hdr + e->hdr_off, (size_t)(e->hdr_len - e->hdr_off));
	if (e->msg_left > 0)
		add_queue(c, iov, &k, e->msg_left);
	return k;
}

/* n bytes of what build() gave have left: sent, or sealed into TLS records. */
static void consume(struct sb__shard *sh, struct sb__conn *c, size_t n)
{
	struct sb__edge *e = c->edge;
	size_t take;

	if (e->raw_left > 0) {
		take = n < e->raw_left ? n : e->raw_left;
		e->raw_left -= take;
		sb__outq_consume(sh, c, take);
		return;
	}
	if (e->ctl_off < e->ctl_len) {
		size_t rest = (size_t)(e->ctl_len - e->ctl_off);
		take = n < rest ? n : rest;
		e->ctl_off += (uint8_t)take;
		n -= take;
		if (e->ctl_off == e->ctl_len)
			e->ctl_len = e->ctl_off = 0;
	}
	size_t hrest = (size_t)(e->hdr_len - e->hdr_off);
	take = n < hrest ? n : hrest;
	e->hdr_off += (uint8_t)take;
	n -= take;
	take = n < e->msg_left ? n : (size_t)e->msg_left;
	if (take > 0)
		sb__outq_consume(sh, c, take);
	e->msg_left -= take;
	if (e->msg_left == 0 && e->hdr_off == e->hdr_len)
		e->hdr_len = e->hdr_off = 0;
}

/* wss: what build() gives is sealed into records while the pair has room
 * (each piece consumed as it is sealed), then the ciphertext goes out in
 * one sendmsg from the pair, as on a TLS connection of the TCP port. */
static void flush_tls(struct sb__shard *sh, struct sb__conn *c)
{
	struct sb__tls *t = c->tls;
	struct iovec iov[SB__IOV_MAX];
	const uint8_t *p;
	int done = 0;

	while (sb__tls_done(t)) { /* nothing is said before the handshake */
		unsigned k = build(sh, c, iov, &done);
		size_t w = 0;
		for (unsigned i = 0; i < k; i++) {
			long r = sb__tls_write(t, iov[i].iov_base, iov[i].iov_len);
			if (r < 0) {
				sb__conn_close(sh, c, sb__tls_why(t));
				return;
			}
			w += (size_t)r;
			if ((size_t)r < iov[i].iov_len)
				break;
		}
		if (w == 0)
			break;
		consume(sh, c, w);
	}
	size_t n = sb__tls_out(t, &p);
	if (n == 0) {
		if (done || (!sb__tls_done(t) && c->doomed))
			sb__conn_close(sh, c, c->edge->ws ? "WebSocket closed" : "answered");
		return;
	}
	sb__outq_send1(sh, c, p, n);
	c->q_sent = 0;
}

void sb__conn_ws_flush(struct sb__shard *sh, struct sb__conn *c)
{
	struct sb__edge *e = c->edge;
	int done;

	/* Requests that came while a call was out are read once it is
	 * answered: here, outside the routing that answered it. */
	if (e->resume && e->call == SB__CALL_NONE && !c->doomed) {
		uint8_t *held = e->held;
		size_t n = e->held_len;
		e->held = NULL;
		e->held_len = 0;
		e->resume = 0;
		http_in(sh, c, held, n);
		free(held);
		if (c->closing)
			return;
	}
	if (c->tls != NULL) {
		flush_tls(sh, c);
		return;
	}
	struct iovec iov[SB__IOV_MAX];
	unsigned k = build(sh, c, iov, &done);
	if (k > 0)
		start_send(sh, c, iov, k);
	else if (done)
		sb__conn_close(sh, c, e->ws ? "WebSocket closed" : "answered");
}

void sb__conn_ws_sent(struct sb__shard *sh, struct sb__conn *c, size_t n)
{
	struct sb__edge *e = c->edge;

	if (c->tls != NULL)
		sb__tls_sent(c->tls, n);
	else
		consume(sh, c, n);
	if (c->nproducers > 0 && c->q_bytes <= sb__outq_pause_mark(sh) / 2)
		sb__flow_resume(sh, c);
	if (c->q_len > 0 || c->doomed || e->pong_len > 0 || e->ctl_len > 0 || e->close_sent ||
	    e->raw_left > 0 || sb__bye_done(c) || (c->tls != NULL && sb__tls_pending(c->tls)))
		sb__outq_mark(sh, c);
}

/* ---- input ------------------------------------------------------------------ */

/* A browser page from an origin not allowed is refused before anything is
 * done for it (403, logged); a request without Origin is not a page's. */
static int origin_allowed(struct sb__shard *sh, struct sb__conn *c, const struct sb__http_req *r,
			  const char *what)
{
	char a[INET_ADDRSTRLEN];

	if (r->origin.len == 0 ||
	    sb__ws_origin_ok(sh->r->cfg.ws_allow_origin, r->origin.p, r->origin.len))
		return 1;
	sb__log(&sh->r->log, 1, "%s from %s refused: origin %.*s is not allowed", what,
		sb__conn_addr(c, a, sizeof a), (int)(r->origin.len < 200 ? r->origin.len : 200),
		r->origin.p);
	sb__conn_ws_refuse(sh, c, 403, SB_EFORBIDDEN, "origin not allowed");
	return 0;
}

static void upgrade(struct sb__shard *sh, struct sb__conn *c, const struct sb__http_req *r)
{
	struct sb__edge *e = c->edge;
	char buf[512], why[128];
	struct sb__http_out o;

	if (!origin_allowed(sh, c, r, "WebSocket upgrade"))
		return;
	/* Without a token here, the HELLO must carry one (handshake.c). */
	if (sb__edge_token(sh, c, r, 0, why, sizeof why) != 0) {
		char a[INET_ADDRSTRLEN];
		sb__log(&sh->r->log, 1, "WebSocket upgrade from %s refused: %s",
			sb__conn_addr(c, a, sizeof a), why);
		sb__conn_ws_refuse(sh, c, 401, SB_EUNAUTHORIZED, why);
		return;
	}
	sb__http_out_init(&o, buf, sizeof buf);
	int status = sb__ws_handshake(r, &o, why, sizeof why);
	if (status != 101) {
		sb__http_out_init(&o, buf, sizeof buf);
		sb__http_status_line(&o, status);
		if (status == 426)
			sb__http_field(&o, "Sec-WebSocket-Version", "13", 2);
		/* The error's own head follows the version field: one answer. */
		char body[512];
		struct sb__http_out eo;
		sb__http_out_init(&eo, body, sizeof body);
		sb__http_error(&eo, status, status == 426 ? SB_EUNSUPPORTED : SB_EBADFRAME, why, 0);
		if (status == 426) {
			/* Splice: our status line, the version field, then the rest
			 * of the error answer after its own status line. */
			const char *rest = memchr(eo.p, '\n', eo.len);
			if (rest != NULL)
				sb__http_put(&o, rest + 1, eo.len - (size_t)(rest + 1 - eo.p));
		} else
			o = eo;
		if (sb__http_out_done(&o) == 0)
			queue_raw(sh, c, o.p, o.len);
		e->reading = 0;
		c->doomed = 1;
		return;
	}
	if (sb__http_out_done(&o) != 0) {
		sb__conn_ws_refuse(sh, c, 500, SB_EINTERNAL, "answer too long");
		return;
	}
	queue_raw(sh, c, o.p, o.len);
	sb__http_free(&e->http); /* its 8 KiB block is not needed again */
	e->ws = 1;
	c->xport = SB__XPORT_WS;
	if (c->tok != NULL) /* the peer lives as long as its token: then 1008 */
		sb__tok_arm(sh, c);
}

/* Bytes that come while a call is out wait for its answer, up to a bound:
 * a client pipelining further than that is cut off. */
static int hold(struct sb__shard *sh, struct sb__conn *c, const uint8_t *p, size_t n)
{
	struct sb__edge *e = c->edge;
	uint8_t *h;

	if (e->held_len + n > SB__HELD_MAX || (h = realloc(e->held, e->held_len + n)) == NULL) {
		sb__conn_close(sh, c, "requests pipelined past 64 KiB");
		return -1;
	}
	memcpy(h + e->held_len, p, n);
	e->held = h;
	e->held_len += n;
	return 0;
}

/* HTTP requests: the upgrade, calls, and refusals. @return the bytes of p
 * taken (after an upgrade, what follows its head is WebSocket's). */
static size_t http_in(struct sb__shard *sh, struct sb__conn *c, uint8_t *p, size_t len)
{
	struct sb__edge *e = c->edge;
	size_t at = 0, used;
	struct sb__http_str body;

	if (len > 0)
		e->partial = 1;
	while (e->reading && !e->ws && !c->doomed && !c->closing) {
		if (e->call == SB__CALL_OUT || e->resume) {
			if (at < len)
				hold(sh, c, p + at, len - at);
			return len;
		}
		enum sb__http_event ev = sb__http_parse(&e->http, p + at, len - at, &used, &body);
		at += used;
		if (ev == SB__HTTP_MORE)
			return len;
		if (ev == SB__HTTP_WAIT) { /* after a request that closes: nothing more is read */
			if (e->call != SB__CALL_NONE && at < len)
				hold(sh, c, p + at, len - at);
			return len;
		}
		if (ev == SB__HTTP_ERROR) {
			char buf[512];
			struct sb__http_out o;
			sb__http_out_init(&o, buf, sizeof buf);
			sb__http_refusal(&o, &e->http);
			if (sb__http_out_done(&o) == 0)
				queue_raw(sh, c, o.p, o.len);
			e->reading = 0;
			c->doomed = 1;
			return len;
		}
		if (ev == SB__HTTP_BODY) {
			sb__edge_call_body(sh, c, (const uint8_t *)body.p, body.len);
			continue;
		}
		if (ev == SB__HTTP_END) {
			sb__edge_call_end(sh, c);
			continue;
		}
		const struct sb__http_req *r = sb__http_request(&e->http);
		if (e->admin) { /* never an upgrade or a call: operators' endpoints */
			sb__admin_http(sh, c, r);
			continue;
		}
		if (r->path.len == sizeof SB__WS_PATH - 1 &&
		    memcmp(r->path.p, SB__WS_PATH, r->path.len) == 0) {
			upgrade(sh, c, r);
			return at; /* what follows the head is WebSocket's */
		}
		if (sb__edge_call_path(r->path)) {
			if (origin_allowed(sh, c, r, "HTTP call"))
				sb__edge_call_head(sh, c, r);
			continue;
		}
		char why[128];
		snprintf(why, sizeof why, "nothing at %.*s (the edge serves %s, %sNAME, %sNAME)",
			 (int)(r->path.len < 48 ? r->path.len : 48), r->path.p, SB__WS_PATH,
			 SB__CALL_PREFIX, SB__SEND_PREFIX);
		sb__conn_ws_refuse(sh, c, 404, SB_ENOHANDLER, why);
	}
	return len;
}

/* Frames of a peer whose token narrows its name rules: each SEND, REQUEST
 * and REGISTER is held to them first (a refused request or registration
 * is answered forbidden, a send dropped, each counted), the rest taken
 * one frame at a time. Only such peers pay for the walk. */
static void narrowed(struct sb__shard *sh, struct sb__conn *c, struct sb__buf *b, uint8_t *p,
		     size_t len)
{
	char why[SB_TEXT_MAX];

	for (size_t at = 0; at < len && !c->closing && !c->doomed;) {
		uint32_t n = SB_PREFIX_LEN + sb__be32(p + at);
		struct sb_msg m;
		if (sb_decode(p + at, n, 0, &m, NULL) == 0 &&
		    sb__edge_may(c, m.kind, m.name, why, sizeof why) != 0) {
			sb__stat_add(&sh->st.forbidden, 1);
			if (m.kind != SB_SEND)
				sb__send_error(sh, c, m.id, SB_EFORBIDDEN, why, 0);
		} else {
			sb__buf_get(b);
			sb__conn_take_at(sh, c, b, p + at, n);
		}
		at += n;
	}
	sb__buf_put(b, &sh->pool);
}

/* A whole message: its frames go the frame path, by reference when it lies
 * in b, else from a copy. */
static void message(struct sb__shard *sh, struct sb__conn *c, struct sb__buf *b, uint32_t len,
		    const struct sb__ws_event *ev)
{
	if (sb__ws_whole_frames(ev->data, ev->len, sh->r->cfg.max_frame) < 0) {
		want_close(sh, c, SB__WS_BAD_DATA, "a message must hold whole Switchboard frames");
		return;
	}
	struct sb__buf *h = b;
	uint8_t *p = ev->data;
	if (ev->data >= b->data && ev->data + ev->len <= b->data + len)
		sb__buf_get(b);
	else if ((h = sb__buf_heap(ev->len)) != NULL) {
		memcpy(h->data, ev->data, ev->len);
		p = h->data;
	} else {
		sb__conn_close(sh, c, "out of memory");
		return;
	}
	if (c->tok != NULL && c->tok->rules)
		narrowed(sh, c, h, p, ev->len);
	else
		sb__conn_take_at(sh, c, h, p, (uint32_t)ev->len);
}

void sb__conn_ws_in(struct sb__shard *sh, struct sb__conn *c, struct sb__buf *b, uint32_t len)
{
	struct sb__edge *e = c->edge;
	size_t at = 0, used;
	struct sb__ws_event ev;

	if (!e->ws)
		at = http_in(sh, c, b->data, len);
	while (at < len && e->ws && e->reading && !c->closing && !c->doomed) {
		enum sb__ws_kind k = sb__ws_next(&e->ws_in, b->data + at, len - at, &used, &ev);
		at += used;
		switch (k) {
		case SB__WS_MESSAGE:
			message(sh, c, b, len, &ev);
			break;
		case SB__WS_GOT_PING:
			/* Only the latest ping needs its pong (RFC 6455 5.5.3). */
			e->pong_len = (uint8_t)sb__ws_header(e->pong, SB__WS_PONG, 1, ev.len);
			memcpy(e->pong + e->pong_len, ev.data, ev.len);
			e->pong_len += (uint8_t)ev.len;
			sb__outq_mark(sh, c);
			break;
		case SB__WS_GOT_CLOSE:
			want_close(sh, c, ev.code, "");
			break;
		case SB__WS_ERROR: {
			char a[INET_ADDRSTRLEN];
			sb__log(&sh->r->log, 2, "WebSocket peer %s (%s): closed with %u: %s",
				c->name[0] ? c->name : "(handshake)", sb__conn_addr(c, a, sizeof a),
				sb__ws_close_code(&e->ws_in), sb__ws_why(&e->ws_in));
			want_close(sh, c, sb__ws_close_code(&e->ws_in), sb__ws_why(&e->ws_in));
			break;
		}
		default: /* MORE: every byte taken; a pong needs nothing */
			break;
		}
	}
	sb__buf_put(b, &sh->pool);
}

/* A WebSocket peer hears why (an ERROR), then a close with 1008. An HTTP
 * connection's token is read again on each call: it is not closed. */
void sb__conn_ws_token_expired(struct sb__shard *sh, struct sb__conn *c)
{
	if (!c->edge->ws)
		return;
	if (c->ready)
		sb__send_error(sh, c, 0, SB_EUNAUTHORIZED, "the bearer token expired", SB_F_FATAL);
	want_close(sh, c, SB__WS_POLICY, "the bearer token expired");
}

/* The deadline from the accept: a head not in yet is answered 408; a
 * WebSocket peer without its HELLO hears it as on TCP, then the close. */
static void on_deadline(struct sb__timer *t)
{
	struct sb__conn *c = SB__CONTAINER(t, struct sb__conn, hello_timer);
	struct sb__shard *sh = c->sh;
	char why[64];

	if (c->doomed || c->closing)
		return;
	if (c->edge->ws) {
		sb__hs_on_timeout(t);
		return;
	}
	if (!c->edge->partial && (c->ready || c->edge->admin)) { /* kept alive, nothing came */
		sb__conn_close(sh, c, "idle keep-alive connection");
		return;
	}
	snprintf(why, sizeof why, "no request within %u ms", sh->r->cfg.hello_timeout_ms);
	sb__stat_add(&sh->st.hello_timeouts, 1);
	sb__conn_ws_refuse(sh, c, 408, SB_ETIMEOUT, why);
	sb__outq_mark(sh, c);
}
