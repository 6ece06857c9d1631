/* sbctl end to end: an in-process router, a service made with the client
 * library on its own thread, and the sbctl binary run as a user would run
 * it, checking its exact output and exit code. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <switchboard/client.h>
#include <switchboard/router.h>

#include "support/clock.h"
#include "support/proc.h"
#include "support/router.h"
#include "support/testlib.h"

#include "json.h"

/* RUN_MS bounds one sbctl run: far above what any takes, so only a hang hits it. */
enum { RUN_MS = 10000, WAIT_MS = 5000 };

static const char *SBCTL;
static char ROUTER[32]; /* "127.0.0.1:PORT" */

/* ---- the service --------------------------------------------------------- */

static struct sb_client *svc;
static pthread_t svc_thread;
static pthread_mutex_t sink_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sink_cond = PTHREAD_COND_INITIALIZER;
static int sink_count;         /* sends the "sink" handler got */
static struct sbj_buf sink_js; /* the last one's payload, as JSON */

/* Encodes JSON that the test itself wrote: it must be valid. */
static void mp_of(const char *json, struct sbj_buf *mp)
{
	struct sbj_error e;
	mp->len = 0;
	CHECK_INT(sbj_from_json(json, strlen(json), mp, &e), 0);
}

static void on_echo(struct sb_client *c, struct sb_call *call, void *ud)
{
	size_t len;
	const void *p = sb_call_payload(call, &len);

	(void)c;
	(void)ud;
	CHECK_INT(sb_reply(call, "done", p, len), 0);
}

static void on_stream(struct sb_client *c, struct sb_call *call, void *ud)
{
	struct sbj_buf mp = {0};

	(void)c;
	(void)ud;
	CHECK_INT(sb_reply_more(call, "working", NULL, 0, 0), 0);
	mp_of("[0]", &mp);
	CHECK_INT(sb_reply_more(call, "part", mp.data, mp.len, 1), 0);
	mp_of("[1]", &mp);
	CHECK_INT(sb_reply_more(call, "part", mp.data, mp.len, 1), 0);
	CHECK_INT(sb_reply(call, "done", NULL, 0), 0);
	sbj_buf_free(&mp);
}

static void forget(struct sb_call *call, void *ud)
{
	(void)call;
	(void)ud;
}

/* Never answers: the router's timeout ends the request, and its cancel
 * frees the call. */
static void on_slow(struct sb_client *c, struct sb_call *call, void *ud)
{
	(void)c;
	(void)ud;
	sb_call_on_cancel(call, forget, NULL);
}

static void on_sink(struct sb_client *c, struct sb_call *call, void *ud)
{
	size_t len;
	const void *p = sb_call_payload(call, &len);

	(void)c;
	(void)ud;
	pthread_mutex_lock(&sink_lock);
	sink_js.len = 0;
	CHECK_INT(sbj_to_json(p, len, &sink_js), 0);
	sink_count++;
	pthread_cond_signal(&sink_cond);
	pthread_mutex_unlock(&sink_lock);
}

/* Stand-ins for the router's $sb.* names (SBCTL_TEST_ADMIN_PREFIX=fake.): the
 * ud is the JSON of the reply, in the documented shape. */
static void on_fake_admin(struct sb_client *c, struct sb_call *call, void *ud)
{
	struct sbj_buf mp = {0};

	(void)c;
	mp_of(ud, &mp);
	CHECK_INT(sb_reply(call, "ok", mp.data, mp.len), 0);
	sbj_buf_free(&mp);
}

static const char ROUTES[] =
	"[{\"name\":\"user.create\",\"handlers\":[{\"peer\":\"users-1\",\"shard\":0},"
	"{\"peer\":\"users-2\",\"shard\":1}]},{\"name\":\"ping\",\"handlers\":[]}]";
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

/* fake.stats answers the page its arguments ask for, as the router would. */
static void on_fake_stats(struct sb_client *c, struct sb_call *call, void *ud)
{
	struct sbj_buf args = {0};
	size_t len;
	const void *p = sb_call_payload(call, &len);

	CHECK_INT(sbj_to_json(p, len, &args), 0);
	on_fake_admin(c, call,
		      (void *)(strcmp(args.data, "{\"after\":\"a.first\"}") == 0 ? STATS_AFTER_A
										 : STATS));
	CHECK(strcmp(args.data, "null") == 0 || strcmp(args.data, "{\"after\":\"a.first\"}") == 0);
	sbj_buf_free(&args);
	(void)ud;
}

