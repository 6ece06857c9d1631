/* Log lines on stderr, stamped with the time of day (UTC, milliseconds). */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "common/log.h"

void sb__log(const struct sb__logger *lg, int level, const char *fmt, ...)
{
	char line[512];
	struct timespec ts;
	struct tm tm;
	va_list ap;

	if (level > lg->level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	/* One write per line keeps lines from several shards whole. */
	fprintf(stderr, "%02d:%02d:%02d.%03ld %s: %s\n", tm.tm_hour, tm.tm_min, tm.tm_sec,
		ts.tv_nsec / 1000000, lg->who, line);
}
