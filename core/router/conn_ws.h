/* The edge's transport on a connection: an HTTP/1.1 head first (the
 * WebSocket upgrade, or a refusal with a JSON body), then WebSocket
 * messages that carry whole Switchboard frames both ways. */
#ifndef SB_ROUTER_CONN_WS_H
#define SB_ROUTER_CONN_WS_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/json.h"
#include "common/timer.h"
#include <switchboard/proto.h>

#include "router/conn-t.h"
#include "router/http.h"
#include "router/jwt.h"
#include "router/pattern.h"
#include "router/shard-t.h"
#include "router/ws.h"

#define SB__WS_PATH "/v1/ws" /* the WebSocket endpoint */

/* Where an HTTP call is (edge_call.c). */
enum {
	SB__CALL_NONE = 0, /* no call: the next head may come */
	SB__CALL_BODY,     /* its head is in, its body being read */
	SB__CALL_OUT,      /* routed: waiting for the frame that answers it */
	SB__CALL_REFUSED,  /* answered before it was routed: its body is skipped */
};

/* One edge connection's state beside its struct sb__conn. The output queue
 * holds raw HTTP answers (raw_left bytes at its head) and Switchboard
 * frames, which go out as binary messages of whole frames. */
struct sb__edge {
	uint8_t ws;          /* upgraded: WebSocket from the next byte on */
	uint8_t close_sent;  /* our close frame is in ctl: nothing goes out after it */
	uint8_t reading;     /* input is still read (not after a close or an error) */
	uint8_t admin;       /* on the admin listener: its endpoints only (admin_http.c) */
	uint16_t close_code; /* a close to send once the queue is out; 0: none */
	char close_why[124]; /* ...its reason */
	size_t raw_left;     /* queued bytes that go out as they are (HTTP) */
	uint64_t msg_left;   /* payload bytes of the message being sent */
	uint8_t hdr[SB__WS_HEADER_MAX];       /* its header */
	uint8_t hdr_len, hdr_off;             /* ...bytes, and bytes sent */
	uint8_t ctl[SB__WS_CLOSE_FRAME];      /* a control frame between messages (pong, close) */
	uint8_t ctl_len, ctl_off;             /* ...bytes, and bytes sent */
	uint8_t pong[2 + SB__WS_CONTROL_MAX]; /* a pong owed while ctl is busy (the latest) */
	uint8_t pong_len;                     /* ...its bytes; 0: none */
	struct sb__http http;                 /* the head's parser, until the upgrade */
	struct sb__ws ws_in;                  /* the framer, after it */
	/* an HTTP call (edge_call.c) */
	uint8_t call;                    /* SB__CALL_* */
	uint8_t call_send;               /* POST /v1/send: 202 once routed */
	uint8_t call_keep;               /* its answer keeps the connection open */
	uint8_t partial;                 /* bytes of a next request came since the answer */
	uint8_t resume;                  /* held bytes are to be read again (at the flush) */
	uint8_t chunks_over;             /* the chunks outgrew their bound */
	uint8_t call_sse;                /* answered as Server-Sent Events */
	uint8_t sse_started;             /* ...whose head went out */
	uint8_t call_name_len;           /* ... */
	char call_name[SB_NAME_MAX + 1]; /* the message it calls */
	uint32_t call_timeout;           /* ms; 0: the router's default */
	uint64_t call_id;                /* our REQUEST's id */
	uint8_t *body;                   /* its body, Content-Length bytes */
	size_t body_len, body_cap;       /* ... */
	uint8_t *held;                   /* bytes of later requests, read while a call is out */
	size_t held_len;                 /* ... (at most SB__HELD_MAX) */
	struct sb__json_buf chunks;      /* the chunks' data, comma-separated JSON */
	uint32_t nchunks;                /* ... how many */
};

/** Raw bytes (an HTTP answer in b, whose reference is taken over) queued
 *  ahead of whatever is queued after them. */
void sb__edge_put_raw(struct sb__shard *sh, struct sb__conn *c, struct sb__buf *b, size_t n);

/** An edge connection gets its state and deadline. @return 0 or SB_ENOMEM */
int sb__conn_ws_start(struct sb__shard *sh, struct sb__conn *c);

/** Frees c's edge state (NULL is fine: not an edge connection). */
void sb__conn_ws_free(struct sb__conn *c);

/** Bytes received on c, b's reference taken over. */
void sb__conn_ws_in(struct sb__shard *sh, struct sb__conn *c, struct sb__buf *b, uint32_t len);

/** c's output: raw answers, control frames, then messages of whole frames. */
void sb__conn_ws_flush(struct sb__shard *sh, struct sb__conn *c);

/** A sendmsg of n bytes of c's output completed. */
void sb__conn_ws_sent(struct sb__shard *sh, struct sb__conn *c, size_t n);

/** c's bearer token ran out: a fatal ERROR, then a close with 1008. */
void sb__conn_ws_token_expired(struct sb__shard *sh, struct sb__conn *c);

/** Refuses c before its upgrade: an HTTP error answer with a JSON body
 *  (@p err's code, @p why), then the close. */
void sb__conn_ws_refuse(struct sb__shard *sh, struct sb__conn *c, int status, int err,
			const char *why);

/**
 * Whether a browser's Origin may upgrade: @p list is comma-separated exact
 * origins and patterns where `*` stands for any run of bytes (a host
 * such as "*.example.com" after the scheme), compared without case; NULL
 * allows every origin. @return 1 or 0
 */
int sb__ws_origin_ok(const char *list, const char *origin, size_t len);

#endif
