/* The u64 -> u64 map behind cancels and handler load: against a plain
 * array model through a million random operations on clustered keys (where
 * linear probing and backward-shift deletion have work to do), plus the
 * edges: growth, sequential keys, adds that create and go to zero, inserts
 * that leave a present key alone. */
#include <stdlib.h>

#include "common/idmap.h"
#include "support/testlib.h"

enum { KEYS = 4096, OPS = 1000000 };

static uint64_t rng = 0x2545f4914f6cdd1dull;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* Keys drawn from a small set, so puts, dels and adds keep hitting live
 * entries, and from two shapes: sequential endpoint-like ids and mixed
 * pair keys. */
static uint64_t key_of(unsigned i)
{
	return i % 2 ? (uint64_t)i << 32 | 7 : sb__idmap_key(i, 99);
}

static void test_against_model(void)
{
	static uint64_t model[KEYS];
	static uint8_t live[KEYS];
	struct sb__idmap m;
	unsigned count = 0, wrong = 0;

	sb__idmap_init(&m);
	for (unsigned op = 0; op < OPS && wrong == 0; op++) {
		unsigned i = (unsigned)(next() % KEYS);
		uint64_t k = key_of(i), v = next() | 1;
		switch (next() % 5) {
		case 0:
			CHECK_INT(sb__idmap_put(&m, k, v), 0);
			count += !live[i];
			live[i] = 1;
			model[i] = v;
			break;
		case 1:
			sb__idmap_del(&m, k);
			count -= live[i];
			live[i] = 0;
			break;
		case 2: {
			int64_t d = (int64_t)(next() % 5) - 2;
			uint64_t got = sb__idmap_add(&m, k, d);
			count += !live[i];
			model[i] = (live[i] ? model[i] : 0) + (uint64_t)d;
			live[i] = 1;
			wrong += got != model[i];
			break;
		}
		case 3: { /* insert only if absent; a present value stays */
			uint64_t old = 0;
			int rc = sb__idmap_put_new(&m, k, v, &old);
			wrong += rc != (live[i] ? 1 : 0) || (live[i] && old != model[i]);
			if (!live[i]) {
				count++;
				live[i] = 1;
				model[i] = v;
			}
			break;
		}
		default:
			wrong += sb__idmap_get(&m, k) != (live[i] ? model[i] : 0);
		}
		wrong += m.count != count;
	}
	CHECK_INT(wrong, 0);
	for (unsigned i = 0; i < KEYS; i++)
		if (sb__idmap_get(&m, key_of(i)) != (live[i] ? model[i] : 0)) {
			CHECK(!"an entry differs from the model at the end");
			break;
		}
	sb__idmap_destroy(&m);
}

/* Sequential keys are what endpoints look like: all must stay findable
 * through growth, and deleting every other one must keep the rest. */
static void test_sequential_keys_through_growth(void)
{
	struct sb__idmap m;
	sb__idmap_init(&m);
	for (uint64_t k = 1; k <= 100000; k++)
		CHECK_INT(sb__idmap_put(&m, k, k * 3), 0);
	for (uint64_t k = 2; k <= 100000; k += 2)
		sb__idmap_del(&m, k);
	unsigned bad = 0;
	for (uint64_t k = 1; k <= 100000; k++)
		bad += sb__idmap_get(&m, k) != (k % 2 ? k * 3 : 0);
	CHECK_INT(bad, 0);
	CHECK_INT(m.count, 50000);
	sb__idmap_destroy(&m);
}

static void test_add_counts_from_zero(void)
{
	struct sb__idmap m;
	sb__idmap_init(&m);
	CHECK_INT(sb__idmap_add(&m, 42, 1), 1);
	CHECK_INT(sb__idmap_add(&m, 42, 1), 2);
	CHECK_INT(sb__idmap_add(&m, 42, -2), 0);
	CHECK_INT(m.count, 1); /* an entry at zero stays until deleted */
	CHECK_INT(sb__idmap_get(&m, 42), 0);
	sb__idmap_del(&m, 42);
	CHECK_INT(m.count, 0);
	sb__idmap_destroy(&m);
}

int main(void)
{
	RUN(test_against_model);
	RUN(test_sequential_keys_through_growth);
	RUN(test_add_counts_from_zero);
	return TEST_EXIT();
}
