/* cmd_sr.c — `dxhub sr`: a signed report exported as a DICOM Basic Text SR
 * (hub/sr.h) that a PACS takes in beside the study.  Only a report that
 * verifies — signature, chain to the trust list, revocation, and every
 * instance digest against the study's files — becomes an SR marked
 * VERIFIED by its signer: the SR carries no signature of its own, so the
 * check has to happen here. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hub/cmd.h"
#include "hub/cmd_verified.h"
#include "hub/digest.h"
#include "hub/report.h"
#include "hub/sr.h"
#include "codecs/banned.h"

/* "2.25." and the decimal value of the first 128 bits of SHA-256(bytes ‖
 * salt) (PS3.5 B.2): the same report always names the same SR. */
static void uid_from(const void *bytes, size_t len, const char *salt, char out[64])
{
    uint8_t d[32];
    digest_ctx *c = digest_new();
    if (!c) {
        snprintf(out, 64, "2.25.0");
        return;
    }
    digest_update(c, bytes, len);
    digest_update(c, salt, strlen(salt));
    digest_final(&c, d);
    unsigned __int128 v = 0;
    for (int i = 0; i < 16; i++)
        v = (v << 8) | d[i];
    char digits[48];
    int n = 0;
    do {
        digits[n++] = (char)('0' + (int)(v % 10));
        v /= 10;
    } while (v);
    int k = snprintf(out, 64, "2.25.");
    while (n > 0 && k < 63)
        out[k++] = digits[--n];
    out[k] = '\0';
}

/* "YYYY-MM-DDThh:mm:ssZ" (report_parse checked it) -> DT "YYYYMMDDhhmmss+0000". */
static void to_dt(const char *ts, char out[24])
{
    snprintf(out, 24, "%.4s%.2s%.2s%.2s%.2s%.2s+0000", ts, ts + 5, ts + 8, ts + 11, ts + 14, ts + 17);
}

static const char sr_usage[] =
    "usage: dxhub sr REPORT.json --trust DIR --study-dir DIR -o OUT.dcm [--sig S] [--chain C] [--at TIME]\n"
    "  writes a verified signed report as a DICOM Basic Text SR (1.2.840.10008.5.1.4.1.1.88.11)\n"
    "  for a PACS: findings and impression as text, the study's patient and study modules,\n"
    "  every instance the report covers as evidence, the signer as Verifying Observer\n"
    "  (VERIFIED, at the signing time), UTF-8.  Refused unless the report verifies: signature,\n"
    "  chain to the trust list, revocation, and every instance digest against DIR's files.\n"
    "  Send it with any C-STORE tool, e.g. storescu HOST PORT OUT.dcm\n"
    "  --trust DIR      the consortium's CA certificates and CRLs (as for dxhub verify)\n"
    "  --study-dir DIR  the study's DICOM files\n"
    "  --sig S, --chain C  default REPORT.json.sig, REPORT.json.chain.pem\n"
    "  --at TIME        check validity at TIME (YYYY-MM-DD or YYYY-MM-DDThh:mm:ssZ) instead of now\n";

int cmd_sr(int argc, char **argv)
{
    static const struct option opts[] = {
        {"trust", required_argument, NULL, 't'}, {"study-dir", required_argument, NULL, 'd'},
        {"sig", required_argument, NULL, 's'},   {"chain", required_argument, NULL, 'c'},
        {"out", required_argument, NULL, 'o'},   {"at", required_argument, NULL, 'a'},
        {"help", no_argument, NULL, 'h'},        {0, 0, 0, 0}};
    const char *trust = NULL, *study = NULL, *sigp = NULL, *chainp = NULL, *outp = NULL, *at_s = NULL;
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
        switch (o) {
        case 't': trust = optarg; break;
        case 'd': study = optarg; break;
        case 's': sigp = optarg; break;
        case 'c': chainp = optarg; break;
        case 'o': outp = optarg; break;
        case 'a': at_s = optarg; break;
        default:
            fputs(sr_usage, o == 'h' ? stdout : stderr);
            return o == 'h' ? 0 : 2;
        }
    }
    if (!trust || !study || !outp || optind != argc - 1) {
        dx_errorf("sr", "REPORT.json, --trust DIR, --study-dir DIR and -o OUT.dcm are required ('dxhub sr --help')");
        return 2;
    }
    time_t at = 0;
    if (at_s && (at = dx_parse_time(at_s)) == 0) {
        dx_errorf("sr", "--at %s: not YYYY-MM-DD or YYYY-MM-DDThh:mm:ssZ", at_s);
        return 2;
    }
    const char *rp = argv[optind];
    char why[512];
    const char **files = NULL;
    int rc;
    dx_verified_report vr;
    int status = dx_verify_report_files("sr", rp, sigp, chainp, trust, study, at, ", no SR written", &vr);
    if (status)
        goto out;
    status = 1;
    const report_info *in = report_doc_info(vr.doc);
    const pki_identity id = vr.signer;
    files = calloc(in->n_instances, sizeof *files);
    if (!files) {
        dx_errorf("sr", "out of memory");
        goto out;
    }
    for (size_t i = 0; i < in->n_instances; i++) {
        report_instance ri;
        report_doc_instance(vr.doc, i, &ri);
        files[i] = report_study_path(vr.study, ri.sop); /* present: the digests matched */
    }
    char sop[64], series[64], when[24], desc[96];
    uid_from(vr.files.doc, vr.files.doc_len, "sr-instance", sop);
    uid_from(vr.files.doc, vr.files.doc_len, "sr-series", series);
    to_dt(in->reported, when);
    snprintf(desc, sizeof desc, "Signed report %.60s v%u", in->report_id, in->version);
    sr_spec spec = {.files = files, .n_files = in->n_instances, .study_uid = in->study_uid,
                    .findings = in->findings, .impression = in->impression, .observer_name = id.name,
                    .organisation = id.facility, .verified_at = when, .sop_uid = sop, .series_uid = series,
                    .series_description = desc};
    if ((rc = sr_write_basic_text(&spec, outp, why, sizeof why)) < 0) {
        dx_errorf("sr", "%s", why);
        status = rc == SR_EINPUT ? 2 : 1;
        goto out;
    }
    printf("%s: Basic Text SR %s for study %s (%zu instances), verified by %s (%s) at %s\n", outp, sop,
           in->study_uid, in->n_instances, id.name, id.facility, in->reported);
    status = 0;
out:
    free(files);
    dx_verified_report_free(&vr);
    return status;
}
