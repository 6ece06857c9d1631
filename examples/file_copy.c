/* example_file_copy: a long task that reports progress. `serve` copies files
 * for its callers, sending "file.copying" {percent} as it goes, then
 * "file.copied" {bytes}; `call FROM TO` prints every reply as it arrives. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>
#include <switchboard/client.h>

static struct sb_client *client;

static void pack_str(msgpack_packer *pk, const char *s)
{
	msgpack_pack_str(pk, strlen(s));
	msgpack_pack_str_body(pk, s, strlen(s));
}

/* A reply whose payload is {key: n}. */
static int reply_num(struct sb_call *call, const char *outcome, const char *key, uint64_t n,
		     int final)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	pack_str(&pk, key);
	msgpack_pack_uint64(&pk, n);
	int rc = final ? sb_reply(call, outcome, sb.data, sb.size)
		       : sb_reply_more(call, SB_MORE_PROGRESS, outcome, sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
	return rc;
}

/* file.copy [from, to]: copies in four quarters, one progress reply after
 * each. The copy runs inside the handler, which holds up this service's
 * other callers meanwhile; fine for a demo, a real one would copy in steps
 * from its loop (example_file_read shows how). */
static void on_copy(struct sb_call *call, void *ud)
{
	char from[512] = "", to[512] = "", err[600];
	size_t len;
	const char *p = sb_call_payload(call, &len);
	msgpack_unpacked u;

	(void)ud;
	msgpack_unpacked_init(&u);
	if (msgpack_unpack_next(&u, p, len, NULL) == MSGPACK_UNPACK_SUCCESS &&
	    u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size == 2 &&
	    u.data.via.array.ptr[0].type == MSGPACK_OBJECT_STR &&
	    u.data.via.array.ptr[1].type == MSGPACK_OBJECT_STR) {
		const msgpack_object_str *f = &u.data.via.array.ptr[0].via.str;
		const msgpack_object_str *t = &u.data.via.array.ptr[1].via.str;
		snprintf(from, sizeof from, "%.*s", (int)f->size, f->ptr);
		snprintf(to, sizeof to, "%.*s", (int)t->size, t->ptr);
	}
	msgpack_unpacked_destroy(&u);

	FILE *in = fopen(from, "rb"), *out = in ? fopen(to, "wb") : NULL;
	if (out == NULL) {
		snprintf(err, sizeof err, "%s: %s", in ? to : from, strerror(errno));
		sb_reply_error(call, SB_EINVAL, err, NULL, 0);
		if (in)
			fclose(in);
		return;
	}
	fseek(in, 0, SEEK_END);
	long size = ftell(in), done = 0;
	rewind(in);
	char buf[4096];
	for (int quarter = 1; quarter <= 4; quarter++) {
		long until = size * quarter / 4;
		while (done < until) {
			size_t want = (size_t)(until - done) < sizeof buf ? (size_t)(until - done)
									  : sizeof buf;
			size_t n = fread(buf, 1, want, in);
			if (n == 0 || fwrite(buf, 1, n, out) != n)
				break;
			done += (long)n;
		}
		/* Stop early if the caller cancelled or went away. */
		if (done < until ||
		    reply_num(call, "file.copying", "percent", (uint64_t)quarter * 25, 0) != 0)
			break;
	}
	fclose(in);
	if (fclose(out) != 0 || done != size)
		sb_reply_error(call, SB_EINTERNAL, "copy failed", NULL, 0);
	else
		reply_num(call, "file.copied", "bytes", (uint64_t)size, 1);
}

/* The caller's reply callback: runs for each progress reply, then exactly
 * once with more == SB_MORE_NONE for the final reply or error. */
static int finished, failed;

static void on_reply(const struct sb_reply *rep, void *ud)
{
	msgpack_unpacked u;
	uint64_t n = 0;

	(void)ud;
	if (rep->err != 0) {
		printf("error %s: %s\n", sb_errname(rep->err), rep->outcome);
		finished = failed = 1;
		return;
	}
	msgpack_unpacked_init(&u);
	if (msgpack_unpack_next(&u, rep->payload, rep->len, NULL) == MSGPACK_UNPACK_SUCCESS &&
	    u.data.type == MSGPACK_OBJECT_MAP && u.data.via.map.size == 1 &&
	    u.data.via.map.ptr[0].val.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
		n = u.data.via.map.ptr[0].val.via.u64;
	msgpack_unpacked_destroy(&u);
	if (rep->more != SB_MORE_NONE)
		printf("%s %llu%%\n", rep->outcome, (unsigned long long)n);
	else
		printf("%s %llu bytes\n", rep->outcome, (unsigned long long)n);
	finished = rep->more == SB_MORE_NONE;
}

static void on_state(struct sb_client *c, enum sb_client_state s, int err, void *ud)
{
	(void)c;
	if (s == SB_CLIENT_ONLINE && ud != NULL)
		printf("%s\n", (const char *)ud); /* the service's "ready" line */
	else if (s == SB_CLIENT_ERROR)
		fprintf(stderr, "example_file_copy: router refused: %s\n", sb_strerror(err));
}

static void on_signal(int sig)
{
	(void)sig;
	sb_client_stop(client);
}

int main(int argc, char **argv)
{
	struct sb_client_config cfg;
	int err, rc = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	int serve = argc == 4 && strcmp(argv[1], "serve") == 0;
	if ((!serve && (argc != 6 || strcmp(argv[1], "call") != 0)) ||
	    strcmp(argv[2], "--port") != 0) {
		fprintf(stderr, "usage: example_file_copy serve --port PORT\n"
				"       example_file_copy call --port PORT FROM TO\n");
		return 2;
	}
	sb_client_config_init(&cfg);
	cfg.port = (uint16_t)atoi(argv[3]);
	cfg.role = serve ? SB_ROLE_SERVICE : SB_ROLE_CLIENT;
	cfg.on_state = on_state;
	cfg.ud = serve ? "serving file.copy" : NULL;
	if ((client = sb_client_new(&cfg, &err)) == NULL) {
		fprintf(stderr, "example_file_copy: %s\n", sb_strerror(err));
		return 1;
	}
	if (serve) {
		signal(SIGINT, on_signal);
		signal(SIGTERM, on_signal);
		sb_client_register(client, "file.copy", NULL, on_copy, NULL);
		rc = sb_client_run(client);
		sb_client_free(client);
		return rc == 0 ? 0 : 1;
	}

	/* sb_request() needs the client online; sb_request_wait() would wait
	 * for that itself, but skips progress replies, so we wait here. */
	sb_client_wait_online(client, 5000);

	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 2);
	pack_str(&pk, argv[4]);
	pack_str(&pk, argv[5]);
	struct sb_opts opts = SB_OPTS_INIT;
	opts.timeout_ms = 10000;
	rc = sb_request(client, "file.copy", sb.data, sb.size, &opts, on_reply, NULL, NULL);
	msgpack_sbuffer_destroy(&sb);
	if (rc != 0) {
		printf("error %s: %s\n", sb_errname(rc), sb_strerror(rc));
		failed = 1;
	}
	/* The library promises one final callback (reply, error or its own
	 * deadline), so this loop ends. */
	while (rc == 0 && !finished)
		sb_client_process(client, -1);
	sb_client_free(client);
	return failed;
}
