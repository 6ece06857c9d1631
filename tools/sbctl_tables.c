/* sbctl routes, peers and stats: the router's reserved names, read and
 * printed as tables (or JSON), stats page by page. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>
#include <switchboard/client.h>
#include <switchboard/proto.h>

#include "common/json.h"
#include "sbctl.h"

/* A table of text cells printed in aligned columns. */
struct table {
	int cols;     /* columns per row */
	int rows;     /* rows filled, the header included */
	int cap;      /* rows allocated */
	char **cells; /* rows * cols strings, malloc'd */
};

static void table_add(struct table *t, char **row)
{
	if (t->rows == t->cap) {
		int cap = t->cap ? t->cap * 2 : 16;
		char **cells = realloc(t->cells, (size_t)cap * (size_t)t->cols * sizeof *cells);
		if (cells == NULL) {
			for (int i = 0; i < t->cols; i++)
				free(row[i]);
			return;
		}
		t->cells = cells;
		t->cap = cap;
	}
	for (int i = 0; i < t->cols; i++)
		t->cells[t->rows * t->cols + i] = row[i] ? row[i] : strdup("");
	t->rows++;
}

static void table_print(struct table *t)
{
	size_t w[10] = {0};

	for (int r = 0; r < t->rows; r++)
		for (int i = 0; i < t->cols; i++) {
			const char *s = t->cells[r * t->cols + i];
			size_t n = s ? strlen(s) : 0;
			if (n > w[i])
				w[i] = n;
		}
	for (int r = 0; r < t->rows; r++) {
		for (int i = 0; i < t->cols; i++) {
			const char *s = t->cells[r * t->cols + i];
			if (i == t->cols - 1)
				printf("%s\n", s ? s : "");
			else
				printf("%-*s  ", (int)w[i], s ? s : "");
		}
	}
	for (int i = 0; i < t->rows * t->cols; i++)
		free(t->cells[i]);
	free(t->cells);
	memset(t, 0, sizeof *t);
}

static void table_header(struct table *t, int cols, ...)
{
	char *row[10];
	va_list ap;

	memset(t, 0, sizeof *t);
	t->cols = cols;
	va_start(ap, cols);
	for (int i = 0; i < cols; i++)
		row[i] = strdup(va_arg(ap, const char *));
	va_end(ap);
	table_add(t, row);
}

/* A cell: strings as they are, anything else as its JSON; "-" if absent. */
static char *cell(const msgpack_object *o)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct sb__json_buf b = {0};

	if (o == NULL)
		return strdup("-");
	if (o->type == MSGPACK_OBJECT_STR) {
		/* Not strndup: the bytes are not NUL-terminated, and ASan's
		 * strict_string_checks rightly reads strndup's argument as a string. */
		char *s = malloc(o->via.str.size + 1);
		if (s != NULL) {
			memcpy(s, o->via.str.ptr, o->via.str.size);
			s[o->via.str.size] = 0;
		}
		return s;
	}
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_object(&pk, *o);
	char *s = sb__json_print(sb.data, sb.size, &b) == 0 ? strdup(b.data) : strdup("?");
	msgpack_sbuffer_destroy(&sb);
	sb__json_buf_free(&b);
	return s;
}

static int str_is(const msgpack_object *o, const char *s)
{
	size_t n = strlen(s);
	return o->type == MSGPACK_OBJECT_STR && o->via.str.size == n &&
	       memcmp(o->via.str.ptr, s, n) == 0;
}

static const msgpack_object *field(const msgpack_object *map, const char *key)
{
	if (map == NULL || map->type != MSGPACK_OBJECT_MAP)
		return NULL;
	for (uint32_t i = 0; i < map->via.map.size; i++)
		if (str_is(&map->via.map.ptr[i].key, key))
			return &map->via.map.ptr[i].val;
	return NULL;
}

/* "yes" or "no" for a bool, "-" when absent (a router before the flag). */
static char *yes_no(const msgpack_object *o)
{
	if (o == NULL || o->type != MSGPACK_OBJECT_BOOLEAN)
		return cell(o);
	return strdup(o->via.boolean ? "yes" : "no");
}

/* A schema as compact JSON, "-" for none. */
static char *schema_cell(const msgpack_object *o)
{
	return o == NULL || o->type == MSGPACK_OBJECT_NIL ? strdup("-") : cell(o);
}

/* A router's answer is an array; the whole cluster's a map holding it
 * under key, with "routers" and "missing" beside it. */
static const msgpack_object *listed(const msgpack_object *v, const char *key)
{
	return v->type == MSGPACK_OBJECT_MAP ? field(v, key) : v;
}

