/* TLS end to end: request/reply and a 6.5 MB stream compared byte for byte
 * over TLS, the router's certificate checked by name and CA, openssl
 * s_client as a client we did not write, a plain client refused with an
 * ERROR it can read while TLS clients carry on, a TLS client of a plain
 * router, a stalled handshake closed at the HELLO deadline, and bad
 * settings refused. In-process routers with certificates made at test
 * time; clients made with the client library. */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

#include <switchboard/client.h>
#include <switchboard/router.h>

#include "common/tls.h" /* sb__tls_match, for the pattern rules */
#include "support/clock.h"
#include "support/peer.h"
#include "support/pump.h"
#include "support/router.h"
#include "support/testlib.h"
#include "support/tls.h"

/* The file.read handler streams CHUNKS chunks of CHUNK bytes as MessagePack
 * bin32, produced from the pump loop as the library's flow control allows. */
enum { CHUNK = 65536, CHUNKS = 100 };

static struct sb_call *streaming;

static int produced, overloaded;

static uint8_t pattern(int chunk, size_t k)
{
	return (uint8_t)(chunk * 131 + (int)(k * 7) + (int)(k >> 9));
}

static void handle_read(struct sb_call *call, void *ud)
{
	(void)ud;
	streaming = call;
	produced = 0;
}

static void produce(void *arg)
{
	static uint8_t buf[5 + CHUNK];

	(void)arg;
	while (streaming != NULL && produced < CHUNKS) {
		buf[0] = 0xc6;
		buf[1] = 0;
		buf[2] = (uint8_t)(CHUNK >> 16);
		buf[3] = (uint8_t)(CHUNK >> 8);
		buf[4] = (uint8_t)CHUNK;
		for (size_t k = 0; k < CHUNK; k++)
			buf[5 + k] = pattern(produced, k);
		int rc = sb_reply_more(streaming, SB_MORE_CHUNK, "chunk", buf, sizeof buf);
		if (rc == SB_EOVERLOADED) {
			overloaded++;
			return; /* the next turn, once some went out */
		}
		CHECK_INT(rc, 0);
		produced++;
	}
	if (streaming != NULL) {
		CHECK_INT(sb_reply(streaming, "file.read-done", NULL, 0), 0);
		streaming = NULL;
	}
}

struct stream_seen {
	int chunks, bad, done, err;
	size_t bytes;
};

static void on_chunk(const struct sb_reply *rep, void *ud)
{
	struct stream_seen *s = ud;
	const uint8_t *p = rep->payload;

	if (rep->more == SB_MORE_NONE) {
		s->done = 1;
		s->err = rep->err;
		return;
	}
	if (rep->len != 5 + CHUNK || p[0] != 0xc6) {
		s->bad++;
		return;
	}
	for (size_t k = 0; k < CHUNK; k++)
		if (p[5 + k] != pattern(s->chunks, k)) {
			s->bad++;
			break;
		}
	s->chunks++;
	s->bytes += CHUNK;
}

static void test_patterns(void)
{
	CHECK(sb__tls_match("alice", "alice"));
	CHECK(sb__tls_match("alice", "ALICE"));
	CHECK(!sb__tls_match("alice", "alice2"));
	CHECK(sb__tls_match("svc-*", "svc-billing"));
	CHECK(sb__tls_match("svc-*", "svc-"));
	CHECK(!sb__tls_match("svc-*", "svc"));
	CHECK(sb__tls_match("*.example.com", "a.b.example.com"));
	CHECK(!sb__tls_match("*.example.com", "example.com"));
	CHECK(sb__tls_match("a*b*c", "axxbyyc"));
	CHECK(!sb__tls_match("a*b*c", "axxbyy"));
	CHECK(sb__tls_match("*", "anything"));
	CHECK(sb__tls_match("**x", "x"));
}

