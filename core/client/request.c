/* The requesting side: sends, requests (to a name, a peer, or every
 * handler), their replies, cancel, local deadlines, broadcast tallies, and
 * the blocking sb_request_wait(). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <switchboard/client.h>
#include <switchboard/proto.h>

#include "client/client-int.h"
#include "common/clock.h"
#include "common/idmap.h"
#include "common/list.h"
#include "common/opts.h"
#include "common/timer.h"
#include "proto/mp.h"

#define GRACE_MS          1000u  /* local deadline: the request's timeout plus this */
#define ROUTER_TIMEOUT_MS 30000u /* the router's default timeout (docs/architecture.md) */

void sb__client_queue_cancel(struct sb_client *c, uint64_t id)
{
	struct sb_msg m = {.kind = SB_CANCEL, .id = id};
	if (c->st == C_READY || c->st == C_DRAINING)
		sb__client_queue(c, &m, 1);
}

static void on_deadline(struct sb__timer *t);

static struct req *req_get(struct sb_client *c)
{
	struct req *r;

	if (!sb__link_empty(&c->spare_reqs)) {
		r = SB__CONTAINER(c->spare_reqs.next, struct req, link);
		sb__link_del(&r->link);
		c->nspare_reqs--;
		return r;
	}
	if ((r = calloc(1, sizeof *r)) == NULL)
		return NULL;
	sb__timer_init(&r->timer, on_deadline);
	sb__link_init(&r->link);
	return r;
}

static void req_put(struct sb_client *c, struct req *r)
{
	if (c->nspare_reqs < SPARE_MAX) {
		sb__link_add_tail(&c->spare_reqs, &r->link);
		c->nspare_reqs++;
	} else
		free(r);
}

struct req *sb__client_req_find(struct sb_client *c, uint64_t id)
{
	/* 0 and control ids are never requests (and idmap keys 0 are empty slots). */
	if (id == 0 || (id & CTL_BIT))
		return NULL;
	return (struct req *)(uintptr_t)sb__idmap_get(&c->reqs, id);
}

/* The terminal event of a request. The request leaves the table before its
 * callback runs, so nothing the callback does (cancel it, time out, lose
 * the connection) can reach it a second time. */
void sb__client_req_end(struct sb_client *c, struct req *r, int err, const char *text,
			const void *payload, size_t len)
{
	sb__client_req_end_app(c, r, err, text, NULL, payload, len);
}

void sb__client_req_end_app(struct sb_client *c, struct req *r, int err, const char *text,
			    const char *app_code, const void *payload, size_t len)
{
	sb_reply_fn fn = r->fn;
	void *ud = r->ud;
	uint64_t id = r->id;

	if (r->cancelling) { /* sb_cancel() promised SB_ECANCELLED, whatever crossed it */
		err = SB_ECANCELLED;
		text = "cancelled by this client";
		app_code = NULL;
		payload = NULL;
		len = 0;
	}
	sb__timer_disarm(&r->timer);
	sb__idmap_del(&c->reqs, id);
	sb__link_del(&r->link);
	req_put(c, r);
	struct sb_reply rep = {.req = id,
			       .err = err,
			       .more = SB_MORE_NONE,
			       .outcome = text,
			       .outcome_len = strlen(text),
			       .payload = len > 0 ? payload : NULL,
			       .len = len,
			       .app_code = app_code};
	c->in_cb++;
	fn(&rep, ud);
	c->in_cb--;
}

static void on_deadline(struct sb__timer *t)
{
	struct req *r = SB__CONTAINER(t, struct req, timer);
	struct sb_client *c = r->c;

	/* The router, if it still has it, frees it and its handler. */
	sb__client_queue_cancel(c, r->id);
	sb__client_req_end(c, r, SB_ETIMEOUT,
			   "no answer from the router within the timeout plus 1 s", NULL, 0);
}

/* Takes the head each time: a callback may end other requests meanwhile. */
void sb__client_fail_requests(struct sb_client *c, int err, const char *text)
{
	while (!sb__link_empty(&c->open))
		sb__client_req_end(c, SB__CONTAINER(c->open.next, struct req, link), err, text,
				   NULL, 0);
}

