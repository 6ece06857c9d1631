/* A program outside the tree: built against the installed libswitchboard with
 * nothing but pkg-config, it encodes and decodes one frame. */
#include <stdio.h>
#include <string.h>

#include <switchboard/proto.h>

int main(void)
{
	uint8_t buf[128];
	struct sb_msg m = {.kind = SB_PING, .id = 7}, out;
	long n = sb_encode(&m, buf, sizeof buf);

	if (n <= 0 || sb_decode(buf, (size_t)n, SB_DECODE_PAYLOAD, &out, NULL) != 0 ||
	    out.id != 7) {
		fprintf(stderr, "round trip failed\n");
		return 1;
	}
	printf("consumer: PING id %llu, %ld bytes, %s\n", (unsigned long long)out.id, n,
	       sb_strerror(SB_ENOHANDLER));
	return 0;
}
