/* What the parts of the client library call in each other: the connection,
 * frames in, requests, calls, registrations and senders (client-t.h has
 * their types). Nothing here is exported from the library. */
#ifndef SB_CLIENT_INT_H
#define SB_CLIENT_INT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <switchboard/client.h>
#include <switchboard/proto.h>

#include "client/client-t.h"
#include "proto/mp.h"

static inline struct sb_view sb__client_view(const char *s)
{
	struct sb_view v = {(const uint8_t *)s, s != NULL ? (uint32_t)strlen(s) : 0};
	return v;
}

/* The connection has its WELCOME: frames other than HELLO may go out. */
static inline int sb__client_welcomed(const struct sb_client *c)
{
	return c->st == C_REGISTER || c->st == C_READY || c->st == C_DRAINING;
}

/* ---- the client (client.c) ------------------------------------------------ */

/** Tell the program about a change of state (on_state), if it asked. */
void sb__client_report(struct sb_client *c, enum sb_client_state s, int err);

/** One turn: timers, one wait of at most @p timeout_ms (-1: until something
 *  is due), reads and their callbacks, writes. @return 0 or why it died */
int sb__client_step(struct sb_client *c, int timeout_ms);

/** Turns until the client is online. @return 0, SB_EOFFLINE at @p deadline
 *  (ms), or why it died */
int sb__client_wait_online_until(struct sb_client *c, uint64_t deadline);

/* ---- the connection (conn.c) ---------------------------------------------- */

/** Start connecting now (or schedule the next attempt if that fails). */
void sb__client_connect(struct sb_client *c);

/** The non-blocking connect() has an answer. */
void sb__client_connect_done(struct sb_client *c);

/** Reads what the socket has, a bounded number of times per turn. */
void sb__client_read(struct sb_client *c);

/** Writes what the socket takes without blocking. @return 0 or SB_ESYS (or
 *  a TLS failure) */
int sb__client_write(struct sb_client *c);

/**
 * Encodes @p m at the end of the output, to go with the next write.
 * @param force  ignore cfg.out_max (final replies, CANCEL, PONG, registrations)
 * @return 0, SB_EOVERLOADED, SB_ETOOLARGE, SB_EINVAL or SB_ENOMEM
 */
int sb__client_queue(struct sb_client *c, const struct sb_msg *m, int force);

/** @p p as an outgoing payload: one MessagePack value, or nothing.
 *  @return 0, SB_EINVAL or SB_ETOOLARGE */
int sb__client_payload(const void *p, size_t len, struct sb_view *v);

/** Ends the connection, failing what is open on it; reconnects unless the
 *  client gave up. */
void sb__client_drop(struct sb_client *c, int why);

#define SB__CLIENT_TOKEN_MAX 8192u /* bytes of a bearer token: the router's bound */

/** c's HELLO payload with @p token in it (conn.c). @return 0 or SB_ENOMEM */
int sb__client_hello_token(struct sb_client *c, const char *token);

