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

#include <stdbool.h>
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
    DCM_F_IMPLICIT  = 32,/* encoded in implicit VR (8-byte header) */
    DCM_F_UNREAD    = 64,/* value not read from disk (skip_pixels): bytes past 256 undefined */
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
    const uint8_t *value;    /* borrowed: points into the parsed buffer; NULL for SQ/items.
                                encapsulated Pixel Data: its items and delimiter as encoded */
    size_t         value_len;/* bytes at value; for SQ/items: bytes spanned by content */
} dcm_elem;

typedef struct dcm_file dcm_file;

typedef struct dcm_parse_opts {
    uint32_t stop_at_tag;  /* 0: parse all; else stop before the first top-level tag >= it */
    uint32_t max_depth;    /* 0: DCM_MAX_DEPTH */
    size_t   max_inflated; /* deflated datasets: cap on inflated size; 0: 1 GiB */
    int      skip_pixels;  /* dcm_open only, for listing tools: a native Pixel Data
                              value over 64 KiB is not read from disk; only its
                              first 256 bytes are valid (the node is flagged
                              DCM_F_UNREAD).  Never for writing or decoding. */
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
/* A UID as PS3.5 §9.1 has it: 1..64 digits and dots, a digit first and
 * last, no empty component (leading zeros in a component, common in the
 * field, pass).  What the API, the reader and the workstation accept in
 * paths and file names, so what the hub and the edge take in. */
#define DCM_UID_MAX 64
bool dcm_uid_valid(const char *s);
/* Top-level UI attribute into out (at least DCM_UID_MAX + 1 bytes): 0;
 * DCM_ENOTFOUND when absent or empty; DCM_EVALUE when the whole value (not
 * a copy cut to fit, nor one ending at an embedded NUL) is no UID.  out is
 * "" unless 0. */
int dcm_top_uid(const dcm_file *f, uint32_t tag, char *out);
/* The UIDs an instance is filed under (SOP Instance, Study Instance,
 * Series Instance) into sop, study and series (DCM_UID_MAX + 1 bytes
 * each): NULL, or why the instance cannot be filed ("missing Series
 * Instance UID (0020,000E)", "... is not a valid UID ..."). */
const char *dcm_uids_why(const dcm_file *f, char *sop, char *study, char *series);

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

/* A UUID-derived UID (PS3.5 B.2: the 2.25 root needs no registration). */
#define DXHUB_IMPLEMENTATION_CLASS_UID "2.25.195486485352944700671938280730139929525"
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
    /* Pixel data supplied by a pixel codec (cdc_transcode): when set, the
     * top-level Pixel Data element is not copied; pixel_writer is called
     * at its place and writes the whole element (tag, VR, length, value or
     * items) through out, encoded for ts (byte order, VR convention; the
     * sink deflates when ts says so).  Setting it lifts the refusal to
     * change between native and encapsulated syntaxes. */
    int           (*pixel_writer)(void *ctx, dcm_sink out, const dcm_ts *ts, dcm_err *err);
    void           *pixel_ctx;
} dcm_write_opts;

/* Write f as a Part 10 file: preamble, meta group (recomputed group length,
 * our implementation UID and version), dataset in the chosen transfer
 * syntax.  Changing between native syntaxes (implicit/explicit, little/big
 * endian, deflated) is supported; an encapsulated dataset can only be
 * written in its own syntax (DCM_ETS otherwise). */
int dcm_write(const dcm_file *f, const dcm_write_opts *opts, dcm_sink out, dcm_err *err);

/* Write to path atomically (temporary file, fsync, rename). */
int dcm_write_file(const dcm_file *f, const dcm_write_opts *opts, const char *path, dcm_err *err);

/* ------------------------------------------------------------------ */
/* Pixel data: decode, encode, transcode, render (cdc_)                */
/* ------------------------------------------------------------------ */

