/* The parent's event loop in the fault tests: its own client library
 * clients and the children it listens to, pumped together from one thread,
 * and a record of what each of its requests saw. Every wait has a limit: a
 * test fails, it never hangs. */
#ifndef SB_TEST_LOOP_H
#define SB_TEST_LOOP_H

#include <stdint.h>

#include <switchboard/client.h>

#include "support/child.h"

/* Forgets every client and child (a test starts with this). */
void loop_reset(void);
/* Run every turn, after the clients and children (NULL: nothing). */
extern void (*loop_tick)(void);
/* One turn: one poll() of at most wait ms, then everyone processed. */
void loop_turn(int wait);
/* Turns until done(arg); limit_ms without it is a failure. 1 if done. */
int loop_wait(int (*done)(void *), void *arg, unsigned limit_ms, const char *what);
/* Turns until *v >= want, the same way. */
int loop_until(const long *v, long want, unsigned limit_ms, const char *what);
/* Turns for ms, whatever happens. */
void loop_for(unsigned ms);

/* A client of the loop, with quick reconnects; on_state and ud may be NULL. */
struct sb_client *
loop_client_with(uint16_t port, const char *name, const char *role,
		 void (*on_state)(struct sb_client *, enum sb_client_state, int, void *), void *ud);
struct sb_client *loop_client(uint16_t port, const char *name, const char *role);
/* Every client of the loop is online (a done() for loop_wait). */
int loop_online(void *arg);

/* Starts a child (support/child.h), listens to it, and waits until it is
 * online. */
struct child *child_ready(const char *role, uint16_t port, const char *name, long arg);
/* Kills a child with SIGKILL and stops listening to it. */
void child_drop(struct child *ch);

/* What one of the parent's requests saw: rq_reply records into RQ[ud]. */
struct rq {
	int terminal;      /* terminal callbacks: must end up exactly 1 */
	int after;         /* callbacks after the terminal one: must stay 0 */
	int err;           /* of the terminal event */
	long chunks;       /* SB_MORE_CHUNK replies */
	long out_of_order; /* chunks whose number was not the next */
	uint64_t at;       /* ms of the terminal event */
	char outcome[64];
};

extern struct rq *RQ;  /* indexed by the callback's ud; the test allocates it */
extern long terminals; /* terminal callbacks so far */
void rq_reply(const struct sb_reply *r, void *ud);

#endif
