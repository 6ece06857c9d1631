/* The HTTP/1.1 request parser and response writer of the router's edge.
 *
 * Our own rather than Debian's libhttp-parser (nodejs http-parser 2.9):
 * that project is unmaintained (archived upstream, superseded by llhttp,
 * which Debian does not package for C), it hands headers to callbacks in
 * pieces that the caller must copy and join anyway, and its bounds (one
 * global 80 KiB header limit, a compile-time constant) and leniencies
 * (bare LF, obs-fold, chunked bodies with extensions, lenient flags) are
 * not the ones the edge wants. The edge needs a dozen fields, strict
 * framing and a status for each refusal: about as much code as the glue
 * around http-parser would be, with every rule in one place
 * (docs/gateway.md, "HTTP").
 *
 * A head is copied into the connection's block as it arrives (at most
 * head_max bytes, allocated once), checked a byte at a time for CR and LF
 * misuse, and parsed once its blank line is in. Bodies are never copied:
 * their bytes are handed out where they lie. Chunked request bodies are
 * refused (411), because a call's JSON body is converted whole into one
 * frame: its length up front lets a too-large body be refused before it
 * is read and the frame be allocated once, and chunk framing is where
 * most request smuggling lives. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <switchboard/error.h>

#include "router/http.h"

enum state {
	ST_HEAD,     /* reading a head into the block */
	ST_HEADED,   /* SB__HTTP_HEAD returned */
	ST_BODY,     /* handing out body bytes */
	ST_BODYDONE, /* the body is out; SB__HTTP_END next */
	ST_ENDED,    /* SB__HTTP_END returned */
	ST_FAILED,   /* refused */
};

/* Blank-line bytes tolerated before a request line (RFC 9112 2.2: some
 * clients send a CRLF after a POST body). */
#define LEAD_MAX 8

int sb__http_init(struct sb__http *h, const struct sb__http_limits *lim)
{
	static const struct sb__http_limits def = {SB__HTTP_HEAD_MAX, SB__HTTP_LINE_MAX,
						   SB__HTTP_FIELDS_MAX, SB__HTTP_PIPELINE_MAX,
						   SB__HTTP_BODY_MAX};

	memset(h, 0, sizeof *h);
	h->lim = lim != NULL ? *lim : def;
	if (h->lim.line_max > h->lim.head_max)
		h->lim.line_max = h->lim.head_max;
	if (h->lim.pipeline_max == 0)
		h->lim.pipeline_max = 1;
	h->block = malloc(h->lim.head_max > 0 ? h->lim.head_max : 1);
	return h->block != NULL ? 0 : SB_ENOMEM;
}

void sb__http_free(struct sb__http *h)
{
	free(h->block);
	h->block = NULL;
}

static enum sb__http_event refuse(struct sb__http *h, int status, const char *why)
{
	h->state = ST_FAILED;
	h->status = status;
	snprintf(h->why, sizeof h->why, "%s", why);
	return SB__HTTP_ERROR;
}

static int is_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static int same(struct sb__http_str s, const char *lit, int icase)
{
	size_t n = strlen(lit);
	return s.len == n && (icase ? strncasecmp(s.p, lit, n) : memcmp(s.p, lit, n)) == 0;
}

/* ---- the request line ----------------------------------------------------- */

static const struct {
	const char *name;
	enum sb__http_method m;
} methods[] = {
	{"GET", SB__HTTP_M_GET},     {"HEAD", SB__HTTP_M_HEAD},     {"POST", SB__HTTP_M_POST},
	{"PUT", SB__HTTP_M_PUT},     {"DELETE", SB__HTTP_M_DELETE}, {"OPTIONS", SB__HTTP_M_OPTIONS},
	{"PATCH", SB__HTTP_M_PATCH},
};

static enum sb__http_event request_line(struct sb__http *h, const char *s, uint32_t n)
{
	struct sb__http_req *r = &h->req;
	const char *sp1 = memchr(s, ' ', n);
	const char *sp2 = sp1 != NULL ? memchr(sp1 + 1, ' ', (size_t)(s + n - sp1 - 1)) : NULL;

	if (sp2 == NULL || sp1 == s || sp2 == sp1 + 1)
		return refuse(h, 400, "a request line is METHOD SP TARGET SP VERSION");
	struct sb__http_str method = {s, (uint32_t)(sp1 - s)};
	struct sb__http_str target = {sp1 + 1, (uint32_t)(sp2 - sp1 - 1)};
	struct sb__http_str version = {sp2 + 1, (uint32_t)(s + n - sp2 - 1)};

