/* The handler's side of a call from another router (docs/cluster.md): a
 * request or send that came over NATS is entered here as a local caller's
 * would be, with its origin (the inbox it came with) kept on the request
 * entry; each answer is patched back and published to the requesting
 * shard's answers' subject (gathered per turn, cluster_batch.c), an error
 * the router itself gives to the same subject after what was gathered
 * before it; a request for a name with no handler here goes back to its
 * router, which tries the others; and a cancel from the request's router
 * lets the entry go.
 * The requester's side, the link's flow control and the subscriptions
 * are in cluster.c. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/idmap.h"
#include "common/log.h"
#include "common/nats.h"
#include "router/balance.h"
#include "router/cluster-int.h"
#include "router/cluster.h"
#include "router/cluster_batch.h"
#include "router/cluster_presence.h"
#include "router/req-t.h"
#include "router/reqtab.h"
#include "router/request.h"
#include "router/router-t.h"
#include "router/shard.h"

/* Where answers to the request whose reply subject is inbox go: its
 * shard's fixed "sb.i.<R>.<k>" (the frame's id says which request), not
 * the inbox itself, so that NATS sees a handful of answer subjects, not a
 * new one per request (each new subject is a miss in both servers'
 * subject caches: docs/performance.md, "Across routers"). The length of
 * that prefix; the whole length for anything else. */
static size_t answer_len(const char *inbox, size_t n)
{
	const char *dot = n > 5 && memcmp(inbox, "sb.i.", 5) == 0 ? memrchr(inbox, '.', n) : NULL;
	if (dot == NULL || dot == inbox + n - 1 || (size_t)(dot - inbox) < 8)
		return n;
	for (const char *c = dot + 1; c < inbox + n; c++)
		if (*c < '0' || *c > '9')
			return n;
	return (size_t)(dot - inbox);
}

/* The router of inbox "sb.i.<R>.<k>.<rid>": the hash of <R>, 0 if none. */
static uint64_t inbox_router(const char *s, size_t n)
{
	if (n < 6 || memcmp(s, "sb.i.", 5) != 0)
		return 0;
	const char *r = s + 5, *dot = memchr(r, '.', n - 5);
	return dot != NULL ? sb__cluster_fnv(r, (size_t)(dot - r)) : 0;
}
int sb__cluster_in(struct sb__shard *sh, struct sb__req *q, const struct sb__origin *o)
{
	struct sb__xreq *x = malloc(sizeof *x + o->len + 1);
	uint64_t old = 0;

	if (x == NULL)
		return SB_ENOMEM;
	x->key = sb__cluster_fnv(o->inbox, o->len);
	x->service = 0;
	x->miss = 0;
	x->told = 0;
	x->hand[0] = 0;
	x->paused = 0;
	x->spilled = 0;
	x->spill_at = x->spill_tries = 0;
	x->back = NULL;
	x->back_len = 0;
	x->batch = 0;
	x->router = inbox_router(o->inbox, o->len);
	sb__cluster_heard(sh, x->router);
	x->len = (uint32_t)o->len;
	memcpy(x->s, o->inbox, o->len);
	x->s[o->len] = 0;
	q->x = x;
	/* Its cancel finds it by the inbox; a second request on one inbox
	 * (its router restarted with the same id) takes the key over. */
	if (sb__idmap_put_new(&sh->xs->from, x->key, sb__reqtab_id_of(&sh->reqs, q), &old) == 1)
		sb__idmap_put(&sh->xs->from, x->key, sb__reqtab_id_of(&sh->reqs, q));
	return 0;
}

int sb__cluster_answer(struct sb__shard *sh, struct sb__req *q, uint64_t sender, const uint8_t *f,
		       uint32_t len)
{
	/* The first answer says which router handles it, so that its
	 * requester's router can end it if this one dies. */
	int first = !q->x->told;
	char to[SUBJ_MAX];
	size_t n = answer_len(q->x->s, q->x->len);
	if (n >= sizeof to)
		return SB_EINVAL;
	memcpy(to, q->x->s, n);
	to[n] = 0;
	int rc = sb__xbatch_add(sh, to, n, first, f, len);
	if (rc == 0) {
		q->x->told = 1;
		sb__cluster_congest(sh, sender);
	}
	return rc;
}

