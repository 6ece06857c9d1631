/* The edge's WebSocket framer: the upgrade's answer (RFC 6455's own example
 * key), binary messages unmasked in place and reassembled from fragments
 * in any pieces, every malformed frame class closed with its code (bad
 * mask, RSV bits, opcodes, oversize and fragmented control frames, bad
 * UTF-8 close reasons, fragment misuse, lengths not in shortest form,
 * messages over the bound, text where binary is spoken), the client's
 * close, our frames' headers, and Switchboard frames whole in a message. */
#include "support/testlib.h"

#include <switchboard/error.h>
#include <switchboard/proto.h>

#include "router/conn_ws.h"
#include "router/ws.h"

static const uint8_t key4[4] = {0x37, 0xfa, 0x21, 0x3d};

/* A client frame: @p b0 is FIN, RSV and opcode as sent; masked with key4
 * unless @p unmasked; @p wide forces the 16-bit (2) or 64-bit (8) length
 * form. @return its length */
static size_t frame(uint8_t *out, uint8_t b0, const void *payload, size_t len, int unmasked,
		    int wide)
{
	size_t h = 0;
	out[h++] = b0;
	uint8_t m = unmasked ? 0 : 0x80;
	if (len < 126 && wide == 0) {
		out[h++] = m | (uint8_t)len;
	} else if (len <= 0xffff && wide != 8) {
		out[h++] = m | 126;
		out[h++] = (uint8_t)(len >> 8);
		out[h++] = (uint8_t)len;
	} else {
		out[h++] = m | 127;
		for (int i = 0; i < 8; i++)
			out[h++] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
	}
	if (!unmasked) {
		memcpy(out + h, key4, 4);
		h += 4;
	}
	for (size_t i = 0; i < len; i++)
		out[h + i] = ((const uint8_t *)payload)[i] ^ (unmasked ? 0 : key4[i & 3]);
	return h + len;
}

/* What a connection's bytes came to, through sb__ws_next(). */
struct got {
	int messages, pings, pongs, closes, errors;
	uint8_t last[80000]; /* the last message */
	size_t last_len;
	int last_text;
	size_t total; /* bytes of every message */
	uint8_t ping[125];
	size_t ping_len;
	uint16_t close_code, error_code;
	char reason[128], why[96];
};

/* Feed a copy of @p in, @p piece bytes at a time (0: at once). */
static void run(struct sb__ws *ws, const uint8_t *in, size_t len, size_t piece, struct got *g)
{
	uint8_t *copy = malloc(len + 1);
	memcpy(copy, in, len);
	memset(g, 0, sizeof *g);
	for (size_t off = 0; off < len;) {
		size_t n = piece == 0 || len - off < piece ? len - off : piece, at = 0, used;
		struct sb__ws_event ev;
		enum sb__ws_kind k;
		do {
			k = sb__ws_next(ws, copy + off + at, n - at, &used, &ev);
			at += used;
			if (k == SB__WS_MESSAGE) {
				g->messages++;
				memcpy(g->last, ev.data, ev.len);
				g->last_len = ev.len;
				g->last_text = ev.text;
				g->total += ev.len;
			} else if (k == SB__WS_GOT_PING) {
				g->pings++;
				memcpy(g->ping, ev.data, ev.len);
				g->ping_len = ev.len;
			} else if (k == SB__WS_GOT_PONG) {
				g->pongs++;
			} else if (k == SB__WS_GOT_CLOSE) {
				g->closes++;
				g->close_code = ev.code;
				snprintf(g->reason, sizeof g->reason, "%.*s", (int)ev.len, ev.data);
			} else if (k == SB__WS_ERROR) {
				g->errors++;
				g->error_code = sb__ws_close_code(ws);
				snprintf(g->why, sizeof g->why, "%s", sb__ws_why(ws));
			}
		} while (k != SB__WS_MORE && k != SB__WS_ERROR);
		off += n;
		if (k == SB__WS_ERROR)
			break;
	}
	free(copy);
}

