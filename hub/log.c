/* log.c — see log.h.  The level and role are process-wide by nature
 * (like errno), written once at start-up before any thread starts. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include "hub/clock.h"
#include "hub/log.h"

static int  log_level = LOG_INFO;
static char log_role[16] = "dxhub";
static char log_path[4096]; /* empty: stderr as inherited */

void log_set_level(int level) { log_level = level; }

void log_set_role(const char *role) { snprintf(log_role, sizeof log_role, "%s", role); }

void log_msg(int level, const char *fmt, ...)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    if (level > log_level)
        return;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char line[1024];
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s %s: ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000),
                     names[level < 0 ? 0 : level > 3 ? 3 : level], log_role);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof line)
        vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    /* One event, one line: a message carrying a library's multi-line
     * text (or a control character from the wire) is flattened. */
    size_t len = strnlen(line, sizeof line - 2);
    for (size_t i = (size_t)(n > 0 ? n : 0); i < len; i++)
        if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
            line[i] = ' ';
    /* one write per line so concurrent threads never interleave */
    line[len++] = '\n';
    fwrite(line, 1, len, stderr);
}

/* dup2 replaces fd 2 in one step, so a thread writing a line meanwhile
 * writes it whole to the old file or the new one. */
static int redirect(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    if (dup2(fd, STDERR_FILENO) < 0) {
        snprintf(err, errlen, "cannot log to %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

int log_open(const char *path, char *err, size_t errlen)
{
    if (strlen(path) >= sizeof log_path) {
        snprintf(err, errlen, "log file name too long");
        return -1;
    }
    if (redirect(path, err, errlen) < 0)
        return -1;
    snprintf(log_path, sizeof log_path, "%s", path);
    return 0;
}

int log_reopen(char *err, size_t errlen)
{
    if (!log_path[0])
        return 1;
    return redirect(log_path, err, errlen);
}

bool log_repeat_due(log_repeat *r, const char *reason, int64_t every_ms)
{
    int64_t t = clock_mono_ms();
    if (r->at_ms && !strncmp(r->last, reason, sizeof r->last - 1) && t - r->at_ms < every_ms)
        return false;
    snprintf(r->last, sizeof r->last, "%s", reason);
    r->at_ms = t;
    return true;
}
