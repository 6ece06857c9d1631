/* libFuzzer target for the JSON <-> MessagePack converter (sbctl's and the
 * HTTP edge's). The first byte picks the direction and an output bound:
 * odd, the rest is a JSON text to parse; even, MessagePack to print. The
 * target aborts if an accepted JSON text does not become exactly one
 * well-formed MessagePack value that prints and parses back to the same
 * bytes, if printing then parsing is not a fixed point after one turn, if
 * a refusal leaves output behind, or if the bound changes a verdict other
 * than by refusing as too large what is longer than the bound (or what is
 * refused anyway). */
#include <stdlib.h>
#include <string.h>

#include <switchboard/error.h>
#include <switchboard/proto.h>

#include "common/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_same(const struct sb__json_buf *a, const struct sb__json_buf *b)
{
	if (a->len != b->len || memcmp(a->data, b->data, a->len) != 0)
		abort();
}

/* JSON -> MessagePack -> JSON -> MessagePack: the same bytes both times. */
static void json_turn(const char *text, size_t len, size_t max)
{
	struct sb__json_buf mp = {.max = max}, free_mp = {0}, js = {0}, back = {0};
	struct sb__json_error e = {0}, free_e = {0};

	int rc = sb__json_parse(text, len, &mp, &e);
	int free_rc = sb__json_parse(text, len, &free_mp, &free_e);
	if (rc == SB_ETOOLARGE) {
		if (free_rc == 0 ? free_mp.len <= max : free_rc != SB_EINVAL)
			abort();
	} else if (rc != free_rc) {
		abort();
	}
	if (rc != 0) {
		if (mp.len != 0 || e.what[0] == 0 || e.at > len)
			abort();
		goto done;
	}
	check_same(&mp, &free_mp);
	if (sb_payload_check((const uint8_t *)mp.data, mp.len) != 0)
		abort();
	if (sb__json_print(mp.data, mp.len, &js) != 0)
		abort();
	if (sb__json_parse(js.data, js.len, &back, &e) != 0)
		abort();
	check_same(&mp, &back);
done:
	sb__json_buf_free(&mp);
	sb__json_buf_free(&free_mp);
	sb__json_buf_free(&js);
	sb__json_buf_free(&back);
}

/* MessagePack -> JSON, then one more turn each way: a fixed point. */
static void mp_turn(const uint8_t *p, size_t len, size_t max)
{
	struct sb__json_buf js = {.max = max}, free_js = {0}, mp2 = {0}, js2 = {0}, mp3 = {0};
	struct sb__json_error e = {0};

	int rc = sb__json_print(p, len, &js);
	int free_rc = sb__json_print(p, len, &free_js);
	if (rc == SB_ETOOLARGE) {
		if (free_rc == 0 ? free_js.len <= max : free_rc != SB_EBADFRAME)
			abort();
	} else if (rc != free_rc || (rc != 0 && rc != SB_EBADFRAME)) {
		abort();
	}
	if (rc != 0) {
		if (js.len != 0)
			abort();
		goto done;
	}
	check_same(&js, &free_js);
	if (sb__json_parse(js.data, js.len, &mp2, &e) != 0)
		abort();
	if (sb__json_print(mp2.data, mp2.len, &js2) != 0 ||
	    sb__json_parse(js2.data, js2.len, &mp3, &e) != 0)
		abort();
	check_same(&mp2, &mp3);
done:
	sb__json_buf_free(&js);
	sb__json_buf_free(&free_js);
	sb__json_buf_free(&mp2);
	sb__json_buf_free(&js2);
	sb__json_buf_free(&mp3);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t max = (size_t)(data[0] >> 1) * 8;
	/* A heap block of exactly the input's size: ASan sees a read past it. */
	uint8_t *copy = malloc(size);
	if (copy == NULL)
		abort();
	memcpy(copy, data + 1, size - 1);
	if (data[0] & 1)
		json_turn((const char *)copy, size - 1, max);
	else
		mp_turn(copy, size - 1, max);
	free(copy);
	return 0;
}
