/* dcm_private.h — what the files of codecs/ share and nobody else sees. */
#ifndef DXHUB_DCM_PRIVATE_H
#define DXHUB_DCM_PRIVATE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include "codecs/codecs.h"

/* dcm_open reads files up to this size, maps larger ones. */
#define DCM_READ_LIMIT (4u << 20)

struct dcm_file {
    const uint8_t *buf;      /* bytes every node points into */
    size_t         len;
    uint8_t       *owned;    /* heap copy when the dataset was inflated */
    void          *map;      /* mmap of dcm_open (large files), or NULL */
    uint8_t       *heap_input; /* dcm_open's copy of a small file, or NULL */
    size_t         map_len;
    dcm_elem      *nodes;
    size_t         n, cap;
    const dcm_ts  *ts;       /* dataset transfer syntax */
    bool           preamble, meta;
    size_t         dataset_offset;
    size_t         stopped_at; /* where a stop_at_tag parse stopped (0: it did not) */
};

/* Record a failure in err (if any) and return code.  The one place
 * messages are formatted (printf-style). */
int dcm_fail(dcm_err *err, int code, size_t offset, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static inline uint16_t dcm_rd16(const uint8_t *p, bool be)
{
    return be ? (uint16_t)(p[0] << 8 | p[1]) : (uint16_t)(p[1] << 8 | p[0]);
}
static inline uint32_t dcm_rd32(const uint8_t *p, bool be)
{
    return be ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
              : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}
static inline uint64_t dcm_rd64(const uint8_t *p, bool be)
{
    uint64_t hi = dcm_rd32(p + (be ? 0 : 4), be), lo = dcm_rd32(p + (be ? 4 : 0), be);
    return hi << 32 | lo;
}
static inline bool dcm_is_big_endian_node(const dcm_elem *e)
{
    return (e->flags & DCM_F_SWAPPED) != 0;
}

/* The VR an element really has: resolves the dictionary's ambiguous VRs
 * ("US or SS", "OB or OW") from the data set around it (PS3.5 A.1, as
 * pydicom's correct_ambiguous_vr does). */
dcm_vr dcm_effective_vr(const dcm_file *f, const dcm_elem *e);

/* dcm_get_f64 / dcm_get_utf8 reading the value as VR vr (already
 * resolved by the caller). */
int dcm_get_f64_as(const dcm_file *f, const dcm_elem *e, dcm_vr vr, size_t i, double *out);
int dcm_get_utf8_as(const dcm_file *f, const dcm_elem *e, dcm_vr vr, char **out, size_t *outlen, dcm_err *err);

/* The Specific Character Set value in force for node e: that of the
 * nearest enclosing item that has one, else the data set's. */
const uint8_t *dcm_charset_for(const dcm_file *f, const dcm_elem *e, size_t *len);

/* Sinks into a growing heap buffer (used by writers and tests). */
typedef struct dcm_buf {
    uint8_t *p;
    size_t   n, cap;
} dcm_buf;
int      dcm_buf_put(dcm_buf *b, const void *p, size_t n);
dcm_sink dcm_sink_buf(dcm_buf *b);

#include "codecs/banned.h"
#endif
