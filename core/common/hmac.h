/* The shared-secret proof (HMAC-SHA256 over both nonces and the peer name)
 * that the router checks and the client library computes, the nonces it
 * covers, and the wiping of memory that held a secret. */
#ifndef SB_COMMON_HMAC_H
#define SB_COMMON_HMAC_H

#include <stddef.h>
#include <stdint.h>

#include <switchboard/proto.h>

#define SB__HMAC_MECH       "hmac-sha256"
#define SB__HMAC_NONCE_LEN  32u   /* the router's nonce, and the client library's */
#define SB__HMAC_PROOF_LEN  32u   /* HMAC-SHA256 */
#define SB__HMAC_SECRET_MAX 4096u /* bytes of a secret, from a file or not */

/**
 * Before the first OpenSSL call: no exit-time cleanup. A router's shard
 * threads may outlive main() (a program that exits without stopping it, an
 * exit() on another thread), and OpenSSL's atexit handler would free the
 * locks and random generators they use under them. Only the process's
 * first OpenSSL initialisation decides this.
 */
void sb__hmac_init(void);

/** Fill @p buf with @p n random bytes (a nonce). @return 0 or SB_EINTERNAL */
int sb__hmac_nonce(uint8_t *buf, size_t n);

/**
 * proof = HMAC-SHA256(secret, router_nonce || client_nonce || peer_name).
 * Nonces up to SB_NONCE_MAX, name up to SB_PEER_MAX bytes.
 * @return 0 or SB_EINVAL
 */
int sb__hmac_proof(const uint8_t *secret, size_t secret_len, struct sb_view router_nonce,
		   struct sb_view client_nonce, struct sb_view name,
		   uint8_t out[SB__HMAC_PROOF_LEN]);

/** 1 if @p proof is the proof of @p secret for these nonces and name, else
 *  0; compared in constant time. */
int sb__hmac_check(const uint8_t *secret, size_t secret_len, struct sb_view router_nonce,
		   struct sb_view client_nonce, struct sb_view name, struct sb_view proof);

/** 1 if the @p n bytes at @p a and @p b are equal, compared in constant
 *  time (a secret's bytes: how many matched must not show), else 0. */
int sb__hmac_equal(const void *a, const void *b, size_t n);

/** Overwrite memory that held a secret. */
void sb__hmac_wipe(void *p, size_t n);

#endif
