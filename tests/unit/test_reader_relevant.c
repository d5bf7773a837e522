/* test_reader_relevant.c — which prior a workstation fetches ahead
 * (reader_relevant_prior): this hub's newest earlier study of the task's
 * modality, or a later exam another hub holds whose report's signature
 * and images check out there.
 *
 * The store is a real LMDB store holding the corpus's CT_small.dcm (the
 * task's study, 2004-01-19) and a copy of it dated 2003-12-01 under other
 * UIDs (the patient's earlier CT here).  The other hubs' exams come as a
 * PRIORS lookup answer, as GET /api/v1/reports gives it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>
#include "hub/reader_queries.h"
#include "hub/store.h"

static char   corpus[1024], tmpdir[256];
static store *st;
static wl_task task;
static char   local_prior[65];

/* data with every occurrence of from replaced by to (the same length) */
static void replace_all(char *data, size_t n, const char *from, const char *to)
{
    size_t k = strlen(from);
    for (size_t i = 0; i + k <= n; i++)
        if (!memcmp(data + i, from, k))
            memcpy(data + i, to, k);
}

static void put(const char *path, char study_uid[65])
{
    store_put_result r;
    int64_t now = (int64_t)time(NULL) * 1000;
    assert_int_equal(store_put_file(st, path, "edge:clinic1", now, &r), 0);
    store_marker m = {.expected = 1, .priority = 2}; /* arrived whole: not a study still receiving */
    assert_int_equal(store_study_marker(st, r.inst.study_uid, &m, now), 0);
    snprintf(study_uid, 65, "%s", r.inst.study_uid);
}

static int setup(void **state)
{
    (void)state;
    const char *c = getenv("DXHUB_CORPUS");
    snprintf(corpus, sizeof corpus, "%s", c ? c : "../shared/corpus");
    snprintf(tmpdir, sizeof tmpdir, "/tmp/dxhub-test-relevant-XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    char dir[600], err[256], path[1400], copy[700];
    snprintf(dir, sizeof dir, "%s/hub", tmpdir);
    store_config cfg = {.dir = dir, .map_size = 64 << 20};
    if (store_open(&cfg, &st, err, sizeof err))
        return -1;
    snprintf(path, sizeof path, "%s/dicom/explicit_le/CT_small.dcm", corpus);
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    static char data[1 << 20];
    size_t n = fread(data, 1, sizeof data, f);
    fclose(f);
    /* the date is in the file's UIDs too: the copy is another study and instance */
    replace_all(data, n, "20040119", "20031201");
    snprintf(copy, sizeof copy, "%s/earlier.dcm", tmpdir);
    f = fopen(copy, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f))
        return -1;
    put(path, task.study_uid);
    put(copy, local_prior);
    snprintf(task.modality, sizeof task.modality, "CT");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    store_close(&st);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd);
}

/* One exam of a lookup answer. */
static json_t *exam(const char *hub, const char *report, const char *study, const char *modality, const char *date,
                    int signature_ok, int images_ok)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:{s:b,s:[{s:s,s:b},{s:s,s:b}]}}", "hub", hub, "report_id", report,
                     "study_uid", study, "modality", modality, "study_date", date, "recognition", "recognised",
                     signature_ok && images_ok, "rules", "rule", "images_intact", "ok", images_ok, "rule",
                     "signature", "ok", signature_ok);
}

/* What reader_relevant_prior names with these exams (NULL-terminated) from
 * the other hubs in this hub's ("lead") lookup answer, as "study hub report". */
static const char *relevant(json_t *first, ...)
{
    static char out[300];
    json_t *exams = json_array();
    va_list ap;
    va_start(ap, first);
    for (json_t *e = first; e; e = va_arg(ap, json_t *))
        json_array_append_new(exams, e);
    va_end(ap);
    json_t *lookup = json_pack("{s:s,s:o}", "hub", "lead", "exams", exams);
    char *text = json_dumps(lookup, JSON_COMPACT);
    json_decref(lookup);
    json_t *p = reader_relevant_prior(st, &task, text, strlen(text));
    free(text);
    const char *hub = json_string_value(json_object_get(p, "hub"));
    snprintf(out, sizeof out, "%s %s %s", p ? json_string_value(json_object_get(p, "study")) : "none",
             hub ? hub : "here", hub ? json_string_value(json_object_get(p, "report_id")) : "-");
    json_decref(p);
    return out;
}

#define PEER "1.2.826.0.1.3680043.8.498.77"
#define HERE (local_prior)

