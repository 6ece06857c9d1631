/* TLS fixtures: certificates made at test time with the openssl command
 * line, routers with TLS settings, the router's log captured to check what
 * it says about a refusal, and client library clients over TLS. */
#ifndef SB_TEST_TLS_H
#define SB_TEST_TLS_H

#include <stddef.h>
#include <stdint.h>

#include <switchboard/client.h>
#include <switchboard/router.h>

/* Makes, in a fresh directory under /tmp, a CA and a rogue CA; the router's
 * certificate (for 127.0.0.1 and localhost) from each; clients alice, bob,
 * svc-billing and svc-evil from the CA, mallory from the rogue one, and eve
 * from the CA but expired in 2020. 0, or -1 (openssl's log is in
 * DIR/make.log). */
int certs_make(void);
void certs_remove(void);
/* DIR/name, in one of a few rotating buffers (never more held at once). */
const char *at(const char *name);

struct tls_cfg {
	const char *cert, *key; /* file stems in DIR_: "server" */
	int mtls;               /* tls_ca = ca.pem and tls_verify_client */
	const char *const *allow, *const *deny;
	size_t out_max; /* 0: the default */
};

/* A router configuration from t (NULL: no TLS): any free port, 2 shards,
 * logging refusals while the log is captured. */
void tls_fill(struct sb_router_config *cfg, const struct tls_cfg *t);
/* A router started with t; its port goes to *port. */
struct sb_router *tls_router(const struct tls_cfg *t, uint16_t *port);

/* The router's log (stderr) goes to a file while a test looks at it. */
void log_capture(void);
/* Stops capturing; returns what was logged (the caller frees it). */
char *log_release(void);
/* log has line in it (else a failure, showing the log). */
void expect_logged(const char *log, const char *line);

/* What a TLS client reported: RECONNECTED counts as online. */
struct tls_watch {
	int online, offline, error, error_err;
};

void tls_on_state(struct sb_client *c, enum sb_client_state s, int err, void *ud);
/* A TLS client verifying the router against ca.pem (as server_name, if not
 * NULL), presenting the certificate of stem cert (NULL: none). */
struct sb_client *tls_client(uint16_t port, const char *role, const char *cert,
			     const char *server_name, struct tls_watch *w);
/* Processes c alone until it gives up: its code, or 0 if it did not in time. */
int until_refused(struct sb_client *c);
/* c is refused with err for good, and its last error holds text. */
void expect_refused(struct sb_client *c, struct tls_watch *w, int err, const char *text);

/* Answers "echoed" with the payload; notes the caller's certificate
 * subject in last_subject ("(none)" without one). */
void handle_echo_subject(struct sb_call *call, void *ud);
extern char last_subject[256];
/* from requests "echo" with {"n": v} and gets it back, pumping every client. */
void echo_works(struct sb_client *const *cs, int n, struct sb_client *from, uint8_t v);

#endif
