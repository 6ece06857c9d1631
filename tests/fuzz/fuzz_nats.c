/* libFuzzer target for the NATS protocol as a server speaks it (what a
 * router's cluster connection reads): the input, after two control bytes,
 * is a byte stream fed in pieces of the first byte's size, the way reads
 * bring it, and parsed as the connection does (whole operations taken, the
 * rest kept). The second byte picks the payload limit. The target aborts
 * if a result depends on how the bytes were cut, if anything parsed points
 * outside its input, if a refused stream is taken when whole, or if a
 * message, written back as a server would, does not parse to itself. The
 * header and JSON readers run on what was parsed, and so does the reader of
 * a batch of answers, requests or sends (Sb-Batch, router/cluster_batch.h): ASan
 * sees any read past a heap block of exactly its bytes; a batch it takes
 * must be its count of frames, each inside it, ending at its last byte,
 * and a request batch's reply subject it takes must end in ".b<digits>",
 * its inbox before that dot. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/natsproto.h"
#include "router/cluster_batch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define OPS_MAX 256

/* A parsed operation reduced to what must not depend on the cut. */
struct op {
	int op;
	uint64_t sid;
	size_t subject_off, subject_len, reply_len, hdr_len, data_off, data_len, text_len;
	int status;
};

static void inside(const uint8_t *base, size_t n, const void *p, size_t len)
{
	const uint8_t *q = p;
	if (len == 0)
		return;
	if (q < base || q + len > base + n)
		abort();
}

/* A batch's header and payload, each in a block of its own size. */
static void check_batch(const char *count, size_t count_len, const uint8_t *data, size_t len)
{
	char *c = malloc(count_len ? count_len : 1);
	uint8_t *d = malloc(len ? len : 1);
	uint32_t n = 0;
	if (c == NULL || d == NULL)
		abort();
	memcpy(c, count, count_len);
	memcpy(d, data, len);
	if (sb__xbatch_check(c, count_len, d, len, &n) == NULL) {
		size_t off = 0;
		if (n < 2 || n > SB__XBATCH_FRAMES_MAX)
			abort();
		for (uint32_t i = 0; i < n; i++) {
			size_t at = off;
			uint32_t fl = sb__xbatch_next(d, &off);
			if (fl < 4 || off > len || off != at + fl)
				abort();
		}
		if (off != len)
			abort();
	}
	free(c);
	free(d);
}

/* A request batch's reply subject, in a block of its own size. */
static void check_reply(const char *reply, size_t len)
{
	char *r = malloc(len ? len : 1);
	size_t prefix = 0;
	uint64_t id = 0;
	if (r == NULL)
		abort();
	memcpy(r, reply, len);
	if (sb__xbatch_reply(r, len, &prefix, &id) == NULL &&
	    (prefix == 0 || prefix + 3 > len || r[prefix] != '.' || r[prefix + 1] != 'b' ||
	     len > SB__XBATCH_REPLY_MAX))
		abort();
	free(r);
}

static void check_msg(const uint8_t *base, size_t n, const struct sb__nats_msg *m, size_t max)
{
	const char *v;
	size_t vl;
	inside(base, n, m->subject, m->subject_len);
	inside(base, n, m->reply, m->reply_len);
	inside(base, n, m->hdr, m->hdr_len);
	inside(base, n, m->data, m->data_len);
	if (!sb__nats_subject_ok(m->subject, m->subject_len, 0) ||
	    (m->reply && !sb__nats_subject_ok(m->reply, m->reply_len, 0)) ||
	    m->hdr_len + m->data_len > max)
		abort();
	if (m->hdr_len > 0) {
		if (m->status != 0 && (m->status < 100 || m->status > 999))
			abort();
		if (sb__nats_hdr_get(m->hdr, m->hdr_len, "Nats-Sequence", &v, &vl))
			inside(m->hdr, m->hdr_len, v, vl);
		if (sb__nats_hdr_get(m->hdr, m->hdr_len, "KV-Operation", &v, &vl))
			inside(m->hdr, m->hdr_len, v, vl);
		if (sb__nats_hdr_get(m->hdr, m->hdr_len, "Sb-Batch", &v, &vl)) {
			inside(m->hdr, m->hdr_len, v, vl);
			check_batch(v, vl, m->data, m->data_len);
			if (m->reply != NULL)
				check_reply(m->reply, m->reply_len);
		}
	}

	/* Written back as a server would, it parses to the same message. */
	char line[3 * SB__NATS_SUBJECT_MAX + 64];
	int ll = snprintf(line, sizeof line, "%s %.*s %llu %.*s%s", m->hdr_len ? "HMSG" : "MSG",
			  (int)m->subject_len, m->subject, (unsigned long long)m->sid,
			  (int)m->reply_len, m->reply ? m->reply : "", m->reply ? " " : "");
	if (m->hdr_len)
		ll += snprintf(line + ll, sizeof line - (size_t)ll, "%zu ", m->hdr_len);
	ll += snprintf(line + ll, sizeof line - (size_t)ll, "%zu\r\n", m->hdr_len + m->data_len);
	size_t total = (size_t)ll + m->hdr_len + m->data_len + 2;
	uint8_t *w = malloc(total);
	struct sb__nats_in again;
	if (w == NULL)
		abort();
	memcpy(w, line, (size_t)ll);
	if (m->hdr_len)
		memcpy(w + ll, m->hdr, m->hdr_len);
	if (m->data_len)
		memcpy(w + (size_t)ll + m->hdr_len, m->data, m->data_len);
	memcpy(w + total - 2, "\r\n", 2);
	if (sb__nats_parse(w, total, max, &again) != (long)total || again.op != SB__NATS_MSG ||
	    again.msg.sid != m->sid || again.msg.subject_len != m->subject_len ||
	    memcmp(again.msg.subject, m->subject, m->subject_len) != 0 ||
	    again.msg.reply_len != m->reply_len || again.msg.hdr_len != m->hdr_len ||
	    again.msg.data_len != m->data_len || again.msg.status != m->status ||
	    (m->data_len && memcmp(again.msg.data, m->data, m->data_len) != 0))
		abort();
	free(w);
}

