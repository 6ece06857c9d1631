/* The HTTP edge's request parser and answer writer: requests arriving in
 * any pieces, keep-alive and bounded pipelining, the WebSocket upgrade's
 * fields, every refusal with its status (oversize heads, too many fields,
 * smuggling shapes, CR/LF misuse), and answers that nothing a request sent
 * can split. */
#include "support/testlib.h"

#include <switchboard/error.h>

#include "router/http.h"

/* What a client's request came to, from the parser's events. */
struct seen {
	int heads, ends, events;
	int status;      /* a refusal's, or 0 */
	char why[96];    /* ... */
	char path[256];  /* the last head's */
	char query[256]; /* ... */
	char host[64];   /* ... */
	char body[4096]; /* every body byte, in order */
	size_t body_len; /* ... */
	uint64_t content_length;
	int keep_alive, websocket;
	size_t left; /* input bytes not taken when parsing stopped */
	enum sb__http_event last;
};

static void copy(char *dst, size_t cap, struct sb__http_str s)
{
	snprintf(dst, cap, "%.*s", (int)s.len, s.p != NULL ? s.p : "");
}

/* Feed @p in, @p piece bytes at a time (0: all at once), answering each
 * request at once, until the parser stops taking bytes or refuses. */
static void feed(struct sb__http *h, const char *in, size_t len, size_t piece, struct seen *s)
{
	size_t off = 0;

	memset(s, 0, sizeof *s);
	while (off <= len) {
		size_t n = piece == 0 || len - off < piece ? len - off : piece;
		size_t at = 0, used;
		struct sb__http_str body;
		enum sb__http_event ev;
		do {
			ev = sb__http_parse(h, (const uint8_t *)in + off + at, n - at, &used,
					    &body);
			at += used;
			s->events++;
			s->last = ev;
			if (ev == SB__HTTP_HEAD) {
				const struct sb__http_req *r = sb__http_request(h);
				s->heads++;
				copy(s->path, sizeof s->path, r->path);
				copy(s->query, sizeof s->query, r->query);
				copy(s->host, sizeof s->host, r->host);
				s->content_length = r->content_length;
				s->keep_alive = r->keep_alive;
				s->websocket = r->upgrade_websocket;
			} else if (ev == SB__HTTP_BODY) {
				memcpy(s->body + s->body_len, body.p, body.len);
				s->body_len += body.len;
			} else if (ev == SB__HTTP_END) {
				s->ends++;
				sb__http_answered(h);
			}
		} while (ev != SB__HTTP_MORE && ev != SB__HTTP_ERROR && ev != SB__HTTP_WAIT);
		off += at;
		if (ev == SB__HTTP_ERROR) {
			s->status = sb__http_status(h);
			snprintf(s->why, sizeof s->why, "%s", sb__http_why(h));
			break;
		}
		if (ev == SB__HTTP_WAIT || off == len)
			break;
	}
	s->left = len - off;
}

static const char call[] = "POST /v1/call/user.create?timeout_ms=250 HTTP/1.1\r\n"
			   "Host: gw.example\r\n"
			   "content-type: application/json\r\n"
			   "ACCEPT: text/event-stream;q=1, application/json\r\n"
			   "Authorization:   Bearer abc.def.ghi  \r\n"
			   "X-Other: ignored\r\n"
			   "Content-Length: 17\r\n"
			   "\r\n"
			   "{\"email\":\"a@b.c\"}";

