/* Codec tests: every kind round-trips, msgpack-c reads what we write, and
 * each kind of malformed frame is refused with the exact error and field. */
#include <msgpack.h>
#include <stdlib.h>

#include <switchboard/proto.h>

#include "support/frames.h"
#include "support/testlib.h"

static int view_eq(struct sb_view a, struct sb_view b)
{
	if (a.ptr == NULL || b.ptr == NULL)
		return a.ptr == b.ptr;
	return a.len == b.len && memcmp(a.ptr, b.ptr, a.len) == 0;
}

static int msg_eq(const struct sb_msg *a, const struct sb_msg *b)
{
	return a->kind == b->kind && a->flags == b->flags && a->id == b->id &&
	       a->version == b->version && a->code == b->code && a->event == b->event &&
	       a->peer_id == b->peer_id && a->max_frame == b->max_frame &&
	       a->deadline_ms == b->deadline_ms && a->from == b->from &&
	       a->timeout_ms == b->timeout_ms && view_eq(a->name, b->name) &&
	       view_eq(a->outcome, b->outcome) && view_eq(a->peer, b->peer) &&
	       view_eq(a->to, b->to) && view_eq(a->role, b->role) && view_eq(a->text, b->text) &&
	       view_eq(a->mech, b->mech) && view_eq(a->nonce, b->nonce) &&
	       view_eq(a->proof, b->proof) && view_eq(a->app_code, b->app_code) &&
	       view_eq(a->headers, b->headers);
}

static void test_round_trip_every_kind(void)
{
	static const uint8_t nil = 0xc0;
	uint8_t buf[1024], head[1024];

	for (unsigned k = 1; k <= SB_KIND_MAX; k++) {
		struct sb_msg in, out;
		sample_msg(k, &in);
		long n = sb_encode(&in, buf, sizeof buf);
		CHECK(n > 0);
		CHECK_INT(sb_encoded_size(&in), n);
		CHECK_INT(sb_decode(buf, (size_t)n, SB_DECODE_PAYLOAD, &out, NULL), 0);
		CHECK(msg_eq(&in, &out));
		struct sb_view want = in.payload.ptr ? in.payload : bv(&nil, 1);
		CHECK(view_eq(out.payload, want));
		/* The id sits at the same offset in every kind. */
		CHECK_INT(buf[SB_ID_OFFSET - 1], 0xcf);

		/* Header + payload sent separately is the same frame. */
		long h = sb_encode_head(&in, head, sizeof head);
		CHECK(h > 0 && h + (long)want.len == n);
		CHECK(memcmp(head, buf, (size_t)h) == 0);
		CHECK(memcmp(buf + h, want.ptr, want.len) == 0);
		if (sb_test_failures)
			fprintf(stderr, "  kind %u (%s)\n", k, sb_kind_name(k));
	}
}

/* msgpack-c, which we did not write, must see a plain array whose last
 * element is the payload. */
static void test_msgpack_c_reads_our_frames(void)
{
	uint8_t buf[1024];

	for (unsigned k = 1; k <= SB_KIND_MAX; k++) {
		struct sb_msg in;
		sample_msg(k, &in);
		long n = sb_encode(&in, buf, sizeof buf);
		msgpack_unpacked u;
		size_t off = 0;
		msgpack_unpacked_init(&u);
		int rc = msgpack_unpack_next(&u, (const char *)buf + SB_PREFIX_LEN,
					     (size_t)n - SB_PREFIX_LEN, &off);
		CHECK_INT(rc, MSGPACK_UNPACK_SUCCESS);
		CHECK_INT(off, (size_t)n - SB_PREFIX_LEN);
		msgpack_object o = u.data;
		CHECK_INT(o.type, MSGPACK_OBJECT_ARRAY);
		if (o.type == MSGPACK_OBJECT_ARRAY && o.via.array.size >= 3) {
			CHECK_INT(o.via.array.ptr[0].via.u64, k);
			CHECK_INT(o.via.array.ptr[1].via.u64, in.flags);
			CHECK(o.via.array.ptr[2].via.u64 == in.id);
			msgpack_object last = o.via.array.ptr[o.via.array.size - 1];
			if (in.payload.ptr != NULL) {
				CHECK_INT(last.type, MSGPACK_OBJECT_MAP);
				CHECK_INT(last.via.map.size, 2);
			} else
				CHECK_INT(last.type, MSGPACK_OBJECT_NIL);
		}
		msgpack_unpacked_destroy(&u);
	}
}

static void test_patch_in_place(void)
{
	uint8_t buf[256];
	struct sb_msg m, out;

	sample_msg(SB_REQUEST, &m);
	long n = sb_encode(&m, buf, sizeof buf);
	CHECK_INT(sb_decode(buf, (size_t)n, 0, &out, NULL), 0);
	sb_patch_id(buf, 42);
	sb_patch_u32(buf, out.from_off, 9);
	sb_patch_u32(buf, out.timeout_ms_off, 250);
	CHECK_INT(sb_decode(buf, (size_t)n, SB_DECODE_PAYLOAD, &out, NULL), 0);
	CHECK(out.id == 42);
	CHECK_INT(out.from, 9);
	CHECK_INT(out.timeout_ms, 250);
	CHECK(view_eq(out.name, sv("transfer")));
}

