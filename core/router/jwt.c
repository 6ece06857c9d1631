/* Bearer token verification for the edge: compact JWS with HS256, ES256 or
 * RS256, the key set and its slot, and the claims the router acts on.
 *
 * Our own over OpenSSL 3's EVP rather than Debian's libjwt-dev (1.10.2):
 * - alg "none" and algorithm confusion: libjwt 1.10 takes the algorithm
 *   from the token's header. jwt_decode() with no key accepts any
 *   unsigned token, and with a key it verifies with whatever alg the
 *   token names, so an RS256 deployment must check the alg itself, after
 *   the fact, or an HS256 token "signed" with the public key's PEM text
 *   passes. Here each key has one alg, fixed when it is loaded.
 * - several keys: 1.10 takes one key per call and has no kid lookup (the
 *   key-provider callback came in 1.15); finding the key means decoding
 *   the token twice.
 * - claims: 1.10 checks neither exp, nbf, iss nor aud (the validation
 *   API came in 1.12), so all of that would be ours anyway.
 * - allocation: every decode builds jansson objects for the header and
 *   the claims and copies the token (bounded only by what the caller
 *   checks first). Here a token costs no allocation of ours: it is decoded
 *   into fixed buffers and its JSON read with core/common/json.c.
 * - maintenance: upstream's current line (3.x) is a different API;
 *   bookworm's 1.10 gets security fixes only (deb12u1: CVE-2024-25189).
 * What is left is the crypto, which is OpenSSL's: HMAC, EVP_DigestVerify.
 * docs/gateway.md, "Tokens", says the same with figures. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include <switchboard/error.h>

#include "common/hmac.h"
#include "common/json.h"
#include "proto/mp.h"
#include "router/jwt.h"
#include "router/pattern.h"

struct key {
	char kid[SB__JWT_KID_MAX + 1]; /* "" when the key has none */
	enum sb__jwt_alg alg;          /* the one alg this key verifies */
	EVP_PKEY *pkey;                /* RS256, ES256 */
	uint8_t *secret;               /* HS256 */
	size_t secret_len;             /* ... */
};

struct sb__jwt_keys {
	atomic_uint refs;
	struct key keys[SB__JWT_KEYS_MAX];
	unsigned n;
	char issuer[SB__JWT_SUB_MAX + 1]; /* "" when not checked */
	char audience[SB__JWT_SUB_MAX + 1];
	uint32_t leeway;
};

static int say(char *why, size_t cap, const char *text)
{
	if (cap > 0)
		snprintf(why, cap, "%s", text);
	return SB_EINVAL;
}

int sb__jwt_keys_new(const struct sb__jwt_opts *o, struct sb__jwt_keys **out, char *why, size_t cap)
{
	*out = NULL;
	if (o->leeway_s > SB__JWT_LEEWAY_MAX)
		return say(why, cap, "token leeway over 300 s");
	if ((o->issuer != NULL && strlen(o->issuer) > SB__JWT_SUB_MAX) ||
	    (o->audience != NULL && strlen(o->audience) > SB__JWT_SUB_MAX))
		return say(why, cap, "token issuer or audience over 255 bytes");
	struct sb__jwt_keys *k = calloc(1, sizeof *k);
	if (k == NULL)
		return SB_ENOMEM;
	atomic_init(&k->refs, 1);
	if (o->issuer != NULL)
		snprintf(k->issuer, sizeof k->issuer, "%s", o->issuer);
	if (o->audience != NULL)
		snprintf(k->audience, sizeof k->audience, "%s", o->audience);
	k->leeway = o->leeway_s;
	*out = k;
	return 0;
}

void sb__jwt_keys_get(struct sb__jwt_keys *k)
{
	atomic_fetch_add_explicit(&k->refs, 1, memory_order_relaxed);
}

