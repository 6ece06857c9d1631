/* The client library when there is no router yet, or no usable one: sends
 * held in the offline queue and delivered in order once online, the reason
 * a connection attempt failed (refused, no such host, a TLS answer from a
 * plain port, a closed or silent listener) in sb_client_last_error(), and
 * the setting named when sb_client_new() refuses a config. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <switchboard/client.h>
#include <switchboard/router.h>

#include "support/clients.h"
#include "support/clock.h"
#include "support/proc.h"
#include "support/pump.h"
#include "support/router.h"
#include "support/testlib.h"
#include "support/tls.h"

/* What the relay's own handler saw, in order. */
struct notes {
	int n;
	unsigned seq[16];
	int before_online; /* notes that arrived before on_state said so */
	int writable;      /* on_writable calls */
	struct watch w;
};

static void on_note(struct sb_call *call, void *ud)
{
	struct notes *s = ud;
	size_t len;
	const void *p = sb_call_payload(call, &len);

	if (s->n < 16)
		s->seq[s->n] = seq_of(p, len);
	s->n++;
	if (s->w.online == 0)
		s->before_online++;
}

static void on_writable(struct sb_client *c, void *ud)
{
	struct notes *s = ud;
	(void)c;
	s->writable++;
}

static void note_state(struct sb_client *c, enum sb_client_state st, int err, void *ud)
{
	struct notes *s = ud;
	on_state(c, st, err, &s->w);
}

/* A relay user's client: a service with a handler of its own, and an
 * offline queue of @p bytes. */
static struct sb_client *relay_at(uint16_t port, size_t bytes, struct notes *s)
{
	struct sb_client_config cfg;
	int err = 0;

	sb_client_config_init(&cfg);
	cfg.port = port;
	cfg.name = "relay-1";
	cfg.role = SB_ROLE_SERVICE;
	cfg.reconnect_min_ms = MIN_MS;
	cfg.reconnect_max_ms = MAX_MS;
	cfg.on_state = note_state;
	cfg.on_writable = on_writable;
	cfg.ud = s;
	cfg.offline_queue_bytes = bytes;
	struct sb_client *c = sb_client_new(&cfg, &err);
	CHECK(c != NULL);
	CHECK_INT(sb_client_register(c, "relay.note", NULL, on_note, s), 0);
	return c;
}

static int send_seq(struct sb_client *c, unsigned v)
{
	uint8_t b[3];
	put_seq(b, v);
	return sb_send(c, "relay.note", b, sizeof b, NULL);
}

static void test_sends_made_before_the_router_is_up_arrive_in_order_once_it_is(void)
{
	struct notes s = {0};
	uint16_t port = free_port();
	struct sb_client *c = relay_at(port, 256, &s);
	struct sb_client *cs[] = {c};
	static uint8_t big[300] = {0xc5, 0x01, 0x00}; /* bin 16 of 256 bytes */

	pump_for(cs, 1, 50);
	CHECK_INT(sb_client_online(c), 0);
	for (unsigned i = 1; i <= 5; i++)
		CHECK_INT(send_seq(c, i), 0);
	CHECK_INT(sb_client_offline_queued(c), 5);
	/* Full: refused, nothing held of it, the others kept. */
	CHECK_INT(sb_send(c, "relay.note", big, 259, NULL), SB_EOVERLOADED);
	CHECK_INT(sb_client_offline_queued(c), 5);
	/* Requests are never held: they have deadlines. */
	struct replies r = {0};
	CHECK_INT(sb_request(c, "relay.note", NULL, 0, NULL, on_reply, &r, NULL), SB_EOFFLINE);

	/* The router comes up: the sends go out after the handler is
	 * registered again, before ONLINE, in the order they were made. */
	struct sb_router *rt = router_open_at(port);
	pump_until(cs, 1, &s.n, 5, "the five held sends");
	CHECK_INT(s.w.online, 1);
	for (unsigned i = 0; i < 5; i++)
		CHECK_INT(s.seq[i], i + 1);
	CHECK_INT(sb_client_offline_queued(c), 0);
	pump_until(cs, 1, &s.writable, 1, "on_writable after the refused send");

	/* Cut off and back: sends made meanwhile follow the re-registration. */
	router_close(rt);
	pump_until(cs, 1, &s.w.offline, 1, "OFFLINE");
	CHECK_INT(send_seq(c, 6), 0);
	CHECK_INT(send_seq(c, 7), 0);
	CHECK_INT(sb_client_offline_queued(c), 2);
	rt = router_open_at(port);
	pump_until(cs, 1, &s.n, 7, "the two sends held across the restart");
	CHECK_INT(s.w.reconnected, 1);
	CHECK_INT(s.seq[5], 6);
	CHECK_INT(s.seq[6], 7);
	CHECK_INT(s.before_online, 0);

	/* Freed while holding one: it is dropped, and the count said so. */
	router_close(rt);
	pump_until(cs, 1, &s.w.offline, 2, "OFFLINE again");
	CHECK_INT(send_seq(c, 8), 0);
	CHECK_INT(sb_client_offline_queued(c), 1);
	sb_client_free(c);
	CHECK_INT(s.n, 7);
}

