/* reader_queries.c — a reader's questions about its tasks (hub.h):
 *   HELD    the tasks it holds, a returned one with the reviewer's reason
 *           (how a resident's workstation learns a draft came back);
 *   DRAFT   the latest draft stored for a task (what a reviewer reviews);
 *   PRIORS  the lookup answer for the task's patient (其他检查 with their
 *           recognition status), through the HTTP API's renderers;
 *   PRIOR   one of those reports, only when it is the same patient's.
 * Each is about a task the reader holds or is offered, and each read of
 * patient data is audited as the reader. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "hub/reader_queries.h"
#include "hub/store_tasks.h"

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int reader_refuse(reader_answer *a, const char *why)
{
    snprintf(a->why, sizeof a->why, "%s", why);
    return -1;
}

int reader_audit(const reader_link_config *cfg, const char *reader_id, const char *what, const char *study,
                 const char *detail)
{
    char who[96];
    snprintf(who, sizeof who, "reader:%s", reader_id);
    if (cfg->audit)
        return cfg->audit(cfg->audit_ctx, who, what, study, detail);
    return store_audit(cfg->st, now_ms(), who, what, study, detail);
}

/* The task named by m, held by r or offered to it. */
int reader_own_task(const reader_link_config *cfg, const proto_msg *m, const wl_reader *r, wl_task *t,
                    reader_answer *a)
{
    long long id = proto_int(m, "task", -1);
    if (id < 0 || store_task_get(cfg->st, (uint64_t)id, t) != 0)
        return reader_refuse(a, "no such task");
    if (strcmp(t->holder, r->id) || (t->state != WL_CLAIMED && t->state != WL_DRAFTED && t->state != WL_OFFERED))
        return reader_refuse(a, "task not yours (claim it first, or your lease lapsed)");
    return 0;
}

/* --- HELD -------------------------------------------------------------------------- */

typedef struct held_ctx {
    store  *st;
    json_t *list;
} held_ctx;

static int held_one(void *ctx, const wl_task *t, const char *returned, const char *returned_by)
{
    held_ctx *h = ctx;
    store_study st;
    int has = store_get_study(h->st, t->study_uid, &st) == 0;
    json_t *j = task_to_json(t, has ? &st : NULL);
    if (!j)
        return 0;
    json_object_set_new(j, "lease_until", json_integer((json_int_t)t->holder_until_ms));
    if (returned_by[0]) {
        json_object_set_new(j, "returned", json_string(returned));
        json_object_set_new(j, "returned_by", json_string(returned_by));
    }
    json_array_append_new(h->list, j);
    return 0;
}

static int on_held(const reader_link_config *cfg, const wl_reader *r, reader_answer *a)
{
    held_ctx h = {cfg->st, json_array()};
    if (!h.list || store_task_held(cfg->st, r->id, held_one, &h) < 0) {
        json_decref(h.list);
        return reader_refuse(a, "the worklist cannot be read");
    }
    a->cmd = "HELD";
    a->hdr = json_pack("{s:o}", "tasks", h.list);
    return 0;
}

/* --- DRAFT ------------------------------------------------------------------------- */

static int on_draft(const reader_link_config *cfg, const proto_msg *m, const wl_reader *r, reader_answer *a)
{
    wl_task t;
    if (reader_own_task(cfg, m, r, &t, a) < 0)
        return -1;
    if (reader_audit(cfg, r->id, "read-draft", t.study_uid, t.report_id[0] ? t.report_id : "no draft") < 0)
        return reader_refuse(a, READER_AUDIT_WITHHELD);
    char why[128] = "", by[WL_ID_MAX] = "";
    store_task_returned(cfg->st, t.id, why, sizeof why, by, sizeof by);
    a->cmd = "DRAFT";
    a->hdr = json_pack("{s:I,s:s,s:s}", "task", (json_int_t)t.id, "report_id", t.report_id, "drafted_by",
                       t.drafted_by);
    if (by[0]) {
        json_object_set_new(a->hdr, "returned", json_string(why));
        json_object_set_new(a->hdr, "returned_by", json_string(by));
    }
    long n = t.report_id[0] ? store_report_get(cfg->st, t.report_id, NULL, 0) : -1;
    if (n > 0 && (a->data = malloc((size_t)n))) {
        store_report_get(cfg->st, t.report_id, a->data, (size_t)n);
        a->len = (size_t)n;
    }
    return 0;
}

/* --- PRIORS and PRIOR ---------------------------------------------------------------- */

int reader_patient_of(const reader_link_config *cfg, const wl_task *t, char pid[STORE_UID_MAX], reader_answer *a)
{
    store_study st;
    if (store_get_study(cfg->st, t->study_uid, &st) != 0 || !st.patient_id[0])
        return reader_refuse(a, "the task's study names no patient");
    snprintf(pid, STORE_UID_MAX, "%s", st.patient_id);
    return 0;
}

