/* api_clinics.c — the clinics as the lead hospital's operator watches
 * them: GET /api/v1/clinics and their /metrics families.
 *
 * A report or a critical-value alert (危急值) waits in the hub's outbox
 * until the clinic's gateway takes it; a gateway that is down (a power
 * cut, a link gone for hours) holds it back without anyone at the hub
 * knowing.  So each clinic gateway known (heard on the edge link since the
 * hub started, or allowed to connect) is listed with whether it is
 * connected, when it was last heard, and what waits for it since when:
 * the operator phones the clinic.  serve logs the same when an alert has
 * waited too long (--alert-warn-seconds). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "hub/api_private.h"

#define MAX_ROWS 1024

typedef struct clinic_row {
    link_clinic          seen;
    store_outbox_waiting waiting;
} clinic_row;

typedef struct rows {
    clinic_row *r;
    int         n;
} rows;

static clinic_row *row_of(rows *rs, const char *facility)
{
    for (int i = 0; i < rs->n; i++)
        if (!strcmp(rs->r[i].seen.facility, facility))
            return &rs->r[i];
    if (rs->n == MAX_ROWS)
        return NULL;
    clinic_row *r = &rs->r[rs->n++];
    memset(r, 0, sizeof *r);
    snprintf(r->seen.facility, sizeof r->seen.facility, "%s", facility);
    return r;
}

static int add_waiting(void *ctx, const store_outbox_waiting *w)
{
    clinic_row *r = row_of(ctx, w->facility);
    if (r)
        r->waiting = *w;
    return 0;
}

static int by_facility(const void *a, const void *b)
{
    return strcmp(((const clinic_row *)a)->seen.facility, ((const clinic_row *)b)->seen.facility);
}

/* Every clinic known or with something waiting, by name; rs->r malloc'd. */
static int collect(api_status *s, rows *rs)
{
    rs->n = 0;
    if (!(rs->r = calloc(MAX_ROWS, sizeof *rs->r)))
        return -1;
    if (s->clinics) {
        link_clinic *k = calloc(MAX_ROWS, sizeof *k);
        int n = k ? s->clinics(s->clinics_ctx, k, MAX_ROWS) : 0;
        for (int i = 0; i < n; i++) {
            clinic_row *r = row_of(rs, k[i].facility);
            if (r)
                r->seen = k[i];
        }
        free(k);
    }
    if (store_outbox_summary(s->st, add_waiting, rs) < 0) {
        free(rs->r);
        return -1;
    }
    qsort(rs->r, (size_t)rs->n, sizeof *rs->r, by_facility);
    return 0;
}

/* A report's id (which alert to phone about), or null. */
static void id_or_null(jbuf *b, const char *key, const char *id)
{
    jb_printf(b, ",\"%s\":", key);
    if (*id)
        jb_str(b, id);
    else
        jb_puts(b, "null");
}

static void iso_or_null(jbuf *b, const char *key, int64_t ms)
{
    if (!ms) {
        jb_printf(b, ",\"%s\":null", key);
        return;
    }
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char when[32] = "?";
    if (gmtime_r(&t, &tm))
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    jb_printf(b, ",\"%s\":\"%s\"", key, when);
}

int api_render_clinics(jbuf *b, api_status *s, int64_t now_wall_ms)
{
    rows rs;
    if (collect(s, &rs) < 0) {
        jb_puts(b, "{\"error\":\"the store cannot be read\"}");
        return -1;
    }
    jb_puts(b, "{\"clinics\":[");
    for (int i = 0; i < rs.n; i++) {
        const clinic_row *r = &rs.r[i];
        jb_puts(b, i ? ",{\"facility\":" : "{\"facility\":");
        jb_str(b, r->seen.facility);
        jb_printf(b, ",\"connected\":%s", r->seen.connected ? "true" : "false");
        iso_or_null(b, "last_seen", r->seen.last_seen_ms);
        jb_printf(b, ",\"waiting\":{\"alerts\":%u,\"reports\":%u", r->waiting.alerts, r->waiting.reports);
        iso_or_null(b, "oldest_alert", r->waiting.oldest_alert_ms);
        id_or_null(b, "oldest_alert_id", r->waiting.oldest_alert_id);
        iso_or_null(b, "oldest_report", r->waiting.oldest_report_ms);
        int64_t oldest = r->waiting.oldest_alert_ms, unread = r->waiting.oldest_unread_ms;
        jb_printf(b, ",\"oldest_alert_seconds\":%lld", oldest ? (long long)((now_wall_ms - oldest) / 1000) : 0LL);
        /* taken by the gateway, not yet confirmed read by a person there */
        jb_printf(b, ",\"unread_alerts\":%u", r->waiting.unread_alerts);
        iso_or_null(b, "oldest_unread_alert", unread);
        id_or_null(b, "oldest_unread_alert_id", r->waiting.oldest_unread_id);
        jb_printf(b, ",\"oldest_unread_seconds\":%lld}}", unread ? (long long)((now_wall_ms - unread) / 1000) : 0LL);
    }
    jb_puts(b, "]}");
    free(rs.r);
    return 0;
}

