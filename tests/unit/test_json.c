/* The JSON <-> MessagePack converter sbctl and the HTTP edge share: exact
 * bytes for each type, round trips back to canonical JSON (bin and ext
 * too), every way a JSON text is refused, and the output bound. */
#include "support/testlib.h"

#include <switchboard/error.h>

#include "common/json.h"

/* JSON in, JSON out: @p want is what printing the MessagePack gives back. */
static void roundtrip(const char *in, const char *want)
{
	struct sb__json_buf mp = {0}, js = {0};
	struct sb__json_error e = {0};

	int rc = sb__json_parse(in, strlen(in), &mp, &e);
	if (rc != 0)
		fprintf(stderr, "refused %s: at %zu: %s\n", in, e.at, e.what);
	CHECK_INT(rc, 0);
	CHECK_INT(sb__json_print(mp.data, mp.len, &js), 0);
	CHECK_STR(js.data ? js.data : "", want);
	sb__json_buf_free(&mp);
	sb__json_buf_free(&js);
}

/* JSON in, the exact MessagePack bytes out. */
static void encodes(const char *in, const char *hex)
{
	struct sb__json_buf mp = {0};
	struct sb__json_error e = {0};
	char got[256] = "";

	CHECK_INT(sb__json_parse(in, strlen(in), &mp, &e), 0);
	for (size_t i = 0; i < mp.len && 2 * i + 2 < sizeof got; i++)
		snprintf(got + 2 * i, 3, "%02x", (unsigned char)mp.data[i]);
	if (strcmp(got, hex) != 0)
		fprintf(stderr, "encoding %s\n", in);
	CHECK_STR(got, hex);
	sb__json_buf_free(&mp);
}

/* A refused text: where and why, and nothing left in the output buffer. */
static void refuses(const char *in, size_t len, size_t at, const char *what)
{
	struct sb__json_buf mp = {0};
	struct sb__json_error e = {0};

	CHECK_INT(sb__json_parse("7", 1, &mp, &e), 0); /* output that must survive */
	CHECK_INT(sb__json_parse(in, len, &mp, &e), SB_EINVAL);
	if (e.at != at || strcmp(e.what, what) != 0)
		fprintf(stderr, "input %.40s\n", in);
	CHECK_INT(e.at, at);
	CHECK_STR(e.what, what);
	CHECK_INT(mp.len, 1);
	sb__json_buf_free(&mp);
}

/* MessagePack in (as hex), JSON out, or NULL: refused. */
static void prints(const char *hex, const char *want)
{
	unsigned char mp[512];
	struct sb__json_buf js = {0};
	size_t n = strlen(hex) / 2;

	for (size_t i = 0; i < n; i++)
		sscanf(hex + 2 * i, "%2hhx", &mp[i]);
	int rc = sb__json_print(mp, n, &js);
	if (want == NULL) {
		CHECK_INT(rc, SB_EBADFRAME);
		CHECK_INT(js.len, 0);
	} else {
		CHECK_INT(rc, 0);
		CHECK_STR(js.data ? js.data : "", want);
	}
	sb__json_buf_free(&js);
}

static void test_encodes_smallest_form(void)
{
	encodes("0", "00");
	encodes("127", "7f");
	encodes("128", "cc80");
	encodes("256", "cd0100");
	encodes("65536", "ce00010000");
	encodes("4294967296", "cf0000000100000000");
	encodes("-1", "ff");
	encodes("-32", "e0");
	encodes("-33", "d0df");
	encodes("-129", "d1ff7f");
	encodes("-32769", "d2ffff7fff");
	encodes("-2147483649", "d3ffffffff7fffffff");
	encodes("1.5", "cb3ff8000000000000");
	encodes("1e2", "cb4059000000000000");
	encodes("true", "c3");
	encodes("false", "c2");
	encodes("null", "c0");
	encodes("\"a\"", "a161");
	encodes("\"0123456789abcdef0123456789abcdef\"",
		"d9203031323334353637383961626364656630313233343536373839616263646566");
	encodes("[]", "90");
	encodes("{}", "80");
	encodes("[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]", "dc001000000000000000000000000000000000");
	encodes(" {\"a\" : [1 , {}]}\n", "81a161920180");
}

