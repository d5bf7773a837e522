/* edge.c — the clinic gateway role: queueing (shared with `dxhub push`),
 * the clinic's own DICOM listener, the watch folder, and the link. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>
#include "codecs/codecs.h"
#include "hub/dimse.h"
#include "hub/disk.h"
#include "hub/edge.h"
#include "hub/edge_alert.h"
#include "hub/log.h"
#include "hub/main_signals.h"

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- queueing ------------------------------------------------------------ */

typedef struct study_count {
    char     uid[65];
    uint32_t n;
} study_count;

/* A file that could not be prepared: its own fault, unless reading it or
 * writing its prepared copy failed.  The copy is deleted by then, giving
 * its space back: the input's size stands for what it needed (compressed
 * or deflated, seldom more). */
static edge_outcome prepare_outcome(int rc, const char *tmp_dir, const char *in, char *err, size_t errlen)
{
    if (rc == DCM_ENOMEM)
        return EDGE_FAILED;
    if (rc != DCM_EIO && rc <= -1000)
        return EDGE_BAD_FILE; /* the DICOM parser's DCM_E* */
    int e = rc == DCM_EIO ? EIO : -rc;
    struct stat st;
    uint64_t need = stat(in, &st) == 0 ? (uint64_t)st.st_size : 0;
    if (disk_full_error(tmp_dir, e, need)) {
        disk_full_reason(tmp_dir, err, errlen);
        return EDGE_NO_ROOM;
    }
    /* Cannot open the file itself (its permissions, gone): trying again does not help. */
    return e == EACCES || e == EPERM || e == ENOENT || e == EISDIR || e == ELOOP ? EDGE_BAD_FILE : EDGE_FAILED;
}

/* A batch the spool refused (nothing of it kept). */
static edge_outcome spool_outcome(int rc, spool *sp, const spool_item *meta, size_t k, char *err, size_t errlen)
{
    if (rc == -ENOBUFS)
        return EDGE_NO_ROOM; /* its LMDB map, as err says */
    uint64_t need = 0;
    for (size_t j = 0; j < k; j++)
        need += meta[j].size;
    if (!disk_full_error(spool_dir(sp), -rc, need))
        return EDGE_FAILED;
    disk_full_reason(spool_dir(sp), err, errlen);
    return EDGE_NO_ROOM;
}

int edge_queue(spool *sp, const char *const *paths, size_t n, int priority, int referral, const char *note,
               const char *source, const char *link_ts, int with_markers, edge_report_fn report,
               edge_prepared_fn on_prepared, void *ctx)
{
    char tmp_dir[4200];
    snprintf(tmp_dir, sizeof tmp_dir, "%s/tmp", spool_dir(sp));
    mkdir(tmp_dir, 0700);
    enum { BATCH = 32 }; /* files per durable transaction */
    char *prepared[BATCH];
    spool_item meta[BATCH];
    char patient[BATCH][65];
    const char *origin[BATCH], *patients[BATCH];
    study_count *studies = NULL;
    size_t n_studies = 0;
    int queued = 0;
    for (size_t i = 0; i < n;) {
        size_t k = 0;
        for (; i < n && k < BATCH; i++) {
            char out[4400], err[256];
            memset(&meta[k], 0, sizeof meta[k]);
            meta[k].priority = (uint8_t)priority;
            meta[k].referral = (uint8_t)referral;
            meta[k].created_ms = now_ms();
            snprintf(meta[k].note, sizeof meta[k].note, "%s", note ? note : "");
            snprintf(meta[k].source, sizeof meta[k].source, "%s", source);
            int rc = edge_prepare(paths[i], tmp_dir, link_ts, out, sizeof out, &meta[k], patient[k], err, sizeof err);
            if (on_prepared)
                on_prepared(ctx, paths[i]);
            if (rc < 0) {
                edge_outcome why = prepare_outcome(rc, tmp_dir, paths[i], err, sizeof err);
                if (report)
                    report(ctx, paths[i], NULL, why, err);
                continue;
            }
            prepared[k] = strdup(out);
            origin[k] = paths[i];
            patients[k] = patient[k];
            k++;
        }
        if (k == 0)
            continue;
        char err[256];
        int rc = spool_put_files(sp, (const char *const *)prepared, meta, patients, k, err, sizeof err);
        edge_outcome why = rc == 0 ? EDGE_QUEUED : spool_outcome(rc, sp, meta, k, err, sizeof err);
        for (size_t j = 0; j < k; j++) {
            unlink(prepared[j]);
            free(prepared[j]);
            if (report)
                report(ctx, origin[j], rc == 0 ? &meta[j] : NULL, why, rc == 0 ? NULL : err);
            if (rc)
                continue;
            queued++;
            size_t s = 0;
            while (s < n_studies && strcmp(studies[s].uid, meta[j].study_uid))
                s++;
            if (s == n_studies) {
                study_count *q = realloc(studies, (n_studies + 1) * sizeof *q);
                if (!q)
                    continue;
                studies = q;
                snprintf(studies[n_studies].uid, sizeof studies[n_studies].uid, "%s", meta[j].study_uid);
                studies[n_studies++].n = 0;
            }
            studies[s].n++;
        }
    }
    for (size_t s = 0; with_markers && s < n_studies; s++) {
        spool_item m = {.priority = (uint8_t)priority, .referral = (uint8_t)referral, .expected = studies[s].n,
                        .created_ms = now_ms()};
        snprintf(m.study_uid, sizeof m.study_uid, "%s", studies[s].uid);
        snprintf(m.note, sizeof m.note, "%s", note ? note : "");
        snprintf(m.source, sizeof m.source, "%s", source);
        char err[256];
        if (spool_put_marker(sp, &m, err, sizeof err) < 0)
            log_error("queueing the study marker failed: %s", err);
    }
    free(studies);
    return queued;
}

