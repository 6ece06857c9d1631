/* sb-bench's load generator: one thread, one epoll loop over every load
 * connection. It keeps the windows full (closed loop) or sends on a fixed
 * schedule (open loop), times the replies, and samples each process's CPU
 * at the edges of the measured window. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define GEN_READ_MAX   (256u << 10) /* one read per ready connection per pass */
#define GEN_FAN_SLOTS  65536u       /* ids in flight for fan must fit: window * conns */
#define GEN_STALL_NS   5000000000ull
#define GEN_FIRE_BATCH 4096u     /* one-way messages queued per pass at most */
#define GEN_FIRE_NAP   100000ull /* ns to wait when the handler is a window behind */

struct gen_fan_slot {
	uint64_t id;  /* request this slot counts for, 0 = free */
	uint32_t got; /* replies so far */
};

struct sbb_gen {
	const struct sbb_run *run;
	const struct sbb_workload *w;
	struct sbb_result *res;
	struct sbb_conn *conns;
	unsigned nconns;
	int ep;
	uint64_t now; /* clock of this pass: stamps and replies share it */
	uint64_t next_id;
	uint64_t rng;         /* request sizes */
	uint64_t outstanding; /* requests in flight over all connections */
	uint64_t last_reply;  /* for stall detection */
	int measuring;
	int failed;
	uint64_t win_start;
	uint64_t sec_start; /* current one-second bucket */
	uint64_t sec_done;
	uint64_t sec_fired; /* fire: handler's count at the bucket's start */
	struct sbb_hist *sec_hist;
	unsigned ndirty;
	struct sbb_conn **dirty; /* connections with output queued this pass */
	uint64_t interval;       /* open loop: ns between intended sends */
	uint64_t due;            /* open loop: intended time of the next send */
	unsigned rr;             /* fire: next connection */
	struct sbb_conn **ready; /* open loop: connections with room, oldest first (a ring) */
	unsigned ready_head;     /* next to take */
	unsigned ready_len;      /* how many */
	uint64_t sent;           /* fire: messages queued since the start */
	uint64_t fired0;         /* fire: handler's count at the window's start */
	struct gen_fan_slot *fan;
};

void sbb_gen_fail(struct sbb_gen *g, const char *fmt, ...)
{
	va_list ap;
	if (g->failed)
		return;
	g->failed = 1;
	g->res->status = SBB_FAILED;
	va_start(ap, fmt);
	vsnprintf(g->res->note, sizeof g->res->note, fmt, ap);
	va_end(ap);
}

static size_t pick_size(struct sbb_gen *g)
{
	const struct sbb_workload *w = g->w;
	if (w->size_max <= w->size_min)
		return w->size_min;
	g->rng ^= g->rng << 13;
	g->rng ^= g->rng >> 7;
	g->rng ^= g->rng << 17;
	return w->size_min + g->rng % (w->size_max - w->size_min + 1);
}

static void ready_push(struct sbb_gen *g, struct sbb_conn *c)
{
	if (c->ready || c->inflight >= g->w->window)
		return;
	c->ready = 1;
	g->ready[(g->ready_head + g->ready_len++) % g->nconns] = c;
}

static struct sbb_conn *ready_pop(struct sbb_gen *g)
{
	if (g->ready_len == 0)
		return NULL;
	struct sbb_conn *c = g->ready[g->ready_head];
	g->ready_head = (g->ready_head + 1) % g->nconns;
	g->ready_len--;
	c->ready = 0;
	return c;
}

static void issue(struct sbb_gen *g, struct sbb_conn *c, uint64_t stamp)
{
	g->run->drv->request(c, g->w, ++g->next_id, stamp, pick_size(g));
	if (g->w->shape != SBB_FIRE) {
		c->inflight++;
		g->outstanding++;
	}
	if (!c->dirty) {
		c->dirty = 1;
		g->dirty[g->ndirty++] = c;
	}
}

/* Replies of a broadcast arrive in any order and interleaved with other
 * requests'; a slot per id (modulo the table) counts them. */
static int fan_complete(struct sbb_gen *g, uint64_t id)
{
	struct gen_fan_slot *s = &g->fan[id % GEN_FAN_SLOTS];
	if (s->id != id) {
		s->id = id;
		s->got = 0;
	}
	if (++s->got < g->w->fan)
		return 0;
	s->id = 0;
	return 1;
}