static void test_nil_fields_and_catchall(void)
{
	uint8_t buf[256];
	struct sb_msg m, out;

	sample_msg(SB_REGISTER, &m);
	m.name.ptr = NULL; /* the catch-all handler */
	long n = sb_encode(&m, buf, sizeof buf);
	CHECK(n > 0);
	CHECK_INT(sb_decode(buf, (size_t)n, 0, &out, NULL), 0);
	CHECK(out.name.ptr == NULL);

	sample_msg(SB_HELLO, &m);
	m.peer.ptr = NULL; /* router assigns a name */
	n = sb_encode(&m, buf, sizeof buf);
	CHECK_INT(sb_decode(buf, (size_t)n, 0, &out, NULL), 0);
	CHECK(out.peer.ptr == NULL);

	sample_msg(SB_ERROR, &m);
	m.text = sv(""); /* empty message is allowed, nil is not */
	CHECK(sb_encode(&m, buf, sizeof buf) > 0);
	m.text.ptr = NULL;
	CHECK_INT(sb_encode(&m, buf, sizeof buf), SB_EINVAL);
}

static void test_encoder_refuses_what_decoder_would(void)
{
	uint8_t buf[1024];
	char longname[SB_NAME_MAX + 2];
	struct sb_msg m;

	memset(longname, 'a', sizeof longname - 1);
	longname[sizeof longname - 1] = 0;

	sample_msg(SB_REQUEST, &m);
	m.name = sv(longname);
	CHECK_INT(sb_encode(&m, buf, sizeof buf), SB_EINVAL);
	m.name = sv("has space");
	CHECK_INT(sb_encode(&m, buf, sizeof buf), SB_EINVAL);
	m.name = sv("ok");
	m.flags = SB_F_CHUNK; /* a REPLY flag, undefined for REQUEST */
	CHECK_INT(sb_encode(&m, buf, sizeof buf), SB_EINVAL);
	m.kind = 0;
	CHECK_INT(sb_encode(&m, buf, sizeof buf), SB_EINVAL);
	m.kind = SB_KIND_MAX + 1;
	CHECK_INT(sb_encoded_size(&m), SB_EINVAL);

	sample_msg(SB_ERROR, &m);
	m.code = SB_WIRE_CODE_MAX + 1;
	CHECK_INT(sb_encode(&m, buf, sizeof buf), SB_EINVAL);

	/* Every buffer one byte short of the frame is refused, never overrun. */
	sample_msg(SB_REQUEST, &m);
	long n = sb_encoded_size(&m);
	for (long cap = 0; cap < n; cap++) {
		uint8_t *tight = malloc((size_t)cap + 1);
		CHECK_INT(sb_encode(&m, tight, (size_t)cap), SB_ENOSPC);
		free(tight);
	}
	uint8_t *exact = malloc((size_t)n);
	CHECK_INT(sb_encode(&m, exact, (size_t)n), n);
	free(exact);
}

/* With every string at its limit, no kind's header passes SB_HEADER_MAX,
 * so a router can always route from the first SB_HEADER_MAX bytes. */
static void test_worst_case_header_fits(void)
{
	static char big[SB_TEXT_MAX + 1];
	static uint8_t head[4096];
	memset(big, 'x', SB_TEXT_MAX);

	for (unsigned k = 1; k <= SB_KIND_MAX; k++) {
		struct sb_msg m;
		sample_msg(k, &m);
		struct sb_view name = bv(big, SB_NAME_MAX), peer = bv(big, SB_PEER_MAX);
		if (m.name.ptr)
			m.name = name;
		if (m.outcome.ptr)
			m.outcome = name;
		m.peer = peer;
		if (m.to.ptr || k == SB_REQUEST || k == SB_SEND)
			m.to = peer;
		if (m.role.ptr)
			m.role = bv(big, SB_TOKEN_MAX);
		if (m.mech.ptr)
			m.mech = bv(big, SB_TOKEN_MAX);
		if (m.text.ptr)
			m.text = bv(big, SB_TEXT_MAX);
		if (m.nonce.ptr)
			m.nonce = bv(big, SB_NONCE_MAX);
		if (m.proof.ptr)
			m.proof = bv(big, SB_NONCE_MAX);
		m.id = UINT64_MAX;
		m.version = 0xffff;
		m.code = SB_WIRE_CODE_MAX;
		m.peer_id = UINT32_MAX;
		m.deadline_ms = UINT32_MAX;
		if (m.max_frame)
			m.max_frame = SB_FRAME_MAX_LIMIT;
		long h = sb_encode_head(&m, head, sizeof head);
		CHECK(h > 0);
		CHECK(h - (long)SB_PREFIX_LEN <= (long)SB_HEADER_MAX);
		if (k == SB_ERROR) { /* and with the element APP adds */
			m.flags |= SB_F_APP;
			m.code = (uint32_t)-SB_EAPP;
			m.app_code = bv(big, SB_APPCODE_MAX);
			h = sb_encode_head(&m, head, sizeof head);
			CHECK(h > 0);
			CHECK(h - (long)SB_PREFIX_LEN <= (long)SB_HEADER_MAX);
		}
		if (k == SB_SEND || k == SB_REQUEST) { /* and with a full header map */
			static uint8_t map[SB_HEADERS_MAX + 64];
			map[0] = 0xde; /* map16, 16 pairs */
			map[1] = 0;
			map[2] = SB_HEADERS_COUNT_MAX;
			size_t n = 3;
			for (unsigned i = 0; n + 2 + 2 + 1 <= SB_HEADERS_MAX; i++) {
				/* short distinct keys, then values that fill the map */
				map[n++] = 0xa2;
				map[n++] = (uint8_t)('a' + i / 26 % 26);
				map[n++] = (uint8_t)('a' + i % 26);
				if (i + 1 == SB_HEADERS_COUNT_MAX)
					break;
				map[n++] = 0xa0;
			}
			size_t left = SB_HEADERS_MAX - n - 3;
			map[n++] = 0xda;
			map[n++] = (uint8_t)(left >> 8);
			map[n++] = (uint8_t)left;
			CHECK(left > SB_HEADER_VALUE_MAX); /* so the last value is at its limit */
			left = SB_HEADER_VALUE_MAX;
			map[n - 2] = (uint8_t)(left >> 8);
			map[n - 1] = (uint8_t)left;
			memset(map + n, 'v', left);
			n += left;
			m.flags |= SB_F_HEADERS;
			m.headers = bv(map, n);
			h = sb_encode_head(&m, head, sizeof head);
			CHECK(h > 0);
			CHECK(h - (long)SB_PREFIX_LEN <= (long)SB_HEADER_MAX);
		}
	}
}

