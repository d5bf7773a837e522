/* serve.c — the hub role: wires the store, the DICOM listener, the HTTP
 * API and the housekeeping loop (completeness, retention) together, and
 * stops them in reverse order on SIGINT/SIGTERM. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>
#include "codecs/codecs.h"
#include "hub/api.h"
#include "hub/apikeys.h"
#include "hub/clock.h"
#include "hub/disk.h"
#include "hub/keys.h"
#include "hub/peer.h"
#include "hub/pki.h"
#include "hub/recog.h"
#include "hub/link.h"
#include "hub/reader_link.h"
#include "hub/readers.h"
#include "hub/zap.h"
#include "hub/b64.h"
#include "hub/report.h"
#include "hub/dimse.h"
#include "hub/handshake_watch.h"
#include "hub/log.h"
#include "hub/main_signals.h"
#include "hub/metrics.h"
#include "hub/serve.h"
#include "hub/store_lookup.h"
#include "hub/store.h"
#include "hub/trust_watch.h"

/* A received instance up to this size reaches the store in memory, not
 * through a spool file written, read back and deleted (a radiograph is about
 * 10 MB, a CT slice 0.5 MB); bigger ones spill to the spool as they arrive.
 * At most SERVE_DICOM_MEM_BUDGET of such buffers at once: four
 * associations; the others spool. */
#define SERVE_DICOM_MEM_INSTANCE ((size_t)16 << 20)
#define SERVE_DICOM_MEM_BUDGET   (4 * SERVE_DICOM_MEM_INSTANCE)
/* A certificate closer than this to its end is named at start. */
#define TLS_RENEW_WARN_DAYS 30

typedef struct hub {
    const serve_config *cfg;
    store              *st;
    dimse_scp          *scp;
    api_server         *api;
    void               *zctx;
    allowlist          *allow;
    zap_handler        *zap;
    link_hub           *link;
    reader_link        *rlink;
    readers            *profiles;
    /* NULL until a trust list loads (at start or on SIGHUP); read by the
     * reader link's thread, set by the main loop, freed after both stop. */
    report_verifier *_Atomic verifier;
    apikeys            *apikeys;
    recog              *recog;
    peers              *peers;
    _Atomic(api_server *) api_live; /* for the peer link's thread, once the API serves */
    keypair             kp;
    hub_metrics         metrics;
    char                spool[4096];
    _Atomic int         evict_now; /* set when the store refused for lack of space */
    int64_t             next_retention_ms; /* the next retention pass when space is not short (monotonic) */
    trust_watch         trust;             /* the trust list's coming deadline (trust_watch.h) */
    handshake_watch    *handshakes;        /* failed handshakes on the ZeroMQ ports, logged */
    int64_t             next_trust_ms;     /* the next look at it (monotonic) */
    int64_t             next_outbox_ms;    /* the next look for clinics' untaken alerts (monotonic) */
    log_repeat          alert_told[64];    /* by facility: an untaken alert said again after ALERT_TELL_MS */
} hub;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- DICOM callbacks -------------------------------------------------- */

static int on_associate(void *ctx, const char *calling, const char *called, const char *peer, char *reason,
                        size_t reason_len)
{
    hub *h = ctx;
    h->metrics.dicom_associations++;
    int rc = dimse_check_aets(h->cfg->aet, h->cfg->allow_ae, h->cfg->open_dicom, calling, called, reason,
                              reason_len);
    if (rc != DIMSE_ACCEPT) {
        hub_count_error(&h->metrics, HUB_ERR_ASSOC_REJECTED);
        log_warn("association from %s rejected: %s", peer, reason);
    }
    return rc;
}

static int check_command_uids(const dimse_store_req *req, char *why, size_t n)
{
    dcm_file *f = NULL;
    dcm_err err = {0};
    dcm_parse_opts o = {.stop_at_tag = DCM_TAG(0x0008, 0x0019)};
    int rc = req->data ? dcm_parse(req->data, (size_t)req->size, &o, &f, &err) : dcm_open(req->path, &o, &f, &err);
    if (rc < 0)
        return 0; /* unparseable: the store names the reason */
    char cls[72] = "", inst[72] = "";
    dcm_top_str(f, DCM_TAG(0x0008, 0x0016), cls, sizeof cls);
    dcm_top_str(f, DCM_TAG(0x0008, 0x0018), inst, sizeof inst);
    dcm_free(&f);
    if (inst[0] && strcmp(inst, req->sop_instance_uid)) {
        snprintf(why, n, "SOP Instance UID differs from the C-STORE request's");
        return -1;
    }
    if (cls[0] && strcmp(cls, req->sop_class_uid)) {
        snprintf(why, n, "SOP Class UID differs from the C-STORE request's");
        return -1;
    }
    return 0;
}

