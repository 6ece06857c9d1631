/* sb-bench: the types its modules share (workloads, targets, connections,
 * results) and the few functions each module offers the others. */
#ifndef SBB_BENCH_H
#define SBB_BENCH_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "hist.h"

/* ---- workloads ---------------------------------------------------------- */

enum sbb_shape {
	SBB_RR,     /* request, one reply */
	SBB_FIRE,   /* one-way messages; the handler counts them */
	SBB_STREAM, /* request, K chunk replies, then a final reply */
	SBB_FAN,    /* request to every handler; done when all have replied */
};

struct sbb_workload {
	char name[32]; /* preset name, or "custom" */
	enum sbb_shape shape;
	unsigned conns;  /* load connections */
	unsigned window; /* requests in flight per connection (fire: unread messages) */
	size_t size_min; /* request payload bytes, uniform in [min, max] */
	size_t size_max;
	unsigned chunks;   /* stream: chunk replies per request */
	size_t chunk_size; /* stream: bytes per chunk */
	unsigned fan;      /* fan: handlers, each replies once */
	double rate;       /* open loop: requests/s over all connections; 0 = closed loop */
	double warmup;     /* seconds before the window opens */
	double duration;   /* seconds in the window */
};

/** Fills @p w from a preset in BENCH.md. @return 0, or -1 for an unknown name. */
int sbb_workload_preset(const char *name, struct sbb_workload *w);
/** One line: "4 conns x 64 in flight, 64 B". */
void sbb_workload_describe(const struct sbb_workload *w, char *buf, size_t cap);
/** Unit of the main rate: "req/s" or "msg/s". */
const char *sbb_workload_unit(const struct sbb_workload *w);

/* ---- targets ------------------------------------------------------------ */

enum sbb_target_kind {
	SBB_T_SWITCHBOARD, /* the router, switchboard frames */
	SBB_T_DIRECT,      /* the responder itself, switchboard frames, no hop */
	SBB_T_NATS,        /* a NATS server, its text protocol */
	SBB_T_WS,          /* the router, switchboard frames over its WebSocket edge */
	SBB_T_XSB,         /* two routers (--cluster) over a two-server NATS cluster:
			    * the load on router A, the responder on router B */
	SBB_T_XNATS,       /* the same two NATS servers alone: the load on the first,
			    * the responder on the second */
};

struct sbb_target {
	char spec[128]; /* as given: "switchboard", "nats://127.0.0.1:4222" */
	char label[32]; /* short name in tables: "switchboard", "direct", "nats" */
	enum sbb_target_kind kind;
	char host[64]; /* with port != 0: an already running server */
	uint16_t port; /* 0: the harness starts the server itself */
};

/** Parses "switchboard[://H:P]", "direct", "nats[://H:P]", "switchboard-ws",
 *  "switchboard-cluster", "nats-cluster". @return 0 or -1. */
int sbb_target_parse(const char *spec, struct sbb_target *t);

/* ---- the responder's counters, shared with the harness ------------------ */

/* A page the harness maps and the responder (another process) writes: the
 * fire workload has no replies, so the handler's own count is its figure. */
struct sbb_stats {
	_Atomic uint64_t fired; /* one-way messages the handler received */
};

/* ---- processes (proc.c) ------------------------------------------------- */

#define SBB_MAX_THREADS 17 /* the router's main thread and 16 shards */

/* A process whose CPU and memory a run reports. pid 0 is sb-bench itself. */
struct sbb_proc {
	char role[24]; /* "switchboard", "nats-server", "responder", "sb-bench"; a
			* cluster target has two of each server, counted together */
	pid_t pid;
	double cpu0;    /* utime+stime in seconds at the window's start */
	double cpu;     /* CPU-seconds spent inside the window */
	double rss_mib; /* peak resident set (VmHWM) at the window's end */
	/* the router's threads (main, then one per shard): which shard did the
	 * work, so whether the load's connections shared one */
	unsigned nthreads;
	pid_t tid[SBB_MAX_THREADS];
	double tcpu0[SBB_MAX_THREADS], tcpu[SBB_MAX_THREADS];
};

/**
 * Starts @p argv[0] with @p argv. Its stdout goes to a pipe whose read end is
 * returned in *out_fd (if out_fd is non-NULL; else to /dev/null); stderr is
 * kept if @p quiet is 0. @return the pid, or -1
 */
pid_t sbb_proc_spawn(char *const argv[], int *out_fd, int quiet);
/** Reads one line from a child's stdout within @p timeout_ms. @return 0 or -1. */
int sbb_proc_read_line(int fd, char *buf, size_t cap, int timeout_ms);
/** SIGTERM, then SIGKILL after 2 s; reaps it. */
void sbb_proc_stop(pid_t pid);
/** utime+stime in seconds; pid 0 = this process. Negative if unreadable. */
double sbb_proc_cpu(pid_t pid);
/** Peak RSS (VmHWM) in MiB; pid 0 = this process. */
double sbb_proc_peak_rss(pid_t pid);
/** Up to @p max threads of @p pid in *tid, in the kernel's order. @return how many. */
unsigned sbb_proc_threads(pid_t pid, pid_t *tid, unsigned max);
/** utime+stime of thread @p tid of @p pid, in seconds. Negative if unreadable. */
double sbb_proc_thread_cpu(pid_t pid, pid_t tid);

