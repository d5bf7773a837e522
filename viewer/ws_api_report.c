/* ws_api_report.c — the reader's words: drafts kept in the cache (so
 * closing the browser loses nothing), and submitting to the hub.  "sign"
 * builds the report document with the same builder as `dxhub report`
 * (every instance of the study named by the digest the hub listed), signs
 * its exact bytes with the unlocked key as `dxhub sign` does, submits them
 * with the certificate chain, and answers only after the hub's ACK: a
 * report is signed when the hub says it is stored, not before.  The bytes
 * acknowledged are kept for GET /api/tasks/{id}/signed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "viewer/ws_http.h"
#include "codecs/banned.h"

#define TEXT_MAX (64 * 1024) /* findings or impression */

static void task_key(uint64_t id, char key[32]) { snprintf(key, 32, "%llu", (unsigned long long)id); }

void ws_api_draft_get(ws_req *r, ws_resp *o)
{
    int i = ws_api_task(r, o, 0);
    if (i < 0)
        return;
    char key[32];
    task_key(r->w->tasks[i].t.id, key);
    pthread_mutex_unlock(&r->w->mu);
    char *p;
    size_t n;
    if (ws_cache_kv_get(r->w->cache, "draft", key, &p, &n) < 0) {
        ws_json(o, 200, json_pack("{s:s,s:s,s:b,s:n}", "findings", "", "impression", "", "critical", 0, "saved"));
        return;
    }
    ws_bytes(o, 200, "application/json; charset=utf-8", p, n);
}

/* findings, impression (strings) and critical (bool) from a body. */
static int report_text(json_t *b, ws_resp *o, const char **findings, const char **impression, int *critical)
{
    json_t *f = json_object_get(b, "findings"), *im = json_object_get(b, "impression"),
           *c = json_object_get(b, "critical");
    if ((f && !json_is_string(f)) || (im && !json_is_string(im)) || (c && !json_is_boolean(c))) {
        ws_error(o, 400, "findings and impression must be strings, critical true or false");
        return -1;
    }
    *findings = f ? json_string_value(f) : "";
    *impression = im ? json_string_value(im) : "";
    if (strlen(*findings) > TEXT_MAX || strlen(*impression) > TEXT_MAX) {
        ws_error(o, 413, "findings or impression longer than %d bytes", TEXT_MAX);
        return -1;
    }
    *critical = json_is_true(c);
    return 0;
}

void ws_api_draft_put(ws_req *r, ws_resp *o)
{
    json_t *b = ws_body_json(r, o);
    if (!b)
        return;
    const char *findings, *impression;
    int critical;
    if (report_text(b, o, &findings, &impression, &critical) < 0) {
        json_decref(b);
        return;
    }
    int i = ws_api_task(r, o, 0);
    if (i < 0) {
        json_decref(b);
        return;
    }
    char key[32];
    task_key(r->w->tasks[i].t.id, key);
    pthread_mutex_unlock(&r->w->mu);
    json_t *d = json_pack("{s:s,s:s,s:b,s:I}", "findings", findings, "impression", impression, "critical", critical,
                          "saved", (json_int_t)ws_now_ms());
    json_decref(b);
    char *s = d ? json_dumps(d, JSON_COMPACT) : NULL;
    if (!s || ws_cache_kv_put(r->w->cache, "draft", key, s, strlen(s)) < 0) {
        free(s);
        json_decref(d);
        ws_error(o, 500, "the draft could not be saved in the cache");
        return;
    }
    free(s);
    ws_json(o, 200, d);
}

static json_t *signer_json(const hub_signer_identity *id, const char *reader)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "name", id->name, "reader", reader, "facility", id->facility,
                     "subject", id->subject, "serial", id->serial, "role", id->role, "alg", id->alg);
}

/* What a report says besides the reader's words: an addendum's place
 * after the report it follows, a reviewed draft's resident. */
typedef struct lineage {
    unsigned    version;                   /* 0: the task's */
    const char *supersedes;                /* NULL: none */
    const char *drafted_by, *drafted_name; /* NULL: not a reviewed draft */
} lineage;

