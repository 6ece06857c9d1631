/* What the client tests' clients and handlers record, and how they are
 * made. */
#include <stdio.h>
#include <string.h>

#include "support/clients.h"
#include "support/clock.h"
#include "support/router.h"
#include "support/testlib.h"

const uint8_t EVENT[13] = {0x81, 0xa5, 'e', 'v', 'e', 'n', 't', 0xa5, 'l', 'o', 'g', 'i', 'n'};

void on_state(struct sb_client *c, enum sb_client_state s, int err, void *ud)
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

struct sb_client *client_at(uint16_t port, const char *name, const char *role, struct watch *w)
{
	struct sb_client_config cfg;
	int err = 0;

	sb_client_config_init(&cfg);
	cfg.port = port;
	cfg.name = name;
	cfg.role = strcmp(role, "service") == 0 ? SB_ROLE_SERVICE : SB_ROLE_CLIENT;
	cfg.reconnect_min_ms = MIN_MS;
	cfg.reconnect_max_ms = MAX_MS;
	cfg.on_state = on_state;
	cfg.ud = w;
	struct sb_client *c = sb_client_new(&cfg, &err);
	CHECK(c != NULL);
	CHECK_INT(err, 0);
	return c;
}

struct sb_client *client(const char *name, const char *role, struct watch *w)
{
	return client_at(PORT, name, role, w);
}

unsigned seq_of(const void *payload, size_t len)
{
	const uint8_t *p = payload;
	return len == 3 && p[0] == 0xcd ? (unsigned)p[1] << 8 | p[2] : 99999;
}

void put_seq(uint8_t b[3], unsigned v)
{
	b[0] = 0xcd;
	b[1] = (uint8_t)(v >> 8);
	b[2] = (uint8_t)v;
}

void on_reply(const struct sb_reply *rep, void *ud)
{
	struct replies *r = ud;

	r->n++;
	if (r->terminal > 0)
		r->after_terminal++;
	CHECK(rep->outcome != NULL);
	CHECK_INT(strlen(rep->outcome), rep->outcome_len);
	snprintf(r->outcome, sizeof r->outcome, "%s", rep->outcome != NULL ? rep->outcome : "");
	r->len = rep->len < sizeof r->payload ? rep->len : sizeof r->payload;
	if (rep->len > 0)
		memcpy(r->payload, rep->payload, r->len);
	if (rep->more == SB_MORE_NONE) {
		r->terminal++;
		r->err = rep->err;
		r->at = now_ms();
		/* The application code comes with SB_EAPP, and only with it. */
		CHECK_INT(rep->app_code != NULL, rep->err == SB_EAPP);
		snprintf(r->app_code, sizeof r->app_code, "%s",
			 rep->app_code != NULL ? rep->app_code : "");
		return;
	}
	CHECK_INT(rep->err, 0);
	if (rep->more == SB_MORE_PROGRESS) {
		if (seq_of(rep->payload, rep->len) != (unsigned)r->progress)
			r->out_of_order++;
		r->progress++;
		return;
	}
	CHECK_INT(rep->more, SB_MORE_CHUNK);
	if (seq_of(rep->payload, rep->len) != (unsigned)r->chunks)
		r->out_of_order++;
	r->chunks++;
	if (r->chunks == r->cancel_at) /* from inside the callback, as a program would */
		CHECK_INT(sb_cancel(r->c, rep->req), 0);
}

int all_terminal(void *arg)
{
	const struct all_done *a = arg;
	for (int i = 0; i < a->n; i++)
		if (a->r[i].terminal == 0)
			return 0;
	return 1;
}

void on_all(const struct sb_reply *r, void *ud)
{
	struct all_replies *a = ud;
	const char *peer = r->peer;

	if (a->terminal > 0)
		a->after_terminal++;
	if (r->more == SB_MORE_NONE) {
		a->terminal++;
		a->err = r->err;
		a->peer_at_terminal = peer != NULL;
		if (r->err == 0) {
			CHECK_STR(r->outcome, "$sb.all");
			a->counts_rc = sb_all_counts(r->payload, r->len, &a->counts);
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
	if (r->more == SB_MORE_CHUNK) {
		a->chunks++;
		return;
	}
	CHECK_INT(r->more, SB_MORE_RESULT);
	a->results++;
	if (r->err == 0)
		a->ok[i]++;
	else
		a->errs[i] = r->err;
}

void handle_echo(struct sb_call *call, void *ud)
{
	size_t len;
	const void *p = sb_call_payload(call, &len);
	int *count = ud;

	if (count != NULL)
		(*count)++;
	CHECK_INT(sb_reply(call, "echoed", p, len), 0);
}

void handle_seen(struct sb_call *call, void *ud)
{
	struct seen *s = ud;
	size_t len;
	const void *p = sb_call_payload(call, &len);

	s->n++;
	s->is_request = sb_call_is_request(call);
	s->from = sb_call_from(call);
	snprintf(s->name, sizeof s->name, "%s", sb_call_name(call));
	s->len = len < sizeof s->payload ? len : sizeof s->payload;
	memcpy(s->payload, p, s->len);
	s->reply_rc = sb_reply(call, "nobody listens", NULL, 0);
}

static void on_held_cancel(struct sb_call *call, void *ud)
{
	struct held *h = ud;
	CHECK(h->call == call);
	CHECK_INT(sb_call_cancelled(call), 1);
	h->cancels++;
	h->call = NULL; /* freed when we return */
}

void handle_hold(struct sb_call *call, void *ud)
{
	struct held *h = ud;

	h->calls++;
	h->call = call;
	if (h->watch_cancel)
		sb_call_on_cancel(call, on_held_cancel, h);
}

int held_call_cancelled(void *arg)
{
	struct held *h = arg;
	return h->call != NULL && sb_call_cancelled(h->call);
}
