/* nats-server in child processes: free ports picked here, the process
 * execed with its output in its scratch directory, readiness seen as its
 * INFO line on a real connection. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support/clock.h"
#include "support/natsd.h"
#include "support/proc.h"
#include "support/testlib.h"

/* Debian installs it in /usr/sbin, which a user's PATH may lack. */
static const char *server_path(void)
{
	static const char *const where[] = {"/usr/sbin/nats-server", "/usr/bin/nats-server"};
	for (unsigned i = 0; i < sizeof where / sizeof where[0]; i++)
		if (access(where[i], X_OK) == 0)
			return where[i];
	return "nats-server";
}

/* 1 once something on port says INFO. */
static int answers_info(uint16_t port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), ok = 0;
	char buf[8];

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 1000) == 1 && recv(fd, buf, 5, MSG_WAITALL) == 5 &&
		    memcmp(buf, "INFO ", 5) == 0)
			ok = 1;
	}
	if (fd >= 0)
		close(fd);
	return ok;
}

static int spawn(struct natsd *d, const struct natsd *all, unsigned n)
{
	const char *argv[40];
	char port[8], mport[8], cluster[48], routes[512], log[96], store[96];
	unsigned a = 0;
	size_t rl = 0;

	snprintf(port, sizeof port, "%u", d->port);
	snprintf(log, sizeof log, "%s/nats.log", d->dir);
	snprintf(store, sizeof store, "%s/js", d->dir);
	argv[a++] = server_path();
	argv[a++] = "-a";
	argv[a++] = "127.0.0.1";
	argv[a++] = "-p";
	argv[a++] = port;
	argv[a++] = "-n";
	argv[a++] = d->name;
	argv[a++] = "-l";
	argv[a++] = log;
	if (d->cport) {
		snprintf(cluster, sizeof cluster, "nats://127.0.0.1:%u", d->cport);
		argv[a++] = "--cluster_name";
		argv[a++] = "sbtest";
		argv[a++] = "--cluster";
		argv[a++] = cluster;
		routes[0] = '\0';
		for (unsigned i = 0; i < n; i++)
			if (all[i].cport != d->cport)
				rl += (size_t)snprintf(routes + rl, sizeof routes - rl,
						       "%snats://127.0.0.1:%u", rl ? "," : "",
						       all[i].cport);
		if (rl > 0) {
			argv[a++] = "--routes";
			argv[a++] = routes;
		}
	}
	if (d->mport) {
		snprintf(mport, sizeof mport, "%u", d->mport);
		argv[a++] = "-m";
		argv[a++] = mport;
	}
	if (d->js) {
		argv[a++] = "-js";
		argv[a++] = "-sd";
		argv[a++] = store;
	}
	for (unsigned i = 0; d->extra && d->extra[i] && a < 39; i++)
		argv[a++] = d->extra[i];
	argv[a] = NULL;
	d->pid = fork();
	if (d->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execv(argv[0], (char *const *)argv);
		execvp("nats-server", (char *const *)argv);
		_exit(127);
	}
	return d->pid > 0 ? 0 : -1;
}

static int await_ready(struct natsd *d)
{
	uint64_t end = now_ms() + 20000;
	int status;

	while (now_ms() < end) {
		if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
			fprintf(stderr, "nats-server %s exited (%d): see %s/nats.log\n", d->name,
				WIFEXITED(status) ? WEXITSTATUS(status) : -1, d->dir);
			d->pid = 0;
			return -1;
		}
		if (answers_info(d->port))
			return 0;
		sleep_ms(10);
	}
	fprintf(stderr, "nats-server %s: no INFO within 20 s\n", d->name);
	return -1;
}

static int attempt(struct natsd *d, unsigned n, int js)
{
	for (unsigned i = 0; i < n; i++) {
		d[i].pid = 0;
		d[i].js = js;
		d[i].port = free_port();
		d[i].cport = n > 1 ? free_port() : 0;
		d[i].mport = d[i].monitor ? free_port() : 0;
		snprintf(d[i].name, sizeof d[i].name, "n%u", i + 1);
		snprintf(d[i].url, sizeof d[i].url, "nats://127.0.0.1:%u", d[i].port);
		snprintf(d[i].dir, sizeof d[i].dir, "/tmp/sb-nats-XXXXXX");
		if (mkdtemp(d[i].dir) == NULL)
			return -1;
	}
	for (unsigned i = 0; i < n; i++)
		if (spawn(&d[i], d, n) != 0)
			return -1;
	for (unsigned i = 0; i < n; i++)
		if (await_ready(&d[i]) != 0)
			return -1;
	return 0;
}

int natsd_start(struct natsd *d, unsigned n, int js)
{
	/* A port free a moment ago may be taken by the time the server binds
	 * it (other suites run beside this one): it exits, and a new set of
	 * ports is tried. */
	for (int tries = 0; tries < 3; tries++) {
		if (attempt(d, n, js) == 0)
			return 0;
		for (unsigned i = 0; i < n; i++)
			natsd_stop(&d[i]);
	}
	return -1;
}

int natsd_restart_in(struct natsd *d, unsigned n, unsigned i)
{
	/* With JetStream a clustered server will not start without routes. */
	if (spawn(&d[i], d, n) != 0)
		return -1;
	return await_ready(&d[i]);
}

int natsd_restart(struct natsd *d)
{
	/* Its routes name the others' cluster ports, which its own list
	 * (without itself) rebuilds: only d itself is needed here when it
	 * is alone, and the others re-dial it when it is not. */
	if (spawn(d, d, 1) != 0)
		return -1;
	return await_ready(d);
}

static void end(struct natsd *d, int sig)
{
	if (d->pid <= 0)
		return;
	reap(d->pid, sig);
	d->pid = 0;
}

void natsd_kill(struct natsd *d)
{
	end(d, SIGKILL);
}

void natsd_stop(struct natsd *d)
{
	char cmd[128];
	end(d, SIGTERM);
	if (d->dir[0] == '\0')
		return;
	snprintf(cmd, sizeof cmd, "rm -rf %s", d->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", d->dir);
	d->dir[0] = '\0';
}

const char *natsd_urls(const struct natsd *d, unsigned n)
{
	static char buf[512];
	size_t l = 0;
	buf[0] = '\0';
	for (unsigned i = 0; i < n; i++)
		l += (size_t)snprintf(buf + l, sizeof buf - l, "%s%s", l ? "," : "", d[i].url);
	return buf;
}

/* HTTP/1.0, so that the body ends with the connection (no chunks). */
char *natsd_monitor(const struct natsd *d, const char *path)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(d->mport)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	char req[256];
	int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	uint64_t end = now_ms() + 10000;
	if (buf == NULL || write(fd, req, (size_t)n) != n) {
		free(buf);
		close(fd);
		return NULL;
	}
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		uint64_t now = now_ms();
		if (now >= end || poll(&p, 1, (int)(end - now)) <= 0)
			break;
		if (len + 1 == cap) {
			char *b = realloc(buf, cap * 2);
			if (b == NULL)
				break;
			buf = b;
			cap *= 2;
		}
		ssize_t r = read(fd, buf + len, cap - len - 1);
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	buf[len] = 0;
	char *body = strstr(buf, "\r\n\r\n");
	if (body == NULL || strncmp(buf, "HTTP/1.", 7) != 0 || strstr(buf, " 200 ") == NULL) {
		free(buf);
		return NULL;
	}
	memmove(buf, body + 4, strlen(body + 4) + 1);
	return buf;
}