static void test_request_reply_over_tls(void)
{
	uint16_t port;
	struct tls_cfg t = {.cert = "server"};
	struct sb_router *r = tls_router(&t, &port);
	struct tls_watch ws = {0}, wc = {0};
	struct sb_client *svc = tls_client(port, "service", NULL, NULL, &ws);
	struct sb_client *req = tls_client(port, "client", NULL, NULL, &wc);
	struct sb_client *cs[] = {svc, req};

	CHECK_INT(sb_client_register(svc, "echo", NULL, handle_echo_subject, NULL), 0);
	if (pump_online(cs, 2)) {
		for (uint8_t i = 0; i < 20; i++)
			echo_works(cs, 2, req, i);
		CHECK_STR(last_subject, "(none)"); /* TLS, but no client certificate */
	}
	CHECK_INT(wc.error + ws.error, 0);
	sb_client_free(req);
	sb_client_free(svc);
	router_close(r);
}

static void test_router_certificate_is_checked(void)
{
	uint16_t port;
	struct tls_cfg t = {.cert = "server"};
	struct sb_router *r = tls_router(&t, &port);
	struct tls_watch w1 = {0}, w2 = {0}, w3 = {0};

	/* The certificate names 127.0.0.1 and localhost: both verify. */
	struct sb_client *ok = tls_client(port, "client", NULL, "localhost", &w1);
	pump_online(&ok, 1);
	sb_client_free(ok);

	struct sb_client *wrong = tls_client(port, "client", NULL, "billing.example", &w2);
	expect_refused(
		wrong, &w2, SB_EUNAUTHORIZED,
		"router certificate \"server\" refused: it does not name \"billing.example\"");
	sb_client_free(wrong);
	router_close(r);

	/* A router whose certificate another CA signed. */
	t.cert = "rogue-server";
	r = tls_router(&t, &port);
	struct sb_client *fooled = tls_client(port, "client", NULL, NULL, &w3);
	expect_refused(fooled, &w3, SB_EUNAUTHORIZED,
		       "router certificate \"rogue-server\" refused: it is not signed by a "
		       "trusted CA");
	sb_client_free(fooled);
	router_close(r);
}

static void test_big_stream_arrives_intact(void)
{
	uint16_t port;
	/* A small out_max makes the router pause the handler while the
	 * requester drains: TLS plaintext parked and resumed. */
	struct tls_cfg t = {.cert = "server", .out_max = 1u << 20};
	struct sb_router *r = tls_router(&t, &port);
	struct tls_watch ws = {0}, wc = {0};
	struct sb_client *svc = tls_client(port, "service", NULL, NULL, &ws);
	struct sb_client *req = tls_client(port, "client", NULL, NULL, &wc);
	struct sb_client *cs[] = {svc, req};
	struct stream_seen seen = {0};
	struct sb_router_stats st;

	CHECK_INT(sb_client_register(svc, "file.read", NULL, handle_read, NULL), 0);
	if (pump_online(cs, 2)) {
		CHECK_INT(sb_request(req, "file.read", NULL, 0,
				     &(struct sb_opts){.size = sizeof(struct sb_opts),
						       .timeout_ms = 60000},
				     on_chunk, &seen, NULL),
			  0);
		pump_tick = produce;
		pump_until(cs, 2, &seen.done, 1, "the end of the stream");
		pump_tick = NULL;
	}
	CHECK_INT(seen.err, 0);
	CHECK_INT(seen.chunks, CHUNKS);
	CHECK_INT(seen.bad, 0);
	CHECK(seen.bytes == (size_t)CHUNKS * CHUNK); /* 6.5 MB, every byte compared */
	sb_router_stats(r, &st);
	CHECK_INT(st.slow_consumers, 0);
	sb_client_free(req);
	sb_client_free(svc);
	router_close(r);
}

/* openssl s_client, a client we did not write, sends a frame whose body is
 * not MessagePack; what it prints is the router's ERROR, as bytes. */
