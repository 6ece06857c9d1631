/* The router: create, start, and stop the routing engine in any C program.
 * The switchboard daemon is a thin main() over these calls. */
#ifndef SWITCHBOARD_ROUTER_H
#define SWITCHBOARD_ROUTER_H

#include <stddef.h>
#include <stdint.h>

#include <switchboard/call.h>
#include <switchboard/error.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Router settings. Fill with sb_router_config_init(), then change fields.
 * The struct may grow at its end in later versions: `size` (set by
 * sb_router_config_init) tells the library how much of it this program
 * knows, and fields past it keep their defaults, so a program built
 * against an older header keeps working with a newer library. */
struct sb_router_config {
	size_t size;                 /* sizeof the struct this program was built with */
	const char *addr;            /* IPv4 address to listen on; default "127.0.0.1" */
	uint16_t port;               /* TCP port; 0 = any free port; default 7400 */
	unsigned shards;             /* threads; 0 = one per online CPU */
	uint32_t max_frame;          /* largest frame body accepted; default 1 MiB */
	uint32_t default_timeout_ms; /* for requests with timeout 0; default 30,000 */
	uint32_t max_timeout_ms;     /* longer timeouts are cut to this; default 1 h */
	size_t out_max;              /* queued output per connection: a quarter of it pauses
					the connections feeding it (senders, requesters,
					handlers streaming to it); past it plus 8 receive
					pools it is dropped as a slow consumer; default 16 MiB */
	uint32_t slow_ms;            /* a connection past that quarter whose peer takes
					none of it for this long is dropped as a slow
					consumer; 0 = never; default 10,000 */
	uint32_t max_inflight;       /* requests in flight per shard; default 1,048,576 */
	uint32_t max_conns;          /* open connections, all shards; more are refused with
					an ERROR; default 65,536. sb_router_new() warns (log
					level 1) when RLIMIT_NOFILE is below what it needs */
	uint32_t hello_timeout_ms;   /* a connection must finish HELLO within this, or it
					gets an ERROR and is closed; 0 = never; default 5,000 */
	const char *name_pattern;    /* names for peers that ask for none: one run of '#' is
					a counter, zero-padded to the run's length ("A###":
					A001, A002, ...); copied; default "P####" */
	unsigned bind_retries;       /* extra bind attempts when the port is busy; default 0 */
	unsigned bind_retry_ms;      /* delay between them; default 1,000 */
	unsigned recv_buffers;       /* receive buffers per shard (power of two); default 256 */
	unsigned recv_buffer_size;   /* bytes each; default 16 KiB */
	unsigned mail_ring;          /* slots per inter-shard ring (power of two); 0 = auto:
					4,096 up to 8 shards, fewer beyond */
	int log_level;               /* 0 errors, 1 + lifecycle, 2 + connections, 3 debug;
					default 1 */

	/* Authentication and name rules (docs/security.md). Strings are copied;
	 * sb_router_reload() replaces these seven fields while running. */
	const char *secret_service;      /* shared secret of role "service"; NULL = none. With
					    no secret at all nobody authenticates; with one
					    for one role only, the other role is refused */
	const char *secret_client;       /* the same for role "client" */
	const char *secret_service_file; /* the secret read from a file instead (at
					    sb_router_new and each reload), minus one
					    trailing newline */
	const char *secret_client_file;
	const char *allow_register_service; /* names services may register: patterns such as
					       "user.*,billing.log"; NULL = any */
	const char *allow_call_service;     /* names services may send to or request; NULL = any */
	const char *allow_call_client;      /* names clients may send to or request; NULL = any */
	uint32_t auth_fail_max;             /* wrong secrets from one address within the window
					       after which it is refused until the window ends; 0 =
					       never; default 5 (counted per shard) */
	uint32_t auth_fail_window_ms;       /* default 60,000 */

