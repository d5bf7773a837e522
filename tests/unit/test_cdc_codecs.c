/* test_cdc_codecs.c — the pixel path through codecs.h only: data sets built
 * byte by byte, every encoder round-tripped through its decoder, fragment
 * to frame mapping, size limits, Bits Stored normalisation, the display
 * pipeline and the PNG writer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <zlib.h>
#include "codecs/codecs.h"

#define TS_RLE     "1.2.840.10008.1.2.5"
#define TS_JPEG    "1.2.840.10008.1.2.4.50"
#define TS_JLS     "1.2.840.10008.1.2.4.80"
#define TS_JLS_NR  "1.2.840.10008.1.2.4.81"
#define TS_J2K     "1.2.840.10008.1.2.4.90"
#define TS_HTJ2K   "1.2.840.10008.1.2.4.201"
#define TS_HTJ2K_R "1.2.840.10008.1.2.4.202"
#define TS_DFRAME  "1.2.840.10008.1.2.8.1"

/* --- a byte builder for explicit VR little endian data sets ---------- */
typedef struct bb {
    uint8_t *p;
    size_t   n, cap;
} bb;

static void put(bb *b, const void *p, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 1024;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}
static void u16(bb *b, uint16_t v) { uint8_t x[2] = {v & 0xFF, v >> 8}; put(b, x, 2); }
static void u32(bb *b, uint32_t v) { u16(b, v & 0xFFFF); u16(b, v >> 16); }
static void elem(bb *b, uint16_t g, uint16_t e, const char *vr, const void *val, uint32_t n)
{
    u16(b, g);
    u16(b, e);
    put(b, vr, 2);
    if (!strcmp(vr, "OB") || !strcmp(vr, "OW") || !strcmp(vr, "SQ") || !strcmp(vr, "OV")) {
        u16(b, 0);
        u32(b, n);
    } else {
        u16(b, (uint16_t)n);
    }
    if (val && n != 0xFFFFFFFF)
        put(b, val, n);
}
static void str(bb *b, uint16_t g, uint16_t e, const char *vr, const char *s)
{
    size_t n = strlen(s);
    char buf[80];
    memcpy(buf, s, n);
    if (n & 1)
        buf[n++] = !strcmp(vr, "UI") ? '\0' : ' ';
    elem(b, g, e, vr, buf, (uint32_t)n);
}
static void us(bb *b, uint16_t g, uint16_t e, uint16_t v) { uint8_t x[2] = {v & 0xFF, v >> 8}; elem(b, g, e, "US", x, 2); }

typedef struct shape {
    uint16_t rows, cols, samples, bits, stored;
    int      is_signed, planar, frames;
    const char *pi;
} shape;

static void header(bb *b, const char *ts, const shape *s)
{
    uint8_t pre[128] = {0};
    put(b, pre, 128);
    put(b, "DICM", 4);
    bb m = {0};
    str(&m, 0x0002, 0x0002, "UI", "1.2.840.10008.5.1.4.1.1.7");
    str(&m, 0x0002, 0x0003, "UI", "2.25.7");
    str(&m, 0x0002, 0x0010, "UI", ts);
    uint8_t gl[4] = {(uint8_t)m.n, (uint8_t)(m.n >> 8), 0, 0};
    elem(b, 0x0002, 0x0000, "UL", gl, 4);
    put(b, m.p, m.n);
    free(m.p);
    str(b, 0x0008, 0x0016, "UI", "1.2.840.10008.5.1.4.1.1.7");
    str(b, 0x0008, 0x0018, "UI", "2.25.7");
    us(b, 0x0028, 0x0002, s->samples);
    str(b, 0x0028, 0x0004, "CS", s->pi);
    if (s->samples > 1)
        us(b, 0x0028, 0x0006, (uint16_t)s->planar);
    if (s->frames > 1) {
        char nf[16];
        snprintf(nf, sizeof nf, "%d", s->frames);
        str(b, 0x0028, 0x0008, "IS", nf);
    }
    us(b, 0x0028, 0x0010, s->rows);
    us(b, 0x0028, 0x0011, s->cols);
    us(b, 0x0028, 0x0100, s->bits);
    us(b, 0x0028, 0x0101, s->stored);
    us(b, 0x0028, 0x0102, (uint16_t)(s->stored - 1));
    us(b, 0x0028, 0x0103, (uint16_t)s->is_signed);
}

