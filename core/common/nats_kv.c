/* JetStream's key-value store over the NATS connection: buckets, and
 * create, update, delete and get of one key, each a request or two (a
 * create over a delete marker reads its revision first). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <switchboard/error.h>

#include "common/nats.h"

/* ---- key-value ---------------------------------------------------------- */

/* Names become subjects: "$KV.<bucket>.<key>". Keys and buckets keep to
 * the characters NATS's own clients allow. */
static int kv_name_ok(const char *s, int key)
{
	size_t n = strlen(s);
	if (n == 0 || n > 256)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			 (c >= '0' && c <= '9') || c == '_' || c == '-';
		if (key &&
		    (c == '/' || c == '=' || (c == '.' && i > 0 && i + 1 < n && s[i - 1] != '.')))
			ok = 1;
		if (!ok)
			return 0;
	}
	return 1;
}

enum kv_step { KV_BUCKET, KV_CREATE, KV_CREATE_GET, KV_CREATE_OVER, KV_UPDATE, KV_DELETE, KV_GET };

struct kv_op {
	struct sb__nats *nc;
	enum kv_step step;
	char subject[300]; /* $KV.<bucket>.<key> */
	char stream[270];  /* KV_<bucket> */
	uint8_t *val;      /* create's value, kept for the retry over a delete marker */
	size_t len;
	unsigned timeout_ms;
	uint64_t rev; /* the revision an update, delete or create-over expects */
	int retried;  /* a create that found its key gone went round once more */
	sb__nats_kv_fn *fn;
	void *ud;
};

static void kv_done(struct kv_op *op, int err, uint64_t rev, const uint8_t *v, size_t len)
{
	op->fn(op->ud, err, rev, v, len);
	free(op->val);
	free(op);
}

static int kv_send(struct kv_op *op);

/* JetStream's answer to a publish or an API call: {"stream":..,"seq":N}
 * or {"error":{"code":400,"err_code":10071,"description":"..."}}. */
static int js_answer(const struct sb__nats_msg *m, uint64_t *seq, uint64_t *err_code,
		     const char **desc, size_t *dlen)
{
	const char *j = (const char *)m->data, *e;
	size_t n = m->data_len, elen;
	*err_code = 0;
	*desc = "";
	*dlen = 0;
	if (sb__nats_json_obj(j, n, "error", &e, &elen)) {
		sb__nats_json_u64(e, elen, "err_code", err_code);
		sb__nats_json_str(e, elen, "description", desc, dlen);
		return -1;
	}
	if (!sb__nats_json_u64(j, n, "seq", seq))
		*seq = 0;
	return 0;
}

#define JS_WRONG_LAST_SEQ 10071 /* JSStreamWrongLastSequenceErrF */

