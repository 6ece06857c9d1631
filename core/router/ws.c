/* The WebSocket server side of the edge: the upgrade's answer, the frame
 * parser, reassembly and our frames' headers.
 *
 * Our own rather than Debian's libwslay: wslay's frame layer pulls bytes
 * through a receive callback into a 4 KiB buffer of its own (a copy of
 * every payload byte before it unmasks) and its event layer adds a heap
 * message per fragment; here payloads are unmasked where the kernel put
 * them, so the router's receive buffers can go on carrying frames by
 * reference, as on TCP. docs/gateway.md has the measurement that decided
 * it (bench/micro/bench_ws.cc). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include <switchboard/error.h>
#include <switchboard/proto.h>

#include "router/ws.h"

enum state {
	ST_HEADER,  /* reading a frame header */
	ST_PAYLOAD, /* reading its payload */
	ST_CLOSED,  /* the client's close came: nothing more is read */
	ST_FAILED,  /* a rule was broken */
};

void sb__ws_init(struct sb__ws *ws, uint64_t max_message, int accept_text)
{
	memset(ws, 0, sizeof *ws);
	ws->max_message = max_message != 0 ? max_message : SB__WS_MESSAGE_MAX;
	ws->accept_text = accept_text;
}

void sb__ws_free(struct sb__ws *ws)
{
	free(ws->buf);
	ws->buf = NULL;
	ws->buf_len = ws->buf_cap = 0;
}

uint16_t sb__ws_close_code(const struct sb__ws *ws)
{
	return ws->close_code;
}

const char *sb__ws_why(const struct sb__ws *ws)
{
	return ws->why;
}

static enum sb__ws_kind fail(struct sb__ws *ws, uint16_t code, const char *why)
{
	ws->state = ST_FAILED;
	ws->close_code = code;
	snprintf(ws->why, sizeof ws->why, "%s", why);
	return SB__WS_ERROR;
}

/* ---- UTF-8, checked as it streams -------------------------------------- */

/* u[0]: continuation bytes still needed; u[1], u[2]: the range the next
 * one must fall in (which is how overlongs, surrogates and code points
 * past U+10FFFF are refused). @return 0, or -1 on a byte that cannot be */
static int utf8_step(uint8_t u[3], const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t c = p[i];
		if (u[0] == 0) {
			if (c < 0x80)
				continue;
			u[1] = 0x80, u[2] = 0xbf;
			if (c >= 0xc2 && c <= 0xdf)
				u[0] = 1;
			else if (c == 0xe0)
				u[0] = 2, u[1] = 0xa0;
			else if (c == 0xed)
				u[0] = 2, u[2] = 0x9f;
			else if (c >= 0xe1 && c <= 0xef)
				u[0] = 2;
			else if (c == 0xf0)
				u[0] = 3, u[1] = 0x90;
			else if (c >= 0xf1 && c <= 0xf3)
				u[0] = 3;
			else if (c == 0xf4)
				u[0] = 3, u[2] = 0x8f;
			else
				return -1;
		} else {
			if (c < u[1] || c > u[2])
				return -1;
			u[0]--;
			u[1] = 0x80, u[2] = 0xbf;
		}
	}
	return 0;
}

static int utf8_valid(const uint8_t *p, size_t n)
{
	uint8_t u[3] = {0, 0, 0};
	return utf8_step(u, p, n) == 0 && u[0] == 0;
}

/* ---- frames in ------------------------------------------------------------ */

/* XOR with the mask from payload offset @p pos on, 8 bytes a step. */
static void unmask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t pos)
{
	uint8_t k[8];
	uint64_t w;
	size_t i = 0;

	for (int j = 0; j < 8; j++)
		k[j] = mask[(pos + (uint64_t)j) & 3];
	memcpy(&w, k, 8);
	for (; i + 8 <= n; i += 8) {
		uint64_t v;
		memcpy(&v, p + i, 8);
		v ^= w;
		memcpy(p + i, &v, 8);
	}
	for (; i < n; i++)
		p[i] ^= k[i & 7];
}

