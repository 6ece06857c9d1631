/* example_user: the smallest service and client. `serve` answers user.create
 * with the created record; `call EMAIL NAME` asks for one and prints it. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>
#include <switchboard/client.h>

static struct sb_client *client;
static uint64_t next_id = 1;

/* Copies a msgpack string into a C string; "" if @p o is not a string. */
static void str_of(const msgpack_object *o, char *out, size_t cap)
{
	size_t n = 0;
	if (o->type == MSGPACK_OBJECT_STR)
		n = o->via.str.size < cap - 1 ? o->via.str.size : cap - 1;
	memcpy(out, n ? o->via.str.ptr : "", n);
	out[n] = '\0';
}

/* The value under @p key in a msgpack map, or NULL. */
static const msgpack_object *map_get(const msgpack_object *map, const char *key)
{
	if (map->type != MSGPACK_OBJECT_MAP)
		return NULL;
	for (uint32_t i = 0; i < map->via.map.size; i++) {
		const msgpack_object_kv *kv = &map->via.map.ptr[i];
		if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen(key) &&
		    memcmp(kv->key.via.str.ptr, key, strlen(key)) == 0)
			return &kv->val;
	}
	return NULL;
}

/* The string under @p key copied into @p out; "" when missing. */
static void map_str(const msgpack_object *map, const char *key, char *out, size_t cap)
{
	const msgpack_object *v = map_get(map, key);
	out[0] = '\0';
	if (v != NULL)
		str_of(v, out, cap);
}

static void pack_str(msgpack_packer *pk, const char *s)
{
	msgpack_pack_str(pk, strlen(s));
	msgpack_pack_str_body(pk, s, strlen(s));
}

/* user.create {email, name} -> outcome "user.created", {id, email, name}. */
static void on_create(struct sb_call *call, void *ud)
{
	char email[128], name[128];
	size_t len;
	const char *p = sb_call_payload(call, &len);
	msgpack_unpacked u;

	(void)ud;
	msgpack_unpacked_init(&u);
	email[0] = name[0] = '\0';
	if (msgpack_unpack_next(&u, p, len, NULL) == MSGPACK_UNPACK_SUCCESS) {
		map_str(&u.data, "email", email, sizeof email);
		map_str(&u.data, "name", name, sizeof name);
	}
	msgpack_unpacked_destroy(&u);
	if (strchr(email, '@') == NULL) {
		/* An error reply reaches the requester as this code and text. */
		sb_reply_error(call, SB_EINVAL, "email must contain '@'", NULL, 0);
		return;
	}
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 3);
	pack_str(&pk, "id");
	msgpack_pack_uint64(&pk, next_id++);
	pack_str(&pk, "email");
	pack_str(&pk, email);
	pack_str(&pk, "name");
	pack_str(&pk, name);
	sb_reply(call, "user.created", sb.data, sb.size); /* copies the payload */
	msgpack_sbuffer_destroy(&sb);
}

/* The test (and you) wait for this line before sending requests. */
static void on_state(struct sb_client *c, enum sb_client_state s, int err, void *ud)
{
	(void)c;
	if (s == SB_CLIENT_ONLINE && ud != NULL)
		printf("%s\n", (const char *)ud); /* the service's "ready" line */
	else if (s == SB_CLIENT_ERROR)
		fprintf(stderr, "example_user: router refused: %s\n", sb_strerror(err));
}

static void on_signal(int sig)
{
	(void)sig;
	sb_client_stop(client); /* the one client call safe in a signal handler */
}

static int usage(void)
{
	fprintf(stderr, "usage: example_user serve --port PORT\n"
			"       example_user call --port PORT EMAIL NAME\n");
	return 2;
}

int main(int argc, char **argv)
{
	struct sb_client_config cfg;
	int err, rc;

	setvbuf(stdout, NULL, _IOLBF, 0); /* a pipe sees each line as it is printed */
	if (argc < 4 || strcmp(argv[2], "--port") != 0)
		return usage();
	int serve = strcmp(argv[1], "serve") == 0;
	if (!serve && (strcmp(argv[1], "call") != 0 || argc != 6))
		return usage();

	sb_client_config_init(&cfg);
	cfg.port = (uint16_t)atoi(argv[3]);
	cfg.role =
		serve ? SB_ROLE_SERVICE : SB_ROLE_CLIENT; /* only services may register handlers */
	cfg.on_state = on_state;
	cfg.ud = serve ? "serving user.create" : NULL;
	client = sb_client_new(&cfg, &err);
	if (client == NULL) {
		fprintf(stderr, "example_user: %s\n", sb_strerror(err));
		return 1;
	}
	if (serve) {
		signal(SIGINT, on_signal);
		signal(SIGTERM, on_signal);
		sb_client_register(client, "user.create", NULL, on_create, NULL);
		rc = sb_client_run(client); /* handlers run in here until a signal */
	} else {
		char outcome[256], email[128], name[128];
		void *reply = NULL;
		size_t reply_len = 0;
		msgpack_sbuffer sb;
		msgpack_packer pk;

		msgpack_sbuffer_init(&sb);
		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		msgpack_pack_map(&pk, 2);
		pack_str(&pk, "email");
		pack_str(&pk, argv[4]);
		pack_str(&pk, "name");
		pack_str(&pk, argv[5]);
		/* Blocks until the final reply (or 5 s), connecting first if needed. */
		struct sb_opts opts = SB_OPTS_INIT;
		opts.timeout_ms = 5000;
		rc = sb_request_wait(client, "user.create", sb.data, sb.size, &opts, outcome,
				     sizeof outcome, &reply, &reply_len);
		msgpack_sbuffer_destroy(&sb);
		if (rc != 0) {
			printf("error %s: %s\n", sb_errname(rc), outcome);
		} else {
			msgpack_unpacked u;
			uint64_t id = 0;
			msgpack_unpacked_init(&u);
			email[0] = name[0] = '\0';
			if (msgpack_unpack_next(&u, reply, reply_len, NULL) ==
			    MSGPACK_UNPACK_SUCCESS) {
				map_str(&u.data, "email", email, sizeof email);
				map_str(&u.data, "name", name, sizeof name);
				const msgpack_object *v = map_get(&u.data, "id");
				if (v != NULL && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
					id = v->via.u64;
			}
			msgpack_unpacked_destroy(&u);
			printf("%s: id=%llu email=%s name=%s\n", outcome, (unsigned long long)id,
			       email, name);
		}
		free(reply);
	}
	sb_client_free(client);
	return rc == 0 ? 0 : 1;
}
