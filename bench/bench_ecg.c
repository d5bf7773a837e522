/* bench_ecg.c — the ECG codec measured on real records: compressed size,
 * encode and decode speed as multiples of real time, and an exact
 * round-trip check.  bench/ecg.sh runs it beside FLAC.
 *
 *   bench_ecg [--raw-dir DIR] [--seconds S] FILE...
 *
 * One line per file: "ecg NAME LEADS SAMPLES RATE RAW_BYTES CODED_BYTES
 * ENCODE_X DECODE_X ROUNDTRIP" (RAW_BYTES: 16-bit samples).  With
 * --raw-dir, it also writes each record as raw signed 16-bit little-endian
 * interleaved samples, in files of at most 8 leads (FLAC's channel limit):
 * DIR/NAME.K.raw with K the first lead, for the peer to compress. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "codecs/codecs.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static int write_raw(const ecg_record *r, const char *dir, const char *name)
{
    for (size_t first = 0; first < r->n_leads; first += 8) {
        size_t n = r->n_leads - first < 8 ? r->n_leads - first : 8;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.%zu.raw", dir, name, first);
        FILE *fp = fopen(path, "wb");
        if (!fp)
            return -1;
        for (size_t t = 0; t < r->n_samples; t++)
            for (size_t k = first; k < first + n; k++) {
                int32_t v = r->leads[k].samples[t];
                if (v < -32768 || v > 32767) {
                    fclose(fp);
                    return -1;
                }
                uint8_t b[2] = {(uint8_t)(v & 0xFF), (uint8_t)((uint32_t)v >> 8)};
                fwrite(b, 1, 2, fp);
            }
        if (fclose(fp) != 0)
            return -1;
    }
    return 0;
}

static int same(const ecg_record *a, const ecg_record *b)
{
    if (a->n_leads != b->n_leads || a->n_samples != b->n_samples || a->rate != b->rate)
        return 0;
    for (size_t k = 0; k < a->n_leads; k++) {
        if (strcmp(a->leads[k].name, b->leads[k].name) || a->leads[k].scale != b->leads[k].scale ||
            a->leads[k].baseline != b->leads[k].baseline)
            return 0;
        if (memcmp(a->leads[k].samples, b->leads[k].samples, a->n_samples * sizeof(int32_t)))
            return 0;
    }
    return 1;
}

int main(int argc, char **argv)
{
    const char *raw_dir = NULL;
    double min_seconds = 0.5;
    int status = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--raw-dir") && i + 1 < argc) {
            raw_dir = argv[++i];
            continue;
        }
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
            min_seconds = atof(argv[++i]);
            continue;
        }
        const char *path = argv[i];
        ecg_record *r = NULL;
        dcm_err err = {0};
        int rc = ecg_open(path, NULL, &r, NULL, &err);
        if (rc < 0) {
            fprintf(stderr, "bench_ecg: %s: %s\n", path, err.msg[0] ? err.msg : ecg_strerror(rc));
            status = 1;
            continue;
        }
        char name[256];
        snprintf(name, sizeof name, "%s", base_name(path));
        char *dot = strrchr(name, '.');
        if (dot && dot != name)
            *dot = '\0';
        if (raw_dir && write_raw(r, raw_dir, name) < 0) {
            fprintf(stderr, "bench_ecg: %s: cannot write raw samples for the peer\n", path);
            status = 1;
        }
        /* CPU time of this thread, best of repeated runs: the least disturbed by
         * whatever else the machine is doing. */
        double best_enc = 1e30, best_dec = 1e30, spent = 0;
        uint8_t *coded = NULL;
        size_t coded_len = 0;
        int ok = 1, runs = 0;
        while (ok && (runs < 3 || spent < min_seconds) && runs < 1000) {
            free(coded);
            double t0 = now();
            rc = ecg_encode_buf(r, &coded, &coded_len, &err);
            double t1 = now();
            ecg_record *back = NULL;
            int rc2 = rc == 0 ? ecg_decode(coded, coded_len, 0, &back, &err) : rc;
            double t2 = now();
            if (rc < 0 || rc2 < 0 || !same(r, back)) {
                fprintf(stderr, "bench_ecg: %s: round trip FAILED: %s\n", path, err.msg);
                ok = 0;
            }
            ecg_free(&back);
            if (t1 - t0 < best_enc)
                best_enc = t1 - t0;
            if (t2 - t1 < best_dec)
                best_dec = t2 - t1;
            spent += t2 - t0;
            runs++;
        }
        double secs = (double)r->n_samples / r->rate;
        printf("ecg %s %zu %zu %.15g %zu %zu %.1f %.1f %s\n", name, r->n_leads, r->n_samples, r->rate,
               r->n_leads * r->n_samples * 2, coded_len, secs / best_enc, secs / best_dec, ok ? "ok" : "FAILED");
        if (!ok)
            status = 1;
        free(coded);
        ecg_free(&r);
    }
    return status;
}