static void test_s_client_gets_bad_frame(void)
{
	uint16_t port;
	struct tls_cfg t = {.cert = "server"};
	struct sb_router *r = tls_router(&t, &port);
	int in[2], out[2];
	char addr[32];
	static const uint8_t garbage[] = "\x00\x00\x00\x10this is not msgp";

	snprintf(addr, sizeof addr, "127.0.0.1:%u", port);
	CHECK(pipe(in) == 0 && pipe(out) == 0);
	pid_t pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(in[0], 0);
		dup2(out[1], 1);
		dup2(null, 2);
		close(in[1]);
		close(out[0]);
		/* -quiet: only the application data on stdout; it implies
		 * -ign_eof, so s_client stays until the router closes. */
		execlp("openssl", "openssl", "s_client", "-connect", addr, "-CAfile", at("ca.pem"),
		       "-verify_return_error", "-quiet", (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	CHECK(write(in[1], garbage, sizeof garbage - 1) == (ssize_t)(sizeof garbage - 1));

	uint8_t got[512];
	size_t have = 0;
	uint64_t end = now_ms() + pump_limit_ms;
	for (;;) { /* until s_client exits: the router closed the connection */
		struct pollfd p = {.fd = out[0], .events = POLLIN};
		if (now_ms() >= end || poll(&p, 1, 100) < 0)
			break;
		ssize_t n = p.revents ? read(out[0], got + have, sizeof got - have) : 1;
		if (n <= 0)
			break;
		if (p.revents)
			have += (size_t)n;
	}
	close(in[1]);
	close(out[0]);
	int status = 0;
	for (int i = 0; i < 100 && waitpid(pid, &status, WNOHANG) == 0; i++)
		usleep(20000);
	if (waitpid(pid, &status, WNOHANG) == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		CHECK(!"s_client did not exit: the router did not close");
	}

	struct sb_msg m;
	CHECK(have >= SB_PREFIX_LEN);
	uint32_t len = have >= 4 ? (uint32_t)got[0] << 24 | got[1] << 16 | got[2] << 8 | got[3] : 0;
	CHECK(have == SB_PREFIX_LEN + len); /* one frame, then the close */
	CHECK_INT(sb_decode(got, have, SB_DECODE_PAYLOAD, &m, NULL), 0);
	CHECK_INT(m.kind, SB_ERROR);
	CHECK_INT(m.code, -SB_EBADFRAME);
	CHECK(m.flags & SB_F_FATAL);
	CHECK(v_is(m.text, "body is not a MessagePack fixarray"));
	router_close(r);
}

/* A client without TLS gets a plaintext ERROR it can read; the TLS
 * clients of the same router notice nothing. */
static void test_plain_client_refused_cleanly(void)
{
	uint16_t port;
	struct tls_cfg t = {.cert = "server"};
	struct sb_router *r = tls_router(&t, &port);
	struct tls_watch ws = {0}, wc = {0}, wp = {0};
	struct sb_client *svc = tls_client(port, "service", NULL, NULL, &ws);
	struct sb_client *req = tls_client(port, "client", NULL, NULL, &wc);
	struct sb_client *cs[] = {svc, req};

	CHECK_INT(sb_client_register(svc, "echo", NULL, handle_echo_subject, NULL), 0);
	pump_online(cs, 2);

	struct peer *p = peer_dial(port);
	struct sb_msg hello = {
		.kind = SB_HELLO, .version = SB_PROTO_VERSION, .role = v_str("client")};
	peer_send(p, &hello);
	struct sb_msg *e = peer_expect(p, SB_ERROR);
	CHECK_INT(e->code, -SB_EUNAUTHORIZED);
	CHECK(e->flags & SB_F_FATAL);
	CHECK(v_is(e->text, "this router requires TLS"));
	CHECK_INT(peer_recv_within(p, 5000), 0); /* closed */
	peer_close(p);

	/* The library without TLS: refused for good, and told why. */
	struct sb_client_config cfg;
	sb_client_config_init(&cfg);
	cfg.port = port;
	cfg.on_state = tls_on_state;
	cfg.ud = &wp;
	struct sb_client *plain = sb_client_new(&cfg, NULL);
	expect_refused(plain, &wp, SB_EUNAUTHORIZED, "this router requires TLS");
	sb_client_free(plain);

	echo_works(cs, 2, req, 7);
	CHECK_INT(ws.offline + wc.offline, 0);
	sb_client_free(req);
	sb_client_free(svc);
	router_close(r);
}

/* A TLS client of a plain router: its handshake fails, it says so, and it
 * keeps trying (the router may be switched to TLS) without going online. */
static void test_tls_client_of_plain_router(void)
{
	uint16_t port;
	struct sb_router *r = tls_router(NULL, &port);
	struct tls_watch w = {0};
	struct sb_client *c = tls_client(port, "client", NULL, NULL, &w);
	uint64_t end = now_ms() + 400;

	while (now_ms() < end)
		CHECK_INT(sb_client_process(c, 10), 0);
	CHECK_INT(w.online, 0);
	CHECK(strncmp(sb_client_last_error(c), "TLS: ", 5) == 0);
	sb_client_free(c);
	router_close(r);
}

/* A peer that starts a handshake and stalls (or never starts one) is
 * closed at the HELLO deadline, like a silent plain peer: it cannot hold a
 * descriptor and a place for long. It hears nothing first (there is no
 * TLS session to say it in). */
static void test_stalled_handshake_is_closed(void)
{
	struct sb_router_config cfg;
	struct sb_router_stats st;
	int err = 0;

	tls_fill(&cfg, &(struct tls_cfg){.cert = "server"});
	cfg.hello_timeout_ms = 200;
	struct sb_router *r = sb_router_new(&cfg, &err);
	CHECK(r != NULL);
	if (r == NULL)
		return;
	CHECK_INT(sb_router_start(r), 0);
	struct peer *silent = peer_dial(sb_router_port(r));
	struct peer *stalled = peer_dial(sb_router_port(r));
	static const uint8_t start[] = {22, 3, 1, 0x02, 0x00, 1}; /* a ClientHello's first bytes */
	peer_raw(stalled, start, sizeof start);
	CHECK_INT(peer_recv_within(silent, 5000), 0);
	CHECK_INT(peer_recv_within(stalled, 5000), 0);
	sb_router_stats(r, &st);
	CHECK_INT(st.hello_timeouts, 2);
	peer_close(silent);
	peer_close(stalled);
	router_close(r);
}

static void test_bad_settings_are_refused(void)
{
	static const char *const LIST[] = {"alice", NULL};
	static const char *const EMPTY_NAME[] = {"", NULL};
	struct sb_router_config cfg;
	int err = 0;

	log_capture();
	struct {
		struct tls_cfg t;
		const char *why;
	} bad[] = {
		{{.cert = "server", .key = "alice"}, "does not belong to"},
		{{.cert = "eve"}, "the certificate has expired"},
		{{.cert = "nothere"}, "No such file or directory"},
		{{.cert = "server", .allow = LIST},
		 "tls-allow and tls-deny need tls-verify-client"},
		{{.cert = "server", .mtls = 1, .allow = EMPTY_NAME}, "a name must be"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		tls_fill(&cfg, &bad[i].t);
		CHECK(sb_router_new(&cfg, &err) == NULL);
		CHECK_INT(err, SB_EINVAL);
	}
	tls_fill(&cfg, NULL);
	cfg.tls_verify_client = 1; /* without a certificate */
	CHECK(sb_router_new(&cfg, &err) == NULL);

	/* The client refuses TLS settings without TLS, and files that do not load. */
	struct sb_client_config cc;
	sb_client_config_init(&cc);
	cc.tls_ca = at("ca.pem");
	CHECK(sb_client_new(&cc, &err) == NULL);
	CHECK_INT(err, SB_EINVAL);
	cc.tls = 1;
	cc.tls_ca = at("nothere.pem");
	CHECK(sb_client_new(&cc, &err) == NULL);
	CHECK_INT(err, SB_EINVAL);

	char *log = log_release();
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		expect_logged(log, bad[i].why);
	expect_logged(log, "need tls-cert");
	free(log);
}

int main(int argc, char **argv)
{
	if (argc != 1) {
		fprintf(stderr, "usage: test_security_tls\n");
		return 2;
	}
	(void)argv;
	signal(SIGPIPE, SIG_IGN);
	pump_limit_ms = 10000;
	if (certs_make() != 0) {
		fprintf(stderr,
			"cannot make certificates with openssl in %s (see make.log there)\n",
			at(""));
		return 1;
	}
	RUN(test_patterns);
	RUN(test_request_reply_over_tls);
	RUN(test_router_certificate_is_checked);
	RUN(test_big_stream_arrives_intact);
	RUN(test_s_client_gets_bad_frame);
	RUN(test_plain_client_refused_cleanly);
	RUN(test_tls_client_of_plain_router);
	RUN(test_stalled_handshake_is_closed);
	RUN(test_bad_settings_are_refused);
	certs_remove();
	return TEST_EXIT();
}
