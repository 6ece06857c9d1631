/* Who may connect and what they may do: shared-secret authentication
 * (HMAC-SHA256 challenge-response), name rules per role, and the memory of
 * addresses that keep failing. docs/security.md describes the behaviour. */
#ifndef SB_CORE_AUTH_H
#define SB_CORE_AUTH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <switchboard/proto.h>
#include <switchboard/router.h>

#include "common/hmac.h"
#include "common/log.h"
#include "router/pattern.h"

#define SB__AUTH_FAIL_SLOTS 512u /* addresses a shard remembers failures of */

/* Roles index secrets and rules: 0 client, 1 service (sb__conn.service). */
#define SB__ROLE_CLIENT  0
#define SB__ROLE_SERVICE 1

/* The secrets and rules in force: immutable once built, shared by reference
 * between shards and handshakes, freed by whoever drops the last one. */
struct sb__policy {
	_Atomic unsigned refs;
	uint8_t *secret[2]; /* per role; NULL: that role has none */
	size_t secret_len[2];
	uint8_t any_secret;          /* some role has one: every HELLO is challenged */
	struct sb__patterns reg;     /* allow_register_service */
	struct sb__patterns call[2]; /* allow_call_client, allow_call_service */
};

/* The router's side: the policy new handshakes and shards take. */
struct sb__auth_router {
	pthread_mutex_t lock;   /* guards cur while a shard takes a reference */
	struct sb__policy *cur; /* the latest policy */
	_Atomic uint64_t gen;   /* bumped by each reload; shards compare once per turn */
};

/* An address that gave wrong secrets, remembered for one window. */
struct sb__auth_fail {
	uint32_t addr;  /* IPv4, network order; 0: free slot */
	uint32_t count; /* failures since first */
	uint64_t first; /* ms of the first failure of the window */
};

/* A shard's side: its policy, and the addresses failing on it. */
struct sb__auth_shard {
	struct sb__policy *pol; /* in force for this shard's frames */
	uint64_t gen;           /* of pol */
	_Atomic uint64_t seen;  /* gen published for a waiting reload */
	struct sb__auth_fail fails[SB__AUTH_FAIL_SLOTS];
};

/* A handshake between CHALLENGE and AUTH: what the WELCOME will need. */
struct sb__auth_hs {
	struct sb__policy *pol; /* the secrets in force at HELLO */
	uint64_t hello_id;      /* echoed by CHALLENGE and WELCOME */
	uint8_t nonce[SB__HMAC_NONCE_LEN];
	uint8_t named; /* HELLO asked for a name (else nil) */
	uint32_t name_len;
	char name[SB_PEER_MAX + 1];
};

/* ---- policy --------------------------------------------------------------- */

/** A secret file's bytes, minus one trailing newline (editors add one),
 *  into *out (malloc'd; wipe it). Also the cluster's password and token.
 *  @return 0, SB_ESYS (errno), SB_EINVAL (empty or over 4,096 bytes), SB_ENOMEM */
int sb__auth_secret_read(const char *path, uint8_t **out, size_t *len);

/**
 * Build a policy from the secrets and allow_* fields of @p c (files read
 * now). On failure @p why says which field and what is wrong with it.
 * @return 0, SB_EINVAL (a bad pattern, an empty or oversized secret, a
 *         secret given twice), SB_ESYS (a file that cannot be read; errno),
 *         or SB_ENOMEM
 */
int sb__policy_new(const struct sb_router_config *c, struct sb__policy **out, char *why,
		   size_t cap);

struct sb__policy *sb__policy_get(struct sb__policy *p);
void sb__policy_put(struct sb__policy *p);

/** 0 if a peer of @p role may send or request @p name, else SB_EFORBIDDEN.
 *  The call path's only cost when no rule is set is one load and a branch. */
static inline int sb__auth_may_call(const struct sb__policy *p, int role, struct sb_view name)
{
	return sb__patterns_allow(&p->call[role], name) ? 0 : SB_EFORBIDDEN;
}

/* ---- router and shards ---------------------------------------------------- */

/** The router's first policy, from @p c; a refusal is logged with its reason. */
int sb__auth_router_init(struct sb__auth_router *a, const struct sb_router_config *c,
			 const struct sb__logger *lg);
void sb__auth_router_destroy(struct sb__auth_router *a);

/** A shard takes the router's current policy (at start, and after a reload). */
void sb__auth_adopt(struct sb__auth_shard *s, struct sb__auth_router *a);
void sb__auth_shard_destroy(struct sb__auth_shard *s);

/** Once per loop turn: one atomic load unless a reload happened. */
static inline void sb__auth_turn(struct sb__auth_shard *s, struct sb__auth_router *a)
{
	if (atomic_load_explicit(&a->gen, memory_order_acquire) != s->gen)
		sb__auth_adopt(s, a);
}

/**
 * Swap in the secrets and rules of @p c, for shards to take at their next
 * turn (sb__auth_turn()); a refusal is logged with its reason.
 * @param gen  set to the generation a shard has taken once its `seen`
 *             reaches it: from then on it judges every frame by them
 * @return 0, or as sb__policy_new() (the old policy stays)
 */
int sb__auth_reload(struct sb__auth_router *a, const struct sb_router_config *c,
		    const struct sb__logger *lg, uint64_t *gen);
/* ---- handshakes and failures ---------------------------------------------- */

/** A handshake's state for HELLO @p m, with a fresh nonce; NULL if out of
 *  memory or randomness. Holds a reference on @p pol. */
struct sb__auth_hs *sb__auth_hs_new(struct sb__policy *pol, const struct sb_msg *m);
void sb__auth_hs_free(struct sb__auth_hs *hs);

/** 1 if AUTH @p m proves the secret of @p role for handshake @p hs. */
int sb__auth_check(const struct sb__auth_hs *hs, int role, const struct sb_msg *m);

/**
 * Is @p addr refused for now, having failed max times within window_ms?
 * @return 0, or the ms until the window ends (at least 1)
 */
uint64_t sb__auth_blocked(struct sb__auth_shard *s, const struct sb_router_config *c, uint32_t addr,
			  uint64_t now);

/** Record a wrong secret from @p addr. The table is bounded: a new address
 *  takes a free or expired slot near its hash, else the oldest there. */
void sb__auth_failed(struct sb__auth_shard *s, const struct sb_router_config *c, uint32_t addr,
		     uint64_t now);

#endif