static void check_text(const struct sb__nats_in *in)
{
	uint64_t u;
	int b;
	const char *o, *s;
	size_t ol, sl;
	/* The INFO reader's helpers on the text alone, in a block of its size. */
	char *t = malloc(in->text_len ? in->text_len : 1);
	if (t == NULL)
		abort();
	memcpy(t, in->text, in->text_len);
	sb__nats_json_u64(t, in->text_len, "max_payload", &u);
	sb__nats_json_bool(t, in->text_len, "headers", &b);
	if (sb__nats_json_obj(t, in->text_len, "error", &o, &ol)) {
		inside((const uint8_t *)t, in->text_len, o, ol);
		if (sb__nats_json_str(o, ol, "description", &s, &sl))
			inside((const uint8_t *)o, ol, s, sl);
	}
	free(t);
}

/* Parses s[0..n) in pieces of `piece` bytes as a connection would.
 * @return operations taken; *refused set when the stream was refused. */
static unsigned run(const uint8_t *s, size_t n, size_t piece, size_t max, struct op *ops,
		    int *refused)
{
	uint8_t *buf = malloc(n ? n : 1);
	size_t have = 0, off = 0, fed = 0, base = 0; /* base: stream offset of buf[0] */
	unsigned k = 0;

	if (buf == NULL)
		abort();
	*refused = 0;
	while (fed < n && !*refused) {
		size_t take = n - fed < piece ? n - fed : piece;
		memcpy(buf + have, s + fed, take);
		have += take;
		fed += take;
		for (;;) {
			struct sb__nats_in in;
			long used = sb__nats_parse(buf + off, have - off, max, &in);
			if (used == 0)
				break;
			if (used < 0) {
				*refused = 1;
				break;
			}
			if ((size_t)used > have - off)
				abort();
			if (k < OPS_MAX) {
				struct op *o = &ops[k];
				memset(o, 0, sizeof *o);
				o->op = in.op;
				o->text_len = in.text_len;
				if (in.op == SB__NATS_MSG) {
					check_msg(buf + off, (size_t)used, &in.msg, max);
					o->sid = in.msg.sid;
					o->subject_off =
						base + (size_t)(in.msg.subject - (const char *)buf);
					o->subject_len = in.msg.subject_len;
					o->reply_len = in.msg.reply_len;
					o->hdr_len = in.msg.hdr_len;
					o->data_off = base + (size_t)(in.msg.data - buf);
					o->data_len = in.msg.data_len;
					o->status = in.msg.status;
				} else if (in.text) {
					inside(buf + off, (size_t)used, in.text, in.text_len);
					check_text(&in);
				}
			}
			k++;
			off += (size_t)used;
		}
		/* Keep the unparsed rest at the front, as the connection does. */
		memmove(buf, buf + off, have - off);
		have -= off;
		base += off;
		off = 0;
	}
	free(buf);
	return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct op whole[OPS_MAX], cut[OPS_MAX];
	static const size_t limits[4] = {0, 64, 4096, 1u << 20};
	int r1, r2;

	if (size < 2)
		return 0;
	size_t piece = (size_t)data[0] % 64 + 1, max = limits[data[1] % 4];
	data += 2;
	size -= 2;
	uint8_t *s = malloc(size ? size : 1);
	if (s == NULL)
		abort();
	memcpy(s, data, size);
	unsigned n1 = run(s, size, size ? size : 1, max, whole, &r1);
	unsigned n2 = run(s, size, piece, max, cut, &r2);
	/* A stream refused whole is refused cut, at the same operation, and
	 * the same operations come before; taken whole, it is taken cut. */
	if (n1 != n2 || r1 != r2)
		abort();
	for (unsigned i = 0; i < n1 && i < OPS_MAX; i++)
		if (memcmp(&whole[i], &cut[i], sizeof whole[i]) != 0)
			abort();
	free(s);
	return 0;
}
