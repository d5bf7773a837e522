/* ws_api.c — the workstation's route table and its small answers: the
 * session, unlocking the signing key, the task list, claim and release,
 * report templates and the event stream (viewer/API.md); priors and the
 * draft under review are ws_api_review.c's. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "hub/disk.h"
#include "viewer/ws_http.h"
#include "codecs/banned.h"

#define EVENT_KEEPALIVE_S 15

typedef struct route {
    const char *method, *pattern;
    void (*fn)(ws_req *r, ws_resp *o);
} route;

static const route routes[] = {
    {"GET", "/api/session", ws_api_session},
    {"POST", "/api/unlock", ws_api_unlock},
    {"GET", "/api/tasks", ws_api_tasks},
    {"POST", "/api/tasks/{}/claim", ws_api_claim},
    {"POST", "/api/tasks/{}/release", ws_api_release},
    {"GET", "/api/tasks/{}/study", ws_api_study},
    {"GET", "/api/tasks/{}/draft", ws_api_draft_get},
    {"PUT", "/api/tasks/{}/draft", ws_api_draft_put},
    {"POST", "/api/tasks/{}/submit", ws_api_submit},
    {"GET", "/api/tasks/{}/signed", ws_api_signed},
    {"GET", "/api/tasks/{}/alert", ws_api_alert},
    {"GET", "/api/instances/{}/frames/{}", ws_api_frame},
    {"GET", "/api/instances/{}/ecg", ws_api_ecg},
    {"GET", "/api/templates", ws_api_templates},
    {"GET", "/api/priors", ws_api_priors},
    {"GET", "/api/tasks/{}/review", ws_api_review},
    {"GET", "/api/tasks/{}/priors/{}", ws_api_prior},
    {"GET", "/api/tasks/{}/compare/{}", ws_api_compare},
    {"GET", "/api/events", ws_api_events},
};

/* Matches path against pattern segment by segment; "{}" takes any
 * non-empty segment (copied into segs). */
static int match(const char *pattern, const char *path, char segs[WS_MAX_ARGS][80], int *n_args)
{
    *n_args = 0;
    while (*pattern && *path) {
        if (*pattern != '/' || *path != '/')
            return 0;
        pattern++, path++;
        size_t pl = strcspn(pattern, "/"), sl = strcspn(path, "/");
        if (pl == 2 && !strncmp(pattern, "{}", 2)) {
            if (!sl || sl >= 80 || *n_args == WS_MAX_ARGS)
                return 0;
            memcpy(segs[*n_args], path, sl);
            segs[(*n_args)++][sl] = '\0';
        } else if (pl != sl || strncmp(pattern, path, pl)) {
            return 0;
        }
        pattern += pl, path += sl;
    }
    return !*pattern && !*path;
}

void ws_api_route(ws_req *r, ws_resp *o)
{
    char segs[WS_MAX_ARGS][80];
    int path_known = 0;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        int n;
        if (!match(routes[i].pattern, r->path, segs, &n))
            continue;
        path_known = 1;
        if (strcmp(routes[i].method, r->method))
            continue;
        for (int k = 0; k < n; k++)
            r->args[k] = segs[k];
        routes[i].fn(r, o);
        return;
    }
    if (path_known)
        ws_error(o, 405, "%s is not allowed on %.200s", r->method, r->path);
    else
        ws_error(o, 404, "no such API: %.200s", r->path);
}

int ws_api_task_id(ws_req *r, ws_resp *o, uint64_t *id)
{
    const char *s = r->args[0];
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (!isdigit((unsigned char)s[0]) || *end || errno) {
        ws_error(o, 400, "'%.60s' is not a task id (a number)", s);
        return -1;
    }
    *id = v;
    return 0;
}

int ws_api_task(ws_req *r, ws_resp *o, int offered_ok)
{
    uint64_t id;
    if (ws_api_task_id(r, o, &id) < 0)
        return -1;
    ws *w = r->w;
    pthread_mutex_lock(&w->mu);
    int i = ws_task_find(w, id);
    if (i < 0) {
        pthread_mutex_unlock(&w->mu);
        ws_error(o, 404, "unknown task %llu (not offered to this reader, not held)", (unsigned long long)id);
        return -1;
    }
    if (!w->tasks[i].held && !offered_ok) {
        pthread_mutex_unlock(&w->mu);
        ws_error(o, 409, "task %llu is not held by this reader (claim it first)", (unsigned long long)id);
        return -1;
    }
    return i;
}

