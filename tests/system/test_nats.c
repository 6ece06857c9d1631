/* The NATS connection routers will join a cluster with (docs/cluster.md),
 * against real nats-server processes on free loopback ports: messages and
 * headers both ways, queue groups, "no responders", a killed server and
 * the reconnect to the other one with subscriptions back, a hung one left
 * after unanswered PINGs, key-value create raced from two connections,
 * output bounded while the server is stopped, a burst read whole by a
 * loop woken only by new bytes, and user/password, token and TLS. */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <switchboard/error.h>

#include "common/nats.h"
#include "support/clock.h"
#include "support/natsd.h"
#include "support/proc.h"
#include "support/testlib.h"
#include "support/tls.h"

/* What a connection said through on_event. */
struct watch {
	int connected, disconnected, writable, errors;
	char url[128];   /* the last CONNECTED's */
	char error[256]; /* the last SERVER_ERROR's */
};

static void on_event(void *ud, enum sb__nats_event ev, const char *text)
{
	struct watch *w = ud;
	switch (ev) {
	case SB__NATS_CONNECTED:
		w->connected++;
		snprintf(w->url, sizeof w->url, "%s", text);
		break;
	case SB__NATS_DISCONNECTED:
		w->disconnected++;
		break;
	case SB__NATS_WRITABLE:
		w->writable++;
		break;
	case SB__NATS_ATTEMPT_FAILED:
		break;
	case SB__NATS_SERVER_ERROR:
		w->errors++;
		snprintf(w->error, sizeof w->error, "%s", text);
		break;
	}
}

/* One poll over every connection, then each processes what it got. */
static void pump(struct sb__nats *const *ncs, unsigned n, int ms)
{
	struct pollfd p[8];
	int t = ms;

	for (unsigned i = 0; i < n; i++) {
		int ti = sb__nats_timeout(ncs[i], now_ms());
		p[i].fd = sb__nats_fd(ncs[i]);
		p[i].events = sb__nats_events(ncs[i]);
		p[i].revents = 0;
		if (ti < t)
			t = ti;
	}
	poll(p, n, t);
	for (unsigned i = 0; i < n; i++)
		sb__nats_process(ncs[i], p[i].fd >= 0 ? p[i].revents : 0, now_ms());
}

/* Pumps the connections until cond holds or ms pass; the value of cond. */
#define UNTIL(cond, ms, ...)                                                                       \
	do {                                                                                       \
		struct sb__nats *const l_[] = {__VA_ARGS__};                                       \
		uint64_t e_ = now_ms() + (ms);                                                     \
		while (!(cond) && now_ms() < e_)                                                   \
			pump(l_, sizeof l_ / sizeof l_[0], 20);                                    \
	} while (0)

static struct sb__nats *open_cfg(struct sb__nats_cfg *cfg, struct watch *w)
{
	struct sb__nats *nc = NULL;
	char why[256];

	memset(w, 0, sizeof *w);
	cfg->on_event = on_event;
	cfg->ud = w;
	if (cfg->name == NULL)
		cfg->name = "sb-test";
	if (sb__nats_new(cfg, &nc, why, sizeof why) != 0) {
		fprintf(stderr, "sb__nats_new: %s\n", why);
		CHECK(!"sb__nats_new failed");
		exit(1);
	}
	return nc;
}

/* A connection to servers, ready (or a failed check after 10 s). */
static struct sb__nats *open_ready(const char *servers, struct watch *w)
{
	struct sb__nats_cfg cfg = {.servers = servers};
	struct sb__nats *nc = open_cfg(&cfg, w);
	UNTIL(sb__nats_ready(nc), 10000, nc);
	CHECK(sb__nats_ready(nc));
	return nc;
}

/* Messages as a subscription got them. */
struct got {
	unsigned n;
	char subject[64], reply[64];
	uint8_t data[512];
	size_t len;
	char hdr[256];
	int status;
	uint32_t next_seq; /* flood: the sequence number expected next */
	int out_of_order;
};

static void keep(void *ud, const struct sb__nats_msg *m)
{
	struct got *g = ud;
	g->n++;
	snprintf(g->subject, sizeof g->subject, "%.*s", (int)m->subject_len, m->subject);
	snprintf(g->reply, sizeof g->reply, "%.*s", (int)m->reply_len, m->reply ? m->reply : "");
	g->len = m->data_len < sizeof g->data ? m->data_len : sizeof g->data;
	memcpy(g->data, m->data, g->len);
	snprintf(g->hdr, sizeof g->hdr, "%.*s", (int)m->hdr_len, (const char *)m->hdr);
	g->status = m->status;
}

/* A message on a subject every connection subscribes to gets through: the
 * servers' routes are up and the subscriptions known cluster-wide. */
