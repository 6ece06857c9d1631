/* Bearer tokens, verified against tokens we did not sign ourselves: HS256,
 * ES256 and RS256 tokens made here with OpenSSL's API and RS256 ones with
 * the openssl command line. Valid, expired, not yet valid, wrong
 * signature, wrong audience and issuer, alg none and algs not configured,
 * algorithm confusion, unknown kid, malformed tokens, key files, the
 * claims the router acts on, and key rotation by swapping the key set
 * while other threads verify. */
#include "support/testlib.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <unistd.h>

#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include <switchboard/error.h>

#include "router/jwt.h"

#define NOW 1700000000LL

static const char secret[] = "a shared HS256 secret of 32+ bytes, for tests";

static void b64url(const uint8_t *p, size_t n, char *out)
{
	size_t len = (size_t)EVP_EncodeBlock((unsigned char *)out, p, (int)n);
	while (len > 0 && out[len - 1] == '=')
		len--;
	out[len] = 0;
	for (char *c = out; *c; c++)
		*c = *c == '+' ? '-' : *c == '/' ? '_' : *c;
}

/* "b64(header).b64(claims)" into @p out. */
static void signing_input(const char *header, const char *claims, char *out)
{
	b64url((const uint8_t *)header, strlen(header), out);
	strcat(out, ".");
	b64url((const uint8_t *)claims, strlen(claims), out + strlen(out));
}

/* A token signed by OpenSSL directly: HS256 with @p key bytes, or RS256 /
 * ES256 with @p pkey (ES256's DER signature turned into R || S). */
static void sign(const char *header, const char *claims, const void *key, size_t key_len,
		 EVP_PKEY *pkey, char *out)
{
	uint8_t sig[1024];
	size_t sig_len = sizeof sig;

	signing_input(header, claims, out);
	if (pkey == NULL) {
		unsigned n = 0;
		HMAC(EVP_sha256(), key, (int)key_len, (const uint8_t *)out, strlen(out), sig, &n);
		sig_len = n;
	} else {
		EVP_MD_CTX *md = EVP_MD_CTX_new();
		CHECK(EVP_DigestSignInit_ex(md, NULL, "SHA256", NULL, NULL, pkey, NULL) == 1);
		CHECK(EVP_DigestSign(md, sig, &sig_len, (const uint8_t *)out, strlen(out)) == 1);
		EVP_MD_CTX_free(md);
		if (EVP_PKEY_is_a(pkey, "EC")) {
			const uint8_t *d = sig;
			ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &d, (long)sig_len);
			const BIGNUM *r, *s;
			ECDSA_SIG_get0(es, &r, &s);
			BN_bn2binpad(r, sig, 32);
			BN_bn2binpad(s, sig + 32, 32);
			ECDSA_SIG_free(es);
			sig_len = 64;
		}
	}
	strcat(out, ".");
	b64url(sig, sig_len, out + strlen(out));
}

/* @p pkey's public half as PEM, after a "kid: NAME" line (kid NULL: none). */
static void pem_of(EVP_PKEY *pkey, const char *kid, char *out, size_t cap)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *p;
	CHECK(PEM_write_bio_PUBKEY(b, pkey) == 1);
	long n = BIO_get_mem_data(b, &p);
	snprintf(out, cap, "%s%s%s%.*s", kid ? "kid: " : "", kid ? kid : "", kid ? "\n" : "",
		 (int)n, p);
	BIO_free(b);
}

static EVP_PKEY *rsa, *rsa2, *ec;

static struct sb__jwt_keys *keys_of(const char *iss, const char *aud, uint32_t leeway)
{
	struct sb__jwt_opts o = {iss, aud, leeway};
	struct sb__jwt_keys *k;
	char why[128];
	CHECK_INT(sb__jwt_keys_new(&o, &k, why, sizeof why), 0);
	return k;
}

/* A set with an HS256 secret "hs", an RSA key "rs" and an EC key "es". */
static struct sb__jwt_keys *every_alg(const char *iss, const char *aud, uint32_t leeway)
{
	struct sb__jwt_keys *k = keys_of(iss, aud, leeway);
	char pem[8192], one[4096], why[128];
	CHECK_INT(sb__jwt_keys_add_secret(k, "hs", (const uint8_t *)secret, strlen(secret), why,
					  sizeof why),
		  0);
	pem_of(rsa, "rs", pem, sizeof pem);
	pem_of(ec, "es", one, sizeof one);
	strcat(pem, "\n# comments and blank lines between blocks are fine\n\n");
	strcat(pem, one);
	CHECK_INT(sb__jwt_keys_add_pem(k, pem, strlen(pem), why, sizeof why), 2);
	CHECK_INT(sb__jwt_keys_count(k), 3);
	return k;
}

