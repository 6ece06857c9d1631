/* The NATS protocol on its own: every operation a server sends, whole and
 * cut at every byte; what must be refused and why; the header block both
 * ways; the subjects we may use; what we write; the JSON readers on a real
 * INFO and on JetStream's answers. */
#include <switchboard/error.h>

#include "common/natsproto.h"
#include "support/testlib.h"

static long parse(const char *s, size_t max, struct sb__nats_in *in)
{
	return sb__nats_parse((const uint8_t *)s, strlen(s), max, in);
}

static void test_each_server_operation_is_read_whole_and_waited_for_when_cut(void)
{
	static const char stream[] =
		"INFO {\"server_id\":\"N1\",\"headers\":true,\"max_payload\":1048576}\r\n"
		"PING\r\n"
		"MSG sb.r.user.create 7 sb.i.r1.0 5\r\nhe\r\no\r\n"
		"HMSG sb.r.x 9 30 33\r\nNATS/1.0\r\nSb-Kind: request\r\n\r\nabc\r\n"
		"HMSG _INBOX.x.1 2 16 16\r\nNATS/1.0 503\r\n\r\n\r\n"
		"pong\r\n+OK\r\n-ERR 'Unknown Protocol Operation'\r\n";
	static const enum sb__nats_op want[] = {SB__NATS_INFO, SB__NATS_PING, SB__NATS_MSG,
						SB__NATS_MSG,  SB__NATS_MSG,  SB__NATS_PONG,
						SB__NATS_OK,   SB__NATS_ERR};
	const uint8_t *p = (const uint8_t *)stream;
	size_t n = sizeof stream - 1, off = 0;
	struct sb__nats_in in;

	for (unsigned k = 0; k < sizeof want / sizeof want[0]; k++) {
		long used = sb__nats_parse(p + off, n - off, 1 << 20, &in);
		CHECK(used > 0);
		CHECK_INT(in.op, want[k]);
		/* Any shorter cut of this operation waits for more. */
		for (size_t cut = 0; used > 0 && cut < (size_t)used; cut++) {
			struct sb__nats_in part;
			CHECK_INT(sb__nats_parse(p + off, cut, 1 << 20, &part), 0);
		}
		if (k == 2) {
			CHECK(in.msg.subject_len == 16 &&
			      memcmp(in.msg.subject, "sb.r.user.create", 16) == 0);
			CHECK(in.msg.reply_len == 9 && memcmp(in.msg.reply, "sb.i.r1.0", 9) == 0);
			CHECK_INT(in.msg.sid, 7);
			CHECK(in.msg.data_len == 5 && memcmp(in.msg.data, "he\r\no", 5) == 0);
			CHECK_INT(in.msg.hdr_len, 0);
		}
		if (k == 3) {
			const char *v;
			size_t vl;
			CHECK(in.msg.reply == NULL);
			CHECK_INT(in.msg.hdr_len, 30);
			CHECK(in.msg.data_len == 3 && memcmp(in.msg.data, "abc", 3) == 0);
			CHECK_INT(in.msg.status, 0);
			CHECK(sb__nats_hdr_get(in.msg.hdr, in.msg.hdr_len, "SB-KIND", &v, &vl));
			CHECK(vl == 7 && memcmp(v, "request", 7) == 0);
			CHECK(!sb__nats_hdr_get(in.msg.hdr, in.msg.hdr_len, "Sb-Kin", &v, &vl));
		}
		if (k == 4) {
			CHECK_INT(in.msg.status, 503);
			CHECK_INT(in.msg.data_len, 0);
		}
		if (k == 7)
			CHECK(in.text_len == 28 &&
			      memcmp(in.text, "'Unknown Protocol Operation'", 28) == 0);
		off += used > 0 ? (size_t)used : n;
	}
	CHECK_INT(off, n);
}

