/* The connection: connect (and reconnect with jittered backoff), TLS, the
 * handshake (HELLO, CHALLENGE, WELCOME), reads, and the output buffer and
 * its writes. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <switchboard/client.h>
#include <switchboard/proto.h>

#include "client/client-int.h"
#include "common/clock.h"
#include "common/hmac.h"
#include "common/tls.h"

#define OUT_KEEP       (256u << 10) /* a drained output buffer bigger than this is shrunk */
#define READS_PER_TURN 16           /* recv() calls per turn, so the caller's loop turns too */
#define HANDSHAKE_MS   5000u        /* connect, WELCOME and ACKs, or the attempt is abandoned */
#define TLS_PAIR       (64u << 10)  /* ciphertext held each way: a whole recv() in one go */

/* HELLO's payload: {"lib": "sb-c 0.2"}, the version from CMakeLists.txt
 * (SB_CLIENT_LIB), as a one-pair map with a fixstr value. */
_Static_assert(sizeof SB_CLIENT_LIB - 1 < 32, "the lib text must fit a fixstr");
static const struct {
	uint8_t head[6];
	char lib[sizeof SB_CLIENT_LIB - 1]; /* no NUL: the fixstr's length says where it ends */
} HELLO_INFO = {{0x81, 0xa3, 'l', 'i', 'b', 0xa0 | (sizeof SB_CLIENT_LIB - 1)}, SB_CLIENT_LIB};

union addr {
	struct sockaddr sa;
	struct sockaddr_in v4;
	struct sockaddr_in6 v6;
	struct sockaddr_storage ss;
};

/* ---- why an attempt failed ---------------------------------------------- */

void sb__client_say(struct sb_client *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->last_error, sizeof c->last_error, fmt, ap);
	va_end(ap);
	c->said_gen = c->conn_gen;
}

/* strerror() in the middle of a sentence: "connection refused". */
static void say_errno(struct sb_client *c, const char *what, int e)
{
	char text[128];

	snprintf(text, sizeof text, "%s", strerror(e));
	text[0] = (char)tolower((unsigned char)text[0]);
	sb__client_say(c, "%s%s", what, text);
}

/* An attempt ended before the client was online and nothing said why yet:
 * say it in words, the stage included, so a program (and sbctl) can tell
 * the user more than "offline". */
static void say_handshake_end(struct sb_client *c, int why, int e)
{
	static const char *const stage[] = {
		[C_CONNECTING] = "the TCP connect",
		[C_TLS] = "the TLS handshake",
		[C_HELLO] = "the router's WELCOME",
		[C_REGISTER] = "the router's ACK of the registrations",
	};

	if (c->said_gen == c->conn_gen || why == 0) /* said, or the program's own leave */
		return;
	if (why == SB_ETIMEOUT)
		sb__client_say(c, "timed out: no answer within %u ms (waiting for %s)",
			       HANDSHAKE_MS, stage[c->st]);
	else if (why == SB_EOFFLINE)
		sb__client_say(c,
			       "the router closed the connection during the handshake (waiting for "
			       "%s)",
			       stage[c->st]);
	else if (why == SB_EBADFRAME || why == SB_ETOOLARGE)
		sb__client_say(c, "the answer is not Switchboard frames (%s)%s", sb_strerror(why),
			       c->tls == NULL ? "; a TLS listener? then connect with tls" : "");
	else if (why == SB_ESYS)
		say_errno(c, "", e);
	else
		sb__client_say(c, "%s", sb_strerror(why));
}

/* ---- output ------------------------------------------------------------- */

/* An outgoing payload must be one MessagePack value: a malformed one would
 * be refused by the receiving peer's library, far from the bug. */
int sb__client_payload(const void *p, size_t len, struct sb_view *v)
{
	v->ptr = NULL;
	v->len = 0;
	if (p == NULL)
		return len == 0 ? 0 : SB_EINVAL;
	if (len == 0)
		return 0;
	if (len > SB_FRAME_MAX_LIMIT)
		return SB_ETOOLARGE;
	if (sb_payload_check(p, len) != 0)
		return SB_EINVAL;
	v->ptr = p;
	v->len = (uint32_t)len;
	return 0;
}

