/* What the client library refuses before anything is sent (bad settings,
 * names, payloads, sizes), and argument schemas: registered with a handler,
 * enforced by the router for requests to a peer and broadcasts too, sent
 * again after a reconnect, and one over the router's frame limit. */
#include <switchboard/client.h>
#include <switchboard/router.h>

#include "common/json.h"
#include "support/clients.h"
#include "support/pump.h"
#include "support/router.h"
#include "support/testlib.h"

/* {"keys": {"email": {"type": "str"}}, "required": ["email"]} */
static const uint8_t EMAIL_SCHEMA[] = {0x82, 0xa4, 'k',  'e',  'y',  's', 0x81, 0xa5, 'e', 'm',
				       'a',  'i',  'l',  0x81, 0xa4, 't', 'y',  'p',  'e', 0xa3,
				       's',  't',  'r',  0xa8, 'r',  'e', 'q',  'u',  'i', 'r',
				       'e',  'd',  0x91, 0xa5, 'e',  'm', 'a',  'i',  'l'};

static const uint8_t NO_EMAIL[] = {0x80};

static const uint8_t EMAIL_INT[] = {0x81, 0xa5, 'e', 'm', 'a', 'i', 'l', 0x07};

static const uint8_t EMAIL_OK[] = {0x81, 0xa5, 'e', 'm', 'a', 'i', 'l', 0xa1, 'a'};

struct sc_state {
	struct watch *ws, *wc;
};

static int sc_reconnected(void *arg)
{
	struct sc_state *s = arg;
	return s->ws->reconnected >= 1 && s->wc->reconnected >= 1;
}

/* The router answers bad arguments for the handler; the handler sees only
 * good ones. Returns how many calls the handler got. */
static void check_schema_enforced(struct sb_client *const *cs, struct sb_client *ui,
				  const int *calls, int before)
{
	struct replies r1 = {0}, r2 = {0}, r3 = {0};
	CHECK_INT(sb_request(ui, "sc.user", NO_EMAIL, sizeof NO_EMAIL, NULL, on_reply, &r1, NULL),
		  0);
	CHECK_INT(sb_request(ui, "sc.user", EMAIL_INT, sizeof EMAIL_INT, NULL, on_reply, &r2, NULL),
		  0);
	CHECK_INT(sb_request(ui, "sc.user", EMAIL_OK, sizeof EMAIL_OK, NULL, on_reply, &r3, NULL),
		  0);
	pump_until(cs, 2, &r3.terminal, 1, "the good request's reply");
	pump_until(cs, 2, &r2.terminal, 1, "the refusals");
	CHECK_INT(r1.err, SB_EINVAL);
	CHECK_STR(r1.outcome, "missing required key \"email\"");
	CHECK_INT(r2.err, SB_EINVAL);
	CHECK_STR(r2.outcome, "key \"email\": expected str, got uint");
	CHECK_INT(r3.err, 0);
	CHECK_STR(r3.outcome, "echoed");
	CHECK_INT(*calls, before + 1);
}

