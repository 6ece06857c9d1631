/* Peers by name: send and request `to` a peer on either shard, unknown and
 * departed peers told apart, presence events across shards, and the
 * sender's verified identity before its first frame. An in-process router
 * with two shards; peers speak raw frames. */
#include <switchboard/router.h>

#include <msgpack.h>

#include "support/admin.h"
#include "support/peer.h"
#include "support/router.h"

static int payload_is(struct sb_view v, const void *p, size_t n)
{
	return v.len == n && memcmp(v.ptr, p, n) == 0;
}

/* {"amount": 100, "to": "bob"} */
static const uint8_t TRANSFER[] = {0x82, 0xa6, 'a', 'm', 'o',  'u', 'n', 't',
				   0x64, 0xa2, 't', 'o', 0xa3, 'b', 'o', 'b'};

static const uint8_t BALANCE[] = {0x81, 0xa7, 'b', 'a', 'l', 'a', 'n', 'c', 'e', 0x14};

/* n peers named prefix-0, prefix-1, ... with both shards among them: the
 * kernel picks a shard per connection, so dial on and close the extras. */
static void spread(const char *prefix, const char *role, struct peer **out, int n)
{
	int k = 0, on[2] = {0, 0};
	for (int i = 0; i < 32 && k < n; i++) {
		char name[32];
		snprintf(name, sizeof name, "%s-%d", prefix, i);
		struct peer *p = peer_hello(PORT, name, role);
		int s = (int)(p->shard & 1);
		if (k < n - 1 || on[!s] > 0) {
			out[k++] = p;
			on[s]++;
		} else
			peer_close(p);
	}
	CHECK_INT(k, n);
	CHECK(on[0] > 0 && on[1] > 0);
}

static void close_all(struct peer **p, int n)
{
	for (int i = 0; i < n; i++)
		peer_close(p[i]);
}

/* A SEND or REQUEST with the sample payload, `to` a peer (or NULL). */
static void send_kind(struct peer *p, unsigned kind, const char *to, const char *name, uint64_t id,
		      uint8_t flags, uint32_t timeout)
{
	struct sb_msg m = {.kind = (uint8_t)kind, .id = id, .flags = flags, .name = v_str(name)};
	if (to != NULL)
		m.to = v_str(to);
	m.timeout_ms = timeout;
	m.payload.ptr = TRANSFER;
	m.payload.len = sizeof TRANSFER;
	peer_send(p, &m);
}

/* cli asks `to` tgt, which registered the name (or a catch-all), and answers. */
static void request_to(struct peer *cli, struct peer *tgt, const char *name, uint64_t id)
{
	send_kind(cli, SB_REQUEST, tgt->name, name, id, 0, 5000);
	struct sb_msg *req = peer_expect(tgt, SB_REQUEST);
	CHECK(v_is(req->name, name));
	CHECK_INT(req->from, cli->peer_id);
	CHECK(payload_is(req->payload, TRANSFER, sizeof TRANSFER));
	peer_reply(tgt, req->id, "here", 0, BALANCE, sizeof BALANCE);
	struct sb_msg *rep = peer_expect(cli, SB_REPLY);
	CHECK(rep->id == id && v_is(rep->outcome, "here"));
	CHECK(rep->peer.ptr == NULL);
	CHECK(payload_is(rep->payload, BALANCE, sizeof BALANCE));
}

static void subscribe(struct peer *p, uint64_t id, uint8_t flags)
{
	struct sb_msg m = {
		.kind = SB_SUBSCRIBE, .id = id, .flags = flags, .name = v_str("presence")};
	peer_send(p, &m);
	CHECK(peer_expect(p, SB_ACK)->id == id);
}

/* A PRESENCE event about peer name (id), with its role in the payload. */
static void expect_presence(struct peer *sub, unsigned event, const char *name, uint32_t id,
			    const char *role)
{
	struct sb_msg *m = peer_expect(sub, SB_PRESENCE);
	CHECK_INT(m->event, event);
	CHECK(v_is(m->peer, name));
	CHECK_INT(m->peer_id, id);
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	CHECK(msgpack_unpack_next(&u, (const char *)m->payload.ptr, m->payload.len, NULL) ==
	      MSGPACK_UNPACK_SUCCESS);
	CHECK(str_is(map_get(&u.data, "role"), role));
	CHECK(map_get(&u.data, "subject") == NULL); /* no TLS here */
	msgpack_unpacked_destroy(&u);
}

