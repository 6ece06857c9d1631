/* libFuzzer target for the edge's WebSocket framer: the first byte picks a
 * piece size, whether text is accepted, and the message bound (64 bytes or
 * 64 KiB); the rest is what a client sends after the upgrade. The input
 * goes through sb__ws_next() once whole and once in pieces (each piece a
 * heap block of its own size), and the target aborts if the two runs see
 * different messages, controls or verdicts, if a message is over the bound
 * or a text message is not UTF-8, if a close code or a refusal's code is
 * not one the framer documents, if a refusal's close frame cannot be
 * written, or if a failed framer takes bytes again. */
#include <stdlib.h>
#include <string.h>

#include "router/ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct trace {
	uint64_t hash; /* FNV-1a over every event and its bytes */
	int events;
	enum sb__ws_kind last;
};

static void mix(struct trace *t, const void *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		t->hash = (t->hash ^ ((const uint8_t *)p)[i]) * 0x100000001b3ull;
}

static int utf8_ok(const uint8_t *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		uint32_t cp, min;
		size_t len;
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		if ((s[i] & 0xe0) == 0xc0)
			len = 2, cp = s[i] & 0x1f, min = 0x80;
		else if ((s[i] & 0xf0) == 0xe0)
			len = 3, cp = s[i] & 0x0f, min = 0x800;
		else if ((s[i] & 0xf8) == 0xf0)
			len = 4, cp = s[i] & 0x07, min = 0x10000;
		else
			return 0;
		if (n - i < len)
			return 0;
		for (size_t j = 1; j < len; j++) {
			if ((s[i + j] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (s[i + j] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += len;
	}
	return 1;
}

static void check_event(const struct sb__ws *ws, const struct sb__ws_event *ev, uint64_t max)
{
	uint8_t close[SB__WS_CLOSE_FRAME];

	switch (ev->kind) {
	case SB__WS_MESSAGE:
		if (ev->len > max || (ev->text && !utf8_ok(ev->data, ev->len)))
			abort();
		break;
	case SB__WS_GOT_PING:
	case SB__WS_GOT_PONG:
		if (ev->len > SB__WS_CONTROL_MAX)
			abort();
		break;
	case SB__WS_GOT_CLOSE:
		if (ev->code != 1005 && (ev->code < 1000 || ev->code > 4999 || ev->code == 1004 ||
					 ev->code == 1006 || ev->code == 1015))
			abort();
		if (!utf8_ok(ev->data, ev->len) || ev->len > SB__WS_CONTROL_MAX - 2)
			abort();
		break;
	case SB__WS_ERROR: {
		uint16_t c = sb__ws_close_code(ws);
		if ((c != 1002 && c != 1003 && c != 1007 && c != 1009 && c != 1011) ||
		    sb__ws_why(ws)[0] == 0)
			abort();
		size_t n = sb__ws_close_frame(close, c, sb__ws_why(ws));
		if (n < 4 || n > sizeof close)
			abort();
		break;
	}
	default:
		abort(); /* DATA never comes out of sb__ws_next() */
	}
}

static void run(const uint8_t *in, size_t size, size_t piece, int text, uint64_t max,
		struct trace *t)
{
	struct sb__ws ws;

	sb__ws_init(&ws, max, text);
	memset(t, 0, sizeof *t);
	t->hash = 0xcbf29ce484222325ull;
	for (size_t off = 0; off < size;) {
		size_t n = piece == 0 || size - off < piece ? size - off : piece, at = 0, used;
		uint8_t *p = malloc(n);
		if (p == NULL)
			abort();
		memcpy(p, in + off, n);
		struct sb__ws_event ev;
		enum sb__ws_kind k;
		do {
			k = sb__ws_next(&ws, p + at, n - at, &used, &ev);
			if (used > n - at)
				abort();
			at += used;
			if (k == SB__WS_MORE)
				break;
			check_event(&ws, &ev, max);
			t->events++;
			t->last = k;
			mix(t, &k, sizeof k);
			mix(t, &ev.len, sizeof ev.len);
			mix(t, ev.data, ev.len);
			mix(t, &ev.code, sizeof ev.code);
		} while (k != SB__WS_ERROR);
		if (k == SB__WS_MORE && at != n)
			abort();
		free(p);
		if (k == SB__WS_ERROR) {
			uint8_t more[2] = {0x82, 0x80};
			if (sb__ws_next(&ws, more, 2, &used, &ev) != SB__WS_ERROR || used != 0)
				abort();
			break;
		}
		off += n;
	}
	sb__ws_free(&ws);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct trace whole, pieces;

	if (size < 1)
		return 0;
	size_t piece = (size_t)(data[0] & 0x3f) + 1;
	int text = data[0] >> 7;
	uint64_t max = data[0] & 0x40 ? 64 : 65536;
	run(data + 1, size - 1, 0, text, max, &whole);
	run(data + 1, size - 1, piece, text, max, &pieces);
	if (whole.hash != pieces.hash || whole.events != pieces.events || whole.last != pieces.last)
		abort();
	return 0;
}
