/* Presence and callers' identities across routers (docs/cluster.md,
 * "Presence and identity"): in-process routers A and C on a two-server
 * NATS cluster of their own (A on the first server, C on the second, so
 * what crosses takes NATS's route), and daemons where a router must die
 * without a word. What is checked is what a watcher and a handler see over
 * real sockets. Every wait is bounded. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <switchboard/router.h>

#include "support/admin.h"
#include "support/clock.h"
#include "support/cluster.h"
#include "support/daemon.h"
#include "support/natsd.h"
#include "support/peer.h"
#include "support/proc.h"
#include "support/router.h"
#include "support/testlib.h"

static struct natsd servers[2];
static struct sb_router *ra, *rc;
static uint16_t pa, pc;

/* The identity map of a peer with neither subject nor claims. */
#define AS_SERVICE "\x81\xa4role\xa7service"
#define AS_CLIENT                                                                                  \
	"\x81\xa4role\xa6"                                                                         \
	"client"

/* A presence subscriber on port. */
static struct peer *watcher(uint16_t port)
{
	struct peer *w = peer_hello(port, NULL, "client");
	struct sb_msg s = {.kind = SB_SUBSCRIBE, .id = 1, .name = v_str("presence")};
	peer_send(w, &s);
	CHECK(peer_expect(w, SB_ACK)->id == 1);
	return w;
}

/* The next presence event w hears about the peer named name (events about
 * others, left by earlier tests, are passed over), within 15 s: its event
 * number, or 0 if none came. */
static unsigned next_about(struct peer *w, const char *name)
{
	uint64_t end = now_ms() + 15000;
	while (now_ms() < end) {
		if (peer_recv_within(w, 200) != 1)
			continue;
		CHECK_INT(w->m.kind, SB_PRESENCE);
		if (v_is(w->m.peer, name))
			return w->m.event;
	}
	return 0;
}

/* Event ev about each of the two peers named a and b, in either order (they
 * are on different shards of their router, whose events are not ordered
 * with each other), within 15 s: 1 if both came and nothing else about
 * them did, their peer ids in id[] and their identities in pl[]. */
static int each_of_two(struct peer *w, const char *a, const char *b, unsigned ev, uint32_t id[2],
		       char pl[2][32])
{
	const char *names[2] = {a, b};
	int seen[2] = {0, 0};
	uint64_t end = now_ms() + 15000;
	while ((!seen[0] || !seen[1]) && now_ms() < end) {
		if (peer_recv_within(w, 200) != 1)
			continue;
		CHECK_INT(w->m.kind, SB_PRESENCE);
		for (int i = 0; i < 2; i++) {
			if (!v_is(w->m.peer, names[i]))
				continue;
			if (w->m.event != ev || seen[i] || w->m.payload.len >= 32)
				return 0;
			seen[i] = 1;
			id[i] = w->m.peer_id;
			memcpy(pl[i], w->m.payload.ptr, w->m.payload.len);
			pl[i][w->m.payload.len] = 0;
		}
	}
	return seen[0] && seen[1];
}

static void test_a_watcher_on_one_router_sees_peers_come_and_go_on_another(void)
{
	struct peer *w = watcher(pa);
	struct peer *local = peer_hello(pa, NULL, "client");

	struct peer *t = peer_hello(pc, "traveller", "service");
	CHECK_INT(next_about(w, "traveller"), SB_PEER_CONNECTED);
	uint32_t id = w->m.peer_id;
	CHECK(v_is(w->m.payload, AS_SERVICE));
	/* A number of A's own: none of A's peers has it. */
	CHECK(id != 0 && id != w->peer_id && id != local->peer_id);

	struct sb_msg bye = {.kind = SB_GOODBYE, .text = v_str("moving on"), .deadline_ms = 1000};
	peer_send(t, &bye);
	CHECK_INT(next_about(w, "traveller"), SB_PEER_DRAINING);
	CHECK(w->m.peer_id == id && v_is(w->m.payload, AS_SERVICE));
	peer_close(t);
	CHECK_INT(next_about(w, "traveller"), SB_PEER_DISCONNECTED);
	CHECK(w->m.peer_id == id && v_is(w->m.payload, AS_SERVICE));

	/* The name taken again is another peer, with another number. */
	t = peer_hello(pc, "traveller", "client");
	CHECK_INT(next_about(w, "traveller"), SB_PEER_CONNECTED);
	CHECK(w->m.peer_id != id && v_is(w->m.payload, AS_CLIENT));
	peer_close(t);
	CHECK_INT(next_about(w, "traveller"), SB_PEER_DISCONNECTED);
	peer_close(local);
	peer_close(w);
}

