/* Streams through the client library: 1,000 chunks in order, a stream too
 * big for the output queue resumed by on_writable, a cancel from the reply
 * callback, and a handler freed mid-stream. An in-process router; services
 * and clients made with the library, pumped from one thread. */
#include <switchboard/client.h>
#include <switchboard/router.h>

#include "support/clients.h"
#include "support/pump.h"
#include "support/router.h"
#include "support/testlib.h"

static void handle_read(struct sb_call *call, void *ud)
{
	uint8_t n[3];

	(void)ud;
	for (unsigned i = 0; i < 1000; i++) {
		put_seq(n, i);
		CHECK_INT(sb_reply_more(call, SB_MORE_CHUNK, "file.read-chunk", n, 3), 0);
	}
	CHECK_INT(sb_reply(call, "file.read-done", NULL, 0), 0);
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
		p->rc = sb_reply_more(p->h->call, SB_MORE_CHUNK, "file.read-chunk", n, 3);
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

#define BIG_CHUNK 16384

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
		int rc = sb_reply_more(b->h.call, SB_MORE_CHUNK, "big-chunk", chunk, sizeof chunk);
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

static void big_reply(const struct sb_reply *rep, void *ud)
{
	struct big_stream *b = ud;
	unsigned seq;
	if (rep->more == SB_MORE_NONE) {
		b->done++;
		b->err = rep->err;
		return;
	}
	memcpy(&seq, (const uint8_t *)rep->payload + 3, sizeof seq);
	b->out_of_order += rep->len != 3 + BIG_CHUNK || seq != b->got;
	b->got++;
}

static void test_stream_of_1000_chunks_in_order(void)
{
	router_start(NULL);
	struct watch ws = {0}, wc = {0};
	struct replies r = {0};
	struct sb_client *fs = client("fs-2", "service", &ws);
	struct sb_client *ui = client("ui-2", "client", &wc);
	struct sb_client *cs[] = {fs, ui};

	CHECK_INT(sb_client_register(fs, "file.read", NULL, handle_read, NULL), 0);
	pump_online(cs, 2);
	CHECK_INT(sb_request(ui, "file.read", NULL, 0, NULL, on_reply, &r, NULL), 0);
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
	router_stop();
}

static void test_cancel_mid_stream(void)
{
	router_start(NULL);
	struct watch ws = {0}, wc = {0};
	struct replies r = {.cancel_at = 10};
	struct held h = {.watch_cancel = 1};
	struct producer prod = {.h = &h};
	struct cancel_done both = {&r, &h};
	struct sb_client *fs = client("fs-3", "service", &ws);
	struct sb_client *ui = client("ui-3", "client", &wc);

	r.c = ui;
	struct sb_client *cs[] = {fs, ui};

	CHECK_INT(sb_client_register(fs, "file.tail", NULL, handle_hold, &h), 0);
	pump_online(cs, 2);
	CHECK_INT(sb_request(ui, "file.tail", NULL, 0, NULL, on_reply, &r, NULL), 0);
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
	router_stop();
}

/* sb_reply_more() fails with SB_EOVERLOADED when out_max is queued, and
 * on_writable says when to go on: the whole stream arrives, in order,
 * without the producer polling. */
static void test_on_writable_resumes_a_stream(void)
{
	router_start(NULL);
	struct big_stream b = {0};
	struct watch ws = {.ud = &b}, wc = {0};
	struct sb_client_config cfg;
	int err = 0;

	sb_client_config_init(&cfg);
	cfg.port = PORT;
	cfg.name = "big-svc";
	cfg.role = SB_ROLE_SERVICE;
	cfg.on_state = on_state;
	cfg.on_writable = big_writable;
	cfg.ud = &ws;
	cfg.out_max = 4 * (BIG_CHUNK + 64);
	struct sb_client *svc = sb_client_new(&cfg, &err);
	struct sb_client *ui = client("big-ui", "client", &wc);
	struct sb_client *cs[] = {svc, ui};

	CHECK_INT(sb_client_register(svc, "big.read", NULL, handle_hold, &b.h), 0);
	pump_online(cs, 2);
	CHECK_INT(
		sb_request(ui, "big.read", NULL, 0,
			   &(struct sb_opts){.size = sizeof(struct sb_opts), .timeout_ms = LONG_MS},
			   big_reply, &b, NULL),
		0);
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
	router_stop();
}

static void test_handler_freed_mid_stream(void)
{
	router_start(NULL);
	struct watch ws = {0}, wc = {0};
	struct replies r = {0};
	struct held h = {.watch_cancel = 1};
	struct sb_client *fs = client("fs-4", "service", &ws);
	struct sb_client *ui = client("ui-6", "client", &wc);
	struct sb_client *cs[] = {fs, ui};
	uint8_t n[3];

	CHECK_INT(sb_client_register(fs, "file.tail", NULL, handle_hold, &h), 0);
	pump_online(cs, 2);
	CHECK_INT(sb_request(ui, "file.tail", NULL, 0, NULL, on_reply, &r, NULL), 0);
	pump_until(cs, 2, &h.calls, 1, "the request at the handler");
	for (unsigned i = 0; i < 5; i++) {
		put_seq(n, i);
		CHECK_INT(sb_reply_more(h.call, SB_MORE_CHUNK, "file.read-chunk", n, 3), 0);
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
	router_stop();
}

int main(void)
{
	RUN(test_stream_of_1000_chunks_in_order);
	RUN(test_cancel_mid_stream);
	RUN(test_on_writable_resumes_a_stream);
	RUN(test_handler_freed_mid_stream);
	return TEST_EXIT();
}
