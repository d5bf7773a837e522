/* cdc_j2k.c — JPEG 2000 (ISO 15444-1) lossless and lossy through
 * OpenJPEG.  A raw codestream is what DICOM carries; a JP2 file in the
 * fragments (seen in the wild) is accepted.  The codestream's own inverse
 * component transform turns YBR_RCT / YBR_ICT into RGB. */
#include <math.h>
#include <openjpeg.h>
#include "codecs/cdc_private.h"

typedef struct memstream {
    const uint8_t *p;
    size_t         n, pos;
    dcm_buf       *out; /* encoding */
} memstream;

static OPJ_SIZE_T ms_read(void *buf, OPJ_SIZE_T n, void *user)
{
    memstream *m = user;
    if (m->pos >= m->n)
        return (OPJ_SIZE_T)-1;
    size_t k = m->n - m->pos < n ? m->n - m->pos : n;
    memcpy(buf, m->p + m->pos, k);
    m->pos += k;
    return k;
}

static OPJ_OFF_T ms_skip(OPJ_OFF_T n, void *user)
{
    memstream *m = user;
    if (m->out) { /* writer: skipping forward writes zeros */
        for (OPJ_OFF_T i = 0; i < n; i++)
            if (dcm_buf_put(m->out, "", 1) < 0)
                return -1;
        return n;
    }
    if (n < 0 || (size_t)n > m->n - m->pos)
        return -1;
    m->pos += (size_t)n;
    return n;
}

static OPJ_BOOL ms_seek(OPJ_OFF_T pos, void *user)
{
    memstream *m = user;
    size_t lim = m->out ? m->out->n : m->n;
    if (pos < 0 || (size_t)pos > lim)
        return OPJ_FALSE;
    if (m->out)
        m->out->n = (size_t)pos; /* the encoder seeks back to patch lengths */
    else
        m->pos = (size_t)pos;
    return OPJ_TRUE;
}

static OPJ_SIZE_T ms_write(void *buf, OPJ_SIZE_T n, void *user)
{
    memstream *m = user;
    return dcm_buf_put(m->out, buf, n) < 0 ? (OPJ_SIZE_T)-1 : n;
}

typedef struct msgctx {
    char first[160];
} msgctx;

static void on_error(const char *msg, void *client)
{
    msgctx *c = client;
    if (!c->first[0]) {
        snprintf(c->first, sizeof c->first, "%s", msg);
        size_t l = strlen(c->first);
        while (l && (c->first[l - 1] == '\n' || c->first[l - 1] == ' '))
            c->first[--l] = '\0';
    }
}

static void on_quiet(const char *msg, void *client)
{
    (void)msg;
    (void)client;
}

static opj_stream_t *make_stream(memstream *m, int input)
{
    opj_stream_t *s = opj_stream_create(1 << 16, input ? OPJ_TRUE : OPJ_FALSE);
    if (!s)
        return NULL;
    opj_stream_set_user_data(s, m, NULL);
    if (input) {
        opj_stream_set_read_function(s, ms_read);
        opj_stream_set_user_data_length(s, m->n);
    } else {
        opj_stream_set_write_function(s, ms_write);
    }
    opj_stream_set_skip_function(s, ms_skip);
    opj_stream_set_seek_function(s, ms_seek);
    return s;
}