static void test_a_call_arrives_in_any_pieces(void)
{
	struct sb__http h;
	struct seen s;

	for (size_t piece = 0; piece < sizeof call; piece += piece < 20 ? 1 : 13) {
		CHECK_INT(sb__http_init(&h, NULL), 0);
		feed(&h, call, strlen(call), piece, &s);
		CHECK_INT(s.status, 0);
		CHECK_INT(s.heads, 1);
		CHECK_INT(s.ends, 1);
		CHECK_STR(s.path, "/v1/call/user.create");
		CHECK_STR(s.query, "timeout_ms=250");
		CHECK_STR(s.host, "gw.example");
		CHECK_INT(s.body_len, 17);
		CHECK(memcmp(s.body, "{\"email\":\"a@b.c\"}", 17) == 0);
		CHECK_INT(s.left, 0);
		sb__http_free(&h);
	}

	/* The fields the edge uses, blanks trimmed, names in any case. */
	CHECK_INT(sb__http_init(&h, NULL), 0);
	size_t used;
	struct sb__http_str body, v;
	CHECK_INT(sb__http_parse(&h, (const uint8_t *)call, strlen(call), &used, &body),
		  SB__HTTP_HEAD);
	CHECK_INT(used, strlen(call) - 17);
	const struct sb__http_req *r = sb__http_request(&h);
	CHECK_INT(r->method, SB__HTTP_M_POST);
	CHECK_INT(r->minor, 1);
	CHECK_INT(r->fields, 6);
	CHECK_INT(r->authorization.len, strlen("Bearer abc.def.ghi"));
	CHECK(memcmp(r->authorization.p, "Bearer abc.def.ghi", r->authorization.len) == 0);
	CHECK_INT(r->content_type.len, 16);
	CHECK(r->cookie.p == NULL && r->origin.p == NULL && r->timeout.p == NULL);
	CHECK_INT(r->n_accept, 1);
	CHECK(sb__http_has(r->accept, r->n_accept, "text/event-stream", 1));
	CHECK(sb__http_has(r->accept, r->n_accept, "application/json", 1));
	CHECK(!sb__http_has(r->accept, r->n_accept, "text/html", 1));
	CHECK_INT(sb__http_query(r->query, "timeout_ms", &v), 1);
	uint64_t ms = 0;
	CHECK_INT(sb__http_uint(v, 3600000, &ms), 0);
	CHECK_INT(ms, 250);
	CHECK_INT(sb__http_query(r->query, "timeout", &v), 0);
	CHECK(r->keep_alive);
	CHECK(!r->upgrade_websocket);
	sb__http_free(&h);
}

static void test_keep_alive_carries_pipelined_calls_up_to_the_bound(void)
{
	struct sb__http_limits lim = {8192, 4096, 64, 2, 1 << 20};
	struct sb__http h;
	struct seen s;
	char in[1024] = "";

	for (int i = 0; i < 3; i++)
		strcat(in, "GET /v1/ping HTTP/1.1\r\nHost: a\r\n\r\n"
			   "POST /v1/send/x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n[]");
	/* Answered at once, all six go through one connection. */
	CHECK_INT(sb__http_init(&h, &lim), 0);
	feed(&h, in, strlen(in), 0, &s);
	CHECK_INT(s.heads, 6);
	CHECK_INT(s.ends, 6);
	CHECK_INT(s.body_len, 6);
	CHECK_INT(s.left, 0);
	sb__http_free(&h);

	/* Unanswered, the parser reads two ahead and then takes nothing more
	 * until an answer is sent. */
	CHECK_INT(sb__http_init(&h, &lim), 0);
	size_t off = 0, used;
	struct sb__http_str body;
	int heads = 0;
	enum sb__http_event ev;
	while ((ev = sb__http_parse(&h, (const uint8_t *)in + off, strlen(in) - off, &used,
				    &body)) != SB__HTTP_WAIT) {
		off += used;
		heads += ev == SB__HTTP_HEAD;
		CHECK(ev != SB__HTTP_ERROR && ev != SB__HTTP_MORE);
	}
	CHECK_INT(heads, 2);
	CHECK_INT(used, 0);
	CHECK_INT(sb__http_parse(&h, (const uint8_t *)in + off, strlen(in) - off, &used, &body),
		  SB__HTTP_WAIT);
	sb__http_answered(&h);
	CHECK_INT(sb__http_parse(&h, (const uint8_t *)in + off, strlen(in) - off, &used, &body),
		  SB__HTTP_HEAD);
	CHECK_STR(sb__http_request(&h)->path.p[0] == '/' ? "ok" : "no", "ok");
	sb__http_free(&h);
}

