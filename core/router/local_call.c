/* Embedding: in-process handlers. Their registration, and the call a
 * handler answers (struct sb_call, as a client's handler gets it): run on
 * the shard that routes the message, answered from there or from any other
 * thread (through that shard's inbox), during its callback or later. */
#include <stdlib.h>
#include <string.h>

#include "common/call-t.h"
#include "common/opts.h"
#include "router/local.h"
#include "router/peers.h"
#include "router/request.h"
#include "router/router-t.h"
#include "router/shard.h"

/* struct lcall state bits, set once each, from any thread. */
#define FINISHED 1u /* its final answer is sent (or on its way to the shard) */
#define DEAD     2u /* the router cancelled it: no answer reaches the requester */

/*
 * An in-process call. A SEND's lives on the shard's stack during its
 * callback. A REQUEST's is on the heap from its callback to its release,
 * which happens on the shard that owns it (it ran the handler and owns the
 * request, so answers go to sb__req_reply there), and only there:
 *   - after its final answer: at once on that shard, or when the shard
 *     takes the answer from its inbox;
 *   - after its on_cancel ran (the shard runs it);
 *   - a cancelled call without on_cancel waits for its final answer, which
 *     sends nothing;
 *   - whatever is left when the router is freed.
 * Who releases is decided by the state bits: the first of FINISHED and DEAD
 * wins, so the shard and an answering thread never both free it.
 */
struct lcall {
	struct sb_call base;
	struct sb_router *r;
	struct sb__link link;   /* on its shard's list, for the router's free */
	uint64_t ep;            /* the handler's endpoint: answers come from it */
	uint64_t rid;           /* the request's id in the answers */
	unsigned shard;         /* the shard that owns it */
	_Atomic unsigned state; /* FINISHED, DEAD */
	uint8_t busy;           /* its handler callback runs (owning shard only) */
	uint8_t final_here;     /* its final answer went out on the owning shard */
	void (*on_cancel)(struct sb_call *, void *); /* set during the callback */
	void *cancel_ud;
	const char *role; /* the sender's, or NULL for the embedding program */
	char *subject;
	uint8_t *claims; /* the sender's token's claims (MessagePack map), or NULL */
	uint32_t claims_len;
	char peer[SB_PEER_MAX + 1]; /* "" for the embedding program */
	char name[SB_NAME_MAX + 1];
};

/* The shard this thread runs, if it is a shard thread. */
static _Thread_local struct sb__shard *self;

void sb__local_thread(struct sb__shard *sh)
{
	self = sh;
}

static struct sb_view view(const void *p, size_t len)
{
	struct sb_view v = {p, (uint32_t)len};
	return v;
}

int sb_router_handle(struct sb_router *r, const char *name, const struct sb_handler_opts *opts,
		     sb_handler_fn fn, void *ud)
{
	struct sb_handler_opts o;
	struct sb__schema *s = NULL;
	int rc;

	if (r->running || fn == NULL || sb__handler_opts_read(opts, &o) != 0)
		return SB_EINVAL;
	size_t len = name != NULL ? strlen(name) : 0;
	/* The same rules as a REGISTER frame: encode one to check the name. */
	struct sb_msg probe = {.kind = SB_REGISTER};
	if (name != NULL)
		probe.name = view(name, len);
	if (sb_encoded_size(&probe) < 0 || (len > 0 && name[0] == '$'))
		return SB_EINVAL;
	if (o.schema_len > 0 && (rc = sb__schema_compile(o.schema, o.schema_len, &s, NULL, 0)) != 0)
		return rc;
	struct sb__local *nl = realloc(r->locals, (r->nlocals + 1) * sizeof *nl);
	if (nl == NULL)
		goto nomem;
	r->locals = nl;
	struct sb__local *l = &r->locals[r->nlocals];
	l->name = name != NULL ? strdup(name) : NULL;
	if (name != NULL && l->name == NULL)
		goto nomem;
	l->len = (uint32_t)len;
	l->flags = o.flags & SB_HANDLER_INTERNAL ? SB__EP_INTERNAL : 0;
	l->schema = s; /* the router's reference; each shard's route takes its own */
	l->fn = fn;
	l->ud = ud;
	r->nlocals++;
	return 0;
nomem:
	sb__schema_unref(s);
	return SB_ENOMEM;
}

/* ---- a call's life ---------------------------------------------------------- */

static uint64_t call_key(const struct lcall *k)
{
	return sb__idmap_key(k->ep, k->rid);
}

/* Frees k, on its owning shard (or once every shard has stopped). */
static void release(struct sb__inbox *in, struct lcall *k)
{
	if (sb__idmap_get(&in->calls, call_key(k)) == (uintptr_t)k)
		sb__idmap_del(&in->calls, call_key(k));
	sb__link_del(&k->link);
	sb__call_headers_free(&k->base);
	free(k->subject);
	free(k->claims);
	free(k);
}

