/* Request table tests: a shard forwards requests and matches replies by id;
 * a late or forged id never reaches an entry that is not its own. */
#include <stdint.h>
#include <stdlib.h>

#include <switchboard/error.h>

#include "router/reqtab.h"
#include "support/testlib.h"

/* A request entry as the router might keep one; 40 bytes, not a multiple
 * of 16, so the table's rounding shows. */
struct req {
	uint64_t id;     /* the id it was allocated under, as the test saw it */
	uint64_t serial; /* which allocation of the test this is */
	uint8_t peer[24];
};

static uint64_t rng = 0x2545f4914f6cdd1du;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static uint64_t serials;

/* Allocates as the router does and checks what every allocation promises:
 * a non-zero id of our shard, a zeroed and aligned entry, found by its id. */
static struct req *alloc_req(struct sb__reqtab *t, unsigned shard, uint64_t *id)
{
	*id = 0;
	struct req *r = sb__reqtab_alloc(t, id);
	if (r == NULL)
		return NULL;
	CHECK(*id != 0);
	CHECK_INT(sb__reqid_shard(*id), shard);
	CHECK_INT((uintptr_t)r % 16, 0);
	CHECK(r->id == 0 && r->serial == 0 && r->peer[23] == 0);
	CHECK(sb__reqtab_get(t, *id) == r);
	r->id = *id;
	r->serial = ++serials;
	r->peer[23] = 0xab;
	return r;
}

static void test_alloc_get_free_round_trip(void)
{
	struct sb__reqtab t;
	uint64_t a, b;

	CHECK_INT(sb__reqtab_init(&t, 7, sizeof(struct req), 100), 0);
	CHECK_INT(sb__reqtab_live(&t), 0);
	struct req *ra = alloc_req(&t, 7, &a);
	struct req *rb = alloc_req(&t, 7, &b);
	CHECK(ra != NULL && rb != NULL && ra != rb);
	CHECK(a != b);
	CHECK_INT(sb__reqtab_live(&t), 2);
	CHECK(sb__reqtab_get(&t, a) == ra);
	CHECK(sb__reqtab_get(&t, b) == rb);

	sb__reqtab_free(&t, a);
	CHECK(sb__reqtab_get(&t, a) == NULL);
	CHECK(sb__reqtab_get(&t, b) == rb);
	CHECK_INT(sb__reqtab_live(&t), 1);
	/* A second free of the same id, as a duplicate reply might cause. */
	sb__reqtab_free(&t, a);
	CHECK_INT(sb__reqtab_live(&t), 1);
	CHECK(sb__reqtab_get(&t, b) == rb);

	/* The slot freed last comes back first, under a new id. */
	uint64_t c;
	struct req *rc = alloc_req(&t, 7, &c);
	CHECK(rc == ra);
	CHECK(c != a);
	CHECK(sb__reqtab_get(&t, a) == NULL);
	sb__reqtab_free(&t, b);
	sb__reqtab_free(&t, c);
	CHECK_INT(sb__reqtab_live(&t), 0);
	sb__reqtab_destroy(&t);
}

static void test_stale_ids_stay_dead_when_the_slot_is_reused(void)
{
	enum { REUSES = 200000 };
	uint64_t *stale = malloc(REUSES * sizeof *stale);
	struct sb__reqtab t;
	uint64_t keep, id;

	CHECK_INT(sb__reqtab_init(&t, 1, sizeof(struct req), 1000), 0);
	struct req *neighbour = alloc_req(&t, 1, &keep);
	struct req *hot = alloc_req(&t, 1, &id);
	/* One request at a time, as on a quiet shard: the same slot every time. */
	for (unsigned i = 0; i < REUSES; i++) {
		sb__reqtab_free(&t, id);
		stale[i] = id;
		CHECK(alloc_req(&t, 1, &id) == hot);
		CHECK(sb__reqtab_get(&t, stale[i]) == NULL);
	}
	/* Every old id, asked while the slot is live under the newest one. */
	unsigned found = 0;
	for (unsigned i = 0; i < REUSES; i++) {
		found += sb__reqtab_get(&t, stale[i]) != NULL;
		sb__reqtab_free(&t, stale[i]); /* a late duplicate: no effect */
	}
	CHECK_INT(found, 0);
	CHECK(sb__reqtab_get(&t, id) == hot);
	CHECK(sb__reqtab_get(&t, keep) == neighbour);
	CHECK_INT(hot->id, id);
	CHECK_INT(sb__reqtab_live(&t), 2);
	sb__reqtab_destroy(&t);
	free(stale);
}

