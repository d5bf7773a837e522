/* edge.h — the clinic gateway (`dxhub edge`, `dxhub push`).  Hub-private.
 *
 * Data path: modality C-STORE / watch folder / push → edge_prepare (link
 * compression, digest) → spool (durable, then acknowledged) → edge_link
 * (ZeroMQ to the hub; an item leaves the spool only on the hub's ACK). */
#ifndef DXHUB_EDGE_H
#define DXHUB_EDGE_H

#include <stddef.h>
#include <stdint.h>
#include "hub/keys.h"
#include "hub/spool.h"

#define EDGE_LINK_TS_DEFAULT "1.2.840.10008.1.2.4.80" /* JPEG-LS Lossless */
/* Transfers offered at once.  8, not 4: each batch of transfers is offered
 * behind the data of the one before, so the line idles about a round trip
 * per batch; with CT slices (~175 KB for the link) at 10 Mbit/s and 40 ms,
 * batches of 4 kept a 10 Mbit/s line 83% busy, batches of 8 (with
 * LINK_AHEAD in link_edge.c) 95% (bench/link.sh). */
#define EDGE_INFLIGHT_DEFAULT 8

typedef struct edge_config {
    const char *data_dir;     /* --data, default ./var/edge */
    const char *hub;          /* --hub tcp://HOST:PORT */
    const char *hub_key;      /* --hub-key: the hub's .pub file */
    const char *keys_dir;     /* --keys, default DATA/keys */
    const char *facility;     /* --facility */
    const char *bind;         /* --bind, default 127.0.0.1 */
    const char *aet;          /* --aet, default DXEDGE */
    const char *allow_ae;     /* --allow-ae */
    int         open_dicom;   /* --open-dicom */
    uint16_t    dicom_port;   /* --dicom-port, default 11113 */
    const char *dicom_tls_cert; /* --dicom-tls-cert: DICOM TLS with this certificate (PEM) */
    const char *dicom_tls_key;  /* --dicom-tls-key: its key */
    const char *dicom_tls_ca;   /* --dicom-tls-ca: callers' certificates must chain to these CAs */
    const char *watch_dir;    /* --watch (files taken in once complete, moved to WATCH/done) */
    const char *link_ts;      /* --link-ts, default JPEG-LS Lossless */
    int         max_inflight; /* transfers in flight, default EDGE_INFLIGHT_DEFAULT */
    const char *on_alert;     /* --on-alert: run for each alert the hub delivers (edge_alert.h); NULL: none */
} edge_config;

int edge_run(const edge_config *cfg);

/* Prepare one file for the link into tmp_dir (out_path gets the prepared
 * file's name); fills meta's UIDs, transfer syntax, size, digest, and
 * patient_id with the file's Patient ID ("" when none). */
int edge_prepare(const char *in, const char *tmp_dir, const char *link_ts, char *out_path, size_t out_len,
                 spool_item *meta, char patient_id[65], char *err, size_t errlen);

/* What became of a file given to edge_queue. */
typedef enum edge_outcome {
    EDGE_QUEUED = 0, /* durable in the spool */
    EDGE_BAD_FILE,   /* the file itself (not DICOM, unusable identifiers): giving it again does not help */
    EDGE_NO_ROOM,    /* the clinic's disk or spool is full: keep the file, give it again once there is room */
    EDGE_FAILED,     /* another failure (an I/O error): keep the file, give it again later */
} edge_outcome;

/* Prepare and queue files as one durable batch, then one marker per study
 * (count, priority, referral, note) when with_markers.  report (may be
 * NULL) is told about each file: queued, or what kept it out and why, once
 * its batch committed.  on_prepared (may be NULL) is told as soon as each file's
 * preparation (the slow part: compression) is over, whatever its outcome,
 * so a progress display moves file by file.  Returns the number of files
 * queued. */
typedef void (*edge_report_fn)(void *ctx, const char *path, const spool_item *it, edge_outcome outcome,
                               const char *error);
typedef void (*edge_prepared_fn)(void *ctx, const char *path);
int edge_queue(spool *sp, const char *const *paths, size_t n, int priority, int referral, const char *note,
               const char *source, const char *link_ts, int with_markers, edge_report_fn report,
               edge_prepared_fn on_prepared, void *ctx);

/* The watch folder on its own thread (edge_watch.c): files are queued
 * once no writer has them open, then moved to DIR/done or DIR/failed. */
typedef struct edge_watch edge_watch;
int  edge_watch_start(const char *dir, spool *sp, const char *link_ts, edge_watch **out, char *err, size_t errlen);
void edge_watch_stop(edge_watch **w);

/* The forwarding loop on its own thread. */
typedef struct edge_link edge_link;
typedef struct edge_link_config {
    void          *zctx;
    const char    *hub;          /* endpoint (the strings are borrowed until edge_link_stop) */
    const keypair *kp;           /* our CURVE keys */
    const char    *hub_pub;      /* the hub's public key, Z85 */
    const char    *hub_pub_next; /* its next key while it changes keypairs ("" or NULL: none); tried in turn
                                    when a handshake fails */
    spool         *sp;
    int            max_inflight;
    void         (*on_alert)(void *ctx); /* an alert is durable in the inbox (may be NULL) */
    void          *on_alert_ctx;
} edge_link_config;
int  edge_link_start(const edge_link_config *cfg, edge_link **out, char *err, size_t errlen);
void edge_link_stop(edge_link **l);

#endif
