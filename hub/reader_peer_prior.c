/* reader_peer_prior.c — a peer hub's exam compared through this hub
 * (reader_queries.h: STUDY and FETCH with "hub").
 *
 * A patient referred here from the county hospital brings an exam that
 * hospital's hub holds and its report recognises; the reader compares
 * today's study with those images.  The exam is named by its report at
 * that hub: the report says whose it is (the task's patient, or refused)
 * and signs the SHA-256 of each instance's data set, so the listing is
 * the report's and every instance the workstation fetches is checked
 * against what was signed.  Only instances that report lists are read,
 * through the peer link (peers_fetch); each read is on this hub's trail as
 * the reader's, and on the peer's as this hub's.
 *
 * The report is asked once and its list kept PEER_PRIOR_TTL_MS for the
 * FETCHes that follow (a CT is hundreds of them). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hub/b64.h"
#include "hub/clock.h"
#include "hub/reader_queries.h"

#define PEER_PRIOR_KEEP   32
#define PEER_PRIOR_TTL_MS (10 * 60 * 1000)
#define PEER_FETCH_CHUNK  (1u << 20) /* PEER_FETCH_MAX */

typedef struct kept_prior {
    char    key[300];   /* reader, task, hub, report */
    char    study[STORE_UID_MAX];
    json_t *digests;    /* {sop: hex SHA-256} as the report signed them (owned; read under kept_mu) */
    int64_t until_ms;
} kept_prior;

static kept_prior      kept[PEER_PRIOR_KEEP];
static pthread_mutex_t kept_mu = PTHREAD_MUTEX_INITIALIZER;

/* A copy of what was kept under key, or NULL. */
static json_t *kept_get(const char *key, char study[STORE_UID_MAX])
{
    json_t *copy = NULL;
    int64_t now = clock_mono_ms();
    pthread_mutex_lock(&kept_mu);
    for (size_t i = 0; i < PEER_PRIOR_KEEP && !copy; i++)
        if (kept[i].digests && now < kept[i].until_ms && !strcmp(kept[i].key, key)) {
            copy = json_deep_copy(kept[i].digests);
            snprintf(study, STORE_UID_MAX, "%s", kept[i].study);
        }
    pthread_mutex_unlock(&kept_mu);
    return copy;
}

static void kept_put(const char *key, const char *study, const json_t *digests)
{
    json_t *copy = json_deep_copy(digests);
    if (!copy)
        return;
    int64_t now = clock_mono_ms();
    pthread_mutex_lock(&kept_mu);
    size_t slot = 0;
    for (size_t i = 0; i < PEER_PRIOR_KEEP; i++) {
        if (!strcmp(kept[i].key, key) || !kept[i].digests || now >= kept[i].until_ms) {
            slot = i;
            break;
        }
        if (kept[i].until_ms < kept[slot].until_ms)
            slot = i;
    }
    json_decref(kept[slot].digests);
    snprintf(kept[slot].key, sizeof kept[slot].key, "%s", key);
    snprintf(kept[slot].study, sizeof kept[slot].study, "%s", study);
    kept[slot].digests = copy;
    kept[slot].until_ms = now + PEER_PRIOR_TTL_MS;
    pthread_mutex_unlock(&kept_mu);
}

/* The signed document inside a report answer ({report_b64, exam, ...}):
 * whose exam, of which study, and its instances' digests. */
static json_t *signed_document(const char *answer, size_t len, char pid[STORE_UID_MAX])
{
    json_t *j = json_loadb(answer, len, 0, NULL);
    const char *b64 = json_string_value(json_object_get(j, "report_b64"));
    uint8_t *doc = NULL;
    size_t n = 0;
    json_t *d = NULL;
    if (b64 && base64_decode(b64, strlen(b64), &doc, &n) == 0)
        d = json_loadb((const char *)doc, n, 0, NULL);
    free(doc);
    const char *their = json_string_value(json_object_get(json_object_get(j, "exam"), "patient_id"));
    snprintf(pid, STORE_UID_MAX, "%s", their ? their : "");
    json_decref(j);
    return d;
}

/* The peer's prior m names, checked: its study UID and its instances'
 * digests (a new reference), or NULL refused into a. */
static json_t *peer_prior(const reader_link_config *cfg, const proto_msg *m, const wl_reader *r, wl_task *t,
                          char study[STORE_UID_MAX], reader_answer *a)
{
    char pid[STORE_UID_MAX], who[96], key[300];
    if (reader_own_task(cfg, m, r, t, a) < 0 || reader_patient_of(cfg, t, pid, a) < 0)
        return NULL;
    const char *hub = proto_str(m, "hub"), *id = proto_str(m, "report_id"), *prior = proto_str(m, "prior");
    if (!reader_name_ok(hub, 63) || !reader_name_ok(id, 60)) {
        reader_refuse(a, "a peer hub's prior needs hub and report_id (letters, digits, '.', '_', '-')");
        return NULL;
    }
    if (!reader_uid_ok(prior)) {
        reader_refuse(a, "prior: not a Study Instance UID");
        return NULL;
    }
    snprintf(key, sizeof key, "%s\n%llu\n%s\n%s", r->id, (unsigned long long)t->id, hub, id);
    json_t *digests = kept_get(key, study);
    if (digests) {
        if (!strcmp(study, prior))
            return digests;
        json_decref(digests);
        reader_refuse(a, "that report is not of that study");
        return NULL;
    }
    if (!cfg->prior_report || !cfg->peer_fetch) {
        reader_lookup_refused(a, -ENOTSUP);
        return NULL;
    }
    snprintf(who, sizeof who, "reader:%s", r->id);
    char *out = NULL, their[STORE_UID_MAX];
    size_t len = 0;
    int rc = cfg->prior_report(cfg->lookup_ctx, hub, id, who, &out, &len);
    if (rc < 0) {
        reader_lookup_refused(a, rc);
        return NULL;
    }
    json_t *doc = signed_document(out, len, their);
    free(out);
    const char *doc_study = json_string_value(json_object_get(doc, "study_uid"));
    json_t *inst = json_object_get(doc, "instances");
    if (!doc || !json_is_object(inst) || !doc_study) {
        json_decref(doc);
        reader_refuse(a, "the peer hub's report carries no signed instance list");
        return NULL;
    }
    if (strcmp(their, pid)) { /* a reader reads no other patient's images this way */
        json_decref(doc);
        reader_audit(cfg, r->id, "prior-refused", t->study_uid, id);
        reader_refuse(a, "that report is not of this task's patient");
        return NULL;
    }
    if (strcmp(doc_study, prior)) {
        json_decref(doc);
        reader_refuse(a, "that report is not of that study");
        return NULL;
    }
    snprintf(study, STORE_UID_MAX, "%s", prior);
    digests = json_incref(inst);
    json_decref(doc);
    kept_put(key, study, digests);
    return digests;
}