int cdc_j2k_decode(const cdc_fmt *fmt, const uint8_t *src, size_t n, uint8_t *out, size_t out_len, dcm_err *err)
{
    bool jp2 = n >= 12 && !memcmp(src, "\0\0\0\x0CjP  ", 8);
    memstream m = {.p = src, .n = n};
    msgctx mc = {{0}};
    opj_codec_t *codec = opj_create_decompress(jp2 ? OPJ_CODEC_JP2 : OPJ_CODEC_J2K);
    opj_stream_t *s = make_stream(&m, 1);
    opj_image_t *im = NULL;
    int rc = 0;
    if (!codec || !s) {
        rc = dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
        goto out;
    }
    opj_set_error_handler(codec, on_error, &mc);
    opj_set_warning_handler(codec, on_quiet, NULL);
    opj_set_info_handler(codec, on_quiet, NULL);
    opj_dparameters_t p;
    opj_set_default_decoder_parameters(&p);
    if (!opj_setup_decoder(codec, &p) || !opj_read_header(s, codec, &im)) {
        rc = dcm_fail(err, CDC_ECODEC, 0, "JPEG 2000 header: %s", mc.first[0] ? mc.first : "unreadable");
        goto out;
    }
    /* Shape first: the codestream must describe what the data set does. */
    rc = cdc_check_dims(fmt, im->y1 - im->y0, im->x1 - im->x0, im->numcomps, "JPEG 2000", err);
    if (rc < 0)
        goto out;
    for (OPJ_UINT32 c = 0; c < im->numcomps; c++)
        if (im->comps[c].dx != 1 || im->comps[c].dy != 1 || im->comps[c].prec > fmt->bytes * 8u ||
            im->comps[c].prec == 0) {
            rc = dcm_fail(err, CDC_ECODEC, 0, "JPEG 2000 component %u: %u bits, subsampling %ux%u",
                          c, im->comps[c].prec, im->comps[c].dx, im->comps[c].dy);
            goto out;
        }
    if (!opj_decode(codec, s, im) || !opj_end_decompress(codec, s)) {
        rc = dcm_fail(err, CDC_ECODEC, 0, "JPEG 2000: %s", mc.first[0] ? mc.first : "decoding failed");
        goto out;
    }
    size_t px = (size_t)fmt->rows * fmt->cols, ns = fmt->samples;
    for (size_t c = 0; c < ns; c++) {
        const OPJ_INT32 *d = im->comps[c].data;
        if (!d) {
            rc = dcm_fail(err, CDC_ECODEC, 0, "JPEG 2000: component %zu not decoded", c);
            goto out;
        }
        if (fmt->bytes == 1)
            for (size_t i = 0; i < px; i++)
                out[i * ns + c] = (uint8_t)d[i];
        else if (fmt->bytes == 2)
            for (size_t i = 0; i < px; i++)
                ((uint16_t *)out)[i * ns + c] = (uint16_t)d[i];
        else
            for (size_t i = 0; i < px; i++)
                ((uint32_t *)out)[i * ns + c] = (uint32_t)d[i];
    }
out:
    if (im)
        opj_image_destroy(im);
    if (s)
        opj_stream_destroy(s);
    if (codec)
        opj_destroy_codec(codec);
    (void)out_len;
    return rc;
}

/* Lazy coding (ISO 15444-1 Table A.19, code-block style bit 0, "selective
 * arithmetic coding bypass"): below each code-block's four most significant
 * bit-planes the significance and refinement passes are written raw instead
 * of through the MQ coder.  Part 1, so every J2K decoder reads it.  Where
 * those low bit-planes are noise, as in radiographs, raw costs nothing (the
 * batch's CR/DX files come out 1% smaller) and encoding is 15-20% faster,
 * decoding 25-35%; where they are not (flat or synthetic images, 8-bit
 * images, CT with its empty air) it costs 1.5% to 70% of the bytes, and on the
 * link bytes decide.  So it is used only on grey images of at least 9 bits
 * and 256x256 whose prediction residual carries at least
 * J2K_BYPASS_MIN_BITS bits of entropy per sample (bench/codecs.sh, figures
 * in ARCHITECTURE.md). */
#define J2K_CBLK_BYPASS     0x01
#define J2K_BYPASS_MIN_BITS 6.0
#define J2K_RESIDUAL_CLIP   2048 /* residuals beyond +-this share an escape bin */

/* Zero-order entropy, in bits per sample, of the median-edge prediction
 * residual (the JPEG-LS predictor) over every fourth row: a cheap measure of
 * how many low bits are noise. */
static double residual_entropy(const OPJ_INT32 *d, uint32_t rows, uint32_t cols)
{
    static const int nbins = 2 * J2K_RESIDUAL_CLIP + 1;
    uint32_t *hist = calloc((size_t)nbins, sizeof *hist);
    if (!hist)
        return 0;
    size_t n = 0;
    for (uint32_t y = 1; y < rows; y += 4) {
        const OPJ_INT32 *up = d + (size_t)(y - 1) * cols, *row = d + (size_t)y * cols;
        for (uint32_t x = 1; x < cols; x++) {
            int32_t a = row[x - 1], b = up[x], c = up[x - 1];
            int32_t lo = a < b ? a : b, hi = a < b ? b : a;
            int32_t pred = c >= hi ? lo : c <= lo ? hi : a + b - c;
            int32_t r = row[x] - pred;
            r = r < -J2K_RESIDUAL_CLIP ? -J2K_RESIDUAL_CLIP : r > J2K_RESIDUAL_CLIP ? J2K_RESIDUAL_CLIP : r;
            hist[r + J2K_RESIDUAL_CLIP]++;
            n++;
        }
    }
    double h = 0;
    for (int i = 0; i < nbins && n; i++)
        if (hist[i])
            h -= hist[i] * log2((double)hist[i] / (double)n);
    free(hist);
    return n ? h / (double)n : 0;
}

