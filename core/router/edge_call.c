/* HTTP/JSON calls on the edge. A call's body (JSON) is converted once into
 * the MessagePack payload of a REQUEST or SEND frame, which takes the frame
 * path as if the connection had sent it: balancing, schemas, name rules,
 * timeouts and the cancel when the connection closes are the router's
 * own. The frames queued back for the connection are caught on their way
 * into its queue (one transport test per frame): the final REPLY or the
 * ERROR becomes the answer, chunks are gathered beside it, and what an
 * HTTP client has no use for (WELCOME, PRESENCE, PING) is dropped. One
 * call is out at a time; bytes of later requests wait, bounded. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/log.h"
#include "proto/mp.h"
#include "router/conn.h"
#include "router/conn_ws.h"
#include "router/edge_auth.h"
#include "router/edge_call.h"
#include "router/handshake.h"
#include "router/outq.h"
#include "router/shard.h"

int sb__edge_call_path(struct sb__http_str path)
{
	return path.len >= sizeof SB__CALL_PREFIX - 1 &&
	       (memcmp(path.p, SB__CALL_PREFIX, sizeof SB__CALL_PREFIX - 1) == 0 ||
		memcmp(path.p, SB__SEND_PREFIX, sizeof SB__SEND_PREFIX - 1) == 0);
}

int sb__edge_status(int err)
{
	switch (err) {
	case SB_ENOHANDLER:
	case SB_ENOPEERS:
	case SB_EUNKNOWNPEER:
		return 404;
	case SB_EINVAL:
	case SB_EBADFRAME:
		return 400;
	case SB_EUNAUTHORIZED:
		return 401;
	case SB_EFORBIDDEN:
		return 403;
	case SB_ETOOLARGE:
		return 413;
	case SB_ETIMEOUT:
		return 504;
	case SB_EOVERLOADED:
	case SB_EDRAINING:
		return 503;
	case SB_EPEERGONE:
	case SB_ENOTCONNECTED:
		return 502;
	case SB_EUNSUPPORTED:
		return 501;
	case SB_EAPP:
		return 422;
	default:
		return 500;
	}
}

/* ---- answers ---------------------------------------------------------------- */

static void call_reset(struct sb__edge *e)
{
	free(e->body);
	e->body = NULL;
	e->body_len = e->body_cap = 0;
	sb__json_buf_free(&e->chunks);
	e->nchunks = 0;
	e->chunks_over = 0;
	e->sse_started = 0;
	e->call = SB__CALL_NONE;
}

/* Bytes of an answer, head and all, queued as they are. @return 0, or
 * -1 once the connection is closing */
static int put(struct sb__shard *sh, struct sb__conn *c, const char *a, size_t an, const char *b,
	       size_t bn)
{
	struct sb__buf *buf = sb__buf_heap(an + bn);
	if (buf == NULL) {
		sb__conn_close(sh, c, "out of memory");
		return -1;
	}
	memcpy(buf->data, a, an);
	if (bn > 0)
		memcpy(buf->data + an, b, bn);
	sb__edge_put_raw(sh, c, buf, an + bn);
	return c->closing ? -1 : 0;
}

/* The call is answered in full: the next request may be read; one that
 * closes ends the connection. */
static void call_done(struct sb__shard *sh, struct sb__conn *c)
{
	struct sb__edge *e = c->edge;

	sb__http_answered(&e->http);
	call_reset(e);
	e->partial = 0;
	if (!e->call_keep) {
		e->reading = 0;
		c->doomed = 1;
	} else {
		/* The next request's head and body get the deadline the first had. */
		if (sh->r->cfg.hello_timeout_ms > 0)
			sb__timer_arm(&sh->wheel, &c->hello_timer,
				      sh->now + sh->r->cfg.hello_timeout_ms);
		if (e->held_len > 0)
			e->resume = 1;
	}
	sb__outq_mark(sh, c);
}

