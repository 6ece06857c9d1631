/* Embedding: a program runs the router in-process, handles names with
 * callbacks on shard threads, and sends and requests by name itself, with
 * network services and clients on real sockets on the other side. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <switchboard/proto.h>
#include <switchboard/router.h>

#include "support/peer.h"
#include "support/router.h"

/* ---- in-process handlers ------------------------------------------------ */

/* "math.double": the payload is a positive fixint; the reply doubles it. */
static void math_double(struct sb_call *call, void *ud)
{
	size_t len;
	const uint8_t *p = sb_call_payload(call, &len);
	(void)ud;
	if (len != 1 || p[0] > 63) {
		sb_reply_error(call, SB_EINVAL, "need a fixint under 64", NULL, 0);
		return;
	}
	uint8_t twice = (uint8_t)(p[0] * 2);
	sb_reply(call, "doubled", &twice, 1);
}

/* "whose.device": answers with its header "device", "none" without one. */
static void whose_device(struct sb_call *call, void *ud)
{
	const struct sb_header *h;
	const char *dev = sb_call_header(call, "device");
	(void)ud;
	CHECK(sb_call_headers(call, &h) == 0 || strcmp(h[0].key, "device") == 0);
	sb_reply(call, dev != NULL ? dev : "none", NULL, 0);
}

/* "whose.trace": answers with its traceparent, "none" without one. */
static void whose_trace(struct sb_call *call, void *ud)
{
	const char *tp = sb_call_header(call, "traceparent");
	(void)ud;
	sb_reply(call, tp != NULL ? tp : "none", NULL, 0);
}

/* "trace.relay": asks whose.trace with itself as parent, and answers with
 * what that said, from the reply's callback. */
static void relay_answer(const struct sb_reply *rep, void *ud)
{
	if (rep->more == SB_MORE_NONE)
		sb_reply(ud, rep->err == 0 ? rep->outcome : "failed", NULL, 0);
}

static void trace_relay(struct sb_call *call, void *ud)
{
	struct sb_opts o = SB_OPTS_INIT;
	(void)ud;
	o.parent = call;
	if (sb_router_request(R, "whose.trace", NULL, 0, &o, relay_answer, call, NULL) != 0)
		sb_reply(call, "refused", NULL, 0);
}

/* "count.to": streams 100 chunks (fixints 0..99), then a final reply. */
static void count_to(struct sb_call *call, void *ud)
{
	(void)ud;
	for (uint8_t i = 0; i < 100; i++)
		sb_reply_more(call, SB_MORE_CHUNK, "count.chunk", &i, 1);
	sb_reply(call, "count.done", NULL, 0);
}

/* "forgetful": returns without answering and never answers: the request
 * ends with its timeout, and the router frees the call when it is freed. */
static void forgetful(struct sb_call *call, void *ud)
{
	(void)call;
	(void)ud;
}

/* "job.later": keeps the call for the test's thread to answer after the
 * callback has returned; notes who sent it. */
static struct later {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct sb_call *call;
	uint8_t arg;
	char peer[32], role[16];
} later = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0, "", ""};

static void job_later(struct sb_call *call, void *ud)
{
	size_t len;
	const uint8_t *p = sb_call_payload(call, &len);
	(void)ud;
	pthread_mutex_lock(&later.lock);
	later.arg = len == 1 ? p[0] : 0xff;
	snprintf(later.peer, sizeof later.peer, "%s",
		 sb_call_peer(call) != NULL ? sb_call_peer(call) : "(none)");
	snprintf(later.role, sizeof later.role, "%s",
		 sb_call_role(call) != NULL ? sb_call_role(call) : "(none)");
	CHECK(sb_call_client(call) == NULL);
	later.call = call;
	pthread_cond_broadcast(&later.cond);
	pthread_mutex_unlock(&later.lock);
}

/* The call job.later kept (5 s at most), taken from the slot. */
static struct sb_call *later_take(void)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 5;
	pthread_mutex_lock(&later.lock);
	while (later.call == NULL)
		if (pthread_cond_timedwait(&later.cond, &later.lock, &until) != 0)
			break;
	struct sb_call *call = later.call;
	later.call = NULL;
	pthread_mutex_unlock(&later.lock);
	CHECK(call != NULL);
	return call;
}

/* "job.never": never answers, but hears of the end through on_cancel. */
static _Atomic int never_calls, never_cancels;

static void on_never_cancel(struct sb_call *call, void *ud)
{
	(void)ud;
	CHECK(sb_call_cancelled(call));
	CHECK_STR(sb_call_name(call), "job.never");
	atomic_fetch_add(&never_cancels, 1);
}

static void job_never(struct sb_call *call, void *ud)
{
	(void)ud;
	CHECK(!sb_call_cancelled(call));
	sb_call_on_cancel(call, on_never_cancel, NULL);
	atomic_fetch_add(&never_calls, 1);
}

static _Atomic int audit_sends;
static _Atomic uint32_t audit_from;

static void audit(struct sb_call *call, void *ud)
{
	(void)ud;
	if (!sb_call_is_request(call)) {
		atomic_store(&audit_from, sb_call_from(call));
		atomic_fetch_add(&audit_sends, 1);
	}
}

/* "kv.put" {"key": str, "value": any}: registered with that schema, so it
 * only ever sees arguments that fit it. */
static const uint8_t KV_SCHEMA[] = {0x82, 0xa4, 'k',  'e', 'y', 's', 0x81, 0xa3, 'k',  'e',  'y',
				    0x81, 0xa4, 't',  'y', 'p', 'e', 0xa3, 's',  't',  'r',  0xa8,
				    'r',  'e',  'q',  'u', 'i', 'r', 'e',  'd',  0x92, 0xa3, 'k',
				    'e',  'y',  0xa5, 'v', 'a', 'l', 'u',  'e'};
static _Atomic int kv_calls;

static void kv_put(struct sb_call *call, void *ud)
{
	(void)ud;
	atomic_fetch_add(&kv_calls, 1);
	if (sb_call_is_request(call))
		sb_reply(call, "stored", NULL, 0);
}