/* @p token is refused by @p k with @p why. */
static void refused(const struct sb__jwt_keys *k, const char *token, const char *why)
{
	struct sb__jwt_claims c;
	char got[128] = "";
	CHECK_INT(sb__jwt_verify(k, token, strlen(token), NOW, &c, got, sizeof got),
		  SB_EUNAUTHORIZED);
	if (strcmp(got, why) != 0)
		fprintf(stderr, "token %.80s\n", token);
	CHECK_STR(got, why);
	CHECK_STR(c.sub, ""); /* nothing of a refused token is kept */
}

static void test_valid_tokens_of_each_alg_pass(void)
{
	struct sb__jwt_keys *k = every_alg("https://id.example", "switchboard", 0);
	char tok[4096], why[128];
	struct sb__jwt_claims c;
	const char *claims =
		"{\"sub\":\"alice@example.com\",\"iss\":\"https://id.example\","
		"\"aud\":[\"other\",\"switchboard\"],\"exp\":1700000060,\"nbf\":1699999990,"
		"\"iat\":1699999990,\"sb_role\":\"service\",\"sb_name\":\"browser-*\","
		"\"sb_allow_call\":[\"user.*\",\"billing.log\"],"
		"\"sb_allow_register\":\"chat.*, presence\",\"extra\":{\"deep\":[1,2]}}";

	sign("{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"hs\"}", claims, secret, strlen(secret),
	     NULL, tok);
	CHECK_INT(sb__jwt_verify(k, tok, strlen(tok), NOW, &c, why, sizeof why), 0);
	CHECK_STR(c.sub, "alice@example.com");
	CHECK_STR(c.role, "service");
	CHECK_STR(c.name, "browser-*");
	CHECK(c.has_allow_call && c.has_allow_register);
	CHECK_STR(c.allow_call, "user.*,billing.log");
	CHECK_STR(c.allow_register, "chat.*, presence");
	CHECK_INT(c.exp, 1700000060);
	CHECK_INT(c.nbf, 1699999990);
	CHECK_STR(c.kid, "hs");
	CHECK_INT(c.alg, SB__JWT_HS256);

	sign("{\"alg\":\"RS256\",\"kid\":\"rs\"}", claims, NULL, 0, rsa, tok);
	CHECK_INT(sb__jwt_verify(k, tok, strlen(tok), NOW, &c, why, sizeof why), 0);
	CHECK_STR(c.kid, "rs");
	CHECK_INT(c.alg, SB__JWT_RS256);
	sign("{\"kid\":\"es\",\"alg\":\"ES256\"}", claims, NULL, 0, ec, tok);
	CHECK_INT(sb__jwt_verify(k, tok, strlen(tok), NOW, &c, why, sizeof why), 0);
	CHECK_STR(c.kid, "es");
	CHECK_INT(c.alg, SB__JWT_ES256);
	/* With one key per alg, kid may be left out. */
	sign("{\"alg\":\"ES256\"}", claims, NULL, 0, ec, tok);
	CHECK_INT(sb__jwt_verify(k, tok, strlen(tok), NOW, &c, why, sizeof why), 0);

	/* The least a token needs: sub and exp; the role defaults to client,
	 * and no rule claims means no narrowing. */
	struct sb__jwt_keys *plain = every_alg(NULL, NULL, 0);
	sign("{\"alg\":\"HS256\"}", "{\"sub\":\"bob\",\"exp\":1700000001.5}", secret,
	     strlen(secret), NULL, tok);
	CHECK_INT(sb__jwt_verify(plain, tok, strlen(tok), NOW, &c, why, sizeof why), 0);
	CHECK_STR(c.role, "client");
	CHECK_STR(c.name, "");
	CHECK(!c.has_allow_call && !c.has_allow_register && !c.has_nbf);
	sb__jwt_keys_put(plain);
	sb__jwt_keys_put(k);
}

/* The openssl command line signs an RS256 token: a signer that shares no
 * code with ours, not even OpenSSL's API calls. */
