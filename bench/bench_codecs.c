/* bench_codecs.c — pixel codecs in process, single thread: encode and
 * decode megapixels per second and compression ratio per transfer syntax,
 * for dxhub's path (cdc_encode_frame; cdc_decode_frame on an in-memory
 * Part 10 file, fragment mapping included) and for the raw libraries alone
 * (TurboJPEG, CharLS, OpenJPH: the ceiling).  Times are the thread's CPU
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
    int         raw;         /* 1 TurboJPEG, 2 CharLS, 3 OpenJPH */
} syntax;

static const syntax syntaxes[] = {
    {"1.2.840.10008.1.2.5", "RLE Lossless", 0},
    {"1.2.840.10008.1.2.8.1", "Deflated Image Frame", 0},
    {"1.2.840.10008.1.2.4.80", "JPEG-LS Lossless", 2},
    {"1.2.840.10008.1.2.4.81", "JPEG-LS Near-Lossless (NEAR 2)", 2},
    {"1.2.840.10008.1.2.4.90", "JPEG 2000 Lossless (OpenJPEG)", 0},
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

static int raw_encode(int kind, const input *in, const uint8_t *px, int near, uint8_t **out, size_t *n)
{
    const cdc_image *im = &in->img;
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
    /* dxhub encode */
    double t0 = cpu_now(), t = 0;
    int reps = 0;
    do {
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
                if (reps == 0) {
                    cs[i][k] = o;
                    csn[i][k] = n;
                    comp_bytes += (double)n;
                } else {
                    free(o);
                }
            }
        }
        reps++;
        t = cpu_now() - t0;
    } while (t < min_seconds);
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
    if (sx->raw == 1 || sx->raw == 2) {
        double rb = 0;
        t0 = cpu_now();
        reps = 0;
        do {
            for (int i = 0; i < nin; i++) {
                size_t fs = cdc_frame_size(&ins[i].img);
                for (uint32_t k = 0; ok[i] && k < ins[i].nframes; k++) {
                    uint8_t *o = NULL;
                    size_t n = 0;
                    raw_encode(sx->raw, &ins[i], ins[i].frames + fs * k, near, &o, &n);
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