static void test_the_upgrade_is_answered_as_rfc6455_says(void)
{
	char accept[29], buf[512], why[128];
	struct sb__http_out o;
	struct sb__http h;
	size_t used;
	struct sb__http_str body;

	/* RFC 6455 1.3's example. */
	CHECK_INT(sb__ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, accept), 0);
	CHECK_STR(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");

	const char up[] =
		"GET /v1/ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
		"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, switchboard.v1\r\n"
		"\r\n";
	CHECK_INT(sb__http_init(&h, NULL), 0);
	CHECK_INT(sb__http_parse(&h, (const uint8_t *)up, sizeof up - 1, &used, &body),
		  SB__HTTP_HEAD);
	sb__http_out_init(&o, buf, sizeof buf);
	CHECK_INT(sb__ws_handshake(sb__http_request(&h), &o, why, sizeof why), 101);
	buf[o.len] = 0;
	CHECK_STR(buf,
		  "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
		  "Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
		  "Sec-WebSocket-Protocol: switchboard.v1\r\n\r\n");
	sb__http_free(&h);

	/* No subprotocol offered: none in the answer. */
	const char plain[] =
		"GET /v1/ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
		"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		"Sec-WebSocket-Version: 13\r\n\r\n";
	CHECK_INT(sb__http_init(&h, NULL), 0);
	CHECK_INT(sb__http_parse(&h, (const uint8_t *)plain, sizeof plain - 1, &used, &body),
		  SB__HTTP_HEAD);
	sb__http_out_init(&o, buf, sizeof buf);
	CHECK_INT(sb__ws_handshake(sb__http_request(&h), &o, why, sizeof why), 101);
	buf[o.len] = 0;
	CHECK(strstr(buf, "Sec-WebSocket-Protocol") == NULL);
	sb__http_free(&h);
}

/* @p req (a whole head) is refused with @p status and @p why. */
static void upgrade_refused(const char *req, int status, const char *why)
{
	char buf[512], got[128] = "";
	struct sb__http_out o;
	struct sb__http h;
	size_t used;
	struct sb__http_str body;

	CHECK_INT(sb__http_init(&h, NULL), 0);
	CHECK_INT(sb__http_parse(&h, (const uint8_t *)req, strlen(req), &used, &body),
		  SB__HTTP_HEAD);
	sb__http_out_init(&o, buf, sizeof buf);
	CHECK_INT(sb__ws_handshake(sb__http_request(&h), &o, got, sizeof got), status);
	CHECK_STR(got, why);
	CHECK_INT(o.len, 0);
	sb__http_free(&h);
}

static void test_a_request_that_is_no_upgrade_is_refused(void)
{
	upgrade_refused("GET /v1/ws HTTP/1.1\r\nHost: a\r\n\r\n", 400,
			"not a WebSocket upgrade (Connection: Upgrade, Upgrade: websocket)");
	upgrade_refused("POST /v1/ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
			"Connection: Upgrade\r\n\r\n",
			400, "a WebSocket upgrade is a GET over HTTP/1.1");
	upgrade_refused("GET /v1/ws HTTP/1.0\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
			400, "a WebSocket upgrade is a GET over HTTP/1.1");
	upgrade_refused("GET /v1/ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
			"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
			"Sec-WebSocket-Version: 8\r\n\r\n",
			426, "Sec-WebSocket-Version must be 13");
	upgrade_refused("GET /v1/ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
			"Connection: Upgrade\r\nSec-WebSocket-Key: c2hvcnQ=\r\n"
			"Sec-WebSocket-Version: 13\r\n\r\n",
			400, "Sec-WebSocket-Key is not base64 of 16 bytes");
	upgrade_refused("GET /v1/ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
			"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25j!Q==\r\n"
			"Sec-WebSocket-Version: 13\r\n\r\n",
			400, "Sec-WebSocket-Key is not base64 of 16 bytes");
	upgrade_refused("GET /v1/ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
			"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat\r\n\r\n",
			400, "subprotocol switchboard.v1 was not offered");
}

