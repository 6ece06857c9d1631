// Bearer token micro-benchmarks: verifying an HS256, ES256 and RS256 token
// with our verifier (core/router/jwt.c) and, when Debian's libjwt-dev is
// installed, with libjwt 1.10's jwt_decode() (which checks the signature
// only: it reads no exp, aud or iss). Each row also counts the heap
// allocations one verification makes (allocs_per_token), ours and
// OpenSSL's together (docs/gateway.md has the figures and the decision).
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

extern "C" {
#include "router/jwt.h"
#ifdef SB_HAVE_LIBJWT
#include <jwt.h>
#endif
}

// Every malloc of the process goes through here, counted only while a
// benchmark looks (glibc's own entry points do the work).
extern "C" void *__libc_malloc(size_t);
extern "C" void *__libc_calloc(size_t, size_t);
extern "C" void *__libc_realloc(void *, size_t);
static std::atomic<bool> counting{false};
static std::atomic<int64_t> allocs{0};
extern "C" void *malloc(size_t n)
{
	if (counting.load(std::memory_order_relaxed))
		allocs.fetch_add(1, std::memory_order_relaxed);
	return __libc_malloc(n);
}
extern "C" void *calloc(size_t n, size_t s)
{
	if (counting.load(std::memory_order_relaxed))
		allocs.fetch_add(1, std::memory_order_relaxed);
	return __libc_calloc(n, s);
}
extern "C" void *realloc(void *p, size_t n)
{
	if (counting.load(std::memory_order_relaxed))
		allocs.fetch_add(1, std::memory_order_relaxed);
	return __libc_realloc(p, n);
}

namespace
{

const char SECRET[] = "a shared HS256 secret of 32+ bytes, for benchmarks";
const char CLAIMS[] = "{\"sub\":\"alice@example.com\",\"iss\":\"https://id.example\","
		      "\"aud\":\"switchboard\",\"exp\":4000000000,\"sb_role\":\"client\"}";
const int64_t NOW = 1700000000;

std::string b64url(const uint8_t *p, size_t n)
{
	std::string out(4 * n / 3 + 4, '\0');
	size_t len = (size_t)EVP_EncodeBlock((unsigned char *)&out[0], p, (int)n);
	out.resize(len);
	while (!out.empty() && out.back() == '=')
		out.pop_back();
	for (char &c : out)
		c = c == '+' ? '-' : c == '/' ? '_' : c;
	return out;
}

struct Fixture {
	EVP_PKEY *rsa = nullptr, *ec = nullptr;
	std::string rsa_pem, ec_pem;
	sb__jwt_keys *keys = nullptr;

	Fixture()
	{
		rsa = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", (size_t)2048);
		ec = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
		rsa_pem = pem(rsa);
		ec_pem = pem(ec);
		sb__jwt_opts o = {"https://id.example", "switchboard", 0};
		char why[128];
		sb__jwt_keys_new(&o, &keys, why, sizeof why);
		sb__jwt_keys_add_secret(keys, nullptr, (const uint8_t *)SECRET, strlen(SECRET), why,
					sizeof why);
		if (sb__jwt_keys_add_pem(keys, rsa_pem.data(), rsa_pem.size(), why, sizeof why) !=
			    1 ||
		    sb__jwt_keys_add_pem(keys, ec_pem.data(), ec_pem.size(), why, sizeof why) != 1)
			fprintf(stderr, "bench_jwt: %s\n", why);
	}
	static std::string pem(EVP_PKEY *p)
	{
		BIO *b = BIO_new(BIO_s_mem());
		PEM_write_bio_PUBKEY(b, p);
		char *d;
		long n = BIO_get_mem_data(b, &d);
		std::string s(d, (size_t)n);
		BIO_free(b);
		return s;
	}
	// A token signed with OpenSSL directly (alg 0 HS256, 1 RS256, 2 ES256).
	std::string token(int alg)
	{
		static const char *hdr[] = {"{\"alg\":\"HS256\",\"typ\":\"JWT\"}",
					    "{\"alg\":\"RS256\",\"typ\":\"JWT\"}",
					    "{\"alg\":\"ES256\",\"typ\":\"JWT\"}"};
		std::string in = b64url((const uint8_t *)hdr[alg], strlen(hdr[alg])) + "." +
				 b64url((const uint8_t *)CLAIMS, strlen(CLAIMS));
		uint8_t sig[512];
		size_t n = sizeof sig;
		if (alg == 0) {
			unsigned m = 0;
			HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (const uint8_t *)in.data(),
			     in.size(), sig, &m);
			n = m;
		} else {
			EVP_MD_CTX *md = EVP_MD_CTX_new();
			EVP_DigestSignInit_ex(md, nullptr, "SHA256", nullptr, nullptr,
					      alg == 1 ? rsa : ec, nullptr);
			EVP_DigestSign(md, sig, &n, (const uint8_t *)in.data(), in.size());
			EVP_MD_CTX_free(md);
			if (alg == 2) { // DER to R || S
				const uint8_t *d = sig;
				ECDSA_SIG *es = d2i_ECDSA_SIG(nullptr, &d, (long)n);
				const BIGNUM *r, *s;
				ECDSA_SIG_get0(es, &r, &s);
				BN_bn2binpad(r, sig, 32);
				BN_bn2binpad(s, sig + 32, 32);
				ECDSA_SIG_free(es);
				n = 64;
			}
		}
		return in + "." + b64url(sig, n);
	}
};

Fixture &fx()
{
	static Fixture f;
	return f;
}

void report_allocs(benchmark::State &state, int64_t n)
{
	state.counters["allocs_per_token"] = (double)n / (double)state.iterations();
}

void BM_JwtVerify(benchmark::State &state)
{
	std::string tok = fx().token((int)state.range(0));
	sb__jwt_claims c;
	char why[128];
	allocs = 0;
	counting = true;
	for (auto _ : state)
		if (sb__jwt_verify(fx().keys, tok.data(), tok.size(), NOW, &c, why, sizeof why) !=
		    0)
			state.SkipWithError(why);
	counting = false;
	report_allocs(state, allocs);
}
// 0: HS256, 1: RS256, 2: ES256
BENCHMARK(BM_JwtVerify)->Arg(0)->Arg(1)->Arg(2);

#ifdef SB_HAVE_LIBJWT
void BM_LibjwtDecode(benchmark::State &state)
{
	int alg = (int)state.range(0);
	std::string tok = fx().token(alg);
	const std::string &key = alg == 0   ? std::string(SECRET)
				 : alg == 1 ? fx().rsa_pem
					    : fx().ec_pem;
	allocs = 0;
	counting = true;
	for (auto _ : state) {
		jwt_t *j = nullptr;
		if (jwt_decode(&j, tok.c_str(), (const unsigned char *)key.data(),
			       (int)key.size()) != 0)
			state.SkipWithError("jwt_decode failed");
		benchmark::DoNotOptimize(jwt_get_grant(j, "sub"));
		jwt_free(j);
	}
	counting = false;
	report_allocs(state, allocs);
}
BENCHMARK(BM_LibjwtDecode)->Arg(0)->Arg(1)->Arg(2);
#endif

} // namespace
