/* The C client library: one connection to a router, driven from the caller's
 * event loop, with requests, handlers and automatic reconnect. */
#ifndef SWITCHBOARD_CLIENT_H
#define SWITCHBOARD_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <switchboard/call.h>
#include <switchboard/error.h>
#include <switchboard/proto.h> /* enum sb_presence_event */

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The model (docs/client.md has the long version):
 *
 * - A client owns one non-blocking socket and no thread. The caller's loop
 *   polls sb_client_fd() for sb_client_events() with at most
 *   sb_client_timeout() ms, then calls sb_client_process(c, 0); or the
 *   caller hands the thread to sb_client_run(). The descriptor changes on
 *   every reconnect and is -1 while waiting to reconnect: read all three
 *   before each poll.
 * - One thread at a time per client. Nothing in the library locks; the only
 *   exception is sb_client_stop(), which may be called from any thread or a
 *   signal handler.
 * - Callbacks run inside sb_client_process(), sb_client_run(),
 *   sb_request_wait() and sb_client_free(), never inside any other call.
 *   From a callback a program may send, request, cancel, reply, register and
 *   unregister; it may not process, run, wait or free (those return SB_EINVAL,
 *   and sb_client_free() aborts).
 * - Frames are queued and written by the next process turn, so many
 *   messages made in one callback go out in one system call.
 */

struct sb_client;
struct sb_call;

/* What on_state reports. */
enum sb_client_state {
	SB_CLIENT_ONLINE,      /* first connection up: WELCOME received, every handler ACKed */
	SB_CLIENT_OFFLINE,     /* an online connection was lost; open requests have failed */
	SB_CLIENT_RECONNECTED, /* online again after OFFLINE, every handler re-registered */
	SB_CLIENT_ERROR,       /* the router refused something; err says what */
};

/* What a client may do (the wire says "client" and "service"). */
enum sb_role {
	SB_ROLE_CLIENT,  /* send and request */
	SB_ROLE_SERVICE, /* also register handlers, and call internal ones */
};

/* A client's settings. Fill with sb_client_config_init(), then change
 * fields. The strings are copied by sb_client_new(). The struct may grow
 * at its end in later versions: `size` (set by sb_client_config_init)
 * tells the library how much of it this program knows, and fields past it
 * keep their defaults, so a program built against an older header keeps
 * working with a newer library. */
