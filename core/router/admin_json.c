/* GET /v1/routes, /v1/peers and /v1/stats on the admin listener: the
 * router's own answer to the $sb name, the exact MessagePack a client
 * would get, printed as JSON. Rare requests from an operator's browser or
 * scraper: clarity over speed, as in admin.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <switchboard/error.h>
#include <switchboard/proto.h>

#include "common/json.h"
#include "router/admin.h"
#include "router/admin_json.h"
#include "router/cluster_admin.h"
#include "router/router-t.h"
#include "router/shard.h"

/* The edge's error body (docs/gateway.md), with the status it goes with. */
static void fail(struct sb__admin_reply *a, int status, int code, const char *message)
{
	char buf[512], name[32];
	struct sb__http_out o;

	sb__http_out_init(&o, buf, sizeof buf);
	sb__http_put(&o, "{\"error\":", 9);
	sb__http_json_str(&o, sb_strerror(code), strlen(sb_strerror(code)));
	snprintf(name, sizeof name, "SB_%s", sb_errname(code));
	sb__http_put(&o, ",\"code\":", 8);
	sb__http_json_str(&o, name, strlen(name));
	sb__http_put(&o, ",\"message\":", 11);
	sb__http_json_str(&o, message, strlen(message) < 256 ? strlen(message) : 256);
	sb__http_put(&o, "}\n", 2);
	a->status = status;
	a->body.len = 0;
	if (sb__http_out_done(&o) == 0)
		sb__admin_put(&a->body, o.p, o.len);
	else
		a->body.err = SB_ENOMEM;
}

/* No arguments, as a client's request carries them: nil (a view of no
 * bytes has no pointer to read from). */
static const uint8_t nil = 0xc0;

/* An answer (rc 0: the MessagePack mp) as JSON, or its error. */
static void render(struct sb__shard *sh, int rc, const char *mp, size_t mplen, const char *why,
		   struct sb__admin_reply *a)
{
	struct sb__json_buf body = {0};

	if (rc == SB_EINVAL) {
		fail(a, 400, rc, why);
		return;
	}
	/* A client is refused an answer over max_frame; so is a browser. */
	if (rc == 0 && mplen > sh->r->cfg.max_frame)
		rc = SB_ETOOLARGE;
	if (rc == 0)
		rc = sb__json_print(mp, mplen, &body);
	if (rc == 0) {
		sb__admin_put(&a->body, body.data, body.len);
		sb__admin_put(&a->body, "\n", 1);
	} else if (rc == SB_ETOOLARGE) {
		fail(a, 413, rc, "the answer is larger than max_frame");
	} else {
		fail(a, 500, rc, "out of memory");
	}
	sb__json_buf_free(&body);
}

void sb__admin_json_later(struct sb__shard *sh, struct sb__conn *c, int keep, int head, int rc,
			  const char *mp, size_t mplen, const char *why)
{
	struct sb__admin_reply a = {.status = 200, .content_type = "application/json"};
	render(sh, rc, mp, mplen, why, &a);
	sb__admin_http_later(sh, c, keep, head, &a);
	free(a.body.p);
}

/* The answer to reserved name @p name with arguments @p args, as JSON: in
 * a cluster, every router's (later: cluster_admin.c), unless the query
 * says local=true. */
static void answer(struct sb__shard *sh, const struct sb__http_req *r, const char *name,
		   struct sb_view args, struct sb__admin_reply *a)
{
	char why[128], *mp = NULL;
	size_t mplen = 0;
	struct sb__http_str local;
	struct sb_view nv = {(const uint8_t *)name, (uint32_t)strlen(name)};

	if (sh->xs != NULL && a->c != NULL &&
	    !(sb__http_query(r->query, "local", &local) && local.len == 4 &&
	      memcmp(local.p, "true", 4) == 0)) {
		sb__admin_http_defer(sh, a->c);
		a->status = 0;
		sb__xadmin_http(sh, a->c, nv, args, a->keep, a->head);
		return;
	}
	int rc = sb__admin_answer(sh, nv, args, &mp, &mplen, why, sizeof why);
	render(sh, rc, mp, mplen, why, a);
	free(mp);
}

void sb__admin_json_routes(struct sb__shard *sh, const struct sb__http_req *r,
			   struct sb__admin_reply *a)
{
	answer(sh, r, "$sb.routes", (struct sb_view){&nil, 1}, a);
}

void sb__admin_json_peers(struct sb__shard *sh, const struct sb__http_req *r,
			  struct sb__admin_reply *a)
{
	answer(sh, r, "$sb.peers", (struct sb_view){&nil, 1}, a);
}

static int hex(char c)
{
	return c >= '0' && c <= '9'   ? c - '0'
	       : c >= 'a' && c <= 'f' ? c - 'a' + 10
	       : c >= 'A' && c <= 'F' ? c - 'A' + 10
				      : -1;
}

/* {"after": NAME} as $sb.stats takes it, NAME percent-decoded from @p v
 * ('+' stays a plus: the page encodes with encodeURIComponent). A name has
 * at most SB_NAME_MAX bytes: a longer one names no route and is refused
 * rather than copied. @return the payload's length, or 0 */
static size_t after_args(struct sb__http_str v, uint8_t out[SB_NAME_MAX + 9])
{
	size_t n = 0;

	for (uint32_t i = 0; i < v.len; i++) {
		int c = (uint8_t)v.p[i];
		if (c == '%') {
			int hi = i + 2 < v.len ? hex(v.p[i + 1]) : -1;
			int lo = i + 2 < v.len ? hex(v.p[i + 2]) : -1;
			if (hi < 0 || lo < 0)
				return 0;
			c = hi << 4 | lo;
			i += 2;
		}
		if (n == SB_NAME_MAX)
			return 0;
		out[9 + n++] = (uint8_t)c;
	}
	memcpy(out,
	       "\x81\xa5"
	       "after\xd9",
	       8);
	out[8] = (uint8_t)n;
	return n + 9;
}

void sb__admin_json_stats(struct sb__shard *sh, const struct sb__http_req *r,
			  struct sb__admin_reply *a)
{
	uint8_t args[SB_NAME_MAX + 9];
	struct sb_view v = {&nil, 1};
	struct sb__http_str after;

	if (sb__http_query(r->query, "after", &after)) {
		v.len = (uint32_t)after_args(after, args);
		if (v.len == 0) {
			fail(a, 400, SB_EINVAL,
			     "after must name a route: at most 255 bytes, percent-encoded");
			return;
		}
		v.ptr = args;
	}
	answer(sh, r, "$sb.stats", v, a);
}
