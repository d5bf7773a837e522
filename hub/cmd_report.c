/* cmd_report.c — `dxhub report`: writes the report document (DESIGN.md
 * §6) for a study fetched into a folder: its identifiers and the digest of
 * every instance read, with the reader's findings and impression.  The
 * bytes written are the bytes `dxhub sign` signs and the hub stores. */
#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "codecs/codecs.h"
#include "hub/cmd.h"
#include "hub/digest.h"
#include "hub/report.h"

typedef struct study_files {
    report_instance *inst;
    char           **sops;
    size_t           n;
    char             study_uid[72], patient_id[72];
} study_files;

static int add_file(study_files *s, const char *path, char *err, size_t errlen)
{
    dcm_file *f = NULL;
    dcm_err de = {0};
    if (dcm_open(path, NULL, &f, &de) < 0)
        return 0; /* not DICOM (a .part, a note): not part of the reading */
    char sop[72] = "", study[72] = "";
    dcm_top_str(f, DCM_TAG(0x0008, 0x0018), sop, sizeof sop);
    dcm_top_str(f, DCM_TAG(0x0020, 0x000D), study, sizeof study);
    if (!s->patient_id[0])
        dcm_top_str(f, DCM_TAG(0x0010, 0x0020), s->patient_id, sizeof s->patient_id);
    uint64_t off = dcm_dataset_offset(f);
    dcm_free(&f);
    if (!sop[0] || !study[0])
        return 0;
    if (s->study_uid[0] && strcmp(s->study_uid, study)) {
        snprintf(err, errlen, "%.400s belongs to another study than the other files", path);
        return -1;
    }
    snprintf(s->study_uid, sizeof s->study_uid, "%s", study);
    report_instance *ri = realloc(s->inst, (s->n + 1) * sizeof *ri);
    char **sp = realloc(s->sops, (s->n + 1) * sizeof *sp);
    if (!ri || !sp)
        return -1;
    s->inst = ri;
    s->sops = sp;
    s->sops[s->n] = strdup(sop);
    s->inst[s->n].sop = s->sops[s->n];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int rc = fd < 0 ? -1 : digest_fd(fd, off, s->inst[s->n].digest);
    if (fd >= 0)
        close(fd);
    if (rc < 0) {
        snprintf(err, errlen, "%.400s: cannot read", path);
        return -1;
    }
    s->n++;
    return 0;
}

int cmd_report(int argc, char **argv)
{
    enum { O_STUDY = 1, O_ID, O_READER, O_ROLE, O_NAME, O_FIND, O_IMP, O_CRIT, O_ORIGIN, O_READING, O_TYPE, O_SCOPE,
           O_VALID, O_VERSION, O_SUPER };
    static const struct option opts[] = {
        {"study-dir", required_argument, NULL, O_STUDY}, {"report-id", required_argument, NULL, O_ID},
        {"reader", required_argument, NULL, O_READER},   {"role", required_argument, NULL, O_ROLE},
        {"name", required_argument, NULL, O_NAME},       {"findings", required_argument, NULL, O_FIND},
        {"impression", required_argument, NULL, O_IMP},  {"critical", no_argument, NULL, O_CRIT},
        {"origin", required_argument, NULL, O_ORIGIN},   {"reading-facility", required_argument, NULL, O_READING},
        {"exam-type", required_argument, NULL, O_TYPE},  {"scope", required_argument, NULL, O_SCOPE},
        {"valid-until", required_argument, NULL, O_VALID}, {"version", required_argument, NULL, O_VERSION},
        {"supersedes", required_argument, NULL, O_SUPER}, {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0}};
    report_fields rf = {.reader_role = "attending", .findings = "", .impression = "", .origin_facility = "",
                        .reading_facility = "", .exam_type = "imaging"};
    const char *dir = NULL;
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case O_STUDY: dir = optarg; break;
        case O_ID: rf.report_id = optarg; break;
        case O_READER: rf.reader_id = optarg; break;
        case O_ROLE: rf.reader_role = optarg; break;
        case O_NAME: rf.reader_name = optarg; break;
        case O_FIND: rf.findings = optarg; break;
        case O_IMP: rf.impression = optarg; break;
        case O_CRIT: rf.critical = 1; break;
        case O_ORIGIN: rf.origin_facility = optarg; break;
        case O_READING: rf.reading_facility = optarg; break;
        case O_TYPE: rf.exam_type = optarg; break;
        case O_SCOPE: rf.scope = optarg; break;
        case O_VALID: rf.valid_until = optarg; break;
        case O_VERSION: rf.version = (unsigned)atoi(optarg); break;
        case O_SUPER: rf.supersedes = optarg; break;
        case 'h':
            printf("usage: dxhub report --study-dir DIR --report-id ID --reader ID [--role R] [--name NAME]\n"
                   "                    --findings TEXT --impression TEXT [--critical] [--origin FACILITY]\n"
                   "                    [--reading-facility F] [--exam-type T] [--scope S] [--valid-until DATE] OUT.json\n"
                   "  writes the report document for the study fetched into DIR (every instance's\n"
                   "  digest included); sign it with 'dxhub sign', submit it with 'dxhub reader'\n");
            return 0;
        default:
            return 2;
        }
    }
    if (!dir || !rf.report_id || !rf.reader_id || optind != argc - 1) {
        dx_errorf("report", "--study-dir, --report-id, --reader and OUT.json are required ('dxhub report --help')");
        return 2;
    }
    study_files s = {0};
    char err[512] = "";
    struct dirent **ents;
    int k = scandir(dir, &ents, NULL, alphasort);
    if (k < 0) {
        dx_errorf("report", "cannot read %s", dir);
        return 2;
    }
    int rc = 0;
    for (int i = 0; i < k; i++) {
        if (!rc && ents[i]->d_name[0] != '.') {
            char p[8400];
            snprintf(p, sizeof p, "%s/%s", dir, ents[i]->d_name);
            rc = add_file(&s, p, err, sizeof err);
        }
        free(ents[i]);
    }
    free(ents);
    if (rc < 0 || s.n == 0) {
        dx_errorf("report", "%s", s.n == 0 && rc == 0 ? "no DICOM instances in the study folder" : err);
        return 2;
    }
    rf.study_uid = s.study_uid;
    rf.patient_id = s.patient_id;
    rf.reported = time(NULL);
    char *doc = NULL;
    size_t len = 0;
    rc = report_build(&rf, s.inst, s.n, &doc, &len, err, sizeof err);
    for (size_t i = 0; i < s.n; i++)
        free(s.sops[i]);
    free(s.sops);
    free(s.inst);
    if (rc < 0) {
        dx_errorf("report", "%s", err);
        return 2;
    }
    FILE *fp = fopen(argv[optind], "wb");
    if (!fp || fwrite(doc, 1, len, fp) != len || fclose(fp) != 0) {
        dx_errorf("report", "cannot write %s", argv[optind]);
        free(doc);
        return 1;
    }
    printf("%s: report %s for study %s, %zu instances%s\n", argv[optind], rf.report_id, rf.study_uid, s.n,
           rf.critical ? ", CRITICAL VALUE" : "");
    free(doc);
    return 0;
}
