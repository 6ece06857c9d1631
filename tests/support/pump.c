/* The loop a program would write around the client library, for tests that
 * drive several clients from one thread. */
#include <poll.h>
#include <stdio.h>

#include "support/clock.h"
#include "support/pump.h"
#include "support/testlib.h"

enum { MAXC = 8 };

unsigned pump_limit_ms = 5000;
void (*pump_tick)(void *);
void *pump_tick_arg;

void pump_once(struct sb_client *const *cs, int n)
{
	struct pollfd p[MAXC];
	int wait = 5;

	CHECK(n <= MAXC);
	for (int i = 0; i < n && i < MAXC; i++) {
		int t = sb_client_timeout(cs[i]);
		p[i] = (struct pollfd){.fd = sb_client_fd(cs[i]),
				       .events = sb_client_events(cs[i])};
		if (t >= 0 && t < wait)
			wait = t;
	}
	poll(p, (nfds_t)(n < MAXC ? n : MAXC), wait);
	for (int i = 0; i < n; i++)
		sb_client_process(cs[i], 0);
	if (pump_tick != NULL)
		pump_tick(pump_tick_arg);
}

int pump_cond(struct sb_client *const *cs, int n, int (*done)(void *), void *arg, const char *what)
{
	uint64_t end = now_ms() + pump_limit_ms;

	while (!done(arg)) {
		if (now_ms() >= end) {
			fprintf(stderr, "  pump: still waiting for %s after %u ms\n", what,
				pump_limit_ms);
			sb_test_failures++;
			return 0;
		}
		pump_once(cs, n);
	}
	return 1;
}

struct at_least {
	const int *v;
	int want;
};

static int reached(void *arg)
{
	struct at_least *a = arg;
	return *a->v >= a->want;
}

int pump_until(struct sb_client *const *cs, int n, const int *v, int want, const char *what)
{
	struct at_least a = {v, want};
	return pump_cond(cs, n, reached, &a, what);
}

struct all_online {
	struct sb_client *const *cs;
	int n;
};

static int everyone_online(void *arg)
{
	struct all_online *a = arg;
	for (int i = 0; i < a->n; i++)
		if (!sb_client_online(a->cs[i]))
			return 0;
	return 1;
}

int pump_online(struct sb_client *const *cs, int n)
{
	struct all_online a = {cs, n};
	if (pump_cond(cs, n, everyone_online, &a, "every client online"))
		return 1;
	for (int i = 0; i < n; i++)
		if (!sb_client_online(cs[i]))
			fprintf(stderr, "  client %d: %s\n", i, sb_client_last_error(cs[i]));
	return 0;
}

void pump_for(struct sb_client *const *cs, int n, unsigned ms)
{
	uint64_t end = now_ms() + ms;
	while (now_ms() < end)
		pump_once(cs, n);
}