static uint16_t on_store(void *ctx, const dimse_store_req *req, char *comment, size_t comment_len)
{
    hub *h = ctx;
    char source[80];
    snprintf(source, sizeof source, "dicom:%s", req->calling_aet);
    int64_t t = now_ms();
    /* PS3.4 B.2.3: the data set must be the instance the command names. */
    char mismatch[96] = "";
    if (check_command_uids(req, mismatch, sizeof mismatch) < 0) {
        if (!req->data)
            unlink(req->path);
        hub_count_error(&h->metrics, HUB_ERR_INVALID_INSTANCE);
        snprintf(comment, comment_len, "%s", mismatch);
        store_audit(h->st, t, source, "invalid-instance", "", mismatch);
        log_warn("refused an instance from %s: %s", source, mismatch);
        return strstr(mismatch, "Class") ? DIMSE_STATUS_DATASET_MISMATCH : DIMSE_STATUS_CANNOT_UNDERSTAND;
    }
    store_put_result res;
    if (req->data) {
        store_put_mem(h->st, req->data, (size_t)req->size, req->dataset_sha256, req->dataset_offset, NULL,
                      req->early_state, source, t, &res);
    } else {
        /* Spilled to the spool: the chunks written from the buffer before
         * count, the rest comes from the file. */
        store_put_file_early(h->st, req->path, req->dataset_sha256, req->dataset_offset, req->early_state, source, t,
                             &res);
        unlink(req->path);
    }
    switch (res.result) {
    case STORE_STORED:
    case STORE_DUPLICATE:
        return DIMSE_STATUS_SUCCESS;
    case STORE_CONFLICT:
        /* Durable (kept apart and flagged): the sender must not retry. */
        log_warn("instance from %s conflicts with a stored one of the same UID (kept apart, audited)", source);
        return DIMSE_STATUS_SUCCESS;
    case STORE_FULL:
        hub_count_error(&h->metrics, HUB_ERR_STORE_FULL);
        h->evict_now = 1;
        snprintf(comment, comment_len, "hub storage full; retry later");
        log_error("refused an instance from %s: %s", source, res.reason);
        return DIMSE_STATUS_OUT_OF_RESOURCES;
    case STORE_INVALID:
        hub_count_error(&h->metrics, HUB_ERR_INVALID_INSTANCE);
        snprintf(comment, comment_len, "%s", res.reason);
        store_audit(h->st, t, source, "invalid-instance", "", res.reason);
        log_warn("refused an invalid instance from %s: %s", source, res.reason);
        return DIMSE_STATUS_CANNOT_UNDERSTAND;
    default:
        hub_count_error(&h->metrics, HUB_ERR_STORE_FAILED);
        snprintf(comment, comment_len, "%s", res.reason);
        log_error("storing an instance from %s failed: %s", source, res.reason);
        return DIMSE_STATUS_OUT_OF_RESOURCES;
    }
}

/* A large instance's chunks go to the store while the rest arrives: the
 * commit that makes it durable then flushes little more than its tail. */
static void on_early(void *ctx, void **state, const unsigned char *p, uint64_t offset, size_t n)
{
    hub *h = ctx;
    (void)n; /* STORE_CHUNK, as configured */
    if (!*state && offset == 0)
        *state = store_blob_new(h->st);
    if (*state)
        store_blob_chunk(h->st, *state, (uint32_t)(offset / STORE_CHUNK), p); /* a refusal: the put writes it */
}

static void on_early_end(void *ctx, void *state)
{
    hub *h = ctx;
    store_blob *b = state;
    store_blob_free(h->st, &b);
}

/* A signed report goes back to the clinic it came from, through the edge
 * link's durable outbox; a critical value travels as an alert, ahead of
 * everything else (危急值: the clinic must hear at once). */
