/* TLS on a connection: OpenSSL over a BIO pair, never over the socket. A
 * receive is copied into the pair and decrypted into the frame path;
 * queued frames are sealed into records sent straight from the pair. */
#ifndef SB_ROUTER_CONN_TLS_H
#define SB_ROUTER_CONN_TLS_H

#include <stddef.h>
#include <stdint.h>

#include "router/conn-t.h"
#include "router/shard-t.h"

#define SB__TLS_RECORD 16384 /* the most plaintext in a record */

/** A connection of a TLS listener gets its pair. @return 0 or SB_ENOMEM */
int sb__conn_tls_start(struct sb__shard *sh, struct sb__conn *c);

/** Ciphertext received on c (copied: the caller keeps its buffer). */
void sb__conn_tls_in(struct sb__shard *sh, struct sb__conn *c, const uint8_t *p, uint32_t len);

/** c's output: queued frames sealed, one sendmsg from the pair. */
void sb__conn_tls_flush(struct sb__shard *sh, struct sb__conn *c);

/** A sendmsg of n bytes of c's ciphertext completed. */
void sb__conn_tls_sent(struct sb__shard *sh, struct sb__conn *c, size_t n);

#endif