void sb__jwt_keys_put(struct sb__jwt_keys *k)
{
	if (k == NULL || atomic_fetch_sub_explicit(&k->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (unsigned i = 0; i < k->n; i++) {
		EVP_PKEY_free(k->keys[i].pkey);
		if (k->keys[i].secret != NULL) {
			sb__hmac_wipe(k->keys[i].secret, k->keys[i].secret_len);
			free(k->keys[i].secret);
		}
	}
	free(k);
}

unsigned sb__jwt_keys_count(const struct sb__jwt_keys *k)
{
	return k->n;
}

/* A free slot for a key named @p kid, or NULL with @p why said. */
static struct key *slot_for(struct sb__jwt_keys *k, const char *kid, size_t kid_len, char *why,
			    size_t cap)
{
	char t[SB__JWT_KID_MAX + 64];

	if (k->n == SB__JWT_KEYS_MAX) {
		say(why, cap, "more than 32 token keys");
		return NULL;
	}
	if (kid_len > SB__JWT_KID_MAX) {
		say(why, cap, "token key id over 64 bytes");
		return NULL;
	}
	for (size_t i = 0; i < kid_len; i++)
		if ((unsigned char)kid[i] <= 0x20 || kid[i] == 0x7f) {
			say(why, cap, "token key id with a blank or control character");
			return NULL;
		}
	for (unsigned i = 0; i < k->n && kid_len > 0; i++) /* unnamed keys may be several */
		if (strlen(k->keys[i].kid) == kid_len &&
		    memcmp(k->keys[i].kid, kid, kid_len) == 0) {
			snprintf(t, sizeof t, "two token keys with kid \"%.*s\"", (int)kid_len,
				 kid);
			say(why, cap, t);
			return NULL;
		}
	struct key *key = &k->keys[k->n];
	memset(key, 0, sizeof *key);
	memcpy(key->kid, kid, kid_len);
	return key;
}

int sb__jwt_keys_add_secret(struct sb__jwt_keys *k, const char *kid, const uint8_t *secret,
			    size_t len, char *why, size_t cap)
{
	if (len < SB__JWT_SECRET_MIN || len > SB__JWT_SECRET_MAX)
		return say(why, cap, "an HS256 secret must be 32 to 4096 bytes");
	struct key *key =
		slot_for(k, kid != NULL ? kid : "", kid != NULL ? strlen(kid) : 0, why, cap);
	if (key == NULL)
		return SB_EINVAL;
	key->secret = malloc(len);
	if (key->secret == NULL)
		return SB_ENOMEM;
	memcpy(key->secret, secret, len);
	key->secret_len = len;
	key->alg = SB__JWT_HS256;
	k->n++;
	return 0;
}

/* The alg a public key verifies, or 0 (with @p why) for one we refuse. */
static enum sb__jwt_alg pkey_alg(EVP_PKEY *p, char *why, size_t cap)
{
	char group[64] = "";

	if (EVP_PKEY_is_a(p, "RSA")) {
		if (EVP_PKEY_get_bits(p) < 2048) {
			say(why, cap, "an RSA token key under 2048 bits");
			return 0;
		}
		return SB__JWT_RS256;
	}
	if (EVP_PKEY_is_a(p, "EC") &&
	    EVP_PKEY_get_utf8_string_param(p, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
					   NULL) == 1 &&
	    (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0))
		return SB__JWT_ES256;
	say(why, cap, "a token key that is neither RSA nor EC P-256");
	return 0;
}

int sb__jwt_keys_add_pem(struct sb__jwt_keys *k, const char *pem, size_t len, char *why, size_t cap)
{
	static const char begin[] = "-----BEGIN PUBLIC KEY-----";
	static const char end[] = "-----END PUBLIC KEY-----";
	const char *s = pem, *stop = pem + len;
	int added = 0;

	for (;;) {
		const char *b = memmem(s, (size_t)(stop - s), begin, sizeof begin - 1);
		if (b == NULL)
			break;
		const char *e = memmem(b, (size_t)(stop - b), end, sizeof end - 1);
		if (e == NULL)
			return say(why, cap, "a PUBLIC KEY block without its END line");
		e += sizeof end - 1;

		/* Its name: the last "kid: NAME" line between the previous block and this one. */
		const char *kid = "", *line = s;
		size_t kid_len = 0;
		while (line < b) {
			const char *nl = memchr(line, '\n', (size_t)(b - line));
			const char *le = nl != NULL ? nl : b;
			if (le - line >= 4 && memcmp(line, "kid:", 4) == 0) {
				kid = line + 4;
				while (kid < le && (*kid == ' ' || *kid == '\t'))
					kid++;
				const char *ke = le;
				while (ke > kid &&
				       (ke[-1] == ' ' || ke[-1] == '\t' || ke[-1] == '\r'))
					ke--;
				kid_len = (size_t)(ke - kid);
			}
			line = nl != NULL ? nl + 1 : b;
		}

		BIO *bio = BIO_new_mem_buf(b, (int)(e - b));
		EVP_PKEY *p = bio != NULL ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
		BIO_free(bio);
		if (p == NULL)
			return say(why, cap, "a PUBLIC KEY block OpenSSL cannot read");
		enum sb__jwt_alg alg = pkey_alg(p, why, cap);
		struct key *key = alg != 0 ? slot_for(k, kid, kid_len, why, cap) : NULL;
		if (key == NULL) {
			EVP_PKEY_free(p);
			return SB_EINVAL;
		}
		key->pkey = p;
		key->alg = alg;
		k->n++;
		added++;
		s = e;
	}
	if (added == 0)
		return say(why, cap, "no -----BEGIN PUBLIC KEY----- block");
	return added;
}

int sb__jwt_keys_load_pem(struct sb__jwt_keys *k, const char *path, char *why, size_t cap)
{
	char t[512];
	FILE *f = fopen(path, "rb");

	if (f == NULL) {
		snprintf(t, sizeof t, "token keys %s: %s", path, strerror(errno));
		return say(why, cap, t);
	}
	char *text = malloc((1u << 20) + 1);
	size_t n = text != NULL ? fread(text, 1, (1u << 20) + 1, f) : 0;
	fclose(f);
	if (text == NULL)
		return SB_ENOMEM;
	int rc;
	if (n > (1u << 20)) {
		snprintf(t, sizeof t, "token keys %s: over 1 MiB", path);
		rc = say(why, cap, t);
	} else if ((rc = sb__jwt_keys_add_pem(k, text, n, t, sizeof t)) < 0) {
		char w[600];
		snprintf(w, sizeof w, "token keys %s: %s", path, t);
		say(why, cap, w);
	}
	free(text);
	return rc;
}

/* ---- the slot ----------------------------------------------------------- */

void sb__jwt_slot_init(struct sb__jwt_slot *s)
{
	pthread_mutex_init(&s->lock, NULL);
	s->keys = NULL;
	__atomic_store_n(&s->gen, 1, __ATOMIC_RELAXED); /* a cache at 0 has never looked */
}

void sb__jwt_slot_destroy(struct sb__jwt_slot *s)
{
	sb__jwt_keys_put(s->keys);
	s->keys = NULL;
	pthread_mutex_destroy(&s->lock);
}

void sb__jwt_slot_set(struct sb__jwt_slot *s, struct sb__jwt_keys *k)
{
	if (k != NULL)
		sb__jwt_keys_get(k);
	pthread_mutex_lock(&s->lock);
	struct sb__jwt_keys *old = s->keys;
	s->keys = k;
	__atomic_fetch_add(&s->gen, 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&s->lock);
	sb__jwt_keys_put(old); /* readers hold their own */
}

struct sb__jwt_keys *sb__jwt_slot_current(struct sb__jwt_slot *s, struct sb__jwt_cache *c)
{
	if (__atomic_load_n(&s->gen, __ATOMIC_ACQUIRE) != c->gen) {
		struct sb__jwt_keys *old = c->keys;
		pthread_mutex_lock(&s->lock);
		c->keys = s->keys;
		if (c->keys != NULL)
			sb__jwt_keys_get(c->keys);
		c->gen = __atomic_load_n(&s->gen, __ATOMIC_RELAXED);
		pthread_mutex_unlock(&s->lock);
		sb__jwt_keys_put(old);
	}
	return c->keys;
}

void sb__jwt_cache_drop(struct sb__jwt_cache *c)
{
	sb__jwt_keys_put(c->keys);
	c->keys = NULL;
	c->gen = 0;
}

/* ---- verification --------------------------------------------------------- */

static int no(char *why, size_t cap, const char *text)
{
	if (cap > 0)
		snprintf(why, cap, "%s", text);
	return SB_EUNAUTHORIZED;
}

/* base64url without padding (RFC 7515 2) into @p out (@p cap bytes):
 * @return the bytes, or -1 for a character outside the alphabet, a length
 * no encoding has, leftover bits that are not zero, or no room. */
static long b64url(const char *s, size_t n, uint8_t *out, size_t cap)
{
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t o = 0;

	if (n % 4 == 1)
		return -1;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		int v = c >= 'A' && c <= 'Z'   ? c - 'A'
			: c >= 'a' && c <= 'z' ? c - 'a' + 26
			: c >= '0' && c <= '9' ? c - '0' + 52
			: c == '-'             ? 62
			: c == '_'             ? 63
					       : -1;
		if (v < 0)
			return -1;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o == cap)
				return -1;
			out[o++] = (uint8_t)(acc >> bits);
		}
	}
	if ((acc & ((1u << bits) - 1)) != 0)
		return -1;
	return (long)o;
}

