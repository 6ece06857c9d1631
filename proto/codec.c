/* Frame codec: one table per message kind drives both the decoder and the
 * encoder, so whatever we encode is exactly what we accept. */
#include <msgpack.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <switchboard/proto.h>

#include "proto/mp.h"

enum ftype {
	F_UINT,    /* any unsigned width, value in [min, max] */
	F_U32F,    /* u32 always as 0xce + 4 bytes: the router patches it in place */
	F_STR,     /* str, length in [min, max], characters per cset */
	F_STR_NIL, /* as F_STR, or nil */
	F_BIN,     /* bin, length in [min, max] */
	F_MAP,     /* the header map: str -> str, bounded (check_map) */
};

/* Which bytes a string may hold. Names exclude spaces so logs and CLIs can
 * split on them; outcomes are read by people ("insufficient funds"). */
enum cset {
	CS_NAME,  /* printable ASCII without space, or UTF-8 */
	CS_LABEL, /* printable ASCII with space, or UTF-8 */
	CS_TEXT,  /* any valid UTF-8 */
};

struct field {
	const char *name;  /* as in docs/protocol.md */
	uint8_t type;      /* enum ftype */
	uint8_t cset;      /* enum cset, for strings */
	uint16_t off;      /* offsetof(struct sb_msg, ...) of the value */
	uint16_t patch;    /* F_U32F: offsetof the uint16_t frame-offset slot */
	uint32_t min, max; /* bounds: value for F_UINT, length for str/bin */
};

struct kind_spec {
	const char *name;
	uint8_t flags;   /* flag bits the kind defines */
	uint8_t nfields; /* fields between id and payload */
	const struct field *fields;
	uint8_t opt_flag;        /* the flag bit that adds opt before the payload */
	const struct field *opt; /* the element opt_flag adds (fields[nfields]), or NULL */
};

/* clang-format off: one table row per line reads better than any wrapping */
#define VIEW(f, cs, lo, hi)                                                                        \
	{                                                                                          \
#f, F_STR, cs, offsetof(struct sb_msg, f), 0, lo, hi                               \
	}
/* A field whose name in the kind table differs from its sb_msg member. */
#define VIEW_AS(label, f, cs, lo, hi)                                                              \
	{                                                                                          \
		label, F_STR, cs, offsetof(struct sb_msg, f), 0, lo, hi                            \
	}
#define VIEW_NIL(f, cs, lo, hi)                                                                    \
	{                                                                                          \
#f, F_STR_NIL, cs, offsetof(struct sb_msg, f), 0, lo, hi                           \
	}
#define BIN(f, lo, hi)                                                                             \
	{                                                                                          \
#f, F_BIN, 0, offsetof(struct sb_msg, f), 0, lo, hi                                \
	}
#define UINT(f, lo, hi)                                                                            \
	{                                                                                          \
#f, F_UINT, 0, offsetof(struct sb_msg, f), 0, lo, hi                               \
	}
#define U32F(f)                                                                                    \
	{                                                                                          \
#f, F_U32F, 0, offsetof(struct sb_msg, f), offsetof(struct sb_msg, f##_off), 0,    \
			UINT32_MAX                                                                 \
	}
#define HEADERS()                                                                                  \
	{                                                                                          \
		"headers", F_MAP, 0, offsetof(struct sb_msg, headers), 0, 1, SB_HEADERS_COUNT_MAX  \
	}

static const struct field hello_f[] = {
	UINT(version, 1, 0xffff),
	VIEW_NIL(peer, CS_NAME, 1, SB_PEER_MAX),
	VIEW(role, CS_NAME, 1, SB_TOKEN_MAX),
};
static const struct field challenge_f[] = {
	BIN(nonce, SB_NONCE_MIN, SB_NONCE_MAX),
	VIEW(mech, CS_NAME, 1, SB_TOKEN_MAX),
};
static const struct field auth_f[] = {
	BIN(nonce, SB_NONCE_MIN, SB_NONCE_MAX),
	BIN(proof, SB_NONCE_MIN, SB_NONCE_MAX),
};
static const struct field welcome_f[] = {
	UINT(version, 1, 0xffff),
	VIEW(peer, CS_NAME, 1, SB_PEER_MAX),
	UINT(peer_id, 1, UINT32_MAX),
	UINT(max_frame, SB_BODY_MIN, SB_FRAME_MAX_LIMIT),
};
/* A nil name registers (or removes) the catch-all handler. */
static const struct field register_f[] = {
	VIEW_NIL(name, CS_NAME, 1, SB_NAME_MAX),
};
/* The headers row, last, is the element flag HEADERS adds (as ERROR's
 * app_code below): after the fixed-offset from and timeout_ms, so the
 * router still patches those in place. */
