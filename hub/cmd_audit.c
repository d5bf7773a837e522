/* cmd_audit.c — `dxhub audit`: the hub's audit trail for an auditor or
 * an IT operator: who read or changed what, and when, filtered by time,
 * who, action, study or patient; a table, or JSON lines for a SIEM, and
 * --follow to keep streaming.  It reads beside the running hub and writes
 * nothing there: the hub counts any other process's commit to its store
 * as something to alert on (dxhub_store_outside_commits_total), so who
 * reads the trail is for the operating system's audit to record, as for
 * any file holding patient data.  --edge-data reads a clinic gateway's
 * trail instead (spool.h), kept in the same record form. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include "hub/audit_filter.h"
#include "hub/cmd.h"
#include "hub/spool.h"
#include "hub/store.h"

#define FOLLOW_POLL_MS 500

static volatile sig_atomic_t stop_following;
static void on_stop(int sig) { (void)sig; stop_following = 1; }

typedef struct audit_out {
    store       *st; /* the hub's trail, or... */
    spool       *sp; /* ...a clinic gateway's (--edge-data) */
    audit_filter f;
    bool         json;
    uint64_t     limit, shown, read, last_seq;
    char         study[STORE_UID_MAX], study_patient[STORE_UID_MAX]; /* the last study resolved */
    bool         bad_record;
    char         actions[48][32]; /* the actions read, to name a --what action no record has */
    int          n_actions;
} audit_out;

static const char *field(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

/* The patient of a record's study from the index, for records written
 * before records named it; NULL when the study is gone or unknown. */
static const char *study_patient(audit_out *o, const audit_entry *e)
{
    if (*e->patient || !*e->study || !o->st)
        return NULL;
    if (strcmp(o->study, e->study) != 0) {
        store_study s;
        snprintf(o->study, sizeof o->study, "%s", e->study);
        if (store_get_study(o->st, e->study, &s) == 0)
            memcpy(o->study_patient, s.patient_id, sizeof o->study_patient);
        else
            o->study_patient[0] = '\0';
    }
    return o->study_patient[0] ? o->study_patient : NULL;
}

static void fmt_ms(int64_t ms, char *out, size_t n)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char day[32];
    if (!gmtime_r(&t, &tm) || !strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm))
        snprintf(out, n, "?");
    else
        snprintf(out, n, "%s.%03dZ", day, (int)(ms % 1000));
}

static void print_entry(audit_out *o, const audit_entry *e, const char *patient)
{
    char when[40];
    fmt_ms(e->t_ms, when, sizeof when);
    if (o->json) {
        json_t *j = json_pack("{s:I,s:s,s:I,s:s,s:s,s:s}", "seq", (json_int_t)e->seq, "time", when, "t",
                              (json_int_t)e->t_ms, "who", e->who, "what", e->what, "study", e->study);
        if (patient && *patient)
            json_object_set_new(j, "patient", json_string(patient));
        json_object_set_new(j, "detail", json_string(e->detail));
        char *line = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
        if (line)
            printf("%s\n", line);
        free(line);
        json_decref(j);
        return;
    }
    printf("%-7" PRIu64 " %s  %-20s %-16s", e->seq, when, e->who, e->what);
    if (*e->study)
        printf(" study=%s", e->study);
    if (patient && *patient)
        printf(" patient=%s", patient);
    if (*e->detail)
        printf("  %s", e->detail);
    putchar('\n');
}

static void note_action(audit_out *o, const char *what)
{
    for (int i = 0; i < o->n_actions; i++)
        if (strcmp(o->actions[i], what) == 0)
            return;
    if (o->n_actions < 48 && strlen(what) < sizeof o->actions[0])
        snprintf(o->actions[o->n_actions++], sizeof o->actions[0], "%s", what);
}

static bool action_read(const audit_out *o, const char *what, size_t len)
{
    for (int i = 0; i < o->n_actions; i++)
        if (strlen(o->actions[i]) == len && strncmp(o->actions[i], what, len) == 0)
            return true;
    return false;
}

/* An action of --what that no record has is often misspelt: name the
 * asked actions no record has, and the actions the records read have. */
