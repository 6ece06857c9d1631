/* Processes: waiting for them with a limit, killing them, what /proc says
 * they hold, a watchdog for the test itself, and a port nobody listens on. */
#ifndef SB_TEST_PROC_H
#define SB_TEST_PROC_H

#include <stdint.h>
#include <sys/types.h>

/* After seconds, the test exits 3 naming what it was stuck in: a stuck test
 * fails, it does not hang the suite. Called again, it re-arms (0: off). */
void watchdog(const char *what, unsigned seconds);
/* RUN (testlib.h) one test under a watchdog of the given seconds. */
#define RUN_WATCHED(fn, seconds)                                                                   \
	do {                                                                                       \
		watchdog(#fn, seconds);                                                            \
		RUN(fn);                                                                           \
	} while (0)

/* Waits up to ms for pid to exit; 1 with its status, else 0. */
int wait_exit(pid_t pid, int *status, unsigned ms);
/* Sends sig and waits for the exit (15 s, then SIGKILL and a failure). */
void reap(pid_t pid, int sig);

long rss_kb(pid_t pid);    /* resident memory, -1 if unknown */
int fd_count(pid_t pid);   /* open descriptors, -1 if unknown */
long cpu_ticks(pid_t pid); /* CPU used (utime + stime) in clock ticks, -1 if unknown */

/* A port that was free a moment ago on every address, from below the
 * kernel's ephemeral range: nothing listens there. */
uint16_t free_port(void);

#endif