void sb__local_release(struct sb__shard *sh, struct sb_call *call)
{
	release(&sh->r->inboxes[sh->id], (struct lcall *)call);
}

/* The router cancelled request rid of handler ep (CANCEL frame). */
static void cancel(struct sb__shard *sh, uint64_t ep, uint64_t rid)
{
	struct sb__inbox *in = &sh->r->inboxes[sh->id];
	struct lcall *k =
		(struct lcall *)(uintptr_t)sb__idmap_get(&in->calls, sb__idmap_key(ep, rid));
	if (k == NULL || k->ep != ep || k->rid != rid)
		return;
	if (atomic_fetch_or(&k->state, DEAD) & FINISHED)
		return; /* its final answer is on its way, and releases it */
	if (k->on_cancel != NULL) {
		k->on_cancel(&k->base, k->cancel_ud);
		release(in, k);
	}
}

/* ---- the ops of an in-process call (core/common/call.c) ------------------- */

static const char *call_peer(const struct sb_call *call)
{
	const struct lcall *k = (const struct lcall *)call;
	return k->peer[0] != 0 ? k->peer : NULL;
}

static const char *call_role(const struct sb_call *call)
{
	return ((const struct lcall *)call)->role;
}

static const char *call_subject(const struct sb_call *call)
{
	return ((const struct lcall *)call)->subject;
}

static const void *call_claims(const struct sb_call *call, size_t *len)
{
	const struct lcall *k = (const struct lcall *)call;
	if (k->claims == NULL)
		return NULL;
	*len = k->claims_len;
	return k->claims;
}

static int call_cancelled(const struct sb_call *call)
{
	return (atomic_load(&((const struct lcall *)call)->state) & DEAD) != 0;
}

static void call_on_cancel(struct sb_call *call, void (*fn)(struct sb_call *, void *), void *ud)
{
	struct lcall *k = (struct lcall *)call;

	if (!k->base.is_request)
		return;
	k->on_cancel = fn;
	k->cancel_ud = ud;
	/* On the owning shard (docs/embedding.md): the thread cancel() runs
	 * on, so DEAD cannot be set meanwhile. Already cancelled: run it now. */
	if (fn != NULL && (atomic_load(&k->state) & (DEAD | FINISHED)) == DEAD) {
		fn(call, ud);
		if (k->busy)
			k->final_here = 1; /* released when the callback returns */
		else
			release(&k->r->inboxes[k->shard], k);
	}
}

static struct sb_client *call_client(const struct sb_call *call)
{
	(void)call;
	return NULL;
}

static int call_answer(struct sb_call *call, struct sb_msg *m, int final)
{
	struct lcall *k = (struct lcall *)call;
	struct sb_router *r = k->r;
	unsigned st = atomic_load(&k->state);

	if (st & FINISHED)
		return SB_EINVAL;
	if (st & DEAD)
		goto dead;
	m->id = k->rid;
	long n = sb_encoded_size(m);
	if (n < 0)
		return (int)n;
	if ((uint64_t)n - SB_PREFIX_LEN > r->cfg.max_frame)
		return SB_ETOOLARGE;
	struct sb__buf *b = sb__buf_heap((size_t)n);
	if (b == NULL)
		return SB_ENOMEM;
	sb_encode(m, b->data, (size_t)n);
	if (final && ((st = atomic_fetch_or(&k->state, FINISHED)) & (FINISHED | DEAD))) {
		sb__buf_put(b, NULL);
		if (st & FINISHED) /* two threads answered at once */
			return SB_EINVAL;
		goto dead_final; /* cancelled meanwhile: FINISHED is ours to act on */
	}
	if (self == &r->shards[k->shard]) {
		sb__req_reply(self, k->ep, b, b->data, (uint32_t)n);
		if (final) {
			if (k->busy)
				k->final_here = 1;
			else
				release(&r->inboxes[k->shard], k);
		}
		return 0;
	}
	int rc = sb__local_post(r, k->shard, b, (uint32_t)n, k->ep, final ? &k->base : NULL);
	if (rc != 0 && final && rc != SB_EDRAINING)
		atomic_fetch_and(&k->state, ~FINISHED); /* nothing sent: answer again */
	return rc;
dead:
	if (!final)
		return SB_ECANCELLED;
	if (atomic_fetch_or(&k->state, FINISHED) & FINISHED)
		return SB_EINVAL;
dead_final:
	/* With on_cancel, the shard releases it once that has run. */
	if (k->on_cancel == NULL) {
		if (self == &r->shards[k->shard] && !k->busy)
			release(&r->inboxes[k->shard], k);
		else if (self == &r->shards[k->shard])
			k->final_here = 1;
		else
			sb__local_post(r, k->shard, NULL, 0, k->ep, &k->base);
	}
	return SB_ECANCELLED;
}

static const struct sb__call_ops local_call_ops = {
	.answer = call_answer,
	.peer = call_peer,
	.role = call_role,
	.subject = call_subject,
	.claims = call_claims,
	.cancelled = call_cancelled,
	.on_cancel = call_on_cancel,
	.client = call_client,
};

