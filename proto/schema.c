/* Argument schemas: compiled once at REGISTER into one immutable block, then
 * checked against payloads in a single pass that never allocates. */
#include <math.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <switchboard/proto.h>

#include "common/json.h"
#include "proto/mp.h"
#include "proto/schema-int.h"
#include "proto/schema.h"

/* One declared key. Its name lives in the same block, name_off bytes from
 * the start of the struct sb__schema: the block holds no pointers at all. */
struct sb__schema_key {
	uint32_t name_off;         /* where the name starts, from the block's start */
	uint16_t name_len;         /* bytes, at most SB__SCHEMA_NAME_MAX */
	uint16_t types;            /* SB__ST_* bits the value may have */
	uint8_t has_min, has_max;  /* which bounds apply */
	struct sb__schema_num min; /* length (str, bin, array, map) or value bound */
	struct sb__schema_num max;
};

struct sb__schema {
	atomic_uint refs;             /* holders: route endpoints, mail in flight, the registrar */
	uint32_t nkeys;               /* entries in keys[], sorted by name bytes */
	uint64_t required;            /* bit i: keys[i] must be present */
	uint8_t additional;           /* keys not declared are allowed */
	uint8_t json;                 /* written as JSON Schema: keys[] is where
					 its compiled image starts (jschema.c) */
	uint32_t size;                /* bytes of the whole block */
	uint32_t src_off, src_len;    /* the schema as registered, at the block's end */
	struct sb__schema_key keys[]; /* then the names */
};

/* Value types a key may accept ("type" in the schema). */
#define SB__ST_NIL   0x001u
#define SB__ST_BOOL  0x002u
#define SB__ST_INT   0x004u /* any integer */
#define SB__ST_UINT  0x008u /* an integer >= 0, in whatever width it was sent */
#define SB__ST_FLOAT 0x010u /* a float; integers too (encoders write 2.0 as 2) */
#define SB__ST_STR   0x020u
#define SB__ST_BIN   0x040u
#define SB__ST_ARRAY 0x080u
#define SB__ST_MAP   0x100u
#define SB__ST_EXT   0x200u /* only through "any" */
#define SB__ST_ANY   0x3ffu

/* ---- error texts -------------------------------------------------------- */

/* Texts go into ERROR frames, whose text must be valid UTF-8: names taken
 * from the wire are escaped where they are not, and a text cut short by a
 * small buffer never ends inside a character. */
void sb__schema_trim_utf8(char *s)
{
	size_t n = strlen(s), i = n;
	while (i > 0 && ((uint8_t)s[i - 1] & 0xc0) == 0x80)
		i--;
	if (i > 0 && (uint8_t)s[i - 1] >= 0xc0 &&
	    sb__utf8_seq((uint8_t *)s + i - 1, n - i + 1) == 0)
		s[i - 1] = 0;
}

int sb__schema_fail(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;
	if (whylen > 0) {
		va_start(ap, fmt);
		vsnprintf(why, whylen, fmt, ap);
		va_end(ap);
		sb__schema_trim_utf8(why);
	}
	return SB_EINVAL;
}

const char *sb__schema_quote(struct sb__schema_quoted *q, const uint8_t *p, size_t n)
{
	size_t o = 0, i = 0;
	q->s[o++] = '"';
	while (i < n && i < SB__SCHEMA_SHOWN_MAX) {
		uint8_t c = p[i];
		size_t k = c >= 0x80 ? sb__utf8_seq(p + i, n - i) : 1;
		if (c >= 0x80 && k > 0 && i + k > SB__SCHEMA_SHOWN_MAX)
			break; /* a character that does not fit whole is left out */
		if (c >= 0x80 && k > 0) {
			memcpy(q->s + o, p + i, k);
			o += k;
			i += k;
			continue;
		}
		if (c == '"' || c == '\\') {
			q->s[o++] = '\\';
			q->s[o++] = (char)c;
		} else if (c < 0x20 || c >= 0x7f) {
			o += (size_t)snprintf(q->s + o, 5, "\\x%02x", c);
		} else {
			q->s[o++] = (char)c;
		}
		i++;
	}
	q->s[o++] = '"';
	if (i < n) {
		memcpy(q->s + o, "...", 3);
		o += 3;
	}
	q->s[o] = 0;
	return q->s;
}

/* ---- numbers ------------------------------------------------------------ */

