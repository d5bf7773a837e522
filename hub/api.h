/* api.h — the hub's HTTP API (libmicrohttpd), hub-private.
 *
 * Routes (GET and HEAD unless said; another method on a known path is 405):
 *   /api/v1/studies                       study list, filtered and paged
 *   /api/v1/studies/{StudyInstanceUID}    a study, its series and instances (DICOM JSON)
 *   /api/v1/instances/{SOPInstanceUID}/file
 *                                         the stored Part 10 bytes, streamed;
 *                                         HTTP Range, or ?offset=&length= (the
 *                                         BulkDataURIs of the metadata)
 *   /api/v1/instances/{SOPInstanceUID}/conflicts
 *                                         the copy kept under that UID and every
 *                                         other content received under it, kept
 *                                         apart (the study detail lists their
 *                                         digests in the instance's dxhub.conflicts)
 *   /api/v1/instances/{SOPInstanceUID}/preview.png   frame 1 through the display pipeline
 *   /api/v1/reports?PatientID=&since=&type=&scope=   a patient's signed exams with
 *                                         recognition (api_reports.c; scope
 *                                         consortium, the default, asks the peer hubs)
 *                                         (an addendum is an exam of its own, version 2..,
 *                                         "supersedes": the report it follows; else null)
 *   /api/v1/reports/{id}                  the report's bytes, signature, chain, exam
 *   POST /api/v1/exams/{StudyInstanceUID}/repeat     a physician repeats an exam
 *   /api/v1/peers/{hub}/instances/{uid}/file, .../preview.png, /api/v1/peers/{hub}/reports/{id}
 *                                         another hub's, through the peer link (api_peer.c)
 *   /dicom-web/studies[/{s}[/series[/{se}[/instances[/{i}[/frames/{n,..}]]]]]][/metadata]
 *                                         DICOMweb (api_dicomweb.c): QIDO-RS
 *                                         searches, WADO-RS metadata and
 *                                         instances as multipart/related,
 *                                         each as it was received
 *   /api/v1/tasks                         the reading worklist
 *   /api/v1/health                        JSON status for people and probes
 *   /metrics                              Prometheus text format
 * Transport: HTTPS when the hub has a certificate (TLS 1.2 or 1.3,
 * GnuTLS through libmicrohttpd); plain HTTP only on a loopback address.
 * Authentication: a facility API key (Authorization: Bearer TOKEN,
 * apikeys.h) for lookups, repeats and peers always; for the other
 * patient-data routes once the hub has any key (before that, loopback
 * clients only); health and metrics are open.  401 without a key, 403
 * with one the hub does not know.
 * Unknown paths answer 404, bad query parameters 400 naming the parameter,
 * both as JSON ({"error":..}).  Every access to patient data (list, detail,
 * instance bytes) appends an audit record to the store's trail (who
 * "http:<peer ip>", what "list-studies" / "read-study" / "read-instance" /
 * "read-conflicts"):
 * queued before the answer is sent and written behind it by one thread,
 * everything queued in one transaction (within ~50 ms), so a lookup does
 * not wait for an fsync; identical
 * accesses queued meanwhile share a record carrying their count
 * ("accesses=N").  If the store keeps refusing audit records, patient data
 * is withheld (503).  api_stop writes every queued record.  Nothing here
 * logs: no patient data can leak to a log, and the caller decides what to
 * print.
 *
 * Memory: instance headers' JSON (by digest) and whole study details (while
 * their study record is unchanged) are cached, 64 MiB each at most.
 *
 * Threads: libmicrohttpd's epoll thread pool (cfg->threads; 0: one per
 * CPU the process may run on, its affinity) answers requests; the store and metrics are only
 * read (and audited) from them, both being safe from any thread.
 */
#ifndef DXHUB_API_H
#define DXHUB_API_H

#include <stddef.h>
#include <stdint.h>
#include "hub/apikeys.h"
#include "hub/link.h"
#include "hub/metrics.h"
#include "hub/peer.h"
#include "hub/recog.h"
#include "hub/store.h"