static void native(bb *b, const shape *s, const void *px, size_t n)
{
    header(b, "1.2.840.10008.1.2.1", s);
    elem(b, 0x7FE0, 0x0010, s->bits > 8 ? "OW" : "OB", px, (uint32_t)n);
}

/* Encapsulated: a BOT (offsets given, or empty when bot == NULL), fragments. */
static void encaps(bb *b, const char *ts, const shape *s, const uint32_t *bot, int nbot,
                   uint8_t *const *frag, const size_t *frag_len, int nfrag)
{
    header(b, ts, s);
    elem(b, 0x7FE0, 0x0010, "OB", NULL, 0xFFFFFFFF);
    u16(b, 0xFFFE); u16(b, 0xE000); u32(b, (uint32_t)(4 * nbot));
    for (int i = 0; i < nbot; i++)
        u32(b, bot[i]);
    for (int i = 0; i < nfrag; i++) {
        size_t n = frag_len[i] + (frag_len[i] & 1);
        u16(b, 0xFFFE); u16(b, 0xE000); u32(b, (uint32_t)n);
        put(b, frag[i], frag_len[i]);
        if (frag_len[i] & 1)
            put(b, "", 1);
    }
    u16(b, 0xFFFE); u16(b, 0xE0DD); u32(b, 0);
}

static dcm_file *parse(bb *b)
{
    dcm_file *f = NULL;
    dcm_err err = {0};
    if (dcm_parse(b->p, b->n, NULL, &f, &err) < 0)
        fail_msg("parse: %s", err.msg);
    return f;
}

/* A test image: smooth gradients plus noise, within Bits Stored, signed
 * values spanning negative and positive. */
static void *make_pixels(const shape *s, size_t *len)
{
    size_t bytes = s->bits <= 8 ? 1 : 2, n = (size_t)s->rows * s->cols * s->samples * s->frames;
    uint8_t *p = malloc(n * bytes);
    uint32_t seed = 12345, range = 1u << s->stored;
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        uint32_t v = (uint32_t)((i * 7) % range + (seed >> 16) % 5) % range;
        if (s->is_signed) { /* a two's complement pattern of stored bits, sign-extended */
            int32_t sv = (int32_t)v - (int32_t)(range / 2);
            v = (uint32_t)sv;
        }
        if (bytes == 1)
            p[i] = (uint8_t)v;
        else
            ((uint16_t *)p)[i] = (uint16_t)v;
    }
    *len = n * bytes;
    return p;
}

/* Encode every frame of a native image in ts, rebuild an encapsulated data
 * set from the fragments, decode it, compare with the original decode. */