/* 1 for the close codes a client may send (RFC 6455 7.4, IANA registry):
 * 1004-1006 and 1015 are never sent, 1016-2999 are unassigned. */
static int close_code_ok(uint16_t c)
{
	return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
}

/* The first two header bytes are in: check what they say. */
static enum sb__ws_kind check_start(struct sb__ws *ws)
{
	uint8_t b0 = ws->hdr[0], b1 = ws->hdr[1], op = b0 & 0x0f, len7 = b1 & 0x7f;

	if (b0 & 0x70)
		return fail(ws, SB__WS_PROTOCOL_ERR, "RSV bits set (no extension was agreed)");
	if (!(b1 & 0x80))
		return fail(ws, SB__WS_PROTOCOL_ERR, "a client's frame must be masked");
	if (op >= 0x8) {
		if (op > SB__WS_PONG)
			return fail(ws, SB__WS_PROTOCOL_ERR, "unknown opcode");
		if (!(b0 & 0x80))
			return fail(ws, SB__WS_PROTOCOL_ERR,
				    "a control frame must not be fragmented");
		if (len7 > SB__WS_CONTROL_MAX)
			return fail(ws, SB__WS_PROTOCOL_ERR, "a control frame over 125 bytes");
	} else if (op == SB__WS_CONT) {
		if (ws->msg == 0)
			return fail(ws, SB__WS_PROTOCOL_ERR,
				    "a continuation with no message begun");
	} else if (op == SB__WS_TEXT || op == SB__WS_BINARY) {
		if (ws->msg != 0)
			return fail(ws, SB__WS_PROTOCOL_ERR,
				    "a new message before the last one's final fragment");
		if (op == SB__WS_TEXT && !ws->accept_text)
			return fail(ws, SB__WS_UNSUPPORTED,
				    "text messages are not accepted: send binary");
	} else {
		return fail(ws, SB__WS_PROTOCOL_ERR, "unknown opcode");
	}
	return SB__WS_MORE;
}

/* The whole header is in: its length, the message bound, the mask. */
static enum sb__ws_kind check_header(struct sb__ws *ws)
{
	uint8_t op = ws->hdr[0] & 0x0f, len7 = ws->hdr[1] & 0x7f;
	uint64_t len = len7;
	const uint8_t *m = ws->hdr + 2;
	char why[64];

	if (len7 == 126) {
		len = (uint64_t)ws->hdr[2] << 8 | ws->hdr[3];
		m = ws->hdr + 4;
		if (len < 126)
			return fail(ws, SB__WS_PROTOCOL_ERR, "a length not in its shortest form");
	} else if (len7 == 127) {
		len = 0;
		for (int i = 0; i < 8; i++)
			len = len << 8 | ws->hdr[2 + i];
		m = ws->hdr + 10;
		if (len >> 63)
			return fail(ws, SB__WS_PROTOCOL_ERR, "a length with its top bit set");
		if (len <= 0xffff)
			return fail(ws, SB__WS_PROTOCOL_ERR, "a length not in its shortest form");
	}
	uint64_t so_far = op == SB__WS_CONT ? ws->msg_len : 0; /* a new message starts at 0 */
	if (op < 0x8 && len > ws->max_message - so_far) {
		snprintf(why, sizeof why, "a message over %llu bytes",
			 (unsigned long long)ws->max_message);
		return fail(ws, SB__WS_TOO_BIG, why);
	}
	memcpy(ws->mask, m, 4);
	ws->opcode = op;
	ws->fin = ws->hdr[0] >> 7;
	ws->left = len;
	ws->pos = 0;
	ws->ctl_len = 0;
	if (op == SB__WS_TEXT || op == SB__WS_BINARY) {
		ws->msg = op;
		ws->msg_first = 1;
		ws->msg_len = 0;
		memset(ws->utf8, 0, sizeof ws->utf8);
	}
	ws->state = ST_PAYLOAD;
	return SB__WS_MORE;
}

