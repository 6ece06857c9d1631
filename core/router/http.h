/* The HTTP/1.1 edge's request parser and response writer: requests read
 * incrementally into one bounded block per connection, every bound and
 * refusal with the status to answer (docs/gateway.md), and the few fields
 * the edge acts on. Our own, not Debian's http-parser: see http.c. */
#ifndef SB_ROUTER_HTTP_H
#define SB_ROUTER_HTTP_H

#include <stddef.h>
#include <stdint.h>

/* Defaults of struct sb__http_limits (docs/gateway.md, "HTTP limits"). */
#define SB__HTTP_HEAD_MAX     8192u      /* request line + header lines + blank line */
#define SB__HTTP_LINE_MAX     4096u      /* the request line alone */
#define SB__HTTP_FIELDS_MAX   64u        /* header lines */
#define SB__HTTP_PIPELINE_MAX 16u        /* requests read ahead of their answers */
#define SB__HTTP_BODY_MAX     (1u << 20) /* the router's default max_frame */
#define SB__HTTP_LIST_MAX     4u         /* lines kept of a list field (Accept, ...) */

struct sb__http_limits {
	uint32_t head_max;     /* bytes of a request's head; more: 431 (414 in the line) */
	uint32_t line_max;     /* bytes of the request line; more: 414 */
	uint32_t fields_max;   /* header lines; more: 431 */
	uint32_t pipeline_max; /* heads returned whose answers are not yet sent */
	uint64_t body_max;     /* Content-Length accepted; more: 413 */
};

enum sb__http_method {
	SB__HTTP_M_GET = 1,
	SB__HTTP_M_HEAD,
	SB__HTTP_M_POST,
	SB__HTTP_M_PUT,
	SB__HTTP_M_DELETE,
	SB__HTTP_M_OPTIONS,
	SB__HTTP_M_PATCH,
};

/* Bytes inside the parser's block (not NUL-terminated). */
struct sb__http_str {
	const char *p;
	uint32_t len;
};

/* One request's head. Every string points into the parser's block and
 * stays valid until the parser is next called after SB__HTTP_END. Fields
 * the request did not send have len 0 (and p NULL). */
struct sb__http_req {
	enum sb__http_method method;
	int minor;                        /* HTTP/1.minor: 0 or 1 */
	struct sb__http_str target;       /* the request-target as sent: "/v1/call/x?y=1" */
	struct sb__http_str path;         /* target up to '?' */
	struct sb__http_str query;        /* after '?', without it (len 0: none) */
	struct sb__http_str host;         /* the values, without surrounding blanks */
	struct sb__http_str content_type; /* ... */
	struct sb__http_str authorization;
	struct sb__http_str cookie;
	struct sb__http_str origin;
	struct sb__http_str upgrade;
	struct sb__http_str ws_key;                         /* Sec-WebSocket-Key */
	struct sb__http_str ws_version;                     /* Sec-WebSocket-Version */
	struct sb__http_str timeout;                        /* Switchboard-Timeout-Ms */
	struct sb__http_str accept[SB__HTTP_LIST_MAX];      /* each Accept line */
	struct sb__http_str ws_protocol[SB__HTTP_LIST_MAX]; /* each Sec-WebSocket-Protocol */
	uint8_t n_accept, n_ws_protocol;                    /* lines of each */
	uint32_t fields;                                    /* header lines, known or not */
	uint64_t content_length;                            /* 0 when absent */
	unsigned has_length : 1;                            /* Content-Length was sent */
	unsigned keep_alive : 1;        /* the connection stays open after the answer */
	unsigned conn_upgrade : 1;      /* Connection lists "upgrade" */
	unsigned upgrade_websocket : 1; /* ...and Upgrade lists "websocket" */
	unsigned expect_continue : 1;   /* Expect: 100-continue (answer it) */
};

/* What sb__http_parse() found. */
enum sb__http_event {
	SB__HTTP_MORE = 0, /* every byte taken; call again with more */
	SB__HTTP_HEAD,     /* a request's head is complete: sb__http_request() */
	SB__HTTP_BODY,     /* a piece of its body, in *body (pointing into the input) */
	SB__HTTP_END,      /* the request is complete; the next bytes are the next one's */
	SB__HTTP_WAIT,     /* nothing taken: pipeline_max answers are owed, or the
			      last request closes the connection */
	SB__HTTP_ERROR,    /* refused: sb__http_status() and sb__http_why() */
};

/* One connection's parser. Opaque outside http.c but sized here, so a
 * connection can embed it; only its block is allocated, once. */
struct sb__http {
	struct sb__http_limits lim; /* the bounds, copied at init */
	char *block;                /* the current head, lim.head_max bytes */
	uint32_t used;              /* bytes of the head in block */
	uint32_t line;              /* where the current line starts in block */
	uint32_t lines;             /* lines ended so far (the request line too) */
	uint32_t lead;              /* blank-line bytes skipped before the request line */
	uint64_t body_left;         /* body bytes still to come */
	uint32_t owed;              /* heads returned whose answers are not sent */
	uint8_t state;              /* where in a request we are (http.c) */
	uint8_t cr;                 /* the last byte taken was CR */
	int status;                 /* the refusal's status, once refused */
	char why[96];               /* ...and why, for the body and the log */
	struct sb__http_req req;    /* the head, once complete */
};