static void kv_reply(void *ud, int err, const struct sb__nats_msg *m)
{
	struct kv_op *op = ud;
	uint64_t seq = 0, code;
	const char *desc;
	size_t dlen;

	if (err != 0 || m == NULL) {
		kv_done(op, err, 0, NULL, 0);
		return;
	}
	if (op->step == KV_CREATE_GET || op->step == KV_GET) {
		/* A direct get: the entry as a message, with the stream's
		 * headers, or a status (404: none). */
		const char *v;
		size_t vl;
		int deleted = 0;
		if (m->status == 404 || (m->status != 0 && m->status != 200)) {
			if (op->step == KV_GET || op->retried) {
				kv_done(op, m->status == 404 ? SB_EUNKNOWNPEER : SB_EINTERNAL, 0,
					NULL, 0);
				return;
			}
			/* Gone between our create and this get: once more. */
			op->retried = 1;
			op->step = KV_CREATE;
			if ((err = kv_send(op)) != 0)
				kv_done(op, err, 0, NULL, 0);
			return;
		}
		if (m->hdr_len > 0 &&
		    sb__nats_hdr_get(m->hdr, m->hdr_len, "Nats-Sequence", &v, &vl)) {
			for (size_t i = 0; i < vl && v[i] >= '0' && v[i] <= '9'; i++)
				seq = seq * 10 + (uint64_t)(v[i] - '0');
		}
		if (m->hdr_len > 0 && sb__nats_hdr_get(m->hdr, m->hdr_len, "KV-Operation", &v, &vl))
			deleted = (vl == 3 && (memcmp(v, "DEL", 3) == 0)) ||
				  (vl == 5 && memcmp(v, "PURGE", 5) == 0);
		if (op->step == KV_GET) {
			kv_done(op, deleted ? SB_EUNKNOWNPEER : 0, seq, deleted ? NULL : m->data,
				deleted ? 0 : m->data_len);
			return;
		}
		if (!deleted) {
			kv_done(op, SB_EDUPNAME, seq, m->data, m->data_len);
			return;
		}
		/* A delete marker holds the key's last revision: create over it. */
		op->step = KV_CREATE_OVER;
		op->rev = seq;
		if ((err = kv_send(op)) != 0)
			kv_done(op, err, 0, NULL, 0);
		return;
	}
	if (js_answer(m, &seq, &code, &desc, &dlen) != 0) {
		if (code == JS_WRONG_LAST_SEQ && op->step == KV_CREATE) {
			op->step = KV_CREATE_GET;
			if ((err = kv_send(op)) != 0)
				kv_done(op, err, 0, NULL, 0);
			return;
		}
		kv_done(op, code == JS_WRONG_LAST_SEQ ? SB_EDUPNAME : SB_EINTERNAL, 0,
			(const uint8_t *)desc, dlen);
		return;
	}
	kv_done(op, 0, seq, NULL, 0);
}

static int kv_send(struct kv_op *op)
{
	char subj[600], num[24];
	uint8_t hdr[256];
	long hl = 0;
	struct sb__nats_hdr h[2];

	switch (op->step) {
	case KV_BUCKET:
		snprintf(subj, sizeof subj, "$JS.API.STREAM.CREATE.%s", op->stream);
		return sb__nats_request(op->nc, subj, NULL, 0, op->val, op->len, op->timeout_ms,
					kv_reply, op);
	case KV_CREATE:
		h[0] = (struct sb__nats_hdr){"Nats-Expected-Last-Subject-Sequence", "0"};
		hl = sb__nats_hdr_build(hdr, sizeof hdr, h, 1);
		break;
	case KV_CREATE_OVER:
		snprintf(num, sizeof num, "%llu", (unsigned long long)op->rev);
		h[0] = (struct sb__nats_hdr){"Nats-Expected-Last-Subject-Sequence", num};
		hl = sb__nats_hdr_build(hdr, sizeof hdr, h, 1);
		break;
	case KV_UPDATE:
	case KV_DELETE:
		snprintf(num, sizeof num, "%llu", (unsigned long long)op->rev);
		h[0] = (struct sb__nats_hdr){"Nats-Expected-Last-Subject-Sequence", num};
		h[1] = (struct sb__nats_hdr){"KV-Operation", "DEL"};
		if (op->step == KV_DELETE && op->rev == 0)
			hl = sb__nats_hdr_build(hdr, sizeof hdr, h + 1, 1);
		else
			hl = sb__nats_hdr_build(hdr, sizeof hdr, h, op->step == KV_DELETE ? 2 : 1);
		break;
	case KV_CREATE_GET:
	case KV_GET:
		snprintf(subj, sizeof subj, "$JS.API.DIRECT.GET.%s.%s", op->stream, op->subject);
		return sb__nats_request(op->nc, subj, NULL, 0, NULL, 0, op->timeout_ms, kv_reply,
					op);
	}
	if (hl < 0 || (size_t)hl > sizeof hdr)
		return SB_EINVAL;
	return sb__nats_request(op->nc, op->subject, hdr, (size_t)hl,
				op->step == KV_DELETE ? NULL : op->val,
				op->step == KV_DELETE ? 0 : op->len, op->timeout_ms, kv_reply, op);
}