static int out_reserve(struct sb_client *c, size_t n)
{
	size_t cap = c->out_cap;
	uint8_t *p;

	if (c->out_cap - c->out_len >= n)
		return 0;
	if (c->out_off > 0) { /* slide what is left to the front before growing */
		memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
		c->out_len -= c->out_off;
		c->out_off = 0;
		if (c->out_cap - c->out_len >= n)
			return 0;
	}
	while (cap - c->out_len < n)
		cap *= 2;
	if ((p = realloc(c->out, cap)) == NULL)
		return SB_ENOMEM;
	c->out = p;
	c->out_cap = cap;
	return 0;
}

/* Encodes m at the end of the output, to go with the next write. With
 * force the out_max bound does not apply: final replies, CANCEL, PONG and
 * registrations are small, and dropping one would leave the other side
 * waiting for good. */
int sb__client_queue(struct sb_client *c, const struct sb_msg *m, int force)
{
	long n = sb_encode(m, c->out + c->out_len, c->out_cap - c->out_len);
	int grow = n == SB_ENOSPC;

	if (grow) /* the common case encodes once, this one twice */
		n = sb_encoded_size(m);
	if (n < 0)
		return n == SB_ETOOLARGE ? SB_ETOOLARGE : SB_EINVAL;
	/* The router closes a connection that sends a frame over its limit. */
	if ((size_t)n - SB_PREFIX_LEN > c->max_frame)
		return SB_ETOOLARGE;
	if (!force && c->out_len - c->out_off + (size_t)n > c->cfg.out_max) {
		c->overloaded = 1;
		return SB_EOVERLOADED;
	}
	if (grow) {
		if (out_reserve(c, (size_t)n) != 0)
			return SB_ENOMEM;
		sb_encode(m, c->out + c->out_len, c->out_cap - c->out_len);
	}
	c->out_len += (size_t)n;
	return 0;
}

/* Over TLS: output becomes records while the pair has room, and the
 * ciphertext goes out from the pair. @return 0, SB_ESYS or a TLS failure */
static int write_tls(struct sb_client *c)
{
	for (;;) {
		while (c->out_off < c->out_len) {
			long n =
				sb__tls_write(c->tls, c->out + c->out_off, c->out_len - c->out_off);
			if (n < 0) {
				sb__client_say(c, "%s", sb__tls_why(c->tls));
				return (int)n;
			}
			if (n == 0)
				break;
			c->out_off += (size_t)n;
		}
		const uint8_t *p;
		size_t len = sb__tls_out(c->tls, &p);
		if (len == 0)
			return 0;
		ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			sb__tls_sent(c->tls, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		return SB_ESYS;
	}
}

/* Writes what the socket takes without blocking. @return 0 or SB_ESYS (or
 * a TLS failure) */
int sb__client_write(struct sb_client *c)
{
	if (c->tls != NULL) {
		int rc = write_tls(c);
		if (rc != 0 || c->out_off < c->out_len)
			return rc;
	}
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			c->out_off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		return SB_ESYS;
	}
	c->out_off = c->out_len = 0;
	if (c->out_cap > OUT_KEEP) { /* one burst must not pin its memory for good */
		uint8_t *p = realloc(c->out, OUT_INIT);
		if (p != NULL) {
			c->out = p;
			c->out_cap = OUT_INIT;
		}
	}
	return 0;
}

/* ---- the handshake ------------------------------------------------------ */

/* HELLO's payload for a reconnect: the usual one (a fixmap) with the pair
 * "resume": bin 16 added. Without memory, no resume: a fresh name then. */
static void keep_resume(struct sb_client *c, const uint8_t *token)
{
	const uint8_t *base = c->hello != NULL ? c->hello : (const uint8_t *)&HELLO_INFO;
	size_t len = c->hello != NULL ? c->hello_len : sizeof HELLO_INFO;
	static const uint8_t key[] = {0xa6, 'r', 'e', 's', 'u', 'm', 'e', 0xc4, 16};
	size_t n = len + sizeof key + 16;
	uint8_t *p = c->hello_resume_len == n ? c->hello_resume : malloc(n);

	c->has_resume = 0;
	if (p == NULL)
		return;
	memcpy(p, base, len);
	p[0]++; /* one pair more: the base has at most two */
	memcpy(p + len, key, sizeof key);
	memcpy(p + len + sizeof key, token, 16);
	if (p != c->hello_resume)
		free(c->hello_resume);
	c->hello_resume = p;
	c->hello_resume_len = n;
	memcpy(c->resume, token, 16);
	c->has_resume = 1;
}

