/* The switchboard daemon as a test runs it: started on a port (0: any free
 * one) with two shards and whatever flags the test adds, the port read from
 * what it prints, stopped with SIGTERM (it must exit 0) or killed. */
#ifndef SB_TEST_DAEMON_H
#define SB_TEST_DAEMON_H

#include <stdint.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/types.h>

extern const char *daemon_path; /* the switchboard binary: set by main() */

struct daemon {
	pid_t pid;
	uint16_t port;
	FILE *out; /* its stdout */
	int err;   /* its stderr (the log), when asked for; else -1 */
};

/* How a daemon is started beyond its flags. */
struct daemon_opts {
	rlim_t nofile;   /* RLIMIT_NOFILE (soft and hard), as `ulimit -n` would; 0 = as ours */
	int capture_err; /* keep its stderr (d.err) instead of sharing ours */
};

/* Starts the daemon with two shards and the given extra flags (NULL-ended),
 * on port (0: any free port), and reads the port it printed. */
struct daemon daemon_start(uint16_t port, const char *const *extra);
struct daemon daemon_start_opts(uint16_t port, const char *const *extra,
				const struct daemon_opts *o);
/* SIGTERM: the daemon drains and must exit 0 within 20 s. */
void daemon_stop(struct daemon *d);
/* SIGKILL: gone without a word. */
void daemon_kill(struct daemon *d);

#endif