/* The identity or the SEND it precedes, from sender id. */
static void expect_from(struct peer *svc, int identity, uint32_t id)
{
	struct sb_msg *m = peer_expect(svc, identity ? SB_PRESENCE : SB_SEND);
	if (identity)
		CHECK(m->event == SB_PEER_IDENTITY && m->peer_id == id);
	else
		CHECK_INT(m->from, id);
}

/* To a named peer from its own shard and from the other: load balancing
 * skipped, clients addressable too, by the names they registered (which
 * only `to` reaches); a peer without a handler for the name is refused. */
static void test_send_and_request_to_a_peer(void)
{
	router_start(NULL);
	struct peer *p[3];
	spread("to", "client", p, 3);
	struct peer *tgt = p[2]; /* spread() keeps the other shard for last */
	struct peer *lb = peer_hello(PORT, "to-lb", "service");
	peer_register(lb, "anything", 1); /* would take it without `to` */
	peer_register(tgt, "anything", 2);
	peer_register(p[0], "x.y", 3);
	peer_register(p[1], "x.y", 4);
	for (int i = 0; i < 2; i++) {
		request_to(p[i], tgt, "anything", 100 + (uint64_t)i);
		send_kind(p[i], SB_SEND, tgt->name, "anything", 0, 0, 0);
		struct sb_msg *m = peer_expect(tgt, SB_SEND);
		CHECK(v_is(m->name, "anything"));
		CHECK_INT(m->from, p[i]->peer_id);
	}
	/* The other way round: to a peer on either shard. */
	request_to(tgt, p[0], "x.y", 110);
	request_to(tgt, p[1], "x.y", 111);
	peer_expect_silence(lb, 100);

	/* A name tgt has no handler for: refused by the router, and counted
	 * (the send first: once the request's answer is back, both are). */
	uint64_t before = stat_of(lb, "to_unhandled");
	send_kind(p[0], SB_SEND, tgt->name, "still.there", 0, 0, 0);
	send_kind(p[0], SB_REQUEST, tgt->name, "still.there", 112, 0, 5000);
	struct sb_msg *e = peer_expect(p[0], SB_ERROR);
	char why[128];
	snprintf(why, sizeof why, "peer %s has no handler for still.there", tgt->name);
	CHECK(e->id == 112 && e->code == (uint32_t)-SB_ENOHANDLER && v_is(e->text, why));
	CHECK_INT(stat_of(lb, "to_unhandled"), before + 2);
	peer_expect_silence(tgt, 50);
	/* Its catch-all takes any name sent to it by `to`. */
	struct sb_msg all = {.kind = SB_REGISTER, .id = 5};
	peer_send(tgt, &all);
	CHECK(peer_expect(tgt, SB_ACK)->id == 5);
	request_to(p[0], tgt, "still.there", 113);
	peer_expect_silence(lb, 100);

	/* A duplicate name is refused; the first holder is still addressable. */
	struct peer *dup = peer_dial(PORT);
	struct sb_msg h = {.kind = SB_HELLO, .version = 1, .role = v_str("client")};
	h.peer = v_str(tgt->name);
	peer_send(dup, &h);
	CHECK(peer_expect(dup, SB_ERROR)->code == (uint32_t)-SB_EDUPNAME);
	peer_close(dup);
	request_to(p[0], tgt, "still.there", 114);
	peer_close(lb);
	close_all(p, 3);
	router_stop();
}