void sb__client_on_welcome(struct sb_client *c, const struct sb_msg *m)
{
	struct sb_splitter *sp = NULL;
	struct sb__mp_item v;

	if (c->st != C_HELLO) {
		sb__client_drop(c, SB_EBADFRAME);
		return;
	}
	memcpy(c->peer, m->peer.ptr, m->peer.len);
	c->peer[m->peer.len] = 0;
	/* The token that takes this name back after a lost connection. */
	if (sb__client_map_get(m->payload.ptr, m->payload.len, "resume", &v) == 1 &&
	    v.type == SB__MP_BIN && v.len == 16)
		keep_resume(c, v.body);
	else
		c->has_resume = 0;
	c->peer_id = m->peer_id;
	c->max_frame = m->max_frame;
	if (c->max_frame < SB_BODY_MIN || c->max_frame > SB_FRAME_MAX_LIMIT)
		c->max_frame = SB_FRAME_MAX_DEFAULT;
	/* Replies others send us can be as large as the router allows. */
	if (c->max_frame != SB_FRAME_MAX_DEFAULT && (sp = sb_splitter_new(c->max_frame)) == NULL) {
		sb__client_drop(c, SB_ENOMEM);
		return;
	}
	c->st = C_REGISTER;
	unsigned too_large = 0;
	for (unsigned i = 0; i < c->nh;) {
		int rc = sb__client_send_register(c, &c->h[i]);
		if (rc == SB_ETOOLARGE) {
			/* A schema over this router's frame limit would have it
			 * close the connection, and every reconnect would again:
			 * the registration goes, as if the router had refused it. */
			sb__client_handler_remove(c, i);
			too_large++;
			continue;
		}
		if (rc != 0) {
			sb_splitter_free(sp);
			sb__client_drop(c, SB_ENOMEM);
			return;
		}
		i++;
	}
	if (c->pres_fn != NULL && sb__client_send_subscribe(c, 0) != 0) {
		sb_splitter_free(sp);
		sb__client_drop(c, SB_ENOMEM);
		return;
	}
	/* Swapped last: this WELCOME may lie in the old splitter's buffer, and
	 * what follows it in the read is still in c->in, not in the splitter. */
	if (sp != NULL) {
		sb_splitter_free(c->sp);
		c->sp = sp;
	}
	while (too_large-- > 0)
		sb__client_report(c, SB_CLIENT_ERROR, SB_ETOOLARGE);
}

/* Proves we know the secret without sending it: an HMAC over the router's
 * fresh nonce, ours, and the name we asked for (docs/protocol.md). Without
 * a secret, or asked for a mechanism we lack, retrying cannot help. */
void sb__client_on_challenge(struct sb_client *c, const struct sb_msg *m)
{
	uint8_t nonce[SB__HMAC_NONCE_LEN], proof[SB__HMAC_PROOF_LEN];
	struct sb_view mech = sb__client_view(SB__HMAC_MECH);
	struct sb_msg a = {.kind = SB_AUTH, .id = m->id};

	if (c->st != C_HELLO || c->challenged) {
		sb__client_drop(c, SB_EBADFRAME);
		return;
	}
	if (c->secret == NULL || m->mech.len != mech.len ||
	    memcmp(m->mech.ptr, mech.ptr, mech.len) != 0) {
		if (c->secret == NULL)
			sb__client_say(c,
				       "the router asks for the secret of role %s, and none is set",
				       c->role);
		else
			sb__client_say(c, "the router asks for an unknown mechanism \"%.*s\"",
				       (int)m->mech.len, (const char *)m->mech.ptr);
		sb__client_report(c, SB_CLIENT_ERROR, SB_EUNAUTHORIZED);
		sb__client_give_up(c, SB_EUNAUTHORIZED);
		return;
	}
	/* The proof covers the name the HELLO asked for. */
	const char *name = c->resuming ? c->peer : c->name;
	if (sb__hmac_nonce(nonce, sizeof nonce) != 0 ||
	    sb__hmac_proof((const uint8_t *)c->secret, strlen(c->secret), m->nonce,
			   (struct sb_view){nonce, sizeof nonce}, sb__client_view(name),
			   proof) != 0) {
		sb__client_drop(c, SB_EINTERNAL);
		return;
	}
	a.nonce = (struct sb_view){nonce, sizeof nonce};
	a.proof = (struct sb_view){proof, sizeof proof};
	c->challenged = 1;
	if (sb__client_queue(c, &a, 1) != 0)
		sb__client_drop(c, SB_ENOMEM);
	sb__hmac_wipe(proof, sizeof proof);
}

