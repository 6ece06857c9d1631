/* sb-bench's output: one run in detail, targets side by side (a Markdown
 * table, so it can go into docs as printed), JSON with every figure, and an
 * HTML page with inline SVG plots that needs nothing from the network. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench.h"

struct sbb_result *sbb_campaign_at(const struct sbb_campaign *c, unsigned w, unsigned rep,
				   unsigned t)
{
	return &c->res[((size_t)w * c->reps + rep) * c->ntarget + t];
}

/* ---- figures of one run ------------------------------------------------- */

static double rate_of(const struct sbb_result *r)
{
	return r->secs > 0 ? (double)r->done / r->secs : 0;
}

static double pct_us(const struct sbb_result *r, double q)
{
	return r->hist ? (double)sbb_hist_quantile(r->hist, q) / 1e3 : NAN;
}

/* CPU-seconds per million requests of the processes in role @p role
 * together (a cluster target's two routers, its two servers), NAN if none. */
static double cpu_per_m(const struct sbb_result *r, const char *role)
{
	double cpu = 0;
	int any = 0;
	for (unsigned i = 0; i < r->nprocs; i++)
		if (strcmp(r->proc[i].role, role) == 0 && r->proc[i].cpu >= 0 && r->done > 0) {
			cpu += r->proc[i].cpu;
			any = 1;
		}
	return any ? cpu / ((double)r->done / 1e6) : NAN;
}

/* The same for one process. */
static double proc_per_m(const struct sbb_result *r, const struct sbb_proc *p)
{
	return p->cpu >= 0 && r->done > 0 ? p->cpu / ((double)r->done / 1e6) : NAN;
}

static double rss_of(const struct sbb_result *r, const char *role)
{
	double rss = 0;
	int any = 0;
	for (unsigned i = 0; i < r->nprocs; i++)
		if (strcmp(r->proc[i].role, role) == 0) {
			rss += r->proc[i].rss_mib;
			any = 1;
		}
	return any ? rss : NAN;
}

/* The server process a target runs on, whose CPU the targets are about. */
static const char *server_role(const struct sbb_target *t)
{
	return t->kind == SBB_T_SWITCHBOARD || t->kind == SBB_T_WS || t->kind == SBB_T_XSB
		       ? "switchboard"
	       : t->kind == SBB_T_NATS || t->kind == SBB_T_XNATS ? "nats-server"
								 : NULL;
}

/* Thousands separators: rates are read at a glance or not at all. */
static const char *num(char *buf, size_t cap, double v)
{
	char raw[48];
	if (isnan(v))
		return snprintf(buf, cap, "-"), buf;
	if (v < 100 && v != floor(v))
		return snprintf(buf, cap, v < 10 ? "%.2f" : "%.1f", v), buf;
	int n = snprintf(raw, sizeof raw, "%.0f", v), lead = n % 3 ? n % 3 : 3;
	size_t o = 0;
	for (int i = 0; i < n && o + 2 < cap; i++) {
		if (i >= lead && (i - lead) % 3 == 0 && raw[i - 1] != '-')
			buf[o++] = ',';
		buf[o++] = raw[i];
	}
	buf[o] = 0;
	return buf;
}

