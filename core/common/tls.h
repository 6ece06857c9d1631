/* The TLS layer: TLS 1.3 through OpenSSL over a BIO pair, never over the
 * socket, so a shard's io_uring (or the client's poll loop) does all the I/O. */
#ifndef SB_CORE_TLS_H
#define SB_CORE_TLS_H

#include <stddef.h>
#include <stdint.h>

/* The router's settings, for sb__tls_server_ctx() only: the client library,
 * which shares this layer, never sees the router's header. */
struct sb_router_config;

/* The settings new connections are made with: an SSL_CTX plus the allow and
 * deny lists. Immutable once made and reference-counted: a reload swaps in
 * a new one, and connections made under the old one keep it until they end. */
struct sb__tls_ctx;

/* One connection's TLS state: its SSL object and the BIO pair under it. */
struct sb__tls;

#define SB__TLS_EOF       (-1000) /* sb__tls_read(): the peer sent close_notify */
#define SB__TLS_NAME_MAX  255     /* longest certificate name kept (CN or DNS SAN) */
#define SB__TLS_ALLOW_MAX 1024    /* patterns per allow or deny list */

/**
 * The router's settings: certificate, key, CA, verify_client, allow and
 * deny lists from @p cfg (tls_cert must be set). Every file is read now;
 * nothing in @p cfg is kept.
 * @param why  on failure, what is wrong, naming the setting ("tls-key ...")
 * @return 0 with *out holding one reference, SB_EINVAL, or SB_ENOMEM
 */
int sb__tls_server_ctx(const struct sb_router_config *cfg, struct sb__tls_ctx **out, char *why,
		       size_t cap);

/**
 * The client's settings: the CA to verify the router with (NULL: the
 * system's default paths), and an optional certificate and key (NULL key:
 * in the certificate's file).
 * @return as sb__tls_server_ctx()
 */
int sb__tls_client_ctx(const char *ca, const char *cert, const char *key, struct sb__tls_ctx **out,
		       char *why, size_t cap);

void sb__tls_ctx_get(struct sb__tls_ctx *x);
void sb__tls_ctx_put(struct sb__tls_ctx *x);

/** One line for the log: "certificate CN=router; client certificates
 * required, 2 allowed, 1 denied". */
void sb__tls_ctx_describe(const struct sb__tls_ctx *x, char *buf, size_t cap);

/**
 * A connection under @p x (which it takes a reference to).
 * @param server_name  clients: the name the router's certificate must carry
 *                     (a DNS name, also sent as SNI, or an IP address)
 * @param in_size      bytes of ciphertext the pair holds on the way in
 * @param out_size     ...and on the way out, before a send must free room
 * @return the state, or NULL when out of memory
 */
struct sb__tls *sb__tls_new(struct sb__tls_ctx *x, const char *server_name, size_t in_size,
			    size_t out_size);
void sb__tls_free(struct sb__tls *t);

/** 1 when these are the first bytes a server receives and they cannot
 * start a TLS handshake: a plain-TCP peer, which deserves a plain answer. */
int sb__tls_plain(const struct sb__tls *t, const uint8_t *p, size_t len);

/** Ciphertext in. @return the bytes taken: fewer than @p len when the pair
 * is full (read plaintext out, then feed the rest). */
size_t sb__tls_feed(struct sb__tls *t, const uint8_t *p, size_t len);

/**
 * Advance the handshake with what was fed. On a server, a finished one is
 * then checked against the allow and deny lists.
 * @return 1 done, 0 waiting for input (or for its output to be sent),
 *         SB_EUNAUTHORIZED (a certificate was refused, by us or the peer),
 *         SB_EFORBIDDEN (the client's certificate name is not allowed: the
 *         handshake is done, so an ERROR can still be sent over TLS), or
 *         SB_EBADFRAME (not TLS, or broken TLS); sb__tls_why() says more
 */
int sb__tls_handshake(struct sb__tls *t);

/** Plaintext out of what was fed. @return bytes, 0 when no whole record is
 * in, SB__TLS_EOF after the peer's close_notify, or an error as above. */
long sb__tls_read(struct sb__tls *t, uint8_t *p, size_t cap);

/** Plaintext in: encrypts up to one record of @p p. @return bytes taken, 0
 * when the pair has no room for a record (send first), or an error. */
long sb__tls_write(struct sb__tls *t, const uint8_t *p, size_t len);

/** The most plaintext the next record may hold: 0 until the handshake is
 * done, or while the pair lacks room (send first). */
size_t sb__tls_room(const struct sb__tls *t);

/** Ciphertext waiting to be sent: *p and the length of its contiguous run
 * (0 if none). It stays in place until sb__tls_sent(). */
size_t sb__tls_out(struct sb__tls *t, const uint8_t **p);

/** @p n bytes of what sb__tls_out() gave went out. */
void sb__tls_sent(struct sb__tls *t, size_t n);

/** 1 while ciphertext waits to be sent. */
int sb__tls_pending(const struct sb__tls *t);

/** Queue a close_notify (once, after a finished handshake). */
void sb__tls_close_notify(struct sb__tls *t);

/** 1 once the handshake is done and records can be written. */
int sb__tls_done(const struct sb__tls *t);

/** The last failure, for logs and ERROR texts; "" if none. */
const char *sb__tls_why(const struct sb__tls *t);

/**
 * The verified peer certificate's name: its subject CN, or its first DNS
 * SAN without a CN; NULL without a certificate. Control characters are
 * replaced by '?'. Set once the handshake is done; valid until freed.
 */
const char *sb__tls_peer_name(const struct sb__tls *t);

/** The same certificate's whole subject, one line ("CN=alice,O=Example"). */
const char *sb__tls_peer_subject(const struct sb__tls *t);

/** 1 if @p name matches @p pattern: '*' stands for any run of characters,
 * letters compare without case. */
int sb__tls_match(const char *pattern, const char *name);

#endif
