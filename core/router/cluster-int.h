/* The cluster bridge's state, as its parts share it: the router's and each
 * shard's part, a request's part across routers, and what the bridge
 * (cluster.c) and the routers' liveness and name claims (cluster_live.c)
 * call in each other. Internal to them. */
#ifndef SB_ROUTER_CLUSTER_INT_H
#define SB_ROUTER_CLUSTER_INT_H

#include <stddef.h>
#include <stdint.h>

#include <switchboard/proto.h>

#include "common/idmap.h"
#include "common/nats.h"
#include "router/shard-t.h"

struct sb__req;

#define SUBJ_MAX 512 /* "sb.r." + a name of up to SB_NAME_MAX bytes, with room */

struct sb__xpres;
struct sb__xview;

/* The inboxes a shard gathers answers for in one turn: past that many,
 * every batch goes at once and gathering starts again. */
#define SB__XBATCH_MAX 8

/* What a batch gathers: a batch holds one kind only (a frame of another
 * kind to its subject sends it first). */
#define SB__XB_ANSWERS  0 /* to an inbox, Sb-Hand */
#define SB__XB_REQUESTS 1 /* a reply subject, the headers below */
#define SB__XB_SENDS    2 /* no reply subject, the headers below */

/* Answers to one inbox, or requests (sends) to one subject with the same
 * headers, gathered until the turn's flush (cluster_batch.c). */
struct sb__xbatch {
	char to[128]; /* "sb.i.<R>.<k>"; requests, sends: "sb.r.<name>", ... */
	size_t to_len;
	uint32_t n;      /* frames */
	int hand;        /* answers: one of them is its request's first answer: Sb-Hand */
	int kind;        /* SB__XB_... */
	uint64_t id;     /* requests: the batch's id (its reply subject's b<id>) */
	uint8_t *hdr;    /* requests, sends: their headers (each the same), hn bytes */
	size_t hn, hcap; /* hcap: room for Sb-Batch beyond them */
	uint64_t *rids;  /* requests: theirs, in order */
	uint32_t rcap;
	uint8_t *data;
	size_t len, cap;
};

/* Request batches whose reply subject may still bring NATS's "no
 * responders" (cluster_batch.c): the last SB__XSENT of a shard. */
#define SB__XSENT 256
struct sb__xsent {
	uint64_t id; /* 0: free */
	uint64_t *rids;
	uint32_t n, cap;
};

struct sb__xrouter {
	char *servers;
	struct sb__xpres *xp;      /* other routers' peers known here (cluster_presence.c) */
	char *user, *pass, *token; /* the NATS credentials, or NULL */
	char *ca, *cert, *key;     /* the NATS connection's TLS files, or NULL */
	char id[40];               /* <R>: cluster_name, or "r" and 16 random hex digits */
	char inc[20];              /* this start's random incarnation: our heartbeats' payload */
	uint32_t dead_ms, beat_ms; /* a router silent this long is gone; our heartbeats' period */
};

/* A gone peer's name held for its resume token: still claimed in the
 * cluster until due, then deleted at the revision we claimed it at (a
 * peer that resumed meanwhile has claimed it again at another). */
struct hold {
	uint64_t due; /* ms */
	uint64_t rev;
	char name[SB_PEER_MAX + 1];
};

struct live {
	uint64_t router; /* the hash of its id */
	uint64_t seen;   /* ms: its last heartbeat or message */
	char id[40];     /* its id, from its heartbeat ("": none heard yet), to ask it */
};

/* A name's sb.r subscription kept for the drain time after the shard's
 * last handler of it left (cluster.c, docs/cluster.md "Subjects"). */
struct xdrain {
	uint64_t due; /* ms: unsubscribed then */
	int64_t sid;
	uint32_t len;
	char *name; /* len bytes */
};

/* A name another router returned requests for, recently: its requests
 * go to the routers in turn, that one last, until `until` (cluster.c). */
#define SB__XAVOID 64
struct xavoid {
	uint64_t key;    /* the name's hash; 0: free */
	uint64_t router; /* the router that returned one (its id's hash) */
	uint64_t until;  /* ms */
};

