/* bench_lookup_load.c — a hub data directory full of signed reports, for
 * bench/lookup.sh: 100,000 SUBMITs through the reader link would take far
 * longer than the lookups being measured.
 *
 *   bench_lookup_load --dir DATA --dicom FILE [--patients N] [--reports M]
 *
 * Makes a facility CA and a reader certificate (Ed25519) and puts the CA
 * in DATA/keys/trust (the hub's trust list); stores FILE once as every
 * study's image; then M reports, report i for patient i % N ("BP%05d"),
 * each a real report document (report_build) signed by the reader
 * (pki_sign) with the chain alongside — what a SUBMIT stores, written by
 * store_bench_add_reports.  Exams come from 20 clinics (members in
 * DATA/recognition.conf), DX, dated within the last 100 days: recognised.
 * Prints how long each step took. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include "hub/digest.h"
#include "hub/pki.h"
#include "hub/report.h"
#include "hub/store.h"
#include "hub/store_bench.h"

#define FACILITY "bench-hospital"
#define READER   "bench-reader"
#define PASS     "bench passphrase"
#define CLINICS  20

typedef struct loader {
    int            patients;
    pki_key       *key;
    char          *chain;
    size_t         chain_len;
    store_instance tmpl;
    time_t         now;
    char           root[64];
    /* report i's strings and bytes, valid until the next call */
    char           id[32], study[96], sop[96], patient[16], origin[32], date[9];
    char          *doc;
    size_t         doc_len;
    uint8_t        sig[PKI_SIG_MAX];
    size_t         sig_len;
} loader;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int read_file(const char *path, char **out, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return -errno;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    rewind(fp);
    char *b = malloc((size_t)n + 1);
    if (!b || fread(b, 1, (size_t)n, fp) != (size_t)n) {
        free(b);
        fclose(fp);
        return -EIO;
    }
    fclose(fp);
    b[n] = 0;
    *out = b;
    *len = (size_t)n;
    return 0;
}

static int copy_file(const char *from, const char *to)
{
    char *b;
    size_t n;
    int rc = read_file(from, &b, &n);
    if (rc < 0)
        return rc;
    FILE *fp = fopen(to, "wb");
    rc = fp && fwrite(b, 1, n, fp) == n ? 0 : -EIO;
    if (fp)
        fclose(fp);
    free(b);
    return rc;
}

