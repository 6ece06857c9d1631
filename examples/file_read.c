/* example_file_read: streaming a file of any size. `serve` answers file.read
 * with the file in "file.read-chunk" replies, then "file.read-done" {bytes};
 * `call PATH OUT` writes the chunks to OUT as they arrive. The service
 * respects flow control: a stream stops when the output queue is full and
 * goes on from on_writable, so a big file is sent as fast as the connection
 * drains, never buffered whole in memory. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>
#include <switchboard/client.h>

#define CHUNK (64 * 1024) /* well under the router's 1 MiB frame limit */

/* One file being sent. */
struct stream {
	struct sb_call *call; /* the request we are answering */
	FILE *in;             /* the file, positioned at the next chunk */
	uint64_t sent;        /* bytes sent so far, for file.read-done */
	struct stream *next;
};

static struct stream *streams;
static struct sb_client *client;

static void stream_end(struct stream *s)
{
	struct stream **pp = &streams;
	while (*pp != s)
		pp = &(*pp)->next;
	*pp = s->next;
	fclose(s->in);
	free(s);
}

/* Runs when the requester cancels or goes away: the call is freed after
 * this returns, so the stream must forget it here. */
static void on_cancel(struct sb_call *call, void *ud)
{
	(void)call;
	stream_end(ud);
}

/* Sends chunks until the file ends or the output queue is full. */
static void pump(struct stream *s)
{
	static char buf[CHUNK + 8];
	for (;;) {
		size_t n = fread(buf + 5, 1, CHUNK, s->in), head = 5;
		/* Hand-packed msgpack bin 32: 0xc6 and a 4-byte big-endian length. */
		buf[0] = (char)0xc6;
		for (int i = 0; i < 4; i++)
			buf[1 + i] = (char)(n >> (24 - 8 * i));
		if (n == 0) {
			msgpack_sbuffer sb;
			msgpack_sbuffer_init(&sb);
			msgpack_packer pk;
			msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
			msgpack_pack_uint64(&pk, s->sent);
			sb_reply(s->call, "file.read-done", sb.data, sb.size);
			msgpack_sbuffer_destroy(&sb);
			stream_end(s);
			return;
		}
		int rc = sb_reply_more(s->call, SB_MORE_CHUNK, "file.read-chunk", buf, head + n);
		if (rc == SB_EOVERLOADED) { /* full: rewind; on_writable goes on */
			fseek(s->in, -(long)n, SEEK_CUR);
			return;
		}
		if (rc != 0) { /* cancelling runs on_cancel, so this is a bad chunk */
			sb_reply_error(s->call, SB_EINTERNAL, sb_strerror(rc), NULL, 0);
			stream_end(s);
			return;
		}
		s->sent += n;
	}
}

/* The output queue has drained after a full one: every stream goes on. */
static void on_writable(struct sb_client *c, void *ud)
{
	(void)c, (void)ud;
	for (struct stream *s = streams, *next; s != NULL; s = next) {
		next = s->next; /* pump() may end s */
		pump(s);
	}
}

/* file.read PATH: opens the file and starts the stream; on_writable keeps
 * it going. */
static void on_read(struct sb_call *call, void *ud)
{
	char path[512] = "", err[600];
	size_t len;
	const char *p = sb_call_payload(call, &len);
	msgpack_unpacked u;

	(void)ud;
	msgpack_unpacked_init(&u);
	if (msgpack_unpack_next(&u, p, len, NULL) == MSGPACK_UNPACK_SUCCESS &&
	    u.data.type == MSGPACK_OBJECT_STR)
		snprintf(path, sizeof path, "%.*s", (int)u.data.via.str.size, u.data.via.str.ptr);
	msgpack_unpacked_destroy(&u);
	FILE *in = fopen(path, "rb");
	struct stream *s = in ? calloc(1, sizeof *s) : NULL;
	if (s == NULL) {
		snprintf(err, sizeof err, "%s: %s", path, strerror(errno));
		sb_reply_error(call, SB_EINVAL, err, NULL, 0);
		if (in)
			fclose(in);
		return;
	}
	*s = (struct stream){.call = call, .in = in, .next = streams};
	streams = s;
	sb_call_on_cancel(call, on_cancel, s);
	pump(s);
}