/** Writes sb_client_last_error() for this connection attempt. */
void sb__client_say(struct sb_client *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/** Ends the connection for good: retrying would be refused the same way. */
void sb__client_give_up(struct sb_client *c, int err);

void sb__client_on_welcome(struct sb_client *c, const struct sb_msg *m);
void sb__client_on_challenge(struct sb_client *c, const struct sb_msg *m);

/* ---- the routers to connect to (routers.c) ------------------------------- */

/** cfg.routers parsed into @p n addresses (*out malloc'd): 0, or
 *  SB_EINVAL with why saying what is wrong ("routers: ..."), SB_ENOMEM. */
int sb__client_routers_parse(const char *list, struct sb__client_addr **out, unsigned *n, char *why,
			     size_t cap);
void sb__client_routers_free(struct sb__client_addr *a, unsigned n);
/** Picks the router for the next connection attempt. */
void sb__client_routers_next(struct sb_client *c);

/* ---- the offline queue (offline.c) ---------------------------------------- */

/** Holds SEND @p m until online. @return 0, SB_EOVERLOADED (full),
 *  SB_ETOOLARGE, SB_EINVAL or SB_ENOMEM */
int sb__client_offline_push(struct sb_client *c, const struct sb_msg *m);

/** Moves what is held to the output, in order (the client is online). */
void sb__client_offline_flush(struct sb_client *c);

/** Drops what is held. */
void sb__client_offline_clear(struct sb_client *c);

/* ---- frames in (frame.c) -------------------------------------------------- */

/** Cuts the plaintext of one read into frames and dispatches them. */
void sb__client_feed(struct sb_client *c, const uint8_t *p, size_t left);

/** @p v as a C string for a callback (valid until the next frame); an empty
 *  error text becomes the code's standard text. */
const char *sb__client_text(struct sb_client *c, struct sb_view v, int err);

/* ---- requests (request.c) ------------------------------------------------- */

/** The open request with id @p id, or NULL. */
struct req *sb__client_req_find(struct sb_client *c, uint64_t id);

/** The request's terminal event: its callback runs once, after it left the
 *  table. */
void sb__client_req_end(struct sb_client *c, struct req *r, int err, const char *text,
			const void *payload, size_t len);
/** The same, for an application error: @p app_code its code, or NULL. */
void sb__client_req_end_app(struct sb_client *c, struct req *r, int err, const char *text,
			    const char *app_code, const void *payload, size_t len);

/** A reply callback that is not the terminal event. */
void sb__client_reply_more(struct sb_client *c, struct req *r, int err, const char *outcome,
			   const struct sb_msg *m, enum sb_more more);

/** Every open request ends with @p err. */
void sb__client_fail_requests(struct sb_client *c, int err, const char *text);

/** Queues a CANCEL for request @p id while the connection can carry it. */
void sb__client_queue_cancel(struct sb_client *c, uint64_t id);

void sb__client_on_reply(struct sb_client *c, const struct sb_msg *m);

/* ---- calls (call.c) ------------------------------------------------------- */

/** A SEND or REQUEST for this client: to its handler, or answered. */
void sb__client_on_message(struct sb_client *c, const struct sb_msg *m);

/** The router cancelled request @p rid. */
void sb__client_on_cancel(struct sb_client *c, uint64_t rid);

/** Every call in progress is cut off from its requester. */
void sb__client_kill_calls(struct sb_client *c, int why);

/** Answers a request no handler can take. */
void sb__client_answer_error(struct sb_client *c, uint64_t rid, int err, const char *text);

/* ---- registrations (register.c) ------------------------------------------- */

/** The handler for @p name: its own, else the catch-all, else NULL. */
struct handler *sb__client_handler_find(struct sb_client *c, struct sb_view name);

void sb__client_handler_remove(struct sb_client *c, unsigned i);

/** Queues @p h's REGISTER and notes the id its ACK will carry. */
int sb__client_send_register(struct sb_client *c, struct handler *h);

/** ONLINE (or RECONNECTED) once no registration waits for its ACK. */
void sb__client_maybe_online(struct sb_client *c);

void sb__client_on_ack(struct sb_client *c, uint64_t id);
void sb__client_on_ctl_error(struct sb_client *c, uint64_t id, int err);

/* ---- senders and presence (ident.c) --------------------------------------- */

/** Drops a reference to a sender. */
void sb__client_ident_put(struct ident *id);

/** Forgets every sender: the next connection introduces them anew. */
void sb__client_idents_forget(struct sb_client *c);

/** Queues SUBSCRIBE presence (@p off: its end). */
int sb__client_send_subscribe(struct sb_client *c, int off);

void sb__client_on_presence(struct sb_client *c, const struct sb_msg *m);

/** The value of string key @p k in the MessagePack map [p, p + len): 1 with
 *  its item in *val, 0 if absent, -1 if the payload is not a map. */
int sb__client_map_get(const uint8_t *p, size_t len, const char *k, struct sb__mp_item *val);

#endif