static const struct field send_f[] = {
	VIEW(name, CS_NAME, 1, SB_NAME_MAX),
	VIEW_NIL(to, CS_NAME, 1, SB_PEER_MAX),
	U32F(from),
	HEADERS(),
};
static const struct field request_f[] = {
	VIEW(name, CS_NAME, 1, SB_NAME_MAX),
	VIEW_NIL(to, CS_NAME, 1, SB_PEER_MAX),
	U32F(from),
	U32F(timeout_ms),
	HEADERS(),
};
static const struct field reply_f[] = {
	VIEW(outcome, CS_LABEL, 1, SB_NAME_MAX),
	VIEW_NIL(peer, CS_NAME, 1, SB_PEER_MAX),
};
/* The last row is the element flag APP adds after peer: frames without the
 * flag keep their layout, and the router forwards both without looking at
 * the payload. It follows the others in the table so that one loop, as
 * cheap as before, reads it (KIND_OPT). */
static const struct field error_f[] = {
	UINT(code, 1, SB_WIRE_CODE_MAX),
	VIEW(text, CS_TEXT, 0, SB_TEXT_MAX),
	VIEW_NIL(peer, CS_NAME, 1, SB_PEER_MAX),
	VIEW(app_code, CS_NAME, 1, SB_APPCODE_MAX),
};
/* The topic lives in sb_msg.name, the goodbye reason in sb_msg.text; fault
 * texts use the kind table's names (docs/protocol.md). */
static const struct field subscribe_f[] = {
	VIEW_AS("topic", name, CS_NAME, 1, SB_NAME_MAX),
};
static const struct field presence_f[] = {
	UINT(event, 1, 0xff),
	VIEW(peer, CS_NAME, 1, SB_PEER_MAX),
	UINT(peer_id, 1, UINT32_MAX),
};
static const struct field goodbye_f[] = {
	VIEW_AS("reason", text, CS_TEXT, 0, SB_TEXT_MAX),
	UINT(deadline_ms, 0, UINT32_MAX),
};

#define KIND(n, fl, f)                                                                             \
	{                                                                                          \
		n, fl, sizeof(f) / sizeof((f)[0]), f, 0, NULL                                      \
	}
/* The table's last row is the element flag `of` adds. */
#define KIND_OPT(n, fl, f, of)                                                                     \
	{                                                                                          \
		n, fl, sizeof(f) / sizeof((f)[0]) - 1, f, of, &(f)[sizeof(f) / sizeof((f)[0]) - 1] \
	}
#define BARE(n, fl)                                                                                \
	{                                                                                          \
		n, fl, 0, NULL, 0, NULL                                                            \
	}

static const struct kind_spec kinds[SB_KIND_MAX + 1] = {
	[SB_HELLO] = KIND("HELLO", 0, hello_f),
	[SB_CHALLENGE] = KIND("CHALLENGE", 0, challenge_f),
	[SB_AUTH] = KIND("AUTH", 0, auth_f),
	[SB_WELCOME] = KIND("WELCOME", 0, welcome_f),
	[SB_REGISTER] = KIND("REGISTER", SB_F_INTERNAL, register_f),
	[SB_UNREGISTER] = KIND("UNREGISTER", 0, register_f),
	[SB_ACK] = BARE("ACK", 0),
	[SB_SEND] = KIND_OPT("SEND", SB_F_BROADCAST | SB_F_HEADERS, send_f, SB_F_HEADERS),
	[SB_REQUEST] = KIND_OPT("REQUEST", SB_F_BROADCAST | SB_F_HEADERS, request_f, SB_F_HEADERS),
	[SB_REPLY] = KIND("REPLY", SB_F_MORE | SB_F_CHUNK, reply_f),
	[SB_ERROR] = KIND_OPT("ERROR", SB_F_MORE | SB_F_FATAL | SB_F_APP, error_f, SB_F_APP),
	[SB_CANCEL] = BARE("CANCEL", 0),
	[SB_SUBSCRIBE] = KIND("SUBSCRIBE", SB_F_OFF, subscribe_f),
	[SB_PRESENCE] = KIND("PRESENCE", 0, presence_f),
	[SB_PING] = BARE("PING", 0),
	[SB_PONG] = BARE("PONG", 0),
	[SB_GOODBYE] = KIND("GOODBYE", 0, goodbye_f),
};
/* clang-format on */

/* Elements before the kind's own fields: kind, flags, id. */
#define FIXED_ELEMS 3

const char *sb_kind_name(unsigned kind)
{
	return kind >= 1 && kind <= SB_KIND_MAX ? kinds[kind].name : "?";
}

