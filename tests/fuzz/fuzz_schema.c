/* libFuzzer target for argument schemas: the input's first two bytes give a
 * length, that many bytes are compiled as a schema, and the rest is checked
 * against it as a payload. Neither step may crash, leak, or read outside its
 * bytes: each gets a heap block of exactly its size (ASan sees a read past
 * it), the schema's bytes are freed before the check (a compiled schema
 * must not point into them), and the check runs on a copy of the compiled
 * block with the original freed (it must not point anywhere). Every
 * refusal must come with a text an ERROR frame can carry, even cut short,
 * and an accepted payload must be one well-formed MessagePack value. */
#include <stdlib.h>
#include <string.h>

#include <switchboard/proto.h>

#include "proto/schema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A refusal's text: non-empty unless cut to nothing, and valid as an
 * ERROR frame's text (UTF-8, at most SB_TEXT_MAX bytes). */
static void check_text(const char *why, size_t cap)
{
	struct sb_msg m = {.kind = SB_ERROR, .id = 1, .code = (uint32_t)-SB_EINVAL};
	size_t n = strlen(why);
	if (n >= cap || (cap > 1 && n == 0))
		abort();
	m.text.ptr = (const uint8_t *)why;
	m.text.len = (uint32_t)n;
	if (sb_encoded_size(&m) < 0)
		abort();
}

static uint8_t *copy_of(const uint8_t *p, size_t n)
{
	uint8_t *c = malloc(n > 0 ? n : 1);
	if (c == NULL)
		abort();
	memcpy(c, p, n);
	return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char why[SB_TEXT_MAX + 1], small[12];
	struct sb__schema *s = NULL;

	if (size < 2)
		return 0;
	size_t n = (size_t)data[0] << 8 | data[1];
	data += 2;
	size -= 2;
	if (n > size)
		n = size;
	uint8_t *schema = copy_of(data, n);
	uint8_t *payload = copy_of(data + n, size - n);
	size_t plen = size - n;

	int rc = sb__schema_compile(schema, n, &s, why, sizeof why);
	free(schema);
	if (rc != 0) {
		if (rc != SB_EINVAL || s != NULL)
			abort();
		check_text(why, sizeof why);
		goto done;
	}
	if (s == NULL) /* nil: no schema */
		goto done;

	size_t bytes = sb__schema_size(s);
	struct sb__schema *copy = (struct sb__schema *)copy_of((const uint8_t *)s, bytes);
	sb__schema_unref(s);
	/* The copy still holds the schema as it came, byte for byte ($sb.routes). */
	size_t srclen;
	const uint8_t *src = sb__schema_source(copy, &srclen);
	if (srclen != n || memcmp(src, data, n) != 0)
		abort();
	rc = sb__schema_check(copy, payload, plen, why, sizeof why);
	if (rc == 0 && (plen == 0 || sb_payload_check(payload, plen) != 0))
		abort(); /* only well-formed arguments pass */
	if (rc != 0) {
		if (rc != SB_EINVAL)
			abort();
		check_text(why, sizeof why);
		/* The same verdict in a small buffer, cut on a character. */
		if (sb__schema_check(copy, payload, plen, small, sizeof small) != rc ||
		    strncmp(small, why, strlen(small)) != 0)
			abort();
		check_text(small, sizeof small);
	}
	free(copy);
done:
	free(payload);
	return 0;
}