static int kv_start(struct sb__nats *nc, enum kv_step step, const char *bucket, const char *key,
		    const void *val, size_t len, uint64_t rev, unsigned timeout_ms,
		    sb__nats_kv_fn *fn, void *ud)
{
	struct kv_op *op;
	int rc;

	if (!kv_name_ok(bucket, 0) || (key && !kv_name_ok(key, 1)))
		return SB_EINVAL;
	if ((op = calloc(1, sizeof *op)) == NULL)
		return SB_ENOMEM;
	op->nc = nc;
	op->step = step;
	op->fn = fn;
	op->ud = ud;
	op->rev = rev;
	op->timeout_ms = timeout_ms ? timeout_ms : 2000;
	snprintf(op->stream, sizeof op->stream, "KV_%s", bucket);
	if (key)
		snprintf(op->subject, sizeof op->subject, "$KV.%s.%s", bucket, key);
	if (len > 0) {
		if ((op->val = malloc(len)) == NULL) {
			free(op);
			return SB_ENOMEM;
		}
		memcpy(op->val, val, len);
		op->len = len;
	}
	if ((rc = kv_send(op)) != 0) {
		free(op->val);
		free(op);
	}
	return rc;
}

int sb__nats_kv_bucket(struct sb__nats *nc, const char *bucket, const struct sb__nats_kv_opts *o,
		       sb__nats_kv_fn *fn, void *ud)
{
	char cfg[1024];
	uint64_t age_ns = o->max_age_ms * 1000000ull;
	/* The duplicate window may not exceed max_age (NATS's clients do the
	 * same): two minutes otherwise. */
	uint64_t dup_ns = age_ns && age_ns < 120000000000ull ? age_ns : 120000000000ull;
	int n;

	if (!kv_name_ok(bucket, 0))
		return SB_EINVAL;
	n = snprintf(cfg, sizeof cfg,
		     "{\"name\":\"KV_%s\",\"subjects\":[\"$KV.%s.>\"],\"retention\":\"limits\","
		     "\"max_consumers\":-1,\"max_msgs_per_subject\":1,\"max_msgs\":-1,"
		     "\"max_bytes\":-1,\"max_age\":%llu,\"max_msg_size\":-1,\"storage\":\"%s\","
		     "\"discard\":\"new\",\"num_replicas\":%u,\"duplicate_window\":%llu,"
		     "\"allow_rollup_hdrs\":true,\"deny_delete\":true,\"deny_purge\":false,"
		     "\"allow_direct\":true}",
		     bucket, bucket, (unsigned long long)age_ns, o->memory ? "memory" : "file",
		     o->replicas ? o->replicas : 1, (unsigned long long)dup_ns);
	return kv_start(nc, KV_BUCKET, bucket, NULL, cfg, (size_t)n, 0, o->timeout_ms, fn, ud);
}

int sb__nats_kv_create(struct sb__nats *nc, const char *bucket, const char *key, const void *val,
		       size_t len, unsigned timeout_ms, sb__nats_kv_fn *fn, void *ud)
{
	return kv_start(nc, KV_CREATE, bucket, key, val, len, 0, timeout_ms, fn, ud);
}

int sb__nats_kv_update(struct sb__nats *nc, const char *bucket, const char *key, const void *val,
		       size_t len, uint64_t rev, unsigned timeout_ms, sb__nats_kv_fn *fn, void *ud)
{
	if (rev == 0)
		return SB_EINVAL;
	return kv_start(nc, KV_UPDATE, bucket, key, val, len, rev, timeout_ms, fn, ud);
}

int sb__nats_kv_delete(struct sb__nats *nc, const char *bucket, const char *key, uint64_t rev,
		       unsigned timeout_ms, sb__nats_kv_fn *fn, void *ud)
{
	return kv_start(nc, KV_DELETE, bucket, key, NULL, 0, rev, timeout_ms, fn, ud);
}

int sb__nats_kv_get(struct sb__nats *nc, const char *bucket, const char *key, unsigned timeout_ms,
		    sb__nats_kv_fn *fn, void *ud)
{
	return kv_start(nc, KV_GET, bucket, key, NULL, 0, 0, timeout_ms, fn, ud);
}
