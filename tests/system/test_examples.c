/* The examples as a user runs them: a daemon on a free port, each example's
 * service started against it, its client run, and the client's output
 * checked line for line. Every wait is bounded; children are killed at the
 * end, and an alarm kills them all if anything hangs. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "support/clock.h"
#include "support/testlib.h"

static const char *bindir;
static const char *daemon_bin;
static char port[16];
static pid_t children[64]; /* every process started, to kill at the end */
static int nchildren;

static void kill_all(void)
{
	for (int i = 0; i < nchildren; i++)
		if (children[i] > 0)
			kill(children[i], SIGKILL);
}

static void on_alarm(int sig)
{
	(void)sig;
	kill_all();
	static const char msg[] = "test_examples: timed out, children killed\n";
	(void)!write(STDERR_FILENO, msg, sizeof msg - 1);
	_exit(1);
}

/* Starts bindir/prog (or an absolute path) with its stdout on a pipe. */
static pid_t spawn(char *const argv[], int *out)
{
	int p[2];
	char path[1024];
	if (strchr(argv[0], '/') != NULL)
		snprintf(path, sizeof path, "%s", argv[0]);
	else
		snprintf(path, sizeof path, "%s/%s", bindir, argv[0]);
	if (pipe(p) != 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		/* Dies with the test: a crashed test must not leave children
		 * holding ctest's output open, which would hang ctest. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(p[1], STDOUT_FILENO);
		close(p[0]);
		close(p[1]);
		execv(path, argv);
		_exit(127);
	}
	close(p[1]);
	*out = p[0];
	if (pid > 0 && nchildren < (int)(sizeof children / sizeof *children))
		children[nchildren++] = pid;
	return pid;
}

/* Reads until EOF or a full line (if @p one_line), within @p ms. Returns the
 * bytes read, or -1 on timeout. */
static long read_out(int fd, char *buf, size_t cap, int one_line, int ms)
{
	size_t have = 0;
	uint64_t end = now_ms() + (uint64_t)ms;
	while (have + 1 < cap) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		long long left = (long long)end - (long long)now_ms();
		if (left <= 0 || poll(&p, 1, (int)left) != 1)
			return -1;
		ssize_t n = read(fd, buf + have, one_line ? 1 : cap - 1 - have);
		if (n <= 0)
			break;
		have += (size_t)n;
		if (one_line && buf[have - 1] == '\n')
			break;
	}
	buf[have] = '\0';
	return (long)have;
}

/* Waits up to @p ms for @p pid; SIGKILL after that. Returns the exit code or -1. */
static int reap(pid_t pid, int ms)
{
	int status, timed_out = 0;
	uint64_t end = now_ms() + (uint64_t)ms;
	while (waitpid(pid, &status, WNOHANG) == 0) {
		if (now_ms() > end) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			timed_out = 1;
			break;
		}
		usleep(10000);
	}
	for (int i = 0; i < nchildren; i++)
		if (children[i] == pid)
			children[i] = 0; /* reaped: its pid may be reused, never signal it */
	return !timed_out && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Each test's daemon on a free port; the services a test starts stop with
 * it, so the next test starts from nothing. */
static pid_t daemon_pid;
static int first_service; /* children[] index of the test's first service */

static void daemon_up(void)
{
	char *dargv[] = {(char *)daemon_bin, "--port", "0", NULL};
	char line[256];
	int out;

	daemon_pid = spawn(dargv, &out);
	first_service = nchildren;
	CHECK(daemon_pid > 0);
	CHECK(read_out(out, line, sizeof line, 1, 10000) > 0);
	const char *at = strstr(line, "listening on 127.0.0.1:");
	CHECK(at != NULL);
	snprintf(port, sizeof port, "%d", at ? atoi(at + strlen("listening on 127.0.0.1:")) : 0);
}

/* Services first (SIGTERM: they stop cleanly), then the daemon. */
static void daemon_down(void)
{
	for (int i = nchildren - 1; i >= first_service; i--) {
		if (children[i] <= 0)
			continue;
		kill(children[i], SIGTERM);
		CHECK_INT(reap(children[i], 5000), 0);
	}
	kill(daemon_pid, SIGTERM);
	reap(daemon_pid, 5000);
	nchildren = first_service - 1;
}

/* Starts a service and waits for its ready line. */
static pid_t service(const char *prog, const char *mode, const char *ready)
{
	char *argv[] = {(char *)prog, (char *)mode, "--port", port, NULL};
	char line[256];
	int out;
	pid_t pid = spawn(argv, &out);
	CHECK(pid > 0);
	CHECK(read_out(out, line, sizeof line, 1, 10000) > 0);
	CHECK_STR(line, ready);
	/* out stays open: a service that prints more must not get SIGPIPE. */
	return pid;
}

/* Runs a client to its end and checks its whole output and exit code. */
static void run(const char *expect, int code, const char *prog, const char *mode, ...)
{
	char *argv[16] = {(char *)prog, (char *)mode, "--port", port};
	char out_buf[4096];
	int argc = 4, out;
	va_list ap;
	va_start(ap, mode);
	while ((argv[argc] = va_arg(ap, char *)) != NULL && argc < 14)
		argc++;
	va_end(ap);
	pid_t pid = spawn(argv, &out);
	CHECK(read_out(out, out_buf, sizeof out_buf, 0, 10000) >= 0);
	close(out);
	CHECK_INT(reap(pid, 10000), code);
	CHECK_STR(out_buf, expect);
}

static void test_user(void)
{
	daemon_up();
	service("example_user", "serve", "serving user.create\n");
	run("user.created: id=1 email=ada@example.com name=Ada Lovelace\n", 0, "example_user",
	    "call", "ada@example.com", "Ada Lovelace", NULL);
	run("user.created: id=2 email=alan@example.com name=Alan\n", 0, "example_user", "call",
	    "alan@example.com", "Alan", NULL);
	run("error EINVAL: email must contain '@'\n", 1, "example_user", "call", "nobody", "X",
	    NULL);
	daemon_down();
}

/* One call per outcome, in an order that walks alice into her limits. */
static void test_transfer(void)
{
	daemon_up();
	static const char *const cases[][5] = {
		{"alice", "bob", "100", NULL, "transferred, balance 900"},
		{"alice", "bob", "300", NULL, "pending, balance 600"},
		{"alice", "bob", "600", NULL, "transaction limit exceeded"},
		{"alice", "bob", "450", NULL, "daily limit exceeded"},
		{"bob", "alice", "250", NULL, "insufficient funds"},
		{"alice", "zed", "10", NULL, "unknown account"},
		{"alice", "bob", "10", "stolen-token", "unauthorized"},
		{"alice", "legacy", "10", NULL,
		 "error EINTERNAL (internal error: ledger storage offline)"},
	};
	char expect[256];

	service("example_transfer", "serve", "serving transfer\n");
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		snprintf(expect, sizeof expect, "transfer %s -> %s %s: %s\n", cases[i][0],
			 cases[i][1], cases[i][2], cases[i][4]);
		run(expect, strncmp(cases[i][4], "error", 5) == 0, "example_transfer", "call",
		    cases[i][0], cases[i][1], cases[i][2], cases[i][3], NULL);
	}
	daemon_down();
}

