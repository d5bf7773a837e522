/* cmd_reader.c — `dxhub reader`: a headless reader for scripts, tests and
 * `make demo`, over the reader protocol's client (hub.h).
 *
 * HELLO, READY N, claim what is offered (or --task ID), then per task:
 * fetch its study into DIR/<study uid>/<sop>.dcm (resumable: a .part file
 * grows until the instance is whole, its digest is checked, then it is
 * renamed), submit the report file's exact bytes with --action, print one
 * line (or one JSON object per line).  A task held already says why a
 * reviewer returned it, if one did (HELD).  "--task ID --action addendum"
 * adds a signed addendum to the signed task ID (no claim: the hub checks
 * that the signer signed it).  Leases are kept alive by heartbeats
 * while it works and for --hold seconds; --release gives the tasks back.
 *
 * Exit status: 0 done; 1 an operation failed (hub unreachable or refusing,
 * no task offered, a claim/fetch/submit refused); 2 bad usage or input. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "codecs/codecs.h"
#include "hub/cmd.h"
#include "hub/digest.h"
#include "hub/hub.h"
#include "hub/keys.h"

#define MAX_TAKE 100

static const char usage[] =
    "usage: dxhub reader --hub tcp://HOST:PORT --hub-key HUB.pub --keys DIR [OPTIONS]\n"
    "  a headless reader: takes tasks the hub offers, fetches their studies,\n"
    "  submits reports; one line per task on stdout (--json: one JSON object)\n"
    "  --hub-key KEY       the hub's hub.pub (or the key); NOW,NEXT while the hub changes keypairs\n"
    "  --keys DIR          our CURVE keypair DIR/NAME.key (made when missing; the hub\n"
    "                      must allow DIR/NAME.pub as reader:<id>)\n"
    "  --name NAME         keypair name (default reader)\n"
    "  --take N            ask for N offers (READY N) and claim them\n"
    "  --task ID           work on this task instead: claim it, or go on with it if held\n"
    "  --wait SECONDS      how long to wait for offers (default 10)\n"
    "  --fetch-to DIR      fetch each task's study into DIR/<study uid>/<sop>.dcm (resumable)\n"
    "  --submit FILE       the report: these exact bytes are stored\n"
    "  --action A          draft, sign, return (needs no --submit) or addendum (with\n"
    "                      --task: the signed task; the document supersedes its report)\n"
    "  --reason TEXT       with --action return: why, for the resident\n"
    "  --report-id ID      the report's id (default task<ID>-<action>-<time>)\n"
    "  --sig FILE          detached signature to submit with the report\n"
    "  --chain FILE        certificate chain (PEM) to submit with the report\n"
    "  --hold SECONDS      keep the leases alive this long before exiting\n"
    "  --release           give the tasks still held back to the queue at the end\n"
    "  --timeout SECONDS   per request (default 10)\n"
    "  --json              JSON lines instead of text\n";

static volatile sig_atomic_t stop_flag;
static void on_stop(int sig) { (void)sig; stop_flag = 1; }

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static int slurp(const char *path, char **out, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return -errno;
    size_t cap = 1 << 16, n = 0;
    char *p = malloc(cap);
    for (;;) {
        if (!p) {
            fclose(fp);
            return -ENOMEM;
        }
        n += fread(p + n, 1, cap - n, fp);
        if (n < cap)
            break;
        cap *= 2;
        char *q = realloc(p, cap);
        if (!q)
            free(p);
        p = q;
    }
    int bad = ferror(fp);
    fclose(fp);
    if (bad) {
        free(p);
        return -EIO;
    }
    *out = p;
    *len = n;
    return 0;
}

static void human(uint64_t b, char *out, size_t n)
{
    if (b < 1000)
        snprintf(out, n, "%llu B", (unsigned long long)b);
    else if (b < 1000000)
        snprintf(out, n, "%.1f KB", b / 1e3);
    else if (b < 1000000000)
        snprintf(out, n, "%.1f MB", b / 1e6);
    else
        snprintf(out, n, "%.2f GB", b / 1e9);
}

/* --- fetching ------------------------------------------------------------------ */

