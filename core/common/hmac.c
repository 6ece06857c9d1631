/* Shared-secret proofs: HMAC-SHA256 over the router's nonce, the client's
 * and the peer name, computed by the client library and checked by the
 * router (docs/protocol.md, "AUTH"). */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "common/hmac.h"

void sb__hmac_init(void)
{
	OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, NULL);
}

int sb__hmac_nonce(uint8_t *buf, size_t n)
{
	return RAND_bytes(buf, (int)n) == 1 ? 0 : SB_EINTERNAL;
}

int sb__hmac_proof(const uint8_t *secret, size_t secret_len, struct sb_view router_nonce,
		   struct sb_view client_nonce, struct sb_view name,
		   uint8_t out[SB__HMAC_PROOF_LEN])
{
	uint8_t msg[2 * SB_NONCE_MAX + SB_PEER_MAX];
	unsigned len = SB__HMAC_PROOF_LEN;
	size_t n = 0;

	if (router_nonce.len > SB_NONCE_MAX || client_nonce.len > SB_NONCE_MAX ||
	    name.len > SB_PEER_MAX)
		return SB_EINVAL;
	memcpy(msg, router_nonce.ptr, router_nonce.len);
	n += router_nonce.len;
	if (client_nonce.len > 0)
		memcpy(msg + n, client_nonce.ptr, client_nonce.len);
	n += client_nonce.len;
	if (name.len > 0)
		memcpy(msg + n, name.ptr, name.len);
	n += name.len;
	if (HMAC(EVP_sha256(), secret, (int)secret_len, msg, n, out, &len) == NULL ||
	    len != SB__HMAC_PROOF_LEN)
		return SB_EINVAL;
	return 0;
}

int sb__hmac_equal(const void *a, const void *b, size_t n)
{
	return CRYPTO_memcmp(a, b, n) == 0;
}

int sb__hmac_check(const uint8_t *secret, size_t secret_len, struct sb_view router_nonce,
		   struct sb_view client_nonce, struct sb_view name, struct sb_view proof)
{
	uint8_t want[SB__HMAC_PROOF_LEN];

	if (proof.len != SB__HMAC_PROOF_LEN ||
	    sb__hmac_proof(secret, secret_len, router_nonce, client_nonce, name, want) != 0)
		return 0;
	/* Constant time: how many leading bytes matched must not show. */
	int ok = CRYPTO_memcmp(want, proof.ptr, sizeof want) == 0;
	sb__hmac_wipe(want, sizeof want);
	return ok;
}

void sb__hmac_wipe(void *p, size_t n)
{
	if (p != NULL)
		OPENSSL_cleanse(p, n);
}
