/* Shards: one thread, one io_uring, its own connections, requests, routes
 * and timers. Shards share nothing but the mailbox and the peer-name table. */
#ifndef SB_CORE_SHARD_H
#define SB_CORE_SHARD_H

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <switchboard/proto.h>
#include <switchboard/router.h>

#include "router/addrtab.h"
#include "router/auth.h"
#include "common/buf.h"
#include "common/idmap.h"
#include "common/list.h"
#include "router/mailbox.h"
#include "router/peers.h"
#include "router/reqtab.h"
#include "router/route.h"
#include "router/rstat.h"
#include "common/timer.h"
#include "common/tls.h"

#define SB__MAX_SHARDS 64
/* Endpoints that are not connections, told apart by their shard bits. */
#define SB__LOCAL_SHARD     0xffu           /* an in-process handler; low bits: its index */
#define SB__LOCAL_REQUESTER (0xfeull << 56) /* an in-process requester */
#define SB__IOV_MAX         64              /* frames per sendmsg: batching without huge iovecs */

/* One queued piece of output: a frame (or what is left of it) in a buffer. */
struct sb__seg {
	struct sb__buf *buf; /* holds a reference */
	const uint8_t *p;    /* next byte to send */
	uint32_t len;        /* bytes left */
};

struct sb__conn {
	struct sb__timer hello_timer; /* the handshake's deadline; after a GOODBYE, its deadline */
	struct sb__shard *sh;         /* for the timer's callback */
	int fd;
	uint64_t ep;         /* this connection's id: shard in the top 8 bits */
	uint32_t peer_id;    /* written into `from` of what it sends */
	struct sb__tls *tls; /* TLS state; NULL on a plain connection */
	uint8_t ready;       /* handshake done */
	uint8_t service;     /* role "service": may register handlers */
	uint8_t closing;     /* closed for routing; waiting for I/O to finish */
	uint8_t doomed;      /* a fatal ERROR is queued: close once it is sent */
	uint8_t recv_armed;  /* a multishot recv is outstanding */
	uint8_t rearm;       /* recv stopped for lack of buffers: re-arm later */
	uint8_t sending;     /* a sendmsg is outstanding */
	uint8_t dirty;       /* on the shard's list of connections to flush */
	uint8_t named;       /* holds its name in the router's name table */
	uint8_t recv_cancel; /* the recv is being cancelled to pause reading */
	uint8_t mail_paused; /* paused while its frames' mail backlog is long */
	uint8_t counted;     /* holds one of the router's max_conns places */
	uint8_t bye;         /* said GOODBYE: finishing its requests, then closed */
	uint8_t bye_wait;    /* shards yet to report no request in flight to it */
	uint8_t unparking;   /* its parked bytes are being routed: no second pass, no free */
	uint32_t paused;     /* consumers that asked us to stop reading (flow control) */
	uint64_t *producers; /* handlers this connection paused while congested */
	uint32_t nproducers, producers_cap;
	struct sb__seg *parked; /* bytes received while paused, routed on resume */
	uint32_t nparked, parked_cap;
	char name[SB_PEER_MAX + 1];
	struct sb__conn_peer pr; /* identities told, presence subscription (peers.c) */
	/* authentication and per-peer limits (core/router/auth.c, core/router/addrtab.c) */
	uint8_t addr_counted;        /* holds a place of its address (max_conns_per_addr) */
	uint32_t addr;               /* remote IPv4 address, network order */
	struct sb__auth_hs *hs;      /* between CHALLENGE and AUTH, else NULL */
	uint32_t inflight;           /* requests it made that are open (max_inflight_per_conn) */
	uint32_t nregs;              /* names it has registered (max_registrations) */
	uint64_t last_rx;            /* ms: when bytes last came in */
	uint64_t ping_at;            /* ms: when the idle PING went out; 0 = none pending */
	struct sb__timer idle_timer; /* checks for silence once the handshake is done */
	/* a frame that straddles receive buffers, being reassembled */
	struct sb__buf *asm_buf; /* heap buffer for the whole frame, once its size is known */
	uint32_t asm_have;       /* bytes of it received */
	uint32_t asm_need;       /* its size, prefix included; 0 while the prefix is partial */
	uint8_t asm_prefix[SB_PREFIX_LEN];
	/* output queue: a ring of segments, flushed by one sendmsg per loop turn */
	struct sb__seg *q;
	uint32_t q_head, q_len, q_cap;
	uint32_t q_sent;        /* segments (from q_head) in the sendmsg in flight */
	size_t q_bytes;         /* bytes queued, bounded by out_max */
	struct sb__buf *q_last; /* the buffer of the last segment queued */
	uint64_t out_total;     /* bytes the socket has taken from the queue, ever */
	struct sb__timer slow;  /* past the pause mark: is it taking anything? */
	uint64_t slow_seen;     /* out_total at the last look */
	int slow_outq;          /* bytes unacknowledged in the socket at the last look */
	struct iovec iov[SB__IOV_MAX];
	struct msghdr msg;    /* the sendmsg in flight (MSG_NOSIGNAL) */
	struct sb__link reqs; /* requests this connection made (entries on this shard) */
	struct sb__link all;  /* on the shard's connection list */
};