void sbb_report_run(FILE *f, const struct sbb_result *r)
{
	char desc[160], a[48], b[48];
	sbb_workload_describe(&r->work, desc, sizeof desc);
	fprintf(f, "%s on %s: %s\n", r->work.name, r->target.spec, desc);
	if (r->status != SBB_OK) {
		fprintf(f, "  %s: %s\n\n", r->status == SBB_SKIPPED ? "skipped" : "FAILED",
			r->note);
		return;
	}
	fprintf(f, "  window       %.1f s after %.1f s of warm-up\n", r->secs, r->work.warmup);
	fprintf(f, "  throughput   %s %s", num(a, sizeof a, rate_of(r)),
		sbb_workload_unit(&r->work));
	if (r->work.shape == SBB_STREAM)
		fprintf(f, ", %s MB/s of chunks", num(b, sizeof b, r->bytes / r->secs / 1e6));
	fprintf(f, "\n");
	if (r->hist)
		fprintf(f,
			"  latency      p50 %.0f us  p90 %.0f us  p99 %.0f us  p99.9 %.0f us  "
			"max %.0f us  (mean %.0f us)\n",
			pct_us(r, 0.5), pct_us(r, 0.9), pct_us(r, 0.99), pct_us(r, 0.999),
			pct_us(r, 1), sbb_hist_mean(r->hist) / 1e3);
	fprintf(f, "  per second  ");
	for (unsigned i = 0; i < r->nsec; i++)
		fprintf(f, " %s", num(a, sizeof a, r->sec[i].rate));
	fprintf(f, " %s\n", sbb_workload_unit(&r->work));
	if (r->hist) {
		fprintf(f, "  p99 per s   ");
		for (unsigned i = 0; i < r->nsec; i++)
			fprintf(f, " %.0f", (double)r->sec[i].p99 / 1e3);
		fprintf(f, " us\n");
	}
	fprintf(f, "  %-14s %16s %8s %12s\n", "process", "CPU-s per M", "cores", "peak RSS");
	for (unsigned i = 0; i < r->nprocs; i++) {
		const struct sbb_proc *p = &r->proc[i];
		fprintf(f, "  %-14s %16.2f %8.2f %8.1f MiB\n", p->role, proc_per_m(r, p),
			p->cpu / r->secs, p->rss_mib);
		if (p->nthreads > 1 && p->cpu > 0) {
			fprintf(f, "    its threads' share of its CPU:");
			for (unsigned t = 0; t < p->nthreads; t++)
				fprintf(f, " %.0f%%", 100 * p->tcpu[t] / p->cpu);
			fprintf(f, "\n");
		}
	}
	fprintf(f, "\n");
}

/* ---- side by side ------------------------------------------------------- */

/* One figure over the repetitions of one workload on one target. */
struct spread {
	double med, min, max;
	unsigned n; /* repetitions that produced it */
};

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static struct spread spread_of(const struct sbb_campaign *c, unsigned w, unsigned t,
			       double (*fig)(const struct sbb_result *, const void *),
			       const void *arg)
{
	double v[64];
	struct spread s = {NAN, NAN, NAN, 0};
	for (unsigned rep = 0; rep < c->reps && s.n < 64; rep++) {
		const struct sbb_result *r = sbb_campaign_at(c, w, rep, t);
		if (r->status != SBB_OK)
			continue;
		double x = fig(r, arg);
		if (!isnan(x))
			v[s.n++] = x;
	}
	if (s.n == 0)
		return s;
	qsort(v, s.n, sizeof v[0], cmp_double);
	s.min = v[0];
	s.max = v[s.n - 1];
	s.med = s.n % 2 ? v[s.n / 2] : (v[s.n / 2 - 1] + v[s.n / 2]) / 2;
	return s;
}

static double fig_rate(const struct sbb_result *r, const void *arg)
{
	(void)arg;
	return rate_of(r);
}

static double fig_mbps(const struct sbb_result *r, const void *arg)
{
	(void)arg;
	return r->bytes / r->secs / 1e6;
}

static double fig_pct(const struct sbb_result *r, const void *arg)
{
	return pct_us(r, *(const double *)arg);
}

static double fig_cpu(const struct sbb_result *r, const void *arg)
{
	const char *role = arg;
	if (strcmp(role, "server") == 0) {
		role = server_role(&r->target);
		if (role == NULL)
			return NAN;
	}
	return cpu_per_m(r, role);
}

static double fig_rss(const struct sbb_result *r, const void *arg)
{
	(void)arg;
	const char *role = server_role(&r->target);
	return role ? rss_of(r, role) : NAN;
}

static void put_spread(FILE *f, struct spread s)
{
	char a[48], b[48], c[48];
	if (s.n == 0)
		fprintf(f, " - |");
	else if (s.n == 1)
		fprintf(f, " %s |", num(a, sizeof a, s.med));
	else
		fprintf(f, " %s (%s–%s) |", num(a, sizeof a, s.med), num(b, sizeof b, s.min),
			num(c, sizeof c, s.max));
}

/* BENCH.md's targets. First the router's own cost per message (its CPU,
 * or for conn-10k its memory), the figure a shared 2-core machine does not
 * bend; then ratios of the router to a peer measured in one run. */
struct limit {
	const char *workload;
	const char *figure; /* "CPU" (CPU-s per million) or "RSS" (peak MiB) */
	double max;
};

static const struct limit limits[] = {
	{"rr-64", "CPU", 0.5},    {"rr-1k", "CPU", 0.8},   {"fire-64", "CPU", 0.12},
	{"stream-4k", "CPU", 15}, {"conn-10k", "RSS", 40},
};

