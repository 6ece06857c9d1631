/* The WebSocket (RFC 6455) server side of the router's edge: the upgrade's
 * answer, an incremental frame parser that unmasks in place and checks
 * every rule a client can break, messages reassembled from fragments, and
 * frame headers for our own frames (docs/gateway.md, "WebSocket"). */
#ifndef SB_ROUTER_WS_H
#define SB_ROUTER_WS_H

#include <stddef.h>
#include <stdint.h>

#include "router/http.h"

#define SB__WS_PROTOCOL    "switchboard.v1"  /* the subprotocol we speak */
#define SB__WS_MESSAGE_MAX ((1u << 20) + 4u) /* default: one 1 MiB frame and its prefix */
#define SB__WS_CONTROL_MAX 125u              /* payload of a ping, pong or close */
#define SB__WS_HEADER_MAX  10u               /* a server frame's header (never masked) */
#define SB__WS_CLOSE_FRAME (2u + 2u + 123u)  /* a whole close frame: header, code, reason */

/* Close codes (RFC 6455 7.4.1) the edge sends. */
enum {
	SB__WS_NORMAL = 1000,       /* answer to the client's close; or done */
	SB__WS_GOING_AWAY = 1001,   /* the router drains */
	SB__WS_PROTOCOL_ERR = 1002, /* a frame broke RFC 6455 */
	SB__WS_UNSUPPORTED = 1003,  /* a text message where binary is spoken */
	SB__WS_NO_STATUS = 1005,    /* (received only) a close without a code */
	SB__WS_BAD_DATA = 1007,     /* bad UTF-8, or a message not made of whole frames */
	SB__WS_POLICY = 1008,       /* refused by a rule (a token expired, ...) */
	SB__WS_TOO_BIG = 1009,      /* a message over the bound */
	SB__WS_INTERNAL = 1011,     /* the router failed */
};

enum sb__ws_opcode {
	SB__WS_CONT = 0x0,
	SB__WS_TEXT = 0x1,
	SB__WS_BINARY = 0x2,
	SB__WS_CLOSE = 0x8,
	SB__WS_PING = 0x9,
	SB__WS_PONG = 0xa,
};

/* What sb__ws_parse() and sb__ws_next() found. */
enum sb__ws_kind {
	SB__WS_MORE = 0,  /* every byte taken; call again with more */
	SB__WS_DATA,      /* a piece of a data message, unmasked in place (parse only) */
	SB__WS_MESSAGE,   /* a whole data message (next only) */
	SB__WS_GOT_PING,  /* a ping: answer a pong with the same payload */
	SB__WS_GOT_PONG,  /* a pong: nothing to do */
	SB__WS_GOT_CLOSE, /* the client closes: answer a close with its code, then close */
	SB__WS_ERROR,     /* a rule broken: send sb__ws_close_frame() of
			     sb__ws_close_code() and sb__ws_why(), then close */
};

struct sb__ws_event {
	enum sb__ws_kind kind;
	uint8_t *data;      /* DATA: the piece, in the input; MESSAGE: the message, in
			       the input or in the reassembly buffer; control: payload */
	size_t len;         /* bytes at data */
	unsigned first : 1; /* DATA: the message's first piece */
	unsigned fin : 1;   /* DATA: its last piece */
	unsigned text : 1;  /* DATA, MESSAGE: a text message */
	uint16_t code;      /* GOT_CLOSE: the client's code (1005: none sent) */
};

/* One connection's framer. Sized here so a connection can embed it; only
 * a message that arrives in several pieces allocates (sb__ws_next()). */
