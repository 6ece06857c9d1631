/* The admin listener (docs/operations.md): an operator turns it on with
 * admin_port, on loopback unless told otherwise, and it serves the admin
 * endpoints alone over plain HTTP: never a WebSocket upgrade, never a
 * call, a 404 with a JSON body for anything else, keep-alive like the
 * edge. Real sockets, a real router. */
#include <stdatomic.h>
#include <unistd.h>

#include <switchboard/router.h>

#include "support/http.h"
#include "support/router.h"
#include "support/testlib.h"

static atomic_int calls;

static void counted(struct sb_call *call, void *ud)
{
	(void)ud;
	atomic_fetch_add(&calls, 1);
	if (sb_call_is_request(call))
		sb_reply(call, "ok", NULL, 0);
}

static struct sb_router_config admin_config(void)
{
	struct sb_router_config cfg = router_config();
	cfg.admin_port = 0;
	cfg.ws_port = 0; /* the edge is on too: its paths must not leak over */
	return cfg;
}

static void test_the_admin_listener_is_off_unless_asked_for(void)
{
	router_start(NULL);
	CHECK_INT(sb_router_admin_port(R), 0);
	router_stop();
}

static void test_an_operator_gets_metrics_and_nothing_of_the_edge_on_the_admin_port(void)
{
	struct sb_router_config cfg = admin_config();
	struct sb_router *r = router_new(&cfg);
	CHECK_INT(sb_router_handle(r, "echo", NULL, counted, NULL), 0);
	router_start_with(r);
	uint16_t port = sb_router_admin_port(R);
	CHECK(port != 0 && port != PORT && port != sb_router_ws_port(R));
	struct http_answer a;
	char v[128];

	http_get(port, "/metrics", &a);
	CHECK_INT(a.status, 200);
	CHECK_STR(http_field(&a, "Content-Type", v, sizeof v),
		  "text/plain; version=0.0.4; charset=utf-8");
	CHECK(strstr(a.body, "# TYPE switchboard_connections gauge\n") != NULL);
	size_t get_len = a.body_len;
	http_answer_free(&a);

	http_get(port, "/no/such/page", &a);
	CHECK_INT(a.status, 404);
	CHECK_STR(http_field(&a, "Content-Type", v, sizeof v), "application/json");
	CHECK(strstr(a.body, "\"code\":\"SB_ENOHANDLER\"") != NULL);
	CHECK(strstr(a.body, "nothing at /no/such/page") != NULL);
	http_answer_free(&a);

	/* A WebSocket upgrade the edge would take: not here. */
	int fd = http_dial(NULL, port);
	http_ask(fd, "GET", "/v1/ws",
		 "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
		 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		 "Sec-WebSocket-Protocol: switchboard.v1\r\n",
		 &a);
	CHECK_INT(a.status, 404);
	http_answer_free(&a);
	close(fd);

	/* A call the edge would route: never reaches the handler. */
	fd = http_dial(NULL, port);
	http_ask(fd, "POST", "/v1/call/echo",
		 "Content-Type: application/json\r\nContent-Length: 2\r\nConnection: "
		 "close\r\n\r\n{}",
		 &a);
	CHECK_INT(a.status, 404);
	http_answer_free(&a);
	close(fd);
	fd = http_dial(NULL, port);
	http_ask(fd, "POST", "/v1/send/echo",
		 "Content-Type: application/json\r\nContent-Length: 2\r\nConnection: "
		 "close\r\n\r\n{}",
		 &a);
	CHECK_INT(a.status, 404);
	http_answer_free(&a);
	close(fd);
	CHECK_INT(atomic_load(&calls), 0);

	/* /metrics is read, not written. */
	fd = http_dial(NULL, port);
	http_ask(fd, "POST", "/metrics", "Content-Length: 0\r\nConnection: close\r\n", &a);
	CHECK_INT(a.status, 405);
	CHECK_STR(http_field(&a, "Allow", v, sizeof v), "GET, HEAD");
	CHECK(strstr(a.body, "\"code\":\"SB_EUNSUPPORTED\"") != NULL);
	http_answer_free(&a);
	close(fd);

	/* HEAD: the same head, no body. */
	fd = http_dial(NULL, port);
	http_ask(fd, "HEAD", "/metrics", "Connection: close\r\n", &a);
	CHECK_INT(a.status, 200);
	CHECK(a.body_len >= get_len); /* the scrapes above are connections too */
	CHECK_INT(strlen(a.body), 0);
	http_answer_free(&a);
	close(fd);
	router_stop();
}

