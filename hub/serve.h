/* serve.h — the hub role (`dxhub serve`): the store, the DICOM listener,
 * completeness and retention, the HTTP API.  Hub-private. */
#ifndef DXHUB_SERVE_H
#define DXHUB_SERVE_H

#include <stdint.h>

typedef struct serve_config {
    const char *data_dir;       /* --data, default ./var/hub */
    const char *bind;           /* --bind, default 127.0.0.1 */
    const char *aet;            /* --aet, default DXHUB */
    const char *allow_ae;       /* --allow-ae: comma-separated calling AE titles */
    int         open_dicom;     /* --open-dicom: any calling AE title */
    uint16_t    dicom_port;     /* --dicom-port, default 11112 */
    const char *dicom_tls_cert; /* --dicom-tls-cert: DICOM TLS with this certificate (PEM) */
    const char *dicom_tls_key;  /* --dicom-tls-key: its key */
    const char *dicom_tls_ca;   /* --dicom-tls-ca: callers' certificates must chain to these CAs */
    uint16_t    http_port;      /* --http-port, default 8410 */
    const char *http_bind;      /* --http-bind; NULL: bind */
    const char *tls_cert;       /* --tls-cert: the HTTP API's certificate (PEM); with tls_key: HTTPS */
    const char *tls_key;        /* --tls-key: its private key (PEM, unencrypted) */
    int         http_threads;   /* --http-threads; <= 0: api.h's default */
    int         http_max_per_address; /* --http-max-per-address; 0: no limit */
    const char *dicomweb_origins;     /* --dicomweb-origins: CORS for /dicom-web/; NULL: none */
    int         stable_seconds; /* --stable-seconds, default 60 */
    int         retain_days;    /* --retain-days, -1: keep everything */
    uint64_t    map_size;       /* --map-size bytes, default 16 GiB */
    uint64_t    runway_bytes;   /* --runway: zeroed space ahead of the store's end (store_config) */
    int         max_assocs;     /* --max-associations, default 16 */
    uint16_t    edge_port;      /* --edge-port, default 5570 */
    int         alert_warn_seconds; /* --alert-warn-seconds: a clinic's untaken critical-value alert is logged after this */
    const char *keys_dir;       /* --keys, default DATA/keys: hub.key/.pub, allow.txt */
    uint16_t    reader_port;    /* --reader-port, default 5571 */
    const char *readers_file;   /* --readers, default DATA/readers.conf */
    int         lease_seconds;  /* --lease-seconds, default 60 */
    uint16_t    peer_port;      /* --peer-port, default 5572; 0: any free port */
    const char *peers_file;     /* --peers, default DATA/peers.conf */
    int         peer_timeout_ms;/* --peer-timeout-ms, default 2000 */
    const char *name;           /* --name: this hub in lookup answers (default "hub") */
    const char *recognition;    /* --recognition, default DATA/recognition.conf */
} serve_config;

/* Runs until SIGINT or SIGTERM; returns the exit status. */
int serve_run(const serve_config *cfg);

#endif