struct goal {
	const char *workload;
	enum sbb_target_kind mine; /* the router (one), or routers across a cluster */
	enum sbb_target_kind peer;
	const char *figure; /* "req/s", "p50", "p99" */
	double ratio;       /* router / peer must be >= (req/s) or <= (latency) this */
};

static const struct goal goals[] = {
	{"rr-64", SBB_T_SWITCHBOARD, SBB_T_NATS, "req/s", 3},
	{"rr-64", SBB_T_SWITCHBOARD, SBB_T_DIRECT, "req/s", 0.45},
	{"rr-1k", SBB_T_SWITCHBOARD, SBB_T_NATS, "req/s", 5},
	{"rr-1k", SBB_T_SWITCHBOARD, SBB_T_DIRECT, "req/s", 0.50},
	{"lat-64", SBB_T_SWITCHBOARD, SBB_T_NATS, "p50", 0.6},
	{"lat-64", SBB_T_SWITCHBOARD, SBB_T_NATS, "p99", 0.6},
	{"lat-64", SBB_T_SWITCHBOARD, SBB_T_DIRECT, "p50", 2},
	{"fire-64", SBB_T_SWITCHBOARD, SBB_T_NATS, "req/s", 3},
	{"stream-4k", SBB_T_SWITCHBOARD, SBB_T_NATS, "req/s", 5},
	{"stream-4k", SBB_T_SWITCHBOARD, SBB_T_DIRECT, "req/s", 0.60},
	{"fan-64", SBB_T_SWITCHBOARD, SBB_T_NATS, "req/s", 4},
	/* the WebSocket edge against the same router over TCP */
	{"rr-64", SBB_T_WS, SBB_T_SWITCHBOARD, "req/s", 0.8},
	/* across routers: against plain NATS through the same two servers */
	{"rr-64", SBB_T_XSB, SBB_T_XNATS, "req/s", 1},
	{"lat-64", SBB_T_XSB, SBB_T_XNATS, "p50", 1.3},
};

static double median_of(const struct sbb_campaign *c, unsigned w, unsigned t, const char *fig)
{
	static const double p50 = 0.5, p99 = 0.99;
	if (strcmp(fig, "p50") == 0)
		return spread_of(c, w, t, fig_pct, &p50).med;
	if (strcmp(fig, "p99") == 0)
		return spread_of(c, w, t, fig_pct, &p99).med;
	return spread_of(c, w, t, fig_rate, NULL).med;
}

static int find_target(const struct sbb_campaign *c, enum sbb_target_kind k)
{
	for (unsigned t = 0; t < c->ntarget; t++)
		if (c->target[t].kind == k)
			return (int)t;
	return -1;
}

/* The router's own cost against its limit: CPU from the one router
 * (switchboard) only, where the harness started it and so can read it. */
static int report_limits(FILE *f, const struct sbb_campaign *c, unsigned w)
{
	int sb = find_target(c, SBB_T_SWITCHBOARD), printed = 0;
	for (size_t i = 0; sb >= 0 && i < sizeof limits / sizeof limits[0]; i++) {
		const struct limit *l = &limits[i];
		if (strcmp(l->workload, c->work[w].name) != 0)
			continue;
		int cpu = strcmp(l->figure, "CPU") == 0;
		double v = cpu ? spread_of(c, w, (unsigned)sb, fig_cpu, "switchboard").med
			       : spread_of(c, w, (unsigned)sb, fig_rss, NULL).med;
		if (isnan(v))
			continue;
		fprintf(f, "%s router %.3g %s (goal <= %g) %s", printed ? ";" : "BENCH.md:", v,
			cpu ? "CPU-s per M" : "MiB peak RSS", l->max,
			v <= l->max ? "met" : "not met");
		printed = 1;
	}
	return printed;
}

static void report_goals(FILE *f, const struct sbb_campaign *c, unsigned w)
{
	int printed = report_limits(f, c, w);
	for (size_t i = 0; i < sizeof goals / sizeof goals[0]; i++) {
		const struct goal *g = &goals[i];
		int peer = find_target(c, g->peer), mine_t = find_target(c, g->mine);
		if (strcmp(g->workload, c->work[w].name) != 0 || peer < 0 || mine_t < 0)
			continue;
		double mine = median_of(c, w, (unsigned)mine_t, g->figure);
		double theirs = median_of(c, w, (unsigned)peer, g->figure);
		if (isnan(mine) || isnan(theirs))
			continue; /* skipped or failed: nothing to compare */
		int higher = strcmp(g->figure, "req/s") == 0;
		fprintf(f, "%s %s/%s %s %.2fx (goal %s %.2fx)",
			printed ? ";" : "BENCH.md:", c->target[mine_t].label, c->target[peer].label,
			g->figure, mine / theirs, higher ? ">=" : "<=", g->ratio);
		if (!isnan(mine / theirs))
			fprintf(f, " %s",
				(higher ? mine / theirs >= g->ratio : mine / theirs <= g->ratio)
					? "met"
					: "not met");
		printed = 1;
	}
	if (printed)
		fprintf(f, ".\n\n");
}

