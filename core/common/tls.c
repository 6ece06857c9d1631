/* TLS 1.3 with OpenSSL over a BIO pair: the caller moves ciphertext between
 * the pair and its socket, so no OpenSSL call ever touches a descriptor. */
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <switchboard/router.h>

#include "common/tls.h"

#define RECORD_MAX  16384 /* TLS plaintext per record */
#define RECORD_COST 64    /* a record's header, content type and tag, rounded up */
/* Room kept free in the outgoing pair for what OpenSSL writes on its own
 * (alerts, a KeyUpdate, close_notify): records never take it, so a read
 * never finds the pair full. */
#define RESERVE   512
#define PIECE_MIN 1024 /* a record squeezed into less room than this waits for a send */
#define NAMES_MAX 32   /* certificate names looked at (CNs and DNS SANs) */

struct sb__tls_ctx {
	atomic_uint refs;
	SSL_CTX *ssl;
	uint8_t server;        /* accepts connections (else: makes them) */
	uint8_t verify_client; /* server: a client certificate is required */
	uint8_t asks_cert;     /* server: a CA is set, so a certificate is asked for */
	char **allow;          /* NULL-terminated patterns; NULL = every name */
	char **deny;           /* NULL-terminated patterns; NULL = none */
	unsigned nallow, ndeny;
	char subject[128]; /* server: its own certificate's subject, for the log */
};

struct sb__tls {
	SSL *ssl;
	BIO *net;              /* our end of the pair: ciphertext in and out */
	BIO *inner;            /* OpenSSL's end (owned by ssl) */
	struct sb__tls_ctx *x; /* the settings it was made under (a reference) */
	const char *server_name;
	uint8_t fed;   /* input has been fed */
	uint8_t done;  /* handshake finished */
	uint8_t dead;  /* OpenSSL failed: nothing more may be written */
	uint8_t shut;  /* close_notify queued */
	int err;       /* the failure's code, once failed */
	char why[600]; /* room for a name and a pattern, both up to 255 bytes */
	char name[SB__TLS_NAME_MAX + 1];
	char subject[256];
	char server_name_buf[];
};

/* ---- names and patterns ------------------------------------------------- */

static int lower(int ch)
{
	return ch >= 'A' && ch <= 'Z' ? ch + 32 : ch;
}

int sb__tls_match(const char *pat, const char *s)
{
	const char *star = NULL, *resume = NULL;

	/* Greedy with one backtrack point: linear for '*' patterns, no recursion. */
	while (*s != 0) {
		if (*pat == '*') {
			star = pat++;
			resume = s;
		} else if (*pat != 0 && lower((unsigned char)*pat) == lower((unsigned char)*s)) {
			pat++;
			s++;
		} else if (star != NULL) {
			pat = star + 1;
			s = ++resume;
		} else
			return 0;
	}
	while (*pat == '*')
		pat++;
	return *pat == 0;
}

/* A name for logs and ERROR texts: a certificate is the peer's to fill, so
 * control characters, quotes and backslashes never reach them. */
static void clean(char *dst, size_t cap, const char *src)
{
	size_t i = 0;
	for (; src[i] != 0 && i + 1 < cap; i++) {
		unsigned char ch = (unsigned char)src[i];
		dst[i] = ch < 0x20 || ch == 0x7f || ch == '"' || ch == '\\' ? '?' : (char)ch;
	}
	dst[i] = 0;
}

/* The certificate's CNs, then its DNS SANs, as UTF-8. A name holding a NUL
 * would match one thing and print as another: it is skipped. */
static unsigned cert_names(X509 *cert, char **names, unsigned max)
{
	unsigned n = 0;
	X509_NAME *subj = X509_get_subject_name(cert);

	for (int i = -1;
	     n < max && (i = X509_NAME_get_index_by_NID(subj, NID_commonName, i)) >= 0;) {
		unsigned char *u = NULL;
		ASN1_STRING *d = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i));
		int len = ASN1_STRING_to_UTF8(&u, d);
		if (len > 0 && (size_t)len == strlen((char *)u) && len <= SB__TLS_NAME_MAX)
			names[n++] = (char *)u;
		else
			OPENSSL_free(u);
	}
	GENERAL_NAMES *sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	for (int i = 0; sans != NULL && i < sk_GENERAL_NAME_num(sans) && n < max; i++) {
		GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
		if (g->type != GEN_DNS)
			continue;
		const unsigned char *p = ASN1_STRING_get0_data(g->d.dNSName);
		int len = ASN1_STRING_length(g->d.dNSName);
		if (len <= 0 || len > SB__TLS_NAME_MAX || memchr(p, 0, (size_t)len) != NULL)
			continue;
		if ((names[n] = OPENSSL_malloc((size_t)len + 1)) == NULL)
			break;
		memcpy(names[n], p, (size_t)len);
		names[n++][len] = 0;
	}
	GENERAL_NAMES_free(sans);
	return n;
}

