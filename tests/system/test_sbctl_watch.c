/* sbctl watching and inspecting, run as a user would run it against an
 * in-process router and a service made with the client library on its own
 * thread: listen (echoing, counting, with a schema), presence, and the
 * routes, peers and stats tables, from stand-ins in their documented shapes
 * and from the router itself. */

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <switchboard/client.h>
#include <switchboard/router.h>

#include "common/json.h"
#include "support/clock.h"
#include "support/proc.h"
#include "support/router.h"
#include "support/sbctl.h"
#include "support/testlib.h"

/* Encodes JSON that the test itself wrote: it must be valid. */
static void mp_of(const char *json, struct sb__json_buf *mp)
{
	struct sb__json_error e;
	mp->len = 0;
	CHECK_INT(sb__json_parse(json, strlen(json), mp, &e), 0);
}

static void on_echo(struct sb_call *call, void *ud)
{
	size_t len;
	const void *p = sb_call_payload(call, &len);

	(void)ud;
	CHECK_INT(sb_reply(call, "done", p, len), 0);
}

/* Stand-ins for the router's $sb.* names (SBCTL_TEST_ADMIN_PREFIX=fake.): the
 * ud is the JSON of the reply, in the documented shape. */
static void on_fake_admin(struct sb_call *call, void *ud)
{
	struct sb__json_buf mp = {0};

	mp_of(ud, &mp);
	CHECK_INT(sb_reply(call, "ok", mp.data, mp.len), 0);
	sb__json_buf_free(&mp);
}

static const char ROUTES[] =
	"[{\"name\":\"user.create\",\"handlers\":[{\"peer\":\"users-1\",\"shard\":0,"
	"\"internal\":true,\"schema\":{\"required\":[\"email\"]}},"
	"{\"peer\":\"users-2\",\"shard\":1,\"internal\":false,\"schema\":null}]},"
	"{\"name\":\"ping\",\"handlers\":[]}]";

static const char PEERS[] = "[{\"peer\":\"users-1\",\"id\":3,\"role\":\"service\",\"shard\":0},"
			    "{\"peer\":\"sbctl-7\",\"id\":12,\"role\":\"client\",\"shard\":1}]";

/* $sb.stats in two pages: the first, and the one after "a.first". */
#define STATS_HEAD                                                                                 \
	"{\"connections\":2,\"requests\":1234,\"timeouts\":0,\"shards\":"                          \
	"[{\"shard\":0,\"connections\":1,\"inflight\":0},"                                         \
	"{\"shard\":1,\"connections\":1,\"inflight\":2}],\"routes\":["

#define ROUTE_A                                                                                    \
	"{\"name\":\"a.first\",\"requests\":5,\"sends\":0,\"replies\":4,\"errors\":1,"             \
	"\"timeouts\":0,\"p50_us\":95,\"p90_us\":120,\"p99_us\":383,\"max_us\":400}"

#define ROUTE_B                                                                                    \
	"{\"name\":\"b.second\",\"requests\":0,\"sends\":7,\"replies\":0,\"errors\":0,"            \
	"\"timeouts\":0,\"p50_us\":0,\"p90_us\":0,\"p99_us\":0,\"max_us\":0}"

static const char STATS[] = STATS_HEAD ROUTE_A "],\"routes_more\":true}";

static const char STATS_AFTER_A[] = STATS_HEAD ROUTE_B "],\"routes_more\":false}";

#define STATS_ALL STATS_HEAD ROUTE_A "," ROUTE_B "],\"routes_more\":false}"

/* The same three in a cluster's shape (docs/protocol.md): every router's
 * entries, each naming its router, and the routers that did not answer. */
static const char CROUTES[] =
	"{\"routes\":[{\"name\":\"user.create\",\"handlers\":[{\"peer\":\"users-1\","
	"\"shard\":0,\"internal\":false,\"schema\":null,\"router\":\"r1\"},"
	"{\"peer\":\"users-9\",\"shard\":1,\"internal\":false,\"schema\":null,"
	"\"router\":\"r2\"}]}],\"routers\":[\"r1\",\"r2\"],\"missing\":[\"r3\"]}";

