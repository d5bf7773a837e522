/* cmd_file.c — what the report commands share: whole small files in and
 * out (a report, its signature and chain, the exports beside them) and
 * the UTC timestamps they print and parse. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "hub/cmd.h"
#include "hub/pki.h"
#include "hub/report.h"
#include "codecs/banned.h"

int dx_read_file(const char *path, size_t max, char **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat sb;
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size > max) {
        int rc = S_ISREG(sb.st_mode) ? -EFBIG : -EINVAL;
        close(fd);
        return rc;
    }
    char *p = malloc((size_t)sb.st_size + 1);
    size_t got = 0;
    while (p && got < (size_t)sb.st_size) {
        ssize_t k = read(fd, p + got, (size_t)sb.st_size - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    close(fd);
    if (!p)
        return -ENOMEM;
    p[got] = '\0';
    *out = p;
    *len = got;
    return 0;
}

int dx_read_signed_report(const char *cmd, const char *report, const char *sig, const char *chain,
                          dx_signed_report *out)
{
    char sig_def[4200], chain_def[4200];
    snprintf(sig_def, sizeof sig_def, "%s.sig", report);
    snprintf(chain_def, sizeof chain_def, "%s.chain.pem", report);
    const char *paths[3] = {report, sig ? sig : sig_def, chain ? chain : chain_def};
    const size_t caps[3] = {REPORT_MAX_BYTES, 4096, PKI_PEM_MAX};
    char **data[3] = {&out->doc, &out->sig, &out->chain};
    size_t *lens[3] = {&out->doc_len, &out->sig_len, &out->chain_len};
    memset(out, 0, sizeof *out);
    for (int i = 0; i < 3; i++) {
        int rc = dx_read_file(paths[i], caps[i], data[i], lens[i]);
        if (rc < 0) {
            dx_errorf(cmd, "%s: %s", paths[i], rc == -EFBIG ? "too large" : strerror(-rc));
            dx_signed_report_free(out);
            return -1;
        }
    }
    return 0;
}

void dx_signed_report_free(dx_signed_report *r)
{
    free(r->doc);
    free(r->sig);
    free(r->chain);
    memset(r, 0, sizeof *r);
}

int dx_write_file(const char *path, const void *p, size_t n)
{
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return -ENAMETOOLONG;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    int rc = write(fd, p, n) == (ssize_t)n ? 0 : -EIO;
    if (!rc && fsync(fd) < 0)
        rc = -errno;
    close(fd);
    if (!rc && rename(tmp, path) < 0)
        rc = -errno;
    if (rc)
        unlink(tmp);
    return rc;
}

void dx_fmt_time(time_t t, char *out, size_t n)
{
    struct tm tm;
    if (!t || !gmtime_r(&t, &tm) || !strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(out, n, "?");
}

time_t dx_parse_time(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (!end || *end) {
        memset(&tm, 0, sizeof tm);
        end = strptime(s, "%Y-%m-%d", &tm);
        if (!end || *end)
            return 0;
    }
    return timegm(&tm);
}