/* An item's string, NUL-terminated into @p dst: 0, or -1 when it is not a
 * string, is empty (unless @p empty_ok), holds a NUL or is too long. */
static int str_of(const struct sb__mp_item *it, char *dst, size_t cap, int empty_ok)
{
	if (it->type != SB__MP_STR || it->len >= cap || (it->len == 0 && !empty_ok) ||
	    memchr(it->body, 0, it->len) != NULL)
		return -1;
	memcpy(dst, it->body, it->len);
	dst[it->len] = 0;
	return 0;
}

static int is_key(const struct sb__mp_item *it, const char *name)
{
	size_t n = strlen(name);
	return it->len == n && memcmp(it->body, name, n) == 0;
}

/* Skip one whole value (its elements too) after its header in @p it. */
static int skip(const uint8_t **p, const uint8_t *end, const struct sb__mp_item *it)
{
	uint64_t left = it->type == SB__MP_ARRAY ? it->len
			: it->type == SB__MP_MAP ? 2ull * it->len
						 : 0;
	while (left > 0) {
		struct sb__mp_item sub;
		if (sb__mp_read(p, end, &sub) != SB__MP_OK)
			return -1;
		left--;
		if (sub.type == SB__MP_ARRAY)
			left += sub.len;
		else if (sub.type == SB__MP_MAP)
			left += 2ull * sub.len;
	}
	return 0;
}