/* Headers: a flag adds a map before the payload, after the fixed-offset
 * fields; every rule of the map is checked both ways and named. */
static void test_header_frames(void)
{
	uint8_t f[4096], map[2048];
	char text[160];
	struct sb_fault_info fi;
	struct sb_header h[] = {
		{"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		{"device", "kitchen sensor"}};
	long hn = sb_headers_encode(h, 2, map, sizeof map);
	CHECK(hn > 0);
	struct sb_msg out, m = {.kind = SB_REQUEST,
				.flags = SB_F_HEADERS,
				.id = 9,
				.name = sv("transfer"),
				.from = 3,
				.timeout_ms = 500,
				.headers = bv(map, (size_t)hn),
				.payload = bv("\x81\xa1"
					      "a\x01",
					      4)};
	long n = sb_encode(&m, f, sizeof f);

	CHECK(n > 0);
	CHECK_INT(f[SB_PREFIX_LEN], 0x99); /* 9 elements */
	CHECK_INT(sb_decode(f, (size_t)n, SB_DECODE_PAYLOAD, &out, NULL), 0);
	CHECK(msg_eq(&m, &out));
	CHECK(view_eq(out.payload, m.payload));
	size_t vl = 0;
	const char *v = sb_headers_get(out.headers, "device", &vl);
	CHECK(v != NULL && vl == 14 && memcmp(v, "kitchen sensor", 14) == 0);
	CHECK(sb_headers_get(out.headers, "devic", NULL) == NULL);
	/* from and timeout_ms keep their offsets: the router patches them */
	struct sb_msg plain = m;
	plain.flags = 0;
	CHECK_INT(sb_decode(f, (size_t)n, 0, &out, NULL), 0);
	uint16_t from_off = out.from_off, to_off = out.timeout_ms_off;
	uint8_t g[512];
	long gn = sb_encode(&plain, g, sizeof g);
	CHECK_INT(sb_decode(g, (size_t)gn, 0, &out, NULL), 0);
	CHECK_INT(out.from_off, from_off);
	CHECK_INT(out.timeout_ms_off, to_off);

	/* The encoder refuses what the decoder would. */
	struct sb_header dup[] = {{"a", "1"}, {"a", "2"}};
	CHECK_INT(sb_headers_encode(dup, 2, map, sizeof map), SB_EINVAL);
	struct sb_header sp[] = {{"two words", "1"}};
	CHECK_INT(sb_headers_encode(sp, 1, map, sizeof map), SB_EINVAL);
	struct sb_header ctl[] = {{"k", "a\nb"}};
	CHECK_INT(sb_headers_encode(ctl, 1, map, sizeof map), SB_EINVAL);
	struct sb_header empty_key[] = {{"", "x"}};
	CHECK_INT(sb_headers_encode(empty_key, 1, map, sizeof map), SB_EINVAL);
	static char longv[SB_HEADER_VALUE_MAX + 2], longk[SB_HEADER_KEY_MAX + 2];
	memset(longv, 'v', SB_HEADER_VALUE_MAX + 1);
	memset(longk, 'k', SB_HEADER_KEY_MAX + 1);
	struct sb_header lv[] = {{"k", longv}}, lk[] = {{longk, "v"}};
	CHECK_INT(sb_headers_encode(lv, 1, map, sizeof map), SB_ETOOLARGE);
	CHECK_INT(sb_headers_encode(lk, 1, map, sizeof map), SB_ETOOLARGE);
	longv[SB_HEADER_VALUE_MAX] = 0; /* at the limit: fine alone */
	CHECK(sb_headers_encode(lv, 1, map, sizeof map) > 0);
	struct sb_header many[SB_HEADERS_COUNT_MAX + 1];
	char keys[SB_HEADERS_COUNT_MAX + 1][4];
	for (unsigned i = 0; i <= SB_HEADERS_COUNT_MAX; i++) {
		snprintf(keys[i], sizeof keys[i], "k%u", i);
		many[i] = (struct sb_header){keys[i], longv};
	}
	CHECK_INT(sb_headers_encode(many, SB_HEADERS_COUNT_MAX + 1, map, sizeof map), SB_ETOOLARGE);
	CHECK_INT(sb_headers_encode(many, 4, map, sizeof map), SB_ETOOLARGE); /* > 1 KiB */
	for (unsigned i = 0; i <= SB_HEADERS_COUNT_MAX; i++)
		many[i].value = "v";
	CHECK(sb_headers_encode(many, SB_HEADERS_COUNT_MAX, map, sizeof map) > 0);
	CHECK_INT(sb_headers_encode(h, 0, map, sizeof map), SB_EINVAL);
	struct sb_msg bad = m;
	bad.flags = 0; /* a plain REQUEST ignores headers */
	CHECK(sb_encoded_size(&bad) > 0);
	bad = m;
	bad.headers = bv("\x81\xa1"
			 "a",
			 3); /* a key without its value */
	CHECK_INT(sb_encoded_size(&bad), SB_EINVAL);

	/* Faults name the headers element. */
	struct sb_header d2[] = {{"a", "1"}, {"b", "2"}};
	m.headers = bv(map, (size_t)sb_headers_encode(d2, 2, map, sizeof map));
	n = sb_encode(&m, f, sizeof f);
	f[n - 4 - 3] = 'a'; /* "b" -> "a": the payload is 4 bytes, then "2" */
	CHECK_INT(sb_decode(f, (size_t)n, 0, &out, &fi), SB_EBADFRAME);
	sb_fault_describe(&fi, text, sizeof text);
	CHECK_STR(text, "REQUEST field 7 (headers): duplicate header key");
	n = sb_encode(&m, f, sizeof f);
	f[n - 4 - 1] = 0x01; /* a value "\x01" */
	CHECK_INT(sb_decode(f, (size_t)n, 0, &out, &fi), SB_EBADFRAME);
	sb_fault_describe(&fi, text, sizeof text);
	CHECK_STR(text, "REQUEST field 7 (headers): invalid characters");
	n = sb_encode(&m, f, sizeof f);
	f[n - 4 - 9] = 0x80; /* an empty map: the flag says there are headers */
	CHECK_INT(sb_decode(f, (size_t)n, 0, &out, &fi), SB_EBADFRAME);
	sb_fault_describe(&fi, text, sizeof text);
	CHECK_STR(text, "REQUEST field 7 (headers): field too short (0, limit 1)");
	n = sb_encode(&m, f, sizeof f);
	f[n - 4 - 9] = 0x81; /* one pair said, two there: the second is the payload */
	CHECK_INT(sb_decode(f, (size_t)n, SB_DECODE_PAYLOAD, &out, &fi), SB_EBADFRAME);
}

/* An application error: code 19, flag APP and its code as an eighth
 * element; the two never come apart, and faults name the element. */
static void test_application_error_frames(void)
{
	uint8_t f[256];
	char text[160];
	struct sb_fault_info fi;
	struct sb_msg out, m = {.kind = SB_ERROR,
				.flags = SB_F_APP,
				.id = 7,
				.code = (uint32_t)-SB_EAPP,
				.text = sv("the card was declined"),
				.app_code = sv("CARD_DECLINED"),
				.payload = bv("\x81\xa5limit\x64", 8)};
	long n = sb_encode(&m, f, sizeof f);

	CHECK(n > 0);
	CHECK_INT(f[SB_PREFIX_LEN], 0x98); /* 8 elements */
	CHECK_INT(sb_decode(f, (size_t)n, SB_DECODE_PAYLOAD, &out, NULL), 0);
	CHECK(msg_eq(&m, &out));
	CHECK(view_eq(out.payload, m.payload));

	/* One without the other is refused both ways. */
	struct sb_msg bad = m;
	bad.code = (uint32_t)-SB_EINTERNAL;
	CHECK_INT(sb_encoded_size(&bad), SB_EINVAL);
	bad = m;
	bad.flags = 0;
	CHECK_INT(sb_encoded_size(&bad), SB_EINVAL);
	bad.code = (uint32_t)-SB_EINTERNAL; /* a plain ERROR ignores app_code */
	CHECK(sb_encoded_size(&bad) > 0);
	f[SB_PREFIX_LEN + 12] = 18; /* code 19 -> 18, the APP element still there */
	CHECK_INT(sb_decode(f, (size_t)n, 0, &out, &fi), SB_EBADFRAME);
	sb_fault_describe(&fi, text, sizeof text);
	CHECK_STR(text, "ERROR field 3 (code): code 19 (application error) and flag APP go "
			"together");
	bad = m;
	bad.app_code = sv("TWO WORDS");
	CHECK_INT(sb_encoded_size(&bad), SB_EINVAL);

	/* Faults name app_code, and the payload after it. */
	n = sb_encode(&m, f, sizeof f);
	f[n - 10] = ' '; /* "CARD_DECLI ED" */
	CHECK_INT(sb_decode(f, (size_t)n, 0, &out, &fi), SB_EBADFRAME);
	sb_fault_describe(&fi, text, sizeof text);
	CHECK_STR(text, "ERROR field 6 (app_code): invalid characters");
	n = sb_encode(&m, f, sizeof f);
	f[n - 1] = 0xc1; /* never used in MessagePack */
	CHECK_INT(sb_decode(f, (size_t)n, SB_DECODE_PAYLOAD, &out, &fi), SB_EBADFRAME);
	sb_fault_describe(&fi, text, sizeof text);
	CHECK_STR(text, "ERROR field 7 (payload): payload is not one MessagePack value");
}

/* ---- malformed input ---------------------------------------------------- */

/* Builds a frame byte by byte; finish() writes the length prefix. */
struct raw {
	uint8_t b[1 << 16];
	size_t n;
};

static void put(struct raw *r, const void *p, size_t n)
{
	memcpy(r->b + r->n, p, n);
	r->n += n;
}

static void put1(struct raw *r, uint8_t c)
{
	r->b[r->n++] = c;
}

static void put_str(struct raw *r, const char *s)
{
	size_t n = strlen(s);
	if (n < 32)
		put1(r, (uint8_t)(0xa0 | n));
	else if (n < 256) {
		put1(r, 0xd9);
		put1(r, (uint8_t)n);
	} else {
		put1(r, 0xda);
		put1(r, (uint8_t)(n >> 8));
		put1(r, (uint8_t)n);
	}
	put(r, s, n);
}

static void put_u32f(struct raw *r, uint32_t v)
{
	uint8_t b[5] = {0xce, (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8),
			(uint8_t)v};
	put(r, b, 5);
}

static void put_id(struct raw *r, uint64_t id)
{
	put1(r, 0xcf);
	for (int i = 7; i >= 0; i--)
		put1(r, (uint8_t)(id >> (8 * i)));
}

/* Starts a frame: room for the prefix, fixarray of n, kind, flags. */
static void start(struct raw *r, unsigned n, unsigned kind, unsigned flags)
{
	r->n = SB_PREFIX_LEN;
	put1(r, (uint8_t)(0x90 | n));
	put1(r, (uint8_t)kind);
	put1(r, (uint8_t)flags);
}

static size_t finish(struct raw *r)
{
	uint32_t body = (uint32_t)(r->n - SB_PREFIX_LEN);
	r->b[0] = (uint8_t)(body >> 24);
	r->b[1] = (uint8_t)(body >> 16);
	r->b[2] = (uint8_t)(body >> 8);
	r->b[3] = (uint8_t)body;
	return r->n;
}

/* A well-formed REQUEST up to (not including) the field at index `upto`. */
static void request_upto(struct raw *r, unsigned upto)
{
	start(r, 8, SB_REQUEST, 0);
	put_id(r, 1);
	if (upto > 3)
		put_str(r, "transfer");
	if (upto > 4)
		put1(r, 0xc0);
	if (upto > 5)
		put_u32f(r, 0);
	if (upto > 6)
		put_u32f(r, 1000);
}

/* A whole REQUEST whose name is the given bytes (str8 or str16). */
static void request_named(struct raw *r, const void *name, size_t n)
{
	request_upto(r, 3);
	if (n < 256) {
		put1(r, 0xd9);
		put1(r, (uint8_t)n);
	} else {
		put1(r, 0xda);
		put1(r, (uint8_t)(n >> 8));
		put1(r, (uint8_t)n);
	}
	put(r, name, n);
	put1(r, 0xc0);
	put_u32f(r, 0);
	put_u32f(r, 0);
	put1(r, 0xc0);
	finish(r);
}

static struct raw R;

/* Decodes R and checks the outcome. */
#define EXPECT(opts, rc, f, fld)                                                                   \
	do {                                                                                       \
		struct sb_msg m_;                                                                  \
		struct sb_fault_info fi_;                                                          \
		CHECK_INT(sb_decode(R.b, R.n, opts, &m_, &fi_), rc);                               \
		CHECK_INT(fi_.fault, f);                                                           \
		CHECK_INT(fi_.field, fld);                                                         \
	} while (0)

static void test_malformed_framing(void)
{
	/* Prefix and frame disagree. */
	request_upto(&R, 7);
	put1(&R, 0xc0);
	finish(&R);
	R.n--;
	EXPECT(0, SB_EBADFRAME, SB_FAULT_LENGTH, 0);
	R.n = 3;
	EXPECT(0, SB_EBADFRAME, SB_FAULT_LENGTH, 0);

	/* Body shorter than the smallest frame. */
	start(&R, 4, SB_PING, 0);
	put1(&R, 0xcf);
	finish(&R);
	EXPECT(0, SB_EBADFRAME, SB_FAULT_RUNT, 0);

	/* Not a fixarray: a map, and an array16 (we only accept the canonical form). */
	R.n = SB_PREFIX_LEN;
	put1(&R, 0x84);
	put_id(&R, 0);
	put_id(&R, 0);
	finish(&R);
	EXPECT(0, SB_EBADFRAME, SB_FAULT_NOT_ARRAY, 0);
	R.n = SB_PREFIX_LEN;
	put1(&R, 0xdc);
	put1(&R, 0);
	put1(&R, 4);
	put1(&R, SB_PING);
	put1(&R, 0);
	put_id(&R, 0);
	put1(&R, 0xc0);
	finish(&R);
	EXPECT(0, SB_EBADFRAME, SB_FAULT_NOT_ARRAY, 0);
}

static void test_malformed_kind_flags_id(void)
{
	/* Unknown kinds are "unsupported", so a newer peer gets a useful answer. */
	start(&R, 4, 0, 0);
	put_id(&R, 0);
	put1(&R, 0xc0);
	finish(&R);
	EXPECT(0, SB_EUNSUPPORTED, SB_FAULT_KIND, 0);
	R.b[SB_PREFIX_LEN + 1] = SB_KIND_MAX + 1;
	EXPECT(0, SB_EUNSUPPORTED, SB_FAULT_KIND, 0);
	R.b[SB_PREFIX_LEN + 1] = 0xcc; /* kind not a fixint */
	EXPECT(0, SB_EBADFRAME, SB_FAULT_TYPE, 0);

	/* Wrong element count for the kind. */
	start(&R, 7, SB_REQUEST, 0);
	put_id(&R, 1);
	put_str(&R, "transfer");
	put1(&R, 0xc0);
	put_u32f(&R, 0);
	put1(&R, 0xc0);
	finish(&R);
	EXPECT(0, SB_EBADFRAME, SB_FAULT_ARITY, 0);

	/* A flag bit the kind does not define; flags not a fixint. */
	request_upto(&R, 7);
	put1(&R, 0xc0);
	finish(&R);
	R.b[SB_PREFIX_LEN + 2] = 0x04; /* 0x01 BROADCAST and 0x02 HEADERS are REQUEST's */
	EXPECT(0, SB_EBADFRAME, SB_FAULT_FLAGS, 1);
	R.b[SB_PREFIX_LEN + 2] = 0xc3;
	EXPECT(0, SB_EBADFRAME, SB_FAULT_TYPE, 1);

	/* An id in a narrower integer width could not be patched in place. */
	start(&R, 4, SB_PING, 0);
	put1(&R, 0xce);
	put(&R, "\0\0\0\1", 4);
	put(&R, "\xc0\xc0\xc0\xc0\xc0", 5); /* padding past SB_BODY_MIN */
	finish(&R);
	EXPECT(0, SB_EBADFRAME, SB_FAULT_WIDTH, 2);
	R.b[SB_PREFIX_LEN + 3] = 0xa4; /* a string where the id goes */
	EXPECT(0, SB_EBADFRAME, SB_FAULT_TYPE, 2);
}

static void test_malformed_fields(void)
{
	char s[300];

	/* A map where the name belongs: nested garbage in the header. */
	request_upto(&R, 3);
	put1(&R, 0x81);
	put_str(&R, "k");
	put_str(&R, "v");
	put1(&R, 0xc0);
	put_u32f(&R, 0);
	put_u32f(&R, 0);
	put1(&R, 0xc0);
	finish(&R);
	EXPECT(0, SB_EBADFRAME, SB_FAULT_TYPE, 3);

	/* Name: empty, too long, space, control byte, overlong UTF-8. */
	const struct {
		const char *name;
		int rc;
		enum sb_fault f;
	} names[] = {
		{"", SB_EBADFRAME, SB_FAULT_TOO_SHORT},
		{"user create", SB_EBADFRAME, SB_FAULT_CHARS},
		{"user\x01", SB_EBADFRAME, SB_FAULT_CHARS},
		{"user\x7f", SB_EBADFRAME, SB_FAULT_CHARS},
		{"\xc0\xae", SB_EBADFRAME, SB_FAULT_CHARS},         /* overlong '.' */
		{"\xed\xa0\x80", SB_EBADFRAME, SB_FAULT_CHARS},     /* surrogate */
		{"\xf4\x90\x80\x80", SB_EBADFRAME, SB_FAULT_CHARS}, /* past U+10FFFF */
		{"caf\xc3", SB_EBADFRAME, SB_FAULT_CHARS},          /* cut sequence */
		{"caf\xc3\xa9", 0, SB_FAULT_NONE},                  /* café is fine */
		{"\xf0\x9f\x93\xa6.ship", 0, SB_FAULT_NONE},
	};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		request_named(&R, names[i].name, strlen(names[i].name));
		EXPECT(0, names[i].rc, names[i].f, names[i].rc ? 3 : 0);
	}
	memset(s, 'n', 256);
	s[256] = 0;
	request_named(&R, s, strlen(s));
	EXPECT(0, SB_ETOOLARGE, SB_FAULT_TOO_LONG, 3);
	struct sb_fault_info fi;
	struct sb_msg m;
	char text[160];
	sb_decode(R.b, R.n, 0, &m, &fi);
	sb_fault_describe(&fi, text, sizeof text);
	CHECK_STR(text, "REQUEST field 3 (name): field too long (256, limit 255)");
	s[255] = 0; /* exactly the limit is fine */
	request_named(&R, s, strlen(s));
	EXPECT(0, 0, SB_FAULT_NONE, 0);

	/* from and timeout must be fixed width, and integers. */
	request_upto(&R, 5);
	put1(&R, 0xcd);
	put(&R, "\0\1", 2);
	put_u32f(&R, 0);
	put1(&R, 0xc0);
	finish(&R);
	EXPECT(0, SB_EBADFRAME, SB_FAULT_WIDTH, 5);
	request_upto(&R, 6);
	put_str(&R, "5s");
	put1(&R, 0xc0);
	finish(&R);
	EXPECT(0, SB_EBADFRAME, SB_FAULT_TYPE, 6);
	request_upto(&R, 6);
	put1(&R, 0x05); /* fixint timeout: right type, wrong width */
	put1(&R, 0xc0);
	finish(&R);
	EXPECT(0, SB_EBADFRAME, SB_FAULT_WIDTH, 6);
}

/* Reference for the name rules, byte by byte and as plainly as possible. */
static int ref_name_ok(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n;) {
		uint8_t c = p[i];
		if (c < 0x80) {
			if (c <= 0x20 || c == 0x7f)
				return 0;
			i++;
			continue;
		}
		size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 0;
		if (len == 0 || i + len > n)
			return 0;
		uint32_t cp = c & (0x7f >> len);
		for (size_t k = 1; k < len; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (p[i + k] & 0x3f);
		}
		uint32_t min = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += len;
	}
	return 1;
}