static void test_bad_arguments(void)
{
	router_start(NULL);
	struct sb_client_config cfg;
	struct watch w = {0};
	int err = 0;

	sb_client_config_init(&cfg);
	CHECK_INT(cfg.size, sizeof cfg);
	cfg.role = (enum sb_role)7;
	CHECK(sb_client_new(&cfg, &err) == NULL);
	CHECK_INT(err, SB_EINVAL);
	/* A program built when the struct ended after `name` gets the defaults
	 * for the rest (role "client" among them); one too short for host and
	 * port is refused. */
	sb_client_config_init(&cfg);
	cfg.port = PORT;
	cfg.role = (enum sb_role)7; /* past the old struct's end: not read */
	cfg.size = offsetof(struct sb_client_config, name) + sizeof cfg.name;
	struct sb_client *old = sb_client_new(&cfg, &err);
	CHECK(old != NULL); /* role 7, had it been read, is refused */
	sb_client_free(old);
	cfg.size = sizeof(size_t);
	CHECK(sb_client_new(&cfg, &err) == NULL);
	CHECK_INT(err, SB_EINVAL);
	sb_client_config_init(&cfg);
	cfg.name = "has space";
	CHECK(sb_client_new(&cfg, &err) == NULL);
	CHECK_INT(err, SB_EINVAL);
	sb_client_config_init(&cfg);
	cfg.reconnect_min_ms = 10000;
	CHECK(sb_client_new(&cfg, &err) == NULL);
	CHECK_INT(err, SB_EINVAL);

	struct sb_client *cli = client("args-cli", "client", &w);
	struct sb_client *svc = client("args-svc", "service", &w);
	struct sb_client *cs[] = {cli, svc};
	struct replies r = {0};
	CHECK_INT(sb_client_register(svc, "$sb.routes", NULL, handle_echo, NULL), SB_EINVAL);
	CHECK_INT(sb_client_register(svc, "bad name", NULL, handle_echo, NULL), SB_EINVAL);
	CHECK_INT(sb_client_register(svc, "x",
				     &(struct sb_handler_opts){
					     .size = sizeof(struct sb_handler_opts), .flags = 0x80},
				     handle_echo, NULL),
		  SB_EINVAL);
	CHECK_INT(sb_client_register(svc, "x", NULL, NULL, NULL), SB_EINVAL);
	CHECK_INT(sb_client_unregister(svc, "never"), SB_EINVAL);
	pump_online(cs, 2);
	static const uint8_t bad[] = {0x92, 0x01}; /* an array missing an element */
	CHECK_INT(sb_send(cli, "x", bad, sizeof bad, NULL), SB_EINVAL);
	CHECK_INT(sb_send(cli, "x", NULL, 5, NULL), SB_EINVAL);
	CHECK_INT(sb_request(cli, "x", bad, sizeof bad, NULL, on_reply, &r, NULL), SB_EINVAL);
	CHECK_INT(sb_request(cli, "x", NULL, 0, NULL, NULL, NULL, NULL), SB_EINVAL);
	CHECK_INT(sb_request(cli, "", NULL, 0, NULL, on_reply, &r, NULL), SB_EINVAL);
	/* Over the router's frame limit (WELCOME said 1 MiB). */
	size_t big = (1u << 20) + 16;
	uint8_t *blob = calloc(1, big);
	blob[0] = 0xc6; /* bin32 */
	blob[1] = (uint8_t)((big - 5) >> 24);
	blob[2] = (uint8_t)((big - 5) >> 16);
	blob[3] = (uint8_t)((big - 5) >> 8);
	blob[4] = (uint8_t)(big - 5);
	CHECK_INT(sb_send(cli, "x", blob, big, NULL), SB_ETOOLARGE);
	free(blob);
	pump_for(cs, 2, 30);
	CHECK_INT(r.n, 0);
	CHECK_INT(sb_client_online(cli), 1);
	sb_client_free(cli);
	sb_client_free(svc);
	router_stop();
}

