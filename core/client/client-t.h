/* The client library's types: the client, its requests, calls, handlers and
 * the senders it knows, shared by the files of core/client/. */
#ifndef SB_CLIENT_T_H
#define SB_CLIENT_T_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <switchboard/client.h>
#include <switchboard/proto.h>

#include "common/call-t.h"
#include "common/idmap.h"
#include "common/list.h"
#include "common/timer.h"

struct sb__tls;
struct sb__tls_ctx;

#define IN_SIZE        (64u << 10)  /* bytes per recv() */
#define OUT_INIT       4096u        /* output buffer to start with */
#define SPARE_MAX      1024u        /* finished requests and calls kept for reuse */
#define CTL_BIT        (1ull << 63) /* ids of REGISTER/UNREGISTER; requests count up below */
#define DRAIN_GRACE_MS 2000u        /* after a GOODBYE's deadline, close if the router has not */

enum conn_state {
	C_WAIT,       /* no socket: waiting for retry_at to connect */
	C_CONNECTING, /* non-blocking connect() under way */
	C_TLS,        /* connected; the TLS handshake is under way */
	C_HELLO,      /* HELLO queued or sent, waiting for WELCOME */
	C_REGISTER,   /* WELCOME received, waiting for the registrations' ACKs */
	C_READY,      /* online */
	C_DRAINING,   /* the router said GOODBYE: no new requests until it closes */
	C_DEAD,       /* gave up for good (dead_err says why), or being freed */
};

#define SB__CLIENT_ADDR_MAX    262u /* "[" + an address or host name + "]:" + a port */
#define SB__CLIENT_ROUTERS_MAX 64u

/* One router to connect to. */
struct sb__client_addr {
	char *host;
	uint16_t port;
	char text[SB__CLIENT_ADDR_MAX + 1]; /* as given, for sb_client_router() */
};

/* An open request. */
struct req {
	struct sb__timer timer; /* the local deadline */
	struct sb__link link;   /* on c->open (oldest first), or on c->spare_reqs */
	struct sb_client *c;    /* for the timer callback */
	uint64_t id;            /* ours; replies carry it */
	sb_reply_fn fn;
	void *ud;
	int cancelling; /* sb_cancel() was called: the terminal event is SB_ECANCELLED */
};

/* A sender, as the router introduced it (PRESENCE identity). */
struct ident {
	struct sb__link link; /* on c->idents_all while in the table */
	unsigned refs;        /* the table's, plus one per call that points at it */
	char name[SB_PEER_MAX + 1];
	char role[SB_TOKEN_MAX + 1];
	char *subject; /* or NULL */
	void *claims;  /* its token's claims (a MessagePack map), or NULL */
	size_t claims_len;
};

/* A message a handler received: a request (answered through it) or a send. */
struct call {
	struct sb_call base;  /* what the handler gets: name, payload, from, is_request */
	struct sb__link link; /* c->live while the router may cancel it, else c->orphans;
			     c->spare_calls once free */
	struct sb_client *c;
	struct ident *ident; /* the sender (a reference), or NULL */
	uint64_t rid;        /* the router's id for the request; replies carry it */
	uint8_t busy;        /* its handler or on_cancel is running: not freed meanwhile */
	uint8_t finished;    /* the final reply was sent (or attempted, once dead) */
	uint8_t mapped;      /* in c->calls, so a CANCEL can find it */
	uint8_t cancel_ran;  /* on_cancel has been called */
	int dead;            /* 0, SB_ECANCELLED or SB_EOFFLINE: no reply can reach the requester */
	void (*on_cancel)(struct sb_call *, void *);
	void *cancel_ud;
	char name[SB_NAME_MAX + 1];
};

/* A name this client serves (sb_client_register), kept across connections. */
struct handler {
	char *name;      /* NULL: the catch-all */
	uint32_t len;    /* strlen(name) */
	unsigned flags;  /* SB_HANDLER_INTERNAL */
	uint8_t *schema; /* the argument schema REGISTER carries, or NULL (nil) */
	uint32_t schema_len;
	sb_handler_fn fn;
	void *ud;
	uint64_t reg_id; /* the REGISTER awaiting its ACK on this connection, else 0 */
};

