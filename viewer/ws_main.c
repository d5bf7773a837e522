/* ws_main.c — `dxhub workstation`: the reading workstation daemon.
 * Its settings table (hub/config.h: options, --config FILE, --print-config),
 * start-up (keys, certificate, cache, hub session, optional passphrase
 * file, HTTP), the ready line, and the background loop that polls the hub
 * and prefetches until SIGINT/SIGTERM (SIGHUP reopens the log file).
 *
 * Exit status: 0 stopped by a signal; 1 the hub or the HTTP port could not
 * be reached or opened; 2 bad usage or input (a wrong passphrase file). */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "codecs/codecs.h"
#include "hub/cmd.h"
#include "hub/config.h"
#include "hub/log.h"
#include "viewer/ws_http.h"
#include "codecs/banned.h"

#define FRAME_CACHE_BYTES ((size_t)256 << 20) /* decoded frames of compressed instances kept in memory */

/* The workstation's settings: one table (hub/config.h), so a file
 * (--config), --print-config and the README's reference agree with the
 * options.  Units the table cannot hold (MB, seconds, a port as an int)
 * are converted into ws_config after parsing. */
typedef struct ws_settings {
    ws_config   c;
    int         cache_mb, timeout_s;
    uint16_t    http_port;
    const char *log_file;
    int         log_level;
} ws_settings;

#define W(field) offsetof(ws_settings, field)
static const cfg_option ws_options[] = {
    {"workstation", "cache", CFG_STRING, W(c.cache_dir), "./var/workstation", 1, 0, NULL, "DIR",
     "the local cache of prefetched studies and drafts (LMDB)"},
    {"workstation", "cache-mb", CFG_INT, W(cache_mb), "2048", 16, 1 << 22, NULL, "N", "the cache's size bound in MB"},
    {"workstation", "log", CFG_STRING, W(log_file), NULL, 0, 0, NULL, "FILE",
     "append log lines to FILE, reopened on SIGHUP (default stderr)"},
    {"workstation", "log-level", CFG_CHOICE, W(log_level), "info", 0, 0, LOG_LEVEL_NAMES, "LEVEL",
     "error, warn, info or debug"},
    {"hub", "hub", CFG_STRING, W(c.hub), NULL, 0, 0, NULL, "tcp://HOST:PORT", "the hub's reader port (required)"},
    {"hub", "hub-key", CFG_STRING, W(c.hub_key), NULL, 0, 0, NULL, "FILE",
     "the hub's public key, hub.pub (required); NOW,NEXT while the hub changes keypairs"},
    {"hub", "keys", CFG_STRING, W(c.keys_dir), NULL, 0, 0, NULL, "DIR",
     "our CURVE keypair DIR/NAME.key, made when missing; the hub allows DIR/NAME.pub as reader:ID (required)"},
    {"hub", "name", CFG_STRING, W(c.name), "reader", 1, 63, NULL, "NAME", "the keypair's file name"},
    {"hub", "timeout", CFG_INT, W(timeout_s), "5", 1, 600, NULL, "SECONDS", "per hub request"},
    {"hub", "prefetch", CFG_INT, W(c.prefetch), "3", 0, 32, NULL, "N",
     "also prefetch the N best offered studies"},
    {"hub", "prefetch-prior", CFG_CHOICE, W(c.prefetch_prior), "on", 0, 0, "off|on", "on|off",
     "also fetch ahead, for each task held, the patient's last earlier exam of its modality (the hub's or a peer hub's), to compare"},
    {"hub", "offers", CFG_INT, W(c.offers), "5", 0, 50, NULL, "N", "how many offers to keep in the worklist"},
    {"signing", "sign-key", CFG_STRING, W(c.sign_key), NULL, 0, 0, NULL, "FILE",
     "the reader's signing key, encrypted PKCS#8 from dxhub keygen --reader (required)"},
    {"signing", "cert", CFG_STRING, W(c.cert), NULL, 0, 0, NULL, "FILE",
     "the reader's certificate, or its chain ID.chain.pem (required)"},
    {"signing", "chain", CFG_STRING, W(c.chain), NULL, 0, 0, NULL, "FILE",
     "the CA certificates to send after it (when cert is the certificate alone)"},
    {"signing", "passphrase-file", CFG_STRING, W(c.passphrase_file), NULL, 0, 0, NULL, "FILE",
     "unlock the signing key at start (else the reader unlocks it in the viewer)"},
    {"viewer", "http-port", CFG_PORT, W(http_port), "8090", 0, 0, NULL, "N",
     "the viewer's port (0: any free port); the ready line prints its URL with a fresh token"},
    {"viewer", "bind", CFG_STRING, W(c.bind), "127.0.0.1", 1, 0, NULL, "ADDR", "the viewer's address (127.x.x.x only: the browser is on this PC)"},
    {"viewer", "web", CFG_STRING, W(c.web_dir), NULL, 0, 0, NULL, "DIR",
     "the viewer's files (default viewer/web beside the program, else ../share/dxhub/web from it, "
     "else /usr/share/dxhub/web)"},
};