/* --- the role ---------------------------------------------------------------- */

typedef struct edge {
    const edge_config *cfg;
    spool             *sp;
    dimse_scp         *scp;
    edge_link         *link;
    edge_watch        *watch;
    edge_alerter      *alerter; /* --on-alert */
    volatile int       stop;
    char               spool_in[4200];
} edge;

static int on_associate(void *ctx, const char *calling, const char *called, const char *peer, char *reason,
                        size_t reason_len)
{
    edge *e = ctx;
    int rc = dimse_check_aets(e->cfg->aet, e->cfg->allow_ae, e->cfg->open_dicom, calling, called, reason,
                              reason_len);
    if (rc != DIMSE_ACCEPT) {
        log_warn("association from %s rejected: %s", peer, reason);
    }
    return rc;
}

typedef struct one_result {
    char         err[256];
    edge_outcome outcome;
} one_result;

static void one_report(void *ctx, const char *path, const spool_item *it, edge_outcome outcome, const char *error)
{
    one_result *r = ctx;
    (void)path;
    (void)it;
    r->outcome = outcome;
    snprintf(r->err, sizeof r->err, "%s", error ? error : "");
}

static uint16_t on_store(void *ctx, const dimse_store_req *req, char *comment, size_t comment_len)
{
    edge *e = ctx;
    char source[80];
    snprintf(source, sizeof source, "dicom:%s", req->calling_aet);
    one_result r = {.outcome = EDGE_FAILED};
    const char *paths[1] = {req->path};
    edge_queue(e->sp, paths, 1, PRIO_ROUTINE, 0, NULL, source, e->cfg->link_ts, 0, one_report, NULL, &r);
    unlink(req->path);
    switch (r.outcome) {
    case EDGE_QUEUED:
        return DIMSE_STATUS_SUCCESS; /* durable in the spool */
    case EDGE_BAD_FILE:
        snprintf(comment, comment_len, "%s", r.err);
        log_warn("refused an instance from %s: %s", source, r.err);
        return DIMSE_STATUS_CANNOT_UNDERSTAND;
    case EDGE_NO_ROOM:
    case EDGE_FAILED:
        break;
    }
    /* Ours, not the instance's: the modality keeps it and sends it again. */
    snprintf(comment, comment_len, "%s", r.outcome == EDGE_NO_ROOM ? "disk full; retry later" : r.err);
    log_error("refused an instance from %s: %s", source, r.err);
    return DIMSE_STATUS_OUT_OF_RESOURCES;
}

/* An instance the listener could not write down (edge.c's on_store never
 * saw it): the sender got 0xA700. */
static void on_spool_failed(void *ctx, const char *calling_aet, bool disk_full, const char *msg)
{
    edge *e = ctx;
    char why[160] = "";
    if (disk_full)
        disk_full_reason(e->spool_in, why, sizeof why);
    log_error("refused an instance from dicom:%s: %s%s%s%s", calling_aet, why, why[0] ? " (" : "", msg,
              why[0] ? ")" : "");
}

