/* The raw test peer: blocking sockets, the codec and the splitter, and
 * nothing of the client library, so a test can send any frame it likes. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "support/peer.h"

struct peer *peer_dial(uint16_t port)
{
	struct peer *p = calloc(1, sizeof *p);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	int one = 1;
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	p->fd = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(connect(p->fd, (struct sockaddr *)&sa, sizeof sa) == 0);
	setsockopt(p->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	p->sp = sb_splitter_new(0);
	return p;
}

struct peer *peer_dial_from(const char *src, uint16_t port)
{
	struct peer *p = calloc(1, sizeof *p);
	struct sockaddr_in from = {.sin_family = AF_INET};
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port)};
	int one = 1;
	inet_pton(AF_INET, src, &from.sin_addr);
	inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
	p->fd = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(bind(p->fd, (struct sockaddr *)&from, sizeof from) == 0);
	CHECK(connect(p->fd, (struct sockaddr *)&to, sizeof to) == 0);
	setsockopt(p->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	p->sp = sb_splitter_new(0);
	return p;
}

void peer_close(struct peer *p)
{
	if (p == NULL)
		return;
	close(p->fd);
	sb_splitter_free(p->sp);
	free(p);
}

void peer_raw(struct peer *p, const void *b, size_t n)
{
	const uint8_t *q = b;
	while (n > 0) {
		ssize_t w = write(p->fd, q, n);
		if (w <= 0) {
			CHECK(w > 0);
			return;
		}
		q += w;
		n -= (size_t)w;
	}
}

void peer_send(struct peer *p, const struct sb_msg *m)
{
	static uint8_t buf[1 << 21];
	long n = sb_encode(m, buf, sizeof buf);
	CHECK(n > 0);
	if (n > 0)
		peer_raw(p, buf, (size_t)n);
}

/* Next message within timeout_ms: 1, or 0 on close, -1 on timeout/error. */
int peer_recv_within(struct peer *p, int timeout_ms)
{
	for (;;) {
		struct sb_view f;
		int rc = sb_splitter_next(p->sp, &p->next, &p->left, &f, NULL);
		if (rc == 1) {
			memcpy(p->frame, f.ptr, f.len);
			if (sb_decode(p->frame, f.len, SB_DECODE_PAYLOAD, &p->m, NULL) != 0)
				return -1;
			if (p->m.kind == SB_PRESENCE && p->m.event == SB_PEER_IDENTITY &&
			    !p->see_identity) {
				p->identities++;
				continue;
			}
			return 1;
		}
		if (rc < 0)
			return -1;
		struct pollfd pfd = {.fd = p->fd, .events = POLLIN};
		if (poll(&pfd, 1, timeout_ms) != 1)
			return -1;
		ssize_t n = read(p->fd, p->in, sizeof p->in);
		if (n <= 0)
			return n == 0 ? 0 : -1;
		p->next = p->in;
		p->left = (size_t)n;
	}
}

/* The next message, which must be of the given kind (5 s at most). */
struct sb_msg *peer_expect(struct peer *p, unsigned kind)
{
	int rc = peer_recv_within(p, 5000);
	CHECK_INT(rc, 1);
	if (rc != 1) {
		memset(&p->m, 0, sizeof p->m);
		return &p->m;
	}
	if (p->m.kind != kind)
		fprintf(stderr, "  got %s (code %u: %.*s), expected %s\n", sb_kind_name(p->m.kind),
			p->m.code, (int)p->m.text.len, (const char *)p->m.text.ptr,
			sb_kind_name(kind));
	CHECK_INT(p->m.kind, kind);
	return &p->m;
}

struct sb_msg *peer_expect_past_presence(struct peer *p, unsigned kind, int timeout_ms)
{
	for (int i = 0; i < 256; i++) {
		int rc = peer_recv_within(p, timeout_ms);
		CHECK_INT(rc, 1);
		if (rc != 1)
			break;
		if (p->m.kind == SB_PRESENCE)
			continue;
		CHECK_INT(p->m.kind, kind);
		return &p->m;
	}
	memset(&p->m, 0, sizeof p->m);
	return &p->m;
}

/* Nothing arrives within ms (the router stays silent). */
void peer_expect_silence(struct peer *p, int ms)
{
	CHECK_INT(peer_recv_within(p, ms), -1);
}

