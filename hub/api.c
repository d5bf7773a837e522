/* api.c — the hub's HTTP API on libmicrohttpd: listening, the route table,
 * the handlers, errors as JSON, and the audit of every access to patient
 * data.  Query parameters are checked by api_query.c; JSON is rendered by
 * api_json.c (studies), api_header.c (instance headers) and api_metrics.c
 * (health, metrics); whole details are kept by api_body.c; bytes are
 * streamed by api_file.c; audit records are written by api_audit.c.
 * See api.h for the routes. */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include "hub/api.h"
#include "hub/api_file.h"
#include "hub/api_private.h"
#include "hub/log.h"
#include "hub/sched_hint.h"
#include "codecs/banned.h"

#define HCACHE_BYTES  ((size_t)64 << 20) /* instance header JSON kept in memory */
#define BCACHE_BYTES  ((size_t)64 << 20) /* whole study details kept in memory */
#define LCACHE_BYTES ((size_t)256 << 20) /* lookup answers: 10,000 patients of 10 exams take ~130 MiB */
#define LISTEN_BACKLOG 1024
/* TLS 1.2 and 1.3 only, GnuTLS's default suites and curves otherwise. */
#define TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

typedef api_req req;

/* ---- responses ------------------------------------------------------ */

#define DICOMWEB_PREFIX "/dicom-web/"

/* The request's Origin when the operator listed it for /dicom-web/
 * (dicomweb-origins), else NULL: the browser then keeps the answer from
 * the page that asked. */
static const char *cors_origin(req *r)
{
    const char *list = r->a->dicomweb_origins;
    if (!list || strncmp(r->url, DICOMWEB_PREFIX, strlen(DICOMWEB_PREFIX)))
        return NULL;
    const char *o = MHD_lookup_connection_value(r->c, MHD_HEADER_KIND, "Origin");
    size_t ol = o ? strlen(o) : 0;
    for (const char *p = list; ol && *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t l = strcspn(p, ", ");
        if (l == ol && !strncmp(p, o, l))
            return o;
        p += l;
    }
    return NULL;
}

int api_queue(req *r, unsigned status, struct MHD_Response *resp, const char *type)
{
    if (!resp)
        return MHD_NO; /* out of memory: libmicrohttpd closes the connection */
    const char *origin = cors_origin(r);
    if (origin) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", origin);
        MHD_add_response_header(resp, "Access-Control-Expose-Headers", "Content-Type, Content-Length");
    }
    if (r->a->dicomweb_origins && !strncmp(r->url, DICOMWEB_PREFIX, strlen(DICOMWEB_PREFIX)))
        MHD_add_response_header(resp, "Vary", "Origin"); /* a cache must not hand one origin's answer to another */
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result ok = MHD_queue_response(r->c, status, resp);
    MHD_destroy_response(resp);
    return ok;
}

int api_send_body(req *r, unsigned status, jbuf *b, const char *type)
{
    if (!jb_ok(b)) {
        jb_release(b);
        return MHD_NO;
    }
    size_t len;
    char *p = jb_detach(b, &len);
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, p ? p : "", p ? MHD_RESPMEM_MUST_FREE
                                                                                   : MHD_RESPMEM_PERSISTENT);
    if (!resp)
        free(p);
    return api_queue(r, status, resp, type);
}

int api_send_json(req *r, unsigned status, jbuf *b)
{
    return api_send_body(r, status, b, "application/json; charset=utf-8");
}

void api_count_error(req *r, unsigned status)
{
    if (status == MHD_HTTP_BAD_REQUEST || status == MHD_HTTP_METHOD_NOT_ALLOWED ||
        status == MHD_HTTP_RANGE_NOT_SATISFIABLE)
        hub_count_error(r->a->metrics, HUB_ERR_HTTP_BAD_REQUEST);
    else if (status == MHD_HTTP_NOT_FOUND)
        hub_count_error(r->a->metrics, HUB_ERR_HTTP_NOT_FOUND);
}

/* {"error":msg,"path":url} */
int api_send_error(req *r, unsigned status, const char *msg)
{
    api_count_error(r, status);
    jbuf b = {0};
    jb_puts(&b, "{\"error\":");
    jb_str(&b, msg);
    jb_puts(&b, ",\"path\":");
    jb_str(&b, r->url);
    jb_put(&b, "}", 1);
    return api_send_json(r, status, &b);
}

/* {"error":"bad parameter","parameter":name,"reason":why} */
int api_send_bad_param(req *r, const char *name, const char *why)
{
    api_count_error(r, MHD_HTTP_BAD_REQUEST);
    jbuf b = {0};
    jb_puts(&b, "{\"error\":\"bad parameter\",\"parameter\":");
    jb_str(&b, name);
    jb_puts(&b, ",\"reason\":");
    jb_str(&b, why);
    jb_puts(&b, ",\"path\":");
    jb_str(&b, r->url);
    jb_put(&b, "}", 1);
    return api_send_json(r, MHD_HTTP_BAD_REQUEST, &b);
}

/* Patient data leaves only after its access is queued for the audit
 * trail (api_audit.c writes it behind the answer). */
