/* A whole frame to an endpoint anywhere. An in-process handler runs it on
 * this shard; a connection of another shard gets it by DELIVER mail, which
 * names the producer so that a congested consumer there can pause it; a
 * connection here gets it queued, after the identity of its sender, and
 * its producer paused if the queue is past its mark. A REQUEST for a
 * connection that is gone fails on its owner shard. */
#include "proto/mp.h"
#include "router/cluster.h"
#include "router/conn.h"
#include "router/deliver.h"
#include "router/flow.h"
#include "router/local.h"
#include "router/mail.h"
#include "router/outq.h"
#include "router/peers.h"
#include "router/request.h"
#include "router/shard.h"

/* A REQUEST for a connection that is gone: fail it on its owner shard. */
static void deliver_failed(struct sb__shard *sh, uint64_t ep, const uint8_t *p)
{
	if (p[SB_PREFIX_LEN + 1] != SB_REQUEST)
		return;
	uint64_t rid = sb__be64(p + SB_ID_OFFSET);
	struct sb__mail m = {.type = SB__MAIL_REQ_FAILED, .b = rid, .c = ep};
	unsigned owner = sb__reqid_shard(rid);
	if (owner != sh->id)
		sb__mail(sh, owner, &m);
	else
		sb__req_gone(sh, rid, ep);
}

/* A whole frame for ep, fed by connection producer (0: by the router or
 * the embedding program), which the consumer pauses if it is congested. */
void sb__deliver_from(struct sb__shard *sh, uint64_t ep, struct sb__buf *b, const uint8_t *p,
		      uint32_t len, uint64_t producer)
{
	unsigned to = sb__ep_shard(ep);
	if (to == SB__LOCAL_SHARD) { /* an in-process handler: run it here */
		sb__local_run(sh, (unsigned)(ep & SB__EP_MASK), p, len);
		sb__buf_put(b, &sh->pool);
		return;
	}
	if (to == SB__CLUSTER_SHARD) {
		sb__cluster_deliver(sh, b, p, len);
		return;
	}
	if (to != sh->id) {
		struct sb__mail m = {.type = SB__MAIL_DELIVER,
				     .a = (uint32_t)(p - b->data),
				     .b = ep,
				     .p = b,
				     .c = producer != 0 ? producer
							: (uint64_t)sh->id << SB__TAG_SHIFT};
		sb__mail(sh, to, &m);
		return;
	}
	struct sb__conn *c = sb__conn_get(sh, ep);
	if (c == NULL) {
		deliver_failed(sh, ep, p);
		sb__buf_put(b, &sh->pool);
		return;
	}
	/* Who sent it, before the first frame from that sender (issue 6). */
	if (sb__peers_tell(sh, c, p) != 0) {
		sb__buf_put(b, &sh->pool); /* c was dropped as a slow consumer */
		return;
	}
	if (sb__enqueue(sh, c, b, p, len) == 0 && producer != 0)
		sb__flow_congest(sh, c, producer);
}

void sb__deliver(struct sb__shard *sh, uint64_t ep, struct sb__buf *b, const uint8_t *p,
		 uint32_t len)
{
	sb__deliver_from(sh, ep, b, p, len, sh->producer != NULL ? sh->producer->ep : 0);
}
