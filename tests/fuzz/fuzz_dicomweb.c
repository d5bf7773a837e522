/* fuzz_dicomweb.c — what a DICOMweb client sends before any data is read:
 * the path below /dicom-web (api_dicomweb_path) and the Accept header
 * (api_dicomweb_accept_ts, api_dicomweb_accept_frames, api_dicomweb_accept_rendered).  A parsed
 * path must hold what the handler relies on: the UIDs of the levels it names
 * and none below, each a NUL-terminated string of at most 64 bytes, frame
 * numbers from 1, exactly one frame to render; a transfer syntax asked for
 * fits its buffer, and a rendered picture is JPEG or PNG.
 *
 * Input: the path, then '\n' and the Accept header (any byte but NUL).
 *
 * fuzz-objects: hub/api_dicomweb_path.c */
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
    char *accept = strchr(text, '\n');
    if (accept)
        *accept++ = 0;
    api_dw_path p;
    if (api_dicomweb_path(text, &p)) {
        if (p.what != API_DW_SEARCH_STUDIES && !p.study)
            abort(); /* everything below a study names it */
        if ((p.instance && !p.series) || (p.series && !p.study))
            abort();
        if (p.what == API_DW_SEARCH_STUDIES && p.study)
            abort();
        if (p.what == API_DW_FRAMES && (!p.instance || p.n_frames < 1 || p.n_frames > API_DW_FRAMES_MAX))
            abort();
        if (p.what == API_DW_RENDERED && (!p.instance || p.n_frames != 1))
            abort();
        for (int i = 0; i < p.n_frames; i++)
            if (p.frames[i] == 0)
                abort(); /* frames count from 1 */
        const char *uids[3] = {p.study, p.series, p.instance};
        for (int i = 0; i < 3; i++)
            if (uids[i] && (uids[i] != p.buf[i] || strnlen(uids[i], sizeof p.buf[i]) > STORE_UID_MAX))
                abort();
    }
    char ts[80];
    const char *want = api_dicomweb_accept_ts(accept, ts, sizeof ts);
    if (want && want != ts && strcmp(want, "*"))
        abort();
    if (want == ts && strnlen(ts, sizeof ts) == sizeof ts)
        abort();
    want = api_dicomweb_accept_frames(accept, ts, sizeof ts);
    if (want && want != ts && strcmp(want, "*") && strcmp(want, ""))
        abort();
    want = api_dicomweb_accept_rendered(accept);
    if (want && strcmp(want, "image/jpeg") && strcmp(want, "image/png"))
        abort();
    free(text);
    return 0;
}