static void test_roundtrips(void)
{
	roundtrip("{\"user\":{\"name\":\"Zoë\",\"tags\":[\"a\",\"b\"],\"age\":42,\"ok\":true,"
		  "\"none\":null,\"debt\":-17,\"ratio\":0.25}}",
		  "{\"user\":{\"name\":\"Zoë\",\"tags\":[\"a\",\"b\"],\"age\":42,\"ok\":true,"
		  "\"none\":null,\"debt\":-17,\"ratio\":0.25}}");
	roundtrip("[18446744073709551615,-9223372036854775808,9223372036854775807]",
		  "[18446744073709551615,-9223372036854775808,9223372036854775807]");
	roundtrip("[0.1,-0.0,1e300,2.5e-300,100.0,3]", "[0.1,-0.0,1e+300,2.5e-300,100.0,3]");
	roundtrip("\"\\u00e9\\ud83d\\ude00\\u0001\\n\\t\\\"\\\\\\/\\b\\f\\r\"",
		  "\"é😀\\u0001\\n\\t\\\"\\\\/\\b\\f\\r\"");
	roundtrip("\"\\u0000\"", "\"\\u0000\"");
	roundtrip("  [ ]  ", "[]");
	roundtrip("[[[[[]]]]]", "[[[[[]]]]]");
}

static void test_refuses_bad_json(void)
{
	char deep[600];

	refuses("", 0, 0, "expected a value, found the end");
	refuses("   ", 3, 3, "expected a value, found the end");
	refuses("[1,]", 4, 3, "unexpected character ']'");
	refuses("{1:2}", 5, 1, "expected a string key");
	refuses("{\"a\" 1}", 7, 5, "expected ':' after an object key");
	refuses("[1 2]", 5, 3, "expected ',' or ']'");
	refuses("{\"a\":1 \"b\"}", 11, 7, "expected ',' or '}'");
	refuses("[1", 2, 2, "expected ',' or ']'");
	refuses("\"abc", 4, 0, "unterminated string");
	refuses("\"abc\\", 5, 4, "unterminated string");
	refuses("\"\\x\"", 4, 1, "unknown escape \\x");
	refuses("\"\\u12\"", 6, 5, "\\u needs 4 hex digits");
	refuses("\"\\u12", 5, 5, "\\u needs 4 hex digits");
	refuses("\"\\ud800\"", 8, 1, "unpaired high surrogate \\uD800");
	refuses("\"\\ud800\\u0041\"", 14, 1, "unpaired high surrogate \\uD800");
	refuses("\"\\udc00\"", 8, 1, "unpaired low surrogate \\uDC00");
	refuses("\"a\tb\"", 5, 2, "control character 0x09 in a string (escape it)");
	refuses("\"\xff\"", 3, 1, "invalid UTF-8");
	refuses("\"\xc0\x80\"", 4, 1, "invalid UTF-8");     /* overlong NUL */
	refuses("\"\xed\xa0\x80\"", 5, 1, "invalid UTF-8"); /* an encoded surrogate */
	refuses("\"\xe2\x82\"", 4, 1, "invalid UTF-8");     /* cut short */
	refuses("-", 1, 1, "expected a digit");
	refuses("-a", 2, 1, "expected a digit");
	refuses("1.", 2, 2, "expected a digit after '.'");
	refuses("1e+", 3, 3, "expected a digit in the exponent");
	refuses("01", 2, 1, "unexpected text after the value");
	refuses("1 2", 3, 2, "unexpected text after the value");
	refuses("1e999", 5, 0, "number out of the float64 range");
	refuses("18446744073709551616", 20, 0, "integer above the uint64 range");
	refuses("-9223372036854775809", 20, 0, "integer below the int64 range");
	refuses("tru", 3, 0, "unexpected character 't'");
	refuses("nul", 3, 0, "unexpected character 'n'");
	refuses("fals", 4, 0, "unexpected character 'f'");
	refuses("x", 1, 0, "unexpected character 'x'");
	refuses("\x01", 1, 0, "unexpected byte 0x01");
	refuses("'a'", 3, 0, "unexpected character '''");

	memset(deep, '1', sizeof deep);
	refuses(deep, 400, 0, "number longer than 399 characters");
	memset(deep, '[', sizeof deep);
	refuses(deep, SB__JSON_MAX_DEPTH + 1, SB__JSON_MAX_DEPTH, "nested deeper than 256");
	/* Exactly the limit is fine. */
	struct sb__json_buf mp = {0};
	struct sb__json_error e;
	for (int i = 0; i < SB__JSON_MAX_DEPTH; i++)
		deep[SB__JSON_MAX_DEPTH + i] = ']';
	CHECK_INT(sb__json_parse(deep, 2 * SB__JSON_MAX_DEPTH, &mp, &e), 0);
	sb__json_buf_free(&mp);
}