	/* Limits per peer; each refusal names the limit and is counted. */
	uint32_t max_conns_per_addr;    /* open connections from one IP address; more are
					   refused; 0 = no limit; default 1,024 */
	uint32_t max_inflight_per_conn; /* requests in flight per connection; more are
					   answered "overloaded"; default 65,536 */
	uint32_t max_registrations;     /* names registered per connection; more are refused
					   with "overloaded"; default 1,024 */
	uint32_t idle_ms;               /* a connection silent this long is sent a PING; 0 = never;
					   default 60,000 */
	uint32_t pong_timeout_ms; /* ...and closed if nothing comes within this; default 20,000 */

	/* TLS (docs/security.md). The files and lists are read by
	 * sb_router_new() and sb_router_reload() and not kept. */
	const char *tls_cert;         /* PEM certificate (chain) file: the listener speaks
					 TLS 1.3 only; NULL = plain TCP (default) */
	const char *tls_key;          /* PEM private key file; NULL = in tls_cert's file */
	const char *tls_ca;           /* PEM CA file client certificates are verified
					 against; a client may present one when set */
	int tls_verify_client;        /* 1: require a client certificate signed by tls_ca */
	const char *const *tls_allow; /* NULL-terminated names or `*` patterns matched
					 against the client certificate's CN and DNS SANs
					 (no case); NULL or empty = every CA-signed name */
	const char *const *tls_deny;  /* the same; a match refuses, and wins over allow */

	/* The edge (docs/gateway.md): WebSocket on a port of its own, on the
	 * same shards, with the TLS settings below when they are set. */
	int ws_port;                 /* -1 = no edge listener (default); 0 = any free port */
	const char *ws_allow_origin; /* browser origins that may upgrade: exact origins and
					`*` patterns, comma-separated; NULL = any. A request
					without Origin (not a browser) is not checked. Copied */

	/* Bearer tokens (JWT) on the edge (docs/gateway.md, "Tokens"): with a
	 * key, every HTTP call and WebSocket upgrade must carry a valid token.
	 * Files are read by sb_router_new() and sb_router_reload() (SIGHUP). */
	const char *jwt_keys_file;   /* PEM public keys: RS256 (RSA) and ES256 (P-256) */
	const char *jwt_secret_file; /* an HS256 secret of 32 bytes or more, minus one
					trailing newline */
	const char *jwt_issuer;      /* "iss" must be this; NULL: not checked */
	const char *jwt_audience;    /* "aud" must hold this; NULL: not checked */
	uint32_t jwt_leeway_s;       /* clock skew allowed on exp and nbf, at most 300;
					default 30 */

	/* Several routers as one (docs/cluster.md): "nats://HOST:PORT,..." of
	 * the NATS cluster every shard joins; copied; NULL = a router alone. */
	const char *cluster;

	/* The admin listener (docs/operations.md): plain HTTP on a port of its
	 * own for operators and their tools, served by the same shards:
	 * GET /metrics (Prometheus) and the admin pages, never WebSocket
	 * upgrades or calls. Without TLS: keep it on loopback or a private
	 * network. */
	int admin_port;         /* -1 = no admin listener (default); 0 = any free port */
	const char *admin_addr; /* IPv4 address it listens on; copied; default "127.0.0.1" */

	/* A peer whose connection is lost keeps its name this long: only a
	 * HELLO showing the resume token its WELCOME gave takes it back
	 * (docs/protocol.md, HELLO and WELCOME); 0 = names are free at once,
	 * and WELCOME gives no token. Default 30,000. Appended last: the
	 * struct grows at its end. */
	uint32_t name_grace_ms;

	/* With `cluster`: a request goes to a handler on this router unless
	 * every one of the name has this many requests in flight from the
	 * requester's shard; then to another router with the name, if one
	 * is alive (docs/cluster.md, "Local first"). 0 = never; default 64. */
	uint32_t cluster_spill;

