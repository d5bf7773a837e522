/* api_private.h — what the HTTP API's files share: a growable JSON text
 * buffer, the renderers of study and instance JSON, the header cache, and
 * the health/metrics renderers.  Only hub/api*.c include it; it does not
 * include microhttpd.h, so renderers can be read (and tested) without it.
 *
 * JSON is written by hand into one buffer per response rather than built
 * as a jansson tree: instance metadata already arrives as text from
 * dcm_json_write (and from the cache), and a study lookup must stay well
 * under a millisecond; the only escaping needed is api_json_str's. */
#ifndef DXHUB_API_PRIVATE_H
#define DXHUB_API_PRIVATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include "hub/api.h"
#include "hub/metrics.h"
#include "hub/store.h"

/* ---- text buffer --------------------------------------------------- */

#define API_BODY_MAX ((size_t)256 << 20) /* no response body grows past this */

/* A growable byte buffer.  After an allocation failure (or API_BODY_MAX)
 * it stays failed: later appends do nothing and jb_ok says false, so a
 * renderer checks once at the end. */
typedef struct jbuf {
    char  *p;
    size_t len, cap;
    bool   failed;
} jbuf;

void  jb_put(jbuf *b, const void *p, size_t n);
bool  jb_reserve(jbuf *b, size_t n);                /* room for n more bytes (one allocation) */
void  jb_fit(jbuf *b);                              /* capacity cut to the length: text to keep */
void  jb_puts(jbuf *b, const char *s);
void  jb_printf(jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void  jb_str(jbuf *b, const char *s);               /* a JSON string, quoted and escaped */
void  jb_strn(jbuf *b, const char *s, size_t n);
void  jb_uint(jbuf *b, uint64_t v);                 /* decimal digits, no printf */
void  jb_time(jbuf *b, int64_t ms);                 /* ISO 8601 UTC string, or null for 0 */
bool  jb_ok(const jbuf *b);
char *jb_detach(jbuf *b, size_t *len);              /* caller frees; b is reset */
void  jb_release(jbuf *b);

/* ---- instance headers (api_header.c) ------------------------------- */

/* DICOM JSON of an instance's header, keyed by content digest: a stored
 * instance's bytes never change, so an entry never goes stale; bounded by
 * bytes, evicted by a clock hand.  Thread-safe. */
typedef struct api_hcache api_hcache;
api_hcache *api_hcache_new(size_t max_bytes);
void        api_hcache_free(api_hcache **c);

/* What a series object says, taken from its first instance's header. */
typedef struct api_series_attrs {
    char modality[17], description[200];
    long number;
    bool has_number;
} api_series_attrs;

/* Append the instance's header as one DICOM JSON object (pixel data left
 * out, bulk values as BulkDataURIs under /api/v1/instances/{uid}/file)
 * and fill *sa: from the cache, else read from the store and cached.
 * Returns 0, or a negative code (DCM_E*, -errno) with out unchanged. */
int api_header_json(store *st, api_hcache *cache, const store_instance *in, jbuf *out, api_series_attrs *sa);

/* An instance (or conflicting copy) as the store records it: UID, size,
 * digest, transfer syntax, source, received, conflict, study and series. */
void api_json_instance_record(jbuf *b, const store_instance *in);

/* ---- whole study details (api_body.c) ------------------------------ */

/* An immutable response body shared by reference: the cache holds one
 * reference and each response being sent another. */
typedef struct api_body api_body;
api_body   *api_body_new(jbuf *b);       /* takes b's bytes (b is reset); NULL on OOM */
api_body   *api_body_ref(api_body *b);
void        api_body_unref(api_body *b); /* NULL-safe; frees with the last reference */
const char *api_body_data(const api_body *b, size_t *len);
/* The text as raw deflate ending in a sync flush (made once, kept with the
 * body) and its CRC-32, for api_gzip_answer: 0, or -1 out of memory. */
int         api_body_deflated(api_body *b, const uint8_t **z, size_t *zlen, uint32_t *crc);

/* ---- gzip answers (api_gzip.c) ------------------------------------- */

/* The client's Accept-Encoding header (NULL: none) takes gzip. */
bool api_accepts_gzip(const char *accept_encoding);
/* p[0..n) appended to out as raw deflate: the final block when `final`,
 * else ending in a sync flush (byte-aligned, more may follow).  0 or -1. */
int  api_deflate_raw(jbuf *out, const void *p, size_t n, bool final);
/* One gzip member of head, mid's text and tail appended to out, mid's
 * deflated segment reused.  0 or -1 (out of memory). */
int  api_gzip_answer(jbuf *out, const jbuf *head, api_body *mid, const jbuf *tail);

/* Study details by study UID, each valid while the study record it was
 * rendered from is unchanged; bounded by bytes, least recently used out.
 * Thread-safe. */
typedef struct api_bcache api_bcache;
api_bcache *api_bcache_new(size_t max_bytes);
void        api_bcache_free(api_bcache **c);
/* gen: the store's conflict generation when the body was rendered (a
 * conflicting copy from another study changes a detail but not its study
 * record). */
api_body   *api_bcache_get(api_bcache *c, const store_study *st, uint64_t gen); /* a new reference, or NULL */
void        api_bcache_put(api_bcache *c, const store_study *st, uint64_t gen, api_body *b);

/* ---- the local part of lookup answers (api_lookups.c) -------------- */

/* Lookup answers (the exams' JSON and their counts) by question, each
 * valid while gen (every input's generation, read before the answer's
 * snapshot) is unchanged, while no report was indexed after commit snap
 * (store_last_commit before the snapshot; get's report_txn is
 * store_report_txn now) and until expires_ms (api_lcache_now_ms's clock).
 * Bounded by bytes; thread-safe. */
typedef struct api_lcache api_lcache;
api_lcache *api_lcache_new(size_t max_bytes);
void        api_lcache_free(api_lcache **c);
int64_t     api_lcache_now_ms(void); /* monotonic */
/* A new reference to the exams' text with the counts set, or NULL. */
api_body   *api_lcache_get(api_lcache *c, const char *key, uint64_t gen, uint64_t report_txn, unsigned *n,
                           unsigned *recognised);
/* Keeps its own reference to body (the caller keeps the caller's). */
void        api_lcache_put(api_lcache *c, const char *key, uint64_t gen, uint64_t snap, int64_t expires_ms,
                           api_body *body, unsigned n, unsigned recognised);

/* ---- renderers (api_json.c) ---------------------------------------- */

/* Instances gathered from store_list_instances (v malloc'd: free it). */
typedef struct api_inst_list {
    store_instance *v;
    size_t          n, cap;
    int             rc; /* -ENOMEM when one could not be kept */
} api_inst_list;
/* Keeps a copy of in: 0, or 1 (rc set) when out of memory — a listing
 * callback's stop. */
int api_inst_list_add(api_inst_list *l, const store_instance *in);

/* A study as a DICOM JSON object plus the non-DICOM "dxhub" member. */
void api_json_study(jbuf *b, const store_study *st);
/* The same without the "dxhub" member, as QIDO-RS answers it, with its
 * Retrieve URL (0008,1190) when given. */
void api_json_study_qido(jbuf *b, const store_study *st, const char *retrieve_url);
/* One attribute, "TAG":{"vr":VR,"Value":[value]} (no Value when empty). */
void api_json_attr(jbuf *b, const char *tag, const char *vr, const char *value);

/* {"study":{..},"series":[{.., "instances":[..]}]} for a study read from
 * the store: each instance its full header (api_header_json) plus a
 * "dxhub" member (size, digest, transfer syntax, source, received,
 * conflict; an unreadable header still lists the instance, with the
 * reason in dxhub.error).  Returns 0, or a negative code (-ENOMEM, the
 * store's). */
int api_json_study_detail(jbuf *b, store *st, api_hcache *cache, const store_study *study);

/* ---- the audit trail of reads (api_audit.c) ------------------------ */

/* Records queued by requests and appended to the store by one writer
 * thread, identical accesses coalesced while it is busy (see api_audit.c
 * for why and what stays true). */
typedef struct api_auditor api_auditor;
int  api_auditor_start(store *st, hub_metrics *m, api_auditor **out);
/* Queue one access.  0, or -EAGAIN when the queue is full because the
 * store has refused records for a while: withhold the data. */
int  api_audit(api_auditor *a, int64_t now_ms, const char *who, const char *what, const char *study,
               const char *detail);
/* Write everything queued (retrying only while the store accepts), stop
 * the writer, free.  NULL-safe; NULLs *a. */
void api_auditor_stop(api_auditor **a);

/* ---- query parameters (api_query.c) -------------------------------- */

#define API_LIST_DEFAULT 100
#define API_LIST_MAX     1000

typedef enum api_param_id {
    API_P_PATIENT_ID, API_P_STUDY_DATE, API_P_MODALITY, API_P_ACCESSION, API_P_STUDY_UID, API_P_STATE,
    API_P_OFFSET, API_P_LIMIT, API_P_LENGTH, API_P_SINCE, API_P_TYPE, API_P_SCOPE,
    API_P_INCLUDEFIELD, API_P_FUZZY, /* QIDO-RS's: taken and ignored (every attribute known is returned;
                                        matching is exact) */
    API_P_PATIENT_NAME,              /* wildcards as QIDO-RS has them (pn_match.h) */
    API_P_WINDOW, API_P_QUALITY,     /* WADO-RS rendered: "center,width[,linear]", JPEG quality 1-100 */
    API_P_COUNT
} api_param_id;

typedef struct api_param_name {
    const char *name, *tag; /* keyword, and the tag form QIDO-RS also accepts (or NULL) */
} api_param_name;
extern const api_param_name api_param_names[API_P_COUNT];

/* The query of one request.  Values are borrowed (libmicrohttpd's, valid
 * during the request). */
typedef struct api_params {
    unsigned    allowed;            /* bit per api_param_id the path takes */
    const char *v[API_P_COUNT];
    const char *given[API_P_COUNT]; /* the name as the client spelled it */
    const char *bad, *bad_why;      /* the first problem seen */
} api_params;

/* Record key=value; an unknown, unallowed or repeated name sets bad. */
void api_params_add(api_params *p, const char *key, const char *value);

typedef struct api_list_query {
    store_study_filter flt;
    char               from[9], to[9];
    const char        *study_uid;   /* StudyInstanceUID: a lookup, not a scan */
    uint64_t           offset, limit;
} api_list_query;

/* The list query from p; false with the offending parameter's name (as
 * given) and the reason. */
bool api_list_query_parse(const api_params *p, api_list_query *q, const char **name, const char **why);
bool api_study_matches(const store_study *st, const store_study_filter *f);

bool api_valid_uid(const char *s);
bool api_parse_uint(const char *s, uint64_t max, uint64_t *out);
/* The audit detail of a list: what was asked (IDs, never names) and how
 * many studies were shown. */
void api_list_audit_detail(const api_params *p, size_t shown, int total, char *out, size_t n);

typedef struct api_counters api_counters; /* api_reports.c */

/* ---- health and metrics (api_metrics.c) ---------------------------- */

/* What /health and /metrics know besides the store: process counters,
 * start time, and when the store last refused data (STORE_FULL). */
typedef struct api_status {
    store            *st;
    api_counters     *counters;
    hub_metrics      *metrics;
    int64_t           started_mono_ms;
    _Atomic uint64_t  last_full_count;   /* put_full seen at the last look */
    _Atomic int64_t   last_full_mono_ms; /* when it last grew; 0 never */
    int             (*clinics)(void *ctx, link_clinic *out, int max); /* api_config's */
    void             *clinics_ctx;
    peers            *peers;             /* the other hubs, for /metrics; NULL: none */
} api_status;

#define API_FULL_RATIO   0.95  /* map use above this: "store":"full" */
#define API_FULL_RECENT_MS 60000 /* a STORE_FULL this recent: "store":"full" */

/* Health JSON; returns 0, or a negative code when the store cannot be read
 * (b then holds an error object and the caller answers 503). */
/* GET /api/v1/tasks (api_tasks.c). */
int api_render_tasks(jbuf *b, store *st, int64_t now_ms);

int api_render_health(jbuf *b, api_status *s, int64_t now_mono_ms);
/* GET /api/v1/clinics and its /metrics families (api_clinics.c): each
 * clinic gateway known, whether it is connected, when it was last heard,
 * and what waits for it in the outbox since when. */
int  api_render_clinics(jbuf *b, api_status *s, int64_t now_wall_ms);
void api_render_clinic_metrics(jbuf *b, api_status *s);
/* Prometheus text exposition format 0.0.4. */
int api_render_metrics(jbuf *b, api_status *s, int64_t now_mono_ms);

/* ---- lookups and repeats (api_reports.c) ------------------------- */

/* Per asking facility: exams answered recognised / not, and repeats by
 * reason; rendered on /metrics.  Thread-safe; bounded (API_COUNTER_ROWS). */
#define API_COUNTER_ROWS 1024
typedef struct api_counters api_counters;
api_counters *api_counters_new(void);
void          api_counters_free(api_counters **c);
void          api_count_lookup(api_counters *c, const char *facility, unsigned recognised, unsigned not_recognised);
void          api_count_repeat(api_counters *c, const char *facility, const char *reason);
void          api_render_lookup_metrics(jbuf *b, api_counters *c);
/* The repeats recorded in the store (at start: counters survive restarts). */
void          api_counters_load(api_counters *c, store *st);

int64_t api_now_ms(void);      /* wall clock, for audit records and "received" times */
int64_t api_mono_ms(void);     /* monotonic, for uptime and recency */

/* Connections held open per client address (api_addrs.c). */
typedef struct api_addrs api_addrs;
api_addrs *api_addrs_new(int limit);
void       api_addrs_free(api_addrs **t);
bool       api_addrs_full(api_addrs *t, const struct sockaddr *sa); /* holds the limit already */
void       api_addrs_add(api_addrs *t, const struct sockaddr *sa, int delta); /* +1 opened, -1 closed */
int64_t api_mono_us(void);     /* monotonic, for the handling-time histogram */

/* ---- the server and one request (api.c), for handlers in api_*.c -- */

struct MHD_Connection;
struct MHD_Daemon;
struct MHD_Response;

struct api_server {
    struct MHD_Daemon *d;
    store             *st;
    hub_metrics       *metrics;
    hub_metrics        own_metrics; /* when the caller passes none */
    api_hcache        *cache;   /* instance headers as DICOM JSON */
    api_bcache        *bcache;  /* whole study details */
    api_lcache        *lcache;  /* lookup answers */
    api_auditor       *auditor;
    api_status         status;
    api_counters      *counters;
    apikeys           *keys;
    recog             *recog;
    peers             *peers;
    char               name[PEER_NAME_MAX];
    uint16_t           port;
    int                max_per_address;   /* http-max-per-address; 0: no limit */
    api_addrs         *addrs;             /* with it, the connections each address holds */
    char              *dicomweb_origins; /* api_config's, copied; NULL: none */
    _Atomic int64_t    refused_logged_ms; /* its refusals: last logged (monotonic) */
    _Atomic uint64_t   refused_unlogged;  /* and how many since */
};

#define API_BODY_IN_MAX 16384 /* a POST body */

/* One request being answered. */
typedef struct api_req {
    api_server            *a;
    struct MHD_Connection *c;
    const char            *url;
    const char            *arg;     /* the {UID} of the route, NUL-terminated copy in argbuf */
    char                   argbuf[STORE_UID_MAX + 1];
    const char            *peer;    /* /api/v1/peers/{name}/...: the name (in peerbuf) */
    char                   peerbuf[PEER_NAME_MAX];
    char                   who[80]; /* "facility:<name>" with a key, else "http:<peer ip>" */
    char                   facility[APIKEY_FACILITY_MAX]; /* "" without a key */
    const char            *body;    /* POST: the request body (NUL-terminated) */
    size_t                 body_len;
} api_req;

/* Each returns libmicrohttpd's MHD_YES/MHD_NO (an int here). */
int  api_queue(api_req *r, unsigned status, struct MHD_Response *resp, const char *type);
int  api_send_body(api_req *r, unsigned status, jbuf *b, const char *type);
int  api_send_json(api_req *r, unsigned status, jbuf *b);
int  api_send_error(api_req *r, unsigned status, const char *msg);
int  api_send_bad_param(api_req *r, const char *name, const char *why);
int  api_send_audit_failed(api_req *r, jbuf *discard);
void api_count_error(api_req *r, unsigned status);
/* Queue the access's audit record (before any patient data leaves). */
int  api_req_audit(api_req *r, const char *what, const char *study_uid, const char *detail);

/* The study list /api/v1/studies and QIDO-RS answer (api.c): the query
 * parsed from p into *q, each study of the page rendered by one() into
 * out (comma-separated), *total matches, the access audited.  True to
 * answer from out; false with the answer (a refusal) queued in *answered. */
typedef void (*api_study_renderer)(jbuf *b, const store_study *st, void *ctx);
bool api_list_studies(api_req *r, const api_params *p, api_study_renderer one, void *ctx, api_list_query *q,
                      jbuf *out, int *total, int *answered);

/* Handlers of api_reports.c and api_peer.c. */
int api_h_reports(api_req *r, const api_params *p);
int api_h_report(api_req *r, const api_params *p);
/* Shared by the HTTP lookups and a reader's priors (api_reader.c). */
int  local_exams(api_server *a, const char *patient, int64_t since, const char *type, const char *prefix, jbuf *b,
                 unsigned *n, unsigned *recognised);
void splice_peer(jbuf *b, peer_answer *pa, unsigned *n, unsigned *recognised, unsigned *got);
int  report_answer(api_server *a, const char *id, const char *prefix, jbuf *b, char study[STORE_UID_MAX]);
int api_h_repeat(api_req *r, const api_params *p);
/* /dicom-web/... (api_dicomweb.c): QIDO-RS and WADO-RS. */
int api_h_dicomweb(api_req *r, const api_params *p);

/* What a path below /dicom-web names (api_dicomweb_path.c). */
typedef enum api_dw_what {
    API_DW_SEARCH_STUDIES, API_DW_SEARCH_SERIES, API_DW_SEARCH_INSTANCES, API_DW_METADATA, API_DW_RETRIEVE,
    API_DW_FRAMES, API_DW_RENDERED /* an instance's first frame, or frames/{n}/rendered: frames[0] */
} api_dw_what;
#define API_DW_FRAMES_MAX 64 /* frame numbers one request may list */
typedef struct api_dw_path {
    const char *study, *series, *instance; /* NULL above the level named; point into buf */
    api_dw_what what;
    char        buf[3][STORE_UID_MAX + 1]; /* a longer segment is cut to STORE_UID_MAX: no longer a UID */
    uint32_t    frames[API_DW_FRAMES_MAX]; /* API_DW_FRAMES: the frame numbers asked, 1-based, in order */
    int         n_frames;
} api_dw_path;
/* rest: the path after "/dicom-web" ("/studies/..."); false when it names
 * nothing DICOMweb defines here. */
bool        api_dicomweb_path(const char *rest, api_dw_path *p);
/* The transfer syntax Accept asks instances in: "*" for as stored (also
 * when Accept is absent or names none), the UID into buf[n], or NULL when
 * Accept takes no application/dicom part. */
const char *api_dicomweb_accept_ts(const char *accept, char *buf, size_t n);
/* The same for frames (bulk data): "*" for as stored, "" when Accept
 * names no transfer syntax (uncompressed: PS3.18's default), the UID into
 * buf, or NULL when Accept takes neither application/octet-stream nor an
 * image type. */
const char *api_dicomweb_accept_frames(const char *accept, char *buf, size_t n);
/* The image type a rendered frame is sent as: "image/jpeg" (also when
 * Accept is absent or takes any image), "image/png", or NULL when Accept
 * takes neither. */
const char *api_dicomweb_accept_rendered(const char *accept);
int api_h_preview(api_req *r, const api_params *p);
int api_h_peer_file(api_req *r, const api_params *p);
int api_h_peer_preview(api_req *r, const api_params *p);
int api_h_peer_report(api_req *r, const api_params *p);

#endif
