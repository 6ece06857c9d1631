/* Certificates, TLS routers and clients, and the captured log. */
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "support/clock.h"
#include "support/pump.h"
#include "support/testlib.h"
#include "support/tls.h"

static char DIR_[64]; /* the certificates */

const char *at(const char *name)
{
	static char buf[32][128];
	static unsigned i;
	char *b = buf[i++ % 32];
	snprintf(b, sizeof buf[0], "%s/%s", DIR_, name);
	return b;
}

/* A CA and a rogue CA; the router's certificate (for 127.0.0.1 and
 * localhost) from each; clients alice, bob, svc-billing and svc-evil from
 * the CA, mallory from the rogue one, and eve from the CA but expired in
 * 2020 (`openssl ca` is the command that takes explicit dates). */
static const char CERT_SCRIPT[] =
	"set -e\n"
	"K='-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes'\n"
	"openssl req -x509 $K -keyout ca.key -out ca.pem -days 30 -subj /CN=test-ca\n"
	"openssl req -x509 $K -keyout rogue-ca.key -out rogue-ca.pem -days 30 -subj /CN=rogue-ca\n"
	"printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > server.ext\n"
	"leaf() {\n"
	"  openssl req $K -keyout $1.key -out $1.csr -subj /CN=$1\n"
	"  openssl x509 -req -in $1.csr -CA $2.pem -CAkey $2.key -CAcreateserial -out $1.pem \\\n"
	"    -days 30 ${3:+-extfile $3}\n"
	"}\n"
	"leaf server ca server.ext\n"
	"leaf rogue-server rogue-ca server.ext\n"
	"for n in alice bob svc-billing svc-evil; do leaf $n ca; done\n"
	"leaf mallory rogue-ca\n"
	"printf "
	"'[ca]\\ndefault_ca=d\\n[d]\\ndatabase=index.txt\\nnew_certs_dir=.\\nserial=serial\\n"
	"default_md=sha256\\npolicy=p\\n[p]\\ncommonName=supplied\\n' > ca.cnf\n"
	": > index.txt\n"
	"echo 01 > serial\n"
	"openssl req $K -keyout eve.key -out eve.csr -subj /CN=eve\n"
	"openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key -in eve.csr -out eve.pem "
	"\\\n"
	"  -startdate 20200101000000Z -enddate 20200201000000Z -notext\n";

int certs_make(void)
{
	char cmd[256];
	snprintf(DIR_, sizeof DIR_, "/tmp/sb-tls-XXXXXX");
	if (mkdtemp(DIR_) == NULL)
		return -1;
	FILE *f = fopen(at("make.sh"), "w");
	if (f == NULL)
		return -1;
	fputs(CERT_SCRIPT, f);
	fclose(f);
	snprintf(cmd, sizeof cmd, "cd %s && sh make.sh >make.log 2>&1", DIR_);
	return system(cmd) == 0 ? 0 : -1;
}

void certs_remove(void)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", DIR_);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", DIR_);
}

static int saved_stderr = -1; /* while the router's log is captured */

void tls_fill(struct sb_router_config *cfg, const struct tls_cfg *t)
{
	static char cert[128], key[128], ca[128];

	sb_router_config_init(cfg);
	cfg->port = 0;
	cfg->shards = 2;
	cfg->log_level = saved_stderr >= 0 ? 1 : 0; /* refusals are logged at 1 */
	if (t == NULL)
		return;
	snprintf(cert, sizeof cert, "%s/%s.pem", DIR_, t->cert);
	snprintf(key, sizeof key, "%s/%s.key", DIR_, t->key ? t->key : t->cert);
	snprintf(ca, sizeof ca, "%s/ca.pem", DIR_);
	cfg->tls_cert = cert;
	cfg->tls_key = key;
	if (t->mtls) {
		cfg->tls_ca = ca;
		cfg->tls_verify_client = 1;
	}
	cfg->tls_allow = t->allow;
	cfg->tls_deny = t->deny;
	if (t->out_max)
		cfg->out_max = t->out_max;
}

struct sb_router *tls_router(const struct tls_cfg *t, uint16_t *port)
{
	struct sb_router_config cfg;
	int err = 0;

	tls_fill(&cfg, t);
	struct sb_router *r = sb_router_new(&cfg, &err);
	CHECK(r != NULL);
	if (r == NULL)
		return NULL;
	CHECK_INT(sb_router_start(r), 0);
	*port = sb_router_port(r);
	return r;
}

void log_capture(void)
{
	fflush(stderr);
	saved_stderr = dup(2);
	int fd = open(at("router.log"), O_CREAT | O_TRUNC | O_WRONLY, 0600);
	CHECK(fd >= 0);
	dup2(fd, 2);
	close(fd);
}