struct sb__xshard {
	struct sb__nats *nc;
	char inbox[64]; /* "sb.i.<R>.<k>" */
	size_t inbox_len;
	uint64_t gen;             /* the socket whose polls are armed */
	uint64_t in_seq, out_seq; /* the polls' numbers, in their user data */
	uint64_t seq;
	int in_armed, out_armed;
	int hot;               /* the socket may hold more: read again next turn */
	uint64_t due;          /* ms: the connection's next timer */
	struct sb__idmap from; /* key of a remote request's inbox -> our rid */
	uint8_t svc_hdr[32];   /* "Sb-Svc: 1": the caller is a service */
	size_t svc_hdr_len;
	uint8_t hand_hdr[64]; /* "Sb-Hand: <R>.<k>": which router and shard handle it */
	size_t hand_hdr_len;
	size_t mark;           /* output past this pauses whoever feeds it */
	struct sb__idmap held; /* connections paused for our output -> 1 */
	uint64_t *paused;      /* ...the same, in order, to resume */
	uint32_t npaused, paused_cap;
	struct sb__idmap psub, pxsub; /* a named peer's connection -> sb.p, sb.x.p sid */
	struct live *live;            /* the other routers heard from */
	uint32_t nlive, live_cap;
	uint64_t hb_next;        /* ms: the next heartbeat (shard 0) and liveness check */
	uint64_t self;           /* our router id's hash */
	struct sb__idmap claims; /* a named peer's connection -> its name's KV revision */
	uint64_t ready_at;       /* ms: when the connection was last ready (0: not) */
	int stopping;            /* freeing the connection: its callbacks only clean up */
	int kv_warned;           /* said once that names are not claimed */
	uint32_t spill_rr;       /* the next router a full handler's request goes to */
	struct hold *holds;      /* names held for resume tokens, claimed until due */
	uint32_t nholds, holds_cap;
	int bucket;             /* the names' bucket: 0 not made, 1 asked, 2 made */
	uint64_t bucket_next;   /* ms: when to ask again (0: at once) */
	uint32_t bucket_wait;   /* ms: the wait after the next failure */
	struct sb__xview *view; /* other routers' peers as told here (cluster_presence.c) */
	int clash_said;         /* said once that another router has our id */
	uint64_t failed_said;   /* the hash of the last failed attempt's reason logged */
	struct sb__xbatch batch[SB__XBATCH_MAX]; /* answers gathered this turn, by inbox */
	uint32_t nbatch;
	size_t batched;     /* their bytes: output the connection has not been given yet */
	size_t link_max;    /* the connection's out_max */
	uint64_t batch_seq; /* the last request batch's id */
	struct sb__xsent sent[SB__XSENT]; /* request batches sent, by id % SB__XSENT */
	uint64_t drain_ms;                /* a name's sb.r kept this long after its last handler */
	struct xdrain *drain;             /* ...those kept now, oldest first */
	uint32_t ndrain, drain_cap;
	struct xavoid avoid[SB__XAVOID]; /* names returned to us, by key % SB__XAVOID */
	uint32_t navoid;                 /* slots in use (some may have run out) */
};

/* A request's part across routers: to another router (the subject it was
 * published to, the caller's role) or from one (its inbox, and its key in
 * xs->from). */
struct sb__xreq {
	uint64_t key; /* from: != 0 */
	int service;
	int miss;          /* to: for a `to`, what this router knew (SB_EUNKNOWNPEER, ...) */
	int told;          /* from: its router has been told which router we are */
	uint64_t router;   /* the other router (its id's hash), once known; 0: not yet */
	char hand[40];     /* to: "<R>.<k>" of the handling shard, once known */
	int paused;        /* from: its handler is paused for its requester's router */
	int spilled;       /* to: sent to "sb.s.<R>.<name>", every handler here being full */
	uint32_t spill_at; /* spilled: the live router tried first, and how many since */
	uint32_t spill_tries;
	struct sb__buf *back; /* spilled: the frame, for a handler here should <R> have none */
	uint32_t back_len;
	uint64_t batch; /* to: the request batch it went in (0: none, or answered) */
	uint32_t len;
	char s[]; /* NUL-terminated */
};

/* FNV-1a of s, never 0: a router id's hash, an inbox's key. */
uint64_t sb__cluster_fnv(const char *s, size_t n);
/* "<prefix><name>" into out (SUBJ_MAX): 0, or -1 if not a subject. */
int sb__cluster_subject(char *out, const char *prefix, const void *name, size_t len);
/* Router h (its id's hash) is alive now: a heartbeat, or it answered.
 * @return its entry among the living, or NULL (ourselves, none, no memory) */
struct live *sb__cluster_heard(struct sb__shard *sh, uint64_t h);
/* sb.hb.*: another router's heartbeat. */
void sb__cluster_on_heartbeat(void *ud, const struct sb__nats_msg *nm);
/* Once a turn: heartbeats sent (shard 0), routers gone silent ended. */
void sb__cluster_liveness(struct sb__shard *sh);
/* The names' bucket is made (again) as the connection becomes ready
 * (reset), and asked for until JetStream has it (a cluster's JetStream
 * elects its leader some seconds after its servers start). */
void sb__cluster_bucket(struct sb__shard *sh, int reset);
/* Peer name, claimed at rev, is held for its resume token for hold_ms:
 * its claim stays that long. @return 0, or -1: delete it now */
int sb__cluster_hold(struct sb__shard *sh, const char *name, uint64_t rev, uint32_t hold_ms);
/* Held names whose time is up (all: every one, the shard is leaving) are
 * let go in the cluster. */
void sb__cluster_unhold(struct sb__shard *sh, int all);
/* A key-value operation whose end nobody waits for. */
void sb__cluster_kv_ignore(void *ud, int err, uint64_t rev, const uint8_t *val, size_t len);