/* Dates past 2^40 s (year 36812) are refused, so adding a leeway cannot
 * overflow. */
#define DATE_MAX ((int64_t)1 << 40)

/* A NumericDate: an integer or a float, seconds since the epoch, >= 0. */
static int date_of(const struct sb__mp_item *it, int64_t *out)
{
	if (it->type == SB__MP_UINT) {
		if (it->u > (uint64_t)DATE_MAX)
			return -1;
		*out = (int64_t)it->u;
		return 0;
	}
	if (it->type == SB__MP_FLOAT && it->len == 8) {
		double d;
		uint64_t bits = sb__be64(it->body);
		memcpy(&d, &bits, sizeof d);
		if (!(d >= 0 && d <= (double)DATE_MAX)) /* NaN too */
			return -1;
		*out = (int64_t)d;
		return 0;
	}
	return -1;
}

/* A name rule claim: a string of comma-separated patterns, or an array of
 * strings, joined by ','; checked as a configured rule would be. */
static int rule_of(const uint8_t **p, const uint8_t *end, const struct sb__mp_item *it, char *dst,
		   const char *claim, char *why, size_t cap)
{
	char t[160];
	size_t n = 0;

	dst[0] = 0;
	if (it->type == SB__MP_STR) {
		if (str_of(it, dst, SB__JWT_RULE_MAX + 1, 0) != 0)
			goto bad;
	} else if (it->type == SB__MP_ARRAY && it->len > 0) {
		for (uint32_t i = 0; i < it->len; i++) {
			struct sb__mp_item s;
			if (sb__mp_read(p, end, &s) != SB__MP_OK || s.type != SB__MP_STR ||
			    s.len == 0 || n + (i > 0) + s.len > SB__JWT_RULE_MAX ||
			    memchr(s.body, ',', s.len) != NULL)
				goto bad;
			if (i > 0)
				dst[n++] = ',';
			memcpy(dst + n, s.body, s.len);
			n += s.len;
			dst[n] = 0;
		}
	} else {
		goto bad;
	}
	struct sb__patterns pat = {0};
	int rc = sb__patterns_compile(&pat, claim, dst, t, sizeof t);
	sb__patterns_free(&pat);
	if (rc == 0)
		return 0;
bad:
	snprintf(t, sizeof t, "claim %s is not a list of name patterns", claim);
	return no(why, cap, t);
}

