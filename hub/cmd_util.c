/* cmd_util.c — what every command shares: its one-line error messages, a duration for people. */
#include <stdarg.h>
#include <stdio.h>
#include "hub/cmd.h"

void dx_errorf(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "dxhub %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void dx_human_age(int64_t ms, char *out, size_t n)
{
    int64_t s = ms / 1000;
    if (s < 120)
        snprintf(out, n, "%lld s", (long long)s);
    else if (s < 7200)
        snprintf(out, n, "%lld min", (long long)(s / 60));
    else if (s < 172800)
        snprintf(out, n, "%lld h", (long long)(s / 3600));
    else
        snprintf(out, n, "%lld days", (long long)(s / 86400));
}
