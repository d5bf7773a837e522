/* api_audit.c — the audit trail of the HTTP API's reads, written behind
 * the answers.
 *
 * Why behind: store_audit is one durable LMDB transaction (an fsync, 1-10
 * ms on ordinary disks, serialised with every other writer), and a study
 * lookup must answer in well under that.  So a request queues its record
 * in memory before its answer is sent, and one writer thread appends the
 * queue to the store in order, everything queued in one transaction: one
 * fsync per commit however many lookups it holds (20,000 lookups a second
 * are 20,000 records a second; one fsync each would be a queue of seconds).  Accesses that are identical (who, what,
 * study, detail) while the writer is busy become one record that says how
 * many there were and until when: the trail still names every access,
 * and a burst of one client's polling costs one commit, not thousands.
 *
 * What stays true: no answer is sent without its record queued; records
 * reach the store in arrival order, at most AUDIT_LINGER_MS plus one
 * commit after the access; a crash loses at most the queue (the accesses
 * of that window); when the store refuses records
 * (map full, I/O) the writer keeps them and retries, and once the queue is
 * full the API withholds patient data (api_audit fails) until the trail
 * can be written again.  api_auditor_stop writes everything queued. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "hub/api_private.h"
#include "hub/disk.h"
#include "hub/log.h"
#include "hub/sched_hint.h"
#include "codecs/banned.h"

#define AUDIT_QUEUE     16384 /* records waiting for the writer (~9 MiB; ~0.8 s at 20,000 lookups/s) */
#define AUDIT_COALESCE  64   /* how far back an identical record is looked for */
#define AUDIT_WAIT_MS   2000 /* a full queue makes a request wait this long at most */
#define AUDIT_RETRY_MS  200  /* after a failed write */
#define AUDIT_LINGER_MS 50   /* between two commits: at most 20 audit fsyncs a second */

#define AUDIT_DETAIL_MAX 320 /* as asked; the record's own has room for the coalescing note */

typedef struct audit_rec {
    int64_t  first_ms, last_ms;
    uint32_t count;
    bool     finished; /* the coalescing note is appended */
    char     who[64], what[24], study[STORE_UID_MAX], detail[AUDIT_DETAIL_MAX + 48];
} audit_rec;

struct api_auditor {
    store          *st;
    hub_metrics    *metrics;
    pthread_mutex_t mu;
    pthread_cond_t  work, space;
    audit_rec      *q, *batch; /* requests fill q; the writer swaps it with batch */
    uint64_t       *qkey;      /* key_of each record of q, compact for the coalescing scan */
    store_audit_rec *recs;     /* the batch as the store takes it (the writer's) */
    size_t          n;
    bool            stopping, failing;
    pthread_t       writer;
    log_repeat      told; /* when a failure was last logged (the writer's) */
};

#define AUDIT_TELL_MS 60000 /* a failure that lasts is logged again this often */

static bool same_key(const audit_rec *r, const char *who, const char *what, const char *study, const char *detail)
{
    return !strcmp(r->who, who) && !strcmp(r->what, what) && !strcmp(r->study, study) && !strcmp(r->detail, detail);
}

/* FNV-1a over the four strings (each with its NUL): the coalescing scan
 * compares these first and the strings only when they match. */
static uint64_t key_of(const char *who, const char *what, const char *study, const char *detail)
{
    const char *parts[4] = {who, what, study, detail};
    uint64_t h = 14695981039346656037ULL;
    for (int i = 0; i < 4; i++) {
        const unsigned char *p = (const unsigned char *)parts[i];
        do
            h = (h ^ *p) * 1099511628211ULL;
        while (*p++);
    }
    return h;
}