int reader_lookup_refused(reader_answer *a, int rc)
{
    return reader_refuse(a, rc == -ENOTSUP   ? "lookups are not configured on this hub"
                     : rc == -ENOENT  ? "no such report"
                     : rc == -EAGAIN  ? READER_AUDIT_WITHHELD
                     : rc == -ETIMEDOUT ? "the other hub did not answer"
                                      : "the lookup failed");
}

/* The other studies of the patient this hub holds (reader_other_patient),
 * newest first, reported or not: what a reader may open beside the task's
 * study.  At most PRIOR_STUDIES. */
#define PRIOR_STUDIES 50

typedef struct other_studies {
    const store_study *cur;
    json_t            *list;
} other_studies;

const char *reader_other_patient(const store_study *cur, const store_study *other)
{
    if (!cur->patient_id[0] || strcmp(cur->patient_id, other->patient_id))
        return "that prior study is not of this task's patient";
    if (cur->patient_birth_date[0] && other->patient_birth_date[0] &&
        strcmp(cur->patient_birth_date, other->patient_birth_date))
        return "that prior study has this task's Patient ID but another birth date: not compared";
    return NULL;
}

static int add_other(void *ctx, const store_study *st)
{
    other_studies *o = ctx;
    if (!strcmp(st->study_uid, o->cur->study_uid) || reader_other_patient(o->cur, st))
        return 0;
    json_array_append_new(o->list, json_pack("{s:s,s:s,s:s,s:s,s:s,s:i}", "study", st->study_uid, "date",
                                             st->study_date, "modalities", st->modalities, "description",
                                             st->description, "state", study_state_name((study_state)st->state),
                                             "instances", (int)st->n_instances));
    return 0;
}

static int newest_first(const void *a, const void *b)
{
    const char *x = json_string_value(json_object_get(*(json_t *const *)a, "date"));
    const char *y = json_string_value(json_object_get(*(json_t *const *)b, "date"));
    return strcmp(y ? y : "", x ? x : "");
}

static json_t *other_studies_of(const reader_link_config *cfg, const wl_task *t)
{
    store_study cur;
    other_studies o = {&cur, json_array()};
    if (store_get_study(cfg->st, t->study_uid, &cur) == 0 && cur.patient_id[0]) {
        store_study_filter f = {.patient_id = cur.patient_id, .state = -1};
        store_list_studies(cfg->st, &f, 0, 1000, add_other, &o);
    }
    size_t n = json_array_size(o.list);
    json_t **v = malloc((n ? n : 1) * sizeof *v);
    json_t *out = json_array();
    if (v) {
        for (size_t i = 0; i < n; i++)
            v[i] = json_array_get(o.list, i);
        qsort(v, n, sizeof *v, newest_first);
        for (size_t i = 0; i < n && i < PRIOR_STUDIES; i++)
            json_array_append(out, v[i]);
        free(v);
    }
    json_decref(o.list);
    return out;
}

/* PRIORS: the patient's exams across the consortium (the lookup answer,
 * as data) and their other studies here.  With want "relevant_prior" (a
 * workstation about to fetch ahead): only which one to fetch, answered
 * from this hub's studies alone where lookups are off or failed. */
static int on_priors(const reader_link_config *cfg, const proto_msg *m, const wl_reader *r, reader_answer *a)
{
    wl_task t;
    char pid[STORE_UID_MAX], who[96];
    if (reader_own_task(cfg, m, r, &t, a) < 0 || reader_patient_of(cfg, &t, pid, a) < 0)
        return -1;
    const char *want = proto_str(m, "want");
    bool relevant = want && !strcmp(want, "relevant_prior");
    if (!cfg->priors && !relevant)
        return reader_lookup_refused(a, -ENOTSUP);
    snprintf(who, sizeof who, "reader:%s", r->id);
    char why[64];
    snprintf(why, sizeof why, "to fetch a prior ahead for task %llu", (unsigned long long)t.id);
    int rc = cfg->priors ? cfg->priors(cfg->lookup_ctx, pid, who, relevant ? why : NULL, &a->data, &a->len)
                         : -ENOTSUP;
    if (rc < 0 && !relevant)
        return reader_lookup_refused(a, rc);
    a->cmd = "PRIORS";
    if (relevant) {
        json_t *rp = reader_relevant_prior(cfg->st, &t, rc < 0 ? NULL : a->data, a->len);
        free(a->data);
        a->data = NULL;
        a->len = 0;
        a->hdr = json_pack("{s:I,s:o*}", "task", (json_int_t)t.id, "relevant_prior", rp);
        return 0;
    }
    a->hdr = json_pack("{s:I,s:s,s:o}", "task", (json_int_t)t.id, "patient_id", pid, "studies",
                       other_studies_of(cfg, &t));
    return 0;
}