/* A request in flight, owned by the requester's shard. */
struct sb__req {
	struct sb__timer timer;  /* the request's timeout */
	struct sb__link by_conn; /* on the requester's list */
	struct sb__link all;     /* on the shard's list of live requests */
	uint64_t rid;            /* the router's id for it, in the handler's frames */
	uint64_t requester;      /* requesting connection (this shard) */
	uint64_t handler;        /* handling connection (any shard) */
	uint64_t orig_id;        /* the requester's own id, restored on replies */
	struct sb__shard *sh;    /* for the timer callback */
	sb_local_reply_fn fn;    /* in-process requester: where replies go */
	void *ud;
	struct sb__rstat *rs; /* the route's statistics, or NULL */
	uint64_t t0_us;       /* when it was forwarded (the shard's turn clock) */
	struct sb__bcast *bc; /* a broadcast (bcast.c): its handlers; handler is 0 */
};

/* Counters a shard writes and anyone may read (relaxed atomics: no locks). */
struct sb__stats {
	_Atomic uint64_t frames_in, requests, replies, timeouts, late_replies, no_handler,
		slow_consumers, connections, inflight, pauses, queued_peak, recv_starved,
		mail_deferred, mail_backlog_peak, refused, hello_timeouts, invalid_args;
	_Atomic uint64_t auth_failures, auth_blocked, forbidden, addr_refused, inflight_refused,
		register_refused, idle_pings, idle_timeouts, accept_errors;
};

/* Mail between shards (struct sb__mail's `type`). */
enum sb__mail_type {
	SB__MAIL_DELIVER = 1, /* b: target ep, p: buf, a: offset of the whole frame in it,
				 c: the producing connection, or (with no producer) only
				 the sending shard's bits */
	SB__MAIL_REPLY,       /* b: sender ep, p: buf, c: offset << 32 | length, a: from */
	SB__MAIL_ROUTE_ADD,   /* b: ep, a: flags, p: heap name (struct sb__mail_name) */
	SB__MAIL_ROUTE_DEL,   /* b: ep, p: heap name */
	SB__MAIL_CONN_GONE,   /* b: ep of a closed connection */
	SB__MAIL_REQ_FAILED,  /* b: rid, c: handler ep, a: positive error code */
	SB__MAIL_ROUTE_DONE,  /* p: the struct sb__route_sync of a route change */
	SB__MAIL_PAUSE,       /* b: ep to pause (a = 1) or resume (a = 0) reading from */
	SB__MAIL_PEER_UP,     /* p: struct sb__peer for the replica (peers.c) */
	SB__MAIL_PEER_DOWN,   /* b: ep, a: peer_id of a peer that left */
	SB__MAIL_PEER_DRAIN,  /* b: ep, a: peer_id of a peer that said GOODBYE */
	SB__MAIL_BYE_DONE,    /* b: ep of a peer that said GOODBYE: the sender has no request
				 in flight to it any more */
};

