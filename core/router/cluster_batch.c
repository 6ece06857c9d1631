/* Several answers to one inbox in one NATS message (docs/cluster.md,
 * "Batches"). The servers' work goes by the message, not the byte, so a
 * shard's answers to one requesting shard's inbox, sb.i.<R>.<k>, that
 * come in one turn leave as one message at the turn's flush, where they
 * would have left anyway: no answer waits longer for it. One answer alone
 * goes as before. The frames are the ones a lone answer carries, byte for
 * byte; the one header an answer may carry, Sb-Hand, names the shard that
 * publishes the batch, the same for every frame in it. A turn's requests
 * to one subject with the same headers go the same way, with one reply
 * subject, <inbox>.b<id>, where NATS's "no responders" ends each; and a
 * turn's SENDs to one subject with the same headers, with none. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <switchboard/proto.h>

#include "common/log.h"
#include "common/nats.h"
#include "router/cluster-int.h"
#include "router/cluster_batch.h"
#include "common/list.h"
#include "router/req-t.h"
#include "router/reqtab.h"
#include "router/router-t.h"
#include "router/shard.h"
#include "router/stats.h"

/* ---- the layout, as a receiver checks it ---------------------------------- */

static uint32_t prefix(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

const char *sb__xbatch_check(const char *count, size_t count_len, const uint8_t *data, size_t len,
			     uint32_t *n)
{
	uint64_t want = 0;
	size_t off = 0;

	if (count_len == 0 || count_len > 5)
		return "a bad frame count";
	for (size_t i = 0; i < count_len; i++) {
		if (count[i] < '0' || count[i] > '9')
			return "a bad frame count";
		want = want * 10 + (uint64_t)(count[i] - '0');
	}
	if (want < 2 || want > SB__XBATCH_FRAMES_MAX)
		return "a bad frame count";
	for (uint64_t i = 0; i < want; i++) {
		if (len - off < SB_PREFIX_LEN)
			return "fewer frames than its count";
		uint64_t body = prefix(data + off);
		if (body > len - off - SB_PREFIX_LEN)
			return "a frame longer than the batch";
		off += SB_PREFIX_LEN + (size_t)body;
	}
	if (off != len)
		return "bytes after its last frame";
	*n = (uint32_t)want;
	return NULL;
}

const char *sb__xbatch_reply(const char *reply, size_t len, size_t *prefix_len, uint64_t *id)
{
	const char *dot = reply != NULL ? memrchr(reply, '.', len) : NULL;
	uint64_t v = 0;

	if (dot == NULL || dot == reply || len > SB__XBATCH_REPLY_MAX)
		return "a bad reply subject";
	size_t at = (size_t)(dot - reply) + 1;
	if (len - at < 2 || len - at > 20 || reply[at] != 'b')
		return "a bad reply subject";
	for (size_t i = at + 1; i < len; i++) {
		if (reply[i] < '0' || reply[i] > '9')
			return "a bad reply subject";
		v = v * 10 + (uint64_t)(reply[i] - '0');
	}
	*prefix_len = at - 1;
	*id = v;
	return NULL;
}

uint32_t sb__xbatch_next(const uint8_t *data, size_t *off)
{
	uint32_t n = SB_PREFIX_LEN + prefix(data + *off);
	*off += n;
	return n;
}

/* ---- a shard's answers and requests, gathered for its turn's flush ------- */

void sb__xbatch_each(struct sb__shard *sh, const struct sb__nats_msg *nm, const char *count,
		     size_t count_len, const char *why,
		     void (*each)(struct sb__shard *, const struct sb__nats_msg *, size_t),
		     size_t arg)
{
	uint32_t n = 0;
	size_t off = 0;

	if (why == NULL)
		why = sb__xbatch_check(count, count_len, nm->data, nm->data_len, &n);
	if (why != NULL) {
		sb__log(&sh->r->log, 1, "shard %u: cluster: a malformed batch on %.*s: %s", sh->id,
			(int)nm->subject_len, nm->subject, why);
		return;
	}
	struct sb__nats_msg one = *nm;
	for (uint32_t i = 0; i < n; i++) {
		one.data = nm->data + off;
		one.data_len = sb__xbatch_next(nm->data, &off);
		each(sh, &one, arg);
	}
}

/* The most a batch's reply subject takes: "<inbox>.b<id>". */
static size_t reply_max(const struct sb__xshard *xs)
{
	return xs->inbox_len + 22;
}

/* The most a batch's HPUB may take beyond its frames: the control line
 * (sb__nats_pub_size() less the payload) and its header block. */
static size_t overhead(const struct sb__xbatch *b, const struct sb__xshard *xs)
{
	size_t batch_hdr = sizeof "NATS/1.0\r\nSb-Batch: 65536\r\n\r\n" - 1;
	if (b->kind != SB__XB_ANSWERS)
		return sb__nats_pub_size(b->to_len, b->kind == SB__XB_REQUESTS ? reply_max(xs) : 0,
					 b->hn + batch_hdr, 0);
	return sb__nats_pub_size(b->to_len, 0, batch_hdr, 0) + xs->hand_hdr_len;
}

/* The bytes every gathered batch but @p skip may take on the connection. */
static size_t gathered(const struct sb__xshard *xs, const struct sb__xbatch *skip)
{
	size_t bytes = 0;
	for (uint32_t i = 0; i < xs->nbatch; i++)
		if (&xs->batch[i] != skip && xs->batch[i].n > 0)
			bytes += xs->batch[i].len + overhead(&xs->batch[i], xs);
	return bytes;
}

/* Keeps room on the connection for every gathered batch but @p skip, each
 * at the most its HPUB can take: a publish made between the gathering and
 * the flush (a cancel, a send) is refused rather than take that room and
 * leave an accepted answer or request to be refused at the flush. */
static void hold(struct sb__shard *sh, const struct sb__xbatch *skip)
{
	sb__nats_hold(sh->xs->nc, gathered(sh->xs, skip));
}

/* Frames published to another router: a message of n of them (the
 * cluster's counters in $sb.stats, docs/cluster.md "Batches"). */
static void published(struct sb__shard *sh, uint32_t n)
{
	sb__stat_add(&sh->st.cluster_msgs, 1);
	sb__stat_add(&sh->st.cluster_frames, n);
	if (n > 1)
		sb__stat_add(&sh->st.cluster_batches, 1);
}

/* A batch of requests or sends: their headers, less their blank line,
 * then Sb-Batch (hcap keeps room for it). @return the headers' length */
static size_t count_hdr(struct sb__xbatch *b)
{
	size_t hn = 10;
	if (b->hn > 12)
		hn = b->hn - 2;
	else
		memcpy(b->hdr, "NATS/1.0\r\n", hn);
	hn += (size_t)snprintf((char *)b->hdr + hn, b->hcap - hn, "Sb-Batch: %u\r\n\r\n", b->n);
	return hn;
}

/* A request batch goes: one request alone as it always went (its own
 * reply subject), several with one reply subject, "<inbox>.b<id>", whose
 * "no responders" ends each of them (kept in xs->sent until then). */
static int publish_req(struct sb__shard *sh, struct sb__xbatch *b)
{
	struct sb__xshard *xs = sh->xs;
	char reply[SB__XBATCH_REPLY_MAX + 1];

	if (b->n == 1) {
		snprintf(reply, sizeof reply, "%s.%" PRIu64, xs->inbox, b->rids[0]);
		return sb__nats_pub(xs->nc, b->to, reply, b->hn ? b->hdr : NULL, b->hn, b->data,
				    b->len);
	}
	snprintf(reply, sizeof reply, "%s.b%" PRIu64, xs->inbox, b->id);
	int rc = sb__nats_pub(xs->nc, b->to, reply, b->hdr, count_hdr(b), b->data, b->len);
	if (rc == 0) { /* its rids kept for a "no responders"; the slot's old ones freed */
		struct sb__xsent *s = &xs->sent[b->id % SB__XSENT];
		uint64_t *r = s->rids;
		uint32_t cap = s->cap;
		s->id = b->id;
		s->rids = b->rids;
		s->cap = b->rcap;
		s->n = b->n;
		b->rids = r;
		b->rcap = cap;
	}
	return rc;
}

static void publish(struct sb__shard *sh, struct sb__xbatch *b)
{
	struct sb__xshard *xs = sh->xs;
	int rc;

	hold(sh, b);

	if (b->kind == SB__XB_REQUESTS) {
		rc = publish_req(sh, b);
		if (rc != 0) /* never for room (held): each ends as one refused alone */
			for (uint32_t i = 0; i < b->n; i++)
				sb__cluster_unsent(sh, b->rids[i], rc);
	} else if (b->kind == SB__XB_SENDS) {
		/* No reply subject: nobody answers a SEND, so no "no
		 * responders" either; one alone goes as it always went. */
		size_t hn = b->n > 1 ? count_hdr(b) : b->hn;
		rc = sb__nats_pub(xs->nc, b->to, NULL, hn ? b->hdr : NULL, hn, b->data, b->len);
		if (rc != 0) /* never for room (held): lost, as one alone refused */
			sb__stat_add(&sh->st.no_handler, b->n);
	} else if (b->n == 1) {
		rc = sb__nats_pub(xs->nc, b->to, NULL, b->hand ? xs->hand_hdr : NULL,
				  b->hand ? xs->hand_hdr_len : 0, b->data, b->len);
	} else {
		/* The shard's own Sb-Hand block, less its blank line, then Sb-Batch. */
		uint8_t hdr[160];
		size_t hn = 10;
		if (b->hand && xs->hand_hdr_len > 12 && xs->hand_hdr_len - 2 < sizeof hdr - 32) {
			hn = xs->hand_hdr_len - 2;
			memcpy(hdr, xs->hand_hdr, hn);
		} else {
			memcpy(hdr, "NATS/1.0\r\n", hn);
		}
		hn += (size_t)snprintf((char *)hdr + hn, sizeof hdr - hn, "Sb-Batch: %u\r\n\r\n",
				       b->n);
		rc = sb__nats_pub(xs->nc, b->to, NULL, hdr, hn, b->data, b->len);
	}
	if (rc == 0)
		published(sh, b->n);
	else if (b->kind != SB__XB_REQUESTS)
		sb__log(&sh->r->log, 1, "shard %u: cluster: %u %s to %s lost: %s", sh->id, b->n,
			b->kind == SB__XB_SENDS ? "sends" : "answers", b->to, sb_strerror(rc));
	xs->batched -= b->len;
	b->n = 0;
	b->len = 0;
	b->hand = 0;
}

void sb__xbatch_flush(struct sb__shard *sh, const char *to, size_t to_len)
{
	struct sb__xshard *xs = sh->xs;
	uint32_t kept = 0;

	for (uint32_t i = 0; i < xs->nbatch; i++) {
		struct sb__xbatch *b = &xs->batch[i];
		if (to == NULL || (b->to_len == to_len && memcmp(b->to, to, to_len) == 0)) {
			publish(sh, b);
		} else if (kept != i) { /* kept in order, their buffers swapped down */
			struct sb__xbatch t = xs->batch[kept];
			xs->batch[kept] = *b;
			*b = t;
			kept++;
		} else {
			kept++;
		}
	}
	xs->nbatch = kept;
}

/* The gathered batch to `to` that a frame of this kind with these headers
 * joins, or a new one (every one published first when all are taken). */
static struct sb__xbatch *find(struct sb__shard *sh, const char *to, size_t to_len, int kind,
			       const uint8_t *hdr, size_t hn, uint32_t len)
{
	struct sb__xshard *xs = sh->xs;
	struct sb__xbatch *b = NULL;

	for (uint32_t i = 0; i < xs->nbatch && b == NULL; i++)
		if (xs->batch[i].to_len == to_len && memcmp(xs->batch[i].to, to, to_len) == 0)
			b = &xs->batch[i];
	/* Full, another kind (sends after requests), or requests or sends
	 * with other headers: it goes now, in order. */
	if (b != NULL &&
	    (b->kind != kind || b->len + len + overhead(b, xs) > sb__nats_max_payload(xs->nc) ||
	     (kind != SB__XB_ANSWERS && b->n == SB__XBATCH_FRAMES_MAX) ||
	     (kind != SB__XB_ANSWERS &&
	      (b->hn != hn || (hn > 0 && memcmp(b->hdr, hdr, hn) != 0))))) {
		sb__xbatch_flush(sh, to, to_len);
		b = NULL;
	}
	if (b == NULL) {
		if (xs->nbatch == SB__XBATCH_MAX)
			sb__xbatch_flush(sh, NULL, 0);
		b = &xs->batch[xs->nbatch];
		memcpy(b->to, to, to_len);
		b->to[to_len] = 0;
		b->to_len = to_len;
		b->kind = kind;
		b->hn = 0;
	}
	return b;
}

/* Frame f (len bytes) joins batch b (new if it is xs->batch[nbatch]):
 * refused as the connection would refuse it, counting every gathered
 * frame as already queued, so that the flush is never refused. */
static int append(struct sb__shard *sh, struct sb__xbatch *b, const uint8_t *f, uint32_t len)
{
	struct sb__xshard *xs = sh->xs;
	size_t need = len + (b->n == 0 ? overhead(b, xs) : 0);

	if (sb__nats_pending(xs->nc) + gathered(xs, NULL) + need > xs->link_max)
		return SB_EOVERLOADED;
	if (b->len + len > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + len)
			cap *= 2;
		uint8_t *d = realloc(b->data, cap);
		if (d == NULL)
			return SB_ENOMEM;
		b->data = d;
		b->cap = cap;
	}
	if (b == &xs->batch[xs->nbatch])
		xs->nbatch++;
	memcpy(b->data + b->len, f, len);
	b->len += len;
	b->n++;
	xs->batched += len;
	return 0;
}

