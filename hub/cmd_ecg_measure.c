/* cmd_ecg_measure.c — `dxhub ecg --measure [--json]`: an ECG's
 * measurements (codecs' ecg_measure) and the triage suggestions the hub
 * would store with its reading task (hub/triage.c), as a table or as one
 * JSON object (values that could not be measured are null). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "codecs/codecs.h"
#include "hub/cmd.h"
#include "hub/hub.h"
#include "hub/triage.h"

static json_t *num(double v, int decimals)
{
    if (isnan(v) || isinf(v))
        return json_null();
    double f = pow(10.0, decimals);
    return json_real(round(v * f) / f);
}

static void set_num(json_t *o, const char *key, double v, int decimals)
{
    json_object_set_new(o, key, num(v, decimals));
}

static json_t *lead_json(const ecg_lead_measure *l)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(l->name));
    json_object_set_new(o, "quality", json_string(ecg_lead_quality_name(l->quality)));
    set_num(o, "range_uv", l->range_uv, 1);
    set_num(o, "noise_uv", l->noise_uv, 1);
    set_num(o, "wander_uv", l->wander_uv, 1);
    set_num(o, "qrs_uv", l->qrs_uv, 1);
    set_num(o, "st_j_uv", l->st_j_uv, 1);
    set_num(o, "st_uv", l->st_uv, 1);
    return o;
}

static json_t *triage_json(const triage_result *tr)
{
    json_t *flags = json_array();
    for (unsigned bit = 1; bit && bit <= TRIAGE_REPEAT; bit <<= 1)
        if ((tr->flags & bit) && triage_flag_name(bit))
            json_array_append_new(flags, json_string(triage_flag_name(bit)));
    return json_pack("{s:o,s:b,s:b,s:s,s:s,s:s}", "flags", flags, "emergency", (tr->flags & TRIAGE_EMERGENCY) != 0,
                     "repeat", (tr->flags & TRIAGE_REPEAT) != 0, "text", tr->text, "repeat_reason", tr->repeat,
                     "st_leads", tr->st_leads);
}

static json_t *measure_json(const ecg_measurements *m, const triage_result *tr)
{
    json_t *j = json_object(), *beats = json_array(), *leads = json_array();
    set_num(j, "rate", m->rate, 3);
    set_num(j, "duration_ms", m->duration_ms, 1);
    json_object_set_new(j, "detect_leads", json_integer((json_int_t)m->detect_leads));
    json_object_set_new(j, "n_beats", json_integer((json_int_t)m->n_beats));
    for (size_t i = 0; i < m->n_beats; i++)
        json_array_append_new(beats, json_integer(m->beats[i]));
    json_object_set_new(j, "beats", beats);
    static const struct { const char *key; size_t off; } fields[] = {
        {"hr_bpm", offsetof(ecg_measurements, hr_bpm)},
        {"rr_mean_ms", offsetof(ecg_measurements, rr_mean_ms)},
        {"rr_min_ms", offsetof(ecg_measurements, rr_min_ms)},
        {"rr_max_ms", offsetof(ecg_measurements, rr_max_ms)},
        {"rr_sdnn_ms", offsetof(ecg_measurements, rr_sdnn_ms)},
        {"rr_rmssd_ms", offsetof(ecg_measurements, rr_rmssd_ms)},
        {"longest_pause_ms", offsetof(ecg_measurements, longest_pause_ms)},
        {"pr_ms", offsetof(ecg_measurements, pr_ms)},
        {"qrs_ms", offsetof(ecg_measurements, qrs_ms)},
        {"qt_ms", offsetof(ecg_measurements, qt_ms)},
        {"qtc_bazett_ms", offsetof(ecg_measurements, qtc_bazett_ms)},
        {"qtc_fridericia_ms", offsetof(ecg_measurements, qtc_fridericia_ms)},
        {"axis_deg", offsetof(ecg_measurements, axis_deg)},
        {"p_onset_ms", offsetof(ecg_measurements, p_onset_ms)},
        {"qrs_onset_ms", offsetof(ecg_measurements, qrs_onset_ms)},
        {"qrs_offset_ms", offsetof(ecg_measurements, qrs_offset_ms)},
        {"t_end_ms", offsetof(ecg_measurements, t_end_ms)},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        double v;
        memcpy(&v, (const char *)m + fields[i].off, sizeof v);
        set_num(j, fields[i].key, v, 1);
    }
    json_object_set_new(j, "median_beats", json_integer((json_int_t)m->median_beats));
    json_object_set_new(j, "p_wave", json_boolean(m->p_wave));
    for (size_t k = 0; k < m->n_leads; k++)
        json_array_append_new(leads, lead_json(&m->leads[k]));
    json_object_set_new(j, "leads", leads);
    json_object_set_new(j, "triage", triage_json(tr));
    return j;
}

static void print_ms(const char *label, double v)
{
    if (isnan(v))
        printf("%s -", label);
    else
        printf("%s %.0f ms", label, v);
}

static void measure_text(const ecg_measurements *m, const triage_result *tr)
{
    printf("%g Hz, %.3f s; QRS detection on %zu lead(s): %zu beats\n", m->rate, m->duration_ms / 1000.0,
           m->detect_leads, m->n_beats);
    if (!isnan(m->hr_bpm))
        printf("heart rate %.0f/min; RR mean %.0f ms (min %.0f, max %.0f), SDNN %.1f ms, RMSSD %.1f ms\n", m->hr_bpm,
               m->rr_mean_ms, m->rr_min_ms, m->rr_max_ms, m->rr_sdnn_ms, m->rr_rmssd_ms);
    if (!isnan(m->longest_pause_ms))
        printf("longest time without a QRS complex: %.0f ms\n", m->longest_pause_ms);
    printf("median beat of %zu beats:", m->median_beats);
    print_ms(" PR", m->pr_ms);
    print_ms(", QRS", m->qrs_ms);
    print_ms(", QT", m->qt_ms);
    print_ms(", QTc Bazett", m->qtc_bazett_ms);
    print_ms(", Fridericia", m->qtc_fridericia_ms);
    if (isnan(m->axis_deg))
        printf(", axis -\n");
    else
        printf(", axis %.0f deg\n", m->axis_deg);
    printf("%-6s %-8s %9s %9s %10s %8s %8s %8s\n", "lead", "quality", "range_uV", "noise_uV", "wander_uV", "QRS_uV",
           "STj_uV", "ST60_uV");
    for (size_t k = 0; k < m->n_leads; k++) {
        const ecg_lead_measure *l = &m->leads[k];
        printf("%-6s %-8s %9.0f %9.1f %10.0f %8.0f %8.0f %8.0f\n", l->name, ecg_lead_quality_name(l->quality),
               l->range_uv, l->noise_uv, l->wander_uv, l->qrs_uv, l->st_j_uv, l->st_uv);
    }
    printf("triage: %s\n", tr->text[0] ? tr->text : "no suggestion");
}

int hub_ecg_measure_json(const struct ecg_record *r, char **out, char *errbuf, size_t errlen)
{
    *out = NULL;
    ecg_measurements m;
    dcm_err err = {0};
    int rc = ecg_measure(r, NULL, &m, &err);
    if (rc < 0) {
        snprintf(errbuf, errlen, "cannot measure: %s", err.msg[0] ? err.msg : ecg_strerror(rc));
        ecg_measure_release(&m);
        return rc;
    }
    triage_result tr;
    triage_ecg(&m, NULL, &tr);
    json_t *j = measure_json(&m, &tr);
    *out = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    ecg_measure_release(&m);
    if (!*out) {
        snprintf(errbuf, errlen, "out of memory");
        return DCM_ENOMEM;
    }
    return 0;
}

int cmd_ecg_measure(const struct ecg_record *r, int json)
{
    ecg_measurements m;
    dcm_err err = {0};
    int rc = ecg_measure(r, NULL, &m, &err);
    if (rc < 0) {
        dx_errorf("ecg", "cannot measure: %s", err.msg[0] ? err.msg : ecg_strerror(rc));
        ecg_measure_release(&m);
        return rc == DCM_ENOMEM ? 1 : 2;
    }
    triage_result tr;
    triage_ecg(&m, NULL, &tr);
    int status = 0;
    if (json) {
        json_t *j = measure_json(&m, &tr);
        char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
        if (s)
            printf("%s\n", s);
        else
            status = 1;
        free(s);
        json_decref(j);
    } else {
        measure_text(&m, &tr);
    }
    ecg_measure_release(&m);
    return status;
}
