/* cmd_edge.c — the clinic's commands: `dxhub edge` (the gateway, and
 * --status) and `dxhub push` (queue files from the command line);
 * `dxhub reports` is in cmd_reports.c. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <search.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "hub/cmd.h"
#include "hub/config.h"
#include "hub/dimse.h"
#include "hub/disk.h"
#include "hub/edge.h"
#include "hub/log.h"
#include "hub/progress.h"

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void human_bytes(uint64_t b, char *out, size_t n)
{
    const char *u[] = {"B", "KB", "MB", "GB", "TB"};
    double v = (double)b;
    int i = 0;
    while (v >= 1000 && i < 4)
        v /= 1000, i++;
    snprintf(out, n, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

static int print_item(void *ctx, const spool_item *it)
{
    int *shown = ctx;
    if ((*shown)++ >= 20)
        return 1;
    char size[32], age[32];
    human_bytes(it->size, size, sizeof size);
    dx_human_age(now_ms() - it->created_ms, age, sizeof age);
    if (it->kind == SPOOL_MARKER) {
        printf("  #%-6llu %-7s study marker (%u instances)  waiting %s\n", (unsigned long long)it->seq,
               spool_priority_name(it->priority), it->expected, age);
        return 0;
    }
    int pct = it->size ? (int)(100 * (it->acked_bytes < it->size ? it->acked_bytes : it->size) / it->size) : 0;
    printf("  #%-6llu %-7s %s%-9s %3d%% sent  waiting %-8s %s%s%s\n", (unsigned long long)it->seq,
           spool_priority_name(it->priority), it->referral ? "referral " : "", size, pct, age,
           it->failed ? "REFUSED: " : it->attempts ? "retrying: " : "", it->failed || it->attempts ? it->last_error : "",
           "");
    return 0;
}

static int print_study(void *ctx, const spool_study *st)
{
    int *shown = ctx;
    if ((*shown)++ >= 20)
        return 0; /* keep counting */
    char sent[32], total[32];
    human_bytes(st->sent_bytes, sent, sizeof sent);
    human_bytes(st->bytes, total, sizeof total);
    int pct = st->bytes ? (int)(100 * (st->sent_bytes < st->bytes ? st->sent_bytes : st->bytes) / st->bytes) : 100;
    const char *state = st->acked >= st->instances ? "delivered"
                        : st->refused                ? "REFUSED in part"
                        : st->sent_bytes             ? "sending"
                                                     : "waiting";
    printf("  %s (%s%s)\n      %u/%u instances acknowledged, %s of %s sent (%d%%): %s\n", st->study_uid,
           spool_priority_name(st->priority), st->referral ? ", referral" : "", st->acked, st->instances, sent,
           total, pct, state);
    if (st->refused)
        printf("      %u instance(s) refused by the hub (see the queue below)\n", st->refused);
    return 0;
}

#define EDGE_DISK_LOW ((uint64_t)2 << 30) /* a day of a clinic's studies, roughly: said as LOW below it */

/* Alerts a person here has not confirmed reading (危急值 receipt). */
typedef struct unread_ctx {
    spool *sp;
    int    n;
} unread_ctx;

static int count_unread(void *ctx, const char *id, const char *kind, int64_t received_ms, const void *data,
                        size_t len)
{
    (void)received_ms, (void)data, (void)len;
    unread_ctx *u = ctx;
    spool_confirmation c;
    if (!strcmp(kind, "alert") && spool_alert_confirmation(u->sp, id, &c) != 0)
        u->n++;
    return 0;
}