static void test_prints_every_type(void)
{
	prints("c0", "null");
	prints("d0df", "-33");
	prints("d1ff7f", "-129");
	prints("d2ffff7fff", "-32769");
	prints("ccff", "255");
	prints("cdffff", "65535");
	prints("ceffffffff", "4294967295");
	prints("ca3fc00000", "1.5");          /* float32 */
	prints("ca3dcccccd", "0.1");          /* float32 0.1: shortest for a float */
	prints("cb7ff8000000000000", "null"); /* NaN */
	prints("a3616263", "\"abc\"");
	prints("d903616263", "\"abc\"");
	prints("da0003616263", "\"abc\"");
	prints("db00000003616263", "\"abc\"");
	prints("a2ff41", "\"\\ufffdA\""); /* invalid UTF-8 is replaced */
	prints("a17f", "\"\x7f\"");
	prints("c403deadbe", "{\"$bin\":\"deadbe\"}");
	prints("c5000100", "{\"$bin\":\"00\"}");
	prints("c600000000", "{\"$bin\":\"\"}");
	prints("d4ff01", "{\"$ext\":-1,\"hex\":\"01\"}");
	prints("d5010102", "{\"$ext\":1,\"hex\":\"0102\"}");
	prints("c7020501ff", "{\"$ext\":5,\"hex\":\"01ff\"}");
	prints("dc0002c3c2", "[true,false]");
	prints("dd00000001c0", "[null]");
	prints("de0001a16101", "{\"a\":1}");
	prints("df00000001a16101", "{\"a\":1}");
	prints("820102c3a1", NULL);                             /* cut short inside a map */
	prints("82010291c0a178", "{\"1\":2,\"[null]\":\"x\"}"); /* keys that are not strings */
	prints("81a1", NULL);
	prints("c1", NULL);
	prints("", NULL);
	prints("0101", NULL); /* two values */
	prints("92", NULL);
	prints("a5616263", NULL);
	prints("c403dead", NULL);
	prints("d4", NULL);
	prints("d5010102ff", NULL);
	prints("cb0000", NULL);
	prints("dc00", NULL);
}

static void test_printing_refuses_deep_nesting(void)
{
	char hex[2 * 300 + 3];

	for (int i = 0; i < 300; i++)
		memcpy(hex + 2 * i, "91", 2);
	memcpy(hex + 600, "01", 3);
	prints(hex, NULL);
}

/* MessagePack in (as hex), printed, parsed back: the same bytes. */
static void survives(const char *hex)
{
	unsigned char mp[512];
	struct sb__json_buf js = {0}, back = {0};
	struct sb__json_error e = {0};
	char got[1100] = "";
	size_t n = strlen(hex) / 2;

	for (size_t i = 0; i < n; i++)
		sscanf(hex + 2 * i, "%2hhx", &mp[i]);
	CHECK_INT(sb__json_print(mp, n, &js), 0);
	CHECK_INT(sb__json_parse(js.data, js.len, &back, &e), 0);
	for (size_t i = 0; i < back.len && 2 * i + 2 < sizeof got; i++)
		snprintf(got + 2 * i, 3, "%02x", (unsigned char)back.data[i]);
	if (strcmp(got, hex) != 0)
		fprintf(stderr, "printed as %s\n", js.data);
	CHECK_STR(got, hex);
	sb__json_buf_free(&js);
	sb__json_buf_free(&back);
}