const char *sb_presence_name(enum sb_presence_event event)
{
	switch (event) {
	case SB_PEER_CONNECTED:
		return "connected";
	case SB_PEER_DISCONNECTED:
		return "disconnected";
	case SB_PEER_DRAINING:
		return "draining";
	case SB_PEER_IDENTITY:
		return "identity";
	}
	return "?";
}

/* ---- validation shared by decoder and encoder --------------------------- */

/* Rejects overlong forms, surrogates and code points past U+10FFFF, which
 * strict decoders (Python's, for one) refuse. */
size_t sb__utf8_seq(const uint8_t *p, size_t n)
{
	uint8_t c = p[0];
	size_t len;
	uint8_t lo = 0x80, hi = 0xbf; /* bounds of the second byte */

	if (c >= 0xc2 && c <= 0xdf)
		len = 2;
	else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
	} else
		return 0;
	if (n < len || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return len;
}

/* True if every byte of w is in [lo, hi], for lo <= 128 and hi <= 127.
 * "Some byte < lo" and "some byte > hi" are the classic SWAR tests: each
 * sets a byte's top bit exactly when that byte is out of range. */
static bool word_in_range(uint64_t w, unsigned lo, unsigned hi)
{
	const uint64_t ones = 0x0101010101010101ull, tops = 0x8080808080808080ull;
	uint64_t below = (w - ones * lo) & ~w & tops;
	uint64_t above = ((w + ones * (127 - hi)) | w) & tops;
	return (below | above) == 0;
}

/* Every frame's name passes through here, so plain ASCII is checked eight
 * bytes a step; the byte loop handles the tail and UTF-8 sequences. */
static bool chars_ok(const uint8_t *p, size_t n, enum cset cs)
{
	unsigned lo = cs == CS_NAME ? 0x21 : cs == CS_LABEL ? 0x20 : 0x00;
	unsigned hi = cs == CS_TEXT ? 0x7f : 0x7e; /* names exclude DEL */
	size_t i = 0;

	for (uint64_t w; i + 8 <= n; i += 8) {
		memcpy(&w, p + i, 8);
		if (!word_in_range(w, lo, hi))
			break;
	}
	while (i < n) {
		if ((unsigned)p[i] - lo <= hi - lo) {
			i++;
			continue;
		}
		if (p[i] < 0x80)
			return false;
		size_t k = sb__utf8_seq(p + i, n - i);
		if (k == 0)
			return false;
		i += k;
	}
	return true;
}

static void set_fault(struct sb_fault_info *fi, enum sb_fault f, unsigned field, uint64_t got,
		      uint64_t limit)
{
	fi->fault = f;
	fi->field = (uint8_t)field;
	fi->got = got;
	fi->limit = limit;
}

/* Checks a string/bin value against its field; nil only where allowed. */
static bool check_view(const struct field *f, const struct sb_view *v, unsigned idx,
		       struct sb_fault_info *fi)
{
	if (v->ptr == NULL) {
		if (f->type == F_STR_NIL)
			return true;
		set_fault(fi, SB_FAULT_TYPE, idx, 0, 0);
		return false;
	}
	if (v->len < f->min) {
		set_fault(fi, SB_FAULT_TOO_SHORT, idx, v->len, f->min);
		return false;
	}
	if (v->len > f->max) {
		set_fault(fi, SB_FAULT_TOO_LONG, idx, v->len, f->max);
		return false;
	}
	if (f->type != F_BIN && !chars_ok(v->ptr, v->len, f->cset)) {
		set_fault(fi, SB_FAULT_CHARS, idx, 0, 0);
		return false;
	}
	return true;
}

static bool check_uint(const struct field *f, uint64_t v, unsigned idx, struct sb_fault_info *fi)
{
	if (v < f->min || v > f->max) {
		set_fault(fi, SB_FAULT_RANGE, idx, v, v < f->min ? f->min : f->max);
		return false;
	}
	return true;
}

static struct sb_view *view_at(struct sb_msg *m, const struct field *f)
{
	return (struct sb_view *)((char *)m + f->off);
}

static uint32_t *u32_at(struct sb_msg *m, const struct field *f)
{
	return (uint32_t *)((char *)m + f->off);
}

/* A header map: 1-16 pairs of str -> str (map16 only for 16), keys as
 * names 1-64 bytes, values as labels 0-256 bytes, no key twice, at most
 * SB_HEADERS_MAX bytes in all. Reads from *p up to end and advances *p. */
static bool check_map(const uint8_t **p, const uint8_t *end, const struct field *f, unsigned idx,
		      struct sb_fault_info *fi)
{
	static const struct field key = {"key", F_STR, CS_NAME, 0, 0, 1, SB_HEADER_KEY_MAX};
	static const struct field val = {"value", F_STR, CS_LABEL, 0, 0, 0, SB_HEADER_VALUE_MAX};
	struct sb_view keys[SB_HEADERS_COUNT_MAX];
	const uint8_t *start = *p;
	struct sb__mp_item it;
	int rc = sb__mp_read(p, end, &it);

