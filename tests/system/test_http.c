/* HTTP/JSON calls on the edge's port (docs/gateway.md), with curl as the
 * client we did not write: a call and its JSON both ways, a send, each
 * error's status and body, chunks beside the final reply, keep-alive with
 * many calls on one connection, the slow sender's deadline, and a client
 * that hangs up cancelling its call. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#include <switchboard/proto.h>
#include <switchboard/router.h>

#include "support/clock.h"
#include "support/peer.h"
#include "support/proc.h"
#include "support/router.h"
#include "support/testlib.h"

/* ---- curl ------------------------------------------------------------------ */

struct curl {
	pid_t pid;
	int out;
};

/* curl -s ARGS... with "\n<status> <new connections>" after each body. */
static struct curl curl_start(const char *const *args)
{
	const char *argv[64] = {
		"curl", "-s", "-S", "--max-time", "20", "-w", "\n%{http_code} %{num_connects}\n"};
	int n = 7, fds[2];
	struct curl c;

	for (int i = 0; args[i] != NULL && n < 62; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	if (pipe(fds) != 0)
		abort();
	c.pid = fork();
	if (c.pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		/* Nothing of ours stays open in it: a test peer's socket
		 * would outlive the peer's close. */
		for (int fd = 3; fd < 1024; fd++)
			close(fd);
		execv("/usr/bin/curl", (char *const *)argv);
		_exit(127);
	}
	close(fds[1]);
	c.out = fds[0];
	return c;
}

/* Everything curl printed (NUL-terminated), once it has exited. */
static void curl_end(struct curl c, char *out, size_t cap)
{
	size_t have = 0;
	uint64_t deadline = now_ms() + 30000;
	while (have < cap - 1 && now_ms() < deadline) {
		struct pollfd p = {.fd = c.out, .events = POLLIN};
		if (poll(&p, 1, 200) <= 0)
			continue;
		ssize_t got = read(c.out, out + have, cap - 1 - have);
		if (got <= 0)
			break;
		have += (size_t)got;
	}
	out[have] = '\0';
	close(c.out);
	int status;
	if (!wait_exit(c.pid, &status, 15000))
		reap(c.pid, SIGKILL);
}

/* One POST of @p body to @p path: the status; the body in @p out. */
static int post(const char *path, const char *body, char *out, size_t cap)
{
	char url[256];
	snprintf(url, sizeof url, "http://127.0.0.1:%u%s", sb_router_ws_port(R), path);
	const char *args[] = {"-X", "POST", "-H", "Content-Type: application/json", "--data-binary",
			      body, url,    NULL};
	curl_end(curl_start(args), out, cap);
	char *last = strrchr(out, '\n');
	while (last != NULL && last > out && last[-1] != '\n')
		last--;
	int status = 0;
	if (last != NULL && last > out) {
		sscanf(last, "%d", &status);
		last[-1] = '\0'; /* the body alone */
	}
	return status;
}

/* ---- in-process handlers ------------------------------------------------------- */

static atomic_int sends_seen;

static void echo(struct sb_call *call, void *ud)
{
	size_t len;
	const void *p = sb_call_payload(call, &len);
	(void)ud;
	if (!sb_call_is_request(call)) {
		atomic_fetch_add(&sends_seen, 1);
		return;
	}
	sb_reply(call, "ok", p, len);
}

/* Three chunks (0, 1, 2), a progress reply, then "done". */
static void chunks(struct sb_call *call, void *ud)
{
	(void)ud;
	for (uint8_t i = 0; i < 3; i++)
		sb_reply_more(call, SB_MORE_CHUNK, "chunk", &i, 1);
	sb_reply_more(call, SB_MORE_PROGRESS, "50%", NULL, 0);
	sb_reply(call, "done", "\xc3", 1);
}

static void chunk_then_fail(struct sb_call *call, void *ud)
{
	(void)ud;
	sb_reply_more(call, SB_MORE_CHUNK, "chunk", "\xa2ok", 3);
	sb_reply_error(call, SB_EOVERLOADED, "disk full", NULL, 0);
}

static void fails(struct sb_call *call, void *ud)
{
	(void)ud;
	sb_reply_error(call, SB_EFORBIDDEN, "not you", NULL, 0);
}

/* {"limit": 100} */
static void declines(struct sb_call *call, void *ud)
{
	(void)ud;
	sb_reply_app_error(call, "CARD_DECLINED", "the card was declined", "\x81\xa5limit\x64", 8);
}

static struct sb_router_config edge_config(void)
{
	struct sb_router_config cfg = router_config();
	cfg.ws_port = 0;
	return cfg;
}

static void start_with_handlers(struct sb_router_config *cfg)
{
	struct sb_router *r = router_new(cfg);
	CHECK(sb_router_handle(r, "echo", NULL, echo, NULL) == 0);
	CHECK(sb_router_handle(r, "chunks", NULL, chunks, NULL) == 0);
	CHECK(sb_router_handle(r, "fails", NULL, fails, NULL) == 0);
	CHECK(sb_router_handle(r, "declines", NULL, declines, NULL) == 0);
	CHECK(sb_router_handle(r, "chunk_then_fail", NULL, chunk_then_fail, NULL) == 0);
	router_start_with(r);
}

/* ---- stories ------------------------------------------------------------------- */

static void test_curl_calls_a_handler_and_reads_its_outcome_and_data(void)
{
	struct sb_router_config cfg = edge_config();
	start_with_handlers(&cfg);
	char out[8192];
	const char *args =
		"{\"big\":18446744073709551615,\"neg\":-9223372036854775808,"
		"\"f\":1.5,\"s\":\"h\\u00e9\",\"b\":{\"$bin\":\"00ff\"},\"a\":[null,true]}";
	CHECK_INT(post("/v1/call/echo", args, out, sizeof out), 200);
	char want[512];
	snprintf(want, sizeof want, "{\"outcome\":\"ok\",\"data\":%s}",
		 "{\"big\":18446744073709551615,\"neg\":-9223372036854775808,\"f\":1.5,"
		 "\"s\":\"h\xc3\xa9\",\"b\":{\"$bin\":\"00ff\"},\"a\":[null,true]}");
	CHECK_STR(out, want);
	/* No body: no arguments (nil). */
	CHECK_INT(post("/v1/call/echo", "", out, sizeof out), 200);
	CHECK_STR(out, "{\"outcome\":\"ok\",\"data\":null}");
	router_stop();
}

static void test_curl_sends_fire_and_forget_and_hears_202(void)
{
	struct sb_router_config cfg = edge_config();
	start_with_handlers(&cfg);
	char out[1024];
	atomic_store(&sends_seen, 0);
	CHECK_INT(post("/v1/send/echo", "{\"x\":1}", out, sizeof out), 202);
	uint64_t deadline = now_ms() + 10000;
	while (atomic_load(&sends_seen) == 0 && now_ms() < deadline)
		usleep(1000);
	CHECK_INT(atomic_load(&sends_seen), 1);
	router_stop();
}

static void test_a_stream_answers_with_its_chunks_beside_the_final_reply(void)
{
	struct sb_router_config cfg = edge_config();
	start_with_handlers(&cfg);
	char out[1024];
	CHECK_INT(post("/v1/call/chunks", "", out, sizeof out), 200);
	CHECK_STR(out, "{\"outcome\":\"done\",\"data\":true,\"chunks\":[0,1,2]}");
	router_stop();
}

/* A POST asking for Server-Sent Events: the status; the events in @p out. */
static int post_sse(const char *path, char *out, size_t cap)
{
	char url[256];
	snprintf(url, sizeof url, "http://127.0.0.1:%u%s", sb_router_ws_port(R), path);
	const char *args[] = {
		"-N", "-X", "POST", "-H", "Accept: text/event-stream", "--data-binary",
		"",   url,  NULL};
	curl_end(curl_start(args), out, cap);
	char *last = strrchr(out, '\n');
	while (last != NULL && last > out && last[-1] != '\n')
		last--;
	int status = 0;
	if (last != NULL && last > out) {
		sscanf(last, "%d", &status);
		last[-1] = '\0';
	}
	return status;
}

static void test_server_sent_events_carry_progress_chunks_and_the_reply(void)
{
	struct sb_router_config cfg = edge_config();
	start_with_handlers(&cfg);
	char out[4096];
	CHECK_INT(post_sse("/v1/call/chunks", out, sizeof out), 200);
	CHECK_STR(out, "event: chunk\ndata: 0\n\nevent: chunk\ndata: 1\n\n"
		       "event: chunk\ndata: 2\n\n"
		       "event: progress\ndata: {\"outcome\":\"50%\",\"data\":null}\n\n"
		       "event: reply\ndata: {\"outcome\":\"done\",\"data\":true}\n\n");
	/* An error once events began is the last event. */
	CHECK_INT(post_sse("/v1/call/chunk_then_fail", out, sizeof out), 200);
	CHECK_STR(out, "event: chunk\ndata: \"ok\"\n\n"
		       "event: error\ndata: {\"error\":\"overloaded\",\"code\":"
		       "\"SB_EOVERLOADED\",\"message\":\"disk full\"}\n\n");
	/* An error before any event is an ordinary answer, its status and all. */
	CHECK_INT(post_sse("/v1/call/fails", out, sizeof out), 403);
	router_stop();
}

static void test_each_error_is_answered_with_its_status_and_code(void)
{
	struct sb_router_config cfg = edge_config();
	cfg.max_frame = 4096;
	start_with_handlers(&cfg);
	char out[8192];

	CHECK_INT(post("/v1/call/nobody.home", "", out, sizeof out), 404);
	CHECK(strstr(out, "\"error\":\"no handler\",\"code\":\"SB_ENOHANDLER\"") != NULL);
	CHECK_INT(post("/v1/call/echo", "{\"unclosed\":", out, sizeof out), 400);
	CHECK(strstr(out, "\"code\":\"SB_EINVAL\"") != NULL);
	CHECK_INT(post("/v1/call/fails", "", out, sizeof out), 403);
	CHECK(strstr(out, "\"code\":\"SB_EFORBIDDEN\",\"message\":\"not you\"") != NULL);
	CHECK_INT(post("/v1/call/echo?timeout_ms=soon", "", out, sizeof out), 400);
	/* An application error: 422, its code and details beside the message. */
	CHECK_INT(post("/v1/call/declines", "", out, sizeof out), 422);
	CHECK_STR(out, "{\"error\":\"application error\",\"code\":\"SB_EAPP\",\"message\":"
		       "\"the card was declined\",\"app_code\":\"CARD_DECLINED\",\"details\":"
		       "{\"limit\":100}}");
	static char big[8000];
	memset(big, ' ', sizeof big - 3);
	big[0] = '[', big[sizeof big - 3] = ']';
	CHECK_INT(post("/v1/call/echo", big, out, sizeof out), 413);
	CHECK(strstr(out, "\"code\":\"SB_ETOOLARGE\"") != NULL);

	/* A handler that never answers: the call's timeout, 504. */
	struct peer *svc = peer_hello(PORT, "sleepy", "service");
	peer_register(svc, "sleep", 1);
	CHECK_INT(post("/v1/call/sleep?timeout_ms=200", "", out, sizeof out), 504);
	CHECK(strstr(out, "\"code\":\"SB_ETIMEOUT\"") != NULL);
	struct sb_msg *m = peer_expect(svc, SB_REQUEST);
	CHECK_INT(m->timeout_ms, 200);
	peer_expect(svc, SB_CANCEL); /* the handler hears the timeout */
	/* A handler that goes away with the call: 502. */
	char url[128];
	snprintf(url, sizeof url, "http://127.0.0.1:%u/v1/call/sleep", sb_router_ws_port(R));
	const char *args[] = {"-X", "POST", "--data-binary", "1", url, NULL};
	struct curl c = curl_start(args);
	m = peer_expect(svc, SB_REQUEST);
	CHECK(m->payload.len == 1 && m->payload.ptr[0] == 1);
	peer_close(svc);
	curl_end(c, out, sizeof out);
	CHECK(strstr(out, "\"code\":\"SB_EPEERGONE\"") != NULL);
	CHECK(strstr(out, "\n502 ") != NULL);
	router_stop();

	/* Full: 503 before anything is read. */
	cfg = edge_config();
	cfg.max_conns = 1;
	start_with_handlers(&cfg);
	struct peer *hog = peer_hello(PORT, "hog", "client");
	CHECK_INT(post("/v1/call/echo", "", out, sizeof out), 503);
	CHECK(strstr(out, "\"code\":\"SB_EOVERLOADED\"") != NULL);
	peer_close(hog);
	router_stop();
}

static void test_a_page_from_an_origin_not_allowed_cannot_call(void)
{
	struct sb_router_config cfg = edge_config();
	cfg.ws_allow_origin = "https://app.example.com";
	start_with_handlers(&cfg);
	char url[128], out[1024];
	snprintf(url, sizeof url, "http://127.0.0.1:%u/v1/send/echo", sb_router_ws_port(R));
	const char *evil[] = {"-X", "POST", "-H", "Origin: https://evil.example", "--data-binary",
			      "1",  url,    NULL};
	atomic_store(&sends_seen, 0);
	curl_end(curl_start(evil), out, sizeof out);
	CHECK(strstr(out, "\"code\":\"SB_EFORBIDDEN\",\"message\":\"origin not allowed\"") != NULL);
	CHECK(strstr(out, "\n403 ") != NULL);
	const char *good[] = {
		"-X", "POST", "-H", "Origin: https://app.example.com", "--data-binary",
		"1",  url,    NULL};
	curl_end(curl_start(good), out, sizeof out);
	CHECK(strstr(out, "\n202 ") != NULL);
	uint64_t deadline = now_ms() + 10000;
	while (atomic_load(&sends_seen) == 0 && now_ms() < deadline)
		usleep(1000);
	CHECK_INT(atomic_load(&sends_seen), 1); /* the good one only */
	router_stop();
}

static void test_a_timeout_in_the_url_reaches_the_handler(void)
{
	struct sb_router_config cfg = edge_config();
	router_start(&cfg);
	struct peer *svc = peer_hello(PORT, "svc", "service");
	peer_register(svc, "job", 1);
	char url[128], out[1024];
	snprintf(url, sizeof url, "http://127.0.0.1:%u/v1/call/job?timeout_ms=2500",
		 sb_router_ws_port(R));
	const char *args[] = {"-X", "POST", "--data-binary", "\"x\"", url, NULL};
	struct curl c = curl_start(args);
	struct sb_msg *m = peer_expect(svc, SB_REQUEST);
	CHECK_INT(m->timeout_ms, 2500);
	CHECK(m->payload.len == 2 && memcmp(m->payload.ptr, "\xa1x", 2) == 0);
	peer_reply(svc, m->id, "done", 0, "\x01", 1);
	curl_end(c, out, sizeof out);
	CHECK(strncmp(out, "{\"outcome\":\"done\",\"data\":1}\n200 1", 33) == 0);
	peer_close(svc);
	router_stop();
}

static void test_keep_alive_carries_many_calls_on_one_connection(void)
{
	struct sb_router_config cfg = edge_config();
	start_with_handlers(&cfg);
	char url[128];
	static char out[65536];
	snprintf(url, sizeof url, "http://127.0.0.1:%u/v1/call/echo", sb_router_ws_port(R));
	const char *args[40] = {"-X", "POST", "--data-binary", "[7]"};
	int n = 4;
	for (int i = 0; i < 30; i++)
		args[n++] = url;
	args[n] = NULL;
	curl_end(curl_start(args), out, sizeof out);
	int answers = 0, connects = 0;
	for (char *p = out; (p = strstr(p, "{\"outcome\":\"ok\",\"data\":[7]}\n200 ")) != NULL;
	     p++) {
		answers++;
		connects += atoi(p + 32);
	}
	CHECK_INT(answers, 30);
	CHECK_INT(connects, 1);
	router_stop();
}

static int dial(uint16_t port)
{
	struct peer *p = peer_dial(port);
	int fd = dup(p->fd);
	peer_close(p);
	return fd;
}

static void test_a_client_that_hangs_up_cancels_its_call(void)
{
	struct sb_router_config cfg = edge_config();
	router_start(&cfg);
	struct peer *svc = peer_hello(PORT, "svc", "service");
	peer_register(svc, "long.job", 1);
	int fd = dial(sb_router_ws_port(R));
	const char *req =
		"POST /v1/call/long.job HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}";
	CHECK(write(fd, req, strlen(req)) == (ssize_t)strlen(req));
	struct sb_msg *m = peer_expect(svc, SB_REQUEST);
	uint64_t id = m->id;
	close(fd);
	m = peer_expect(svc, SB_CANCEL);
	CHECK(m->id == id);
	peer_close(svc);
	router_stop();
}

static void test_closing_an_event_stream_cancels_its_call(void)
{
	struct sb_router_config cfg = edge_config();
	router_start(&cfg);
	struct peer *svc = peer_hello(PORT, "svc", "service");
	peer_register(svc, "feed", 1);
	int fd = dial(sb_router_ws_port(R));
	const char *req = "POST /v1/call/feed HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n"
			  "Content-Length: 0\r\n\r\n";
	CHECK(write(fd, req, strlen(req)) == (ssize_t)strlen(req));
	struct sb_msg *m = peer_expect(svc, SB_REQUEST);
	uint64_t id = m->id;
	peer_reply(svc, id, "tick", SB_F_MORE | SB_F_CHUNK, "\x01", 1);
	char buf[1024] = "";
	size_t have = 0;
	uint64_t deadline = now_ms() + 10000;
	while (strstr(buf, "data: 1\n\n") == NULL && have < sizeof buf - 1 && now_ms() < deadline) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 200) <= 0)
			continue;
		ssize_t got = read(fd, buf + have, sizeof buf - 1 - have);
		if (got <= 0)
			break;
		have += (size_t)got;
		buf[have] = '\0';
	}
	CHECK(strstr(buf, "Content-Type: text/event-stream\r\n") != NULL);
	CHECK(strstr(buf, "event: chunk\ndata: 1\n\n") != NULL);
	close(fd);
	m = peer_expect(svc, SB_CANCEL);
	CHECK(m->id == id);
	peer_close(svc);
	router_stop();
}

