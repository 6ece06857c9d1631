/* The router: create, start, and stop the routing engine in any C program.
 * The switchboard daemon is a thin main() over these calls. */
#ifndef SWITCHBOARD_ROUTER_H
#define SWITCHBOARD_ROUTER_H

#include <stddef.h>
#include <stdint.h>

#include <switchboard/error.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Router settings. Fill with sb_router_config_init(), then change fields. */
struct sb_router_config {
	const char *addr;            /* IPv4 address to listen on; default "127.0.0.1" */
	uint16_t port;               /* TCP port; 0 = any free port; default 7400 */
	unsigned shards;             /* threads; 0 = one per online CPU */
	uint32_t max_frame;          /* largest frame body accepted; default 1 MiB */
	uint32_t default_timeout_ms; /* for requests with timeout 0; default 30,000 */
	uint32_t max_timeout_ms;     /* longer timeouts are cut to this; default 1 h */
	size_t out_max;              /* queued output per connection: a quarter of it pauses
					the handlers streaming to it; past it plus 4 receive
					pools it is dropped as a slow consumer; default 16 MiB */
	uint32_t max_inflight;       /* requests in flight per shard; default 1,048,576 */
	unsigned bind_retries;       /* extra bind attempts when the port is busy; default 0 */
	unsigned bind_retry_ms;      /* delay between them; default 1,000 */
	unsigned recv_buffers;       /* receive buffers per shard (power of two); default 256 */
	unsigned recv_buffer_size;   /* bytes each; default 16 KiB */
	int log_level;               /* 0 errors, 1 + lifecycle, 2 + connections, 3 debug;
					default 1 */
};

/* Counters, summed over shards. */
struct sb_router_stats {
	uint64_t connections;    /* open now */
	uint64_t frames_in;      /* frames received */
	uint64_t requests;       /* requests forwarded */
	uint64_t replies;        /* replies delivered to requesters */
	uint64_t timeouts;       /* requests ended by their timeout */
	uint64_t late_replies;   /* replies that came after their request ended */
	uint64_t no_handler;     /* requests and sends with no handler */
	uint64_t slow_consumers; /* connections dropped over out_max */
	uint64_t inflight;       /* requests in flight now */
	uint64_t pauses;         /* times a handler's reads were paused for a slow requester */
	uint64_t queued_peak;    /* largest output queue any connection had, in bytes */
};

struct sb_router;

/** Fill @p c with the defaults above. */
void sb_router_config_init(struct sb_router_config *c);

/**
 * Create a router: validate the config and bind every shard's listening
 * socket (SO_REUSEPORT), retrying a busy port as configured.
 * @param err  set to the reason on failure: SB_EINVAL (bad config) or
 *             SB_ESYS (errno says why: EADDRINUSE after the retries, ...)
 * @return the router, not yet running, or NULL
 */
struct sb_router *sb_router_new(const struct sb_router_config *c, int *err);

/**
 * Start the shard threads. Returns once every shard is serving.
 * @return 0, or SB_ESYS / SB_ENOMEM if a shard could not start (io_uring
 *         refused, for example); the router is then stopped
 */
int sb_router_start(struct sb_router *r);

/** The TCP port the router listens on (useful with port 0). */
uint16_t sb_router_port(const struct sb_router *r);

/** The number of shards. */
unsigned sb_router_shards(const struct sb_router *r);

/** Counters, summed over shards; safe from any thread while running. */
void sb_router_stats(const struct sb_router *r, struct sb_router_stats *s);

/**
 * Stop: close the listeners, tell every peer GOODBYE, let requests in
 * flight finish for up to @p drain_ms, then close every connection and
 * join the shard threads. Requests still open at the deadline end with
 * "router draining" for their requesters.
 */
void sb_router_stop(struct sb_router *r, unsigned drain_ms);

/** Free a stopped (or never started) router. */
void sb_router_free(struct sb_router *r);

#ifdef __cplusplus
}
#endif
#endif
