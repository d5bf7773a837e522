/* ws_compare.c — a prior study of the task's patient opened beside the
 * task's own, to compare (GET /api/tasks/{id}/compare/{study}): "the nodule
 * has grown since October" needs October's images, not only its report.
 *
 * The hub lists and sends it (STUDY and FETCH with "prior"), and refuses
 * a study that is not the same patient's or not held there; it audits the
 * read as this reader's.  A peer hub's exam comes the same way, named by
 * its report there (?hub=&report=): listed without sizes, each instance
 * checked against the digest that report signed.  The workstation caches it like the task's own
 * study (pinned while the task is listed) and lays it out with the same
 * code (ws_view.c), so the page shows it with a second stack viewer and
 * its frames come from /api/instances/{sop}/frames/{n}.  One comparison
 * per task: opening another replaces it.
 *
 * Ahead of the reader (--prefetch-prior): once a held task's own study is
 * cached, the prior the hub names for it (PRIORS's "relevant_prior": the
 * patient's last earlier exam of the same modality, there or at the hub of
 * the hospital that referred them) is listed and fetched as that
 * comparison, and laid out once wholly cached, so Compare opens at once,
 * even with the hub away. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "codecs/codecs.h"
#include "viewer/ws_http.h"
#include "codecs/banned.h"

/* Which prior: a study this hub holds, or a peer hub's exam named by its
 * report there; ahead when fetched before the reader opened it. */
typedef struct prior_ref {
    char study[65], hub[64], report_id[64];
    int  ahead;
} prior_ref;

static hub_prior hub_prior_of(const prior_ref *p)
{
    return (hub_prior){.study = p->study, .hub = p->hub[0] ? p->hub : NULL,
                       .report_id = p->hub[0] ? p->report_id : NULL, .ahead = p->ahead != 0};
}

/* Is c the comparison p names (the same study from the same hub and report)? */
static int same_prior(const ws_compare *c, const prior_ref *p)
{
    return !strcmp(c->study, p->study) && !strcmp(c->hub, p->hub) && !strcmp(c->report_id, p->report_id);
}

/* The comparison task id keeps (mu held by the caller). */
static prior_ref kept_ref(const ws_compare *c)
{
    prior_ref p = {.ahead = c->ahead};
    snprintf(p.study, sizeof p.study, "%s", c->study);
    snprintf(p.hub, sizeof p.hub, "%s", c->hub);
    snprintf(p.report_id, sizeof p.report_id, "%s", c->report_id);
    return p;
}

/* The listing of the prior the task compares with, asked of the hub when
 * it is another study than the one kept (p->ahead: to fetch it before it
 * is opened): a malloc'd copy in *out.  0, or an HTTP status with the
 * reason. */
static int listing(ws *w, uint64_t id, const prior_ref *p, hub_instance **out, size_t *n, char *err, size_t errlen)
{
    const char *study = p->study;
    int ahead = p->ahead;
    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&w->mu);
    int i = ws_task_find(w, id);
    ws_compare *c = i >= 0 ? &w->tasks[i].cmp : NULL;
    if (c && c->inst && same_prior(c, p)) {
        *out = malloc((c->n_inst ? c->n_inst : 1) * sizeof **out);
        if (*out) {
            memcpy(*out, c->inst, c->n_inst * sizeof **out);
            *n = c->n_inst;
        }
        pthread_mutex_unlock(&w->mu);
        return *out ? 0 : 500;
    }
    pthread_mutex_unlock(&w->mu);
    if (i < 0) {
        snprintf(err, errlen, "task %llu is neither offered to nor held by this reader", (unsigned long long)id);
        return 404;
    }
    hub_instance *list = NULL;
    size_t k = 0;
    pthread_mutex_lock(&w->hub_mu);
    hub_prior hp = hub_prior_of(p);
    int rc = hub_client_prior_study(w->hc, id, &hp, &list, &k);
    if (rc)
        snprintf(err, errlen, "%s", hub_client_error(w->hc));
    pthread_mutex_unlock(&w->hub_mu);
    if (rc)
        return rc == HUB_EREFUSED ? 409 : rc == HUB_ETIMEDOUT ? 504 : 502;
    if (!k) {
        free(list);
        snprintf(err, errlen, "the hub holds no instance of that prior study any more");
        return 404;
    }
    hub_instance *keep = malloc(k * sizeof *keep);
    if (!keep) {
        free(list);
        snprintf(err, errlen, "out of memory");
        return 500;
    }
    memcpy(keep, list, k * sizeof *keep);
    pthread_mutex_lock(&w->mu);
    i = ws_task_find(w, id);
    c = i >= 0 ? &w->tasks[i].cmp : NULL;
    if (c && ahead && (!c->ahead || !same_prior(c, p)))
        c = NULL; /* the reader opened another meanwhile: theirs stays */
    if (c) {
        free(c->inst);
        free(c->view);
        *c = (ws_compare){.inst = keep, .n_inst = k, .ahead = ahead};
        snprintf(c->study, sizeof c->study, "%s", study);
        snprintf(c->hub, sizeof c->hub, "%s", p->hub);
        snprintf(c->report_id, sizeof c->report_id, "%s", p->report_id);
        keep = NULL;
    }
    pthread_mutex_unlock(&w->mu);
    free(keep);
    *out = list;
    *n = k;
    return 0;
}

