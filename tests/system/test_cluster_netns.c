/* Routers as one across network namespaces (issue 16, optional part): two
 * switchboard daemons, each in a network namespace of its own (ip netns,
 * a veth pair to the test's namespace), so they do not share an address;
 * each joins the cluster through its veth to one of two nats-server
 * processes listening in the test's namespace. A service in one
 * namespace answers a client in the other. Needs root and `ip`: without
 * them the test says why and exits 77, which ctest counts as skipped.
 * The namespaces are deleted at the end (their veths go with them). */
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support/cluster.h"
#include "support/daemon.h"
#include "support/natsd.h"
#include "support/peer.h"
#include "support/proc.h"
#include "support/testlib.h"

#define SKIP 77

static struct natsd ns[2];
static char nsname[2][16];
static int root_fd = -1;

/* Runs a shell command quietly: 0 if it succeeded. */
__attribute__((format(printf, 1, 2))) static int run(const char *fmt, ...)
{
	char cmd[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	strncat(cmd, " >/dev/null 2>&1", sizeof cmd - strlen(cmd) - 1);
	return system(cmd) == 0 ? 0 : -1;
}

static void cleanup(void)
{
	for (unsigned i = 0; i < 2; i++)
		if (nsname[i][0] != 0) {
			run("ip netns del %s", nsname[i]);
			run("ip link del %s0", nsname[i]); /* gone with the namespace, normally */
		}
}

/* Namespace i with a veth to ours: 10.21<3+i>.<x>.1 here, .2 there. */
static int make_ns(unsigned i, unsigned x)
{
	const char *n = nsname[i];
	return run("ip netns add %s", n) || run("ip link add %s0 type veth peer name %s1", n, n) ||
	       run("ip link set %s1 netns %s", n, n) ||
	       run("ip addr add 10.21%u.%u.1/30 dev %s0", 3 + i, x, n) ||
	       run("ip link set %s0 up", n) ||
	       run("ip netns exec %s ip addr add 10.21%u.%u.2/30 dev %s1", n, 3 + i, x, n) ||
	       run("ip netns exec %s ip link set %s1 up", n, n) ||
	       run("ip netns exec %s ip link set lo up", n);
}

/* This thread into namespace i (-1: back to ours). What it creates now,
 * sockets and child processes, lives there. */
static void enter(int i)
{
	char path[64];
	int fd = root_fd;
	if (i >= 0) {
		snprintf(path, sizeof path, "/var/run/netns/%s", nsname[i]);
		fd = open(path, O_RDONLY | O_CLOEXEC);
	}
	CHECK(fd >= 0 && setns(fd, CLONE_NEWNET) == 0);
	if (i >= 0 && fd >= 0)
		close(fd);
}

static void test_a_service_in_one_namespace_answers_a_client_in_another(void)
{
	struct daemon rt[2];
	char url[2][64];
	unsigned x = (unsigned)getpid() % 250;
	for (unsigned i = 0; i < 2; i++) {
		/* Router i reaches its server by its veth, not by loopback. */
		snprintf(url[i], sizeof url[i], "nats://10.21%u.%u.1:%u", 3 + i, x, ns[i].port);
		const char *flags[] = {"--cluster", url[i], NULL};
		enter((int)i);
		rt[i] = daemon_start(0, flags);
		enter(-1);
	}
	enter(0);
	struct peer *svc = peer_hello(rt[0].port, NULL, "service");
	enter(1);
	struct peer *cl = peer_hello(rt[1].port, NULL, "client");
	enter(-1);
	peer_register(svc, "ns.echo", 1);
	CHECK(cluster_until_reachable(cl, svc, "ns.echo"));
	peer_request(cl, "ns.echo", 7, 20000, "\xa2hi", 3);
	struct sb_msg *q = peer_expect(svc, SB_REQUEST);
	CHECK(v_is(q->payload, "\xa2hi"));
	peer_reply(svc, q->id, "ok", 0, "\xa2yo", 3);
	struct sb_msg *r = peer_expect(cl, SB_REPLY);
	CHECK(r->id == 7 && v_is(r->outcome, "ok") && v_is(r->payload, "\xa2yo"));
	peer_close(cl);
	peer_close(svc);
	for (unsigned i = 0; i < 2; i++)
		daemon_stop(&rt[i]);
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc < 2) {
		fprintf(stderr, "usage: test_system_cluster_netns PATH-TO-SWITCHBOARD\n");
		return 2;
	}
	daemon_path = argv[1];
	if (geteuid() != 0) {
		printf("SKIP: network namespaces need root\n");
		return SKIP;
	}
	if (run("ip netns list") != 0) {
		printf("SKIP: no `ip` with netns support\n");
		return SKIP;
	}
	watchdog("test_cluster_netns", 110);
	for (unsigned i = 0; i < 2; i++)
		snprintf(nsname[i], sizeof nsname[i], "sbx%u%c", (unsigned)getpid() % 10000000,
			 'a' + (int)i);
	unsigned x = (unsigned)getpid() % 250;
	if ((root_fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC)) < 0 || make_ns(0, x) ||
	    make_ns(1, x)) {
		cleanup();
		printf("SKIP: cannot make network namespaces here (no CAP_NET_ADMIN?)\n");
		return SKIP;
	}
	/* The servers listen beyond loopback, for the namespaces' veths. */
	static const char *const any[] = {"-a", "0.0.0.0", NULL};
	for (unsigned i = 0; i < 2; i++)
		ns[i].extra = any;
	if (natsd_start(ns, 2, 0) != 0) {
		cleanup();
		return 1;
	}
	RUN(test_a_service_in_one_namespace_answers_a_client_in_another);
	for (unsigned i = 0; i < 2; i++)
		natsd_stop(&ns[i]);
	cleanup();
	return TEST_EXIT();
}
