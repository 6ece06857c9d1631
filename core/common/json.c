/* JSON <-> MessagePack: a recursive-descent JSON parser that writes
 * MessagePack directly, and a MessagePack walker that prints JSON. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <switchboard/error.h>

#include "common/json.h"

void sb__json_buf_free(struct sb__json_buf *b)
{
	if (!b->fixed)
		free(b->data);
	memset(b, 0, sizeof *b);
}

static int put(struct sb__json_buf *b, const void *p, size_t n)
{
	if (b->max != 0 && (n > b->max || b->len > b->max - n))
		return SB_ETOOLARGE;
	if (b->cap - b->len < n + 1) {
		if (b->fixed)
			return SB_ETOOLARGE;
		size_t cap = b->cap ? b->cap * 2 : 64;
		while (cap - b->len < n + 1)
			cap *= 2;
		char *d = realloc(b->data, cap);
		if (d == NULL)
			return SB_ENOMEM;
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = 0;
	return 0;
}

static int putc1(struct sb__json_buf *b, unsigned char c)
{
	return put(b, &c, 1);
}

static size_t be(unsigned char *t, unsigned char tag, uint64_t v, int bytes)
{
	t[0] = tag;
	for (int i = 0; i < bytes; i++)
		t[1 + i] = (unsigned char)(v >> (8 * (bytes - 1 - i)));
	return 1 + (size_t)bytes;
}

static int put_be(struct sb__json_buf *b, unsigned char tag, uint64_t v, int bytes)
{
	unsigned char t[9];
	return put(b, t, be(t, tag, v, bytes));
}

/* ---- JSON -> MessagePack -------------------------------------------------- */

