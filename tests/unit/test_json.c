/* sbctl's JSON <-> MessagePack converter: exact bytes for each type, round
 * trips back to canonical JSON, and every way a JSON text is refused. */
#include "support/testlib.h"

#include "json.h"

/* JSON in, JSON out: @p want is what printing the MessagePack gives back. */
static void roundtrip(const char *in, const char *want)
{
	struct sbj_buf mp = {0}, js = {0};
	struct sbj_error e = {0};

	int rc = sbj_from_json(in, strlen(in), &mp, &e);
	if (rc != 0)
		fprintf(stderr, "refused %s: at %zu: %s\n", in, e.at, e.what);
	CHECK_INT(rc, 0);
	CHECK_INT(sbj_to_json(mp.data, mp.len, &js), 0);
	CHECK_STR(js.data ? js.data : "", want);
	sbj_buf_free(&mp);
	sbj_buf_free(&js);
}

/* JSON in, the exact MessagePack bytes out. */
static void encodes(const char *in, const char *hex)
{
	struct sbj_buf mp = {0};
	struct sbj_error e = {0};
	char got[256] = "";

	CHECK_INT(sbj_from_json(in, strlen(in), &mp, &e), 0);
	for (size_t i = 0; i < mp.len && 2 * i + 2 < sizeof got; i++)
		snprintf(got + 2 * i, 3, "%02x", (unsigned char)mp.data[i]);
	if (strcmp(got, hex) != 0)
		fprintf(stderr, "encoding %s\n", in);
	CHECK_STR(got, hex);
	sbj_buf_free(&mp);
}

/* A refused text: where and why, and nothing left in the output buffer. */
static void refuses(const char *in, size_t len, size_t at, const char *what)
{
	struct sbj_buf mp = {0};
	struct sbj_error e = {0};

	CHECK_INT(sbj_from_json("7", 1, &mp, &e), 0); /* output that must survive */
	CHECK_INT(sbj_from_json(in, len, &mp, &e), -1);
	if (e.at != at || strcmp(e.what, what) != 0)
		fprintf(stderr, "input %.40s\n", in);
	CHECK_INT(e.at, at);
	CHECK_STR(e.what, what);
	CHECK_INT(mp.len, 1);
	sbj_buf_free(&mp);
}

/* MessagePack in (as hex), JSON out, or NULL: refused. */
static void prints(const char *hex, const char *want)
{
	unsigned char mp[512];
	struct sbj_buf js = {0};
	size_t n = strlen(hex) / 2;

	for (size_t i = 0; i < n; i++)
		sscanf(hex + 2 * i, "%2hhx", &mp[i]);
	int rc = sbj_to_json(mp, n, &js);
	if (want == NULL) {
		CHECK_INT(rc, -1);
		CHECK_INT(js.len, 0);
	} else {
		CHECK_INT(rc, 0);
		CHECK_STR(js.data ? js.data : "", want);
	}
	sbj_buf_free(&js);
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
	refuses(deep, SBJ_MAX_DEPTH + 1, SBJ_MAX_DEPTH, "nested deeper than 256");
	/* Exactly the limit is fine. */
	struct sbj_buf mp = {0};
	struct sbj_error e;
	for (int i = 0; i < SBJ_MAX_DEPTH; i++)
		deep[SBJ_MAX_DEPTH + i] = ']';
	CHECK_INT(sbj_from_json(deep, 2 * SBJ_MAX_DEPTH, &mp, &e), 0);
	sbj_buf_free(&mp);
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

int main(void)
{
	RUN(test_encodes_smallest_form);
	RUN(test_roundtrips);
	RUN(test_refuses_bad_json);
	RUN(test_prints_every_type);
	RUN(test_printing_refuses_deep_nesting);
	return TEST_EXIT();
}
