/* api_reports.c — cross-facility lookup (检查检验结果互认) on the HTTP API:
 *   GET  /api/v1/reports?PatientID=&since=&type=&scope=
 *   GET  /api/v1/reports/{id}
 *   POST /api/v1/exams/{StudyInstanceUID}/repeat
 *   GET  /api/v1/instances/{uid}/preview.png
 * and the same answers for another hub (api_peer_*), plus the per-facility
 * counters behind /metrics' recognition rate and repeat reasons.
 *
 * A lookup is one range scan of the report index (store_lookup.h); each
 * exam carries the verdict of every recognition rule (recog.h) and links
 * through which the asking facility opens the images.  With scope
 * "consortium" (the default) the other hubs are asked at once and their
 * exams follow ours; a hub that does not answer in time is listed as
 * unreachable and never holds the answer back longer than the timeout. */
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "codecs/codecs.h"
#include "hub/api_private.h"
#include "hub/b64.h"
#include "hub/conf_lines.h"
#include "hub/gen_mix.h"
#include "codecs/banned.h"

#define PREVIEW_MAX ((uint64_t)256 << 20) /* instances larger than this get no preview */
/* An answer without exams is kept no longer than one with them (a new
 * report moves store_report_gen anyway). */
#define REPORT_TRUST_MAX_MS ((int64_t)24 * 3600 * 1000) /* as recog.c's REPORT_RECHECK_MS */

/* ---- counters ------------------------------------------------------- */

typedef struct counter_row {
    char     facility[APIKEY_FACILITY_MAX];
    char     reason[48]; /* "" for the lookup row */
    uint64_t recognised, not_recognised, repeats;
} counter_row;

struct api_counters {
    pthread_mutex_t lock;
    counter_row     rows[API_COUNTER_ROWS];
    size_t          n;
};

api_counters *api_counters_new(void)
{
    api_counters *c = calloc(1, sizeof *c);
    if (c)
        pthread_mutex_init(&c->lock, NULL);
    return c;
}

void api_counters_free(api_counters **c)
{
    if (!c || !*c)
        return;
    pthread_mutex_destroy(&(*c)->lock);
    free(*c);
    *c = NULL;
}

/* The row of (facility, reason), made when missing; NULL when full. */
static counter_row *row_of(api_counters *c, const char *facility, const char *reason)
{
    for (size_t i = 0; i < c->n; i++)
        if (!strcmp(c->rows[i].facility, facility) && !strcmp(c->rows[i].reason, reason))
            return &c->rows[i];
    if (c->n == API_COUNTER_ROWS)
        return NULL;
    counter_row *r = &c->rows[c->n++];
    snprintf(r->facility, sizeof r->facility, "%s", facility);
    snprintf(r->reason, sizeof r->reason, "%s", reason);
    return r;
}

void api_count_lookup(api_counters *c, const char *facility, unsigned recognised, unsigned not_recognised)
{
    pthread_mutex_lock(&c->lock);
    counter_row *r = row_of(c, facility, "");
    if (r) {
        r->recognised += recognised;
        r->not_recognised += not_recognised;
    }
    pthread_mutex_unlock(&c->lock);
}

void api_count_repeat(api_counters *c, const char *facility, const char *reason)
{
    pthread_mutex_lock(&c->lock);
    counter_row *r = row_of(c, facility, reason);
    if (r)
        r->repeats++;
    pthread_mutex_unlock(&c->lock);
}

static int load_one(void *ctx, const char *facility, const char *reason)
{
    api_count_repeat(ctx, facility, reason);
    return 0;
}

void api_counters_load(api_counters *c, store *st)
{
    if (c && st)
        store_repeat_walk(st, load_one, c);
}