	if (rc == SB__MP_SHORT) {
		set_fault(fi, SB_FAULT_TRUNCATED, idx, 0, 0);
		return false;
	}
	if (rc != SB__MP_OK || it.type != SB__MP_MAP) {
		set_fault(fi, SB_FAULT_TYPE, idx, *start, 0);
		return false;
	}
	if (it.len < f->min) {
		set_fault(fi, SB_FAULT_TOO_SHORT, idx, it.len, f->min);
		return false;
	}
	if (it.len > f->max) {
		set_fault(fi, SB_FAULT_TOO_LONG, idx, it.len, f->max);
		return false;
	}
	for (uint32_t i = 0; i < it.len * 2; i++) {
		const uint8_t *at = *p;
		struct sb__mp_item s;
		rc = sb__mp_read(p, end, &s);
		if (rc == SB__MP_SHORT) {
			set_fault(fi, SB_FAULT_TRUNCATED, idx, 0, 0);
			return false;
		}
		if (rc != SB__MP_OK || s.type != SB__MP_STR) {
			set_fault(fi, SB_FAULT_TYPE, idx, *at, 0);
			return false;
		}
		struct sb_view v = {s.body, s.len};
		if (!check_view(i % 2 == 0 ? &key : &val, &v, idx, fi))
			return false;
		if (i % 2 != 0)
			continue;
		for (uint32_t k = 0; k < i / 2; k++)
			if (keys[k].len == v.len && memcmp(keys[k].ptr, v.ptr, v.len) == 0) {
				set_fault(fi, SB_FAULT_DUPLICATE, idx, 0, 0);
				return false;
			}
		keys[i / 2] = v;
	}
	if ((size_t)(*p - start) > SB_HEADERS_MAX) {
		set_fault(fi, SB_FAULT_TOO_LONG, idx, (uint64_t)(*p - start), SB_HEADERS_MAX);
		return false;
	}
	return true;
}

/* ---- decoder ------------------------------------------------------------ */

/* Reads element idx into m according to f. */
static bool decode_field(const uint8_t *frame, const uint8_t **p, const uint8_t *end,
			 const struct field *f, unsigned idx, struct sb_msg *m,
			 struct sb_fault_info *fi)
{
	struct sb__mp_item it;
	const uint8_t *start = *p;

	/* What nearly every header holds, read inline: a fixstr, nil, a u32 in
	 * its fixed width. Anything else, and every error, takes the general
	 * reader below, so both paths refuse the same frames the same way. */
	if (start < end) {
		uint8_t c = *start;
		size_t left = (size_t)(end - start) - 1;
		if (f->type == F_U32F && c == 0xce && left >= 4) {
			uint32_t v = sb__be32(start + 1);
			if (!check_uint(f, v, idx, fi))
				return false;
			*u32_at(m, f) = v;
			*(uint16_t *)((char *)m + f->patch) = (uint16_t)(start + 1 - frame);
			*p = start + 5;
			return true;
		}
		if (f->type == F_STR_NIL && c == 0xc0) {
			*p = start + 1;
			return true; /* stays {NULL, 0} */
		}
		if ((f->type == F_STR || f->type == F_STR_NIL) && (c & 0xe0) == 0xa0 &&
		    left >= (c & 0x1fu)) {
			struct sb_view *v = view_at(m, f);
			v->ptr = start + 1;
			v->len = c & 0x1fu;
			*p = start + 1 + v->len;
			return check_view(f, v, idx, fi);
		}
	}
	if (f->type == F_MAP) {
		if (!check_map(p, end, f, idx, fi))
			return false;
		*view_at(m, f) = (struct sb_view){start, (uint32_t)(*p - start)};
		return true;
	}
	int rc = sb__mp_read(p, end, &it);

	if (rc == SB__MP_SHORT) {
		set_fault(fi, SB_FAULT_TRUNCATED, idx, 0, 0);
		return false;
	}
	switch (f->type) {
	case F_U32F:
		if (rc == SB__MP_OK && it.type == SB__MP_UINT && it.marker != 0xce) {
			set_fault(fi, SB_FAULT_WIDTH, idx, it.marker, 0xce);
			return false;
		}
		/* fall through */
	case F_UINT:
		if (rc != SB__MP_OK || it.type != SB__MP_UINT) {
			set_fault(fi, SB_FAULT_TYPE, idx, *start, 0);
			return false;
		}
		if (!check_uint(f, it.u, idx, fi))
			return false;
		*u32_at(m, f) = (uint32_t)it.u;
		if (f->type == F_U32F)
			*(uint16_t *)((char *)m + f->patch) = (uint16_t)(start + 1 - frame);
		return true;
	default: {
		enum sb__mp_type want = f->type == F_BIN ? SB__MP_BIN : SB__MP_STR;
		struct sb_view *v = view_at(m, f);
		if (rc == SB__MP_OK && it.type == SB__MP_NIL && f->type == F_STR_NIL)
			return true; /* stays {NULL, 0} */
		if (rc != SB__MP_OK || it.type != want) {
			set_fault(fi, SB_FAULT_TYPE, idx, *start, 0);
			return false;
		}
		v->ptr = it.body;
		v->len = it.len;
		return check_view(f, v, idx, fi);
	}
	}
}