static void say_unknown_actions(const audit_out *o)
{
    bool any = false;
    for (const char *p = o->f.what; *p;) {
        size_t len = strcspn(p, ",");
        if (len && !action_read(o, p, len)) {
            fprintf(stderr, "%s%.*s", any ? ", " : "dxhub audit: no record has the action ", (int)len, p);
            any = true;
        }
        p += len + (p[len] == ',');
    }
    if (!any)
        return;
    fprintf(stderr, "; the actions read:");
    for (int i = 0; i < o->n_actions; i++)
        fprintf(stderr, "%s%s", i ? ", " : " ", o->actions[i]);
    fputc('\n', stderr);
}

static int each_record(void *ctx, uint64_t seq, const char *text, size_t len)
{
    audit_out *o = ctx;
    o->read++;
    o->last_seq = seq;
    json_error_t je;
    json_t *j = json_loadb(text, len, 0, &je);
    json_int_t t = j ? json_integer_value(json_object_get(j, "t")) : 0;
    if (!j || !json_is_object(j) || !*field(j, "what")) {
        /* say it, keep going: one damaged record must not hide the others */
        fprintf(stderr, "dxhub audit: record %" PRIu64 " is not an audit record (%s)\n", seq,
                j ? "no action" : je.text);
        o->bad_record = true;
        json_decref(j);
        return 0;
    }
    audit_entry e = {seq, (int64_t)t, field(j, "who"), field(j, "what"), field(j, "study"), field(j, "patient"),
                     field(j, "detail")};
    note_action(o, e.what);
    const char *sp = study_patient(o, &e);
    if (audit_filter_match(&o->f, &e, sp)) {
        print_entry(o, &e, *e.patient ? e.patient : sp);
        o->shown++;
    }
    json_decref(j);
    return o->limit && o->shown >= o->limit;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: dxhub audit [--data DIR | --edge-data DIR] [--since TIME] [--until TIME] [--who WHO]\n"
            "                   [--what ACTION,...] [--study UID] [--patient ID] [--after SEQ] [--limit N] [--json]\n"
            "                   [--follow]\n"
            "  the hub's audit trail: who read or changed what, and when (read beside the running hub)\n"
            "  --data DIR        the hub's data folder (default ./var/hub)\n"
            "  --edge-data DIR   a clinic gateway's trail instead: received (from which modality or account),\n"
            "                    delivered, refused, report-received, alert-received, alert-announced,\n"
            "                    read, export, alert-read (who: the account that ran 'dxhub reports')\n"
            "  --since, --until  YYYY-MM-DD (a whole UTC day) or YYYY-MM-DDThh:mm[:ss] with Z (UTC, the default)\n"
            "                    or an offset such as +08:00; --until is the end of the day or second it names\n"
            "  --who WHO         reader matches every reader, reader:dr-wang one, peer:county its facilities\n"
            "  --what ACTIONS    e.g. read-instance,read-study,lookup,claim,submit,refused-key,handshake-failed\n"
            "  --study UID       records about that study\n"
            "  --patient ID      records about that patient's studies, and lookups of that patient\n"
            "  --after SEQ       only records after sequence number SEQ (to resume where an export stopped)\n"
            "  --limit N         stop after N records\n"
            "  --json            one JSON object per line: seq, time, who, what, study, patient, detail\n"
            "  --follow          after the records there are, print new ones as they are written (Ctrl-C stops)\n"
            "  It only reads the hub's trail: to record who reads it, watch the data folder with auditd.\n");
}

static int time_option(const char *name, const char *s, bool until, int64_t *ms)
{
    bool day;
    if (audit_parse_time(s, ms, &day) < 0) {
        dx_errorf("audit", "--%s %s: expected YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss] with Z or an offset "
                           "such as +08:00", name, s);
        return -1;
    }
    if (until) /* the whole day or second it names */
        *ms += day ? 86400000 : 1000;
    return 0;
}