/* The report document for task t (a copy taken under mu). */
static int build(ws *w, const hub_task *t, const hub_signer_identity *who, const char *findings,
                 const char *impression, int critical, const lineage *lin, char *report_id, char **doc, size_t *len,
                 size_t *n_inst, char *err, size_t errlen)
{
    hub_instance *list;
    size_t n;
    if (ws_study_listing(w, t->id, &list, &n, NULL, err, errlen) < 0)
        return -1;
    hub_report_instance *ri = calloc(n ? n : 1, sizeof *ri);
    if (!ri) {
        free(list);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        ri[i] = (hub_report_instance){list[i].sop_uid, list[i].digest};
    int64_t now = ws_now_ms();
    snprintf(report_id, 64, "ws-%llu-%s%lld", (unsigned long long)t->id, lin->supersedes ? "a-" : "", (long long)now);
    char exam[64];
    if (!strcmp(t->kind, "ecg"))
        snprintf(exam, sizeof exam, "ECG");
    else
        snprintf(exam, sizeof exam, "%s%s%s", t->modality, t->body_part[0] ? " " : "", t->body_part);
    hub_report_fields f = {.report_id = report_id, .study_uid = t->study_uid, .patient_id = t->patient_id,
                           .origin_facility = t->facility, .reading_facility = who->facility,
                           .reader_id = w->reader_id, .reader_role = who->role[0] ? who->role : w->profile.seniority,
                           .reader_name = who->name[0] ? who->name : NULL, .findings = findings,
                           .impression = impression, .critical = critical,
                           .version = lin->version ? lin->version : t->version, .supersedes = lin->supersedes,
                           .drafted_by = lin->drafted_by, .drafted_by_name = lin->drafted_name,
                           .reported = now / 1000, .exam_type = exam[0] ? exam : "imaging"};
    int rc = hub_report_build(&f, ri, n, doc, len, err, errlen);
    free(ri);
    free(list);
    *n_inst = n;
    return rc < 0 ? -1 : 0;
}

/* The report signed here for task id (the cache's "signed"): its id, and
 * the version an addendum to it takes (every addendum follows the signed
 * report itself).  -1 when none. */
static int signed_lineage(ws *w, uint64_t id, char report_id[64], unsigned *next_version)
{
    char key[32], *p;
    size_t n;
    task_key(id, key);
    if (ws_cache_kv_get(w->cache, "signed", key, &p, &n) < 0)
        return -1;
    json_t *doc = json_loadb(p, n, 0, NULL);
    free(p);
    const char *rid = json_string_value(json_object_get(doc, "report_id"));
    json_int_t v = json_integer_value(json_object_get(doc, "version"));
    int ok = rid && v > 0;
    if (ok) {
        snprintf(report_id, 64, "%s", rid);
        *next_version = (unsigned)v + 1;
    }
    json_decref(doc);
    return ok ? 0 : -1;
}

/* The resident's name as their draft names it (DRAFT), "" when unknown. */
static void resident_of(ws *w, uint64_t id, char *name, size_t n)
{
    hub_draft d;
    name[0] = '\0';
    pthread_mutex_lock(&w->hub_mu);
    int rc = hub_client_draft(w->hc, id, &d);
    pthread_mutex_unlock(&w->hub_mu);
    if (rc)
        return;
    json_t *doc = d.doc ? json_loadb(d.doc, d.len, 0, NULL) : NULL;
    const char *v = json_string_value(json_object_get(json_object_get(doc, "reader"), "name"));
    snprintf(name, n, "%s", v ? v : "");
    json_decref(doc);
    free(d.doc);
}

void ws_api_submit(ws_req *r, ws_resp *o)
{
    ws *w = r->w;
    json_t *b = ws_body_json(r, o);
    if (!b)
        return;
    const char *a = json_string_value(json_object_get(b, "action"));
    const char *findings, *impression;
    int critical;
    char action[16]; /* a copy: the body is freed before the hub answers */
    snprintf(action, sizeof action, "%s", a ? a : "");
    if (strcmp(action, "sign") && strcmp(action, "draft") && strcmp(action, "addendum") && strcmp(action, "return")) {
        json_decref(b);
        ws_error(o, 400, "action must be sign, draft, addendum or return");
        return;
    }
    if (report_text(b, o, &findings, &impression, &critical) < 0) {
        json_decref(b);
        return;
    }
    int is_addendum = !strcmp(action, "addendum");
    /* An addendum follows a report signed here: the task is ours no longer. */
    int i = ws_api_task(r, o, is_addendum);
    if (i < 0) {
        json_decref(b);
        return;
    }
    hub_task t = w->tasks[i].t;
    int held = w->tasks[i].held;
    hub_signer *signer = w->signer; /* never freed while the daemon runs */
    pthread_mutex_unlock(&w->mu);
    if (is_addendum && held) {
        json_decref(b);
        ws_error(o, 409, "task %llu is not signed yet: sign it; an addendum follows a signed report",
                 (unsigned long long)t.id);
        return;
    }
    char reason[512] = "";
    const char *rs = json_string_value(json_object_get(b, "reason"));
    snprintf(reason, sizeof reason, "%s", rs ? rs : "");
    if (!strcmp(action, "return") && !reason[0]) {
        json_decref(b);
        ws_error(o, 400, "a return needs a reason for the resident: {\"reason\": \"...\"}");
        return;
    }
    lineage lin = {0};
    char signed_id[64] = "", resident[64] = "", resident_name[256] = "";
    if (is_addendum && signed_lineage(w, t.id, signed_id, &lin.version) < 0) {
        json_decref(b);
        ws_error(o, 409, "no report signed for task %llu from this workstation to add to", (unsigned long long)t.id);
        return;
    }
    if (is_addendum)
        lin.supersedes = signed_id;
    if (!strcmp(action, "sign") && t.review && t.drafted_by[0] && strcmp(t.drafted_by, w->reader_id)) {
        /* co-signed: the attending's signature covers the resident's authorship */
        snprintf(resident, sizeof resident, "%s", t.drafted_by);
        resident_of(w, t.id, resident_name, sizeof resident_name);
        lin.drafted_by = resident;
        lin.drafted_name = resident_name[0] ? resident_name : NULL;
    }
    int signing = !strcmp(action, "sign") || !strcmp(action, "addendum");
    if (signing && !signer) {
        json_decref(b);
        ws_error(o, 403, "the signing key is locked: unlock it first (POST /api/unlock)");
        return;
    }
    hub_signer_identity who = w->cert;
    if (signer)
        hub_signer_who(signer, &who);
    char ended[300];
    if (signing && ws_cert_refuses(&who, (int64_t)time(NULL), ended, sizeof ended) < 0) {
        json_decref(b);
        ws_error(o, 403, "%s", ended);
        return;
    }
    char report_id[64] = "", err[600], state[16] = "";
    char *doc = NULL;
    size_t len = 0, n_inst = 0, sig_len = 0, chain_len = 0;
    uint8_t sig[HUB_SIG_MAX];
    const void *chain = NULL;
    if (strcmp(action, "return")) {
        if (build(w, &t, &who, findings, impression, critical, &lin, report_id, &doc, &len, &n_inst, err,
                  sizeof err) < 0) {
            json_decref(b);
            ws_error(o, 502, "cannot write the report: %s", err);
            return;
        }
    } else {
        snprintf(report_id, sizeof report_id, "ws-%llu-return-%lld", (unsigned long long)t.id,
                 (long long)ws_now_ms());
    }
    json_decref(b);
    if (signing) {
        if (hub_signer_sign(signer, doc, len, sig, &sig_len, err, sizeof err) < 0) {
            free(doc);
            ws_error(o, 500, "signing failed: %s", err);
            return;
        }
        chain = hub_signer_chain(signer, &chain_len);
    }
    pthread_mutex_lock(&w->hub_mu);
    int rc = !strcmp(action, "return")
                 ? hub_client_return(w->hc, t.id, report_id, reason, state, sizeof state)
                 : hub_client_submit(w->hc, t.id, action, report_id, doc, len, signing ? sig : NULL, sig_len, chain,
                                     chain_len, state, sizeof state);
    if (rc)
        snprintf(err, sizeof err, "%s", hub_client_error(w->hc));
    pthread_mutex_unlock(&w->hub_mu);
    if (rc) {
        free(doc);
        ws_error(o, rc == HUB_ETIMEDOUT ? 504 : 409, "the hub refused the %s: %s", action, err);
        return;
    }
    /* acknowledged: durable at the hub */
    json_t *sj = signer_json(&who, w->reader_id);
    char key[32];
    task_key(t.id, key);
    if (is_addendum) /* kept beside the report it follows: "<task>.a<version>" */
        snprintf(key, sizeof key, "%llu.a%u", (unsigned long long)t.id, lin.version);
    if (signing) {
        char *ss = json_dumps(sj, JSON_COMPACT | JSON_ENSURE_ASCII); /* an HTTP header: ASCII */
        ws_cache_kv_put(w->cache, "signed", key, doc, len);
        if (ss)
            ws_cache_kv_put(w->cache, "signer", key, ss, strlen(ss));
        free(ss);
    }
    free(doc);
    int still = !strcmp(state, "claimed") || !strcmp(state, "drafted");
    if (is_addendum) /* the signed original keeps its state; the addendum is a task of its own */
        snprintf(state, sizeof state, "%s", "signed");
    if (!still)
        ws_forget(w, t.id);
    pthread_mutex_lock(&w->mu);
    int j = ws_task_find(w, t.id);
    if (j >= 0) {
        snprintf(w->tasks[j].t.state, sizeof w->tasks[j].t.state, "%s", state);
        w->tasks[j].held = still;
        w->tasks[j].done = !still;
        ws_changed(w);
    }
    pthread_mutex_unlock(&w->mu);
    char when[32] = "";
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm))
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_t *ans = json_pack("{s:s,s:s,s:o,s:s,s:I,s:s}", "state", state, "report_id", report_id, "signer",
                            signing ? sj : (json_decref(sj), json_null()), "signed_at", signing ? when : "",
                            "instances", (json_int_t)n_inst, "action", action);
    if (ans && lin.supersedes) {
        json_object_set_new(ans, "supersedes", json_string(lin.supersedes));
        json_object_set_new(ans, "version", json_integer(lin.version));
    }
    if (ans && lin.drafted_by)
        json_object_set_new(ans, "drafted_by", json_pack("{s:s,s:s}", "id", lin.drafted_by, "name", resident_name));
    ws_json(o, 200, ans);
}