int api_req_audit(req *r, const char *what, const char *study_uid, const char *detail)
{
    return api_audit(r->a->auditor, api_now_ms(), r->who, what, study_uid, detail);
}

int api_send_audit_failed(req *r, jbuf *discard)
{
    if (discard)
        jb_release(discard);
    hub_count_error(r->a->metrics, HUB_ERR_STORE_FAILED);
    return api_send_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "audit trail cannot be written; data withheld");
}

/* ---- GET /api/v1/studies ------------------------------------------- */

/* Runs q (a scan, or the one study StudyInstanceUID names): cb for each
 * study of the page; returns the total number of matches or < 0. */
static int list_run(store *st, const api_list_query *q, int (*cb)(void *ctx, const store_study *st), void *ctx)
{
    if (!q->study_uid)
        return store_list_studies(st, &q->flt, (size_t)q->offset, (size_t)q->limit, cb, ctx);
    store_study one;
    int rc = store_get_study(st, q->study_uid, &one);
    if (rc == -ENOENT || (rc == 0 && !api_study_matches(&one, &q->flt)))
        return 0;
    if (rc < 0)
        return rc;
    if (q->offset == 0 && q->limit > 0)
        cb(ctx, &one);
    return 1;
}

typedef struct list_out {
    jbuf              *b;
    size_t             n;
    api_study_renderer one;
    void              *ctx;
} list_out;

static int list_one(void *ctx, const store_study *st)
{
    list_out *o = ctx;
    if (o->n++)
        jb_put(o->b, ",", 1);
    o->one(o->b, st, o->ctx);
    return 0;
}

bool api_list_studies(api_req *r, const api_params *p, api_study_renderer one, void *ctx, api_list_query *q,
                      jbuf *out, int *total, int *answered)
{
    const char *name, *why;
    if (!api_list_query_parse(p, q, &name, &why)) {
        *answered = api_send_bad_param(r, name, why);
        return false;
    }
    list_out o = {.b = out, .one = one, .ctx = ctx};
    if ((*total = list_run(r->a->st, q, list_one, &o)) < 0) {
        jb_release(out);
        *answered = api_send_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "the store cannot be read");
        return false;
    }
    char detail[384];
    api_list_audit_detail(p, o.n, *total, detail, sizeof detail);
    if (api_req_audit(r, "list-studies", q->study_uid, detail) < 0) {
        *answered = api_send_audit_failed(r, out);
        return false;
    }
    return true;
}

static void study_with_dxhub(jbuf *b, const store_study *st, void *ctx)
{
    (void)ctx;
    api_json_study(b, st);
}

static int h_studies(req *r, const api_params *p)
{
    api_list_query q;
    jbuf studies = {0};
    int total, answered;
    if (!api_list_studies(r, p, study_with_dxhub, NULL, &q, &studies, &total, &answered))
        return answered;
    jbuf b = {0};
    jb_printf(&b, "{\"total\":%d,\"offset\":%llu,\"limit\":%llu,\"studies\":[", total,
              (unsigned long long)q.offset, (unsigned long long)q.limit);
    jb_put(&b, studies.p, studies.len);
    jb_puts(&b, "]}");
    if (!jb_ok(&studies))
        b.failed = true;
    jb_release(&studies);
    return api_send_json(r, MHD_HTTP_OK, &b);
}

/* ---- GET /api/v1/studies/{uid} ------------------------------------- */

static void body_release(void *cls) { api_body_unref(cls); }

static int send_shared(req *r, api_body *body)
{
    size_t len;
    const char *p = api_body_data(body, &len);
    /* libmicrohttpd only reads the buffer; its prototype is not const. */
    struct MHD_Response *resp =
        MHD_create_response_from_buffer_with_free_callback_cls(len, (void *)p, body_release, body);
    if (!resp)
        api_body_unref(body);
    return api_queue(r, MHD_HTTP_OK, resp, "application/json; charset=utf-8");
}

/* The detail of st: the cached body when st is unchanged since it was
 * rendered, else rendered now (and cached).  NULL with *rc on failure. */
static api_body *study_body(api_server *a, const store_study *st, int *rc)
{
    uint64_t gen = store_conflict_gen(a->st); /* before rendering: a conflict after it re-renders */
    api_body *body = api_bcache_get(a->bcache, st, gen);
    if (body)
        return body;
    jbuf b = {0};
    *rc = api_json_study_detail(&b, a->st, a->cache, st);
    if (*rc < 0 || !(body = api_body_new(&b))) {
        *rc = *rc < 0 ? *rc : -ENOMEM;
        jb_release(&b);
        return NULL;
    }
    api_bcache_put(a->bcache, st, gen, body);
    return body;
}

static int h_study(req *r, const api_params *p)
{
    (void)p;
    if (!api_valid_uid(r->arg))
        return api_send_bad_param(r, "StudyInstanceUID", "a UID: digits and dots, at most 64");
    store_study st;
    int rc = store_get_study(r->a->st, r->arg, &st);
    if (rc == -ENOENT) {
        if (api_req_audit(r, "read-study", r->arg, "not found") < 0)
            return api_send_audit_failed(r, NULL);
        return api_send_error(r, MHD_HTTP_NOT_FOUND, "no such study");
    }
    api_body *body = rc == 0 ? study_body(r->a, &st, &rc) : NULL;
    if (rc == -ENOMEM)
        return MHD_NO;
    if (!body)
        return api_send_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "the store cannot be read");
    if (api_req_audit(r, "read-study", st.study_uid, NULL) < 0) {
        api_body_unref(body);
        return api_send_audit_failed(r, NULL);
    }
    return send_shared(r, body);
}

