/* sb-bench's responder: the handler the load is aimed at, in its own process
 * so its CPU is measured apart from the generator's. It answers through the
 * router (a service), through NATS (queue-group and plain subscribers), or
 * itself (direct: it plays the router's part of the handshake and answers
 * REQUEST frames with REPLY frames exactly as the router would deliver them). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <switchboard/proto.h>

#include "bench.h"

#define RSP_READ_MAX (256u << 10) /* one read per ready connection per pass */
#define RSP_MAX_CONN 32768        /* conn-10k, direct: every load connection is ours */

struct rsp {
	int nats;                /* 1: NATS protocol, 0: switchboard frames */
	int ep;                  /* epoll instance */
	int lfd;                 /* direct: listening socket, else -1 */
	unsigned chunks;         /* stream: chunk replies before the final one */
	size_t chunk_size;       /* bytes per chunk */
	struct sbb_stats *stats; /* shared with the harness */
	uint64_t fired;          /* one-way messages seen, published per pass */
	unsigned nconns;
	struct sbb_conn *conns[RSP_MAX_CONN];
	unsigned ndirty;
	struct sbb_conn *dirty[RSP_MAX_CONN]; /* connections with output this pass */
};

static void mark_dirty(struct rsp *r, struct sbb_conn *c)
{
	if (c->out_len > 0 && !c->dirty) {
		c->dirty = 1;
		r->dirty[r->ndirty++] = c;
	}
}

static struct sbb_conn *add_conn(struct rsp *r, int fd)
{
	struct sbb_conn *c = malloc(sizeof *c);
	if (c == NULL || r->nconns == RSP_MAX_CONN) {
		fprintf(stderr, "sb-bench responder: too many connections\n");
		exit(1);
	}
	sbb_conn_init(c, fd, r->nconns);
	r->conns[r->nconns++] = c;
	return c;
}

static void watch(struct rsp *r, struct sbb_conn *c)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
	fcntl(c->fd, F_SETFL, O_NONBLOCK);
	epoll_ctl(r->ep, EPOLL_CTL_ADD, c->fd, &ev);
}

/* ---- switchboard frames ------------------------------------------------- */

static void sb_answer(struct rsp *r, struct sbb_conn *c, const struct sb_msg *q)
{
	struct sb_msg m = {.kind = SB_REPLY, .id = q->id};
	for (unsigned k = 0; k < r->chunks; k++) {
		m.flags = SB_F_MORE | SB_F_CHUNK;
		m.outcome = (struct sb_view){(const uint8_t *)"chunk", 5};
		sbb_sb_stamped(c, &m, 0, r->chunk_size);
	}
	/* The final reply echoes the request: its stamp makes the latency
	 * the time to the last byte of the stream. */
	m.flags = 0;
	m.outcome = (struct sb_view){(const uint8_t *)"ok", 2};
	m.payload = q->payload;
	/* Header, then the payload copied once: as the router forwards it. */
	uint8_t *p = sbb_out_reserve(c, 64 + q->payload.len);
	long h = sb_encode_head(&m, p, 64);
	if (h < 0)
		return;
	memcpy(p + h, q->payload.ptr, q->payload.len);
	c->out_len += (size_t)h + q->payload.len;
}

static void sb_frame(struct rsp *r, struct sbb_conn *c, const struct sb_msg *q)
{
	struct sb_msg m = {.id = q->id};
	switch (q->kind) {
	case SB_REQUEST:
		sb_answer(r, c, q);
		break;
	case SB_SEND:
		r->fired++;
		break;
	case SB_HELLO: /* direct: the router's part */
		m.kind = SB_WELCOME;
		m.version = SB_PROTO_VERSION;
		m.peer = (struct sb_view){(const uint8_t *)"bench-direct", 12};
		m.peer_id = c->idx + 1;
		m.max_frame = SB_FRAME_MAX_DEFAULT;
		sbb_sb_queue(c, &m);
		break;
	case SB_REGISTER:
		m.kind = SB_ACK;
		sbb_sb_queue(c, &m);
		break;
	case SB_PING:
		m.kind = SB_PONG;
		sbb_sb_queue(c, &m);
		break;
	case SB_ERROR:
		fprintf(stderr, "sb-bench responder: ERROR %u: %.*s\n", q->code, (int)q->text.len,
			(const char *)q->text.ptr);
		break;
	default:
		break;
	}
}

