/* Requests through the client library: fire-and-forget, outcomes, progress,
 * timeouts, no handler, a catch-all, a handler that answers later, and
 * 20,000 requests each answered once. An in-process router; services and
 * clients made with nothing but the library, pumped from one thread. */
#include <msgpack.h>
#include <switchboard/client.h>
#include <switchboard/router.h>

#include "support/clients.h"
#include "support/clock.h"
#include "support/pump.h"
#include "support/router.h"
#include "support/testlib.h"

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
/* An error's details: {"field": "amount"}, for the program, not people. */
static const uint8_t DETAILS[] = {0x81, 0xa5, 'f', 'i', 'e', 'l', 'd',
				  0xa6, 'a',  'm', 'o', 'u', 'n', 't'};

static void handle_transfer(struct sb_call *call, void *ud)
{
	size_t len;
	const void *p = sb_call_payload(call, &len);
	int64_t amount = unpack_amount(p, len);

	(void)ud;
	if (amount < 0)
		CHECK_INT(
			sb_reply_error(call, SB_EINVAL, "amount missing", DETAILS, sizeof DETAILS),
			0);
	else if (amount <= 100)
		CHECK_INT(sb_reply(call, "transferred", NULL, 0), 0);
	else if (amount <= 1000)
		CHECK_INT(sb_reply(call, "pending", NULL, 0), 0);
	else
		CHECK_INT(sb_reply(call, "insufficient funds", BALANCE, sizeof BALANCE), 0);
}

static void handle_copy(struct sb_call *call, void *ud)
{
	uint8_t n[3];

	(void)ud;
	/* Only progress and chunks keep a request open: anything else is
	 * refused, sends nothing, and leaves the call to be answered. */
	put_seq(n, 0);
	CHECK_INT(sb_reply_more(call, SB_MORE_RESULT, "file.copying", n, 3), SB_EINVAL);
	CHECK_INT(sb_reply_more(call, SB_MORE_NONE, "file.copying", n, 3), SB_EINVAL);
	for (unsigned i = 0; i < 3; i++) {
		put_seq(n, i);
		CHECK_INT(sb_reply_more(call, SB_MORE_PROGRESS, "file.copying", n, 3), 0);
	}
	CHECK_INT(sb_reply(call, "file.copied", NULL, 0), 0);
}

/* Requests kept LOAD_WINDOW deep from inside their own reply callbacks. */
struct load {
	struct sb_client *c;
	int sent, done, wrong, twice;
	uint8_t *answered; /* per sequence number */
};

enum { LOAD_TOTAL = 20000, LOAD_WINDOW = 256 };

static void on_load_reply(const struct sb_reply *rep, void *ud);

static void load_send(struct load *ld)
{
	uint32_t seq = (uint32_t)ld->sent;
	uint8_t pl[5] = {0xce, (uint8_t)(seq >> 24), (uint8_t)(seq >> 16), (uint8_t)(seq >> 8),
			 (uint8_t)seq};
	CHECK_INT(
		sb_request(ld->c, "load.echo", pl, sizeof pl,
			   &(struct sb_opts){.size = sizeof(struct sb_opts), .timeout_ms = LONG_MS},
			   on_load_reply, ld, NULL),
		0);
	ld->sent++;
}

