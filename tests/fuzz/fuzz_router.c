/* libFuzzer target for the router as a whole, statefully: each input is the
 * byte stream one connection sends to an in-process router (2 shards) where
 * a well-behaved service answers "fz.echo" and streams "fz.stream". Whatever
 * the bytes (a handshake, registrations, requests to itself or the service,
 * replies, cancels, garbage), the router must not crash or leak, must close
 * the connection once it half-closes, and must go on serving others: after
 * every input a probe connection's request is answered. The same bytes then
 * go to a second router that requires shared secrets, so they meet the
 * CHALLENGE/AUTH path (they cannot get past it: the nonce is fresh), and
 * its own authenticated probe must still be answered. The first router
 * serves the edge too (ws_port): the bytes go there as they are (HTTP:
 * calls, upgrades, refusals) and after an upgrade's head (WebSocket frames;
 * a zero masking key leaves a payload as it is, so the fuzzer reaches the
 * frames inside messages). The second router's edge takes bearer tokens,
 * and gets the bytes as they are too. FZ_LOG=1 turns the routers'
 * connection logs on. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <switchboard/proto.h>
#include <switchboard/router.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_WAIT_MS 5000 /* a hang guard, far above any honest answer time */

/* A connection of the harness: blocking writes, split reads. */
struct fz_conn {
	int fd;
	struct sb_splitter *sp;
	const uint8_t *next;
	size_t left;
	uint8_t in[65536];
	uint8_t frame[SB_FRAME_MAX_DEFAULT];
	struct sb_msg m;
};

static struct sb_router *router, *auth_router;
static _Atomic unsigned long served; /* requests the service answered */

#define FZ_CLIENT_SECRET "fz-client-secret"

static void die(const char *why)
{
	struct sb_router_stats st = {0};
	if (router != NULL)
		sb_router_stats(router, &st);
	fprintf(stderr,
		"fuzz_router: %s (router: %" PRIu64 " connections, %" PRIu64
		" requests in flight, %" PRIu64 " pauses, %" PRIu64 " timeouts)\n",
		why, st.connections, st.inflight, st.pauses, st.timeouts);
	fprintf(stderr, "fuzz_router: the service answered %lu requests\n", served);
	abort();
}

/* 1 once fd is ready for events, 0 after timeout_ms (-1: no limit).
 * libFuzzer's timer signals interrupt poll: retry for what is left. */
static int wait_for(int fd, short events, int timeout_ms)
{
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		int left = timeout_ms;
		if (timeout_ms >= 0) {
			clock_gettime(CLOCK_MONOTONIC, &t);
			left -= (int)((t.tv_sec - t0.tv_sec) * 1000 +
				      (t.tv_nsec - t0.tv_nsec) / 1000000);
			if (left < 0)
				left = 0;
		}
		struct pollfd p = {.fd = fd, .events = events};
		int rc = poll(&p, 1, left);
		if (rc == 1)
			return 1;
		if (rc == 0 || errno != EINTR)
			return 0;
	}
}

static int dial(uint16_t port)
{
	/* Each input's connection leaves a TIME_WAIT behind: spread them over
	 * source addresses in 127.0.0.0/8, or a minute of fuzzing exhausts the
	 * ephemeral ports of one. */
	static uint32_t n;
	struct sockaddr_in src = {.sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(0x7f010000u | (n++ & 0xffffu))};
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	int err = 0;
	socklen_t len = sizeof err;
	/* Non-blocking, so a signal cannot cut the connect short. */
	if (fd < 0 || bind(fd, (struct sockaddr *)&src, sizeof src) != 0 ||
	    fcntl(fd, F_SETFL, O_NONBLOCK) != 0 ||
	    (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS) ||
	    !wait_for(fd, POLLOUT, FZ_WAIT_MS) ||
	    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0 ||
	    fcntl(fd, F_SETFL, 0) != 0) {
		perror("fuzz_router: connect");
		die("cannot connect to the router");
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

static void write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return; /* the router may close on us: reading tells the rest */
		p += w;
		n -= (size_t)w;
	}
}

static void fz_send(struct fz_conn *c, const struct sb_msg *m)
{
	static _Thread_local uint8_t buf[4096];
	long n = sb_encode(m, buf, sizeof buf);
	if (n < 0)
		die("encode");
	write_all(c->fd, buf, (size_t)n);
}

/* The next message: 1, or 0 on close, -1 on timeout. */
static int fz_recv(struct fz_conn *c, int timeout_ms)
{
	for (;;) {
		struct sb_view f;
		int rc = sb_splitter_next(c->sp, &c->next, &c->left, &f, NULL);
		if (rc == 1) {
			struct sb_fault_info fi;
			memcpy(c->frame, f.ptr, f.len);
			if (sb_decode(c->frame, f.len, SB_DECODE_PAYLOAD, &c->m, &fi) == 0)
				return 1;
			/* The router forwards payloads unread (docs/protocol.md), so
			 * a sender's broken payload reaches us; the header must not. */
			if (fi.fault != SB_FAULT_PAYLOAD ||
			    sb_decode(c->frame, f.len, 0, &c->m, NULL) != 0)
				die("the router sent a frame that does not decode");
			c->m.payload = (struct sb_view){NULL, 0};
			return 1;
		}
		if (rc < 0)
			die("the router sent a stream that does not split");
		if (!wait_for(c->fd, POLLIN, timeout_ms))
			return -1;
		ssize_t n = read(c->fd, c->in, sizeof c->in);
		if (n <= 0)
			return 0;
		c->next = c->in;
		c->left = (size_t)n;
	}
}

