/* The handler side: a message handed to its handler as a call, the replies
 * a handler sends through it (progress, chunks, the final reply or an
 * error), and the router's CANCEL reaching the handler's on_cancel. */
#include <stdlib.h>
#include <string.h>

#include <switchboard/client.h>
#include <switchboard/proto.h>

#include "client/client-int.h"
#include "common/idmap.h"
#include "common/list.h"

static struct call *call_get(struct sb_client *c)
{
	struct call *k;

	if (!sb__link_empty(&c->spare_calls)) {
		k = SB__CONTAINER(c->spare_calls.next, struct call, link);
		sb__link_del(&k->link);
		c->nspare_calls--;
		return k;
	}
	if ((k = malloc(sizeof *k)) == NULL)
		return NULL;
	sb__link_init(&k->link);
	return k;
}

static const struct sb__call_ops client_call_ops;

/* @return 0, or SB_ENOMEM (k then holds nothing that needs releasing
 * but its ident) */
static int call_fill(struct sb_client *c, struct call *k, const struct sb_msg *m)
{
	k->base.ops = &client_call_ops;
	k->base.name = k->name;
	k->base.from = m->from;
	k->base.is_request = m->kind == SB_REQUEST;
	k->base.payload = m->payload.ptr;
	k->base.len = m->payload.len;
	k->c = c;
	k->rid = m->kind == SB_REQUEST ? m->id : 0;
	k->ident = (struct ident *)(uintptr_t)sb__idmap_get(&c->idents, m->from);
	if (k->ident != NULL)
		k->ident->refs++;
	k->busy = k->finished = k->mapped = k->cancel_ran = 0;
	k->dead = 0;
	k->on_cancel = NULL;
	k->cancel_ud = NULL;
	memcpy(k->name, m->name.ptr, m->name.len);
	k->name[m->name.len] = 0;
	return sb__call_headers_load(&k->base, &m->headers);
}

/* Runs the handler with k as the call chained sends and requests on this
 * client inherit from (sb_opts.parent's default). */
static void call_run(struct sb_client *c, struct call *k, sb_handler_fn fn, void *ud)
{
	const struct sb_call *outer = c->running;

	c->running = &k->base;
	c->in_cb++;
	fn(&k->base, ud);
	c->in_cb--;
	c->running = outer;
}

/* The only place a call is freed (or kept for reuse). */
static void call_release(struct sb_client *c, struct call *k)
{
	sb__call_headers_free(&k->base);
	sb__client_ident_put(k->ident);
	k->ident = NULL;
	if (k->mapped) {
		sb__idmap_del(&c->calls, k->rid);
		k->mapped = 0;
	}
	sb__link_del(&k->link);
	if (c->nspare_calls < SPARE_MAX) {
		sb__link_add_tail(&c->spare_calls, &k->link);
		c->nspare_calls++;
	} else
		free(k);
}

/* Frees k once nobody can use it any more: its final reply went out, or it
 * died and its on_cancel (the handler's cue to forget it) has run. */
static void call_settle(struct sb_client *c, struct call *k)
{
	if (k->busy)
		return;
	if (k->finished || (k->dead && k->cancel_ran))
		call_release(c, k);
}

static void call_run_cancel(struct sb_client *c, struct call *k)
{
	k->cancel_ran = 1;
	k->busy++;
	c->in_cb++;
	k->on_cancel(&k->base, k->cancel_ud);
	c->in_cb--;
	k->busy--;
}

/* No reply to k can reach its requester any more. */
static void call_kill(struct sb_client *c, struct call *k, int why)
{
	k->dead = why;
	if (k->mapped) {
		sb__idmap_del(&c->calls, k->rid);
		k->mapped = 0;
	}
	sb__link_del(&k->link);
	sb__link_add_tail(&c->orphans, &k->link);
	if (k->on_cancel != NULL && !k->cancel_ran && !k->finished)
		call_run_cancel(c, k);
	call_settle(c, k);
}

void sb__client_kill_calls(struct sb_client *c, int why)
{
	while (!sb__link_empty(&c->live))
		call_kill(c, SB__CONTAINER(c->live.next, struct call, link), why);
}

/* Answers a request we cannot hand to a handler. */
void sb__client_answer_error(struct sb_client *c, uint64_t rid, int err, const char *text)
{
	struct sb_msg m = {.kind = SB_ERROR, .id = rid, .code = (uint32_t)-err};
	m.text = sb__client_view(text);
	sb__client_queue(c, &m, 1);
}

