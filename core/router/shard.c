/* The shard event loop: accepts, receives into provided buffers, routes
 * frames by their header, tracks requests, and batches output per turn. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "proto/mp.h"
#include "router/accept.h"
#include "router/admin.h"
#include "router/balance.h"
#include "router/bcast.h"
#include "router/conn.h"
#include "router/conn_tls.h"
#include "router/deliver.h"
#include "router/flow.h"
#include "router/frame.h"
#include "router/goodbye.h"
#include "router/handshake.h"
#include "router/local.h"
#include "router/mail.h"
#include "router/outq.h"
#include "router/register.h"
#include "router/request.h"
#include "router/shard.h"

/* The turn clock: timers use the milliseconds, latencies the microseconds. */
static void tick(struct sb__shard *sh)
{
	sh->now_us = sb__now_us();
	sh->now = sh->now_us / 1000;
}

/* ---- submission helpers ------------------------------------------------- */

void sb__conn_arm_recv(struct sb__shard *sh, struct sb__conn *c)
{
	/* One receive per connection: a second would interleave the byte
	 * stream, and a pause (which cancels one) would not stop it. */
	if (c->recv_armed)
		return;
	struct io_uring_sqe *sqe = sb__sqe(sh);
	io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = sh->pool.bgid;
	io_uring_sqe_set_data64(sqe, sb__tag(SB__TAG_RECV, c->ep));
	c->recv_armed = 1;
	c->rearm = 0;
}

static void arm_wake(struct sb__shard *sh)
{
	struct io_uring_sqe *sqe = sb__sqe(sh);
	io_uring_prep_poll_multishot(sqe, sh->efd, POLLIN);
	io_uring_sqe_set_data64(sqe, sb__tag(SB__TAG_WAKE, 0));
}

/* A fatal error: tell the peer, then close once the error is on the wire. */
void sb__conn_fail(struct sb__shard *sh, struct sb__conn *c, int err, const char *text)
{
	sb__log(sh->r, 2, "peer %s: %s: %s", c->name[0] ? c->name : "(handshake)", sb_strerror(err),
		text);
	sb__send_error(sh, c, 0, err, text, SB_F_FATAL);
	c->doomed = 1;
}

static void on_data(struct sb__shard *sh, struct sb__conn *c, struct sb__buf *b, uint32_t len);

/* Routes what arrived while paused, in order, until paused again. While
 * it runs, c is not freed (sb__conn_free() waits for it) and its parked list
 * changes under nobody but this loop. */
void sb__conn_unpark(struct sb__shard *sh, struct sb__conn *c)
{
	uint32_t i = 0;
	c->unparking = 1;
	while (i < c->nparked && c->paused == 0 && !c->closing) {
		struct sb__seg *s = &c->parked[i++];
		on_data(sh, c, s->buf, s->len);
		sb__buf_put(s->buf, &sh->pool);
	}
	memmove(c->parked, c->parked + i, (c->nparked - i) * sizeof *c->parked);
	c->nparked -= i;
	c->unparking = 0;
}

const char *sb__conn_addr(const struct sb__conn *c, char *buf, socklen_t cap)
{
	struct in_addr a = {.s_addr = c->addr};
	return inet_ntop(AF_INET, &a, buf, cap) != NULL ? buf : "?";
}

/* ---- receive ------------------------------------------------------------ */

static int frame_len_ok(struct sb__shard *sh, struct sb__conn *c, uint32_t body)
{
	char why[128];
	struct sb_fault_info fi = {0};

	if (body <= sh->r->cfg.max_frame && body >= SB_BODY_MIN)
		return 1;
	fi.fault = body > sh->r->cfg.max_frame ? SB_FAULT_OVERSIZE : SB_FAULT_RUNT;
	fi.got = body;
	fi.limit = body > sh->r->cfg.max_frame ? sh->r->cfg.max_frame : SB_BODY_MIN;
	sb_fault_describe(&fi, why, sizeof why);
	sb__conn_fail(sh, c, sb_fault_code(fi.fault), why);
	return 0;
}