/* Claim names read, so that a second one is refused rather than guessed. */
enum {
	C_SUB = 1 << 0,
	C_ISS = 1 << 1,
	C_AUD = 1 << 2,
	C_EXP = 1 << 3,
	C_NBF = 1 << 4,
	C_ROLE = 1 << 5,
	C_NAME = 1 << 6,
	C_CALL = 1 << 7,
	C_REG = 1 << 8,
};

static int claims(const struct sb__jwt_keys *k, const uint8_t *mp, size_t len, int64_t now,
		  struct sb__jwt_claims *c, char *why, size_t cap)
{
	const uint8_t *p = mp, *end = mp + len;
	struct sb__mp_item m, key, v;
	unsigned seen = 0, aud_ok = 0;
	char iss[SB__JWT_SUB_MAX + 1] = "", t[96];

	if (sb__mp_read(&p, end, &m) != SB__MP_OK || m.type != SB__MP_MAP)
		return no(why, cap, "claims are not a JSON object");
	for (uint32_t i = 0; i < m.len; i++) {
		if (sb__mp_read(&p, end, &key) != SB__MP_OK || key.type != SB__MP_STR ||
		    sb__mp_read(&p, end, &v) != SB__MP_OK)
			return no(why, cap, "claims are not a JSON object");
		static const struct {
			const char *name;
			unsigned bit;
		} known[] = {{"sub", C_SUB},
			     {"iss", C_ISS},
			     {"aud", C_AUD},
			     {"exp", C_EXP},
			     {"nbf", C_NBF},
			     {"sb_role", C_ROLE},
			     {"sb_name", C_NAME},
			     {"sb_allow_call", C_CALL},
			     {"sb_allow_register", C_REG}};
		unsigned bit = 0;
		for (size_t j = 0; j < sizeof known / sizeof known[0]; j++)
			if (is_key(&key, known[j].name))
				bit = known[j].bit;
		if (bit == 0) {
			if (skip(&p, end, &v) != 0)
				return no(why, cap, "claims are not a JSON object");
			continue;
		}
		if (seen & bit) {
			snprintf(t, sizeof t, "claim %.*s appears twice", (int)key.len,
				 (const char *)key.body);
			return no(why, cap, t);
		}
		seen |= bit;
		switch (bit) {
		case C_SUB:
			if (str_of(&v, c->sub, sizeof c->sub, 0) != 0)
				return no(why, cap, "claim sub is not a string of 1 to 255 bytes");
			break;
		case C_ISS:
			if (str_of(&v, iss, sizeof iss, 1) != 0)
				return no(why, cap, "claim iss is not a string of up to 255 bytes");
			break;
		case C_AUD:
			if (v.type == SB__MP_STR) {
				aud_ok = k->audience[0] != 0 && is_key(&v, k->audience);
			} else if (v.type == SB__MP_ARRAY && v.len <= SB__JWT_AUD_MAX) {
				for (uint32_t j = 0; j < v.len; j++) {
					struct sb__mp_item a;
					if (sb__mp_read(&p, end, &a) != SB__MP_OK ||
					    a.type != SB__MP_STR)
						return no(why, cap,
							  "claim aud is not a string or an "
							  "array of strings");
					aud_ok |= k->audience[0] != 0 && is_key(&a, k->audience);
				}
			} else {
				return no(why, cap,
					  "claim aud is not a string or an array of up to 16 "
					  "strings");
			}
			break;
		case C_EXP:
			if (date_of(&v, &c->exp) != 0)
				return no(why, cap, "claim exp is not a date");
			break;
		case C_NBF:
			if (date_of(&v, &c->nbf) != 0)
				return no(why, cap, "claim nbf is not a date");
			c->has_nbf = 1;
			break;
		case C_ROLE:
			if (str_of(&v, c->role, sizeof c->role, 0) != 0 ||
			    (strcmp(c->role, "client") != 0 && strcmp(c->role, "service") != 0))
				return no(why, cap,
					  "claim sb_role is neither \"client\" nor \"service\"");
			break;
		case C_NAME: {
			/* A peer name, or a prefix ending in '*': one pattern. */
			struct sb__patterns pat = {0};
			int bad = str_of(&v, c->name, sizeof c->name, 0) != 0 ||
				  strchr(c->name, ',') != NULL;
			if (!bad) {
				bad = sb__patterns_compile(&pat, "sb_name", c->name, t, sizeof t) !=
				      0;
				sb__patterns_free(&pat);
			}
			if (bad)
				return no(why, cap, "claim sb_name is not a peer name or prefix*");
			break;
		}
		case C_CALL:
			if (rule_of(&p, end, &v, c->allow_call, "sb_allow_call", why, cap) != 0)
				return SB_EUNAUTHORIZED;
			c->has_allow_call = 1;
			break;
		case C_REG:
			if (rule_of(&p, end, &v, c->allow_register, "sb_allow_register", why,
				    cap) != 0)
				return SB_EUNAUTHORIZED;
			c->has_allow_register = 1;
			break;
		}
	}
	if (p != end)
		return no(why, cap, "claims are not a JSON object");
	if (!(seen & C_SUB))
		return no(why, cap, "claim sub is missing");
	if (!(seen & C_EXP))
		return no(why, cap, "claim exp is missing");
	if (now >= c->exp + (int64_t)k->leeway)
		return no(why, cap, "expired");
	if (c->has_nbf && now + (int64_t)k->leeway < c->nbf)
		return no(why, cap, "not yet valid (nbf)");
	if (k->issuer[0] != 0 && strcmp(iss, k->issuer) != 0)
		return no(why, cap, (seen & C_ISS) ? "wrong issuer" : "claim iss is missing");
	if (k->audience[0] != 0 && !aud_ok)
		return no(why, cap, (seen & C_AUD) ? "wrong audience" : "claim aud is missing");
	if (c->role[0] == 0)
		strcpy(c->role, "client");
	return 0;
}