static bool wants_bypass(const cdc_fmt *fmt, const OPJ_INT32 *grey)
{
    if (fmt->samples != 1 || fmt->bits_stored < 9 || fmt->rows < 256 || fmt->cols < 256)
        return false;
    return residual_entropy(grey, fmt->rows, fmt->cols) >= J2K_BYPASS_MIN_BITS;
}

int cdc_j2k_encode(const cdc_fmt *fmt, const uint8_t *frame, size_t len, const cdc_encode_opts *o,
                   int lossy, dcm_buf *out, dcm_err *err)
{
    if (fmt->bits_stored > 16 || fmt->bits_allocated == 1)
        return dcm_fail(err, DCM_ETS, 0, "JPEG 2000 here holds 2 to 16 bits per sample; this image has %u",
                        fmt->bits_stored);
    opj_image_cmptparm_t cp[3];
    memset(cp, 0, sizeof cp);
    for (int c = 0; c < fmt->samples; c++) {
        cp[c].dx = cp[c].dy = 1;
        cp[c].w = fmt->cols;
        cp[c].h = fmt->rows;
        cp[c].prec = fmt->bits_stored;
        cp[c].sgnd = fmt->is_signed;
    }
    opj_image_t *im = opj_image_create(fmt->samples, cp, fmt->samples == 3 ? OPJ_CLRSPC_SRGB : OPJ_CLRSPC_GRAY);
    if (!im)
        return dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
    im->x1 = fmt->cols;
    im->y1 = fmt->rows;
    size_t px = (size_t)fmt->rows * fmt->cols, ns = fmt->samples;
    uint32_t mask = fmt->bits_stored >= 32 ? 0xFFFFFFFFu : (1u << fmt->bits_stored) - 1;
    for (size_t c = 0; c < ns; c++) {
        OPJ_INT32 *d = im->comps[c].data;
        for (size_t i = 0; i < px; i++) {
            size_t k = i * ns + c;
            if (fmt->is_signed)
                d[i] = fmt->bytes == 1 ? (int8_t)frame[k] : (int16_t)((const uint16_t *)frame)[k];
            else
                d[i] = (OPJ_INT32)((fmt->bytes == 1 ? frame[k] : ((const uint16_t *)frame)[k]) & mask);
        }
    }
    opj_cparameters_t p;
    opj_set_default_encoder_parameters(&p);
    p.tcp_numlayers = 1;
    p.tcp_rates[0] = 0; /* lossless: one layer, all bits */
    p.cp_disto_alloc = 1;
    p.irreversible = 0;
    p.tcp_mct = fmt->samples == 3 && fmt->photometric == CDC_PI_RGB ? 1 : 0;
    p.mode = wants_bypass(fmt, im->comps[0].data) ? J2K_CBLK_BYPASS : 0;
    p.numresolution = 6;
    while (p.numresolution > 1 && (1u << (p.numresolution - 1)) > (fmt->rows < fmt->cols ? fmt->rows : fmt->cols))
        p.numresolution--;
    memstream m = {.out = out};
    msgctx mc = {{0}};
    int rc = 0;
    opj_codec_t *codec = opj_create_compress(OPJ_CODEC_J2K);
    opj_stream_t *s = make_stream(&m, 0);
    if (!codec || !s) {
        rc = dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
        goto out;
    }
    opj_set_error_handler(codec, on_error, &mc);
    opj_set_warning_handler(codec, on_quiet, NULL);
    opj_set_info_handler(codec, on_quiet, NULL);
    if (!opj_setup_encoder(codec, &p, im) || !opj_start_compress(codec, im, s) || !opj_encode(codec, s) ||
        !opj_end_compress(codec, s))
        rc = dcm_fail(err, CDC_ECODEC, 0, "JPEG 2000 encoding: %s", mc.first[0] ? mc.first : "failed");
out:
    if (s)
        opj_stream_destroy(s);
    if (codec)
        opj_destroy_codec(codec);
    opj_image_destroy(im);
    (void)len;
    (void)o;
    (void)lossy;
    return rc;
}