/* Bytes that continue a frame begun in an earlier buffer. Returns bytes used. */
static uint32_t reassemble(struct sb__shard *sh, struct sb__conn *c, const uint8_t *p, uint32_t len)
{
	uint32_t used = 0;

	if (c->asm_need == 0) { /* still collecting the length prefix */
		while (c->asm_have < SB_PREFIX_LEN && used < len)
			c->asm_prefix[c->asm_have++] = p[used++];
		if (c->asm_have < SB_PREFIX_LEN)
			return used;
		uint32_t body = sb__be32(c->asm_prefix);
		if (!frame_len_ok(sh, c, body))
			return len;
		c->asm_need = SB_PREFIX_LEN + body;
		c->asm_buf = sb__buf_heap(c->asm_need);
		if (c->asm_buf == NULL) {
			sb__conn_close(sh, c, "out of memory");
			return len;
		}
		memcpy(c->asm_buf->data, c->asm_prefix, SB_PREFIX_LEN);
	}
	uint32_t take = c->asm_need - c->asm_have;
	if (take > len - used)
		take = len - used;
	memcpy(c->asm_buf->data + c->asm_have, p + used, take);
	c->asm_have += take;
	used += take;
	if (c->asm_have == c->asm_need) {
		struct sb__buf *b = c->asm_buf;
		c->asm_buf = NULL;
		c->asm_have = c->asm_need = 0;
		sb__frame(sh, c, b, b->data, sb__be32(b->data) + SB_PREFIX_LEN);
		sb__buf_put(b, &sh->pool);
	}
	return used;
}

/* A receive buffer full of bytes: whole frames are routed in place (the
 * buffer is shared by reference), a frame cut at the end is copied out. */
static void on_data(struct sb__shard *sh, struct sb__conn *c, struct sb__buf *b, uint32_t len)
{
	uint8_t *p = b->data;
	uint32_t pos = 0;
	struct sb__conn *outer = sh->producer; /* a resume may route another's bytes */

	sh->producer = c;
	if (c->asm_have > 0)
		pos = reassemble(sh, c, p, len);
	while (pos < len && !c->closing && !c->doomed) {
		if (len - pos >= SB_PREFIX_LEN) {
			uint32_t body = sb__be32(p + pos);
			if (!frame_len_ok(sh, c, body))
				break;
			if (len - pos >= SB_PREFIX_LEN + body) {
				sb__frame(sh, c, b, p + pos, SB_PREFIX_LEN + body);
				pos += SB_PREFIX_LEN + body;
				continue;
			}
		}
		pos += reassemble(sh, c, p + pos, len - pos);
	}
	sh->producer = outer;
}

/* Keeps bytes of a paused connection for later, taking over the reference
 * on b. A connection stays paused as long as the consumer it feeds does
 * not read: once b's pool runs low, its bytes wait in a heap copy, as a
 * receive buffer held that long is one fewer for every connection of the
 * shard. */
static int park(struct sb__shard *sh, struct sb__conn *c, struct sb__buf *b, uint32_t len)
{
	if (c->nparked == c->parked_cap) {
		uint32_t cap = c->parked_cap ? c->parked_cap * 2 : 8;
		struct sb__seg *np = realloc(c->parked, cap * sizeof *np);
		if (np == NULL)
			goto fail;
		c->parked = np;
		c->parked_cap = cap;
	}
	if (sb__buf_scarce(b)) {
		struct sb__buf *h = sb__buf_heap(len);
		if (h == NULL)
			goto fail;
		memcpy(h->data, b->data, len);
		sb__buf_put(b, &sh->pool);
		b = h;
	}
	c->parked[c->nparked++] = (struct sb__seg){b, b->data, len};
	return 0;
fail:
	sb__buf_put(b, &sh->pool);
	return SB_ENOMEM;
}

/* Received bytes into the frame path, taking over the reference on b:
 * routed now, or parked while the connection is paused. */
