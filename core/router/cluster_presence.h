/* Presence and callers' identities across routers (docs/cluster.md,
 * "Presence and identity"): each shard publishes its own peers' presence
 * events and answers for them when another router asks; every shard tells
 * its presence subscribers about other routers' peers as about its own,
 * under a peer id of this router's (an alias that never clashes with a
 * local one). A call to another router carries its caller's identity, so
 * the handler there is introduced to it as to a local caller. Reached only
 * with a cluster connection (sh->xs != NULL). */
#ifndef SB_ROUTER_CLUSTER_PRESENCE_H
#define SB_ROUTER_CLUSTER_PRESENCE_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/nats.h"
#include "router/shard-t.h"

struct sb__xrouter;

/** The router's table of other routers' peers. @return 0 or SB_ENOMEM */
int sb__xpres_router_init(struct sb__xrouter *xr);
void sb__xpres_router_free(struct sb__xrouter *xr);

/** The shard's part and its subscriptions, once its connection exists.
 *  @return 0 or SB_ENOMEM */
int sb__xpres_start(struct sb__shard *sh);
void sb__xpres_stop(struct sb__shard *sh);

/** The shard's connection is ready (again): its peers are told to every
 *  router, and every router heard from is asked for its peers anew. */
void sb__xpres_connected(struct sb__shard *sh);

/** This shard's peer @p peer_id connected, is draining or is leaving (its
 *  record still in the replica): the other routers are told. */
void sb__xpres_local(struct sb__shard *sh, uint32_t peer_id, unsigned event);

/** A heartbeat of router @p r (its id, @p len bytes): one not asked yet
 *  is asked for its peers. */
void sb__xpres_heard(struct sb__shard *sh, const char *r, size_t len);

/** Router h (its id's hash) was declared dead: its peers are announced
 *  disconnected to this shard's subscribers. */
void sb__xpres_router_gone(struct sb__shard *sh, uint64_t h);

/** Every half second: peers long gone are forgotten (shard 0). */
void sb__xpres_tick(struct sb__shard *sh);

/** The NATS header block for SEND or REQUEST frame f (`from` patched in)
 *  from a caller of this role: Sb-Svc for a service, Sb-From with the
 *  caller's identity; NULL with *len 0 for none. Valid until the next call. */
const uint8_t *sb__xpres_hdr(struct sb__shard *sh, const uint8_t *f, int service, size_t *len);

/** The peer id here of the caller of a call from another router (its
 *  Sb-From header), its identity known from then on; 0 without one. */
uint32_t sb__xpres_caller(struct sb__shard *sh, const struct sb__nats_msg *nm);

/** The identity event of another router's peer known here as @p alias:
 *  a buffer holding a reference for the caller, or NULL. */
struct sb__buf *sb__xpres_ident(struct sb__shard *sh, uint32_t alias, uint32_t *len);

#endif
