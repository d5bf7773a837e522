/* bench_ecg_measure.c — how long ecg_measure takes on whole records (the
 * file read once; only the analysis timed: QRS detection, rhythm, quality,
 * median beat, delineation).  bench/ecgmeasure.py runs it.
 *
 *   bench_ecg_measure [--seconds S] FILE...
 *
 * One line per file: "measure NAME LEADS SAMPLES RATE RUNS BEST_MS
 * MEDIAN_MS BEATS" — CPU time of this thread per analysis, the best and
 * the median of RUNS runs (at least S seconds in all, default 0.5). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "codecs/codecs.h"

#define MAX_RUNS 4000

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static int bench_one(const char *path, double min_seconds, double *times)
{
    ecg_record *r = NULL;
    dcm_err err = {0};
    int source = 0;
    if (ecg_open(path, NULL, &r, &source, &err) < 0) {
        fprintf(stderr, "bench_ecg_measure: %s: %s\n", path, err.msg);
        return 1;
    }
    size_t runs = 0, beats = 0;
    double total = 0;
    while (runs < MAX_RUNS && (runs < 5 || total < min_seconds)) {
        ecg_measurements m;
        double t0 = now();
        int rc = ecg_measure(r, NULL, &m, &err);
        double dt = now() - t0;
        beats = m.n_beats;
        ecg_measure_release(&m);
        if (rc < 0) {
            fprintf(stderr, "bench_ecg_measure: %s: %s\n", path, err.msg);
            ecg_free(&r);
            return 1;
        }
        times[runs++] = dt;
        total += dt;
    }
    qsort(times, runs, sizeof *times, cmp_double);
    printf("measure %s %zu %zu %g %zu %.4f %.4f %zu\n", base_name(path), r->n_leads, r->n_samples, r->rate, runs,
           times[0] * 1e3, times[runs / 2] * 1e3, beats);
    ecg_free(&r);
    return 0;
}

int main(int argc, char **argv)
{
    double min_seconds = 0.5;
    int status = 0, files = 0;
    double *times = malloc(MAX_RUNS * sizeof *times);
    if (!times)
        return 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
            min_seconds = atof(argv[++i]);
            continue;
        }
        status |= bench_one(argv[i], min_seconds, times);
        files++;
    }
    free(times);
    if (!files) {
        fprintf(stderr, "usage: bench_ecg_measure [--seconds S] FILE...\n");
        return 2;
    }
    return status;
}
