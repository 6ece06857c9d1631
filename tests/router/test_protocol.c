/* The protocol's edges over real sockets, as docs/protocol.md decides them:
 * request ids, flags a handler may not mean, kinds only the router sends,
 * unknown kinds, fault texts, the timeout cap, counters that follow the
 * spec, and $sb.stats in pages. An in-process router with two shards; peers
 * speak raw frames. */
#include <switchboard/router.h>

#include <msgpack.h>

#include "support/admin.h"
#include "support/peer.h"
#include "support/router.h"

/* The connection still works: a PING gets its PONG. */
static void expect_alive(struct peer *p, uint64_t id)
{
	struct sb_msg ping = {.kind = SB_PING, .id = id};
	peer_send(p, &ping);
	CHECK(peer_expect(p, SB_PONG)->id == id);
}

/* An ERROR with this id, code and flags, and (unless NULL) this text. */
static void expect_error(struct peer *p, uint64_t id, int code, uint8_t flags, const char *text)
{
	struct sb_msg *e = peer_expect(p, SB_ERROR);
	CHECK(e->id == id);
	CHECK_INT(e->code, -code);
	CHECK_INT(e->flags, flags);
	if (text != NULL && !v_is(e->text, text)) {
		fprintf(stderr, "  text \"%.*s\", expected \"%s\"\n", (int)e->text.len,
			(const char *)e->text.ptr, text);
		CHECK(v_is(e->text, text));
	}
}

static void send_to(struct peer *p, unsigned kind, const char *to, const char *name, uint64_t id)
{
	struct sb_msg m = {.kind = (uint8_t)kind, .id = id, .name = v_str(name)};
	m.to = v_str(to);
	peer_send(p, &m);
}

/* A client's `to` send or request to a peer that handles the name as
 * internal is refused, and both count as forbidden, not as no_handler. */
static void test_to_an_internal_handler_counts_as_forbidden(void)
{
	router_start(NULL);
	struct peer *pw = peer_hello(PORT, "cnt-pw", "service");
	struct peer *cli = peer_hello(PORT, "cnt-cli", "client");
	struct sb_msg reg = {.kind = SB_REGISTER, .id = 1, .flags = SB_F_INTERNAL};
	reg.name = v_str("cnt.hash");
	peer_send(pw, &reg);
	CHECK(peer_expect(pw, SB_ACK)->id == 1);

	send_to(cli, SB_SEND, "cnt-pw", "cnt.hash", 0);
	send_to(cli, SB_REQUEST, "cnt-pw", "cnt.hash", 2);
	expect_error(cli, 2, SB_EFORBIDDEN, 0, "this peer handles the name for services only");
	peer_expect_silence(pw, 100);
	CHECK_INT(stat_of(cli, "forbidden"), 2);
	CHECK_INT(stat_of(cli, "no_handler"), 0);
	peer_close(pw);
	peer_close(cli);
	router_stop();
}

/* Id 0 is the connection's (an ERROR with id 0 is about the connection), so
 * a REQUEST may not use it: refused about the connection, not fatal, and
 * never forwarded. */
static void test_request_id_0_is_refused(void)
{
	router_start(NULL);
	struct peer *svc = peer_hello(PORT, "id0-svc", "service");
	struct peer *cli = peer_hello(PORT, "id0-cli", "client");
	peer_register(svc, "id0.work", 1);
	peer_request(cli, "id0.work", 0, 0, NULL, 0);
	expect_error(cli, 0, SB_EINVAL, 0,
		     "REQUEST id 0 is reserved: an ERROR with id 0 is about the connection");
	peer_request(cli, "$sb.stats", 0, 0, NULL, 0); /* the router's own names too */
	expect_error(cli, 0, SB_EINVAL, 0, NULL);
	peer_expect_silence(svc, 100);
	expect_alive(cli, 3);
	peer_request(cli, "id0.work", 4, 0, NULL, 0); /* any other id is served */
	peer_reply(svc, peer_expect(svc, SB_REQUEST)->id, "done", 0, NULL, 0);
	CHECK(peer_expect(cli, SB_REPLY)->id == 4);
	peer_close(svc);
	peer_close(cli);
	router_stop();
}