static void test_generation_wrap_never_makes_id_zero(void)
{
	/* 2^32 reuses of one slot are too slow for a unit test; the step that
	 * wraps is checked directly. */
	CHECK_INT(sb__reqid_gen_next(1), 2);
	CHECK_INT(sb__reqid_gen_next(UINT32_MAX - 1), UINT32_MAX);
	CHECK_INT(sb__reqid_gen_next(UINT32_MAX), 1);
	CHECK(sb__reqid_make(0, sb__reqid_gen_next(UINT32_MAX), 0) != 0);
	/* The layout round-trips through the id alone. */
	uint64_t id = sb__reqid_make(255, UINT32_MAX, SB__REQID_SLOT_MASK);
	CHECK(id == UINT64_MAX);
	CHECK_INT(sb__reqid_shard(id), 255);
	CHECK_INT(sb__reqid_shard(sb__reqid_make(3, 1, 0)), 3);
	CHECK(sb__reqid_make(0, 1, 0) == (uint64_t)1 << 24);
}

static void test_ids_of_another_shard_are_refused(void)
{
	struct sb__reqtab t3, t4;
	uint64_t id3, id4;

	CHECK_INT(sb__reqtab_init(&t3, 3, sizeof(struct req), 10), 0);
	CHECK_INT(sb__reqtab_init(&t4, 4, sizeof(struct req), 10), 0);
	/* Same slot, same generation: only the shard tells them apart. */
	struct req *r3 = alloc_req(&t3, 3, &id3);
	struct req *r4 = alloc_req(&t4, 4, &id4);
	CHECK_INT(id3 & ~((uint64_t)0xff << 56), id4 & ~((uint64_t)0xff << 56));
	CHECK(sb__reqtab_get(&t3, id4) == NULL);
	CHECK(sb__reqtab_get(&t4, id3) == NULL);
	sb__reqtab_free(&t3, id4);
	CHECK_INT(sb__reqtab_live(&t3), 1);
	CHECK(sb__reqtab_get(&t3, id3) == r3);
	CHECK(sb__reqtab_get(&t4, id4) == r4);
	for (unsigned s = 0; s < 256; s++) {
		uint64_t forged = (id3 & ~((uint64_t)0xff << 56)) | (uint64_t)s << 56;
		CHECK((sb__reqtab_get(&t3, forged) != NULL) == (s == 3));
	}
	sb__reqtab_destroy(&t3);
	sb__reqtab_destroy(&t4);

	/* Shards 0 and 255, the edges of the field. */
	struct sb__reqtab t0, t255;
	uint64_t id0, id255;
	CHECK_INT(sb__reqtab_init(&t0, 0, 1, 1), 0);
	CHECK_INT(sb__reqtab_init(&t255, 255, 1, 1), 0);
	CHECK(sb__reqtab_alloc(&t0, &id0) != NULL);
	CHECK(sb__reqtab_alloc(&t255, &id255) != NULL);
	CHECK_INT(sb__reqid_shard(id0), 0);
	CHECK_INT(sb__reqid_shard(id255), 255);
	CHECK(id0 != 0);
	CHECK(sb__reqtab_get(&t0, id255) == NULL);
	CHECK(sb__reqtab_get(&t255, id0) == NULL);
	sb__reqtab_destroy(&t0);
	sb__reqtab_destroy(&t255);
}