static void round_trip(const char *ts, const shape *s, int lossy_tolerance)
{
    size_t len;
    void *px = make_pixels(s, &len);
    bb src = {0};
    native(&src, s, px, (uint32_t)len);
    dcm_file *f = parse(&src);
    cdc_image img;
    dcm_err err = {0};
    if (cdc_image_init(&img, f, &err) < 0)
        fail_msg("init: %s", err.msg);
    size_t fs = cdc_frame_size(&img);
    uint8_t *frames = malloc(fs * s->frames), **frag = calloc(s->frames, sizeof *frag);
    size_t *flen = calloc(s->frames, sizeof *flen);
    for (int i = 0; i < s->frames; i++) {
        if (cdc_decode_frame(&img, (uint32_t)i, frames + fs * i, fs, &err) < 0)
            fail_msg("native decode: %s", err.msg);
        int rc = cdc_encode_frame(&img, ts, NULL, frames + fs * i, fs, &frag[i], &flen[i], &err);
        if (rc < 0)
            fail_msg("%s encode (%ux%u x%u, %u/%u bits%s): %s", ts, s->cols, s->rows, s->samples, s->stored,
                     s->bits, s->is_signed ? " signed" : "", err.msg);
    }
    cdc_photometric pi;
    uint16_t ba;
    assert_int_equal(cdc_encode_plan(&img, ts, &pi, &ba, &err), 0);
    shape s2 = *s;
    s2.pi = cdc_photometric_name(pi);
    s2.planar = 0;
    bb enc = {0};
    encaps(&enc, ts, &s2, NULL, 0, frag, flen, s->frames);
    dcm_file *g = parse(&enc);
    cdc_image img2;
    if (cdc_image_init(&img2, g, &err) < 0)
        fail_msg("init encapsulated: %s", err.msg);
    assert_int_equal(cdc_frame_size(&img2), fs);
    uint8_t *out = malloc(fs);
    for (int i = 0; i < s->frames; i++) {
        if (cdc_decode_frame(&img2, (uint32_t)i, out, fs, &err) < 0)
            fail_msg("%s decode: %s", ts, err.msg);
        if (!lossy_tolerance) {
            if (memcmp(out, frames + fs * i, fs) != 0)
                fail_msg("%s round trip differs (%ux%u x%u, %u bits%s)", ts, s->cols, s->rows, s->samples,
                         s->stored, s->is_signed ? " signed" : "");
        } else {
            size_t ns = fs / img.out_bytes;
            for (size_t k = 0; k < ns; k++) {
                int a = img.out_bytes == 1 ? out[k] : ((uint16_t *)out)[k];
                int b = img.out_bytes == 1 ? frames[fs * i + k] : ((uint16_t *)(frames + fs * i))[k];
                if (abs(a - b) > lossy_tolerance)
                    fail_msg("%s sample %zu: %d vs %d", ts, k, a, b);
            }
        }
    }
    free(out);
    cdc_image_release(&img2);
    dcm_free(&g);
    for (int i = 0; i < s->frames; i++)
        free(frag[i]);
    free(frag);
    free(flen);
    free(frames);
    free(enc.p);
    cdc_image_release(&img);
    dcm_free(&f);
    free(src.p);
    free(px);
}

static const shape shapes[] = {
    {64, 48, 1, 8, 8, 0, 0, 1, "MONOCHROME2"},
    {33, 17, 1, 16, 12, 0, 0, 2, "MONOCHROME2"},   /* odd sizes, two frames */
    {40, 40, 1, 16, 16, 1, 0, 1, "MONOCHROME2"},   /* signed 16 */
    {40, 40, 1, 16, 12, 1, 0, 1, "MONOCHROME1"},   /* signed 12 in 16 */
    {30, 20, 3, 8, 8, 0, 0, 1, "RGB"},
    {30, 20, 3, 8, 8, 0, 1, 1, "RGB"},             /* planar source */
};
#define N_SHAPES (sizeof shapes / sizeof shapes[0])

static void test_rle_round_trip_is_exact(void **st)
{
    (void)st;
    for (size_t i = 0; i < N_SHAPES; i++)
        round_trip(TS_RLE, &shapes[i], 0);
}

static void test_jpegls_round_trip_is_exact(void **st)
{
    (void)st;
    for (size_t i = 0; i < N_SHAPES; i++)
        round_trip(TS_JLS, &shapes[i], 0);
}

static void test_jpegls_near_lossless_stays_within_near(void **st)
{
    (void)st;
    round_trip(TS_JLS_NR, &shapes[0], 2);
    round_trip(TS_JLS_NR, &shapes[1], 2);
    round_trip(TS_JLS_NR, &shapes[4], 2);
}