static void test_a_token_signed_by_the_openssl_command_line_passes(void)
{
	char dir[] = "/tmp/sb-jwt-XXXXXX", cmd[1024], in[2048], tok[4096], why[128];
	CHECK(mkdtemp(dir) != NULL);
	snprintf(cmd, sizeof cmd,
		 "cd %s && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out k.pem "
		 "2>/dev/null && openssl pkey -in k.pem -pubout -out pub.pem",
		 dir);
	CHECK_INT(system(cmd), 0);
	signing_input("{\"alg\":\"RS256\",\"typ\":\"JWT\"}",
		      "{\"sub\":\"cli\",\"exp\":1700000100,\"aud\":\"switchboard\"}", in);
	snprintf(cmd, sizeof cmd,
		 "cd %s && printf '%%s' '%s' | openssl dgst -sha256 -sign k.pem -binary > sig", dir,
		 in);
	CHECK_INT(system(cmd), 0);
	snprintf(cmd, sizeof cmd, "%s/sig", dir);
	FILE *f = fopen(cmd, "rb");
	uint8_t sig[512];
	size_t n = f != NULL ? fread(sig, 1, sizeof sig, f) : 0;
	if (f != NULL)
		fclose(f);
	CHECK_INT(n, 256);
	snprintf(tok, sizeof tok, "%s.", in);
	b64url(sig, n, tok + strlen(tok));

	struct sb__jwt_keys *k = keys_of(NULL, "switchboard", 0);
	snprintf(cmd, sizeof cmd, "%s/pub.pem", dir);
	CHECK_INT(sb__jwt_keys_load_pem(k, cmd, why, sizeof why), 1);
	struct sb__jwt_claims c;
	CHECK_INT(sb__jwt_verify(k, tok, strlen(tok), NOW, &c, why, sizeof why), 0);
	CHECK_STR(c.sub, "cli");
	char *s10 = strrchr(tok, '.') + 10; /* a byte of the signature, changed */
	*s10 = *s10 == 'A' ? 'B' : 'A';
	refused(k, tok, "bad signature");
	sb__jwt_keys_put(k);
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	CHECK_INT(system(cmd), 0);
}

static void test_time_claims_are_checked_with_the_leeway(void)
{
	struct sb__jwt_keys *strict = every_alg(NULL, NULL, 0),
			    *lenient = every_alg(NULL, NULL, 30);
	char tok[4096], why[128];
	struct sb__jwt_claims c;

	sign("{\"alg\":\"HS256\"}", "{\"sub\":\"a\",\"exp\":1700000000}", secret, strlen(secret),
	     NULL, tok);
	refused(strict, tok, "expired"); /* exp is the first second it is invalid */
	CHECK_INT(sb__jwt_verify(lenient, tok, strlen(tok), NOW, &c, why, sizeof why), 0);
	sign("{\"alg\":\"HS256\"}", "{\"sub\":\"a\",\"exp\":1699999970}", secret, strlen(secret),
	     NULL, tok);
	refused(lenient, tok, "expired");
	sign("{\"alg\":\"HS256\"}", "{\"sub\":\"a\",\"exp\":1800000000,\"nbf\":1700000001}", secret,
	     strlen(secret), NULL, tok);
	refused(strict, tok, "not yet valid (nbf)");
	CHECK_INT(sb__jwt_verify(lenient, tok, strlen(tok), NOW, &c, why, sizeof why), 0);
	sign("{\"alg\":\"HS256\"}", "{\"sub\":\"a\",\"exp\":1800000000,\"nbf\":1700000031}", secret,
	     strlen(secret), NULL, tok);
	refused(lenient, tok, "not yet valid (nbf)");
	sign("{\"alg\":\"HS256\"}", "{\"sub\":\"a\"}", secret, strlen(secret), NULL, tok);
	refused(strict, tok, "claim exp is missing");
	sign("{\"alg\":\"HS256\"}", "{\"sub\":\"a\",\"exp\":\"1800000000\"}", secret,
	     strlen(secret), NULL, tok);
	refused(strict, tok, "claim exp is not a date");
	sign("{\"alg\":\"HS256\"}", "{\"sub\":\"a\",\"exp\":-1}", secret, strlen(secret), NULL,
	     tok);
	refused(strict, tok, "claim exp is not a date");
	sign("{\"alg\":\"HS256\"}", "{\"sub\":\"a\",\"exp\":18446744073709551615}", secret,
	     strlen(secret), NULL, tok);
	refused(strict, tok, "claim exp is not a date");
	sb__jwt_keys_put(strict);
	sb__jwt_keys_put(lenient);
}