static void test_binary_messages_arrive_whole_from_any_pieces(void)
{
	static uint8_t in[200000], big[70000];
	uint8_t small[64], mid[4096], ping[] = "are you there";
	size_t n = 0;
	struct sb__ws ws;
	struct got g;

	for (size_t i = 0; i < sizeof big; i++)
		big[i] = (uint8_t)(i * 7 + 3);
	memcpy(small, big, sizeof small);
	memcpy(mid, big + 100, sizeof mid);
	n += frame(in + n, 0x82, small, sizeof small, 0, 0); /* 7-bit length */
	n += frame(in + n, 0x82, mid, sizeof mid, 0, 0);     /* 16-bit */
	n += frame(in + n, 0x82, big, sizeof big, 0, 0);     /* 64-bit */
	/* the same 70,000 bytes in three fragments, a ping between two */
	n += frame(in + n, 0x02, big, 30000, 0, 0);
	n += frame(in + n, 0x89, ping, sizeof ping - 1, 0, 0);
	n += frame(in + n, 0x00, big + 30000, 0, 0, 0); /* an empty fragment is allowed */
	n += frame(in + n, 0x80, big + 30000, 40000, 0, 0);
	n += frame(in + n, 0x8a, NULL, 0, 0, 0); /* an unsolicited pong */
	n += frame(in + n, 0x82, NULL, 0, 0, 0); /* an empty message */

	const size_t pieces[] = {0, 1, 3, 7, 100, 4095, 65536};
	for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++) {
		sb__ws_init(&ws, 0, 0);
		run(&ws, in, n, pieces[i], &g);
		CHECK_INT(g.errors, 0);
		CHECK_INT(g.messages, 5);
		CHECK_INT(g.total, 64 + 4096 + 70000 + 70000);
		CHECK_INT(g.pings, 1);
		CHECK_INT(g.ping_len, sizeof ping - 1);
		CHECK(memcmp(g.ping, ping, sizeof ping - 1) == 0);
		CHECK_INT(g.pongs, 1);
		CHECK_INT(g.last_len, 0);
		sb__ws_free(&ws);
	}
	/* Each message byte for byte, unmasked in the input itself. */
	sb__ws_init(&ws, 0, 0);
	uint8_t buf[100];
	size_t len = frame(buf, 0x82, small, sizeof small, 0, 0), used;
	struct sb__ws_event ev;
	CHECK_INT(sb__ws_next(&ws, buf, len, &used, &ev), SB__WS_MESSAGE);
	CHECK_INT(used, len);
	CHECK(ev.data == buf + 6); /* by reference: no copy */
	CHECK_INT(ev.len, 64);
	CHECK(memcmp(ev.data, small, 64) == 0);
	sb__ws_free(&ws);
}

/* @p in (@p len bytes) is closed with @p code and @p why, whole or a byte
 * at a time; the framer then stays failed. */
static void closed(const uint8_t *in, size_t len, int text, uint64_t max, uint16_t code,
		   const char *why)
{
	struct sb__ws ws;
	struct got g;

	for (size_t piece = 0; piece <= 1; piece++) {
		sb__ws_init(&ws, max, text);
		run(&ws, in, len, piece, &g);
		if (g.errors != 1 || strcmp(g.why, why) != 0)
			fprintf(stderr, "expected: %s\n", why);
		CHECK_INT(g.errors, 1);
		CHECK_INT(g.error_code, code);
		CHECK_STR(g.why, why);
		uint8_t more[8] = {0x82, 0x80, 1, 2, 3, 4};
		size_t used;
		struct sb__ws_event ev;
		CHECK_INT(sb__ws_next(&ws, more, 6, &used, &ev), SB__WS_ERROR);
		CHECK_INT(used, 0);
		sb__ws_free(&ws);
	}
}

