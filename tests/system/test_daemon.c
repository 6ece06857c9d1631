/* The switchboard daemon as a user runs it: start it on a free port, shake
 * hands, ping, send garbage, and check each connection gets the error the
 * protocol promises while the others keep working; SIGTERM stops it.
 * Its settings come from flags and a config file, reload on SIGHUP, and
 * --help names the flags docs/daemon.md lists. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <switchboard/proto.h>

#include "support/frames.h"
#include "support/testlib.h"

static const char *DAEMON;
static const char *DOCS; /* docs/daemon.md */
static pid_t daemon_pid;
static FILE *daemon_out;
static int port;

static int dial(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	CHECK(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
	return fd;
}

static void send_raw(int fd, const void *p, size_t n)
{
	CHECK(write(fd, p, n) == (ssize_t)n);
}

static void send_msg(int fd, const struct sb_msg *m)
{
	uint8_t buf[1024];
	long n = sb_encode(m, buf, sizeof buf);
	CHECK(n > 0);
	send_raw(fd, buf, (size_t)n);
}

/* Reads one frame within 5 s. Returns 1 with *m decoded (views into a
 * static buffer), 0 on orderly close, -1 on timeout or error. */
static int recv_msg(int fd, struct sb_msg *m)
{
	static uint8_t frame[8192];
	size_t have = 0, need = SB_PREFIX_LEN;
	struct pollfd p = {.fd = fd, .events = POLLIN};

	while (have < need) {
		if (poll(&p, 1, 5000) != 1)
			return -1;
		ssize_t n = read(fd, frame + have, need - have);
		if (n == 0)
			return 0;
		if (n < 0)
			return -1;
		have += (size_t)n;
		if (have == SB_PREFIX_LEN) {
			need += (size_t)frame[0] << 24 | (size_t)frame[1] << 16 |
				(size_t)frame[2] << 8 | frame[3];
			if (need > sizeof frame)
				return -1;
		}
	}
	return sb_decode(frame, have, SB_DECODE_PAYLOAD, m, NULL) == 0 ? 1 : -1;
}

static int text_is(struct sb_view v, const char *s)
{
	return v.len == strlen(s) && memcmp(v.ptr, s, v.len) == 0;
}

/* Says HELLO; the name in force goes to got (if not NULL). */
static int hello_as(const char *name, char *got)
{
	struct sb_msg m = {.kind = SB_HELLO, .version = SB_PROTO_VERSION, .role = sv("service")};
	int fd = dial();
	if (name != NULL)
		m.peer = sv(name);
	send_msg(fd, &m);
	CHECK_INT(recv_msg(fd, &m), 1);
	CHECK_INT(m.kind, SB_WELCOME);
	CHECK_INT(m.version, SB_PROTO_VERSION);
	CHECK_INT(m.max_frame, 4096);
	if (name != NULL)
		CHECK(text_is(m.peer, name));
	if (got != NULL && m.peer.len <= SB_PEER_MAX) {
		memcpy(got, m.peer.ptr, m.peer.len);
		got[m.peer.len] = 0;
	}
	return fd;
}

static int hello(const char *name)
{
	return hello_as(name, NULL);
}

static void ping(int fd, uint64_t id)
{
	struct sb_msg m = {.kind = SB_PING, .id = id};
	send_msg(fd, &m);
	CHECK_INT(recv_msg(fd, &m), 1);
	CHECK_INT(m.kind, SB_PONG);
	CHECK(m.id == id);
}

/* Expects an ERROR with the code; fatal ones are followed by a close. */
static void expect_error(int fd, int err, int fatal, const char *text)
{
	struct sb_msg m;
	CHECK_INT(recv_msg(fd, &m), 1);
	CHECK_INT(m.kind, SB_ERROR);
	CHECK_INT(m.code, -err);
	CHECK_INT(!!(m.flags & SB_F_FATAL), fatal);
	if (text != NULL && !text_is(m.text, text)) {
		fprintf(stderr, "  error text: %.*s\n", (int)m.text.len, (const char *)m.text.ptr);
		CHECK(0);
	}
	if (fatal)
		CHECK_INT(recv_msg(fd, &m), 0);
}

static int good;

/* Each test's daemon, as a user would start it, and one well-behaved
 * connection (good) that what other connections do must never disturb. */
static void daemon_up_with(const char *const *extra)
{
	int out[2];
	char line[256];
	const char *argv[16] = {DAEMON, "--port",         "0",   "--max-frame",
				"4096", "--name-pattern", "d-##"};
	int n = 7;

	for (int i = 0; extra != NULL && extra[i] != NULL && n < 15; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	CHECK(pipe(out) == 0);
	daemon_pid = fork();
	if (daemon_pid == 0) {
		dup2(out[1], STDOUT_FILENO);
		close(out[0]);
		execv(DAEMON, (char *const *)argv);
		_exit(127);
	}
	close(out[1]);
	daemon_out = fdopen(out[0], "r");
	CHECK(fgets(line, sizeof line, daemon_out) != NULL);
	const char *at = strstr(line, "listening on 127.0.0.1:");
	CHECK(at != NULL);
	port = at ? atoi(at + strlen("listening on 127.0.0.1:")) : 0;
	CHECK(port > 0);
	good = hello("billing-1");
}

static void daemon_up(void)
{
	daemon_up_with(NULL);
}

/* SIGTERM: the daemon says it stopped and exits 0. */
static void daemon_down(void)
{
	int status;
	char line[256];
	int saw_stopped = 0;

	close(good);
	kill(daemon_pid, SIGTERM);
	while (fgets(line, sizeof line, daemon_out) != NULL)
		saw_stopped |= strstr(line, "stopped") != NULL;
	CHECK(waitpid(daemon_pid, &status, 0) == daemon_pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(saw_stopped);
	fclose(daemon_out);
}

static void test_handshake_and_ping(void)
{
	daemon_up();
	ping(good, 5);
	ping(good, UINT64_MAX);
	char name[SB_PEER_MAX + 1] = "";
	int anon = hello_as(NULL, name); /* the router picks a name: --name-pattern d-## */
	CHECK_STR(name, "d-01");
	ping(anon, 1);
	close(anon);
	daemon_down();
}

static void test_request_without_handler(void)
{
	daemon_up();
	struct sb_msg m, r;
	sample_msg(SB_REQUEST, &m);
	m.id = 77;
	m.to.ptr = NULL; /* any handler of "transfer": there is none */
	send_msg(good, &m);
	CHECK_INT(recv_msg(good, &r), 1);
	CHECK_INT(r.kind, SB_ERROR);
	CHECK(r.id == 77);
	CHECK_INT(r.code, -SB_ENOHANDLER);
	CHECK_INT(r.flags, 0);

	/* To a named peer that never connected. */
	sample_msg(SB_REQUEST, &m);
	m.id = 78;
	send_msg(good, &m);
	CHECK_INT(recv_msg(good, &r), 1);
	CHECK(r.id == 78);
	CHECK_INT(r.code, -SB_EUNKNOWNPEER);
	CHECK(text_is(r.text, "no peer named bank-2 has connected"));
	ping(good, 6); /* still served */
	daemon_down();
}

static void test_frame_before_hello(void)
{
	daemon_up();
	int fd = dial();
	struct sb_msg m = {.kind = SB_PING, .id = 1};
	send_msg(fd, &m);
	expect_error(fd, SB_EBADFRAME, 1, "HELLO must come first");
	close(fd);
	daemon_down();
}

static void test_http_client_is_refused(void)
{
	daemon_up();
	int fd = hello("curious");
	send_raw(fd, "GET / HTTP/1.1\r\n\r\n", 18);
	expect_error(fd, SB_ETOOLARGE, 1, "frame too large (1195725856 bytes, limit 4096)");
	close(fd);
	ping(good, 7);
	daemon_down();
}

/* --ws-port: the same daemon answers HTTP there, on the port it prints. */
static void test_the_edge_port_answers_http(void)
{
	const char *extra[] = {"--ws-port", "0", "--ws-allow-origin", "https://app.example", NULL};
	daemon_up_with(extra);
	char line[256] = "";
	unsigned ws = 0;
	CHECK(fgets(line, sizeof line, daemon_out) != NULL);
	const char *at = strstr(line, "WebSocket and HTTP on 127.0.0.1:");
	CHECK(at != NULL);
	if (at != NULL)
		ws = (unsigned)atoi(at + strlen("WebSocket and HTTP on 127.0.0.1:"));
	CHECK(ws > 0 && ws != (unsigned)port);
	int saved = port;
	port = (int)ws;
	int fd = dial();
	port = saved;
	const char *req = "POST /v1/call/nobody HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
	send_raw(fd, req, strlen(req));
	char buf[1024] = "";
	size_t have = 0;
	while (have < sizeof buf - 1 && strstr(buf, "}") == NULL) {
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		if (poll(&pf, 1, 10000) <= 0)
			break;
		ssize_t got = read(fd, buf + have, sizeof buf - 1 - have);
		if (got <= 0)
			break;
		have += (size_t)got;
		buf[have] = '\0';
	}
	buf[have] = '\0';
	CHECK(strncmp(buf, "HTTP/1.1 404 Not Found\r\n", 24) == 0);
	CHECK(strstr(buf, "\"code\":\"SB_ENOHANDLER\"") != NULL);
	close(fd);
	ping(good, 9);
	daemon_down();
}

static void test_bad_field_names_the_field(void)
{
	daemon_up();
	uint8_t buf[256];
	struct sb_msg m;
	int fd = hello("sloppy");

	sample_msg(SB_SEND, &m);
	long n = sb_encode(&m, buf, sizeof buf);
	/* Turn "cache.flush" into "cache flush" after encoding. */
	uint8_t *name = memmem(buf, (size_t)n, "cache.flush", 11);
	CHECK(name != NULL);
	name[5] = ' ';
	send_raw(fd, buf, (size_t)n);
	expect_error(fd, SB_EBADFRAME, 1, "SEND field 3 (name): invalid characters");
	close(fd);
	ping(good, 8);
	daemon_down();
}

static void test_unknown_kind_keeps_connection(void)
{
	daemon_up();
	/* A newer peer's message kind: refused, but the connection lives. */
	static const uint8_t future[] = {0, 0, 0, 13, 0x94, 30, 0, 0xcf, 0,
					 0, 0, 0, 0,  0,    0,  9, 0xc0};
	send_raw(good, future, sizeof future);
	expect_error(good, SB_EUNSUPPORTED, 0, "unknown message kind 30");
	ping(good, 9);
	daemon_down();
}

static void test_byte_at_a_time(void)
{
	daemon_up();
	uint8_t buf[64];
	struct sb_msg m = {.kind = SB_PING, .id = 4242};
	long n = sb_encode(&m, buf, sizeof buf);
	for (long i = 0; i < n; i++)
		send_raw(good, buf + i, 1);
	CHECK_INT(recv_msg(good, &m), 1);
	CHECK_INT(m.kind, SB_PONG);
	CHECK(m.id == 4242);
	daemon_down();
}

static void test_oversize_frame(void)
{
	daemon_up();
	int fd = hello("big");
	uint8_t prefix[4] = {0, 0, 0x10, 0x01}; /* 4097 > --max-frame 4096 */
	send_raw(fd, prefix, 4);
	expect_error(fd, SB_ETOOLARGE, 1, "frame too large (4097 bytes, limit 4096)");
	close(fd);
	daemon_down();
}

/* ---- the config file ---------------------------------------------------- */

static char conf[64];

static void write_conf(const char *text)
{
	FILE *f = fopen(conf, "w");
	CHECK(f != NULL);
	if (f != NULL) {
		fputs(text, f);
		fclose(f);
	}
}

/* Runs the daemon with args; its stdout and stderr come back on pipes. */
static pid_t spawn(const char *const *args, int *out, int *err)
{
	const char *argv[12] = {DAEMON};
	int o[2], e[2];
	size_t n = 1;

	while (args[n - 1] != NULL && n < 11) {
		argv[n] = args[n - 1];
		n++;
	}
	argv[n] = NULL;
	CHECK(pipe(o) == 0 && pipe(e) == 0);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(o[1], STDOUT_FILENO);
		dup2(e[1], STDERR_FILENO);
		close(o[0]);
		close(e[0]);
		execv(DAEMON, (char *const *)argv);
		_exit(127);
	}
	close(o[1]);
	close(e[1]);
	*out = o[0];
	*err = e[0];
	return pid;
}

/* Reads fd up to a line holding want (5 s at most); the line in buf. */
static int line_with(int fd, const char *want, char *buf, size_t cap)
{
	size_t have = 0;
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		char ch;
		if (poll(&p, 1, 5000) != 1 || read(fd, &ch, 1) != 1)
			return -1;
		if (ch != '\n') {
			if (have + 1 < cap)
				buf[have++] = ch;
			continue;
		}
		buf[have] = 0;
		if (strstr(buf, want) != NULL)
			return 0;
		have = 0;
	}
}

/* Starts the daemon with args, and returns the max_frame its WELCOME gives. */
static long welcome_max_frame(const char *const *args, pid_t *pid, int *out, int *err)
{
	char line[256];
	struct sb_msg m = {.kind = SB_HELLO, .version = SB_PROTO_VERSION, .role = sv("client")};

	*pid = spawn(args, out, err);
	if (line_with(*out, "listening on 127.0.0.1:", line, sizeof line) != 0)
		return -1;
	int saved = port;
	port = atoi(strstr(line, "127.0.0.1:") + 10);
	int fd = dial();
	port = saved;
	send_msg(fd, &m);
	long mf = recv_msg(fd, &m) == 1 && m.kind == SB_WELCOME ? (long)m.max_frame : -1;
	close(fd);
	return mf;
}

static void stop_daemon(pid_t pid, int out, int err)
{
	int status = 0;
	kill(pid, SIGTERM);
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(out);
	close(err);
}

static void test_config_file(void)
{
	char line[512];
	pid_t pid;
	int out, err;

	snprintf(conf, sizeof conf, "/tmp/sb-daemon-XXXXXX");
	int fd = mkstemp(conf);
	CHECK(fd >= 0);
	close(fd);
	write_conf("# the daemon test's settings\n"
		   "port = 0\n"
		   "\n"
		   "max-frame = 2048   # trailing comment\n"
		   "  hello-timeout=3000\n"
		   "log-level = 1\n");

	/* The file's settings, then a flag on top of them. */
	const char *plain[] = {"--config", conf, NULL};
	CHECK_INT(welcome_max_frame(plain, &pid, &out, &err), 2048);
	/* SIGHUP: re-read; what needs a restart is said, not applied. */
	write_conf("port = 0\nmax-frame = 3000\nlog-level = 1\n");
	kill(pid, SIGHUP);
	CHECK_INT(line_with(out, "SIGHUP: settings reloaded from", line, sizeof line), 0);
	CHECK_INT(line_with(err,
			    "reload: max-frame changes only with a restart (still 2048, not "
			    "3000)",
			    line, sizeof line),
		  0);
	/* A broken file on SIGHUP changes nothing, and the daemon stays. */
	write_conf("port = 0\nmax-frame = lots\n");
	kill(pid, SIGHUP);
	CHECK_INT(line_with(out, ":2: max-frame = lots: expected a number from 13 to", line,
			    sizeof line),
		  0);
	CHECK(strstr(line, "the settings in force stay") != NULL);
	stop_daemon(pid, out, err);

	write_conf("port = 0\nmax-frame = 2048\n");
	const char *over[] = {"--config", conf, "--max-frame", "4000", NULL};
	CHECK_INT(welcome_max_frame(over, &pid, &out, &err), 4000);
	stop_daemon(pid, out, err);

	/* A bad file stops the daemon before it listens, naming the line. */
	struct {
		const char *text, *says;
	} bad[] = {
		{"port = 0\nmax-conn = 5\n", ":2: max-conn: not a setting"},
		{"port = 0\nmax-conns\n", ":2: max-conns: needs a value"},
		{"tls-verify-client = maybe\n",
		 ":1: tls-verify-client = maybe: expected yes or no"},
		{"config = other.conf\n", ":1: config: not a setting"},
		{"= 5\n", ":1: (no key) = 5: a value without a key"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int status = 0;
		write_conf(bad[i].text);
		pid = spawn(plain, &out, &err);
		CHECK_INT(line_with(err, bad[i].says, line, sizeof line), 0);
		CHECK(waitpid(pid, &status, 0) == pid);
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 2);
		close(out);
		close(err);
	}
	const char *missing[] = {"--config", "/nonexistent/sb.conf", NULL};
	pid = spawn(missing, &out, &err);
	CHECK_INT(line_with(err, "--config /nonexistent/sb.conf: No such file or directory", line,
			    sizeof line),
		  0);
	waitpid(pid, NULL, 0);
	close(out);
	close(err);
	unlink(conf);
}

static void test_sigterm_stops_cleanly(void)
{
	daemon_up();
	daemon_down();
}

/* Runs the daemon with one flag; returns its exit status, stderr in err. */
static int run_with(const char *path, const char *flag, const char *value, char *err, size_t cap)
{
	int pipefd[2], status = -1;
	CHECK(pipe(pipefd) == 0);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(pipefd[1], STDERR_FILENO);
		dup2(pipefd[1], STDOUT_FILENO);
		close(pipefd[0]);
		execl(path, path, "--port", "0", flag, value, (char *)NULL);
		_exit(127);
	}
	close(pipefd[1]);
	size_t n = 0;
	ssize_t r;
	while (n + 1 < cap && (r = read(pipefd[0], err + n, cap - 1 - n)) > 0)
		n += (size_t)r;
	err[n] = 0;
	close(pipefd[0]);
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_bad_name_pattern(void)
{
	const char *path = DAEMON;
	char out[1024];
	CHECK_INT(run_with(path, "--name-pattern", "agent", out, sizeof out), 2);
	CHECK(strstr(out, "--name-pattern agent: needs a run of #") != NULL);
	CHECK_INT(run_with(path, "--name-pattern", "a#b#", out, sizeof out), 2);
	CHECK(strstr(out, "--name-pattern a#b#: expected one run of #") != NULL);
}

/* The flags a line names at each "--": in --help, those that start a line;
 * in the docs' table, every one in backticks. Returns how many. */
static size_t flags_in(const char *text, const char *mark, char names[][48], size_t max)
{
	size_t n = 0;
	for (const char *p = text; (p = strstr(p, mark)) != NULL && n < max;) {
		p += strlen(mark);
		size_t len = strspn(p, "abcdefghijklmnopqrstuvwxyz-");
		if (len > 0 && len < 48)
			snprintf(names[n++], 48, "%.*s", (int)len, p);
		p += len;
	}
	return n;
}

static int listed(const char *name, char names[][48], size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return 1;
	return 0;
}

/* A user reading docs/daemon.md's table of flags finds exactly the flags
 * `switchboard --help` prints: one table in the daemon makes the flags and
 * the help, and this keeps the doc in step with it. */
static void test_help_and_docs_name_the_same_flags(void)
{
	static char help[16384], doc[65536], in_help[96][48], in_doc[96][48];
	char *argv[] = {(char *)DAEMON, "--help", NULL};
	int pipefd[2], status = -1;

	CHECK(pipe(pipefd) == 0);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(pipefd[1], STDOUT_FILENO);
		close(pipefd[0]);
		execv(DAEMON, argv);
		_exit(127);
	}
	close(pipefd[1]);
	size_t have = 0;
	ssize_t r;
	while (have + 1 < sizeof help &&
	       (r = read(pipefd[0], help + have, sizeof help - 1 - have)) > 0)
		have += (size_t)r;
	help[have] = 0;
	close(pipefd[0]);
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	FILE *f = fopen(DOCS, "r");
	CHECK(f != NULL);
	if (f == NULL)
		return;
	doc[fread(doc, 1, sizeof doc - 1, f)] = 0;
	fclose(f);
	/* Only the table under "## Settings": the rest of the page names
	 * flags in passing. */
	char *table = strstr(doc, "\n## Settings\n"), *end;
	CHECK(table != NULL);
	if (table == NULL)
		return;
	if ((end = strstr(table + 1, "\n## ")) != NULL)
		*end = 0;

	size_t nh = flags_in(help, "\n  --", in_help, 96);
	size_t nd = flags_in(table, "`--", in_doc, 96);
	CHECK(nh > 30); /* the parse found the flags at all */
	for (size_t i = 0; i < nh; i++)
		if (!listed(in_help[i], in_doc, nd)) {
			fprintf(stderr, "  --%s is in --help, not in docs/daemon.md's table\n",
				in_help[i]);
			CHECK(0);
		}
	for (size_t i = 0; i < nd; i++)
		if (!listed(in_doc[i], in_help, nh)) {
			fprintf(stderr, "  --%s is in docs/daemon.md's table, not in --help\n",
				in_doc[i]);
			CHECK(0);
		}
}

