/* libFuzzer target for the frame splitter and decoder: arbitrary bytes, cut
 * into arbitrary pieces, must never crash, and every frame that decodes must
 * re-encode to bytes that decode to the same message. */
#include <stdlib.h>
#include <string.h>

#include <switchboard/proto.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_round_trip(const struct sb_view *f, const struct sb_msg *m)
{
	static uint8_t out[SB_FRAME_MAX_DEFAULT + 64];
	struct sb_msg again;

	long n = sb_encode(m, out, sizeof out);
	if (n < 0)
		abort(); /* we decoded it, so we must be able to encode it */
	if (sb_decode(out, (size_t)n, SB_DECODE_PAYLOAD, &again, NULL) != 0)
		abort();
	if (again.kind != m->kind || again.flags != m->flags || again.id != m->id ||
	    again.payload.len != m->payload.len ||
	    memcmp(again.payload.ptr, m->payload.ptr, m->payload.len) != 0)
		abort();
	/* Canonical input re-encodes byte for byte; other widths (a uint in
	 * 0xcd where 0xcc would do) only shrink. */
	if ((size_t)n > f->len)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	/* First byte: piece size; second: splitter limit. The rest: the stream. */
	size_t piece = 1 + data[0] % 64;
	uint32_t limit = data[1] & 1 ? 64 + data[1] * 4u : SB_FRAME_MAX_DEFAULT;
	data += 2;
	size -= 2;

	struct sb_splitter *s = sb_splitter_new(limit);
	if (s == NULL)
		abort();
	for (size_t off = 0; off < size; off += piece) {
		const uint8_t *in = data + off;
		size_t len = size - off < piece ? size - off : piece;
		struct sb_view f;
		struct sb_fault_info fi;
		int rc;
		while ((rc = sb_splitter_next(s, &in, &len, &f, &fi)) == 1) {
			struct sb_msg m;
			if (sb_decode(f.ptr, f.len, SB_DECODE_PAYLOAD, &m, &fi) == 0)
				check_round_trip(&f, &m);
			else if (fi.fault == SB_FAULT_NONE)
				abort(); /* every refusal names its fault */
		}
		if (rc < 0)
			break;
	}
	sb_splitter_free(s);
	return 0;
}