static struct sb_view str(const char *s)
{
	return (struct sb_view){(const uint8_t *)s, (uint32_t)strlen(s)};
}

static void fz_open(struct fz_conn *c, uint16_t port, const char *role)
{
	c->fd = dial(port);
	c->sp = sb_splitter_new(0);
	struct sb_msg h = {.kind = SB_HELLO, .version = SB_PROTO_VERSION, .role = str(role)};
	fz_send(c, &h);
	if (fz_recv(c, FZ_WAIT_MS) != 1 || c->m.kind != SB_WELCOME)
		die("no welcome");
}

static void fz_expect(struct fz_conn *c, unsigned kind, uint64_t id)
{
	if (fz_recv(c, FZ_WAIT_MS) != 1 || c->m.kind != kind || c->m.id != id)
		die("the service or the probe did not get its answer");
}

static uint16_t port, auth_port, ws_port, auth_ws_port;
static struct fz_conn service, probe, auth_probe;

/* The auth router's "fz.echo", in-process: nothing an input does there can
 * take it away. */
static void local_echo(struct sb_call *call, void *ud)
{
	size_t len;
	const void *p = sb_call_payload(call, &len);
	(void)ud;
	sb_reply(call, "ok", p, len);
}

/* HELLO, then the AUTH a client with the secret sends (docs/protocol.md). */
static void fz_open_auth(struct fz_conn *c, uint16_t to)
{
	static const uint8_t cn[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
	uint8_t msg[64], proof[32];
	unsigned len = sizeof proof;

	c->fd = dial(to);
	c->sp = sb_splitter_new(0);
	struct sb_msg h = {.kind = SB_HELLO, .version = SB_PROTO_VERSION, .role = str("client")};
	fz_send(c, &h);
	if (fz_recv(c, FZ_WAIT_MS) != 1 || c->m.kind != SB_CHALLENGE || c->m.nonce.len != 32)
		die("no challenge");
	memcpy(msg, c->m.nonce.ptr, 32);
	memcpy(msg + 32, cn, sizeof cn);
	if (HMAC(EVP_sha256(), FZ_CLIENT_SECRET, (int)strlen(FZ_CLIENT_SECRET), msg, 48, proof,
		 &len) == NULL)
		die("hmac");
	struct sb_msg a = {.kind = SB_AUTH};
	a.nonce = (struct sb_view){cn, sizeof cn};
	a.proof = (struct sb_view){proof, sizeof proof};
	fz_send(c, &a);
	if (fz_recv(c, FZ_WAIT_MS) != 1 || c->m.kind != SB_WELCOME)
		die("no welcome after auth");
}

/* The service: echoes "fz.echo", streams three chunks then a final reply
 * for "fz.stream", and ignores everything else (cancels included). */
static void *serve(void *arg)
{
	(void)arg;
	for (;;) {
		int rc = fz_recv(&service, -1);
		if (rc == 0)
			return NULL;
		if (rc < 0 || service.m.kind != SB_REQUEST)
			continue;
		struct sb_msg r = {.kind = SB_REPLY, .id = service.m.id, .outcome = str("ok")};
		if (service.m.name.len == 9 && memcmp(service.m.name.ptr, "fz.stream", 9) == 0)
			for (int i = 0; i < 3; i++) {
				struct sb_msg more = r;
				more.flags = SB_F_MORE;
				more.outcome = str("chunk");
				fz_send(&service, &more);
			}
		r.payload = service.m.payload;
		fz_send(&service, &r);
		served++;
	}
}

static void set_up(void)
{
	struct sb_router_config cfg;
	int err;
	sb_router_config_init(&cfg);
	cfg.port = 0;
	cfg.shards = 2;
	cfg.log_level = getenv("FZ_LOG") ? 3 : 0;
	cfg.max_frame = 64 * 1024;
	cfg.ws_port = 0;
	cfg.ws_allow_origin = "https://fz.example, https://*.fz.*:8*"; /* origins are matched */
	router = sb_router_new(&cfg, &err);
	if (router == NULL || sb_router_start(router) != 0)
		die("router did not start");
	port = sb_router_port(router);
	ws_port = sb_router_ws_port(router);
	cfg.ws_port = -1;
	cfg.ws_allow_origin = NULL;

	fz_open(&service, port, "service");
	const char *names[] = {"fz.echo", "fz.stream"};
	for (uint64_t i = 0; i < 2; i++) {
		struct sb_msg reg = {.kind = SB_REGISTER, .id = i + 1, .name = str(names[i])};
		fz_send(&service, &reg);
		fz_expect(&service, SB_ACK, i + 1);
	}
	pthread_t t;
	if (pthread_create(&t, NULL, serve, NULL) != 0)
		die("thread");
	pthread_detach(t);
	fz_open(&probe, port, "client");
	/* The router lives for the whole run, so what one input leaves behind
	 * meets the next: that is the point of a stateful target. */

	cfg.secret_client = FZ_CLIENT_SECRET;
	cfg.secret_service = "fz-service-secret";
	/* Its edge takes bearer tokens: the bytes meet the token's search
	 * (Authorization, cookies) and the verifier's refusals. */
	static char jwt_path[64];
	snprintf(jwt_path, sizeof jwt_path, "/tmp/fz-router-jwt-%d", (int)getpid());
	FILE *f = fopen(jwt_path, "w");
	if (f == NULL || fputs("fz-hs256-secret-of-at-least-32-bytes", f) < 0 || fclose(f) != 0)
		die("cannot write the token secret");
	cfg.ws_port = 0;
	cfg.jwt_secret_file = jwt_path;
	auth_router = sb_router_new(&cfg, &err);
	unlink(jwt_path);
	if (auth_router == NULL ||
	    sb_router_handle(auth_router, "fz.echo", NULL, local_echo, NULL) ||
	    sb_router_start(auth_router) != 0)
		die("auth router did not start");
	auth_port = sb_router_port(auth_router);
	auth_ws_port = sb_router_ws_port(auth_router);
	fz_open_auth(&auth_probe, auth_port);
}

/* One input as one connection: written (after @p head, if any),
 * half-closed, then read until the router closes it. */
static void feed(uint16_t to, const char *head, const uint8_t *data, size_t size)
{
	int fd = dial(to);
	if (head != NULL)
		write_all(fd, (const uint8_t *)head, strlen(head));
	write_all(fd, data, size);
	shutdown(fd, SHUT_WR);
	/* The router closes a connection whose peer stopped sending, after
	 * answering what it could; read until it does. */
	uint8_t sink[65536];
	for (;;) {
		if (!wait_for(fd, POLLIN, FZ_WAIT_MS))
			die("the router kept a half-closed connection open");
		if (read(fd, sink, sizeof sink) <= 0)
			break;
	}
	close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint64_t probe_id;
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, set_up);

	static const char upgrade[] = "GET /v1/ws HTTP/1.1\r\nHost: fz\r\nConnection: Upgrade\r\n"
				      "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
				      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
	feed(port, NULL, data, size);
	feed(auth_port, NULL, data, size);
	feed(ws_port, NULL, data, size);
	feed(ws_port, upgrade, data, size);
	feed(auth_ws_port, NULL, data, size);

	/* Nothing an input sends gets past the auth router's handshake, so its
	 * probe is answered by the in-process handler, first time. */
	struct sb_msg areq = {.kind = SB_REQUEST, .id = ++probe_id, .name = str("fz.echo")};
	fz_send(&auth_probe, &areq);
	if (fz_recv(&auth_probe, FZ_WAIT_MS) != 1 || auth_probe.m.kind != SB_REPLY ||
	    auth_probe.m.id != probe_id)
		die("the auth router's probe got no answer");

	/* A handler the input registered may still be in another shard's
	 * replica for a moment after its close: "peer gone" is then the right
	 * answer, or "invalid arguments" when it registered a schema the probe
	 * breaks (the shard checks against the handler it chose), and the next
	 * try reaches the service. */
	for (int tries = 0;; tries++) {
		struct sb_msg req = {.kind = SB_REQUEST, .id = ++probe_id, .name = str("fz.echo")};
		req.payload = (struct sb_view){(const uint8_t *)"\xa5probe", 6};
		fz_send(&probe, &req);
		/* An input may address the probe by name (`to`): what it sent,
		 * and the router's word on who sent it, are not the answer. */
		int rc;
		do
			rc = fz_recv(&probe, FZ_WAIT_MS);
		while (rc == 1 && (probe.m.kind == SB_SEND || probe.m.kind == SB_REQUEST ||
				   probe.m.kind == SB_CANCEL || probe.m.kind == SB_PRESENCE));
		if (rc != 1)
			die(rc == 0 ? "the router closed the probe" : "the probe got no answer");
		if (probe.m.id != probe_id) {
			fprintf(stderr,
				"fuzz_router: probe %" PRIu64 " got %s %" PRIu64 " (%.*s)\n",
				probe_id, sb_kind_name(probe.m.kind), probe.m.id,
				(int)probe.m.text.len, (const char *)probe.m.text.ptr);
			die("the probe got an answer to another request");
		}
		if (probe.m.kind == SB_REPLY)
			return 0;
		if (probe.m.kind != SB_ERROR ||
		    (probe.m.code != (uint32_t)-SB_EPEERGONE &&
		     probe.m.code != (uint32_t)-SB_EINVAL) ||
		    tries == 100) {
			fprintf(stderr, "fuzz_router: probe %" PRIu64 " got %s %u (%.*s)\n",
				probe_id, sb_kind_name(probe.m.kind), probe.m.code,
				(int)probe.m.text.len, (const char *)probe.m.text.ptr);
			die("the probe's request failed");
		}
	}
}