/* Two open requests cannot share an id on one connection: the second is
 * refused about the connection (an answer with its id would end the first
 * in the requester's eyes), and the first goes on untouched. */
static void test_a_second_open_request_with_the_same_id_is_refused(void)
{
	router_start(NULL);
	struct peer *svc = peer_hello(PORT, "dup-svc", "service");
	struct peer *cli = peer_hello(PORT, "dup-cli", "client");
	peer_register(svc, "dup.work", 1);
	peer_request(cli, "dup.work", 7, 0, NULL, 0);
	uint64_t rid = peer_expect(svc, SB_REQUEST)->id;

	peer_request(cli, "dup.work", 7, 0, NULL, 0);
	expect_error(cli, 0, SB_EINVAL, 0,
		     "REQUEST id 7 is already open on this connection: ids of open requests "
		     "must differ");
	/* Even one that would fail at once, or that the router answers itself:
	 * its answer would carry id 7. */
	peer_request(cli, "dup.nobody", 7, 0, NULL, 0);
	expect_error(cli, 0, SB_EINVAL, 0, NULL);
	peer_request(cli, "$sb.stats", 7, 0, NULL, 0);
	expect_error(cli, 0, SB_EINVAL, 0, NULL);
	peer_expect_silence(svc, 100);

	peer_reply(svc, rid, "first", 0, NULL, 0);
	struct sb_msg *r = peer_expect(cli, SB_REPLY);
	CHECK(r->id == 7 && v_is(r->outcome, "first"));
	peer_request(cli, "dup.work", 7, 0, NULL, 0); /* free again once it ended */
	peer_reply(svc, peer_expect(svc, SB_REQUEST)->id, "second", 0, NULL, 0);
	r = peer_expect(cli, SB_REPLY);
	CHECK(r->id == 7 && v_is(r->outcome, "second"));
	peer_close(svc);
	peer_close(cli);
	router_stop();
}

/* A handler's ERROR always ends a single request: MORE (only a broadcast's
 * per-peer results have it) and FATAL (the handler's own connection) are
 * not passed on. A reply after it is late. */
static void test_a_handler_error_is_final(void)
{
	router_start(NULL);
	struct peer *svc = peer_hello(PORT, "err-svc", "service");
	struct peer *cli = peer_hello(PORT, "err-cli", "client");
	peer_register(svc, "err.work", 1);
	uint8_t flags[] = {SB_F_MORE, SB_F_MORE | SB_F_FATAL};
	for (int i = 0; i < 2; i++) {
		peer_request(cli, "err.work", 10 + (uint64_t)i, 0, NULL, 0);
		uint64_t rid = peer_expect(svc, SB_REQUEST)->id;
		struct sb_msg e = {.kind = SB_ERROR, .id = rid, .flags = flags[i], .code = 9};
		e.text = v_str("amount must be positive");
		peer_send(svc, &e);
		expect_error(cli, 10 + (uint64_t)i, SB_EINVAL, 0, "amount must be positive");
		peer_reply(svc, rid, "done", 0, NULL, 0);
		peer_expect_silence(cli, 100);
		CHECK_INT(stat_of(cli, "late_replies"), i + 1);
	}
	peer_close(svc);
	peer_close(cli);
	router_stop();
}

/* `peer` names the handler of a broadcast result; in a single request it
 * is nil, whatever the handler put there, so nothing can pass for a
 * broadcast's result. The payload is untouched. */