int sb__schema_is_number(const struct sb__mp_item *it)
{
	return it->type == SB__MP_UINT || it->type == SB__MP_INT || it->type == SB__MP_FLOAT;
}

/* The reader gives an INT's bytes as they were sent; widen them with their
 * sign. Signed widths may carry non-negative values too (0xd0 0x05 is 5). */
void sb__schema_read_num(const struct sb__mp_item *it, struct sb__schema_num *x)
{
	memset(x, 0, sizeof *x);
	if (it->type == SB__MP_FLOAT) {
		if (it->len == 4) {
			uint32_t b = sb__be32(it->body);
			float f;
			memcpy(&f, &b, 4);
			x->d = f;
		} else {
			uint64_t b = sb__be64(it->body);
			memcpy(&x->d, &b, 8);
		}
		return;
	}
	x->integral = 1;
	if (it->type == SB__MP_UINT) {
		x->u = it->u;
		x->d = (double)x->u;
		return;
	}
	int64_t v;
	switch (it->marker) {
	case 0xd0:
		v = (int8_t)it->u;
		break;
	case 0xd1:
		v = (int16_t)it->u;
		break;
	case 0xd2:
		v = (int32_t)it->u;
		break;
	case 0xd3:
		v = (int64_t)it->u;
		break;
	default: /* negative fixint: the marker is the value */
		v = (int8_t)it->marker;
		break;
	}
	x->u = (uint64_t)v;
	x->neg = v < 0;
	x->d = (double)v;
}

/* -1, 0 or 1 as a is below, equal to or above b. Neither is NaN. */
int sb__schema_num_cmp(const struct sb__schema_num *a, const struct sb__schema_num *b)
{
	if (a->integral && b->integral) {
		if (a->neg != b->neg)
			return a->neg ? -1 : 1;
		if (a->neg)
			return (int64_t)a->u < (int64_t)b->u ? -1 : (int64_t)a->u > (int64_t)b->u;
		return a->u < b->u ? -1 : a->u > b->u;
	}
	return a->d < b->d ? -1 : a->d > b->d;
}

const char *sb__schema_num_str(char *buf, size_t cap, const struct sb__schema_num *x)
{
	if (!x->integral)
		snprintf(buf, cap, "%g", x->d);
	else if (x->neg)
		snprintf(buf, cap, "%lld", (long long)(int64_t)x->u);
	else
		snprintf(buf, cap, "%llu", (unsigned long long)x->u);
	return buf;
}

/* ---- types -------------------------------------------------------------- */

static const struct {
	const char *name;
	uint16_t bits;
} type_names[] = {
	{"nil", SB__ST_NIL},   {"bool", SB__ST_BOOL},   {"int", SB__ST_INT},
	{"uint", SB__ST_UINT}, {"float", SB__ST_FLOAT}, {"str", SB__ST_STR},
	{"bin", SB__ST_BIN},   {"array", SB__ST_ARRAY}, {"map", SB__ST_MAP},
	{"any", SB__ST_ANY},
};

#define LENGTH_TYPES (SB__ST_STR | SB__ST_BIN | SB__ST_ARRAY | SB__ST_MAP)
#define VALUE_TYPES  (SB__ST_INT | SB__ST_UINT | SB__ST_FLOAT)

/* What a value is, for a text: "uint" for an integer >= 0, "int" below. */
static const char *value_name(const struct sb__mp_item *it, const struct sb__schema_num *x)
{
	switch (it->type) {
	case SB__MP_NIL:
		return "nil";
	case SB__MP_BOOL:
		return "bool";
	case SB__MP_UINT:
	case SB__MP_INT:
		return x->neg ? "int" : "uint";
	case SB__MP_FLOAT:
		return "float";
	case SB__MP_STR:
		return "str";
	case SB__MP_BIN:
		return "bin";
	case SB__MP_ARRAY:
		return "array";
	case SB__MP_MAP:
		return "map";
	default:
		return "ext";
	}
}

/* The types that take a value: an integer >= 0 fits uint, int and float. */
static uint16_t fitting_types(const struct sb__mp_item *it, const struct sb__schema_num *x)
{
	switch (it->type) {
	case SB__MP_NIL:
		return SB__ST_NIL;
	case SB__MP_BOOL:
		return SB__ST_BOOL;
	case SB__MP_UINT:
	case SB__MP_INT:
		return x->neg ? SB__ST_INT | SB__ST_FLOAT : SB__ST_INT | SB__ST_UINT | SB__ST_FLOAT;
	case SB__MP_FLOAT:
		return SB__ST_FLOAT;
	case SB__MP_STR:
		return SB__ST_STR;
	case SB__MP_BIN:
		return SB__ST_BIN;
	case SB__MP_ARRAY:
		return SB__ST_ARRAY;
	case SB__MP_MAP:
		return SB__ST_MAP;
	default:
		return SB__ST_EXT;
	}
}