static void test_register_with_a_schema_and_after_reconnect(void)
{
	struct watch ws = {0}, wc = {0};
	int calls = 0;
	struct sb_router *r2 = router_open_at(0);
	uint16_t port = sb_router_port(r2);
	struct sb_client *svc = client_at(port, "sc-svc", "service", &ws);
	struct sb_client *ui = client_at(port, "sc-ui", "client", &wc);
	struct sb_client *cs[] = {svc, ui};

	/* What the router would refuse is refused here, at once. */
	static const uint8_t two_values[] = {0x81, 0xa4, 'k',  'e',  'y', 's', 0x81, 0xa1,
					     'a',  0x81, 0xa4, 't',  'y', 'p', 'e',  0xa3,
					     'i',  'n',  't',  0xa1, 'x'}; /* a trailing byte:
									      two values */
	static const uint8_t not_map[] = {0x91, 0xa1, 'a'};
	CHECK_INT(
		sb_client_register(svc, "sc.user",
				   &(struct sb_handler_opts){.size = sizeof(struct sb_handler_opts),
							     .schema = two_values,
							     .schema_len = sizeof two_values},
				   handle_echo, &calls),
		SB_EINVAL);
	CHECK_INT(
		sb_client_register(svc, "sc.user",
				   &(struct sb_handler_opts){.size = sizeof(struct sb_handler_opts),
							     .schema = not_map,
							     .schema_len = sizeof not_map},
				   handle_echo, &calls),
		SB_EINVAL);
	struct sb_handler_opts no_schema = SB_HANDLER_OPTS_INIT;
	no_schema.schema_len = 5; /* a length without a schema */
	CHECK_INT(sb_client_register(svc, "sc.user", &no_schema, handle_echo, &calls), SB_EINVAL);
	CHECK_INT(
		sb_client_register(svc, "sc.user",
				   &(struct sb_handler_opts){.size = sizeof(struct sb_handler_opts),
							     .schema = EMAIL_SCHEMA,
							     .schema_len = sizeof EMAIL_SCHEMA},
				   handle_echo, &calls),
		0);
	pump_online(cs, 2);
	check_schema_enforced(cs, ui, &calls, 0);

	/* A new router on the same port knows nothing: the registration, its
	 * schema with it, comes back by itself. */
	sb_router_stop(r2, 0);
	sb_router_free(r2);
	struct sb_router *r3 = router_open_at(port);
	struct sc_state st = {&ws, &wc};
	pump_cond(cs, 2, sc_reconnected, &st, "RECONNECTED on both");
	check_schema_enforced(cs, ui, &calls, 1);
	CHECK_INT(ws.error + wc.error, 0);
	sb_client_free(svc);
	sb_client_free(ui);
	sb_router_stop(r3, 0);
	sb_router_free(r3);
}

/* A schema over a router's frame limit: dropped when connecting (reported
 * as an error, not a reconnect loop), refused at once while connected. */
static void test_schema_over_the_frame_limit(void)
{
	struct sb_router_config cfg;
	struct watch ws = {0};
	int err = 0;
	sb_router_config_init(&cfg);
	cfg.port = 0;
	cfg.shards = 1;
	cfg.log_level = 0;
	cfg.max_frame = 256;
	cfg.out_max = 4096;
	struct sb_router *small = sb_router_new(&cfg, &err);
	CHECK(small != NULL);
	CHECK_INT(sb_router_start(small), 0);

	/* {"required": ["key00", ..., "key59"]}: 373 bytes */
	uint8_t big[16 + 60 * 6];
	size_t n = 0;
	memcpy(big, "\x81\xa8required\xdc\x00\x3c", 13);
	n = 13;
	for (int i = 0; i < 60; i++) {
		big[n++] = 0xa5;
		n += (size_t)snprintf((char *)big + n, 6, "key%02d", i);
	}
	CHECK_INT(sb_schema_validate(big, n, NULL, 0), 0);
	struct sb_client *svc = client_at(sb_router_port(small), "big-svc", "service", &ws);
	struct sb_client *cs[] = {svc};
	CHECK_INT(
		sb_client_register(svc, "big",
				   &(struct sb_handler_opts){.size = sizeof(struct sb_handler_opts),
							     .schema = big,
							     .schema_len = n},
				   handle_echo, NULL),
		0);
	CHECK_INT(sb_client_register(svc, "small", NULL, handle_echo, NULL), 0);
	pump_online(cs, 1);
	CHECK_INT(ws.error, 1);
	CHECK_INT(ws.error_err, SB_ETOOLARGE);
	CHECK_INT(sb_client_unregister(svc, "big"), SB_EINVAL); /* it is gone */
	CHECK_INT(sb_client_unregister(svc, "small"), 0);
	CHECK_INT(
		sb_client_register(svc, "big",
				   &(struct sb_handler_opts){.size = sizeof(struct sb_handler_opts),
							     .schema = big,
							     .schema_len = n},
				   handle_echo, NULL),
		SB_ETOOLARGE);
	pump_for(cs, 1, 30);
	CHECK_INT(ws.offline, 0);
	sb_client_free(svc);
	sb_router_stop(small, 0);
	sb_router_free(small);
}

