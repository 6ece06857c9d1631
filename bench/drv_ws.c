/* The WebSocket driver: the switchboard frames driver's bytes, each frame
 * in a binary message of its own (as a browser's send() makes one), sent
 * to the router's edge after the upgrade. Client messages are masked with
 * a zero key: the router unmasks every payload all the same (RFC 6455
 * lets a client pick any key), and the generator spends nothing on it.
 * Replies come in binary messages of whole frames; their payloads go to
 * the frames driver's splitter. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <switchboard/proto.h>

#include "bench.h"

/* A client message header with a zero masking key, for @p len bytes. */
static size_t ws_head(uint8_t *h, size_t len)
{
	size_t n = 0;
	h[n++] = 0x82;
	if (len < 126)
		h[n++] = (uint8_t)(0x80 | len);
	else if (len < 65536) {
		h[n++] = 0x80 | 126;
		h[n++] = (uint8_t)(len >> 8);
		h[n++] = (uint8_t)len;
	} else {
		h[n++] = 0x80 | 127;
		for (int i = 7; i >= 0; i--)
			h[n++] = (uint8_t)((uint64_t)len >> (8 * i));
	}
	memset(h + n, 0, 4);
	return n + 4;
}

/* Frames queued since @p from go into one message: its header is put in
 * front of them. */
static void wrap(struct sbb_conn *c, size_t from)
{
	uint8_t h[14];
	size_t len = c->out_len - from, hn = ws_head(h, len);
	sbb_out_reserve(c, hn);
	memmove(c->out + from + hn, c->out + from, len);
	memcpy(c->out + from, h, hn);
	c->out_len += hn;
}

/* The payload bytes of whole server messages in p (all binary: the router
 * sends nothing else before a close), joined in place; a message cut by
 * the read waits in c->in. @return bytes of frames at p, or -1 */
static long unwrap(struct sbb_conn *c, uint8_t *p, size_t n, size_t *rest)
{
	size_t at = 0, out = 0;
	while (n - at >= 2) {
		size_t h = 2, len = p[at + 1] & 0x7f;
		if ((p[at] & 0x0f) == 0x8)
			return -1; /* a close */
		if (len == 126) {
			if (n - at < 4)
				break;
			len = (size_t)p[at + 2] << 8 | p[at + 3];
			h = 4;
		} else if (len == 127) {
			if (n - at < 10)
				break;
			len = 0;
			for (int i = 0; i < 8; i++)
				len = len << 8 | p[at + 2 + i];
			h = 10;
		}
		if (n - at - h < len)
			break;
		memmove(p + out, p + at + h, len);
		out += len;
		at += h + len;
	}
	*rest = at;
	(void)c;
	return (long)out;
}

static int ws_open(struct sbb_conn *c, const char *host, uint16_t port)
{
	static const char up[] = "GET /v1/ws HTTP/1.1\r\nHost: bench\r\nConnection: Upgrade\r\n"
				 "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
				 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
				 "Sec-WebSocket-Protocol: switchboard.v1\r\n\r\n";
	uint8_t buf[4096];
	size_t have = 0;

	c->fd = sbb_dial(host, port);
	if (c->fd < 0 || write(c->fd, up, sizeof up - 1) != (ssize_t)(sizeof up - 1))
		return -1;
	while (have < sizeof buf - 1) { /* the 101's head; nothing follows it yet */
		ssize_t n = sbb_recv_wait(c->fd, buf + have, 1, 5000);
		if (n <= 0)
			return -1;
		have += (size_t)n;
		buf[have] = 0;
		if (strstr((char *)buf, "\r\n\r\n") != NULL)
			break;
	}
	if (strncmp((char *)buf, "HTTP/1.1 101 ", 13) != 0)
		return -1;
	struct sb_msg h = {.kind = SB_HELLO, .version = SB_PROTO_VERSION};
	h.role = (struct sb_view){(const uint8_t *)"client", 6};
	if ((c->sp = sb_splitter_new(0)) == NULL)
		return -1;
	sbb_sb_queue(c, &h);
	wrap(c, 0);
	if (sbb_conn_flush_all(c) != 0)
		return -1;
	/* The WELCOME, in one small message. */
	ssize_t n = sbb_recv_wait(c->fd, buf, sizeof buf, 5000);
	size_t rest;
	long f = n > 0 ? unwrap(c, buf, (size_t)n, &rest) : -1;
	struct sb_msg m;
	if (f < SB_PREFIX_LEN || rest != (size_t)n || sb_decode(buf, (size_t)f, 0, &m, NULL) != 0 ||
	    m.kind != SB_WELCOME)
		return -1;
	fcntl(c->fd, F_SETFL, O_NONBLOCK);
	return 0;
}

static void ws_request(struct sbb_conn *c, const struct sbb_workload *w, uint64_t id,
		       uint64_t stamp, size_t size)
{
	size_t from = c->out_len;
	sbb_drv_sb.request(c, w, id, stamp, size);
	wrap(c, from);
}

/* The frames driver's reading, but a PONG goes out in a message of its
 * own: a reply may make the generator queue (and wrap) the next request
 * meanwhile, so nothing queued is wrapped after the fact. */
static int frames_in(struct sbb_gen *g, struct sbb_conn *c, const uint8_t *p, size_t n)
{
	struct sb_view f;
	struct sb_fault_info fi;
	int r;
	while ((r = sb_splitter_next(c->sp, &p, &n, &f, &fi)) == 1) {
		struct sb_msg m;
		if (sb_decode(f.ptr, f.len, 0, &m, &fi) != 0) {
			sbb_gen_fail(g, "undecodable frame");
			return -1;
		}
		if (m.kind == SB_REPLY) {
			if (m.payload.len < 5 + SBB_STAMP_LEN || m.payload.ptr[0] != 0xc6) {
				sbb_gen_fail(g, "REPLY without a bench payload");
				return -1;
			}
			sbb_gen_reply(g, c, m.id, m.payload.ptr + 5, m.payload.len - 5);
		} else if (m.kind == SB_ERROR) {
			sbb_gen_fail(g, "ERROR %u (%.*s) for request %llu", m.code, (int)m.text.len,
				     (const char *)m.text.ptr, (unsigned long long)m.id);
			return -1;
		} else if (m.kind == SB_PING) {
			struct sb_msg pong = {.kind = SB_PONG, .id = m.id};
			size_t from = c->out_len;
			sbb_sb_queue(c, &pong);
			wrap(c, from);
		}
	}
	if (r < 0) {
		sbb_gen_fail(g, "stream broken: %s", sb_strerror(r));
		return -1;
	}
	return 0;
}

static int ws_input(struct sbb_gen *g, struct sbb_conn *c, const uint8_t *p, size_t n)
{
	size_t rest;
	sbb_in_keep(c, p, n);
	long f = unwrap(c, c->in, c->in_len, &rest);
	if (f < 0) {
		sbb_gen_fail(g, "the router closed the WebSocket");
		return -1;
	}
	/* The frames lie at the start of c->in (the splitter copies what it
	 * keeps of a cut frame); what is left of a cut message follows. */
	int rc = frames_in(g, c, c->in, (size_t)f);
	memmove(c->in, c->in + rest, c->in_len - rest);
	c->in_len -= rest;
	return rc;
}

const struct sbb_driver sbb_drv_ws = {
	.proto = "ws",
	.open = ws_open,
	.request = ws_request,
	.input = ws_input,
};