/* ---- connections with batched I/O (net.c) ------------------------------- */

/* One TCP connection of the load generator or the responder. Output
 * accumulates in `out` and leaves in one write per loop pass; input a driver
 * could not finish parsing waits in `in` for the next read. */
struct sbb_conn {
	int fd;
	unsigned idx; /* position in its owner's array */
	uint8_t *out; /* frames waiting to be written */
	size_t out_len, out_cap;
	uint8_t *in; /* an incomplete message carried to the next read */
	size_t in_len, in_cap;
	struct sb_splitter *sp; /* switchboard frames: the codec's splitter */
	unsigned inflight;      /* requests sent and not completed */
	int dirty;              /* on its owner's list of connections to flush */
	int blocked;            /* the kernel refused output: waiting for EPOLLOUT */
	int nats_ready;         /* NATS handshake: PONG seen */
	int ready;              /* open loop: on the generator's queue of connections with room */
	uint8_t head[64];       /* switchboard driver: the last request header, reused... */
	size_t head_len;        /* ...its length, 0 = none yet... */
	size_t head_size;       /* ...and the payload size it was encoded for */
};

int sbb_dial(const char *host, uint16_t port);
/** sbb_dial() from source address @p src (NULL: the kernel's choice). */
int sbb_dial_from(const char *src, const char *host, uint16_t port);
/** Listens on 127.0.0.1; *port 0 picks a free one and returns it. @return fd or -1. */
int sbb_listen(uint16_t *port);
/** A port free right now on 127.0.0.1 (for servers that cannot report theirs). */
uint16_t sbb_free_port(void);
void sbb_conn_init(struct sbb_conn *c, int fd, unsigned idx);
void sbb_conn_free(struct sbb_conn *c);
/** Room for @p n more output bytes; grows the buffer (exits if out of memory). */
uint8_t *sbb_out_reserve(struct sbb_conn *c, size_t n);
void sbb_out_put(struct sbb_conn *c, const void *p, size_t n);
/** Writes what is queued. @return 0 all written, 1 the kernel is full, -1 error. */
int sbb_conn_flush(struct sbb_conn *c);
/** Blocking write of everything queued, for handshakes. @return 0 or -1. */
int sbb_conn_flush_all(struct sbb_conn *c);
/** Appends bytes a parser must see again with the next read. */
void sbb_in_keep(struct sbb_conn *c, const uint8_t *p, size_t n);
/** Blocking read of whatever arrives within @p timeout_ms. @return bytes, or -1. */
ssize_t sbb_recv_wait(int fd, uint8_t *buf, size_t cap, int timeout_ms);
uint64_t sbb_now_ns(void);

/* ---- the load generator and its drivers (gen.c, drv_*.c) ----------------- */

struct sbb_gen;

/* What a load connection speaks. The generator owns timing, windows and
 * statistics; a driver only turns requests into bytes and bytes into replies. */
struct sbb_driver {
	const char *proto; /* "sb" or "nats" */
	/** Connects and completes the handshake (blocking). @return 0 or -1. */
	int (*open)(struct sbb_conn *c, const char *host, uint16_t port);
	/** Queues one request (or one-way message) carrying @p stamp in its payload. */
	void (*request)(struct sbb_conn *c, const struct sbb_workload *w, uint64_t id,
			uint64_t stamp, size_t size);
	/** Parses received bytes, calling sbb_gen_reply() per reply. @return 0 or -1. */
	int (*input)(struct sbb_gen *g, struct sbb_conn *c, const uint8_t *p, size_t n);
};

extern const struct sbb_driver sbb_drv_sb;
extern const struct sbb_driver sbb_drv_nats;
extern const struct sbb_driver sbb_drv_ws;

/* The application bytes of every payload start with the send time in
 * nanoseconds (CLOCK_MONOTONIC, host order); chunks carry 0 there. NATS
 * payloads then carry the request id (switchboard frames have their own). */
#define SBB_STAMP_LEN 8

/**
 * A driver received a reply to request @p id on @p c; @p data is the
 * application payload (stamp first).
 */
void sbb_gen_reply(struct sbb_gen *g, struct sbb_conn *c, uint64_t id, const uint8_t *data,
		   size_t n);