static void test_an_admin_connection_stays_open_for_more_requests_until_it_asks_to_close(void)
{
	struct sb_router_config cfg = admin_config();
	router_start(&cfg);
	int fd = http_dial(NULL, sb_router_admin_port(R));
	struct http_answer a;

	for (int i = 0; i < 3; i++) {
		http_ask(fd, "GET", i == 1 ? "/nothing" : "/metrics", NULL, &a);
		CHECK_INT(a.status, i == 1 ? 404 : 200);
		CHECK(!a.closed);
		http_answer_free(&a);
	}
	CHECK(!http_closed_within(fd, 100));
	http_ask(fd, "GET", "/metrics", "Connection: close\r\n", &a);
	CHECK_INT(a.status, 200);
	http_answer_free(&a);
	CHECK(http_closed_within(fd, 10000));
	close(fd);
	router_stop();
}

static void test_the_admin_listener_binds_loopback_or_the_address_given(void)
{
	struct sb_router_config cfg = admin_config();
	router_start(&cfg);
	int fd = http_dial("127.0.0.2", sb_router_admin_port(R)); /* not 127.0.0.1 */
	CHECK_INT(fd, -1);
	if (fd >= 0)
		close(fd);
	router_stop();

	cfg.admin_addr = "127.0.0.2";
	router_start(&cfg);
	uint16_t port = sb_router_admin_port(R);
	fd = http_dial("127.0.0.1", port);
	CHECK_INT(fd, -1);
	if (fd >= 0)
		close(fd);
	struct http_answer a;
	fd = http_dial("127.0.0.2", port);
	CHECK(fd >= 0);
	http_ask(fd, "GET", "/metrics", "Connection: close\r\n", &a);
	CHECK_INT(a.status, 200);
	http_answer_free(&a);
	close(fd);
	router_stop();

	int err = 0;
	cfg.admin_addr = "localhost"; /* an IPv4 address, not a name */
	CHECK(sb_router_new(&cfg, &err) == NULL);
	CHECK_INT(err, SB_EINVAL);
}

/* A page on another site that points its own name at 127.0.0.1 (DNS
 * rebinding) makes the browser send that name as Host: the loopback
 * listener refuses it, and serves loopback names with or without a port. */
static void test_a_page_from_another_site_cannot_read_the_loopback_admin_listener(void)
{
	struct sb_router_config cfg = admin_config();
	router_start(&cfg);
	uint16_t port = sb_router_admin_port(R);
	static const char *const refused[] = {
		"Host: evil.example\r\n",
		"Host: evil.example:80\r\n",
		"Host: localhost.evil.example\r\n",
		"Host: 127.0.0.1.evil.example\r\n",
		"Host: localhost:80x\r\n",
		"Host: [::2]\r\n",
		"Host: 10.0.0.1\r\n",
		"Host: localhost:\r\n",
	};
	static const char *const served[] = {
		"Host: localhost\r\n", "Host: LOCALHOST:9100\r\n", "Host: 127.0.0.1:9100\r\n",
		"Host: 127.1.2.3\r\n", "Host: [::1]\r\n",          "Host: [::1]:9100\r\n",
	};
	struct http_answer a;

	for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
		int fd = http_dial(NULL, port);
		http_ask(fd, "GET", "/metrics", refused[i], &a);
		CHECK_INT(a.status, 403);
		CHECK(a.body != NULL && strstr(a.body, "is not a loopback name") != NULL);
		http_answer_free(&a);
		close(fd);
	}
	for (size_t i = 0; i < sizeof served / sizeof served[0]; i++) {
		int fd = http_dial(NULL, port);
		http_ask(fd, "GET", "/metrics", served[i], &a);
		CHECK_INT(a.status, 200);
		http_answer_free(&a);
		close(fd);
	}
	router_stop();
}

int main(void)
{
	RUN(test_the_admin_listener_is_off_unless_asked_for);
	RUN(test_an_operator_gets_metrics_and_nothing_of_the_edge_on_the_admin_port);
	RUN(test_an_admin_connection_stays_open_for_more_requests_until_it_asks_to_close);
	RUN(test_the_admin_listener_binds_loopback_or_the_address_given);
	RUN(test_a_page_from_another_site_cannot_read_the_loopback_admin_listener);
	return TEST_EXIT();
}