struct peer *peer_hello(uint16_t port, const char *name, const char *role)
{
	struct peer *p = peer_dial(port);
	struct sb_msg m = {.kind = SB_HELLO, .version = SB_PROTO_VERSION, .role = v_str(role)};
	if (name != NULL)
		m.peer = v_str(name);
	peer_send(p, &m);
	struct sb_msg *w = peer_expect(p, SB_WELCOME);
	p->peer_id = w->peer_id;
	if (w->peer.ptr != NULL && w->peer.len <= SB_PEER_MAX) {
		memcpy(p->name, w->peer.ptr, w->peer.len);
		p->name[w->peer.len] = 0;
	}
	/* payload {"shard": N} or {"shard": N, "resume": bin 16} */
	static const uint8_t resume[] = {0xa6, 'r', 'e', 's', 'u', 'm', 'e', 0xc4, 16};
	if (w->payload.len >= 8)
		p->shard = w->payload.ptr[7];
	p->has_resume = w->payload.len == 8 + sizeof resume + 16 &&
			memcmp(w->payload.ptr + 8, resume, sizeof resume) == 0;
	if (p->has_resume)
		memcpy(p->resume, w->payload.ptr + 8 + sizeof resume, 16);
	return p;
}

struct peer *peer_hello_on(uint16_t port, const char *base, const char *role, unsigned shard)
{
	for (int i = 0; i < 200; i++) {
		char name[64];
		if (base != NULL)
			snprintf(name, sizeof name, "%s-%d", base, i);
		struct peer *p = peer_hello(port, base != NULL ? name : NULL, role);
		if (p->shard == shard)
			return p;
		peer_close(p);
	}
	CHECK(!"no connection landed on the shard asked for");
	return peer_hello(port, NULL, role);
}

void peer_register(struct peer *p, const char *name, uint64_t id)
{
	struct sb_msg m = {.kind = SB_REGISTER, .id = id};
	if (name != NULL)
		m.name = v_str(name);
	peer_send(p, &m);
	CHECK(peer_expect(p, SB_ACK)->id == id);
}

void peer_request(struct peer *p, const char *name, uint64_t id, uint32_t timeout,
		  const void *payload, size_t len)
{
	struct sb_msg m = {.kind = SB_REQUEST, .id = id, .timeout_ms = timeout};
	m.name = v_str(name);
	m.payload.ptr = payload;
	m.payload.len = (uint32_t)len;
	peer_send(p, &m);
}

void peer_reply(struct peer *p, uint64_t id, const char *outcome, uint8_t flags,
		const void *payload, size_t len)
{
	struct sb_msg m = {.kind = SB_REPLY, .id = id, .flags = flags};
	m.outcome = v_str(outcome);
	m.payload.ptr = payload;
	m.payload.len = (uint32_t)len;
	peer_send(p, &m);
}

void lite_hello(struct lite *l, uint16_t port, const char *name)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	uint8_t buf[256];
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	l->fd = socket(AF_INET, SOCK_STREAM, 0);
	l->id = 0;
	CHECK(connect(l->fd, (struct sockaddr *)&sa, sizeof sa) == 0);
	struct sb_msg h = {.kind = SB_HELLO, .version = 1, .role = v_str("client")};
	h.peer = v_str(name);
	long n = sb_encode(&h, buf, sizeof buf);
	CHECK(n > 0 && write(l->fd, buf, (size_t)n) == n);
	size_t have = 0, need = 4;
	while (have < need) {
		struct pollfd p = {.fd = l->fd, .events = POLLIN};
		if (poll(&p, 1, 5000) != 1)
			break;
		ssize_t r = read(l->fd, buf + have, need - have);
		if (r <= 0)
			break;
		have += (size_t)r;
		if (have == 4)
			need += (size_t)buf[2] << 8 | buf[3];
		if (need > sizeof buf)
			break;
	}
	struct sb_msg w;
	CHECK(have == need && sb_decode(buf, have, 0, &w, NULL) == 0 && w.kind == SB_WELCOME);
	l->id = w.peer_id;
}

void lite_send(struct lite *l, const char *name)
{
	uint8_t buf[128];
	struct sb_msg m = {.kind = SB_SEND, .name = v_str(name)};
	long n = sb_encode(&m, buf, sizeof buf);
	CHECK(n > 0 && write(l->fd, buf, (size_t)n) == n);
}
