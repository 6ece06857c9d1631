/* The tests' HTTP client (http.h). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "support/clock.h"
#include "support/http.h"

int http_dial(const char *addr, uint16_t port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	inet_pton(AF_INET, addr != NULL ? addr : "127.0.0.1", &sa.sin_addr);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* Bytes until @p n are in, the peer closes, or the deadline. @return bytes */
static size_t read_some(int fd, char *p, size_t n, uint64_t deadline, int *closed)
{
	size_t have = 0;
	while (have < n && now_ms() < deadline) {
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		if (poll(&pf, 1, 100) <= 0)
			continue;
		ssize_t got = recv(fd, p + have, n - have, 0);
		if (got <= 0) {
			*closed = 1;
			break;
		}
		have += (size_t)got;
	}
	return have;
}

void http_ask(int fd, const char *method, const char *path, const char *extra,
	      struct http_answer *a)
{
	char req[2048];
	uint64_t deadline = now_ms() + 10000;

	memset(a, 0, sizeof *a);
	/* Extra lines that start with their own Host replace the default one. */
	int own_host = extra != NULL && strncasecmp(extra, "Host:", 5) == 0;
	int n = snprintf(req, sizeof req, "%s %s HTTP/1.1\r\n%s%s\r\n", method, path,
			 own_host ? "" : "Host: 127.0.0.1\r\n", extra != NULL ? extra : "");
	if (fd < 0 || send(fd, req, (size_t)n, MSG_NOSIGNAL) != n)
		return;
	/* The head, a byte at a time: what follows it is the body's. */
	size_t h = 0;
	while (h < sizeof a->head - 1 && (h < 4 || memcmp(a->head + h - 4, "\r\n\r\n", 4) != 0)) {
		if (read_some(fd, a->head + h, 1, deadline, &a->closed) != 1)
			return;
		h++;
	}
	a->head[h] = '\0';
	if (sscanf(a->head, "HTTP/1.1 %d", &a->status) != 1)
		return;
	char v[32];
	a->body_len = strtoul(http_field(a, "Content-Length", v, sizeof v), NULL, 10);
	size_t want = strcasecmp(method, "HEAD") == 0 ? 0 : a->body_len; /* no body follows */
	a->body = malloc(want + 1);
	if (a->body == NULL) {
		a->status = 0;
		return;
	}
	size_t got = read_some(fd, a->body, want, deadline, &a->closed);
	a->body[got] = '\0';
	if (got != want)
		a->status = 0;
}

int http_closed_within(int fd, int ms)
{
	char buf[256];
	uint64_t deadline = now_ms() + (uint64_t)ms;
	while (now_ms() < deadline) {
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		if (poll(&pf, 1, 100) <= 0)
			continue;
		if (recv(fd, buf, sizeof buf, 0) <= 0)
			return 1;
	}
	return 0;
}

void http_get(uint16_t port, const char *path, struct http_answer *a)
{
	int fd = http_dial(NULL, port);
	http_ask(fd, "GET", path, "Connection: close\r\n", a);
	if (fd >= 0)
		close(fd);
}

const char *http_field(const struct http_answer *a, const char *name, char *buf, size_t cap)
{
	size_t n = strlen(name);
	buf[0] = '\0';
	for (const char *l = strstr(a->head, "\r\n"); l != NULL; l = strstr(l + 2, "\r\n")) {
		if (strncasecmp(l + 2, name, n) == 0 && l[2 + n] == ':') {
			const char *v = l + 3 + n, *end = strstr(v, "\r\n");
			while (*v == ' ')
				v++;
			snprintf(buf, cap, "%.*s", (int)(end != NULL ? end - v : 0), v);
			break;
		}
	}
	return buf;
}

void http_answer_free(struct http_answer *a)
{
	free(a->body);
	a->body = NULL;
}
