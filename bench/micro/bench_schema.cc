// Argument schema micro-benchmarks: checking a request's payload against the
// schema of docs/protocol.md (what a handler with a schema costs per
// request), and compiling that schema (once per REGISTER); the same schema
// written as JSON Schema, and a nested JSON Schema.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

extern "C" {
#include <switchboard/proto.h>

#include "proto/schema.h"
}

namespace
{

// {"keys": {"email": {"type": "str", "max": 255}, "age": {"type": "uint",
// "max": 150}, "nick": {"type": ["str", "nil"], "min": 1, "max": 8},
// "tags": {"type": "array", "max": 3}}, "required": ["email"],
// "additional": false}, as the REGISTER vector in docs/protocol.md carries it.
const std::vector<uint8_t> SCHEMA = {
	0x83, 0xa4, 0x6b, 0x65, 0x79, 0x73, 0x84, 0xa5, 0x65, 0x6d, 0x61, 0x69, 0x6c, 0x82, 0xa4,
	0x74, 0x79, 0x70, 0x65, 0xa3, 0x73, 0x74, 0x72, 0xa3, 0x6d, 0x61, 0x78, 0xcc, 0xff, 0xa3,
	0x61, 0x67, 0x65, 0x82, 0xa4, 0x74, 0x79, 0x70, 0x65, 0xa4, 0x75, 0x69, 0x6e, 0x74, 0xa3,
	0x6d, 0x61, 0x78, 0xcc, 0x96, 0xa4, 0x6e, 0x69, 0x63, 0x6b, 0x83, 0xa4, 0x74, 0x79, 0x70,
	0x65, 0x92, 0xa3, 0x73, 0x74, 0x72, 0xa3, 0x6e, 0x69, 0x6c, 0xa3, 0x6d, 0x69, 0x6e, 0x01,
	0xa3, 0x6d, 0x61, 0x78, 0x08, 0xa4, 0x74, 0x61, 0x67, 0x73, 0x82, 0xa4, 0x74, 0x79, 0x70,
	0x65, 0xa5, 0x61, 0x72, 0x72, 0x61, 0x79, 0xa3, 0x6d, 0x61, 0x78, 0x03, 0xa8, 0x72, 0x65,
	0x71, 0x75, 0x69, 0x72, 0x65, 0x64, 0x91, 0xa5, 0x65, 0x6d, 0x61, 0x69, 0x6c, 0xaa, 0x61,
	0x64, 0x64, 0x69, 0x74, 0x69, 0x6f, 0x6e, 0x61, 0x6c, 0xc2};

// {"email": "ann@example.com", "age": 30, "nick": "annie", "tags": ["a", "b"]}
const std::vector<uint8_t> ARGS = {0x84, 0xa5, 'e', 'm',  'a',  'i',  'l', 0xaf, 'a',  'n',
				   'n',  '@',  'e', 'x',  'a',  'm',  'p', 'l',  'e',  '.',
				   'c',  'o',  'm', 0xa3, 'a',  'g',  'e', 0x1e, 0xa4, 'n',
				   'i',  'c',  'k', 0xa5, 'a',  'n',  'n', 'i',  'e',  0xa4,
				   't',  'a',  'g', 's',  0x92, 0xa1, 'a', 0xa1, 'b'};

void BM_SchemaCheck(benchmark::State &state)
{
	sb__schema *s = nullptr;
	char why[256];
	if (sb__schema_compile(SCHEMA.data(), SCHEMA.size(), &s, why, sizeof why) != 0) {
		state.SkipWithError(why);
		return;
	}
	size_t bad = 0;
	for (auto _ : state) {
		int rc = sb__schema_check(s, ARGS.data(), ARGS.size(), why, sizeof why);
		benchmark::DoNotOptimize(rc);
		bad += rc != 0;
	}
	if (bad != 0)
		state.SkipWithError("the valid arguments were refused");
	state.SetItemsProcessed(state.iterations());
	sb__schema_unref(s);
}

void BM_SchemaCompile(benchmark::State &state)
{
	char why[256];
	for (auto _ : state) {
		sb__schema *s = nullptr;
		int rc = sb__schema_compile(SCHEMA.data(), SCHEMA.size(), &s, why, sizeof why);
		benchmark::DoNotOptimize(rc);
		sb__schema_unref(s);
	}
	state.SetItemsProcessed(state.iterations());
}

// The example schema above, written as JSON Schema.
const char JSON_SCHEMA[] =
	"{\"type\": \"object\", \"properties\": {"
	" \"email\": {\"type\": \"string\", \"maxLength\": 255},"
	" \"age\": {\"type\": \"integer\", \"minimum\": 0, \"maximum\": 150},"
	" \"nick\": {\"type\": [\"string\", \"null\"], \"minLength\": 1, \"maxLength\": 8},"
	" \"tags\": {\"type\": \"array\", \"maxItems\": 3}},"
	" \"required\": [\"email\"], \"additionalProperties\": false}";

// Nested: the same keys, tags' items checked, and an address object.
const char NESTED_SCHEMA[] =
	"{\"type\": \"object\", \"properties\": {"
	" \"email\": {\"type\": \"string\", \"maxLength\": 255},"
	" \"age\": {\"type\": \"integer\", \"minimum\": 0, \"maximum\": 150},"
	" \"nick\": {\"type\": [\"string\", \"null\"], \"minLength\": 1, \"maxLength\": 8},"
	" \"tags\": {\"type\": \"array\", \"maxItems\": 3, \"items\": {\"enum\": [\"a\", \"b\"]}},"
	" \"address\": {\"type\": \"object\", \"required\": [\"zip\"],"
	"  \"additionalProperties\": false,"
	"  \"properties\": {\"zip\": {\"type\": \"string\", \"minLength\": 5, \"maxLength\": 5},"
	"   \"city\": {\"type\": \"string\"}}}},"
	" \"required\": [\"email\"], \"additionalProperties\": false}";

// ARGS plus "address": {"zip": "75001", "city": "Paris"}
const std::vector<uint8_t> NESTED_ARGS = {
	0x85, 0xa5, 'e', 'm', 'a',  'i', 'l', 0xaf, 'a', 'n',  'n',  '@',  'e',  'x',  'a',  'm',
	'p',  'l',  'e', '.', 'c',  'o', 'm', 0xa3, 'a', 'g',  'e',  0x1e, 0xa4, 'n',  'i',  'c',
	'k',  0xa5, 'a', 'n', 'n',  'i', 'e', 0xa4, 't', 'a',  'g',  's',  0x92, 0xa1, 'a',  0xa1,
	'b',  0xa7, 'a', 'd', 'd',  'r', 'e', 's',  's', 0x82, 0xa3, 'z',  'i',  'p',  0xa5, '7',
	'5',  '0',  '0', '1', 0xa4, 'c', 'i', 't',  'y', 0xa5, 'P',  'a',  'r',  'i',  's'};

void check_json(benchmark::State &state, const char *json, const std::vector<uint8_t> &args)
{
	sb__schema *s = nullptr;
	char why[256];
	void *mp;
	size_t len;
	if (sb_schema_from_json(json, strlen(json), &mp, &len, why, sizeof why) != 0 ||
	    sb__schema_compile(static_cast<const uint8_t *>(mp), len, &s, why, sizeof why) != 0) {
		state.SkipWithError(why);
		return;
	}
	free(mp);
	size_t bad = 0;
	for (auto _ : state) {
		int rc = sb__schema_check(s, args.data(), args.size(), why, sizeof why);
		benchmark::DoNotOptimize(rc);
		bad += rc != 0;
	}
	if (bad != 0)
		state.SkipWithError(why);
	state.SetItemsProcessed(state.iterations());
	sb__schema_unref(s);
}

void BM_JsonSchemaCheck(benchmark::State &state)
{
	check_json(state, JSON_SCHEMA, ARGS);
}

void BM_JsonSchemaCheckNested(benchmark::State &state)
{
	check_json(state, NESTED_SCHEMA, NESTED_ARGS);
}

void BM_JsonSchemaCompile(benchmark::State &state)
{
	char why[256];
	void *mp;
	size_t len;
	if (sb_schema_from_json(JSON_SCHEMA, strlen(JSON_SCHEMA), &mp, &len, why, sizeof why) !=
	    0) {
		state.SkipWithError(why);
		return;
	}
	for (auto _ : state) {
		sb__schema *s = nullptr;
		int rc = sb__schema_compile(static_cast<const uint8_t *>(mp), len, &s, why,
					    sizeof why);
		benchmark::DoNotOptimize(rc);
		sb__schema_unref(s);
	}
	free(mp);
	state.SetItemsProcessed(state.iterations());
}

} // namespace

BENCHMARK(BM_SchemaCheck);
BENCHMARK(BM_SchemaCompile);
BENCHMARK(BM_JsonSchemaCheck);
BENCHMARK(BM_JsonSchemaCheckNested);
BENCHMARK(BM_JsonSchemaCompile);
