/* cmd_pixel.c — `dxhub transcode` (any syntax to any syntax with a codec)
 * and `dxhub render` (one frame through the display pipeline to PNG/JPEG). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <strings.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "codecs/codecs.h"
#include "hub/cmd.h"

static void report(const char *cmd, const char *path, const dcm_err *err, int rc)
{
    dx_errorf(cmd, "%s: %s", path, err->msg[0] ? err->msg : cdc_strerror(rc));
}

/* Exit status of a failed operation: the input's fault (2) or ours (1). */
static int status_of(int rc)
{
    return rc == DCM_EIO || rc == DCM_ENOMEM || (rc < 0 && rc > -1000) ? 1 : 2;
}

int cmd_transcode(int argc, char **argv)
{
    static const struct option opts[] = {{"ts", required_argument, NULL, 't'},
                                         {"quality", required_argument, NULL, 'q'},
                                         {"near", required_argument, NULL, 'n'},
                                         {"help", no_argument, NULL, 'h'},
                                         {0, 0, 0, 0}};
    const char *ts = NULL;
    cdc_encode_opts eo = {0};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "t:q:n:h", opts, NULL)) != -1) {
        if (c == 't') {
            ts = optarg;
        } else if (c == 'q') {
            eo.jpeg_quality = atoi(optarg);
        } else if (c == 'n') {
            eo.jpegls_near = atoi(optarg);
        } else {
            fprintf(c == 'h' ? stdout : stderr,
                    "usage: dxhub transcode [--ts UID] [--quality Q] [--near N] IN OUT\n"
                    "  writes IN as a Part 10 file OUT in transfer syntax UID (default: IN's);\n"
                    "  compressed pixel data is decoded and re-encoded frame by frame.\n"
                    "  --quality  JPEG Baseline quality 1..100 (90)   --near  JPEG-LS NEAR (2)\n");
            return c == 'h' ? 0 : 2;
        }
    }
    if (argc - optind != 2) {
        dx_errorf("transcode", "need IN and OUT (usage: dxhub transcode [--ts UID] IN OUT)");
        return 2;
    }
    const char *in = argv[optind], *out = argv[optind + 1];
    if (ts && !dcm_ts_find(ts, strlen(ts))) {
        dx_errorf("transcode", "unknown transfer syntax UID '%s'", ts);
        return 2;
    }
    dcm_file *f = NULL;
    dcm_err err = {0};
    int rc = dcm_open(in, NULL, &f, &err);
    if (rc < 0) {
        report("transcode", in, &err, rc);
        return 2;
    }
    rc = cdc_transcode_file(f, ts ? ts : dcm_file_ts(f)->uid, &eo, out, &err);
    dcm_free(&f);
    if (rc < 0) {
        report("transcode", in, &err, rc);
        return status_of(rc);
    }
    return 0;
}

typedef struct fd_sink {
    int fd;
} fd_sink;

static int fd_write(void *ctx, const void *p, size_t n)
{
    fd_sink *s = ctx;
    const char *q = p;
    while (n) {
        ssize_t k = write(s->fd, q, n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return DCM_EIO;
        }
        q += k;
        n -= (size_t)k;
    }
    return 0;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcasecmp(s + a - b, suffix);
}

int cmd_render(int argc, char **argv)
{
    static const struct option opts[] = {{"frame", required_argument, NULL, 'f'},
                                         {"window", required_argument, NULL, 'w'},
                                         {"quality", required_argument, NULL, 'q'},
                                         {"help", no_argument, NULL, 'h'},
                                         {0, 0, 0, 0}};
    cdc_render_opts ro = {0};
    long frame = 1;
    int quality = 90, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "f:w:q:h", opts, NULL)) != -1) {
        char *end;
        if (c == 'f') {
            frame = strtol(optarg, &end, 10);
            if (*end || frame < 1) {
                dx_errorf("render", "--frame takes a frame number from 1, not '%s'", optarg);
                return 2;
            }
        } else if (c == 'w') {
            ro.center = strtod(optarg, &end);
            if (*end != ',' || (ro.width = strtod(end + 1, &end), *end) || ro.width < 1) {
                dx_errorf("render", "--window takes CENTER,WIDTH (width >= 1), not '%s'", optarg);
                return 2;
            }
            ro.has_window = 1;
        } else if (c == 'q') {
            quality = atoi(optarg);
        } else {
            fprintf(c == 'h' ? stdout : stderr,
                    "usage: dxhub render [--frame N] [--window CENTER,WIDTH] IN OUT.png|OUT.jpg\n"
                    "  renders frame N (from 1; default 1) to 8 bits: modality LUT, VOI (the\n"
                    "  window given, else the file's first window or VOI LUT, else an automatic\n"
                    "  one), MONOCHROME1 inverted, colour converted to RGB.\n");
            return c == 'h' ? 0 : 2;
        }
    }
    if (argc - optind != 2) {
        dx_errorf("render", "need IN and OUT (usage: dxhub render [--frame N] [--window C,W] IN OUT.png|OUT.jpg)");
        return 2;
    }
    const char *in = argv[optind], *outp = argv[optind + 1];
    bool jpeg = ends_with(outp, ".jpg") || ends_with(outp, ".jpeg");
    if (!jpeg && !ends_with(outp, ".png")) {
        dx_errorf("render", "%s: output must end in .png, .jpg or .jpeg", outp);
        return 2;
    }
    dcm_file *f = NULL;
    dcm_err err = {0};
    cdc_image img = {0};
    cdc_raster r = {0};
    int rc = dcm_open(in, NULL, &f, &err);
    if (rc == 0)
        rc = cdc_image_init(&img, f, &err);
    if (rc == 0 && (unsigned long)frame > img.frames) {
        snprintf(err.msg, sizeof err.msg, "frame %ld requested; the image has %u", frame, img.frames);
        rc = CDC_EFRAME;
    }
    ro.frame = (uint32_t)(frame - 1);
    if (rc == 0)
        rc = cdc_render_8bit(&img, &ro, &r, &err);
    if (rc < 0) {
        report("render", in, &err, rc);
        cdc_image_release(&img);
        dcm_free(&f);
        return status_of(rc);
    }
    size_t tl = strlen(outp) + 16;
    char *tmp = malloc(tl);
    snprintf(tmp, tl, "%s.tmp%d", outp, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        dx_errorf("render", "%s: cannot create: %s", outp, strerror(errno));
        rc = DCM_EIO;
    } else {
        fd_sink s = {fd};
        dcm_sink sink = {fd_write, &s};
        rc = jpeg ? cdc_write_jpeg(&r, quality, sink, &err) : cdc_write_png(&r, sink, &err);
        if (close(fd) < 0 && rc == 0)
            rc = DCM_EIO;
        if (rc == 0 && rename(tmp, outp) < 0)
            rc = DCM_EIO;
        if (rc < 0) {
            unlink(tmp);
            dx_errorf("render", "%s: writing failed", outp);
        }
    }
    free(tmp);
    cdc_raster_release(&r);
    cdc_image_release(&img);
    dcm_free(&f);
    return rc < 0 ? 1 : 0;
}
