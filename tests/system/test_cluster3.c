/* Three routers as one over a three-server NATS cluster (docs/cluster.md,
 * issue 16's failure suite): three nats-server processes with JetStream
 * forming one cluster (support/natsd.h), three switchboard daemons, each
 * joined through its own server only (--cluster), clients and services
 * spread across them as test peers over real sockets. Routers and servers
 * are killed and restarted under the peers; what is checked is what the
 * peers see, and the daemons' resident memory. Every wait is bounded. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/clock.h"
#include "support/cluster.h"
#include "support/daemon.h"
#include "support/natsd.h"
#include "support/peer.h"
#include "support/proc.h"
#include "support/testlib.h"

#define GRACE_MS "2000" /* --name-grace-ms: a lost peer's name held this long */

static struct natsd ns[3];
static struct daemon rt[3];

/* Router i: a daemon joined through server i alone, so it must come back
 * to that server when it is restarted. */
static struct daemon router_on(unsigned i)
{
	const char *flags[] = {"--cluster", ns[i].url, "--name-grace-ms", GRACE_MS, NULL};
	return daemon_start(0, flags);
}

/* What a HELLO got. */
enum { WELCOMED, REFUSED };

/* HELLO on port as name (NULL: from the pattern), showing resume token tok
 * if not NULL. `overloaded` (JetStream slow to answer a claim on a loaded
 * machine, or electing its leader) is tried again for up to 20 s, as a
 * client would. WELCOMED with *out the peer (name, resume token filled
 * in), or REFUSED with the code and text in code/why. */
static int hello3(uint16_t port, const char *name, const char *role, const uint8_t *tok,
		  struct peer **out, uint32_t *code, char *why, size_t cap)
{
	/* {"resume": bin 16} */
	uint8_t pay[10 + 16] = {0x81, 0xa6, 'r', 'e', 's', 'u', 'm', 'e', 0xc4, 16};
	struct peer *p = NULL;
	uint64_t end = now_ms() + 20000;

	for (;;) {
		p = peer_dial(port);
		struct sb_msg h = {.kind = SB_HELLO, .id = 1, .version = SB_PROTO_VERSION};
		h.role = v_str(role);
		if (name != NULL)
			h.peer = v_str(name);
		if (tok != NULL) {
			memcpy(pay + 10, tok, 16);
			h.payload.ptr = pay;
			h.payload.len = sizeof pay;
		}
		peer_send(p, &h);
		CHECK_INT(peer_recv_within(p, 10000), 1);
		if (now_ms() > end || p->m.kind != SB_ERROR ||
		    p->m.code != (uint32_t)-SB_EOVERLOADED)
			break;
		peer_close(p);
	}
	if (p->m.kind == SB_WELCOME) {
		struct sb_msg *w = &p->m;
		static const uint8_t key[] = {0xa6, 'r', 'e', 's', 'u', 'm', 'e', 0xc4, 16};
		p->peer_id = w->peer_id;
		if (w->peer.len <= SB_PEER_MAX) {
			memcpy(p->name, w->peer.ptr, w->peer.len);
			p->name[w->peer.len] = 0;
		}
		p->has_resume = w->payload.len == 8 + sizeof key + 16 &&
				memcmp(w->payload.ptr + 8, key, sizeof key) == 0;
		if (p->has_resume)
			memcpy(p->resume, w->payload.ptr + 8 + sizeof key, 16);
		*out = p;
		return WELCOMED;
	}
	CHECK_INT(p->m.kind, SB_ERROR);
	*code = p->m.code;
	snprintf(why, cap, "%.*s", (int)p->m.text.len, (const char *)p->m.text.ptr);
	peer_close(p);
	*out = NULL;
	return REFUSED;
}