static const char CPEERS[] =
	"{\"peers\":[{\"peer\":\"users-1\",\"id\":3,\"role\":\"service\",\"shard\":0,"
	"\"router\":\"r1\"},{\"peer\":\"users-9\",\"id\":4,\"role\":\"service\","
	"\"shard\":1,\"router\":\"r2\"}],\"routers\":[\"r1\",\"r2\"],\"missing\":[]}";

static const char CSTATS[] =
	"{\"connections\":3,\"requests\":10,\"routers\":{\"r1\":{\"connections\":1,"
	"\"requests\":4,\"shards\":[{\"shard\":0,\"connections\":1,\"inflight\":0}]},"
	"\"r2\":{\"connections\":2,\"requests\":6,\"shards\":[{\"shard\":0,"
	"\"connections\":2,\"inflight\":1}]}},\"missing\":[\"r3\"],\"routes_more\":false,"
	"\"routes\":[{\"name\":\"a.first\",\"requests\":4,\"sends\":0,\"replies\":4,"
	"\"errors\":0,\"timeouts\":0,\"p50_us\":95,\"p90_us\":120,\"p99_us\":383,"
	"\"max_us\":400,\"router\":\"r1\"},{\"name\":\"a.first\",\"requests\":6,"
	"\"sends\":0,\"replies\":6,\"errors\":0,\"timeouts\":0,\"p50_us\":80,"
	"\"p90_us\":100,\"p99_us\":200,\"max_us\":210,\"router\":\"r2\"}]}";

/* fake.stats answers the page its arguments ask for, as the router would. */
static void on_fake_stats(struct sb_call *call, void *ud)
{
	struct sb__json_buf args = {0};
	size_t len;
	const void *p = sb_call_payload(call, &len);

	CHECK_INT(sb__json_print(p, len, &args), 0);
	on_fake_admin(call,
		      (void *)(strcmp(args.data, "{\"after\":\"a.first\"}") == 0 ? STATS_AFTER_A
										 : STATS));
	CHECK(strcmp(args.data, "null") == 0 || strcmp(args.data, "{\"after\":\"a.first\"}") == 0);
	sb__json_buf_free(&args);
	(void)ud;
}

/* Each test's router and service: echo, and stand-ins for the router's
 * own names (SBCTL_TEST_ADMIN_PREFIX=fake.) answering in their documented
 * shapes. */
static void handlers(struct sb_client *svc)
{
	CHECK_INT(sb_client_register(svc, "echo", NULL, on_echo, NULL), 0);
	CHECK_INT(sb_client_register(svc, "fake.routes", NULL, on_fake_admin, (void *)ROUTES), 0);
	CHECK_INT(sb_client_register(svc, "fake.peers", NULL, on_fake_admin, (void *)PEERS), 0);
	CHECK_INT(sb_client_register(svc, "fake.stats", NULL, on_fake_stats, NULL), 0);
	CHECK_INT(sb_client_register(svc, "fakec.routes", NULL, on_fake_admin, (void *)CROUTES), 0);
	CHECK_INT(sb_client_register(svc, "fakec.peers", NULL, on_fake_admin, (void *)CPEERS), 0);
	CHECK_INT(sb_client_register(svc, "fakec.stats", NULL, on_fake_admin, (void *)CSTATS), 0);
}

static void start(void)
{
	service_start(handlers);
	setenv("SBCTL_TEST_ADMIN_PREFIX", "fake.", 1);
}

static void stop(void)
{
	service_stop();
}

/* ---- the stories --------------------------------------------------------- */

static struct proc P;

