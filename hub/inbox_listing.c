/* inbox_listing.c — the choice of what a person at the clinic is shown,
 * and its audit (inbox_listing.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hub/clock.h"
#include "hub/inbox_listing.h"
#include "hub/inbox_summary.h"
#include "codecs/banned.h"

static int choose(void *ctx, const char *id, const char *kind, int64_t received_ms, const void *data, size_t len)
{
    inbox_listing *l = ctx;
    if (l->patient) {
        inbox_summary sum;
        inbox_summary_read(kind, data, len, &sum);
        if (strcmp(sum.patient_id, l->patient))
            return 0;
    }
    spool_confirmation c;
    bool unread_alert = !strcmp(kind, "alert") && spool_alert_confirmation(l->sp, id, &c) != 0;
    if (!l->patient && received_ms < l->since_ms && !unread_alert) {
        l->older++;
        return 0;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        char **v = realloc(l->ids, cap * sizeof *v);
        if (!v)
            return 1;
        l->ids = v;
        l->cap = cap;
    }
    if (!(l->ids[l->n] = strdup(id)))
        return 1;
    l->n++;
    return 0;
}

int inbox_listing_choose(inbox_listing *l)
{
    return spool_inbox_list(l->sp, choose, l);
}

bool inbox_listing_chosen(inbox_listing *l, const char *id)
{
    while (l->next < l->n && strcmp(l->ids[l->next], id) < 0)
        l->next++; /* gone meanwhile */
    if (l->next < l->n && !strcmp(l->ids[l->next], id)) {
        l->next++;
        return true;
    }
    return false;
}

void inbox_listing_free(inbox_listing *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->ids[i]);
    free(l->ids);
    l->ids = NULL;
    l->n = l->cap = l->next = 0;
}

int inbox_listing_audit(spool *sp, const char *const *ids, size_t n, const char *who, const char *what,
                        const char *how)
{
    if (!n)
        return 0;
    spool_audit_rec *r = calloc(n, sizeof *r);
    char (*detail)[300] = calloc(n, sizeof *detail);
    int rc = r && detail ? 0 : -ENOMEM;
    for (size_t i = 0; i < n && !rc; i++) {
        snprintf(detail[i], sizeof detail[i], "id=%s%s", ids[i], how);
        r[i] = (spool_audit_rec){.t_ms = clock_wall_ms(), .who = who, .what = what, .detail = detail[i],
                                 .inbox_id = ids[i]};
    }
    if (!rc)
        rc = spool_audit_many(sp, r, n);
    free(r);
    free(detail);
    return rc;
}