static int sb_input(struct rsp *r, struct sbb_conn *c, const uint8_t *p, size_t n)
{
	struct sb_view f;
	int rc;
	while ((rc = sb_splitter_next(c->sp, &p, &n, &f, NULL)) == 1) {
		struct sb_msg m;
		if (sb_decode(f.ptr, f.len, 0, &m, NULL) != 0)
			return -1;
		sb_frame(r, c, &m);
	}
	return rc;
}

/* A service connection to the router, registered for @p names and for
 * @p idle more (bench.idle.0, ...) that no load is aimed at. */
static int sb_service(struct rsp *r, const char *host, uint16_t port, const char *const *names,
		      unsigned nnames, unsigned idle)
{
	struct sbb_conn *c = add_conn(r, sbb_dial(host, port));
	if (sbb_sb_hello(c, "service") != 0)
		return -1;
	for (unsigned i = 0; i < nnames; i++) {
		struct sb_msg reg = {.kind = SB_REGISTER, .id = i + 1};
		reg.name = (struct sb_view){(const uint8_t *)names[i], (uint32_t)strlen(names[i])};
		sbb_sb_queue(c, &reg);
		if (sbb_conn_flush_all(c) != 0 || sbb_sb_expect(c, SB_ACK) != 0)
			return -1;
	}
	if (idle > 0 && sbb_sb_register_many(c, "bench.idle.", 0, idle) != 0)
		return -1;
	watch(r, c);
	return 0;
}

/* ---- NATS --------------------------------------------------------------- */

static void nats_msg(void *ud, struct sbb_conn *c, const struct sbb_nats_msg *q)
{
	struct rsp *r = ud;
	if (q->reply == NULL) {
		r->fired++;
		return;
	}
	for (unsigned k = 0; k < r->chunks; k++) {
		uint8_t *d = sbb_nats_pub(c, q->reply, q->reply_len, NULL, 0, r->chunk_size);
		memset(d, 0, SBB_STAMP_LEN);
	}
	uint8_t *d = sbb_nats_pub(c, q->reply, q->reply_len, NULL, 0, q->len);
	memcpy(d, q->data, q->len);
}

static int nats_input(struct rsp *r, struct sbb_conn *c, const uint8_t *p, size_t n)
{
	if (c->in_len > 0) {
		sbb_in_keep(c, p, n);
		long used = sbb_nats_parse(c, c->in, c->in_len, nats_msg, r);
		if (used < 0)
			return -1;
		memmove(c->in, c->in + used, c->in_len - (size_t)used);
		c->in_len -= (size_t)used;
		return 0;
	}
	long used = sbb_nats_parse(c, p, n, nats_msg, r);
	if (used < 0)
		return -1;
	if ((size_t)used < n)
		sbb_in_keep(c, p + used, n - (size_t)used);
	return 0;
}

static int nats_subscriber(struct rsp *r, const char *host, uint16_t port, const char *subs)
{
	struct sbb_conn *c = add_conn(r, -1);
	if (sbb_nats_connect(c, host, port) != 0)
		return -1;
	sbb_out_put(c, subs, strlen(subs));
	if (sbb_nats_sync(c) != 0)
		return -1;
	watch(r, c);
	return 0;
}

/* ---- the loop ----------------------------------------------------------- */