static void await_interest(struct sb__nats *from, struct sb__nats *to, const char *subject,
			   struct got *g)
{
	uint64_t end = now_ms() + 15000;
	unsigned before = g->n;
	while (g->n == before && now_ms() < end) {
		sb__nats_pub(from, subject, NULL, NULL, 0, "?", 1);
		UNTIL(g->n != before, 100, from, to);
	}
	CHECK(g->n != before);
}

struct reply {
	int calls, err, status;
	uint8_t data[64];
	size_t len;
};

static void on_reply(void *ud, int err, const struct sb__nats_msg *m)
{
	struct reply *r = ud;
	r->calls++;
	r->err = err;
	r->status = m ? m->status : -1;
	if (m != NULL) {
		r->len = m->data_len < sizeof r->data ? m->data_len : sizeof r->data;
		memcpy(r->data, m->data, r->len);
	}
}

static void test_a_message_and_its_headers_arrive_as_published(void)
{
	struct natsd d = {0};
	struct watch wa, wb;
	struct got g = {0};
	static const uint8_t payload[] = "\x92\xa3MSG\r\nPUB x 1\r\n\x00\xff";
	uint8_t hdr[256];
	const struct sb__nats_hdr h[] = {{"Sb-Kind", "request"}, {"Sb-Deadline-Ms", "4500"}};
	const char *v;
	size_t vl;

	CHECK(natsd_start(&d, 1, 0) == 0);
	struct sb__nats *a = open_ready(d.url, &wa), *b = open_ready(d.url, &wb);
	struct got probe = {0};
	int64_t sid = sb__nats_sub(b, "sb.r.user.create", NULL, keep, &g);
	CHECK(sid > 0);
	/* The server takes a connection's operations in order: once a probe
	 * subscribed after it gets through, so does the first subject. */
	CHECK(sb__nats_sub(b, "sb.probe", NULL, keep, &probe) > 0);
	await_interest(a, b, "sb.probe", &probe);

	CHECK_INT(
		sb__nats_pub(a, "sb.r.user.create", "sb.i.r1.0", NULL, 0, payload, sizeof payload),
		0);
	UNTIL(g.n == 1, 5000, a, b);
	CHECK_INT(g.n, 1);
	CHECK_STR(g.subject, "sb.r.user.create");
	CHECK_STR(g.reply, "sb.i.r1.0");
	CHECK_INT(g.len, sizeof payload);
	CHECK(memcmp(g.data, payload, sizeof payload) == 0);
	CHECK_INT(g.status, 0);

	long hl = sb__nats_hdr_build(hdr, sizeof hdr, h, 2);
	CHECK(hl > 0 && (size_t)hl < sizeof hdr);
	CHECK_INT(
		sb__nats_pub(a, "sb.r.user.create", NULL, hdr, (size_t)hl, payload, sizeof payload),
		0);
	UNTIL(g.n == 2, 5000, a, b);
	CHECK_INT(g.n, 2);
	CHECK(memcmp(g.data, payload, sizeof payload) == 0);
	CHECK_INT(g.len, sizeof payload);
	CHECK(sb__nats_hdr_get((const uint8_t *)g.hdr, strlen(g.hdr), "sb-kind", &v, &vl));
	CHECK(vl == 7 && memcmp(v, "request", 7) == 0);
	CHECK(sb__nats_hdr_get((const uint8_t *)g.hdr, strlen(g.hdr), "Sb-Deadline-Ms", &v, &vl));
	CHECK(vl == 4 && memcmp(v, "4500", 4) == 0);

	/* A header that would break the block is refused before it is sent. */
	const struct sb__nats_hdr bad[] = {{"Sb-Kind", "a\r\nX: y"}};
	CHECK_INT(sb__nats_hdr_build(hdr, sizeof hdr, bad, 1), SB_EINVAL);
	CHECK_INT(sb__nats_pub(a, "sb r", NULL, NULL, 0, "", 0), SB_EINVAL);
	CHECK_INT(sb__nats_pub(a, "sb.*", NULL, NULL, 0, "", 0), SB_EINVAL);
	CHECK_INT(sb__nats_pub(a, "sb.big", NULL, NULL, 0, payload, sb__nats_max_payload(a) + 1),
		  SB_ETOOLARGE);

	/* After an unsubscribe nothing more arrives: the next message on a
	 * subject b still holds proves the server has seen the UNSUB. */
	struct got g2 = {0};
	CHECK(sb__nats_sub(b, "sb.r.other", NULL, keep, &g2) > 0);
	await_interest(a, b, "sb.r.other", &g2);
	sb__nats_unsub(b, sid);
	/* Once the server has taken the UNSUB nobody has the subject: a
	 * request says so (no responders). What the server sent before still
	 * reaches the callback (sb__nats_unsub()); nothing after it does. */
	struct reply none = {0};
	for (uint64_t end = now_ms() + 10000; none.err != SB_ENOHANDLER && now_ms() < end;) {
		none = (struct reply){0};
		CHECK_INT(sb__nats_request(a, "sb.r.user.create", NULL, 0, "q", 1, 300, on_reply,
					   &none),
			  0);
		UNTIL(none.calls > 0, 5000, a, b);
	}
	CHECK_INT(none.err, SB_ENOHANDLER);
	unsigned n = g.n, n2 = g2.n;
	CHECK_INT(sb__nats_pub(a, "sb.r.user.create", NULL, NULL, 0, "x", 1), 0);
	CHECK_INT(sb__nats_pub(a, "sb.r.other", NULL, NULL, 0, "y", 1), 0);
	UNTIL(g2.n == n2 + 1, 5000, a, b);
	CHECK_INT(g2.n, n2 + 1);
	CHECK_INT(g.n, n);

	sb__nats_free(a);
	sb__nats_free(b);
	natsd_stop(&d);
}

