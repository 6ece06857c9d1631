/* A program outside the tree that uses both libraries, built against the
 * installed libswitchboard (which brings libswitchboard-client) with
 * pkg-config or CMake alone: it runs a router with an in-process handler
 * and calls that handler through the client library, over TCP. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <switchboard/client.h>
#include <switchboard/router.h>

/* Answers "echo" with its own payload. */
static void on_echo(struct sb_call *call, void *ud)
{
	size_t len;
	const void *p = sb_call_payload(call, &len);

	(void)ud;
	sb_reply(call, "echoed", p, len);
}

int main(void)
{
	static const uint8_t hello[] = {0xa5, 'h', 'e', 'l', 'l', 'o'}; /* "hello" */
	struct sb_router_config rc;
	struct sb_client_config cc;
	struct sb_router *r;
	struct sb_client *c;
	char outcome[64];
	void *reply = NULL;
	size_t reply_len = 0;
	int err = 0, rc_wait;

	sb_router_config_init(&rc);
	rc.port = 0; /* any free port */
	rc.shards = 1;
	if ((r = sb_router_new(&rc, &err)) == NULL ||
	    sb_router_handle(r, "echo", NULL, on_echo, NULL) != 0 || sb_router_start(r) != 0) {
		fprintf(stderr, "router consumer: no router: %s\n", sb_strerror(err));
		return 1;
	}
	sb_client_config_init(&cc);
	cc.port = sb_router_port(r);
	if ((c = sb_client_new(&cc, &err)) == NULL) {
		fprintf(stderr, "router consumer: no client: %s\n", sb_strerror(err));
		return 1;
	}
	rc_wait = sb_request_wait(
		c, "echo", hello, sizeof hello,
		&(struct sb_opts){.size = sizeof(struct sb_opts), .timeout_ms = 10000}, outcome,
		sizeof outcome, &reply, &reply_len);
	int ok = rc_wait == 0 && strcmp(outcome, "echoed") == 0 && reply_len == sizeof hello &&
		 memcmp(reply, hello, sizeof hello) == 0;
	printf("router consumer: echo through the router on port %u: %s, %s\n",
	       (unsigned)sb_router_port(r), rc_wait == 0 ? "reply" : sb_strerror(rc_wait), outcome);
	free(reply);
	sb_client_free(c);
	sb_router_stop(r, 1000);
	sb_router_free(r);
	return ok ? 0 : 1;
}
