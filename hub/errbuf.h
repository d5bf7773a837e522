/* errbuf.h — the hub's "reason into the caller's buffer" idiom: functions
 * that return a negative code also write one line saying why into
 * err[errlen] (err may be NULL).  Hub-private. */
#ifndef DXHUB_ERRBUF_H
#define DXHUB_ERRBUF_H

#include <stddef.h>

/* Writes the formatted reason into err (when err and errlen) and returns code. */
int errbuf_fail(int code, char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif
