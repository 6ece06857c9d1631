/* sbctl sending and requesting, run as a user would run it against an
 * in-process router and a service made with the client library on its own
 * thread: exact output and exit code for each outcome, usage errors, no
 * router, `--to` and `--all`, and a router that asks for a secret. */

#include <errno.h>
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

static pthread_mutex_t sink_lock = PTHREAD_MUTEX_INITIALIZER;

static pthread_cond_t sink_cond = PTHREAD_COND_INITIALIZER;

static int sink_count; /* sends the "sink" handler got */

static struct sb__json_buf sink_js; /* the last one's payload, as JSON */

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

static void on_stream(struct sb_call *call, void *ud)
{
	struct sb__json_buf mp = {0};

	(void)ud;
	CHECK_INT(sb_reply_more(call, SB_MORE_PROGRESS, "working", NULL, 0), 0);
	mp_of("[0]", &mp);
	CHECK_INT(sb_reply_more(call, SB_MORE_CHUNK, "part", mp.data, mp.len), 0);
	mp_of("[1]", &mp);
	CHECK_INT(sb_reply_more(call, SB_MORE_CHUNK, "part", mp.data, mp.len), 0);
	CHECK_INT(sb_reply(call, "done", NULL, 0), 0);
	sb__json_buf_free(&mp);
}

static void forget(struct sb_call *call, void *ud)
{
	(void)call;
	(void)ud;
}

/* Never answers: the router's timeout ends the request, and its cancel
 * frees the call. */
static void on_slow(struct sb_call *call, void *ud)
{
	(void)ud;
	sb_call_on_cancel(call, forget, NULL);
}

static void on_sink(struct sb_call *call, void *ud)
{
	size_t len;
	const void *p = sb_call_payload(call, &len);

	(void)ud;
	pthread_mutex_lock(&sink_lock);
	sink_js.len = 0;
	CHECK_INT(sb__json_print(p, len, &sink_js), 0);
	sink_count++;
	pthread_cond_signal(&sink_cond);
	pthread_mutex_unlock(&sink_lock);
}

/* Each test's router and service: echo, stream, slow and sink. */
static void handlers(struct sb_client *svc)
{
	CHECK_INT(sb_client_register(svc, "echo", NULL, on_echo, NULL), 0);
	CHECK_INT(sb_client_register(svc, "stream", NULL, on_stream, NULL), 0);
	CHECK_INT(sb_client_register(svc, "slow", NULL, on_slow, NULL), 0);
	CHECK_INT(sb_client_register(svc, "sink", NULL, on_sink, NULL), 0);
}

static void start(void)
{
	sink_count = 0; /* before the service thread: it counts from here */
	service_start(handlers);
}

static void stop(void)
{
	service_stop();
	sb__json_buf_free(&sink_js);
}

/* ---- the stories --------------------------------------------------------- */

static struct proc P;