void sbb_report_compare(FILE *f, const struct sbb_campaign *c)
{
	static const double p50 = 0.5, p99 = 0.99, p999 = 0.999;
	for (unsigned w = 0; w < c->nwork; w++) {
		const struct sbb_workload *wk = &c->work[w];
		char desc[160];
		sbb_workload_describe(wk, desc, sizeof desc);
		fprintf(f, "### %s: %s\n\n", wk->name, desc);
		fprintf(f,
			"%u rep%s of %g s warm-up + %g s measured, interleaved; "
			"median (min–max). CPU-s/M: CPU-seconds per million %s.\n\n",
			c->reps, c->reps > 1 ? "s" : "", wk->warmup, wk->duration,
			wk->shape == SBB_FIRE ? "messages" : "requests");
		int lat = wk->shape != SBB_FIRE, stream = wk->shape == SBB_STREAM;
		/* With routers across a cluster, the routers' CPU and the NATS
		 * servers' are told apart (either may be absent: "-"). */
		int xc = find_target(c, SBB_T_XSB) >= 0 || find_target(c, SBB_T_XNATS) >= 0;
		fprintf(f,
			"| target | %s | x %s |%s%s %s | responder CPU-s/M | "
			"sb-bench CPU-s/M | server peak RSS MiB |\n",
			sbb_workload_unit(wk), c->target[0].label,
			stream ? " MB/s of chunks |" : "",
			lat ? " p50 µs | p99 µs | p99.9 µs |" : "",
			xc ? "routers CPU-s/M | nats-servers CPU-s/M" : "server CPU-s/M");
		fprintf(f, "|---|---|---|%s%s%s---|---|---|---|\n", stream ? "---|" : "",
			lat ? "---|---|---|" : "", xc ? "---|" : "");
		double first = spread_of(c, w, 0, fig_rate, NULL).med;
		for (unsigned t = 0; t < c->ntarget; t++) {
			const struct sbb_result *r0 = sbb_campaign_at(c, w, 0, t);
			fprintf(f, "| %s |", c->target[t].label);
			struct spread rate = spread_of(c, w, t, fig_rate, NULL);
			if (rate.n == 0) {
				fprintf(f, " %s: %s |\n",
					r0->status == SBB_SKIPPED ? "skipped" : "failed", r0->note);
				continue;
			}
			put_spread(f, rate);
			if (isnan(first))
				fprintf(f, " - |");
			else
				fprintf(f, " %.2f |", rate.med / first);
			if (stream)
				put_spread(f, spread_of(c, w, t, fig_mbps, NULL));
			if (lat) {
				put_spread(f, spread_of(c, w, t, fig_pct, &p50));
				put_spread(f, spread_of(c, w, t, fig_pct, &p99));
				put_spread(f, spread_of(c, w, t, fig_pct, &p999));
			}
			if (xc) {
				put_spread(f, spread_of(c, w, t, fig_cpu, "switchboard"));
				put_spread(f, spread_of(c, w, t, fig_cpu, "nats-server"));
			} else {
				put_spread(f, spread_of(c, w, t, fig_cpu, "server"));
			}
			put_spread(f, spread_of(c, w, t, fig_cpu, "responder"));
			put_spread(f, spread_of(c, w, t, fig_cpu, "sb-bench"));
			put_spread(f, spread_of(c, w, t, fig_rss, NULL));
			fprintf(f, "\n");
		}
		fprintf(f, "\n");
		for (unsigned rep = 0; rep < c->reps; rep++)
			for (unsigned t = 0; t < c->ntarget; t++) {
				const struct sbb_result *r = sbb_campaign_at(c, w, rep, t);
				if (r->status == SBB_FAILED)
					fprintf(f, "Failed: %s rep %u: %s.\n", c->target[t].label,
						rep + 1, r->note);
			}
		report_goals(f, c, w);
	}
}

/* ---- JSON --------------------------------------------------------------- */