static void on_report(void *ctx, const wl_task *t, const char *report_id)
{
    hub *h = ctx;
    long n = store_report_get(h->st, report_id, NULL, 0);
    if (n <= 0 || !t->facility[0])
        return;
    char *doc = malloc((size_t)n);
    char sig_key[96], chain_key[96];
    snprintf(sig_key, sizeof sig_key, "%s.sig", report_id);
    snprintf(chain_key, sizeof chain_key, "%s.chain", report_id);
    long sn = store_report_get(h->st, sig_key, NULL, 0), cn = store_report_get(h->st, chain_key, NULL, 0);
    char *sig = sn > 0 ? malloc((size_t)sn) : NULL, *chain = cn > 0 ? malloc((size_t)cn + 1) : NULL;
    if (!doc || (sn > 0 && !sig) || (cn > 0 && !chain))
        goto out;
    store_report_get(h->st, report_id, doc, (size_t)n);
    if (sig)
        store_report_get(h->st, sig_key, sig, (size_t)sn);
    if (chain) {
        store_report_get(h->st, chain_key, chain, (size_t)cn);
        chain[cn] = '\0';
    }
    json_error_t je;
    json_t *parsed = json_loadb(doc, (size_t)n, 0, &je);
    int critical = parsed && json_is_true(json_object_get(parsed, "critical"));
    json_decref(parsed);
    /* The exact signed bytes travel base64-encoded: never re-serialised. */
    json_t *bundle = json_pack("{s:s,s:I,s:s,s:b,s:s}", "report_id", report_id, "task", (json_int_t)t->id,
                               "study", t->study_uid, "critical", critical, "chain_pem", chain ? chain : "");
    char *b64 = base64_encode((const uint8_t *)doc, (size_t)n);
    char *sb64 = sig ? base64_encode((const uint8_t *)sig, (size_t)sn) : NULL;
    /* What the clinic prints above the report: the patient and exam as the
     * hub stored them (the signed document names the patient by ID only). */
    store_study st;
    if (bundle && store_get_study(h->st, t->study_uid, &st) == 0)
        json_object_set_new(bundle, "exam",
                            json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "patient_id", st.patient_id,
                                      "patient_name", st.patient_name, "birth_date", st.patient_birth_date, "sex",
                                      st.patient_sex, "accession", st.accession, "study_date", st.study_date,
                                      "description", st.description, "modalities", st.modalities));
    json_object_set_new(bundle, "report_b64", json_string(b64 ? b64 : ""));
    json_object_set_new(bundle, "signature_b64", json_string(sb64 ? sb64 : ""));
    char *text = json_dumps(bundle, JSON_COMPACT);
    const char *facility = t->facility;
    if (text && store_outbox_put(h->st, facility, report_id, critical ? "alert" : "report", text, strlen(text),
                                 now_ms()) == 0) {
        log_info("report %s for task %llu queued for the clinic%s", report_id, (unsigned long long)t->id,
                 critical ? " as a CRITICAL VALUE ALERT" : "");
        link_hub_kick(h->link);
    }
    free(text);
    free(b64);
    free(sb64);
    json_decref(bundle);
out:
    free(doc);
    free(sig);
    free(chain);
}

/* Without a trust list nothing signed can be accepted (drafts can). */
static int verify_or_refuse(void *ctx, const wl_task *t, const store_submission *sub, char *why, size_t why_len)
{
    hub *h = ctx;
    report_verifier *v = atomic_load(&h->verifier);
    if (v)
        return report_verify_submission(v, t, sub, why, why_len);
    if (!strcmp(sub->action, "sign") || sub->sig_len) {
        snprintf(why, why_len, "the hub has no consortium trust list: it cannot verify signatures");
        return -EACCES;
    }
    return 0;
}

/* A SIGHUP reload refused: the old settings stay; counted for /health. */
static void reload_failed(hub *h, const char *what, const char *err)
{
    atomic_fetch_add(&h->metrics.config_reload_failures, 1);
    log_error("SIGHUP: %s not reloaded (kept the old ones): %s", what, err);
}

/* SIGHUP: reload the trust list, or load it for the first time. */
static void reload_trust(hub *h, const report_verifier_config *vc)
{
    char err[512];
    report_verifier *v = atomic_load(&h->verifier);
    if (v) {
        if (report_verifier_reload(v, err, sizeof err) < 0)
            reload_failed(h, "trust list", err);
        else
            log_info("SIGHUP: trust list reloaded");
    } else if (report_verifier_new(vc, &v, err, sizeof err) == 0) {
        atomic_store(&h->verifier, v);
        log_info("SIGHUP: trust list loaded: signed reports are accepted now");
    } else {
        log_warn("SIGHUP: still no trust list: %s", err);
    }
    trust_watch_check(&h->trust, atomic_load(&h->verifier), &h->metrics, true);
}

/* What the store holds for a SOP instance: the report's digests are
 * checked against it before a signed report is accepted. */
static int stored_digest(void *ctx, const char *sop, uint8_t out[32])
{
    hub *h = ctx;
    store_instance in;
    if (store_get_instance(h->st, sop, &in) != 0)
        return -ENOENT;
    memcpy(out, in.digest, 32);
    return 0;
}

static void on_tasks(void *ctx)
{
    hub *h = ctx;
    if (h->rlink)
        reader_link_kick(h->rlink);
    if (h->link) /* the ECG triage may have queued a repeat request for the clinic */
        link_hub_kick(h->link);
}

static void on_refused_key(void *ctx, const char *addr, const char *key)
{
    hub *h = ctx;
    hub_count_error(&h->metrics, HUB_ERR_AUTH);
    char detail[160];
    snprintf(detail, sizeof detail, "unknown CURVE key %s", key);
    store_audit(h->st, now_ms(), addr, "refused-key", "", detail);
    log_warn("refused a ZeroMQ peer at %s: key %s is not in the allow-list", addr, key);
}

/* Recognition: a clinic is in the consortium when its gateway's key is
 * allowed here. */
static bool has_edge(void *ctx, const char *facility)
{
    hub *h = ctx;
    char role[96];
    snprintf(role, sizeof role, "edge:%s", facility);
    return allowlist_has_role(h->allow, role);
}

