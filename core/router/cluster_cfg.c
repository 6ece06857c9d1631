/* The cluster's settings (docs/cluster.md, "Settings"): the NATS servers,
 * credentials (strings or secret files), TLS files, this router's id and
 * the dead time, checked once at sb_router_new() and copied into the
 * router's part (struct sb__xrouter), which every shard's connection is
 * made from. Nothing here runs without `cluster`, except refusing a
 * cluster_* setting given without it. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "common/hmac.h"
#include "common/log.h"
#include "common/nats.h"
#include "router/auth.h"
#include "router/cluster-int.h"
#include "router/cluster.h"
#include "router/cluster_presence.h"
#include "router/router-t.h"

/* A secret from a file, minus one trailing newline, NUL-terminated. */
static int secret_file(const char *key, const char *path, char **out, char *why, size_t cap)
{
	uint8_t *p;
	size_t n;
	int rc = sb__auth_secret_read(path, &p, &n);

	if (rc != 0) {
		snprintf(why, cap, "%s %s: %s", key, path,
			 rc == SB_ESYS ? strerror(errno) : "empty, or longer than 4096 bytes");
		return rc;
	}
	if (memchr(p, 0, n) != NULL || (*out = malloc(n + 1)) == NULL) {
		rc = memchr(p, 0, n) != NULL ? SB_EINVAL : SB_ENOMEM;
		snprintf(why, cap, "%s %s: %s", key, path,
			 rc == SB_EINVAL ? "holds a NUL byte" : "out of memory");
	} else {
		memcpy(*out, p, n);
		(*out)[n] = 0;
	}
	sb__hmac_wipe(p, n);
	free(p);
	return rc;
}

/* One of a string and a file: the string copied, or the file read. */
static int secret_one(const char *key, const char *text, const char *file, char **out, char *why,
		      size_t cap)
{
	if (text != NULL && file != NULL) {
		snprintf(why, cap, "%s: given both as a string and as a file", key);
		return SB_EINVAL;
	}
	if (file != NULL) {
		char k[64];
		snprintf(k, sizeof k, "%s_file", key);
		return secret_file(k, file, out, why, cap);
	}
	if (text == NULL)
		return 0;
	if (text[0] == 0) {
		snprintf(why, cap, "%s: empty", key);
		return SB_EINVAL;
	}
	return (*out = strdup(text)) != NULL ? 0 : SB_ENOMEM;
}

/* cluster_name: one NATS subject token, short enough for every subject
 * it is part of (sb.i.<R>.<k>.<rid>, "Sb-Hand: <R>.<k>"). */
static const char *bad_name(const char *n)
{
	size_t len = strlen(n);
	if (len == 0 || len > 32)
		return "expected 1 to 32 characters";
	for (size_t i = 0; i < len; i++)
		if (!((n[i] >= 'a' && n[i] <= 'z') || (n[i] >= 'A' && n[i] <= 'Z') ||
		      (n[i] >= '0' && n[i] <= '9') || n[i] == '-' || n[i] == '_'))
			return "only letters, digits, '-' and '_' (it is a NATS subject token)";
	return NULL;
}

/* The settings, checked and copied; why says what is wrong. */
static int router_settings(struct sb__xrouter *xr, const struct sb_router_config *c, char *why,
			   size_t cap)
{
	const char *bad;
	int rc;

	if (c->cluster_name != NULL && (bad = bad_name(c->cluster_name)) != NULL) {
		snprintf(why, cap, "cluster_name %s: %s", c->cluster_name, bad);
		return SB_EINVAL;
	}
	if (c->cluster_dead_ms < 300 || c->cluster_dead_ms > 600000) {
		snprintf(why, cap, "cluster_dead_ms %u: expected 300 to 600000",
			 (unsigned)c->cluster_dead_ms);
		return SB_EINVAL;
	}
	if (c->cluster_key != NULL && c->cluster_cert == NULL) {
		snprintf(why, cap, "cluster_key needs cluster_cert");
		return SB_EINVAL;
	}
	if ((rc = secret_one("cluster_pass", c->cluster_pass, c->cluster_pass_file, &xr->pass, why,
			     cap)) != 0 ||
	    (rc = secret_one("cluster_token", c->cluster_token, c->cluster_token_file, &xr->token,
			     why, cap)) != 0)
		return rc;
	if ((xr->pass != NULL) != (c->cluster_user != NULL)) {
		snprintf(why, cap,
			 xr->pass != NULL ? "cluster_pass needs cluster_user"
					  : "cluster_user needs cluster_pass");
		return SB_EINVAL;
	}
	if (xr->pass != NULL && xr->token != NULL) {
		snprintf(why, cap, "cluster_token and cluster_user: one or the other");
		return SB_EINVAL;
	}
	if ((c->cluster_user != NULL && (xr->user = strdup(c->cluster_user)) == NULL) ||
	    (c->cluster_ca != NULL && (xr->ca = strdup(c->cluster_ca)) == NULL) ||
	    (c->cluster_cert != NULL && (xr->cert = strdup(c->cluster_cert)) == NULL) ||
	    (c->cluster_key != NULL && (xr->key = strdup(c->cluster_key)) == NULL))
		return SB_ENOMEM;
	xr->dead_ms = c->cluster_dead_ms;
	xr->beat_ms = c->cluster_dead_ms / 6;
	return 0;
}