void ws_api_signed(ws_req *r, ws_resp *o)
{
    const char *s = r->args[0];
    char key[32];
    snprintf(key, sizeof key, "%.20s", s);
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9' || p - s > 19) {
            ws_error(o, 400, "'%.40s' is not a task id (a number)", s);
            return;
        }
    char *p, *who;
    size_t n, wn;
    if (ws_cache_kv_get(r->w->cache, "signed", key, &p, &n) < 0) {
        ws_error(o, 404, "no report signed for task %s from this workstation", key);
        return;
    }
    ws_bytes(o, 200, "application/json; charset=utf-8", p, n);
    if (ws_cache_kv_get(r->w->cache, "signer", key, &who, &wn) == 0) {
        ws_header(o, "X-Signer", "%s", who);
        free(who);
    }
}

/* GET /api/tasks/{id}/alert: what became of the critical value signed on
 * task id (the hub's ALERT), so the reader knows whether to phone. */
void ws_api_alert(ws_req *r, ws_resp *o)
{
    uint64_t id;
    if (ws_api_task_id(r, o, &id) < 0)
        return;
    ws *w = r->w;
    hub_alert a;
    pthread_mutex_lock(&w->hub_mu);
    int rc = hub_client_alert(w->hc, id, &a);
    char err[600];
    snprintf(err, sizeof err, "%s", rc ? hub_client_error(w->hc) : "");
    pthread_mutex_unlock(&w->hub_mu);
    if (rc) {
        ws_error(o, rc == HUB_ETIMEDOUT ? 504 : rc == HUB_EREFUSED ? 409 : 502, "the hub cannot say: %s", err);
        return;
    }
    ws_json(o, 200, json_pack("{s:s,s:s,s:s,s:I}", "state", a.state, "facility", a.facility, "report_id",
                              a.report_id, "since", (json_int_t)a.since_ms));
}