void sbb_gen_reply(struct sbb_gen *g, struct sbb_conn *c, uint64_t id, const uint8_t *data,
		   size_t n)
{
	uint64_t stamp;
	(void)n;
	memcpy(&stamp, data, sizeof stamp);
	if (stamp == 0) {
		if (g->measuring)
			g->res->bytes += (double)g->w->chunk_size;
		return;
	}
	if (g->w->shape == SBB_FAN && !fan_complete(g, id))
		return;
	c->inflight--;
	g->outstanding--;
	g->last_reply = g->now;
	if (g->measuring) {
		uint64_t lat = g->now > stamp ? g->now - stamp : 0;
		sbb_hist_record(g->res->hist, lat);
		sbb_hist_record(g->sec_hist, lat);
		g->res->done++;
		g->sec_done++;
	}
	/* Closed loop: the reply frees a slot, refilled in the same pass. */
	if (g->w->rate == 0)
		issue(g, c, g->now);
	else
		ready_push(g, c);
}

static uint64_t fired(const struct sbb_gen *g)
{
	return g->run->stats ? atomic_load_explicit(&g->run->stats->fired, memory_order_relaxed)
			     : 0;
}

static void fmt_rate(char *buf, size_t cap, double v)
{
	if (v >= 1e6)
		snprintf(buf, cap, "%.2fM", v / 1e6);
	else if (v >= 1e3)
		snprintf(buf, cap, "%.1fk", v / 1e3);
	else
		snprintf(buf, cap, "%.0f", v);
}

static void open_window(struct sbb_gen *g)
{
	struct sbb_result *r = g->res;
	g->measuring = 1;
	g->win_start = g->sec_start = g->now;
	g->fired0 = g->sec_fired = fired(g);
	for (unsigned i = 0; i < r->nprocs; i++) {
		struct sbb_proc *p = &r->proc[i];
		p->cpu0 = sbb_proc_cpu(p->pid);
		if (strcmp(p->role, "switchboard") == 0)
			p->nthreads = sbb_proc_threads(p->pid, p->tid, SBB_MAX_THREADS);
		for (unsigned t = 0; t < p->nthreads; t++)
			p->tcpu0[t] = sbb_proc_thread_cpu(p->pid, p->tid[t]);
	}
}

static void close_second(struct sbb_gen *g)
{
	struct sbb_result *r = g->res;
	double secs = (double)(g->now - g->sec_start) / 1e9;
	struct sbb_second *s = &r->sec[r->nsec];
	if (g->w->shape == SBB_FIRE) {
		uint64_t f = fired(g);
		s->rate = (double)(f - g->sec_fired) / secs;
		g->sec_fired = f;
	} else {
		s->rate = (double)g->sec_done / secs;
		s->p50 = sbb_hist_quantile(g->sec_hist, 0.5);
		s->p99 = sbb_hist_quantile(g->sec_hist, 0.99);
	}
	if (r->nsec + 1 < SBB_MAX_SECONDS)
		r->nsec++;
	if (g->run->progress) {
		char rate[32];
		fmt_rate(rate, sizeof rate, s->rate);
		fprintf(stderr, "\r  %-10s %-12s %3.0f s  %8s %s", g->w->name, g->run->label,
			(double)(g->now - g->win_start) / 1e9, rate, sbb_workload_unit(g->w));
		if (g->w->shape != SBB_FIRE)
			fprintf(stderr, "  p99 so far %.0f us",
				(double)sbb_hist_quantile(r->hist, 0.99) / 1e3);
		fprintf(stderr, "\033[K");
	}
	sbb_hist_reset(g->sec_hist);
	g->sec_done = 0;
	g->sec_start = g->now;
}

/* A long warm-up (conn-10k) should not look like a hang. */
static void warm_progress(struct sbb_gen *g, uint64_t warm_end)
{
	g->sec_start = g->now;
	fprintf(stderr, "\r  %-10s %-12s warming up, %.0f s to go\033[K", g->w->name, g->run->label,
		(double)(warm_end - g->now) / 1e9);
}

