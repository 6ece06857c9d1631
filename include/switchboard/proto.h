/* Switchboard wire protocol: frame layout, message kinds, limits, and the codec.
 * docs/protocol.md is the prose version of this header; the two must agree. */
#ifndef SWITCHBOARD_PROTO_H
#define SWITCHBOARD_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include <switchboard/error.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- limits ------------------------------------------------------------ */

#define SB_PROTO_VERSION     1u          /* version this library speaks */
#define SB_PREFIX_LEN        4u          /* big-endian u32 body length */
#define SB_FRAME_MAX_DEFAULT (1u << 20)  /* default body limit: 1 MiB */
#define SB_FRAME_MAX_LIMIT   (64u << 20) /* largest body limit a router accepts */
#define SB_BODY_MIN          13u         /* fixarray, kind, flags, id (9), payload (1) */
#define SB_HEADER_MAX        2048u       /* body bytes before the payload, at most */
#define SB_NAME_MAX          255u        /* message names, outcomes, topics */
#define SB_PEER_MAX          64u         /* peer names */
#define SB_TEXT_MAX          1024u       /* error messages and goodbye reasons */
#define SB_TOKEN_MAX         32u         /* roles and auth mechanism names */
#define SB_NONCE_MIN         16u         /* auth nonces and proofs */
#define SB_NONCE_MAX         64u
#define SB_APPCODE_MAX       64u   /* an application error's code ("MYERRCODE") */
#define SB_HEADERS_COUNT_MAX 16u   /* headers on one SEND or REQUEST */
#define SB_HEADER_KEY_MAX    64u   /* a header's key ("traceparent") */
#define SB_HEADER_VALUE_MAX  256u  /* a header's value */
#define SB_HEADERS_MAX       1024u /* the whole header map, encoded */

/* Byte offset of the 8-byte big-endian id inside a frame (prefix included).
 * Constant because the header is canonical: fixarray, fixint kind, fixint
 * flags, then 0xcf and the id. The router patches ids here without decoding. */
#define SB_ID_OFFSET 8u

/* ---- message kinds ------------------------------------------------------ */

enum sb_kind {
	SB_HELLO = 1,      /* client -> router: version, wanted peer name, role */
	SB_CHALLENGE = 2,  /* router -> client: nonce for shared-secret auth */
	SB_AUTH = 3,       /* client -> router: client nonce and HMAC proof */
	SB_WELCOME = 4,    /* router -> client: handshake done, assigned name */
	SB_REGISTER = 5,   /* register a handler for a name (or the catch-all) */
	SB_UNREGISTER = 6, /* remove a handler */
	SB_ACK = 7,        /* router -> client: REGISTER/UNREGISTER/SUBSCRIBE done */
	SB_SEND = 8,       /* fire-and-forget message */
	SB_REQUEST = 9,    /* request expecting replies */
	SB_REPLY = 10,     /* a reply: progress, chunk, or final */
	SB_ERROR = 11,     /* an error: ends a request, or the connection */
	SB_CANCEL = 12,    /* requester gives up a request or stream */
	SB_SUBSCRIBE = 13, /* subscribe to (or leave) router events: "presence" */
	SB_PRESENCE = 14,  /* router -> client: a peer connected, left, ... */
	SB_PING = 15,      /* liveness probe; answered by PONG with the same id */
	SB_PONG = 16,
	SB_GOODBYE = 17, /* either side: stop sending new work, drain, close */
};
#define SB_KIND_MAX 17

/* ---- flags (bit values are per kind; undefined bits must be zero) ------- */

#define SB_F_INTERNAL  0x01u /* REGISTER: callable by services only */
#define SB_F_CATCHALL  0x02u /* REGISTER/UNREGISTER: the catch-all handler (name nil) */
#define SB_F_BROADCAST 0x01u /* SEND/REQUEST: to every handler of the name */
#define SB_F_HEADERS   0x02u /* SEND/REQUEST: a header map follows the last field */
#define SB_F_MORE      0x01u /* REPLY/ERROR: the request stays open, more follows */
#define SB_F_CHUNK     0x02u /* REPLY: a stream chunk, not a progress update */
#define SB_F_FATAL     0x02u /* ERROR: the sender closes the connection after it */
#define SB_F_APP       0x04u /* ERROR: code 19 (SB_EAPP); app_code follows peer */
#define SB_F_OFF       0x01u /* SUBSCRIBE: unsubscribe */