static void test_a_handler_learns_who_called_from_another_router(void)
{
	struct peer *svc = peer_hello(pa, NULL, "service");
	peer_register(svc, "whoami", 1);
	struct peer *warm = peer_hello(pc, NULL, "client");
	CHECK(cluster_until_reachable(warm, svc, "whoami"));
	struct peer *w = watcher(pa);
	struct peer *local = peer_hello(pa, "ada-local", "client");

	/* The caller is introduced before its first request, as a local one. */
	svc->see_identity = 1;
	struct peer *cl = peer_hello(pc, "ada", "client");
	peer_request(cl, "whoami", 5, 20000, NULL, 0);
	struct sb_msg *m = peer_expect(svc, SB_PRESENCE);
	CHECK(m->event == SB_PEER_IDENTITY && v_is(m->peer, "ada") && v_is(m->payload, AS_CLIENT));
	uint32_t ada = m->peer_id;
	CHECK(ada != 0 && ada != svc->peer_id && ada != local->peer_id && ada != w->peer_id);
	m = peer_expect(svc, SB_REQUEST);
	CHECK(m->from == ada);
	peer_reply(svc, m->id, "you are ada", 0, NULL, 0);
	CHECK(peer_expect(cl, SB_REPLY)->id == 5);

	/* Once introduced, never again; a SEND names the same caller. */
	peer_request(cl, "whoami", 6, 20000, NULL, 0);
	m = peer_expect(svc, SB_REQUEST);
	CHECK(m->from == ada);
	peer_reply(svc, m->id, "still ada", 0, NULL, 0);
	CHECK(peer_expect(cl, SB_REPLY)->id == 6);
	struct sb_msg s = {.kind = SB_SEND, .name = v_str("whoami")};
	peer_send(cl, &s);
	CHECK(peer_expect(svc, SB_SEND)->from == ada);

	/* A presence watcher on the handler's router knows it by that number. */
	CHECK_INT(next_about(w, "ada"), SB_PEER_CONNECTED);
	CHECK(w->m.peer_id == ada);

	/* Another caller on the same router is another sender; a local one
	 * keeps its own number. */
	struct peer *bob = peer_hello(pc, "bob", "service");
	peer_request(bob, "whoami", 7, 20000, NULL, 0);
	m = peer_expect(svc, SB_PRESENCE);
	CHECK(m->event == SB_PEER_IDENTITY && v_is(m->peer, "bob") && v_is(m->payload, AS_SERVICE));
	uint32_t bob_id = m->peer_id;
	CHECK(bob_id != ada && bob_id != 0);
	m = peer_expect(svc, SB_REQUEST);
	CHECK(m->from == bob_id);
	peer_reply(svc, m->id, "you are bob", 0, NULL, 0);
	CHECK(peer_expect(bob, SB_REPLY)->id == 7);
	peer_request(local, "whoami", 8, 20000, NULL, 0);
	m = peer_expect(svc, SB_PRESENCE);
	CHECK(m->event == SB_PEER_IDENTITY && m->peer_id == local->peer_id &&
	      v_is(m->peer, "ada-local"));
	m = peer_expect(svc, SB_REQUEST);
	CHECK(m->from == local->peer_id);
	peer_reply(svc, m->id, "you are here", 0, NULL, 0);
	CHECK(peer_expect(local, SB_REPLY)->id == 8);
	peer_expect_silence(svc, 100);

	peer_close(bob);
	peer_close(cl);
	peer_close(local);
	peer_close(w);
	peer_close(warm);
	peer_close(svc);
}

static void test_the_peers_of_a_killed_router_are_announced_disconnected(void)
{
	struct peer *w = watcher(pa);
	const char *flags[] = {"--cluster", servers[1].url, NULL};
	struct daemon d = daemon_start(0, flags);
	struct peer *p1 = peer_hello(d.port, "doomed-1", "service");
	struct peer *p2 = peer_hello(d.port, "doomed-2", "client");
	uint32_t up[2] = {0, 0}, down[2] = {0, 0};
	char pl[2][32];
	CHECK(each_of_two(w, "doomed-1", "doomed-2", SB_PEER_CONNECTED, up, pl));
	CHECK(strcmp(pl[0], AS_SERVICE) == 0 && strcmp(pl[1], AS_CLIENT) == 0);

	/* Killed without a word: only its silence tells the others, after
	 * the dead time (3 s). */
	daemon_kill(&d);
	CHECK(each_of_two(w, "doomed-1", "doomed-2", SB_PEER_DISCONNECTED, down, pl));
	CHECK(down[0] == up[0] && down[1] == up[1] && up[0] != up[1]);
	CHECK(strcmp(pl[0], AS_SERVICE) == 0 && strcmp(pl[1], AS_CLIENT) == 0);
	peer_close(p1);
	peer_close(p2);
	peer_close(w);
}

