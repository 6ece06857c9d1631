/* Log lines on stderr, stamped with the time of day (UTC, milliseconds).
 * Off a terminal (the journal, a pipe, a file) each line starts with its
 * syslog level, "<3>" to "<7>" (sd-daemon(3)): the journal keeps it as the
 * line's priority, so `journalctl -p err` shows the errors alone. */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

/* stderr is a terminal: 1, not one: 0, not looked at yet: -1. Looked at
 * once: where stderr goes does not change under a running process. */
static _Atomic int on_terminal = -1;

/* Our levels as syslog's: errors 3 (err), lifecycle 5 (notice) or 4
 * (warning) for a line that says it is one, connections 6 (info), debug 7. */
static int syslog_level(int level, const char *line)
{
	if (level <= 0)
		return 3;
	if (level == 1)
		return strncmp(line, "warning", 7) == 0 ? 4 : 5;
	return level == 2 ? 6 : 7;
}

void sb__log(const struct sb__logger *lg, int level, const char *fmt, ...)
{
	char line[512], prefix[4] = "";
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
	int tty = atomic_load_explicit(&on_terminal, memory_order_relaxed);
	if (tty < 0) {
		tty = isatty(STDERR_FILENO);
		atomic_store_explicit(&on_terminal, tty, memory_order_relaxed);
	}
	if (!tty)
		snprintf(prefix, sizeof prefix, "<%d>", syslog_level(level, line));
	/* One write per line keeps lines from several shards whole. */
	fprintf(stderr, "%s%02d:%02d:%02d.%03ld %s: %s\n", prefix, tm.tm_hour, tm.tm_min, tm.tm_sec,
		ts.tv_nsec / 1000000, lg->who, line);
}