static int make_report(void *ctx, int i, store_bench_report *out)
{
    loader *l = ctx;
    free(l->doc);
    l->doc = NULL;
    snprintf(l->id, sizeof l->id, "br%07d", i);
    snprintf(l->study, sizeof l->study, "%s.%d", l->root, i + 1);
    snprintf(l->sop, sizeof l->sop, "%s.%d.1.1", l->root, i + 1);
    snprintf(l->patient, sizeof l->patient, "BP%05d", i % l->patients);
    snprintf(l->origin, sizeof l->origin, "edge:clinic%02d", i % CLINICS);
    time_t exam = l->now - (time_t)(i % 100) * 86400;
    struct tm tm;
    gmtime_r(&exam, &tm);
    strftime(l->date, sizeof l->date, "%Y%m%d", &tm);
    report_instance ri = {.sop = l->sop};
    memcpy(ri.digest, l->tmpl.digest, 32);
    report_fields f = {.report_id = l->id, .study_uid = l->study, .patient_id = l->patient,
                       .origin_facility = l->origin + 5, .reading_facility = FACILITY, .reader_id = READER,
                       .reader_role = "attending", .reader_name = "Bench Reader",
                       .findings = "No consolidation. Heart size normal.", .impression = "Normal chest radiograph.",
                       .version = 1, .reported = l->now, .exam_type = "DX chest PA", .scope = "HR"};
    char err[256];
    int rc = report_build(&f, &ri, 1, &l->doc, &l->doc_len, err, sizeof err);
    if (rc == 0)
        rc = pki_sign(l->key, l->doc, l->doc_len, l->sig, &l->sig_len, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "bench_lookup_load: report %d: %s\n", i, err);
        return rc;
    }
    *out = (store_bench_report){.report_id = l->id, .study_uid = l->study, .sop_uid = l->sop,
                                .patient_id = l->patient, .modality = "DX", .origin = l->origin,
                                .study_date = l->date, .doc = l->doc, .doc_len = l->doc_len, .sig = l->sig,
                                .sig_len = l->sig_len, .chain = l->chain, .chain_len = l->chain_len,
                                .reported_ms = (int64_t)l->now * 1000};
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"dir", required_argument, NULL, 'd'},
                                         {"dicom", required_argument, NULL, 'f'},
                                         {"patients", required_argument, NULL, 'p'},
                                         {"reports", required_argument, NULL, 'r'},
                                         {0, 0, 0, 0}};
    const char *dir = NULL, *dicom = NULL;
    int patients = 10000, reports = 100000, o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o == 'd')
            dir = optarg;
        else if (o == 'f')
            dicom = optarg;
        else if (o == 'p')
            patients = atoi(optarg);
        else if (o == 'r')
            reports = atoi(optarg);
        else
            return 2;
    }
    if (!dir || !dicom || patients < 1 || reports < 1) {
        fprintf(stderr, "usage: bench_lookup_load --dir DATA --dicom FILE [--patients N] [--reports M]\n");
        return 2;
    }
    char err[512], p1[4200], p2[4200];
    loader l = {.patients = patients, .now = time(NULL)};
    snprintf(l.root, sizeof l.root, "2.25.%lu", (unsigned long)l.now);
    double t0 = now_s();
    /* the facility CA, a reader, and the hub's trust list */
    snprintf(p1, sizeof p1, "%s/bench-ca", dir);
    snprintf(p2, sizeof p2, "%s/bench-reader", dir);
    mkdir(dir, 0700);
    pki_reader_spec spec = {.reader_id = READER, .name = "Bench Reader", .role = "attending", .alg = PKI_ED25519,
                            .not_before = l.now - 86400, .not_after = l.now + 365 * 86400};
    if (pki_ca_init(p1, PKI_ED25519, FACILITY, l.now - 86400, l.now + 3650 * 86400, 30, NULL, 0, err, sizeof err) < 0 ||
        pki_ca_issue(p1, NULL, &spec, p2, PASS, strlen(PASS), NULL, err, sizeof err) < 0) {
        fprintf(stderr, "bench_lookup_load: %s\n", err);
        return 1;
    }
    snprintf(p1, sizeof p1, "%s/keys", dir);
    mkdir(p1, 0700);
    snprintf(p1, sizeof p1, "%s/keys/trust", dir);
    mkdir(p1, 0755);
    const char *files[] = {"ca.pem", "crl.pem"};
    for (int i = 0; i < 2; i++) {
        snprintf(p1, sizeof p1, "%s/bench-ca/%s", dir, files[i]);
        snprintf(p2, sizeof p2, "%s/keys/trust/%s", dir, files[i]);
        if (copy_file(p1, p2) < 0) {
            fprintf(stderr, "bench_lookup_load: cannot copy %s\n", p1);
            return 1;
        }
    }
    snprintf(p1, sizeof p1, "%s/bench-reader/%s.key", dir, READER);
    pki_pass_src pass = {.literal = PASS};
    snprintf(p2, sizeof p2, "%s/bench-reader/%s.chain.pem", dir, READER);
    if (pki_key_load(p1, &pass, &l.key, err, sizeof err) < 0 || read_file(p2, &l.chain, &l.chain_len) < 0) {
        fprintf(stderr, "bench_lookup_load: reader key or chain: %s\n", err);
        return 1;
    }
    snprintf(p1, sizeof p1, "%s/recognition.conf", dir);
    FILE *fp = fopen(p1, "w");
    if (!fp)
        return 1;
    fprintf(fp, "consortium bench consortium\nmark HR\n");
    for (int i = 0; i < CLINICS; i++)
        fprintf(fp, "member clinic%02d\n", i);
    fclose(fp);
    /* the store, one real image, then the reports */
    store *st = NULL;
    store_config sc = {.dir = dir, .map_size = (uint64_t)8 << 30};
    if (store_open(&sc, &st, err, sizeof err) < 0) {
        fprintf(stderr, "bench_lookup_load: %s\n", err);
        return 1;
    }
    store_put_result res;
    if (store_put_file(st, dicom, "dicom:BENCH", (int64_t)l.now * 1000, &res) < 0 ||
        (res.result != STORE_STORED && res.result != STORE_DUPLICATE)) {
        fprintf(stderr, "bench_lookup_load: %s: %s\n", dicom, res.reason);
        store_close(&st);
        return 1;
    }
    l.tmpl = res.inst;
    double t1 = now_s();
    int n = store_bench_add_reports(st, &l.tmpl, reports, make_report, &l, err, sizeof err);
    double t2 = now_s();
    store_close(&st);
    free(l.doc);
    free(l.chain);
    pki_key_free(&l.key);
    if (n < 0) {
        fprintf(stderr, "bench_lookup_load: %s\n", err);
        return 1;
    }
    printf("bench_lookup_load: %d signed reports for %d patients in %.1f s (%.0f/s: build, sign, store); keys %.1f s\n",
           n, patients, t2 - t1, n / (t2 - t1), t1 - t0);
    return 0;
}
