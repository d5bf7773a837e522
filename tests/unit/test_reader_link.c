/* test_reader_link.c — the hub's reader link (hub/reader_link.c) on a real
 * store and a real CURVE socket on 127.0.0.1, with the real reader client.
 *
 * A reader for whom nothing fitted waits for the wake-up that the thread
 * committing a new task sends.  Here the store is opened without that
 * wake-up (no on_tasks), as if one were missed: the reader must still be
 * offered the task, by the link's periodic look, and the log must say a
 * wake-up was missing.  Then the reader reads the study: each read is on
 * the audit trail before its answer, and a read the trail refuses gets no
 * data. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <zmq.h>
#include "hub/hub.h"
#include "hub/keys.h"
#include "hub/log.h"
#include "hub/reader_link.h"
#include "hub/zap.h"

static char corpus[1024];
static char tmpdir[256];

static int setup(void **state)
{
    (void)state;
    const char *c = getenv("DXHUB_CORPUS");
    snprintf(corpus, sizeof corpus, "%s", c ? c : "../shared/corpus");
    snprintf(tmpdir, sizeof tmpdir, "/tmp/dxhub-test-rlink-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The reader link's audit callback: records what it is told, or refuses
 * as the hub's audit queue does once the store has refused records. */
static int  audit_refuses, audited_study, audited_instance, audited_draft;
static char audited_who[96];

static int test_audit(void *ctx, const char *who, const char *what, const char *study, const char *detail)
{
    (void)ctx, (void)study, (void)detail;
    if (audit_refuses)
        return -EAGAIN;
    snprintf(audited_who, sizeof audited_who, "%s", who);
    audited_study += !strcmp(what, "read-study");
    audited_instance += !strcmp(what, "read-instance");
    audited_draft += !strcmp(what, "read-draft");
    return 0;
}

static int count_chunks(void *ctx, uint64_t offset, const void *p, size_t n)
{
    (void)offset, (void)p, (void)n;
    ++*(int *)ctx;
    return 0;
}