	/* The version first: "PRI * HTTP/2.0" deserves 505, not 501. */
	if (version.len != 8 || memcmp(version.p, "HTTP/", 5) != 0 || version.p[5] < '0' ||
	    version.p[5] > '9' || version.p[6] != '.' || version.p[7] < '0' || version.p[7] > '9')
		return refuse(h, 400, "bad HTTP version");
	if (version.p[5] != '1' || version.p[7] > '1')
		return refuse(h, 505, "only HTTP/1.0 and HTTP/1.1 are served");
	r->minor = version.p[7] - '0';

	for (uint32_t i = 0; i < method.len; i++)
		if (!is_tchar((unsigned char)method.p[i]))
			return refuse(h, 400, "bad method");
	for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
		if (same(method, methods[i].name, 0))
			r->method = methods[i].m;
	if (r->method == 0)
		return refuse(h, 501, "unknown method");

	/* Origin form only ("/path?query"), and "*" for OPTIONS: an absolute
	 * URL is for proxies, which the edge is not. */
	for (uint32_t i = 0; i < target.len; i++) {
		unsigned char c = (unsigned char)target.p[i];
		if (c <= 0x20 || c >= 0x7f || c == '#')
			return refuse(h, 400, "bad character in the request target");
	}
	if (same(target, "*", 0) ? r->method != SB__HTTP_M_OPTIONS : target.p[0] != '/')
		return refuse(h, 400, "the request target must start with '/'");
	r->target = target;
	const char *q = memchr(target.p, '?', target.len);
	r->path =
		(struct sb__http_str){target.p, q != NULL ? (uint32_t)(q - target.p) : target.len};
	if (q != NULL)
		r->query = (struct sb__http_str){q + 1, (uint32_t)(target.p + target.len - q - 1)};
	return SB__HTTP_MORE;
}

/* ---- header lines --------------------------------------------------------- */

enum field {
	F_OTHER,
	F_HOST,
	F_CONTENT_LENGTH,
	F_TRANSFER_ENCODING,
	F_CONTENT_TYPE,
	F_ACCEPT,
	F_AUTHORIZATION,
	F_COOKIE,
	F_ORIGIN,
	F_CONNECTION,
	F_UPGRADE,
	F_WS_KEY,
	F_WS_VERSION,
	F_WS_PROTOCOL,
	F_TIMEOUT,
	F_EXPECT,
};

static const struct {
	const char *name;
	enum field f;
} fields[] = {
	{"Host", F_HOST},
	{"Content-Length", F_CONTENT_LENGTH},
	{"Transfer-Encoding", F_TRANSFER_ENCODING},
	{"Content-Type", F_CONTENT_TYPE},
	{"Accept", F_ACCEPT},
	{"Authorization", F_AUTHORIZATION},
	{"Cookie", F_COOKIE},
	{"Origin", F_ORIGIN},
	{"Connection", F_CONNECTION},
	{"Upgrade", F_UPGRADE},
	{"Sec-WebSocket-Key", F_WS_KEY},
	{"Sec-WebSocket-Version", F_WS_VERSION},
	{"Sec-WebSocket-Protocol", F_WS_PROTOCOL},
	{"Switchboard-Timeout-Ms", F_TIMEOUT},
	{"Expect", F_EXPECT},
};

/* What the head said beyond struct sb__http_req, until it is judged. */
struct seen {
	unsigned te; /* Transfer-Encoding lines */
	struct sb__http_str te_value;
	unsigned close : 1;
	unsigned keep : 1;
};

/* A field that may appear once: a second one is refused, since two
 * Authorization or Host values leave us guessing which one counts. */
static enum sb__http_event single(struct sb__http *h, struct sb__http_str *slot,
				  struct sb__http_str v, const char *name)
{
	char why[64];

	if (slot->p != NULL) {
		snprintf(why, sizeof why, "two %s fields", name);
		return refuse(h, 400, why);
	}
	*slot = v;
	return SB__HTTP_MORE;
}

static enum sb__http_event list(struct sb__http *h, struct sb__http_str *slots, uint8_t *n,
				struct sb__http_str v, const char *name)
{
	char why[64];

	if (*n == SB__HTTP_LIST_MAX) {
		snprintf(why, sizeof why, "more than %u %s fields", SB__HTTP_LIST_MAX, name);
		return refuse(h, 400, why);
	}
	slots[(*n)++] = v;
	return SB__HTTP_MORE;
}