static void close_window(struct sbb_gen *g)
{
	struct sbb_result *r = g->res;
	if (g->sec_done > 0 || g->w->shape == SBB_FIRE) {
		if ((double)(g->now - g->sec_start) > 0.5e9)
			close_second(g);
	}
	r->secs = (double)(g->now - g->win_start) / 1e9;
	if (g->w->shape == SBB_FIRE)
		r->done = fired(g) - g->fired0;
	for (unsigned i = 0; i < r->nprocs; i++) {
		double c = sbb_proc_cpu(r->proc[i].pid);
		r->proc[i].cpu = c >= 0 && r->proc[i].cpu0 >= 0 ? c - r->proc[i].cpu0 : -1;
		r->proc[i].rss_mib = sbb_proc_peak_rss(r->proc[i].pid);
		for (unsigned t = 0; t < r->proc[i].nthreads; t++) {
			double tc = sbb_proc_thread_cpu(r->proc[i].pid, r->proc[i].tid[t]);
			r->proc[i].tcpu[t] =
				tc >= 0 && r->proc[i].tcpu0[t] >= 0 ? tc - r->proc[i].tcpu0[t] : -1;
		}
	}
	if (g->run->progress)
		fprintf(stderr, "\r\033[K");
}

static void flush_dirty(struct sbb_gen *g)
{
	for (unsigned i = 0; i < g->ndirty; i++) {
		struct sbb_conn *c = g->dirty[i];
		c->dirty = 0;
		if (c->blocked)
			continue; /* EPOLLOUT will flush it */
		int rc = sbb_conn_flush(c);
		if (rc < 0) {
			sbb_gen_fail(g, "write: connection lost");
		} else if (rc == 1) {
			struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
			c->blocked = 1;
			epoll_ctl(g->ep, EPOLL_CTL_MOD, c->fd, &ev);
		}
	}
	g->ndirty = 0;
}

/* Fire: keep the handler at most a window behind. Without that credit the
 * router (or NATS) would buffer the excess and finally drop the handler as
 * a slow consumer. @return ns to wait before the next pass. */
static uint64_t fire_pass(struct sbb_gen *g)
{
	uint64_t limit = (uint64_t)g->w->window * g->nconns, unread = g->sent - fired(g);
	if (unread >= limit)
		return GEN_FIRE_NAP; /* nothing will wake us: the handler does not reply */
	uint64_t credit = limit - unread, queued = 0;
	if (credit > GEN_FIRE_BATCH)
		credit = GEN_FIRE_BATCH;
	for (uint64_t k = 0; k < credit; k++) {
		struct sbb_conn *c = &g->conns[g->rr++ % g->nconns];
		if (c->blocked)
			continue;
		issue(g, c, g->now);
		g->sent++;
		queued++;
	}
	/* Every connection full: EPOLLOUT wakes us, spinning would not help. */
	return queued ? 0 : 100000000;
}

/* Open loop: every request has an intended send time and its latency counts
 * from there, so a stall that delays sending shows as latency instead of
 * silently lowering the rate (coordinated omission). A request goes to the
 * connection that has had room the longest: waiting for one slow connection
 * would hold back all the others, and with one request in flight per
 * connection (conn-10k) that cascades into seconds. A queue, not a scan:
 * when the server stalls, most windows are full, and scanning 10,000
 * connections per request would make the generator the bottleneck.
 * @return ns to wait. */
static uint64_t open_pass(struct sbb_gen *g)
{
	while (g->due <= g->now) {
		struct sbb_conn *c = ready_pop(g);
		if (c == NULL)
			return 100000000; /* every window full: a reply will wake us */
		issue(g, c, g->due);
		g->due += g->interval;
		ready_push(g, c);
	}
	return g->due - g->now;
}

static int read_conn(struct sbb_gen *g, struct sbb_conn *c, uint8_t *buf)
{
	ssize_t n = read(c->fd, buf, GEN_READ_MAX);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n <= 0) {
		sbb_gen_fail(g, "%s connection %u closed by the peer", g->run->drv->proto, c->idx);
		return -1;
	}
	return g->run->drv->input(g, c, buf, (size_t)n);
}

