/* nats-server processes for the cluster tests: one server or a cluster on
 * free loopback ports, each in a scratch directory (JetStream's store, its
 * log), stopped by PID; a SIGKILLed test takes them along (PDEATHSIG). */
#ifndef SB_TEST_NATSD_H
#define SB_TEST_NATSD_H

#include <stdint.h>
#include <sys/types.h>

struct natsd {
	pid_t pid;                /* 0 when not running */
	uint16_t port;            /* clients */
	uint16_t cport;           /* cluster routes, 0 without a cluster */
	char dir[64];             /* scratch: the log (nats.log) and JetStream's store */
	char url[64];             /* nats://127.0.0.1:port */
	char name[16];            /* the server's name in the cluster */
	int js;                   /* started with JetStream */
	const char *const *extra; /* more flags (auth, TLS), NULL-terminated */
	int monitor;              /* set before natsd_start(): HTTP monitoring (-m) */
	uint16_t mport;           /* its port, picked by natsd_start(), 0 without */
};

/* Starts n servers, each with its own client port, as one cluster when n
 * > 1 (full mesh of routes), with JetStream if js. Waits until each
 * answers INFO (20 s). 0, or -1 with the reason on stderr. */
int natsd_start(struct natsd *d, unsigned n, int js);

/* Starts d again on the same ports, after natsd_kill() (a restart). */
int natsd_restart(struct natsd *d);

/* Starts d[i] of the cluster d[0..n) again, routes to the others and
 * all, after natsd_kill() (a JetStream cluster's server needs its routes). */
int natsd_restart_in(struct natsd *d, unsigned n, unsigned i);

/* SIGKILL and reap: the server vanishes mid-word. */
void natsd_kill(struct natsd *d);

/* SIGTERM and reap, then the scratch directory removed. */
void natsd_stop(struct natsd *d);

/* "nats://127.0.0.1:A,nats://127.0.0.1:B" for d[0..n), in a static buffer. */
const char *natsd_urls(const struct natsd *d, unsigned n);

/* GET path from d's monitoring port (started with monitor set): the
 * body, malloc'd, or NULL (no answer within 10 s, not 200). */
char *natsd_monitor(const struct natsd *d, const char *path);

#endif