/* To the answers' subject of inbox (len bytes). */
static void publish_error(struct sb__shard *sh, const char *inbox, size_t len, uint64_t id, int err,
			  const char *text)
{
	struct sb_msg m = {.kind = SB_ERROR, .id = id, .code = (uint32_t)-err};
	char to[SUBJ_MAX];
	size_t tn = answer_len(inbox, len);
	if (tn >= sizeof to)
		return;
	memcpy(to, inbox, tn);
	to[tn] = 0;
	uint8_t buf[SB_TEXT_MAX + 64];
	m.text.ptr = (const uint8_t *)text;
	m.text.len = (uint32_t)strlen(text);
	long n = sb_encoded_size(&m);
	if (n <= 0 || (size_t)n > sizeof buf)
		return;
	sb_encode(&m, buf, (size_t)n);
	sb__xbatch_flush(sh, to, tn); /* after the answers before it */
	/* Naming this router: a broadcast's requester keeps a part per router. */
	sb__nats_pub(sh->xs->nc, to, NULL, sh->xs->hand_hdr, sh->xs->hand_hdr_len, buf, (size_t)n);
}

void sb__cluster_fail(struct sb__shard *sh, struct sb__req *q, int err, const char *text)
{
	if (err != SB_ECANCELLED) /* a cancel came from its router: nobody to tell */
		publish_error(sh, q->x->s, q->x->len, q->orig_id, err, text);
}

void sb__cluster_refuse(struct sb__shard *sh, const struct sb__origin *o, uint64_t id, int err,
			const char *text)
{
	publish_error(sh, o->inbox, o->len, id, err, text);
}

/* A request that came for a name on sb.r.<name> or sb.s.<R>.<name> and
 * finds no handler of it on this router (its last one left: our
 * subscription outlives it by the drain time, cluster.c) goes back
 * unchanged to its router on its own reply subject, naming us (Sb-Hand),
 * and that router tries the others (docs/cluster.md, "Subjects"): a
 * `no handler` from us would end it while another router may have one.
 * One with a handler on another shard here goes there, as a local one
 * would. 1 if it went back. */
static int returned(struct sb__shard *sh, const struct sb__nats_msg *nm, const struct sb_msg *m,
		    const struct sb__buf *b, uint32_t len)
{
	char reply[SUBJ_MAX];

	if (m->kind != SB_REQUEST || m->to.ptr != NULL || (m->flags & SB_F_BROADCAST) ||
	    nm->reply == NULL || nm->reply_len >= sizeof reply || nm->subject_len < 5 ||
	    (memcmp(nm->subject, "sb.r.", 5) != 0 && memcmp(nm->subject, "sb.s.", 5) != 0))
		return 0;
	if (sb__handlers_of(sh, m->name) != NULL) /* as sb__reach() looks */
		return 0;
	memcpy(reply, nm->reply, nm->reply_len);
	reply[nm->reply_len] = 0;
	return sb__nats_pub(sh->xs->nc, reply, NULL, sh->xs->hand_hdr, sh->xs->hand_hdr_len,
			    b->data, len) == 0;
}

/* A call from another router (m decoded in b, len bytes; b's reference
 * taken over) goes on as a local caller's would: its origin kept for the
 * answers, the caller's role and identity from the headers, nobody here to
 * pause. On NATS's callbacks for sb.r/sb.s/sb.p and sb.b alike. */
void sb__cluster_enter(struct sb__shard *sh, const struct sb__nats_msg *nm, const struct sb_msg *m,
		       struct sb__buf *b, uint32_t len)
{
	const char *svc = NULL;
	size_t svc_len = 0;
	struct sb__origin o = {nm->reply, nm->reply_len};
	struct sb__asker a = {.origin = &o};
	if (returned(sh, nm, m, b, len)) {
		sb__buf_put(b, &sh->pool);
		return;
	}
	if (nm->hdr_len > 0 && sb__nats_hdr_get(nm->hdr, nm->hdr_len, "Sb-Svc", &svc, &svc_len))
		a.service = svc_len == 1 && svc[0] == '1';
	a.from = sb__xpres_caller(sh, nm);
	struct sb__conn *was = sh->producer;
	sh->producer = NULL; /* nobody here to pause */
	if (m->kind == SB_SEND)
		sb__forward_send(sh, &a, m, b, b->data, len);
	else
		sb__forward_request(sh, &a, m, b, b->data, len);
	sh->producer = was;
	sb__buf_put(b, &sh->pool);
}

