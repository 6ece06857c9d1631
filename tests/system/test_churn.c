/* Churn against the daemon: 20,000 names registered and unregistered and
 * 2,000 peers with names of their own coming and going, twice; $sb.stats
 * answers throughout and the second round leaves RSS where the first did.
 * Every wait is bounded. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <switchboard/client.h>
#include <switchboard/router.h>

#include "support/admin.h"
#include "support/clock.h"
#include "support/daemon.h"
#include "support/loop.h"
#include "support/peer.h"
#include "support/proc.h"
#include "support/sanitizer.h"
#include "support/testlib.h"

/* LONG_MS: a request timeout that must not expire during a test. */
enum { LONG_MS = 120000 };

enum { CHURN_NAMES = 20000, CHURN_AT_ONCE = 1000, CHURN_CONNS = 2000 };

/* count distinct names, at_once registered at a time, each then removed;
 * $sb.stats is asked between every batch. */
static void churn_names(struct peer *svc, struct peer *cli, const char *base, int count,
			int at_once)
{
	static uint64_t id = 1000;
	for (int done = 0; done < count; done += at_once) {
		for (int pass = 0; pass < 2; pass++) {
			for (int i = done; i < done + at_once; i++) {
				char name[64];
				snprintf(name, sizeof name, "churn.%s.%d", base, i);
				struct sb_msg m = {.kind = pass ? SB_UNREGISTER : SB_REGISTER,
						   .id = ++id,
						   .name = v_str(name)};
				peer_send(svc, &m);
			}
			for (int i = 0; i < at_once; i++)
				peer_expect(svc, SB_ACK);
			stat_of(cli, "connections");
		}
	}
}

/* count connections with distinct peer names, one at a time; every tenth a
 * service that registers a name of its own and leaves with it. */
static void churn_conns(uint16_t port, struct peer *cli, const char *base, int count)
{
	for (int i = 0; i < count; i++) {
		char name[64];
		snprintf(name, sizeof name, "churn-%s-%d", base, i);
		if (i % 10 == 0) {
			struct peer *p = peer_hello(port, name, "service");
			peer_register(p, name, 1);
			peer_close(p);
		} else {
			struct lite l;
			lite_hello(&l, port, name);
			close(l.fd);
		}
		if (i % 500 == 499)
			stat_of(cli, "connections");
	}
}

static int conns_at(void *arg)
{
	struct peer *cli = arg;
	return stat_of(cli, "connections") == 2;
}

static void churn_round(struct daemon *d, struct peer *svc, struct peer *cli, const char *base)
{
	uint64_t t0 = now_ms();
	churn_names(svc, cli, base, CHURN_NAMES, CHURN_AT_ONCE);
	churn_conns(d->port, cli, base, CHURN_CONNS);
	loop_wait(conns_at, cli, 10000, "the churned connections closed");
	printf("  round %s: %d names (%d at a time) and %d connections in %llu ms, RSS %ld kB\n",
	       base, CHURN_NAMES, CHURN_AT_ONCE, CHURN_CONNS, (unsigned long long)(now_ms() - t0),
	       rss_kb(d->pid));
}

/* A service registers and unregisters 20,000 distinct names, never more
 * than 1,000 at once, while 2,000 peers with names of their own come and
 * go (a tenth of them services with a name each); $sb.stats is asked
 * throughout and always answers. Twice: the second round, all new names,
 * must leave RSS where the first did. A name's statistics alone were
 * 3.4 KB (2 shards), kept for ever: 68 MB a round, and $sb.stats answered
 * `too large` from the 8,000th name on. What may stay is the peer names'
 * tombstones, about 160 bytes each up to their bound (docs/protocol.md):
 * 320 KB a round. Compared round to round, as the other memory checks: the
 * first grows the tables to a thousand names and the allocator's caches
 * (ASan's keep more per thread). */
static void test_churn_leaves_no_memory_behind(void)
{
	loop_reset(); /* loop_wait() below waits on the daemon alone */
	struct daemon d = daemon_start(0, NULL);
	struct peer *svc = peer_hello(d.port, "churn-svc", "service");
	struct peer *cli = peer_hello(d.port, "churn-cli", "client");
	printf("  daemon RSS %ld kB before\n", rss_kb(d.pid));
	churn_round(&d, svc, cli, "a");
	long rss_first = rss_kb(d.pid);
	churn_round(&d, svc, cli, "b");
	long rss_second = rss_kb(d.pid);
	CHECK_RSS(rss_second <= rss_first + RSS_SLACK_KB);
	peer_close(cli);
	peer_close(svc);
	daemon_stop(&d);
}

/* Each test under a watchdog; SB_TEST_ONLY=slow runs only the tests whose
 * name contains "slow" (see RUN). */
#define RUN_SOME(fn) RUN_WATCHED(fn, 150)

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s PATH-TO-SWITCHBOARD\n", argv[0]);
		return 2;
	}
	daemon_path = argv[1];
	setvbuf(stdout, NULL, _IOLBF, 0); /* a killed run still shows how far it got */
	signal(SIGPIPE, SIG_IGN);
	RUN_SOME(test_churn_leaves_no_memory_behind);
	return TEST_EXIT();
}