/* A reply callback that is not the terminal event. */
void sb__client_reply_more(struct sb_client *c, struct req *r, int err, const char *outcome,
			   const struct sb_msg *m, enum sb_more more)
{
	char peer[SB_PEER_MAX + 1], app[SB_APPCODE_MAX + 1];
	struct sb_reply rep = {.req = r->id,
			       .err = err,
			       .more = more,
			       .outcome = outcome,
			       .outcome_len = strlen(outcome),
			       .payload = m->payload.len > 0 ? m->payload.ptr : NULL,
			       .len = m->payload.len};

	if (m->peer.ptr != NULL && m->peer.len <= SB_PEER_MAX) {
		memcpy(peer, m->peer.ptr, m->peer.len);
		peer[m->peer.len] = 0;
		rep.peer = peer;
	}
	if (m->app_code.ptr != NULL && m->app_code.len <= SB_APPCODE_MAX) {
		memcpy(app, m->app_code.ptr, m->app_code.len);
		app[m->app_code.len] = 0;
		rep.app_code = app;
	}
	c->in_cb++;
	r->fn(&rep, r->ud);
	c->in_cb--;
}

void sb__client_on_reply(struct sb_client *c, const struct sb_msg *m)
{
	struct req *r = sb__client_req_find(c, m->id);

	if (r == NULL) /* already ended, locally (deadline, cancel) or before */
		return;
	const char *outcome = sb__client_text(c, m->outcome, 0);
	if (!(m->flags & SB_F_MORE)) {
		sb__client_req_end(c, r, 0, outcome, m->payload.ptr, m->payload.len);
		return;
	}
	if (r->cancelling)
		return;
	/* With `peer`, one handler's part of a broadcast (SB_OPT_ALL, SB_OPT_PEERS). */
	enum sb_more more = m->flags & SB_F_CHUNK ? SB_MORE_CHUNK
			    : m->peer.ptr != NULL ? SB_MORE_RESULT
						  : SB_MORE_PROGRESS;
	sb__client_reply_more(c, r, 0, outcome, m, more);
}

int sb_send(struct sb_client *c, const char *name, const void *payload, size_t len,
	    const struct sb_opts *opts)
{
	struct sb_msg m = {.kind = SB_SEND};
	uint8_t hbuf[SB_HEADERS_MAX];
	struct sb_opts o;
	int rc;

	if (name == NULL || sb__opts_read(opts, &o) != 0)
		return SB_EINVAL;
	if ((rc = sb__client_payload(payload, len, &m.payload)) != 0)
		return rc;
	m.flags = o.flags & (SB_OPT_ALL | SB_OPT_PEERS) ? SB_F_BROADCAST : 0;
	m.name = sb__client_view(name);
	m.to = sb__client_view(o.to);
	if ((rc = sb__opts_headers(&o, c->running, hbuf, &m)) != 0)
		return rc;
	if (c->st == C_READY || c->st == C_DRAINING)
		return sb__client_queue(c, &m, 0);
	/* Held for the next connection only while there will be one. */
	if (c->cfg.offline_queue_bytes == 0 || c->st == C_DEAD || c->leaving)
		return SB_EOFFLINE;
	return sb__client_offline_push(c, &m);
}

int sb_request(struct sb_client *c, const char *name, const void *payload, size_t len,
	       const struct sb_opts *opts, sb_reply_fn fn, void *ud, uint64_t *req)
{
	struct sb_msg m = {.kind = SB_REQUEST};
	uint8_t hbuf[SB_HEADERS_MAX];
	struct sb_opts o;
	struct req *r;
	int rc;

	if (name == NULL || fn == NULL || sb__opts_read(opts, &o) != 0)
		return SB_EINVAL;
	if ((rc = sb__client_payload(payload, len, &m.payload)) != 0)
		return rc;
	if ((rc = sb__opts_headers(&o, c->running, hbuf, &m)) != 0)
		return rc;
	if (c->st == C_DRAINING)
		return SB_EDRAINING;
	if (c->st != C_READY)
		return SB_EOFFLINE;
	if ((r = req_get(c)) == NULL)
		return SB_ENOMEM;
	m.id = c->next_id;
	m.flags |= o.flags & (SB_OPT_ALL | SB_OPT_PEERS) ? SB_F_BROADCAST : 0;
	m.name = sb__client_view(name);
	m.to = sb__client_view(o.to);
	m.timeout_ms = o.timeout_ms ? o.timeout_ms : c->cfg.default_timeout_ms;
	if (sb__idmap_put(&c->reqs, m.id, (uintptr_t)r) != 0) {
		rc = SB_ENOMEM;
		goto fail;
	}
	if ((rc = sb__client_queue(c, &m, 0)) != 0) {
		sb__idmap_del(&c->reqs, m.id);
		goto fail;
	}
	c->next_id++;
	r->c = c;
	r->id = m.id;
	r->fn = fn;
	r->ud = ud;
	r->cancelling = 0;
	sb__link_add_tail(&c->open, &r->link);
	uint64_t t = m.timeout_ms ? m.timeout_ms : ROUTER_TIMEOUT_MS;
	sb__timer_arm(&c->wheel, &r->timer, sb__now_ms() + t + GRACE_MS);
	if (req != NULL)
		*req = m.id;
	return 0;
fail:
	req_put(c, r);
	return rc;
}