/* The caller's side: chunks go straight to the output file. */
static FILE *out;
static uint64_t written;
static int finished, failed;

static void on_reply(const struct sb_reply *rep, void *ud)
{
	msgpack_unpacked u;

	(void)ud;
	if (rep->err != 0) {
		printf("error %s: %s\n", sb_errname(rep->err), rep->outcome);
		finished = failed = 1;
		return;
	}
	msgpack_unpacked_init(&u);
	int ok = msgpack_unpack_next(&u, rep->payload, rep->len, NULL) == MSGPACK_UNPACK_SUCCESS;
	if (ok && rep->more == SB_MORE_CHUNK && u.data.type == MSGPACK_OBJECT_BIN) {
		fwrite(u.data.via.bin.ptr, 1, u.data.via.bin.size, out);
		written += u.data.via.bin.size;
	} else if (ok && rep->more == SB_MORE_NONE &&
		   u.data.type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
		/* The service's count checks that no chunk went missing. */
		failed = u.data.via.u64 != written;
		printf("%s: %llu bytes, %llu written\n", rep->outcome,
		       (unsigned long long)u.data.via.u64, (unsigned long long)written);
	}
	msgpack_unpacked_destroy(&u);
	finished = rep->more == SB_MORE_NONE;
}

static void on_state(struct sb_client *c, enum sb_client_state s, int err, void *ud)
{
	(void)c;
	if (s == SB_CLIENT_ONLINE && ud != NULL)
		printf("%s\n", (const char *)ud); /* the service's "ready" line */
	else if (s == SB_CLIENT_ERROR)
		fprintf(stderr, "example_file_read: router refused: %s\n", sb_strerror(err));
}

static void on_signal(int sig)
{
	(void)sig;
	sb_client_stop(client); /* the one call safe in a signal handler */
}

int main(int argc, char **argv)
{
	struct sb_client_config cfg;
	struct sb_client *c;
	int err, rc = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	int serve = argc == 4 && strcmp(argv[1], "serve") == 0;
	if ((!serve && (argc != 6 || strcmp(argv[1], "call") != 0)) ||
	    strcmp(argv[2], "--port") != 0) {
		fprintf(stderr, "usage: example_file_read serve --port PORT\n"
				"       example_file_read call --port PORT PATH OUT\n");
		return 2;
	}
	sb_client_config_init(&cfg);
	cfg.port = (uint16_t)atoi(argv[3]);
	cfg.role = serve ? SB_ROLE_SERVICE : SB_ROLE_CLIENT;
	cfg.on_state = on_state;
	cfg.on_writable = on_writable;
	cfg.ud = serve ? "serving file.read" : NULL;
	if ((c = sb_client_new(&cfg, &err)) == NULL) {
		fprintf(stderr, "example_file_read: %s\n", sb_strerror(err));
		return 1;
	}
	if (serve) {
		client = c;
		signal(SIGINT, on_signal);
		signal(SIGTERM, on_signal);
		sb_client_register(c, "file.read", NULL, on_read, NULL);
		rc = sb_client_run(c);
		sb_client_free(c);
		return rc == 0 ? 0 : 1;
	}

	if ((out = fopen(argv[5], "wb")) == NULL) {
		fprintf(stderr, "example_file_read: %s: %s\n", argv[5], strerror(errno));
		return 1;
	}
	sb_client_wait_online(c, 5000);
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_str(&pk, strlen(argv[4]));
	msgpack_pack_str_body(&pk, argv[4], strlen(argv[4]));
	struct sb_opts opts = SB_OPTS_INIT;
	opts.timeout_ms = 30000;
	rc = sb_request(c, "file.read", sb.data, sb.size, &opts, on_reply, NULL, NULL);
	msgpack_sbuffer_destroy(&sb);
	if (rc != 0) {
		printf("error %s: %s\n", sb_errname(rc), sb_strerror(rc));
		failed = 1;
	}
	while (rc == 0 && !finished)
		sb_client_process(c, -1);
	sb_client_free(c);
	if (fclose(out) != 0)
		failed = 1;
	return failed;
}
