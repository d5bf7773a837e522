/* test_lmdb_stamp.c — each of dxhub's LMDB environments (the hub's store,
 * the edge's spool, the workstation's cache) refuses a folder that holds
 * another kind, another record layout or another program's databases,
 * before it changes anything there (hub/lmdb_stamp.c).  Real environments
 * on disk, opened by the real modules; the foreign ones made with LMDB. */
#include <errno.h>
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
#include <lmdb.h>
#include "hub/lmdb_stamp.h"
#include "hub/spool.h"
#include "hub/store.h"
#include "viewer/ws_cache.h"

static char tmpdir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/dxhub-test-stamp-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd);
}

static void dir_of(char *out, size_t n, const char *sub)
{
    snprintf(out, n, "%s/%s", tmpdir, sub);
    mkdir(out, 0700);
}

static int open_store_at(const char *dir, store **out, char *err, size_t errlen)
{
    store_config cfg = {.dir = dir, .map_size = 32 << 20};
    return store_open(&cfg, out, err, errlen);
}

/* The main database's keys (the named databases), comma-separated. */
static void main_keys(const char *dir, char *out, size_t n)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_cursor *cur;
    MDB_val k, v;
    out[0] = '\0';
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 4), 0);
    assert_int_equal(mdb_env_open(env, dir, MDB_RDONLY, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
    assert_int_equal(mdb_cursor_open(txn, dbi, &cur), 0);
    for (int op = MDB_FIRST; mdb_cursor_get(cur, &k, &v, op) == 0; op = MDB_NEXT)
        snprintf(out + strlen(out), n - strlen(out), "%s%.*s", out[0] ? "," : "", (int)k.mv_size, (char *)k.mv_data);
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    mdb_env_close(env);
}

/* An environment made by another program (one named database), or by
 * another dxhub (and its stamp). */
static void foreign_env(const char *dir, const char *db, const char *stamp)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 4), 0);
    assert_int_equal(mdb_env_open(env, dir, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    if (db) {
        assert_int_equal(mdb_dbi_open(txn, db, MDB_CREATE, &dbi), 0);
        MDB_val k = {3, "key"}, v = {5, "value"};
        assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    }
    if (stamp) {
        assert_int_equal(mdb_dbi_open(txn, "dxhub-format", MDB_CREATE, &dbi), 0);
        MDB_val k = {5, "stamp"}, v = {strlen(stamp), (void *)stamp};
        assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    }
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static void test_each_kind_refuses_the_others_folder(void **state)
{
    (void)state;
    char spool_dir[400], store_dir_[400], cache_dir[400], err[512], before[1024], after[1024];
    dir_of(spool_dir, sizeof spool_dir, "edge");
    dir_of(store_dir_, sizeof store_dir_, "hub");
    dir_of(cache_dir, sizeof cache_dir, "cache");
    spool *sp = NULL;
    store *st = NULL;
    ws_cache *wc = NULL;
    assert_int_equal(spool_open(spool_dir, 32 << 20, &sp, err, sizeof err), 0);
    spool_close(&sp);
    assert_int_equal(open_store_at(store_dir_, &st, err, sizeof err), 0);
    store_close(&st);
    assert_int_equal(ws_cache_open(cache_dir, 16 << 20, &wc, err, sizeof err), 0);
    ws_cache_close(&wc);

    /* `dxhub serve --data` on the edge's folder */
    main_keys(spool_dir, before, sizeof before);
    assert_int_equal(open_store_at(spool_dir, &st, err, sizeof err), -EINVAL);
    assert_null(st);
    assert_non_null(strstr(err, spool_dir));
    assert_non_null(strstr(err, "holds dxhub's edge spool, not its hub store"));
    main_keys(spool_dir, after, sizeof after);
    assert_string_equal(before, after); /* nothing made in it */
    assert_null(strstr(after, "wl_task"));

    /* the edge on the hub's folder, the workstation on the edge's */
    assert_int_equal(spool_open(store_dir_, 32 << 20, &sp, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "holds dxhub's hub store, not its edge spool"));
    assert_int_equal(ws_cache_open(spool_dir, 16 << 20, &wc, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "holds dxhub's edge spool, not its workstation cache"));
    assert_int_equal(open_store_at(cache_dir, &st, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "holds dxhub's workstation cache, not its hub store"));

    /* each still opens as what it is */
    assert_int_equal(spool_open(spool_dir, 32 << 20, &sp, err, sizeof err), 0);
    spool_close(&sp);
    assert_int_equal(open_store_at(store_dir_, &st, err, sizeof err), 0);
    store_close(&st);
}

static void test_another_layout_is_refused_not_misread(void **state)
{
    (void)state;
    char dir[400], err[512];
    dir_of(dir, sizeof dir, "old-layout");
    /* what a dxhub whose records were laid out otherwise would have left */
    foreign_env(dir, "inst", "hub store layout 0badf00d");
    store *st = NULL;
    assert_int_equal(open_store_at(dir, &st, err, sizeof err), -EPROTO);
    assert_non_null(strstr(err, "laid out differently (layout 0badf00d"));
    assert_non_null(strstr(err, dir));
    spool *sp = NULL;
    assert_int_equal(spool_open(dir, 32 << 20, &sp, err, sizeof err), -EINVAL); /* and it is no spool */
}

static void test_another_programs_environment_is_left_alone(void **state)
{
    (void)state;
    char dir[400], err[512], keys[1024];
    dir_of(dir, sizeof dir, "foreign");
    foreign_env(dir, "accounts", NULL);
    store *st = NULL;
    assert_int_equal(open_store_at(dir, &st, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "databases a dxhub hub store does not make (accounts)"));
    main_keys(dir, keys, sizeof keys);
    assert_string_equal(keys, "accounts");
    ws_cache *wc = NULL;
    assert_int_equal(ws_cache_open(dir, 16 << 20, &wc, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "(accounts)"));
}

static void test_an_unstamped_store_of_its_own_is_adopted(void **state)
{
    (void)state;
    char dir[400], err[512], keys[1024];
    dir_of(dir, sizeof dir, "before-stamps");
    foreign_env(dir, "inst", NULL); /* a store from before stamps: its own databases only */
    store *st = NULL;
    assert_int_equal(open_store_at(dir, &st, err, sizeof err), 0);
    store_close(&st);
    main_keys(dir, keys, sizeof keys);
    assert_non_null(strstr(keys, "dxhub-format"));
    assert_int_equal(open_store_at(dir, &st, err, sizeof err), 0);
    store_close(&st);
}

/* mdb_dump -a and mdb_load (an operator's copy or compaction) carry the
 * stamp along: the copy opens, and another process's database added to a
 * stamped store does not stop it. */
static void test_the_stamp_survives_mdb_dump_and_mdb_load(void **state)
{
    (void)state;
    char dir[400], copy[400], err[512], cmd[1200];
    dir_of(dir, sizeof dir, "dumped");
    dir_of(copy, sizeof copy, "loaded");
    store *st = NULL;
    assert_int_equal(open_store_at(dir, &st, err, sizeof err), 0);
    store_close(&st);
    foreign_env(dir, "outside-probe", NULL);
    /* (mdb_load names each dump header keyword it does not use: not a failure) */
    snprintf(cmd, sizeof cmd, "mdb_dump -a '%s' | mdb_load '%s' 2>/dev/null", dir, copy);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(open_store_at(copy, &st, err, sizeof err), 0);
    store_close(&st);
    spool *sp = NULL;
    assert_int_equal(spool_open(copy, 32 << 20, &sp, err, sizeof err), -EINVAL); /* still a hub's store */
    assert_non_null(strstr(err, "holds dxhub's hub store"));
}

static void test_layout_fingerprint_follows_the_sizes(void **state)
{
    (void)state;
    const size_t a[] = {1, 2120, 880}, b[] = {1, 2128, 880}, c[] = {2, 2120, 880};
    assert_int_equal(lmdb_stamp_layout(a, 3), lmdb_stamp_layout(a, 3));
    assert_int_not_equal(lmdb_stamp_layout(a, 3), lmdb_stamp_layout(b, 3)); /* a field added */
    assert_int_not_equal(lmdb_stamp_layout(a, 3), lmdb_stamp_layout(c, 3)); /* the version bumped */
    assert_int_not_equal(lmdb_stamp_layout(a, 3), lmdb_stamp_layout(a, 2));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_kind_refuses_the_others_folder),
        cmocka_unit_test(test_another_layout_is_refused_not_misread),
        cmocka_unit_test(test_another_programs_environment_is_left_alone),
        cmocka_unit_test(test_an_unstamped_store_of_its_own_is_adopted),
        cmocka_unit_test(test_the_stamp_survives_mdb_dump_and_mdb_load),
        cmocka_unit_test(test_layout_fingerprint_follows_the_sizes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