static void test_what_is_not_nats_is_refused(void)
{
	static const char *const bad[] = {
		"PING\n",                                     /* bare LF */
		"HELLO\r\n",                                  /* no such operation */
		"MSG a 1\r\n",                                /* too few arguments */
		"MSG a 1 b c 2\r\n",                          /* too many */
		"MSG a x 1\r\nz\r\n",                         /* sid not a number */
		"MSG a 1 -1\r\n",                             /* negative count */
		"MSG a 1 99999999999999999999\r\n",           /* a count that overflows */
		"MSG a 1 2\r\nhiXX",                          /* no CRLF after the payload */
		"MSG a..b 1 0\r\n\r\n",                       /* an empty token */
		"MSG a.* 1 0\r\n\r\n",                        /* a wildcard published to */
		"MSG a\x01 1 0\r\n\r\n",                      /* a control byte in a subject */
		"HMSG a 1 9 4\r\nabcd\r\n",                   /* headers longer than the message */
		"HMSG a 1 4 4\r\nNATS\r\n",                   /* not a header block */
		"HMSG a 1 12 12\r\nNATS/1.0\r\nX:\r\n",       /* no blank line at its end */
		"HMSG a 1 16 16\r\nNATS/1.0 5x3\r\n\r\n\r\n", /* a status that is not one */
		"INFO nope\r\n",                              /* INFO without JSON */
		"MSG a 1 5000\r\n", /* over the payload limit (4096 here) */
	};
	struct sb__nats_in in;

	for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		long rc = parse(bad[i], 4096, &in);
		if (rc != SB_EBADFRAME)
			fprintf(stderr, "not refused: case %u (%ld)\n", i, rc);
		CHECK_INT(rc, SB_EBADFRAME);
	}
	/* A control line may not grow without end while waiting for its LF. */
	static uint8_t line[SB__NATS_LINE_MAX + 2];
	memset(line, 'M', sizeof line);
	CHECK_INT(sb__nats_parse(line, SB__NATS_LINE_MAX + 1, 4096, &in), 0);
	CHECK_INT(sb__nats_parse(line, sizeof line, 4096, &in), SB_EBADFRAME);
}

static void test_subjects_we_use_are_checked(void)
{
	CHECK(sb__nats_subject_ok("sb.r.user.create", 16, 0));
	CHECK(sb__nats_subject_ok("$KV.names.peer-1", 16, 0));
	CHECK(!sb__nats_subject_ok("", 0, 0));
	CHECK(!sb__nats_subject_ok("a b", 3, 0));
	CHECK(!sb__nats_subject_ok(".a", 2, 0));
	CHECK(!sb__nats_subject_ok("a.", 2, 0));
	CHECK(!sb__nats_subject_ok("a.*", 3, 0));
	CHECK(sb__nats_subject_ok("a.*", 3, 1));
	CHECK(sb__nats_subject_ok("a.>", 3, 1));
	CHECK(sb__nats_subject_ok(">", 1, 1));
	CHECK(!sb__nats_subject_ok("a.>.b", 5, 1));
	CHECK(!sb__nats_subject_ok("a.b*", 4, 1));
	CHECK(!sb__nats_subject_ok("a.\xc3\xa9", 4, 0));
}