/* A peer named from the pattern on port, welcomed. */
static struct peer *anon(uint16_t port, const char *role)
{
	struct peer *p = NULL;
	uint32_t code = 0;
	char why[256] = "";
	if (hello3(port, NULL, role, NULL, &p, &code, why, sizeof why) != WELCOMED) {
		fprintf(stderr, "  HELLO refused: %u %s\n", code, why);
		CHECK(0);
		exit(1);
	}
	return p;
}

/* Until the names' bucket is there on the cluster (JetStream elects its
 * leader after the servers start, and each router makes the bucket as it
 * connects): a name taken on router 0 is refused on router 1. */
static int names_claimed(void)
{
	for (uint64_t end = now_ms() + 60000; now_ms() < end;) {
		struct peer *a = NULL, *b = NULL;
		uint32_t code = 0;
		char why[256];
		if (hello3(rt[0].port, "probe", "service", NULL, &a, &code, why, sizeof why) !=
		    WELCOMED)
			continue; /* the last round's probe on router 1, still leaving */
		int held = hello3(rt[1].port, "probe", "service", NULL, &b, &code, why,
				  sizeof why) == REFUSED &&
			   strstr(why, "another router") != NULL;
		peer_close(a);
		peer_close(b);
		if (held)
			return 1;
	}
	return 0;
}

static void test_a_request_and_a_send_cross_every_pair_of_the_three_routers(void)
{
	for (unsigned i = 0; i < 3; i++)
		for (unsigned j = 0; j < 3; j++) {
			if (i == j)
				continue;
			char name[32];
			snprintf(name, sizeof name, "pair.%u%u", i, j);
			struct peer *svc = anon(rt[j].port, "service");
			peer_register(svc, name, 1);
			struct peer *cl = anon(rt[i].port, "client");
			CHECK(cluster_until_reachable(cl, svc, name));

			peer_request(cl, name, 5, 20000, "\xa3hi!", 4);
			struct sb_msg *q = peer_expect(svc, SB_REQUEST);
			CHECK(v_is(q->payload, "\xa3hi!"));
			peer_reply(svc, q->id, "ok", 0, "\xa2yo", 3);
			struct sb_msg *r = peer_expect(cl, SB_REPLY);
			CHECK(r->id == 5 && v_is(r->outcome, "ok") && v_is(r->payload, "\xa2yo"));

			struct sb_msg s = {.kind = SB_SEND, .name = v_str(name)};
			s.payload = v_str("\xa4note");
			peer_send(cl, &s);
			struct sb_msg *got = peer_expect(svc, SB_SEND);
			CHECK(v_is(got->name, name) && v_is(got->payload, "\xa4note"));
			peer_close(cl);
			peer_close(svc);
		}
}

static void test_a_name_taken_on_one_router_is_refused_on_the_two_others(void)
{
	struct peer *first = NULL, *other = NULL;
	char why[256];
	CHECK(cluster_hello_as(rt[0].port, "ledger-3", &first, why, sizeof why));
	for (unsigned i = 1; i < 3; i++) {
		CHECK(!cluster_hello_as(rt[i].port, "ledger-3", &other, why, sizeof why));
		CHECK(strstr(why, "another router") != NULL);
	}
	/* Asked for without a token, the name is not held once its peer has
	 * gone: free for router 2 shortly after (the delete is on its way). */
	peer_close(first);
	int taken = 0;
	for (uint64_t end = now_ms() + 15000; !taken && now_ms() < end;)
		taken = cluster_hello_as(rt[2].port, "ledger-3", &other, why, sizeof why);
	CHECK(taken);
	CHECK(!cluster_hello_as(rt[0].port, "ledger-3", &first, why, sizeof why));
	peer_close(other);
}

