/* test_audit_filter.c — which audit records `dxhub audit` shows
 * (hub/audit_filter.c): the times an auditor types, who matches whom, a
 * patient named by a lookup's detail, and the filters together.  The
 * command against a real hub's trail is tests/e2e/test_audit_trail.py. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <string.h>
#include "hub/audit_filter.h"
#include "hub/audit_record.h"

#define DAY_MS 86400000LL
#define T_2026_11_25 1795564800000LL /* 2026-11-25T00:00:00Z */

static void test_times_in_utc_or_with_an_offset(void **state)
{
    (void)state;
    int64_t ms;
    bool day;
    assert_int_equal(audit_parse_time("2026-11-25", &ms, &day), 0);
    assert_true(day);
    assert_int_equal(ms, T_2026_11_25);
    assert_int_equal(audit_parse_time("2026-11-25T08:30:15Z", &ms, &day), 0);
    assert_false(day);
    assert_int_equal(ms, T_2026_11_25 + (8 * 3600 + 30 * 60 + 15) * 1000LL);
    assert_int_equal(audit_parse_time("2026-11-25T08:30", &ms, &day), 0); /* no zone: UTC */
    assert_int_equal(ms, T_2026_11_25 + (8 * 3600 + 30 * 60) * 1000LL);
    /* Beijing time: 08:00 +08:00 is midnight UTC */
    assert_int_equal(audit_parse_time("2026-11-25T08:00:00+08:00", &ms, &day), 0);
    assert_int_equal(ms, T_2026_11_25);
    assert_int_equal(audit_parse_time("2026-11-24T20:00-04:00", &ms, &day), 0);
    assert_int_equal(ms, T_2026_11_25);
    assert_int_equal(audit_parse_time("2024-02-29", &ms, &day), 0);
}

static void test_malformed_times_are_refused(void **state)
{
    (void)state;
    int64_t ms = 42;
    bool day;
    const char *bad[] = {"", "2026", "2026-11", "2026-13-01", "2026-00-10", "2026-02-30", "2025-02-29",
                         "2026-11-25T24:00", "2026-11-25T08", "2026-11-25 08:00", "2026-11-25T08:00:00+8",
                         "2026-11-25T08:00:00+08:00x", "2026-11-25Z", "26-11-25", "2026-11-25T08:00:00.5Z",
                         "2026-1l-25", "2026-11-25T08:00+15:00"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (audit_parse_time(bad[i], &ms, &day) != -EINVAL)
            fail_msg("accepted \"%s\"", bad[i]);
    }
    assert_int_equal(ms, 42); /* untouched */
}

static void test_who_matches_itself_or_its_prefix_up_to_a_separator(void **state)
{
    (void)state;
    assert_true(audit_who_matches("reader", "reader:dr-wang"));
    assert_true(audit_who_matches("reader:dr-wang", "reader:dr-wang"));
    assert_true(audit_who_matches("peer:county", "peer:county/clinic-a"));
    assert_true(audit_who_matches("hub", "hub"));
    assert_false(audit_who_matches("reader:dr-wang", "reader:dr-wangwei"));
    assert_false(audit_who_matches("read", "reader:dr-wang"));
    assert_false(audit_who_matches("peer:county", "peer:county2"));
    assert_false(audit_who_matches("reader:dr-wang", "reader"));
}

static void test_a_lookups_detail_names_its_patient_as_a_whole_token(void **state)
{
    (void)state;
    const char *d = "PatientID=P10 since=- type=- exams=2 recognised=1 local=2";
    assert_true(audit_detail_names_patient(d, "P10"));
    assert_false(audit_detail_names_patient(d, "P1"));
    assert_false(audit_detail_names_patient(d, "P100"));
    assert_true(audit_detail_names_patient("priors of PatientID=P1", "P1"));
    assert_true(audit_detail_names_patient("shown=1 total=1 PatientID=P1 limit=5", "P1"));
    assert_false(audit_detail_names_patient("OtherPatientID=P1", "P1"));
    assert_false(audit_detail_names_patient("", "P1"));
}

