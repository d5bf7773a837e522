/* ws_api_review.c — what the reader sees beside their own words: the
 * draft under review (a resident's text and name, for the attending who
 * signs or returns it; the reviewer's reason, for the resident it came
 * back to) and the priors (the patient's other signed exams from the
 * hub's lookup, here and at its peer hubs, with their recognition status),
 * each asked of the hub over the reader protocol (hub.h: DRAFT, PRIORS,
 * PRIOR).  viewer/API.md has the answers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hub/b64.h"
#include "viewer/ws_http.h"
#include "codecs/banned.h"

/* The task's id and a copy of it, held or offered; -1 with o filled. */
static int task_copy(ws_req *r, ws_resp *o, hub_task *t)
{
    int i = ws_api_task(r, o, 1);
    if (i < 0)
        return -1;
    *t = r->w->tasks[i].t;
    pthread_mutex_unlock(&r->w->mu);
    return 0;
}

static int hub_status(int rc) { return rc == HUB_ETIMEDOUT ? 504 : rc == HUB_EREFUSED ? 409 : 502; }

static json_t *str_or_null(const char *s) { return s && s[0] ? json_string(s) : json_null(); }

/* ---- GET /api/tasks/{id}/review ---------------------------------------------------- */

void ws_api_review(ws_req *r, ws_resp *o)
{
    ws *w = r->w;
    hub_task t;
    if (task_copy(r, o, &t) < 0)
        return;
    hub_draft d;
    pthread_mutex_lock(&w->hub_mu);
    int rc = hub_client_draft(w->hc, t.id, &d);
    char err[600];
    snprintf(err, sizeof err, "%s", rc ? hub_client_error(w->hc) : "");
    pthread_mutex_unlock(&w->hub_mu);
    if (rc) {
        ws_error(o, hub_status(rc), "the hub cannot give the draft: %s", err);
        return;
    }
    json_t *doc = d.doc ? json_loadb(d.doc, d.len, 0, NULL) : NULL;
    free(d.doc);
    if (!json_is_object(doc)) {
        json_decref(doc);
        ws_error(o, 404, "task %llu has no draft at the hub", (unsigned long long)t.id);
        return;
    }
    json_t *reader = json_object_get(doc, "reader");
    const char *author = d.drafted_by[0] ? d.drafted_by : json_string_value(json_object_get(reader, "id"));
    json_t *j = json_pack("{s:s,s:{s:s,s:o,s:o},s:O,s:O,s:b,s:o,s:o,s:o}", "report_id", d.report_id, "drafted_by",
                          "id", author ? author : "", "name",
                          str_or_null(json_string_value(json_object_get(reader, "name"))), "role",
                          str_or_null(json_string_value(json_object_get(reader, "role"))), "findings",
                          json_object_get(doc, "findings"), "impression", json_object_get(doc, "impression"),
                          "critical", json_is_true(json_object_get(doc, "critical")), "reported",
                          str_or_null(json_string_value(json_object_get(json_object_get(doc, "times"), "reported"))),
                          "returned", str_or_null(d.returned), "returned_by", str_or_null(d.returned_by));
    json_decref(doc);
    if (!j) {
        ws_error(o, 502, "the hub's draft is not a report document");
        return;
    }
    ws_json(o, 200, j);
}

/* ---- GET /api/priors?task=ID (or ?patient=ID) ---------------------------------------- */

/* The task to ask about: ?task=, else a task of ours for ?patient=. */
static int priors_task(ws_req *r, ws_resp *o, hub_task *t)
{
    ws *w = r->w;
    const char *tid = ws_req_query(r, "task"), *pid = ws_req_query(r, "patient");
    if (!tid[0] && !pid[0]) {
        ws_error(o, 400, "give ?task=ID (or ?patient=ID of a task in the list)");
        return -1;
    }
    char *end;
    unsigned long long id = tid[0] ? strtoull(tid, &end, 10) : 0;
    if (tid[0] && *end) {
        ws_error(o, 400, "'%.40s' is not a task id (a number)", tid);
        return -1;
    }
    pthread_mutex_lock(&w->mu);
    int found = -1;
    for (size_t i = 0; i < w->n_tasks && found < 0; i++)
        if (tid[0] ? w->tasks[i].t.id == id : !strcmp(w->tasks[i].t.patient_id, pid))
            found = (int)i;
    if (found >= 0)
        *t = w->tasks[found].t;
    pthread_mutex_unlock(&w->mu);
    if (found < 0) {
        ws_error(o, 404, "no task in this reader's list %s", tid[0] ? "with that id" : "for that patient");
        return -1;
    }
    return 0;
}

