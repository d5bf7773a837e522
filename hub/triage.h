/* triage.h — automatic triage of ECGs (hub-private): from the
 * measurements of codecs/ (ecg_measure), suggestions that decide how soon
 * a reader sees a study and whether the clinic must repeat it.  They are
 * shown to the reader as suggestions, never as a diagnosis; the reader's
 * signed report is the only interpretation dxhub hands out.
 *
 * Rules (each a flag):
 *   emergency — the task becomes STAT unless the clinic flagged it so:
 *     rate below TRIAGE_RATE_LOW or above TRIAGE_RATE_HIGH per minute;
 *     a pause: more than TRIAGE_PAUSE_MS without a QRS complex;
 *     wide-complex tachycardia: rate above 100 and QRS >= 120 ms;
 *     suspected STEMI pattern: ST elevation at J and still at J+60 ms in
 *       two contiguous leads (Cabrera limb order aVL, I, -aVR, II, aVF, III; V1..V6) of at
 *       least 0.1 mV, in V2-V3 0.2 mV (men >= 40 or unknown), 0.25 mV (men
 *       < 40), 0.15 mV (women) — the Fourth Universal Definition of
 *       Myocardial Infarction (Thygesen et al., Circulation 2018;138:e618);
 *       not applied when the QRS is 120 ms or wider (bundle branch block,
 *       paced or ventricular beats shift the ST segment by themselves)
 *   repeat — the clinic is asked at once to record the ECG again:
 *     a flat (disconnected), noisy or wandering lead, or no usable signal.
 * Rhythm and ST rules use only leads of good quality.
 */
#ifndef DXHUB_TRIAGE_H
#define DXHUB_TRIAGE_H

#include <stdint.h>
#include "codecs/codecs.h"
#include "hub/store.h"
#include "worklist/worklist.h"

#define TRIAGE_RATE_LOW  40.0   /* per minute */
#define TRIAGE_RATE_HIGH 150.0
#define TRIAGE_PAUSE_MS  3000.0
#define TRIAGE_WCT_RATE  100.0
#define TRIAGE_WCT_QRS   120.0  /* ms */

enum triage_flag {
    TRIAGE_RATE_LOW_F  = 1u << 0,
    TRIAGE_RATE_HIGH_F = 1u << 1,
    TRIAGE_PAUSE_F     = 1u << 2,
    TRIAGE_WCT_F       = 1u << 3,
    TRIAGE_STEMI_F     = 1u << 4,
    TRIAGE_EMERGENCY   = 0x1Fu,
    TRIAGE_FLAT_F      = 1u << 8,  /* a lead is flat: electrode off / disconnected */
    TRIAGE_NOISY_F     = 1u << 9,
    TRIAGE_WANDER_F    = 1u << 10,
    TRIAGE_NOSIGNAL_F  = 1u << 11, /* no lead carries an ECG */
    TRIAGE_REPEAT      = 0xF00u,
};
/* Words of the task's triage text that the report index reads back
 * (hub/store_lookup.c: an exam whose signal failed is not recognised). */
#define TRIAGE_REPEAT_WORDS     "repeat requested from the clinic"
#define TRIAGE_UNANALYSED_WORDS "could not be analysed automatically"

/* "rate-low", "rate-high", "pause", "wide-complex-tachycardia", "stemi",
 * "lead-flat", "lead-noisy", "lead-wander", "no-signal"; NULL otherwise. */
const char *triage_flag_name(unsigned flag);

typedef struct triage_patient {
    char sex;      /* 'M', 'F', 0 unknown */
    int  age;      /* years; -1 unknown */
} triage_patient;

typedef struct triage_result {
    unsigned flags;      /* enum triage_flag */
    char     text[256];  /* for the reader ("" when nothing to say): wl_task.triage */
    char     repeat[200];/* for the clinic when a TRIAGE_REPEAT flag is set: which leads, why */
    char     st_leads[64];
    double   st_max_uv;
} triage_result;

/* Apply the rules to m (patient may be NULL: sex and age unknown). */
void triage_ecg(const ecg_measurements *m, const triage_patient *patient, triage_result *out);

/* Age in whole years on date (both YYYYMMDD); -1 when either is unusable. */
int triage_age(const char *birth_date, const char *on_date);

/* Called by the store inside store_txn_study_completed for an ECG task
 * (t->kind == WL_ECG), in the transaction that makes the task: reads the
 * study's ECG instance through txn, measures it, stores the suggestions
 * with the task (wl_set_triage), raises it to STAT on an emergency
 * (wl_raise: no change when the clinic already asked for STAT), and on a
 * signal-quality problem queues an "alert" for the clinic's edge in the
 * same transaction (delivered when the link next wakes).  *t is updated.
 * An ECG that cannot be read or measured is not an error: the task keeps
 * a note saying so.  Returns 0, or an LMDB code / errno (positive, as the
 * store's other txn helpers) after which the transaction must be aborted.
 * (hub/store_triage.c) */
int triage_ecg_task(store *s, MDB_txn *txn, const store_study *st, wl_task *t, int64_t now_ms);

#endif