/* Writes @p size pseudo-random bytes to @p path. */
static void make_file(const char *path, size_t size)
{
	FILE *f = fopen(path, "wb");
	CHECK(f != NULL);
	uint32_t x = 2463534242u;
	for (size_t i = 0; f && i < size; i++) {
		x ^= x << 13, x ^= x >> 17, x ^= x << 5;
		fputc((int)(x & 0xff), f);
	}
	if (f)
		fclose(f);
}

static int same_file(const char *a, const char *b)
{
	char cmd[2200];
	snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", a, b);
	return system(cmd) == 0;
}

static char in_path[1024], out_path[1024];

static void test_file_copy(void)
{
	daemon_up();
	service("example_file_copy", "serve", "serving file.copy\n");
	run("file.copying 25%\nfile.copying 50%\nfile.copying 75%\nfile.copying 100%\n"
	    "file.copied 300001 bytes\n",
	    0, "example_file_copy", "call", in_path, out_path, NULL);
	CHECK(same_file(in_path, out_path));
	run("error EINVAL: /nonexistent/x: No such file or directory\n", 1, "example_file_copy",
	    "call", "/nonexistent/x", out_path, NULL);
	daemon_down();
}

static void test_file_read(void)
{
	daemon_up();
	service("example_file_read", "serve", "serving file.read\n");
	unlink(out_path);
	run("file.read-done: 300001 bytes, 300001 written\n", 0, "example_file_read", "call",
	    in_path, out_path, NULL);
	CHECK(same_file(in_path, out_path));
	run("error EINVAL: /nonexistent/x: No such file or directory\n", 1, "example_file_read",
	    "call", "/nonexistent/x", out_path, NULL);
	daemon_down();
}

