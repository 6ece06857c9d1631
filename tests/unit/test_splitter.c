/* Splitter tests: a stream of frames cut at every possible place, or fed one
 * byte at a time, comes out as the same frames; bad lengths kill the stream. */
#include <stdlib.h>

#include <switchboard/proto.h>

#include "support/frames.h"
#include "support/testlib.h"

/* A stream of one frame per kind plus a few repeats, and where each starts. */
static uint8_t stream[4096];
static size_t stream_len;
static size_t starts[64];
static size_t nframes;

static void build_stream(void)
{
	stream_len = nframes = 0;
	for (unsigned rep = 0; rep < 2; rep++)
		for (unsigned k = 1; k <= SB_KIND_MAX; k++) {
			struct sb_msg m;
			sample_msg(k, &m);
			starts[nframes++] = stream_len;
			long n = sb_encode(&m, stream + stream_len, sizeof stream - stream_len);
			CHECK(n > 0);
			stream_len += (size_t)n;
		}
	starts[nframes] = stream_len;
}

/* Feeds stream cut at the given points and checks every frame comes out
 * whole, in order, byte-identical. Returns frames that were zero-copy. */
static size_t feed(const size_t *cuts, size_t ncuts)
{
	struct sb_splitter *s = sb_splitter_new(0);
	size_t got = 0, zero_copy = 0, from = 0;

	for (size_t c = 0; c <= ncuts; c++) {
		size_t to = c < ncuts ? cuts[c] : stream_len;
		const uint8_t *in = stream + from;
		size_t len = to - from;
		struct sb_view f;
		int rc;
		while ((rc = sb_splitter_next(s, &in, &len, &f, NULL)) == 1) {
			size_t want = starts[got + 1] - starts[got];
			CHECK(got < nframes);
			CHECK_INT(f.len, want);
			CHECK(memcmp(f.ptr, stream + starts[got], want) == 0);
			if (f.ptr >= stream && f.ptr < stream + stream_len)
				zero_copy++;
			got++;
		}
		CHECK_INT(rc, 0);
		CHECK_INT(len, 0);
		from = to;
	}
	CHECK_INT(got, nframes);
	CHECK_INT(sb_splitter_buffered(s), 0);
	sb_splitter_free(s);
	return zero_copy;
}

static void test_whole_buffer_is_zero_copy(void)
{
	CHECK_INT(feed(NULL, 0), nframes);
}

static void test_every_split_point(void)
{
	for (size_t a = 0; a <= stream_len; a++)
		feed(&a, 1);
}

static void test_every_pair_of_split_points(void)
{
	/* Two cuts catch a frame split in three, prefix split from body, etc. */
	for (size_t a = 0; a <= stream_len; a += 3)
		for (size_t b = a; b <= stream_len; b += 5) {
			size_t cuts[2] = {a, b};
			feed(cuts, 2);
		}
}

static void test_one_byte_at_a_time(void)
{
	size_t *cuts = malloc(stream_len * sizeof *cuts);
	for (size_t i = 0; i < stream_len; i++)
		cuts[i] = i + 1;
	CHECK_INT(feed(cuts, stream_len - 1), 0);
	free(cuts);
}

static void test_random_pieces(void)
{
	unsigned seed = 12345;
	size_t cuts[200];

	for (int round = 0; round < 500; round++) {
		size_t n = 0, at = 0;
		while (n < 200) {
			seed = seed * 1103515245u + 12345u;
			at += 1 + (seed >> 16) % 97;
			if (at >= stream_len)
				break;
			cuts[n++] = at;
		}
		feed(cuts, n);
	}
}

