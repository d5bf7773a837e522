/* dimse_tls.c — the DICOM TLS settings every listener of ours (hub and
 * clinic edge) checks before it starts: the pair as pki_tls_server_load
 * checks any TLS server's, and the CA file a caller's certificate must
 * chain to, so that a wrong file is named at start rather than found at
 * a modality's first association. */
#include <errno.h>
#include <stdio.h>
#include <time.h>
#include "hub/dimse.h"
#include "hub/log.h"
#include "hub/pki.h"

int dimse_tls_check(const char *cert, const char *key, const char *ca, int64_t *not_after, char *err, size_t errlen)
{
    if (not_after)
        *not_after = 0;
    if (!cert && !key && !ca)
        return 0;
    if (!cert || !key) {
        snprintf(err, errlen, "dicom-tls-cert and dicom-tls-key go together (%s is missing)",
                 cert ? "dicom-tls-key" : "dicom-tls-cert");
        return -EINVAL;
    }
    pki_tls_server t;
    time_t now = time(NULL);
    int rc = pki_tls_server_load("dicom-tls", cert, key, now, &t, err, errlen);
    if (rc == 0 && not_after)
        *not_after = t.not_after;
    if (rc == 0 && t.not_after - (int64_t)now < DIMSE_TLS_WARN_DAYS * 86400)
        log_warn("DICOM listener: dicom-tls-cert %s expires in %lld days: modalities cannot send after that; "
                 "renew it, then restart", cert, (long long)((t.not_after - (int64_t)now) / 86400));
    pki_tls_server_free(&t);
    if (rc < 0 || !ca)
        return rc;
    pki_chain *cas = NULL;
    char why[256];
    if ((rc = pki_chain_load(ca, &cas, why, sizeof why)) < 0) {
        snprintf(err, errlen, "dicom-tls-ca %s", why);
        return rc;
    }
    pki_chain_free(&cas);
    return 0;
}