/* A whole answer with a JSON body. */
static void answer(struct sb__shard *sh, struct sb__conn *c, int status, const char *body,
		   size_t blen)
{
	char head[256];
	struct sb__http_out o;

	sb__http_out_init(&o, head, sizeof head);
	sb__http_status_line(&o, status);
	sb__http_field(&o, "Content-Type", "application/json", 16);
	sb__http_field_uint(&o, "Content-Length", blen);
	if (!c->edge->call_keep)
		sb__http_field(&o, "Connection", "close", 5);
	sb__http_end_head(&o);
	if (sb__http_out_done(&o) != 0 || put(sh, c, o.p, o.len, body, blen) != 0)
		return;
	call_done(sh, c);
}

/* One Server-Sent Event, as one chunk of a chunked answer whose head goes
 * out with the first; the last ends the answer. */
static void sse(struct sb__shard *sh, struct sb__conn *c, const char *event, const char *json,
		size_t n, int last)
{
	struct sb__edge *e = c->edge;
	char head[256];
	struct sb__http_out o;

	if (!e->sse_started) {
		sb__http_out_init(&o, head, sizeof head);
		sb__http_status_line(&o, 200);
		sb__http_field(&o, "Content-Type", "text/event-stream", 17);
		sb__http_field(&o, "Cache-Control", "no-cache", 8);
		sb__http_field(&o, "Transfer-Encoding", "chunked", 7);
		if (!e->call_keep)
			sb__http_field(&o, "Connection", "close", 5);
		sb__http_end_head(&o);
		if (sb__http_out_done(&o) != 0 || put(sh, c, o.p, o.len, NULL, 0) != 0)
			return;
		e->sse_started = 1;
	}
	/* "event: NAME\n" "data: JSON\n\n" (JSON has no line break), in a chunk. */
	size_t cap = SB__HTTP_CHUNK_HEAD + strlen(event) + n + 32 + 7;
	char *buf = malloc(cap);
	if (buf == NULL) {
		sb__conn_close(sh, c, "out of memory");
		return;
	}
	struct sb__http_out ev;
	sb__http_out_init(&ev, buf + SB__HTTP_CHUNK_HEAD, cap - SB__HTTP_CHUNK_HEAD);
	sb__sse_event(&ev, event, json, n);
	sb__http_put(&ev, "\r\n", 2);
	if (last)
		sb__http_put(&ev, "0\r\n\r\n", 5);
	if (sb__http_out_done(&ev) == 0) {
		char ch[SB__HTTP_CHUNK_HEAD];
		size_t body = ev.len - 2 - (last ? 5 : 0);
		size_t hn = sb__http_chunk_head(ch, body);
		char *start = buf + SB__HTTP_CHUNK_HEAD - hn;
		memcpy(start, ch, hn);
		if (put(sh, c, start, hn + ev.len, NULL, 0) == 0 && last)
			call_done(sh, c);
	} else
		sb__conn_close(sh, c, "event too long");
	free(buf);
}

/* {"error":...,"code":"SB_...","message":... without the closing brace,
 * for error_json() and an application error's longer object. */
static void error_fields(struct sb__http_out *o, int err, const char *why, size_t why_len)
{
	char name[40];

	snprintf(name, sizeof name, "SB_%s", sb_errname(err));
	sb__http_put(o, "{\"error\":", 9);
	sb__http_json_str(o, sb_strerror(err), strlen(sb_strerror(err)));
	sb__http_put(o, ",\"code\":", 8);
	sb__http_json_str(o, name, strlen(name));
	sb__http_put(o, ",\"message\":", 11);
	sb__http_json_str(o, why, why_len < 300 ? why_len : 300);
}

/* {"error":...,"code":"SB_...","message":...} into @p o. */
static void error_json(struct sb__http_out *o, int err, const char *why, size_t why_len)
{
	error_fields(o, err, why, why_len);
	sb__http_put(o, "}", 1);
}

