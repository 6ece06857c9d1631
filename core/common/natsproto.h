/* The NATS client protocol without I/O: what a server sends, parsed in
 * place with every length checked, and what a client sends, written. */
#ifndef SB_COMMON_NATSPROTO_H
#define SB_COMMON_NATSPROTO_H

#include <stddef.h>
#include <stdint.h>

/* A control line may be this long: INFO lists a cluster's URLs. */
#define SB__NATS_LINE_MAX (64 * 1024)
/* A subject or queue group may be this long (the server takes longer ones;
 * ours are short, and a longer one from the server is refused). */
#define SB__NATS_SUBJECT_MAX 1024

/* What a server can send. */
enum sb__nats_op {
	SB__NATS_INFO = 1, /* INFO {json} */
	SB__NATS_MSG,      /* MSG or HMSG: a message for one of our subscriptions */
	SB__NATS_PING,     /* must be answered with PONG */
	SB__NATS_PONG,     /* answers our PING */
	SB__NATS_OK,       /* +OK (verbose mode only) */
	SB__NATS_ERR,      /* -ERR 'text' */
};

/* One message as received: every pointer points into the parsed bytes. */
struct sb__nats_msg {
	const char *subject; /* the subject it was published to */
	size_t subject_len;  /* 1..SB__NATS_SUBJECT_MAX */
	const char *reply;   /* where to answer, NULL if nowhere */
	size_t reply_len;    /* 0 if reply is NULL */
	uint64_t sid;        /* the subscription it matched */
	const uint8_t *hdr;  /* HMSG: the header block, "NATS/1.0..." to the blank line */
	size_t hdr_len;      /* 0 for MSG */
	const uint8_t *data; /* the payload */
	size_t data_len;     /* its length */
	int status;          /* HMSG status ("NATS/1.0 503"): 100..999, else 0 */
};

/* One parsed operation. */
struct sb__nats_in {
	enum sb__nats_op op;
	struct sb__nats_msg msg; /* SB__NATS_MSG */
	const char *text;        /* INFO's JSON, -ERR's text (quotes kept), else NULL */
	size_t text_len;
};

/* A header to send: a name and a value, neither with CR, LF or (name) ':'. */
struct sb__nats_hdr {
	const char *name;
	const char *value;
};

/**
 * Parses the first operation in @p p. Operation names are taken in any
 * case, as the protocol allows; anything else out of the protocol (an
 * unknown operation, a bad number, a subject with control bytes, a payload
 * not followed by CRLF, a header block that does not start with NATS/1.0
 * or end with a blank line, a payload over @p max_payload) is refused.
 * @param max_payload  the most bytes a message may carry, headers included
 * @return bytes the operation takes (> 0) with *in filled; 0 when @p p
 *         holds only part of one (read more; a partial control line over
 *         SB__NATS_LINE_MAX is refused instead); SB_EBADFRAME when refused
 */
long sb__nats_parse(const uint8_t *p, size_t n, size_t max_payload, struct sb__nats_in *in);

/**
 * Finds header @p name (compared without case) in a header block as
 * received (struct sb__nats_msg's hdr). The value is trimmed of spaces.
 * @return 1 with *val and *len set, 0 if absent
 */
int sb__nats_hdr_get(const uint8_t *hdr, size_t hdr_len, const char *name, const char **val,
		     size_t *len);

/** 1 if @p s is a subject we may publish to (@p wild = 0) or subscribe to
 *  (@p wild = 1: '*' and '>' as whole tokens): printable ASCII without
 *  spaces, non-empty tokens, at most SB__NATS_SUBJECT_MAX bytes. */
int sb__nats_subject_ok(const char *s, size_t len, int wild);

/**
 * The header block for @p h[0..nh): "NATS/1.0\r\n" + "Name: value\r\n"
 * each + "\r\n", written to @p out if @p cap allows.
 * @return its length (also when it did not fit: then nothing is written),
 *         or SB_EINVAL for a name or value that would break the block
 */
long sb__nats_hdr_build(uint8_t *out, size_t cap, const struct sb__nats_hdr *h, unsigned nh);

/**
 * The bytes of PUB (@p hdr_len == 0) or HPUB: "PUB subject [reply] n\r\n"
 * + payload + "\r\n". The subjects must have passed sb__nats_subject_ok().
 * @return the length written; sb__nats_pub_size() says how much room is needed
 */
size_t sb__nats_pub_size(size_t subject_len, size_t reply_len, size_t hdr_len, size_t len);
size_t sb__nats_pub_write(uint8_t *out, const char *subject, size_t subject_len, const char *reply,
			  size_t reply_len, const uint8_t *hdr, size_t hdr_len, const uint8_t *data,
			  size_t len);

/** "SUB subject [queue] sid\r\n" into @p out (room for 2 subjects + 32).
 *  @return its length */
size_t sb__nats_sub_write(char *out, const char *subject, const char *queue, uint64_t sid);

/** "UNSUB sid\r\n" into @p out (room for 32). @return its length */
size_t sb__nats_unsub_write(char *out, uint64_t sid);

/**
 * Reads a non-negative integer member of a JSON object's text: the first
 * "@p key": at the object's top level. Enough for the server's INFO and
 * JetStream's answers (they are generated, not hostile; bounds are still
 * checked: nothing past @p n is read, a nested object is skipped).
 * @return 1 with *v set, 0 if absent or not such a number
 */
int sb__nats_json_u64(const char *s, size_t n, const char *key, uint64_t *v);

/** The same for a member whose value is an object: its text, braces
 *  included. @return 1 with *obj and *len set, else 0 */
int sb__nats_json_obj(const char *s, size_t n, const char *key, const char **obj, size_t *len);

/** The same for a string member: its text between the quotes, escapes
 *  left as they are. @return 1 with *v and *len set, else 0 */
int sb__nats_json_str(const char *s, size_t n, const char *key, const char **v, size_t *len);

/** The same for a boolean member. @return 1 with *v set (0 or 1), else 0 */
int sb__nats_json_bool(const char *s, size_t n, const char *key, int *v);

#endif