typedef struct fetch_stats {
    char     dir[4200];
    unsigned instances, present, fetched, resumed;
    uint64_t bytes;
} fetch_stats;

/* 0: the file's data set hashes to hex (or no digest to check); -1 not. */
static int check_digest(const char *path, const char *hex, char *err, size_t errlen)
{
    uint8_t want[32], got[32];
    if (digest_from_hex(hex, want) < 0)
        return 0;
    dcm_parse_opts o = {.stop_at_tag = 0x00080000}; /* only the meta group matters */
    dcm_file *f = NULL;
    dcm_err de = {0};
    if (dcm_open(path, &o, &f, &de) < 0) {
        snprintf(err, errlen, "%s: not a DICOM file: %s", path, de.msg[0] ? de.msg : "unreadable");
        return -1;
    }
    size_t off = dcm_dataset_offset(f);
    dcm_free(&f);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || digest_fd(fd, off, got) < 0) {
        if (fd >= 0)
            close(fd);
        snprintf(err, errlen, "%s: cannot read it back", path);
        return -1;
    }
    close(fd);
    if (memcmp(want, got, 32)) {
        snprintf(err, errlen, "%s: digest mismatch (the bytes received are not what the hub stored)", path);
        return -1;
    }
    return 0;
}

typedef struct sink_ctx {
    int      fd;
    uint64_t written;
} sink_ctx;

static int sink_pwrite(void *ctx, uint64_t offset, const void *p, size_t n)
{
    sink_ctx *s = ctx;
    const char *q = p;
    while (n) {
        ssize_t w = pwrite(s->fd, q, n, (off_t)offset);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return 1;
        }
        q += w, n -= (size_t)w, offset += (uint64_t)w, s->written += (uint64_t)w;
    }
    return 0;
}

static int fetch_study(hub_client *c, const hub_task *t, const char *root, fetch_stats *fs, char *err, size_t errlen)
{
    hub_instance *list = NULL;
    size_t n = 0;
    if (hub_client_study(c, t->id, &list, &n)) {
        snprintf(err, errlen, "study listing refused: %s", hub_client_error(c));
        return -1;
    }
    int rc = 0;
    if (!dcm_uid_valid(t->study_uid)) {
        snprintf(err, errlen, "the study UID is not usable as a folder name");
        rc = -1;
        goto out;
    }
    snprintf(fs->dir, sizeof fs->dir, "%s/%s", root, t->study_uid);
    if ((mkdir(root, 0755) < 0 && errno != EEXIST) || (mkdir(fs->dir, 0755) < 0 && errno != EEXIST)) {
        snprintf(err, errlen, "cannot create %.400s: %s", fs->dir, strerror(errno));
        rc = -1;
        goto out;
    }
    fs->instances = (unsigned)n;
    for (size_t i = 0; i < n && !rc; i++) {
        hub_instance *in = &list[i];
        if (!dcm_uid_valid(in->sop_uid)) {
            snprintf(err, errlen, "an instance UID is not usable as a file name");
            rc = -1;
            break;
        }
        char final[4400], part[4410];
        snprintf(final, sizeof final, "%s/%s.dcm", fs->dir, in->sop_uid);
        snprintf(part, sizeof part, "%s.part", final);
        struct stat st;
        if (stat(final, &st) == 0 && (uint64_t)st.st_size == in->size &&
            check_digest(final, in->digest, err, errlen) == 0) {
            fs->present++;
            continue;
        }
        int fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            snprintf(err, errlen, "%.400s: %s", part, strerror(errno));
            rc = -1;
            break;
        }
        uint64_t from = 0;
        if (fstat(fd, &st) == 0 && (uint64_t)st.st_size <= in->size)
            from = (uint64_t)st.st_size; /* resume where the last run stopped */
        else if (ftruncate(fd, 0) < 0)
            from = 0;
        if (from)
            fs->resumed++;
        sink_ctx s = {fd, 0};
        int frc = hub_client_fetch(c, t->id, in->sop_uid, from, sink_pwrite, &s);
        fs->bytes += s.written;
        if (frc) {
            snprintf(err, errlen, "fetching %s: %s", in->sop_uid, hub_client_error(c));
            close(fd);
            rc = -1;
            break;
        }
        if (fsync(fd) < 0 || close(fd) < 0) {
            snprintf(err, errlen, "%.400s: %s", part, strerror(errno));
            rc = -1;
            break;
        }
        if (check_digest(part, in->digest, err, errlen) < 0) {
            unlink(part); /* start over next time */
            rc = -1;
            break;
        }
        if (rename(part, final) < 0) {
            snprintf(err, errlen, "%.400s: %s", final, strerror(errno));
            rc = -1;
            break;
        }
        fs->fetched++;
    }
    int dfd = open(fs->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
out:
    free(list);
    return rc;
}

