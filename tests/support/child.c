/* The children's side (child_main and its roles) and the parent's (start,
 * read what a child says, kill). */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <switchboard/client.h>

#include "support/child.h"
#include "support/proc.h"
#include "support/testlib.h"

/* LONG_MS: a request timeout that must not expire during a test. */
enum { LONG_MS = 120000 };

/* ---- the parent's side ----------------------------------------------------------- */

/* This program, for the children: they are it again. */
static const char *self_path(void)
{
	static char self[4096];
	if (self[0] == 0) {
		ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
		CHECK(n > 0);
		self[n > 0 ? n : 0] = 0;
	}
	return self;
}

struct child *child_start(const char *role, uint16_t port, const char *name, long arg)
{
	struct child *ch = calloc(1, sizeof *ch);
	char portbuf[16], argbuf[32];
	int out[2];

	snprintf(portbuf, sizeof portbuf, "%u", port);
	snprintf(argbuf, sizeof argbuf, "%ld", arg);
	const char *self = self_path(); /* before the fork: the child only execs */
	CHECK(pipe(out) == 0);
	ch->pid = fork();
	if (ch->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(out[1], STDOUT_FILENO);
		close(out[0]);
		close(out[1]);
		execl(self, self, "child", role, portbuf, name, argbuf, (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	ch->out = out[0];
	fcntl(ch->out, F_SETFL, O_NONBLOCK);
	return ch;
}

void child_read(struct child *ch)
{
	for (;;) {
		ssize_t n = read(ch->out, ch->buf + ch->have, sizeof ch->buf - 1 - ch->have);
		if (n <= 0)
			return;
		ch->have += (size_t)n;
		ch->buf[ch->have] = 0;
		char *line = ch->buf, *nl;
		while ((nl = strchr(line, '\n')) != NULL) {
			*nl = 0;
			if (strcmp(line, "ready") == 0)
				ch->ready = 1;
			else
				sscanf(line, "n %ld %ld %ld", &ch->v[0], &ch->v[1], &ch->v[2]);
			line = nl + 1;
		}
		ch->have = strlen(line);
		memmove(ch->buf, line, ch->have);
	}
}

void child_kill(struct child *ch)
{
	if (ch == NULL)
		return;
	if (ch->pid > 0)
		reap(ch->pid, SIGKILL);
	close(ch->out);
	free(ch);
}

uint32_t chunk_seq(const void *payload, size_t len)
{
	const uint8_t *p = payload;
	/* bin 32: c6, length, then the number as 4 big-endian bytes */
	if (len < 9 || p[0] != 0xc6)
		return UINT32_MAX;
	return (uint32_t)p[5] << 24 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 8 | p[8];
}

void put_chunk(uint8_t *b, size_t len, uint32_t seq)
{
	b[0] = 0xc6;
	b[1] = (uint8_t)((len - 5) >> 24);
	b[2] = (uint8_t)((len - 5) >> 16);
	b[3] = (uint8_t)((len - 5) >> 8);
	b[4] = (uint8_t)(len - 5);
	b[5] = (uint8_t)(seq >> 24);
	b[6] = (uint8_t)(seq >> 16);
	b[7] = (uint8_t)(seq >> 8);
	b[8] = (uint8_t)seq;
}

/* ---- the children's side ------------------------------------------------------------ */

static long c_v[3];
static long c_reported[3] = {-1, -1, -1};

static void report(void)
{
	if (memcmp(c_v, c_reported, sizeof c_v) == 0)
		return;
	memcpy(c_reported, c_v, sizeof c_v);
	printf("n %ld %ld %ld\n", c_v[0], c_v[1], c_v[2]);
	fflush(stdout);
}

/* hold: keeps every call, never replies. n = calls, cancels. */
static void c_hold_cancel(struct sb_call *call, void *ud)
{
	(void)call;
	(void)ud;
	c_v[1]++;
}

static void c_hold(struct sb_call *call, void *ud)
{
	(void)ud;
	c_v[0]++;
	sb_call_on_cancel(call, c_hold_cancel, NULL);
}

static void c_echo(struct sb_call *call, void *ud)
{
	(void)ud;
	size_t len;
	const void *p = sb_call_payload(call, &len);
	c_v[0]++;
	sb_reply(call, "echoed", p, len);
}

/* stream: answers each request with an endless stream of chunks of ARG
 * bytes, as fast as flow control allows. n = bytes accepted by the library,
 * times it said SB_EOVERLOADED, cancels. */
static struct sb_call *c_streams[64];
static size_t c_chunk;
static uint32_t c_seq[64];

static void c_stream_cancel(struct sb_call *call, void *ud)
{
	(void)call;
	c_streams[(uintptr_t)ud] = NULL;
	c_v[2]++;
}

static void c_stream(struct sb_call *call, void *ud)
{
	(void)ud;
	for (uintptr_t i = 0; i < 64; i++)
		if (c_streams[i] == NULL) {
			c_streams[i] = call;
			c_seq[i] = 0;
			sb_call_on_cancel(call, c_stream_cancel, (void *)i);
			return;
		}
	sb_reply_error(call, SB_EOVERLOADED, "too many streams", NULL, 0);
}

static void c_produce(void)
{
	static uint8_t *buf;
	size_t len = c_chunk + 9;
	if (buf == NULL)
		buf = calloc(1, len);
	for (int i = 0; i < 64; i++)
		for (int k = 0; k < 64 && c_streams[i] != NULL; k++) {
			put_chunk(buf, len, c_seq[i]);
			int rc = sb_reply_more(c_streams[i], SB_MORE_CHUNK, "chunk", buf, len);
			if (rc == SB_EOVERLOADED) {
				c_v[1]++;
				break;
			}
			if (rc != 0)
				break;
			c_seq[i]++;
			c_v[0] += (long)len;
		}
}

/* streamreq: requests ARG streams; n = chunks received. */
static void c_on_chunk(const struct sb_reply *rep, void *ud)
{
	(void)ud;
	if (rep->more == SB_MORE_CHUNK)
		c_v[0]++;
}

int child_main(int argc, char **argv)
{
	if (argc < 6)
		return 2;
	const char *role = argv[2], *name = argv[4];
	long arg = atol(argv[5]);
	struct sb_client_config cfg;
	int err = 0, ready = 0, is_req = strcmp(role, "streamreq") == 0;

	signal(SIGPIPE, SIG_IGN);
	sb_client_config_init(&cfg);
	cfg.port = (uint16_t)atoi(argv[3]);
	cfg.role = is_req ? SB_ROLE_CLIENT : SB_ROLE_SERVICE;
	cfg.out_max = 1 << 20; /* flow control shows sooner */
	struct sb_client *c = sb_client_new(&cfg, &err);
	if (c == NULL)
		return 1;
	if (strcmp(role, "hold") == 0)
		sb_client_register(c, name, NULL, c_hold, NULL);
	else if (strcmp(role, "echo") == 0)
		sb_client_register(c, name, NULL, c_echo, NULL);
	else if (strcmp(role, "stream") == 0) {
		c_chunk = (size_t)arg;
		sb_client_register(c, name, NULL, c_stream, NULL);
	} else if (!is_req)
		return 2;
	/* Until killed: SIGKILL is the fault under test, and PR_SET_PDEATHSIG
	 * ends a child whose test died. */
	for (;;) {
		struct pollfd p = {.fd = sb_client_fd(c), .events = sb_client_events(c)};
		int t = sb_client_timeout(c);
		poll(&p, 1, t < 0 || t > 20 ? 20 : t);
		if (sb_client_process(c, 0) != 0)
			break;
		if (!ready && sb_client_online(c)) {
			ready = 1;
			for (long i = 0; is_req && i < arg; i++)
				sb_request(c, name, NULL, 0,
					   &(struct sb_opts){.size = sizeof(struct sb_opts),
							     .timeout_ms = LONG_MS},
					   c_on_chunk, NULL, NULL);
			printf("ready\n");
			fflush(stdout);
		}
		if (c_chunk)
			c_produce();
		report();
	}
	sb_client_free(c);
	return 0;
}
