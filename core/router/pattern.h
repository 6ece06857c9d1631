/* Name patterns for the router's name rules: a comma-separated list of
 * exact names and prefixes ending in '*', compiled once, matched per call.
 * Plain C with no atomics, so the micro-benchmarks can include it. */
#ifndef SB_CORE_PATTERN_H
#define SB_CORE_PATTERN_H

#include <stddef.h>
#include <stdint.h>

#include <switchboard/proto.h>

/* One name pattern: exact, or a prefix when it ended in '*'. */
struct sb__pattern {
	const char *s; /* into the owning list's text; not NUL-terminated */
	uint32_t len;  /* bytes of s (the prefix, without the '*') */
	uint8_t prefix;
};

/* A configured list of patterns ("user.*,billing.*"), compiled once. */
struct sb__patterns {
	const char *key;       /* the config field it came from, for error texts */
	char *text;            /* as configured (NULL: not set, everything allowed) */
	struct sb__pattern *v; /* the patterns */
	uint32_t n;
	uint8_t any; /* "*" is one of them, or the list was not set */
};

/**
 * Compile @p text (NULL: allow everything) for the setting named @p key.
 * Items are split at commas, spaces around them dropped; '*' only as an
 * item's last byte; no empty items, spaces inside or control characters.
 * @return 0, SB_EINVAL (@p why says what is wrong) or SB_ENOMEM; free the
 *         list with sb__patterns_free() either way
 */
int sb__patterns_compile(struct sb__patterns *p, const char *key, const char *text, char *why,
			 size_t cap);

void sb__patterns_free(struct sb__patterns *p);

/** 1 if @p name (len 0: the catch-all, which only "*" allows) matches. */
int sb__patterns_match(const struct sb__patterns *p, const uint8_t *name, uint32_t len);

/** sb__patterns_match() with the common case, no rule, inline: one load
 *  and a branch. */
static inline int sb__patterns_allow(const struct sb__patterns *p, struct sb_view name)
{
	return p->any || sb__patterns_match(p, name.ptr, name.len);
}

/** The refusal's text, for an ERROR: "NAME" is not allowed by RULE =
 *  "PATTERNS", the patterns cut on a UTF-8 boundary to fit. */
void sb__patterns_refusal(char *buf, size_t cap, struct sb_view name,
			  const struct sb__patterns *rule);

#endif