/* Whether any element of array a (or of its arrays under key) has "router". */
static int any_router(const msgpack_object *a, const char *key)
{
	for (uint32_t i = 0; a != NULL && a->type == MSGPACK_OBJECT_ARRAY && i < a->via.array.size;
	     i++) {
		const msgpack_object *e = &a->via.array.ptr[i];
		if (key != NULL ? any_router(field(e, key), NULL) : field(e, "router") != NULL)
			return 1;
	}
	return 0;
}

/* The routers the whole cluster's answer did not hear from in time. */
static void print_missing(const msgpack_object *v)
{
	const msgpack_object *m = v->type == MSGPACK_OBJECT_MAP ? field(v, "missing") : NULL;
	if (m == NULL || m->type != MSGPACK_OBJECT_ARRAY || m->via.array.size == 0)
		return;
	printf("\nMISSING (did not answer in time):");
	for (uint32_t i = 0; i < m->via.array.size; i++) {
		char *s = cell(&m->via.array.ptr[i]);
		printf(" %s", s ? s : "?");
		free(s);
	}
	printf("\n");
}

/* Each returns 0 when the reply had the documented shape and was printed. */
static int print_routes(const msgpack_object *all)
{
	struct table t;
	const msgpack_object *v = listed(all, "routes");

	if (v == NULL || v->type != MSGPACK_OBJECT_ARRAY)
		return -1;
	int rt = any_router(v, "handlers");
	if (rt)
		table_header(&t, 6, "NAME", "PEER", "ROUTER", "SHARD", "INTERNAL", "SCHEMA");
	else
		table_header(&t, 5, "NAME", "PEER", "SHARD", "INTERNAL", "SCHEMA");
	for (uint32_t i = 0; i < v->via.array.size; i++) {
		const msgpack_object *route = &v->via.array.ptr[i];
		const msgpack_object *hs = field(route, "handlers");
		uint32_t n = hs && hs->type == MSGPACK_OBJECT_ARRAY ? hs->via.array.size : 0;
		if (n == 0) {
			char *row[6] = {cell(field(route, "name"))};
			for (int k = 1; k < t.cols; k++)
				row[k] = strdup("-");
			table_add(&t, row);
		}
		for (uint32_t j = 0; j < n; j++) {
			const msgpack_object *h = &hs->via.array.ptr[j];
			char *row[6] = {j == 0 ? cell(field(route, "name")) : strdup(""),
					cell(field(h, "peer"))};
			int k = 2;
			if (rt)
				row[k++] = cell(field(h, "router"));
			row[k++] = cell(field(h, "shard"));
			row[k++] = yes_no(field(h, "internal"));
			row[k++] = schema_cell(field(h, "schema"));
			table_add(&t, row);
		}
	}
	table_print(&t);
	print_missing(all);
	return 0;
}

static int print_peers(const msgpack_object *all)
{
	struct table t;
	const msgpack_object *v = listed(all, "peers");

	if (v == NULL || v->type != MSGPACK_OBJECT_ARRAY)
		return -1;
	int rt = any_router(v, NULL);
	if (rt)
		table_header(&t, 5, "PEER", "ID", "ROLE", "ROUTER", "SHARD");
	else
		table_header(&t, 4, "PEER", "ID", "ROLE", "SHARD");
	for (uint32_t i = 0; i < v->via.array.size; i++) {
		const msgpack_object *p = &v->via.array.ptr[i];
		char *row[5] = {cell(field(p, "peer")), cell(field(p, "id")),
				cell(field(p, "role"))};
		int k = 3;
		if (rt)
			row[k++] = cell(field(p, "router"));
		row[k++] = cell(field(p, "shard"));
		table_add(&t, row);
	}
	table_print(&t);
	print_missing(all);
	return 0;
}

/* A router's shards: one table, or one for each router of the cluster
 * (the whole cluster's answer has them under "routers"). */
static void print_shards(const msgpack_object *v)
{
	const msgpack_object *routers = field(v, "routers");
	struct table t;
	int rt = routers != NULL && routers->type == MSGPACK_OBJECT_MAP;
	uint32_t n = rt ? routers->via.map.size : 1;

	if (!rt && field(v, "shards") == NULL)
		return;
	printf("\n");
	if (rt)
		table_header(&t, 4, "ROUTER", "SHARD", "CONNECTIONS", "INFLIGHT");
	else
		table_header(&t, 3, "SHARD", "CONNECTIONS", "INFLIGHT");
	for (uint32_t r = 0; r < n; r++) {
		const msgpack_object *shards =
			field(rt ? &routers->via.map.ptr[r].val : v, "shards");
		for (uint32_t i = 0; shards != NULL && shards->type == MSGPACK_OBJECT_ARRAY &&
				     i < shards->via.array.size;
		     i++) {
			const msgpack_object *s = &shards->via.array.ptr[i];
			char *row[4] = {NULL};
			int k = 0;
			if (rt)
				row[k++] = cell(&routers->via.map.ptr[r].key);
			row[k++] = cell(field(s, "shard"));
			row[k++] = cell(field(s, "connections"));
			row[k++] = cell(field(s, "inflight"));
			table_add(&t, row);
		}
	}
	table_print(&t);
}

