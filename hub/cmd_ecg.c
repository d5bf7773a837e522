/* cmd_ecg.c — `dxhub ecg`: read an ECG (DICOM waveform, WFDB record,
 * HL7 aECG, SCP-ECG, dxhub ECG stream) and print its leads, rate, duration and
 * per-lead ranges; optionally write it as a dxhub ECG stream.  With
 * --measure: its measurements and triage suggestions (cmd_ecg_measure.c). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "codecs/codecs.h"
#include "hub/cmd.h"

static void usage(FILE *fp)
{
    fprintf(fp, "usage: dxhub ecg [--json] [--measure] [--group N] [--encode OUT] [--raw OUT] FILE\n"
                "  prints the leads, sampling rate, duration and per-lead ranges of an ECG:\n"
                "  a DICOM waveform (12-lead, General ECG, hemodynamic ...), a WFDB record\n"
                "  (FILE.hea, FILE.dat or the record name), an HL7 aECG XML file, an SCP-ECG\n"
                "  file (default-Huffman rhythm data) or a dxhub ECG stream.\n"
                "  --json        one JSON object instead of the table\n"
                "  --measure     measurements instead of the summary: QRS complexes, heart rate,\n"
                "                RR variability, PR, QRS, QT, QTc (Bazett, Fridericia), frontal\n"
                "                axis, ST level and signal quality per lead, and the triage\n"
                "                suggestions the hub would make (never a diagnosis)\n"
                "  --group N     the N-th multiplex group / sequence set (0: the first, the rhythm)\n"
                "  --encode OUT  also write the record losslessly compressed (dxhub ECG stream)\n"
                "  --raw OUT     also write the samples as little-endian int32, time-major\n"
                "                (sample 0 of every lead, then sample 1 ...), for other tools\n");
}

static int write_raw(const ecg_record *r, const char *path)
{
    FILE *fp = fopen(path, "wb");
    if (!fp) {
        dx_errorf("ecg", "%s: cannot create", path);
        return 1;
    }
    int ok = 1;
    for (size_t t = 0; ok && t < r->n_samples; t++)
        for (size_t k = 0; ok && k < r->n_leads; k++) {
            uint32_t v = (uint32_t)r->leads[k].samples[t];
            unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                                  (unsigned char)(v >> 24)};
            ok = fwrite(b, 1, 4, fp) == 4;
        }
    if (fclose(fp) != 0 || !ok) {
        dx_errorf("ecg", "%s: write failed", path);
        return 1;
    }
    return 0;
}

static int write_stream(const ecg_record *r, const char *path)
{
    FILE *fp = fopen(path, "wb");
    if (!fp) {
        dx_errorf("ecg", "%s: cannot create", path);
        return 1;
    }
    dcm_err err = {0};
    int rc = ecg_encode(r, dcm_sink_stdio(fp), &err);
    if (fclose(fp) != 0 && rc == 0)
        rc = DCM_EIO;
    if (rc < 0) {
        dx_errorf("ecg", "%s: %s", path, err.msg[0] ? err.msg : ecg_strerror(rc));
        return rc == ECG_ERANGE ? 2 : 1;
    }
    return 0;
}

int cmd_ecg(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"measure", no_argument, NULL, 'm'},
                                         {"group", required_argument, NULL, 'g'},
                                         {"encode", required_argument, NULL, 'e'},
                                         {"raw", required_argument, NULL, 'r'},
                                         {"help", no_argument, NULL, 'h'},
                                         {0, 0, 0, 0}};
    int json = 0, measure = 0, c;
    ecg_read_opts ro = {0};
    const char *encode = NULL, *raw = NULL;
    optind = 1;
    while ((c = getopt_long(argc, argv, "jmg:e:r:h", opts, NULL)) != -1) {
        if (c == 'j') {
            json = 1;
        } else if (c == 'm') {
            measure = 1;
        } else if (c == 'g') {
            char *end;
            long g = strtol(optarg, &end, 10);
            if (*end || g < 0 || g > 65535) {
                dx_errorf("ecg", "--group wants a number >= 0, not '%s'", optarg);
                return 2;
            }
            ro.group = (int)g;
        } else if (c == 'e') {
            encode = optarg;
        } else if (c == 'r') {
            raw = optarg;
        } else {
            usage(c == 'h' ? stdout : stderr);
            return c == 'h' ? 0 : 2;
        }
    }
    if (argc - optind != 1) {
        dx_errorf("ecg", "need one FILE (usage: dxhub ecg [--json] [--measure] [--group N] [--encode OUT] [--raw OUT] FILE)");
        return 2;
    }
    const char *path = argv[optind];
    ecg_record *r = NULL;
    dcm_err err = {0};
    int source = 0;
    int rc = ecg_open(path, &ro, &r, &source, &err);
    if (rc < 0) {
        dx_errorf("ecg", "%s: %s%s%s", path, source ? ecg_source_name(source) : "",
                  source ? ": " : "", err.msg[0] ? err.msg : ecg_strerror(rc));
        return rc == DCM_ENOMEM ? 1 : 2; /* unreadable or unsupported input: bad input */
    }
    if (!json)
        printf("# %s\n", path);
    int status;
    if (measure) {
        status = cmd_ecg_measure(r, json);
    } else {
        rc = ecg_summary(r, json, dcm_sink_stdio(stdout), &err);
        status = rc < 0 ? 1 : 0;
    }
    if (status == 0 && encode)
        status = write_stream(r, encode);
    if (status == 0 && raw)
        status = write_raw(r, raw);
    ecg_free(&r);
    fflush(stdout);
    return status;
}
