/* The spin before a sleep (sb_router_config.spin_us, docs/performance.md):
 * a router that spins after work still sleeps when its peers go quiet, a
 * request and its reply still cross between shards whether the other shard
 * is spinning or asleep, and a spin longer than the bound is refused. An
 * in-process router; peers speak raw frames over real sockets. */
#include <stdio.h>
#include <sys/resource.h>
#include <time.h>

#include <switchboard/router.h>

#include "support/clock.h"
#include "support/peer.h"
#include "support/router.h"

/* A request timeout that must not expire during a test. */
enum { LONG_MS = 120000 };

static void start(uint32_t spin_us)
{
	struct sb_router_config cfg = router_config();
	cfg.shards = 2;
	cfg.spin_us = spin_us;
	router_start(&cfg);
}

/* A service and a client on different shards: the kernel picks a shard per
 * connection, so dial until it spreads them. */
static void cross_pair(const char *prefix, struct peer **svc, struct peer **cli)
{
	*svc = *cli = NULL;
	for (int i = 0; i < 64 && (*cli == NULL || (*cli)->shard == (*svc)->shard); i++) {
		char name[32];
		snprintf(name, sizeof name, "%s-%d", prefix, i);
		struct peer *p = peer_hello(PORT, name, i == 0 ? "service" : "client");
		if (i == 0)
			*svc = p;
		else if (*cli == NULL && p->shard != (*svc)->shard)
			*cli = p;
		else
			peer_close(p);
	}
	CHECK(*svc != NULL && *cli != NULL && (*cli)->shard != (*svc)->shard);
}

/* One request from cli to svc's name and its reply back, each checked. */
static void round_trip(struct peer *svc, struct peer *cli, uint64_t id)
{
	/* Payloads are MessagePack: the strings "ping" and "pong". */
	peer_request(cli, "spin.echo", id, LONG_MS, "\xa4ping", 5);
	struct sb_msg *m = peer_expect(svc, SB_REQUEST);
	CHECK(m != NULL && v_is(m->payload, "\xa4ping"));
	if (m == NULL)
		return;
	peer_reply(svc, m->id, "ok", 0, "\xa4pong", 5);
	m = peer_expect(cli, SB_REPLY);
	CHECK(m != NULL && m->id == id && v_is(m->payload, "\xa4pong"));
}

/* The CPU this process has used, in microseconds: the router's shards, as
 * the test's own thread only waits in poll and nanosleep meanwhile. */
static uint64_t cpu_us(void)
{
	struct rusage u;
	getrusage(RUSAGE_SELF, &u);
	return (uint64_t)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1000000 +
	       (uint64_t)(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

/* With the longest spin allowed, after a burst of round trips that makes
 * both shards spin, the peers stay connected and silent: the shards must
 * go to sleep. The bound is far above an idle router's cost (about none)
 * and far below a shard that never stops spinning (a whole core each), so
 * a loaded machine cannot fail it: this checks that the spin ends, not how
 * fast anything is. */
static void test_a_spinning_router_still_sleeps_when_its_peers_go_quiet(void)
{
	start(1000);
	struct peer *svc, *cli;
	cross_pair("idle", &svc, &cli);
	peer_register(svc, "spin.echo", 1);
	struct peer *quiet[4];
	for (int i = 0; i < 4; i++)
		quiet[i] = peer_hello(PORT, NULL, "client");
	for (uint64_t id = 1; id <= 500; id++)
		round_trip(svc, cli, id);

	/* A window of wall-clock time over which CPU is counted, not a wait
	 * for an event: nothing is expected to happen in it. */
	enum { WINDOW_MS = 3000 };
	uint64_t cpu0 = cpu_us(), t0 = now_ms();
	while (now_ms() - t0 < WINDOW_MS) {
		struct timespec ts = {0, 50 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	uint64_t used = cpu_us() - cpu0, elapsed_us = (now_ms() - t0) * 1000;
	printf("  idle router, spin 1000 us: %.1f ms CPU over %.1f s\n", used / 1000.0,
	       elapsed_us / 1e6);
	CHECK(used < elapsed_us / 5);

	/* Still serving after the quiet: the sleeping shards wake for it. */
	round_trip(svc, cli, 1000);
	for (int i = 0; i < 4; i++)
		peer_close(quiet[i]);
	peer_close(cli);
	peer_close(svc);
	router_stop();
}

/* Requests and replies cross between the shards back to back (the other
 * shard is spinning when the mail comes) and after pauses longer than any
 * spin (it is asleep, or backing off, and must be woken): each arrives. */
static void cross_shard_round_trips(uint32_t spin_us)
{
	start(spin_us);
	struct peer *svc, *cli;
	cross_pair("cross", &svc, &cli);
	peer_register(svc, "spin.echo", 1);
	uint64_t id = 1;
	for (int i = 0; i < 2000; i++)
		round_trip(svc, cli, id++);
	for (int i = 0; i < 40; i++) {
		/* Nothing comes for a few ms: every spin has ended by then. */
		peer_expect_silence(cli, 2 + i % 3);
		round_trip(svc, cli, id++);
		round_trip(svc, cli, id++);
	}
	CHECK_INT(router_stats().replies, id - 1);
	peer_close(cli);
	peer_close(svc);
	router_stop();
}

static void test_requests_cross_shards_while_the_other_shard_spins_or_sleeps(void)
{
	cross_shard_round_trips(50);
	cross_shard_round_trips(1000);
}

static void test_requests_cross_shards_with_spinning_off(void)
{
	cross_shard_round_trips(0);
}

static void test_a_spin_past_its_bound_is_refused(void)
{
	struct sb_router_config cfg = router_config();
	int err = 0;
	cfg.spin_us = 1001;
	struct sb_router *r = sb_router_new(&cfg, &err);
	CHECK(r == NULL);
	CHECK_INT(err, SB_EINVAL);
	sb_router_free(r);
	cfg.spin_us = 1000;
	r = sb_router_new(&cfg, &err);
	CHECK(r != NULL);
	sb_router_free(r);
}

int main(void)
{
	RUN(test_a_spinning_router_still_sleeps_when_its_peers_go_quiet);
	RUN(test_requests_cross_shards_while_the_other_shard_spins_or_sleeps);
	RUN(test_requests_cross_shards_with_spinning_off);
	RUN(test_a_spin_past_its_bound_is_refused);
	return TEST_EXIT();
}
