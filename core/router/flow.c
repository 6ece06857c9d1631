/* Flow control. A consumer that reads slowly must slow down whoever feeds
 * it rather than fill the router: past the pause mark (a quarter of
 * out_max) it pauses the reads of each connection whose frame it is
 * queueing (a sender, a requester, a handler streaming to it; TCP then
 * pushes back on that peer itself), and resumes them once it has drained
 * to half of the mark. One that does not drain at all is dropped after
 * slow_ms (sb__flow_on_slow()), so a producer waits for a dead consumer no
 * longer than that. */
#include <linux/sockios.h>
#include <stdlib.h>
#include <sys/ioctl.h>

#include "common/log.h"
#include "router/cluster.h"
#include "router/conn.h"
#include "router/flow.h"
#include "router/mail.h"
#include "router/outq.h"
#include "router/shard.h"

/* Pause (d = 1) or resume (d = -1) reading from a connection of this shard.
 * The multishot recv is cancelled, and what it still delivers is parked, so
 * a paused connection routes nothing until it is resumed. */
void sb__flow_pause(struct sb__shard *sh, uint64_t ep, int d)
{
	struct sb__conn *c = sb__conn_get(sh, ep);
	if (c == NULL || (d < 0 && c->paused == 0))
		return;
	c->paused = (uint32_t)((int)c->paused + d);
	/* A frame of c's parked bytes can pause c and resume it again (it
	 * congests a consumer that is then dropped). That resume leaves the
	 * rest to the loop already routing them: a second loop would route
	 * the bytes before its own a second time, then lose one buffer when
	 * the outer loop moved the list, and c's byte stream would be cut
	 * mid-frame for good. */
	if (c->paused == 0 && c->nparked > 0 && !c->unparking) {
		sb__conn_unpark(sh, c);
		if (c->closing) {
			sb__conn_free(sh, c);
			return;
		}
	}
	if (c->paused > 0 && c->recv_armed && !c->recv_cancel) {
		struct io_uring_sqe *sqe = sb__sqe(sh);
		io_uring_prep_cancel64(sqe, sb__tag(SB__TAG_RECV, c->ep), 0);
		io_uring_sqe_set_data64(sqe, sb__tag(SB__TAG_CANCEL, 0));
		c->recv_cancel = 1;
		sb__stat_add(&sh->st.pauses, 1);
	} else if (c->paused == 0 && !c->recv_armed)
		sb__conn_arm_recv(sh, c);
}

static void pause_remote(struct sb__shard *sh, uint64_t ep, int pause)
{
	if (sb__ep_shard(ep) == SB__CLUSTER_SHARD) { /* another router's handler */
		sb__cluster_pause(sh, ep, pause);
		return;
	}
	if (sb__ep_shard(ep) == sh->id) {
		sb__flow_pause(sh, ep, pause ? 1 : -1);
		return;
	}
	struct sb__mail m = {.type = SB__MAIL_PAUSE, .a = (uint32_t)pause, .b = ep};
	sb__mail(sh, sb__ep_shard(ep), &m);
}

/* c's queue grew with a frame from producer: pause it if c is congested. */
void sb__flow_congest(struct sb__shard *sh, struct sb__conn *c, uint64_t producer)
{
	if (c->closing || c->q_bytes <= sb__outq_pause_mark(sh))
		return;
	for (uint32_t i = 0; i < c->nproducers; i++)
		if (c->producers[i] == producer)
			return;
	if (c->nproducers == c->producers_cap) {
		uint32_t cap = c->producers_cap ? c->producers_cap * 2 : 4;
		uint64_t *np = realloc(c->producers, cap * sizeof *np);
		if (np == NULL)
			return; /* no pause: the hard bound still holds memory */
		c->producers = np;
		c->producers_cap = cap;
	}
	c->producers[c->nproducers++] = producer;
	pause_remote(sh, producer, 1);
}

void sb__flow_resume(struct sb__shard *sh, struct sb__conn *c)
{
	for (uint32_t i = 0; i < c->nproducers; i++)
		pause_remote(sh, c->producers[i], 0);
	c->nproducers = 0;
}

/* Bytes the kernel holds for c's peer, sent or not, unacknowledged: they
 * go down as the peer reads, long before a send waiting on a full socket
 * completes (the kernel wakes it only once half its queue is free). */
static int unacked(const struct sb__conn *c)
{
	int n;
	return ioctl(c->fd, SIOCOUTQ, &n) == 0 ? n : -1;
}

/* Looks again in slow_ms at a connection past its pause mark. */
void sb__flow_watch(struct sb__shard *sh, struct sb__conn *c)
{
	c->slow_seen = c->out_total;
	c->slow_outq = unacked(c);
	sb__timer_arm(&sh->wheel, &c->slow, sh->now + sh->r->cfg.slow_ms);
}

/* A connection past its pause mark holds whoever feeds it paused (until
 * it is back to half the mark). If its peer has taken nothing since the
 * last look (no send completed, no byte acknowledged), it is dropped as a
 * slow consumer. One that reads, however slowly, stays, as long as its
 * kernel opens the TCP window once per slow_ms (every 64 KiB read on
 * loopback, every few KiB over a network). */
void sb__flow_on_slow(struct sb__timer *t)
{
	struct sb__conn *c = SB__CONTAINER(t, struct sb__conn, slow);
	struct sb__shard *sh = c->sh;

	if (c->closing || (c->nproducers == 0 && c->q_bytes <= sb__outq_pause_mark(sh)))
		return; /* holds nobody up: crossing the mark again restarts the clock */
	int outq = unacked(c);
	if (c->out_total != c->slow_seen || (outq >= 0 && outq < c->slow_outq)) {
		sb__flow_watch(sh, c);
		return;
	}
	sb__stat_add(&sh->st.slow_consumers, 1);
	sb__log(&sh->r->log, 1,
		"peer %s: took none of its %zu queued bytes in %u ms: dropped as a slow consumer",
		c->name[0] ? c->name : "(handshake)", c->q_bytes, sh->r->cfg.slow_ms);
	sb__conn_close(sh, c, "slow consumer");
}