static void loop(struct sbb_gen *g)
{
	static uint8_t buf[GEN_READ_MAX];
	struct epoll_event evs[256];
	const struct sbb_workload *w = g->w;
	uint64_t t0 = sbb_now_ns();
	uint64_t warm_end = t0 + (uint64_t)(w->warmup * 1e9);
	uint64_t end = warm_end + (uint64_t)(w->duration * 1e9);
	g->now = g->last_reply = g->sec_start = t0;
	if (w->rate > 0) {
		g->interval = (uint64_t)(1e9 / w->rate);
		g->due = t0;
		for (unsigned i = 0; i < g->nconns; i++)
			ready_push(g, &g->conns[i]);
	} else if (w->shape != SBB_FIRE) {
		for (unsigned i = 0; i < g->nconns; i++)
			for (unsigned k = 0; k < w->window; k++)
				issue(g, &g->conns[i], t0);
	}
	while (!g->failed) {
		uint64_t wait = 100000000;
		g->now = sbb_now_ns();
		if (!g->measuring && g->now >= warm_end)
			open_window(g);
		else if (!g->measuring && g->run->progress && g->now - g->sec_start >= 1000000000u)
			warm_progress(g, warm_end);
		if (g->measuring && g->now >= end)
			break;
		if (g->measuring && g->now - g->sec_start >= 1000000000u)
			close_second(g);
		if (w->shape == SBB_FIRE)
			wait = fire_pass(g);
		else if (w->rate > 0)
			wait = open_pass(g);
		flush_dirty(g);
		/* Wake for the window's edges and the next second on time. */
		uint64_t edge = g->measuring ? end : warm_end;
		if (g->measuring && g->sec_start + 1000000000u < edge)
			edge = g->sec_start + 1000000000u;
		if (edge <= g->now)
			wait = 0;
		else if (edge - g->now < wait)
			wait = edge - g->now;
		struct timespec ts = {(time_t)(wait / 1000000000u), (long)(wait % 1000000000u)};
		int n = epoll_pwait2(g->ep, evs, 256, &ts, NULL);
		if (n < 0 && errno != EINTR) {
			sbb_gen_fail(g, "epoll: %s", strerror(errno));
			break;
		}
		g->now = sbb_now_ns();
		for (int i = 0; i < n && !g->failed; i++) {
			struct sbb_conn *c = evs[i].data.ptr;
			if (c->blocked && (evs[i].events & EPOLLOUT)) {
				int rc = sbb_conn_flush(c);
				if (rc == 0) {
					struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
					c->blocked = 0;
					epoll_ctl(g->ep, EPOLL_CTL_MOD, c->fd, &ev);
				} else if (rc < 0) {
					sbb_gen_fail(g, "write: connection lost");
				}
			}
			if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
				read_conn(g, c, buf);
		}
		if (g->outstanding > 0 && g->now - g->last_reply > GEN_STALL_NS)
			sbb_gen_fail(g, "no reply for 5 s with %llu requests in flight",
				     (unsigned long long)g->outstanding);
	}
	if (!g->failed)
		close_window(g);
	else if (g->run->progress)
		fprintf(stderr, "\r\033[K");
}

void sbb_gen_run(const struct sbb_run *run, struct sbb_result *res)
{
	struct sbb_gen g = {.run = run, .w = run->work, .res = res, .rng = 0x9e3779b97f4a7c15u};
	const struct sbb_workload *w = run->work;
	unsigned inited = 0;
	g.nconns = w->conns;
	g.conns = calloc(w->conns, sizeof *g.conns);
	g.dirty = calloc(w->conns, sizeof *g.dirty);
	g.ready = calloc(w->conns, sizeof *g.ready);
	g.sec_hist = malloc(sizeof *g.sec_hist);
	res->hist = malloc(sizeof *res->hist);
	g.fan = w->shape == SBB_FAN ? calloc(GEN_FAN_SLOTS, sizeof *g.fan) : NULL;
	g.ep = epoll_create1(EPOLL_CLOEXEC);
	if (g.conns == NULL || g.dirty == NULL || g.ready == NULL || g.sec_hist == NULL ||
	    res->hist == NULL || (w->shape == SBB_FAN && g.fan == NULL) || g.ep < 0) {
		sbb_gen_fail(&g, "out of memory");
		goto out;
	}
	sbb_hist_reset(g.sec_hist);
	sbb_hist_reset(res->hist);
	for (unsigned i = 0; i < w->conns; i++)
		sbb_conn_init(&g.conns[i], -1, i);
	inited = w->conns;
	for (unsigned i = 0; i < w->conns; i++) {
		struct sbb_conn *c = &g.conns[i];
		errno = 0;
		if (run->drv->open(c, run->host, run->port) != 0) {
			sbb_gen_fail(&g, "load connection %u to %s:%u failed: %s", i, run->host,
				     run->port, errno ? strerror(errno) : "handshake");
			goto out;
		}
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
		epoll_ctl(g.ep, EPOLL_CTL_ADD, c->fd, &ev);
	}
	loop(&g);
out:
	for (unsigned i = 0; i < inited; i++)
		sbb_conn_free(&g.conns[i]);
	if (g.ep >= 0)
		close(g.ep);
	if (w->shape == SBB_FIRE) {
		free(res->hist);
		res->hist = NULL;
	}
	free(g.conns);
	free(g.dirty);
	free(g.ready);
	free(g.sec_hist);
	free(g.fan);
}
