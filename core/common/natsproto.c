/* The NATS text protocol: a server's operations parsed where they lie (no
 * copy, no allocation), with every count checked against the bytes there. */
#include <string.h>

#include <switchboard/error.h>

#include "common/natsproto.h"

static int lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* Case-insensitive prefix: @p word is lower case. */
static int is_word(const uint8_t *p, size_t n, const char *word)
{
	size_t w = strlen(word);
	if (n < w)
		return 0;
	for (size_t i = 0; i < w; i++)
		if (lower(p[i]) != word[i])
			return 0;
	return 1;
}

/* A decimal count: digits only, at most 19 of them (fits in a u64). */
static int parse_u64(const char *s, size_t len, uint64_t *v)
{
	uint64_t x = 0;
	if (len == 0 || len > 19)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		x = x * 10 + (uint64_t)(s[i] - '0');
	}
	*v = x;
	return 0;
}

int sb__nats_subject_ok(const char *s, size_t len, int wild)
{
	size_t tok = 0; /* bytes in the current token */
	if (len == 0 || len > SB__NATS_SUBJECT_MAX)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= ' ' || c >= 0x7f)
			return 0;
		if (c == '.') {
			if (tok == 0)
				return 0;
			tok = 0;
			continue;
		}
		if (!wild && (c == '*' || c == '>'))
			return 0;
		tok++;
	}
	if (tok == 0)
		return 0;
	if (wild) {
		/* '*' and '>' stand alone in their token; '>' only last. */
		for (size_t i = 0; i < len; i++) {
			if (s[i] != '*' && s[i] != '>')
				continue;
			if ((i > 0 && s[i - 1] != '.') || (i + 1 < len && s[i + 1] != '.'))
				return 0;
			if (s[i] == '>' && i + 1 != len)
				return 0;
		}
	}
	return 1;
}

/* Splits a control line's arguments on spaces and tabs. @return the count,
 * or 6 when there are more than 5 (always an error here). */
static unsigned split(const char *l, size_t len, const char *tok[5], size_t tlen[5])
{
	unsigned nt = 0;
	size_t i = 0;
	while (i < len) {
		while (i < len && (l[i] == ' ' || l[i] == '\t'))
			i++;
		if (i == len)
			break;
		if (nt == 5)
			return 6;
		tok[nt] = l + i;
		while (i < len && l[i] != ' ' && l[i] != '\t')
			i++;
		tlen[nt] = (size_t)(l + i - tok[nt]);
		nt++;
	}
	return nt;
}

/* "NATS/1.0[ SSS[ description]]\r\n...\r\n\r\n": @return the status (0
 * without one) or -1 when the block is not one. */
static int header_status(const uint8_t *h, size_t n)
{
	const uint8_t *eol;
	size_t first;
	if (n < 12 || memcmp(h, "NATS/1.0", 8) != 0 || memcmp(h + n - 4, "\r\n\r\n", 4) != 0)
		return -1;
	eol = memchr(h, '\r', n);
	first = (size_t)(eol - h);
	if (h[first + 1] != '\n')
		return -1;
	if (first == 8)
		return 0;
	if (h[8] != ' ' || first < 12 || h[9] < '1' || h[9] > '9' || h[10] < '0' || h[10] > '9' ||
	    h[11] < '0' || h[11] > '9' || (first > 12 && h[12] != ' '))
		return -1;
	return (h[9] - '0') * 100 + (h[10] - '0') * 10 + (h[11] - '0');
}