/* The pixel path of the product: read the image attributes of a parsed
 * file (cdc_image), decode one frame at a time whatever the transfer
 * syntax, encode frames, transcode whole files, and render a frame to
 * 8-bit grey or RGB through the DICOM display pipeline.
 *
 * Decoded frame layout (cdc_decode_frame), the same for every syntax:
 *   - samples interleaved per pixel (R G B R G B ...), whatever Planar
 *     Configuration the file has; rows top to bottom, no padding;
 *   - each sample in a container of img->out_bytes bytes (1 for Bits
 *     Allocated 1 and 8, 2 for 16, 4 for 32), host byte order (little
 *     endian on every platform dxhub builds on);
 *   - unsigned samples masked to Bits Stored; signed ones (Pixel
 *     Representation 1) sign-extended from bit Bits Stored-1 to the
 *     container, so a 16-bit container reads as int16_t;
 *   - Bits Allocated 1 is unpacked to one byte (0 or 1) per pixel;
 *   - colour as img->out_photometric says: the stored colour space, except
 *     that YBR_FULL_422 native data is upsampled to YBR_FULL, lossy JPEG
 *     (Baseline/Extended) colour comes out as RGB (libjpeg's conversion, as
 *     dcmdjpeg does), and JPEG 2000 / HTJ2K YBR_RCT and YBR_ICT come out as
 *     RGB (the codestream's own inverse component transform).  PALETTE
 *     COLOR frames are the indices; cdc_render applies the palette.
 * This equals pydicom 2.3.1's pixel_array after the same Bits Stored
 * normalisation (YBR kept, as pydicom keeps it) except for lossy JPEG
 * colour, where pydicom keeps YCbCr and dxhub gives RGB.
 *
 * Limits (refused before any allocation, DCM_ETOOBIG): one decoded frame
 * at most CDC_MAX_FRAME_BYTES; a codestream whose own header disagrees
 * with Rows/Columns/Samples is refused (CDC_ECODEC) before its codec
 * allocates; the frame count can never exceed what the pixel data holds
 * (native bytes, or fragments / offset-table entries). */

#define CDC_MAX_FRAME_BYTES ((size_t)1 << 30) /* 1 GiB: 16384 x 16384 x 2 samples x 2 bytes */

/* Codes of the pixel path (the other failures use DCM_E*). */
enum cdc_error {
    CDC_ECODEC = -1101, /* the codec rejected the compressed data, or it disagrees with the header */
    CDC_EFRAME = -1102, /* no such frame, or fragments do not map to frames */
    CDC_EPIXEL = -1103, /* image pixel attributes missing or inconsistent */
};
/* Text of a CDC_E* or DCM_E* code.  Never NULL. */
const char *cdc_strerror(int code);

typedef enum cdc_photometric {
    CDC_PI_UNKNOWN = 0,
    CDC_PI_MONOCHROME1, CDC_PI_MONOCHROME2, CDC_PI_PALETTE, CDC_PI_RGB,
    CDC_PI_YBR_FULL, CDC_PI_YBR_FULL_422, CDC_PI_YBR_PARTIAL_420,
    CDC_PI_YBR_ICT, CDC_PI_YBR_RCT,
} cdc_photometric;
/* The DICOM defined term ("MONOCHROME2"); "" for unknown. */
const char *cdc_photometric_name(cdc_photometric pi);

/* A lookup table as the file has it (PS3.3 C.11): descriptor plus data,
 * expanded (segmented palettes are expanded) into memory the cdc_image owns. */
typedef struct cdc_lut {
    uint32_t  n;     /* entries; 0: no table */
    int32_t   first; /* input value mapped to entry 0 */
    uint8_t   bits;  /* bits per entry (8 or 16; up to 16) */
    uint16_t *data;  /* n entries */
} cdc_lut;

#define CDC_MAX_WINDOWS 8

/* A decoder child process.  Some codec libraries can crash the process on
 * crafted data (OpenJPH 0.9 aborts on some HTJ2K packet headers), so
 * their frames are decoded in a child: a crash, a hang past a timeout or a
 * runaway allocation there gives CDC_ECODEC here, and the next frame
 * starts a new child.  A cdc_sandbox keeps one child between frames; set
 * cdc_image.sandbox to use it.  Images without one fork a child per such
 * frame.  The child is a fork (no exec) of the calling thread, made by
 * cdc_sandbox_open (open it early, while the process is small: a fork
 * costs more the larger the process) and again after a crash: it runs only
 * the codec (glibc's malloc is fork-safe), so decode functions must be
 * loaded before the sandbox opens.  Thread-safe: frames through one
 * sandbox are decoded one at a time. */
