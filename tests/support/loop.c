/* One thread's loop over the parent's clients and children: poll() over
 * their descriptors, bounded by the clients' timers, then process each. */
#include <poll.h>
#include <stdio.h>

#include "support/clock.h"
#include "support/loop.h"
#include "support/testlib.h"

enum { MAXC = 8, MAXCH = 4 };

struct rq *RQ;
long terminals;

/* Clients of the parent, and children it listens to, pumped together. */
static struct sb_client *LC[MAXC];
static int NLC;
static struct child *LCH[MAXCH];
static int NLCH;
void (*loop_tick)(void);

void loop_reset(void)
{
	NLC = 0;
	NLCH = 0;
	loop_tick = NULL;
}

void loop_turn(int wait)
{
	struct pollfd p[MAXC + MAXCH];
	int n = 0;

	for (int i = 0; i < NLC; i++) {
		int t = sb_client_timeout(LC[i]);
		p[n++] = (struct pollfd){.fd = sb_client_fd(LC[i]),
					 .events = sb_client_events(LC[i])};
		if (t >= 0 && t < wait)
			wait = t;
	}
	for (int i = 0; i < NLCH; i++)
		p[n++] = (struct pollfd){.fd = LCH[i]->out, .events = POLLIN};
	poll(p, (nfds_t)n, wait);
	for (int i = 0; i < NLC; i++)
		sb_client_process(LC[i], 0);
	for (int i = 0; i < NLCH; i++)
		child_read(LCH[i]);
	if (loop_tick != NULL)
		loop_tick();
}

int loop_wait(int (*done)(void *), void *arg, unsigned limit_ms, const char *what)
{
	uint64_t start = now_ms(), end = start + limit_ms;
	while (!done(arg)) {
		if (now_ms() >= end) {
			fprintf(stderr, "  still waiting for %s after %u ms\n", what, limit_ms);
			sb_test_failures++;
			return 0;
		}
		loop_turn(10);
	}
	return 1;
}

void loop_for(unsigned ms)
{
	uint64_t end = now_ms() + ms;
	while (now_ms() < end)
		loop_turn(10);
}

struct at_least {
	const long *v;
	long want;
};

static int reached(void *arg)
{
	struct at_least *a = arg;
	return *a->v >= a->want;
}

int loop_until(const long *v, long want, unsigned limit_ms, const char *what)
{
	struct at_least a = {v, want};
	return loop_wait(reached, &a, limit_ms, what);
}

static int child_is_ready(void *arg)
{
	return ((struct child *)arg)->ready;
}

struct child *child_ready(const char *role, uint16_t port, const char *name, long arg)
{
	struct child *ch = child_start(role, port, name, arg);
	LCH[NLCH++] = ch;
	loop_wait(child_is_ready, ch, 20000, "a child online");
	return ch;
}

void child_drop(struct child *ch)
{
	for (int i = 0; i < NLCH; i++)
		if (LCH[i] == ch)
			LCH[i] = LCH[--NLCH];
	child_kill(ch);
}

void rq_reply(const struct sb_reply *rep, void *ud)
{
	struct rq *r = &RQ[(uintptr_t)ud];

	if (r->terminal > 0) {
		r->after++;
		return;
	}
	if (rep->more == SB_MORE_CHUNK) {
		if (chunk_seq(rep->payload, rep->len) != (uint32_t)r->chunks)
			r->out_of_order++;
		r->chunks++;
		return;
	}
	if (rep->more != SB_MORE_NONE)
		return;
	r->terminal++;
	r->err = rep->err;
	r->at = now_ms();
	snprintf(r->outcome, sizeof r->outcome, "%s", rep->outcome);
	terminals++;
}

struct sb_client *
loop_client_with(uint16_t port, const char *name, const char *role,
		 void (*on_state)(struct sb_client *, enum sb_client_state, int, void *), void *ud)
{
	struct sb_client_config cfg;
	int err = 0;

	sb_client_config_init(&cfg);
	cfg.port = port;
	cfg.name = name;
	cfg.role = strcmp(role, "service") == 0 ? SB_ROLE_SERVICE : SB_ROLE_CLIENT;
	cfg.reconnect_min_ms = 50;
	cfg.reconnect_max_ms = 400;
	cfg.on_state = on_state;
	cfg.ud = ud;
	struct sb_client *c = sb_client_new(&cfg, &err);
	CHECK(c != NULL);
	LC[NLC++] = c;
	return c;
}

struct sb_client *loop_client(uint16_t port, const char *name, const char *role)
{
	return loop_client_with(port, name, role, NULL, NULL);
}

int loop_online(void *arg)
{
	(void)arg;
	for (int i = 0; i < NLC; i++)
		if (!sb_client_online(LC[i]))
			return 0;
	return 1;
}
