/* libFuzzer target for bearer token verification. The first byte picks
 * the mode: even, the rest is a token as a client would send it; odd, the
 * rest is a header and a claims text (split at the first NUL) that the
 * target signs itself with the set's HS256 secret (OpenSSL's HMAC), so the
 * claims reader past the signature check is fuzzed too. The key set holds
 * that secret, an RSA and an EC P-256 key, checks an issuer and an
 * audience, and allows 30 s of leeway. The target aborts if a verdict is
 * neither a pass nor SB_EUNAUTHORIZED with a reason, if a refusal leaves
 * claims behind, or if a pass has no subject, a role other than client or
 * service, an expiry already past, or rule claims that do not compile. */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include <switchboard/error.h>

#include "router/jwt.h"
#include "router/pattern.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW 1700000000LL

static const char secret[] = "the fuzz target's HS256 secret, 32+ bytes";
static struct sb__jwt_keys *keys;

static void add_pub(EVP_PKEY *p, const char *kid)
{
	char pem[4096], why[128], *d;
	BIO *b = BIO_new(BIO_s_mem());
	if (PEM_write_bio_PUBKEY(b, p) != 1)
		abort();
	long n = BIO_get_mem_data(b, &d);
	snprintf(pem, sizeof pem, "kid: %s\n%.*s", kid, (int)n, d);
	BIO_free(b);
	if (sb__jwt_keys_add_pem(keys, pem, strlen(pem), why, sizeof why) != 1)
		abort();
}

static void setup(void)
{
	struct sb__jwt_opts o = {"https://id.example", "switchboard", 30};
	char why[128];

	if (sb__jwt_keys_new(&o, &keys, why, sizeof why) != 0 ||
	    sb__jwt_keys_add_secret(keys, "hs", (const uint8_t *)secret, strlen(secret), why,
				    sizeof why) != 0)
		abort();
	EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	add_pub(rsa, "rs");
	add_pub(ec, "es");
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(ec);
}

static size_t b64url(const uint8_t *p, size_t n, char *out)
{
	size_t len = (size_t)EVP_EncodeBlock((unsigned char *)out, p, (int)n);
	while (len > 0 && out[len - 1] == '=')
		len--;
	for (size_t i = 0; i < len; i++)
		out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
	return len;
}

static void check(const char *tok, size_t len)
{
	struct sb__jwt_claims c;
	char why[128] = "";

	int rc = sb__jwt_verify(keys, tok, len, NOW, &c, why, sizeof why);
	if (rc == SB_EUNAUTHORIZED) {
		if (why[0] == 0 || c.sub[0] != 0 || c.exp != 0)
			abort();
		return;
	}
	if (rc != 0)
		abort();
	if (c.sub[0] == 0 || strlen(c.sub) > SB__JWT_SUB_MAX || NOW >= c.exp + 30)
		abort();
	if (strcmp(c.role, "client") != 0 && strcmp(c.role, "service") != 0)
		abort();
	const char *rules[] = {c.allow_call, c.allow_register, c.name};
	const int have[] = {c.has_allow_call, c.has_allow_register, c.name[0] != 0};
	for (int i = 0; i < 3; i++) {
		struct sb__patterns p = {0};
		if (have[i] && sb__patterns_compile(&p, "fuzz", rules[i], why, sizeof why) != 0)
			abort();
		sb__patterns_free(&p);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	if (!ready) {
		setup();
		ready = 1;
	}
	if (size < 1 || size > 6000)
		return 0;
	if ((data[0] & 1) == 0) {
		/* A heap block of exactly the token's size: ASan sees a read past it. */
		char *tok = malloc(size - 1 + 1);
		memcpy(tok, data + 1, size - 1);
		check(tok, size - 1);
		free(tok);
		return 0;
	}
	const uint8_t *h = data + 1, *nul = memchr(h, 0, size - 1);
	size_t hlen = nul != NULL ? (size_t)(nul - h) : size - 1;
	const uint8_t *cl = nul != NULL ? nul + 1 : h + size - 1;
	size_t clen = (size_t)(data + size - cl);
	char *tok = malloc(2 * size + 64);
	size_t n = b64url(h, hlen, tok);
	tok[n++] = '.';
	n += b64url(cl, clen, tok + n);
	uint8_t mac[32];
	unsigned ml = 0;
	HMAC(EVP_sha256(), secret, (int)strlen(secret), (const uint8_t *)tok, n, mac, &ml);
	tok[n++] = '.';
	n += b64url(mac, ml, tok + n);
	check(tok, n);
	free(tok);
	return 0;
}
