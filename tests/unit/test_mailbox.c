/* Mailbox tests: shards hand each other messages through their rings, in order,
 * each exactly once, and a shard that goes to sleep is always woken for its mail. */
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <switchboard/error.h>

#include "router/mailbox.h"
#include "support/testlib.h"

/* Enough to wrap each 64-entry ring thousands of times. Under TSan the
 * threaded tests run several times slower, on two cores shared with the rest
 * of a build: fewer messages keep them to a few seconds. */
#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif

#ifdef UNDER_TSAN
#define TRANSFER_COUNT 500000
#define STRESS_COUNT   100000
#define RALLY_HITS     300000
#else
#define TRANSFER_COUNT 1000000
#define STRESS_COUNT   200000
#define RALLY_HITS     1000000
#endif

/* A lost wake-up shows as a receiver blocked with mail waiting: each wait is
 * bounded, and a run that overstays fails rather than hangs. */
#define WAIT_MS       5000
#define WATCHDOG_SECS 60

static struct sb__mail mail(uint32_t type, uint64_t seq)
{
	struct sb__mail m = {
		.type = type, .a = (uint32_t)(seq * 7), .b = seq, .p = NULL, .c = ~seq};
	return m;
}

/* Whether m is the seq-th message of its sender, every field intact. */
static int is_mail(const struct sb__mail *m, uint32_t type, uint64_t seq)
{
	return m->type == type && m->a == (uint32_t)(seq * 7) && m->b == seq && m->c == ~seq;
}

