/* Name rules per role: who may register which names and call which, the
 * router's own names included; reload of secrets and rules under running
 * connections; bad rules and secrets refused at start; and the pattern
 * matcher on its own. An in-process router per test; raw peers. */
#include <errno.h>
#include <signal.h>

#include <switchboard/client.h>
#include <switchboard/router.h>

#include "router/pattern.h"
#include "support/admin.h"
#include "support/auth.h"
#include "support/peer.h"
#include "support/router.h"
#include "support/testlib.h"

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	CHECK(f != NULL);
	if (f != NULL) {
		fputs(text, f);
		fclose(f);
	}
}

/* The pattern matcher on its own: exact names, prefixes, "*", the
 * catch-all, and the edges of each. */
static void test_patterns(void)
{
	static const struct {
		const char *rule, *name; /* name "" is the catch-all */
		int allowed;
	} cases[] = {
		{"user.*", "user.create", 1},
		{"user.*", "user.", 1},
		{"user.*", "user", 0},
		{"user.*", "users.x", 0},
		{"user.*", "", 0},
		{"billing.log", "billing.log", 1},
		{"billing.log", "billing.lo", 0},
		{"billing.log", "billing.logs", 0},
		{"a.*,b.x,c*", "c", 1},
		{"a.*,b.x,c*", "b.x", 1},
		{"a.*,b.x,c*", "b.y", 0},
		{"x.*,*", "anything", 1},
		{"x.*,*", "", 1},
		{"caf\xc3\xa9.*", "caf\xc3\xa9.menu", 1},
		{"caf\xc3\xa9.*", "cafe.menu", 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct sb__patterns p = {0};
		char why[256];
		CHECK_INT(sb__patterns_compile(&p, "rule", cases[i].rule, why, sizeof why), 0);
		struct sb_view name = v_str(cases[i].name);
		if (sb__patterns_allow(&p, name) != cases[i].allowed)
			fprintf(stderr, "  %s against %s\n", cases[i].name, cases[i].rule);
		CHECK_INT(sb__patterns_allow(&p, name), cases[i].allowed);
		sb__patterns_free(&p);
	}
	struct sb__patterns none = {0};
	char why[256];
	CHECK_INT(sb__patterns_compile(&none, "rule", NULL, why, sizeof why), 0);
	CHECK(sb__patterns_allow(&none, v_str("")));
	sb__patterns_free(&none);
	const char *bad[] = {"", ",", "a,", "a**", "*a", "a b", "a\tb", "a.*,b*c"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct sb__patterns p = {0};
		int rc = sb__patterns_compile(&p, "rule", bad[i], why, sizeof why);
		if (rc != SB_EINVAL)
			fprintf(stderr, "  \"%s\" was accepted\n", bad[i]);
		CHECK_INT(rc, SB_EINVAL);
		CHECK(rc != SB_EINVAL || strncmp(why, "rule: ", 6) == 0);
		sb__patterns_free(&p);
	}
}

/* Services register only names their rule allows (the catch-all only with
 * "*"); a client's names are for `to` only, take no route, and so are not
 * held to that rule; each role calls only names its rule allows, the
 * router's own names included, whoever handles them. A refused request is answered
 * "forbidden" naming the rule; a refused send is dropped and counted. */
static void test_name_rules(void)
{
	struct sb_router_config cfg = router_config();
	cfg.allow_register_service = "user.*, billing.log";
	cfg.allow_call_client = "user.*,$sb.stats";
	router_start(&cfg);
	struct peer *svc = peer_hello(PORT, "rules-svc", "service");
	struct peer *cli = peer_hello(PORT, "rules-cli", "client");

	struct sb_msg reg = {.kind = SB_REGISTER, .id = 1, .name = v_str("billing.other")};
	peer_send(cli, &reg);
	CHECK(peer_expect(cli, SB_ACK)->id == 1);
	peer_register(svc, "user.create", 2);
	peer_register(svc, "billing.log", 3);
	reg.id = 4;
	reg.name = v_str("billing.other");
	peer_send(svc, &reg);
	expect_refusal(svc, 4, SB_EFORBIDDEN,
		       "\"billing.other\" is not allowed by allow_register_service = \"user.*, "
		       "billing.log\"");
	reg.id = 5;
	reg.name = (struct sb_view){NULL, 0};
	peer_send(svc, &reg);
	expect_refusal(svc, 5, SB_EFORBIDDEN,
		       "the catch-all is not allowed by allow_register_service = \"user.*, "
		       "billing.log\"");

	/* The client's name is reached by `to` only, its caller's rule holding. */
	struct sb_msg to = {.kind = SB_REQUEST, .id = 9, .name = v_str("billing.other")};
	to.to = v_str("rules-cli");
	peer_send(svc, &to);
	struct sb_msg *pushed = peer_expect(cli, SB_REQUEST);
	CHECK(v_is(pushed->name, "billing.other"));
	peer_reply(cli, pushed->id, "done", 0, NULL, 0);
	CHECK_INT(peer_expect(svc, SB_REPLY)->id, 9);
	peer_request(svc, "billing.other", 10, 0, NULL, 0);
	expect_refusal(svc, 10, SB_ENOHANDLER, "no handler for this name");

	peer_request(cli, "billing.log", 6, 0, NULL, 0);
	expect_refusal(
		cli, 6, SB_EFORBIDDEN,
		"\"billing.log\" is not allowed by allow_call_client = \"user.*,$sb.stats\"");
	peer_request(cli, "$sb.peers", 7, 0, NULL, 0);
	expect_refusal(cli, 7, SB_EFORBIDDEN,
		       "\"$sb.peers\" is not allowed by allow_call_client = \"user.*,$sb.stats\"");
	struct sb_msg send = {.kind = SB_SEND, .name = v_str("billing.log")};
	peer_send(cli, &send);
	send.name = v_str("user.create");
	peer_send(cli, &send);
	/* In order from one connection: had the first not been dropped, it
	 * would arrive first. */
	CHECK(v_is(peer_expect(svc, SB_SEND)->name, "user.create"));
	peer_request(cli, "user.create", 8, 0, NULL, 0);
	struct sb_msg *q = peer_expect(svc, SB_REQUEST);
	CHECK(v_is(q->name, "user.create"));
	peer_reply(svc, q->id, "created", 0, NULL, 0);
	CHECK_INT(peer_expect(cli, SB_REPLY)->id, 8);

	/* Services have no call rule here: anything goes. */
	peer_request(svc, "billing.log", 9, 0, NULL, 0);
	q = peer_expect(svc, SB_REQUEST);
	peer_reply(svc, q->id, "logged", 0, NULL, 0);
	CHECK_INT(peer_expect(svc, SB_REPLY)->id, 9);
	/* Every forbidden refusal counts (the client's REGISTER was none). */
	CHECK_INT(stat_of(cli, "forbidden"), 5);
	peer_close(svc);
	peer_close(cli);
	router_stop();
}

/* sb_router_reload swaps secrets and rules under running connections: a
 * handshake challenged before keeps its secret, new ones need the new; a
 * connection's calls are judged by the new rule at once; a bad config
 * changes nothing; secret files are read again. */
static void test_reload(void)
{
	struct sb_router_config cfg = secret_config();
	char path[64];
	uint8_t rn[32];
	snprintf(path, sizeof path, "/tmp/sb-test-auth-%d", (int)getpid());
	cfg.secret_service = "old-secret";
	cfg.allow_call_client = "a.*";
	router_start(&cfg);
	struct peer *pending = hello_challenged("pending", "service", rn);
	struct peer *cli = auth_hello("rl-cli", "client", CLI_SECRET);
	peer_request(cli, "b.x", 1, 0, NULL, 0);
	expect_refusal(cli, 1, SB_EFORBIDDEN,
		       "\"b.x\" is not allowed by allow_call_client = \"a.*\"");

	struct sb_router_config next = cfg;
	next.secret_service = "new-secret";
	next.allow_call_client = "b.*";
	CHECK_INT(sb_router_reload(R, &next), 0);
	send_auth(pending, rn, "old-secret", "pending", NULL, 0);
	peer_expect(pending, SB_WELCOME);
	struct peer *p = hello_challenged("late", "service", rn);
	send_auth(p, rn, "old-secret", "late", NULL, 0);
	expect_fatal(p, SB_EUNAUTHORIZED, "wrong secret for role service", 0);
	peer_close(p);
	struct peer *fresh = auth_hello("fresh", "service", "new-secret");
	peer_request(cli, "b.x", 2, 0, NULL, 0);
	expect_refusal(cli, 2, SB_ENOHANDLER, "no handler for this name");
	peer_request(cli, "a.x", 3, 0, NULL, 0);
	expect_refusal(cli, 3, SB_EFORBIDDEN,
		       "\"a.x\" is not allowed by allow_call_client = \"b.*\"");

	struct sb_router_config bad = next;
	bad.allow_call_client = "b*x";
	CHECK_INT(sb_router_reload(R, &bad), SB_EINVAL);
	peer_request(cli, "b.y", 4, 0, NULL, 0);
	expect_refusal(cli, 4, SB_ENOHANDLER, "no handler for this name");

	struct sb_router_config from_file = next;
	from_file.secret_service = NULL;
	from_file.secret_service_file = path;
	write_file(path, "file-secret\n");
	CHECK_INT(sb_router_reload(R, &from_file), 0);
	peer_close(auth_hello("f1", "service", "file-secret"));
	write_file(path, "rotated");
	CHECK_INT(sb_router_reload(R, &from_file), 0);
	peer_close(auth_hello("f2", "service", "rotated"));
	p = hello_challenged("f3", "service", rn);
	send_auth(p, rn, "file-secret", "f3", NULL, 0);
	expect_fatal(p, SB_EUNAUTHORIZED, "wrong secret for role service", 0);
	peer_close(p);
	unlink(path);
	CHECK_INT(sb_router_reload(R, &from_file), SB_ESYS);
	CHECK_INT(errno, ENOENT);
	peer_close(auth_hello("f4", "service", "rotated"));

	peer_close(pending);
	peer_close(fresh);
	peer_close(cli);
	router_stop();
}

/* Bad rules and secrets are refused at start, with the reason logged. */
static void test_config_is_checked(void)
{
	struct {
		const char *register_service, *call_client, *secret, *secret_file;
		uint32_t idle_ms, pong_ms;
		int err;
	} cases[] = {
		{NULL, "a*b", NULL, NULL, 0, 1, SB_EINVAL},
		{"user.*,,billing.*", NULL, NULL, NULL, 0, 1, SB_EINVAL},
		{"user .x", NULL, NULL, NULL, 0, 1, SB_EINVAL},
		{NULL, NULL, "", NULL, 0, 1, SB_EINVAL},
		{NULL, NULL, "s", "/dev/null", 0, 1, SB_EINVAL},
		{NULL, NULL, NULL, "/dev/null", 0, 1, SB_EINVAL}, /* empty */
		{NULL, NULL, NULL, "/nonexistent/secret", 0, 1, SB_ESYS},
		{NULL, NULL, NULL, NULL, 100, 0, SB_EINVAL},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct sb_router_config cfg = router_config();
		int err = 0;
		cfg.log_level = -1; /* these are meant to fail: keep the log quiet */
		cfg.allow_register_service = cases[i].register_service;
		cfg.allow_call_client = cases[i].call_client;
		cfg.secret_client = cases[i].secret;
		cfg.secret_client_file = cases[i].secret_file;
		cfg.idle_ms = cases[i].idle_ms;
		cfg.pong_timeout_ms = cases[i].pong_ms;
		struct sb_router *r = sb_router_new(&cfg, &err);
		CHECK(r == NULL);
		if (err != cases[i].err)
			fprintf(stderr, "  case %zu\n", i);
		CHECK_INT(err, cases[i].err);
		sb_router_free(r);
	}

	/* A secret file's trailing newline is not part of the secret; spaces
	 * around patterns are not part of them either. */
	char path[64];
	snprintf(path, sizeof path, "/tmp/sb-test-auth-cfg-%d", (int)getpid());
	write_file(path, "abc\r\n");
	struct sb_router_config cfg = router_config();
	cfg.secret_client_file = path;
	cfg.secret_service = SVC_SECRET;
	cfg.allow_call_client = " $sb.stats ,x.* ";
	router_start(&cfg);
	unlink(path); /* read once at start */
	struct peer *p = auth_hello("nl", "client", "abc");
	CHECK_INT(stat_of(p, "auth_failures"), 0);
	peer_close(p);
	router_stop();
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	RUN(test_patterns);
	RUN(test_name_rules);
	RUN(test_reload);
	RUN(test_config_is_checked);
	return TEST_EXIT();
}
