/* fuzz_http_query.c — the HTTP API's query parameters, as a client sends
 * them: names recorded (api_params_add: unknown or repeated names refused),
 * values checked into a study filter (api_list_query_parse: dates, UIDs,
 * modality codes, paging), the filter applied to a study
 * (api_study_matches, a patient name pattern with pn_match) and the audit
 * line written into a short buffer.
 * A parsed query must hold what the API then relies on: a limit within
 * API_LIST_MAX, a date range that does not end before it starts, a UID of
 * digits and dots.
 *
 * Input: key=value pairs split at '&' (libmicrohttpd hands them decoded,
 * so any byte but NUL may appear); a pair without '=' has no value.
 *
 * fuzz-objects: hub/api_query.c hub/store_state.c hub/pn_match.c */
#include <stdlib.h>
#include <string.h>
#include "hub/api_private.h"
#include "tests/fuzz/fuzz_text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_text(data, size);
    if (!text)
        return 0;
    api_params p = {.allowed = (1u << API_P_COUNT) - 1};
    for (char *pair = text, *next; pair; pair = next) {
        next = strchr(pair, '&');
        if (next)
            *next++ = 0;
        char *eq = strchr(pair, '=');
        if (eq)
            *eq++ = 0;
        api_params_add(&p, pair, eq);
    }
    api_list_query q;
    const char *name = NULL, *why = NULL;
    if (!p.bad && api_list_query_parse(&p, &q, &name, &why)) {
        if (q.limit > API_LIST_MAX)
            abort();
        if (q.flt.date_from && q.flt.date_to && strcmp(q.flt.date_from, q.flt.date_to) > 0)
            abort();
        if (q.study_uid && !api_valid_uid(q.study_uid))
            abort();
        store_study st = {.state = 1};
        strcpy(st.patient_id, "P1");
        strcpy(st.patient_name, "Zhang^San=\xe5\xbc\xa0^\xe4\xb8\x89"); /* 张^三: '?' takes a whole character */
        strcpy(st.study_date, "20261124");
        strcpy(st.modalities, "CT\\SR\\\\ECG");
        (void)api_study_matches(&st, &q.flt);
    } else if (!p.bad && (!name || !why)) {
        abort(); /* a refusal always names the parameter and the reason */
    }
    char audit[48];
    api_list_audit_detail(&p, 3, 7, audit, sizeof audit);
    if (strnlen(audit, sizeof audit) == sizeof audit)
        abort();
    free(text);
    return 0;
}