typedef struct cdc_sandbox cdc_sandbox;
int  cdc_sandbox_open(cdc_sandbox **sb, dcm_err *err); /* starts the child (or the first frame does) */
void cdc_sandbox_close(cdc_sandbox **sb);              /* stops the child; NULLs *sb; NULL-safe */
/* The child's process id (0 when none runs), e.g. to account its CPU time. */
int  cdc_sandbox_pid(const cdc_sandbox *sb);
/* A buffer of at least len bytes that the child shares: a frame decoded
 * into it (out == this pointer in cdc_decode_frame on an image using sb)
 * is written there by the child, one copy of the frame fewer.  Owned by
 * sb, one per sandbox: valid until the next call (a larger len moves it)
 * or cdc_sandbox_close, and its contents until the next frame decoded
 * into it — for a caller that decodes through sb from one thread, or
 * copies the frame out before letting others decode.  NULL with err set
 * when the memory cannot be had. */
uint8_t *cdc_sandbox_frame_buffer(cdc_sandbox *sb, size_t len, dcm_err *err);

/* The pixel attributes of an image, read once by cdc_image_init.  A
 * caller-owned struct: cdc_image_init fills it, cdc_image_release frees
 * what it owns.  It borrows the dcm_file, which must outlive it. */
typedef struct cdc_image {
    const dcm_file *file;
    const dcm_ts   *ts;
    uint32_t rows, cols, frames;
    uint16_t samples, bits_allocated, bits_stored, high_bit;
    uint8_t  is_signed;      /* Pixel Representation 1 */
    uint8_t  planar;         /* Planar Configuration as stored */
    uint8_t  is_float;       /* Float/Double Float Pixel Data (native only) */
    cdc_photometric photometric;      /* as stored */
    cdc_photometric out_photometric;  /* of decoded frames (see above) */
    uint8_t  out_bytes;               /* container bytes per decoded sample */
    /* Display attributes of the top level data set (per-frame functional
     * groups are resolved by cdc_frame_display). */
    cdc_lut  palette[3];              /* red, green, blue (PALETTE COLOR) */
    int32_t  pixel_elem;              /* node of Pixel Data (or Float Pixel Data) */
    /* Where frames of a crash-prone codec are decoded (see cdc_sandbox):
     * borrowed, the caller's to set after cdc_image_init; NULL: a child
     * process per frame. */
    cdc_sandbox *sandbox;
    /* private: fragment ranges per frame (encapsulated) */
    int32_t *frag_first;              /* node index of each frame's first fragment */
    uint32_t *frag_count;             /* fragments in each frame */
    size_t   *frag_bytes;             /* bytes in each frame's fragments */
} cdc_image;

/* Read the pixel attributes of f and map frames to fragments (Extended
 * Offset Table, Basic Offset Table, one fragment per frame, or a scan for
 * each frame's start marker: PS3.5 A.4).  DCM_ENOTFOUND when f has no
 * pixel data; DCM_ETS when its transfer syntax has no decoder here;
 * CDC_EPIXEL for missing/inconsistent attributes; DCM_ETOOBIG past
 * CDC_MAX_FRAME_BYTES; DCM_ETRUNC when native pixel data is short. */
int  cdc_image_init(cdc_image *img, const dcm_file *f, dcm_err *err);
void cdc_image_release(cdc_image *img); /* NULL-safe; leaves it zeroed */

/* Bytes of one decoded frame: rows * cols * samples * out_bytes. */
size_t cdc_frame_size(const cdc_image *img);

/* Decode frame `frame` (0-based) into out (out_len >= cdc_frame_size).
 * Touches only that frame's bytes in the file.  Thread-safe for distinct
 * out buffers. */
int cdc_decode_frame(const cdc_image *img, uint32_t frame, void *out, size_t out_len, dcm_err *err);

/* The compressed bytes of a frame as stored (encapsulated syntaxes): a
 * pointer into the file when the frame is one fragment (*owned NULL),
 * else a heap concatenation the caller frees via *owned. */
int cdc_frame_bytes(const cdc_image *img, uint32_t frame, const uint8_t **p, size_t *n,
                    uint8_t **owned, dcm_err *err);

/* --- encoding ------------------------------------------------------- */

typedef struct cdc_encode_opts {
    int jpeg_quality; /* JPEG Baseline: 1..100; 0: 90 */
    int jpegls_near;  /* JPEG-LS Near-Lossless: NEAR; 0: 2 */
} cdc_encode_opts;

/* What a target syntax does with an image of this shape: the Photometric
 * Interpretation and Bits Allocated it will be written with.  DCM_ETS when
 * the syntax cannot hold it (e.g. JPEG Baseline with 16-bit samples) or
 * has no encoder here. */
