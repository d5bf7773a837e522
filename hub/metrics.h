/* metrics.h — the hub's process counters, rendered by GET /metrics in the
 * Prometheus text format together with the store's own figures.  One
 * struct of atomics owned by the serving role and passed down (no globals). */
#ifndef DXHUB_METRICS_H
#define DXHUB_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

/* Errors by kind: the label value of dxhub_errors_total{kind="..."}. */
typedef enum hub_error_kind {
    HUB_ERR_INVALID_INSTANCE,   /* a received file that does not parse */
    HUB_ERR_STORE_FULL,         /* refused: LMDB map full */
    HUB_ERR_STORE_FAILED,       /* I/O or LMDB failure */
    HUB_ERR_ASSOC_REJECTED,     /* DICOM association refused (AE titles, limits) */
    HUB_ERR_HTTP_BAD_REQUEST,   /* 400s */
    HUB_ERR_HTTP_NOT_FOUND,     /* 404s */
    HUB_ERR_HTTP_UNAUTHORIZED,  /* 401/403 */
    HUB_ERR_PROTOCOL,           /* malformed ZeroMQ message */
    HUB_ERR_AUTH,               /* unknown or wrong-role key */
    HUB_ERR_HTTP_TOO_MANY,      /* an HTTP connection refused: its address had http-max-per-address open */
    HUB_ERR_KIND_COUNT
} hub_error_kind;

extern const char *const hub_error_kind_names[HUB_ERR_KIND_COUNT];

/* dxhub_http_handling_seconds and dxhub_reader_offer_seconds: upper
 * bounds (ms) of their buckets; the last bucket counts the rest. */
#define HUB_HTTP_BUCKETS 12
extern const double hub_http_bucket_ms[HUB_HTTP_BUCKETS - 1];

typedef struct hub_metrics {
    _Atomic uint64_t errors[HUB_ERR_KIND_COUNT];
    _Atomic uint64_t dicom_associations, dicom_echoes, http_requests;
    /* From a request complete to its answer queued: the server's own
     * time, apart from the network and the client. */
    _Atomic uint64_t http_us_buckets[HUB_HTTP_BUCKETS], http_us_sum;
    /* From a reader's credit (READY) reaching the reader link — or, for a
     * reader nothing fitted, from the change that brought a task — to its
     * TASK handed to ZeroMQ: the hub's own part of an offer. */
    _Atomic uint64_t offer_us_buckets[HUB_HTTP_BUCKETS], offer_us_sum;
    _Atomic int64_t  started_ms;
    /* Reader profiles in force (readers.conf); -1 none: missing or refused
     * at start (the log says why).  Shown by /health and dxhub status. */
    _Atomic int64_t  reader_profiles;
    /* SIGHUP reloads refused, the settings before them kept (the log
     * names the file, the line and why). */
    _Atomic uint64_t config_reload_failures;
    /* The HTTPS certificate's end of validity (Unix seconds); 0: plain
     * HTTP.  A renewed certificate takes a restart. */
    _Atomic int64_t  tls_not_after;
    _Atomic int64_t  dicom_tls_not_after; /* the same for the DICOM port's certificate; 0: no DICOM TLS */
    /* When the trust list starts refusing signed reports unless acted on
     * (trust_watch.h; Unix seconds, 1: already for a CA without a CRL);
     * 0: no trust list. */
    _Atomic int64_t  trust_deadline;
} hub_metrics;

static inline void hub_count_error(hub_metrics *m, hub_error_kind k)
{
    if (m)
        atomic_fetch_add_explicit(&m->errors[k], 1, memory_order_relaxed);
}

static inline int hub_bucket_of(uint64_t us)
{
    int b = 0;
    while (b < HUB_HTTP_BUCKETS - 1 && (double)us > hub_http_bucket_ms[b] * 1000.0)
        b++;
    return b;
}

static inline void hub_count_http(hub_metrics *m, uint64_t us)
{
    atomic_fetch_add_explicit(&m->http_us_buckets[hub_bucket_of(us)], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->http_us_sum, us, memory_order_relaxed);
}

static inline void hub_count_offer(hub_metrics *m, uint64_t us)
{
    if (!m)
        return;
    atomic_fetch_add_explicit(&m->offer_us_buckets[hub_bucket_of(us)], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->offer_us_sum, us, memory_order_relaxed);
}

#endif
