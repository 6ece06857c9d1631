/* sb-bench's sockets: dialing, listening, and connections whose output is
 * batched into one write per loop pass (the generator must not be what
 * limits the router, and a write per message would make it so). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <switchboard/proto.h>

#include "bench.h"

uint64_t sbb_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int addr_of(const char *host, uint16_t port, struct sockaddr_in *sa)
{
	memset(sa, 0, sizeof *sa);
	sa->sin_family = AF_INET;
	sa->sin_port = htons(port);
	if (strcmp(host, "localhost") == 0)
		host = "127.0.0.1";
	return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

int sbb_dial(const char *host, uint16_t port)
{
	return sbb_dial_from(NULL, host, port);
}

int sbb_dial_from(const char *src, const char *host, uint16_t port)
{
	struct sockaddr_in sa, from;
	int one = 1;
	if (addr_of(host, port, &sa) != 0 || (src != NULL && addr_of(src, 0, &from) != 0))
		return -1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	/* The port is left to connect(), which picks it per destination: one
	 * source address then serves ~28,000 connections to each port, not in
	 * total. */
	if (src != NULL &&
	    (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) != 0 ||
	     bind(fd, (struct sockaddr *)&from, sizeof from) != 0)) {
		close(fd);
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		close(fd);
		return -1;
	}
	/* Batching is ours to do: Nagle would add its own 40 ms waits. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

int sbb_listen(uint16_t *port)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof sa;
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	addr_of("127.0.0.1", *port, &sa);
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 4096) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
		close(fd);
		return -1;
	}
	*port = ntohs(sa.sin_port);
	return fd;
}

uint16_t sbb_free_port(void)
{
	uint16_t port = 0;
	int fd = sbb_listen(&port);
	if (fd < 0)
		return 0;
	close(fd);
	return port;
}

void sbb_conn_init(struct sbb_conn *c, int fd, unsigned idx)
{
	memset(c, 0, sizeof *c);
	c->fd = fd;
	c->idx = idx;
}

void sbb_conn_free(struct sbb_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	if (c->sp)
		sb_splitter_free(c->sp);
	free(c->out);
	free(c->in);
	c->fd = -1;
	c->sp = NULL;
	c->out = c->in = NULL;
}

static void *grow(uint8_t *p, size_t *cap, size_t need)
{
	/* Small to start: conn-10k holds ten thousand of these. */
	size_t n = *cap ? *cap : 4096;
	while (n < need)
		n *= 2;
	/* calloc'd once: filler bytes of payloads are whatever the buffer
	 * holds, and must never be uninitialised memory. */
	uint8_t *q = p ? realloc(p, n) : calloc(1, n);
	if (q == NULL) {
		perror("sb-bench: out of memory");
		exit(1);
	}
	if (p)
		memset(q + *cap, 0, n - *cap);
	*cap = n;
	return q;
}

uint8_t *sbb_out_reserve(struct sbb_conn *c, size_t n)
{
	if (c->out_len + n > c->out_cap)
		c->out = grow(c->out, &c->out_cap, c->out_len + n);
	return c->out + c->out_len;
}

void sbb_out_put(struct sbb_conn *c, const void *p, size_t n)
{
	memcpy(sbb_out_reserve(c, n), p, n);
	c->out_len += n;
}

int sbb_conn_flush(struct sbb_conn *c)
{
	size_t off = 0;
	while (off < c->out_len) {
		ssize_t w = write(c->fd, c->out + off, c->out_len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN)
			break;
		if (w <= 0)
			return -1;
		off += (size_t)w;
	}
	/* Keep the unwritten tail at the front; it is rare and usually small. */
	memmove(c->out, c->out + off, c->out_len - off);
	c->out_len -= off;
	return c->out_len > 0;
}

int sbb_conn_flush_all(struct sbb_conn *c)
{
	int r;
	while ((r = sbb_conn_flush(c)) == 1) {
		struct pollfd p = {.fd = c->fd, .events = POLLOUT};
		poll(&p, 1, 100);
	}
	return r;
}

void sbb_in_keep(struct sbb_conn *c, const uint8_t *p, size_t n)
{
	if (c->in_len + n > c->in_cap)
		c->in = grow(c->in, &c->in_cap, c->in_len + n);
	memmove(c->in + c->in_len, p, n);
	c->in_len += n;
}

ssize_t sbb_recv_wait(int fd, uint8_t *buf, size_t cap, int timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	if (poll(&p, 1, timeout_ms) <= 0)
		return -1;
	ssize_t n = read(fd, buf, cap);
	return n > 0 ? n : -1;
}