/** A driver saw something that ends the run (an ERROR frame, a closed socket). */
void sbb_gen_fail(struct sbb_gen *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- results ------------------------------------------------------------ */

#define SBB_MAX_PROCS   8
#define SBB_MAX_SECONDS 600

enum sbb_status { SBB_OK, SBB_SKIPPED, SBB_FAILED };

struct sbb_second {
	double rate;       /* completions per second in this second */
	uint64_t p50, p99; /* latency in ns among them */
};

struct sbb_result {
	struct sbb_target target;
	struct sbb_workload work;
	unsigned rep; /* repetition, from 0 */
	enum sbb_status status;
	char note[240];        /* why it was skipped or failed */
	double secs;           /* measured window, seconds */
	uint64_t done;         /* requests completed (fire: messages handled) */
	double bytes;          /* stream: chunk payload bytes received in the window */
	struct sbb_hist *hist; /* latency in ns; NULL for fire */
	unsigned nsec;
	struct sbb_second sec[SBB_MAX_SECONDS];
	unsigned nprocs;
	struct sbb_proc proc[SBB_MAX_PROCS];
};

/* Everything a run needs from the harness. */
struct sbb_run {
	const struct sbb_workload *work;
	const struct sbb_driver *drv;
	const char *host;
	uint16_t port;
	struct sbb_stats *stats; /* the responder's counters */
	int progress;            /* draw a live line on stderr */
	const char *label;       /* for the live line */
};

/** Runs the load of @p run; fills @p res (status, figures, proc CPU). */
void sbb_gen_run(const struct sbb_run *run, struct sbb_result *res);

/* ---- the responder (responder.c) ---------------------------------------- */

/** `sb-bench responder ...`: the handler process. @return exit status. */
int sbb_responder_main(int argc, char **argv);

/** `sb-bench conns ...`: idle connections and names held open (conns.c). */
int sbb_conns_main(int argc, char **argv);

/* NATS text protocol parsing, shared by the driver and the responder. */
struct sbb_nats_msg {
	const char *subject;
	size_t subject_len;
	const char *reply; /* NULL when the publisher gave none */
	size_t reply_len;
	const uint8_t *data;
	size_t len;
};

/**
 * Parses whole protocol lines and messages from [p, p+n), calling @p on_msg
 * for each MSG and answering PING with PONG on @p c.
 * @return bytes consumed (the rest is an incomplete message), or -1 on -ERR
 */
long sbb_nats_parse(struct sbb_conn *c, const uint8_t *p, size_t n,
		    void (*on_msg)(void *ud, struct sbb_conn *c, const struct sbb_nats_msg *m),
		    void *ud);
/** Dials a NATS server and queues CONNECT. @return 0 or -1. */
int sbb_nats_connect(struct sbb_conn *c, const char *host, uint16_t port);
/** Sends what is queued plus PING and waits for PONG: every SUB before it is
 * then in force. @return 0 or -1. */
int sbb_nats_sync(struct sbb_conn *c);
/** Queues "PUB subject [reply] n\r\n" + payload head; caller fills @p n bytes. */
uint8_t *sbb_nats_pub(struct sbb_conn *c, const char *subject, size_t subject_len,
		      const char *reply, size_t reply_len, size_t n);
/** Appends the decimal digits of @p v; returns the new end. */
char *sbb_utoa(char *p, uint64_t v);

/* Switchboard frames helpers, shared by the driver and the responder. */
struct sb_msg;
void sbb_sb_queue(struct sbb_conn *c, const struct sb_msg *m);
/** Waits for one frame of @p kind during set-up. @return 0 or -1. */
int sbb_sb_expect(struct sbb_conn *c, unsigned kind);
/** HELLO as @p role on a dialed, still blocking connection; waits for the
 *  WELCOME. @return 0, or -1 if the dial or the handshake failed */
int sbb_sb_hello(struct sbb_conn *c, const char *role);
/** Registers @p n names PREFIX<first>, PREFIX<first+1>, ... on a connection
 *  past its HELLO, REGISTERs pipelined a batch at a time (one round trip
 *  per name would make 100,000 names take minutes). @return 0 or -1. */
int sbb_sb_register_many(struct sbb_conn *c, const char *prefix, unsigned first, unsigned n);
/** Queues a frame of @p kind whose payload is a bin32 of @p size bytes
 * starting with @p stamp (the rest is left as the buffer holds it). */
void sbb_sb_stamped(struct sbb_conn *c, struct sb_msg *m, uint64_t stamp, size_t size);

/* ---- output (report.c) -------------------------------------------------- */

/* A whole invocation: every run of every workload on every target. */
struct sbb_campaign {
	unsigned nwork, ntarget, reps;
	struct sbb_workload work[8];
	struct sbb_target target[8];
	struct sbb_result *res; /* [work][rep][target], nwork * reps * ntarget */
	char command[1024];     /* the command line, for the record */
	char router[256];       /* the daemon started for "switchboard" */
	char nats[256];         /* the nats-server started for "nats" */
	char shards[16];        /* router --shards, "" = its default */
};

struct sbb_result *sbb_campaign_at(const struct sbb_campaign *c, unsigned w, unsigned rep,
				   unsigned t);
/** One run in detail: percentiles, per-second figures, processes. */
void sbb_report_run(FILE *f, const struct sbb_result *r);
/** Side by side per workload: medians (min-max) and ratios. */
void sbb_report_compare(FILE *f, const struct sbb_campaign *c);
void sbb_report_json(FILE *f, const struct sbb_campaign *c);
/** Writes DIR/index.html with inline SVG plots. @return 0 or -1. */
int sbb_report_html(const char *dir, const struct sbb_campaign *c);

#endif
