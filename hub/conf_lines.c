/* conf_lines.c — reading an operator's line-oriented file (conf_lines.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "hub/conf_lines.h"
#include "codecs/banned.h"

int conf_lines_open(conf_lines *c, const char *path, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    c->path = path;
    c->fp = fopen(path, "r");
    if (c->fp)
        return 0;
    int rc = -errno;
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return rc;
}

static int is_blank(char ch) { return ch == ' ' || ch == '\t'; }

int conf_lines_next(conf_lines *c, char **line, char *err, size_t errlen)
{
    for (;;) {
        errno = 0;
        ssize_t n = getline(&c->buf, &c->cap, c->fp);
        if (n < 0) {
            if (ferror(c->fp)) {
                int rc = errno ? -errno : -EIO;
                snprintf(err, errlen, "%s: after line %d: %s", c->path, c->lineno, strerror(-rc));
                return rc;
            }
            return 0;
        }
        c->lineno++;
        if (n > CONF_LINE_MAX) {
            snprintf(err, errlen, "%s:%d: line longer than %d bytes", c->path, c->lineno, CONF_LINE_MAX);
            return -EINVAL;
        }
        if (memchr(c->buf, '\0', (size_t)n)) {
            snprintf(err, errlen, "%s:%d: a NUL byte in the line (is this a text file?)", c->path, c->lineno);
            return -EINVAL;
        }
        while (n > 0 && (c->buf[n - 1] == '\n' || c->buf[n - 1] == '\r' || is_blank(c->buf[n - 1])))
            c->buf[--n] = '\0';
        char *p = c->buf;
        while (is_blank(*p))
            p++;
        if (*p && *p != '#') {
            *line = p;
            return 1;
        }
    }
}

void conf_lines_close(conf_lines *c)
{
    if (!c)
        return;
    if (c->fp)
        fclose(c->fp);
    free(c->buf);
    free(c->kept);
    c->fp = NULL;
    c->buf = NULL;
    c->kept = NULL;
    c->cap = c->n_kept = c->cap_kept = 0;
}

int conf_lines_keep(conf_lines *c, char *err, size_t errlen)
{
    if (c->n_kept == c->cap_kept) {
        size_t cap = c->cap_kept ? c->cap_kept * 2 : 16;
        int   *q = realloc(c->kept, cap * sizeof *q);
        if (!q) {
            snprintf(err, errlen, "%s: out of memory", c->path);
            return -ENOMEM;
        }
        c->kept = q;
        c->cap_kept = cap;
    }
    c->kept[c->n_kept++] = c->lineno;
    return 0;
}

int conf_lines_line_of(const conf_lines *c, size_t i) { return i < c->n_kept ? c->kept[i] : 0; }

bool conf_name_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' ||
           ch == '.';
}

bool conf_name_ok(const char *s, size_t max)
{
    size_t n = 0;
    while (s[n] && conf_name_char(s[n]))
        n++;
    return n > 0 && n <= max && !s[n];
}

int conf_fields(char *line, char **field, int max)
{
    int n = 0;
    char *p = line;
    for (;;) {
        while (is_blank(*p))
            *p++ = '\0';
        if (!*p)
            return n;
        if (n == max)
            return max + 1;
        field[n++] = p;
        while (*p && !is_blank(*p))
            p++;
    }
}
