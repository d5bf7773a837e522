/* api_metrics.c — GET /api/v1/health (JSON for people and probes) and
 * GET /metrics (Prometheus text exposition format 0.0.4: one # HELP and
 * one # TYPE line per family, counters ending in _total, a cumulative
 * histogram with le="+Inf", _sum and _count). */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "hub/api_private.h"
#include "codecs/banned.h"

/* The store refused data recently: remember when put_full last grew. */
static bool store_full_recently(api_status *s, const store_stats *ss, int64_t now)
{
    uint64_t seen = atomic_load(&s->last_full_count);
    if (ss->put_full > seen && atomic_compare_exchange_strong(&s->last_full_count, &seen, ss->put_full))
        atomic_store(&s->last_full_mono_ms, now);
    int64_t at = atomic_load(&s->last_full_mono_ms);
    return at && now - at < API_FULL_RECENT_MS;
}

static double used_ratio(const store_stats *ss)
{
    return ss->map_size ? (double)ss->map_used / (double)ss->map_size : 0.0;
}

static int64_t uptime_ms(const api_status *s, int64_t now_mono)
{
    /* hub_metrics.started_ms is wall-clock time set by the serving role;
     * prefer it (the process's uptime), else the API's own start. */
    int64_t started = s->metrics ? atomic_load(&s->metrics->started_ms) : 0;
    if (started > 0) {
        int64_t up = api_now_ms() - started;
        return up > 0 ? up : 0;
    }
    return now_mono - s->started_mono_ms;
}

/* A deadline (Unix seconds; 0: none) as the seconds left to it, negative once passed. */
static void seconds_left(jbuf *b, const char *key, int64_t at)
{
    if (at > 0)
        jb_printf(b, ",\"%s\":%lld", key, (long long)(at - (int64_t)time(NULL)));
}

/* "peers": each hub of peers.conf, whether it answered when last asked
 * (null: not asked since the start) and when it last answered. */
static void peer_health(jbuf *b, peers *p)
{
    peer_state st[PEERS_MAX];
    size_t n = p ? peers_states(p, st, PEERS_MAX) : 0;
    jb_puts(b, ",\"peers\":[");
    for (size_t i = 0; i < n; i++) {
        jb_printf(b, "%s{\"hub\":", i ? "," : "");
        jb_str(b, st[i].name);
        jb_printf(b, ",\"up\":%s,\"quiet\":%s,\"last_answer\":",
                  !st[i].asked ? "null" : st[i].answered ? "true" : "false", st[i].quiet ? "true" : "false");
        if (st[i].answer_ms)
            jb_time(b, st[i].answer_ms);
        else
            jb_puts(b, "null");
        jb_put(b, "}", 1);
    }
    jb_put(b, "]", 1);
}

int api_render_health(jbuf *b, api_status *s, int64_t now)
{
    store_stats ss;
    int rc = store_get_stats(s->st, &ss);
    if (rc < 0) {
        jb_printf(b, "{\"status\":\"error\",\"store\":\"unreadable\",\"uptime_s\":%lld}",
                  (long long)(uptime_ms(s, now) / 1000));
        return rc;
    }
    bool full = used_ratio(&ss) > API_FULL_RATIO || store_full_recently(s, &ss, now);
    jb_printf(b, "{\"status\":\"ok\",\"uptime_s\":%lld,\"studies\":{", (long long)(uptime_ms(s, now) / 1000));
    for (int i = 0; i < STUDY_STATE_COUNT; i++)
        jb_printf(b, "%s\"%s\":%llu", i ? "," : "", study_state_name((study_state)i),
                  (unsigned long long)ss.studies_by_state[i]);
    jb_printf(b, "},\"instances\":%llu,\"conflicts\":%llu,\"map_used_bytes\":%llu,\"map_size_bytes\":%llu,"
                 "\"map_used_ratio\":%.4f,\"disk_free_bytes\":%llu,\"disk_size_bytes\":%llu,\"store\":\"%s\"",
              (unsigned long long)ss.instances, (unsigned long long)ss.conflicts,
              (unsigned long long)ss.map_used, (unsigned long long)ss.map_size, used_ratio(&ss),
              (unsigned long long)ss.disk_free, (unsigned long long)ss.disk_size, full ? "full" : "ok");
    if (s->metrics) { /* null: no readers.conf in force (missing or refused) */
        int64_t profiles = atomic_load(&s->metrics->reader_profiles);
        if (profiles < 0)
            jb_printf(b, ",\"reader_profiles\":null");
        else
            jb_printf(b, ",\"reader_profiles\":%lld", (long long)profiles);
        jb_printf(b, ",\"config_reload_failures\":%llu",
                  (unsigned long long)atomic_load(&s->metrics->config_reload_failures));
        seconds_left(b, "trust_deadline_s", atomic_load(&s->metrics->trust_deadline));
        seconds_left(b, "dicom_tls_certificate_expires_s", atomic_load(&s->metrics->dicom_tls_not_after));
        seconds_left(b, "tls_certificate_expires_s", atomic_load(&s->metrics->tls_not_after));
    }
    peer_health(b, s->peers);
    jb_printf(b, "}");
    return 0;
}

