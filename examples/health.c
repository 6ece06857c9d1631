/* example_health: a health check broadcast to every agent. `agent NAME
 * STATE` runs one agent, a service named NAME that answers health.check as
 * healthy, degraded, or not at all (silent); `check` asks every agent at
 * once and prints one line per agent, then the router's tally. It exits 0
 * only when every agent answered healthy. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>
#include <switchboard/client.h>

#define MAX_AGENTS 64

static struct sb_client *client;
static const char *state; /* the agent's: "healthy", "degraded" or "silent" */

static void pack_str(msgpack_packer *pk, const char *s)
{
	msgpack_pack_str(pk, strlen(s));
	msgpack_pack_str_body(pk, s, strlen(s));
}

/* A silent agent holds the call; the router times it out and cancels it. */
static void on_cancelled(struct sb_call *call, void *ud)
{
	(void)call, (void)ud;
}

/* health.check -> "healthy" {}, or "degraded" {"reason": ...}. */
static void on_check(struct sb_call *call, void *ud)
{
	(void)ud;
	if (strcmp(state, "silent") == 0) {
		sb_call_on_cancel(call, on_cancelled, NULL);
		return;
	}
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	if (strcmp(state, "degraded") == 0) {
		msgpack_pack_map(&pk, 1);
		pack_str(&pk, "reason");
		pack_str(&pk, "disk 97% full");
	} else {
		msgpack_pack_map(&pk, 0);
	}
	sb_reply(call, state, sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
}

/* What `check` heard from one agent. */
struct result {
	char peer[65];
	char line[160];
};

static struct result results[MAX_AGENTS];
static int nresults, finished, all_healthy = 1;
static struct sb_all_counts tally;
static int tally_err;

/* "reason" from a degraded agent's payload, or "". */
static void reason_of(const void *payload, size_t len, char *out, size_t cap)
{
	msgpack_unpacked u;
	out[0] = '\0';
	msgpack_unpacked_init(&u);
	if (msgpack_unpack_next(&u, payload, len, NULL) == MSGPACK_UNPACK_SUCCESS &&
	    u.data.type == MSGPACK_OBJECT_MAP)
		for (uint32_t i = 0; i < u.data.via.map.size; i++) {
			const msgpack_object_kv *kv = &u.data.via.map.ptr[i];
			if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 6 &&
			    memcmp(kv->key.via.str.ptr, "reason", 6) == 0 &&
			    kv->val.type == MSGPACK_OBJECT_STR)
				snprintf(out, cap, "%.*s", (int)kv->val.via.str.size,
					 kv->val.via.str.ptr);
		}
	msgpack_unpacked_destroy(&u);
}

/* One call per agent's answer (more == SB_MORE_RESULT), then the tally. */
static void on_result(const struct sb_reply *rep, void *ud)
{
	(void)ud;
	if (rep->more == SB_MORE_RESULT && nresults < MAX_AGENTS) {
		struct result *r = &results[nresults++];
		char reason[96];
		snprintf(r->peer, sizeof r->peer, "%s", rep->peer);
		if (rep->err != 0) /* the router's word for it: timeout, peer gone */
			snprintf(r->line, sizeof r->line, "%s", sb_strerror(rep->err));
		else if (reason_of(rep->payload, rep->len, reason, sizeof reason),
			 reason[0] != '\0')
			snprintf(r->line, sizeof r->line, "%s (%s)", rep->outcome, reason);
		else
			snprintf(r->line, sizeof r->line, "%s", rep->outcome);
		all_healthy &= rep->err == 0 && strcmp(rep->outcome, "healthy") == 0;
		return;
	}
	if (rep->more != SB_MORE_NONE)
		return; /* chunks: agents do not stream */
	finished = 1;
	tally_err = rep->err;
	if (rep->err == 0 && sb_all_counts(rep->payload, rep->len, &tally) != 0)
		tally_err = SB_EBADFRAME;
}

static int by_peer(const void *a, const void *b)
{
	return strcmp(((const struct result *)a)->peer, ((const struct result *)b)->peer);
}

static int check(uint32_t timeout_ms)
{
	/* Every agent at once: one result each, then the tally. */
	struct sb_opts opts = SB_OPTS_INIT;
	opts.timeout_ms = timeout_ms;
	opts.flags = SB_OPT_ALL;
	int rc;
	if ((rc = sb_client_wait_online(client, 5000)) != 0 ||
	    (rc = sb_request(client, "health.check", NULL, 0, &opts, on_result, NULL, NULL)) != 0) {
		fprintf(stderr, "example_health: %s\n", sb_strerror(rc));
		return 1;
	}
	while (!finished && (rc = sb_client_process(client, 100)) == 0)
		;
	if (tally_err != 0) {
		printf("no answer: %s\n", sb_strerror(tally_err));
		return 1;
	}
	/* Answers arrive as agents reply; sorted, the report reads the same
	 * every time. */
	qsort(results, (size_t)nresults, sizeof *results, by_peer);
	for (int i = 0; i < nresults; i++)
		printf("%-10s %s\n", results[i].peer, results[i].line);
	printf("%u agents: %u answered, %u errors, %u timeouts, %u gone\n", tally.peers, tally.ok,
	       tally.errors, tally.timeouts, tally.gone);
	return all_healthy ? 0 : 1;
}

static void on_state(struct sb_client *c, enum sb_client_state s, int err, void *ud)
{
	(void)c;
	if (s == SB_CLIENT_ONLINE && ud != NULL)
		printf("%s\n", (const char *)ud); /* the agent's "ready" line */
	else if (s == SB_CLIENT_ERROR)
		fprintf(stderr, "example_health: router refused: %s\n", sb_strerror(err));
}

static void on_signal(int sig)
{
	(void)sig;
	sb_client_stop(client);
}

static int usage(void)
{
	fprintf(stderr, "usage: example_health agent --port PORT NAME healthy|degraded|silent\n"
			"       example_health check --port PORT [TIMEOUT_MS]\n");
	return 2;
}

int main(int argc, char **argv)
{
	struct sb_client_config cfg;
	char ready[128];
	int err, rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 4 || strcmp(argv[2], "--port") != 0)
		return usage();
	int agent = strcmp(argv[1], "agent") == 0;
	if (agent &&
	    (argc != 6 || (strcmp(argv[5], "healthy") != 0 && strcmp(argv[5], "degraded") != 0 &&
			   strcmp(argv[5], "silent") != 0)))
		return usage();
	if (!agent && (strcmp(argv[1], "check") != 0 || argc > 5))
		return usage();

	sb_client_config_init(&cfg);
	cfg.port = (uint16_t)atoi(argv[3]);
	cfg.role = agent ? SB_ROLE_SERVICE : SB_ROLE_CLIENT;
	cfg.name = agent ? argv[4] : NULL; /* the name the check reports */
	cfg.on_state = on_state;
	if (agent) {
		state = argv[5];
		snprintf(ready, sizeof ready, "agent %s ready (%s)", argv[4], state);
		cfg.ud = ready;
	}
	if ((client = sb_client_new(&cfg, &err)) == NULL) {
		fprintf(stderr, "example_health: %s\n", sb_strerror(err));
		return 1;
	}
	if (agent) {
		signal(SIGINT, on_signal);
		signal(SIGTERM, on_signal);
		sb_client_register(client, "health.check", NULL, on_check, NULL);
		rc = sb_client_run(client);
	} else {
		rc = check(argc == 5 ? (uint32_t)atoi(argv[4]) : 2000);
	}
	sb_client_free(client);
	return rc == 0 ? 0 : 1;
}
