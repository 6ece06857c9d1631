/* JSON <-> MessagePack for sbctl: a recursive-descent JSON parser that
 * writes MessagePack directly, and a MessagePack walker that prints JSON. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

void sbj_buf_free(struct sbj_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof *b);
}

static int put(struct sbj_buf *b, const void *p, size_t n)
{
	if (b->cap - b->len < n + 1) {
		size_t cap = b->cap ? b->cap * 2 : 64;
		while (cap - b->len < n + 1)
			cap *= 2;
		char *d = realloc(b->data, cap);
		if (d == NULL)
			return -1;
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = 0;
	return 0;
}

static int putc1(struct sbj_buf *b, unsigned char c)
{
	return put(b, &c, 1);
}

static int put_be(struct sbj_buf *b, unsigned char tag, uint64_t v, int bytes)
{
	unsigned char t[9] = {tag};
	for (int i = 0; i < bytes; i++)
		t[1 + i] = (unsigned char)(v >> (8 * (bytes - 1 - i)));
	return put(b, t, 1 + (size_t)bytes);
}

/* ---- JSON -> MessagePack -------------------------------------------------- */

struct parser {
	const unsigned char *p, *start, *end; /* the cursor and the text */
	struct sbj_buf *out;                  /* MessagePack goes here */
	struct sbj_error *err;                /* the first failure */
};

__attribute__((format(printf, 3, 4))) static int fail(struct parser *ps, const unsigned char *at,
						      const char *fmt, ...)
{
	va_list ap;

	ps->err->at = (size_t)(at - ps->start);
	va_start(ap, fmt);
	vsnprintf(ps->err->what, sizeof ps->err->what, fmt, ap);
	va_end(ap);
	return -1;
}

static int oom(struct parser *ps)
{
	return fail(ps, ps->p, "out of memory");
}