void api_render_clinic_metrics(jbuf *b, api_status *s)
{
    rows rs;
    if (collect(s, &rs) < 0)
        return;
    for (int i = 0; i < rs.n; i++) /* names are checked (conf_name_ok); a label value must never break a line */
        for (char *c = rs.r[i].seen.facility; *c; c++)
            if (*c == '"' || *c == '\\' || *c == '\n')
                *c = '_';
    jb_puts(b, "# HELP dxhub_clinic_connected 1 when the clinic's gateway was heard on the edge link in the last "
               "20 s.\n# TYPE dxhub_clinic_connected gauge\n");
    for (int i = 0; i < rs.n; i++)
        jb_printf(b, "dxhub_clinic_connected{facility=\"%s\"} %d\n", rs.r[i].seen.facility, rs.r[i].seen.connected);
    jb_puts(b, "# HELP dxhub_clinic_last_seen_timestamp_seconds When the clinic's gateway was last heard (Unix "
               "time); absent when not since the hub started.\n"
               "# TYPE dxhub_clinic_last_seen_timestamp_seconds gauge\n");
    for (int i = 0; i < rs.n; i++)
        if (rs.r[i].seen.last_seen_ms)
            jb_printf(b, "dxhub_clinic_last_seen_timestamp_seconds{facility=\"%s\"} %lld\n", rs.r[i].seen.facility,
                      (long long)(rs.r[i].seen.last_seen_ms / 1000));
    jb_puts(b, "# HELP dxhub_outbox_waiting Reports and critical-value alerts the clinic's gateway has not taken "
               "yet.\n# TYPE dxhub_outbox_waiting gauge\n");
    for (int i = 0; i < rs.n; i++) {
        jb_printf(b, "dxhub_outbox_waiting{facility=\"%s\",kind=\"alert\"} %u\n", rs.r[i].seen.facility,
                  rs.r[i].waiting.alerts);
        jb_printf(b, "dxhub_outbox_waiting{facility=\"%s\",kind=\"report\"} %u\n", rs.r[i].seen.facility,
                  rs.r[i].waiting.reports);
    }
    jb_puts(b, "# HELP dxhub_alerts_unread Alerts the clinic's gateway took that no person there has confirmed "
               "reading (the nurses' page, or dxhub reports --ack).\n# TYPE dxhub_alerts_unread gauge\n");
    for (int i = 0; i < rs.n; i++)
        jb_printf(b, "dxhub_alerts_unread{facility=\"%s\"} %u\n", rs.r[i].seen.facility,
                  rs.r[i].waiting.unread_alerts);
    jb_puts(b, "# HELP dxhub_outbox_oldest_timestamp_seconds When the oldest item of its kind waiting for the "
               "clinic was queued (Unix time): alert on an old critical-value alert.\n"
               "# TYPE dxhub_outbox_oldest_timestamp_seconds gauge\n");
    for (int i = 0; i < rs.n; i++) {
        const store_outbox_waiting *w = &rs.r[i].waiting;
        if (w->oldest_alert_ms)
            jb_printf(b, "dxhub_outbox_oldest_timestamp_seconds{facility=\"%s\",kind=\"alert\"} %lld\n",
                      rs.r[i].seen.facility, (long long)(w->oldest_alert_ms / 1000));
        if (w->oldest_report_ms)
            jb_printf(b, "dxhub_outbox_oldest_timestamp_seconds{facility=\"%s\",kind=\"report\"} %lld\n",
                      rs.r[i].seen.facility, (long long)(w->oldest_report_ms / 1000));
    }
    free(rs.r);
}
