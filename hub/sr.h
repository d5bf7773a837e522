/* sr.h — a signed report as a DICOM Basic Text SR (SOP Class
 * 1.2.840.10008.5.1.4.1.1.88.11, PS3.3 A.35.1), so a PACS can take the
 * reading of record in beside the images.  Written through DCMTK's dcmsr
 * by sr_dcmtk.cc, the only file that includes it.  Hub-private.
 *
 * The document (TID 2000, Basic Diagnostic Imaging Report):
 *   CONTAINER (18748-4, LN, "Diagnostic Imaging Report")
 *     CONTAINS CONTAINER (121070, DCM, "Findings")
 *       CONTAINS TEXT (121071, DCM, "Finding")          the findings
 *     CONTAINS CONTAINER (121072, DCM, "Impressions")
 *       CONTAINS TEXT (121073, DCM, "Impression")       the impression
 * Completion Flag COMPLETE, Verification Flag VERIFIED with the signer as
 * Verifying Observer; Current Requested Procedure Evidence Sequence lists
 * every instance the report covers; Patient and General Study modules are
 * copied from the study's first file (its character set converted to
 * UTF-8); Specific Character Set ISO_IR 192 throughout.
 *
 * Errors: 0, or a negative SR_E* code (or -ENOMEM) with a one-line reason
 * in err naming the file and the cause, never a patient's data.
 */
#ifndef DXHUB_SR_H
#define DXHUB_SR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum sr_error {
    SR_EINPUT = -5201, /* a study file unreadable, not DICOM, or of another study */
    SR_EDCMTK = -5202, /* dcmsr refused the document, or writing it failed */
};

typedef struct sr_spec {
    const char *const *files;     /* the Part 10 files of the instances the report covers, >= 1 */
    size_t             n_files;
    const char        *study_uid; /* every file must be of this study */
    const char        *findings, *impression;      /* UTF-8 */
    const char        *observer_name, *organisation; /* the signer (certificate CN and O), UTF-8 */
    const char        *verified_at;  /* DICOM DT, e.g. "20250601083000+0000": the signing time */
    const char        *sop_uid, *series_uid;       /* the SR's own UIDs */
    const char        *series_description;         /* LO, e.g. "Signed report rpt-1 v1" */
} sr_spec;

/* Writes the SR as a Part 10 file (Explicit VR Little Endian) at
 * out_path; content date/time and instance creation date/time are the
 * signing time, so the same report always gives the same bytes. */
int sr_write_basic_text(const sr_spec *s, const char *out_path, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
