/* Per-route statistics: counts and a latency histogram per message name,
 * kept per shard so that counting is a plain store by the one thread that
 * owns the slot, and summed only when someone asks ($sb.stats). */
#ifndef SB_CORE_RSTAT_H
#define SB_CORE_RSTAT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "router/route.h"

/* Latency buckets: 4 per power of two of microseconds (within 12.5%),
 * from 1 us up to 2^36 us (19 hours). */
#define SB__RSTAT_SUB_BITS 2
#define SB__RSTAT_SUB      (1u << SB__RSTAT_SUB_BITS)
#define SB__RSTAT_BUCKETS  (37u * SB__RSTAT_SUB)

/* One shard's counters for one name. Only that shard writes them. */
struct sb__rstat_shard {
	_Atomic uint64_t requests; /* forwarded to a handler */
	_Atomic uint64_t sends;    /* fire-and-forget deliveries */
	_Atomic uint64_t replies;  /* requests ended by a final REPLY */
	_Atomic uint64_t errors;   /* ended by an ERROR: the handler's, or peer gone */
	_Atomic uint64_t timeouts; /* ended by their timeout */
	_Atomic uint64_t lat[SB__RSTAT_BUCKETS]; /* request to final answer, us */
} __attribute__((aligned(64)));

/* A name's statistics: created at its first registration, kept for the
 * router's life, so counts survive a handler coming and going. */
struct sb__rstat {
	uint32_t len;
	char name[256];              /* NUL-terminated; "" is the catch-all */
	struct sb__rstat_shard *per; /* one per shard */
};

struct sb__rstats {
	pthread_mutex_t lock;    /* only at registration and when read */
	struct sb__routes index; /* name -> one endpoint whose ep is an index in v */
	struct sb__rstat **v;
	uint32_t n, cap;
	unsigned nshards;
};

void sb__rstats_init(struct sb__rstats *t, unsigned nshards);
void sb__rstats_destroy(struct sb__rstats *t);

/** The statistics of @p name, created on first use; NULL if out of memory
 *  (the route then goes uncounted rather than unrouted). */
struct sb__rstat *sb__rstat_intern(struct sb__rstats *t, const char *name, uint32_t len);

/* A one-writer counter: a plain load and store, no locked instruction. */
static inline void sb__rstat_inc(_Atomic uint64_t *c)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
			      memory_order_relaxed);
}

/** Record a request's latency (microseconds) in shard slot @p s. */
void sb__rstat_latency(struct sb__rstat_shard *s, uint64_t us);

/* What a reader gets: counts summed over shards, and percentiles. */
struct sb__rstat_sum {
	uint64_t requests, sends, replies, errors, timeouts;
	uint64_t p50_us, p90_us, p99_us, max_us; /* 0 when no request has ended */
};

void sb__rstat_sum(const struct sb__rstats *t, const struct sb__rstat *s,
		   struct sb__rstat_sum *out);

#endif
