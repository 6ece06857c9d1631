/* The router's lifecycle: its configuration checked, one listening socket
 * and thread per shard, start, reload (which waits for every shard to take
 * the new rules), the counters summed, and the drain at a stop. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/tls.h"
#include "router/cluster.h"
#include "router/local.h"
#include "router/mailbox.h"
#include "router/edge_auth.h"
#include "router/accept.h"
#include "router/peers.h"
#include "router/router-t.h"
#include "router/shard.h"

static void defaults(struct sb_router_config *c)
{
	memset(c, 0, sizeof *c);
	c->size = sizeof *c;
	c->addr = "127.0.0.1";
	c->port = 7400;
	c->max_frame = SB_FRAME_MAX_DEFAULT;
	c->default_timeout_ms = 30000;
	c->max_timeout_ms = 3600 * 1000;
	c->out_max = 16u << 20;
	c->slow_ms = 10000;
	c->max_inflight = 1u << 20;
	c->max_conns = 65536;
	c->hello_timeout_ms = 5000;
	c->name_pattern = SB__PATTERN_DEFAULT;
	c->bind_retry_ms = 1000;
	c->recv_buffers = 256;
	c->recv_buffer_size = 16384;
	c->log_level = 1;
	c->auth_fail_max = 5;
	c->auth_fail_window_ms = 60000;
	c->max_conns_per_addr = 1024;
	c->max_inflight_per_conn = 65536;
	c->max_registrations = 1024;
	c->idle_ms = 60000;
	c->pong_timeout_ms = 20000;
	c->ws_port = -1;
	c->admin_port = -1;
	c->admin_addr = "127.0.0.1";
	c->jwt_leeway_s = 30;
	c->name_grace_ms = 30000;
	c->cluster_spill = 64;
	c->cluster_dead_ms = 3000;
}

/* A program built against an older header has a shorter struct: only
 * `size` bytes of it are the program's, the rest stays at its default. */
void sb_router_config_init_size(struct sb_router_config *c, size_t size)
{
	struct sb_router_config d;

	defaults(&d);
	if (size > sizeof d)
		size = sizeof d;
	d.size = size;
	memcpy(c, &d, size);
}

/* The caller's config over the defaults, as much of it as it has. */
static int config_read(const struct sb_router_config *in, struct sb_router_config *out)
{
	defaults(out);
	if (in == NULL || in->size < offsetof(struct sb_router_config, port) + sizeof in->port)
		return SB_EINVAL;
	memcpy(out, in, in->size < sizeof *out ? in->size : sizeof *out);
	out->size = sizeof *out;
	return 0;
}

static int tls_wanted(const struct sb_router_config *c)
{
	return c->tls_cert != NULL || c->tls_key != NULL || c->tls_ca != NULL ||
	       c->tls_verify_client || (c->tls_allow != NULL && c->tls_allow[0] != NULL) ||
	       (c->tls_deny != NULL && c->tls_deny[0] != NULL);
}

/* The TLS settings of c, loaded; a failure is logged as an error, since
 * nothing else would say which file or setting is wrong. */
static int tls_load(struct sb_router *r, const struct sb_router_config *c, struct sb__tls_ctx **x,
		    const char *when)
{
	char why[320];
	int rc = sb__tls_server_ctx(c, x, why, sizeof why);
	if (rc != 0)
		sb__log(&r->log, 0, "%s: %s", when, why);
	return rc;
}