static void test_j2k_round_trip_is_exact(void **st)
{
    (void)st;
    for (size_t i = 0; i < N_SHAPES; i++)
        round_trip(TS_J2K, &shapes[i], 0);
}

static void test_htj2k_round_trip_is_exact(void **st)
{
    (void)st;
    for (size_t i = 0; i < N_SHAPES; i++) {
        round_trip(TS_HTJ2K, &shapes[i], 0);
        round_trip(TS_HTJ2K_R, &shapes[i], 0);
    }
}

static void test_deflated_frames_round_trip_is_exact(void **st)
{
    (void)st;
    for (size_t i = 0; i < N_SHAPES; i++)
        round_trip(TS_DFRAME, &shapes[i], 0);
}

static void test_jpeg_baseline_is_close(void **st)
{
    (void)st;
    shape flat = {32, 32, 1, 8, 8, 0, 0, 1, "MONOCHROME2"};
    /* a smooth image compresses within a few levels at quality 90 */
    size_t len;
    void *px = make_pixels(&flat, &len);
    free(px);
    round_trip(TS_JPEG, &shapes[0], 40);
}

static void test_encoders_refuse_what_they_cannot_hold(void **st)
{
    (void)st;
    shape s = {8, 8, 1, 16, 16, 0, 0, 1, "MONOCHROME2"};
    size_t len;
    void *px = make_pixels(&s, &len);
    bb b = {0};
    native(&b, &s, px, len);
    dcm_file *f = parse(&b);
    cdc_image img;
    dcm_err err = {0};
    assert_int_equal(cdc_image_init(&img, f, &err), 0);
    cdc_photometric pi;
    uint16_t ba;
    assert_int_equal(cdc_encode_plan(&img, TS_JPEG, &pi, &ba, &err), DCM_ETS);
    assert_non_null(strstr(err.msg, "8-bit"));
    assert_int_equal(cdc_encode_plan(&img, "1.2.840.10008.1.2.4.51", &pi, &ba, &err), DCM_ETS);
    assert_int_equal(cdc_encode_plan(&img, "1.2.3", &pi, &ba, &err), DCM_ETS);
    cdc_image_release(&img);
    dcm_free(&f);
    free(b.p);
    free(px);
}

/* --- limits ---------------------------------------------------------- */

static void test_frame_over_the_limit_is_refused_before_allocation(void **st)
{
    (void)st;
    shape s = {65535, 65535, 3, 16, 16, 0, 0, 1000, "RGB"};
    bb b = {0};
    uint8_t f0[4] = {0xFF, 0xD8, 0xFF, 0xD9};
    uint8_t *frag[1] = {f0};
    size_t fl[1] = {4};
    encaps(&b, TS_JLS, &s, NULL, 0, frag, fl, 1);
    dcm_file *f = parse(&b);
    cdc_image img;
    dcm_err err = {0};
    assert_int_equal(cdc_image_init(&img, f, &err), DCM_ETOOBIG);
    assert_non_null(strstr(err.msg, "limit"));
    dcm_free(&f);
    free(b.p);
}

static void test_more_frames_than_fragments_is_refused(void **st)
{
    (void)st;
    shape s = {4096, 4096, 1, 8, 8, 0, 0, 1000, "MONOCHROME2"};
    bb b = {0};
    uint8_t f0[4] = {0xFF, 0xD8, 0xFF, 0xD9};
    uint8_t *frag[1] = {f0};
    size_t fl[1] = {4};
    encaps(&b, TS_JLS, &s, NULL, 0, frag, fl, 1);
    dcm_file *f = parse(&b);
    cdc_image img;
    dcm_err err = {0};
    assert_int_equal(cdc_image_init(&img, f, &err), CDC_EFRAME);
    dcm_free(&f);
    free(b.p);
}