static void test_names_from_the_pattern_are_never_given_twice_across_the_three_routers(void)
{
	/* Each router counts from the same pattern: without the claim, the
	 * first peer of each would be P0001. */
	enum { PER = 8 };
	struct peer *ps[3 * PER];
	for (unsigned k = 0; k < 3 * PER; k++) {
		ps[k] = anon(rt[k % 3].port, "service");
		peer_register(ps[k], "direct.note", 1);
	}
	for (unsigned a = 0; a < 3 * PER; a++)
		for (unsigned b = a + 1; b < 3 * PER; b++)
			if (strcmp(ps[a]->name, ps[b]->name) == 0) {
				fprintf(stderr, "  %s given on router %u and on router %u\n",
					ps[a]->name, a % 3, b % 3);
				CHECK(0);
			}

	/* So a `to` such a name reaches that peer, from any router. */
	struct peer *cl = anon(rt[2].port, "client");
	for (unsigned k = 0; k < 3; k++) {
		struct peer *dst = ps[k];
		struct sb_msg s = {.kind = SB_SEND, .name = v_str("direct.note")};
		s.to = v_str(dst->name);
		s.payload = v_str("\xa2hi");
		int got = 0;
		/* A `to` another router: its subscription may still be spreading. */
		for (uint64_t end = now_ms() + 15000; !got && now_ms() < end;) {
			peer_send(cl, &s);
			got = peer_recv_within(dst, 200) == 1;
		}
		CHECK(got && dst->m.kind == SB_SEND && v_is(dst->m.name, "direct.note"));
		for (unsigned o = 0; o < 3 * PER; o++)
			if (ps[o] != dst && ps[o] != NULL)
				while (peer_recv_within(ps[o], 0) == 1) {
					CHECK(ps[o]->m.kind != SB_SEND);
				}
	}
	peer_close(cl);
	for (unsigned k = 0; k < 3 * PER; k++)
		peer_close(ps[k]);
}

/* Until router port answers HELLO asking name (no token) with the local
 * refusal of a name held for its token: the router has seen its holder
 * go (not yet: "a connected peer already has this name"). */
static int held_here(uint16_t port, const char *name)
{
	for (uint64_t end = now_ms() + 10000; now_ms() < end;) {
		struct peer *p = NULL;
		uint32_t code = 0;
		char why[256] = "";
		if (hello3(port, name, "service", NULL, &p, &code, why, sizeof why) == WELCOMED) {
			peer_close(p);
			return 0;
		}
		if (strstr(why, "resume token") != NULL)
			return 1;
	}
	return 0;
}

static void
test_a_name_held_for_its_resume_token_stays_claimed_across_routers_until_its_grace_ends(void)
{
	struct peer *x = anon(rt[0].port, "service"), *y = NULL;
	uint32_t code = 0;
	char name[SB_PEER_MAX + 1], why[256];
	uint8_t tok[16];
	CHECK(x->has_resume);
	snprintf(name, sizeof name, "%s", x->name);
	memcpy(tok, x->resume, 16);

	/* Lost, not GOODBYE: router 0 holds the name for the token... */
	peer_close(x);
	CHECK(held_here(rt[0].port, name));
	/* ...and so it stays claimed in the cluster: router 1 refuses it. */
	CHECK_INT(hello3(rt[1].port, name, "service", NULL, &y, &code, why, sizeof why), REFUSED);
	CHECK_INT(code, (uint32_t)-SB_EDUPNAME);
	CHECK(strstr(why, "another router") != NULL);
	/* The token is router 0's: router 1 cannot tell it from a guess. */
	CHECK_INT(hello3(rt[1].port, name, "service", tok, &y, &code, why, sizeof why), REFUSED);
	CHECK_INT(code, (uint32_t)-SB_EDUPNAME);
	CHECK(strstr(why, "resume token") != NULL);

	/* Back on router 0 with the token: the name again. */
	CHECK_INT(hello3(rt[0].port, name, "service", tok, &x, &code, why, sizeof why), WELCOMED);
	CHECK(x != NULL && strcmp(x->name, name) == 0 && x->has_resume);
	if (x == NULL)
		return;
	memcpy(tok, x->resume, 16);
	peer_close(x);
	CHECK(held_here(rt[0].port, name));

	/* Its grace over, router 0 lets the name go in the cluster too. */
	int taken = 0;
	for (uint64_t end = now_ms() + 15000; !taken && now_ms() < end;)
		taken = cluster_hello_as(rt[1].port, name, &y, why, sizeof why);
	CHECK(taken);
	CHECK(!cluster_hello_as(rt[0].port, name, &x, why, sizeof why));
	CHECK(strstr(why, "another router") != NULL);
	peer_close(y);
}