static long parse_msg(const uint8_t *p, size_t n, size_t line_end, size_t next, int with_hdr,
		      size_t max_payload, struct sb__nats_in *in)
{
	const char *l = (const char *)p, *tok[5];
	size_t tlen[5], skip = with_hdr ? 5 : 4;
	unsigned nt = split(l + skip, line_end - skip, tok, tlen);
	unsigned want = with_hdr ? 4 : 3; /* without the reply subject */
	uint64_t hdr_len = 0, total, sid;
	struct sb__nats_msg *m = &in->msg;

	if (nt != want && nt != want + 1)
		return SB_EBADFRAME;
	if (!sb__nats_subject_ok(tok[0], tlen[0], 0) || parse_u64(tok[1], tlen[1], &sid) != 0 ||
	    parse_u64(tok[nt - 1], tlen[nt - 1], &total) != 0 || total > max_payload)
		return SB_EBADFRAME;
	if (with_hdr && (parse_u64(tok[nt - 2], tlen[nt - 2], &hdr_len) != 0 || hdr_len > total))
		return SB_EBADFRAME;
	memset(m, 0, sizeof *m);
	m->subject = tok[0];
	m->subject_len = tlen[0];
	m->sid = sid;
	if (nt == want + 1) {
		if (!sb__nats_subject_ok(tok[2], tlen[2], 0))
			return SB_EBADFRAME;
		m->reply = tok[2];
		m->reply_len = tlen[2];
	}
	if (n - next < total + 2)
		return 0;
	if (p[next + total] != '\r' || p[next + total + 1] != '\n')
		return SB_EBADFRAME;
	if (with_hdr) {
		int st = header_status(p + next, (size_t)hdr_len);
		if (st < 0)
			return SB_EBADFRAME;
		m->status = st;
		m->hdr = p + next;
		m->hdr_len = (size_t)hdr_len;
	}
	m->data = p + next + hdr_len;
	m->data_len = (size_t)(total - hdr_len);
	in->op = SB__NATS_MSG;
	return (long)(next + total + 2);
}

long sb__nats_parse(const uint8_t *p, size_t n, size_t max_payload, struct sb__nats_in *in)
{
	size_t scan = n < SB__NATS_LINE_MAX + 2 ? n : SB__NATS_LINE_MAX + 2;
	const uint8_t *nl = memchr(p, '\n', scan);
	size_t line_end, next;

	if (nl == NULL)
		return n >= SB__NATS_LINE_MAX + 2 ? SB_EBADFRAME : 0;
	next = (size_t)(nl - p) + 1;
	if (next < 2 || p[next - 2] != '\r')
		return SB_EBADFRAME;
	line_end = next - 2;
	in->text = NULL;
	in->text_len = 0;
	if (is_word(p, line_end, "msg ") || is_word(p, line_end, "msg\t"))
		return parse_msg(p, n, line_end, next, 0, max_payload, in);
	if (is_word(p, line_end, "hmsg ") || is_word(p, line_end, "hmsg\t"))
		return parse_msg(p, n, line_end, next, 1, max_payload, in);
	if (line_end == 4 && is_word(p, 4, "ping")) {
		in->op = SB__NATS_PING;
	} else if (line_end == 4 && is_word(p, 4, "pong")) {
		in->op = SB__NATS_PONG;
	} else if (line_end == 3 && is_word(p, 3, "+ok")) {
		in->op = SB__NATS_OK;
	} else if (is_word(p, line_end, "info ") || is_word(p, line_end, "info\t")) {
		size_t i = 5;
		while (i < line_end && (p[i] == ' ' || p[i] == '\t'))
			i++;
		if (i == line_end || p[i] != '{')
			return SB_EBADFRAME;
		in->op = SB__NATS_INFO;
		in->text = (const char *)p + i;
		in->text_len = line_end - i;
	} else if (is_word(p, line_end, "-err")) {
		size_t i = 4;
		while (i < line_end && (p[i] == ' ' || p[i] == '\t'))
			i++;
		in->op = SB__NATS_ERR;
		in->text = (const char *)p + i;
		in->text_len = line_end - i;
	} else {
		return SB_EBADFRAME;
	}
	return (long)next;
}

