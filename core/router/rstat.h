/* Per-route statistics: counts and a latency histogram per message name,
 * kept per shard so that counting is a plain store by the one thread that
 * owns the slot, and summed only when someone asks ($sb.stats). */
#ifndef SB_CORE_RSTAT_H
#define SB_CORE_RSTAT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "common/list.h"
#include "router/route.h"

/* Latency buckets: 4 per power of two of microseconds (within 12.5%),
 * from 1 us up to 2^36 us (19 hours). */
#define SB__RSTAT_SUB_BITS 2
#define SB__RSTAT_SUB      (1u << SB__RSTAT_SUB_BITS)
#define SB__RSTAT_BUCKETS  (37u * SB__RSTAT_SUB)

/* Names no handler holds whose counts are kept (so they survive a
 * service's restart), oldest forgotten first. */
#define SB__RSTAT_KEEP 256u

/* One shard's counters for one name. Only that shard writes them. */
struct sb__rstat_shard {
	_Atomic uint64_t requests; /* forwarded to a handler */
	_Atomic uint64_t sends;    /* fire-and-forget deliveries */
	_Atomic uint64_t replies;  /* requests ended by a final REPLY */
	_Atomic uint64_t errors;   /* ended by an ERROR: the handler's, or peer gone */
	_Atomic uint64_t timeouts; /* ended by their timeout */
	_Atomic uint64_t lat[SB__RSTAT_BUCKETS]; /* request to final answer, us */
	_Atomic uint64_t lat_sum_us;             /* ...their sum (Prometheus's histogram _sum) */
	uint32_t hold; /* this shard's holders: its route for the name, and its requests
			  counted under it; no other thread reads it */
} __attribute__((aligned(64)));

/* A name's statistics, shared by every shard's route for the name and by
 * the requests that will count into it. */
struct sb__rstat {
	uint32_t len;
	uint32_t refs;               /* shards whose hold is not 0 (under the table's lock) */
	struct sb__link idle;        /* on the table's kept list while refs is 0 */
	char name[256];              /* NUL-terminated; "" is the catch-all */
	struct sb__rstat_shard *per; /* one per shard */
};

struct sb__rstats {
	pthread_mutex_t lock;    /* when a name appears on or leaves a shard, and when read */
	struct sb__routes index; /* name -> one endpoint whose ep is the struct sb__rstat * */
	struct sb__link idle;    /* records no shard holds, kept, oldest first */
	uint32_t nidle;
	unsigned nshards;
};

void sb__rstats_init(struct sb__rstats *t, unsigned nshards);
void sb__rstats_destroy(struct sb__rstats *t);

/** Shard @p shard starts holding the statistics of @p name (a route for it
 *  appeared there): created on first use, or found again (kept counts).
 *  NULL if out of memory (the route then goes uncounted, not unrouted). */
struct sb__rstat *sb__rstat_hold(struct sb__rstats *t, const char *name, uint32_t len,
				 unsigned shard);

/** One more holder on a shard that holds @p s already (a request counted
 *  under it): no lock, no shared write. */
static inline void sb__rstat_take(struct sb__rstat *s, unsigned shard)
{
	s->per[shard].hold++;
}

/** One holder fewer on @p shard; its last gives the shard's reference back,
 *  and a record no shard holds joins the kept list (which forgets its
 *  oldest past SB__RSTAT_KEEP). @p s may be gone once this returns. */
void sb__rstat_drop(struct sb__rstats *t, struct sb__rstat *s, unsigned shard);

/** With the lock held: the records whose names sort (bytewise) after
 *  @p after (NULL: all), sorted by name, in a malloc'd array (free it).
 *  @return their number, or -1 if out of memory */
long sb__rstats_sorted(struct sb__rstats *t, const char *after, uint32_t after_len,
		       struct sb__rstat ***out);

/* A one-writer counter: a plain load and store, no locked instruction. */
static inline void sb__rstat_inc(_Atomic uint64_t *c)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
			      memory_order_relaxed);
}

/** Record a request's latency (microseconds) in shard slot @p s. */
void sb__rstat_latency(struct sb__rstat_shard *s, uint64_t us);

/** The bucket @p us falls in, and the largest latency bucket @p i holds
 *  (a reading "at most this" is exact at a bucket's top). */
unsigned sb__rstat_bucket(uint64_t us);
uint64_t sb__rstat_bucket_top(unsigned i);

/* What a reader gets: counts summed over shards, and percentiles. */
struct sb__rstat_sum {
	uint64_t requests, sends, replies, errors, timeouts;
	uint64_t p50_us, p90_us, p99_us, max_us; /* 0 when no request has ended */
};

void sb__rstat_sum(const struct sb__rstats *t, const struct sb__rstat *s,
		   struct sb__rstat_sum *out);

#endif
