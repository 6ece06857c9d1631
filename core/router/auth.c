/* Shared-secret authentication and name rules: the policy snapshot shards
 * share by reference, the handshakes between CHALLENGE and AUTH (whose proof
 * common/hmac.c computes), and the table of addresses that keep giving
 * wrong secrets. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "router/auth.h"

/* ---- policy --------------------------------------------------------------- */

/* A secret file: its bytes, minus one trailing newline (editors add one). */
int sb__auth_secret_read(const char *path, uint8_t **out, size_t *len)
{
	uint8_t buf[SB__HMAC_SECRET_MAX + 2];
	size_t n = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;

	if (fd < 0)
		return SB_ESYS;
	for (;;) {
		ssize_t r = read(fd, buf + n, sizeof buf - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = SB_ESYS;
			break;
		}
		if (r == 0 || (n += (size_t)r) == sizeof buf)
			break;
	}
	close(fd);
	if (rc == 0 && n > 0 && buf[n - 1] == '\n')
		n -= 1 + (n > 1 && buf[n - 2] == '\r');
	if (rc == 0 && (n == 0 || n > SB__HMAC_SECRET_MAX))
		rc = SB_EINVAL;
	if (rc == 0 && (*out = malloc(n)) == NULL)
		rc = SB_ENOMEM;
	if (rc == 0) {
		memcpy(*out, buf, n);
		*len = n;
	}
	sb__hmac_wipe(buf, sizeof buf);
	return rc;
}

static int secret_set(struct sb__policy *p, int role, const char *text, const char *file, char *why,
		      size_t cap)
{
	const char *key = role == SB__ROLE_SERVICE ? "secret_service" : "secret_client";
	int rc;

	if (text != NULL && file != NULL) {
		snprintf(why, cap, "%s: given both as a string and as a file", key);
		return SB_EINVAL;
	}
	if (file != NULL) {
		if ((rc = sb__auth_secret_read(file, &p->secret[role], &p->secret_len[role])) != 0)
			snprintf(why, cap, "%s_file %s: %s", key, file,
				 rc == SB_ESYS ? strerror(errno)
					       : "empty, or longer than 4096 bytes");
		return rc;
	}
	if (text == NULL)
		return 0;
	size_t n = strlen(text);
	if (n == 0 || n > SB__HMAC_SECRET_MAX) {
		snprintf(why, cap, "%s: empty, or longer than 4096 bytes", key);
		return SB_EINVAL;
	}
	if ((p->secret[role] = malloc(n)) == NULL)
		return SB_ENOMEM;
	memcpy(p->secret[role], text, n);
	p->secret_len[role] = n;
	return 0;
}

static void policy_free(struct sb__policy *p)
{
	for (int i = 0; i < 2; i++) {
		sb__hmac_wipe(p->secret[i], p->secret_len[i]);
		free(p->secret[i]);
	}
	sb__patterns_free(&p->reg);
	sb__patterns_free(&p->call[0]);
	sb__patterns_free(&p->call[1]);
	free(p);
}

int sb__policy_new(const struct sb_router_config *c, struct sb__policy **out, char *why, size_t cap)
{
	struct sb__policy *p = calloc(1, sizeof *p);
	int rc;

	snprintf(why, cap, "out of memory");
	if (p == NULL)
		return SB_ENOMEM;
	atomic_init(&p->refs, 1);
	if ((rc = secret_set(p, SB__ROLE_SERVICE, c->secret_service, c->secret_service_file, why,
			     cap)) != 0 ||
	    (rc = secret_set(p, SB__ROLE_CLIENT, c->secret_client, c->secret_client_file, why,
			     cap)) != 0 ||
	    (rc = sb__patterns_compile(&p->reg, "allow_register_service", c->allow_register_service,
				       why, cap)) != 0 ||
	    (rc = sb__patterns_compile(&p->call[SB__ROLE_CLIENT], "allow_call_client",
				       c->allow_call_client, why, cap)) != 0 ||
	    (rc = sb__patterns_compile(&p->call[SB__ROLE_SERVICE], "allow_call_service",
				       c->allow_call_service, why, cap)) != 0) {
		int e = errno;
		policy_free(p);
		errno = e;
		return rc;
	}
	p->any_secret = p->secret[0] != NULL || p->secret[1] != NULL;
	*out = p;
	return 0;
}

struct sb__policy *sb__policy_get(struct sb__policy *p)
{
	atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
	return p;
}

void sb__policy_put(struct sb__policy *p)
{
	if (p != NULL && atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1)
		policy_free(p);
}

/* ---- router and shards ---------------------------------------------------- */

int sb__auth_router_init(struct sb__auth_router *a, const struct sb_router_config *c,
			 const struct sb__logger *lg)
{
	char why[256];
	int rc = sb__policy_new(c, &a->cur, why, sizeof why);
	if (rc != 0) {
		int e = errno;
		sb__log(lg, 0, "%s", why);
		errno = e;
		return rc;
	}
	pthread_mutex_init(&a->lock, NULL);
	atomic_init(&a->gen, 1);
	return 0;
}

void sb__auth_router_destroy(struct sb__auth_router *a)
{
	if (a->cur == NULL)
		return;
	sb__policy_put(a->cur);
	a->cur = NULL;
	pthread_mutex_destroy(&a->lock);
}

