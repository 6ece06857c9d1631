/* Several answers to one inbox in one NATS message (docs/cluster.md,
 * "Batches"). The servers' work goes by the message, not the byte, so a
 * shard's answers to one requesting shard's inbox, sb.i.<R>.<k>, that
 * come in one turn leave as one message at the turn's flush, where they
 * would have left anyway: no answer waits longer for it. One answer alone
 * goes as before. The frames are the ones a lone answer carries, byte for
 * byte; the one header an answer may carry, Sb-Hand, names the shard that
 * publishes the batch, the same for every frame in it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <switchboard/proto.h>

#include "common/log.h"
#include "common/nats.h"
#include "router/cluster-int.h"
#include "router/cluster_batch.h"
#include "router/router-t.h"
#include "router/shard.h"

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

uint32_t sb__xbatch_next(const uint8_t *data, size_t *off)
{
	uint32_t n = SB_PREFIX_LEN + prefix(data + *off);
	*off += n;
	return n;
}

/* ---- a shard's answers, gathered for its turn's flush --------------------- */

/* The most a batch's HPUB may take beyond its frames: the control line
 * (sb__nats_pub_size() less the payload) and its header block. */
static size_t overhead(const struct sb__xbatch *b, const struct sb__xshard *xs)
{
	return sb__nats_pub_size(b->to_len, 0, sizeof "NATS/1.0\r\nSb-Batch: 65536\r\n\r\n" - 1,
				 0) +
	       xs->hand_hdr_len;
}

/* Keeps room on the connection for every gathered batch but @p skip, each
 * at the most its HPUB can take: a publish made between the gathering and
 * the flush (a request, a cancel) is refused rather than take that room
 * and leave an accepted answer to be refused, and lost, at the flush. */
static void hold(struct sb__shard *sh, const struct sb__xbatch *skip)
{
	struct sb__xshard *xs = sh->xs;
	size_t bytes = 0;

	for (uint32_t i = 0; i < xs->nbatch; i++)
		if (&xs->batch[i] != skip && xs->batch[i].n > 0)
			bytes += xs->batch[i].len + overhead(&xs->batch[i], xs);
	sb__nats_hold(xs->nc, bytes);
}

static void publish(struct sb__shard *sh, struct sb__xbatch *b)
{
	struct sb__xshard *xs = sh->xs;
	int rc;

	hold(sh, b);

	if (b->n == 1) {
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
	if (rc != 0)
		sb__log(&sh->r->log, 1, "shard %u: cluster: %u answers to %s lost: %s", sh->id,
			b->n, b->to, sb_strerror(rc));
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

int sb__xbatch_add(struct sb__shard *sh, const char *to, size_t to_len, int hand, const uint8_t *f,
		   uint32_t len)
{
	struct sb__xshard *xs = sh->xs;
	struct sb__xbatch *b = NULL;

	if (!sb__nats_ready(xs->nc))
		return SB_EOFFLINE;
	if (to_len >= sizeof b->to) /* not an inbox of ours: alone, at once */
		return sb__nats_pub(xs->nc, to, NULL, hand ? xs->hand_hdr : NULL,
				    hand ? xs->hand_hdr_len : 0, f, len);
	for (uint32_t i = 0; i < xs->nbatch && b == NULL; i++)
		if (xs->batch[i].to_len == to_len && memcmp(xs->batch[i].to, to, to_len) == 0)
			b = &xs->batch[i];
	if (b != NULL && b->len + len + overhead(b, xs) > sb__nats_max_payload(xs->nc)) {
		sb__xbatch_flush(sh, to, to_len); /* full: it goes now, in order */
		b = NULL;
	}
	if (b == NULL) {
		if (xs->nbatch == SB__XBATCH_MAX)
			sb__xbatch_flush(sh, NULL, 0);
		b = &xs->batch[xs->nbatch];
		memcpy(b->to, to, to_len);
		b->to[to_len] = 0;
		b->to_len = to_len;
	}
	/* Refused as the connection would refuse it, counting every gathered
	 * answer as already queued, so that the flush is never refused. */
	size_t need = len + overhead(b, xs) * (xs->nbatch + 1);
	if (sb__nats_pending(xs->nc) + xs->batched + need > xs->link_max)
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
	b->hand |= hand;
	xs->batched += len;
	hold(sh, NULL);
	return 0;
}

void sb__xbatch_drop(struct sb__shard *sh)
{
	struct sb__xshard *xs = sh->xs;
	for (uint32_t i = 0; i < xs->nbatch; i++) {
		xs->batch[i].n = 0;
		xs->batch[i].len = 0;
		xs->batch[i].hand = 0;
	}
	xs->nbatch = 0;
	xs->batched = 0;
	sb__nats_hold(xs->nc, 0);
}

void sb__xbatch_free(struct sb__shard *sh)
{
	for (uint32_t i = 0; i < SB__XBATCH_MAX; i++)
		free(sh->xs->batch[i].data);
}