static void test_a_queue_group_spreads_requests_and_a_plain_subscriber_sees_all(void)
{
	enum { MSGS = 300 };
	struct natsd d = {0};
	struct watch w[5];
	struct got g[4];
	struct sb__nats *c[5];

	memset(g, 0, sizeof g);
	CHECK(natsd_start(&d, 1, 0) == 0);
	for (int i = 0; i < 5; i++)
		c[i] = open_ready(d.url, &w[i]);
	/* Each member's SUB is known to the server once a probe it subscribed
	 * after it gets through (operations of one connection keep order;
	 * those of different connections do not). */
	for (int i = 0; i < 4; i++) {
		struct got probe = {0};
		char subject[32];
		CHECK(sb__nats_sub(c[i], "sb.r.work", i < 3 ? "sb.r.work" : NULL, keep, &g[i]) > 0);
		snprintf(subject, sizeof subject, "sb.probe.%d", i);
		CHECK(sb__nats_sub(c[i], subject, NULL, keep, &probe) > 0);
		await_interest(c[4], c[i], subject, &probe);
	}
	for (int i = 0; i < 4; i++)
		g[i].n = 0;
	for (int i = 0; i < MSGS; i++)
		CHECK_INT(sb__nats_pub(c[4], "sb.r.work", NULL, NULL, 0, &i, sizeof i), 0);
	UNTIL(g[0].n + g[1].n + g[2].n == MSGS && g[3].n == MSGS, 10000, c[0], c[1], c[2], c[3],
	      c[4]);
	CHECK_INT(g[0].n + g[1].n + g[2].n, MSGS);
	CHECK_INT(g[3].n, MSGS);
	for (int i = 0; i < 3; i++)
		CHECK(g[i].n > 0); /* (2/3)^300 odds of a member left out */
	for (int i = 0; i < 5; i++)
		sb__nats_free(c[i]);
	natsd_stop(&d);
}

static struct sb__nats *responder;

static void echo(void *ud, const struct sb__nats_msg *m)
{
	char reply[128];
	(void)ud;
	snprintf(reply, sizeof reply, "%.*s", (int)m->reply_len, m->reply);
	CHECK_INT(sb__nats_pub(responder, reply, NULL, NULL, 0, m->data, m->data_len), 0);
}

static void test_a_request_nobody_serves_ends_with_no_handler_not_a_timeout(void)
{
	struct natsd d = {0};
	struct watch wa, wb;
	struct reply none = {0}, served = {0};
	struct got g = {0};

	CHECK(natsd_start(&d, 1, 0) == 0);
	struct sb__nats *a = open_ready(d.url, &wa), *b = open_ready(d.url, &wb);
	responder = b;
	/* The timeout is far off: only the server's 503 can end it soon. */
	CHECK_INT(sb__nats_request(a, "sb.r.nobody", NULL, 0, "q", 1, 60000, on_reply, &none), 0);
	UNTIL(none.calls > 0, 30000, a, b);
	CHECK_INT(none.calls, 1);
	CHECK_INT(none.err, SB_ENOHANDLER);
	CHECK_INT(none.status, 503);

	CHECK(sb__nats_sub(b, "sb.r.echo", "sb.r.echo", echo, NULL) > 0);
	CHECK(sb__nats_sub(b, "sb.probe", NULL, keep, &g) > 0);
	await_interest(a, b, "sb.probe", &g);
	CHECK_INT(sb__nats_request(a, "sb.r.echo", NULL, 0, "ping!", 5, 10000, on_reply, &served),
		  0);
	UNTIL(served.calls > 0, 10000, a, b);
	CHECK_INT(served.calls, 1);
	CHECK_INT(served.err, 0);
	CHECK(served.len == 5 && memcmp(served.data, "ping!", 5) == 0);
	sb__nats_free(a);
	sb__nats_free(b);
	natsd_stop(&d);
}

