/* The Prometheus exposition (metrics.h). Every number is read as $sb.stats
 * reads it: each shard's counters through relaxed atomics (only their
 * shard writes them), the per-route records under the record table's lock,
 * which shards take only when a name appears on or leaves them. A scrape
 * never stops a shard or touches its hot path; it runs on the shard that
 * accepted it, like a $sb.stats request. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <switchboard/error.h>

#include "router/metrics.h"
#include "router/router-t.h"
#include "router/rstat.h"
#include "router/shard.h"
#include "router/stats.h"

#define NLE (SB__METRICS_LE_LAST - SB__METRICS_LE_FIRST + 1)

/* How a stats.h counter is exported: its family's name past
 * "switchboard_", its type, its help. A counter SB__STATS gains without a
 * row here is still exported, as switchboard_<name>_total. */
struct family {
	const char *name;
	int gauge; /* a value now (or a peak), not a count that only grows */
	const char *help;
};

static const struct family shard_families[SB__NSTATS] = {
	[SB__STAT_connections] = {"connections", 1, "Connections open now."},
	[SB__STAT_frames_in] = {"frames_in_total", 0, "Frames received."},
	[SB__STAT_requests] = {"requests_total", 0, "Requests forwarded to a handler."},
	[SB__STAT_replies] = {"replies_total", 0, "Replies delivered to requesters."},
	[SB__STAT_timeouts] = {"timeouts_total", 0, "Requests ended by their timeout."},
	[SB__STAT_late_replies] = {"late_replies_total", 0,
				   "Replies that came after their request ended."},
	[SB__STAT_no_handler] = {"no_handler_total", 0,
				 "Sends and requests nothing could take (no handler, no peer)."},
	[SB__STAT_slow_consumers] = {"slow_consumers_total", 0,
				     "Connections dropped as slow consumers."},
	[SB__STAT_inflight] = {"inflight", 1, "Requests in flight now."},
	[SB__STAT_pauses] = {"pauses_total", 0, "Times a connection's reads were paused."},
	[SB__STAT_queued_peak] = {"queued_peak_bytes", 1,
				  "Largest output queue any connection had, in bytes."},
	[SB__STAT_recv_starved] = {"recv_starved_total", 0,
				   "Receives stopped because every receive buffer was out."},
	[SB__STAT_mail_deferred] = {"mail_deferred_total", 0,
				    "Messages between shards that waited for room in a full ring."},
	[SB__STAT_mail_backlog_peak] = {"mail_backlog_peak", 1,
					"Most messages waiting for one ring between shards."},
	[SB__STAT_refused] = {"refused_total", 0, "Connections refused: max_conns reached."},
	[SB__STAT_hello_timeouts] = {"hello_timeouts_total", 0,
				     "Connections closed for not finishing HELLO in time."},
	[SB__STAT_invalid_args] = {"invalid_args_total", 0,
				   "Sends and requests refused as invalid arguments."},
	[SB__STAT_auth_failures] = {"auth_failures_total", 0, "Handshakes refused unauthorized."},
	[SB__STAT_auth_blocked] = {"auth_blocked_total", 0,
				   "Connections refused: their address failed too often."},
	[SB__STAT_forbidden] = {"forbidden_total", 0,
				"Registrations, sends and requests refused as forbidden."},
	[SB__STAT_addr_refused] = {"addr_refused_total", 0,
				   "Connections refused: max_conns_per_addr reached."},
	[SB__STAT_inflight_refused] = {"inflight_refused_total", 0,
				       "Requests refused as overloaded: too many in flight."},
	[SB__STAT_register_refused] = {"register_refused_total", 0,
				       "Registrations refused: max_registrations reached."},
	[SB__STAT_idle_pings] = {"idle_pings_total", 0, "PINGs sent to silent connections."},
	[SB__STAT_idle_timeouts] = {"idle_timeouts_total", 0,
				    "Connections closed for not answering a PING."},
	[SB__STAT_accept_errors] = {"accept_errors_total", 0,
				    "Accepts that failed (out of descriptors or memory)."},
	[SB__STAT_to_unhandled] =
		{"to_unhandled_total", 0,
		 "Sends and requests to a named peer with no handler for the name."},
	[SB__STAT_moves] = {"moves_total", 0,
			    "Connections moved to the shard of the handlers they call."},
	[SB__STAT_cluster_msgs] = {"cluster_msgs_total", 0,
				   "NATS messages with sends, requests or answers published "
				   "to other routers."},
	[SB__STAT_cluster_frames] = {"cluster_frames_total", 0,
				     "Frames those NATS messages carried."},
	[SB__STAT_cluster_batches] = {"cluster_batches_total", 0,
				      "Those NATS messages that were batches of frames."},
};

