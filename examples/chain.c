/* example_chain: a handler that asks another service before it answers.
 * `passwords` serves passwords.encrypt; `users` serves users.create, which
 * calls passwords.encrypt and only then replies "user.created"; `call EMAIL
 * PASSWORD` creates a user. Run the three in separate terminals. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>
#include <switchboard/client.h>

static struct sb_client *client;
static uint64_t next_id = 1;

static void pack_str(msgpack_packer *pk, const char *s, size_t n)
{
	msgpack_pack_str(pk, n);
	msgpack_pack_str_body(pk, s, n);
}

/* passwords.encrypt "secret" -> "encrypted" "fnv1a:<hex>". FNV-1a is NOT a
 * password hash; a real service would use argon2 or bcrypt. */
static void on_encrypt(struct sb_call *call, void *ud)
{
	size_t len;
	const unsigned char *p = sb_call_payload(call, &len);
	uint64_t h = 14695981039346656037ull;
	char hex[32];

	(void)ud;
	for (size_t i = 0; i < len; i++) /* hashes the packed string: fine for a demo */
		h = (h ^ p[i]) * 1099511628211ull;
	int n = snprintf(hex, sizeof hex, "fnv1a:%016llx", (unsigned long long)h);
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	pack_str(&pk, hex, (size_t)n);
	sb_reply(call, "encrypted", sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
}

/* What users.create remembers while it waits for passwords.encrypt. The
 * payload is only lent for the handler callback, so the email is copied. */
struct pending {
	struct sb_call *call; /* stays valid until we reply to it */
	char email[128];
};

/* The reply to our inner request: finish the outer one with it. */
static void on_encrypted(const struct sb_reply *rep, void *ud)
{
	struct pending *pd = ud;
	msgpack_unpacked u;

	if (rep->more != SB_MORE_NONE)
		return;
	if (rep->err != 0) {
		/* Pass the inner failure on, so the caller sees why (e.g. ENOHANDLER:
		 * the passwords service is not running). If the caller has gone,
		 * this sends nothing and frees the call all the same. */
		sb_reply_error(pd->call, rep->err, rep->outcome, NULL, 0);
		free(pd);
		return;
	}
	msgpack_unpacked_init(&u);
	msgpack_unpack_next(&u, rep->payload, rep->len, NULL);
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 3);
	pack_str(&pk, "id", 2);
	msgpack_pack_uint64(&pk, next_id++);
	pack_str(&pk, "email", 5);
	pack_str(&pk, pd->email, strlen(pd->email));
	pack_str(&pk, "password", 8);
	msgpack_pack_object(&pk, u.data); /* the hash, as the other service sent it */
	sb_reply(pd->call, "user.created", sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
	msgpack_unpacked_destroy(&u);
	free(pd);
}

/* users.create [email, password]: keep the call, ask passwords.encrypt,
 * return. The reply goes out later, from on_encrypted. */
static void on_create(struct sb_call *call, void *ud)
{
	struct sb_client *c = sb_call_client(call);
	size_t len;
	const char *p = sb_call_payload(call, &len);
	msgpack_unpacked u;
	struct pending *pd = calloc(1, sizeof *pd);
	int rc = SB_EINVAL;

	(void)ud;
	msgpack_unpacked_init(&u);
	if (pd != NULL && msgpack_unpack_next(&u, p, len, NULL) == MSGPACK_UNPACK_SUCCESS &&
	    u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size == 2 &&
	    u.data.via.array.ptr[0].type == MSGPACK_OBJECT_STR &&
	    u.data.via.array.ptr[1].type == MSGPACK_OBJECT_STR) {
		const msgpack_object_str *email = &u.data.via.array.ptr[0].via.str;
		const msgpack_object_str *pw = &u.data.via.array.ptr[1].via.str;
		snprintf(pd->email, sizeof pd->email, "%.*s", (int)email->size, email->ptr);
		pd->call = call;
		msgpack_sbuffer sb;
		msgpack_packer pk;
		msgpack_sbuffer_init(&sb);
		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		pack_str(&pk, pw->ptr, pw->size);
		/* A request from inside a handler; its timeout is shorter than
		 * the caller's, so the caller hears of a stuck passwords service. */
		struct sb_opts opts = SB_OPTS_INIT;
		opts.timeout_ms = 2000;
		rc = sb_request(c, "passwords.encrypt", sb.data, sb.size, &opts, on_encrypted, pd,
				NULL);
		msgpack_sbuffer_destroy(&sb);
	}
	msgpack_unpacked_destroy(&u);
	if (rc != 0) { /* on_encrypted will not run: answer now */
		sb_reply_error(call, rc, rc == SB_EINVAL ? "expected [email, password]" : NULL,
			       NULL, 0);
		free(pd);
	}
}

static void on_state(struct sb_client *c, enum sb_client_state s, int err, void *ud)
{
	(void)c;
	if (s == SB_CLIENT_ONLINE && ud != NULL)
		printf("%s\n", (const char *)ud); /* the service's "ready" line */
	else if (s == SB_CLIENT_ERROR)
		fprintf(stderr, "example_chain: router refused: %s\n", sb_strerror(err));
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
	const char *mode = argc > 1 ? argv[1] : "";
	int users = strcmp(mode, "users") == 0, passwords = strcmp(mode, "passwords") == 0;
	int call = strcmp(mode, "call") == 0 && argc == 6;
	if (!(((users || passwords) && argc == 4) || call) || strcmp(argv[2], "--port") != 0) {
		fprintf(stderr, "usage: example_chain passwords --port PORT\n"
				"       example_chain users --port PORT\n"
				"       example_chain call --port PORT EMAIL PASSWORD\n");
		return 2;
	}
	sb_client_config_init(&cfg);
	cfg.port = (uint16_t)atoi(argv[3]);
	cfg.role = call ? SB_ROLE_CLIENT : SB_ROLE_SERVICE;
	cfg.on_state = on_state;
	cfg.ud = users ? "serving users.create" : passwords ? "serving passwords.encrypt" : NULL;
	if ((client = sb_client_new(&cfg, &err)) == NULL) {
		fprintf(stderr, "example_chain: %s\n", sb_strerror(err));
		return 1;
	}
	if (!call) {
		/* passwords.encrypt is internal: callable by services such as
		 * users, not by clients. */
		struct sb_handler_opts internal = SB_HANDLER_OPTS_INIT;
		internal.flags = SB_HANDLER_INTERNAL;
		signal(SIGINT, on_signal);
		signal(SIGTERM, on_signal);
		if (users)
			sb_client_register(client, "users.create", NULL, on_create, NULL);
		else
			sb_client_register(client, "passwords.encrypt", &internal, on_encrypt,
					   NULL);
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
	msgpack_pack_array(&pk, 2);
	pack_str(&pk, argv[4], strlen(argv[4]));
	pack_str(&pk, argv[5], strlen(argv[5]));
	struct sb_opts opts = SB_OPTS_INIT;
	opts.timeout_ms = 5000;
	rc = sb_request_wait(client, "users.create", sb.data, sb.size, &opts, outcome,
			     sizeof outcome, &reply, &reply_len);
	msgpack_sbuffer_destroy(&sb);
	if (rc != 0) {
		printf("error %s: %s\n", sb_errname(rc), outcome);
	} else {
		/* msgpack-c prints a whole object, handy for showing a record. */
		msgpack_unpacked u;
		msgpack_unpacked_init(&u);
		msgpack_unpack_next(&u, reply, reply_len, NULL);
		printf("%s: ", outcome);
		msgpack_object_print(stdout, u.data);
		printf("\n");
		msgpack_unpacked_destroy(&u);
	}
	free(reply);
	sb_client_free(client);
	return rc == 0 ? 0 : 1;
}