/* Random names from edge bytes, long enough to cross 8-byte words, must be
 * judged exactly as the reference judges them. */
static void test_name_characters_match_reference(void)
{
	static const uint8_t alphabet[] = {'a',  'Z',  '.',  '~',  '!',  0x20, 0x21, 0x7e, 0x7f,
					   0x00, 0x1f, 0x80, 0xbf, 0xc0, 0xc2, 0xc3, 0xa9, 0xe0,
					   0xa0, 0xed, 0x9f, 0xf0, 0x90, 0xf4, 0x8f, 0xff};
	unsigned seed = 99;
	uint8_t name[40];

	for (int round = 0; round < 20000; round++) {
		seed = seed * 1103515245u + 12345u;
		size_t n = 1 + (seed >> 16) % sizeof name;
		for (size_t i = 0; i < n; i++) {
			seed = seed * 1103515245u + 12345u;
			/* Mostly plain letters, so long valid runs occur. */
			name[i] = (seed >> 20) % 4 ? 'a' + (seed >> 8) % 26
						   : alphabet[(seed >> 16) % sizeof alphabet];
		}
		request_named(&R, name, n);
		struct sb_msg m;
		int ok = sb_decode(R.b, R.n, 0, &m, NULL) == 0;
		if (ok != ref_name_ok(name, n)) {
			fprintf(stderr, "  name of %zu bytes judged %d\n", n, ok);
			CHECK(0);
			break;
		}
	}
}

