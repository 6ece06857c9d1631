/* example_transfer: a bank's transfer service over an in-memory ledger.
 * Every business result is an outcome the caller switches on; only a fault
 * of the service itself is an error. `serve` runs the bank; `call FROM TO
 * AMOUNT [TOKEN]` asks for one transfer and prints the outcome. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>
#include <switchboard/client.h>

#define TOKEN        "demo-token" /* a stand-in for real authentication */
#define MAX_TRANSFER 500          /* per transaction */
#define MAX_DAILY    800          /* per sender and day, pending ones included */
#define REVIEW_ABOVE 200          /* larger transfers wait for a person: "pending" */

struct account {
	const char *name;
	long long balance; /* in whole units, to keep the example short */
	long long today;   /* sent today, against MAX_DAILY */
	int broken;        /* its storage is "offline": shows the internal error path */
};

static struct account ledger[] = {
	{"alice", 1000, 0, 0},
	{"bob", 100, 0, 0},
	{"legacy", 0, 0, 1},
};

static struct sb_client *client;

static struct account *find(const msgpack_object *o)
{
	for (size_t i = 0; o && o->type == MSGPACK_OBJECT_STR && i < sizeof ledger / sizeof *ledger;
	     i++)
		if (strlen(ledger[i].name) == o->via.str.size &&
		    memcmp(ledger[i].name, o->via.str.ptr, o->via.str.size) == 0)
			return &ledger[i];
	return NULL;
}

static const msgpack_object *map_get(const msgpack_object *map, const char *key)
{
	for (uint32_t i = 0; map->type == MSGPACK_OBJECT_MAP && i < map->via.map.size; i++) {
		const msgpack_object_kv *kv = &map->via.map.ptr[i];
		if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen(key) &&
		    memcmp(kv->key.via.str.ptr, key, strlen(key)) == 0)
			return &kv->val;
	}
	return NULL;
}

static void pack_str(msgpack_packer *pk, const char *s)
{
	msgpack_pack_str(pk, strlen(s));
	msgpack_pack_str_body(pk, s, strlen(s));
}

/* The checks, in the order a bank would make them; the first that fails
 * names the outcome. On success the sender's balance is the payload. */
static const char *decide(const msgpack_object *req, long long *balance)
{
	const msgpack_object *token = map_get(req, "token"), *amt = map_get(req, "amount");
	if (token == NULL || token->type != MSGPACK_OBJECT_STR ||
	    token->via.str.size != strlen(TOKEN) ||
	    memcmp(token->via.str.ptr, TOKEN, strlen(TOKEN)))
		return "unauthorized";
	struct account *from = find(map_get(req, "from")), *to = find(map_get(req, "to"));
	if (from == NULL || to == NULL || from == to)
		return "unknown account";
	if (from->broken || to->broken)
		return NULL; /* the caller turns this into an error reply */
	long long amount =
		amt && amt->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (long long)amt->via.u64 : 0;
	if (amount <= 0 || amount > MAX_TRANSFER)
		return "transaction limit exceeded";
	if (from->today + amount > MAX_DAILY)
		return "daily limit exceeded";
	if (from->balance < amount)
		return "insufficient funds";
	from->balance -= amount; /* reserved now, so a pending transfer cannot bounce */
	from->today += amount;
	*balance = from->balance;
	if (amount > REVIEW_ABOVE)
		return "pending"; /* credited to @to once reviewed: not in this example */
	to->balance += amount;
	return "transferred";
}