/* ---- GET /api/v1/instances/{uid}/conflicts ------------------------- */

static int add_conflict(void *ctx, const store_instance *in)
{
    jbuf *b = ctx;
    if (b->len && b->p[b->len - 1] == '}')
        jb_put(b, ",", 1);
    api_json_instance_record(b, in);
    return 0;
}

/* The instance kept under a UID and every other content received under
 * it (kept apart, never served as the instance): {"sop_instance_uid",
 * "kept": record or null, "conflicts": [record...]}. */
static int h_conflicts(req *r, const api_params *p)
{
    (void)p;
    if (!api_valid_uid(r->arg))
        return api_send_bad_param(r, "SOPInstanceUID", "a UID: digits and dots, at most 64");
    store_instance in;
    int rc = store_get_instance(r->a->st, r->arg, &in);
    if (rc < 0 && rc != -ENOENT)
        return api_send_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "the store cannot be read");
    jbuf b = {0};
    jb_puts(&b, "{\"sop_instance_uid\":");
    jb_str(&b, r->arg);
    jb_puts(&b, ",\"kept\":");
    if (rc == 0)
        api_json_instance_record(&b, &in);
    else
        jb_puts(&b, "null");
    jb_puts(&b, ",\"conflicts\":[");
    int n = store_list_conflicts(r->a->st, r->arg, add_conflict, &b);
    jb_puts(&b, "]}");
    if (n < 0) {
        jb_release(&b);
        return api_send_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "the store cannot be read");
    }
    if (api_req_audit(r, "read-conflicts", rc == 0 ? in.study_uid : NULL, r->arg) < 0)
        return api_send_audit_failed(r, &b);
    if (rc == -ENOENT && n == 0) {
        jb_release(&b);
        return api_send_error(r, MHD_HTTP_NOT_FOUND, "no such instance");
    }
    return api_send_json(r, MHD_HTTP_OK, &b);
}

/* ---- GET /api/v1/instances/{uid}/file ------------------------------ */

/* The byte range asked for: ?offset=&length= (our BulkDataURIs), else an
 * HTTP Range header.  Returns the status to answer with (200, 206, 416) or
 * 400 with *bad naming the parameter. */
static unsigned file_range(req *r, const api_params *p, uint64_t size, uint64_t *off, uint64_t *len,
                           const char **bad)
{
    *off = 0;
    *len = size;
    if (p->v[API_P_OFFSET] || p->v[API_P_LENGTH]) {
        *bad = "offset";
        if (p->v[API_P_OFFSET] && !api_parse_uint(p->v[API_P_OFFSET], size, off))
            return MHD_HTTP_BAD_REQUEST;
        *len = size - *off;
        *bad = "length";
        if (p->v[API_P_LENGTH] && !api_parse_uint(p->v[API_P_LENGTH], size - *off, len))
            return MHD_HTTP_BAD_REQUEST;
        return MHD_HTTP_OK;
    }
    const char *range = MHD_lookup_connection_value(r->c, MHD_HEADER_KIND, MHD_HTTP_HEADER_RANGE);
    int rc = api_parse_range(range, size, off, len);
    if (rc < 0)
        return MHD_HTTP_RANGE_NOT_SATISFIABLE;
    return rc > 0 ? MHD_HTTP_PARTIAL_CONTENT : MHD_HTTP_OK;
}

static int send_file(req *r, const store_instance *in, unsigned status, uint64_t off, uint64_t len,
                                 bool bulk)
{
    struct MHD_Response *resp = api_file_response(r->a->st, in, off, len);
    if (!resp)
        return MHD_NO;
    char v[160];
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
    if (status == MHD_HTTP_PARTIAL_CONTENT) {
        snprintf(v, sizeof v, "bytes %llu-%llu/%llu", (unsigned long long)off, (unsigned long long)(off + len - 1),
                 (unsigned long long)in->size);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE, v);
    }
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    v[n++] = '"';
    for (int i = 0; i < 32; i++) {
        v[n++] = hex[in->digest[i] >> 4];
        v[n++] = hex[in->digest[i] & 15];
    }
    v[n++] = '"';
    v[n] = 0;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, v);
    return api_queue(r, status, resp, bulk ? "application/octet-stream" : "application/dicom");
}