const cfg_role workstation_role = {
    .name = "workstation",
    .synopsis = "usage: dxhub workstation --hub tcp://HOST:PORT --hub-key HUB.pub --keys DIR --sign-key KEY --cert CERT\n"
                "                         [--config FILE] [OPTIONS]\n"
                "  the reading workstation: takes the tasks the hub offers this reader, prefetches their\n"
                "  studies into a local cache, serves the viewer on http://127.0.0.1 (a random token in the\n"
                "  URL it prints), signs and submits reports\n",
    .opts = ws_options,
    .n_opts = sizeof ws_options / sizeof ws_options[0],
};

static volatile sig_atomic_t stop_flag, hup_flag;
static void on_stop(int sig) { (void)sig; stop_flag = 1; }
static void on_hup(int sig) { (void)sig; hup_flag = 1; }

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The viewer's files, found from the program's own path: the build tree
 * (build/dxhub → ../viewer/web), then make install's layout
 * (PREFIX/bin/dxhub → ../share/dxhub/web, wherever PREFIX is), then
 * Debian's place.  out is the canonical path of the first that exists. */
static void default_web(char *out, size_t n)
{
    static const char *const beside[] = {"../viewer/web", "../share/dxhub/web"};
    char exe[4096];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k > 0) {
        exe[k] = '\0';
        char *dir = dirname(exe);
        for (size_t i = 0; i < sizeof beside / sizeof beside[0]; i++) {
            char cand[4200], real[PATH_MAX];
            snprintf(cand, sizeof cand, "%s/%s", dir, beside[i]);
            if (is_dir(cand) && realpath(cand, real)) {
                snprintf(out, n, "%s", real);
                return;
            }
        }
    }
    snprintf(out, n, "/usr/share/dxhub/web");
}

static int read_passphrase(const char *path, char *buf, size_t n)
{
    FILE *fp = fopen(path, "re");
    if (!fp)
        return -1;
    int ok = fgets(buf, (int)n, fp) != NULL;
    fclose(fp);
    if (!ok)
        return -1;
    buf[strcspn(buf, "\r\n")] = '\0';
    return buf[0] ? 0 : -1;
}

static int make_token(char out[65])
{
    unsigned char r[32];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
        return -1;
    for (size_t i = 0; i < sizeof r; i++)
        snprintf(out + 2 * i, 3, "%02x", r[i]);
    return 0;
}

static void background(ws *w)
{
    while (!stop_flag) {
        if (hup_flag) {
            hup_flag = 0;
            char err[512];
            int rc = log_reopen(err, sizeof err);
            if (rc < 0)
                log_error("SIGHUP: log file not reopened (still writing the old one): %s", err);
            else if (rc == 0)
                log_info("SIGHUP: log file reopened");
        }
        ws_hub_poll(w);
        if (ws_prefetch_step(w))
            continue;
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until); /* w.changed waits on it: heartbeats go on through clock steps */
        until.tv_nsec += 100 * 1000000L;
        if (until.tv_nsec >= 1000000000L)
            until.tv_sec++, until.tv_nsec -= 1000000000L;
        pthread_mutex_lock(&w->mu);
        uint64_t gen = w->gen;
        while (!stop_flag && w->gen == gen &&
               pthread_cond_timedwait(&w->changed, &w->mu, &until) != ETIMEDOUT)
            ;
        pthread_mutex_unlock(&w->mu);
    }
}