static void test_a_handler_cannot_set_peer_in_a_single_request(void)
{
	router_start(NULL);
	static const uint8_t pl[] = {0x92, 0x01, 0xa1, 'x'};
	struct peer *svc = peer_hello(PORT, "peer-svc", "service");
	struct peer *cli = peer_hello(PORT, "peer-cli", "client");
	peer_register(svc, "peer.work", 1);
	peer_request(cli, "peer.work", 20, 0, NULL, 0);
	uint64_t rid = peer_expect(svc, SB_REQUEST)->id;
	struct sb_msg m = {.kind = SB_REPLY, .id = rid, .flags = SB_F_MORE};
	m.outcome = v_str("working");
	m.peer = v_str("mallory");
	m.payload = (struct sb_view){pl, sizeof pl};
	peer_send(svc, &m);
	m.flags = 0;
	m.outcome = v_str("done");
	peer_send(svc, &m);
	for (int i = 0; i < 2; i++) {
		struct sb_msg *r = peer_expect(cli, SB_REPLY);
		CHECK(r->id == 20 && r->peer.ptr == NULL);
		CHECK_INT(r->flags, i == 0 ? SB_F_MORE : 0);
		CHECK(v_is(r->outcome, i == 0 ? "working" : "done"));
		CHECK(r->payload.len == sizeof pl && memcmp(r->payload.ptr, pl, sizeof pl) == 0);
	}
	peer_request(cli, "peer.work", 21, 0, NULL, 0);
	rid = peer_expect(svc, SB_REQUEST)->id;
	struct sb_msg e = {.kind = SB_ERROR, .id = rid, .code = 1, .text = v_str("nope")};
	e.peer = v_str("mallory");
	peer_send(svc, &e);
	struct sb_msg *r = peer_expect(cli, SB_ERROR);
	CHECK(r->id == 21 && r->peer.ptr == NULL && r->flags == 0);
	peer_close(svc);
	peer_close(cli);
	router_stop();
}

/* CHUNK without MORE is a final reply (a stream ends with a final REPLY):
 * the requester gets it without CHUNK, and the request is over. */
static void test_a_chunk_without_more_is_a_final_reply(void)
{
	router_start(NULL);
	struct peer *svc = peer_hello(PORT, "chunk-svc", "service");
	struct peer *cli = peer_hello(PORT, "chunk-cli", "client");
	peer_register(svc, "chunk.read", 1);
	peer_request(cli, "chunk.read", 30, 0, NULL, 0);
	uint64_t rid = peer_expect(svc, SB_REQUEST)->id;
	peer_reply(svc, rid, "file.read-chunk", SB_F_MORE | SB_F_CHUNK, NULL, 0);
	peer_reply(svc, rid, "file.read-chunk", SB_F_CHUNK, NULL, 0);
	struct sb_msg *r = peer_expect(cli, SB_REPLY);
	CHECK_INT(r->flags, SB_F_MORE | SB_F_CHUNK);
	r = peer_expect(cli, SB_REPLY);
	CHECK(r->id == 30);
	CHECK_INT(r->flags, 0);
	peer_reply(svc, rid, "file.read-done", 0, NULL, 0);
	peer_expect_silence(cli, 100);
	CHECK_INT(stat_of(cli, "late_replies"), 1);
	peer_close(svc);
	peer_close(cli);
	router_stop();
}

/* The same for an in-process handler's final chunk. */
static void ip_final_chunk(struct sb_call *call, void *ud)
{
	(void)ud;
	CHECK_INT(sb_reply(call, "file.read-done", NULL, 0), 0);
}

static void test_an_in_process_final_chunk_is_a_final_reply(void)
{
	struct sb_router *ip = router_new(NULL);
	CHECK_INT(sb_router_handle(ip, "ip.chunk", NULL, ip_final_chunk, NULL), 0);
	router_start_with(ip);
	struct peer *cli = peer_hello(PORT, "ipc-cli", "client");
	peer_request(cli, "ip.chunk", 31, 0, NULL, 0);
	struct sb_msg *r = peer_expect(cli, SB_REPLY);
	CHECK(r->id == 31 && v_is(r->outcome, "file.read-done"));
	CHECK_INT(r->flags, 0);
	peer_close(cli);
	router_stop();
}