static void alert_arrived(void *ctx) { edge_alerter_kick(((edge *)ctx)->alerter); }

int edge_run(const edge_config *cfg)
{
    log_set_role("edge");
    edge e = {.cfg = cfg};
    sigset_t sigs; /* taken by the main loop only: blocked before any thread starts */
    main_signals_block(&sigs);
    char err[512];
    if (dimse_tls_check(cfg->dicom_tls_cert, cfg->dicom_tls_key, cfg->dicom_tls_ca, NULL, err, sizeof err) < 0) {
        log_error("DICOM listener: %s", err);
        return 1;
    }
    int rc = spool_open(cfg->data_dir, 0, &e.sp, err, sizeof err);
    if (rc < 0) {
        log_error("%s", err);
        return 1;
    }
    keypair kp;
    char hub_pub[KEY_Z85_LEN + 1], hub_pub_next[KEY_Z85_LEN + 1];
    if (keys_load_or_create(cfg->keys_dir, "edge", &kp, err, sizeof err) < 0 ||
        keys_read_hub_keys(cfg->hub_key, hub_pub, hub_pub_next, err, sizeof err) < 0) {
        log_error("%s", err);
        spool_close(&e.sp);
        return 1;
    }
    void *zctx = zmq_ctx_new();
    snprintf(e.spool_in, sizeof e.spool_in, "%s/incoming", cfg->data_dir);
    mkdir(e.spool_in, 0700);
    dimse_config dc = {.bind_addr = cfg->bind, .port = cfg->dicom_port, .aet = cfg->aet, .spool_dir = e.spool_in,
                       .accept = on_associate, .store = on_store, .spool_failed = on_spool_failed, .ctx = &e,
                       .tls_cert = cfg->dicom_tls_cert, .tls_key = cfg->dicom_tls_key, .tls_ca = cfg->dicom_tls_ca};
    edge_link_config lc = {.zctx = zctx, .hub = cfg->hub, .kp = &kp, .hub_pub = hub_pub, .hub_pub_next = hub_pub_next,
                           .sp = e.sp,
                           .max_inflight = cfg->max_inflight, .on_alert = alert_arrived, .on_alert_ctx = &e};
    /* before the link: an alert delivered at once is announced */
    if (cfg->on_alert && cfg->on_alert[0] && (rc = edge_alerter_start(e.sp, cfg->on_alert, &e.alerter, err,
                                                                      sizeof err)) < 0) {
        log_error("on-alert: %s", err);
        goto out;
    }
    rc = dimse_scp_start(&dc, &e.scp, err, sizeof err);
    if (rc < 0) {
        log_error("DICOM listener: %s", err);
        goto out;
    }
    if ((rc = edge_link_start(&lc, &e.link, err, sizeof err)) < 0) {
        log_error("link: %s", err);
        goto out;
    }
    if (cfg->watch_dir && cfg->watch_dir[0] &&
        (rc = edge_watch_start(cfg->watch_dir, e.sp, cfg->link_ts, &e.watch, err, sizeof err)) < 0) {
        log_error("watch: %s", err);
        goto out;
    }
    printf("dxhub edge: ready dicom=%s:%u aet=%s hub=%s data=%s key=%s/edge.pub\n", cfg->bind,
           dimse_scp_port(e.scp), cfg->aet, cfg->hub, cfg->data_dir, cfg->keys_dir);
    fflush(stdout);
    log_info("ready: DICOM %s:%u (AE %s), forwarding to %s", cfg->bind, dimse_scp_port(e.scp), cfg->aet, cfg->hub);
    for (;;) {
        int sig = sigwaitinfo(&sigs, NULL);
        if (sig == SIGINT || sig == SIGTERM)
            break;
        if (sig == SIGHUP) {
            int n = log_reopen(err, sizeof err);
            if (n < 0)
                log_error("SIGHUP: log file not reopened (still writing the old one): %s", err);
            else if (n == 0)
                log_info("SIGHUP: log file reopened");
        }
    }
    log_info("stopping");
    rc = 0;
out:
    e.stop = 1;
    edge_watch_stop(&e.watch);
    dimse_scp_stop(&e.scp);
    edge_link_stop(&e.link);
    edge_alerter_stop(&e.alerter);
    zmq_ctx_term(zctx);
    spool_close(&e.sp);
    return rc < 0 ? 1 : 0;
}