/* --- one task -------------------------------------------------------------------- */

typedef struct opts {
    const char *fetch_to, *action, *report_id, *reason;
    const char *report, *sig, *chain;
    size_t      report_len, sig_len, chain_len;
    int         json;
} opts;

typedef struct outcome {
    hub_task    t;
    int64_t     lease_until;
    int         fetched, submitted, failed;
    int         claimed;     /* claimed by this run */
    int         held_before; /* --task: ours already (not claimed by this run) */
    int         addendum;    /* --task of a signed task, --action addendum: nothing claimed */
    fetch_stats fs;
    char        report_id[64], state[16], error[600];
} outcome;

static void print_outcome(const opts *o, const outcome *r)
{
    const hub_task *t = &r->t;
    if (o->json) {
        json_t *j = json_pack("{s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:b,s:b,s:i,s:i,s:s,s:s,s:s,s:I}", "task",
                              (json_int_t)t->id, "study", t->study_uid, "kind", t->kind, "priority", t->priority,
                              "modality", t->modality, "body_part", t->body_part, "facility", t->facility, "state",
                              r->state[0] ? r->state : t->state, "review", t->review, "referral", t->referral,
                              "version", (int)t->version, "instances", (int)t->instances, "patient_id", t->patient_id,
                              "note", t->note, "triage", t->triage, "due", (json_int_t)t->due_ms);
        json_object_set_new(j, "claimed", json_boolean(r->claimed));
        if (r->lease_until)
            json_object_set_new(j, "lease_until", json_integer((json_int_t)r->lease_until));
        if (r->fetched)
            json_object_set_new(j, "fetched",
                                json_pack("{s:s,s:i,s:i,s:i,s:i,s:I}", "dir", r->fs.dir, "instances",
                                          (int)r->fs.instances, "fetched", (int)r->fs.fetched, "present",
                                          (int)r->fs.present, "resumed", (int)r->fs.resumed, "bytes",
                                          (json_int_t)r->fs.bytes));
        if (r->submitted)
            json_object_set_new(j, "submitted", json_pack("{s:s,s:s,s:s}", "action", o->action, "report_id",
                                                          r->report_id, "state", r->state));
        if (t->returned_by[0]) {
            json_object_set_new(j, "returned", json_string(t->returned));
            json_object_set_new(j, "returned_by", json_string(t->returned_by));
        }
        if (r->error[0])
            json_object_set_new(j, "error", json_string(r->error));
        char *s = json_dumps(j, JSON_COMPACT);
        if (s)
            printf("%s\n", s);
        free(s);
        json_decref(j);
    } else {
        if (r->addendum)
            printf("task %llu (signed)", (unsigned long long)t->id);
        else if (r->held_before)
            printf("task %llu (held already)", (unsigned long long)t->id);
        else
            printf("task %llu %s %s %s%s from %s, study %s (%u instances)%s", (unsigned long long)t->id, t->priority,
                   t->kind, t->modality, t->referral ? " referral" : "", t->facility[0] ? t->facility : "?",
                   t->study_uid, t->instances, t->review ? " for review" : "");
        if (t->returned_by[0]) /* the reviewer's words, for the resident */
            printf("; returned by %s: %s", t->returned_by, t->returned);
        if (r->fetched) {
            char b[32];
            human(r->fs.bytes, b, sizeof b);
            printf("; fetched %u of %u instances (%s, %u already here) into %s", r->fs.fetched, r->fs.instances, b,
                   r->fs.present, r->fs.dir);
        }
        if (r->submitted)
            printf("; %s -> %s (report %s)", o->action, r->state, r->report_id);
        else
            printf("; %s", r->state[0] ? r->state : t->state);
        if (r->error[0])
            printf("; FAILED: %s", r->error);
        printf("\n");
    }
    fflush(stdout);
}