/* The peer link answers through the HTTP API's renderers once it serves. */
static int peer_lookup(void *ctx, const peer_lookup_q *q, const char *who, char **out, size_t *len)
{
    api_server *a = atomic_load(&((hub *)ctx)->api_live);
    return a ? api_peer_lookup(a, q, who, out, len) : -EAGAIN;
}

static int peer_report(void *ctx, const char *id, const char *prefix, const char *who, char **out, size_t *len)
{
    api_server *a = atomic_load(&((hub *)ctx)->api_live);
    return a ? api_peer_report(a, id, prefix, who, out, len) : -EAGAIN;
}

/* A reader's priors, through the same renderers (reader_link's PRIORS, PRIOR). */
static int reader_priors(void *ctx, const char *patient, const char *who, const char *why, char **out, size_t *len)
{
    api_server *a = atomic_load(&((hub *)ctx)->api_live);
    return a ? api_reader_priors(a, patient, who, why, out, len) : -EAGAIN;
}

static int reader_prior(void *ctx, const char *hub_name, const char *id, const char *who, char **out, size_t *len)
{
    api_server *a = atomic_load(&((hub *)ctx)->api_live);
    return a ? api_reader_report(a, hub_name, id, who, out, len) : -EAGAIN;
}

static int reader_peer_fetch(void *ctx, const char *hub_name, const char *sop, uint64_t offset, size_t len,
                             const char *who, void *buf, size_t *got, uint64_t *total, char *why, size_t whylen)
{
    api_server *a = atomic_load(&((hub *)ctx)->api_live);
    if (!a)
        snprintf(why, whylen, "starting");
    return a ? api_reader_peer_fetch(a, hub_name, sop, offset, len, who, buf, got, total, why, whylen) : -EAGAIN;
}

static int peer_preview(void *ctx, const char *sop, const char *who, char **out, size_t *len, char *why, size_t whylen)
{
    api_server *a = atomic_load(&((hub *)ctx)->api_live);
    if (!a)
        snprintf(why, whylen, "starting");
    return a ? api_peer_preview(a, sop, who, out, len, why, whylen) : -EAGAIN;
}

static int peer_audit(void *ctx, const char *who, const char *what, const char *study, const char *detail)
{
    api_server *a = atomic_load(&((hub *)ctx)->api_live);
    return a ? api_peer_audit(a, who, what, study, detail) : -EAGAIN;
}

/* The clinic gateways the hub knows: heard on the edge link since it
 * started, and those allowed that have not been heard (api.h). */
typedef struct known_clinics {
    link_clinic *out;
    int          n, max;
} known_clinics;

static void add_allowed(void *ctx, const char *role)
{
    known_clinics *k = ctx;
    const char *facility = role + 5; /* "edge:" */
    for (int i = 0; i < k->n; i++)
        if (!strcmp(k->out[i].facility, facility))
            return;
    if (k->n < k->max) {
        memset(&k->out[k->n], 0, sizeof k->out[0]);
        snprintf(k->out[k->n++].facility, sizeof k->out[0].facility, "%s", facility);
    }
}

static int clinics_known(void *ctx, link_clinic *out, int max)
{
    hub *h = ctx;
    known_clinics k = {out, link_hub_clinics(h->link, out, max), max};
    allowlist_roles(h->allow, "edge:", add_allowed, &k);
    return k.n;
}

#define ALERT_TELL_MS (30 * 60 * 1000) /* an untaken alert is said again this often */

/* A critical-value alert (危急值) waits in the outbox until the clinic's
 * gateway takes it, and is unread until a person there confirms reading
 * it: a gateway that is down, or a clinic where nobody looks, holds it
 * back, and only a phone call reaches the clinic then.  Said as an error
 * once it has waited alert_warn_seconds, again when more arrive, and
 * every 30 min. */