int sb__nats_hdr_get(const uint8_t *hdr, size_t hdr_len, const char *name, const char **val,
		     size_t *len)
{
	size_t nlen = strlen(name), i;
	const uint8_t *eol = memchr(hdr, '\n', hdr_len);
	if (eol == NULL)
		return 0;
	i = (size_t)(eol - hdr) + 1; /* past the status line */
	while (i < hdr_len) {
		const uint8_t *e = memchr(hdr + i, '\n', hdr_len - i);
		size_t end = e ? (size_t)(e - hdr) : hdr_len, k;
		size_t lend = end > i && hdr[end - 1] == '\r' ? end - 1 : end;
		if (lend - i > nlen && hdr[i + nlen] == ':') {
			for (k = 0; k < nlen; k++)
				if (lower(hdr[i + k]) != lower((unsigned char)name[k]))
					break;
			if (k == nlen) {
				size_t v = i + nlen + 1;
				while (v < lend && (hdr[v] == ' ' || hdr[v] == '\t'))
					v++;
				while (lend > v && (hdr[lend - 1] == ' ' || hdr[lend - 1] == '\t'))
					lend--;
				*val = (const char *)hdr + v;
				*len = lend - v;
				return 1;
			}
		}
		i = end + 1;
	}
	return 0;
}

static int hdr_text_ok(const char *s, int is_name)
{
	if (*s == '\0' && is_name)
		return 0;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '\r' || c == '\n' || (is_name && (c == ':' || c <= ' ' || c >= 0x7f)))
			return 0;
	}
	return 1;
}

long sb__nats_hdr_build(uint8_t *out, size_t cap, const struct sb__nats_hdr *h, unsigned nh)
{
	size_t need = 10 + 2, at = 0;
	for (unsigned i = 0; i < nh; i++) {
		if (!hdr_text_ok(h[i].name, 1) || !hdr_text_ok(h[i].value, 0))
			return SB_EINVAL;
		need += strlen(h[i].name) + 2 + strlen(h[i].value) + 2;
	}
	if (need > cap)
		return (long)need;
	memcpy(out, "NATS/1.0\r\n", 10);
	at = 10;
	for (unsigned i = 0; i < nh; i++) {
		size_t nl = strlen(h[i].name), vl = strlen(h[i].value);
		memcpy(out + at, h[i].name, nl);
		at += nl;
		memcpy(out + at, ": ", 2);
		at += 2;
		memcpy(out + at, h[i].value, vl);
		at += vl;
		memcpy(out + at, "\r\n", 2);
		at += 2;
	}
	memcpy(out + at, "\r\n", 2);
	return (long)need;
}

static char *put_u64(char *p, uint64_t v)
{
	char tmp[20];
	int n = 0;
	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		*p++ = tmp[--n];
	return p;
}

size_t sb__nats_pub_size(size_t subject_len, size_t reply_len, size_t hdr_len, size_t len)
{
	/* "HPUB " + subject + " " + reply + " " + 20 digits + " " + 20 + CRLF,
	 * then payload + CRLF. */
	return 5 + subject_len + 1 + reply_len + 1 + 20 + 1 + 20 + 2 + hdr_len + len + 2;
}

size_t sb__nats_pub_write(uint8_t *out, const char *subject, size_t subject_len, const char *reply,
			  size_t reply_len, const uint8_t *hdr, size_t hdr_len, const uint8_t *data,
			  size_t len)
{
	char *p = (char *)out;
	if (hdr_len > 0) {
		memcpy(p, "HPUB ", 5);
		p += 5;
	} else {
		memcpy(p, "PUB ", 4);
		p += 4;
	}
	memcpy(p, subject, subject_len);
	p += subject_len;
	*p++ = ' ';
	if (reply_len > 0) {
		memcpy(p, reply, reply_len);
		p += reply_len;
		*p++ = ' ';
	}
	if (hdr_len > 0) {
		p = put_u64(p, hdr_len);
		*p++ = ' ';
	}
	p = put_u64(p, hdr_len + len);
	*p++ = '\r';
	*p++ = '\n';
	if (hdr_len > 0)
		memcpy(p, hdr, hdr_len);
	p += hdr_len;
	if (len > 0)
		memcpy(p, data, len);
	p += len;
	*p++ = '\r';
	*p++ = '\n';
	return (size_t)(p - (char *)out);
}

size_t sb__nats_sub_write(char *out, const char *subject, const char *queue, uint64_t sid)
{
	char *p = out;
	size_t sl = strlen(subject);
	memcpy(p, "SUB ", 4);
	p += 4;
	memcpy(p, subject, sl);
	p += sl;
	*p++ = ' ';
	if (queue != NULL) {
		size_t ql = strlen(queue);
		memcpy(p, queue, ql);
		p += ql;
		*p++ = ' ';
	}
	p = put_u64(p, sid);
	*p++ = '\r';
	*p++ = '\n';
	return (size_t)(p - out);
}