static void test_connection_close_and_http10_end_the_connection(void)
{
	struct sb__http h;
	struct seen s;
	const char close[] = "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
			     "GET /second HTTP/1.1\r\nHost: a\r\n\r\n";

	CHECK_INT(sb__http_init(&h, NULL), 0);
	feed(&h, close, strlen(close), 0, &s);
	CHECK_INT(s.heads, 1);
	CHECK_INT(s.keep_alive, 0);
	CHECK_INT(s.last, SB__HTTP_WAIT); /* the second is never read */
	CHECK_INT(s.left, strlen("GET /second HTTP/1.1\r\nHost: a\r\n\r\n"));
	sb__http_free(&h);

	/* HTTP/1.0 needs no Host and closes unless it asks to stay. */
	CHECK_INT(sb__http_init(&h, NULL), 0);
	feed(&h, "GET / HTTP/1.0\r\n\r\n", 18, 0, &s);
	CHECK_INT(s.heads, 1);
	CHECK_INT(s.keep_alive, 0);
	sb__http_free(&h);
	CHECK_INT(sb__http_init(&h, NULL), 0);
	const char ka[] = "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"
			  "GET / HTTP/1.0\r\n\r\n";
	feed(&h, ka, strlen(ka), 0, &s);
	CHECK_INT(s.heads, 2);
	CHECK_INT(s.keep_alive, 0);
	CHECK_INT(s.left, 0);
	sb__http_free(&h);

	/* A CRLF left after a body (old clients) is skipped, a few of them. */
	CHECK_INT(sb__http_init(&h, NULL), 0);
	const char lead[] = "\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n";
	feed(&h, lead, strlen(lead), 1, &s);
	CHECK_INT(s.heads, 1);
	CHECK_STR(s.path, "/x");
	sb__http_free(&h);
}

static void test_a_websocket_upgrade_shows_its_fields(void)
{
	struct sb__http h;
	size_t used;
	struct sb__http_str body;
	const char up[] = "GET /v1/ws HTTP/1.1\r\n"
			  "Host: gw.example:8080\r\n"
			  "Upgrade: WebSocket\r\n"
			  "Connection: keep-alive, Upgrade\r\n"
			  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
			  "Sec-WebSocket-Version: 13\r\n"
			  "Sec-WebSocket-Protocol: chat, switchboard.v1\r\n"
			  "Sec-WebSocket-Protocol: other\r\n"
			  "Origin: https://app.example\r\n"
			  "Cookie: sb_token=abc; theme=dark\r\n"
			  "Switchboard-Timeout-Ms: 5000\r\n"
			  "\r\n"
			  "\x82\x80"; /* a first frame, right behind */

	CHECK_INT(sb__http_init(&h, NULL), 0);
	CHECK_INT(sb__http_parse(&h, (const uint8_t *)up, sizeof up - 1, &used, &body),
		  SB__HTTP_HEAD);
	CHECK_INT(used, sizeof up - 3); /* the frame's bytes are not the parser's */
	const struct sb__http_req *r = sb__http_request(&h);
	CHECK(r->upgrade_websocket);
	CHECK_INT(r->ws_key.len, 24);
	CHECK_INT(r->ws_version.len, 2);
	CHECK_INT(r->n_ws_protocol, 2);
	CHECK(sb__http_has(r->ws_protocol, r->n_ws_protocol, "switchboard.v1", 0));
	CHECK(sb__http_has(r->ws_protocol, r->n_ws_protocol, "other", 0));
	CHECK(!sb__http_has(r->ws_protocol, r->n_ws_protocol, "Switchboard.v1", 0));
	CHECK_INT(r->origin.len, strlen("https://app.example"));
	CHECK_INT(r->cookie.len, strlen("sb_token=abc; theme=dark"));
	uint64_t ms;
	CHECK_INT(sb__http_uint(r->timeout, 3600000, &ms), 0);
	CHECK_INT(ms, 5000);
	sb__http_free(&h);

	/* Upgrade without "Connection: upgrade" is no upgrade. */
	CHECK_INT(sb__http_init(&h, NULL), 0);
	const char half[] = "GET /v1/ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n";
	CHECK_INT(sb__http_parse(&h, (const uint8_t *)half, sizeof half - 1, &used, &body),
		  SB__HTTP_HEAD);
	CHECK(!sb__http_request(&h)->upgrade_websocket);
	sb__http_free(&h);
}