/* ---- a bearer token, signed here with OpenSSL's HMAC ---------------------------- */

static const char SECRET[] = "a-secret-of-at-least-32-bytes-for-hs256!";

static size_t b64url(const uint8_t *in, size_t n, char *out)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t o = 0;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) |
			     (i + 2 < n ? in[i + 2] : 0);
		out[o++] = a[v >> 18 & 63];
		out[o++] = a[v >> 12 & 63];
		if (i + 1 < n)
			out[o++] = a[v >> 6 & 63];
		if (i + 2 < n)
			out[o++] = a[v & 63];
	}
	out[o] = '\0';
	return o;
}

/* An HS256 token for sub "grace" of tenant "acme", valid for an hour. */
static const char *token(void)
{
	static char t[1024];
	char claims[256];
	const char *hs = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
	snprintf(claims, sizeof claims,
		 "{\"sub\":\"grace\",\"aud\":\"edge\",\"exp\":%lld,\"tenant\":\"acme\"}",
		 (long long)time(NULL) + 3600);
	size_t n = b64url((const uint8_t *)hs, strlen(hs), t);
	t[n++] = '.';
	n += b64url((const uint8_t *)claims, strlen(claims), t + n);
	uint8_t mac[32];
	unsigned len = sizeof mac;
	HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (const uint8_t *)t, n, mac, &len);
	t[n++] = '.';
	b64url(mac, len, t + n);
	return t;
}

/* A caller that showed a bearer token on its router is known to a handler
 * on another router by the token's subject and claims, as a local one. */
static void test_a_handler_on_another_router_learns_the_callers_token_claims(void)
{
	char path[] = "/tmp/sb-xpres-secret-XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0 && write(fd, SECRET, strlen(SECRET)) == (ssize_t)strlen(SECRET));
	close(fd);
	struct sb_router_config cfg = router_config();
	cfg.cluster = servers[1].url;
	cfg.jwt_secret_file = path;
	cfg.jwt_audience = "edge";
	struct sb_router *rt = router_open(&cfg);
	uint16_t pt = sb_router_port(rt);

	struct peer *svc = peer_hello(pa, NULL, "service");
	peer_register(svc, "tenant.get", 1);
	struct peer *warm = peer_hello(pt, NULL, "client");
	CHECK(cluster_until_reachable(warm, svc, "tenant.get"));

	/* HELLO with the token in its payload: {"token": "..."}. */
	const char *t = token();
	uint8_t pl[1100];
	size_t n = 0, tl = strlen(t);
	pl[n++] = 0x81;
	pl[n++] = 0xa5;
	memcpy(pl + n, "token", 5);
	n += 5;
	pl[n++] = 0xd9;
	pl[n++] = (uint8_t)tl;
	memcpy(pl + n, t, tl);
	n += tl;
	struct peer *cl = peer_dial(pt);
	struct sb_msg h = {.kind = SB_HELLO, .id = 1, .version = SB_PROTO_VERSION};
	h.role = v_str("client");
	h.peer = v_str("grace-c");
	h.payload = (struct sb_view){pl, (uint32_t)n};
	peer_send(cl, &h);
	CHECK(peer_expect(cl, SB_WELCOME)->id == 1);

	svc->see_identity = 1;
	peer_request(cl, "tenant.get", 3, 20000, NULL, 0);
	struct sb_msg *m = peer_expect(svc, SB_PRESENCE);
	CHECK(m->event == SB_PEER_IDENTITY && v_is(m->peer, "grace-c"));
	uint32_t id = m->peer_id;
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	CHECK(msgpack_unpack_next(&u, (const char *)m->payload.ptr, m->payload.len, NULL) ==
	      MSGPACK_UNPACK_SUCCESS);
	const msgpack_object *c = map_get(&u.data, "claims");
	CHECK(u.data.type == MSGPACK_OBJECT_MAP && u.data.via.map.size == 3);
	CHECK(str_is(map_get(&u.data, "role"), "client"));
	CHECK(str_is(map_get(&u.data, "subject"), "grace"));
	CHECK(c != NULL && c->type == MSGPACK_OBJECT_MAP && c->via.map.size == 4);
	CHECK(str_is(map_get(c, "sub"), "grace") && str_is(map_get(c, "tenant"), "acme"));
	msgpack_unpacked_destroy(&u);
	m = peer_expect(svc, SB_REQUEST);
	CHECK(m->from == id);
	peer_reply(svc, m->id, "acme", 0, NULL, 0);
	CHECK(peer_expect(cl, SB_REPLY)->id == 3);

	peer_close(cl);
	peer_close(warm);
	peer_close(svc);
	router_close(rt);
	unlink(path);
}