static int check_config(const struct sb_router_config *c)
{
	struct in_addr a;
	if (c->addr == NULL || inet_pton(AF_INET, c->addr, &a) != 1)
		return 0;
	if (c->shards > SB__MAX_SHARDS || c->max_frame < SB_BODY_MIN ||
	    c->max_frame > SB_FRAME_MAX_LIMIT || c->default_timeout_ms == 0 ||
	    c->max_timeout_ms == 0 || c->out_max < c->max_frame || c->max_inflight == 0 ||
	    c->max_inflight > SB__REQTAB_MAX || c->max_conns == 0)
		return 0;
	if (c->name_pattern != NULL && !sb__name_pattern_ok(c->name_pattern))
		return 0;
	if (c->max_inflight_per_conn == 0 || c->max_registrations == 0 ||
	    (c->idle_ms > 0 && c->pong_timeout_ms == 0))
		return 0;
	if (c->mail_ring != 0 && (c->mail_ring < 4 || (c->mail_ring & (c->mail_ring - 1)) != 0))
		return 0;
	if (c->ws_port < -1 || c->ws_port > 65535 || c->placement > SB_PLACEMENT_KERNEL)
		return 0;
	if (c->admin_port < -1 || c->admin_port > 65535 ||
	    (c->admin_port >= 0 &&
	     (c->admin_addr == NULL || inet_pton(AF_INET, c->admin_addr, &a) != 1)))
		return 0;
	if (c->recv_buffers < 8 || c->recv_buffers > 32768 ||
	    (c->recv_buffers & (c->recv_buffers - 1)) != 0 || c->recv_buffer_size < 512)
		return 0;
	return 1;
}

/* Descriptors the router needs besides its connections: per shard its
 * listeners (up to three), an eventfd and an io_uring; stdio and a few
 * files (TLS, secrets) besides. */
#define FDS_SPARE(nshards) (6u * (nshards) + 16u)

/* Past RLIMIT_NOFILE, accepts fail (and back off) while the kernel goes on
 * completing handshakes into the backlog: clients see a connection that
 * never answers. Said at start-up, when it can still be fixed. */
static void check_nofile(const struct sb_router *r)
{
	struct rlimit rl;
	uint64_t need = (uint64_t)r->cfg.max_conns + FDS_SPARE(r->nshards);

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
	    rl.rlim_cur >= need)
		return;
	sb__log(&r->log, 1,
		"warning: RLIMIT_NOFILE is %llu, below the %llu descriptors max_conns %u needs: "
		"past about %llu connections, accepts fail until some close (raise it, ulimit "
		"-n, or lower max_conns)",
		(unsigned long long)rl.rlim_cur, (unsigned long long)need, r->cfg.max_conns,
		rl.rlim_cur > FDS_SPARE(r->nshards)
			? (unsigned long long)(rl.rlim_cur - FDS_SPARE(r->nshards))
			: 0ull);
}

/* Binds one SO_REUSEPORT socket; the kernel spreads connections over them.
 * With reuse off it is the probe: SO_REUSEPORT would let a second router
 * join a busy port and steal half its connections instead of failing. */
static int listen_one(const char *addr, uint16_t port, int reuse)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	inet_pton(AF_INET, addr, &sa.sin_addr);
	if (fd < 0)
		return -1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
	    (reuse && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) ||
	    bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 4096) != 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* All shards listen on one port: the first bind picks it (port 0), the
 * rest join it. The edge's port (ws_port) and the admin port are bound the
 * same way, beside. */
static int listen_port(struct sb_router *r, const char *addr, uint16_t want, int which,
		       uint16_t *got)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof sa;
	int probe = listen_one(addr, want, 0);

	if (probe < 0)
		return -1;
	getsockname(probe, (struct sockaddr *)&sa, &len);
	uint16_t port = ntohs(sa.sin_port);
	close(probe);
	for (unsigned i = 0; i < r->nshards; i++) {
		int fd = listen_one(addr, port, 1);
		if (fd < 0)
			return -1;
		if (which == SB__LISTEN_EDGE)
			r->shards[i].wfd = fd;
		else if (which == SB__LISTEN_ADMIN)
			r->shards[i].afd = fd;
		else
			r->shards[i].lfd = fd;
	}
	*got = port;
	return 0;
}