void api_render_lookup_metrics(jbuf *b, api_counters *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    jb_puts(b, "# HELP dxhub_lookup_exams_total Exams answered to a facility's lookups, by recognition.\n"
               "# TYPE dxhub_lookup_exams_total counter\n");
    for (size_t i = 0; i < c->n; i++) {
        const counter_row *r = &c->rows[i];
        if (r->reason[0])
            continue;
        jb_printf(b, "dxhub_lookup_exams_total{facility=\"%s\",recognised=\"true\"} %llu\n", r->facility,
                  (unsigned long long)r->recognised);
        jb_printf(b, "dxhub_lookup_exams_total{facility=\"%s\",recognised=\"false\"} %llu\n", r->facility,
                  (unsigned long long)r->not_recognised);
    }
    jb_puts(b, "# HELP dxhub_recognition_rate Share of the exams answered to a facility that were recognised.\n"
               "# TYPE dxhub_recognition_rate gauge\n");
    for (size_t i = 0; i < c->n; i++) {
        const counter_row *r = &c->rows[i];
        uint64_t all = r->recognised + r->not_recognised;
        if (!r->reason[0] && all)
            jb_printf(b, "dxhub_recognition_rate{facility=\"%s\"} %.4f\n", r->facility,
                      (double)r->recognised / (double)all);
    }
    jb_puts(b, "# HELP dxhub_exam_repeats_total Exams a facility's physician chose to repeat, by reason.\n"
               "# TYPE dxhub_exam_repeats_total counter\n");
    for (size_t i = 0; i < c->n; i++) {
        const counter_row *r = &c->rows[i];
        if (r->reason[0])
            jb_printf(b, "dxhub_exam_repeats_total{facility=\"%s\",reason=\"%s\"} %llu\n", r->facility, r->reason,
                      (unsigned long long)r->repeats);
    }
    pthread_mutex_unlock(&c->lock);
}

/* ---- one exam as JSON ------------------------------------------------- */

/* "supersedes": the report an addendum follows (null for a report).  Only
 * an addendum (version > 1) is read for it: the index does not keep it. */
static void render_supersedes(jbuf *b, const store_report_view *v)
{
    json_t *doc = v->ref->report_version > 1 ? json_loadb(v->doc, v->doc_len, 0, NULL) : NULL;
    const char *id = json_string_value(json_object_get(doc, "supersedes"));
    jb_puts(b, "\"supersedes\":");
    if (id)
        jb_str(b, id);
    else
        jb_puts(b, "null");
    json_decref(doc);
}

static void render_exam(jbuf *b, api_server *a, const store_report_view *v, const recog_result *res,
                        const char *prefix, const char *consortium, const char *mark)
{
    const store_report_ref *ref = v->ref;
    jb_puts(b, "{\"hub\":");
    jb_str(b, a->name);
    jb_puts(b, ",\"report_id\":");
    jb_str(b, ref->report_id);
    jb_printf(b, ",\"version\":%u,", (unsigned)ref->report_version);
    render_supersedes(b, v);
    jb_puts(b, ",\"study_uid\":");
    jb_str(b, ref->study_uid);
    jb_puts(b, ",\"patient_id\":");
    jb_str(b, ref->patient_id);
    jb_puts(b, ",\"modality\":");
    jb_str(b, ref->modality);
    jb_puts(b, ",\"exam_type\":");
    jb_str(b, res->exam_type);
    jb_puts(b, ",\"facility\":");
    jb_str(b, res->facility);
    jb_puts(b, ",\"study_date\":");
    jb_str(b, ref->study_date);
    jb_puts(b, ",\"reported\":");
    jb_str(b, res->reported);
    jb_puts(b, ",\"accepted\":");
    jb_time(b, ref->reported_ms);
    jb_puts(b, ",\"reading_facility\":");
    jb_str(b, res->reading_facility);
    jb_puts(b, ",\"signer\":{\"name\":");
    jb_str(b, res->signer);
    jb_puts(b, ",\"reader_id\":");
    jb_str(b, res->reader_id);
    jb_puts(b, ",\"alg\":");
    jb_str(b, res->signer_alg);
    jb_printf(b, "},\"recognition\":{\"recognised\":%s,\"mark\":", res->recognised ? "true" : "false");
    if (res->recognised)
        jb_str(b, mark);
    else
        jb_puts(b, "null");
    jb_puts(b, ",\"scope\":");
    jb_str(b, consortium);
    jb_puts(b, ",\"valid_until\":");
    if (res->valid_until[0])
        jb_str(b, res->valid_until);
    else
        jb_puts(b, "null");
    jb_puts(b, ",\"rules\":[");
    for (int k = 0; k < RECOG_RULES; k++) {
        jb_printf(b, "%s{\"rule\":\"%s\",\"ok\":%s,\"detail\":", k ? "," : "", recog_rule_names[k],
                  res->rule[k].ok ? "true" : "false");
        jb_str(b, res->rule[k].detail);
        jb_put(b, "}", 1);
    }
    jb_puts(b, "],\"failed\":[");
    for (int k = 0, n = 0; k < RECOG_RULES; k++)
        if (!res->rule[k].ok)
            jb_printf(b, "%s\"%s\"", n++ ? "," : "", recog_rule_names[k]);
    jb_puts(b, "]},\"links\":{\"report\":");
    jb_printf(b, "\"%s/reports/%s\"", prefix, ref->report_id); /* ids and UIDs need no escaping */
    jb_puts(b, ",\"instances\":[");
    for (size_t i = 0; i < res->n_inst; i++)
        jb_printf(b, "%s{\"sop\":\"%s\",\"file\":\"%s/instances/%s/file\",\"preview\":\"%s/instances/%s/preview.png\"}",
                  i ? "," : "", res->inst[i].sop, prefix, res->inst[i].sop, prefix, res->inst[i].sop);
    jb_puts(b, "]}}");
}

