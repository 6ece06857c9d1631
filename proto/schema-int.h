/* Argument schemas, internals the two source formats share: error texts,
 * numbers read exactly, and stepping over values (proto/schema.c). */
#ifndef SB_PROTO_SCHEMA_INT_H
#define SB_PROTO_SCHEMA_INT_H

#include <stddef.h>
#include <stdint.h>

#include "proto/mp.h"

struct sb__schema;

/* Bytes of a name quoted in a text; longer ones end in "...". */
#define SB__SCHEMA_SHOWN_MAX 64

/* A bound or a value as read from MessagePack: integers exactly, floats as
 * doubles, so "max": 18446744073709551615 means what it says. */
struct sb__schema_num {
	double d;         /* the value as a double (inexact past 2^53 for integers) */
	uint64_t u;       /* integers: the value's bits (two's complement when neg) */
	uint8_t integral; /* an integer: u and neg are exact */
	uint8_t neg;      /* an integer below zero */
};

/* A name as it appears in a text: quoted, escaped, shortened. */
struct sb__schema_quoted {
	char s[SB__SCHEMA_SHOWN_MAX * 4 + 8]; /* every byte may become \xNN */
};

/* Texts go into ERROR frames, whose text must be valid UTF-8: names taken
 * from the wire are escaped where they are not, and a text cut short by a
 * small buffer never ends inside a character. */
int sb__schema_fail(char *why, size_t whylen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Drops an incomplete UTF-8 sequence that snprintf() left at the end. */
void sb__schema_trim_utf8(char *s);
const char *sb__schema_quote(struct sb__schema_quoted *q, const uint8_t *p, size_t n);

int sb__schema_is_number(const struct sb__mp_item *it);
void sb__schema_read_num(const struct sb__mp_item *it, struct sb__schema_num *x);
/* -1, 0 or 1 as a is below, equal to or above b. Neither is NaN. */
int sb__schema_num_cmp(const struct sb__schema_num *a, const struct sb__schema_num *b);
const char *sb__schema_num_str(char *buf, size_t cap, const struct sb__schema_num *x);

/* The elements under an item just read (none unless it is a container). */
uint64_t sb__schema_children(const struct sb__mp_item *it);
int sb__schema_is_str(const struct sb__mp_item *it, const char *s);

/* The JSON Schema format (proto/jschema.c). Its compiled form is a
 * pointer-free image that lives in the schema's block @p head bytes from
 * its start; sb__jschema_compile() allocates the block (calloc, so the
 * head starts zeroed) and sets *size to its bytes. */
int sb__jschema_compile(const uint8_t *p, const uint8_t *end, size_t head, void **block,
			size_t *size, char *why, size_t whylen);
int sb__jschema_check(const void *image, const uint8_t *p, size_t len, char *why, size_t whylen);

#endif