void sb__auth_adopt(struct sb__auth_shard *s, struct sb__auth_router *a)
{
	pthread_mutex_lock(&a->lock);
	struct sb__policy *p = sb__policy_get(a->cur);
	uint64_t gen = atomic_load_explicit(&a->gen, memory_order_relaxed);
	pthread_mutex_unlock(&a->lock);
	sb__policy_put(s->pol);
	s->pol = p;
	s->gen = gen;
	atomic_store_explicit(&s->seen, gen, memory_order_release);
}

void sb__auth_shard_destroy(struct sb__auth_shard *s)
{
	sb__policy_put(s->pol);
	s->pol = NULL;
}

int sb__auth_reload(struct sb__auth_router *a, const struct sb_router_config *c,
		    const struct sb__logger *lg, uint64_t *gen)
{
	struct sb__policy *p, *old;
	char why[256];
	int rc = sb__policy_new(c, &p, why, sizeof why);

	if (rc != 0) {
		int e = errno;
		sb__log(lg, 0, "reload refused, the rules in force stay: %s", why);
		errno = e;
		return rc;
	}
	pthread_mutex_lock(&a->lock);
	old = a->cur;
	a->cur = p;
	*gen = atomic_fetch_add(&a->gen, 1) + 1;
	pthread_mutex_unlock(&a->lock);
	sb__policy_put(old);
	return 0;
}

/* ---- handshakes ----------------------------------------------------------- */

struct sb__auth_hs *sb__auth_hs_new(struct sb__policy *pol, const struct sb_msg *m)
{
	struct sb__auth_hs *hs = calloc(1, sizeof *hs);

	if (hs == NULL)
		return NULL;
	if (sb__hmac_nonce(hs->nonce, sizeof hs->nonce) != 0) {
		free(hs);
		return NULL;
	}
	hs->pol = sb__policy_get(pol);
	hs->hello_id = m->id;
	hs->named = m->peer.ptr != NULL;
	hs->name_len = m->peer.len;
	if (hs->named)
		memcpy(hs->name, m->peer.ptr, m->peer.len);
	return hs;
}

void sb__auth_hs_free(struct sb__auth_hs *hs)
{
	if (hs == NULL)
		return;
	sb__policy_put(hs->pol);
	free(hs);
}

int sb__auth_check(const struct sb__auth_hs *hs, int role, const struct sb_msg *m)
{
	const struct sb__policy *p = hs->pol;
	struct sb_view rn = {hs->nonce, sizeof hs->nonce};
	struct sb_view name = {(const uint8_t *)hs->name, hs->name_len};

	return p->secret[role] != NULL &&
	       sb__hmac_check(p->secret[role], p->secret_len[role], rn, m->nonce, name, m->proof);
}

/* ---- failures ------------------------------------------------------------- */

#define FAIL_PROBE 8u /* slots looked at per address */

static uint32_t fail_home(uint32_t addr)
{
	return (addr * 2654435761u) >> 7 & (SB__AUTH_FAIL_SLOTS - 1);
}

static int fail_live(const struct sb__auth_fail *f, const struct sb_router_config *c, uint64_t now)
{
	return f->addr != 0 && now - f->first < c->auth_fail_window_ms;
}

static struct sb__auth_fail *fail_find(struct sb__auth_shard *s, uint32_t addr)
{
	uint32_t h = fail_home(addr);
	for (uint32_t i = 0; i < FAIL_PROBE; i++) {
		struct sb__auth_fail *f = &s->fails[(h + i) & (SB__AUTH_FAIL_SLOTS - 1)];
		if (f->addr == addr)
			return f;
	}
	return NULL;
}

uint64_t sb__auth_blocked(struct sb__auth_shard *s, const struct sb_router_config *c, uint32_t addr,
			  uint64_t now)
{
	struct sb__auth_fail *f;

	if (c->auth_fail_max == 0 || (f = fail_find(s, addr)) == NULL || !fail_live(f, c, now) ||
	    f->count < c->auth_fail_max)
		return 0;
	uint64_t left = f->first + c->auth_fail_window_ms - now;
	return left > 0 ? left : 1;
}

void sb__auth_failed(struct sb__auth_shard *s, const struct sb_router_config *c, uint32_t addr,
		     uint64_t now)
{
	struct sb__auth_fail *f = fail_find(s, addr);

	if (c->auth_fail_max == 0)
		return;
	if (f == NULL) {
		/* Forget the oldest near its home: a flood of addresses can push
		 * an attacker out, but never grows the table. */
		uint32_t h = fail_home(addr);
		for (uint32_t i = 0; i < FAIL_PROBE; i++) {
			struct sb__auth_fail *g = &s->fails[(h + i) & (SB__AUTH_FAIL_SLOTS - 1)];
			if (!fail_live(g, c, now)) {
				f = g;
				break;
			}
			if (f == NULL || g->first < f->first)
				f = g;
		}
		f->addr = addr;
		f->count = 0;
		f->first = now;
	} else if (!fail_live(f, c, now)) {
		f->count = 0;
		f->first = now;
	}
	f->count++;
}
