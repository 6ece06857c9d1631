/* A connection on its shard. Bytes arrive by a multishot recv into the
 * shard's provided buffers; whole frames are routed in place (the buffer
 * shared by reference), a frame cut at a buffer's end is reassembled in a
 * heap buffer of its size, and what arrives while the connection is paused
 * is parked and routed on resume. A silent connection is pinged, then
 * closed. The close stops routing at once and frees the memory once no
 * I/O refers to it. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/tls.h"
#include "proto/mp.h"
#include "router/addrtab.h"
#include "router/conn.h"
#include "router/conn_tls.h"
#include "router/conn_ws.h"
#include "router/edge_auth.h"
#include "router/flow.h"
#include "router/frame.h"
#include "router/mail.h"
#include "router/move.h"
#include "router/outq.h"
#include "router/peers.h"
#include "router/request.h"
#include "router/shard.h"

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

/* A fatal error: tell the peer, then close once the error is on the wire. */
void sb__conn_fail(struct sb__shard *sh, struct sb__conn *c, int err, const char *text)
{
	sb__log(&sh->r->log, 2, "peer %s: %s: %s", c->name[0] ? c->name : "(handshake)",
		sb_strerror(err), text);
	sb__send_error(sh, c, 0, err, text, SB_F_FATAL);
	c->doomed = 1;
}

static void on_data(struct sb__shard *sh, struct sb__conn *c, struct sb__buf *b, uint8_t *p,
		    uint32_t len);

/* Routes what arrived while paused, in order, until paused again. While
 * it runs, c is not freed (sb__conn_free() waits for it) and its parked list
 * changes under nobody but this loop. */
void sb__conn_unpark(struct sb__shard *sh, struct sb__conn *c)
{
	uint32_t i = 0;
	c->unparking = 1;
	while (i < c->nparked && c->paused == 0 && !c->closing) {
		struct sb__seg *s = &c->parked[i++];
		on_data(sh, c, s->buf, (uint8_t *)s->p, s->len);
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

static int park(struct sb__shard *sh, struct sb__conn *c, struct sb__buf *b, const uint8_t *p,
		uint32_t len);

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
		if (c->moving) { /* the frame goes with it, unrouted (move.c) */
			if (park(sh, c, b, b->data, sb__be32(b->data) + SB_PREFIX_LEN) != 0)
				sb__conn_close(sh, c, "out of memory");
		} else
			sb__buf_put(b, &sh->pool);
	}
	return used;
}

/* A receive buffer full of bytes: whole frames are routed in place (the
 * buffer is shared by reference), a frame cut at the end is copied out. */
static void on_data(struct sb__shard *sh, struct sb__conn *c, struct sb__buf *b, uint8_t *p,
		    uint32_t len)
{
	uint32_t pos = 0;
	struct sb__conn *outer = sh->producer; /* a resume may route another's bytes */

	sh->producer = c;
	if (c->asm_have > 0)
		pos = reassemble(sh, c, p, len);
	while (pos < len && !c->closing && !c->doomed && !c->moving) {
		if (len - pos >= SB_PREFIX_LEN) {
			uint32_t body = sb__be32(p + pos);
			if (!frame_len_ok(sh, c, body))
				break;
			if (len - pos >= SB_PREFIX_LEN + body) {
				sb__frame(sh, c, b, p + pos, SB_PREFIX_LEN + body);
				if (c->moving)
					break; /* this frame and the rest go with it (move.c) */
				pos += SB_PREFIX_LEN + body;
				continue;
			}
		}
		pos += reassemble(sh, c, p + pos, len - pos);
	}
	if (c->moving && pos < len && !c->closing) {
		sb__buf_get(b); /* the caller keeps its own */
		if (park(sh, c, b, p + pos, len - pos) != 0)
			sb__conn_close(sh, c, "out of memory");
	}
	sh->producer = outer;
}

/* Keeps bytes of a paused connection for later, taking over the reference
 * on b. A connection stays paused as long as the consumer it feeds does
 * not read: once b's pool runs low, its bytes wait in a heap copy, as a
 * receive buffer held that long is one fewer for every connection of the
 * shard. */