static void test_without_the_queue_an_offline_send_is_refused(void)
{
	struct notes s = {0};
	struct sb_client *c = relay_at(free_port(), 0, &s);

	CHECK_INT(send_seq(c, 1), SB_EOFFLINE);
	CHECK_INT(sb_client_offline_queued(c), 0);
	sb_client_free(c);
}

/* ---- why a connection failed --------------------------------------------- */

static int has_reason(void *arg)
{
	return *sb_client_last_error(arg) != 0;
}

static struct sb_client *plain_at(const char *host, uint16_t port, int tls)
{
	struct sb_client_config cfg;
	int err = 0;

	sb_client_config_init(&cfg);
	cfg.host = host;
	cfg.port = port;
	cfg.reconnect_min_ms = MIN_MS;
	cfg.reconnect_max_ms = MAX_MS;
	cfg.tls = tls;
	cfg.tls_ca = tls ? at("ca.pem") : NULL;
	struct sb_client *c = sb_client_new(&cfg, &err);
	CHECK(c != NULL);
	return c;
}

static void test_a_client_says_why_it_cannot_connect(void)
{
	/* Nothing listens: refused, and the blocking call says so too. */
	struct sb_client *c = plain_at("127.0.0.1", free_port(), 0);
	struct sb_client *cs[] = {c};
	CHECK_STR(sb_client_last_error(c), "");
	pump_cond(cs, 1, has_reason, c, "a reason");
	CHECK_STR(sb_client_last_error(c), "connection refused");
	CHECK_INT(sb_request_wait(
			  c, "x", NULL, 0,
			  &(struct sb_opts){.size = sizeof(struct sb_opts), .timeout_ms = 100},
			  NULL, 0, NULL, NULL),
		  SB_EOFFLINE);
	CHECK_STR(sb_client_last_error(c), "connection refused");
	sb_client_free(c);

	/* A name that does not resolve. */
	c = plain_at("no-such-host.invalid", 7400, 0);
	cs[0] = c;
	pump_cond(cs, 1, has_reason, c, "a reason");
	CHECK(strncmp(sb_client_last_error(c), "no such host: ", 14) == 0);
	sb_client_free(c);

	/* TLS to a plain router: OpenSSL's reason. */
	CHECK_INT(certs_make(), 0);
	router_start(NULL);
	c = plain_at("127.0.0.1", PORT, 1);
	cs[0] = c;
	pump_cond(cs, 1, has_reason, c, "a reason");
	CHECK_STR(sb_client_last_error(c), "TLS: wrong version number");
	CHECK_INT(sb_client_online(c), 0);
	sb_client_free(c);
	router_stop();
	certs_remove();
}

static void test_a_listener_that_hangs_up_or_stays_silent_is_told_apart(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof sa;
	int lfd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHECK(bind(lfd, (struct sockaddr *)&sa, sizeof sa) == 0);
	CHECK(listen(lfd, 8) == 0);
	getsockname(lfd, (struct sockaddr *)&sa, &len);
	uint16_t port = ntohs(sa.sin_port);

	/* Accepted by the kernel, never answered: the handshake deadline. */
	struct sb_client *c = plain_at("127.0.0.1", port, 0);
	struct sb_client *cs[] = {c};
	unsigned limit = pump_limit_ms;
	pump_limit_ms = 20000; /* the library's handshake deadline is 5 s */
	pump_cond(cs, 1, has_reason, c, "a reason");
	pump_limit_ms = limit;
	CHECK_STR(sb_client_last_error(c),
		  "timed out: no answer within 5000 ms (waiting for the router's WELCOME)");
	sb_client_free(c);

	/* Accepted and closed before any answer. */
	c = plain_at("127.0.0.1", port, 0);
	cs[0] = c;
	int fd = -1;
	uint64_t deadline = now_ms() + 5000;
	while (fd < 0 && now_ms() < deadline) {
		pump_once(cs, 1);
		struct sockaddr_in peer;
		socklen_t pl = sizeof peer;
		int a = accept4(lfd, (struct sockaddr *)&peer, &pl, SOCK_NONBLOCK);
		if (a < 0)
			continue;
		/* The first one is the earlier client's, left in the backlog. */
		struct sockaddr_in mine;
		socklen_t ml = sizeof mine;
		if (sb_client_fd(c) >= 0 &&
		    getsockname(sb_client_fd(c), (struct sockaddr *)&mine, &ml) == 0 &&
		    mine.sin_port == peer.sin_port)
			fd = a;
		else
			close(a);
	}
	CHECK(fd >= 0);
	/* A FIN: close() with the HELLO unread would be a reset instead
	 * ("connection reset by peer", which is right, but another story). */
	shutdown(fd, SHUT_WR);
	pump_cond(cs, 1, has_reason, c, "a reason");
	close(fd);
	CHECK_STR(sb_client_last_error(c), "the router closed the connection during the "
					   "handshake (waiting for the router's WELCOME)");
	sb_client_free(c);
	close(lfd);
}

