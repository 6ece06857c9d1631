/* The NATS connection's configuration: the server URLs parsed and resolved
 * once, the defaults filled in, and the connection made and freed. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <switchboard/error.h>

#include "common/clock.h"
#include "common/idmap.h"
#include "common/nats-int.h"
#include "common/tls.h"

/* ---- configuration ------------------------------------------------------ */

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static int resolve(const char *host, uint16_t port, union addr *a, socklen_t *len)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
	int rc = SB_ESYS;

	memset(a, 0, sizeof *a);
	if (inet_pton(AF_INET, host, &a->v4.sin_addr) == 1) {
		a->v4.sin_family = AF_INET;
		a->v4.sin_port = htons(port);
		*len = sizeof a->v4;
		return 0;
	}
	if (inet_pton(AF_INET6, host, &a->v6.sin6_addr) == 1) {
		a->v6.sin6_family = AF_INET6;
		a->v6.sin6_port = htons(port);
		*len = sizeof a->v6;
		return 0;
	}
	if (getaddrinfo(host, NULL, &hints, &res) != 0)
		return SB_ESYS;
	if (res->ai_addrlen <= sizeof *a &&
	    (res->ai_family == AF_INET || res->ai_family == AF_INET6)) {
		memcpy(a, res->ai_addr, res->ai_addrlen);
		*len = res->ai_addrlen;
		if (a->sa.sa_family == AF_INET)
			a->v4.sin_port = htons(port);
		else
			a->v6.sin6_port = htons(port);
		rc = 0;
	}
	freeaddrinfo(res);
	return rc;
}

/* "nats://[user:pass@]host[:port]", "tls://...", or "host:port". */
static int parse_url(const char *u, size_t len, struct server *s, char *why, size_t cap)
{
	char buf[512], *h, *at, *colon, *end;
	unsigned long port = 4222;

	if (len == 0 || len >= sizeof buf) {
		snprintf(why, cap, "cluster server URL of %zu bytes", len);
		return SB_EINVAL;
	}
	memcpy(buf, u, len);
	buf[len] = '\0';
	h = buf;
	if (strncmp(h, "nats://", 7) == 0) {
		h += 7;
	} else if (strncmp(h, "tls://", 6) == 0) {
		h += 6;
		s->tls = 1;
	} else if (strstr(h, "://") != NULL) {
		snprintf(why, cap, "cluster server %s: only nats:// and tls://", buf);
		return SB_EINVAL;
	}
	if ((at = strrchr(h, '@')) != NULL) {
		*at = '\0';
		if ((colon = strchr(h, ':')) != NULL) {
			*colon = '\0';
			s->pass = strdup(colon + 1);
		}
		s->user = strdup(h);
		h = at + 1;
	}
	if (*h == '[') { /* [v6]:port */
		end = strchr(h, ']');
		if (end == NULL) {
			snprintf(why, cap, "cluster server %s: no ']'", buf);
			return SB_EINVAL;
		}
		*end = '\0';
		colon = end[1] == ':' ? end + 1 : NULL;
		h++;
	} else {
		colon = strrchr(h, ':');
		if (colon != NULL)
			*colon = '\0';
	}
	if (colon != NULL) {
		char *e;
		errno = 0;
		port = strtoul(colon + 1, &e, 10);
		if (errno != 0 || *e != '\0' || port == 0 || port > 65535) {
			snprintf(why, cap, "cluster server %.*s: bad port", (int)len, u);
			return SB_EINVAL;
		}
	}
	if (*h == '\0') {
		snprintf(why, cap, "cluster server %.*s: no host", (int)len, u);
		return SB_EINVAL;
	}
	s->host = strdup(h);
	if (s->host == NULL)
		return SB_ENOMEM;
	if (resolve(h, (uint16_t)port, &s->a, &s->alen) != 0) {
		snprintf(why, cap, "cluster server %s: host not found", h);
		return SB_ESYS;
	}
	snprintf(buf, sizeof buf, "%s://%s%s%s:%lu", s->tls ? "tls" : "nats",
		 strchr(s->host, ':') ? "[" : "", s->host, strchr(s->host, ':') ? "]" : "", port);
	s->url = strdup(buf);
	return s->url ? 0 : SB_ENOMEM;
}

