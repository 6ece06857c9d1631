/* A shard: one thread with its own io_uring, connections, requests, timers
 * and replicas of the route table and the peer directory. Types only;
 * shard.h has the loop. */
#ifndef SB_ROUTER_SHARD_T_H
#define SB_ROUTER_SHARD_T_H

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/idmap.h"
#include "common/list.h"
#include "common/timer.h"
#include "router/auth.h"
#include "router/jwt.h"
#include "router/mail-t.h"
#include "router/peers-t.h"
#include "router/reqtab.h"
#include "router/route.h"
#include "router/stats.h"

#define SB__MAX_SHARDS 64
/* Endpoints that are not connections, told apart by their shard bits. */
#define SB__LOCAL_SHARD     0xffu           /* an in-process handler; low bits: its index */
#define SB__LOCAL_REQUESTER (0xfeull << 56) /* an in-process requester */
/* The cluster (cluster.c): a request's handler on another router, and a
 * requester on another router. */
#define SB__CLUSTER_SHARD    0xfcu
#define SB__CLUSTER_EP       ((uint64_t)SB__CLUSTER_SHARD << 56)
#define SB__REMOTE_REQUESTER (0xfdull << 56)

struct sb_router;
struct sb__conn;
struct sb__sendv;
struct sb__tls_ctx;
struct sb__xshard;

struct sb__shard {
	struct sb_router *r;
	unsigned id;
	pthread_t thread;
	int started; /* the thread was created */
	int lfd;     /* listening socket (SO_REUSEPORT) */
	int wfd;     /* the edge's listening socket (ws_port), or -1 */
	int afd;     /* the admin listener's socket (admin_port), or -1 */
	int efd;     /* eventfd: wakes the shard when it sleeps */
	struct io_uring ring;
	int ring_ok;
	struct sb__bufpool pool;   /* receive buffers */
	struct sb__reqtab conns;   /* connection table; its ids are endpoints */
	struct sb__reqtab reqs;    /* requests in flight */
	struct sb__wheel wheel;    /* request timeouts */
	struct sb__routes routes;  /* this shard's replica of the route table */
	struct sb__routes direct;  /* clients' handlers, reachable by `to` only (replica) */
	struct sb__replica peers;  /* this shard's replica of the peer directory */
	struct sb__idmap cancel;   /* key(requester ep, requester id) -> rid */
	struct sb__idmap load;     /* handler ep -> requests this shard has in flight to it */
	struct sb__idmap leaving;  /* handlers that said GOODBYE -> 1, until this shard's
				      requests to them have ended */
	struct sb__idmap moved;    /* a connection that moved away -> its shard + 1, until it
				      closes: its mail is forwarded (move.c) */
	struct sb__idmap moved_in; /* a connection that moved here: its endpoint on the shard
				      it left -> its endpoint here, until it closes */
	struct sb__link conn_list; /* every connection of this shard */
	struct sb__link req_list;  /* every live request of this shard */
	uint64_t *dirty;           /* endpoints with output to flush this turn */
	uint32_t ndirty, dirty_cap;
	struct sb__sendv *sv_free; /* msghdr and iovec for sends in flight, kept (outq.c) */
	uint32_t nsv_free;
	struct sb__backlog backlog[SB__MAX_SHARDS]; /* per target shard */
	struct sb__conn *producer;                  /* whose frames are being routed now, if any */
	/* Frame bytes mailed to each shard, and taken from each: the sender's
	 * count minus the receiver's published one is what is in flight. */
	uint64_t mail_sent[SB__MAX_SHARDS];          /* by target (this thread) */
	uint64_t mail_got[SB__MAX_SHARDS];           /* by source (this thread) */
	_Atomic uint64_t mail_taken[SB__MAX_SHARDS]; /* by source, published per turn */
	uint8_t wake[SB__MAX_SHARDS];  /* target shards mailed this turn: the end of the
					  turn asks whether each must be woken */
	int accept_armed;              /* the multishot accept is outstanding */
	int ws_accept_armed;           /* ...and the edge's */
	int admin_accept_armed;        /* ...and the admin listener's */
	struct sb__timer accept_timer; /* re-arms the accept after a failure's pause */
	uint32_t accept_backoff;       /* ms: the pause after the last failed accept; 0 = none */
	uint64_t accept_fails;         /* failed accepts since the last one that worked */
	int need_rearm;                /* some connection waits for receive buffers */
	uint64_t now;                  /* ms, monotonic, read once per loop turn */
	uint64_t now_us;               /* the same instant in microseconds */
	int draining;                  /* stop requested: no new connections or requests */
	uint64_t drain_deadline;       /* ms: then close everything */
	int drained;                   /* done draining; waiting for the other shards */
	int start_rc;                  /* 0 once serving, or why it could not start */
	struct sb__tls_ctx *tls;       /* TLS settings new connections get (a reference) */
	unsigned tls_gen;              /* ...as of this generation of the router's */
	uint8_t *tls_stage;            /* small frames gathered into one TLS record */
	struct sb__stats st;
	struct sb__auth_shard auth; /* the secrets and rules in force, failing addresses */
	struct sb__jwt_cache jwt;   /* the bearer tokens' key set, as of its last use */
	struct sb__xshard *xs;      /* the cluster connection (cluster.c); NULL: none */
};

#endif
