/* reader_relevant.c — which prior a workstation fetches ahead for a held
 * task (PRIORS with want "relevant_prior"), so that Compare opens at once.
 *
 * What a reader opens first beside a follow-up is the patient's last exam
 * of the same kind: the last CT under this CT, the last ECG under this
 * ECG.  It may be here, or at the hub of the hospital that referred the
 * patient: the newest of both is named.  A peer's exam is named only when
 * that hub's lookup says its report's signature and its images check out
 * there; a reader may still open any other one by hand. */
#include <stdio.h>
#include <string.h>
#include "hub/reader_queries.h"

/* Is m one of the backslash-separated entries of list? */
static int has_modality(const char *list, const char *m)
{
    size_t n = strlen(m);
    for (const char *p = list; n && *p;) {
        const char *end = strchr(p, '\\');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && !strncmp(p, m, n))
            return 1;
        p += len + (end != NULL);
    }
    return 0;
}

/* ---- this hub's studies --------------------------------------------------------- */

typedef struct relevant_ctx {
    const store_study *cur;
    const char        *modality;
    store_study        best;
    int                found;
} relevant_ctx;

/* a dated "newer than" b: by date, then time; an undated study is oldest */
static int newer(const store_study *a, const store_study *b)
{
    int c = strcmp(a->study_date, b->study_date);
    return c ? c > 0 : strcmp(a->study_time, b->study_time) > 0;
}

static int consider(void *ctx, const store_study *st)
{
    relevant_ctx *r = ctx;
    if (!strcmp(st->study_uid, r->cur->study_uid) || reader_other_patient(r->cur, st) ||
        st->state == STUDY_RECEIVING || !st->n_instances || !has_modality(st->modalities, r->modality))
        return 0;
    if (r->cur->study_date[0] && st->study_date[0] && newer(st, r->cur))
        return 0; /* a later exam is not this one's prior */
    if (!r->found || newer(st, &r->best)) {
        r->best = *st;
        r->found = 1;
    }
    return 0;
}

/* The newest of the patient's other studies here with the task's modality,
 * no later than the task's study, wholly arrived: 1 and *best, or 0. */
static int local_prior(store *st, const wl_task *t, const store_study *cur, store_study *best)
{
    relevant_ctx r = {.cur = cur, .modality = t->modality};
    store_study_filter f = {.patient_id = cur->patient_id, .state = -1};
    store_list_studies(st, &f, 0, 1000, consider, &r);
    if (r.found)
        *best = r.best;
    return r.found;
}

/* ---- the other hubs' exams ------------------------------------------------------ */

static const char *str(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

/* Did the exam's rule (recog.c's names) hold at the hub that answered? */
static int rule_ok(json_t *exam, const char *rule)
{
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(json_object_get(exam, "recognition"), "rules"), i, r)
        if (!strcmp(str(r, "rule"), rule))
            return json_is_true(json_object_get(r, "ok"));
    return 0;
}

/* The newest exam of lookup (PRIORS's answer) another hub holds that may
 * be fetched ahead for t: the task's modality, no later than cur, later
 * than after (a date; NULL for any), its report's signature and images good
 * there.  NULL when none; borrowed from lookup. */
static json_t *peer_prior(json_t *lookup, const wl_task *t, const store_study *cur, const char *after)
{
    const char *self = str(lookup, "hub");
    json_t *best = NULL, *e;
    size_t i;
    json_array_foreach(json_object_get(lookup, "exams"), i, e) {
        const char *hub = str(e, "hub"), *date = str(e, "study_date"), *study = str(e, "study_uid");
        if (!strcmp(hub, self) || !reader_name_ok(hub, 63) || !reader_name_ok(str(e, "report_id"), 60) ||
            !reader_uid_ok(study) || !strcmp(study, cur->study_uid))
            continue; /* another hub's, and named in a form this hub would accept back */
        if (!has_modality(str(e, "modality"), t->modality) || !rule_ok(e, "signature") ||
            !rule_ok(e, "images_intact"))
            continue;
        if (cur->study_date[0] && date[0] && strcmp(date, cur->study_date) > 0)
            continue; /* a later exam is not this one's prior */
        if ((after && strcmp(date, after) <= 0) || (best && strcmp(date, str(best, "study_date")) <= 0))
            continue; /* this hub's own wins a tie: it is nearer */
        best = e;
    }
    return best;
}

json_t *reader_relevant_prior(store *st, const wl_task *t, const char *lookup, size_t len)
{
    store_study cur, best;
    if (!t->modality[0] || store_get_study(st, t->study_uid, &cur) != 0 || !cur.patient_id[0])
        return NULL;
    int local = local_prior(st, t, &cur, &best);
    json_t *j = lookup ? json_loadb(lookup, len, 0, NULL) : NULL;
    json_t *peer = j ? peer_prior(j, t, &cur, local ? best.study_date : NULL) : NULL;
    json_t *out = peer ? json_pack("{s:s,s:s,s:s}", "study", str(peer, "study_uid"), "hub", str(peer, "hub"),
                                   "report_id", str(peer, "report_id"))
                : local ? json_pack("{s:s}", "study", best.study_uid)
                        : NULL;
    json_decref(j);
    return out;
}