/* An error: its status with its JSON, or after events began, an error event. */
static void answer_error(struct sb__shard *sh, struct sb__conn *c, int status, int err,
			 const char *why, size_t why_len)
{
	char body[2048];
	struct sb__http_out o;

	sb__http_out_init(&o, body, sizeof body);
	error_json(&o, err, why, why_len);
	if (sb__http_out_done(&o) != 0) {
		sb__conn_close(sh, c, "error answer too long");
		return;
	}
	if (c->edge->sse_started)
		sse(sh, c, "error", o.p, o.len, 1);
	else
		answer(sh, c, status, o.p, o.len);
}

/* A refusal before anything is routed; the body, if any, is skipped. */
static void refuse(struct sb__shard *sh, struct sb__conn *c, int status, int err, const char *why)
{
	c->edge->call = SB__CALL_REFUSED;
	answer_error(sh, c, status, err, why, strlen(why));
	c->edge->call = c->edge->call_keep ? SB__CALL_REFUSED : SB__CALL_NONE;
}

/* ---- the request -------------------------------------------------------------- */

void sb__edge_call_head(struct sb__shard *sh, struct sb__conn *c, const struct sb__http_req *r)
{
	struct sb__edge *e = c->edge;
	int send = memcmp(r->path.p, SB__SEND_PREFIX, sizeof SB__SEND_PREFIX - 1) == 0;
	struct sb__http_str name = {r->path.p + sizeof SB__CALL_PREFIX - 1,
				    r->path.len - (uint32_t)(sizeof SB__CALL_PREFIX - 1)};
	struct sb__http_str v;
	uint64_t t = 0;

	e->call_keep = r->keep_alive;
	e->call_send = (uint8_t)send;
	e->call_sse = (uint8_t)sb__http_has(r->accept, r->n_accept, "text/event-stream", 1);
	if (r->method != SB__HTTP_M_POST) {
		refuse(sh, c, 405, SB_EUNSUPPORTED, "a call is a POST");
		return;
	}
	if (name.len == 0 || name.len > SB_NAME_MAX) {
		refuse(sh, c, 404, SB_ENOHANDLER, "the URL names no message (/v1/call/NAME)");
		return;
	}
	if ((sb__http_query(r->query, "timeout_ms", &v) && sb__http_uint(v, UINT32_MAX, &t) != 0) ||
	    (r->timeout.len > 0 && sb__http_uint(r->timeout, UINT32_MAX, &t) != 0)) {
		refuse(sh, c, 400, SB_EINVAL, "timeout_ms is not a number of milliseconds");
		return;
	}
	char why[160];
	if (sb__edge_token(sh, c, r, 1, why, sizeof why) != 0) {
		refuse(sh, c, 401, SB_EUNAUTHORIZED, why);
		return;
	}
	if (c->tok == NULL && sh->auth.pol->any_secret) {
		refuse(sh, c, 401, SB_EUNAUTHORIZED,
		       "this router requires authentication: an HTTP call needs a bearer token");
		return;
	}
	struct sb_view nv = {(const uint8_t *)name.p, name.len};
	if (c->tok != NULL && c->tok->rules &&
	    sb__edge_may(c, send ? SB_SEND : SB_REQUEST, nv, why, sizeof why) != 0) {
		sb__stat_add(&sh->st.forbidden, 1);
		refuse(sh, c, 403, SB_EFORBIDDEN, why);
		return;
	}
	memcpy(e->call_name, name.p, name.len);
	e->call_name_len = (uint8_t)name.len;
	e->call_timeout = (uint32_t)t;
	e->body_len = 0;
	e->body_cap = (size_t)r->content_length;
	if (e->body_cap > 0 && (e->body = malloc(e->body_cap)) == NULL) {
		sb__conn_close(sh, c, "out of memory");
		return;
	}
	e->call = SB__CALL_BODY;
	/* A client that waits to be told before sending its body (curl does,
	 * for a second, past 1 MiB) is told now; a refusal above was its answer. */
	if (r->expect_continue && r->content_length > 0) {
		static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
		struct sb__buf *b = sb__buf_heap(sizeof cont - 1);
		if (b == NULL) {
			sb__conn_close(sh, c, "out of memory");
			return;
		}
		memcpy(b->data, cont, sizeof cont - 1);
		sb__edge_put_raw(sh, c, b, sizeof cont - 1);
	}
}