int cmd_audit(int argc, char **argv)
{
    enum { O_SINCE = 1, O_UNTIL, O_WHO, O_WHAT, O_STUDY, O_PATIENT, O_AFTER, O_LIMIT, O_JSON, O_FOLLOW };
    static const struct option opts[] = {
        {"data", required_argument, NULL, 'd'},       {"since", required_argument, NULL, O_SINCE},
        {"until", required_argument, NULL, O_UNTIL},  {"who", required_argument, NULL, O_WHO},
        {"what", required_argument, NULL, O_WHAT},    {"study", required_argument, NULL, O_STUDY},
        {"patient", required_argument, NULL, O_PATIENT}, {"after", required_argument, NULL, O_AFTER},
        {"limit", required_argument, NULL, O_LIMIT},  {"json", no_argument, NULL, O_JSON},
        {"follow", no_argument, NULL, O_FOLLOW},      {"edge-data", required_argument, NULL, 'e'},
        {"help", no_argument, NULL, 'h'},             {0, 0, 0, 0}};
    const char *data = "./var/hub", *edge_data = NULL, *since = NULL, *until = NULL;
    bool data_given = false;
    audit_out o = {0};
    uint64_t after = 0;
    bool follow = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        char *end = NULL;
        switch (c) {
        case 'd': data = optarg; data_given = true; break;
        case 'e': edge_data = optarg; break;
        case O_SINCE:
            if (time_option("since", since = optarg, false, &o.f.since_ms) < 0)
                return 2;
            break;
        case O_UNTIL:
            if (time_option("until", until = optarg, true, &o.f.until_ms) < 0)
                return 2;
            break;
        case O_WHO: o.f.who = optarg; break;
        case O_WHAT: o.f.what = optarg; break;
        case O_STUDY: o.f.study = optarg; break;
        case O_PATIENT: o.f.patient = optarg; break;
        case O_AFTER:
        case O_LIMIT:
            errno = 0;
            uint64_t v = strtoull(optarg, &end, 10);
            if (errno || !*optarg || *end || *optarg == '-') {
                dx_errorf("audit", "--%s %s: expected a whole number", c == O_AFTER ? "after" : "limit", optarg);
                return 2;
            }
            *(c == O_AFTER ? &after : &o.limit) = v;
            break;
        case O_JSON: o.json = true; break;
        case O_FOLLOW: follow = true; break;
        default:
            usage(c == 'h' ? stdout : stderr);
            return c == 'h' ? 0 : 2;
        }
    }
    const char *empty = o.f.who && !*o.f.who ? "--who" : o.f.what && !*o.f.what ? "--what"
                      : o.f.study && !*o.f.study ? "--study" : o.f.patient && !*o.f.patient ? "--patient" : NULL;
    if (empty) {
        dx_errorf("audit", "%s: an empty value matches nothing", empty);
        return 2;
    }
    if (optind != argc) {
        dx_errorf("audit", "unexpected argument %s ('dxhub audit --help')", argv[optind]);
        return 2;
    }
    if (o.f.since_ms && o.f.until_ms && o.f.until_ms <= o.f.since_ms) {
        dx_errorf("audit", "--until %s is not after --since %s", until, since);
        return 2;
    }
    if (data_given && edge_data) {
        dx_errorf("audit", "--data (a hub) or --edge-data (a clinic gateway): one trail at a time");
        return 2;
    }
    if (edge_data)
        data = edge_data;
    char path[4200];
    struct stat sb;
    snprintf(path, sizeof path, "%s/data.mdb", data);
    if (stat(path, &sb) < 0) {
        dx_errorf("audit", "%s holds no %s data (no data.mdb)", data, edge_data ? "clinic gateway" : "hub");
        return 2;
    }
    char err[512];
    store_config cfg = {.dir = data, .attach = true}; /* the hub may be serving it */
    if ((edge_data ? spool_open(data, 0, &o.sp, err, sizeof err) : store_open(&cfg, &o.st, err, sizeof err)) < 0) {
        dx_errorf("audit", "%s", err);
        return 1;
    }
    if (follow) { /* Ctrl-C ends the stream with its summary, not mid-line */
        struct sigaction sa = {.sa_handler = on_stop};
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
    }
    o.last_seq = after;
    for (;;) {
        int rc = o.st ? store_audit_walk(o.st, o.last_seq + 1, each_record, &o)
                      : spool_audit_walk(o.sp, o.last_seq + 1, each_record, &o);
        fflush(stdout);
        if (rc < 0) {
            dx_errorf("audit", "cannot read the audit trail in %s (%s)", data, strerror(-rc));
            store_close(&o.st);
            spool_close(&o.sp);
            return 1;
        }
        if (!follow || stop_following || (o.limit && o.shown >= o.limit))
            break;
        struct timespec ts = {0, FOLLOW_POLL_MS * 1000000L};
        nanosleep(&ts, NULL);
        if (stop_following)
            break;
    }
    store_close(&o.st);
    spool_close(&o.sp);
    if (o.f.what && !follow)
        say_unknown_actions(&o);
    fprintf(stderr, "%" PRIu64 " of %" PRIu64 " records shown%s\n", o.shown, o.read,
            o.bad_record ? " (some records could not be read: see above)" : "");
    return o.bad_record ? 1 : 0;
}