/* One exam of the hub's lookup answer as the priors panel shows it. */
static json_t *prior_json(json_t *e)
{
    json_t *rec = json_object_get(e, "recognition"), *reasons = json_array();
    size_t k;
    json_t *rule;
    json_array_foreach(json_object_get(rec, "rules"), k, rule)
        if (!json_is_true(json_object_get(rule, "ok")))
            json_array_append(reasons, json_object_get(rule, "detail"));
    return json_pack("{s:O*,s:O*,s:O*,s:O*,s:O*,s:O*,s:O*,s:O*,s:O*,s:O*,s:b,s:O*,s:O*,s:o,s:O*}", "study",
                     json_object_get(e, "study_uid"), "date", json_object_get(e, "study_date"), "modality",
                     json_object_get(e, "modality"), "exam_type", json_object_get(e, "exam_type"), "report_id",
                     json_object_get(e, "report_id"), "version", json_object_get(e, "version"), "hub",
                     json_object_get(e, "hub"), "facility", json_object_get(e, "facility"), "reported",
                     json_object_get(e, "reported"), "signer", json_object_get(e, "signer"), "recognised",
                     json_is_true(json_object_get(rec, "recognised")), "mark", json_object_get(rec, "mark"),
                     "failed", json_object_get(rec, "failed"), "reasons", reasons, "rules",
                     json_object_get(rec, "rules"));
}

void ws_api_priors(ws_req *r, ws_resp *o)
{
    ws *w = r->w;
    hub_task t;
    if (priors_task(r, o, &t) < 0)
        return;
    char *text = NULL, *studies = NULL, err[600];
    size_t len = 0;
    pthread_mutex_lock(&w->hub_mu);
    int rc = hub_client_priors(w->hc, t.id, &text, &len, &studies);
    snprintf(err, sizeof err, "%s", rc ? hub_client_error(w->hc) : "");
    pthread_mutex_unlock(&w->hub_mu);
    if (rc == HUB_EREFUSED && strstr(err, "not configured")) {
        ws_json(o, 200, json_pack("{s:[],s:s,s:s}", "priors", "source", "unavailable", "reason", err));
        return;
    }
    if (rc) {
        ws_error(o, hub_status(rc), "the hub cannot look up priors: %s", err);
        return;
    }
    json_t *ans = json_loadb(text, len, 0, NULL);
    free(text);
    json_t *list = json_array();
    size_t k;
    json_t *e;
    json_array_foreach(json_object_get(ans, "exams"), k, e)
        json_array_append_new(list, prior_json(e));
    json_t *others = studies ? json_loads(studies, 0, NULL) : NULL; /* the patient's other studies here */
    free(studies);
    if (!json_is_array(others)) {
        json_decref(others);
        others = json_array();
    }
    json_t *j = json_pack("{s:o,s:s,s:s,s:O*,s:O*,s:O*,s:o}", "priors", list, "source", "hub", "patient_id",
                          t.patient_id, "consortium", json_object_get(ans, "consortium"), "hub",
                          json_object_get(ans, "hub"), "peers", json_object_get(ans, "peers"), "studies", others);
    json_decref(ans);
    ws_json(o, j ? 200 : 502, j ? j : json_pack("{s:s}", "error", "the hub's lookup answer is malformed"));
}

/* ---- GET /api/tasks/{id}/priors/{report}[?hub=NAME] ---------------------------------- */

void ws_api_prior(ws_req *r, ws_resp *o)
{
    ws *w = r->w;
    hub_task t;
    if (task_copy(r, o, &t) < 0)
        return;
    const char *id = r->args[1], *hub = ws_req_query(r, "hub");
    char *text = NULL, err[600];
    size_t len = 0;
    pthread_mutex_lock(&w->hub_mu);
    int rc = hub_client_prior(w->hc, t.id, id, hub, &text, &len);
    snprintf(err, sizeof err, "%s", rc ? hub_client_error(w->hc) : "");
    pthread_mutex_unlock(&w->hub_mu);
    if (rc) {
        ws_error(o, rc == HUB_EREFUSED && strstr(err, "no such") ? 404 : hub_status(rc), "the hub cannot give report %.64s: %s",
                 id, err);
        return;
    }
    json_t *ans = json_loadb(text, len, 0, NULL);
    free(text);
    const char *b64 = json_string_value(json_object_get(ans, "report_b64"));
    size_t dl = 0;
    uint8_t *doc_bytes = NULL;
    if (b64 && base64_decode(b64, strlen(b64), &doc_bytes, &dl) < 0)
        doc_bytes = NULL;
    json_t *doc = doc_bytes ? json_loadb((const char *)doc_bytes, dl, 0, NULL) : NULL;
    free(doc_bytes);
    if (!json_is_object(doc)) {
        json_decref(ans);
        json_decref(doc);
        ws_error(o, 502, "the hub's answer for report %.64s holds no report document", id);
        return;
    }
    json_t *exam = json_object_get(ans, "exam");
    json_t *j = json_pack("{s:s,s:O*,s:o,s:O}", "report_id", id, "hub", json_object_get(exam, "hub"), "prior",
                          exam ? prior_json(exam) : json_null(), "document", doc);
    json_decref(doc);
    json_decref(ans);
    ws_json(o, 200, j);
}
