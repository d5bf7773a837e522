/* api_peer.c — another hub's exams through this hub's API:
 *   GET /api/v1/peers/{hub}/instances/{uid}/file     (stored bytes, streamed)
 *   GET /api/v1/peers/{hub}/instances/{uid}/preview.png
 *   GET /api/v1/peers/{hub}/reports/{id}
 * The links of a consortium lookup lead here, so a facility needs a key at
 * its own hub only; the other hub sees this hub's peer key and the asking
 * facility's name (audited on both sides).  A file travels in
 * PEER_FETCH_MAX pieces, each asked for when libmicrohttpd wants it:
 * memory stays bounded whatever the instance's size. */
#include <errno.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hub/api_private.h"
#include "codecs/banned.h"

static int peer_error(api_req *r, int rc, const char *why)
{
    unsigned status = rc == -ENOENT      ? MHD_HTTP_NOT_FOUND
                      : rc == -ETIMEDOUT ? MHD_HTTP_GATEWAY_TIMEOUT
                                         : MHD_HTTP_BAD_GATEWAY;
    char msg[256];
    snprintf(msg, sizeof msg, "hub %s: %s", r->peer, why[0] ? why : strerror(-rc));
    return api_send_error(r, status, msg);
}

typedef struct peer_stream {
    peers   *p;
    char     name[PEER_NAME_MAX], sop[STORE_UID_MAX], asking[APIKEY_FACILITY_MAX];
    uint64_t off, len;     /* the range served */
    char    *first;        /* the first piece, fetched before answering */
    size_t   first_len;
} peer_stream;

static ssize_t peer_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    peer_stream *s = cls;
    if (pos >= s->len)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (pos < s->first_len) {
        size_t n = s->first_len - pos < max ? s->first_len - (size_t)pos : max;
        memcpy(buf, s->first + pos, n);
        return (ssize_t)n;
    }
    size_t want = s->len - pos < max ? (size_t)(s->len - pos) : max;
    if (want > PEER_FETCH_MAX)
        want = PEER_FETCH_MAX;
    size_t got = 0;
    uint64_t total = 0;
    char why[160];
    if (peers_fetch(s->p, s->name, s->sop, s->off + pos, want, s->asking, buf, &got, &total, why, sizeof why) < 0 ||
        !got)
        return MHD_CONTENT_READER_END_WITH_ERROR; /* the client sees a short body */
    return (ssize_t)got;
}

static void peer_stream_free(void *cls)
{
    peer_stream *s = cls;
    free(s->first);
    free(s);
}

int api_h_peer_file(api_req *r, const api_params *p)
{
    if (!api_valid_uid(r->arg))
        return api_send_bad_param(r, "SOPInstanceUID", "a UID: digits and dots, at most 64");
    if (!r->a->peers)
        return api_send_error(r, MHD_HTTP_NOT_FOUND, "this hub has no peer hubs");
    uint64_t off = 0, len = UINT64_MAX;
    if (p->v[API_P_OFFSET] && !api_parse_uint(p->v[API_P_OFFSET], UINT64_MAX >> 1, &off))
        return api_send_bad_param(r, "offset", "a byte count");
    if (p->v[API_P_LENGTH] && !api_parse_uint(p->v[API_P_LENGTH], UINT64_MAX >> 1, &len))
        return api_send_bad_param(r, "length", "a byte count");
    peer_stream *s = calloc(1, sizeof *s);
    if (!s || !(s->first = malloc(PEER_FETCH_MAX))) {
        free(s);
        return MHD_NO;
    }
    s->p = r->a->peers;
    snprintf(s->name, sizeof s->name, "%s", r->peer);
    snprintf(s->sop, sizeof s->sop, "%s", r->arg);
    snprintf(s->asking, sizeof s->asking, "%s", r->facility);
    s->off = off;
    uint64_t total = 0;
    char why[160] = "";
    size_t want = len < PEER_FETCH_MAX ? (size_t)len : PEER_FETCH_MAX;
    int rc = peers_fetch(s->p, s->name, s->sop, off, want, s->asking, s->first, &s->first_len, &total, why,
                         sizeof why);
    char detail[STORE_UID_MAX + 96];
    snprintf(detail, sizeof detail, "%s via hub %s", r->arg, r->peer);
    if (api_req_audit(r, "read-instance", "", detail) < 0) {
        peer_stream_free(s);
        return api_send_audit_failed(r, NULL);
    }
    if (rc < 0) {
        peer_stream_free(s);
        return peer_error(r, rc, why);
    }
    if (off > total) {
        peer_stream_free(s);
        return api_send_bad_param(r, "offset", "a byte count within the instance's size");
    }
    s->len = total - off < len ? total - off : len;
    if (s->first_len > s->len)
        s->first_len = (size_t)s->len;
    struct MHD_Response *resp =
        MHD_create_response_from_callback(s->len, PEER_FETCH_MAX, peer_read, s, peer_stream_free);
    if (!resp) {
        peer_stream_free(s);
        return MHD_NO;
    }
    bool bulk = p->v[API_P_OFFSET] || p->v[API_P_LENGTH];
    return api_queue(r, MHD_HTTP_OK, resp, bulk ? "application/octet-stream" : "application/dicom");
}

static void body_free(void *p) { free(p); }

int api_h_peer_preview(api_req *r, const api_params *p)
{
    (void)p;
    if (!api_valid_uid(r->arg))
        return api_send_bad_param(r, "SOPInstanceUID", "a UID: digits and dots, at most 64");
    if (!r->a->peers)
        return api_send_error(r, MHD_HTTP_NOT_FOUND, "this hub has no peer hubs");
    char *png = NULL, why[160] = "";
    size_t len = 0;
    int rc = peers_preview(r->a->peers, r->peer, r->arg, r->facility, &png, &len, why, sizeof why);
    char detail[STORE_UID_MAX + 96];
    snprintf(detail, sizeof detail, "%s via hub %s", r->arg, r->peer);
    if (api_req_audit(r, "read-preview", "", detail) < 0) {
        free(png);
        return api_send_audit_failed(r, NULL);
    }
    if (rc < 0)
        return peer_error(r, rc, why);
    struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback(len, png, body_free);
    if (!resp) {
        free(png);
        return MHD_NO;
    }
    return api_queue(r, MHD_HTTP_OK, resp, "image/png");
}

int api_h_peer_report(api_req *r, const api_params *p)
{
    (void)p;
    if (!r->a->peers)
        return api_send_error(r, MHD_HTTP_NOT_FOUND, "this hub has no peer hubs");
    char *json = NULL, why[160] = "";
    size_t len = 0;
    int rc = peers_report(r->a->peers, r->peer, r->arg, r->facility, &json, &len, why, sizeof why);
    char detail[160];
    snprintf(detail, sizeof detail, "%.60s via hub %.60s", r->arg, r->peer);
    if (api_req_audit(r, "read-report", "", detail) < 0) {
        free(json);
        return api_send_audit_failed(r, NULL);
    }
    if (rc < 0)
        return peer_error(r, rc, why);
    struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback(len, json, body_free);
    if (!resp) {
        free(json);
        return MHD_NO;
    }
    return api_queue(r, MHD_HTTP_OK, resp, "application/json; charset=utf-8");
}
