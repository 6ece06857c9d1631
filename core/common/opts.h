/* Options structs the caller sizes (struct sb_opts, struct
 * sb_handler_opts): read only the bytes
 * the caller's header knew of, so a program built against an older header
 * keeps working after fields are appended. */
#ifndef SB_CORE_OPTS_H
#define SB_CORE_OPTS_H

#include <stddef.h>
#include <string.h>

#include <switchboard/call.h>
#include <switchboard/error.h>
#include <switchboard/proto.h>

/**
 * Copy the caller's options over the defaults (all zero): NULL is the
 * defaults. @return 0, or SB_EINVAL for a size too small to hold a field,
 * or `to` with SB_OPT_ALL, SB_OPT_PEERS without a selector in `to` (one
 * `*`, at its end; "@" only as "@client" or "@service"), or an unknown flag.
 */
static inline int sb__opts_read(const struct sb_opts *in, struct sb_opts *out)
{
	memset(out, 0, sizeof *out);
	out->size = sizeof *out;
	if (in == NULL)
		return 0;
	if (in->size < offsetof(struct sb_opts, timeout_ms) + sizeof in->timeout_ms)
		return SB_EINVAL;
	size_t n = in->size < sizeof *out ? in->size : sizeof *out;
	memcpy(out, in, n);
	out->size = sizeof *out;
	if ((out->flags & ~(SB_OPT_ALL | SB_OPT_PEERS)) != 0 ||
	    (out->to != NULL && (out->flags & SB_OPT_ALL)))
		return SB_EINVAL;
	if (out->flags & SB_OPT_PEERS) {
		const char *to = out->to, *star = to != NULL ? strchr(to, '*') : NULL;
		if (to == NULL || (star != NULL && star[1] != 0) ||
		    (to[0] == '@' && strcmp(to, "@client") != 0 && strcmp(to, "@service") != 0))
			return SB_EINVAL;
	}
	return 0;
}

/**
 * Put the headers @p o asks for on @p m (encoded into @p buf, which must
 * outlive m): o->headers, plus the parent's `traceparent` when o->headers
 * has none. The parent is o->parent, else @p running (the call whose
 * handler is running, NULL outside one). A traceparent that would be a
 * seventeenth header is left off. In core/common/call.c.
 * @return 0, SB_EINVAL or SB_ETOOLARGE (sb_headers_encode())
 */
int sb__opts_headers(const struct sb_opts *o, const struct sb_call *running,
		     uint8_t buf[SB_HEADERS_MAX], struct sb_msg *m);

/**
 * The same for a handler's options. @return 0, or SB_EINVAL for a size too
 * small, an unknown flag, or a schema length without a schema.
 */
static inline int sb__handler_opts_read(const struct sb_handler_opts *in,
					struct sb_handler_opts *out)
{
	memset(out, 0, sizeof *out);
	out->size = sizeof *out;
	if (in == NULL)
		return 0;
	if (in->size < offsetof(struct sb_handler_opts, flags) + sizeof in->flags)
		return SB_EINVAL;
	size_t n = in->size < sizeof *out ? in->size : sizeof *out;
	memcpy(out, in, n);
	out->size = sizeof *out;
	if ((out->flags & ~SB_HANDLER_INTERNAL) != 0 ||
	    (out->schema_len > 0 && out->schema == NULL))
		return SB_EINVAL;
	return 0;
}

#endif