struct sb__buf *sb__cluster_frame(struct sb__shard *sh, const struct sb__nats_msg *nm,
				  struct sb_msg *m, int *bad)
{
	*bad = nm->data_len < SB_PREFIX_LEN || nm->data_len > sh->r->cfg.max_frame + SB_PREFIX_LEN;
	if (*bad)
		return NULL;
	uint32_t len = (uint32_t)nm->data_len;
	struct sb__buf *b = sb__buf_heap(len);
	if (b == NULL)
		return NULL;
	memcpy(b->data, nm->data, len);
	*bad = sb_decode(b->data, len, 0, m, NULL) != 0;
	if (*bad) {
		sb__buf_put(b, &sh->pool);
		return NULL;
	}
	return b;
}

/* call()'s batch_len for a frame of a batch of sends. */
#define SENDS SIZE_MAX

/* One call; of a request batch (batch_len > 0: the length of the inbox
 * that begins nm's reply subject), a request whose reply subject is the
 * inbox and its frame's id, as it would have been had it come alone; of a
 * batch of sends (SENDS), a send, as it is. */
static void call(struct sb__shard *sh, const struct sb__nats_msg *nm, size_t batch_len)
{
	struct sb_msg m;
	char reply[SB__XBATCH_REPLY_MAX + 32];
	int bad;

	struct sb__buf *b = sb__cluster_frame(sh, nm, &m, &bad);
	if (b == NULL && !bad)
		return;
	if (b == NULL)
		goto malformed;
	uint32_t len = (uint32_t)nm->data_len;
	if ((m.kind != SB_SEND && m.kind != SB_REQUEST) ||
	    (m.kind == SB_REQUEST && nm->reply == NULL) ||
	    (batch_len > 0 && m.kind != (batch_len == SENDS ? SB_SEND : SB_REQUEST))) {
		sb__buf_put(b, &sh->pool);
		goto malformed;
	}
	if (batch_len == 0 || batch_len == SENDS) {
		sb__cluster_enter(sh, nm, &m, b, len);
		return;
	}
	struct sb__nats_msg one = *nm;
	int n = snprintf(reply, sizeof reply, "%.*s.%" PRIu64, (int)batch_len, nm->reply, m.id);
	one.reply = reply;
	one.reply_len = (size_t)n;
	sb__cluster_enter(sh, &one, &m, b, len);
	return;
malformed:
	sb__log(&sh->r->log, 1, "shard %u: cluster: a malformed call on %.*s", sh->id,
		(int)nm->subject_len, nm->subject);
}

/* sb.r.<name>, sb.s.<R>.<name>, sb.p.<peer>: a call, or a batch of
 * requests (with a reply subject) or of sends (without) (cluster_batch.c)
 * checked whole, then taken one by one. */
void sb__cluster_on_call(void *ud, const struct sb__nats_msg *nm)
{
	struct sb__shard *sh = ud;
	const char *count;
	size_t count_len, prefix_len = 0;
	uint64_t id;

	if (nm->hdr_len == 0 ||
	    !sb__nats_hdr_get(nm->hdr, nm->hdr_len, "Sb-Batch", &count, &count_len)) {
		call(sh, nm, 0);
		return;
	}
	if (nm->reply == NULL) {
		sb__xbatch_each(sh, nm, count, count_len, NULL, call, SENDS);
		return;
	}
	const char *why = sb__xbatch_reply(nm->reply, nm->reply_len, &prefix_len, &id);
	sb__xbatch_each(sh, nm, count, count_len, why, call, prefix_len);
}

struct sb__req *sb__cluster_from(struct sb__shard *sh, const struct sb__nats_msg *nm)
{
	if (nm->reply == NULL)
		return NULL;
	uint64_t rid = sb__idmap_get(&sh->xs->from, sb__cluster_fnv(nm->reply, nm->reply_len));
	struct sb__req *q = rid ? sb__reqtab_get(&sh->reqs, rid) : NULL;
	if (q == NULL || q->x == NULL || q->x->len != nm->reply_len ||
	    memcmp(q->x->s, nm->reply, nm->reply_len) != 0)
		return NULL;
	return q;
}

/* sb.x.<name>: a request's router ended it; the shard holding it lets go. */
void sb__cluster_on_cancel(void *ud, const struct sb__nats_msg *nm)
{
	struct sb__shard *sh = ud;
	struct sb__req *q = sb__cluster_from(sh, nm);
	if (q == NULL)
		return;
	q->ops->cancel(sh, q);
	sb__req_finish(sh, q);
}