/* One client: its settings, its connection, and everything open on it. */
struct sb_client {
	struct sb_client_config cfg; /* its strings point at the copies below */
	char *host, *name, *role;
	struct sb__client_addr *addrs; /* cfg.routers, or host and port alone */
	unsigned naddrs, addr_cur;     /* how many; the one of the current attempt */
	int addr_tried;                /* an attempt was made: the next takes the next one */
	char *secret;                  /* shared secret, or NULL; wiped when freed */
	uint8_t *hello; /* HELLO's payload ({"lib", "token"} with a token), or NULL: HELLO_INFO */
	size_t hello_len;
	uint8_t *hello_resume; /* the same with "resume" added, while has_resume; or NULL */
	size_t hello_resume_len;
	int service;    /* role "service" */
	int challenged; /* this connection answered a CHALLENGE */
	enum conn_state st;
	int fd;          /* the socket; -1 in C_WAIT and C_DEAD */
	int wake_fd;     /* eventfd that lets sb_client_stop() interrupt a poll */
	atomic_int stop; /* sb_client_stop() was called; sb_client_run() consumes it */
	int dead_err;    /* why we gave up, in C_DEAD */
	int leaving;     /* sb_client_leave(): no reconnect after this connection */
	int left_err;    /* ...and why the connection ended: 0 = closed by the router */
	int in_cb;       /* user callbacks running (they may not process or free) */
	const struct sb_call *running; /* the call whose handler callback runs, or NULL */
	int overloaded;                /* a call got SB_EOVERLOADED: on_writable is owed */
	uint64_t conn_gen;          /* changes with every connection: dispatch stops when it does */
	int ever_online;            /* ONLINE was reported once: later ones are RECONNECTED */
	int online_reported;        /* ONLINE/RECONNECTED reported for this connection */
	unsigned attempt;           /* failed attempts since last online: the backoff exponent */
	uint64_t retry_at;          /* C_WAIT: when to connect */
	uint64_t hs_deadline;       /* C_CONNECTING .. C_REGISTER: when to abandon the attempt */
	uint64_t drain_at;          /* C_DRAINING: when to stop waiting for the router's close */
	uint64_t rng;               /* xorshift state for the reconnect jitter */
	char peer[SB_PEER_MAX + 1]; /* our name from WELCOME; "" before the first */
	uint8_t resume[16];         /* the resume token of the last WELCOME, if has_resume */
	int has_resume;             /* ...given: a reconnect asks for `peer` and shows it */
	int resuming;               /* this connection's HELLO showed it */
	uint32_t peer_id;           /* from WELCOME */
	uint32_t max_frame;         /* the router's body limit, from WELCOME */
	struct sb_splitter *sp;     /* cuts received bytes into frames */
	uint8_t *in;                /* IN_SIZE bytes for recv() */
	uint8_t *out;               /* queued frames; [out_off, out_len) is still to write */
	size_t out_off, out_len, out_cap;
	uint64_t next_id;      /* next request id */
	uint64_t next_ctl;     /* next REGISTER/UNREGISTER id, before CTL_BIT is set */
	struct sb__idmap reqs; /* request id -> struct req * */
	struct sb__link open;  /* open requests, oldest first */
	struct sb__link spare_reqs;
	unsigned nspare_reqs;
	struct sb__wheel wheel;  /* local request deadlines */
	struct sb__idmap calls;  /* router id -> struct call *, for CANCEL */
	struct sb__link live;    /* calls the router may still cancel */
	struct sb__link orphans; /* cancelled or lost calls a handler has yet to finish */
	struct sb__link spare_calls;
	unsigned nspare_calls;
	struct call send_call; /* reused for every SEND: valid during its callback only */
	struct handler *h;     /* registrations, in no particular order */
	unsigned nh, h_cap;
	struct sb__idmap idents;    /* peer_id -> struct ident *: senders introduced to us */
	struct sb__link idents_all; /* the same, to forget them all at once */
	sb_presence_fn pres_fn;     /* the presence subscription, or NULL */
	void *pres_ud;
	uint64_t pres_id;            /* its SUBSCRIBE awaiting the ACK, else 0 */
	char text[SB_TEXT_MAX + 1];  /* an outcome or error text, NUL-terminated for a callback */
	struct sb__tls_ctx *tls_ctx; /* TLS settings; NULL: plain TCP */
	struct sb__tls *tls;         /* this connection's TLS state, from C_TLS on */
	char *server_name;           /* what the router's certificate must name */
	uint8_t *tin;                /* IN_SIZE bytes of decrypted input */
	char last_error[SB_TEXT_MAX + 1]; /* sb_client_last_error() */
	uint64_t said_gen;                /* the conn_gen last_error was written for */
	uint8_t *oq;                      /* sends made offline, as frames (offline.c) */
	size_t oq_len, oq_cap;
	size_t oq_count; /* how many */
};

#endif
