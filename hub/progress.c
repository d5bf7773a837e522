/* progress.c — see progress.h. */
#include <string.h>
#include "hub/progress.h"

static void bytes_text(uint64_t b, char *out, size_t n)
{
    const char *u[] = {"B", "KB", "MB", "GB", "TB"};
    double v = (double)b;
    int i = 0;
    while (v >= 1000 && i < 4)
        v /= 1000, i++;
    snprintf(out, n, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

static void seconds_text(double s, char *out, size_t n)
{
    long t = (long)(s + 0.5);
    if (t < 60)
        snprintf(out, n, "%ld s", t);
    else if (t < 3600)
        snprintf(out, n, "%ld:%02ld", t / 60, t % 60);
    else
        snprintf(out, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
}

void progress_start(progress *p, FILE *out, int tty, const char *what, uint64_t total_bytes, unsigned items,
                    int64_t now_ms)
{
    *p = (progress){.out = out, .tty = tty, .what = what, .total = total_bytes, .items_total = items,
                    .start_ms = now_ms, .drawn_ms = -1};
}

static void draw(progress *p, int64_t now_ms, int final)
{
    double secs = (double)(now_ms - p->start_ms) / 1000.0;
    double rate = (double)p->done / (secs > 0.001 ? secs : 0.001);
    int pct = p->total ? (int)(100.0 * (double)(p->done < p->total ? p->done : p->total) / (double)p->total) : 100;
    char done[32], total[32], speed[32], eta[32];
    bytes_text(p->done, done, sizeof done);
    bytes_text(p->total, total, sizeof total);
    bytes_text((uint64_t)rate, speed, sizeof speed);
    if (final)
        seconds_text(secs, eta, sizeof eta);
    else if (rate > 0)
        seconds_text((double)(p->total > p->done ? p->total - p->done : 0) / rate, eta, sizeof eta);
    else
        snprintf(eta, sizeof eta, "--");
    if (p->tty) {
        enum { WIDTH = 24 };
        char bar[WIDTH + 1];
        int full = pct * WIDTH / 100;
        memset(bar, '#', (size_t)full);
        memset(bar + full, '.', (size_t)(WIDTH - full));
        bar[WIDTH] = '\0';
        /* \r and erase-to-end: the bar is redrawn in place */
        fprintf(p->out, "\r\033[K%s [%s] %3d%%  %s of %s  %s/s  %s %s%s", p->what, bar, pct, done, total, speed,
                final ? "in" : "ETA", eta, final ? "\n" : "");
    } else {
        fprintf(p->out, "%s: %3d%%  %s of %s (%u of %u files)  %s/s  %s %s\n", p->what, pct, done, total, p->items,
                p->items_total, speed, final ? "done in" : "ETA", eta);
    }
    fflush(p->out);
    p->drawn_ms = now_ms;
    p->line_done = p->done;
}

void progress_add(progress *p, uint64_t bytes, unsigned items, int64_t now_ms)
{
    p->done += bytes;
    p->items += items;
    if (p->tty) {
        if (p->drawn_ms < 0 || now_ms - p->drawn_ms >= 100) /* ten redraws a second at most */
            draw(p, now_ms, 0);
        return;
    }
    uint64_t tenth = p->total / 10 ? p->total / 10 : 1;
    if (p->done < p->total && (p->done - p->line_done >= tenth || now_ms - p->drawn_ms >= 10000))
        draw(p, now_ms, 0);
}

void progress_clear(progress *p)
{
    if (!p->tty || p->drawn_ms < 0)
        return;
    fputs("\r\033[K", p->out);
    fflush(p->out);
    p->drawn_ms = -1;
}

void progress_finish(progress *p, int64_t now_ms)
{
    draw(p, now_ms, 1);
}
