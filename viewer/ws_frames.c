/* ws_frames.c — decoded frames kept in memory (ws_frames.h): only frames
 * of compressed instances (a native frame costs a copy to serve again,
 * a JPEG 2000 one a decode), least recently used out first, bounded in
 * bytes.  A few hundred entries at most: a linear scan under one mutex. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "viewer/ws_frames.h"
#include "codecs/banned.h"

typedef struct entry {
    char          sop[65];
    uint32_t      frame;
    uint64_t      used;
    ws_frame_info info;
    void         *p;
    size_t        len;
} entry;

struct ws_frames {
    pthread_mutex_t mu;
    entry          *e;
    size_t          n, cap, bytes, max;
    uint64_t        clock, hits, misses;
};

ws_frames *ws_frames_new(size_t max_bytes)
{
    ws_frames *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    pthread_mutex_init(&f->mu, NULL);
    f->max = max_bytes;
    return f;
}

void ws_frames_free(ws_frames **fp)
{
    if (!fp || !*fp)
        return;
    ws_frames *f = *fp;
    for (size_t i = 0; i < f->n; i++)
        free(f->e[i].p);
    free(f->e);
    pthread_mutex_destroy(&f->mu);
    free(f);
    *fp = NULL;
}

static int find(const ws_frames *f, const char *sop, uint32_t frame)
{
    for (size_t i = 0; i < f->n; i++)
        if (f->e[i].frame == frame && !strcmp(f->e[i].sop, sop))
            return (int)i;
    return -1;
}

int ws_frames_get(ws_frames *f, const char *sop, uint32_t frame, ws_frame_info *info, void **copy, size_t *len)
{
    if (!f)
        return -1;
    pthread_mutex_lock(&f->mu);
    int i = find(f, sop, frame);
    void *p = NULL;
    if (i >= 0 && (p = malloc(f->e[i].len ? f->e[i].len : 1))) {
        memcpy(p, f->e[i].p, f->e[i].len);
        *info = f->e[i].info;
        *len = f->e[i].len;
        f->e[i].used = ++f->clock;
        f->hits++;
    } else {
        f->misses++;
    }
    pthread_mutex_unlock(&f->mu);
    *copy = p;
    return p ? 0 : -1;
}

void ws_frames_put(ws_frames *f, const char *sop, uint32_t frame, const ws_frame_info *info, const void *p, size_t len)
{
    if (!f || len > f->max / 4 || strlen(sop) >= sizeof f->e[0].sop)
        return; /* one frame never takes more than a quarter of the room */
    void *copy = malloc(len ? len : 1);
    if (!copy)
        return;
    memcpy(copy, p, len);
    pthread_mutex_lock(&f->mu);
    if (find(f, sop, frame) >= 0) {
        pthread_mutex_unlock(&f->mu);
        free(copy);
        return;
    }
    while (f->n && f->bytes + len > f->max) { /* out with the least recently used */
        size_t old = 0;
        for (size_t i = 1; i < f->n; i++)
            if (f->e[i].used < f->e[old].used)
                old = i;
        f->bytes -= f->e[old].len;
        free(f->e[old].p);
        f->e[old] = f->e[--f->n];
    }
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 64;
        entry *e = realloc(f->e, cap * sizeof *e);
        if (!e) {
            pthread_mutex_unlock(&f->mu);
            free(copy);
            return;
        }
        f->e = e;
        f->cap = cap;
    }
    entry *e = &f->e[f->n++];
    memset(e, 0, sizeof *e);
    memcpy(e->sop, sop, strlen(sop) + 1);
    e->frame = frame;
    e->used = ++f->clock;
    e->info = *info;
    e->p = copy;
    e->len = len;
    f->bytes += len;
    pthread_mutex_unlock(&f->mu);
}

int ws_frames_has(ws_frames *f, const char *sop, uint32_t frame)
{
    if (!f)
        return 0;
    pthread_mutex_lock(&f->mu);
    int i = find(f, sop, frame);
    pthread_mutex_unlock(&f->mu);
    return i >= 0;
}

int ws_frames_room(ws_frames *f, size_t len)
{
    if (!f)
        return 0;
    pthread_mutex_lock(&f->mu);
    int room = f->bytes + len <= f->max && len <= f->max / 4;
    pthread_mutex_unlock(&f->mu);
    return room;
}

void ws_frames_stats(ws_frames *f, uint64_t *hits, uint64_t *misses, size_t *bytes)
{
    pthread_mutex_lock(&f->mu);
    *hits = f->hits;
    *misses = f->misses;
    *bytes = f->bytes;
    pthread_mutex_unlock(&f->mu);
}