int cmd_workstation(int argc, char **argv)
{
    static ws w; /* one daemon per process; its threads outlive no function but this one */
    memset(&w, 0, sizeof w);
    ws_config *c = &w.cfg;
    ws_settings s = {0};
    cfg_strings own = {0};
    int rc = cfg_parse(&workstation_role, &s, argc, argv, &own);
    if (rc != CFG_RUN) {
        cfg_release(&own);
        return rc == CFG_DONE ? 0 : 2;
    }
    *c = s.c;
    c->cache_bytes = (uint64_t)s.cache_mb << 20;
    c->http_port = s.http_port;
    c->timeout_ms = s.timeout_s * 1000;
    rc = 2;
    char err[600], web[4200];
    ws_http *http = NULL;
    if (!c->hub || !c->hub_key || !c->keys_dir || !c->sign_key || !c->cert) {
        dx_errorf("workstation", "hub, hub-key, keys, sign-key and cert are required, as options or in --config "
                                 "('dxhub workstation --help')");
        goto release;
    }
    if (strchr(c->name, '/')) {
        dx_errorf("workstation", "--name must be a file name without '/'");
        goto release;
    }
    log_set_role("workstation");
    log_set_level(s.log_level);
    if (s.log_file && log_open(s.log_file, err, sizeof err) < 0) {
        dx_errorf("workstation", "--log: %s", err);
        rc = 1;
        goto release;
    }
    if (ws_http_bind_check(c->bind, err, sizeof err) < 0) {
        dx_errorf("workstation", "%s", err);
        goto release;
    }
    if (!c->web_dir) {
        default_web(web, sizeof web);
        c->web_dir = web;
    }
    if (is_dir(c->web_dir))
        log_info("viewer files in %s", c->web_dir);
    else
        dx_errorf("workstation", "warning: no web UI in %s (--web DIR): the API works, the pages are missing",
                  c->web_dir);
    /* the decrypted signing key lives in this process: no core dumps, no ptrace by others */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);

    if (hub_chain_identity(c->cert, &w.cert, err, sizeof err) < 0) {
        dx_errorf("workstation", "--cert: %s", err);
        goto release;
    }
    int64_t days_left = ws_cert_days_left(&w.cert, (int64_t)time(NULL));
    char cert_end[11];
    ws_cert_end_date(&w.cert, cert_end);
    if (ws_cert_refuses(&w.cert, (int64_t)time(NULL), err, sizeof err) < 0)
        dx_errorf("workstation", "warning: --cert: %s", err);
    else if (days_left < WS_CERT_WARN_DAYS)
        dx_errorf("workstation", "warning: --cert: the signing certificate ends on %s (UTC), in %lld days: ask %s's "
                                 "CA for a new one before then", cert_end, (long long)days_left,
                  w.cert.facility[0] ? w.cert.facility : "your facility");
    hub_reader_keys keys;
    int made = 0;
    if (hub_reader_keys_load(c->keys_dir, c->name, c->hub_key, &keys, &made, err, sizeof err) < 0) {
        dx_errorf("workstation", "%s", err);
        goto release;
    }
    if (made)
        dx_errorf("workstation", "made a new keypair %s/%s.key; the hub must allow %s/%s.pub as reader:<id>",
                  c->keys_dir, c->name, c->keys_dir, c->name);
    pthread_mutex_init(&w.fetch_mu, NULL);
    pthread_mutex_init(&w.hub_mu, NULL);
    pthread_mutex_init(&w.mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* waits immune to the wall clock's steps */
    pthread_cond_init(&w.changed, &ca);
    pthread_condattr_destroy(&ca);
    if (ws_cache_open(c->cache_dir, c->cache_bytes, &w.cache, err, sizeof err) < 0) {
        dx_errorf("workstation", "%s", err);
        goto done;
    }
    w.frames = ws_frames_new(FRAME_CACHE_BYTES);
    if (cdc_sandbox_open(&w.decoder, &(dcm_err){0}) < 0)
        w.decoder = NULL; /* frames then fork a decoder each */
    if (c->passphrase_file) {
        char pass[1024];
        if (read_passphrase(c->passphrase_file, pass, sizeof pass) < 0) {
            dx_errorf("workstation", "--passphrase-file %s: cannot read a passphrase from it", c->passphrase_file);
            goto done;
        }
        int src = hub_signer_open(c->sign_key, c->cert, c->chain, pass, &w.signer, err, sizeof err);
        memset(pass, 0, sizeof pass);
        if (src < 0) {
            dx_errorf("workstation", "--sign-key: %s", src == HUB_EPASS ? "wrong passphrase" : err);
            goto done;
        }
    }
    rc = 1;
    hub_client_config hc = {.endpoint = c->hub, .hub_public = keys.hub_public, .hub_public_next = keys.hub_public_next,
                            .public_key = keys.public_key,
                            .secret_key = keys.secret_key, .timeout_ms = c->timeout_ms};
    if (hub_client_open(&hc, &w.hc, err, sizeof err) < 0) {
        dx_errorf("workstation", "%s", err);
        goto done;
    }
    memset(&keys, 0, sizeof keys);
    if (hub_client_hello(w.hc, w.reader_id, sizeof w.reader_id)) {
        dx_errorf("workstation", "%s: %s", c->hub, hub_client_error(w.hc));
        goto done;
    }
    if (hub_client_on_next_key(w.hc))
        dx_errorf("workstation", "note: the hub answers to the second key of --hub-key: it has its new keypair; "
                                 "give that key alone once the change is over");
    hub_client_profile(w.hc, &w.profile);
    w.connected = 1;
    int adopted = ws_adopt(&w);
    if (adopted)
        dx_errorf("workstation", "took up %d task(s) this workstation held before it stopped", adopted);
    if (w.cert.reader_id[0] && strcmp(w.cert.reader_id, w.reader_id))
        dx_errorf("workstation", "warning: --cert names reader %s but the hub knows this key as %s; the hub will "
                                 "refuse reports it signs", w.cert.reader_id, w.reader_id);
    if (make_token(w.token) < 0) {
        dx_errorf("workstation", "no random numbers for the token");
        goto done;
    }

    struct sigaction sa = {0};
    sa.sa_handler = on_stop;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = on_hup;
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int port = 0;
    if (ws_http_start(&w, c->bind, c->http_port, c->web_dir, &http, &port, err, sizeof err) < 0) {
        dx_errorf("workstation", "%s", err);
        goto done;
    }
    printf("dxhub workstation: ready url=http://%s:%d/#token=%s reader=%s\n", c->bind, port, w.token, w.reader_id);
    fflush(stdout);
    background(&w);
    log_info("stopping"); /* each step below is bounded; "stopped" says they all ended */
    rc = 0;

done:
    pthread_mutex_lock(&w.mu);
    w.stop = 1;
    pthread_cond_broadcast(&w.changed);
    pthread_mutex_unlock(&w.mu);
    ws_http_stop(&http);
    if (w.hc && w.reader_id[0]) { /* offers go back to the queue now rather than at their timeout */
        hub_client_ready(w.hc, 0); /* first, or what we give back is offered to us again */
        for (size_t i = 0; i < w.n_tasks; i++)
            if (w.tasks[i].offered_ms && hub_client_release(w.hc, w.tasks[i].t.id) == HUB_ETIMEDOUT)
                break; /* the hub is away: its offer timeout will do */
        /* offers sent before the hub read READY 0 arrived before the answer
         * to the first RELEASE (one ordered connection); a HEARTBEAT's answer
         * makes sure when there was nothing to release */
        int leases;
        hub_client_heartbeat(w.hc, &leases);
        hub_task late;
        while (hub_client_next_offer(w.hc, 0, &late) == 0)
            hub_client_release(w.hc, late.id);
    }
    for (size_t i = 0; i < w.n_tasks; i++)
        ws_task_release(&w.tasks[i]);
    hub_client_close(&w.hc);
    hub_signer_free(&w.signer);
    ws_cache_close(&w.cache);
    ws_frames_free(&w.frames);
    cdc_sandbox_close(&w.decoder);
    if (rc == 0)
        log_info("stopped");
release:
    cfg_release(&own);
    return rc;
}
