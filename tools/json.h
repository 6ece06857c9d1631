/* JSON <-> MessagePack for sbctl: one JSON text to one MessagePack value and
 * back, with nothing beyond libc, so the payloads people type are exact. */
#ifndef SBCTL_JSON_H
#define SBCTL_JSON_H

#include <stddef.h>

/* Deepest nesting either direction accepts: recursion stays bounded on
 * hostile input instead of overflowing the stack. */
#define SBJ_MAX_DEPTH 256

/* A growable byte buffer. Zero-initialise; free with sbj_buf_free(). */
struct sbj_buf {
	char *data; /* the bytes, always NUL-terminated once allocated */
	size_t len; /* bytes used, not counting the NUL */
	size_t cap; /* bytes allocated */
};

/* Why a JSON text was refused. */
struct sbj_error {
	size_t at;     /* offset of the offending byte, from 0 */
	char what[96]; /* "expected ':' after an object key", ... */
};

/**
 * Encode one JSON text as one MessagePack value, appended to @p out.
 * Integers become the smallest MessagePack int (uint for >= 0, int for < 0;
 * the range is int64 to uint64), numbers with a fraction or exponent become
 * float64, strings are checked UTF-8, "\uXXXX" escapes (surrogate pairs
 * too) become UTF-8. Whitespace around the value is allowed, anything else
 * after it is not.
 * @return 0, or -1 with @p err filled (out of memory is reported the same way)
 */
int sbj_from_json(const char *text, size_t len, struct sbj_buf *out, struct sbj_error *err);

/**
 * Print one MessagePack value as compact JSON, appended to @p out. Maps with
 * keys that are not strings get the key's JSON as a string ({"1":...}),
 * bin prints as {"$bin":"<hex>"}, ext as {"$ext":TYPE,"hex":"<hex>"}, NaN
 * and infinities as null, invalid UTF-8 in a string as U+FFFD.
 * @return 0, or -1 if the bytes are not exactly one well-formed value (or
 *         nest deeper than SBJ_MAX_DEPTH), or memory ran out
 */
int sbj_to_json(const void *mp, size_t len, struct sbj_buf *out);

/** Release @p b's memory and zero it. */
void sbj_buf_free(struct sbj_buf *b);

#endif