static void put_jb(void *ctx, const void *p, size_t n) { jb_put(ctx, p, n); }

/* An exam's JSON: the text kept from an earlier answer when nothing it
 * says has changed (recog_memo_*), else written now and kept. */
static void exam_json(jbuf *b, api_server *a, const store_report_view *v, recog_result *res, const char *prefix,
                      const char *consortium, const char *mark)
{
    uint64_t key = res->state;
    for (const char *p = prefix; *p; p++)
        key = (key ^ (unsigned char)*p) * 0x100000001b3ULL;
    if (recog_memo_get(res, key, put_jb, b))
        return;
    size_t start = b->len;
    recog_explain(res);
    render_exam(b, a, v, res, prefix, consortium, mark);
    if (jb_ok(b))
        recog_memo_set(res, key, b->p + start, b->len - start);
}

/* ---- the local part of a lookup --------------------------------------- */

typedef struct local_lookup {
    api_server *a;
    jbuf       *b;
    const char *type, *prefix;
    int64_t     now;
    int64_t     trusted_ms; /* the least recog_result.trusted_ms of the exams */
    unsigned    n, recognised;
    int         err;
    char        consortium[128], mark[32];
} local_lookup;

static int one_exam(void *ctx, store_report_view *v)
{
    local_lookup *l = ctx;
    if (l->type && strcmp(v->ref->modality, l->type))
        return 0;
    recog_result res;
    int rc = recog_evaluate(l->a->recog, v, l->now, &res);
    if (rc < 0) {
        l->err = rc;
        return 1;
    }
    if (l->n++)
        jb_put(l->b, ",", 1);
    exam_json(l->b, l->a, v, &res, l->prefix, l->consortium, l->mark);
    l->recognised += res.recognised;
    if (res.trusted_ms < l->trusted_ms)
        l->trusted_ms = res.trusted_ms;
    recog_result_release(&res);
    return 0;
}

/* Every input of a lookup's answer besides the question, read before its
 * snapshot (api_lookups.c says why each). */
static uint64_t answer_gen(api_server *a, int64_t now_ms)
{
    uint64_t g = gen_fold(0, store_instance_gen(a->st));
    g = gen_fold(g, recog_generation(a->recog));
    return gen_fold(g, (uint64_t)(now_ms / 86400000)); /* the day: validity */
}

/* The local exams of patient as a JSON array's elements, shared (a new
 * reference): the answer kept from an earlier lookup of the same question
 * while nothing it depends on changed, else made now and kept.  NULL with
 * *rc negative (-ENOMEM when the text could not be made). */
static api_body *local_exams_body(api_server *a, const char *patient, int64_t since, const char *type,
                                  const char *prefix, unsigned *n, unsigned *recognised, int *rc)
{
    jbuf b = {0};
    local_lookup l = {.a = a, .b = &b, .type = type, .prefix = prefix, .now = api_now_ms(),
                      .trusted_ms = REPORT_TRUST_MAX_MS};
    int64_t t0 = api_lcache_now_ms();
    uint64_t gen = answer_gen(a, l.now), snap = store_last_commit(a->st);
    char key[192];
    int kl = snprintf(key, sizeof key, "%zu:%s|%lld|%s|%s", strlen(patient), patient, (long long)since,
                      type ? type : "", prefix); /* the length first: a patient ID may hold '|' */
    bool keyed = kl > 0 && (size_t)kl < sizeof key;
    api_body *body = keyed ? api_lcache_get(a->lcache, key, gen, store_report_txn(a->st), n, recognised) : NULL;
    if (body) {
        *rc = 0;
        return body;
    }
    recog_names(a->recog, l.consortium, sizeof l.consortium, l.mark, sizeof l.mark);
    *rc = store_reports_by_patient(a->st, patient, since, one_exam, &l);
    *n = l.n;
    *recognised = l.recognised;
    *rc = *rc < 0 ? *rc : l.err < 0 ? l.err : 0;
    jb_fit(&b); /* kept: the cache's bound counts these bytes */
    if (*rc == 0 && (!jb_ok(&b) || !(body = api_body_new(&b))))
        *rc = -ENOMEM;
    if (*rc < 0) {
        jb_release(&b);
        return NULL;
    }
    if (keyed)
        api_lcache_put(a->lcache, key, gen, snap, t0 + l.trusted_ms, body, l.n, l.recognised);
    return body;
}

