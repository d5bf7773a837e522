/* cmd_serve.c — `dxhub serve`: its settings (DESIGN.md §9) as one table
 * (hub/config.h) into serve_config; logging set up before the role runs. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hub/cmd.h"
#include "hub/config.h"
#include "hub/dimse.h"
#include "hub/log.h"
#include "hub/serve.h"

typedef struct serve_settings {
    serve_config c;
    const char  *log_file;
    int          log_level;
} serve_settings;

#define S(field) offsetof(serve_settings, field)
#define SERVE_RUNWAY_DEFAULT "256M"

static const cfg_option serve_options[] = {
    {"hub", "data", CFG_STRING, S(c.data_dir), "./var/hub", 1, 0, NULL, "DIR", "data directory (the LMDB store)"},
    {"hub", "keys", CFG_STRING, S(c.keys_dir), NULL, 0, 0, NULL, "DIR",
     "hub.key/hub.pub, allow.txt and trust/ (default DATA/keys)"},
    {"hub", "bind", CFG_STRING, S(c.bind), "127.0.0.1", 1, 0, NULL, "ADDR",
     "address every listener binds; beyond 127.0.0.1 the HTTP API needs tls-cert (or http-bind 127.0.0.1)"},
    {"hub", "log", CFG_STRING, S(log_file), NULL, 0, 0, NULL, "FILE",
     "append log lines to FILE, reopened on SIGHUP (default stderr)"},
    {"hub", "log-level", CFG_CHOICE, S(log_level), "info", 0, 0, LOG_LEVEL_NAMES, "LEVEL",
     "error, warn, info or debug"},
    {"dicom", "dicom-port", CFG_PORT, S(c.dicom_port), "11112", 0, 0, NULL, "N", "DICOM (C-STORE) port"},
    {"dicom", "aet", CFG_STRING, S(c.aet), "DXHUB", 1, 16, NULL, "AET", "our AE title"},
    {"dicom", "allow-ae", CFG_STRING, S(c.allow_ae), "", 0, 0, NULL, "A,B,...",
     "calling AE titles accepted (others are rejected)"},
    {"dicom", "open-dicom", CFG_FLAG, S(c.open_dicom), NULL, 0, 0, NULL, NULL, "accept any calling AE title"},
    DIMSE_TLS_OPTIONS(S(c.dicom_tls_cert), S(c.dicom_tls_key), S(c.dicom_tls_ca)),
    {"dicom", "max-associations", CFG_INT, S(c.max_assocs), "16", 0, 1000000, NULL, "N",
     "concurrent DICOM associations"},
    {"http", "http-port", CFG_PORT, S(c.http_port), "8410", 0, 0, NULL, "N", "HTTP API and /metrics port"},
    {"http", "http-bind", CFG_STRING, S(c.http_bind), NULL, 0, 0, NULL, "ADDR",
     "address the HTTP API binds (default: bind); other than 127.0.0.1 only with tls-cert"},
    {"http", "tls-cert", CFG_STRING, S(c.tls_cert), NULL, 0, 0, NULL, "FILE",
     "serve the HTTP API as HTTPS with this certificate (PEM, its chain after it; ECDSA, RSA or Ed25519)"},
    {"http", "tls-key", CFG_STRING, S(c.tls_key), NULL, 0, 0, NULL, "FILE",
     "the certificate's private key (PEM, unencrypted, not readable by other users)"},
    {"http", "http-max-per-address", CFG_INT, S(c.http_max_per_address), "128", 0, 1000000, NULL, "N",
     "HTTP connections one client address may hold open (0: no limit); more are refused and counted"},
    {"http", "dicomweb-origins", CFG_STRING, S(c.dicomweb_origins), NULL, 0, 0, NULL, "LIST",
     "web origins (https://viewer.example, comma-separated) whose pages may read /dicom-web/ (CORS); default none"},
    {"http", "http-threads", CFG_INT, S(c.http_threads), NULL, 1, 64, NULL, "N",
     "HTTP request threads (default: one per CPU the hub may run on; two per CPU for a store larger than RAM)"},
    {"edges", "edge-port", CFG_PORT, S(c.edge_port), "5570", 0, 0, NULL, "N", "ZeroMQ port for clinic edges"},
    {"edges", "alert-warn-seconds", CFG_INT, S(c.alert_warn_seconds), "300", 1, 86400, NULL, "N",
     "a critical-value alert a clinic's gateway has not taken for this long is logged as an error, and again "
     "every 30 minutes while it waits: phone the clinic (GET /api/v1/clinics lists what waits)"},
    {"readers", "reader-port", CFG_PORT, S(c.reader_port), "5571", 0, 0, NULL, "N",
     "ZeroMQ port for reading workstations"},
    {"readers", "readers", CFG_STRING, S(c.readers_file), NULL, 0, 0, NULL, "FILE",
     "reader profiles (default DATA/readers.conf)"},
    {"readers", "lease-seconds", CFG_INT, S(c.lease_seconds), "60", 1, 86400, NULL, "N",
     "a claimed task returns to the queue without heartbeats"},
    {"store", "stable-seconds", CFG_INT, S(c.stable_seconds), "60", 0, 1000000, NULL, "N",
     "quiet time after which a study is complete"},
    {"store", "retain-days", CFG_INT, S(c.retain_days), NULL, 0, 1000000, NULL, "N",
     "evict completed studies older than N days, signed first, checked every 10 minutes and every second "
     "while the store is over 90% full (default: keep everything)"},
    {"store", "map-size", CFG_SIZE, S(c.map_size), "16G", 1, 0, NULL, "BYTES", "LMDB map size (K/M/G suffixes)"},
    {"store", "runway", CFG_SIZE, S(c.runway_bytes), SERVE_RUNWAY_DEFAULT, 0, 0, NULL, "BYTES",
     "zeroed space kept written ahead of the store's end, so that commits flush no file-system metadata "
     "(0: none; the default comes from DXHUB_RUNWAY when set)"},
    {"lookup", "name", CFG_STRING, S(c.name), "hub", 1, 63, NULL, "NAME", "this hub's name in lookup answers"},
    {"lookup", "peer-port", CFG_PORT, S(c.peer_port), "5572", 0, 0, NULL, "N",
     "ZeroMQ port for the consortium's other hubs"},
    {"lookup", "peers", CFG_STRING, S(c.peers_file), NULL, 0, 0, NULL, "FILE",
     "the other hubs to ask, NAME tcp://HOST:PORT PUBKEY per line (default DATA/peers.conf)"},
    {"lookup", "peer-timeout-ms", CFG_INT, S(c.peer_timeout_ms), "2000", 10, 600000, NULL, "N",
     "how long a lookup waits for another hub"},
    {"lookup", "recognition", CFG_STRING, S(c.recognition), NULL, 0, 0, NULL, "FILE",
     "recognition rules: consortium, mark, members, validity (default DATA/recognition.conf; embedded defaults without it)"},
};

const cfg_role serve_role = {
    .name = "serve",
    .synopsis = "usage: dxhub serve [--config FILE] [OPTIONS]\n"
                "  the hub: receives DICOM (C-STORE), stores it durably in LMDB, decides when\n"
                "  studies are complete, serves the HTTP API and lookups across the consortium\n"
                "  (facility API keys: dxhub keygen --api-key FACILITY --keys DATA/keys)\n",
    .opts = serve_options,
    .n_opts = sizeof serve_options / sizeof serve_options[0],
};

/* serve_role, with the runway's embedded default taken from DXHUB_RUNWAY
 * when that is set (the test suite's hubs lay none: hundreds of them would
 * write gigabytes of zeros). */
