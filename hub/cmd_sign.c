/* cmd_sign.c — `dxhub sign` (a detached signature over a report's exact
 * bytes, with the signer's chain beside it) and `dxhub verify` (offline:
 * signature, chain to the trust list, revocation, validity, and with
 * --study-dir the instance digests against DICOM files). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "hub/cmd.h"
#include "hub/cmd_verified.h"
#include "hub/pki.h"
#include "hub/report.h"
#include "codecs/banned.h"

static const char sign_usage[] =
    "usage: dxhub sign --key KEY --cert CHAIN.pem [--passphrase-file F] [--sig OUT] REPORT.json\n"
    "  signs exactly the bytes of REPORT.json with the reader's key (SM2/SM3 or Ed25519,\n"
    "  by the key's type) and writes REPORT.json.sig (raw signature, as openssl pkeyutl\n"
    "  writes it) and REPORT.json.chain.pem (a copy of CHAIN.pem)\n"
    "  --key KEY            the reader's private key (ID.key from dxhub keygen --reader)\n"
    "  --cert CHAIN.pem     its certificate chain (ID.chain.pem)\n"
    "  --passphrase-file F  the key's passphrase (first line); else $DXHUB_PASSPHRASE,\n"
    "                       else asked on the terminal\n"
    "  --sig OUT            signature file (default REPORT.json.sig; the chain goes to OUT's\n"
    "                       name with .sig replaced by .chain.pem)\n";

int cmd_sign(int argc, char **argv)
{
    static const struct option opts[] = {
        {"key", required_argument, NULL, 'k'}, {"cert", required_argument, NULL, 'c'},
        {"chain", required_argument, NULL, 'c'}, {"passphrase-file", required_argument, NULL, 'p'},
        {"sig", required_argument, NULL, 's'}, {"help", no_argument, NULL, 'h'}, {0, 0, 0, 0}};
    const char *keyp = NULL, *certp = NULL, *passf = NULL, *sigp = NULL;
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'k': keyp = optarg; break;
        case 'c': certp = optarg; break;
        case 'p': passf = optarg; break;
        case 's': sigp = optarg; break;
        default:
            fputs(sign_usage, o == 'h' ? stdout : stderr);
            return o == 'h' ? 0 : 2;
        }
    }
    if (!keyp || !certp || optind != argc - 1) {
        dx_errorf("sign", "--key KEY, --cert CHAIN.pem and one REPORT.json are required");
        return 2;
    }
    const char *rp = argv[optind];
    char sig_path[4200], chain_path[4200], err[512];
    if (sigp) {
        snprintf(sig_path, sizeof sig_path, "%s", sigp);
        size_t n = strlen(sigp);
        if (n > 4 && !strcmp(sigp + n - 4, ".sig"))
            snprintf(chain_path, sizeof chain_path, "%.*s.chain.pem", (int)(n - 4), sigp);
        else
            snprintf(chain_path, sizeof chain_path, "%s.chain.pem", sigp);
    } else {
        snprintf(sig_path, sizeof sig_path, "%s.sig", rp);
        snprintf(chain_path, sizeof chain_path, "%s.chain.pem", rp);
    }
    char *report = NULL, *chain_pem = NULL;
    size_t rlen = 0, clen = 0;
    pki_chain *chain = NULL;
    pki_key *key = NULL;
    report_doc *doc = NULL;
    int rc = dx_read_file(rp, REPORT_MAX_BYTES, &report, &rlen), status = 2;
    if (rc < 0) {
        dx_errorf("sign", "%s: %s", rp, rc == -EFBIG ? "larger than a report may be" : strerror(-rc));
        goto out;
    }
    if ((rc = report_parse(report, rlen, &doc, err, sizeof err)) < 0) {
        dx_errorf("sign", "%s: %s", rp, err);
        goto out;
    }
    if ((rc = dx_read_file(certp, PKI_PEM_MAX, &chain_pem, &clen)) < 0) {
        dx_errorf("sign", "%s: %s", certp, strerror(-rc));
        goto out;
    }
    if ((rc = pki_chain_parse(chain_pem, clen, &chain, err, sizeof err)) < 0) {
        dx_errorf("sign", "%s: %s", certp, err);
        goto out;
    }
    pki_identity id;
    pki_chain_identity(chain, &id);
    if (strcmp(report_doc_info(doc)->reader_id, id.reader_id)) {
        dx_errorf("sign", "%s names reader %s but the certificate is %s's", rp, report_doc_info(doc)->reader_id,
                  id.reader_id[0] ? id.reader_id : "(no reader id)");
        goto out;
    }
    char prompt[4300];
    snprintf(prompt, sizeof prompt, "passphrase for %s", keyp);
    pki_pass_src src = {.file = passf, .env = "DXHUB_PASSPHRASE", .prompt = prompt};
    if ((rc = pki_key_load(keyp, &src, &key, err, sizeof err)) < 0) {
        dx_errorf("sign", "%s", err);
        status = rc == PKI_EPASS ? 1 : 2;
        goto out;
    }
    if (!pki_chain_matches_key(chain, key)) {
        dx_errorf("sign", "%s is not the key of the certificate in %s", keyp, certp);
        goto out;
    }
    time_t now = time(NULL);
    if (id.not_after && id.not_after < now)
        fprintf(stderr, "dxhub sign: warning: the certificate expired; verifiers will refuse this signature\n");
    uint8_t sig[PKI_SIG_MAX];
    size_t slen = 0;
    status = 1;
    if ((rc = pki_sign(key, report, rlen, sig, &slen, err, sizeof err)) < 0) {
        dx_errorf("sign", "%s", err);
        goto out;
    }
    /* Our own check before anything is written: key, bytes, signature agree. */
    if ((rc = pki_chain_verify_data(chain, report, rlen, sig, slen, err, sizeof err)) < 0) {
        dx_errorf("sign", "the new signature does not verify: %s", err);
        goto out;
    }
    if ((rc = dx_write_file(sig_path, sig, slen)) < 0 || (rc = dx_write_file(chain_path, chain_pem, clen)) < 0) {
        dx_errorf("sign", "writing %s: %s", rc == 0 ? chain_path : sig_path, strerror(-rc));
        goto out;
    }
    char when[32];
    dx_fmt_time(now, when, sizeof when);
    printf("signed %s (%zu bytes) with %s at %s\n  signer %s (reader %s, %s, %s)\n  %s\n  %s\n", rp, rlen, id.alg,
           when, id.name, id.reader_id, id.role, id.facility, sig_path, chain_path);
    status = 0;