static void test_listen_echo_count_1(void)
{
	start();
	struct sb__json_buf mp = {0};
	char outcome[64] = "";
	void *reply = NULL;
	size_t reply_len = 0;
	const char *args[] = {"listen", "lis", "--echo", "--count", "1", NULL};

	sbctl_spawn(&P, args);
	CHECK(sbctl_wait_stderr(&P, "sbctl: listening on lis\n"));
	struct sb_client *c = new_client("client");
	until_online(c);
	mp_of("{\"n\":[1,2.5,\"x\"]}", &mp);
	CHECK_INT(sb_request_wait(
			  c, "lis", mp.data, mp.len,
			  &(struct sb_opts){.size = sizeof(struct sb_opts), .timeout_ms = WAIT_MS},
			  outcome, sizeof outcome, &reply, &reply_len),
		  0);
	CHECK_STR(outcome, "echo");
	CHECK(reply_len == mp.len && reply != NULL && memcmp(reply, mp.data, mp.len) == 0);
	sbctl_finish(&P);
	CHECK_INT(P.code, 0);
	CHECK_STR(P.so, "request  lis  {\"n\":[1,2.5,\"x\"]}\n");
	CHECK_STR(P.se, "sbctl: listening on lis\n");

	/* Without --echo: "ok" and nil; a send is printed too. */
	const char *args2[] = {"--json", "listen", "lis2", "--count", "2", NULL};
	sbctl_spawn(&P, args2);
	CHECK(sbctl_wait_stderr(&P, "sbctl: listening on lis2\n"));
	CHECK_INT(sb_send(c, "lis2", mp.data, mp.len, NULL), 0);
	free(reply);
	reply = NULL;
	CHECK_INT(sb_request_wait(
			  c, "lis2", NULL, 0,
			  &(struct sb_opts){.size = sizeof(struct sb_opts), .timeout_ms = WAIT_MS},
			  outcome, sizeof outcome, &reply, &reply_len),
		  0);
	CHECK_STR(outcome, "ok");
	sbctl_finish(&P);
	CHECK_INT(P.code, 0);
	CHECK_STR(P.so, "{\"name\":\"lis2\",\"request\":false,\"payload\":{\"n\":[1,2.5,\"x\"]}}\n"
			"{\"name\":\"lis2\",\"request\":true,\"payload\":null}\n");
	free(reply);
	sb_client_free(c);
	sb__json_buf_free(&mp);
	stop();
}

/* Headers set with --header reach a listener, which prints them after
 * the payload (a "headers" object with --json); a message without any
 * prints as before. */