/* A frame published alone, at once: counted as a message of its own. */
static int alone(struct sb__shard *sh, int rc)
{
	if (rc == 0)
		published(sh, 1);
	return rc;
}

/* A new batch of requests or sends keeps their headers, with room for
 * Sb-Batch. */
static int keep_hdr(struct sb__xbatch *b, const uint8_t *hdr, size_t hn)
{
	if (b->hcap < hn + 32) {
		uint8_t *h = realloc(b->hdr, hn + 32);
		if (h == NULL)
			return SB_ENOMEM;
		b->hdr = h;
		b->hcap = hn + 32;
	}
	if (hn > 0)
		memcpy(b->hdr, hdr, hn);
	b->hn = hn;
	return 0;
}

int sb__xbatch_add(struct sb__shard *sh, const char *to, size_t to_len, int hand, const uint8_t *f,
		   uint32_t len)
{
	struct sb__xshard *xs = sh->xs;

	if (!sb__nats_ready(xs->nc))
		return SB_EOFFLINE;
	if (to_len >= sizeof xs->batch[0].to) /* not an inbox of ours: alone, at once */
		return alone(sh, sb__nats_pub(xs->nc, to, NULL, hand ? xs->hand_hdr : NULL,
					      hand ? xs->hand_hdr_len : 0, f, len));
	struct sb__xbatch *b = find(sh, to, to_len, SB__XB_ANSWERS, NULL, 0, len);
	int rc = append(sh, b, f, len);
	if (rc != 0)
		return rc;
	b->hand |= hand;
	hold(sh, NULL);
	return 0;
}