int sb_decode(const uint8_t *frame, size_t len, unsigned opts, struct sb_msg *m,
	      struct sb_fault_info *fi)
{
	struct sb_fault_info scratch;
	const struct kind_spec *spec;

	if (fi == NULL)
		fi = &scratch;
	memset(fi, 0, sizeof *fi);
	memset(m, 0, sizeof *m);

	if (len < SB_PREFIX_LEN || sb__be32(frame) != len - SB_PREFIX_LEN) {
		set_fault(fi, SB_FAULT_LENGTH, 0, len >= SB_PREFIX_LEN ? sb__be32(frame) : 0,
			  len >= SB_PREFIX_LEN ? len - SB_PREFIX_LEN : 0);
		goto fail;
	}
	if (len - SB_PREFIX_LEN > SB_FRAME_MAX_LIMIT) {
		set_fault(fi, SB_FAULT_OVERSIZE, 0, len - SB_PREFIX_LEN, SB_FRAME_MAX_LIMIT);
		goto fail;
	}
	if (len - SB_PREFIX_LEN < SB_BODY_MIN) {
		set_fault(fi, SB_FAULT_RUNT, 0, len - SB_PREFIX_LEN, SB_BODY_MIN);
		goto fail;
	}

	/* The body is at least SB_BODY_MIN bytes, so the canonical part
	 * (fixarray, kind, flags, 0xcf + 8) is in bounds without checks. */
	const uint8_t *p = frame + SB_PREFIX_LEN, *end = frame + len;
	unsigned n = *p & 0x0f;
	if ((*p++ & 0xf0) != 0x90) {
		set_fault(fi, SB_FAULT_NOT_ARRAY, 0, p[-1], 0);
		goto fail;
	}
	if (*p > 0x7f) {
		set_fault(fi, SB_FAULT_TYPE, 0, *p, 0);
		goto fail;
	}
	m->kind = *p++;
	fi->kind = m->kind;
	if (m->kind == 0 || m->kind > SB_KIND_MAX) {
		set_fault(fi, SB_FAULT_KIND, 0, m->kind, SB_KIND_MAX);
		goto fail;
	}
	spec = &kinds[m->kind];
	/* The flags decide the element count, so they are read first; a frame
	 * whose flags are bad is refused for them, whatever its count. */
	if (*p > 0x7f) {
		set_fault(fi, SB_FAULT_TYPE, 1, *p, 0);
		goto fail;
	}
	m->flags = *p;
	fi->flags = m->flags;
	if (m->flags & ~spec->flags) {
		set_fault(fi, SB_FAULT_FLAGS, 1, m->flags, spec->flags);
		goto fail;
	}
	unsigned nopt = (m->flags & spec->opt_flag) != 0;
	if (n != FIXED_ELEMS + spec->nfields + nopt + 1u) {
		set_fault(fi, SB_FAULT_ARITY, 0, n, FIXED_ELEMS + spec->nfields + nopt + 1u);
		goto fail;
	}
	p++;
	if (*p != 0xcf) {
		/* An id in another integer width cannot be patched in place. */
		bool is_int = *p <= 0x7f || (*p >= 0xcc && *p <= 0xd3) || *p >= 0xe0;
		set_fault(fi, is_int ? SB_FAULT_WIDTH : SB_FAULT_TYPE, 2, *p, 0xcf);
		goto fail;
	}
	m->id = sb__be64(p + 1);
	p += 9;

	/* The optional element is the table's next row, read by the same loop:
	 * a second call of decode_field() made the compiler inline neither,
	 * which cost every frame a third more time (sb-micro BM_Decode/64). */
	for (unsigned i = 0; i < spec->nfields + nopt; i++)
		if (!decode_field(frame, &p, end, &spec->fields[i], FIXED_ELEMS + i, m, fi))
			goto fail;
	/* An application code rides only on code 19 and code 19 only with
	 * one, so no router code can be taken for an application's. */
	if (m->kind == SB_ERROR && (m->code == (uint32_t)-SB_EAPP) != (nopt != 0)) {
		set_fault(fi, SB_FAULT_APP, FIXED_ELEMS, m->code, (uint32_t)-SB_EAPP);
		goto fail;
	}

