/* The listeners. Each shard has a multishot accept on its own SO_REUSEPORT
 * socket, and another on the edge's port and on the admin port when there
 * are. A new connection is admitted here: its TLS pair on a TLS listener
 * (never the admin one), its edge state (HTTP, then WebSocket) on the
 * edge's, HTTP state serving the admin endpoints alone on the admin one, its place under max_conns
 * and max_conns_per_addr (over a limit it lives only to be told so), its HELLO deadline. A failed
 * accept (out of descriptors or memory) is retried after a pause that grows. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/clock.h"
#include "router/accept.h"
#include "router/addrtab.h"
#include "router/conn.h"
#include "router/conn_tls.h"
#include "router/conn_ws.h"
#include "router/flow.h"
#include "router/handshake.h"
#include "router/router-t.h"
#include "router/shard.h"

static int *armed(struct sb__shard *sh, int which)
{
	return which == SB__LISTEN_EDGE    ? &sh->ws_accept_armed
	       : which == SB__LISTEN_ADMIN ? &sh->admin_accept_armed
					   : &sh->accept_armed;
}

void sb__accept_arm(struct sb__shard *sh, int which)
{
	struct io_uring_sqe *sqe = sb__sqe(sh);
	int fd = which == SB__LISTEN_EDGE ? sh->wfd : which == SB__LISTEN_ADMIN ? sh->afd : sh->lfd;
	io_uring_prep_multishot_accept(sqe, fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, sb__tag(SB__TAG_ACCEPT, (uint64_t)which));
	*armed(sh, which) = 1;
}

/* A connection refused before it says anything: told in its own protocol
 * (an ERROR frame on TCP, an HTTP answer on the edge), then closed. */
static void refuse(struct sb__shard *sh, struct sb__conn *c, int err, const char *why)
{
	if (c->edge != NULL)
		sb__conn_ws_refuse(sh, c, 503, err, why);
	else
		sb__conn_fail(sh, c, err, why);
}