struct sb_client_config {
	size_t size;                 /* sizeof the struct this program was built with */
	const char *host;            /* router address or host name; "127.0.0.1" */
	uint16_t port;               /* router port; 7400 */
	const char *name;            /* peer name to ask for; NULL: the router assigns one */
	enum sb_role role;           /* SB_ROLE_CLIENT (default) or SB_ROLE_SERVICE */
	const char *secret;          /* shared secret for a router that asks for one (the
					secret of the role); NULL: none, and such a router
					is given up on with SB_EUNAUTHORIZED. It never
					leaves this process: the library answers the
					router's CHALLENGE with an HMAC of it */
	unsigned reconnect_min_ms;   /* shortest wait before a reconnect attempt; 100 */
	unsigned reconnect_max_ms;   /* longest; the wait doubles per failure up to it; 5000 */
	uint32_t default_timeout_ms; /* for requests made with timeout 0; 0 = the router's */
	size_t out_max;              /* bytes of queued output past which sends, requests and
					progress replies fail with SB_EOVERLOADED; 16 MiB */
	/* TLS 1.3 (docs/security.md). The files are read by sb_client_new(). */
	int tls;                     /* 1: connect with TLS; 0: plain TCP (default) */
	const char *tls_ca;          /* PEM CA file the router's certificate must be signed
					by; NULL: the system's CA certificates */
	const char *tls_server_name; /* the DNS name or IP address the router's certificate
					must carry (and the SNI); NULL: host */
	const char *tls_cert;        /* PEM certificate (chain) to present, for a router
					that requires one (mutual TLS); NULL: none */
	const char *tls_key;         /* its PEM private key; NULL: in tls_cert's file */
	/* Connection changes and refusals: see enum sb_client_state. err is 0
	 * for ONLINE and RECONNECTED; for ERROR the router's code; for OFFLINE
	 * the reason: 0 (closed after the router's GOODBYE), SB_EOFFLINE (closed
	 * without a word), SB_ESYS (socket error, errno says which),
	 * SB_EBADFRAME / SB_ETOOLARGE (the router's bytes made no sense),
	 * SB_ETIMEOUT (the router announced GOODBYE but did not close within
	 * its deadline plus 2 s, so we did), or the code of the fatal ERROR
	 * reported just before. Over TLS, a certificate refused by either side
	 * is an ERROR with SB_EUNAUTHORIZED, after which the client gives up;
	 * sb_client_last_error() says which and why. */
	void (*on_state)(struct sb_client *c, enum sb_client_state state, int err, void *ud);
	void *ud; /* passed to on_state and on_writable */
	/* Called once, after a call failed with SB_EOVERLOADED, when the queued
	 * output has drained to half of out_max: a producer (a stream, say)
	 * can go on from here instead of polling. NULL: not told. */
	void (*on_writable)(struct sb_client *c, void *ud);
	/* A bearer token (a JWT, compact form: base64url parts joined by dots,
	   at most 8,192 bytes) for a router that verifies tokens; sent in
	   HELLO on every connection (docs/protocol.md). Its subject becomes
	   this peer's verified identity; with it the router asks no secret.
	   NULL: none. */
	const char *token;
	/* The offline queue: sends made while the client is not online
	   (before its first connection, between a lost connection and the
	   next, while handlers are being registered again) are held, up to
	   this many bytes of encoded frames, and written in the order they
	   were made once the client is online again: after every handler and
	   the presence subscription are ACKed, before on_state reports
	   ONLINE / RECONNECTED. A send that does not fit returns
	   SB_EOVERLOADED (and on_writable runs once the queue has gone out).
	   Requests are never held (they have deadlines: sb_request() returns
	   SB_EOFFLINE; sb_request_wait() waits for the connection). Held
	   sends are dropped by sb_client_free(), sb_client_leave() and when
	   the client gives up for good; sb_client_offline_queued() counts
	   them. A held send over the frame limit of the router that finally
	   takes the connection (its WELCOME says) is dropped too. A send
	   already written to a connection that is then lost is not sent
	   again. 0 (default): off, and sb_send() returns SB_EOFFLINE when not
	   online. */
	size_t offline_queue_bytes;
	/* Optional: where sb_client_new() writes, when it fails, which setting
	   is wrong and why, NUL-terminated and truncated to whylen bytes
	   ("tls-ca /x: No such file or directory", "port: 0 is not a port to
	   connect to", "name: \"a b\" is not a peer name ..."). The text
	   starts with the setting's name. Not used after sb_client_new()
	   returns. NULL: not written. */
	char *why;
	size_t whylen;
	/* Several routers of one cluster (docs/cluster.md, "Clients that
	   move"): "HOST:PORT,HOST:PORT,..." (an IPv6 address in brackets,
	   "[::1]:7400"; at most 64), used instead of host and port. The
	   first attempt takes the first; every later attempt, after a failed
	   one or a lost connection, takes the next (after the last, the
	   first again), with the backoff of one router (reconnect_min_ms,
	   doubling per failed attempt). So a client whose router dies moves
	   to the next one that answers and stays there. A move is a
	   reconnect like any other: OFFLINE, then RECONNECTED once every
	   handler and the presence subscription are ACKed by the new router;
	   open requests fail with SB_EOFFLINE at the loss; the offline queue
	   is written to the new router. The resume token of the last WELCOME
	   belongs to the router that gave it: it is shown to the next router
	   all the same, which knows nothing of it and treats it as after a
	   router restart (the name is asked for: given if it is free across
	   the cluster, else a new assigned name). A name of its own (name)
	   refused as `duplicate name` by a router after the client was
	   online once is not given up on: the router it lost may hold the
	   name until the cluster's dead time, so it is reported (ERROR) and
	   tried again with the backoff. With tls, each router's
	   certificate must carry its host (or tls_server_name, for all).
	   sb_client_router() says which router is in use. NULL (default):
	   host and port. Appended last: the struct grows at its end. */
	const char *routers;
};