static void jstr(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fprintf(f, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			fprintf(f, "\\u%04x", *s);
		else
			fputc(*s, f);
	}
	fputc('"', f);
}

/* JSON has no NaN: an absent figure is null. */
static void jnum(FILE *f, double v)
{
	if (isnan(v) || isinf(v))
		fprintf(f, "null");
	else
		fprintf(f, "%.6g", v);
}

static const char *shape_name(enum sbb_shape s)
{
	static const char *const n[] = {"request-reply", "fire-and-forget", "stream", "fan"};
	return n[s];
}

static void json_workload(FILE *f, const struct sbb_workload *w)
{
	fprintf(f, "{\"name\": ");
	jstr(f, w->name);
	fprintf(f,
		", \"shape\": \"%s\", \"conns\": %u, \"window\": %u, \"size_min\": %zu, "
		"\"size_max\": %zu, \"chunks\": %u, \"chunk_size\": %zu, \"fan\": %u, "
		"\"rate\": %g, \"warmup_s\": %g, \"duration_s\": %g}",
		shape_name(w->shape), w->conns, w->window, w->size_min, w->size_max,
		w->shape == SBB_STREAM ? w->chunks : 0, w->shape == SBB_STREAM ? w->chunk_size : 0,
		w->shape == SBB_FAN ? w->fan : 0, w->rate, w->warmup, w->duration);
}

static void json_run(FILE *f, const struct sbb_result *r)
{
	static const char *const status[] = {"ok", "skipped", "failed"};
	fprintf(f, "    {\"workload\": ");
	jstr(f, r->work.name);
	fprintf(f, ", \"target\": ");
	jstr(f, r->target.spec);
	fprintf(f, ", \"rep\": %u, \"status\": \"%s\", \"note\": ", r->rep + 1, status[r->status]);
	jstr(f, r->note);
	if (r->status != SBB_OK) {
		fprintf(f, "}");
		return;
	}
	fprintf(f, ",\n     \"seconds\": %.4f, \"completed\": %llu, \"rate\": ", r->secs,
		(unsigned long long)r->done);
	jnum(f, rate_of(r));
	fprintf(f, ", \"unit\": \"%s\", \"chunk_bytes_per_s\": ", sbb_workload_unit(&r->work));
	jnum(f, r->bytes / r->secs);
	if (r->hist) {
		static const double qs[] = {0.5, 0.9, 0.99, 0.999, 1};
		static const char *const qn[] = {"p50", "p90", "p99", "p99_9", "max"};
		fprintf(f, ",\n     \"latency_us\": {");
		for (size_t i = 0; i < 5; i++) {
			fprintf(f, "\"%s\": ", qn[i]);
			jnum(f, pct_us(r, qs[i]));
			fprintf(f, ", ");
		}
		fprintf(f, "\"min\": ");
		jnum(f, (double)r->hist->min / 1e3);
		fprintf(f, ", \"mean\": ");
		jnum(f, sbb_hist_mean(r->hist) / 1e3);
		fprintf(f, "}");
	}
	fprintf(f, ",\n     \"per_second\": [");
	for (unsigned i = 0; i < r->nsec; i++) {
		fprintf(f, "%s{\"rate\": ", i ? ", " : "");
		jnum(f, r->sec[i].rate);
		if (r->hist)
			fprintf(f, ", \"p50_us\": %.1f, \"p99_us\": %.1f",
				(double)r->sec[i].p50 / 1e3, (double)r->sec[i].p99 / 1e3);
		fprintf(f, "}");
	}
	fprintf(f, "],\n     \"processes\": [");
	for (unsigned i = 0; i < r->nprocs; i++) {
		const struct sbb_proc *p = &r->proc[i];
		fprintf(f, "%s{\"role\": \"%s\", \"pid\": %d, \"cpu_s\": ", i ? ", " : "", p->role,
			(int)p->pid);
		jnum(f, p->cpu);
		fprintf(f, ", \"cpu_s_per_million\": ");
		jnum(f, proc_per_m(r, p));
		fprintf(f, ", \"cores\": ");
		jnum(f, p->cpu / r->secs);
		fprintf(f, ", \"peak_rss_mib\": ");
		jnum(f, p->rss_mib);
		if (p->nthreads > 0) {
			fprintf(f, ", \"thread_cpu_s\": [");
			for (unsigned t = 0; t < p->nthreads; t++) {
				fprintf(f, "%s", t ? ", " : "");
				jnum(f, p->tcpu[t]);
			}
			fprintf(f, "]");
		}
		fprintf(f, "}");
	}
	fprintf(f, "]}");
}