struct sb__ws {
	uint64_t max_message;            /* bytes of a data message; more: close 1009 */
	int accept_text;                 /* 0: a text message is closed with 1003 */
	uint8_t state;                   /* where in a frame we are (ws.c) */
	uint8_t hdr[14];                 /* the header being read */
	uint8_t hlen;                    /* bytes of it in hdr */
	uint8_t opcode;                  /* the current frame's */
	uint8_t fin;                     /* ... */
	uint8_t mask[4];                 /* ... */
	uint64_t left;                   /* its payload bytes still to come */
	uint64_t pos;                    /* its payload bytes already read (mask phase) */
	uint8_t msg;                     /* 0, or the opcode of the data message in progress */
	uint8_t msg_first;               /* its next piece is its first */
	uint64_t msg_len;                /* its bytes so far */
	uint8_t utf8[3];                 /* a text message's UTF-8 state: bytes needed, range */
	uint8_t ctl[SB__WS_CONTROL_MAX]; /* a control frame's payload */
	uint8_t ctl_len;                 /* ... bytes of it so far */
	uint8_t *buf;                    /* sb__ws_next(): a message's pieces joined */
	size_t buf_len, buf_cap;         /* ... */
	uint16_t close_code;             /* after SB__WS_ERROR */
	char why[96];                    /* ... */
};

/**
 * Set up @p ws: @p max_message 0 means SB__WS_MESSAGE_MAX. Allocates
 * nothing.
 */
void sb__ws_init(struct sb__ws *ws, uint64_t max_message, int accept_text);
void sb__ws_free(struct sb__ws *ws);

/**
 * Take bytes of the connection, unmasking payloads in place in @p p.
 * @param used  set to the bytes taken; the rest is for the next call
 * @return an event in @p ev; after SB__WS_ERROR every call returns it
 *         again, and after SB__WS_GOT_CLOSE every byte is taken and dropped
 */
enum sb__ws_kind sb__ws_parse(struct sb__ws *ws, uint8_t *p, size_t len, size_t *used,
			      struct sb__ws_event *ev);

/**
 * As sb__ws_parse(), but data comes as whole messages: by reference into
 * @p p when a message arrives unfragmented in one call (no copy), else
 * joined in a buffer of the framer's (valid until the next call).
 */
enum sb__ws_kind sb__ws_next(struct sb__ws *ws, uint8_t *p, size_t len, size_t *used,
			     struct sb__ws_event *ev);

/** After SB__WS_ERROR: the close code to send, and why. */
uint16_t sb__ws_close_code(const struct sb__ws *ws);
const char *sb__ws_why(const struct sb__ws *ws);

/**
 * Check that a binary message holds whole Switchboard frames only: each a
 * 4-byte big-endian length (SB_BODY_MIN to @p max_body) and that many
 * bytes, the last ending with the message.
 * @return the number of frames (at least 1), or SB_EBADFRAME (close 1007)
 */
long sb__ws_whole_frames(const uint8_t *msg, size_t len, uint32_t max_body);

/**
 * The header of a server frame (never masked) carrying @p len payload
 * bytes: the payload can then go by reference, from our buffers.
 * @return the header's length (2, 4 or 10)
 */
size_t sb__ws_header(uint8_t out[SB__WS_HEADER_MAX], enum sb__ws_opcode op, int fin, uint64_t len);

/** A whole close frame: @p code and @p reason cut to 123 bytes on a UTF-8
 *  character's edge. @return its length */
size_t sb__ws_close_frame(uint8_t out[SB__WS_CLOSE_FRAME], uint16_t code, const char *reason);

/** Sec-WebSocket-Accept for @p key: base64(SHA-1(key GUID)), 28
 *  characters and a NUL. @return 0, or SB_EINTERNAL */
int sb__ws_accept_key(const char *key, size_t len, char out[29]);

/**
 * Answer an upgrade request: "101 Switching Protocols" with
 * Sec-WebSocket-Accept, and Sec-WebSocket-Protocol: switchboard.v1 when
 * the client offered it, written into @p o.
 * @return 101 when written; else the status to refuse with, and why:
 *         400 (not a GET over HTTP/1.1, no upgrade, a bad key, or
 *         protocols offered without ours), 426 (a version other than 13:
 *         answer "Sec-WebSocket-Version: 13")
 */
int sb__ws_handshake(const struct sb__http_req *r, struct sb__http_out *o, char *why, size_t cap);

#endif