static enum sb__http_event content_length(struct sb__http *h, struct sb__http_str v)
{
	uint64_t n = 0;

	/* Digits only: "+5", "5, 5", " 5" and "0x5" are refused, not guessed. */
	if (v.len == 0 || v.len > 19)
		return refuse(h, 400, "bad Content-Length");
	for (uint32_t i = 0; i < v.len; i++) {
		if (v.p[i] < '0' || v.p[i] > '9')
			return refuse(h, 400, "bad Content-Length");
		n = n * 10 + (uint64_t)(v.p[i] - '0');
	}
	if (h->req.has_length && h->req.content_length != n)
		return refuse(h, 400, "two different Content-Length values");
	h->req.has_length = 1;
	h->req.content_length = n;
	return SB__HTTP_MORE;
}

static enum sb__http_event field_line(struct sb__http *h, struct seen *seen, const char *s,
				      uint32_t n)
{
	struct sb__http_req *r = &h->req;

	if (is_blank(s[0]))
		return refuse(h, 400, "folded header line (obs-fold)");
	const char *colon = memchr(s, ':', n);
	if (colon == NULL)
		return refuse(h, 400, "header line without ':'");
	struct sb__http_str name = {s, (uint32_t)(colon - s)};
	if (name.len == 0)
		return refuse(h, 400, "empty field name");
	for (uint32_t i = 0; i < name.len; i++)
		if (!is_tchar((unsigned char)name.p[i]))
			return refuse(h, 400,
				      is_blank(name.p[i]) ? "blank before ':' in a header line"
							  : "bad character in a field name");
	const char *v = colon + 1, *end = s + n;
	while (v < end && is_blank(*v))
		v++;
	while (end > v && is_blank(end[-1]))
		end--;
	for (const char *c = v; c < end; c++)
		if ((unsigned char)*c < 0x20 ? *c != '\t' : *c == 0x7f)
			return refuse(h, 400, "control character in a field value");
	struct sb__http_str val = {v, (uint32_t)(end - v)};

	enum field f = F_OTHER;
	for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
		if (same(name, fields[i].name, 1))
			f = fields[i].f;
	switch (f) {
	case F_OTHER:
		return SB__HTTP_MORE;
	case F_HOST:
		return single(h, &r->host, val, "Host");
	case F_CONTENT_LENGTH:
		return content_length(h, val);
	case F_TRANSFER_ENCODING:
		if (seen->te++ == 0)
			seen->te_value = val;
		return SB__HTTP_MORE;
	case F_CONTENT_TYPE:
		return single(h, &r->content_type, val, "Content-Type");
	case F_ACCEPT:
		return list(h, r->accept, &r->n_accept, val, "Accept");
	case F_AUTHORIZATION:
		return single(h, &r->authorization, val, "Authorization");
	case F_COOKIE:
		return single(h, &r->cookie, val, "Cookie");
	case F_ORIGIN:
		return single(h, &r->origin, val, "Origin");
	case F_CONNECTION:
		seen->close |= sb__http_has(&val, 1, "close", 1);
		seen->keep |= sb__http_has(&val, 1, "keep-alive", 1);
		r->conn_upgrade |= sb__http_has(&val, 1, "upgrade", 1);
		return SB__HTTP_MORE;
	case F_UPGRADE:
		return single(h, &r->upgrade, val, "Upgrade");
	case F_WS_KEY:
		return single(h, &r->ws_key, val, "Sec-WebSocket-Key");
	case F_WS_VERSION:
		return single(h, &r->ws_version, val, "Sec-WebSocket-Version");
	case F_WS_PROTOCOL:
		return list(h, r->ws_protocol, &r->n_ws_protocol, val, "Sec-WebSocket-Protocol");
	case F_TIMEOUT:
		return single(h, &r->timeout, val, "Switchboard-Timeout-Ms");
	case F_EXPECT:
		if (!same(val, "100-continue", 1))
			return refuse(h, 417, "only Expect: 100-continue is met");
		r->expect_continue = 1;
		return SB__HTTP_MORE;
	}
	return SB__HTTP_MORE;
}

/* The whole head is in the block: parse it, then judge what it says. */
static enum sb__http_event head(struct sb__http *h)
{
	struct sb__http_req *r = &h->req;
	struct seen seen = {0};
	const char *s = h->block, *end = h->block + h->used - 2; /* before the blank line */
	char why[64];