/* The header: its alg and kid, nothing else understood ("crit" refused). */
static int header(const uint8_t *mp, size_t len, char *alg, size_t alg_cap, char *kid, char *why,
		  size_t cap)
{
	const uint8_t *p = mp, *end = mp + len;
	struct sb__mp_item m, key, v;
	int have_alg = 0, have_kid = 0;

	if (sb__mp_read(&p, end, &m) != SB__MP_OK || m.type != SB__MP_MAP)
		return no(why, cap, "the header is not a JSON object");
	for (uint32_t i = 0; i < m.len; i++) {
		if (sb__mp_read(&p, end, &key) != SB__MP_OK || key.type != SB__MP_STR ||
		    sb__mp_read(&p, end, &v) != SB__MP_OK)
			return no(why, cap, "the header is not a JSON object");
		if (is_key(&key, "alg")) {
			if (have_alg++ || str_of(&v, alg, alg_cap, 0) != 0)
				return no(why, cap, "header alg is not one string");
		} else if (is_key(&key, "kid")) {
			if (have_kid++ || str_of(&v, kid, SB__JWT_KID_MAX + 1, 0) != 0)
				return no(why, cap,
					  "header kid is not one string of up to 64 bytes");
		} else if (is_key(&key, "crit")) {
			/* RFC 7515 4.1.11: extensions we do not know must be refused. */
			return no(why, cap, "header crit names an extension we do not know");
		} else if (skip(&p, end, &v) != 0) {
			return no(why, cap, "the header is not a JSON object");
		}
	}
	if (p != end)
		return no(why, cap, "the header is not a JSON object");
	if (!have_alg)
		return no(why, cap, "header alg is missing");
	return 0;
}