static void test_malformed_numbers(void)
{
	/* ERROR codes live in 1..63. */
	for (unsigned code = 0; code <= 64; code += 64) {
		start(&R, 7, SB_ERROR, 0);
		put_id(&R, 1);
		put1(&R, (uint8_t)code);
		put_str(&R, "x");
		put1(&R, 0xc0);
		put1(&R, 0xc0);
		finish(&R);
		EXPECT(0, SB_EBADFRAME, SB_FAULT_RANGE, 3);
	}
	/* A negative integer where an unsigned one belongs. */
	start(&R, 7, SB_ERROR, 0);
	put_id(&R, 1);
	put1(&R, 0xff); /* -1 */
	put_str(&R, "x");
	put1(&R, 0xc0);
	put1(&R, 0xc0);
	finish(&R);
	EXPECT(0, SB_EBADFRAME, SB_FAULT_TYPE, 3);

	/* HELLO version 0 and a WELCOME max_frame over the hard limit. */
	start(&R, 7, SB_HELLO, 0);
	put_id(&R, 0);
	put1(&R, 0);
	put1(&R, 0xc0);
	put_str(&R, "client");
	put1(&R, 0xc0);
	finish(&R);
	EXPECT(0, SB_EBADFRAME, SB_FAULT_RANGE, 3);
	start(&R, 8, SB_WELCOME, 0);
	put_id(&R, 0);
	put1(&R, 1);
	put_str(&R, "A001");
	put1(&R, 1);
	put_u32f(&R, SB_FRAME_MAX_LIMIT + 1);
	put1(&R, 0xc0);
	finish(&R);
	EXPECT(0, SB_EBADFRAME, SB_FAULT_RANGE, 6);

	/* bin too short for a nonce. */
	start(&R, 6, SB_CHALLENGE, 0);
	put_id(&R, 0);
	put(&R, "\xc4\x04wxyz", 6);
	put_str(&R, "hmac-sha256");
	put1(&R, 0xc0);
	finish(&R);
	EXPECT(0, SB_EBADFRAME, SB_FAULT_TOO_SHORT, 3);
}

