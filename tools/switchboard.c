/* The switchboard daemon, placeholder edition: it listens where the router
 * will, speaks the handshake and ping, and says "unsupported" to the rest.
 * The routing engine (issue 3) replaces its loop; the flags stay. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <switchboard/proto.h>

#define MAX_CONNS 64

struct conn {
	int fd;                 /* -1 when the slot is free */
	struct sb_splitter *sp; /* cuts the byte stream into frames */
	int hello;              /* HELLO received */
	char name[SB_PEER_MAX + 1];
};

static volatile sig_atomic_t stop;
static uint32_t max_frame = SB_FRAME_MAX_DEFAULT;
static unsigned next_peer = 1;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: switchboard [--addr ADDR] [--port PORT] [--max-frame BYTES]\n"
		"\n"
		"Starts the Switchboard router. This build is the protocol placeholder:\n"
		"it answers HELLO, PING and GOODBYE and refuses everything else with\n"
		"\"unsupported\" until the routing engine lands.\n"
		"\n"
		"  --addr ADDR        IPv4 address to listen on (default 127.0.0.1)\n"
		"  --port PORT        TCP port, 0 for any free port (default 7400)\n"
		"  --max-frame BYTES  largest frame body accepted (default %u, max %u)\n"
		"  --help             this text\n"
		"  --version          print the version and exit\n",
		SB_FRAME_MAX_DEFAULT, SB_FRAME_MAX_LIMIT);
}

/* Writes a whole buffer; a placeholder can afford blocking writes. */
static int send_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int send_msg(int fd, const struct sb_msg *m)
{
	uint8_t buf[SB_HEADER_MAX + 64];
	long n = sb_encode(m, buf, sizeof buf);
	return n < 0 ? -1 : send_all(fd, buf, (size_t)n);
}

static int send_error(int fd, uint64_t id, int err, const char *text, int fatal)
{
	struct sb_msg m = {.kind = SB_ERROR, .id = id, .code = (uint32_t)-err};
	m.flags = fatal ? SB_F_FATAL : 0;
	m.text.ptr = (const uint8_t *)text;
	m.text.len = (uint32_t)strlen(text);
	return send_msg(fd, &m);
}

/* Answers one frame. Returns -1 when the connection should close. */
static int handle(struct conn *c, const struct sb_msg *in)
{
	struct sb_msg out = {.id = in->id};

	if (!c->hello && in->kind != SB_HELLO) {
		send_error(c->fd, in->id, SB_EBADFRAME, "HELLO must come first", 1);
		return -1;
	}
	switch (in->kind) {
	case SB_HELLO:
		if (in->version != SB_PROTO_VERSION) {
			send_error(c->fd, in->id, SB_EUNSUPPORTED, "protocol version 1 only", 1);
			return -1;
		}
		if (in->peer.ptr != NULL)
			snprintf(c->name, sizeof c->name, "%.*s", (int)in->peer.len,
				 (const char *)in->peer.ptr);
		else
			snprintf(c->name, sizeof c->name, "P%03u", next_peer);
		c->hello = 1;
		out.kind = SB_WELCOME;
		out.version = SB_PROTO_VERSION;
		out.peer.ptr = (const uint8_t *)c->name;
		out.peer.len = (uint32_t)strlen(c->name);
		out.peer_id = next_peer++;
		out.max_frame = max_frame;
		printf("peer %s connected\n", c->name);
		return send_msg(c->fd, &out);
	case SB_PING:
		out.kind = SB_PONG;
		return send_msg(c->fd, &out);
	case SB_GOODBYE:
		return -1;
	default:
		return send_error(c->fd, in->id, SB_EUNSUPPORTED,
				  "routing engine not built yet (placeholder router)", 0);
	}
}

/* Reads what is there and answers every whole frame. -1: close. */
static int on_readable(struct conn *c)
{
	uint8_t buf[16384];
	ssize_t n = read(c->fd, buf, sizeof buf);
	if (n <= 0)
		return -1;

	const uint8_t *in = buf;
	size_t len = (size_t)n;
	struct sb_view f;
	struct sb_fault_info fi;
	int rc;
	while ((rc = sb_splitter_next(c->sp, &in, &len, &f, &fi)) == 1) {
		struct sb_msg m;
		char why[256];
		if ((rc = sb_decode(f.ptr, f.len, 0, &m, &fi)) != 0) {
			sb_fault_describe(&fi, why, sizeof why);
			/* An unknown kind is a newer peer, not a broken one: keep it. */
			if (send_error(c->fd, m.id, rc, why, rc != SB_EUNSUPPORTED) != 0 ||
			    rc != SB_EUNSUPPORTED)
				return -1;
			continue;
		}
		if (handle(c, &m) != 0)
			return -1;
	}
	if (rc < 0) {
		char why[256];
		sb_fault_describe(&fi, why, sizeof why);
		send_error(c->fd, 0, rc, why, 1);
		return -1;
	}
	return 0;
}