static int edge_status(const char *data_dir)
{
    spool *sp = NULL;
    char err[512];
    struct stat st;
    if (stat(data_dir, &st) < 0) {
        dx_errorf("edge", "no edge data in %s (is this the clinic gateway's --data?)", data_dir);
        return 1;
    }
    if (spool_open(data_dir, 0, &sp, err, sizeof err) < 0) {
        dx_errorf("edge", "%s", err);
        return 1;
    }
    spool_stats s;
    spool_get_stats(sp, &s);
    char bytes[32], age[32], since[32];
    human_bytes(s.bytes_pending, bytes, sizeof bytes);
    dx_human_age(s.oldest_ms ? now_ms() - s.oldest_ms : 0, age, sizeof age);
    dx_human_age(s.link_since_ms ? now_ms() - s.link_since_ms : 0, since, sizeof since);
    printf("Clinic gateway (%s)\n", data_dir);
    printf("  link to the hub: %s (for %s)\n", s.link_state[0] ? s.link_state : "unknown", since);
    if (s.last_ack_ms) {
        char ack[32];
        dx_human_age(now_ms() - s.last_ack_ms, ack, sizeof ack);
        printf("  last study data confirmed by the hub: %s ago\n", ack);
    }
    printf("  waiting to be sent: %llu instances, %s (stat %llu, urgent %llu, routine %llu)\n",
           (unsigned long long)s.depth, bytes, (unsigned long long)s.by_priority[PRIO_STAT],
           (unsigned long long)s.by_priority[PRIO_URGENT], (unsigned long long)s.by_priority[PRIO_ROUTINE]);
    if (s.depth)
        printf("  oldest waiting: %s\n", age);
    printf("  delivered to the hub so far: %llu instances\n", (unsigned long long)s.delivered);
    if (s.failed)
        printf("  REFUSED by the hub (kept here, needs attention): %llu\n", (unsigned long long)s.failed);
    if (s.last_error[0])
        printf("  last error: %s\n", s.last_error);
    uint64_t room, size;
    if (disk_room(data_dir, &room, &size) == 0) {
        char free_s[32], size_s[32];
        human_bytes(room, free_s, sizeof free_s);
        human_bytes(size, size_s, sizeof size_s);
        printf("  disk: %s free of %s%s\n", free_s, size_s,
               room < EDGE_DISK_LOW ? " -- LOW: new studies are refused once it is full (modalities retry)" : "");
    }
    printf("  reports and alerts received: %llu ('dxhub reports' lists them)\n", (unsigned long long)s.inbox);
    unread_ctx u = {sp, 0};
    spool_inbox_list(sp, count_unread, &u);
    if (u.n)
        printf("  ALERTS NOT CONFIRMED READ: %d -- read them ('dxhub reports'), then: dxhub reports --ack ID --by NAME\n",
               u.n);
    int studies = 0;
    printf("studies (on their way first, then delivered in the last week):\n");
    spool_studies(sp, print_study, &studies);
    if (!studies)
        printf("  none\n");
    else if (studies > 20)
        printf("  ... and %d more\n", studies - 20);
    if (s.depth || s.failed || s.markers) {
        printf("queue (most urgent first):\n");
        int shown = 0;
        spool_list(sp, 1, print_item, &shown);
        if (shown > 20)
            printf("  ... and %d more\n", shown - 20);
    }
    spool_close(&sp);
    return 0;
}

typedef struct edge_settings {
    edge_config c;
    const char *log_file;
    int         log_level;
    int         status;
} edge_settings;