static int print_stats(const msgpack_object *v)
{
	struct table t;

	if (v->type != MSGPACK_OBJECT_MAP)
		return -1;
	table_header(&t, 2, "COUNTER", "VALUE");
	for (uint32_t i = 0; i < v->via.map.size; i++) {
		const msgpack_object *k = &v->via.map.ptr[i].key;
		if (str_is(k, "shards") || str_is(k, "routes") || str_is(k, "routes_more") ||
		    str_is(k, "routers") || str_is(k, "missing"))
			continue; /* tables of their own below; every page is fetched */
		char *row[2] = {cell(k), cell(&v->via.map.ptr[i].val)};
		table_add(&t, row);
	}
	table_print(&t);
	print_shards(v);
	const msgpack_object *routes = field(v, "routes");
	if (routes != NULL && routes->type == MSGPACK_OBJECT_ARRAY && routes->via.array.size > 0) {
		int rt = any_router(routes, NULL);
		printf("\n");
		if (rt)
			table_header(&t, 9, "ROUTE", "ROUTER", "REQUESTS", "SENDS", "REPLIES",
				     "ERRORS", "TIMEOUTS", "P50_US", "P99_US");
		else
			table_header(&t, 8, "ROUTE", "REQUESTS", "SENDS", "REPLIES", "ERRORS",
				     "TIMEOUTS", "P50_US", "P99_US");
		for (uint32_t i = 0; i < routes->via.array.size; i++) {
			const msgpack_object *r = &routes->via.array.ptr[i];
			const msgpack_object *name = field(r, "name");
			int catch_all = name != NULL && str_is(name, "");
			char *row[9] = {catch_all ? strdup("(catch-all)") : cell(name)};
			int k = 1;
			if (rt)
				row[k++] = cell(field(r, "router"));
			static const char *const cols[] = {"requests", "sends",    "replies",
							   "errors",   "timeouts", "p50_us",
							   "p99_us"};
			for (size_t c = 0; c < sizeof cols / sizeof cols[0]; c++)
				row[k++] = cell(field(r, cols[c]));
			table_add(&t, row);
		}
		table_print(&t);
	}
	print_missing(v);
	return 0;
}

/* routes, peers and stats are requests to the router's reserved names. */
static int cmd_admin(const struct opts *o, const char *what, int (*print)(const msgpack_object *))
{
	struct sb__json_buf nil = {0}, b = {0};
	struct pending pd = {.o = o, .keep = 1};
	char name[128];
	int rc;

	snprintf(name, sizeof name, "%s%s", o->admin, what);
	struct sb_client *c = connect_router(o, SB_ROLE_CLIENT);
	rc = wait_online(c, o);
	if (rc == EXIT_OK)
		rc = run_request(c, name, &nil, &pd);
	sb_client_free(c);
	if (rc != EXIT_OK)
		return rc;
	if (o->json) {
		printf("%s\n", payload_json(&b, pd.payload, pd.len));
	} else {
		msgpack_unpacked u;
		msgpack_unpacked_init(&u);
		int shaped = pd.len > 0 &&
			     msgpack_unpack_next(&u, pd.payload, pd.len, NULL) ==
				     MSGPACK_UNPACK_SUCCESS &&
			     print(&u.data) == 0;
		msgpack_unpacked_destroy(&u);
		if (!shaped) {
			fprintf(stderr, "sbctl: %s replied in an unexpected shape; as JSON:\n",
				name);
			printf("%s\n", payload_json(&b, pd.payload, pd.len));
		}
	}
	sb__json_buf_free(&b);
	free(pd.payload);
	return EXIT_OK;
}

int cmd_routes(const struct opts *o, char **args, int nargs)
{
	(void)args;
	(void)nargs;
	return cmd_admin(o, "routes", print_routes);
}

int cmd_peers(const struct opts *o, char **args, int nargs)
{
	(void)args;
	(void)nargs;
	return cmd_admin(o, "peers", print_peers);
}

/* $sb.stats lists the routes a page at a time (docs/protocol.md): ask
 * again after the last name while "routes_more" says so, and print (or
 * give as JSON) the first answer with every page's routes in it. */
