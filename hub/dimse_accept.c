/* dimse_accept.c — the AE-title rule every DICOM listener of ours applies
 * (hub and clinic edge alike): the called AE must be ours; the calling AE
 * must be in the allow list unless the listener is configured open. */
#include <stdio.h>
#include <string.h>
#include "hub/dimse.h"

static int ae_listed(const char *list, const char *ae)
{
    size_t al = strlen(ae);
    for (const char *p = list; p && *p;) {
        size_t l = strcspn(p, ",");
        if (l == al && !strncmp(p, ae, l))
            return 1;
        p += l + (p[l] == ',');
    }
    return 0;
}

int dimse_check_aets(const char *our_aet, const char *allow_list, int open, const char *calling, const char *called,
                     char *reason, size_t reason_len)
{
    if (strcmp(called, our_aet)) {
        snprintf(reason, reason_len, "called AE title '%s' is not ours ('%s')", called, our_aet);
        return DIMSE_REJECT_CALLED_AE;
    }
    if (!open && !ae_listed(allow_list, calling)) {
        snprintf(reason, reason_len, "calling AE title '%s' is not in --allow-ae", calling);
        return DIMSE_REJECT_CALLING_AE;
    }
    return DIMSE_ACCEPT;
}