/* A route change in flight: the ACK goes to the registering connection only
 * when every shard has applied it, so an ACKed handler is reachable from
 * any connection at once. */
struct sb__route_sync {
	uint64_t ep;        /* the registering connection */
	uint64_t id;        /* its REGISTER/UNREGISTER id, for the ACK */
	unsigned remaining; /* shards yet to apply it (owner shard only) */
};

struct sb__mail_name {
	struct sb__route_sync *sync; /* reported back once applied */
	struct sb__schema *schema;   /* ROUTE_ADD: the handler's schema (a reference), or NULL */
	uint32_t len;
	char name[];
};

/* Mail that found its ring full: kept in order and retried, never dropped. */
struct sb__backlog {
	struct sb__mail *m;
	uint32_t head, len, cap;
	uint64_t *blocked; /* connections paused until this backlog shrinks */
	uint32_t nblocked, blocked_cap;
};

struct sb_router;

struct sb__shard {
	struct sb_router *r;
	unsigned id;
	pthread_t thread;
	int started; /* the thread was created */
	int lfd;     /* listening socket (SO_REUSEPORT) */
	int efd;     /* eventfd: wakes the shard when it sleeps */
	struct io_uring ring;
	int ring_ok;
	struct sb__bufpool pool;   /* receive buffers */
	struct sb__reqtab conns;   /* connection table; its ids are endpoints */
	struct sb__reqtab reqs;    /* requests in flight */
	struct sb__wheel wheel;    /* request timeouts */
	struct sb__routes routes;  /* this shard's replica of the route table */
	struct sb__replica peers;  /* this shard's replica of the peer directory */
	struct sb__idmap cancel;   /* key(requester ep, requester id) -> rid */
	struct sb__idmap load;     /* handler ep -> requests this shard has in flight to it */
	struct sb__idmap leaving;  /* handlers that said GOODBYE -> 1, until this shard's
				      requests to them have ended */
	struct sb__link conn_list; /* every connection of this shard */
	struct sb__link req_list;  /* every live request of this shard */
	uint64_t *dirty;           /* endpoints with output to flush this turn */
	uint32_t ndirty, dirty_cap;
	struct sb__backlog backlog[SB__MAX_SHARDS]; /* per target shard */
	struct sb__conn *producer;                  /* whose frames are being routed now, if any */
	/* Frame bytes mailed to each shard, and taken from each: the sender's
	 * count minus the receiver's published one is what is in flight. */
	uint64_t mail_sent[SB__MAX_SHARDS];          /* by target (this thread) */
	uint64_t mail_got[SB__MAX_SHARDS];           /* by source (this thread) */
	_Atomic uint64_t mail_taken[SB__MAX_SHARDS]; /* by source, published per turn */
	uint8_t wake[SB__MAX_SHARDS];  /* target shards to wake at the end of the turn */
	int accept_armed;              /* the multishot accept is outstanding */
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
};

/* An in-process handler (sb_router_handle). */
struct sb__local {
	char *name; /* NULL: the catch-all */
	uint32_t len;
	uint32_t flags;            /* SB__EP_* */
	struct sb__schema *schema; /* its argument schema (a reference), or NULL */
	sb_local_fn fn;
	void *ud;
};

/* A send or request from the embedding program, encoded by the caller's
 * thread and routed by a shard. */
struct sb__inject {
	struct sb__buf *frame;
	uint32_t len;
	sb_local_reply_fn fn; /* requests: where replies go */
	void *ud;
};

/* The queue a shard takes injected messages from. A mutex is fine here:
 * only the embedding program's calls pass through it, never the network. */
struct sb__inbox {
	pthread_mutex_t lock;
	struct sb__inject *items;
	uint32_t n, cap;
	_Atomic uint32_t pending; /* lets the shard skip the lock when empty */
};

