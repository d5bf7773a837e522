/*
 * codecs.h — dxhub's codec library: DICOM Part 10 parsing and writing,
 * DICOM JSON, character sets.  Bytes in, bytes out: no sockets, no globals,
 * no files except those passed by path.
 *
 * This header is the manual.  Every function returns 0 (or a count) on
 * success and a negative DCM_E* code on failure; the human-readable reason,
 * naming the byte offset, is written into the caller's dcm_err.  Messages
 * never contain element values (they may be patient data).
 */
#ifndef DXHUB_CODECS_H
#define DXHUB_CODECS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ */
/* Errors                                                              */
/* ------------------------------------------------------------------ */

enum dcm_error {
    DCM_OK        = 0,
    DCM_ETRUNC    = -1001, /* data ends inside an element or item */
    DCM_EBADLEN   = -1002, /* a length is impossible (past the end, odd where even is required) */
    DCM_EDEPTH    = -1003, /* sequences nested deeper than DCM_MAX_DEPTH */
    DCM_EBADVR    = -1004, /* explicit VR bytes that are no VR */
    DCM_ENOTDICOM = -1005, /* neither Part 10 nor a recognisable raw dataset */
    DCM_EMETA     = -1006, /* File Meta Information unusable */
    DCM_ENOMEM    = -1007,
    DCM_ETS       = -1008, /* transfer syntax not supported for this operation */
    DCM_EINFLATE  = -1009, /* deflated dataset does not inflate */
    DCM_ECHARSET  = -1010, /* text cannot be converted with its character set */
    DCM_ETOOBIG   = -1011, /* a size exceeds a hard limit */
    DCM_EIO       = -1012, /* reading or writing a file failed (errno in message) */
    DCM_EORDER    = -1013, /* tags not ascending / structure broken */
    DCM_ENOTFOUND = -1014, /* element absent */
    DCM_EVALUE    = -1015, /* element value is not what its VR requires */
};

/* Text of a DCM_E* code ("truncated data", ...). Never NULL. */
const char *dcm_strerror(int code);

/* Where a failure's reason goes: "offset 1204: item length 4294967290
 * exceeds the 812 bytes left".  Callers prefix the file name. */
typedef struct dcm_err {
    char   msg[256];
    size_t offset; /* byte offset in the input at which the problem was found */
} dcm_err;

/* ------------------------------------------------------------------ */
/* Value representations and transfer syntaxes (tables, not switches)  */
/* ------------------------------------------------------------------ */

typedef enum dcm_vr {
    DCM_VR_NONE = 0, /* items and delimiters carry no VR */
    DCM_VR_AE, DCM_VR_AS, DCM_VR_AT, DCM_VR_CS, DCM_VR_DA, DCM_VR_DS, DCM_VR_DT,
    DCM_VR_FD, DCM_VR_FL, DCM_VR_IS, DCM_VR_LO, DCM_VR_LT, DCM_VR_OB, DCM_VR_OD,
    DCM_VR_OF, DCM_VR_OL, DCM_VR_OV, DCM_VR_OW, DCM_VR_PN, DCM_VR_SH, DCM_VR_SL,
    DCM_VR_SQ, DCM_VR_SS, DCM_VR_ST, DCM_VR_SV, DCM_VR_TM, DCM_VR_UC, DCM_VR_UI,
    DCM_VR_UL, DCM_VR_UN, DCM_VR_UR, DCM_VR_US, DCM_VR_UT, DCM_VR_UV,
    /* dictionary-only: resolved from context (Pixel Representation, Bits Allocated) */
    DCM_VR_US_SS, DCM_VR_OB_OW, DCM_VR_US_OW, DCM_VR_US_SS_OW,
    DCM_VR_COUNT
} dcm_vr;