	/* The cluster's NATS connection (docs/cluster.md, "Settings"), with
	 * `cluster` set (any of these without it is SB_EINVAL). Strings are
	 * copied and files read by sb_router_new(); none reloads. */
	const char *cluster_user;       /* user for servers that require one (with a password) */
	const char *cluster_pass;       /* its password; or */
	const char *cluster_pass_file;  /* ...read from a file, minus one trailing newline */
	const char *cluster_token;      /* an authorization token instead; or */
	const char *cluster_token_file; /* ...read from a file, minus one trailing newline */
	const char *cluster_ca;         /* PEM CA file: TLS to every server, whose certificate
					   must be signed by it; NULL: TLS only to tls:// URLs,
					   verified against the system's CA certificates */
	const char *cluster_cert;       /* PEM certificate (chain) for servers that verify
					   clients (mutual TLS); NULL: none */
	const char *cluster_key;        /* its PEM private key; NULL: in cluster_cert's file */
	const char *cluster_name;       /* this router's id in the cluster: 1 to 32 letters,
					   digits, '-' or '_', unique among the routers (the
					   log says when another router uses it); NULL: "r" and
					   16 random hex digits, new at each start */
	uint32_t cluster_dead_ms;       /* a router not heard from this long is gone: what it
					   handled ends with `peer gone`; heartbeats go every
					   sixth of it. 300 to 600,000; default 3,000 */

	/* Which shard a connection is on (docs/architecture.md, "Which shard
	 * a connection is on"): SB_PLACEMENT_FOLLOW (the default) moves a
	 * requester, once, to the shard of the handlers it calls when none
	 * is on its own; SB_PLACEMENT_KERNEL leaves every connection where
	 * the kernel's SO_REUSEPORT hash put it. */
	uint32_t placement;
};

/* struct sb_router_config's `placement`. */
enum sb_placement {
	SB_PLACEMENT_FOLLOW = 0,
	SB_PLACEMENT_KERNEL = 1,
};

/* Counters, summed over shards. */
struct sb_router_stats {
	uint64_t connections;       /* open now */
	uint64_t frames_in;         /* frames received */
	uint64_t requests;          /* requests forwarded */
	uint64_t replies;           /* replies delivered to requesters */
	uint64_t timeouts;          /* requests ended by their timeout */
	uint64_t late_replies;      /* replies that came after their request ended */
	uint64_t no_handler;        /* sends and requests nothing could take: no handler, no
				       connected peer for a broadcast, a `to` peer never
				       connected, gone or leaving, a $sb. name not served */
	uint64_t slow_consumers;    /* connections dropped as slow consumers (slow_ms, or
				       past out_max and its window) */
	uint64_t inflight;          /* requests in flight now */
	uint64_t pauses;            /* times a connection's reads were paused: a connection it
				       feeds was past its pause mark, or its mail backed up */
	uint64_t queued_peak;       /* largest output queue any connection had, in bytes */
	uint64_t recv_starved;      /* receives stopped because every receive buffer was out */
	uint64_t mail_deferred;     /* inter-shard messages that waited for room in a full ring */
	uint64_t mail_backlog_peak; /* most messages one shard ever had waiting for one ring */
	uint64_t refused;           /* connections refused: max_conns reached */
	uint64_t hello_timeouts;    /* connections closed for not finishing HELLO in time */
	uint64_t invalid_args;      /* sends and requests refused as invalid arguments:
				       the handler's schema (a broadcast send: once per
				       handler), or a BROADCAST's `to` that is no peer
				       selector */
	uint64_t auth_failures;     /* handshakes refused "unauthorized" (secret, token) */
	uint64_t auth_blocked;      /* connections refused: their address failed too often */
	uint64_t forbidden;         /* registrations, sends and requests refused as forbidden:
				       a client registering, a name rule, a GOODBYE said,
				       every handler the caller could reach internal */
	uint64_t addr_refused;      /* connections refused: max_conns_per_addr reached */
	uint64_t inflight_refused;  /* requests refused as overloaded: max_inflight_per_conn,
				       or the shard's max_inflight, reached */
	uint64_t register_refused;  /* registrations refused: max_registrations reached */
	uint64_t idle_pings;        /* PINGs sent to silent connections */
	uint64_t idle_timeouts;     /* connections closed for not answering a PING */
	uint64_t accept_errors;     /* accepts that failed (out of descriptors or memory):
				       each is retried after a pause, 10 ms doubling to 1 s */
	uint64_t to_unhandled;      /* sends and requests `to` a peer that has no handler for
				       the name, nor a catch-all (also in no_handler) */
	uint64_t moves;             /* connections moved to the shard of the handlers they
				       call (placement follow) */
	uint64_t cluster_msgs;      /* NATS messages published to other routers with sends,
				       requests and answers (a batch or a frame alone) */
	uint64_t cluster_frames;    /* the frames those messages carried */
	uint64_t cluster_batches;   /* those messages that were batches (Sb-Batch) */
};