static void skip_ws(struct parser *ps)
{
	while (ps->p < ps->end &&
	       (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
		ps->p++;
}

enum kind { K_STR, K_ARRAY, K_MAP };

/* Containers and strings learn their size only at the end, so they get a
 * 5-byte placeholder that end_header() shrinks to the smallest header:
 * output stays canonical (what msgpack-c or Python would write). */
static int begin_header(struct parser *ps, size_t *at)
{
	*at = ps->out->len;
	return put(ps->out, "\0\0\0\0\0", 5) == 0 ? 0 : oom(ps);
}

static int end_header(struct parser *ps, size_t at, enum kind k, uint64_t n)
{
	struct sbj_buf h = {0};
	int rc;

	if (n > UINT32_MAX)
		return fail(ps, ps->p, "more than 4294967295 items or bytes");
	if (k == K_STR)
		rc = n < 32      ? putc1(&h, 0xa0 | (unsigned char)n)
		     : n < 256   ? put_be(&h, 0xd9, n, 1)
		     : n < 65536 ? put_be(&h, 0xda, n, 2)
				 : put_be(&h, 0xdb, n, 4);
	else if (k == K_ARRAY)
		rc = n < 16      ? putc1(&h, 0x90 | (unsigned char)n)
		     : n < 65536 ? put_be(&h, 0xdc, n, 2)
				 : put_be(&h, 0xdd, n, 4);
	else
		rc = n < 16      ? putc1(&h, 0x80 | (unsigned char)n)
		     : n < 65536 ? put_be(&h, 0xde, n, 2)
				 : put_be(&h, 0xdf, n, 4);
	if (rc != 0) {
		sbj_buf_free(&h);
		return oom(ps);
	}
	char *d = ps->out->data + at;
	memmove(d + h.len, d + 5, ps->out->len - at - 5);
	memcpy(d, h.data, h.len);
	ps->out->len -= 5 - h.len;
	ps->out->data[ps->out->len] = 0;
	sbj_buf_free(&h);
	return 0;
}

static int put_utf8(struct sbj_buf *b, uint32_t cp)
{
	unsigned char u[4];
	size_t n;

	if (cp < 0x80) {
		u[0] = (unsigned char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (unsigned char)(0xc0 | cp >> 6);
		u[1] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (unsigned char)(0xe0 | cp >> 12);
		u[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		u[2] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		u[0] = (unsigned char)(0xf0 | cp >> 18);
		u[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
		u[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		u[3] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	return put(b, u, n);
}

/* Length of the well-formed UTF-8 sequence at @p s (at most @p n bytes),
 * or 0: overlongs, surrogates and code points past U+10FFFF are refused,
 * so what we pass on is what any UTF-8 decoder accepts. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t len;
	uint32_t cp, min;

	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xe0) == 0xc0) {
		len = 2, cp = s[0] & 0x1f, min = 0x80;
	} else if ((s[0] & 0xf0) == 0xe0) {
		len = 3, cp = s[0] & 0x0f, min = 0x800;
	} else if ((s[0] & 0xf8) == 0xf0) {
		len = 4, cp = s[0] & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

static int hex4(struct parser *ps, uint32_t *v)
{
	*v = 0;
	for (int i = 0; i < 4; i++) {
		if (ps->p >= ps->end)
			return fail(ps, ps->p, "\\u needs 4 hex digits");
		unsigned char c = *ps->p;
		int d = c >= '0' && c <= '9'   ? c - '0'
			: c >= 'a' && c <= 'f' ? c - 'a' + 10
			: c >= 'A' && c <= 'F' ? c - 'A' + 10
					       : -1;
		if (d < 0)
			return fail(ps, ps->p, "\\u needs 4 hex digits");
		*v = *v << 4 | (uint32_t)d;
		ps->p++;
	}
	return 0;
}

static int escape(struct parser *ps)
{
	const unsigned char *at = ps->p++; /* the backslash */
	uint32_t cp, lo;

	if (ps->p >= ps->end)
		return fail(ps, at, "unterminated string");
	unsigned char c = *ps->p++;
	switch (c) {
	case '"':
	case '\\':
	case '/':
		return putc1(ps->out, c) == 0 ? 0 : oom(ps);
	case 'b':
		return putc1(ps->out, '\b') == 0 ? 0 : oom(ps);
	case 'f':
		return putc1(ps->out, '\f') == 0 ? 0 : oom(ps);
	case 'n':
		return putc1(ps->out, '\n') == 0 ? 0 : oom(ps);
	case 'r':
		return putc1(ps->out, '\r') == 0 ? 0 : oom(ps);
	case 't':
		return putc1(ps->out, '\t') == 0 ? 0 : oom(ps);
	case 'u':
		if (hex4(ps, &cp) != 0)
			return -1;
		if (cp >= 0xdc00 && cp <= 0xdfff)
			return fail(ps, at, "unpaired low surrogate \\u%04X", (unsigned)cp);
		if (cp >= 0xd800 && cp <= 0xdbff) {
			if (ps->end - ps->p < 2 || ps->p[0] != '\\' || ps->p[1] != 'u')
				return fail(ps, at, "unpaired high surrogate \\u%04X",
					    (unsigned)cp);
			ps->p += 2;
			if (hex4(ps, &lo) != 0)
				return -1;
			if (lo < 0xdc00 || lo > 0xdfff)
				return fail(ps, at, "unpaired high surrogate \\u%04X",
					    (unsigned)cp);
			cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
		}
		return put_utf8(ps->out, cp) == 0 ? 0 : oom(ps);
	default:
		return fail(ps, at, "unknown escape \\%c", c >= 0x20 && c < 0x7f ? c : '?');
	}
}

static int string(struct parser *ps)
{
	const unsigned char *open = ps->p++;
	size_t at, body;

	if (begin_header(ps, &at) != 0)
		return -1;
	body = ps->out->len;
	for (;;) {
		if (ps->p >= ps->end)
			return fail(ps, open, "unterminated string");
		unsigned char c = *ps->p;
		if (c == '"')
			break;
		if (c == '\\') {
			if (escape(ps) != 0)
				return -1;
			continue;
		}
		if (c < 0x20)
			return fail(ps, ps->p, "control character 0x%02x in a string (escape it)",
				    c);
		size_t n = utf8_len(ps->p, (size_t)(ps->end - ps->p));
		if (n == 0)
			return fail(ps, ps->p, "invalid UTF-8");
		if (put(ps->out, ps->p, n) != 0)
			return oom(ps);
		ps->p += n;
	}
	ps->p++;
	return end_header(ps, at, K_STR, ps->out->len - body);
}

static int number(struct parser *ps)
{
	const unsigned char *s = ps->p;
	int is_float = 0;
	char text[400];

	if (ps->p < ps->end && *ps->p == '-')
		ps->p++;
	if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9')
		return fail(ps, ps->p, "expected a digit");
	if (*ps->p == '0')
		ps->p++;
	else
		while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
			ps->p++;
	if (ps->p < ps->end && *ps->p == '.') {
		is_float = 1;
		ps->p++;
		if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9')
			return fail(ps, ps->p, "expected a digit after '.'");
		while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
			ps->p++;
	}
	if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
		is_float = 1;
		ps->p++;
		if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-'))
			ps->p++;
		if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9')
			return fail(ps, ps->p, "expected a digit in the exponent");
		while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
			ps->p++;
	}
	size_t n = (size_t)(ps->p - s);
	if (n >= sizeof text)
		return fail(ps, s, "number longer than %zu characters", sizeof text - 1);
	memcpy(text, s, n);
	text[n] = 0;
	errno = 0;
	int rc;
	if (is_float) {
		double d = strtod(text, NULL);
		if (isinf(d))
			return fail(ps, s, "number out of the float64 range");
		uint64_t bits;
		memcpy(&bits, &d, sizeof bits);
		rc = put_be(ps->out, 0xcb, bits, 8);
	} else if (text[0] == '-') {
		long long v = strtoll(text, NULL, 10);
		if (errno == ERANGE)
			return fail(ps, s, "integer below the int64 range");
		rc = v >= -32         ? putc1(ps->out, (unsigned char)(v & 0xff))
		     : v >= INT8_MIN  ? put_be(ps->out, 0xd0, (uint64_t)v, 1)
		     : v >= INT16_MIN ? put_be(ps->out, 0xd1, (uint64_t)v, 2)
		     : v >= INT32_MIN ? put_be(ps->out, 0xd2, (uint64_t)v, 4)
				      : put_be(ps->out, 0xd3, (uint64_t)v, 8);
	} else {
		unsigned long long v = strtoull(text, NULL, 10);
		if (errno == ERANGE)
			return fail(ps, s, "integer above the uint64 range");
		rc = v < 128           ? putc1(ps->out, (unsigned char)v)
		     : v <= UINT8_MAX  ? put_be(ps->out, 0xcc, v, 1)
		     : v <= UINT16_MAX ? put_be(ps->out, 0xcd, v, 2)
		     : v <= UINT32_MAX ? put_be(ps->out, 0xce, v, 4)
				       : put_be(ps->out, 0xcf, v, 8);
	}
	return rc == 0 ? 0 : oom(ps);
}

static int literal(struct parser *ps, const char *word, unsigned char code)
{
	size_t n = strlen(word);

	if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
		return fail(ps, ps->p, "unexpected character '%c'", *ps->p);
	ps->p += n;
	return putc1(ps->out, code) == 0 ? 0 : oom(ps);
}

static int value(struct parser *ps, int depth);

static int container(struct parser *ps, int depth, int is_map)
{
	const unsigned char close = is_map ? '}' : ']';
	uint64_t n = 0;
	size_t at;

	if (depth > SBJ_MAX_DEPTH)
		return fail(ps, ps->p, "nested deeper than %d", SBJ_MAX_DEPTH);
	ps->p++;
	if (begin_header(ps, &at) != 0)
		return -1;
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == close) {
		ps->p++;
		return end_header(ps, at, is_map ? K_MAP : K_ARRAY, 0);
	}
	for (;;) {
		skip_ws(ps);
		if (is_map) {
			if (ps->p >= ps->end || *ps->p != '"')
				return fail(ps, ps->p, "expected a string key");
			if (string(ps) != 0)
				return -1;
			skip_ws(ps);
			if (ps->p >= ps->end || *ps->p != ':')
				return fail(ps, ps->p, "expected ':' after an object key");
			ps->p++;
		}
		if (value(ps, depth) != 0)
			return -1;
		n++;
		skip_ws(ps);
		if (ps->p < ps->end && *ps->p == ',') {
			ps->p++;
			continue;
		}
		if (ps->p < ps->end && *ps->p == close) {
			ps->p++;
			return end_header(ps, at, is_map ? K_MAP : K_ARRAY, n);
		}
		return fail(ps, ps->p, is_map ? "expected ',' or '}'" : "expected ',' or ']'");
	}
}

static int value(struct parser *ps, int depth)
{
	skip_ws(ps);
	if (ps->p >= ps->end)
		return fail(ps, ps->p, "expected a value, found the end");
	switch (*ps->p) {
	case '{':
		return container(ps, depth + 1, 1);
	case '[':
		return container(ps, depth + 1, 0);
	case '"':
		return string(ps);
	case 't':
		return literal(ps, "true", 0xc3);
	case 'f':
		return literal(ps, "false", 0xc2);
	case 'n':
		return literal(ps, "null", 0xc0);
	default:
		if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9'))
			return number(ps);
		if (*ps->p >= 0x20 && *ps->p < 0x7f)
			return fail(ps, ps->p, "unexpected character '%c'", *ps->p);
		return fail(ps, ps->p, "unexpected byte 0x%02x", *ps->p);
	}
}

int sbj_from_json(const char *text, size_t len, struct sbj_buf *out, struct sbj_error *err)
{
	struct parser ps = {(const unsigned char *)text, (const unsigned char *)text,
			    (const unsigned char *)text + len, out, err};
	size_t mark = out->len;

	if (value(&ps, 0) == 0) {
		skip_ws(&ps);
		if (ps.p == ps.end)
			return 0;
		fail(&ps, ps.p, "unexpected text after the value");
	}
	out->len = mark; /* no half value left behind */
	if (out->data != NULL)
		out->data[mark] = 0;
	return -1;
}

/* ---- MessagePack -> JSON -------------------------------------------------- */

struct reader {
	const unsigned char *p, *end; /* the cursor and the end of the value */
	struct sbj_buf *out;          /* JSON goes here */
};

static int take(struct reader *r, size_t n, uint64_t *v)
{
	if ((size_t)(r->end - r->p) < n)
		return -1;
	*v = 0;
	for (size_t i = 0; i < n; i++)
		*v = *v << 8 | r->p[i];
	r->p += n;
	return 0;
}

static int put_str(struct sbj_buf *b, const char *s)
{
	return put(b, s, strlen(s));
}

static int put_json_string(struct sbj_buf *b, const unsigned char *s, size_t n)
{
	static const char hexd[] = "0123456789abcdef";

	if (putc1(b, '"') != 0)
		return -1;
	for (size_t i = 0; i < n;) {
		unsigned char c = s[i];
		const char *esc = c == '"'    ? "\\\""
				  : c == '\\' ? "\\\\"
				  : c == '\b' ? "\\b"
				  : c == '\f' ? "\\f"
				  : c == '\n' ? "\\n"
				  : c == '\r' ? "\\r"
				  : c == '\t' ? "\\t"
					      : NULL;
		if (esc != NULL) {
			if (put_str(b, esc) != 0)
				return -1;
			i++;
		} else if (c < 0x20) {
			char u[7] = {'\\', 'u', '0', '0', hexd[c >> 4], hexd[c & 15], 0};
			if (put_str(b, u) != 0)
				return -1;
			i++;
		} else {
			size_t len = utf8_len(s + i, n - i);
			if (len == 0) {
				if (put_str(b, "\\ufffd") != 0)
					return -1;
				i++;
			} else {
				if (put(b, s + i, len) != 0)
					return -1;
				i += len;
			}
		}
	}
	return putc1(b, '"');
}

static int put_hex(struct sbj_buf *b, const unsigned char *s, size_t n)
{
	static const char hexd[] = "0123456789abcdef";

	if (putc1(b, '"') != 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		char h[2] = {hexd[s[i] >> 4], hexd[s[i] & 15]};
		if (put(b, h, 2) != 0)
			return -1;
	}
	return putc1(b, '"');
}

/* The shortest text that reads back as the same number, with a ".0" when it
 * would otherwise read back as an integer (the type survives a round trip). */
static int put_float(struct sbj_buf *b, double d, int single)
{
	char t[40];

	if (!isfinite(d))
		return put_str(b, "null");
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(t, sizeof t, "%.*g", prec, d);
		double back = strtod(t, NULL);
		if (single ? (float)back == (float)d : back == d)
			break;
	}
	/* %g switches to an exponent once the integer part has more digits than
	 * the precision: 100 would print as 1e+02. */
	double mag = fabs(d);
	if (mag >= 1 && mag < 1e17 && strchr(t, 'e') != NULL)
		snprintf(t, sizeof t, "%.*g", (int)floor(log10(mag)) + 1, d);
	if (strpbrk(t, ".e") == NULL)
		strcat(t, ".0");
	return put_str(b, t);
}

static int emit(struct reader *r, int depth);

static int emit_items(struct reader *r, uint64_t n, int is_map, int depth)
{
	if (depth > SBJ_MAX_DEPTH)
		return -1;
	if (putc1(r->out, is_map ? '{' : '[') != 0)
		return -1;
	for (uint64_t i = 0; i < n; i++) {
		if (i > 0 && putc1(r->out, ',') != 0)
			return -1;
		if (is_map) {
			if (r->p < r->end && ((*r->p & 0xe0) == 0xa0 || *r->p == 0xd9 ||
					      *r->p == 0xda || *r->p == 0xdb)) {
				if (emit(r, depth) != 0)
					return -1;
			} else {
				/* JSON keys are strings: print the key, then quote that. */
				struct sbj_buf key = {0}, *out = r->out;
				r->out = &key;
				int rc = emit(r, depth);
				r->out = out;
				if (rc == 0)
					rc = put_json_string(out, (const unsigned char *)key.data,
							     key.len);
				sbj_buf_free(&key);
				if (rc != 0)
					return -1;
			}
			if (putc1(r->out, ':') != 0)
				return -1;
		}
		if (emit(r, depth) != 0)
			return -1;
	}
	return putc1(r->out, is_map ? '}' : ']');
}

static int emit_bytes(struct reader *r, size_t lenlen, int bin)
{
	uint64_t n;

	if (take(r, lenlen, &n) != 0 || (uint64_t)(r->end - r->p) < n)
		return -1;
	const unsigned char *s = r->p;
	r->p += n;
	if (!bin)
		return put_json_string(r->out, s, n);
	if (put_str(r->out, "{\"$bin\":") != 0 || put_hex(r->out, s, n) != 0)
		return -1;
	return putc1(r->out, '}');
}

static int emit_ext(struct reader *r, uint64_t n)
{
	char t[32];

	if (r->p >= r->end)
		return -1;
	int type = (signed char)*r->p++;
	if ((uint64_t)(r->end - r->p) < n)
		return -1;
	snprintf(t, sizeof t, "{\"$ext\":%d,\"hex\":", type);
	if (put_str(r->out, t) != 0 || put_hex(r->out, r->p, n) != 0)
		return -1;
	r->p += n;
	return putc1(r->out, '}');
}

static int emit(struct reader *r, int depth)
{
	char t[32];
	uint64_t v;

	if (r->p >= r->end)
		return -1;
	unsigned char c = *r->p++;
	if (c < 0x80 || c >= 0xe0) {
		snprintf(t, sizeof t, "%d", c < 0x80 ? c : (signed char)c);
		return put_str(r->out, t);
	}
	if ((c & 0xf0) == 0x80)
		return emit_items(r, c & 0x0f, 1, depth + 1);
	if ((c & 0xf0) == 0x90)
		return emit_items(r, c & 0x0f, 0, depth + 1);
	if ((c & 0xe0) == 0xa0) {
		uint64_t n = c & 0x1f;
		if ((uint64_t)(r->end - r->p) < n)
			return -1;
		r->p += n;
		return put_json_string(r->out, r->p - n, n);
	}
	switch (c) {
	case 0xc0:
		return put_str(r->out, "null");
	case 0xc2:
		return put_str(r->out, "false");
	case 0xc3:
		return put_str(r->out, "true");
	case 0xc4:
	case 0xc5:
	case 0xc6:
		return emit_bytes(r, (size_t)1 << (c - 0xc4), 1);
	case 0xc7:
	case 0xc8:
	case 0xc9:
		return take(r, (size_t)1 << (c - 0xc7), &v) == 0 ? emit_ext(r, v) : -1;
	case 0xca: {
		if (take(r, 4, &v) != 0)
			return -1;
		uint32_t bits = (uint32_t)v;
		float f;
		memcpy(&f, &bits, sizeof f);
		return put_float(r->out, f, 1);
	}
	case 0xcb: {
		if (take(r, 8, &v) != 0)
			return -1;
		double d;
		memcpy(&d, &v, sizeof d);
		return put_float(r->out, d, 0);
	}
	case 0xcc:
	case 0xcd:
	case 0xce:
	case 0xcf:
		if (take(r, (size_t)1 << (c - 0xcc), &v) != 0)
			return -1;
		snprintf(t, sizeof t, "%llu", (unsigned long long)v);
		return put_str(r->out, t);
	case 0xd0:
	case 0xd1:
	case 0xd2:
	case 0xd3: {
		int bytes = 1 << (c - 0xd0);
		if (take(r, (size_t)bytes, &v) != 0)
			return -1;
		int64_t s = bytes == 1   ? (int8_t)v
			    : bytes == 2 ? (int16_t)v
			    : bytes == 4 ? (int32_t)v
					 : (int64_t)v;
		snprintf(t, sizeof t, "%lld", (long long)s);
		return put_str(r->out, t);
	}
	case 0xd4:
	case 0xd5:
	case 0xd6:
	case 0xd7:
	case 0xd8:
		return emit_ext(r, (uint64_t)1 << (c - 0xd4));
	case 0xd9:
	case 0xda:
	case 0xdb:
		return emit_bytes(r, (size_t)1 << (c - 0xd9), 0);
	case 0xdc:
	case 0xdd:
		if (take(r, c == 0xdc ? 2 : 4, &v) != 0)
			return -1;
		return emit_items(r, v, 0, depth + 1);
	case 0xde:
	case 0xdf:
		if (take(r, c == 0xde ? 2 : 4, &v) != 0)
			return -1;
		return emit_items(r, v, 1, depth + 1);
	default: /* 0xc1 is never used */
		return -1;
	}
}

int sbj_to_json(const void *mp, size_t len, struct sbj_buf *out)
{
	struct reader r = {mp, (const unsigned char *)mp + len, out};
	size_t mark = out->len;

	if (emit(&r, 0) == 0 && r.p == r.end)
		return 0;
	out->len = mark;
	if (out->data != NULL)
		out->data[mark] = 0;
	return -1;
}
