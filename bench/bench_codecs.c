/* bench_codecs.c — pixel codecs in process, single thread: encode and
 * decode megapixels per second and compression ratio per transfer syntax,
 * for dxhub's path (cdc_encode_frame; cdc_decode_frame on an in-memory
 * Part 10 file, fragment mapping included) and for the raw libraries alone
 * (TurboJPEG, CharLS, OpenJPEG, OpenJPH: the ceiling).  Times are the thread's CPU
 * time (CLOCK_THREAD_CPUTIME_ID), so a busy machine slows the wall clock
 * but not the figures.  bench/codecs.sh runs it beside DCMTK's and GDCM's
 * whole-process tools and writes build/bench/codecs.json.
 *
 * HTJ2K decodes three ways: through a kept decoder child into the frame
 * buffer it shares ("dxhub", cdc_sandbox_frame_buffer), a child per frame ("dxhub-fork") and in process
 * ("dxhub-inproc"); the children's CPU time is counted.
 *
 *   bench_codecs [--seconds S] FILE...     prints one JSON object per line
 * For profiling: BENCH_SYNTAX=NAME (a part of a syntax's name) runs one
 * syntax, BENCH_ONE_MODE=1 only the first way. */
#include <charls/charls.h>
#include <openjpeg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <turbojpeg.h>
#include "codecs/cdc_private.h"

typedef struct frame {
    cdc_image      *img;
    const uint8_t  *px;      /* decoded layout */
    size_t          len;
} frame;

typedef struct input {
    dcm_file *f;
    cdc_image img;
    uint8_t  *frames;        /* up to MAX_FRAMES decoded frames */
    uint32_t  nframes;
    double    mpix;          /* of the frames kept */
    double    raw_bytes;     /* as stored natively */
} input;

#define MAX_FRAMES 4

typedef struct syntax {
    const char *uid, *name;
    int         raw;         /* 1 TurboJPEG, 2 CharLS, 3 OpenJPH, 4 OpenJPEG */
} syntax;

static const syntax syntaxes[] = {
    {"1.2.840.10008.1.2.5", "RLE Lossless", 0},
    {"1.2.840.10008.1.2.8.1", "Deflated Image Frame", 0},
    {"1.2.840.10008.1.2.4.80", "JPEG-LS Lossless", 2},
    {"1.2.840.10008.1.2.4.81", "JPEG-LS Near-Lossless (NEAR 2)", 2},
    {"1.2.840.10008.1.2.4.90", "JPEG 2000 Lossless (OpenJPEG)", 4},
    {"1.2.840.10008.1.2.4.201", "HTJ2K Lossless (OpenJPH)", 3},
    {"1.2.840.10008.1.2.4.50", "JPEG Baseline q90 (8-bit)", 1},
};

/* The decoder child HTJ2K frames go through (cdc_sandbox), kept between
 * frames as the workstation keeps one. */
static cdc_sandbox *sandbox;

/* CPU seconds of this thread plus its decoder children: the kept one
 * (its own clock) and every per-frame one reaped so far. */
static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    double s = (double)t.tv_sec + t.tv_nsec * 1e-9;
    clockid_t cid;
    if (cdc_sandbox_pid(sandbox) > 0 && clock_getcpuclockid(cdc_sandbox_pid(sandbox), &cid) == 0 &&
        clock_gettime(cid, &t) == 0)
        s += (double)t.tv_sec + t.tv_nsec * 1e-9;
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    s += (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec * 1e-6;
    return s;
}

static double min_seconds = 0.5;

static void emit(const char *syntax_name, const char *op, const char *who, double mpix_s, double ratio,
                 double mpix)
{
    printf("{\"syntax\":\"%s\",\"op\":\"%s\",\"who\":\"%s\",\"mpix_s\":%.3f,\"ratio\":%.4f,\"mpix\":%.3f}\n",
           syntax_name, op, who, mpix_s, ratio, mpix);
    fflush(stdout);
}

