/* cmd_util.c — what every command shares: its one-line error messages, a
 * duration for people, who runs it (for an audit record). */
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
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

void dx_local_user(char *out, size_t n)
{
    struct passwd pw, *found = NULL;
    char buf[1024];
    uid_t uid = getuid();
    if (getpwuid_r(uid, &pw, buf, sizeof buf, &found) == 0 && found)
        snprintf(out, n, "local:%s", pw.pw_name);
    else
        snprintf(out, n, "local:uid%u", (unsigned)uid);
    const char *sudo = getenv("SUDO_USER"); /* root's shell opened by a person: name them too */
    if (uid == 0 && sudo && *sudo) {
        size_t len = strlen(out);
        snprintf(out + len, n - len, "/sudo:%s", sudo);
    }
}