/* ---- running a handler ---------------------------------------------------- */

/* Who sent it, as this shard's replica of the directory knows them. */
static void fill_sender(struct sb__shard *sh, struct lcall *k)
{
	const struct sb__peer *p = k->base.from != 0 ? sb__peers_by_id(sh, k->base.from) : NULL;

	k->peer[0] = 0;
	k->role = NULL;
	k->subject = NULL;
	k->claims = NULL;
	k->claims_len = 0;
	if (p == NULL)
		return;
	memcpy(k->peer, p->name, p->len);
	k->peer[p->len] = 0;
	k->role = p->service ? "service" : "client";
	if (p->subject != NULL)
		k->subject = strdup(p->subject); /* NULL if out of memory: not shown */
	if (p->claims != NULL && (k->claims = malloc(p->claims_len)) != NULL) {
		memcpy(k->claims, p->claims, p->claims_len); /* or not shown */
		k->claims_len = p->claims_len;
	}
}

/* @return 0, or SB_ENOMEM for the headers (sender and headers then
 * freed by the caller as on success) */
static int fill(struct sb__shard *sh, struct lcall *k, uint64_t ep, const struct sb_msg *m)
{
	k->base.ops = &local_call_ops;
	k->base.name = k->name;
	k->base.payload = m->payload.ptr;
	k->base.len = m->payload.len;
	k->base.from = m->from;
	k->base.is_request = m->kind == SB_REQUEST;
	k->r = sh->r;
	k->ep = ep;
	k->rid = m->id;
	k->shard = sh->id;
	atomic_init(&k->state, 0);
	k->busy = k->final_here = 0;
	k->on_cancel = NULL;
	k->cancel_ud = NULL;
	memcpy(k->name, m->name.ptr, m->name.len);
	k->name[m->name.len] = 0;
	fill_sender(sh, k);
	return sb__call_headers_load(&k->base, &m->headers);
}

/* Answers a request no handler callback will see. */
static void refuse(struct sb__shard *sh, uint64_t ep, uint64_t rid, int err, const char *text)
{
	struct sb_msg e = {.kind = SB_ERROR, .id = rid, .code = (uint32_t)-err};
	e.text = view(text, strlen(text));
	long n = sb_encoded_size(&e);
	struct sb__buf *b = n > 0 ? sb__buf_heap((size_t)n) : NULL;
	if (b == NULL)
		return; /* the request ends with its timeout */
	sb_encode(&e, b->data, (size_t)n);
	sb__req_reply(sh, ep, b, b->data, (uint32_t)n);
}

void sb__local_run(struct sb__shard *sh, unsigned idx, const uint8_t *f, uint32_t len)
{
	const struct sb__local *h = &sh->r->locals[idx];
	uint64_t ep = (uint64_t)SB__LOCAL_SHARD << 56 | idx;
	struct sb__inbox *in = &sh->r->inboxes[sh->id];
	struct sb_msg m;

	/* The handler reads the payload, so it gets the check a client does. */
	if (sb_decode(f, len, SB_DECODE_PAYLOAD, &m, NULL) != 0) {
		if (m.kind == SB_REQUEST && m.id != 0)
			refuse(sh, ep, m.id, SB_EBADFRAME,
			       "the payload is not one MessagePack value");
		return;
	}
	if (m.kind == SB_CANCEL) {
		cancel(sh, ep, m.id);
		return;
	}
	if (m.kind == SB_SEND) {
		struct lcall k;
		if (fill(sh, &k, ep, &m) == 0) /* a SEND has no one to tell it failed */
			h->fn(&k.base, h->ud);
		sb__call_headers_free(&k.base);
		free(k.subject);
		free(k.claims);
		return;
	}
	if (m.kind != SB_REQUEST)
		return;
	struct lcall *k = malloc(sizeof *k);
	if (k == NULL) {
		refuse(sh, ep, m.id, SB_EOVERLOADED, "out of memory");
		return;
	}
	int rc = fill(sh, k, ep, &m);
	sb__link_init(&k->link);
	if (rc != 0 || sb__idmap_put(&in->calls, call_key(k), (uintptr_t)k) != 0) {
		sb__call_headers_free(&k->base);
		free(k->subject);
		free(k->claims);
		free(k);
		refuse(sh, ep, m.id, SB_EOVERLOADED, "out of memory");
		return;
	}
	sb__link_add_tail(&in->live, &k->link);
	k->busy = 1;
	h->fn(&k->base, h->ud);
	k->busy = 0;
	k->base.payload = NULL; /* it lives in the routed frame, gone after this */
	k->base.len = 0;
	if (k->final_here)
		release(in, k);
}

void sb__local_calls_free(struct sb__inbox *in)
{
	while (!sb__link_empty(&in->live))
		release(in, SB__CONTAINER(in->live.next, struct lcall, link));
	sb__idmap_destroy(&in->calls);
}
