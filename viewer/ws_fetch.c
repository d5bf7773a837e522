/* ws_fetch.c — studies into the cache: the hub's listing of a task's study,
 * each instance streamed by FETCH chunks into a file in the cache folder
 * (never whole in memory), its digest checked against the listing, then
 * copied into LMDB.  The prefetcher takes the held tasks first, then the
 * best --prefetch offers (STAT first, then the earliest due). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "codecs/codecs.h"
#include "hub/disk.h"
#include "viewer/ws.h"
#include "codecs/banned.h"

#define RETRY_MS 5000


int ws_study_listing(ws *w, uint64_t id, hub_instance **out, size_t *n, char *study, char *err, size_t errlen)
{
    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&w->mu);
    int i = ws_task_find(w, id);
    if (i < 0) {
        pthread_mutex_unlock(&w->mu);
        snprintf(err, errlen, "task %llu is neither offered to nor held by this reader", (unsigned long long)id);
        return -1;
    }
    if (study)
        snprintf(study, 65, "%s", w->tasks[i].t.study_uid);
    if (w->tasks[i].inst) {
        size_t k = w->tasks[i].n_inst;
        *out = malloc((k ? k : 1) * sizeof **out);
        if (*out) {
            memcpy(*out, w->tasks[i].inst, k * sizeof **out);
            *n = k;
        }
        pthread_mutex_unlock(&w->mu);
        return *out ? 0 : -1;
    }
    pthread_mutex_unlock(&w->mu);

    hub_instance *list = NULL;
    size_t k = 0;
    pthread_mutex_lock(&w->hub_mu);
    int rc = hub_client_study(w->hc, id, &list, &k);
    if (rc)
        snprintf(err, errlen, "study listing refused: %s", hub_client_error(w->hc));
    pthread_mutex_unlock(&w->hub_mu);
    if (rc)
        return -1;
    size_t cached = 0;
    for (size_t j = 0; j < k; j++)
        cached += (size_t)ws_cache_has(w->cache, list[j].sop_uid);
    pthread_mutex_lock(&w->mu);
    i = ws_task_find(w, id);
    if (i >= 0 && !w->tasks[i].inst) {
        hub_instance *keep = malloc((k ? k : 1) * sizeof *keep);
        if (keep) {
            memcpy(keep, list, k * sizeof *keep);
            w->tasks[i].inst = keep;
            w->tasks[i].n_inst = k;
            w->tasks[i].n_cached = cached;
            ws_changed(w);
        }
    }
    pthread_mutex_unlock(&w->mu);
    *out = list;
    *n = k;
    return 0;
}

typedef struct sink_ctx {
    int      fd;
    uint64_t limit;
} sink_ctx;

static int sink_pwrite(void *ctx, uint64_t offset, const void *p, size_t n)
{
    sink_ctx *s = ctx;
    if (offset + n > s->limit)
        return 1; /* more than the listing said: refuse */
    const char *q = p;
    while (n) {
        ssize_t k = pwrite(s->fd, q, n, (off_t)offset);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return 1;
        q += k, n -= (size_t)k, offset += (uint64_t)k;
    }
    return 0;
}

/* 0 when the file's data set hashes to the listing's digest. */
static int check_digest(int fd, const char *path, const char *want, char *err, size_t errlen)
{
    if (!want[0])
        return 0;
    dcm_parse_opts o = {.stop_at_tag = DCM_TAG(0x0008, 0x0000)}; /* the meta group is all we need */
    dcm_file *f = NULL;
    dcm_err de = {0};
    if (dcm_open(path, &o, &f, &de) < 0) {
        snprintf(err, errlen, "the fetched instance is not DICOM: %s", de.msg[0] ? de.msg : "unreadable");
        return -1;
    }
    uint64_t off = dcm_dataset_offset(f);
    dcm_free(&f);
    char hex[65];
    if (hub_digest_fd(fd, off, hex) < 0 || strcmp(hex, want)) {
        snprintf(err, errlen, "the fetched bytes do not match the hub's digest");
        return -1;
    }
    return 0;
}