/** Fill @p cfg with the defaults above, and its size. */
#define sb_client_config_init(cfg) sb_client_config_init_size((cfg), sizeof *(cfg))

/** What sb_client_config_init() calls: fill the first @p size bytes of
 * @p cfg with the defaults (size included). */
void sb_client_config_init_size(struct sb_client_config *cfg, size_t size);

/**
 * Create a client and start connecting (without blocking). The client goes
 * ONLINE during a later sb_client_process(), after the router's WELCOME and
 * the ACK of every handler registered by then. A router that cannot be
 * reached is retried with backoff; that is not an error here.
 * @param cfg  settings; NULL for the defaults
 * @param err  optional; set on failure to SB_EINVAL (a bad setting: a size
 *             too small to hold host and port, an empty host, port 0, a
 *             role not in enum sb_role, an invalid name, an empty secret,
 *             a token that is empty, over 8,192 bytes or not base64url
 *             parts joined by dots, reconnect_min_ms 0 or above
 *             reconnect_max_ms, out_max 0, a tls_* setting without tls, a
 *             TLS file that does not load), SB_ENOMEM or SB_ESYS; and
 *             cfg->why, if given, says which setting and why
 * @return the client, or NULL
 */
struct sb_client *sb_client_new(const struct sb_client_config *cfg, int *err);

/**
 * Close the connection and free the client. Open requests end first, each
 * with one SB_EOFFLINE callback; calls still held by handlers get their
 * on_cancel callback and are freed. Output already queued (replies, say) is
 * written if the socket takes it without blocking. Not from a callback.
 */
void sb_client_free(struct sb_client *c);

/**
 * Leave gracefully: send GOODBYE (docs/protocol.md) and process until the
 * router has let this client finish and closed the connection. The router
 * routes nothing new to it from then on; its open requests and the calls
 * its handlers hold run on (callbacks run meanwhile, so a handler waiting
 * on a request of its own can still answer), and requests may still be
 * made. No reconnect follows: free the client afterwards (OFFLINE is
 * reported with err 0 when the router closes as planned).
 * @param reason       for the router's log; NULL for none
 * @param deadline_ms  how long the router waits for what is open (it cuts
 *                     this to its own cap, 1 h by default); 2 s after it,
 *                     the client closes by itself. 0: close at once
 * @return 0 once the router closed; SB_ETIMEOUT if it had not by then;
 *         SB_EINVAL (from a callback, or a reason over 1,024 bytes);
 *         another code if the connection ended otherwise (SB_ESYS, ...)
 */
int sb_client_leave(struct sb_client *c, const char *reason, uint32_t deadline_ms);

/** The router of the current connection or attempt ("HOST:PORT" as given
 *  in routers, or host and port; while waiting to reconnect, the last
 *  one tried). Valid while the client lives. */
const char *sb_client_router(const struct sb_client *c);

/** The socket to poll, or -1 while there is none (waiting to reconnect). */
int sb_client_fd(const struct sb_client *c);

/** The poll events to wait for: POLLIN, plus POLLOUT while output is
 * pending or a connection is being made; 0 when there is no socket. */
short sb_client_events(const struct sb_client *c);

/**
 * Milliseconds until sb_client_process() has timed work to do even without
 * I/O (a reconnect, a request's local deadline): 0 if due now, -1 if none.
 * Use it as (an upper bound of) the poll timeout.
 */
int sb_client_timeout(const struct sb_client *c);

/**
 * Do what can be done now: wait up to @p timeout_ms for the socket (0: do
 * not wait, negative: until something happens), read and dispatch every
 * whole frame (callbacks run here), write queued output, run due timers
 * (reconnects, local request deadlines). A lost connection is not an error:
 * it is reported through on_state and reconnected.
 * @return 0; SB_EINVAL from a callback; SB_ESYS if poll() failed; or, once
 *         the client has given up for good, the reason (SB_EDUPNAME,
 *         SB_EUNAUTHORIZED) on this and every later call
 */
int sb_client_process(struct sb_client *c, int timeout_ms);