#define E(field) offsetof(edge_settings, field)
static const cfg_option edge_options[] = {
    {"edge", "data", CFG_STRING, E(c.data_dir), "./var/edge", 1, 0, NULL, "DIR", "spool directory (the LMDB queue)"},
    {"edge", "keys", CFG_STRING, E(c.keys_dir), NULL, 0, 0, NULL, "DIR",
     "edge.key/edge.pub, made on first start (default DATA/keys)"},
    {"edge", "facility", CFG_STRING, E(c.facility), "", 0, 0, NULL, "ID",
     "this clinic's facility id (as the hub's allow-list names it)"},
    {"edge", "bind", CFG_STRING, E(c.bind), "127.0.0.1", 1, 0, NULL, "ADDR", "address the DICOM listener binds"},
    {"edge", "log", CFG_STRING, E(log_file), NULL, 0, 0, NULL, "FILE",
     "append log lines to FILE, reopened on SIGHUP (default stderr)"},
    {"edge", "log-level", CFG_CHOICE, E(log_level), "info", 0, 0, LOG_LEVEL_NAMES, "LEVEL",
     "error, warn, info or debug"},
    {"hub", "hub", CFG_STRING, E(c.hub), NULL, 0, 0, NULL, "tcp://HOST:PORT", "the hub's edge port (required)"},
    {"hub", "hub-key", CFG_STRING, E(c.hub_key), NULL, 0, 0, NULL, "FILE",
     "the hub's public key, hub.pub (required); NOW,NEXT while the hub changes keypairs"},
    {"hub", "link-ts", CFG_STRING, E(c.link_ts), EDGE_LINK_TS_DEFAULT, 1, 64, NULL, "UID",
     "lossless transfer syntax for the link (JPEG-LS Lossless)"},
    {"hub", "max-inflight", CFG_INT, E(c.max_inflight), "8", 1, 64, NULL, "N", "transfers offered to the hub at once"},
    {"dicom", "dicom-port", CFG_PORT, E(c.dicom_port), "11113", 0, 0, NULL, "N",
     "DICOM port for the clinic's modalities"},
    {"dicom", "aet", CFG_STRING, E(c.aet), "DXEDGE", 1, 16, NULL, "AET", "our AE title"},
    {"dicom", "allow-ae", CFG_STRING, E(c.allow_ae), "", 0, 0, NULL, "A,B,...", "calling AE titles accepted"},
    {"dicom", "open-dicom", CFG_FLAG, E(c.open_dicom), NULL, 0, 0, NULL, NULL, "accept any calling AE title"},
    DIMSE_TLS_OPTIONS(E(c.dicom_tls_cert), E(c.dicom_tls_key), E(c.dicom_tls_ca)),
    {"watch", "watch", CFG_STRING, E(c.watch_dir), NULL, 0, 0, NULL, "DIR",
     "take DICOM files dropped here (moved to DIR/done when queued)"},
    {"reports", "on-alert", CFG_STRING, E(c.on_alert), NULL, 0, 0, NULL, "COMMAND",
     "run through /bin/sh for each alert the hub delivers, DXHUB_ALERT_SUMMARY etc. in its environment "
     "(a speaker, a pop-up, an SMS); again every 5 s until it exits 0"},
    {NULL, "status", CFG_FLAG, E(status), NULL, 0, 0, NULL, NULL,
     "print how the queue, each study and the link are doing, and exit"},
};

const cfg_role edge_role = {
    .name = "edge",
    .synopsis = "usage: dxhub edge --hub tcp://HOST:PORT --hub-key HUB.pub [--config FILE] [OPTIONS]\n"
                "       dxhub edge --status [--data DIR]\n"
                "  the clinic gateway: a DICOM listener and a watch folder feeding a durable\n"
                "  spool, forwarded to the hub over ZeroMQ (CURVE); reports come back here\n",
    .opts = edge_options,
    .n_opts = sizeof edge_options / sizeof edge_options[0],
};

int cmd_edge(int argc, char **argv)
{
    edge_settings s = {0};
    cfg_strings own = {0};
    int rc = cfg_parse(&edge_role, &s, argc, argv, &own);
    if (rc != CFG_RUN) {
        cfg_release(&own);
        return rc == CFG_DONE ? 0 : 2;
    }
    if (s.status) {
        rc = edge_status(s.c.data_dir);
        cfg_release(&own);
        return rc;
    }
    if (!s.c.hub || !s.c.hub_key) {
        dx_errorf("edge", "--hub tcp://HOST:PORT and --hub-key HUB.pub are required ('dxhub edge --help')");
        cfg_release(&own);
        return 2;
    }
    char keys[4200], err[512];
    if (!s.c.keys_dir) {
        snprintf(keys, sizeof keys, "%s/keys", s.c.data_dir);
        s.c.keys_dir = keys;
    }
    log_set_level(s.log_level);
    if (s.log_file && log_open(s.log_file, err, sizeof err) < 0) {
        dx_errorf("edge", "--log: %s", err);
        cfg_release(&own);
        return 1;
    }
    mkdir(s.c.data_dir, 0700);
    dx_tune_malloc_for_store();
    rc = edge_run(&s.c);
    cfg_release(&own);
    return rc;
}

/* --- push ---------------------------------------------------------------- */

typedef struct push_ctx {
    int      queued, failed;
    int      kept_out; /* not queued for want of room or an I/O failure: push them again later */
    char     kept_why[256]; /* the first such reason, said once in full */
    int      show;      /* progress on stderr */
    progress meter;
} push_ctx;

