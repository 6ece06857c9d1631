/* The admin listener's endpoints (admin_http.h). Each answer is written
 * whole, then queued as raw bytes on the connection the way the edge
 * queues its HTTP answers (conn_ws.c sends them), so a slow reader holds
 * only its own queue. */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <switchboard/error.h>

#include "router/admin_http.h"
#include "router/admin_json.h"
#include "router/admin_page.h"
#include "router/conn.h"
#include "router/conn_ws.h"
#include "router/metrics.h"
#include "router/outq.h"
#include "router/shard.h"

/* The endpoints. A row added here is served; keep docs/operations.md's
 * list in step. */
static const struct sb__admin_route routes[] = {
	{SB__HTTP_M_GET, "/metrics", sb__metrics_http},
	{SB__HTTP_M_GET, "/", sb__admin_page},
	{SB__HTTP_M_GET, "/v1/routes", sb__admin_json_routes},
	{SB__HTTP_M_GET, "/v1/peers", sb__admin_json_peers},
	{SB__HTTP_M_GET, "/v1/stats", sb__admin_json_stats},
	{0, NULL, NULL},
};

void sb__admin_put(struct sb__admin_body *b, const void *p, size_t n)
{
	if (b->err != 0 || n == 0)
		return;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n)
			cap *= 2;
		char *q = realloc(b->p, cap);
		if (q == NULL) {
			b->err = SB_ENOMEM;
			return;
		}
		b->p = q;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

void sb__admin_printf(struct sb__admin_body *b, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->err = SB_ENOMEM;
		return;
	}
	if ((size_t)n < sizeof line) {
		sb__admin_put(b, line, (size_t)n);
		return;
	}
	/* Longer than a line: written again into room of its size. */
	char *big = malloc((size_t)n + 1);
	if (big == NULL) {
		b->err = SB_ENOMEM;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	sb__admin_put(b, big, (size_t)n);
	free(big);
}

/* The answer is queued: the next request may be read, within the
 * deadline a first one has; one that does not keep the connection ends it. */
static void answered(struct sb__shard *sh, struct sb__conn *c, int keep)
{
	struct sb__edge *e = c->edge;

	sb__http_answered(&e->http);
	e->partial = 0;
	if (!keep) {
		e->reading = 0;
		c->doomed = 1;
	} else if (sh->r->cfg.hello_timeout_ms > 0)
		sb__timer_arm(&sh->wheel, &c->hello_timer, sh->now + sh->r->cfg.hello_timeout_ms);
	sb__outq_mark(sh, c);
}

/* Head and body in one buffer, queued as they are. */
static void queue(struct sb__shard *sh, struct sb__conn *c, const char *head, size_t hn,
		  const char *body, size_t bn)
{
	struct sb__buf *b = sb__buf_heap(hn + bn);
	if (b == NULL) {
		sb__conn_close(sh, c, "out of memory");
		return;
	}
	memcpy(b->data, head, hn);
	if (bn > 0)
		memcpy(b->data + hn, body, bn);
	sb__edge_put_raw(sh, c, b, hn + bn);
}

/* An error answer with the edge's JSON body (docs/gateway.md). */
static void error(struct sb__shard *sh, struct sb__conn *c, int status, int code, const char *why,
		  const char *allow, int keep)
{
	char buf[1024];
	struct sb__http_out o;

	sb__http_out_init(&o, buf, sizeof buf);
	sb__http_error(&o, status, code, why, keep);
	if (sb__http_out_done(&o) != 0)
		return;
	if (allow != NULL) { /* 405: the field goes right after the status line */
		const char *rest = memchr(o.p, '\n', o.len);
		char head[1100];
		int n = snprintf(head, sizeof head, "%.*sAllow: %s\r\n", (int)(rest + 1 - o.p), o.p,
				 allow);
		if (n < 0 || (size_t)n >= sizeof head)
			return;
		queue(sh, c, head, (size_t)n, rest + 1, o.len - (size_t)(rest + 1 - o.p));
	} else
		queue(sh, c, o.p, o.len, NULL, 0);
	if (!c->closing)
		answered(sh, c, keep);
}

static void reply(struct sb__shard *sh, struct sb__conn *c, int keep, int head_only,
		  struct sb__admin_reply *a)
{
	char head[512];
	struct sb__http_out o;

	if (a->body.err != 0) {
		error(sh, c, 500, SB_ENOMEM, "out of memory", NULL, keep);
		return;
	}
	sb__http_out_init(&o, head, sizeof head);
	sb__http_status_line(&o, a->status);
	sb__http_field(&o, "Content-Type", a->content_type, strlen(a->content_type));
	sb__http_field_uint(&o, "Content-Length", a->body.len);
	/* Live state: a cache or a browser must ask again. */
	sb__http_field(&o, "Cache-Control", "no-store", 8);
	if (!keep)
		sb__http_field(&o, "Connection", "close", 5);
	sb__http_end_head(&o);
	if (sb__http_out_done(&o) != 0) {
		error(sh, c, 500, SB_EINTERNAL, "answer head too long", NULL, keep);
		return;
	}
	queue(sh, c, o.p, o.len, a->body.p, head_only ? 0 : a->body.len);
	if (!c->closing)
		answered(sh, c, keep);
}

void sb__admin_http_defer(struct sb__shard *sh, struct sb__conn *c)
{
	(void)sh;
	c->edge->call = SB__CALL_OUT; /* what comes meanwhile is held (conn_ws.c) */
	sb__timer_disarm(&c->hello_timer);
}