/**
 * Process until sb_client_stop() is called (possibly before this call, in
 * which case it returns at once) or the client gives up.
 * @return 0 after a stop, or as sb_client_process()
 */
int sb_client_run(struct sb_client *c);

/** Make sb_client_run() return. Safe from any thread and from a signal
 * handler: the only function that is. */
void sb_client_stop(struct sb_client *c);

/** 1 when requests can be made: connected, handlers registered, and the
 * router has not said GOODBYE. 0 otherwise. */
int sb_client_online(const struct sb_client *c);

/**
 * Process the client until it is online (as sb_client_online()), for at
 * most @p timeout_ms. Other callbacks run meanwhile. Not from a callback.
 * @return 0 once online; SB_EOFFLINE if it was not online in time; SB_EINVAL
 *         from a callback; or the reason the client gave up for good
 *         (SB_EDUPNAME, SB_EUNAUTHORIZED)
 */
int sb_client_wait_online(struct sb_client *c, uint32_t timeout_ms);

/** The peer name in force (given by WELCOME), else the configured name,
 * else NULL. Valid until the next process call. */
const char *sb_client_name(const struct sb_client *c);

/** Why the last connection attempt failed or was refused, in words: the
 * socket's reason ("connection refused", "no such host: Name or service
 * not known", "timed out: no answer within 5000 ms (waiting for the
 * router's WELCOME)"), the router closing it during the handshake, bytes
 * that were not Switchboard frames (a TLS port reached in clear, say),
 * OpenSSL's reason ("TLS: wrong version number"), the text of the
 * router's fatal ERROR ("certificate name \"x\" is not allowed"), or a
 * refused certificate ("router certificate \"r\" refused: it has
 * expired"). docs/client.md lists them. Set at each failed attempt, kept
 * once online (the last failure stays the last); "" if nothing failed
 * yet. Valid until the next process call. */
const char *sb_client_last_error(const struct sb_client *c);

/** How many sends the offline queue holds (cfg.offline_queue_bytes):
 * made while offline, not yet written. 0 when the queue is off. */
size_t sb_client_offline_queued(const struct sb_client *c);

/** The router's number for this connection (what handlers see as "from"),
 * 0 when not connected. */
uint32_t sb_client_peer_id(const struct sb_client *c);

/* ---- handlers ------------------------------------------------------------ */

/**
 * Handle messages for @p name with @p fn (switchboard/call.h: it gets a
 * struct sb_call, and sb_call_client() is this client). A service's
 * handler takes the name's public route (load balancing, broadcasts); a
 * client's is reached only by messages sent `to` this peer by name
 * (opts->to), never by the name alone (docs/protocol.md, REGISTER). The
 * registration is remembered: it is sent now if connected, and again after
 * every reconnect, before RECONNECTED. If the router refuses it, on_state
 * reports SB_CLIENT_ERROR with its code and the handler is dropped.
 * @param name  message name; NULL for the catch-all (messages nobody else takes)
 * @param opts  NULL for none; flags SB_HANDLER_INTERNAL; an argument schema:
 *              the router checks every message for this handler against it
 *              and answers a request that breaks it with SB_EINVAL and the
 *              reason, so the handler only sees arguments that fit
 *              (docs/protocol.md, "Argument schemas"; docs/client.md). The
 *              schema is copied and sent with the registration, again after
 *              every reconnect
 * @return 0; SB_EINVAL for a bad name (too long, bad characters, starting
 *         with '$'), unknown flags, an opts size too small, a schema the
 *         router would refuse (sb_schema_validate() says why), a NULL @p fn,
 *         or a name already
 *         registered on this client; SB_ENOMEM. A schema larger than a
 *         router's frame limit is reported when connecting to it, as
 *         SB_CLIENT_ERROR with SB_ETOOLARGE, and the handler dropped; while
 *         connected, this call returns SB_ETOOLARGE for it.
 */
int sb_client_register(struct sb_client *c, const char *name, const struct sb_handler_opts *opts,
		       sb_handler_fn fn, void *ud);