static uint64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static void push_report(void *ctx, const char *path, const spool_item *it, edge_outcome outcome, const char *error)
{
    push_ctx *p = ctx;
    if (p->show)
        progress_clear(&p->meter); /* the line below goes where the bar was */
    if (outcome == EDGE_QUEUED) {
        char size[32];
        human_bytes(it->size, size, sizeof size);
        printf("queued  %s  (%s, #%llu)\n", path, size, (unsigned long long)it->seq);
        fflush(stdout);
        p->queued++;
    } else if (outcome == EDGE_BAD_FILE) {
        fprintf(stderr, "dxhub push: %s: %s\n", path, error);
        p->failed++;
    } else if (p->kept_out++ == 0 || strcmp(error, p->kept_why) != 0) {
        fprintf(stderr, "dxhub push: %s: not queued: %s\n", path, error);
        snprintf(p->kept_why, sizeof p->kept_why, "%s", error);
    } else {
        fprintf(stderr, "dxhub push: %s: not queued (the same)\n", path);
    }
    if (p->show)
        progress_add(&p->meter, 0, 0, now_ms()); /* draws the bar again */
}

/* Progress moves as each file is prepared (compressed for the link). */
static void push_prepared(void *ctx, const char *path)
{
    push_ctx *p = ctx;
    if (p->show)
        progress_add(&p->meter, file_size(path), 1, now_ms());
}

/* The files under push's arguments: folders walked in name order, hidden
 * entries skipped, links followed.  Each folder and file is taken once (by
 * device and inode), so a link back up the tree ends there instead of
 * looping, and a file reached twice is queued once.  Every path that cannot
 * be read is named and counted: nothing is left behind without a word. */
typedef struct walk_id {
    dev_t dev;
    ino_t ino;
} walk_id;

typedef struct push_walk {
    char **files;
    size_t n, cap;
    void  *seen; /* walk_id, a tsearch tree: an export may hold 100,000 files */
    int    errors;
} push_walk;

static int walk_failed(push_walk *w, const char *path, const char *why)
{
    fprintf(stderr, "dxhub push: %s: %s\n", path, why);
    w->errors++;
    return -1;
}

static int walk_id_cmp(const void *a, const void *b)
{
    const walk_id *x = a, *y = b;
    if (x->dev != y->dev)
        return x->dev < y->dev ? -1 : 1;
    return x->ino < y->ino ? -1 : x->ino > y->ino;
}

/* 1 when st was walked before; else remembers it (0), or -1 out of memory. */
static int walk_seen(push_walk *w, const struct stat *st)
{
    walk_id *id = malloc(sizeof *id);
    if (!id)
        return -1;
    *id = (walk_id){st->st_dev, st->st_ino};
    walk_id **found = tsearch(id, &w->seen, walk_id_cmp);
    if (found && *found == id)
        return 0;
    free(id);
    return found ? 1 : -1;
}

static int walk_path(push_walk *w, const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return walk_failed(w, path, strerror(errno));
    if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) /* a FIFO would block the push */
        return walk_failed(w, path, "neither a file nor a folder");
    int seen = walk_seen(w, &st);
    if (seen < 0)
        return walk_failed(w, path, "out of memory");
    if (seen) {
        fprintf(stderr, "dxhub push: %s: skipped, the same %s as one already taken (a link)\n", path,
                S_ISDIR(st.st_mode) ? "folder" : "file");
        return 0;
    }
    if (S_ISDIR(st.st_mode)) {
        struct dirent **ents;
        int k = scandir(path, &ents, NULL, alphasort);
        if (k < 0)
            return walk_failed(w, path, strerror(errno));
        for (int i = 0; i < k; i++) {
            if (ents[i]->d_name[0] != '.') {
                char sub[8400];
                if ((size_t)snprintf(sub, sizeof sub, "%s/%s", path, ents[i]->d_name) >= sizeof sub)
                    walk_failed(w, ents[i]->d_name, "path too long");
                else
                    walk_path(w, sub);
            }
            free(ents[i]);
        }
        free(ents);
        return 0;
    }
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64;
        char **q = realloc(w->files, cap * sizeof *q);
        if (!q)
            return walk_failed(w, path, "out of memory");
        w->files = q;
        w->cap = cap;
    }
    if (!(w->files[w->n] = strdup(path)))
        return walk_failed(w, path, "out of memory");
    w->n++;
    return 0;
}

