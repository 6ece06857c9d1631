/* Minimal MessagePack reader: one item header at a time, no allocation.
 * The codec decodes headers with it; sb_payload_check() walks payloads with it. */
#ifndef SB_PROTO_MP_H
#define SB_PROTO_MP_H

#include <stddef.h>
#include <stdint.h>

enum sb__mp_type {
	SB__MP_NIL,
	SB__MP_BOOL,
	SB__MP_UINT,
	SB__MP_INT, /* negative integers only; non-negative ones are UINT */
	SB__MP_FLOAT,
	SB__MP_STR,
	SB__MP_BIN,
	SB__MP_ARRAY,
	SB__MP_MAP,
	SB__MP_EXT,
};

/* One item as it appears on the wire. Only the fields its type uses are set.
 * For STR, BIN and EXT the body is at
 * [body, body + len); for ARRAY and MAP, len counts elements (MAP: pairs). */
struct sb__mp_item {
	enum sb__mp_type type;
	uint8_t marker;      /* first byte, tells the encoded width */
	uint64_t u;          /* UINT value, BOOL value */
	uint32_t len;        /* STR/BIN/EXT bytes, ARRAY elements, MAP pairs */
	const uint8_t *body; /* STR/BIN/EXT body */
};

#define SB__MP_OK      0
#define SB__MP_SHORT   -1 /* input ends inside the item */
#define SB__MP_INVALID -2 /* 0xc1, the one byte MessagePack never uses */

/* Read one item header at *p (not its array/map elements) and advance *p
 * past it, including a STR/BIN/EXT body. Never reads at or past end. */
int sb__mp_read(const uint8_t **p, const uint8_t *end, struct sb__mp_item *it);

/* Steps over `owed` whole values at *p (nested ones too), advancing *p;
 * -1 if they are not there, well-formed. Without a stack or recursion: a
 * count of values still owed, so hostile counts end at the bytes' end. */
int sb__mp_skip(const uint8_t **p, const uint8_t *end, uint64_t owed);

/* Length of the valid UTF-8 sequence at p (first byte >= 0x80, n bytes
 * available), or 0 if it is not one. */
size_t sb__utf8_seq(const uint8_t *p, size_t n);

static inline uint32_t sb__be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t sb__be64(const uint8_t *p)
{
	return (uint64_t)sb__be32(p) << 32 | sb__be32(p + 4);
}

static inline void sb__put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline void sb__put_be64(uint8_t *p, uint64_t v)
{
	sb__put_be32(p, (uint32_t)(v >> 32));
	sb__put_be32(p + 4, (uint32_t)v);
}

#endif
