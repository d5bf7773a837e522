/* log.h — one line per event on stderr: time, level, role, message.
 * Never pass patient names or IDs at info level (audit records, not logs,
 * say who touched which study). */
#ifndef DXHUB_LOG_H
#define DXHUB_LOG_H

enum { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

/* The one process-wide setting (set at start-up, read-only after). */
void log_set_level(int level);
void log_set_role(const char *role);
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