/* cached of the n instances of prior p are in the cache (up: at least,
 * counted while fetching in order): the task list says so (its "prior"),
 * and the page shows it while Compare opens; an event by tenths, not one
 * per instance. */
static void note_cached(ws *w, uint64_t id, const prior_ref *p, size_t cached, size_t n, int up)
{
    pthread_mutex_lock(&w->mu);
    int i = ws_task_find(w, id);
    ws_compare *c = i >= 0 ? &w->tasks[i].cmp : NULL;
    if (c && n && same_prior(c, p) && (up ? cached > c->n_cached : cached != c->n_cached)) {
        if (cached == n || cached * 10 / n != c->n_cached * 10 / n)
            ws_changed(w);
        c->n_cached = cached;
    }
    pthread_mutex_unlock(&w->mu);
}

/* Every listed instance of the prior in the cache. */
static int fetch_all(ws *w, uint64_t id, const prior_ref *p, const hub_instance *list, size_t n, char *err,
                     size_t errlen)
{
    pthread_mutex_lock(&w->mu);
    int i = ws_task_find(w, id), held = i >= 0 && w->tasks[i].held;
    pthread_mutex_unlock(&w->mu);
    hub_prior hp = hub_prior_of(p);
    for (size_t k = 0; k < n; k++) {
        if (ws_fetch_instance(w, id, &hp, p->study, &list[k], held, err, errlen) < 0)
            return -1;
        note_cached(w, id, p, k + 1, n, 1);
    }
    return 0;
}

int ws_compare_fetch(ws *w, uint64_t id, char *err, size_t errlen)
{
    prior_ref p = {0};
    pthread_mutex_lock(&w->mu);
    int i = ws_task_find(w, id);
    if (i >= 0)
        p = kept_ref(&w->tasks[i].cmp);
    pthread_mutex_unlock(&w->mu);
    if (!p.study[0]) {
        snprintf(err, errlen, "task %llu compares with no prior", (unsigned long long)id);
        return -1;
    }
    p.ahead = 0;
    hub_instance *list;
    size_t n;
    if (listing(w, id, &p, &list, &n, err, errlen))
        return -1;
    int rc = fetch_all(w, id, &p, list, n, err, errlen);
    free(list);
    return rc;
}

static int  kept_view(ws *w, uint64_t id, const prior_ref *p, char **json, size_t *len);
static void keep_view(ws *w, uint64_t id, const prior_ref *p, const char *json, size_t len);

/* ---- ahead of the reader ---------------------------------------------------------- */

int ws_compare_ahead_due(const ws *w, const ws_task *t)
{
    if (!w->cfg.prefetch_prior || !t->held || t->done || !t->inst || t->n_cached < t->n_inst)
        return 0;
    return !t->prior_asked || (t->cmp.ahead && (!t->cmp.inst || t->cmp.n_cached < t->cmp.n_inst));
}