int cdc_encode_plan(const cdc_image *img, const char *ts_uid, cdc_photometric *pi_out,
                    uint16_t *bits_allocated_out, dcm_err *err);

/* Encode one decoded frame (layout as cdc_decode_frame gives it for img)
 * in syntax ts_uid.  *out is heap memory the caller frees. */
int cdc_encode_frame(const cdc_image *img, const char *ts_uid, const cdc_encode_opts *o,
                     const void *frame, size_t frame_len, uint8_t **out, size_t *out_len,
                     dcm_err *err);

/* Transcodable targets: every native syntax (implicit, explicit LE/BE,
 * deflated), RLE Lossless, JPEG-LS Lossless and Near-Lossless, JPEG 2000
 * Lossless, HTJ2K Lossless and Lossless RPCL (with the TLM marker segment
 * the RPCL syntax asks for), Deflated Image Frame Compression, JPEG
 * Baseline (8-bit; previews).  Decoding any source syntax above, plus JPEG
 * Extended, JPEG Lossless (Process 14, SV1), JPEG 2000 and HTJ2K lossy.  Streams frame by frame:
 * one decoded and one encoded frame in memory at a time.  Encapsulated
 * output has one fragment per frame and an empty Basic Offset Table
 * (PS3.5 A.4), so no pass over all frames is needed before writing.
 * Photometric Interpretation, Planar Configuration (0), Bits Allocated
 * and Lossy Image Compression are updated; Extended Offset Table
 * elements are dropped.  Files without pixel data are written as they
 * are (dcm_write). */
int cdc_transcode(const dcm_file *f, const char *ts_uid, const cdc_encode_opts *o,
                  dcm_sink out, dcm_err *err);
/* Same, to path atomically (temporary file, fsync, rename). */
int cdc_transcode_file(const dcm_file *f, const char *ts_uid, const cdc_encode_opts *o,
                       const char *path, dcm_err *err);

/* --- display pipeline (PS3.3 C.11, PS3.4 N.2.1) --------------------- */

/* The display attributes in force for one frame: per-frame functional
 * group, else shared functional group, else the top level data set. */
typedef struct cdc_frame_display {
    double   slope, intercept;   /* Rescale; 1, 0 when absent */
    cdc_lut  modality_lut;       /* first Modality LUT Sequence item (owned) */
    uint32_t n_windows;
    double   center[CDC_MAX_WINDOWS], width[CDC_MAX_WINDOWS];
    int      voi_sigmoid;        /* VOI LUT Function SIGMOID */
    cdc_lut  voi_lut;            /* first VOI LUT Sequence item (owned) */
} cdc_frame_display;

typedef struct cdc_render_opts {
    uint32_t frame;
    int      has_window;          /* 1: use center/width below */
    double   center, width;
} cdc_render_opts;

/* An 8-bit picture: channels 1 (grey) or 3 (RGB), rows packed. */
typedef struct cdc_raster {
    uint32_t width, height, channels;
    uint8_t *pixels;              /* heap; cdc_raster_release frees */
} cdc_raster;
void cdc_raster_release(cdc_raster *r);

/* Read the display attributes for frame (LUT data owned by d; release
 * with cdc_frame_display_release). */
int  cdc_frame_display_init(const cdc_image *img, uint32_t frame, cdc_frame_display *d, dcm_err *err);
void cdc_frame_display_release(cdc_frame_display *d);

/* Render one frame (o->frame, 0-based; NULL: frame 0, file's window) to
 * 8 bits as DCMTK's dcm2pnm does (tests/e2e/test_render.py: within one
 * grey level):
 *   grey:   modality LUT (Modality LUT Sequence, else Rescale Slope and
 *           Intercept: per-frame functional group, else shared, else top
 *           level) → VOI (o's window, else the frame's first window with its
 *           VOI LUT Function, else the first VOI LUT Sequence table, else
 *           cdc_auto_window) → MONOCHROME1 inverted.  Windowing follows
 *           PS3.3 C.11.2.1.2 with DCMTK's truncation to integers.
 *   colour: RGB as is (scaled to 8 bits), YBR_FULL / YBR_FULL_422 converted
 *           to RGB, PALETTE COLOR through its (expanded) lookup tables.
 * out->pixels is heap memory: cdc_raster_release.  CDC_EFRAME when the frame
 * does not exist; decode errors pass through. */
int cdc_render_8bit(const cdc_image *img, const cdc_render_opts *o, cdc_raster *out, dcm_err *err);

