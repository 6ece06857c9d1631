/* A connection to a NATS cluster, for one thread's event loop: connect and
 * reconnect across the cluster's servers, subscriptions that survive
 * reconnects, publishes with bounded pending output, requests, and the
 * key-value primitives behind cluster-unique names (docs/cluster.md). */
#ifndef SB_COMMON_NATS_H
#define SB_COMMON_NATS_H

#include <stddef.h>
#include <stdint.h>

#include "common/natsproto.h"

/* What the connection tells its owner, through sb__nats_cfg's on_event. */
enum sb__nats_event {
	SB__NATS_CONNECTED = 1,  /* ready: CONNECT answered, subscriptions in place (text: URL) */
	SB__NATS_DISCONNECTED,   /* the server was lost (text: why); reconnecting */
	SB__NATS_WRITABLE,       /* pending output is down to half its bound after a refusal */
	SB__NATS_SERVER_ERROR,   /* the server sent -ERR (text: its words) */
	SB__NATS_ATTEMPT_FAILED, /* an attempt ended before it was ready (text: why); the
				    next server is tried after the backoff */
};

/* A message for a subscription. Valid during the call only. */
typedef void sb__nats_msg_fn(void *ud, const struct sb__nats_msg *m);

/* A request's end: its reply (err 0, or SB_ENOHANDLER with the server's
 * 503 "no responders" status in m), or m == NULL with SB_ETIMEOUT or
 * SB_EOFFLINE (the connection was lost: a reply may have been lost too). */
typedef void sb__nats_reply_fn(void *ud, int err, const struct sb__nats_msg *m);

/* A key-value operation's end. err 0 with the entry's revision (and, for a
 * get, its value); SB_EDUPNAME: the key exists (create) or moved on since
 * the revision given (update, delete): rev is then the revision seen when
 * known (create), val its value; SB_EUNKNOWNPEER: no such key (get);
 * SB_ENOHANDLER: JetStream does not answer; SB_ETIMEOUT, SB_EOFFLINE;
 * SB_EINTERNAL with the server's description in val. */
typedef void sb__nats_kv_fn(void *ud, int err, uint64_t rev, const uint8_t *val, size_t len);

struct sb__nats_cfg {
	const char *servers;     /* "nats://host:port,tls://host:port,...": tried in turn */
	const char *user, *pass; /* user and password, or NULL (also nats://user:pass@host) */
	const char *token;       /* an authorization token, or NULL */
	const char *tls_ca;      /* CA file: TLS to every server; NULL: TLS only to tls:// */
	const char *tls_cert;    /* certificate (chain) file for servers that verify clients */
	const char *tls_key;     /* its private key file; NULL: in tls_cert's file */
	const char *name;        /* the connection's name in the server's monitoring */
	int echo;                /* 1: our own publishes reach our subscriptions */
	size_t out_max;          /* publishes refused past this many pending bytes (1 MiB) */
	unsigned ping_ms;        /* PING when the server was quiet this long (2,000) */
	unsigned pings_max;      /* unanswered PINGs that mean the server is gone (2) */
	unsigned backoff_min_ms; /* reconnect waits, jittered, doubling from here (10) */
	unsigned backoff_max_ms; /* ...up to here (2,000) */
	unsigned connect_ms;     /* TCP, TLS, INFO, CONNECT and its PONG, or next server (2,000) */
	unsigned reads_max;      /* recv()s of 64 KiB per process() at most, then it returns (16) */
	void (*on_event)(void *ud, enum sb__nats_event ev, const char *text);
	void *ud; /* for on_event */
};

/* Counters, for tests and statistics. */
struct sb__nats_stats {
	uint64_t connects;   /* handshakes completed, the first included */
	uint64_t msgs_in;    /* messages delivered to subscriptions and requests */
	uint64_t msgs_out;   /* publishes queued */
	uint64_t refused;    /* publishes refused with SB_EOVERLOADED */
	size_t pending_peak; /* most output bytes pending at once */
};