static void accept_all(struct rsp *r)
{
	int fd;
	while ((fd = accept4(r->lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		struct sbb_conn *c = add_conn(r, fd);
		c->sp = sb_splitter_new(0);
		watch(r, c);
	}
}

static void drop(struct rsp *r, struct sbb_conn *c)
{
	epoll_ctl(r->ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	/* Through the router or NATS, a lost connection ends the responder's
	 * purpose; direct clients come and go between runs. */
	if (r->lfd < 0)
		exit(0);
}

static void flush_dirty(struct rsp *r)
{
	for (unsigned i = 0; i < r->ndirty; i++) {
		struct sbb_conn *c = r->dirty[i];
		c->dirty = 0;
		if (c->fd < 0)
			continue;
		int rc = sbb_conn_flush(c);
		if (rc < 0) {
			drop(r, c);
		} else if (rc == 1 && !c->blocked) {
			/* Stop reading while the peer does not take our output:
			 * reading on would only grow this buffer without bound. */
			struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
			c->blocked = 1;
			epoll_ctl(r->ep, EPOLL_CTL_MOD, c->fd, &ev);
		}
	}
	r->ndirty = 0;
}

static void serve(struct rsp *r)
{
	static uint8_t buf[RSP_READ_MAX];
	struct epoll_event evs[256];
	for (;;) {
		int n = epoll_wait(r->ep, evs, 256, -1);
		if (n < 0 && errno != EINTR)
			exit(1);
		for (int i = 0; i < n; i++) {
			struct sbb_conn *c = evs[i].data.ptr;
			if (c == NULL) {
				accept_all(r);
				continue;
			}
			if (c->blocked && (evs[i].events & EPOLLOUT)) {
				int rc = sbb_conn_flush(c);
				if (rc == 0) {
					struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
					c->blocked = 0;
					epoll_ctl(r->ep, EPOLL_CTL_MOD, c->fd, &ev);
				} else if (rc < 0) {
					drop(r, c);
				}
				continue;
			}
			ssize_t got = read(c->fd, buf, sizeof buf);
			if (got < 0 && errno == EAGAIN)
				continue;
			if (got <= 0 || (r->nats ? nats_input(r, c, buf, (size_t)got)
						 : sb_input(r, c, buf, (size_t)got)) < 0) {
				drop(r, c);
				continue;
			}
			mark_dirty(r, c);
		}
		flush_dirty(r);
		if (r->stats)
			atomic_store_explicit(&r->stats->fired, r->fired, memory_order_relaxed);
	}
}

static int split_hostport(char *s, const char **host, uint16_t *port)
{
	char *colon = strrchr(s, ':');
	if (colon == NULL)
		return -1;
	*colon = 0;
	*host = s;
	*port = (uint16_t)atoi(colon + 1);
	return *port ? 0 : -1;
}

int sbb_responder_main(int argc, char **argv)
{
	static struct rsp r = {.lfd = -1};
	static const struct option opts[] = {
		{"proto", required_argument, NULL, 'p'},
		{"connect", required_argument, NULL, 'c'},
		{"listen", no_argument, NULL, 'l'},
		{"chunks", required_argument, NULL, 'k'},
		{"chunk-size", required_argument, NULL, 's'},
		{"fan", required_argument, NULL, 'f'},
		{"names", required_argument, NULL, 'n'},
		{"stats-fd", required_argument, NULL, 'S'},
		{NULL, 0, NULL, 0},
	};
	const char *host = NULL;
	uint16_t port = 0;
	unsigned fan = 0, idle = 0;
	int o, listen = 0;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'p':
			r.nats = strcmp(optarg, "nats") == 0;
			break;
		case 'c':
			if (split_hostport(optarg, &host, &port) != 0)
				return 2;
			break;
		case 'l':
			listen = 1;
			break;
		case 'k':
			r.chunks = (unsigned)atoi(optarg);
			break;
		case 's':
			r.chunk_size = (size_t)atol(optarg);
			break;
		case 'f':
			fan = (unsigned)atoi(optarg);
			break;
		case 'n':
			idle = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'S': {
			void *p = mmap(NULL, sizeof *r.stats, PROT_READ | PROT_WRITE, MAP_SHARED,
				       atoi(optarg), 0);
			r.stats = p == MAP_FAILED ? NULL : p;
			break;
		}
		default:
			return 2;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	r.ep = epoll_create1(EPOLL_CLOEXEC);
	if (r.chunks && r.chunk_size < SBB_STAMP_LEN + 5)
		r.chunk_size = SBB_STAMP_LEN + 5;
	int rc = 0;
	if (listen) {
		r.lfd = sbb_listen(&port);
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
		fcntl(r.lfd, F_SETFL, O_NONBLOCK);
		rc = r.lfd < 0 ? -1 : epoll_ctl(r.ep, EPOLL_CTL_ADD, r.lfd, &ev);
	} else if (host == NULL) {
		fprintf(stderr, "sb-bench responder: need --connect HOST:PORT or --listen\n");
		return 2;
	} else if (r.nats) {
		rc = nats_subscriber(&r, host, port,
				     "SUB bench.echo bench 1\r\nSUB bench.fire bench 2\r\n");
		for (unsigned i = 0; i < fan && rc == 0; i++)
			rc = nats_subscriber(&r, host, port, "SUB bench.fan 3\r\n");
	} else {
		static const char *const names[] = {"bench.echo", "bench.fire"};
		static const char *const fan_names[] = {"bench.fan"};
		rc = sb_service(&r, host, port, names, 2, idle);
		for (unsigned i = 0; i < fan && rc == 0; i++)
			rc = sb_service(&r, host, port, fan_names, 1, 0);
	}
	if (rc != 0) {
		fprintf(stderr, "sb-bench responder: set-up failed\n");
		return 1;
	}
	/* The harness starts the load only after this line. */
	printf("ready %u\n", port);
	fflush(stdout);
	serve(&r);
	return 0;
}
