/* cdc_private.h — what the pixel codec files of codecs/ share.
 *
 * Every codec is a row of the transfer-syntax table (cdc_codec_find in
 * cdc_image.c): a decode function, an encode function, and how a frame's
 * first fragment is recognised when fragments must be scanned.  A codec
 * file includes exactly one third-party library (tests/lint checks). */
#ifndef DXHUB_CDC_PRIVATE_H
#define DXHUB_CDC_PRIVATE_H

#ifdef __cplusplus
/* C++ adapters: the system headers first (their C++ overloads must not be
 * declared inside extern "C"), then ours with C linkage. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
extern "C" {
#endif
#include "codecs/dcm_private.h"

/* The shape of the samples a codec reads or writes: decoded-frame layout
 * of codecs.h (interleaved, host order, `bytes` per sample container). */
typedef struct cdc_fmt {
    uint32_t rows, cols;
    uint16_t samples, bits_stored, bits_allocated;
    uint8_t  bytes;      /* container: 1, 2 or 4 */
    uint8_t  is_signed;
    uint8_t  planar;     /* as stored: native / RLE ignore it, others read it */
    uint8_t  lossy;      /* decoding a lossy syntax */
    cdc_photometric photometric; /* as stored (decode) or as to be written (encode) */
} cdc_fmt;

/* Decode n compressed bytes of one frame into out (exactly frame bytes of
 * the layout above).  Returns 0, CDC_NORMALISED (the samples are known to
 * fit Bits Stored already: the normalising pass is skipped), or a negative
 * code with err set. */
#define CDC_NORMALISED 1
typedef int (*cdc_decode_fn)(const cdc_fmt *fmt, const uint8_t *src, size_t n,
                             uint8_t *out, size_t out_len, dcm_err *err);
/* Encode one frame; appends the codestream to out. */
typedef int (*cdc_encode_fn)(const cdc_fmt *fmt, const uint8_t *frame, size_t len,
                             const cdc_encode_opts *o, int lossy_target, dcm_buf *out,
                             dcm_err *err);

enum cdc_marker { CDC_MARK_NONE, CDC_MARK_JPEG, CDC_MARK_J2K };

typedef struct cdc_codec {
    const char   *ts_uid;
    cdc_decode_fn decode;
    cdc_encode_fn encode;       /* NULL: decode only */
    uint8_t       marker;       /* enum cdc_marker: how a frame starts */
    uint8_t       normalise;    /* decoder output is raw Bits Stored patterns */
    uint8_t       lossy_target; /* encoder makes a lossy stream */
    const char   *method;       /* Lossy Image Compression Method (0028,2114) */
    uint8_t       isolate;      /* its library can crash on crafted data: decode in a
                                   child process (cdc_sandbox.c) */
} cdc_codec;

/* The codec row of a transfer syntax, NULL when none. */
const cdc_codec *cdc_codec_find(const char *uid);

/* Run fn in sb's child process (a child for this frame alone when sb is
 * NULL): same contract as fn, and CDC_ECODEC naming `what` and the signal
 * when the child crashes, hangs or runs out of memory. */
int cdc_sandbox_decode(cdc_sandbox *sb, cdc_decode_fn fn, const char *what, const cdc_fmt *fmt,
                       const uint8_t *src, size_t n, uint8_t *out, size_t out_len, dcm_err *err);

