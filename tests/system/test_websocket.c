/* The WebSocket edge (docs/gateway.md): a client we did not write (Python's
 * websockets, through tests/system/ws_relay.py) says HELLO, calls a
 * service on TCP, reads a 1,000-chunk stream and cancels, all as whole
 * Switchboard frames in binary messages; browsers' origins are checked
 * before the upgrade; and every class of malformed input gets its close
 * code or HTTP status while another WebSocket peer goes on undisturbed. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <switchboard/proto.h>

#include "support/clock.h"
#include "support/peer.h"
#include "support/proc.h"
#include "support/router.h"
#include "support/testlib.h"
#include "support/tls.h"

static const char *RELAY; /* tests/system/ws_relay.py */

/* ---- the relay: Python's websockets in a child process ----------------------- */

struct relay {
	pid_t pid;
	FILE *in;          /* its stdin */
	int out;           /* its stdout */
	char buf[1 << 22]; /* lines not yet read (a 1 MiB message is 2 MiB of hex) */
	size_t have;
};

/* A relay to ws:// (cafile NULL) or wss:// (checked against cafile),
 * presenting the client certificate of file stem @p cert (NULL: none). */
static struct relay *relay_start_mtls(uint16_t port, const char *origin, const char *cafile,
				      const char *cert)
{
	int to[2], from[2];
	char url[64];
	struct relay *r = calloc(1, sizeof *r);

	snprintf(url, sizeof url, "%s://127.0.0.1:%u/v1/ws", cafile ? "wss" : "ws", port);
	if (r == NULL || pipe(to) != 0 || pipe(from) != 0)
		abort();
	r->pid = fork();
	if (r->pid == 0) {
		dup2(to[0], 0);
		dup2(from[1], 1);
		/* Nothing of ours stays open in it: a test peer's socket
		 * would outlive the peer's close. */
		for (int fd = 3; fd < 1024; fd++)
			close(fd);
		close(to[1]);
		close(from[0]);
		execl("/usr/bin/python3", "python3", RELAY, url, origin ? origin : "-", cafile,
		      cert, (char *)NULL);
		_exit(127);
	}
	close(to[0]);
	close(from[1]);
	r->in = fdopen(to[1], "w");
	r->out = from[0];
	return r;
}

static struct relay *relay_start_tls(uint16_t port, const char *origin, const char *cafile)
{
	return relay_start_mtls(port, origin, cafile, NULL);
}

static struct relay *relay_start(uint16_t port, const char *origin)
{
	return relay_start_tls(port, origin, NULL);
}

/* The relay's next line into @p line (NUL-terminated, without its
 * newline), within @p ms: 1, or 0 on a timeout or its end. */
static int relay_line(struct relay *r, char **line, int ms)
{
	uint64_t deadline = now_ms() + (uint64_t)ms;
	static char *taken;

	free(taken);
	taken = NULL;
	for (;;) {
		char *nl = memchr(r->buf, '\n', r->have);
		if (nl != NULL) {
			size_t n = (size_t)(nl - r->buf);
			taken = malloc(n + 1);
			memcpy(taken, r->buf, n);
			taken[n] = '\0';
			memmove(r->buf, nl + 1, r->have - n - 1);
			r->have -= n + 1;
			*line = taken;
			return 1;
		}
		uint64_t now = now_ms();
		if (now >= deadline || r->have == sizeof r->buf)
			return 0;
		struct pollfd p = {.fd = r->out, .events = POLLIN};
		if (poll(&p, 1, (int)(deadline - now)) <= 0)
			continue;
		ssize_t got = read(r->out, r->buf + r->have, sizeof r->buf - r->have);
		if (got <= 0)
			return 0;
		r->have += (size_t)got;
	}
}

static void relay_cmd(struct relay *r, const char *line)
{
	fputs(line, r->in);
	fputc('\n', r->in);
	fflush(r->in);
}

static void relay_stop(struct relay *r)
{
	if (r == NULL)
		return;
	fclose(r->in);
	int status;
	if (!wait_exit(r->pid, &status, 15000))
		reap(r->pid, SIGKILL);
	close(r->out);
	free(r);
}

