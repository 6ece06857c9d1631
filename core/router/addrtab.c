/* Connections per remote address: a counter per address in one table that
 * every shard's accepts and closes update under a mutex. */
#include "router/addrtab.h"

static uint64_t key(uint32_t addr)
{
	return 1ull << 32 | addr; /* never 0, which the map reserves */
}

void sb__addrtab_init(struct sb__addrtab *t)
{
	pthread_mutex_init(&t->lock, NULL);
	sb__idmap_init(&t->counts);
}

void sb__addrtab_destroy(struct sb__addrtab *t)
{
	sb__idmap_destroy(&t->counts);
	pthread_mutex_destroy(&t->lock);
}

int sb__addrtab_take(struct sb__addrtab *t, uint32_t addr, uint32_t limit)
{
	int rc = 1;
	pthread_mutex_lock(&t->lock);
	uint64_t n = sb__idmap_add(&t->counts, key(addr), 1);
	if (n == 0)
		rc = -1;
	else if (n > limit) {
		sb__idmap_add(&t->counts, key(addr), -1);
		rc = 0;
	}
	pthread_mutex_unlock(&t->lock);
	return rc;
}

void sb__addrtab_give(struct sb__addrtab *t, uint32_t addr)
{
	pthread_mutex_lock(&t->lock);
	if (sb__idmap_add(&t->counts, key(addr), -1) == 0)
		sb__idmap_del(&t->counts, key(addr));
	pthread_mutex_unlock(&t->lock);
}