void sb__admin_http_later(struct sb__shard *sh, struct sb__conn *c, int keep, int head,
			  struct sb__admin_reply *a)
{
	struct sb__edge *e = c->edge;
	e->call = SB__CALL_NONE;
	if (e->held_len > 0)
		e->resume = 1; /* read at the flush, outside what answered it */
	reply(sh, c, keep, head, a);
}

/* "GET, HEAD" and the other methods @p path is served by, for Allow. */
static void methods_of(const char *path, char *out, size_t cap)
{
	static const char *const names[] = {
		[SB__HTTP_M_GET] = "GET, HEAD", [SB__HTTP_M_HEAD] = "HEAD",
		[SB__HTTP_M_POST] = "POST",     [SB__HTTP_M_PUT] = "PUT",
		[SB__HTTP_M_DELETE] = "DELETE", [SB__HTTP_M_OPTIONS] = "OPTIONS",
		[SB__HTTP_M_PATCH] = "PATCH",
	};
	size_t n = 0;

	out[0] = '\0';
	for (const struct sb__admin_route *t = routes; t->path != NULL; t++)
		if (strcmp(t->path, path) == 0 && n + 16 < cap)
			n += (size_t)snprintf(out + n, cap - n, "%s%s", n > 0 ? ", " : "",
					      names[t->method]);
}

static int path_is(struct sb__http_str p, const char *path)
{
	return p.len == strlen(path) && memcmp(p.p, path, p.len) == 0;
}

static int is_loopback_v4(const char *s, size_t n)
{
	char a[INET_ADDRSTRLEN];
	struct in_addr in;

	if (n == 0 || n >= sizeof a)
		return 0;
	memcpy(a, s, n);
	a[n] = '\0';
	return inet_pton(AF_INET, a, &in) == 1 && (ntohl(in.s_addr) >> 24) == 127;
}

/* Host names a loopback listener answers to: localhost, 127.x.y.z and
 * [::1], each with or without a port. */
static int loopback_host(struct sb__http_str h)
{
	size_t n = h.len; /* the name's bytes, before any ":port" */

	if (n >= 5 && memcmp(h.p, "[::1]", 5) == 0) {
		n = 5;
	} else {
		const char *colon = memchr(h.p, ':', h.len);
		if (colon != NULL)
			n = (size_t)(colon - h.p);
	}
	if (n < h.len) {
		if (h.p[n] != ':' || n + 1 == h.len)
			return 0;
		for (size_t i = n + 1; i < h.len; i++)
			if (h.p[i] < '0' || h.p[i] > '9')
				return 0;
	}
	return (n == 5 && memcmp(h.p, "[::1]", 5) == 0) ||
	       (n == 9 && strncasecmp(h.p, "localhost", 9) == 0) || is_loopback_v4(h.p, n);
}

void sb__admin_http(struct sb__shard *sh, struct sb__conn *c, const struct sb__http_req *r)
{
	const struct sb__admin_route *t, *other = NULL;
	char why[256];

	/* A page from another site can make a browser ask this port under a
	 * name its own DNS points at 127.0.0.1 (DNS rebinding), and read the
	 * answers as its own. A listener on loopback serves only requests
	 * whose Host is a loopback name; one an operator put on another
	 * address is reached by names we cannot know. */
	const char *addr = sh->r->cfg.admin_addr;
	if (r->host.len > 0 && is_loopback_v4(addr, strlen(addr)) && !loopback_host(r->host)) {
		snprintf(why, sizeof why,
			 "Host %.*s is not a loopback name (localhost, 127.0.0.1, [::1]): this "
			 "listener is on %s",
			 (int)(r->host.len < 64 ? r->host.len : 64), r->host.p, addr);
		error(sh, c, 403, SB_EFORBIDDEN, why, NULL, r->keep_alive);
		return;
	}

	for (t = routes; t->path != NULL; t++) {
		if (!path_is(r->path, t->path))
			continue;
		if (t->method == r->method ||
		    (t->method == SB__HTTP_M_GET && r->method == SB__HTTP_M_HEAD))
			break;
		other = t;
	}
	if (t->path != NULL) {
		struct sb__admin_reply a = {.status = 200,
					    .content_type = "application/json",
					    .c = c,
					    .keep = r->keep_alive,
					    .head = r->method == SB__HTTP_M_HEAD};
		t->fn(sh, r, &a);
		if (a.status != 0)
			reply(sh, c, a.keep, a.head, &a);
		free(a.body.p);
		return;
	}
	if (other != NULL) { /* the path is served, by another method */
		char allow[96];
		methods_of(other->path, allow, sizeof allow);
		snprintf(why, sizeof why, "%s takes %s", other->path, allow);
		error(sh, c, 405, SB_EUNSUPPORTED, why, allow, r->keep_alive);
		return;
	}
	size_t n = (size_t)snprintf(why, sizeof why, "nothing at %.*s (the admin listener serves",
				    (int)(r->path.len < 48 ? r->path.len : 48), r->path.p);
	for (t = routes; t->path != NULL && n + strlen(t->path) + 4 < sizeof why; t++)
		n += (size_t)snprintf(why + n, sizeof why - n, "%s %s", t == routes ? "" : ",",
				      t->path);
	snprintf(why + n, sizeof why - n, ")");
	error(sh, c, 404, SB_ENOHANDLER, why, NULL, r->keep_alive);
}