/* Sends one binary message holding the frames of @p m[0..n). */
static void relay_send(struct relay *r, const struct sb_msg *m, unsigned n)
{
	static uint8_t frame[1 << 16];
	fputs("send ", r->in);
	for (unsigned i = 0; i < n; i++) {
		long len = sb_encode(&m[i], frame, sizeof frame);
		CHECK(len > 0);
		for (long j = 0; j < len; j++)
			fprintf(r->in, "%02x", frame[j]);
	}
	fputc('\n', r->in);
	fflush(r->in);
}

/* Frames of the messages the relay reports, one at a time. */
struct frames {
	uint8_t bytes[1 << 21];
	size_t len, at;
	struct sb_msg m;
};

/* The next frame from the relay within @p ms: 1, or 0 (the line says why
 * in *other when it was not a message). */
static int relay_frame(struct relay *r, struct frames *f, int ms, char **other)
{
	*other = NULL;
	if (f->at == f->len) {
		char *line;
		if (!relay_line(r, &line, ms))
			return 0;
		if (strncmp(line, "msg ", 4) != 0) {
			*other = line;
			return 0;
		}
		size_t hex = strlen(line + 4);
		f->len = hex / 2;
		f->at = 0;
		for (size_t i = 0; i < f->len; i++)
			sscanf(line + 4 + 2 * i, "%2hhx", &f->bytes[i]);
		/* Whole frames only, never one split across messages. */
		size_t at = 0;
		while (at + SB_PREFIX_LEN <= f->len)
			at += SB_PREFIX_LEN + ((size_t)f->bytes[at] << 24 |
					       (size_t)f->bytes[at + 1] << 16 |
					       (size_t)f->bytes[at + 2] << 8 | f->bytes[at + 3]);
		CHECK(at == f->len);
	}
	size_t n =
		SB_PREFIX_LEN + ((size_t)f->bytes[f->at] << 24 | (size_t)f->bytes[f->at + 1] << 16 |
				 (size_t)f->bytes[f->at + 2] << 8 | f->bytes[f->at + 3]);
	int rc = sb_decode(f->bytes + f->at, n, 0, &f->m, NULL);
	CHECK(rc == 0);
	f->at += n;
	return rc == 0;
}

/* The next frame, which must be of @p kind (identity events skipped). */
static struct sb_msg *relay_expect(struct relay *r, struct frames *f, unsigned kind)
{
	char *other;
	for (;;) {
		if (!relay_frame(r, f, 10000, &other)) {
			fprintf(stderr, "expected kind %u, got %s\n", kind,
				other ? other : "nothing");
			CHECK(0);
			return NULL;
		}
		if (f->m.kind == SB_PRESENCE && kind != SB_PRESENCE)
			continue;
		CHECK_INT(f->m.kind, kind);
		return &f->m;
	}
}

/* A relay that said HELLO as a client and read its WELCOME. */
static struct relay *ws_client(uint16_t port, struct frames *f, const char *name)
{
	struct relay *r = relay_start(port, NULL);
	char *line;
	CHECK(relay_line(r, &line, 15000));
	CHECK_STR(line, "open switchboard.v1");
	struct sb_msg hello = {.kind = SB_HELLO, .id = 1, .version = 1};
	hello.peer = v_str(name);
	hello.role = v_str("client");
	relay_send(r, &hello, 1);
	struct sb_msg *w = relay_expect(r, f, SB_WELCOME);
	CHECK(w != NULL && v_is(w->peer, name));
	return r;
}

static struct sb_router_config edge_config(void)
{
	struct sb_router_config cfg = router_config();
	cfg.ws_port = 0;
	return cfg;
}

static uint16_t ws_port(void)
{
	return sb_router_ws_port(R);
}

/* ---- stories ------------------------------------------------------------------ */

