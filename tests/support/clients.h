/* Client library fixtures of the client tests: clients with quick
 * reconnects that record what they report, a recorder for the replies of a
 * request (or of a broadcast, per peer), and the handlers most tests need.
 * The clients connect to the test router (support/router.h). */
#ifndef SB_TEST_CLIENTS_H
#define SB_TEST_CLIENTS_H

#include <stddef.h>
#include <stdint.h>

#include <switchboard/client.h>

/* Reconnect backoff of the tests' clients; LONG_MS: request timeouts that
 * must not expire during a test. */
enum { MIN_MS = 40, MAX_MS = 320, LONG_MS = 60000 };

/* on_state calls of one client. */
struct watch {
	int online, offline, reconnected, error; /* how many of each */
	int offline_err, error_err;              /* err of the last OFFLINE, ERROR */
	uint64_t offline_at, reconnected_at;     /* ms */
	void *ud;                                /* a test's own state */
};

/* Records into the struct watch its ud points to. */
void on_state(struct sb_client *c, enum sb_client_state s, int err, void *ud);
/* A client of the router at port (name may be NULL), reporting to w. */
struct sb_client *client_at(uint16_t port, const char *name, const char *role, struct watch *w);
/* The same, of the test router (PORT). */
struct sb_client *client(const char *name, const char *role, struct watch *w);

/* Every reply callback of one request. */
struct replies {
	int n;               /* callbacks */
	int terminal;        /* of which terminal (more == 0) */
	int after_terminal;  /* callbacks after the terminal one: must stay 0 */
	int progress;        /* SB_MORE_PROGRESS replies */
	int chunks;          /* SB_MORE_CHUNK replies */
	int out_of_order;    /* chunks or progress whose number was not the next */
	int cancel_at;       /* sb_cancel() from the callback at this chunk; 0: never */
	struct sb_client *c; /* the requester, for that sb_cancel() */
	int err;             /* the terminal event's */
	char outcome[256];   /* the last reply's outcome (or error text) */
	uint8_t payload[256];
	size_t len;
	uint64_t at;       /* ms of the terminal event */
	char app_code[80]; /* the terminal event's application code; "" if none */
};

/* Records every callback into the struct replies its ud points to. */
void on_reply(const struct sb_reply *r, void *ud);
/* Chunks and progress carry their number as a MessagePack uint16. */
unsigned seq_of(const void *payload, size_t len);
void put_seq(uint8_t b[3], unsigned v);

/* Every one of n requests has had its terminal callback. */
struct all_done {
	const struct replies *r;
	int n;
};

int all_terminal(void *arg); /* a done() for pump_cond */

/* Every callback of a broadcast request (SB_OPT_ALL), per peer. */
struct all_replies {
	int results, chunks, terminal, after_terminal;
	int ok[3], errs[3]; /* per handler, by index in names */
	const char *names[3];
	int err; /* the terminal event's */
	int peer_at_terminal;
	struct sb_all_counts counts;
	int counts_rc;
};

/* Records every callback of a broadcast request into the struct
 * all_replies its ud points to, by peer. */
void on_all(const struct sb_reply *r, void *ud);

/* Answers "echoed" with the payload; counts calls in the int ud points to
 * (if not NULL). */
void handle_echo(struct sb_call *call, void *ud);

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

/* Records the delivery into the struct seen ud points to, and tries to
 * answer it. */
void handle_seen(struct sb_call *call, void *ud);

/* A handler that keeps its call to answer later. */
struct held {
	struct sb_call *call; /* NULL once answered or cancelled */
	int calls;            /* handler invocations */
	int cancels;          /* on_cancel invocations */
	int watch_cancel;     /* register on_cancel */
};

/* Keeps the call in the struct held ud points to. */
void handle_hold(struct sb_call *call, void *ud);
/* The held call is there and was cancelled (a done() for pump_cond). */
int held_call_cancelled(void *arg);

/* {"event": "login"} */
extern const uint8_t EVENT[13];

#endif
