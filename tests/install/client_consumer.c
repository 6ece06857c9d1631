/* A program outside the tree that only uses the client library, built
 * against the installed libswitchboard-client with pkg-config or CMake
 * alone: it encodes and decodes a frame, checks an argument schema, and
 * has a client with a bad configuration refused (no network needed). */
#include <stdio.h>

#include <switchboard/client.h>
#include <switchboard/proto.h>

int main(void)
{
	static const uint8_t schema[] = {0x81, 0xa8, 'r',  'e', 'q', 'u', 'i', 'r', 'e',
					 'd',  0x91, 0xa5, 'e', 'm', 'a', 'i', 'l'};
	uint8_t buf[128];
	struct sb_msg m = {.kind = SB_PING, .id = 7}, out;
	struct sb_client_config cfg;
	long n = sb_encode(&m, buf, sizeof buf);
	int err = 0;

	if (n <= 0 || sb_decode(buf, (size_t)n, SB_DECODE_PAYLOAD, &out, NULL) != 0 ||
	    out.id != 7) {
		fprintf(stderr, "client consumer: round trip failed\n");
		return 1;
	}
	if (sb_schema_validate(schema, sizeof schema, NULL, 0) != 0) {
		fprintf(stderr, "client consumer: {\"required\": [\"email\"]} refused\n");
		return 1;
	}
	sb_client_config_init(&cfg);
	cfg.role = (enum sb_role)7; /* neither SB_ROLE_CLIENT nor SB_ROLE_SERVICE */
	if (sb_client_new(&cfg, &err) != NULL || err != SB_EINVAL) {
		fprintf(stderr, "client consumer: a bad role was not refused\n");
		return 1;
	}
	printf("client consumer: PING id %llu, %ld bytes; bad role: %s\n",
	       (unsigned long long)out.id, n, sb_strerror(err));
	return 0;
}