void sb__conn_take(struct sb__shard *sh, struct sb__conn *c, struct sb__buf *b, uint32_t len)
{
	if (c->paused > 0 || c->nparked > 0) {
		if (park(sh, c, b, len) != 0)
			sb__conn_close(sh, c, "out of memory");
		return;
	}
	on_data(sh, c, b, len);
	sb__buf_put(b, &sh->pool);
}

void sb__conn_recv(struct sb__shard *sh, struct sb__conn *c, struct io_uring_cqe *cqe)
{
	int more = cqe->flags & IORING_CQE_F_MORE;
	struct sb__buf *b = NULL;

	if (cqe->flags & IORING_CQE_F_BUFFER)
		b = sb__bufpool_get(&sh->pool, (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT));
	if (cqe->res > 0)
		c->last_rx = sh->now; /* the idle check's clock */
	/* recv_armed stays set while the data is routed, so a close on the
	 * way cannot free the connection under our feet. */
	if (!c->closing && cqe->res > 0 && b != NULL) {
		if (c->tls != NULL)
			sb__conn_tls_in(sh, c, b->data,
					(uint32_t)cqe->res); /* copied: b goes back now */
		else {
			sb__conn_take(sh, c, b, (uint32_t)cqe->res);
			b = NULL;
		}
	}
	if (b != NULL)
		sb__buf_put(b, &sh->pool);
	if (!more) {
		c->recv_armed = 0;
		c->recv_cancel = 0;
	}
	if (c->closing) {
		sb__conn_free(sh, c);
		return;
	}
	if (cqe->res == -ECANCELED && !more) { /* cancelled to pause reading */
		if (c->paused == 0)            /* and resumed before the cancel landed */
			sb__conn_arm_recv(sh, c);
		return;
	}
	if (cqe->res == 0 || (cqe->res < 0 && cqe->res != -ENOBUFS)) {
		sb__conn_close(sh, c, cqe->res == 0 ? "peer closed" : strerror(-cqe->res));
		return;
	}
	if (!more && c->paused > 0)
		return; /* stopped for flow control: resume re-arms it */
	if (!more) {
		if (cqe->res == -ENOBUFS) {
			/* Every buffer is out: wait until some come back. */
			sb__stat_add(&sh->st.recv_starved, 1);
			c->rearm = 1;
			sh->need_rearm = 1;
		} else
			sb__conn_arm_recv(sh, c);
	}
}

/* ---- connections -------------------------------------------------------- */

/* Silence for idle_ms earns a PING; silence for pong_timeout_ms after it
 * closes the connection, so a peer that vanished without a FIN (a cable
 * pulled, a host frozen) stops holding its places and its routes. Any bytes
 * count as an answer. A connection we stopped reading (paused for flow
 * control, or waiting for receive buffers) is not silent by its own doing:
 * its clock restarts instead. */
void sb__conn_on_idle(struct sb__timer *t)
{
	struct sb__conn *c = SB__CONTAINER(t, struct sb__conn, idle_timer);
	struct sb__shard *sh = c->sh;
	const struct sb_router_config *cfg = &sh->r->cfg;
	char why[64];

	if (c->doomed || c->closing)
		return;
	if (c->paused > 0 || c->nparked > 0 || c->rearm)
		c->last_rx = sh->now;
	if (c->ping_at != 0 && c->last_rx >= c->ping_at)
		c->ping_at = 0;
	if (c->ping_at != 0) {
		snprintf(why, sizeof why, "no PONG within %u ms", cfg->pong_timeout_ms);
		sb__stat_add(&sh->st.idle_timeouts, 1);
		sb__conn_fail(sh, c, SB_ETIMEOUT, why);
		return;
	}
	if (sh->now - c->last_rx < cfg->idle_ms) {
		sb__timer_arm(&sh->wheel, t, c->last_rx + cfg->idle_ms);
		return;
	}
	struct sb_msg ping = {.kind = SB_PING};
	sb__send_msg(sh, c, &ping);
	c->ping_at = sh->now;
	sb__stat_add(&sh->st.idle_pings, 1);
	sb__timer_arm(&sh->wheel, t, sh->now + cfg->pong_timeout_ms);
}