/* PRESENCE events: what a PRESENCE frame says happened to a peer. The
 * values are the wire's (docs/protocol.md) and start at 1, not 0: a table
 * indexed by them needs a slot 0 that nothing uses; sb_presence_name()
 * gives the word instead. */
enum sb_presence_event {
	SB_PEER_CONNECTED = 1,
	SB_PEER_DISCONNECTED = 2,
	SB_PEER_DRAINING = 3,
	SB_PEER_IDENTITY = 4, /* describes a peer before its first forwarded frame */
};

/* ---- decoded / to-be-encoded message ------------------------------------ */

/* A byte range inside someone else's buffer. ptr == NULL means nil/absent. */
struct sb_view {
	const uint8_t *ptr;
	uint32_t len;
};

/* One message. Decoding fills it with views into the frame (no copy); the
 * frame must outlive it. Encoding reads the fields that belong to m->kind
 * and ignores the rest. Which kind uses which field is in docs/protocol.md
 * and in the field tables of proto/codec.c. */
struct sb_msg {
	uint8_t kind;            /* enum sb_kind */
	uint8_t flags;           /* SB_F_* bits defined for the kind */
	uint64_t id;             /* request/ack/ping id, 0 = none; fixed width on the wire */
	uint32_t version;        /* HELLO, WELCOME: protocol version */
	uint32_t code;           /* ERROR: positive wire code (-enum sb_err) */
	uint32_t event;          /* PRESENCE: enum sb_presence_event */
	uint32_t peer_id;        /* WELCOME, PRESENCE: router-assigned peer number */
	uint32_t max_frame;      /* WELCOME: the router's body limit */
	uint32_t deadline_ms;    /* GOODBYE: how long the sender keeps draining */
	uint32_t from;           /* SEND, REQUEST: sender's peer_id, set by the router */
	uint32_t timeout_ms;     /* REQUEST: 0 = router default */
	uint16_t from_off;       /* decode: frame offset of from's 4 bytes, for patching */
	uint16_t timeout_ms_off; /* decode: frame offset of timeout_ms's 4 bytes */
	struct sb_view name;     /* REGISTER, UNREGISTER, SEND, REQUEST: message name;
				    SUBSCRIBE: topic */
	struct sb_view outcome;  /* REPLY: "transferred", "file.copying", ... */
	struct sb_view peer;     /* HELLO: wanted name; WELCOME: assigned name;
				    REPLY, ERROR: answering peer; PRESENCE: subject */
	struct sb_view to;       /* SEND, REQUEST: target peer, nil = any handler */
	struct sb_view role;     /* HELLO: "service" or "client" */
	struct sb_view text;     /* ERROR: message; GOODBYE: reason */
	struct sb_view mech;     /* CHALLENGE: auth mechanism, "hmac-sha256" */
	struct sb_view nonce;    /* CHALLENGE: router nonce; AUTH: client nonce */
	struct sb_view proof;    /* AUTH: HMAC proof */
	struct sb_view app_code; /* ERROR with SB_F_APP: the application's code */
	struct sb_view headers;  /* SEND, REQUEST with SB_F_HEADERS: the encoded
				    MessagePack map (fixmap marker included) */
	struct sb_view payload;  /* every kind: the last element, opaque MessagePack */
};

/* Why a frame was rejected, precise enough for a test or a log line. */
enum sb_fault {
	SB_FAULT_NONE = 0,
	SB_FAULT_OVERSIZE,  /* length prefix over the limit (SB_ETOOLARGE) */
	SB_FAULT_RUNT,      /* length prefix under SB_BODY_MIN */
	SB_FAULT_LENGTH,    /* length prefix disagrees with the bytes given */
	SB_FAULT_NOT_ARRAY, /* body is not a MessagePack fixarray */
	SB_FAULT_KIND,      /* unknown kind (SB_EUNSUPPORTED) */
	SB_FAULT_ARITY,     /* wrong number of elements for the kind */
	SB_FAULT_FLAGS,     /* a flag bit the kind does not define */
	SB_FAULT_TYPE,      /* a field has the wrong MessagePack type */
	SB_FAULT_WIDTH,     /* a fixed-width integer is not in its fixed width */
	SB_FAULT_RANGE,     /* an integer is above the field's maximum */
	SB_FAULT_TOO_SHORT, /* a string or bin is under the field's minimum length */
	SB_FAULT_TOO_LONG,  /* a string or bin is over the field's limit (SB_ETOOLARGE) */
	SB_FAULT_CHARS,     /* a string has bytes the field does not allow, or bad UTF-8 */
	SB_FAULT_TRUNCATED, /* the body ends inside the header or inside the payload */
	SB_FAULT_PAYLOAD,   /* the payload is not exactly one MessagePack value */
	SB_FAULT_APP,       /* ERROR: code 19 without flag APP, or APP with another code */
	SB_FAULT_DUPLICATE, /* headers: the same key twice */
};

