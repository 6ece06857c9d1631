/* Argument schemas: the keys and types a handler declares for its arguments
 * at REGISTER, compiled once and checked against each request's payload. */
#ifndef SB_CORE_SCHEMA_H
#define SB_CORE_SCHEMA_H

#include <stddef.h>
#include <stdint.h>

#define SB__SCHEMA_KEYS_MAX 64  /* declared keys: a check tracks them in one 64-bit mask */
#define SB__SCHEMA_NAME_MAX 255 /* bytes of a declared key name */

/* A compiled schema: one immutable heap block holding no pointers (its
 * layout is private to schema.c), shared read-only by every shard's replica
 * of a route and freed by the last holder. */
struct sb__schema;

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

/** Bytes of the block: a copy of them is the same schema. */
size_t sb__schema_size(const struct sb__schema *s);

/** The schema as it was compiled: the MessagePack map REGISTER carried,
 *  byte for byte, in the block (*len bytes). */
const uint8_t *sb__schema_source(const struct sb__schema *s, size_t *len);

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
