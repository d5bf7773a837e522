/* inbox_listing.h — which of the clinic's inbox a person is shown: what
 * arrived since a time, and every alert nobody has confirmed reading.
 * What is shown is chosen first, recorded in the gateway's audit trail,
 * and only then shown, so nobody at the clinic reads a patient's report
 * unrecorded.  For `dxhub reports` and its page (clinic_page.c).
 * Hub-private. */
#ifndef DXHUB_INBOX_LISTING_H
#define DXHUB_INBOX_LISTING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "hub/spool.h"

typedef struct inbox_listing {
    spool  *sp;
    const char *patient;   /* set: only items about this patient ID, however old */
    int64_t since_ms;      /* items received before are left out (0: all)... */
    char  **ids;           /* ...except alerts nobody has confirmed reading; in key order */
    size_t  n, cap;
    size_t  older;         /* left out for their age */
    size_t  next;          /* the walk that shows them: the next chosen id */
} inbox_listing;

/* Chooses from the whole inbox (sp and since_ms set by the caller):
 * returns how many items the inbox holds, or < 0. */
int  inbox_listing_choose(inbox_listing *l);
/* In a later walk of the inbox (key order, as spool_inbox_list gives):
 * whether id was chosen.  An item that arrived between the two walks was
 * not, and waits for the next listing. */
bool inbox_listing_chosen(inbox_listing *l, const char *id);
void inbox_listing_free(inbox_listing *l);

/* One record of `what` per id, as who (the account that shows it),
 * detail "id=ID<how>", in one durable transaction: 0, or < 0 and nothing
 * may be shown. */
int  inbox_listing_audit(spool *sp, const char *const *ids, size_t n, const char *who, const char *what,
                         const char *how);

#endif