/* ---- why a config is refused ---------------------------------------------- */

/* sb_client_new() on cfg: NULL with SB_EINVAL, and the reason. */
static const char *refused(struct sb_client_config *cfg)
{
	static char why[256];
	int err = 0;

	strcpy(why, "untouched");
	cfg->why = why;
	cfg->whylen = sizeof why;
	CHECK(sb_client_new(cfg, &err) == NULL);
	CHECK_INT(err, SB_EINVAL);
	return why;
}

static void test_a_bad_setting_is_named_with_its_reason(void)
{
	struct sb_client_config cfg;

	sb_client_config_init(&cfg);
	cfg.port = 0;
	CHECK_STR(refused(&cfg), "port: 0 is not a port to connect to");

	sb_client_config_init(&cfg);
	cfg.tls = 1;
	cfg.tls_ca = "/nonexistent/ca.pem";
	const char *why = refused(&cfg);
	CHECK(strncmp(why, "tls-ca /nonexistent/ca.pem: ", 28) == 0);
	CHECK(strstr(why, "No such file or directory") != NULL);

	sb_client_config_init(&cfg);
	cfg.tls_ca = "ca.pem";
	CHECK_STR(refused(&cfg), "tls_ca: set without tls (everything would go in clear)");

	sb_client_config_init(&cfg);
	cfg.name = "two words";
	CHECK_STR(refused(&cfg),
		  "name: \"two words\" is not a peer name (1 to 64 bytes, printable, no spaces)");

	sb_client_config_init(&cfg);
	cfg.reconnect_min_ms = 500;
	cfg.reconnect_max_ms = 100;
	CHECK_STR(refused(&cfg), "reconnect_max_ms: 100 is below reconnect_min_ms 500");

	sb_client_config_init(&cfg);
	cfg.token = "Bearer abc";
	CHECK_STR(refused(&cfg), "token: not a compact JWT (base64url parts joined by dots)");

	sb_client_config_init(&cfg);
	cfg.host = "";
	CHECK_STR(refused(&cfg), "host: empty");

	/* Truncated to the buffer, and NUL-terminated. */
	char small[8];
	int err = 0;
	sb_client_config_init(&cfg);
	cfg.port = 0;
	cfg.why = small;
	cfg.whylen = sizeof small;
	CHECK(sb_client_new(&cfg, &err) == NULL);
	CHECK_STR(small, "port: 0");

	/* A program built before `why` existed: nothing is written past its
	 * struct (the size says where it ends). */
	struct {
		struct sb_client_config cfg;
		char guard[8];
	} old;
	memset(&old, 0x5a, sizeof old);
	sb_client_config_init_size(&old.cfg,
				   offsetof(struct sb_client_config, token) + sizeof old.cfg.token);
	old.cfg.port = 0;
	CHECK(sb_client_new(&old.cfg, &err) == NULL);
	CHECK_INT(err, SB_EINVAL);

	/* A good config leaves the buffer alone. */
	char fine[16] = "untouched";
	sb_client_config_init(&cfg);
	cfg.port = free_port();
	cfg.why = fine;
	cfg.whylen = sizeof fine;
	struct sb_client *c = sb_client_new(&cfg, &err);
	CHECK(c != NULL);
	CHECK_STR(fine, "untouched");
	sb_client_free(c);
}

int main(void)
{
	RUN(test_sends_made_before_the_router_is_up_arrive_in_order_once_it_is);
	RUN(test_without_the_queue_an_offline_send_is_refused);
	RUN(test_a_client_says_why_it_cannot_connect);
	RUN(test_a_listener_that_hangs_up_or_stays_silent_is_told_apart);
	RUN(test_a_bad_setting_is_named_with_its_reason);
	return TEST_EXIT();
}
