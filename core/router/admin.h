/* The router's own names: requests to "$sb.routes", "$sb.peers" and
 * "$sb.stats" are answered by the shard that receives them, so any client
 * (sbctl among them) can read the router's state with an ordinary request.
 * docs/protocol.md describes the payloads. */
#ifndef SB_CORE_ADMIN_H
#define SB_CORE_ADMIN_H

#include <stdbool.h>
#include <string.h>

#include <switchboard/proto.h>

struct sb__shard;
struct sb__asker;

#define SB__ADMIN_PREFIX     "$sb."
#define SB__ADMIN_PREFIX_LEN 4

/** A name in the router's reserved space (nobody may register it). */
static inline bool sb__admin_name(struct sb_view name)
{
	return name.len >= SB__ADMIN_PREFIX_LEN &&
	       memcmp(name.ptr, SB__ADMIN_PREFIX, SB__ADMIN_PREFIX_LEN) == 0;
}

/**
 * The answer to a request for reserved @p name, as a MessagePack payload in
 * a malloc'd buffer (free() it). $sb.stats fits max_frame whatever the
 * number of routes: it lists them in pages (docs/protocol.md).
 * @param args  the request's payload (its arguments)
 * @param why   set to the reason on SB_EINVAL
 * @return 0; SB_ENOHANDLER for a reserved name the router does not serve;
 *         SB_EINVAL (bad arguments); SB_ENOMEM
 */
int sb__admin_answer(struct sb__shard *sh, struct sb_view name, struct sb_view args, char **payload,
		     size_t *len, char *why, size_t whylen);

/** The same, $sb.stats's routes paged to fit @p frame bytes instead of
 *  max_frame (a router answering for the cluster: cluster_admin.c). */
int sb__admin_answer_in(struct sb__shard *sh, struct sb_view name, struct sb_view args,
			size_t frame, char **payload, size_t *len, char *why, size_t whylen);

/** A request from @p a to a reserved name, answered. */
void sb__admin_request(struct sb__shard *sh, const struct sb__asker *a, const struct sb_msg *m);

#endif