/* A record is cut to fit, never refused; cut before a character that does
 * not fit whole, so the line stays valid JSON (UTF-8) for `dxhub audit`. */
static void test_a_long_chinese_detail_is_cut_at_a_character_boundary(void **state)
{
    (void)state;
    char detail[1600] = "x"; /* one ASCII byte first, so the cut falls inside a 3-byte character */
    for (int i = 0; i < 500; i++)
        strcat(detail, "心");
    audit_record r = {.t_ms = 42, .who = "local:护士", .what = "read", .study_uid = "1.2.3", .patient = "P\"1",
                      .detail = detail};
    char line[AUDIT_RECORD_MAX];
    int n = audit_record_json(line, &r);
    assert_int_equal((size_t)n, strlen(line));
    json_error_t je;
    json_t *j = json_loadb(line, (size_t)n, 0, &je);
    assert_non_null(j);
    const char *d = json_string_value(json_object_get(j, "detail"));
    assert_non_null(d);
    assert_true(strlen(d) > 300 && strlen(d) < strlen(detail));
    assert_int_equal(strncmp(d, detail, strlen(d)), 0);
    assert_string_equal(json_string_value(json_object_get(j, "patient")), "P\"1");
    assert_string_equal(json_string_value(json_object_get(j, "who")), "local:护士");
    json_decref(j);
    r.patient = ""; /* a record about no patient names none */
    n = audit_record_json(line, &r);
    assert_null(strstr(line, "\"patient\""));
}

static void test_filters_together(void **state)
{
    (void)state;
    audit_entry e = {7, T_2026_11_25 + 5000, "reader:dr-wang", "claim", "1.2.3", "P1", "task 4"};
    audit_filter all = {0};
    assert_true(audit_filter_match(&all, &e, NULL));
    audit_filter f = {.since_ms = T_2026_11_25, .until_ms = T_2026_11_25 + DAY_MS, .who = "reader",
                      .what = "fetch,claim", .study = "1.2.3", .patient = "P1"};
    assert_true(audit_filter_match(&f, &e, NULL));
    audit_filter g = f;
    g.since_ms = e.t_ms + 1;
    assert_false(audit_filter_match(&g, &e, NULL));
    g = f;
    g.until_ms = e.t_ms; /* until is exclusive */
    assert_false(audit_filter_match(&g, &e, NULL));
    g = f;
    g.what = "claims,fetch";
    assert_false(audit_filter_match(&g, &e, NULL));
    g.what = "cla";
    assert_false(audit_filter_match(&g, &e, NULL));
    g = f;
    g.study = "1.2.30";
    assert_false(audit_filter_match(&g, &e, NULL));
    g = f;
    g.patient = "P2";
    assert_false(audit_filter_match(&g, &e, "P2")); /* the record's own patient wins */
    /* a record that names no patient: its study's, from the index */
    audit_entry old = e;
    old.patient = "";
    assert_true(audit_filter_match(&g, &old, "P2"));
    assert_false(audit_filter_match(&g, &old, NULL));
    /* a lookup: no study, the patient in its detail */
    audit_entry lookup = {8, e.t_ms, "http:127.0.0.1", "lookup", "", "", "PatientID=P2 exams=1"};
    g = (audit_filter){.patient = "P2"};
    assert_true(audit_filter_match(&g, &lookup, NULL));
    g.patient = "P";
    assert_false(audit_filter_match(&g, &lookup, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_times_in_utc_or_with_an_offset),
        cmocka_unit_test(test_malformed_times_are_refused),
        cmocka_unit_test(test_who_matches_itself_or_its_prefix_up_to_a_separator),
        cmocka_unit_test(test_a_lookups_detail_names_its_patient_as_a_whole_token),
        cmocka_unit_test(test_filters_together),
        cmocka_unit_test(test_a_long_chinese_detail_is_cut_at_a_character_boundary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
