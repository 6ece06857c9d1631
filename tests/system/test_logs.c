/* The daemon's log as an operator's tools read it (docs/operations.md,
 * "Logs"): with stderr not a terminal (the journal, a pipe, a file) each
 * line starts with its syslog level, <3> for errors to <7> for debug, so
 * journalctl -p keeps them apart; on a terminal it starts with the time.
 * A graceful drain logs each peer it closes as stopped, never as closed
 * after a fatal error. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support/clock.h"
#include "support/daemon.h"
#include "support/peer.h"
#include "support/proc.h"
#include "support/testlib.h"

/* Everything on @p fd until EOF (or EIO: a pty whose other side closed),
 * 20 s at most, NUL-terminated. */
static size_t read_all(int fd, char *out, size_t cap)
{
	size_t have = 0;
	uint64_t deadline = now_ms() + 20000;
	while (have < cap - 1 && now_ms() < deadline) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 100) <= 0)
			continue;
		ssize_t n = read(fd, out + have, cap - 1 - have);
		if (n <= 0 && !(n < 0 && errno == EINTR))
			break;
		if (n > 0)
			have += (size_t)n;
	}
	out[have] = '\0';
	return have;
}

/* The daemon run with @p argv (its flags), stderr on a pipe or, with
 * @p pty, on a terminal: what it logged until it exited. @return its exit
 * status */
static int run_daemon(const char *const *flags, int pty, char *out, size_t cap)
{
	const char *argv[16] = {daemon_path};
	int n = 1, fds[2] = {-1, -1}, master = -1;
	for (int i = 0; flags[i] != NULL && n < 15; i++)
		argv[n++] = flags[i];
	argv[n] = NULL;
	if (pty) {
		master = posix_openpt(O_RDWR | O_NOCTTY);
		CHECK(master >= 0 && grantpt(master) == 0 && unlockpt(master) == 0);
		fds[1] = open(ptsname(master), O_RDWR | O_NOCTTY);
		fds[0] = master;
	} else
		CHECK(pipe(fds) == 0);
	pid_t pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(null, STDOUT_FILENO);
		dup2(fds[1], STDERR_FILENO);
		for (int fd = 3; fd < 1024; fd++)
			close(fd);
		execv(daemon_path, (char *const *)argv);
		_exit(127);
	}
	close(fds[1]);
	read_all(fds[0], out, cap);
	close(fds[0]);
	int status = -1;
	if (!wait_exit(pid, &status, 20000))
		reap(pid, SIGKILL);
	return status;
}

/* Each line starts with <N>, N in 3..7; @return the lines */
static int every_line_has_a_level(const char *log)
{
	int lines = 0;
	for (const char *l = log; *l != '\0'; lines++) {
		if (!(l[0] == '<' && l[1] >= '3' && l[1] <= '7' && l[2] == '>')) {
			fprintf(stderr, "a line without its level: %.80s\n", l);
			sb_test_failures++;
		}
		const char *nl = strchr(l, '\n');
		l = nl != NULL ? nl + 1 : l + strlen(l);
	}
	return lines;
}

/* The level of the first line holding @p what: '3'..'7', or 0 if none. */
static char level_of(const char *log, const char *what)
{
	const char *at = strstr(log, what);
	if (at == NULL)
		return 0;
	while (at > log && at[-1] != '\n')
		at--;
	return at[0] == '<' && at[2] == '>' ? at[1] : 0;
}

static int count(const char *log, const char *what)
{
	int n = 0;
	for (const char *p = log; (p = strstr(p, what)) != NULL; p++)
		n++;
	return n;
}

static void test_a_drain_logs_the_peers_it_closes_as_stopped_not_as_fatal_errors(void)
{
	enum { PEERS = 6 };
	static const char *const flags[] = {"--log-level", "2", NULL};
	struct daemon_opts o = {.capture_err = 1};
	struct daemon d = daemon_start_opts(0, flags, &o);
	struct peer *p[PEERS];
	for (int i = 0; i < PEERS; i++)
		p[i] = peer_hello(d.port, NULL, i % 2 ? "client" : "service");
	kill(d.pid, SIGTERM);
	for (int i = 0; i < PEERS; i++) /* each hears why */
		peer_expect(p[i], SB_GOODBYE);
	static char log[65536];
	read_all(d.err, log, sizeof log);
	CHECK_INT(count(log, "disconnected: router stopped"), PEERS);
	CHECK_INT(count(log, "fatal error"), 0);
	CHECK(every_line_has_a_level(log) > PEERS);
	CHECK_INT(level_of(log, "disconnected: router stopped"), '6'); /* a connection's line */
	for (int i = 0; i < PEERS; i++)
		peer_close(p[i]);
	daemon_stop(&d);
}

/* Errors <3>, warnings <4>, lifecycle <5>, connections <6>, debug <7>. */
static void test_log_lines_carry_their_syslog_level_when_stderr_is_not_a_terminal(void)
{
	static char log[65536];
	static const char *const bad_tls[] = {"--port", "0", "--tls-cert", "/nonexistent/cert.pem",
					      NULL};
	int status = run_daemon(bad_tls, 0, log, sizeof log);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 2);
	CHECK_INT(level_of(log, "TLS: tls-cert /nonexistent/cert.pem"), '3');
	CHECK_INT(level_of(log, "switchboard: invalid settings"), '3'); /* the daemon's own */
	every_line_has_a_level(log);

	/* A descriptor limit below what max_conns needs: a warning. */
	static const char *const flags[] = {"--log-level", "3", NULL};
	struct daemon_opts o = {.capture_err = 1, .nofile = 256};
	struct daemon d = daemon_start_opts(0, flags, &o);
	struct peer *p = peer_hello(d.port, "lv-peer", "client");
	peer_close(p);
	kill(d.pid, SIGHUP); /* "reloaded": a lifecycle line */
	char line[256];
	while (fgets(line, sizeof line, d.out) != NULL && strstr(line, "SIGHUP:") == NULL)
		;
	kill(d.pid, SIGTERM);
	read_all(d.err, log, sizeof log);
	every_line_has_a_level(log);
	CHECK_INT(level_of(log, "warning: RLIMIT_NOFILE is 256"), '4');
	CHECK_INT(level_of(log, "peer lv-peer connected"), '6');
	CHECK_INT(level_of(log, "listening on 127.0.0.1:"), '6');
	CHECK_INT(level_of(log, "switchboard: reloaded"), '5');
	daemon_stop(&d);
}

static void test_on_a_terminal_log_lines_start_with_the_time(void)
{
	static char log[16384];
	static const char *const bad_tls[] = {"--port", "0", "--tls-cert", "/nonexistent/cert.pem",
					      NULL};
	int status = run_daemon(bad_tls, 1, log, sizeof log);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 2);
	/* "HH:MM:SS.mmm switchboard: TLS: ..." */
	CHECK(strlen(log) > 13 && log[2] == ':' && log[5] == ':' && log[8] == '.' &&
	      strncmp(log + 13, "switchboard: ", 13) == 0);
	CHECK(strstr(log, "<3>") == NULL);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s SWITCHBOARD\n", argv[0]);
		return 2;
	}
	daemon_path = argv[1];
	signal(SIGPIPE, SIG_IGN);
	watchdog("test_logs", 240);
	RUN(test_a_drain_logs_the_peers_it_closes_as_stopped_not_as_fatal_errors);
	RUN(test_log_lines_carry_their_syslog_level_when_stderr_is_not_a_terminal);
	RUN(test_on_a_terminal_log_lines_start_with_the_time);
	return TEST_EXIT();
}