static void test_truncation(void)
{
	/* A string length that runs past the frame. */
	request_upto(&R, 3);
	put1(&R, 0xd9);
	put1(&R, 200);
	put(&R, "transfer", 8);
	finish(&R);
	EXPECT(0, SB_EBADFRAME, SB_FAULT_TRUNCATED, 3);

	/* A str32 length near 2^32 must not wrap a pointer. */
	request_upto(&R, 3);
	put(&R, "\xdb\xff\xff\xff\xf0", 5);
	put(&R, "xx", 2);
	finish(&R);
	EXPECT(0, SB_EBADFRAME, SB_FAULT_TRUNCATED, 3);

	/* Header complete, payload missing. */
	request_upto(&R, 7);
	finish(&R);
	EXPECT(0, SB_EBADFRAME, SB_FAULT_TRUNCATED, 7);

	/* Frame ends inside the fixed-width from. */
	request_upto(&R, 5);
	put(&R, "\xce\0\0", 3);
	finish(&R);
	EXPECT(0, SB_EBADFRAME, SB_FAULT_TRUNCATED, 5);
}

static void test_payload_check(void)
{
	/* The router forwards without looking; the client asks for the check. */
	request_upto(&R, 7);
	put(&R, "\x92\x01", 2); /* array of 2 with one element */
	finish(&R);
	EXPECT(0, 0, SB_FAULT_NONE, 0);
	EXPECT(SB_DECODE_PAYLOAD, SB_EBADFRAME, SB_FAULT_PAYLOAD, 7);

	request_upto(&R, 7);
	put(&R, "\x01\x02", 2); /* two values */
	finish(&R);
	EXPECT(SB_DECODE_PAYLOAD, SB_EBADFRAME, SB_FAULT_PAYLOAD, 7);

	request_upto(&R, 7);
	put(&R, "\xdd\xff\xff\xff\xff\x01", 6); /* claims 4 billion elements */
	finish(&R);
	EXPECT(SB_DECODE_PAYLOAD, SB_EBADFRAME, SB_FAULT_PAYLOAD, 7);

	request_upto(&R, 7);
	put(&R, "\x91\xc1", 2); /* the never-used byte */
	finish(&R);
	EXPECT(SB_DECODE_PAYLOAD, SB_EBADFRAME, SB_FAULT_PAYLOAD, 7);

	/* Deep nesting is fine: the walk keeps a count, not a stack. */
	request_upto(&R, 7);
	for (int i = 0; i < 10000; i++)
		put1(&R, 0x91);
	put1(&R, 0xc0);
	finish(&R);
	EXPECT(SB_DECODE_PAYLOAD, 0, SB_FAULT_NONE, 0);

	/* Every MessagePack type the walker knows. */
	static const uint8_t all[] = {
		0xdc, 0,    19,   0xc0, 0xc2, 0xc3, 0x7f, 0xe0, 0xcc, 1,    0xcd, 0, 1,    0xd0,
		0x80, 0xd1, 0,    1,    0xd2, 0,    0,    0,    1,    0xd3, 0,    0, 0,    0,
		0,    0,    0,    1,    0xca, 0,    0,    0,    0,    0xcb, 0,    0, 0,    0,
		0,    0,    0,    0,    0xa1, 'x',  0xc4, 1,    'b',  0xd4, 1,    0, 0xc7, 1,
		5,    'e',  0x80, 0xde, 0,    1,    0xa1, 'k',  0xdc, 0,    0};
	CHECK_INT(sb_payload_check(all, sizeof all), 0);
	for (size_t cut = 0; cut < sizeof all; cut++)
		CHECK_INT(sb_payload_check(all, cut), SB_EBADFRAME);
}

