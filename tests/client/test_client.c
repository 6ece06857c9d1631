/* The client library end to end: an in-process router, and services and
 * clients made with nothing but the client library, pumped from one thread. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#include <msgpack.h>
#include <switchboard/client.h>
#include <switchboard/router.h>

#include "support/clock.h"
#include "support/peer.h" /* only for the fake routers, which must misbehave on purpose */
#include "support/proc.h"
#include "support/pump.h"

/* LONG_MS: request timeouts that must not expire during the suite. */
enum { MIN_MS = 40, MAX_MS = 320, LONG_MS = 60000 };

static struct sb_router *R;
static uint16_t PORT;

static struct sb_router *start_router(uint16_t port)
{
	struct sb_router_config cfg;
	int err = 0;

	sb_router_config_init(&cfg);
	cfg.port = port;
	cfg.shards = 2;
	cfg.log_level = 0;
	cfg.bind_retries = 40; /* a port just given up may need a moment */
	cfg.bind_retry_ms = 50;
	cfg.max_conns_per_addr = 4096; /* the identity-window test holds 1,025 at once */
	struct sb_router *r = sb_router_new(&cfg, &err);
	CHECK(r != NULL);
	if (r != NULL)
		CHECK_INT(sb_router_start(r), 0);
	return r;
}

/* ---- what clients report ------------------------------------------------ */

/* on_state calls of one client. */
struct watch {
	int online, offline, reconnected, error; /* how many of each */
	int offline_err, error_err;              /* err of the last OFFLINE, ERROR */
	uint64_t offline_at, reconnected_at;     /* ms */
	void *ud;                                /* a test's own state */
};

static void on_state(struct sb_client *c, enum sb_client_state s, int err, void *ud)
{
	struct watch *w = ud;

	(void)c;
	switch (s) {
	case SB_CLIENT_ONLINE:
		CHECK_INT(err, 0);
		w->online++;
		break;
	case SB_CLIENT_OFFLINE:
		w->offline++;
		w->offline_err = err;
		w->offline_at = now_ms();
		break;
	case SB_CLIENT_RECONNECTED:
		CHECK_INT(err, 0);
		w->reconnected++;
		w->reconnected_at = now_ms();
		break;
	case SB_CLIENT_ERROR:
		w->error++;
		w->error_err = err;
		break;
	}
}

static struct sb_client *client_at(uint16_t port, const char *name, const char *role,
				   struct watch *w)
{
	struct sb_client_config cfg;
	int err = 0;

	sb_client_config_init(&cfg);
	cfg.port = port;
	cfg.name = name;
	cfg.role = role;
	cfg.reconnect_min_ms = MIN_MS;
	cfg.reconnect_max_ms = MAX_MS;
	cfg.on_state = on_state;
	cfg.ud = w;
	struct sb_client *c = sb_client_new(&cfg, &err);
	CHECK(c != NULL);
	CHECK_INT(err, 0);
	return c;
}

static struct sb_client *client(const char *name, const char *role, struct watch *w)
{
	return client_at(PORT, name, role, w);
}

/* Every reply callback of one request. */
struct replies {
	int n;              /* callbacks */
	int terminal;       /* of which terminal (more == 0) */
	int after_terminal; /* callbacks after the terminal one: must stay 0 */
	int progress;       /* SB_MORE_PROGRESS replies */
	int chunks;         /* SB_MORE_CHUNK replies */
	int out_of_order;   /* chunks or progress whose number was not the next */
	int cancel_at;      /* sb_cancel() from the callback at this chunk; 0: never */
	int err;            /* the terminal event's */
	char outcome[256];  /* the last reply's outcome (or error text) */
	uint8_t payload[256];
	size_t len;
	uint64_t at; /* ms of the terminal event */
};

/* Chunks and progress carry their number as a MessagePack uint16. */
static unsigned seq_of(const void *payload, size_t len)
{
	const uint8_t *p = payload;
	return len == 3 && p[0] == 0xcd ? (unsigned)p[1] << 8 | p[2] : 99999;
}

static void put_seq(uint8_t b[3], unsigned v)
{
	b[0] = 0xcd;
	b[1] = (uint8_t)(v >> 8);
	b[2] = (uint8_t)v;
}

static void on_reply(struct sb_client *c, uint64_t req, int err, const char *outcome,
		     const void *payload, size_t len, int more, void *ud)
{
	struct replies *r = ud;

	r->n++;
	if (r->terminal > 0)
		r->after_terminal++;
	CHECK(outcome != NULL);
	snprintf(r->outcome, sizeof r->outcome, "%s", outcome != NULL ? outcome : "");
	r->len = len < sizeof r->payload ? len : sizeof r->payload;
	if (len > 0)
		memcpy(r->payload, payload, r->len);
	if (!more) {
		r->terminal++;
		r->err = err;
		r->at = now_ms();
		return;
	}
	CHECK_INT(err, 0);
	if (more == SB_MORE_PROGRESS) {
		if (seq_of(payload, len) != (unsigned)r->progress)
			r->out_of_order++;
		r->progress++;
		return;
	}
	CHECK_INT(more, SB_MORE_CHUNK);
	if (seq_of(payload, len) != (unsigned)r->chunks)
		r->out_of_order++;
	r->chunks++;
	if (r->chunks == r->cancel_at) /* from inside the callback, as a program would */
		CHECK_INT(sb_cancel(c, req), 0);
}

/* ---- handlers ----------------------------------------------------------- */

static void handle_echo(struct sb_client *c, struct sb_call *call, void *ud)
{
	size_t len;
	const void *p = sb_call_payload(call, &len);
	int *count = ud;

	(void)c;
	if (count != NULL)
		(*count)++;
	CHECK_INT(sb_reply(call, "echoed", p, len), 0);
}

/* What one fire-and-forget delivery looked like. */
struct seen {
	int n;
	int is_request;
	uint32_t from;
	char name[64];
	uint8_t payload[64];
	size_t len;
	int reply_rc; /* sb_reply() on a SEND's call */
};

static void handle_seen(struct sb_client *c, struct sb_call *call, void *ud)
{
	struct seen *s = ud;
	size_t len;
	const void *p = sb_call_payload(call, &len);

	(void)c;
	s->n++;
	s->is_request = sb_call_is_request(call);
	s->from = sb_call_from(call);
	snprintf(s->name, sizeof s->name, "%s", sb_call_name(call));
	s->len = len < sizeof s->payload ? len : sizeof s->payload;
	memcpy(s->payload, p, s->len);
	s->reply_rc = sb_reply(call, "nobody listens", NULL, 0);
}

/* A handler that keeps its call to answer later. */
struct held {
	struct sb_call *call; /* NULL once answered or cancelled */
	int calls;            /* handler invocations */
	int cancels;          /* on_cancel invocations */
	int watch_cancel;     /* register on_cancel */
};

static void on_held_cancel(struct sb_call *call, void *ud)
{
	struct held *h = ud;
	CHECK(h->call == call);
	CHECK_INT(sb_call_cancelled(call), 1);
	h->cancels++;
	h->call = NULL; /* freed when we return */
}

static void handle_hold(struct sb_client *c, struct sb_call *call, void *ud)
{
	struct held *h = ud;

	(void)c;
	h->calls++;
	h->call = call;
	if (h->watch_cancel)
		sb_call_on_cancel(call, on_held_cancel, h);
}

/* {"amount": N}, packed with msgpack-c as a program would. */
static void pack_amount(msgpack_sbuffer *sb, uint64_t amount)
{
	msgpack_packer pk;
	msgpack_sbuffer_init(sb);
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	msgpack_pack_str(&pk, 6);
	msgpack_pack_str_body(&pk, "amount", 6);
	msgpack_pack_uint64(&pk, amount);
}

