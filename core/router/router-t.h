/* The router: its configuration, its shards and what they share (the
 * mailbox, the peer directory, per-name statistics, the secrets and TLS
 * settings in force). Types only; router.c is its lifecycle. */
#ifndef SB_ROUTER_ROUTER_T_H
#define SB_ROUTER_ROUTER_T_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <switchboard/router.h>

#include "common/log.h"
#include "router/addrtab.h"
#include "router/auth.h"
#include "router/jwt.h"
#include "router/peers-t.h"
#include "router/rstat.h"

struct sb__shard;
struct sb__mailbox;
struct sb__local;
struct sb__inbox;
struct sb__tls_ctx;

struct sb__xrouter;

struct sb_router {
	struct sb_router_config cfg;
	struct sb__logger log; /* cfg.log_level, set once */
	unsigned nshards;
	uint16_t port;
	uint16_t ws_port;    /* the edge's port; 0: none */
	uint16_t admin_port; /* the admin listener's port; 0: none */
	struct sb__shard *shards;
	struct sb__mailbox *mb;
	unsigned mail_ring;         /* slots per ring: also a backlog's pause mark */
	uint64_t mail_cap;          /* frame bytes in flight to one shard before senders pause */
	pthread_mutex_t names_lock; /* the peer directory: connect, disconnect, error paths */
	struct sb__dir dir;         /* the peer directory (peers.c) */
	struct sb__rstats rstats;   /* per-name statistics */
	_Atomic uint32_t nconns;    /* connections holding a max_conns place */
	_Atomic int stopping;
	_Atomic unsigned drained; /* shards done draining */
	unsigned drain_ms;
	struct sb__xrouter *xr;   /* the cluster's (cluster.c), or NULL */
	struct sb__local *locals; /* in-process handlers, fixed once started */
	unsigned nlocals;
	struct sb__inbox *inboxes;  /* one per shard */
	int running;                /* started: no more in-process handlers */
	_Atomic unsigned inject_rr; /* spreads injected messages over shards */
	_Atomic uint64_t local_ids; /* the last in-process request's id */
	pthread_mutex_t start_lock;
	pthread_cond_t start_cond;
	unsigned started;
	struct sb__auth_router auth; /* the secrets and rules shards take */
	struct sb__addrtab addrs;    /* connections per remote address */
	char *addr;                  /* cfg.addr's own copy */
	char *ws_origins;            /* cfg.ws_allow_origin's own copy */
	char *admin_addr;            /* cfg.admin_addr's own copy */
	struct sb__jwt_slot jwt;     /* the bearer tokens' key set in force (NULL: tokens off) */
	int tls_on;                  /* the listener speaks TLS (fixed for the router's life) */
	pthread_mutex_t tls_lock;    /* guards tls: taken at reload, and by a shard at an accept
					after one */
	struct sb__tls_ctx *tls;     /* the TLS settings in force (a reference) */
	_Atomic unsigned tls_gen;    /* bumped by every reload */
};

#endif