static void test_a_killed_server_is_replaced_by_the_other_with_subscriptions_back(void)
{
	struct natsd d[2] = {0};
	struct watch wx, wy;
	struct got g = {0};
	struct reply lost = {0};
	char servers[160];

	CHECK(natsd_start(d, 2, 0) == 0);
	snprintf(servers, sizeof servers, "%s,%s", d[0].url, d[1].url);
	struct sb__nats *x = open_ready(servers, &wx), *y = open_ready(d[1].url, &wy);
	CHECK_STR(wx.url, d[0].url);
	struct got held = {0}, probe = {0};
	CHECK(sb__nats_sub(x, "sb.p.alice", NULL, keep, &g) > 0);
	await_interest(y, x, "sb.p.alice", &g); /* across the route: n2 -> n1 */
	/* y takes this request and never answers: it is in flight when x's
	 * server dies. */
	CHECK(sb__nats_sub(y, "sb.p.alice.hold", NULL, keep, &held) > 0);
	CHECK(sb__nats_sub(y, "sb.p.probe", NULL, keep, &probe) > 0);
	await_interest(x, y, "sb.p.probe", &probe);
	CHECK_INT(sb__nats_request(x, "sb.p.alice.hold", NULL, 0, NULL, 0, 60000, on_reply, &lost),
		  0);
	UNTIL(held.n == 1, 5000, x, y);
	CHECK_INT(held.n, 1);

	uint64_t sock = sb__nats_socket_gen(x);
	natsd_kill(&d[0]);
	UNTIL(wx.connected == 2, 15000, x, y);
	CHECK(sb__nats_socket_gen(x) != sock); /* a loop's poll must be re-armed */
	CHECK_INT(wx.disconnected, 1);
	CHECK_INT(wx.connected, 2);
	CHECK_STR(wx.url, d[1].url);
	CHECK_INT(lost.calls, 1);
	CHECK_INT(lost.err, SB_EOFFLINE);
	/* Ready means the SUB was replayed and answered: the first message
	 * published after it arrives, with no retry. */
	unsigned before = g.n;
	CHECK_INT(sb__nats_pub(y, "sb.p.alice", NULL, NULL, 0, "back", 4), 0);
	UNTIL(g.n > before, 10000, x, y);
	CHECK_INT(g.n, before + 1);
	CHECK(g.len == 4 && memcmp(g.data, "back", 4) == 0);
	CHECK_INT(wy.disconnected, 0);

	/* The first server comes back and the second goes: x returns. */
	CHECK(natsd_restart(&d[0]) == 0);
	natsd_kill(&d[1]);
	UNTIL(wx.connected == 3, 20000, x);
	CHECK_INT(wx.connected, 3);
	CHECK_STR(wx.url, d[0].url);
	sb__nats_free(x);
	sb__nats_free(y);
	natsd_stop(&d[0]);
	natsd_stop(&d[1]);
}

static void test_a_server_that_stops_answering_is_left_for_the_other_after_unanswered_pings(void)
{
	struct natsd d[2] = {0};
	struct watch wx;
	char servers[160];

	CHECK(natsd_start(d, 2, 0) == 0);
	snprintf(servers, sizeof servers, "%s,%s", d[0].url, d[1].url);
	struct sb__nats_cfg cfg = {.servers = servers, .ping_ms = 200, .pings_max = 2};
	struct sb__nats *x = open_cfg(&cfg, &wx);
	UNTIL(sb__nats_ready(x), 10000, x);
	CHECK_STR(wx.url, d[0].url);
	/* Hung, not dead: the socket stays open, only PINGs tell. */
	CHECK(kill(d[0].pid, SIGSTOP) == 0);
	UNTIL(wx.connected == 2, 15000, x);
	CHECK_INT(wx.disconnected, 1);
	CHECK_INT(wx.connected, 2);
	CHECK_STR(wx.url, d[1].url);
	CHECK(strstr(sb__nats_last_error(x), "PINGs unanswered") != NULL);
	CHECK(kill(d[0].pid, SIGCONT) == 0);
	sb__nats_free(x);
	natsd_stop(&d[0]);
	natsd_stop(&d[1]);
}

struct kv_result {
	int calls, err;
	uint64_t rev;
	char val[64];
};

static void on_kv(void *ud, int err, uint64_t rev, const uint8_t *val, size_t len)
{
	struct kv_result *r = ud;
	r->calls++;
	r->err = err;
	r->rev = rev;
	snprintf(r->val, sizeof r->val, "%.*s", (int)len, val ? (const char *)val : "");
}

