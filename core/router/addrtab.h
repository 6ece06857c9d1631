/* Open connections per remote address, over all shards: the per-address
 * limit. A mutex guards it; it is touched only at accept and close. */
#ifndef SB_CORE_ADDRTAB_H
#define SB_CORE_ADDRTAB_H

#include <pthread.h>
#include <stdint.h>

#include "common/idmap.h"

struct sb__addrtab {
	pthread_mutex_t lock;
	struct sb__idmap counts; /* IPv4 address (with bit 32 set) -> open connections */
};

void sb__addrtab_init(struct sb__addrtab *t);
void sb__addrtab_destroy(struct sb__addrtab *t);

/**
 * Take a place for a connection from @p addr (IPv4, network order).
 * @return 1 taken (give it back with sb__addrtab_give), 0 refused: @p limit
 *         connections from there are open; -1 not counted (no memory: the
 *         connection is let in rather than refused for our failure)
 */
int sb__addrtab_take(struct sb__addrtab *t, uint32_t addr, uint32_t limit);

void sb__addrtab_give(struct sb__addrtab *t, uint32_t addr);

#endif
