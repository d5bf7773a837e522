/* ws_main.c — `dxhub workstation`: the reading workstation daemon.
 * Options, start-up (keys, certificate, cache, hub session, optional
 * passphrase file, HTTP), the ready line, and the background loop that
 * polls the hub and prefetches until SIGINT/SIGTERM.
 *
 * Exit status: 0 stopped by a signal; 1 the hub or the HTTP port could not
 * be reached or opened; 2 bad usage or input (a wrong passphrase file). */
#include <errno.h>
#include <getopt.h>
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
#include "hub/cmd.h"
#include "viewer/ws_http.h"
#include "codecs/banned.h"

#define FRAME_CACHE_BYTES ((size_t)256 << 20) /* decoded frames of compressed instances kept in memory */

static const char usage[] =
    "usage: dxhub workstation --hub tcp://HOST:PORT --hub-key HUB.pub --keys DIR --sign-key KEY --cert CERT [OPTIONS]\n"
    "  the reading workstation: takes the tasks the hub offers this reader, prefetches their\n"
    "  studies into a local cache, serves the viewer on http://127.0.0.1 (a random token in the\n"
    "  URL it prints), signs and submits reports\n"
    "  --keys DIR            our CURVE keypair DIR/NAME.key (made when missing; the hub must allow\n"
    "                        DIR/NAME.pub as reader:<id>)\n"
    "  --name NAME           keypair name (default reader)\n"
    "  --sign-key FILE       the reader's signing key (encrypted PKCS#8, from dxhub keygen --reader)\n"
    "  --cert FILE           the reader's certificate (or its chain: ID.chain.pem)\n"
    "  --chain FILE          the CA certificates to send after it (when --cert is the certificate alone)\n"
    "  --passphrase-file F   unlock the signing key at start (else the reader unlocks it in the viewer)\n"
    "  --cache DIR           the local cache (default ./var/workstation)\n"
    "  --cache-mb N          its size bound in MB (default 2048)\n"
    "  --http-port N         the viewer's port (default 8090; 0: any free port)\n"
    "  --bind ADDR           the viewer's address (default 127.0.0.1)\n"
    "  --prefetch N          also prefetch the N best offered studies (default 3)\n"
    "  --offers N            how many offers to keep in the worklist (default 5)\n"
    "  --web DIR             the viewer's files (default: viewer/web beside the program)\n"
    "  --timeout SECONDS     per hub request (default 5)\n";

static volatile sig_atomic_t stop_flag;
static void on_stop(int sig) { (void)sig; stop_flag = 1; }

static long parse_num(const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    return (*s && !*end && !errno && v >= lo && v <= hi) ? v : lo - 1;
}

/* viewer/web beside the program (build/dxhub → ../viewer/web), else the
 * installed copy. */
