/* Connection placement. The kernel's SO_REUSEPORT hash puts a connection
 * on a shard; a requester whose handlers are all on another shard pays a
 * crossing for every request and every reply (docs/performance.md, "Same
 * shard against across shards"). So the first SEND or REQUEST that finds
 * no handler of its name on its own shard moves the requester to the
 * handler's shard, once: its bytes park from that frame on (as a paused
 * connection's do), its receive is cancelled, and once nothing of the
 * kernel's refers to it here, its struct goes by mail to the new shard,
 * which gives it an endpoint there, routes the parked bytes first and
 * reads on. Its name and peer_id stay; the directory and every replica
 * follow the new endpoint (PEER_MOVED), and mail still addressed to the
 * old one is forwarded by the shard it left until it closes. */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/log.h"
#include "router/addrtab.h"
#include "router/balance.h"
#include "router/conn.h"
#include "router/edge_auth.h"
#include "router/flow.h"
#include "router/handshake.h"
#include "router/mail.h"
#include "router/move.h"
#include "router/peers.h"
#include "router/router-t.h"
#include "router/shard.h"

/* What a connection must be for its struct, its socket and its parked
 * bytes to be all there is of it: a plain TCP peer that is done with its
 * handshake, has no handler (nothing is routed to it: a peer without one
 * is refused at the sender, so no `to` traffic races the move), no
 * request open (the requests' entries name its endpoint), no presence
 * subscription (every shard's subscriber list names it), nothing queued
 * or in the kernel's hands but its one receive, which is being routed
 * now, and no pause of either direction. A router in a cluster keeps its
 * connections where they are: its peers are known to the other routers
 * by their endpoints' shards too. */
static int movable(const struct sb__shard *sh, const struct sb__conn *c)
{
	return sh->r->nshards > 1 && sh->r->cfg.placement == SB_PLACEMENT_FOLLOW && !sh->draining &&
	       sh->xs == NULL && sh->producer == c && c->xport == SB__XPORT_PLAIN &&
	       c->tls == NULL && c->edge == NULL && c->ready && c->named && c->hs == NULL &&
	       !c->regd && c->nregs == 0 && c->inflight == 0 && sb__link_empty(&c->reqs) &&
	       !c->pr.presence && c->recv_armed && !c->recv_cancel && !c->sending &&
	       c->q_len == 0 && c->paused == 0 && c->nparked == 0 && !c->unparking &&
	       !c->mail_paused && c->nproducers == 0 && c->asm_have == 0 && !c->closing &&
	       !c->doomed && !c->bye;
}

int sb__move_maybe(struct sb__shard *sh, struct sb__conn *c, const struct sb__route *r, uint64_t ep,
		   int service)
{
	unsigned to = sb__ep_shard(ep);

	if (c->moved || to >= sh->r->nshards || to == sh->id || !movable(sh, c))
		return 0;
	/* A handler it may reach here (or in-process, which runs anywhere):
	 * the balancer chose the other only for its load. */
	for (uint32_t k = 0; k < r->n; k++) {
		unsigned where = sb__ep_shard(r->eps[k].ep);
		if ((where == sh->id || where == SB__LOCAL_SHARD) &&
		    sb__admits(&r->eps[k], service, NULL, NULL) == 0)
			return 0;
	}
	c->moving = (uint8_t)(to + 1);
	c->moved = 1;
	c->paused++; /* what arrives from here on parks, this frame first (conn.c) */
	sb__stat_add(&sh->st.frames_in, -1); /* counted again where it is routed */
	sb__timer_disarm(&c->idle_timer);    /* a PING now would queue output here */
	struct io_uring_sqe *sqe = sb__sqe(sh);
	io_uring_prep_cancel64(sqe, sb__tag(SB__TAG_RECV, c->ep), 0);
	io_uring_sqe_set_data64(sqe, sb__tag(SB__TAG_CANCEL, 0));
	c->recv_cancel = 1;
	return 1;
}

/* The move could not go on (out of memory): c stays here and reads on. */
static void stay(struct sb__shard *sh, struct sb__conn *c)
{
	c->moving = 0;
	sb__conn_idle_start(sh, c);
	sb__flow_pause(sh, c->ep, -1); /* routes what parked, then reads again */
}

void sb__move_ship(struct sb__shard *sh, struct sb__conn *c)
{
	unsigned to = c->moving - 1u;
	uint64_t old = c->ep;
	struct sb__conn *n = malloc(sizeof *n);

	if (n == NULL || sb__idmap_put(&sh->moved, old, to + 1u) != 0) {
		free(n);
		stay(sh, c);
		return;
	}
	sb__timer_disarm(&c->hello_timer);
	sb__timer_disarm(&c->idle_timer);
	sb__timer_disarm(&c->slow);
	if (c->tok != NULL) /* its expiry is on this shard's wheel: re-armed there */
		sb__timer_disarm(&c->tok->timer);
	sb__link_del(&c->all);
	/* The parked bytes' buffers may also hold frames this shard still
	 * queues elsewhere: from here both threads count them (buf.c). */
	for (uint32_t i = 0; i < c->nparked; i++)
		sb__buf_share(c->parked[i].buf);
	memcpy(n, c, sizeof *n);
	sb__stat_add(&sh->st.connections, -1);
	sb__reqtab_free(&sh->conns, old);
	struct sb__mail m = {.type = SB__MAIL_CONN_MOVE, .b = old, .p = n};
	sb__mail(sh, to, &m);
}