	if (p >= end) {
		set_fault(fi, SB_FAULT_TRUNCATED, n - 1, 0, 0);
		goto fail;
	}
	m->payload.ptr = p;
	m->payload.len = (uint32_t)(end - p);
	if ((opts & SB_DECODE_PAYLOAD) && sb_payload_check(p, (size_t)(end - p)) != 0) {
		set_fault(fi, SB_FAULT_PAYLOAD, n - 1, 0, 0);
		goto fail;
	}
	return 0;

fail:
	return sb_fault_code(fi->fault);
}

/* ---- encoder ------------------------------------------------------------ */

/* msgpack-c writes through a callback; ours fills a bounded buffer, or only
 * counts when buf is NULL, so sizing and encoding share one code path. */
struct wbuf {
	uint8_t *buf;
	size_t len, cap;
};

static int wbuf_put(void *data, const char *b, size_t n)
{
	struct wbuf *w = data;

	if (w->buf != NULL) {
		if (w->cap - w->len < n)
			return -1;
		memcpy(w->buf + w->len, b, n);
	}
	w->len += n;
	return 0;
}

static int encode_field(msgpack_packer *pk, const struct field *f, struct sb_msg *m)
{
	switch (f->type) {
	case F_UINT:
		return msgpack_pack_uint64(pk, *u32_at(m, f));
	case F_U32F:
		return msgpack_pack_fix_uint32(pk, *u32_at(m, f));
	case F_BIN: {
		struct sb_view *v = view_at(m, f);
		return msgpack_pack_bin_with_body(pk, v->ptr, v->len);
	}
	case F_MAP: {
		struct sb_view *v = view_at(m, f); /* already encoded, checked by valid() */
		return pk->callback(pk->data, (const char *)v->ptr, v->len);
	}
	default: {
		struct sb_view *v = view_at(m, f);
		if (v->ptr == NULL)
			return msgpack_pack_nil(pk);
		return msgpack_pack_str_with_body(pk, v->ptr, v->len);
	}
	}
}

static bool valid(const struct sb_msg *m)
{
	struct sb_fault_info fi;
	struct sb_msg *mm = (struct sb_msg *)m; /* the accessors are shared with decode */

	if (m->kind == 0 || m->kind > SB_KIND_MAX)
		return false;
	const struct kind_spec *spec = &kinds[m->kind];
	if (m->flags & ~spec->flags)
		return false;
	for (unsigned i = 0; i < spec->nfields; i++) {
		const struct field *f = &spec->fields[i];
		bool ok = f->type == F_UINT   ? check_uint(f, *u32_at(mm, f), i, &fi)
			  : f->type == F_U32F ? true
					      : check_view(f, view_at(mm, f), i, &fi);
		if (!ok)
			return false;
	}
	if ((m->flags & spec->opt_flag) && spec->opt->type == F_MAP) {
		const struct sb_view *v = view_at(mm, spec->opt);
		const uint8_t *p = v->ptr;
		if (p == NULL || !check_map(&p, p + v->len, spec->opt, 0, &fi) ||
		    p != v->ptr + v->len)
			return false;
	} else if ((m->flags & spec->opt_flag) &&
		   !check_view(spec->opt, view_at(mm, spec->opt), 0, &fi)) {
		return false;
	}
	if (m->kind == SB_ERROR && (m->code == (uint32_t)-SB_EAPP) != !!(m->flags & SB_F_APP))
		return false;
	return true;
}

static bool has_payload(const struct sb_msg *m)
{
	return m->payload.ptr != NULL && m->payload.len > 0;
}

/* Writes prefix + header (+ payload when with_payload). Returns bytes. */
static long encode(const struct sb_msg *m, uint8_t *buf, size_t cap, bool with_payload)
{
	static const uint8_t nil = 0xc0;
	struct wbuf w = {buf, SB_PREFIX_LEN, cap};
	msgpack_packer pk;

	if (!valid(m))
		return SB_EINVAL;
	if (buf != NULL && cap < SB_PREFIX_LEN)
		return SB_ENOSPC;
	const struct kind_spec *spec = &kinds[m->kind];
	msgpack_packer_init(&pk, &w, wbuf_put);

	unsigned nopt = (m->flags & spec->opt_flag) != 0;
	int rc = msgpack_pack_array(&pk, FIXED_ELEMS + spec->nfields + nopt + 1u);
	rc |= msgpack_pack_uint8(&pk, m->kind);
	rc |= msgpack_pack_uint8(&pk, m->flags);
	rc |= msgpack_pack_fix_uint64(&pk, m->id);
	for (unsigned i = 0; i < spec->nfields; i++)
		rc |= encode_field(&pk, &spec->fields[i], (struct sb_msg *)m);
	if (nopt)
		rc |= encode_field(&pk, spec->opt, (struct sb_msg *)m);
	if (rc != 0)
		return SB_ENOSPC;

	size_t head = w.len;
	size_t plen = has_payload(m) ? m->payload.len : 1;
	size_t body = head - SB_PREFIX_LEN + plen;
	if (body > SB_FRAME_MAX_LIMIT)
		return SB_ETOOLARGE;
	if (with_payload) {
		const uint8_t *pp = has_payload(m) ? m->payload.ptr : &nil;
		if (wbuf_put(&w, (const char *)pp, plen) != 0)
			return SB_ENOSPC;
	}
	if (buf != NULL)
		sb__put_be32(buf, (uint32_t)body);
	return (long)w.len;
}