/* "vault.open": internal, for services and the program only. */
static void vault_open(struct sb_call *call, void *ud)
{
	(void)ud;
	sb_reply(call, "opened", NULL, 0);
}

/* ---- waiting for callbacks that run on shard threads --------------------- */

#define MAX_REPLIES 256

struct waiter {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int calls, finals; /* callback invocations, and terminal ones */
	int err[MAX_REPLIES];
	char outcome[MAX_REPLIES][32];
	uint8_t first_byte[MAX_REPLIES];
	enum sb_more more[MAX_REPLIES];
	char peer[MAX_REPLIES][24]; /* "" for none */
	uint64_t req[MAX_REPLIES];
	char app_code[MAX_REPLIES][24]; /* "" for none */
};

static void waiter_init(struct waiter *w)
{
	memset(w, 0, sizeof *w);
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
}

static void on_reply(const struct sb_reply *rep, void *ud)
{
	struct waiter *w = ud;
	pthread_mutex_lock(&w->lock);
	if (w->calls < MAX_REPLIES) {
		w->err[w->calls] = rep->err;
		snprintf(w->outcome[w->calls], sizeof w->outcome[0], "%.*s", (int)rep->outcome_len,
			 rep->outcome != NULL ? rep->outcome : "");
		w->first_byte[w->calls] = rep->len > 0 ? *(const uint8_t *)rep->payload : 0xff;
		w->more[w->calls] = rep->more;
		snprintf(w->peer[w->calls], sizeof w->peer[0], "%s",
			 rep->peer != NULL ? rep->peer : "");
		w->req[w->calls] = rep->req;
		snprintf(w->app_code[w->calls], sizeof w->app_code[0], "%s",
			 rep->app_code != NULL ? rep->app_code : "");
	}
	w->calls++;
	if (rep->more == SB_MORE_NONE)
		w->finals++;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

/* Waits (5 s at most) for the request's terminal callback. */
static int wait_final(struct waiter *w)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 5;
	pthread_mutex_lock(&w->lock);
	while (w->finals == 0)
		if (pthread_cond_timedwait(&w->cond, &w->lock, &until) != 0)
			break;
	int ok = w->finals > 0;
	pthread_mutex_unlock(&w->lock);
	return ok;
}

/* The test router with this program's in-process handlers, registered
 * before it starts (the only time a program may). */
static void start_embedded(void)
{
	struct sb_router *r = router_new(NULL);
	CHECK_INT(sb_router_handle(r, "math.double", NULL, math_double, NULL), 0);
	CHECK_INT(sb_router_handle(r, "count.to", NULL, count_to, NULL), 0);
	CHECK_INT(sb_router_handle(r, "whose.device", NULL, whose_device, NULL), 0);
	CHECK_INT(sb_router_handle(r, "whose.trace", NULL, whose_trace, NULL), 0);
	CHECK_INT(sb_router_handle(r, "trace.relay", NULL, trace_relay, NULL), 0);
	CHECK_INT(sb_router_handle(r, "forgetful", NULL, forgetful, NULL), 0);
	CHECK_INT(sb_router_handle(r, "job.later", NULL, job_later, NULL), 0);
	CHECK_INT(sb_router_handle(r, "job.never", NULL, job_never, NULL), 0);
	CHECK_INT(sb_router_handle(r, "audit.log", NULL, audit, NULL), 0);
	CHECK_INT(sb_router_handle(r, "kv.put",
				   &(struct sb_handler_opts){.size = sizeof(struct sb_handler_opts),
							     .schema = KV_SCHEMA,
							     .schema_len = sizeof KV_SCHEMA},
				   kv_put, NULL),
		  0);
	CHECK_INT(sb_router_handle(r, "vault.open",
				   &(struct sb_handler_opts){.size = sizeof(struct sb_handler_opts),
							     .flags = SB_HANDLER_INTERNAL},
				   vault_open, NULL),
		  0);
	CHECK_INT(sb_router_handle(r, "$sb.routes", NULL, audit, NULL), SB_EINVAL);
	CHECK_INT(sb_router_handle(r, "bad name", NULL, audit, NULL), SB_EINVAL);
	router_start_with(r);
}

/* ---- tests -------------------------------------------------------------- */

static void test_network_client_calls_an_in_process_handler(void)
{
	start_embedded();
	struct peer *cli = peer_hello(PORT, "calc-user", "client");
	uint8_t seven = 7;
	peer_request(cli, "math.double", 1, 0, &seven, 1);
	struct sb_msg *r = peer_expect(cli, SB_REPLY);
	CHECK(r->id == 1 && v_is(r->outcome, "doubled"));
	CHECK(r->payload.len == 1 && r->payload.ptr[0] == 14);

	uint8_t big = 100; /* the handler's own error reaches the requester */
	peer_request(cli, "math.double", 2, 0, &big, 1);
	struct sb_msg *e = peer_expect(cli, SB_ERROR);
	CHECK(e->id == 2 && e->code == (uint32_t)-SB_EINVAL);
	CHECK(v_is(e->text, "need a fixint under 64"));
	peer_close(cli);
	router_stop();
}

static void test_in_process_stream_reaches_a_network_client_in_order(void)
{
	start_embedded();
	struct peer *cli = peer_hello(PORT, "counter-user", "client");
	peer_request(cli, "count.to", 3, 0, NULL, 0);
	for (int i = 0; i < 100; i++) {
		struct sb_msg *r = peer_expect(cli, SB_REPLY);
		CHECK(r->flags == (SB_F_MORE | SB_F_CHUNK) && r->payload.ptr[0] == i);
	}
	CHECK(v_is(peer_expect(cli, SB_REPLY)->outcome, "count.done"));
	peer_close(cli);
	router_stop();
}

/* A request is answered when the handler is ready, from any thread: here
 * the test's own, after the callback has returned (the PONG to a PING sent
 * after the request proves the shard is past it). */
