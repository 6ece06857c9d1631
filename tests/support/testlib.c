/* The harness's one piece of state: the failure count that CHECK raises from
 * test programs and fixtures alike, and main() returns on. */
#include "support/testlib.h"

int sb_test_failures;