out:
    report_free(&doc);
    pki_key_free(&key);
    pki_chain_free(&chain);
    free(report);
    free(chain_pem);
    return status;
}

static const char verify_usage[] =
    "usage: dxhub verify REPORT.json --trust DIR [--sig S] [--chain C] [--study-dir DIR] [--at TIME]\n"
    "  offline check of a signed report: the signature over its exact bytes, the\n"
    "  signer's chain to a CA of the trust list, revocation (the CAs' CRLs), the\n"
    "  certificates' validity, and with --study-dir every instance digest it lists\n"
    "  against the DICOM files there\n"
    "  --trust DIR      the consortium's CA certificates (*.pem, *.crt) and CRLs (*.crl, crl.pem),\n"
    "                   in DIR or its subfolders\n"
    "  --sig S          signature file (default REPORT.json.sig)\n"
    "  --chain C        signer's chain (default REPORT.json.chain.pem)\n"
    "  --study-dir DIR  the study's DICOM files (digest: SHA-256 after the File Meta group)\n"
    "  --at TIME        check validity at TIME (YYYY-MM-DD or YYYY-MM-DDThh:mm:ssZ) instead of now\n"
    "  exit 0 verified, 1 not verified (the reason on stderr), 2 bad input\n";

int cmd_verify(int argc, char **argv)
{
    static const struct option opts[] = {
        {"trust", required_argument, NULL, 't'}, {"sig", required_argument, NULL, 's'},
        {"chain", required_argument, NULL, 'c'}, {"study-dir", required_argument, NULL, 'd'},
        {"at", required_argument, NULL, 'a'},    {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0}};
    const char *trust = NULL, *sigp = NULL, *chainp = NULL, *study = NULL, *at_s = NULL;
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 't': trust = optarg; break;
        case 's': sigp = optarg; break;
        case 'c': chainp = optarg; break;
        case 'd': study = optarg; break;
        case 'a': at_s = optarg; break;
        default:
            fputs(verify_usage, o == 'h' ? stdout : stderr);
            return o == 'h' ? 0 : 2;
        }
    }
    if (!trust || optind != argc - 1) {
        dx_errorf("verify", "usage: dxhub verify REPORT.json --trust DIR [--sig S] [--chain C] [--study-dir DIR]");
        return 2;
    }
    time_t at = 0;
    if (at_s && !(at = dx_parse_time(at_s))) {
        dx_errorf("verify", "--at %s: not YYYY-MM-DD or YYYY-MM-DDThh:mm:ssZ", at_s);
        return 2;
    }
    const char *rp = argv[optind];
    dx_verified_report vr;
    int status = dx_verify_report_files("verify", rp, sigp, chainp, trust, study, at, "", &vr);
    if (status)
        goto out;
    const report_info *in = report_doc_info(vr.doc);
    const pki_identity id = vr.signer;
    char nb[32], na[32];
    dx_fmt_time(id.not_before, nb, sizeof nb);
    dx_fmt_time(id.not_after, na, sizeof na);
    printf("verified %s\n", rp);
    printf("  signer      %s (reader %s, %s, %s)\n", id.name, id.reader_id, id.role, id.facility);
    printf("  algorithm   %s\n", id.alg);
    printf("  time        %s (as the report states it)\n", in->reported);
    printf("  certificate serial %s from %s, valid %s to %s\n", id.serial, id.issuer, nb, na);
    printf("  report      %s version %u, %zu instances%s\n", in->report_id, in->version, in->n_instances,
           in->critical ? ", critical value" : "");
    if (in->supersedes) /* the original stays as it was signed; verify it on its own */
        printf("  addendum    to report %s\n", in->supersedes);
    if (in->drafted_by)
        printf("  drafted by  %s%s%s%s (reviewed and signed by the signer)\n", in->drafted_by_name,
               in->drafted_by_name[0] ? " (reader " : "", in->drafted_by, in->drafted_by_name[0] ? ")" : "");
    if (vr.study)
        printf("  digests     all %zu match %s\n", in->n_instances, study);
    else
        printf("  digests     not checked (no --study-dir)\n");
out:
    dx_verified_report_free(&vr);
    return status;
}