/* A control frame's payload is all in ws->ctl. */
static enum sb__ws_kind control(struct sb__ws *ws, struct sb__ws_event *ev)
{
	ws->state = ST_HEADER;
	ws->hlen = 0;
	ev->data = ws->ctl;
	ev->len = ws->ctl_len;
	if (ws->opcode == SB__WS_PING)
		return ev->kind = SB__WS_GOT_PING;
	if (ws->opcode == SB__WS_PONG)
		return ev->kind = SB__WS_GOT_PONG;
	if (ws->ctl_len == 1)
		return fail(ws, SB__WS_PROTOCOL_ERR, "a close frame with a 1-byte payload");
	ev->code = SB__WS_NO_STATUS;
	if (ws->ctl_len >= 2) {
		ev->code = (uint16_t)(ws->ctl[0] << 8 | ws->ctl[1]);
		if (!close_code_ok(ev->code))
			return fail(ws, SB__WS_PROTOCOL_ERR, "a close code a client may not send");
		if (!utf8_valid(ws->ctl + 2, ws->ctl_len - 2u))
			return fail(ws, SB__WS_BAD_DATA, "a close reason that is not UTF-8");
		ev->data = ws->ctl + 2;
		ev->len = ws->ctl_len - 2u;
	}
	ws->state = ST_CLOSED;
	return ev->kind = SB__WS_GOT_CLOSE;
}

/* Payload bytes of a data frame, unmasked where they lie. */
static enum sb__ws_kind data(struct sb__ws *ws, uint8_t *p, size_t len, size_t *used,
			     struct sb__ws_event *ev)
{
	size_t n = len < ws->left ? len : (size_t)ws->left;

	unmask(p, n, ws->mask, ws->pos);
	ws->pos += n;
	ws->left -= n;
	ws->msg_len += n;
	*used = n;
	if (ws->msg == SB__WS_TEXT && utf8_step(ws->utf8, p, n) != 0)
		return fail(ws, SB__WS_BAD_DATA, "a text message that is not UTF-8");
	ev->kind = SB__WS_DATA;
	ev->data = p;
	ev->len = n;
	ev->first = ws->msg_first;
	ev->fin = ws->left == 0 && ws->fin;
	ev->text = ws->msg == SB__WS_TEXT;
	ws->msg_first = 0;
	if (ws->left == 0) {
		ws->state = ST_HEADER;
		ws->hlen = 0;
		if (ws->fin) {
			if (ws->msg == SB__WS_TEXT && ws->utf8[0] != 0)
				return fail(ws, SB__WS_BAD_DATA,
					    "a text message that is not UTF-8");
			ws->msg = 0;
		}
	}
	return SB__WS_DATA;
}

static enum sb__ws_kind parse(struct sb__ws *ws, uint8_t *p, size_t len, size_t *used,
			      struct sb__ws_event *ev)
{
	size_t at = 0;

	*used = 0;
	if (ws->state == ST_FAILED)
		return SB__WS_ERROR;
	if (ws->state == ST_CLOSED) {
		*used = len; /* nothing after a close frame counts (RFC 6455 5.5.1) */
		return SB__WS_MORE;
	}
	while (at < len || (ws->state == ST_PAYLOAD && ws->left == 0)) {
		if (ws->state == ST_HEADER) {
			ws->hdr[ws->hlen++] = p[at++];
			if (ws->hlen == 2 && check_start(ws) == SB__WS_ERROR)
				break;
			if (ws->hlen < 2)
				continue;
			uint8_t len7 = ws->hdr[1] & 0x7f;
			uint8_t need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + 4;
			if (ws->hlen == need && check_header(ws) == SB__WS_ERROR)
				break;
			continue;
		}
		/* ST_PAYLOAD */
		if (ws->opcode >= 0x8) {
			size_t n = len - at < ws->left ? len - at : (size_t)ws->left;
			memcpy(ws->ctl + ws->ctl_len, p + at, n);
			unmask(ws->ctl + ws->ctl_len, n, ws->mask, ws->pos);
			ws->ctl_len += (uint8_t)n;
			ws->pos += n;
			ws->left -= n;
			at += n;
			if (ws->left == 0) {
				*used = at;
				return control(ws, ev);
			}
			continue;
		}
		size_t n;
		enum sb__ws_kind k = data(ws, p + at, len - at, &n, ev);
		*used = at + n;
		return k;
	}
	*used = at;
	return ws->state == ST_FAILED ? SB__WS_ERROR : SB__WS_MORE;
}