static int work(hub_client *c, const opts *o, outcome *r)
{
    hub_task *t = &r->t;
    r->lease_until = hub_client_lease_until(c);
    if (o->fetch_to && !r->failed) {
        r->fetched = 1;
        if (fetch_study(c, t, o->fetch_to, &r->fs, r->error, sizeof r->error) < 0)
            r->failed = 1;
    }
    if (o->action && !r->failed) {
        if (o->report_id)
            snprintf(r->report_id, sizeof r->report_id, "%s", o->report_id);
        else
            snprintf(r->report_id, sizeof r->report_id, "task%llu-%s-%lld", (unsigned long long)t->id, o->action,
                     (long long)now_ms());
        int rc = !strcmp(o->action, "return")
                     ? hub_client_return(c, t->id, r->report_id, o->reason, r->state, sizeof r->state)
                     : hub_client_submit(c, t->id, o->action, r->report_id, o->report, o->report_len, o->sig,
                                         o->sig_len, o->chain, o->chain_len, r->state, sizeof r->state);
        if (rc) {
            snprintf(r->error, sizeof r->error, "%s refused: %s", o->action, hub_client_error(c));
            r->failed = 1;
        } else {
            r->submitted = 1;
        }
    }
    print_outcome(o, r);
    return r->failed ? -1 : 0;
}

/* A task we hold already: the reviewer's reason when it was returned to us
 * (HELD); left empty when the hub does not say. */
static void held_reason(hub_client *c, hub_task *t)
{
    hub_task *held = NULL;
    size_t n = 0;
    if (hub_client_held(c, &held, &n) == 0)
        for (size_t i = 0; i < n; i++)
            if (held[i].id == t->id) {
                snprintf(t->returned, sizeof t->returned, "%s", held[i].returned);
                snprintf(t->returned_by, sizeof t->returned_by, "%s", held[i].returned_by);
            }
    free(held);
}

static int held_state(const char *s) { return !strcmp(s, "claimed") || !strcmp(s, "drafted"); }

/* --- the command ------------------------------------------------------------------ */

static int read_opt_file(const char *what, const char *path, char **p, size_t *n)
{
    int rc = slurp(path, p, n);
    if (rc < 0)
        dx_errorf("reader", "%s %s: %s", what, path, strerror(-rc));
    return rc;
}

static long parse_num(const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    return (*s && !*end && !errno && v >= lo && v <= hi) ? v : lo - 1;
}