/* An HTTP client says nothing while its call is out: the idle PING, which
 * it could not answer, must not end a call that takes its time. */
static void test_a_long_call_outlives_the_idle_check(void)
{
	struct sb_router_config cfg = edge_config();
	cfg.idle_ms = 100;
	cfg.pong_timeout_ms = 100;
	router_start(&cfg);
	struct peer *svc = peer_hello(PORT, "svc", "service");
	peer_register(svc, "slow", 1);
	char url[128], out[1024];
	snprintf(url, sizeof url, "http://127.0.0.1:%u/v1/call/slow", sb_router_ws_port(R));
	const char *args[] = {"-X", "POST", url, NULL};
	struct curl c = curl_start(args);
	struct sb_msg *m = peer_expect(svc, SB_REQUEST);
	uint64_t id = m->id;
	/* Well past idle_ms + pong_timeout_ms, answering the router's PINGs. */
	uint64_t until = now_ms() + 1000;
	while (now_ms() < until)
		if (peer_recv_within(svc, 50) == 1 && svc->m.kind == SB_PING) {
			struct sb_msg pong = {.kind = SB_PONG, .id = svc->m.id};
			peer_send(svc, &pong);
		}
	peer_reply(svc, id, "finally", 0, NULL, 0);
	curl_end(c, out, sizeof out);
	CHECK(strncmp(out, "{\"outcome\":\"finally\",\"data\":null}\n200 ", 38) == 0);
	peer_close(svc);
	router_stop();
}

