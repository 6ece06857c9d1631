/* Several answers to one inbox in one NATS message (docs/cluster.md,
 * "Batches"): the layout as a receiver reads it. A batch is published with
 * header `Sb-Batch: <n>` (n >= 2, decimal) and its payload is n frames
 * back to back, each byte for byte as it would travel alone (its own
 * length prefix says where it ends). A batch comes from another router:
 * untrusted, checked whole before any frame is used. */
#ifndef SB_ROUTER_CLUSTER_BATCH_H
#define SB_ROUTER_CLUSTER_BATCH_H

#include <stddef.h>
#include <stdint.h>

/* The most frames one batch may say it holds. */
#define SB__XBATCH_FRAMES_MAX 65536u

/**
 * Checks a batch: @p count (the header's value, @p count_len bytes) in
 * 2..SB__XBATCH_FRAMES_MAX, and that many frame prefixes filling
 * data[0..len) exactly. Reads nothing outside either.
 * @param n  the frame count, when the batch is good
 * @return NULL if good, else why not (a constant string)
 */
const char *sb__xbatch_check(const char *count, size_t count_len, const uint8_t *data, size_t len,
			     uint32_t *n);

/* The longest reply subject a request batch may have. */
#define SB__XBATCH_REPLY_MAX 100

/**
 * Checks a request batch's reply subject, "<inbox>.b<id>": a last token
 * of "b" and 1 to 19 digits after at least one other token.
 * @param prefix_len  the inbox's length (each request's reply subject is
 *                    the inbox, ".", and its frame's id in decimal)
 * @return NULL if good, else why not (a constant string)
 */
const char *sb__xbatch_reply(const char *reply, size_t len, size_t *prefix_len, uint64_t *id);

/* The frame at *off of a checked batch: its length (prefix included);
 * *off moves past it. */
uint32_t sb__xbatch_next(const uint8_t *data, size_t *off);

#endif