/* "str or nil" */
static const char *types_str(char *buf, size_t cap, uint16_t types)
{
	size_t o = 0;
	buf[0] = 0;
	for (size_t i = 0; i + 1 < sizeof type_names / sizeof type_names[0] && o < cap; i++)
		if (types & type_names[i].bits)
			o += (size_t)snprintf(buf + o, cap - o, "%s%s", o ? " or " : "",
					      type_names[i].name);
	return buf;
}

/* ---- skipping ----------------------------------------------------------- */

/* The elements under an item just read (none unless it is a container). */
uint64_t sb__schema_children(const struct sb__mp_item *it)
{
	return it->type == SB__MP_ARRAY ? it->len
	       : it->type == SB__MP_MAP ? 2 * (uint64_t)it->len
					: 0;
}

int sb__schema_is_str(const struct sb__mp_item *it, const char *s)
{
	return it->type == SB__MP_STR && it->len == strlen(s) && memcmp(it->body, s, it->len) == 0;
}

/* ---- compiling ---------------------------------------------------------- */

/* A key being compiled; its name still points into the schema bytes. */
struct spec {
	const uint8_t *name;
	uint32_t len;
	uint16_t types;
	uint8_t has_min, has_max, required;
	struct sb__schema_num min, max;
};

struct compiler {
	struct spec keys[SB__SCHEMA_KEYS_MAX];
	unsigned n;
	char *why;
	size_t whylen;
};

static struct spec *spec_find(struct compiler *c, const uint8_t *name, uint32_t len)
{
	for (unsigned i = 0; i < c->n; i++)
		if (c->keys[i].len == len && memcmp(c->keys[i].name, name, len) == 0)
			return &c->keys[i];
	return NULL;
}

/* A new key, or NULL (and the text) when there is no room or the name is too long. */
static struct spec *spec_add(struct compiler *c, const struct sb__mp_item *name)
{
	struct sb__schema_quoted q;
	if (name->len > SB__SCHEMA_NAME_MAX) {
		sb__schema_fail(c->why, c->whylen, "schema key %s: name too long (%u, limit %u)",
				sb__schema_quote(&q, name->body, name->len), name->len,
				SB__SCHEMA_NAME_MAX);
		return NULL;
	}
	if (c->n == SB__SCHEMA_KEYS_MAX) {
		sb__schema_fail(c->why, c->whylen, "schema declares more than %u keys",
				SB__SCHEMA_KEYS_MAX);
		return NULL;
	}
	struct spec *s = &c->keys[c->n++];
	memset(s, 0, sizeof *s);
	s->name = name->body;
	s->len = name->len;
	s->types = SB__ST_ANY;
	return s;
}

static int parse_types(struct compiler *c, struct spec *s, const uint8_t **p, const uint8_t *end,
		       const struct sb__mp_item *v)
{
	struct sb__schema_quoted q, t;
	uint32_t n = v->type == SB__MP_ARRAY ? v->len : 1;
	struct sb__mp_item it = *v;

	if (v->type != SB__MP_STR && v->type != SB__MP_ARRAY)
		return sb__schema_fail(
			c->why, c->whylen,
			"schema key %s: type must be a type name or an array of them",
			sb__schema_quote(&q, s->name, s->len));
	if (n == 0)
		return sb__schema_fail(c->why, c->whylen, "schema key %s: type lists no types",
				       sb__schema_quote(&q, s->name, s->len));
	s->types = 0;
	for (uint32_t i = 0; i < n; i++) {
		if (v->type == SB__MP_ARRAY && sb__mp_read(p, end, &it) != SB__MP_OK)
			return SB_EINVAL;
		if (it.type != SB__MP_STR)
			return sb__schema_fail(
				c->why, c->whylen,
				"schema key %s: type must be a type name or an array of them",
				sb__schema_quote(&q, s->name, s->len));
		size_t k = 0;
		while (k < sizeof type_names / sizeof type_names[0] &&
		       !sb__schema_is_str(&it, type_names[k].name))
			k++;
		if (k == sizeof type_names / sizeof type_names[0])
			return sb__schema_fail(c->why, c->whylen, "schema key %s: unknown type %s",
					       sb__schema_quote(&q, s->name, s->len),
					       sb__schema_quote(&t, it.body, it.len));
		s->types |= type_names[k].bits;
	}
	return 0;
}