static int park(struct sb__shard *sh, struct sb__conn *c, struct sb__buf *b, const uint8_t *p,
		uint32_t len)
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
		memcpy(h->data, p, len);
		sb__buf_put(b, &sh->pool);
		b = h;
		p = h->data;
	}
	c->parked[c->nparked++] = (struct sb__seg){b, p, len};
	return 0;
fail:
	sb__buf_put(b, &sh->pool);
	return SB_ENOMEM;
}

/* Received bytes into the frame path, taking over the reference on b:
 * routed now, or parked while the connection is paused. */
void sb__conn_take_at(struct sb__shard *sh, struct sb__conn *c, struct sb__buf *b, uint8_t *p,
		      uint32_t len)
{
	if (c->paused > 0 || c->nparked > 0) {
		if (park(sh, c, b, p, len) != 0)
			sb__conn_close(sh, c, "out of memory");
		return;
	}
	on_data(sh, c, b, p, len);
	sb__buf_put(b, &sh->pool);
}

void sb__conn_take(struct sb__shard *sh, struct sb__conn *c, struct sb__buf *b, uint32_t len)
{
	sb__conn_take_at(sh, c, b, b->data, len);
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
		if (c->xport == SB__XPORT_PLAIN) {
			sb__conn_take(sh, c, b, (uint32_t)cqe->res);
			b = NULL;
		} else if (c->tls != NULL) /* TLS, or wss: its plaintext finds its way */
			sb__conn_tls_in(sh, c, b->data,
					(uint32_t)cqe->res); /* copied: b goes back now */
		else {
			sb__conn_ws_in(sh, c, b, (uint32_t)cqe->res);
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
	/* Moving: its receive is over (cancelled, or out of buffers, or it
	 * ended on its own after routing the frame that decided the move).
	 * The end of the stream, or an error, goes with it too: the frames
	 * parked before it are routed there first, and its first receive
	 * there finds the end again and closes it (a sender that closes
	 * right after its SENDs loses none). */
	if (!more && c->moving) {
		if (sb__move_ready(c))
			sb__move_ship(sh, c); /* c is gone */
		return;                       /* else its send completion ships it */
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
	/* An HTTP client says nothing while its call is out and cannot answer
	 * a PING: its connection's deadlines are the edge's (conn_ws.c). */
	if (sh->r->cfg.idle_ms == 0 || c->xport == SB__XPORT_HTTP)
		return;
	c->last_rx = sh->now;
	sb__timer_arm(&sh->wheel, &c->idle_timer, sh->now + sh->r->cfg.idle_ms);
}

/* Local effects of a connection going away, on every shard in turn. Only
 * a connection that holds a registration has a route to take off, found
 * through the tables' index of its routes (O(its registrations)). */
void sb__conn_gone(struct sb__shard *sh, uint64_t ep, int registered)
{
	if (registered) {
		sb__routes_del_ep(&sh->routes, ep);
		sb__routes_del_ep(&sh->direct, ep);
	}
	sb__req_gone_all(sh, ep);
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
		sb__log(&sh->r->log, 2, "peer %s disconnected: %s", c->name, why);
	sb__flow_resume(sh, c);        /* nobody else would let them read again */
	sb__req_requester_gone(sh, c); /* its handlers hear it as a cancel */
	if (c->ready) {
		/* nregs == 0: no route of it on any shard, since its own
		 * UNREGISTERs went out (in order) before this mail. */
		uint32_t registered = c->nregs > 0;
		for (unsigned to = 0; to < sh->r->nshards; to++)
			if (to != sh->id) {
				struct sb__mail m = {
					.type = SB__MAIL_CONN_GONE, .a = registered, .b = c->ep};
				sb__mail(sh, to, &m);
			}
		sb__conn_gone(sh, c->ep, (int)registered);
	}
	sb__peers_leave(sh, c); /* its name, presence subscription */
	sb__move_closed(sh, c);
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
	sb__conn_ws_free(c);
	sb__tok_free(c);
	sb__peers_conn_free(c);
	close(c->fd);
	sb__link_del(&c->all);
	sb__stat_add(&sh->st.connections, -1);
	sb__reqtab_free(&sh->conns, c->ep);
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
