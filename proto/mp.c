/* Minimal MessagePack reader and the non-allocating payload walker.
 * msgpack-c's unpacker builds an object tree in a zone; we only need to step. */
#include <switchboard/proto.h>

#include "proto/mp.h"

/* Bytes of big-endian length or value that follow a marker, and what they mean. */
static int need(const uint8_t *p, const uint8_t *end, size_t n)
{
	return (size_t)(end - p) >= n ? SB__MP_OK : SB__MP_SHORT;
}

static uint64_t be(const uint8_t *p, unsigned n)
{
	switch (n) {
	case 1:
		return p[0];
	case 2:
		return (uint64_t)p[0] << 8 | p[1];
	case 4:
		return sb__be32(p);
	default:
		return sb__be64(p);
	}
}

/* Sets the item to a sized body (STR/BIN/EXT) whose length takes n bytes. */
static int sized(const uint8_t **p, const uint8_t *end, struct sb__mp_item *it,
		 enum sb__mp_type type, unsigned n, unsigned skip)
{
	if (need(*p, end, n + skip) != SB__MP_OK)
		return SB__MP_SHORT;
	uint64_t len = be(*p, n);
	*p += n + skip; /* skip: the ext type byte */
	if (len > (uint64_t)(end - *p))
		return SB__MP_SHORT;
	it->type = type;
	it->len = (uint32_t)len;
	it->body = *p;
	*p += len;
	return SB__MP_OK;
}

static int fixed_body(const uint8_t **p, const uint8_t *end, struct sb__mp_item *it,
		      enum sb__mp_type type, unsigned len)
{
	if (need(*p, end, len) != SB__MP_OK)
		return SB__MP_SHORT;
	it->type = type;
	it->len = len;
	it->body = *p;
	*p += len;
	return SB__MP_OK;
}

static int number(const uint8_t **p, const uint8_t *end, struct sb__mp_item *it,
		  enum sb__mp_type type, unsigned n)
{
	if (need(*p, end, n) != SB__MP_OK)
		return SB__MP_SHORT;
	it->type = type;
	it->u = be(*p, n);
	*p += n;
	return SB__MP_OK;
}

static int count(const uint8_t **p, const uint8_t *end, struct sb__mp_item *it,
		 enum sb__mp_type type, unsigned n)
{
	if (need(*p, end, n) != SB__MP_OK)
		return SB__MP_SHORT;
	it->type = type;
	it->len = (uint32_t)be(*p, n);
	*p += n;
	return SB__MP_OK;
}

