/* What a requester sees, the same in the client library and in a program
 * that embeds the router: the options of a send or request, and the one
 * struct its reply callback gets. */
#ifndef SWITCHBOARD_CALL_H
#define SWITCHBOARD_CALL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What a reply is: the one vocabulary of replies that keep a request open,
 * for reply callbacks and for sb_reply_more(). */
enum sb_more {
	SB_MORE_NONE = 0, /* the terminal event: a final reply or an error */
	SB_MORE_PROGRESS, /* a progress update; more replies follow */
	SB_MORE_CHUNK,    /* one chunk of a stream, in order; more replies follow */
	SB_MORE_RESULT,   /* a broadcast request: one handler's final answer; more follow */
};

/*
 * One reply, as a reply callback gets it. The library owns it: every
 * pointer is valid during the callback only (copy what you keep). Fields
 * may be appended in later versions, never reordered.
 */
struct sb_reply {
	uint64_t req;        /* the request's id, as the request call returned it */
	int err;             /* 0, or a negative code (the request's or a handler's) */
	enum sb_more more;   /* SB_MORE_NONE: the terminal event, exactly once */
	const char *outcome; /* the reply's outcome, or the error's text; never NULL,
				NUL-terminated */
	size_t outcome_len;
	const void *payload; /* the reply's payload (one MessagePack value) or the
				error's details; NULL with len 0 for none */
	size_t len;
	const char *peer; /* SB_MORE_RESULT and a broadcast's SB_MORE_CHUNK: the
			     handler that sent it; NULL otherwise */
};

/* Called once per reply to a request; see struct sb_reply. */
typedef void (*sb_reply_fn)(const struct sb_reply *r, void *ud);

/* struct sb_opts flags. */
#define SB_OPT_ALL 0x01u /* every handler of the name (a broadcast), not one */

/*
 * How to send or request: NULL means the defaults. Start from SB_OPTS_INIT,
 * which sets size: the library reads only the first `size` bytes, so a
 * program built against an older header keeps working when fields are
 * appended.
 */
struct sb_opts {
	size_t size;         /* sizeof (struct sb_opts), as SB_OPTS_INIT sets it */
	uint32_t timeout_ms; /* requests: 0 = the default */
	const char *to;      /* the peer named so, whatever it registered (no load
				balancing, a client too); NULL: a handler of the name */
	unsigned flags;      /* 0 or SB_OPT_ALL (not with `to`) */
};

#define SB_OPTS_INIT                                                                               \
	{                                                                                          \
		sizeof(struct sb_opts), 0, NULL, 0                                                 \
	}

#ifdef __cplusplus
}
#endif
#endif