static int listen_all(struct sb_router *r)
{
	if (listen_port(r, r->cfg.addr, r->cfg.port, SB__LISTEN_MAIN, &r->port) != 0)
		return -1;
	if (r->cfg.ws_port >= 0 && listen_port(r, r->cfg.addr, (uint16_t)r->cfg.ws_port,
					       SB__LISTEN_EDGE, &r->ws_port) != 0)
		return -1;
	return r->cfg.admin_port < 0
		       ? 0
		       : listen_port(r, r->cfg.admin_addr, (uint16_t)r->cfg.admin_port,
				     SB__LISTEN_ADMIN, &r->admin_port);
}

static void close_listeners(struct sb_router *r)
{
	for (unsigned i = 0; i < r->nshards; i++) {
		if (r->shards[i].lfd >= 0) {
			close(r->shards[i].lfd);
			r->shards[i].lfd = -1;
		}
		if (r->shards[i].wfd >= 0) {
			close(r->shards[i].wfd);
			r->shards[i].wfd = -1;
		}
		if (r->shards[i].afd >= 0) {
			close(r->shards[i].afd);
			r->shards[i].afd = -1;
		}
	}
}

struct sb_router *sb_router_new(const struct sb_router_config *given, int *err)
{
	struct sb_router_config full;
	const struct sb_router_config *c = &full;
	struct sb_router *r = NULL;
	int e = SB_EINVAL;