/* ---- reads, and TLS ----------------------------------------------------- */

static void say_hello(struct sb_client *c);

/* The TLS layer failed. A certificate refused (by either side) would be
 * refused again: the client gives up. Anything else is a broken
 * connection, and reconnects. */
static void tls_failed(struct sb_client *c, int err)
{
	sb__client_say(c, "%s", sb__tls_why(c->tls));
	/* Our alert, if any, tells the router's log why we hung up. */
	write_tls(c);
	if (err == SB_EUNAUTHORIZED) {
		sb__client_report(c, SB_CLIENT_ERROR, err);
		sb__client_give_up(c, err);
	} else
		sb__client_drop(c, err);
}

/* Ciphertext from the router: the handshake, then plaintext into sb__client_feed().
 * Each pass empties the pair, so what one recv() brought always fits. */
static void tls_in(struct sb_client *c, const uint8_t *p, size_t n)
{
	uint64_t gen = c->conn_gen;

	while (n > 0 && c->conn_gen == gen) {
		size_t k = sb__tls_feed(c->tls, p, n);
		p += k;
		n -= k;
		if (c->st == C_TLS) {
			int rc = sb__tls_handshake(c->tls);
			if (rc < 0) {
				tls_failed(c, rc);
				return;
			}
			if (rc == 0) {
				if (k == 0) { /* no room and no progress: never spin */
					sb__client_drop(c, SB_EBADFRAME);
					return;
				}
				continue;
			}
			say_hello(c);
			if (c->conn_gen != gen)
				return;
		}
		for (;;) {
			long m = sb__tls_read(c->tls, c->tin, IN_SIZE);
			if (m > 0) {
				sb__client_feed(c, c->tin, (size_t)m);
				if (c->conn_gen != gen)
					return;
				continue;
			}
			if (m == 0)
				break;
			if (m == SB__TLS_EOF)
				sb__client_drop(c, c->st == C_DRAINING || c->leaving ? 0
										     : SB_EOFFLINE);
			else
				tls_failed(c, (int)m);
			return;
		}
		if (k == 0) {
			sb__client_drop(c, SB_EBADFRAME);
			return;
		}
	}
}