enum dcm_vr_class {
    DCM_VRC_TEXT,      /* character string, backslash-separated values */
    DCM_VRC_TEXT1,     /* character string, single value (LT, ST, UT, UR) */
    DCM_VRC_NUMBER,    /* fixed-size binary numbers (US, SL, FD, AT ...) */
    DCM_VRC_BYTES,     /* OB OD OF OL OV OW UN */
    DCM_VRC_SEQUENCE,
    DCM_VRC_NONE,
};

typedef struct dcm_vr_info {
    char     name[3];     /* "OB" */
    uint8_t  klass;       /* enum dcm_vr_class */
    uint8_t  long_header; /* explicit VR: 2 reserved bytes + 32-bit length */
    uint8_t  word;        /* size of one binary value (byte swapping unit); 0 for text */
    uint8_t  charset;     /* subject to Specific Character Set */
    char     pad;         /* padding byte for odd lengths */
} dcm_vr_info;

const dcm_vr_info *dcm_vr_info_of(dcm_vr vr);  /* never NULL */
dcm_vr dcm_vr_from_chars(uint8_t a, uint8_t b); /* DCM_VR_NONE when not a VR */

typedef struct dcm_ts {
    const char *uid;
    const char *name;
    uint8_t explicit_vr;
    uint8_t big_endian;
    uint8_t deflated;     /* dataset after the meta group is raw-deflated */
    uint8_t encapsulated; /* pixel data in fragments */
    uint8_t lossy;
} dcm_ts;

/* NULL when unknown.  The uid may have trailing NUL/space padding. */
const dcm_ts *dcm_ts_find(const char *uid, size_t len);
const dcm_ts *dcm_ts_at(size_t i); /* table walk; NULL past the end */

#define DCM_TS_IMPLICIT_LE "1.2.840.10008.1.2"
#define DCM_TS_EXPLICIT_LE "1.2.840.10008.1.2.1"
#define DCM_TS_DEFLATED_LE "1.2.840.10008.1.2.1.99"
#define DCM_TS_EXPLICIT_BE "1.2.840.10008.1.2.2"

/* Data dictionary: the VR and keyword of a standard tag (repeating
 * groups 50xx/60xx and private creators handled).  NULL when unknown. */
typedef struct dcm_dict_entry {
    uint32_t    tag;
    uint32_t    mask;    /* bits that must match: 0xFFFFFFFF, or 0xFF00FFFF for 60xx */
    uint8_t     vr;      /* dcm_vr */
    const char *keyword; /* "PatientName" */
} dcm_dict_entry;
const dcm_dict_entry *dcm_dict_find(uint32_t tag);

/* ------------------------------------------------------------------ */
/* Parsed datasets                                                     */
/* ------------------------------------------------------------------ */

#define DCM_TAG(g, e) (((uint32_t)(g) << 16) | (uint32_t)(e))
#define DCM_GROUP(t)  ((uint16_t)((t) >> 16))
#define DCM_ELEM(t)   ((uint16_t)((t) & 0xFFFF))
#define DCM_UNDEFINED_LENGTH 0xFFFFFFFFu
#define DCM_MAX_DEPTH 64 /* nested sequences; deeper input fails with DCM_EDEPTH */

#define DCM_TAG_ITEM          DCM_TAG(0xFFFE, 0xE000)
#define DCM_TAG_ITEM_DELIM    DCM_TAG(0xFFFE, 0xE00D)
#define DCM_TAG_SEQ_DELIM     DCM_TAG(0xFFFE, 0xE0DD)
#define DCM_TAG_PIXEL_DATA    DCM_TAG(0x7FE0, 0x0010)
#define DCM_TAG_SPECIFIC_CHARSET DCM_TAG(0x0008, 0x0005)

enum dcm_elem_flags {
    DCM_F_UNDEF_LEN = 1, /* encoded with undefined length */
    DCM_F_ENCAPS    = 2, /* encapsulated pixel data: children are fragments */
    DCM_F_META      = 4, /* belongs to the File Meta Information */
    DCM_F_VR_GUESSED= 8, /* implicit VR and not in the dictionary, or UN resolved */
    DCM_F_SWAPPED   = 16,/* value bytes are big endian (Explicit VR BE) */
};