static int untaken_alerts(void *ctx, const store_outbox_waiting *w)
{
    hub *h = ctx;
    int64_t now = now_ms();
    int64_t warn = (int64_t)h->cfg->alert_warn_seconds * 1000;
    bool untaken = w->alerts && w->oldest_alert_ms && now - w->oldest_alert_ms >= warn;
    bool unread = w->unread_alerts && w->oldest_unread_ms && now - w->oldest_unread_ms >= warn;
    if (!untaken && !unread)
        return 0;
    unsigned slot = 0;
    for (const char *c = w->facility; *c; c++)
        slot = slot * 31 + (unsigned char)*c;
    char reason[96];
    snprintf(reason, sizeof reason, "%s:%u:%u", w->facility, untaken ? w->alerts : 0, unread ? w->unread_alerts : 0);
    if (!log_repeat_due(&h->alert_told[slot % 64], reason, ALERT_TELL_MS))
        return 0;
    link_clinic seen[512];
    int n = link_hub_clinics(h->link, seen, 512);
    char gateway[128] = "has not connected since the hub started";
    for (int i = 0; i < n; i++) {
        if (strcmp(seen[i].facility, w->facility))
            continue;
        if (seen[i].connected) {
            snprintf(gateway, sizeof gateway, "is connected but has not acknowledged it");
        } else {
            char when[32] = "?";
            time_t t = (time_t)(seen[i].last_seen_ms / 1000);
            struct tm tm;
            if (gmtime_r(&t, &tm))
                strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
            snprintf(gateway, sizeof gateway, "was last heard at %s (%lld min ago)", when,
                     (long long)((now - seen[i].last_seen_ms) / 60000));
        }
    }
    if (untaken)
        log_error("clinic %s has not taken %u critical-value alert%s for %lld min (the oldest: %s); its gateway %s: "
                  "phone the clinic (GET /api/v1/clinics)",
                  w->facility, w->alerts, w->alerts == 1 ? "" : "s", (long long)((now - w->oldest_alert_ms) / 60000),
                  w->oldest_alert_id, gateway);
    if (unread)
        log_error("clinic %s has not confirmed reading %u critical-value alert%s for %lld min (the oldest: %s; "
                  "its gateway took %s; nobody there has confirmed reading, on the nurses' page or with 'dxhub "
                  "reports --ack'): phone the clinic (GET /api/v1/clinics)",
                  w->facility, w->unread_alerts, w->unread_alerts == 1 ? "" : "s",
                  (long long)((now - w->oldest_unread_ms) / 60000), w->oldest_unread_id,
                  w->unread_alerts == 1 ? "it" : "them");
    return 0;
}

/* A reader's read, queued with the API's (one fsync for many, off the
 * reader link's thread); before the API serves, written at once. */
static int reader_audit_queued(void *ctx, const char *who, const char *what, const char *study, const char *detail)
{
    hub *h = ctx;
    api_server *a = atomic_load(&h->api_live);
    return a ? api_peer_audit(a, who, what, study, detail)
             : store_audit(h->st, clock_wall_ms(), who, what, study, detail);
}

static void reload_lookup(hub *h)
{
    char err[512];
    int n = apikeys_load(h->apikeys, h->cfg->keys_dir, err, sizeof err);
    if (n < 0)
        reload_failed(h, "API keys", err);
    else
        log_info("SIGHUP: %d facility API keys", n);
    recog_config *rc = NULL;
    if (recog_config_load(h->cfg->recognition, &rc, err, sizeof err) < 0)
        reload_failed(h, "recognition rules", err);
    else
        recog_set_config(h->recog, rc);
    recog_trust_changed(h->recog); /* a new CRL revokes at once */
    if ((n = peers_reload(h->peers, err, sizeof err)) < 0)
        reload_failed(h, "peer hubs", err);
    else
        log_info("SIGHUP: %d peer hubs", n);
}

static void on_dimse_log(void *ctx, const char *msg)
{
    (void)ctx;
    log_info("dicom: %s", msg);
}

/* An instance the listener could not write down: refused with 0xA700
 * before the store saw it, counted as the store's refusals are. */
static void on_spool_failed(void *ctx, const char *calling_aet, bool disk_full, const char *msg)
{
    hub *h = ctx;
    if (disk_full) {
        char why[160];
        disk_full_reason(h->cfg->data_dir, why, sizeof why);
        store_count_refused_full(h->st);
        hub_count_error(&h->metrics, HUB_ERR_STORE_FULL);
        h->evict_now = 1;
        log_error("refused an instance from dicom:%s: %s (%s)", calling_aet, why, msg);
    } else {
        hub_count_error(&h->metrics, HUB_ERR_STORE_FAILED);
        log_error("refused an instance from dicom:%s: %s", calling_aet, msg);
    }
}

/* --- housekeeping ------------------------------------------------------ */

static void on_complete(void *ctx, const store_study *st)
{
    (void)ctx;
    log_info("study complete: %u instances in %u series", st->n_instances, st->n_series);
}

#define RETENTION_PERIOD_MS (10 * 60 * 1000)
#define SPACE_SHORT_RATIO   0.90 /* map use above which retention runs every second */

static bool space_short(hub *h)
{
    store_stats ss;
    return store_get_stats(h->st, &ss) == 0 && ss.map_size &&
           (double)ss.map_used / (double)ss.map_size > SPACE_SHORT_RATIO;
}

