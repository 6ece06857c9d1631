/* GET /metrics on the admin listener (docs/operations.md), read the way
 * Prometheus reads it: scraped over a real socket and parsed by Debian's
 * python3-prometheus-client (tests/system/prom_dump.py), a parser we did
 * not write, which also checks every family's HELP and TYPE and each
 * histogram's shape. Traffic from raw-frame peers must move the numbers by
 * exactly what was sent; odd route names must come through the label
 * escaping intact. */
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#include <switchboard/router.h>

#include "support/clock.h"
#include "support/http.h"
#include "support/peer.h"
#include "support/proc.h"
#include "support/router.h"
#include "support/testlib.h"

static const char *dump_script; /* prom_dump.py: set by main() */

/* One scrape, parsed: prom_dump.py's lines (malloc'd), or NULL if the scrape
 * or the parse failed (said on stderr). */
static char *scrape(void)
{
	struct http_answer a;
	char path[] = "/tmp/sb-metrics-XXXXXX";
	int fds[2];

	http_get(sb_router_admin_port(R), "/metrics", &a);
	CHECK_INT(a.status, 200);
	int in = mkstemp(path);
	if (a.status != 200 || in < 0 || write(in, a.body, a.body_len) != (ssize_t)a.body_len ||
	    lseek(in, 0, SEEK_SET) != 0 || pipe(fds) != 0) {
		http_answer_free(&a);
		if (in >= 0)
			close(in);
		unlink(path);
		return NULL;
	}
	http_answer_free(&a);
	unlink(path);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(in, 0);
		dup2(fds[1], 1);
		for (int fd = 3; fd < 1024; fd++)
			close(fd);
		execl("/usr/bin/python3", "python3", dump_script, (char *)NULL);
		_exit(127);
	}
	close(in);
	close(fds[1]);
	size_t have = 0, cap = 1 << 16;
	char *out = malloc(cap);
	for (ssize_t got; out != NULL; have += (size_t)got) {
		if (have + 1 >= cap && (out = realloc(out, cap *= 2)) == NULL)
			break;
		if ((got = read(fds[0], out + have, cap - have - 1)) <= 0)
			break;
	}
	close(fds[0]);
	int status = 0;
	if (!wait_exit(pid, &status, 30000))
		reap(pid, SIGKILL);
	if (out == NULL || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "prom_dump.py failed (status %d)\n", status);
		sb_test_failures++;
		free(out);
		return NULL;
	}
	out[have] = '\0';
	return out;
}

/* name=HEX(value) of one label, appended to @p buf (prom_dump.py's form). */
static void label(char *buf, size_t cap, const char *name, const char *value)
{
	size_t n = strlen(buf);
	n += (size_t)snprintf(buf + n, cap - n, "%s%s=", n > 0 ? "," : "", name);
	for (const unsigned char *p = (const unsigned char *)value; *p != 0 && n + 3 < cap; p++)
		n += (size_t)snprintf(buf + n, cap - n, "%02x", *p);
}

/* The sample's value, or -1 when the scrape has no such sample. */
static double sample(const char *dump, const char *name, const char *labels)
{
	char want[1024];
	snprintf(want, sizeof want, "\nsample %s %s ", name, labels[0] ? labels : "-");
	const char *at = dump != NULL ? strstr(dump, want) : NULL;
	return at != NULL ? strtod(at + strlen(want), NULL) : -1;
}

static double route_sample(const char *dump, const char *name, const char *route)
{
	char l[600] = "";
	label(l, sizeof l, "route", route);
	return sample(dump, name, l);
}

/* The sum over shards of a per-shard family. */
static double shards_sum(const char *dump, const char *name)
{
	double sum = 0;
	for (unsigned i = 0; i < sb_router_shards(R); i++) {
		char l[64] = "", id[8];
		snprintf(id, sizeof id, "%u", i);
		label(l, sizeof l, "shard", id);
		double v = sample(dump, name, l);
		CHECK(v >= 0);
		sum += v;
	}
	return sum;
}

/* Scrapes until @p name of @p route reads @p want (counts land as the
 * shards finish each request), 10 s at most: the last scrape. */
static char *scrape_until(const char *name, const char *route, double want)
{
	uint64_t deadline = now_ms() + 10000;
	for (;;) {
		char *d = scrape();
		if (d == NULL || route_sample(d, name, route) == want || now_ms() > deadline)
			return d;
		free(d);
		usleep(20000);
	}
}

static struct sb_router_config metrics_config(void)
{
	struct sb_router_config cfg = router_config();
	cfg.admin_port = 0;
	return cfg;
}

/* Every family an operator's dashboards are written against, by the name
 * the parser gives it (a counter's without _total) and its type. */
