/* Mail between shards in the router's terms: what each kind of mail
 * carries, the route change an ACK waits on, and the backlog that keeps
 * mail which found its ring full. Types only; mailbox.h has the rings. */
#ifndef SB_ROUTER_MAIL_T_H
#define SB_ROUTER_MAIL_T_H

#include <stdint.h>

struct sb__mail;
struct sb__schema;

/* Mail between shards (struct sb__mail's `type`). */
enum sb__mail_type {
	SB__MAIL_DELIVER = 1,   /* b: target ep, p: buf, a: offset of the whole frame in it,
				   c: the producing connection, or (with no producer) only
				   the sending shard's bits */
	SB__MAIL_REPLY,         /* b: sender ep, p: buf, c: offset << 32 | length, a: from */
	SB__MAIL_ROUTE_ADD,     /* b: ep, a: flags, p: heap name (struct sb__mail_name) */
	SB__MAIL_ROUTE_DEL,     /* b: ep, a: SB__EP_DIRECT or 0, p: heap name */
	SB__MAIL_CONN_GONE,     /* b: ep of a closed connection, a: 1 if it held a registration */
	SB__MAIL_REQ_FAILED,    /* b: rid, c: its handler, gone before the request reached it */
	SB__MAIL_ROUTE_DONE,    /* p: the struct sb__route_sync of a route change */
	SB__MAIL_PAUSE,         /* b: ep to pause (a = 1) or resume (a = 0) reading from */
	SB__MAIL_PEER_UP,       /* p: struct sb__peer for the replica (peers.c) */
	SB__MAIL_PEER_DOWN,     /* b: ep, a: peer_id of a peer that left */
	SB__MAIL_PEER_DRAIN,    /* b: ep, a: peer_id of a peer that said GOODBYE, c: 1 if it
				   held a registration */
	SB__MAIL_BYE_DONE,      /* b: ep of a peer that said GOODBYE: the sender has no request
				   in flight to it any more */
	SB__MAIL_CONN_MOVE,     /* b: a connection's ep on the sender, p: the connection (a heap
				   copy of its struct sb__conn) for the receiver to take (move.c) */
	SB__MAIL_PEER_MOVED,    /* b: a peer's old ep, c: its new one, a: its peer_id */
	SB__MAIL_MOVE_END,      /* b: the old ep of a moved connection that closed */
	SB__MAIL_DELIVER_MOVED, /* a DELIVER (same fields) forwarded to the shard its
				   connection moved to: its bytes are not counted again */
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

#endif