/* @p in is refused with @p status and @p why, whether it arrives whole or a
 * byte at a time. */
static void refused(const char *in, size_t len, int status, const char *why)
{
	struct sb__http_limits lim = {1024, 256, 8, 4, 1000};
	struct sb__http h;
	struct seen s;

	for (size_t piece = 0; piece <= 1; piece++) {
		CHECK_INT(sb__http_init(&h, &lim), 0);
		feed(&h, in, len, piece, &s);
		if (s.status != status || strcmp(s.why, why) != 0)
			fprintf(stderr, "input: %.60s\n", in);
		CHECK_INT(s.status, status);
		CHECK_STR(s.why, why);
		CHECK_INT(s.heads, 0);
		/* and it stays refused */
		size_t used;
		struct sb__http_str body;
		CHECK_INT(sb__http_parse(&h, (const uint8_t *)"GET / HTTP/1.1\r\n\r\n", 18, &used,
					 &body),
			  SB__HTTP_ERROR);
		sb__http_free(&h);
	}
}

#define REFUSED(in, status, why) refused(in, sizeof(in) - 1, status, why)

static void test_oversize_heads_are_refused(void)
{
	char big[2048];

	/* limits here: 1,024-byte head, 256-byte request line, 8 fields, body 1,000 */
	memset(big, 0, sizeof big);
	strcpy(big, "GET /");
	memset(big + 5, 'a', 300);
	strcat(big, " HTTP/1.1\r\n\r\n");
	refused(big, strlen(big), 414, "request line too long");

	strcpy(big, "GET / HTTP/1.1\r\nHost: a\r\nX-Big: ");
	memset(big + strlen(big), 'b', 1100);
	strcat(big, "\r\n\r\n");
	refused(big, strlen(big), 431, "header over 1024 bytes");

	strcpy(big, "GET / HTTP/1.1\r\nHost: a\r\n");
	for (int i = 0; i < 8; i++)
		strcat(big, "X-Field: 1\r\n");
	strcat(big, "\r\n");
	refused(big, strlen(big), 431, "more than 8 header lines");

	REFUSED("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n", 413,
		"body over 1000 bytes");
	REFUSED("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 400,
		"bad Content-Length");
	REFUSED("\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n", 400,
		"blank lines before the request line");

	/* Exactly at the bounds is fine: 8 fields, a 1,000-byte body. */
	struct sb__http_limits lim = {1024, 256, 8, 4, 1000};
	struct sb__http h;
	struct seen s;
	strcpy(big, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n");
	for (int i = 0; i < 6; i++)
		strcat(big, "X-Field: 1\r\n");
	strcat(big, "\r\n");
	size_t n = strlen(big);
	memset(big + n, 'x', 1000);
	CHECK_INT(sb__http_init(&h, &lim), 0);
	feed(&h, big, n + 1000, 7, &s);
	CHECK_INT(s.status, 0);
	CHECK_INT(s.ends, 1);
	CHECK_INT(s.body_len, 1000);
	sb__http_free(&h);
}

static void test_smuggling_shapes_are_refused(void)
{
	REFUSED("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n"
		"\r\n",
		400, "both Transfer-Encoding and Content-Length");
	REFUSED("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n"
		"\r\n",
		400, "both Transfer-Encoding and Content-Length");
	REFUSED("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400,
		"two different Content-Length values");
	REFUSED("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", 400,
		"bad Content-Length");
	REFUSED("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", 400,
		"bad Content-Length");
	REFUSED("POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\n", 400,
		"blank before ':' in a header line");
	REFUSED("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 411,
		"chunked bodies are not accepted: send Content-Length");
	REFUSED("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501,
		"unknown Transfer-Encoding");
	REFUSED("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
		"Transfer-Encoding: chunked\r\n\r\n",
		501, "unknown Transfer-Encoding");
	REFUSED("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
		"Transfer-Encoding in an HTTP/1.0 request");
	REFUSED("GET / HTTP/1.1\r\nHost: a\r\n Host: b\r\n\r\n", 400,
		"folded header line (obs-fold)");
	REFUSED("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n\tcontinued\r\n\r\n", 400,
		"folded header line (obs-fold)");
	REFUSED("GET / HTTP/1.1\nHost: a\r\n\r\n", 400, "LF without CR");
	REFUSED("GET / HTTP/1.1\r\nHost: a\n\n", 400, "LF without CR");
	REFUSED("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400, "CR without LF");
	REFUSED("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", 400,
		"control character in a field value");
	REFUSED("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "two Host fields");
	REFUSED("GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer x\r\nauthorization: Bearer "
		"y\r\n"
		"\r\n",
		400, "two Authorization fields");
	REFUSED("GET / HTTP/1.1\r\nHost: a\r\nX@: 1\r\n\r\n", 400, "bad character in a field name");
	REFUSED("GET / HTTP/1.1\r\nHost: a\r\n: 1\r\n\r\n", 400, "empty field name");
	REFUSED("GET / HTTP/1.1\r\nHost: a\r\nno colon\r\n\r\n", 400, "header line without ':'");
}

static void test_bad_request_lines_are_refused(void)
{
	REFUSED("GET / HTTP/1.1\r\n\r\n", 400, "Host is missing");
	REFUSED("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505, "only HTTP/1.0 and HTTP/1.1 are served");
	REFUSED("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "only HTTP/1.0 and HTTP/1.1 are served");
	REFUSED("GET / http/1.1\r\nHost: a\r\n\r\n", 400, "bad HTTP version");
	REFUSED("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400, "bad HTTP version");
	REFUSED("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400,
		"a request line is METHOD SP TARGET SP VERSION");
	REFUSED("GET /\r\n\r\n", 400, "a request line is METHOD SP TARGET SP VERSION");
	REFUSED("BREW / HTTP/1.1\r\nHost: a\r\n\r\n", 501, "unknown method");
	REFUSED("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bad method");
	REFUSED("GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400,
		"the request target must start with '/'");
	REFUSED("GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400, "the request target must start with '/'");
	REFUSED("GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bad character in the request target");
	REFUSED("GET /\x80 HTTP/1.1\r\nHost: a\r\n\r\n", 400,
		"bad character in the request target");
	REFUSED("POST / HTTP/1.1\r\nHost: a\r\nExpect: gzip\r\n\r\n", 417,
		"only Expect: 100-continue is met");

	/* OPTIONS * is a request of its own (no path), and 100-continue is shown. */
	struct sb__http h;
	struct seen s;
	CHECK_INT(sb__http_init(&h, NULL), 0);
	feed(&h, "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 31, 0, &s);
	CHECK_INT(s.heads, 1);
	CHECK_STR(s.path, "*");
	sb__http_free(&h);
	CHECK_INT(sb__http_init(&h, NULL), 0);
	size_t used;
	struct sb__http_str body;
	const char ex[] =
		"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n"
		"\r\n";
	CHECK_INT(sb__http_parse(&h, (const uint8_t *)ex, sizeof ex - 1, &used, &body),
		  SB__HTTP_HEAD);
	CHECK(sb__http_request(&h)->expect_continue);
	sb__http_free(&h);
}

/* A slowloris sends a byte at a time: nothing is decided early, nothing is
 * allocated per byte, and the head still ends at its bound. */
static void test_slow_partial_input_keeps_its_place(void)
{
	struct sb__http h;
	size_t used;
	struct sb__http_str body;

	CHECK_INT(sb__http_init(&h, NULL), 0);
	const char *part = "GET /v1/ws HTTP/1.1\r\nHost: a\r";
	for (const char *c = part; *c; c++) {
		CHECK_INT(sb__http_parse(&h, (const uint8_t *)c, 1, &used, &body), SB__HTTP_MORE);
		CHECK_INT(used, 1);
	}
	CHECK_INT(sb__http_parse(&h, (const uint8_t *)"", 0, &used, &body), SB__HTTP_MORE);
	CHECK_INT(sb__http_parse(&h, (const uint8_t *)"\n\r", 2, &used, &body), SB__HTTP_MORE);
	CHECK_INT(sb__http_parse(&h, (const uint8_t *)"\nrest", 5, &used, &body), SB__HTTP_HEAD);
	CHECK_INT(used, 1);
	CHECK_INT(sb__http_parse(&h, (const uint8_t *)"rest", 4, &used, &body), SB__HTTP_END);
	sb__http_free(&h);

	/* An endless header line from a slow client ends at the head bound. */
	CHECK_INT(sb__http_init(&h, NULL), 0);
	CHECK_INT(sb__http_parse(&h, (const uint8_t *)"GET / HTTP/1.1\r\nX: ", 19, &used, &body),
		  SB__HTTP_MORE);
	enum sb__http_event ev = SB__HTTP_MORE;
	size_t fed = 19;
	while (ev == SB__HTTP_MORE && fed < 100000) {
		ev = sb__http_parse(&h, (const uint8_t *)"y", 1, &used, &body);
		fed++;
	}
	CHECK_INT(ev, SB__HTTP_ERROR);
	CHECK_INT(sb__http_status(&h), 431);
	CHECK_INT(fed, SB__HTTP_HEAD_MAX + 1);
	sb__http_free(&h);
}

static void test_answers_are_written_exactly(void)
{
	char buf[512];
	struct sb__http_out o;

	sb__http_out_init(&o, buf, sizeof buf);
	sb__http_status_line(&o, 200);
	sb__http_field(&o, "Content-Type", "application/json", 16);
	sb__http_field_uint(&o, "Content-Length", 2);
	sb__http_end_head(&o);
	sb__http_put(&o, "{}", 2);
	CHECK_INT(sb__http_out_done(&o), 0);
	CHECK_INT(o.len, strlen("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
				"Content-Length: 2\r\n\r\n{}"));
	CHECK(memcmp(buf,
		     "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
		     "Content-Length: 2\r\n\r\n{}",
		     o.len) == 0);

	/* A value with CR or LF (say, from a request) cannot add a field. */
	sb__http_out_init(&o, buf, sizeof buf);
	sb__http_field(&o, "Location", "/x\r\nSet-Cookie: a=b", 19);
	CHECK_INT(sb__http_out_done(&o), SB_EINVAL);
	CHECK_INT(o.len, 0);
	sb__http_out_init(&o, buf, 10);
	sb__http_status_line(&o, 404);
	CHECK_INT(sb__http_out_done(&o), SB_ENOSPC);

	/* An error answer, as the edge sends it. */
	sb__http_out_init(&o, buf, sizeof buf);
	sb__http_error(&o, 404, SB_ENOHANDLER, "no handler for \"user.create\"", 1);
	buf[o.len] = 0;
	CHECK_STR(buf, "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
		       "Content-Length: 89\r\n\r\n"
		       "{\"error\":\"no handler\",\"code\":\"SB_ENOHANDLER\","
		       "\"message\":\"no handler for \\\"user.create\\\"\"}\n");

	/* The parser's refusal closes the connection. */
	struct sb__http h;
	struct seen s;
	CHECK_INT(sb__http_init(&h, NULL), 0);
	feed(&h, "GET / HTTP/1.1\r\nHost: a\r\nX : 1\r\n\r\n", 34, 0, &s);
	sb__http_out_init(&o, buf, sizeof buf);
	sb__http_refusal(&o, &h);
	buf[o.len] = 0;
	CHECK_STR(buf, "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
		       "Content-Length: 90\r\nConnection: close\r\n\r\n"
		       "{\"error\":\"bad frame\",\"code\":\"SB_EBADFRAME\","
		       "\"message\":\"blank before ':' in a header line\"}\n");
	sb__http_free(&h);
}

static void test_server_sent_events_are_framed(void)
{
	char buf[512], head[SB__HTTP_CHUNK_HEAD];
	struct sb__http_out o;

	sb__http_out_init(&o, buf, sizeof buf);
	sb__sse_event(&o, "progress", "{\"pct\":40}", 10);
	sb__sse_event(&o, "chunk", "a\nb\r\nc\rd", 8);
	sb__sse_event(&o, "reply", "", 0);
	sb__sse_event(&o, "error", "x\n", 2);
	sb__sse_comment(&o, "ping");
	buf[o.len] = 0;
	CHECK_STR(buf, "event: progress\ndata: {\"pct\":40}\n\n"
		       "event: chunk\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
		       "event: reply\ndata: \n\n"
		       "event: error\ndata: x\ndata: \n\n"
		       ": ping\n\n");
	CHECK_INT(sb__http_chunk_head(head, 0), 3);
	CHECK_STR(head, "0\r\n");
	CHECK_INT(sb__http_chunk_head(head, 4096), 6);
	CHECK_STR(head, "1000\r\n");
	CHECK_INT(sb__http_chunk_head(head, SIZE_MAX), 18);
	CHECK_STR(head, "ffffffffffffffff\r\n");
}

static void test_numbers_and_queries(void)
{
	uint64_t v;
	struct sb__http_str q = {"a=1&timeout_ms=&b&timeout_ms=9", 30}, val;

	CHECK_INT(sb__http_uint((struct sb__http_str){"18446744073709551615", 20}, UINT64_MAX, &v),
		  0);
	CHECK(v == UINT64_MAX);
	CHECK_INT(sb__http_uint((struct sb__http_str){"18446744073709551616", 20}, UINT64_MAX, &v),
		  SB_EINVAL);
	CHECK_INT(sb__http_uint((struct sb__http_str){"101", 3}, 100, &v), SB_EINVAL);
	CHECK_INT(sb__http_uint((struct sb__http_str){"100", 3}, 100, &v), 0);
	CHECK_INT(sb__http_uint((struct sb__http_str){"-1", 2}, 100, &v), SB_EINVAL);
	CHECK_INT(sb__http_uint((struct sb__http_str){"", 0}, 100, &v), SB_EINVAL);
	CHECK_INT(sb__http_query(q, "timeout_ms", &val), 1);
	CHECK_INT(val.len, 0); /* the first one counts */
	CHECK_INT(sb__http_query(q, "b", &val), 1);
	CHECK_INT(val.len, 0);
	CHECK_INT(sb__http_query(q, "a", &val), 1);
	CHECK_INT(val.len, 1);
	CHECK_INT(sb__http_query(q, "c", &val), 0);
	/* A request without a query has none: p is NULL (UBSan once saw
	 * NULL + 0 here). */
	CHECK_INT(sb__http_query((struct sb__http_str){NULL, 0}, "timeout_ms", &val), 0);
}

int main(void)
{
	RUN(test_a_call_arrives_in_any_pieces);
	RUN(test_keep_alive_carries_pipelined_calls_up_to_the_bound);
	RUN(test_connection_close_and_http10_end_the_connection);
	RUN(test_a_websocket_upgrade_shows_its_fields);
	RUN(test_oversize_heads_are_refused);
	RUN(test_smuggling_shapes_are_refused);
	RUN(test_bad_request_lines_are_refused);
	RUN(test_slow_partial_input_keeps_its_place);
	RUN(test_answers_are_written_exactly);
	RUN(test_server_sent_events_are_framed);
	RUN(test_numbers_and_queries);
	return TEST_EXIT();
}