/* The automatic window over modality values v[0..n): DCMTK's histogram
 * algorithm (dcm2pnm +Wh 5): the values below which and above which 5%
 * of the pixels lie bound the window. */
int cdc_auto_window(const double *v, size_t n, double *center, double *width);

/* Encode a raster as PNG (zlib) or baseline JPEG (libjpeg-turbo). */
int cdc_write_png(const cdc_raster *r, dcm_sink out, dcm_err *err);
int cdc_write_jpeg(const cdc_raster *r, int quality, dcm_sink out, dcm_err *err);

/* ------------------------------------------------------------------ */
/* ECG waveforms (ecg_)                                                */
/* ------------------------------------------------------------------ */

/*
 * One in-memory model for every ECG source: a record is one multiplex
 * group — leads sampled together at one rate, all of the same length.
 * Samples are the source's integer counts (int32), never rescaled, so
 * the codec round-trips them exactly; each lead says how counts become
 * physical units:
 *
 *     physical = (sample - baseline) * scale      [unit]
 *
 * (WFDB: scale = 1/gain, baseline = the header's baseline; DICOM:
 * scale = Channel Sensitivity x Correction Factor, baseline = -Channel
 * Baseline / scale (PS3.3 C.10.9.1.4.3: the baseline is in physical
 * units); aECG: scale = <scale>, baseline = -<origin>/scale; SCP-ECG:
 * scale = AVM / 1000 uV.)
 * ecg_uv_per_count() folds the unit in for voltage leads, which is what
 * measurements want.
 *
 * Lead names are normalised to I, II, III, aVR, aVL, aVF, V1..V9,
 * V2R..V9R, X, Y, Z where the source says so (DICOM/SCP-ECG/MDC lead
 * codes, MDC_ECG_LEAD_* names, case-insensitive labels like "avr"); any
 * other label ("MLII", "vx") is kept as the source spells it.
 */

#define ECG_MAX_LEADS     64          /* more channels in a group: DCM_ETOOBIG */
#define ECG_MAX_TOTAL     (1u << 27)  /* leads x samples (512 MiB of int32) */
#define ECG_NAME_MAX      16          /* lead name incl. NUL (longer labels are cut) */
#define ECG_UNIT_MAX      16          /* UCUM unit incl. NUL */
#define ECG_LABEL_MAX     32          /* multiplex group label incl. NUL */
#define ECG_CODEC_MAX_ABS (1 << 24)   /* codec: |sample| must stay below this */

/* ECG codes extend the DCM_E* list (ecg_strerror knows both). */
enum ecg_error {
    ECG_ENOTECG      = -1101, /* the input holds no waveform we recognise */
    ECG_EUNSUPPORTED = -1102, /* recognised, but a variant we do not read (message says which) */
    ECG_ECORRUPT     = -1103, /* codec stream damaged: bad magic, checksum, impossible field */
    ECG_ERANGE       = -1104, /* a sample the codec cannot represent (|v| >= ECG_CODEC_MAX_ABS) */
};
const char *ecg_strerror(int code); /* ECG_E*, DCM_E* or negated errno; never NULL */

enum ecg_source {
    ECG_SRC_UNKNOWN = 0,
    ECG_SRC_DICOM   = 1, /* 12-lead / General ECG / hemodynamic ... Waveform Storage */
    ECG_SRC_WFDB    = 2, /* PhysioNet header + signal files */
    ECG_SRC_AECG    = 3, /* HL7 v3 annotated ECG XML */
    ECG_SRC_SCP     = 4, /* SCP-ECG (EN 1064) rhythm data */
    ECG_SRC_CODEC   = 5, /* dxhub's own compressed stream (ecg_encode) */
};
const char *ecg_source_name(int source); /* "DICOM", "WFDB", ... */

typedef struct ecg_lead {
    char     name[ECG_NAME_MAX]; /* normalised (see above), never empty ("ch3" if unlabelled) */
    char     unit[ECG_UNIT_MAX]; /* UCUM as the source says: "uV", "mV", "mmHg"; "" unknown */
    double   scale;              /* physical units per count, > 0 */
    double   baseline;           /* the count that is physical zero */
    int32_t *samples;            /* n_samples counts; owned by the record */
    uint8_t  bits;               /* significant bits at the source (11 for mitdb's 212, 16 ...) */
} ecg_lead;