static void test_what_we_write_is_what_nats_reads(void)
{
	uint8_t buf[256], hdr[128];
	char line[128];
	const struct sb__nats_hdr h[] = {{"Sb-Id", "42"}, {"Sb-From", "alice"}};
	long hl = sb__nats_hdr_build(hdr, sizeof hdr, h, 2);
	size_t n;

	CHECK_INT(hl, 10 + 11 + 16 + 2);
	CHECK(memcmp(hdr, "NATS/1.0\r\nSb-Id: 42\r\nSb-From: alice\r\n\r\n", (size_t)hl) == 0);
	CHECK_INT(sb__nats_hdr_build(hdr, 4, h, 2), hl); /* too small: the size, nothing written */
	const struct sb__nats_hdr nl[] = {{"Sb\nId", "1"}}, colon[] = {{"Sb:Id", "1"}},
				  crlf[] = {{"Sb-Id", "1\r\n"}};
	CHECK_INT(sb__nats_hdr_build(hdr, sizeof hdr, nl, 1), SB_EINVAL);
	CHECK_INT(sb__nats_hdr_build(hdr, sizeof hdr, colon, 1), SB_EINVAL);
	CHECK_INT(sb__nats_hdr_build(hdr, sizeof hdr, crlf, 1), SB_EINVAL);

	n = sb__nats_pub_write(buf, "sb.r.x", 6, "sb.i.r1.3", 9, NULL, 0, (const uint8_t *)"hi", 2);
	CHECK(n <= sb__nats_pub_size(6, 9, 0, 2));
	CHECK(n == 28 && memcmp(buf, "PUB sb.r.x sb.i.r1.3 2\r\nhi\r\n", n) == 0);
	n = sb__nats_pub_write(buf, "sb.r.x", 6, NULL, 0, hdr, (size_t)hl, (const uint8_t *)"hi",
			       2);
	CHECK(n <= sb__nats_pub_size(6, 0, (size_t)hl, 2));
	CHECK(memcmp(buf, "HPUB sb.r.x 39 41\r\nNATS/1.0\r\n", 29) == 0);
	CHECK(memcmp(buf + n - 4, "hi\r\n", 4) == 0);
	n = sb__nats_sub_write(line, "sb.r.user.create", "sb.r.user.create", 12);
	CHECK(n == 42 && memcmp(line, "SUB sb.r.user.create sb.r.user.create 12\r\n", n) == 0);
	n = sb__nats_sub_write(line, "sb.i.r1.*", NULL, 3);
	CHECK(n == 17 && memcmp(line, "SUB sb.i.r1.* 3\r\n", n) == 0);
	n = sb__nats_unsub_write(line, 18446744073709551615ull);
	CHECK(n == 28 && memcmp(line, "UNSUB 18446744073709551615\r\n", n) == 0);
}

static void test_the_json_readers_find_top_level_members_only(void)
{
	static const char info[] = "{\"server_id\":\"NDX\",\"nested\":{\"max_payload\":1},\"s\":"
				   "\"\\\"max_payload\\\":2\","
				   "\"headers\":true,\"tls_required\":false,\"max_payload\":"
				   "1048576,\"urls\":[1,{\"a\":2}]}";
	static const char err[] = "{\"error\":{\"code\":400,\"err_code\":10071,\"description\":"
				  "\"wrong last sequence: 5\"},\"stream\":\"KV_n\",\"seq\":0}";
	uint64_t v = 0;
	int b = -1;
	const char *o, *s;
	size_t ol, sl;

	CHECK(sb__nats_json_u64(info, sizeof info - 1, "max_payload", &v));
	CHECK_INT(v, 1048576);
	CHECK(sb__nats_json_bool(info, sizeof info - 1, "headers", &b) && b == 1);
	CHECK(sb__nats_json_bool(info, sizeof info - 1, "tls_required", &b) && b == 0);
	CHECK(!sb__nats_json_u64(info, sizeof info - 1, "a", &v));
	CHECK(!sb__nats_json_u64(info, sizeof info - 1, "server_id", &v));
	CHECK(sb__nats_json_obj(err, sizeof err - 1, "error", &o, &ol));
	CHECK(sb__nats_json_u64(o, ol, "err_code", &v) && v == 10071);
	CHECK(sb__nats_json_str(o, ol, "description", &s, &sl));
	CHECK(sl == 22 && memcmp(s, "wrong last sequence: 5", 22) == 0);
	CHECK(sb__nats_json_u64(err, sizeof err - 1, "seq", &v) && v == 0);
	/* Cut anywhere, nothing is read past the end. */
	for (size_t cut = 0; cut < sizeof err - 1; cut++) {
		char *c = malloc(cut ? cut : 1);
		memcpy(c, err, cut);
		sb__nats_json_u64(c, cut, "seq", &v);
		if (sb__nats_json_obj(c, cut, "error", &o, &ol))
			CHECK(o + ol <= c + cut);
		free(c);
	}
}

int main(void)
{
	RUN(test_each_server_operation_is_read_whole_and_waited_for_when_cut);
	RUN(test_what_is_not_nats_is_refused);
	RUN(test_subjects_we_use_are_checked);
	RUN(test_what_we_write_is_what_nats_reads);
	RUN(test_the_json_readers_find_top_level_members_only);
	return TEST_EXIT();
}