/* One element, item or fragment.  The tree is a flat array: each node
 * knows its parent, first child and next sibling by index (-1: none).
 * Top-level elements have parent -1.  Sequence children are items
 * (DCM_TAG_ITEM); item children are elements; encapsulated Pixel Data
 * children are the offset table item then the fragments. */
typedef struct dcm_elem {
    uint32_t       tag;
    uint8_t        vr;       /* dcm_vr, as encoded (explicit) or from the dictionary */
    uint8_t        flags;
    uint16_t       depth;    /* 0 for top level */
    uint32_t       length;   /* value length field as encoded */
    int32_t        parent, child, next;
    size_t         offset;   /* of the element header in the parsed buffer */
    const uint8_t *value;    /* borrowed: points into the parsed buffer; NULL for SQ/items */
    size_t         value_len;/* bytes at value; for SQ/items: bytes spanned by content */
} dcm_elem;

typedef struct dcm_file dcm_file;

typedef struct dcm_parse_opts {
    uint32_t stop_at_tag;  /* 0: parse all; else stop before the first top-level tag >= it */
    uint32_t max_depth;    /* 0: DCM_MAX_DEPTH */
    size_t   max_inflated; /* deflated datasets: cap on inflated size; 0: 1 GiB */
} dcm_parse_opts;

/* Parse a Part 10 file (with or without preamble, with or without meta)
 * held in buf.  The dataset borrows buf: keep it alive and unchanged
 * until dcm_free.  (Deflated datasets are inflated into memory the
 * dcm_file owns.) */
int dcm_parse(const uint8_t *buf, size_t len, const dcm_parse_opts *opts,
              dcm_file **out, dcm_err *err);

/* Map the file at path read-only and parse it; the mapping lives until
 * dcm_free.  Large pixel data is never read unless asked for. */
int dcm_open(const char *path, const dcm_parse_opts *opts, dcm_file **out, dcm_err *err);

void dcm_free(dcm_file **f); /* NULLs *f; NULL-safe */

size_t          dcm_count(const dcm_file *f);
const dcm_elem *dcm_at(const dcm_file *f, int32_t index);  /* NULL out of range */
int32_t         dcm_first(const dcm_file *f);              /* first top-level node, -1 if empty */
/* Index of the child of parent (-1: top level) with this tag, or -1. */
int32_t         dcm_find(const dcm_file *f, int32_t parent, uint32_t tag);
const dcm_ts   *dcm_file_ts(const dcm_file *f);            /* dataset transfer syntax */
int             dcm_has_preamble(const dcm_file *f);
int             dcm_has_meta(const dcm_file *f);
size_t          dcm_dataset_offset(const dcm_file *f);     /* where the dataset starts in the input */
const uint8_t  *dcm_buffer(const dcm_file *f, size_t *len); /* the bytes nodes point into */

/* Values.  Numbers honour the byte order.  Strings are returned trimmed of
 * trailing padding (and leading spaces for non-text VRs), as raw bytes in
 * the dataset's character set, or as UTF-8 with dcm_get_utf8. */
int dcm_get_u32(const dcm_file *f, const dcm_elem *e, size_t i, uint32_t *out); /* US UL SS SL AT, IS */
int dcm_get_f64(const dcm_file *f, const dcm_elem *e, size_t i, double *out);   /* FL FD DS IS US SS UL SL SV UV */
size_t dcm_value_count(const dcm_file *f, const dcm_elem *e);                  /* VM as encoded */
/* Copy value number i (-1: whole value) of a string element, trimmed, NUL-terminated. */
int dcm_get_str(const dcm_file *f, const dcm_elem *e, int i, char *buf, size_t n);
/* Whole value converted to UTF-8 using the Specific Character Set in force
 * for the element (its own item's, else the dataset's).  Caller frees *out. */