/* Which prior the hub names for task id (here or at a peer hub), taken
 * as its comparison unless the reader opened one already: 1 with *p
 * filled, 0 when none. */
static int ask_relevant(ws *w, uint64_t id, prior_ref *p, char *err, size_t errlen)
{
    hub_relevant rel;
    pthread_mutex_lock(&w->hub_mu);
    int rc = hub_client_relevant_prior(w->hc, id, &rel);
    if (rc)
        snprintf(err, errlen, "asking for its prior: %s", hub_client_error(w->hc));
    pthread_mutex_unlock(&w->hub_mu);
    if (rc)
        return -1;
    if (rel.study[0] && !dcm_uid_valid(rel.study)) {
        snprintf(err, errlen, "the hub named a prior that is not a Study Instance UID");
        rel.study[0] = 0;
    }
    int taken = 0;
    pthread_mutex_lock(&w->mu);
    int i = ws_task_find(w, id);
    if (i >= 0) {
        ws_compare *c = &w->tasks[i].cmp;
        w->tasks[i].prior_asked = 1;
        if (rel.study[0] && !c->study[0]) {
            snprintf(c->study, sizeof c->study, "%s", rel.study);
            snprintf(c->hub, sizeof c->hub, "%s", rel.hub);
            snprintf(c->report_id, sizeof c->report_id, "%s", rel.report_id);
            c->ahead = taken = 1;
            *p = kept_ref(c);
        }
    }
    pthread_mutex_unlock(&w->mu);
    return taken;
}

/* The prior's layout, as Compare answers it, kept with the task once the
 * prior is wholly cached (the task's "prior" says ready): a
 * 300-slice prior's headers are read now, not while the reader waits. */
static void lay_out(ws *w, uint64_t id, const prior_ref *p, const hub_instance *list, size_t n)
{
    char *json, err[300];
    size_t len;
    int complete = 0;
    if (kept_view(w, id, p, &json, &len)) {
        free(json);
        return;
    }
    if (ws_view_of(w, id, p->study, list, n, &json, &len, &complete, err, sizeof err) == 0) {
        if (complete)
            keep_view(w, id, p, json, len);
        free(json);
    } else {
        fprintf(stderr, "dxhub workstation: prior of task %llu, fetched ahead, cannot be laid out: %s\n",
                (unsigned long long)id, err);
    }
}

int ws_compare_ahead_step(ws *w, uint64_t id, char *err, size_t errlen)
{
    prior_ref p = {0};
    pthread_mutex_lock(&w->mu);
    int i = ws_task_find(w, id), asked = i >= 0 && w->tasks[i].prior_asked;
    if (i >= 0)
        p = kept_ref(&w->tasks[i].cmp);
    pthread_mutex_unlock(&w->mu);
    if (i < 0)
        return 0;
    if (!asked) {
        int got = ask_relevant(w, id, &p, err, errlen);
        if (got <= 0)
            return got;
    }
    if (!p.ahead)
        return 0; /* the reader opened another prior: theirs to fetch */
    hub_instance *list;
    size_t n = 0, cached = 0;
    hub_prior hp = hub_prior_of(&p);
    int rc = listing(w, id, &p, &list, &n, err, errlen) ? -1 : 0;
    for (size_t k = 0; rc == 0 && k < n; k++)
        if (!ws_cache_has(w->cache, list[k].sop_uid)) {
            /* as for an offer: what the offers keep is not evicted for it */
            rc = ws_fetch_instance(w, id, &hp, p.study, &list[k], 0, err, errlen);
            break; /* one instance per step: the reader's requests get their turn */
        }
    for (size_t k = 0; rc == 0 && k < n; k++) /* the page may have fetched some meanwhile */
        cached += (size_t)ws_cache_has(w->cache, list[k].sop_uid);
    if (rc == 0 && n && cached == n)
        lay_out(w, id, &p, list, n);
    free(list);
    if (rc == 0) {
        note_cached(w, id, &p, cached, n, 0);
        return 0;
    }
    pthread_mutex_lock(&w->mu);
    i = ws_task_find(w, id);
    ws_compare *c = i >= 0 ? &w->tasks[i].cmp : NULL;
    if (c && c->ahead && same_prior(c, &p) && ++c->fails >= WS_AHEAD_TRIES)
        c->ahead = 0; /* given up: Compare still fetches it when opened */
    pthread_mutex_unlock(&w->mu);
    return rc;
}

