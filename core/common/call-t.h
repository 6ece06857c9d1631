/* A call as handlers see it (struct sb_call), the same for a handler in a
 * client program and one in-process in the router: the fields both fill,
 * the ops each side answers through, and the header loader both call. */
#ifndef SB_CORE_CALL_T_H
#define SB_CORE_CALL_T_H

#include <stddef.h>
#include <stdint.h>

struct sb_call;
struct sb_client;
struct sb_msg;
struct sb_header;
struct sb_view;

/* What differs between a client's call and an in-process one. */
struct sb__call_ops {
	/* Send m (a REPLY or ERROR, all set but the id) for the call; final
	 * ends it. The checks every call shares have been made. */
	int (*answer)(struct sb_call *call, struct sb_msg *m, int final);
	/* The sender's name, role and certificate subject, or NULL. */
	const char *(*peer)(const struct sb_call *call);
	const char *(*role)(const struct sb_call *call);
	const char *(*subject)(const struct sb_call *call);
	/* Its verified token's claims (a MessagePack map) in *len, or NULL. */
	const void *(*claims)(const struct sb_call *call, size_t *len);
	int (*cancelled)(const struct sb_call *call);
	void (*on_cancel)(struct sb_call *call, void (*fn)(struct sb_call *, void *), void *ud);
	struct sb_client *(*client)(const struct sb_call *call); /* NULL in-process */
};

/* The head of every call; each side's call type starts with it. */
struct sb_call {
	const struct sb__call_ops *ops;
	const char *name;       /* NUL-terminated; valid while the call is */
	const uint8_t *payload; /* during the handler callback only, else NULL */
	uint32_t len;
	uint32_t from; /* the sender's peer id; 0: the embedding program */
	uint8_t is_request;
	struct sb_header *hdrs; /* the frame's headers, copied (sb__call_headers_load) */
	size_t nhdrs;
};

/* Copy the encoded header map @p h (checked by sb_decode(); {NULL, 0} for
 * none) into call->hdrs, so handlers and chained calls can read it as long
 * as the call lives. @return 0 or SB_ENOMEM (then the call has none). */
int sb__call_headers_load(struct sb_call *call, const struct sb_view *h);

/* Free what sb__call_headers_load() took; the call has no headers after. */
void sb__call_headers_free(struct sb_call *call);

/* The `traceparent` a call made for @p parent carries, or NULL. */
const char *sb__call_traceparent(const struct sb_call *parent);

#endif