/* Codec entry points (one file each). */
int cdc_rle_decode(const cdc_fmt *, const uint8_t *, size_t, uint8_t *, size_t, dcm_err *);
int cdc_rle_encode(const cdc_fmt *, const uint8_t *, size_t, const cdc_encode_opts *, int, dcm_buf *, dcm_err *);
int cdc_deflate_decode(const cdc_fmt *, const uint8_t *, size_t, uint8_t *, size_t, dcm_err *);
int cdc_deflate_encode(const cdc_fmt *, const uint8_t *, size_t, const cdc_encode_opts *, int, dcm_buf *, dcm_err *);
int cdc_jpeg_decode(const cdc_fmt *, const uint8_t *, size_t, uint8_t *, size_t, dcm_err *);
int cdc_jpeg_encode(const cdc_fmt *, const uint8_t *, size_t, const cdc_encode_opts *, int, dcm_buf *, dcm_err *);
int cdc_jpegls_decode(const cdc_fmt *, const uint8_t *, size_t, uint8_t *, size_t, dcm_err *);
int cdc_jpegls_encode(const cdc_fmt *, const uint8_t *, size_t, const cdc_encode_opts *, int, dcm_buf *, dcm_err *);
int cdc_j2k_decode(const cdc_fmt *, const uint8_t *, size_t, uint8_t *, size_t, dcm_err *);
int cdc_j2k_encode(const cdc_fmt *, const uint8_t *, size_t, const cdc_encode_opts *, int, dcm_buf *, dcm_err *);
int cdc_htj2k_decode(const cdc_fmt *, const uint8_t *, size_t, uint8_t *, size_t, dcm_err *);
int cdc_htj2k_encode(const cdc_fmt *, const uint8_t *, size_t, const cdc_encode_opts *, int, dcm_buf *, dcm_err *);
int cdc_htj2k_rpcl_encode(const cdc_fmt *, const uint8_t *, size_t, const cdc_encode_opts *, int, dcm_buf *, dcm_err *);
/* OpenJPH alone, for `make bench`: decode, samples to out (16 bits each). */
int cdc_htj2k_raw_decode(const uint8_t *src, size_t n, uint16_t *out, uint64_t *sum);
/* DCMTK dcmjpeg (12-bit Extended, lossless Process 14 / SV1, any precision). */
int cdc_dcmtk_jpeg_decode(const cdc_fmt *, const uint8_t *, size_t, uint8_t *, size_t, dcm_err *);

int cdc_jpeg_write_raster(const uint8_t *px, uint32_t w, uint32_t h, uint32_t channels, int quality,
                          dcm_sink out, dcm_err *err);

/* JPEG SOF scan shared by the JPEG decoders: precision, size, components
 * and the SOF marker (0xC0..0xCF).  CDC_ECODEC when no SOF is found. */
typedef struct cdc_jpeg_sof {
    uint8_t  marker, precision, components;
    uint16_t rows, cols;
    uint8_t  jfif, adobe;  /* APP0 "JFIF" / APP14 "Adobe" seen before the SOF */
} cdc_jpeg_sof;
int cdc_jpeg_scan_sof(const uint8_t *p, size_t n, cdc_jpeg_sof *sof, dcm_err *err);

/* The shape check every decoder makes before its library allocates. */
int cdc_check_dims(const cdc_fmt *fmt, uint32_t rows, uint32_t cols, uint32_t comps,
                   const char *what, dcm_err *err);

/* Mask to Bits Stored / sign-extend from it, in place (decoded layout). */
void cdc_normalise(const cdc_fmt *fmt, uint8_t *buf, size_t n_samples);

/* Native pixel bytes <-> decoded layout (cdc_image.c). */
void cdc_native_unpack(const cdc_fmt *fmt, const uint8_t *src, uint64_t bit0, bool be, uint8_t *out);
void cdc_native_pack(const cdc_fmt *fmt, const uint8_t *frame, uint64_t bit0, bool be, uint8_t *dst);
/* Bytes of one native frame (Bits Allocated 1: rounded up; YBR_FULL_422: subsampled). */
size_t cdc_native_frame_bytes(const cdc_fmt *fmt);
void cdc_fmt_of_image(const cdc_image *img, cdc_fmt *fmt);
int  cdc_read_lut(const dcm_file *f, int32_t parent, uint32_t desc_tag, uint32_t data_tag,
                  uint32_t seg_tag, cdc_lut *lut, dcm_err *err);

static inline size_t cdc_fmt_frame_bytes(const cdc_fmt *f)
{
    return (size_t)f->rows * f->cols * f->samples * f->bytes;
}

#ifdef __cplusplus
}
#endif
#endif