enum sb__ws_kind sb__ws_parse(struct sb__ws *ws, uint8_t *p, size_t len, size_t *used,
			      struct sb__ws_event *ev)
{
	memset(ev, 0, sizeof *ev);
	enum sb__ws_kind k = parse(ws, p, len, used, ev);
	if (k == SB__WS_ERROR) /* no half-filled event beside a refusal */
		memset(ev, 0, sizeof *ev);
	ev->kind = k;
	return k;
}

/* Room for @p n more bytes of the message being joined. */
static int grow(struct sb__ws *ws, size_t n)
{
	if (ws->buf_cap - ws->buf_len >= n)
		return 0;
	size_t cap = ws->buf_cap ? ws->buf_cap : 4096;
	while (cap - ws->buf_len < n)
		cap *= 2;
	if (cap > ws->max_message)
		cap = (size_t)ws->max_message;
	uint8_t *b = realloc(ws->buf, cap);
	if (b == NULL)
		return -1;
	ws->buf = b;
	ws->buf_cap = cap;
	return 0;
}

enum sb__ws_kind sb__ws_next(struct sb__ws *ws, uint8_t *p, size_t len, size_t *used,
			     struct sb__ws_event *ev)
{
	size_t at = 0, n;

	for (;;) {
		enum sb__ws_kind k = sb__ws_parse(ws, p + at, len - at, &n, ev);
		at += n;
		*used = at;
		if (k != SB__WS_DATA)
			return k;
		if (ev->first && ev->fin) {
			ev->kind = SB__WS_MESSAGE;
			return SB__WS_MESSAGE;
		}
		if (ev->first) {
			/* A big message's buffer is not kept for the next: an idle
			 * connection holds at most 64 KiB here. */
			if (ws->buf_cap > 65536)
				sb__ws_free(ws);
			ws->buf_len = 0;
		}
		if (grow(ws, ev->len) != 0)
			return fail(ws, SB__WS_INTERNAL, "out of memory");
		if (ev->len > 0)
			memcpy(ws->buf + ws->buf_len, ev->data, ev->len);
		ws->buf_len += ev->len;
		if (ev->fin) {
			ev->kind = SB__WS_MESSAGE;
			ev->data = ws->buf;
			ev->len = ws->buf_len;
			ev->first = 1;
			return SB__WS_MESSAGE;
		}
	}
}

long sb__ws_whole_frames(const uint8_t *msg, size_t len, uint32_t max_body)
{
	long frames = 0;

	if (len == 0)
		return SB_EBADFRAME;
	for (size_t at = 0; at < len; frames++) {
		if (len - at < SB_PREFIX_LEN)
			return SB_EBADFRAME;
		uint32_t body = (uint32_t)msg[at] << 24 | (uint32_t)msg[at + 1] << 16 |
				(uint32_t)msg[at + 2] << 8 | msg[at + 3];
		if (body < SB_BODY_MIN || body > max_body || len - at - SB_PREFIX_LEN < body)
			return SB_EBADFRAME;
		at += SB_PREFIX_LEN + body;
	}
	return frames;
}

/* ---- frames out ------------------------------------------------------------- */

size_t sb__ws_header(uint8_t out[SB__WS_HEADER_MAX], enum sb__ws_opcode op, int fin, uint64_t len)
{
	out[0] = (uint8_t)((fin ? 0x80 : 0) | op);
	if (len < 126) {
		out[1] = (uint8_t)len;
		return 2;
	}
	if (len <= 0xffff) {
		out[1] = 126;
		out[2] = (uint8_t)(len >> 8);
		out[3] = (uint8_t)len;
		return 4;
	}
	out[1] = 127;
	for (int i = 0; i < 8; i++)
		out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
	return 10;
}