int dcm_get_utf8(const dcm_file *f, const dcm_elem *e, char **out, size_t *outlen, dcm_err *err);
/* Convenience: top-level string attribute into buf ("" when absent). */
int dcm_top_str(const dcm_file *f, uint32_t tag, char *buf, size_t n);

/* ------------------------------------------------------------------ */
/* Character sets                                                      */
/* ------------------------------------------------------------------ */

/* Convert a string value encoded under a Specific Character Set (0008,0005)
 * value (backslash-separated defined terms, e.g. "\\ISO 2022 IR 58" or
 * "GB18030") to UTF-8.  ISO 2022 escape sequences are honoured; for PN the
 * '=' component group separators reset to the first character set, and
 * '^' and '\\' delimiters always reset (PS3.5 §6.1.2.5.3).  Caller frees *out. */
int dcm_charset_to_utf8(const char *charset, size_t charset_len, dcm_vr vr,
                        const uint8_t *in, size_t inlen,
                        char **out, size_t *outlen, dcm_err *err);

/* ------------------------------------------------------------------ */
/* Output sinks                                                        */
/* ------------------------------------------------------------------ */

/* Writers stream through a sink so a large value never needs a copy. */
typedef struct dcm_sink {
    int  (*write)(void *ctx, const void *p, size_t n); /* 0 or negative error */
    void  *ctx;
} dcm_sink;
dcm_sink dcm_sink_stdio(FILE *fp);

/* ------------------------------------------------------------------ */
/* Dump (dcmdump-like) and DICOM JSON (PS3.18 Annex F)                */
/* ------------------------------------------------------------------ */

/* Text dump: "(0010,0010) PN [Doe^John]  # 8, 1 PatientName" per element,
 * nested items indented. Strings shown in UTF-8. */
int dcm_dump_text(const dcm_file *f, dcm_sink out, dcm_err *err);

typedef struct dcm_json_opts {
    size_t      bulk_threshold; /* binary VR values longer than this become BulkDataURI; 0: 1024 */
    const char *bulk_uri_base;  /* prefix of each BulkDataURI; NULL: "file:" */
    int         include_meta;   /* emit group 0002 too (DICOM JSON omits it) */
} dcm_json_opts;

/* One JSON object (no newline) for the dataset. */
int dcm_json_write(const dcm_file *f, const dcm_json_opts *opts, dcm_sink out, dcm_err *err);

/* ------------------------------------------------------------------ */
/* Writing Part 10                                                     */
/* ------------------------------------------------------------------ */

#define DXHUB_IMPLEMENTATION_CLASS_UID "1.2.826.0.1.3680043.10.1453.1"
#define DXHUB_IMPLEMENTATION_VERSION   "DXHUB_0_1"

/* An edit applied on write at top level: set (add or replace) or remove. */
typedef struct dcm_edit {
    uint32_t       tag;
    dcm_vr         vr;        /* for set */
    const uint8_t *value;     /* for set: bytes in little endian / character set of the dataset */
    size_t         len;       /* even lengths are written as given; odd ones padded */
    int            remove;    /* 1: remove the element */
} dcm_edit;

typedef struct dcm_write_opts {
    const char     *ts_uid;   /* NULL: keep the source transfer syntax */
    const dcm_edit *edits;    /* sorted or not; at most one per tag */
    size_t          n_edits;
    int             no_preamble;
} dcm_write_opts;

/* Write f as a Part 10 file: preamble, meta group (recomputed group length,
 * our implementation UID and version), dataset in the chosen transfer
 * syntax.  Changing between native syntaxes (implicit/explicit, little/big
 * endian, deflated) is supported; an encapsulated dataset can only be
 * written in its own syntax (DCM_ETS otherwise). */
int dcm_write(const dcm_file *f, const dcm_write_opts *opts, dcm_sink out, dcm_err *err);

/* Write to path atomically (temporary file, fsync, rename). */
int dcm_write_file(const dcm_file *f, const dcm_write_opts *opts, const char *path, dcm_err *err);

#ifdef __cplusplus
}
#endif
#endif
