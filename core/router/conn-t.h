/* A connection's state, as the parts of a shard that handle it share it:
 * receive and reassembly, the output queue, flow control, the handshake,
 * per-peer limits and GOODBYE. Types only. */
#ifndef SB_ROUTER_CONN_T_H
#define SB_ROUTER_CONN_T_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <switchboard/proto.h>

#include "common/list.h"
#include "common/timer.h"
#include "router/peers-t.h"

#define SB__IOV_MAX 64 /* segments per sendmsg: batching without huge iovecs */

struct sb__buf;
struct sb__shard;
struct sb__tls;
struct sb__auth_hs;
struct sb__edge;
struct sb__tok;

/* How a connection's bytes are carried: the plain path is the one every
 * receive, flush and send completion tests for, once. */
enum sb__xport {
	SB__XPORT_PLAIN = 0, /* frames straight on TCP */
	SB__XPORT_TLS,       /* in TLS records (conn_tls.c) */
	SB__XPORT_HTTP,      /* the edge before an upgrade: HTTP (conn_ws.c, edge_call.c) */
	SB__XPORT_WS,        /* the edge after it: WebSocket messages (conn_ws.c) */
};

/* One queued piece of output: a frame (or what is left of it) in a buffer. */
struct sb__seg {
	struct sb__buf *buf; /* holds a reference */
	const uint8_t *p;    /* next byte to send */
	uint32_t len;        /* bytes left */
};

/* The msghdr and iovec of a sendmsg of several segments. The kernel may
 * read them until the send completes, but a connection has at most one
 * send in flight and most connections have none, so they come from the
 * shard's free list for that time (outq.c) rather than living in every
 * connection (1 KiB each). */
struct sb__sendv {
	struct msghdr msg;
	struct iovec iov[SB__IOV_MAX];
	struct sb__sendv *next; /* on the shard's free list */
};

struct sb__conn {
	struct sb__timer hello_timer; /* the handshake's deadline; after a GOODBYE, its deadline */
	struct sb__shard *sh;         /* for the timer's callback */
	int fd;
	uint64_t ep;           /* this connection's id: shard in the top 8 bits */
	uint32_t peer_id;      /* written into `from` of what it sends */
	struct sb__tls *tls;   /* TLS state; NULL on a plain connection */
	struct sb__edge *edge; /* HTTP and WebSocket state; NULL unless on the edge */
	struct sb__tok *tok;   /* a verified bearer token's word; NULL: none (edge_auth.c) */
	uint8_t xport;         /* enum sb__xport */
	uint8_t ready;         /* handshake done */
	uint8_t service;       /* role "service": may register handlers */
	uint8_t closing;       /* closed for routing; waiting for I/O to finish */
	uint8_t doomed;        /* a fatal ERROR is queued: close once it is sent */
	uint8_t recv_armed;    /* a multishot recv is outstanding */
	uint8_t rearm;         /* recv stopped for lack of buffers: re-arm later */
	uint8_t sending;       /* a sendmsg is outstanding */
	uint8_t dirty;         /* on the shard's list of connections to flush */
	uint8_t named;         /* holds its name in the router's name table */
	uint8_t recv_cancel;   /* the recv is being cancelled to pause reading */
	uint8_t mail_paused;   /* paused while its frames' mail backlog is long */
	uint8_t counted;       /* holds one of the router's max_conns places */
	uint8_t bye;           /* said GOODBYE: finishing its requests, then closed */
	uint8_t bye_wait;      /* shards yet to report no request in flight to it */
	uint8_t unparking;     /* its parked bytes are being routed: no second pass, no free */
	uint8_t moving;        /* to shard moving - 1: its bytes park until it goes (move.c) */
	uint8_t moved;         /* moved once, or decided against: it moves no more */
	uint8_t regd;          /* has sent REGISTER or UNREGISTER: it never moves */
	uint64_t moved_from;   /* its endpoint on the shard it left; 0: none */
	uint32_t paused;       /* consumers that asked us to stop reading (flow control) */
	uint64_t *producers;   /* handlers this connection paused while congested */
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
	struct sb__sendv *sv;   /* the sendmsg in flight's, if it has several segments; else NULL */
	struct sb__link reqs;   /* requests this connection made (entries on this shard) */
	struct sb__link all;    /* on the shard's connection list */
};

#endif