/* The same appended to b (peers' and readers' answers). */
int local_exams(api_server *a, const char *patient, int64_t since, const char *type, const char *prefix,
                       jbuf *b, unsigned *n, unsigned *recognised)
{
    int rc;
    api_body *body = local_exams_body(a, patient, since, type, prefix, n, recognised, &rc);
    if (!body)
        return rc;
    size_t len;
    const char *p = api_body_data(body, &len);
    jb_put(b, p, len);
    api_body_unref(body);
    return 0;
}

/* ---- query parameters ------------------------------------------------- */

static bool valid_text(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (!n || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == '\\')
            return false;
    return true;
}

/* "YYYYMMDD" or "YYYY-MM-DD" → ms at 00:00 UTC; -1 when malformed. */
static int64_t parse_since(const char *s)
{
    int y, m, d;
    char tail;
    size_t n = strlen(s);
    int k = n == 8 ? sscanf(s, "%4d%2d%2d%c", &y, &m, &d, &tail) : n == 10 ? sscanf(s, "%4d-%2d-%2d%c", &y, &m, &d, &tail) : 0;
    if (k != 3 || strspn(s, "0123456789-") != n || y < 1900 || m < 1 || m > 12 || d < 1 || d > 31)
        return -1;
    struct tm tm = {.tm_year = y - 1900, .tm_mon = m - 1, .tm_mday = d};
    return (int64_t)timegm(&tm) * 1000;
}

typedef struct lookup_q {
    const char *patient, *type;
    int64_t     since;
    bool        local_only;
} lookup_q;

static int parse_lookup(api_req *r, const api_params *p, lookup_q *q)
{
    memset(q, 0, sizeof *q);
    q->patient = p->v[API_P_PATIENT_ID];
    if (!q->patient || !valid_text(q->patient, 64))
        return api_send_bad_param(r, "PatientID", "required: the patient's ID, 1 to 64 characters");
    if (p->v[API_P_SINCE] && (q->since = parse_since(p->v[API_P_SINCE])) < 0)
        return api_send_bad_param(r, "since", "a date: YYYYMMDD or YYYY-MM-DD");
    q->type = p->v[API_P_TYPE];
    if (q->type && !conf_name_ok(q->type, 16))
        return api_send_bad_param(r, "type", "a modality: CR, DX, CT, MR, US, ECG, ...");
    const char *scope = p->v[API_P_SCOPE];
    if (scope && strcmp(scope, "local") && strcmp(scope, "consortium"))
        return api_send_bad_param(r, "scope", "local (this hub) or consortium (and the other hubs; the default)");
    q->local_only = scope && !strcmp(scope, "local");
    return 0;
}

/* ---- GET /api/v1/reports ---------------------------------------------- */

/* The exams of one peer's answer appended to b; counts them. */
void splice_peer(jbuf *b, peer_answer *pa, unsigned *n, unsigned *recognised, unsigned *got)
{
    json_error_t je;
    json_t *root = json_loadb(pa->body, pa->len, 0, &je);
    json_t *exams = json_object_get(root, "exams");
    if (!json_is_array(exams)) {
        pa->status = -EPROTO;
        snprintf(pa->error, sizeof pa->error, "the hub's answer is not a lookup answer");
        json_decref(root);
        return;
    }
    size_t i;
    json_t *e;
    json_array_foreach(exams, i, e) {
        char *text = json_dumps(e, JSON_COMPACT);
        if (!text)
            continue;
        if ((*n)++)
            jb_put(b, ",", 1);
        jb_puts(b, text);
        free(text);
        (*got)++;
        if (json_is_true(json_object_get(json_object_get(e, "recognition"), "recognised")))
            (*recognised)++;
    }
    json_decref(root);
}

