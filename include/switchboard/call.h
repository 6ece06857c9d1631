/* What requesters and handlers see, the same in the client library and in
 * a program that embeds the router: the options of a send or request, the
 * one struct a reply callback gets, and the call a handler answers. */
#ifndef SWITCHBOARD_CALL_H
#define SWITCHBOARD_CALL_H

#include <stddef.h>
#include <stdint.h>

#include <switchboard/proto.h> /* struct sb_header */

#ifdef __cplusplus
extern "C" {
#endif

/* What a reply is: the one vocabulary of replies that keep a request open,
 * for reply callbacks and for sb_reply_more(). */
enum sb_more {
	SB_MORE_NONE = 0, /* the terminal event: a final reply or an error */
	SB_MORE_PROGRESS, /* a progress update; more replies follow */
	SB_MORE_CHUNK,    /* one chunk of a stream, in order; more replies follow */
	SB_MORE_RESULT,   /* a broadcast request: one handler's final answer; more follow */
};

/*
 * One reply, as a reply callback gets it. The library owns it: every
 * pointer is valid during the callback only (copy what you keep). Fields
 * may be appended in later versions, never reordered.
 */
struct sb_reply {
	uint64_t req;        /* the request's id, as the request call returned it */
	int err;             /* 0, or a negative code (the request's or a handler's) */
	enum sb_more more;   /* SB_MORE_NONE: the terminal event, exactly once */
	const char *outcome; /* the reply's outcome, or the error's text; never NULL,
				NUL-terminated */
	size_t outcome_len;
	const void *payload; /* the reply's payload (one MessagePack value) or the
				error's details; NULL with len 0 for none */
	size_t len;
	const char *peer;     /* SB_MORE_RESULT and a broadcast's SB_MORE_CHUNK: the
				 handler that sent it; NULL otherwise */
	const char *app_code; /* err SB_EAPP: the handler's application code
				 ("MYERRCODE", 1-64 bytes, NUL-terminated; outcome is
				 its message, payload its details); NULL otherwise */
};

/* Called once per reply to a request; see struct sb_reply. */
typedef void (*sb_reply_fn)(const struct sb_reply *r, void *ud);

struct sb_call;

/* struct sb_opts flags. */
#define SB_OPT_ALL 0x01u /* every handler of the name (a broadcast), not one */
/* Every connected peer `to` selects (a broadcast to peers): `to` is
 * "@client", "@service", or a peer name pattern (exact, or a prefix ending
 * in `*`: "agent-*"; "*" is every peer). Each peer's handler for the name,
 * or its catch-all, is asked; one with neither is a result of its own
 * (SB_ENOHANDLER). Not the sender itself. */
#define SB_OPT_PEERS 0x02u

/*
 * How to send or request: NULL means the defaults. Start from SB_OPTS_INIT,
 * which sets size: the library reads only the first `size` bytes, so a
 * program built against an older header keeps working when fields are
 * appended.
 */
struct sb_opts {
	size_t size;                     /* sizeof (struct sb_opts), as SB_OPTS_INIT sets it */
	uint32_t timeout_ms;             /* requests: 0 = the default */
	const char *to;                  /* the peer named so, by its handler of the name or its
					    catch-all (no load balancing, a client too); NULL:
					    a handler of the name */
	unsigned flags;                  /* 0, SB_OPT_ALL (not with `to`), or SB_OPT_PEERS (`to`
					    is then the selector) */
	const struct sb_header *headers; /* nheaders headers the handler reads
					    (docs/protocol.md, "Headers"): at
					    most 16, keys 1-64 bytes, values
					    0-256, no key twice, 1 KiB encoded;
					    copied; NULL: none */
	size_t nheaders;
	const struct sb_call *parent; /* the call this one is made for: its
					 `traceparent` goes on, unless `headers`
					 has one. NULL: the call whose handler
					 callback is running on this client, if
					 any (docs/client.md, "Headers") */
};

/* clang-format off */
#define SB_OPTS_INIT {sizeof(struct sb_opts), 0, NULL, 0, NULL, 0, NULL}
/* clang-format on */

/* ---- handlers ------------------------------------------------------------ */

/*
 * A call is one delivered message, the same whether its handler runs in a
 * client program (sb_client_register) or in-process on a router's shard
 * thread (sb_router_handle). A call for a SEND is valid only during the
 * handler callback. A call for a REQUEST stays valid after the callback
 * returns, so it can be answered later, until:
 *   - its final sb_reply() or sb_reply_error() (whatever they return), or
 *   - if it has an on_cancel callback, the return of that callback, which
 *     runs once when the requester cancels, the request times out, or the
 *     requester (or, in a client program, the connection) is lost.
 * A cancelled call without on_cancel stays valid until its final reply,
 * which then sends nothing and returns SB_ECANCELLED (or SB_EOFFLINE).
 * A request nobody answers ends for its requester with its timeout.
 * The name stays readable while the call is valid; the payload only during
 * the handler callback (copy it to keep it).
 */
struct sb_call;
struct sb_client;

/* A handler gets one call per SEND or REQUEST delivered to it. */
typedef void (*sb_handler_fn)(struct sb_call *call, void *ud);

/* struct sb_handler_opts flags. */
#define SB_HANDLER_INTERNAL 0x01u /* callable by services only, not by clients */

/*
 * How to handle a name: NULL means none of these. Start from
 * SB_HANDLER_OPTS_INIT, which sets size (read as for struct sb_opts).
 */
struct sb_handler_opts {
	size_t size;        /* sizeof (struct sb_handler_opts) */
	unsigned flags;     /* 0 or SB_HANDLER_INTERNAL */
	const void *schema; /* an argument schema (docs/protocol.md, "Argument
			       schemas"): one MessagePack value, copied; NULL: none */
	size_t schema_len;
};

/* clang-format off */
#define SB_HANDLER_OPTS_INIT {sizeof(struct sb_handler_opts), 0, NULL, 0}
/* clang-format on */

/** The message name ("transfer"). */
const char *sb_call_name(const struct sb_call *call);

/** 1 for a REQUEST (expects a reply), 0 for a SEND. */
int sb_call_is_request(const struct sb_call *call);

/** The sender's peer id, as the router vouches for it; 0 when the sender
 * is the program that embeds the router. */
uint32_t sb_call_from(const struct sb_call *call);

/*
 * Who sent a call, as the router vouches for it (a client's library keeps
 * what the router told it; an in-process handler is told by the router
 * itself). Valid while the call is. NULL when the sender is the program
 * that embeds the router (sb_call_from() 0), which is no peer.
 */

/** The sender's peer name ("billing-1", "P0007"). */
const char *sb_call_peer(const struct sb_call *call);

/** The sender's role: "service" or "client". */
const char *sb_call_role(const struct sb_call *call);

/** The sender's certificate subject when it connected with TLS, else NULL. */
const char *sb_call_subject(const struct sb_call *call);

/**
 * The claims of the bearer token the sender authenticated with: the whole
 * claims object as one MessagePack map (every claim, `sub` and `exp` among
 * them; at most 8,192 bytes), its length in *len. The router took them
 * from a token it verified: no peer can set them. Valid while the call is
 * (copy what you keep).
 * @return the map, or NULL (and *len 0) if the sender presented no token
 */
const void *sb_call_claims(const struct sb_call *call, size_t *len);

/** The payload (one MessagePack value, checked well-formed) and its length;
 * NULL and 0 after the handler callback has returned. */
const void *sb_call_payload(const struct sb_call *call, size_t *len);

/**
 * The value of the header @p key on this call (docs/protocol.md,
 * "Headers"), NUL-terminated; NULL if the sender set no such header.
 * Valid as long as the call: a SEND's until its callback returns, a
 * REQUEST's until its final reply.
 */
const char *sb_call_header(const struct sb_call *call, const char *key);

/**
 * All the call's headers, in the order the sender gave them: *out is set
 * to an array of the returned count (NULL for none), valid as long as
 * the call, as sb_call_header().
 */
size_t sb_call_headers(const struct sb_call *call, const struct sb_header **out);

/** The client the call came through, for requests of its own (chained
 * calls); NULL for an in-process call. */
struct sb_client *sb_call_client(const struct sb_call *call);

/**
 * Final reply to a request; the call is finished by it. In a client program
 * from the thread that processes the client; in-process from any thread.
 * @param outcome  what happened ("transferred", "insufficient funds"): 1-255
 *                 bytes, printable, spaces allowed
 * @param payload  one MessagePack value, or NULL (len 0) for nil; copied
 * @return 0; SB_ECANCELLED / SB_EOFFLINE if the call was cancelled or its
 *         connection lost (nothing sent, the call is finished all the same);
 *         SB_EDRAINING (in-process, the router stopping: the same);
 *         SB_EINVAL (a SEND's call, already finished, bad outcome, payload
 *         not one MessagePack value), SB_ETOOLARGE or SB_ENOMEM, after which
 *         the call stays open and may be answered again
 */
int sb_reply(struct sb_call *call, const char *outcome, const void *payload, size_t len);

/**
 * A reply that keeps the request open: @p more is SB_MORE_PROGRESS (a
 * progress update) or SB_MORE_CHUNK (a stream chunk; chunks arrive in
 * order).
 * @return 0; SB_EINVAL for any other @p more (nothing sent); SB_EOVERLOADED
 *         (client: out_max queued, see client.h); SB_ECANCELLED /
 *         SB_EOFFLINE once the call is cancelled or lost (stop producing);
 *         otherwise as sb_reply(), the call staying open
 */
int sb_reply_more(struct sb_call *call, enum sb_more more, const char *outcome, const void *payload,
		  size_t len);

/**
 * Final error reply; the requester's callback gets @p err, @p text as its
 * outcome and @p details as its payload.
 * @param err      a wire code: SB_EINVAL, SB_EFORBIDDEN, ... (-1 to -63), not
 *                 SB_EAPP (an application error has a code of its own:
 *                 sb_reply_app_error())
 * @param text     what went wrong, for people (0-1024 bytes UTF-8); NULL for ""
 * @param details  one MessagePack value for programs (which field, which
 *                 limit), or NULL (len 0) for none; copied
 * @return as sb_reply()
 */
int sb_reply_error(struct sb_call *call, int err, const char *text, const void *details,
		   size_t details_len);

/**
 * Final error reply with an application's own code, which a requester can
 * switch on: it gets err SB_EAPP, @p code in struct sb_reply.app_code,
 * @p text as its outcome and @p details as its payload. The code travels
 * apart from the router's numeric codes (docs/protocol.md, "Application
 * errors"), so no application code can pass for one of the router's.
 * @param code     the application's code ("MYERRCODE", "card_declined"): 1-64
 *                 bytes, printable ASCII without space, or UTF-8
 * @param text     what went wrong, for people (0-1024 bytes UTF-8); NULL for ""
 * @param details  one MessagePack value for programs, or NULL (len 0); copied
 * @return as sb_reply(); SB_EINVAL also for a missing or bad @p code
 */
int sb_reply_app_error(struct sb_call *call, const char *code, const char *text,
		       const void *details, size_t details_len);

/** 1 once the call has been cancelled or its requester lost. */
int sb_call_cancelled(const struct sb_call *call);

/**
 * Have @p fn called once when the call is cancelled (see above: the call is
 * freed when @p fn returns, so drop every pointer to it there). If the call
 * is already cancelled, @p fn runs now, inside this function. In-process,
 * set it from the handler callback: @p fn runs on the shard thread, and a
 * program answering from other threads must not answer once it has run
 * (take a lock of your own in both).
 */
void sb_call_on_cancel(struct sb_call *call, void (*fn)(struct sb_call *call, void *ud), void *ud);

#ifdef __cplusplus
}
#endif
#endif