static void test_oversize_frame(void)
{
	size_t len = SB_PREFIX_LEN + SB_FRAME_MAX_LIMIT + 1;
	uint8_t *big = calloc(1, len);
	struct sb_msg m;
	struct sb_fault_info fi;

	big[0] = (uint8_t)((len - 4) >> 24);
	big[1] = (uint8_t)((len - 4) >> 16);
	big[2] = (uint8_t)((len - 4) >> 8);
	big[3] = (uint8_t)(len - 4);
	CHECK_INT(sb_decode(big, len, 0, &m, &fi), SB_ETOOLARGE);
	CHECK_INT(fi.fault, SB_FAULT_OVERSIZE);
	free(big);
}

static void test_error_texts(void)
{
	CHECK_STR(sb_strerror(SB_ENOHANDLER), "no handler");
	CHECK_STR(sb_strerror(SB_ENOTCONNECTED), "peer not connected");
	CHECK_STR(sb_strerror(SB_EDUPNAME), "duplicate name");
	CHECK_STR(sb_strerror(SB_ENOSPC), "buffer too small");
	CHECK_STR(sb_strerror(-50), "unknown error");
	CHECK_STR(sb_strerror(7), "unknown error");
	CHECK_STR(sb_errname(SB_ETIMEOUT), "ETIMEOUT");
	for (int e = SB_EAPP; e < 0; e++)
		CHECK(strcmp(sb_strerror(e), "unknown error") != 0);
	CHECK_STR(sb_kind_name(SB_REQUEST), "REQUEST");
	CHECK_STR(sb_kind_name(99), "?");
	CHECK_INT(sb_fault_code(SB_FAULT_TOO_LONG), SB_ETOOLARGE);
	CHECK_INT(sb_fault_code(SB_FAULT_KIND), SB_EUNSUPPORTED);
	CHECK_INT(sb_fault_code(SB_FAULT_CHARS), SB_EBADFRAME);
}

