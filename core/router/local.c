/* Embedding: sends, requests and cancels from the embedding program and
 * their replies, and answers of in-process calls from other threads, all
 * through each shard's inbox, without a socket. (The handlers themselves:
 * local_call.c.) */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/opts.h"
#include "router/router-t.h"
#include "router/shard.h"
#include "router/local.h"
#include "router/request.h"

static struct sb_view view(const void *p, size_t len)
{
	struct sb_view v = {p, (uint32_t)len};
	return v;
}

static void answer(sb_reply_fn fn, void *ud, uint64_t req, int err, struct sb_view text,
		   struct sb_view payload, enum sb_more more, struct sb_view peer,
		   struct sb_view app_code)
{
	/* The router's views are not NUL-terminated; the struct's strings are.
	 * Copied on the stack: no allocation per reply. */
	char t[SB_TEXT_MAX + 1], p[SB_PEER_MAX + 1];
	uint32_t n = text.len < SB_TEXT_MAX ? text.len : SB_TEXT_MAX;

	if (n == 0 && err != 0) {
		const char *s = sb_strerror(err);
		n = (uint32_t)strlen(s);
		memcpy(t, s, n);
	} else if (n > 0)
		memcpy(t, text.ptr, n);
	t[n] = 0;
	struct sb_reply r = {.req = req,
			     .err = err,
			     .more = more,
			     .outcome = t,
			     .outcome_len = n,
			     .payload = payload.len > 0 ? payload.ptr : NULL,
			     .len = payload.len};
	if (peer.ptr != NULL && peer.len <= SB_PEER_MAX) {
		memcpy(p, peer.ptr, peer.len);
		p[peer.len] = 0;
		r.peer = p;
	}
	char a[SB_APPCODE_MAX + 1];
	if (app_code.ptr != NULL && app_code.len <= SB_APPCODE_MAX) {
		memcpy(a, app_code.ptr, app_code.len);
		a[app_code.len] = 0;
		r.app_code = a;
	}
	fn(&r, ud);
}

void sb__local_answer(sb_reply_fn fn, void *ud, uint64_t req, int err, struct sb_view text,
		      struct sb_view payload, enum sb_more more, struct sb_view peer)
{
	answer(fn, ud, req, err, text, payload, more, peer, (struct sb_view){NULL, 0});
}

void sb__local_fail(sb_reply_fn fn, void *ud, uint64_t req, int err, const char *text)
{
	struct sb_view none = {NULL, 0};
	sb__local_answer(fn, ud, req, err, view(text, strlen(text)), none, SB_MORE_NONE, none);
}

void sb__local_reply_frame(sb_reply_fn fn, void *ud, uint64_t req, const struct sb_msg *m)
{
	enum sb_more more = SB_MORE_NONE;

	if (m->flags & SB_F_MORE)
		more = m->peer.ptr != NULL
			       ? (m->kind == SB_REPLY && (m->flags & SB_F_CHUNK) ? SB_MORE_CHUNK
										 : SB_MORE_RESULT)
		       : m->flags & SB_F_CHUNK ? SB_MORE_CHUNK
					       : SB_MORE_PROGRESS;
	if (m->kind == SB_REPLY)
		sb__local_answer(fn, ud, req, 0, m->outcome, m->payload, more, m->peer);
	else
		answer(fn, ud, req, -(int)m->code, m->text, m->payload, more, m->peer, m->app_code);
}

/* Queues an item for shard `to`'s inbox and wakes it. */
static int post(struct sb_router *r, unsigned to, const struct sb__inject *item)
{
	struct sb__inbox *in = &r->inboxes[to];
	pthread_mutex_lock(&in->lock);
	if (in->n == in->cap) {
		uint32_t cap = in->cap ? in->cap * 2 : 64;
		struct sb__inject *ni = realloc(in->items, cap * sizeof *ni);
		if (ni == NULL) {
			pthread_mutex_unlock(&in->lock);
			return SB_ENOMEM;
		}
		in->items = ni;
		in->cap = cap;
	}
	in->items[in->n++] = *item;
	atomic_store_explicit(&in->pending, 1, memory_order_release);
	pthread_mutex_unlock(&in->lock);
	uint64_t one = 1;
	if (write(r->shards[to].efd, &one, sizeof one) < 0)
		sb__log(&r->log, 0, "waking shard %u for an in-process message failed", to);
	return 0;
}

int sb__local_post(struct sb_router *r, unsigned shard, struct sb__buf *b, uint32_t len,
		   uint64_t ep, struct sb_call *call)
{
	struct sb__inject item = {.frame = b, .len = len, .ep = ep, .call = call};
	int rc = !r->running || atomic_load(&r->stopping) ? SB_EDRAINING : post(r, shard, &item);
	if (rc != 0 && b != NULL)
		sb__buf_put(b, NULL);
	return rc;
}

/* Encodes the message on the caller's thread and queues it for shard `to`. */
static int inject(struct sb_router *r, unsigned to, const struct sb_msg *m, sb_reply_fn fn,
		  void *ud)
{
	if (!r->running || atomic_load(&r->stopping))
		return SB_EDRAINING;
	if (m->payload.len > 0 && sb_payload_check(m->payload.ptr, m->payload.len) != 0)
		return SB_EINVAL;
	long n = sb_encoded_size(m);
	if (n < 0)
		return (int)n;
	if ((uint64_t)n - SB_PREFIX_LEN > r->cfg.max_frame)
		return SB_ETOOLARGE;
	struct sb__buf *b = sb__buf_heap((size_t)n);
	if (b == NULL)
		return SB_ENOMEM;
	sb_encode(m, b->data, (size_t)n);
	struct sb__inject item = {.frame = b, .len = (uint32_t)n, .fn = fn, .ud = ud};
	int rc = post(r, to, &item);
	if (rc != 0)
		sb__buf_put(b, NULL);
	return rc;
}