/* Each level of a key that is not a string doubles the backslashes within
 * it: 130 bytes once asked for 1 GiB of JSON. Four levels print. */
static void test_printing_bounds_keys_within_keys(void)
{
	char hex[2 * 64 + 3];

	prints("8181010000", "{\"{\\\"1\\\":0}\":0}");
	for (int n = 4; n <= 30; n += 26) {
		hex[0] = 0;
		for (int i = 0; i < n; i++)
			strcat(hex, "81");
		strcat(hex, "01");
		for (int i = 0; i < n; i++)
			strcat(hex, "00");
		unsigned char mp[64];
		struct sb__json_buf js = {0};
		for (size_t i = 0; i < strlen(hex) / 2; i++)
			sscanf(hex + 2 * i, "%2hhx", &mp[i]);
		CHECK_INT(sb__json_print(mp, strlen(hex) / 2, &js), n == 4 ? 0 : SB_EBADFRAME);
		CHECK(js.len < 100);
		sb__json_buf_free(&js);
	}
	prints("8181818181010000000000", NULL); /* five */
}

static void test_binary_and_ext_go_both_ways(void)
{
	char big[2 * 300 + 32] = "{\"$bin\":\"";
	char want[2 * 300 + 8] = "c5012c";

	encodes("{\"$bin\":\"deadBE\"}", "c403deadbe");
	encodes(" { \"$bin\" : \"\" } ", "c400");
	for (int i = 0; i < 300; i++) {
		strcat(big, "ab");
		strcat(want, "ab");
	}
	strcat(big, "\"}");
	struct sb__json_buf mp = {0};
	struct sb__json_error e = {0};
	CHECK_INT(sb__json_parse(big, strlen(big), &mp, &e), 0);
	CHECK_INT(mp.len, 303);
	CHECK_INT((unsigned char)mp.data[0], 0xc5);
	sb__json_buf_free(&mp);
	encodes("{\"$ext\":-1,\"hex\":\"01\"}", "d4ff01");
	encodes("{\"$ext\":5,\"hex\":\"01ff\"}", "d50501ff");
	encodes("{\"$ext\":127,\"hex\":\"010203\"}", "c7037f010203");
	encodes("{\"$ext\":-128,\"hex\":\"0102030405060708\"}", "d7800102030405060708");
	encodes("{\"$ext\":0,\"hex\":\"\"}", "c70000");
	encodes("[{\"$bin\":\"00\"},{\"a\":{\"$bin\":\"01\"}}]", "92c4010081a161c40101");
	/* Written with an escape, the key is an ordinary one: the way to send a
	 * map whose only key is "$bin", and how such a map prints. */
	encodes("{\"\\u0024bin\":1}", "81a42462696e01");
	prints("81a42462696e01", "{\"\\u0024bin\":1}");
	prints("82a1610ba42465787402", "{\"a\":11,\"\\u0024ext\":2}");
	survives("c403deadbe");
	survives("c400");
	survives("d4ff01");
	survives("c7037f010203");
	survives("d8010102030405060708090a0b0c0d0e0f10");
	survives("81a42462696e01");
	survives("81a42465787492c403000102d40100");
	survives("83a161cb3ff8000000000000a162cf8000000000000000a163d38000000000000000");
}

static void test_refuses_bad_binary(void)
{
	refuses("{\"$bin\":1}", 10, 8, "expected a string of hex digits");
	refuses("{\"$bin\":\"abc\"}", 14, 12, "odd number of hex digits");
	refuses("{\"$bin\":\"zz\"}", 13, 9, "expected a hex digit or '\"'");
	refuses("{\"$bin\":\"00\",\"x\":1}", 20, 12, "expected '}' after the $bin string");
	refuses("{\"$bin\" 1}", 10, 8, "expected ':' after \"$bin\"");
	refuses("{\"$ext\":300,\"hex\":\"00\"}", 23, 8,
		"$ext needs an integer type from -128 to 127");
	refuses("{\"$ext\":-129,\"hex\":\"00\"}", 24, 8,
		"$ext needs an integer type from -128 to 127");
	refuses("{\"$ext\":1.5,\"hex\":\"00\"}", 23, 9,
		"expected ',' and \"hex\" after the $ext type");
	refuses("{\"$ext\":\"1\",\"hex\":\"00\"}", 23, 8,
		"$ext needs an integer type from -128 to 127");
	refuses("{\"$ext\":1}", 10, 9, "expected ',' and \"hex\" after the $ext type");
	refuses("{\"$ext\":1,\"x\":\"00\"}", 19, 10, "expected \"hex\" after the $ext type");
	refuses("{\"$ext\":1,\"hex\":\"00\",\"y\":2}", 27, 20,
		"expected '}' after the $ext object's \"hex\"");
}

