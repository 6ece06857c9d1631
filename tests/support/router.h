/* The test router: an in-process router with the suite's usual settings on
 * a free port. A test starts its own and stops it when done, so nothing one
 * test leaves behind (a late PEER_DOWN, a registration, a connection still
 * closing) can reach the next. */
#ifndef SB_TEST_ROUTER_H
#define SB_TEST_ROUTER_H

#include <stdint.h>

#include <switchboard/router.h>

extern struct sb_router *R; /* the running test's router (router_start), or NULL */
extern uint16_t PORT;       /* its port */

/* Any free port, 2 shards, quiet (SB_TEST_LOG=1 logs every connection), and
 * room for the 1,025 connections from 127.0.0.1 the identity tests hold. */
struct sb_router_config router_config(void);

/* Starts a router with cfg (NULL: router_config()) as R, on PORT. A test
 * runs one at a time: starting another while R runs is a failure. */
void router_start(const struct sb_router_config *cfg);
/* Starts r, made with router_new() and given in-process handlers, as R. */
void router_start_with(struct sb_router *r);
/* Stops R (no drain) and frees it; R is NULL after. */
void router_stop(void);
struct sb_router_stats router_stats(void); /* R's counters */

/* A router that is not R, for tests that need two at once or one that is
 * never started: sb_router_new() with cfg (NULL: router_config()), which
 * must succeed. */
struct sb_router *router_new(const struct sb_router_config *cfg);
struct sb_router *router_open(const struct sb_router_config *cfg); /* new, then started */
void router_close(struct sb_router *r); /* stop (no drain) and free; NULL is fine */
/* router_open() on port (0: any), retrying while a router stopped a moment
 * ago still holds it: for tests that restart one under their clients. */
struct sb_router *router_open_at(uint16_t port);

#endif