static void family(jbuf *b, const char *name, const char *type, const char *help)
{
    jb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample(jbuf *b, const char *name, uint64_t v)
{
    jb_printf(b, "%s %llu\n", name, (unsigned long long)v);
}

/* A deadline gauge (Unix seconds), left out while there is none (0). */
static void deadline_gauge(jbuf *b, const char *name, const char *help, int64_t at)
{
    if (at <= 0)
        return;
    family(b, name, "gauge", help);
    sample(b, name, (uint64_t)at);
}

static void labelled(jbuf *b, const char *name, const char *label, const char *value, uint64_t v)
{
    jb_printf(b, "%s{%s=\"%s\"} %llu\n", name, label, value, (unsigned long long)v);
}

static void store_results(jbuf *b, const store_stats *ss)
{
    static const char *const names[] = {"stored", "duplicate", "conflict", "full", "invalid", "failed"};
    const uint64_t v[] = {ss->put_stored, ss->put_duplicate, ss->put_conflict,
                          ss->put_full,   ss->put_invalid,   ss->put_failed};
    uint64_t total = 0;
    for (size_t i = 0; i < 6; i++)
        total += v[i];
    family(b, "dxhub_instances_received_total", "counter", "Instances offered to the store, whatever the result.");
    sample(b, "dxhub_instances_received_total", total);
    family(b, "dxhub_bytes_received_total", "counter", "Bytes of instances offered to the store.");
    sample(b, "dxhub_bytes_received_total", ss->bytes_received);
    family(b, "dxhub_store_results_total", "counter", "Store answers by result.");
    for (size_t i = 0; i < 6; i++)
        labelled(b, "dxhub_store_results_total", "result", names[i], v[i]);
}

/* store_stats keeps one count per bucket; Prometheus buckets are cumulative. */
static void commit_histogram(jbuf *b, const store_stats *ss)
{
    family(b, "dxhub_commits_total", "counter", "LMDB write transactions committed by the group committer.");
    sample(b, "dxhub_commits_total", ss->commits);
    family(b, "dxhub_commit_instances_total", "counter", "Instances made durable by those commits.");
    sample(b, "dxhub_commit_instances_total", ss->commit_instances);
    family(b, "dxhub_commit_duration_seconds", "histogram", "Time of one group commit, fsync included.");
    uint64_t cum = 0;
    for (int i = 0; i < 11; i++) {
        cum += ss->commit_us_buckets[i];
        jb_printf(b, "dxhub_commit_duration_seconds_bucket{le=\"%g\"} %llu\n", store_commit_bucket_ms[i] / 1000.0,
                  (unsigned long long)cum);
    }
    cum += ss->commit_us_buckets[11];
    jb_printf(b, "dxhub_commit_duration_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    jb_printf(b, "dxhub_commit_duration_seconds_sum %.6f\n", (double)ss->commit_us_sum / 1e6);
    /* _count equals the +Inf bucket by definition. */
    jb_printf(b, "dxhub_commit_duration_seconds_count %llu\n", (unsigned long long)cum);
}

static void store_gauges(jbuf *b, const store_stats *ss)
{
    family(b, "dxhub_studies", "gauge", "Studies in the store by state.");
    for (int i = 0; i < STUDY_STATE_COUNT; i++)
        labelled(b, "dxhub_studies", "state", study_state_name((study_state)i), ss->studies_by_state[i]);
    family(b, "dxhub_instances", "gauge", "Instances in the store.");
    sample(b, "dxhub_instances", ss->instances);
    family(b, "dxhub_conflicts", "gauge", "Conflicting copies kept apart (same UID, other bytes).");
    sample(b, "dxhub_conflicts", ss->conflicts);
    family(b, "dxhub_store_outside_commits_total", "counter",
           "Times commits to the store by another process were seen (every kept verdict checked again).");
    sample(b, "dxhub_store_outside_commits_total", ss->outside_commits);
    family(b, "dxhub_audit_records", "gauge", "Records in the audit trail.");
    sample(b, "dxhub_audit_records", ss->audit_records);
    family(b, "dxhub_lmdb_map_used_bytes", "gauge", "Bytes of the LMDB map in use.");
    sample(b, "dxhub_lmdb_map_used_bytes", ss->map_used);
    family(b, "dxhub_lmdb_map_size_bytes", "gauge", "Size of the LMDB map.");
    sample(b, "dxhub_lmdb_map_size_bytes", ss->map_size);
    family(b, "dxhub_store_runway_bytes", "gauge",
           "Zeroed space written ahead of the store's end (commits there flush no file-system metadata).");
    sample(b, "dxhub_store_runway_bytes", ss->runway_ahead);
    family(b, "dxhub_data_disk_free_bytes", "gauge",
           "Bytes the hub may still write on the file system holding its data folder.");
    sample(b, "dxhub_data_disk_free_bytes", ss->disk_free);
    family(b, "dxhub_data_disk_size_bytes", "gauge", "Size of the file system holding the data folder.");
    sample(b, "dxhub_data_disk_size_bytes", ss->disk_size);
}

/* A histogram in microseconds, rendered in seconds (the buckets of metrics.h). */
static void histogram(jbuf *b, const char *name, const char *help, const _Atomic uint64_t *buckets,
                      const _Atomic uint64_t *sum_us)
{
    family(b, name, "histogram", help);
    uint64_t cum = 0;
    for (int i = 0; i < HUB_HTTP_BUCKETS - 1; i++) {
        cum += atomic_load(&buckets[i]);
        jb_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, hub_http_bucket_ms[i] / 1000.0, (unsigned long long)cum);
    }
    cum += atomic_load(&buckets[HUB_HTTP_BUCKETS - 1]);
    jb_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
    jb_printf(b, "%s_sum %.6f\n", name, (double)atomic_load(sum_us) / 1e6);
    jb_printf(b, "%s_count %llu\n", name, (unsigned long long)cum);
}

static void process_counters(jbuf *b, const hub_metrics *m)
{
    family(b, "dxhub_errors_total", "counter", "Errors by kind.");
    for (int i = 0; i < HUB_ERR_KIND_COUNT; i++)
        labelled(b, "dxhub_errors_total", "kind", hub_error_kind_names[i], atomic_load(&m->errors[i]));
    family(b, "dxhub_http_requests_total", "counter", "HTTP requests answered by the API.");
    sample(b, "dxhub_http_requests_total", atomic_load(&m->http_requests));
    histogram(b, "dxhub_http_handling_seconds",
              "Time from an HTTP request received whole to its answer queued (the server's own part).",
              m->http_us_buckets, &m->http_us_sum);
    histogram(b, "dxhub_reader_offer_seconds",
              "Time from a reader's READY reaching the hub (or, when nothing fitted it, from the change that "
              "brought a task) to its TASK sent: the hub's own part of an offer.",
              m->offer_us_buckets, &m->offer_us_sum);
    family(b, "dxhub_dicom_associations_total", "counter", "DICOM associations accepted.");
    sample(b, "dxhub_dicom_associations_total", atomic_load(&m->dicom_associations));
    family(b, "dxhub_dicom_echoes_total", "counter", "DICOM C-ECHO requests answered.");
    sample(b, "dxhub_dicom_echoes_total", atomic_load(&m->dicom_echoes));
    int64_t profiles = atomic_load(&m->reader_profiles);
    family(b, "dxhub_reader_profiles", "gauge", "Reader profiles in force (readers.conf); 0 when none could be loaded.");
    sample(b, "dxhub_reader_profiles", profiles > 0 ? (uint64_t)profiles : 0);
    family(b, "dxhub_config_reload_failures_total", "counter",
           "SIGHUP reloads refused, the settings before them kept (the log says which file, line and why).");
    sample(b, "dxhub_config_reload_failures_total", atomic_load(&m->config_reload_failures));
    deadline_gauge(b, "dxhub_tls_certificate_expiry_timestamp_seconds",
                   "When the HTTP API's certificate expires (Unix time); renew it and restart the hub before.",
                   atomic_load(&m->tls_not_after));
    deadline_gauge(b, "dxhub_dicom_tls_certificate_expiry_timestamp_seconds",
                   "When the DICOM port's TLS certificate expires (Unix time): modalities cannot send after it; "
                   "renew it and restart the hub before.",
                   atomic_load(&m->dicom_tls_not_after));
    deadline_gauge(b, "dxhub_trust_deadline_timestamp_seconds",
                   "When the trust list starts refusing signed reports (Unix time): the earliest CA end or CRL "
                   "nextUpdate; re-sign and copy the CRL, or add the new CA certificate, before.",
                   atomic_load(&m->trust_deadline));
}

/* Each peer hub of peers.conf: whether its last answer came, and when it
 * last answered (the operator's alert: a hub of the consortium is down). */
static void peer_metrics(jbuf *b, peers *p)
{
    peer_state st[PEERS_MAX];
    size_t n = p ? peers_states(p, st, PEERS_MAX) : 0;
    family(b, "dxhub_peers", "gauge", "Other hubs in peers.conf.");
    sample(b, "dxhub_peers", n);
    family(b, "dxhub_peer_up", "gauge",
           "1 when the peer hub answered the last request to it, 0 when it did not (not asked since start: absent).");
    for (size_t i = 0; i < n; i++)
        if (st[i].asked)
            jb_printf(b, "dxhub_peer_up{hub=\"%s\"} %d\n", st[i].name, st[i].answered ? 1 : 0);
    family(b, "dxhub_peer_last_answer_timestamp_seconds", "gauge", "When the peer hub last answered (Unix time).");
    for (size_t i = 0; i < n; i++)
        if (st[i].answer_ms)
            jb_printf(b, "dxhub_peer_last_answer_timestamp_seconds{hub=\"%s\"} %.3f\n", st[i].name,
                      (double)st[i].answer_ms / 1000.0);
}

int api_render_metrics(jbuf *b, api_status *s, int64_t now)
{
    store_stats ss;
    int rc = store_get_stats(s->st, &ss);
    family(b, "dxhub_up", "gauge", "1 when the hub serves and its store can be read.");
    sample(b, "dxhub_up", rc == 0);
    family(b, "dxhub_uptime_seconds", "gauge", "Seconds since the hub started.");
    jb_printf(b, "dxhub_uptime_seconds %.3f\n", (double)uptime_ms(s, now) / 1000.0);
    if (rc == 0) {
        family(b, "dxhub_store_full", "gauge", "1 when the map is over 95% used or the store refused data (map or disk full) in the last minute.");
        sample(b, "dxhub_store_full", used_ratio(&ss) > API_FULL_RATIO || store_full_recently(s, &ss, now));
        store_results(b, &ss);
        commit_histogram(b, &ss);
        store_gauges(b, &ss);
    }
    process_counters(b, s->metrics);
    api_render_lookup_metrics(b, s->counters);
    if (rc == 0)
        api_render_clinic_metrics(b, s);
    peer_metrics(b, s->peers);
    return rc;
}