static void housekeeping(hub *h)
{
    int64_t t = now_ms();
    int n = store_sweep_complete(h->st, t, (int64_t)h->cfg->stable_seconds * 1000, on_complete, h);
    if (n < 0)
        log_error("completeness sweep failed: %s", strerror(-n));
    int64_t mono = clock_mono_ms();
    if (h->cfg->retain_days >= 0 && (h->evict_now || mono >= h->next_retention_ms || space_short(h))) {
        /* A pass reads every study record (0.4 s at 400,000 studies): every
         * second only while space is short or a batch left more to evict;
         * otherwise every RETENTION_PERIOD_MS (retention is counted in days). */
        static const int batch = 64;
        int64_t older = t - (int64_t)h->cfg->retain_days * 86400000;
        int ev = store_evict(h->st, older, batch, t);
        h->next_retention_ms = ev >= batch ? mono : mono + RETENTION_PERIOD_MS;
        if (ev > 0)
            log_info("retention: evicted %d studies older than %d days", ev, h->cfg->retain_days);
        if (h->evict_now && ev <= 0)
            log_error("storage full and nothing can be evicted: only signed studies older than %d days are "
                      "(unread studies are always kept); free space or raise --map-size", h->cfg->retain_days);
    } else if (h->evict_now) {
        log_error("storage full: no --retain-days configured; free space or raise --map-size");
    }
    h->evict_now = 0;
    if (mono >= h->next_trust_ms) {
        trust_watch_check(&h->trust, atomic_load(&h->verifier), &h->metrics, false);
        h->next_trust_ms = mono + 60000;
    }
    if (mono >= h->next_outbox_ms) {
        store_outbox_summary(h->st, untaken_alerts, h);
        int64_t every = (int64_t)h->cfg->alert_warn_seconds * 1000;
        h->next_outbox_ms = mono + (every < 10000 ? every : 10000);
    }
}

/* Leftover partial receptions were never acknowledged: remove them. */
static void clean_spool(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    char p[4400];
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        unlink(p);
    }
    closedir(d);
}