size_t sb__nats_unsub_write(char *out, uint64_t sid)
{
	char *p = out;
	memcpy(p, "UNSUB ", 6);
	p = put_u64(p + 6, sid);
	*p++ = '\r';
	*p++ = '\n';
	return (size_t)(p - out);
}

/* JSON, just enough to walk an object's top level. Each skip returns the
 * index past what it skipped, or n when the text ends first. */
static size_t skip_ws(const char *s, size_t n, size_t i)
{
	while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
		i++;
	return i;
}

static size_t skip_string(const char *s, size_t n, size_t i)
{
	for (i++; i < n; i++) {
		if (s[i] == '\\')
			i++;
		else if (s[i] == '"')
			return i + 1;
	}
	return (size_t)-1; /* not closed */
}

static size_t skip_value(const char *s, size_t n, size_t i)
{
	unsigned depth = 0;
	if (i >= n)
		return n;
	if (s[i] == '"')
		return skip_string(s, n, i);
	if (s[i] != '{' && s[i] != '[') {
		while (i < n && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ')
			i++;
		return i;
	}
	for (; i < n; i++) {
		if (s[i] == '"') {
			i = skip_string(s, n, i) - 1;
		} else if (s[i] == '{' || s[i] == '[') {
			depth++;
		} else if (s[i] == '}' || s[i] == ']') {
			if (--depth == 0)
				return i + 1;
		}
	}
	return (size_t)-1; /* not closed: no caller takes it for a value */
}

/* The value of top-level member @p key: its index, or n when absent. */
static size_t find_member(const char *s, size_t n, const char *key)
{
	size_t klen = strlen(key), i = skip_ws(s, n, 0);
	if (i >= n || s[i] != '{')
		return n;
	i++;
	while (i < n) {
		size_t k, kend;
		i = skip_ws(s, n, i);
		if (i >= n || s[i] != '"')
			return n;
		k = i + 1;
		kend = skip_string(s, n, i);
		if (kend >= n)
			return n;
		i = skip_ws(s, n, kend);
		if (i >= n || s[i] != ':')
			return n;
		i = skip_ws(s, n, i + 1);
		if (kend - 1 - k == klen && memcmp(s + k, key, klen) == 0)
			return i;
		i = skip_ws(s, n, skip_value(s, n, i));
		if (i >= n || s[i] != ',')
			return n;
		i++;
	}
	return n;
}

int sb__nats_json_u64(const char *s, size_t n, const char *key, uint64_t *v)
{
	size_t i = find_member(s, n, key), e = i;
	while (e < n && s[e] >= '0' && s[e] <= '9')
		e++;
	if (e == i || parse_u64(s + i, e - i, v) != 0)
		return 0;
	return 1;
}

int sb__nats_json_obj(const char *s, size_t n, const char *key, const char **obj, size_t *len)
{
	size_t i = find_member(s, n, key), e;
	if (i >= n || s[i] != '{')
		return 0;
	e = skip_value(s, n, i);
	if (e > n)
		return 0;
	*obj = s + i;
	*len = e - i;
	return 1;
}

int sb__nats_json_bool(const char *s, size_t n, const char *key, int *v)
{
	size_t i = find_member(s, n, key);
	if (n - i >= 4 && memcmp(s + i, "true", 4) == 0)
		*v = 1;
	else if (n - i >= 5 && memcmp(s + i, "false", 5) == 0)
		*v = 0;
	else
		return 0;
	return 1;
}

int sb__nats_json_str(const char *s, size_t n, const char *key, const char **v, size_t *len)
{
	size_t i = find_member(s, n, key), e;
	if (i >= n || s[i] != '"')
		return 0;
	e = skip_string(s, n, i);
	if (e > n || s[e - 1] != '"' || e - i < 2)
		return 0;
	*v = s + i + 1;
	*len = e - i - 2;
	return 1;
}