/* Fault texts name a field as the kind table does (docs/protocol.md):
 * SUBSCRIBE's third field is its topic, GOODBYE's its reason, whatever
 * members of struct sb_msg carry them. */
static void test_fault_texts_use_the_kind_table_names(void)
{
	uint8_t f[128];
	char text[160];
	struct sb_fault_info fi;
	struct sb_msg m = {.kind = SB_SUBSCRIBE, .id = 1, .name = sv("presence")};
	long n = sb_encode(&m, f, sizeof f);
	f[n - 4] = ' '; /* "prese ce" */
	CHECK_INT(sb_decode(f, (size_t)n, 0, &m, &fi), SB_EBADFRAME);
	sb_fault_describe(&fi, text, sizeof text);
	CHECK_STR(text, "SUBSCRIBE field 3 (topic): invalid characters");

	struct sb_msg bye = {.kind = SB_GOODBYE, .text = sv("bye"), .deadline_ms = 5};
	n = sb_encode(&bye, f, sizeof f);
	f[n - 4] = 0xff; /* "b\xffe", then deadline_ms 5 and the nil payload */
	CHECK_INT(sb_decode(f, (size_t)n, 0, &m, &fi), SB_EBADFRAME);
	sb_fault_describe(&fi, text, sizeof text);
	CHECK_STR(text, "GOODBYE field 3 (reason): invalid characters");
}

/* Presence events have the names docs/protocol.md's table gives them. */
static void test_presence_event_names(void)
{
	CHECK_STR(sb_presence_name(SB_PEER_CONNECTED), "connected");
	CHECK_STR(sb_presence_name(SB_PEER_DISCONNECTED), "disconnected");
	CHECK_STR(sb_presence_name(SB_PEER_DRAINING), "draining");
	CHECK_STR(sb_presence_name(SB_PEER_IDENTITY), "identity");
	CHECK_STR(sb_presence_name((enum sb_presence_event)99), "?");
	CHECK_STR(sb_presence_name((enum sb_presence_event)0), "?"); /* the values start at 1 */
}

int main(void)
{
	RUN(test_round_trip_every_kind);
	RUN(test_presence_event_names);
	RUN(test_msgpack_c_reads_our_frames);
	RUN(test_patch_in_place);
	RUN(test_nil_fields_and_catchall);
	RUN(test_encoder_refuses_what_decoder_would);
	RUN(test_worst_case_header_fits);
	RUN(test_header_frames);
	RUN(test_application_error_frames);
	RUN(test_malformed_framing);
	RUN(test_malformed_kind_flags_id);
	RUN(test_malformed_fields);
	RUN(test_name_characters_match_reference);
	RUN(test_malformed_numbers);
	RUN(test_truncation);
	RUN(test_payload_check);
	RUN(test_oversize_frame);
	RUN(test_error_texts);
	RUN(test_fault_texts_use_the_kind_table_names);
	return TEST_EXIT();
}
