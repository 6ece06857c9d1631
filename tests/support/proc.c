/* Processes from the outside: waitpid() with a limit, /proc/PID/status, fd
 * and stat, and an alarm that ends a test stuck anywhere. */
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support/clock.h"
#include "support/proc.h"
#include "support/testlib.h"

static const char *watched_what = "";

static void on_watchdog(int sig)
{
	static const char msg[] = "watchdog: stuck in ";
	(void)sig;
	(void)!write(STDERR_FILENO, msg, sizeof msg - 1);
	(void)!write(STDERR_FILENO, watched_what, strlen(watched_what));
	(void)!write(STDERR_FILENO, "\n", 1);
	_exit(3);
}

void watchdog(const char *what, unsigned seconds)
{
	watched_what = what;
	signal(SIGALRM, on_watchdog);
	alarm(seconds);
}

int wait_exit(pid_t pid, int *status, unsigned ms)
{
	uint64_t end = now_ms() + ms;
	for (;;) {
		pid_t w = waitpid(pid, status, WNOHANG);
		if (w == pid)
			return 1;
		if (w < 0 || now_ms() >= end)
			return 0;
		sleep_ms(5);
	}
}

void reap(pid_t pid, int sig)
{
	int status;
	kill(pid, sig);
	if (!wait_exit(pid, &status, 15000)) {
		CHECK(!"process did not exit within 15 s");
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
	}
}

long rss_kb(pid_t pid)
{
	char path[64], line[256];
	long kb = -1;
	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof line, f) != NULL)
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

int fd_count(pid_t pid)
{
	char path[64];
	int n = 0;
	snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
	DIR *d = opendir(path);
	if (d == NULL)
		return -1;
	for (struct dirent *e; (e = readdir(d)) != NULL;)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

long cpu_ticks(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return -1;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
	unsigned long ut = 0, st = 0;
	if (p == NULL ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return -1;
	return (long)(ut + st);
}

/* The lowest port the kernel hands out as a connection's source port. */
static unsigned ephemeral_low(void)
{
	unsigned lo = 0, hi = 0;
	FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
	if (f != NULL) {
		if (fscanf(f, "%u %u", &lo, &hi) != 2)
			lo = 0;
		fclose(f);
	}
	return lo;
}

/* Taken from below the kernel's ephemeral range, and free on every
 * address: a port bind(0) gave is one the kernel may hand any connection
 * as its source port before the test's server binds it, which a server on
 * 0.0.0.0 then cannot (seen while other suites ran beside this one). */
uint16_t free_port(void)
{
	static _Thread_local unsigned seed;
	unsigned lo = ephemeral_low();

	if (seed == 0)
		seed = (unsigned)getpid() * 2654435761u ^ (unsigned)now_ms();
	for (int i = 0; lo > 12000 && i < 1000; i++) {
		struct sockaddr_in sa = {.sin_family = AF_INET};
		uint16_t port = (uint16_t)(10000 + rand_r(&seed) % (lo - 10000));
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		sa.sin_port = htons(port);
		sa.sin_addr.s_addr = htonl(INADDR_ANY);
		int ok = fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
		if (fd >= 0)
			close(fd);
		if (ok)
			return port;
	}
	/* No room below the range (or none free): one the kernel picks. */
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof sa;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHECK(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
	CHECK(getsockname(fd, (struct sockaddr *)&sa, &len) == 0);
	close(fd);
	return ntohs(sa.sin_port);
}