static void test_unknown_peer_and_peer_not_connected(void)
{
	router_start(NULL);
	struct peer *cli = peer_hello(PORT, "asker", "client");
	send_kind(cli, SB_REQUEST, "ghost", "hello", 1, 0, 1000);
	struct sb_msg *e = peer_expect(cli, SB_ERROR);
	CHECK(e->id == 1 && e->code == (uint32_t)-SB_EUNKNOWNPEER && e->flags == 0);
	CHECK(v_is(e->text, "no peer named ghost has connected"));

	/* A send to nobody is dropped and counted: there is no one to tell.
	 * The request above counted too (docs/protocol.md, "How refusals are
	 * counted"). */
	send_kind(cli, SB_SEND, "ghost", "hello", 0, 0, 0);
	struct sb_msg ping = {.kind = SB_PING, .id = 2};
	peer_send(cli, &ping);
	CHECK(peer_expect(cli, SB_PONG)->id == 2);
	CHECK_INT(router_stats().no_handler, 2);

	/* With BROADCAST, `to` selects peers: "a*b" selects nothing sensible. */
	send_kind(cli, SB_REQUEST, "a*b", "hello", 3, SB_F_BROADCAST, 1000);
	e = peer_expect(cli, SB_ERROR);
	CHECK(e->id == 3 && e->code == (uint32_t)-SB_EINVAL && e->flags == 0);

	/* Known, then gone. Until the asker's shard has heard of the close,
	 * the request may reach the closed connection: "peer gone". */
	struct peer *leaver = peer_hello(PORT, "leaver", "client");
	peer_register(leaver, "hello", 5); /* else `no handler` until it is gone */
	peer_close(leaver);
	int code = 0;
	for (uint64_t id = 10; id < 200 && code != -SB_ENOTCONNECTED; id++) {
		send_kind(cli, SB_REQUEST, "leaver", "hello", id, 0, 2000);
		e = peer_expect(cli, SB_ERROR);
		CHECK(e->id == id);
		code = -(int)e->code;
		CHECK(code == SB_ENOTCONNECTED || code == SB_EPEERGONE);
		if (code != SB_ENOTCONNECTED)
			usleep(5000);
	}
	CHECK_INT(code, SB_ENOTCONNECTED);
	CHECK(v_is(e->text, "peer leaver is not connected"));

	/* The name is free again, and a new holder is addressable. */
	struct peer *back = peer_hello(PORT, "leaver", "client");
	peer_register(back, "hello", 4);
	for (uint64_t id = 300; id < 500; id++) {
		send_kind(cli, SB_REQUEST, "leaver", "hello", id, 0, 2000);
		int rc = peer_recv_within(back, 100);
		if (rc == 1 && back->m.kind == SB_REQUEST) {
			peer_reply(back, back->m.id, "back", 0, NULL, 0);
			CHECK(v_is(peer_expect(cli, SB_REPLY)->outcome, "back"));
			break;
		}
		e = peer_expect(cli, SB_ERROR); /* the replica still had the old one */
		CHECK(e->id == id && (e->code == (uint32_t)-SB_EPEERGONE ||
				      e->code == (uint32_t)-SB_ENOTCONNECTED));
		CHECK(id < 499);
	}
	peer_close(back);
	peer_close(cli);
	router_stop();
}

/* A subscriber hears peers on the other shard connect, drain and leave. */
static void test_presence_across_shards(void)
{
	router_start(NULL);
	struct peer *sub = peer_hello(PORT, "watcher", "client");
	struct sb_msg bad = {.kind = SB_SUBSCRIBE, .id = 1, .name = v_str("weather")};
	peer_send(sub, &bad);
	struct sb_msg *e = peer_expect(sub, SB_ERROR);
	CHECK(e->id == 1 && e->code == (uint32_t)-SB_EINVAL && e->flags == 0);
	subscribe(sub, 2, 0);

	/* Connect until one lands on the other shard; each is seen. */
	struct peer *p = NULL;
	const char *role = "client";
	for (int i = 0; i < 16 && p == NULL; i++) {
		char name[32];
		snprintf(name, sizeof name, "comer-%d", i);
		role = i % 2 ? "service" : "client";
		struct peer *q = peer_hello(PORT, name, role);
		expect_presence(sub, SB_PEER_CONNECTED, q->name, q->peer_id, role);
		if (q->shard != sub->shard) {
			p = q;
			break;
		}
		uint32_t id = q->peer_id;
		peer_close(q);
		expect_presence(sub, SB_PEER_DISCONNECTED, name, id, role);
	}
	CHECK(p != NULL);
	if (p == NULL) {
		peer_close(sub);
		router_stop();
		return;
	}
	struct sb_msg bye = {.kind = SB_GOODBYE, .text = v_str("leaving")};
	peer_send(p, &bye);
	expect_presence(sub, SB_PEER_DRAINING, p->name, p->peer_id, role);
	CHECK_INT(peer_recv_within(p, 2000), 0); /* the router closes it */
	expect_presence(sub, SB_PEER_DISCONNECTED, p->name, p->peer_id, role);
	peer_close(p);

	/* Unsubscribed: silence. */
	subscribe(sub, 3, SB_F_OFF);
	struct peer *q = peer_hello(PORT, "unseen", "client");
	peer_close(q);
	peer_expect_silence(sub, 200);
	peer_close(sub);
	router_stop();
}