static void test_a_name_raced_from_two_routers_goes_to_exactly_one(void)
{
	enum { KEYS = 20 };
	struct natsd d = {0};
	struct watch wa, wb;
	struct kv_result bucket = {0}, ra[KEYS], rb[KEYS], del = {0}, stale = {0}, again = {0},
			 get = {0};
	const struct sb__nats_kv_opts o = {.memory = 1, .timeout_ms = 10000};
	char key[32];

	memset(ra, 0, sizeof ra);
	memset(rb, 0, sizeof rb);
	CHECK(natsd_start(&d, 1, 1) == 0);
	struct sb__nats *a = open_ready(d.url, &wa), *b = open_ready(d.url, &wb);
	CHECK_INT(sb__nats_kv_bucket(a, "sbnames", &o, on_kv, &bucket), 0);
	UNTIL(bucket.calls, 15000, a);
	CHECK_INT(bucket.err, 0);
	/* Creating it again with the same settings finds it. */
	bucket.calls = 0;
	CHECK_INT(sb__nats_kv_bucket(b, "sbnames", &o, on_kv, &bucket), 0);
	UNTIL(bucket.calls, 15000, b);
	CHECK_INT(bucket.err, 0);

	/* Both claim every key at once, each going out first for half of
	 * them: which claim the server sees first is its to decide. */
	for (int k = 0; k < KEYS; k++) {
		snprintf(key, sizeof key, "peer-%d", k);
		CHECK_INT(
			sb__nats_kv_create(a, "sbnames", key, "router-a", 8, 10000, on_kv, &ra[k]),
			0);
		CHECK_INT(
			sb__nats_kv_create(b, "sbnames", key, "router-b", 8, 10000, on_kv, &rb[k]),
			0);
		sb__nats_flush(k % 2 ? b : a);
		sb__nats_flush(k % 2 ? a : b);
	}
	int done;
	uint64_t end = now_ms() + 30000;
	do {
		done = 1;
		for (int k = 0; k < KEYS; k++)
			done &= ra[k].calls == 1 && rb[k].calls == 1;
		if (!done)
			pump((struct sb__nats *[]){a, b}, 2, 20);
	} while (!done && now_ms() < end);
	CHECK(done);
	int a_won = 0;
	for (int k = 0; k < KEYS; k++) {
		struct kv_result *w = ra[k].err == 0 ? &ra[k] : &rb[k];
		struct kv_result *l = ra[k].err == 0 ? &rb[k] : &ra[k];
		a_won += ra[k].err == 0;
		CHECK_INT(w->err, 0);
		CHECK_INT(l->err, SB_EDUPNAME);
		CHECK(w->rev > 0);
		CHECK_INT(l->rev, w->rev); /* the loser sees the winner's revision... */
		CHECK_STR(l->val, w == &ra[k] ? "router-a" : "router-b"); /* ...and its value */
	}

	/* peer-0's holder lets it go; a stale revision cannot. */
	struct sb__nats *w0 = ra[0].err == 0 ? a : b, *l0 = w0 == a ? b : a;
	uint64_t rev0 = ra[0].err == 0 ? ra[0].rev : rb[0].rev;
	CHECK_INT(sb__nats_kv_delete(w0, "sbnames", "peer-0", rev0 + 1000, 10000, on_kv, &stale),
		  0);
	UNTIL(stale.calls, 10000, a, b);
	CHECK_INT(stale.err, SB_EDUPNAME);
	CHECK_INT(sb__nats_kv_delete(w0, "sbnames", "peer-0", rev0, 10000, on_kv, &del), 0);
	UNTIL(del.calls, 10000, a, b);
	CHECK_INT(del.err, 0);
	/* The other router can now have it: create over the delete marker. */
	CHECK_INT(sb__nats_kv_create(l0, "sbnames", "peer-0", "router-l", 8, 10000, on_kv, &again),
		  0);
	UNTIL(again.calls, 10000, a, b);
	CHECK_INT(again.err, 0);
	CHECK(again.rev > del.rev);
	CHECK_INT(sb__nats_kv_get(w0, "sbnames", "peer-0", 10000, on_kv, &get), 0);
	UNTIL(get.calls, 10000, a, b);
	CHECK_INT(get.err, 0);
	CHECK_STR(get.val, "router-l");
	CHECK_INT(get.rev, again.rev);
	get.calls = 0;
	CHECK_INT(sb__nats_kv_get(w0, "sbnames", "nobody", 10000, on_kv, &get), 0);
	UNTIL(get.calls, 10000, a, b);
	CHECK_INT(get.err, SB_EUNKNOWNPEER);
	CHECK_INT(sb__nats_kv_create(a, "sbnames", "bad key", "x", 1, 1000, on_kv, &get),
		  SB_EINVAL);
	printf("     (router a won %d of %d races)\n", a_won, KEYS);
	/* A connection freed with a request in flight still ends it, once. */
	struct kv_result late = {0};
	CHECK_INT(sb__nats_kv_get(a, "sbnames", "peer-1", 10000, on_kv, &late), 0);
	sb__nats_free(a);
	CHECK_INT(late.calls, 1);
	CHECK_INT(late.err, SB_EOFFLINE);
	sb__nats_free(b);
	natsd_stop(&d);
}