	memset(r, 0, sizeof *r);
	for (int first = 1; s < end; first = 0) {
		const char *cr = memchr(s, '\r', (size_t)(end - s)); /* lines end in CR LF */
		uint32_t n = (uint32_t)(cr - s);
		if ((first ? request_line(h, s, n) : field_line(h, &seen, s, n)) == SB__HTTP_ERROR)
			return SB__HTTP_ERROR;
		r->fields += !first;
		s = cr + 2;
	}

	/* Both lengths, or a length an HTTP/1.0 hop may not know to honour: the
	 * classic request smuggling shapes, where a proxy in front of us and we
	 * would each see a different end of this request. */
	if (seen.te > 0 && r->has_length)
		return refuse(h, 400, "both Transfer-Encoding and Content-Length");
	if (seen.te > 0 && r->minor == 0)
		return refuse(h, 400, "Transfer-Encoding in an HTTP/1.0 request");
	if (seen.te == 1 && same(seen.te_value, "chunked", 1))
		return refuse(h, 411, "chunked bodies are not accepted: send Content-Length");
	if (seen.te > 0)
		return refuse(h, 501, "unknown Transfer-Encoding");
	if (r->minor == 1 && r->host.p == NULL)
		return refuse(h, 400, "Host is missing");
	if (r->content_length > h->lim.body_max) {
		snprintf(why, sizeof why, "body over %llu bytes",
			 (unsigned long long)h->lim.body_max);
		return refuse(h, 413, why);
	}
	r->keep_alive = !seen.close && (r->minor == 1 || seen.keep);
	r->upgrade_websocket = r->conn_upgrade && r->upgrade.p != NULL &&
			       sb__http_has(&r->upgrade, 1, "websocket", 1);
	h->body_left = r->content_length;
	h->owed++;
	h->state = ST_HEADED;
	return SB__HTTP_HEAD;
}

/* Copies head bytes into the block until the blank line, refusing CR and LF
 * misuse as it goes: a bare LF or CR is where two parsers disagree on
 * where a line ends. */
static enum sb__http_event read_head(struct sb__http *h, const uint8_t *p, size_t len, size_t *used)
{
	char why[64];

	for (size_t i = 0; i < len; i++) {
		unsigned char c = p[i];
		if (h->cr != (c == '\n')) {
			*used = i + 1;
			return refuse(h, 400, h->cr ? "CR without LF" : "LF without CR");
		}
		if (h->used == h->lim.head_max) {
			*used = i + 1;
			if (h->lines > 0) {
				snprintf(why, sizeof why, "header over %u bytes", h->lim.head_max);
				return refuse(h, 431, why);
			}
			return refuse(h, 414, "request line too long");
		}
		h->block[h->used++] = (char)c;
		h->cr = c == '\r';
		if (h->lines == 0 && c != '\r' && c != '\n' && h->used > h->lim.line_max) {
			*used = i + 1;
			return refuse(h, 414, "request line too long");
		}
		if (c != '\n')
			continue;
		uint32_t n = h->used - 2 - h->line; /* the line, without CR LF */
		if (h->lines == 0 && n == 0) {
			/* a blank line before the request line */
			h->lead += 2;
			h->used = 0;
			if (h->lead > LEAD_MAX) {
				*used = i + 1;
				return refuse(h, 400, "blank lines before the request line");
			}
			continue;
		}
		if (n == 0) {
			*used = i + 1;
			return head(h);
		}
		if (++h->lines - 1 > h->lim.fields_max) {
			*used = i + 1;
			snprintf(why, sizeof why, "more than %u header lines", h->lim.fields_max);
			return refuse(h, 431, why);
		}
		h->line = h->used;
	}
	*used = len;
	return SB__HTTP_MORE;
}

enum sb__http_event sb__http_parse(struct sb__http *h, const uint8_t *p, size_t len, size_t *used,
				   struct sb__http_str *body)
{
	*used = 0;
	switch ((enum state)h->state) {
	case ST_FAILED:
		return SB__HTTP_ERROR;
	case ST_HEADED:
		if (h->body_left == 0) {
			h->state = ST_ENDED;
			return SB__HTTP_END;
		}
		h->state = ST_BODY;
		/* fall through */
	case ST_BODY:
		if (len == 0)
			return SB__HTTP_MORE;
		size_t n = len < h->body_left ? len : (size_t)h->body_left;
		*body = (struct sb__http_str){(const char *)p, (uint32_t)n};
		*used = n;
		h->body_left -= n;
		if (h->body_left == 0)
			h->state = ST_BODYDONE;
		return SB__HTTP_BODY;
	case ST_BODYDONE:
		h->state = ST_ENDED;
		return SB__HTTP_END;
	case ST_ENDED:
		/* After "Connection: close" nothing more is read (RFC 9112 9.6). */
		if (!h->req.keep_alive)
			return SB__HTTP_WAIT;
		h->used = h->line = h->lines = h->lead = 0;
		h->cr = 0;
		h->state = ST_HEAD;
		/* fall through */
	case ST_HEAD:
		if (h->owed >= h->lim.pipeline_max)
			return SB__HTTP_WAIT;
		return read_head(h, p, len, used);
	}
	return SB__HTTP_ERROR;
}