static void test_in_process_handler_answers_later_from_another_thread(void)
{
	start_embedded();
	struct peer *cli = peer_hello(PORT, "later-user", "client");
	uint8_t arg = 21, twice;
	peer_request(cli, "job.later", 1, 0, &arg, 1);
	struct sb_msg ping = {.kind = SB_PING, .id = 9};
	peer_send(cli, &ping);
	peer_expect(cli, SB_PONG);
	struct sb_call *call = later_take();
	CHECK_STR(later.peer, "later-user"); /* who asked, as the router knows it */
	CHECK_STR(later.role, "client");
	twice = (uint8_t)(later.arg * 2);
	CHECK_INT(sb_reply(call, "done later", &twice, 1), 0);
	struct sb_msg *r = peer_expect(cli, SB_REPLY);
	CHECK(r->id == 1 && v_is(r->outcome, "done later"));
	CHECK(r->payload.len == 1 && r->payload.ptr[0] == 42);

	/* An error with details, the same way. */
	peer_request(cli, "job.later", 2, 0, &arg, 1);
	call = later_take();
	static const uint8_t details[] = {0x81, 0xa5, 'l', 'i', 'm', 'i', 't', 10};
	CHECK_INT(sb_reply_error(call, SB_EINVAL, "over the limit", details, sizeof details), 0);
	struct sb_msg *e = peer_expect(cli, SB_ERROR);
	CHECK(e->id == 2 && e->code == (uint32_t)-SB_EINVAL && v_is(e->text, "over the limit"));
	CHECK(e->payload.len == sizeof details &&
	      memcmp(e->payload.ptr, details, sizeof details) == 0);

	/* The program's own request: no sender to name, the answer by callback. */
	struct waiter w;
	waiter_init(&w);
	CHECK_INT(sb_router_request(R, "job.later", &arg, 1, NULL, on_reply, &w, NULL), 0);
	call = later_take();
	CHECK_STR(later.peer, "(none)");
	CHECK_INT(sb_call_from(call), 0);
	CHECK_INT(sb_reply_error(call, SB_EINVAL, "over the limit", details, sizeof details), 0);
	CHECK(wait_final(&w));
	CHECK_INT(w.err[0], SB_EINVAL);
	CHECK_STR(w.outcome[0], "over the limit");
	CHECK_INT(w.first_byte[0], 0x81); /* the details, as the payload */
	peer_close(cli);
	router_stop();
}

/* A stream produced by another thread arrives whole and in order. */
static void test_in_process_stream_from_another_thread(void)
{
	start_embedded();
	struct peer *cli = peer_hello(PORT, "stream-user", "client");
	peer_request(cli, "job.later", 3, 0, NULL, 0);
	struct sb_call *call = later_take();
	for (uint8_t i = 0; i < 50; i++)
		CHECK_INT(sb_reply_more(call, SB_MORE_CHUNK, "job.chunk", &i, 1), 0);
	CHECK_INT(sb_reply_more(call, SB_MORE_RESULT, "job.chunk", NULL, 0), SB_EINVAL);
	CHECK_INT(sb_reply(call, "job.done", NULL, 0), 0);
	for (int i = 0; i < 50; i++) {
		struct sb_msg *r = peer_expect(cli, SB_REPLY);
		CHECK(r->id == 3 && r->flags == (SB_F_MORE | SB_F_CHUNK));
		if (r->payload.len != 1 || r->payload.ptr[0] != i) {
			CHECK_INT(r->payload.ptr[0], i);
			break;
		}
	}
	CHECK(v_is(peer_expect(cli, SB_REPLY)->outcome, "job.done"));
	peer_close(cli);
	router_stop();
}

/* Nobody answers: the request ends with its timeout, as a network one
 * would, and a handler with on_cancel hears of it. */