static void default_web(char *out, size_t n)
{
    char exe[4096];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k > 0) {
        exe[k] = '\0';
        char *dir = dirname(exe);
        snprintf(out, n, "%s/../viewer/web", dir);
        struct stat st;
        if (stat(out, &st) == 0 && S_ISDIR(st.st_mode))
            return;
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
        ws_hub_poll(w);
        if (ws_prefetch_step(w))
            continue;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
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
    enum { O_HUB = 1, O_HUBKEY, O_KEYS, O_NAME, O_SIGNKEY, O_CERT, O_CHAIN, O_PASSFILE, O_CACHE, O_CACHEMB, O_PORT,
           O_BIND, O_PREFETCH, O_OFFERS, O_WEB, O_TIMEOUT };
    static const struct option lopts[] = {
        {"hub", required_argument, NULL, O_HUB},           {"hub-key", required_argument, NULL, O_HUBKEY},
        {"keys", required_argument, NULL, O_KEYS},         {"name", required_argument, NULL, O_NAME},
        {"sign-key", required_argument, NULL, O_SIGNKEY},  {"cert", required_argument, NULL, O_CERT},
        {"chain", required_argument, NULL, O_CHAIN},       {"passphrase-file", required_argument, NULL, O_PASSFILE},
        {"cache", required_argument, NULL, O_CACHE},       {"cache-mb", required_argument, NULL, O_CACHEMB},
        {"http-port", required_argument, NULL, O_PORT},    {"bind", required_argument, NULL, O_BIND},
        {"prefetch", required_argument, NULL, O_PREFETCH}, {"offers", required_argument, NULL, O_OFFERS},
        {"web", required_argument, NULL, O_WEB},           {"timeout", required_argument, NULL, O_TIMEOUT},
        {"help", no_argument, NULL, 'h'},                  {0, 0, 0, 0}};
    static ws w; /* one daemon per process; its threads outlive no function but this one */
    memset(&w, 0, sizeof w);
    ws_config *c = &w.cfg;
    *c = (ws_config){.name = "reader", .cache_dir = "var/workstation", .bind = "127.0.0.1", .http_port = 8090,
                     .prefetch = 3, .offers = 5, .timeout_ms = 5000, .cache_bytes = (uint64_t)2048 << 20};
    long mb = 2048;
    char web[4200];
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
        long *num = NULL, lo = 0, hi = 0, v = 0;
        const char *optname = "";
        switch (opt) {
        case O_HUB: c->hub = optarg; break;
        case O_HUBKEY: c->hub_key = optarg; break;
        case O_KEYS: c->keys_dir = optarg; break;
        case O_NAME: c->name = optarg; break;
        case O_SIGNKEY: c->sign_key = optarg; break;
        case O_CERT: c->cert = optarg; break;
        case O_CHAIN: c->chain = optarg; break;
        case O_PASSFILE: c->passphrase_file = optarg; break;
        case O_CACHE: c->cache_dir = optarg; break;
        case O_BIND: c->bind = optarg; break;
        case O_WEB: c->web_dir = optarg; break;
        case O_CACHEMB: num = &mb, lo = 16, hi = 1 << 22, optname = "cache-mb"; break;
        case O_PORT: num = &v, lo = 0, hi = 65535, optname = "http-port"; break;
        case O_PREFETCH: num = &v, lo = 0, hi = 32, optname = "prefetch"; break;
        case O_OFFERS: num = &v, lo = 0, hi = 50, optname = "offers"; break;
        case O_TIMEOUT: num = &v, lo = 1, hi = 600, optname = "timeout"; break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
        if (num) {
            long got = parse_num(optarg, lo, hi);
            if (got < lo) {
                dx_errorf("workstation", "bad number '%s' for --%s (%ld to %ld)", optarg, optname, lo, hi);
                return 2;
            }
            *num = got;
            if (opt == O_PORT)
                c->http_port = (int)got;
            else if (opt == O_PREFETCH)
                c->prefetch = (int)got;
            else if (opt == O_OFFERS)
                c->offers = (int)got;
            else if (opt == O_TIMEOUT)
                c->timeout_ms = (int)got * 1000;
        }
    }
    c->cache_bytes = (uint64_t)mb << 20;
    if (optind < argc) {
        dx_errorf("workstation", "unexpected argument '%s'", argv[optind]);
        return 2;
    }
    if (!c->hub || !c->hub_key || !c->keys_dir || !c->sign_key || !c->cert) {
        dx_errorf("workstation", "--hub, --hub-key, --keys, --sign-key and --cert are required "
                                 "('dxhub workstation --help')");
        return 2;
    }
    if (!c->name[0] || strchr(c->name, '/')) {
        dx_errorf("workstation", "--name must be a file name without '/'");
        return 2;
    }
    if (!c->web_dir) {
        default_web(web, sizeof web);
        c->web_dir = web;
    }
    struct stat wst;
    if (stat(c->web_dir, &wst) < 0 || !S_ISDIR(wst.st_mode))
        dx_errorf("workstation", "warning: no web UI in %s (--web DIR): the API works, the pages are missing",
                  c->web_dir);
    /* the decrypted signing key lives in this process: no core dumps, no ptrace by others */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);

    char err[600];
    int rc = 2;
    if (hub_chain_identity(c->cert, &w.cert, err, sizeof err) < 0) {
        dx_errorf("workstation", "--cert: %s", err);
        return 2;
    }
    hub_reader_keys keys;
    int made = 0;
    if (hub_reader_keys_load(c->keys_dir, c->name, c->hub_key, &keys, &made, err, sizeof err) < 0) {
        dx_errorf("workstation", "%s", err);
        return 2;
    }
    if (made)
        dx_errorf("workstation", "made a new keypair %s/%s.key; the hub must allow %s/%s.pub as reader:<id>",
                  c->keys_dir, c->name, c->keys_dir, c->name);
    pthread_mutex_init(&w.fetch_mu, NULL);
    pthread_mutex_init(&w.hub_mu, NULL);
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.changed, NULL);
    ws_http *http = NULL;
    if (ws_cache_open(c->cache_dir, c->cache_bytes, &w.cache, err, sizeof err) < 0) {
        dx_errorf("workstation", "%s", err);
        goto done;
    }
    w.frames = ws_frames_new(FRAME_CACHE_BYTES);
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
    hub_client_config hc = {.endpoint = c->hub, .hub_public = keys.hub_public, .public_key = keys.public_key,
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
    signal(SIGPIPE, SIG_IGN);

    int port = 0;
    if (ws_http_start(&w, c->bind, c->http_port, c->web_dir, &http, &port, err, sizeof err) < 0) {
        dx_errorf("workstation", "%s", err);
        goto done;
    }
    printf("dxhub workstation: ready url=http://%s:%d/#token=%s reader=%s\n", c->bind, port, w.token, w.reader_id);
    fflush(stdout);
    background(&w);
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
    return rc;
}
