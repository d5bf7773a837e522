// cdc_htj2k.cc — High-Throughput JPEG 2000 (ISO 15444-15) through OpenJPH,
// the only C++ codec library of codecs/ besides DCMTK.  OpenJPH reports
// errors by throwing from its message handler: we install handlers that
// throw quietly (never print), once under pthread_once, and catch every
// exception at the C boundary.
#include <pthread.h>
#include <cstdarg>
#include <cstdio>
#include <new>
#include <stdexcept>
#include <string>
#include "openjph/ojph_arch.h"
#include "openjph/ojph_codestream.h"
#include "openjph/ojph_file.h"
#include "openjph/ojph_mem.h"
#include "openjph/ojph_message.h"
#include "openjph/ojph_params.h"
#include "codecs/cdc_private.h"

namespace {

// OpenJPH keeps pointers to its handlers; these objects have no state.
class quiet_error : public ojph::message_error {
public:
    void operator()(int code, const char *file, int line, const char *fmt, ...) override
    {
        char buf[160];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        (void)code, (void)file, (void)line;
        throw std::runtime_error(buf);
    }
};
class quiet_warning : public ojph::message_warning {
public:
    void operator()(int, const char *, int, const char *, ...) override {}
};
class quiet_info : public ojph::message_info {
public:
    void operator()(int, const char *, int, const char *, ...) override {}
};

quiet_error   q_error;
quiet_warning q_warning;
quiet_info    q_info;
pthread_once_t ojph_once = PTHREAD_ONCE_INIT;

void ojph_setup()
{
    ojph::configure_error(&q_error);
    ojph::configure_warning(&q_warning);
    ojph::configure_info(&q_info);
}

/* OpenJPH 0.9 asserts (aborts the process) when quantisation and wavelet
 * disagree: reversible 5/3 needs QCD/QCC style 0, irreversible 9/7 style 2
 * (found by fuzz_cdc_htj2k).  Check the main and tile-part headers first
 * (ISO 15444-1 A.6.1, A.6.2, A.6.4, A.6.5). */
uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Layers, multiple component transform, decomposition levels (the
 * standard's maximum is 32), code-block exponents (xcb, ycb <= 8 and
 * xcb + ycb <= 8), wavelet 0 or 1. */
bool valid_coding(unsigned layers, unsigned mct, unsigned levels, unsigned xcb, unsigned ycb, unsigned wavelet)
{
    return layers >= 1 && mct <= 1 && levels <= 32 && xcb <= 8 && ycb <= 8 && xcb + ycb <= 8 && wavelet <= 1;
}

int check_markers(const uint8_t *p, size_t n, dcm_err *err)
{
    if (n < 4 || p[0] != 0xFF || p[1] != 0x4F)
        return dcm_fail(err, CDC_ECODEC, 0, "HTJ2K frame does not start with SOC");
    int transform = -1; /* from COD: 1 reversible 5/3, 0 irreversible 9/7 */
    unsigned levels = 0;
    unsigned csiz = 0;
    size_t i = 2;
    while (i + 4 <= n) {
        if (p[i] != 0xFF)
            return dcm_fail(err, CDC_ECODEC, i, "HTJ2K marker expected at byte %zu", i);
        uint8_t m = p[i + 1];
        size_t len = (size_t)p[i + 2] << 8 | p[i + 3];
        if (m == 0x93 || m == 0xD9) /* SOD: tile data follows; EOC */
            break;
        if (len < 2 || i + 2 + len > n)
            return dcm_fail(err, CDC_ECODEC, i, "HTJ2K marker FF%02X length %zu overruns the frame", m, len);
        const uint8_t *v = p + i + 4;
        size_t vl = len - 2;
        unsigned cbytes = csiz < 257 ? 1 : 2;
        if (m == 0x51 && vl >= 36) { /* SIZ: the tile grid must stay small (A.5.1) */
            csiz = (unsigned)v[34] << 8 | v[35];
            uint64_t x = rd32(v + 2), y = rd32(v + 6), xt = rd32(v + 18), yt = rd32(v + 22);
            uint64_t xto = rd32(v + 26), yto = rd32(v + 30);
            if (!xt || !yt || xto > x || yto > y || ((x - xto + xt - 1) / xt) * ((y - yto + yt - 1) / yt) > 65535)
                return dcm_fail(err, CDC_ECODEC, i, "HTJ2K: tile grid out of bounds");
        } else if (m == 0x52 && vl >= 10) { /* COD: A.6.1, Tables A.13 to A.20 */
            transform = v[9];
            levels = v[5];
            if (!valid_coding((unsigned)v[2] << 8 | v[3], v[4], v[5], v[6], v[7], v[9]))
                return dcm_fail(err, CDC_ECODEC, i, "HTJ2K: coding style parameters out of range");
        } else if (m == 0x53 && vl >= cbytes + 6u &&
                   (!valid_coding(1, 0, v[cbytes + 1], v[cbytes + 2], v[cbytes + 3], v[cbytes + 5]) ||
                    v[cbytes + 1] != levels)) {
            return dcm_fail(err, CDC_ECODEC, i, "HTJ2K: component coding style out of range");
        }
        else if (m == 0x53 && vl >= cbytes + 6u && transform >= 0 && v[cbytes + 5] != transform)
            return dcm_fail(err, CDC_ECODEC, i, "HTJ2K: a component's wavelet differs from the default one");
        else if ((m == 0x5C && vl >= 1) || (m == 0x5D && vl > cbytes)) { /* QCD, QCC */
            unsigned at = m == 0x5C ? 0 : cbytes, style = v[at] & 0x1F;
            if (transform < 0 || (transform == 1 && style != 0) || (transform == 0 && style != 2))
                return dcm_fail(err, CDC_ECODEC, i, "HTJ2K: quantisation style %u does not fit the %s wavelet",
                                style, transform == 1 ? "reversible" : "irreversible");
            /* one step size per subband of every level (A.6.4): else OpenJPH asserts */
            if (vl < at + 1 + (3u * levels + 1) * (style == 0 ? 1u : 2u))
                return dcm_fail(err, CDC_ECODEC, i, "HTJ2K: %zu bytes of step sizes for %u levels", vl, levels);
        }
        if (m == 0x90 && vl >= 8) { /* SOT: check this tile-part's header, then jump to the next */
            size_t psot = (size_t)v[2] << 24 | (size_t)v[3] << 16 | (size_t)v[4] << 8 | v[5];
            size_t j = i + 2 + len;
            while (j + 4 <= n && p[j] == 0xFF && p[j + 1] != 0x93) {
                size_t l2 = (size_t)p[j + 2] << 8 | p[j + 3];
                if (l2 < 2 || j + 2 + l2 > n)
                    return dcm_fail(err, CDC_ECODEC, j, "HTJ2K tile-part header overruns the frame");
                if (p[j + 1] == 0x52 || p[j + 1] == 0x53 || p[j + 1] == 0x5C || p[j + 1] == 0x5D)
                    return dcm_fail(err, CDC_ECODEC, j, "HTJ2K: coding parameters in a tile-part header");
                j += 2 + l2;
            }
            if (psot == 0) /* the last tile-part, to EOC */
                break;
            /* A tile-part longer than the data: OpenJPH 0.9 then writes past a
             * buffer in precinct::parse (fuzz_cdc_htj2k, crashers/). */
            if (psot < 14 || psot > n - i)
                return dcm_fail(err, CDC_ECODEC, i, "HTJ2K tile-part of %zu bytes; %zu left", psot, n - i);
            i += psot;
            continue;
        }
        i += 2 + len;
    }
    if (transform < 0)
        return dcm_fail(err, CDC_ECODEC, 0, "HTJ2K main header has no COD");
    return 0;
}

int decode(const cdc_fmt *fmt, const uint8_t *src, size_t n, uint8_t *out, dcm_err *err)
{
    int rc0 = check_markers(src, n, err);
    if (rc0 < 0)
        return rc0;
    ojph::mem_infile in;
    in.open(src, n);
    ojph::codestream cs;
    cs.read_headers(&in);
    ojph::param_siz siz = cs.access_siz();
    ojph::point ext = siz.get_image_extent(), off = siz.get_image_offset();
    ojph::ui32 nc = siz.get_num_components();
    int rc = cdc_check_dims(fmt, ext.y - off.y, ext.x - off.x, nc, "HTJ2K", err);
    if (rc < 0)
        return rc;
    for (ojph::ui32 c = 0; c < nc; c++) {
        ojph::point ds = siz.get_downsampling(c);
        if (ds.x != 1 || ds.y != 1 || siz.get_bit_depth(c) > fmt->bytes * 8u)
            return dcm_fail(err, CDC_ECODEC, 0, "HTJ2K component %u: %u bits, subsampling %ux%u", c,
                            siz.get_bit_depth(c), ds.x, ds.y);
    }
    cs.create();
    size_t w = fmt->cols, ns = nc;
    if (cs.is_planar()) {
        for (ojph::ui32 c = 0; c < nc; c++)
            for (ojph::ui32 y = 0; y < fmt->rows; y++) {
                ojph::ui32 comp;
                ojph::line_buf *line = cs.pull(comp);
                const ojph::si32 *d = line->i32;
                size_t base = (size_t)y * w * ns + comp;
                if (fmt->bytes == 1)
                    for (size_t x = 0; x < w; x++) out[base + x * ns] = (uint8_t)d[x];
                else if (fmt->bytes == 2)
                    for (size_t x = 0; x < w; x++) ((uint16_t *)out)[base + x * ns] = (uint16_t)d[x];
                else
                    for (size_t x = 0; x < w; x++) ((uint32_t *)out)[base + x * ns] = (uint32_t)d[x];
            }
    } else {
        for (ojph::ui32 y = 0; y < fmt->rows; y++)
            for (ojph::ui32 c = 0; c < nc; c++) {
                ojph::ui32 comp;
                ojph::line_buf *line = cs.pull(comp);
                const ojph::si32 *d = line->i32;
                size_t base = (size_t)y * w * ns + comp;
                if (fmt->bytes == 1)
                    for (size_t x = 0; x < w; x++) out[base + x * ns] = (uint8_t)d[x];
                else if (fmt->bytes == 2)
                    for (size_t x = 0; x < w; x++) ((uint16_t *)out)[base + x * ns] = (uint16_t)d[x];
                else
                    for (size_t x = 0; x < w; x++) ((uint32_t *)out)[base + x * ns] = (uint32_t)d[x];
            }
    }
    cs.close();
    return 0;
}

/* The HTJ2K Lossless RPCL syntax (1.2.840.10008.1.2.4.202) wants TLM
 * marker segments, which OpenJPH 0.9 does not write: insert one before the
 * first SOT listing every tile-part's length (ISO 15444-1 A.7.1; Ztlm 0,
 * no Ttlm (tile-parts in order), 32-bit Ptlm).  Returns 0 or CDC_ECODEC. */
int add_tlm(dcm_buf *b, size_t start, dcm_err *err)
{
    const uint8_t *p = b->p + start;
    size_t n = b->n - start, i = 2, first_sot = 0;
    while (i + 4 <= n && !(p[i] == 0xFF && p[i + 1] == 0x90))
        i += 2 + ((size_t)p[i + 2] << 8 | p[i + 3]);
    if (i + 12 > n)
        return dcm_fail(err, CDC_ECODEC, 0, "HTJ2K: no tile-part in the encoded stream");
    first_sot = i;
    uint32_t lens[256];
    size_t nt = 0;
    while (i + 12 <= n && p[i] == 0xFF && p[i + 1] == 0x90 && nt < 256) {
        uint32_t psot = (uint32_t)p[i + 6] << 24 | (uint32_t)p[i + 7] << 16 | (uint32_t)p[i + 8] << 8 | p[i + 9];
        if (psot == 0) /* the last tile-part runs to EOC */
            psot = (uint32_t)(n - 2 - i);
        lens[nt++] = psot;
        i += psot;
    }
    if (nt == 0 || nt == 256)
        return dcm_fail(err, CDC_ECODEC, 0, "HTJ2K: %zu tile-parts", nt);
    size_t ltlm = 4 + 4 * nt;
    uint8_t *seg = static_cast<uint8_t *>(malloc(2 + ltlm));
    if (!seg)
        return dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
    seg[0] = 0xFF, seg[1] = 0x55, seg[2] = (uint8_t)(ltlm >> 8), seg[3] = (uint8_t)ltlm;
    seg[4] = 0;    /* Ztlm */
    seg[5] = 0x40; /* Stlm: ST = 0, SP = 1 */
    for (size_t k = 0; k < nt; k++)
        for (int j = 0; j < 4; j++)
            seg[6 + 4 * k + j] = (uint8_t)(lens[k] >> (24 - 8 * j));
    size_t at = start + first_sot, tail = b->n - at;
    int rc = dcm_buf_put(b, seg, 2 + ltlm); /* grow; then move the tile-parts up */
    if (rc == 0) {
        memmove(b->p + at + 2 + ltlm, b->p + at, tail);
        memcpy(b->p + at, seg, 2 + ltlm);
    }
    free(seg);
    return rc < 0 ? dcm_fail(err, DCM_ENOMEM, 0, "out of memory") : 0;
}

int encode(const cdc_fmt *fmt, const uint8_t *frame, const char *progression, dcm_buf *out, dcm_err *err)
{
    if (fmt->bits_stored > 16 || fmt->bits_allocated == 1 || fmt->bits_stored < 1)
        return dcm_fail(err, DCM_ETS, 0, "HTJ2K here holds 1 to 16 bits per sample; this image has %u",
                        fmt->bits_stored);
    ojph::codestream cs;
    ojph::param_siz siz = cs.access_siz();
    siz.set_image_extent(ojph::point(fmt->cols, fmt->rows));
    siz.set_num_components(fmt->samples);
    for (ojph::ui32 c = 0; c < fmt->samples; c++)
        siz.set_component(c, ojph::point(1, 1), fmt->bits_stored, fmt->is_signed != 0);
    siz.set_image_offset(ojph::point(0, 0));
    siz.set_tile_size(ojph::size(0, 0));
    siz.set_tile_offset(ojph::point(0, 0));
    ojph::param_cod cod = cs.access_cod();
    ojph::ui32 levels = 5, smaller = fmt->rows < fmt->cols ? fmt->rows : fmt->cols;
    while (levels > 0 && (1u << levels) > smaller)
        levels--;
    cod.set_num_decomposition(levels);
    cod.set_block_dims(64, 64);
    if (progression)
        cod.set_progression_order(progression);
    cod.set_color_transform(fmt->samples == 3 && fmt->photometric == CDC_PI_RGB);
    cod.set_reversible(true);
    cs.set_planar(false);
    ojph::mem_outfile mf;
    mf.open();
    cs.write_headers(&mf);
    size_t w = fmt->cols, ns = fmt->samples;
    uint32_t mask = (1u << fmt->bits_stored) - 1;
    ojph::ui32 comp = 0;
    ojph::line_buf *line = cs.exchange(NULL, comp);
    for (ojph::ui32 y = 0; y < fmt->rows; y++)
        for (ojph::ui32 c = 0; c < ns; c++) {
            ojph::si32 *d = line->i32;
            size_t base = (size_t)y * w * ns + comp;
            for (size_t x = 0; x < w; x++) {
                size_t k = base + x * ns;
                if (fmt->is_signed)
                    d[x] = fmt->bytes == 1 ? (int8_t)frame[k] : (int16_t)((const uint16_t *)frame)[k];
                else
                    d[x] = (ojph::si32)((fmt->bytes == 1 ? frame[k] : ((const uint16_t *)frame)[k]) & mask);
            }
            line = cs.exchange(line, comp);
        }
    cs.flush();
    size_t len = (size_t)mf.tell(), start = out->n;
    int rc = dcm_buf_put(out, mf.get_data(), len);
    cs.close();
    mf.close();
    if (rc < 0)
        return dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
    return progression ? add_tlm(out, start, err) : 0;
}

} // namespace