const struct sb__http_req *sb__http_request(const struct sb__http *h)
{
	return &h->req;
}

void sb__http_answered(struct sb__http *h)
{
	if (h->owed > 0)
		h->owed--;
}

int sb__http_status(const struct sb__http *h)
{
	return h->status;
}

const char *sb__http_why(const struct sb__http *h)
{
	return h->why;
}

/* ---- field values ----------------------------------------------------------- */

int sb__http_has(const struct sb__http_str *v, unsigned n, const char *token, int icase)
{
	for (unsigned i = 0; i < n; i++) {
		const char *s = v[i].p, *end = v[i].p + v[i].len;
		while (s < end) {
			const char *comma = memchr(s, ',', (size_t)(end - s));
			const char *e = comma != NULL ? comma : end;
			const char *semi = memchr(s, ';', (size_t)(e - s));
			const char *te = semi != NULL ? semi : e;
			while (s < te && is_blank(*s))
				s++;
			while (te > s && is_blank(te[-1]))
				te--;
			if (same((struct sb__http_str){s, (uint32_t)(te - s)}, token, icase))
				return 1;
			s = comma != NULL ? comma + 1 : end;
		}
	}
	return 0;
}

int sb__http_query(struct sb__http_str query, const char *key, struct sb__http_str *value)
{
	if (query.len == 0)
		return 0; /* and query.p may be NULL, which takes no offset */
	const char *s = query.p, *end = query.p + query.len;
	size_t kn = strlen(key);

	while (s < end) {
		const char *amp = memchr(s, '&', (size_t)(end - s));
		const char *e = amp != NULL ? amp : end;
		const char *eq = memchr(s, '=', (size_t)(e - s));
		const char *ke = eq != NULL ? eq : e;
		if ((size_t)(ke - s) == kn && memcmp(s, key, kn) == 0) {
			*value = eq != NULL ? (struct sb__http_str){eq + 1, (uint32_t)(e - eq - 1)}
					    : (struct sb__http_str){e, 0};
			return 1;
		}
		s = amp != NULL ? amp + 1 : end;
	}
	return 0;
}

int sb__http_uint(struct sb__http_str v, uint64_t max, uint64_t *out)
{
	uint64_t n = 0;

	if (v.len == 0 || v.len > 20)
		return SB_EINVAL;
	for (uint32_t i = 0; i < v.len; i++) {
		if (v.p[i] < '0' || v.p[i] > '9')
			return SB_EINVAL;
		uint64_t d = (uint64_t)(v.p[i] - '0');
		if (n > (max - d) / 10)
			return SB_EINVAL;
		n = n * 10 + d;
	}
	*out = n;
	return 0;
}

/* ---- answers ------------------------------------------------------------------ */

void sb__http_out_init(struct sb__http_out *o, char *buf, size_t cap)
{
	*o = (struct sb__http_out){buf, 0, cap, 0};
}

void sb__http_put(struct sb__http_out *o, const void *p, size_t len)
{
	if (o->err != 0)
		return;
	if (o->cap - o->len < len) {
		o->err = SB_ENOSPC;
		return;
	}
	memcpy(o->p + o->len, p, len);
	o->len += len;
}

static void put_str(struct sb__http_out *o, const char *s)
{
	sb__http_put(o, s, strlen(s));
}

const char *sb__http_reason(int status)
{
	switch (status) {
	case 100:
		return "Continue";
	case 101:
		return "Switching Protocols";
	case 200:
		return "OK";
	case 202:
		return "Accepted";
	case 204:
		return "No Content";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 411:
		return "Length Required";
	case 413:
		return "Content Too Large";
	case 414:
		return "URI Too Long";
	case 417:
		return "Expectation Failed";
	case 426:
		return "Upgrade Required";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return "";
	}
}