size_t sb__ws_close_frame(uint8_t out[SB__WS_CLOSE_FRAME], uint16_t code, const char *reason)
{
	size_t n = reason != NULL ? strlen(reason) : 0;

	if (n > SB__WS_CONTROL_MAX - 2) {
		n = SB__WS_CONTROL_MAX - 2;
		while (n > 0 && ((unsigned char)reason[n] & 0xc0) == 0x80)
			n--; /* not inside a character */
	}
	size_t h = sb__ws_header(out, SB__WS_CLOSE, 1, 2 + n);
	out[h] = (uint8_t)(code >> 8);
	out[h + 1] = (uint8_t)code;
	if (n > 0)
		memcpy(out + h + 2, reason, n);
	return h + 2 + n;
}

/* ---- the upgrade -------------------------------------------------------------- */

int sb__ws_accept_key(const char *key, size_t len, char out[29])
{
	static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
	unsigned char in[128], md[20];
	unsigned int mdlen = 0;

	if (len > sizeof in - (sizeof guid - 1))
		return SB_EINVAL;
	memcpy(in, key, len);
	memcpy(in + len, guid, sizeof guid - 1);
	if (EVP_Digest(in, len + sizeof guid - 1, md, &mdlen, EVP_sha1(), NULL) != 1 || mdlen != 20)
		return SB_EINTERNAL;
	EVP_EncodeBlock((unsigned char *)out, md, 20); /* 28 characters and a NUL */
	return 0;
}

/* A key is base64 of 16 bytes: 22 characters of the alphabet, then "==". */
static int key_ok(struct sb__http_str k)
{
	unsigned char raw[24];

	if (k.len != 24 || k.p[22] != '=' || k.p[23] != '=')
		return 0;
	for (int i = 0; i < 22; i++) {
		char c = k.p[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '+' || c == '/'))
			return 0;
	}
	return EVP_DecodeBlock(raw, (const unsigned char *)k.p, 24) == 18;
}

int sb__ws_handshake(const struct sb__http_req *r, struct sb__http_out *o, char *why, size_t cap)
{
	char accept[29];

	if (r->method != SB__HTTP_M_GET || r->minor != 1) {
		snprintf(why, cap, "a WebSocket upgrade is a GET over HTTP/1.1");
		return 400;
	}
	if (!r->upgrade_websocket) {
		snprintf(why, cap,
			 "not a WebSocket upgrade (Connection: Upgrade, Upgrade: websocket)");
		return 400;
	}
	if (r->ws_version.len != 2 || memcmp(r->ws_version.p, "13", 2) != 0) {
		snprintf(why, cap, "Sec-WebSocket-Version must be 13");
		return 426;
	}
	if (!key_ok(r->ws_key)) {
		snprintf(why, cap, "Sec-WebSocket-Key is not base64 of 16 bytes");
		return 400;
	}
	int ours = sb__http_has(r->ws_protocol, r->n_ws_protocol, SB__WS_PROTOCOL, 0);
	if (r->n_ws_protocol > 0 && !ours) {
		snprintf(why, cap, "subprotocol %s was not offered", SB__WS_PROTOCOL);
		return 400;
	}
	if (sb__ws_accept_key(r->ws_key.p, r->ws_key.len, accept) != 0) {
		snprintf(why, cap, "SHA-1 failed");
		return 500;
	}
	sb__http_status_line(o, 101);
	sb__http_field(o, "Upgrade", "websocket", 9);
	sb__http_field(o, "Connection", "Upgrade", 7);
	sb__http_field(o, "Sec-WebSocket-Accept", accept, 28);
	if (ours)
		sb__http_field(o, "Sec-WebSocket-Protocol", SB__WS_PROTOCOL,
			       sizeof SB__WS_PROTOCOL - 1);
	sb__http_end_head(o);
	return 101;
}