int sb_all_counts(const void *payload, size_t len, struct sb_all_counts *out)
{
	static const char *const keys[] = {"peers", "ok", "errors", "timeouts", "gone"};
	uint32_t *slots[] = {&out->peers, &out->ok, &out->errors, &out->timeouts, &out->gone};
	struct sb__mp_item v;

	memset(out, 0, sizeof *out);
	if (payload == NULL || len == 0 || sb_payload_check(payload, len) != 0)
		return SB_EINVAL;
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		if (sb__client_map_get(payload, len, keys[i], &v) != 1 || v.type != SB__MP_UINT ||
		    v.u > UINT32_MAX)
			return SB_EINVAL;
		*slots[i] = (uint32_t)v.u;
	}
	return 0;
}

int sb_cancel(struct sb_client *c, uint64_t req)
{
	struct req *r = sb__client_req_find(c, req);

	if (r == NULL || r->cancelling)
		return SB_EINVAL;
	r->cancelling = 1;
	sb__client_queue_cancel(c, req);
	return 0;
}

/* What sb_request_wait() waits for. */
struct waiter {
	int done;
	int err;
	char *outcome; /* the caller's buffer, or NULL */
	size_t outcome_cap;
	int want_reply;
	void *reply; /* malloc'd copy of the final payload */
	size_t reply_len;
};

static void on_wait_reply(const struct sb_reply *r, void *ud)
{
	struct waiter *w = ud;

	if (r->more != SB_MORE_NONE)
		return;
	w->done = 1;
	w->err = r->err;
	if (w->outcome != NULL && w->outcome_cap > 0)
		snprintf(w->outcome, w->outcome_cap, "%s", r->outcome);
	if (r->err == 0 && w->want_reply && r->len > 0) {
		if ((w->reply = malloc(r->len)) == NULL)
			w->err = SB_ENOMEM;
		else {
			memcpy(w->reply, r->payload, r->len);
			w->reply_len = r->len;
		}
	}
}

/* Ends an open request without calling its callback, whose state is about
 * to go out of scope. */
static void req_forget(struct sb_client *c, uint64_t id)
{
	struct req *r = sb__client_req_find(c, id);

	if (r == NULL)
		return;
	sb__client_queue_cancel(c, id);
	sb__timer_disarm(&r->timer);
	sb__idmap_del(&c->reqs, id);
	sb__link_del(&r->link);
	req_put(c, r);
}

int sb_request_wait(struct sb_client *c, const char *name, const void *payload, size_t len,
		    const struct sb_opts *opts, char *outcome, size_t outcome_cap, void **reply,
		    size_t *reply_len)
{
	struct waiter w = {.outcome = outcome, .outcome_cap = outcome_cap, .want_reply = !!reply};
	struct sb_opts o;
	int rc;

	if (outcome != NULL && outcome_cap > 0)
		outcome[0] = 0;
	if (reply != NULL)
		*reply = NULL;
	if (reply_len != NULL)
		*reply_len = 0;
	if (c->in_cb > 0 || sb__opts_read(opts, &o) != 0)
		return SB_EINVAL;
	uint32_t timeout_ms = o.timeout_ms;
	uint32_t budget = timeout_ms ? timeout_ms : c->cfg.default_timeout_ms;
	uint64_t deadline = sb__now_ms() + (budget ? budget : ROUTER_TIMEOUT_MS), id = 0;
	if ((rc = sb__client_wait_online_until(c, deadline)) != 0)
		return rc;
	/* Time spent waiting for the connection comes out of the request's. */
	uint64_t now = sb__now_ms();
	uint32_t left = deadline > now ? (uint32_t)(deadline - now) : 1;
	o.timeout_ms = timeout_ms ? left : 0;
	if ((rc = sb_request(c, name, payload, len, &o, on_wait_reply, &w, &id)) != 0)
		return rc;
	/* The request's local deadline ends this loop even if nothing answers. */
	while (rc == 0 && !w.done)
		rc = sb__client_step(c, -1);
	if (!w.done) {
		req_forget(c, id);
		return rc;
	}
	if (w.err != 0) {
		free(w.reply);
		return w.err;
	}
	if (reply != NULL)
		*reply = w.reply;
	if (reply_len != NULL)
		*reply_len = w.reply_len;
	return 0;
}