/* The connection's settings from the router's (servers, credentials, TLS;
 * cluster_cfg.c). */
struct sb__nats_cfg sb__cluster_nats_cfg(const struct sb__xrouter *xr);

/* sb.r.<name>, sb.s.<R>.<name>, sb.p.<peer>: a call or a batch of
 * requests from another router (cluster_handle.c). */
void sb__cluster_on_call(void *ud, const struct sb__nats_msg *nm);
/* A message's payload as a frame of its own: a heap copy, decoded into m
 * (cluster_handle.c). NULL if *bad (not one frame within max_frame), or
 * with no memory. */
struct sb__buf *sb__cluster_frame(struct sb__shard *sh, const struct sb__nats_msg *nm,
				  struct sb_msg *m, int *bad);
/* The request another router sent here that nm's reply subject (its
 * inbox) names, or NULL. */
struct sb__req *sb__cluster_from(struct sb__shard *sh, const struct sb__nats_msg *nm);
/* sb.x.<...>: a request's router ended it; the shard holding it lets go. */
void sb__cluster_on_cancel(void *ud, const struct sb__nats_msg *nm);
/* A call from another router (m decoded in b, len bytes; b's reference
 * taken over), entered here as a local caller's would be. */
void sb__cluster_enter(struct sb__shard *sh, const struct sb__nats_msg *nm, const struct sb_msg *m,
		       struct sb__buf *b, uint32_t len);
/* A frame of producer went out on the link: past the mark, it pauses. */
void sb__cluster_congest(struct sb__shard *sh, uint64_t producer);
/* An answer (hand: its request's first) to the answers' subject `to` of
 * another router's shard, gathered with the turn's others to the same
 * subject (cluster_batch.c). @return 0, or the connection's refusal as
 * sb__nats_pub() says it (nothing gathered) */
int sb__xbatch_add(struct sb__shard *sh, const char *to, size_t to_len, int hand, const uint8_t *f,
		   uint32_t len);
/* Request q (frame f, len bytes, headers hdr, hn bytes) to its subject
 * q->x->s, gathered with the turn's others to the same subject and with
 * the same headers (cluster_batch.c). @return 0, or the connection's
 * refusal as sb__nats_pub() says it (nothing gathered) */
int sb__xbatch_req(struct sb__shard *sh, struct sb__req *q, const uint8_t *hdr, size_t hn,
		   const uint8_t *f, uint32_t len);
/* A SEND (frame f, len bytes, headers hdr, hn bytes) to subject `to`,
 * gathered with the turn's others to the same subject and with the same
 * headers (cluster_batch.c). @return 0, or the connection's refusal as
 * sb__nats_pub() says it (nothing gathered) */
int sb__xbatch_send(struct sb__shard *sh, const char *to, size_t to_len, const uint8_t *hdr,
		    size_t hn, const uint8_t *f, uint32_t len);
/* Request batch id was taken by a router (one of its requests was
 * answered): no "no responders" can come for it any more. */
void sb__xbatch_answered(struct sb__shard *sh, uint64_t id);
/* NATS's "no responders" for request batch id: each of its requests that
 * is still waiting gets what one alone would (sb__cluster_no_responders). */
void sb__xbatch_missed(struct sb__shard *sh, uint64_t id);
/* Request rid, handled across routers, found no subscriber (503). */
void sb__cluster_no_responders(struct sb__shard *sh, uint64_t rid);
/* Request rid could not be published after all (rc, sb__nats_pub()'s). */
void sb__cluster_unsent(struct sb__shard *sh, uint64_t rid, int rc);
/* The gathered answers to `to` (NULL: to every subject) are published. */
void sb__xbatch_flush(struct sb__shard *sh, const char *to, size_t to_len);
/* The connection went: what was gathered is dropped with it. */
/* Each frame of the batch nm (count: its Sb-Batch value, count_len
 * bytes) to each(sh, frame, arg) as a message of its own with nm's
 * headers, once the batch is checked whole; a malformed one (or one the
 * caller found wrong already: why not NULL) dropped with a log line. */
void sb__xbatch_each(struct sb__shard *sh, const struct sb__nats_msg *nm, const char *count,
		     size_t count_len, const char *why,
		     void (*each)(struct sb__shard *, const struct sb__nats_msg *, size_t),
		     size_t arg);
void sb__xbatch_drop(struct sb__shard *sh);
void sb__xbatch_free(struct sb__shard *sh);
/* The broadcasts' subscriptions, as a shard connects (cluster_bcast.c).
 * @return 0, or < 0 */
int sb__xbcast_subscribe(struct sb__shard *sh);
/* An answer on our inbox for broadcast q (this shard's). */
void sb__xbcast_in(struct sb__shard *sh, struct sb__req *q, const struct sb__nats_msg *nm);
/* Router h went silent (0: every router, our link is down): its parts of
 * q end, its handlers still at it `peer gone`. */
void sb__xbcast_gone(struct sb__shard *sh, struct sb__req *q, uint64_t h);

#endif