static void test_every_documented_family_parses_with_its_help_and_type(void)
{
	static const char *const families[] = {
		"switchboard_shards gauge",
		"switchboard_connections gauge",
		"switchboard_inflight gauge",
		"switchboard_frames_in counter",
		"switchboard_requests counter",
		"switchboard_replies counter",
		"switchboard_timeouts counter",
		"switchboard_late_replies counter",
		"switchboard_no_handler counter",
		"switchboard_slow_consumers counter",
		"switchboard_pauses counter",
		"switchboard_queued_peak_bytes gauge",
		"switchboard_recv_starved counter",
		"switchboard_mail_deferred counter",
		"switchboard_mail_backlog_peak gauge",
		"switchboard_refused counter",
		"switchboard_hello_timeouts counter",
		"switchboard_invalid_args counter",
		"switchboard_auth_failures counter",
		"switchboard_auth_blocked counter",
		"switchboard_forbidden counter",
		"switchboard_addr_refused counter",
		"switchboard_inflight_refused counter",
		"switchboard_register_refused counter",
		"switchboard_idle_pings counter",
		"switchboard_idle_timeouts counter",
		"switchboard_accept_errors counter",
		"switchboard_to_unhandled counter",
		"switchboard_moves counter",
		"switchboard_cluster_msgs counter",
		"switchboard_cluster_frames counter",
		"switchboard_cluster_batches counter",
		"switchboard_route_requests counter",
		"switchboard_route_sends counter",
		"switchboard_route_replies counter",
		"switchboard_route_errors counter",
		"switchboard_route_timeouts counter",
		"switchboard_route_latency_seconds histogram",
	};
	struct sb_router_config cfg = metrics_config();
	router_start(&cfg);
	struct peer *svc = peer_hello(PORT, "fam-svc", "service");
	peer_register(svc, "fam.work", 1); /* a route, so the route families have samples */
	char *d = scrape();
	CHECK(d != NULL);
	size_t listed = 0;
	for (const char *p = d; p != NULL && (p = strstr(p, "family ")) != NULL; p++)
		listed += p == d || p[-1] == '\n';
	CHECK_INT(listed, sizeof families / sizeof families[0]);
	for (size_t i = 0; d != NULL && i < sizeof families / sizeof families[0]; i++) {
		char line[128];
		snprintf(line, sizeof line, "family %s\n", families[i]);
		if (strstr(d, line) == NULL) {
			fprintf(stderr, "missing: %s", line);
			sb_test_failures++;
		}
	}
	CHECK_INT(sample(d, "switchboard_shards", ""), sb_router_shards(R));
	/* The service and this scrape are open connections. */
	CHECK(shards_sum(d, "switchboard_connections") >= 2);
	free(d);
	peer_close(svc);
	router_stop();
}

/* N requests to a route (20 replied, 3 failed) and 5 sends move its counters
 * by exactly that, and its histogram counts every answered request. */
