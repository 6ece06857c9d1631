/* Sample messages of every kind, shared by the codec, splitter and fuzz-seed
 * tests so each exercises the same realistic frames. */
#ifndef SB_TEST_FRAMES_H
#define SB_TEST_FRAMES_H

#include <string.h>

#include <switchboard/proto.h>

static inline struct sb_view sv(const char *s)
{
	struct sb_view v = {(const uint8_t *)s, (uint32_t)strlen(s)};
	return v;
}

static inline struct sb_view bv(const void *p, size_t n)
{
	struct sb_view v = {(const uint8_t *)p, (uint32_t)n};
	return v;
}

/* {"amount": 100, "to": "bob"} */
static const uint8_t sample_payload[] = {0x82, 0xa6, 'a', 'm', 'o',  'u', 'n', 't',
					 0x64, 0xa2, 't', 'o', 0xa3, 'b', 'o', 'b'};
static const uint8_t sample_nonce[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11,
					 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
					 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

/* Fills m with a plausible message of the given kind. */
static inline void sample_msg(unsigned kind, struct sb_msg *m)
{
	memset(m, 0, sizeof *m);
	m->kind = (uint8_t)kind;
	m->id = 0x0102030405060708ull + kind;
	m->payload = bv(sample_payload, sizeof sample_payload);
	switch (kind) {
	case SB_HELLO:
		m->version = 1;
		m->peer = sv("billing-1");
		m->role = sv("service");
		break;
	case SB_CHALLENGE:
		m->nonce = bv(sample_nonce, sizeof sample_nonce);
		m->mech = sv("hmac-sha256");
		break;
	case SB_AUTH:
		m->nonce = bv(sample_nonce, 16);
		m->proof = bv(sample_nonce, sizeof sample_nonce);
		break;
	case SB_WELCOME:
		m->version = 1;
		m->peer = sv("A001");
		m->peer_id = 70000;
		m->max_frame = SB_FRAME_MAX_DEFAULT;
		break;
	case SB_REGISTER:
		m->flags = SB_F_INTERNAL;
		m->name = sv("user.create");
		break;
	case SB_UNREGISTER:
		m->name = sv("user.create");
		break;
	case SB_SEND:
		m->flags = SB_F_BROADCAST;
		m->name = sv("cache.flush");
		m->from = 7;
		break;
	case SB_REQUEST:
		m->name = sv("transfer");
		m->to = sv("bank-2");
		m->from = 0xdeadbeef;
		m->timeout_ms = 5000;
		break;
	case SB_REPLY:
		m->flags = SB_F_MORE | SB_F_CHUNK;
		m->outcome = sv("insufficient funds");
		m->peer = sv("bank-2");
		break;
	case SB_ERROR:
		m->flags = SB_F_FATAL;
		m->code = (uint32_t)-SB_ETIMEOUT;
		m->text = sv("no reply within 5000 ms \xe2\x8f\xb1");
		break;
	case SB_SUBSCRIBE:
		m->flags = SB_F_OFF;
		m->name = sv("presence");
		break;
	case SB_PRESENCE:
		m->event = SB_PEER_DISCONNECTED;
		m->peer = sv("A001");
		m->peer_id = 3;
		break;
	case SB_GOODBYE:
		m->text = sv("router draining");
		m->deadline_ms = 30000;
		break;
	default: /* ACK, CANCEL, PING, PONG: common fields only */
		m->payload.ptr = NULL;
		m->payload.len = 0;
		break;
	}
}

#endif