typedef struct ecg_record {
    double    rate;                 /* samples per second, per lead (> 0) */
    size_t    n_samples;            /* per lead */
    size_t    n_leads;              /* 1 .. ECG_MAX_LEADS */
    ecg_lead *leads;                /* n_leads entries; owned */
    int       source;               /* enum ecg_source the samples were first read from
                                       (a codec stream keeps its record's) */
    int       group;                /* which group of the source this is (0-based) */
    int       n_groups;             /* groups the source holds (DICOM multiplex groups,
                                       aECG sequence sets; 1 for WFDB) */
    char      label[ECG_LABEL_MAX]; /* group label ("RHYTHM", "MEDIAN BEAT"), may be "" */
} ecg_record;

/* A zeroed record with n_leads leads of n_samples samples each (one
 * allocation for all samples), scale 1, baseline 0, names "ch1"...
 * NULL on bad sizes (0 leads, > ECG_MAX_LEADS, > ECG_MAX_TOTAL) or no memory. */
ecg_record *ecg_new(size_t n_leads, size_t n_samples, double rate);
void        ecg_free(ecg_record **r); /* NULLs *r; NULL-safe */

/* Microvolts per count for a voltage lead ("uV", "mV", "V", "nV"), else 0. */
double ecg_uv_per_count(const ecg_lead *l);
/* Index of the lead with this (normalised or raw) name, or -1. */
int    ecg_lead_index(const ecg_record *r, const char *name);
/* Normalise a source label ("avr", "Lead aVR", "MDC_ECG_LEAD_AVR") into out;
 * returns 1 if it is a standard lead name, 0 if the label was kept as is. */
int    ecg_normalise_lead(const char *label, size_t len, char *out, size_t n);
/* Smallest and largest sample of a lead (0, 0 when empty). */
void   ecg_lead_range(const ecg_record *r, size_t lead, int32_t *min, int32_t *max);

typedef struct ecg_read_opts {
    int group; /* which multiplex group / sequence set (default 0: the first,
                  which is the rhythm in every source we know) */
} ecg_read_opts;

/* DICOM Waveform (PS3.3 C.10.9): the chosen item of the Waveform Sequence
 * (5400,0100): channels, samples, sampling frequency, channel definitions
 * (source code -> lead name, sensitivity, units, correction factor,
 * baseline, bits stored), Waveform Data demultiplexed.  8/16/32-bit
 * SB/UB/SS/US/SL/UL samples; mu-law and A-law are ECG_EUNSUPPORTED.
 * The record copies the samples: f may be freed afterwards. */
int ecg_read_dicom(const dcm_file *f, const ecg_read_opts *opts, ecg_record **out, dcm_err *err);

/* WFDB record: hea_path names the header (".hea"); its signal files are
 * read from the header's folder (names with "/" or ".." are refused).
 * Single-segment records, signal formats 8, 16, 24, 32, 61, 80, 160 and
 * 212, one sample per frame, byte offsets; checksums verified. */
int ecg_read_wfdb(const char *hea_path, const ecg_read_opts *opts, ecg_record **out, dcm_err *err);

/* The same from memory: the header text and the signal files it names
 * (files[i].name as in the header; a NULL name stands for any file, which
 * fuzzers and tests use).  Borrowed; nothing is kept. */
typedef struct ecg_wfdb_file {
    const char    *name;
    const uint8_t *data;
    size_t         len;
} ecg_wfdb_file;
int ecg_read_wfdb_mem(const char *hea, size_t hea_len, const ecg_wfdb_file *files,
                      size_t n_files, const ecg_read_opts *opts, ecg_record **out, dcm_err *err);

/* HL7 aECG (AnnotatedECG, urn:hl7-org:v3): the chosen sequenceSet of the
 * series (series before derivedSeries, document order); a GLIST_TS/PQ time
 * sequence gives the rate, each SLIST_PQ lead its origin, scale and
 * integer digits.  Leads shorter than the longest are ECG_EUNSUPPORTED. */
int ecg_read_aecg(const uint8_t *xml, size_t len, const ecg_read_opts *opts, ecg_record **out, dcm_err *err);

/* SCP-ECG (EN 1064): the rhythm data of section 6 with the default
 * Huffman table, first or second differences; leads from section 3 (lead
 * codes as for DICOM), uV at the AVM.  Reference-beat subtraction,
 * bimodal compression and custom Huffman tables are ECG_EUNSUPPORTED
 * with the reason. */
int ecg_read_scp(const uint8_t *p, size_t len, const ecg_read_opts *opts, ecg_record **out, dcm_err *err);

