/* test_wl_record.c — the worklist's compact records (worklist/wl_record.h):
 * a task with every text at its longest and one with every text empty come
 * back field for field; a record cut short or of an unknown layout is
 * refused, never read past its end; and a store written before (tasks and
 * events as raw structs, put here straight into LMDB) still reads, and its
 * tasks can be offered and claimed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include "worklist/wl_record.h"
#include "worklist/worklist.h"

static void fill(char *s, size_t cap, char c)
{
    memset(s, c, cap - 1);
    s[cap - 1] = '\0';
}

static wl_task longest_task(void)
{
    wl_task t;
    memset(&t, 0, sizeof t);
    t.id = 0x0102030405060708ull, t.seq = 77, t.arrival_ms = -5, t.due_ms = 1700000000123LL;
    t.holder_until_ms = 1700000060000LL, t.supersedes = 9, t.version = 3, t.events = 12;
    t.kind = WL_ECG, t.priority = WL_STAT, t.state = WL_CLAIMED, t.clinic_priority = WL_URGENT;
    t.referral = 1, t.escalated = 1, t.front = 1, t.review = 1;
    fill(t.study_uid, sizeof t.study_uid, 'u');
    fill(t.modality, sizeof t.modality, 'm');
    fill(t.body_part, sizeof t.body_part, 'b');
    fill(t.facility, sizeof t.facility, 'f');
    fill(t.note, sizeof t.note, 'n');
    fill(t.triage, sizeof t.triage, 't');
    fill(t.holder, sizeof t.holder, 'h');
    fill(t.drafted_by, sizeof t.drafted_by, 'd');
    fill(t.signed_by, sizeof t.signed_by, 's');
    fill(t.report_id, sizeof t.report_id, 'r');
    return t;
}

static void test_tasks_come_back_field_for_field(void **state)
{
    (void)state;
    uint8_t buf[WL_TASK_REC_MAX];
    wl_task full = longest_task(), empty, back;
    memset(&empty, 0, sizeof empty);
    empty.id = 1;
    size_t n = wl_task_encode(&full, buf);
    assert_true(n <= WL_TASK_REC_MAX);
    assert_int_equal(wl_task_decode(buf, n, &back), 0);
    assert_memory_equal(&back, &full, sizeof full); /* both zero-padded after each NUL */
    n = wl_task_encode(&empty, buf);
    assert_true(n <= 128); /* the point: an ordinary task is small */
    assert_int_equal(wl_task_decode(buf, n, &back), 0);
    assert_memory_equal(&back, &empty, sizeof empty);
}

static void test_short_or_unknown_records_are_refused(void **state)
{
    (void)state;
    uint8_t buf[WL_TASK_REC_MAX];
    wl_task t = longest_task(), back;
    size_t n = wl_task_encode(&t, buf);
    for (size_t cut = 0; cut + 64 < n; cut += 7) /* the last 64 bytes may be padding */
        assert_int_equal(wl_task_decode(buf, cut, &back), -1);
    buf[0] = 9;
    assert_int_equal(wl_task_decode(buf, n, &back), -1);
    wl_event e = {.at_ms = 42, .from = WL_QUEUED, .to = WL_OFFERED}, eb;
    snprintf(e.actor, sizeof e.actor, "r001");
    snprintf(e.what, sizeof e.what, "offered");
    uint8_t eb_buf[WL_EVENT_REC_MAX];
    n = wl_event_encode(&e, eb_buf);
    assert_true(n < 40);
    assert_int_equal(wl_event_decode(eb_buf, n - 1, &eb), -1); /* the note's NUL missing */
    assert_int_equal(wl_event_decode(eb_buf, n, &eb), 0);
    assert_int_equal(eb.at_ms, 42);
    assert_string_equal(eb.actor, "r001");
    assert_string_equal(eb.what, "offered");
    assert_string_equal(eb.note, "");
}

static int count_events(void *ctx, const wl_event *e)
{
    int *n = ctx;
    if (*n == 0)
        assert_string_equal(e->what, "added");
    (*n)++;
    return 0;
}

/* Raw structs, as the worklist wrote them before compact records. */
static void test_a_store_written_before_still_reads_and_works(void **state)
{
    (void)state;
    char dir[512];
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/test_wl_record.XXXXXX", tmp && tmp[0] ? tmp : P_tmpdir);
    assert_non_null(mkdtemp(dir));
    MDB_env *env;
    assert_int_equal(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 16);
    assert_int_equal(mdb_env_open(env, dir, MDB_NOSYNC, 0600), 0);
    MDB_txn *txn;
    wl *w;
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(wl_open(txn, NULL, &w), 0);
    wl_task_spec spec = {.study_uid = "1.2.3", .modality = "CT", .facility = "c1", .kind = WL_IMAGING};
    wl_task t;
    assert_int_equal(wl_add(w, txn, &spec, 1000, &t), 0);
    /* overwrite the task and its "added" event with the old layouts */
    struct { uint8_t version; wl_task t; } raw = {.version = 1, .t = t};
    MDB_dbi task_dbi, hist_dbi;
    assert_int_equal(mdb_dbi_open(txn, "wl_task", 0, &task_dbi), 0);
    assert_int_equal(mdb_dbi_open(txn, "wl_hist", 0, &hist_dbi), 0);
    uint8_t k[12] = {0, 0, 0, 0, 0, 0, 0, (uint8_t)t.id, 0, 0, 0, 0};
    MDB_val kv = {8, k}, v = {sizeof raw, &raw};
    assert_int_equal(mdb_put(txn, task_dbi, &kv, &v, 0), 0);
    wl_event ev = {.at_ms = 1000, .from = WL_QUEUED, .to = WL_QUEUED};
    snprintf(ev.actor, sizeof ev.actor, "hub");
    snprintf(ev.what, sizeof ev.what, "added");
    kv = (MDB_val){12, k}, v = (MDB_val){sizeof ev, &ev};
    assert_int_equal(mdb_put(txn, hist_dbi, &kv, &v, 0), 0);
    wl_task back;
    assert_int_equal(wl_get(w, txn, t.id, &back), 0);
    assert_memory_equal(&back, &t, sizeof t);
    wl_reader r = {.id = "r1", .modalities = "CT", .facilities = "*", .kinds = 1, .seniority = 1, .max_tasks = 2};
    wl_task offered, claimed;
    assert_int_equal(wl_offer(w, txn, &r, 2000, &offered), 0);
    assert_int_equal(offered.id, t.id);
    assert_int_equal(wl_claim(w, txn, t.id, &r, 2500, &claimed), 0);
    assert_int_equal(wl_held_count(w, txn, "r1"), 1);
    int n = 0;
    assert_int_equal(wl_history(w, txn, t.id, count_events, &n), 3); /* added (raw), offered, claimed */
    assert_int_equal(n, 3);
    mdb_txn_abort(txn);
    wl_close(&w);
    mdb_env_close(env);
    char path[600];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/lock.mdb", dir);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tasks_come_back_field_for_field),
        cmocka_unit_test(test_short_or_unknown_records_are_refused),
        cmocka_unit_test(test_a_store_written_before_still_reads_and_works),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