static void test_headers_from_sbctl_reach_a_listener(void)
{
	static struct proc Q;
	start();
	const char *args[] = {"listen", "hdr", "--count", "3", NULL};
	sbctl_spawn(&P, args);
	CHECK(sbctl_wait_stderr(&P, "sbctl: listening on hdr\n"));
	SBCTL_RUN(&Q, "request", "hdr", "{}", "--header", "device=kitchen sensor", "--header",
		  "traceparent=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
	CHECK_INT(Q.code, 0);
	CHECK_STR(Q.so, "ok  null\n");
	SBCTL_RUN(&Q, "send", "hdr", "--header", "empty=");
	CHECK_INT(Q.code, 0);
	SBCTL_RUN(&Q, "send", "hdr", "1");
	CHECK_INT(Q.code, 0);
	sbctl_finish(&P);
	CHECK_INT(P.code, 0);
	/* Separate processes, perhaps on separate shards: any order. */
	CHECK(starts(P.so, "request  hdr  {}  {\"device\":\"kitchen sensor\",\"traceparent\":"
			   "\"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\"}\n"));
	CHECK(strstr(P.so, "\nsend  hdr  null  {\"empty\":\"\"}\n") != NULL);
	CHECK(strstr(P.so, "\nsend  hdr  1\n") != NULL);

	const char *args2[] = {"--json", "listen", "hdr2", "--count", "1", NULL};
	sbctl_spawn(&P, args2);
	CHECK(sbctl_wait_stderr(&P, "sbctl: listening on hdr2\n"));
	SBCTL_RUN(&Q, "send", "hdr2", "[1]", "--header", "idempotency-key=k-42");
	CHECK_INT(Q.code, 0);
	sbctl_finish(&P);
	CHECK_STR(P.so, "{\"name\":\"hdr2\",\"request\":false,\"payload\":[1],"
			"\"headers\":{\"idempotency-key\":\"k-42\"}}\n");
	stop();
}

/* Processes c until its output is written; bounded. */
static void until_written(struct sb_client *c)
{
	uint64_t deadline = now_ms() + WAIT_MS;
	while ((sb_client_events(c) & POLLOUT) && now_ms() < deadline)
		sb_client_process(c, 10);
	CHECK(!(sb_client_events(c) & POLLOUT));
}

/* Twenty sends written at once reach the listener in one read or few:
 * --count 3 handles and prints exactly three, then exits. */
static void test_listen_count_stops_at_n_in_a_burst(void)
{
	start();
	const char *args[] = {"listen", "burst", "--count", "3", NULL};

	sbctl_spawn(&P, args);
	CHECK(sbctl_wait_stderr(&P, "sbctl: listening on burst\n"));
	struct sb_client *c = new_client("client");
	until_online(c);
	for (uint8_t i = 1; i <= 20; i++) /* positive fixints 1..20: one write */
		CHECK_INT(sb_send(c, "burst", &i, 1, NULL), 0);
	until_written(c);
	sbctl_finish(&P);
	CHECK_INT(P.code, 0);
	CHECK_STR(P.so, "send  burst  1\nsend  burst  2\nsend  burst  3\n");
	sb_client_free(c);
	stop();
}

static int all_online(struct sb_client **cs, int n)
{
	for (int i = 0; i < n; i++)
		if (!sb_client_online(cs[i]))
			return 0;
	return 1;
}

/* Ten peers connecting together: presence --count 2 prints two events. */
static void test_presence_count_stops_at_n_in_a_burst(void)
{
	start();
	const char *args[] = {"presence", "--count", "2", NULL};
	struct sb_client *cs[10];

	sbctl_spawn(&P, args);
	CHECK(sbctl_wait_stderr(&P, "sbctl: watching presence\n"));
	for (int i = 0; i < 10; i++)
		cs[i] = new_client("client");
	uint64_t deadline = now_ms() + WAIT_MS;
	while (!all_online(cs, 10) && now_ms() < deadline)
		for (int i = 0; i < 10; i++)
			sb_client_process(cs[i], 1);
	CHECK(all_online(cs, 10));
	sbctl_finish(&P);
	CHECK_INT(P.code, 0);
	int lines = 0;
	for (const char *s = P.so; (s = strstr(s, "connected  ")) != NULL; s++)
		lines++;
	CHECK_INT(lines, 2);
	CHECK(starts(P.so, "connected  "));
	for (int i = 0; i < 10; i++)
		sb_client_free(cs[i]);
	stop();
}

/* listen --schema: the router refuses bad requests before they arrive. */
static void test_listen_with_a_schema(void)
{
	start();
	SBCTL_RUN(&P, "listen", "lis3", "--schema",
		  "{\"keys\": {\"age\": {\"type\": \"integer\"}}}");
	CHECK_INT(P.code, 2);
	CHECK_STR(P.se, "sbctl: --schema: schema key \"age\": unknown type \"integer\"\n");
	SBCTL_RUN(&P, "listen", "lis3", "--schema", "{\"keys\"");
	CHECK_INT(P.code, 2);
	CHECK(starts(P.se, "sbctl: invalid JSON at byte 7"));
	SBCTL_RUN(&P, "send", "lis3", "--schema", "{}");
	CHECK_INT(P.code, 2);

	const char *args[] = {
		"listen",
		"lis3",
		"--count",
		"1",
		"--schema",
		"{\"keys\": {\"email\": {\"type\": \"str\"}}, \"required\": [\"email\"],"
		" \"additional\": false}",
		NULL};
	struct proc l;
	sbctl_spawn(&l, args);
	CHECK(sbctl_wait_stderr(&l, "sbctl: listening on lis3\n"));
	SBCTL_RUN(&P, "request", "lis3", "{}");
	CHECK_INT(P.code, 1);
	CHECK_STR(P.se, "error: missing required key \"email\" (code EINVAL)\n");
	SBCTL_RUN(&P, "request", "lis3", "{\"email\": \"a\", \"x\": 1}");
	CHECK_INT(P.code, 1);
	CHECK_STR(P.se, "error: unknown key \"x\" (code EINVAL)\n");
	SBCTL_RUN(&P, "request", "lis3", "{\"email\": \"a@b\"}");
	CHECK_INT(P.code, 0);
	CHECK_STR(P.so, "ok  null\n");
	sbctl_finish(&l);
	CHECK_INT(l.code, 0);
	CHECK_STR(l.so, "request  lis3  {\"email\":\"a@b\"}\n"); /* the only one it saw */
	stop();
}

/* listen --schema with a JSON Schema document, as the gateway's users
 * write them: nested objects and items, faults named by path. */
static void test_listen_with_a_json_schema(void)
{
	start();
	SBCTL_RUN(&P, "listen", "lis4", "--schema",
		  "{\"type\": \"object\", \"properties\": {\"zip\": {\"type\": \"string\","
		  " \"pattern\": \"^[0-9]{5}$\"}}}");
	CHECK_INT(P.code, 2);
	CHECK_STR(P.se, "sbctl: --schema: zip: unsupported JSON Schema keyword \"pattern\"\n");

	const char *args[] = {"listen",
			      "lis4",
			      "--count",
			      "1",
			      "--schema",
			      "{\"type\": \"object\", \"required\": [\"address\"],"
			      " \"properties\": {\"address\": {\"type\": \"object\","
			      "  \"properties\": {\"zip\": {\"type\": \"string\"}},"
			      "  \"additionalProperties\": false},"
			      " \"tags\": {\"type\": \"array\", \"maxItems\": 2,"
			      "  \"items\": {\"enum\": [\"red\", \"blue\"]}}}}",
			      NULL};
	struct proc l;
	sbctl_spawn(&l, args);
	CHECK(sbctl_wait_stderr(&l, "sbctl: listening on lis4\n"));
	SBCTL_RUN(&P, "request", "lis4", "{\"address\": {\"zip\": 75001}}");
	CHECK_INT(P.code, 1);
	CHECK_STR(P.se, "error: address.zip: expected string, got integer (code EINVAL)\n");
	SBCTL_RUN(&P, "request", "lis4", "{\"address\": {}, \"tags\": [\"red\", \"green\"]}");
	CHECK_INT(P.code, 1);
	CHECK_STR(P.se, "error: tags[1]: not one of the enum values (code EINVAL)\n");
	SBCTL_RUN(&P, "request", "lis4", "{\"tags\": []}");
	CHECK_INT(P.code, 1);
	CHECK_STR(P.se, "error: address: required key missing (code EINVAL)\n");
	SBCTL_RUN(&P, "request", "lis4",
		  "{\"address\": {\"zip\": \"75001\"}, \"tags\": [\"blue\"]}");
	CHECK_INT(P.code, 0);
	CHECK_STR(P.so, "ok  null\n");
	sbctl_finish(&l);
	CHECK_INT(l.code, 0);
	CHECK_STR(l.so, "request  lis4  {\"address\":{\"zip\":\"75001\"},\"tags\":[\"blue\"]}\n");
	stop();
}

static void test_routes_peers_stats(void)
{
	start();
	SBCTL_RUN(&P, "routes");
	CHECK_INT(P.code, 0);
	CHECK_STR(P.so, "NAME         PEER     SHARD  INTERNAL  SCHEMA\n"
			"user.create  users-1  0      yes       {\"required\":[\"email\"]}\n"
			"             users-2  1      no        -\n"
			"ping         -        -      -         -\n");
	CHECK_STR(P.se, "");
	SBCTL_RUN(&P, "routes", "--json");
	CHECK_INT(P.code, 0);
	CHECK(strlen(P.so) == strlen(ROUTES) + 1 && strncmp(P.so, ROUTES, strlen(ROUTES)) == 0);

	SBCTL_RUN(&P, "peers");
	CHECK_INT(P.code, 0);
	CHECK_STR(P.so, "PEER     ID  ROLE     SHARD\n"
			"users-1  3   service  0\n"
			"sbctl-7  12  client   1\n");
	SBCTL_RUN(&P, "--json", "peers");
	CHECK(strlen(P.so) == strlen(PEERS) + 1 && strncmp(P.so, PEERS, strlen(PEERS)) == 0);

	/* Two pages of routes, fetched and shown as one. */
	SBCTL_RUN(&P, "stats");
	CHECK_INT(P.code, 0);
	CHECK_STR(P.so, "COUNTER      VALUE\n"
			"connections  2\n"
			"requests     1234\n"
			"timeouts     0\n"
			"\n"
			"SHARD  CONNECTIONS  INFLIGHT\n"
			"0      1            0\n"
			"1      1            2\n"
			"\n"
			"ROUTE     REQUESTS  SENDS  REPLIES  ERRORS  TIMEOUTS  P50_US  P99_US\n"
			"a.first   5         0      4        1       0         95      383\n"
			"b.second  0         7      0        0       0         0       0\n");
	SBCTL_RUN(&P, "stats", "--json");
	CHECK_STR(P.so, STATS_ALL "\n");
	stop();
}

/* In a cluster each entry names its router: a ROUTER column, and the
 * routers that did not answer in time after the tables. */
static void test_routes_peers_stats_of_a_cluster_show_each_entrys_router(void)
{
	start();
	setenv("SBCTL_TEST_ADMIN_PREFIX", "fakec.", 1);
	SBCTL_RUN(&P, "routes");
	CHECK_INT(P.code, 0);
	CHECK_STR(P.so, "NAME         PEER     ROUTER  SHARD  INTERNAL  SCHEMA\n"
			"user.create  users-1  r1      0      no        -\n"
			"             users-9  r2      1      no        -\n"
			"\n"
			"MISSING (did not answer in time): r3\n");
	SBCTL_RUN(&P, "peers");
	CHECK_INT(P.code, 0);
	CHECK_STR(P.so, "PEER     ID  ROLE     ROUTER  SHARD\n"
			"users-1  3   service  r1      0\n"
			"users-9  4   service  r2      1\n");
	SBCTL_RUN(&P, "stats");
	CHECK_INT(P.code, 0);
	CHECK_STR(P.so,
		  "COUNTER      VALUE\n"
		  "connections  3\n"
		  "requests     10\n"
		  "\n"
		  "ROUTER  SHARD  CONNECTIONS  INFLIGHT\n"
		  "r1      0      1            0\n"
		  "r2      0      2            1\n"
		  "\n"
		  "ROUTE    ROUTER  REQUESTS  SENDS  REPLIES  ERRORS  TIMEOUTS  P50_US  P99_US\n"
		  "a.first  r1      4         0      4        0       0         95      383\n"
		  "a.first  r2      6         0      6        0       0         80      200\n"
		  "\n"
		  "MISSING (did not answer in time): r3\n");
	SBCTL_RUN(&P, "stats", "--json");
	CHECK(strlen(P.so) == strlen(CSTATS) + 1 && strncmp(P.so, CSTATS, strlen(CSTATS)) == 0);
	setenv("SBCTL_TEST_ADMIN_PREFIX", "fake.", 1);
	stop();
}

/* The same commands against the router's own $sb.* names: the layout was
 * checked above against fixed answers; here the content is the router's. */
static void test_routes_peers_stats_from_the_router(void)
{
	start();
	SBCTL_RUN(&P, "request", "echo", "{}"); /* a request for the route table to count */
	CHECK_INT(P.code, 0);
	unsetenv("SBCTL_TEST_ADMIN_PREFIX");
	SBCTL_RUN(&P, "routes", "--json");
	CHECK_INT(P.code, 0);
	CHECK(strstr(P.so, "{\"name\":\"echo\",\"handlers\":[{\"peer\":\"") != NULL);
	CHECK(strstr(P.so, "\"internal\":false,\"schema\":null}") != NULL);
	SBCTL_RUN(&P, "routes");
	CHECK_INT(P.code, 0);
	CHECK(strncmp(P.so, "NAME ", 5) == 0 && strstr(P.so, " INTERNAL  SCHEMA\n") != NULL);
	CHECK(strstr(P.so, "\necho ") != NULL && strstr(P.so, " no        -\n") != NULL);
	SBCTL_RUN(&P, "peers");
	CHECK_INT(P.code, 0);
	CHECK(strncmp(P.so, "PEER ", 5) == 0 && strstr(P.so, " service ") != NULL);
	SBCTL_RUN(&P, "stats");
	CHECK_INT(P.code, 0);
	CHECK(strstr(P.so, "\nconnections ") != NULL);
	CHECK(strstr(P.so, "SHARD  CONNECTIONS  INFLIGHT\n0 ") != NULL);
	CHECK(strstr(P.so, "\n1 ") != NULL); /* both shards */
	/* the per-route table, with the echo route called above */
	CHECK(strstr(P.so, "\nROUTE ") != NULL && strstr(P.so, " REQUESTS ") != NULL);
	CHECK(strstr(P.so, "\necho ") != NULL);
	setenv("SBCTL_TEST_ADMIN_PREFIX", "fake.", 1);
	stop();
}

static void test_presence_command(void)
{
	start();
	char want[256];
	const char *args[] = {"presence", "--count", "2", NULL};

	sbctl_spawn(&P, args);
	CHECK(sbctl_wait_stderr(&P, "sbctl: watching presence\n"));
	struct sb_client_config cfg;
	int err = 0;
	sb_client_config_init(&cfg);
	cfg.port = PORT;
	cfg.name = "visitor-1";
	struct sb_client *v = sb_client_new(&cfg, &err);
	CHECK(v != NULL);
	until_online(v);
	uint32_t id = sb_client_peer_id(v);
	sb_client_free(v);
	sbctl_finish(&P);
	CHECK_INT(P.code, 0);
	snprintf(want, sizeof want,
		 "connected  visitor-1  %u  client\ndisconnected  visitor-1  %u  client\n", id, id);
	CHECK_STR(P.so, want);

	const char *json[] = {"--json", "presence", "--count", "1", NULL};
	sbctl_spawn(&P, json);
	CHECK(sbctl_wait_stderr(&P, "sbctl: watching presence\n"));
	cfg.name = "visitor-2";
	cfg.role = SB_ROLE_SERVICE;
	v = sb_client_new(&cfg, &err);
	until_online(v);
	id = sb_client_peer_id(v);
	sbctl_finish(&P);
	sb_client_free(v);
	CHECK_INT(P.code, 0);
	snprintf(
		want, sizeof want,
		"{\"event\":\"connected\",\"peer\":\"visitor-2\",\"id\":%u,\"role\":\"service\"}\n",
		id);
	CHECK_STR(P.so, want);
	stop();
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s PATH-TO-SBCTL\n", argv[0]);
		return 2;
	}
	SBCTL = argv[1];
	signal(SIGPIPE, SIG_IGN);
	RUN(test_listen_echo_count_1);
	RUN(test_listen_count_stops_at_n_in_a_burst);
	RUN(test_headers_from_sbctl_reach_a_listener);
	RUN(test_presence_count_stops_at_n_in_a_burst);
	RUN(test_listen_with_a_schema);
	RUN(test_listen_with_a_json_schema);
	RUN(test_routes_peers_stats);
	RUN(test_routes_peers_stats_of_a_cluster_show_each_entrys_router);
	RUN(test_routes_peers_stats_from_the_router);
	RUN(test_presence_command);
	return TEST_EXIT();
}
