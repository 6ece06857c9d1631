/* Argument schemas: the keys and types a handler declares for its arguments
 * at REGISTER, compiled once and checked against each request's payload. */
#ifndef SB_CORE_SCHEMA_H
#define SB_CORE_SCHEMA_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define SB__SCHEMA_KEYS_MAX 64  /* declared keys: a check tracks them in one 64-bit mask */
#define SB__SCHEMA_NAME_MAX 255 /* bytes of a declared key name */

/* A bound or a value as read from MessagePack: integers exactly, floats as
 * doubles, so "max": 18446744073709551615 means what it says. */
struct sb__schema_num {
	double d;         /* the value as a double (inexact past 2^53 for integers) */
	uint64_t u;       /* integers: the value's bits (two's complement when neg) */
	uint8_t integral; /* an integer: u and neg are exact */
	uint8_t neg;      /* an integer below zero */
};

/* One declared key. Its name lives in the same block, name_off bytes from
 * the start of the struct sb__schema: the block holds no pointers at all. */
struct sb__schema_key {
	uint32_t name_off;         /* where the name starts, from the block's start */
	uint16_t name_len;         /* bytes, at most SB__SCHEMA_NAME_MAX */
	uint16_t types;            /* SB__ST_* bits the value may have */
	uint8_t has_min, has_max;  /* which bounds apply */
	struct sb__schema_num min; /* length (str, bin, array, map) or value bound */
	struct sb__schema_num max;
};

/* A compiled schema: one immutable heap block, shared read-only by every
 * shard's replica of the route and freed by the last one to drop it. */
struct sb__schema {
	atomic_uint refs;             /* holders: route endpoints, mail in flight, the registrar */
	uint32_t nkeys;               /* entries in keys[], sorted by name bytes */
	uint64_t required;            /* bit i: keys[i] must be present */
	uint8_t additional;           /* keys not declared are allowed */
	uint32_t size;                /* bytes of the whole block */
	struct sb__schema_key keys[]; /* then the names */
};

/* Value types a key may accept ("type" in the schema). */
#define SB__ST_NIL   0x001u
#define SB__ST_BOOL  0x002u
#define SB__ST_INT   0x004u /* any integer */
#define SB__ST_UINT  0x008u /* an integer >= 0, in whatever width it was sent */
#define SB__ST_FLOAT 0x010u /* a float; integers too (encoders write 2.0 as 2) */
#define SB__ST_STR   0x020u
#define SB__ST_BIN   0x040u
#define SB__ST_ARRAY 0x080u
#define SB__ST_MAP   0x100u
#define SB__ST_EXT   0x200u /* only through "any" */
#define SB__ST_ANY   0x3ffu

/**
 * Compile a schema (one MessagePack value, docs/protocol.md "Argument
 * schemas"). Nil means no schema: *out is set to NULL and 0 returned.
 * @param out  set to the schema, holding one reference for the caller
 * @param why  on SB_EINVAL, what is wrong ("schema key \"age\": unknown
 *             type \"integer\""), NUL-terminated, valid UTF-8
 * @return 0, SB_EINVAL or SB_ENOMEM
 */
int sb__schema_compile(const uint8_t *p, size_t len, struct sb__schema **out, char *why,
		       size_t whylen);

/** Take one more reference (another route replica, a mail in flight). */
void sb__schema_ref(struct sb__schema *s);

/** Drop a reference; the last one frees the block. NULL is a no-op. */
void sb__schema_unref(struct sb__schema *s);

/**
 * Check a payload against @p s in one pass, without allocating and never
 * reading outside [p, p + len).
 * @param why  on SB_EINVAL, the offending key and why ("key \"age\":
 *             expected uint, got str"), NUL-terminated, valid UTF-8
 * @return 0 if the payload is one well-formed value that fits the schema,
 *         else SB_EINVAL
 */
int sb__schema_check(const struct sb__schema *s, const uint8_t *p, size_t len, char *why,
		     size_t whylen);

#endif