static int h_file(req *r, const api_params *p)
{
    if (!api_valid_uid(r->arg))
        return api_send_bad_param(r, "SOPInstanceUID", "a UID: digits and dots, at most 64");
    store_instance in;
    int rc = store_get_instance(r->a->st, r->arg, &in);
    if (rc == -ENOENT) {
        if (api_req_audit(r, "read-instance", NULL, r->arg) < 0)
            return api_send_audit_failed(r, NULL);
        return api_send_error(r, MHD_HTTP_NOT_FOUND, "no such instance");
    }
    if (rc < 0)
        return api_send_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "the store cannot be read");
    uint64_t off, len;
    const char *bad = NULL;
    unsigned status = file_range(r, p, in.size, &off, &len, &bad);
    if (status == MHD_HTTP_BAD_REQUEST)
        return api_send_bad_param(r, bad, "a byte count within the instance's size");
    if (status == MHD_HTTP_RANGE_NOT_SATISFIABLE) {
        char cr[48];
        snprintf(cr, sizeof cr, "bytes */%llu", (unsigned long long)in.size);
        api_count_error(r, status);
        struct MHD_Response *resp = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
        if (resp)
            MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE, cr);
        return api_queue(r, status, resp, "application/json; charset=utf-8");
    }
    char detail[STORE_UID_MAX + 64];
    snprintf(detail, sizeof detail, "%s bytes=%llu+%llu", in.sop_uid, (unsigned long long)off,
             (unsigned long long)len);
    if (api_req_audit(r, "read-instance", in.study_uid, detail) < 0)
        return api_send_audit_failed(r, NULL);
    return send_file(r, &in, status, off, len, p->v[API_P_OFFSET] || p->v[API_P_LENGTH]);
}

/* ---- health, metrics ----------------------------------------------- */

static int h_health(req *r, const api_params *p)
{
    (void)p;
    jbuf b = {0};
    int rc = api_render_health(&b, &r->a->status, api_mono_ms());
    return api_send_json(r, rc < 0 ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_OK, &b);
}

static int h_tasks(req *r, const api_params *p)
{
    (void)p;
    jbuf b = {0};
    int rc = api_render_tasks(&b, r->a->st, api_now_ms());
    return api_send_json(r, rc < 0 ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_OK, &b);
}

static int h_clinics(req *r, const api_params *p)
{
    (void)p;
    jbuf b = {0};
    int rc = api_render_clinics(&b, &r->a->status, api_now_ms());
    return api_send_json(r, rc < 0 ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_OK, &b);
}

static int h_metrics(req *r, const api_params *p)
{
    (void)p;
    jbuf b = {0};
    api_render_metrics(&b, &r->a->status, api_mono_ms());
    return api_send_body(r, MHD_HTTP_OK, &b, "text/plain; version=0.0.4; charset=utf-8");
}

/* ---- routing ------------------------------------------------------- */

#define PB(x) (1u << (x))
#define ANY_PARAMS 0xFFFFFFFFu /* health and metrics ignore the query */

/* Who may ask (a facility API key: "Authorization: Bearer TOKEN"). */
enum route_auth {
    AUTH_OPEN,       /* health and metrics: no patient data */
    AUTH_PATIENT,    /* patient data: a key once the hub has keys; before
                      * that, to loopback clients only */
    AUTH_KEY,        /* lookups, repeats, peers: always a key */
};

/* "/prefix" exact, "/prefix{UID}suffix" when suffix is set, or any path
 * below "/prefix" when suffix is "*"; peer
 * routes are "/api/v1/peers/{hub}" + prefix + {ID} + suffix. */
static const struct route {
    const char *prefix, *suffix;
    int (*fn)(req *, const api_params *);
    unsigned params;
    unsigned char auth, post, peer;
} routes[] = {
    {"/api/v1/studies", NULL, h_studies,
     PB(API_P_PATIENT_ID) | PB(API_P_PATIENT_NAME) | PB(API_P_STUDY_DATE) | PB(API_P_MODALITY) | PB(API_P_ACCESSION) |
         PB(API_P_STUDY_UID) | PB(API_P_STATE) | PB(API_P_OFFSET) | PB(API_P_LIMIT), AUTH_PATIENT, 0, 0},
    {"/api/v1/studies/", "", h_study, 0, AUTH_PATIENT, 0, 0},
    {"/api/v1/instances/", "/file", h_file, PB(API_P_OFFSET) | PB(API_P_LENGTH), AUTH_PATIENT, 0, 0},
    {"/api/v1/instances/", "/preview.png", api_h_preview, 0, AUTH_PATIENT, 0, 0},
    {"/api/v1/instances/", "/conflicts", h_conflicts, 0, AUTH_PATIENT, 0, 0},
    {"/api/v1/reports", NULL, api_h_reports,
     PB(API_P_PATIENT_ID) | PB(API_P_SINCE) | PB(API_P_TYPE) | PB(API_P_SCOPE), AUTH_KEY, 0, 0},
    {"/api/v1/reports/", "", api_h_report, 0, AUTH_KEY, 0, 0},
    {"/api/v1/exams/", "/repeat", api_h_repeat, 0, AUTH_KEY, 1, 0},
    {"/instances/", "/file", api_h_peer_file, PB(API_P_OFFSET) | PB(API_P_LENGTH), AUTH_KEY, 0, 1},
    {"/instances/", "/preview.png", api_h_peer_preview, 0, AUTH_KEY, 0, 1},
    {"/reports/", "", api_h_peer_report, 0, AUTH_KEY, 0, 1},
    {"/api/v1/health", NULL, h_health, ANY_PARAMS, AUTH_OPEN, 0, 0},
    {"/api/v1/tasks", NULL, h_tasks, 0, AUTH_PATIENT, 0, 0},
    {"/api/v1/clinics", NULL, h_clinics, 0, AUTH_PATIENT, 0, 0},
    {"/metrics", NULL, h_metrics, ANY_PARAMS, AUTH_OPEN, 0, 0},
    /* everything below /dicom-web/ (api_dicomweb.c sorts it out) */
    {"/dicom-web/", "*", api_h_dicomweb,
     PB(API_P_PATIENT_ID) | PB(API_P_PATIENT_NAME) | PB(API_P_STUDY_DATE) | PB(API_P_MODALITY) |
         PB(API_P_ACCESSION) | PB(API_P_STUDY_UID) | PB(API_P_OFFSET) | PB(API_P_LIMIT) | PB(API_P_INCLUDEFIELD) |
         PB(API_P_FUZZY) | PB(API_P_WINDOW) | PB(API_P_QUALITY), AUTH_PATIENT, 0, 0},
};

