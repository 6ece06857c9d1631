/* The NATS driver: the text protocol spoken directly (no libnats, which
 * holds every publish ~1 ms), with pipelined PUBs and batched reads, so
 * that the server, not the driver, is what a NATS run measures. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

/* Replies come back on one fixed inbox subject per connection, and the
 * request id rides in the payload after the stamp. The usual client pattern,
 * a wildcard inbox with a fresh token per request, makes every reply subject
 * new to the server's subject cache: measured here, nats-server then spends
 * 5.0 instead of 2.9 CPU-s per million rr-64 requests. The comparison is
 * with NATS at its cheapest. */
static char inbox_prefix[48];
static size_t inbox_len;

char *sbb_utoa(char *p, uint64_t v)
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

uint8_t *sbb_nats_pub(struct sbb_conn *c, const char *subject, size_t subject_len,
		      const char *reply, size_t reply_len, size_t n)
{
	char *p = (char *)sbb_out_reserve(c, 32 + subject_len + reply_len + n);
	char *start = p;
	memcpy(p, "PUB ", 4);
	p += 4;
	memcpy(p, subject, subject_len);
	p += subject_len;
	*p++ = ' ';
	if (reply) {
		memcpy(p, reply, reply_len);
		p += reply_len;
		*p++ = ' ';
	}
	p = sbb_utoa(p, n);
	*p++ = '\r';
	*p++ = '\n';
	p[n] = '\r';
	p[n + 1] = '\n';
	c->out_len += (size_t)(p - start) + n + 2;
	return (uint8_t *)p;
}

/* Splits "MSG <subject> <sid> [reply-to] <#bytes>" into its tokens. */
static int parse_msg_line(const char *l, size_t len, struct sbb_nats_msg *m)
{
	const char *tok[5];
	size_t tlen[5];
	unsigned nt = 0;
	size_t i = 4;
	while (i < len && nt < 5) {
		while (i < len && l[i] == ' ')
			i++;
		if (i == len)
			break;
		tok[nt] = l + i;
		while (i < len && l[i] != ' ')
			i++;
		tlen[nt] = (size_t)(l + i - tok[nt]);
		nt++;
	}
	if (nt < 3 || nt > 4)
		return -1;
	m->subject = tok[0];
	m->subject_len = tlen[0];
	m->reply = nt == 4 ? tok[2] : NULL;
	m->reply_len = nt == 4 ? tlen[2] : 0;
	m->len = 0;
	for (size_t k = 0; k < tlen[nt - 1]; k++)
		m->len = m->len * 10 + (size_t)(tok[nt - 1][k] - '0');
	return 0;
}

long sbb_nats_parse(struct sbb_conn *c, const uint8_t *p, size_t n,
		    void (*on_msg)(void *ud, struct sbb_conn *c, const struct sbb_nats_msg *m),
		    void *ud)
{
	size_t off = 0;
	while (off < n) {
		const uint8_t *nl = memchr(p + off, '\n', n - off);
		if (nl == NULL)
			break;
		const char *l = (const char *)p + off;
		size_t len = (size_t)((const char *)nl - l), next = off + len + 1;
		if (len > 0 && l[len - 1] == '\r')
			len--;
		if (len >= 4 && memcmp(l, "MSG ", 4) == 0) {
			struct sbb_nats_msg m;
			if (parse_msg_line(l, len, &m) != 0)
				return -1;
			if (next + m.len + 2 > n)
				break; /* the payload has not all arrived */
			m.data = p + next;
			on_msg(ud, c, &m);
			next += m.len + 2;
		} else if (len >= 4 && memcmp(l, "PING", 4) == 0) {
			sbb_out_put(c, "PONG\r\n", 6);
		} else if (len >= 4 && memcmp(l, "PONG", 4) == 0) {
			c->nats_ready = 1;
		} else if (len >= 4 && memcmp(l, "-ERR", 4) == 0) {
			fprintf(stderr, "sb-bench: nats: %.*s\n", (int)len, l);
			return -1;
		}
		/* INFO and +OK need no answer. */
		off = next;
	}
	return (long)off;
}

int sbb_nats_connect(struct sbb_conn *c, const char *host, uint16_t port)
{
	static const char hello[] = "CONNECT {\"verbose\":false,\"pedantic\":false,"
				    "\"echo\":false,\"name\":\"sb-bench\"}\r\n";
	c->fd = sbb_dial(host, port);
	if (c->fd < 0)
		return -1;
	sbb_out_put(c, hello, sizeof hello - 1);
	return 0;
}

