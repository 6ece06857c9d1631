/* A requester under load across routers (docs/cluster.md, "Subjects"):
 * one client keeping a window of requests for one name in flight, up to
 * two services that answer whatever reaches them (unregistered or not: a
 * request already on its way is still theirs), and every request's end
 * counted, each id once. The stories of handlers coming and going under
 * load (system/cluster_subs, system/cluster_drain) drive it. */
#ifndef SB_TEST_XLOAD_H
#define SB_TEST_XLOAD_H

#include <stdint.h>

#include "support/peer.h"

#define XLOAD_WINDOW 16 /* requests in flight */

struct xload {
	struct peer *cl, *svc[2]; /* svc: set by the story, closed by xload_free() */
	const char *name;
	uint32_t deadline_ms; /* each request's */
	uint8_t *done;        /* per id: ended */
	uint64_t next_id;     /* the next request's id */
	uint64_t ended;       /* requests ended (a reply or an error) */
	uint64_t replies;     /* ...with a reply */
	uint64_t no_handler;  /* ...with `no handler` */
	uint64_t timeouts;    /* ...with `timeout` */
	uint64_t other;       /* ...with any other error */
	uint64_t twice;       /* ends of a request that had ended already */
	uint64_t streak;      /* ends of the same outcome in a row, up to the last */
	int last;             /* that outcome: SB_REPLY, or the error's code */
	uint64_t served[2];   /* requests each service answered */
	int sending;          /* keep the window full */
};

/* A client on port (its requests to name, each with deadline_ms), no
 * service yet, nothing sent. */
void xload_init(struct xload *l, uint16_t port, const char *name, uint32_t deadline_ms);
void xload_free(struct xload *l);

/* The window filled. */
void xload_send(struct xload *l);
/* One round: whatever each peer has, handled, and the window filled.
 * Returns the ACK id seen on svc[k_ack] (0: none). */
uint64_t xload_round(struct xload *l, int k_ack);
/* n more requests ended (20 s at most). 1 if so. */
int xload_run(struct xload *l, uint64_t n);
/* Until n ends in a row have had outcome (SB_REPLY or an error's code),
 * 20 s at most. 1 if so. */
int xload_until_streak(struct xload *l, int outcome, uint64_t n);
/* Until service k has answered n more (20 s at most). 1 if so. */
int xload_until_served(struct xload *l, int k, uint64_t n);
/* svc[k] registers (or unregisters: kind) the name under load, its ACK
 * (id) awaited while everyone goes on (20 s at most). 1 if acknowledged. */
int xload_change(struct xload *l, int k, int kind, uint64_t id);
/* Nothing more sent, and everything sent ended: waited for past the
 * requests' deadline, so that one lost on the way ends as `timeout` and
 * is counted, not waited for. 1 if so. */
int xload_drain(struct xload *l);

#endif