#define PEERS_PREFIX "/api/v1/peers/"

/* /api/v1/peers/{hub}/rest: r->peer gets hub, *rest the path after it. */
static bool split_peer(req *r, const char **rest)
{
    size_t pl = strlen(PEERS_PREFIX);
    if (strncmp(r->url, PEERS_PREFIX, pl))
        return false;
    const char *name = r->url + pl, *slash = strchr(name, '/');
    if (!slash || slash == name || (size_t)(slash - name) >= sizeof r->peerbuf)
        return false;
    snprintf(r->peerbuf, sizeof r->peerbuf, "%.*s", (int)(slash - name), name);
    r->peer = r->peerbuf;
    *rest = slash;
    return true;
}

static const struct route *route_of(req *r)
{
    const char *url = r->url, *rest = NULL;
    bool via_peer = split_peer(r, &rest);
    if (via_peer)
        url = rest;
    size_t ul = strlen(url);
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        const struct route *rt = &routes[i];
        if (rt->peer != via_peer)
            continue;
        size_t pl = strlen(rt->prefix);
        if (strncmp(url, rt->prefix, pl))
            continue;
        if (!rt->suffix) {
            if (ul == pl)
                return rt;
            continue;
        }
        if (!strcmp(rt->suffix, "*"))
            return rt; /* a whole tree: the handler reads r->url */
        size_t sl = strlen(rt->suffix);
        if (ul < pl + sl + 1 || strcmp(url + ul - sl, rt->suffix))
            continue;
        size_t al = ul - pl - sl;
        if (memchr(url + pl, '/', al))
            continue;
        /* An argument too long for a UID is kept short so that the
         * handler's check fails with 400, not a silent truncation. */
        snprintf(r->argbuf, sizeof r->argbuf, "%.*s", (int)(al < sizeof r->argbuf - 1 ? al : sizeof r->argbuf - 1),
                 url + pl);
        r->arg = r->argbuf;
        return rt;
    }
    return NULL;
}

static enum MHD_Result collect_param(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    api_params_add(cls, key, value);
    return MHD_YES;
}

/* Dotted quad of a (host order) into out (16 bytes): every request names
 * its client, and inet_ntop formats through sprintf. */
static void ipv4_text(uint32_t a, char *out)
{
    for (int shift = 24; shift >= 0; shift -= 8) {
        unsigned v = (a >> shift) & 255;
        if (v >= 100)
            *out++ = (char)('0' + v / 100);
        if (v >= 10)
            *out++ = (char)('0' + v / 10 % 10);
        *out++ = (char)('0' + v % 10);
        *out++ = shift ? '.' : '\0';
    }
}

/* The client's address; true when it is the loopback interface. */
static bool peer_of(req *r)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    char ip[INET6_ADDRSTRLEN] = "unknown";
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;
    bool loopback = false;
    if (sa && sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)sa;
        uint32_t a = ntohl(s4->sin_addr.s_addr);
        ipv4_text(a, ip);
        loopback = (a >> 24) == 127;
    } else if (sa && sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)(const void *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip);
        loopback = IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr);
    }
    snprintf(r->who, sizeof r->who, "http:%s", ip);
    return loopback;
}

static int send_auth_error(req *r, unsigned status, const char *msg)
{
    hub_count_error(r->a->metrics, HUB_ERR_HTTP_UNAUTHORIZED);
    jbuf b = {0};
    jb_puts(&b, "{\"error\":");
    jb_str(&b, msg);
    jb_puts(&b, ",\"path\":");
    jb_str(&b, r->url);
    jb_put(&b, "}", 1);
    size_t len;
    char *p = jb_detach(&b, &len);
    struct MHD_Response *resp = p ? MHD_create_response_from_buffer(len, p, MHD_RESPMEM_MUST_FREE) : NULL;
    if (!resp) {
        free(p);
        return MHD_NO;
    }
    if (status == MHD_HTTP_UNAUTHORIZED) /* RFC 6750 §3 */
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"dxhub\"");
    return api_queue(r, status, resp, "application/json; charset=utf-8");
}

/* The facility's key, when the route wants one.  With *answered 0 the
 * request goes on (r->who names the facility); else the refusal was
 * queued and the result is libmicrohttpd's. */