/* A frame of a kind this router does not know: [kind, 0, id, nil]. */
static void send_kind_raw(struct peer *p, uint8_t kind, uint64_t id)
{
	uint8_t f[17] = {0, 0, 0, 13, 0x94, kind, 0, 0xcf};
	for (int i = 0; i < 8; i++)
		f[8 + i] = (uint8_t)(id >> (56 - 8 * i));
	f[16] = 0xc0;
	peer_raw(p, f, sizeof f);
}

/* An unknown kind is how a newer peer finds out the router is older: the
 * answer is not fatal and carries the frame's id. Kind 0 is never assigned,
 * and is answered the same way. */
static void test_unknown_kinds_are_answered_with_their_id(void)
{
	router_start(NULL);
	struct peer *cli = peer_hello(PORT, "kind-cli", "client");
	send_kind_raw(cli, 30, 77);
	expect_error(cli, 77, SB_EUNSUPPORTED, 0, "unknown message kind 30");
	send_kind_raw(cli, 0, 78);
	expect_error(cli, 78, SB_EUNSUPPORTED, 0, "unknown message kind 0");
	send_kind_raw(cli, 127, 79);
	expect_error(cli, 79, SB_EUNSUPPORTED, 0, "unknown message kind 127");
	expect_alive(cli, 80);
	peer_close(cli);
	router_stop();
}

/* CHALLENGE, WELCOME, ACK and PRESENCE go from the router to peers only;
 * sent to it, each is answered (with its id, not fatal) saying so. */
static void test_router_kinds_from_a_peer_are_refused_by_name(void)
{
	router_start(NULL);
	static const uint8_t nonce[32] = {1};
	struct peer *cli = peer_hello(PORT, "rk-cli", "client");
	struct sb_msg ms[4] = {
		{.kind = SB_CHALLENGE,
		 .id = 41,
		 .nonce = {nonce, 32},
		 .mech = v_str("hmac-sha256")},
		{.kind = SB_WELCOME,
		 .id = 42,
		 .version = 1,
		 .peer = v_str("rk-cli"),
		 .peer_id = 1,
		 .max_frame = SB_FRAME_MAX_DEFAULT},
		{.kind = SB_ACK, .id = 43},
		{.kind = SB_PRESENCE, .id = 44, .event = 1, .peer = v_str("A1"), .peer_id = 3},
	};
	for (int i = 0; i < 4; i++) {
		char want[96];
		peer_send(cli, &ms[i]);
		snprintf(want, sizeof want,
			 "%s is sent by the router; it is not accepted from peers",
			 sb_kind_name(ms[i].kind));
		expect_error(cli, ms[i].id, SB_EUNSUPPORTED, 0, want);
	}
	expect_alive(cli, 45);
	peer_close(cli);
	router_stop();
}

/* Fault texts name fields as the kind table does: SUBSCRIBE's third field
 * is its topic, GOODBYE's its reason. */
static void test_fault_texts_name_the_topic_and_the_reason(void)
{
	router_start(NULL);
	uint8_t f[64];
	struct peer *a = peer_hello(PORT, "ft-a", "client");
	struct sb_msg sub = {.kind = SB_SUBSCRIBE, .id = 1, .name = v_str("presence")};
	long n = sb_encode(&sub, f, sizeof f);
	f[n - 4] = ' ';
	peer_raw(a, f, (size_t)n);
	expect_error(a, 0, SB_EBADFRAME, SB_F_FATAL,
		     "SUBSCRIBE field 3 (topic): invalid characters");
	CHECK_INT(peer_recv_within(a, 5000), 0);
	peer_close(a);

	struct peer *b = peer_hello(PORT, "ft-b", "client");
	struct sb_msg bye = {.kind = SB_GOODBYE, .text = v_str("bye"), .deadline_ms = 5};
	n = sb_encode(&bye, f, sizeof f);
	f[n - 4] = 0xff;
	peer_raw(b, f, (size_t)n);
	expect_error(b, 0, SB_EBADFRAME, SB_F_FATAL,
		     "GOODBYE field 3 (reason): invalid characters");
	CHECK_INT(peer_recv_within(b, 5000), 0);
	peer_close(b);
	router_stop();
}

