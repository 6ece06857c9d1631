/* Incremental frame splitter: turns a byte stream that arrives in arbitrary
 * pieces into whole frames, copying only frames that straddle pieces. */
#include <stdlib.h>
#include <string.h>

#include <switchboard/proto.h>

#include "proto/mp.h"

/* A buffer that grew for one big frame is given back once that frame is
 * consumed, so a single 1 MiB message does not pin 1 MiB per connection. */
#define KEEP_CAP (64u << 10)

struct sb_splitter {
	uint32_t max_body;             /* largest body accepted */
	int err;                       /* sticky error; 0 while the stream is healthy */
	struct sb_fault_info fault;    /* details of err */
	uint8_t prefix[SB_PREFIX_LEN]; /* a length prefix split across pieces */
	uint8_t *buf;                  /* the frame being reassembled, prefix included */
	size_t cap;                    /* allocated bytes of buf */
	size_t have;                   /* bytes of the current frame received so far */
	size_t need;                   /* its whole length, once the prefix is complete */
	int yielded;                   /* buf was handed out: start afresh on next call */
};

struct sb_splitter *sb_splitter_new(uint32_t max_body)
{
	if (max_body == 0)
		max_body = SB_FRAME_MAX_DEFAULT;
	if (max_body < SB_BODY_MIN || max_body > SB_FRAME_MAX_LIMIT)
		return NULL;
	struct sb_splitter *s = calloc(1, sizeof *s);
	if (s != NULL)
		s->max_body = max_body;
	return s;
}

void sb_splitter_free(struct sb_splitter *s)
{
	if (s == NULL)
		return;
	free(s->buf);
	free(s);
}

size_t sb_splitter_buffered(const struct sb_splitter *s)
{
	return s->yielded ? 0 : s->have;
}

/* Checks a length prefix; on failure the stream is dead for good, since
 * nothing marks where the next frame would begin. */
static int check_len(struct sb_splitter *s, uint32_t body)
{
	if (body > s->max_body) {
		s->fault.fault = SB_FAULT_OVERSIZE;
		s->fault.limit = s->max_body;
	} else if (body < SB_BODY_MIN) {
		s->fault.fault = SB_FAULT_RUNT;
		s->fault.limit = SB_BODY_MIN;
	} else
		return 0;
	s->fault.got = body;
	s->err = sb_fault_code(s->fault.fault);
	return s->err;
}

static int fail(struct sb_splitter *s, struct sb_fault_info *fi)
{
	if (fi != NULL)
		*fi = s->fault;
	return s->err;
}

int sb_splitter_next(struct sb_splitter *s, const uint8_t **in, size_t *in_len,
		     struct sb_view *frame, struct sb_fault_info *fi)
{
	if (s->err != 0)
		return fail(s, fi);
	if (s->yielded) {
		s->yielded = 0;
		s->have = s->need = 0;
		if (s->cap > KEEP_CAP) {
			free(s->buf);
			s->buf = NULL;
			s->cap = 0;
		}
	}

	/* Fast path: nothing pending and the next frame lies whole in the input. */
	if (s->have == 0 && *in_len >= SB_PREFIX_LEN) {
		uint32_t body = sb__be32(*in);
		if (check_len(s, body) != 0)
			return fail(s, fi);
		size_t whole = SB_PREFIX_LEN + (size_t)body;
		if (*in_len >= whole) {
			frame->ptr = *in;
			frame->len = (uint32_t)whole;
			*in += whole;
			*in_len -= whole;
			return 1;
		}
	}

	/* Slow path: gather the prefix, then the rest, across calls. */
	while (s->have < SB_PREFIX_LEN) {
		if (*in_len == 0)
			return 0;
		s->prefix[s->have++] = *(*in)++;
		(*in_len)--;
		if (s->have == SB_PREFIX_LEN) {
			uint32_t body = sb__be32(s->prefix);
			if (check_len(s, body) != 0)
				return fail(s, fi);
			s->need = SB_PREFIX_LEN + (size_t)body;
			if (s->cap < s->need) {
				uint8_t *nb = realloc(s->buf, s->need);
				if (nb == NULL) {
					s->fault.fault = SB_FAULT_NONE;
					s->err = SB_ENOMEM;
					return fail(s, fi);
				}
				s->buf = nb;
				s->cap = s->need;
			}
			memcpy(s->buf, s->prefix, SB_PREFIX_LEN);
		}
	}

	size_t take = s->need - s->have;
	if (take > *in_len)
		take = *in_len;
	memcpy(s->buf + s->have, *in, take);
	s->have += take;
	*in += take;
	*in_len -= take;
	if (s->have < s->need)
		return 0;
	frame->ptr = s->buf;
	frame->len = (uint32_t)s->need;
	s->yielded = 1;
	return 1;
}