static int parse_bound(struct compiler *c, struct spec *s, const char *which,
		       const struct sb__mp_item *v, struct sb__schema_num *x)
{
	struct sb__schema_quoted q;
	if (!sb__schema_is_number(v))
		return sb__schema_fail(c->why, c->whylen, "schema key %s: %s must be a number",
				       sb__schema_quote(&q, s->name, s->len), which);
	sb__schema_read_num(v, x);
	if (isnan(x->d))
		return sb__schema_fail(c->why, c->whylen, "schema key %s: %s is not a number",
				       sb__schema_quote(&q, s->name, s->len), which);
	return 0;
}

/* Bounds apply to lengths (str, bin, array, map) or to values (int, uint,
 * float), never to both: "max": 10 on ["str", "int"] would be ambiguous. */
static int check_bounds(struct compiler *c, struct spec *s)
{
	struct sb__schema_quoted q;
	char a[32], b[32];
	const char *k = sb__schema_quote(&q, s->name, s->len);

	if (!s->has_min && !s->has_max)
		return 0;
	uint16_t len = s->types & LENGTH_TYPES, val = s->types & VALUE_TYPES;
	if (s->types == SB__ST_ANY || (!len && !val))
		return sb__schema_fail(
			c->why, c->whylen,
			"schema key %s: min and max need a type to bound (str, bin, array, "
			"map, int, uint or float)",
			k);
	if (len && val)
		return sb__schema_fail(
			c->why, c->whylen,
			"schema key %s: min and max cannot bound both lengths (str, bin, "
			"array, map) and values (int, uint, float)",
			k);
	for (int i = 0; len && i < 2; i++) {
		const struct sb__schema_num *x = i == 0 ? &s->min : &s->max;
		if ((i == 0 ? s->has_min : s->has_max) &&
		    (!x->integral || x->neg || x->u > UINT32_MAX))
			return sb__schema_fail(
				c->why, c->whylen,
				"schema key %s: %s is a length: a whole number from 0 to %u", k,
				i == 0 ? "min" : "max", UINT32_MAX);
	}
	if (s->has_min && s->has_max && sb__schema_num_cmp(&s->min, &s->max) > 0)
		return sb__schema_fail(c->why, c->whylen,
				       "schema key %s: min (%s) is above max (%s)", k,
				       sb__schema_num_str(a, sizeof a, &s->min),
				       sb__schema_num_str(b, sizeof b, &s->max));
	return 0;
}

/* {"type": ..., "min": ..., "max": ...} */
static int parse_spec(struct compiler *c, struct spec *s, const uint8_t **p, const uint8_t *end)
{
	struct sb__mp_item m, f, v;
	struct sb__schema_quoted q, t;
	unsigned given = 0;
	static const char *const fields[] = {"type", "min", "max"};

	if (sb__mp_read(p, end, &m) != SB__MP_OK)
		return SB_EINVAL;
	if (m.type != SB__MP_MAP)
		return sb__schema_fail(c->why, c->whylen,
				       "schema key %s: must be a map of type, min, max",
				       sb__schema_quote(&q, s->name, s->len));
	for (uint32_t i = 0; i < m.len; i++) {
		if (sb__mp_read(p, end, &f) != SB__MP_OK)
			return SB_EINVAL;
		unsigned k = 0;
		while (k < 3 && !sb__schema_is_str(&f, fields[k]))
			k++;
		if (k == 3) {
			if (f.type != SB__MP_STR)
				return sb__schema_fail(
					c->why, c->whylen,
					"schema key %s: fields must be strings (type, min, max)",
					sb__schema_quote(&q, s->name, s->len));
			return sb__schema_fail(
				c->why, c->whylen,
				"schema key %s: unknown field %s (expected type, min, max)",
				sb__schema_quote(&q, s->name, s->len),
				sb__schema_quote(&t, f.body, f.len));
		}
		if (given & (1u << k))
			return sb__schema_fail(c->why, c->whylen,
					       "schema key %s: field \"%s\" given twice",
					       sb__schema_quote(&q, s->name, s->len), fields[k]);
		given |= 1u << k;
		if (sb__mp_read(p, end, &v) != SB__MP_OK)
			return SB_EINVAL;
		int rc = k == 0   ? parse_types(c, s, p, end, &v)
			 : k == 1 ? parse_bound(c, s, "min", &v, &s->min)
				  : parse_bound(c, s, "max", &v, &s->max);
		if (rc != 0)
			return rc;
		s->has_min |= k == 1;
		s->has_max |= k == 2;
		if (k != 0 && sb__mp_skip(p, end, sb__schema_children(&v)) != 0)
			return SB_EINVAL;
	}
	return check_bounds(c, s);
}