static void test_wrong_signatures_are_refused(void)
{
	struct sb__jwt_keys *k = every_alg(NULL, NULL, 0);
	char tok[4096];
	const char *claims = "{\"sub\":\"a\",\"exp\":1800000000}";

	sign("{\"alg\":\"HS256\"}", claims, "another secret of at least 32 bytes!", 36, NULL, tok);
	refused(k, tok, "bad signature");
	sign("{\"alg\":\"RS256\"}", claims, NULL, 0, rsa2, tok); /* another RSA key */
	refused(k, tok, "bad signature");
	sign("{\"alg\":\"ES256\"}", claims, NULL, 0, ec, tok);
	/* claims changed after signing: "sub":"a" becomes "sub":"b" */
	char *dot = strchr(tok, '.');
	char forged[256];
	b64url((const uint8_t *)"{\"sub\":\"b\",\"exp\":1800000000}", 27, forged);
	char *dot2 = strchr(dot + 1, '.');
	char rest[4096];
	snprintf(rest, sizeof rest, "%s", dot2);
	sprintf(dot + 1, "%s%s", forged, rest);
	refused(k, tok, "bad signature");
	sign("{\"alg\":\"ES256\"}", claims, NULL, 0, ec, tok);
	strcpy(strrchr(tok, '.') + 1, "AAAA"); /* a short signature */
	refused(k, tok, "bad signature");
	sb__jwt_keys_put(k);
}

static void test_wrong_audience_and_issuer_are_refused(void)
{
	struct sb__jwt_keys *k = every_alg("https://id.example", "switchboard", 0);
	char tok[4096];

	sign("{\"alg\":\"HS256\"}",
	     "{\"sub\":\"a\",\"exp\":1800000000,\"iss\":\"https://id.example\",\"aud\":\"other\"}",
	     secret, strlen(secret), NULL, tok);
	refused(k, tok, "wrong audience");
	sign("{\"alg\":\"HS256\"}",
	     "{\"sub\":\"a\",\"exp\":1800000000,\"iss\":\"https://id.example\","
	     "\"aud\":[\"a\",\"b\"]}",
	     secret, strlen(secret), NULL, tok);
	refused(k, tok, "wrong audience");
	sign("{\"alg\":\"HS256\"}",
	     "{\"sub\":\"a\",\"exp\":1800000000,\"iss\":\"https://id.example\"}", secret,
	     strlen(secret), NULL, tok);
	refused(k, tok, "claim aud is missing");
	sign("{\"alg\":\"HS256\"}",
	     "{\"sub\":\"a\",\"exp\":1800000000,\"iss\":\"https://evil.example\","
	     "\"aud\":\"switchboard\"}",
	     secret, strlen(secret), NULL, tok);
	refused(k, tok, "wrong issuer");
	sign("{\"alg\":\"HS256\"}", "{\"sub\":\"a\",\"exp\":1800000000,\"aud\":\"switchboard\"}",
	     secret, strlen(secret), NULL, tok);
	refused(k, tok, "claim iss is missing");
	sign("{\"alg\":\"HS256\"}",
	     "{\"sub\":\"a\",\"exp\":1800000000,\"iss\":\"https://id.example\",\"aud\":7}", secret,
	     strlen(secret), NULL, tok);
	refused(k, tok, "claim aud is not a string or an array of up to 16 strings");
	sb__jwt_keys_put(k);
}

static void test_alg_none_and_algs_not_configured_are_refused(void)
{
	struct sb__jwt_keys *k = every_alg(NULL, NULL, 0), *rs_only = keys_of(NULL, NULL, 0);
	char tok[4096], pem[4096], why[128];
	const char *claims = "{\"sub\":\"root\",\"exp\":1800000000,\"sb_role\":\"service\"}";

	signing_input("{\"alg\":\"none\"}", claims, tok);
	strcat(tok, ".");
	refused(k, tok, "alg none is refused");
	signing_input("{\"alg\":\"None\",\"typ\":\"JWT\"}", claims, tok);
	strcat(tok, ".");
	refused(k, tok, "alg none is refused");
	sign("{\"alg\":\"HS512\"}", claims, secret, strlen(secret), NULL, tok);
	refused(k, tok, "alg HS512 is not accepted");

	/* Algorithm confusion: an HS256 token keyed with the RSA public key's
	 * PEM text, naming the RSA key or none. */
	pem_of(rsa, "rs", pem, sizeof pem);
	CHECK_INT(sb__jwt_keys_add_pem(rs_only, pem, strlen(pem), why, sizeof why), 1);
	const char *pub = strstr(pem, "-----BEGIN");
	sign("{\"alg\":\"HS256\",\"kid\":\"rs\"}", claims, pub, strlen(pub), NULL, tok);
	refused(rs_only, tok, "alg HS256 is not configured");
	sign("{\"alg\":\"ES256\",\"kid\":\"rs\"}", claims, NULL, 0, ec, tok);
	refused(rs_only, tok, "alg ES256 is not configured");
	sign("{\"alg\":\"HS256\",\"kid\":\"rs\"}", claims, pub, strlen(pub), NULL, tok);
	refused(k, tok, "alg does not match the key's");
	sb__jwt_keys_put(k);
	sb__jwt_keys_put(rs_only);
}

