/* cmd_reports.c — `dxhub reports` at the clinic: what came back from the
 * hub (reports, critical-value alerts and repeat requests, each with whose
 * exam it is), a person's confirmation of reading an alert (--ack), and
 * --export, which verifies each signed report and writes it out. */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include "hub/clinic_page.h"
#include "hub/clock.h"
#include "hub/cmd.h"
#include "hub/inbox_listing.h"
#include "hub/inbox_summary.h"
#include "hub/report_export.h"
#include "hub/spool.h"
#include "hub/trust_watch.h"

/* One item as the nurse reads it: what, whose, and for an alert what it
 * says: a critical value's impression, or what the hub asks for. */
static int print_inbox(void *ctx, const char *id, const char *kind, int64_t received_ms, const void *data, size_t len)
{
    inbox_listing *l = ctx;
    if (!inbox_listing_chosen(l, id))
        return 0;
    char age[32], when[32];
    dx_human_age(clock_wall_ms() - received_ms, age, sizeof age);
    dx_fmt_time((time_t)(received_ms / 1000), when, sizeof when);
    inbox_summary sum;
    inbox_summary_read(kind, data, len, &sum);
    printf("%-7s %-40s received %s (%s ago)\n", sum.alert ? "ALERT" : kind, id, when, age);
    if (sum.patient_id[0])
        printf("        patient %s%s%s%s%s\n", sum.patient_id, sum.patient_name[0] ? " " : "", sum.patient_name,
               sum.exam[0] ? " · " : "", sum.exam);
    else if (sum.exam[0])
        printf("        %s\n", sum.exam);
    if (sum.supersedes[0])
        printf("        addendum to %s\n", sum.supersedes);
    if (sum.alert && sum.text[0])
        printf("        %s: %s\n", sum.critical ? "CRITICAL" : "REQUEST", sum.text);
    spool_confirmation c;
    if (sum.alert && spool_alert_confirmation(l->sp, id, &c) == 0) {
        dx_fmt_time((time_t)(c.at_ms / 1000), when, sizeof when);
        printf("        read by %s at %s%s\n", c.by, when, c.told_hub ? "" : " (the hub not told yet)");
    } else if (sum.alert) {
        printf("        NOT CONFIRMED READ: once a person has read it, dxhub reports --ack %s --by NAME\n", id);
    }
    return 0;
}

/* --export: every signed report of the inbox (or the one --id names). */
typedef struct export_ctx {
    spool             *sp;
    report_export_opts o;
    const char        *only;
    int                exported, refused, skipped;
} export_ctx;

static int export_inbox(void *ctx, const char *id, const char *kind, int64_t received_ms, const void *data,
                        size_t len)
{
    (void)kind;
    (void)received_ms;
    export_ctx *e = ctx;
    if (e->only && strcmp(e->only, id))
        return 0;
    char how[4200];
    snprintf(how, sizeof how, " to %s", e->o.out_dir);
    char me[160];
    dx_local_user(me, sizeof me);
    int arc = inbox_listing_audit(e->sp, &id, 1, me, "export", how);
    if (arc < 0) {
        dx_errorf("reports", "%s: not exported: the audit trail cannot be written (%s)", id, strerror(-arc));
        e->refused++;
        return 0;
    }
    char rid[REPORT_ID_MAX + 1], why[768];
    pki_identity who;
    int rc = report_export(&e->o, data, len, rid, &who, why, sizeof why);
    if (rc == 1) {
        e->skipped++;
    } else if (rc < 0) {
        dx_errorf("reports", "%s", why);
        e->refused++;
    } else {
        printf("exported %s to %s/%s/ (signature verified: %s, reader %s, %s)\n", rid, e->o.out_dir, rid, who.name,
               who.reader_id, who.facility);
        e->exported++;
    }
    return 0;
}

/* --ack: a person confirms reading an alert; the gateway tells the hub. */
static int confirm_read(const char *data, const char *id, const char *by)
{
    char mdb[4200], err[512];
    struct stat st;
    snprintf(mdb, sizeof mdb, "%s/data.mdb", data);
    spool *sp = NULL;
    if (stat(mdb, &st) < 0 || spool_open(data, 0, &sp, err, sizeof err) < 0) {
        dx_errorf("reports", "no clinic gateway data in %s (is --edge-data the gateway's --data?)", data);
        return 1;
    }
    spool_confirmation was;
    char who[160];
    dx_local_user(who, sizeof who);
    int rc = spool_alert_confirm(sp, id, by, who, clock_wall_ms(), &was);
    spool_close(&sp);
    char when[32];
    if (rc == -EEXIST) {
        dx_fmt_time((time_t)(was.at_ms / 1000), when, sizeof when);
        printf("alert %s was confirmed read already, by %s at %s\n", id, was.by, when);
        return 0;
    }
    if (rc == -ENOENT || rc == -EINVAL) {
        dx_errorf("reports", "%s: %s ('dxhub reports' lists what arrived)", id,
                  rc == -ENOENT ? "no such item in this clinic's inbox" : "a report, not an alert: nothing to confirm");
        return 1;
    }
    if (rc < 0) {
        dx_errorf("reports", "cannot record it in %s: %s", data, strerror(-rc));
        return 1;
    }
    printf("alert %s confirmed read by %s; the hub is told at the gateway's next keep-alive\n", id, by);
    return 0;
}