struct sb_router {
	struct sb_router_config cfg;
	unsigned nshards;
	uint16_t port;
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
	struct sb__local *locals; /* in-process handlers, fixed once started */
	unsigned nlocals;
	struct sb__inbox *inboxes;  /* one per shard */
	int running;                /* started: no more in-process handlers */
	_Atomic unsigned inject_rr; /* spreads injected messages over shards */
	pthread_mutex_t start_lock;
	pthread_cond_t start_cond;
	unsigned started;
	struct sb__auth_router auth; /* the secrets and rules shards take */
	struct sb__addrtab addrs;    /* connections per remote address */
	char *addr;                  /* cfg.addr's own copy */
	int tls_on;                  /* the listener speaks TLS (fixed for the router's life) */
	pthread_mutex_t tls_lock;    /* guards tls: taken at reload, and by a shard at an accept
					after one */
	struct sb__tls_ctx *tls;     /* the TLS settings in force (a reference) */
	_Atomic unsigned tls_gen;    /* bumped by every reload */
};

/** The shard thread's main function. */
void *sb__shard_main(void *arg);

/** Run an in-process handler for a frame routed to it (local.c). */
void sb__local_run(struct sb__shard *sh, unsigned idx, const uint8_t *f, uint32_t len);

/** A reply or error for a request this shard owns, from endpoint sender;
 *  takes over the reference on b. */
void sb__shard_reply(struct sb__shard *sh, uint64_t sender, struct sb__buf *b, uint8_t *f,
		     uint32_t len);

/** After every shard thread has exited: release mail still in flight. */
void sb__shard_teardown(struct sb__shard *sh);

/** Then free the shard's ring, buffers and tables. */
void sb__shard_destroy(struct sb__shard *sh);

/** Log a line to stderr when @p level <= the configured level. */
void sb__log(const struct sb_router *r, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/** The TLS settings a shard accepts with: its cached reference, renewed
 * (under tls_lock) only after a reload. Never on a message's path. */
struct sb__tls_ctx *sb__router_tls(struct sb__shard *sh);

/** A connection's verified client certificate: its name (CN, else first
 * DNS SAN) and its subject ("CN=alice,O=Example"), or NULL when the
 * connection is plain or presented none. Valid while the connection is. */
static inline const char *sb__conn_cert_name(const struct sb__conn *c)
{
	return c->tls != NULL ? sb__tls_peer_name(c->tls) : NULL;
}

static inline const char *sb__conn_cert_subject(const struct sb__conn *c)
{
	return c->tls != NULL ? sb__tls_peer_subject(c->tls) : NULL;
}

/* For the modules that extend the shard (peers.c, bcast.c): shard.c's
 * own helpers, which only the shard's thread may call. */

/** A live connection of this shard, or NULL (gone or closing). */
struct sb__conn *sb__conn_get(struct sb__shard *sh, uint64_t ep);

/** Queue bytes of b for c, taking over the caller's reference; a consumer
 *  over its limit is closed. @return 0, SB_EOVERLOADED or SB_ENOMEM */
int sb__enqueue(struct sb__shard *sh, struct sb__conn *c, struct sb__buf *b, const uint8_t *p,
		uint32_t len);

/** Encode a router-made message and queue it for c. */
int sb__send_msg(struct sb__shard *sh, struct sb__conn *c, const struct sb_msg *m);

/** A (non-fatal unless flags say so) ERROR for c. */
void sb__send_error(struct sb__shard *sh, struct sb__conn *c, uint64_t id, int err,
		    const char *text, uint8_t flags);

/** Mail to another shard (kept in order, never dropped). */
void sb__mail(struct sb__shard *sh, unsigned to, const struct sb__mail *m);

/** A frame (b's reference taken over) for connection ep on any shard, or
 *  an in-process handler. */
void sb__deliver(struct sb__shard *sh, uint64_t ep, struct sb__buf *b, const uint8_t *p,
		 uint32_t len);

/** Flow control: c's queue grew with a reply from producer. */
void sb__congest(struct sb__shard *sh, struct sb__conn *c, uint64_t producer);

/** Requests this shard has in flight to a handler, for load balancing. */
void sb__load_add(struct sb__shard *sh, uint64_t ep, int d);

/** End request q for good (its entry is freed). */
void sb__req_finish(struct sb__shard *sh, struct sb__req *q);

/** Add to one of this shard's counters. */
void sb__stat_add(_Atomic uint64_t *c, int64_t d);

#endif