static void test_the_kid_picks_the_key(void)
{
	struct sb__jwt_keys *k = keys_of(NULL, NULL, 0);
	char pem[8192], one[4096], tok[4096], why[128];
	struct sb__jwt_claims c;
	const char *claims = "{\"sub\":\"a\",\"exp\":1800000000}";

	pem_of(rsa, "2024-01", pem, sizeof pem);
	pem_of(rsa2, "2024-02", one, sizeof one);
	strcat(pem, one);
	CHECK_INT(sb__jwt_keys_add_pem(k, pem, strlen(pem), why, sizeof why), 2);
	sign("{\"alg\":\"RS256\",\"kid\":\"2024-02\"}", claims, NULL, 0, rsa2, tok);
	CHECK_INT(sb__jwt_verify(k, tok, strlen(tok), NOW, &c, why, sizeof why), 0);
	CHECK_STR(c.kid, "2024-02");
	sign("{\"alg\":\"RS256\",\"kid\":\"2024-01\"}", claims, NULL, 0, rsa2, tok);
	refused(k, tok, "bad signature"); /* the kid's key, not any key that fits */
	sign("{\"alg\":\"RS256\",\"kid\":\"2023-12\"}", claims, NULL, 0, rsa, tok);
	refused(k, tok, "unknown kid");
	sign("{\"alg\":\"RS256\"}", claims, NULL, 0, rsa, tok);
	refused(k, tok, "no kid, and 2 keys could have signed it");
	sb__jwt_keys_put(k);
}