static int load(const char *path, input *in)
{
    dcm_err err = {0};
    memset(in, 0, sizeof *in);
    if (dcm_open(path, NULL, &in->f, &err) < 0 || cdc_image_init(&in->img, in->f, &err) < 0) {
        fprintf(stderr, "bench_codecs: skipping %s: %s\n", path, err.msg);
        dcm_free(&in->f);
        return -1;
    }
    if (in->img.bits_allocated == 1 || in->img.bits_allocated == 32 || in->img.is_float) {
        cdc_image_release(&in->img);
        dcm_free(&in->f);
        return -1;
    }
    size_t fs = cdc_frame_size(&in->img);
    in->nframes = in->img.frames < MAX_FRAMES ? in->img.frames : MAX_FRAMES;
    in->frames = malloc(fs * in->nframes);
    for (uint32_t i = 0; in->frames && i < in->nframes; i++)
        if (cdc_decode_frame(&in->img, i, in->frames + fs * i, fs, &err) < 0) {
            fprintf(stderr, "bench_codecs: skipping %s: %s\n", path, err.msg);
            free(in->frames);
            cdc_image_release(&in->img);
            dcm_free(&in->f);
            return -1;
        }
    in->mpix = (double)in->img.rows * in->img.cols * in->nframes / 1e6;
    in->raw_bytes = (double)in->img.rows * in->img.cols * in->img.samples * in->img.out_bytes * in->nframes;
    return 0;
}

/* --- raw libraries ------------------------------------------------------ */

/* OpenJPEG alone, with the coding parameters codecs/cdc_j2k.c uses; lazy
 * coding as dxhub chose for the same frame (its COD marker says).  Its
 * memory stream is its own, not cdc_j2k.c's: the ceiling dxhub is
 * compared with must not share dxhub's code. */
typedef struct opj_mem {
    uint8_t *p;
    size_t   n, cap, pos;
} opj_mem;

static OPJ_SIZE_T om_write(void *buf, OPJ_SIZE_T n, void *user)
{
    opj_mem *m = user;
    if (m->pos + n > m->cap) {
        size_t cap = (m->pos + n) * 2;
        uint8_t *q = realloc(m->p, cap);
        if (!q)
            return (OPJ_SIZE_T)-1;
        m->p = q;
        m->cap = cap;
    }
    memcpy(m->p + m->pos, buf, n);
    m->pos += n;
    m->n = m->pos > m->n ? m->pos : m->n;
    return n;
}

static OPJ_SIZE_T om_read(void *buf, OPJ_SIZE_T n, void *user)
{
    opj_mem *m = user;
    if (m->pos >= m->n)
        return (OPJ_SIZE_T)-1;
    size_t k = m->n - m->pos < n ? m->n - m->pos : n;
    memcpy(buf, m->p + m->pos, k);
    m->pos += k;
    return k;
}

static OPJ_OFF_T om_skip(OPJ_OFF_T n, void *user)
{
    opj_mem *m = user;
    m->pos += (size_t)n;
    return n;
}

static OPJ_BOOL om_seek(OPJ_OFF_T pos, void *user)
{
    ((opj_mem *)user)->pos = (size_t)pos;
    return OPJ_TRUE;
}

static opj_stream_t *om_stream(opj_mem *m, int reading)
{
    opj_stream_t *s = opj_stream_create(1 << 16, reading ? OPJ_TRUE : OPJ_FALSE);
    opj_stream_set_user_data(s, m, NULL);
    if (reading) {
        opj_stream_set_read_function(s, om_read);
        opj_stream_set_user_data_length(s, m->n);
    } else {
        opj_stream_set_write_function(s, om_write);
    }
    opj_stream_set_skip_function(s, om_skip);
    opj_stream_set_seek_function(s, om_seek);
    return s;
}

static int cod_lazy(const uint8_t *cs, size_t n)
{
    for (size_t i = 0; i + 13 < n; i++)
        if (cs[i] == 0xFF && cs[i + 1] == 0x52) /* COD: FF52 Lcod Scod SGcod(4) levels xcb ycb style */
            return cs[i + 12] & 1;
    return 0;
}