static int on_prior(const reader_link_config *cfg, const proto_msg *m, const wl_reader *r, reader_answer *a)
{
    wl_task t;
    char pid[STORE_UID_MAX], who[96];
    if (reader_own_task(cfg, m, r, &t, a) < 0 || reader_patient_of(cfg, &t, pid, a) < 0)
        return -1;
    const char *id = proto_str(m, "report_id"), *hub = proto_str(m, "hub");
    if (!reader_name_ok(id, 60))
        return reader_refuse(a, "PRIOR needs a report_id (letters, digits, '.', '_', '-')");
    if (!cfg->prior_report)
        return reader_lookup_refused(a, -ENOTSUP);
    snprintf(who, sizeof who, "reader:%s", r->id);
    char *out = NULL;
    size_t len = 0;
    int rc = cfg->prior_report(cfg->lookup_ctx, hub, id, who, &out, &len);
    if (rc < 0)
        return reader_lookup_refused(a, rc);
    /* A prior is the same patient's: a reader reads no other report this way. */
    json_t *j = json_loadb(out, len, 0, NULL);
    const char *their = json_string_value(json_object_get(json_object_get(j, "exam"), "patient_id"));
    int same = their && !strcmp(their, pid);
    json_decref(j);
    if (!same) {
        free(out);
        reader_audit(cfg, r->id, "prior-refused", t.study_uid, id); /* nothing is shown either way */
        return reader_refuse(a, "that report is not of this task's patient");
    }
    a->cmd = "PRIOR";
    a->hdr = json_pack("{s:s}", "report_id", id);
    a->data = out;
    a->len = len;
    return 0;
}

/* --- ALERT: what became of a critical value the reader signed ------------------------- */

/* Whether the signed report report_id says critical: 1, 0, or -1 when it cannot be read. */
static int report_critical(store *st, const char *report_id)
{
    long n = store_report_get(st, report_id, NULL, 0);
    char *doc = n > 0 ? malloc((size_t)n) : NULL;
    if (!doc || store_report_get(st, report_id, doc, (size_t)n) != n) {
        free(doc);
        return -1;
    }
    json_t *j = json_loadb(doc, (size_t)n, 0, NULL);
    free(doc);
    int critical = json_is_true(json_object_get(j, "critical"));
    json_decref(j);
    return j ? critical : -1;
}

/* The reader who signed a critical value follows it to the clinic (危急值
 * closed loop): waiting for the clinic's gateway, taken but not yet
 * confirmed read there, or read.  Names no patient: nothing to audit. */
static int on_alert(const reader_link_config *cfg, const proto_msg *m, const wl_reader *r, reader_answer *a)
{
    long long id = proto_int(m, "task", -1);
    wl_task t;
    if (id < 0 || store_task_get(cfg->st, (uint64_t)id, &t) != 0)
        return reader_refuse(a, "no such task");
    if (t.state != WL_SIGNED || strcmp(t.signed_by, r->id) || !t.report_id[0])
        return reader_refuse(a, "not a task whose report you signed");
    int critical = report_critical(cfg->st, t.report_id);
    int64_t since = 0;
    int where = critical == 1 ? store_alert_state(cfg->st, t.facility, t.report_id, &since) : STORE_ALERT_NONE;
    if (critical < 0 || where < 0)
        return reader_refuse(a, "the signed report cannot be read here");
    const char *state = !critical                     ? "not-critical"
                        : where == STORE_ALERT_WAITING ? "waiting"
                        : where == STORE_ALERT_UNREAD  ? "unread"
                                                       : "read";
    a->cmd = "ALERT";
    a->hdr = json_pack("{s:I,s:s,s:s,s:s,s:I}", "task", (json_int_t)t.id, "report_id", t.report_id, "facility",
                       t.facility, "state", state, "since", (json_int_t)since);
    return 0;
}

bool reader_query_known(const char *cmd)
{
    return !strcmp(cmd, "HELD") || !strcmp(cmd, "DRAFT") || !strcmp(cmd, "PRIORS") || !strcmp(cmd, "PRIOR") ||
           !strcmp(cmd, "ALERT");
}

int reader_query(const reader_link_config *cfg, const proto_msg *m, const wl_reader *r, reader_answer *a)
{
    memset(a, 0, sizeof *a);
    if (!strcmp(m->cmd, "HELD"))
        return on_held(cfg, r, a);
    if (!strcmp(m->cmd, "DRAFT"))
        return on_draft(cfg, m, r, a);
    if (!strcmp(m->cmd, "PRIORS"))
        return on_priors(cfg, m, r, a);
    if (!strcmp(m->cmd, "PRIOR"))
        return on_prior(cfg, m, r, a);
    if (!strcmp(m->cmd, "ALERT"))
        return on_alert(cfg, m, r, a);
    if (!strcmp(m->cmd, "STUDY") && proto_str(m, "hub"))
        return reader_peer_study(cfg, m, r, a);
    if (!strcmp(m->cmd, "FETCH") && proto_str(m, "hub"))
        return reader_peer_fetch(cfg, m, r, a);
    return reader_refuse(a, "unknown command");
}