static void json_spread(FILE *f, const char *name, struct spread s)
{
	fprintf(f, "\"%s\": {\"median\": ", name);
	jnum(f, s.med);
	fprintf(f, ", \"min\": ");
	jnum(f, s.min);
	fprintf(f, ", \"max\": ");
	jnum(f, s.max);
	fprintf(f, ", \"reps\": %u}", s.n);
}

void sbb_report_json(FILE *f, const struct sbb_campaign *c)
{
	static const double p50 = 0.5, p99 = 0.99, p999 = 0.999;
	fprintf(f, "{\n  \"command\": ");
	jstr(f, c->command);
	fprintf(f, ",\n  \"router\": ");
	jstr(f, c->router);
	fprintf(f, ", \"router_shards\": ");
	jstr(f, c->shards[0] ? c->shards : "default");
	fprintf(f, ", \"nats_server\": ");
	jstr(f, c->nats);
	fprintf(f, ",\n  \"reps\": %u,\n  \"workloads\": [", c->reps);
	for (unsigned w = 0; w < c->nwork; w++) {
		fprintf(f, "%s\n    ", w ? "," : "");
		json_workload(f, &c->work[w]);
	}
	fprintf(f, "],\n  \"targets\": [");
	for (unsigned t = 0; t < c->ntarget; t++) {
		fprintf(f, "%s", t ? ", " : "");
		jstr(f, c->target[t].spec);
	}
	fprintf(f, "],\n  \"runs\": [\n");
	size_t n = (size_t)c->nwork * c->reps * c->ntarget;
	for (size_t i = 0; i < n; i++) {
		json_run(f, &c->res[i]);
		fprintf(f, "%s\n", i + 1 < n ? "," : "");
	}
	fprintf(f, "  ],\n  \"summary\": [\n");
	for (unsigned w = 0; w < c->nwork; w++)
		for (unsigned t = 0; t < c->ntarget; t++) {
			double first = spread_of(c, w, 0, fig_rate, NULL).med;
			struct spread rate = spread_of(c, w, t, fig_rate, NULL);
			fprintf(f, "    {\"workload\": ");
			jstr(f, c->work[w].name);
			fprintf(f, ", \"target\": ");
			jstr(f, c->target[t].spec);
			fprintf(f, ", ");
			json_spread(f, "rate", rate);
			fprintf(f, ", \"rate_vs_first\": ");
			jnum(f, rate.med / first);
			fprintf(f, ",\n     ");
			json_spread(f, "p50_us", spread_of(c, w, t, fig_pct, &p50));
			fprintf(f, ", ");
			json_spread(f, "p99_us", spread_of(c, w, t, fig_pct, &p99));
			fprintf(f, ", ");
			json_spread(f, "p99_9_us", spread_of(c, w, t, fig_pct, &p999));
			fprintf(f, ",\n     ");
			json_spread(f, "server_cpu_s_per_million",
				    spread_of(c, w, t, fig_cpu, "server"));
			fprintf(f, ", ");
			json_spread(f, "responder_cpu_s_per_million",
				    spread_of(c, w, t, fig_cpu, "responder"));
			fprintf(f, ", ");
			json_spread(f, "sb_bench_cpu_s_per_million",
				    spread_of(c, w, t, fig_cpu, "sb-bench"));
			fprintf(f, ", ");
			json_spread(f, "server_peak_rss_mib", spread_of(c, w, t, fig_rss, NULL));
			fprintf(f, "}%s\n", w + 1 < c->nwork || t + 1 < c->ntarget ? "," : "");
		}
	fprintf(f, "  ]\n}\n");
}

/* ---- HTML with inline SVG ----------------------------------------------- */

#define PLOT_W 560
#define PLOT_H 300
#define PLOT_L 70 /* room for the y labels */
#define PLOT_B 40 /* room for the x labels */

static const char *const colours[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd",
				      "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f"};

struct series {
	const char *label;
	unsigned n;
	double x[64], y[64];
};

/* A line plot. Latencies of different targets differ by 10x and more, so
 * their axis is logarithmic (@p logy); @p xtick labels integer x positions
 * (NULL: plain numbers). */