/* A JWS ES256 signature (R || S, 32 bytes each) as the DER that OpenSSL
 * verifies: SEQUENCE of two INTEGERs, minimal, positive. */
static size_t es256_der(const uint8_t rs[64], uint8_t out[72])
{
	size_t n = 2;

	for (int half = 0; half < 2; half++) {
		const uint8_t *x = rs + 32 * half;
		size_t skip0 = 0;
		while (skip0 < 31 && x[skip0] == 0)
			skip0++;
		size_t len = 32 - skip0;
		int pad = x[skip0] & 0x80 ? 1 : 0;
		out[n++] = 0x02;
		out[n++] = (uint8_t)(len + (size_t)pad);
		if (pad)
			out[n++] = 0;
		memcpy(out + n, x + skip0, len);
		n += len;
	}
	out[0] = 0x30;
	out[1] = (uint8_t)(n - 2);
	return n;
}

static int signature_ok(const struct key *key, const char *signed_part, size_t signed_len,
			const uint8_t *sig, size_t sig_len)
{
	if (key->alg == SB__JWT_HS256) {
		uint8_t mac[32];
		unsigned mac_len = sizeof mac;
		if (sig_len != 32 ||
		    HMAC(EVP_sha256(), key->secret, (int)key->secret_len,
			 (const uint8_t *)signed_part, signed_len, mac, &mac_len) == NULL)
			return 0;
		return CRYPTO_memcmp(mac, sig, 32) == 0;
	}
	uint8_t der[72];
	if (key->alg == SB__JWT_ES256) {
		if (sig_len != 64)
			return 0;
		sig_len = es256_der(sig, der);
		sig = der;
	} else if (sig_len != (size_t)EVP_PKEY_get_size(key->pkey)) {
		return 0;
	}
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int ok = md != NULL &&
		 EVP_DigestVerifyInit_ex(md, NULL, "SHA256", NULL, NULL, key->pkey, NULL) == 1 &&
		 EVP_DigestVerify(md, sig, sig_len, (const uint8_t *)signed_part, signed_len) == 1;
	EVP_MD_CTX_free(md);
	return ok;
}

int sb__jwt_verify(const struct sb__jwt_keys *k, const char *token, size_t len, int64_t now,
		   struct sb__jwt_claims *out, char *why, size_t cap)
{
	uint8_t raw[SB__JWT_CLAIMS_MAX], mp[2 * SB__JWT_CLAIMS_MAX], sig[512];
	char alg[16], kid[SB__JWT_KID_MAX + 1] = "", t[128];
	struct sb__json_error je;