static int authenticate(req *r, unsigned auth, bool loopback, int *answered)
{
    *answered = 0;
    if (auth == AUTH_OPEN)
        return 0;
    const char *h = MHD_lookup_connection_value(r->c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    bool have_keys = apikeys_count(r->a->keys) > 0;
    if (!h) {
        /* A hub without any key keeps its old contract: patient data for
         * loopback clients (the hospital's own tools on the machine). */
        if (auth == AUTH_PATIENT && !have_keys && loopback)
            return 0;
        *answered = 1;
        return send_auth_error(r, MHD_HTTP_UNAUTHORIZED,
                               have_keys || auth == AUTH_KEY
                                   ? "an API key is required: Authorization: Bearer TOKEN (dxhub keygen --api-key)"
                                   : "this hub has no API keys yet: patient data is served to 127.0.0.1 only");
    }
    size_t sl = strlen("Bearer ");
    *answered = 1;
    if (strncasecmp(h, "Bearer ", sl))
        return send_auth_error(r, MHD_HTTP_UNAUTHORIZED, "the Authorization header must be: Bearer TOKEN");
    const char *tok = h + sl;
    while (*tok == ' ')
        tok++;
    size_t tl = strlen(tok);
    while (tl && tok[tl - 1] == ' ')
        tl--;
    if (apikeys_check(r->a->keys, tok, tl, r->facility) < 0)
        return send_auth_error(r, MHD_HTTP_FORBIDDEN, "API key not recognised (unknown or revoked)");
    *answered = 0;
    snprintf(r->who, sizeof r->who, "facility:%s", r->facility);
    return 0;
}

/* A POST body being received (the request's context between calls). */
typedef struct post_body {
    const api_server *magic; /* distinguishes it from the GET marker (the server itself) */
    size_t            len;
    bool              too_big;
    char              data[API_BODY_IN_MAX + 1];
} post_body;

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls, enum MHD_RequestTerminationCode toe)
{
    (void)c;
    (void)toe;
    if (*req_cls && *req_cls != cls)
        free(*req_cls);
    *req_cls = NULL;
}

static int method_not_allowed(req *r, const char *method, bool post)
{
    const char *allow = post ? "POST" : "GET, HEAD";
    api_count_error(r, MHD_HTTP_METHOD_NOT_ALLOWED);
    jbuf b = {0};
    jb_puts(&b, "{\"error\":\"method not allowed\",\"method\":");
    jb_str(&b, method);
    jb_puts(&b, ",\"path\":");
    jb_str(&b, r->url);
    jb_puts(&b, ",\"allow\":");
    jb_str(&b, allow);
    jb_put(&b, "}", 1);
    size_t len;
    char *p = jb_detach(&b, &len);
    struct MHD_Response *resp = p ? MHD_create_response_from_buffer(len, p, MHD_RESPMEM_MUST_FREE) : NULL;
    if (!resp)
        free(p);
    else
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    return api_queue(r, MHD_HTTP_METHOD_NOT_ALLOWED, resp, "application/json; charset=utf-8");
}

static int answer(req *r, const struct route *rt, struct MHD_Connection *c, const char *method, bool readonly,
                  bool post, void *req_ctx);

/* CORS preflight from a listed origin: what its GET may carry. */
static int preflight(req *r)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
    if (resp) {
        MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, HEAD");
        MHD_add_response_header(resp, "Access-Control-Allow-Headers", "Authorization, Accept");
        MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
    }
    return api_queue(r, MHD_HTTP_NO_CONTENT, resp, "text/plain");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
    (void)version;
    api_server *a = cls;
    bool readonly = !strcmp(method, MHD_HTTP_METHOD_GET) || !strcmp(method, MHD_HTTP_METHOD_HEAD);
    bool post = !strcmp(method, MHD_HTTP_METHOD_POST);
    req r = {.a = a, .c = c, .url = url};
    if (!*req_cls && !strcmp(method, MHD_HTTP_METHOD_OPTIONS) && cors_origin(&r)) {
        *req_cls = a; /* a preflight: answered on the second call, as a GET */
        return MHD_YES;
    }
    const struct route *rt = route_of(&r);
    /* libmicrohttpd calls first with the headers alone; a response queued
     * then, before the request is complete, makes it close the connection.
     * So GET and HEAD answer on the second call (keep-alive works), a POST
     * to a POST route once its body is in; other methods are refused at
     * once and their connection closes. */
    if (!*req_cls) {
        if (readonly && (!rt || !rt->post)) {
            *req_cls = a;
            return MHD_YES;
        }
        if (post && rt && rt->post) {
            post_body *pb = calloc(1, sizeof *pb);
            if (!pb)
                return MHD_NO;
            pb->magic = a;
            *req_cls = pb;
            return MHD_YES;
        }
    } else if (*upload_data_size) {
        post_body *pb = *req_cls != a ? *req_cls : NULL;
        if (pb && !pb->too_big) {
            if (pb->len + *upload_data_size > API_BODY_IN_MAX)
                pb->too_big = true;
            else {
                memcpy(pb->data + pb->len, upload_data, *upload_data_size);
                pb->len += *upload_data_size;
            }
        }
        *upload_data_size = 0; /* a body on GET means nothing here */
        return MHD_YES;
    }
    atomic_fetch_add_explicit(&a->metrics->http_requests, 1, memory_order_relaxed);
    int64_t t0 = api_mono_us();
    int rc = answer(&r, rt, c, method, readonly, post, *req_cls);
    hub_count_http(a->metrics, (uint64_t)(api_mono_us() - t0));
    return rc;
}

