/* test_task_json.c — the TASK/CLAIMED header written as text
 * (hub/task_json.h) against task_to_json, the jansson-built task object it
 * replaces on the reader link's hot path: for tasks with every optional
 * field, none, texts with quotes, backslashes, control bytes and Chinese,
 * both parse to equal JSON; a text that is not UTF-8 and a buffer too small
 * are refused (-1), so the caller falls back to jansson. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include "hub/reader_link.h"
#include "hub/task_json.h"

static wl_task sample(void)
{
    wl_task t;
    memset(&t, 0, sizeof t);
    t.id = 123456789012ull;
    snprintf(t.study_uid, sizeof t.study_uid, "1.2.840.113619.2.55.3.604688119");
    t.kind = WL_IMAGING;
    t.priority = WL_URGENT;
    t.clinic_priority = WL_ROUTINE;
    t.referral = 1;
    snprintf(t.modality, sizeof t.modality, "CT");
    snprintf(t.body_part, sizeof t.body_part, "CHEST");
    snprintf(t.facility, sizeof t.facility, "clinic-7");
    t.arrival_ms = 1763900000123;
    t.due_ms = 1763901800123;
    t.version = 1;
    return t;
}

/* task_json_header's text parses to what jansson builds from the same task. */
static void assert_same(const wl_task *t, const store_study *st, int64_t lease, json_t *req)
{
    char text[TASK_JSON_MAX];
    int len = task_json_header(text, sizeof text, t, st, lease, req);
    assert_true(len > 0);
    assert_int_equal((size_t)len, strlen(text));
    json_error_t je;
    json_t *got = json_loadb(text, (size_t)len, JSON_REJECT_DUPLICATES, &je);
    if (!got)
        fail_msg("not JSON (%s): %s", je.text, text);
    json_t *want = json_pack("{s:o,s:i}", "task", task_to_json(t, st), "v", 1);
    if (lease >= 0)
        json_object_set_new(want, "lease_until", json_integer(lease));
    if (req)
        json_object_set(want, "req", req);
    if (!json_equal(got, want)) {
        char *w = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS);
        fail_msg("differs:\n got  %s\n want %s", text, w);
    }
    json_decref(got);
    json_decref(want);
}

static void test_plain_task_and_claim_answer(void **state)
{
    (void)state;
    wl_task t = sample();
    assert_same(&t, NULL, -1, NULL);
    json_t *req = json_integer(42);
    assert_same(&t, NULL, t.due_ms, req);
    json_decref(req);
    req = json_string("a \"string\" req");
    assert_same(&t, NULL, 5, req);
    json_decref(req);
}

static void test_every_optional_field_and_study(void **state)
{
    (void)state;
    wl_task t = sample();
    t.state = WL_DRAFTED;
    t.review = 1;
    t.escalated = 1;
    snprintf(t.holder, sizeof t.holder, "r017");
    snprintf(t.drafted_by, sizeof t.drafted_by, "res1");
    snprintf(t.signed_by, sizeof t.signed_by, "chief2");
    snprintf(t.report_id, sizeof t.report_id, "rep-99");
    t.supersedes = 77;
    t.version = 3;
    store_study st;
    memset(&st, 0, sizeof st);
    snprintf(st.patient_id, sizeof st.patient_id, "PID-0001");
    st.n_instances = 312;
    st.n_series = 4;
    assert_same(&t, &st, 1763901860000, NULL);
}

static void test_texts_are_escaped_like_jansson(void **state)
{
    (void)state;
    wl_task t = sample();
    snprintf(t.note, sizeof t.note, "转诊: \"chest pain\" \\ since 3h\n\ttab\x01 end \xF0\x9F\x98\x80 /");
    snprintf(t.triage, sizeof t.triage, "ST elevation \x1f? \r");
    snprintf(t.body_part, sizeof t.body_part, "胸部");
    assert_same(&t, NULL, -1, NULL);
}

static void test_not_utf8_or_too_small_is_refused(void **state)
{
    (void)state;
    wl_task t = sample();
    char text[TASK_JSON_MAX];
    assert_true(task_json_header(text, sizeof text, &t, NULL, -1, NULL) > 0);
    assert_int_equal(task_json_header(text, 64, &t, NULL, -1, NULL), -1);
    snprintf(t.note, sizeof t.note, "latin-1 \xE9t\xE9");
    assert_int_equal(task_json_header(text, sizeof text, &t, NULL, -1, NULL), -1);
    snprintf(t.note, sizeof t.note, "surrogate \xED\xA0\x80");
    assert_int_equal(task_json_header(text, sizeof text, &t, NULL, -1, NULL), -1);
    snprintf(t.note, sizeof t.note, "overlong \xC0\xAF");
    assert_int_equal(task_json_header(text, sizeof text, &t, NULL, -1, NULL), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_task_and_claim_answer),
        cmocka_unit_test(test_every_optional_field_and_study),
        cmocka_unit_test(test_texts_are_escaped_like_jansson),
        cmocka_unit_test(test_not_utf8_or_too_small_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