/* ---- session and signing key ---------------------------------------------------- */

void ws_api_session(ws_req *r, ws_resp *o)
{
    ws *w = r->w;
    ws_cache_stats cs;
    ws_cache_stats_get(w->cache, &cs);
    uint64_t hits = 0, misses = 0;
    size_t fbytes = 0;
    if (w->frames)
        ws_frames_stats(w->frames, &hits, &misses, &fbytes);
    pthread_mutex_lock(&w->mu);
    json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:b,s:i,s:{s:I,s:I,s:I,s:I,s:I}}", "reader", w->reader_id,
                          "name", w->cert.name, "role", w->cert.role, "seniority", w->profile.seniority, "facility",
                          w->cert.facility, "modalities", w->profile.modalities, "hub",
                          !w->connected ? "disconnected" : w->key_revoked ? "revoked" : "connected", "unlocked", w->signer != NULL, "max_tasks",
                          w->profile.max_tasks, "cache", "bytes", (json_int_t)cs.bytes, "limit",
                          (json_int_t)cs.limit, "studies", (json_int_t)cs.studies, "instances",
                          (json_int_t)cs.instances, "evicted_studies", (json_int_t)cs.evicted_studies);
    pthread_mutex_unlock(&w->mu);
    json_object_set_new(j, "frames", json_pack("{s:I,s:I,s:I}", "hits", (json_int_t)hits, "misses",
                                               (json_int_t)misses, "bytes", (json_int_t)fbytes));
    uint64_t room = 0;
    if (disk_room(w->cfg.cache_dir, &room, NULL) == 0) /* the page warns below WS_DISK_LOW */
        json_object_set_new(json_object_get(j, "cache"), "disk_free", json_integer((json_int_t)room));
    char end[11];
    ws_cert_end_date(&w->cert, end); /* w->cert is set before the API starts and never changes */
    json_object_set_new(j, "certificate", json_pack("{s:s,s:I,s:i}", "ends", end, "days_left",
                                                    (json_int_t)ws_cert_days_left(&w->cert, (int64_t)time(NULL)),
                                                    "warn_days", WS_CERT_WARN_DAYS));
    ws_json(o, 200, j);
}

void ws_api_unlock(ws_req *r, ws_resp *o)
{
    ws *w = r->w;
    json_t *b = ws_body_json(r, o);
    if (!b)
        return;
    const char *pass = json_string_value(json_object_get(b, "passphrase"));
    if (!pass || !pass[0]) {
        json_decref(b);
        ws_error(o, 400, "give the signing key's passphrase as {\"passphrase\": \"...\"}");
        return;
    }
    pthread_mutex_lock(&w->mu);
    int already = w->signer != NULL;
    pthread_mutex_unlock(&w->mu);
    if (already) {
        json_decref(b);
        ws_json(o, 200, json_pack("{s:b}", "unlocked", 1));
        return;
    }
    hub_signer *s = NULL;
    char err[512];
    int rc = hub_signer_open(w->cfg.sign_key, w->cfg.cert, w->cfg.chain, pass, &s, err, sizeof err);
    explicit_bzero((char *)pass, strlen(pass)); /* the body's copy is wiped by ws_http.c */
    json_decref(b);
    if (rc == HUB_EPASS) {
        sleep(1); /* a guesser gets one try a second per connection */
        ws_error(o, 403, "wrong passphrase for the signing key");
        return;
    }
    if (rc < 0) {
        ws_error(o, 500, "cannot use the signing key: %s", err);
        return;
    }
    pthread_mutex_lock(&w->mu);
    if (!w->signer)
        w->signer = s, s = NULL;
    pthread_mutex_unlock(&w->mu);
    hub_signer_free(&s);
    ws_json(o, 200, json_pack("{s:b}", "unlocked", 1));
}

/* ---- tasks ----------------------------------------------------------------------- */

static void upper(const char *in, char *out, size_t n)
{
    size_t i = 0;
    for (; in[i] && i + 1 < n; i++)
        out[i] = (char)toupper((unsigned char)in[i]);
    out[i] = '\0';
}