void sb__http_status_line(struct sb__http_out *o, int status)
{
	char t[64];
	int n = snprintf(t, sizeof t, "HTTP/1.1 %03d %s\r\n", status % 1000,
			 sb__http_reason(status));
	sb__http_put(o, t, (size_t)n);
}

void sb__http_field(struct sb__http_out *o, const char *name, const char *value, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (value[i] == '\r' || value[i] == '\n' || value[i] == 0) {
			if (o->err == 0)
				o->err = SB_EINVAL;
			return;
		}
	put_str(o, name);
	sb__http_put(o, ": ", 2);
	sb__http_put(o, value, len);
	sb__http_put(o, "\r\n", 2);
}

void sb__http_field_uint(struct sb__http_out *o, const char *name, uint64_t v)
{
	char t[24];
	int n = snprintf(t, sizeof t, "%llu", (unsigned long long)v);
	sb__http_field(o, name, t, (size_t)n);
}

void sb__http_end_head(struct sb__http_out *o)
{
	sb__http_put(o, "\r\n", 2);
}

void sb__http_json_str(struct sb__http_out *o, const char *s, size_t len)
{
	static const char hexd[] = "0123456789abcdef";

	sb__http_put(o, "\"", 1);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			char e[2] = {'\\', (char)c};
			sb__http_put(o, e, 2);
		} else if (c < 0x20) {
			char e[6] = {'\\', 'u', '0', '0', hexd[c >> 4], hexd[c & 15]};
			sb__http_put(o, e, 6);
		} else {
			sb__http_put(o, &s[i], 1);
		}
	}
	sb__http_put(o, "\"", 1);
}

void sb__http_error(struct sb__http_out *o, int status, int code, const char *message,
		    int keep_alive)
{
	char body[512], name[32];
	struct sb__http_out b;

	/* The body first, into a buffer of its own, for its length. */
	sb__http_out_init(&b, body, sizeof body);
	put_str(&b, "{\"error\":");
	sb__http_json_str(&b, sb_strerror(code), strlen(sb_strerror(code)));
	snprintf(name, sizeof name, "SB_%s", sb_errname(code));
	put_str(&b, ",\"code\":");
	sb__http_json_str(&b, name, strlen(name));
	put_str(&b, ",\"message\":");
	size_t mlen = strlen(message);
	if (mlen > 256) /* the body stays one small write */
		mlen = 256;
	sb__http_json_str(&b, message, mlen);
	put_str(&b, "}\n");
	if (b.err != 0 && o->err == 0)
		o->err = b.err;

	sb__http_status_line(o, status);
	sb__http_field(o, "Content-Type", "application/json", 16);
	sb__http_field_uint(o, "Content-Length", b.len);
	if (!keep_alive)
		sb__http_field(o, "Connection", "close", 5);
	sb__http_end_head(o);
	sb__http_put(o, body, b.len);
}

void sb__http_refusal(struct sb__http_out *o, const struct sb__http *h)
{
	int code = SB_EBADFRAME;

	if (h->status == 413 || h->status == 414 || h->status == 431)
		code = SB_ETOOLARGE;
	else if (h->status == 411 || h->status == 417 || h->status == 501 || h->status == 505)
		code = SB_EUNSUPPORTED;
	sb__http_error(o, h->status, code, h->why, 0);
}

int sb__http_out_done(const struct sb__http_out *o)
{
	return o->err;
}

size_t sb__http_chunk_head(char *buf, size_t n)
{
	return (size_t)snprintf(buf, SB__HTTP_CHUNK_HEAD, "%zx\r\n", n);
}

void sb__sse_event(struct sb__http_out *o, const char *event, const char *data, size_t len)
{
	put_str(o, "event: ");
	put_str(o, event);
	sb__http_put(o, "\n", 1);
	/* k line breaks make k + 1 data lines: a client joins them with LF, so
	 * a trailing break survives as a last, empty line. */
	for (size_t i = 0;;) {
		size_t j = i;
		while (j < len && data[j] != '\n' && data[j] != '\r')
			j++;
		put_str(o, "data: ");
		sb__http_put(o, data + i, j - i);
		sb__http_put(o, "\n", 1);
		if (j == len)
			break;
		if (data[j] == '\r' && j + 1 < len && data[j + 1] == '\n')
			j++;
		i = j + 1;
	}
	sb__http_put(o, "\n", 1);
}

void sb__sse_comment(struct sb__http_out *o, const char *text)
{
	put_str(o, ": ");
	put_str(o, text);
	put_str(o, "\n\n");
}