void sb__conn_idle_start(struct sb__shard *sh, struct sb__conn *c)
{
	if (sh->r->cfg.idle_ms == 0)
		return;
	c->last_rx = sh->now;
	sb__timer_arm(&sh->wheel, &c->idle_timer, sh->now + sh->r->cfg.idle_ms);
}

/* Local effects of a connection going away, on every shard in turn. */
void sb__conn_gone(struct sb__shard *sh, uint64_t ep)
{
	sb__routes_del_ep(&sh->routes, ep);
	/* O(live requests): a disconnect is rare next to messages, and an
	 * index per handler would cost on every request. */
	for (struct sb__link *l = sh->req_list.next; l != &sh->req_list;) {
		struct sb__link *next = l->next;
		uint64_t next_rid =
			next != &sh->req_list ? SB__CONTAINER(next, struct sb__req, all)->rid : 0;
		struct sb__req *q = SB__CONTAINER(l, struct sb__req, all);
		if (q->handler == ep)
			sb__req_fail(sh, q, SB_EPEERGONE, "the handler disconnected");
		else if (q->bc != NULL)
			sb__bcast_gone(sh, q, ep);
		/* Answering can drop a requester as a slow consumer, which ends
		 * its requests, `next` perhaps among them: then start over. Nothing
		 * is done twice: failed requests have left the list, and a
		 * broadcast's gone handler is already closed. */
		if (next != &sh->req_list && sb__reqtab_get(&sh->reqs, next_rid) == NULL)
			next = sh->req_list.next;
		l = next;
	}
	sb__idmap_del(&sh->load, ep);
	sb__idmap_del(&sh->leaving, ep);
}

/* Stops routing to and from c; the memory goes once no I/O refers to it. */
void sb__conn_close(struct sb__shard *sh, struct sb__conn *c, const char *why)
{
	if (c->closing)
		return;
	c->closing = 1;
	sb__timer_disarm(&c->hello_timer);
	sb__timer_disarm(&c->idle_timer);
	sb__timer_disarm(&c->slow);
	if (c->ready)
		sb__log(sh->r, 2, "peer %s disconnected: %s", c->name, why);
	sb__flow_resume(sh, c); /* nobody else would let them read again */
	/* Its own requests end; their handlers hear it as a cancel. */
	while (c->reqs.next != &c->reqs) {
		struct sb__req *q = SB__CONTAINER(c->reqs.next, struct sb__req, by_conn);
		sb__req_send_cancel(sh, q);
		sb__req_finish(sh, q);
	}
	if (c->ready) {
		for (unsigned to = 0; to < sh->r->nshards; to++)
			if (to != sh->id) {
				struct sb__mail m = {.type = SB__MAIL_CONN_GONE, .b = c->ep};
				sb__mail(sh, to, &m);
			}
		sb__conn_gone(sh, c->ep);
	}
	sb__peers_leave(sh, c); /* its name, presence subscription */
	/* Wakes the multishot recv (it completes with 0) and fails a pending
	 * sendmsg, so both come back and the connection can be freed. */
	shutdown(c->fd, SHUT_RDWR);
	sb__conn_free(sh, c);
}

void sb__conn_free(struct sb__shard *sh, struct sb__conn *c)
{
	if (c->recv_armed || c->sending || c->unparking)
		return; /* the completion, or the end of the routing, frees it */
	while (c->q_len > 0) {
		sb__buf_put(c->q[c->q_head].buf, &sh->pool);
		c->q_head = (c->q_head + 1) % c->q_cap;
		c->q_len--;
	}
	sb__timer_disarm(&c->hello_timer); /* its memory goes below */
	sb__timer_disarm(&c->idle_timer);
	sb__timer_disarm(&c->slow);
	if (c->counted)
		atomic_fetch_sub(&sh->r->nconns, 1);
	if (c->addr_counted)
		sb__addrtab_give(&sh->r->addrs, c->addr);
	sb__auth_hs_free(c->hs);
	free(c->q);
	free(c->producers);
	for (uint32_t i = 0; i < c->nparked; i++)
		sb__buf_put(c->parked[i].buf, &sh->pool);
	free(c->parked);
	if (c->asm_buf != NULL)
		sb__buf_put(c->asm_buf, &sh->pool);
	sb__tls_free(c->tls);
	sb__peers_conn_free(c);
	close(c->fd);
	sb__link_del(&c->all);
	sb__stat_add(&sh->st.connections, -1);
	sb__reqtab_free(&sh->conns, c->ep);
}