static int opj_raw_encode(const cdc_image *im, const uint8_t *px, int lazy, uint8_t **out, size_t *n)
{
    opj_image_cmptparm_t cp[3];
    memset(cp, 0, sizeof cp);
    for (int c = 0; c < im->samples; c++) {
        cp[c].dx = cp[c].dy = 1;
        cp[c].w = im->cols;
        cp[c].h = im->rows;
        cp[c].prec = im->bits_stored;
        cp[c].sgnd = im->is_signed;
    }
    opj_image_t *oi = opj_image_create(im->samples, cp, im->samples == 3 ? OPJ_CLRSPC_SRGB : OPJ_CLRSPC_GRAY);
    oi->x1 = im->cols;
    oi->y1 = im->rows;
    size_t npx = (size_t)im->rows * im->cols, ns = im->samples;
    for (size_t c = 0; c < ns; c++)
        for (size_t i = 0; i < npx; i++) {
            size_t k = i * ns + c;
            oi->comps[c].data[i] = im->out_bytes == 1 ? (im->is_signed ? (int8_t)px[k] : px[k])
                                   : im->is_signed    ? ((const int16_t *)px)[k]
                                                      : ((const uint16_t *)px)[k];
        }
    opj_cparameters_t p;
    opj_set_default_encoder_parameters(&p);
    p.tcp_numlayers = 1;
    p.tcp_rates[0] = 0;
    p.cp_disto_alloc = 1;
    p.tcp_mct = im->samples == 3 && im->out_photometric == CDC_PI_RGB;
    p.mode = lazy;
    p.numresolution = 6;
    while (p.numresolution > 1 && (1u << (p.numresolution - 1)) > (im->rows < im->cols ? im->rows : im->cols))
        p.numresolution--;
    opj_mem m = {0};
    opj_codec_t *codec = opj_create_compress(OPJ_CODEC_J2K);
    opj_stream_t *s = om_stream(&m, 0);
    int ok = opj_setup_encoder(codec, &p, oi) && opj_start_compress(codec, oi, s) && opj_encode(codec, s) &&
             opj_end_compress(codec, s);
    opj_stream_destroy(s);
    opj_destroy_codec(codec);
    opj_image_destroy(oi);
    *out = m.p;
    *n = m.n;
    return ok ? 0 : -1;
}

static int opj_raw_decode(const cdc_image *im, const uint8_t *cs, size_t n, uint8_t *out)
{
    opj_mem m = {.p = (uint8_t *)cs, .n = n};
    opj_codec_t *codec = opj_create_decompress(OPJ_CODEC_J2K);
    opj_stream_t *s = om_stream(&m, 1);
    opj_dparameters_t p;
    opj_set_default_decoder_parameters(&p);
    opj_image_t *oi = NULL;
    int ok = opj_setup_decoder(codec, &p) && opj_read_header(s, codec, &oi) && opj_decode(codec, s, oi) &&
             opj_end_decompress(codec, s);
    size_t npx = (size_t)im->rows * im->cols, ns = im->samples;
    for (size_t c = 0; ok && c < ns && c < oi->numcomps; c++)
        for (size_t i = 0; i < npx; i++) {
            if (im->out_bytes == 1)
                out[i * ns + c] = (uint8_t)oi->comps[c].data[i];
            else
                ((uint16_t *)out)[i * ns + c] = (uint16_t)oi->comps[c].data[i];
        }
    if (oi)
        opj_image_destroy(oi);
    opj_stream_destroy(s);
    opj_destroy_codec(codec);
    return ok ? 0 : -1;
}

