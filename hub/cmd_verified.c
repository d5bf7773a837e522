/* cmd_verified.c — one offline check of a signed report for the commands
 * that act only on a verified one (`dxhub verify`, `dxhub sr`). */
#include <string.h>
#include "hub/cmd_verified.h"
#include "codecs/banned.h"

int dx_verify_report_files(const char *cmd, const char *report, const char *sig, const char *chain,
                           const char *trust_dir, const char *study_dir, time_t at, const char *refusal,
                           dx_verified_report *out)
{
    char why[512];
    memset(out, 0, sizeof *out);
    if (dx_read_signed_report(cmd, report, sig, chain, &out->files) < 0)
        return 2;
    report_verifier_config cfg = {.trust_dir = trust_dir};
    if (report_verifier_new(&cfg, &out->verifier, why, sizeof why) < 0) {
        dx_errorf(cmd, "trust list: %s", why);
        return 2;
    }
    if (study_dir && report_study_open(study_dir, &out->study, why, sizeof why) < 0) {
        dx_errorf(cmd, "%s", why);
        return 2;
    }
    const dx_signed_report *f = &out->files;
    int rc = report_verify(out->verifier, f->doc, f->doc_len, f->sig, f->sig_len, f->chain, f->chain_len, at,
                           &out->signer, &out->doc, why, sizeof why);
    if (!rc && out->study)
        rc = report_check_digests(out->doc, report_study_digest, out->study, "the study folder", why, sizeof why);
    if (rc < 0) {
        dx_errorf(cmd, "%s: not verified%s: %s", report, refusal, why);
        return 1;
    }
    return 0;
}

void dx_verified_report_free(dx_verified_report *r)
{
    report_free(&r->doc);
    report_study_free(&r->study);
    report_verifier_free(&r->verifier);
    dx_signed_report_free(&r->files);
}
