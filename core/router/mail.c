/* Mail between shards in the router's terms. Sending keeps each target's
 * mail in order and never drops it: what finds its ring full waits in a
 * backlog, retried every turn, and the connection whose frames fill one is
 * paused until it shrinks. Whether a shard must be woken is asked once per
 * turn, after the turn's last mail to it. Each mail that comes in
 * is handed to the module it is for. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "proto/mp.h"
#include "router/conn.h"
#include "router/deliver.h"
#include "router/flow.h"
#include "router/goodbye.h"
#include "router/mail.h"
#include "router/move.h"
#include "router/peers.h"
#include "router/register.h"
#include "router/request.h"
#include "router/router-t.h"
#include "router/shard.h"

/* Mail taken from the rings per call: a turn takes all there is, in
 * batches small enough for the stack. */
#define MAIL_BATCH 64

/* The frame bytes a mail carries: a DELIVER's frame says its own length
 * (its mail has no room for it next to the producer). */
static uint32_t mail_bytes(const struct sb__mail *m)
{
	if (m->type == SB__MAIL_DELIVER)
		return SB_PREFIX_LEN + sb__be32(((const struct sb__buf *)m->p)->data + m->a);
	return m->type == SB__MAIL_REPLY ? (uint32_t)m->c : 0;
}

/* Frame bytes mailed to a shard that it has not taken out of its ring yet
 * (in the ring or in our backlog). */
static uint64_t mail_in_flight(const struct sb__shard *sh, unsigned to)
{
	return sh->mail_sent[to] -
	       atomic_load_explicit(&sh->r->shards[to].mail_taken[sh->id], memory_order_acquire);
}

/* A backlog a ring long, or a ring-and-backlog holding mail_cap bytes of
 * frames, stops the connection whose frame just added to it: its reads
 * pause, with the machinery streams use, until both are down to half. What
 * the rest of the frame's receive buffer holds is still routed, so they
 * peak at their mark plus one buffer per producer. The byte cap is what
 * keeps a stream's overshoot bounded when the receiving shard is slow to
 * run: its pause decision comes only once it takes the mail. Mail a shard
 * makes on its own (control, answers to mail) never waits on a pause, so
 * shards cannot end up waiting on each other. */
static void block_producer(struct sb__shard *sh, struct sb__backlog *bl)
{
	struct sb__conn *c = sh->producer;
	if (c->mail_paused || c->closing)
		return;
	if (bl->nblocked == bl->blocked_cap) {
		uint32_t cap = bl->blocked_cap ? bl->blocked_cap * 2 : 8;
		uint64_t *nb = realloc(bl->blocked, cap * sizeof *nb);
		if (nb == NULL)
			return; /* unpaused: the backlog grows, but nothing is lost */
		bl->blocked = nb;
		bl->blocked_cap = cap;
	}
	bl->blocked[bl->nblocked++] = c->ep;
	c->mail_paused = 1;
	sb__flow_pause(sh, c->ep, 1);
}

static void unblock_producers(struct sb__shard *sh, struct sb__backlog *bl)
{
	/* Resuming routes parked bytes, which may block some again: those are
	 * appended past n and stay. */
	uint32_t n = bl->nblocked;
	for (uint32_t i = 0; i < n; i++) {
		struct sb__conn *c = sb__conn_get(sh, bl->blocked[i]);
		if (c != NULL && c->mail_paused) {
			c->mail_paused = 0;
			sb__flow_pause(sh, c->ep, -1);
		}
	}
	memmove(bl->blocked, bl->blocked + n, (bl->nblocked - n) * sizeof *bl->blocked);
	bl->nblocked -= n;
}

static void defer(struct sb__shard *sh, struct sb__backlog *bl, const struct sb__mail *m);

void sb__mail(struct sb__shard *sh, unsigned to, const struct sb__mail *m)
{
	struct sb__backlog *bl = &sh->backlog[to];

	/* Before the ring's commit publishes it: the receiver counts on it
	 * atomically from the start (buf.c). */
	if (m->type == SB__MAIL_DELIVER || m->type == SB__MAIL_REPLY)
		sb__buf_share(m->p);
	sh->mail_sent[to] += mail_bytes(m);
	/* Keep per-target order: once something waits, everything waits. */
	if (bl->len == 0 && sb__mail_post(sh->r->mb, sh->id, to, m) == 0)
		sh->wake[to] = 1;
	else
		defer(sh, bl, m);
	/* Mail a shard makes on its own has no producer to pause: skip the
	 * cross-shard load of the receiver's count. */
	if (sh->producer != NULL &&
	    (bl->len >= sh->r->mail_ring || mail_in_flight(sh, to) > sh->r->mail_cap))
		block_producer(sh, bl);
}