/* `to` and broadcast skip load balancing, not the schema: a request to the
 * named peer, or to every handler, that breaks it is refused before any
 * handler sees it. */
static void test_schema_applies_to_peers_and_broadcasts(void)
{
	router_start(NULL);
	struct watch ws[2] = {{0}}, wc = {0};
	int calls = 0;
	struct sb_client *a = client("sc-to-a", "service", &ws[0]);
	struct sb_client *b = client("sc-to-b", "service", &ws[1]);
	struct sb_client *ui = client("sc-to-ui", "client", &wc);
	struct sb_client *cs[] = {a, b, ui};
	struct replies r[3] = {{0}};
	struct all_replies all = {.names = {"sc-to-a", "sc-to-b"}}, bad = {0};

	CHECK_INT(
		sb_client_register(a, "sc.peer",
				   &(struct sb_handler_opts){.size = sizeof(struct sb_handler_opts),
							     .schema = EMAIL_SCHEMA,
							     .schema_len = sizeof EMAIL_SCHEMA},
				   handle_echo, &calls),
		0);
	CHECK_INT(
		sb_client_register(b, "sc.peer",
				   &(struct sb_handler_opts){.size = sizeof(struct sb_handler_opts),
							     .schema = EMAIL_SCHEMA,
							     .schema_len = sizeof EMAIL_SCHEMA},
				   handle_echo, &calls),
		0);
	pump_online(cs, 3);
	CHECK_INT(sb_request(ui, "sc.peer", NO_EMAIL, sizeof NO_EMAIL,
			     &(struct sb_opts){.size = sizeof(struct sb_opts),
					       .timeout_ms = LONG_MS,
					       .to = "sc-to-b"},
			     on_reply, &r[0], NULL),
		  0);
	CHECK_INT(sb_request(ui, "sc.peer", EMAIL_OK, sizeof EMAIL_OK,
			     &(struct sb_opts){.size = sizeof(struct sb_opts),
					       .timeout_ms = LONG_MS,
					       .to = "sc-to-b"},
			     on_reply, &r[1], NULL),
		  0);
	CHECK_INT(sb_request(ui, "sc.peer", EMAIL_INT, sizeof EMAIL_INT,
			     &(struct sb_opts){.size = sizeof(struct sb_opts),
					       .timeout_ms = LONG_MS,
					       .flags = SB_OPT_ALL},
			     on_all, &bad, NULL),
		  0);
	CHECK_INT(sb_request(ui, "sc.peer", EMAIL_OK, sizeof EMAIL_OK,
			     &(struct sb_opts){.size = sizeof(struct sb_opts),
					       .timeout_ms = LONG_MS,
					       .flags = SB_OPT_ALL},
			     on_all, &all, NULL),
		  0);
	pump_until(cs, 3, &r[1].terminal, 1, "the good request to sc-to-b");
	pump_until(cs, 3, &all.terminal, 1, "the good broadcast");
	pump_until(cs, 3, &bad.terminal, 1, "the refused broadcast");
	pump_until(cs, 3, &r[0].terminal, 1, "the refused request to sc-to-b");
	CHECK_INT(r[0].err, SB_EINVAL);
	CHECK_STR(r[0].outcome, "missing required key \"email\"");
	CHECK_INT(r[1].err, 0);
	CHECK_INT(bad.err, SB_EINVAL);
	CHECK_INT(bad.results, 0); /* refused whole: no handler saw it */
	CHECK_INT(all.err, 0);
	CHECK_INT(all.results, 2);
	CHECK_INT(calls, 3); /* the good request to b, and the good broadcast's two */
	sb_client_free(a);
	sb_client_free(b);
	sb_client_free(ui);
	router_stop();
}

/* A service writes its schema as a JSON Schema document, in JSON, as it
 * would for its gateway; the router holds requests to it and names the
 * path of what is wrong. */