/* Whether any cluster_* setting is given: without `cluster`, a mistake. */
static const char *cluster_setting(const struct sb_router_config *c)
{
	return c->cluster_user         ? "cluster_user"
	       : c->cluster_pass       ? "cluster_pass"
	       : c->cluster_pass_file  ? "cluster_pass_file"
	       : c->cluster_token      ? "cluster_token"
	       : c->cluster_token_file ? "cluster_token_file"
	       : c->cluster_ca         ? "cluster_ca"
	       : c->cluster_cert       ? "cluster_cert"
	       : c->cluster_key        ? "cluster_key"
	       : c->cluster_name       ? "cluster_name"
				       : NULL;
}

/* The connection's settings from the router's (servers, credentials, TLS). */
struct sb__nats_cfg sb__cluster_nats_cfg(const struct sb__xrouter *xr)
{
	return (struct sb__nats_cfg){.servers = xr->servers,
				     .user = xr->user,
				     .pass = xr->pass,
				     .token = xr->token,
				     .tls_ca = xr->ca,
				     .tls_cert = xr->cert,
				     .tls_key = xr->key};
}

int sb__cluster_router_init(struct sb_router *r, const struct sb_router_config *c)
{
	struct sb__xrouter *xr;
	uint64_t rnd[2] = {0, 0};
	const char *alone;
	char why[320];
	int rc;

	/* Only what the router keeps (below, copied) may be read later. */
	r->cfg.cluster_user = r->cfg.cluster_pass = r->cfg.cluster_pass_file = NULL;
	r->cfg.cluster_token = r->cfg.cluster_token_file = NULL;
	r->cfg.cluster_ca = r->cfg.cluster_cert = r->cfg.cluster_key = r->cfg.cluster_name = NULL;
	if (c->cluster == NULL) {
		if ((alone = cluster_setting(c)) == NULL)
			return 0;
		sb__log(&r->log, 0, "%s: needs cluster (the NATS servers)", alone);
		return SB_EINVAL;
	}
	if ((xr = calloc(1, sizeof *xr)) == NULL || (xr->servers = strdup(c->cluster)) == NULL) {
		free(xr);
		return SB_ENOMEM;
	}
	r->xr = xr;
	r->cfg.cluster = xr->servers;
	if (sb__xpres_router_init(xr) != 0)
		return SB_ENOMEM;
	if ((rc = router_settings(xr, c, why, sizeof why)) != 0) {
		if (rc != SB_ENOMEM)
			sb__log(&r->log, 0, "%s", why);
		return rc == SB_ESYS ? SB_EINVAL : rc;
	}
	if (getrandom(rnd, sizeof rnd, 0) != sizeof rnd)
		rnd[0] = (uint64_t)(uintptr_t)xr ^ ((uint64_t)getpid() << 32), rnd[1] = rnd[0] * 3;
	if (c->cluster_name != NULL)
		snprintf(xr->id, sizeof xr->id, "%s", c->cluster_name);
	else
		snprintf(xr->id, sizeof xr->id, "r%016" PRIx64, rnd[0]);
	snprintf(xr->inc, sizeof xr->inc, "%016" PRIx64, rnd[1]);

	/* A URL that does not parse, a TLS file that does not load: the
	 * caller's mistake, said now rather than by every shard. */
	struct sb__nats_cfg nc = sb__cluster_nats_cfg(xr);
	struct sb__nats *probe;
	if (sb__nats_new(&nc, &probe, why, sizeof why) != 0) {
		sb__log(&r->log, 0, "cluster %s: %s", xr->servers, why);
		return SB_EINVAL;
	}
	sb__nats_free(probe);
	return 0;
}

const char *sb__cluster_id(const struct sb_router *r)
{
	return r->xr != NULL ? r->xr->id : NULL;
}

void sb__cluster_router_free(struct sb_router *r)
{
	if (r->xr == NULL)
		return;
	struct sb__xrouter *xr = r->xr;
	sb__xpres_router_free(xr);
	if (xr->pass != NULL)
		sb__hmac_wipe(xr->pass, strlen(xr->pass));
	if (xr->token != NULL)
		sb__hmac_wipe(xr->token, strlen(xr->token));
	free(xr->servers);
	free(xr->user);
	free(xr->pass);
	free(xr->token);
	free(xr->ca);
	free(xr->cert);
	free(xr->key);
	free(xr);
	r->xr = NULL;
}
