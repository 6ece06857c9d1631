/* sbctl's shared parts: the command line as parsed, the commands, and the
 * helpers every command uses to connect and to print. */
#ifndef SBCTL_H
#define SBCTL_H

#include <stdint.h>
#include <stdio.h>

#include <switchboard/client.h>
#include <switchboard/proto.h>

#include "common/json.h"

/* Exit codes, part of the interface: scripts branch on them. */
enum {
	EXIT_OK = 0,        /* done; for request, the final reply was not an error */
	EXIT_FAILED = 1,    /* an error reply, a timeout, no handler, connection lost */
	EXIT_USAGE = 2,     /* bad flags or arguments, invalid JSON */
	EXIT_NO_ROUTER = 3, /* the router could not be reached (or refused us) */
};

/* Which command-specific flags a command takes. */
#define F_TIMEOUT 0x1u
#define F_ECHO    0x2u
#define F_COUNT   0x4u
#define F_TO      0x8u
#define F_ALL     0x10u
#define F_SCHEMA  0x20u
#define F_STR     0x40u
#define F_PEERS   0x80u
#define F_HEADER  0x100u

/* Bytes sbctl reads from a payload file or stdin at most: above the
 * largest frame limit a router can have (64 MiB), so a bigger file is a
 * mistake said at once. */
#define PAYLOAD_FILE_MAX (128u << 20)

/* Everything the command line says. */
struct opts {
	const char *routers; /* --router: "HOST:PORT[,HOST:PORT...]" */
	unsigned nrouters;   /* how many: with several, each is tried in turn */
	char last[272];      /* the last of them, as the library names it */
	const char *name;    /* --name: peer name to ask for, or NULL */
	int json;            /* --json: machine output */
	unsigned connect_ms; /* --connect-timeout: how long to wait to be online */
	uint32_t timeout_ms; /* --timeout: request timeout, 0 = the router's */
	int echo;            /* listen --echo */
	unsigned long count; /* listen, presence --count, 0 = forever */
	const char *to;      /* send, request --to: the peer */
	int all;             /* send, request --all or --peers: a broadcast */
	const char *peers;   /* send, request --peers: the peer selector, or NULL */
	const char *schema;  /* listen --schema: the argument schema as JSON, or NULL */
	int str;             /* send, request --str: the payload is a string, not JSON */
	int wait;            /* --wait: retry a router that cannot be reached, up to
				--connect-timeout, instead of failing at once */
	struct sb_header headers[SB_HEADERS_COUNT_MAX]; /* send, request --header */
	size_t nheaders;
	unsigned given;     /* F_* flags that appeared, checked against the command */
	const char *admin;  /* prefix of the router's reserved names ("$sb.") */
	const char *secret; /* from --secret-file, else $SB_SECRET, else NULL */
	int tls;            /* --tls, or any --tls-* flag */
	const char *tls_ca, *tls_cert, *tls_key, *tls_server_name; /* --tls-* files and name */
};

struct command {
	const char *name;       /* "request" */
	unsigned flags;         /* F_* it accepts */
	int min_args, max_args; /* positional arguments after the command name */
	const char *usage;      /* the synopsis after "sbctl [OPTIONS] " */
	const char *summary;    /* one line for the command list */
	const char *help;       /* the rest of "sbctl help COMMAND" */
	int (*run)(const struct opts *o, char **args, int nargs);
};

/* One request's progress, for on_reply. */
struct pending {
	const struct opts *o; /* how to print */
	int done;             /* the terminal event came */
	int err;              /* its code (0 for a final reply) */
	int keep;             /* keep the final payload instead of printing it */
	void *payload;        /* with keep: a copy of the final payload */
	size_t len;           /* its length */
	int failed_peers;     /* --all: peers whose result was an error */
};

/* ---- sbctl.c: the command line -------------------------------------------- */

/** Parses a decimal in [lo, hi] or exits with a message naming the flag. */
unsigned long number(const char *flag, const char *s, unsigned long lo, unsigned long hi);

/* ---- sbctl_conn.c: connecting and printing --------------------------------- */

/** Monotonic milliseconds. */
uint64_t now_ms(void);
/** A payload (or NULL) as JSON text in b, for printing. */
const char *payload_json(struct sb__json_buf *b, const void *p, size_t len);
/** A string as a JSON string literal in b. */
const char *quoted(struct sb__json_buf *b, const char *s);
/** An error reply on stderr (or, with --json, stdout). */
void print_error(const struct opts *o, int err, const char *text);
/** A request's error reply, as print_error(); an application error (SB_EAPP)
 * also with its code and details. */
void print_reply_error(const struct opts *o, const struct sb_reply *rep);
/** JSON text (NULL: nil) as MessagePack in mp. @return 0, or -1 after a
 * message */
int parse_payload(const char *text, struct sb__json_buf *mp);
/** A send's or request's payload argument as MessagePack in mp: JSON, or
 * with --str a string; "@FILE" reads it from FILE, "@-" from stdin; NULL
 * is nil. @return 0, or -1 after a message */
int read_payload(const struct opts *o, const char *arg, struct sb__json_buf *mp);
/** A client for the router of o, with role @p role; exits if it cannot be made. */
struct sb_client *connect_router(const struct opts *o, enum sb_role role);
/** The router's code from the last SB_CLIENT_ERROR (a refused
 * registration, say), or 0. */
int router_refused(void);
/** Process c until online, within --connect-timeout. @return EXIT_OK or EXIT_NO_ROUTER */
int wait_online(struct sb_client *c, const struct opts *o);
/** Process c until its output is written, for at most @p ms. */
void flush(struct sb_client *c, unsigned ms);
/** A send or request the library refused before sending. @return the exit code */
int refused_locally(const struct opts *o, const char *name, int err);

/* ---- the commands: sbctl_call.c, sbctl_listen.c, sbctl_tables.c ------------ */

/** Request @p name and process until its terminal event (the library's
 * local deadline bounds the wait). @return the exit code */
int run_request(struct sb_client *c, const char *name, const struct sb__json_buf *mp,
		struct pending *pd);
int cmd_send(const struct opts *o, char **args, int nargs);
int cmd_request(const struct opts *o, char **args, int nargs);
int cmd_listen(const struct opts *o, char **args, int nargs);
int cmd_presence(const struct opts *o, char **args, int nargs);
int cmd_routes(const struct opts *o, char **args, int nargs);
int cmd_peers(const struct opts *o, char **args, int nargs);
int cmd_stats(const struct opts *o, char **args, int nargs);

#endif