static const char SHIP_SCHEMA[] =
	"{\"type\": \"object\", \"required\": [\"to\"],"
	" \"properties\": {"
	"  \"to\": {\"type\": \"object\", \"required\": [\"zip\"],"
	"   \"properties\": {\"zip\": {\"type\": \"string\", \"minLength\": 5}}},"
	"  \"items\": {\"type\": \"array\", \"items\": {\"type\": \"integer\", \"minimum\": 1}}}}";

static void request_json(struct sb_client *c, const char *json, struct replies *r)
{
	struct sb__json_buf b = {0};
	struct sb__json_error e;
	CHECK_INT(sb__json_parse(json, strlen(json), &b, &e), 0);
	CHECK_INT(sb_request(c, "sc.ship", b.data, b.len, NULL, on_reply, r, NULL), 0);
	sb__json_buf_free(&b);
}

static void test_a_service_registers_a_json_schema_from_json(void)
{
	router_start(NULL);
	struct watch ws = {0}, wc = {0};
	int calls = 0;
	char why[256];
	void *schema;
	size_t len;

	/* Refused before anything is sent, with the reason. */
	CHECK_INT(
		sb_schema_from_json("{\"type\": \"object\",}", 20, &schema, &len, why, sizeof why),
		SB_EINVAL);
	CHECK(schema == NULL);
	CHECK_STR(why, "JSON at byte 18: expected a string key");
	static const char pattern[] = "{\"properties\": {\"zip\": {\"pattern\": \"^[0-9]+$\"}}}";
	CHECK_INT(sb_schema_from_json(pattern, strlen(pattern), &schema, &len, why, sizeof why),
		  SB_EINVAL);
	CHECK_STR(why, "zip: unsupported JSON Schema keyword \"pattern\"");

	CHECK_INT(sb_schema_from_json(SHIP_SCHEMA, strlen(SHIP_SCHEMA), &schema, &len, why,
				      sizeof why),
		  0);
	struct sb_client *svc = client("sc-ship", "service", &ws);
	struct sb_client *ui = client("sc-ship-ui", "client", &wc);
	struct sb_client *cs[] = {svc, ui};
	struct sb_handler_opts opts = SB_HANDLER_OPTS_INIT;
	opts.schema = schema;
	opts.schema_len = len;
	CHECK_INT(sb_client_register(svc, "sc.ship", &opts, handle_echo, &calls), 0);
	free(schema); /* registering copied it */
	pump_online(cs, 2);

	struct replies r[4] = {{0}};
	request_json(ui, "{\"to\": {\"zip\": 75001}}", &r[0]);
	request_json(ui, "{\"to\": {\"zip\": \"75001\"}, \"items\": [3, 0]}", &r[1]);
	request_json(ui, "{\"items\": [1]}", &r[2]);
	request_json(ui, "{\"to\": {\"zip\": \"75001\"}, \"items\": [3, 4.0]}", &r[3]);
	struct all_done done = {r, 4};
	pump_cond(cs, 2, all_terminal, &done, "four answers");
	CHECK_INT(r[0].err, SB_EINVAL);
	CHECK_STR(r[0].outcome, "to.zip: expected string, got integer");
	CHECK_INT(r[1].err, SB_EINVAL);
	CHECK_STR(r[1].outcome, "items[1]: value too small (0, limit 1)");
	CHECK_INT(r[2].err, SB_EINVAL);
	CHECK_STR(r[2].outcome, "to: required key missing");
	CHECK_INT(r[3].err, 0);
	CHECK_STR(r[3].outcome, "echoed");
	CHECK_INT(calls, 1); /* only the good request reached the handler */
	sb_client_free(svc);
	sb_client_free(ui);
	router_stop();
}

int main(void)
{
	RUN(test_bad_arguments);
	RUN(test_register_with_a_schema_and_after_reconnect);
	RUN(test_schema_over_the_frame_limit);
	RUN(test_schema_applies_to_peers_and_broadcasts);
	RUN(test_a_service_registers_a_json_schema_from_json);
	return TEST_EXIT();
}