/* ---- a 1,000-chunk stream to a slow requester ------------------------------ */

enum { STREAM_CHUNK = 128 * 1024, STREAM_CHUNKS = 1000 };
static atomic_uint stream_written;

struct streamer {
	struct peer *svc;
	uint64_t rid;
};

static void *stream_out(void *arg)
{
	struct streamer *st = arg;
	static uint8_t chunk[STREAM_CHUNK];
	for (unsigned i = 0; i < STREAM_CHUNKS; i++) {
		/* A MessagePack bin 32, numbered. */
		chunk[0] = 0xc6;
		chunk[1] = 0;
		chunk[2] = (uint8_t)((STREAM_CHUNK - 5) >> 16);
		chunk[3] = (uint8_t)((STREAM_CHUNK - 5) >> 8);
		chunk[4] = (uint8_t)(STREAM_CHUNK - 5);
		memcpy(chunk + 5, &i, sizeof i);
		peer_reply(st->svc, st->rid, "part", SB_F_MORE | SB_F_CHUNK, chunk, sizeof chunk);
		atomic_store(&stream_written, i + 1);
	}
	peer_reply(st->svc, st->rid, "done", 0, NULL, 0);
	return NULL;
}

/* The largest growth of the three routers' resident memory over base. */
static long rss_growth(const long base[3], long *worst)
{
	for (unsigned i = 0; i < 3; i++) {
		long kb = rss_kb(rt[i].pid);
		if (kb > 0 && kb - base[i] > *worst)
			*worst = kb - base[i];
	}
	return *worst;
}

static void
test_a_1000_chunk_stream_to_a_slow_requester_on_another_router_keeps_memory_bounded(void)
{
	/* 128 MB from a handler on router 0 to a requester on router 2 that
	 * reads nothing until the handler is held back, then reads it all.
	 * A router that buffered the stream would grow by most of it; the
	 * pause keeps each within its queues' bounds (out_max 16 MiB and
	 * what is in flight when the pause goes out). */
	struct peer *svc = anon(rt[0].port, "service");
	peer_register(svc, "archive.get", 1);
	struct peer *cl = anon(rt[2].port, "client");
	CHECK(cluster_until_reachable(cl, svc, "archive.get"));
	long base[3], worst = 0;
	for (unsigned i = 0; i < 3; i++)
		base[i] = rss_kb(rt[i].pid);

	peer_request(cl, "archive.get", 81, 120000, NULL, 0);
	struct streamer st = {svc, peer_expect(svc, SB_REQUEST)->id};
	atomic_store(&stream_written, 0);
	pthread_t t;
	pthread_create(&t, NULL, stream_out, &st);
	/* The handler writes until it is held back: its count stops moving
	 * (looked at every 500 ms, 60 s at most). */
	unsigned last = ~0u;
	for (uint64_t end = now_ms() + 60000;
	     now_ms() < end && atomic_load(&stream_written) < STREAM_CHUNKS;) {
		unsigned w = atomic_load(&stream_written);
		if (w == last)
			break;
		last = w;
		peer_recv_within(svc, 500); /* nothing comes: a bounded wait */
		rss_growth(base, &worst);
	}
	CHECK(atomic_load(&stream_written) < STREAM_CHUNKS);
	rss_growth(base, &worst);

	unsigned got = 0;
	for (; got < STREAM_CHUNKS; got++) {
		struct sb_msg *r = peer_expect(cl, SB_REPLY);
		unsigned n = ~0u;
		if (r->payload.len == STREAM_CHUNK)
			memcpy(&n, r->payload.ptr + 5, sizeof n);
		if (r->id != 81 || !(r->flags & SB_F_CHUNK) || n != got)
			break;
		if (got % 50 == 0)
			rss_growth(base, &worst);
	}
	CHECK_INT(got, STREAM_CHUNKS);
	struct sb_msg *r = peer_expect(cl, SB_REPLY);
	CHECK(r->id == 81 && !(r->flags & SB_F_MORE) && v_is(r->outcome, "done"));
	pthread_join(t, NULL);
	rss_growth(base, &worst);
	printf("  the routers' resident memory grew by %ld KiB at most (128 MB streamed)\n", worst);
	CHECK(worst < 96 * 1024);
	peer_close(cl);
	peer_close(svc);
}