int api_h_reports(api_req *r, const api_params *p)
{
    api_server *a = r->a;
    if (!a->recog)
        return api_send_error(r, MHD_HTTP_NOT_FOUND, "lookups are not configured on this hub");
    lookup_q q;
    int rc = parse_lookup(r, p, &q);
    if (rc)
        return rc;
    /* Ask the other hubs first: they work while we evaluate ours. */
    peer_answer *pa = NULL;
    size_t npa = 0;
    if (!q.local_only && a->peers && peers_count(a->peers)) {
        peer_lookup_q pq = {.patient_id = q.patient, .type = q.type, .since_ms = q.since, .asking = r->facility};
        peers_lookup_all(a->peers, &pq, &pa, &npa);
    }
    /* The local exams are shared with the cache and copied once, into the
     * answer; the peers' exams (each after a comma when one precedes it)
     * follow them in ex. */
    jbuf ex = {0};
    unsigned n = 0, recognised = 0;
    api_body *local = local_exams_body(a, q.patient, q.since, q.type, "/api/v1", &n, &recognised, &rc);
    if (!local) {
        peer_answers_free(pa, npa);
        if (rc == -ENOMEM)
            return MHD_NO;
        return api_send_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "the store cannot be read");
    }
    unsigned local_n = n;
    jbuf peers_json = {0};
    char peer_detail[160] = "";
    size_t pdl = 0;
    for (size_t i = 0; i < npa; i++) {
        unsigned got = 0;
        if (pa[i].status == 0)
            splice_peer(&ex, &pa[i], &n, &recognised, &got);
        jb_puts(&peers_json, i ? ",{\"hub\":" : "{\"hub\":");
        jb_str(&peers_json, pa[i].name);
        if (pa[i].status == 0) {
            jb_printf(&peers_json, ",\"status\":\"ok\",\"exams\":%u}", got);
        } else {
            jb_printf(&peers_json, ",\"status\":\"%s\",\"error\":",
                      pa[i].status == -ETIMEDOUT ? "unreachable" : "error");
            jb_str(&peers_json, pa[i].error);
            jb_put(&peers_json, "}", 1);
        }
        if (pdl + 1 < sizeof peer_detail) {
            int k = snprintf(peer_detail + pdl, sizeof peer_detail - pdl, " %s:%s", pa[i].name,
                             pa[i].status == 0 ? "ok" : pa[i].status == -ETIMEDOUT ? "unreachable" : "error");
            pdl = k > 0 ? pdl + (size_t)k : pdl;
        }
    }
    peer_answers_free(pa, npa);
    char detail[320];
    snprintf(detail, sizeof detail, "PatientID=%s since=%s type=%s exams=%u recognised=%u local=%u%s", q.patient,
             p->v[API_P_SINCE] ? p->v[API_P_SINCE] : "-", q.type ? q.type : "-", n, recognised, local_n, peer_detail);
    if (api_req_audit(r, "lookup", "", detail) < 0) {
        jb_release(&peers_json);
        api_body_unref(local);
        return api_send_audit_failed(r, &ex);
    }
    api_count_lookup(a->counters, r->facility, recognised, n - recognised);
    char consortium[128], mark[32];
    recog_names(a->recog, consortium, sizeof consortium, mark, sizeof mark);
    jbuf head = {0}, tail = {0};
    jb_puts(&head, "{\"PatientID\":");
    jb_str(&head, q.patient);
    jb_puts(&head, ",\"hub\":");
    jb_str(&head, a->name);
    jb_puts(&head, ",\"consortium\":");
    jb_str(&head, consortium);
    jb_puts(&head, q.local_only ? ",\"scope\":\"local\",\"total\":" : ",\"scope\":\"consortium\",\"total\":");
    jb_uint(&head, n);
    jb_puts(&head, ",\"recognised\":");
    jb_uint(&head, recognised);
    jb_puts(&head, ",\"exams\":[");
    jb_reserve(&tail, ex.len + peers_json.len + 16);
    jb_put(&tail, ex.p, ex.len);
    jb_puts(&tail, "],\"peers\":[");
    jb_put(&tail, peers_json.p, peers_json.len);
    jb_puts(&tail, "]}");
    bool ok = jb_ok(&ex) && jb_ok(&peers_json) && jb_ok(&head) && jb_ok(&tail);
    jb_release(&ex);
    jb_release(&peers_json);
    /* gzip when the client takes it: the local exams are deflated once
     * with the kept answer, a 13 KB answer goes out as ~1 KB */
    bool gzip = api_accepts_gzip(MHD_lookup_connection_value(r->c, MHD_HEADER_KIND,
                                                             MHD_HTTP_HEADER_ACCEPT_ENCODING));
    jbuf b = {0};
    if (ok && gzip) {
        ok = api_gzip_answer(&b, &head, local, &tail) == 0;
    } else if (ok) {
        size_t local_len;
        const char *local_text = api_body_data(local, &local_len);
        jb_reserve(&b, head.len + local_len + tail.len); /* the answer in one allocation */
        jb_put(&b, head.p, head.len);
        jb_put(&b, local_text, local_len);
        jb_put(&b, tail.p, tail.len);
    }
    jb_release(&head);
    jb_release(&tail);
    api_body_unref(local);
    if (!ok || !jb_ok(&b)) {
        jb_release(&b);
        return MHD_NO;
    }
    size_t len;
    char *text = jb_detach(&b, &len);
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_VARY, MHD_HTTP_HEADER_ACCEPT_ENCODING);
    if (gzip)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_ENCODING, "gzip");
    return api_queue(r, MHD_HTTP_OK, resp, "application/json; charset=utf-8");
}