/* Where and why decoding failed. */
struct sb_fault_info {
	enum sb_fault fault;
	uint8_t kind;   /* the frame's kind, if it got that far, else 0 */
	uint8_t field;  /* index of the offending array element */
	uint8_t flags;  /* the frame's flags, if it got that far (they decide
			   whether an optional element is present) */
	uint64_t got;   /* the offending value or length */
	uint64_t limit; /* the bound it broke */
};

/* sb_decode() options. */
#define SB_DECODE_PAYLOAD 0x1u /* also check the payload is one well-formed value */

/**
 * Decode one whole frame (length prefix included) without copying.
 * @param frame  the frame bytes; views in @p m point into them
 * @param len    number of bytes in @p frame; must equal 4 + the prefix
 * @param opts   0 or SB_DECODE_PAYLOAD; the router skips the payload check
 *               because it never looks inside, the client library asks for it
 * @param m      filled on success; all fields not used by the kind are zero
 * @param fi     optional; on failure says which field broke which rule
 * @return 0, or SB_EBADFRAME, SB_ETOOLARGE or SB_EUNSUPPORTED
 */
int sb_decode(const uint8_t *frame, size_t len, unsigned opts, struct sb_msg *m,
	      struct sb_fault_info *fi);

/**
 * Encode @p m as a whole frame: prefix, header and a copy of the payload.
 * A nil payload (ptr NULL) is encoded as MessagePack nil.
 * @return bytes written; SB_EINVAL if a field breaks a rule sb_decode() checks
 *         (the same rules, so whatever we encode decodes), SB_ENOSPC if
 *         @p cap is too small
 */
long sb_encode(const struct sb_msg *m, uint8_t *buf, size_t cap);

/**
 * Encode the prefix and header only; the caller sends m->payload right after
 * (writev), so a large payload is never copied. The prefix already counts it.
 * @return header bytes written, or as sb_encode()
 */
long sb_encode_head(const struct sb_msg *m, uint8_t *buf, size_t cap);

/**
 * Bytes sb_encode() needs for @p m, or SB_EINVAL for an invalid message.
 */
long sb_encoded_size(const struct sb_msg *m);

/**
 * Check that [p, p+len) is exactly one well-formed MessagePack value.
 * Walks without allocating and without recursion.
 * @return 0, or SB_EBADFRAME
 */
int sb_payload_check(const uint8_t *p, size_t len);

/**
 * Check an argument schema (docs/protocol.md, "Argument schemas") the way
 * the router will when it comes with a REGISTER.
 * @param schema  one MessagePack value; NULL (len 0) or nil for no schema
 * @param why     on SB_EINVAL, what is wrong ("schema key \"age\": unknown
 *                type \"integer\""), NUL-terminated; may be NULL if @p whylen is 0
 * @return 0, SB_EINVAL or SB_ENOMEM
 */
int sb_schema_validate(const void *schema, size_t len, char *why, size_t whylen);

/**
 * An argument schema written as JSON (a JSON Schema document, or the
 * original format; docs/protocol.md, "Argument schemas") turned into the
 * MessagePack value a handler registers (sb_handler_opts.schema), and
 * checked the way the router will check it.
 * @param json    the JSON text, @p len bytes
 * @param out     set to the schema, malloc'd: free() it once registered
 *                (registration copies it); NULL on failure
 * @param outlen  set to its bytes
 * @param why     on SB_EINVAL, what is wrong: "JSON at byte 12: expected
 *                ':' after an object key", or the router's refusal
 *                ("zip: unsupported JSON Schema keyword \"pattern\"");
 *                may be NULL if @p whylen is 0
 * @return 0, SB_EINVAL or SB_ENOMEM
 */