/* The whole request in hand: route, method, parameters, key, handler. */
static int answer(req *r, const struct route *rt, struct MHD_Connection *c, const char *method, bool readonly,
                  bool post, void *req_ctx)
{
    if (!rt)
        return api_send_error(r, MHD_HTTP_NOT_FOUND, "not found");
    if (!strcmp(method, MHD_HTTP_METHOD_OPTIONS) && cors_origin(r)) /* a browser's preflight */
        return preflight(r);
    if (rt->post ? !post : !readonly)
        return method_not_allowed(r, method, rt->post);
    api_params p = {.allowed = rt->params};
    if (rt->params != ANY_PARAMS) {
        MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect_param, &p);
        if (p.bad)
            return api_send_bad_param(r, p.bad, p.bad_why);
    }
    bool loopback = peer_of(r);
    int answered, rc = authenticate(r, rt->auth, loopback, &answered);
    if (answered)
        return rc;
    if (rt->post) {
        post_body *pb = req_ctx;
        if (pb->too_big)
            return api_send_error(r, 413 /* Content Too Large */, "request body too large");
        pb->data[pb->len] = 0;
        r->body = pb->data;
        r->body_len = pb->len;
    }
    return rt->fn(r, &p);
}

/* ---- start and stop ------------------------------------------------ */

/* Nagle's algorithm would hold a small response's last segment for the
 * peer's delayed ACK (40 ms on Linux): switch it off on every connection. */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    api_server *a = cls;
    (void)socket_context;
    if (a->addrs) {
        const union MHD_ConnectionInfo *ai = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (ai && ai->client_addr)
            api_addrs_add(a->addrs, ai->client_addr, code == MHD_CONNECTION_NOTIFY_STARTED ? 1 : -1);
    }
    if (code != MHD_CONNECTION_NOTIFY_STARTED)
        return;
    /* Runs in the thread that serves the connection: a short slice lets
     * it preempt the hub's other threads when a request wakes it (a hint:
     * refused, the thread serves as before). */
    (void)sched_hint_request_thread();
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    int one = 1;
    if (ci)
        setsockopt(ci->connect_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* A new connection from an address that already holds http-max-per-address
 * is refused (libmicrohttpd closes it), counted, and logged at most every
 * 10 s with how many.  Connections accepted at the same moment by several
 * threads may pass the limit by as many. */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *sa, socklen_t len)
{
    api_server *a = cls;
    (void)len;
    if (!api_addrs_full(a->addrs, sa))
        return MHD_YES;
    hub_count_error(a->metrics, HUB_ERR_HTTP_TOO_MANY);
    uint64_t n = atomic_fetch_add(&a->refused_unlogged, 1) + 1;
    int64_t now = api_mono_ms(), last = atomic_load(&a->refused_logged_ms);
    if ((last == 0 || now - last >= 10000) && atomic_compare_exchange_strong(&a->refused_logged_ms, &last, now)) {
        atomic_fetch_sub(&a->refused_unlogged, n);
        char ip[INET6_ADDRSTRLEN] = "?";
        if (sa->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, ip, sizeof ip);
        else if (sa->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, ip, sizeof ip);
        log_warn("HTTP: refused %llu connection(s) since the last such line; %s already held %d open "
                 "(http-max-per-address)", (unsigned long long)n, ip, a->max_per_address);
    }
    return MHD_NO;
}

/* Our own listening socket, so that a failure names its reason (errno)
 * and port 0 yields the ephemeral port. */