void sb__client_read(struct sb_client *c)
{
	uint64_t gen = c->conn_gen;

	for (int i = 0; i < READS_PER_TURN && c->conn_gen == gen; i++) {
		ssize_t n = recv(c->fd, c->in, IN_SIZE, MSG_DONTWAIT);
		if (n > 0) {
			if (c->tls != NULL)
				tls_in(c, c->in, (size_t)n);
			else
				sb__client_feed(c, c->in, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		/* A close after GOODBYE (the router's or ours) is the plan; any
		 * other is news. */
		sb__client_drop(c, n < 0                               ? SB_ESYS
				   : c->st == C_DRAINING || c->leaving ? 0
								       : SB_EOFFLINE);
		return;
	}
}

/* ---- connecting, and reconnecting --------------------------------------- */

/* xorshift64: the jitter needs spread, not secrecy. */
static uint64_t rnd(struct sb_client *c)
{
	uint64_t x = c->rng;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	c->rng = x;
	return x;
}

/* Full jitter: uniform between the minimum and a ceiling that starts at
 * twice the minimum and doubles per failed attempt up to the maximum, so
 * clients cut off by one router restart do not all come back in the same
 * millisecond, not even the first time. */
static uint64_t backoff(struct sb_client *c)
{
	uint64_t lo = c->cfg.reconnect_min_ms, hi = lo;

	for (unsigned i = 0; i <= c->attempt && hi < c->cfg.reconnect_max_ms; i++)
		hi *= 2;
	if (hi > c->cfg.reconnect_max_ms)
		hi = c->cfg.reconnect_max_ms;
	if (c->attempt < 64)
		c->attempt++;
	return lo + rnd(c) % (hi - lo + 1);
}

static int resolve(struct sb_client *c, union addr *a, socklen_t *len)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
	const char *host = c->addrs[c->addr_cur].host;
	uint16_t port = c->addrs[c->addr_cur].port;
	int g;

	memset(a, 0, sizeof *a);
	if (inet_pton(AF_INET, host, &a->v4.sin_addr) == 1) {
		a->v4.sin_family = AF_INET;
		a->v4.sin_port = htons(port);
		*len = sizeof a->v4;
		return 0;
	}
	if (inet_pton(AF_INET6, host, &a->v6.sin6_addr) == 1) {
		a->v6.sin6_family = AF_INET6;
		a->v6.sin6_port = htons(port);
		*len = sizeof a->v6;
		return 0;
	}
	/* A host name: this may block on DNS (docs/client.md says so). */
	if ((g = getaddrinfo(host, NULL, &hints, &res)) != 0) {
		sb__client_say(c, "no such host: %s",
			       g == EAI_SYSTEM ? strerror(errno) : gai_strerror(g));
		return SB_ESYS;
	}
	int rc = SB_ESYS;
	if (res->ai_addrlen <= sizeof *a &&
	    (res->ai_family == AF_INET || res->ai_family == AF_INET6)) {
		memcpy(a, res->ai_addr, res->ai_addrlen);
		*len = res->ai_addrlen;
		if (a->sa.sa_family == AF_INET)
			a->v4.sin_port = htons(port);
		else
			a->v6.sin6_port = htons(port);
		rc = 0;
	} else
		sb__client_say(c, "no such host: no IPv4 or IPv6 address");
	freeaddrinfo(res);
	return rc;
}

/* With nothing listening on a local port, connect() may pick that very port
 * as its source and connect the socket to itself (TCP simultaneous open):
 * we would then wait for our own WELCOME. */
static int connected_to_self(int fd)
{
	union addr self, peer;
	socklen_t a = sizeof self, b = sizeof peer;

	if (getsockname(fd, &self.sa, &a) != 0 || getpeername(fd, &peer.sa, &b) != 0)
		return 0;
	if (self.sa.sa_family == AF_INET && peer.sa.sa_family == AF_INET)
		return self.v4.sin_port == peer.v4.sin_port &&
		       self.v4.sin_addr.s_addr == peer.v4.sin_addr.s_addr;
	if (self.sa.sa_family == AF_INET6 && peer.sa.sa_family == AF_INET6)
		return self.v6.sin6_port == peer.v6.sin6_port &&
		       memcmp(&self.v6.sin6_addr, &peer.v6.sin6_addr, sizeof self.v6.sin6_addr) ==
			       0;
	return 0;
}

int sb__client_hello_token(struct sb_client *c, const char *token)
{
	size_t n = strlen(token), at = 0;
	uint8_t *p = malloc(sizeof HELLO_INFO + 9 + n);

	if (p == NULL)
		return SB_ENOMEM;
	/* {"lib": ..., "token": T}: the info's pair, then the token's. */
	memcpy(p, &HELLO_INFO, sizeof HELLO_INFO);
	p[0] = 0x82;
	at = sizeof HELLO_INFO;
	memcpy(p + at, "\xa5token", 6);
	at += 6;
	if (n < 32)
		p[at++] = (uint8_t)(0xa0 | n);
	else if (n < 256) {
		p[at++] = 0xd9;
		p[at++] = (uint8_t)n;
	} else {
		p[at++] = 0xda;
		p[at++] = (uint8_t)(n >> 8);
		p[at++] = (uint8_t)n;
	}
	memcpy(p + at, token, n);
	c->hello = p;
	c->hello_len = at + n;
	return 0;
}

/* The connection is up (TLS included): say HELLO. */
static void say_hello(struct sb_client *c)
{
	struct sb_msg m = {.kind = SB_HELLO, .version = SB_PROTO_VERSION};
	struct sb_splitter *sp;

	/* A fresh splitter: the last connection may have died mid-frame. */
	if ((sp = sb_splitter_new(0)) == NULL) {
		sb__client_drop(c, SB_ENOMEM);
		return;
	}
	sb_splitter_free(c->sp);
	c->sp = sp;
	c->max_frame = SB_FRAME_MAX_DEFAULT;
	c->challenged = 0;
	/* After a lost connection, the name we had (assigned or not) and the
	 * token that proves it was ours. */
	c->resuming = c->has_resume;
	m.peer = sb__client_view(c->resuming ? c->peer : c->name);
	m.role = sb__client_view(c->role);
	m.payload.ptr = c->hello != NULL ? c->hello : (const uint8_t *)&HELLO_INFO;
	m.payload.len = c->hello != NULL ? c->hello_len : sizeof HELLO_INFO;
	if (c->resuming) {
		m.payload.ptr = c->hello_resume;
		m.payload.len = c->hello_resume_len;
	}
	if (sb__client_queue(c, &m, 1) != 0) {
		sb__client_drop(c, SB_ENOMEM);
		return;
	}
	c->st = C_HELLO;
}

/* The socket is connected: TLS first if configured, then HELLO. */
static void on_connected(struct sb_client *c)
{
	if (connected_to_self(c->fd)) {
		sb__client_say(c,
			       "connection refused (nothing listens there: the socket met itself)");
		sb__client_drop(c, SB_ESYS);
		return;
	}
	if (c->tls_ctx == NULL) {
		say_hello(c);
		return;
	}
	c->tls = sb__tls_new(c->tls_ctx,
			     c->server_name != NULL ? c->server_name : c->addrs[c->addr_cur].host,
			     TLS_PAIR, TLS_PAIR);
	if (c->tls == NULL) {
		sb__client_drop(c, SB_ENOMEM);
		return;
	}
	c->st = C_TLS;
	/* The ClientHello: into the pair now, out with this turn's write. */
	int rc = sb__tls_handshake(c->tls);
	if (rc < 0)
		tls_failed(c, rc);
}

void sb__client_connect(struct sb_client *c)
{
	union addr a;
	socklen_t len;
	int one = 1;

	c->hs_deadline = sb__now_ms() + HANDSHAKE_MS;
	sb__client_routers_next(c);
	if (resolve(c, &a, &len) != 0)
		goto retry;
	c->fd = socket(a.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		say_errno(c, "socket: ", errno);
		goto retry;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	c->conn_gen++;
	if (connect(c->fd, &a.sa, len) == 0) {
		on_connected(c);
		return;
	}
	if (errno == EINPROGRESS) {
		c->st = C_CONNECTING;
		return;
	}
	say_errno(c, "", errno);
retry:
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->st = C_WAIT;
	c->retry_at = sb__now_ms() + backoff(c);
}

void sb__client_connect_done(struct sb_client *c)
{
	int e = 0;
	socklen_t len = sizeof e;

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0 || e != 0) {
		if (e == 0)
			e = errno;
		say_errno(c, "", e);
		errno = e;
		sb__client_drop(c, SB_ESYS);
		return;
	}
	on_connected(c);
}

/* Ends the connection: OFFLINE if we were online, every open request fails
 * once, every call in progress is dropped, and unless we gave up for good
 * a reconnect is scheduled. */
void sb__client_drop(struct sb_client *c, int why)
{
	int was_online = c->online_reported, e = errno;

	if (c->st == C_CONNECTING || c->st == C_TLS || c->st == C_HELLO || c->st == C_REGISTER)
		say_handshake_end(c, why, e);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	sb__tls_free(c->tls);
	c->tls = NULL;
	c->conn_gen++;
	c->out_off = c->out_len = 0;
	c->peer_id = 0;
	c->online_reported = 0;
	for (unsigned i = 0; i < c->nh; i++)
		c->h[i].reg_id = 0;
	c->pres_id = 0;
	sb__client_idents_forget(c); /* the next connection introduces everyone anew */
	/* The splitter stays until the next connection: the frame being
	 * dispatched when this runs may still live in its buffer. */
	if (c->leaving) {
		c->left_err = why;
		if (c->dead_err == 0)
			c->dead_err = SB_EOFFLINE; /* process and run say so from now on */
	}
	if (c->dead_err != 0) {
		c->st = C_DEAD;
		sb__client_offline_clear(c); /* no connection will carry them */
	} else {
		c->st = C_WAIT;
		c->retry_at = sb__now_ms() + backoff(c);
	}
	if (was_online)
		sb__client_report(c, SB_CLIENT_OFFLINE, why);
	sb__client_fail_requests(c, SB_EOFFLINE, "the connection to the router was lost");
	sb__client_kill_calls(c, SB_EOFFLINE);
}

void sb__client_give_up(struct sb_client *c, int err)
{
	c->dead_err = err;
	sb__client_drop(c, err);
}
