/* trust_watch.c — see trust_watch.h. */
#include <stdio.h>
#include <time.h>
#include "hub/clock.h"
#include "hub/log.h"
#include "hub/trust_watch.h"
#include "codecs/banned.h"

#define TOLD_EVERY_MS (24LL * 3600 * 1000)

static int deadline_text(const pki_trust_deadline *d, const char *trust_dir, int64_t now_s, char *buf, size_t len)
{
    buf[0] = '\0';
    int64_t left = d->at - now_s;
    if (left > (int64_t)TRUST_WARN_DAYS * 86400)
        return 0;
    if (d->at == 0) {
        snprintf(buf, len, "trust list: CA %s has no revocation list in %s: every report signed under it is "
                           "refused; copy the CA's crl.pem there", d->ca, trust_dir);
        return 2;
    }
    char date[32];
    time_t at = (time_t)d->at;
    struct tm tm;
    if (!gmtime_r(&at, &tm) || !strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", &tm))
        snprintf(date, sizeof date, "?");
    const char *what = d->crl ? "the revocation list of CA" : "the certificate of CA";
    const char *remedy = d->crl ? "re-sign it (dxhub keygen --crl --ca CADIR), copy crl.pem into"
                                : "add the CA's new certificate (and its readers' new ones) to";
    if (left <= 0) {
        snprintf(buf, len, "trust list: %s %s %s on %s: every report signed under it is refused now; %s %s", what,
                 d->ca, d->crl ? "went out of date" : "ended", date, remedy, trust_dir);
        return 2;
    }
    snprintf(buf, len, "trust list: %s %s %s on %s (in %lld h): reports signed under it will be refused after "
                       "that; %s %s", what, d->ca, d->crl ? "is due" : "ends", date, (long long)(left / 3600),
             remedy, trust_dir);
    return 1;
}

int trust_deadline_text(report_verifier *v, const char *trust_dir, int64_t now_s, char *buf, size_t len)
{
    pki_trust_deadline d;
    if (!v || report_verifier_deadline(v, &d) < 0) {
        buf[0] = '\0';
        return 0;
    }
    return deadline_text(&d, trust_dir, now_s, buf, len);
}

void trust_watch_check(trust_watch *w, report_verifier *v, hub_metrics *m, bool now_told)
{
    pki_trust_deadline d;
    if (!v || report_verifier_deadline(v, &d) < 0) {
        atomic_store(&m->trust_deadline, 0);
        return;
    }
    atomic_store(&m->trust_deadline, d.at > 0 ? d.at : 1); /* 1: a CA without a CRL, refused already */
    int64_t mono = clock_mono_ms();
    char text[700];
    int level = deadline_text(&d, w->trust_dir, (int64_t)time(NULL), text, sizeof text);
    if (!level || (!now_told && w->told_mono_ms && mono - w->told_mono_ms < TOLD_EVERY_MS))
        return;
    w->told_mono_ms = mono;
    if (level == 2)
        log_error("%s, then SIGHUP the hub", text);
    else
        log_warn("%s, then SIGHUP the hub", text);
}