static void on_transfer(struct sb_call *call, void *ud)
{
	size_t len;
	const char *p = sb_call_payload(call, &len);
	long long balance = -1;
	msgpack_unpacked u;

	(void)ud;
	msgpack_unpacked_init(&u);
	const char *outcome = "unknown account";
	if (msgpack_unpack_next(&u, p, len, NULL) == MSGPACK_UNPACK_SUCCESS)
		outcome = decide(&u.data, &balance);
	msgpack_unpacked_destroy(&u);
	if (outcome == NULL) {
		/* Not a business answer but a fault: the caller cannot fix it. */
		sb_reply_error(call, SB_EINTERNAL, "internal error: ledger storage offline", NULL,
			       0);
		return;
	}
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	if (balance >= 0)
		msgpack_pack_int64(&pk, balance);
	else
		msgpack_pack_nil(&pk);
	sb_reply(call, outcome, sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
}

static void on_state(struct sb_client *c, enum sb_client_state s, int err, void *ud)
{
	(void)c;
	if (s == SB_CLIENT_ONLINE && ud != NULL)
		printf("%s\n", (const char *)ud); /* wait for this line before calling */
	else if (s == SB_CLIENT_ERROR)
		fprintf(stderr, "example_transfer: router refused: %s\n", sb_strerror(err));
}

static void on_signal(int sig)
{
	(void)sig;
	sb_client_stop(client);
}

int main(int argc, char **argv)
{
	struct sb_client_config cfg;
	int err, rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	int serve = argc == 4 && strcmp(argv[1], "serve") == 0;
	int call = (argc == 7 || argc == 8) && strcmp(argv[1], "call") == 0;
	if ((!serve && !call) || strcmp(argv[2], "--port") != 0) {
		fprintf(stderr,
			"usage: example_transfer serve --port PORT\n"
			"       example_transfer call --port PORT FROM TO AMOUNT [TOKEN]\n");
		return 2;
	}
	sb_client_config_init(&cfg);
	cfg.port = (uint16_t)atoi(argv[3]);
	cfg.role = serve ? SB_ROLE_SERVICE : SB_ROLE_CLIENT;
	cfg.on_state = on_state;
	cfg.ud = serve ? "serving transfer" : NULL;
	if ((client = sb_client_new(&cfg, &err)) == NULL) {
		fprintf(stderr, "example_transfer: %s\n", sb_strerror(err));
		return 1;
	}
	if (serve) {
		signal(SIGINT, on_signal);
		signal(SIGTERM, on_signal);
		sb_client_register(client, "transfer", NULL, on_transfer, NULL);
		rc = sb_client_run(client);
		sb_client_free(client);
		return rc == 0 ? 0 : 1;
	}

	char outcome[256];
	void *reply = NULL;
	size_t reply_len = 0;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 4);
	pack_str(&pk, "from");
	pack_str(&pk, argv[4]);
	pack_str(&pk, "to");
	pack_str(&pk, argv[5]);
	pack_str(&pk, "amount");
	msgpack_pack_uint64(&pk, strtoull(argv[6], NULL, 10));
	pack_str(&pk, "token");
	pack_str(&pk, argc == 8 ? argv[7] : TOKEN);
	struct sb_opts opts = SB_OPTS_INIT;
	opts.timeout_ms = 5000;
	rc = sb_request_wait(client, "transfer", sb.data, sb.size, &opts, outcome, sizeof outcome,
			     &reply, &reply_len);
	msgpack_sbuffer_destroy(&sb);

	/* rc 0 is any outcome the bank chose, good or bad news alike. */
	printf("transfer %s -> %s %s: ", argv[4], argv[5], argv[6]);
	if (rc != 0) {
		printf("error %s (%s)\n", sb_errname(rc), outcome);
	} else {
		msgpack_unpacked u;
		msgpack_unpacked_init(&u);
		if (msgpack_unpack_next(&u, reply, reply_len, NULL) == MSGPACK_UNPACK_SUCCESS &&
		    u.data.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
			printf("%s, balance %llu\n", outcome, (unsigned long long)u.data.via.u64);
		else
			printf("%s\n", outcome);
		msgpack_unpacked_destroy(&u);
	}
	free(reply);
	sb_client_free(client);
	return rc == 0 ? 0 : 1;
}