/* ---- the loop ----------------------------------------------------------- */

static void on_cqe(struct sb__shard *sh, struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	enum sb__tag tag = (enum sb__tag)(ud >> SB__TAG_SHIFT);
	uint64_t ep = (uint64_t)sh->id << SB__TAG_SHIFT | (ud & SB__EP_MASK);
	struct sb__conn *c;

	switch (tag) {
	case SB__TAG_ACCEPT:
		sb__accept_cqe(sh, cqe);
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
	case SB__TAG_WAKE: {
		uint64_t v;
		if (read(sh->efd, &v, sizeof v) < 0 && errno != EAGAIN)
			sb__log(sh->r, 0, "shard %u: eventfd read: %s", sh->id, strerror(errno));
		if (!(cqe->flags & IORING_CQE_F_MORE))
			arm_wake(sh);
		break;
	}
	}
}

void sb__conn_rearm_starved(struct sb__shard *sh)
{
	sh->need_rearm = 0;
	for (struct sb__link *l = sh->conn_list.next; l != &sh->conn_list; l = l->next) {
		struct sb__conn *c = SB__CONTAINER(l, struct sb__conn, all);
		if (c->rearm && !c->closing && c->paused == 0 && !c->recv_armed)
			sb__conn_arm_recv(sh, c);
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
	for (struct sb__link *l = sh->conn_list.next, *next; l != &sh->conn_list; l = next) {
		next = l->next; /* sb__send_msg() may drop a slow consumer */
		struct sb__conn *c = SB__CONTAINER(l, struct sb__conn, all);
		struct sb_msg bye = {.kind = SB_GOODBYE, .deadline_ms = sh->r->drain_ms};
		bye.text.ptr = (const uint8_t *)"router draining";
		bye.text.len = 15;
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
		if ((c->q_len == 0 && !c->sending) || sh->now >= sh->drain_deadline + 1000)
			sb__conn_close(sh, c, "router stopped");
		else
			c->doomed = 1;
	}
	return sh->conn_list.next == &sh->conn_list && !sh->accept_armed;
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
		p.cq_entries = 16384;
		if ((rc = io_uring_queue_init_params(1024, &sh->ring, &p)) != -EINVAL)
			break;
	}
	if (rc < 0) {
		sb__log(sh->r, 0, "shard %u: io_uring_queue_init: %s", sh->id, strerror(-rc));
		return SB_ESYS;
	}
	sh->ring_ok = 1;
	struct io_uring_probe *probe = io_uring_get_probe_ring(&sh->ring);
	static const int ops[] = {IORING_OP_ACCEPT, IORING_OP_RECV, IORING_OP_SENDMSG,
				  IORING_OP_POLL_ADD, IORING_OP_ASYNC_CANCEL};
	for (unsigned i = 0; probe != NULL && i < sizeof ops / sizeof ops[0]; i++)
		if (!io_uring_opcode_supported(probe, ops[i])) {
			sb__log(sh->r, 0, "shard %u: kernel lacks io_uring opcode %d", sh->id,
				ops[i]);
			io_uring_free_probe(probe);
			return SB_ESYS;
		}
	io_uring_free_probe(probe);
	if ((rc = sb__bufpool_init(&sh->pool, &sh->ring, 0, cfg->recv_buffers,
				   cfg->recv_buffer_size)) != 0) {
		sb__log(sh->r, 0, "shard %u: provided buffer ring: %s", sh->id, strerror(errno));
		return rc;
	}
	if (sb__reqtab_init(&sh->conns, sh->id, sizeof(struct sb__conn), 1u << 20) != 0 ||
	    sb__reqtab_init(&sh->reqs, sh->id, sizeof(struct sb__req), cfg->max_inflight) != 0)
		return SB_ENOMEM;
	sb__auth_adopt(&sh->auth, &sh->r->auth);
	tick(sh);
	sb__wheel_init(&sh->wheel, sh->now);
	sb__accept_init(sh);
	sb__routes_init(&sh->routes);
	sh->routes.on_drop = sb__route_dropped;
	sh->routes.drop_ctx = sh;
	sb__replica_init(&sh->peers);
	sb__idmap_init(&sh->cancel);
	sb__idmap_init(&sh->load);
	sb__idmap_init(&sh->leaving);
	sb__link_init(&sh->conn_list);
	sb__link_init(&sh->req_list);
	if (sh->r->tls_on && (sh->tls_stage = malloc(SB__TLS_RECORD)) == NULL)
		return SB_ENOMEM;
	if (sb__register_locals(sh) != 0)
		return SB_ENOMEM;
	sb__accept_arm(sh);
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
	free(sh->tls_stage);
	sh->tls_stage = NULL;
	sb__tls_ctx_put(sh->tls);
	sh->tls = NULL;
	sb__routes_destroy(&sh->routes);
	sb__replica_destroy(&sh->peers);
	sb__idmap_destroy(&sh->cancel);
	sb__idmap_destroy(&sh->load);
	sb__idmap_destroy(&sh->leaving);
	if (sh->ring_ok) {
		sb__bufpool_destroy(&sh->pool, &sh->ring);
		io_uring_queue_exit(&sh->ring);
		sh->ring_ok = 0;
	}
	sb__reqtab_destroy(&sh->conns);
	sb__reqtab_destroy(&sh->reqs);
	sb__auth_shard_destroy(&sh->auth);
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
		sb__outq_flush(sh);
		sb__mail_flush(sh);
		sb__mail_wake(sh);
		/* Done only once our backlog has gone into the rings: a shard
		 * that counted itself done with mail still backlogged let the
		 * others leave, and then waited forever for room in a ring
		 * nobody read. What is in the rings is released at teardown. */
		if (sh->draining && !sh->drained && drain_step(sh) && !sb__mail_backlogged(sh)) {
			sh->drained = 1;
			atomic_fetch_add(&r->drained, 1);
		}
		/* Leave together: until every shard is done, others may still
		 * mail us, and their buffers must come back to them. Mail that
		 * finds a ring full after that is released at teardown too. */
		if (sh->drained && atomic_load(&r->drained) == r->nshards)
			break;

		/* Sleep only if no mail slipped in; the wheel bounds the wait. */
		if (io_uring_cq_ready(&sh->ring) == 0 && sb__mailbox_sleep(r->mb, sh->id)) {
			uint64_t wait = sb__wheel_next(&sh->wheel, sh->now);
			/* Re-check the drain, retry mail that found a ring full, and
			 * look for receive buffers other shards gave back (they push
			 * them without waking us): nothing else would wake us. */
			if ((sh->draining || sb__mail_backlogged(sh) || sh->need_rearm) && wait > 1)
				wait = sb__mail_backlogged(sh) || sh->need_rearm ? 1 : 10;
			struct __kernel_timespec ts = {.tv_sec = (long long)(wait / 1000),
						       .tv_nsec =
							       (long long)(wait % 1000) * 1000000};
			/* A producer paused on our backlog waits for our next look,
			 * and the shard the backlog goes to empties a full ring in
			 * well under a millisecond: looking every 1 ms left both
			 * shards idle most of the time (cross-shard fire-64 ran at
			 * 3.4M msg/s instead of 5.7-6.0M). */
			if (sb__mail_backlogged(sh) && wait > 0)
				ts = (struct __kernel_timespec){.tv_nsec = 100000};
			io_uring_submit_and_wait_timeout(&sh->ring, &cqe, 1,
							 wait == UINT64_MAX ? NULL : &ts, NULL);
			sb__mailbox_awake(r->mb, sh->id);
		} else {
			io_uring_submit(&sh->ring);
			io_uring_get_events(&sh->ring);
		}
	}
	io_uring_submit(&sh->ring);
	return NULL;
}
