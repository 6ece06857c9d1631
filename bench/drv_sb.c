/* The switchboard frames driver: requests as REQUEST/SEND frames, replies
 * from REPLY frames. The same bytes go to the router and, for the zero-hop
 * bound, straight to the responder. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <switchboard/proto.h>

#include "bench.h"

#define SBB_BIN32_HEAD 5 /* 0xc6 + u32 length: the payload is one bin value */

static const struct sb_view name_echo = {(const uint8_t *)"bench.echo", 10};
static const struct sb_view name_fire = {(const uint8_t *)"bench.fire", 10};
static const struct sb_view name_fan = {(const uint8_t *)"bench.fan", 9};

void sbb_sb_queue(struct sbb_conn *c, const struct sb_msg *m)
{
	long n = sb_encoded_size(m);
	if (n < 0 || sb_encode(m, sbb_out_reserve(c, (size_t)n), (size_t)n) != n) {
		fprintf(stderr, "sb-bench: cannot encode %s\n", sb_kind_name(m->kind));
		return;
	}
	c->out_len += (size_t)n;
}

/* The payload after a header: a bin32 of size - 5 bytes whose first eight
 * carry the send time; the rest is never written (no filler, no copy). */
static void put_stamp(uint8_t *b, uint64_t stamp, size_t size)
{
	uint32_t len = (uint32_t)(size - SBB_BIN32_HEAD);
	b[0] = 0xc6;
	b[1] = (uint8_t)(len >> 24);
	b[2] = (uint8_t)(len >> 16);
	b[3] = (uint8_t)(len >> 8);
	b[4] = (uint8_t)len;
	memcpy(b + SBB_BIN32_HEAD, &stamp, sizeof stamp);
}

void sbb_sb_stamped(struct sbb_conn *c, struct sb_msg *m, uint64_t stamp, size_t size)
{
	/* The payload is built in place after the header (sb_encode_head):
	 * no payload buffer, no copy, and the filler is never written. */
	m->payload = (struct sb_view){(const uint8_t *)"", (uint32_t)size};
	uint8_t *p = sbb_out_reserve(c, SB_HEADER_MAX + 4 + size);
	long h = sb_encode_head(m, p, SB_HEADER_MAX + 4);
	if (h < 0) {
		fprintf(stderr, "sb-bench: cannot encode %s\n", sb_kind_name(m->kind));
		return;
	}
	put_stamp(p + h, stamp, size);
	c->out_len += (size_t)h + size;
}

/* Reads set-up answers until @p n frames of @p kind have come; an ERROR
 * ends set-up. Callers await each batch's answers before sending more, so
 * nothing that matters follows the last one. */
static int expect_n(struct sbb_conn *c, unsigned kind, unsigned n, int timeout_ms)
{
	uint8_t buf[65536];
	for (unsigned seen = 0; seen < n;) {
		ssize_t got = sbb_recv_wait(c->fd, buf, sizeof buf, timeout_ms);
		if (got <= 0)
			return -1;
		const uint8_t *p = buf;
		size_t len = (size_t)got;
		struct sb_view f;
		while (sb_splitter_next(c->sp, &p, &len, &f, NULL) == 1) {
			struct sb_msg m;
			if (sb_decode(f.ptr, f.len, 0, &m, NULL) != 0)
				return -1;
			if (m.kind == SB_ERROR) {
				fprintf(stderr, "sb-bench: set-up answered ERROR %u: %.*s\n",
					m.code, (int)m.text.len, (const char *)m.text.ptr);
				return -1;
			}
			seen += m.kind == kind;
		}
	}
	return 0;
}

int sbb_sb_expect(struct sbb_conn *c, unsigned kind)
{
	return expect_n(c, kind, 1, 5000);
}

int sbb_sb_hello(struct sbb_conn *c, const char *role)
{
	struct sb_msg h = {.kind = SB_HELLO, .version = SB_PROTO_VERSION};
	h.role = (struct sb_view){(const uint8_t *)role, (uint32_t)strlen(role)};
	c->sp = sb_splitter_new(0);
	if (c->fd < 0 || c->sp == NULL)
		return -1;
	sbb_sb_queue(c, &h);
	return sbb_conn_flush_all(c) != 0 || sbb_sb_expect(c, SB_WELCOME) != 0 ? -1 : 0;
}

#define SBB_REG_BATCH 256

