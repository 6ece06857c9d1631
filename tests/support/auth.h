/* Shared-secret authentication as a peer does it, computed with OpenSSL
 * directly and not with the router's code: HELLO, CHALLENGE, AUTH with an
 * HMAC-SHA256 proof; what a refusal looks like; and a client library client
 * with a secret. For the test router (support/router.h). */
#ifndef SB_TEST_AUTH_H
#define SB_TEST_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include <switchboard/client.h>
#include <switchboard/router.h>

#include "support/peer.h"

#define SVC_SECRET "correct horse battery staple"
#define CLI_SECRET "client-secret-7f3a"

/* A secret for each role; failures are not held against 127.0.0.1 unless
 * a test asks for it, since every test dials from there. */
struct sb_router_config secret_config(void);

void say_hello(struct peer *p, const char *name, const char *role); /* HELLO, nothing read */
/* Says HELLO and reads the CHALLENGE; the router's nonce goes to rn. */
void challenged(struct peer *p, const char *name, const char *role, uint8_t rn[32]);
struct peer *hello_challenged(const char *name, const char *role, uint8_t rn[32]); /* to PORT */
/* Answers a challenge with secret; the AUTH's bytes go to wire (for a
 * replay) when it is not NULL. Returns their length. */
size_t send_auth(struct peer *p, const uint8_t rn[32], const char *secret, const char *name,
		 uint8_t *wire, size_t cap);
/* A peer through the whole handshake with the given secret, welcomed. */
struct peer *auth_hello(const char *name, const char *role, const char *secret);

/* The next frame is a fatal ERROR err saying text (a prefix of it with
 * prefix), and then the router closes. */
void expect_fatal(struct peer *p, int err, const char *text, int prefix);
/* A non-fatal ERROR for request or registration id, saying text. */
void expect_refusal(struct peer *p, uint64_t id, int err, const char *text);

struct states {
	int online, offline, errors, last_err;
};

/* A client library client with a secret (NULL: none), quick to reconnect. */
struct sb_client *lib_client(uint16_t port, const char *name, const char *role, const char *secret,
			     struct states *st);
/* Processes until online or refused for good (5 s at most); its code. */
int lib_settle(struct sb_client *c);

#endif
