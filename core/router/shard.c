/* The shard loop: setting a shard up (its io_uring, buffer ring and
 * tables), one turn (completions, mail, the program's inbox, timers, then
 * the turn's output and mail in one submission), the sleep, and the drain
 * at a stop. What each completion or mail means is its module's. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/clock.h"
#include "common/tls.h"
#include "router/accept.h"
#include "router/cluster.h"
#include "router/conn-t.h"
#include "router/conn.h"
#include "router/conn_tls.h"
#include "router/local.h"
#include "router/mail.h"
#include "router/outq.h"
#include "router/peers.h"
#include "router/register.h"
#include "router/req-t.h"
#include "router/request.h"
#include "router/router-t.h"
#include "router/shard.h"

/* The ring: submissions per turn before one is handed over early, and room
 * for a busy turn's completions (multishot receives post many per arm). */
#define SQ_ENTRIES 1024
#define CQ_ENTRIES 16384
/* Connections one shard can hold: the connection table's bound. */
#define CONN_SLOTS (1u << 20)
/* After the drain deadline, how long queued output may still go out before
 * a connection is closed regardless: a peer that never reads must not
 * hold the stop. */
#define DRAIN_SLACK_MS 1000
/* The longest sleep while a producer waits on our backlog, or a receive
 * on buffers other shards give back without waking us (1 ms), and while
 * draining (10 ms). */
#define BACKLOG_NAP_NS  100000
#define STARVED_NAP_MS  1
#define DRAINING_NAP_MS 10

/* The turn clock: timers use the milliseconds, latencies the microseconds. */
static void tick(struct sb__shard *sh)
{
	sh->now_us = sb__now_us();
	sh->now = sh->now_us / 1000;
}

static void arm_wake(struct sb__shard *sh)
{
	struct io_uring_sqe *sqe = sb__sqe(sh);
	io_uring_prep_poll_multishot(sqe, sh->efd, POLLIN);
	io_uring_sqe_set_data64(sqe, sb__tag(SB__TAG_WAKE, 0));
}

static void on_cqe(struct sb__shard *sh, struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	enum sb__tag tag = (enum sb__tag)(ud >> SB__TAG_SHIFT);
	uint64_t ep = (uint64_t)sh->id << SB__TAG_SHIFT | (ud & SB__EP_MASK);
	struct sb__conn *c;

	switch (tag) {
	case SB__TAG_ACCEPT:
		sb__accept_cqe(sh, cqe, (int)(ud & SB__EP_MASK));
		break;
	case SB__TAG_RECV:
		c = sb__reqtab_get(&sh->conns, ep);
		if (c != NULL)
			sb__conn_recv(sh, c, cqe);
		else if (cqe->flags & IORING_CQE_F_BUFFER) { /* cannot happen; never leak */
			uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
			sb__buf_put(sb__bufpool_get(&sh->pool, bid), &sh->pool);
		}
		break;
	case SB__TAG_SEND:
		c = sb__reqtab_get(&sh->conns, ep);
		if (c != NULL)
			sb__outq_sent(sh, c, cqe->res);
		break;
	case SB__TAG_CANCEL: /* the recv it cancelled reports for itself */
		break;
	case SB__TAG_NATS:
		sb__cluster_cqe(sh, cqe);
		break;
	case SB__TAG_WAKE: {
		uint64_t v;
		if (read(sh->efd, &v, sizeof v) < 0 && errno != EAGAIN)
			sb__log(&sh->r->log, 0, "shard %u: eventfd read: %s", sh->id,
				strerror(errno));
		if (!(cqe->flags & IORING_CQE_F_MORE))
			arm_wake(sh);
		break;
	}
	}
}

