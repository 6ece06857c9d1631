/* The NATS connection's state, as its parts share it: the connection
 * itself, its configuration (nats_cfg.c) and, through the public calls
 * only, the key-value primitives (nats_kv.c). Internal to core/common/. */
#ifndef SB_COMMON_NATS_INT_H
#define SB_COMMON_NATS_INT_H

#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/idmap.h"
#include "common/nats.h"

#define READ_CHUNK (64u << 10) /* one recv() */

struct sb__tls;
struct sb__tls_ctx;

union addr {
	struct sockaddr sa;
	struct sockaddr_in v4;
	struct sockaddr_in6 v6;
	struct sockaddr_storage ss;
};

struct server {
	char *host;        /* as written, without brackets: the TLS name */
	char *url;         /* for logs and events */
	char *user, *pass; /* from the URL, else NULL */
	int tls;           /* tls:// */
	union addr a;      /* resolved once, by sb__nats_new() */
	socklen_t alen;
};

struct sub {
	int64_t sid;
	char *subject;
	char *queue; /* NULL: a plain subscription */
	sb__nats_msg_fn *fn;
	void *ud;
	struct sub *next; /* in creation order, the order they are replayed in */
	uint64_t gone_at; /* ended: forgotten at this ms (see sb__nats_unsub()) */
};

struct req {
	uint64_t token;    /* the last token of its reply subject */
	uint64_t deadline; /* ms */
	sb__nats_reply_fn *fn;
	void *ud;
	struct req *next;
};

enum state {
	ST_WAIT = 0,   /* no socket: the next attempt at retry_at */
	ST_CONNECTING, /* TCP connect in progress */
	ST_INFO,       /* waiting for the server's INFO */
	ST_TLS,        /* TLS handshake after INFO */
	ST_PONG,       /* CONNECT, SUBs and PING sent: the PONG says they were taken */
	ST_READY,
};

struct sb__nats {
	struct sb__nats_cfg cfg; /* strings below are our copies */
	struct server *srv;
	unsigned nsrv, cur; /* servers, and the one tried or used now */
	struct sb__tls_ctx *tls_ctx;
	struct sb__tls *tls;
	enum state st;
	int fd;
	uint64_t gen; /* +1 per connection: callbacks check it to see a drop */

	uint8_t *in; /* plaintext received and not yet parsed */
	size_t in_len, in_cap;
	uint8_t *rbuf; /* one recv() of ciphertext */
	int more;      /* the last process() stopped reading at its bound */
	uint8_t *out;  /* plaintext to send: out[out_off..out_len) */
	size_t out_off, out_len, out_cap;
	int refused;        /* a publish was refused: WRITABLE at the low mark */
	size_t held;        /* promised to publishes still to come (sb__nats_hold) */
	size_t max_payload; /* the server's, from INFO */
	int headers;        /* the server takes HPUB */

	struct sub *subs;      /* every subscription, in creation order */
	struct sub *gone;      /* ended ones still in their grace (in sids too) */
	struct sb__idmap sids; /* sid -> struct sub * */
	int64_t next_sid;

	char inbox[48]; /* "_INBOX.<random>." */
	size_t inbox_len;
	int64_t inbox_sid; /* 0 until the first request */
	struct req *reqs;
	uint64_t next_token;

	uint64_t deadline; /* ST_CONNECTING..ST_PONG: give up this server then */
	uint64_t retry_at; /* ST_WAIT */
	uint64_t ping_at;  /* ST_READY: next PING, pushed back by traffic */
	unsigned pings_out;
	unsigned attempt; /* failed attempts since the last ready connection */
	uint64_t rng;
	int dropping; /* inside drop(): callbacks must not start another */
	struct sb__nats_stats st_;
	char why[256];
};

/* Every request ends now with err (their callbacks run). */
void sb__nats_fail_requests(struct sb__nats *nc, int err);
/* Ended subscriptions whose grace is over by now are forgotten. */
void sb__nats_forget_gone(struct sb__nats *nc, uint64_t now);

#endif
