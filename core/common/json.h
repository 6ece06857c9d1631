/* JSON <-> MessagePack: one JSON text to one MessagePack value and back,
 * exact for every type (docs/gateway.md has the mapping). sbctl and the
 * router's HTTP edge share it; it needs nothing beyond libc. */
#ifndef SB_COMMON_JSON_H
#define SB_COMMON_JSON_H

#include <stddef.h>

/* Deepest nesting either direction accepts: recursion stays bounded on
 * hostile input instead of overflowing the stack (a shard's too). */
#define SB__JSON_MAX_DEPTH 256

/* A growable byte buffer. Zero-initialise; free with sb__json_buf_free(). */
struct sb__json_buf {
	char *data; /* the bytes, always NUL-terminated once allocated */
	size_t len; /* bytes used, not counting the NUL */
	size_t cap; /* bytes allocated */
	size_t max; /* most bytes len may reach (0: no bound): the router sets its
		       frame limit, so a small hostile input cannot grow a big buffer */
	int fixed;  /* data is the caller's memory of cap bytes, never grown: past
		       it is SB_ETOOLARGE (a token's claims: no allocation). While
		       parsing, each open string or container takes 4 bytes more
		       than it ends with, and a NUL follows the output. */
};

/* Why a JSON text was refused. */
struct sb__json_error {
	size_t at;     /* offset of the offending byte, from 0 */
	char what[96]; /* "expected ':' after an object key", ... */
};

/**
 * Encode one JSON text as one MessagePack value, appended to @p out.
 * Integers become the smallest MessagePack int (uint for >= 0, int for < 0;
 * the range is int64 to uint64), numbers with a fraction or exponent become
 * float64, strings are checked UTF-8, "\uXXXX" escapes (surrogate pairs
 * too) become UTF-8; {"$bin":"<hex>"} becomes bin and
 * {"$ext":TYPE,"hex":"<hex>"} ext. Whitespace around the value is allowed,
 * anything else after it is not. Nothing is appended on failure.
 * @return 0; SB_EINVAL (not JSON), SB_ETOOLARGE (past out->max) or
 *         SB_ENOMEM, each with @p err filled
 */
int sb__json_parse(const char *text, size_t len, struct sb__json_buf *out,
		   struct sb__json_error *err);

/**
 * Print one MessagePack value as compact JSON, appended to @p out: the
 * inverse of sb__json_parse() (bin as {"$bin":"<hex>"}, ext as
 * {"$ext":TYPE,"hex":"<hex>"}). What JSON cannot say exactly: map keys that
 * are not strings print as the key's JSON in a string ({"1":...}), NaN and
 * infinities as null, invalid UTF-8 in a string as U+FFFD, float32 as the
 * shortest decimal that reads back as the same float32. Nothing is
 * appended on failure.
 * @return 0; SB_EBADFRAME if the bytes are not exactly one well-formed
 *         value (or nest deeper than SB__JSON_MAX_DEPTH), SB_ETOOLARGE
 *         (past out->max) or SB_ENOMEM
 */
int sb__json_print(const void *mp, size_t len, struct sb__json_buf *out);

/** Release @p b's memory (unless fixed) and zero it (its max too). */
void sb__json_buf_free(struct sb__json_buf *b);

#endif
