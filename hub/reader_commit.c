/* reader_commit.c — the reader link's committer thread (reader_commit.h).
 * The link appends ops to `pending`; the thread swaps the whole list out,
 * applies it in one write transaction (store_batch_*), commits it with
 * LMDB's default sync (so a commit is durable, and a system crash cannot
 * corrupt the store), and moves the ops to `done` with their answers.
 * While it commits, the next requests gather in `pending`: one fsync covers
 * everything that arrived during the one before. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "hub/disk.h"
#include "hub/log.h"
#include "hub/reader_commit.h"
#include "hub/reader_link.h"
#include "hub/store_tasks.h"
#include "hub/task_json.h"

/* Requests waiting to be applied at most: each reader waits for its
 * answers, so only a flood from misbehaving readers comes near it. */
#define RC_MAX_WAITING 16384

struct reader_commit {
    store          *st;
    int             wake_fd;
    pthread_t       thread;
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    bool            stop;
    rc_list         pending, done;
    /* for the log line at stop: how well commits were shared */
    uint64_t        commits, ops, commit_us, sync_us;
    uint64_t        answer_us; /* summed over answered ops: pushed → answer ready */
    uint64_t        answered;
};

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int list_add(rc_list *l, const rc_op *op)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        rc_op *v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = *op;
    return 0;
}

void rc_list_clear(rc_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        zmq_msg_close(&l->v[i].route);
        json_decref(l->v[i].req);
        json_decref(l->v[i].answer);
        free(l->v[i].text);
    }
    l->n = 0;
}

void rc_list_free(rc_list *l)
{
    rc_list_clear(l);
    free(l->v);
    *l = (rc_list){0};
}

static json_t *reason(int rc) { return json_pack("{s:s}", "reason", wl_strerror(rc)); }

/* Apply op in b, setting its result and answer (as they stand if b commits). */
static void apply(store_batch *b, rc_op *op)
{
    wl_task task;
    store_study study;
    int has_st = 0;
    switch (op->kind) {
    case RC_OFFER:
        op->rc = store_batch_offer_task(b, op->task, &op->reader, op->now);
        break;
    case RC_CLAIM:
        op->rc = store_batch_claim(b, op->task, &op->reader, op->now, &task, &study, &has_st);
        if (op->rc) {
            op->cmd = "NACK";
            op->answer = reason(op->rc);
            break;
        }
        op->cmd = "CLAIMED";
        char text[TASK_JSON_MAX];
        int len = task_json_header(text, sizeof text, &task, has_st ? &study : NULL, task.holder_until_ms, op->req);
        if (len >= 0 && (op->text = malloc((size_t)len + 1))) {
            memcpy(op->text, text, (size_t)len + 1);
            op->text_len = (size_t)len;
            break;
        }
        op->answer = json_object();
        json_object_set_new(op->answer, "task", task_to_json(&task, has_st ? &study : NULL));
        json_object_set_new(op->answer, "lease_until", json_integer((json_int_t)task.holder_until_ms));
        break;
    case RC_HEARTBEAT:
        op->rc = store_batch_heartbeat(b, op->reader.id, op->now);
        op->cmd = "HEARTBEAT";
        op->answer = json_pack("{s:i}", "leases", op->rc < 0 ? 0 : op->rc);
        break;
    case RC_RELEASE:
        op->rc = store_batch_release(b, op->task, op->reader.id, op->now);
        op->cmd = op->rc ? "NACK" : "OK";
        op->answer = op->rc ? reason(op->rc) : json_object();
        break;
    case RC_TICK:
        op->rc = store_batch_tick(b, op->now);
        break;
    }
}

/* Nothing of the batch was kept: every answer says so, and why. */
static void failed(rc_op *op, const char *why)
{
    op->rc = WL_ESTORE;
    json_decref(op->answer);
    op->answer = NULL;
    free(op->text);
    op->text = NULL;
    op->cmd = NULL;
    if (op->kind == RC_CLAIM || op->kind == RC_HEARTBEAT || op->kind == RC_RELEASE) {
        op->cmd = "NACK";
        op->answer = json_pack("{s:s}", "reason", why);
    }
}