int sb__xbatch_req(struct sb__shard *sh, struct sb__req *q, const uint8_t *hdr, size_t hn,
		   const uint8_t *f, uint32_t len)
{
	struct sb__xshard *xs = sh->xs;
	char reply[SB__XBATCH_REPLY_MAX + 1];

	if (!sb__nats_ready(xs->nc))
		return SB_EOFFLINE;
	if (q->x->len >= sizeof xs->batch[0].to || reply_max(xs) > SB__XBATCH_REPLY_MAX) {
		snprintf(reply, sizeof reply, "%s.%" PRIu64, xs->inbox, q->rid);
		return alone(sh, sb__nats_pub(xs->nc, q->x->s, reply, hdr, hn, f, len));
	}
	struct sb__xbatch *b = find(sh, q->x->s, q->x->len, SB__XB_REQUESTS, hdr, hn, len);
	if (b->n == 0) { /* a new batch: its headers, its id */
		if (keep_hdr(b, hdr, hn) != 0)
			return SB_ENOMEM;
		b->id = ++xs->batch_seq;
	}
	if (b->n == b->rcap) {
		uint32_t cap = b->rcap ? b->rcap * 2 : 64;
		uint64_t *r = realloc(b->rids, cap * sizeof *r);
		if (r == NULL)
			return SB_ENOMEM;
		b->rids = r;
		b->rcap = cap;
	}
	int rc = append(sh, b, f, len);
	if (rc != 0)
		return rc;
	b->rids[b->n - 1] = q->rid;
	q->x->batch = b->id;
	hold(sh, NULL);
	return 0;
}

