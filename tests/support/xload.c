/* A requester under load across routers: support/xload.h. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include <switchboard/proto.h>

#include "support/clock.h"
#include "support/testlib.h"
#include "support/xload.h"

#define MAX_IDS (1u << 20)

void xload_init(struct xload *l, uint16_t port, const char *name, uint32_t deadline_ms)
{
	*l = (struct xload){
		.name = name, .deadline_ms = deadline_ms, .next_id = 1, .sending = 1, .last = -1};
	l->done = calloc(MAX_IDS, 1);
	CHECK(l->done != NULL);
	l->cl = peer_hello(port, NULL, "client");
}

void xload_free(struct xload *l)
{
	peer_close(l->cl);
	for (int k = 0; k < 2; k++)
		if (l->svc[k] != NULL)
			peer_close(l->svc[k]);
	free(l->done);
}

void xload_send(struct xload *l)
{
	while (l->sending && l->next_id - 1 - l->ended < XLOAD_WINDOW && l->next_id < MAX_IDS)
		peer_request(l->cl, l->name, l->next_id++, l->deadline_ms, "\xa1x", 2);
}

static void end(struct xload *l, const struct sb_msg *m)
{
	int outcome = m->kind == SB_REPLY ? SB_REPLY : (int)m->code;
	if (m->id == 0 || m->id >= l->next_id || l->done[m->id]) {
		l->twice++;
		return;
	}
	l->done[m->id] = 1;
	l->ended++;
	l->streak = outcome == l->last ? l->streak + 1 : 1;
	l->last = outcome;
	if (m->kind == SB_REPLY)
		l->replies++;
	else if (m->code == (uint32_t)-SB_ENOHANDLER)
		l->no_handler++;
	else if (m->code == (uint32_t)-SB_ETIMEOUT)
		l->timeouts++;
	else {
		l->other++;
		fprintf(stderr, "request %" PRIu64 ": error %u: %.*s\n", m->id, m->code,
			(int)m->text.len, (const char *)m->text.ptr);
	}
}

uint64_t xload_round(struct xload *l, int k_ack)
{
	uint64_t ack = 0;
	for (int k = 0; k < 2; k++)
		while (l->svc[k] != NULL && peer_recv_within(l->svc[k], 0) == 1) {
			struct sb_msg *m = &l->svc[k]->m;
			if (m->kind == SB_ACK && k == k_ack) {
				ack = m->id;
				continue;
			}
			CHECK_INT(m->kind, SB_REQUEST);
			peer_reply(l->svc[k], m->id, "ok", 0, NULL, 0);
			l->served[k]++;
		}
	while (peer_recv_within(l->cl, 1) == 1) {
		CHECK(l->cl->m.kind == SB_REPLY || l->cl->m.kind == SB_ERROR);
		end(l, &l->cl->m);
	}
	xload_send(l);
	return ack;
}

int xload_run(struct xload *l, uint64_t n)
{
	uint64_t until = l->ended + n, stop = now_ms() + 20000;
	while (l->ended < until && now_ms() < stop)
		xload_round(l, -1);
	return l->ended >= until;
}

int xload_until_streak(struct xload *l, int outcome, uint64_t n)
{
	uint64_t stop = now_ms() + 20000;
	while (!(l->last == outcome && l->streak >= n) && now_ms() < stop)
		xload_round(l, -1);
	return l->last == outcome && l->streak >= n;
}

int xload_until_served(struct xload *l, int k, uint64_t n)
{
	uint64_t until = l->served[k] + n, stop = now_ms() + 20000;
	while (l->served[k] < until && now_ms() < stop)
		xload_round(l, -1);
	return l->served[k] >= until;
}

int xload_change(struct xload *l, int k, int kind, uint64_t id)
{
	struct sb_msg m = {.kind = (uint8_t)kind, .id = id, .name = v_str(l->name)};
	uint64_t stop = now_ms() + 20000;
	peer_send(l->svc[k], &m);
	while (now_ms() < stop)
		if (xload_round(l, k) == id)
			return 1;
	return 0;
}

int xload_drain(struct xload *l)
{
	uint64_t stop = now_ms() + l->deadline_ms + 10000;
	l->sending = 0;
	while (l->ended + 1 < l->next_id && now_ms() < stop)
		xload_round(l, -1);
	return l->ended + 1 == l->next_id;
}
