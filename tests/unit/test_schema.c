/* Argument schemas, the compiler and checker on their own: schemas and
 * payloads written as JSON, every type family, bounds, malformed payloads
 * and schemas, and the texts of the refusals. */
#include <math.h>

#include <switchboard/proto.h>

#include "common/json.h"
#include "proto/schema.h"
#include "support/testlib.h"

struct mp {
	struct sb__json_buf b;
};

static struct mp mp_of(const char *json)
{
	struct mp m = {{0}};
	struct sb__json_error e;
	if (sb__json_parse(json, strlen(json), &m.b, &e) != 0) {
		fprintf(stderr, "bad test JSON at %zu: %s: %s\n", e.at, e.what, json);
		CHECK(0);
	}
	return m;
}

static void mp_free(struct mp *m)
{
	sb__json_buf_free(&m->b);
}

/* Compiles a schema given as JSON; NULL (and a failed CHECK) if refused. */
static struct sb__schema *compile(const char *json)
{
	struct mp m = mp_of(json);
	struct sb__schema *s = NULL;
	char why[256];
	int rc = sb__schema_compile((const uint8_t *)m.b.data, m.b.len, &s, why, sizeof why);
	if (rc != 0)
		fprintf(stderr, "schema refused: %s: %s\n", why, json);
	CHECK_INT(rc, 0);
	mp_free(&m);
	return s;
}

/* The compiler's text for a bad schema ("" if it was accepted). */
static const char *refusal(const char *json)
{
	static char why[256];
	struct mp m = mp_of(json);
	struct sb__schema *s = NULL;
	int rc = sb__schema_compile((const uint8_t *)m.b.data, m.b.len, &s, why, sizeof why);
	CHECK(rc == SB_EINVAL || rc == 0);
	if (rc == 0) {
		sb__schema_unref(s);
		why[0] = 0;
	} else
		CHECK(s == NULL);
	mp_free(&m);
	return why;
}

/* The checker's text for a payload given as JSON ("" if it fits). */
static const char *verdict(const struct sb__schema *s, const char *json)
{
	static char why[256];
	struct mp m = mp_of(json);
	int rc = sb__schema_check(s, (const uint8_t *)m.b.data, m.b.len, why, sizeof why);
	CHECK(rc == 0 || rc == SB_EINVAL);
	CHECK((rc == 0) == (why[0] == 0));
	mp_free(&m);
	return why;
}

static const char *verdict_raw(const struct sb__schema *s, const void *p, size_t n)
{
	static char why[256];
	int rc = sb__schema_check(s, p, n, why, sizeof why);
	CHECK(rc == 0 || rc == SB_EINVAL);
	return rc == 0 ? "" : why;
}

/* The example in docs/protocol.md, "Argument schemas". */
#define USER_SCHEMA                                                                                \
	"{\"keys\": {\"email\": {\"type\": \"str\", \"max\": 255},"                                \
	" \"age\": {\"type\": \"uint\", \"max\": 150},"                                            \
	" \"nick\": {\"type\": [\"str\", \"nil\"], \"min\": 1, \"max\": 8},"                       \
	" \"tags\": {\"type\": \"array\", \"max\": 3}},"                                           \
	" \"required\": [\"email\"], \"additional\": false}"

static void test_nil_is_no_schema(void)
{
	const uint8_t nil = 0xc0;
	struct sb__schema *s = (struct sb__schema *)1;
	char why[64];
	CHECK_INT(sb__schema_compile(&nil, 1, &s, why, sizeof why), 0);
	CHECK(s == NULL);
}

static void test_compiled_block_is_self_contained(void)
{
	struct sb__schema *s = compile(USER_SCHEMA);
	if (s == NULL)
		return;
	/* A copy of the bytes is the same schema, with the original freed: no
	 * pointer leads out of the block, into the frame or anywhere else. */
	size_t n = sb__schema_size(s);
	CHECK(n > 4 * 16 && n < 1024);
	struct sb__schema *copy = malloc(n);
	memcpy(copy, s, n);
	sb__schema_unref(s);
	CHECK_STR(verdict(copy, "{\"email\": \"a@b\", \"age\": 3, \"tags\": [], \"nick\": null}"),
		  "");
	CHECK_STR(verdict(copy, "{\"age\": 3}"), "missing required key \"email\"");
	CHECK_STR(verdict(copy, "{\"email\": \"a\", \"nick\": \"abcdefghi\"}"),
		  "key \"nick\": string too long (9, limit 8)");
	/* ...and it still says what was registered, byte for byte ($sb.routes). */
	struct mp m = mp_of(USER_SCHEMA);
	size_t len;
	const uint8_t *src = sb__schema_source(copy, &len);
	CHECK(len == m.b.len && memcmp(src, m.b.data, len) == 0);
	mp_free(&m);
	free(copy);
}

static void test_valid_arguments_pass(void)
{
	struct sb__schema *s = compile(USER_SCHEMA);
	CHECK_STR(verdict(s, "{\"email\": \"ann@example.com\"}"), "");
	CHECK_STR(verdict(s, "{\"email\": \"ann@example.com\", \"age\": 30, \"nick\": null, "
			     "\"tags\": [\"a\", {\"deep\": [1, 2]}]}"),
		  "");
	CHECK_STR(verdict(s, "{\"tags\": [], \"nick\": \"annie\", \"email\": \"\", \"age\": 150}"),
		  "");
	sb__schema_unref(s);
}

