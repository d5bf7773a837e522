/* test_reader_commit.c — the reader link's committer (hub/reader_commit.h)
 * when an offer's record cannot be committed.  The link sends a TASK
 * before its record is durable; if that record's commit fails (here the
 * LMDB map is full: MDB_MAP_FULL), the reader's CLAIM of the offer — in
 * the same batch or a later one — is refused with a reason it can show,
 * never answered CLAIMED, and the task stays queued, held by no one.
 * Real LMDB, the real committer thread; the map is filled while a read
 * snapshot pins the pages later commits would otherwise reuse. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <cmocka.h>
#include <lmdb.h>
#include "hub/reader_commit.h"
#include "hub/store.h"
#include "hub/store_bench.h"
#include "hub/store_private.h"
#include "hub/store_tasks.h"

static char tmpdir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/dxhub-test-rc-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd);
}

static int first_task(void *ctx, const wl_task *t)
{
    *(uint64_t *)ctx = t->id;
    return 1; /* stop */
}

/* Fill the map: puts of shrinking size, each committed, until not even a
 * 16-byte one fits. */
static void fill_map(store *s)
{
    char *big = calloc(1, 256 << 10);
    assert_non_null(big);
    int k = 0;
    for (size_t size = 256 << 10; size >= 16;) {
        MDB_txn *txn;
        assert_int_equal(mdb_txn_begin(s->env, NULL, 0, &txn), 0);
        char key[32];
        snprintf(key, sizeof key, "fill.%d", k++);
        MDB_val kv = {strlen(key), key}, vv = {size, big};
        int rc = mdb_put(txn, s->meta, &kv, &vv, 0);
        if (!rc)
            rc = mdb_txn_commit(txn);
        else
            mdb_txn_abort(txn);
        if (rc) {
            assert_int_equal(rc, MDB_MAP_FULL);
            size /= 2;
        }
    }
    free(big);
}

static rc_op op_of(rc_kind kind, uint64_t task, const wl_reader *r)
{
    rc_op op = {.kind = kind, .conn = 0, .task = task, .now = 5000, .reader = *r};
    zmq_msg_init(&op.route);
    return op;
}

/* Wait for the committer's wake-up and take n answers. */
static void take(reader_commit *c, int fd, rc_list *out, size_t n)
{
    for (int i = 0; i < 100 && out->n < n; i++) {
        struct pollfd p = {fd, POLLIN, 0};
        poll(&p, 1, 100);
        uint64_t v;
        ssize_t r = read(fd, &v, sizeof v);
        (void)r;
        reader_commit_take(c, out);
    }
    assert_int_equal(out->n, n);
}

static void test_claim_of_an_offer_whose_commit_failed_is_refused_with_a_reason(void **state)
{
    (void)state;
    char dir[128], err[256];
    snprintf(dir, sizeof dir, "%s/hub", tmpdir);
    store_config cfg = {.dir = dir, .map_size = 4 << 20};
    store *s = NULL;
    assert_int_equal(store_open(&cfg, &s, err, sizeof err), 0);
    assert_int_equal(store_bench_add_tasks(s, 3, "2.25.77", "CT", WL_IMAGING, WL_ROUTINE, "clinic-a", 1000, err,
                                           sizeof err),
                     3);
    uint64_t id = 0;
    store_task_walk(s, 1, first_task, &id);
    assert_true(id > 0);
    wl_reader r = {.id = "rd1", .modalities = "CT", .facilities = "*", .kinds = 1u << WL_IMAGING,
                   .seniority = WL_ATTENDING, .max_tasks = 10};

    store_view *pin = NULL; /* keeps the pages freed from here on from being reused */
    assert_int_equal(store_view_begin(s, &pin), 0);
    fill_map(s);

    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    reader_commit *c = NULL;
    assert_int_equal(reader_commit_start(s, fd, &c), 0);
    /* the offer (its TASK already sent by the link) and the reader's CLAIM of it */
    rc_op offer = op_of(RC_OFFER, id, &r), claim = op_of(RC_CLAIM, id, &r);
    assert_int_equal(reader_commit_push(c, &offer), 0);
    assert_int_equal(reader_commit_push(c, &claim), 0);
    rc_list done = {0};
    take(c, fd, &done, 2);
    assert_int_equal(done.v[0].kind, RC_OFFER);
    assert_int_equal(done.v[0].rc, WL_ESTORE);
    assert_int_equal(done.v[1].kind, RC_CLAIM);
    assert_string_equal(done.v[1].cmd, "NACK");
    assert_string_equal(json_string_value(json_object_get(done.v[1].answer, "reason")), "worklist storage failure");
    rc_list_clear(&done);

    /* a CLAIM in a later batch, the store still full: refused the same way */
    rc_op again = op_of(RC_CLAIM, id, &r);
    assert_int_equal(reader_commit_push(c, &again), 0);
    take(c, fd, &done, 1);
    assert_string_equal(done.v[0].cmd, "NACK");
    assert_non_null(json_object_get(done.v[0].answer, "reason"));
    rc_list_free(&done);
    reader_commit_stop(&c, &done);
    rc_list_free(&done);
    close(fd);
    store_view_end(&pin);

    /* nothing of it was kept: the task is still queued, held by no one */
    wl_task t;
    assert_int_equal(store_task_get(s, id, &t), 0);
    assert_int_equal(t.state, WL_QUEUED);
    assert_string_equal(t.holder, "");
    store_close(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_claim_of_an_offer_whose_commit_failed_is_refused_with_a_reason),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