struct sb_router;

/** Fill @p c with the defaults above, and its size. */
#define sb_router_config_init(c) sb_router_config_init_size((c), sizeof *(c))

/** What sb_router_config_init() calls: fill the first @p size bytes of
 * @p c with the defaults (size included). */
void sb_router_config_init_size(struct sb_router_config *c, size_t size);

/**
 * Create a router: validate the config, load the TLS settings if any, and
 * bind every shard's listening socket (SO_REUSEPORT), retrying a busy port
 * as configured. A bad TLS setting is logged (at any log level).
 * @param err  set to the reason on failure: SB_EINVAL (bad config, or a
 *             size too small to hold addr and port) or
 *             SB_ESYS (errno says why: EADDRINUSE after the retries, ...)
 * @return the router, not yet running, or NULL
 */
struct sb_router *sb_router_new(const struct sb_router_config *c, int *err);

/**
 * Start the shard threads. Returns once every shard is serving.
 * @return 0, or SB_ESYS / SB_ENOMEM if a shard could not start (io_uring
 *         refused, for example); the router is then stopped
 */
int sb_router_start(struct sb_router *r);

/** The TCP port the router listens on (useful with port 0). */
uint16_t sb_router_port(const struct sb_router *r);

/** The edge's (WebSocket) port, or 0 when ws_port is -1. */
uint16_t sb_router_ws_port(const struct sb_router *r);

/** The admin listener's port, or 0 when admin_port is -1. */
uint16_t sb_router_admin_port(const struct sb_router *r);

/** The number of shards. */
unsigned sb_router_shards(const struct sb_router *r);

/** Counters, summed over shards; safe from any thread while running. */
void sb_router_stats(const struct sb_router *r, struct sb_router_stats *s);

/**
 * Stop: close the listeners, tell every peer GOODBYE, let requests in
 * flight finish for up to @p drain_ms, then close every connection and
 * join the shard threads. Requests still open at the deadline end with
 * "router draining" for their requesters.
 */
void sb_router_stop(struct sb_router *r, unsigned drain_ms);

/**
 * Apply the reloadable settings of @p cfg while the router runs, without
 * dropping a connection: the TLS certificate, key and CA (files read
 * again), tls_verify_client and the allow and deny lists, for connections
 * accepted from then on; the secrets (secret files read again) and name
 * rules, for new frames (a handshake already challenged finishes with the
 * secret of its HELLO; registrations stay). Other fields are ignored:
 * they take effect only when a router is made (the daemon says which of
 * its settings differ, docs/daemon.md). Call it from any
 * thread but a shard's (not from an in-process handler: it waits for
 * every shard to take the new rules); @p cfg is read during the call only.
 * @return 0; SB_EINVAL (a TLS file that does not load, a key that does not
 *         match, TLS turned on or off, a bad pattern or secret), SB_ESYS (a
 *         secret file cannot be read: errno), SB_ENOMEM. On failure the log
 *         says why, and every setting in force stays.
 */
int sb_router_reload(struct sb_router *r, const struct sb_router_config *cfg);

/** Free a stopped (or never started) router. */
void sb_router_free(struct sb_router *r);

/* ---- in-process handlers and requests ------------------------------------
 * A program that embeds the router can handle names itself and send or
 * request by name without a socket, with the names of switchboard/call.h:
 * the same struct sb_call, sb_reply*() and struct sb_reply as a client
 * program. Handlers run on shard threads, on the shard that routes the
 * message: keep them short and non-blocking, and answer later (from any
 * thread) what takes long. */

