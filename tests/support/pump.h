/* The client pump: one thread's event loop over several client library
 * clients, as a program would write it (poll() on their descriptors, then
 * sb_client_process() each), with every wait bounded. */
#ifndef SB_TEST_PUMP_H
#define SB_TEST_PUMP_H

#include <switchboard/client.h>

/* How long a wait may take before it is a failure (5 s unless a test
 * program sets it). */
extern unsigned pump_limit_ms;
/* Run every turn, after the clients: a handler's producer, a fake router
 * (NULL: nothing). */
extern void (*pump_tick)(void *);
extern void *pump_tick_arg;

/* One turn: one poll() over every client's descriptor, bounded by their
 * timers (5 ms at most), then sb_client_process(c, 0) each. */
void pump_once(struct sb_client *const *cs, int n);
/* Turns until done(arg); pump_limit_ms without it is a failure naming
 * what, not a hang. 1 if done. */
int pump_cond(struct sb_client *const *cs, int n, int (*done)(void *), void *arg, const char *what);
/* Turns until *v >= want, the same way. */
int pump_until(struct sb_client *const *cs, int n, const int *v, int want, const char *what);
/* Turns until every client is online; the last error of each that is not
 * is printed. */
int pump_online(struct sb_client *const *cs, int n);
/* Turns for ms, whatever happens (to show that nothing more does). */
void pump_for(struct sb_client *const *cs, int n, unsigned ms);

#endif