void sb__edge_call_body(struct sb__shard *sh, struct sb__conn *c, const uint8_t *p, size_t n)
{
	struct sb__edge *e = c->edge;
	(void)sh;
	if (e->call != SB__CALL_BODY || n > e->body_cap - e->body_len)
		return; /* a refused call's body: skipped */
	memcpy(e->body + e->body_len, p, n);
	e->body_len += n;
}

void sb__edge_call_end(struct sb__shard *sh, struct sb__conn *c)
{
	struct sb__edge *e = c->edge;
	struct sb__json_buf args = {.max = sh->r->cfg.max_frame};
	struct sb__json_error jerr;
	char why[160];

	if (e->call == SB__CALL_REFUSED) {
		e->call = SB__CALL_NONE;
		return;
	}
	if (e->call != SB__CALL_BODY)
		return;
	sb__timer_disarm(&c->hello_timer); /* the request is in: its own timeout runs now */
	/* No body is no arguments: nil, as a peer that sends none. */
	int rc = e->body_len == 0
			 ? 0
			 : sb__json_parse((const char *)e->body, e->body_len, &args, &jerr);
	if (rc != 0) {
		if (rc == SB_ETOOLARGE)
			snprintf(why, sizeof why, "the arguments are over %u bytes as MessagePack",
				 sh->r->cfg.max_frame);
		else
			snprintf(why, sizeof why, "the body is not JSON: %s at byte %zu", jerr.what,
				 jerr.at);
		sb__json_buf_free(&args);
		refuse(sh, c, rc == SB_ETOOLARGE ? 413 : 400,
		       rc == SB_ETOOLARGE ? SB_ETOOLARGE : SB_EINVAL, why);
		e->call = SB__CALL_NONE;
		return;
	}
	struct sb_msg m = {.kind = e->call_send ? SB_SEND : SB_REQUEST,
			   .id = e->call_send ? 0 : ++e->call_id,
			   .timeout_ms = e->call_send ? 0 : e->call_timeout};
	m.name = (struct sb_view){(const uint8_t *)e->call_name, e->call_name_len};
	if (args.len > 0)
		m.payload = (struct sb_view){(const uint8_t *)args.data, (uint32_t)args.len};
	else
		m.payload = (struct sb_view){(const uint8_t *)"\xc0", 1};
	long n = sb_encoded_size(&m);
	if (n < 0) {
		sb__json_buf_free(&args);
		refuse(sh, c, n == SB_ETOOLARGE ? 413 : 400,
		       n == SB_ETOOLARGE ? SB_ETOOLARGE : SB_EINVAL,
		       "the message name or its arguments are not valid");
		e->call = SB__CALL_NONE;
		return;
	}
	struct sb__buf *b = sb__buf_heap((size_t)n);
	if (b == NULL) {
		sb__json_buf_free(&args);
		sb__conn_close(sh, c, "out of memory");
		return;
	}
	sb_encode(&m, b->data, (size_t)n);
	sb__json_buf_free(&args);
	free(e->body);
	e->body = NULL;
	e->call = SB__CALL_OUT;
	if (!c->ready) {
		/* An HTTP client is a peer of role client for its connection's life,
		 * named from the pattern, with no HELLO of its own. */
		struct sb_msg hello = {.kind = SB_HELLO, .version = SB_PROTO_VERSION};
		hello.role = c->tok != NULL && c->tok->service
				     ? (struct sb_view){(const uint8_t *)"service", 7}
				     : (struct sb_view){(const uint8_t *)"client", 6};
		sb__hs_hello(sh, c, &hello);
	}
	if (c->ready && !c->doomed)
		sb__conn_take(sh, c, b, (uint32_t)n);
	else
		sb__buf_put(b, &sh->pool);
	if (e->call == SB__CALL_OUT && e->call_send && !c->closing)
		answer(sh, c, 202, "{}", 2);
}

/* ---- frames back -------------------------------------------------------------- */