static char *slurp_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = calloc(1, 1 << 20);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void test_a_missed_wake_up_still_reaches_the_waiting_reader_whose_reads_are_audited(void **state)
{
    (void)state;
    char path[1400], err[256];
    /* the link's log, to read back; stderr comes back at the end, for
     * whatever else (a sanitizer) has to say */
    int saved_stderr = dup(2);
    snprintf(path, sizeof path, "%s/link.log", tmpdir);
    assert_int_equal(log_open(path, err, sizeof err), 0);

    /* the store, with nobody told of new tasks */
    char dir[600];
    snprintf(dir, sizeof dir, "%s/hub", tmpdir);
    store_config scfg = {.dir = dir, .map_size = 64 << 20};
    store *st = NULL;
    assert_int_equal(store_open(&scfg, &st, err, sizeof err), 0);

    snprintf(path, sizeof path, "%s/readers.conf", tmpdir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("dr-test attending CT imaging * 3\n", f);
    fclose(f);
    readers *profiles = readers_new();
    assert_int_equal(readers_load(profiles, path, err, sizeof err), 1);

    char hub_pub[41], hub_sec[41], rd_pub[41], rd_sec[41];
    assert_int_equal(zmq_curve_keypair(hub_pub, hub_sec), 0);
    assert_int_equal(zmq_curve_keypair(rd_pub, rd_sec), 0);
    snprintf(dir, sizeof dir, "%s/keys", tmpdir);
    assert_int_equal(allowlist_edit(dir, rd_pub, "reader:dr-test", 0, err, sizeof err), 0);
    allowlist *allow = allowlist_new();
    assert_true(allowlist_load(allow, dir, err, sizeof err) >= 1);
    void *zctx = zmq_ctx_new();
    zap_handler *zap = NULL;
    assert_int_equal(zap_start(zctx, allow, NULL, NULL, &zap), 0);

    hub_metrics metrics = {0};
    reader_link_config lcfg = {.zctx = zctx, .bind = "127.0.0.1", .port = 0, .secret_key = hub_sec, .st = st,
                               .profiles = profiles, .metrics = &metrics, .audit = test_audit};
    reader_link *link = NULL;
    assert_int_equal(reader_link_start(&lcfg, &link, err, sizeof err), 0);

    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "tcp://127.0.0.1:%u", (unsigned)reader_link_port(link));
    hub_client_config ccfg = {.endpoint = endpoint, .hub_public = hub_pub, .public_key = rd_pub,
                              .secret_key = rd_sec, .timeout_ms = 5000};
    hub_client *c = NULL;
    assert_int_equal(hub_client_open(&ccfg, &c, err, sizeof err), 0);
    char id[64];
    assert_int_equal(hub_client_hello(c, id, sizeof id), 0);
    assert_string_equal(id, "dr-test");
    assert_int_equal(hub_client_ready(c, 1), 0);
    hub_task offer;
    assert_int_equal(hub_client_next_offer(c, 300, &offer), HUB_ETIMEDOUT); /* nothing queued yet */

    /* a CT study completes by its marker: a task, and no wake-up */
    snprintf(path, sizeof path, "%s/dicom/explicit_le/CT_small.dcm", corpus);
    int64_t now = (int64_t)time(NULL) * 1000;
    store_put_result put;
    assert_int_equal(store_put_file(st, path, "edge:clinic1", now, &put), 0);
    store_marker marker = {.expected = 1, .priority = 2};
    assert_int_equal(store_study_marker(st, put.inst.study_uid, &marker, now), 0);
    store_study study;
    assert_int_equal(store_get_study(st, put.inst.study_uid, &study), 0);
    assert_true(study.task_id > 0);

    assert_int_equal(hub_client_next_offer(c, 10000, &offer), 0);
    assert_int_equal(offer.id, study.task_id);
    assert_string_equal(offer.study_uid, put.inst.study_uid);

    /* and the operator is told a wake-up went missing (the line follows the TASK) */
    snprintf(path, sizeof path, "%s/link.log", tmpdir);
    bool told = false;
    for (int64_t end = mono_ms() + 5000; !told && mono_ms() < end; usleep(20000)) {
        char *log = slurp_text(path);
        told = log && strstr(log, "offered to dr-test by the periodic look: no wake-up came for it");
        free(log);
    }
    assert_true(told);
    dup2(saved_stderr, 2);
    close(saved_stderr);

    /* a reader's reads go on the audit trail before their answer; a read
     * the trail refuses is not answered */
    hub_task held;
    assert_int_equal(hub_client_claim(c, offer.id, &held), 0);
    hub_instance *insts = NULL;
    size_t n_insts = 0;
    assert_int_equal(hub_client_study(c, offer.id, &insts, &n_insts), 0);
    assert_int_equal(n_insts, 1);
    assert_int_equal(audited_study, 1);
    assert_string_equal(audited_who, "reader:dr-test");
    int chunks = 0;
    assert_int_equal(hub_client_fetch(c, offer.id, insts[0].sop_uid, 0, count_chunks, &chunks), 0);
    assert_true(chunks >= 1);
    assert_int_equal(audited_instance, 1);
    hub_draft draft;
    assert_int_equal(hub_client_draft(c, offer.id, &draft), 0);
    free(draft.doc);
    assert_int_equal(audited_draft, 1);
    audit_refuses = 1;
    chunks = 0;
    assert_int_not_equal(hub_client_fetch(c, offer.id, insts[0].sop_uid, 0, count_chunks, &chunks), 0);
    assert_int_equal(chunks, 0);
    assert_non_null(strstr(hub_client_error(c), "audit trail cannot be written"));
    hub_instance *again = NULL;
    assert_int_not_equal(hub_client_study(c, offer.id, &again, &n_insts), 0);
    assert_null(again);
    assert_int_not_equal(hub_client_draft(c, offer.id, &draft), 0);
    assert_non_null(strstr(hub_client_error(c), "audit trail cannot be written"));
    audit_refuses = 0;
    free(insts);

    hub_client_close(&c);
    reader_link_stop(&link);
    zap_stop(&zap);
    zmq_ctx_term(zctx);
    allowlist_free(&allow);
    readers_free(&profiles);
    store_close(&st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_missed_wake_up_still_reaches_the_waiting_reader_whose_reads_are_audited),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