/* A router that joins after a peer connected elsewhere learns of it: its
 * watcher hears the peer announced connected, and gone when its router
 * dies. */
static void test_a_router_that_joins_later_learns_the_peers_already_connected_elsewhere(void)
{
	struct peer *wa = watcher(pa);
	const char *flags[] = {"--cluster", servers[1].url, NULL};
	struct daemon d = daemon_start(0, flags);
	struct peer *early = peer_hello(d.port, "early-bird", "service");
	CHECK_INT(next_about(wa, "early-bird"), SB_PEER_CONNECTED);

	/* The newcomer cannot hear the daemon until its watcher is there. */
	CHECK_INT(kill(d.pid, SIGSTOP), 0);
	struct sb_router *late = cluster_join(servers[0].url);
	struct peer *w = watcher(sb_router_port(late));
	CHECK_INT(kill(d.pid, SIGCONT), 0);
	CHECK_INT(next_about(w, "early-bird"), SB_PEER_CONNECTED);
	CHECK(v_is(w->m.payload, AS_SERVICE));

	daemon_kill(&d);
	CHECK_INT(next_about(w, "early-bird"), SB_PEER_DISCONNECTED);
	CHECK(v_is(w->m.payload, AS_SERVICE));
	peer_close(early);
	peer_close(w);
	peer_close(wa);
	router_close(late);
}

/* Heartbeats are what keep a quiet request alive across routers: one that
 * waits longer than the dead time between answers is not ended. */
static void test_a_quiet_request_across_routers_outlives_the_dead_time(void)
{
	struct peer *svc = peer_hello(pa, NULL, "service");
	peer_register(svc, "slow.think", 1);
	struct peer *cl = peer_hello(pc, NULL, "client");
	CHECK(cluster_until_reachable(cl, svc, "slow.think"));

	peer_request(cl, "slow.think", 9, 60000, NULL, 0);
	uint64_t rid = peer_expect(svc, SB_REQUEST)->id;
	peer_reply(svc, rid, "thinking", SB_F_MORE, NULL, 0);
	CHECK(peer_expect(cl, SB_REPLY)->id == 9);
	/* Twice the dead time without a word on the request. */
	peer_expect_silence(cl, 6000);
	peer_reply(svc, rid, "thought", 0, NULL, 0);
	struct sb_msg *r = peer_expect(cl, SB_REPLY);
	CHECK(r->id == 9 && v_is(r->outcome, "thought"));
	peer_close(cl);
	peer_close(svc);
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc < 2) {
		fprintf(stderr, "usage: test_system_cluster_presence PATH-TO-SWITCHBOARD\n");
		return 2;
	}
	daemon_path = argv[1];
	watchdog("test_cluster_presence", 280);
	if (natsd_start(servers, 2, 0) != 0)
		return 1;
	ra = cluster_join(servers[0].url);
	rc = cluster_join(servers[1].url);
	pa = sb_router_port(ra);
	pc = sb_router_port(rc);
	RUN(test_a_watcher_on_one_router_sees_peers_come_and_go_on_another);
	RUN(test_a_handler_learns_who_called_from_another_router);
	RUN(test_a_handler_on_another_router_learns_the_callers_token_claims);
	RUN(test_the_peers_of_a_killed_router_are_announced_disconnected);
	RUN(test_a_router_that_joins_later_learns_the_peers_already_connected_elsewhere);
	RUN(test_a_quiet_request_across_routers_outlives_the_dead_time);
	router_close(ra);
	router_close(rc);
	natsd_stop(&servers[0]);
	natsd_stop(&servers[1]);
	return TEST_EXIT();
}