/* Before the first frame from a sender, a handler is told who it is; the
 * sender cannot pass for anyone else. */
static void test_identity_before_first_frame(void)
{
	router_start(NULL);
	struct peer *svc = peer_hello(PORT, "id-svc", "service");
	svc->see_identity = 1;
	peer_register(svc, "whoami", 1);
	struct peer *a = peer_hello(PORT, "id-a", "client");
	struct peer *b = peer_hello(PORT, "id-b", "service");

	/* a claims to be someone else in `from`: overwritten. */
	struct sb_msg m = {.kind = SB_REQUEST, .id = 1, .name = v_str("whoami"), .from = 4242};
	peer_send(a, &m);
	struct sb_msg *id = peer_expect(svc, SB_PRESENCE);
	CHECK_INT(id->event, SB_PEER_IDENTITY);
	CHECK(v_is(id->peer, "id-a"));
	CHECK_INT(id->peer_id, a->peer_id);
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	CHECK(msgpack_unpack_next(&u, (const char *)id->payload.ptr, id->payload.len, NULL) ==
	      MSGPACK_UNPACK_SUCCESS);
	CHECK(str_is(map_get(&u.data, "role"), "client"));
	msgpack_unpacked_destroy(&u);
	struct sb_msg *req = peer_expect(svc, SB_REQUEST);
	CHECK_INT(req->from, a->peer_id);
	peer_reply(svc, req->id, "you are id-a", 0, NULL, 0);
	peer_expect(a, SB_REPLY);

	/* Told once: the next frame from a comes alone. */
	m.id = 2;
	m.kind = SB_SEND;
	peer_send(a, &m);
	CHECK_INT(peer_expect(svc, SB_SEND)->from, a->peer_id);

	/* Another sender is introduced in turn, then a again needs nothing. */
	struct sb_msg s = {.kind = SB_SEND, .name = v_str("whoami"), .from = a->peer_id};
	peer_send(b, &s);
	id = peer_expect(svc, SB_PRESENCE);
	CHECK(id->event == SB_PEER_IDENTITY && v_is(id->peer, "id-b"));
	CHECK_INT(peer_expect(svc, SB_SEND)->from, b->peer_id);
	peer_send(a, &m);
	CHECK_INT(peer_expect(svc, SB_SEND)->from, a->peer_id);
	CHECK_INT(svc->identities, 0);
	peer_close(a);
	peer_close(b);
	peer_close(svc);
	router_stop();
}

/* A connection is told about 1,024 senders; the 1,025th makes the router
 * forget them all, and each is introduced again at its next frame: the
 * rule a client library can follow to keep exactly what it needs. */
static void test_identity_window(void)
{
	router_start(NULL);
	enum { N = 1025 };
	static struct lite s[N];
	struct peer *svc = peer_hello(PORT, "win-svc", "service");
	svc->see_identity = 1;
	peer_register(svc, "win", 1);
	for (int i = 0; i < N; i++) {
		char name[32];
		snprintf(name, sizeof name, "win-%d", i);
		lite_hello(&s[i], PORT, name);
		lite_send(&s[i], "win");
		expect_from(svc, 1, s[i].id); /* a new sender: introduced */
		expect_from(svc, 0, s[i].id);
	}
	lite_send(&s[N - 1], "win"); /* the one told last is still known */
	expect_from(svc, 0, s[N - 1].id);
	lite_send(&s[0], "win"); /* forgotten with the rest: introduced again */
	expect_from(svc, 1, s[0].id);
	expect_from(svc, 0, s[0].id);
	lite_send(&s[1], "win");
	expect_from(svc, 1, s[1].id);
	expect_from(svc, 0, s[1].id);
	for (int i = 0; i < N; i++)
		close(s[i].fd);
	peer_close(svc);
	router_stop();
}

int main(void)
{
	RUN(test_send_and_request_to_a_peer);
	RUN(test_unknown_peer_and_peer_not_connected);
	RUN(test_presence_across_shards);
	RUN(test_identity_before_first_frame);
	RUN(test_identity_window);
	return TEST_EXIT();
}