	memset(out, 0, sizeof *out);
	if (len > SB__JWT_TOKEN_MAX)
		return no(why, cap, "token over 8192 bytes");
	const char *d1 = memchr(token, '.', len);
	const char *d2 = d1 != NULL ? memchr(d1 + 1, '.', (size_t)(token + len - d1 - 1)) : NULL;
	if (d2 == NULL || memchr(d2 + 1, '.', (size_t)(token + len - d2 - 1)) != NULL)
		return no(why, cap, "not a compact JWS (three parts)");

	/* The header, decoded into fixed buffers: no allocation. */
	long n = b64url(token, (size_t)(d1 - token), raw, SB__JWT_HEADER_MAX);
	if (n < 0)
		return no(why, cap, "the header is not base64url (or over 1024 bytes)");
	struct sb__json_buf b = {.data = (char *)mp, .cap = sizeof mp, .fixed = 1};
	if (sb__json_parse((const char *)raw, (size_t)n, &b, &je) != 0)
		return no(why, cap, "the header is not JSON");
	if (header(mp, b.len, alg, sizeof alg, kid, why, cap) != 0)
		return SB_EUNAUTHORIZED;

	enum sb__jwt_alg a = strcmp(alg, "HS256") == 0   ? SB__JWT_HS256
			     : strcmp(alg, "RS256") == 0 ? SB__JWT_RS256
			     : strcmp(alg, "ES256") == 0 ? SB__JWT_ES256
							 : 0;
	if (strcasecmp(alg, "none") == 0)
		return no(why, cap, "alg none is refused");
	if (a == 0) {
		snprintf(t, sizeof t, "alg %s is not accepted", alg);
		return no(why, cap, t);
	}
	const struct key *key = NULL;
	unsigned of_alg = 0;
	for (unsigned i = 0; i < k->n; i++) {
		of_alg += k->keys[i].alg == a;
		if (kid[0] != 0 ? strcmp(k->keys[i].kid, kid) == 0 : k->keys[i].alg == a)
			key = &k->keys[i];
	}
	if (of_alg == 0) {
		snprintf(t, sizeof t, "alg %s is not configured", alg);
		return no(why, cap, t);
	}
	if (kid[0] != 0 && key == NULL)
		return no(why, cap, "unknown kid");
	if (kid[0] == 0 && of_alg > 1) {
		snprintf(t, sizeof t, "no kid, and %u keys could have signed it", of_alg);
		return no(why, cap, t);
	}
	if (key->alg != a)
		return no(why, cap, "alg does not match the key's");

	n = b64url(d2 + 1, (size_t)(token + len - d2 - 1), sig, sizeof sig);
	if (n < 0)
		return no(why, cap, "the signature is not base64url");
	if (!signature_ok(key, token, (size_t)(d2 - token), sig, (size_t)n))
		return no(why, cap, "bad signature");

	/* Signed by a key we trust: now the claims. */
	n = b64url(d1 + 1, (size_t)(d2 - d1 - 1), raw, sizeof raw);
	if (n < 0)
		return no(why, cap, "the claims are not base64url (or over 4096 bytes)");
	b = (struct sb__json_buf){.data = (char *)mp, .cap = sizeof mp, .fixed = 1};
	if (sb__json_parse((const char *)raw, (size_t)n, &b, &je) != 0)
		return no(why, cap, "the claims are not JSON (or too large)");
	int rc = claims(k, mp, b.len, now, out, why, cap);
	if (rc != 0) {
		memset(out, 0, sizeof *out);
		return rc;
	}
	snprintf(out->kid, sizeof out->kid, "%s", key->kid);
	out->alg = a;
	memcpy(out->mp, mp, b.len);
	out->mp_len = (uint32_t)b.len;
	return 0;
}
