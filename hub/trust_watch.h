/* trust_watch.h — the trust list's coming deadline, said before it comes.
 *
 * A facility CA's CRL carries a nextUpdate (dxhub keygen: 30 days), and
 * a CA certificate an end.  Past either, the hub refuses every report
 * signed under that CA: the night's first critical report would meet
 * "revocation list out of date".  So the hub logs the deadline from
 * TRUST_WARN_DAYS before (at start, at each SIGHUP reload, and once a day),
 * an error once it has passed, and puts it on /metrics
 * (dxhub_trust_deadline_timestamp_seconds) and in health.  Hub-private. */
#ifndef DXHUB_TRUST_WATCH_H
#define DXHUB_TRUST_WATCH_H

#include <stdbool.h>
#include <stdint.h>
#include "hub/metrics.h"
#include "hub/report.h"

#define TRUST_WARN_DAYS 7

typedef struct trust_watch {
    const char *trust_dir;
    int64_t     told_mono_ms; /* when the log last said it; 0 never */
} trust_watch;

/* What to say of v's deadline at now_s, into buf (the remedy names
 * trust_dir): 2 when it has passed (or a CA has no CRL), 1 when it comes
 * within TRUST_WARN_DAYS, 0 when nothing needs saying (buf empty). */
int trust_deadline_text(report_verifier *v, const char *trust_dir, int64_t now_s, char *buf, size_t len);

/* v: the verifier in force (NULL: none).  Sets m->trust_deadline and logs
 * when due: at once with now_told (a load or reload), else at most daily. */
void trust_watch_check(trust_watch *w, report_verifier *v, hub_metrics *m, bool now_told);

#endif