static void test_garbage_ids_are_refused(void)
{
	enum { LIVE = 5000, TRIES = 1000000 };
	uint64_t *ids = malloc(LIVE * sizeof *ids);
	struct sb__reqtab t;

	CHECK_INT(sb__reqtab_init(&t, 9, sizeof(struct req), 2 * LIVE), 0);
	/* Free before asking, too: freed slots must not answer either. */
	for (unsigned i = 0; i < LIVE; i++)
		alloc_req(&t, 9, &ids[i]);
	for (unsigned i = 0; i < LIVE; i += 2)
		sb__reqtab_free(&t, ids[i]);

	CHECK(sb__reqtab_get(&t, 0) == NULL);
	CHECK(sb__reqtab_get(&t, UINT64_MAX) == NULL);
	CHECK(sb__reqtab_get(&t, (uint64_t)9 << 56) == NULL); /* gen 0, slot 0 */
	uint32_t slot1 = (uint32_t)ids[1] & SB__REQID_SLOT_MASK, gen1 = (uint32_t)(ids[1] >> 24);
	CHECK(sb__reqtab_get(&t, sb__reqid_make(9, 0, slot1)) == NULL);
	CHECK(sb__reqtab_get(&t, sb__reqid_make(9, gen1 + 1, slot1)) == NULL);
	CHECK(sb__reqtab_get(&t, sb__reqid_make(9, gen1, slot1)) != NULL); /* the real one */
	/* Every bit of an id counts. With a shard or generation bit flipped a
	 * live id is refused, and freeing it leaves the entry alone; with a
	 * slot bit flipped it names another slot, found only if that slot
	 * really is live under exactly that id. */
	struct req *r1 = sb__reqtab_get(&t, ids[1]);
	for (unsigned b = 0; b < 64; b++) {
		uint64_t flipped = ids[1] ^ (uint64_t)1 << b;
		struct req *r = sb__reqtab_get(&t, flipped);
		if (b >= SB__REQID_GEN_SHIFT) {
			CHECK(r == NULL);
			sb__reqtab_free(&t, flipped);
		} else
			CHECK(r == NULL || (r != r1 && sb__reqtab_id_of(&t, r) == flipped));
	}
	CHECK(sb__reqtab_get(&t, ids[1]) == r1);
	/* The id a freed slot will issue next is guessable; it must not open
	 * the slot before it is issued. */
	uint32_t slot0 = (uint32_t)ids[0] & SB__REQID_SLOT_MASK, gen0 = (uint32_t)(ids[0] >> 24);
	uint64_t next0 = sb__reqid_make(9, sb__reqid_gen_next(gen0), slot0);
	CHECK(sb__reqtab_get(&t, next0) == NULL);
	sb__reqtab_free(&t, next0);
	CHECK_INT(sb__reqtab_live(&t), LIVE / 2);
	CHECK(sb__reqtab_get(&t, sb__reqid_make(9, 1, LIVE + 7)) == NULL); /* never used */
	CHECK(sb__reqtab_get(&t, sb__reqid_make(9, 1, SB__REQID_SLOT_MASK)) == NULL);
	sb__reqtab_free(&t, 0);
	sb__reqtab_free(&t, UINT64_MAX);

	/* Random values, then random values in our shard and among the slots in
	 * use, where only the generation stands between them and an entry. */
	unsigned wrong = 0;
	for (unsigned i = 0; i < TRIES; i++) {
		uint64_t id = rnd();
		if (i % 2)
			id = sb__reqid_make(9, (uint32_t)rnd(), (uint32_t)(rnd() % LIVE));
		struct req *r = sb__reqtab_get(&t, id);
		/* Only a real live id may be found: chance says never. */
		if (r != NULL && r->id != id)
			wrong++;
		sb__reqtab_free(&t, id);
	}
	CHECK_INT(wrong, 0);
	CHECK_INT(sb__reqtab_live(&t), LIVE / 2);
	for (unsigned i = 1; i < LIVE; i += 2)
		CHECK(sb__reqtab_get(&t, ids[i]) != NULL);
	sb__reqtab_destroy(&t);

	/* A destroyed table answers nothing and does not crash. */
	CHECK(sb__reqtab_get(&t, ids[1]) == NULL);
	CHECK(sb__reqtab_alloc(&t, &ids[0]) == NULL);
	free(ids);
}