static int raw_encode(int kind, const input *in, const uint8_t *px, int near, uint8_t **out, size_t *n)
{
    const cdc_image *im = &in->img;
    if (kind == 4)
        return opj_raw_encode(im, px, near, out, n); /* near: lazy coding */
    if (kind == 1) {
        tjhandle tj = tjInitCompress();
        unsigned char *jb = NULL;
        unsigned long jl = 0;
        int rc = tjCompress2(tj, px, (int)im->cols, 0, (int)im->rows, im->samples == 1 ? TJPF_GRAY : TJPF_RGB, &jb,
                             &jl, im->samples == 1 ? TJSAMP_GRAY : TJSAMP_422, 90, 0);
        tjDestroy(tj);
        if (rc < 0)
            return -1;
        *out = malloc(jl);
        memcpy(*out, jb, jl);
        *n = jl;
        tjFree(jb);
        return 0;
    }
    if (kind == 2) {
        charls_jpegls_encoder *e = charls_jpegls_encoder_create();
        charls_frame_info fi = {im->cols, im->rows, im->bits_stored, im->samples};
        size_t cap = 0, w = 0;
        int ec = charls_jpegls_encoder_set_frame_info(e, &fi);
        ec |= charls_jpegls_encoder_set_near_lossless(e, near);
        if (im->samples > 1)
            ec |= charls_jpegls_encoder_set_interleave_mode(e, CHARLS_INTERLEAVE_MODE_SAMPLE);
        ec |= charls_jpegls_encoder_get_estimated_destination_size(e, &cap);
        *out = malloc(cap);
        ec |= charls_jpegls_encoder_set_destination_buffer(e, *out, cap);
        ec |= charls_jpegls_encoder_encode_from_buffer(e, px, cdc_frame_size(im), 0);
        ec |= charls_jpegls_encoder_get_bytes_written(e, &w);
        charls_jpegls_encoder_destroy(e);
        *n = w;
        return ec ? -1 : 0;
    }
    return -1;
}

static int raw_decode(int kind, const input *in, const uint8_t *cs, size_t n, uint8_t *out, uint64_t *sum)
{
    const cdc_image *im = &in->img;
    if (kind == 1) {
        tjhandle tj = tjInitDecompress();
        int rc = tjDecompress2(tj, cs, (unsigned long)n, out, (int)im->cols, 0, (int)im->rows,
                               im->samples == 1 ? TJPF_GRAY : TJPF_RGB, 0);
        tjDestroy(tj);
        return rc;
    }
    if (kind == 2) {
        charls_jpegls_decoder *d = charls_jpegls_decoder_create();
        int rc = charls_jpegls_decoder_set_source_buffer(d, cs, n) ? -1 : 0;
        if (rc == 0)
            rc = charls_jpegls_decoder_read_header(d) ? -1 : 0;
        if (rc == 0)
            rc = charls_jpegls_decoder_decode_to_buffer(d, out, cdc_frame_size(im), 0) ? -1 : 0;
        charls_jpegls_decoder_destroy(d);
        return rc;
    }
    if (kind == 4)
        return opj_raw_decode(im, cs, n, out);
    return cdc_htj2k_raw_decode(cs, n, (uint16_t *)out, sum);
}

/* --- one syntax over all inputs ------------------------------------------ */

static int sink_buf(void *ctx, const void *p, size_t n)
{
    return dcm_buf_put(ctx, p, n);
}