static void apply_all(reader_commit *c, rc_list *work)
{
    store_batch *b = NULL;
    int rc = store_batch_begin(c->st, &b);
    if (!rc) {
        for (size_t i = 0; i < work->n; i++)
            apply(b, &work->v[i]);
        uint64_t t0 = mono_us();
        rc = store_batch_commit(&b); /* durable before any answer leaves */
        c->sync_us += mono_us() - t0;
    }
    char why[200] = "worklist storage failure";
    if (rc < 0 && disk_full_error(store_dir(c->st), -rc, 0)) {
        snprintf(why, sizeof why, "worklist not stored: ");
        disk_full_reason(store_dir(c->st), why + strlen(why), sizeof why - strlen(why));
    }
    if (rc)
        log_warn("readers: worklist commit failed (%d, %s): %zu requests refused", rc, why, work->n);
    for (size_t i = 0; i < work->n; i++) {
        rc_op *op = &work->v[i];
        if (rc)
            failed(op, why);
        if (op->answer && op->req)
            json_object_set(op->answer, "req", op->req);
    }
}

static void *commit_main(void *arg)
{
    reader_commit *c = arg;
    rc_list work = {0};
    for (;;) {
        pthread_mutex_lock(&c->mu);
        while (!c->pending.n && !c->stop)
            pthread_cond_wait(&c->cv, &c->mu);
        if (!c->pending.n) {
            pthread_mutex_unlock(&c->mu);
            break;
        }
        rc_list t = c->pending;
        c->pending = work;
        work = t;
        pthread_mutex_unlock(&c->mu);

        uint64_t t0 = mono_us();
        apply_all(c, &work);
        c->commits++;
        c->ops += work.n;
        c->commit_us += mono_us() - t0;

        uint64_t t1 = mono_us();
        for (size_t i = 0; i < work.n; i++)
            if (work.v[i].cmd) { /* a request waiting for this answer */
                c->answer_us += t1 - work.v[i].queued_us;
                c->answered++;
            }
        pthread_mutex_lock(&c->mu);
        for (size_t i = 0; i < work.n; i++)
            if (list_add(&c->done, &work.v[i]) < 0) { /* no answer: the reader times out and asks again */
                rc_list one = {&work.v[i], 1, 1};
                rc_list_clear(&one);
            }
        work.n = 0;
        pthread_mutex_unlock(&c->mu);
        uint64_t one = 1;
        ssize_t w = write(c->wake_fd, &one, sizeof one);
        (void)w;
    }
    free(work.v);
    return NULL;
}

int reader_commit_start(store *st, int wake_fd, reader_commit **out)
{
    reader_commit *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->st = st;
    c->wake_fd = wake_fd;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    int rc = pthread_create(&c->thread, NULL, commit_main, c);
    if (rc) {
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->cv);
        free(c);
        return -rc;
    }
    pthread_setname_np(c->thread, "dxhub-wlcommit"); /* per-thread CPU in top, perf and the worklist bench */
    *out = c;
    return 0;
}

int reader_commit_push(reader_commit *c, rc_op *op)
{
    op->queued_us = mono_us();
    pthread_mutex_lock(&c->mu);
    int rc = c->pending.n >= RC_MAX_WAITING ? -ENOSPC : list_add(&c->pending, op);
    if (!rc)
        pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    if (!rc) { /* moved: the caller's copy owns nothing now */
        zmq_msg_init(&op->route);
        op->req = NULL;
        op->answer = NULL;
        op->text = NULL;
    }
    return rc;
}

static void move_all(rc_list *from, rc_list *to)
{
    for (size_t i = 0; i < from->n; i++)
        if (list_add(to, &from->v[i]) < 0) {
            rc_list one = {&from->v[i], 1, 1};
            rc_list_clear(&one);
        }
    from->n = 0;
}

void reader_commit_take(reader_commit *c, rc_list *out)
{
    pthread_mutex_lock(&c->mu);
    if (!out->n && out->cap <= c->done.cap) { /* the usual case: swap the lists */
        rc_list t = *out;
        *out = c->done;
        c->done = t;
    } else {
        move_all(&c->done, out);
    }
    pthread_mutex_unlock(&c->mu);
}

void reader_commit_stop(reader_commit **cp, rc_list *rest)
{
    if (!cp || !*cp)
        return;
    reader_commit *c = *cp;
    pthread_mutex_lock(&c->mu);
    c->stop = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    if (c->commits)
        log_info("readers: %llu worklist commits for %llu requests (%.1f a commit), %.2f ms each on average "
                 "(%.2f ms of it in LMDB's commit); a request waited %.2f ms on average from queued to answered",
                 (unsigned long long)c->commits, (unsigned long long)c->ops, (double)c->ops / (double)c->commits,
                 (double)c->commit_us / 1000.0 / (double)c->commits, (double)c->sync_us / 1000.0 / (double)c->commits,
                 c->answered ? (double)c->answer_us / 1000.0 / (double)c->answered : 0.0);
    move_all(&c->done, rest);
    rc_list_free(&c->pending);
    rc_list_free(&c->done);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
    *cp = NULL;
}
