/* api_tasks.c — GET /api/v1/tasks: the worklist as the reading centre's
 * coordinator wants it: counts by state and priority, the oldest waiting,
 * what is due soon, each reader's load, turnaround of signed tasks, and
 * the queue in offer order (task objects as the reader protocol has them,
 * without patient identifiers). */
#include <stdlib.h>
#include <string.h>
#include "hub/api_private.h"
#include "hub/reader_link.h"

#define SHOWN_MAX 200
#define DUE_SOON_MS (30 * 60 * 1000)

typedef struct load {
    char id[WL_ID_MAX];
    int  held;
} load;

typedef struct tstats {
    int64_t  now;
    uint64_t by_state[WL_STATE_COUNT], by_priority[3], due_soon, overdue, escalated;
    int64_t  oldest_arrival;
    load     readers[256];
    int      n_readers;
    double  *turnaround; /* seconds, signed tasks */
    size_t   n_turn, cap_turn;
} tstats;

/* One pass over every task: the counts, and the turnaround of signed ones. */
static int count_task(void *ctx, const wl_task *t, int64_t signed_ms)
{
    tstats *s = ctx;
    s->by_state[t->state < WL_STATE_COUNT ? t->state : 0]++;
    bool open = t->state != WL_SIGNED && t->state != WL_CANCELLED;
    if (open) {
        s->by_priority[t->priority < 3 ? t->priority : 0]++;
        if (t->due_ms < s->now)
            s->overdue++;
        else if (t->due_ms - s->now < DUE_SOON_MS)
            s->due_soon++;
        s->escalated += t->escalated;
    }
    if ((t->state == WL_QUEUED || t->state == WL_REVIEW) && (!s->oldest_arrival || t->arrival_ms < s->oldest_arrival))
        s->oldest_arrival = t->arrival_ms;
    if (t->holder[0] && open) {
        int i = 0;
        while (i < s->n_readers && strcmp(s->readers[i].id, t->holder))
            i++;
        if (i == s->n_readers && s->n_readers < 256) {
            memcpy(s->readers[i].id, t->holder, sizeof s->readers[i].id);
            s->readers[i].held = 0;
            s->n_readers++;
        }
        if (i < s->n_readers)
            s->readers[i].held++;
    }
    if (signed_ms) {
        if (s->n_turn == s->cap_turn) {
            s->cap_turn = s->cap_turn ? s->cap_turn * 2 : 64;
            double *q = realloc(s->turnaround, s->cap_turn * sizeof *q);
            if (!q)
                return 1;
            s->turnaround = q;
        }
        s->turnaround[s->n_turn++] = (double)(signed_ms - t->arrival_ms) / 1000.0;
    }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct list_ctx {
    jbuf *b;
    int   shown;
} list_ctx;

static int list_one(void *ctx, const wl_task *t)
{
    list_ctx *l = ctx;
    if (l->shown >= SHOWN_MAX)
        return 1;
    json_t *j = task_to_json(t, NULL);
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (text) {
        jb_puts(l->b, l->shown ? "," : "");
        jb_puts(l->b, text);
        free(text);
        l->shown++;
    }
    return 0;
}

int api_render_tasks(jbuf *b, store *st, int64_t now_ms)
{
    tstats s = {.now = now_ms};
    if (store_task_walk_signed(st, count_task, &s) < 0) {
        free(s.turnaround);
        return -1;
    }
    jb_puts(b, "{\"counts\":{");
    for (int i = 0; i < WL_STATE_COUNT; i++)
        jb_printf(b, "%s\"%s\":%llu", i ? "," : "", wl_state_name((wl_state)i), (unsigned long long)s.by_state[i]);
    jb_printf(b, "},\"open_by_priority\":{\"stat\":%llu,\"urgent\":%llu,\"routine\":%llu}",
              (unsigned long long)s.by_priority[WL_STAT], (unsigned long long)s.by_priority[WL_URGENT],
              (unsigned long long)s.by_priority[WL_ROUTINE]);
    jb_printf(b, ",\"due_within_30_min\":%llu,\"overdue\":%llu,\"escalated\":%llu", (unsigned long long)s.due_soon,
              (unsigned long long)s.overdue, (unsigned long long)s.escalated);
    if (s.oldest_arrival)
        jb_printf(b, ",\"oldest_waiting_s\":%lld", (long long)((now_ms - s.oldest_arrival) / 1000));
    else
        jb_puts(b, ",\"oldest_waiting_s\":null");
    jb_puts(b, ",\"readers\":{");
    for (int i = 0; i < s.n_readers; i++) {
        jb_puts(b, i ? "," : "");
        jb_str(b, s.readers[i].id);
        jb_printf(b, ":%d", s.readers[i].held);
    }
    jb_puts(b, "},\"turnaround_s\":");
    if (s.n_turn) {
        qsort(s.turnaround, s.n_turn, sizeof *s.turnaround, cmp_double);
        jb_printf(b, "{\"signed\":%zu,\"median\":%.1f,\"p90\":%.1f}", s.n_turn, s.turnaround[s.n_turn / 2],
                  s.turnaround[(s.n_turn * 9) / 10 < s.n_turn ? (s.n_turn * 9) / 10 : s.n_turn - 1]);
    } else {
        jb_puts(b, "null");
    }
    free(s.turnaround);
    jb_puts(b, ",\"queue\":[");
    list_ctx l = {b, 0};
    store_task_walk(st, 1, list_one, &l);
    jb_puts(b, "]}");
    return jb_ok(b) ? 0 : -1;
}