static void count_in_order(void *ud, const struct sb__nats_msg *m)
{
	struct got *g = ud;
	uint32_t seq;
	if (m->data_len < sizeof seq) {
		g->out_of_order++;
		return;
	}
	memcpy(&seq, m->data, sizeof seq);
	if (seq != g->next_seq)
		g->out_of_order++;
	g->next_seq = seq + 1;
	g->n++;
}

/* A shard that has accepted answers to publish at the end of its turn
 * keeps their room: a publish in between that would take it is refused,
 * and once the room is given back it goes. */
static void test_room_kept_for_accepted_answers_refuses_other_publishes_until_given_back(void)
{
	enum { OUT_MAX = 64 << 10 };
	static uint8_t data[4096];
	struct natsd d = {0};
	struct watch wa, wb;
	struct got g = {0};
	struct sb__nats_cfg ca = {.out_max = OUT_MAX}, cb = {0};

	CHECK(natsd_start(&d, 1, 0) == 0);
	ca.servers = cb.servers = d.url;
	struct sb__nats *a = open_cfg(&ca, &wa), *b = open_cfg(&cb, &wb);
	UNTIL(sb__nats_ready(a) && sb__nats_ready(b), 10000, a, b);
	CHECK(sb__nats_sub(b, "sb.kept", NULL, keep, &g) > 0);
	await_interest(a, b, "sb.kept", &g);
	UNTIL(sb__nats_pending(a) == 0, 5000, a, b);
	unsigned before = g.n;

	sb__nats_hold(a, OUT_MAX - 1024);
	CHECK_INT(sb__nats_pub(a, "sb.kept", NULL, NULL, 0, data, sizeof data), SB_EOVERLOADED);
	CHECK_INT(sb__nats_pub(a, "sb.kept", NULL, NULL, 0, data, 512), 0); /* fits beside it */
	sb__nats_hold(a, 0);
	CHECK_INT(sb__nats_pub(a, "sb.kept", NULL, NULL, 0, data, sizeof data), 0);
	UNTIL(g.n == before + 2, 10000, a, b);
	CHECK_INT(g.n, before + 2);
	CHECK_INT(wa.disconnected, 0);
	sb__nats_free(a);
	sb__nats_free(b);
	natsd_stop(&d);
}

static void test_a_stopped_server_stops_the_publisher_at_its_bound_and_resumes_it(void)
{
	enum { OUT_MAX = 256 << 10, MSG = 16 << 10 };
	static uint8_t data[MSG];
	struct natsd d = {0};
	struct watch wa, wb;
	struct got g = {0};
	struct sb__nats_cfg ca = {.out_max = OUT_MAX, .ping_ms = 120000};
	struct sb__nats_cfg cb = {.ping_ms = 120000};
	uint32_t seq = 0;
	size_t most = 0;
	int rc = 0;

	CHECK(natsd_start(&d, 1, 0) == 0);
	ca.servers = cb.servers = d.url;
	struct sb__nats *a = open_cfg(&ca, &wa), *b = open_cfg(&cb, &wb);
	UNTIL(sb__nats_ready(a) && sb__nats_ready(b), 10000, a, b);
	CHECK(sb__nats_sub(b, "sb.flood", NULL, count_in_order, &g) > 0);
	{
		struct got probe = {0};
		CHECK(sb__nats_sub(b, "sb.flood.probe", NULL, keep, &probe) > 0);
		await_interest(a, b, "sb.flood.probe", &probe);
	}

	CHECK(kill(d.pid, SIGSTOP) == 0);
	/* Publish as fast as taken: the kernel's buffers fill, then ours, up
	 * to the bound. The kernel may still take a little more as its
	 * buffers settle; then every try is refused, turn after turn. */
	uint64_t end = now_ms() + 30000;
	int refused_in_a_row = 0, refusals = 0;
	while (refused_in_a_row < 200 && now_ms() < end) {
		memcpy(data, &seq, sizeof seq);
		rc = sb__nats_pub(a, "sb.flood", NULL, NULL, 0, data, sizeof data);
		if (rc == SB_EOVERLOADED) {
			refusals++;
			refused_in_a_row++;
			pump((struct sb__nats *[]){a}, 1, 1);
		} else {
			CHECK_INT(rc, 0);
			if (rc != 0)
				break;
			seq++;
			refused_in_a_row = 0;
			sb__nats_process(a, POLLOUT, now_ms());
		}
		if (sb__nats_pending(a) > most)
			most = sb__nats_pending(a);
	}
	CHECK_INT(refused_in_a_row, 200);
	CHECK(!sb__nats_writable(a));
	CHECK(most <= OUT_MAX);
	CHECK(most > OUT_MAX - MSG - 64); /* it did fill up to the bound */
	struct sb__nats_stats st;
	sb__nats_stats(a, &st);
	CHECK(st.pending_peak <= OUT_MAX);
	CHECK_INT(st.refused, refusals);
	int writable_before = wa.writable;

	CHECK(kill(d.pid, SIGCONT) == 0);
	UNTIL(wa.writable > writable_before && g.n == seq, 30000, a, b);
	CHECK_INT(wa.writable, writable_before + 1);
	CHECK(sb__nats_writable(a));
	/* Nothing taken was lost, nothing came out of order. */
	CHECK_INT(g.n, seq);
	CHECK_INT(g.out_of_order, 0);
	memcpy(data, &seq, sizeof seq);
	CHECK_INT(sb__nats_pub(a, "sb.flood", NULL, NULL, 0, data, sizeof data), 0);
	seq++;
	UNTIL(g.n == seq, 10000, a, b);
	CHECK_INT(g.n, seq);
	CHECK_INT(wa.disconnected + wb.disconnected, 0);
	printf("     (%u messages of 16 KiB taken while stopped, %d refused; %zu bytes pending "
	       "at most)\n",
	       seq - 1, refusals, most);
	sb__nats_free(a);
	sb__nats_free(b);
	natsd_stop(&d);
}