static void ignore_msg(void *ud, struct sbb_conn *c, const struct sbb_nats_msg *m)
{
	(void)ud, (void)c, (void)m;
}

/* PING/PONG after the subscriptions: once PONG is back, the server has
 * processed every SUB before it, so no request can miss its subscriber. */
int sbb_nats_sync(struct sbb_conn *c)
{
	uint8_t buf[8192];
	sbb_out_put(c, "PING\r\n", 6);
	if (sbb_conn_flush_all(c) != 0)
		return -1;
	c->nats_ready = 0;
	while (!c->nats_ready) {
		ssize_t n = sbb_recv_wait(c->fd, buf, sizeof buf, 5000);
		if (n <= 0)
			return -1;
		sbb_in_keep(c, buf, (size_t)n);
		long used = sbb_nats_parse(c, c->in, c->in_len, ignore_msg, NULL);
		if (used < 0)
			return -1;
		memmove(c->in, c->in + used, c->in_len - (size_t)used);
		c->in_len -= (size_t)used;
	}
	return sbb_conn_flush_all(c);
}

static int nats_open(struct sbb_conn *c, const char *host, uint16_t port)
{
	char sub[96], *p;
	if (inbox_len == 0)
		inbox_len = (size_t)snprintf(inbox_prefix, sizeof inbox_prefix, "_INBOX.%d.",
					     (int)getpid());
	if (sbb_nats_connect(c, host, port) != 0)
		return -1;
	p = sub + snprintf(sub, sizeof sub, "SUB %s", inbox_prefix);
	p = sbb_utoa(p, c->idx);
	memcpy(p, " 1\r\n", 4);
	sbb_out_put(c, sub, (size_t)(p + 4 - sub));
	if (sbb_nats_sync(c) != 0)
		return -1;
	fcntl(c->fd, F_SETFL, O_NONBLOCK);
	return 0;
}

static void nats_request(struct sbb_conn *c, const struct sbb_workload *w, uint64_t id,
			 uint64_t stamp, size_t size)
{
	char reply[96], *r = reply;
	uint8_t *data;
	if (w->shape == SBB_FIRE) {
		data = sbb_nats_pub(c, "bench.fire", 10, NULL, 0, size);
	} else {
		memcpy(r, inbox_prefix, inbox_len);
		r = sbb_utoa(r + inbox_len, c->idx);
		if (w->shape == SBB_FAN)
			data = sbb_nats_pub(c, "bench.fan", 9, reply, (size_t)(r - reply), size);
		else
			data = sbb_nats_pub(c, "bench.echo", 10, reply, (size_t)(r - reply), size);
	}
	memcpy(data, &stamp, sizeof stamp);
	memcpy(data + SBB_STAMP_LEN, &id, sizeof id);
}

struct reply_ctx {
	struct sbb_gen *g;
};

static void on_reply(void *ud, struct sbb_conn *c, const struct sbb_nats_msg *m)
{
	struct reply_ctx *x = ud;
	uint64_t id = 0;
	if (m->len < SBB_STAMP_LEN) {
		sbb_gen_fail(x->g, "nats: reply of %zu bytes, no stamp", m->len);
		return;
	}
	if (m->len >= SBB_STAMP_LEN + sizeof id)
		memcpy(&id, m->data + SBB_STAMP_LEN, sizeof id);
	sbb_gen_reply(x->g, c, id, m->data, m->len);
}

static int nats_input(struct sbb_gen *g, struct sbb_conn *c, const uint8_t *p, size_t n)
{
	struct reply_ctx x = {g};
	if (c->in_len > 0) {
		/* A message straddled the last read: parse from the carry-over. */
		sbb_in_keep(c, p, n);
		long used = sbb_nats_parse(c, c->in, c->in_len, on_reply, &x);
		if (used < 0)
			goto fail;
		memmove(c->in, c->in + used, c->in_len - (size_t)used);
		c->in_len -= (size_t)used;
		return 0;
	}
	long used = sbb_nats_parse(c, p, n, on_reply, &x);
	if (used < 0)
		goto fail;
	if ((size_t)used < n)
		sbb_in_keep(c, p + used, n - (size_t)used);
	return 0;
fail:
	sbb_gen_fail(g, "nats: protocol error");
	return -1;
}

const struct sbb_driver sbb_drv_nats = {
	.proto = "nats",
	.open = nats_open,
	.request = nats_request,
	.input = nats_input,
};