static void test_malformed_frames_close_with_their_code(void)
{
	uint8_t in[70100], p[200];
	size_t n;

	memset(p, 'x', sizeof p);
	n = frame(in, 0x82, p, 10, 1, 0);
	closed(in, n, 0, 0, 1002, "a client's frame must be masked");
	n = frame(in, 0xc2, p, 10, 0, 0);
	closed(in, n, 0, 0, 1002, "RSV bits set (no extension was agreed)");
	n = frame(in, 0x92, p, 10, 0, 0);
	closed(in, n, 0, 0, 1002, "RSV bits set (no extension was agreed)");
	n = frame(in, 0x83, p, 10, 0, 0);
	closed(in, n, 0, 0, 1002, "unknown opcode");
	n = frame(in, 0x8b, p, 10, 0, 0);
	closed(in, n, 0, 0, 1002, "unknown opcode");
	n = frame(in, 0x89, p, 126, 0, 0);
	closed(in, n, 0, 0, 1002, "a control frame over 125 bytes");
	n = frame(in, 0x88, p, 126, 0, 0);
	closed(in, n, 0, 0, 1002, "a control frame over 125 bytes");
	n = frame(in, 0x09, p, 5, 0, 0);
	closed(in, n, 0, 0, 1002, "a control frame must not be fragmented");
	/* fragment misuse */
	n = frame(in, 0x80, p, 5, 0, 0);
	closed(in, n, 0, 0, 1002, "a continuation with no message begun");
	n = frame(in, 0x02, p, 5, 0, 0);
	n += frame(in + n, 0x82, p, 5, 0, 0);
	closed(in, n, 0, 0, 1002, "a new message before the last one's final fragment");
	n = frame(in, 0x82, p, 5, 0, 0);
	n += frame(in + n, 0x00, p, 5, 0, 0);
	closed(in, n, 0, 0, 1002, "a continuation with no message begun");
	/* lengths */
	n = frame(in, 0x82, p, 100, 0, 2);
	closed(in, n, 0, 0, 1002, "a length not in its shortest form");
	n = frame(in, 0x82, p, 100, 0, 8);
	closed(in, n, 0, 0, 1002, "a length not in its shortest form");
	n = frame(in, 0x82, p, 0, 0, 8);
	in[2] = 0x80; /* 2^63 */
	closed(in, n, 0, 0, 1002, "a length with its top bit set");
	n = frame(in, 0x82, p, 101, 0, 0);
	closed(in, n, 0, 100, 1009, "a message over 100 bytes");
	n = frame(in, 0x02, p, 60, 0, 0);
	n += frame(in + n, 0x80, p, 41, 0, 0);
	closed(in, n, 0, 100, 1009, "a message over 100 bytes");
	/* text, where binary is spoken; and bad UTF-8 where text is accepted */
	n = frame(in, 0x81, "hi", 2, 0, 0);
	closed(in, n, 0, 0, 1003, "text messages are not accepted: send binary");
	n = frame(in, 0x81, "\xc3\x28", 2, 0, 0);
	closed(in, n, 1, 0, 1007, "a text message that is not UTF-8");
	n = frame(in, 0x01, "ok \xe2\x82", 5, 0, 0); /* a character cut at the end */
	n += frame(in + n, 0x80, "", 0, 0, 0);
	closed(in, n, 1, 0, 1007, "a text message that is not UTF-8");
	n = frame(in, 0x81, "\xed\xa0\x80", 3, 0, 0); /* a surrogate */
	closed(in, n, 1, 0, 1007, "a text message that is not UTF-8");
	/* closes a client may not send */
	n = frame(in, 0x88, "\x03", 1, 0, 0);
	closed(in, n, 0, 0, 1002, "a close frame with a 1-byte payload");
	const char *codes[] = {"\x03\xed", "\x03\xe7", "\x03\xec", "\x03\xee", "\x03\xf7",
			       "\x0b\xb7", "\x13\x88", "\x00\x00"}; /* 1005 999 1004 1006 1015
								      2999 5000 0 */
	for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
		n = frame(in, 0x88, codes[i], 2, 0, 0);
		closed(in, n, 0, 0, 1002, "a close code a client may not send");
	}
	n = frame(in, 0x88, "\x03\xe8\xff\xfe", 4, 0, 0);
	closed(in, n, 0, 0, 1007, "a close reason that is not UTF-8");
	n = frame(in, 0x88, "\x03\xe8\xc0\xaf", 4, 0, 0); /* an overlong '/' */
	closed(in, n, 0, 0, 1007, "a close reason that is not UTF-8");
}

