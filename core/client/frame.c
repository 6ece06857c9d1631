/* Frames in: the plaintext of each read cut into frames, each decoded and
 * handed to the part of the client it is for; PING, GOODBYE and the
 * router's errors answered here. */
#include <stdio.h>
#include <string.h>

#include <switchboard/client.h>
#include <switchboard/proto.h>

#include "client/client-int.h"
#include "common/clock.h"

/* A view as a C string for a callback. An empty error text becomes the
 * code's standard text, so an error never reaches a program without words. */
const char *sb__client_text(struct sb_client *c, struct sb_view v, int err)
{
	uint32_t n = v.len < SB_TEXT_MAX ? v.len : SB_TEXT_MAX;

	if (n == 0 && err != 0)
		return sb_strerror(err);
	if (n > 0)
		memcpy(c->text, v.ptr, n);
	c->text[n] = 0;
	return c->text;
}

static void on_error(struct sb_client *c, const struct sb_msg *m)
{
	int err = -(int)m->code;
	struct req *r;

	if (m->id == 0) { /* about the connection */
		sb__client_say(c, "%s", sb__client_text(c, m->text, err));
		sb__client_report(c, SB_CLIENT_ERROR, err);
		if (!(m->flags & SB_F_FATAL))
			return;
		/* Our old name went to someone else: an assigned one is
		 * given up for a new one, as before resume tokens. */
		if (err == SB_EDUPNAME && c->resuming && c->name == NULL) {
			c->has_resume = 0;
			sb__client_drop(c, err);
			return;
		}
		/* Moved to another router of a cluster: the name we had is
		 * still claimed for us by the router we lost until the others
		 * hold it dead (docs/cluster.md, "Clients that move"). */
		if (err == SB_EDUPNAME && c->naddrs > 1 && c->ever_online) {
			sb__client_drop(c, err);
			return;
		}
		/* Retrying would be refused the same way, forever. */
		if (err == SB_EDUPNAME || err == SB_EUNAUTHORIZED || err == SB_EFORBIDDEN)
			sb__client_give_up(c, err);
		else
			sb__client_drop(c, err);
		return;
	}
	if (m->id & CTL_BIT) {
		sb__client_on_ctl_error(c, m->id, err);
		return;
	}
	if ((r = sb__client_req_find(c, m->id)) == NULL)
		return;
	/* With MORE it is one peer's part of a broadcast: never the terminal
	 * event. Without a peer it makes no sense, and is dropped. */
	if (m->flags & SB_F_MORE) {
		if (m->peer.ptr != NULL && !r->cancelling)
			sb__client_reply_more(c, r, err, sb__client_text(c, m->text, err), m,
					      SB_MORE_RESULT);
		return;
	}
	char app[SB_APPCODE_MAX + 1];
	const char *code = NULL;
	if (m->app_code.ptr != NULL && m->app_code.len <= SB_APPCODE_MAX) {
		memcpy(app, m->app_code.ptr, m->app_code.len);
		app[m->app_code.len] = 0;
		code = app;
	}
	sb__client_req_end_app(c, r, err, sb__client_text(c, m->text, err), code, m->payload.ptr,
			       m->payload.len);
}

/* A frame the decoder refused. A broken header means the byte stream
 * cannot be trusted: the connection goes. A broken payload spoils only its
 * own message (the router forwards payloads unchecked), so that message
 * fails and the connection stays. */
static void on_bad_frame(struct sb_client *c, const uint8_t *f, uint32_t len, int rc,
			 const struct sb_fault_info *fi)
{
	struct sb_msg m;
	struct req *r;

	if (rc == SB_EUNSUPPORTED) /* a kind from a newer router: not for us */
		return;
	if (fi->fault != SB_FAULT_PAYLOAD || sb_decode(f, len, 0, &m, NULL) != 0) {
		sb__client_drop(c, rc);
		return;
	}
	if (m.kind == SB_REQUEST) {
		sb__client_answer_error(c, m.id, SB_EBADFRAME,
					"the payload is not one MessagePack value");
		return;
	}
	if ((m.kind != SB_REPLY && m.kind != SB_ERROR) ||
	    (r = sb__client_req_find(c, m.id)) == NULL)
		return;
	if (m.flags & SB_F_MORE) /* the stream goes on at the router: stop it */
		sb__client_queue_cancel(c, m.id);
	sb__client_req_end(c, r, SB_EBADFRAME, "a reply's payload is not one MessagePack value",
			   NULL, 0);
}

static void on_frame(struct sb_client *c, const uint8_t *f, uint32_t len)
{
	struct sb_msg m;
	struct sb_fault_info fi;
	int rc = sb_decode(f, len, SB_DECODE_PAYLOAD, &m, &fi);

	if (rc != 0) {
		on_bad_frame(c, f, len, rc, &fi);
		return;
	}
	if (c->st == C_HELLO && m.kind != SB_WELCOME && m.kind != SB_ERROR &&
	    m.kind != SB_CHALLENGE && m.kind != SB_PING && m.kind != SB_GOODBYE) {
		sb__client_drop(c, SB_EBADFRAME);
		return;
	}
	switch (m.kind) {
	case SB_WELCOME:
		sb__client_on_welcome(c, &m);
		break;
	case SB_CHALLENGE:
		sb__client_on_challenge(c, &m);
		break;
	case SB_ACK:
		sb__client_on_ack(c, m.id);
		break;
	case SB_SEND:
	case SB_REQUEST:
		sb__client_on_message(c, &m);
		break;
	case SB_REPLY:
		sb__client_on_reply(c, &m);
		break;
	case SB_ERROR:
		on_error(c, &m);
		break;
	case SB_CANCEL:
		sb__client_on_cancel(c, m.id);
		break;
	case SB_PING: {
		struct sb_msg pong = {.kind = SB_PONG, .id = m.id};
		sb__client_queue(c, &pong, 1);
		break;
	}
	case SB_GOODBYE:
		/* The router closes once its requests are done. Should that close
		 * never come, we would refuse requests for good: close ourselves
		 * a little after the deadline it announced. */
		if (c->st == C_READY || c->st == C_REGISTER) {
			c->st = C_DRAINING;
			c->drain_at = sb__now_ms() + m.deadline_ms + DRAIN_GRACE_MS;
		}
		break;
	case SB_PRESENCE:
		sb__client_on_presence(c, &m);
		break;
	default: /* PONG, and kinds only peers send */
		break;
	}
}

/* Cuts the bytes of one read into frames and dispatches them, until the
 * bytes run out or a frame ends the connection. */
void sb__client_feed(struct sb_client *c, const uint8_t *p, size_t left)
{
	uint64_t gen = c->conn_gen;

	while (c->conn_gen == gen) {
		/* Set whenever rc is 1; initialised because GCC's LTO pass, run
		 * again in each program that links the static library, cannot
		 * see that and warns (an error under -Werror). */
		struct sb_view f = {0};
		int rc = sb_splitter_next(c->sp, &p, &left, &f, NULL);
		if (rc == 0)
			return;
		if (rc < 0) {
			sb__client_drop(c, rc);
			return;
		}
		on_frame(c, f.ptr, f.len);
	}
}
