/* Argument schemas written as JSON Schema: the common keywords compiled at
 * REGISTER into a tree of nodes in one pointer-free image, checked in one
 * pass that never allocates, the path of the first fault in the text. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <switchboard/proto.h>

#include "proto/mp.h"
#include "proto/schema-int.h"
#include "proto/schema.h"

/* JSON types a value may have ("type"); bin and ext have none of JSON's
 * and fit only a schema without "type". */
#define JT_NULL 0x001u
#define JT_BOOL 0x002u
#define JT_INT  0x004u /* integers, and floats with an integral value */
#define JT_NUM  0x008u /* every integer and float */
#define JT_STR  0x010u
#define JT_ARR  0x020u
#define JT_OBJ  0x040u
#define JT_BIN  0x080u
#define JT_EXT  0x100u
#define JT_ANY  0x1ffu

/* Which bounds a node has. */
#define H_MIN_LEN   0x01u
#define H_MAX_LEN   0x02u
#define H_MIN_ITEMS 0x04u
#define H_MAX_ITEMS 0x08u
#define H_MIN       0x10u
#define H_MAX       0x20u
#define H_XMIN      0x40u /* exclusiveMinimum */
#define H_XMAX      0x80u /* exclusiveMaximum */
#define H_MIN_PROPS 0x100u
#define H_MAX_PROPS 0x200u

/* Keys not in "properties" ("additionalProperties"). */
#define ADD_ANY  0 /* allowed, unchecked (absent or true) */
#define ADD_NONE 1 /* refused (false) */
#define ADD_NODE 2 /* checked against node `additional` */

#define NO_NODE UINT32_MAX /* a schema that accepts anything (true, or left out) */

/* One schema. Indexes point into the image's arrays, never outside it. */
struct jnode {
	uint16_t types;                   /* JT_* a value may have */
	uint16_t has;                     /* H_* bounds given */
	uint8_t add;                      /* ADD_*: keys not in properties */
	uint8_t is_const;                 /* the one value is "const", not "enum" (for the text) */
	uint8_t nprops;                   /* properties, at most SB__SCHEMA_KEYS_MAX */
	uint32_t prop0;                   /* first of props[], sorted by name bytes */
	uint32_t items;                   /* every array item's node, NO_NODE: unchecked */
	uint32_t additional;              /* ADD_NODE: the node for keys not in properties */
	uint32_t val0, nvals;             /* enum or const: vals[val0 .. val0 + nvals) */
	uint32_t min_len, max_len;        /* strings, in characters */
	uint32_t min_items, max_items;    /* arrays */
	uint32_t min_props, max_props;    /* objects: keys */
	uint64_t required;                /* bit i: props[prop0 + i] must be present */
	struct sb__schema_num min, max;   /* numbers */
	struct sb__schema_num xmin, xmax; /* numbers, exclusive */
};

/* A value of enum or const: a scalar (JSON's containers are refused). */
#define VK_NULL 0
#define VK_BOOL 1
#define VK_NUM  2
#define VK_STR  3
struct jval {
	struct sb__schema_num num; /* VK_NUM */
	uint32_t str_off, str_len; /* VK_STR: bytes from the image's start */
	uint8_t kind;              /* VK_* */
	uint8_t b;                 /* VK_BOOL */
};

struct jprop {
	uint32_t name_off; /* bytes from the image's start */
	uint32_t name_len; /* at most SB__SCHEMA_NAME_MAX */
	uint32_t node;     /* its schema; NO_NODE for a name only "required" lists */
};

/* The compiled image: nodes (the top schema is nodes[0]), then vals[],
 * props[] and the bytes of names and strings. */
struct jimage {
	uint32_t nnodes, nvals, nprops;
	uint32_t vals_off, props_off; /* bytes from the image's start */
	uint32_t pad;
	struct jnode nodes[];
};

/* ---- paths -------------------------------------------------------------- */

/* One step from the top of the arguments to a fault. */
#define SEG_KEY   0 /* a map key: .name, or ["odd name"] */
#define SEG_INDEX 1 /* an array item: [3] */
#define SEG_ITEMS 2 /* the schema of every item (compiling): [] */
#define SEG_ADD   3 /* the schema of undeclared keys (compiling): .* */
struct seg {
	const uint8_t *name;
	uint32_t len; /* SEG_KEY: bytes of name; SEG_INDEX: the index */
	uint8_t kind;
};

/* A path and a text: "address.zip: expected string, got integer", or the
 * text alone at the top. Never allocates; cut on a character. */
struct jtext {
	struct seg segs[SB__JSCHEMA_DEPTH_MAX + 2];
	unsigned n;
	char *why;
	size_t whylen;
};

static int plain_name(const uint8_t *p, uint32_t n)
{
	if (n == 0)
		return 0;
	for (uint32_t i = 0; i < n; i++)
		if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z') ||
		      (p[i] >= '0' && p[i] <= '9') || p[i] == '_' || p[i] == '-' || p[i] == '$'))
			return 0;
	return 1;
}