static void test_each_violation_names_the_key(void)
{
	struct sb__schema *s = compile(USER_SCHEMA);
	CHECK_STR(verdict(s, "{\"age\": 30}"), "missing required key \"email\"");
	CHECK_STR(verdict(s, "null"), "missing required key \"email\"");
	CHECK_STR(verdict(s, "{\"email\": 7}"), "key \"email\": expected str, got uint");
	CHECK_STR(verdict(s, "{\"email\": \"a\", \"age\": -1}"),
		  "key \"age\": expected uint, got int");
	CHECK_STR(verdict(s, "{\"email\": \"a\", \"age\": \"30\"}"),
		  "key \"age\": expected uint, got str");
	CHECK_STR(verdict(s, "{\"email\": \"a\", \"age\": 1.5}"),
		  "key \"age\": expected uint, got float");
	CHECK_STR(verdict(s, "{\"email\": \"a\", \"age\": 200}"),
		  "key \"age\": value too large (200, limit 150)");
	CHECK_STR(verdict(s, "{\"email\": \"a\", \"nick\": \"abcdefghij\"}"),
		  "key \"nick\": string too long (10, limit 8)");
	CHECK_STR(verdict(s, "{\"email\": \"a\", \"nick\": \"\"}"),
		  "key \"nick\": string too short (0, limit 1)");
	CHECK_STR(verdict(s, "{\"email\": \"a\", \"nick\": true}"),
		  "key \"nick\": expected nil or str, got bool");
	CHECK_STR(verdict(s, "{\"email\": \"a\", \"tags\": [1, 2, 3, 4]}"),
		  "key \"tags\": array too long (4, limit 3)");
	CHECK_STR(verdict(s, "{\"email\": \"a\", \"tags\": {}}"),
		  "key \"tags\": expected array, got map");
	CHECK_STR(verdict(s, "{\"email\": \"a\", \"x\": 1}"), "unknown key \"x\"");
	CHECK_STR(verdict(s, "[\"ann@example.com\"]"), "arguments must be a map");
	CHECK_STR(verdict(s, "\"ann@example.com\""), "arguments must be a map");
	CHECK_STR(verdict(s, "{\"email\": \"a\", \"email\": \"b\"}"), "key \"email\" given twice");
	/* The first problem in the payload's order is the one reported. */
	CHECK_STR(verdict(s, "{\"age\": \"x\", \"nick\": 5}"),
		  "key \"age\": expected uint, got str");
	sb__schema_unref(s);
}