static void defer(struct sb__shard *sh, struct sb__backlog *bl, const struct sb__mail *m)
{
	sb__stat_add(&sh->st.mail_deferred, 1);
	if (bl->len == bl->cap) {
		uint32_t cap = bl->cap ? bl->cap * 2 : 64;
		struct sb__mail *nm = malloc(cap * sizeof *nm);
		if (nm == NULL)
			abort(); /* losing a mail would lose a reply: no way to carry on */
		for (uint32_t i = 0; i < bl->len; i++)
			nm[i] = bl->m[(bl->head + i) % bl->cap];
		free(bl->m);
		bl->m = nm;
		bl->head = 0;
		bl->cap = cap;
	}
	bl->m[(bl->head + bl->len++) % bl->cap] = *m;
	if (bl->len > atomic_load_explicit(&sh->st.mail_backlog_peak, memory_order_relaxed))
		atomic_store_explicit(&sh->st.mail_backlog_peak, bl->len, memory_order_relaxed);
}

void sb__mail_flush(struct sb__shard *sh)
{
	for (unsigned to = 0; to < sh->r->nshards; to++) {
		struct sb__backlog *bl = &sh->backlog[to];
		while (bl->len > 0) {
			if (sb__mail_post(sh->r->mb, sh->id, to, &bl->m[bl->head]) != 0)
				break;
			sh->wake[to] = 1;
			bl->head = (bl->head + 1) % bl->cap;
			bl->len--;
		}
		if (bl->nblocked > 0 && bl->len <= sh->r->mail_ring / 2 &&
		    mail_in_flight(sh, to) <= sh->r->mail_cap / 2)
			unblock_producers(sh, bl);
	}
}

void sb__mail_wake(struct sb__shard *sh)
{
	/* One fence and one look at its sleep per shard mailed this turn,
	 * not per mail: 10% of cross-shard fire-64's CPU went to them. */
	for (unsigned to = 0; to < sh->r->nshards; to++)
		if (sh->wake[to]) {
			uint64_t one = 1;
			sh->wake[to] = 0;
			if (!sb__mailbox_wake_due(sh->r->mb, to))
				continue;
			if (write(sh->r->shards[to].efd, &one, sizeof one) < 0 && errno != EAGAIN)
				sb__log(&sh->r->log, 0, "shard %u: wake of shard %u failed: %s",
					sh->id, to, strerror(errno));
		}
}