/* Is sop one of the instances the report signed, in a form this hub
 * takes: what STUDY lists and FETCH reads (another hub's words, checked
 * as any input). */
static bool signed_instance(json_t *digests, const char *sop)
{
    return reader_uid_ok(sop) && proto_is_hex(json_string_value(json_object_get(digests, sop)), 64);
}

static int by_sop(const void *x, const void *y) { return strcmp(*(const char *const *)x, *(const char *const *)y); }

int reader_peer_study(const reader_link_config *cfg, const proto_msg *m, const wl_reader *r, reader_answer *a)
{
    wl_task t;
    char study[STORE_UID_MAX];
    json_t *digests = peer_prior(cfg, m, r, &t, study, a);
    if (!digests)
        return -1;
    size_t n = json_object_size(digests), k = 0;
    const char **sops = malloc((n ? n : 1) * sizeof *sops);
    if (!sops) {
        json_decref(digests);
        return reader_refuse(a, "out of memory");
    }
    const char *sop;
    json_t *v;
    json_object_foreach(digests, sop, v)
        if (signed_instance(digests, sop))
            sops[k++] = sop;
    qsort(sops, k, sizeof *sops, by_sop);
    long long off = proto_int(m, "offset", 0);
    size_t from = off < 0 ? 0 : (size_t)off;
    json_t *list = json_array();
    for (size_t i = from; i < k && i < from + READER_STUDY_PAGE; i++) /* size 0: known once fetched (DATA says) */
        json_array_append_new(list, json_pack("{s:s,s:s,s:I,s:s,s:s,s:i}", "sop", sops[i], "series", "", "size",
                                              (json_int_t)0, "digest", json_string_value(json_object_get(digests, sops[i])),
                                              "ts", "", "number", 0));
    free(sops);
    json_decref(digests);
    char detail[160];
    snprintf(detail, sizeof detail, "prior at hub %.63s, %s task %llu", proto_str(m, "hub"),
             json_is_true(json_object_get(m->hdr, "prefetch")) ? "prefetched for" : "compared in",
             (unsigned long long)t.id);
    if (reader_audit(cfg, r->id, "read-study", study, detail) < 0) {
        json_decref(list);
        return reader_refuse(a, READER_AUDIT_WITHHELD);
    }
    a->cmd = "STUDY";
    a->hdr = json_pack("{s:I,s:s,s:I,s:I,s:o}", "task", (json_int_t)t.id, "study", study, "offset",
                       (json_int_t)from, "total", (json_int_t)k, "instances", list);
    return 0;
}

int reader_peer_fetch(const reader_link_config *cfg, const proto_msg *m, const wl_reader *r, reader_answer *a)
{
    wl_task t;
    char study[STORE_UID_MAX];
    json_t *digests = peer_prior(cfg, m, r, &t, study, a);
    if (!digests)
        return -1;
    const char *sop = proto_str(m, "sop");
    bool listed = signed_instance(digests, sop);
    json_decref(digests);
    long long off = proto_int(m, "offset", 0), len = proto_int(m, "length", PEER_FETCH_CHUNK);
    if (!listed || off < 0 || len <= 0)
        return reader_refuse(a, "no such instance in that prior study");
    char who[96], why[200] = "";
    snprintf(who, sizeof who, "reader:%s", r->id);
    size_t want = len > PEER_FETCH_CHUNK ? PEER_FETCH_CHUNK : (size_t)len, got = 0;
    uint64_t total = 0;
    char *buf = malloc(want ? want : 1);
    if (!buf)
        return reader_refuse(a, "out of memory");
    const char *hub = proto_str(m, "hub");
    int rc = cfg->peer_fetch(cfg->lookup_ctx, hub, sop, (uint64_t)off, want, who, buf, &got, &total, why, sizeof why);
    if (rc < 0) {
        free(buf);
        char reason[300];
        snprintf(reason, sizeof reason, "hub %.63s could not send it: %.200s", hub, why[0] ? why : strerror(-rc));
        return reader_refuse(a, reason);
    }
    char detail[200];
    snprintf(detail, sizeof detail, "%.64s at hub %.63s", sop, hub);
    if (off == 0 && reader_audit(cfg, r->id, "read-instance", study, detail) < 0) {
        free(buf);
        return reader_refuse(a, READER_AUDIT_WITHHELD);
    }
    a->cmd = "DATA";
    a->hdr = json_pack("{s:s,s:I,s:I,s:b}", "sop", sop, "offset", (json_int_t)off, "size", (json_int_t)total, "eof",
                       (uint64_t)off + got >= total);
    a->data = buf;
    a->len = got;
    return 0;
}
