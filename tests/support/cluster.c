/* The cluster tests' shared steps: see support/cluster.h. */
#include <stdio.h>

#include "support/clock.h"
#include "support/cluster.h"
#include "support/router.h"
#include "support/testlib.h"

struct sb_router *cluster_join(const char *url)
{
	struct sb_router_config cfg = router_config();
	cfg.cluster = url;
	return router_open(&cfg);
}

int cluster_until_reachable(struct peer *cl, struct peer *svc, const char *name)
{
	uint64_t end = now_ms() + 15000, id = 90000;

	peer_request(cl, name, ++id, 10000, "\xa4ping", 5);
	while (now_ms() < end) {
		if (peer_recv_within(svc, 20) == 1) {
			CHECK_INT(svc->m.kind, SB_REQUEST);
			peer_reply(svc, svc->m.id, "pong", 0, NULL, 0);
			struct sb_msg *r = peer_expect(cl, SB_REPLY);
			CHECK(r->id == id);
			return 1;
		}
		if (peer_recv_within(cl, 20) == 1) {
			CHECK_INT(cl->m.kind, SB_ERROR);
			/* not there yet, or (the local one just closed) gone */
			CHECK(cl->m.code == (uint32_t)-SB_ENOHANDLER ||
			      cl->m.code == (uint32_t)-SB_EPEERGONE);
			peer_request(cl, name, ++id, 10000, "\xa4ping", 5);
		}
	}
	return 0;
}

int cluster_hello_as(uint16_t port, const char *name, struct peer **out, char *why, size_t cap)
{
	struct peer *p;
	for (int tries = 0;; tries++) {
		p = peer_dial(port);
		struct sb_msg h = {.kind = SB_HELLO, .id = 1, .version = SB_PROTO_VERSION};
		h.role = v_str("service");
		h.peer = v_str(name);
		peer_send(p, &h);
		CHECK_INT(peer_recv_within(p, 5000), 1);
		if (tries == 4 || p->m.kind != SB_ERROR || p->m.code != (uint32_t)-SB_EOVERLOADED)
			break;
		peer_close(p);
	}
	if (p->m.kind == SB_WELCOME) {
		*out = p;
		return 1;
	}
	CHECK_INT(p->m.kind, SB_ERROR);
	CHECK_INT(p->m.code, (uint32_t)-SB_EDUPNAME);
	snprintf(why, cap, "%.*s", (int)p->m.text.len, (const char *)p->m.text.ptr);
	peer_close(p);
	*out = NULL;
	return 0;
}
