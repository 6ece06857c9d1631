/* The peer directory: which connection holds which peer name, router-wide (a
 * table under a lock, touched only at connect, disconnect and on error
 * paths) and per shard (a replica updated by mail and read without locks);
 * plus the presence and identity events that follow from it. */
#ifndef SB_CORE_PEERS_H
#define SB_CORE_PEERS_H

#include <stdint.h>

#include <switchboard/proto.h>

#include "router/peers-t.h"

/* A token's claims as shown to handlers: 4,096 bytes of JSON at most,
 * which MessagePack encodes in at most twice that. */
#define SB__PEERS_CLAIMS_MAX 8192u

struct sb__shard;
struct sb__conn;
struct sb__mail;
struct sb_router;

#define SB__WHY_MAX 128 /* a refusal's text from this module */

/** 1 if @p p is a valid naming pattern: a peer name with exactly one run of
 *  '#', which leaves room for a 10-digit counter within SB_PEER_MAX. */
int sb__name_pattern_ok(const char *p);

/** @param grace_ms  how long a gone peer's name is held for its resume
 *  token (0: not held). @return 0 or SB_ENOMEM */
int sb__dir_init(struct sb__dir *d, const char *pattern, uint32_t grace_ms);
void sb__dir_destroy(struct sb__dir *d);

/** Connected peers, a snapshot taken under the lock, identities included: a
 *  malloc'd array in *v (sb__dir_list_free() it). @return 0 or SB_ENOMEM */
int sb__dir_list(struct sb_router *r, struct sb__peer_info **v, uint32_t *n);
void sb__dir_list_free(struct sb__peer_info *v, uint32_t n);

/** A peer id of its own for a peer of another router, from the numbers
 *  this router's peers get, so it never clashes with one (cluster). */
uint32_t sb__peers_new_id(struct sb_router *r);

void sb__replica_init(struct sb__replica *t);
void sb__replica_destroy(struct sb__replica *t);

/**
 * The handshake's naming step: claim @p wanted (nil: a name from the
 * pattern) for c, give c its peer_id, name and resume token, and tell
 * every shard.
 * @param why  on failure, the refusal's text (SB__WHY_MAX bytes)
 * @return 0; SB_EDUPNAME (a connected peer has the name, or it is held
 *         for the resume token of a peer that left, and c did not show
 *         it); SB_EOVERLOADED (c showed the token of the name's holder,
 *         whose close the router has not seen yet: try again); SB_ENOMEM
 */
int sb__peers_join(struct sb__shard *sh, struct sb__conn *c, struct sb_view wanted, char *why);

/** The naming pattern's next name free in this router's directory, after
 *  skipping @p skip more (another router holds the names there), into out
 *  (SB_PEER_MAX + 1 bytes); not taken: the cluster claims it first, then
 *  sb__peers_join() asks for it with c->pr.pattern set. @return its length */
uint32_t sb__peers_next_name(struct sb_router *r, uint32_t skip, char *out);

/** c is closing: its name becomes a tombstone, every shard hears it, and it
 *  stops being a presence subscriber. */
void sb__peers_leave(struct sb__shard *sh, struct sb__conn *c);

/** Peer @p id moved from endpoint @p old to @p ep (move.c): this shard's
 *  replica follows, without a presence event (the peer did not leave). */
void sb__peers_moved(struct sb__shard *sh, uint64_t old, uint64_t ep, uint32_t id);

/** c, moved to this shard from endpoint @p old: the router-wide table
 *  follows. */
void sb__peers_dir_move(struct sb_router *r, const struct sb__conn *c, uint64_t old);

/** c said GOODBYE: subscribers hear it is draining. */
void sb__peers_drain(struct sb__shard *sh, struct sb__conn *c);

/** Frees what c holds for the directory (the connection's memory goes). */
void sb__peers_conn_free(struct sb__conn *c);

/** TLS sets a connection's certificate subject before its HELLO completes.
 *  @return 0, SB_ETOOLARGE (over SB_TEXT_MAX) or SB_ENOMEM */
int sb__peers_set_subject(struct sb__conn *c, const char *subject, size_t len);

/** A verified token sets a connection's claims (one MessagePack map of at
 *  most SB__PEERS_CLAIMS_MAX bytes), shown in its identity event.
 *  @return 0, SB_ETOOLARGE or SB_ENOMEM */
int sb__peers_set_claims(struct sb__conn *c, const void *mp, size_t len);

/** PEER_UP, PEER_DOWN and PEER_DRAIN mail. */
void sb__peers_on_mail(struct sb__shard *sh, const struct sb__mail *m);

/** Frees what such a mail holds, unread (the router is stopping). */
void sb__peers_release_mail(const struct sb__mail *m);

/**
 * The connection of the peer named @p name: the replica's answer when it
 * has the name, else the router-wide table's (a peer that just connected,
 * or one that is gone).
 * @param why  set to a text for the error, in a buffer of SB__WHY_MAX bytes
 * @return 0 (*ep set), SB_EUNKNOWNPEER (never connected) or
 *         SB_ENOTCONNECTED (connected once, gone now, or leaving: it said
 *         GOODBYE)
 */
int sb__peers_resolve(struct sb__shard *sh, struct sb_view name, uint64_t *ep, char *why);

/** A HELLO's payload: its resume token (key "resume", 16 bytes of bin),
 *  if it shows one, kept in c for the naming step; anything else there is
 *  information the router does not read. */
void sb__peers_hello(struct sb__conn *c, struct sb_view payload);

/** Whether @p sel is a peer selector: `@client`, `@service`, or a peer
 *  name pattern (an exact name, or a prefix ending in the one `*`). */
int sb__peers_selector_ok(struct sb_view sel);

/**
 * Calls @p fn for every connected peer this shard's replica knows that
 * selector @p sel picks, but @p self (the asker: not itself) and peers
 * that said GOODBYE; each name once, its newest holder.
 */
void sb__peers_select(struct sb__shard *sh, struct sb_view sel, uint64_t self,
		      void (*fn)(void *ctx, const struct sb__peer *p), void *ctx);

/** The peer name of connection @p ep as this shard knows it, or NULL. */
const char *sb__peers_name_of(struct sb__shard *sh, uint64_t ep);

/** The connected peer with this peer id, as this shard's replica knows it,
 *  or NULL. */
const struct sb__peer *sb__peers_by_id(const struct sb__shard *sh, uint32_t id);

/** A PRESENCE frame (@p event) about p, its identity as payload, in a heap
 *  buffer holding one reference; NULL if out of memory. */
struct sb__buf *sb__peers_frame(const struct sb__peer *p, unsigned event, uint32_t *len);

/** PRESENCE frame b (len bytes) to every presence subscriber of this shard
 *  but connection @p about (the peer it is about); b's reference stays the
 *  caller's. */
void sb__peers_emit(struct sb__shard *sh, uint64_t about, struct sb__buf *b, uint32_t len);

/** `from` of SEND or REQUEST frame f, a whole frame the codec checked. */
uint32_t sb__peers_frame_from(const uint8_t *f);

/** A SUBSCRIBE frame from c: answered with ACK, or ERROR for another topic. */
void sb__peers_subscribe(struct sb__shard *sh, struct sb__conn *c, const struct sb_msg *m);

/**
 * Frame f (a whole frame) is about to be queued for c: if it is a SEND or
 * REQUEST whose sender c has not been told about, queue the sender's
 * identity event first.
 * @return 0, or what queueing it returned (c is then closed: drop f)
 */
int sb__peers_tell(struct sb__shard *sh, struct sb__conn *c, const uint8_t *f);

#endif