extern "C" int cdc_htj2k_decode(const cdc_fmt *fmt, const uint8_t *src, size_t n, uint8_t *out, size_t out_len,
                                dcm_err *err)
{
    pthread_once(&ojph_once, ojph_setup);
    (void)out_len;
    try {
        return decode(fmt, src, n, out, err);
    } catch (const std::bad_alloc &) {
        return dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
    } catch (const std::exception &e) {
        return dcm_fail(err, CDC_ECODEC, 0, "HTJ2K: %s", e.what());
    } catch (...) {
        return dcm_fail(err, CDC_ECODEC, 0, "HTJ2K: decoder failed");
    }
}

static int encode_guarded(const cdc_fmt *fmt, const uint8_t *frame, const char *prog, dcm_buf *out, dcm_err *err)
{
    pthread_once(&ojph_once, ojph_setup);
    try {
        return encode(fmt, frame, prog, out, err);
    } catch (const std::bad_alloc &) {
        return dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
    } catch (const std::exception &e) {
        return dcm_fail(err, CDC_ECODEC, 0, "HTJ2K encoding: %s", e.what());
    } catch (...) {
        return dcm_fail(err, CDC_ECODEC, 0, "HTJ2K encoding failed");
    }
}

extern "C" int cdc_htj2k_encode(const cdc_fmt *fmt, const uint8_t *frame, size_t len, const cdc_encode_opts *o,
                                int lossy, dcm_buf *out, dcm_err *err)
{
    (void)len, (void)o, (void)lossy;
    return encode_guarded(fmt, frame, NULL, out, err);
}