/**
 * Stop handling @p name (NULL: the catch-all), here and at the router.
 * Calls already delivered stay valid.
 * @return 0, or SB_EINVAL if it was not registered
 */
int sb_client_unregister(struct sb_client *c, const char *name);

/*
 * In a client program, a call's on_cancel runs when the requester cancels,
 * the request times out at the router, or the connection is lost; a reply
 * to a lost call returns SB_EOFFLINE. sb_reply_more() returns
 * SB_EOVERLOADED when out_max bytes are already queued (nothing sent: try
 * again after a process turn, or when on_writable runs; this is the flow
 * control). Every call of this client is answered from the thread that
 * processes the client.
 */

/* ---- requesting ---------------------------------------------------------- */

/*
 * A reply callback (sb_reply_fn, switchboard/call.h) runs once per reply.
 * For every request that sb_request() accepted (returned 0) it runs exactly
 * once with a terminal event, more == SB_MORE_NONE: a final reply (err 0)
 * or an error (err < 0), and never after that.
 *   err      0, or SB_ETIMEOUT, SB_ENOHANDLER, SB_EPEERGONE, SB_ECANCELLED,
 *            SB_EOFFLINE, SB_EDRAINING, SB_EBADFRAME (the reply's payload
 *            was malformed), or any code a handler chose
 *   outcome  the reply's outcome; for an error, its text (never NULL)
 *   payload  the reply's payload (one MessagePack value), or the error's
 *            details, or NULL with len 0
 *   more     SB_MORE_NONE for the terminal event, else SB_MORE_PROGRESS or
 *            SB_MORE_CHUNK, or for a broadcast SB_MORE_RESULT
 * The struct is the library's: valid during the callback only.
 */

/**
 * Fire-and-forget: one handler of @p name gets it; nothing comes back.
 * With opts->to, the peer of that name gets it if it registered @p name
 * or a catch-all (a client too, no load balancing); a peer that is not
 * connected or has no such handler is not reported (request it to know;
 * the router counts it). With SB_OPT_ALL every handler of @p name
 * gets it (internal ones only for a service); nobody handling it is not
 * reported.
 * @param payload  one MessagePack value, or NULL (len 0) for nil; copied
 * @param opts     NULL for the defaults; timeout_ms is not used
 * @return 0 (queued); SB_EOFFLINE when not online and the offline queue
 *         is off (or the client gave up or is leaving); SB_EINVAL (bad
 *         name, peer name or payload, `to` with SB_OPT_ALL, an opts size
 *         too small); SB_ETOOLARGE (over the router's frame limit);
 *         SB_EOVERLOADED (out_max queued, or offline: offline_queue_bytes
 *         held); SB_ENOMEM
 */
int sb_send(struct sb_client *c, const char *name, const void *payload, size_t len,
	    const struct sb_opts *opts);

/**
 * Ask @p name; @p fn gets the replies (see above). Besides the router's
 * timeout the request has a local deadline, its timeout plus one second, so
 * it ends with SB_ETIMEOUT even if the router never answers.
 * @param opts  NULL for the defaults. timeout_ms 0: the configured
 *              default_timeout_ms, and if that is 0 the router's default
 *              (assumed 30 s for the local deadline). With `to`, the peer of
 *              that name answers, whatever it registered; besides the usual
 *              errors the callback may then get SB_EUNKNOWNPEER (no peer of
 *              that name ever connected), SB_ENOTCONNECTED (it did, and is
 *              gone) or SB_EFORBIDDEN (a client asking a peer that handles
 *              @p name for services only). With SB_OPT_ALL every handler
 *              of @p name is asked and @p fn runs:
 *   - once per handler's final answer, with more == SB_MORE_RESULT: err 0
 *     and its reply, or its error (what the handler sent, SB_ETIMEOUT if it
 *     missed the deadline, SB_EPEERGONE if it disconnected first);
 *   - once per stream chunk a handler sends, with more == SB_MORE_CHUNK
 *     (progress updates are not passed on: docs/protocol.md);
 *   - in both, r->peer names the handler;
 *   - exactly once with SB_MORE_NONE, last: the aggregate (err 0, outcome
 *     "$sb.all", payload the counts, read with sb_all_counts()), or an
 *     error for the whole request: SB_ENOPEERS (nobody handles the name),
 *     SB_ECANCELLED, SB_EOFFLINE, SB_EDRAINING, SB_ETIMEOUT (the local
 *     deadline, if the router never answered).
 *   Every handler shares the timeout: one that does not answer in time is
 *   reported then, without holding the others back.
 * @param req   optional; set to the request's id (for sb_cancel)
 * @return 0 (fn will be called); SB_EOFFLINE when not online; SB_EDRAINING
 *         after the router's GOODBYE; otherwise as sb_send() (fn NULL is
 *         SB_EINVAL). On failure fn is never called.
 */