/* ---- a router killed mid-stream ------------------------------------------- */

static void
test_the_handlers_router_killed_mid_stream_ends_each_request_once_and_its_service_comes_back_elsewhere(
	void)
{
	struct peer *svc = NULL, *cl[2];
	char why[256];
	CHECK(cluster_hello_as(rt[1].port, "feeder", &svc, why, sizeof why));
	peer_register(svc, "feed.tail", 1);
	cl[0] = anon(rt[0].port, "client");
	cl[1] = anon(rt[2].port, "client");
	for (unsigned i = 0; i < 2; i++)
		CHECK(cluster_until_reachable(cl[i], svc, "feed.tail"));

	/* Two streams from each client, each answered once. */
	uint64_t rid[4];
	for (unsigned k = 0; k < 4; k++) {
		peer_request(cl[k / 2], "feed.tail", 100 + k, 60000, NULL, 0);
		rid[k] = peer_expect(svc, SB_REQUEST)->id;
	}
	for (unsigned n = 0; n < 5; n++)
		for (unsigned k = 0; k < 4; k++)
			peer_reply(svc, rid[k], "tick", SB_F_MORE | SB_F_CHUNK, "\xa1x", 2);
	for (unsigned i = 0; i < 2; i++)
		for (unsigned n = 0; n < 10; n++)
			CHECK(peer_expect(cl[i], SB_REPLY)->flags & SB_F_MORE);

	uint64_t t0 = now_ms();
	daemon_kill(&rt[1]);
	/* Exactly one terminal event per request: `peer gone`, within the
	 * dead time (3 s) and a loaded machine's margin, never a hang. */
	unsigned ended[4] = {0};
	for (unsigned i = 0; i < 2; i++) {
		while (ended[2 * i] + ended[2 * i + 1] < 2 && now_ms() - t0 < 15000) {
			if (peer_recv_within(cl[i], 1000) != 1)
				continue;
			struct sb_msg *e = &cl[i]->m;
			CHECK(e->kind == SB_ERROR && e->code == (uint32_t)-SB_EPEERGONE);
			if (e->kind == SB_ERROR && e->id >= 100 + 2 * i && e->id < 102 + 2 * i)
				ended[e->id - 100]++;
		}
		peer_expect_silence(cl[i], 500);
	}
	for (unsigned k = 0; k < 4; k++)
		CHECK_INT(ended[k], 1);
	CHECK(now_ms() - t0 < 15000);
	peer_close(svc);

	/* The service reconnects to router 2 by hand: its name is the dead
	 * router's until the dead time has passed, then taken over. */
	int back = 0;
	for (uint64_t end = now_ms() + 20000; !back && now_ms() < end;)
		back = cluster_hello_as(rt[2].port, "feeder", &svc, why, sizeof why);
	CHECK(back);
	if (back) {
		peer_register(svc, "feed.tail", 1);
		CHECK(cluster_until_reachable(cl[0], svc, "feed.tail"));
		peer_request(cl[0], "feed.tail", 200, 20000, NULL, 0);
		struct sb_msg *q = peer_expect(svc, SB_REQUEST);
		peer_reply(svc, q->id, "ok", 0, NULL, 0);
		CHECK(peer_expect(cl[0], SB_REPLY)->id == 200);
		peer_close(svc);
	}
	peer_close(cl[0]);
	peer_close(cl[1]);
	rt[1] = router_on(1); /* three routers again */
}

