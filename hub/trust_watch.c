/* trust_watch.c — see trust_watch.h. */
#include <stdio.h>
#include <time.h>
#include "hub/clock.h"
#include "hub/log.h"
#include "hub/trust_watch.h"
#include "codecs/banned.h"

#define TOLD_EVERY_MS (24LL * 3600 * 1000)

void trust_watch_check(trust_watch *w, report_verifier *v, hub_metrics *m, bool now_told)
{
    pki_trust_deadline d;
    if (!v || report_verifier_deadline(v, &d) < 0) {
        atomic_store(&m->trust_deadline, 0);
        return;
    }
    atomic_store(&m->trust_deadline, d.at > 0 ? d.at : 1); /* 1: a CA without a CRL, refused already */
    int64_t now = (int64_t)time(NULL), left = d.at - now, mono = clock_mono_ms();
    if (left > (int64_t)TRUST_WARN_DAYS * 86400)
        return;
    if (!now_told && w->told_mono_ms && mono - w->told_mono_ms < TOLD_EVERY_MS)
        return;
    w->told_mono_ms = mono;
    if (d.at == 0) {
        log_error("trust list: CA %s has no revocation list in %s: every report signed under it is refused; "
                  "copy the CA's crl.pem there, then SIGHUP the hub", d.ca, w->trust_dir);
        return;
    }
    char date[32];
    time_t at = (time_t)d.at;
    struct tm tm;
    if (!gmtime_r(&at, &tm) || !strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", &tm))
        snprintf(date, sizeof date, "?");
    const char *what = d.crl ? "the revocation list of CA" : "the certificate of CA";
    const char *remedy = d.crl ? "re-sign it (dxhub keygen --crl --ca CADIR), copy crl.pem into"
                               : "add the CA's new certificate (and its readers' new ones) to";
    if (left <= 0)
        log_error("trust list: %s %s %s on %s: every report signed under it is refused now; %s %s, then SIGHUP "
                  "the hub", what, d.ca, d.crl ? "went out of date" : "ended", date, remedy, w->trust_dir);
    else
        log_warn("trust list: %s %s %s on %s (in %lld h): reports signed under it will be refused after that; "
                 "%s %s, then SIGHUP the hub", what, d.ca, d.crl ? "is due" : "ends", date,
                 (long long)(left / 3600), remedy, w->trust_dir);
}
