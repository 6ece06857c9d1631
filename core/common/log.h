/* Log lines: a component's level and the tag its lines carry, set once by
 * whoever owns the component (the router, from its configuration), and
 * one line per call on stderr. Nothing here knows the router: the client
 * library may keep a logger too. */
#ifndef SB_CORE_LOG_H
#define SB_CORE_LOG_H

/* Levels: 0 errors, 1 lifecycle, 2 connections, 3 debug. */
struct sb__logger {
	int level;       /* lines above it are dropped; below 0 drops them all */
	const char *who; /* the tag after the time ("switchboard") */
};

/** Logs "HH:MM:SS.mmm WHO: TEXT" (UTC) when @p level <= the logger's,
 *  after "<N>", its syslog level (3 errors, 4 a line that starts with
 *  "warning", 5 lifecycle, 6 connections, 7 debug), when stderr is not a
 *  terminal. One write per line, so lines from several threads stay whole. */
void sb__log(const struct sb__logger *lg, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