static void test_a_client_close_is_read_then_nothing_more(void)
{
	uint8_t in[300];
	size_t n;
	struct sb__ws ws;
	struct got g;

	n = frame(in, 0x88,
		  "\x03\xe9"
		  "bye, caf\xc3\xa9",
		  12, 0, 0);
	n += frame(in + n, 0x82, "after", 5, 0, 0);
	in[n++] = 0xff; /* garbage after the close is not read */
	sb__ws_init(&ws, 0, 0);
	run(&ws, in, n, 0, &g);
	CHECK_INT(g.closes, 1);
	CHECK_INT(g.close_code, 1001);
	CHECK_STR(g.reason, "bye, café");
	CHECK_INT(g.messages, 0);
	CHECK_INT(g.errors, 0);
	sb__ws_free(&ws);

	n = frame(in, 0x88, NULL, 0, 0, 0);
	sb__ws_init(&ws, 0, 0);
	run(&ws, in, n, 1, &g);
	CHECK_INT(g.closes, 1);
	CHECK_INT(g.close_code, 1005); /* none sent */
	sb__ws_free(&ws);

	/* 4000-4999 are the application's, 3000-3999 registered ones. */
	n = frame(in, 0x88, "\x0f\xa0", 2, 0, 0);
	sb__ws_init(&ws, 0, 0);
	run(&ws, in, n, 0, &g);
	CHECK_INT(g.close_code, 4000);
	sb__ws_free(&ws);
}

static void test_text_is_checked_across_fragments_when_accepted(void)
{
	uint8_t in[300];
	size_t n;
	struct sb__ws ws;
	struct got g;

	/* "é€😀" with each character cut across fragments. */
	n = frame(in, 0x01, "\xc3", 1, 0, 0);
	n += frame(in + n, 0x00, "\xa9\xe2\x82", 3, 0, 0);
	n += frame(in + n, 0x89, "p", 1, 0, 0);
	n += frame(in + n, 0x00, "\xac\xf0\x9f", 3, 0, 0);
	n += frame(in + n, 0x80, "\x98\x80", 2, 0, 0);
	for (size_t piece = 0; piece <= 2; piece++) {
		sb__ws_init(&ws, 0, 1);
		run(&ws, in, n, piece, &g);
		CHECK_INT(g.errors, 0);
		CHECK_INT(g.messages, 1);
		CHECK(g.last_text);
		CHECK_INT(g.last_len, 9);
		CHECK(memcmp(g.last, "é€😀", 9) == 0);
		CHECK_INT(g.pings, 1);
		sb__ws_free(&ws);
	}
}

static void test_our_frames_go_out_unmasked(void)
{
	uint8_t h[SB__WS_HEADER_MAX], c[SB__WS_CLOSE_FRAME];
	char reason[200];

	CHECK_INT(sb__ws_header(h, SB__WS_BINARY, 1, 0), 2);
	CHECK(h[0] == 0x82 && h[1] == 0);
	CHECK_INT(sb__ws_header(h, SB__WS_BINARY, 1, 125), 2);
	CHECK(h[1] == 125);
	CHECK_INT(sb__ws_header(h, SB__WS_BINARY, 0, 126), 4);
	CHECK(h[0] == 0x02 && h[1] == 126 && h[2] == 0 && h[3] == 126);
	CHECK_INT(sb__ws_header(h, SB__WS_CONT, 1, 65535), 4);
	CHECK(h[0] == 0x80 && h[2] == 0xff && h[3] == 0xff);
	CHECK_INT(sb__ws_header(h, SB__WS_BINARY, 1, 65536), 10);
	CHECK(h[1] == 127 && h[7] == 1 && h[8] == 0 && h[9] == 0);
	CHECK_INT(sb__ws_header(h, SB__WS_PONG, 1, 3), 2);
	CHECK(h[0] == 0x8a);

	size_t n = sb__ws_close_frame(c, 1002, "a client's frame must be masked");
	CHECK_INT(n, 2 + 2 + 31);
	CHECK(c[0] == 0x88 && c[1] == 33 && c[2] == 0x03 && c[3] == 0xea);
	CHECK(memcmp(c + 4, "a client's frame must be masked", 31) == 0);
	/* A long reason is cut to 123 bytes, never inside a character. */
	memset(reason, 0, sizeof reason);
	memset(reason, 'a', 122);
	strcat(reason, "é and more");
	n = sb__ws_close_frame(c, 1000, reason);
	CHECK_INT(n, 2 + 2 + 122);
	CHECK_INT(c[1], 124);
	CHECK_INT(sb__ws_close_frame(c, 1000, NULL), 4);
}