static void svg_plot(FILE *f, const char *title, const char *ylabel, const struct series *s,
		     unsigned ns, int logy, const char *const *xtick, unsigned nxtick)
{
	double xmax = 1, ymin = INFINITY, ymax = 0;
	for (unsigned i = 0; i < ns; i++)
		for (unsigned k = 0; k < s[i].n; k++) {
			if (s[i].x[k] > xmax)
				xmax = s[i].x[k];
			if (s[i].y[k] > ymax)
				ymax = s[i].y[k];
			if (s[i].y[k] > 0 && s[i].y[k] < ymin)
				ymin = s[i].y[k];
		}
	if (ymax <= 0)
		ymax = 1;
	/* y axis from lo to hi, in log10 units when logy */
	double lo = 0, hi = ymax;
	int grid = 4;
	if (logy) {
		lo = floor(log10(isinf(ymin) ? 1 : ymin));
		hi = ceil(log10(ymax));
		if (hi <= lo)
			hi = lo + 1;
		grid = (int)(hi - lo);
	}
	double pw = PLOT_W - PLOT_L - 10, ph = PLOT_H - PLOT_B - 30;
	fprintf(f,
		"<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' "
		"font-family='sans-serif' font-size='11'>\n",
		PLOT_W, PLOT_H);
	fprintf(f, "<text x='%d' y='16' font-size='13'>%s</text>\n", PLOT_L, title);
	fprintf(f, "<text x='12' y='%d' transform='rotate(-90 12 %d)'>%s</text>\n", PLOT_H / 2 + 20,
		PLOT_H / 2 + 20, ylabel);
	for (int g = 0; g <= grid; g++) {
		double y = 30 + ph - ph * g / grid, v = lo + (hi - lo) * g / grid;
		char lab[48];
		fprintf(f,
			"<line x1='%d' x2='%.0f' y1='%.1f' y2='%.1f' stroke='#ddd'/>"
			"<text x='%d' y='%.1f' text-anchor='end'>%s</text>\n",
			PLOT_L, PLOT_L + pw, y, y, PLOT_L - 4, y + 4,
			num(lab, sizeof lab, logy ? pow(10, v) : v));
	}
	unsigned nt = xtick ? nxtick : (unsigned)xmax + 1;
	for (unsigned k = 0; k < nt; k++) {
		double x = PLOT_L + pw * k / xmax;
		if (xtick)
			fprintf(f, "<text x='%.1f' y='%d' text-anchor='middle'>%s</text>\n", x,
				PLOT_H - PLOT_B + 16, xtick[k]);
		else if (nt < 20 || k % 5 == 0)
			fprintf(f, "<text x='%.1f' y='%d' text-anchor='middle'>%u s</text>\n", x,
				PLOT_H - PLOT_B + 16, k);
	}
	for (unsigned i = 0; i < ns; i++) {
		fprintf(f, "<polyline fill='none' stroke-width='2' stroke='%s' points='",
			colours[i % 8]);
		for (unsigned k = 0; k < s[i].n; k++) {
			double y = s[i].y[k];
			if (logy)
				y = y > 0 ? log10(y) : lo;
			fprintf(f, "%.1f,%.1f ", PLOT_L + pw * s[i].x[k] / xmax,
				30 + ph - ph * (y - lo) / (hi - lo));
		}
		fprintf(f, "'/>\n<text x='%.0f' y='%d' fill='%s'>%s</text>\n",
			PLOT_L + 10 + 120.0 * i, PLOT_H - 6, colours[i % 8], s[i].label);
	}
	fprintf(f, "</svg>\n");
}

/* The repetition whose throughput is the median stands for its target. */
static const struct sbb_result *median_run(const struct sbb_campaign *c, unsigned w, unsigned t)
{
	double med = spread_of(c, w, t, fig_rate, NULL).med;
	const struct sbb_result *best = NULL;
	for (unsigned rep = 0; rep < c->reps; rep++) {
		const struct sbb_result *r = sbb_campaign_at(c, w, rep, t);
		if (r->status == SBB_OK &&
		    (best == NULL || fabs(rate_of(r) - med) < fabs(rate_of(best) - med)))
			best = r;
	}
	return best;
}