/* ---- a NATS server killed and restarted ------------------------------------ */

static void test_a_nats_server_killed_and_restarted_brings_its_router_back_into_the_cluster(void)
{
	/* Router 2 is joined through server 2 alone. */
	struct peer *svc2 = anon(rt[2].port, "service"), *svc0 = anon(rt[0].port, "service");
	peer_register(svc2, "on.two", 1);
	peer_register(svc0, "on.zero", 1);
	struct peer *cl0 = anon(rt[0].port, "client"), *cl2 = anon(rt[2].port, "client");
	CHECK(cluster_until_reachable(cl0, svc2, "on.two"));
	CHECK(cluster_until_reachable(cl2, svc0, "on.zero"));

	natsd_kill(&ns[2]);
	/* Cut off: router 2 finds no handler elsewhere at once (a request on
	 * its way as the server died may end as `peer gone`, or be answered). */
	int cut = 0;
	for (uint64_t end = now_ms() + 15000, id = 300; !cut && now_ms() < end; id++) {
		peer_request(cl2, "on.zero", id, 2000, NULL, 0);
		for (uint64_t until = now_ms() + 5000; now_ms() < until;) {
			if (peer_recv_within(svc0, 10) == 1 && svc0->m.kind == SB_REQUEST)
				peer_reply(svc0, svc0->m.id, "ok", 0, NULL, 0);
			if (peer_recv_within(cl2, 10) != 1 || cl2->m.id != id)
				continue;
			cut = cl2->m.kind == SB_ERROR && cl2->m.code == (uint32_t)-SB_ENOHANDLER;
			break;
		}
	}
	CHECK(cut);
	/* What the cut ended (CANCELs to the handlers) is read first. */
	while (peer_recv_within(svc0, 200) == 1 || peer_recv_within(svc2, 200) == 1)
		;

	/* Back: router 2 reconnects with its subscriptions, both ways. */
	CHECK_INT(natsd_restart_in(ns, 3, 2), 0);
	CHECK(cluster_until_reachable(cl0, svc2, "on.two"));
	CHECK(cluster_until_reachable(cl2, svc0, "on.zero"));
	peer_close(cl0);
	peer_close(cl2);
	peer_close(svc0);
	peer_close(svc2);
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc < 2) {
		fprintf(stderr, "usage: test_system_cluster3 PATH-TO-SWITCHBOARD\n");
		return 2;
	}
	daemon_path = argv[1];
	watchdog("test_cluster3", 290);
	if (natsd_start(ns, 3, 1) != 0)
		return 1;
	for (unsigned i = 0; i < 3; i++)
		rt[i] = router_on(i);
	if (!names_claimed()) {
		fprintf(stderr, "names are not claimed across the routers within 60 s\n");
		return 1;
	}
	RUN(test_a_request_and_a_send_cross_every_pair_of_the_three_routers);
	RUN(test_a_name_taken_on_one_router_is_refused_on_the_two_others);
	RUN(test_names_from_the_pattern_are_never_given_twice_across_the_three_routers);
	RUN(test_a_name_held_for_its_resume_token_stays_claimed_across_routers_until_its_grace_ends);
	RUN(test_a_1000_chunk_stream_to_a_slow_requester_on_another_router_keeps_memory_bounded);
	RUN(test_the_handlers_router_killed_mid_stream_ends_each_request_once_and_its_service_comes_back_elsewhere);
	RUN(test_a_nats_server_killed_and_restarted_brings_its_router_back_into_the_cluster);
	for (unsigned i = 0; i < 3; i++)
		daemon_stop(&rt[i]);
	for (unsigned i = 0; i < 3; i++)
		natsd_stop(&ns[i]);
	return TEST_EXIT();
}