static void test_max_entries_enforced(void)
{
	struct sb__reqtab t;
	uint64_t ids[SB__REQTAB_CHUNK + 1], extra;

	/* One past a chunk, so the last chunk is a short one. */
	CHECK_INT(sb__reqtab_init(&t, 2, sizeof(struct req), SB__REQTAB_CHUNK + 1), 0);
	for (unsigned i = 0; i <= SB__REQTAB_CHUNK; i++)
		CHECK(alloc_req(&t, 2, &ids[i]) != NULL);
	CHECK(sb__reqtab_alloc(&t, &extra) == NULL);
	CHECK_INT(sb__reqtab_live(&t), SB__REQTAB_CHUNK + 1);

	/* Overload passes as soon as one request finishes. */
	sb__reqtab_free(&t, ids[100]);
	CHECK(alloc_req(&t, 2, &extra) != NULL);
	CHECK(sb__reqtab_alloc(&t, &extra) == NULL);
	sb__reqtab_destroy(&t);

	CHECK_INT(sb__reqtab_init(&t, 2, 8, 1), 0);
	CHECK(sb__reqtab_alloc(&t, &extra) != NULL);
	CHECK(sb__reqtab_alloc(&t, &extra) == NULL);
	sb__reqtab_destroy(&t);

	CHECK_INT(sb__reqtab_init(&t, 256, 8, 10), SB_EINVAL);
	CHECK_INT(sb__reqtab_init(&t, 0, 0, 10), SB_EINVAL);
	CHECK_INT(sb__reqtab_init(&t, 0, 8, 0), SB_EINVAL);
	CHECK_INT(sb__reqtab_init(&t, 0, 8, SB__REQTAB_MAX + 1), SB_EINVAL);
	CHECK_INT(sb__reqtab_init(&t, 0, SIZE_MAX, 10), SB_EINVAL);
	sb__reqtab_destroy(&t); /* after a failed init: harmless */
	CHECK_INT(sb__reqtab_init(&t, 0, 8, SB__REQTAB_MAX), 0);
	sb__reqtab_destroy(&t);
}

static void test_memory_follows_the_high_water_mark(void)
{
	struct sb__reqtab t;
	uint64_t id;

	/* A table sized for the worst case costs its chunk table, not its
	 * entries, until requests come. */
	CHECK_INT(sb__reqtab_init(&t, 0, sizeof(struct req), SB__REQTAB_MAX), 0);
	CHECK(t.chunks[0] == NULL);
	for (unsigned i = 0; i < 10; i++)
		alloc_req(&t, 0, &id);
	CHECK(t.chunks[0] != NULL && t.chunks[1] == NULL);
	for (unsigned i = 10; i <= SB__REQTAB_CHUNK; i++)
		alloc_req(&t, 0, &id);
	CHECK(t.chunks[1] != NULL && t.chunks[2] == NULL);
	/* Ids naming the first slots no one has used, in a chunk not yet
	 * allocated: refused, not followed. */
	sb__reqtab_destroy(&t);
	CHECK_INT(sb__reqtab_init(&t, 0, sizeof(struct req), SB__REQTAB_MAX), 0);
	for (unsigned i = 0; i < SB__REQTAB_CHUNK; i++)
		alloc_req(&t, 0, &id);
	for (uint32_t gen = 0; gen < 3; gen++)
		for (uint32_t slot = SB__REQTAB_CHUNK; slot < SB__REQTAB_CHUNK + 3; slot++)
			CHECK(sb__reqtab_get(&t, sb__reqid_make(0, gen, slot)) == NULL);
	sb__reqtab_destroy(&t);
}

static void test_pointers_stay_put_while_the_table_grows(void)
{
	enum { N = 5 * SB__REQTAB_CHUNK + 17 };
	struct req **ptrs = malloc(N * sizeof *ptrs);
	uint64_t *ids = malloc(N * sizeof *ids);
	struct sb__reqtab t;

	CHECK_INT(sb__reqtab_init(&t, 5, sizeof(struct req), N), 0);
	for (unsigned i = 0; i < N; i++) {
		ptrs[i] = alloc_req(&t, 5, &ids[i]);
		/* The first entry is still where it was, with what we wrote. */
		if (i % 1000 == 0)
			CHECK(sb__reqtab_get(&t, ids[0]) == ptrs[0] && ptrs[0]->id == ids[0]);
	}
	unsigned bad = 0;
	for (unsigned i = 0; i < N; i++)
		bad += sb__reqtab_get(&t, ids[i]) != ptrs[i] || ptrs[i]->id != ids[i] ||
		       ptrs[i]->peer[23] != 0xab;
	CHECK_INT(bad, 0);
	sb__reqtab_destroy(&t);
	free(ptrs);
	free(ids);
}

