/* The offline queue: sends made while the client is not online, held as
 * encoded frames (bounded by cfg.offline_queue_bytes) and written, in the
 * order they were made, once the client is online again. */
#include <stdlib.h>
#include <string.h>

#include <switchboard/client.h>
#include <switchboard/proto.h>

#include "client/client-int.h"

/* Frame-prefixed SENDs one after another: the same bytes sb__client_queue()
 * would have written, so a flush is one copy. */
int sb__client_offline_push(struct sb_client *c, const struct sb_msg *m)
{
	long n = sb_encoded_size(m);

	if (n < 0)
		return n == SB_ETOOLARGE ? SB_ETOOLARGE : SB_EINVAL;
	/* The last router's limit (the default before the first WELCOME):
	 * a frame over it would get the connection closed. */
	if ((size_t)n - SB_PREFIX_LEN > c->max_frame)
		return SB_ETOOLARGE;
	if (c->oq_len + (size_t)n > c->cfg.offline_queue_bytes) {
		c->overloaded = 1; /* on_writable once the queue has gone out */
		return SB_EOVERLOADED;
	}
	if (c->oq_cap - c->oq_len < (size_t)n) {
		size_t cap = c->oq_cap ? c->oq_cap : 4096;
		while (cap - c->oq_len < (size_t)n)
			cap *= 2;
		uint8_t *p = realloc(c->oq, cap);
		if (p == NULL)
			return SB_ENOMEM;
		c->oq = p;
		c->oq_cap = cap;
	}
	sb_encode(m, c->oq + c->oq_len, c->oq_cap - c->oq_len);
	c->oq_len += (size_t)n;
	c->oq_count++;
	return 0;
}

/* Online: the held sends go out before anything made from now on. A frame
 * over this router's limit (lower than the last one's) is dropped, not
 * sent: the router would close the connection for it. */
void sb__client_offline_flush(struct sb_client *c)
{
	size_t at = 0;

	while (at < c->oq_len) {
		const uint8_t *f = c->oq + at;
		size_t body = (size_t)f[0] << 24 | (size_t)f[1] << 16 | (size_t)f[2] << 8 | f[3];
		size_t n = SB_PREFIX_LEN + body;
		if (body <= c->max_frame) {
			if (c->out_cap - c->out_len < n) {
				/* out_max does not apply: the queue had its own bound */
				size_t cap = c->out_cap;
				if (c->out_off > 0) {
					memmove(c->out, c->out + c->out_off,
						c->out_len - c->out_off);
					c->out_len -= c->out_off;
					c->out_off = 0;
				}
				while (cap - c->out_len < n)
					cap *= 2;
				uint8_t *p = cap == c->out_cap ? c->out : realloc(c->out, cap);
				if (p == NULL)
					break; /* out of memory: what is left is dropped */
				c->out = p;
				c->out_cap = cap;
			}
			memcpy(c->out + c->out_len, f, n);
			c->out_len += n;
		}
		at += n;
	}
	sb__client_offline_clear(c);
}

void sb__client_offline_clear(struct sb_client *c)
{
	free(c->oq);
	c->oq = NULL;
	c->oq_len = c->oq_cap = 0;
	c->oq_count = 0;
}

size_t sb_client_offline_queued(const struct sb_client *c)
{
	return c->oq_count;
}