static cfg_role serve_role_here(cfg_option *opts)
{
    cfg_role r = serve_role;
    memcpy(opts, serve_options, sizeof serve_options);
    const char *env = getenv("DXHUB_RUNWAY");
    for (size_t i = 0; env && *env && i < r.n_opts; i++)
        if (!strcmp(opts[i].name, "runway"))
            opts[i].def = env;
    r.opts = opts;
    return r;
}

int cmd_serve(int argc, char **argv)
{
    serve_settings s = {0};
    cfg_strings own = {0};
    cfg_option opts[sizeof serve_options / sizeof serve_options[0]];
    cfg_role role = serve_role_here(opts);
    int rc = cfg_parse(&role, &s, argc, argv, &own);
    if (rc != CFG_RUN) {
        cfg_release(&own);
        return rc == CFG_DONE ? 0 : 2;
    }
    char readers_file[4200], keys[4200], err[512];
    if (!s.c.readers_file) {
        snprintf(readers_file, sizeof readers_file, "%s/readers.conf", s.c.data_dir);
        s.c.readers_file = readers_file;
    }
    if (!s.c.keys_dir) {
        snprintf(keys, sizeof keys, "%s/keys", s.c.data_dir);
        s.c.keys_dir = keys;
    }
    log_set_level(s.log_level);
    if (s.log_file && log_open(s.log_file, err, sizeof err) < 0) {
        dx_errorf("serve", "--log: %s", err);
        cfg_release(&own);
        return 1;
    }
    size_t nl = strlen(s.c.name);
    if (!nl || nl > 63 || strspn(s.c.name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != nl) {
        dx_errorf("serve", "name: letters, digits, '.', '_', '-', 1 to 63");
        cfg_release(&own);
        return 2;
    }
    char peers_file[4200], recognition[4200];
    if (!s.c.peers_file) {
        snprintf(peers_file, sizeof peers_file, "%s/peers.conf", s.c.data_dir);
        s.c.peers_file = peers_file;
    }
    if (!s.c.recognition) {
        snprintf(recognition, sizeof recognition, "%s/recognition.conf", s.c.data_dir);
        s.c.recognition = recognition;
    }
    dx_tune_malloc_for_store();
    rc = serve_run(&s.c);
    cfg_release(&own);
    return rc;
}
