/* ecg_private.h — what the ECG files of codecs/ share and nobody else sees. */
#ifndef DXHUB_ECG_PRIVATE_H
#define DXHUB_ECG_PRIVATE_H

#include "codecs/dcm_private.h"

/* Hard caps on what the readers accept before allocating. */
#define ECG_MAX_FILE  (512u << 20) /* a signal, XML or stream file */
#define ECG_MAX_HEADER (1u << 20)  /* a WFDB header */

/* Set the normalised name of lead l from a source label. */
void ecg_set_name(ecg_lead *l, const char *label, size_t len);
/* Name of a lead from its SCP-ECG / MDC lead number (EN 1064 Table 4,
 * ISO/IEEE 11073-10101 partition 2: the same numbers), or NULL. */
const char *ecg_lead_from_code(unsigned code);
/* Copy at most n-1 bytes of s (len bytes) into out, trimmed of spaces. */
void ecg_copy_trim(char *out, size_t n, const char *s, size_t len);

/* Read a whole regular file into a malloc'd buffer (at most max bytes). */
int ecg_slurp(const char *path, size_t max, uint8_t **out, size_t *len, dcm_err *err);

/* Check r's sizes before allocating: leads and leads x samples within the
 * caps; returns 0 or DCM_ETOOBIG with a message. */
int ecg_check_size(size_t n_leads, size_t n_samples, size_t max_total, dcm_err *err);

#endif