	if (config_read(given, &full) != 0 || !check_config(c))
		goto fail;
	e = SB_ENOMEM;
	if ((r = calloc(1, sizeof *r)) == NULL)
		goto fail;
	r->cfg = *c;
	r->log = (struct sb__logger){c->log_level, "switchboard"};
	/* Only what the router keeps is copied; the TLS strings are read below
	 * and dropped, so nothing points at the caller's memory. */
	r->cfg.tls_cert = r->cfg.tls_key = r->cfg.tls_ca = NULL;
	r->cfg.tls_allow = r->cfg.tls_deny = NULL;
	r->nshards = c->shards ? c->shards : (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
	if (r->nshards == 0)
		r->nshards = 1;
	if (r->nshards > SB__MAX_SHARDS)
		r->nshards = SB__MAX_SHARDS;
	atomic_init(&r->stopping, 0);
	atomic_init(&r->drained, 0);
	pthread_mutex_init(&r->names_lock, NULL);
	pthread_mutex_init(&r->start_lock, NULL);
	pthread_cond_init(&r->start_cond, NULL);
	pthread_mutex_init(&r->tls_lock, NULL);
	sb__jwt_slot_init(&r->jwt);
	r->cfg.name_pattern = NULL; /* the directory keeps its own copy */
	if (sb__dir_init(&r->dir, c->name_pattern, c->name_grace_ms) != 0)
		goto fail;
	sb__rstats_init(&r->rstats, r->nshards);
	sb__addrtab_init(&r->addrs);
	sb__hmac_init();
	/* The policy owns copies of the secrets and rules: the caller's strings
	 * need not outlive this call, so nothing may read them later. */
	if ((e = sb__auth_router_init(&r->auth, c, &r->log)) != 0)
		goto fail;
	e = SB_ENOMEM;
	r->cfg.secret_service = r->cfg.secret_client = NULL;
	r->cfg.secret_service_file = r->cfg.secret_client_file = NULL;
	r->cfg.allow_register_service = r->cfg.allow_call_service = NULL;
	r->cfg.allow_call_client = NULL;
	if ((r->addr = strdup(c->addr)) == NULL)
		goto fail;
	r->cfg.addr = r->addr;
	r->cfg.ws_allow_origin = NULL;
	if (c->ws_allow_origin != NULL && (r->ws_origins = strdup(c->ws_allow_origin)) == NULL)
		goto fail;
	r->cfg.ws_allow_origin = r->ws_origins;
	if ((r->admin_addr = strdup(c->admin_addr != NULL ? c->admin_addr : "127.0.0.1")) == NULL)
		goto fail;
	r->cfg.admin_addr = r->admin_addr;
	struct sb__jwt_keys *keys;
	if ((e = sb__edge_keys_load(c, &r->log, &keys)) != 0)
		goto fail;
	sb__jwt_slot_set(&r->jwt, keys);
	sb__jwt_keys_put(keys); /* the slot holds its own */
	r->cfg.jwt_keys_file = r->cfg.jwt_secret_file = NULL;
	r->cfg.jwt_issuer = r->cfg.jwt_audience = NULL;
	if ((e = sb__cluster_router_init(r, c)) != 0)
		goto fail;
	e = SB_ENOMEM;
	if (tls_wanted(c)) {
		if ((e = tls_load(r, c, &r->tls, "TLS")) != 0)
			goto fail;
		r->tls_on = 1;
		e = SB_ENOMEM;
	}
	r->shards = calloc(r->nshards, sizeof *r->shards);
	r->inboxes = calloc(r->nshards, sizeof *r->inboxes);
	if (r->inboxes == NULL)
		goto fail;
	for (unsigned i = 0; i < r->nshards; i++) {
		pthread_mutex_init(&r->inboxes[i].lock, NULL);
		sb__idmap_init(&r->inboxes[i].calls);
		sb__link_init(&r->inboxes[i].live);
	}
	/* Ring memory grows with shards squared: shrink each ring as the count
	 * grows (4,096 slots up to 8 shards, 512 at 64: about 66 MiB). */
	unsigned ring = c->mail_ring;
	if (ring == 0) {
		ring = 4096;
		while (ring > 512 && (size_t)r->nshards * ring > 8 * 4096)
			ring /= 2;
	}
	r->mail_ring = ring;
	/* Everything in flight to a shard can land in one connection's queue
	 * before its pause takes effect: four receive pools over all senders
	 * keeps that within the drop bound's eight (queue_limit()). */
	r->mail_cap = 4ull * c->recv_buffers * c->recv_buffer_size /
		      (r->nshards > 1 ? r->nshards - 1 : 1);
	r->mb = sb__mailbox_new(r->nshards, ring);
	if (r->shards == NULL || r->mb == NULL)
		goto fail;
	check_nofile(r);
	for (unsigned i = 0; i < r->nshards; i++) {
		r->shards[i].r = r;
		r->shards[i].id = i;
		r->shards[i].lfd = r->shards[i].wfd = r->shards[i].afd = r->shards[i].efd = -1;
	}
	for (unsigned i = 0; i < r->nshards; i++)
		if ((r->shards[i].efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
			goto fail_sys;
	for (unsigned attempt = 0;; attempt++) {
		if (listen_all(r) == 0)
			break;
		if (errno != EADDRINUSE || attempt >= c->bind_retries)
			goto fail_sys;
		close_listeners(r);
		sb__log(&r->log, 1, "port %u busy, retrying in %u ms (%u of %u)", c->port,
			c->bind_retry_ms, attempt + 1, c->bind_retries);
		struct timespec ts = {c->bind_retry_ms / 1000,
				      (long)(c->bind_retry_ms % 1000) * 1000000};
		nanosleep(&ts, NULL);
	}
	return r;
fail_sys:
	e = SB_ESYS;
fail:
	if (r != NULL) {
		int saved = errno;
		sb_router_free(r);
		errno = saved;
	}
	if (err != NULL)
		*err = e;
	return NULL;
}

int sb_router_start(struct sb_router *r)
{
	int rc = 0;

	r->running = 1;
	for (unsigned i = 0; i < r->nshards; i++) {
		if (pthread_create(&r->shards[i].thread, NULL, sb__shard_main, &r->shards[i]) !=
		    0) {
			rc = SB_ESYS;
			break;
		}
		r->shards[i].started = 1;
	}
	pthread_mutex_lock(&r->start_lock);
	unsigned want = 0;
	for (unsigned i = 0; i < r->nshards; i++)
		want += (unsigned)r->shards[i].started;
	while (r->started < want)
		pthread_cond_wait(&r->start_cond, &r->start_lock);
	pthread_mutex_unlock(&r->start_lock);
	for (unsigned i = 0; i < r->nshards && rc == 0; i++)
		rc = r->shards[i].start_rc;
	if (rc != 0)
		sb_router_stop(r, 0);
	else if (r->tls_on) {
		char desc[320];
		sb__tls_ctx_describe(r->tls, desc, sizeof desc);
		sb__log(&r->log, 2, "listening on %s:%u (%u shards), TLS 1.3: %s", r->cfg.addr,
			r->port, r->nshards, desc);
	} else
		sb__log(&r->log, 2, "listening on %s:%u (%u shards)", r->cfg.addr, r->port,
			r->nshards);
	if (rc == 0 && r->ws_port != 0)
		sb__log(&r->log, 2, "WebSocket edge on %s:%u (GET /v1/ws)", r->cfg.addr,
			r->ws_port);
	if (rc == 0 && r->admin_port != 0)
		sb__log(&r->log, 2,
			"admin listener on %s:%u (GET / for the page, /metrics, "
			"/v1/routes|peers|stats)",
			r->cfg.admin_addr, r->admin_port);
	return rc;
}

/* A shard takes new rules at the top of its next turn: wake each one and
 * wait for it, so the caller of a reload knows the rules now in force. A
 * stopping router's shards may never turn again. */
static int wait_for_shards(struct sb_router *r, uint64_t gen)
{
	for (unsigned i = 0; i < r->nshards; i++) {
		struct sb__shard *sh = &r->shards[i];
		uint64_t one = 1;
		if (!r->running || atomic_load(&r->stopping))
			break;
		if (write(sh->efd, &one, sizeof one) < 0 && errno != EAGAIN)
			return SB_ESYS;
		while (atomic_load_explicit(&sh->auth.seen, memory_order_acquire) < gen &&
		       !atomic_load(&r->stopping)) {
			struct timespec ts = {0, 200000};
			nanosleep(&ts, NULL);
		}
	}
	return 0;
}

int sb_router_reload(struct sb_router *r, const struct sb_router_config *given)
{
	struct sb_router_config full;
	const struct sb_router_config *cfg = &full;
	struct sb__tls_ctx *tls = NULL, *old;
	int rc = SB_EINVAL;

	if (config_read(given, &full) != 0)
		return SB_EINVAL;
	/* First every module builds and checks its new settings, then all are
	 * swapped in, so a refusal leaves every setting as it was. A module
	 * with settings of its own checks them after TLS's (a failure goes to
	 * refused) and swaps them next to TLS's. */
	if (tls_wanted(cfg) != r->tls_on) {
		sb__log(&r->log, 0, "reload refused: TLS cannot be turned %s without a restart",
			r->tls_on ? "off" : "on");
		goto refused;
	}
	if (r->tls_on && (rc = tls_load(r, cfg, &tls, "reload refused")) != 0)
		goto refused;
	struct sb__jwt_keys *keys = NULL;
	if ((rc = sb__edge_keys_load(cfg, &r->log, &keys)) != 0)
		goto refused;
	/* Secrets and name rules: checked and swapped in one step, and last,
	 * so a refusal of its own (logged by it) leaves TLS as it was too. */
	uint64_t gen;
	if ((rc = sb__auth_reload(&r->auth, cfg, &r->log, &gen)) != 0 ||
	    (rc = wait_for_shards(r, gen)) != 0) {
		sb__tls_ctx_put(tls);
		sb__jwt_keys_put(keys);
		return rc;
	}

	/* Nothing below fails. Tokens verified from now on use the new keys
	 * (a set that failed to load was refused above). */
	sb__jwt_slot_set(&r->jwt, keys);
	sb__jwt_keys_put(keys);
	if (tls != NULL) {
		char desc[320];
		sb__tls_ctx_describe(tls, desc, sizeof desc);
		pthread_mutex_lock(&r->tls_lock);
		old = r->tls;
		r->tls = tls;
		atomic_fetch_add_explicit(&r->tls_gen, 1, memory_order_release);
		pthread_mutex_unlock(&r->tls_lock);
		sb__tls_ctx_put(old); /* shards and connections hold their own */
		sb__log(&r->log, 1, "reloaded: TLS 1.3: %s", desc);
	} else
		sb__log(&r->log, 1, "reloaded");
	return 0;
refused:
	sb__tls_ctx_put(tls);
	sb__log(&r->log, 0, "reload: the settings in force stay");
	return rc;
}

uint16_t sb_router_port(const struct sb_router *r)
{
	return r->port;
}

uint16_t sb_router_ws_port(const struct sb_router *r)
{
	return r->ws_port;
}

uint16_t sb_router_admin_port(const struct sb_router *r)
{
	return r->admin_port;
}

unsigned sb_router_shards(const struct sb_router *r)
{
	return r->nshards;
}

void sb_router_stats(const struct sb_router *r, struct sb_router_stats *s)
{
	memset(s, 0, sizeof *s);
	for (unsigned i = 0; i < r->nshards; i++) {
		const struct sb__stats *st = &r->shards[i].st;
#define JOIN(name, how)                                                                            \
	s->name = SB__STAT_##how(s->name, atomic_load_explicit(&st->name, memory_order_relaxed));
		SB__STATS(JOIN)
#undef JOIN
	}
}

void sb_router_stop(struct sb_router *r, unsigned drain_ms)
{
	r->drain_ms = drain_ms;
	atomic_store(&r->stopping, 1);
	for (unsigned i = 0; i < r->nshards; i++) {
		uint64_t one = 1;
		if (r->shards[i].started && write(r->shards[i].efd, &one, sizeof one) < 0)
			sb__log(&r->log, 0, "waking shard %u to stop: %s", i, strerror(errno));
	}
	for (unsigned i = 0; i < r->nshards; i++)
		if (r->shards[i].started) {
			pthread_join(r->shards[i].thread, NULL);
			r->shards[i].started = 0;
		}
	for (unsigned i = 0; i < r->nshards; i++)
		sb__shard_teardown(&r->shards[i]);
	for (unsigned i = 0; i < r->nshards; i++)
		sb__shard_destroy(&r->shards[i]);
	sb__log(&r->log, 2, "stopped");
}

void sb_router_free(struct sb_router *r)
{
	if (r == NULL)
		return;
	for (unsigned i = 0; r->shards != NULL && i < r->nshards; i++) {
		if (r->shards[i].started || r->shards[i].ring_ok)
			sb_router_stop(r, 0);
		if (r->shards[i].lfd >= 0)
			close(r->shards[i].lfd);
		if (r->shards[i].wfd >= 0)
			close(r->shards[i].wfd);
		if (r->shards[i].afd >= 0)
			close(r->shards[i].afd);
		if (r->shards[i].efd >= 0)
			close(r->shards[i].efd);
	}
	sb__mailbox_free(r->mb);
	for (unsigned i = 0; r->inboxes != NULL && i < r->nshards; i++) {
		pthread_mutex_destroy(&r->inboxes[i].lock);
		sb__local_calls_free(&r->inboxes[i]);
	}
	free(r->inboxes);
	for (unsigned i = 0; i < r->nlocals; i++) {
		free(r->locals[i].name);
		sb__schema_unref(r->locals[i].schema);
	}
	free(r->locals);
	sb__dir_destroy(&r->dir);
	sb__rstats_destroy(&r->rstats);
	sb__auth_router_destroy(&r->auth);
	sb__addrtab_destroy(&r->addrs);
	sb__tls_ctx_put(r->tls);
	pthread_mutex_destroy(&r->tls_lock);
	free(r->addr);
	free(r->ws_origins);
	free(r->admin_addr);
	sb__jwt_slot_destroy(&r->jwt);
	sb__cluster_router_free(r);
	pthread_mutex_destroy(&r->names_lock);
	pthread_mutex_destroy(&r->start_lock);
	pthread_cond_destroy(&r->start_cond);
	free(r->shards);
	free(r);
}