int cmd_push(int argc, char **argv)
{
    static const struct option opts[] = {
        {"edge-data", required_argument, NULL, 'd'}, {"priority", required_argument, NULL, 'p'},
        {"referral", no_argument, NULL, 'r'},        {"note", required_argument, NULL, 'n'},
        {"link-ts", required_argument, NULL, 't'},   {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},            {0, 0, 0, 0}};
    const char *data = "./var/edge", *note = "", *link_ts = EDGE_LINK_TS_DEFAULT;
    int prio = PRIO_ROUTINE, referral = 0, quiet = 0, o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'd': data = optarg; break;
        case 'n': note = optarg; break;
        case 'r': referral = 1; break;
        case 't': link_ts = optarg; break;
        case 'q': quiet = 1; break;
        case 'p':
            prio = spool_priority_parse(optarg);
            if (prio < 0) {
                dx_errorf("push", "--priority must be stat, urgent or routine (not '%s')", optarg);
                return 2;
            }
            break;
        case 'h':
            printf("usage: dxhub push [--edge-data DIR] [--priority stat|urgent|routine] [--referral]\n"
                   "                  [--note TEXT] [--quiet] FILE|DIR...\n"
                   "  queues DICOM files in the clinic gateway's spool (works while the hub is\n"
                   "  unreachable); the gateway sends them, most urgent first.  Progress goes to\n"
                   "  stderr: a bar on a terminal, a line every tenth otherwise (--quiet: none)\n"
                   "  exit status: 0 all queued; 2 a file or path refused (it is not usable DICOM);\n"
                   "  75 none refused but some not queued for now (the gateway's disk or queue is\n"
                   "  full): push again later\n");
            return 0;
        default:
            return 2;
        }
    }
    if (optind >= argc) {
        dx_errorf("push", "no FILE or DIR given ('dxhub push --help')");
        return 2;
    }
    push_walk w = {0};
    for (int i = optind; i < argc; i++)
        walk_path(&w, argv[i]);
    tdestroy(w.seen, free);
    char **files = w.files;
    size_t n = w.n;
    char mdb[4200];
    struct stat st;
    snprintf(mdb, sizeof mdb, "%s/data.mdb", data);
    bool fresh = stat(mdb, &st) < 0; /* a mistyped --edge-data makes a queue nobody sends */
    spool *sp = NULL;
    char err[512];
    if (spool_open(data, 0, &sp, err, sizeof err) < 0) {
        dx_errorf("push", "%s", err);
        return 1;
    }
    push_ctx p = {.show = !quiet && n > 0};
    if (p.show) {
        uint64_t total = 0;
        for (size_t i = 0; i < n; i++)
            total += file_size(files[i]);
        progress_start(&p.meter, stderr, isatty(STDERR_FILENO), "push", total, (unsigned)n, now_ms());
    }
    char who[128], source[160]; /* the audit trail's "received" record names who pushed */
    dx_local_user(who, sizeof who);
    snprintf(source, sizeof source, "push:%s", who + strlen("local:"));
    edge_queue(sp, (const char *const *)files, n, prio, referral, note, source, link_ts, 1, push_report,
               push_prepared, &p);
    if (p.show)
        progress_finish(&p.meter, now_ms());
    spool_stats s;
    spool_get_stats(sp, &s);
    spool_close(&sp);
    for (size_t i = 0; i < n; i++)
        free(files[i]);
    free(files);
    char bytes[32];
    human_bytes(s.bytes_pending, bytes, sizeof bytes);
    printf("%d file(s) queued as %s%s; %d refused. The gateway now has %llu waiting (%s).\n", p.queued,
           spool_priority_name(prio), referral ? " referral" : "", p.failed, (unsigned long long)s.depth, bytes);
    if (p.kept_out)
        printf("%d file(s) not queued for now (%s): push them again once that is mended (the hub keeps an "
               "instance sent twice once).\n", p.kept_out, p.kept_why);
    if (w.errors)
        printf("%d path(s) could not be taken (named above).\n", w.errors);
    if (fresh && p.queued)
        fprintf(stderr, "dxhub push: note: %s held no gateway queue, so a new one was made there: the gateway sends "
                        "it only if it runs with --data %s\n", data, data);
    return p.failed || w.errors ? 2 : p.kept_out ? 75 : 0; /* 75: EX_TEMPFAIL, the same push may succeed later */
}