/* A client that asks first (Expect: 100-continue) is told to go on before
 * it sends its body, and refused without being told when it must be. */
static void test_a_client_that_expects_100_continue_is_told(void)
{
	struct sb_router_config cfg = edge_config();
	start_with_handlers(&cfg);
	int fd = dial(sb_router_ws_port(R));
	const char *head = "POST /v1/call/echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
			   "Content-Length: 3\r\n\r\n";
	CHECK(write(fd, head, strlen(head)) == (ssize_t)strlen(head));
	char buf[1024] = "";
	size_t have = 0;
	uint64_t deadline = now_ms() + 10000;
	while (strstr(buf, "\r\n\r\n") == NULL && now_ms() < deadline) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 200) <= 0)
			continue;
		ssize_t got = read(fd, buf + have, sizeof buf - 1 - have);
		if (got <= 0)
			break;
		have += (size_t)got;
		buf[have] = '\0';
	}
	CHECK_STR(buf, "HTTP/1.1 100 Continue\r\n\r\n");
	CHECK(write(fd, "[5]", 3) == 3);
	have = 0;
	buf[0] = '\0';
	while (strstr(buf, "}") == NULL && now_ms() < deadline) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 200) <= 0)
			continue;
		ssize_t got = read(fd, buf + have, sizeof buf - 1 - have);
		if (got <= 0)
			break;
		have += (size_t)got;
		buf[have] = '\0';
	}
	CHECK(strncmp(buf, "HTTP/1.1 200 ", 13) == 0);
	CHECK(strstr(buf, "{\"outcome\":\"ok\",\"data\":[5]}") != NULL);
	close(fd);
	router_stop();
}