static void test_a_browser_calls_a_tcp_service_over_websocket(void)
{
	struct sb_router_config cfg = edge_config();
	router_start(&cfg);
	static struct frames f;
	struct peer *svc = peer_hello(PORT, "svc", "service");
	peer_register(svc, "echo", 1);

	struct relay *r = ws_client(ws_port(), &f, "browser-1");
	/* Two requests in one message: frames batch as on TCP. */
	struct sb_msg req[2] = {{.kind = SB_REQUEST, .id = 7, .timeout_ms = 10000},
				{.kind = SB_REQUEST, .id = 8, .timeout_ms = 10000}};
	req[0].name = req[1].name = v_str("echo");
	req[0].payload = req[1].payload = (struct sb_view){(const uint8_t *)"\xa2hi", 3};
	relay_send(r, req, 2);
	for (int i = 0; i < 2; i++) {
		struct sb_msg *m = peer_expect(svc, SB_REQUEST);
		CHECK(v_is(m->name, "echo"));
		peer_reply(svc, m->id, "ok", 0, m->payload.ptr, m->payload.len);
	}
	for (int i = 0; i < 2; i++) {
		struct sb_msg *m = relay_expect(r, &f, SB_REPLY);
		CHECK(m != NULL && (m->id == 7 || m->id == 8));
		CHECK(m != NULL && v_is(m->outcome, "ok"));
		CHECK(m != NULL && m->payload.len == 3 && memcmp(m->payload.ptr, "\xa2hi", 3) == 0);
	}
	relay_stop(r);
	peer_close(svc);
	router_stop();
}

static void test_a_websocket_client_reads_a_1000_chunk_stream_in_order(void)
{
	struct sb_router_config cfg = edge_config();
	router_start(&cfg);
	static struct frames f;
	struct peer *svc = peer_hello(PORT, "files", "service");
	peer_register(svc, "file.read", 1);
	struct relay *r = ws_client(ws_port(), &f, "reader");

	struct sb_msg req = {.kind = SB_REQUEST, .id = 5, .timeout_ms = 30000};
	req.name = v_str("file.read");
	relay_send(r, &req, 1);
	struct sb_msg *m = peer_expect(svc, SB_REQUEST);
	uint64_t rid = m->id;
	uint8_t chunk[6] = {0xc4, 4}; /* bin 8 of 4 bytes: the chunk's number */
	for (uint32_t i = 0; i < 1000; i++) {
		chunk[2] = (uint8_t)(i >> 24), chunk[3] = (uint8_t)(i >> 16);
		chunk[4] = (uint8_t)(i >> 8), chunk[5] = (uint8_t)i;
		peer_reply(svc, rid, "file.read-chunk", SB_F_MORE | SB_F_CHUNK, chunk,
			   sizeof chunk);
	}
	peer_reply(svc, rid, "file.read-done", 0, NULL, 0);
	uint32_t next = 0;
	for (;;) {
		m = relay_expect(r, &f, SB_REPLY);
		if (m == NULL || !(m->flags & SB_F_MORE))
			break;
		CHECK(m->payload.len == 6);
		uint32_t seq = (uint32_t)m->payload.ptr[2] << 24 |
			       (uint32_t)m->payload.ptr[3] << 16 |
			       (uint32_t)m->payload.ptr[4] << 8 | m->payload.ptr[5];
		if (seq != next)
			CHECK_INT(seq, next);
		next = seq + 1;
	}
	CHECK_INT(next, 1000);
	CHECK(m != NULL && v_is(m->outcome, "file.read-done"));
	relay_stop(r);
	peer_close(svc);
	router_stop();
}

static void test_a_websocket_client_cancels_and_the_handler_hears_it(void)
{
	struct sb_router_config cfg = edge_config();
	router_start(&cfg);
	static struct frames f;
	struct peer *svc = peer_hello(PORT, "slow", "service");
	peer_register(svc, "slow.job", 1);
	struct relay *r = ws_client(ws_port(), &f, "impatient");

	struct sb_msg req = {.kind = SB_REQUEST, .id = 9, .timeout_ms = 30000};
	req.name = v_str("slow.job");
	relay_send(r, &req, 1);
	struct sb_msg *m = peer_expect(svc, SB_REQUEST);
	uint64_t rid = m->id;
	struct sb_msg cancel = {.kind = SB_CANCEL, .id = 9};
	relay_send(r, &cancel, 1);
	m = peer_expect(svc, SB_CANCEL);
	CHECK(m->id == rid);
	m = relay_expect(r, &f, SB_ERROR);
	CHECK(m != NULL && m->id == 9 && (int)-m->code == SB_ECANCELLED);
	relay_stop(r);
	peer_close(svc);
	router_stop();
}