struct parser {
	const unsigned char *p, *start, *end; /* the cursor and the text */
	struct sb__json_buf *out;             /* MessagePack goes here */
	struct sb__json_error *err;           /* the first failure */
	int rc;                               /* what the failure returns */
	size_t open;                          /* placeholders not yet shrunk */
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

/* @p rc from put(): 0, or a failure to grow the output, reported. */
static int room(struct parser *ps, int rc)
{
	if (rc == 0)
		return 0;
	ps->rc = rc;
	if (rc == SB_ETOOLARGE)
		return fail(ps, ps->p, "more than %zu bytes as MessagePack",
			    ps->out->max != 0 ? ps->out->max - 4 * ps->open : ps->out->cap - 1);
	return fail(ps, ps->p, "out of memory");
}

static void skip_ws(struct parser *ps)
{
	while (ps->p < ps->end &&
	       (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
		ps->p++;
}

enum kind { K_STR, K_ARRAY, K_MAP, K_BIN };

/* The smallest header for @p n items or bytes of kind @p k, into @p h. */
static size_t header(unsigned char h[5], enum kind k, uint64_t n)
{
	switch (k) {
	case K_STR:
		if (n < 32) {
			h[0] = 0xa0 | (unsigned char)n;
			return 1;
		}
		return n < 256     ? be(h, 0xd9, n, 1)
		       : n < 65536 ? be(h, 0xda, n, 2)
				   : be(h, 0xdb, n, 4);
	case K_BIN:
		return n < 256     ? be(h, 0xc4, n, 1)
		       : n < 65536 ? be(h, 0xc5, n, 2)
				   : be(h, 0xc6, n, 4);
	default:
		if (n < 16) {
			h[0] = (k == K_ARRAY ? 0x90 : 0x80) | (unsigned char)n;
			return 1;
		}
		return be(h, k == K_ARRAY ? 0xdc : 0xde, n, n < 65536 ? 2 : 4);
	}
}

/* Containers and strings learn their size only at the end, so they get a
 * 5-byte placeholder that end_header() shrinks to the smallest header:
 * output stays canonical (what msgpack-c or Python would write). While a
 * placeholder is open, out->max is raised by the 4 bytes it gives back at
 * least, so a value that fits once shrunk is not refused on the way. */
static int begin_header(struct parser *ps, size_t *at)
{
	*at = ps->out->len;
	if (ps->out->max != 0) {
		ps->out->max += 4;
		ps->open++;
	}
	return room(ps, put(ps->out, "\0\0\0\0\0", 5));
}

static int end_header(struct parser *ps, size_t at, enum kind k, uint64_t n)
{
	unsigned char h[5];

	if (ps->out->max != 0) {
		ps->out->max -= 4;
		ps->open--;
	}
	if (n > UINT32_MAX)
		return fail(ps, ps->p, "more than 4294967295 items or bytes");
	size_t hl = header(h, k, n);
	char *d = ps->out->data + at;
	memmove(d + hl, d + 5, ps->out->len - at - 5);
	memcpy(d, h, hl);
	ps->out->len -= 5 - hl;
	ps->out->data[ps->out->len] = 0;
	if (ps->out->max != 0 && ps->out->len > ps->out->max)
		return room(ps, SB_ETOOLARGE);
	return 0;
}

static int put_utf8(struct sb__json_buf *b, uint32_t cp)
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
		return room(ps, putc1(ps->out, c));
	case 'b':
		return room(ps, putc1(ps->out, '\b'));
	case 'f':
		return room(ps, putc1(ps->out, '\f'));
	case 'n':
		return room(ps, putc1(ps->out, '\n'));
	case 'r':
		return room(ps, putc1(ps->out, '\r'));
	case 't':
		return room(ps, putc1(ps->out, '\t'));
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
		return room(ps, put_utf8(ps->out, cp));
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
		if (room(ps, put(ps->out, ps->p, n)) != 0)
			return -1;
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
	return room(ps, rc);
}

static int literal(struct parser *ps, const char *word, unsigned char code)
{
	size_t n = strlen(word);

	if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
		return fail(ps, ps->p, "unexpected character '%c'", *ps->p);
	ps->p += n;
	return room(ps, putc1(ps->out, code));
}

static int value(struct parser *ps, int depth);

static int hexval(unsigned char c)
{
	return c >= '0' && c <= '9'   ? c - '0'
	       : c >= 'a' && c <= 'f' ? c - 'a' + 10
	       : c >= 'A' && c <= 'F' ? c - 'A' + 10
				      : -1;
}

static int expect(struct parser *ps, unsigned char c, const char *what)
{
	skip_ws(ps);
	if (ps->p >= ps->end || *ps->p != c)
		return fail(ps, ps->p, "%s", what);
	ps->p++;
	return 0;
}

/* 1 if the cursor is at the key @p key written as is (no escapes). */
static int at_key(const struct parser *ps, const char *key)
{
	size_t n = strlen(key);
	return (size_t)(ps->end - ps->p) >= n + 2 && ps->p[0] == '"' &&
	       memcmp(ps->p + 1, key, n) == 0 && ps->p[n + 1] == '"';
}

/* A "<hex>" string as bin (@p ext < 0) or as an ext of type @p ext - 256
 * (ext >= 0): the header, then the bytes. */
static int hex_value(struct parser *ps, int ext)
{
	unsigned char h[6];
	size_t hl;

	skip_ws(ps);
	if (ps->p >= ps->end || *ps->p != '"')
		return fail(ps, ps->p, "expected a string of hex digits");
	const unsigned char *s = ps->p + 1, *q = s;
	while (q < ps->end && hexval(*q) >= 0)
		q++;
	if (q >= ps->end || *q != '"')
		return fail(ps, q, "expected a hex digit or '\"'");
	if ((q - s) % 2 != 0)
		return fail(ps, q, "odd number of hex digits");
	uint64_t n = (uint64_t)(q - s) / 2;
	if (n > UINT32_MAX)
		return fail(ps, s, "more than 4294967295 bytes");
	if (ext < 0) {
		hl = header(h, K_BIN, n);
	} else {
		static const unsigned char fixed[17] = {
			[1] = 0xd4, [2] = 0xd5, [4] = 0xd6, [8] = 0xd7, [16] = 0xd8};
		if (n <= 16 && fixed[n] != 0)
			hl = 1, h[0] = fixed[n];
		else
			hl = n < 256     ? be(h, 0xc7, n, 1)
			     : n < 65536 ? be(h, 0xc8, n, 2)
					 : be(h, 0xc9, n, 4);
		h[hl++] = (unsigned char)(ext - 256);
	}
	if (room(ps, put(ps->out, h, hl)) != 0)
		return -1;
	for (const unsigned char *d = s; d < q; d += 2)
		if (room(ps, putc1(ps->out, (unsigned char)(hexval(d[0]) << 4 | hexval(d[1])))) !=
		    0)
			return -1;
	ps->p = q + 1;
	return 0;
}

/* {"$bin":"<hex>"} and {"$ext":TYPE,"hex":"<hex>"}, the cursor past the
 * key: the inverse of how sb__json_print() shows bin and ext. */
static int tagged(struct parser *ps, int is_ext)
{
	const char *end = is_ext ? "expected '}' after the $ext object's \"hex\""
				 : "expected '}' after the $bin string";

	if (expect(ps, ':',
		   is_ext ? "expected ':' after \"$ext\"" : "expected ':' after \"$bin\"") != 0)
		return -1;
	if (!is_ext)
		return hex_value(ps, -1) == 0 ? expect(ps, '}', end) : -1;
	skip_ws(ps);
	const unsigned char *s = ps->p;
	int neg = ps->p < ps->end && *ps->p == '-', type = 0;
	ps->p += neg;
	if (ps->p >= ps->end || hexval(*ps->p) < 0 || hexval(*ps->p) > 9)
		return fail(ps, s, "$ext needs an integer type from -128 to 127");
	while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9' && type <= 128)
		type = type * 10 + (*ps->p++ - '0');
	if (neg)
		type = -type;
	if (type < -128 || type > 127 || (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9'))
		return fail(ps, s, "$ext needs an integer type from -128 to 127");
	if (expect(ps, ',', "expected ',' and \"hex\" after the $ext type") != 0)
		return -1;
	skip_ws(ps);
	if (!at_key(ps, "hex"))
		return fail(ps, ps->p, "expected \"hex\" after the $ext type");
	ps->p += 5;
	if (expect(ps, ':', "expected ':' after \"hex\"") != 0 || hex_value(ps, type + 256) != 0)
		return -1;
	return expect(ps, '}', end);
}

static int container(struct parser *ps, int depth, int is_map)
{
	const unsigned char close = is_map ? '}' : ']';
	uint64_t n = 0;
	size_t at;

	if (depth > SB__JSON_MAX_DEPTH)
		return fail(ps, ps->p, "nested deeper than %d", SB__JSON_MAX_DEPTH);
	ps->p++;
	if (is_map) {
		skip_ws(ps);
		if (at_key(ps, "$bin") || at_key(ps, "$ext")) {
			int is_ext = ps->p[2] == 'e';
			ps->p += 6;
			return tagged(ps, is_ext);
		}
	}
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

int sb__json_parse(const char *text, size_t len, struct sb__json_buf *out,
		   struct sb__json_error *err)
{
	struct parser ps = {(const unsigned char *)text,
			    (const unsigned char *)text,
			    (const unsigned char *)text + len,
			    out,
			    err,
			    SB_EINVAL,
			    0};
	size_t mark = out->len, max = out->max;

	if (value(&ps, 0) == 0) {
		skip_ws(&ps);
		if (ps.p == ps.end)
			return 0;
		fail(&ps, ps.p, "unexpected text after the value");
	}
	out->len = mark; /* no half value left behind */
	out->max = max;  /* nor an allowance of a placeholder left open */
	if (out->data != NULL)
		out->data[mark] = 0;
	return ps.rc;
}

/* ---- MessagePack -> JSON -------------------------------------------------- */

struct reader {
	const unsigned char *p, *end; /* the cursor and the end of the value */
	struct sb__json_buf *out;     /* JSON goes here */
	int rc;                       /* why the output could not grow, or 0 */
	int keys;                     /* non-string keys we are inside of */
};

/* Each non-string key inside another one doubles the backslashes of what
 * it holds (its JSON is quoted once per level): 2^30 bytes from 130 bytes
 * of nested map keys, when the fuzzer found it. Past this many levels the
 * value is refused. */
#define KEYS_MAX 4

/* Output, remembering why it failed: out of memory or past out->max. */
static int wr(struct reader *r, const void *p, size_t n)
{
	int rc = put(r->out, p, n);
	if (rc != 0) {
		r->rc = rc;
		return -1;
	}
	return 0;
}

static int wc(struct reader *r, unsigned char c)
{
	return wr(r, &c, 1);
}

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

static int put_str(struct reader *r, const char *s)
{
	return wr(r, s, strlen(s));
}

static int put_json_string(struct reader *r, const unsigned char *s, size_t n)
{
	static const char hexd[] = "0123456789abcdef";

	if (wc(r, '"') != 0)
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
			if (put_str(r, esc) != 0)
				return -1;
			i++;
		} else if (c < 0x20) {
			char u[7] = {'\\', 'u', '0', '0', hexd[c >> 4], hexd[c & 15], 0};
			if (put_str(r, u) != 0)
				return -1;
			i++;
		} else {
			size_t len = utf8_len(s + i, n - i);
			if (len == 0) {
				if (put_str(r, "\\ufffd") != 0)
					return -1;
				i++;
			} else {
				if (wr(r, s + i, len) != 0)
					return -1;
				i += len;
			}
		}
	}
	return wc(r, '"');
}

static int put_hex(struct reader *r, const unsigned char *s, size_t n)
{
	static const char hexd[] = "0123456789abcdef";

	if (wc(r, '"') != 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		char h[2] = {hexd[s[i] >> 4], hexd[s[i] & 15]};
		if (wr(r, h, 2) != 0)
			return -1;
	}
	return wc(r, '"');
}

/* The shortest text that reads back as the same number, with a ".0" when it
 * would otherwise read back as an integer (the type survives a round trip). */
static int put_float(struct reader *r, double d, int single)
{
	char t[40];

	if (!isfinite(d))
		return put_str(r, "null");
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(t, sizeof t, "%.*g", prec, d);
		double back = strtod(t, NULL);
		if (single ? (float)back == (float)d : back == d)
			break;
	}
	/* %g switches to an exponent once the integer part has more digits than
	 * the precision: 100 would print as 1e+02. Powers of ten up to 1e17 are
	 * exact doubles, so the digit count is exact (and needs no libm, which
	 * the client library does not link). */
	double mag = d < 0 ? -d : d;
	if (mag >= 1 && mag < 1e17 && strchr(t, 'e') != NULL) {
		int digits = 1;
		for (double p = 10; mag >= p; p *= 10)
			digits++;
		snprintf(t, sizeof t, "%.*g", digits, d);
	}
	if (strpbrk(t, ".e") == NULL)
		strcat(t, ".0");
	return put_str(r, t);
}

static int emit(struct reader *r, int depth);

static int emit_items(struct reader *r, uint64_t n, int is_map, int depth)
{
	if (depth > SB__JSON_MAX_DEPTH)
		return -1;
	if (wc(r, is_map ? '{' : '[') != 0)
		return -1;
	for (uint64_t i = 0; i < n; i++) {
		if (i > 0 && wc(r, ',') != 0)
			return -1;
		if (is_map) {
			if (r->p < r->end && ((*r->p & 0xe0) == 0xa0 || *r->p == 0xd9 ||
					      *r->p == 0xda || *r->p == 0xdb)) {
				size_t at = r->out->len;
				if (emit(r, depth) != 0)
					return -1;
				/* A key "$bin" or "$ext" would read back as bin or ext:
				 * its '$' is escaped, so the round trip keeps the map. */
				if (r->out->len - at == 6 &&
				    (memcmp(r->out->data + at, "\"$bin\"", 6) == 0 ||
				     memcmp(r->out->data + at, "\"$ext\"", 6) == 0)) {
					char k[12] = "\"\\u0024bin\"";
					memcpy(k + 7, r->out->data + at + 2, 3);
					r->out->len = at;
					if (wr(r, k, 11) != 0)
						return -1;
				}
			} else {
				/* JSON keys are strings: print the key, then quote that. */
				struct sb__json_buf key = {.max = r->out->max}, *out = r->out;
				if (r->keys == KEYS_MAX)
					return -1;
				r->keys++;
				r->out = &key;
				int rc = emit(r, depth);
				r->out = out;
				r->keys--;
				if (rc == 0)
					rc = put_json_string(r, (const unsigned char *)key.data,
							     key.len);
				sb__json_buf_free(&key);
				if (rc != 0)
					return -1;
			}
			if (wc(r, ':') != 0)
				return -1;
		}
		if (emit(r, depth) != 0)
			return -1;
	}
	return wc(r, is_map ? '}' : ']');
}

static int emit_bytes(struct reader *r, size_t lenlen, int bin)
{
	uint64_t n;

	if (take(r, lenlen, &n) != 0 || (uint64_t)(r->end - r->p) < n)
		return -1;
	const unsigned char *s = r->p;
	r->p += n;
	if (!bin)
		return put_json_string(r, s, n);
	if (put_str(r, "{\"$bin\":") != 0 || put_hex(r, s, n) != 0)
		return -1;
	return wc(r, '}');
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
	if (put_str(r, t) != 0 || put_hex(r, r->p, n) != 0)
		return -1;
	r->p += n;
	return wc(r, '}');
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
		return put_str(r, t);
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
		return put_json_string(r, r->p - n, n);
	}
	switch (c) {
	case 0xc0:
		return put_str(r, "null");
	case 0xc2:
		return put_str(r, "false");
	case 0xc3:
		return put_str(r, "true");
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
		return put_float(r, f, 1);
	}
	case 0xcb: {
		if (take(r, 8, &v) != 0)
			return -1;
		double d;
		memcpy(&d, &v, sizeof d);
		return put_float(r, d, 0);
	}
	case 0xcc:
	case 0xcd:
	case 0xce:
	case 0xcf:
		if (take(r, (size_t)1 << (c - 0xcc), &v) != 0)
			return -1;
		snprintf(t, sizeof t, "%llu", (unsigned long long)v);
		return put_str(r, t);
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
		return put_str(r, t);
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

int sb__json_print(const void *mp, size_t len, struct sb__json_buf *out)
{
	struct reader r = {mp, (const unsigned char *)mp + len, out, 0, 0};
	size_t mark = out->len;

	if (emit(&r, 0) == 0 && r.p == r.end)
		return 0;
	out->len = mark;
	if (out->data != NULL)
		out->data[mark] = 0;
	return r.rc != 0 ? r.rc : SB_EBADFRAME;
}