int cmd_reader(int argc, char **argv)
{
    enum { O_HUB = 1, O_HUBKEY, O_KEYS, O_NAME, O_TAKE, O_TASK, O_WAIT, O_FETCH, O_SUBMIT, O_ACTION, O_RID, O_SIG,
           O_CHAIN, O_HOLD, O_RELEASE, O_TIMEOUT, O_JSON, O_REASON };
    static const struct option lopts[] = {
        {"hub", required_argument, NULL, O_HUB},        {"hub-key", required_argument, NULL, O_HUBKEY},
        {"keys", required_argument, NULL, O_KEYS},      {"name", required_argument, NULL, O_NAME},
        {"take", required_argument, NULL, O_TAKE},      {"task", required_argument, NULL, O_TASK},
        {"wait", required_argument, NULL, O_WAIT},      {"fetch-to", required_argument, NULL, O_FETCH},
        {"submit", required_argument, NULL, O_SUBMIT},  {"action", required_argument, NULL, O_ACTION},
        {"report-id", required_argument, NULL, O_RID},  {"sig", required_argument, NULL, O_SIG},
        {"chain", required_argument, NULL, O_CHAIN},    {"hold", required_argument, NULL, O_HOLD},
        {"release", no_argument, NULL, O_RELEASE},      {"timeout", required_argument, NULL, O_TIMEOUT},
        {"json", no_argument, NULL, O_JSON},            {"help", no_argument, NULL, 'h'},
        {"reason", required_argument, NULL, O_REASON},
        {0, 0, 0, 0}};
    const char *hub = NULL, *hub_key = NULL, *keys_dir = NULL, *name = "reader", *submit = NULL, *sig = NULL,
               *chain = NULL;
    long take = 0, task_id = -1, wait_s = 10, hold_s = 0, timeout_s = 10;
    int release = 0;
    opts o = {0};
    int c_;
    optind = 1;
    while ((c_ = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
        long *num = NULL, lo = 0, hi = 0;
        const char *optname = "";
        switch (c_) {
        case O_HUB: hub = optarg; break;
        case O_HUBKEY: hub_key = optarg; break;
        case O_KEYS: keys_dir = optarg; break;
        case O_NAME: name = optarg; break;
        case O_FETCH: o.fetch_to = optarg; break;
        case O_SUBMIT: submit = optarg; break;
        case O_ACTION: o.action = optarg; break;
        case O_RID: o.report_id = optarg; break;
        case O_REASON: o.reason = optarg; break;
        case O_SIG: sig = optarg; break;
        case O_CHAIN: chain = optarg; break;
        case O_RELEASE: release = 1; break;
        case O_JSON: o.json = 1; break;
        case O_TAKE: num = &take, lo = 1, hi = MAX_TAKE, optname = "take"; break;
        case O_TASK: num = &task_id, lo = 1, hi = 0x7fffffffL, optname = "task"; break;
        case O_WAIT: num = &wait_s, lo = 0, hi = 86400, optname = "wait"; break;
        case O_HOLD: num = &hold_s, lo = 0, hi = 86400, optname = "hold"; break;
        case O_TIMEOUT: num = &timeout_s, lo = 1, hi = 3600, optname = "timeout"; break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
        if (num) {
            long v = parse_num(optarg, lo, hi);
            if (v < lo) {
                dx_errorf("reader", "bad number '%s' for --%s (%ld to %ld)", optarg, optname, lo, hi);
                return 2;
            }
            *num = v;
        }
    }
    if (optind < argc) {
        dx_errorf("reader", "unexpected argument '%s'", argv[optind]);
        return 2;
    }
    if (!hub || !hub_key || !keys_dir) {
        dx_errorf("reader", "--hub tcp://HOST:PORT, --hub-key HUB.pub and --keys DIR are required ('dxhub reader --help')");
        return 2;
    }
    if (!name[0] || strchr(name, '/')) {
        dx_errorf("reader", "--name must be a file name without '/'");
        return 2;
    }
    if (take && task_id > 0) {
        dx_errorf("reader", "--take and --task exclude each other");
        return 2;
    }
    if (o.action && strcmp(o.action, "draft") && strcmp(o.action, "sign") && strcmp(o.action, "return") &&
        strcmp(o.action, "addendum")) {
        dx_errorf("reader", "--action must be draft, sign, return or addendum (not '%s')", o.action);
        return 2;
    }
    if (o.action && !strcmp(o.action, "addendum") && task_id < 0) {
        dx_errorf("reader", "--action addendum needs --task ID (the signed task it adds to)");
        return 2;
    }
    if (submit && !o.action) {
        dx_errorf("reader", "--submit needs --action draft|sign|return|addendum");
        return 2;
    }
    if (o.action && !submit && strcmp(o.action, "return")) {
        dx_errorf("reader", "--action %s needs --submit FILE (the report)", o.action);
        return 2;
    }
    if (o.report_id && (take > 1 || !o.report_id[0] || strlen(o.report_id) > 60 || strchr(o.report_id, '/'))) {
        dx_errorf("reader", "--report-id must be 1-60 characters without '/', and names one report (--take 1)");
        return 2;
    }
    char *report = NULL, *sigb = NULL, *chainb = NULL;
    if ((submit && read_opt_file("--submit", submit, &report, &o.report_len) < 0) ||
        (sig && read_opt_file("--sig", sig, &sigb, &o.sig_len) < 0) ||
        (chain && read_opt_file("--chain", chain, &chainb, &o.chain_len) < 0)) {
        free(report);
        free(sigb);
        return 2;
    }
    o.report = report, o.sig = sigb, o.chain = chainb;
    if (submit && !o.report_len) {
        dx_errorf("reader", "--submit %s: the report is empty", submit);
        free(report), free(sigb), free(chainb);
        return 2;
    }

    char err[512], hub_pub[KEY_Z85_LEN + 1], hub_pub_next[KEY_Z85_LEN + 1];
    keypair kp;
    int rc = 2;
    if (keys_read_hub_keys(hub_key, hub_pub, hub_pub_next, err, sizeof err) < 0) {
        dx_errorf("reader", "--hub-key %s", err);
        goto done;
    }
    char secpath[4200];
    snprintf(secpath, sizeof secpath, "%s/%s.key", keys_dir, name);
    int made = access(secpath, F_OK) != 0;
    if (keys_load_or_create(keys_dir, name, &kp, err, sizeof err) < 0) {
        dx_errorf("reader", "%s", err);
        goto done;
    }
    if (made)
        dx_errorf("reader", "made a new keypair %s/%s.key; the hub must allow %s/%s.pub as reader:<id>", keys_dir,
                  name, keys_dir, name);

    struct sigaction sa = {0};
    sa.sa_handler = on_stop;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    rc = 1;
    hub_client *c = NULL;
    hub_client_config cfg = {.endpoint = hub, .hub_public = hub_pub, .hub_public_next = hub_pub_next,
                             .public_key = kp.pub, .secret_key = kp.sec, .timeout_ms = (int)timeout_s * 1000};
    if (hub_client_open(&cfg, &c, err, sizeof err) < 0) {
        dx_errorf("reader", "%s", err);
        rc = 2;
        goto done;
    }
    char me[64];
    if (hub_client_hello(c, me, sizeof me)) {
        dx_errorf("reader", "%s: %s", hub, hub_client_error(c));
        goto close;
    }
    if (hub_client_on_next_key(c))
        dx_errorf("reader", "note: the hub answers to the second key of --hub-key (%s): it has its new keypair; "
                            "give that key alone once the change is over", hub_pub_next);
    if (!take && task_id < 0) { /* nothing to do but say who we are */
        hub_reader_profile p;
        hub_client_profile(c, &p);
        if (o.json) {
            json_t *j = json_pack("{s:s,s:s,s:s,s:i}", "reader", p.id, "seniority", p.seniority, "modalities",
                                  p.modalities, "max_tasks", p.max_tasks);
            char *s = json_dumps(j, JSON_COMPACT);
            if (s)
                printf("%s\n", s);
            free(s);
            json_decref(j);
        } else
            printf("reader %s (%s): modalities %s, at most %d tasks\n", p.id, p.seniority, p.modalities, p.max_tasks);
        rc = 0;
        goto close;
    }

    outcome *done_list = calloc(MAX_TAKE, sizeof *done_list);
    if (!done_list) {
        dx_errorf("reader", "out of memory");
        goto close;
    }
    size_t n_done = 0;
    int failures = 0;
    if (task_id > 0 && !strcmp(o.action ? o.action : "", "addendum")) {
        outcome *r = &done_list[n_done++]; /* a signed task: nothing to claim */
        r->t.id = (uint64_t)task_id;
        r->addendum = 1;
        snprintf(r->t.state, sizeof r->t.state, "signed");
        if (work(c, &o, r) < 0)
            failures++;
    } else if (task_id > 0) {
        outcome *r = &done_list[n_done++];
        if (hub_client_claim(c, (uint64_t)task_id, &r->t) == 0) {
            r->claimed = 1;
            snprintf(r->state, sizeof r->state, "claimed");
        } else {
            /* Already ours (claimed, drafted, or given back to us by a
             * reviewer)?  The study listing answers only for the holder. */
            char why[512];
            snprintf(why, sizeof why, "%s", hub_client_error(c));
            if (hub_client_study_uid(c, (uint64_t)task_id, r->t.study_uid, sizeof r->t.study_uid) == 0) {
                r->t.id = (uint64_t)task_id;
                r->held_before = 1;
                snprintf(r->t.state, sizeof r->t.state, "held");
                held_reason(c, &r->t);
            } else {
                dx_errorf("reader", "task %ld: claim refused: %s", task_id, why);
                free(done_list);
                goto close;
            }
        }
        if (work(c, &o, r) < 0)
            failures++;
    } else {
        int64_t deadline = mono_ms() + wait_s * 1000;
        if (hub_client_ready(c, (int)take)) {
            dx_errorf("reader", "READY: %s", hub_client_error(c));
            free(done_list);
            goto close;
        }
        while ((long)n_done < take && !stop_flag) {
            int64_t left = deadline - mono_ms();
            hub_task offer;
            /* in slices, so SIGINT/SIGTERM are noticed while waiting */
            int orc = hub_client_next_offer(c, left > 250 ? 250 : left > 0 ? (int)left : 0, &offer);
            if (orc == HUB_ETIMEDOUT) {
                if (mono_ms() >= deadline)
                    break;
                continue;
            }
            if (orc) {
                dx_errorf("reader", "%s", hub_client_error(c));
                failures++;
                break;
            }
            outcome *r = &done_list[n_done];
            memset(r, 0, sizeof *r);
            if (hub_client_claim(c, offer.id, &r->t)) {
                r->t = offer;
                snprintf(r->error, sizeof r->error, "claim refused: %s", hub_client_error(c));
                r->failed = 1;
                print_outcome(&o, r);
                failures++;
                continue;
            }
            /* the offer says whether it is a review; the claim's answer too */
            r->t.review = r->t.review || offer.review;
            r->claimed = 1;
            snprintf(r->state, sizeof r->state, "claimed");
            n_done++;
            if (work(c, &o, r) < 0)
                failures++;
        }
        hub_client_ready(c, 0); /* withdraw what credit is left */
        hub_task extra;
        while (hub_client_next_offer(c, 0, &extra) == 0) /* offers we will not take: back to the queue */
            hub_client_release(c, extra.id);
        if (n_done == 0 && !failures) {
            if (stop_flag)
                dx_errorf("reader", "interrupted before any task was offered");
            else
                dx_errorf("reader", "no task offered within %ld s", wait_s);
            failures++;
        }
    }
    /* Hold: keep the leases alive (heartbeats), as a reader reading would. */
    int64_t hold_end = mono_ms() + hold_s * 1000;
    while (hold_s > 0 && !stop_flag && mono_ms() < hold_end) {
        int iv = hub_client_keepalive(c, 0);
        int64_t left = hold_end - mono_ms();
        for (int64_t t = 0; t < (left < iv ? left : iv) && !stop_flag; t += 50)
            sleep_ms(50);
        if (stop_flag || mono_ms() >= hold_end)
            break;
        int leases;
        if (hub_client_heartbeat(c, &leases))
            dx_errorf("reader", "heartbeat: %s", hub_client_error(c));
    }
    if (release) {
        for (size_t i = 0; i < n_done; i++) {
            outcome *r = &done_list[i];
            const char *st = r->state[0] ? r->state : r->t.state;
            if (!held_state(st) && strcmp(st, "held"))
                continue;
            int ok = hub_client_release(c, r->t.id) == 0;
            if (o.json) {
                json_t *j = json_pack("{s:I,s:b}", "task", (json_int_t)r->t.id, "released", ok);
                if (!ok)
                    json_object_set_new(j, "error", json_string(hub_client_error(c)));
                char *s = json_dumps(j, JSON_COMPACT);
                if (s)
                    printf("%s\n", s);
                free(s);
                json_decref(j);
            } else
                printf("task %llu %s\n", (unsigned long long)r->t.id, ok ? "released" : hub_client_error(c));
            fflush(stdout);
            if (!ok)
                failures++;
        }
    }
    free(done_list);
    rc = failures ? 1 : 0;
close:
    hub_client_close(&c);
done:
    free(report);
    free(sigb);
    free(chainb);
    return rc;
}
