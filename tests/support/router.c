/* One router per test: started on a free port with the suite's settings,
 * stopped and freed at the end of the test. */
#include <stdlib.h>

#include "support/router.h"
#include "support/testlib.h"

struct sb_router *R;
uint16_t PORT;

struct sb_router_config router_config(void)
{
	struct sb_router_config cfg;
	sb_router_config_init(&cfg);
	cfg.port = 0;
	cfg.shards = 2;
	cfg.log_level = getenv("SB_TEST_LOG") ? 3 : 0;
	cfg.max_conns_per_addr = 4096;
	return cfg;
}

struct sb_router *router_new(const struct sb_router_config *cfg)
{
	struct sb_router_config def = router_config();
	int err = 0;
	struct sb_router *r = sb_router_new(cfg != NULL ? cfg : &def, &err);
	if (r == NULL) {
		/* Every test after this would fail for the same reason. */
		fprintf(stderr, "sb_router_new: %s\n", sb_strerror(err));
		sb_test_failures++;
		exit(1);
	}
	return r;
}

struct sb_router *router_open(const struct sb_router_config *cfg)
{
	struct sb_router *r = router_new(cfg);
	CHECK_INT(sb_router_start(r), 0);
	return r;
}

void router_close(struct sb_router *r)
{
	if (r == NULL)
		return;
	sb_router_stop(r, 0);
	sb_router_free(r);
}

struct sb_router *router_open_at(uint16_t port)
{
	struct sb_router_config cfg = router_config();
	cfg.port = port;
	cfg.bind_retries = 40;
	cfg.bind_retry_ms = 50;
	return router_open(&cfg);
}

void router_start_with(struct sb_router *r)
{
	CHECK(R == NULL);
	router_close(R); /* a test that forgot its own */
	R = r;
	CHECK_INT(sb_router_start(R), 0);
	PORT = sb_router_port(R);
}

void router_start(const struct sb_router_config *cfg)
{
	router_start_with(router_new(cfg));
}

void router_stop(void)
{
	router_close(R);
	R = NULL;
	PORT = 0;
}

struct sb_router_stats router_stats(void)
{
	struct sb_router_stats s;
	sb_router_stats(R, &s);
	return s;
}