static void test_a_routes_counters_and_latency_histogram_move_by_the_traffic_sent_to_it(void)
{
	struct sb_router_config cfg = metrics_config();
	router_start(&cfg);
	struct peer *svc = peer_hello(PORT, "m-svc", "service");
	struct peer *cli[2] = {peer_hello(PORT, "m-cli-0", "client"),
			       peer_hello(PORT, "m-cli-1", "client")};
	peer_register(svc, "user.create", 1);
	char *before = scrape();
	CHECK_INT(route_sample(before, "switchboard_route_requests_total", "user.create"), 0);
	CHECK_INT(route_sample(before, "switchboard_route_latency_seconds_count", "user.create"),
		  0);
	double shard_requests = shards_sum(before, "switchboard_requests_total");

	enum { N = 23, FAILED = 3, SENDS = 5 };
	for (uint64_t id = 1; id <= N; id++)
		peer_request(cli[id % 2], "user.create", id, 0, NULL, 0);
	for (int i = 0; i < N; i++) {
		struct sb_msg *q = peer_expect(svc, SB_REQUEST);
		if (i < N - FAILED)
			peer_reply(svc, q->id, "created", 0, NULL, 0);
		else {
			struct sb_msg e = {.kind = SB_ERROR,
					   .id = q->id,
					   .code = (uint32_t)-SB_EFORBIDDEN,
					   .text = v_str("no")};
			peer_send(svc, &e);
		}
	}
	int replies = 0, errors = 0;
	for (int i = 0; i < N; i++) {
		struct peer *c = cli[(i + 1) % 2];
		if (peer_recv_within(c, 5000) != 1) {
			CHECK(0);
			break;
		}
		replies += c->m.kind == SB_REPLY;
		errors += c->m.kind == SB_ERROR;
	}
	CHECK_INT(replies, N - FAILED);
	CHECK_INT(errors, FAILED);
	for (int i = 0; i < SENDS; i++) {
		struct sb_msg snd = {.kind = SB_SEND, .name = v_str("user.create")};
		peer_send(cli[0], &snd);
	}
	for (int i = 0; i < SENDS; i++)
		peer_expect(svc, SB_SEND);

	char *after = scrape_until("switchboard_route_latency_seconds_count", "user.create", N);
	CHECK_INT(route_sample(after, "switchboard_route_requests_total", "user.create"), N);
	CHECK_INT(route_sample(after, "switchboard_route_replies_total", "user.create"),
		  N - FAILED);
	CHECK_INT(route_sample(after, "switchboard_route_errors_total", "user.create"), FAILED);
	CHECK_INT(route_sample(after, "switchboard_route_timeouts_total", "user.create"), 0);
	CHECK_INT(route_sample(after, "switchboard_route_sends_total", "user.create"), SENDS);
	CHECK_INT(route_sample(after, "switchboard_route_latency_seconds_count", "user.create"), N);
	char l[600] = "";
	label(l, sizeof l, "le", "+Inf");
	label(l, sizeof l, "route", "user.create");
	CHECK_INT(sample(after, "switchboard_route_latency_seconds_bucket", l), N);
	/* A loaded machine takes microseconds at least, and not an hour. */
	double sum = route_sample(after, "switchboard_route_latency_seconds_sum", "user.create");
	CHECK(sum > 0 && sum < 3600.0 * N);
	CHECK_INT(shards_sum(after, "switchboard_requests_total") - shard_requests, N);
	free(before);
	free(after);

	/* One request left unanswered ends by its timeout: counted, not timed. */
	struct peer *slow = peer_hello(PORT, "m-slow", "service");
	peer_register(slow, "slow.op", 2);
	before = scrape();
	double timeouts = shards_sum(before, "switchboard_timeouts_total");
	peer_request(cli[0], "slow.op", 99, 50, NULL, 0);
	struct sb_msg *e = peer_expect(cli[0], SB_ERROR);
	CHECK(e->code == (uint32_t)-SB_ETIMEOUT);
	after = scrape_until("switchboard_route_timeouts_total", "slow.op", 1);
	CHECK_INT(route_sample(after, "switchboard_route_timeouts_total", "slow.op"), 1);
	CHECK_INT(route_sample(after, "switchboard_route_latency_seconds_count", "slow.op"), 0);
	CHECK_INT(shards_sum(after, "switchboard_timeouts_total") - timeouts, 1);
	free(before);
	free(after);
	peer_close(slow);
	peer_close(cli[0]);
	peer_close(cli[1]);
	peer_close(svc);
	router_stop();
}

/* Names may hold quotes, backslashes, braces, commas and UTF-8: each is
 * its own series, its label read back byte for byte. */
static void test_route_names_with_quotes_and_backslashes_survive_the_parser(void)
{
	static const char *const names[] = {
		"a\"b\\c",        "q{le=\"1\"},x=y", "\\\\", "caf\xc3\xa9.\xc3\xa9t\xc3\xa9",
		"#not.a.comment",
	};
	enum { NN = sizeof names / sizeof names[0] };
	struct sb_router_config cfg = metrics_config();
	router_start(&cfg);
	struct peer *svc = peer_hello(PORT, "odd-svc", "service");
	struct peer *cli = peer_hello(PORT, "odd-cli", "client");
	for (int i = 0; i < NN; i++)
		peer_register(svc, names[i], (uint64_t)i + 1);
	for (int i = 0; i < NN; i++) /* i + 1 requests to names[i] */
		for (int k = 0; k <= i; k++)
			peer_request(cli, names[i], (uint64_t)(100 * i + k + 1), 0, NULL, 0);
	for (int i = 0; i < NN * (NN + 1) / 2; i++) {
		struct sb_msg *q = peer_expect(svc, SB_REQUEST);
		peer_reply(svc, q->id, "ok", 0, NULL, 0);
	}
	for (int i = 0; i < NN * (NN + 1) / 2; i++)
		peer_expect(cli, SB_REPLY);
	char *d = scrape_until("switchboard_route_latency_seconds_count", names[NN - 1], NN);
	for (int i = 0; i < NN; i++) {
		CHECK_INT(route_sample(d, "switchboard_route_requests_total", names[i]), i + 1);
		CHECK_INT(route_sample(d, "switchboard_route_latency_seconds_count", names[i]),
			  i + 1);
	}
	free(d);
	peer_close(svc);
	peer_close(cli);
	router_stop();
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s PROM_DUMP_PY\n", argv[0]);
		return 2;
	}
	dump_script = argv[1];
	signal(SIGPIPE, SIG_IGN);
	watchdog("test_metrics", 240);
	RUN(test_every_documented_family_parses_with_its_help_and_type);
	RUN(test_a_routes_counters_and_latency_histogram_move_by_the_traffic_sent_to_it);
	RUN(test_route_names_with_quotes_and_backslashes_survive_the_parser);
	return TEST_EXIT();
}