static int jfail(struct jtext *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int jfail(struct jtext *t, const char *fmt, ...)
{
	struct sb__schema_quoted q;
	size_t o = 0, cap = t->whylen;
	va_list ap;

	if (cap == 0)
		return SB_EINVAL;
	t->why[0] = 0;
	for (unsigned i = 0; i < t->n && o + 1 < cap; i++) {
		const struct seg *s = &t->segs[i];
		int w;
		if (s->kind == SEG_INDEX)
			w = snprintf(t->why + o, cap - o, "[%u]", s->len);
		else if (s->kind == SEG_ITEMS)
			w = snprintf(t->why + o, cap - o, "[]");
		else if (s->kind == SEG_ADD)
			w = snprintf(t->why + o, cap - o, "%s*", i ? "." : "");
		else if (plain_name(s->name, s->len))
			w = snprintf(t->why + o, cap - o, "%s%.*s", i ? "." : "", (int)s->len,
				     (const char *)s->name);
		else
			w = snprintf(t->why + o, cap - o, "[%s]",
				     sb__schema_quote(&q, s->name, s->len));
		o += (size_t)w < cap - o ? (size_t)w : cap - o - 1;
	}
	if (t->n > 0 && o + 1 < cap) {
		int w = snprintf(t->why + o, cap - o, ": ");
		o += (size_t)w < cap - o ? (size_t)w : cap - o - 1;
	}
	if (o + 1 < cap) {
		va_start(ap, fmt);
		vsnprintf(t->why + o, cap - o, fmt, ap);
		va_end(ap);
	}
	sb__schema_trim_utf8(t->why);
	return SB_EINVAL;
}

static void push(struct jtext *t, uint8_t kind, const uint8_t *name, uint32_t len)
{
	t->segs[t->n++] = (struct seg){.name = name, .len = len, .kind = kind};
}

/* ---- compiling ---------------------------------------------------------- */

/* Keywords of one schema, in the order they are compiled. Annotations
 * change nothing a check does and are skipped; any other keyword is
 * refused, so a schema never means less than its author wrote. */
enum {
	K_TYPE,
	K_MIN_LENGTH,
	K_MAX_LENGTH,
	K_MIN_ITEMS,
	K_MAX_ITEMS,
	K_MIN_PROPS,
	K_MAX_PROPS,
	K_MINIMUM,
	K_MAXIMUM,
	K_XMIN,
	K_XMAX,
	K_ENUM,
	K_CONST,
	K_PROPERTIES,
	K_REQUIRED,
	K_ADDITIONAL,
	K_ITEMS,
	K_CHECKED, /* the ones above are checked; the ones below are not */
	K_SCHEMA = K_CHECKED,
	K_COMMENT,
	K_TITLE,
	K_DESCRIPTION,
	K_DEFAULT,
	K_EXAMPLES,
	K_COUNT
};

static const char *const keywords[K_COUNT] = {
	"type",        "minLength",        "maxLength",        "minItems",
	"maxItems",    "minProperties",    "maxProperties",    "minimum",
	"maximum",     "exclusiveMinimum", "exclusiveMaximum", "enum",
	"const",       "properties",       "required",         "additionalProperties",
	"items",       "$schema",          "$comment",         "title",
	"description", "default",          "examples",
};

static const struct {
	const char *name;
	uint16_t bits;
} type_names[] = {
	{"null", JT_NULL},  {"boolean", JT_BOOL}, {"integer", JT_INT}, {"number", JT_NUM},
	{"string", JT_STR}, {"array", JT_ARR},    {"object", JT_OBJ},
};
#define NTYPES (sizeof type_names / sizeof type_names[0])

/* A property being compiled: its name and schema still point into the
 * REGISTER's bytes. */
struct cprop {
	const uint8_t *name;
	uint32_t len;
	uint32_t node;
	const uint8_t *sub; /* its schema; NULL if only "required" names it */
	uint8_t required;
};

struct cval {
	struct jval v;
	const uint8_t *str; /* VK_STR: the bytes, in the REGISTER */
};

struct compiler {
	struct jnode nodes[SB__JSCHEMA_NODES_MAX];
	struct cprop props[SB__JSCHEMA_NODES_MAX];
	struct cval vals[SB__JSCHEMA_VALUES_MAX];
	unsigned nn, np, nv;
	size_t bytes; /* of names and strings */
	const uint8_t *end;
	struct jtext t;
};

/* Reads the next item; the schema was checked well-formed as a whole, so
 * this fails only on a bug, and then refuses rather than reads on. */
static int next(struct compiler *c, const uint8_t **p, struct sb__mp_item *it)
{
	if (sb__mp_read(p, c->end, it) != SB__MP_OK)
		return jfail(&c->t, "schema is not one well-formed MessagePack value");
	return 0;
}

static int skip_rest(struct compiler *c, const uint8_t **p, const struct sb__mp_item *it)
{
	if (sb__mp_skip(p, c->end, sb__schema_children(it)) != 0)
		return jfail(&c->t, "schema is not one well-formed MessagePack value");
	return 0;
}

static int parse_type(struct compiler *c, struct jnode *n, const uint8_t *p)
{
	struct sb__mp_item v, it;
	struct sb__schema_quoted q;

	if (next(c, &p, &v) != 0)
		return SB_EINVAL;
	if (v.type != SB__MP_STR && v.type != SB__MP_ARRAY)
		return jfail(&c->t, "\"type\" must be a type name or an array of them");
	if (v.type == SB__MP_ARRAY && v.len == 0)
		return jfail(&c->t, "\"type\" lists no types");
	uint32_t count = v.type == SB__MP_ARRAY ? v.len : 1;
	it = v;
	n->types = 0;
	for (uint32_t i = 0; i < count; i++) {
		if (v.type == SB__MP_ARRAY && next(c, &p, &it) != 0)
			return SB_EINVAL;
		if (it.type != SB__MP_STR)
			return jfail(&c->t, "\"type\" must be a type name or an array of them");
		size_t k = 0;
		while (k < NTYPES && !sb__schema_is_str(&it, type_names[k].name))
			k++;
		if (k == NTYPES)
			return jfail(&c->t,
				     "unknown type %s (expected null, boolean, integer, number, "
				     "string, array or object)",
				     sb__schema_quote(&q, it.body, it.len));
		n->types |= type_names[k].bits;
	}
	return 0;
}

/* minLength and the like: a whole number from 0 to 2^32-1 (2.0 is one). */
static int parse_count(struct compiler *c, int k, const uint8_t *p, uint32_t *out)
{
	struct sb__mp_item v;
	struct sb__schema_num x;

	if (next(c, &p, &v) != 0)
		return SB_EINVAL;
	if (sb__schema_is_number(&v)) {
		sb__schema_read_num(&v, &x);
		if (!x.integral && x.d >= 0 && x.d <= UINT32_MAX && x.d == (double)(uint32_t)x.d) {
			*out = (uint32_t)x.d;
			return 0;
		}
		if (x.integral && !x.neg && x.u <= UINT32_MAX) {
			*out = (uint32_t)x.u;
			return 0;
		}
	}
	return jfail(&c->t, "\"%s\" must be a whole number from 0 to %u", keywords[k], UINT32_MAX);
}

static int parse_bound(struct compiler *c, int k, const uint8_t *p, struct sb__schema_num *x)
{
	struct sb__mp_item v;

	if (next(c, &p, &v) != 0)
		return SB_EINVAL;
	if (sb__schema_is_number(&v)) {
		sb__schema_read_num(&v, x);
		if (x->d == x->d) /* not NaN */
			return 0;
	}
	return jfail(&c->t, "\"%s\" must be a number", keywords[k]);
}

/* One value of enum or const. */
static int parse_value(struct compiler *c, const uint8_t **p)
{
	struct sb__mp_item v;

	if (next(c, p, &v) != 0)
		return SB_EINVAL;
	if (c->nv == SB__JSCHEMA_VALUES_MAX)
		return jfail(&c->t, "schema has more than %u enum and const values in all",
			     SB__JSCHEMA_VALUES_MAX);
	struct cval *cv = &c->vals[c->nv];
	memset(cv, 0, sizeof *cv);
	switch (v.type) {
	case SB__MP_NIL:
		cv->v.kind = VK_NULL;
		break;
	case SB__MP_BOOL:
		cv->v.kind = VK_BOOL;
		cv->v.b = (uint8_t)v.u;
		break;
	case SB__MP_UINT:
	case SB__MP_INT:
	case SB__MP_FLOAT:
		cv->v.kind = VK_NUM;
		sb__schema_read_num(&v, &cv->v.num);
		break;
	case SB__MP_STR:
		cv->v.kind = VK_STR;
		cv->v.str_len = v.len;
		cv->str = v.body;
		c->bytes += v.len;
		break;
	default:
		return jfail(&c->t, "enum and const values must be null, booleans, numbers or "
				    "strings");
	}
	c->nv++;
	return 0;
}

static int parse_enum(struct compiler *c, struct jnode *n, const uint8_t *p, int is_const)
{
	struct sb__mp_item a;

	n->val0 = c->nv;
	n->is_const = (uint8_t)is_const;
	if (is_const) {
		n->nvals = 1;
		return parse_value(c, &p);
	}
	if (next(c, &p, &a) != 0)
		return SB_EINVAL;
	if (a.type != SB__MP_ARRAY || a.len == 0)
		return jfail(&c->t, "\"enum\" must be an array of at least one value");
	if (a.len > SB__JSCHEMA_ENUM_MAX)
		return jfail(&c->t, "\"enum\" has more than %u values", SB__JSCHEMA_ENUM_MAX);
	n->nvals = a.len;
	for (uint32_t i = 0; i < a.len; i++)
		if (parse_value(c, &p) != 0)
			return SB_EINVAL;
	return 0;
}

/* Lexicographic by bytes, a prefix first: the order check searches in. */
static int name_cmp(const uint8_t *a, uint32_t alen, const uint8_t *b, uint32_t blen)
{
	int d = memcmp(a, b, alen < blen ? alen : blen);
	return d != 0 ? d : (alen > blen) - (alen < blen);
}

static int cprop_cmp(const void *x, const void *y)
{
	const struct cprop *a = x, *b = y;
	return name_cmp(a->name, a->len, b->name, b->len);
}

static struct cprop *prop_find(struct compiler *c, unsigned from, const struct sb__mp_item *name)
{
	for (unsigned i = from; i < c->np; i++)
		if (c->props[i].len == name->len &&
		    memcmp(c->props[i].name, name->body, name->len) == 0)
			return &c->props[i];
	return NULL;
}

static struct cprop *prop_add(struct compiler *c, unsigned from, const struct sb__mp_item *name)
{
	struct sb__schema_quoted q;
	if (name->len > SB__SCHEMA_NAME_MAX) {
		jfail(&c->t, "property name %s too long (%u, limit %u)",
		      sb__schema_quote(&q, name->body, name->len), name->len, SB__SCHEMA_NAME_MAX);
		return NULL;
	}
	if (c->np - from == SB__SCHEMA_KEYS_MAX) {
		jfail(&c->t, "more than %u properties", SB__SCHEMA_KEYS_MAX);
		return NULL;
	}
	if (c->np == SB__JSCHEMA_NODES_MAX) {
		jfail(&c->t, "schema has more than %u properties in all", SB__JSCHEMA_NODES_MAX);
		return NULL;
	}
	struct cprop *cp = &c->props[c->np++];
	*cp = (struct cprop){.name = name->body, .len = name->len, .node = NO_NODE};
	c->bytes += name->len;
	return cp;
}

static int compile_node(struct compiler *c, const uint8_t *p, uint32_t *out);

/* "properties" and "required": the node's names, laid out together and
 * sorted before any nested schema adds names of its own. */
static int parse_props(struct compiler *c, struct jnode *n, const uint8_t *props,
		       const uint8_t *req)
{
	struct sb__mp_item m, name, v;
	struct sb__schema_quoted q;
	unsigned from = c->np;
	const uint8_t *p;

	if (props != NULL) {
		p = props;
		if (next(c, &p, &m) != 0)
			return SB_EINVAL;
		if (m.type != SB__MP_MAP)
			return jfail(&c->t, "\"properties\" must be a map of names to schemas");
		for (uint32_t i = 0; i < m.len; i++) {
			if (next(c, &p, &name) != 0)
				return SB_EINVAL;
			if (name.type != SB__MP_STR)
				return jfail(&c->t, "property names must be strings");
			if (prop_find(c, from, &name) != NULL)
				return jfail(&c->t, "property %s given twice",
					     sb__schema_quote(&q, name.body, name.len));
			struct cprop *cp = prop_add(c, from, &name);
			if (cp == NULL)
				return SB_EINVAL;
			cp->sub = p;
			if (next(c, &p, &v) != 0 || skip_rest(c, &p, &v) != 0)
				return SB_EINVAL;
		}
	}
	if (req != NULL) {
		p = req;
		if (next(c, &p, &m) != 0)
			return SB_EINVAL;
		if (m.type != SB__MP_ARRAY)
			return jfail(&c->t, "\"required\" must be an array of names");
		for (uint32_t i = 0; i < m.len; i++) {
			if (next(c, &p, &name) != 0)
				return SB_EINVAL;
			if (name.type != SB__MP_STR)
				return jfail(&c->t, "\"required\" must be an array of names");
			struct cprop *cp = prop_find(c, from, &name);
			if (cp != NULL && cp->required)
				return jfail(&c->t, "required key %s listed twice",
					     sb__schema_quote(&q, name.body, name.len));
			if (cp == NULL && (cp = prop_add(c, from, &name)) == NULL)
				return SB_EINVAL;
			cp->required = 1;
		}
	}
	unsigned np = c->np - from;
	qsort(c->props + from, np, sizeof c->props[0], cprop_cmp);
	n->prop0 = from;
	n->nprops = (uint8_t)np;
	for (unsigned i = 0; i < np; i++) {
		struct cprop *cp = &c->props[from + i];
		if (cp->required)
			n->required |= 1ull << i;
		if (cp->sub == NULL)
			continue;
		push(&c->t, SEG_KEY, cp->name, cp->len);
		int rc = compile_node(c, cp->sub, &cp->node);
		c->t.n--;
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* A nested schema at *p under a path step. */
static int compile_sub(struct compiler *c, uint8_t kind, const uint8_t *p, uint32_t *out)
{
	push(&c->t, kind, NULL, 0);
	int rc = compile_node(c, p, out);
	c->t.n--;
	return rc;
}

static int compile_node(struct compiler *c, const uint8_t *p, uint32_t *out)
{
	const uint8_t *at[K_COUNT] = {NULL};
	struct sb__mp_item m, k, v;
	struct sb__schema_quoted q;
	int rc = 0;

	if (c->t.n > SB__JSCHEMA_DEPTH_MAX)
		return jfail(&c->t, "schema nests deeper than %u", SB__JSCHEMA_DEPTH_MAX);
	if (next(c, &p, &m) != 0)
		return SB_EINVAL;
	if (m.type == SB__MP_BOOL && m.u) { /* true: anything */
		*out = NO_NODE;
		return 0;
	}
	if (m.type != SB__MP_MAP && m.type != SB__MP_BOOL)
		return jfail(&c->t, "a schema must be a map or a boolean");
	if (c->nn == SB__JSCHEMA_NODES_MAX)
		return jfail(&c->t, "schema has more than %u schemas in all",
			     SB__JSCHEMA_NODES_MAX);
	*out = c->nn;
	struct jnode *n = &c->nodes[c->nn++];
	memset(n, 0, sizeof *n);
	n->types = m.type == SB__MP_BOOL ? 0 : JT_ANY; /* false: nothing */
	n->items = NO_NODE;
	n->additional = NO_NODE;
	if (m.type == SB__MP_BOOL)
		return 0;

	for (uint32_t i = 0; i < m.len; i++) {
		if (next(c, &p, &k) != 0)
			return SB_EINVAL;
		if (k.type != SB__MP_STR)
			return jfail(&c->t, "schema keywords must be strings");
		int w = 0;
		while (w < K_COUNT && !sb__schema_is_str(&k, keywords[w]))
			w++;
		if (w == K_COUNT)
			return jfail(&c->t, "unsupported JSON Schema keyword %s",
				     sb__schema_quote(&q, k.body, k.len));
		if (at[w] != NULL)
			return jfail(&c->t, "keyword \"%s\" given twice", keywords[w]);
		at[w] = p;
		if (next(c, &p, &v) != 0 || skip_rest(c, &p, &v) != 0)
			return SB_EINVAL;
	}
	if (at[K_ENUM] != NULL && at[K_CONST] != NULL)
		return jfail(&c->t, "\"enum\" and \"const\" together are not supported");

	static const uint16_t count_has[] = {H_MIN_LEN,   H_MAX_LEN,   H_MIN_ITEMS,
					     H_MAX_ITEMS, H_MIN_PROPS, H_MAX_PROPS};
	uint32_t *counts[] = {&n->min_len,   &n->max_len,   &n->min_items,
			      &n->max_items, &n->min_props, &n->max_props};
	static const uint16_t bound_has[] = {H_MIN, H_MAX, H_XMIN, H_XMAX};
	struct sb__schema_num *bounds[] = {&n->min, &n->max, &n->xmin, &n->xmax};
	for (int w = 0; w < K_CHECKED && rc == 0; w++) {
		if (at[w] == NULL)
			continue;
		switch (w) {
		case K_TYPE:
			rc = parse_type(c, n, at[w]);
			break;
		case K_MIN_LENGTH:
		case K_MAX_LENGTH:
		case K_MIN_ITEMS:
		case K_MAX_ITEMS:
		case K_MIN_PROPS:
		case K_MAX_PROPS:
			rc = parse_count(c, w, at[w], counts[w - K_MIN_LENGTH]);
			n->has |= count_has[w - K_MIN_LENGTH];
			break;
		case K_MINIMUM:
		case K_MAXIMUM:
		case K_XMIN:
		case K_XMAX:
			rc = parse_bound(c, w, at[w], bounds[w - K_MINIMUM]);
			n->has |= bound_has[w - K_MINIMUM];
			break;
		case K_ENUM:
		case K_CONST:
			rc = parse_enum(c, n, at[w], w == K_CONST);
			break;
		case K_PROPERTIES:
			rc = parse_props(c, n, at[K_PROPERTIES], at[K_REQUIRED]);
			break;
		case K_REQUIRED:
			if (at[K_PROPERTIES] == NULL)
				rc = parse_props(c, n, NULL, at[K_REQUIRED]);
			break;
		case K_ADDITIONAL: {
			const uint8_t *a = at[w];
			if (next(c, &a, &v) != 0)
				return SB_EINVAL;
			if (v.type == SB__MP_BOOL)
				n->add = v.u ? ADD_ANY : ADD_NONE;
			else if ((rc = compile_sub(c, SEG_ADD, at[w], &n->additional)) == 0)
				n->add = n->additional == NO_NODE ? ADD_ANY : ADD_NODE;
			break;
		}
		case K_ITEMS: {
			const uint8_t *a = at[w];
			if (next(c, &a, &v) != 0)
				return SB_EINVAL;
			if (v.type == SB__MP_ARRAY)
				return jfail(&c->t, "\"items\" must be one schema (an array of "
						    "schemas is not supported)");
			rc = compile_sub(c, SEG_ITEMS, at[w], &n->items);
			break;
		}
		}
	}
	return rc;
}

/* Lays the nodes, values, properties and their bytes out in one block,
 * head bytes after its start. */
static void *build(struct compiler *c, size_t head, size_t *size)
{
	size_t nodes = sizeof(struct jimage) + c->nn * sizeof(struct jnode);
	size_t vals = c->nv * sizeof(struct jval), props = c->np * sizeof(struct jprop);
	size_t total = nodes + vals + props + c->bytes;
	uint8_t *block = calloc(1, head + total);
	if (block == NULL)
		return NULL;
	struct jimage *im = (struct jimage *)(block + head);
	im->nnodes = c->nn;
	im->nvals = c->nv;
	im->nprops = c->np;
	im->vals_off = (uint32_t)nodes;
	im->props_off = (uint32_t)(nodes + vals);
	memcpy(im->nodes, c->nodes, c->nn * sizeof(struct jnode));
	struct jval *jv = (struct jval *)((uint8_t *)im + im->vals_off);
	struct jprop *jp = (struct jprop *)((uint8_t *)im + im->props_off);
	size_t off = nodes + vals + props;
	for (unsigned i = 0; i < c->nv; i++) {
		jv[i] = c->vals[i].v;
		if (jv[i].kind == VK_STR) {
			jv[i].str_off = (uint32_t)off;
			memcpy((uint8_t *)im + off, c->vals[i].str, jv[i].str_len);
			off += jv[i].str_len;
		}
	}
	for (unsigned i = 0; i < c->np; i++) {
		jp[i] = (struct jprop){.name_off = (uint32_t)off,
				       .name_len = c->props[i].len,
				       .node = c->props[i].node};
		memcpy((uint8_t *)im + off, c->props[i].name, c->props[i].len);
		off += c->props[i].len;
	}
	*size = head + total;
	return block;
}

int sb__jschema_compile(const uint8_t *p, const uint8_t *end, size_t head, void **block,
			size_t *size, char *why, size_t whylen)
{
	uint32_t root;

	*block = NULL;
	struct compiler *c = malloc(sizeof *c);
	if (c == NULL)
		return SB_ENOMEM;
	c->nn = c->np = c->nv = 0;
	c->bytes = 0;
	c->end = end;
	c->t.n = 0;
	c->t.why = why;
	c->t.whylen = whylen;
	int rc = compile_node(c, p, &root);
	/* The top schema is a map, so it is nodes[0]: a check starts there. */
	if (rc == 0 && (*block = build(c, head, size)) == NULL)
		rc = SB_ENOMEM;
	free(c);
	return rc;
}

/* ---- checking ----------------------------------------------------------- */

struct checker {
	const struct jimage *im;
	const uint8_t *end;
	struct jtext t;
};

static const char *value_name(const struct sb__mp_item *it)
{
	switch (it->type) {
	case SB__MP_NIL:
		return "null";
	case SB__MP_BOOL:
		return "boolean";
	case SB__MP_UINT:
	case SB__MP_INT:
		return "integer";
	case SB__MP_FLOAT:
		return "number";
	case SB__MP_STR:
		return "string";
	case SB__MP_BIN:
		return "binary";
	case SB__MP_ARRAY:
		return "array";
	case SB__MP_MAP:
		return "object";
	default:
		return "ext";
	}
}

/* A float is an integer when its value is one: 2.0 is, 2.5 and NaN are
 * not. Every double of 2^52 or more is integral. */
static uint16_t value_types(const struct sb__mp_item *it, const struct sb__schema_num *x)
{
	switch (it->type) {
	case SB__MP_NIL:
		return JT_NULL;
	case SB__MP_BOOL:
		return JT_BOOL;
	case SB__MP_UINT:
	case SB__MP_INT:
		return JT_INT | JT_NUM;
	case SB__MP_FLOAT: {
		double a = x->d < 0 ? -x->d : x->d;
		if (x->d != x->d) /* NaN: converting it to an integer is undefined */
			return JT_NUM;
		int whole = a >= 0x1p52 ? a - a == 0 : x->d == (double)(int64_t)x->d;
		return whole ? JT_INT | JT_NUM : JT_NUM;
	}
	case SB__MP_STR:
		return JT_STR;
	case SB__MP_BIN:
		return JT_BIN;
	case SB__MP_ARRAY:
		return JT_ARR;
	case SB__MP_MAP:
		return JT_OBJ;
	default:
		return JT_EXT;
	}
}

static const char *types_str(char *buf, size_t cap, uint16_t types)
{
	size_t o = 0;
	buf[0] = 0;
	for (size_t i = 0; i < NTYPES && o < cap; i++)
		if (types & type_names[i].bits)
			o += (size_t)snprintf(buf + o, cap - o, "%s%s", o ? " or " : "",
					      type_names[i].name);
	return buf;
}

static int in_values(const struct checker *k, const struct jnode *n, const struct sb__mp_item *it,
		     const struct sb__schema_num *x)
{
	const struct jval *v = (const struct jval *)((const uint8_t *)k->im + k->im->vals_off);
	for (uint32_t i = n->val0; i < n->val0 + n->nvals; i++) {
		switch (v[i].kind) {
		case VK_NULL:
			if (it->type == SB__MP_NIL)
				return 1;
			break;
		case VK_BOOL:
			if (it->type == SB__MP_BOOL && it->u == v[i].b)
				return 1;
			break;
		case VK_NUM:
			if (sb__schema_is_number(it) && x->d == x->d &&
			    sb__schema_num_cmp(x, &v[i].num) == 0)
				return 1;
			break;
		default:
			if (it->type == SB__MP_STR && it->len == v[i].str_len &&
			    memcmp(it->body, (const uint8_t *)k->im + v[i].str_off, it->len) == 0)
				return 1;
			break;
		}
	}
	return 0;
}

static int malformed(struct checker *k)
{
	k->t.n = 0;
	return jfail(&k->t, "arguments are not well-formed MessagePack");
}

/* Binary search over a node's sorted names: -1 if the key is not one. */
static int prop_index(const struct checker *k, const struct jnode *n, const uint8_t *name,
		      uint32_t len)
{
	const struct jprop *pr = (const struct jprop *)((const uint8_t *)k->im + k->im->props_off);
	int lo = 0, hi = (int)n->nprops - 1;
	while (lo <= hi) {
		int mid = (lo + hi) / 2;
		const struct jprop *e = &pr[n->prop0 + (uint32_t)mid];
		int d = name_cmp((const uint8_t *)k->im + e->name_off, e->name_len, name, len);
		if (d == 0)
			return mid;
		if (d < 0)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return -1;
}

static int check_node(struct checker *k, uint32_t ni, const uint8_t **p,
		      const struct sb__mp_item *it);

/* The value after *p against node ni, under one more path step. */
static int check_next(struct checker *k, uint32_t ni, const uint8_t **p)
{
	struct sb__mp_item v;
	if (sb__mp_read(p, k->end, &v) != SB__MP_OK)
		return malformed(k);
	int rc = check_node(k, ni, p, &v);
	k->t.n--;
	return rc;
}

static int check_map(struct checker *k, const struct jnode *n, const uint8_t **p,
		     const struct sb__mp_item *it)
{
	const struct jprop *pr = (const struct jprop *)((const uint8_t *)k->im + k->im->props_off);
	struct sb__mp_item key;
	uint64_t seen = 0;

	if (2 * (uint64_t)it->len > (uint64_t)(k->end - *p))
		return malformed(k);
	if ((n->has & H_MAX_PROPS) && it->len > n->max_props)
		return jfail(&k->t, "too many keys (%u, limit %u)", it->len, n->max_props);
	if ((n->has & H_MIN_PROPS) && it->len < n->min_props)
		return jfail(&k->t, "too few keys (%u, limit %u)", it->len, n->min_props);
	for (uint32_t i = 0; i < it->len; i++) {
		if (sb__mp_read(p, k->end, &key) != SB__MP_OK)
			return malformed(k);
		int idx = key.type == SB__MP_STR ? prop_index(k, n, key.body, key.len) : -1;
		if (idx >= 0) {
			push(&k->t, SEG_KEY, key.body, key.len);
			if (seen & (1ull << idx))
				return jfail(&k->t, "key given twice");
			seen |= 1ull << idx;
			if (check_next(k, pr[n->prop0 + (uint32_t)idx].node, p) != 0)
				return SB_EINVAL;
			continue;
		}
		if (n->add == ADD_ANY) {
			if (sb__mp_skip(p, k->end, sb__schema_children(&key) + 1) != 0)
				return malformed(k);
			continue;
		}
		if (key.type != SB__MP_STR)
			return jfail(&k->t, "a key that is not a string");
		push(&k->t, SEG_KEY, key.body, key.len);
		if (n->add == ADD_NONE)
			return jfail(&k->t, "unknown key");
		if (check_next(k, n->additional, p) != 0)
			return SB_EINVAL;
	}
	uint64_t missing = n->required & ~seen;
	if (missing != 0) {
		const struct jprop *e = &pr[n->prop0 + (uint32_t)__builtin_ctzll(missing)];
		push(&k->t, SEG_KEY, (const uint8_t *)k->im + e->name_off, e->name_len);
		return jfail(&k->t, "required key missing");
	}
	return 0;
}

static int check_array(struct checker *k, const struct jnode *n, const uint8_t **p,
		       const struct sb__mp_item *it)
{
	if (it->len > (uint64_t)(k->end - *p))
		return malformed(k);
	if ((n->has & H_MAX_ITEMS) && it->len > n->max_items)
		return jfail(&k->t, "array too long (%u items, limit %u)", it->len, n->max_items);
	if ((n->has & H_MIN_ITEMS) && it->len < n->min_items)
		return jfail(&k->t, "array too short (%u items, limit %u)", it->len, n->min_items);
	if (n->items == NO_NODE)
		return sb__mp_skip(p, k->end, it->len) != 0 ? malformed(k) : 0;
	for (uint32_t i = 0; i < it->len; i++) {
		k->t.segs[k->t.n++] = (struct seg){.len = i, .kind = SEG_INDEX};
		if (check_next(k, n->items, p) != 0)
			return SB_EINVAL;
	}
	return 0;
}

/* Characters, as JSON Schema counts a string's length: every byte that
 * does not continue a UTF-8 sequence starts one. */
static uint32_t characters(const uint8_t *s, uint32_t len)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < len; i++)
		n += (s[i] & 0xc0) != 0x80;
	return n;
}

static int check_node(struct checker *k, uint32_t ni, const uint8_t **p,
		      const struct sb__mp_item *it)
{
	struct sb__schema_num x = {0};
	char a[32], b[96];

	if (ni == NO_NODE)
		return sb__mp_skip(p, k->end, sb__schema_children(it)) != 0 ? malformed(k) : 0;
	const struct jnode *n = &k->im->nodes[ni];
	if (sb__schema_is_number(it))
		sb__schema_read_num(it, &x);
	if (!(value_types(it, &x) & n->types))
		return n->types == 0 ? jfail(&k->t, "no value is allowed here")
				     : jfail(&k->t, "expected %s, got %s",
					     types_str(b, sizeof b, n->types), value_name(it));
	if (n->nvals > 0 && !in_values(k, n, it, &x))
		return jfail(&k->t,
			     n->is_const ? "not the const value" : "not one of the enum values");
	switch (it->type) {
	case SB__MP_STR:
		if (n->has & (H_MIN_LEN | H_MAX_LEN)) {
			uint32_t c = characters(it->body, it->len);
			if ((n->has & H_MAX_LEN) && c > n->max_len)
				return jfail(&k->t, "string too long (%u characters, limit %u)", c,
					     n->max_len);
			if ((n->has & H_MIN_LEN) && c < n->min_len)
				return jfail(&k->t, "string too short (%u characters, limit %u)", c,
					     n->min_len);
		}
		return 0;
	case SB__MP_UINT:
	case SB__MP_INT:
	case SB__MP_FLOAT:
		if (!(n->has & (H_MIN | H_MAX | H_XMIN | H_XMAX)))
			return 0;
		if (x.d != x.d)
			return jfail(&k->t, "value is NaN");
		if ((n->has & H_MAX) && sb__schema_num_cmp(&x, &n->max) > 0)
			return jfail(&k->t, "value too large (%s, limit %s)",
				     sb__schema_num_str(a, sizeof a, &x),
				     sb__schema_num_str(b, sizeof b, &n->max));
		if ((n->has & H_MIN) && sb__schema_num_cmp(&x, &n->min) < 0)
			return jfail(&k->t, "value too small (%s, limit %s)",
				     sb__schema_num_str(a, sizeof a, &x),
				     sb__schema_num_str(b, sizeof b, &n->min));
		if ((n->has & H_XMAX) && sb__schema_num_cmp(&x, &n->xmax) >= 0)
			return jfail(&k->t, "value too large (%s, must be below %s)",
				     sb__schema_num_str(a, sizeof a, &x),
				     sb__schema_num_str(b, sizeof b, &n->xmax));
		if ((n->has & H_XMIN) && sb__schema_num_cmp(&x, &n->xmin) <= 0)
			return jfail(&k->t, "value too small (%s, must be above %s)",
				     sb__schema_num_str(a, sizeof a, &x),
				     sb__schema_num_str(b, sizeof b, &n->xmin));
		return 0;
	case SB__MP_ARRAY:
		return check_array(k, n, p, it);
	case SB__MP_MAP:
		return check_map(k, n, p, it);
	default:
		return 0;
	}
}

int sb__jschema_check(const void *image, const uint8_t *p, size_t len, char *why, size_t whylen)
{
	struct checker k = {.im = image, .end = p + len, .t = {.why = why, .whylen = whylen}};
	struct sb__mp_item it;

	if (whylen > 0)
		why[0] = 0;
	if (sb__mp_read(&p, k.end, &it) != SB__MP_OK)
		return malformed(&k);
	int rc = check_node(&k, 0, &p, &it);
	if (rc == 0 && p != k.end)
		return malformed(&k);
	return rc;
}
