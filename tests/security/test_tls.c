/* TLS and mutual TLS end to end: certificates made at test time with the
 * openssl command line, routers in-process and the daemon, clients made with
 * the client library and sbctl, and openssl s_client as a client we did not
 * write. Every refusal is checked from both ends: what the client is told,
 * and what the router's log says. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <stdatomic.h>

#include <switchboard/client.h>
#include <switchboard/router.h>

#include "support/clock.h"
#include "support/peer.h"
#include "support/pump.h"
#include "common/tls.h" /* sb__tls_match, for the pattern rules */

static const char *DAEMON, *SBCTL;
static char DIR_[64]; /* the certificates */

/* DIR_/name, in one of a few rotating buffers (never more held at once). */
static const char *at(const char *name)
{
	static char buf[32][128];
	static unsigned i;
	char *b = buf[i++ % 32];
	snprintf(b, sizeof buf[0], "%s/%s", DIR_, name);
	return b;
}

/* ---- certificates ------------------------------------------------------- */

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

static int make_certs(void)
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

/* ---- routers ------------------------------------------------------------ */

struct tls_cfg {
	const char *cert, *key; /* file stems in DIR_: "server" */
	int mtls;               /* tls_ca = ca.pem and tls_verify_client */
	const char *const *allow, *const *deny;
	size_t out_max; /* 0: the default */
};

static int saved_stderr = -1; /* while the router's log is captured */

static void fill(struct sb_router_config *cfg, const struct tls_cfg *t)
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

static struct sb_router *start(const struct tls_cfg *t, uint16_t *port)
{
	struct sb_router_config cfg;
	int err = 0;

	fill(&cfg, t);
	struct sb_router *r = sb_router_new(&cfg, &err);
	CHECK(r != NULL);
	if (r == NULL)
		return NULL;
	CHECK_INT(sb_router_start(r), 0);
	*port = sb_router_port(r);
	return r;
}

static void stop(struct sb_router *r)
{
	if (r != NULL) {
		sb_router_stop(r, 0);
		sb_router_free(r);
	}
}

/* The router's log (stderr) goes to a file while a test looks at it. */
static void log_capture(void)
{
	fflush(stderr);
	saved_stderr = dup(2);
	int fd = open(at("router.log"), O_CREAT | O_TRUNC | O_WRONLY, 0600);
	CHECK(fd >= 0);
	dup2(fd, 2);
	close(fd);
}

/* Stops capturing; returns what was logged (the caller frees it). */
static char *log_release(void)
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

static void expect_logged(const char *log, const char *line)
{
	if (strstr(log, line) == NULL) {
		fprintf(stderr, "  the router's log lacks: %s\n--- log ---\n%s-----------\n", line,
			log);
		CHECK(0);
	}
}

/* ---- clients ------------------------------------------------------------ */

struct watch {
	int online, offline, error, error_err;
};