static void begin_drain(struct sb__shard *sh)
{
	sh->draining = 1;
	sh->drain_deadline = sh->now + sh->r->drain_ms;
	/* The multishot accept holds the listening socket until it ends; cancel
	 * it and wait for that, or the port stays bound after we return. */
	struct io_uring_sqe *sqe = sb__sqe(sh);
	io_uring_prep_cancel64(sqe, sb__tag(SB__TAG_ACCEPT, 0), 0);
	io_uring_sqe_set_data64(sqe, sb__tag(SB__TAG_CANCEL, 0));
	close(sh->lfd);
	sh->lfd = -1;
	if (sh->wfd >= 0) {
		sqe = sb__sqe(sh);
		io_uring_prep_cancel64(sqe, sb__tag(SB__TAG_ACCEPT, SB__LISTEN_EDGE), 0);
		io_uring_sqe_set_data64(sqe, sb__tag(SB__TAG_CANCEL, 0));
		close(sh->wfd);
		sh->wfd = -1;
	}
	if (sh->afd >= 0) {
		sqe = sb__sqe(sh);
		io_uring_prep_cancel64(sqe, sb__tag(SB__TAG_ACCEPT, SB__LISTEN_ADMIN), 0);
		io_uring_sqe_set_data64(sqe, sb__tag(SB__TAG_CANCEL, 0));
		close(sh->afd);
		sh->afd = -1;
	}
	for (struct sb__link *l = sh->conn_list.next, *next; l != &sh->conn_list; l = next) {
		next = l->next; /* sb__send_msg() may drop a slow consumer */
		struct sb__conn *c = SB__CONTAINER(l, struct sb__conn, all);
		struct sb_msg bye = {.kind = SB_GOODBYE, .deadline_ms = sh->r->drain_ms};
		bye.text.ptr = (const uint8_t *)"router draining";
		bye.text.len = (uint32_t)strlen("router draining");
		if (c->ready && !c->closing)
			sb__send_msg(sh, c, &bye);
	}
}

static uint64_t inflight_everywhere(const struct sb_router *r)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < r->nshards; i++)
		n += atomic_load_explicit(&r->shards[i].st.inflight, memory_order_relaxed);
	return n;
}

/* Once draining: at the deadline a shard ends its own requests; connections
 * close only when no shard has a request left, since a handler here may
 * still owe a reply to a request another shard owns. */
static int drain_step(struct sb__shard *sh)
{
	if (sh->now >= sh->drain_deadline)
		while (sh->req_list.next != &sh->req_list)
			sb__req_fail(sh, SB__CONTAINER(sh->req_list.next, struct sb__req, all),
				     SB_EDRAINING, "the router stopped before a final reply");
	if (inflight_everywhere(sh->r) > 0)
		return 0;
	for (struct sb__link *l = sh->conn_list.next, *next; l != &sh->conn_list; l = next) {
		next = l->next;
		struct sb__conn *c = SB__CONTAINER(l, struct sb__conn, all);
		/* Let queued output (the goodbye, last replies) go first, but
		 * not forever: a peer that never reads must not hold the stop. */
		if ((c->q_len == 0 && !c->sending) ||
		    sh->now >= sh->drain_deadline + DRAIN_SLACK_MS)
			sb__conn_close(sh, c, "router stopped");
		else
			c->doomed = 1;
	}
	return sh->conn_list.next == &sh->conn_list && !sh->accept_armed && !sh->ws_accept_armed &&
	       !sh->admin_accept_armed;
}

