/* sb-rr: a minimal closed-loop request/reply load generator for the router
 * (the seed of sb-bench): C connections x W requests in flight, one echo
 * responder, throughput, latency percentiles and router CPU per request. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <switchboard/proto.h>

#define MAX_CONNS 64
#define OUT_CAP   (1u << 20)

/* One connection with batched I/O: frames accumulate in `out` and go in one
 * write per loop pass; reads take 64 KiB and split every frame in it. */
struct conn {
	int fd;
	struct sb_splitter *sp;
	uint8_t in[65536];
	uint8_t *out;
	size_t out_len;
	unsigned inflight;
	uint64_t next_id;
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int dial(uint16_t port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		perror("connect");
		exit(1);
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

static void queue(struct conn *c, const struct sb_msg *m)
{
	long n = sb_encode(m, c->out + c->out_len, OUT_CAP - c->out_len);
	if (n < 0) {
		fprintf(stderr, "sb-rr: encode: %s\n", sb_strerror((int)n));
		exit(1);
	}
	c->out_len += (size_t)n;
}

static void flush(struct conn *c)
{
	size_t off = 0;
	while (off < c->out_len) {
		ssize_t w = write(c->fd, c->out + off, c->out_len - off);
		if (w < 0 && errno == EAGAIN) {
			struct pollfd p = {.fd = c->fd, .events = POLLOUT};
			poll(&p, 1, 100);
			continue;
		}
		if (w <= 0) {
			perror("sb-rr: write");
			exit(1);
		}
		off += (size_t)w;
	}
	c->out_len = 0;
}

/* Reads what is there and calls fn for every whole frame. */
static int pump(struct conn *c, void (*fn)(struct conn *, struct sb_msg *, void *), void *ud)
{
	ssize_t n = read(c->fd, c->in, sizeof c->in);
	if (n <= 0)
		return n == 0 || errno != EAGAIN ? -1 : 0;
	const uint8_t *p = c->in;
	size_t len = (size_t)n;
	struct sb_view f;
	while (sb_splitter_next(c->sp, &p, &len, &f, NULL) == 1) {
		struct sb_msg m;
		if (sb_decode(f.ptr, f.len, 0, &m, NULL) == 0)
			fn(c, &m, ud);
	}
	return 1;
}

static void expect_kind(struct conn *c, unsigned kind)
{
	uint8_t buf[4096];
	struct sb_msg m;
	size_t have = 0;
	fcntl(c->fd, F_SETFL, 0);
	for (;;) {
		ssize_t n = read(c->fd, buf + have, sizeof buf - have);
		if (n <= 0) {
			fprintf(stderr, "sb-rr: router closed during set-up\n");
			exit(1);
		}
		have += (size_t)n;
		if (have >= 4 &&
		    have >= 4 + (size_t)(buf[0] << 24 | buf[1] << 16 | buf[2] << 8 | buf[3]))
			break;
	}
	if (sb_decode(buf, have, 0, &m, NULL) != 0 || m.kind != kind) {
		fprintf(stderr, "sb-rr: expected %s during set-up\n", sb_kind_name(kind));
		exit(1);
	}
	fcntl(c->fd, F_SETFL, O_NONBLOCK);
}

static struct conn *open_conn(uint16_t port, const char *role)
{
	struct conn *c = calloc(1, sizeof *c);
	struct sb_msg h = {.kind = SB_HELLO, .version = 1};
	c->fd = dial(port);
	c->sp = sb_splitter_new(0);
	c->out = malloc(OUT_CAP);
	h.role = (struct sb_view){(const uint8_t *)role, (uint32_t)strlen(role)};
	queue(c, &h);
	flush(c);
	expect_kind(c, SB_WELCOME);
	return c;
}

/* ---- responder ---------------------------------------------------------- */

static atomic_int stopping;

static void echo(struct conn *c, struct sb_msg *m, void *ud)
{
	(void)ud;
	if (m->kind != SB_REQUEST)
		return;
	struct sb_msg r = {.kind = SB_REPLY, .id = m->id, .payload = m->payload};
	r.outcome = (struct sb_view){(const uint8_t *)"ok", 2};
	queue(c, &r);
	if (c->out_len > OUT_CAP - 70000)
		flush(c);
}

static void *responder(void *arg)
{
	struct conn *c = arg;
	while (!atomic_load(&stopping)) {
		struct pollfd p = {.fd = c->fd, .events = POLLIN};
		if (poll(&p, 1, 100) <= 0)
			continue;
		while (pump(c, echo, NULL) > 0)
			;
		flush(c);
	}
	return NULL;
}

/* ---- clients ------------------------------------------------------------ */

/* Log-linear latency histogram: 64 sub-buckets per power of two (~1.6%). */
#define SUB 64
static uint64_t hist[64 * SUB];
static uint64_t hist_n;
static int measuring;
static uint64_t completed;
static size_t payload_size = 64;

static void record(uint64_t ns)
{
	unsigned e = ns < SUB ? 0 : 63 - (unsigned)__builtin_clzll(ns) - 5;
	unsigned idx = ns < SUB ? (unsigned)ns : e * SUB + (unsigned)(ns >> e);
	if (idx >= 64 * SUB)
		idx = 64 * SUB - 1;
	hist[idx]++;
	hist_n++;
}

static double percentile(double q)
{
	uint64_t want = (uint64_t)ceil(q * (double)hist_n), seen = 0;
	for (unsigned i = 0; i < 64 * SUB; i++) {
		seen += hist[i];
		if (seen >= want && hist[i] > 0) {
			unsigned e = i / SUB, m = i % SUB;
			return i < SUB ? (double)i : (double)((uint64_t)(m + SUB) << (e - 1));
		}
	}
	return 0;
}

static void send_request(struct conn *c)
{
	static uint8_t payload[1 << 20];
	size_t n = payload_size;
	/* bin: the send time rides in the payload, the router never looks. */
	payload[0] = 0xc6;
	payload[1] = (uint8_t)((n - 5) >> 24);
	payload[2] = (uint8_t)((n - 5) >> 16);
	payload[3] = (uint8_t)((n - 5) >> 8);
	payload[4] = (uint8_t)(n - 5);
	uint64_t t = now_ns();
	memcpy(payload + 5, &t, sizeof t);
	struct sb_msg m = {.kind = SB_REQUEST, .id = ++c->next_id, .timeout_ms = 30000};
	m.name = (struct sb_view){(const uint8_t *)"bench.echo", 10};
	m.payload = (struct sb_view){payload, (uint32_t)n};
	queue(c, &m);
	c->inflight++;
}

static void on_reply(struct conn *c, struct sb_msg *m, void *ud)
{
	(void)ud;
	if (m->kind != SB_REPLY) {
		fprintf(stderr, "sb-rr: got %s code %u\n", sb_kind_name(m->kind), m->code);
		exit(1);
	}
	uint64_t t;
	memcpy(&t, m->payload.ptr + 5, sizeof t);
	if (measuring) {
		record(now_ns() - t);
		completed++;
	}
	c->inflight--;
	send_request(c);
}

static double cpu_seconds(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (f == NULL || fgets(buf, sizeof buf, f) == NULL) {
		if (f)
			fclose(f);
		return 0;
	}
	fclose(f);
	char *p = strrchr(buf, ')');
	unsigned long ut = 0, st = 0;
	/* fields after ")": state(3) ... utime(14) stime(15) */
	sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st);
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static pid_t start_router(const char *path, const char *shards, uint16_t *port)
{
	int out[2];
	char line[256];
	if (pipe(out) != 0)
		exit(1);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(out[1], STDOUT_FILENO);
		execl(path, path, "--port", "0", "--shards", shards, "--log-level", "0",
		      (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	FILE *f = fdopen(out[0], "r");
	if (fgets(line, sizeof line, f) == NULL || strstr(line, "127.0.0.1:") == NULL) {
		fprintf(stderr, "sb-rr: router did not start\n");
		exit(1);
	}
	*port = (uint16_t)atoi(strstr(line, "127.0.0.1:") + 10);
	return pid;
}

int main(int argc, char **argv)
{
	const char *router = NULL, *shards = "2";
	unsigned conns = 4, window = 64;
	double warmup = 1, seconds = 5;
	static const struct option opts[] = {
		{"router", required_argument, NULL, 'r'}, {"shards", required_argument, NULL, 's'},
		{"conns", required_argument, NULL, 'c'},  {"window", required_argument, NULL, 'w'},
		{"size", required_argument, NULL, 'z'},   {"seconds", required_argument, NULL, 't'},
		{"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
	};
	int o;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'r':
			router = optarg;
			break;
		case 's':
			shards = optarg;
			break;
		case 'c':
			conns = (unsigned)atoi(optarg);
			break;
		case 'w':
			window = (unsigned)atoi(optarg);
			break;
		case 'z':
			payload_size = (size_t)atol(optarg);
			break;
		case 't':
			seconds = atof(optarg);
			break;
		default:
			printf("usage: sb-rr --router PATH [--shards N] [--conns C] [--window W]\n"
			       "             [--size BYTES] [--seconds S]\n"
			       "Starts PATH (the switchboard daemon), an echo responder and C x W\n"
			       "requests in flight; prints req/s, latency percentiles and the\n"
			       "router's CPU-seconds per million requests.\n");
			return o == 'h' ? 0 : 2;
		}
	}
	if (router == NULL || conns == 0 || conns > MAX_CONNS || window == 0 || payload_size < 16 ||
	    payload_size > (1u << 19)) {
		fprintf(stderr, "sb-rr: need --router; 1..64 conns; size 16..524288\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	uint16_t port;
	pid_t pid = start_router(router, shards, &port);

	struct conn *resp = open_conn(port, "service");
	struct sb_msg reg = {.kind = SB_REGISTER, .id = 1};
	reg.name = (struct sb_view){(const uint8_t *)"bench.echo", 10};
	queue(resp, &reg);
	flush(resp);
	expect_kind(resp, SB_ACK);
	pthread_t rt;
	pthread_create(&rt, NULL, responder, resp);

	struct conn *c[MAX_CONNS];
	struct pollfd pfd[MAX_CONNS];
	for (unsigned i = 0; i < conns; i++) {
		c[i] = open_conn(port, "client");
		for (unsigned k = 0; k < window; k++)
			send_request(c[i]);
		flush(c[i]);
		pfd[i] = (struct pollfd){.fd = c[i]->fd, .events = POLLIN};
	}
	uint64_t t0 = now_ns(), start = 0, end = 0;
	double cpu0 = 0;
	for (;;) {
		uint64_t t = now_ns();
		if (!measuring && start == 0 && t - t0 >= (uint64_t)(warmup * 1e9)) {
			measuring = 1;
			start = t;
			cpu0 = cpu_seconds(pid);
		}
		if (measuring && t - start >= (uint64_t)(seconds * 1e9)) {
			end = t;
			break;
		}
		if (poll(pfd, conns, 1000) <= 0) {
			fprintf(stderr, "sb-rr: no reply for 1 s\n");
			return 1;
		}
		for (unsigned i = 0; i < conns; i++)
			if (pfd[i].revents) {
				while (pump(c[i], on_reply, NULL) > 0)
					;
				flush(c[i]);
			}
	}
	double cpu = cpu_seconds(pid) - cpu0, secs = (double)(end - start) / 1e9;
	printf("sb-rr: %u conns x %u in flight, %zu-byte payload, %s shards, %.1f s\n", conns,
	       window, payload_size, shards, secs);
	printf("  throughput  %.0f req/s\n", (double)completed / secs);
	printf("  latency     p50 %.0f us  p90 %.0f us  p99 %.0f us  p99.9 %.0f us\n",
	       percentile(0.5) / 1e3, percentile(0.9) / 1e3, percentile(0.99) / 1e3,
	       percentile(0.999) / 1e3);
	printf("  router CPU  %.2f CPU-s per million requests (%.2f cores)\n",
	       cpu / ((double)completed / 1e6), cpu / secs);
	atomic_store(&stopping, 1);
	pthread_join(rt, NULL);
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	return 0;
}