static void on_load_reply(const struct sb_reply *rep, void *ud)
{
	struct load *ld = ud;
	const uint8_t *p = rep->payload;

	if (rep->err != 0 || rep->more || rep->len != 5 || strcmp(rep->outcome, "echoed") != 0) {
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

static void test_fire_and_forget(void)
{
	router_start(NULL);
	struct watch ws = {0}, wc = {0};
	struct seen seen = {0};
	struct sb_client *svc = client("audit-1", "service", &ws);
	struct sb_client *cli = client("shop-1", "client", &wc);
	struct sb_client *cs[] = {svc, cli};

	CHECK_INT(sb_client_register(svc, "audit.log", NULL, handle_seen, &seen), 0);
	pump_online(cs, 2);
	CHECK_INT(ws.online, 1);
	CHECK_INT(wc.online, 1);
	CHECK_STR(sb_client_name(svc), "audit-1");

	CHECK_INT(sb_send(cli, "audit.log", EVENT, sizeof EVENT, NULL), 0);
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
	router_stop();
}

static void test_request_reply_with_outcome(void)
{
	router_start(NULL);
	static const uint64_t amounts[] = {50, 500, 5000};
	static const char *const outcomes[] = {"transferred", "pending", "insufficient funds"};
	struct watch ws = {0}, wc = {0};
	struct replies r[3] = {{0}};
	struct sb_client *bank = client("bank-1", "service", &ws);
	struct sb_client *shop = client("shop-2", "client", &wc);
	struct sb_client *cs[] = {bank, shop};
	int done = 0;

	CHECK_INT(sb_client_register(bank, "transfer", NULL, handle_transfer, NULL), 0);
	pump_online(cs, 2);
	for (int i = 0; i < 3; i++) {
		msgpack_sbuffer sb;
		pack_amount(&sb, amounts[i]);
		CHECK_INT(sb_request(shop, "transfer", sb.data, sb.size,
				     &(struct sb_opts){.size = sizeof(struct sb_opts),
						       .timeout_ms = LONG_MS},
				     on_reply, &r[i], NULL),
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

	/* An error carries its details to the requester, as its payload. */
	struct replies bad = {0};
	CHECK_INT(sb_request(shop, "transfer", NULL, 0, NULL, on_reply, &bad, NULL), 0);
	pump_until(cs, 2, &bad.terminal, 1, "the refused transfer");
	CHECK_INT(bad.err, SB_EINVAL);
	CHECK_STR(bad.outcome, "amount missing");
	CHECK(bad.len == sizeof DETAILS && memcmp(bad.payload, DETAILS, sizeof DETAILS) == 0);
	sb_client_free(bank);
	sb_client_free(shop);
	router_stop();
}

/* {"limit": 100}: what a card service tells a program about a refusal. */
static const uint8_t LIMIT[] = {0x81, 0xa5, 'l', 'i', 'm', 'i', 't', 0x64};

/* Fails with the application's own code, as the tunnel's handlers throw
 * {code: "MYERRCODE", msg}; the refusals come first, each leaving the call
 * open for the answer that follows. */
static void handle_charge(struct sb_call *call, void *ud)
{
	(void)ud;
	CHECK_INT(sb_reply_error(call, SB_EAPP, "no code", NULL, 0), SB_EINVAL);
	CHECK_INT(sb_reply_app_error(call, NULL, "no code", NULL, 0), SB_EINVAL);
	CHECK_INT(sb_reply_app_error(call, "", "empty", NULL, 0), SB_EINVAL);
	CHECK_INT(sb_reply_app_error(call, "TWO WORDS", "a space", NULL, 0), SB_EINVAL);
	char long_code[SB_APPCODE_MAX + 2];
	memset(long_code, 'X', sizeof long_code - 1);
	long_code[sizeof long_code - 1] = 0;
	CHECK_INT(sb_reply_app_error(call, long_code, "65 bytes", NULL, 0), SB_EINVAL);
	CHECK_INT(sb_reply_app_error(call, "CARD_DECLINED", "the card was declined", LIMIT,
				     sizeof LIMIT),
		  0);
}

/* The per-peer results of a broadcast charge. */
struct declines {
	int results, with_code, terminal;
};

static void on_declines(const struct sb_reply *rep, void *ud)
{
	struct declines *d = ud;

	if (rep->more == SB_MORE_NONE) {
		d->terminal++;
		return;
	}
	d->results++;
	if (rep->err == SB_EAPP && rep->app_code != NULL &&
	    strcmp(rep->app_code, "CARD_DECLINED") == 0 && rep->peer != NULL &&
	    strcmp(rep->peer, "cards-1") == 0 && rep->len == sizeof LIMIT &&
	    memcmp(rep->payload, LIMIT, sizeof LIMIT) == 0)
		d->with_code++;
}

/* A handler fails with an application code; the requester reads the code,
 * the message and the details, and can never take a router's code for an
 * application's: those come without one. */
static void test_application_error(void)
{
	router_start(NULL);
	struct watch ws = {0}, wc = {0};
	struct sb_client *cards = client("cards-1", "service", &ws);
	struct sb_client *shop = client("shop-3", "client", &wc);
	struct sb_client *cs[] = {cards, shop};

	CHECK_INT(sb_client_register(cards, "charge", NULL, handle_charge, NULL), 0);
	pump_online(cs, 2);
	struct replies r = {0}, nh = {0};
	CHECK_INT(sb_request(shop, "charge", NULL, 0, NULL, on_reply, &r, NULL), 0);
	CHECK_INT(sb_request(shop, "nobody.charges", NULL, 0, NULL, on_reply, &nh, NULL), 0);
	pump_until(cs, 2, &r.terminal, 1, "the declined charge");
	pump_until(cs, 2, &nh.terminal, 1, "no handler");
	CHECK_INT(r.n, 1);
	CHECK_INT(r.err, SB_EAPP);
	CHECK_STR(r.app_code, "CARD_DECLINED");
	CHECK_STR(r.outcome, "the card was declined");
	CHECK(r.len == sizeof LIMIT && memcmp(r.payload, LIMIT, sizeof LIMIT) == 0);
	CHECK_STR(sb_errname(r.err), "EAPP");
	CHECK_STR(sb_strerror(r.err), "application error");
	CHECK_INT(nh.err, SB_ENOHANDLER);
	CHECK_STR(nh.app_code, "");

	/* In a broadcast the router names the peer, and the code stays. */
	struct declines d = {0};
	CHECK_INT(sb_request(shop, "charge", NULL, 0,
			     &(struct sb_opts){.size = sizeof(struct sb_opts), .flags = SB_OPT_ALL},
			     on_declines, &d, NULL),
		  0);
	pump_until(cs, 2, &d.terminal, 1, "the broadcast charge");
	CHECK_INT(d.results, 1);
	CHECK_INT(d.with_code, 1);
	sb_client_free(cards);
	sb_client_free(shop);
	router_stop();
}

/* What a handler saw of the headers of the last call it got. */
struct hseen {
	int calls;
	size_t n;
	char device[64], trace[128], first_key[64];
	int payload_same;
};

static const char TRACE[] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

static void hseen_record(struct hseen *s, struct sb_call *call)
{
	const struct sb_header *h;
	size_t len;
	const void *p = sb_call_payload(call, &len);
	const char *dev = sb_call_header(call, "device"), *tp = sb_call_header(call, "traceparent");

	s->calls++;
	s->n = sb_call_headers(call, &h);
	snprintf(s->first_key, sizeof s->first_key, "%s", s->n > 0 ? h[0].key : "");
	snprintf(s->device, sizeof s->device, "%s", dev != NULL ? dev : "");
	snprintf(s->trace, sizeof s->trace, "%s", tp != NULL ? tp : "");
	s->payload_same = len == sizeof BALANCE && memcmp(p, BALANCE, len) == 0;
}

static void handle_lights(struct sb_call *call, void *ud)
{
	hseen_record(ud, call);
	if (sb_call_is_request(call))
		CHECK_INT(sb_reply(call, "on", NULL, 0), 0);
}

/* A requester sets headers beside the payload; the handler reads each one,
 * in order, the payload untouched, from requesters on either shard, for a
 * request, a send and a broadcast; what the library can tell is wrong is
 * refused before it leaves. */
static void test_headers_reach_the_handler(void)
{
	router_start(NULL);
	struct watch w1 = {0}, w2 = {0}, w3 = {0};
	struct sb_client *home = client("home-1", "service", &w1);
	struct sb_client *a = client("phone-1", "client", &w2);
	struct sb_client *b = client("phone-2", "client", &w3); /* the other shard */
	struct sb_client *cs[] = {home, a, b};
	struct hseen s = {0};

	CHECK_INT(sb_client_register(home, "lights", NULL, handle_lights, &s), 0);
	pump_online(cs, 3);
	struct sb_header h[] = {{"device", "kitchen sensor"}, {"idempotency-key", "k-42"}};
	struct sb_opts o = SB_OPTS_INIT;
	o.headers = h;
	o.nheaders = 2;
	for (int i = 0; i < 2; i++) {
		struct replies r = {0};
		CHECK_INT(sb_request(i ? b : a, "lights", BALANCE, sizeof BALANCE, &o, on_reply, &r,
				     NULL),
			  0);
		pump_until(cs, 3, &r.terminal, 1, "the request with headers");
		CHECK_INT(r.err, 0);
		CHECK_INT((int)s.n, 2);
		CHECK_STR(s.first_key, "device");
		CHECK_STR(s.device, "kitchen sensor");
		CHECK_STR(s.trace, "");
		CHECK(s.payload_same);
	}
	CHECK_INT(sb_send(a, "lights", BALANCE, sizeof BALANCE, &o), 0);
	pump_until(cs, 3, &s.calls, 3, "the send with headers");
	CHECK_STR(s.device, "kitchen sensor");
	CHECK(s.payload_same);
	o.flags = SB_OPT_ALL;
	struct all_replies all = {.names = {"home-1"}};
	CHECK_INT(sb_request(b, "lights", BALANCE, sizeof BALANCE, &o, on_all, &all, NULL), 0);
	pump_until(cs, 3, &all.terminal, 1, "the broadcast with headers");
	CHECK_INT(s.calls, 4);
	CHECK_STR(s.device, "kitchen sensor");
	CHECK(s.payload_same);

	/* Without headers a handler sees none. */
	struct replies r = {0};
	CHECK_INT(sb_request(a, "lights", BALANCE, sizeof BALANCE, NULL, on_reply, &r, NULL), 0);
	pump_until(cs, 3, &r.terminal, 1, "the request without headers");
	CHECK_INT((int)s.n, 0);
	CHECK_STR(s.device, "");

	/* Too many, too long, a key twice: refused here, nothing sent. */
	struct sb_header many[SB_HEADERS_COUNT_MAX + 1], dup[] = {{"a", "1"}, {"a", "2"}};
	char keys[SB_HEADERS_COUNT_MAX + 1][8], longv[SB_HEADER_VALUE_MAX + 2];
	for (unsigned i = 0; i <= SB_HEADERS_COUNT_MAX; i++) {
		snprintf(keys[i], sizeof keys[i], "k%u", i);
		many[i] = (struct sb_header){keys[i], "v"};
	}
	memset(longv, 'v', sizeof longv - 1);
	longv[sizeof longv - 1] = 0;
	struct sb_header lv[] = {{"k", longv}};
	o = (struct sb_opts)SB_OPTS_INIT;
	o.headers = many;
	o.nheaders = SB_HEADERS_COUNT_MAX + 1;
	CHECK_INT(sb_request(a, "lights", NULL, 0, &o, on_reply, &r, NULL), SB_ETOOLARGE);
	CHECK_INT(sb_send(a, "lights", NULL, 0, &o), SB_ETOOLARGE);
	o.headers = lv;
	o.nheaders = 1;
	CHECK_INT(sb_send(a, "lights", NULL, 0, &o), SB_ETOOLARGE);
	o.headers = dup;
	o.nheaders = 2;
	CHECK_INT(sb_send(a, "lights", NULL, 0, &o), SB_EINVAL);
	o.headers = NULL;
	CHECK_INT(sb_send(a, "lights", NULL, 0, &o), SB_EINVAL);
	CHECK_INT(s.calls, 5);
	sb_client_free(home);
	sb_client_free(a);
	sb_client_free(b);
	router_stop();
}

/* The chain: an app calls "orders" with a traceparent, the orders
 * handler calls "stock" from its callback without setting one, and
 * answers once stock has; stock sees the app's traceparent. */
struct chain {
	struct sb_call *pending; /* the orders call, answered from stock's reply */
	struct hseen stock;
	int own; /* orders sets its own traceparent on the second run */
};

static void on_stock(const struct sb_reply *rep, void *ud)
{
	struct chain *ch = ud;

	if (rep->more == SB_MORE_NONE && ch->pending != NULL) {
		CHECK_INT(sb_reply(ch->pending, "ordered", NULL, 0), 0);
		ch->pending = NULL;
	}
}

static void handle_orders(struct sb_call *call, void *ud)
{
	struct chain *ch = ud;
	struct sb_opts o = SB_OPTS_INIT;
	struct sb_header own[] = {
		{"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}};

	if (ch->own) {
		o.headers = own;
		o.nheaders = 1;
	}
	ch->pending = call;
	CHECK_INT(sb_request(sb_call_client(call), "stock", BALANCE, sizeof BALANCE, &o, on_stock,
			     ch, NULL),
		  0);
}

static void handle_stock(struct sb_call *call, void *ud)
{
	struct chain *ch = ud;
	hseen_record(&ch->stock, call);
	CHECK_INT(sb_reply(call, "in stock", NULL, 0), 0);
}

static void test_traceparent_follows_a_chained_request(void)
{
	router_start(NULL);
	struct watch w1 = {0}, w2 = {0}, w3 = {0};
	struct sb_client *app = client("app-1", "client", &w1);
	struct sb_client *orders = client("orders-1", "service", &w2);
	struct sb_client *stock = client("stock-1", "service", &w3);
	struct sb_client *cs[] = {app, orders, stock};
	struct chain ch = {0};

	CHECK_INT(sb_client_register(orders, "orders", NULL, handle_orders, &ch), 0);
	CHECK_INT(sb_client_register(stock, "stock", NULL, handle_stock, &ch), 0);
	pump_online(cs, 3);
	struct sb_header h[] = {{"traceparent", TRACE}};
	struct sb_opts o = SB_OPTS_INIT;
	o.headers = h;
	o.nheaders = 1;
	struct replies r = {0};
	CHECK_INT(sb_request(app, "orders", NULL, 0, &o, on_reply, &r, NULL), 0);
	pump_until(cs, 3, &r.terminal, 1, "the chained order");
	CHECK_INT(r.err, 0);
	CHECK_STR(r.outcome, "ordered");
	CHECK_INT(ch.stock.calls, 1);
	CHECK_STR(ch.stock.trace, TRACE);
	CHECK_INT((int)ch.stock.n, 1);
	CHECK(ch.stock.payload_same);

	/* A traceparent the handler sets itself wins. */
	ch.own = 1;
	struct replies r2 = {0};
	CHECK_INT(sb_request(app, "orders", NULL, 0, &o, on_reply, &r2, NULL), 0);
	pump_until(cs, 3, &r2.terminal, 1, "the order with its own trace");
	CHECK_STR(ch.stock.trace, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");

	/* A request made outside any handler carries none. */
	struct replies r3 = {0};
	CHECK_INT(sb_request(orders, "stock", NULL, 0, NULL, on_reply, &r3, NULL), 0);
	pump_until(cs, 3, &r3.terminal, 1, "a request of its own");
	CHECK_STR(ch.stock.trace, "");
	sb_client_free(app);
	sb_client_free(orders);
	sb_client_free(stock);
	router_stop();
}

static void test_progress_then_final(void)
{
	router_start(NULL);
	struct watch ws = {0}, wc = {0};
	struct replies r = {0};
	struct sb_client *fs = client("fs-1", "service", &ws);
	struct sb_client *ui = client("ui-1", "client", &wc);
	struct sb_client *cs[] = {fs, ui};

	CHECK_INT(sb_client_register(fs, "file.copy", NULL, handle_copy, NULL), 0);
	pump_online(cs, 2);
	CHECK_INT(sb_request(ui, "file.copy", NULL, 0, NULL, on_reply, &r, NULL), 0);
	pump_until(cs, 2, &r.terminal, 1, "file.copied");
	pump_for(cs, 2, 30);
	CHECK_INT(r.progress, 3);
	CHECK_INT(r.chunks, 0); /* SB_MORE_PROGRESS is progress, not a chunk */
	CHECK_INT(r.out_of_order, 0);
	CHECK_INT(r.terminal, 1);
	CHECK_INT(r.n, 4);
	CHECK_INT(r.err, 0);
	CHECK_STR(r.outcome, "file.copied");
	sb_client_free(fs);
	sb_client_free(ui);
	router_stop();
}

static void test_timeout(void)
{
	router_start(NULL);
	struct watch ws = {0}, wc = {0};
	struct replies r = {0};
	struct held h = {0}; /* no on_cancel: the call waits for its final reply */
	struct sb_client *slow = client("slow-1", "service", &ws);
	struct sb_client *ui = client("ui-4", "client", &wc);
	struct sb_client *cs[] = {slow, ui};

	CHECK_INT(sb_client_register(slow, "report.build", NULL, handle_hold, &h), 0);
	pump_online(cs, 2);
	CHECK_INT(sb_request(ui, "report.build", NULL, 0,
			     &(struct sb_opts){.size = sizeof(struct sb_opts), .timeout_ms = 100},
			     on_reply, &r, NULL),
		  0);
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
	router_stop();
}

static void test_no_handler(void)
{
	router_start(NULL);
	struct watch wc = {0};
	struct replies r = {0};
	struct sb_client *ui = client("ui-5", "client", &wc);
	struct sb_client *cs[] = {ui};

	pump_online(cs, 1);
	CHECK_INT(sb_request(ui, "nobody.home", NULL, 0, NULL, on_reply, &r, NULL), 0);
	pump_until(cs, 1, &r.terminal, 1, "no handler");
	pump_for(cs, 1, 30);
	CHECK_INT(r.n, 1);
	CHECK_INT(r.err, SB_ENOHANDLER);
	CHECK(r.outcome[0] != 0);           /* an error comes with words */
	CHECK_INT(sb_client_online(ui), 1); /* and the connection stays */
	sb_client_free(ui);
	router_stop();
}

/* A catch-all handler takes names nobody registered. */
static void test_catch_all(void)
{
	router_start(NULL);
	struct watch ws = {0}, wc = {0};
	struct replies r = {0};
	struct held h = {0};
	struct sb_client *svc = client("any-1", "service", &ws);
	struct sb_client *ui = client("ui-5b", "client", &wc);
	struct sb_client *cs[] = {svc, ui};

	CHECK_INT(sb_client_register(svc, NULL, NULL, handle_hold, &h), 0);
	CHECK_INT(sb_client_register(svc, NULL, NULL, handle_hold, &h), SB_EINVAL); /* only one */
	pump_online(cs, 2);
	CHECK_INT(sb_request(ui, "whatever.it.is", NULL, 0, NULL, on_reply, &r, NULL), 0);
	pump_until(cs, 2, &h.calls, 1, "the catch-all");
	CHECK_STR(sb_call_name(h.call), "whatever.it.is");
	CHECK_INT(sb_reply(h.call, "caught", NULL, 0), 0);
	pump_until(cs, 2, &r.terminal, 1, "the reply");
	CHECK_STR(r.outcome, "caught");
	CHECK_INT(sb_client_unregister(svc, NULL), 0);
	CHECK_INT(sb_client_unregister(svc, NULL), SB_EINVAL);
	sb_client_free(svc);
	sb_client_free(ui);
	router_stop();
}

static void test_async_reply(void)
{
	router_start(NULL);
	static const uint8_t job[] = {0xa3, 'j', 'o', 'b'};
	struct watch ws = {0}, wc = {0};
	struct replies r = {0};
	struct held h = {0};
	struct sb_client *svc = client("jobs-1", "service", &ws);
	struct sb_client *ui = client("ui-7", "client", &wc);
	struct sb_client *cs[] = {svc, ui};
	size_t len = 99;

	CHECK_INT(sb_client_register(svc, "async.job", NULL, handle_hold, &h), 0);
	pump_online(cs, 2);
	CHECK_INT(sb_request(ui, "async.job", job, sizeof job, NULL, on_reply, &r, NULL), 0);
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
	CHECK_INT(sb_request(ui, "async.job", job, sizeof job, NULL, on_reply, &open, NULL), 0);
	pump_until(cs, 2, &h.calls, 2, "the second job at the handler");
	sb_client_free(ui);
	CHECK_INT(open.n, 1);
	CHECK_INT(open.err, SB_EOFFLINE);
	/* The router cancels it towards the handler, whose call then says so. */
	pump_cond(cs, 1, held_call_cancelled, &h, "the handler to see the cancel");
	CHECK_INT(sb_reply_error(h.call, SB_EINTERNAL, "too late", NULL, 0), SB_ECANCELLED);
	sb_client_free(svc);
	router_stop();
}

static void test_many_requests_each_answered_once(void)
{
	router_start(NULL);
	struct watch ws = {0}, wc = {0};
	struct sb_client *svc = client("load-svc", "service", &ws);
	struct sb_client *ui = client("load-ui", "client", &wc);
	struct sb_client *cs[] = {svc, ui};
	struct load ld = {.c = ui, .answered = calloc(LOAD_TOTAL, 1)};

	CHECK_INT(sb_client_register(svc, "load.echo", NULL, handle_echo, NULL), 0);
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
	router_stop();
}

int main(void)
{
	RUN(test_fire_and_forget);
	RUN(test_request_reply_with_outcome);
	RUN(test_application_error);
	RUN(test_headers_reach_the_handler);
	RUN(test_traceparent_follows_a_chained_request);
	RUN(test_progress_then_final);
	RUN(test_timeout);
	RUN(test_no_handler);
	RUN(test_catch_all);
	RUN(test_async_reply);
	RUN(test_many_requests_each_answered_once);
	return TEST_EXIT();
}
