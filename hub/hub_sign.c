/* hub_sign.c — hub.h's signing, report and digest functions for a reader's
 * software (the workstation): thin adapters over pki_*.c, report.c and
 * digest.c, so viewer/ sees none of their headers. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "hub/cmd.h"
#include "hub/digest.h"
#include "hub/hub.h"
#include "hub/pki.h"
#include "hub/report.h"
#include "codecs/banned.h"

struct hub_signer {
    pki_key            *key;
    char               *chain_pem;
    size_t              chain_len;
    hub_signer_identity who;
};

static void to_identity(const pki_identity *id, hub_signer_identity *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", id->name);
    snprintf(out->reader_id, sizeof out->reader_id, "%s", id->reader_id);
    snprintf(out->role, sizeof out->role, "%s", id->role);
    snprintf(out->facility, sizeof out->facility, "%s", id->facility);
    snprintf(out->issuer, sizeof out->issuer, "%s", id->issuer);
    snprintf(out->serial, sizeof out->serial, "%s", id->serial);
    snprintf(out->alg, sizeof out->alg, "%s", id->alg);
    snprintf(out->subject, sizeof out->subject, "CN=%s, title=%s, O=%s, UID=%s", id->name, id->role, id->facility,
             id->reader_id);
    out->not_after = (int64_t)id->not_after;
}

static int chain_identity(const void *pem, size_t len, hub_signer_identity *out, pki_chain **keep, char *err,
                          size_t errlen)
{
    pki_chain *c = NULL;
    int rc = pki_chain_parse(pem, len, &c, err, errlen);
    if (rc < 0)
        return HUB_ESIGN;
    pki_identity id;
    pki_chain_identity(c, &id);
    to_identity(&id, out);
    if (keep)
        *keep = c;
    else
        pki_chain_free(&c);
    return 0;
}

int hub_chain_identity(const char *chain_path, hub_signer_identity *out, char *err, size_t errlen)
{
    char *pem = NULL;
    size_t len = 0;
    if (dx_read_file(chain_path, PKI_PEM_MAX, &pem, &len) < 0) {
        snprintf(err, errlen, "%.300s: cannot read the certificate chain", chain_path);
        return HUB_ESIGN;
    }
    int rc = chain_identity(pem, len, out, NULL, err, errlen);
    free(pem);
    return rc;
}

int hub_signer_open(const char *key_path, const char *cert_path, const char *chain_path, const char *pass,
                    hub_signer **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!pass || !pass[0]) {
        snprintf(err, errlen, "no passphrase");
        return HUB_EPASS;
    }
    hub_signer *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    pki_chain *chain = NULL;
    int rc = HUB_ESIGN;
    if (dx_read_file(cert_path, PKI_PEM_MAX, &s->chain_pem, &s->chain_len) < 0) {
        snprintf(err, errlen, "%.300s: cannot read the certificate", cert_path);
        goto fail;
    }
    if (chain_path) { /* the CA certificates follow the reader's */
        char *ca = NULL;
        size_t ca_len = 0;
        if (dx_read_file(chain_path, PKI_PEM_MAX, &ca, &ca_len) < 0) {
            snprintf(err, errlen, "%.300s: cannot read the certificate chain", chain_path);
            goto fail;
        }
        char *both = realloc(s->chain_pem, s->chain_len + ca_len + 2);
        if (!both) {
            free(ca);
            goto fail;
        }
        if (s->chain_len && both[s->chain_len - 1] != '\n')
            both[s->chain_len++] = '\n';
        memcpy(both + s->chain_len, ca, ca_len + 1);
        s->chain_pem = both;
        s->chain_len += ca_len;
        free(ca);
    }
    if (chain_identity(s->chain_pem, s->chain_len, &s->who, &chain, err, errlen) < 0)
        goto fail;
    pki_secure_heap(); /* the decrypted key's numbers go to locked, never-swapped memory */
    pki_pass_src src = {.literal = pass};
    int krc = pki_key_load(key_path, &src, &s->key, err, errlen);
    if (krc == PKI_EPASS) {
        rc = HUB_EPASS;
        goto fail;
    }
    if (krc < 0)
        goto fail;
    if (!pki_chain_matches_key(chain, s->key)) {
        snprintf(err, errlen, "the signing key is not the certificate's");
        goto fail;
    }
    pki_chain_free(&chain);
    *out = s;
    return 0;
fail:
    pki_chain_free(&chain);
    hub_signer_free(&s);
    return rc;
}

void hub_signer_free(hub_signer **sp)
{
    if (!sp || !*sp)
        return;
    hub_signer *s = *sp;
    pki_key_free(&s->key);
    free(s->chain_pem);
    free(s);
    *sp = NULL;
}

void hub_signer_who(const hub_signer *s, hub_signer_identity *out) { *out = s->who; }

const void *hub_signer_chain(const hub_signer *s, size_t *len)
{
    *len = s->chain_len;
    return s->chain_pem;
}

int hub_signer_sign(const hub_signer *s, const void *p, size_t n, uint8_t sig[HUB_SIG_MAX], size_t *sig_len,
                    char *err, size_t errlen)
{
    _Static_assert(HUB_SIG_MAX >= PKI_SIG_MAX, "signature buffer");
    return pki_sign(s->key, p, n, sig, sig_len, err, errlen) < 0 ? HUB_ESIGN : 0;
}

int hub_report_build(const hub_report_fields *f, const hub_report_instance *inst, size_t n, char **out,
                     size_t *len, char *err, size_t errlen)
{
    report_instance *ri = calloc(n ? n : 1, sizeof *ri);
    if (!ri) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        ri[i].sop = inst[i].sop;
        if (digest_from_hex(inst[i].digest, ri[i].digest) < 0) {
            snprintf(err, errlen, "instance %zu has no valid digest", i);
            free(ri);
            return REPORT_EFORMAT;
        }
    }
    report_fields rf = {
        .report_id = f->report_id, .study_uid = f->study_uid, .patient_id = f->patient_id,
        .origin_facility = f->origin_facility, .reading_facility = f->reading_facility,
        .reader_id = f->reader_id, .reader_role = f->reader_role, .reader_name = f->reader_name,
        .findings = f->findings, .impression = f->impression, .critical = f->critical, .version = f->version,
        .supersedes = f->supersedes, .reported = (time_t)f->reported, .exam_type = f->exam_type,
        .drafted_by = f->drafted_by, .drafted_by_name = f->drafted_by_name};
    int rc = report_build(&rf, ri, n, out, len, err, errlen);
    free(ri);
    return rc;
}

int hub_digest_fd(int fd, uint64_t offset, char hex[65])
{
    uint8_t d[32];
    int rc = digest_fd(fd, offset, d);
    if (rc < 0)
        return rc;
    digest_hex(d, hex);
    return 0;
}