static void test_this_hubs_earlier_ct_without_other_hubs(void **state)
{
    (void)state;
    json_t *p = reader_relevant_prior(st, &task, NULL, 0);
    assert_string_equal(json_string_value(json_object_get(p, "study")), HERE);
    assert_null(json_object_get(p, "hub"));
    json_decref(p);
    char want[100];
    snprintf(want, sizeof want, "%s here -", HERE);
    assert_string_equal(relevant(NULL), want);
    p = reader_relevant_prior(st, &task, "{not json", 9); /* a garbled answer: this hub's own still */
    assert_string_equal(json_string_value(json_object_get(p, "study")), HERE);
    json_decref(p);
}

static void test_a_later_exam_at_the_referring_hub_is_named_with_its_report(void **state)
{
    (void)state;
    assert_string_equal(relevant(exam("county", "r-1", PEER ".1", "CT", "20040105", 1, 1), NULL),
                        PEER ".1 county r-1");
    /* the newest of several, in either order */
    assert_string_equal(relevant(exam("county", "r-1", PEER ".1", "CT", "20040105", 1, 1),
                                 exam("town", "r-2", PEER ".2", "CT", "20040110", 1, 1), NULL),
                        PEER ".2 town r-2");
    assert_string_equal(relevant(exam("town", "r-2", PEER ".2", "CT", "20040110", 1, 1),
                                 exam("county", "r-1", PEER ".1", "CT", "20040105", 1, 1), NULL),
                        PEER ".2 town r-2");
}

static void test_a_peer_exam_is_not_named_when_it_is_not_this_ones_prior(void **state)
{
    (void)state;
    char here[100];
    snprintf(here, sizeof here, "%s here -", HERE);
    /* its report's signature, or its images, fail at that hub */
    assert_string_equal(relevant(exam("county", "r-1", PEER ".1", "CT", "20040105", 0, 1), NULL), here);
    assert_string_equal(relevant(exam("county", "r-1", PEER ".1", "CT", "20040105", 1, 0), NULL), here);
    /* later than the task's study; another modality; no newer than this hub's */
    assert_string_equal(relevant(exam("county", "r-1", PEER ".1", "CT", "20040120", 1, 1), NULL), here);
    assert_string_equal(relevant(exam("county", "r-1", PEER ".1", "MR", "20040105", 1, 1), NULL), here);
    assert_string_equal(relevant(exam("county", "r-1", PEER ".1", "CT", "20031201", 1, 1), NULL), here);
    /* this hub's own exam in the answer; the task's own study */
    assert_string_equal(relevant(exam("lead", "r-1", PEER ".1", "CT", "20040105", 1, 1), NULL), here);
    assert_string_equal(relevant(exam("county", "r-1", task.study_uid, "CT", "20040105", 1, 1), NULL), here);
    /* named in a form this hub would refuse back */
    assert_string_equal(relevant(exam("county", "../r-1", PEER ".1", "CT", "20040105", 1, 1), NULL), here);
    assert_string_equal(relevant(exam("county/x", "r-1", PEER ".1", "CT", "20040105", 1, 1), NULL), here);
    assert_string_equal(relevant(exam("county", "r-1", "1.2.x", "CT", "20040105", 1, 1), NULL), here);
    /* another hub's answer of the wrong shape: fields of other types, an exam that is not an object */
    assert_string_equal(relevant(json_pack("{s:i,s:s,s:i,s:[s]}", "hub", 7, "study_uid", PEER ".1", "recognition", 1,
                                           "modality", "CT"),
                                 json_string("exam"), NULL),
                        here);
}

static void test_no_prior_for_an_unknown_study_or_a_task_without_modality(void **state)
{
    (void)state;
    wl_task t = task;
    t.modality[0] = 0;
    assert_null(reader_relevant_prior(st, &t, NULL, 0));
    snprintf(t.modality, sizeof t.modality, "CT");
    snprintf(t.study_uid, sizeof t.study_uid, "1.2.3.4");
    assert_null(reader_relevant_prior(st, &t, NULL, 0));
    snprintf(t.modality, sizeof t.modality, "MR"); /* nothing of that modality here */
    snprintf(t.study_uid, sizeof t.study_uid, "%s", task.study_uid);
    assert_null(reader_relevant_prior(st, &t, NULL, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_this_hubs_earlier_ct_without_other_hubs),
        cmocka_unit_test(test_a_later_exam_at_the_referring_hub_is_named_with_its_report),
        cmocka_unit_test(test_a_peer_exam_is_not_named_when_it_is_not_this_ones_prior),
        cmocka_unit_test(test_no_prior_for_an_unknown_study_or_a_task_without_modality),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