static void *run_service(void *arg)
{
	(void)arg;
	CHECK_INT(sb_client_run(svc), 0);
	return NULL;
}

/* Pumps @p c on this thread until it is online; bounded. */
static void until_online(struct sb_client *c)
{
	uint64_t deadline = now_ms() + WAIT_MS;
	while (!sb_client_online(c) && now_ms() < deadline)
		sb_client_process(c, 10);
	CHECK(sb_client_online(c));
}

static struct sb_client *new_client(const char *role)
{
	struct sb_client_config cfg;
	int err = 0;

	sb_client_config_init(&cfg);
	cfg.port = sb_router_port(R);
	cfg.role = role;
	struct sb_client *c = sb_client_new(&cfg, &err);
	CHECK(c != NULL);
	return c;
}

/* Each test's router, and the service above on a thread of its own; sbctl
 * is pointed at them with --router ROUTER. */
static void start(void)
{
	router_start(NULL);
	sink_count = 0; /* before the service thread: it counts from here */
	snprintf(ROUTER, sizeof ROUTER, "127.0.0.1:%u", sb_router_port(R));

	svc = new_client("service");
	CHECK_INT(sb_client_register(svc, "echo", 0, on_echo, NULL), 0);
	CHECK_INT(sb_client_register(svc, "stream", 0, on_stream, NULL), 0);
	CHECK_INT(sb_client_register(svc, "slow", 0, on_slow, NULL), 0);
	CHECK_INT(sb_client_register(svc, "sink", 0, on_sink, NULL), 0);
	CHECK_INT(sb_client_register(svc, "fake.routes", 0, on_fake_admin, (void *)ROUTES), 0);
	CHECK_INT(sb_client_register(svc, "fake.peers", 0, on_fake_admin, (void *)PEERS), 0);
	CHECK_INT(sb_client_register(svc, "fake.stats", 0, on_fake_stats, NULL), 0);
	until_online(svc);
	CHECK_INT(pthread_create(&svc_thread, NULL, run_service, NULL), 0);
	setenv("SBCTL_TEST_ADMIN_PREFIX", "fake.", 1);
}

static void stop(void)
{
	sb_client_stop(svc);
	pthread_join(svc_thread, NULL);
	sb_client_free(svc);
	sb_router_stop(R, 1000);
	sb_router_free(R);
	R = NULL;
	sbj_buf_free(&sink_js);
}

/* ---- running sbctl ------------------------------------------------------- */

/* One sbctl process and what it has said so far. */
struct proc {
	pid_t pid;
	int out, err;   /* pipe ends, -1 once at EOF */
	char so[16384]; /* stdout */
	char se[16384]; /* stderr */
	size_t nso, nse;
	int code; /* exit code; 128 + signal if killed */
};

/* Starts `sbctl --router ROUTER ARGS...`. */
static void spawn(struct proc *p, const char *const *args)
{
	const char *argv[32] = {SBCTL, "--router", ROUTER};
	int o[2], e[2], n = 3;

	while (*args != NULL && n < 31)
		argv[n++] = *args++;
	argv[n] = NULL;
	memset(p, 0, sizeof *p);
	CHECK(pipe(o) == 0 && pipe(e) == 0);
	p->pid = fork();
	if (p->pid == 0) {
		dup2(o[1], STDOUT_FILENO);
		dup2(e[1], STDERR_FILENO);
		close(o[0]);
		close(e[0]);
		execv(SBCTL, (char *const *)argv);
		_exit(127);
	}
	close(o[1]);
	close(e[1]);
	p->out = o[0];
	p->err = e[0];
}