int sb__mp_read(const uint8_t **p, const uint8_t *end, struct sb__mp_item *it)
{
	if (*p >= end)
		return SB__MP_SHORT;
	/* Only the fields the type defines are set: this runs per header field
	 * and per payload item, and callers read nothing else. */
	uint8_t c = *(*p)++;
	it->marker = c;

	if (c <= 0x7f) {
		it->type = SB__MP_UINT;
		it->u = c;
		return SB__MP_OK;
	}
	if (c >= 0xe0) {
		it->type = SB__MP_INT;
		it->u = c;
		return SB__MP_OK;
	}
	if ((c & 0xf0) == 0x80) {
		it->type = SB__MP_MAP;
		it->len = c & 0x0f;
		return SB__MP_OK;
	}
	if ((c & 0xf0) == 0x90) {
		it->type = SB__MP_ARRAY;
		it->len = c & 0x0f;
		return SB__MP_OK;
	}
	if ((c & 0xe0) == 0xa0)
		return fixed_body(p, end, it, SB__MP_STR, c & 0x1f);

	switch (c) {
	case 0xc0:
		it->type = SB__MP_NIL;
		it->u = 0;
		return SB__MP_OK;
	case 0xc2:
	case 0xc3:
		it->type = SB__MP_BOOL;
		it->u = c & 1;
		return SB__MP_OK;
	case 0xc4:
		return sized(p, end, it, SB__MP_BIN, 1, 0);
	case 0xc5:
		return sized(p, end, it, SB__MP_BIN, 2, 0);
	case 0xc6:
		return sized(p, end, it, SB__MP_BIN, 4, 0);
	case 0xc7:
		return sized(p, end, it, SB__MP_EXT, 1, 1);
	case 0xc8:
		return sized(p, end, it, SB__MP_EXT, 2, 1);
	case 0xc9:
		return sized(p, end, it, SB__MP_EXT, 4, 1);
	case 0xca:
		return fixed_body(p, end, it, SB__MP_FLOAT, 4);
	case 0xcb:
		return fixed_body(p, end, it, SB__MP_FLOAT, 8);
	case 0xcc:
		return number(p, end, it, SB__MP_UINT, 1);
	case 0xcd:
		return number(p, end, it, SB__MP_UINT, 2);
	case 0xce:
		return number(p, end, it, SB__MP_UINT, 4);
	case 0xcf:
		return number(p, end, it, SB__MP_UINT, 8);
	case 0xd0:
		return number(p, end, it, SB__MP_INT, 1);
	case 0xd1:
		return number(p, end, it, SB__MP_INT, 2);
	case 0xd2:
		return number(p, end, it, SB__MP_INT, 4);
	case 0xd3:
		return number(p, end, it, SB__MP_INT, 8);
	case 0xd4: /* fixext: one type byte, then 1..16 bytes */
	case 0xd5:
	case 0xd6:
	case 0xd7:
	case 0xd8:
		return fixed_body(p, end, it, SB__MP_EXT, 1 + (1u << (c - 0xd4)));
	case 0xd9:
		return sized(p, end, it, SB__MP_STR, 1, 0);
	case 0xda:
		return sized(p, end, it, SB__MP_STR, 2, 0);
	case 0xdb:
		return sized(p, end, it, SB__MP_STR, 4, 0);
	case 0xdc:
		return count(p, end, it, SB__MP_ARRAY, 2);
	case 0xdd:
		return count(p, end, it, SB__MP_ARRAY, 4);
	case 0xde:
		return count(p, end, it, SB__MP_MAP, 2);
	case 0xdf:
		return count(p, end, it, SB__MP_MAP, 4);
	default: /* 0xc1 */
		return SB__MP_INVALID;
	}
}

/* MessagePack is prefix-encoded, so skipping needs no stack: keep a count
 * of values still owed. Every value takes at least one byte, so a count
 * larger than the bytes left is malformed at once, which also keeps a
 * hostile "array of 4 billion" from looping. */
int sb_payload_check(const uint8_t *p, size_t len)
{
	const uint8_t *end = p + len;
	uint64_t owed = 1;
	struct sb__mp_item it;

	while (owed > 0) {
		if (sb__mp_read(&p, end, &it) != SB__MP_OK)
			return SB_EBADFRAME;
		owed--;
		if (it.type == SB__MP_ARRAY)
			owed += it.len;
		else if (it.type == SB__MP_MAP)
			owed += 2 * (uint64_t)it.len;
		if (owed > (uint64_t)(end - p))
			return SB_EBADFRAME;
	}
	return p == end ? 0 : SB_EBADFRAME;
}

/* MessagePack is prefix-encoded, so a count of values still owed replaces
 * a stack; every value takes at least one byte, so a count above the bytes
 * left is malformed at once. */
int sb__mp_skip(const uint8_t **p, const uint8_t *end, uint64_t owed)
{
	struct sb__mp_item it;
	while (owed > 0) {
		if ((uint64_t)(end - *p) < owed || sb__mp_read(p, end, &it) != SB__MP_OK)
			return -1;
		owed--;
		if (it.type == SB__MP_ARRAY)
			owed += it.len;
		else if (it.type == SB__MP_MAP)
			owed += 2 * (uint64_t)it.len;
	}
	return 0;
}