static void run_syntax(const syntax *sx, input *ins, int nin)
{
    cdc_encode_opts eo = {0};
    int near = strstr(sx->uid, "4.81") ? 2 : 0;
    /* Which inputs the syntax takes; their first-pass codestreams. */
    double mpix = 0, raw_bytes = 0, comp_bytes = 0;
    uint8_t ***cs = calloc(nin, sizeof *cs);
    size_t **csn = calloc(nin, sizeof *csn);
    int *ok = calloc(nin, sizeof *ok);
    dcm_err err = {0};
    for (int i = 0; i < nin; i++) {
        cdc_photometric pi;
        uint16_t ba;
        if (cdc_encode_plan(&ins[i].img, sx->uid, &pi, &ba, &err) < 0)
            continue;
        if (sx->raw == 1 && ins[i].img.out_photometric != CDC_PI_MONOCHROME2 &&
            ins[i].img.out_photometric != CDC_PI_MONOCHROME1 && ins[i].img.out_photometric != CDC_PI_RGB)
            continue;
        ok[i] = 1;
        mpix += ins[i].mpix;
        raw_bytes += ins[i].raw_bytes;
        cs[i] = calloc(ins[i].nframes, sizeof **cs);
        csn[i] = calloc(ins[i].nframes, sizeof **csn);
    }
    if (mpix == 0)
        goto out;
    /* dxhub encode.  Pass 0 keeps the codestreams (for the ratio and the
     * decode runs) and is not timed: it also warms the allocator, as the raw
     * libraries find it warm when their turn comes.  A batch pass takes
     * seconds, so a timed cold first pass was most of the figure and put
     * dxhub 10-15% behind the same library calls made later. */
    double t0 = 0, t = 0;
    int reps = 0;
    for (int pass = 0;; pass++) {
        if (pass == 1)
            t0 = cpu_now();
        for (int i = 0; i < nin; i++) {
            if (!ok[i])
                continue;
            size_t fs = cdc_frame_size(&ins[i].img);
            for (uint32_t k = 0; k < ins[i].nframes; k++) {
                uint8_t *o;
                size_t n;
                if (cdc_encode_frame(&ins[i].img, sx->uid, &eo, ins[i].frames + fs * k, fs, &o, &n, &err) < 0) {
                    fprintf(stderr, "bench_codecs: %s: %s\n", sx->name, err.msg);
                    ok[i] = 0;
                    break;
                }
                if (pass == 0) {
                    cs[i][k] = o;
                    csn[i][k] = n;
                    comp_bytes += (double)n;
                } else {
                    free(o);
                }
            }
        }
        if (pass > 0) {
            reps++;
            t = cpu_now() - t0;
            if (t >= min_seconds)
                break;
        }
    }
    emit(sx->name, "encode", "dxhub", mpix * reps / t, raw_bytes / comp_bytes, mpix);
    /* dxhub decode: an in-memory Part 10 file per input, decoded frame by frame */
    dcm_buf *files = calloc(nin, sizeof *files);
    dcm_file **parsed = calloc(nin, sizeof *parsed);
    cdc_image *imgs = calloc(nin, sizeof *imgs);
    size_t maxfs = 0;
    for (int i = 0; i < nin; i++) {
        if (!ok[i])
            continue;
        size_t fs = cdc_frame_size(&ins[i].img);
        maxfs = fs > maxfs ? fs : maxfs;
        if (cdc_transcode(ins[i].f, sx->uid, &eo, (dcm_sink){sink_buf, &files[i]}, &err) < 0 ||
            dcm_parse(files[i].p, files[i].n, NULL, &parsed[i], &err) < 0 ||
            cdc_image_init(&imgs[i], parsed[i], &err) < 0) {
            fprintf(stderr, "bench_codecs: %s: %s\n", sx->name, err.msg);
            ok[i] = 0;
        }
    }
    uint8_t *buf = malloc(maxfs ? 2 * maxfs : 1); /* the OpenJPH row writes 16-bit samples */
    uint64_t sum = 0;
    const cdc_codec *cd = cdc_codec_find(sx->uid);
    /* "dxhub": as the product decodes (through the kept child for codecs
     * that isolate); for those also a child per frame (images without a
     * sandbox: hub, command line) and the adapter in this process (what
     * the isolation costs). */
    static const char *const modes[] = {"dxhub", "dxhub-inproc", "dxhub-fork"};
    /* The per-frame forks last: they leave the parent's pages copy-on-write. */
    /* The kept child decodes into the frame buffer it shares, as a caller
     * that shows a frame and lets it go would (no copy out of the child). */
    uint8_t *shared = cd->isolate ? cdc_sandbox_frame_buffer(sandbox, maxfs, &err) : NULL;
    for (int mode = 0; mode < (cd->isolate ? (getenv("BENCH_ONE_MODE") ? 1 : 3) : 1); mode++) {
        for (int i = 0; i < nin; i++)
            imgs[i].sandbox = mode == 0 ? sandbox : NULL;
        t0 = cpu_now();
        reps = -1; /* a first pass untimed: each way is measured warm, as the raw library (run last) always was */
        do {
            for (int i = 0; i < nin; i++)
                for (uint32_t k = 0; ok[i] && k < ins[i].nframes; k++) {
                    int rc;
                    if (mode != 1) {
                        rc = cdc_decode_frame(&imgs[i], k, mode == 0 && shared ? shared : buf, maxfs, &err);
                    } else {
                        const uint8_t *p;
                        size_t n;
                        uint8_t *owned = NULL;
                        cdc_fmt fmt;
                        cdc_fmt_of_image(&imgs[i], &fmt);
                        rc = cdc_frame_bytes(&imgs[i], k, &p, &n, &owned, &err);
                        if (rc == 0)
                            rc = cd->decode(&fmt, p, n, buf, cdc_frame_size(&imgs[i]), &err);
                        free(owned);
                    }
                    if (rc < 0)
                        fprintf(stderr, "bench_codecs: %s decode: %s\n", sx->name, err.msg);
                }
            if (++reps == 0)
                t0 = cpu_now();
            t = cpu_now() - t0;
        } while (t < min_seconds);
        emit(sx->name, "decode", modes[mode], mpix * reps / t, raw_bytes / comp_bytes, mpix);
    }
    /* the raw library alone, same frames */
    if (sx->raw == 1 || sx->raw == 2 || sx->raw == 4) {
        double rb = 0;
        t0 = cpu_now();
        reps = 0;
        do {
            for (int i = 0; i < nin; i++) {
                size_t fs = cdc_frame_size(&ins[i].img);
                for (uint32_t k = 0; ok[i] && k < ins[i].nframes; k++) {
                    uint8_t *o = NULL;
                    size_t n = 0;
                    int hint = sx->raw == 4 ? cod_lazy(cs[i][k], csn[i][k]) : near;
                    raw_encode(sx->raw, &ins[i], ins[i].frames + fs * k, hint, &o, &n);
                    if (reps == 0)
                        rb += (double)n;
                    free(o);
                }
            }
            reps++;
            t = cpu_now() - t0;
        } while (t < min_seconds);
        emit(sx->name, "encode", "raw", mpix * reps / t, raw_bytes / rb, mpix);
    }
    if (sx->raw) {
        t0 = cpu_now();
        reps = -1;
        do {
            for (int i = 0; i < nin; i++)
                for (uint32_t k = 0; ok[i] && k < ins[i].nframes; k++)
                    raw_decode(sx->raw, &ins[i], cs[i][k], csn[i][k], buf, &sum);
            if (++reps == 0)
                t0 = cpu_now();
            t = cpu_now() - t0;
        } while (t < min_seconds);
        emit(sx->name, "decode", "raw", mpix * reps / t, raw_bytes / comp_bytes, mpix);
    }
    free(buf);
    for (int i = 0; i < nin; i++) {
        cdc_image_release(&imgs[i]);
        dcm_free(&parsed[i]);
        free(files[i].p);
    }
    free(files);
    free(parsed);
    free(imgs);
out:
    for (int i = 0; i < nin; i++) {
        for (uint32_t k = 0; cs[i] && k < ins[i].nframes; k++)
            free(cs[i][k]);
        free(cs[i]);
        free(csn[i]);
    }
    free(cs);
    free(csn);
    free(ok);
    if (sum == 42) /* keep the checksum alive */
        fputc(' ', stderr);
}