/* The router bounds what a request body may become (its frame limit). */
static void test_output_is_bounded(void)
{
	struct sb__json_buf mp = {.max = 10}, js = {.max = 5};
	struct sb__json_error e = {0};

	CHECK_INT(sb__json_parse("\"012345678\"", 11, &mp, &e), 0); /* exactly 10 */
	CHECK_INT(mp.len, 10);
	mp.len = 0;
	CHECK_INT(sb__json_parse("[[[[\"abcde\"]]]]", 15, &mp, &e), 0); /* 4 + 6 */
	CHECK_INT(mp.len, 10);
	mp.len = 0;
	CHECK_INT(sb__json_parse("\"0123456789\"", 12, &mp, &e), SB_ETOOLARGE);
	CHECK_STR(e.what, "more than 10 bytes as MessagePack");
	CHECK_INT(mp.len, 0);
	CHECK_INT(mp.max, 10);
	CHECK_INT(sb__json_parse("[1.5]", 5, &mp, &e), 0);
	CHECK_INT(sb__json_parse("1", 1, &mp, &e), SB_ETOOLARGE); /* appended: 11 */
	CHECK_INT(mp.len, 10);
	CHECK_INT(mp.max, 10);

	unsigned char abc[] = {0xa3, 'a', 'b', 'c'};
	CHECK_INT(sb__json_print(abc, sizeof abc, &js), 0);
	CHECK_STR(js.data, "\"abc\"");
	js.len = 0;
	js.max = 4;
	CHECK_INT(sb__json_print(abc, sizeof abc, &js), SB_ETOOLARGE);
	CHECK_INT(js.len, 0);
	unsigned char key[] = {0x81, 0x01, 0xc4, 0x02, 0, 0}; /* {"1":{"$bin":"0000"}} */
	js.max = 21;
	CHECK_INT(sb__json_print(key, sizeof key, &js), 0);
	CHECK_STR(js.data, "{\"1\":{\"$bin\":\"0000\"}}");
	js.len = 0;
	js.max = 20;
	CHECK_INT(sb__json_print(key, sizeof key, &js), SB_ETOOLARGE);
	CHECK_INT(sb__json_print(key, 3, &js), SB_EBADFRAME);
	sb__json_buf_free(&mp);
	sb__json_buf_free(&js);

	/* The caller's memory, never grown: a token's claims cost no malloc. */
	char mem[16];
	struct sb__json_buf f = {.data = mem, .cap = sizeof mem, .fixed = 1};
	CHECK_INT(sb__json_parse("[1,2,3,4,5,6]", 13, &f, &e), 0); /* 7 bytes (11 on the way) */
	CHECK_INT(f.len, 7);
	CHECK(f.data == mem);
	f.len = 0;
	CHECK_INT(sb__json_parse("\"0123456789abcdef\"", 18, &f, &e), SB_ETOOLARGE);
	CHECK_STR(e.what, "more than 15 bytes as MessagePack");
	CHECK(f.data == mem);
	CHECK_INT(f.len, 0);
	sb__json_buf_free(&f); /* frees nothing: ASan would say */
}

int main(void)
{
	RUN(test_encodes_smallest_form);
	RUN(test_roundtrips);
	RUN(test_refuses_bad_json);
	RUN(test_prints_every_type);
	RUN(test_printing_refuses_deep_nesting);
	RUN(test_printing_bounds_keys_within_keys);
	RUN(test_binary_and_ext_go_both_ways);
	RUN(test_refuses_bad_binary);
	RUN(test_output_is_bounded);
	return TEST_EXIT();
}