static int setup(struct sb__shard *sh)
{
	struct io_uring_params p;
	const struct sb_router_config *cfg = &sh->r->cfg;
	int rc;

	/* The fastest mode first, falling back for older kernels. */
	static const unsigned modes[] = {
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
		IORING_SETUP_COOP_TASKRUN,
		0,
	};
	for (unsigned i = 0; i < sizeof modes / sizeof modes[0]; i++) {
		memset(&p, 0, sizeof p);
		p.flags = modes[i] | IORING_SETUP_CQSIZE;
		p.cq_entries = CQ_ENTRIES;
		if ((rc = io_uring_queue_init_params(SQ_ENTRIES, &sh->ring, &p)) != -EINVAL)
			break;
	}
	if (rc < 0) {
		sb__log(&sh->r->log, 0, "shard %u: io_uring_queue_init: %s", sh->id, strerror(-rc));
		return SB_ESYS;
	}
	sh->ring_ok = 1;
	struct io_uring_probe *probe = io_uring_get_probe_ring(&sh->ring);
	static const int ops[] = {IORING_OP_ACCEPT, IORING_OP_RECV, IORING_OP_SENDMSG,
				  IORING_OP_POLL_ADD, IORING_OP_ASYNC_CANCEL};
	for (unsigned i = 0; probe != NULL && i < sizeof ops / sizeof ops[0]; i++)
		if (!io_uring_opcode_supported(probe, ops[i])) {
			sb__log(&sh->r->log, 0, "shard %u: kernel lacks io_uring opcode %d", sh->id,
				ops[i]);
			io_uring_free_probe(probe);
			return SB_ESYS;
		}
	io_uring_free_probe(probe);
	if ((rc = sb__bufpool_init(&sh->pool, &sh->ring, 0, cfg->recv_buffers,
				   cfg->recv_buffer_size)) != 0) {
		sb__log(&sh->r->log, 0, "shard %u: provided buffer ring: %s", sh->id,
			strerror(errno));
		return rc;
	}
	if (sb__reqtab_init(&sh->conns, sh->id, sizeof(struct sb__conn), CONN_SLOTS) != 0 ||
	    sb__reqtab_init(&sh->reqs, sh->id, sizeof(struct sb__req), cfg->max_inflight) != 0)
		return SB_ENOMEM;
	sb__auth_adopt(&sh->auth, &sh->r->auth);
	tick(sh);
	sb__wheel_init(&sh->wheel, sh->now);
	sb__accept_init(sh);
	sb__routes_init(&sh->routes);
	sb__routes_init(&sh->direct);
	/* A departure then costs its own registrations (sb__conn_gone). */
	sh->routes.by_ep_on = sh->direct.by_ep_on = 1;
	sh->routes.on_drop = sb__route_dropped;
	sh->routes.drop_ctx = sh;
	sb__replica_init(&sh->peers);
	/* Before any route: the cluster hears of each one. */
	if (cfg->cluster != NULL) {
		if ((rc = sb__cluster_start(sh)) != 0)
			return rc;
		sh->routes.on_new = sb__cluster_route_new;
		sh->routes.on_here = sb__cluster_route_here;
		sh->routes.here = sh->id;
		sh->routes.everywhere = SB__LOCAL_SHARD;
	}
	sb__idmap_init(&sh->cancel);
	sb__idmap_init(&sh->load);
	sb__idmap_init(&sh->leaving);
	sb__idmap_init(&sh->moved);
	sb__idmap_init(&sh->moved_in);
	sb__link_init(&sh->conn_list);
	sb__link_init(&sh->req_list);
	if (sh->r->tls_on && (sh->tls_stage = malloc(SB__TLS_RECORD)) == NULL)
		return SB_ENOMEM;
	if (sb__register_locals(sh) != 0)
		return SB_ENOMEM;
	sb__accept_arm(sh, SB__LISTEN_MAIN);
	if (sh->wfd >= 0)
		sb__accept_arm(sh, SB__LISTEN_EDGE);
	if (sh->afd >= 0)
		sb__accept_arm(sh, SB__LISTEN_ADMIN);
	arm_wake(sh);
	return 0;
}

void sb__shard_teardown(struct sb__shard *sh)
{
	sb__local_teardown(sh);
	sb__mail_teardown(sh);
}

void sb__shard_destroy(struct sb__shard *sh)
{
	free(sh->dirty);
	sh->dirty = NULL;
	sb__outq_sendv_destroy(sh);
	free(sh->tls_stage);
	sh->tls_stage = NULL;
	sb__tls_ctx_put(sh->tls);
	sh->tls = NULL;
	sb__routes_destroy(&sh->routes);
	sb__routes_destroy(&sh->direct);
	sb__replica_destroy(&sh->peers);
	sb__idmap_destroy(&sh->cancel);
	sb__idmap_destroy(&sh->load);
	sb__idmap_destroy(&sh->leaving);
	sb__idmap_destroy(&sh->moved);
	sb__idmap_destroy(&sh->moved_in);
	if (sh->ring_ok) {
		sb__bufpool_destroy(&sh->pool, &sh->ring);
		io_uring_queue_exit(&sh->ring);
		sh->ring_ok = 0;
	}
	sb__reqtab_destroy(&sh->conns);
	sb__reqtab_destroy(&sh->reqs);
	sb__auth_shard_destroy(&sh->auth);
	sb__jwt_cache_drop(&sh->jwt);
}

static void signal_started(struct sb__shard *sh, int rc)
{
	struct sb_router *r = sh->r;
	pthread_mutex_lock(&r->start_lock);
	sh->start_rc = rc;
	r->started++;
	pthread_cond_broadcast(&r->start_cond);
	pthread_mutex_unlock(&r->start_lock);
}