/* The options as a message's `to`, flags and headers (encoded into hbuf,
 * which the message refers to). An in-process handler's chained call
 * inherits a traceparent only through opts->parent: the program's threads
 * give no "running handler" to default to. */
static int apply_opts(struct sb_msg *m, const struct sb_opts *opts, uint8_t *hbuf)
{
	struct sb_opts o;

	if (sb__opts_read(opts, &o) != 0)
		return SB_EINVAL;
	m->flags = o.flags & (SB_OPT_ALL | SB_OPT_PEERS) ? SB_F_BROADCAST : 0;
	int rc = sb__opts_headers(&o, NULL, hbuf, m);
	if (rc != 0)
		return rc;
	if (o.to != NULL)
		m->to = view(o.to, strlen(o.to));
	m->timeout_ms = m->kind == SB_REQUEST ? o.timeout_ms : 0;
	return 0;
}

int sb_router_send(struct sb_router *r, const char *name, const void *payload, size_t len,
		   const struct sb_opts *opts)
{
	if (name == NULL)
		return SB_EINVAL;
	struct sb_msg m = {.kind = SB_SEND, .name = view(name, strlen(name))};
	uint8_t hbuf[SB_HEADERS_MAX];
	m.payload = view(payload, len);
	int rc = apply_opts(&m, opts, hbuf);
	if (rc != 0)
		return rc;
	return inject(r, atomic_fetch_add(&r->inject_rr, 1) % r->nshards, &m, NULL, NULL);
}

/* An in-process request's id names its shard (id % shards), so a cancel
 * from any thread finds the shard that owns it without asking. */
int sb_router_request(struct sb_router *r, const char *name, const void *payload, size_t len,
		      const struct sb_opts *opts, sb_reply_fn fn, void *ud, uint64_t *req)
{
	if (name == NULL || fn == NULL)
		return SB_EINVAL;
	struct sb_msg m = {.kind = SB_REQUEST, .name = view(name, strlen(name))};
	uint8_t hbuf[SB_HEADERS_MAX];
	m.payload = view(payload, len);
	int rc = apply_opts(&m, opts, hbuf);
	if (rc != 0)
		return rc;
	m.id = atomic_fetch_add(&r->local_ids, 1) + 1;
	rc = inject(r, (unsigned)(m.id % r->nshards), &m, fn, ud);
	if (rc == 0 && req != NULL)
		*req = m.id;
	return rc;
}

int sb_router_cancel(struct sb_router *r, uint64_t req)
{
	if (req == 0 || req > atomic_load(&r->local_ids))
		return SB_EINVAL;
	struct sb_msg m = {.kind = SB_CANCEL, .id = req};
	return inject(r, (unsigned)(req % r->nshards), &m, NULL, NULL);
}

/* Sends and requests from the embedding program: routed like a service's
 * (in-process callers may call internal handlers), answered by callback. */
void sb__local_read(struct sb__shard *sh)
{
	struct sb__inbox *in = &sh->r->inboxes[sh->id];
	if (atomic_load_explicit(&in->pending, memory_order_acquire) == 0)
		return;
	pthread_mutex_lock(&in->lock);
	struct sb__inject *items = in->items;
	uint32_t n = in->n;
	in->items = NULL;
	in->n = in->cap = 0;
	atomic_store_explicit(&in->pending, 0, memory_order_relaxed);
	pthread_mutex_unlock(&in->lock);
	for (uint32_t i = 0; i < n; i++) {
		struct sb__buf *b = items[i].frame;
		struct sb_msg m;
		if (items[i].ep != 0) { /* an in-process call's answer, from another thread */
			if (b != NULL)
				sb__req_reply(sh, items[i].ep, b, b->data, items[i].len);
			if (items[i].call != NULL)
				sb__local_release(sh, items[i].call);
			continue;
		}
		struct sb__asker a = {.service = 1, .fn = items[i].fn, .ud = items[i].ud};
		if (sb_decode(b->data, items[i].len, 0, &m, NULL) == 0) {
			if (m.kind == SB_CANCEL)
				sb__req_cancel(sh, SB__LOCAL_REQUESTER, m.id);
			else if (m.kind == SB_SEND)
				sb__forward_send(sh, &a, &m, b, b->data, items[i].len);
			else
				sb__forward_request(sh, &a, &m, b, b->data, items[i].len);
		}
		sb__buf_put(b, &sh->pool);
	}
	free(items);
}

void sb__local_teardown(struct sb__shard *sh)
{
	struct sb__inbox *in = &sh->r->inboxes[sh->id];

	/* Requests queued as the router stopped still get their one answer. */
	for (uint32_t i = 0; i < in->n; i++) {
		struct sb_msg m;
		if (in->items[i].ep != 0) { /* answers: their calls are freed with the router */
			if (in->items[i].frame != NULL)
				sb__buf_put(in->items[i].frame, NULL);
			continue;
		}
		if (in->items[i].fn != NULL &&
		    sb_decode(in->items[i].frame->data, in->items[i].len, 0, &m, NULL) == 0)
			sb__local_fail(in->items[i].fn, in->items[i].ud, m.id, SB_EDRAINING,
				       "the router stopped");
		sb__buf_put(in->items[i].frame, NULL);
	}
	free(in->items);
	in->items = NULL;
	in->n = in->cap = 0;
}