enum { STATS_PAGES_MAX = 4096 };

int cmd_stats(const struct opts *o, char **args, int nargs)
{
	static msgpack_unpacked pages[STATS_PAGES_MAX];
	static void *bytes[STATS_PAGES_MAX]; /* what pages[] point into */
	struct sb__json_buf arg = {0}, b = {0};
	msgpack_object *routes = NULL;
	uint32_t nroutes = 0;
	int npages = 0, rc = EXIT_OK, more = 1;
	char name[128];

	(void)args;
	(void)nargs;
	snprintf(name, sizeof name, "%sstats", o->admin);
	struct sb_client *c = connect_router(o, SB_ROLE_CLIENT);
	rc = wait_online(c, o);
	while (rc == EXIT_OK && more && npages < STATS_PAGES_MAX) {
		struct pending pd = {.o = o, .keep = 1};
		rc = run_request(c, name, &arg, &pd);
		msgpack_unpacked *u = &pages[npages];
		msgpack_unpacked_init(u);
		npages++;
		const msgpack_object *rs = NULL, *m = NULL;
		if (rc == EXIT_OK && pd.len > 0 &&
		    msgpack_unpack_next(u, pd.payload, pd.len, NULL) == MSGPACK_UNPACK_SUCCESS) {
			rs = field(&u->data, "routes");
			m = field(&u->data, "routes_more");
		}
		bytes[npages - 1] = pd.payload;
		if (rc != EXIT_OK)
			break;
		if (rs == NULL || rs->type != MSGPACK_OBJECT_ARRAY) {
			more = 0; /* not the documented shape: shown as it came below */
			continue;
		}
		msgpack_object *nr =
			realloc(routes, (nroutes + rs->via.array.size + 1) * sizeof *nr);
		if (nr == NULL) {
			rc = EXIT_FAILED;
			break;
		}
		routes = nr;
		memcpy(routes + nroutes, rs->via.array.ptr, rs->via.array.size * sizeof *nr);
		nroutes += rs->via.array.size;
		more = m != NULL && m->type == MSGPACK_OBJECT_BOOLEAN && m->via.boolean &&
		       rs->via.array.size > 0;
		if (more) { /* {"after": the last name of this page} */
			const msgpack_object *last =
				field(&rs->via.array.ptr[rs->via.array.size - 1], "name");
			if (last == NULL || last->type != MSGPACK_OBJECT_STR ||
			    last->via.str.size > 255) {
				more = 0;
				continue;
			}
			size_t n = last->via.str.size;
			char *d = realloc(arg.data, n + 10);
			if (d == NULL) {
				rc = EXIT_FAILED;
				break;
			}
			memcpy(d,
			       "\x81\xa5"
			       "after\xd9",
			       8);
			d[8] = (char)n;
			memcpy(d + 9, last->via.str.ptr, n);
			arg = (struct sb__json_buf){.data = d, .len = n + 9, .cap = n + 10};
		}
	}
	sb_client_free(c);
	if (rc == EXIT_OK && npages > 0) {
		/* The first answer, its routes those of every page. */
		msgpack_object all = pages[0].data;
		msgpack_object_kv *kv = NULL;
		if (all.type == MSGPACK_OBJECT_MAP && routes != NULL &&
		    (kv = malloc(all.via.map.size * sizeof *kv)) != NULL) {
			memcpy(kv, all.via.map.ptr, all.via.map.size * sizeof *kv);
			for (uint32_t i = 0; i < all.via.map.size; i++)
				if (str_is(&kv[i].key, "routes")) {
					kv[i].val.via.array.ptr = routes;
					kv[i].val.via.array.size = nroutes;
				} else if (str_is(&kv[i].key, "routes_more"))
					kv[i].val.via.boolean = false;
			all.via.map.ptr = kv;
		}
		msgpack_sbuffer sb;
		msgpack_packer pk;
		msgpack_sbuffer_init(&sb);
		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		msgpack_pack_object(&pk, all);
		if (o->json)
			printf("%s\n", payload_json(&b, sb.data, sb.size));
		else if (print_stats(&all) != 0) {
			fprintf(stderr, "sbctl: %s replied in an unexpected shape; as JSON:\n",
				name);
			printf("%s\n", payload_json(&b, sb.data, sb.size));
		}
		msgpack_sbuffer_destroy(&sb);
		free(kv);
	}
	for (int i = 0; i < npages; i++) {
		msgpack_unpacked_destroy(&pages[i]);
		free(bytes[i]);
	}
	free(routes);
	sb__json_buf_free(&arg);
	sb__json_buf_free(&b);
	return rc;
}