static void test_malformed_tokens_are_refused(void)
{
	struct sb__jwt_keys *k = every_alg(NULL, NULL, 0);
	char tok[12000], part[9000];
	const char *h = "{\"alg\":\"HS256\"}";

	refused(k, "", "not a compact JWS (three parts)");
	refused(k, "abc.def", "not a compact JWS (three parts)");
	refused(k, "a.b.c.d.e", "not a compact JWS (three parts)");
	refused(k, "eyJhbGciOiJIUzI1NiJ9=.e30.AAAA",
		"the header is not base64url (or over 1024 bytes)");
	refused(k, "eyJhbGciOiJIUzI1NiJ9+.e30.AAAA",
		"the header is not base64url (or over 1024 bytes)");
	refused(k, "eyJhbGciOiJIUzI1NiJ9.e30.AA=A", "the signature is not base64url");
	signing_input("not json", "{}", tok);
	strcat(tok, ".AAAA");
	refused(k, tok, "the header is not JSON");
	signing_input("[\"alg\",\"HS256\"]", "{}", tok);
	strcat(tok, ".AAAA");
	refused(k, tok, "the header is not a JSON object");
	signing_input("{\"alg\":\"HS256\",\"alg\":\"none\"}", "{}", tok);
	strcat(tok, ".AAAA");
	refused(k, tok, "header alg is not one string");
	signing_input("{\"typ\":\"JWT\"}", "{}", tok);
	strcat(tok, ".AAAA");
	refused(k, tok, "header alg is missing");
	signing_input("{\"alg\":\"HS256\",\"crit\":[\"b64\"],\"b64\":false}", "{}", tok);
	strcat(tok, ".AAAA");
	refused(k, tok, "header crit names an extension we do not know");
	memset(part, 'k', 70);
	part[70] = 0;
	char hdr[2200];
	snprintf(hdr, sizeof hdr, "{\"alg\":\"HS256\",\"kid\":\"%s\"}", part);
	signing_input(hdr, "{}", tok);
	strcat(tok, ".AAAA");
	refused(k, tok, "header kid is not one string of up to 64 bytes");

	/* Signed, but the claims are not what we read. */
	sign(h, "[1]", secret, strlen(secret), NULL, tok);
	refused(k, tok, "claims are not a JSON object");
	sign(h, "{\"sub\":\"a\",\"sub\":\"root\",\"exp\":1800000000}", secret, strlen(secret), NULL,
	     tok);
	refused(k, tok, "claim sub appears twice");
	sign(h, "{\"exp\":1800000000}", secret, strlen(secret), NULL, tok);
	refused(k, tok, "claim sub is missing");
	sign(h, "{\"sub\":\"\",\"exp\":1800000000}", secret, strlen(secret), NULL, tok);
	refused(k, tok, "claim sub is not a string of 1 to 255 bytes");
	sign(h, "{\"sub\":\"a\\u0000b\",\"exp\":1800000000}", secret, strlen(secret), NULL, tok);
	refused(k, tok, "claim sub is not a string of 1 to 255 bytes");
	memset(part, 's', 256);
	part[256] = 0;
	char claims[1024];
	snprintf(claims, sizeof claims, "{\"sub\":\"%s\",\"exp\":1800000000}", part);
	sign(h, claims, secret, strlen(secret), NULL, tok);
	refused(k, tok, "claim sub is not a string of 1 to 255 bytes");
	sign(h, "{\"sub\":\"a\",\"exp\":1800000000,\"sb_role\":\"admin\"}", secret, strlen(secret),
	     NULL, tok);
	refused(k, tok, "claim sb_role is neither \"client\" nor \"service\"");
	sign(h, "{\"sub\":\"a\",\"exp\":1800000000,\"sb_name\":\"a,b\"}", secret, strlen(secret),
	     NULL, tok);
	refused(k, tok, "claim sb_name is not a peer name or prefix*");
	sign(h, "{\"sub\":\"a\",\"exp\":1800000000,\"sb_name\":\"a*b\"}", secret, strlen(secret),
	     NULL, tok);
	refused(k, tok, "claim sb_name is not a peer name or prefix*");
	sign(h, "{\"sub\":\"a\",\"exp\":1800000000,\"sb_allow_call\":\"user.*,\"}", secret,
	     strlen(secret), NULL, tok);
	refused(k, tok, "claim sb_allow_call is not a list of name patterns");
	sign(h, "{\"sub\":\"a\",\"exp\":1800000000,\"sb_allow_call\":[\"a,b\"]}", secret,
	     strlen(secret), NULL, tok);
	refused(k, tok, "claim sb_allow_call is not a list of name patterns");
	sign(h, "{\"sub\":\"a\",\"exp\":1800000000,\"sb_allow_register\":[]}", secret,
	     strlen(secret), NULL, tok);
	refused(k, tok, "claim sb_allow_register is not a list of name patterns");
	sign(h, "{\"sub\":\"a\",\"exp\":1800000000,\"sb_allow_register\":7}", secret,
	     strlen(secret), NULL, tok);
	refused(k, tok, "claim sb_allow_register is not a list of name patterns");

	/* Size bounds: the token, its header, its claims. */
	memset(tok, 'A', 8193);
	tok[8193] = 0;
	refused(k, tok, "token over 8192 bytes");
	memset(part, ' ', 2000);
	part[2000] = 0;
	snprintf(hdr, sizeof hdr, "{%s\"alg\":\"HS256\"}", part);
	signing_input(hdr, "{}", tok);
	strcat(tok, ".AAAA");
	refused(k, tok, "the header is not base64url (or over 1024 bytes)");
	memset(part, ' ', 4100);
	part[4100] = 0;
	char big[5000];
	snprintf(big, sizeof big, "{%s\"sub\":\"a\",\"exp\":1800000000}", part);
	sign(h, big, secret, strlen(secret), NULL, tok);
	refused(k, tok, "the claims are not base64url (or over 4096 bytes)");
	sb__jwt_keys_put(k);
}

