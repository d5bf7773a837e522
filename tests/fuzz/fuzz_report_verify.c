/* fuzz_report_verify.c — a signed report as it reaches the hub on SUBMIT,
 * a workstation, or `dxhub verify` after a lookup: the report bytes, the
 * signature and the signer's PEM chain all come from outside.
 * report_verify parses the chain (PEM, X.509, the subject's names into
 * pki_identity), checks the signature, the chain against a trust list of
 * two CAs (SM2 and Ed25519) with their CRLs, then parses the document;
 * whatever it accepts is read back and its digests checked.
 *
 * Input: split at the first two "\xff\xfe" into report, signature and
 * chain (missing parts empty).  The seeds are real signed reports of the
 * CAs in tests/fuzz/trust/report_verify/, so mutations start past the
 * signature check; verification runs at a fixed time inside the CAs',
 * certificates' and CRLs' validity, so a seed verifies on any day.
 *
 * Invariants: a verified report names its signer (reader id, facility)
 * as the document does; the verifier's reason is a terminated string.
 *
 * fuzz-objects: hub/report_verify.c hub/report.c hub/errbuf.c hub/pki_cert.c hub/pki_trust.c hub/pki_key.c hub/pki_pass.c hub/digest.c */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hub/report.h"

#define TRUST_DIR "tests/fuzz/trust/report_verify"
#define VERIFY_AT ((time_t)1795542339) /* an hour after the seeds were signed */

static report_verifier *verifier;

static const uint8_t *cut(const uint8_t **p, size_t *n, size_t *len)
{
    const uint8_t *start = *p, *sep = memmem(*p, *n, "\xff\xfe", 2);
    *len = sep ? (size_t)(sep - *p) : *n;
    *p += sep ? *len + 2 : *n;
    *n -= sep ? *len + 2 : *n;
    return start;
}

/* Any digest: the seed's instance mismatches, which walks the same list. */
static int stored_digest(void *ctx, const char *sop, uint8_t out[32])
{
    (void)ctx;
    memset(out, 0, 32);
    for (size_t i = 0; sop[i]; i++)
        out[i % 32] ^= (uint8_t)sop[i];
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!verifier) {
        report_verifier_config cfg = {.trust_dir = TRUST_DIR, .at = VERIFY_AT};
        char err[256];
        if (report_verifier_new(&cfg, &verifier, err, sizeof err) != 0) {
            fprintf(stderr, "fuzz_report_verify: %s (run from the repository's root)\n", err);
            abort();
        }
    }
    size_t rl, sl, cl;
    const uint8_t *report = cut(&data, &size, &rl);
    const uint8_t *sig = cut(&data, &size, &sl);
    const uint8_t *chain = cut(&data, &size, &cl);
    pki_identity signer;
    report_doc *doc = NULL;
    char why[512];
    why[sizeof why - 1] = 'x';
    int rc = report_verify(verifier, report, rl, sig, sl, chain, cl, VERIFY_AT, &signer, &doc, why, sizeof why);
    if (rc != 0) {
        if (!memchr(why, '\0', sizeof why))
            abort();
        report_free(&doc);
        return 0;
    }
    if (!doc)
        abort();
    const report_info *in = report_doc_info(doc);
    if (strcmp(in->reader_id, signer.reader_id) != 0 || strcmp(in->reading_facility, signer.facility) != 0)
        abort(); /* verified, yet signed by someone the document does not name */
    report_instance inst;
    size_t total = strlen(in->report_id) + strlen(in->study_uid);
    for (size_t i = 0; report_doc_instance(doc, i, &inst) == 0; i++)
        total += strlen(inst.sop);
    (void)total;
    (void)report_check_digests(doc, stored_digest, NULL, "fuzz", why, sizeof why);
    report_free(&doc);
    return 0;
}