/* After an eviction: how much of each listed study is still cached. */
static void recount(ws *w)
{
    char studies[WS_MAX_TASKS][65];
    size_t n = 0, counts[WS_MAX_TASKS];
    pthread_mutex_lock(&w->mu);
    for (size_t i = 0; i < w->n_tasks; i++)
        snprintf(studies[n++], sizeof studies[0], "%s", w->tasks[i].t.study_uid);
    pthread_mutex_unlock(&w->mu);
    for (size_t i = 0; i < n; i++)
        counts[i] = ws_cache_study_count(w->cache, studies[i]);
    pthread_mutex_lock(&w->mu);
    for (size_t i = 0; i < w->n_tasks; i++)
        for (size_t k = 0; k < n; k++)
            if (!strcmp(w->tasks[i].t.study_uid, studies[k]) && w->tasks[i].inst) {
                size_t c = counts[k] < w->tasks[i].n_inst ? counts[k] : w->tasks[i].n_inst;
                if (c != w->tasks[i].n_cached) {
                    w->tasks[i].n_cached = c;
                    ws_changed(w);
                }
            }
    pthread_mutex_unlock(&w->mu);
}

/* A peer hub's instance is listed without its size (size 0): at most this. */
#define UNSIZED_MAX ((uint64_t)4 << 30)

int ws_fetch_instance(ws *w, uint64_t id, const hub_prior *prior, const char *study, const hub_instance *in, int held,
                      char *err, size_t errlen)
{
    ws_pinned_fn pinned = held ? ws_study_held : ws_study_listed;
    if (!dcm_uid_valid(in->sop_uid)) { /* a file name: never "..", nor a slash */
        snprintf(err, errlen, "an instance UID is not usable as a file name");
        return -1;
    }
    if (!in->size && !in->digest[0]) { /* a peer's: its signed digest is all that vouches for it */
        snprintf(err, errlen, "an instance listed with neither its size nor its digest");
        return -1;
    }
    pthread_mutex_lock(&w->fetch_mu);
    if (ws_cache_has(w->cache, in->sop_uid)) {
        pthread_mutex_unlock(&w->fetch_mu);
        return 0;
    }
    if (!ws_cache_room(w->cache, in->size, pinned, w)) { /* do not fetch what cannot be kept */
        pthread_mutex_unlock(&w->fetch_mu);
        snprintf(err, errlen, "the cache is full with the studies held and offered (--cache-mb)");
        return -1;
    }
    char path[4400];
    snprintf(path, sizeof path, "%s/fetch", w->cfg.cache_dir);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/fetch/%s.part", w->cfg.cache_dir, in->sop_uid);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "cannot write in the cache folder: %s", strerror(errno));
        pthread_mutex_unlock(&w->fetch_mu);
        return -1;
    }
    sink_ctx s = {fd, in->size ? in->size : UNSIZED_MAX};
    pthread_mutex_lock(&w->hub_mu);
    int rc = prior ? hub_client_prior_fetch(w->hc, id, prior, in->sop_uid, 0, sink_pwrite, &s)
                   : hub_client_fetch(w->hc, id, in->sop_uid, 0, sink_pwrite, &s);
    if (rc)
        snprintf(err, errlen, "fetching an instance: %s", hub_client_error(w->hc));
    pthread_mutex_unlock(&w->hub_mu);
    struct stat st = {0};
    if (!rc && (fstat(fd, &st) < 0 || (in->size && (uint64_t)st.st_size != in->size))) {
        snprintf(err, errlen, "the hub sent %lld bytes of an instance listed with %llu", (long long)st.st_size,
                 (unsigned long long)in->size);
        rc = -1;
    }
    if (!rc)
        rc = check_digest(fd, path, in->digest, err, errlen);
    ws_cache_stats before, after;
    ws_cache_stats_get(w->cache, &before);
    if (!rc)
        rc = ws_cache_put_fd(w->cache, study, in->sop_uid, fd, (uint64_t)st.st_size, pinned, w, err, errlen);
    close(fd);
    unlink(path);
    ws_cache_stats_get(w->cache, &after);
    pthread_mutex_unlock(&w->fetch_mu);
    if (rc && disk_full_error(w->cfg.cache_dir, EIO, in->size)) { /* the PC's disk, not the hub: say so */
        char why[300];
        disk_full_reason(w->cfg.cache_dir, why, sizeof why);
        snprintf(err, errlen, "this workstation's %s: studies cannot be cached; free space there (or lower "
                              "--cache-mb)", why);
    }
    if (after.evicted_studies != before.evicted_studies) {
        recount(w); /* counts this instance too */
        return rc ? -1 : 0;
    }
    if (rc)
        return -1;
    if (prior)
        return 0; /* the task's progress counts its own study */
    pthread_mutex_lock(&w->mu);
    int i = ws_task_find(w, id);
    if (i >= 0 && w->tasks[i].n_cached < w->tasks[i].n_inst) {
        size_t k = ++w->tasks[i].n_cached, of = w->tasks[i].n_inst;
        if (k == of || k * 10 / of != (k - 1) * 10 / of) /* progress by tenths: no event per instance */
            ws_changed(w);
    }
    pthread_mutex_unlock(&w->mu);
    return 0;
}