/* Reads what is there, for up to @p ms; 0 once both pipes are at EOF. */
static int pump(struct proc *p, int ms)
{
	struct pollfd fds[2] = {{p->out, POLLIN, 0}, {p->err, POLLIN, 0}};

	if (p->out < 0 && p->err < 0)
		return 0;
	if (poll(fds, 2, ms) <= 0)
		return 1;
	for (int i = 0; i < 2; i++) {
		int *fd = i == 0 ? &p->out : &p->err;
		char *buf = i == 0 ? p->so : p->se;
		size_t *len = i == 0 ? &p->nso : &p->nse;
		if (*fd < 0 || fds[i].revents == 0)
			continue;
		ssize_t r = read(*fd, buf + *len, sizeof p->so - 1 - *len);
		if (r <= 0) {
			close(*fd);
			*fd = -1;
		} else {
			*len += (size_t)r;
			buf[*len] = 0;
		}
	}
	return 1;
}

/* Waits (bounded) until stderr contains @p text. */
static int wait_stderr(struct proc *p, const char *text)
{
	uint64_t deadline = now_ms() + WAIT_MS;
	while (strstr(p->se, text) == NULL && now_ms() < deadline && pump(p, 50))
		;
	return strstr(p->se, text) != NULL;
}

/* Collects the rest and the exit code; kills a run that outlives RUN_MS. */
static void finish(struct proc *p)
{
	uint64_t deadline = now_ms() + RUN_MS;
	int status;

	while (now_ms() < deadline && pump(p, 50))
		;
	if (p->out >= 0 || p->err >= 0) {
		fprintf(stderr, "sbctl hung; killing it\n");
		CHECK(0);
		kill(p->pid, SIGKILL);
		if (p->out >= 0)
			close(p->out);
		if (p->err >= 0)
			close(p->err);
	}
	waitpid(p->pid, &status, 0);
	p->code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

#define SBCTL_RUN(p, ...)                                                                          \
	do {                                                                                       \
		const char *args_[] = {__VA_ARGS__, NULL};                                         \
		spawn((p), args_);                                                                 \
		finish(p);                                                                         \
	} while (0)

static int starts(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* ---- the stories --------------------------------------------------------- */

static struct proc P;

static void test_help_and_version(void)
{
	start();
	SBCTL_RUN(&P, "--help");
	CHECK_INT(P.code, 0);
	CHECK(starts(P.so, "usage: sbctl [OPTIONS] COMMAND [ARGS]\n"));
	CHECK(strstr(P.so, "  3  cannot connect to the router\n") != NULL);
	CHECK_STR(P.se, "");

	SBCTL_RUN(&P, "request", "--help");
	CHECK_INT(P.code, 0);
	CHECK(starts(P.so, "usage: sbctl [OPTIONS] request NAME [JSON] [--timeout MS] [--to PEER | "
			   "--all]\n"));
	CHECK(strstr(P.so, "  all: N peers, N ok, N errors, N timeouts, N gone\n") != NULL);
	SBCTL_RUN(&P, "help", "presence");
	CHECK_INT(P.code, 0);
	CHECK(starts(P.so, "usage: sbctl [OPTIONS] presence [--count N]\n"));
	SBCTL_RUN(&P, "help", "listen");
	CHECK_INT(P.code, 0);
	CHECK(strstr(P.so, "  --count N             exit after N messages\n") != NULL);

	SBCTL_RUN(&P, "--version");
	CHECK_INT(P.code, 0);
	CHECK(starts(P.so, "sbctl "));
	stop();
}

static void test_usage_errors_exit_2(void)
{
	start();
	SBCTL_RUN(&P, "frobnicate");
	CHECK_INT(P.code, 2);
	CHECK_STR(P.se, "sbctl: unknown command frobnicate (sbctl help lists them)\n");
	SBCTL_RUN(&P, "listen", "x", "--timeout", "5");
	CHECK_INT(P.code, 2);
	CHECK_STR(P.se, "sbctl: listen does not take --timeout (sbctl listen --help)\n");
	SBCTL_RUN(&P, "request");
	CHECK_INT(P.code, 2);
	SBCTL_RUN(&P, "request", "x", "--timeout", "soon");
	CHECK_INT(P.code, 2);
	CHECK_STR(P.se, "sbctl: --timeout soon: expected a number from 1 to 3600000\n");
	SBCTL_RUN(&P, "request", "no spaces, please");
	CHECK_INT(P.code, 2);
	CHECK_STR(P.se, "sbctl: no spaces, please: not a valid message name\n");
	SBCTL_RUN(&P, "send", "");
	CHECK_INT(P.code, 2);
	SBCTL_RUN(&P, "--bogus");
	CHECK_INT(P.code, 2);
	CHECK_STR(P.se, "sbctl: unknown option --bogus (sbctl help lists them)\n");
	stop();
}

static void test_send(void)
{
	start();
	SBCTL_RUN(&P, "send", "sink", "{\"k\":[1,-2,\"three\"]}");
	CHECK_INT(P.code, 0);
	CHECK_STR(P.so, "");
	CHECK_STR(P.se, "");

	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += WAIT_MS / 1000;
	pthread_mutex_lock(&sink_lock);
	while (sink_count == 0 &&
	       pthread_cond_timedwait(&sink_cond, &sink_lock, &until) != ETIMEDOUT)
		;
	CHECK_INT(sink_count, 1);
	CHECK_STR(sink_js.data ? sink_js.data : "", "{\"k\":[1,-2,\"three\"]}");
	pthread_mutex_unlock(&sink_lock);
	stop();
}

static void test_request_roundtrips_json(void)
{
	start();
	static const char payload[] =
		"{\"user\":{\"name\":\"Zo\\u00eb "
		"\\ud83d\\ude00\",\"tags\":[\"a\",[],{}],\"age\":42,"
		"\"debt\":-9223372036854775808,\"big\":18446744073709551615,\"ratio\":-0.25,"
		"\"ok\":true,\"no\":false,\"none\":null}}";
	static const char printed[] =
		"{\"user\":{\"name\":\"Zoë 😀\",\"tags\":[\"a\",[],{}],\"age\":42,"
		"\"debt\":-9223372036854775808,\"big\":18446744073709551615,\"ratio\":-0.25,"
		"\"ok\":true,\"no\":false,\"none\":null}}";
	char want[1024];

	SBCTL_RUN(&P, "request", "echo", payload);
	CHECK_INT(P.code, 0);
	snprintf(want, sizeof want, "done  %s\n", printed);
	CHECK_STR(P.so, want);
	CHECK_STR(P.se, "");

	SBCTL_RUN(&P, "--json", "request", "echo", payload);
	CHECK_INT(P.code, 0);
	snprintf(want, sizeof want, "{\"outcome\":\"done\",\"more\":false,\"payload\":%s}\n",
		 printed);
	CHECK_STR(P.so, want);

	SBCTL_RUN(&P, "request", "echo"); /* no payload: nil */
	CHECK_INT(P.code, 0);
	CHECK_STR(P.so, "done  null\n");
	SBCTL_RUN(&P, "request", "echo", "--", "-5");
	CHECK_INT(P.code, 0);
	CHECK_STR(P.so, "done  -5\n");
	stop();
}

static void test_streamed_request(void)
{
	start();
	SBCTL_RUN(&P, "request", "stream");
	CHECK_INT(P.code, 0);
	CHECK_STR(P.so, "working  null  (more: progress)\n"
			"part  [0]  (more: chunk)\n"
			"part  [1]  (more: chunk)\n"
			"done  null\n");
	SBCTL_RUN(&P, "request", "stream", "--json");
	CHECK_INT(P.code, 0);
	CHECK_STR(P.so, "{\"outcome\":\"working\",\"more\":true,\"payload\":null}\n"
			"{\"outcome\":\"part\",\"more\":true,\"payload\":[0]}\n"
			"{\"outcome\":\"part\",\"more\":true,\"payload\":[1]}\n"
			"{\"outcome\":\"done\",\"more\":false,\"payload\":null}\n");
	stop();
}

static void test_timeout_exits_1(void)
{
	start();
	uint64_t t0 = now_ms();
	SBCTL_RUN(&P, "request", "slow", "{}", "--timeout", "200");
	CHECK_INT(P.code, 1);
	CHECK(now_ms() - t0 >= 200);
	CHECK_STR(P.so, "");
	CHECK(starts(P.se, "error: "));
	CHECK(strstr(P.se, " (code ETIMEOUT)\n") != NULL);

	SBCTL_RUN(&P, "--json", "request", "slow", "--timeout", "100");
	CHECK_INT(P.code, 1);
	CHECK(starts(P.so, "{\"error\":\"ETIMEOUT\",\"code\":-2,\"text\":"));
	stop();
}

static void test_no_handler_exits_1(void)
{
	start();
	SBCTL_RUN(&P, "request", "nobody.home", "[1]");
	CHECK_INT(P.code, 1);
	CHECK_STR(P.so, "");
	CHECK_STR(P.se, "error: no handler for this name (code ENOHANDLER)\n");
	stop();
}

static void test_invalid_json_exits_2(void)
{
	start();
	SBCTL_RUN(&P, "request", "echo", "{\"a\" 1}");
	CHECK_INT(P.code, 2);
	CHECK_STR(P.so, "");
	CHECK_STR(P.se, "sbctl: invalid JSON at byte 5: expected ':' after an object key\n");
	SBCTL_RUN(&P, "send", "echo", "[1,2");
	CHECK_INT(P.code, 2);
	CHECK_STR(P.se, "sbctl: invalid JSON at byte 4: expected ',' or ']'\n");
	stop();
}

static void test_cannot_connect_exits_3(void)
{
	start();
	char router[32], want[128];

	snprintf(router, sizeof router, "127.0.0.1:%u", free_port());
	SBCTL_RUN(&P, "--router", router, "--connect-timeout", "300", "request", "echo", "{}");
	CHECK_INT(P.code, 3);
	snprintf(want, sizeof want,
		 "sbctl: cannot connect to the router at %s (no answer within 300 ms)\n", router);
	CHECK_STR(P.se, want);
	stop();
}

static void test_listen_echo_count_1(void)
{
	start();
	struct sbj_buf mp = {0};
	char outcome[64] = "";
	void *reply = NULL;
	size_t reply_len = 0;
	const char *args[] = {"listen", "lis", "--echo", "--count", "1", NULL};

	spawn(&P, args);
	CHECK(wait_stderr(&P, "sbctl: listening on lis\n"));
	struct sb_client *c = new_client("client");
	until_online(c);
	mp_of("{\"n\":[1,2.5,\"x\"]}", &mp);
	CHECK_INT(sb_request_wait(c, "lis", mp.data, mp.len, WAIT_MS, outcome, sizeof outcome,
				  &reply, &reply_len),
		  0);
	CHECK_STR(outcome, "echo");
	CHECK(reply_len == mp.len && reply != NULL && memcmp(reply, mp.data, mp.len) == 0);
	finish(&P);
	CHECK_INT(P.code, 0);
	CHECK_STR(P.so, "request  lis  {\"n\":[1,2.5,\"x\"]}\n");
	CHECK_STR(P.se, "sbctl: listening on lis\n");

	/* Without --echo: "ok" and nil; a send is printed too. */
	const char *args2[] = {"--json", "listen", "lis2", "--count", "2", NULL};
	spawn(&P, args2);
	CHECK(wait_stderr(&P, "sbctl: listening on lis2\n"));
	CHECK_INT(sb_send(c, "lis2", mp.data, mp.len), 0);
	free(reply);
	reply = NULL;
	CHECK_INT(sb_request_wait(c, "lis2", NULL, 0, WAIT_MS, outcome, sizeof outcome, &reply,
				  &reply_len),
		  0);
	CHECK_STR(outcome, "ok");
	finish(&P);
	CHECK_INT(P.code, 0);
	CHECK_STR(P.so, "{\"name\":\"lis2\",\"request\":false,\"payload\":{\"n\":[1,2.5,\"x\"]}}\n"
			"{\"name\":\"lis2\",\"request\":true,\"payload\":null}\n");
	free(reply);
	sb_client_free(c);
	sbj_buf_free(&mp);
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
	spawn(&l, args);
	CHECK(wait_stderr(&l, "sbctl: listening on lis3\n"));
	SBCTL_RUN(&P, "request", "lis3", "{}");
	CHECK_INT(P.code, 1);
	CHECK_STR(P.se, "error: missing required key \"email\" (code EINVAL)\n");
	SBCTL_RUN(&P, "request", "lis3", "{\"email\": \"a\", \"x\": 1}");
	CHECK_INT(P.code, 1);
	CHECK_STR(P.se, "error: unknown key \"x\" (code EINVAL)\n");
	SBCTL_RUN(&P, "request", "lis3", "{\"email\": \"a@b\"}");
	CHECK_INT(P.code, 0);
	CHECK_STR(P.so, "ok  null\n");
	finish(&l);
	CHECK_INT(l.code, 0);
	CHECK_STR(l.so, "request  lis3  {\"email\":\"a@b\"}\n"); /* the only one it saw */
	stop();
}

static void test_routes_peers_stats(void)
{
	start();
	SBCTL_RUN(&P, "routes");
	CHECK_INT(P.code, 0);
	CHECK_STR(P.so, "NAME         PEER     SHARD\n"
			"user.create  users-1  0\n"
			"             users-2  1\n"
			"ping         -        -\n");
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

/* ---- peers: --to, --all, presence ----------------------------------------- */

/* A named service on its own thread: "health" answers healthy or sick,
 * "notice" counts sends. */
struct agent {
	struct sb_client *c;
	pthread_t thread;
	_Atomic int sick; /* "health" answers an error */
	_Atomic int notices;
};

static void on_health(struct sb_client *c, struct sb_call *call, void *ud)
{
	struct agent *a = ud;
	struct sbj_buf mp = {0};

	(void)c;
	if (!atomic_load(&a->sick)) {
		mp_of("{\"load\":1}", &mp);
		CHECK_INT(sb_reply(call, "healthy", mp.data, mp.len), 0);
	} else
		CHECK_INT(sb_reply_error(call, SB_EINTERNAL, "disk full"), 0);
	sbj_buf_free(&mp);
}

static void on_notice(struct sb_client *c, struct sb_call *call, void *ud)
{
	struct agent *a = ud;
	(void)c;
	(void)call;
	atomic_fetch_add(&a->notices, 1);
}

static void *run_agent(void *arg)
{
	struct agent *a = arg;
	CHECK_INT(sb_client_run(a->c), 0);
	return NULL;
}

static void agent_start(struct agent *a, const char *name)
{
	struct sb_client_config cfg;
	int err = 0;

	sb_client_config_init(&cfg);
	cfg.port = sb_router_port(R);
	cfg.role = "service";
	cfg.name = name;
	atomic_init(&a->sick, 0);
	atomic_init(&a->notices, 0);
	a->c = sb_client_new(&cfg, &err);
	CHECK(a->c != NULL);
	CHECK_INT(sb_client_register(a->c, "health", 0, on_health, a), 0);
	CHECK_INT(sb_client_register(a->c, "notice", 0, on_notice, a), 0);
	until_online(a->c);
	CHECK_INT(pthread_create(&a->thread, NULL, run_agent, a), 0);
}

static void agent_stop(struct agent *a)
{
	sb_client_stop(a->c);
	pthread_join(a->thread, NULL);
	sb_client_free(a->c);
}

/* Bounded wait for an agent's notice count. */
static int notices_reach(struct agent *a, int n)
{
	uint64_t deadline = now_ms() + WAIT_MS;
	while (atomic_load(&a->notices) < n && now_ms() < deadline) {
		struct timespec ts = {0, 5 * 1000000};
		nanosleep(&ts, NULL);
	}
	return atomic_load(&a->notices) == n;
}

static void test_to_and_all(void)
{
	start();
	struct agent a, b;
	agent_start(&a, "agent-a");
	agent_start(&b, "agent-b");

	SBCTL_RUN(&P, "request", "health", "--all");
	CHECK_INT(P.code, 0);
	/* Results come in the order the agents answer; the tally comes last. */
	CHECK(strstr(P.so, "agent-a  healthy  {\"load\":1}\n") != NULL);
	CHECK(strstr(P.so, "agent-b  healthy  {\"load\":1}\n") != NULL);
	CHECK(strlen(P.so) == 2 * strlen("agent-a  healthy  {\"load\":1}\n") +
				      strlen("all: 2 peers, 2 ok, 0 errors, 0 timeouts, 0 gone\n"));
	CHECK(strstr(P.so, "\nall: 2 peers, 2 ok, 0 errors, 0 timeouts, 0 gone\n") != NULL);
	CHECK_STR(P.se, "");

	atomic_store(&b.sick, 1);
	SBCTL_RUN(&P, "--json", "request", "health", "--all");
	CHECK_INT(P.code, 1); /* one peer failed */
	CHECK(strstr(P.so, "{\"peer\":\"agent-a\",\"outcome\":\"healthy\",\"more\":false,"
			   "\"payload\":{\"load\":1}}\n") != NULL);
	CHECK(strstr(P.so, "{\"peer\":\"agent-b\",\"error\":\"EINTERNAL\",\"code\":-18,"
			   "\"text\":\"disk full\"}\n") != NULL);
	CHECK(strstr(P.so, "{\"all\":{\"peers\":2,\"ok\":1,\"errors\":1,\"timeouts\":0,"
			   "\"gone\":0}}\n") != NULL);
	SBCTL_RUN(&P, "request", "health", "--all");
	CHECK_INT(P.code, 1);
	CHECK(strstr(P.so, "agent-b  error: disk full (code EINTERNAL)\n") != NULL);

	SBCTL_RUN(&P, "request", "health", "--to", "agent-a");
	CHECK_INT(P.code, 0);
	CHECK_STR(P.so, "healthy  {\"load\":1}\n");
	SBCTL_RUN(&P, "request", "health", "--to", "ghost");
	CHECK_INT(P.code, 1);
	CHECK_STR(P.se, "error: no peer named ghost has connected (code EUNKNOWNPEER)\n");
	SBCTL_RUN(&P, "request", "nobody.home", "--all");
	CHECK_INT(P.code, 1);
	CHECK_STR(P.se, "error: no connected peer handles this name (code ENOPEERS)\n");

	SBCTL_RUN(&P, "send", "notice", "--all");
	CHECK_INT(P.code, 0);
	CHECK(notices_reach(&a, 1) && notices_reach(&b, 1));
	SBCTL_RUN(&P, "send", "notice", "{}", "--to", "agent-b");
	CHECK_INT(P.code, 0);
	CHECK(notices_reach(&b, 2));
	CHECK_INT(atomic_load(&a.notices), 1);

	SBCTL_RUN(&P, "request", "health", "--to", "agent-a", "--all");
	CHECK_INT(P.code, 2);
	CHECK_STR(P.se, "sbctl: --to and --all exclude each other: one peer, or all of them\n");
	SBCTL_RUN(&P, "send", "notice", "--to", "two words");
	CHECK_INT(P.code, 2);
	CHECK_STR(P.se, "sbctl: --to two words: not a valid peer name\n");
	SBCTL_RUN(&P, "listen", "x", "--all");
	CHECK_INT(P.code, 2);
	CHECK_STR(P.se, "sbctl: listen does not take --all (sbctl listen --help)\n");
	agent_stop(&a);
	agent_stop(&b);
	stop();
}

static void test_presence_command(void)
{
	start();
	char want[256];
	const char *args[] = {"presence", "--count", "2", NULL};

	spawn(&P, args);
	CHECK(wait_stderr(&P, "sbctl: watching presence\n"));
	struct sb_client_config cfg;
	int err = 0;
	sb_client_config_init(&cfg);
	cfg.port = sb_router_port(R);
	cfg.name = "visitor-1";
	struct sb_client *v = sb_client_new(&cfg, &err);
	CHECK(v != NULL);
	until_online(v);
	uint32_t id = sb_client_peer_id(v);
	sb_client_free(v);
	finish(&P);
	CHECK_INT(P.code, 0);
	snprintf(want, sizeof want,
		 "connected  visitor-1  %u  client\ndisconnected  visitor-1  %u  client\n", id, id);
	CHECK_STR(P.so, want);

	const char *json[] = {"--json", "presence", "--count", "1", NULL};
	spawn(&P, json);
	CHECK(wait_stderr(&P, "sbctl: watching presence\n"));
	cfg.name = "visitor-2";
	cfg.role = "service";
	v = sb_client_new(&cfg, &err);
	until_online(v);
	id = sb_client_peer_id(v);
	finish(&P);
	sb_client_free(v);
	CHECK_INT(P.code, 0);
	snprintf(
		want, sizeof want,
		"{\"event\":\"connected\",\"peer\":\"visitor-2\",\"id\":%u,\"role\":\"service\"}\n",
		id);
	CHECK_STR(P.so, want);
	stop();
}

static void on_local_echo(struct sb_local_call *call, void *ud)
{
	size_t len;
	const void *p = sb_local_payload(call, &len);
	(void)ud;
	CHECK_INT(sb_local_reply(call, "done", p, len, 0), 0);
}

/* A router that asks for a secret: --secret-file or $SB_SECRET answers it;
 * a wrong or missing secret is a refusal (exit 3), an unreadable file a
 * usage error. */
static void test_secret_file_and_env(void)
{
	start();
	struct sb_router_config cfg;
	char router[32], path[64];
	int err = 0;

	sb_router_config_init(&cfg);
	cfg.port = 0;
	cfg.shards = 1;
	cfg.log_level = 0;
	cfg.secret_client = "sbctl-s3cret";
	cfg.secret_service = "another one";
	cfg.auth_fail_max = 0;
	struct sb_router *r = sb_router_new(&cfg, &err);
	CHECK(r != NULL);
	if (r == NULL)
		return;
	CHECK_INT(sb_router_handle(r, "echo", 0, on_local_echo, NULL), 0);
	CHECK_INT(sb_router_start(r), 0);
	snprintf(router, sizeof router, "127.0.0.1:%u", sb_router_port(r));
	snprintf(path, sizeof path, "/tmp/sbctl-test-secret-%d", (int)getpid());
	FILE *f = fopen(path, "w");
	CHECK(f != NULL);
	if (f != NULL) {
		fputs("sbctl-s3cret\n", f);
		fclose(f);
	}

	SBCTL_RUN(&P, "--router", router, "--secret-file", path, "request", "echo", "[1]");
	CHECK_INT(P.code, 0);
	CHECK_STR(P.so, "done  [1]\n");
	setenv("SB_SECRET", "sbctl-s3cret", 1);
	SBCTL_RUN(&P, "--router", router, "request", "echo", "[2]");
	CHECK_INT(P.code, 0);
	CHECK_STR(P.so, "done  [2]\n");
	setenv("SB_SECRET", "wrong", 1);
	SBCTL_RUN(&P, "--router", router, "request", "echo", "[3]");
	CHECK_INT(P.code, 3);
	CHECK_STR(P.se, "sbctl: the router refused the connection: unauthorized (code "
			"EUNAUTHORIZED): wrong secret for role client\n");
	unsetenv("SB_SECRET");
	SBCTL_RUN(&P, "--router", router, "request", "echo", "[4]");
	CHECK_INT(P.code, 3);
	CHECK_STR(P.se, "sbctl: the router refused the connection: unauthorized (code "
			"EUNAUTHORIZED)\n");
	unlink(path);
	SBCTL_RUN(&P, "--router", router, "--secret-file", path, "request", "echo");
	CHECK_INT(P.code, 2);
	char want[128];
	snprintf(want, sizeof want, "sbctl: --secret-file %s: No such file or directory\n", path);
	CHECK_STR(P.se, want);
	sb_router_stop(r, 0);
	sb_router_free(r);
	stop();
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: test_sbctl PATH-TO-SBCTL\n");
		return 2;
	}
	SBCTL = argv[1];
	signal(SIGPIPE, SIG_IGN);
	RUN(test_help_and_version);
	RUN(test_usage_errors_exit_2);
	RUN(test_send);
	RUN(test_request_roundtrips_json);
	RUN(test_streamed_request);
	RUN(test_timeout_exits_1);
	RUN(test_no_handler_exits_1);
	RUN(test_invalid_json_exits_2);
	RUN(test_cannot_connect_exits_3);
	RUN(test_listen_echo_count_1);
	RUN(test_listen_with_a_schema);
	RUN(test_routes_peers_stats);
	RUN(test_routes_peers_stats_from_the_router);
	RUN(test_to_and_all);
	RUN(test_presence_command);
	RUN(test_secret_file_and_env);
	return TEST_EXIT();
}