static const char *const stat_names[SB__NSTATS] = {
#define NAME(name, how) [SB__STAT_##name] = #name,
	SB__STATS(NAME)
#undef NAME
};

void sb__metrics_label(struct sb__admin_body *b, const char *s, size_t len)
{
	size_t from = 0;

	for (size_t i = 0; i < len; i++) {
		const char *esc = s[i] == '\\'   ? "\\\\"
				  : s[i] == '"'  ? "\\\""
				  : s[i] == '\n' ? "\\n"
						 : NULL;
		if (esc == NULL)
			continue;
		sb__admin_put(b, s + from, i - from);
		sb__admin_put(b, esc, 2);
		from = i + 1;
	}
	sb__admin_put(b, s + from, len - from);
}

static void head(struct sb__admin_body *b, const char *name, const char *type, const char *help)
{
	sb__admin_printf(b, "# HELP switchboard_%s %s\n# TYPE switchboard_%s %s\n", name, help,
			 name, type);
}

/* Microseconds as seconds, exactly: "0.000015", "3.5", "71.582788". */
static void seconds(struct sb__admin_body *b, uint64_t us)
{
	char frac[8];
	int n = 6;

	snprintf(frac, sizeof frac, "%06llu", (unsigned long long)(us % 1000000));
	while (n > 1 && frac[n - 1] == '0')
		n--;
	sb__admin_printf(b, "%llu.%.*s", (unsigned long long)(us / 1000000), n, frac);
}