/* The security flags reach the router: with secret files a HELLO is
 * challenged, and a secret file that cannot be read stops the start with
 * a message naming it. */
static void test_secret_flags(void)
{
	char file[64], line[512], err_text[2048] = "";
	int out[2], err[2], status;

	snprintf(file, sizeof file, "/tmp/sb-test-daemon-secret-%d", (int)getpid());
	FILE *f = fopen(file, "w");
	CHECK(f != NULL);
	if (f == NULL)
		return;
	fputs("daemon-secret\n", f);
	fclose(f);
	for (int round = 0; round < 2; round++) {
		const char *secret = round == 0 ? file : "/nonexistent/secret";
		CHECK(pipe(out) == 0 && pipe(err) == 0);
		pid_t pid = fork();
		if (pid == 0) {
			dup2(out[1], STDOUT_FILENO);
			dup2(err[1], STDERR_FILENO);
			close(out[0]);
			close(err[0]);
			execl(DAEMON, DAEMON, "--port", "0", "--secret-file-service", secret,
			      "--secret-file-client", secret, "--allow-call-client", "x.*",
			      "--idle-timeout", "1000", "--max-conns-per-addr", "10", (char *)NULL);
			_exit(127);
		}
		close(out[1]);
		close(err[1]);
		FILE *o = fdopen(out[0], "r"), *e = fdopen(err[0], "r");
		if (round == 0) {
			CHECK(fgets(line, sizeof line, o) != NULL);
			const char *at = strstr(line, "listening on 127.0.0.1:");
			int saved = port;
			port = at ? atoi(at + strlen("listening on 127.0.0.1:")) : 0;
			int fd = dial();
			struct sb_msg m = {.kind = SB_HELLO,
					   .version = SB_PROTO_VERSION,
					   .role = sv("client")};
			send_msg(fd, &m);
			CHECK_INT(recv_msg(fd, &m), 1);
			CHECK_INT(m.kind, SB_CHALLENGE);
			CHECK(text_is(m.mech, "hmac-sha256"));
			close(fd);
			port = saved;
			kill(pid, SIGTERM);
		}
		size_t n = fread(err_text, 1, sizeof err_text - 1, e);
		err_text[n] = 0;
		while (fgets(line, sizeof line, o) != NULL)
			;
		CHECK(waitpid(pid, &status, 0) == pid);
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == round);
		if (round == 1 &&
		    strstr(err_text, "secret_service_file /nonexistent/secret: No such file or "
				     "directory") == NULL) {
			fprintf(stderr, "  daemon said: %s\n", err_text);
			CHECK(0);
		}
		fclose(o);
		fclose(e);
	}
	unlink(file);
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: test_daemon PATH-TO-SWITCHBOARD PATH-TO-DOCS/DAEMON.MD\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	DAEMON = argv[1];
	DOCS = argv[2];
	RUN(test_handshake_and_ping);
	RUN(test_request_without_handler);
	RUN(test_frame_before_hello);
	RUN(test_http_client_is_refused);
	RUN(test_the_edge_port_answers_http);
	RUN(test_bad_field_names_the_field);
	RUN(test_unknown_kind_keeps_connection);
	RUN(test_byte_at_a_time);
	RUN(test_oversize_frame);
	RUN(test_config_file);
	RUN(test_secret_flags);
	RUN(test_sigterm_stops_cleanly);
	RUN(test_bad_name_pattern);
	RUN(test_help_and_docs_name_the_same_flags);
	return TEST_EXIT();
}