void *sb__shard_main(void *arg)
{
	struct sb__shard *sh = arg;
	struct sb_router *r = sh->r;
	int rc = setup(sh);

	sb__local_thread(sh);
	signal_started(sh, rc);
	if (rc != 0) {
		atomic_fetch_add(&r->drained, 1); /* nothing to drain: don't hold the others */
		return NULL; /* the router tears every shard down after the join */
	}
	for (;;) {
		struct io_uring_cqe *cqe;
		unsigned head, n = 0;

		/* The clock before the events: a request that woke an idle shard
		 * must not have its timeout shortened by the time it slept. */
		tick(sh);
		sb__auth_turn(&sh->auth, &r->auth); /* before the turn's frames */
		io_uring_for_each_cqe(&sh->ring, head, cqe)
		{
			on_cqe(sh, cqe);
			n++;
		}
		io_uring_cq_advance(&sh->ring, n);
		tick(sh);
		sb__mail_read(sh);
		sb__local_read(sh);
		sb__wheel_run(&sh->wheel, sh->now);
		if (!sh->draining && atomic_load(&r->stopping))
			begin_drain(sh);
		sb__bufpool_flush(&sh->pool);
		/* Re-arm when the kernel holds buffers, not only when some came
		 * back this turn: they may have gone back before the -ENOBUFS
		 * was seen, and then no later turn would return any. */
		if (sh->need_rearm && sh->pool.out < sh->pool.count)
			sb__conn_rearm_starved(sh);
		if (sh->xs != NULL)
			sb__cluster_turn(sh);
		sb__outq_flush(sh);
		sb__mail_flush(sh);
		/* Done only once our backlog has gone into the rings: a shard
		 * that counted itself done with mail still backlogged let the
		 * others leave, and then waited forever for room in a ring
		 * nobody read. What is in the rings is released at teardown. */
		if (sh->draining && !sh->drained && drain_step(sh) && !sb__mail_backlogged(sh)) {
			sh->drained = 1;
			atomic_fetch_add(&r->drained, 1);
		}
		/* After the drain's mail too (connections closed, requests
		 * failed): a wake asked before the turn's last mail does not
		 * cover it (mailbox.c), and we may sleep next. */
		sb__mail_wake(sh);
		/* Leave together: until every shard is done, others may still
		 * mail us, and their buffers must come back to them. Mail that
		 * finds a ring full after that is released at teardown too. */
		if (sh->drained && atomic_load(&r->drained) == r->nshards)
			break;

		/* Sleep only if no mail slipped in; the wheel bounds the wait. */
		if (io_uring_cq_ready(&sh->ring) == 0 && sb__mailbox_sleep(r->mb, sh->id)) {
			uint64_t wait = sb__wheel_next(&sh->wheel, sh->now);
			if (sh->xs != NULL)
				wait = sb__cluster_wait(sh, wait);
			/* Re-check the drain, retry mail that found a ring full, and
			 * look for receive buffers other shards gave back (they push
			 * them without waking us): nothing else would wake us. */
			if ((sh->draining || sb__mail_backlogged(sh) || sh->need_rearm) && wait > 1)
				wait = sb__mail_backlogged(sh) || sh->need_rearm ? STARVED_NAP_MS
										 : DRAINING_NAP_MS;
			struct __kernel_timespec ts = {.tv_sec = (long long)(wait / 1000),
						       .tv_nsec =
							       (long long)(wait % 1000) * 1000000};
			/* A producer paused on our backlog waits for our next look,
			 * and the shard the backlog goes to empties a full ring in
			 * well under a millisecond: looking every 1 ms left both
			 * shards idle most of the time (cross-shard fire-64 ran at
			 * 3.4M msg/s instead of 5.7-6.0M). */
			if (sb__mail_backlogged(sh) && wait > 0)
				ts = (struct __kernel_timespec){.tv_nsec = BACKLOG_NAP_NS};
			io_uring_submit_and_wait_timeout(&sh->ring, &cqe, 1,
							 wait == UINT64_MAX ? NULL : &ts, NULL);
			sb__mailbox_awake(r->mb, sh->id);
		} else {
			io_uring_submit(&sh->ring);
			io_uring_get_events(&sh->ring);
		}
	}
	if (sh->xs != NULL)
		sb__cluster_stop(sh);
	io_uring_submit(&sh->ring);
	return NULL;
}