static void test_a_message_holds_whole_switchboard_frames(void)
{
	uint8_t msg[256];
	struct sb_msg m = {.kind = SB_PING, .id = 7};
	long a = sb_encode(&m, msg, sizeof msg);
	CHECK(a > 0);
	long b = sb_encode(&m, msg + a, sizeof msg - (size_t)a);
	CHECK(b > 0);

	CHECK_INT(sb__ws_whole_frames(msg, (size_t)a, SB_FRAME_MAX_DEFAULT), 1);
	CHECK_INT(sb__ws_whole_frames(msg, (size_t)(a + b), SB_FRAME_MAX_DEFAULT), 2);
	/* A frame split across messages: its first part, then its rest. */
	CHECK_INT(sb__ws_whole_frames(msg, (size_t)(a + b - 1), SB_FRAME_MAX_DEFAULT),
		  SB_EBADFRAME);
	CHECK_INT(sb__ws_whole_frames(msg + 2, (size_t)(a - 2), SB_FRAME_MAX_DEFAULT),
		  SB_EBADFRAME);
	CHECK_INT(sb__ws_whole_frames(msg, 3, SB_FRAME_MAX_DEFAULT), SB_EBADFRAME);
	CHECK_INT(sb__ws_whole_frames(msg, 0, SB_FRAME_MAX_DEFAULT), SB_EBADFRAME);
	CHECK_INT(sb__ws_whole_frames(msg, (size_t)a, (uint32_t)a - 5), SB_EBADFRAME);
	uint8_t runt[8] = {0, 0, 0, 4, 1, 2, 3, 4};
	CHECK_INT(sb__ws_whole_frames(runt, 8, SB_FRAME_MAX_DEFAULT), SB_EBADFRAME);
}

static int origin(const char *list, const char *o)
{
	return sb__ws_origin_ok(list, o, strlen(o));
}

static void test_only_allowed_origins_may_upgrade(void)
{
	const char *list = "https://app.example.com, https://*.example.org,http://localhost:*";

	CHECK(origin(NULL, "https://anything.at.all"));
	CHECK(origin(list, "https://app.example.com"));
	CHECK(origin(list, "HTTPS://APP.EXAMPLE.COM")); /* no case */
	CHECK(!origin(list, "https://app.example.com.evil.net"));
	CHECK(!origin(list, "http://app.example.com"));
	CHECK(origin(list, "https://shop.example.org"));
	CHECK(origin(list, "https://a.b.example.org"));
	CHECK(!origin(list, "https://example.org")); /* the star stands for something */
	CHECK(!origin(list, "https://evil-example.org.net"));
	CHECK(origin(list, "http://localhost:3000"));
	CHECK(!origin(list, "http://localhost"));
	CHECK(!origin(list, "null")); /* a sandboxed page or a file: */
	CHECK(!origin("", "https://app.example.com"));
	CHECK(origin("*", "null"));
	/* Many stars on a long origin: no blow-up, the right answer. */
	char lng[4096];
	memset(lng, 'a', sizeof lng - 1);
	lng[sizeof lng - 1] = '\0';
	CHECK(!origin("*a*a*a*a*a*a*a*a*a*b", lng));
	CHECK(origin("*a*a*a*a*a*a*a*a*a*a", lng));
}

int main(void)
{
	RUN(test_the_upgrade_is_answered_as_rfc6455_says);
	RUN(test_a_request_that_is_no_upgrade_is_refused);
	RUN(test_binary_messages_arrive_whole_from_any_pieces);
	RUN(test_malformed_frames_close_with_their_code);
	RUN(test_a_client_close_is_read_then_nothing_more);
	RUN(test_text_is_checked_across_fragments_when_accepted);
	RUN(test_our_frames_go_out_unmasked);
	RUN(test_a_message_holds_whole_switchboard_frames);
	RUN(test_only_allowed_origins_may_upgrade);
	return TEST_EXIT();
}