static void test_a_slow_sender_is_cut_off_with_408(void)
{
	struct sb_router_config cfg = edge_config();
	cfg.hello_timeout_ms = 300;
	start_with_handlers(&cfg);
	int fd = dial(sb_router_ws_port(R));
	/* A head, then half of its body, then nothing. */
	const char *req = "POST /v1/call/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n[1,";
	CHECK(write(fd, req, strlen(req)) == (ssize_t)strlen(req));
	char buf[1024];
	size_t have = 0;
	uint64_t deadline = now_ms() + 10000;
	while (have < sizeof buf - 1 && now_ms() < deadline) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 200) <= 0)
			continue;
		ssize_t got = read(fd, buf + have, sizeof buf - 1 - have);
		if (got <= 0)
			break;
		have += (size_t)got;
	}
	buf[have] = '\0';
	CHECK(strncmp(buf, "HTTP/1.1 408 ", 13) == 0);
	CHECK(strstr(buf, "\"code\":\"SB_ETIMEOUT\"") != NULL);
	close(fd);
	router_stop();
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	watchdog("test_http", 240);
	RUN(test_curl_calls_a_handler_and_reads_its_outcome_and_data);
	RUN(test_curl_sends_fire_and_forget_and_hears_202);
	RUN(test_a_stream_answers_with_its_chunks_beside_the_final_reply);
	RUN(test_server_sent_events_carry_progress_chunks_and_the_reply);
	RUN(test_each_error_is_answered_with_its_status_and_code);
	RUN(test_a_page_from_an_origin_not_allowed_cannot_call);
	RUN(test_a_timeout_in_the_url_reaches_the_handler);
	RUN(test_keep_alive_carries_many_calls_on_one_connection);
	RUN(test_a_client_that_hangs_up_cancels_its_call);
	RUN(test_closing_an_event_stream_cancels_its_call);
	RUN(test_a_long_call_outlives_the_idle_check);
	RUN(test_a_client_that_expects_100_continue_is_told);
	RUN(test_a_slow_sender_is_cut_off_with_408);
	return TEST_EXIT();
}