static json_t *task_json(const ws_task *t)
{
    char prio[16];
    upper(t->t.priority, prio, sizeof prio);
    double pre = 0;
    size_t total = t->inst ? t->n_inst : t->t.instances;
    if (total)
        pre = (double)t->n_cached / (double)total;
    if (pre > 1)
        pre = 1;
    const char *state = t->held ? (t->t.state[0] ? t->t.state : "claimed") : t->done ? t->t.state : "offered";
    return json_pack("{s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:b,s:s,s:s,s:s,s:I,s:b,s:f,s:s,s:b,s:i,s:i,s:s?}", "id",
                     (json_int_t)t->t.id, "study", t->t.study_uid, "priority", prio, "kind", t->t.kind, "modality",
                     t->t.modality, "body_part", t->t.body_part, "facility", t->t.facility, "referral",
                     t->t.referral, "note", t->t.note, "triage", t->t.triage, "state", state, "due",
                     (json_int_t)t->t.due_ms, "mine", t->held, "prefetched", pre, "patient_id", t->t.patient_id,
                     "review", t->t.review, "instances", (int)total, "version", (int)t->t.version, "first_image",
                     t->n_images ? t->images[0] : NULL); /* fetched beside the study when it opens */
}

/* What review adds to a task (who drafted it, and a reviewer's reason when
 * it came back), and the prior fetched ahead to compare (--prefetch-prior). */
static json_t *task_json_shown(const ws_task *t)
{
    json_t *j = task_json(t);
    if (t->t.drafted_by[0])
        json_object_set_new(j, "drafted_by", json_string(t->t.drafted_by));
    if (t->t.returned_by[0]) {
        json_object_set_new(j, "returned", json_string(t->t.returned));
        json_object_set_new(j, "returned_by", json_string(t->t.returned_by));
    }
    if (t->cmp.inst) {
        json_t *a = json_pack("{s:s,s:i,s:i,s:b,s:b}", "study", t->cmp.study, "instances", (int)t->cmp.n_inst,
                              "cached", (int)t->cmp.n_cached, "ready", t->cmp.view != NULL, /* laid out: opens at once */
                              "ahead", t->cmp.ahead != 0);
        if (a && t->cmp.hub[0]) { /* a peer hub's exam, named by its report there */
            json_object_set_new(a, "hub", json_string(t->cmp.hub));
            json_object_set_new(a, "report_id", json_string(t->cmp.report_id));
        }
        json_object_set_new(j, "prior", a);
    }
    return j;
}


static int task_order(const void *a, const void *b)
{
    const ws_task *x = *(const ws_task *const *)a, *y = *(const ws_task *const *)b;
    int rx = ws_priority_rank(x->t.priority), ry = ws_priority_rank(y->t.priority);
    if (rx != ry)
        return ry - rx;
    if (x->t.due_ms != y->t.due_ms)
        return x->t.due_ms < y->t.due_ms ? -1 : 1;
    return x->t.id < y->t.id ? -1 : x->t.id > y->t.id;
}

void ws_api_tasks(ws_req *r, ws_resp *o)
{
    ws *w = r->w;
    json_t *list = json_array();
    const ws_task *order[WS_MAX_TASKS];
    pthread_mutex_lock(&w->mu);
    for (size_t i = 0; i < w->n_tasks; i++)
        order[i] = &w->tasks[i];
    qsort(order, w->n_tasks, sizeof order[0], task_order);
    for (size_t i = 0; i < w->n_tasks; i++)
        json_array_append_new(list, task_json_shown(order[i]));
    pthread_mutex_unlock(&w->mu);
    ws_json(o, 200, json_pack("{s:o,s:I}", "tasks", list, "now", (json_int_t)ws_now_ms()));
}

void ws_api_claim(ws_req *r, ws_resp *o)
{
    uint64_t id;
    if (ws_api_task_id(r, o, &id) < 0)
        return;
    char err[512];
    if (ws_hub_claim(r->w, id, err, sizeof err) < 0) {
        ws_error(o, 409, "claim refused: %s", err);
        return;
    }
    pthread_mutex_lock(&r->w->mu);
    int i = ws_task_find(r->w, id);
    json_t *t = i >= 0 ? task_json_shown(&r->w->tasks[i]) : json_null();
    pthread_mutex_unlock(&r->w->mu);
    ws_json(o, 200, json_pack("{s:o}", "task", t));
}

void ws_api_release(ws_req *r, ws_resp *o)
{
    uint64_t id;
    if (ws_api_task_id(r, o, &id) < 0)
        return;
    pthread_mutex_lock(&r->w->mu);
    int known = ws_task_find(r->w, id) >= 0;
    pthread_mutex_unlock(&r->w->mu);
    if (!known) {
        ws_error(o, 404, "unknown task %llu (not offered to this reader, not held)", (unsigned long long)id);
        return;
    }
    char err[512];
    if (ws_hub_release(r->w, id, err, sizeof err) < 0) {
        ws_error(o, 409, "release refused: %s", err);
        return;
    }
    ws_json(o, 200, json_pack("{s:b}", "ok", 1));
}

