/* The handler's side of a call, for client programs and in-process
 * handlers alike: the accessors, and the replies checked once here and
 * sent through the call's ops. Exported by libswitchboard-client alone. */
#include <stdlib.h>
#include <string.h>

#include <switchboard/client.h>
#include <switchboard/proto.h>

#include "common/call-t.h"
#include "common/opts.h"

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
	return call->ops->peer(call);
}

const char *sb_call_role(const struct sb_call *call)
{
	return call->ops->role(call);
}

const char *sb_call_subject(const struct sb_call *call)
{
	return call->ops->subject(call);
}

const void *sb_call_claims(const struct sb_call *call, size_t *len)
{
	*len = 0;
	return call->ops->claims(call, len);
}

const void *sb_call_payload(const struct sb_call *call, size_t *len)
{
	if (len != NULL)
		*len = call->len;
	return call->payload;
}

int sb_call_cancelled(const struct sb_call *call)
{
	return call->ops->cancelled(call);
}

void sb_call_on_cancel(struct sb_call *call, void (*fn)(struct sb_call *, void *), void *ud)
{
	call->ops->on_cancel(call, fn, ud);
}

const char *sb_call_header(const struct sb_call *call, const char *key)
{
	for (size_t i = 0; key != NULL && i < call->nhdrs; i++)
		if (strcmp(call->hdrs[i].key, key) == 0)
			return call->hdrs[i].value;
	return NULL;
}

size_t sb_call_headers(const struct sb_call *call, const struct sb_header **out)
{
	*out = call->nhdrs > 0 ? call->hdrs : NULL;
	return call->nhdrs;
}

const char *sb__call_traceparent(const struct sb_call *parent)
{
	return parent != NULL ? sb_call_header(parent, "traceparent") : NULL;
}

int sb__opts_headers(const struct sb_opts *o, const struct sb_call *running,
		     uint8_t buf[SB_HEADERS_MAX], struct sb_msg *m)
{
	struct sb_header h[SB_HEADERS_COUNT_MAX];
	const char *tp = sb__call_traceparent(o->parent != NULL ? o->parent : running);
	size_t n = o->nheaders;

	if (n > 0 && o->headers == NULL)
		return SB_EINVAL;
	if (n > SB_HEADERS_COUNT_MAX)
		return SB_ETOOLARGE;
	for (size_t i = 0; i < n; i++) {
		h[i] = o->headers[i];
		if (h[i].key != NULL && strcmp(h[i].key, "traceparent") == 0)
			tp = NULL; /* the caller's own wins */
	}
	if (tp != NULL && n < SB_HEADERS_COUNT_MAX)
		h[n++] = (struct sb_header){"traceparent", tp};
	if (n == 0)
		return 0;
	long len = sb_headers_encode(h, n, buf, SB_HEADERS_MAX);
	if (len < 0)
		return (int)len;
	m->flags |= SB_F_HEADERS;
	m->headers = (struct sb_view){buf, (uint32_t)len};
	return 0;
}

/* One block: the array, then each key and value NUL-terminated. */
int sb__call_headers_load(struct sb_call *call, const struct sb_view *h)
{
	struct sb_view k, v;
	size_t pos = 0, n = 0, bytes = 0;

	call->hdrs = NULL;
	call->nhdrs = 0;
	if (h == NULL || h->ptr == NULL)
		return 0;
	while (sb_headers_next(*h, &pos, &k, &v)) {
		n++;
		bytes += k.len + v.len + 2;
	}
	struct sb_header *a = malloc(n * sizeof *a + bytes);
	if (a == NULL)
		return SB_ENOMEM;
	char *s = (char *)(a + n);
	pos = 0;
	for (size_t i = 0; sb_headers_next(*h, &pos, &k, &v); i++) {
		a[i].key = s;
		memcpy(s, k.ptr, k.len);
		s[k.len] = 0;
		s += k.len + 1;
		a[i].value = s;
		memcpy(s, v.ptr, v.len);
		s[v.len] = 0;
		s += v.len + 1;
	}
	call->hdrs = a;
	call->nhdrs = n;
	return 0;
}

void sb__call_headers_free(struct sb_call *call)
{
	free(call->hdrs);
	call->hdrs = NULL;
	call->nhdrs = 0;
}

struct sb_client *sb_call_client(const struct sb_call *call)
{
	return call->ops->client(call);
}

/* A payload to send: NULL with 0 is nil, anything else one MessagePack value. */
static int payload(const void *p, size_t len, struct sb_view *v)
{
	v->ptr = NULL;
	v->len = 0;
	if (p == NULL)
		return len == 0 ? 0 : SB_EINVAL;
	if (len == 0)
		return 0;
	if (len > SB_FRAME_MAX_LIMIT)
		return SB_ETOOLARGE;
	if (sb_payload_check(p, len) != 0)
		return SB_EINVAL;
	v->ptr = p;
	v->len = (uint32_t)len;
	return 0;
}

static struct sb_view text(const char *s)
{
	struct sb_view v = {(const uint8_t *)s, s != NULL ? (uint32_t)strlen(s) : 0};
	return v;
}

int sb_reply(struct sb_call *call, const char *outcome, const void *p, size_t len)
{
	struct sb_msg m = {.kind = SB_REPLY};
	int rc;

	if (outcome == NULL || !call->is_request)
		return SB_EINVAL;
	if ((rc = payload(p, len, &m.payload)) != 0)
		return rc;
	m.outcome = text(outcome);
	return call->ops->answer(call, &m, 1);
}

int sb_reply_more(struct sb_call *call, enum sb_more more, const char *outcome, const void *p,
		  size_t len)
{
	struct sb_msg m = {.kind = SB_REPLY, .flags = SB_F_MORE};
	int rc;

	if (outcome == NULL || !call->is_request ||
	    (more != SB_MORE_PROGRESS && more != SB_MORE_CHUNK))
		return SB_EINVAL;
	if ((rc = payload(p, len, &m.payload)) != 0)
		return rc;
	if (more == SB_MORE_CHUNK)
		m.flags |= SB_F_CHUNK;
	m.outcome = text(outcome);
	return call->ops->answer(call, &m, 0);
}

int sb_reply_error(struct sb_call *call, int err, const char *why, const void *details,
		   size_t details_len)
{
	struct sb_msg m = {.kind = SB_ERROR, .code = (uint32_t)-err};
	int rc;

	if (err >= 0 || err < -SB_WIRE_CODE_MAX || err == SB_EAPP || !call->is_request)
		return SB_EINVAL;
	if ((rc = payload(details, details_len, &m.payload)) != 0)
		return rc;
	m.text = text(why != NULL ? why : "");
	return call->ops->answer(call, &m, 1);
}

int sb_reply_app_error(struct sb_call *call, const char *code, const char *why, const void *details,
		       size_t details_len)
{
	struct sb_msg m = {.kind = SB_ERROR, .flags = SB_F_APP, .code = (uint32_t)-SB_EAPP};
	int rc;

	if (code == NULL || !call->is_request)
		return SB_EINVAL;
	if ((rc = payload(details, details_len, &m.payload)) != 0)
		return rc;
	m.text = text(why != NULL ? why : "");
	m.app_code = text(code);
	/* The encoder refuses what the decoder would: a bad code or text is
	 * SB_EINVAL before anything is sent, the call still open. */
	if (sb_encoded_size(&m) == SB_EINVAL)
		return SB_EINVAL;
	return call->ops->answer(call, &m, 1);
}