typedef struct api_server api_server;

typedef struct api_config {
    const char  *bind;    /* numeric IPv4 or IPv6 address; NULL: "127.0.0.1" */
    uint16_t     port;    /* 0 = ephemeral (see api_port) */
    store       *st;      /* borrowed; must outlive the server (api_stop first) */
    hub_metrics *metrics; /* borrowed; may be NULL (the server then keeps its own) */
    int          threads; /* request threads (at most 64); 0: one per CPU of the process's affinity */
    int          max_per_address; /* connections one client address may hold open; 0: no limit */
    apikeys     *keys;    /* borrowed; NULL: no facility keys (lookups refused) */
    recog       *recog;   /* borrowed; NULL: no lookups (404) */
    peers       *peers;   /* borrowed; NULL: this hub asks no other hub */
    const char  *name;    /* this hub's name in lookup answers; NULL: "hub" */
    /* HTTPS with this certificate (PEM, its chain after it) and key (PEM,
     * pki_tls_server_load checked them); NULL: plain HTTP, which api_start
     * refuses on any address but loopback. */
    const char  *tls_cert_pem, *tls_key_pem;
    /* The clinic gateways known (heard on the edge link, or allowed), for
     * GET /api/v1/clinics and /metrics; NULL: only those with something
     * waiting in the outbox are listed. */
    int        (*clinics)(void *ctx, link_clinic *out, int max);
    void        *clinics_ctx;
    /* Web origins ("https://viewer.example", comma-separated, exact) whose
     * pages may read /dicom-web/ from a browser (CORS: the answer names the
     * origin, a preflight OPTIONS is answered); NULL: no cross-origin reads.
     * The key and the audit are as for any request. */
    const char  *dicomweb_origins;
} api_config;

/* Bind, listen and start serving.  On failure returns a negative errno-like
 * code and writes the reason into err ("cannot bind 127.0.0.1:8410: Address
 * already in use"); *out stays NULL. */
int api_start(const api_config *cfg, api_server **out, char *err, size_t errlen);

/* The port actually bound (the ephemeral one when cfg->port was 0). */
uint16_t api_port(const api_server *a);

/* Stop accepting, finish the requests in flight, free.  NULL-safe; NULLs *a. */
void api_stop(api_server **a);

/* What this hub answers another hub (peer.h's peer_handlers, ctx the
 * api_server): the local exams of a lookup, a report, a preview, each
 * audited as who. */
int api_peer_lookup(void *a, const peer_lookup_q *q, const char *who, char **out, size_t *len);
int api_peer_report(void *a, const char *id, const char *link_prefix, const char *who, char **out, size_t *len);
int api_peer_preview(void *a, const char *sop, const char *who, char **out, size_t *len, char *why, size_t whylen);
int api_peer_audit(void *a, const char *who, const char *what, const char *study, const char *detail);

/* What a reader's workstation asks about a task's patient (the reader
 * link's PRIORS and PRIOR, ctx the api_server), audited as who
 * ("reader:<id>"; why, when not NULL, added to the record: asked for the
 * workstation, not by the reader): the lookup answer of GET /api/v1/reports for patient
 * (this hub's exams and, when it has peers, theirs), and one report as GET
 * /api/v1/reports/{id} gives it (hub: a peer's name, or NULL/this hub's
 * name for a local one).  0 with malloc'd JSON in *out, or a negative code
 * (-ENOENT: no such report). */
int api_reader_priors(void *a, const char *patient, const char *who, const char *why, char **out, size_t *len);
int api_reader_report(void *a, const char *hub, const char *id, const char *who, char **out, size_t *len);
/* Up to len bytes of instance sop as peer hub hub stores it, from offset,
 * for a reader comparing that hub's exam (peers_fetch; audited there as
 * this hub's read for who).  -ENOENT when there are no peers. */
int api_reader_peer_fetch(void *a, const char *hub, const char *sop, uint64_t offset, size_t len, const char *who,
                          void *buf, size_t *got, uint64_t *total, char *why, size_t whylen);

#endif