static const char reports_usage[] =
    "usage: dxhub reports [--edge-data DIR] [--days N | --all | --patient ID]\n"
    "       dxhub reports [--edge-data DIR] --ack ALERT --by NAME\n"
    "       dxhub reports [--edge-data DIR] --export OUT --trust DIR [--id REPORT] [--format json,html,pdf]\n"
    "       dxhub reports [--edge-data DIR] --serve PORT --trust DIR [--bind ADDR] [--days N]\n"
    "  lists the reports and alerts this clinic received in the last --days (default 7; --all: every one),\n"
    "  and every alert nobody has confirmed reading (--patient ID: every item about that patient, however\n"
    "  old); each shown is recorded in the gateway's audit trail\n"
    "  ('dxhub audit --edge-data DIR'), as who ran the command.  --ack records that NAME read\n"
    "  the alert (危急值 receipt: the hub's operator sees it unread until then); with --export writes each\n"
    "  signed report to OUT/<report id>/: report.json with report.json.sig and\n"
    "  report.json.chain.pem (as 'dxhub verify' and openssl take them) and a printable\n"
    "  page, report.html and report.pdf.  A report whose signature does not verify\n"
    "  against the trust list is not exported (the reason on stderr, exit 1).\n"
    "  --serve serves the same list as a page for the nurses' browser on this PC (it prints the link to\n"
    "  open once): alerts nobody has confirmed reading at the top, confirmed there with the reader's\n"
    "  name; a signed report opens once its signature verifies; the page updates itself.\n"
    "  --trust DIR    the consortium's CA certificates and CRLs\n"
    "  --serve PORT   the page's port (0: any free one); --bind ADDR a 127.x.x.x address (default 127.0.0.1)\n"
    "  --id REPORT    only this report\n"
    "  --format LIST  what to write (default json,html,pdf)\n";

static int parse_formats(const char *s, report_export_opts *o)
{
    o->json = o->html = o->pdf = 0;
    char buf[64];
    snprintf(buf, sizeof buf, "%s", s);
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (!strcmp(t, "json"))
            o->json = 1;
        else if (!strcmp(t, "html"))
            o->html = 1;
        else if (!strcmp(t, "pdf"))
            o->pdf = 1;
        else
            return -1;
    }
    return o->json || o->html || o->pdf ? 0 : -1;
}