static void test_key_files_are_checked(void)
{
	struct sb__jwt_keys *k = keys_of(NULL, NULL, 0);
	char pem[8192], why[128];
	EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");

	pem_of(small, "old", pem, sizeof pem);
	CHECK_INT(sb__jwt_keys_add_pem(k, pem, strlen(pem), why, sizeof why), SB_EINVAL);
	CHECK_STR(why, "an RSA token key under 2048 bits");
	pem_of(p384, NULL, pem, sizeof pem);
	CHECK_INT(sb__jwt_keys_add_pem(k, pem, strlen(pem), why, sizeof why), SB_EINVAL);
	CHECK_STR(why, "a token key that is neither RSA nor EC P-256");
	CHECK_INT(sb__jwt_keys_add_pem(k, "nothing here", 12, why, sizeof why), SB_EINVAL);
	CHECK_STR(why, "no -----BEGIN PUBLIC KEY----- block");
	pem_of(rsa, "a", pem, sizeof pem);
	*strstr(pem, "-----END") = 0;
	CHECK_INT(sb__jwt_keys_add_pem(k, pem, strlen(pem), why, sizeof why), SB_EINVAL);
	CHECK_STR(why, "a PUBLIC KEY block without its END line");
	pem_of(rsa, "a", pem, sizeof pem);
	pem[strlen("kid: a\n-----BEGIN PUBLIC KEY-----\n") + 3] ^= 1;
	CHECK_INT(sb__jwt_keys_add_pem(k, pem, strlen(pem), why, sizeof why), SB_EINVAL);
	CHECK_STR(why, "a PUBLIC KEY block OpenSSL cannot read");
	pem_of(rsa, "same", pem, sizeof pem);
	CHECK_INT(sb__jwt_keys_add_pem(k, pem, strlen(pem), why, sizeof why), 1);
	CHECK_INT(sb__jwt_keys_add_pem(k, pem, strlen(pem), why, sizeof why), SB_EINVAL);
	CHECK_STR(why, "two token keys with kid \"same\"");
	CHECK_INT(sb__jwt_keys_add_secret(k, "s", (const uint8_t *)"short", 5, why, sizeof why),
		  SB_EINVAL);
	CHECK_STR(why, "an HS256 secret must be 32 to 4096 bytes");
	CHECK_INT(sb__jwt_keys_load_pem(k, "/nonexistent/keys.pem", why, sizeof why), SB_EINVAL);
	CHECK_STR(why, "token keys /nonexistent/keys.pem: No such file or directory");
	struct sb__jwt_opts o = {NULL, NULL, 301};
	struct sb__jwt_keys *bad;
	CHECK_INT(sb__jwt_keys_new(&o, &bad, why, sizeof why), SB_EINVAL);
	CHECK_STR(why, "token leeway over 300 s");
	EVP_PKEY_free(small);
	EVP_PKEY_free(p384);
	sb__jwt_keys_put(k);

	/* Keys without a kid: one per alg verifies tokens that name none. */
	struct sb__jwt_keys *u = keys_of(NULL, NULL, 0);
	char one[4096], tok[4096];
	struct sb__jwt_claims c;
	pem_of(rsa, NULL, pem, sizeof pem);
	pem_of(ec, NULL, one, sizeof one);
	strcat(pem, one);
	CHECK_INT(sb__jwt_keys_add_pem(u, pem, strlen(pem), why, sizeof why), 2);
	CHECK_INT(sb__jwt_keys_add_secret(u, NULL, (const uint8_t *)secret, strlen(secret), why,
					  sizeof why),
		  0);
	sign("{\"alg\":\"ES256\"}", "{\"sub\":\"a\",\"exp\":1800000000}", NULL, 0, ec, tok);
	CHECK_INT(sb__jwt_verify(u, tok, strlen(tok), NOW, &c, why, sizeof why), 0);
	CHECK_STR(c.kid, "");
	sign("{\"alg\":\"ES256\",\"kid\":\"x\"}", "{\"sub\":\"a\",\"exp\":1800000000}", NULL, 0, ec,
	     tok);
	refused(u, tok, "unknown kid");
	pem_of(rsa2, NULL, pem, sizeof pem);
	CHECK_INT(sb__jwt_keys_add_pem(u, pem, strlen(pem), why, sizeof why), 1);
	sign("{\"alg\":\"RS256\"}", "{\"sub\":\"a\",\"exp\":1800000000}", NULL, 0, rsa, tok);
	refused(u, tok, "no kid, and 2 keys could have signed it");
	sb__jwt_keys_put(u);
}

/* ---- rotation ------------------------------------------------------------- */

static struct sb__jwt_slot slot;
static atomic_int stop, verified, failed;
static char shared_tok[4096]; /* signed with the key every set holds */

static void *verifier(void *arg)
{
	struct sb__jwt_cache cache = {0};
	(void)arg;
	while (!atomic_load(&stop)) {
		struct sb__jwt_keys *k = sb__jwt_slot_current(&slot, &cache);
		struct sb__jwt_claims c;
		char why[128];
		if (k != NULL && sb__jwt_verify(k, shared_tok, strlen(shared_tok), NOW, &c, why,
						sizeof why) == 0)
			atomic_fetch_add(&verified, 1);
		else
			atomic_fetch_add(&failed, 1);
	}
	sb__jwt_cache_drop(&cache);
	return NULL;
}