long sb_encode(const struct sb_msg *m, uint8_t *buf, size_t cap)
{
	if (buf == NULL)
		return SB_ENOSPC;
	return encode(m, buf, cap, true);
}

long sb_encode_head(const struct sb_msg *m, uint8_t *buf, size_t cap)
{
	if (buf == NULL)
		return SB_ENOSPC;
	return encode(m, buf, cap, false);
}

long sb_encoded_size(const struct sb_msg *m)
{
	return encode(m, NULL, 0, true);
}

void sb_patch_id(uint8_t *frame, uint64_t id)
{
	sb__put_be64(frame + SB_ID_OFFSET, id);
}

void sb_patch_u32(uint8_t *frame, uint16_t off, uint32_t v)
{
	sb__put_be32(frame + off, v);
}

/* ---- headers ------------------------------------------------------------ */

static size_t put_str(uint8_t *o, const char *s, size_t n)
{
	size_t k = 0;

	if (n < 32) {
		o[k++] = (uint8_t)(0xa0 | n);
	} else if (n < 256) {
		o[k++] = 0xd9;
		o[k++] = (uint8_t)n;
	} else {
		o[k++] = 0xda;
		o[k++] = (uint8_t)(n >> 8);
		o[k++] = (uint8_t)n;
	}
	memcpy(o + k, s, n);
	return k + n;
}

long sb_headers_encode(const struct sb_header *h, size_t n, uint8_t *buf, size_t cap)
{
	/* Room for the largest map the lengths allow, so the checks below, the
	 * decoder's own, see the whole map before anything is refused. */
	uint8_t tmp[3 + SB_HEADERS_COUNT_MAX * (3 + SB_HEADER_KEY_MAX + 3 + SB_HEADER_VALUE_MAX)];
	struct sb_fault_info fi = {0};
	size_t k = 0;

	if (n == 0 || n > SB_HEADERS_COUNT_MAX || h == NULL)
		return n > SB_HEADERS_COUNT_MAX ? SB_ETOOLARGE : SB_EINVAL;
	if (n < 16) {
		tmp[k++] = (uint8_t)(0x80 | n);
	} else {
		tmp[k++] = 0xde;
		tmp[k++] = 0;
		tmp[k++] = (uint8_t)n;
	}
	for (size_t i = 0; i < n; i++) {
		if (h[i].key == NULL || h[i].value == NULL)
			return SB_EINVAL;
		size_t kl = strlen(h[i].key), vl = strlen(h[i].value);
		if (kl > SB_HEADER_KEY_MAX || vl > SB_HEADER_VALUE_MAX)
			return SB_ETOOLARGE;
		k += put_str(tmp + k, h[i].key, kl);
		k += put_str(tmp + k, h[i].value, vl);
	}
	const uint8_t *p = tmp;
	if (!check_map(&p, tmp + k, &kinds[SB_SEND].opt[0], 0, &fi))
		return sb_fault_code(fi.fault) == SB_ETOOLARGE ? SB_ETOOLARGE : SB_EINVAL;
	if (k > cap)
		return SB_ENOSPC;
	memcpy(buf, tmp, k);
	return (long)k;
}

int sb_headers_next(struct sb_view headers, size_t *pos, struct sb_view *key, struct sb_view *value)
{
	const uint8_t *p = headers.ptr, *end = headers.ptr + headers.len;
	struct sb__mp_item it, kv, vv;

	if (p == NULL || sb__mp_read(&p, end, &it) != SB__MP_OK || it.type != SB__MP_MAP)
		return 0;
	if (*pos >= it.len)
		return 0;
	for (size_t i = 0; i <= *pos; i++)
		if (sb__mp_read(&p, end, &kv) != SB__MP_OK ||
		    sb__mp_read(&p, end, &vv) != SB__MP_OK)
			return 0;
	*key = (struct sb_view){kv.body, kv.len};
	*value = (struct sb_view){vv.body, vv.len};
	++*pos;
	return 1;
}

