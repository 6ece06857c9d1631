/* A tiny test harness: CHECK records a failure and goes on, so one run shows
 * every broken assertion; main() returns non-zero if any failed. */
#ifndef SB_TESTLIB_H
#define SB_TESTLIB_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Failed checks so far, in the test program and in the fixtures it uses. */
extern int sb_test_failures;

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);   \
			sb_test_failures++;                                                        \
		}                                                                                  \
	} while (0)

#define CHECK_INT(a, b)                                                                            \
	do {                                                                                       \
		long long a_ = (long long)(a), b_ = (long long)(b);                                \
		if (a_ != b_) {                                                                    \
			fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n", __FILE__,      \
				__LINE__, #a, a_, #b, b_);                                         \
			sb_test_failures++;                                                        \
		}                                                                                  \
	} while (0)

#define CHECK_STR(a, b)                                                                            \
	do {                                                                                       \
		const char *a_ = (a), *b_ = (b);                                                   \
		if (strcmp(a_, b_) != 0) {                                                         \
			fprintf(stderr, "%s:%d: %s is \"%s\", expected \"%s\"\n", __FILE__,        \
				__LINE__, #a, a_, b_);                                             \
			sb_test_failures++;                                                        \
		}                                                                                  \
	} while (0)

/* SB_TEST_ONLY=substring runs only the matching tests (while iterating). */
#define RUN(fn)                                                                                    \
	do {                                                                                       \
		const char *only_ = getenv("SB_TEST_ONLY");                                        \
		if (only_ != NULL && strstr(#fn, only_) == NULL)                                   \
			break;                                                                     \
		int before_ = sb_test_failures;                                                    \
		fn();                                                                              \
		printf("%s %s\n", sb_test_failures == before_ ? "ok  " : "FAIL", #fn);             \
	} while (0)

#define TEST_EXIT() (sb_test_failures == 0 ? 0 : 1)

#endif