int sb_schema_from_json(const char *json, size_t len, void **out, size_t *outlen, char *why,
			size_t whylen);

/* One header of a SEND or REQUEST: key and value, NUL-terminated. */
struct sb_header {
	const char *key;   /* 1-SB_HEADER_KEY_MAX bytes, printable ASCII without
			      space or UTF-8, as a message name */
	const char *value; /* 0-SB_HEADER_VALUE_MAX bytes, printable ASCII with
			      space or UTF-8 */
};

/**
 * Encode @p n headers as the map sb_msg.headers holds (docs/protocol.md,
 * "Headers"), in the order given.
 * @return bytes written (at most SB_HEADERS_MAX); SB_EINVAL for a key or
 *         value the decoder would refuse, a key given twice, or more than
 *         SB_HEADERS_COUNT_MAX headers; SB_ETOOLARGE for a key, a value or
 *         the whole map over its limit; SB_ENOSPC if @p cap is too small
 */
long sb_headers_encode(const struct sb_header *h, size_t n, uint8_t *buf, size_t cap);

/**
 * Find @p key in an encoded header map (sb_msg.headers, checked by sb_decode()).
 * @return the value (not NUL-terminated), *len its bytes; NULL if absent
 */
const char *sb_headers_get(struct sb_view headers, const char *key, size_t *len);

/**
 * Walk an encoded header map: the entry at *pos (start at 0), then *pos
 * advances. Keys and values are views into the map, not NUL-terminated.
 * @return 1 with an entry, 0 at the end
 */
int sb_headers_next(struct sb_view headers, size_t *pos, struct sb_view *key,
		    struct sb_view *value);

/** Patch the id of an encoded frame in place. */
void sb_patch_id(uint8_t *frame, uint64_t id);

/** Patch a fixed-width u32 field (from_off or timeout_ms_off) in place. */
void sb_patch_u32(uint8_t *frame, uint16_t off, uint32_t v);

/** Name of a kind ("REQUEST"), "?" for an unknown one. */
const char *sb_kind_name(unsigned kind);

/** Name of a presence event, as docs/protocol.md spells it in words:
 * "connected", "disconnected", "draining", "identity"; "?" for an unknown
 * one (0 included: the values start at 1). The string is static. */
const char *sb_presence_name(enum sb_presence_event event);

/** Name of a fault ("field too long"). */
const char *sb_fault_name(enum sb_fault f);

/** Error code a fault maps to (SB_EBADFRAME, SB_ETOOLARGE, SB_EUNSUPPORTED). */
int sb_fault_code(enum sb_fault f);

/**
 * One-line description of a fault for an ERROR frame or a log:
 * "REQUEST field 3 (name): field too long (300, limit 255)".
 * @return the length snprintf() would have written
 */
int sb_fault_describe(const struct sb_fault_info *fi, char *buf, size_t cap);

/* ---- frame splitter ----------------------------------------------------- */

/* Cuts a byte stream received in arbitrary pieces into whole frames. */
struct sb_splitter;

/**
 * @param max_body  largest body accepted, 1..SB_FRAME_MAX_LIMIT; 0 = default
 * @return a splitter, or NULL if out of memory or @p max_body is out of range
 */
struct sb_splitter *sb_splitter_new(uint32_t max_body);
void sb_splitter_free(struct sb_splitter *s);

/**
 * Take bytes from *in and yield the next whole frame, if there is one.
 * When the frame lies whole inside the input, @p frame points into the input
 * (no copy); otherwise into the splitter's own buffer. Either way it stays
 * valid until the next call. Call again until it returns 0.
 * @param in, in_len  advanced past the bytes consumed
 * @param frame       set to the frame, prefix included, when 1 is returned
 * @param fi          optional; set on error
 * @return 1 = a frame is ready, 0 = all input consumed, need more;
 *         SB_ETOOLARGE or SB_EBADFRAME: the stream cannot be resynchronised,
 *         and every later call returns the same error
 */
int sb_splitter_next(struct sb_splitter *s, const uint8_t **in, size_t *in_len,
		     struct sb_view *frame, struct sb_fault_info *fi);

/** Bytes of a partial frame held inside the splitter (for memory limits). */
size_t sb_splitter_buffered(const struct sb_splitter *s);

#ifdef __cplusplus
}
#endif
#endif
