/* sbctl listen and presence: handle a name from the shell (print each
 * call, echo or refuse), and watch peers come and go. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>
#include <switchboard/client.h>
#include <switchboard/proto.h>

#include "common/json.h"
#include "sbctl.h"

/* ---- listen --------------------------------------------------------------- */

/* What a listener has seen. */
struct listener {
	const struct opts *o; /* what to reply, when to stop */
	unsigned long seen;   /* messages handled */
};

static struct sb_client *stop_on_signal;

static void on_signal(int sig)
{
	(void)sig;
	if (stop_on_signal != NULL)
		sb_client_stop(stop_on_signal); /* the one call that is safe here */
}

/* The call's headers as a JSON object, or NULL when it has none. */
static const char *headers_json(struct sb__json_buf *b, const struct sb_call *call)
{
	const struct sb_header *h;
	uint8_t map[SB_HEADERS_MAX];
	size_t n = sb_call_headers(call, &h);
	long len = n > 0 ? sb_headers_encode(h, n, map, sizeof map) : 0;

	if (len <= 0 || sb__json_print(map, (size_t)len, b) != 0)
		return NULL;
	return (const char *)b->data;
}

static void on_call(struct sb_call *call, void *ud)
{
	struct sb_client *c = sb_call_client(call);
	struct listener *l = ud;
	struct sb__json_buf b = {0}, q = {0}, h = {0};
	size_t len;
	const void *p = sb_call_payload(call, &len);
	int is_request = sb_call_is_request(call);

	/* One read can bring more than --count messages: the ones past it
	 * are not ours (a request among them ends in EPEERGONE when we close). */
	if (l->o->count > 0 && l->seen >= l->o->count)
		return;
	const char *json = payload_json(&b, p, len);
	const char *hdrs = headers_json(&h, call);
	if (l->o->json)
		printf("{\"name\":%s,\"request\":%s,\"payload\":%s%s%s}\n",
		       quoted(&q, sb_call_name(call)), is_request ? "true" : "false", json,
		       hdrs != NULL ? ",\"headers\":" : "", hdrs != NULL ? hdrs : "");
	else
		printf("%s  %s  %s%s%s\n", is_request ? "request" : "send", sb_call_name(call),
		       json, hdrs != NULL ? "  " : "", hdrs != NULL ? hdrs : "");
	fflush(stdout);
	if (is_request) {
		int err =
			l->o->echo ? sb_reply(call, "echo", p, len) : sb_reply(call, "ok", NULL, 0);
		if (err != 0)
			fprintf(stderr, "sbctl: reply to %s failed: %s (code %s)\n",
				sb_call_name(call), sb_strerror(err), sb_errname(err));
	}
	sb__json_buf_free(&b);
	sb__json_buf_free(&q);
	sb__json_buf_free(&h);
	if (l->o->count > 0 && ++l->seen >= l->o->count)
		sb_client_stop(c);
}

int cmd_listen(const struct opts *o, char **args, int nargs)
{
	struct listener l = {.o = o};
	int rc;

	(void)nargs;
	struct sb__json_buf schema = {0};
	char why[1024];
	if (parse_payload(o->schema, &schema) != 0)
		return EXIT_USAGE;
	/* The router's own words, before connecting: the library only says
	 * SB_EINVAL. */
	if (sb_schema_validate(schema.data, schema.len, why, sizeof why) != 0) {
		fprintf(stderr, "sbctl: --schema: %s\n", why);
		sb__json_buf_free(&schema);
		return EXIT_USAGE;
	}
	struct sb_client *c = connect_router(o, SB_ROLE_SERVICE);
	struct sb_handler_opts ho = SB_HANDLER_OPTS_INIT;
	ho.schema = schema.data;
	ho.schema_len = schema.len;
	int err = sb_client_register(c, args[0], &ho, on_call, &l);
	sb__json_buf_free(&schema);
	if (err != 0) {
		fprintf(stderr, "sbctl: cannot listen on %s: %s (code %s)\n", args[0],
			sb_strerror(err), sb_errname(err));
		sb_client_free(c);
		return EXIT_USAGE;
	}
	rc = wait_online(c, o);
	if (rc == EXIT_OK && router_refused() != 0) {
		fprintf(stderr, "sbctl: the router refused to register %s: %s (code %s)\n", args[0],
			sb_strerror(router_refused()), sb_errname(router_refused()));
		rc = EXIT_FAILED;
	}
	if (rc == EXIT_OK) {
		/* Scripts (and the tests) wait for this line before sending. */
		fprintf(stderr, "sbctl: listening on %s\n", args[0]);
		stop_on_signal = c;
		signal(SIGINT, on_signal);
		signal(SIGTERM, on_signal);
		err = sb_client_run(c);
		stop_on_signal = NULL;
		flush(c, 2000);
		if (err != 0) {
			fprintf(stderr, "sbctl: the router refused us: %s (code %s)\n",
				sb_strerror(err), sb_errname(err));
			rc = EXIT_FAILED;
		}
	}
	sb_client_free(c);
	return rc;
}

/* ---- presence -------------------------------------------------------------- */

static void on_presence(struct sb_client *c, const struct sb_presence *p, void *ud)
{
	struct listener *l = ud;
	struct sb__json_buf q = {0}, s = {0};
	const char *event = sb_presence_name(p->event);

	if (l->o->count > 0 && l->seen >= l->o->count) /* the rest of the read is not ours */
		return;
	if (l->o->json) {
		printf("{\"event\":\"%s\",\"peer\":%s,\"id\":%" PRIu32 ",\"role\":\"%s\"", event,
		       quoted(&q, p->peer), p->peer_id, p->role);
		if (p->subject != NULL)
			printf(",\"subject\":%s", quoted(&s, p->subject));
		printf("}\n");
	} else {
		printf("%s  %s  %" PRIu32 "  %s", event, p->peer, p->peer_id, p->role);
		if (p->subject != NULL)
			printf("  %s", p->subject);
		printf("\n");
	}
	fflush(stdout);
	sb__json_buf_free(&q);
	sb__json_buf_free(&s);
	if (l->o->count > 0 && ++l->seen >= l->o->count)
		sb_client_stop(c);
}

int cmd_presence(const struct opts *o, char **args, int nargs)
{
	struct listener l = {.o = o};
	int rc;

	(void)args;
	(void)nargs;
	struct sb_client *c = connect_router(o, SB_ROLE_CLIENT);
	if (sb_client_presence(c, on_presence, &l) != 0) {
		fprintf(stderr, "sbctl: out of memory\n");
		sb_client_free(c);
		return EXIT_FAILED;
	}
	rc = wait_online(c, o); /* online once the router has ACKed the subscription */
	if (rc == EXIT_OK && router_refused() != 0) {
		fprintf(stderr, "sbctl: the router refused the subscription: %s (code %s)\n",
			sb_strerror(router_refused()), sb_errname(router_refused()));
		rc = EXIT_FAILED;
	}
	if (rc == EXIT_OK) {
		fprintf(stderr, "sbctl: watching presence\n");
		stop_on_signal = c;
		signal(SIGINT, on_signal);
		signal(SIGTERM, on_signal);
		int err = sb_client_run(c);
		stop_on_signal = NULL;
		if (err != 0) {
			fprintf(stderr, "sbctl: the router refused us: %s (code %s)\n",
				sb_strerror(err), sb_errname(err));
			rc = EXIT_FAILED;
		}
	}
	sb_client_free(c);
	return rc;
}