char *log_release(void)
{
	static char none[] = "";
	char *text = NULL;
	struct stat st;

	fflush(stderr);
	dup2(saved_stderr, 2);
	close(saved_stderr);
	saved_stderr = -1;
	FILE *f = fopen(at("router.log"), "r");
	if (f != NULL && fstat(fileno(f), &st) == 0 && (text = calloc(1, (size_t)st.st_size + 1)))
		CHECK(fread(text, 1, (size_t)st.st_size, f) == (size_t)st.st_size);
	if (f != NULL)
		fclose(f);
	return text != NULL ? text : strdup(none);
}

void expect_logged(const char *log, const char *line)
{
	if (strstr(log, line) == NULL) {
		fprintf(stderr, "  the router's log lacks: %s\n--- log ---\n%s-----------\n", line,
			log);
		CHECK(0);
	}
}

void tls_on_state(struct sb_client *c, enum sb_client_state s, int err, void *ud)
{
	struct tls_watch *w = ud;

	(void)c;
	if (s == SB_CLIENT_ONLINE || s == SB_CLIENT_RECONNECTED)
		w->online++;
	else if (s == SB_CLIENT_OFFLINE)
		w->offline++;
	else {
		w->error++;
		w->error_err = err;
	}
}

struct sb_client *tls_client(uint16_t port, const char *role, const char *cert,
			     const char *server_name, struct tls_watch *w)
{
	struct sb_client_config cfg;
	char c[128], k[128];
	int err = 0;

	sb_client_config_init(&cfg);
	cfg.port = port;
	cfg.role = strcmp(role, "service") == 0 ? SB_ROLE_SERVICE : SB_ROLE_CLIENT;
	cfg.reconnect_min_ms = 20;
	cfg.reconnect_max_ms = 200;
	cfg.on_state = tls_on_state;
	cfg.ud = w;
	cfg.tls = 1;
	cfg.tls_ca = at("ca.pem");
	cfg.tls_server_name = server_name;
	if (cert != NULL) {
		snprintf(c, sizeof c, "%s/%s.pem", DIR_, cert);
		snprintf(k, sizeof k, "%s/%s.key", DIR_, cert);
		cfg.tls_cert = c;
		cfg.tls_key = k;
	}
	struct sb_client *cl = sb_client_new(&cfg, &err);
	CHECK(cl != NULL);
	CHECK_INT(err, 0);
	return cl;
}

int until_refused(struct sb_client *c)
{
	uint64_t end = now_ms() + pump_limit_ms;

	while (now_ms() < end) {
		struct pollfd p = {.fd = sb_client_fd(c), .events = sb_client_events(c)};
		int t = sb_client_timeout(c);
		poll(&p, p.fd >= 0 ? 1 : 0, t < 0 || t > 20 ? 20 : t);
		int rc = sb_client_process(c, 0);
		if (rc < 0)
			return rc;
	}
	return 0;
}

void expect_refused(struct sb_client *c, struct tls_watch *w, int err, const char *text)
{
	CHECK_INT(until_refused(c), err);
	CHECK_INT(w->error_err, err);
	CHECK_INT(w->online, 0);
	if (strstr(sb_client_last_error(c), text) == NULL) {
		fprintf(stderr, "  last error \"%s\" lacks \"%s\"\n", sb_client_last_error(c),
			text);
		CHECK(0);
	}
}

char last_subject[256];

void handle_echo_subject(struct sb_call *call, void *ud)
{
	size_t n;
	const void *p = sb_call_payload(call, &n);
	const char *subject = sb_call_subject(call);

	(void)ud;
	snprintf(last_subject, sizeof last_subject, "%s", subject != NULL ? subject : "(none)");
	CHECK_INT(sb_reply(call, "echoed", p, n), 0);
}

/* The terminal reply of one request. */
struct result {
	int done, err;
	char outcome[64];
	uint8_t payload[64];
	size_t len;
};

static void on_result(const struct sb_reply *rep, void *ud)
{
	struct result *r = ud;

	if (rep->more != SB_MORE_NONE)
		return;
	r->done = 1;
	r->err = rep->err;
	snprintf(r->outcome, sizeof r->outcome, "%s", rep->outcome);
	r->len = rep->len < sizeof r->payload ? rep->len : sizeof r->payload;
	if (rep->payload != NULL)
		memcpy(r->payload, rep->payload, r->len);
}

void echo_works(struct sb_client *const *cs, int n, struct sb_client *from, uint8_t v)
{
	uint8_t body[] = {0x81, 0xa1, 'n', v & 0x7f};
	struct result r = {0};

	CHECK_INT(sb_request(from, "echo", body, sizeof body,
			     &(struct sb_opts){.size = sizeof(struct sb_opts), .timeout_ms = 5000},
			     on_result, &r, NULL),
		  0);
	pump_until(cs, n, &r.done, 1, "the echo reply");
	CHECK_INT(r.err, 0);
	CHECK_STR(r.outcome, "echoed");
	CHECK(r.len == sizeof body && memcmp(r.payload, body, sizeof body) == 0);
}
