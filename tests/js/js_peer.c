/* The C side of the JavaScript client's interop tests (clients/js/test/):
 * a service whose handlers the JS client calls, and a caller of JS handlers
 * that decodes what it gets with msgpack-c, an implementation we did not write. */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>
#include <switchboard/client.h>

/* ---- serve: handlers for the JS client ----------------------------------- */

static void on_state(struct sb_client *c, enum sb_client_state s, int err, void *ud)
{
	(void)c;
	(void)ud;
	if (s == SB_CLIENT_ONLINE) {
		printf("ready\n");
		fflush(stdout);
	} else if (s == SB_CLIENT_ERROR) {
		fprintf(stderr, "js_peer: %s\n", sb_strerror(err));
	}
}

static void on_hold_cancel(struct sb_call *call, void *ud)
{
	(void)ud;
	printf("cancelled %s\n", sb_call_name(call));
	fflush(stdout);
}

/* Replies with values msgpack-c encodes, each at a width limit, so the JS
 * side checks its decoder against an encoder it did not write. */
static void reply_types(struct sb_call *call)
{
	static const uint8_t bin[] = {0x00, 0xff, 0x80};
	msgpack_sbuffer sb;
	msgpack_packer pk;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 8);
	msgpack_pack_str_with_body(&pk, "u64", 3);
	msgpack_pack_uint64(&pk, UINT64_MAX);
	msgpack_pack_str_with_body(&pk, "i64", 3);
	msgpack_pack_int64(&pk, INT64_MIN);
	msgpack_pack_str_with_body(&pk, "u32", 3);
	msgpack_pack_uint32(&pk, UINT32_MAX);
	msgpack_pack_str_with_body(&pk, "f64", 3);
	msgpack_pack_double(&pk, 0.1);
	msgpack_pack_str_with_body(&pk, "str", 3);
	msgpack_pack_str_with_body(&pk, "h\xc3\xa9llo \xe2\x9c\x93", 10);
	msgpack_pack_str_with_body(&pk, "bin", 3);
	msgpack_pack_bin_with_body(&pk, bin, sizeof bin);
	msgpack_pack_str_with_body(&pk, "arr", 3);
	msgpack_pack_array(&pk, 3);
	msgpack_pack_int8(&pk, -1);
	msgpack_pack_nil(&pk);
	msgpack_pack_true(&pk);
	msgpack_pack_str_with_body(&pk, "map", 3);
	msgpack_pack_map(&pk, 0);
	sb_reply(call, "c.types", sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
}

/* Progress, n chunks of 1,000 bytes (chunk i filled with i % 256), then
 * the count. */