static void test_help_and_version(void)
{
	start();
	SBCTL_RUN(&P, "--help");
	CHECK_INT(P.code, 0);
	CHECK(starts(P.so, "usage: sbctl [OPTIONS] COMMAND [ARGS]\n"));
	CHECK(strstr(P.so, "  3  cannot connect to the router (stderr says why), or it refused "
			   "us\n") != NULL);
	CHECK_STR(P.se, "");

	SBCTL_RUN(&P, "request", "--help");
	CHECK_INT(P.code, 0);
	CHECK(starts(P.so,
		     "usage: sbctl [OPTIONS] request NAME [PAYLOAD] [--str] [--header K=V]... "
		     "[--timeout MS] [--to PEER | --all | --peers SEL]\n"));
	CHECK(strstr(P.so,
		     "  --header KEY=VALUE    a header beside the payload (repeat: up to 16)\n") !=
	      NULL);
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
	SBCTL_RUN(&P, "send", "x", "--header", "novalue");
	CHECK_INT(P.code, 2);
	CHECK_STR(P.se, "sbctl: --header novalue: not KEY=VALUE\n");
	SBCTL_RUN(&P, "send", "x", "--header", "a b=1");
	CHECK_INT(P.code, 2);
	CHECK_STR(P.se, "sbctl: --header: a key twice, or a key with a space or a control "
			"character, or a value with a control character\n");
	SBCTL_RUN(&P, "request", "x", "--header", "a=1", "--header", "a=2");
	CHECK_INT(P.code, 2);
	SBCTL_RUN(&P, "listen", "x", "--header", "a=1");
	CHECK_INT(P.code, 2);
	CHECK_STR(P.se, "sbctl: listen does not take --header (sbctl listen --help)\n");
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

/* A router that is down fails at once with the reason, even with a long
 * --connect-timeout (sbctl_finish() fails a run that takes 10 s); --wait
 * retries until the timeout instead. */
static void test_a_router_that_is_down_fails_at_once_with_the_reason(void)
{
	start();
	char router[32], want[160];

	snprintf(router, sizeof router, "127.0.0.1:%u", free_port());
	SBCTL_RUN(&P, "--router", router, "--connect-timeout", "60000", "request", "echo", "{}");
	CHECK_INT(P.code, 3);
	snprintf(want, sizeof want,
		 "sbctl: cannot connect to the router at %s: connection refused\n", router);
	CHECK_STR(P.se, want);

	SBCTL_RUN(&P, "--router", router, "--wait", "--connect-timeout", "300", "send", "echo");
	CHECK_INT(P.code, 3);
	snprintf(want, sizeof want,
		 "sbctl: cannot connect to the router at %s (no answer within 300 ms): connection "
		 "refused\n",
		 router);
	CHECK_STR(P.se, want);

	SBCTL_RUN(&P, "--router", "no-such-host.invalid:7400", "--connect-timeout", "60000",
		  "request", "echo");
	CHECK_INT(P.code, 3);
	CHECK(starts(P.se, "sbctl: cannot connect to the router at no-such-host.invalid:7400: no "
			   "such host: "));
	stop();
}

/* Waits until the sink got @p n sends; read sink_js under sink_lock after
 * (the service thread writes it on the next send, which the test causes
 * through another process: a path ThreadSanitizer cannot see). */
static void sink_wait(int n)
{
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += WAIT_MS / 1000;
	pthread_mutex_lock(&sink_lock);
	while (sink_count < n &&
	       pthread_cond_timedwait(&sink_cond, &sink_lock, &until) != ETIMEDOUT)
		;
	CHECK_INT(sink_count, n);
	pthread_mutex_unlock(&sink_lock);
}

/* A bare argument is JSON: 5 is the integer 5 (a user who meant the
 * string was told to quote it or use --str). */
static void test_a_bare_argument_is_json_and_str_makes_a_string(void)
{
	start();
	SBCTL_RUN(&P, "send", "sink", "5");
	CHECK_INT(P.code, 0);
	sink_wait(1);
	pthread_mutex_lock(&sink_lock);
	CHECK_STR(sink_js.data, "5");
	pthread_mutex_unlock(&sink_lock);
	SBCTL_RUN(&P, "send", "sink", "\"5\"");
	sink_wait(2);
	pthread_mutex_lock(&sink_lock);
	CHECK_STR(sink_js.data, "\"5\"");
	pthread_mutex_unlock(&sink_lock);
	SBCTL_RUN(&P, "send", "sink", "--str", "5");
	CHECK_INT(P.code, 0);
	sink_wait(3);
	pthread_mutex_lock(&sink_lock);
	CHECK_STR(sink_js.data, "\"5\"");
	pthread_mutex_unlock(&sink_lock);
	SBCTL_RUN(&P, "request", "echo", "--str", "{not json}");
	CHECK_INT(P.code, 0);
	CHECK_STR(P.so, "done  \"{not json}\"\n");

	SBCTL_RUN(&P, "send", "sink", "hello");
	CHECK_INT(P.code, 2);
	CHECK_STR(P.se, "sbctl: invalid JSON at byte 0: unexpected character 'h' (a string is "
			"JSON in quotes: '\"text\"', or use --str)\n");
	SBCTL_RUN(&P, "send", "sink", "--str");
	CHECK_INT(P.code, 2);
	CHECK_STR(P.se, "sbctl: --str needs a payload: a text, @FILE or @-\n");
	SBCTL_RUN(&P, "peers", "--str");
	CHECK_INT(P.code, 2);
	CHECK_STR(P.se, "sbctl: peers does not take --str (sbctl peers --help)\n");
	stop();
}

/* A payload over what one argument may hold (128 KiB on Linux), from a
 * file and from stdin, as JSON and as a string. */
static void test_a_large_payload_comes_from_a_file_or_stdin(void)
{
	enum { N = 200000 };
	char path[64], arg[80];
	char *text = malloc(N + 3);

	start();
	snprintf(path, sizeof path, "/tmp/sbctl-payload-%d.json", (int)getpid());
	snprintf(arg, sizeof arg, "@%s", path);
	text[0] = '"';
	for (int i = 1; i <= N; i++)
		text[i] = (char)('a' + i % 26);
	text[N + 1] = '"';
	text[N + 2] = 0;
	FILE *f = fopen(path, "w");
	CHECK(f != NULL && fwrite(text, 1, N + 2, f) == N + 2);
	fputc('\n', f); /* as an editor leaves it: JSON allows it */
	fclose(f);

	SBCTL_RUN(&P, "send", "sink", arg);
	CHECK_INT(P.code, 0);
	CHECK_STR(P.se, "");
	sink_wait(1);
	pthread_mutex_lock(&sink_lock);
	CHECK_INT(sink_js.len, N + 2);
	CHECK(sink_js.data != NULL && memcmp(sink_js.data, text, N + 2) == 0);
	pthread_mutex_unlock(&sink_lock);

	/* The same from stdin; with --str the bytes as they are, quotes and
	 * newline included. */
	SBCTL_STDIN = path;
	SBCTL_RUN(&P, "send", "sink", "@-");
	CHECK_INT(P.code, 0);
	sink_wait(2);
	SBCTL_RUN(&P, "send", "sink", "--str", "@-");
	SBCTL_STDIN = NULL;
	CHECK_INT(P.code, 0);
	sink_wait(3);
	pthread_mutex_lock(&sink_lock);
	CHECK_INT(sink_js.len, N + 8); /* "\"...\"\n" printed as a JSON string */
	CHECK(sink_js.data != NULL && strncmp(sink_js.data, "\"\\\"bcd", 6) == 0);
	CHECK(strcmp(sink_js.data + sink_js.len - 5, "\\\"\\n\"") == 0);
	pthread_mutex_unlock(&sink_lock);

	unlink(path);
	SBCTL_RUN(&P, "send", "sink", arg);
	CHECK_INT(P.code, 2);
	char want[128];
	snprintf(want, sizeof want, "sbctl: %s: No such file or directory\n", arg);
	CHECK_STR(P.se, want);
	free(text);
	stop();
}

/* A named service on its own thread: "health" answers healthy or sick,
 * "notice" counts sends. */
struct agent {
	struct sb_client *c;
	pthread_t thread;
	_Atomic int sick; /* "health" answers an error: 1 EINTERNAL, 2 an application's */
	_Atomic int notices;
};

static void on_health(struct sb_call *call, void *ud)
{
	struct agent *a = ud;
	struct sb__json_buf mp = {0};

	if (!atomic_load(&a->sick)) {
		mp_of("{\"load\":1}", &mp);
		CHECK_INT(sb_reply(call, "healthy", mp.data, mp.len), 0);
	} else if (atomic_load(&a->sick) == 2) {
		mp_of("{\"free_mb\":0,\"disk\":\"/var\"}", &mp);
		CHECK_INT(sb_reply_app_error(call, "DISK_FULL", "disk full", mp.data, mp.len), 0);
	} else
		CHECK_INT(sb_reply_error(call, SB_EINTERNAL, "disk full", NULL, 0), 0);
	sb__json_buf_free(&mp);
}

static void on_notice(struct sb_call *call, void *ud)
{
	struct agent *a = ud;
	(void)call;
	atomic_fetch_add(&a->notices, 1);
}

static void *run_agent(void *arg)
{
	struct agent *a = arg;
	CHECK_INT(sb_client_run(a->c), 0);
	return NULL;
}

static void agent_start_as(struct agent *a, const char *name, enum sb_role role)
{
	struct sb_client_config cfg;
	int err = 0;

	sb_client_config_init(&cfg);
	cfg.port = PORT;
	cfg.role = role;
	cfg.name = name;
	atomic_init(&a->sick, 0);
	atomic_init(&a->notices, 0);
	a->c = sb_client_new(&cfg, &err);
	CHECK(a->c != NULL);
	CHECK_INT(sb_client_register(a->c, "health", NULL, on_health, a), 0);
	CHECK_INT(sb_client_register(a->c, "notice", NULL, on_notice, a), 0);
	until_online(a->c);
	CHECK_INT(pthread_create(&a->thread, NULL, run_agent, a), 0);
}

static void agent_start(struct agent *a, const char *name)
{
	agent_start_as(a, name, SB_ROLE_SERVICE);
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

/* An agent connected as a client registers names only `to` reaches: sbctl
 * pushes to it by name, and by the name alone finds no handler; --peers
 * asks every agent, with or without a handler. */
static void test_to_a_client_agent(void)
{
	start();
	struct agent c;
	agent_start_as(&c, "agent-c", SB_ROLE_CLIENT);

	SBCTL_RUN(&P, "request", "health", "--to", "agent-c");
	CHECK_INT(P.code, 0);
	CHECK_STR(P.so, "healthy  {\"load\":1}\n");
	SBCTL_RUN(&P, "send", "notice", "{}", "--to", "agent-c");
	CHECK_INT(P.code, 0);
	CHECK(notices_reach(&c, 1));
	SBCTL_RUN(&P, "request", "health");
	CHECK_INT(P.code, 1);
	CHECK_STR(P.se, "error: no handler for this name (code ENOHANDLER)\n");
	SBCTL_RUN(&P, "request", "reboot", "--to", "agent-c");
	CHECK_INT(P.code, 1);
	CHECK_STR(P.se, "error: peer agent-c has no handler for reboot (code ENOHANDLER)\n");

	/* Every agent, handler or not: one with none shows as `no handler`. */
	struct sb_client_config cfg;
	sb_client_config_init(&cfg);
	cfg.port = PORT;
	cfg.name = "agent-d";
	struct sb_client *bare = sb_client_new(&cfg, NULL);
	CHECK(bare != NULL);
	until_online(bare);
	SBCTL_RUN(&P, "request", "health", "--peers", "agent-*");
	CHECK_INT(P.code, 1); /* one peer failed */
	CHECK(strstr(P.so, "agent-c  healthy  {\"load\":1}\n") != NULL);
	CHECK(strstr(P.so, "agent-d  error: no handler for this name (code ENOHANDLER)\n") != NULL);
	CHECK(strstr(P.so, "\nall: 2 peers, 1 ok, 1 errors, 0 timeouts, 0 gone\n") != NULL);
	SBCTL_RUN(&P, "--json", "request", "health", "--peers", "@client");
	CHECK_INT(P.code, 1);
	CHECK(strstr(P.so, "{\"all\":{\"peers\":2,\"ok\":1,\"errors\":1,\"timeouts\":0,"
			   "\"gone\":0}}\n") != NULL);
	SBCTL_RUN(&P, "send", "notice", "--peers", "agent-*");
	CHECK_INT(P.code, 0);
	CHECK(notices_reach(&c, 2));
	SBCTL_RUN(&P, "request", "health", "--peers", "robot-*");
	CHECK_INT(P.code, 1);
	CHECK_STR(P.se, "error: no connected peer matches robot-* (code ENOPEERS)\n");
	SBCTL_RUN(&P, "request", "health", "--peers", "a*b");
	CHECK_INT(P.code, 2);
	CHECK_STR(P.se, "sbctl: --peers a*b: not a selector (@client, @service, or a peer name "
			"pattern with * only at its end)\n");
	SBCTL_RUN(&P, "request", "health", "--peers", "*", "--all");
	CHECK_INT(P.code, 2);
	CHECK_STR(P.se, "sbctl: --peers excludes --to and --all: peers, one peer, or handlers\n");
	sb_client_free(bare);
	agent_stop(&c);
	stop();
}

/* A handler's application error: its code, message and details, in words
 * on stderr and whole in --json, exit 1 as for any error; per peer in a
 * broadcast. */
static void test_application_error_exits_1(void)
{
	start();
	struct agent a;
	agent_start(&a, "agent-a");
	atomic_store(&a.sick, 2);

	SBCTL_RUN(&P, "request", "health");
	CHECK_INT(P.code, 1);
	CHECK_STR(P.so, "");
	CHECK_STR(P.se, "error: disk full (app code DISK_FULL)\n"
			"details: {\"free_mb\":0,\"disk\":\"/var\"}\n");
	SBCTL_RUN(&P, "--json", "request", "health");
	CHECK_INT(P.code, 1);
	CHECK_STR(P.so,
		  "{\"error\":\"EAPP\",\"code\":-19,\"text\":\"disk full\","
		  "\"app_code\":\"DISK_FULL\",\"details\":{\"free_mb\":0,\"disk\":\"/var\"}}\n");
	SBCTL_RUN(&P, "request", "health", "--all");
	CHECK_INT(P.code, 1);
	CHECK(strstr(P.so, "agent-a  error: disk full (app code DISK_FULL)  "
			   "{\"free_mb\":0,\"disk\":\"/var\"}\n") != NULL);
	SBCTL_RUN(&P, "--json", "request", "health", "--all");
	CHECK_INT(P.code, 1);
	CHECK(strstr(P.so, "{\"peer\":\"agent-a\",\"error\":\"EAPP\",\"code\":-19,\"text\":"
			   "\"disk full\",\"app_code\":\"DISK_FULL\",\"details\":{\"free_mb\":0,"
			   "\"disk\":\"/var\"}}\n") != NULL);
	agent_stop(&a);
	stop();
}

static void on_local_echo(struct sb_call *call, void *ud)
{
	size_t len;
	const void *p = sb_call_payload(call, &len);
	(void)ud;
	CHECK_INT(sb_reply(call, "done", p, len), 0);
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
	CHECK_INT(sb_router_handle(r, "echo", NULL, on_local_echo, NULL), 0);
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
			"EUNAUTHORIZED): the router asks for the secret of role client, and none "
			"is set\n");
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
		fprintf(stderr, "usage: %s PATH-TO-SBCTL\n", argv[0]);
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
	RUN(test_a_router_that_is_down_fails_at_once_with_the_reason);
	RUN(test_a_bare_argument_is_json_and_str_makes_a_string);
	RUN(test_a_large_payload_comes_from_a_file_or_stdin);
	RUN(test_to_and_all);
	RUN(test_to_a_client_agent);
	RUN(test_application_error_exits_1);
	RUN(test_secret_file_and_env);
	return TEST_EXIT();
}
