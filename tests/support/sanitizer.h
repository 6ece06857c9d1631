/* Which sanitizer this build runs under, and what the memory checks allow
 * for it: the fault tests measure RSS, which the sanitizers inflate. */
#ifndef SB_TEST_SANITIZER_H
#define SB_TEST_SANITIZER_H

#include <stdio.h>

#include "support/testlib.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SB_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SB_SANITIZED 1
#endif
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SB_ASAN 1
#endif
#if __has_feature(thread_sanitizer)
#define SB_TSAN 1
#endif
#endif

/* RSS growth the memory checks accept: allocator noise, see each check. */
#ifdef SB_SANITIZED
#define RSS_SLACK_KB 3072
#else
#define RSS_SLACK_KB 2048
#endif

/* Under TSan a process's RSS is mostly TSan's: shadow for every page the
 * program touches and per-thread traces, a few MiB either way from run to
 * run. Memory is checked in Release and under ASan; TSan only reports. */
#ifdef SB_TSAN
#define CHECK_RSS(cond)                                                                            \
	do {                                                                                       \
		if (!(cond))                                                                       \
			printf("  (TSan: not asserted) %s\n", #cond);                              \
	} while (0)
#else
#define CHECK_RSS(cond) CHECK(cond)
#endif

#endif