static void html_workload(FILE *f, const struct sbb_campaign *c, unsigned w)
{
	static const char *const nines[] = {"0%", "90%", "99%", "99.9%", "99.99%"};
	struct series s[8];
	unsigned ns = 0;
	/* Percentile curve: x is the number of nines, -log10(1 - q). */
	for (unsigned t = 0; t < c->ntarget && ns < 8; t++) {
		const struct sbb_result *r = median_run(c, w, t);
		if (r == NULL || r->hist == NULL)
			continue;
		s[ns].label = c->target[t].label;
		s[ns].n = 41;
		for (unsigned k = 0; k <= 40; k++) {
			double x = 4.0 * k / 40, q = 1 - pow(10, -x);
			s[ns].x[k] = x;
			s[ns].y[k] = (double)sbb_hist_quantile(r->hist, q) / 1e3;
		}
		ns++;
	}
	if (ns)
		svg_plot(f, "latency by percentile (median run)", "latency, µs", s, ns, 1, nines,
			 5);
	ns = 0;
	for (unsigned t = 0; t < c->ntarget && ns < 8; t++) {
		const struct sbb_result *r = median_run(c, w, t);
		if (r == NULL)
			continue;
		s[ns].label = c->target[t].label;
		s[ns].n = r->nsec < 64 ? r->nsec : 64;
		for (unsigned k = 0; k < s[ns].n; k++) {
			s[ns].x[k] = k + 1;
			s[ns].y[k] = r->sec[k].rate;
		}
		ns++;
	}
	if (ns)
		svg_plot(f, "throughput per second (median run)", sbb_workload_unit(&c->work[w]), s,
			 ns, 0, NULL, 0);
}

/* The Markdown table, turned into HTML rows: one table code path to trust. */
static void html_table(FILE *f, const char *md)
{
	int in_table = 0;
	for (const char *line = md; *line;) {
		const char *end = strchr(line, '\n');
		size_t len = end ? (size_t)(end - line) : strlen(line);
		if (len > 0 && line[0] == '|') {
			if (strncmp(line, "|---", 4) != 0) {
				fprintf(f, "%s<tr>", in_table ? "" : "<table>\n");
				in_table = 1;
				const char *cell = line + 1;
				while (cell < line + len) {
					const char *bar =
						memchr(cell, '|', (size_t)(line + len - cell));
					if (bar == NULL)
						break;
					fprintf(f, "<td>%.*s</td>", (int)(bar - cell), cell);
					cell = bar + 1;
				}
				fprintf(f, "</tr>\n");
			}
		} else {
			if (in_table)
				fprintf(f, "</table>\n");
			in_table = 0;
			if (len > 4 && strncmp(line, "### ", 4) == 0)
				fprintf(f, "<h2>%.*s</h2>\n", (int)len - 4, line + 4);
			else if (len > 0)
				fprintf(f, "<p>%.*s</p>\n", (int)len, line);
		}
		line += len + (end != NULL);
	}
	if (in_table)
		fprintf(f, "</table>\n");
}

int sbb_report_html(const char *dir, const struct sbb_campaign *c)
{
	char path[4096];
	if (mkdir(dir, 0755) != 0 && errno != EEXIST)
		return -1;
	snprintf(path, sizeof path, "%s/results.json", dir);
	FILE *j = fopen(path, "w");
	if (j == NULL)
		return -1;
	sbb_report_json(j, c);
	fclose(j);
	snprintf(path, sizeof path, "%s/index.html", dir);
	FILE *f = fopen(path, "w");
	if (f == NULL)
		return -1;
	fprintf(f, "<!doctype html>\n<html><head><meta charset='utf-8'><title>sb-bench</title>\n"
		   "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto}"
		   "table{border-collapse:collapse}td{border:1px solid #ccc;padding:2px 6px}"
		   "tr:first-child{font-weight:bold}code{background:#f4f4f4}</style></head>"
		   "<body>\n<h1>sb-bench</h1>\n<p><code>");
	for (const char *p = c->command; *p; p++)
		fputs(*p == '<' ? "&lt;" : *p == '&' ? "&amp;" : (char[2]){*p, 0}, f);
	fprintf(f, "</code></p>\n<p>Figures in <a href='results.json'>results.json</a>.</p>\n");
	for (unsigned w = 0; w < c->nwork; w++) {
		struct sbb_campaign one = *c;
		char *md = NULL;
		size_t mdlen = 0;
		FILE *m = open_memstream(&md, &mdlen);
		if (m == NULL)
			break;
		/* The compare table of this workload alone. */
		one.nwork = 1;
		one.work[0] = c->work[w];
		one.res = sbb_campaign_at(c, w, 0, 0);
		sbb_report_compare(m, &one);
		fclose(m);
		html_table(f, md);
		free(md);
		html_workload(f, c, w);
	}
	fprintf(f, "</body></html>\n");
	return fclose(f) == 0 ? 0 : -1;
}