const char *sb_headers_get(struct sb_view headers, const char *key, size_t *len)
{
	size_t pos = 0, kl = strlen(key);
	struct sb_view k, v;

	while (sb_headers_next(headers, &pos, &k, &v))
		if (k.len == kl && memcmp(k.ptr, key, kl) == 0) {
			if (len != NULL)
				*len = v.len;
			return (const char *)v.ptr;
		}
	return NULL;
}

/* ---- faults ------------------------------------------------------------- */

static const char *const fault_names[] = {
	[SB_FAULT_NONE] = "no fault",
	[SB_FAULT_OVERSIZE] = "frame too large",
	[SB_FAULT_RUNT] = "frame too short",
	[SB_FAULT_LENGTH] = "length prefix does not match the frame",
	[SB_FAULT_NOT_ARRAY] = "body is not a MessagePack fixarray",
	[SB_FAULT_KIND] = "unknown message kind",
	[SB_FAULT_ARITY] = "wrong number of fields",
	[SB_FAULT_FLAGS] = "undefined flag bits",
	[SB_FAULT_TYPE] = "wrong field type",
	[SB_FAULT_WIDTH] = "fixed-width integer in another width",
	[SB_FAULT_RANGE] = "value out of range",
	[SB_FAULT_TOO_SHORT] = "field too short",
	[SB_FAULT_TOO_LONG] = "field too long",
	[SB_FAULT_CHARS] = "invalid characters",
	[SB_FAULT_TRUNCATED] = "frame ends inside a field",
	[SB_FAULT_PAYLOAD] = "payload is not one MessagePack value",
	[SB_FAULT_APP] = "code 19 (application error) and flag APP go together",
	[SB_FAULT_DUPLICATE] = "duplicate header key",
};

const char *sb_fault_name(enum sb_fault f)
{
	if ((unsigned)f >= sizeof(fault_names) / sizeof(fault_names[0]))
		return "unknown fault";
	return fault_names[f];
}

int sb_fault_code(enum sb_fault f)
{
	switch (f) {
	case SB_FAULT_NONE:
		return 0;
	case SB_FAULT_OVERSIZE:
	case SB_FAULT_TOO_LONG:
		return SB_ETOOLARGE;
	case SB_FAULT_KIND:
		return SB_EUNSUPPORTED;
	default:
		return SB_EBADFRAME;
	}
}

static const char *field_name(unsigned kind, unsigned flags, unsigned idx)
{
	static const char *const fixed[FIXED_ELEMS] = {"kind", "flags", "id"};

	if (idx < FIXED_ELEMS)
		return fixed[idx];
	if (kind < 1 || kind > SB_KIND_MAX)
		return "?";
	const struct kind_spec *spec = &kinds[kind];
	if (idx - FIXED_ELEMS < spec->nfields)
		return spec->fields[idx - FIXED_ELEMS].name;
	if (idx - FIXED_ELEMS == spec->nfields && (flags & spec->opt_flag))
		return spec->opt->name;
	return "payload";
}

int sb_fault_describe(const struct sb_fault_info *fi, char *buf, size_t cap)
{
	const char *what = sb_fault_name(fi->fault);

	switch (fi->fault) {
	case SB_FAULT_OVERSIZE:
	case SB_FAULT_RUNT:
		return snprintf(buf, cap, "%s (%llu bytes, limit %llu)", what,
				(unsigned long long)fi->got, (unsigned long long)fi->limit);
	case SB_FAULT_LENGTH:
		return snprintf(buf, cap, "%s (prefix says %llu, frame has %llu)", what,
				(unsigned long long)fi->got, (unsigned long long)fi->limit);
	case SB_FAULT_NOT_ARRAY:
	case SB_FAULT_NONE:
		return snprintf(buf, cap, "%s", what);
	case SB_FAULT_KIND:
		return snprintf(buf, cap, "%s %llu", what, (unsigned long long)fi->got);
	case SB_FAULT_ARITY:
		return snprintf(buf, cap, "%s %s (%llu, expected %llu)", sb_kind_name(fi->kind),
				what, (unsigned long long)fi->got, (unsigned long long)fi->limit);
	case SB_FAULT_RANGE:
	case SB_FAULT_TOO_SHORT:
	case SB_FAULT_TOO_LONG:
	case SB_FAULT_FLAGS:
		return snprintf(buf, cap, "%s field %u (%s): %s (%llu, limit %llu)",
				sb_kind_name(fi->kind), fi->field,
				field_name(fi->kind, fi->flags, fi->field), what,
				(unsigned long long)fi->got, (unsigned long long)fi->limit);
	default:
		return snprintf(buf, cap, "%s field %u (%s): %s", sb_kind_name(fi->kind), fi->field,
				field_name(fi->kind, fi->flags, fi->field), what);
	}
}