int sb__xbatch_send(struct sb__shard *sh, const char *to, size_t to_len, const uint8_t *hdr,
		    size_t hn, const uint8_t *f, uint32_t len)
{
	struct sb__xshard *xs = sh->xs;

	if (!sb__nats_ready(xs->nc))
		return SB_EOFFLINE;
	if (to_len >= sizeof xs->batch[0].to) /* a long name: alone, at once */
		return alone(sh, sb__nats_pub(xs->nc, to, NULL, hdr, hn, f, len));
	struct sb__xbatch *b = find(sh, to, to_len, SB__XB_SENDS, hdr, hn, len);
	if (b->n == 0 && keep_hdr(b, hdr, hn) != 0)
		return SB_ENOMEM;
	int rc = append(sh, b, f, len);
	if (rc != 0)
		return rc;
	hold(sh, NULL);
	return 0;
}

void sb__xbatch_answered(struct sb__shard *sh, uint64_t id)
{
	struct sb__xsent *s = &sh->xs->sent[id % SB__XSENT];
	if (s->id == id)
		s->id = 0;
}

void sb__xbatch_missed(struct sb__shard *sh, uint64_t id)
{
	struct sb__xsent *s = &sh->xs->sent[id % SB__XSENT];

	if (id == 0)
		return;
	if (s->id == id) { /* its rids taken out while they are ended */
		uint64_t *r = s->rids;
		uint32_t n = s->n, cap = s->cap;
		s->id = 0;
		s->rids = NULL;
		s->cap = 0;
		for (uint32_t i = 0; i < n; i++)
			sb__cluster_no_responders(sh, r[i]);
		if (s->rids == NULL) {
			s->rids = r;
			s->cap = cap;
		} else {
			free(r);
		}
		return;
	}
	/* Its entry was taken by a later batch (SB__XSENT sent since, none
	 * of them answered yet): its requests still say which batch they
	 * went in (each one's mark cleared as it is ended or sent on). */
	for (struct sb__link *l = sh->req_list.next; l != &sh->req_list;) {
		struct sb__link *next = l->next;
		uint64_t next_rid =
			next != &sh->req_list ? SB__CONTAINER(next, struct sb__req, all)->rid : 0;
		struct sb__req *q = SB__CONTAINER(l, struct sb__req, all);
		if (q->handler == SB__CLUSTER_EP && q->x != NULL && q->x->batch == id) {
			sb__cluster_no_responders(sh, q->rid);
			/* Ending one may end others: start over. */
			if (next != &sh->req_list && sb__reqtab_get(&sh->reqs, next_rid) == NULL)
				next = sh->req_list.next;
		}
		l = next;
	}
}

void sb__xbatch_drop(struct sb__shard *sh)
{
	struct sb__xshard *xs = sh->xs;
	for (uint32_t i = 0; i < xs->nbatch; i++) {
		if (xs->batch[i].kind == SB__XB_SENDS) /* lost, as one the link refused */
			sb__stat_add(&sh->st.no_handler, xs->batch[i].n);
		xs->batch[i].n = 0;
		xs->batch[i].len = 0;
		xs->batch[i].hand = 0;
	}
	xs->nbatch = 0;
	xs->batched = 0;
	for (uint32_t i = 0; i < SB__XSENT; i++)
		xs->sent[i].id = 0;
	sb__nats_hold(xs->nc, 0);
}

void sb__xbatch_free(struct sb__shard *sh)
{
	for (uint32_t i = 0; i < SB__XBATCH_MAX; i++) {
		free(sh->xs->batch[i].data);
		free(sh->xs->batch[i].hdr);
		free(sh->xs->batch[i].rids);
	}
	for (uint32_t i = 0; i < SB__XSENT; i++)
		free(sh->xs->sent[i].rids);
}