/* Open any of the above by content (DICOM, aECG XML, SCP-ECG, a dxhub ECG
 * stream) or as a WFDB record: "x.hea", "x.dat" beside an "x.hea", or
 * the record name "x".  *source_out (may be NULL) says what the file was
 * even when reading fails. */
int ecg_open(const char *path, const ecg_read_opts *opts, ecg_record **out, int *source_out, dcm_err *err);

/* ---- lossless codec ----------------------------------------------------
 * Stream (version 1): magic "DXECG1\r\n", a header (rate, leads, samples,
 * per lead: name, unit, scale, baseline, bits, coding mode), the samples
 * coded time-interleaved, and a CRC-32 of everything before it.
 * Independent leads: first difference -> 16-tap sign-sign LMS -> 2-tap
 * cross-lead LMS on the residuals of the two previous leads; derived
 * leads (III, aVR, aVL, aVF when I and II are present and the samples
 * obey Einthoven/Goldberger) are coded as the difference from their exact
 * formula, with the formula's rounding fraction as context.  Residuals go
 * to an adaptive binary range coder (bit length against the length the
 * context expects, two mantissa bits and the sign modelled; the context
 * is the lead's recent residual energy).  Details: codecs/ecg_codec.c.
 * Every sample must satisfy |v| < ECG_CODEC_MAX_ABS (else ECG_ERANGE). */
int ecg_encode(const ecg_record *r, dcm_sink out, dcm_err *err);
/* The same into a malloc'd buffer the caller frees. */
int ecg_encode_buf(const ecg_record *r, uint8_t **out, size_t *out_len, dcm_err *err);
/* Decode a stream.  Every count is bounded before allocation and the
 * CRC-32 is checked before decoding; damaged input is ECG_ECORRUPT.
 * max_total caps leads x samples (0: ECG_MAX_TOTAL). */
int ecg_decode(const uint8_t *p, size_t len, size_t max_total, ecg_record **out, dcm_err *err);
/* 1 if p starts like an ecg_encode stream. */
int ecg_is_stream(const uint8_t *p, size_t len);

/* Write the summary `dxhub ecg` prints: text (one line per lead) or one
 * JSON object (rate, samples, duration, per lead name, unit, scale,
 * baseline, min/max counts and physical). */
int ecg_summary(const ecg_record *r, int json, dcm_sink out, dcm_err *err);

/* ---- ECG measurements (ecg_measure.c) -----------------------------------
 * What a resting-ECG measurement program reports, from any lead set:
 * QRS complexes, rhythm (rate, RR variability, pauses), the global
 * intervals PR, QRS, QT and QTc (Bazett, Fridericia), the frontal QRS
 * axis, and per lead the ST level and the signal quality.  Measurements,
 * never interpretation: what they suggest is the caller's business
 * (hub/triage.c).  Times are ms, amplitudes uV; a value that could not be
 * measured is NaN (isnan()).
 *
 * QRS detection: Pan & Tompkins, "A real-time QRS detection algorithm",
 * IEEE Trans Biomed Eng 32(3):230-236, 1985 — band-pass 5-15 Hz,
 * derivative, squaring, 150 ms moving-window integration, adaptive
 * signal/noise peak levels and thresholds, 200 ms refractory period,
 * T-wave discrimination by slope within 360 ms, search-back at 166 % of
 * the regular RR average — run once on all usable leads together (each
 * lead's squared slope normalised by its typical beat, then summed),
 * zero-phase, and offline (the whole record is known).
 * Intervals: a median beat (at most ECG_MEASURE_MEDIAN_BEATS beats of the
 * dominant morphology, aligned by cross-correlation, baseline removed by
 * linear interpolation between PR-segment knots) delineated globally, as
 * the CSE/AHA recommendations ask (earliest onset, latest offset over the
 * leads): QRS onset and offset where the spatial velocity of all leads
 * leaves / returns to its quiet level; T end and P onset by the trapezium
 * area method (Zhang et al., IEEE Trans Biomed Eng 53(12):2544-2552, 2006)
 * on the leads' root-mean-square curve.
 * Quality per lead: flat (peak-to-peak of the central 99 % below
 * ECG_FLAT_UV: electrode off / disconnected), noisy (RMS above 40 Hz
 * outside the QRS complexes over ECG_NOISE_UV: muscle, mains), wander
 * (baseline below 0.7 Hz moving more than ECG_WANDER_UV).  Only leads of
 * good quality count for the median beat; the detector drops noisy ones
 * when clean ones remain.
 */
