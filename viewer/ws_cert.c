/* ws_cert.c — the reader's signing certificate ends on a date the facility's
 * CA chose.  The hub refuses every report signed after that, so the
 * workstation says so ahead: at start and on the page from
 * WS_CERT_WARN_DAYS before, and by refusing a signature once it has ended
 * (before signing, with the date), rather than leave a radiologist to meet
 * the hub's refusal on the night's first critical report. */
#include <stdio.h>
#include <time.h>
#include "viewer/ws.h"

int64_t ws_cert_days_left(const hub_signer_identity *c, int64_t now_s)
{
    int64_t left = c->not_after - now_s;
    return left >= 0 ? left / 86400 : -((-left + 86399) / 86400);
}

void ws_cert_end_date(const hub_signer_identity *c, char buf[11])
{
    time_t t = (time_t)c->not_after;
    struct tm tm;
    if (!gmtime_r(&t, &tm) || !strftime(buf, 11, "%Y-%m-%d", &tm))
        snprintf(buf, 11, "?");
}

int ws_cert_refuses(const hub_signer_identity *c, int64_t now_s, char *why, size_t whylen)
{
    if (c->not_after > now_s)
        return 0;
    char end[11];
    ws_cert_end_date(c, end);
    snprintf(why, whylen,
             "your signing certificate ended on %s (UTC): the hub refuses reports signed with it; ask %s's CA "
             "for a new one (a colleague may sign meanwhile)",
             end, c->facility[0] ? c->facility : "your facility");
    return -1;
}