static int64_t unpack_amount(const void *p, size_t len)
{
	msgpack_unpacked u;
	size_t off = 0;
	int64_t v = -1;

	msgpack_unpacked_init(&u);
	if (msgpack_unpack_next(&u, p, len, &off) == MSGPACK_UNPACK_SUCCESS &&
	    u.data.type == MSGPACK_OBJECT_MAP && u.data.via.map.size == 1 &&
	    u.data.via.map.ptr[0].val.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
		v = (int64_t)u.data.via.map.ptr[0].val.via.u64;
	msgpack_unpacked_destroy(&u);
	return v;
}

static const uint8_t BALANCE[] = {0x81, 0xa7, 'b', 'a', 'l', 'a', 'n', 'c', 'e', 0x14};

static void handle_transfer(struct sb_client *c, struct sb_call *call, void *ud)
{
	size_t len;
	const void *p = sb_call_payload(call, &len);
	int64_t amount = unpack_amount(p, len);

	(void)c;
	(void)ud;
	if (amount < 0)
		CHECK_INT(sb_reply_error(call, SB_EINVAL, "amount missing"), 0);
	else if (amount <= 100)
		CHECK_INT(sb_reply(call, "transferred", NULL, 0), 0);
	else if (amount <= 1000)
		CHECK_INT(sb_reply(call, "pending", NULL, 0), 0);
	else
		CHECK_INT(sb_reply(call, "insufficient funds", BALANCE, sizeof BALANCE), 0);
}

static void handle_copy(struct sb_client *c, struct sb_call *call, void *ud)
{
	uint8_t n[3];

	(void)c;
	(void)ud;
	for (unsigned i = 0; i < 3; i++) {
		put_seq(n, i);
		CHECK_INT(sb_reply_more(call, "file.copying", n, 3, 0), 0);
	}
	CHECK_INT(sb_reply(call, "file.copied", NULL, 0), 0);
}

static void handle_read(struct sb_client *c, struct sb_call *call, void *ud)
{
	uint8_t n[3];

	(void)c;
	(void)ud;
	for (unsigned i = 0; i < 1000; i++) {
		put_seq(n, i);
		CHECK_INT(sb_reply_more(call, "file.read-chunk", n, 3, 1), 0);
	}
	CHECK_INT(sb_reply(call, "file.read-done", NULL, 0), 0);
}

/* {"event": "login"} */
static const uint8_t EVENT[] = {0x81, 0xa5, 'e', 'v', 'e', 'n', 't', 0xa5, 'l', 'o', 'g', 'i', 'n'};

/* ---- tests -------------------------------------------------------------- */

static void test_fire_and_forget(void)
{
	struct watch ws = {0}, wc = {0};
	struct seen seen = {0};
	struct sb_client *svc = client("audit-1", "service", &ws);
	struct sb_client *cli = client("shop-1", "client", &wc);
	struct sb_client *cs[] = {svc, cli};

	CHECK_INT(sb_client_register(svc, "audit.log", 0, handle_seen, &seen), 0);
	pump_online(cs, 2);
	CHECK_INT(ws.online, 1);
	CHECK_INT(wc.online, 1);
	CHECK_STR(sb_client_name(svc), "audit-1");

	CHECK_INT(sb_send(cli, "audit.log", EVENT, sizeof EVENT), 0);
	pump_until(cs, 2, &seen.n, 1, "the SEND");
	pump_for(cs, 2, 50);
	CHECK_INT(seen.n, 1);
	CHECK_INT(seen.is_request, 0);
	CHECK_INT(seen.from, sb_client_peer_id(cli)); /* the router vouches for the sender */
	CHECK_STR(seen.name, "audit.log");
	CHECK(seen.len == sizeof EVENT && memcmp(seen.payload, EVENT, sizeof EVENT) == 0);
	CHECK_INT(seen.reply_rc, SB_EINVAL); /* a SEND has nobody to answer */
	CHECK_INT(ws.error + wc.error + ws.offline + wc.offline, 0);
	sb_client_free(svc);
	sb_client_free(cli);
}

static void test_request_reply_with_outcome(void)
{
	static const uint64_t amounts[] = {50, 500, 5000};
	static const char *const outcomes[] = {"transferred", "pending", "insufficient funds"};
	struct watch ws = {0}, wc = {0};
	struct replies r[3] = {{0}};
	struct sb_client *bank = client("bank-1", "service", &ws);
	struct sb_client *shop = client("shop-2", "client", &wc);
	struct sb_client *cs[] = {bank, shop};
	int done = 0;

	CHECK_INT(sb_client_register(bank, "transfer", 0, handle_transfer, NULL), 0);
	pump_online(cs, 2);
	for (int i = 0; i < 3; i++) {
		msgpack_sbuffer sb;
		pack_amount(&sb, amounts[i]);
		CHECK_INT(sb_request(shop, "transfer", sb.data, sb.size, LONG_MS, on_reply, &r[i],
				     NULL),
			  0);
		msgpack_sbuffer_destroy(&sb); /* the library copied it */
	}
	for (int i = 0; i < 3; i++) {
		pump_until(cs, 2, &r[i].terminal, 1, "a transfer's reply");
		done += r[i].terminal;
	}
	pump_for(cs, 2, 30);
	CHECK_INT(done, 3);
	for (int i = 0; i < 3; i++) {
		CHECK_INT(r[i].n, 1); /* exactly one callback: the final reply */
		CHECK_INT(r[i].err, 0);
		CHECK_STR(r[i].outcome, outcomes[i]);
	}
	CHECK(r[2].len == sizeof BALANCE && memcmp(r[2].payload, BALANCE, sizeof BALANCE) == 0);
	sb_client_free(bank);
	sb_client_free(shop);
}

static void test_progress_then_final(void)
{
	struct watch ws = {0}, wc = {0};
	struct replies r = {0};
	struct sb_client *fs = client("fs-1", "service", &ws);
	struct sb_client *ui = client("ui-1", "client", &wc);
	struct sb_client *cs[] = {fs, ui};

	CHECK_INT(sb_client_register(fs, "file.copy", 0, handle_copy, NULL), 0);
	pump_online(cs, 2);
	CHECK_INT(sb_request(ui, "file.copy", NULL, 0, 0, on_reply, &r, NULL), 0);
	pump_until(cs, 2, &r.terminal, 1, "file.copied");
	pump_for(cs, 2, 30);
	CHECK_INT(r.progress, 3);
	CHECK_INT(r.out_of_order, 0);
	CHECK_INT(r.terminal, 1);
	CHECK_INT(r.n, 4);
	CHECK_INT(r.err, 0);
	CHECK_STR(r.outcome, "file.copied");
	sb_client_free(fs);
	sb_client_free(ui);
}

static void test_stream_of_1000_chunks_in_order(void)
{
	struct watch ws = {0}, wc = {0};
	struct replies r = {0};
	struct sb_client *fs = client("fs-2", "service", &ws);
	struct sb_client *ui = client("ui-2", "client", &wc);
	struct sb_client *cs[] = {fs, ui};

	CHECK_INT(sb_client_register(fs, "file.read", 0, handle_read, NULL), 0);
	pump_online(cs, 2);
	CHECK_INT(sb_request(ui, "file.read", NULL, 0, 0, on_reply, &r, NULL), 0);
	pump_until(cs, 2, &r.terminal, 1, "file.read-done");
	pump_for(cs, 2, 30);
	CHECK_INT(r.chunks, 1000);
	CHECK_INT(r.out_of_order, 0);
	CHECK_INT(r.terminal, 1);
	CHECK_INT(r.after_terminal, 0);
	CHECK_INT(r.n, 1001);
	CHECK_STR(r.outcome, "file.read-done");
	sb_client_free(fs);
	sb_client_free(ui);
}

/* The handler side of a stream it answers outside its callback: a few
 * chunks per pump turn, until the call goes away. */
struct producer {
	struct held *h;
	unsigned sent;
	int rc; /* last sb_reply_more() result */
};

static void produce(void *arg)
{
	struct producer *p = arg;
	uint8_t n[3];

	for (int i = 0; i < 4 && p->h->call != NULL; i++) {
		put_seq(n, p->sent);
		p->rc = sb_reply_more(p->h->call, "file.read-chunk", n, 3, 1);
		if (p->rc == 0)
			p->sent++;
	}
}

struct cancel_done {
	struct replies *r;
	struct held *h;
};

static int cancel_seen_both_sides(void *arg)
{
	struct cancel_done *d = arg;
	return d->r->terminal >= 1 && d->h->cancels >= 1;
}

/* A stream too big for the output queue, sent from on_writable. */
#define BIG_CHUNKS 200
#define BIG_CHUNK  16384

struct big_stream {
	struct held h;
	unsigned sent;    /* chunks queued */
	int overloaded;   /* sb_reply_more() said SB_EOVERLOADED */
	int writable;     /* on_writable calls */
	unsigned got;     /* chunks the requester received */
	int out_of_order; /* received with the wrong sequence number */
	int done;         /* terminal event seen */
	int err;
};

static void big_produce(struct big_stream *b)
{
	static uint8_t chunk[3 + BIG_CHUNK];
	while (b->h.call != NULL && b->sent < BIG_CHUNKS) {
		chunk[0] = 0xc5; /* bin 16 whose first 4 bytes are the number */
		chunk[1] = BIG_CHUNK >> 8;
		chunk[2] = BIG_CHUNK & 0xff;
		memcpy(chunk + 3, &b->sent, sizeof b->sent);
		int rc = sb_reply_more(b->h.call, "big-chunk", chunk, sizeof chunk, 1);
		if (rc == SB_EOVERLOADED) {
			b->overloaded++;
			return;
		}
		CHECK_INT(rc, 0);
		b->sent++;
	}
	if (b->h.call != NULL) {
		CHECK_INT(sb_reply(b->h.call, "big-done", NULL, 0), 0);
		b->h.call = NULL;
	}
}

static void big_writable(struct sb_client *c, void *ud)
{
	struct big_stream *b = ((struct watch *)ud)->ud;
	(void)c;
	b->writable++;
	big_produce(b);
}

static void big_reply(struct sb_client *c, uint64_t req, int err, const char *outcome,
		      const void *payload, size_t len, int more, void *ud)
{
	struct big_stream *b = ud;
	unsigned seq;
	(void)c, (void)req, (void)outcome;
	if (!more) {
		b->done++;
		b->err = err;
		return;
	}
	memcpy(&seq, (const uint8_t *)payload + 3, sizeof seq);
	b->out_of_order += len != 3 + BIG_CHUNK || seq != b->got;
	b->got++;
}

/* sb_reply_more() fails with SB_EOVERLOADED when out_max is queued, and
 * on_writable says when to go on: the whole stream arrives, in order,
 * without the producer polling. */
static void test_on_writable_resumes_a_stream(void)
{
	struct big_stream b = {0};
	struct watch ws = {.ud = &b}, wc = {0};
	struct sb_client_config cfg;
	int err = 0;

	sb_client_config_init(&cfg);
	cfg.port = PORT;
	cfg.name = "big-svc";
	cfg.role = "service";
	cfg.on_state = on_state;
	cfg.on_writable = big_writable;
	cfg.ud = &ws;
	cfg.out_max = 4 * (BIG_CHUNK + 64);
	struct sb_client *svc = sb_client_new(&cfg, &err);
	struct sb_client *ui = client("big-ui", "client", &wc);
	struct sb_client *cs[] = {svc, ui};

	CHECK_INT(sb_client_register(svc, "big.read", 0, handle_hold, &b.h), 0);
	pump_online(cs, 2);
	CHECK_INT(sb_request(ui, "big.read", NULL, 0, LONG_MS, big_reply, &b, NULL), 0);
	pump_until(cs, 2, &b.h.calls, 1, "the request");
	big_produce(&b); /* from here on only on_writable produces */
	pump_until(cs, 2, &b.done, 1, "the end of the stream");
	CHECK_INT(b.err, 0);
	CHECK_INT((int)b.got, BIG_CHUNKS);
	CHECK_INT(b.out_of_order, 0);
	CHECK(b.overloaded > 0);
	CHECK(b.writable >= b.overloaded); /* every stop was followed by a go */
	sb_client_free(svc);
	sb_client_free(ui);
}

static void test_cancel_mid_stream(void)
{
	struct watch ws = {0}, wc = {0};
	struct replies r = {.cancel_at = 10};
	struct held h = {.watch_cancel = 1};
	struct producer prod = {.h = &h};
	struct cancel_done both = {&r, &h};
	struct sb_client *fs = client("fs-3", "service", &ws);
	struct sb_client *ui = client("ui-3", "client", &wc);
	struct sb_client *cs[] = {fs, ui};

	CHECK_INT(sb_client_register(fs, "file.tail", 0, handle_hold, &h), 0);
	pump_online(cs, 2);
	CHECK_INT(sb_request(ui, "file.tail", NULL, 0, 0, on_reply, &r, NULL), 0);
	pump_until(cs, 2, &h.calls, 1, "the request at the handler");
	pump_tick = produce;
	pump_tick_arg = &prod;
	pump_cond(cs, 2, cancel_seen_both_sides, &both, "the cancel on both sides");
	pump_tick = NULL;
	pump_for(cs, 2, 50);
	CHECK_INT(r.terminal, 1);
	CHECK_INT(r.err, SB_ECANCELLED);
	CHECK_INT(r.chunks, 10); /* chunks still in flight after the cancel are dropped */
	CHECK_INT(r.out_of_order, 0);
	CHECK_INT(r.after_terminal, 0);
	CHECK_INT(h.cancels, 1);
	CHECK(h.call == NULL);
	CHECK(prod.sent >= 10);
	sb_client_free(fs);
	sb_client_free(ui);
}

static int held_call_cancelled(void *arg)
{
	struct held *h = arg;
	return h->call != NULL && sb_call_cancelled(h->call);
}

static void test_timeout(void)
{
	struct watch ws = {0}, wc = {0};
	struct replies r = {0};
	struct held h = {0}; /* no on_cancel: the call waits for its final reply */
	struct sb_client *slow = client("slow-1", "service", &ws);
	struct sb_client *ui = client("ui-4", "client", &wc);
	struct sb_client *cs[] = {slow, ui};

	CHECK_INT(sb_client_register(slow, "report.build", 0, handle_hold, &h), 0);
	pump_online(cs, 2);
	CHECK_INT(sb_request(ui, "report.build", NULL, 0, 100, on_reply, &r, NULL), 0);
	pump_until(cs, 2, &r.terminal, 1, "the timeout");
	CHECK_INT(r.err, SB_ETIMEOUT);
	/* The router's answer, not the local deadline (which says "plus 1 s").
	 * Told apart by text, not time: this machine's CPU may be stolen. */
	CHECK(strstr(r.outcome, "plus 1 s") == NULL);
	/* The router told the handler; a call kept without on_cancel says so,
	 * and its final reply goes nowhere and frees it. */
	pump_cond(cs, 2, held_call_cancelled, &h, "the handler to see the cancel");
	CHECK_INT(sb_reply(h.call, "built", NULL, 0), SB_ECANCELLED);
	h.call = NULL;
	pump_for(cs, 2, 30);
	CHECK_INT(r.n, 1);
	sb_client_free(slow);
	sb_client_free(ui);
}

static void test_no_handler(void)
{
	struct watch wc = {0};
	struct replies r = {0};
	struct sb_client *ui = client("ui-5", "client", &wc);
	struct sb_client *cs[] = {ui};

	pump_online(cs, 1);
	CHECK_INT(sb_request(ui, "nobody.home", NULL, 0, 0, on_reply, &r, NULL), 0);
	pump_until(cs, 1, &r.terminal, 1, "no handler");
	pump_for(cs, 1, 30);
	CHECK_INT(r.n, 1);
	CHECK_INT(r.err, SB_ENOHANDLER);
	CHECK(r.outcome[0] != 0);           /* an error comes with words */
	CHECK_INT(sb_client_online(ui), 1); /* and the connection stays */
	sb_client_free(ui);
}

/* A catch-all handler takes names nobody registered. */
static void test_catch_all(void)
{
	struct watch ws = {0}, wc = {0};
	struct replies r = {0};
	struct held h = {0};
	struct sb_client *svc = client("any-1", "service", &ws);
	struct sb_client *ui = client("ui-5b", "client", &wc);
	struct sb_client *cs[] = {svc, ui};

	CHECK_INT(sb_client_register(svc, NULL, 0, handle_hold, &h), 0);
	CHECK_INT(sb_client_register(svc, NULL, 0, handle_hold, &h), SB_EINVAL); /* only one */
	pump_online(cs, 2);
	CHECK_INT(sb_request(ui, "whatever.it.is", NULL, 0, 0, on_reply, &r, NULL), 0);
	pump_until(cs, 2, &h.calls, 1, "the catch-all");
	CHECK_STR(sb_call_name(h.call), "whatever.it.is");
	CHECK_INT(sb_reply(h.call, "caught", NULL, 0), 0);
	pump_until(cs, 2, &r.terminal, 1, "the reply");
	CHECK_STR(r.outcome, "caught");
	CHECK_INT(sb_client_unregister(svc, NULL), 0);
	CHECK_INT(sb_client_unregister(svc, NULL), SB_EINVAL);
	sb_client_free(svc);
	sb_client_free(ui);
}

static void test_handler_freed_mid_stream(void)
{
	struct watch ws = {0}, wc = {0};
	struct replies r = {0};
	struct held h = {.watch_cancel = 1};
	struct sb_client *fs = client("fs-4", "service", &ws);
	struct sb_client *ui = client("ui-6", "client", &wc);
	struct sb_client *cs[] = {fs, ui};
	uint8_t n[3];

	CHECK_INT(sb_client_register(fs, "file.tail", 0, handle_hold, &h), 0);
	pump_online(cs, 2);
	CHECK_INT(sb_request(ui, "file.tail", NULL, 0, 0, on_reply, &r, NULL), 0);
	pump_until(cs, 2, &h.calls, 1, "the request at the handler");
	for (unsigned i = 0; i < 5; i++) {
		put_seq(n, i);
		CHECK_INT(sb_reply_more(h.call, "file.read-chunk", n, 3, 1), 0);
	}
	pump_until(cs, 2, &r.chunks, 5, "five chunks");
	sb_client_free(fs);      /* mid-stream */
	CHECK_INT(h.cancels, 1); /* the kept call was handed back */
	CHECK(h.call == NULL);
	pump_until(cs + 1, 1, &r.terminal, 1, "peer gone");
	pump_for(cs + 1, 1, 30);
	CHECK_INT(r.err, SB_EPEERGONE);
	CHECK_INT(r.terminal, 1);
	CHECK_INT(r.n, 6);
	sb_client_free(ui);
}

/* users.create asks passwords.encrypt from inside its handler, then replies. */
struct chain {
	struct sb_call *call; /* the users.create call being served */
	uint32_t users_id;    /* what passwords.encrypt must see as "from" */
	int inner_from_ok;
	int inner_calls;
};

static void on_encrypted(struct sb_client *c, uint64_t req, int err, const char *outcome,
			 const void *payload, size_t len, int more, void *ud)
{
	struct chain *ch = ud;

	(void)c;
	(void)req;
	if (more)
		return;
	if (err != 0)
		CHECK_INT(sb_reply_error(ch->call, err, outcome), 0);
	else
		CHECK_INT(sb_reply(ch->call, "user.created", payload, len), 0);
	ch->call = NULL;
}

static void handle_create(struct sb_client *c, struct sb_call *call, void *ud)
{
	static const uint8_t pw[] = {0xa6, 's', 'e', 'c', 'r', 'e', 't'};
	struct chain *ch = ud;

	ch->call = call;
	CHECK_INT(
		sb_request(c, "passwords.encrypt", pw, sizeof pw, LONG_MS, on_encrypted, ch, NULL),
		0);
}

static void handle_encrypt(struct sb_client *c, struct sb_call *call, void *ud)
{
	static const uint8_t hash[] = {0xa4, 'x', 'y', 'z', 'w'};
	struct chain *ch = ud;

	(void)c;
	ch->inner_calls++;
	ch->inner_from_ok = sb_call_from(call) == ch->users_id;
	CHECK_INT(sb_reply(call, "encrypted", hash, sizeof hash), 0);
}

static void test_chained_request_from_a_handler(void)
{
	static const uint8_t hash[] = {0xa4, 'x', 'y', 'z', 'w'};
	struct watch wu = {0}, wp = {0}, wc = {0};
	struct replies r = {0};
	struct chain ch = {0};
	struct sb_client *users = client("users-1", "service", &wu);
	struct sb_client *pw = client("passwords-1", "service", &wp);
	struct sb_client *ui = client("signup-1", "client", &wc);
	struct sb_client *cs[] = {users, pw, ui};

	CHECK_INT(sb_client_register(users, "users.create", 0, handle_create, &ch), 0);
	CHECK_INT(sb_client_register(pw, "passwords.encrypt", SB_REGISTER_INTERNAL, handle_encrypt,
				     &ch),
		  0);
	pump_online(cs, 3);
	ch.users_id = sb_client_peer_id(users);
	CHECK_INT(sb_request(ui, "users.create", NULL, 0, 0, on_reply, &r, NULL), 0);
	pump_until(cs, 3, &r.terminal, 1, "user.created");
	pump_for(cs, 3, 30);
	CHECK_INT(r.n, 1);
	CHECK_INT(r.err, 0);
	CHECK_STR(r.outcome, "user.created");
	CHECK(r.len == sizeof hash && memcmp(r.payload, hash, sizeof hash) == 0);
	CHECK_INT(ch.inner_calls, 1);
	CHECK_INT(ch.inner_from_ok, 1);
	CHECK(ch.call == NULL);

	/* The internal handler is not for clients. */
	struct replies direct = {0};
	CHECK_INT(sb_request(ui, "passwords.encrypt", NULL, 0, 0, on_reply, &direct, NULL), 0);
	pump_until(cs, 3, &direct.terminal, 1, "the refusal");
	CHECK_INT(direct.err, SB_EFORBIDDEN);
	CHECK_STR(direct.outcome, "passwords.encrypt is internal: only services may call it");
	CHECK_INT(ch.inner_calls, 1);
	sb_client_free(users);
	sb_client_free(pw);
	sb_client_free(ui);
}

/* sb_client_leave(): a service leaving in the middle of a chained call
 * still answers it (the router routes nothing new to it and waits), then
 * the router closes, and the client does not come back. The requester and
 * the inner handler are raw peers on a thread of their own, since leave
 * blocks this one; the inner handler answers only once the router has
 * announced the leaving service as draining. */
struct leave_peers {
	uint16_t port;
	char leaver[SB_PEER_MAX + 1];
	int answered; /* the requester got the reply */
	char outcome[64];
};

static void *leave_peers_run(void *arg)
{
	struct leave_peers *lp = arg;
	struct peer *deps = peer_hello(lp->port, "lv-deps", "service");
	peer_register(deps, "lv.deps", 1);
	struct peer *cli = peer_hello(lp->port, "lv-cli", "client");
	struct sb_msg sub = {.kind = SB_SUBSCRIBE, .id = 1, .name = v_str("presence")};
	peer_send(cli, &sub);
	peer_expect(cli, SB_ACK);
	peer_request(cli, "lv.work", 7, LONG_MS, NULL, 0);
	uint64_t rid = peer_expect(deps, SB_REQUEST)->id; /* the leaver's chained call */
	for (int i = 0; i < 8; i++) {
		struct sb_msg *m = peer_expect(cli, SB_PRESENCE);
		if (m->kind != SB_PRESENCE ||
		    (v_is(m->peer, lp->leaver) && m->event == SB_PEER_DRAINING))
			break;
	}
	peer_reply(deps, rid, "hashed", 0, NULL, 0);
	struct sb_msg *r = peer_expect(cli, SB_REPLY);
	lp->answered = r->kind == SB_REPLY && r->id == 7;
	snprintf(lp->outcome, sizeof lp->outcome, "%.*s", (int)r->outcome.len,
		 (const char *)r->outcome.ptr);
	peer_close(cli);
	peer_close(deps);
	return NULL;
}

static void handle_work(struct sb_client *c, struct sb_call *call, void *ud)
{
	struct chain *ch = ud;
	ch->call = call;
	ch->inner_calls++;
	CHECK_INT(sb_request(c, "lv.deps", NULL, 0, LONG_MS, on_encrypted, ch, NULL), 0);
}

static void test_leave_finishes_its_calls_first(void)
{
	struct watch w = {0};
	struct chain ch = {0};
	struct leave_peers lp = {.port = PORT};
	struct sb_client *svc = client("lv-svc", "service", &w);
	pthread_t t;

	CHECK_INT(sb_client_register(svc, "lv.work", 0, handle_work, &ch), 0);
	CHECK_INT(sb_client_wait_online(svc, pump_limit_ms), 0);
	snprintf(lp.leaver, sizeof lp.leaver, "%s", sb_client_name(svc));
	CHECK_INT(pthread_create(&t, NULL, leave_peers_run, &lp), 0);
	pump_until(&svc, 1, &ch.inner_calls, 1, "the chained call");
	uint64_t t0 = now_ms();
	CHECK_INT(sb_client_leave(svc, "shutting down", 10000), 0);
	CHECK(now_ms() - t0 < 10000); /* closed by the router when done, not at the deadline */
	pthread_join(t, NULL);
	CHECK(lp.answered);
	CHECK_STR(lp.outcome, "user.created");
	CHECK_INT(w.offline, 1);
	CHECK_INT(w.offline_err, 0);
	CHECK_INT(sb_client_fd(svc), -1);
	CHECK_INT(sb_client_process(svc, 50), SB_EOFFLINE); /* and no reconnect */
	CHECK_INT(w.reconnected, 0);
	sb_client_free(svc);
}

/* Every one of n requests has had its terminal callback. */
struct all_done {
	const struct replies *r;
	int n;
};

static int all_terminal(void *arg)
{
	const struct all_done *a = arg;
	for (int i = 0; i < a->n; i++)
		if (a->r[i].terminal == 0)
			return 0;
	return 1;
}

/* Two instances of one service share the requests; when one goes away the
 * other answers everything, and every request still ends exactly once. */
static void test_two_instances_share_and_fail_over(void)
{
	struct watch wa = {0}, wb = {0}, wc = {0};
	int served_a = 0, served_b = 0;
	struct sb_client *a = client("worker-a", "service", &wa);
	struct sb_client *b = client("worker-b", "service", &wb);
	struct sb_client *cli = client("foreman", "client", &wc);
	struct sb_client *all[] = {a, b, cli}, *left[] = {b, cli};
	static struct replies r[40];

	memset(r, 0, sizeof r);
	CHECK_INT(sb_client_register(a, "work", 0, handle_echo, &served_a), 0);
	CHECK_INT(sb_client_register(b, "work", 0, handle_echo, &served_b), 0);
	pump_online(all, 3);
	for (int i = 0; i < 20; i++)
		CHECK_INT(sb_request(cli, "work", NULL, 0, 0, on_reply, &r[i], NULL), 0);
	struct all_done first = {r, 20};
	pump_cond(all, 3, all_terminal, &first, "20 answers from two instances");
	CHECK_INT(served_a + served_b, 20);
	CHECK(served_a > 0 && served_b > 0); /* both took a share */

	sb_client_free(a); /* one instance dies */
	pump_for(left, 2, 50);
	for (int i = 20; i < 40; i++)
		CHECK_INT(sb_request(cli, "work", NULL, 0, 0, on_reply, &r[i], NULL), 0);
	struct all_done second = {r + 20, 20};
	pump_cond(left, 2, all_terminal, &second, "20 answers from the survivor");
	CHECK_INT(served_b - (20 - served_a), 20);
	for (int i = 0; i < 40; i++) {
		CHECK_INT(r[i].terminal, 1);
		CHECK_INT(r[i].err, 0);
		CHECK_INT(r[i].after_terminal, 0);
	}
	sb_client_free(b);
	sb_client_free(cli);
}

static void test_async_reply(void)
{
	static const uint8_t job[] = {0xa3, 'j', 'o', 'b'};
	struct watch ws = {0}, wc = {0};
	struct replies r = {0};
	struct held h = {0};
	struct sb_client *svc = client("jobs-1", "service", &ws);
	struct sb_client *ui = client("ui-7", "client", &wc);
	struct sb_client *cs[] = {svc, ui};
	size_t len = 99;

	CHECK_INT(sb_client_register(svc, "async.job", 0, handle_hold, &h), 0);
	pump_online(cs, 2);
	CHECK_INT(sb_request(ui, "async.job", job, sizeof job, 0, on_reply, &r, NULL), 0);
	pump_until(cs, 2, &h.calls, 1, "the job at the handler");
	pump_for(cs, 2, 50);
	CHECK_INT(r.n, 0); /* nothing yet: the handler answers later */
	/* The kept call still knows its name; the payload was only lent. */
	CHECK_STR(sb_call_name(h.call), "async.job");
	CHECK_INT(sb_call_is_request(h.call), 1);
	CHECK(sb_call_payload(h.call, &len) == NULL && len == 0);
	CHECK_INT(sb_call_cancelled(h.call), 0);
	CHECK_INT(sb_reply(h.call, "done", job, sizeof job), 0); /* from outside any callback */
	h.call = NULL;
	pump_until(cs, 2, &r.terminal, 1, "the late answer");
	pump_for(cs, 2, 30);
	CHECK_INT(r.n, 1);
	CHECK_STR(r.outcome, "done");
	CHECK(r.len == sizeof job && memcmp(r.payload, job, sizeof job) == 0);

	/* Freeing a client ends its open requests: one SB_EOFFLINE each. */
	struct replies open = {0};
	CHECK_INT(sb_request(ui, "async.job", job, sizeof job, 0, on_reply, &open, NULL), 0);
	pump_until(cs, 2, &h.calls, 2, "the second job at the handler");
	sb_client_free(ui);
	CHECK_INT(open.n, 1);
	CHECK_INT(open.err, SB_EOFFLINE);
	/* The router cancels it towards the handler, whose call then says so. */
	pump_cond(cs, 1, held_call_cancelled, &h, "the handler to see the cancel");
	CHECK_INT(sb_reply_error(h.call, SB_EINTERNAL, "too late"), SB_ECANCELLED);
	sb_client_free(svc);
}

struct runner {
	struct sb_client *c;
	int rc;
};

static void *run_service(void *arg)
{
	struct runner *run = arg;
	run->rc = sb_client_run(run->c);
	return NULL;
}

/* The service runs sb_client_run() on its own thread (as a program would),
 * the requester blocks in sb_request_wait(): the TSan build checks that two
 * clients on two threads share nothing. */
static void test_request_wait_blocking(void)
{
	static const uint8_t ping[] = {0xa4, 'p', 'i', 'n', 'g'};
	struct watch ws = {0}, wc = {0}, wl = {0};
	struct sb_client *svc = client("wait-svc", "service", &ws);
	struct sb_client *ui = client("wait-ui", "client", &wc);
	struct sb_client *cs[] = {svc, ui};
	struct runner run = {svc, -1};
	pthread_t th;
	int served = 0;
	char outcome[64];
	void *reply = NULL;
	size_t len = 0;

	CHECK_INT(sb_client_register(svc, "wait.echo", 0, handle_echo, &served), 0);
	pump_online(cs, 2);
	CHECK_INT(pthread_create(&th, NULL, run_service, &run), 0);
	for (int i = 0; i < 20; i++) {
		CHECK_INT(sb_request_wait(ui, "wait.echo", ping, sizeof ping, LONG_MS, outcome,
					  sizeof outcome, &reply, &len),
			  0);
		CHECK_STR(outcome, "echoed");
		CHECK(len == sizeof ping && reply != NULL && memcmp(reply, ping, len) == 0);
		free(reply);
		reply = NULL;
	}
	CHECK_INT(sb_request_wait(ui, "nobody.home", NULL, 0, LONG_MS, outcome, sizeof outcome,
				  &reply, &len),
		  SB_ENOHANDLER);
	CHECK(reply == NULL && len == 0);

	/* Called before the client is online, it waits for it first. */
	struct sb_client *late = client("wait-late", "client", &wl);
	CHECK_INT(sb_client_online(late), 0);
	CHECK_INT(sb_request_wait(late, "wait.echo", NULL, 0, LONG_MS, outcome, sizeof outcome,
				  NULL, NULL),
		  0);
	CHECK_STR(outcome, "echoed");
	CHECK_INT(wl.online, 1);

	/* sb_client_wait_online() does the same wait alone. */
	struct watch wl2 = {0};
	struct sb_client *later = client("wait-later", "client", &wl2);
	CHECK_INT(sb_client_online(later), 0);
	CHECK_INT(sb_client_wait_online(later, LONG_MS), 0);
	CHECK_INT(sb_client_online(later), 1);
	CHECK_INT(wl2.online, 1);
	sb_client_free(later);

	sb_client_stop(svc); /* from this thread: the one cross-thread call */
	CHECK_INT(pthread_join(th, NULL), 0);
	CHECK_INT(run.rc, 0);
	CHECK_INT(served, 21);
	sb_client_free(late);
	sb_client_free(svc);
	sb_client_free(ui);
}

static void test_duplicate_name(void)
{
	struct watch wa = {0}, wb = {0};
	struct sb_client *a = client("dup-1", "client", &wa);
	struct sb_client *cs[] = {a};

	pump_online(cs, 1);
	struct sb_client *b = client("dup-1", "client", &wb);
	struct sb_client *both[] = {a, b};
	pump_until(both, 2, &wb.error, 1, "the refusal");
	CHECK_INT(wb.error_err, SB_EDUPNAME);
	CHECK_INT(sb_client_process(b, 0), SB_EDUPNAME); /* given up, and says why */
	CHECK_INT(sb_client_fd(b), -1);
	CHECK_INT(sb_client_timeout(b), -1);

	/* No retry loop: the router sees nothing more from it. */
	struct sb_router_stats before, after;
	sb_router_stats(R, &before);
	pump_for(both, 2, 300);
	sb_router_stats(R, &after);
	CHECK_INT(after.frames_in, before.frames_in);
	CHECK_INT(wb.error, 1);
	CHECK_INT(wb.online + wb.offline + wb.reconnected, 0);
	CHECK_INT(sb_client_run(b), SB_EDUPNAME); /* returns instead of spinning */
	CHECK_INT(sb_send(b, "audit.log", NULL, 0), SB_EOFFLINE);
	/* The holder of the name is undisturbed. */
	CHECK_INT(sb_client_online(a), 1);
	CHECK_INT(wa.offline + wa.error, 0);
	sb_client_free(b);
	sb_client_free(a);
}

static void test_offline_sends(void)
{
	struct watch w = {0};
	struct replies r = {0};
	struct sb_client *c = client_at(free_port(), "lonely-1", "client", &w);
	struct sb_client *cs[] = {c};
	uint64_t id = 77;

	pump_for(cs, 1, 100);
	CHECK_INT(sb_client_online(c), 0);
	CHECK_INT(sb_send(c, "audit.log", EVENT, sizeof EVENT), SB_EOFFLINE);
	CHECK_INT(sb_request(c, "audit.log", NULL, 0, 0, on_reply, &r, &id), SB_EOFFLINE);
	CHECK(id == 77); /* untouched on failure */
	CHECK_INT(sb_cancel(c, 1), SB_EINVAL);
	uint64_t t0 = now_ms();
	CHECK_INT(sb_request_wait(c, "audit.log", NULL, 0, 150, NULL, 0, NULL, NULL), SB_EOFFLINE);
	uint64_t took = now_ms() - t0;
	CHECK(took >= 150 && took < pump_limit_ms);
	CHECK_INT(sb_client_wait_online(c, 50), SB_EOFFLINE); /* no router: gives up in time */
	pump_for(cs, 1, 50);
	CHECK_INT(r.n, 0); /* a refused request never calls back */
	CHECK_INT(w.online + w.offline + w.error, 0);
	sb_client_free(c);
}

/* Requests kept LOAD_WINDOW deep from inside their own reply callbacks. */
struct load {
	struct sb_client *c;
	int sent, done, wrong, twice;
	uint8_t *answered; /* per sequence number */
};

enum { LOAD_TOTAL = 20000, LOAD_WINDOW = 256 };

static void on_load_reply(struct sb_client *c, uint64_t req, int err, const char *outcome,
			  const void *payload, size_t len, int more, void *ud);

static void load_send(struct load *ld)
{
	uint32_t seq = (uint32_t)ld->sent;
	uint8_t pl[5] = {0xce, (uint8_t)(seq >> 24), (uint8_t)(seq >> 16), (uint8_t)(seq >> 8),
			 (uint8_t)seq};
	CHECK_INT(sb_request(ld->c, "load.echo", pl, sizeof pl, LONG_MS, on_load_reply, ld, NULL),
		  0);
	ld->sent++;
}

static void on_load_reply(struct sb_client *c, uint64_t req, int err, const char *outcome,
			  const void *payload, size_t len, int more, void *ud)
{
	struct load *ld = ud;
	const uint8_t *p = payload;

	(void)c;
	(void)req;
	if (err != 0 || more || len != 5 || strcmp(outcome, "echoed") != 0) {
		ld->wrong++;
	} else {
		uint32_t seq =
			(uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];
		if (seq >= LOAD_TOTAL)
			ld->wrong++;
		else if (ld->answered[seq]++ != 0)
			ld->twice++;
	}
	ld->done++;
	if (ld->sent < LOAD_TOTAL)
		load_send(ld); /* a request from inside a reply callback */
}

static void test_many_requests_each_answered_once(void)
{
	struct watch ws = {0}, wc = {0};
	struct sb_client *svc = client("load-svc", "service", &ws);
	struct sb_client *ui = client("load-ui", "client", &wc);
	struct sb_client *cs[] = {svc, ui};
	struct load ld = {.c = ui, .answered = calloc(LOAD_TOTAL, 1)};

	CHECK_INT(sb_client_register(svc, "load.echo", 0, handle_echo, NULL), 0);
	pump_online(cs, 2);
	uint64_t t0 = now_ms();
	for (int i = 0; i < LOAD_WINDOW; i++)
		load_send(&ld);
	/* Each wait is for the next reply: a stall fails in 5 s, progress never does. */
	while (ld.done < LOAD_TOTAL && pump_until(cs, 2, &ld.done, ld.done + 1, "the next reply"))
		;
	CHECK_INT(ld.done, LOAD_TOTAL);
	CHECK_INT(ld.wrong, 0);
	CHECK_INT(ld.twice, 0);
	for (unsigned i = 0; i < LOAD_TOTAL; i++)
		if (ld.answered[i] != 1) {
			CHECK_INT(ld.answered[i], 1);
			break;
		}
	printf("     %d requests in %" PRIu64 " ms\n", LOAD_TOTAL, now_ms() - t0);
	free(ld.answered);
	sb_client_free(svc);
	sb_client_free(ui);
}

/* ---- fake routers ------------------------------------------------------- */

/* A listening socket that plays the router with the codec directly, so it
 * can do what the real one never does: stay silent, send a malformed
 * payload, send a fatal error. */
struct fake {
	int lfd;
	uint16_t port;
	struct peer *p[32]; /* connections whose HELLO we have not read yet */
	uint64_t accepted_at[32];
	int np;
	struct peer *live; /* the connection we WELCOMEd, if we welcome */
	int welcome;       /* answer HELLO with WELCOME (else close at once) */
	int hellos;
	/* reconnect timing, per client name (the HELLO's peer) */
	char names[64][16];
	uint64_t at[64];
	int nat;
};

static void fake_listen(struct fake *f, uint16_t port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	socklen_t len = sizeof sa;
	int one = 1;

	memset(f, 0, sizeof *f);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	setsockopt(f->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	/* A stopped router frees its port at once, so this bind must work
	 * first time even right after one on the same port. */
	CHECK(bind(f->lfd, (struct sockaddr *)&sa, sizeof sa) == 0);
	CHECK(listen(f->lfd, 64) == 0);
	getsockname(f->lfd, (struct sockaddr *)&sa, &len);
	f->port = ntohs(sa.sin_port);
}

static void fake_close(struct fake *f)
{
	for (int i = 0; i < f->np; i++)
		peer_close(f->p[i]);
	peer_close(f->live);
	close(f->lfd);
	f->np = 0;
	f->live = NULL;
}

static void fake_welcome(struct peer *p, const char *name)
{
	struct sb_msg w = {.kind = SB_WELCOME,
			   .version = SB_PROTO_VERSION,
			   .peer = v_str(name),
			   .peer_id = 9,
			   .max_frame = SB_FRAME_MAX_DEFAULT};
	peer_send(p, &w);
}

/* Every pump turn: accept, read HELLOs, then welcome or hang up. */
static void fake_tick(void *arg)
{
	struct fake *f = arg;
	int fd;

	while (f->np < 32 && (fd = accept(f->lfd, NULL, NULL)) >= 0) {
		struct peer *p = calloc(1, sizeof *p);
		p->fd = fd; /* accept() does not pass O_NONBLOCK on: peer.h blocks */
		p->sp = sb_splitter_new(0);
		f->accepted_at[f->np] = now_ms();
		f->p[f->np++] = p;
	}
	for (int i = 0; i < f->np; i++) {
		struct peer *p = f->p[i];
		int rc = peer_recv_within(p, 0);
		if (rc == -1)
			continue; /* nothing yet */
		if (rc == 1 && p->m.kind == SB_HELLO) {
			f->hellos++;
			if (f->nat < 64) {
				snprintf(f->names[f->nat], sizeof f->names[0], "%.*s",
					 (int)p->m.peer.len, (const char *)p->m.peer.ptr);
				f->at[f->nat++] = f->accepted_at[i];
			}
			if (f->welcome && f->live == NULL) {
				fake_welcome(p, f->names[f->nat - 1]);
				f->live = p;
				p = NULL;
			}
		}
		peer_close(p);
		f->p[i] = f->p[--f->np];
		f->accepted_at[i] = f->accepted_at[f->np];
		i--;
	}
}

static int fake_has_live(void *arg)
{
	struct fake *f = arg;
	return f->live != NULL;
}

/* The next frame from the client on f->live, pumping the client meanwhile. */
static struct sb_msg *fake_expect(struct fake *f, struct sb_client *c, unsigned kind)
{
	uint64_t end = now_ms() + pump_limit_ms;

	while (now_ms() < end) {
		sb_client_process(c, 5);
		if (peer_recv_within(f->live, 0) == 1) {
			CHECK_INT(f->live->m.kind, kind);
			return &f->live->m;
		}
	}
	CHECK(!"the fake router got nothing");
	memset(&f->live->m, 0, sizeof f->live->m);
	return &f->live->m;
}

static void test_local_deadline_and_bad_payload(void)
{
	static const uint8_t broken[] = {0x82, 0xa1, 'a'}; /* a map that ends too soon */
	struct fake f;
	struct watch w = {0};
	struct replies r1 = {0}, r2 = {0}, r3 = {0};
	uint64_t id1 = 0, id2 = 0, id3 = 0;

	fake_listen(&f, 0);
	f.welcome = 1;
	struct sb_client *c = client_at(f.port, "deadline-1", "client", &w);
	struct sb_client *cs[] = {c};
	pump_tick = fake_tick;
	pump_tick_arg = &f;
	pump_cond(cs, 1, fake_has_live, &f, "the HELLO");
	pump_online(cs, 1);
	pump_tick = NULL;

	/* A router that never answers: the local deadline (timeout + 1 s) ends it. */
	uint64_t t0 = now_ms();
	CHECK_INT(sb_request(c, "silence", NULL, 0, 50, on_reply, &r1, &id1), 0);
	CHECK(fake_expect(&f, c, SB_REQUEST)->id == id1);
	pump_until(cs, 1, &r1.terminal, 1, "the local deadline");
	uint64_t took = r1.at - t0;
	CHECK_INT(r1.err, SB_ETIMEOUT);
	CHECK(took >= 1040 && took < pump_limit_ms);
	CHECK(strstr(r1.outcome, "plus 1 s") != NULL);
	CHECK(fake_expect(&f, c, SB_CANCEL)->id == id1); /* the router may free it */

	/* A reply whose payload is not one MessagePack value fails only its request. */
	CHECK_INT(sb_request(c, "broken", NULL, 0, 0, on_reply, &r2, &id2), 0);
	CHECK(fake_expect(&f, c, SB_REQUEST)->id == id2);
	peer_reply(f.live, id2, "fine", 0, broken, sizeof broken);
	pump_until(cs, 1, &r2.terminal, 1, "the broken reply");
	CHECK_INT(r2.err, SB_EBADFRAME);
	CHECK_INT(r2.n, 1);
	CHECK_INT(sb_request(c, "fine", NULL, 0, 0, on_reply, &r3, &id3), 0);
	CHECK(fake_expect(&f, c, SB_REQUEST)->id == id3);
	peer_reply(f.live, id3, "fine", 0, NULL, 0);
	pump_until(cs, 1, &r3.terminal, 1, "the good reply");
	CHECK_INT(r3.err, 0);
	CHECK_INT(w.offline, 0); /* the connection survived */

	/* A reply to nothing we asked, and a reply after the end, are ignored. */
	peer_reply(f.live, id1, "late", 0, NULL, 0);
	peer_reply(f.live, 424242, "stray", 0, NULL, 0);
	pump_for(cs, 1, 50);
	CHECK_INT(r1.n + r2.n + r3.n, 3);
	sb_client_free(c);
	fake_close(&f);
}

static void test_goodbye_and_fatal_error(void)
{
	struct fake f;
	struct watch w = {0};
	struct replies r = {0};
	uint64_t id = 0;

	fake_listen(&f, 0);
	f.welcome = 1;
	struct sb_client *c = client_at(f.port, "bye-1", "client", &w);
	struct sb_client *cs[] = {c};
	pump_tick = fake_tick;
	pump_tick_arg = &f;
	pump_online(cs, 1);

	/* GOODBYE: no new requests, the open one still finishes, sends still go. */
	CHECK_INT(sb_request(c, "job", NULL, 0, 0, on_reply, &r, &id), 0);
	CHECK(fake_expect(&f, c, SB_REQUEST)->id == id);
	struct sb_msg bye = {.kind = SB_GOODBYE, .text = v_str("router draining")};
	peer_send(f.live, &bye);
	uint64_t end = now_ms() + pump_limit_ms;
	while (sb_client_online(c) && now_ms() < end)
		sb_client_process(c, 5);
	CHECK_INT(sb_client_online(c), 0);
	CHECK_INT(sb_request(c, "job", NULL, 0, 0, on_reply, &r, NULL), SB_EDRAINING);
	CHECK_INT(sb_send(c, "audit.log", NULL, 0), 0);
	CHECK_INT(fake_expect(&f, c, SB_SEND)->kind, SB_SEND);
	peer_reply(f.live, id, "finished", 0, NULL, 0);
	pump_until(cs, 1, &r.terminal, 1, "the last reply");
	CHECK_INT(r.err, 0);
	CHECK_STR(r.outcome, "finished");

	/* The close after GOODBYE is OFFLINE with err 0, then a reconnect. */
	peer_close(f.live);
	f.live = NULL;
	pump_until(cs, 1, &w.reconnected, 1, "the reconnect after the goodbye");
	CHECK_INT(w.offline, 1);
	CHECK_INT(w.offline_err, 0);
	CHECK_INT(r.n, 1);

	/* A fatal error that is not about our identity: ERROR, OFFLINE, retry. */
	struct sb_msg fatal = {.kind = SB_ERROR,
			       .flags = SB_F_FATAL,
			       .code = (uint32_t)-SB_EINTERNAL,
			       .text = v_str("out of memory")};
	peer_send(f.live, &fatal);
	peer_close(f.live);
	f.live = NULL;
	pump_until(cs, 1, &w.reconnected, 2, "the reconnect after the fatal error");
	CHECK_INT(w.error, 1);
	CHECK_INT(w.error_err, SB_EINTERNAL);
	CHECK_INT(w.offline, 2);
	CHECK_INT(w.offline_err, SB_EINTERNAL);
	CHECK_INT(w.online, 1);

	/* A router that says GOODBYE and then never closes: we close after its
	 * deadline (0 here) plus the grace, and come back. */
	struct sb_msg bye0 = {.kind = SB_GOODBYE, .text = v_str("stuck")};
	peer_send(f.live, &bye0);
	uint64_t t0 = now_ms();
	pump_until(cs, 1, &w.offline, 3, "our own close of a stuck drain");
	uint64_t took = now_ms() - t0;
	CHECK_INT(w.offline_err, SB_ETIMEOUT);
	CHECK(took >= 1900 && took < pump_limit_ms);
	peer_close(f.live);
	f.live = NULL;
	pump_until(cs, 1, &w.reconnected, 3, "the reconnect after the stuck drain");
	pump_tick = NULL;
	sb_client_free(c);
	fake_close(&f);
}

/* ---- reconnect ---------------------------------------------------------- */

struct rc_state {
	struct watch *ws, *wc;
	struct replies *ra, *rb;
};

static int both_offline_and_ended(void *arg)
{
	struct rc_state *s = arg;
	return s->ws->offline >= 1 && s->wc->offline >= 1 && s->ra->terminal >= 1 &&
	       s->rb->terminal >= 1;
}

static int both_reconnected(void *arg)
{
	struct rc_state *s = arg;
	return s->ws->reconnected >= 1 && s->wc->reconnected >= 1;
}

static void test_reconnect_after_router_restart(void)
{
	struct watch ws = {0}, wc = {0};
	struct replies ra = {0}, rb = {0}, rc = {0};
	struct held h = {.watch_cancel = 1};
	struct rc_state st = {&ws, &wc, &ra, &rb};
	struct sb_router *r2 = start_router(0);
	uint16_t port = sb_router_port(r2);
	struct sb_client *svc = client_at(port, "rc-svc", "service", &ws);
	struct sb_client *ui = client_at(port, "rc-ui", "client", &wc);
	struct sb_client *cs[] = {svc, ui};
	struct fake f;

	CHECK_INT(sb_client_register(svc, "rc.echo", 0, handle_echo, NULL), 0);
	CHECK_INT(sb_client_register(svc, "rc.hold", 0, handle_hold, &h), 0);
	pump_online(cs, 2);

	/* Request A is at the handler; B is still in the client's output when
	 * the router goes away. */
	CHECK_INT(sb_request(ui, "rc.hold", NULL, 0, 0, on_reply, &ra, NULL), 0);
	pump_until(cs, 2, &h.calls, 1, "request A at the handler");
	sb_router_stop(r2, 0);
	sb_router_free(r2);
	CHECK_INT(sb_request(ui, "rc.echo", NULL, 0, 0, on_reply, &rb, NULL), 0);

	/* Something that accepts and hangs up keeps the port, and times the
	 * reconnect attempts. */
	fake_listen(&f, port);
	pump_tick = fake_tick;
	pump_tick_arg = &f;
	pump_cond(cs, 2, both_offline_and_ended, &st, "OFFLINE and both requests ended");
	/* The router ends what it knows with "router draining" before it
	 * closes; what it never saw ends with SB_EOFFLINE. Once each. */
	CHECK_INT(ra.err, SB_EDRAINING);
	CHECK_INT(rb.err, SB_EOFFLINE);
	CHECK_INT(h.cancels, 1);      /* the call in progress was dropped */
	CHECK_INT(ws.offline_err, 0); /* closed after its GOODBYE */
	CHECK_INT(wc.offline_err, 0);
	CHECK_INT(sb_send(ui, "rc.echo", NULL, 0), SB_EOFFLINE);
	CHECK_INT(sb_request(ui, "rc.echo", NULL, 0, 0, on_reply, &rc, NULL), SB_EOFFLINE);
	CHECK_INT(sb_client_register(svc, "rc.later", 0, handle_echo, NULL),
		  0); /* kept for later */

	uint64_t window = now_ms();
	pump_for(cs, 2, 1000);
	window = now_ms() - window;
	pump_tick = NULL;
	fake_close(&f);

	/* Backoff: attempts are MIN_MS apart or more (seen from here, give or
	 * take a stalled pump turn: MIN_MS / 2 still rules out a hot loop), and
	 * far fewer than a fixed MIN_MS would make. */
	int attempts = 0;
	uint64_t prev = 0;
	for (int i = 0; i < f.nat; i++) {
		if (strcmp(f.names[i], "rc-ui") != 0)
			continue;
		if (attempts > 0 && f.at[i] - prev < MIN_MS / 2) {
			fprintf(stderr, "  attempts %" PRIu64 " ms apart\n", f.at[i] - prev);
			CHECK(!"reconnect attempts closer than reconnect_min_ms");
		}
		prev = f.at[i];
		attempts++;
	}
	CHECK(attempts >= 3);
	CHECK(attempts <= (int)(window / MIN_MS) / 2 + 1);

	/* A new router on the same port: both come back by themselves, the
	 * service's handlers with them. */
	struct sb_router *r3 = start_router(port);
	pump_cond(cs, 2, both_reconnected, &st, "RECONNECTED on both");
	CHECK(wc.reconnected_at - wc.offline_at >= MIN_MS);
	CHECK_INT(sb_request(ui, "rc.echo", NULL, 0, 0, on_reply, &rc, NULL), 0);
	pump_until(cs, 2, &rc.terminal, 1, "a request after the restart");
	CHECK_INT(rc.err, 0);
	CHECK_STR(rc.outcome, "echoed");
	struct replies rl = {0};
	CHECK_INT(sb_request(ui, "rc.later", NULL, 0, 0, on_reply, &rl, NULL), 0);
	pump_until(cs, 2, &rl.terminal, 1, "a handler registered while offline");
	CHECK_INT(rl.err, 0);

	pump_for(cs, 2, 30);
	CHECK_INT(ra.n, 1);
	CHECK_INT(rb.n, 1);
	CHECK_INT(rc.n, 1);
	CHECK_INT(ws.online, 1);
	CHECK_INT(wc.online, 1);
	CHECK_INT(ws.offline, 1);
	CHECK_INT(wc.offline, 1);
	CHECK_INT(ws.reconnected, 1);
	CHECK_INT(wc.reconnected, 1);
	CHECK_INT(ws.error + wc.error, 0);
	sb_client_free(svc);
	sb_client_free(ui);
	sb_router_stop(r3, 0);
	sb_router_free(r3);
}

/* ---- peers: `to`, broadcast, presence, identity -------------------------- */

/* What a handler learnt about who called it. */
struct caller {
	int n;
	char peer[SB_PEER_MAX + 1];
	char role[16];
	int has_subject;
	uint32_t from;
};

static void handle_whoami(struct sb_client *c, struct sb_call *call, void *ud)
{
	struct caller *w = ud;
	const char *peer = sb_call_peer(call), *role = sb_call_role(call);

	(void)c;
	w->n++;
	snprintf(w->peer, sizeof w->peer, "%s", peer != NULL ? peer : "(null)");
	snprintf(w->role, sizeof w->role, "%s", role != NULL ? role : "(null)");
	w->has_subject = sb_call_subject(call) != NULL;
	w->from = sb_call_from(call);
	if (sb_call_is_request(call))
		CHECK_INT(sb_reply(call, w->peer, NULL, 0), 0);
}

/* sb_send_to / sb_request_to reach the named peer and nobody else, and a
 * handler knows who called; unknown and gone peers are told apart. */
static void test_to_a_named_peer(void)
{
	struct watch w[4] = {{0}};
	struct caller at_target = {0}, at_other = {0};
	struct sb_client *target = client("target-1", "service", &w[0]);
	struct sb_client *other = client("other-1", "service", &w[1]);
	struct sb_client *cli = client("asker-1", "client", &w[2]);
	struct sb_client *cs[] = {target, other, cli};
	struct replies r[6] = {{0}};

	CHECK_INT(sb_client_register(target, "whoami", 0, handle_whoami, &at_target), 0);
	CHECK_INT(sb_client_register(other, "whoami", 0, handle_whoami, &at_other), 0);
	pump_online(cs, 3);
	for (int i = 0; i < 4; i++)
		CHECK_INT(sb_request_to(cli, "target-1", "whoami", NULL, 0, LONG_MS, on_reply,
					&r[i], NULL),
			  0);
	CHECK_INT(sb_send_to(cli, "target-1", "whoami", EVENT, sizeof EVENT), 0);
	struct all_done four = {r, 4};
	pump_cond(cs, 3, all_terminal, &four, "four answers from target-1");
	pump_until(cs, 3, &at_target.n, 5, "the send to target-1");
	CHECK_INT(at_target.n, 5);
	CHECK_INT(at_other.n, 0); /* no load balancing with `to` */
	for (int i = 0; i < 4; i++) {
		CHECK_INT(r[i].err, 0);
		CHECK_STR(r[i].outcome, "asker-1"); /* the handler knew who asked */
	}
	CHECK_STR(at_target.peer, "asker-1");
	CHECK_STR(at_target.role, "client");
	CHECK_INT(at_target.has_subject, 0);
	CHECK_INT(at_target.from, sb_client_peer_id(cli));

	/* The other way: a client can be asked too (it answers "no handler"). */
	CHECK_INT(sb_request_to(target, "asker-1", "anything", NULL, 0, LONG_MS, on_reply, &r[4],
				NULL),
		  0);
	pump_until(cs, 3, &r[4].terminal, 1, "the client's answer");
	CHECK_INT(r[4].err, SB_ENOHANDLER);

	CHECK_INT(sb_request_to(cli, "ghost", "whoami", NULL, 0, LONG_MS, on_reply, &r[5], NULL),
		  0);
	pump_until(cs, 3, &r[5].terminal, 1, "unknown peer");
	CHECK_INT(r[5].err, SB_EUNKNOWNPEER);
	CHECK_STR(r[5].outcome, "no peer named ghost has connected");
	CHECK_INT(sb_request_to(cli, "bad name", "whoami", NULL, 0, 0, on_reply, &r[5], NULL),
		  SB_EINVAL);
	CHECK_INT(sb_send_to(cli, NULL, "whoami", NULL, 0), SB_EINVAL);

	/* Gone: until the asker's shard has heard, "peer gone" is possible. */
	sb_client_free(other);
	struct sb_client *left[] = {target, cli};
	int err = 0;
	for (int i = 0; i < 100 && err != SB_ENOTCONNECTED; i++) {
		struct replies g = {0};
		CHECK_INT(sb_request_to(cli, "other-1", "whoami", NULL, 0, LONG_MS, on_reply, &g,
					NULL),
			  0);
		pump_until(left, 2, &g.terminal, 1, "an answer about other-1");
		err = g.err;
		CHECK(err == SB_ENOTCONNECTED || err == SB_EPEERGONE);
	}
	CHECK_INT(err, SB_ENOTCONNECTED);
	sb_client_free(target);
	sb_client_free(cli);
}

/* Every callback of an sb_request_all(), per peer. */
struct all_replies {
	int results, chunks, terminal, after_terminal;
	int ok[3], errs[3]; /* per handler, by index in names */
	const char *names[3];
	int err; /* the terminal event's */
	int peer_at_terminal;
	struct sb_all_counts counts;
	int counts_rc;
};

static void on_all(struct sb_client *c, uint64_t req, int err, const char *outcome,
		   const void *payload, size_t len, int more, void *ud)
{
	struct all_replies *a = ud;
	const char *peer = sb_reply_peer(c);

	(void)req;
	if (a->terminal > 0)
		a->after_terminal++;
	if (more == 0) {
		a->terminal++;
		a->err = err;
		a->peer_at_terminal = peer != NULL;
		if (err == 0) {
			CHECK_STR(outcome, "$sb.all");
			a->counts_rc = sb_all_counts(payload, len, &a->counts);
		}
		return;
	}
	CHECK(peer != NULL);
	int i = 0;
	while (i < 3 && (peer == NULL || a->names[i] == NULL || strcmp(a->names[i], peer) != 0))
		i++;
	CHECK(i < 3);
	if (i == 3)
		return;
	if (more == SB_MORE_CHUNK) {
		a->chunks++;
		return;
	}
	CHECK_INT(more, SB_MORE_RESULT);
	a->results++;
	if (err == 0)
		a->ok[i]++;
	else
		a->errs[i] = err;
}

static void handle_health(struct sb_client *c, struct sb_call *call, void *ud)
{
	const char *mode = ud;

	(void)c;
	if (strcmp(mode, "ok") == 0) {
		uint8_t n[3];
		put_seq(n, 0);
		CHECK_INT(sb_reply_more(call, "log", n, 3, 1), 0);
		CHECK_INT(sb_reply_more(call, "checking", n, 3, 0), 0); /* not passed on */
		CHECK_INT(sb_reply(call, "healthy", NULL, 0), 0);
	} else if (strcmp(mode, "sick") == 0)
		CHECK_INT(sb_reply_error(call, SB_EINTERNAL, "disk full"), 0);
	/* "silent": never answers; the router's timeout cancels the call */
}

static void test_request_all(void)
{
	struct watch w[4] = {{0}};
	struct seen got[3] = {{0}};
	static const char *const names[] = {"agent-ok", "agent-sick", "agent-silent"};
	static const char *const modes[] = {"ok", "sick", "silent"};
	struct sb_client *cs[4];
	struct all_replies a = {.names = {names[0], names[1], names[2]}};

	for (int i = 0; i < 3; i++) {
		cs[i] = client(names[i], "service", &w[i]);
		CHECK_INT(sb_client_register(cs[i], "health", 0, handle_health, (void *)modes[i]),
			  0);
		CHECK_INT(sb_client_register(cs[i], "notice", 0, handle_seen, &got[i]), 0);
	}
	cs[3] = client("prober", "client", &w[3]);
	struct sb_client *cli = cs[3];
	pump_online(cs, 4);

	CHECK_INT(sb_broadcast(cli, "notice", EVENT, sizeof EVENT), 0);
	for (int i = 0; i < 3; i++)
		pump_until(cs, 4, &got[i].n, 1, "the broadcast send");

	uint64_t req = 0;
	CHECK_INT(sb_request_all(cli, "health", NULL, 0, 300, on_all, &a, &req), 0);
	CHECK(req != 0);
	pump_until(cs, 4, &a.terminal, 1, "the aggregate");
	pump_for(cs, 4, 30);
	CHECK_INT(a.terminal, 1);
	CHECK_INT(a.after_terminal, 0);
	CHECK_INT(a.err, 0);
	CHECK_INT(a.peer_at_terminal, 0);
	CHECK_INT(a.results, 3);
	CHECK_INT(a.chunks, 1);
	CHECK_INT(a.ok[0], 1);
	CHECK_INT(a.errs[1], SB_EINTERNAL);
	CHECK_INT(a.errs[2], SB_ETIMEOUT);
	CHECK_INT(a.counts_rc, 0);
	CHECK_INT(a.counts.peers, 3);
	CHECK_INT(a.counts.ok, 1);
	CHECK_INT(a.counts.errors, 1);
	CHECK_INT(a.counts.timeouts, 1);
	CHECK_INT(a.counts.gone, 0);

	/* Nobody handles it: one terminal error. */
	struct all_replies none = {0};
	CHECK_INT(sb_request_all(cli, "nobody.home", NULL, 0, 0, on_all, &none, NULL), 0);
	pump_until(cs, 4, &none.terminal, 1, "no connected peers");
	CHECK_INT(none.err, SB_ENOPEERS);
	CHECK_INT(none.results, 0);

	/* Cancelled while the silent one holds it: once SB_ECANCELLED, then
	 * nothing, not even the aggregate. */
	struct all_replies cancelled = {.names = {names[0], names[1], names[2]}};
	CHECK_INT(sb_request_all(cli, "health", NULL, 0, LONG_MS, on_all, &cancelled, &req), 0);
	pump_until(cs, 4, &cancelled.results, 2, "the two who answer");
	CHECK_INT(sb_cancel(cli, req), 0);
	pump_until(cs, 4, &cancelled.terminal, 1, "the cancel");
	pump_for(cs, 4, 50);
	CHECK_INT(cancelled.err, SB_ECANCELLED);
	CHECK_INT(cancelled.after_terminal, 0);

	struct sb_all_counts counts;
	static const uint8_t not_counts[] = {0x81, 0xa5, 'p', 'e', 'e', 'r', 's', 0xa1, 'x'};
	CHECK_INT(sb_all_counts(not_counts, sizeof not_counts, &counts), SB_EINVAL);
	CHECK_INT(sb_all_counts(NULL, 0, &counts), SB_EINVAL);
	for (int i = 0; i < 4; i++)
		sb_client_free(cs[i]);
}

/* Presence events seen by one client. */
struct sightings {
	int connected, disconnected, other;
	char last[SB_PEER_MAX + 1];
	char role[16];
	uint32_t last_id;
};

static void on_presence_event(struct sb_client *c, const struct sb_presence *p, void *ud)
{
	struct sightings *s = ud;

	(void)c;
	if (p->event == SB_PEER_CONNECTED)
		s->connected++;
	else if (p->event == SB_PEER_DISCONNECTED)
		s->disconnected++;
	else
		s->other++;
	snprintf(s->last, sizeof s->last, "%s", p->peer);
	snprintf(s->role, sizeof s->role, "%s", p->role);
	s->last_id = p->peer_id;
	CHECK(p->subject == NULL);
}

static void test_presence(void)
{
	struct watch ww = {0}, wn = {0};
	struct sightings s = {0};
	struct sb_client *watcher = client("watcher-1", "client", &ww);
	CHECK_INT(sb_client_presence(watcher, on_presence_event, &s), 0);
	struct sb_client *one[] = {watcher};
	pump_online(one, 1); /* online once the subscription is ACKed */

	struct sb_client *comer = client("comer-1", "service", &wn);
	struct sb_client *both[] = {watcher, comer};
	pump_online(both, 2);
	pump_until(both, 2, &s.connected, 1, "comer-1 connected");
	CHECK_STR(s.last, "comer-1");
	CHECK_STR(s.role, "service");
	CHECK_INT(s.last_id, sb_client_peer_id(comer));
	sb_client_free(comer);
	pump_until(one, 1, &s.disconnected, 1, "comer-1 disconnected");
	CHECK_STR(s.last, "comer-1");

	/* Unsubscribed: no more events. */
	CHECK_INT(sb_client_presence(watcher, NULL, NULL), 0);
	pump_for(one, 1, 30);
	comer = client("comer-2", "client", &wn);
	struct sb_client *again[] = {watcher, comer};
	pump_online(again, 2);
	pump_for(again, 2, 100);
	CHECK_INT(s.connected, 1);
	CHECK_INT(s.other, 0);
	CHECK_INT(ww.error, 0);
	sb_client_free(comer);
	sb_client_free(watcher);
}

/* Every call's sender by name, across the router's 1,024-sender window:
 * the library forgets exactly when the router does, so no call from a
 * sender it was told about lacks its name. */
enum { WIN = 1025 };
static struct lite win[WIN];

struct names_seen {
	int calls, wrong;
};

static void handle_win(struct sb_client *c, struct sb_call *call, void *ud)
{
	struct names_seen *s = ud;
	const char *peer = sb_call_peer(call);
	char want[32] = "?";

	(void)c;
	s->calls++;
	for (int i = 0; i < WIN; i++)
		if (win[i].id == sb_call_from(call))
			snprintf(want, sizeof want, "win-%d", i);
	if (peer == NULL || strcmp(peer, want) != 0) {
		if (s->wrong++ == 0)
			fprintf(stderr, "  call from %s named %s\n", want, peer ? peer : "(null)");
	}
}

static void test_caller_identity_window(void)
{
	struct watch w = {0};
	struct names_seen seen = {0};
	struct sb_client *svc = client("win-svc", "service", &w);
	struct sb_client *cs[] = {svc};

	CHECK_INT(sb_client_register(svc, "win", 0, handle_win, &seen), 0);
	pump_online(cs, 1);
	for (int i = 0; i < WIN; i++) {
		char name[32];
		snprintf(name, sizeof name, "win-%d", i);
		lite_hello(&win[i], PORT, name);
	}
	/* 1,024 senders fill the window; the first one again is still known
	 * on both sides, without a second introduction. */
	for (int i = 0; i < WIN - 1; i++) {
		lite_send(&win[i], "win");
		if (i % 64 == 0)
			pump_for(cs, 1, 1);
	}
	pump_until(cs, 1, &seen.calls, WIN - 1, "one send from each of 1,024");
	lite_send(&win[0], "win");
	pump_until(cs, 1, &seen.calls, WIN, "the first again");
	/* The 1,025th turns the window over; senders from before it are
	 * introduced again, and the library follows. */
	int again[] = {WIN - 1, 0, 1, 2, WIN - 1, 3, 0};
	for (size_t i = 0; i < sizeof again / sizeof again[0]; i++)
		lite_send(&win[again[i]], "win");
	pump_until(cs, 1, &seen.calls, WIN + 7, "the second round");
	CHECK_INT(seen.wrong, 0);
	for (int i = 0; i < WIN; i++)
		close(win[i].fd);
	sb_client_free(svc);
}

/* ---- argument schemas --------------------------------------------------- */

/* {"keys": {"email": {"type": "str"}}, "required": ["email"]} */
static const uint8_t EMAIL_SCHEMA[] = {0x82, 0xa4, 'k',  'e',  'y',  's', 0x81, 0xa5, 'e', 'm',
				       'a',  'i',  'l',  0x81, 0xa4, 't', 'y',  'p',  'e', 0xa3,
				       's',  't',  'r',  0xa8, 'r',  'e', 'q',  'u',  'i', 'r',
				       'e',  'd',  0x91, 0xa5, 'e',  'm', 'a',  'i',  'l'};
static const uint8_t NO_EMAIL[] = {0x80};
static const uint8_t EMAIL_INT[] = {0x81, 0xa5, 'e', 'm', 'a', 'i', 'l', 0x07};
static const uint8_t EMAIL_OK[] = {0x81, 0xa5, 'e', 'm', 'a', 'i', 'l', 0xa1, 'a'};

struct sc_state {
	struct watch *ws, *wc;
};

static int sc_reconnected(void *arg)
{
	struct sc_state *s = arg;
	return s->ws->reconnected >= 1 && s->wc->reconnected >= 1;
}

/* The router answers bad arguments for the handler; the handler sees only
 * good ones. Returns how many calls the handler got. */
static void check_schema_enforced(struct sb_client *const *cs, struct sb_client *ui,
				  const int *calls, int before)
{
	struct replies r1 = {0}, r2 = {0}, r3 = {0};
	CHECK_INT(sb_request(ui, "sc.user", NO_EMAIL, sizeof NO_EMAIL, 0, on_reply, &r1, NULL), 0);
	CHECK_INT(sb_request(ui, "sc.user", EMAIL_INT, sizeof EMAIL_INT, 0, on_reply, &r2, NULL),
		  0);
	CHECK_INT(sb_request(ui, "sc.user", EMAIL_OK, sizeof EMAIL_OK, 0, on_reply, &r3, NULL), 0);
	pump_until(cs, 2, &r3.terminal, 1, "the good request's reply");
	pump_until(cs, 2, &r2.terminal, 1, "the refusals");
	CHECK_INT(r1.err, SB_EINVAL);
	CHECK_STR(r1.outcome, "missing required key \"email\"");
	CHECK_INT(r2.err, SB_EINVAL);
	CHECK_STR(r2.outcome, "key \"email\": expected str, got uint");
	CHECK_INT(r3.err, 0);
	CHECK_STR(r3.outcome, "echoed");
	CHECK_INT(*calls, before + 1);
}

/* `to` and broadcast skip load balancing, not the schema: a request to the
 * named peer, or to every handler, that breaks it is refused before any
 * handler sees it. */
static void test_schema_applies_to_peers_and_broadcasts(void)
{
	struct watch ws[2] = {{0}}, wc = {0};
	int calls = 0;
	struct sb_client *a = client("sc-to-a", "service", &ws[0]);
	struct sb_client *b = client("sc-to-b", "service", &ws[1]);
	struct sb_client *ui = client("sc-to-ui", "client", &wc);
	struct sb_client *cs[] = {a, b, ui};
	struct replies r[3] = {{0}};
	struct all_replies all = {.names = {"sc-to-a", "sc-to-b"}}, bad = {0};

	CHECK_INT(sb_client_register_schema(a, "sc.peer", 0, EMAIL_SCHEMA, sizeof EMAIL_SCHEMA,
					    handle_echo, &calls),
		  0);
	CHECK_INT(sb_client_register_schema(b, "sc.peer", 0, EMAIL_SCHEMA, sizeof EMAIL_SCHEMA,
					    handle_echo, &calls),
		  0);
	pump_online(cs, 3);
	CHECK_INT(sb_request_to(ui, "sc-to-b", "sc.peer", NO_EMAIL, sizeof NO_EMAIL, LONG_MS,
				on_reply, &r[0], NULL),
		  0);
	CHECK_INT(sb_request_to(ui, "sc-to-b", "sc.peer", EMAIL_OK, sizeof EMAIL_OK, LONG_MS,
				on_reply, &r[1], NULL),
		  0);
	CHECK_INT(sb_request_all(ui, "sc.peer", EMAIL_INT, sizeof EMAIL_INT, LONG_MS, on_all, &bad,
				 NULL),
		  0);
	CHECK_INT(sb_request_all(ui, "sc.peer", EMAIL_OK, sizeof EMAIL_OK, LONG_MS, on_all, &all,
				 NULL),
		  0);
	pump_until(cs, 3, &r[1].terminal, 1, "the good request to sc-to-b");
	pump_until(cs, 3, &all.terminal, 1, "the good broadcast");
	pump_until(cs, 3, &bad.terminal, 1, "the refused broadcast");
	pump_until(cs, 3, &r[0].terminal, 1, "the refused request to sc-to-b");
	CHECK_INT(r[0].err, SB_EINVAL);
	CHECK_STR(r[0].outcome, "missing required key \"email\"");
	CHECK_INT(r[1].err, 0);
	CHECK_INT(bad.err, SB_EINVAL);
	CHECK_INT(bad.results, 0); /* refused whole: no handler saw it */
	CHECK_INT(all.err, 0);
	CHECK_INT(all.results, 2);
	CHECK_INT(calls, 3); /* the good request to b, and the good broadcast's two */
	sb_client_free(a);
	sb_client_free(b);
	sb_client_free(ui);
}

static void test_register_with_a_schema_and_after_reconnect(void)
{
	struct watch ws = {0}, wc = {0};
	int calls = 0;
	struct sb_router *r2 = start_router(0);
	uint16_t port = sb_router_port(r2);
	struct sb_client *svc = client_at(port, "sc-svc", "service", &ws);
	struct sb_client *ui = client_at(port, "sc-ui", "client", &wc);
	struct sb_client *cs[] = {svc, ui};

	/* What the router would refuse is refused here, at once. */
	static const uint8_t two_values[] = {0x81, 0xa4, 'k',  'e',  'y', 's', 0x81, 0xa1,
					     'a',  0x81, 0xa4, 't',  'y', 'p', 'e',  0xa3,
					     'i',  'n',  't',  0xa1, 'x'}; /* a trailing byte:
									      two values */
	static const uint8_t not_map[] = {0x91, 0xa1, 'a'};
	CHECK_INT(sb_client_register_schema(svc, "sc.user", 0, two_values, sizeof two_values,
					    handle_echo, &calls),
		  SB_EINVAL);
	CHECK_INT(sb_client_register_schema(svc, "sc.user", 0, not_map, sizeof not_map, handle_echo,
					    &calls),
		  SB_EINVAL);
	CHECK_INT(sb_client_register_schema(svc, "sc.user", 0, NULL, 5, handle_echo, &calls),
		  SB_EINVAL);
	CHECK_INT(sb_client_register_schema(svc, "sc.user", 0, EMAIL_SCHEMA, sizeof EMAIL_SCHEMA,
					    handle_echo, &calls),
		  0);
	pump_online(cs, 2);
	check_schema_enforced(cs, ui, &calls, 0);

	/* A new router on the same port knows nothing: the registration, its
	 * schema with it, comes back by itself. */
	sb_router_stop(r2, 0);
	sb_router_free(r2);
	struct sb_router *r3 = start_router(port);
	struct sc_state st = {&ws, &wc};
	pump_cond(cs, 2, sc_reconnected, &st, "RECONNECTED on both");
	check_schema_enforced(cs, ui, &calls, 1);
	CHECK_INT(ws.error + wc.error, 0);
	sb_client_free(svc);
	sb_client_free(ui);
	sb_router_stop(r3, 0);
	sb_router_free(r3);
}

/* A schema over a router's frame limit: dropped when connecting (reported
 * as an error, not a reconnect loop), refused at once while connected. */
static void test_schema_over_the_frame_limit(void)
{
	struct sb_router_config cfg;
	struct watch ws = {0};
	int err = 0;
	sb_router_config_init(&cfg);
	cfg.port = 0;
	cfg.shards = 1;
	cfg.log_level = 0;
	cfg.max_frame = 256;
	cfg.out_max = 4096;
	struct sb_router *small = sb_router_new(&cfg, &err);
	CHECK(small != NULL);
	CHECK_INT(sb_router_start(small), 0);

	/* {"required": ["key00", ..., "key59"]}: 373 bytes */
	uint8_t big[16 + 60 * 6];
	size_t n = 0;
	memcpy(big, "\x81\xa8required\xdc\x00\x3c", 13);
	n = 13;
	for (int i = 0; i < 60; i++) {
		big[n++] = 0xa5;
		n += (size_t)snprintf((char *)big + n, 6, "key%02d", i);
	}
	CHECK_INT(sb_schema_validate(big, n, NULL, 0), 0);
	struct sb_client *svc = client_at(sb_router_port(small), "big-svc", "service", &ws);
	struct sb_client *cs[] = {svc};
	CHECK_INT(sb_client_register_schema(svc, "big", 0, big, n, handle_echo, NULL), 0);
	CHECK_INT(sb_client_register(svc, "small", 0, handle_echo, NULL), 0);
	pump_online(cs, 1);
	CHECK_INT(ws.error, 1);
	CHECK_INT(ws.error_err, SB_ETOOLARGE);
	CHECK_INT(sb_client_unregister(svc, "big"), SB_EINVAL); /* it is gone */
	CHECK_INT(sb_client_unregister(svc, "small"), 0);
	CHECK_INT(sb_client_register_schema(svc, "big", 0, big, n, handle_echo, NULL),
		  SB_ETOOLARGE);
	pump_for(cs, 1, 30);
	CHECK_INT(ws.offline, 0);
	sb_client_free(svc);
	sb_router_stop(small, 0);
	sb_router_free(small);
}

/* ---- argument checks ---------------------------------------------------- */

static void test_bad_arguments(void)
{
	struct sb_client_config cfg;
	struct watch w = {0};
	int err = 0;

	sb_client_config_init(&cfg);
	cfg.role = "admin";
	CHECK(sb_client_new(&cfg, &err) == NULL);
	CHECK_INT(err, SB_EINVAL);
	sb_client_config_init(&cfg);
	cfg.name = "has space";
	CHECK(sb_client_new(&cfg, &err) == NULL);
	CHECK_INT(err, SB_EINVAL);
	sb_client_config_init(&cfg);
	cfg.reconnect_min_ms = 10000;
	CHECK(sb_client_new(&cfg, &err) == NULL);
	CHECK_INT(err, SB_EINVAL);

	struct sb_client *cli = client("args-cli", "client", &w);
	struct sb_client *svc = client("args-svc", "service", &w);
	struct sb_client *cs[] = {cli, svc};
	struct replies r = {0};
	CHECK_INT(sb_client_register(cli, "x", 0, handle_echo, NULL), SB_EFORBIDDEN);
	CHECK_INT(sb_client_register(svc, "$sb.routes", 0, handle_echo, NULL), SB_EINVAL);
	CHECK_INT(sb_client_register(svc, "bad name", 0, handle_echo, NULL), SB_EINVAL);
	CHECK_INT(sb_client_register(svc, "x", 0x80, handle_echo, NULL), SB_EINVAL);
	CHECK_INT(sb_client_register(svc, "x", 0, NULL, NULL), SB_EINVAL);
	CHECK_INT(sb_client_unregister(svc, "never"), SB_EINVAL);
	pump_online(cs, 2);
	static const uint8_t bad[] = {0x92, 0x01}; /* an array missing an element */
	CHECK_INT(sb_send(cli, "x", bad, sizeof bad), SB_EINVAL);
	CHECK_INT(sb_send(cli, "x", NULL, 5), SB_EINVAL);
	CHECK_INT(sb_request(cli, "x", bad, sizeof bad, 0, on_reply, &r, NULL), SB_EINVAL);
	CHECK_INT(sb_request(cli, "x", NULL, 0, 0, NULL, NULL, NULL), SB_EINVAL);
	CHECK_INT(sb_request(cli, "", NULL, 0, 0, on_reply, &r, NULL), SB_EINVAL);
	/* Over the router's frame limit (WELCOME said 1 MiB). */
	size_t big = (1u << 20) + 16;
	uint8_t *blob = calloc(1, big);
	blob[0] = 0xc6; /* bin32 */
	blob[1] = (uint8_t)((big - 5) >> 24);
	blob[2] = (uint8_t)((big - 5) >> 16);
	blob[3] = (uint8_t)((big - 5) >> 8);
	blob[4] = (uint8_t)(big - 5);
	CHECK_INT(sb_send(cli, "x", blob, big), SB_ETOOLARGE);
	free(blob);
	pump_for(cs, 2, 30);
	CHECK_INT(r.n, 0);
	CHECK_INT(sb_client_online(cli), 1);
	sb_client_free(cli);
	sb_client_free(svc);
}

int main(void)
{
	R = start_router(0);
	PORT = sb_router_port(R);
	RUN(test_fire_and_forget);
	RUN(test_request_reply_with_outcome);
	RUN(test_progress_then_final);
	RUN(test_stream_of_1000_chunks_in_order);
	RUN(test_cancel_mid_stream);
	RUN(test_timeout);
	RUN(test_no_handler);
	RUN(test_catch_all);
	RUN(test_on_writable_resumes_a_stream);
	RUN(test_handler_freed_mid_stream);
	RUN(test_chained_request_from_a_handler);
	RUN(test_leave_finishes_its_calls_first);
	RUN(test_two_instances_share_and_fail_over);
	RUN(test_async_reply);
	RUN(test_request_wait_blocking);
	RUN(test_many_requests_each_answered_once);
	RUN(test_duplicate_name);
	RUN(test_offline_sends);
	RUN(test_bad_arguments);
	RUN(test_local_deadline_and_bad_payload);
	RUN(test_goodbye_and_fatal_error);
	RUN(test_reconnect_after_router_restart);
	RUN(test_to_a_named_peer);
	RUN(test_request_all);
	RUN(test_presence);
	RUN(test_caller_identity_window);
	RUN(test_register_with_a_schema_and_after_reconnect);
	RUN(test_schema_over_the_frame_limit);
	RUN(test_schema_applies_to_peers_and_broadcasts);
	sb_router_stop(R, 0);
	sb_router_free(R);
	return TEST_EXIT();
}