static int listen_on(const char *addr, int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int one = 1, fd;

	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
		fprintf(stderr, "switchboard: --addr %s is not an IPv4 address\n", addr);
		return -1;
	}
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 128) != 0)
		goto fail;
	return fd;
fail:
	fprintf(stderr, "switchboard: cannot listen on %s:%d: %s\n", addr, port, strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

static void drop(struct conn *c)
{
	if (c->hello)
		printf("peer %s disconnected\n", c->name);
	close(c->fd);
	sb_splitter_free(c->sp);
	memset(c, 0, sizeof *c);
	c->fd = -1;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"addr", required_argument, NULL, 'a'},      {"port", required_argument, NULL, 'p'},
		{"max-frame", required_argument, NULL, 'm'}, {"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},         {NULL, 0, NULL, 0},
	};
	const char *addr = "127.0.0.1";
	long port = 7400;
	struct conn conns[MAX_CONNS];
	struct pollfd pfd[MAX_CONNS + 1];
	char *end;
	int o;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'a':
			addr = optarg;
			break;
		case 'p':
			port = strtol(optarg, &end, 10);
			if (*end != 0 || port < 0 || port > 65535) {
				fprintf(stderr, "switchboard: --port %s is not a port\n", optarg);
				return 2;
			}
			break;
		case 'm': {
			unsigned long v = strtoul(optarg, &end, 10);
			if (*end != 0 || v < SB_BODY_MIN || v > SB_FRAME_MAX_LIMIT) {
				fprintf(stderr, "switchboard: --max-frame must be %u..%u\n",
					SB_BODY_MIN, SB_FRAME_MAX_LIMIT);
				return 2;
			}
			max_frame = (uint32_t)v;
			break;
		}
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("switchboard %s (protocol %u)\n", SB_VERSION_STRING,
			       SB_PROTO_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}

	int lfd = listen_on(addr, (int)port);
	if (lfd < 0)
		return 1;
	struct sockaddr_in bound;
	socklen_t blen = sizeof bound;
	getsockname(lfd, (struct sockaddr *)&bound, &blen);

	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("switchboard %s: listening on %s:%u (placeholder router: handshake and ping "
	       "only)\n",
	       SB_VERSION_STRING, addr, ntohs(bound.sin_port));

	for (int i = 0; i < MAX_CONNS; i++)
		conns[i].fd = -1;
	while (!stop) {
		pfd[0] = (struct pollfd){.fd = lfd, .events = POLLIN};
		for (int i = 0; i < MAX_CONNS; i++)
			pfd[i + 1] = (struct pollfd){.fd = conns[i].fd, .events = POLLIN};
		if (poll(pfd, MAX_CONNS + 1, -1) < 0)
			continue; /* EINTR: the loop test sees stop */
		if (pfd[0].revents & POLLIN) {
			int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
			int slot = 0;
			while (slot < MAX_CONNS && conns[slot].fd >= 0)
				slot++;
			if (fd >= 0 && slot == MAX_CONNS) {
				send_error(fd, 0, SB_EOVERLOADED, "too many connections", 1);
				close(fd);
			} else if (fd >= 0) {
				conns[slot].sp = sb_splitter_new(max_frame);
				if (conns[slot].sp == NULL) {
					close(fd);
					continue;
				}
				conns[slot].fd = fd;
				conns[slot].hello = 0;
			}
		}
		for (int i = 0; i < MAX_CONNS; i++)
			if (conns[i].fd >= 0 &&
			    (pfd[i + 1].revents & (POLLIN | POLLHUP | POLLERR)) &&
			    on_readable(&conns[i]) != 0)
				drop(&conns[i]);
	}
	for (int i = 0; i < MAX_CONNS; i++)
		if (conns[i].fd >= 0)
			drop(&conns[i]);
	close(lfd);
	printf("switchboard: stopped\n");
	return 0;
}