static int listen_on(const char *bind_addr, uint16_t port, bool tls, int *fd_out, uint16_t *port_out, bool *v6,
                     char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    socklen_t sl;
    if (inet_pton(AF_INET, bind_addr, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        sl = sizeof *s4;
        *v6 = false;
    } else if (inet_pton(AF_INET6, bind_addr, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        sl = sizeof *s6;
        *v6 = true;
    } else {
        snprintf(err, errlen, "bind address '%s' is not a numeric IPv4 or IPv6 address", bind_addr);
        return -EINVAL;
    }
    /* Patient data and the facilities' API keys cross the network only
     * encrypted: plain HTTP stays on this machine. */
    bool loopback = *v6 ? IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr) : (ntohl(s4->sin_addr.s_addr) >> 24) == 127;
    if (!tls && !loopback) {
        snprintf(err, errlen,
                 "plain HTTP on %s would send patient data and API keys unencrypted: give it a certificate "
                 "(tls-cert and tls-key) or keep it on 127.0.0.1 (http-bind)", bind_addr);
        return -EPERM;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -errno;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot listen on %s port %u: %s", bind_addr, port, strerror(e));
        close(fd);
        return -e;
    }
    sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    *port_out = ntohs(ss.ss_family == AF_INET ? s4->sin_port : s6->sin6_port);
    *fd_out = fd;
    return 0;
}

/* Default: one epoll thread per CPU the hub may run on (its affinity:
 * taskset, systemd's CPUAffinity).  Answers are CPU work, and a thread
 * more than the CPUs takes turns with the other on its CPU, so the
 * connections of the one waiting sit out the other's time slice: on one
 * CPU under wrk at 16 connections the study lookup's p99 was 5–6 ms with
 * two threads and under 1 ms with one, at the same rate.  An instance's
 * bytes come from the store's memory map, and on a store larger than RAM
 * a read can wait for the disk and stall every connection of its thread:
 * there `http-threads` (two per CPU) keeps the others going. */
static unsigned thread_count(int asked)
{
    if (asked > 0)
        return (unsigned)(asked < 64 ? asked : 64);
    cpu_set_t set;
    long cpus = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : sysconf(_SC_NPROCESSORS_ONLN);
    long n = cpus > 0 ? cpus : 1;
    return n > 64 ? 64 : (unsigned)n;
}

int api_start(const api_config *cfg, api_server **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!cfg || !cfg->st) {
        snprintf(err, errlen, "no store to serve");
        return -EINVAL;
    }
    int rc, fd = -1;
    bool v6 = false;
    api_server *a = calloc(1, sizeof *a);
    if (!a)
        goto nomem;
    a->st = cfg->st;
    a->metrics = cfg->metrics ? cfg->metrics : &a->own_metrics;
    a->keys = cfg->keys;
    a->recog = cfg->recog;
    a->peers = cfg->peers;
    snprintf(a->name, sizeof a->name, "%s", cfg->name ? cfg->name : "hub");
    if (!(a->cache = api_hcache_new(HCACHE_BYTES)) || !(a->bcache = api_bcache_new(BCACHE_BYTES)) ||
        !(a->lcache = api_lcache_new(LCACHE_BYTES)) ||
        !(a->counters = api_counters_new()))
        goto nomem;
    a->max_per_address = cfg->max_per_address > 0 ? cfg->max_per_address : 0;
    a->dicomweb_origins = cfg->dicomweb_origins && *cfg->dicomweb_origins ? strdup(cfg->dicomweb_origins) : NULL;
    if (a->max_per_address && !(a->addrs = api_addrs_new(a->max_per_address)))
        goto nomem;
    if ((rc = api_auditor_start(a->st, a->metrics, &a->auditor)) < 0) {
        snprintf(err, errlen, "cannot start the audit writer: %s", strerror(-rc));
        goto fail;
    }
    a->status = (api_status){.st = cfg->st, .metrics = a->metrics, .started_mono_ms = api_mono_ms(),
                             .counters = a->counters, .clinics = cfg->clinics, .clinics_ctx = cfg->clinics_ctx,
                             .peers = cfg->peers};
    api_counters_load(a->counters, a->st);
    bool tls = cfg->tls_cert_pem && cfg->tls_key_pem;
    rc = listen_on(cfg->bind ? cfg->bind : "127.0.0.1", cfg->port, tls, &fd, &a->port, &v6, err, errlen);
    if (rc < 0)
        goto fail;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | (v6 ? MHD_USE_IPv6 : 0) | (tls ? MHD_USE_TLS : 0);
    struct MHD_OptionItem tls_options[] = {
        {MHD_OPTION_HTTPS_MEM_CERT, 0, (void *)cfg->tls_cert_pem},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)cfg->tls_key_pem},
        {MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)TLS_PRIORITIES},
        {MHD_OPTION_END, 0, NULL},
    };
    a->d = MHD_start_daemon(flags, 0, a->addrs ? on_accept : NULL, a, on_request, a,
                            MHD_OPTION_ARRAY, tls ? tls_options : &tls_options[3],
                            MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
                            MHD_OPTION_THREAD_POOL_SIZE, thread_count(cfg->threads),
                            MHD_OPTION_NOTIFY_CONNECTION, on_connection, a,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, a,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60,
                            MHD_OPTION_END);
    if (!a->d) {
        /* The socket is bound already: what fails here is starting its
         * threads or epoll (errno from the call that failed). */
        snprintf(err, errlen, "libmicrohttpd could not start on port %u: %s", a->port, strerror(errno));
        close(fd);
        rc = -EIO;
        goto fail;
    }
    *out = a;
    return 0;
nomem:
    snprintf(err, errlen, "out of memory");
    rc = -ENOMEM;
fail:
    if (a) {
        api_auditor_stop(&a->auditor);
        api_bcache_free(&a->bcache);
        api_lcache_free(&a->lcache);
        api_hcache_free(&a->cache);
        api_counters_free(&a->counters);
        api_addrs_free(&a->addrs);
        free(a->dicomweb_origins);
        free(a);
    }
    return rc;
}

uint16_t api_port(const api_server *a) { return a ? a->port : 0; }

void api_stop(api_server **ap)
{
    api_server *a = ap ? *ap : NULL;
    if (!a)
        return;
    MHD_stop_daemon(a->d); /* joins its threads; closes the listening socket */
    api_auditor_stop(&a->auditor); /* after the last request: writes every queued record */
    api_bcache_free(&a->bcache);
    api_lcache_free(&a->lcache);
    api_hcache_free(&a->cache);
    api_counters_free(&a->counters);
    api_addrs_free(&a->addrs);
    free(a->dicomweb_origins);
    free(a);
    *ap = NULL;
}
