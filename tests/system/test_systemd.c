/* The daemon under systemd (docs/operations.md): the notify protocol read
 * from a unix datagram socket the test owns, passed in NOTIFY_SOCKET as
 * systemd does. READY=1 once every shard listens, RELOADING=1 then
 * READY=1 around SIGHUP, STOPPING=1 at the drain; WATCHDOG=1 when
 * WATCHDOG_USEC asks for it, never otherwise. */
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "support/clock.h"
#include "support/daemon.h"
#include "support/http.h"
#include "support/peer.h"
#include "support/proc.h"
#include "support/testlib.h"

/* systemd's side: a datagram socket at a path of our own. */
struct notify_sock {
	int fd;
	char path[108];
	int watchdogs; /* WATCHDOG=1 seen so far */
};

static void notify_open(struct notify_sock *n)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	n->watchdogs = 0;
	snprintf(n->path, sizeof n->path, "/tmp/sb-notify-%d-%llu", (int)getpid(),
		 (unsigned long long)now_ms());
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", n->path);
	n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	CHECK(n->fd >= 0);
	CHECK(bind(n->fd, (struct sockaddr *)&sa, sizeof sa) == 0);
	setenv("NOTIFY_SOCKET", n->path, 1);
}

static void notify_close(struct notify_sock *n)
{
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	close(n->fd);
	unlink(n->path);
}

/* The next message that is not WATCHDOG=1 (those are counted), within
 * 20 s: 1 with it in @p msg, else 0. */
static int notify_next(struct notify_sock *n, char *msg, size_t cap)
{
	uint64_t deadline = now_ms() + 20000;
	while (now_ms() < deadline) {
		struct pollfd p = {.fd = n->fd, .events = POLLIN};
		if (poll(&p, 1, 100) <= 0)
			continue;
		ssize_t got = recv(n->fd, msg, cap - 1, 0);
		if (got < 0)
			continue;
		msg[got] = '\0';
		if (strcmp(msg, "WATCHDOG=1") == 0) {
			n->watchdogs++;
			continue;
		}
		return 1;
	}
	msg[0] = '\0';
	return 0;
}

/* One line of a notify message is exactly @p line. */
static int has_line(const char *msg, const char *line)
{
	size_t n = strlen(line);
	for (const char *p = msg; p != NULL; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, line, n) == 0 && (p[n] == '\n' || p[n] == '\0'))
			return 1;
	return 0;
}

static void test_systemd_hears_ready_then_reloading_and_ready_around_sighup_then_stopping(void)
{
	struct notify_sock n;
	char msg[512];
	notify_open(&n);
	const char *flags[] = {"--admin-port", "0", NULL};
	struct daemon d = daemon_start(0, flags);

	CHECK(notify_next(&n, msg, sizeof msg));
	CHECK(has_line(msg, "READY=1"));
	CHECK(strstr(msg, "STATUS=listening on 127.0.0.1:") != NULL);
	/* Ready means served: a peer is welcomed at once. */
	struct peer *p = peer_hello(d.port, NULL, "client");
	peer_close(p);

	kill(d.pid, SIGHUP);
	CHECK(notify_next(&n, msg, sizeof msg));
	CHECK(has_line(msg, "RELOADING=1"));
	CHECK(strstr(msg, "\nMONOTONIC_USEC=") != NULL);
	CHECK(notify_next(&n, msg, sizeof msg));
	CHECK(has_line(msg, "READY=1"));

	kill(d.pid, SIGTERM);
	CHECK(notify_next(&n, msg, sizeof msg));
	CHECK(has_line(msg, "STOPPING=1"));
	daemon_stop(&d);           /* already stopping: it must exit 0 */
	CHECK_INT(n.watchdogs, 0); /* not asked for */
	notify_close(&n);
}

static void test_the_watchdog_is_fed_when_systemd_asks_for_it(void)
{
	struct notify_sock n;
	char msg[512];
	notify_open(&n);
	setenv("WATCHDOG_USEC", "200000", 1); /* WatchdogSec=0.2: a ping every 100 ms */
	struct daemon d = daemon_start(0, NULL);
	CHECK(notify_next(&n, msg, sizeof msg));
	CHECK(has_line(msg, "READY=1"));
	/* Counted, not timed: three pings come, however loaded the machine. */
	uint64_t deadline = now_ms() + 20000;
	while (n.watchdogs < 3 && now_ms() < deadline) {
		struct pollfd p = {.fd = n.fd, .events = POLLIN};
		if (poll(&p, 1, 100) > 0 && recv(n.fd, msg, sizeof msg - 1, 0) > 0)
			n.watchdogs += strncmp(msg, "WATCHDOG=1", 10) == 0;
	}
	CHECK(n.watchdogs >= 3);
	daemon_stop(&d);
	notify_close(&n);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s SWITCHBOARD\n", argv[0]);
		return 2;
	}
	daemon_path = argv[1];
	signal(SIGPIPE, SIG_IGN);
	watchdog("test_systemd", 240);
	RUN(test_systemd_hears_ready_then_reloading_and_ready_around_sighup_then_stopping);
	RUN(test_the_watchdog_is_fed_when_systemd_asks_for_it);
	return TEST_EXIT();
}