static void test_websocket_pings_and_closes_are_answered(void)
{
	struct sb_router_config cfg = edge_config();
	router_start(&cfg);
	static struct frames f;
	struct relay *r = ws_client(ws_port(), &f, "pinger");
	char *line;

	relay_cmd(r, "ping 0102abcd");
	CHECK(relay_line(r, &line, 10000) && strcmp(line, "pong") == 0);
	relay_cmd(r, "close 1000");
	CHECK(relay_line(r, &line, 10000) && strncmp(line, "closed 1000", 11) == 0);
	relay_stop(r);
	router_stop();
}

static void test_a_page_from_an_origin_not_allowed_is_refused_before_the_upgrade(void)
{
	struct sb_router_config cfg = edge_config();
	cfg.ws_allow_origin = "https://app.example.com, https://*.example.org";
	router_start(&cfg);
	char *line;

	struct relay *r = relay_start(ws_port(), "https://evil.example.com");
	CHECK(relay_line(r, &line, 15000) && strcmp(line, "refused 403") == 0);
	relay_stop(r);
	r = relay_start(ws_port(), "https://shop.example.org");
	CHECK(relay_line(r, &line, 15000) && strcmp(line, "open switchboard.v1") == 0);
	relay_stop(r);
	r = relay_start(ws_port(), "https://APP.example.com");
	CHECK(relay_line(r, &line, 15000) && strcmp(line, "open switchboard.v1") == 0);
	relay_stop(r);
	router_stop();
}

/* ---- malformed input, by hand --------------------------------------------------- */

static int dial(uint16_t port)
{
	struct peer *p = peer_dial(port);
	int fd = dup(p->fd);
	peer_close(p);
	return fd;
}

/* Reads within 10 s until @p n bytes or the end: bytes read. */
static size_t read_some(int fd, uint8_t *buf, size_t cap, size_t want)
{
	size_t have = 0;
	uint64_t deadline = now_ms() + 10000;
	while (have < want && now_ms() < deadline) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 200) <= 0)
			continue;
		ssize_t got = read(fd, buf + have, cap - have);
		if (got <= 0)
			break;
		have += (size_t)got;
	}
	return have;
}

/* The whole HTTP answer to @p req (the connection then closes): its status. */
static int http_status(uint16_t port, const char *req, char *body, size_t cap)
{
	int fd = dial(port);
	uint8_t buf[4096];
	CHECK(write(fd, req, strlen(req)) == (ssize_t)strlen(req));
	size_t n = read_some(fd, buf, sizeof buf - 1, sizeof buf - 1);
	close(fd);
	buf[n] = '\0';
	int status = 0;
	sscanf((char *)buf, "HTTP/1.1 %d", &status);
	const char *b = strstr((char *)buf, "\r\n\r\n");
	snprintf(body, cap, "%s", b != NULL ? b + 4 : "");
	return status;
}

static const char *UPGRADE = "GET /v1/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
			     "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
			     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
			     "Sec-WebSocket-Protocol: switchboard.v1\r\n\r\n";

