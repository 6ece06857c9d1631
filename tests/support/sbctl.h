/* sbctl run as a user runs it, against the test router and a service made
 * with the client library on a thread of its own: its stdout, stderr and
 * exit code collected, every run bounded. */
#ifndef SB_TEST_SBCTL_H
#define SB_TEST_SBCTL_H

#include <stddef.h>
#include <sys/types.h>

#include <switchboard/client.h>

/* RUN_MS bounds one sbctl run: far above what any takes, so only a hang
 * hits it. WAIT_MS bounds every other wait. */
enum { RUN_MS = 10000, WAIT_MS = 5000 };

extern const char *SBCTL;       /* the sbctl binary: set by main() */
extern char ROUTER[32];         /* "127.0.0.1:PORT" of the test router */
extern const char *SBCTL_STDIN; /* a file for sbctl's stdin; NULL: /dev/null */

/* The test router (support/router.h), and a service whose handlers
 * handlers() registers, run by sb_client_run() on a thread of its own. */
void service_start(void (*handlers)(struct sb_client *service));
void service_stop(void); /* the service, then the router (drained) */

/* A client of the test router, not online yet (role: "client" or "service"). */
struct sb_client *new_client(const char *role);
/* Processes c on this thread until it is online; bounded. */
void until_online(struct sb_client *c);

/* One sbctl process and what it has said so far. */
struct proc {
	pid_t pid;
	int out, err;   /* pipe ends, -1 once at EOF */
	char so[16384]; /* stdout */
	char se[16384]; /* stderr */
	size_t nso, nse;
	int code; /* exit code; 128 + signal if killed */
};

/* Starts `sbctl --router ROUTER ARGS...` (args NULL-ended). */
void sbctl_spawn(struct proc *p, const char *const *args);
/* Reads what is there, for up to ms; 0 once both pipes are at EOF. */
int sbctl_read(struct proc *p, int ms);
/* Waits (bounded) until stderr contains text. */
int sbctl_wait_stderr(struct proc *p, const char *text);
/* Collects the rest and the exit code; kills a run that outlives RUN_MS. */
void sbctl_finish(struct proc *p);

#define SBCTL_RUN(p, ...)                                                                          \
	do {                                                                                       \
		const char *args_[] = {__VA_ARGS__, NULL};                                         \
		sbctl_spawn((p), args_);                                                           \
		sbctl_finish(p);                                                                   \
	} while (0)

/* s starts with prefix. */
int starts(const char *s, const char *prefix);

#endif
