/* cmd_dicom.c — `dxhub dump`: the DICOM file listing (transcode: cmd_pixel.c). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "codecs/codecs.h"
#include "hub/cmd.h"

static void report(const char *cmd, const char *path, const dcm_err *err, int rc)
{
    dx_errorf(cmd, "%s: %s", path, err->msg[0] ? err->msg : dcm_strerror(rc));
}

static int dump_one(const char *path, int json)
{
    dcm_file *f = NULL;
    dcm_err err = {0};
    /* A listing never needs the pixel values themselves: don't read them. */
    dcm_parse_opts po = {.skip_pixels = 1};
    int rc = dcm_open(path, &po, &f, &err);
    if (rc < 0) {
        report("dump", path, &err, rc);
        return 2;
    }
    if (json) {
        /* BulkDataURI: where the bytes lie in this file. */
        size_t n = strlen(path) + 8;
        char *base = malloc(n);
        if (!base) {
            dcm_free(&f);
            return 1;
        }
        snprintf(base, n, "file:%s", path);
        dcm_json_opts o = {.bulk_threshold = 1024, .bulk_uri_base = base};
        rc = dcm_json_write(f, &o, dcm_sink_stdio(stdout), &err);
        free(base);
        if (rc == 0)
            fputc('\n', stdout);
    } else {
        printf("# %s\n", path);
        rc = dcm_dump_text(f, dcm_sink_stdio(stdout), &err);
    }
    dcm_free(&f);
    if (rc < 0) {
        report("dump", path, &err, rc);
        return rc == DCM_EIO || rc == DCM_ENOMEM ? 1 : 2;
    }
    return 0;
}

int cmd_dump(int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'}, {0, 0, 0, 0}};
    int json = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "jh", opts, NULL)) != -1) {
        if (c == 'j') {
            json = 1;
        } else {
            fprintf(c == 'h' ? stdout : stderr,
                    "usage: dxhub dump [--json] FILE...\n"
                    "  prints each file's elements like dcmdump, or with --json one line of\n"
                    "  the DICOM JSON Model per file (binary values over 1024 bytes as BulkDataURI)\n");
            return c == 'h' ? 0 : 2;
        }
    }
    if (optind >= argc) {
        dx_errorf("dump", "no FILE given (usage: dxhub dump [--json] FILE...)");
        return 2;
    }
    int status = 0;
    for (int i = optind; i < argc; i++) {
        int rc = dump_one(argv[i], json);
        if (rc > status)
            status = rc;
    }
    fflush(stdout);
    return status;
}

/* `dxhub transcode` lives in cmd_pixel.c: it needs the pixel codecs. */