static void test_every_type_family(void)
{
	struct sb__schema *s =
		compile("{\"keys\": {\"n\": {\"type\": \"nil\"}, \"b\": {\"type\": \"bool\"},"
			" \"i\": {\"type\": \"int\"}, \"u\": {\"type\": \"uint\"},"
			" \"f\": {\"type\": \"float\"}, \"s\": {\"type\": \"str\"},"
			" \"x\": {\"type\": \"bin\"}, \"a\": {\"type\": \"array\"},"
			" \"m\": {\"type\": \"map\"}, \"any\": {\"type\": \"any\"}, \"o\": {}}}");
	static const struct {
		const char *key, *type, *good, *bad, *got;
	} cases[] = {
		{"n", "nil", "null", "0", "uint"},
		{"b", "bool", "false", "null", "nil"},
		{"i", "int", "-5", "1.5", "float"},
		{"i", "int", "5", "\"5\"", "str"},
		{"u", "uint", "0", "-1", "int"},
		{"f", "float", "2.5", "true", "bool"},
		{"f", "float", "-2", "[]", "array"},
		{"s", "str", "\"\"", "{}", "map"},
		{"a", "array", "[[], {}]", "\"[]\"", "str"},
		{"m", "map", "{\"k\": [1]}", "[]", "array"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char json[128], want[128];
		snprintf(json, sizeof json, "{\"%s\": %s}", cases[i].key, cases[i].good);
		CHECK_STR(verdict(s, json), "");
		snprintf(json, sizeof json, "{\"%s\": %s}", cases[i].key, cases[i].bad);
		snprintf(want, sizeof want, "key \"%s\": expected %s, got %s", cases[i].key,
			 cases[i].type, cases[i].got);
		CHECK_STR(verdict(s, json), want);
	}
	/* "any" and a spec without a type take everything, bin and ext too. */
	CHECK_STR(verdict(s, "{\"any\": {\"a\": [null]}, \"o\": -7}"), "");
	const uint8_t bin_ext[] = {0x83, 0xa1, 'x',  0xc4, 0x02, 1,   2,    0xa3, 'a', 'n',
				   'y',  0xd4, 0x01, 0x00, 0xa1, 'o', 0xc7, 0x00, 0x05};
	CHECK_STR(verdict_raw(s, bin_ext, sizeof bin_ext), "");
	const uint8_t ext_for_bin[] = {0x81, 0xa1, 'x', 0xd4, 0x01, 0x00};
	CHECK_STR(verdict_raw(s, ext_for_bin, sizeof ext_for_bin),
		  "key \"x\": expected bin, got ext");
	/* Unknown keys pass when "additional" is left out. */
	CHECK_STR(verdict(s, "{\"zzz\": 1, \"n\": null}"), "");
	const uint8_t int_key[] = {0x82, 0x01, 0x02, 0xa1, 'n', 0xc0};
	CHECK_STR(verdict_raw(s, int_key, sizeof int_key), "");
	sb__schema_unref(s);
}

/* Integers count by value, whatever width or signedness they were sent in. */
static void test_numbers_compare_by_value(void)
{
	struct sb__schema *s =
		compile("{\"keys\": {\"u\": {\"type\": \"uint\", \"min\": 2, \"max\": 300},"
			" \"i\": {\"type\": \"int\", \"min\": -10, \"max\": -2},"
			" \"big\": {\"type\": \"uint\", \"min\": 18446744073709551614},"
			" \"f\": {\"type\": \"float\", \"min\": -0.5, \"max\": 0.5}}}");
	/* uint 5 as int8 (0xd0 05), int16 (0xd1 00 05) and uint64 (0xcf ...) */
	const uint8_t u8s[] = {0x81, 0xa1, 'u', 0xd0, 0x05};
	const uint8_t u16s[] = {0x81, 0xa1, 'u', 0xd1, 0x00, 0x05};
	const uint8_t u64[] = {0x81, 0xa1, 'u', 0xcf, 0, 0, 0, 0, 0, 0, 0, 5};
	const uint8_t neg8[] = {0x81, 0xa1, 'u', 0xd0, 0xff};
	const uint8_t big[] = {0x81, 0xa1, 'u', 0xcd, 0x01, 0x2d}; /* 301 */
	CHECK_STR(verdict_raw(s, u8s, sizeof u8s), "");
	CHECK_STR(verdict_raw(s, u16s, sizeof u16s), "");
	CHECK_STR(verdict_raw(s, u64, sizeof u64), "");
	CHECK_STR(verdict_raw(s, neg8, sizeof neg8), "key \"u\": expected uint, got int");
	CHECK_STR(verdict_raw(s, big, sizeof big), "key \"u\": value too large (301, limit 300)");
	CHECK_STR(verdict(s, "{\"u\": 1}"), "key \"u\": value too small (1, limit 2)");
	CHECK_STR(verdict(s, "{\"i\": -11}"), "key \"i\": value too small (-11, limit -10)");
	CHECK_STR(verdict(s, "{\"i\": -1}"), "key \"i\": value too large (-1, limit -2)");
	CHECK_STR(verdict(s, "{\"i\": -9223372036854775808}"),
		  "key \"i\": value too small (-9223372036854775808, limit -10)");
	CHECK_STR(verdict(s, "{\"i\": -2, \"u\": 300}"), "");
	/* Exact at the top of uint64, where doubles could not tell them apart. */
	CHECK_STR(verdict(s, "{\"big\": 18446744073709551615}"), "");
	CHECK_STR(
		verdict(s, "{\"big\": 18446744073709551613}"),
		"key \"big\": value too small (18446744073709551613, limit 18446744073709551614)");
	/* Floats: integers are numbers too; float32 is read as well. */
	CHECK_STR(verdict(s, "{\"f\": 0}"), "");
	CHECK_STR(verdict(s, "{\"f\": 0.25}"), "");
	CHECK_STR(verdict(s, "{\"f\": 1}"), "key \"f\": value too large (1, limit 0.5)");
	CHECK_STR(verdict(s, "{\"f\": -0.75}"), "key \"f\": value too small (-0.75, limit -0.5)");
	const uint8_t f32[] = {0x81, 0xa1, 'f', 0xca, 0x3e, 0x80, 0x00, 0x00}; /* 0.25f */
	CHECK_STR(verdict_raw(s, f32, sizeof f32), "");
	const uint8_t nan[] = {0x81, 0xa1, 'f', 0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0};
	CHECK_STR(verdict_raw(s, nan, sizeof nan), "key \"f\": value is NaN");
	sb__schema_unref(s);
}

static void test_lengths_of_bin_and_map(void)
{
	struct sb__schema *s = compile("{\"keys\": {\"b\": {\"type\": \"bin\", \"max\": 2},"
				       " \"m\": {\"type\": \"map\", \"min\": 1}}}");
	const uint8_t ok[] = {0x82, 0xa1, 'b', 0xc4, 0x02, 1, 2, 0xa1, 'm', 0x81, 0x01, 0x02};
	const uint8_t long_bin[] = {0x81, 0xa1, 'b', 0xc4, 0x03, 1, 2, 3};
	CHECK_STR(verdict_raw(s, ok, sizeof ok), "");
	CHECK_STR(verdict_raw(s, long_bin, sizeof long_bin),
		  "key \"b\": binary too long (3, limit 2)");
	CHECK_STR(verdict(s, "{\"m\": {}}"), "key \"m\": map too short (0, limit 1)");
	sb__schema_unref(s);
}

static void test_malformed_payloads_are_refused(void)
{
	struct sb__schema *s = compile("{\"keys\": {\"a\": {}}}");
	static const struct {
		const char *what;
		uint8_t bytes[8];
		size_t len;
	} bad[] = {
		{"empty", {0}, 0},
		{"0xc1", {0xc1}, 1},
		{"map cut short", {0x81, 0xa1, 'a'}, 3},
		{"string past the end", {0x81, 0xa1, 'a', 0xa5, 'x'}, 5},
		{"two values", {0x80, 0xc0}, 2},
		{"nil then more", {0xc0, 0xc0}, 2},
		{"huge map", {0xdf, 0xff, 0xff, 0xff, 0xff}, 5},
		{"huge array value", {0x81, 0xa1, 'a', 0xdd, 0xff, 0xff, 0xff, 0xff}, 8},
		{"bad byte inside a value", {0x81, 0xa1, 'a', 0x91, 0xc1}, 5},
		{"unknown key cut short", {0x81, 0xa1, 'z', 0x92, 0x01}, 5},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		/* On the heap at its exact size: ASan sees any read past it. */
		uint8_t *p = malloc(bad[i].len ? bad[i].len : 1);
		memcpy(p, bad[i].bytes, bad[i].len);
		const char *v = verdict_raw(s, p, bad[i].len);
		if (strcmp(v, "arguments are not well-formed MessagePack") != 0)
			fprintf(stderr, "  %s: %s\n", bad[i].what, v);
		CHECK_STR(v, "arguments are not well-formed MessagePack");
		free(p);
	}
	sb__schema_unref(s);
}

static void test_texts_are_safe_utf8(void)
{
	struct sb__schema *s = compile("{\"keys\": {\"pr\\u00e9nom\": {\"type\": \"str\"}},"
				       " \"additional\": false}");
	CHECK_STR(verdict(s, "{\"pr\\u00e9nom\": 1}"),
		  "key \"pr\xc3\xa9nom\": expected str, got uint");
	/* Invalid UTF-8, quotes and control bytes in a key are escaped. */
	const uint8_t odd[] = {0x81, 0xa4, 0xff, '"', '\n', 'k', 0x01};
	CHECK_STR(verdict_raw(s, odd, sizeof odd), "unknown key \"\\xff\\\"\\x0ak\"");
	/* A long key is cut at 64 bytes, never inside a character. */
	char json[512], want[256];
	char key[200] = "";
	for (int i = 0; i < 63; i++)
		strcat(key, "a");
	strcat(key, "\\u00e9\\u00e9"); /* 63 + 2 + 2 bytes */
	snprintf(json, sizeof json, "{\"%s\": 1}", key);
	snprintf(want, sizeof want, "unknown key \"%.63s\"...", key);
	CHECK_STR(verdict(s, json), want);
	/* A short buffer cuts the text before a character, not inside it. */
	struct mp m = mp_of("{\"pr\\u00e9nom\": 1}");
	char small[9];
	CHECK_INT(sb__schema_check(s, (const uint8_t *)m.b.data, m.b.len, small, sizeof small),
		  SB_EINVAL);
	CHECK_STR(small, "key \"pr"); /* "key \"pr\xc3" would end inside é */
	mp_free(&m);
	sb__schema_unref(s);
}

static void test_bad_schemas_are_refused_precisely(void)
{
	static const struct {
		const char *schema, *why;
	} bad[] = {
		{"[]", "schema must be a map (or nil for none)"},
		{"{\"keys\": {\"age\": {\"type\": \"integer\"}}}",
		 "schema key \"age\": unknown type \"integer\""},
		{"{\"keys\": {\"age\": {\"type\": [\"int\", 5]}}}",
		 "schema key \"age\": type must be a type name or an array of them"},
		{"{\"keys\": {\"age\": {\"type\": []}}}",
		 "schema key \"age\": type lists no types"},
		{"{\"keys\": {\"age\": {\"type\": \"int\", \"maxx\": 3}}}",
		 "schema key \"age\": unknown field \"maxx\" (expected type, min, max)"},
		{"{\"keys\": {\"age\": {\"type\": \"int\", \"type\": \"int\"}}}",
		 "schema key \"age\": field \"type\" given twice"},
		{"{\"keys\": {\"age\": \"int\"}}",
		 "schema key \"age\": must be a map of type, min, max"},
		{"{\"keys\": {\"age\": {\"type\": \"int\", \"min\": \"1\"}}}",
		 "schema key \"age\": min must be a number"},
		{"{\"keys\": {\"age\": {\"type\": \"uint\", \"min\": 5, \"max\": 3}}}",
		 "schema key \"age\": min (5) is above max (3)"},
		{"{\"keys\": {\"t\": {\"type\": \"str\", \"max\": -1}}}",
		 "schema key \"t\": max is a length: a whole number from 0 to 4294967295"},
		{"{\"keys\": {\"t\": {\"type\": \"array\", \"max\": 1.5}}}",
		 "schema key \"t\": max is a length: a whole number from 0 to 4294967295"},
		{"{\"keys\": {\"t\": {\"max\": 3}}}",
		 "schema key \"t\": min and max need a type to bound (str, bin, array, map, int, "
		 "uint or float)"},
		{"{\"keys\": {\"t\": {\"type\": \"bool\", \"max\": 3}}}",
		 "schema key \"t\": min and max need a type to bound (str, bin, array, map, int, "
		 "uint or float)"},
		{"{\"keys\": {\"t\": {\"type\": [\"str\", \"int\"], \"max\": 3}}}",
		 "schema key \"t\": min and max cannot bound both lengths (str, bin, array, map) "
		 "and values (int, uint, float)"},
		{"{\"keys\": []}", "schema field \"keys\" must be a map of key names to key specs"},
		{"{\"required\": \"email\"}",
		 "schema field \"required\" must be an array of key names"},
		{"{\"required\": [\"a\", \"a\"]}", "schema required key \"a\" listed twice"},
		{"{\"additional\": 0}", "schema field \"additional\" must be true or false"},
		{"{\"additional\": true, \"additional\": true}",
		 "schema field \"additional\" given twice"},
		{"{\"keys\": {}, \"keyz\": {}}",
		 "unknown schema field \"keyz\" (expected keys, required, additional)"},
		{"{\"keys\": {\"a\": {}, \"a\": {}}}", "schema key \"a\" given twice"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		CHECK_STR(refusal(bad[i].schema), bad[i].why);

	/* Not MessagePack at all, and non-string names. */
	char why[128];
	struct sb__schema *s;
	const uint8_t junk[] = {0x81, 0xa4, 'k', 'e', 'y'};
	CHECK_INT(sb__schema_compile(junk, sizeof junk, &s, why, sizeof why), SB_EINVAL);
	CHECK_STR(why, "schema is not one well-formed MessagePack value");
	CHECK_INT(sb__schema_compile(junk, 0, &s, why, sizeof why), SB_EINVAL);
	const uint8_t int_field[] = {0x81, 0x01, 0xc0};
	CHECK_INT(sb__schema_compile(int_field, sizeof int_field, &s, why, sizeof why), SB_EINVAL);
	CHECK_STR(why, "schema fields must be strings (keys, required, additional)");
	const uint8_t int_name[] = {0x81, 0xa4, 'k', 'e', 'y', 's', 0x81, 0x01, 0x80};
	CHECK_INT(sb__schema_compile(int_name, sizeof int_name, &s, why, sizeof why), SB_EINVAL);
	CHECK_STR(why, "schema field \"keys\": key names must be strings");

	/* Limits: 64 keys, 255-byte names. */
	char json[4096] = "{\"required\": [";
	for (int i = 0; i < 64; i++)
		snprintf(json + strlen(json), sizeof json - strlen(json), "%s\"k%d\"",
			 i ? ", " : "", i);
	strcat(json, "]}");
	s = compile(json);
	sb__schema_unref(s);
	strcpy(json + strlen(json) - 2, ", \"k64\"]}");
	CHECK_STR(refusal(json), "schema declares more than 64 keys");
	char name[300];
	memset(name, 'n', 256);
	name[256] = 0;
	snprintf(json, sizeof json, "{\"required\": [\"%s\"]}", name);
	snprintf(why, sizeof why, "schema key \"%.64s\"...: name too long (256, limit 255)", name);
	CHECK_STR(refusal(json), why);
}

static void test_required_key_with_a_type(void)
{
	/* required before keys in the map: still finds the declared type */
	struct sb__schema *s = compile("{\"required\": [\"id\", \"v\"],"
				       " \"keys\": {\"id\": {\"type\": \"uint\"}}}");
	CHECK_STR(verdict(s, "{\"id\": \"x\", \"v\": 1}"), "key \"id\": expected uint, got str");
	CHECK_STR(verdict(s, "{\"id\": 1}"), "missing required key \"v\"");
	CHECK_STR(verdict(s, "{\"id\": 1, \"v\": [null]}"), "");
	sb__schema_unref(s);
	/* {} is a schema too: the arguments must be a map, nothing more. */
	s = compile("{}");
	CHECK_STR(verdict(s, "{\"anything\": 1}"), "");
	CHECK_STR(verdict(s, "null"), "");
	CHECK_STR(verdict(s, "5"), "arguments must be a map");
	sb__schema_unref(s);
}

/* ---- JSON Schema ------------------------------------------------------- */

/* The JSON Schema example in docs/protocol.md, "Argument schemas". */
#define ORDER_SCHEMA                                                                               \
	"{\"type\": \"object\","                                                                   \
	" \"properties\": {"                                                                       \
	"  \"email\": {\"type\": \"string\", \"maxLength\": 254},"                                 \
	"  \"age\": {\"type\": \"integer\", \"minimum\": 0, \"maximum\": 150},"                    \
	"  \"nick\": {\"type\": [\"string\", \"null\"], \"minLength\": 1, \"maxLength\": 4},"      \
	"  \"role\": {\"enum\": [\"admin\", \"user\"]},"                                           \
	"  \"version\": {\"const\": 2},"                                                           \
	"  \"address\": {\"type\": \"object\","                                                    \
	"   \"properties\": {\"zip\": {\"type\": \"string\", \"minLength\": 5, \"maxLength\": 5}," \
	"                    \"city\": {\"type\": \"string\"}},"                                   \
	"   \"required\": [\"zip\"], \"additionalProperties\": false},"                            \
	"  \"tags\": {\"type\": \"array\", \"maxItems\": 3,"                                       \
	"   \"items\": {\"type\": \"string\", \"maxLength\": 8}}},"                                \
	" \"required\": [\"email\"],"                                                              \
	" \"additionalProperties\": false}"

static void test_json_schema_names_the_path_of_each_fault(void)
{
	struct sb__schema *s = compile(ORDER_SCHEMA);
	if (s == NULL)
		return;
	static const struct {
		const char *args, *why;
	} cases[] = {
		{"{\"email\": \"ann@example.com\"}", ""},
		{"{\"email\": \"a@b\", \"age\": 30, \"nick\": \"Zo\u00eb\", \"role\": \"admin\","
		 " \"version\": 2.0, \"address\": {\"zip\": \"75001\", \"city\": \"Paris\"},"
		 " \"tags\": [\"x\", \"y\"]}",
		 ""},
		{"{\"email\": \"a\", \"address\": {\"zip\": 75001}}",
		 "address.zip: expected string, got integer"},
		{"{\"email\": \"a\", \"address\": {\"city\": \"Paris\"}}",
		 "address.zip: required key missing"},
		{"{\"email\": \"a\", \"address\": {\"zip\": \"75001\", \"country\": \"FR\"}}",
		 "address.country: unknown key"},
		{"{\"email\": \"a\", \"address\": {\"zip\": \"7500\"}}",
		 "address.zip: string too short (4 characters, limit 5)"},
		{"{\"email\": \"a\", \"tags\": [\"x\", \"y\", 3]}",
		 "tags[2]: expected string, got integer"},
		{"{\"email\": \"a\", \"tags\": [\"a\", \"b\", \"c\", \"d\"]}",
		 "tags: array too long (4 items, limit 3)"},
		{"{\"email\": \"a\", \"tags\": [\"abcdefghi\"]}",
		 "tags[0]: string too long (9 characters, limit 8)"},
		{"{\"email\": \"a\", \"age\": 30.5}", "age: expected integer, got number"},
		{"{\"email\": \"a\", \"age\": 30.0}", ""},
		{"{\"email\": \"a\", \"age\": -1}", "age: value too small (-1, limit 0)"},
		{"{\"email\": \"a\", \"age\": 151}", "age: value too large (151, limit 150)"},
		{"{\"email\": \"a\", \"role\": \"root\"}", "role: not one of the enum values"},
		{"{\"email\": \"a\", \"version\": 3}", "version: not the const value"},
		{"{\"email\": \"a\", \"version\": \"2\"}", "version: not the const value"},
		{"{\"email\": \"a\", \"nick\": \"h\u00e9llo\"}",
		 "nick: string too long (5 characters, limit 4)"},
		{"{\"email\": \"a\", \"nick\": \"h\u00e9\u00e9\u00e9\"}", ""},
		{"{\"email\": \"a\", \"nick\": null}", ""},
		{"{\"email\": \"a\", \"nick\": false}",
		 "nick: expected null or string, got boolean"},
		{"{\"age\": 30}", "email: required key missing"},
		{"{\"email\": \"a\", \"x\": 1}", "x: unknown key"},
		{"{\"email\": \"a\", \"zip code\": 1}", "[\"zip code\"]: unknown key"},
		{"[\"a\"]", "expected object, got array"},
		{"null", "expected object, got null"},
		{"{\"email\": {\"$bin\": \"00\"}}", "email: expected string, got binary"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const char *got = verdict(s, cases[i].args);
		if (strcmp(got, cases[i].why) != 0)
			fprintf(stderr, "for %s\n", cases[i].args);
		CHECK_STR(got, cases[i].why);
	}
	/* A key sent twice, a map key that is not a string, junk after. */
	const uint8_t twice[] = {0x82, 0xa5, 'e', 'm', 'a', 'i', 'l',  0xa1, 'a',
				 0xa5, 'e',  'm', 'a', 'i', 'l', 0xa1, 'b'};
	CHECK_STR(verdict_raw(s, twice, sizeof twice), "email: key given twice");
	const uint8_t intkey[] = {0x82, 0xa5, 'e', 'm', 'a', 'i', 'l', 0xa1, 'a', 0x07, 0xc0};
	CHECK_STR(verdict_raw(s, intkey, sizeof intkey), "a key that is not a string");
	const uint8_t trailing[] = {0x81, 0xa5, 'e', 'm', 'a', 'i', 'l', 0xa1, 'a', 0xc0};
	CHECK_STR(verdict_raw(s, trailing, sizeof trailing),
		  "arguments are not well-formed MessagePack");
	const uint8_t cut[] = {0x81, 0xa5, 'e', 'm', 'a', 'i', 'l', 0xa4, 'a'};
	CHECK_STR(verdict_raw(s, cut, sizeof cut), "arguments are not well-formed MessagePack");
	const uint8_t lying[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0};
	CHECK_STR(verdict_raw(s, lying, sizeof lying), "expected object, got array");
	CHECK_STR(verdict_raw(s, lying, 0), "arguments are not well-formed MessagePack");

	/* The block is self-contained: a copy checks the same, the original freed. */
	size_t n = sb__schema_size(s);
	struct sb__schema *copy = malloc(n);
	memcpy(copy, s, n);
	sb__schema_unref(s);
	CHECK_STR(verdict(copy, "{\"email\": \"a\", \"address\": {\"zip\": 1}}"),
		  "address.zip: expected string, got integer");
	CHECK_STR(verdict(copy, "{\"email\": \"a\", \"role\": \"user\"}"), "");
	free(copy);
}

static void test_json_schema_types_and_numbers(void)
{
	struct sb__schema *s =
		compile("{\"properties\": {"
			" \"i\": {\"type\": \"integer\"},"
			" \"n\": {\"type\": \"number\", \"minimum\": -0.5, \"maximum\": 0.5},"
			" \"u\": {\"minimum\": 18446744073709551614},"
			" \"b\": {\"type\": \"boolean\"},"
			" \"any\": {},"
			" \"no\": false,"
			" \"yes\": true,"
			" \"z\": {\"enum\": [null, true, 1, \"one\"]}}}");
	if (s == NULL)
		return;
	/* Any integer, in any width, and a float with an integral value. */
	CHECK_STR(verdict(s, "{\"i\": -9223372036854775808}"), "");
	CHECK_STR(verdict(s, "{\"i\": 18446744073709551615}"), "");
	CHECK_STR(verdict(s, "{\"i\": 1e300}"), "");
	CHECK_STR(verdict(s, "{\"i\": 1.5}"), "i: expected integer, got number");
	CHECK_STR(verdict(s, "{\"i\": \"1\"}"), "i: expected integer, got string");
	CHECK_STR(verdict(s, "{\"n\": 0}"), "");
	CHECK_STR(verdict(s, "{\"n\": 0.75}"), "n: value too large (0.75, limit 0.5)");
	CHECK_STR(verdict(s, "{\"n\": -1}"), "n: value too small (-1, limit -0.5)");
	const uint8_t nan[] = {0x81, 0xa1, 'n', 0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0};
	CHECK_STR(verdict_raw(s, nan, sizeof nan), "n: value is NaN");
	const uint8_t nan_i[] = {0x81, 0xa1, 'i', 0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0};
	CHECK_STR(verdict_raw(s, nan_i, sizeof nan_i), "i: expected integer, got number");
	/* Compared exactly across widths: uint64 max - 1 as the bound. */
	CHECK_STR(verdict(s, "{\"u\": 18446744073709551615}"), "");
	CHECK_STR(verdict(s, "{\"u\": 18446744073709551613}"),
		  "u: value too small (18446744073709551613, limit 18446744073709551614)");
	const uint8_t i8[] = {0x81, 0xa1, 'u', 0xd0, 0x05}; /* 5 as an int8 */
	CHECK_STR(verdict_raw(s, i8, sizeof i8),
		  "u: value too small (5, limit 18446744073709551614)");
	/* minimum applies to numbers only: other types pass it. */
	CHECK_STR(verdict(s, "{\"u\": \"text\"}"), "");
	CHECK_STR(verdict(s, "{\"b\": 1}"), "b: expected boolean, got integer");
	/* No type: anything, ext and bin too. */
	const uint8_t ext[] = {0x81, 0xa3, 'a', 'n', 'y', 0xd4, 0x01, 0x00};
	CHECK_STR(verdict_raw(s, ext, sizeof ext), "");
	CHECK_STR(verdict(s, "{\"any\": [1, {\"deep\": [null]}]}"), "");
	CHECK_STR(verdict(s, "{\"no\": 1}"), "no: no value is allowed here");
	CHECK_STR(verdict(s, "{\"yes\": [1]}"), "");
	/* enum compares numbers by value, strings by bytes, types apart. */
	CHECK_STR(verdict(s, "{\"z\": 1.0}"), "");
	CHECK_STR(verdict(s, "{\"z\": null}"), "");
	CHECK_STR(verdict(s, "{\"z\": true}"), "");
	CHECK_STR(verdict(s, "{\"z\": \"one\"}"), "");
	CHECK_STR(verdict(s, "{\"z\": false}"), "z: not one of the enum values");
	CHECK_STR(verdict(s, "{\"z\": \"on\"}"), "z: not one of the enum values");
	CHECK_STR(verdict(s, "{\"z\": 2}"), "z: not one of the enum values");
	/* Without "type", the top accepts what is not a map. */
	CHECK_STR(verdict(s, "[1]"), "");
	sb__schema_unref(s);

	/* additionalProperties as a schema; items; minItems; a scalar at the top. */
	s = compile("{\"type\": \"object\", \"additionalProperties\": {\"type\": \"integer\"},"
		    " \"properties\": {\"list\": {\"type\": \"array\", \"minItems\": 2,"
		    " \"items\": {\"type\": \"object\", \"required\": [\"id\"]}}}}");
	CHECK_STR(verdict(s, "{\"a\": 1, \"b\": 2}"), "");
	CHECK_STR(verdict(s, "{\"a\": 1, \"b\": \"2\"}"), "b: expected integer, got string");
	CHECK_STR(verdict(s, "{\"list\": [{\"id\": 1}]}"),
		  "list: array too short (1 items, limit 2)");
	CHECK_STR(verdict(s, "{\"list\": [{\"id\": 1}, {\"di\": 2}]}"),
		  "list[1].id: required key missing");
	CHECK_STR(verdict(s, "{\"list\": [{\"id\": 1}, {\"id\": 2, \"x\": [1]}]}"), "");
	sb__schema_unref(s);
	/* Exclusive bounds; key counts of an object. */
	s = compile(
		"{\"minProperties\": 1, \"maxProperties\": 2,"
		" \"properties\": {\"p\": {\"exclusiveMinimum\": 0, \"exclusiveMaximum\": 1.5}}}");
	CHECK_STR(verdict(s, "{\"p\": 1}"), "");
	CHECK_STR(verdict(s, "{\"p\": 0}"), "p: value too small (0, must be above 0)");
	CHECK_STR(verdict(s, "{\"p\": 1.5}"), "p: value too large (1.5, must be below 1.5)");
	CHECK_STR(verdict(s, "{\"p\": 0.25, \"q\": null}"), "");
	CHECK_STR(verdict(s, "{}"), "too few keys (0, limit 1)");
	CHECK_STR(verdict(s, "{\"a\": 1, \"b\": 2, \"c\": 3}"), "too many keys (3, limit 2)");
	CHECK_STR(refusal("{\"exclusiveMinimum\": true}"), "\"exclusiveMinimum\" must be a number");
	sb__schema_unref(s);
	s = compile("{\"type\": \"string\", \"minLength\": 1}");
	CHECK_STR(verdict(s, "\"x\""), "");
	CHECK_STR(verdict(s, "\"\""), "string too short (0 characters, limit 1)");
	CHECK_STR(verdict(s, "{}"), "expected string, got object");
	sb__schema_unref(s);
}

static void test_json_schema_refusals_name_the_keyword(void)
{
	static const struct {
		const char *schema, *why;
	} bad[] = {
		{"{\"type\": \"object\", \"properties\": {\"zip\": {\"type\": \"string\","
		 " \"pattern\": \"^[0-9]{5}$\"}}}",
		 "zip: unsupported JSON Schema keyword \"pattern\""},
		{"{\"$ref\": \"#/definitions/user\"}", "unsupported JSON Schema keyword \"$ref\""},
		{"{\"oneOf\": [{\"type\": \"string\"}]}",
		 "unsupported JSON Schema keyword \"oneOf\""},
		{"{\"keyz\": {}}", "unsupported JSON Schema keyword \"keyz\""},
		{"{\"properties\": {\"t\": {\"items\": {\"format\": \"email\"}}}}",
		 "t[]: unsupported JSON Schema keyword \"format\""},
		{"{\"additionalProperties\": {\"format\": \"email\"}}",
		 "*: unsupported JSON Schema keyword \"format\""},
		{"{\"type\": \"str\"}",
		 "unknown type \"str\" (expected null, boolean, integer, number, string, array or "
		 "object)"},
		{"{\"type\": []}", "\"type\" lists no types"},
		{"{\"type\": 3}", "\"type\" must be a type name or an array of them"},
		{"{\"properties\": {\"tags\": {\"items\": [{\"type\": \"string\"}]}}}",
		 "tags: \"items\" must be one schema (an array of schemas is not supported)"},
		{"{\"properties\": {\"n\": {\"minLength\": -1}}}",
		 "n: \"minLength\" must be a whole number from 0 to 4294967295"},
		{"{\"maxItems\": 1.5}", "\"maxItems\" must be a whole number from 0 to 4294967295"},
		{"{\"minimum\": \"0\"}", "\"minimum\" must be a number"},
		{"{\"properties\": {\"c\": {\"enum\": [[1]]}}}",
		 "c: enum and const values must be null, booleans, numbers or strings"},
		{"{\"properties\": {\"c\": {\"enum\": []}}}",
		 "c: \"enum\" must be an array of at least one value"},
		{"{\"enum\": [1], \"const\": 1}",
		 "\"enum\" and \"const\" together are not supported"},
		{"{\"type\": \"object\", \"required\": [\"a\", \"a\"]}",
		 "required key \"a\" listed twice"},
		{"{\"required\": \"a\", \"type\": \"object\"}",
		 "\"required\" must be an array of names"},
		{"{\"properties\": {\"a\": {\"properties\": {\"b\": 1}}}}",
		 "a.b: a schema must be a map or a boolean"},
		{"{\"properties\": []}", "\"properties\" must be a map of names to schemas"},
		{"{\"type\": \"object\", \"type\": \"array\"}", "keyword \"type\" given twice"},
		{"{\"keys\": {}, \"type\": \"object\"}",
		 "unknown schema field \"type\" (expected keys, required, additional)"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		CHECK_STR(refusal(bad[i].schema), bad[i].why);
	/* Annotations change nothing and are accepted. */
	CHECK_STR(refusal("{\"$schema\": \"https://json-schema.org/draft/2020-12/schema\","
			  " \"title\": \"t\", \"description\": \"d\", \"$comment\": \"c\","
			  " \"properties\": {\"a\": {\"default\": 1, \"examples\": [1, 2]}}}"),
		  "");
	char why[64];
	struct sb__schema *s;
	const uint8_t intkw[] = {0x82, 0xa4, 't', 'y', 'p', 'e',  0xa6, 'o',
				 'b',  'j',  'e', 'c', 't', 0x01, 0xc0};
	CHECK_INT(sb__schema_compile(intkw, sizeof intkw, &s, why, sizeof why), SB_EINVAL);
	CHECK_STR(why, "schema keywords must be strings");
}

static void test_json_schema_limits(void)
{
	static char json[80000], want[1024];
	/* Depth: 32 schemas under the top one, not 33. */
	for (int depth = 32; depth <= 33; depth++) {
		strcpy(json, "{\"type\": \"object\"");
		for (int i = 0; i < depth; i++)
			strcat(json, ", \"properties\": {\"a\": {\"type\": \"object\"");
		for (int i = 0; i < depth; i++)
			strcat(json, "}}");
		strcat(json, "}");
		if (depth == 32) {
			CHECK_STR(refusal(json), "");
			continue;
		}
		want[0] = 0;
		for (int i = 0; i < depth; i++)
			strcat(want, i ? ".a" : "a");
		strcat(want, ": schema nests deeper than 32");
		CHECK_STR(refusal(json), want);
	}
	/* 64 properties in one object, not 65. */
	strcpy(json, "{\"properties\": {");
	for (int i = 0; i < 64; i++)
		sprintf(json + strlen(json), "%s\"k%d\": {}", i ? ", " : "", i);
	strcat(json, "}}");
	CHECK_STR(refusal(json), "");
	strcpy(json + strlen(json) - 2, ", \"k64\": {}}}");
	CHECK_STR(refusal(json), "more than 64 properties");
	/* 1024 schemas in all, not 1025: 1 + 33 * 31 = 1024. */
	for (int extra = 0; extra <= 1; extra++) {
		strcpy(json, "{\"properties\": {");
		for (int i = 0; i < 33; i++) {
			sprintf(json + strlen(json), "%s\"o%d\": {\"properties\": {", i ? ", " : "",
				i);
			for (int j = 0; j < 30 + (i == 32 ? extra : 0); j++)
				sprintf(json + strlen(json), "%s\"k%d\": {}", j ? ", " : "", j);
			strcat(json, "}}");
		}
		strcat(json, "}}");
		/* Properties compile in name order: o9's last one is the 1025th. */
		CHECK_STR(refusal(json),
			  extra ? "o9.k9: schema has more than 1024 schemas in all" : "");
	}
	/* 256 values in an enum, not 257. */
	strcpy(json, "{\"enum\": [");
	for (int i = 0; i < 256; i++)
		sprintf(json + strlen(json), "%s%d", i ? ", " : "", i);
	strcat(json, "]}");
	CHECK_STR(refusal(json), "");
	strcpy(json + strlen(json) - 2, ", 256]}");
	CHECK_STR(refusal(json), "\"enum\" has more than 256 values");
	/* A property name of 255 bytes, not 256. */
	char name[300];
	memset(name, 'n', 256);
	name[256] = 0;
	snprintf(json, sizeof json, "{\"required\": [\"%s\"], \"type\": \"object\"}", name);
	snprintf(want, sizeof want, "property name \"%.64s\"... too long (256, limit 255)", name);
	CHECK_STR(refusal(json), want);
}

static void test_public_validate(void)
{
	char why[128];
	struct mp m = mp_of("{\"keys\": {\"age\": {\"type\": \"integer\"}}}");
	CHECK_INT(sb_schema_validate(m.b.data, m.b.len, why, sizeof why), SB_EINVAL);
	CHECK_STR(why, "schema key \"age\": unknown type \"integer\"");
	mp_free(&m);
	m = mp_of(USER_SCHEMA);
	CHECK_INT(sb_schema_validate(m.b.data, m.b.len, why, sizeof why), 0);
	CHECK_STR(why, "");
	mp_free(&m);
	CHECK_INT(sb_schema_validate(NULL, 0, NULL, 0), 0); /* no schema */
}

int main(void)
{
	RUN(test_nil_is_no_schema);
	RUN(test_compiled_block_is_self_contained);
	RUN(test_valid_arguments_pass);
	RUN(test_each_violation_names_the_key);
	RUN(test_every_type_family);
	RUN(test_numbers_compare_by_value);
	RUN(test_lengths_of_bin_and_map);
	RUN(test_malformed_payloads_are_refused);
	RUN(test_texts_are_safe_utf8);
	RUN(test_bad_schemas_are_refused_precisely);
	RUN(test_required_key_with_a_type);
	RUN(test_public_validate);
	RUN(test_json_schema_names_the_path_of_each_fault);
	RUN(test_json_schema_types_and_numbers);
	RUN(test_json_schema_refusals_name_the_keyword);
	RUN(test_json_schema_limits);
	return TEST_EXIT();
}