struct sb__nats;

/**
 * A connection with @p cfg (copied). Nothing is sent yet: the first
 * connect attempt is made by the first sb__nats_process(). Host names are
 * resolved now, once: this may block on DNS.
 * @param why  on failure, what is wrong
 * @return 0 with *out set; SB_EINVAL (a bad URL, no servers, a CA file that
 *         does not load), SB_ESYS (a name that does not resolve), SB_ENOMEM
 */
int sb__nats_new(const struct sb__nats_cfg *cfg, struct sb__nats **out, char *why, size_t cap);

/** Closes the connection and frees it; requests in flight end with
 *  SB_EOFFLINE, their callbacks called inside. NULL is ignored. */
void sb__nats_free(struct sb__nats *nc);

/* ---- the owner's loop ---------------------------------------------------
 * The connection never blocks. Each turn the owner waits for sb__nats_fd()
 * (which changes across reconnects: -1 while waiting to reconnect) to be
 * ready for sb__nats_events(), at most sb__nats_timeout() ms, then calls
 * sb__nats_process() with what was ready. Callbacks run inside it; they
 * may publish, subscribe and unsubscribe, never free the connection. */
int sb__nats_fd(const struct sb__nats *nc);
/** Changes whenever the socket does. A new socket often gets the old
 *  one's number, so a loop that keeps the descriptor armed (an io_uring
 *  poll) compares this, not the number, to know it must re-arm. */
uint64_t sb__nats_socket_gen(const struct sb__nats *nc);
short sb__nats_events(const struct sb__nats *nc); /* POLLIN, POLLOUT */
/** Whether the last process() stopped reading at its bound with bytes
 *  perhaps left in the socket. Otherwise the socket was read empty, so a
 *  loop whose poll fires on new bytes only (io_uring's multishot poll)
 *  has nothing to read until it does. */
int sb__nats_more(const struct sb__nats *nc);
int sb__nats_timeout(const struct sb__nats *nc, uint64_t now_ms);

/** Reads, parses and dispatches, writes what the socket takes, runs the
 *  timers (PING, connect deadline, backoff, request timeouts). */
void sb__nats_process(struct sb__nats *nc, short revents, uint64_t now_ms);

/** One turn of a poll() loop of its own, waiting at most @p ms. For tests,
 *  tools and a thread that has nothing else to wait for. */
void sb__nats_poll(struct sb__nats *nc, int ms);

/** Writes pending output now, as far as the socket takes it. */
void sb__nats_flush(struct sb__nats *nc);

/* ---- state -------------------------------------------------------------- */

/** 1 while connected and past the handshake: publishes are taken. */
int sb__nats_ready(const struct sb__nats *nc);

/** Output bytes queued and not yet taken by the socket. */
size_t sb__nats_pending(const struct sb__nats *nc);

/** Keeps @p bytes of out_max for publishes the owner has already
 *  accepted and will make later in its turn (a shard's gathered answers):
 *  every other publish is refused while pending + held + its own bytes
 *  would pass out_max, so those later ones are never refused for room.
 *  The owner lowers it before making them, and sets 0 when it drops them. */
void sb__nats_hold(struct sb__nats *nc, size_t bytes);

/** 0 after a refused publish until SB__NATS_WRITABLE, else 1. */
int sb__nats_writable(const struct sb__nats *nc);

/** The server's limit on one message's bytes (headers and payload). */
size_t sb__nats_max_payload(const struct sb__nats *nc);

/** The server connected to, "nats://127.0.0.1:4222"; "" if none. */
const char *sb__nats_url(const struct sb__nats *nc);

void sb__nats_stats(const struct sb__nats *nc, struct sb__nats_stats *st);

/** Why the last connection or attempt ended ("" before any): for logs. */
const char *sb__nats_last_error(const struct sb__nats *nc);

/* ---- messages ----------------------------------------------------------- */