void sb__client_on_message(struct sb_client *c, const struct sb_msg *m)
{
	struct handler *h = sb__client_handler_find(c, m->name);
	struct call *k;

	if (h == NULL) {
		if (m->kind == SB_REQUEST)
			sb__client_answer_error(c, m->id, SB_ENOHANDLER,
						"no handler for this name on this peer");
		return;
	}
	sb_handler_fn fn = h->fn; /* the handler may unregister itself */
	void *ud = h->ud;
	if (m->kind == SB_SEND) {
		k = &c->send_call;
		if (call_fill(c, k, m) == 0)
			call_run(c, k, fn, ud); /* a SEND has no one to tell it failed */
		sb__call_headers_free(&k->base);
		k->base.payload = NULL;
		k->base.len = 0;
		sb__client_ident_put(k->ident);
		k->ident = NULL;
		return;
	}
	if ((k = call_get(c)) == NULL) {
		sb__client_answer_error(c, m->id, SB_EOVERLOADED, "out of memory");
		return;
	}
	int rc = call_fill(c, k, m);
	sb__link_add_tail(&c->live, &k->link);
	if (rc != 0 || sb__idmap_put(&c->calls, k->rid, (uintptr_t)k) != 0) {
		call_release(c, k);
		sb__client_answer_error(c, m->id, SB_EOVERLOADED, "out of memory");
		return;
	}
	k->mapped = 1;
	k->busy++;
	call_run(c, k, fn, ud);
	k->busy--;
	k->base.payload = NULL; /* it lives in the receive buffer, reused by the next frame */
	k->base.len = 0;
	call_settle(c, k);
}

void sb__client_on_cancel(struct sb_client *c, uint64_t rid)
{
	struct call *k = rid != 0 ? (struct call *)(uintptr_t)sb__idmap_get(&c->calls, rid) : NULL;
	if (k != NULL)
		call_kill(c, k, SB_ECANCELLED);
}

/* ---- the ops of a client's call (core/common/call.c) -------------------- */

static const char *call_peer(const struct sb_call *call)
{
	const struct call *k = (const struct call *)call;
	return k->ident != NULL ? k->ident->name : NULL;
}

static const char *call_role(const struct sb_call *call)
{
	const struct call *k = (const struct call *)call;
	return k->ident != NULL ? k->ident->role : NULL;
}

static const char *call_subject(const struct sb_call *call)
{
	const struct call *k = (const struct call *)call;
	return k->ident != NULL ? k->ident->subject : NULL;
}

static const void *call_claims(const struct sb_call *call, size_t *len)
{
	const struct call *k = (const struct call *)call;
	if (k->ident == NULL || k->ident->claims == NULL)
		return NULL;
	*len = k->ident->claims_len;
	return k->ident->claims;
}

static int call_cancelled(const struct sb_call *call)
{
	return ((const struct call *)call)->dead != 0;
}

static void call_on_cancel(struct sb_call *call, void (*fn)(struct sb_call *, void *), void *ud)
{
	struct call *k = (struct call *)call;

	k->on_cancel = fn;
	k->cancel_ud = ud;
	if (fn != NULL && k->base.is_request && k->dead && !k->cancel_ran && !k->finished) {
		call_run_cancel(k->c, k);
		call_settle(k->c, k);
	}
}

static struct sb_client *call_client(const struct sb_call *call)
{
	return ((const struct call *)call)->c;
}

/* Sends a reply frame for k; final ones finish the call. */
static int call_answer(struct sb_call *call, struct sb_msg *m, int final)
{
	struct call *k = (struct call *)call;
	struct sb_client *c = k->c;
	int rc;

	if (k->finished)
		return SB_EINVAL;
	if (k->dead || !sb__client_welcomed(c)) {
		rc = k->dead ? k->dead : SB_EOFFLINE;
		goto out;
	}
	m->id = k->rid;
	if ((rc = sb__client_queue(c, m, final)) != 0)
		return rc; /* nothing sent: the call stays open for another try */
out:
	if (final) {
		k->finished = 1;
		call_settle(c, k);
	}
	return rc;
}

static const struct sb__call_ops client_call_ops = {
	.answer = call_answer,
	.peer = call_peer,
	.role = call_role,
	.subject = call_subject,
	.claims = call_claims,
	.cancelled = call_cancelled,
	.on_cancel = call_on_cancel,
	.client = call_client,
};