/* An upgraded connection, its 101 read. */
static int ws_raw(uint16_t port)
{
	int fd = dial(port);
	uint8_t buf[1024];
	size_t have = 0;
	CHECK(write(fd, UPGRADE, strlen(UPGRADE)) == (ssize_t)strlen(UPGRADE));
	while (have < sizeof buf - 1) {
		size_t got = read_some(fd, buf + have, 1, 1);
		if (got == 0)
			break;
		have += got;
		buf[have] = '\0';
		if (strstr((char *)buf, "\r\n\r\n") != NULL)
			break;
	}
	CHECK(strncmp((char *)buf, "HTTP/1.1 101 ", 13) == 0);
	CHECK(strstr((char *)buf, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n") !=
	      NULL);
	return fd;
}

/* A client frame: first byte @p b0 (FIN, RSV, opcode), masked unless
 * @p unmasked, the length in its shortest form. */
static size_t client_frame(uint8_t *out, uint8_t b0, const void *payload, size_t n, int unmasked)
{
	static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
	size_t h = 0;
	out[h++] = b0;
	uint8_t mbit = unmasked ? 0 : 0x80;
	if (n < 126)
		out[h++] = (uint8_t)(mbit | n);
	else if (n < 65536) {
		out[h++] = mbit | 126;
		out[h++] = (uint8_t)(n >> 8);
		out[h++] = (uint8_t)n;
	} else {
		out[h++] = mbit | 127;
		for (int i = 7; i >= 0; i--)
			out[h++] = (uint8_t)((uint64_t)n >> (8 * i));
	}
	if (!unmasked) {
		memcpy(out + h, key, 4);
		h += 4;
	}
	for (size_t i = 0; i < n; i++)
		out[h + i] = (uint8_t)(((const uint8_t *)payload)[i] ^ (unmasked ? 0 : key[i % 4]));
	return h + n;
}

/* Sends @p len bytes, then expects a close frame with @p code (a binary
 * message may come first: an ERROR) and the connection's end. */
static void expect_close(int fd, const uint8_t *bytes, size_t len, uint16_t code, const char *what)
{
	uint8_t buf[4096];
	CHECK(write(fd, bytes, len) == (ssize_t)len);
	size_t n = read_some(fd, buf, sizeof buf, sizeof buf);
	size_t at = 0;
	uint16_t got = 0;
	while (at + 2 <= n) {
		uint8_t op = buf[at] & 0x0f;
		size_t plen = buf[at + 1] & 0x7f, h = 2;
		if (plen == 126) {
			plen = (size_t)buf[at + 2] << 8 | buf[at + 3];
			h = 4;
		}
		if (op == 0x8 && plen >= 2 && at + h + 2 <= n)
			got = (uint16_t)(buf[at + h] << 8 | buf[at + h + 1]);
		at += h + plen;
	}
	if (got != code)
		fprintf(stderr, "%s: close code %u, expected %u\n", what, got, code);
	CHECK_INT(got, code);
	close(fd);
}

static void test_every_malformed_websocket_input_is_closed_with_its_code(void)
{
	struct sb_router_config cfg = edge_config();
	router_start(&cfg);
	static struct frames f;
	uint16_t port = ws_port();
	uint8_t fr[2048];
	size_t n;
	struct peer *svc = peer_hello(PORT, "svc", "service");
	peer_register(svc, "echo", 1);
	/* The bystander: connected throughout, served at the end. */
	struct relay *r = ws_client(port, &f, "bystander");

	n = client_frame(fr, 0x82, "\0\0\0\0", 4, 1);
	expect_close(ws_raw(port), fr, n, 1002, "unmasked frame");
	n = client_frame(fr, 0xc2, "\0\0\0\0", 4, 0);
	expect_close(ws_raw(port), fr, n, 1002, "RSV1 set");
	n = client_frame(fr, 0x83, "", 0, 0);
	expect_close(ws_raw(port), fr, n, 1002, "opcode 3");
	static const uint8_t big[200];
	n = client_frame(fr, 0x89, big, sizeof big, 0);
	expect_close(ws_raw(port), fr, n, 1002, "a ping of 200 bytes");
	n = client_frame(fr, 0x09, "", 0, 0);
	expect_close(ws_raw(port), fr, n, 1002, "a fragmented ping");
	n = client_frame(fr, 0x80, "abc", 3, 0);
	expect_close(ws_raw(port), fr, n, 1002, "a continuation with nothing begun");
	n = client_frame(fr, 0x02, "\0\0", 2, 0);
	n += client_frame(fr + n, 0x82, "\0\0", 2, 0);
	expect_close(ws_raw(port), fr, n, 1002, "a new message inside a fragmented one");
	n = client_frame(fr, 0x88, "\x03\xe8\xff\xfe", 4, 0);
	expect_close(ws_raw(port), fr, n, 1007, "a close reason that is not UTF-8");
	n = client_frame(fr, 0x88, "\x03\xed", 2, 0);
	expect_close(ws_raw(port), fr, n, 1002, "close code 1005 sent by a client");
	n = client_frame(fr, 0x81, "hello", 5, 0);
	expect_close(ws_raw(port), fr, n, 1003, "a text message");
	n = client_frame(fr, 0x82, "\0\0\0\x40xyz", 7, 0);
	expect_close(ws_raw(port), fr, n, 1007, "a frame cut by the message's end");
	/* A length over the bound (max_frame + 4): refused from its header. */
	const uint8_t huge[] = {0x82, 0xff, 0, 0, 0, 0, 0x01, 0, 0, 0, 1, 2, 3, 4};
	expect_close(ws_raw(port), huge, sizeof huge, 1009, "a message over the bound");
	/* A close with a good code is answered with it. */
	n = client_frame(fr, 0x88,
			 "\x0b\xb8"
			 "bye",
			 5, 0);
	expect_close(ws_raw(port), fr, n, 3000, "an application's close code");

	/* Before the upgrade: HTTP statuses with a JSON body. */
	char body[1024];
	CHECK_INT(http_status(port, "GET /v1/ws HTTP/1.1\r\nHost: x\r\n\r\n", body, sizeof body),
		  400);
	CHECK(strstr(body, "\"code\":\"SB_EBADFRAME\"") != NULL);
	CHECK_INT(http_status(port,
			      "GET /v1/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
			      "Upgrade: websocket\r\nSec-WebSocket-Version: 8\r\n"
			      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
			      body, sizeof body),
		  426);
	CHECK_INT(http_status(port,
			      "GET /v1/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
			      "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
			      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
			      "Sec-WebSocket-Protocol: chat\r\n\r\n",
			      body, sizeof body),
		  400);
	CHECK_INT(
		http_status(port, "GET /elsewhere HTTP/1.1\r\nHost: x\r\n\r\n", body, sizeof body),
		404);
	CHECK(strstr(body, "\"code\":\"SB_ENOHANDLER\"") != NULL);
	CHECK_INT(http_status(port, "POST / HTTP/1.1\r\nHost : x\r\n\r\n", body, sizeof body), 400);
	CHECK_INT(http_status(port, "\x16\x03\x01\x02\x05\x01\x07\x01\xfc\x03\x03\r\n\r\n", body,
			      sizeof body),
		  400);

	/* The bystander was never disturbed. */
	struct sb_msg req = {.kind = SB_REQUEST, .id = 3, .timeout_ms = 10000};
	req.name = v_str("echo");
	relay_send(r, &req, 1);
	struct sb_msg *m = peer_expect(svc, SB_REQUEST);
	peer_reply(svc, m->id, "still here", 0, NULL, 0);
	m = relay_expect(r, &f, SB_REPLY);
	CHECK(m != NULL && v_is(m->outcome, "still here"));
	relay_stop(r);
	peer_close(svc);
	router_stop();
}

static void test_a_silent_or_slow_http_client_is_cut_off_by_the_deadline(void)
{
	struct sb_router_config cfg = edge_config();
	cfg.hello_timeout_ms = 300;
	router_start(&cfg);
	char body[1024];
	/* Half a head, then nothing: 408 once the deadline passes. */
	CHECK_INT(http_status(ws_port(), "GET /v1/ws HTTP/1.1\r\nHost:", body, sizeof body), 408);
	CHECK(strstr(body, "\"code\":\"SB_ETIMEOUT\"") != NULL);
	/* Upgraded but no HELLO: the ERROR, then close 1008. */
	int fd = ws_raw(ws_port());
	expect_close(fd, (const uint8_t *)"", 0, 1008, "no HELLO after the upgrade");
	CHECK(router_stats().hello_timeouts >= 2);
	router_stop();
}

static void test_a_websocket_peer_cannot_be_a_service_without_a_secret(void)
{
	struct sb_router_config cfg = edge_config();
	router_start(&cfg);
	static struct frames f;
	struct relay *r = relay_start(ws_port(), NULL);
	char *line;
	CHECK(relay_line(r, &line, 15000) && strcmp(line, "open switchboard.v1") == 0);
	struct sb_msg hello = {.kind = SB_HELLO, .id = 1, .version = 1};
	hello.role = v_str("service");
	relay_send(r, &hello, 1);
	struct sb_msg *m = relay_expect(r, &f, SB_ERROR);
	CHECK(m != NULL && (int)-m->code == SB_EFORBIDDEN);
	CHECK(relay_line(r, &line, 10000) && strncmp(line, "closed 1008", 11) == 0);
	relay_stop(r);
	router_stop();
}

static void test_the_edge_is_off_unless_configured(void)
{
	router_start(NULL);
	CHECK_INT(sb_router_ws_port(R), 0);
	router_stop();
}

/* wss://: the edge of a TLS router speaks TLS with its settings. */
static void echo_local(struct sb_call *call, void *ud)
{
	size_t len;
	const void *p = sb_call_payload(call, &len);
	(void)ud;
	sb_reply(call, "ok", p, len);
}

/* 1,000 chunks of 1 KiB numbered in their first 4 bytes, then "done". */
static void stream_local(struct sb_call *call, void *ud)
{
	static uint8_t chunk[3 + 1024] = {0xc5, 0x04, 0x00};
	(void)ud;
	for (uint32_t i = 0; i < 1000; i++) {
		chunk[3] = (uint8_t)(i >> 24), chunk[4] = (uint8_t)(i >> 16);
		chunk[5] = (uint8_t)(i >> 8), chunk[6] = (uint8_t)i;
		sb_reply_more(call, SB_MORE_CHUNK, "chunk", chunk, sizeof chunk);
	}
	sb_reply(call, "done", NULL, 0);
}

static void test_wss_serves_with_the_routers_certificate(void)
{
	CHECK(certs_make() == 0);
	struct tls_cfg t = {.cert = "server"};
	struct sb_router_config cfg;
	tls_fill(&cfg, &t);
	cfg.ws_port = 0;
	struct sb_router *r = router_new(&cfg);
	CHECK(sb_router_handle(r, "echo", NULL, echo_local, NULL) == 0);
	CHECK(sb_router_handle(r, "stream", NULL, stream_local, NULL) == 0);
	router_start_with(r);
	static struct frames f;
	char *line;

	struct relay *rl = relay_start_tls(ws_port(), NULL, at("ca.pem"));
	CHECK(relay_line(rl, &line, 15000) && strcmp(line, "open switchboard.v1") == 0);
	struct sb_msg hello = {.kind = SB_HELLO, .id = 1, .version = 1};
	hello.role = v_str("client");
	relay_send(rl, &hello, 1);
	CHECK(relay_expect(rl, &f, SB_WELCOME) != NULL);
	struct sb_msg req = {.kind = SB_REQUEST, .id = 2, .timeout_ms = 10000};
	req.name = v_str("echo");
	req.payload = (struct sb_view){(const uint8_t *)"\xa3tls", 4};
	relay_send(rl, &req, 1);
	struct sb_msg *m = relay_expect(rl, &f, SB_REPLY);
	CHECK(m != NULL && m->id == 2 && m->payload.len == 4);
	relay_cmd(rl, "ping 01");
	CHECK(relay_line(rl, &line, 10000) && strcmp(line, "pong") == 0);
	/* A megabyte of chunks, sealed record after record: whole and in order. */
	req.id = 3;
	req.name = v_str("stream");
	relay_send(rl, &req, 1);
	uint32_t next = 0;
	for (;;) {
		m = relay_expect(rl, &f, SB_REPLY);
		if (m == NULL || !(m->flags & SB_F_MORE))
			break;
		CHECK(m->payload.len == 3 + 1024);
		uint32_t seq = (uint32_t)m->payload.ptr[3] << 24 |
			       (uint32_t)m->payload.ptr[4] << 16 |
			       (uint32_t)m->payload.ptr[5] << 8 | m->payload.ptr[6];
		if (seq != next)
			CHECK_INT(seq, next);
		next = seq + 1;
	}
	CHECK_INT(next, 1000);
	CHECK(m != NULL && v_is(m->outcome, "done"));
	relay_stop(rl);

	/* A client that does not trust the router's CA gets no further. */
	rl = relay_start_tls(ws_port(), NULL, "/etc/ssl/certs/ca-certificates.crt");
	CHECK(relay_line(rl, &line, 15000) && strcmp(line, "failed SSLCertVerificationError") == 0);
	relay_stop(rl);

	/* Plain HTTP to the TLS edge: told so in HTTP, not in a TLS alert. */
	char body[1024];
	CHECK_INT(
		http_status(ws_port(), "GET /v1/ws HTTP/1.1\r\nHost: x\r\n\r\n", body, sizeof body),
		400);
	CHECK(strstr(body, "requires TLS") != NULL);
	router_stop();
	certs_remove();
}

/* The caller's certificate subject, as the router verified it. */
static void subject_local(struct sb_call *call, void *ud)
{
	const char *s = sb_call_subject(call);
	(void)ud;
	sb_reply(call, s != NULL ? s : "none", NULL, 0);
}

static void test_wss_with_mutual_tls_serves_only_a_client_the_ca_signed(void)
{
	CHECK(certs_make() == 0);
	struct tls_cfg t = {.cert = "server", .mtls = 1};
	struct sb_router_config cfg;
	tls_fill(&cfg, &t);
	cfg.ws_port = 0;
	struct sb_router *r = router_new(&cfg);
	CHECK(sb_router_handle(r, "whoami", NULL, subject_local, NULL) == 0);
	router_start_with(r);
	static struct frames f;
	char stem[256], *line;

	/* alice's certificate, from the CA: served, as alice. */
	snprintf(stem, sizeof stem, "%s", at("alice"));
	struct relay *rl = relay_start_mtls(ws_port(), NULL, at("ca.pem"), stem);
	CHECK(relay_line(rl, &line, 15000) && strcmp(line, "open switchboard.v1") == 0);
	struct sb_msg hello = {.kind = SB_HELLO, .id = 1, .version = 1};
	hello.role = v_str("client");
	relay_send(rl, &hello, 1);
	CHECK(relay_expect(rl, &f, SB_WELCOME) != NULL);
	struct sb_msg req = {.kind = SB_REQUEST, .id = 2, .timeout_ms = 10000};
	req.name = v_str("whoami");
	relay_send(rl, &req, 1);
	struct sb_msg *m = relay_expect(rl, &f, SB_REPLY);
	CHECK(m != NULL && m->id == 2);
	CHECK(m != NULL && m->outcome.len >= 5 &&
	      memmem(m->outcome.ptr, m->outcome.len, "alice", 5));
	relay_stop(rl);

	/* No certificate, or mallory's from another CA: no upgrade at all. */
	rl = relay_start_mtls(ws_port(), NULL, at("ca.pem"), NULL);
	CHECK(relay_line(rl, &line, 15000) && strncmp(line, "failed ", 7) == 0);
	relay_stop(rl);
	snprintf(stem, sizeof stem, "%s", at("mallory"));
	rl = relay_start_mtls(ws_port(), NULL, at("ca.pem"), stem);
	CHECK(relay_line(rl, &line, 15000) && strncmp(line, "failed ", 7) == 0);
	relay_stop(rl);
	router_stop();
	certs_remove();
}

int main(int argc, char **argv)
{
	RELAY = argc > 1 ? argv[1] : "tests/system/ws_relay.py";
	signal(SIGPIPE, SIG_IGN);
	watchdog("test_websocket", 240);
	RUN(test_the_edge_is_off_unless_configured);
	RUN(test_a_browser_calls_a_tcp_service_over_websocket);
	RUN(test_a_websocket_client_reads_a_1000_chunk_stream_in_order);
	RUN(test_a_websocket_client_cancels_and_the_handler_hears_it);
	RUN(test_websocket_pings_and_closes_are_answered);
	RUN(test_a_page_from_an_origin_not_allowed_is_refused_before_the_upgrade);
	RUN(test_every_malformed_websocket_input_is_closed_with_its_code);
	RUN(test_a_silent_or_slow_http_client_is_cut_off_by_the_deadline);
	RUN(test_a_websocket_peer_cannot_be_a_service_without_a_secret);
	RUN(test_wss_serves_with_the_routers_certificate);
	RUN(test_wss_with_mutual_tls_serves_only_a_client_the_ca_signed);
	return TEST_EXIT();
}
