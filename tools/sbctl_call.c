/* sbctl send and request: one message, to a name, a peer or every handler,
 * and the replies of a request as they come. */
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

/* --to, --all, --peers, --timeout and --header as the library's options. */
static struct sb_opts call_opts(const struct opts *o)
{
	struct sb_opts so = SB_OPTS_INIT;

	so.timeout_ms = o->timeout_ms;
	so.to = o->peers != NULL ? o->peers : o->to;
	so.flags = o->peers != NULL ? SB_OPT_PEERS : o->all ? SB_OPT_ALL : 0;
	so.headers = o->headers;
	so.nheaders = o->nheaders;
	return so;
}

int cmd_send(const struct opts *o, char **args, int nargs)
{
	struct sb__json_buf mp = {0};
	int rc;

	if (read_payload(o, nargs > 1 ? args[1] : NULL, &mp) != 0)
		return EXIT_USAGE;
	struct sb_client *c = connect_router(o, SB_ROLE_CLIENT);
	rc = wait_online(c, o);
	if (rc == EXIT_OK) {
		struct sb_opts so = call_opts(o);
		int err = sb_send(c, args[0], mp.data, mp.len, &so);
		if (err != 0) {
			rc = refused_locally(o, args[0], err);
		} else {
			flush(c, 2000);
			if (o->json)
				printf("{\"sent\":true}\n");
		}
	}
	sb_client_free(c);
	sb__json_buf_free(&mp);
	return rc;
}

/* One peer's part of a broadcast request (--all), or its aggregate. */
static void on_all_reply(struct pending *pd, const struct sb_reply *rep)
{
	struct sb__json_buf b = {0}, q = {0}, pq = {0};
	const char *peer = rep->peer;
	struct sb_all_counts n;

	if (rep->more == SB_MORE_NONE) { /* the aggregate: "$sb.all" and the counts */
		pd->done = 1;
		if (sb_all_counts(rep->payload, rep->len, &n) != 0) {
			fprintf(stderr, "sbctl: the aggregate came in an unexpected shape: %s\n",
				payload_json(&b, rep->payload, rep->len));
			pd->err = SB_EBADFRAME;
		} else if (pd->o->json)
			printf("{\"all\":{\"peers\":%u,\"ok\":%u,\"errors\":%u,\"timeouts\":%u,"
			       "\"gone\":%u}}\n",
			       n.peers, n.ok, n.errors, n.timeouts, n.gone);
		else
			printf("all: %u peers, %u ok, %u errors, %u timeouts, %u gone\n", n.peers,
			       n.ok, n.errors, n.timeouts, n.gone);
		sb__json_buf_free(&b);
		return;
	}
	if (peer == NULL)
		peer = "?";
	if (rep->err < 0) {
		pd->failed_peers++;
		if (pd->o->json && rep->app_code != NULL) {
			struct sb__json_buf ac = {0};
			printf("{\"peer\":%s,\"error\":\"EAPP\",\"code\":%d,\"text\":%s,"
			       "\"app_code\":%s,\"details\":%s}\n",
			       quoted(&pq, peer), rep->err, quoted(&q, rep->outcome),
			       quoted(&ac, rep->app_code),
			       payload_json(&b, rep->payload, rep->len));
			sb__json_buf_free(&ac);
		} else if (pd->o->json)
			printf("{\"peer\":%s,\"error\":\"%s\",\"code\":%d,\"text\":%s}\n",
			       quoted(&pq, peer), sb_errname(rep->err), rep->err,
			       quoted(&q, rep->outcome));
		else if (rep->app_code != NULL)
			printf("%s  error: %s (app code %s)  %s\n", peer, rep->outcome,
			       rep->app_code, payload_json(&b, rep->payload, rep->len));
		else
			printf("%s  error: %s (code %s)\n", peer, rep->outcome,
			       sb_errname(rep->err));
	} else if (pd->o->json) {
		printf("{\"peer\":%s,\"outcome\":%s,\"more\":%s,\"payload\":%s}\n",
		       quoted(&pq, peer), quoted(&q, rep->outcome),
		       rep->more == SB_MORE_CHUNK ? "true" : "false",
		       payload_json(&b, rep->payload, rep->len));
	} else if (rep->more == SB_MORE_CHUNK) {
		printf("%s  %s  %s  (more: chunk)\n", peer, rep->outcome,
		       payload_json(&b, rep->payload, rep->len));
	} else {
		printf("%s  %s  %s\n", peer, rep->outcome,
		       payload_json(&b, rep->payload, rep->len));
	}
	sb__json_buf_free(&b);
	sb__json_buf_free(&q);
	sb__json_buf_free(&pq);
}

static void on_reply(const struct sb_reply *rep, void *ud)
{
	struct pending *pd = ud;
	struct sb__json_buf b = {0}, q = {0};

	if (pd->o->all && (rep->more != SB_MORE_NONE || rep->err == 0)) {
		on_all_reply(pd, rep);
		return;
	}
	if (rep->err < 0) {
		print_reply_error(pd->o, rep);
		pd->err = rep->err;
		pd->done = 1;
		return;
	}
	if (rep->more == SB_MORE_NONE)
		pd->done = 1;
	if (pd->keep) {
		if (rep->more == SB_MORE_NONE && rep->len > 0 &&
		    (pd->payload = malloc(rep->len)) != NULL) {
			memcpy(pd->payload, rep->payload, rep->len);
			pd->len = rep->len;
		}
		return;
	}
	const char *json = payload_json(&b, rep->payload, rep->len);
	if (pd->o->json)
		printf("{\"outcome\":%s,\"more\":%s,\"payload\":%s}\n", quoted(&q, rep->outcome),
		       rep->more != SB_MORE_NONE ? "true" : "false", json);
	else if (rep->more != SB_MORE_NONE)
		printf("%s  %s  (%s)\n", rep->outcome, json,
		       rep->more == SB_MORE_CHUNK ? "more: chunk" : "more: progress");
	else
		printf("%s  %s\n", rep->outcome, json);
	sb__json_buf_free(&b);
	sb__json_buf_free(&q);
}

/* Requests @p name and processes until its terminal event; the library's
 * local deadline (timeout + 1 s) bounds the wait. */
int run_request(struct sb_client *c, const char *name, const struct sb__json_buf *mp,
		struct pending *pd)
{
	const struct opts *o = pd->o;
	struct sb_opts so = call_opts(o);
	int err = sb_request(c, name, mp->data, mp->len, &so, on_reply, pd, NULL);
	if (err != 0)
		return refused_locally(pd->o, name, err);
	while (!pd->done) {
		int t = sb_client_timeout(c);
		if (sb_client_process(c, t < 0 ? 1000 : t) < 0 && !pd->done) {
			print_error(pd->o, SB_EOFFLINE, NULL);
			return EXIT_FAILED;
		}
	}
	return pd->err == 0 && pd->failed_peers == 0 ? EXIT_OK : EXIT_FAILED;
}

int cmd_request(const struct opts *o, char **args, int nargs)
{
	struct sb__json_buf mp = {0};
	struct pending pd = {.o = o};
	int rc;

	if (read_payload(o, nargs > 1 ? args[1] : NULL, &mp) != 0)
		return EXIT_USAGE;
	struct sb_client *c = connect_router(o, SB_ROLE_CLIENT);
	rc = wait_online(c, o);
	if (rc == EXIT_OK)
		rc = run_request(c, args[0], &mp, &pd);
	sb_client_free(c);
	sb__json_buf_free(&mp);
	return rc;
}