/* ---- GET /api/v1/reports/{id} ----------------------------------------- */

static bool valid_report_id(const char *s)
{
    return conf_name_ok(s, STORE_REPORT_ID_MAX - 1);
}

typedef struct one_report {
    api_server *a;
    jbuf       *b;
    const char *prefix;
    char        study[STORE_UID_MAX];
    int         err;
} one_report;

static int report_json(void *ctx, store_report_view *v)
{
    one_report *o = ctx;
    char consortium[128], mark[32];
    recog_names(o->a->recog, consortium, sizeof consortium, mark, sizeof mark);
    recog_result res;
    int rc = recog_evaluate(o->a->recog, v, api_now_ms(), &res);
    if (rc < 0) {
        o->err = rc;
        return 1;
    }
    snprintf(o->study, sizeof o->study, "%s", v->ref->study_uid);
    char *doc = base64_encode(v->doc, v->doc_len);
    char *sig = base64_encode(v->sig, v->sig_len);
    jbuf *b = o->b;
    jb_puts(b, "{\"report_id\":");
    jb_str(b, v->ref->report_id);
    jb_puts(b, ",\"report_b64\":");
    jb_str(b, doc ? doc : "");
    jb_puts(b, ",\"signature_b64\":");
    jb_str(b, sig ? sig : "");
    jb_puts(b, ",\"chain_pem\":");
    jb_strn(b, v->chain, v->chain_len);
    jb_puts(b, ",\"exam\":");
    exam_json(b, o->a, v, &res, o->prefix, consortium, mark);
    jb_put(b, "}", 1);
    if (!doc || !sig)
        b->failed = true;
    free(doc);
    free(sig);
    recog_result_release(&res);
    return 0;
}

/* 0 with the report's JSON in b; -ENOENT; another negative code. */
int report_answer(api_server *a, const char *id, const char *prefix, jbuf *b, char study[STORE_UID_MAX])
{
    one_report o = {.a = a, .b = b, .prefix = prefix};
    int rc = store_report_by_id(a->st, id, report_json, &o);
    snprintf(study, STORE_UID_MAX, "%s", o.study);
    return rc < 0 ? rc : o.err;
}

int api_h_report(api_req *r, const api_params *p)
{
    (void)p;
    if (!r->a->recog)
        return api_send_error(r, MHD_HTTP_NOT_FOUND, "lookups are not configured on this hub");
    if (!valid_report_id(r->arg))
        return api_send_bad_param(r, "report", "a report id: letters, digits, '.', '_', '-'");
    jbuf b = {0};
    char study[STORE_UID_MAX];
    int rc = report_answer(r->a, r->arg, "/api/v1", &b, study);
    if (rc == -ENOENT) {
        jb_release(&b);
        if (api_req_audit(r, "read-report", "", r->arg) < 0)
            return api_send_audit_failed(r, NULL);
        return api_send_error(r, MHD_HTTP_NOT_FOUND, "no such report");
    }
    if (rc < 0) {
        jb_release(&b);
        return api_send_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "the store cannot be read");
    }
    if (api_req_audit(r, "read-report", study, r->arg) < 0)
        return api_send_audit_failed(r, &b);
    return api_send_json(r, MHD_HTTP_OK, &b);
}

/* ---- POST /api/v1/exams/{uid}/repeat ---------------------------------- */

