/* bench_parse.c — in-process DICOM parsing speed: every file is read into
 * memory once, then all of them are parsed with dcm_parse (codecs.h) again
 * and again for about --seconds; no I/O, no output while timing.
 * bench/dicom.py runs it on the synthetic CT series and the corpus.
 *
 *   bench_parse [--seconds S] [--per-file] FILE...
 *
 * Prints JSON lines: with --per-file one per file, then always a summary
 *   {"bench":"parse","files":N,"bytes":B,"elements":E,"passes":P,"seconds":T,
 *    "files_per_s":..,"bytes_per_s":..,"gb_per_s":..,"elements_per_s":..}
 * bytes are file bytes (pixel data included: the parser borrows values from
 * the buffer, so large uncompressed images parse at memory-scan speed).
 * Exit 1 if a file cannot be read or parsed (named on stderr), 2 on usage. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "codecs/codecs.h"

typedef struct input {
    const char *path;
    uint8_t    *buf;
    size_t      len;
    size_t      elements; /* nodes of one parse */
} input;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int read_all(const char *path, uint8_t **out, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return -errno;
    if (fseek(fp, 0, SEEK_END) != 0) {
        fclose(fp);
        return -EIO;
    }
    long n = ftell(fp);
    rewind(fp);
    uint8_t *b = n > 0 ? malloc((size_t)n) : NULL;
    if (n <= 0 || !b || fread(b, 1, (size_t)n, fp) != (size_t)n) {
        free(b);
        fclose(fp);
        return n <= 0 ? -EINVAL : -EIO;
    }
    fclose(fp);
    *out = b;
    *len = (size_t)n;
    return 0;
}

/* Parse every input once; returns the number of elements parsed, or -1. */
static long long parse_pass(input *in, size_t n, int check)
{
    long long elements = 0;
    for (size_t i = 0; i < n; i++) {
        dcm_file *f = NULL;
        dcm_err err = {0};
        int rc = dcm_parse(in[i].buf, in[i].len, NULL, &f, &err);
        if (rc < 0) {
            if (check)
                fprintf(stderr, "bench_parse: %s: %s\n", in[i].path,
                        err.msg[0] ? err.msg : dcm_strerror(rc));
            return -1;
        }
        in[i].elements = dcm_count(f);
        elements += (long long)in[i].elements;
        dcm_free(&f);
    }
    return elements;
}

static void put_json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            putchar('\\');
        if ((unsigned char)*s >= 0x20)
            putchar(*s);
    }
    putchar('"');
}

static void report(const char *name, size_t files, size_t bytes, long long elements,
                   long long passes, double secs)
{
    double b = (double)bytes * (double)passes;
    printf("{\"bench\":\"parse\",");
    if (name) {
        printf("\"file\":");
        put_json_string(name);
        putchar(',');
    }
    printf("\"files\":%zu,\"bytes\":%zu,\"elements\":%lld,"
           "\"passes\":%lld,\"seconds\":%.4f,\"files_per_s\":%.1f,\"bytes_per_s\":%.0f,"
           "\"gb_per_s\":%.3f,\"elements_per_s\":%.0f}\n",
           files, bytes, elements,
           passes, secs, (double)files * (double)passes / secs, b / secs, b / secs / 1e9,
           (double)elements * (double)passes / secs);
}

/* Parse in[0..n) repeatedly for at least secs seconds (whole passes). */
static void measure(input *in, size_t n, double secs, const char *name)
{
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += in[i].len;
    long long elements = parse_pass(in, n, 0); /* warm caches */
    long long passes = 0;
    double t0 = now(), t = t0;
    do {
        parse_pass(in, n, 0);
        passes++;
        t = now();
    } while (t - t0 < secs);
    report(name, n, bytes, elements, passes, t - t0);
}

int main(int argc, char **argv)
{
    double secs = 1.0;
    int per_file = 0, first = 1;
    for (; first < argc && !strncmp(argv[first], "--", 2); first++) {
        if (!strcmp(argv[first], "--seconds") && first + 1 < argc) {
            secs = atof(argv[++first]);
        } else if (!strcmp(argv[first], "--per-file")) {
            per_file = 1;
        } else {
            fprintf(stderr, "usage: bench_parse [--seconds S] [--per-file] FILE...\n");
            return 2;
        }
    }
    if (first >= argc || !(secs > 0)) {
        fprintf(stderr, "usage: bench_parse [--seconds S] [--per-file] FILE...\n");
        return 2;
    }
    size_t n = (size_t)(argc - first);
    input *in = calloc(n, sizeof *in);
    if (!in)
        return 1;
    int status = 0;
    for (size_t i = 0; i < n; i++) {
        in[i].path = argv[first + (int)i];
        int rc = read_all(in[i].path, &in[i].buf, &in[i].len);
        if (rc < 0) {
            fprintf(stderr, "bench_parse: %s: cannot read: %s\n", in[i].path, strerror(-rc));
            status = 1;
            goto done;
        }
    }
    if (parse_pass(in, n, 1) < 0) { /* every file must parse */
        status = 1;
        goto done;
    }
    if (per_file)
        for (size_t i = 0; i < n; i++)
            measure(&in[i], 1, secs / (double)n > 0.05 ? secs / (double)n : 0.05, in[i].path);
    measure(in, n, secs, NULL);
done:
    for (size_t i = 0; i < n; i++)
        free(in[i].buf);
    free(in);
    fflush(stdout);
    return status;
}