static void test_key_rotation_swaps_the_set(void)
{
	char tok_a[4096], tok_b[4096], why[128];
	struct sb__jwt_claims c;
	struct sb__jwt_cache cache = {0};
	const char *claims = "{\"sub\":\"a\",\"exp\":1800000000}";

	sb__jwt_slot_init(&slot);
	CHECK(sb__jwt_slot_current(&slot, &cache) == NULL); /* tokens off */

	struct sb__jwt_keys *a = keys_of(NULL, NULL, 0), *b = keys_of(NULL, NULL, 0);
	char pem[4096];
	pem_of(rsa, "2024-01", pem, sizeof pem);
	CHECK_INT(sb__jwt_keys_add_pem(a, pem, strlen(pem), why, sizeof why), 1);
	pem_of(rsa2, "2024-02", pem, sizeof pem);
	CHECK_INT(sb__jwt_keys_add_pem(b, pem, strlen(pem), why, sizeof why), 1);
	sign("{\"alg\":\"RS256\",\"kid\":\"2024-01\"}", claims, NULL, 0, rsa, tok_a);
	sign("{\"alg\":\"RS256\",\"kid\":\"2024-02\"}", claims, NULL, 0, rsa2, tok_b);

	sb__jwt_slot_set(&slot, a);
	sb__jwt_keys_put(a); /* the slot holds it now */
	struct sb__jwt_keys *k = sb__jwt_slot_current(&slot, &cache);
	CHECK_INT(sb__jwt_verify(k, tok_a, strlen(tok_a), NOW, &c, why, sizeof why), 0);
	refused(k, tok_b, "unknown kid");

	/* The reload: b in force. This reader still holds a until it looks again. */
	sb__jwt_slot_set(&slot, b);
	sb__jwt_keys_put(b);
	CHECK_INT(sb__jwt_verify(k, tok_a, strlen(tok_a), NOW, &c, why, sizeof why), 0);
	k = sb__jwt_slot_current(&slot, &cache); /* a is freed here: ASan sees any use after */
	refused(k, tok_a, "unknown kid");
	CHECK_INT(sb__jwt_verify(k, tok_b, strlen(tok_b), NOW, &c, why, sizeof why), 0);
	sb__jwt_cache_drop(&cache);

	/* Two threads verify while the set is swapped 200 times under them;
	 * every set holds the HS256 key they use, so every check passes. */
	sign("{\"alg\":\"HS256\",\"kid\":\"hs\"}", claims, secret, strlen(secret), NULL,
	     shared_tok);
	struct sb__jwt_keys *first = keys_of(NULL, NULL, 0);
	CHECK_INT(sb__jwt_keys_add_secret(first, "hs", (const uint8_t *)secret, strlen(secret), why,
					  sizeof why),
		  0);
	sb__jwt_slot_set(&slot, first);
	sb__jwt_keys_put(first);
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, verifier, NULL);
	for (int i = 0; i < 200; i++) {
		struct sb__jwt_keys *n = keys_of(NULL, NULL, 0);
		CHECK_INT(sb__jwt_keys_add_secret(n, "hs", (const uint8_t *)secret, strlen(secret),
						  why, sizeof why),
			  0);
		sb__jwt_slot_set(&slot, n);
		sb__jwt_keys_put(n);
		/* let the readers get a few checks in between swaps, by count */
		int before = atomic_load(&verified) + atomic_load(&failed);
		for (int spin = 0;
		     spin < 100000 && atomic_load(&verified) + atomic_load(&failed) < before + 4;
		     spin++)
			sched_yield();
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	CHECK(atomic_load(&verified) > 0);
	CHECK_INT(atomic_load(&failed), 0);
	sb__jwt_slot_destroy(&slot);
}

int main(void)
{
	rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	rsa2 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	CHECK(rsa != NULL && rsa2 != NULL && ec != NULL);

	RUN(test_valid_tokens_of_each_alg_pass);
	RUN(test_a_token_signed_by_the_openssl_command_line_passes);
	RUN(test_time_claims_are_checked_with_the_leeway);
	RUN(test_wrong_signatures_are_refused);
	RUN(test_wrong_audience_and_issuer_are_refused);
	RUN(test_alg_none_and_algs_not_configured_are_refused);
	RUN(test_the_kid_picks_the_key);
	RUN(test_malformed_tokens_are_refused);
	RUN(test_key_files_are_checked);
	RUN(test_key_rotation_swaps_the_set);

	EVP_PKEY_free(rsa);
	EVP_PKEY_free(rsa2);
	EVP_PKEY_free(ec);
	return TEST_EXIT();
}