static void on_accept(struct sb__shard *sh, int fd, int which)
{
	int edge = which != SB__LISTEN_MAIN; /* HTTP first, on either */
	uint64_t ep;
	int one = 1;
	const struct sb_router_config *cfg = &sh->r->cfg;

	if (sh->draining) {
		close(fd);
		return;
	}
	struct sb__conn *c = sb__reqtab_alloc(&sh->conns, &ep);
	if (c == NULL) {
		close(fd);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	c->fd = fd;
	c->ep = ep;
	c->sh = sh;
	sb__link_init(&c->reqs);
	sb__link_add(&sh->conn_list, &c->all);
	sb__timer_init(&c->hello_timer, sb__hs_on_timeout);
	sb__timer_init(&c->idle_timer, sb__conn_on_idle);
	sb__timer_init(&c->slow, sb__flow_on_slow);
	sb__stat_add(&sh->st.connections, 1);
	struct sockaddr_in sa;
	socklen_t salen = sizeof sa;
	if (getpeername(fd, (struct sockaddr *)&sa, &salen) == 0 && sa.sin_family == AF_INET)
		c->addr = sa.sin_addr.s_addr;
	/* Before the limit check: a TLS peer refused for it must not be sent
	 * plaintext (it is closed without a word: saying one takes a handshake). */
	if ((edge && sb__conn_ws_start(sh, c) != 0) ||
	    (sh->r->tls_on && which != SB__LISTEN_ADMIN && sb__conn_tls_start(sh, c) != 0)) {
		sb__conn_close(sh, c, "out of memory");
		return;
	}
	if (which == SB__LISTEN_ADMIN)
		c->edge->admin = 1;
	if (edge) /* wss: TLS carries it, the edge reads it */
		c->xport = SB__XPORT_HTTP;
	/* Over the limit: the connection only lives to be told so. Taking the
	 * place first makes the check exact when shards accept at once. */
	if (atomic_fetch_add(&sh->r->nconns, 1) >= cfg->max_conns) {
		atomic_fetch_sub(&sh->r->nconns, 1);
		char why[64];
		snprintf(why, sizeof why, "too many connections (limit %u)", cfg->max_conns);
		sb__stat_add(&sh->st.refused, 1);
		refuse(sh, c, SB_EOVERLOADED, why);
		return;
	}
	c->counted = 1;
	if (cfg->max_conns_per_addr > 0) {
		int took = sb__addrtab_take(&sh->r->addrs, c->addr, cfg->max_conns_per_addr);
		if (took == 0) {
			char why[96], a[INET_ADDRSTRLEN];
			snprintf(why, sizeof why, "too many connections from %s (limit %u)",
				 sb__conn_addr(c, a, sizeof a), cfg->max_conns_per_addr);
			sb__stat_add(&sh->st.addr_refused, 1);
			refuse(sh, c, SB_EOVERLOADED, why);
			return;
		}
		c->addr_counted = took == 1;
	}
	/* A fresh clock: the turn's may predate the connection, and the
	 * deadline must never come early. */
	if (cfg->hello_timeout_ms > 0)
		sb__timer_arm(&sh->wheel, &c->hello_timer, sb__now_ms() + cfg->hello_timeout_ms);
	sb__conn_arm_recv(sh, c);
}

/* A failed accept is not retried at once. Out of descriptors (EMFILE,
 * ENFILE) or memory, the connection waiting in the backlog fails again at
 * once, and re-arming on every failure spun a core for as long as that
 * lasted, saying nothing. The retry waits 10 ms, doubling up to 1 s, until
 * an accept works; the first failure of such an episode is logged, each
 * one counted (accept_errors). */
#define BACKOFF_MIN_MS 10
#define BACKOFF_MAX_MS 1000

static void accept_failed(struct sb__shard *sh, int res, int more, int which)
{
	sb__stat_add(&sh->st.accept_errors, 1);
	if (sh->accept_fails++ == 0) {
		struct rlimit rl;
		char lim[64] = "";
		if ((res == -EMFILE || res == -ENFILE) && getrlimit(RLIMIT_NOFILE, &rl) == 0)
			snprintf(lim, sizeof lim, " (RLIMIT_NOFILE %llu)",
				 (unsigned long long)rl.rlim_cur);
		sb__log(&sh->r->log, 0,
			"shard %u: accept failed: %s%s; retrying from 10 ms to 1 s apart until it "
			"works (each failure counts in accept_errors)",
			sh->id, strerror(-res), lim);
	}
	sh->accept_backoff = sh->accept_backoff == 0                    ? BACKOFF_MIN_MS
			     : sh->accept_backoff >= BACKOFF_MAX_MS / 2 ? BACKOFF_MAX_MS
									: 2 * sh->accept_backoff;
	if (more) { /* a kernel that keeps the multishot armed would fail on and on */
		struct io_uring_sqe *sqe = sb__sqe(sh);
		io_uring_prep_cancel64(sqe, sb__tag(SB__TAG_ACCEPT, (uint64_t)which), 0);
		io_uring_sqe_set_data64(sqe, sb__tag(SB__TAG_CANCEL, 0));
	}
	sb__timer_arm(&sh->wheel, &sh->accept_timer, sh->now + sh->accept_backoff);
}

static void accepted(struct sb__shard *sh, int fd, int which)
{
	if (sh->accept_fails > 0)
		sb__log(&sh->r->log, 1, "shard %u: accepting again after %llu failed accepts",
			sh->id, (unsigned long long)sh->accept_fails);
	sh->accept_fails = 0;
	sh->accept_backoff = 0;
	on_accept(sh, fd, which);
}

static void on_accept_timer(struct sb__timer *t)
{
	struct sb__shard *sh = SB__CONTAINER(t, struct sb__shard, accept_timer);
	if (!sh->draining && !sh->accept_armed)
		sb__accept_arm(sh, SB__LISTEN_MAIN);
	if (!sh->draining && !sh->ws_accept_armed && sh->wfd >= 0)
		sb__accept_arm(sh, SB__LISTEN_EDGE);
	if (!sh->draining && !sh->admin_accept_armed && sh->afd >= 0)
		sb__accept_arm(sh, SB__LISTEN_ADMIN);
}

void sb__accept_init(struct sb__shard *sh)
{
	sb__timer_init(&sh->accept_timer, on_accept_timer);
}

void sb__accept_cqe(struct sb__shard *sh, struct io_uring_cqe *cqe, int which)
{
	if (cqe->res >= 0)
		accepted(sh, cqe->res, which);
	else if (!sh->draining) /* else cancelled, or the drain closed the listener */
		accept_failed(sh, cqe->res, cqe->flags & IORING_CQE_F_MORE, which);
	if (!(cqe->flags & IORING_CQE_F_MORE)) {
		*armed(sh, which) = 0;
		if (!sh->draining && !sb__timer_armed(&sh->accept_timer))
			sb__accept_arm(sh, which);
	}
}