static uint64_t ld(const _Atomic uint64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

static uint64_t stat_value(const struct sb__stats *st, unsigned k)
{
	switch (k) {
#define VALUE(name, how)                                                                           \
	case SB__STAT_##name:                                                                      \
		return ld(&st->name);
		SB__STATS(VALUE)
#undef VALUE
	}
	return 0;
}

/* Each stats.h counter, one sample per shard: the shards' load side by
 * side, summed by whoever queries them. */
static void shard_counters(struct sb_router *r, struct sb__admin_body *b)
{
	for (unsigned k = 0; k < SB__NSTATS; k++) {
		const struct family *f = &shard_families[k];
		char name[96], help[128];
		int gauge = f->name != NULL && f->gauge;
		if (f->name != NULL)
			snprintf(name, sizeof name, "%s", f->name);
		else
			snprintf(name, sizeof name, "%s_total", stat_names[k]);
		snprintf(help, sizeof help, "%s", f->help != NULL ? f->help : "$sb.stats counter.");
		head(b, name, gauge ? "gauge" : "counter", help);
		for (unsigned i = 0; i < r->nshards; i++) {
			sb__admin_printf(b, "switchboard_%s{shard=\"%u\"} %llu\n", name, i,
					 (unsigned long long)stat_value(&r->shards[i].st, k));
		}
	}
}

/* One route's numbers, summed over shards while the table's lock holds. */
struct route {
	char name[256];
	uint32_t len;
	uint64_t n[5];        /* requests, sends, replies, errors, timeouts */
	uint64_t le[NLE + 1]; /* cumulative counts at each exported top, then all */
	uint64_t sum_us;
};

static void route_load(const struct sb__rstats *t, const struct sb__rstat *s, struct route *out)
{
	uint64_t lat[SB__RSTAT_BUCKETS] = {0};

	memset(out, 0, sizeof *out);
	memcpy(out->name, s->name, s->len);
	out->len = s->len;
	for (unsigned k = 0; k < t->nshards; k++) {
		const struct sb__rstat_shard *p = &s->per[k];
		out->n[0] += ld(&p->requests);
		out->n[1] += ld(&p->sends);
		out->n[2] += ld(&p->replies);
		out->n[3] += ld(&p->errors);
		out->n[4] += ld(&p->timeouts);
		out->sum_us += ld(&p->lat_sum_us);
		for (unsigned i = 0; i < SB__RSTAT_BUCKETS; i++)
			lat[i] += ld(&p->lat[i]);
	}
	/* A bucket's top is 2^k - 1 at the end of each power of two: the
	 * count at or under it is exact, whatever the finer buckets below. */
	uint64_t run = 0;
	unsigned j = 0;
	for (unsigned i = 0; i < SB__RSTAT_BUCKETS; i++) {
		run += lat[i];
		if (j < NLE && sb__rstat_bucket_top(i) == (1ull << (SB__METRICS_LE_FIRST + j)) - 1)
			out->le[j++] = run;
	}
	while (j < NLE) /* not reached: the buckets go to 2^36 us */
		out->le[j++] = run;
	out->le[NLE] = run;
}

/* A snapshot of every route record, copied out under the lock so the
 * writing below holds nobody up. @return the count, or -1 */
static long routes_load(struct sb_router *r, struct route **out)
{
	struct sb__rstats *t = &r->rstats;
	struct sb__rstat **v;

	pthread_mutex_lock(&t->lock);
	long n = sb__rstats_sorted(t, NULL, 0, &v);
	struct route *rs = n > 0 ? malloc((size_t)n * sizeof *rs) : NULL;
	if (n > 0 && rs == NULL) {
		free(v);
		n = -1;
	}
	for (long i = 0; i < n; i++)
		route_load(t, v[i], &rs[i]);
	pthread_mutex_unlock(&t->lock);
	if (n >= 0)
		free(v);
	*out = rs;
	return n;
}

static void route_sample(struct sb__admin_body *b, const char *family, const struct route *rt)
{
	sb__admin_printf(b, "switchboard_%s{route=\"", family);
	sb__metrics_label(b, rt->name, rt->len);
	sb__admin_put(b, "\"", 1);
}

static void route_counters(struct sb__admin_body *b, const struct route *rs, long n)
{
	static const struct {
		const char *name, *help;
	} c[5] = {
		{"route_requests_total", "Requests forwarded to a handler of the route."},
		{"route_sends_total", "Sends delivered to a handler of the route."},
		{"route_replies_total", "Requests of the route ended by a final reply."},
		{"route_errors_total", "Requests of the route ended by an error (the handler's, "
				       "or its handler gone)."},
		{"route_timeouts_total", "Requests of the route ended by their timeout."},
	};
	for (unsigned k = 0; k < 5; k++) {
		head(b, c[k].name, "counter", c[k].help);
		for (long i = 0; i < n; i++) {
			route_sample(b, c[k].name, &rs[i]);
			sb__admin_printf(b, "} %llu\n", (unsigned long long)rs[i].n[k]);
		}
	}
	head(b, "route_latency_seconds", "histogram",
	     "Time from a request's arrival to its final answer, per route.");
	for (long i = 0; i < n; i++) {
		const struct route *rt = &rs[i];
		for (unsigned j = 0; j <= NLE; j++) {
			route_sample(b, "route_latency_seconds_bucket", rt);
			sb__admin_put(b, ",le=\"", 5);
			if (j < NLE)
				seconds(b, (1ull << (SB__METRICS_LE_FIRST + j)) - 1);
			else
				sb__admin_put(b, "+Inf", 4);
			sb__admin_printf(b, "\"} %llu\n", (unsigned long long)rt->le[j]);
		}
		route_sample(b, "route_latency_seconds_sum", rt);
		sb__admin_put(b, "} ", 2);
		seconds(b, rt->sum_us);
		sb__admin_put(b, "\n", 1);
		route_sample(b, "route_latency_seconds_count", rt);
		sb__admin_printf(b, "} %llu\n", (unsigned long long)rt->le[NLE]);
	}
}

void sb__metrics_http(struct sb__shard *sh, const struct sb__http_req *r, struct sb__admin_reply *a)
{
	struct sb_router *rt = sh->r;
	struct sb__admin_body *b = &a->body;
	struct route *rs = NULL;

	(void)r;
	a->content_type = "text/plain; version=0.0.4; charset=utf-8";
	head(b, "shards", "gauge", "Shards (threads) of the router.");
	sb__admin_printf(b, "switchboard_shards %u\n", rt->nshards);
	shard_counters(rt, b);
	long n = routes_load(rt, &rs);
	if (n < 0) {
		b->err = SB_ENOMEM;
		return;
	}
	route_counters(b, rs, n);
	free(rs);
}