/* The view kept with the task for study, copied into *json; 0 when none. */
static int kept_view(ws *w, uint64_t id, const prior_ref *p, char **json, size_t *len)
{
    *json = NULL;
    pthread_mutex_lock(&w->mu);
    int i = ws_task_find(w, id);
    ws_compare *c = i >= 0 ? &w->tasks[i].cmp : NULL;
    if (c && c->view && same_prior(c, p) && (*json = malloc(c->view_len + 1)))
        memcpy(*json, c->view, (*len = c->view_len) + 1);
    pthread_mutex_unlock(&w->mu);
    return *json != NULL;
}

static void keep_view(ws *w, uint64_t id, const prior_ref *p, const char *json, size_t len)
{
    char *copy = malloc(len + 1);
    if (!copy)
        return;
    memcpy(copy, json, len + 1);
    pthread_mutex_lock(&w->mu);
    int i = ws_task_find(w, id);
    ws_compare *c = i >= 0 ? &w->tasks[i].cmp : NULL;
    if (c && !c->view && same_prior(c, p)) {
        c->view = copy;
        c->view_len = len;
        copy = NULL;
        ws_changed(w); /* the task's prior is ready: the priors panel says so */
    }
    pthread_mutex_unlock(&w->mu);
    free(copy);
}

void ws_api_compare(ws_req *r, ws_resp *o)
{
    ws *w = r->w;
    const char *study = r->args[1], *hub = ws_req_query(r, "hub"), *report = ws_req_query(r, "report");
    int i = ws_api_task(r, o, 1); /* as the hub: a task held or offered to this reader */
    if (i < 0)
        return;
    uint64_t id = w->tasks[i].t.id;
    int same = !strcmp(w->tasks[i].t.study_uid, study);
    pthread_mutex_unlock(&w->mu);
    if (!dcm_uid_valid(study)) {
        ws_error(o, 400, "'%.80s' is not a Study Instance UID", study);
        return;
    }
    if (same) {
        ws_error(o, 400, "that is the task's own study (GET /api/tasks/%llu/study)", (unsigned long long)id);
        return;
    }
    if (strlen(hub) >= 64 || strlen(report) >= 64 || (hub[0] && !report[0])) {
        ws_error(o, 400, "a peer hub's prior needs ?hub=NAME&report=ID (each under 64 characters)");
        return;
    }
    prior_ref p = {0};
    snprintf(p.study, sizeof p.study, "%s", study);
    snprintf(p.hub, sizeof p.hub, "%s", hub);
    snprintf(p.report_id, sizeof p.report_id, "%s", hub[0] ? report : "");
    char *json, err[600];
    size_t len;
    if (kept_view(w, id, &p, &json, &len)) {
        ws_cache_touch(w->cache, study);
        ws_bytes(o, 200, "application/json; charset=utf-8", json, len);
        return;
    }
    hub_instance *list;
    size_t n;
    int status = listing(w, id, &p, &list, &n, err, sizeof err);
    if (status) {
        ws_error(o, status, "the prior study cannot be compared: %s", err);
        return;
    }
    if (fetch_all(w, id, &p, list, n, err, sizeof err) < 0) {
        free(list);
        ws_error(o, 502, "cannot get the prior study from the hub: %s", err);
        return;
    }
    int complete = 0;
    status = ws_view_of(w, id, study, list, n, &json, &len, &complete, err, sizeof err);
    free(list);
    if (status) {
        ws_error(o, status, "%s", err);
        return;
    }
    if (complete)
        keep_view(w, id, &p, json, len);
    ws_cache_touch(w->cache, study);
    ws_bytes(o, 200, "application/json; charset=utf-8", json, len);
}