/* A loop that polls the way a router's shard does: a multishot io_uring
 * poll fires when new bytes arrive, not while old ones wait (here epoll,
 * edge-triggered), so the connection must say when it stopped reading at
 * its bound with more in the socket. The subscriber reads one 64 KiB
 * recv() per process(); a message of 160 KiB is wholly in its socket
 * before it reads, and nothing comes after it: unless the connection
 * reads on by itself, the message's last bytes are never read. */
static void test_a_burst_past_the_read_bound_reaches_a_loop_woken_only_by_new_bytes(void)
{
	enum { MSG = 160 << 10 };
	static uint8_t data[MSG];
	struct natsd d = {0};
	struct watch wa, wb;
	struct got g = {0};
	struct sb__nats_cfg ca = {.ping_ms = 120000};
	struct sb__nats_cfg cb = {.ping_ms = 120000, .reads_max = 1};

	CHECK(natsd_start(&d, 1, 0) == 0);
	ca.servers = cb.servers = d.url;
	struct sb__nats *a = open_cfg(&ca, &wa), *b = open_cfg(&cb, &wb);
	UNTIL(sb__nats_ready(a) && sb__nats_ready(b), 10000, a, b);
	int64_t sid = sb__nats_sub(b, "sb.burst", NULL, count_in_order, &g);
	CHECK(sid > 0);
	{
		struct got probe = {0};
		CHECK(sb__nats_sub(b, "sb.burst.probe", NULL, keep, &probe) > 0);
		await_interest(a, b, "sb.burst.probe", &probe);
	}
	/* Room for the whole message in the subscriber's socket (the kernel
	 * doubles it; within the default net.core.rmem_max). */
	int fd = sb__nats_fd(b), rcvbuf = 192 << 10;
	CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) == 0);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN | EPOLLET};
	CHECK(ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0);

	CHECK_INT(sb__nats_pub(a, "sb.burst", NULL, NULL, 0, data, sizeof data), 0);
	char line[64];
	int avail = 0,
	    whole = snprintf(line, sizeof line, "MSG sb.burst %lld %d\r\n", (long long)sid, MSG) +
		    MSG + 2;
	uint64_t end = now_ms() + 10000;
	while (avail < whole && now_ms() < end) {
		pump((struct sb__nats *[]){a}, 1, 5);
		if (ioctl(fd, FIONREAD, &avail) != 0)
			break;
	}
	CHECK_INT(avail, whole); /* all of it is in the socket, nothing more will come */

	int more_seen = 0;
	end = now_ms() + 10000;
	while (g.n < 1 && now_ms() < end) {
		short rev = 0;
		if (sb__nats_more(b)) {
			more_seen = 1;
			rev = POLLIN;
		} else if (epoll_wait(ep, &ev, 1, 20) > 0) {
			rev = POLLIN;
		}
		sb__nats_process(b, rev, now_ms());
	}
	CHECK(more_seen); /* it stopped at its bound with more to read */
	CHECK_INT(g.n, 1);
	CHECK_INT(g.out_of_order, 0);
	CHECK_INT(wa.disconnected + wb.disconnected, 0);
	close(ep);
	sb__nats_free(a);
	sb__nats_free(b);
	natsd_stop(&d);
}

