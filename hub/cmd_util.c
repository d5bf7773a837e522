/* cmd_util.c — what every command shares: its one-line error messages. */
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