/* Frees what a moved connection holds and closes its socket, without
 * routing anything: it could not be taken in (r, pool: NULL when the
 * router is stopping, and counts no longer matter). */
static void drop(struct sb_router *r, struct sb__bufpool *pool, struct sb__conn *c)
{
	if (r != NULL && c->counted)
		atomic_fetch_sub(&r->nconns, 1);
	if (r != NULL && c->addr_counted)
		sb__addrtab_give(&r->addrs, c->addr);
	for (uint32_t i = 0; i < c->nparked; i++)
		sb__buf_put(c->parked[i].buf, pool);
	free(c->parked);
	if (c->asm_buf != NULL)
		sb__buf_put(c->asm_buf, pool);
	free(c->q);
	free(c->producers);
	sb__peers_conn_free(c);
	sb__tok_free(c);
	close(c->fd);
	free(c);
}

/* A connection from another shard: an endpoint here, the directory and
 * the replicas told, then its parked bytes routed and its receive armed. */
static void adopt(struct sb__shard *sh, struct sb__conn *src, uint64_t old)
{
	uint64_t ep;
	struct sb__conn *c = sb__reqtab_alloc(&sh->conns, &ep);

	if (c == NULL) {
		/* No entry here: the peer loses its connection, as it would
		 * to any failed allocation, and its name goes as on a close. */
		sb__log(&sh->r->log, 0, "shard %u: no room for a moved connection: closed", sh->id);
		sb__peers_leave(sh, src); /* src->ep is still the old endpoint */
		struct sb__mail m = {.type = SB__MAIL_MOVE_END, .b = old};
		sb__mail(sh, sb__ep_shard(old), &m);
		drop(sh->r, &sh->pool, src);
		return;
	}
	memcpy(c, src, sizeof *c);
	free(src);
	c->ep = ep;
	c->sh = sh;
	c->moving = 0;
	c->moved_from = old;
	c->dirty = 0;
	c->recv_armed = c->recv_cancel = c->rearm = 0;
	sb__link_init(&c->reqs);
	sb__link_init(&c->all);
	sb__link_add(&sh->conn_list, &c->all);
	sb__timer_init(&c->hello_timer, sb__hs_on_timeout);
	sb__timer_init(&c->idle_timer, sb__conn_on_idle);
	sb__timer_init(&c->slow, sb__flow_on_slow);
	c->sv = NULL;         /* it moved with no send in flight: nothing lent */
	if (c->tok != NULL) { /* a bearer token's expiry: on this shard's wheel now */
		c->tok->conn = c;
		sb__tok_arm(sh, c);
	}
	sb__stat_add(&sh->st.connections, 1);
	sb__stat_add(&sh->st.moves, 1);
	sb__peers_dir_move(sh->r, c, old);
	if (sb__idmap_put(&sh->moved_in, old, ep) != 0) {
		/* Without the map, mail forwarded from the old shard is lost. */
		sb__conn_close(sh, c, "out of memory");
		return;
	}
	/* The replicas learn it through the shard it left, behind the
	 * PEER_UP that shard sent them. */
	struct sb__mail m = {.type = SB__MAIL_PEER_MOVED, .a = c->peer_id, .b = old, .c = ep};
	sb__mail(sh, sb__ep_shard(old), &m);
	sb__log(&sh->r->log, 3, "peer %s moved from shard %u to shard %u", c->name,
		sb__ep_shard(old), sh->id);
	sb__conn_idle_start(sh, c);
	sb__flow_pause(sh, ep, -1); /* routes what parked, then reads */
}

uint64_t sb__move_follow(struct sb__shard *sh, uint64_t ep, int *to)
{
	*to = -1;
	if (sb__ep_shard(ep) != sh->id) {
		/* Forwarded by the shard it left. Closed here already: back
		 * there, which answers for the endpoint it gave out. */
		uint64_t now = sb__idmap_get(&sh->moved_in, ep);
		if (now != 0)
			return now;
		*to = (int)sb__ep_shard(ep);
		return 0;
	}
	uint64_t fw = sb__idmap_get(&sh->moved, ep);
	if (fw == 0 || sb__reqtab_get(&sh->conns, ep) != NULL)
		return ep;
	*to = (int)fw - 1;
	return 0;
}

void sb__move_on_mail(struct sb__shard *sh, const struct sb__mail *m)
{
	switch (m->type) {
	case SB__MAIL_CONN_MOVE:
		adopt(sh, m->p, m->b);
		break;
	case SB__MAIL_PEER_MOVED:
		if (sb__ep_shard(m->b) == sh->id) /* the shard it left tells the others */
			for (unsigned to = 0; to < sh->r->nshards; to++)
				if (to != sh->id) {
					struct sb__mail fw = *m;
					sb__mail(sh, to, &fw);
				}
		sb__peers_moved(sh, m->b, m->c, m->a);
		break;
	case SB__MAIL_MOVE_END:
		sb__idmap_del(&sh->moved, m->b);
		break;
	}
}

void sb__move_closed(struct sb__shard *sh, struct sb__conn *c)
{
	if (c->moved_from == 0)
		return;
	sb__idmap_del(&sh->moved_in, c->moved_from);
	struct sb__mail m = {.type = SB__MAIL_MOVE_END, .b = c->moved_from};
	sb__mail(sh, sb__ep_shard(c->moved_from), &m);
	c->moved_from = 0;
}

void sb__move_release(const struct sb__mail *m)
{
	if (m->type == SB__MAIL_CONN_MOVE)
		drop(NULL, NULL, m->p);
}