/* Appends bytes to a JSON buffer, within its max. @return 0 or -1 */
static int jb_put(struct sb__json_buf *b, const char *p, size_t n)
{
	if (b->max > 0 && b->len + n > b->max)
		return -1;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *d = realloc(b->data, cap);
		if (d == NULL)
			return -1;
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

/* A chunk's data, gathered for the answer within max_frame bytes of JSON. */
static void chunk(struct sb__shard *sh, struct sb__edge *e, const struct sb_msg *m)
{
	struct sb__json_buf one = {.max = sh->r->cfg.max_frame};

	if (e->chunks_over)
		return;
	e->chunks.max = sh->r->cfg.max_frame;
	if ((m->payload.len == 0 ? jb_put(&one, "null", 4)
				 : sb__json_print(m->payload.ptr, m->payload.len, &one)) != 0 ||
	    (e->nchunks > 0 && jb_put(&e->chunks, ",", 1) != 0) ||
	    jb_put(&e->chunks, one.data, one.len) != 0)
		e->chunks_over = 1;
	e->nchunks++;
	sb__json_buf_free(&one);
}

/* {"outcome":...,"data":...[,"chunks":[...]]} of a reply, in a buffer of
 * its own (NULL: answered with the error already). */
static char *reply_json(struct sb__shard *sh, struct sb__conn *c, const struct sb_msg *m,
			int with_chunks, size_t *len)
{
	struct sb__edge *e = c->edge;
	struct sb__json_buf data = {.max = 4ull * sh->r->cfg.max_frame};
	char why[128];

	int rc = m->payload.len == 0 ? jb_put(&data, "null", 4)
				     : sb__json_print(m->payload.ptr, m->payload.len, &data);
	if (rc != 0) {
		sb__json_buf_free(&data);
		snprintf(why, sizeof why, "the handler's reply cannot be JSON (%s)",
			 sb_strerror(rc < 0 ? rc : SB_ENOMEM));
		answer_error(sh, c, 502, SB_EBADFRAME, why, strlen(why));
		return NULL;
	}
	/* The outcome's text may need 6 bytes a byte escaped. */
	size_t cap = 48 + 6u * m->outcome.len + data.len + (with_chunks ? e->chunks.len : 0);
	char *body = malloc(cap);
	if (body == NULL) {
		sb__json_buf_free(&data);
		sb__conn_close(sh, c, "out of memory");
		return NULL;
	}
	struct sb__http_out o;
	sb__http_out_init(&o, body, cap);
	sb__http_put(&o, "{\"outcome\":", 11);
	sb__http_json_str(&o, (const char *)m->outcome.ptr, m->outcome.len);
	sb__http_put(&o, ",\"data\":", 8);
	sb__http_put(&o, data.data, data.len);
	if (with_chunks && e->nchunks > 0) {
		sb__http_put(&o, ",\"chunks\":[", 11);
		sb__http_put(&o, e->chunks.data, e->chunks.len);
		sb__http_put(&o, "]", 1);
	}
	sb__http_put(&o, "}", 1);
	sb__json_buf_free(&data);
	if (sb__http_out_done(&o) != 0) {
		free(body);
		sb__conn_close(sh, c, "answer too long");
		return NULL;
	}
	*len = o.len;
	return body;
}

/* A handler's application error: 422 with its code and details beside the
 * usual error fields, so an HTTP caller switches on `app_code` as a C or JS
 * requester does (docs/gateway.md). */
static void app_error(struct sb__shard *sh, struct sb__conn *c, const struct sb_msg *m)
{
	struct sb__json_buf data = {.max = 4ull * sh->r->cfg.max_frame};
	int rc = m->payload.len == 0 ? jb_put(&data, "null", 4)
				     : sb__json_print(m->payload.ptr, m->payload.len, &data);
	if (rc != 0) {
		char why[128];
		sb__json_buf_free(&data);
		snprintf(why, sizeof why, "the handler's error details cannot be JSON (%s)",
			 sb_strerror(rc < 0 ? rc : SB_ENOMEM));
		answer_error(sh, c, 502, SB_EBADFRAME, why, strlen(why));
		return;
	}
	size_t cap = 128 + 6u * (m->text.len + m->app_code.len) + data.len;
	char *body = malloc(cap);
	if (body == NULL) {
		sb__json_buf_free(&data);
		sb__conn_close(sh, c, "out of memory");
		return;
	}
	struct sb__http_out o;
	sb__http_out_init(&o, body, cap);
	error_fields(&o, SB_EAPP, (const char *)m->text.ptr, m->text.len);
	sb__http_put(&o, ",\"app_code\":", 12);
	sb__http_json_str(&o, (const char *)m->app_code.ptr, m->app_code.len);
	sb__http_put(&o, ",\"details\":", 11);
	sb__http_put(&o, data.data, data.len);
	sb__http_put(&o, "}", 1);
	sb__json_buf_free(&data);
	if (sb__http_out_done(&o) != 0)
		sb__conn_close(sh, c, "answer too long");
	else if (c->edge->sse_started)
		sse(sh, c, "error", o.p, o.len, 1);
	else
		answer(sh, c, 422, o.p, o.len);
	free(body);
}

static void final_reply(struct sb__shard *sh, struct sb__conn *c, const struct sb_msg *m)
{
	struct sb__edge *e = c->edge;
	char why[128];
	size_t n;

	if (e->chunks_over) {
		snprintf(why, sizeof why, "the chunks are over %u bytes of JSON",
			 sh->r->cfg.max_frame);
		answer_error(sh, c, 413, SB_ETOOLARGE, why, strlen(why));
		return;
	}
	char *body = reply_json(sh, c, m, !e->call_sse, &n);
	if (body == NULL)
		return;
	if (e->call_sse)
		sse(sh, c, "reply", body, n, 1);
	else
		answer(sh, c, 200, body, n);
	free(body);
}

/* With Server-Sent Events, progress and chunks go out as they come. */
static void more(struct sb__shard *sh, struct sb__conn *c, const struct sb_msg *m)
{
	struct sb__json_buf data = {.max = 4ull * sh->r->cfg.max_frame};
	size_t n;

	if (m->flags & SB_F_CHUNK) {
		int rc = m->payload.len == 0
				 ? jb_put(&data, "null", 4)
				 : sb__json_print(m->payload.ptr, m->payload.len, &data);
		if (rc == 0)
			sse(sh, c, "chunk", data.data, data.len, 0);
		sb__json_buf_free(&data);
		return;
	}
	char *body = reply_json(sh, c, m, 0, &n);
	if (body != NULL)
		sse(sh, c, "progress", body, n, 0);
	free(body);
}

int sb__edge_frame(struct sb__shard *sh, struct sb__conn *c, struct sb__buf *b, const uint8_t *p,
		   uint32_t len)
{
	struct sb__edge *e = c->edge;
	struct sb_msg m;

	/* Whole frames only: a broadcast's aggregate comes in two pieces, and
	 * an HTTP call never asks for one. */
	if (e->call != SB__CALL_OUT || len < SB_PREFIX_LEN || sb__be32(p) + SB_PREFIX_LEN != len ||
	    sb_decode(p, len, 0, &m, NULL) != 0)
		goto done;
	if (m.kind == SB_REPLY && m.id == e->call_id) {
		if (!(m.flags & SB_F_MORE))
			final_reply(sh, c, &m);
		else if (e->call_sse)
			more(sh, c, &m);
		else if (m.flags & SB_F_CHUNK)
			chunk(sh, e, &m);
		/* progress without Server-Sent Events is skipped */
	} else if (m.kind == SB_ERROR && (m.id == e->call_id || (m.flags & SB_F_FATAL))) {
		int err = -(int)m.code;
		if (m.flags & SB_F_FATAL)
			e->call_keep = 0;
		if (m.flags & SB_F_APP)
			app_error(sh, c, &m);
		else
			answer_error(sh, c, sb__edge_status(err), err, (const char *)m.text.ptr,
				     m.text.len);
	}
done:
	sb__buf_put(b, &sh->pool);
	return 0;
}
