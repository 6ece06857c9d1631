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

static struct sb_call *call_get(struct sb_client *c)
{
	struct sb_call *k;

	if (!sb__link_empty(&c->spare_calls)) {
		k = SB__CONTAINER(c->spare_calls.next, struct sb_call, link);
		sb__link_del(&k->link);
		c->nspare_calls--;
		return k;
	}
	if ((k = malloc(sizeof *k)) == NULL)
		return NULL;
	sb__link_init(&k->link);
	return k;
}

static void call_fill(struct sb_client *c, struct sb_call *k, const struct sb_msg *m)
{
	k->c = c;
	k->rid = m->kind == SB_REQUEST ? m->id : 0;
	k->from = m->from;
	k->ident = (struct ident *)(uintptr_t)sb__idmap_get(&c->idents, m->from);
	if (k->ident != NULL)
		k->ident->refs++;
	k->is_request = m->kind == SB_REQUEST;
	k->busy = k->finished = k->mapped = k->cancel_ran = 0;
	k->dead = 0;
	k->on_cancel = NULL;
	k->cancel_ud = NULL;
	k->payload = m->payload.ptr;
	k->len = m->payload.len;
	memcpy(k->name, m->name.ptr, m->name.len);
	k->name[m->name.len] = 0;
}

/* The only place a call is freed (or kept for reuse). */
static void call_release(struct sb_client *c, struct sb_call *k)
{
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
static void call_settle(struct sb_client *c, struct sb_call *k)
{
	if (k->busy)
		return;
	if (k->finished || (k->dead && k->cancel_ran))
		call_release(c, k);
}

static void call_run_cancel(struct sb_client *c, struct sb_call *k)
{
	k->cancel_ran = 1;
	k->busy++;
	c->in_cb++;
	k->on_cancel(k, k->cancel_ud);
	c->in_cb--;
	k->busy--;
}

/* No reply to k can reach its requester any more. */
static void call_kill(struct sb_client *c, struct sb_call *k, int why)
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
		call_kill(c, SB__CONTAINER(c->live.next, struct sb_call, link), why);
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
	struct sb_call *k;

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
		call_fill(c, k, m);
		c->in_cb++;
		fn(c, k, ud);
		c->in_cb--;
		k->payload = NULL;
		k->len = 0;
		sb__client_ident_put(k->ident);
		k->ident = NULL;
		return;
	}
	if ((k = call_get(c)) == NULL) {
		sb__client_answer_error(c, m->id, SB_EOVERLOADED, "out of memory");
		return;
	}
	call_fill(c, k, m);
	sb__link_add_tail(&c->live, &k->link);
	if (sb__idmap_put(&c->calls, k->rid, (uintptr_t)k) != 0) {
		call_release(c, k);
		sb__client_answer_error(c, m->id, SB_EOVERLOADED, "out of memory");
		return;
	}
	k->mapped = 1;
	k->busy++;
	c->in_cb++;
	fn(c, k, ud);
	c->in_cb--;
	k->busy--;
	k->payload = NULL; /* it lives in the receive buffer, reused by the next frame */
	k->len = 0;
	call_settle(c, k);
}

void sb__client_on_cancel(struct sb_client *c, uint64_t rid)
{
	struct sb_call *k =
		rid != 0 ? (struct sb_call *)(uintptr_t)sb__idmap_get(&c->calls, rid) : NULL;
	if (k != NULL)
		call_kill(c, k, SB_ECANCELLED);
}

const char *sb_call_name(const struct sb_call *call)
{
	return call->name;
}

int sb_call_is_request(const struct sb_call *call)
{
	return call->is_request;
}

uint32_t sb_call_from(const struct sb_call *call)
{
	return call->from;
}

const char *sb_call_peer(const struct sb_call *call)
{
	return call->ident != NULL ? call->ident->name : NULL;
}

const char *sb_call_role(const struct sb_call *call)
{
	return call->ident != NULL ? call->ident->role : NULL;
}

const char *sb_call_subject(const struct sb_call *call)
{
	return call->ident != NULL ? call->ident->subject : NULL;
}

const void *sb_call_payload(const struct sb_call *call, size_t *len)
{
	if (len != NULL)
		*len = call->len;
	return call->payload;
}

int sb_call_cancelled(const struct sb_call *call)
{
	return call->dead != 0;
}

void sb_call_on_cancel(struct sb_call *call, void (*fn)(struct sb_call *, void *), void *ud)
{
	call->on_cancel = fn;
	call->cancel_ud = ud;
	if (fn != NULL && call->is_request && call->dead && !call->cancel_ran && !call->finished) {
		call_run_cancel(call->c, call);
		call_settle(call->c, call);
	}
}

/* Sends a reply frame for k; final ones finish the call. */
static int answer(struct sb_call *k, struct sb_msg *m, int final)
{
	struct sb_client *c = k->c;
	int rc;

	if (!k->is_request || k->finished)
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

int sb_reply(struct sb_call *call, const char *outcome, const void *payload, size_t len)
{
	struct sb_msg m = {.kind = SB_REPLY};
	int rc;

	if (outcome == NULL)
		return SB_EINVAL;
	if ((rc = sb__client_payload(payload, len, &m.payload)) != 0)
		return rc;
	m.outcome = sb__client_view(outcome);
	return answer(call, &m, 1);
}

int sb_reply_more(struct sb_call *call, enum sb_more more, const char *outcome, const void *payload,
		  size_t len)
{
	struct sb_msg m = {.kind = SB_REPLY, .flags = SB_F_MORE};
	int rc;

	if (outcome == NULL || (more != SB_MORE_PROGRESS && more != SB_MORE_CHUNK))
		return SB_EINVAL;
	if ((rc = sb__client_payload(payload, len, &m.payload)) != 0)
		return rc;
	if (more == SB_MORE_CHUNK)
		m.flags |= SB_F_CHUNK;
	m.outcome = sb__client_view(outcome);
	return answer(call, &m, 0);
}

int sb_reply_error(struct sb_call *call, int err, const char *text)
{
	struct sb_msg m = {.kind = SB_ERROR, .code = (uint32_t)-err};

	if (err >= 0 || err < -SB_WIRE_CODE_MAX)
		return SB_EINVAL;
	m.text = sb__client_view(text != NULL ? text : "");
	return answer(call, &m, 1);
}