int main(int argc, char **argv)
{
    int a = 1;
    if (a + 1 < argc && !strcmp(argv[a], "--seconds")) {
        min_seconds = atof(argv[a + 1]);
        a += 2;
    }
    if (a >= argc) {
        fprintf(stderr, "usage: bench_codecs [--seconds S] FILE...\n");
        return 2;
    }
    dcm_err err = {0};
    if (cdc_sandbox_open(&sandbox, &err) < 0) {
        fprintf(stderr, "bench_codecs: %s\n", err.msg);
        return 1;
    }
    input *ins = calloc((size_t)(argc - a), sizeof *ins);
    int nin = 0;
    for (int i = a; i < argc; i++)
        if (load(argv[i], &ins[nin]) == 0)
            nin++;
    const char *only = getenv("BENCH_SYNTAX"); /* e.g. "JPEG 2000": one syntax, for profiling */
    for (size_t s = 0; s < sizeof syntaxes / sizeof syntaxes[0]; s++)
        if (!only || strstr(syntaxes[s].name, only))
            run_syntax(&syntaxes[s], ins, nin);
    for (int i = 0; i < nin; i++) {
        free(ins[i].frames);
        cdc_image_release(&ins[i].img);
        dcm_free(&ins[i].f);
    }
    free(ins);
    cdc_sandbox_close(&sandbox);
    return 0;
}