/* ---- templates ------------------------------------------------------ */

void ws_api_templates(ws_req *r, ws_resp *o)
{
    static const struct { const char *id, *exam, *modality, *findings, *impression; } t[] = {
        {"ct-chest", "CT chest", "CT",
         "Lungs: no consolidation, mass or nodule. Airways patent. No pleural effusion or pneumothorax.\n"
         "Mediastinum: no lymphadenopathy. Heart size normal. No pericardial effusion.\n"
         "Bones: no destructive lesion.",
         "No acute cardiopulmonary abnormality."},
        {"ct-head", "CT head", "CT",
         "No intracranial haemorrhage, mass effect or midline shift. Grey-white differentiation preserved.\n"
         "Ventricles and sulci normal for age. Calvarium intact.",
         "No acute intracranial abnormality."},
        {"dx-chest", "DX chest", "DX",
         "Lungs clear. No focal consolidation, effusion or pneumothorax.\n"
         "Cardiomediastinal silhouette within normal limits. Bones unremarkable.",
         "No acute cardiopulmonary disease."},
        {"us-abdomen", "US abdomen", "US",
         "Liver normal in size and echotexture, no focal lesion. Gallbladder without stones; CBD not dilated.\n"
         "Pancreas, spleen and both kidneys unremarkable. No free fluid.",
         "Normal abdominal ultrasound."},
        {"mr-brain", "MR brain", "MR",
         "No restricted diffusion. No mass, haemorrhage or abnormal enhancement.\n"
         "Ventricles normal. Flow voids preserved.",
         "Normal MRI of the brain."},
        {"ecg-12", "ECG 12-lead", "ECG",
         "Rhythm: sinus. Rate: __ /min. PR __ ms, QRS __ ms, QT/QTc __/__ ms. Axis __ deg.\n"
         "No ST elevation or depression. T waves normal.",
         "Normal sinus rhythm. Normal ECG."},
    };
    json_t *list = json_array();
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        json_array_append_new(list, json_pack("{s:s,s:s,s:s,s:s,s:s}", "id", t[i].id, "exam", t[i].exam, "modality",
                                              t[i].modality, "findings", t[i].findings, "impression",
                                              t[i].impression));
    (void)r;
    ws_json(o, 200, json_pack("{s:o}", "templates", list));
}


/* ---- the event stream ------------------------------------------------------------ */

typedef struct events {
    ws      *w;
    uint64_t seen;
    int      started;
} events;

static long events_next(void *ctx, char *buf, size_t max)
{
    events *e = ctx;
    ws *w = e->w;
    if (!e->started) {
        e->started = 1;
        pthread_mutex_lock(&w->mu);
        e->seen = w->gen;
        pthread_mutex_unlock(&w->mu);
        return snprintf(buf, max, "retry: 2000\nevent: tasks\ndata: {\"gen\":%llu}\n\n", (unsigned long long)e->seen);
    }
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until); /* w->changed waits on CLOCK_MONOTONIC (ws_main.c) */
    until.tv_sec += EVENT_KEEPALIVE_S;
    pthread_mutex_lock(&w->mu);
    int timed_out = 0;
    while (w->gen == e->seen && !w->stop && !timed_out)
        timed_out = pthread_cond_timedwait(&w->changed, &w->mu, &until) == ETIMEDOUT;
    uint64_t gen = w->gen;
    int stop = w->stop;
    pthread_mutex_unlock(&w->mu);
    if (stop)
        return -1;
    if (gen == e->seen)
        return snprintf(buf, max, ": keep-alive\n\n");
    e->seen = gen;
    return snprintf(buf, max, "event: tasks\ndata: {\"gen\":%llu}\n\n", (unsigned long long)gen);
}

void ws_api_events(ws_req *r, ws_resp *o)
{
    events *e = calloc(1, sizeof *e);
    if (!e) {
        ws_error(o, 500, "out of memory");
        return;
    }
    e->w = r->w;
    o->status = 200;
    o->type = "text/event-stream";
    o->stream = events_next;
    o->stream_ctx = e;
    o->stream_free = free;
}