static void test_id_of_matches(void)
{
	struct sb__reqtab t;
	uint64_t ids[300];
	struct req *r[300];

	CHECK_INT(sb__reqtab_init(&t, 200, sizeof(struct req), 300), 0);
	for (unsigned round = 0; round < 3; round++) {
		for (unsigned i = 0; i < 300; i++)
			r[i] = alloc_req(&t, 200, &ids[i]);
		for (unsigned i = 0; i < 300; i++)
			CHECK(sb__reqtab_id_of(&t, r[i]) == ids[i]);
		for (unsigned i = 0; i < 300; i++)
			sb__reqtab_free(&t, ids[i]);
	}
	/* Freed: no id, rather than the id of whoever gets the slot next. */
	CHECK(sb__reqtab_id_of(&t, r[0]) == 0);
	sb__reqtab_destroy(&t);
}

/* The model: the live ids and entries in an array, the dead ids in a ring. */
static void test_million_ops_agree_with_a_model(void)
{
	enum { MAX = 3 * SB__REQTAB_CHUNK, OPS = 1000000, DEAD = 8192 };
	uint64_t *live = malloc(MAX * sizeof *live);
	struct req **ent = malloc(MAX * sizeof *ent);
	uint64_t *dead = calloc(DEAD, sizeof *dead);
	unsigned nlive = 0, ndead = 0;
	struct sb__reqtab t;
	unsigned fails = 0;

	CHECK_INT(sb__reqtab_init(&t, 42, sizeof(struct req), MAX), 0);
	/* Alloc-heavy and free-heavy phases, so the live count sweeps from
	 * empty to the limit and back, across chunk edges. */
	for (unsigned op = 0; op < OPS; op++) {
		unsigned alloc_pct = (op / 50000) % 2 ? 35 : 65;
		if (rnd() % 100 < alloc_pct) {
			uint64_t id;
			struct req *r = alloc_req(&t, 42, &id);
			if (nlive == MAX) {
				fails += r != NULL;
			} else if (r == NULL) {
				fails++;
			} else {
				live[nlive] = id;
				ent[nlive++] = r;
			}
		} else if (nlive > 0) {
			unsigned i = (unsigned)(rnd() % nlive);
			sb__reqtab_free(&t, live[i]);
			fails += sb__reqtab_get(&t, live[i]) != NULL;
			dead[ndead++ % DEAD] = live[i];
			live[i] = live[--nlive];
			ent[i] = ent[nlive];
		}
		fails += sb__reqtab_live(&t) != nlive;
		/* A random live id finds its own entry, untouched by others. */
		if (nlive > 0) {
			unsigned i = (unsigned)(rnd() % nlive);
			struct req *r = sb__reqtab_get(&t, live[i]);
			fails += r != ent[i] || r->id != live[i] ||
				 sb__reqtab_id_of(&t, r) != live[i];
		}
		/* A random dead id finds nothing, even if its slot is live again. */
		if (ndead > 0)
			fails += sb__reqtab_get(&t, dead[rnd() % (ndead < DEAD ? ndead : DEAD)]) !=
				 NULL;
		if (op % 100000 == 0 || op == OPS - 1) {
			for (unsigned i = 0; i < nlive; i++)
				fails += sb__reqtab_get(&t, live[i]) != ent[i] ||
					 ent[i]->id != live[i];
			for (unsigned i = 0; i < ndead && i < DEAD; i++)
				fails += sb__reqtab_get(&t, dead[i]) != NULL;
		}
		if (fails != 0) {
			fprintf(stderr, "model and table disagree at op %u\n", op);
			break;
		}
	}
	CHECK_INT(fails, 0);
	sb__reqtab_destroy(&t);
	free(live);
	free(ent);
	free(dead);
}

int main(void)
{
	RUN(test_alloc_get_free_round_trip);
	RUN(test_stale_ids_stay_dead_when_the_slot_is_reused);
	RUN(test_generation_wrap_never_makes_id_zero);
	RUN(test_ids_of_another_shard_are_refused);
	RUN(test_garbage_ids_are_refused);
	RUN(test_max_entries_enforced);
	RUN(test_memory_follows_the_high_water_mark);
	RUN(test_pointers_stay_put_while_the_table_grows);
	RUN(test_id_of_matches);
	RUN(test_million_ops_agree_with_a_model);
	return TEST_EXIT();
}