/* {"name": spec, ...} */
static int parse_keys(struct compiler *c, const uint8_t *p, const uint8_t *end)
{
	struct sb__mp_item m, name;
	struct sb__schema_quoted q;

	if (sb__mp_read(&p, end, &m) != SB__MP_OK)
		return SB_EINVAL;
	if (m.type != SB__MP_MAP)
		return sb__schema_fail(
			c->why, c->whylen,
			"schema field \"keys\" must be a map of key names to key specs");
	for (uint32_t i = 0; i < m.len; i++) {
		if (sb__mp_read(&p, end, &name) != SB__MP_OK)
			return SB_EINVAL;
		if (name.type != SB__MP_STR)
			return sb__schema_fail(c->why, c->whylen,
					       "schema field \"keys\": key names must be strings");
		if (spec_find(c, name.body, name.len) != NULL)
			return sb__schema_fail(c->why, c->whylen, "schema key %s given twice",
					       sb__schema_quote(&q, name.body, name.len));
		struct spec *s = spec_add(c, &name);
		int rc = s != NULL ? parse_spec(c, s, &p, end) : SB_EINVAL;
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* ["name", ...]; a name not in "keys" is declared here with any type. */
static int parse_required(struct compiler *c, const uint8_t *p, const uint8_t *end)
{
	struct sb__mp_item a, name;
	struct sb__schema_quoted q;

	if (sb__mp_read(&p, end, &a) != SB__MP_OK)
		return SB_EINVAL;
	if (a.type != SB__MP_ARRAY)
		return sb__schema_fail(c->why, c->whylen,
				       "schema field \"required\" must be an array of key names");
	for (uint32_t i = 0; i < a.len; i++) {
		if (sb__mp_read(&p, end, &name) != SB__MP_OK)
			return SB_EINVAL;
		if (name.type != SB__MP_STR) {
			sb__schema_fail(c->why, c->whylen,
					"schema field \"required\" must be an array of key names");
			return SB_EINVAL;
		}
		struct spec *s = spec_find(c, name.body, name.len);
		if (s != NULL && s->required)
			return sb__schema_fail(c->why, c->whylen,
					       "schema required key %s listed twice",
					       sb__schema_quote(&q, name.body, name.len));
		if (s == NULL && (s = spec_add(c, &name)) == NULL)
			return SB_EINVAL;
		s->required = 1;
	}
	return 0;
}

/* Lexicographic by bytes, a prefix first: the order check searches in. */
static int name_cmp(const uint8_t *a, uint32_t alen, const uint8_t *b, uint32_t blen)
{
	int d = memcmp(a, b, alen < blen ? alen : blen);
	return d != 0 ? d : (alen > blen) - (alen < blen);
}

static int spec_cmp(const void *x, const void *y)
{
	const struct spec *a = x, *b = y;
	return name_cmp(a->name, a->len, b->name, b->len);
}

/* Lays the compiled keys and their names out in one block. */
static struct sb__schema *build(struct compiler *c, int additional)
{
	size_t names = 0;
	for (unsigned i = 0; i < c->n; i++)
		names += c->keys[i].len;
	size_t head = sizeof(struct sb__schema) + c->n * sizeof(struct sb__schema_key);
	struct sb__schema *s = calloc(1, head + names);
	if (s == NULL)
		return NULL;
	qsort(c->keys, c->n, sizeof c->keys[0], spec_cmp);
	atomic_init(&s->refs, 1);
	s->nkeys = c->n;
	s->additional = (uint8_t)additional;
	s->size = (uint32_t)(head + names);
	size_t off = head;
	for (unsigned i = 0; i < c->n; i++) {
		const struct spec *p = &c->keys[i];
		struct sb__schema_key *k = &s->keys[i];
		k->name_off = (uint32_t)off;
		k->name_len = (uint16_t)p->len;
		k->types = p->types;
		k->has_min = p->has_min;
		k->has_max = p->has_max;
		k->min = p->min;
		k->max = p->max;
		memcpy((uint8_t *)s + off, p->name, p->len);
		off += p->len;
		if (p->required)
			s->required |= 1ull << i;
	}
	return s;
}

/* Which format a schema map is in: this one has "keys" or "additional";
 * a map with neither that names anything but "required" is JSON Schema.
 * {} and {"required": [...]} stay in this format, where they mean what
 * they did before JSON Schema was accepted. */
static int is_json_schema(const uint8_t *p, const uint8_t *end, uint32_t n)
{
	struct sb__mp_item f, v;
	int other = 0;
	for (uint32_t i = 0; i < n; i++) {
		sb__mp_read(&p, end, &f);
		if (sb__schema_is_str(&f, "keys") || sb__schema_is_str(&f, "additional"))
			return 0;
		other |= f.type == SB__MP_STR && !sb__schema_is_str(&f, "required");
		if (sb__mp_skip(&p, end, sb__schema_children(&f)) != 0 ||
		    sb__mp_read(&p, end, &v) != SB__MP_OK ||
		    sb__mp_skip(&p, end, sb__schema_children(&v)) != 0)
			return 0;
	}
	return other;
}

/* Appends the schema's bytes as registered to its compiled block, for
 * $sb.routes to show; the check never reads them. */
static int keep_source(struct sb__schema **out, const uint8_t *src, size_t len)
{
	struct sb__schema *s = realloc(*out, (size_t)(*out)->size + len);
	if (s == NULL) {
		free(*out);
		*out = NULL;
		return SB_ENOMEM;
	}
	memcpy((uint8_t *)s + s->size, src, len);
	s->src_off = s->size;
	s->src_len = (uint32_t)len;
	s->size += (uint32_t)len;
	*out = s;
	return 0;
}

static int compile_json(const uint8_t *p, const uint8_t *end, struct sb__schema **out, char *why,
			size_t whylen)
{
	void *block;
	size_t size;
	int rc = sb__jschema_compile(p, end, offsetof(struct sb__schema, keys), &block, &size, why,
				     whylen);
	if (rc != 0)
		return rc;
	struct sb__schema *s = block;
	atomic_init(&s->refs, 1);
	s->json = 1;
	s->size = (uint32_t)size;
	*out = s;
	return keep_source(out, p, (size_t)(end - p));
}

int sb__schema_compile(const uint8_t *p, size_t len, struct sb__schema **out, char *why,
		       size_t whylen)
{
	const uint8_t *end = p + len, *at[2] = {NULL, NULL};
	struct sb__mp_item m, f, v;
	struct sb__schema_quoted q;
	int additional = 1, rc;
	unsigned given = 0;
	static const char *const fields[] = {"keys", "required", "additional"};

	*out = NULL;
	if (whylen > 0)
		why[0] = 0;
	/* Well-formed first: the walk below then only meets bytes it can read. */
	if (len == 0 || sb_payload_check(p, len) != 0)
		return sb__schema_fail(why, whylen,
				       "schema is not one well-formed MessagePack value");
	const uint8_t *start = p;
	sb__mp_read(&p, end, &m);
	if (m.type == SB__MP_NIL)
		return 0;
	if (m.type != SB__MP_MAP)
		return sb__schema_fail(why, whylen, "schema must be a map (or nil for none)");
	if (is_json_schema(p, end, m.len))
		return compile_json(start, end, out, why, whylen);
	for (uint32_t i = 0; i < m.len; i++) {
		sb__mp_read(&p, end, &f);
		unsigned k = 0;
		while (k < 3 && !sb__schema_is_str(&f, fields[k]))
			k++;
		if (k == 3) {
			if (f.type != SB__MP_STR)
				return sb__schema_fail(
					why, whylen,
					"schema fields must be strings (keys, required, "
					"additional)");
			return sb__schema_fail(
				why, whylen,
				"unknown schema field %s (expected keys, required, additional)",
				sb__schema_quote(&q, f.body, f.len));
		}
		if (given & (1u << k))
			return sb__schema_fail(why, whylen, "schema field \"%s\" given twice",
					       fields[k]);
		given |= 1u << k;
		if (k < 2)
			at[k] = p;
		sb__mp_read(&p, end, &v);
		if (k == 2) {
			if (v.type != SB__MP_BOOL)
				return sb__schema_fail(
					why, whylen,
					"schema field \"additional\" must be true or false");
			additional = (int)v.u;
		}
		if (sb__mp_skip(&p, end, sb__schema_children(&v)) != 0)
			return sb__schema_fail(why, whylen,
					       "schema is not one well-formed MessagePack value");
	}

	/* "keys" before "required", whatever order they came in: a required
	 * name then finds its declared type. */
	struct compiler *c = malloc(sizeof *c);
	if (c == NULL)
		return SB_ENOMEM;
	c->n = 0;
	c->why = why;
	c->whylen = whylen;
	if ((at[0] != NULL && (rc = parse_keys(c, at[0], end)) != 0) ||
	    (at[1] != NULL && (rc = parse_required(c, at[1], end)) != 0))
		goto done;
	rc = (*out = build(c, additional)) != NULL ? keep_source(out, start, len) : SB_ENOMEM;
done:
	free(c);
	return rc;
}

size_t sb__schema_size(const struct sb__schema *s)
{
	return s->size;
}

const uint8_t *sb__schema_source(const struct sb__schema *s, size_t *len)
{
	*len = s->src_len;
	return (const uint8_t *)s + s->src_off;
}

void sb__schema_ref(struct sb__schema *s)
{
	atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

void sb__schema_unref(struct sb__schema *s)
{
	/* Release pairs with the last holder's acquire: every shard's reads
	 * of the block happen before it is freed. */
	if (s != NULL && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
		free(s);
}

/* ---- checking ----------------------------------------------------------- */

static const uint8_t *key_name(const struct sb__schema *s, const struct sb__schema_key *k)
{
	return (const uint8_t *)s + k->name_off;
}

/* Binary search over the sorted names: -1 if the key is not declared. */
static int key_find(const struct sb__schema *s, const uint8_t *name, uint32_t len)
{
	int lo = 0, hi = (int)s->nkeys - 1;
	while (lo <= hi) {
		int mid = (lo + hi) / 2;
		const struct sb__schema_key *k = &s->keys[mid];
		int d = name_cmp(key_name(s, k), k->name_len, name, len);
		if (d == 0)
			return mid;
		if (d < 0)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return -1;
}

static const char *length_noun(enum sb__mp_type t)
{
	return t == SB__MP_STR     ? "string"
	       : t == SB__MP_BIN   ? "binary"
	       : t == SB__MP_ARRAY ? "array"
				   : "map";
}

/* One value (its header just read) against its key's type and bounds. */
static int check_value(const struct sb__schema *s, const struct sb__schema_key *k,
		       const struct sb__mp_item *it, char *why, size_t whylen)
{
	struct sb__schema_num x = {0};
	struct sb__schema_quoted q;
	char a[32], b[96]; /* b: all nine type names fit */

	if (sb__schema_is_number(it))
		sb__schema_read_num(it, &x);
	if (!(fitting_types(it, &x) & k->types))
		return sb__schema_fail(why, whylen, "key %s: expected %s, got %s",
				       sb__schema_quote(&q, key_name(s, k), k->name_len),
				       types_str(b, sizeof b, k->types), value_name(it, &x));
	if (!k->has_min && !k->has_max)
		return 0;
	if (it->type == SB__MP_STR || it->type == SB__MP_BIN || it->type == SB__MP_ARRAY ||
	    it->type == SB__MP_MAP) {
		if (k->has_max && it->len > k->max.u)
			return sb__schema_fail(why, whylen, "key %s: %s too long (%u, limit %llu)",
					       sb__schema_quote(&q, key_name(s, k), k->name_len),
					       length_noun(it->type), it->len,
					       (unsigned long long)k->max.u);
		if (k->has_min && it->len < k->min.u)
			return sb__schema_fail(why, whylen, "key %s: %s too short (%u, limit %llu)",
					       sb__schema_quote(&q, key_name(s, k), k->name_len),
					       length_noun(it->type), it->len,
					       (unsigned long long)k->min.u);
	} else if (sb__schema_is_number(it)) {
		if (isnan(x.d))
			return sb__schema_fail(why, whylen, "key %s: value is NaN",
					       sb__schema_quote(&q, key_name(s, k), k->name_len));
		if (k->has_max && sb__schema_num_cmp(&x, &k->max) > 0)
			return sb__schema_fail(why, whylen,
					       "key %s: value too large (%s, limit %s)",
					       sb__schema_quote(&q, key_name(s, k), k->name_len),
					       sb__schema_num_str(a, sizeof a, &x),
					       sb__schema_num_str(b, sizeof b, &k->max));
		if (k->has_min && sb__schema_num_cmp(&x, &k->min) < 0)
			return sb__schema_fail(why, whylen,
					       "key %s: value too small (%s, limit %s)",
					       sb__schema_quote(&q, key_name(s, k), k->name_len),
					       sb__schema_num_str(a, sizeof a, &x),
					       sb__schema_num_str(b, sizeof b, &k->min));
	}
	return 0;
}

static int malformed(char *why, size_t whylen)
{
	return sb__schema_fail(why, whylen, "arguments are not well-formed MessagePack");
}

int sb__schema_check(const struct sb__schema *s, const uint8_t *p, size_t len, char *why,
		     size_t whylen)
{
	const uint8_t *end = p + len;
	struct sb__mp_item m, key, v;
	struct sb__schema_quoted q;
	uint64_t seen = 0;

	if (s->json)
		return sb__jschema_check(s->keys, p, len, why, whylen);
	if (whylen > 0)
		why[0] = 0;
	if (sb__mp_read(&p, end, &m) != SB__MP_OK)
		return malformed(why, whylen);
	if (m.type == SB__MP_NIL) /* no arguments at all: an empty map */
		m.len = 0;
	else if (m.type != SB__MP_MAP)
		return sb__schema_fail(why, whylen, "arguments must be a map");
	if (2 * (uint64_t)m.len > (uint64_t)(end - p))
		return malformed(why, whylen);
	for (uint32_t i = 0; i < m.len; i++) {
		if (sb__mp_read(&p, end, &key) != SB__MP_OK)
			return malformed(why, whylen);
		int idx = key.type == SB__MP_STR ? key_find(s, key.body, key.len) : -1;
		if (idx < 0) {
			if (!s->additional)
				return key.type == SB__MP_STR
					       ? sb__schema_fail(
							 why, whylen, "unknown key %s",
							 sb__schema_quote(&q, key.body, key.len))
					       : sb__schema_fail(why, whylen,
								 "unknown key (not a string)");
			if (sb__mp_skip(&p, end, sb__schema_children(&key) + 1) != 0)
				return malformed(why, whylen);
			continue;
		}
		const struct sb__schema_key *k = &s->keys[idx];
		if (seen & (1ull << idx))
			return sb__schema_fail(why, whylen, "key %s given twice",
					       sb__schema_quote(&q, key.body, key.len));
		seen |= 1ull << idx;
		if (sb__mp_read(&p, end, &v) != SB__MP_OK)
			return malformed(why, whylen);
		int rc = check_value(s, k, &v, why, whylen);
		if (rc != 0)
			return rc;
		if (sb__mp_skip(&p, end, sb__schema_children(&v)) != 0)
			return malformed(why, whylen);
	}
	if (p != end)
		return malformed(why, whylen);
	uint64_t missing = s->required & ~seen;
	if (missing != 0) {
		const struct sb__schema_key *k = &s->keys[__builtin_ctzll(missing)];
		return sb__schema_fail(why, whylen, "missing required key %s",
				       sb__schema_quote(&q, key_name(s, k), k->name_len));
	}
	return 0;
}

int sb_schema_validate(const void *schema, size_t len, char *why, size_t whylen)
{
	struct sb__schema *s;
	if (schema == NULL || len == 0) {
		if (whylen > 0)
			why[0] = 0;
		return 0;
	}
	int rc = sb__schema_compile(schema, len, &s, why, whylen);
	sb__schema_unref(s);
	return rc;
}

int sb_schema_from_json(const char *json, size_t len, void **out, size_t *outlen, char *why,
			size_t whylen)
{
	struct sb__json_buf b = {0};
	struct sb__json_error e;

	*out = NULL;
	*outlen = 0;
	if (whylen > 0)
		why[0] = 0;
	if (json == NULL)
		return SB_EINVAL;
	int rc = sb__json_parse(json, len, &b, &e);
	if (rc != 0) {
		/* A refusal may leave the buffer allocated (and empty). */
		sb__json_buf_free(&b);
		return rc == SB_ENOMEM
			       ? rc
			       : sb__schema_fail(why, whylen, "JSON at byte %zu: %s", e.at, e.what);
	}
	if ((rc = sb_schema_validate(b.data, b.len, why, whylen)) != 0) {
		sb__json_buf_free(&b);
		return rc;
	}
	*out = b.data; /* the buffer's own malloc'd bytes: free() releases them */
	*outlen = b.len;
	return 0;
}