static void test_in_process_request_never_answered_ends_with_its_timeout(void)
{
	start_embedded();
	struct peer *cli = peer_hello(PORT, "hopeful", "client");
	peer_request(cli, "forgetful", 4, 100, NULL, 0);
	struct sb_msg *e = peer_expect(cli, SB_ERROR);
	CHECK(e->id == 4 && e->code == (uint32_t)-SB_ETIMEOUT);

	atomic_store(&never_cancels, 0);
	peer_request(cli, "job.never", 5, 100, NULL, 0);
	e = peer_expect(cli, SB_ERROR);
	CHECK(e->id == 5 && e->code == (uint32_t)-SB_ETIMEOUT);
	for (int i = 0; i < 5000 && atomic_load(&never_cancels) == 0; i++) {
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
	CHECK_INT(atomic_load(&never_cancels), 1);

	/* The program's request too: SB_ETIMEOUT by callback. */
	struct waiter w;
	waiter_init(&w);
	struct sb_opts o = SB_OPTS_INIT;
	o.timeout_ms = 100;
	CHECK_INT(sb_router_request(R, "forgetful", NULL, 0, &o, on_reply, &w, NULL), 0);
	CHECK(wait_final(&w));
	CHECK_INT(w.err[0], SB_ETIMEOUT);

	/* The program cancels its own request: the handler's on_cancel runs,
	 * the callback ends once with SB_ECANCELLED. */
	struct waiter cw;
	waiter_init(&cw);
	uint64_t id = 0;
	atomic_store(&never_calls, 0);
	atomic_store(&never_cancels, 0);
	CHECK_INT(sb_router_request(R, "job.never", NULL, 0, NULL, on_reply, &cw, &id), 0);
	for (int i = 0; i < 5000 && atomic_load(&never_calls) == 0; i++) {
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
	CHECK_INT(atomic_load(&never_calls), 1);
	CHECK_INT(sb_router_cancel(R, id), 0);
	CHECK(wait_final(&cw));
	CHECK_INT(cw.err[0], SB_ECANCELLED);
	for (int i = 0; i < 5000 && atomic_load(&never_cancels) == 0; i++) {
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
	CHECK_INT(atomic_load(&never_cancels), 1);
	peer_close(cli);
	router_stop(); /* frees the forgetful handler's calls: no leak under ASan */
}

static void test_network_send_reaches_an_in_process_handler(void)
{
	start_embedded();
	struct peer *cli = peer_hello(PORT, "auditor", "client");
	struct sb_msg m = {.kind = SB_SEND, .name = v_str("audit.log")};
	peer_send(cli, &m);
	/* A send has no reply: a ping after it proves it was routed. */
	struct sb_msg ping = {.kind = SB_PING, .id = 9};
	peer_send(cli, &ping);
	peer_expect(cli, SB_PONG);
	for (int i = 0; i < 5000 && atomic_load(&audit_sends) == 0; i++) {
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
	CHECK_INT(atomic_load(&audit_sends), 1);
	CHECK_INT(atomic_load(&audit_from), cli->peer_id);
	peer_close(cli);
	router_stop();
}

static void test_program_requests_a_network_service(void)
{
	start_embedded();
	struct peer *svc = peer_hello(PORT, "inventory", "service");
	peer_register(svc, "stock.check", 1);
	struct waiter w;
	waiter_init(&w);
	uint8_t item = 42;
	CHECK_INT(sb_router_request(R, "stock.check", &item, 1, NULL, on_reply, &w, NULL), 0);

	struct sb_msg *req = peer_expect(svc, SB_REQUEST);
	CHECK_INT(req->from, 0); /* in-process senders have no peer id */
	CHECK(req->payload.len == 1 && req->payload.ptr[0] == 42);
	uint64_t rid = req->id;
	uint8_t pct = 50, count = 3;
	peer_reply(svc, rid, "stock.checking", SB_F_MORE, &pct, 1);
	peer_reply(svc, rid, "in stock", 0, &count, 1);
	CHECK(wait_final(&w));
	CHECK_INT(w.calls, 2);
	CHECK_INT(w.finals, 1);
	CHECK_STR(w.outcome[0], "stock.checking");
	CHECK_STR(w.outcome[1], "in stock");
	CHECK(w.err[1] == 0 && w.first_byte[1] == 3);
	peer_close(svc);
	router_stop();
}

/* A network handler's application error reaches the program whole; one
 * whose code and flag disagree is the handler's bad frame: its connection
 * is closed and the request ends with peer gone, never as an application
 * error. */
static void test_program_reads_a_network_handlers_application_error(void)
{
	start_embedded();
	struct peer *svc = peer_hello(PORT, "cards", "service");
	peer_register(svc, "charge", 1);
	struct waiter w, w2;
	waiter_init(&w);
	waiter_init(&w2);
	CHECK_INT(sb_router_request(R, "charge", NULL, 0, NULL, on_reply, &w, NULL), 0);
	struct sb_msg *req = peer_expect(svc, SB_REQUEST);
	struct sb_msg e = {.kind = SB_ERROR,
			   .flags = SB_F_APP,
			   .id = req->id,
			   .code = (uint32_t)-SB_EAPP,
			   .text = {(const uint8_t *)"declined", 8},
			   .app_code = {(const uint8_t *)"CARD_DECLINED", 13},
			   .payload = {(const uint8_t *)"\x07", 1}};
	peer_send(svc, &e);
	CHECK(wait_final(&w));
	CHECK_INT(w.err[0], SB_EAPP);
	CHECK_STR(w.app_code[0], "CARD_DECLINED");
	CHECK_STR(w.outcome[0], "declined");
	CHECK_INT(w.first_byte[0], 7);

	CHECK_INT(sb_router_request(R, "charge", NULL, 0, NULL, on_reply, &w2, NULL), 0);
	req = peer_expect(svc, SB_REQUEST);
	static const uint8_t bad[] = {0, 0, 0, 0x13, 0x98, 0x0b, 0x04, 0xcf, 0,    0,   0,   0,
				      0, 0, 0, 0,    0x02, 0xa1, 'x',  0xc0, 0xa1, 'E', 0xc0};
	uint8_t f[sizeof bad];
	memcpy(f, bad, sizeof f);
	sb_patch_id(f, req->id); /* code 2 with APP */
	peer_raw(svc, f, sizeof f);
	struct sb_msg *m = peer_expect(svc, SB_ERROR);
	CHECK_INT(m->code, (uint32_t)-SB_EBADFRAME);
	CHECK(m->flags & SB_F_FATAL);
	CHECK(wait_final(&w2));
	CHECK_INT(w2.err[0], SB_EPEERGONE);
	CHECK_STR(w2.app_code[0], "");
	peer_close(svc);
	router_stop();
}

static void test_program_requests_an_in_process_handler(void)
{
	start_embedded();
	struct waiter w;
	waiter_init(&w);
	uint8_t five = 5;
	CHECK_INT(sb_router_request(R, "math.double", &five, 1, NULL, on_reply, &w, NULL), 0);
	CHECK(wait_final(&w));
	CHECK_INT(w.calls, 1);
	CHECK_STR(w.outcome[0], "doubled");
	CHECK_INT(w.first_byte[0], 10);
	router_stop();
}

/* An in-process handler reads the headers of a network request and of
 * the program's own. */
static void test_in_process_handler_reads_headers(void)
{
	start_embedded();
	uint8_t map[SB_HEADERS_MAX];
	struct sb_header h[] = {{"device", "kitchen sensor"}};
	long hn = sb_headers_encode(h, 1, map, sizeof map);
	struct peer *cli = peer_hello(PORT, "hd-user", "client");
	struct sb_msg rq = {.kind = SB_REQUEST,
			    .flags = SB_F_HEADERS,
			    .id = 1,
			    .name = v_str("whose.device"),
			    .headers = {map, (uint32_t)hn}};
	peer_send(cli, &rq);
	CHECK(v_is(peer_expect(cli, SB_REPLY)->outcome, "kitchen sensor"));
	peer_request(cli, "whose.device", 2, 0, NULL, 0);
	CHECK(v_is(peer_expect(cli, SB_REPLY)->outcome, "none"));
	peer_close(cli);

	struct waiter w;
	waiter_init(&w);
	struct sb_opts o = SB_OPTS_INIT;
	o.headers = h;
	o.nheaders = 1;
	CHECK_INT(sb_router_request(R, "whose.device", NULL, 0, &o, on_reply, &w, NULL), 0);
	CHECK(wait_final(&w));
	CHECK_STR(w.outcome[0], "kitchen sensor");

	/* An in-process handler's chained request names its parent: the
	 * traceparent goes on. */
	static const char tp[] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
	struct sb_header th[] = {{"traceparent", tp}};
	o.headers = th;
	waiter_init(&w);
	CHECK_INT(sb_router_request(R, "trace.relay", NULL, 0, &o, on_reply, &w, NULL), 0);
	CHECK(wait_final(&w));
	CHECK(strncmp(w.outcome[0], tp, sizeof w.outcome[0] - 1) == 0); /* as much as it keeps */
	waiter_init(&w);
	CHECK_INT(sb_router_request(R, "trace.relay", NULL, 0, NULL, on_reply, &w, NULL), 0);
	CHECK(wait_final(&w));
	CHECK_STR(w.outcome[0], "none");
	router_stop();
}

/* The router's own names answer the program too: $sb.stats is a map
 * (0x8X..0xdf), not an error; a $sb. name it does not serve is. */
static void test_program_reads_router_stats(void)
{
	start_embedded();
	struct waiter w, none;
	waiter_init(&w);
	waiter_init(&none);
	CHECK_INT(sb_router_request(R, "$sb.stats", NULL, 0, NULL, on_reply, &w, NULL), 0);
	CHECK(wait_final(&w));
	CHECK_INT(w.calls, 1);
	CHECK_INT(w.err[0], 0);
	CHECK_STR(w.outcome[0], "ok");
	CHECK(w.first_byte[0] == 0xde || (w.first_byte[0] & 0xf0) == 0x80); /* a map */
	CHECK_INT(sb_router_request(R, "$sb.nothing", NULL, 0, NULL, on_reply, &none, NULL), 0);
	CHECK(wait_final(&none));
	CHECK_INT(none.err[0], SB_ENOHANDLER);
	router_stop();
}

static void test_program_request_errors(void)
{
	start_embedded();
	struct waiter none, slow;
	waiter_init(&none);
	waiter_init(&slow);
	CHECK_INT(sb_router_request(R, "nobody.home", NULL, 0, NULL, on_reply, &none, NULL), 0);
	CHECK(wait_final(&none));
	CHECK_INT(none.calls, 1);
	CHECK_INT(none.err[0], SB_ENOHANDLER);

	struct peer *svc = peer_hello(PORT, "sleepy", "service");
	peer_register(svc, "report.slow", 1);
	CHECK_INT(sb_router_request(
			  R, "report.slow", NULL, 0,
			  &(struct sb_opts){.size = sizeof(struct sb_opts), .timeout_ms = 50},
			  on_reply, &slow, NULL),
		  0);
	peer_expect(svc, SB_REQUEST);
	CHECK(wait_final(&slow));
	CHECK_INT(slow.calls, 1);
	CHECK_INT(slow.err[0], SB_ETIMEOUT);
	CHECK_INT(peer_expect(svc, SB_CANCEL)->kind, SB_CANCEL);
	peer_close(svc);

	/* Bad arguments are refused at the call, and no callback follows. */
	static const uint8_t garbage[] = {0x92, 0x01}; /* array of 2, one element */
	CHECK_INT(sb_router_request(R, "math.double", garbage, 2, NULL, on_reply, &none, NULL),
		  SB_EINVAL);
	CHECK_INT(sb_router_request(R, "has space", NULL, 0, NULL, on_reply, &none, NULL),
		  SB_EINVAL);
	CHECK_INT(sb_router_request(R, "math.double", NULL, 0, NULL, NULL, NULL, NULL), SB_EINVAL);
	CHECK_INT(sb_router_handle(R, "too.late", NULL, forgetful, NULL), SB_EINVAL);
	router_stop();
}

static void test_program_sends_to_a_network_service(void)
{
	start_embedded();
	struct peer *svc = peer_hello(PORT, "mailer", "service");
	peer_register(svc, "mail.send", 1);
	static const uint8_t hello[] = {0xa5, 'h', 'e', 'l', 'l', 'o'};
	CHECK_INT(sb_router_send(R, "mail.send", hello, sizeof hello, NULL), 0);
	struct sb_msg *m = peer_expect(svc, SB_SEND);
	CHECK(v_is(m->name, "mail.send"));
	CHECK(m->payload.len == sizeof hello && memcmp(m->payload.ptr, hello, sizeof hello) == 0);
	/* The program is no peer: `from` 0, and no identity event before it. */
	CHECK_INT(m->from, 0);
	CHECK_INT(svc->identities, 0);
	peer_close(svc);
	router_stop();
}

/* The program can do what a client can: ask the peer of a name, ask every
 * handler at once (each result names its handler), and cancel. */
static void test_program_requests_a_named_peer_every_handler_and_cancels(void)
{
	start_embedded();
	struct peer *a = peer_hello(PORT, "doubler-a", "service");
	peer_register(a, "math.double", 1);
	struct peer *b = peer_hello(PORT, "doubler-b", "service");
	peer_register(b, "math.double", 1);
	uint8_t seven = 7, fourteen = 14;
	struct sb_opts o = SB_OPTS_INIT;

	/* `to`: that peer, never the in-process handler of the same name. */
	struct waiter w;
	waiter_init(&w);
	o.to = "doubler-b";
	uint64_t id = 0;
	CHECK_INT(sb_router_request(R, "math.double", &seven, 1, &o, on_reply, &w, &id), 0);
	CHECK(id != 0);
	struct sb_msg *q = peer_expect(b, SB_REQUEST);
	peer_reply(b, q->id, "doubled by b", 0, &fourteen, 1);
	CHECK(wait_final(&w));
	CHECK_INT(w.calls, 1);
	CHECK_STR(w.outcome[0], "doubled by b");
	CHECK(w.req[0] == id && w.more[0] == SB_MORE_NONE);
	struct waiter ghost;
	waiter_init(&ghost);
	o.to = "ghost";
	CHECK_INT(sb_router_request(R, "math.double", &seven, 1, &o, on_reply, &ghost, NULL), 0);
	CHECK(wait_final(&ghost));
	CHECK_INT(ghost.err[0], SB_EUNKNOWNPEER);

	/* Every handler: the in-process one and both services. */
	struct waiter all;
	waiter_init(&all);
	o.to = NULL;
	o.flags = SB_OPT_ALL;
	CHECK_INT(sb_router_request(R, "math.double", &seven, 1, &o, on_reply, &all, NULL), 0);
	q = peer_expect(a, SB_REQUEST);
	peer_reply(a, q->id, "doubled", 0, &fourteen, 1);
	q = peer_expect(b, SB_REQUEST);
	peer_reply(b, q->id, "doubled", 0, &fourteen, 1);
	CHECK(wait_final(&all));
	CHECK_INT(all.calls, 4);
	int seen = 0;
	for (int i = 0; i < 3; i++) {
		CHECK_INT(all.more[i], SB_MORE_RESULT);
		CHECK(all.err[i] == 0 && all.first_byte[i] == 14);
		seen |= strcmp(all.peer[i], "(in-process)") == 0 ? 1
			: strcmp(all.peer[i], "doubler-a") == 0  ? 2
			: strcmp(all.peer[i], "doubler-b") == 0  ? 4
								 : 0;
	}
	CHECK_INT(seen, 7);
	CHECK(all.more[3] == SB_MORE_NONE && all.peer[3][0] == 0);
	CHECK_STR(all.outcome[3], "$sb.all");

	/* A send to every handler reaches both services. */
	CHECK_INT(sb_router_send(R, "math.double", &seven, 1, &o), 0);
	CHECK(peer_expect(a, SB_SEND)->payload.ptr[0] == 7);
	CHECK(peer_expect(b, SB_SEND)->payload.ptr[0] == 7);
	o.to = "doubler-a"; /* one peer or all, not both */
	CHECK_INT(sb_router_send(R, "math.double", &seven, 1, &o), SB_EINVAL);

	/* Cancel: the handler hears of it, the callback ends with SB_ECANCELLED. */
	struct waiter cw;
	waiter_init(&cw);
	o.flags = 0;
	CHECK_INT(sb_router_request(R, "math.double", &seven, 1, &o, on_reply, &cw, &id), 0);
	q = peer_expect(a, SB_REQUEST);
	uint64_t rid = q->id;
	CHECK_INT(sb_router_cancel(R, id), 0);
	CHECK(peer_expect(a, SB_CANCEL)->id == rid);
	CHECK(wait_final(&cw));
	CHECK_INT(cw.calls, 1);
	CHECK_INT(cw.err[0], SB_ECANCELLED);
	peer_reply(a, rid, "too late", 0, &fourteen, 1); /* crossed the cancel: dropped */
	CHECK_INT(sb_router_cancel(R, 0), SB_EINVAL);
	CHECK_INT(sb_router_cancel(R, id + 1000), SB_EINVAL);
	peer_close(a);
	peer_close(b);
	router_stop(); /* joins the shards: any late callback has run by now */
	CHECK_INT(cw.calls, 1);
}

/* A broadcast reaches in-process handlers too, which answer inside the
 * fan-out: their results carry the peer "(in-process)", and the aggregate
 * waits for the network handlers. */
static void test_broadcast_over_in_process_and_network_handlers(void)
{
	start_embedded();
	struct peer *svc = peer_hello(PORT, "doubler", "service");
	peer_register(svc, "math.double", 1);
	struct peer *cli = peer_hello(PORT, "bc-user", "client");
	uint8_t seven = 7;
	struct sb_msg m = {.kind = SB_REQUEST, .id = 5, .flags = SB_F_BROADCAST};
	m.name = v_str("math.double");
	m.payload = (struct sb_view){&seven, 1};
	peer_send(cli, &m);
	struct sb_msg *r = peer_expect(cli, SB_REPLY); /* in-process: answered at once */
	CHECK(v_is(r->peer, "(in-process)") && (r->flags & SB_F_MORE));
	CHECK(r->payload.len == 1 && r->payload.ptr[0] == 14);
	struct sb_msg *q = peer_expect(svc, SB_REQUEST);
	peer_reply(svc, q->id, "doubled", 0, q->payload.ptr, q->payload.len);
	r = peer_expect(cli, SB_REPLY);
	CHECK(v_is(r->peer, "doubler") && (r->flags & SB_F_MORE));
	r = peer_expect(cli, SB_REPLY);
	CHECK(v_is(r->outcome, "$sb.all") && r->flags == 0);
	static const uint8_t counts[] = {0x85, 0xa5, 'p',  'e',  'e', 'r', 's', 2,   0xa2,
					 'o',  'k',  2,    0xa6, 'e', 'r', 'r', 'o', 'r',
					 's',  0,    0xa8, 't',  'i', 'm', 'e', 'o', 'u',
					 't',  's',  0,    0xa4, 'g', 'o', 'n', 'e', 0};
	CHECK(r->payload.len == sizeof counts &&
	      memcmp(r->payload.ptr, counts, sizeof counts) == 0);

	/* Only in-process handlers: every answer comes inside the fan-out,
	 * stream chunks first, and the aggregate still comes last. */
	m.id = 6;
	m.name = v_str("count.to");
	peer_send(cli, &m);
	for (int i = 0; i < 100; i++) {
		r = peer_expect(cli, SB_REPLY);
		CHECK(r->flags == (SB_F_MORE | SB_F_CHUNK) && v_is(r->peer, "(in-process)"));
		if (r->payload.len != 1 || r->payload.ptr[0] != i) {
			CHECK_INT(r->payload.ptr[0], i);
			break;
		}
	}
	r = peer_expect(cli, SB_REPLY);
	CHECK(v_is(r->outcome, "count.done") && r->flags == SB_F_MORE);
	r = peer_expect(cli, SB_REPLY);
	CHECK(v_is(r->outcome, "$sb.all") && r->flags == 0 && r->id == 6);

	/* A forgetful in-process handler is a timeout result, not a hang. */
	m.id = 7;
	m.name = v_str("forgetful");
	m.timeout_ms = 100;
	peer_send(cli, &m);
	struct sb_msg *e = peer_expect(cli, SB_ERROR);
	CHECK(e->code == (uint32_t)-SB_ETIMEOUT && (e->flags & SB_F_MORE));
	r = peer_expect(cli, SB_REPLY);
	CHECK(v_is(r->outcome, "$sb.all") && r->id == 7);
	peer_close(cli);
	peer_close(svc);
	router_stop();
}

static void test_in_process_handler_with_a_schema(void)
{
	start_embedded();
	static const uint8_t good[] = {0x82, 0xa3, 'k', 'e', 'y', 0xa1, 'a',
				       0xa5, 'v',  'a', 'l', 'u', 'e',  0x01};
	static const uint8_t int_key[] = {0x82, 0xa3, 'k', 'e', 'y', 0x07, 0xa5,
					  'v',  'a',  'l', 'u', 'e', 0x01};
	static const uint8_t no_value[] = {0x81, 0xa3, 'k', 'e', 'y', 0xa1, 'a'};
	struct peer *cli = peer_hello(PORT, "kv-user", "client");
	int before = atomic_load(&kv_calls);

	peer_request(cli, "kv.put", 1, 0, int_key, sizeof int_key);
	struct sb_msg *e = peer_expect(cli, SB_ERROR);
	CHECK_INT(e->code, -SB_EINVAL);
	CHECK(v_is(e->text, "key \"key\": expected str, got uint"));
	peer_request(cli, "kv.put", 2, 0, good, sizeof good);
	CHECK(v_is(peer_expect(cli, SB_REPLY)->outcome, "stored"));

	/* The program's own requests are checked the same way. */
	struct waiter w, ok;
	waiter_init(&w);
	waiter_init(&ok);
	CHECK_INT(
		sb_router_request(R, "kv.put", no_value, sizeof no_value, NULL, on_reply, &w, NULL),
		0);
	CHECK(wait_final(&w));
	CHECK_INT(w.err[0], SB_EINVAL);
	CHECK_STR(w.outcome[0], "missing required key \"value\"");
	CHECK_INT(sb_router_request(R, "kv.put", good, sizeof good, NULL, on_reply, &ok, NULL), 0);
	CHECK(wait_final(&ok));
	CHECK_STR(ok.outcome[0], "stored");
	CHECK_INT(atomic_load(&kv_calls), before + 2);
	peer_close(cli);

	/* A bad schema is refused before the router starts. */
	static const uint8_t bad[] = {0x81, 0xa8, 'r', 'e', 'q', 'u', 'i', 'r', 'e', 'd', 0x01};
	struct sb_router_config cfg;
	int err;
	sb_router_config_init(&cfg);
	cfg.port = 0;
	struct sb_router *r2 = sb_router_new(&cfg, &err);
	CHECK_INT(sb_router_handle(r2, "kv.put",
				   &(struct sb_handler_opts){.size = sizeof(struct sb_handler_opts),
							     .schema = bad,
							     .schema_len = sizeof bad},
				   kv_put, NULL),
		  SB_EINVAL);
	CHECK_INT(sb_router_handle(r2, "kv.put",
				   &(struct sb_handler_opts){.size = sizeof(struct sb_handler_opts),
							     .schema = KV_SCHEMA,
							     .schema_len = sizeof KV_SCHEMA},
				   kv_put, NULL),
		  0);
	sb_router_free(r2); /* never started: frees the schema it holds */
	router_stop();
}

/* The program writes its handler's schema as JSON Schema text: network
 * clients and the program's own requests get the path of what is wrong. */
static void test_in_process_handler_with_a_json_schema(void)
{
	static const char json[] =
		"{\"type\": \"object\", \"required\": [\"key\", \"value\"],"
		" \"properties\": {\"key\": {\"type\": \"string\", \"minLength\": 1},"
		"  \"value\": {\"type\": \"object\", \"required\": [\"n\"],"
		"   \"properties\": {\"n\": {\"type\": \"integer\"}}}}}";
	void *schema;
	size_t len;
	char why[128];
	CHECK_INT(sb_schema_from_json(json, strlen(json), &schema, &len, why, sizeof why), 0);
	struct sb_router *r = router_new(NULL);
	struct sb_handler_opts opts = SB_HANDLER_OPTS_INIT;
	opts.schema = schema;
	opts.schema_len = len;
	CHECK_INT(sb_router_handle(r, "kv.set", &opts, kv_put, NULL), 0);
	free(schema); /* the router compiled its own copy */
	router_start_with(r);
	int before = atomic_load(&kv_calls);

	/* {"key": "a", "value": {"n": "x"}} and {"key": "a", "value": {"n": 1}} */
	static const uint8_t bad[] = {0x82, 0xa3, 'k', 'e', 'y',  0xa1, 'a', 0xa5, 'v',
				      'a',  'l',  'u', 'e', 0x81, 0xa1, 'n', 0xa1, 'x'};
	static const uint8_t good[] = {0x82, 0xa3, 'k', 'e', 'y',  0xa1, 'a', 0xa5, 'v',
				       'a',  'l',  'u', 'e', 0x81, 0xa1, 'n', 0x01};
	/* {"key": "a", "value": {}} */
	static const uint8_t no_n[] = {0x82, 0xa3, 'k', 'e', 'y', 0xa1, 'a',
				       0xa5, 'v',  'a', 'l', 'u', 'e',  0x80};
	struct peer *cli = peer_hello(PORT, "kv-json", "client");
	peer_request(cli, "kv.set", 1, 0, bad, sizeof bad);
	struct sb_msg *e = peer_expect(cli, SB_ERROR);
	CHECK_INT(e->code, -SB_EINVAL);
	CHECK(v_is(e->text, "value.n: expected integer, got string"));
	struct waiter w, ok;
	waiter_init(&w);
	waiter_init(&ok);
	CHECK_INT(sb_router_request(R, "kv.set", no_n, sizeof no_n, NULL, on_reply, &w, NULL), 0);
	CHECK(wait_final(&w));
	CHECK_INT(w.err[0], SB_EINVAL);
	CHECK_STR(w.outcome[0], "value.n: required key missing");
	CHECK_INT(sb_router_request(R, "kv.set", good, sizeof good, NULL, on_reply, &ok, NULL), 0);
	CHECK(wait_final(&ok));
	CHECK_STR(ok.outcome[0], "stored");
	CHECK_INT(atomic_load(&kv_calls), before + 1);
	peer_close(cli);
	router_stop();
}

/* An in-process internal handler: clients are refused with `forbidden`,
 * network services and the program itself get through. */
static void test_in_process_internal_handler(void)
{
	start_embedded();
	struct peer *cli = peer_hello(PORT, "vault-user", "client");
	struct peer *svc = peer_hello(PORT, "vault-service", "service");
	peer_request(cli, "vault.open", 1, 0, NULL, 0);
	struct sb_msg *e = peer_expect(cli, SB_ERROR);
	CHECK_INT(e->code, -SB_EFORBIDDEN);
	CHECK(v_is(e->text, "vault.open is internal: only services may call it"));
	peer_request(svc, "vault.open", 2, 0, NULL, 0);
	CHECK(v_is(peer_expect(svc, SB_REPLY)->outcome, "opened"));
	struct waiter w;
	waiter_init(&w);
	CHECK_INT(sb_router_request(R, "vault.open", NULL, 0, NULL, on_reply, &w, NULL), 0);
	CHECK(wait_final(&w));
	CHECK_INT(w.err[0], 0);
	CHECK_STR(w.outcome[0], "opened");
	peer_close(cli);
	peer_close(svc);
	router_stop();
}

/* Requests from several program threads at once, each answered once. */
static void *hammer(void *arg)
{
	int *failures = arg;
	for (int i = 0; i < 200; i++) {
		struct waiter w;
		waiter_init(&w);
		uint8_t n = (uint8_t)(i % 60);
		if (sb_router_request(R, "math.double", &n, 1, NULL, on_reply, &w, NULL) != 0 ||
		    !wait_final(&w) || w.calls != 1 || w.first_byte[0] != n * 2)
			(*failures)++;
		pthread_mutex_destroy(&w.lock);
		pthread_cond_destroy(&w.cond);
	}
	return NULL;
}

static void test_requests_from_many_threads(void)
{
	start_embedded();
	pthread_t t[4];
	int failures[4] = {0};
	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, hammer, &failures[i]);
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		CHECK_INT(failures[i], 0);
	}
	router_stop();
}

static void test_stop_answers_what_is_open(void)
{
	start_embedded();
	struct peer *svc = peer_hello(PORT, "never-answers", "service");
	peer_register(svc, "job.long", 1);
	struct waiter w;
	waiter_init(&w);
	CHECK_INT(sb_router_request(R, "job.long", NULL, 0, NULL, on_reply, &w, NULL), 0);
	peer_expect(svc, SB_REQUEST);
	sb_router_stop(R, 50);
	CHECK(wait_final(&w));
	CHECK_INT(w.calls, 1);
	CHECK_INT(w.err[0], SB_EDRAINING);
	CHECK_INT(sb_router_request(R, "job.long", NULL, 0, NULL, on_reply, &w, NULL),
		  SB_EDRAINING);
	CHECK_INT(sb_router_send(R, "job.long", NULL, 0, NULL), SB_EDRAINING);
	peer_close(svc);
	sb_router_free(R);
	R = NULL;
}

/* The config and option structs can grow: a program that knows a shorter
 * struct gets the defaults for the rest, and one too short to read is
 * refused rather than guessed at. */
static void test_structs_built_against_an_older_header(void)
{
	struct sb_router_config cfg;
	int err = 0;

	sb_router_config_init(&cfg);
	CHECK_INT(cfg.size, sizeof cfg);
	cfg.port = 0;
	cfg.shards = 1;
	cfg.max_frame = 0; /* past the older struct's end: not read (0 is invalid) */
	cfg.size = offsetof(struct sb_router_config, shards) + sizeof cfg.shards;
	struct sb_router *r = sb_router_new(&cfg, &err);
	CHECK(r != NULL);
	CHECK_INT(err, 0);
	if (r != NULL) {
		CHECK_INT(sb_router_shards(r), 1);
		struct sb_handler_opts old = SB_HANDLER_OPTS_INIT;
		old.flags = SB_HANDLER_INTERNAL;
		old.size = offsetof(struct sb_handler_opts, flags) + sizeof old.flags;
		old.schema_len = 5; /* past its end: not read */
		CHECK_INT(sb_router_handle(r, "old.handler", &old, audit, NULL), 0);
		old.size = 1;
		CHECK_INT(sb_router_handle(r, "tiny.opts", &old, audit, NULL), SB_EINVAL);
		sb_router_free(r);
	}
	cfg.size = sizeof(size_t);
	CHECK(sb_router_new(&cfg, &err) == NULL);
	CHECK_INT(err, SB_EINVAL);
}

int main(void)
{
	RUN(test_network_client_calls_an_in_process_handler);
	RUN(test_in_process_stream_reaches_a_network_client_in_order);
	RUN(test_in_process_handler_answers_later_from_another_thread);
	RUN(test_in_process_stream_from_another_thread);
	RUN(test_in_process_request_never_answered_ends_with_its_timeout);
	RUN(test_network_send_reaches_an_in_process_handler);
	RUN(test_program_requests_a_network_service);
	RUN(test_program_reads_a_network_handlers_application_error);
	RUN(test_program_requests_an_in_process_handler);
	RUN(test_in_process_handler_reads_headers);
	RUN(test_program_reads_router_stats);
	RUN(test_program_request_errors);
	RUN(test_program_sends_to_a_network_service);
	RUN(test_program_requests_a_named_peer_every_handler_and_cancels);
	RUN(test_broadcast_over_in_process_and_network_handlers);
	RUN(test_in_process_handler_with_a_schema);
	RUN(test_in_process_handler_with_a_json_schema);
	RUN(test_in_process_internal_handler);
	RUN(test_requests_from_many_threads);
	RUN(test_stop_answers_what_is_open);
	RUN(test_structs_built_against_an_older_header);
	return TEST_EXIT();
}