static void on_state(struct sb_client *c, enum sb_client_state s, int err, void *ud)
{
	struct watch *w = ud;

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

/* A TLS client verifying the router against ca.pem, presenting the
 * certificate of stem `cert` (NULL: none). */
static struct sb_client *client(uint16_t port, const char *role, const char *cert,
				const char *server_name, struct watch *w)
{
	struct sb_client_config cfg;
	char c[128], k[128];
	int err = 0;

	sb_client_config_init(&cfg);
	cfg.port = port;
	cfg.role = role;
	cfg.reconnect_min_ms = 20;
	cfg.reconnect_max_ms = 200;
	cfg.on_state = on_state;
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

/* A TLS client of role client with a certificate and a shared secret. */
static struct sb_client *client_with(uint16_t port, const char *cert, const char *secret,
				     struct watch *w)
{
	struct sb_client_config cfg;
	char c[128], k[128];
	int err = 0;

	sb_client_config_init(&cfg);
	cfg.port = port;
	cfg.reconnect_min_ms = 20;
	cfg.reconnect_max_ms = 200;
	cfg.on_state = on_state;
	cfg.ud = w;
	cfg.tls = 1;
	cfg.tls_ca = at("ca.pem");
	snprintf(c, sizeof c, "%s/%s.pem", DIR_, cert);
	snprintf(k, sizeof k, "%s/%s.key", DIR_, cert);
	cfg.tls_cert = c;
	cfg.tls_key = k;
	cfg.secret = secret;
	struct sb_client *cl = sb_client_new(&cfg, &err);
	CHECK(cl != NULL);
	CHECK_INT(err, 0);
	return cl;
}

/* Pumps c alone until it gives up: its code, or 0 if it did not in time. */
static int until_refused(struct sb_client *c)
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

/* The client is refused with err, and its last error holds text. */
static void expect_refused(struct sb_client *c, struct watch *w, int err, const char *text)
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

static char last_subject[256]; /* the certificate subject of the last echo's caller */

static void handle_echo(struct sb_client *c, struct sb_call *call, void *ud)
{
	size_t n;
	const void *p = sb_call_payload(call, &n);
	const char *subject = sb_call_subject(call);

	(void)c;
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

static void on_result(struct sb_client *c, uint64_t req, int err, const char *outcome,
		      const void *payload, size_t len, int more, void *ud)
{
	struct result *r = ud;

	(void)c;
	(void)req;
	if (more)
		return;
	r->done = 1;
	r->err = err;
	snprintf(r->outcome, sizeof r->outcome, "%s", outcome);
	r->len = len < sizeof r->payload ? len : sizeof r->payload;
	if (payload != NULL)
		memcpy(r->payload, payload, r->len);
}

/* from requests echo with {"n": v} and gets it back, pumping every client. */
static void echo_works(struct sb_client *const *cs, int n, struct sb_client *from, uint8_t v)
{
	uint8_t body[] = {0x81, 0xa1, 'n', v & 0x7f};
	struct result r = {0};

	CHECK_INT(sb_request(from, "echo", body, sizeof body, 5000, on_result, &r, NULL), 0);
	pump_until(cs, n, &r.done, 1, "the echo reply");
	CHECK_INT(r.err, 0);
	CHECK_STR(r.outcome, "echoed");
	CHECK(r.len == sizeof body && memcmp(r.payload, body, sizeof body) == 0);
}

/* ---- TLS ---------------------------------------------------------------- */

static void test_request_reply_over_tls(void)
{
	uint16_t port;
	struct tls_cfg t = {.cert = "server"};
	struct sb_router *r = start(&t, &port);
	struct watch ws = {0}, wc = {0};
	struct sb_client *svc = client(port, "service", NULL, NULL, &ws);
	struct sb_client *req = client(port, "client", NULL, NULL, &wc);
	struct sb_client *cs[] = {svc, req};

	CHECK_INT(sb_client_register(svc, "echo", 0, handle_echo, NULL), 0);
	if (pump_online(cs, 2)) {
		for (uint8_t i = 0; i < 20; i++)
			echo_works(cs, 2, req, i);
		CHECK_STR(last_subject, "(none)"); /* TLS, but no client certificate */
	}
	CHECK_INT(wc.error + ws.error, 0);
	sb_client_free(req);
	sb_client_free(svc);
	stop(r);
}

static void test_router_certificate_is_checked(void)
{
	uint16_t port;
	struct tls_cfg t = {.cert = "server"};
	struct sb_router *r = start(&t, &port);
	struct watch w1 = {0}, w2 = {0}, w3 = {0};

	/* The certificate names 127.0.0.1 and localhost: both verify. */
	struct sb_client *ok = client(port, "client", NULL, "localhost", &w1);
	pump_online(&ok, 1);
	sb_client_free(ok);

	struct sb_client *wrong = client(port, "client", NULL, "billing.example", &w2);
	expect_refused(
		wrong, &w2, SB_EUNAUTHORIZED,
		"router certificate \"server\" refused: it does not name \"billing.example\"");
	sb_client_free(wrong);
	stop(r);

	/* A router whose certificate another CA signed. */
	t.cert = "rogue-server";
	r = start(&t, &port);
	struct sb_client *fooled = client(port, "client", NULL, NULL, &w3);
	expect_refused(fooled, &w3, SB_EUNAUTHORIZED,
		       "router certificate \"rogue-server\" refused: it is not signed by a "
		       "trusted CA");
	sb_client_free(fooled);
	stop(r);
}

/* The file.read handler streams CHUNKS chunks of CHUNK bytes as MessagePack
 * bin32, produced from the pump loop as the library's flow control allows. */
enum { CHUNK = 65536, CHUNKS = 100 };
static struct sb_call *streaming;
static int produced, overloaded;

static uint8_t pattern(int chunk, size_t k)
{
	return (uint8_t)(chunk * 131 + (int)(k * 7) + (int)(k >> 9));
}

static void handle_read(struct sb_client *c, struct sb_call *call, void *ud)
{
	(void)c;
	(void)ud;
	streaming = call;
	produced = 0;
}

static void produce(void *arg)
{
	static uint8_t buf[5 + CHUNK];

	(void)arg;
	while (streaming != NULL && produced < CHUNKS) {
		buf[0] = 0xc6;
		buf[1] = 0;
		buf[2] = (uint8_t)(CHUNK >> 16);
		buf[3] = (uint8_t)(CHUNK >> 8);
		buf[4] = (uint8_t)CHUNK;
		for (size_t k = 0; k < CHUNK; k++)
			buf[5 + k] = pattern(produced, k);
		int rc = sb_reply_more(streaming, "chunk", buf, sizeof buf, 1);
		if (rc == SB_EOVERLOADED) {
			overloaded++;
			return; /* the next turn, once some went out */
		}
		CHECK_INT(rc, 0);
		produced++;
	}
	if (streaming != NULL) {
		CHECK_INT(sb_reply(streaming, "file.read-done", NULL, 0), 0);
		streaming = NULL;
	}
}

struct stream_seen {
	int chunks, bad, done, err;
	size_t bytes;
};

static void on_chunk(struct sb_client *c, uint64_t req, int err, const char *outcome,
		     const void *payload, size_t len, int more, void *ud)
{
	struct stream_seen *s = ud;
	const uint8_t *p = payload;

	(void)c;
	(void)req;
	(void)outcome;
	if (!more) {
		s->done = 1;
		s->err = err;
		return;
	}
	if (len != 5 + CHUNK || p[0] != 0xc6) {
		s->bad++;
		return;
	}
	for (size_t k = 0; k < CHUNK; k++)
		if (p[5 + k] != pattern(s->chunks, k)) {
			s->bad++;
			break;
		}
	s->chunks++;
	s->bytes += CHUNK;
}

static void test_big_stream_arrives_intact(void)
{
	uint16_t port;
	/* A small out_max makes the router pause the handler while the
	 * requester drains: TLS plaintext parked and resumed. */
	struct tls_cfg t = {.cert = "server", .out_max = 1u << 20};
	struct sb_router *r = start(&t, &port);
	struct watch ws = {0}, wc = {0};
	struct sb_client *svc = client(port, "service", NULL, NULL, &ws);
	struct sb_client *req = client(port, "client", NULL, NULL, &wc);
	struct sb_client *cs[] = {svc, req};
	struct stream_seen seen = {0};
	struct sb_router_stats st;

	CHECK_INT(sb_client_register(svc, "file.read", 0, handle_read, NULL), 0);
	if (pump_online(cs, 2)) {
		CHECK_INT(sb_request(req, "file.read", NULL, 0, 60000, on_chunk, &seen, NULL), 0);
		pump_tick = produce;
		pump_until(cs, 2, &seen.done, 1, "the end of the stream");
		pump_tick = NULL;
	}
	CHECK_INT(seen.err, 0);
	CHECK_INT(seen.chunks, CHUNKS);
	CHECK_INT(seen.bad, 0);
	CHECK(seen.bytes == (size_t)CHUNKS * CHUNK); /* 6.5 MB, every byte compared */
	sb_router_stats(r, &st);
	CHECK_INT(st.slow_consumers, 0);
	sb_client_free(req);
	sb_client_free(svc);
	stop(r);
}

/* openssl s_client, a client we did not write, sends a frame whose body is
 * not MessagePack; what it prints is the router's ERROR, as bytes. */
static void test_s_client_gets_bad_frame(void)
{
	uint16_t port;
	struct tls_cfg t = {.cert = "server"};
	struct sb_router *r = start(&t, &port);
	int in[2], out[2];
	char addr[32];
	static const uint8_t garbage[] = "\x00\x00\x00\x10this is not msgp";

	snprintf(addr, sizeof addr, "127.0.0.1:%u", port);
	CHECK(pipe(in) == 0 && pipe(out) == 0);
	pid_t pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(in[0], 0);
		dup2(out[1], 1);
		dup2(null, 2);
		close(in[1]);
		close(out[0]);
		/* -quiet: only the application data on stdout; it implies
		 * -ign_eof, so s_client stays until the router closes. */
		execlp("openssl", "openssl", "s_client", "-connect", addr, "-CAfile", at("ca.pem"),
		       "-verify_return_error", "-quiet", (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	CHECK(write(in[1], garbage, sizeof garbage - 1) == (ssize_t)(sizeof garbage - 1));

	uint8_t got[512];
	size_t have = 0;
	uint64_t end = now_ms() + pump_limit_ms;
	for (;;) { /* until s_client exits: the router closed the connection */
		struct pollfd p = {.fd = out[0], .events = POLLIN};
		if (now_ms() >= end || poll(&p, 1, 100) < 0)
			break;
		ssize_t n = p.revents ? read(out[0], got + have, sizeof got - have) : 1;
		if (n <= 0)
			break;
		if (p.revents)
			have += (size_t)n;
	}
	close(in[1]);
	close(out[0]);
	int status = 0;
	for (int i = 0; i < 100 && waitpid(pid, &status, WNOHANG) == 0; i++)
		usleep(20000);
	if (waitpid(pid, &status, WNOHANG) == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		CHECK(!"s_client did not exit: the router did not close");
	}

	struct sb_msg m;
	CHECK(have >= SB_PREFIX_LEN);
	uint32_t len = have >= 4 ? (uint32_t)got[0] << 24 | got[1] << 16 | got[2] << 8 | got[3] : 0;
	CHECK(have == SB_PREFIX_LEN + len); /* one frame, then the close */
	CHECK_INT(sb_decode(got, have, SB_DECODE_PAYLOAD, &m, NULL), 0);
	CHECK_INT(m.kind, SB_ERROR);
	CHECK_INT(m.code, -SB_EBADFRAME);
	CHECK(m.flags & SB_F_FATAL);
	CHECK(v_is(m.text, "body is not a MessagePack fixarray"));
	stop(r);
}

/* A client without TLS gets a plaintext ERROR it can read; the TLS
 * clients of the same router notice nothing. */
static void test_plain_client_refused_cleanly(void)
{
	uint16_t port;
	struct tls_cfg t = {.cert = "server"};
	struct sb_router *r = start(&t, &port);
	struct watch ws = {0}, wc = {0}, wp = {0};
	struct sb_client *svc = client(port, "service", NULL, NULL, &ws);
	struct sb_client *req = client(port, "client", NULL, NULL, &wc);
	struct sb_client *cs[] = {svc, req};

	CHECK_INT(sb_client_register(svc, "echo", 0, handle_echo, NULL), 0);
	pump_online(cs, 2);

	struct peer *p = peer_dial(port);
	struct sb_msg hello = {
		.kind = SB_HELLO, .version = SB_PROTO_VERSION, .role = v_str("client")};
	peer_send(p, &hello);
	struct sb_msg *e = peer_expect(p, SB_ERROR);
	CHECK_INT(e->code, -SB_EUNAUTHORIZED);
	CHECK(e->flags & SB_F_FATAL);
	CHECK(v_is(e->text, "this router requires TLS"));
	CHECK_INT(peer_recv_within(p, 5000), 0); /* closed */
	peer_close(p);

	/* The library without TLS: refused for good, and told why. */
	struct sb_client_config cfg;
	sb_client_config_init(&cfg);
	cfg.port = port;
	cfg.on_state = on_state;
	cfg.ud = &wp;
	struct sb_client *plain = sb_client_new(&cfg, NULL);
	expect_refused(plain, &wp, SB_EUNAUTHORIZED, "this router requires TLS");
	sb_client_free(plain);

	echo_works(cs, 2, req, 7);
	CHECK_INT(ws.offline + wc.offline, 0);
	sb_client_free(req);
	sb_client_free(svc);
	stop(r);
}

/* A TLS client of a plain router: its handshake fails, it says so, and it
 * keeps trying (the router may be switched to TLS) without going online. */
static void test_tls_client_of_plain_router(void)
{
	uint16_t port;
	struct sb_router *r = start(NULL, &port);
	struct watch w = {0};
	struct sb_client *c = client(port, "client", NULL, NULL, &w);
	uint64_t end = now_ms() + 400;

	while (now_ms() < end)
		CHECK_INT(sb_client_process(c, 10), 0);
	CHECK_INT(w.online, 0);
	CHECK(strncmp(sb_client_last_error(c), "TLS: ", 5) == 0);
	sb_client_free(c);
	stop(r);
}

/* A peer that starts a handshake and stalls (or never starts one) is
 * closed at the HELLO deadline, like a silent plain peer: it cannot hold a
 * descriptor and a place for long. It hears nothing first (there is no
 * TLS session to say it in). */
static void test_stalled_handshake_is_closed(void)
{
	struct sb_router_config cfg;
	struct sb_router_stats st;
	int err = 0;

	fill(&cfg, &(struct tls_cfg){.cert = "server"});
	cfg.hello_timeout_ms = 200;
	struct sb_router *r = sb_router_new(&cfg, &err);
	CHECK(r != NULL);
	if (r == NULL)
		return;
	CHECK_INT(sb_router_start(r), 0);
	struct peer *silent = peer_dial(sb_router_port(r));
	struct peer *stalled = peer_dial(sb_router_port(r));
	static const uint8_t start[] = {22, 3, 1, 0x02, 0x00, 1}; /* a ClientHello's first bytes */
	peer_raw(stalled, start, sizeof start);
	CHECK_INT(peer_recv_within(silent, 5000), 0);
	CHECK_INT(peer_recv_within(stalled, 5000), 0);
	sb_router_stats(r, &st);
	CHECK_INT(st.hello_timeouts, 2);
	peer_close(silent);
	peer_close(stalled);
	stop(r);
}

/* ---- mutual TLS --------------------------------------------------------- */

static const char *const ALLOW[] = {"alice", "svc-*", NULL};
static const char *const DENY[] = {"svc-evil", NULL};

static void test_mtls_refusals(void)
{
	uint16_t port;
	struct tls_cfg t = {.cert = "server", .mtls = 1, .allow = ALLOW, .deny = DENY};
	struct watch wa = {0}, wb = {0}, wv = {0}, we = {0}, wm = {0}, wn = {0}, ws = {0};

	log_capture();
	struct sb_router *r = start(&t, &port);
	struct sb_client *alice = client(port, "service", "alice", NULL, &wa);
	struct sb_client *billing = client(port, "client", "svc-billing", NULL, &ws);
	struct sb_client *cs[] = {alice, billing};
	CHECK_INT(sb_client_register(alice, "echo", 0, handle_echo, NULL), 0);
	pump_online(cs, 2); /* alice by name, svc-billing by pattern */

	struct sb_client *bob = client(port, "client", "bob", NULL, &wb);
	expect_refused(bob, &wb, SB_EFORBIDDEN, "certificate name \"bob\" is not allowed");
	struct sb_client *evil = client(port, "client", "svc-evil", NULL, &wv);
	expect_refused(evil, &wv, SB_EFORBIDDEN, "certificate name \"svc-evil\" is denied");
	struct sb_client *eve = client(port, "client", "eve", NULL, &we);
	expect_refused(eve, &we, SB_EUNAUTHORIZED, "certificate expired");
	struct sb_client *mallory = client(port, "client", "mallory", NULL, &wm);
	expect_refused(mallory, &wm, SB_EUNAUTHORIZED, "unknown ca");
	struct sb_client *nobody = client(port, "client", NULL, NULL, &wn);
	expect_refused(nobody, &wn, SB_EUNAUTHORIZED, "certificate required");

	echo_works(cs, 2, billing, 1);             /* the allowed ones were never disturbed */
	CHECK_STR(last_subject, "CN=svc-billing"); /* the handler sees who called, verified */
	CHECK_INT(wa.offline + ws.offline, 0);
	sb_client_free(nobody);
	sb_client_free(mallory);
	sb_client_free(eve);
	sb_client_free(evil);
	sb_client_free(bob);
	sb_client_free(billing);
	sb_client_free(alice);
	stop(r);

	char *log = log_release();
	expect_logged(log, "refused: certificate name \"bob\" is not allowed");
	expect_logged(log, "refused: certificate name \"svc-evil\" is denied (tls-deny svc-evil)");
	expect_logged(log, "refused: client certificate \"eve\" refused: it has expired");
	expect_logged(log, "refused: client certificate \"mallory\" refused: it is not signed by "
			   "a trusted CA");
	expect_logged(log, "refused: no client certificate (this router requires one)");
	free(log);
}

/* sb_router_reload: a name refused before is let in after, while the
 * connections made before carry on; a bad reload changes nothing. */
static void test_reload_swaps_allow_list(void)
{
	static const char *const ALICE[] = {"alice", NULL};
	static const char *const BOTH[] = {"alice", "bob", NULL};
	uint16_t port;
	struct tls_cfg t = {.cert = "server", .mtls = 1, .allow = ALICE};
	struct sb_router_config cfg;
	struct watch wa = {0}, wb1 = {0}, wb2 = {0}, wb3 = {0}, wb4 = {0};

	log_capture();
	struct sb_router *r = start(&t, &port);
	struct sb_client *alice = client(port, "service", "alice", NULL, &wa);
	CHECK_INT(sb_client_register(alice, "echo", 0, handle_echo, NULL), 0);
	pump_online(&alice, 1);

	struct sb_client *bob = client(port, "client", "bob", NULL, &wb1);
	expect_refused(bob, &wb1, SB_EFORBIDDEN, "\"bob\" is not allowed");
	sb_client_free(bob);

	t.allow = BOTH;
	fill(&cfg, &t);
	CHECK_INT(sb_router_reload(r, &cfg), 0);
	bob = client(port, "client", "bob", NULL, &wb2);
	struct sb_client *cs[] = {alice, bob};
	pump_online(cs, 2);
	echo_works(cs, 2, bob, 2); /* bob is new; alice's connection is from before */

	/* Refused reloads: the settings in force stay. */
	fill(&cfg, &t);
	cfg.tls_cert = at("missing.pem");
	CHECK_INT(sb_router_reload(r, &cfg), SB_EINVAL);
	fill(&cfg, &(struct tls_cfg){.cert = "eve", .mtls = 1}); /* expired */
	CHECK_INT(sb_router_reload(r, &cfg), SB_EINVAL);
	fill(&cfg, NULL); /* TLS off */
	CHECK_INT(sb_router_reload(r, &cfg), SB_EINVAL);
	struct sb_client *bob2 = client(port, "client", "bob", NULL, &wb3);
	pump_online(&bob2, 1);
	sb_client_free(bob2);

	/* Narrowed again: new connections as bob are refused, the one
	 * already open is not dropped. */
	t.allow = ALICE;
	fill(&cfg, &t);
	CHECK_INT(sb_router_reload(r, &cfg), 0);
	struct sb_client *bob3 = client(port, "client", "bob", NULL, &wb4);
	expect_refused(bob3, &wb4, SB_EFORBIDDEN, "\"bob\" is not allowed");
	sb_client_free(bob3);
	echo_works(cs, 2, bob, 3);
	CHECK_INT(wa.offline + wb2.offline, 0);
	sb_client_free(bob);
	sb_client_free(alice);
	stop(r);

	char *log = log_release();
	expect_logged(log, "reloaded: TLS 1.3: certificate CN=server; client certificates "
			   "required, 2 allowed, 0 denied");
	expect_logged(log, "reload refused: tls-cert ");
	expect_logged(log, "missing.pem: No such file or directory");
	expect_logged(log, "reload refused: tls-cert ");
	expect_logged(log, "eve.pem: the certificate has expired");
	expect_logged(log, "reload refused: TLS cannot be turned off without a restart");
	free(log);
}

/* Reloads from another thread while both shards accept: every connection
 * gets whole settings, old or new, and no snapshot is freed under a shard
 * (ASan and TSan watch the reference counts). */
struct reloader {
	struct sb_router *r;
	atomic_int stop;
	int reloads, failed;
};

static void *reload_loop(void *arg)
{
	static const char *const A[] = {"alice", NULL};
	static const char *const B[] = {"alice", "x*", NULL};
	struct reloader *rl = arg;
	struct sb_router_config cfg;

	while (!atomic_load(&rl->stop)) {
		fill(&cfg, &(struct tls_cfg){
				   .cert = "server", .mtls = 1, .allow = rl->reloads % 2 ? A : B});
		rl->failed += sb_router_reload(rl->r, &cfg) != 0;
		rl->reloads++;
	}
	return NULL;
}

static void test_reload_races_accepts(void)
{
	static const char *const A[] = {"alice", NULL};
	uint16_t port;
	struct tls_cfg t = {.cert = "server", .mtls = 1, .allow = A};
	struct reloader rl = {.r = start(&t, &port)};
	pthread_t th;
	int online = 0;

	CHECK(pthread_create(&th, NULL, reload_loop, &rl) == 0);
	for (int i = 0; i < 16; i++) {
		struct watch w = {0};
		struct sb_client *c = client(port, "client", "alice", NULL, &w);
		online += pump_online(&c, 1);
		sb_client_free(c);
	}
	atomic_store(&rl.stop, 1);
	pthread_join(th, NULL);
	CHECK_INT(online, 16);
	CHECK_INT(rl.failed, 0);
	CHECK(rl.reloads > 0);
	stop(rl.r);
}

/* Shared secrets over TLS: the challenge and proof travel inside the
 * records; one sb_router_reload() swaps the secret and the allow-list
 * together, and a refusal of either leaves both as they were. */
static void test_secret_over_tls(void)
{
	static const char *const ALICE[] = {"alice", NULL};
	static const char *const BOTH[] = {"alice", "bob", NULL};
	struct sb_router_config cfg;
	struct tls_cfg t = {.cert = "server", .mtls = 1, .allow = ALICE};
	struct watch w[5] = {{0}};
	int err = 0;

	log_capture();
	fill(&cfg, &t);
	cfg.secret_client = "first-secret";
	struct sb_router *r = sb_router_new(&cfg, &err);
	CHECK(r != NULL);
	if (r == NULL)
		return;
	CHECK_INT(sb_router_start(r), 0);
	uint16_t port = sb_router_port(r);

	struct sb_client *ok = client_with(port, "alice", "first-secret", &w[0]);
	pump_online(&ok, 1);
	struct sb_client *wrong = client_with(port, "alice", "guess", &w[1]);
	expect_refused(wrong, &w[1], SB_EUNAUTHORIZED, "wrong secret");
	sb_client_free(wrong);

	/* Both at once; then an unreadable secret file refuses the lot. */
	t.allow = BOTH;
	fill(&cfg, &t);
	cfg.secret_client = "second-secret";
	CHECK_INT(sb_router_reload(r, &cfg), 0);
	struct sb_client *bob = client_with(port, "bob", "second-secret", &w[2]);
	pump_online(&bob, 1);
	fill(&cfg, &(struct tls_cfg){.cert = "server", .mtls = 1, .allow = ALICE});
	cfg.secret_client_file = at("nothere.secret"); /* unreadable: refused */
	CHECK_INT(sb_router_reload(r, &cfg), SB_ESYS);
	struct sb_client *bob2 = client_with(port, "bob", "second-secret", &w[3]);
	pump_online(&bob2, 1);       /* still bob allowed, still the second secret */
	CHECK(sb_client_online(ok)); /* the first connection never noticed */
	CHECK_INT(w[0].offline, 0);
	sb_client_free(bob2);
	sb_client_free(bob);
	sb_client_free(ok);
	stop(r);
	char *log = log_release();
	expect_logged(log, "reloaded: TLS 1.3: certificate CN=server; client certificates "
			   "required, 2 allowed, 0 denied");
	expect_logged(log, "reload refused, the rules in force stay: secret_client_file ");
	free(log);
}

/* ---- the daemon: config file and SIGHUP --------------------------------- */

static int write_config(const char *allow)
{
	FILE *f = fopen(at("sb.conf"), "w");
	if (f == NULL)
		return -1;
	fprintf(f,
		"# switchboard, as the TLS test runs it\n"
		"port = 0\n"
		"shards = 1\n"
		"tls-cert = %s   # the router's certificate\n"
		"tls-key = %s\n"
		"tls-ca = %s\n"
		"tls-verify-client = yes\n"
		"tls-allow = %s\n",
		at("server.pem"), at("server.key"), at("ca.pem"), allow);
	return fclose(f);
}

/* A line from the daemon's stdout containing `want`, within 5 s. */
static int read_until(int fd, const char *want, char *line, size_t cap)
{
	size_t have = 0;
	uint64_t end = now_ms() + 5000;

	while (now_ms() < end) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 100) != 1)
			continue;
		char ch;
		if (read(fd, &ch, 1) != 1)
			return -1;
		if (ch != '\n') {
			if (have + 1 < cap)
				line[have++] = ch;
			continue;
		}
		line[have] = 0;
		if (strstr(line, want) != NULL)
			return 0;
		have = 0;
	}
	return -1;
}

static void test_daemon_reloads_on_sighup(void)
{
	int out[2];
	char line[512];
	struct watch wa = {0}, wb1 = {0}, wb2 = {0};

	CHECK_INT(write_config("alice"), 0);
	CHECK(pipe(out) == 0);
	pid_t pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(out[1], 1);
		dup2(null, 2);
		close(out[0]);
		execl(DAEMON, DAEMON, "--config", at("sb.conf"), (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	CHECK_INT(read_until(out[0], "listening on 127.0.0.1:", line, sizeof line), 0);
	const char *p = strstr(line, "127.0.0.1:");
	uint16_t port = p != NULL ? (uint16_t)atoi(p + 10) : 0;
	CHECK(port > 0);
	CHECK(strstr(line, "TLS") != NULL);

	struct sb_client *alice = client(port, "service", "alice", NULL, &wa);
	CHECK_INT(sb_client_register(alice, "echo", 0, handle_echo, NULL), 0);
	pump_online(&alice, 1);
	struct sb_client *bob = client(port, "client", "bob", NULL, &wb1);
	expect_refused(bob, &wb1, SB_EFORBIDDEN, "\"bob\" is not allowed");
	sb_client_free(bob);

	CHECK_INT(write_config("alice, bob"), 0);
	kill(pid, SIGHUP);
	CHECK_INT(read_until(out[0], "SIGHUP: settings reloaded", line, sizeof line), 0);
	bob = client(port, "client", "bob", NULL, &wb2);
	struct sb_client *cs[] = {alice, bob};
	pump_online(cs, 2);
	echo_works(cs, 2, bob, 4);
	CHECK_INT(wa.offline, 0);

	/* A broken file is refused and changes nothing. */
	FILE *f = fopen(at("sb.conf"), "a");
	if (f != NULL) {
		fputs("tls-alow = mallory\n", f);
		fclose(f);
	}
	kill(pid, SIGHUP);
	CHECK_INT(read_until(out[0], "tls-alow: not a setting", line, sizeof line), 0);
	CHECK(strstr(line, "sb.conf:9: ") != NULL);
	echo_works(cs, 2, bob, 5);

	sb_client_free(bob);
	sb_client_free(alice);
	kill(pid, SIGTERM);
	int status = 0;
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(out[0]);
}

/* ---- sbctl -------------------------------------------------------------- */

/* Runs sbctl with args while pumping the service c; its exit code, and its
 * stdout and stderr (joined) in out. */
static int sbctl(struct sb_client *c, char *out, size_t cap, const char *const *args)
{
	const char *argv[16] = {SBCTL};
	int pipefd[2], status = 0;
	size_t n = 1, have = 0;

	while (args[n - 1] != NULL && n < 15) {
		argv[n] = args[n - 1];
		n++;
	}
	argv[n] = NULL;
	CHECK(pipe(pipefd) == 0);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(pipefd[1], 1);
		dup2(pipefd[1], 2);
		close(pipefd[0]);
		execv(SBCTL, (char *const *)argv);
		_exit(127);
	}
	close(pipefd[1]);
	fcntl(pipefd[0], F_SETFL, O_NONBLOCK);
	uint64_t end = now_ms() + pump_limit_ms;
	while (waitpid(pid, &status, WNOHANG) == 0) {
		if (now_ms() >= end) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			CHECK(!"sbctl did not finish");
			break;
		}
		pump_once(&c, 1);
		ssize_t k = read(pipefd[0], out + have, cap - 1 - have);
		if (k > 0)
			have += (size_t)k;
	}
	ssize_t k;
	while ((k = read(pipefd[0], out + have, cap - 1 - have)) > 0)
		have += (size_t)k;
	out[have] = 0;
	close(pipefd[0]);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_sbctl_over_tls(void)
{
	static const char *const ALICE[] = {"alice", NULL};
	uint16_t port;
	struct tls_cfg t = {.cert = "server", .mtls = 1, .allow = ALICE};
	struct sb_router *r = start(&t, &port);
	struct watch wa = {0};
	char router[32], out[2048];

	snprintf(router, sizeof router, "127.0.0.1:%u", port);
	struct sb_client *alice = client(port, "service", "alice", NULL, &wa);
	CHECK_INT(sb_client_register(alice, "echo", 0, handle_echo, NULL), 0);
	pump_online(&alice, 1);

	const char *ok[] = {"--router",   router,          "--tls-ca",  at("ca.pem"),
			    "--tls-cert", at("alice.pem"), "--tls-key", at("alice.key"),
			    "request",    "echo",          "{\"n\":1}", NULL};
	CHECK_INT(sbctl(alice, out, sizeof out, ok), 0);
	CHECK(strstr(out, "echoed  {\"n\":1}") != NULL);

	const char *bob[] = {"--router",   router,        "--tls-ca",  at("ca.pem"),
			     "--tls-cert", at("bob.pem"), "--tls-key", at("bob.key"),
			     "request",    "echo",        NULL};
	CHECK_INT(sbctl(alice, out, sizeof out, bob), 3);
	CHECK(strstr(out, "forbidden (code EFORBIDDEN): certificate name \"bob\" is not "
			  "allowed") != NULL);

	const char *rogue[] = {"--router", router, "--tls-ca", at("rogue-ca.pem"), "routes", NULL};
	CHECK_INT(sbctl(alice, out, sizeof out, rogue), 3);
	CHECK(strstr(out, "router certificate \"server\" refused: it is not signed by a "
			  "trusted CA") != NULL);

	const char *missing[] = {"--router", router, "--tls-ca", at("nothere.pem"), "routes", NULL};
	CHECK_INT(sbctl(alice, out, sizeof out, missing), 2);
	CHECK(strstr(out, "nothere.pem: No such file or directory") != NULL);
	if (sb_test_failures > 0)
		fprintf(stderr, "  sbctl said: %s\n", out);
	sb_client_free(alice);
	stop(r);
}

/* ---- settings ----------------------------------------------------------- */

static void test_bad_settings_are_refused(void)
{
	static const char *const LIST[] = {"alice", NULL};
	static const char *const EMPTY_NAME[] = {"", NULL};
	struct sb_router_config cfg;
	int err = 0;

	log_capture();
	struct {
		struct tls_cfg t;
		const char *why;
	} bad[] = {
		{{.cert = "server", .key = "alice"}, "does not belong to"},
		{{.cert = "eve"}, "the certificate has expired"},
		{{.cert = "nothere"}, "No such file or directory"},
		{{.cert = "server", .allow = LIST},
		 "tls-allow and tls-deny need tls-verify-client"},
		{{.cert = "server", .mtls = 1, .allow = EMPTY_NAME}, "a name must be"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		fill(&cfg, &bad[i].t);
		CHECK(sb_router_new(&cfg, &err) == NULL);
		CHECK_INT(err, SB_EINVAL);
	}
	fill(&cfg, NULL);
	cfg.tls_verify_client = 1; /* without a certificate */
	CHECK(sb_router_new(&cfg, &err) == NULL);

	/* The client refuses TLS settings without TLS, and files that do not load. */
	struct sb_client_config cc;
	sb_client_config_init(&cc);
	cc.tls_ca = at("ca.pem");
	CHECK(sb_client_new(&cc, &err) == NULL);
	CHECK_INT(err, SB_EINVAL);
	cc.tls = 1;
	cc.tls_ca = at("nothere.pem");
	CHECK(sb_client_new(&cc, &err) == NULL);
	CHECK_INT(err, SB_EINVAL);

	char *log = log_release();
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		expect_logged(log, bad[i].why);
	expect_logged(log, "need tls-cert");
	free(log);
}

static void test_patterns(void)
{
	CHECK(sb__tls_match("alice", "alice"));
	CHECK(sb__tls_match("alice", "ALICE"));
	CHECK(!sb__tls_match("alice", "alice2"));
	CHECK(sb__tls_match("svc-*", "svc-billing"));
	CHECK(sb__tls_match("svc-*", "svc-"));
	CHECK(!sb__tls_match("svc-*", "svc"));
	CHECK(sb__tls_match("*.example.com", "a.b.example.com"));
	CHECK(!sb__tls_match("*.example.com", "example.com"));
	CHECK(sb__tls_match("a*b*c", "axxbyyc"));
	CHECK(!sb__tls_match("a*b*c", "axxbyy"));
	CHECK(sb__tls_match("*", "anything"));
	CHECK(sb__tls_match("**x", "x"));
}

int main(int argc, char **argv)
{
	char cmd[128];

	if (argc != 3) {
		fprintf(stderr, "usage: test_tls PATH-TO-SWITCHBOARD PATH-TO-SBCTL\n");
		return 2;
	}
	DAEMON = argv[1];
	SBCTL = argv[2];
	pump_limit_ms = 10000;
	signal(SIGPIPE, SIG_IGN);
	if (make_certs() != 0) {
		fprintf(stderr,
			"test_tls: cannot make certificates with openssl in %s (see "
			"make.log there)\n",
			DIR_);
		return 1;
	}
	RUN(test_patterns);
	RUN(test_request_reply_over_tls);
	RUN(test_router_certificate_is_checked);
	RUN(test_big_stream_arrives_intact);
	RUN(test_s_client_gets_bad_frame);
	RUN(test_plain_client_refused_cleanly);
	RUN(test_tls_client_of_plain_router);
	RUN(test_stalled_handshake_is_closed);
	RUN(test_mtls_refusals);
	RUN(test_reload_swaps_allow_list);
	RUN(test_reload_races_accepts);
	RUN(test_secret_over_tls);
	RUN(test_daemon_reloads_on_sighup);
	RUN(test_sbctl_over_tls);
	RUN(test_bad_settings_are_refused);
	snprintf(cmd, sizeof cmd, "rm -rf %s", DIR_);
	if (system(cmd) != 0)
		fprintf(stderr, "test_tls: could not remove %s\n", DIR_);
	return TEST_EXIT();
}