static void reply_stream(struct sb_call *call, const void *p, size_t len)
{
	msgpack_unpacked u;
	uint64_t n = 0;
	uint8_t chunk[1000];
	msgpack_sbuffer sb;
	msgpack_packer pk;

	msgpack_unpacked_init(&u);
	if (msgpack_unpack_next(&u, p, len, NULL) == MSGPACK_UNPACK_SUCCESS &&
	    u.data.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
		n = u.data.via.u64;
	msgpack_unpacked_destroy(&u);
	if (n > 1000) {
		sb_reply_error(call, SB_EINVAL, "at most 1000 chunks", NULL, 0);
		return;
	}
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_uint64(&pk, n);
	sb_reply_more(call, SB_MORE_PROGRESS, "c.started", sb.data, sb.size);
	for (uint64_t i = 0; i < n; i++) {
		memset(chunk, (int)(i % 256), sizeof chunk);
		msgpack_sbuffer_clear(&sb);
		msgpack_pack_bin_with_body(&pk, chunk, sizeof chunk);
		sb_reply_more(call, SB_MORE_CHUNK, "c.part", sb.data, sb.size);
	}
	msgpack_sbuffer_clear(&sb);
	msgpack_pack_uint64(&pk, n);
	sb_reply(call, "c.done", sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
}

static void on_request(struct sb_call *call, void *ud)
{
	const char *name = sb_call_name(call);
	size_t len;
	const void *p = sb_call_payload(call, &len);

	(void)ud;
	if (!sb_call_is_request(call)) {
		printf("send %s %zu\n", name, len);
		fflush(stdout);
	} else if (strcmp(name, "c.echo") == 0) {
		sb_reply(call, "echoed", p, len);
	} else if (strcmp(name, "c.types") == 0) {
		reply_types(call);
	} else if (strcmp(name, "c.stream") == 0) {
		reply_stream(call, p, len);
	} else if (strcmp(name, "c.fail") == 0) {
		sb_reply_error(call, SB_EFORBIDDEN, "c says no", NULL, 0);
	} else if (strcmp(name, "c.app.fail") == 0) {
		/* {"limit": 100}: the details of an application error */
		static const uint8_t details[] = {0x81, 0xa5, 'l', 'i', 'm', 'i', 't', 0x64};
		sb_reply_app_error(call, "CARD_DECLINED", "the card was declined", details,
				   sizeof details);
	} else if (strcmp(name, "c.hold") == 0) {
		sb_call_on_cancel(call, on_hold_cancel, NULL); /* never answered */
	} else if (strcmp(name, "c.who") == 0) {
		msgpack_sbuffer sb;
		msgpack_packer pk;
		const char *peer = sb_call_peer(call), *role = sb_call_role(call);
		msgpack_sbuffer_init(&sb);
		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		msgpack_pack_map(&pk, 2);
		msgpack_pack_str_with_body(&pk, "peer", 4);
		msgpack_pack_str_with_body(&pk, peer ? peer : "", peer ? strlen(peer) : 0);
		msgpack_pack_str_with_body(&pk, "role", 4);
		msgpack_pack_str_with_body(&pk, role ? role : "", role ? strlen(role) : 0);
		sb_reply(call, "c.who", sb.data, sb.size);
		msgpack_sbuffer_destroy(&sb);
	} else {
		sb_reply_error(call, SB_ENOHANDLER, "js_peer has no such handler", NULL, 0);
	}
}

static struct sb_client *served;

static void on_signal(int sig)
{
	(void)sig;
	sb_client_stop(served); /* the one call that is safe here */
}

static int serve(struct sb_client_config *cfg)
{
	static const char *const names[] = {"c.echo", "c.types",    "c.stream", "c.fail",
					    "c.hold", "c.app.fail", "c.who",    "c.note"};
	int err;

	cfg->role = SB_ROLE_SERVICE;
	cfg->on_state = on_state;
	struct sb_client *c = sb_client_new(cfg, &err);
	if (c == NULL) {
		fprintf(stderr, "js_peer: %s\n", sb_strerror(err));
		return 1;
	}
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		sb_client_register(c, names[i], NULL, on_request, NULL);
	served = c;
	signal(SIGTERM, on_signal);
	/* Until the test stops us, or the router refuses us for good. */
	int rc = sb_client_run(c);
	sb_client_free(c);
	return rc == 0 ? 0 : 1;
}

/* ---- call: a request to a JS handler ------------------------------------- */

static int hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	return -1;
}

static size_t unhex(const char *s, uint8_t *out, size_t cap)
{
	size_t n = 0;
	for (; s[0] && s[1] && n < cap; s += 2) {
		int hi = hexval(s[0]), lo = hexval(s[1]);
		if (hi < 0 || lo < 0)
			break;
		out[n++] = (uint8_t)(hi << 4 | lo);
	}
	return n;
}

/* The payload as msgpack-c reads it. */
static void print_payload(const void *p, size_t len)
{
	msgpack_unpacked u;
	static char text[1 << 16];

	msgpack_unpacked_init(&u);
	if (len == 0)
		printf("-");
	else if (msgpack_unpack_next(&u, p, len, NULL) == MSGPACK_UNPACK_SUCCESS) {
		msgpack_object_print_buffer(text, sizeof text, u.data);
		printf("%s", text);
	} else
		printf("(not msgpack)");
	msgpack_unpacked_destroy(&u);
}

static int done;

static void on_reply(const struct sb_reply *rep, void *ud)
{
	(void)ud;
	if (rep->err == SB_EAPP) {
		printf("error %s %s app %s ", sb_errname(rep->err), rep->outcome,
		       rep->app_code != NULL ? rep->app_code : "(none)");
		print_payload(rep->payload, rep->len);
		printf("\n");
	} else if (rep->err != 0) {
		printf("error %s %s\n", sb_errname(rep->err), rep->outcome);
	} else {
		printf("%s %s ",
		       rep->more == SB_MORE_CHUNK      ? "chunk"
		       : rep->more == SB_MORE_PROGRESS ? "progress"
						       : "reply",
		       rep->outcome);
		print_payload(rep->payload, rep->len);
		printf("\n");
	}
	if (rep->more == SB_MORE_NONE)
		done = 1;
	fflush(stdout);
}

static int call(struct sb_client_config *cfg, int argc, char **argv, int send)
{
	static uint8_t payload[1 << 16];
	int err;

	if (argc < 2) {
		fprintf(stderr, "usage: js_peer call|send PORT NAME [HEX] [TIMEOUT_MS]\n");
		return 2;
	}
	size_t len = argc > 2 ? unhex(argv[2], payload, sizeof payload) : 0;
	uint32_t timeout = argc > 3 ? (uint32_t)atoi(argv[3]) : 5000;
	cfg->name = "c-caller";
	struct sb_client *c = sb_client_new(cfg, &err);
	if (c == NULL || sb_client_wait_online(c, 10000) != 0) {
		fprintf(stderr, "js_peer: not online\n");
		sb_client_free(c);
		return 3;
	}
	if (send) {
		int rc = sb_send(c, argv[1], len ? payload : NULL, len, NULL);
		/* The frame is queued: turn until it is written. */
		for (int i = 0; rc == 0 && i < 100 && (sb_client_events(c) & POLLOUT); i++)
			rc = sb_client_process(c, 100);
		printf("sent %s\n", rc == 0 ? "ok" : sb_errname(rc));
		sb_client_free(c);
		return rc == 0 ? 0 : 1;
	}
	err = sb_request(c, argv[1], len ? payload : NULL, len,
			 &(struct sb_opts){.size = sizeof(struct sb_opts), .timeout_ms = timeout},
			 on_reply, NULL, NULL);
	if (err != 0) {
		printf("error %s %s\n", sb_errname(err), sb_strerror(err));
		sb_client_free(c);
		return 1;
	}
	/* The request's local deadline ends this loop even if nothing answers. */
	while (!done && sb_client_process(c, 1000) == 0)
		;
	sb_client_free(c);
	return 0;
}

int main(int argc, char **argv)
{
	struct sb_client_config cfg;

	if (argc < 3) {
		fprintf(stderr, "usage: js_peer serve PORT | call PORT NAME [HEX] [TIMEOUT_MS] | "
				"send PORT NAME [HEX]\n");
		return 2;
	}
	sb_client_config_init(&cfg);
	cfg.port = (uint16_t)atoi(argv[2]);
	if (strcmp(argv[1], "serve") == 0) {
		cfg.name = argc > 3 ? argv[3] : "c-peer";
		return serve(&cfg);
	}
	if (strcmp(argv[1], "call") == 0 || strcmp(argv[1], "send") == 0)
		return call(&cfg, argc - 2, argv + 2, strcmp(argv[1], "send") == 0);
	fprintf(stderr, "js_peer: unknown mode %s\n", argv[1]);
	return 2;
}
