/* reader_aside.c — PRIORS and PRIOR answered off the reader link's thread
 * (reader_aside.h).  The link copies the request into `waiting`; one of
 * ASIDE_THREADS threads answers it with reader_query (read-only: LMDB read
 * transactions, the HTTP API's renderers and the peer client, all safe
 * from several threads) and moves it to `done`; the link sends the answers
 * when woken.  Each job owns its copies: no JSON is shared between
 * threads. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "hub/log.h"
#include "hub/reader_aside.h"

/* Several at once: one reader's question to a silent peer does not hold up
 * another's, and each mostly waits on the network. */
#define ASIDE_THREADS 4

typedef struct waiting_job {
    aside_job job;
    char      cmd[16];
    json_t   *hdr;   /* the request's header (a copy, owned) */
    wl_reader reader;
} waiting_job;

struct reader_aside {
    const reader_link_config *cfg;
    int                       wake_fd;
    pthread_t                 threads[ASIDE_THREADS];
    int                       n_threads;
    pthread_mutex_t           mu;
    pthread_cond_t            cv;
    bool                      stop;
    waiting_job             **waiting; /* FIFO ring of ASIDE_MAX_WAITING */
    size_t                    head, n_waiting;
    aside_job                *done;
    size_t                    n_done, cap_done;
};

bool reader_aside_wants(const proto_msg *m)
{
    if (!strcmp(m->cmd, "PRIORS") || !strcmp(m->cmd, "PRIOR"))
        return true;
    return (!strcmp(m->cmd, "STUDY") || !strcmp(m->cmd, "FETCH")) && proto_str(m, "hub");
}

void aside_job_free(aside_job *j)
{
    zmq_msg_close(&j->route);
    json_decref(j->req);
    json_decref(j->answer.hdr);
    free(j->answer.data);
    memset(j, 0, sizeof *j);
}

static void waiting_free(waiting_job *w)
{
    aside_job_free(&w->job);
    json_decref(w->hdr);
    free(w);
}

/* The answer to w, into w->job (no lock held: it may wait on a peer). */
static void answer(const reader_link_config *cfg, waiting_job *w)
{
    proto_msg m;
    memset(&m, 0, sizeof m); /* reader_query reads the command and the header only */
    memcpy(m.cmd, w->cmd, sizeof m.cmd);
    m.hdr = w->hdr;
    reader_answer *a = &w->job.answer;
    memset(a, 0, sizeof *a);
    w->job.failed = reader_query(cfg, &m, &w->reader, a) < 0;
    if (w->job.failed) {
        json_decref(a->hdr);
        free(a->data);
        a->hdr = NULL;
        a->data = NULL;
    }
}

static void wake(int fd)
{
    uint64_t one = 1;
    ssize_t r = write(fd, &one, sizeof one);
    (void)r;
}

static void *worker(void *arg)
{
    reader_aside *a = arg;
    pthread_mutex_lock(&a->mu);
    for (;;) {
        while (!a->stop && !a->n_waiting)
            pthread_cond_wait(&a->cv, &a->mu);
        if (a->stop)
            break;
        waiting_job *w = a->waiting[a->head];
        a->head = (a->head + 1) % ASIDE_MAX_WAITING;
        a->n_waiting--;
        pthread_mutex_unlock(&a->mu);
        answer(a->cfg, w);
        pthread_mutex_lock(&a->mu);
        if (a->n_done == a->cap_done) {
            size_t cap = a->cap_done ? a->cap_done * 2 : 16;
            aside_job *v = realloc(a->done, cap * sizeof *v);
            if (!v) { /* no answer: the reader's request times out, as if lost */
                log_error("readers: out of memory answering a %s", w->cmd);
                waiting_free(w);
                continue;
            }
            a->done = v;
            a->cap_done = cap;
        }
        a->done[a->n_done++] = w->job; /* the route and JSON move with it */
        memset(&w->job, 0, sizeof w->job);
        zmq_msg_init(&w->job.route);
        waiting_free(w);
        wake(a->wake_fd);
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

int reader_aside_start(const reader_link_config *cfg, int wake_fd, reader_aside **out)
{
    *out = NULL;
    reader_aside *a = calloc(1, sizeof *a);
    if (!a || !(a->waiting = calloc(ASIDE_MAX_WAITING, sizeof *a->waiting))) {
        free(a);
        return -ENOMEM;
    }
    a->cfg = cfg;
    a->wake_fd = wake_fd;
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    for (int i = 0; i < ASIDE_THREADS; i++) {
        int rc = pthread_create(&a->threads[i], NULL, worker, a);
        if (rc) {
            reader_aside_stop(&a, NULL);
            return -rc;
        }
        pthread_setname_np(a->threads[i], "dxhub-priors");
        a->n_threads++;
    }
    *out = a;
    return 0;
}

int reader_aside_push(reader_aside *a, const proto_msg *m, const wl_reader *r)
{
    waiting_job *w = calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    zmq_msg_init(&w->job.route);
    if (m->has_route)
        zmq_msg_copy(&w->job.route, (zmq_msg_t *)&m->route);
    json_t *req = json_object_get(m->hdr, "req");
    w->job.req = req ? json_deep_copy(req) : NULL;
    w->hdr = json_deep_copy(m->hdr);
    memcpy(w->cmd, m->cmd, sizeof w->cmd);
    w->reader = *r;
    if (!w->hdr) {
        waiting_free(w);
        return -ENOMEM;
    }
    pthread_mutex_lock(&a->mu);
    if (a->n_waiting == ASIDE_MAX_WAITING) {
        pthread_mutex_unlock(&a->mu);
        waiting_free(w);
        return -ENOSPC;
    }
    a->waiting[(a->head + a->n_waiting++) % ASIDE_MAX_WAITING] = w;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
    return 0;
}

size_t reader_aside_take(reader_aside *a, aside_job **out)
{
    pthread_mutex_lock(&a->mu);
    size_t n = a->n_done;
    *out = a->done;
    a->done = NULL;
    a->n_done = a->cap_done = 0;
    pthread_mutex_unlock(&a->mu);
    return n;
}

size_t reader_aside_stop(reader_aside **ap, aside_job **rest)
{
    reader_aside *a = ap ? *ap : NULL;
    if (rest)
        *rest = NULL;
    if (!a)
        return 0;
    pthread_mutex_lock(&a->mu);
    a->stop = true;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
    for (int i = 0; i < a->n_threads; i++)
        pthread_join(a->threads[i], NULL);
    for (size_t i = 0; i < a->n_waiting; i++)
        waiting_free(a->waiting[(a->head + i) % ASIDE_MAX_WAITING]);
    size_t n = a->n_done;
    if (rest) {
        *rest = a->done;
    } else {
        for (size_t i = 0; i < n; i++)
            aside_job_free(&a->done[i]);
        free(a->done);
        n = 0;
    }
    free(a->waiting);
    pthread_cond_destroy(&a->cv);
    pthread_mutex_destroy(&a->mu);
    free(a);
    *ap = NULL;
    return n;
}