static void test_chain(void)
{
	daemon_up();
	service("example_chain", "users", "serving users.create\n");
	/* users is up but passwords is not: the inner failure reaches the caller. */
	run("error ENOHANDLER: no handler for this name\n", 1, "example_chain", "call", "a@b", "pw",
	    NULL);
	service("example_chain", "passwords", "serving passwords.encrypt\n");
	run("user.created: {\"id\"=>1, \"email\"=>\"ada@example.com\", "
	    "\"password\"=>\"fnv1a:1b6540aae4e3fe9a\"}\n",
	    0, "example_chain", "call", "ada@example.com", "hunter2", NULL);
	daemon_down();
}

/* Starts one health agent and waits for its ready line. */
static void agent(const char *name, const char *state)
{
	char *argv[] = {"example_health", "agent",       "--port", port,
			(char *)name,     (char *)state, NULL};
	char line[256], ready[128];
	int out;
	pid_t pid = spawn(argv, &out);
	CHECK(pid > 0);
	CHECK(read_out(out, line, sizeof line, 1, 10000) > 0);
	snprintf(ready, sizeof ready, "agent %s ready (%s)\n", name, state);
	CHECK_STR(line, ready);
}

/* Every agent answers, sorted by name; the silent one shows as a timeout
 * without holding the others back, and the tally is the router's. */
static void test_health(void)
{
	daemon_up();
	run("no answer: no connected peers\n", 1, "example_health", "check", "500", NULL);
	agent("agent-a", "healthy");
	agent("agent-b", "healthy");
	run("agent-a    healthy\n"
	    "agent-b    healthy\n"
	    "2 agents: 2 answered, 0 errors, 0 timeouts, 0 gone\n",
	    0, "example_health", "check", "2000", NULL);
	agent("agent-c", "degraded");
	agent("agent-d", "silent");
	run("agent-a    healthy\n"
	    "agent-b    healthy\n"
	    "agent-c    degraded (disk 97% full)\n"
	    "agent-d    timeout\n"
	    "4 agents: 3 answered, 0 errors, 1 timeouts, 0 gone\n",
	    1, "example_health", "check", "300", NULL);
	daemon_down();
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: test_examples SWITCHBOARD_DAEMON BIN_DIR\n");
		return 2;
	}
	daemon_bin = argv[1];
	bindir = argv[2];
	signal(SIGALRM, on_alarm);
	alarm(120);
	snprintf(in_path, sizeof in_path, "/tmp/sb_examples_%d.in", (int)getpid());
	snprintf(out_path, sizeof out_path, "/tmp/sb_examples_%d.out", (int)getpid());
	make_file(in_path, 300001); /* odd size: the last chunk and quarter are partial */

	RUN(test_user);
	RUN(test_transfer);
	RUN(test_file_copy);
	RUN(test_file_read);
	RUN(test_chain);
	RUN(test_health);

	unlink(in_path);
	unlink(out_path);
	return TEST_EXIT();
}
