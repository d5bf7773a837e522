/* fuzz_ecg_measure.c — ECG measurements on hostile samples.  The input is
 * a tiny header and the samples: byte 0 picks the rate (100, 128, 200,
 * 250, 360, 500 or 1000 Hz), byte 1 the leads (1-4) and whether a lead is
 * in mmHg, the rest are 16-bit little-endian samples interleaved by lead,
 * repeated to fill between one and three seconds.  Whatever the samples,
 * ecg_measure returns 0, beats are ascending and inside the record, and
 * every interval is NaN or inside the window it was measured in. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "codecs/codecs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const double rates[] = {100, 128, 200, 250, 360, 500, 1000};
    if (size < 4)
        return 0;
    double rate = rates[data[0] % 7];
    size_t leads = 1 + (data[1] & 3), words = (size - 2) / 2;
    size_t per_lead = words / leads;
    if (per_lead == 0)
        return 0;
    size_t n = (size_t)rate * (1 + (data[1] >> 2) % 3);
    ecg_record *r = ecg_new(leads, n, rate);
    if (!r)
        return 0;
    for (size_t k = 0; k < leads; k++) {
        memcpy(r->leads[k].unit, "uV", 3);
        r->leads[k].scale = 1 + (data[1] >> 4);
    }
    if (data[1] & 0x80)
        memcpy(r->leads[leads - 1].unit, "mmHg", 5);
    for (size_t t = 0; t < n; t++)
        for (size_t k = 0; k < leads; k++) {
            size_t w = ((t % per_lead) * leads + k) * 2 + 2;
            r->leads[k].samples[t] = (int16_t)(data[w] | data[w + 1] << 8);
        }
    ecg_measurements m;
    dcm_err err = {0};
    if (ecg_measure(r, NULL, &m, &err) != 0)
        abort();
    for (size_t b = 0; b < m.n_beats; b++)
        if (m.beats[b] >= n || (b && m.beats[b] <= m.beats[b - 1]))
            abort();
    double dur = m.duration_ms;
    const double iv[] = {m.pr_ms, m.qrs_ms, m.qt_ms, m.longest_pause_ms, m.rr_mean_ms};
    for (size_t i = 0; i < sizeof iv / sizeof iv[0]; i++)
        if (!isnan(iv[i]) && (iv[i] < 0 || iv[i] > dur + 1))
            abort();
    if (!isnan(m.axis_deg) && (m.axis_deg <= -180.0 || m.axis_deg > 180.0))
        abort();
    ecg_measure_release(&m);
    ecg_free(&r);
    return 0;
}