static int send1(struct sb__mailbox *mb, unsigned from, unsigned to, uint64_t seq)
{
	struct sb__mail m = mail(from, seq);
	int wake;
	return sb__mail_send(mb, from, to, &m, &wake);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void watchdog_fired(int sig)
{
	static const char msg[] = "watchdog: a threaded test ran too long (lost wake-up?)\n";
	(void)sig;
	if (write(2, msg, sizeof msg - 1) < 0)
		_exit(2);
	_exit(1);
}

static void test_fifo_per_sender(void)
{
	struct sb__mailbox *mb = sb__mailbox_new(2, 16);
	struct sb__mail out[3];

	for (uint64_t i = 0; i < 10; i++)
		CHECK_INT(send1(mb, 1, 0, i), 0);
	CHECK_INT(sb__mailbox_pending(mb, 0), 10);
	CHECK_INT(sb__mailbox_pending(mb, 1), 0);

	uint64_t next = 0;
	unsigned n;
	while ((n = sb__mail_recv(mb, 0, out, 3)) > 0) {
		CHECK(n <= 3);
		for (unsigned i = 0; i < n; i++)
			CHECK(is_mail(&out[i], 1, next++));
	}
	CHECK_INT(next, 10);
	CHECK_INT(sb__mailbox_pending(mb, 0), 0);
	/* The other direction was never used. */
	CHECK_INT(sb__mail_recv(mb, 1, out, 3), 0);
	sb__mailbox_free(mb);
}

static void test_round_robin_across_senders(void)
{
	struct sb__mailbox *mb = sb__mailbox_new(4, 16);
	struct sb__mail out[16];
	uint64_t next[4] = {0};

	/* Sender 1 queues all its mail before 2 and 3 queue any: it still gets
	 * one turn in three, and a small max carries the turn across calls. */
	for (unsigned from = 1; from <= 3; from++)
		for (uint64_t i = 0; i < 4; i++)
			CHECK_INT(send1(mb, from, 0, i), 0);
	CHECK_INT(sb__mail_recv(mb, 0, out, 5), 5);
	CHECK_INT(sb__mail_recv(mb, 0, out + 5, 16 - 5), 7);
	for (unsigned i = 0; i < 12; i++) {
		uint32_t from = 1 + i % 3;
		CHECK(is_mail(&out[i], from, next[from]++));
	}

	/* Uneven queues: the idle ones drop out, the busy one gets the rest. */
	uint64_t counts[4] = {0, 6, 1, 2};
	for (unsigned from = 1; from <= 3; from++)
		for (uint64_t i = 0; i < counts[from]; i++)
			CHECK_INT(send1(mb, from, 0, next[from] + i), 0);
	/* One at a time, then the rest: the turn carries over between calls. */
	uint32_t order[9] = {1, 2, 3, 1, 3, 1, 1, 1, 1};
	CHECK_INT(sb__mail_recv(mb, 0, out, 1), 1);
	CHECK_INT(sb__mail_recv(mb, 0, out + 1, 15), 8);
	for (unsigned i = 0; i < 9; i++)
		CHECK(is_mail(&out[i], order[i], next[order[i]]++));

	/* Mail to another shard is not seen by shard 0. */
	CHECK_INT(send1(mb, 0, 3, 0), 0);
	CHECK_INT(sb__mail_recv(mb, 0, out, 16), 0);
	CHECK_INT(sb__mail_recv(mb, 2, out, 16), 0);
	CHECK_INT(sb__mail_recv(mb, 3, out, 16), 1);
	CHECK(is_mail(&out[0], 0, 0));
	sb__mailbox_free(mb);
}

static void test_full_ring_pushes_back(void)
{
	struct sb__mailbox *mb = sb__mailbox_new(3, 8);
	struct sb__mail out[8], m = mail(1, 99);
	int wake = 1;

	/* ck_ring keeps one slot free: 8 slots hold 7 messages. */
	for (uint64_t i = 0; i < 7; i++)
		CHECK_INT(send1(mb, 1, 0, i), 0);
	CHECK_INT(sb__mail_send(mb, 1, 0, &m, &wake), SB_EOVERLOADED);
	CHECK_INT(wake, 0);
	CHECK_INT(sb__mailbox_pending(mb, 0), 7);
	/* Another sender's ring to the same shard is not affected. */
	CHECK_INT(send1(mb, 2, 0, 0), 0);

	CHECK_INT(sb__mail_recv(mb, 0, out, 1), 1);
	CHECK(is_mail(&out[0], 1, 0));
	CHECK_INT(send1(mb, 1, 0, 7), 0);
	CHECK_INT(send1(mb, 1, 0, 8), SB_EOVERLOADED);

	/* Nothing was queued by the refused sends: 1..7 from 1, then 0 from 2. */
	uint64_t next1 = 1, next2 = 0;
	unsigned n = sb__mail_recv(mb, 0, out, 8);
	CHECK_INT(n, 8);
	for (unsigned i = 0; i < n; i++)
		CHECK(out[i].type == 1 ? is_mail(&out[i], 1, next1++)
				       : is_mail(&out[i], 2, next2++));
	CHECK_INT(next1, 8);
	CHECK_INT(next2, 1);
	CHECK_INT(sb__mail_recv(mb, 0, out, 8), 0);
	sb__mailbox_free(mb);
}

static void test_bad_arguments(void)
{
	CHECK(sb__mailbox_new(0, 8) == NULL);
	CHECK(sb__mailbox_new(2, 0) == NULL);
	CHECK(sb__mailbox_new(2, 2) == NULL);
	CHECK(sb__mailbox_new(2, 6) == NULL);
	CHECK(sb__mailbox_new(2, 100) == NULL);
	CHECK(sb__mailbox_new(2, 0x80000001u) == NULL);
	/* Far more shards than memory: refused, not attempted. */
	CHECK(sb__mailbox_new(0xffffffffu, 1u << 30) == NULL);

	struct sb__mailbox *mb = sb__mailbox_new(2, 4);
	CHECK(mb != NULL);
	struct sb__mail m = mail(0, 0);
	int wake = 1;
	CHECK_INT(sb__mail_send(mb, 0, 0, &m, &wake), SB_EINVAL);
	CHECK_INT(wake, 0);
	CHECK_INT(sb__mail_send(mb, 0, 2, &m, &wake), SB_EINVAL);
	CHECK_INT(sb__mail_send(mb, 2, 0, &m, &wake), SB_EINVAL);
	CHECK_INT(sb__mailbox_pending(mb, 0) + sb__mailbox_pending(mb, 1), 0);
	sb__mailbox_free(mb);

	/* A single shard has no one to talk to, and never mail to wait for. */
	mb = sb__mailbox_new(1, 4);
	CHECK(mb != NULL);
	CHECK_INT(sb__mailbox_sleep(mb, 0), 1);
	sb__mailbox_free(mb);
	sb__mailbox_free(NULL);
}

static void test_wake_once_per_sleep(void)
{
	struct sb__mailbox *mb = sb__mailbox_new(3, 16);
	struct sb__mail m = mail(1, 0), out[16];
	int wake;

	/* Awake: sends never ask for a wake. */
	CHECK_INT(sb__mail_send(mb, 1, 0, &m, &wake), 0);
	CHECK_INT(wake, 0);
	/* Mail waiting: the shard may not sleep, and is not marked asleep. */
	CHECK_INT(sb__mailbox_sleep(mb, 0), 0);
	CHECK_INT(sb__mail_send(mb, 1, 0, &m, &wake), 0);
	CHECK_INT(wake, 0);
	CHECK_INT(sb__mail_recv(mb, 0, out, 16), 2);

	/* Asleep: the first send, from whichever sender, wakes; later ones do not. */
	CHECK_INT(sb__mailbox_sleep(mb, 0), 1);
	CHECK_INT(sb__mail_send(mb, 2, 0, &m, &wake), 0);
	CHECK_INT(wake, 1);
	CHECK_INT(sb__mail_send(mb, 1, 0, &m, &wake), 0);
	CHECK_INT(wake, 0);
	CHECK_INT(sb__mail_send(mb, 2, 0, &m, &wake), 0);
	CHECK_INT(wake, 0);
	sb__mailbox_awake(mb, 0);
	CHECK_INT(sb__mail_send(mb, 1, 0, &m, &wake), 0);
	CHECK_INT(wake, 0);
	CHECK_INT(sb__mail_recv(mb, 0, out, 16), 4);

	/* Woken by other I/O before any mail: awake() stops the wakes. */
	CHECK_INT(sb__mailbox_sleep(mb, 0), 1);
	sb__mailbox_awake(mb, 0);
	CHECK_INT(sb__mail_send(mb, 1, 0, &m, &wake), 0);
	CHECK_INT(wake, 0);
	CHECK_INT(sb__mail_recv(mb, 0, out, 16), 1);

	/* Each sleep is paid for by exactly one wake. */
	for (int round = 0; round < 3; round++) {
		CHECK_INT(sb__mailbox_sleep(mb, 0), 1);
		CHECK_INT(sb__mail_send(mb, 1, 0, &m, &wake), 0);
		CHECK_INT(wake, 1);
		CHECK_INT(sb__mail_send(mb, 1, 0, &m, &wake), 0);
		CHECK_INT(wake, 0);
		sb__mailbox_awake(mb, 0);
		CHECK_INT(sb__mail_recv(mb, 0, out, 16), 2);
	}

	/* A turn's posts ask nothing; the one question after them wakes. */
	CHECK_INT(sb__mailbox_sleep(mb, 0), 1);
	for (int i = 0; i < 3; i++)
		CHECK_INT(sb__mail_post(mb, 1, 0, &m), 0);
	CHECK_INT(sb__mailbox_sleep(mb, 0), 0); /* and it could not sleep on them */
	CHECK_INT(sb__mailbox_wake_due(mb, 0), 1);
	CHECK_INT(sb__mailbox_wake_due(mb, 0), 0);
	sb__mailbox_awake(mb, 0);
	CHECK_INT(sb__mail_recv(mb, 0, out, 16), 3);

	/* Each shard has a flag of its own. */
	CHECK_INT(sb__mailbox_sleep(mb, 0), 1);
	CHECK_INT(sb__mailbox_sleep(mb, 1), 1);
	CHECK_INT(sb__mail_send(mb, 2, 1, &m, &wake), 0);
	CHECK_INT(wake, 1);
	CHECK_INT(sb__mail_send(mb, 2, 0, &m, &wake), 0);
	CHECK_INT(wake, 1);
	sb__mailbox_free(mb);
}

/* Two producers (shards 1 and 2) and one consumer (shard 0), which sleeps on
 * an eventfd whenever the mailbox lets it. */
struct transfer {
	struct sb__mailbox *mb;
	int efd;                 /* shard 0's wake-up */
	atomic_int failed;       /* the consumer gave up: producers stop too */
	atomic_ulong wakes;      /* sends or batches that reported a wake due */
	atomic_ulong overloaded; /* sends refused for a full ring */
	unsigned long asks;      /* consumer: sleep() calls */
	unsigned long sleeps;    /* consumer: sleep() said yes */
	unsigned long timeouts;  /* consumer: a wait ran out with mail due */
	unsigned long bad;       /* consumer: messages out of order or corrupt */
	uint64_t got[3];         /* consumer: messages received per producer */
};

struct producer {
	struct transfer *t;
	unsigned shard;
};

/* Asks once whether shard 0 must be woken for what was posted, and wakes it. */
static int wake_if_due(struct transfer *t, unsigned long *wakes)
{
	uint64_t one = 1;
	if (!sb__mailbox_wake_due(t->mb, 0))
		return 0;
	(*wakes)++;
	return write(t->efd, &one, sizeof one) == sizeof one ? 0 : -1;
}

/* Shard 1 posts batches of 1 to 16 messages and asks about the wake once per
 * batch, as a router shard does once per turn; shard 2 sends one at a time.
 * A producer facing a full ring asks first: it is about to wait on shard 0. */
static void *transfer_producer(void *arg)
{
	struct producer *pr = arg;
	struct transfer *t = pr->t;
	unsigned long wakes = 0, overloaded = 0;
	unsigned batch = pr->shard == 1 ? 1 : 0, posted = 0;

	for (uint64_t seq = 0; seq < TRANSFER_COUNT; seq++) {
		struct sb__mail m = mail(pr->shard, seq);
		int wake = 0, rc;
		/* Every 1024th carries a heap object the consumer frees: under TSan
		 * this checks the writes before a send happen before the receive. */
		uint64_t *obj = NULL;
		if (seq % 1024 == 0) {
			obj = malloc(sizeof *obj);
			*obj = seq;
			m.p = obj;
		}
		while ((rc = batch > 0 ? sb__mail_post(t->mb, pr->shard, 0, &m)
				       : sb__mail_send(t->mb, pr->shard, 0, &m, &wake)) ==
		       SB_EOVERLOADED) {
			overloaded++;
			if (posted > 0 && wake_if_due(t, &wakes) != 0)
				atomic_store(&t->failed, 1);
			posted = 0;
			if (atomic_load(&t->failed)) {
				free(obj);
				goto out;
			}
			sched_yield();
		}
		if (rc != 0) {
			atomic_store(&t->failed, 1);
			free(obj);
			break;
		}
		if (batch > 0 && ++posted == batch) {
			posted = 0;
			batch = batch % 16 + 1;
			if (wake_if_due(t, &wakes) != 0)
				atomic_store(&t->failed, 1);
		}
		if (wake) {
			uint64_t one = 1;
			wakes++;
			if (write(t->efd, &one, sizeof one) != sizeof one)
				atomic_store(&t->failed, 1);
		}
	}
	if (posted > 0 && wake_if_due(t, &wakes) != 0)
		atomic_store(&t->failed, 1);
out:
	atomic_fetch_add(&t->wakes, wakes);
	atomic_fetch_add(&t->overloaded, overloaded);
	return NULL;
}

static void transfer_consume(struct transfer *t)
{
	struct sb__mail out[64];
	uint64_t total = 0;

	while (total < 2 * (uint64_t)TRANSFER_COUNT && !atomic_load(&t->failed)) {
		unsigned n = sb__mail_recv(t->mb, 0, out, 64);
		for (unsigned i = 0; i < n; i++) {
			struct sb__mail *m = &out[i];
			uint32_t from = m->type;
			if ((from != 1 && from != 2) || !is_mail(m, from, t->got[from])) {
				if (t->bad++ == 0)
					fprintf(stderr, "bad mail: type %u b %" PRIu64 "\n",
						m->type, m->b);
				continue;
			}
			if (m->b % 1024 == 0) {
				uint64_t *obj = m->p;
				if (obj == NULL || *obj != m->b)
					t->bad++;
				free(obj);
			} else if (m->p != NULL)
				t->bad++;
			t->got[from]++;
		}
		total += n;
		if (n > 0)
			continue;
		t->asks++;
		if (!sb__mailbox_sleep(t->mb, 0))
			continue;

		t->sleeps++;
		struct pollfd pfd = {.fd = t->efd, .events = POLLIN};
		if (poll(&pfd, 1, WAIT_MS) != 1) {
			fprintf(stderr, "consumer: no wake-up in %d ms with %u pending\n", WAIT_MS,
				sb__mailbox_pending(t->mb, 0));
			t->timeouts++;
			atomic_store(&t->failed, 1);
			break;
		}
		uint64_t count;
		if (read(t->efd, &count, sizeof count) != sizeof count)
			t->bad++;
		sb__mailbox_awake(t->mb, 0);
	}
}

static void test_threaded_transfer(void)
{
	struct transfer t = {.mb = sb__mailbox_new(3, 64), .efd = eventfd(0, EFD_NONBLOCK)};
	struct producer pr[2] = {{&t, 1}, {&t, 2}};
	pthread_t th[2];

	CHECK(t.mb != NULL);
	CHECK(t.efd >= 0);
	alarm(WATCHDOG_SECS);
	double start = now();
	for (int i = 0; i < 2; i++)
		CHECK_INT(pthread_create(&th[i], NULL, transfer_producer, &pr[i]), 0);
	transfer_consume(&t);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	double secs = now() - start;
	alarm(0);

	CHECK_INT(atomic_load(&t.failed), 0);
	CHECK_INT(t.timeouts, 0);
	CHECK_INT(t.bad, 0);
	CHECK_INT(t.got[1], TRANSFER_COUNT);
	CHECK_INT(t.got[2], TRANSFER_COUNT);
	/* Exactly once: nothing is left over after the last expected message. */
	struct sb__mail extra;
	CHECK_INT(sb__mail_recv(t.mb, 0, &extra, 1), 0);
	CHECK_INT(sb__mailbox_pending(t.mb, 0), 0);
	/* The 64-entry ring must have pushed back, or backpressure went untested. */
	CHECK(atomic_load(&t.overloaded) > 0);
	/* One wake per sleep() call at most: every other send found the flag
	 * clear. A call that says no can still cost a wake, when a sender saw
	 * its mark before it saw the mail. How many sleeps there are depends on
	 * the scheduler (quiet runs see a wake per 7 to 15 messages, a starved
	 * consumer one per message or so), so only the invariant is asserted;
	 * the ratio is printed. */
	unsigned long wakes = atomic_load(&t.wakes);
	CHECK(wakes <= t.asks);
	printf("     transfer: %lu messages, %lu wakes, %lu sleeps (of %lu tries), "
	       "%lu overloaded sends, %.2f s\n",
	       2 * (unsigned long)TRANSFER_COUNT, wakes, t.sleeps, t.asks,
	       atomic_load(&t.overloaded), secs);

	sb__mailbox_free(t.mb);
	close(t.efd);
}

/* Two shards hit one ball back and forth, each hit the only message its
 * sender has for the other: no later send covers for a lost wake-up, so one
 * leaves both shards asleep and the test fails on its bounded wait. */
struct rally {
	struct sb__mailbox *mb;
	int efd[2];
	atomic_int failed;
	unsigned long wakes[2], sleeps[2], bad[2];
};

struct player {
	struct rally *r;
	unsigned me;
};

static void rally_hit(struct rally *r, unsigned me, uint64_t hit)
{
	struct sb__mail m = mail(0, hit);
	int wake;
	if (sb__mail_send(r->mb, me, 1 - me, &m, &wake) != 0)
		r->bad[me]++;
	if (wake) {
		r->wakes[me]++;
		eventfd_write(r->efd[1 - me], 1);
	}
}

static void *rally_player(void *arg)
{
	struct player *pl = arg;
	struct rally *r = pl->r;
	unsigned me = pl->me, seed = 1 + me;
	uint64_t expect = me == 0 ? 1 : 0; /* the peer's next hit */
	int done = 0;

	/* Shard 0 serves: even hits are its own, odd ones its peer's. */
	if (me == 0)
		rally_hit(r, me, 0);
	while (!done && !atomic_load(&r->failed)) {
		struct sb__mail m;
		if (sb__mail_recv(r->mb, me, &m, 1) == 1) {
			if (!is_mail(&m, 0, expect)) {
				r->bad[me]++;
				atomic_store(&r->failed, 1);
				break;
			}
			if (m.b + 1 < RALLY_HITS)
				rally_hit(r, me, m.b + 1);
			/* Received the last hit, or just made it. */
			done = m.b + 2 >= RALLY_HITS;
			expect = m.b + 2;
			continue;
		}

		/* Linger a random moment before sleeping, as a shard with other
		 * work would: the peer's hit then often lands just as this shard
		 * goes to sleep, the moment a wake-up can be lost. */
		seed = seed * 1103515245u + 12345u;
		unsigned linger = (seed >> 16) % 1024;
		while (linger > 0 && sb__mailbox_pending(r->mb, me) == 0)
			linger--;
		if (!sb__mailbox_sleep(r->mb, me))
			continue;
		r->sleeps[me]++;
		struct pollfd pfd = {.fd = r->efd[me], .events = POLLIN};
		if (poll(&pfd, 1, WAIT_MS) != 1) {
			fprintf(stderr, "shard %u: no wake-up in %d ms, %u pending\n", me, WAIT_MS,
				sb__mailbox_pending(r->mb, me));
			atomic_store(&r->failed, 1);
			break;
		}
		eventfd_t count;
		eventfd_read(r->efd[me], &count);
		sb__mailbox_awake(r->mb, me);
	}
	return NULL;
}

static void test_rally_never_loses_a_wake(void)
{
	struct rally r = {.mb = sb__mailbox_new(2, 16)};
	struct player pl[2] = {{&r, 0}, {&r, 1}};
	pthread_t th[2];

	CHECK(r.mb != NULL);
	for (int i = 0; i < 2; i++) {
		r.efd[i] = eventfd(0, EFD_NONBLOCK);
		CHECK(r.efd[i] >= 0);
	}
	alarm(WATCHDOG_SECS);
	double start = now();
	for (int i = 0; i < 2; i++)
		CHECK_INT(pthread_create(&th[i], NULL, rally_player, &pl[i]), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	double secs = now() - start;
	alarm(0);

	CHECK_INT(atomic_load(&r.failed), 0);
	CHECK_INT(r.bad[0] + r.bad[1], 0);
	CHECK_INT(sb__mailbox_pending(r.mb, 0) + sb__mailbox_pending(r.mb, 1), 0);
	printf("     rally: %lu hits, %lu wakes, %lu sleeps, %.2f s\n", (unsigned long)RALLY_HITS,
	       r.wakes[0] + r.wakes[1], r.sleeps[0] + r.sleeps[1], secs);

	sb__mailbox_free(r.mb);
	for (int i = 0; i < 2; i++)
		close(r.efd[i]);
}

/* Four shards, each sending to all others while receiving from all others,
 * with credit-based flow control as a router would have: a shard may have
 * WINDOW messages unacknowledged per peer, and the peer returns credit in an
 * ACK for every ACK_EVERY it takes. A shard out of credit has to wait for
 * mail, so the shards sleep and wake each other all the time. */
#define NSTRESS   4
#define WINDOW    48
#define ACK_EVERY 16
#define ACK       0x80000000u /* in .a: the message returns .b credits */

/* Data in flight per ring stays under WINDOW, acks under WINDOW / ACK_EVERY
 * + 1: the rings never fill, and a shard never waits on anything but mail. */
_Static_assert(WINDOW + WINDOW / ACK_EVERY + 1 < 64, "ring of 64 holds the window");

struct stress {
	struct sb__mailbox *mb;
	int efd[NSTRESS];
	atomic_int failed;
	atomic_ulong wakes, asks, sleeps, messages, overloaded;
	unsigned long bad[NSTRESS];
};

struct shard {
	struct stress *s;
	unsigned me;
	uint64_t sent[NSTRESS];   /* data messages sent to each peer */
	uint64_t got[NSTRESS];    /* data messages received from each */
	unsigned credit[NSTRESS]; /* data messages it may still send to each */
	unsigned owed[NSTRESS];   /* credit to return to each */
	int wake_to[NSTRESS];     /* peers to wake at the end of this turn */
	unsigned long wakes, asks, sleeps, overloaded, received;
};

/* Sends one message; 1 if it went, 0 if the ring was full. */
static int stress_send(struct shard *sh, unsigned to, struct sb__mail *m)
{
	int wake;
	int rc = sb__mail_send(sh->s->mb, sh->me, to, m, &wake);
	if (rc == SB_EOVERLOADED) {
		sh->overloaded++;
		return 0;
	}
	if (rc != 0)
		sh->s->bad[sh->me]++;
	sh->wake_to[to] |= wake;
	sh->wakes += (unsigned long)wake;
	return 1;
}

/* One turn of a shard's loop: acks, data, receive, then the wakes its sends
 * asked for, batched at the end. Returns whether anything moved. */
static int stress_turn(struct shard *sh)
{
	struct stress *s = sh->s;
	unsigned me = sh->me;
	int moved = 0;

	for (unsigned to = 0; to < NSTRESS; to++) {
		if (to == me)
			continue;
		/* The last ack of a peer's stream goes out short, or the peer
		 * would wait for ever on its last credits. */
		if (sh->owed[to] >= ACK_EVERY ||
		    (sh->owed[to] > 0 && sh->got[to] == STRESS_COUNT)) {
			struct sb__mail m = {.type = me, .a = to | ACK, .b = sh->owed[to]};
			if (stress_send(sh, to, &m)) {
				sh->owed[to] = 0;
				moved = 1;
			}
		}
		for (int burst = 0; burst < 16 && sh->credit[to] > 0 && sh->sent[to] < STRESS_COUNT;
		     burst++) {
			struct sb__mail m = mail(me, sh->sent[to]);
			m.a = to;
			if (!stress_send(sh, to, &m))
				break;
			sh->sent[to]++;
			sh->credit[to]--;
			moved = 1;
		}
	}

	struct sb__mail out[32];
	unsigned n = sb__mail_recv(s->mb, me, out, 32);
	for (unsigned i = 0; i < n; i++) {
		uint32_t from = out[i].type;
		if (from >= NSTRESS || from == me) {
			s->bad[me]++;
		} else if (out[i].a == (me | ACK)) {
			sh->credit[from] += (unsigned)out[i].b;
			if (sh->credit[from] > WINDOW)
				s->bad[me]++;
		} else if (out[i].a != me || out[i].b != sh->got[from] ||
			   out[i].c != ~sh->got[from]) {
			s->bad[me]++;
		} else {
			sh->got[from]++;
			sh->owed[from]++;
			sh->received++;
		}
	}
	moved |= n > 0;

	for (unsigned to = 0; to < NSTRESS; to++) {
		uint64_t one = 1;
		if (sh->wake_to[to] && write(s->efd[to], &one, sizeof one) != sizeof one)
			s->bad[me]++;
		sh->wake_to[to] = 0;
	}
	return moved;
}

/* Done when all its data is out and acknowledged, all its peers' data is in
 * and acknowledged: then no one sends it anything any more. */
static int stress_done(const struct shard *sh)
{
	for (unsigned p = 0; p < NSTRESS; p++)
		if (p != sh->me && (sh->sent[p] < STRESS_COUNT || sh->credit[p] < WINDOW ||
				    sh->got[p] < STRESS_COUNT || sh->owed[p] > 0))
			return 0;
	return 1;
}

static void *stress_shard(void *arg)
{
	struct shard *sh = arg;
	struct stress *s = sh->s;
	unsigned me = sh->me;

	for (unsigned p = 0; p < NSTRESS; p++)
		sh->credit[p] = WINDOW;
	while (!atomic_load(&s->failed) && !stress_done(sh)) {
		if (stress_turn(sh))
			continue;
		/* Nothing moved: it waits for mail, credit or data, and only a
		 * wake from a sender can bring it. */
		sh->asks++;
		if (!sb__mailbox_sleep(s->mb, me))
			continue;
		sh->sleeps++;
		struct pollfd pfd = {.fd = s->efd[me], .events = POLLIN};
		if (poll(&pfd, 1, WAIT_MS) != 1) {
			fprintf(stderr, "shard %u: no wake-up in %d ms, %u pending\n", me, WAIT_MS,
				sb__mailbox_pending(s->mb, me));
			atomic_store(&s->failed, 1);
			break;
		}
		uint64_t count;
		if (read(s->efd[me], &count, sizeof count) != sizeof count)
			s->bad[me]++;
		sb__mailbox_awake(s->mb, me);
	}
	atomic_fetch_add(&s->wakes, sh->wakes);
	atomic_fetch_add(&s->asks, sh->asks);
	atomic_fetch_add(&s->sleeps, sh->sleeps);
	atomic_fetch_add(&s->messages, sh->received);
	atomic_fetch_add(&s->overloaded, sh->overloaded);
	return NULL;
}

static void test_stress_all_to_all(void)
{
	struct stress s = {.mb = sb__mailbox_new(NSTRESS, 64)};
	struct shard sh[NSTRESS];
	pthread_t th[NSTRESS];

	CHECK(s.mb != NULL);
	for (unsigned i = 0; i < NSTRESS; i++) {
		s.efd[i] = eventfd(0, EFD_NONBLOCK);
		CHECK(s.efd[i] >= 0);
	}
	alarm(WATCHDOG_SECS);
	double start = now();
	for (unsigned i = 0; i < NSTRESS; i++) {
		sh[i] = (struct shard){.s = &s, .me = i};
		CHECK_INT(pthread_create(&th[i], NULL, stress_shard, &sh[i]), 0);
	}
	for (unsigned i = 0; i < NSTRESS; i++)
		pthread_join(th[i], NULL);
	double secs = now() - start;
	alarm(0);

	CHECK_INT(atomic_load(&s.failed), 0);
	for (unsigned i = 0; i < NSTRESS; i++) {
		CHECK_INT(s.bad[i], 0);
		CHECK_INT(sb__mailbox_pending(s.mb, i), 0);
	}
	unsigned long messages = atomic_load(&s.messages);
	CHECK_INT(messages, NSTRESS * (NSTRESS - 1) * (unsigned long)STRESS_COUNT);
	CHECK(atomic_load(&s.wakes) <= atomic_load(&s.asks));
	CHECK_INT(atomic_load(&s.overloaded), 0);
	printf("     stress: %lu messages, %lu wakes, %lu sleeps (of %lu tries), "
	       "%lu overloaded sends, %.2f s\n",
	       messages, atomic_load(&s.wakes), atomic_load(&s.sleeps), atomic_load(&s.asks),
	       atomic_load(&s.overloaded), secs);

	sb__mailbox_free(s.mb);
	for (unsigned i = 0; i < NSTRESS; i++)
		close(s.efd[i]);
}

int main(void)
{
	signal(SIGALRM, watchdog_fired);
	RUN(test_fifo_per_sender);
	RUN(test_round_robin_across_senders);
	RUN(test_full_ring_pushes_back);
	RUN(test_bad_arguments);
	RUN(test_wake_once_per_sleep);
	RUN(test_threaded_transfer);
	RUN(test_rally_never_loses_a_wake);
	RUN(test_stress_all_to_all);
	return TEST_EXIT();
}