/* A frame larger than the splitter keeps around, cut into pieces. */
static void test_big_frame_straddling_pieces(void)
{
	size_t plen = 200000;
	uint8_t *payload = malloc(plen), *frame = malloc(plen + 64);
	struct sb_msg m;
	payload[0] = 0xc6; /* bin32 */
	payload[1] = 0;
	payload[2] = (uint8_t)((plen - 5) >> 16);
	payload[3] = (uint8_t)((plen - 5) >> 8);
	payload[4] = (uint8_t)(plen - 5);
	for (size_t i = 5; i < plen; i++)
		payload[i] = (uint8_t)(i * 7);
	sample_msg(SB_REPLY, &m);
	m.payload = bv(payload, plen);
	long n = sb_encode(&m, frame, plen + 64);
	CHECK(n > 0);

	struct sb_splitter *s = sb_splitter_new(0);
	struct sb_view f;
	size_t off = 0, frames = 0;
	while (off < (size_t)n) {
		size_t piece = (size_t)n - off < 4096 ? (size_t)n - off : 4096;
		const uint8_t *in = frame + off;
		size_t len = piece;
		int rc;
		while ((rc = sb_splitter_next(s, &in, &len, &f, NULL)) == 1) {
			struct sb_msg out;
			CHECK_INT(f.len, n);
			CHECK(memcmp(f.ptr, frame, (size_t)n) == 0);
			CHECK_INT(sb_decode(f.ptr, f.len, SB_DECODE_PAYLOAD, &out, NULL), 0);
			frames++;
		}
		CHECK_INT(rc, 0);
		if (off + piece < (size_t)n)
			CHECK_INT(sb_splitter_buffered(s), off + piece);
		off += piece;
	}
	CHECK_INT(frames, 1);

	/* After the big one, a small frame still comes through. */
	const uint8_t *in = stream;
	size_t len = starts[1];
	CHECK_INT(sb_splitter_next(s, &in, &len, &f, NULL), 1);
	CHECK_INT(f.len, starts[1]);
	sb_splitter_free(s);
	free(payload);
	free(frame);
}

static void test_oversize_and_runt_kill_the_stream(void)
{
	struct sb_fault_info fi;
	struct sb_view f;

	/* 101-byte body against a 100-byte limit, even fed one byte at a time. */
	uint8_t over[4] = {0, 0, 0, 101};
	for (int bytewise = 0; bytewise < 2; bytewise++) {
		struct sb_splitter *s = sb_splitter_new(100);
		const uint8_t *in = over;
		size_t len = bytewise ? 1 : 4;
		int rc = 0;
		for (int i = 0; i < 4 && rc == 0; i++) {
			rc = sb_splitter_next(s, &in, &len, &f, &fi);
			if (bytewise)
				len = 1;
		}
		CHECK_INT(rc, SB_ETOOLARGE);
		CHECK_INT(fi.fault, SB_FAULT_OVERSIZE);
		CHECK_INT(fi.got, 101);
		CHECK_INT(fi.limit, 100);
		/* Sticky: later input is refused with the same error. */
		in = stream;
		len = stream_len;
		CHECK_INT(sb_splitter_next(s, &in, &len, &f, &fi), SB_ETOOLARGE);
		sb_splitter_free(s);
	}

	/* Exactly at the limit is accepted. */
	struct sb_splitter *s = sb_splitter_new(100);
	uint8_t at[4] = {0, 0, 0, 100};
	const uint8_t *in = at;
	size_t len = 4;
	CHECK_INT(sb_splitter_next(s, &in, &len, &f, &fi), 0);
	CHECK_INT(sb_splitter_buffered(s), 4);
	sb_splitter_free(s);

	/* A body too small to hold a header. */
	s = sb_splitter_new(0);
	uint8_t runt[16] = {0, 0, 0, 12};
	in = runt;
	len = sizeof runt;
	CHECK_INT(sb_splitter_next(s, &in, &len, &f, &fi), SB_EBADFRAME);
	CHECK_INT(fi.fault, SB_FAULT_RUNT);
	sb_splitter_free(s);

	/* "GET / HTTP/1.1" read as a length is far over any limit. */
	s = sb_splitter_new(0);
	in = (const uint8_t *)"GET / HTTP/1.1\r\n";
	len = 16;
	CHECK_INT(sb_splitter_next(s, &in, &len, &f, &fi), SB_ETOOLARGE);
	sb_splitter_free(s);
}

static void test_limits_of_the_limit(void)
{
	CHECK(sb_splitter_new(SB_BODY_MIN - 1) == NULL);
	CHECK(sb_splitter_new(SB_FRAME_MAX_LIMIT + 1) == NULL);
	struct sb_splitter *s = sb_splitter_new(SB_FRAME_MAX_LIMIT);
	CHECK(s != NULL);
	sb_splitter_free(s);
	sb_splitter_free(NULL);
}

int main(void)
{
	build_stream();
	RUN(test_whole_buffer_is_zero_copy);
	RUN(test_every_split_point);
	RUN(test_every_pair_of_split_points);
	RUN(test_one_byte_at_a_time);
	RUN(test_random_pieces);
	RUN(test_big_frame_straddling_pieces);
	RUN(test_oversize_and_runt_kill_the_stream);
	RUN(test_limits_of_the_limit);
	return TEST_EXIT();
}