static void on_mail(struct sb__shard *sh, const struct sb__mail *m)
{
	switch (m->type) {
	case SB__MAIL_DELIVER:
	case SB__MAIL_DELIVER_MOVED: {
		struct sb__buf *b = m->p;
		uint32_t len = SB_PREFIX_LEN + sb__be32(b->data + m->a);
		uint64_t ep = m->b;
		int to;
		if (m->type == SB__MAIL_DELIVER)
			sh->mail_got[sb__ep_shard(m->c)] += len;
		if ((sh->moved.count > 0 || m->type != SB__MAIL_DELIVER) &&
		    (ep = sb__move_follow(sh, ep, &to)) == 0) {
			struct sb__mail fw = *m;
			fw.type = SB__MAIL_DELIVER_MOVED;
			sb__mail(sh, (unsigned)to, &fw);
			break;
		}
		sb__deliver_from(sh, ep, b, b->data + m->a, len, m->c & SB__EP_MASK ? m->c : 0);
		break;
	}
	case SB__MAIL_REPLY: {
		struct sb__buf *b = m->p;
		sh->mail_got[m->a] += (uint32_t)m->c;
		sb__req_reply(sh, m->b, b, b->data + (m->c >> 32), (uint32_t)m->c);
		break;
	}
	case SB__MAIL_ROUTE_ADD:
	case SB__MAIL_ROUTE_DEL:
		sb__register_apply(sh, m);
		break;
	case SB__MAIL_ROUTE_DONE:
		sb__register_done(sh, m->p);
		break;
	case SB__MAIL_PAUSE: {
		uint64_t ep = m->b;
		int to;
		if ((sh->moved.count > 0 || sb__ep_shard(ep) != sh->id) &&
		    (ep = sb__move_follow(sh, ep, &to)) == 0) {
			sb__mail(sh, (unsigned)to, m);
			break;
		}
		sb__flow_pause(sh, ep, m->a ? 1 : -1);
		break;
	}
	case SB__MAIL_CONN_MOVE:
	case SB__MAIL_PEER_MOVED:
	case SB__MAIL_MOVE_END:
		sb__move_on_mail(sh, m);
		break;
	case SB__MAIL_CONN_GONE:
		sb__conn_gone(sh, m->b, m->a != 0);
		break;
	case SB__MAIL_BYE_DONE:
		sb__bye_report(sh, m->b);
		break;
	case SB__MAIL_REQ_FAILED:
		sb__req_gone(sh, m->b, m->c);
		break;
	case SB__MAIL_PEER_UP:
	case SB__MAIL_PEER_DOWN:
		sb__peers_on_mail(sh, m);
		break;
	case SB__MAIL_PEER_DRAIN:
		sb__peers_on_mail(sh, m);
		sb__bye_apply(sh, m->b, m->c != 0);
		break;
	}
}

void sb__mail_read(struct sb__shard *sh)
{
	struct sb__mail box[MAIL_BATCH];
	unsigned n;
	int any = 0;
	while ((n = sb__mail_recv(sh->r->mb, sh->id, box, MAIL_BATCH)) > 0) {
		for (unsigned i = 0; i < n; i++)
			on_mail(sh, &box[i]);
		any = 1;
	}
	/* Tell senders what we took, once per turn: one store per shard. */
	for (unsigned from = 0; any && from < sh->r->nshards; from++)
		atomic_store_explicit(&sh->mail_taken[from], sh->mail_got[from],
				      memory_order_release);
}

/* Frees what a mail holds without acting on it: the router is stopping. */
static void release_mail(const struct sb__mail *m)
{
	struct sb__mail_name *n = m->p;
	struct sb__route_sync *sync = NULL;

	switch (m->type) {
	case SB__MAIL_DELIVER:
	case SB__MAIL_DELIVER_MOVED:
	case SB__MAIL_REPLY:
		sb__buf_put(m->p, NULL);
		break;
	case SB__MAIL_CONN_MOVE:
		sb__move_release(m);
		break;
	case SB__MAIL_ROUTE_ADD:
	case SB__MAIL_ROUTE_DEL:
		sync = n->sync;
		sb__schema_unref(n->schema);
		free(n);
		break;
	case SB__MAIL_ROUTE_DONE:
		sync = m->p;
		break;
	case SB__MAIL_PEER_UP:
		sb__peers_release_mail(m);
		break;
	}
	if (sync != NULL && --sync->remaining == 0)
		free(sync);
}

void sb__mail_teardown(struct sb__shard *sh)
{
	struct sb__mail box[MAIL_BATCH];
	unsigned n;

	/* Every shard thread has exited: what is left in rings and backlogs
	 * only needs releasing, while the buffer pools still exist. */
	while ((n = sb__mail_recv(sh->r->mb, sh->id, box, MAIL_BATCH)) > 0)
		for (unsigned i = 0; i < n; i++)
			release_mail(&box[i]);
	for (unsigned to = 0; to < sh->r->nshards; to++) {
		struct sb__backlog *bl = &sh->backlog[to];
		for (uint32_t i = 0; i < bl->len; i++)
			release_mail(&bl->m[(bl->head + i) % bl->cap]);
		free(bl->m);
		bl->m = NULL;
		bl->len = 0;
		free(bl->blocked);
		bl->blocked = NULL;
		bl->nblocked = 0;
	}
}

int sb__mail_backlogged(const struct sb__shard *sh)
{
	/* Blocked producers count: their resume depends on us looking again. */
	for (unsigned to = 0; to < sh->r->nshards; to++)
		if (sh->backlog[to].len > 0 || sh->backlog[to].nblocked > 0)
			return 1;
	return 0;
}