static void test_credentials_and_tls_are_presented_and_checked(void)
{
	struct natsd d = {0};
	struct watch w1, w2, w3;
	static const char *const userpass[] = {"--user", "sbr", "--pass", "s3cret", NULL};
	struct sb__nats_cfg bad = {.user = "sbr", .pass = "wrong", .backoff_min_ms = 200};
	struct sb__nats_cfg good = {.user = "sbr", .pass = "s3cret"};

	d.extra = userpass;
	CHECK(natsd_start(&d, 1, 0) == 0);
	bad.servers = good.servers = d.url;
	struct sb__nats *nb = open_cfg(&bad, &w1), *ng = open_cfg(&good, &w2);
	UNTIL(w1.errors > 0 && sb__nats_ready(ng), 10000, nb, ng);
	CHECK(strstr(w1.error, "Authorization Violation") != NULL);
	CHECK(!sb__nats_ready(nb));
	CHECK(sb__nats_ready(ng));
	sb__nats_free(nb);
	sb__nats_free(ng);
	natsd_stop(&d);

	static const char *const token[] = {"--auth", "t0ken", NULL};
	struct sb__nats_cfg tok = {.token = "t0ken"};
	d.extra = token;
	CHECK(natsd_start(&d, 1, 0) == 0);
	tok.servers = d.url;
	struct sb__nats *nt = open_cfg(&tok, &w3);
	UNTIL(sb__nats_ready(nt), 10000, nt);
	CHECK(sb__nats_ready(nt));
	sb__nats_free(nt);
	natsd_stop(&d);

	/* TLS after INFO, the server's certificate checked against the CA. */
	if (certs_make() != 0) {
		CHECK(!"certs_make");
		return;
	}
	const char *const tls[] = {"--tls",    "--tlscert",      at("server.pem"),
				   "--tlskey", at("server.key"), NULL};
	d.extra = tls;
	CHECK(natsd_start(&d, 1, 0) == 0);
	char url[80];
	snprintf(url, sizeof url, "tls://127.0.0.1:%u", d.port);
	struct sb__nats_cfg t_ok = {.servers = url, .tls_ca = at("ca.pem"), .echo = 1};
	struct sb__nats_cfg t_rogue = {.servers = url, .tls_ca = at("rogue-ca.pem")};
	struct sb__nats_cfg t_plain = {.servers = d.url};
	struct watch w4, w5, w6;
	struct got g = {0};
	struct sb__nats *ok = open_cfg(&t_ok, &w4), *rogue = open_cfg(&t_rogue, &w5),
			*plain = open_cfg(&t_plain, &w6);
	UNTIL(sb__nats_ready(ok) && strstr(sb__nats_last_error(rogue), "TLS") &&
		      strstr(sb__nats_last_error(plain), "requires TLS"),
	      10000, ok, rogue, plain);
	CHECK(sb__nats_ready(ok));
	CHECK(!sb__nats_ready(rogue));
	CHECK(strstr(sb__nats_last_error(rogue), "TLS") != NULL);
	CHECK(!sb__nats_ready(plain));
	CHECK(strstr(sb__nats_last_error(plain), "requires TLS") != NULL);
	CHECK(sb__nats_sub(ok, "sb.tls", NULL, keep, &g) > 0);
	await_interest(ok, ok, "sb.tls", &g); /* to itself, through the server */
	sb__nats_free(ok);
	sb__nats_free(rogue);
	sb__nats_free(plain);
	natsd_stop(&d);
	certs_remove();
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	watchdog("test_nats", 280);
	RUN(test_a_message_and_its_headers_arrive_as_published);
	RUN(test_a_queue_group_spreads_requests_and_a_plain_subscriber_sees_all);
	RUN(test_a_request_nobody_serves_ends_with_no_handler_not_a_timeout);
	RUN(test_a_killed_server_is_replaced_by_the_other_with_subscriptions_back);
	RUN(test_a_server_that_stops_answering_is_left_for_the_other_after_unanswered_pings);
	RUN(test_a_name_raced_from_two_routers_goes_to_exactly_one);
	RUN(test_a_stopped_server_stops_the_publisher_at_its_bound_and_resumes_it);
	RUN(test_a_burst_past_the_read_bound_reaches_a_loop_woken_only_by_new_bytes);
	RUN(test_room_kept_for_accepted_answers_refuses_other_publishes_until_given_back);
	RUN(test_credentials_and_tls_are_presented_and_checked);
	return TEST_EXIT();
}
