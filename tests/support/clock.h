/* The tests' clock: monotonic milliseconds for deadlines and the bounds on
 * how long something took, and a sleep for pacing (never for waiting on
 * something: wait on a condition with a deadline). */
#ifndef SB_TEST_CLOCK_H
#define SB_TEST_CLOCK_H

#include <stdint.h>

uint64_t now_ms(void);
void sleep_ms(unsigned ms);

#endif
