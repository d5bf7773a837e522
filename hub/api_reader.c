/* api_reader.c — lookups for a reader (the reader link's PRIORS and
 * PRIOR): the same answers a facility gets from GET /api/v1/reports and
 * /api/v1/reports/{id}, asked over the reader's CURVE session instead of
 * HTTP, and audited as the reader. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hub/api_private.h"
#include "hub/log.h"

int api_reader_priors(void *ctx, const char *patient, const char *who, const char *why, char **out, size_t *len)
{
    api_server *a = ctx;
    if (!a->recog)
        return -ENOTSUP;
    if (!patient || !patient[0] || strlen(patient) > 64)
        return -EINVAL;
    /* The other hubs first: they work while this hub evaluates its own. */
    peer_answer *pa = NULL;
    size_t npa = 0;
    if (a->peers && peers_count(a->peers)) {
        peer_lookup_q pq = {.patient_id = patient, .asking = who};
        peers_lookup_all(a->peers, &pq, &pa, &npa);
    }
    jbuf ex = {0}, pj = {0};
    unsigned n = 0, recognised = 0;
    int rc = local_exams(a, patient, 0, NULL, "/api/v1", &ex, &n, &recognised);
    for (size_t i = 0; rc >= 0 && i < npa; i++) {
        unsigned got = 0;
        if (pa[i].status == 0)
            splice_peer(&ex, &pa[i], &n, &recognised, &got);
        jb_puts(&pj, i ? ",{\"hub\":" : "{\"hub\":");
        jb_str(&pj, pa[i].name);
        if (pa[i].status == 0) {
            jb_printf(&pj, ",\"status\":\"ok\",\"exams\":%u}", got);
        } else {
            jb_printf(&pj, ",\"status\":\"%s\",\"error\":", pa[i].status == -ETIMEDOUT ? "unreachable" : "error");
            jb_str(&pj, pa[i].error);
            jb_put(&pj, "}", 1);
        }
    }
    peer_answers_free(pa, npa);
    char detail[256];
    snprintf(detail, sizeof detail, "priors of PatientID=%s exams=%u recognised=%u%s%.120s", patient, n, recognised,
             why ? ", " : "", why ? why : "");
    if (rc >= 0 && api_audit(a->auditor, api_now_ms(), who, "lookup", "", detail) < 0)
        rc = -EAGAIN; /* no answer without its audit record */
    jbuf b = {0};
    if (rc >= 0) {
        char consortium[128], mark[32];
        recog_names(a->recog, consortium, sizeof consortium, mark, sizeof mark);
        jb_puts(&b, "{\"PatientID\":");
        jb_str(&b, patient);
        jb_puts(&b, ",\"hub\":");
        jb_str(&b, a->name);
        jb_puts(&b, ",\"consortium\":");
        jb_str(&b, consortium);
        jb_printf(&b, ",\"scope\":\"consortium\",\"total\":%u,\"recognised\":%u,\"exams\":[", n, recognised);
        jb_put(&b, ex.p, ex.len);
        jb_puts(&b, "],\"peers\":[");
        jb_put(&b, pj.p, pj.len);
        jb_puts(&b, "]}");
        if (!jb_ok(&ex) || !jb_ok(&pj) || !jb_ok(&b))
            rc = -ENOMEM;
    }
    jb_release(&ex);
    jb_release(&pj);
    if (rc < 0) {
        jb_release(&b);
        return rc;
    }
    *out = jb_detach(&b, len);
    return 0;
}

int api_reader_report(void *ctx, const char *hub, const char *id, const char *who, char **out, size_t *len)
{
    api_server *a = ctx;
    if (!a->recog)
        return -ENOTSUP;
    if (hub && hub[0] && strcmp(hub, a->name)) {
        if (!a->peers)
            return -ENOENT;
        char why[160];
        int rc = peers_report(a->peers, hub, id, who, out, len, why, sizeof why);
        if (rc < 0 && rc != -ENOENT)
            log_warn("readers: report %.60s of hub %.60s for %s: %s", id, hub, who, why);
        char detail[160];
        snprintf(detail, sizeof detail, "%.60s via hub %.60s", id, hub);
        if (api_audit(a->auditor, api_now_ms(), who, "read-report", "", detail) < 0) {
            if (rc == 0)
                free(*out);
            return -EAGAIN;
        }
        return rc;
    }
    jbuf b = {0};
    char study[STORE_UID_MAX] = "";
    int rc = report_answer(a, id, "/api/v1", &b, study);
    if (rc == 0 && !jb_ok(&b))
        rc = -ENOMEM;
    if (api_audit(a->auditor, api_now_ms(), who, "read-report", study, id) < 0)
        rc = rc ? rc : -EAGAIN;
    if (rc < 0) {
        jb_release(&b);
        return rc;
    }
    *out = jb_detach(&b, len);
    return 0;
}

int api_reader_peer_fetch(void *ctx, const char *hub, const char *sop, uint64_t offset, size_t len, const char *who,
                          void *buf, size_t *got, uint64_t *total, char *why, size_t whylen)
{
    api_server *a = ctx;
    if (!a->peers) {
        snprintf(why, whylen, "this hub asks no other hub");
        return -ENOENT;
    }
    return peers_fetch(a->peers, hub, sop, offset, len, who, buf, got, total, why, whylen);
}
