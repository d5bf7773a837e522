/* offer_set.c — linear probing keyed by task id (ids start at 1, so 0
 * marks an empty slot); removal shifts the following run back instead of
 * leaving tombstones, so lookups stay short however long the hub runs. */
#include <stdlib.h>
#include "hub/offer_set.h"

typedef struct slot {
    uint64_t id;
    int      conn;
} slot;

struct offer_set {
    slot    *v;
    size_t   mask, n, max;
    uint64_t removals;
};

offer_set *offer_set_new(size_t max)
{
    size_t cap = 16;
    while (cap < max * 2) /* at most half full */
        cap *= 2;
    offer_set *s = calloc(1, sizeof *s);
    if (!s || !(s->v = calloc(cap, sizeof *s->v))) {
        free(s);
        return NULL;
    }
    s->mask = cap - 1;
    s->max = max;
    return s;
}

void offer_set_free(offer_set **s)
{
    if (!s || !*s)
        return;
    free((*s)->v);
    free(*s);
    *s = NULL;
}

static size_t home(const offer_set *s, uint64_t id) { return (size_t)(id * 0x9E3779B97F4A7C15ull >> 17) & s->mask; }

static size_t find(const offer_set *s, uint64_t id)
{
    size_t i = home(s, id);
    while (s->v[i].id && s->v[i].id != id)
        i = (i + 1) & s->mask;
    return i;
}

int offer_set_add(offer_set *s, uint64_t id, int conn)
{
    if (!id || s->n >= s->max)
        return -1;
    size_t i = find(s, id);
    if (s->v[i].id)
        return -1;
    s->v[i] = (slot){id, conn};
    s->n++;
    return 0;
}

int offer_set_conn(const offer_set *s, uint64_t id)
{
    size_t i = find(s, id);
    return s->v[i].id ? s->v[i].conn : -1;
}

void offer_set_remove(offer_set *s, uint64_t id)
{
    size_t i = find(s, id);
    if (!s->v[i].id)
        return;
    s->n--;
    s->removals++;
    /* Backward shift: move up every later entry of the run that may sit
     * at i, so no entry is ever behind an empty slot from its home. */
    for (size_t j = (i + 1) & s->mask; s->v[j].id; j = (j + 1) & s->mask) {
        size_t h = home(s, s->v[j].id);
        if (((j - h) & s->mask) >= ((j - i) & s->mask)) {
            s->v[i] = s->v[j];
            i = j;
        }
    }
    s->v[i] = (slot){0, 0};
}

size_t offer_set_count(const offer_set *s) { return s->n; }

uint64_t offer_set_removals(const offer_set *s) { return s->removals; }