int sb__nats_new(const struct sb__nats_cfg *cfg, struct sb__nats **out, char *why, size_t cap)
{
	struct sb__nats *nc;
	const char *p;
	int rc = SB_ENOMEM, any_tls = 0;

	*out = NULL;
	snprintf(why, cap, "out of memory");
	if (cfg->servers == NULL || cfg->servers[0] == '\0') {
		snprintf(why, cap, "no cluster servers");
		return SB_EINVAL;
	}
	if ((nc = calloc(1, sizeof *nc)) == NULL)
		return SB_ENOMEM;
	nc->fd = -1;
	nc->cfg = *cfg;
	nc->cfg.servers = NULL;
	nc->cfg.user = dup_or_null(cfg->user);
	nc->cfg.pass = dup_or_null(cfg->pass);
	nc->cfg.token = dup_or_null(cfg->token);
	nc->cfg.tls_ca = NULL;
	nc->cfg.tls_cert = nc->cfg.tls_key = NULL; /* loaded below, not kept */
	nc->cfg.name = dup_or_null(cfg->name);
	if (nc->cfg.out_max == 0)
		nc->cfg.out_max = 1u << 20;
	if (nc->cfg.ping_ms == 0)
		nc->cfg.ping_ms = 2000;
	if (nc->cfg.pings_max == 0)
		nc->cfg.pings_max = 2;
	if (nc->cfg.backoff_min_ms == 0)
		nc->cfg.backoff_min_ms = 10;
	if (nc->cfg.backoff_max_ms < nc->cfg.backoff_min_ms)
		nc->cfg.backoff_max_ms =
			nc->cfg.backoff_min_ms > 2000 ? nc->cfg.backoff_min_ms : 2000;
	if (nc->cfg.connect_ms == 0)
		nc->cfg.connect_ms = 2000;
	if (nc->cfg.reads_max == 0)
		nc->cfg.reads_max = 16;
	sb__idmap_init(&nc->sids);
	nc->max_payload = 1u << 20;
	nc->next_sid = 1;
	nc->next_token = 1;
	if (getrandom(&nc->rng, sizeof nc->rng, 0) != sizeof nc->rng || nc->rng == 0)
		nc->rng = sb__now_us() | 1;

	for (p = cfg->servers; *p;) {
		const char *e = strchr(p, ',');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		struct server *s;
		while (len > 0 && *p == ' ')
			p++, len--;
		s = realloc(nc->srv, (nc->nsrv + 1) * sizeof *s);
		if (s == NULL)
			goto fail;
		nc->srv = s;
		s = &nc->srv[nc->nsrv++];
		memset(s, 0, sizeof *s);
		if ((rc = parse_url(p, len, s, why, cap)) != 0)
			goto fail;
		any_tls |= s->tls;
		p += len;
		if (*p == ',')
			p++;
	}
	if (cfg->tls_ca != NULL || cfg->tls_cert != NULL || any_tls) {
		rc = sb__tls_client_ctx(cfg->tls_ca, cfg->tls_cert, cfg->tls_key, &nc->tls_ctx, why,
					cap);
		if (rc != 0)
			goto fail;
	}
	nc->in_cap = READ_CHUNK;
	nc->out_cap = 16u << 10;
	nc->in = malloc(nc->in_cap);
	nc->out = malloc(nc->out_cap);
	nc->rbuf = malloc(READ_CHUNK);
	if (nc->in == NULL || nc->out == NULL || nc->rbuf == NULL) {
		rc = SB_ENOMEM;
		goto fail;
	}
	nc->cfg.tls_ca = cfg->tls_ca ? "" : NULL; /* only whether it was set is kept */
	why[0] = '\0';
	*out = nc;
	return 0;
fail:
	nc->cfg.tls_ca = NULL;
	sb__nats_free(nc);
	return rc;
}

void sb__nats_free(struct sb__nats *nc)
{
	if (nc == NULL)
		return;
	if (nc->fd >= 0)
		close(nc->fd);
	nc->fd = -1;
	/* Every request ends once, even now; a callback's new publish finds
	 * the connection offline and is refused, so none is left behind. */
	nc->st = ST_WAIT;
	nc->dropping = 1;
	sb__nats_fail_requests(nc, SB_EOFFLINE);
	sb__tls_free(nc->tls);
	if (nc->tls_ctx)
		sb__tls_ctx_put(nc->tls_ctx);
	for (unsigned i = 0; i < nc->nsrv; i++) {
		free(nc->srv[i].host);
		free(nc->srv[i].url);
		free(nc->srv[i].user);
		free(nc->srv[i].pass);
	}
	free(nc->srv);
	sb__nats_forget_gone(nc, UINT64_MAX);
	while (nc->subs) {
		struct sub *s = nc->subs;
		nc->subs = s->next;
		free(s->subject);
		free(s->queue);
		free(s);
	}
	sb__idmap_destroy(&nc->sids);
	free((char *)nc->cfg.user);
	free((char *)nc->cfg.pass);
	free((char *)nc->cfg.token);
	free((char *)nc->cfg.name);
	free(nc->in);
	free(nc->out);
	free(nc->rbuf);
	free(nc);
}