/* Headers reach the handler byte for byte, the payload and the patched
 * from and id with them; a map the rules refuse closes its sender with
 * the documented fault and nobody else notices. */
static void test_headers_are_forwarded_and_bad_ones_refused(void)
{
	router_start(NULL);
	uint8_t map[SB_HEADERS_MAX], f[2048];
	struct sb_header h[] = {
		{"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		{"device", "kitchen sensor"}};
	long hn = sb_headers_encode(h, 2, map, sizeof map);
	struct peer *svc = peer_hello(PORT, "hd-svc", "service");
	peer_register(svc, "lights", 1);
	struct peer *a = peer_hello(PORT, "hd-a", "client");
	struct sb_msg rq = {.kind = SB_REQUEST,
			    .flags = SB_F_HEADERS,
			    .id = 5,
			    .name = v_str("lights"),
			    .timeout_ms = 5000,
			    .headers = {map, (uint32_t)hn},
			    .payload = {(const uint8_t *)"\x81\xa2on\xc3", 5}};
	peer_send(a, &rq);
	struct sb_msg *got = peer_expect(svc, SB_REQUEST);
	CHECK_INT(got->flags, SB_F_HEADERS);
	CHECK(got->headers.len == (uint32_t)hn && memcmp(got->headers.ptr, map, (size_t)hn) == 0);
	CHECK(got->payload.len == 5 && memcmp(got->payload.ptr, "\x81\xa2on\xc3", 5) == 0);
	CHECK(got->from != 0);
	uint64_t rid = got->id;
	peer_reply(svc, rid, "on", 0, NULL, 0);
	CHECK_INT(peer_expect(a, SB_REPLY)->id, 5);

	/* A key twice: built by hand, since the encoder refuses it. */
	static const uint8_t dup[] = {0x82, 0xa1, 'k', 0xa1, '1', 0xa1, 'k', 0xa1, '2'};
	rq.headers = (struct sb_view){dup, sizeof dup};
	rq.flags = 0; /* encoded without the check, then the flag set in place */
	rq.id = 6;
	long n = sb_encode(&rq, f, sizeof f);
	f[SB_PREFIX_LEN] = 0x99; /* 9 elements */
	f[SB_PREFIX_LEN + 2] = SB_F_HEADERS;
	memmove(f + n - 5 + sizeof dup, f + n - 5, 5);
	memcpy(f + n - 5, dup, sizeof dup);
	n += (long)sizeof dup;
	f[3] = (uint8_t)(n - SB_PREFIX_LEN);
	peer_raw(a, f, (size_t)n);
	expect_error(a, 0, SB_EBADFRAME, SB_F_FATAL,
		     "REQUEST field 7 (headers): duplicate header key");
	CHECK_INT(peer_recv_within(a, 5000), 0);
	peer_close(a);

	/* Seventeen entries: too large, on a SEND too. */
	struct peer *b = peer_hello(PORT, "hd-b", "client");
	struct sb_msg sd = {.kind = SB_SEND, .name = v_str("lights")};
	n = sb_encode(&sd, f, sizeof f);
	size_t at = (size_t)n - 1, k = 0;
	uint8_t many[3 + 17 * 5];
	many[k++] = 0xde;
	many[k++] = 0;
	many[k++] = 17;
	for (unsigned i = 0; i < 17; i++) {
		many[k++] = 0xa2;
		many[k++] = 'k';
		many[k++] = (uint8_t)('a' + i);
		many[k++] = 0xa1;
		many[k++] = 'v';
	}
	f[SB_PREFIX_LEN] = 0x98; /* 8 elements */
	f[SB_PREFIX_LEN + 2] = SB_F_HEADERS;
	memcpy(f + at, many, k);
	f[at + k] = 0xc0;
	n = (long)(at + k + 1);
	f[3] = (uint8_t)(n - SB_PREFIX_LEN);
	peer_raw(b, f, (size_t)n);
	expect_error(b, 0, SB_ETOOLARGE, SB_F_FATAL,
		     "SEND field 6 (headers): field too long (17, limit 16)");
	CHECK_INT(peer_recv_within(b, 5000), 0);
	peer_close(b);
	expect_alive(svc, 9);
	peer_close(svc);
	router_stop();
}

/* WELCOME's payload is {"shard": N, "resume": bin 16}, as docs/protocol.md
 * shows it; with --name-grace-ms 0 there is no token to give. */
static void test_welcome_names_the_shard(void)
{
	router_start(NULL);
	struct peer *p = peer_dial(PORT);
	struct sb_msg h = {.kind = SB_HELLO, .id = 5, .version = 1, .role = v_str("client")};
	peer_send(p, &h);
	struct sb_msg *w = peer_expect(p, SB_WELCOME);
	CHECK(w->id == 5);
	static const uint8_t head[] = {0x82, 0xa5, 's', 'h', 'a', 'r', 'd'};
	CHECK(w->payload.len == 33 && memcmp(w->payload.ptr, head, sizeof head) == 0 &&
	      w->payload.ptr[7] < sb_router_shards(R));
	CHECK(memcmp(w->payload.ptr + 8, "\xa6resume\xc4\x10", 9) == 0);
	peer_close(p);
	router_stop();

	struct sb_router_config cfg = router_config();
	cfg.name_grace_ms = 0;
	router_start(&cfg);
	p = peer_dial(PORT);
	peer_send(p, &h);
	w = peer_expect(p, SB_WELCOME);
	CHECK(w->payload.len == 8 && w->payload.ptr[0] == 0x81 &&
	      memcmp(w->payload.ptr + 1, head + 1, sizeof head - 1) == 0);
	peer_close(p);
	router_stop();
}

/* timeout_ms is cut to the router's cap (1 hour by default), and 0 means
 * the router's default (30 s): the handler sees what applies. */
static void test_request_timeouts_are_capped_at_an_hour(void)
{
	router_start(NULL);
	struct peer *svc = peer_hello(PORT, "cap-svc", "service");
	struct peer *cli = peer_hello(PORT, "cap-cli", "client");
	peer_register(svc, "cap.work", 1);
	peer_request(cli, "cap.work", 1, UINT32_MAX, NULL, 0);
	struct sb_msg *q = peer_expect(svc, SB_REQUEST);
	CHECK_INT(q->timeout_ms, 3600000);
	peer_reply(svc, q->id, "done", 0, NULL, 0);
	peer_request(cli, "cap.work", 2, 0, NULL, 0);
	q = peer_expect(svc, SB_REQUEST);
	CHECK_INT(q->timeout_ms, 30000);
	peer_reply(svc, q->id, "done", 0, NULL, 0);
	peer_expect(cli, SB_REPLY);
	peer_expect(cli, SB_REPLY);
	peer_close(svc);
	peer_close(cli);
	router_stop();
}

/* {"after": name} */
static size_t after_payload(uint8_t *out, const char *name)
{
	size_t n = strlen(name);
	memcpy(out,
	       "\x81\xa5"
	       "after",
	       7);
	out[7] = (uint8_t)(0xa0 | n);
	memcpy(out + 8, name, n);
	return 8 + n;
}

/* More routes than fit in one answer: $sb.stats lists them by name, as
 * many as fit, says there are more, and the next page starts after the
 * last name given. Every name comes exactly once. */
static void test_stats_come_in_pages(void)
{
	enum { NAMES = 120 };
	struct sb_router_config cfg = router_config();
	cfg.max_frame = 4096;
	router_start(&cfg);
	struct peer *svc = peer_hello(PORT, "pg-svc", "service");
	struct peer *cli = peer_hello(PORT, "pg-cli", "client");
	for (int i = 0; i < NAMES; i++) {
		char name[32];
		snprintf(name, sizeof name, "page.%03d", NAMES - 1 - i); /* not in order */
		struct sb_msg m = {.kind = SB_REGISTER, .id = 1 + (uint64_t)i, .name = v_str(name)};
		peer_send(svc, &m);
	}
	for (int i = 0; i < NAMES; i++)
		peer_expect(svc, SB_ACK);

	char last[64] = "";
	int seen = 0, pages = 0, more = 1;
	while (more && pages < NAMES) {
		uint8_t pl[80];
		msgpack_unpacked u;
		msgpack_object st =
			pages == 0 ? ask_router(cli, "$sb.stats", NULL, 0, &u)
				   : ask_router(cli, "$sb.stats", pl, after_payload(pl, last), &u);
		const msgpack_object *routes = map_get(&st, "routes");
		const msgpack_object *m = map_get(&st, "routes_more");
		CHECK(m != NULL && m->type == MSGPACK_OBJECT_BOOLEAN);
		more = m != NULL && m->type == MSGPACK_OBJECT_BOOLEAN && m->via.boolean;
		CHECK(routes != NULL && routes->type == MSGPACK_OBJECT_ARRAY);
		for (uint32_t i = 0; routes != NULL && i < routes->via.array.size; i++) {
			const msgpack_object *name = map_get(&routes->via.array.ptr[i], "name");
			char want[32];
			snprintf(want, sizeof want, "page.%03d", seen);
			CHECK(name != NULL && name->via.str.size == strlen(want) &&
			      memcmp(name->via.str.ptr, want, strlen(want)) == 0);
			snprintf(last, sizeof last, "%s", want);
			seen++;
		}
		msgpack_unpacked_destroy(&u);
		pages++;
	}
	CHECK_INT(seen, NAMES);
	CHECK(pages > 1);
	CHECK(!more);
	uint8_t bad[] = {0x81, 0xa5, 'a', 'f', 't', 'e', 'r', 0x07};
	peer_request(cli, "$sb.stats", 5, 0, bad, sizeof bad);
	expect_error(cli, 5, SB_EINVAL, 0, "$sb.stats: \"after\" must be a string");
	/* Arguments are read where they lie: counts that promise more than the
	 * payload holds (a MessagePack library would allocate for them first;
	 * the fuzzer found a router asking for 128 GiB) are not believed. */
	static const uint8_t huge[][16] = {
		{0xdd, 0xff, 0xff, 0xff, 0xff},                         /* array of 2^32-1 */
		{0xdf, 0x7f, 0xff, 0xff, 0xff, 0xa1, 'x', 0xc0},        /* map of 2^31-1 */
		{0x82, 0xa1, 'x', 0xdd, 0x10, 0, 0, 0, 0xa5, 'a', 'f'}, /* cut inside a map */
	};
	static const size_t huge_len[] = {5, 8, 11};
	for (uint64_t i = 0; i < 3; i++) {
		peer_request(cli, "$sb.stats", 6 + i, 0, huge[i], huge_len[i]);
		struct sb_msg *ans = peer_recv_within(cli, 5000) == 1 ? &cli->m : NULL;
		CHECK(ans != NULL && ans->id == 6 + i);
		if (ans != NULL && ans->kind == SB_ERROR)
			CHECK_INT(ans->code, -SB_EINVAL);
	}
	expect_alive(cli, 9);
	peer_close(svc);
	peer_close(cli);
	router_stop();
}

int main(void)
{
	RUN(test_to_an_internal_handler_counts_as_forbidden);
	RUN(test_request_id_0_is_refused);
	RUN(test_a_second_open_request_with_the_same_id_is_refused);
	RUN(test_a_handler_error_is_final);
	RUN(test_a_handler_cannot_set_peer_in_a_single_request);
	RUN(test_a_chunk_without_more_is_a_final_reply);
	RUN(test_an_in_process_final_chunk_is_a_final_reply);
	RUN(test_unknown_kinds_are_answered_with_their_id);
	RUN(test_router_kinds_from_a_peer_are_refused_by_name);
	RUN(test_fault_texts_name_the_topic_and_the_reason);
	RUN(test_headers_are_forwarded_and_bad_ones_refused);
	RUN(test_welcome_names_the_shard);
	RUN(test_request_timeouts_are_capped_at_an_hour);
	RUN(test_stats_come_in_pages);
	return TEST_EXIT();
}