int api_h_repeat(api_req *r, const api_params *p)
{
    (void)p;
    if (!api_valid_uid(r->arg))
        return api_send_bad_param(r, "StudyInstanceUID", "a UID: digits and dots, at most 64");
    json_error_t je;
    json_t *j = json_loadb(r->body ? r->body : "", r->body_len, JSON_REJECT_DUPLICATES, &je);
    const char *reason = json_string_value(json_object_get(j, "reason"));
    const char *physician = json_string_value(json_object_get(j, "physician"));
    json_t *note_j = json_object_get(j, "note");
    const char *note = json_string_value(note_j);
    int rc;
    if (!json_is_object(j))
        rc = api_send_bad_param(r, "body", "a JSON object: {\"reason\": CODE, \"physician\": NAME, \"note\": TEXT}");
    else if (!reason || !conf_name_ok(reason, 40))
        rc = api_send_bad_param(r, "reason", "a short code: letters, digits, '-', e.g. clinical-change, "
                                              "image-quality, not-recognised, patient-request, other");
    else if (!physician || !valid_text(physician, 128))
        rc = api_send_bad_param(r, "physician", "who decided to repeat: 1 to 128 characters");
    else if (note_j && (!note || strlen(note) > 1000))
        rc = api_send_bad_param(r, "note", "text, at most 1000 bytes");
    else {
        store_repeat rep = {.study_uid = r->arg, .facility = r->facility, .physician = physician, .reason = reason,
                            .note = note};
        int64_t now = api_now_ms();
        if (store_repeat_put(r->a->st, &rep, now) < 0) {
            hub_count_error(r->a->metrics, HUB_ERR_STORE_FAILED);
            rc = api_send_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "the repeat could not be recorded durably");
        } else {
            api_count_repeat(r->a->counters, r->facility, reason);
            jbuf b = {0};
            jb_puts(&b, "{\"recorded\":true,\"study_uid\":");
            jb_str(&b, r->arg);
            jb_puts(&b, ",\"facility\":");
            jb_str(&b, r->facility);
            jb_puts(&b, ",\"reason\":");
            jb_str(&b, reason);
            jb_puts(&b, ",\"time\":");
            jb_time(&b, now);
            jb_put(&b, "}", 1);
            rc = api_send_json(r, MHD_HTTP_CREATED, &b);
        }
    }
    json_decref(j);
    return rc;
}

/* ---- previews ---------------------------------------------------------- */

typedef struct mem_sink {
    char  *p;
    size_t len, cap;
} mem_sink;

static int mem_write(void *ctx, const void *p, size_t n)
{
    mem_sink *m = ctx;
    if (m->len + n > m->cap) {
        size_t cap = (m->len + n) * 2;
        char *q = realloc(m->p, cap);
        if (!q)
            return DCM_ENOMEM;
        m->p = q;
        m->cap = cap;
    }
    memcpy(m->p + m->len, p, n);
    m->len += n;
    return 0;
}

/* Frame 1 of a stored instance as PNG (the display pipeline's defaults).
 * 0 with malloc'd *out, -ENOENT, or a negative code with why. */
static int render_preview(store *st, const char *sop, char **out, size_t *len, char study[STORE_UID_MAX], char *why,
                          size_t whylen)
{
    store_instance in;
    int rc = store_get_instance(st, sop, &in);
    if (rc < 0) {
        snprintf(why, whylen, rc == -ENOENT ? "no such instance" : "the store cannot be read");
        return rc;
    }
    snprintf(study, STORE_UID_MAX, "%s", in.study_uid);
    if (in.size > PREVIEW_MAX) {
        snprintf(why, whylen, "instance too large for a preview");
        return -EFBIG;
    }
    uint8_t *buf = malloc(in.size ? in.size : 1);
    if (!buf)
        return -ENOMEM;
    if (store_read_instance_all(st, &in, buf) < 0) {
        free(buf);
        snprintf(why, whylen, "stored bytes unreadable");
        return -EIO;
    }
    dcm_file *f = NULL;
    dcm_err err;
    memset(&err, 0, sizeof err);
    cdc_image img;
    memset(&img, 0, sizeof img);
    cdc_raster ras;
    memset(&ras, 0, sizeof ras);
    cdc_render_opts ro = {0};
    mem_sink m = {0};
    rc = dcm_parse(buf, (size_t)in.size, NULL, &f, &err);
    if (rc == 0)
        rc = cdc_image_init(&img, f, &err);
    if (rc == 0)
        rc = cdc_render_8bit(&img, &ro, &ras, &err);
    if (rc == 0)
        rc = cdc_write_png(&ras, (dcm_sink){mem_write, &m}, &err);
    if (rc < 0) {
        snprintf(why, whylen, "%.60s%s%.120s", rc == DCM_ENOTFOUND ? "no image in this instance" : cdc_strerror(rc),
                 err.msg[0] && rc != DCM_ENOTFOUND ? ": " : "", rc == DCM_ENOTFOUND ? "" : err.msg);
        free(m.p);
        rc = rc == DCM_ENOTFOUND ? -ENODATA : -EINVAL;
    } else {
        *out = m.p;
        *len = m.len;
    }
    cdc_raster_release(&ras);
    cdc_image_release(&img);
    dcm_free(&f);
    free(buf);
    return rc;
}