int serve_run(const serve_config *cfg)
{
    hub h = {.cfg = cfg};
    h.metrics.started_ms = now_ms();
    log_set_role("serve");
    sigset_t sigs; /* taken by the main loop only: blocked before the store's threads start */
    main_signals_block(&sigs);
    char err[512];
    /* The certificate first: a wrong file stops the hub before it takes
     * any data. */
    pki_tls_server tls = {0};
    if (!cfg->tls_cert != !cfg->tls_key) {
        log_error("HTTP API: tls-cert and tls-key go together (%s is missing)", cfg->tls_cert ? "tls-key" : "tls-cert");
        return 1;
    }
    if (cfg->tls_cert) {
        time_t now = time(NULL);
        if (pki_tls_server_load("tls", cfg->tls_cert, cfg->tls_key, now, &tls, err, sizeof err) < 0) {
            log_error("HTTP API: %s", err);
            return 1;
        }
        atomic_store(&h.metrics.tls_not_after, tls.not_after);
        if (tls.not_after - (int64_t)now < TLS_RENEW_WARN_DAYS * 86400)
            log_warn("HTTP API: tls-cert %s expires in %lld days: renew it, then restart the hub", cfg->tls_cert,
                     (long long)((tls.not_after - (int64_t)now) / 86400));
    }
    int64_t dicom_tls_end = 0;
    if (dimse_tls_check(cfg->dicom_tls_cert, cfg->dicom_tls_key, cfg->dicom_tls_ca, &dicom_tls_end, err,
                        sizeof err) < 0) {
        log_error("DICOM listener: %s", err);
        pki_tls_server_free(&tls);
        return 1;
    }
    atomic_store(&h.metrics.dicom_tls_not_after, dicom_tls_end);
    wl_config wc = {.lease_ms = (int64_t)cfg->lease_seconds * 1000};
    store_config sc = {.dir = cfg->data_dir, .map_size = cfg->map_size, .runway_bytes = cfg->runway_bytes,
                       .worklist = &wc,
                       .on_tasks = on_tasks, .on_tasks_ctx = &h};
    int rc = store_open(&sc, &h.st, err, sizeof err);
    if (rc < 0) {
        log_error("%s", err);
        pki_tls_server_free(&tls);
        return 1;
    }
    snprintf(h.spool, sizeof h.spool, "%s/spool", cfg->data_dir);
    mkdir(h.spool, 0700);
    clean_spool(h.spool);

    dimse_config dc = {.bind_addr = cfg->bind, .port = cfg->dicom_port, .aet = cfg->aet,
                       .spool_dir = h.spool, .max_assocs = cfg->max_assocs,
                       .mem_instance_max = SERVE_DICOM_MEM_INSTANCE, .mem_budget = SERVE_DICOM_MEM_BUDGET,
                       .digest_dataset = 1, .early_bytes = STORE_CHUNK, .early = on_early,
                       .early_end = on_early_end,
                       .accept = on_associate, .store = on_store, .log = on_dimse_log,
                       .spool_failed = on_spool_failed, .ctx = &h,
                       .tls_cert = cfg->dicom_tls_cert, .tls_key = cfg->dicom_tls_key, .tls_ca = cfg->dicom_tls_ca};
    if ((rc = dimse_scp_start(&dc, &h.scp, err, sizeof err)) < 0) {
        log_error("DICOM listener: %s", err);
        goto out;
    }
    /* ZeroMQ: keys, allow-list and the ZAP handler before any CURVE socket binds. */
    h.zctx = zmq_ctx_new();
    h.allow = allowlist_new();
    if (keys_load_or_create(cfg->keys_dir, "hub", &h.kp, err, sizeof err) < 0 ||
        allowlist_load(h.allow, cfg->keys_dir, err, sizeof err) < 0) {
        log_error("keys: %s", err);
        rc = -1;
        goto out;
    }
    if ((rc = zap_start(h.zctx, h.allow, on_refused_key, &h, &h.zap)) < 0) {
        log_error("cannot start the ZeroMQ authentication handler: %s", zmq_strerror(-rc));
        goto out;
    }
    char incoming[4200];
    snprintf(incoming, sizeof incoming, "%s/incoming", cfg->data_dir);
    h.handshakes = handshake_watch_new(h.zctx, &h.metrics, h.st);
    link_hub_config lc = {.zctx = h.zctx, .bind = cfg->bind, .port = cfg->edge_port, .secret_key = h.kp.sec,
                          .st = h.st, .incoming_dir = incoming, .metrics = &h.metrics, .handshakes = h.handshakes,
                          .allow = h.allow};
    if ((rc = link_hub_start(&lc, &h.link, err, sizeof err)) < 0) {
        log_error("edge link: %s", err);
        goto out;
    }
    h.profiles = readers_new();
    int nr = readers_load(h.profiles, cfg->readers_file, err, sizeof err);
    atomic_store(&h.metrics.reader_profiles, nr < 0 ? -1 : nr);
    if (nr == -ENOENT)
        log_warn("no reader profiles (%s): readers cannot take tasks until it exists (SIGHUP reloads)", err);
    else if (nr < 0) /* still serving: the clinics' studies keep arriving while the file is fixed */
        log_error("reader profiles not loaded: %s: readers cannot take tasks until it is fixed (SIGHUP reloads)",
                  err);
    char trust_dir[4200];
    snprintf(trust_dir, sizeof trust_dir, "%s/trust", cfg->keys_dir);
    mkdir(trust_dir, 0755);
    report_verifier_config vc = {.trust_dir = trust_dir, .stored_digest = stored_digest, .stored_digest_ctx = &h};
    report_verifier *verifier = NULL;
    if (report_verifier_new(&vc, &verifier, err, sizeof err) == 0)
        atomic_store(&h.verifier, verifier);
    else
        log_warn("trust list: %s (signed reports are refused until %s holds the consortium's CA certificates)", err,
                 trust_dir);
    h.trust.trust_dir = trust_dir;
    trust_watch_check(&h.trust, verifier, &h.metrics, true);
    h.next_trust_ms = clock_mono_ms() + 60000;
    reader_link_config rc_cfg = {.zctx = h.zctx, .bind = cfg->bind, .port = cfg->reader_port,
                                 .secret_key = h.kp.sec, .st = h.st, .profiles = h.profiles,
                                 .metrics = &h.metrics, .on_report = on_report, .on_report_ctx = &h,
                                 .verify = verify_or_refuse, .verify_ctx = &h, .priors = reader_priors,
                                 .prior_report = reader_prior, .peer_fetch = reader_peer_fetch, .lookup_ctx = &h, .handshakes = h.handshakes,
                                 .audit = reader_audit_queued, .audit_ctx = &h, .allow = h.allow};
    if ((rc = reader_link_start(&rc_cfg, &h.rlink, err, sizeof err)) < 0) {
        log_error("reader link: %s", err);
        goto out;
    }
    /* Lookups: facility keys, recognition rules, the other hubs. */
    int backfilled = store_index_existing_reports(h.st);
    if (backfilled > 0)
        log_info("indexed %d signed reports stored before lookups existed", backfilled);
    else if (backfilled < 0)
        log_error("indexing earlier signed reports failed: %s", strerror(-backfilled));
    h.apikeys = apikeys_new();
    int nk = apikeys_load(h.apikeys, cfg->keys_dir, err, sizeof err);
    if (nk < 0) {
        log_error("API keys: %s", err);
        rc = -1;
        goto out;
    }
    if (nk == 0)
        log_warn("no facility API keys (dxhub keygen --api-key FACILITY --keys %s): lookups are refused and patient "
                 "data is served to 127.0.0.1 only",
                 cfg->keys_dir);
    recog_config *rcfg = NULL;
    if (recog_config_load(cfg->recognition, &rcfg, err, sizeof err) < 0) {
        log_error("recognition rules: %s", err);
        rc = -1;
        goto out;
    }
    recog_env re = {.st = h.st, .verifier = &h.verifier, .has_edge = has_edge, .has_edge_ctx = &h};
    if ((rc = recog_new(&re, rcfg, &h.recog)) < 0) {
        log_error("recognition: out of memory");
        goto out;
    }
    peer_config pc = {.zctx = h.zctx, .bind = cfg->bind, .port = cfg->peer_port, .public_key = h.kp.pub,
                      .secret_key = h.kp.sec, .peers_file = cfg->peers_file, .self_name = cfg->name,
                      .timeout_ms = cfg->peer_timeout_ms,
                      .st = h.st, .metrics = &h.metrics,
                      .handlers = {.lookup = peer_lookup, .report = peer_report, .preview = peer_preview,
                                   .audit = peer_audit, .ctx = &h},
                      .handshakes = h.handshakes, .allow = h.allow};
    if ((rc = peers_start(&pc, &h.peers, err, sizeof err)) < 0) {
        log_error("peer link: %s", err);
        goto out;
    }
    if (handshake_watch_run(h.handshakes) < 0)
        log_warn("failed handshakes on the ZeroMQ ports will not be logged: cannot start their thread");
    const char *http_bind = cfg->http_bind ? cfg->http_bind : cfg->bind;
    api_config ac = {.bind = http_bind, .port = cfg->http_port, .threads = cfg->http_threads,
                     .max_per_address = cfg->http_max_per_address, .dicomweb_origins = cfg->dicomweb_origins,
                     .st = h.st, .metrics = &h.metrics,
                     .keys = h.apikeys, .recog = h.recog, .peers = h.peers, .name = cfg->name,
                     .tls_cert_pem = tls.cert_pem, .tls_key_pem = tls.key_pem, .clinics = clinics_known,
                     .clinics_ctx = &h};
    if ((rc = api_start(&ac, &h.api, err, sizeof err)) < 0) {
        log_error("HTTP API: %s", err);
        goto out;
    }
    atomic_store(&h.api_live, h.api);
    char peer_ep[96];
    snprintf(peer_ep, sizeof peer_ep, "tcp://%s:%u", cfg->bind, peers_port(h.peers));
    const char *scheme = tls.cert_pem ? "https" : "http";
    bool v6 = strchr(http_bind, ':') != NULL;
    printf("dxhub serve: ready dicom=%s:%u aet=%s http=%s:%u edge=tcp://%s:%u readers=tcp://%s:%u peers=%s "
           "data=%s key=%s/hub.pub name=%s api=%s://%s%s%s:%u/\n",
           cfg->bind, dimse_scp_port(h.scp), cfg->aet, http_bind, api_port(h.api), cfg->bind, link_hub_port(h.link),
           cfg->bind, reader_link_port(h.rlink), peer_ep, cfg->data_dir, cfg->keys_dir, cfg->name, scheme,
           v6 ? "[" : "", http_bind, v6 ? "]" : "", api_port(h.api));
    fflush(stdout);
    log_info("ready: DICOM %s:%u (AE %s), %s %s:%u, stable %d s", cfg->bind, dimse_scp_port(h.scp), cfg->aet,
             tls.cert_pem ? "HTTPS" : "HTTP", http_bind, api_port(h.api), cfg->stable_seconds);
    int period_ms = cfg->stable_seconds > 4 ? 1000 : 250;
    for (;;) {
        struct timespec ts = {period_ms / 1000, (long)(period_ms % 1000) * 1000000};
        int sig = sigtimedwait(&sigs, NULL, &ts);
        if (sig == SIGINT || sig == SIGTERM) {
            log_info("stopping (signal %d)", sig);
            break;
        }
        if (sig == SIGHUP) {
            int n = log_reopen(err, sizeof err);
            if (n < 0)
                log_error("SIGHUP: log file not reopened (still writing the old one): %s", err);
            else if (n == 0)
                log_info("SIGHUP: log file reopened");
            n = allowlist_load(h.allow, cfg->keys_dir, err, sizeof err);
            if (n < 0)
                reload_failed(&h, "allow-list", err);
            else
                log_info("SIGHUP: allow-list reloaded (%d keys)", n);
            n = readers_load(h.profiles, cfg->readers_file, err, sizeof err);
            if (n < 0) {
                reload_failed(&h, "reader profiles", err);
            } else {
                atomic_store(&h.metrics.reader_profiles, n);
                log_info("SIGHUP: %d reader profiles loaded", n);
            }
            reload_trust(&h, &vc);
            reload_lookup(&h);
            reader_link_kick(h.rlink);
        }
        housekeeping(&h);
    }
    rc = 0;
out:
    /* Reverse order: stop taking data, then close the store. */
    dimse_scp_stop(&h.scp);
    link_hub_stop(&h.link);
    reader_link_stop(&h.rlink);
    peers_quiesce(h.peers); /* its thread answers through the API */
    atomic_store(&h.api_live, NULL);
    api_stop(&h.api);
    peers_stop(&h.peers); /* after the API: its requests ask other hubs */
    zap_stop(&h.zap);
    handshake_watch_stop(&h.handshakes);
    if (h.zctx)
        zmq_ctx_term(h.zctx);
    allowlist_free(&h.allow);
    readers_free(&h.profiles);
    recog_free(&h.recog);
    apikeys_free(&h.apikeys);
    pki_tls_server_free(&tls);
    report_verifier *v = atomic_exchange(&h.verifier, NULL);
    report_verifier_free(&v);
    store_close(&h.st);
    return rc < 0 ? 1 : 0;
}