int sb_request(struct sb_client *c, const char *name, const void *payload, size_t len,
	       const struct sb_opts *opts, sb_reply_fn fn, void *ud, uint64_t *req);

/* The aggregate that ends a broadcast request (SB_OPT_ALL). */
struct sb_all_counts {
	uint32_t peers;    /* handlers asked: the sum of the four below */
	uint32_t ok;       /* final replies */
	uint32_t errors;   /* errors the handlers sent */
	uint32_t timeouts; /* handlers that missed the deadline */
	uint32_t gone;     /* handlers that disconnected first */
};

/**
 * Read the payload of a broadcast request's final reply ("$sb.all").
 * @return 0, or SB_EINVAL if it is not such a payload
 */
int sb_all_counts(const void *payload, size_t len, struct sb_all_counts *out);

/**
 * Cancel an open request. Its callback then runs exactly once more, with
 * SB_ECANCELLED (progress and chunks still in flight are dropped, and even
 * a final reply that crossed the cancel is reported as SB_ECANCELLED).
 * @return 0, or SB_EINVAL if @p req is not open (it has already ended, or
 *         is already being cancelled)
 */
int sb_cancel(struct sb_client *c, uint64_t req);

/**
 * Request and wait for the final reply, processing the client meanwhile
 * (other callbacks run). If the client is not online yet, first waits for
 * it, within the same timeout. Progress, chunks and broadcast results are
 * skipped.
 * @param opts         as sb_request(); timeout_ms is for the whole call
 * @param outcome      optional buffer for the outcome (or error text),
 *                     NUL-terminated, truncated to @p outcome_cap
 * @param reply        optional; set to a malloc'd copy of the final reply's
 *                     payload (the caller frees it), NULL on error
 * @param reply_len    optional; its length
 * @return 0 on a final reply, else the request's error (as sb_reply_fn),
 *         SB_EOFFLINE if the client did not come online in time, SB_EINVAL
 *         from a callback, SB_ENOMEM
 */
int sb_request_wait(struct sb_client *c, const char *name, const void *payload, size_t len,
		    const struct sb_opts *opts, char *outcome, size_t outcome_cap, void **reply,
		    size_t *reply_len);

/* ---- presence -------------------------------------------------------------- */

/* A peer connected, started draining, or left. */
struct sb_presence {
	/* SB_PEER_CONNECTED, SB_PEER_DRAINING or SB_PEER_DISCONNECTED */
	enum sb_presence_event event;
	const char *peer;    /* its name */
	uint32_t peer_id;    /* its number: what sb_call_from() shows for it */
	const char *role;    /* "service" or "client" */
	const char *subject; /* its certificate subject (TLS), or NULL */
};

/* Called for each presence event; the strings are valid during the call. */
typedef void (*sb_presence_fn)(struct sb_client *c, const struct sb_presence *p, void *ud);

/**
 * Subscribe to presence events: @p fn hears about every peer that
 * connects, drains (said GOODBYE) or disconnects from now on, never about
 * this client itself. The subscription is remembered and renewed after
 * every reconnect, before ONLINE / RECONNECTED is reported (events missed
 * while offline are not replayed: "$sb.peers" lists who is there).
 * @param fn  NULL to unsubscribe
 * @return 0, or SB_ENOMEM
 */
int sb_client_presence(struct sb_client *c, sb_presence_fn fn, void *ud);

#ifdef __cplusplus
}
#endif
#endif