static void png_free(void *p) { free(p); }

int api_h_preview(api_req *r, const api_params *p)
{
    (void)p;
    if (!api_valid_uid(r->arg))
        return api_send_bad_param(r, "SOPInstanceUID", "a UID: digits and dots, at most 64");
    char *png = NULL, why[200] = "", study[STORE_UID_MAX] = "";
    size_t len = 0;
    int rc = render_preview(r->a->st, r->arg, &png, &len, study, why, sizeof why);
    if (rc == -ENOMEM)
        return MHD_NO;
    if (api_req_audit(r, "read-preview", study, r->arg) < 0) {
        free(png);
        return api_send_audit_failed(r, NULL);
    }
    if (rc < 0)
        return api_send_error(r, rc == -ENOENT ? MHD_HTTP_NOT_FOUND : rc == -EIO ? MHD_HTTP_INTERNAL_SERVER_ERROR
                                                                              : MHD_HTTP_UNPROCESSABLE_CONTENT,
                              why);
    struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback(len, png, png_free);
    if (!resp) {
        free(png);
        return MHD_NO;
    }
    return api_queue(r, MHD_HTTP_OK, resp, "image/png");
}

/* ---- answers for another hub ------------------------------------------ */

/* A request from another hub, audited like an HTTP one. */
int api_peer_audit(void *ctx, const char *who, const char *what, const char *study, const char *detail)
{
    api_server *a = ctx;
    return api_audit(a->auditor, api_now_ms(), who, what, study, detail);
}

#define peer_audit api_peer_audit

int api_peer_lookup(void *ctx, const peer_lookup_q *q, const char *who, char **out, size_t *len)
{
    api_server *a = ctx;
    if (!a->recog || !q->patient_id || !valid_text(q->patient_id, 64) || (q->type && !conf_name_ok(q->type, 16)))
        return -EINVAL;
    jbuf ex = {0};
    unsigned n = 0, recognised = 0;
    int rc = local_exams(a, q->patient_id, q->since_ms, q->type, q->link_prefix ? q->link_prefix : "/api/v1", &ex, &n,
                         &recognised);
    if (rc < 0) {
        jb_release(&ex);
        return rc;
    }
    char detail[320];
    snprintf(detail, sizeof detail, "PatientID=%s for facility %s exams=%u recognised=%u", q->patient_id,
             q->asking && q->asking[0] ? q->asking : "-", n, recognised);
    if (peer_audit(a, who, "lookup", "", detail) < 0) {
        jb_release(&ex);
        return -EAGAIN;
    }
    jbuf b = {0};
    jb_puts(&b, "{\"hub\":");
    jb_str(&b, a->name);
    jb_puts(&b, ",\"exams\":[");
    jb_put(&b, ex.p, ex.len);
    jb_puts(&b, "]}");
    if (!jb_ok(&ex))
        b.failed = true;
    jb_release(&ex);
    if (!jb_ok(&b)) {
        jb_release(&b);
        return -ENOMEM;
    }
    *out = jb_detach(&b, len);
    return 0;
}

int api_peer_report(void *ctx, const char *id, const char *link_prefix, const char *who, char **out, size_t *len)
{
    api_server *a = ctx;
    if (!a->recog || !id || !valid_report_id(id))
        return -EINVAL;
    jbuf b = {0};
    char study[STORE_UID_MAX] = "";
    int rc = report_answer(a, id, link_prefix ? link_prefix : "/api/v1", &b, study);
    if (rc == 0 && !jb_ok(&b))
        rc = -ENOMEM;
    if (peer_audit(a, who, "read-report", study, id) < 0)
        rc = rc ? rc : -EAGAIN;
    if (rc < 0) {
        jb_release(&b);
        return rc;
    }
    *out = jb_detach(&b, len);
    return 0;
}

int api_peer_preview(void *ctx, const char *sop, const char *who, char **out, size_t *len, char *why, size_t whylen)
{
    api_server *a = ctx;
    if (!sop || !api_valid_uid(sop)) {
        snprintf(why, whylen, "not a SOP Instance UID");
        return -EINVAL;
    }
    char study[STORE_UID_MAX] = "";
    int rc = render_preview(a->st, sop, out, len, study, why, whylen);
    if (peer_audit(a, who, "read-preview", study, sop) < 0) {
        if (rc == 0)
            free(*out);
        snprintf(why, whylen, "audit trail cannot be written; data withheld");
        return -EAGAIN;
    }
    return rc;
}
