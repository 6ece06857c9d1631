/* Bearer tokens for the edge: compact JWS (JWT) verified with HS256, ES256
 * or RS256 against a key set that a reload swaps whole, and the claims the
 * router acts on (docs/gateway.md, "Tokens"). OpenSSL 3's EVP does the
 * crypto; see jwt.c for why not libjwt. */
#ifndef SB_ROUTER_JWT_H
#define SB_ROUTER_JWT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <switchboard/proto.h>

#define SB__JWT_TOKEN_MAX  8192u /* bytes of a token as sent */
#define SB__JWT_HEADER_MAX 1024u /* bytes of its header, decoded */
#define SB__JWT_CLAIMS_MAX 4096u /* bytes of its claims, decoded */
#define SB__JWT_KEYS_MAX   32u   /* keys in one set */
#define SB__JWT_KID_MAX    64u   /* bytes of a key id */
#define SB__JWT_SUB_MAX    255u  /* bytes of a subject (the identity) */
#define SB__JWT_RULE_MAX   1024u /* bytes of a name rule claim, joined */
#define SB__JWT_AUD_MAX    16u   /* audiences in an "aud" array */
#define SB__JWT_LEEWAY_MAX 300u  /* seconds of clock skew allowed at most */
#define SB__JWT_SECRET_MIN 32u   /* bytes of an HS256 secret (RFC 7518 3.2) */
#define SB__JWT_SECRET_MAX 4096u /* ... */

enum sb__jwt_alg {
	SB__JWT_HS256 = 1,
	SB__JWT_RS256,
	SB__JWT_ES256,
};

/* What a key set checks beside signatures. Strings are copied. */
struct sb__jwt_opts {
	const char *issuer;   /* "iss" must equal it; NULL: not checked */
	const char *audience; /* "aud" (a string or an array) must hold it; NULL: not checked */
	uint32_t leeway_s;    /* seconds "exp" and "nbf" may be off by (at most 300) */
};

/* Keys and the checks above: built once, then immutable and shared by
 * reference count, like the TLS context. A reload builds a new set and
 * swaps it in (struct sb__jwt_slot); whoever holds the old one keeps it. */
struct sb__jwt_keys;

/* The verified claims the router acts on. Strings are NUL-terminated
 * copies; an absent claim is an empty string (or has_* 0). */
struct sb__jwt_claims {
	char sub[SB__JWT_SUB_MAX + 1];         /* the verified identity */
	char role[SB_TOKEN_MAX + 1];           /* sb_role: "client" (default) or "service" */
	char name[SB_PEER_MAX + 1];            /* sb_name: a peer name or a prefix ending in '*' */
	char allow_call[SB__JWT_RULE_MAX + 1]; /* sb_allow_call, patterns joined by ',' */
	char allow_register[SB__JWT_RULE_MAX + 1]; /* sb_allow_register, the same */
	unsigned has_allow_call : 1;               /* the claim was there (it narrows) */
	unsigned has_allow_register : 1;           /* ... */
	unsigned has_nbf : 1;                      /* ... */
	int64_t exp;                               /* seconds since the epoch */
	int64_t nbf;                               /* ... */
	char kid[SB__JWT_KID_MAX + 1];             /* the key that signed it ("" if none named) */
	enum sb__jwt_alg alg;                      /* ... and how */
	uint32_t mp_len;                           /* bytes of mp */
	uint8_t mp[2 * SB__JWT_CLAIMS_MAX];        /* every claim: the object as MessagePack */
};

/**
 * An empty key set with the checks of @p o.
 * @return 0 with *out holding one reference; SB_EINVAL (@p why says why)
 *         or SB_ENOMEM
 */
int sb__jwt_keys_new(const struct sb__jwt_opts *o, struct sb__jwt_keys **out, char *why,
		     size_t cap);

/** An HS256 secret (32 to 4,096 bytes) named @p kid (NULL: none).
 *  Only while the set is being built. @return 0 or SB_EINVAL */
int sb__jwt_keys_add_secret(struct sb__jwt_keys *k, const char *kid, const uint8_t *secret,
			    size_t len, char *why, size_t cap);

/**
 * Public keys from PEM text: each "-----BEGIN PUBLIC KEY-----" block (what
 * `openssl pkey -pubout` writes) is one key, named by a line "kid: NAME"
 * between it and the block before (or none). An EC P-256 key verifies
 * ES256, an RSA key of 2,048 bits or more RS256; nothing else is taken.
 * Only while the set is being built.
 * @return the number of keys added (at least 1), or SB_EINVAL
 */
int sb__jwt_keys_add_pem(struct sb__jwt_keys *k, const char *pem, size_t len, char *why,
			 size_t cap);

/** sb__jwt_keys_add_pem() of a file's text (at most 1 MiB). */
int sb__jwt_keys_load_pem(struct sb__jwt_keys *k, const char *path, char *why, size_t cap);

void sb__jwt_keys_get(struct sb__jwt_keys *k);
void sb__jwt_keys_put(struct sb__jwt_keys *k);

/** Keys in the set. */
unsigned sb__jwt_keys_count(const struct sb__jwt_keys *k);

/**
 * Verify a compact token (header.claims.signature, base64url) at time
 * @p now (seconds since the epoch). Allocates nothing of its own (OpenSSL
 * may, inside a signature check). The header must name an alg of a key
 * in the set: "none", and any alg the set has no key for, are refused;
 * with "kid", that key must exist and be of that alg; without, the set
 * must hold exactly one key of that alg. Then the signature, then the
 * claims: "sub" (1 to 255 bytes) and "exp" are required; "nbf", "iss" and
 * "aud" are checked as the set says; sb_role, sb_name, sb_allow_call and
 * sb_allow_register are read as docs/gateway.md says.
 * @return 0 with @p out filled, or SB_EUNAUTHORIZED with @p why saying
 *         why in a few words ("expired", "unknown kid", ...)
 */
int sb__jwt_verify(const struct sb__jwt_keys *k, const char *token, size_t len, int64_t now,
		   struct sb__jwt_claims *out, char *why, size_t cap);

/* Where the key set in force lives: a reload swaps it under a lock, and
 * each reader (a shard) keeps a reference it refreshes with one atomic
 * load per use, taking the lock only after a swap. */
struct sb__jwt_slot {
	pthread_mutex_t lock;      /* guards keys while it is swapped or taken */
	struct sb__jwt_keys *keys; /* the set in force (a reference), or NULL */
	unsigned gen;              /* bumped by every swap; accessed with __atomic
				      builtins, so C++ (sb-micro) can include this */
};

/* One reader's reference to the set in force. Zero-initialise. */
struct sb__jwt_cache {
	struct sb__jwt_keys *keys; /* a reference, or NULL */
	unsigned gen;              /* the slot's gen when it was taken */
};

void sb__jwt_slot_init(struct sb__jwt_slot *s);
void sb__jwt_slot_destroy(struct sb__jwt_slot *s);

/** Put @p k (taking a reference; NULL: tokens off) in force. */
void sb__jwt_slot_set(struct sb__jwt_slot *s, struct sb__jwt_keys *k);

/** The set in force for this reader (NULL: none), valid until the next
 *  call with @p c or sb__jwt_cache_drop(). */
struct sb__jwt_keys *sb__jwt_slot_current(struct sb__jwt_slot *s, struct sb__jwt_cache *c);

void sb__jwt_cache_drop(struct sb__jwt_cache *c);

#endif
