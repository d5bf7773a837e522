/* progress.h — progress of long command-line work (`dxhub push`): on a
 * terminal a bar redrawn in place with bytes, rate and ETA; otherwise
 * (a log, a pipe) a plain line every tenth of the work or ten seconds.
 * Time comes in as a parameter.  Hub-private. */
#ifndef DXHUB_PROGRESS_H
#define DXHUB_PROGRESS_H

#include <stdint.h>
#include <stdio.h>

typedef struct progress {
    FILE       *out;
    int         tty;
    const char *what;                 /* "push" */
    uint64_t    total, done;          /* bytes */
    unsigned    items_total, items;   /* files */
    int64_t     start_ms, drawn_ms;
    uint64_t    line_done;            /* done at the last plain line */
} progress;

/* tty: draw a bar (pass isatty(fileno(out))). */
void progress_start(progress *p, FILE *out, int tty, const char *what, uint64_t total_bytes, unsigned items,
                    int64_t now_ms);
void progress_add(progress *p, uint64_t bytes, unsigned items, int64_t now_ms);
/* Erases the bar (on a terminal) so that a line can be printed in its
 * place; the next progress_add draws it again below. */
void progress_clear(progress *p);
/* The last bar or line, with the time taken. */
void progress_finish(progress *p, int64_t now_ms);

#endif