int ws_fetch_study(ws *w, uint64_t id, char *err, size_t errlen)
{
    hub_instance *list;
    size_t n;
    char study[65];
    if (ws_study_listing(w, id, &list, &n, study, err, errlen) < 0)
        return -1;
    pthread_mutex_lock(&w->mu);
    int i = ws_task_find(w, id), held = i >= 0 && w->tasks[i].held;
    pthread_mutex_unlock(&w->mu);
    int rc = 0;
    for (size_t k = 0; k < n && !rc; k++)
        rc = ws_fetch_instance(w, id, NULL, study, &list[k], held, err, errlen);
    free(list);
    return rc;
}

/* The task to prefetch for next (mu held): a held one first, then a held
 * one's prior (*prior set), else the best of the --prefetch best offers;
 * -1 when none needs anything. */
static int pick(ws *w, int64_t now, int *prior)
{
    int best = -1;
    *prior = 0;
    for (size_t i = 0; i < w->n_tasks; i++) {
        ws_task *t = &w->tasks[i];
        if (t->held && !t->done && now >= t->retry_ms && (!t->inst || t->n_cached < t->n_inst))
            return (int)i;
    }
    for (size_t i = 0; i < w->n_tasks; i++)
        if (now >= w->tasks[i].retry_ms && ws_compare_ahead_due(w, &w->tasks[i])) {
            *prior = 1;
            return (int)i;
        }
    /* offers in order: priority, then due */
    int used[WS_MAX_TASKS] = {0};
    for (int k = 0; k < w->cfg.prefetch; k++) {
        int top = -1;
        for (size_t i = 0; i < w->n_tasks; i++) {
            ws_task *t = &w->tasks[i];
            if (!t->offered_ms || used[i])
                continue;
            if (top < 0 || ws_priority_rank(t->t.priority) > ws_priority_rank(w->tasks[top].t.priority) ||
                (ws_priority_rank(t->t.priority) == ws_priority_rank(w->tasks[top].t.priority) &&
                 t->t.due_ms < w->tasks[top].t.due_ms))
                top = (int)i;
        }
        if (top < 0)
            break;
        used[top] = 1;
        ws_task *t = &w->tasks[top];
        if (best < 0 && now >= t->retry_ms && (!t->inst || t->n_cached < t->n_inst))
            best = top;
    }
    return best;
}

/* A prefetch step failed (what: "" for the task's study, "'s prior"):
 * said, and not tried again for RETRY_MS. */
static void failed(ws *w, uint64_t id, const char *what, const char *err)
{
    fprintf(stderr, "dxhub workstation: prefetch of task %llu%s: %s\n", (unsigned long long)id, what, err);
    pthread_mutex_lock(&w->mu);
    int j = ws_task_find(w, id);
    if (j >= 0)
        w->tasks[j].retry_ms = ws_mono_ms() + RETRY_MS;
    pthread_mutex_unlock(&w->mu);
}

int ws_prefetch_step(ws *w)
{
    int64_t now = ws_mono_ms();
    pthread_mutex_lock(&w->mu);
    int prior, i = pick(w, now, &prior);
    if (i < 0) {
        pthread_mutex_unlock(&w->mu);
        return ws_view_step(w); /* everything cached: views and decoding ahead */
    }
    uint64_t id = w->tasks[i].t.id;
    int held = w->tasks[i].held;
    pthread_mutex_unlock(&w->mu);

    char study[65], err[512];
    if (prior) {
        if (ws_compare_ahead_step(w, id, err, sizeof err) < 0)
            failed(w, id, "'s prior", err);
        return 1;
    }
    hub_instance *list;
    size_t n;
    int rc = ws_study_listing(w, id, &list, &n, study, err, sizeof err), missing = 0;
    for (size_t k = 0; rc == 0 && k < n; k++) {
        if (ws_cache_has(w->cache, list[k].sop_uid))
            continue;
        missing = 1;
        rc = ws_fetch_instance(w, id, NULL, study, &list[k], held, err, sizeof err);
        break; /* one instance per step: claims and requests get their turn */
    }
    free(list);
    if (rc == 0 && !missing) { /* all here (fetched for a request meanwhile) */
        pthread_mutex_lock(&w->mu);
        int j = ws_task_find(w, id);
        if (j >= 0 && w->tasks[j].n_cached != w->tasks[j].n_inst) {
            w->tasks[j].n_cached = w->tasks[j].n_inst;
            ws_changed(w);
        }
        pthread_mutex_unlock(&w->mu);
    }
    if (rc)
        failed(w, id, "", err);
    return 1;
}