static void test_codestream_larger_than_header_is_refused(void **st)
{
    (void)st;
    /* A real 64x64 JPEG-LS frame under a data set that says 16x16. */
    shape big = {64, 64, 1, 8, 8, 0, 0, 1, "MONOCHROME2"};
    size_t len;
    void *px = make_pixels(&big, &len);
    bb b = {0};
    native(&b, &big, px, len);
    dcm_file *f = parse(&b);
    cdc_image img;
    dcm_err err = {0};
    assert_int_equal(cdc_image_init(&img, f, &err), 0);
    uint8_t *frame = malloc(cdc_frame_size(&img)), *cs;
    size_t csn;
    assert_int_equal(cdc_decode_frame(&img, 0, frame, cdc_frame_size(&img), &err), 0);
    /* (RLE carries no size of its own: its output is the header's, capped.) */
    const char *tss[] = {TS_JLS, TS_J2K, TS_HTJ2K, TS_JPEG};
    for (size_t t = 0; t < sizeof tss / sizeof tss[0]; t++) {
        assert_int_equal(cdc_encode_frame(&img, tss[t], NULL, frame, cdc_frame_size(&img), &cs, &csn, &err), 0);
        shape small = big;
        small.rows = small.cols = 16;
        bb e = {0};
        encaps(&e, tss[t], &small, NULL, 0, &cs, &csn, 1);
        dcm_file *g = parse(&e);
        cdc_image im2;
        assert_int_equal(cdc_image_init(&im2, g, &err), 0);
        uint8_t out[16 * 16];
        int rc = cdc_decode_frame(&im2, 0, out, sizeof out, &err);
        assert_int_equal(rc, CDC_ECODEC);
        cdc_image_release(&im2);
        dcm_free(&g);
        free(e.p);
        free(cs);
    }
    free(frame);
    cdc_image_release(&img);
    dcm_free(&f);
    free(b.p);
    free(px);
}

static void test_short_native_pixel_data_is_refused(void **st)
{
    (void)st;
    shape s = {16, 16, 1, 16, 16, 0, 0, 3, "MONOCHROME2"};
    uint8_t px[16 * 16 * 2 * 2] = {0}; /* two frames of three */
    bb b = {0};
    native(&b, &s, px, sizeof px);
    dcm_file *f = parse(&b);
    cdc_image img;
    dcm_err err = {0};
    assert_int_equal(cdc_image_init(&img, f, &err), DCM_ETRUNC);
    dcm_free(&f);
    free(b.p);
}

/* --- fragments and frames --------------------------------------------- */

/* Three frames of RLE (one fragment each) with a BOT; then the same data
 * with frame 0 split over two fragments: the BOT maps them. */
static void test_offset_table_maps_fragments_to_frames(void **st)
{
    (void)st;
    shape s = {8, 8, 1, 8, 8, 0, 0, 3, "MONOCHROME2"};
    size_t len;
    uint8_t *px = make_pixels(&s, &len);
    bb b = {0};
    native(&b, &s, px, len);
    dcm_file *f = parse(&b);
    cdc_image img;
    dcm_err err = {0};
    assert_int_equal(cdc_image_init(&img, f, &err), 0);
    uint8_t *frag[4];
    size_t fl[4];
    for (int i = 0; i < 3; i++)
        assert_int_equal(cdc_encode_frame(&img, TS_JLS, NULL, px + 64 * i, 64, &frag[i], &fl[i], &err), 0);
    /* split frame 0 into two fragments (even first part) */
    size_t cut = (fl[0] / 2) & ~(size_t)1;
    uint8_t *parts[4] = {frag[0], frag[0] + cut, frag[1], frag[2]};
    size_t plen[4] = {cut, fl[0] - cut, fl[1], fl[2]};
    uint32_t bot[3];
    bot[0] = 0;
    bot[1] = (uint32_t)(8 + cut + 8 + (plen[1] + (plen[1] & 1)));
    bot[2] = (uint32_t)(bot[1] + 8 + (plen[2] + (plen[2] & 1)));
    bb e = {0};
    encaps(&e, TS_JLS, &s, bot, 3, parts, plen, 4);
    dcm_file *g = parse(&e);
    cdc_image im2;
    assert_int_equal(cdc_image_init(&im2, g, &err), 0);
    uint8_t out[64];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(cdc_decode_frame(&im2, (uint32_t)i, out, 64, &err), 0);
        assert_memory_equal(out, px + 64 * i, 64);
    }
    assert_int_equal(cdc_decode_frame(&im2, 3, out, 64, &err), CDC_EFRAME);
    cdc_image_release(&im2);
    dcm_free(&g);
    /* No BOT: the JPEG-LS start-of-image markers find the frames. */
    bb e2 = {0};
    encaps(&e2, TS_JLS, &s, NULL, 0, parts, plen, 4);
    g = parse(&e2);
    assert_int_equal(cdc_image_init(&im2, g, &err), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(cdc_decode_frame(&im2, (uint32_t)i, out, 64, &err), 0);
        assert_memory_equal(out, px + 64 * i, 64);
    }
    cdc_image_release(&im2);
    dcm_free(&g);
    for (int i = 0; i < 3; i++)
        free(frag[i]);
    free(e.p);
    free(e2.p);
    cdc_image_release(&img);
    dcm_free(&f);
    free(b.p);
    free(px);
}