static void free_names(char **names, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		OPENSSL_free(names[i]);
}

/* The name a certificate is known by in logs: its first CN or DNS SAN. */
static void cert_label(X509 *cert, char *buf, size_t cap)
{
	char *names[1];
	if (cert != NULL && cert_names(cert, names, 1) == 1) {
		clean(buf, cap, names[0]);
		free_names(names, 1);
	} else
		snprintf(buf, cap, "(no name)");
}

static void cert_subject(X509 *cert, char *buf, size_t cap)
{
	BIO *m = BIO_new(BIO_s_mem());
	char *p;
	long n;

	buf[0] = 0;
	if (m == NULL)
		return;
	X509_NAME_print_ex(m, X509_get_subject_name(cert), 0,
			   XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
	n = BIO_get_mem_data(m, &p);
	if (n > 0) {
		char tmp[256];
		size_t k = (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1;
		memcpy(tmp, p, k);
		tmp[k] = 0;
		clean(buf, cap, tmp);
	}
	BIO_free(m);
}

/* ---- errors ------------------------------------------------------------- */

/* OpenSSL's reason for its last error, then an empty queue: the queue is
 * per thread, shared by every connection of a shard, and must be empty
 * before the next call or SSL_get_error() misreads it. */
static const char *ssl_reason(char *buf, size_t cap, unsigned long *code)
{
	unsigned long e, first = ERR_peek_error(), sys = 0;

	if (code != NULL)
		*code = ERR_peek_last_error();
	/* A file that cannot be opened leaves "system lib" last and the errno
	 * deeper down; otherwise the first error is the most specific. */
	while ((e = ERR_get_error()) != 0)
		if (ERR_GET_LIB(e) == ERR_LIB_SYS && sys == 0)
			sys = e;
	const char *r = first != 0 ? ERR_reason_error_string(first) : NULL;
	if (sys != 0)
		snprintf(buf, cap, "%s", strerror(ERR_GET_REASON(sys)));
	else if (r != NULL)
		snprintf(buf, cap, "%s", r);
	else if (first != 0)
		ERR_error_string_n(first, buf, cap);
	else
		snprintf(buf, cap, "unknown error");
	return buf;
}

/* A verification failure in words a person checking a certificate needs. */
static const char *verify_text(long e)
{
	switch (e) {
	case X509_V_ERR_CERT_HAS_EXPIRED:
		return "it has expired";
	case X509_V_ERR_CERT_NOT_YET_VALID:
		return "it is not valid yet";
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
	case X509_V_ERR_CERT_SIGNATURE_FAILURE:
		return "it is not signed by a trusted CA";
	case X509_V_ERR_HOSTNAME_MISMATCH:
	case X509_V_ERR_IP_ADDRESS_MISMATCH:
		return "it does not name the server";
	default:
		return X509_verify_cert_error_string(e);
	}
}

static int verify_cb(int ok, X509_STORE_CTX *sx)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(sx, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct sb__tls *t = ssl != NULL ? SSL_get_app_data(ssl) : NULL;

	/* The first failure is the one worth telling: the rest follow from it. */
	if (!ok && t != NULL && t->why[0] == 0) {
		char label[128];
		long e = X509_STORE_CTX_get_error(sx);
		cert_label(X509_STORE_CTX_get0_cert(sx), label, sizeof label);
		if ((e == X509_V_ERR_HOSTNAME_MISMATCH || e == X509_V_ERR_IP_ADDRESS_MISMATCH) &&
		    t->server_name != NULL)
			snprintf(t->why, sizeof t->why,
				 "router certificate \"%s\" refused: it does not name \"%s\"",
				 label, t->server_name);
		else
			snprintf(t->why, sizeof t->why, "%s certificate \"%s\" refused: %s",
				 t->x->server ? "client" : "router", label, verify_text(e));
	}
	return ok;
}

/* A peer's alert that says it refused our certificate. */
static int cert_alert(int reason)
{
	switch (reason) {
	case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
	case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
	case SSL_R_SSLV3_ALERT_NO_CERTIFICATE:
	case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
	case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
	case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
		return 1;
	}
	return 0;
}

/* An OpenSSL call failed for good: say why, and how the caller should
 * report it. Certificate trouble on either side is SB_EUNAUTHORIZED. */
static int failure(struct sb__tls *t, int ssl_err)
{
	char reason[160];
	unsigned long e = 0;

	t->dead = 1;
	if (ssl_err == SSL_ERROR_WANT_WRITE) {
		/* Records never take RESERVE, so only a handshake flight
		 * larger than the pair (a huge certificate chain) gets here:
		 * failing is bounded, waiting for room mid-read is not. */
		ERR_clear_error();
		snprintf(t->why, sizeof t->why,
			 "TLS: the output does not fit the connection's buffer");
		return t->err = SB_EBADFRAME;
	}
	ssl_reason(reason, sizeof reason, &e);
	int lib = ERR_GET_LIB(e), r = ERR_GET_REASON(e);
	if (t->why[0] != 0) /* the verify callback said it */
		return t->err = SB_EUNAUTHORIZED;
	if (lib == ERR_LIB_SSL && cert_alert(r)) {
		snprintf(t->why, sizeof t->why, "the %s refused our certificate: %s",
			 t->x->server ? "client" : "router", reason);
		return t->err = SB_EUNAUTHORIZED;
	}
	if (lib == ERR_LIB_SSL && r == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
		snprintf(t->why, sizeof t->why, "no client certificate (this router requires one)");
		return t->err = SB_EUNAUTHORIZED;
	}
	if (ssl_err == SSL_ERROR_SYSCALL && e == 0)
		snprintf(t->why, sizeof t->why, "TLS: the peer ended the stream mid-record");
	else
		snprintf(t->why, sizeof t->why, "TLS: %s", reason);
	return t->err = SB_EBADFRAME;
}

/* ---- settings ----------------------------------------------------------- */

static void free_list(char **l)
{
	for (char **p = l; p != NULL && *p != NULL; p++)
		free(*p);
	free(l);
}

/* A private copy of a NULL-terminated list, checking each pattern. */
static int copy_list(const char *flag, const char *const *src, char ***dst, unsigned *n, char *why,
		     size_t cap)
{
	unsigned count = 0;

	*dst = NULL;
	*n = 0;
	while (src != NULL && src[count] != NULL)
		count++;
	if (count == 0)
		return 0;
	if (count > SB__TLS_ALLOW_MAX) {
		snprintf(why, cap, "%s: more than %u names", flag, SB__TLS_ALLOW_MAX);
		return SB_EINVAL;
	}
	if ((*dst = calloc(count + 1, sizeof **dst)) == NULL)
		return SB_ENOMEM;
	for (unsigned i = 0; i < count; i++) {
		size_t len = strlen(src[i]);
		int bad = len == 0 || len > SB__TLS_NAME_MAX;
		for (size_t k = 0; k < len && !bad; k++)
			bad = (unsigned char)src[i][k] < 0x20 || src[i][k] == 0x7f;
		if (bad) {
			char shown[64];
			clean(shown, sizeof shown, src[i]);
			snprintf(why, cap, "%s \"%s\": a name must be 1-%u printable characters",
				 flag, shown, SB__TLS_NAME_MAX);
			free_list(*dst);
			*dst = NULL;
			return SB_EINVAL;
		}
		if (((*dst)[i] = strdup(src[i])) == NULL) {
			free_list(*dst);
			*dst = NULL;
			return SB_ENOMEM;
		}
	}
	*n = count;
	return 0;
}

static struct sb__tls_ctx *ctx_new(int server, char *why, size_t cap)
{
	struct sb__tls_ctx *x = calloc(1, sizeof *x);
	char reason[160];

	if (x == NULL) {
		snprintf(why, cap, "out of memory");
		return NULL;
	}
	atomic_init(&x->refs, 1);
	x->server = (uint8_t)server;
	/* No cleanup at exit: a program may exit while shard threads still
	 * use OpenSSL (the first init decides, so every path asks the same). */
	OPENSSL_init_ssl(OPENSSL_INIT_NO_ATEXIT, NULL);
	x->ssl = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (x->ssl == NULL) {
		snprintf(why, cap, "TLS: %s", ssl_reason(reason, sizeof reason, NULL));
		free(x);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(x->ssl, TLS1_3_VERSION);
	/* Whole records are written when there is room, one at a time, and a
	 * retry may come from another place in memory (the shard's staging). */
	SSL_CTX_set_mode(x->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE |
					 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
					 SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_read_ahead(x->ssl, 1);
	/* Neither side resumes sessions (the client library makes a full
	 * handshake per connection): tickets would be work and bytes for
	 * nothing, and a session cache a lock shared by the shards. */
	SSL_CTX_set_num_tickets(x->ssl, 0);
	SSL_CTX_set_session_cache_mode(x->ssl, SSL_SESS_CACHE_OFF);
	return x;
}

/* Certificate and key into x, both checked, and not expired. */
static int load_identity(struct sb__tls_ctx *x, const char *flag, const char *cert, const char *key,
			 char *why, size_t cap)
{
	char reason[160];

	if (SSL_CTX_use_certificate_chain_file(x->ssl, cert) != 1) {
		snprintf(why, cap, "%s %s: %s", flag, cert,
			 ssl_reason(reason, sizeof reason, NULL));
		return SB_EINVAL;
	}
	if (SSL_CTX_use_PrivateKey_file(x->ssl, key != NULL ? key : cert, SSL_FILETYPE_PEM) != 1) {
		unsigned long first = ERR_peek_error();
		ssl_reason(reason, sizeof reason, NULL);
		if (ERR_GET_LIB(first) == ERR_LIB_X509 &&
		    ERR_GET_REASON(first) == X509_R_KEY_VALUES_MISMATCH)
			snprintf(why, cap, "tls-key %s does not belong to %s %s",
				 key != NULL ? key : cert, flag, cert);
		else if (key != NULL)
			snprintf(why, cap, "tls-key %s: %s", key, reason);
		else
			snprintf(why, cap, "%s %s: no private key in it (give tls-key): %s", flag,
				 cert, reason);
		return SB_EINVAL;
	}
	if (SSL_CTX_check_private_key(x->ssl) != 1) {
		snprintf(why, cap, "tls-key %s does not belong to %s %s: %s",
			 key != NULL ? key : cert, flag, cert,
			 ssl_reason(reason, sizeof reason, NULL));
		return SB_EINVAL;
	}
	/* The router's expired certificate would fail every handshake: better
	 * refused now, at start-up or reload, while the old one still serves.
	 * A client's is the router's to judge (and to log). */
	X509 *c = SSL_CTX_get0_certificate(x->ssl);
	if (x->server && c != NULL && X509_cmp_current_time(X509_get0_notAfter(c)) < 0) {
		snprintf(why, cap, "%s %s: the certificate has expired", flag, cert);
		return SB_EINVAL;
	}
	if (c != NULL)
		cert_subject(c, x->subject, sizeof x->subject);
	return 0;
}

/* OpenSSL decodes a certificate's extensions (key identifiers, purposes)
 * the first time a verification needs them and caches them in the shared
 * X509, while a handshake on another shard may already read that cache
 * without its lock (ThreadSanitizer caught two shards verifying client
 * certificates against one CA at once). Decoding them here, before any
 * shard runs, leaves nothing for a handshake to write. */
static void cache_extensions(X509_STORE *store)
{
	STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(store);

	for (int i = 0; i < sk_X509_OBJECT_num(objs); i++) {
		X509 *c = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));
		if (c != NULL)
			X509_check_purpose(c, -1, 0);
	}
}

static int load_ca(struct sb__tls_ctx *x, const char *ca, char *why, size_t cap)
{
	char reason[160];

	if (SSL_CTX_load_verify_locations(x->ssl, ca, NULL) != 1) {
		snprintf(why, cap, "tls-ca %s: %s", ca, ssl_reason(reason, sizeof reason, NULL));
		return SB_EINVAL;
	}
	cache_extensions(SSL_CTX_get_cert_store(x->ssl));
	if (x->server) { /* tells clients which CA's certificate to present */
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca);
		if (names == NULL) {
			snprintf(why, cap, "tls-ca %s: %s", ca,
				 ssl_reason(reason, sizeof reason, NULL));
			return SB_EINVAL;
		}
		SSL_CTX_set_client_CA_list(x->ssl, names);
	}
	return 0;
}

int sb__tls_server_ctx(const struct sb_router_config *cfg, struct sb__tls_ctx **out, char *why,
		       size_t cap)
{
	struct sb__tls_ctx *x;
	int rc;
	int lists = (cfg->tls_allow != NULL && cfg->tls_allow[0] != NULL) ||
		    (cfg->tls_deny != NULL && cfg->tls_deny[0] != NULL);

	*out = NULL;
	why[0] = 0;
	if (cfg->tls_cert == NULL) {
		snprintf(why, cap,
			 "tls-key, tls-ca, tls-verify-client, tls-allow and tls-deny "
			 "need tls-cert");
		return SB_EINVAL;
	}
	if (cfg->tls_verify_client && cfg->tls_ca == NULL) {
		snprintf(why, cap,
			 "tls-verify-client needs tls-ca (the CA client certificates "
			 "must be signed by)");
		return SB_EINVAL;
	}
	if (lists && !cfg->tls_verify_client) {
		snprintf(why, cap, "tls-allow and tls-deny need tls-verify-client");
		return SB_EINVAL;
	}
	if ((x = ctx_new(1, why, cap)) == NULL)
		return SB_ENOMEM;
	if ((rc = load_identity(x, "tls-cert", cfg->tls_cert, cfg->tls_key, why, cap)) != 0)
		goto fail;
	if (cfg->tls_ca != NULL) {
		if ((rc = load_ca(x, cfg->tls_ca, why, cap)) != 0)
			goto fail;
		x->asks_cert = 1;
		x->verify_client = cfg->tls_verify_client != 0;
		SSL_CTX_set_verify(x->ssl,
				   SSL_VERIFY_PEER |
					   (x->verify_client ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
				   verify_cb);
	}
	if ((rc = copy_list("tls-allow", cfg->tls_allow, &x->allow, &x->nallow, why, cap)) != 0 ||
	    (rc = copy_list("tls-deny", cfg->tls_deny, &x->deny, &x->ndeny, why, cap)) != 0)
		goto fail;
	*out = x;
	return 0;
fail:
	if (why[0] == 0)
		snprintf(why, cap, "out of memory");
	sb__tls_ctx_put(x);
	return rc;
}

int sb__tls_client_ctx(const char *ca, const char *cert, const char *key, struct sb__tls_ctx **out,
		       char *why, size_t cap)
{
	struct sb__tls_ctx *x;
	char reason[160];
	int rc = SB_EINVAL;

	*out = NULL;
	why[0] = 0;
	if (key != NULL && cert == NULL) {
		snprintf(why, cap, "tls-key needs tls-cert");
		return SB_EINVAL;
	}
	if ((x = ctx_new(0, why, cap)) == NULL)
		return SB_ENOMEM;
	if (ca != NULL) {
		if ((rc = load_ca(x, ca, why, cap)) != 0)
			goto fail;
	} else if (SSL_CTX_set_default_verify_paths(x->ssl) != 1) {
		snprintf(why, cap, "the system's CA certificates: %s",
			 ssl_reason(reason, sizeof reason, NULL));
		goto fail;
	}
	SSL_CTX_set_verify(x->ssl, SSL_VERIFY_PEER, verify_cb);
	if (cert != NULL && (rc = load_identity(x, "tls-cert", cert, key, why, cap)) != 0)
		goto fail;
	*out = x;
	return 0;
fail:
	sb__tls_ctx_put(x);
	return rc;
}

void sb__tls_ctx_get(struct sb__tls_ctx *x)
{
	atomic_fetch_add_explicit(&x->refs, 1, memory_order_relaxed);
}

void sb__tls_ctx_put(struct sb__tls_ctx *x)
{
	if (x == NULL || atomic_fetch_sub_explicit(&x->refs, 1, memory_order_acq_rel) != 1)
		return;
	SSL_CTX_free(x->ssl);
	free_list(x->allow);
	free_list(x->deny);
	free(x);
}

void sb__tls_ctx_describe(const struct sb__tls_ctx *x, char *buf, size_t cap)
{
	if (!x->asks_cert)
		snprintf(buf, cap, "certificate %s; no client certificates", x->subject);
	else if (!x->verify_client)
		snprintf(buf, cap, "certificate %s; client certificates verified when presented",
			 x->subject);
	else if (x->nallow == 0)
		snprintf(buf, cap,
			 "certificate %s; client certificates required, any name, %u denied",
			 x->subject, x->ndeny);
	else
		snprintf(buf, cap,
			 "certificate %s; client certificates required, %u allowed, %u denied",
			 x->subject, x->nallow, x->ndeny);
}

/* ---- connections -------------------------------------------------------- */

struct sb__tls *sb__tls_new(struct sb__tls_ctx *x, const char *server_name, size_t in_size,
			    size_t out_size)
{
	size_t sn = server_name != NULL ? strlen(server_name) + 1 : 0;
	struct sb__tls *t = calloc(1, sizeof *t + sn);
	BIO *inner = NULL;

	if (t == NULL)
		return NULL;
	if ((t->ssl = SSL_new(x->ssl)) == NULL)
		goto fail;
	/* inner carries what OpenSSL writes (out_size) and reads (in_size). */
	if (BIO_new_bio_pair(&inner, out_size, &t->net, in_size) != 1)
		goto fail;
	SSL_set_bio(t->ssl, inner, inner); /* one reference, owned by ssl now */
	t->inner = inner;
	SSL_set_app_data(t->ssl, t);
	t->x = x;
	sb__tls_ctx_get(x);
	if (x->server) {
		SSL_set_accept_state(t->ssl);
		return t;
	}
	SSL_set_connect_state(t->ssl);
	if (server_name != NULL) {
		memcpy(t->server_name_buf, server_name, sn);
		t->server_name = t->server_name_buf;
		X509_VERIFY_PARAM *vp = SSL_get0_param(t->ssl);
		/* An address is checked against the certificate's IP SANs; a
		 * name against its DNS names, and sent as SNI. */
		if (X509_VERIFY_PARAM_set1_ip_asc(vp, server_name) != 1) {
			ERR_clear_error();
			if (SSL_set1_host(t->ssl, server_name) != 1 ||
			    SSL_set_tlsext_host_name(t->ssl, server_name) != 1) {
				ERR_clear_error();
				sb__tls_free(t);
				return NULL;
			}
		}
	}
	return t;
fail:
	ERR_clear_error();
	SSL_free(t->ssl);
	free(t);
	return NULL;
}

void sb__tls_free(struct sb__tls *t)
{
	if (t == NULL)
		return;
	SSL_free(t->ssl);
	BIO_free(t->net);
	sb__tls_ctx_put(t->x);
	free(t);
}

int sb__tls_plain(const struct sb__tls *t, const uint8_t *p, size_t len)
{
	/* 22 is a TLS handshake record; a ClientHello always starts with one. */
	return t->x->server && !t->fed && len > 0 && p[0] != 22;
}

size_t sb__tls_feed(struct sb__tls *t, const uint8_t *p, size_t len)
{
	if (len > INT_MAX)
		len = INT_MAX;
	int n = BIO_write(t->net, p, (int)len);
	if (n <= 0)
		return 0;
	t->fed = 1;
	return (size_t)n;
}

/* A server's finished handshake: whose certificate, and may it connect?
 * Deny wins over allow; an empty allow list lets every CA-signed name in. */
static int check_peer(struct sb__tls *t)
{
	char *names[NAMES_MAX];
	unsigned n;
	X509 *cert = SSL_get0_peer_certificate(t->ssl);

	if (cert == NULL)
		return 1; /* none asked for, or optional and not given */
	n = cert_names(cert, names, NAMES_MAX);
	if (n > 0)
		clean(t->name, sizeof t->name, names[0]);
	else
		snprintf(t->name, sizeof t->name, "(no name)");
	cert_subject(cert, t->subject, sizeof t->subject);
	if (!t->x->verify_client) {
		free_names(names, n);
		return 1;
	}
	int allowed = t->x->nallow == 0;
	for (unsigned i = 0; i < n; i++) {
		for (unsigned k = 0; k < t->x->ndeny; k++)
			if (sb__tls_match(t->x->deny[k], names[i])) {
				char shown[SB__TLS_NAME_MAX + 1];
				clean(shown, sizeof shown, names[i]);
				snprintf(t->why, sizeof t->why,
					 "certificate name \"%s\" is denied (tls-deny %s)", shown,
					 t->x->deny[k]);
				free_names(names, n);
				return t->err = SB_EFORBIDDEN;
			}
		for (unsigned k = 0; k < t->x->nallow && !allowed; k++)
			allowed = sb__tls_match(t->x->allow[k], names[i]);
	}
	free_names(names, n);
	if (!allowed) {
		snprintf(t->why, sizeof t->why, "certificate name \"%s\" is not allowed", t->name);
		return t->err = SB_EFORBIDDEN;
	}
	return 1;
}

int sb__tls_handshake(struct sb__tls *t)
{
	if (t->err != 0)
		return t->err;
	if (t->done)
		return 1;
	int rc = SSL_do_handshake(t->ssl);
	if (rc == 1) {
		t->done = 1;
		return t->x->server ? check_peer(t) : 1;
	}
	int e = SSL_get_error(t->ssl, rc);
	if (e == SSL_ERROR_WANT_READ)
		return 0;
	return failure(t, e);
}

long sb__tls_read(struct sb__tls *t, uint8_t *p, size_t cap)
{
	if (t->dead)
		return t->err;
	int n = SSL_read(t->ssl, p, cap > INT_MAX ? INT_MAX : (int)cap);
	if (n > 0)
		return n;
	int e = SSL_get_error(t->ssl, n);
	if (e == SSL_ERROR_WANT_READ)
		return 0;
	if (e == SSL_ERROR_ZERO_RETURN) {
		ERR_clear_error();
		return SB__TLS_EOF;
	}
	return failure(t, e);
}

size_t sb__tls_room(const struct sb__tls *t)
{
	if (t->dead || !t->done)
		return 0;
	size_t room = BIO_ctrl_get_write_guarantee(t->inner);
	if (room < RESERVE + RECORD_COST + PIECE_MIN)
		return 0;
	room -= RESERVE + RECORD_COST;
	return room < RECORD_MAX ? room : RECORD_MAX;
}

long sb__tls_write(struct sb__tls *t, const uint8_t *p, size_t len)
{
	if (t->dead)
		return t->err;
	size_t n = sb__tls_room(t);
	/* A sliver of a record costs a whole record's work: wait for a send. */
	if (n == 0)
		return 0;
	if (n > len)
		n = len;
	int w = SSL_write(t->ssl, p, (int)n);
	if (w > 0)
		return w;
	int e = SSL_get_error(t->ssl, w);
	if (e == SSL_ERROR_WANT_WRITE) { /* cannot happen with the room above; retried */
		ERR_clear_error();
		return 0;
	}
	return failure(t, e);
}

size_t sb__tls_out(struct sb__tls *t, const uint8_t **p)
{
	char *b;
	int n = BIO_nread0(t->net, &b);
	if (n <= 0)
		return 0;
	*p = (const uint8_t *)b;
	return (size_t)n;
}

void sb__tls_sent(struct sb__tls *t, size_t n)
{
	char *b;
	while (n > 0) {
		int k = BIO_nread(t->net, &b, n > INT_MAX ? INT_MAX : (int)n);
		if (k <= 0)
			break;
		n -= (size_t)k;
	}
}

int sb__tls_pending(const struct sb__tls *t)
{
	return BIO_ctrl_pending(t->net) > 0;
}

void sb__tls_close_notify(struct sb__tls *t)
{
	if (t->shut || !t->done || t->dead)
		return;
	t->shut = 1;
	SSL_shutdown(t->ssl);
	ERR_clear_error();
}

int sb__tls_done(const struct sb__tls *t)
{
	return t->done;
}

const char *sb__tls_why(const struct sb__tls *t)
{
	return t->why;
}

const char *sb__tls_peer_name(const struct sb__tls *t)
{
	return t->name[0] != 0 ? t->name : NULL;
}

const char *sb__tls_peer_subject(const struct sb__tls *t)
{
	return t->name[0] != 0 ? t->subject : NULL;
}