/**
 * Handle @p name in-process. Call before sb_router_start(). @p fn runs on a
 * shard thread with a struct sb_call (switchboard/call.h): the sender's
 * peer name, role and subject as the router knows them (NULL for the
 * program's own sends and requests), and sb_call_client() NULL. A request's
 * call may be answered during the callback or after it, from any thread
 * (answers from a thread other than the shard's queue for it, in order);
 * it stays valid until its final answer, or until its on_cancel returns
 * (on_cancel is set from the callback and runs on the shard thread when
 * the request is cancelled, times out, or loses its requester). A request
 * never answered ends for its requester with its timeout. Calls still open
 * when the router is freed are freed with it.
 * @param name  the message name, or NULL for the catch-all
 * @param opts  NULL for none; SB_HANDLER_INTERNAL (callable by services
 *              and the program only); an argument schema (docs/protocol.md,
 *              "Argument schemas"): the router checks every message for
 *              this handler against it first, as for a network handler's.
 *              A request that breaks it gets SB_EINVAL with the reason and
 *              never reaches @p fn; a send is dropped
 * @return 0, SB_EINVAL (bad name, opts or schema — sb_schema_validate()
 *         says why —, or the router already started), SB_ENOMEM
 */
int sb_router_handle(struct sb_router *r, const char *name, const struct sb_handler_opts *opts,
		     sb_handler_fn fn, void *ud);

/**
 * Send fire-and-forget from any thread while the router runs, routed as a
 * service's send (internal handlers included).
 * @param opts  NULL for the defaults: one handler of @p name. With `to`,
 *              the peer of that name (its handler or catch-all); with
 *              SB_OPT_ALL, every handler of @p name; with SB_OPT_PEERS,
 *              every peer `to` selects (switchboard/call.h); `headers`
 *              go with it, and `parent`'s traceparent unless `headers`
 *              has one (no running call is assumed: docs/client.md)
 * @return 0 (queued), SB_EDRAINING once stopping, SB_EINVAL (bad name,
 *         payload, opts or headers), SB_ETOOLARGE, SB_ENOMEM
 */
int sb_router_send(struct sb_router *r, const char *name, const void *payload, size_t len,
		   const struct sb_opts *opts);

/**
 * Request from any thread while the router runs; @p fn is called on a
 * shard thread for every reply (struct sb_reply, as a client's reply
 * callback gets it), and exactly once with SB_MORE_NONE. Besides a
 * handler's own errors, err may be SB_ENOHANDLER, SB_EINVAL (the arguments
 * break the handler's schema), SB_ETIMEOUT, SB_EPEERGONE, SB_ECANCELLED,
 * SB_EDRAINING, and with `to` SB_EUNKNOWNPEER or SB_ENOTCONNECTED.
 * @param opts  NULL for the defaults. timeout_ms 0: the router's default.
 *              `to`, SB_OPT_ALL and SB_OPT_PEERS as for sb_request()
 *              (docs/client.md):
 *              a broadcast reports each handler's answer with
 *              SB_MORE_RESULT and r->peer set ("(in-process)" for an
 *              in-process handler), then the "$sb.all" aggregate;
 *              `headers` and `parent` as for sb_router_send()
 * @param req   optional; set to the request's id, for sb_router_cancel()
 * @return 0 (queued: fn will be called), SB_EDRAINING once stopping (fn is
 *         not called), SB_EINVAL, SB_ETOOLARGE, SB_ENOMEM
 */
int sb_router_request(struct sb_router *r, const char *name, const void *payload, size_t len,
		      const struct sb_opts *opts, sb_reply_fn fn, void *ud, uint64_t *req);

/**
 * Cancel an open in-process request, from any thread: its callback then
 * runs exactly once more, with SB_ECANCELLED, unless its terminal event
 * was already on its way (then that one is the last). The handlers still
 * at it are told (a CANCEL).
 * @return 0 (queued), SB_EINVAL (not an id sb_router_request() gave),
 *         SB_EDRAINING once stopping, SB_ENOMEM
 */
int sb_router_cancel(struct sb_router *r, uint64_t req);

#ifdef __cplusplus
}
#endif
#endif