static void test_frame_decodes_without_touching_other_frames(void **st)
{
    (void)st;
    shape s = {8, 8, 1, 8, 8, 0, 0, 2, "MONOCHROME2"};
    size_t len;
    uint8_t *px = make_pixels(&s, &len);
    bb b = {0};
    native(&b, &s, px, len);
    dcm_file *f = parse(&b);
    cdc_image img;
    dcm_err err = {0};
    assert_int_equal(cdc_image_init(&img, f, &err), 0);
    uint8_t *frag[2];
    size_t fl[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(cdc_encode_frame(&img, TS_RLE, NULL, px + 64 * i, 64, &frag[i], &fl[i], &err), 0);
    memset(frag[0] + 64, 0x7F, fl[0] - 64); /* frame 0's segment: literal runs past the end */
    bb e = {0};
    encaps(&e, TS_RLE, &s, NULL, 0, frag, fl, 2);
    dcm_file *g = parse(&e);
    cdc_image im2;
    assert_int_equal(cdc_image_init(&im2, g, &err), 0);
    uint8_t out[64];
    assert_int_equal(cdc_decode_frame(&im2, 1, out, 64, &err), 0);
    assert_memory_equal(out, px + 64, 64);
    assert_int_equal(cdc_decode_frame(&im2, 0, out, 64, &err), CDC_ECODEC);
    cdc_image_release(&im2);
    dcm_free(&g);
    free(frag[0]);
    free(frag[1]);
    free(e.p);
    cdc_image_release(&img);
    dcm_free(&f);
    free(b.p);
    free(px);
}

/* --- native decoding -------------------------------------------------- */

static void test_bits_stored_masks_and_sign_extends(void **st)
{
    (void)st;
    shape s = {1, 4, 1, 16, 12, 1, 0, 1, "MONOCHROME2"};
    /* 12-bit two's complement with junk in the top four bits */
    uint16_t px[4] = {0xF800, 0x07FF, 0xAFFF, 0x5001};
    bb b = {0};
    native(&b, &s, px, sizeof px);
    dcm_file *f = parse(&b);
    cdc_image img;
    dcm_err err = {0};
    assert_int_equal(cdc_image_init(&img, f, &err), 0);
    int16_t out[4];
    assert_int_equal(cdc_decode_frame(&img, 0, out, sizeof out, &err), 0);
    assert_int_equal(out[0], -2048);
    assert_int_equal(out[1], 2047);
    assert_int_equal(out[2], -1);
    assert_int_equal(out[3], 1);
    cdc_image_release(&img);
    dcm_free(&f);
    free(b.p);
    s.is_signed = 0;
    bb c = {0};
    native(&c, &s, px, sizeof px);
    f = parse(&c);
    assert_int_equal(cdc_image_init(&img, f, &err), 0);
    uint16_t uo[4];
    assert_int_equal(cdc_decode_frame(&img, 0, uo, sizeof uo, &err), 0);
    assert_int_equal(uo[0], 0x800);
    assert_int_equal(uo[2], 0xFFF);
    cdc_image_release(&img);
    dcm_free(&f);
    free(c.p);
}

static void test_planar_and_ybr422_come_out_interleaved(void **st)
{
    (void)st;
    shape s = {1, 2, 3, 8, 8, 0, 1, 1, "RGB"};
    uint8_t planar[6] = {1, 2, 10, 20, 100, 200};
    bb b = {0};
    native(&b, &s, planar, 6);
    dcm_file *f = parse(&b);
    cdc_image img;
    dcm_err err = {0};
    assert_int_equal(cdc_image_init(&img, f, &err), 0);
    uint8_t out[6];
    assert_int_equal(cdc_decode_frame(&img, 0, out, 6, &err), 0);
    uint8_t want[6] = {1, 10, 100, 2, 20, 200};
    assert_memory_equal(out, want, 6);
    cdc_image_release(&img);
    dcm_free(&f);
    free(b.p);
    shape y = {1, 2, 3, 8, 8, 0, 0, 1, "YBR_FULL_422"};
    uint8_t ybr[4] = {50, 60, 128, 140}; /* Y1 Y2 Cb Cr */
    bb c = {0};
    native(&c, &y, ybr, 4);
    f = parse(&c);
    assert_int_equal(cdc_image_init(&img, f, &err), 0);
    assert_int_equal(img.out_photometric, CDC_PI_YBR_FULL);
    assert_int_equal(cdc_decode_frame(&img, 0, out, 6, &err), 0);
    uint8_t want2[6] = {50, 128, 140, 60, 128, 140};
    assert_memory_equal(out, want2, 6);
    cdc_image_release(&img);
    dcm_free(&f);
    free(c.p);
}

/* --- display ------------------------------------------------------------ */

static void test_render_applies_rescale_window_and_monochrome1(void **st)
{
    (void)st;
    shape s = {1, 3, 1, 16, 16, 1, 0, 1, "MONOCHROME1"};
    int16_t px[3] = {0, 1024, 2048}; /* with intercept -1024: -1024, 0, 1024 HU */
    bb b = {0};
    header(&b, "1.2.840.10008.1.2.1", &s);
    str(&b, 0x0028, 0x1050, "DS", "0");
    str(&b, 0x0028, 0x1051, "DS", "2000");
    str(&b, 0x0028, 0x1052, "DS", "-1024");
    str(&b, 0x0028, 0x1053, "DS", "1");
    elem(&b, 0x7FE0, 0x0010, "OW", px, sizeof px);
    dcm_file *f = parse(&b);
    cdc_image img;
    dcm_err err = {0};
    assert_int_equal(cdc_image_init(&img, f, &err), 0);
    cdc_raster r;
    assert_int_equal(cdc_render_8bit(&img, NULL, &r, &err), 0);
    assert_int_equal(r.channels, 1);
    /* MONOCHROME1: -1024 (below the window) is white, +1024 black, 0 mid-grey */
    assert_int_equal(r.pixels[0], 255);
    assert_int_equal(r.pixels[2], 0);
    assert_true(r.pixels[1] >= 126 && r.pixels[1] <= 129);
    cdc_raster_release(&r);
    cdc_render_opts o = {.has_window = 1, .center = -1024, .width = 1};
    assert_int_equal(cdc_render_8bit(&img, &o, &r, &err), 0);
    assert_int_equal(r.pixels[2], 0);
    cdc_raster_release(&r);
    o.frame = 1;
    assert_int_equal(cdc_render_8bit(&img, &o, &r, &err), CDC_EFRAME);
    cdc_image_release(&img);
    dcm_free(&f);
    free(b.p);
}

static void test_auto_window_ignores_five_percent_each_end(void **st)
{
    (void)st;
    double v[100];
    for (int i = 0; i < 100; i++)
        v[i] = i < 3 ? -3000 : i > 96 ? 5000 : i;
    double c, w;
    assert_int_equal(cdc_auto_window(v, 100, &c, &w), 0);
    assert_true(c > 0 && c < 100 && w < 200);
}

static int to_buf(void *ctx, const void *p, size_t n)
{
    bb *b = ctx;
    put(b, p, n);
    return 0;
}

static uint32_t rd32be(const uint8_t *p) { return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }

static void test_png_is_well_formed_and_lossless(void **st)
{
    (void)st;
    uint8_t px[3 * 5 * 4];
    for (size_t i = 0; i < sizeof px; i++)
        px[i] = (uint8_t)(i * 37);
    cdc_raster r = {5, 4, 3, px};
    bb out = {0};
    dcm_err err = {0};
    assert_int_equal(cdc_write_png(&r, (dcm_sink){to_buf, &out}, &err), 0);
    assert_memory_equal(out.p, "\x89PNG\r\n\x1a\n", 8);
    /* walk the chunks, check every CRC, collect IDAT */
    bb idat = {0};
    size_t i = 8;
    int seen_end = 0;
    while (i + 12 <= out.n) {
        uint32_t len = rd32be(out.p + i);
        const uint8_t *type = out.p + i + 4;
        uLong crc = crc32(0, type, 4 + len);
        assert_int_equal(crc, rd32be(out.p + i + 8 + len));
        if (!memcmp(type, "IHDR", 4)) {
            assert_int_equal(rd32be(type + 4), 5);
            assert_int_equal(rd32be(type + 8), 4);
        }
        if (!memcmp(type, "IDAT", 4))
            put(&idat, type + 4, len);
        if (!memcmp(type, "IEND", 4))
            seen_end = 1;
        i += 12 + len;
    }
    assert_true(seen_end && i == out.n);
    uint8_t raw[4 * (1 + 15)];
    uLongf rl = sizeof raw;
    assert_int_equal(uncompress(raw, &rl, idat.p, idat.n), Z_OK);
    assert_int_equal(rl, sizeof raw);
    for (int y = 0; y < 4; y++) {
        assert_int_equal(raw[y * 16], 0);
        assert_memory_equal(raw + y * 16 + 1, px + y * 15, 15);
    }
    free(out.p);
    free(idat.p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rle_round_trip_is_exact),
        cmocka_unit_test(test_jpegls_round_trip_is_exact),
        cmocka_unit_test(test_jpegls_near_lossless_stays_within_near),
        cmocka_unit_test(test_j2k_round_trip_is_exact),
        cmocka_unit_test(test_htj2k_round_trip_is_exact),
        cmocka_unit_test(test_deflated_frames_round_trip_is_exact),
        cmocka_unit_test(test_jpeg_baseline_is_close),
        cmocka_unit_test(test_encoders_refuse_what_they_cannot_hold),
        cmocka_unit_test(test_frame_over_the_limit_is_refused_before_allocation),
        cmocka_unit_test(test_more_frames_than_fragments_is_refused),
        cmocka_unit_test(test_codestream_larger_than_header_is_refused),
        cmocka_unit_test(test_short_native_pixel_data_is_refused),
        cmocka_unit_test(test_offset_table_maps_fragments_to_frames),
        cmocka_unit_test(test_frame_decodes_without_touching_other_frames),
        cmocka_unit_test(test_bits_stored_masks_and_sign_extends),
        cmocka_unit_test(test_planar_and_ybr422_come_out_interleaved),
        cmocka_unit_test(test_render_applies_rescale_window_and_monochrome1),
        cmocka_unit_test(test_auto_window_ignores_five_percent_each_end),
        cmocka_unit_test(test_png_is_well_formed_and_lossless),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
