/* conf_lines.h — the line-oriented files an operator edits by hand
 * (readers.conf, peers.conf, recognition.conf, allow.txt): one entry a
 * line, whole-line '#' comments, blank lines.  Hub-private.
 *
 * Read with Windows line ends (CR LF) as well as LF, since hospital IT
 * often edits them on a Windows PC.  A line longer than CONF_LINE_MAX or
 * holding a NUL byte is an error naming the line, never silently cut into
 * two entries or shortened.  Comments start only at the line's first
 * non-blank character: a CURVE key in Z85 may contain '#' (though never
 * first: a key's first character encodes at most 2^32 / 85^4 < 83, and
 * '#' is Z85's 84th), so allow.txt's keys at the start of a line are
 * safe. */
#ifndef DXHUB_CONF_LINES_H
#define DXHUB_CONF_LINES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define CONF_LINE_MAX 4096

typedef struct conf_lines {
    FILE       *fp;
    const char *path; /* for messages; the caller's */
    int         lineno;
    char       *buf;
    size_t      cap;
    int        *kept; /* the line each kept entry came from (conf_lines_keep) */
    size_t      n_kept, cap_kept;
} conf_lines;

/* 0, or -errno with "PATH: reason" in err (-ENOENT: missing, which some
 * callers take as "the defaults"). */
int  conf_lines_open(conf_lines *c, const char *path, char *err, size_t errlen);
/* The next line with content, without its line end and surrounding
 * blanks (spaces, tabs), in *line (valid until the next call): 1; 0 at
 * the end; -EINVAL (too long, a NUL byte) or -errno with
 * "PATH:LINE: reason" in err. */
int  conf_lines_next(conf_lines *c, char **line, char *err, size_t errlen);
void conf_lines_close(conf_lines *c); /* NULL-safe, idempotent */

/* The current line made the next entry (numbered 0, 1, ... in the order
 * kept), so an entry listed again later can name where it was first:
 * 0, or -ENOMEM with "PATH: out of memory" in err. */
int conf_lines_keep(conf_lines *c, char *err, size_t errlen);
/* The line kept entry i came from. */
int conf_lines_line_of(const conf_lines *c, size_t i);

/* A name as facilities, readers, hubs and report ids are named: 1..max
 * letters, digits, '-', '_' and '.' (safe in roles, paths and logs). */
bool conf_name_char(char ch);
bool conf_name_ok(const char *s, size_t max);

/* Splits line in place at runs of blanks into at most max fields; returns
 * how many there were, max + 1 when there were more (not split further). */
int conf_fields(char *line, char **field, int max);

#endif
