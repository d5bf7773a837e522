/* log.h — one line per event: time, level, role, message, on stderr or,
 * with log_open, appended to a file that log_reopen reopens (SIGHUP, for
 * logrotate).  Never pass patient names or IDs at info level (audit
 * records, not logs, say who touched which study). */
#ifndef DXHUB_LOG_H
#define DXHUB_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };
#define LOG_LEVEL_NAMES "error|warn|info|debug"

/* The one process-wide setting (set at start-up, read-only after). */
void log_set_level(int level);
void log_set_role(const char *role);
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Sends stderr — our lines and any library's — to the end of path.
 * 0, or -1 with the reason in err. */
int log_open(const char *path, char *err, size_t errlen);
/* Opens the file of log_open again (after logrotate moved it): 0, 1 when
 * logging to stderr (nothing to do), -1 with the reason (the old file is
 * kept). */
int log_reopen(char *err, size_t errlen);

/* A message that repeats while a condition lasts (a full disk, a refused
 * key): due when its reason differs from the last one said, else once
 * every_ms (monotonic) have passed; due also marks it said.  Zeroed: the
 * next one is due at once. */
typedef struct log_repeat {
    char    last[256];
    int64_t at_ms;
} log_repeat;
bool log_repeat_due(log_repeat *r, const char *reason, int64_t every_ms);

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