/**
 * Queues a message: PUB, or HPUB when @p hdr_len > 0 (a block from
 * sb__nats_hdr_build()). It goes out at the next process or flush.
 * @param reply  subject for answers, or NULL
 * @return 0; SB_EOVERLOADED: the pending output would pass out_max, nothing
 *         was queued (wait for SB__NATS_WRITABLE); SB_EOFFLINE: not ready;
 *         SB_ETOOLARGE: over the server's max_payload; SB_EINVAL: a bad
 *         subject; SB_EUNSUPPORTED: headers, and the server has none;
 *         SB_ENOMEM
 */
int sb__nats_pub(struct sb__nats *nc, const char *subject, const char *reply, const uint8_t *hdr,
		 size_t hdr_len, const void *data, size_t len);

/**
 * Subscribes, now and after every reconnect, until sb__nats_unsub().
 * @param queue  a queue group (each message goes to one member), or NULL
 * @return the subscription's id (> 0), SB_EINVAL, or SB_ENOMEM
 */
int64_t sb__nats_sub(struct sb__nats *nc, const char *subject, const char *queue,
		     sb__nats_msg_fn *fn, void *ud);

/** Ends a subscription: it is not replayed, and the server is told. What
 *  the server sent before it took that still reaches fn (and ud must stay
 *  valid) for 2 s, rather than vanish unseen: its publisher would not get
 *  "no responders" for it. */
void sb__nats_unsub(struct sb__nats *nc, int64_t sid);

/**
 * Publishes with a reply subject of the connection's own inbox and calls
 * @p fn once: with the first reply, or with an error (see sb__nats_reply_fn).
 * @return 0, or an error of sb__nats_pub() (then fn is not called)
 */
int sb__nats_request(struct sb__nats *nc, const char *subject, const uint8_t *hdr, size_t hdr_len,
		     const void *data, size_t len, unsigned timeout_ms, sb__nats_reply_fn *fn,
		     void *ud);

/* ---- key-value (JetStream: the servers run with -js) -------------------- */

/* A bucket's settings. */
struct sb__nats_kv_opts {
	int memory;          /* 1: kept in memory (lost when every replica restarts) */
	unsigned replicas;   /* copies across the cluster's servers (1) */
	uint64_t max_age_ms; /* entries expire this long after their last write; 0: never */
	unsigned timeout_ms; /* each request to JetStream (2,000) */
};

/** Creates bucket @p bucket (stream KV_<bucket>), or finds it with these
 *  settings. fn gets 0 or an error (rev and val unused, val: the text). */
int sb__nats_kv_bucket(struct sb__nats *nc, const char *bucket, const struct sb__nats_kv_opts *o,
		       sb__nats_kv_fn *fn, void *ud);

/** Sets @p key only if it has no value (never set, deleted or expired):
 *  atomic across the cluster. fn: 0 and the new revision, or SB_EDUPNAME
 *  with the holder's revision and value. */
int sb__nats_kv_create(struct sb__nats *nc, const char *bucket, const char *key, const void *val,
		       size_t len, unsigned timeout_ms, sb__nats_kv_fn *fn, void *ud);

/** Sets @p key only if its revision is still @p rev. */
int sb__nats_kv_update(struct sb__nats *nc, const char *bucket, const char *key, const void *val,
		       size_t len, uint64_t rev, unsigned timeout_ms, sb__nats_kv_fn *fn, void *ud);

/** Deletes @p key; with @p rev > 0 only if its revision is still that. */
int sb__nats_kv_delete(struct sb__nats *nc, const char *bucket, const char *key, uint64_t rev,
		       unsigned timeout_ms, sb__nats_kv_fn *fn, void *ud);

/** Reads @p key's value and revision (SB_EUNKNOWNPEER if it has none). */
int sb__nats_kv_get(struct sb__nats *nc, const char *bucket, const char *key, unsigned timeout_ms,
		    sb__nats_kv_fn *fn, void *ud);

#endif