int cmd_reports(int argc, char **argv)
{
    static const struct option opts[] = {
        {"edge-data", required_argument, NULL, 'd'}, {"export", required_argument, NULL, 'x'},
        {"trust", required_argument, NULL, 't'},     {"id", required_argument, NULL, 'i'},
        {"format", required_argument, NULL, 'f'},    {"ack", required_argument, NULL, 'a'},
        {"by", required_argument, NULL, 'b'},        {"days", required_argument, NULL, 'D'},
        {"all", no_argument, NULL, 'A'},             {"help", no_argument, NULL, 'h'},
        {"serve", required_argument, NULL, 'S'},     {"bind", required_argument, NULL, 'B'},
        {"patient", required_argument, NULL, 'P'},
        {0, 0, 0, 0}};
    const char *data = "./var/edge", *trust = NULL, *formats = "json,html,pdf", *ack = NULL, *by = NULL;
    const char *serve = NULL, *bind_addr = "127.0.0.1", *patient = NULL;
    export_ctx e = {0};
    long days = 7;
    bool all = false, days_given = false;
    char *end;
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'd': data = optarg; break;
        case 'x': e.o.out_dir = optarg; break;
        case 't': trust = optarg; break;
        case 'i': e.only = optarg; break;
        case 'f': formats = optarg; break;
        case 'a': ack = optarg; break;
        case 'b': by = optarg; break;
        case 'D':
            days = strtol(optarg, &end, 10);
            days_given = true;
            if (!*optarg || *end || days < 1 || days > 36500) {
                dx_errorf("reports", "--days %s: a whole number of days, 1 or more", optarg);
                return 2;
            }
            break;
        case 'A': all = true; break;
        case 'S': serve = optarg; break;
        case 'B': bind_addr = optarg; break;
        case 'P': patient = optarg; break;
        default:
            fputs(reports_usage, o == 'h' ? stdout : stderr);
            return o == 'h' ? 0 : 2;
        }
    }
    if (ack || by) {
        if (!ack || !by || !*by || strlen(by) > 127 || e.o.out_dir || serve || patient || optind != argc) {
            dx_errorf("reports", "--ack ALERT needs --by NAME (who read it, at most 127 bytes), and nothing else");
            return 2;
        }
        return confirm_read(data, ack, by);
    }
    if (serve) {
        long port = strtol(serve, &end, 10);
        if (!*serve || *end || port < 0 || port > 65535 || !trust || all || patient || e.o.out_dir || e.only ||
            optind != argc) {
            dx_errorf("reports", "--serve PORT (0-65535) needs --trust DIR (to verify each report it shows); "
                                 "--bind and --days go with it");
            return 2;
        }
        clinic_page_opts po = {.edge_data = data, .trust_dir = trust, .bind = bind_addr, .port = (int)port,
                               .days = (int)days};
        return clinic_page_serve(&po);
    }
    if (strcmp(bind_addr, "127.0.0.1")) {
        dx_errorf("reports", "--bind goes with --serve");
        return 2;
    }
    if (all + days_given + (patient != NULL) > 1) {
        dx_errorf("reports", "--days, --all and --patient: one of them");
        return 2;
    }
    if (patient && (!*patient || strlen(patient) > 64 || e.o.out_dir)) {
        dx_errorf("reports", "--patient ID: a Patient ID (at most 64 bytes), to list; not with --export");
        return 2;
    }
    if (optind != argc || (e.o.out_dir && !trust) || ((trust || e.only) && !e.o.out_dir)) {
        dx_errorf("reports", "--export OUT needs --trust DIR (and --trust, --id go with --export)");
        return 2;
    }
    if (parse_formats(formats, &e.o) < 0) {
        dx_errorf("reports", "--format %s: a list of json, html, pdf", formats);
        return 2;
    }
    char err[512];
    if (e.o.out_dir) {
        report_verifier_config cfg = {.trust_dir = trust};
        if (report_verifier_new(&cfg, &e.o.verifier, err, sizeof err) < 0) {
            dx_errorf("reports", "trust list: %s", err);
            return 2;
        }
        char soon[700]; /* a trust list about to refuse, or refusing already: said before the reports */
        int level = trust_deadline_text(e.o.verifier, trust, (int64_t)time(NULL), soon, sizeof soon);
        if (level)
            dx_errorf("reports", "%s%s", level == 2 ? "" : "note: ", soon);
    }
    /* Never made afresh here: a mistyped --edge-data would answer "no
     * reports or alerts yet" while an alert waits in the real one. */
    char mdb[4200];
    struct stat st;
    snprintf(mdb, sizeof mdb, "%s/data.mdb", data);
    if (stat(mdb, &st) < 0) {
        dx_errorf("reports", "no clinic gateway data in %s (is --edge-data the gateway's --data?)", data);
        report_verifier_free(&e.o.verifier);
        return 1;
    }
    spool *sp = NULL;
    if (spool_open(data, 0, &sp, err, sizeof err) < 0) {
        dx_errorf("reports", "%s", err);
        report_verifier_free(&e.o.verifier);
        return 1;
    }
    int status = 0;
    if (!e.o.out_dir) {
        inbox_listing l = {.sp = sp, .patient = patient, .since_ms = all ? 0 : clock_wall_ms() - days * 86400000LL};
        int total = inbox_listing_choose(&l);
        char who[160];
        dx_local_user(who, sizeof who);
        int rc = inbox_listing_audit(sp, (const char *const *)l.ids, l.n, who, "read", " (dxhub reports)");
        if (rc < 0) {
            dx_errorf("reports", "the audit trail in %s cannot be written (%s): nothing shown; free space for "
                                 "the gateway or call IT", data, strerror(-rc));
            status = 1;
        } else if (total <= 0) {
            printf("no reports or alerts yet\n");
        } else if (patient && !l.n) {
            printf("no reports or alerts about patient %s\n", patient);
        } else {
            spool_inbox_list(sp, print_inbox, &l);
            if (l.older)
                printf("%zu older item(s) not shown (received more than %ld day(s) ago): --all, or --days N\n",
                       l.older, days);
        }
        inbox_listing_free(&l);
    } else {
        e.sp = sp;
        spool_inbox_list(sp, export_inbox, &e);
        if (e.only && !e.exported && !e.refused) {
            dx_errorf("reports", "no signed report %s in the inbox", e.only);
            status = 1;
        } else {
            printf("%d report(s) exported, %d refused%s\n", e.exported, e.refused,
                   e.skipped ? " (alerts without a signed report are not exported)" : "");
            status = e.refused ? 1 : 0;
        }
    }
    spool_close(&sp);
    report_verifier_free(&e.o.verifier);
    return status;
}