/**
 * Set up @p h with @p lim (NULL: the defaults above); its block is the one
 * allocation it makes.
 * @return 0 or SB_ENOMEM
 */
int sb__http_init(struct sb__http *h, const struct sb__http_limits *lim);
void sb__http_free(struct sb__http *h);

/**
 * Take bytes of the connection. Bytes of a head are copied into the
 * block; body bytes are not: *body points into @p p.
 * @param used  set to the bytes taken; the rest is for the next call
 * @return an event; after SB__HTTP_ERROR every call returns it again
 */
enum sb__http_event sb__http_parse(struct sb__http *h, const uint8_t *p, size_t len, size_t *used,
				   struct sb__http_str *body);

/** The head after SB__HTTP_HEAD (until the next call after SB__HTTP_END). */
const struct sb__http_req *sb__http_request(const struct sb__http *h);

/** One answer was sent in full: a head may be read ahead again. */
void sb__http_answered(struct sb__http *h);

/** After SB__HTTP_ERROR: the status to answer (400, 411, 413, 414, 417,
 *  431, 501 or 505; the connection then closes) and why, in a few words. */
int sb__http_status(const struct sb__http *h);
const char *sb__http_why(const struct sb__http *h);

/** 1 if the comma-separated list in @p v (@p n lines of it) holds @p token,
 *  parameters (";q=0.5") aside; case-insensitive when @p icase. */
int sb__http_has(const struct sb__http_str *v, unsigned n, const char *token, int icase);

/** The value of @p key in a query string ("timeout_ms=50&x"): 1 with
 *  *value set (not decoded), or 0. */
int sb__http_query(struct sb__http_str query, const char *key, struct sb__http_str *value);

/** A decimal value without sign or blanks, at most @p max: 0, or SB_EINVAL. */
int sb__http_uint(struct sb__http_str v, uint64_t max, uint64_t *out);

/* ---- answers ---------------------------------------------------------- */

/* An answer written into the caller's memory. The first failure sticks. */
struct sb__http_out {
	char *p;    /* the caller's buffer */
	size_t len; /* bytes written */
	size_t cap; /* bytes it holds */
	int err;    /* 0, SB_ENOSPC (it did not fit) or SB_EINVAL (a bad field) */
};

void sb__http_out_init(struct sb__http_out *o, char *buf, size_t cap);

/** The reason phrase of @p status ("Not Found"), "" if unknown. */
const char *sb__http_reason(int status);

/** "HTTP/1.1 404 Not Found\r\n". */
void sb__http_status_line(struct sb__http_out *o, int status);

/** "Name: value\r\n". A value with CR, LF or NUL is refused (SB_EINVAL):
 *  nothing a request sent can split our answer. */
void sb__http_field(struct sb__http_out *o, const char *name, const char *value, size_t len);
void sb__http_field_uint(struct sb__http_out *o, const char *name, uint64_t v);

/** The blank line that ends a head. */
void sb__http_end_head(struct sb__http_out *o);

/** Raw bytes (a body that fits beside the head). */
void sb__http_put(struct sb__http_out *o, const void *p, size_t len);

/** @p s as a JSON string, quotes included ("\"" "\\" and control bytes
 *  escaped; other bytes as they are, so @p s must be UTF-8). */
void sb__http_json_str(struct sb__http_out *o, const char *s, size_t len);

/**
 * A whole error answer: status line, Content-Type: application/json,
 * Content-Length, "Connection: close" unless @p keep_alive, and the body
 * {"error":"<sb_strerror(code)>","code":"SB_<name>","message":"<message>"}.
 */
void sb__http_error(struct sb__http_out *o, int status, int code, const char *message,
		    int keep_alive);

/** The parser's refusal as a whole answer (the connection then closes),
 *  with the switchboard code its status stands for (docs/gateway.md). */
void sb__http_refusal(struct sb__http_out *o, const struct sb__http *h);

/** @return 0 and the bytes in o->p[0..len), or o->err. */
int sb__http_out_done(const struct sb__http_out *o);

#define SB__HTTP_CHUNK_HEAD 19 /* 16 hex digits, CR LF, NUL */

/** The head of one chunk of a chunked body: "<hex size>\r\n" into @p buf
 *  (SB__HTTP_CHUNK_HEAD bytes). The chunk's bytes follow, then "\r\n"; the last
 *  chunk is "0\r\n\r\n". @return the head's length */
size_t sb__http_chunk_head(char *buf, size_t n);

/**
 * A Server-Sent Event: "event: <event>\n", one "data: " line per line of
 * @p data (split at CR LF, LF or CR, which a data line cannot hold), then
 * a blank line. JSON from sb__json_print() has no line break: one line.
 */
void sb__sse_event(struct sb__http_out *o, const char *event, const char *data, size_t len);

/** A comment line, which keeps an idle stream open through proxies. */
void sb__sse_comment(struct sb__http_out *o, const char *text);

#endif
