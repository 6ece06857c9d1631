/* The daemon in a child process: fork and exec with its stdout (and, when
 * asked, its stderr) on pipes; under ASan without the quarantine, so the
 * memory checks see the daemon's memory and not ASan's. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support/daemon.h"
#include "support/proc.h"
#include "support/sanitizer.h"
#include "support/testlib.h"

const char *daemon_path;

struct daemon daemon_start(uint16_t port, const char *const *extra)
{
	static const struct daemon_opts none = {0};
	return daemon_start_opts(port, extra, &none);
}

struct daemon daemon_start_opts(uint16_t port, const char *const *extra,
				const struct daemon_opts *o)
{
	struct daemon d = {.err = -1};
	int err[2] = {-1, -1};
	const char *argv[24];
	char portbuf[16], line[256];
	int n = 0, out[2];

	snprintf(portbuf, sizeof portbuf, "%u", port);
	argv[n++] = daemon_path;
	argv[n++] = "--port";
	argv[n++] = portbuf;
	argv[n++] = "--shards";
	argv[n++] = "2";
	argv[n++] = "--log-level";
	argv[n++] = "0";
	argv[n++] = "--bind-retries"; /* a port just given up may need a moment */
	argv[n++] = "50";
	argv[n++] = "--bind-retry-ms";
	argv[n++] = "100";
	for (int i = 0; extra != NULL && extra[i] != NULL && n < 23; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
#ifdef SB_ASAN
	/* ASan's quarantine keeps freed memory resident (256 MiB by default;
	 * even 4 MiB fills over minutes), which would fake a leak in the RSS
	 * checks. Without it ASan still sees overflows, not use-after-free:
	 * the in-process tests keep that. */
	char env[1024];
	const char *old = getenv("ASAN_OPTIONS");
	snprintf(env, sizeof env, "%s%squarantine_size_mb=0", old ? old : "", old ? ":" : "");
#endif
	CHECK(pipe(out) == 0);
	if (o->capture_err)
		CHECK(pipe(err) == 0);
	d.pid = fork();
	if (d.pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a crashed test */
		dup2(out[1], STDOUT_FILENO);
		close(out[0]);
		close(out[1]);
		if (o->capture_err) {
			dup2(err[1], STDERR_FILENO);
			close(err[0]);
			close(err[1]);
		}
		if (o->nofile > 0) {
			struct rlimit rl = {o->nofile, o->nofile};
			setrlimit(RLIMIT_NOFILE, &rl);
		}
#ifdef SB_ASAN
		setenv("ASAN_OPTIONS", env, 1);
#endif
		execv(daemon_path, (char *const *)argv);
		_exit(127);
	}
	close(out[1]);
	if (o->capture_err) {
		close(err[1]);
		d.err = err[0];
	}
	d.out = fdopen(out[0], "r");
	/* fgets ends at EOF if the daemon dies: a failure, not a hang. */
	if (fgets(line, sizeof line, d.out) != NULL) {
		const char *at = strstr(line, "listening on 127.0.0.1:");
		if (at != NULL)
			d.port = (uint16_t)atoi(at + strlen("listening on 127.0.0.1:"));
	}
	CHECK(d.port > 0);
	return d;
}

void daemon_stop(struct daemon *d)
{
	int status = 0;
	kill(d->pid, SIGTERM);
	if (!wait_exit(d->pid, &status, 20000)) {
		CHECK(!"daemon did not stop within 20 s of SIGTERM");
		kill(d->pid, SIGKILL);
		waitpid(d->pid, &status, 0);
	}
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	fclose(d->out);
	if (d->err >= 0)
		close(d->err);
	d->pid = 0;
}

void daemon_kill(struct daemon *d)
{
	reap(d->pid, SIGKILL);
	fclose(d->out);
	d->pid = 0;
}

/* ---- children: peers in processes of their own ----------------------------- */

/* A child reports on its stdout: "ready" once online, then "n A B C" lines
 * whose meaning depends on its role. */