#define ECG_MEASURE_MAX_SAMPLES  (1u << 22) /* per lead (3.2 h at 360 Hz); longer: DCM_ETOOBIG */
#define ECG_MEASURE_MAX_TOTAL    (1u << 24) /* leads x samples analysed; more: DCM_ETOOBIG */
#define ECG_MEASURE_MEDIAN_BEATS 32         /* beats at most in the median beat */
#define ECG_MEASURE_MIN_RATE     100.0      /* samples/s below which ECG_EUNSUPPORTED */
#define ECG_FLAT_UV              40.0
#define ECG_NOISE_UV             40.0
#define ECG_WANDER_UV            2000.0

enum ecg_lead_quality {
    ECG_LQ_OK     = 0,
    ECG_LQ_FLAT   = 1, /* no signal: a flat line (electrode off, lead disconnected) */
    ECG_LQ_NOISY  = 2, /* high-frequency noise (muscle tremor, mains) */
    ECG_LQ_WANDER = 3, /* the baseline wanders (breathing, electrode contact) */
    ECG_LQ_NOTECG = 4, /* not a voltage lead (pressure, respiration ...): not analysed */
};
const char *ecg_lead_quality_name(int q); /* "ok", "flat", "noisy", "wander", "not-ecg" */

typedef struct ecg_lead_measure {
    char   name[ECG_NAME_MAX]; /* as in the record */
    int    quality;            /* enum ecg_lead_quality */
    double range_uv;           /* peak to peak of the central 99 % of the samples */
    double noise_uv;           /* RMS above 40 Hz outside the QRS complexes */
    double wander_uv;          /* peak to peak of the baseline (< 0.7 Hz) */
    double qrs_uv;             /* median beat: QRS peak to peak */
    double st_j_uv;            /* median beat: level at J (QRS offset) from the PR baseline */
    double st_uv;              /* median beat: level at J+60 ms from the PR baseline */
} ecg_lead_measure;

typedef struct ecg_measurements {
    double    rate;             /* samples/s of the record */
    double    duration_ms;
    size_t    n_beats;
    uint32_t *beats;            /* sample index of each QRS complex (its peak), ascending;
                                   owned: ecg_measure_release frees it */
    size_t    detect_leads;     /* leads the detector used (0: no usable signal) */
    double    hr_bpm;           /* 60000 / mean RR (NaN with fewer than 2 beats) */
    double    rr_mean_ms, rr_min_ms, rr_max_ms;
    double    rr_sdnn_ms;       /* standard deviation of the RR intervals */
    double    rr_rmssd_ms;      /* root mean square of successive RR differences */
    double    longest_pause_ms; /* longest time without a QRS, the record's edges included */
    size_t    median_beats;     /* beats in the median beat (0: none made) */
    int       p_wave;           /* 1: a P wave precedes the dominant QRS */
    double    pr_ms, qrs_ms, qt_ms, qtc_bazett_ms, qtc_fridericia_ms;
    double    axis_deg;         /* frontal QRS axis, (-180, 180] (0 = lead I, +90 = aVF) */
    /* Delineation of the median beat, ms from its fiducial point (the QRS
     * peak the beats were aligned on): where to put calipers on any beat. */
    double    p_onset_ms, qrs_onset_ms, qrs_offset_ms, t_end_ms;
    size_t    n_leads;          /* = the record's */
    ecg_lead_measure leads[ECG_MAX_LEADS];
} ecg_measurements;

typedef struct ecg_measure_opts {
    int rhythm_only; /* QRS detection, rhythm and quality only: no median beat */
} ecg_measure_opts;

/* Measure r into *m (caller's struct; release with ecg_measure_release
 * even after a failure).  opts may be NULL.  A record without any usable
 * lead is not an error: every lead says why (flat, not-ecg) and nothing
 * else is measured.  Errors: ECG_EUNSUPPORTED (rate below
 * ECG_MEASURE_MIN_RATE or under one second), DCM_ETOOBIG (past the
 * ECG_MEASURE_MAX_* caps), DCM_ENOMEM. */
int  ecg_measure(const ecg_record *r, const ecg_measure_opts *opts, ecg_measurements *m, dcm_err *err);
void ecg_measure_release(ecg_measurements *m); /* NULL-safe; leaves *m zeroed */

#ifdef __cplusplus
}
#endif
#endif