extern "C" int cdc_htj2k_rpcl_encode(const cdc_fmt *fmt, const uint8_t *frame, size_t len, const cdc_encode_opts *o,
                                     int lossy, dcm_buf *out, dcm_err *err)
{
    (void)len, (void)o, (void)lossy;
    return encode_guarded(fmt, frame, "RPCL", out, err);
}

// The library alone, for `make bench` (bench/bench_codecs.c): decode a
// codestream and write its samples, 16 bits each, into out (what any
// caller has to do), without our header checks or DICOM framing.  *sum is
// a checksum so no work is elided.
extern "C" int cdc_htj2k_raw_decode(const uint8_t *src, size_t n, uint16_t *out, uint64_t *sum)
{
    pthread_once(&ojph_once, ojph_setup);
    try {
        ojph::mem_infile in;
        in.open(src, n);
        ojph::codestream cs;
        cs.read_headers(&in);
        ojph::param_siz siz = cs.access_siz();
        ojph::ui32 nc = siz.get_num_components(), h = siz.get_image_extent().y - siz.get_image_offset().y;
        ojph::ui32 w = siz.get_image_extent().x - siz.get_image_offset().x;
        cs.create();
        uint64_t acc = 0;
        for (ojph::ui32 i = 0; i < h * nc; i++) {
            ojph::ui32 comp;
            ojph::line_buf *line = cs.pull(comp);
            uint16_t *o = out + (size_t)(i / nc) * w * nc + comp;
            for (ojph::ui32 x = 0; x < w; x++)
                o[(size_t)x * nc] = (uint16_t)line->i32[x];
            acc += o[0];
        }
        cs.close();
        *sum += acc;
        return 0;
    } catch (...) {
        return CDC_ECODEC;
    }
}