int sbb_sb_register_many(struct sbb_conn *c, const char *prefix, unsigned first, unsigned n)
{
	char name[128];
	for (unsigned done = 0; done < n;) {
		unsigned batch = n - done < SBB_REG_BATCH ? n - done : SBB_REG_BATCH;
		for (unsigned k = 0; k < batch; k++) {
			int len = snprintf(name, sizeof name, "%s%u", prefix, first + done + k);
			struct sb_msg reg = {.kind = SB_REGISTER, .id = done + k + 1};
			reg.name = (struct sb_view){(const uint8_t *)name, (uint32_t)len};
			sbb_sb_queue(c, &reg);
		}
		if (sbb_conn_flush_all(c) != 0)
			return -1;
		if (expect_n(c, SB_ACK, batch, 10000) != 0)
			return -1;
		done += batch;
	}
	return 0;
}

static int sb_open(struct sbb_conn *c, const char *host, uint16_t port)
{
	c->fd = sbb_dial(host, port);
	if (sbb_sb_hello(c, "client") != 0)
		return -1;
	fcntl(c->fd, F_SETFL, O_NONBLOCK);
	return 0;
}

static void sb_request(struct sbb_conn *c, const struct sbb_workload *w, uint64_t id,
		       uint64_t stamp, size_t size)
{
	/* Every request of a connection has the same header but for the id
	 * (and the length, when sizes vary): encode it once and patch the id,
	 * so that the generator spends its time on I/O, not on encoding. */
	if (c->head_len == 0 || c->head_size != size) {
		struct sb_msg m = {.kind = SB_REQUEST, .timeout_ms = 30000, .name = name_echo};
		if (w->shape == SBB_FIRE) {
			m = (struct sb_msg){.kind = SB_SEND, .name = name_fire};
		} else if (w->shape == SBB_FAN) {
			/* One request to every handler of bench.fan; the
			 * router ends it with "$sb.all" after the last reply. */
			m.name = name_fan;
			m.flags = SB_F_BROADCAST;
		}
		m.payload = (struct sb_view){(const uint8_t *)"", (uint32_t)size};
		long h = sb_encode_head(&m, c->head, sizeof c->head);
		if (h < 0) {
			fprintf(stderr, "sb-bench: cannot encode %s\n", sb_kind_name(m.kind));
			return;
		}
		c->head_len = (size_t)h;
		c->head_size = size;
	}
	uint8_t *p = sbb_out_reserve(c, c->head_len + size);
	memcpy(p, c->head, c->head_len);
	if (w->shape != SBB_FIRE)
		sb_patch_id(p, id);
	put_stamp(p + c->head_len, stamp, size);
	c->out_len += c->head_len + size;
}

static int sb_input(struct sbb_gen *g, struct sbb_conn *c, const uint8_t *p, size_t n)
{
	struct sb_view f;
	struct sb_fault_info fi;
	int r;
	while ((r = sb_splitter_next(c->sp, &p, &n, &f, &fi)) == 1) {
		struct sb_msg m;
		if (sb_decode(f.ptr, f.len, 0, &m, &fi) != 0) {
			char why[256];
			sb_fault_describe(&fi, why, sizeof why);
			sbb_gen_fail(g, "undecodable frame: %s", why);
			return -1;
		}
		switch (m.kind) {
		case SB_REPLY:
			/* A broadcast ends with the router's aggregate; the
			 * per-handler replies before it were counted. */
			if (m.outcome.len == 7 && memcmp(m.outcome.ptr, "$sb.all", 7) == 0)
				break;
			if (m.payload.len < SBB_BIN32_HEAD + SBB_STAMP_LEN ||
			    m.payload.ptr[0] != 0xc6) {
				sbb_gen_fail(g, "REPLY without a bench payload");
				return -1;
			}
			sbb_gen_reply(g, c, m.id, m.payload.ptr + SBB_BIN32_HEAD,
				      m.payload.len - SBB_BIN32_HEAD);
			break;
		case SB_ERROR:
			sbb_gen_fail(g, "ERROR %u (%.*s) for request %llu", m.code, (int)m.text.len,
				     (const char *)m.text.ptr, (unsigned long long)m.id);
			return -1;
		case SB_PING: {
			struct sb_msg pong = {.kind = SB_PONG, .id = m.id};
			sbb_sb_queue(c, &pong);
			break;
		}
		default:
			break;
		}
	}
	if (r < 0) {
		sbb_gen_fail(g, "stream broken: %s", sb_strerror(r));
		return -1;
	}
	return 0;
}

const struct sbb_driver sbb_drv_sb = {
	.proto = "sb",
	.open = sb_open,
	.request = sb_request,
	.input = sb_input,
};