/* The conditions wait on CLOCK_MONOTONIC (see api_auditor_start). */
static void deadline_in(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

int api_audit(api_auditor *a, int64_t now_ms, const char *who, const char *what, const char *study,
              const char *detail)
{
    study = study ? study : "";
    detail = detail ? detail : "";
    uint64_t key = key_of(who, what, study, detail);
    pthread_mutex_lock(&a->mu);
    for (size_t i = a->n, k = 0; i > 0 && k < AUDIT_COALESCE; i--, k++) {
        audit_rec *r = &a->q[i - 1];
        if (a->qkey[i - 1] == key && same_key(r, who, what, study, detail)) {
            r->count++;
            r->last_ms = now_ms;
            pthread_mutex_unlock(&a->mu);
            return 0;
        }
    }
    struct timespec until;
    deadline_in(&until, AUDIT_WAIT_MS);
    while (a->n == AUDIT_QUEUE && !a->stopping && !a->failing) /* failing: it will not drain soon */
        if (pthread_cond_timedwait(&a->space, &a->mu, &until) == ETIMEDOUT)
            break;
    if (a->n == AUDIT_QUEUE || a->stopping) {
        pthread_mutex_unlock(&a->mu);
        return -EAGAIN;
    }
    a->qkey[a->n] = key;
    audit_rec *r = &a->q[a->n++];
    r->first_ms = r->last_ms = now_ms;
    r->count = 1;
    snprintf(r->who, sizeof r->who, "%s", who);
    snprintf(r->what, sizeof r->what, "%s", what);
    snprintf(r->study, sizeof r->study, "%s", study);
    r->finished = false;
    snprintf(r->detail, AUDIT_DETAIL_MAX, "%s", detail);
    /* The writer waits for the first record, then lingers until half
     * full: only those two moments need it woken (a wake-up per request
     * would cost two context switches each). */
    if (a->n == 1 || a->n == AUDIT_QUEUE / 2)
        pthread_cond_signal(&a->work);
    pthread_mutex_unlock(&a->mu);
    return 0;
}

/* A coalesced record says how many accesses it stands for and until
 * when, appended to its detail in place (the batch is the writer's). */
static void finish_detail(audit_rec *r)
{
    if (r->count == 1 || r->finished)
        return;
    size_t l = strlen(r->detail);
    snprintf(r->detail + l, sizeof r->detail - l, "%saccesses=%u last_ms=%lld", l ? " " : "", r->count,
             (long long)r->last_ms);
    r->finished = true;
}

static store_audit_rec as_store_rec(const audit_rec *r)
{
    return (store_audit_rec){.t_ms = r->first_ms, .who = r->who, .what = r->what, .study_uid = r->study,
                             .detail = r->detail};
}

/* An operator must hear that accesses are not being recorded: patient
 * data is withheld once the queue fills. */
static void tell_failure(api_auditor *a, int rc, size_t waiting)
{
    if (!log_repeat_due(&a->told, "", AUDIT_TELL_MS))
        return;
    char why[200];
    const char *dir = store_dir(a->st);
    uint64_t room = 0;
    if (rc == -ENOSPC && disk_room(dir, &room, NULL) == 0 && room >= DISK_MARGIN) /* LMDB's map, not the disk */
        snprintf(why, sizeof why, "the store's map is full");
    else if (disk_full_error(dir, -rc, 0))
        disk_full_reason(dir, why, sizeof why);
    else
        snprintf(why, sizeof why, "%s", strerror(-rc));
    log_error("audit trail: %zu access records cannot be written (%s): they are kept and tried again; patient data "
              "is withheld once %d wait", waiting, why, AUDIT_QUEUE);
}

/* Writes batch[from..n): all in one transaction (one fsync), else, when
 * the store refuses that (a nearly full map), one by one so that what
 * fits is kept.  Returns how many were written before a failure. */
static size_t write_batch(api_auditor *a, size_t from, size_t n)
{
    for (size_t i = from; i < n; i++) {
        finish_detail(&a->batch[i]);
        a->recs[i] = as_store_rec(&a->batch[i]);
    }
    if (store_audit_many(a->st, a->recs + from, n - from) == 0)
        return n;
    size_t i = from;
    int rc = 0;
    for (; i < n; i++) {
        if ((rc = store_audit_many(a->st, &a->recs[i], 1)) < 0) {
            hub_count_error(a->metrics, HUB_ERR_STORE_FAILED);
            break;
        }
    }
    if (i < n)
        tell_failure(a, rc, n - i);
    return i;
}

/* Called with the lock held: wait until `until`, unless stopping or the
 * queue is half full.  Meanwhile identical accesses coalesce, and audit
 * commits (each an fsync holding the store's write lock, which ingest
 * needs too) stay few however busy the API is. */
static void linger(api_auditor *a, const struct timespec *until)
{
    while (!a->stopping && a->n < AUDIT_QUEUE / 2)
        if (pthread_cond_timedwait(&a->work, &a->mu, until) == ETIMEDOUT)
            break;
}

static void *writer_main(void *arg)
{
    api_auditor *a = arg;
    /* Its commits (a few ms of CPU each at tens of thousands of lookups a
     * second) must not hold a request thread's CPU; a hint, so a refusal
     * changes nothing else. */
    (void)sched_hint_background_thread();
    size_t n = 0, done = 0; /* the batch in hand, and how much of it is written */
    struct timespec next;   /* the earliest time of the next commit */
    deadline_in(&next, 0);
    pthread_mutex_lock(&a->mu);
    for (;;) {
        if (done == n) {
            while (!a->n && !a->stopping)
                pthread_cond_wait(&a->work, &a->mu);
            if (!a->n && a->stopping)
                break;
            linger(a, &next);
            audit_rec *t = a->batch;
            a->batch = a->q;
            a->q = t;
            n = a->n;
            done = 0;
            a->n = 0;
            pthread_cond_broadcast(&a->space);
        }
        pthread_mutex_unlock(&a->mu);
        deadline_in(&next, AUDIT_LINGER_MS);
        done = write_batch(a, done, n);
        pthread_mutex_lock(&a->mu);
        a->failing = done < n;
        if (a->failing && a->stopping)
            break; /* the store refuses: nothing more can be done at exit */
        if (a->failing) {
            struct timespec until;
            deadline_in(&until, AUDIT_RETRY_MS);
            pthread_cond_timedwait(&a->work, &a->mu, &until);
        }
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

int api_auditor_start(store *st, hub_metrics *m, api_auditor **out)
{
    *out = NULL;
    api_auditor *a = calloc(1, sizeof *a);
    if (!a)
        return -ENOMEM;
    a->q = calloc(AUDIT_QUEUE, sizeof *a->q);
    a->batch = calloc(AUDIT_QUEUE, sizeof *a->batch);
    a->recs = calloc(AUDIT_QUEUE, sizeof *a->recs);
    a->qkey = calloc(AUDIT_QUEUE, sizeof *a->qkey);
    if (!a->q || !a->batch || !a->recs || !a->qkey) {
        free(a->qkey);
        free(a->q);
        free(a->batch);
        free(a->recs);
        free(a);
        return -ENOMEM;
    }
    a->st = st;
    a->metrics = m;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* timeouts immune to clock steps */
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->work, &ca);
    pthread_cond_init(&a->space, &ca);
    pthread_condattr_destroy(&ca);
    int rc = pthread_create(&a->writer, NULL, writer_main, a);
    if (!rc)
        pthread_setname_np(a->writer, "dxhub-audit");
    if (rc) {
        free(a->qkey);
        free(a->q);
        free(a->batch);
        free(a->recs);
        free(a);
        return -rc;
    }
    *out = a;
    return 0;
}

void api_auditor_stop(api_auditor **ap)
{
    api_auditor *a = ap ? *ap : NULL;
    if (!a)
        return;
    pthread_mutex_lock(&a->mu);
    a->stopping = true;
    pthread_cond_broadcast(&a->work);
    pthread_cond_broadcast(&a->space);
    pthread_mutex_unlock(&a->mu);
    pthread_join(a->writer, NULL);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->work);
    pthread_cond_destroy(&a->space);
    free(a->q);
    free(a->batch);
    free(a->recs);
    free(a->qkey);
    free(a);
    *ap = NULL;
}
