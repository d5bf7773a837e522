/* test_store.c — the hub's LMDB store on real LMDB files in a temporary
 * directory, fed with real corpus instances. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include "hub/store.h"
#include "hub/store_tasks.h"

static char corpus[1024];
static char tmpdir[256];

static void path_of(char *out, size_t n, const char *rel)
{
    snprintf(out, n, "%s/dicom/%s", corpus, rel);
}

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    *len = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *p = malloc(*len);
    assert_int_equal(fread(p, 1, *len, fp), *len);
    fclose(fp);
    return p;
}

static void spit(const char *path, const uint8_t *p, size_t n)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(p, 1, n, fp), n);
    fclose(fp);
}

static int setup(void **state)
{
    (void)state;
    const char *c = getenv("DXHUB_CORPUS");
    snprintf(corpus, sizeof corpus, "%s", c ? c : "../shared/corpus");
    snprintf(tmpdir, sizeof tmpdir, "/tmp/dxhub-test-store-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd);
}

static store *open_store_with(const char *sub, uint64_t map, uint64_t runway)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", tmpdir, sub);
    store_config cfg = {.dir = dir, .map_size = map, .runway_bytes = runway};
    store *s = NULL;
    char err[256];
    assert_int_equal(store_open(&cfg, &s, err, sizeof err), 0);
    return s;
}

static store *open_store(const char *sub, uint64_t map) { return open_store_with(sub, map, 0); }

static void test_put_then_read_back_identical_bytes(void **state)
{
    (void)state;
    store *s = open_store("a", 64 << 20);
    char p[1200];
    path_of(p, sizeof p, "explicit_le/CT_small.dcm");
    store_put_result r;
    assert_int_equal(store_put_file(s, p, "dicom:TEST", 1000, &r), 0);
    assert_int_equal(r.result, STORE_STORED);
    size_t len;
    uint8_t *orig = slurp(p, &len);
    store_instance in;
    assert_int_equal(store_get_instance(s, r.inst.sop_uid, &in), 0);
    assert_int_equal(in.size, len);
    uint8_t *back = malloc(len);
    size_t got = 0;
    long k;
    while ((k = store_read_instance(s, &in, got, back + got, 7777)) > 0) /* odd slices on purpose */
        got += (size_t)k;
    assert_int_equal(got, len);
    assert_memory_equal(back, orig, len);
    store_study st;
    assert_int_equal(store_get_study(s, in.study_uid, &st), 0);
    assert_int_equal(st.n_instances, 1);
    assert_string_equal(st.patient_id, "1CT1");
    assert_string_equal(st.modalities, "CT");
    assert_int_equal(st.state, STUDY_RECEIVING);
    free(back);
    free(orig);
    store_close(&s);
    assert_null(s);
}

/* Entries of one LMDB database, as LMDB's own mdb_stat counts them. */
static long db_entries(const char *sub, const char *db)
{
    char cmd[700], line[256];
    snprintf(cmd, sizeof cmd, "mdb_stat -s %s '%s/%s'", db, tmpdir, sub);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    long n = -1;
    while (fgets(line, sizeof line, p))
        if (sscanf(line, " Entries: %ld", &n) == 1)
            break;
    pclose(p);
    return n;
}

static void read_whole(store *s, const store_instance *in, uint8_t *buf)
{
    size_t got = 0;
    long k;
    while ((k = store_read_instance(s, in, got, buf + got, 300000)) > 0)
        got += (size_t)k;
    assert_int_equal(got, in->size);
}

/* A 2.1 MB instance whose first two 1 MiB chunks were written while it
 * "arrived": stored under its blob id, read back byte for byte; the same
 * bytes again, early chunks and all, are a duplicate that leaves no chunk
 * behind. */
static void test_early_chunks_become_the_instance(void **state)
{
    (void)state;
    store *s = open_store("early", 64 << 20);
    char p[1200];
    path_of(p, sizeof p, "jpeg_lossless_sv1_70/RG2_JPLL.dcm");
    size_t len;
    uint8_t *orig = slurp(p, &len);
    assert_true(len > 2 * STORE_CHUNK);
    store_put_result r;
    for (int round = 0; round < 2; round++) {
        store_blob *b = store_blob_new(s);
        assert_non_null(b);
        assert_int_equal(store_blob_chunk(s, b, 0, orig), 0);
        assert_int_equal(store_blob_chunk(s, b, 1, orig + STORE_CHUNK), 0);
        assert_int_equal(store_put_mem(s, orig, len, NULL, 0, NULL, b, "dicom:A", 1000, &r), 0);
        store_blob_free(s, &b);
        assert_null(b);
        assert_int_equal(r.result, round == 0 ? STORE_STORED : STORE_DUPLICATE);
    }
    store_instance in;
    assert_int_equal(store_get_instance(s, r.inst.sop_uid, &in), 0);
    assert_true(in.blob_id != 0);
    uint8_t *back = malloc(len);
    read_whole(s, &in, back);
    assert_memory_equal(back, orig, len);
    /* Other bytes under the same UID, spilled to a file after two early
     * chunks: kept as a conflict, its first chunks those written early. */
    orig[len - 1] ^= 0xFF;
    char q[600];
    snprintf(q, sizeof q, "%s/early-conflict.dcm", tmpdir);
    spit(q, orig, len);
    store_blob *b = store_blob_new(s);
    assert_int_equal(store_blob_chunk(s, b, 0, orig), 0);
    assert_int_equal(store_blob_chunk(s, b, 1, orig + STORE_CHUNK), 0);
    assert_int_equal(store_put_file_early(s, q, NULL, 0, b, "dicom:B", 2000, &r), 0);
    store_blob_free(s, &b);
    assert_int_equal(r.result, STORE_CONFLICT);
    assert_true(r.inst.blob_id != 0 && r.inst.blob_id != in.blob_id);
    read_whole(s, &r.inst, back);
    assert_memory_equal(back, orig, len);
    store_close(&s);
    assert_int_equal(db_entries("early", "blob"), 6); /* the first copy's chunks and the conflict's */
    assert_int_equal(db_entries("early", "early"), 0);
    free(back);
    free(orig);
}

/* The process dies after early chunks were committed but before their
 * instance was: the next store_open deletes them. */
static void test_orphan_early_chunks_are_deleted_at_open(void **state)
{
    (void)state;
    char p[1200];
    path_of(p, sizeof p, "jpeg_lossless_sv1_70/RG2_JPLL.dcm");
    size_t len;
    uint8_t *orig = slurp(p, &len);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        store *s = open_store("orphan", 64 << 20);
        store_blob *b = store_blob_new(s);
        int bad = !b || store_blob_chunk(s, b, 0, orig) || store_blob_chunk(s, b, 1, orig + STORE_CHUNK);
        char q[1200];
        path_of(q, sizeof q, "explicit_le/CT_small.dcm");
        store_put_result r; /* queued behind the chunks: returns once they are committed */
        bad |= store_put_file(s, q, "dicom:A", 1000, &r) != 0;
        _exit(bad); /* no store_blob_free, no store_close: as if killed */
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_int_equal(db_entries("orphan", "early"), 1);
    assert_int_equal(db_entries("orphan", "blob"), 3); /* two early chunks + CT_small */
    store *s = open_store("orphan", 64 << 20);
    store_close(&s);
    assert_int_equal(db_entries("orphan", "early"), 0);
    assert_int_equal(db_entries("orphan", "blob"), 1);
    free(orig);
}

typedef struct commit_loop {
    store *s;
    int    n;
    int    kind; /* 0 audit records, 1 outbox puts, 2 worklist ticks (on an empty worklist: commits
                  * that write nothing, over in microseconds) */
} commit_loop;

static _Atomic int loops_done;

static void *commit_many(void *arg)
{
    commit_loop *a = arg;
    for (int i = 0; i < a->n; i++) {
        char id[32];
        snprintf(id, sizeof id, "m%d", i);
        int rc = a->kind == 0 ? store_audit(a->s, 1000 + i, "test", "probe", "", "own commit")
                 : a->kind == 1 ? store_outbox_put(a->s, "clinic", id, "report", "x", 1, 1000 + i)
                                : store_task_tick(a->s, 1000 + i);
        if (rc < 0) {
            atomic_fetch_add(&loops_done, 1);
            return (void *)1;
        }
    }
    atomic_fetch_add(&loops_done, 1);
    return NULL;
}

/* A commit by another process (a child writing the environment through
 * LMDB itself) moves store_outside_gen and store_instance_gen; this
 * process's own commits, from two threads at once (one commit's
 * bookkeeping overlaps the next one's whole commit) while the generation
 * is read, never do. */
static void test_commits_by_another_process_are_told_from_own(void **state)
{
    (void)state;
    store *s = open_store("outside", 64 << 20);
    uint64_t g0 = store_outside_gen(s), i0 = store_instance_gen(s);
    pthread_t t[3];
    commit_loop a[3] = {{s, 300, 0}, {s, 300, 1}, {s, 20000, 2}};
    atomic_store(&loops_done, 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&t[i], NULL, commit_many, &a[i]), 0);
    while (atomic_load(&loops_done) < 3) /* read throughout */
        assert_int_equal(store_outside_gen(s), g0);
    for (int i = 0; i < 3; i++) {
        void *rv;
        assert_int_equal(pthread_join(t[i], &rv), 0);
        assert_null(rv);
    }
    assert_int_equal(store_outside_gen(s), g0);
    assert_int_equal(store_instance_gen(s), i0);

    char dir[512];
    snprintf(dir, sizeof dir, "%s/outside", tmpdir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        MDB_env *env;
        MDB_txn *txn;
        MDB_dbi dbi;
        MDB_val k = {5, "probe"}, v = {3, "yes"};
        int bad = mdb_env_create(&env) || mdb_env_set_maxdbs(env, 4) || mdb_env_open(env, dir, 0, 0600) ||
                  mdb_txn_begin(env, NULL, 0, &txn) || mdb_dbi_open(txn, "outside-probe", MDB_CREATE, &dbi) ||
                  mdb_put(txn, dbi, &k, &v, 0) || mdb_txn_commit(txn);
        _exit(bad);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    uint64_t g1 = store_outside_gen(s);
    assert_true(g1 > g0);
    assert_true(store_instance_gen(s) != i0);
    assert_int_equal(store_audit(s, 5000, "test", "probe", "", "own again"), 0);
    assert_int_equal(store_outside_gen(s), g1); /* counted once, own commits after it still not */
    store_close(&s);
}

/* `dxhub backup` and `dxhub check` open the store beside the hub that
 * serves it (.attach): an instance the hub is receiving at that moment,
 * its early chunks committed and its own commit still to come, must not
 * lose them to the open-time cleanup of a crashed hub's leftovers. */
static void test_opening_beside_the_hub_keeps_its_chunks_in_flight(void **state)
{
    (void)state;
    char p[1200], dir[512];
    path_of(p, sizeof p, "jpeg_lossless_sv1_70/RG2_JPLL.dcm");
    snprintf(dir, sizeof dir, "%s/attach", tmpdir);
    size_t len;
    uint8_t *orig = slurp(p, &len);
    assert_true(len > 2 * STORE_CHUNK);
    store *s = open_store("attach", 64 << 20);
    store_blob *b = store_blob_new(s);
    assert_non_null(b);
    assert_int_equal(store_blob_chunk(s, b, 0, orig), 0);
    assert_int_equal(store_blob_chunk(s, b, 1, orig + STORE_CHUNK), 0);
    char q[1200];
    path_of(q, sizeof q, "explicit_le/CT_small.dcm");
    store_put_result r; /* queued behind the chunks: they are committed when it returns */
    assert_int_equal(store_put_file(s, q, "dicom:A", 1000, &r), 0);
    assert_int_equal(db_entries("attach", "early"), 1);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        store_config cfg = {.dir = dir, .attach = true};
        store *other = NULL;
        char err[256];
        int bad = store_open(&cfg, &other, err, sizeof err) != 0;
        store_close(&other);
        _exit(bad);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_int_equal(db_entries("attach", "early"), 1);
    assert_int_equal(store_put_file_early(s, p, NULL, 0, b, "dicom:A", 2000, &r), 0);
    store_blob_free(s, &b);
    assert_int_equal(r.result, STORE_STORED);
    uint8_t *back = malloc(len);
    read_whole(s, &r.inst, back);
    assert_memory_equal(back, orig, len);
    store_close(&s);
    free(back);
    free(orig);
}

static void test_same_instance_twice_is_stored_once(void **state)
{
    (void)state;
    store *s = open_store("b", 64 << 20);
    char p[1200];
    path_of(p, sizeof p, "explicit_le/MR_small.dcm");
    store_put_result r1, r2;
    assert_int_equal(store_put_file(s, p, "dicom:A", 1000, &r1), 0);
    assert_int_equal(store_put_file(s, p, "dicom:B", 2000, &r2), 0);
    assert_int_equal(r1.result, STORE_STORED);
    assert_int_equal(r2.result, STORE_DUPLICATE);
    store_study st;
    assert_int_equal(store_get_study(s, r1.inst.study_uid, &st), 0);
    assert_int_equal(st.n_instances, 1);
    store_stats stats;
    store_get_stats(s, &stats);
    assert_int_equal(stats.instances, 1);
    store_close(&s);
}

static void test_same_uid_other_bytes_is_kept_as_conflict(void **state)
{
    (void)state;
    store *s = open_store("c", 64 << 20);
    char p[1200], q[600];
    path_of(p, sizeof p, "explicit_le/MR_small.dcm");
    size_t len;
    uint8_t *b = slurp(p, &len);
    b[len - 1] ^= 0xFF; /* last pixel byte differs */
    snprintf(q, sizeof q, "%s/changed.dcm", tmpdir);
    spit(q, b, len);
    store_put_result r1, r2, r3;
    assert_int_equal(store_put_file(s, p, "dicom:A", 1000, &r1), 0);
    assert_int_equal(store_put_file(s, q, "dicom:B", 2000, &r2), 0);
    assert_int_equal(r2.result, STORE_CONFLICT);
    assert_int_equal(store_put_file(s, q, "dicom:B", 3000, &r3), 0); /* the conflict again */
    assert_int_equal(r3.result, STORE_CONFLICT);
    /* the first is kept */
    store_instance in;
    assert_int_equal(store_get_instance(s, r1.inst.sop_uid, &in), 0);
    assert_memory_equal(in.digest, r1.inst.digest, 32);
    store_study st;
    store_get_study(s, in.study_uid, &st);
    assert_int_equal(st.conflicts, 1);
    store_stats stats;
    store_get_stats(s, &stats);
    assert_int_equal(stats.conflicts, 1);
    free(b);
    store_close(&s);
}

static void test_invalid_file_is_refused_with_reason(void **state)
{
    (void)state;
    store *s = open_store("d", 64 << 20);
    char q[600];
    snprintf(q, sizeof q, "%s/garbage.dcm", tmpdir);
    spit(q, (const uint8_t *)"this is not DICOM at all, not even close", 40);
    store_put_result r;
    assert_true(store_put_file(s, q, "dicom:X", 1000, &r) < 0);
    assert_int_equal(r.result, STORE_INVALID);
    assert_true(strlen(r.reason) > 0);
    store_close(&s);
}

static int collect_task(void *ctx, const wl_task *t)
{
    uint64_t *ids = ctx;
    for (int i = 0; i < 63; i++)
        if (!ids[i]) {
            ids[i] = t->id;
            break;
        }
    return 0;
}

/* An attending claims and signs every queued task. */
static void sign_all(store *s, int64_t now)
{
    static const wl_reader att = {"att1", "*", "*", 3, WL_ATTENDING, 100};
    uint64_t ids[64] = {0};
    store_task_walk(s, 1, collect_task, ids);
    for (int i = 0; ids[i]; i++) {
        wl_task t;
        assert_int_equal(store_task_claim(s, ids[i], &att, now, &t), 0);
        store_submission sub = {.task = ids[i], .reader = &att, .action = "sign", .report_id = "r",
                                .report = "{}", .report_len = 2};
        char why[128];
        assert_int_equal(store_task_submit(s, &sub, now, &t, why, sizeof why), 0);
        assert_int_equal(t.state, WL_SIGNED);
    }
}

static void test_map_full_refuses_then_recovers_after_eviction(void **state)
{
    (void)state;
    store *s = open_store("e", 3 << 20); /* 3 MiB map */
    char p[1200];
    path_of(p, sizeof p, "explicit_le/CT1_UNC.explicit_little_endian.dcm"); /* ~520 KB each */
    size_t len;
    uint8_t *b = slurp(p, &len);
    /* Distinct instances, one study each: patch the UIDs' last two characters. */
    int stored = 0, full = 0;
    char study_first[80] = "";
    for (int i = 0; i < 12; i++) {
        uint8_t *c = malloc(len);
        memcpy(c, b, len);
        /* SOP Instance UID value is at (0008,0018): find it and its study (0020,000D) */
        for (size_t k = 0; k + 8 < len && k < 8192; k++) {
            if (c[k] == 0x08 && c[k + 1] == 0 && c[k + 2] == 0x18 && c[k + 3] == 0 && c[k + 4] == 'U') {
                uint16_t vl = (uint16_t)(c[k + 6] | c[k + 7] << 8);
                c[k + 8 + vl - 3] = (uint8_t)('1' + i / 10); /* still digits: a valid UID */
                c[k + 8 + vl - 2] = (uint8_t)('0' + i % 10);
            }
            if (c[k] == 0x20 && c[k + 1] == 0 && c[k + 2] == 0x0D && c[k + 3] == 0 && c[k + 4] == 'U') {
                uint16_t vl = (uint16_t)(c[k + 6] | c[k + 7] << 8);
                c[k + 8 + vl - 3] = (uint8_t)('1' + i / 10); /* one study per instance */
                c[k + 8 + vl - 2] = (uint8_t)('0' + i % 10);
            }
        }
        char q[600];
        snprintf(q, sizeof q, "%s/i%d.dcm", tmpdir, i);
        spit(q, c, len);
        free(c);
        store_put_result r;
        store_put_file(s, q, "dicom:A", 1000 + i, &r);
        if (r.result == STORE_STORED) {
            stored++;
            if (!study_first[0])
                snprintf(study_first, sizeof study_first, "%s", r.inst.study_uid);
        } else {
            assert_int_equal(r.result, STORE_FULL);
            assert_non_null(strstr(r.reason, "full"));
            full++;
        }
    }
    assert_true(stored >= 1);
    assert_true(full >= 1);
    /* reads keep working while full */
    store_study st;
    assert_int_equal(store_get_study(s, study_first, &st), 0);
    /* complete everything; unread studies are never evicted; once read and
     * signed they are, and a new instance fits again */
    assert_true(store_sweep_complete(s, 100000, 1000, NULL, NULL) >= 1);
    assert_int_equal(store_evict(s, 100000, 100, 100000), 0);
    sign_all(s, 100500);
    assert_true(store_evict(s, 100000, 100, 101000) >= 1);
    assert_int_equal(store_get_study(s, study_first, &st), -2 /* -ENOENT */);
    char q[600];
    snprintf(q, sizeof q, "%s/i%d.dcm", tmpdir, 11);
    store_put_result r;
    store_put_file(s, q, "dicom:A", 200000, &r);
    assert_true(r.result == STORE_STORED || r.result == STORE_DUPLICATE);
    free(b);
    store_close(&s);
}

static void test_completeness_by_marker_and_quiet_time_survives_reopen(void **state)
{
    (void)state;
    store *s = open_store("f", 64 << 20);
    char p[1200];
    path_of(p, sizeof p, "explicit_le/MR_small.dcm");
    store_put_result r;
    assert_int_equal(store_put_file(s, p, "edge:clinic1", 1000, &r), 0);
    char study[80];
    snprintf(study, sizeof study, "%s", r.inst.study_uid);
    /* Not yet quiet long enough. */
    assert_int_equal(store_sweep_complete(s, 30000, 60000, NULL, NULL), 0);
    store_close(&s);
    s = open_store("f", 64 << 20);
    store_study st;
    store_get_study(s, study, &st);
    assert_int_equal(st.state, STUDY_RECEIVING);
    assert_int_equal(store_sweep_complete(s, 62000, 60000, NULL, NULL), 1);
    store_close(&s);
    s = open_store("f", 64 << 20);
    store_get_study(s, study, &st);
    assert_int_equal(st.state, STUDY_QUEUED); /* complete, and its reading task queued with it */
    assert_true(st.task_id > 0);
    wl_task task;
    assert_int_equal(store_task_get(s, st.task_id, &task), 0);
    assert_string_equal(task.study_uid, study);
    assert_string_equal(task.facility, "clinic1");
    /* a late arrival reopens it */
    char q[1200];
    path_of(q, sizeof q, "explicit_le/MR_small.dcm");
    store_put_result r2;
    store_put_file(s, p, "edge:clinic1", 70000, &r2); /* duplicate: not an arrival */
    store_get_study(s, study, &st);
    assert_int_equal(st.state, STUDY_QUEUED);
    /* marker on a fresh study: complete as soon as the count is reached */
    path_of(q, sizeof q, "explicit_le/CT_small.dcm");
    store_put_result r3;
    store_put_file(s, q, "edge:clinic1", 71000, &r3);
    store_marker m = {.expected = 1, .priority = 2, .referral = 1, .note = "chest pain"};
    assert_int_equal(store_study_marker(s, r3.inst.study_uid, &m, 71500), 0);
    store_get_study(s, r3.inst.study_uid, &st);
    assert_int_equal(st.state, STUDY_QUEUED);
    assert_int_equal(st.priority, 2);
    assert_int_equal(store_task_get(s, st.task_id, &task), 0);
    assert_int_equal(task.priority, WL_STAT);
    assert_string_equal(st.note, "chest pain");
    store_close(&s);
}

/* The wall clock went back an hour (an NTP step) while a study from a
 * modality was still receiving: its quiet time counts from now, not from
 * an arrival an hour ahead of the clock. */
static void test_quiet_time_counts_from_now_after_the_clock_went_back(void **state)
{
    (void)state;
    store *s = open_store("clockback", 64 << 20);
    char p[1200];
    path_of(p, sizeof p, "explicit_le/MR_small.dcm");
    const int64_t arrived = 10 * 3600 * 1000LL, now = arrived - 3600 * 1000LL;
    store_put_result r;
    assert_int_equal(store_put_file(s, p, "dicom:MR_AE", arrived, &r), 0);
    assert_int_equal(store_sweep_complete(s, now, 60000, NULL, NULL), 0);
    assert_int_equal(store_sweep_complete(s, now + 30000, 60000, NULL, NULL), 0); /* not quiet long enough yet */
    assert_int_equal(store_sweep_complete(s, now + 61000, 60000, NULL, NULL), 1);
    store_study st;
    assert_int_equal(store_get_study(s, r.inst.study_uid, &st), 0);
    assert_int_equal(st.state, STUDY_QUEUED);
    store_close(&s);
}

static int count_cb(void *ctx, const store_study *st)
{
    (void)st;
    (*(int *)ctx)++;
    return 0;
}

static void test_list_studies_filters_by_patient_and_modality(void **state)
{
    (void)state;
    store *s = open_store("g", 64 << 20);
    const char *files[] = {"explicit_le/CT_small.dcm", "explicit_le/MR_small.dcm", "charset/chrX1.dcm"};
    for (size_t i = 0; i < 3; i++) {
        char p[1200];
        path_of(p, sizeof p, files[i]);
        store_put_result r;
        assert_int_equal(store_put_file(s, p, "dicom:A", 1000, &r), 0);
    }
    int n = 0;
    store_study_filter f = {.state = -1, .modality = "CT"};
    assert_int_equal(store_list_studies(s, &f, 0, 100, count_cb, &n), 1);
    store_study_filter g = {.state = -1, .patient_id = "1CT1"};
    n = 0;
    assert_int_equal(store_list_studies(s, &g, 0, 100, count_cb, &n), 1);
    assert_int_equal(n, 1);
    store_study_filter all = {.state = -1};
    n = 0;
    assert_int_equal(store_list_studies(s, &all, 1, 1, count_cb, &n), 3);
    assert_int_equal(n, 1); /* paged */
    store_close(&s);
}


/* Studies by state, as /metrics and /api/v1/health show them: kept inside
 * the transactions that change studies (no scan per request); they must
 * agree with the studies themselves after every kind of change, after a
 * reopen, and for a store written before the counts were kept. */
static int tally_cb(void *ctx, const store_study *st)
{
    uint64_t *n = ctx;
    if (st->state < STUDY_STATE_COUNT)
        n[st->state]++;
    return 0;
}

static void assert_counts_agree(store *s, int expected_total)
{
    uint64_t scanned[STUDY_STATE_COUNT] = {0}, total = 0;
    store_study_filter all = {.state = -1};
    store_list_studies(s, &all, 0, 1000, tally_cb, scanned);
    store_stats ss;
    assert_int_equal(store_get_stats(s, &ss), 0);
    for (int i = 0; i < STUDY_STATE_COUNT; i++) {
        assert_int_equal(ss.studies_by_state[i], scanned[i]);
        total += ss.studies_by_state[i];
    }
    assert_int_equal(total, expected_total);
}

/* The counts record handled with LMDB directly, as another version of the
 * hub would: COUNTS_DROP deletes it (1 if it was there, as a store written
 * before it existed), COUNTS_BUMP adds one to its first count (a study an
 * older version added without counting it), COUNTS_TOTAL sums its counts. */
typedef enum counts_op { COUNTS_DROP, COUNTS_BUMP, COUNTS_TOTAL } counts_op;

static uint64_t counts_record(const char *sub, counts_op op)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", tmpdir, sub);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi meta;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 32), 0);
    assert_int_equal(mdb_env_open(env, dir, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &meta), 0);
    MDB_val k = {strlen("study_counts"), "study_counts"}, v;
    int rc = mdb_get(txn, meta, &k, &v);
    assert_true(rc == 0 || (rc == MDB_NOTFOUND && op == COUNTS_DROP));
    uint64_t out = 0;
    uint8_t rec[256];
    if (op == COUNTS_DROP && rc == 0) {
        assert_int_equal(mdb_del(txn, meta, &k, NULL), 0);
        out = 1;
    } else if (op == COUNTS_BUMP) {
        assert_true(v.mv_size <= sizeof rec && v.mv_size >= 16);
        memcpy(rec, v.mv_data, v.mv_size);
        uint64_t n0;
        memcpy(&n0, rec + 8, 8); /* after version and states */
        n0++;
        memcpy(rec + 8, &n0, 8);
        v.mv_data = rec;
        assert_int_equal(mdb_put(txn, meta, &k, &v, 0), 0);
    } else if (op == COUNTS_TOTAL) {
        for (size_t at = 8; at + 8 <= v.mv_size; at += 8) {
            uint64_t n;
            memcpy(&n, (uint8_t *)v.mv_data + at, 8);
            out += n;
        }
    }
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    return out;
}

typedef struct audit_seen {
    const char *what, *needle;
    int         found;
} audit_seen;

static int find_audit(void *ctx, uint64_t seq, const char *json, size_t len)
{
    (void)seq;
    audit_seen *a = ctx;
    char rec[1200], what[64];
    snprintf(rec, sizeof rec, "%.*s", (int)len, json);
    snprintf(what, sizeof what, "\"what\":\"%s\"", a->what);
    if (strstr(rec, what) && strstr(rec, a->needle))
        a->found++;
    return 0;
}

/* An auditor asks for a patient's accesses after retention removed the
 * study: each record about a study names its patient as written, the
 * eviction's own record too. */
static void test_audit_records_name_the_studys_patient(void **state)
{
    (void)state;
    store *s = open_store("ap", 64 << 20);
    char p[1200];
    path_of(p, sizeof p, "explicit_le/CT_small.dcm");
    store_put_result r;
    assert_int_equal(store_put_file(s, p, "dicom:A", 1000, &r), 0);
    store_study st;
    assert_int_equal(store_get_study(s, r.inst.study_uid, &st), 0);
    assert_true(st.patient_id[0]);
    char needle[120];
    snprintf(needle, sizeof needle, "\"patient\":\"%s\"", st.patient_id);
    audit_seen stored = {"store", needle, 0};
    store_audit_walk(s, 0, find_audit, &stored);
    assert_int_equal(stored.found, 1);
    assert_int_equal(store_audit(s, 1500, "http:127.0.0.1", "read-study", st.study_uid, "detail"), 0);
    assert_int_equal(store_audit(s, 1600, "hub", "none", "", "about no study"), 0);
    audit_seen read = {"read-study", needle, 0}, none = {"none", "\"patient\"", 0};
    store_audit_walk(s, 0, find_audit, &read);
    store_audit_walk(s, 0, find_audit, &none);
    assert_int_equal(read.found, 1);
    assert_int_equal(none.found, 0); /* no study, no patient field */
    assert_int_equal(store_sweep_complete(s, 100000, 1000, NULL, NULL), 1);
    sign_all(s, 100500);
    assert_int_equal(store_evict(s, 200000, 1, 200000), 1);
    assert_int_equal(store_get_study(s, st.study_uid, &st), -ENOENT);
    audit_seen evicted = {"evict", needle, 0};
    store_audit_walk(s, 0, find_audit, &evicted);
    assert_int_equal(evicted.found, 1);
    store_close(&s);
}

typedef struct waiting_seen {
    store_outbox_waiting w[4];
    int                  n;
} waiting_seen;

static int collect_waiting(void *ctx, const store_outbox_waiting *w)
{
    waiting_seen *s = ctx;
    if (s->n < 4)
        s->w[s->n++] = *w;
    return 0;
}

/* What each clinic has not taken yet, and since when: the hub's operator
 * phones a clinic whose critical-value alert has waited too long. */
static void test_outbox_summary_counts_and_dates_what_waits(void **state)
{
    (void)state;
    store *s = open_store("ob", 64 << 20);
    assert_int_equal(store_outbox_put(s, "clinicA", "r1", "report", "{}", 2, 1500), 0);
    assert_int_equal(store_outbox_put(s, "clinicA", "a2", "alert", "{}", 2, 2000), 0);
    assert_int_equal(store_outbox_put(s, "clinicA", "a1", "alert", "{}", 2, 1000), 0);
    assert_int_equal(store_outbox_put(s, "clinicB", "r2", "report", "{}", 2, 3000), 0);
    waiting_seen got = {0};
    assert_int_equal(store_outbox_summary(s, collect_waiting, &got), 2);
    assert_int_equal(got.n, 2);
    assert_string_equal(got.w[0].facility, "clinicA");
    assert_int_equal(got.w[0].alerts, 2);
    assert_int_equal(got.w[0].reports, 1);
    assert_int_equal(got.w[0].oldest_alert_ms, 1000);
    assert_string_equal(got.w[0].oldest_alert_id, "a1"); /* which to phone about */
    assert_int_equal(got.w[0].oldest_report_ms, 1500);
    int64_t since = -1;
    assert_int_equal(store_alert_state(s, "clinicA", "a1", &since), STORE_ALERT_WAITING);
    assert_int_equal(since, 1000);
    assert_int_equal(store_alert_state(s, "clinicB", "a1", &since), STORE_ALERT_NONE); /* another clinic's */
    assert_string_equal(got.w[1].facility, "clinicB");
    assert_int_equal(got.w[1].alerts, 0);
    assert_int_equal(got.w[1].oldest_report_ms, 3000);
    /* the oldest alert taken by the gateway: the next one is the oldest
     * waiting, and the one taken is unread until a person confirms it */
    assert_int_equal(store_outbox_ack(s, "clinicA", "a1", 4000), 0);
    memset(&got, 0, sizeof got);
    assert_int_equal(store_outbox_summary(s, collect_waiting, &got), 2);
    assert_int_equal(got.w[0].alerts, 1);
    assert_int_equal(got.w[0].oldest_alert_ms, 2000);
    assert_int_equal(got.w[0].unread_alerts, 1);
    assert_int_equal(got.w[0].oldest_unread_ms, 4000);
    assert_string_equal(got.w[0].oldest_alert_id, "a2");
    assert_string_equal(got.w[0].oldest_unread_id, "a1");
    assert_int_equal(store_alert_state(s, "clinicA", "a1", &since), STORE_ALERT_UNREAD);
    assert_int_equal(since, 4000);
    /* everything of clinicA taken: nothing waits there, two alerts unread;
     * a report is never "unread" */
    assert_int_equal(store_outbox_ack(s, "clinicA", "a2", 5000), 0);
    assert_int_equal(store_outbox_ack(s, "clinicA", "r1", 5000), 0);
    memset(&got, 0, sizeof got);
    assert_int_equal(store_outbox_summary(s, collect_waiting, &got), 2);
    assert_string_equal(got.w[0].facility, "clinicA");
    assert_int_equal(got.w[0].alerts + got.w[0].reports, 0);
    assert_int_equal(got.w[0].unread_alerts, 2);
    assert_int_equal(got.w[0].oldest_unread_ms, 4000);
    /* read by a person: once (a repeat, or a report's id, changes nothing) */
    assert_int_equal(store_alert_read(s, "clinicA", "a1", "nurse Li", 6000, 6100), 1);
    assert_int_equal(store_alert_read(s, "clinicA", "a1", "nurse Li", 6000, 6200), 0);
    assert_int_equal(store_alert_read(s, "clinicA", "r1", "nurse Li", 6000, 6200), 0);
    assert_int_equal(store_alert_read(s, "clinicA", "a2", "nurse Wu", 6500, 6600), 1);
    assert_int_equal(store_alert_state(s, "clinicA", "a1", &since), STORE_ALERT_NONE); /* read */
    audit_seen read = {"alert-read", "a1 read by nurse Li at", 0};
    store_audit_walk(s, 0, find_audit, &read);
    assert_int_equal(read.found, 1);
    memset(&got, 0, sizeof got);
    assert_int_equal(store_outbox_summary(s, collect_waiting, &got), 1);
    assert_string_equal(got.w[0].facility, "clinicB");
    store_close(&s);
}

static void test_studies_by_state_are_counted_with_every_change(void **state)
{
    (void)state;
    store *s = open_store("k", 64 << 20);
    const char *files[] = {"explicit_le/CT_small.dcm", "explicit_le/MR_small.dcm", "charset/chrX1.dcm"};
    char uid[3][80];
    for (size_t i = 0; i < 3; i++) {
        char p[1200];
        path_of(p, sizeof p, files[i]);
        store_put_result r;
        assert_int_equal(store_put_file(s, p, "dicom:A", 1000, &r), 0);
        snprintf(uid[i], sizeof uid[i], "%s", r.inst.study_uid);
    }
    store_stats ss;
    assert_int_equal(store_get_stats(s, &ss), 0);
    assert_int_equal(ss.studies_by_state[STUDY_RECEIVING], 3);
    assert_counts_agree(s, 3);
    assert_int_equal(store_sweep_complete(s, 100000, 1000, NULL, NULL), 3); /* → queued, with their tasks */
    assert_int_equal(store_get_stats(s, &ss), 0);
    assert_int_equal(ss.studies_by_state[STUDY_RECEIVING], 0);
    assert_int_equal(ss.studies_by_state[STUDY_QUEUED], 3);
    assert_counts_agree(s, 3);
    /* a page filtered by state alone: its total from the counts, the page walked */
    int n = 0;
    store_study_filter queued = {.state = STUDY_QUEUED}, receiving = {.state = STUDY_RECEIVING};
    assert_int_equal(store_list_studies(s, &queued, 1, 1, count_cb, &n), 3);
    assert_int_equal(n, 1);
    n = 0;
    assert_int_equal(store_list_studies(s, &receiving, 0, 10, count_cb, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(store_set_study_state(s, uid[0], STUDY_READING, 100100), 0);
    assert_counts_agree(s, 3);
    sign_all(s, 100500);
    assert_int_equal(store_get_stats(s, &ss), 0);
    assert_int_equal(ss.studies_by_state[STUDY_SIGNED], 3);
    assert_counts_agree(s, 3);
    assert_true(store_evict(s, 200000, 1, 200000) == 1); /* one study deleted */
    assert_counts_agree(s, 2);
    store_close(&s);

    /* a store from before the counts: read beside a hub (attach), they
     * are counted by a scan; the hub's next open writes them again */
    assert_int_equal(counts_record("k", COUNTS_DROP), 1);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/k", tmpdir);
    store_config cfg = {.dir = dir, .map_size = 64 << 20, .attach = true};
    char err[256];
    assert_int_equal(store_open(&cfg, &s, err, sizeof err), 0);
    assert_counts_agree(s, 2);
    store_close(&s);
    assert_int_equal(counts_record("k", COUNTS_DROP), 0); /* attach wrote nothing */
    s = open_store("k", 64 << 20);
    assert_counts_agree(s, 2);
    store_close(&s);
    assert_int_equal(counts_record("k", COUNTS_DROP), 1); /* the hub's open wrote them */

    /* counts that miss a study (an older version ran in between): read
     * beside the hub, counted by a scan; the hub's open counts again */
    s = open_store("k", 64 << 20);
    store_close(&s);
    counts_record("k", COUNTS_BUMP);
    assert_int_equal(store_open(&cfg, &s, err, sizeof err), 0);
    assert_counts_agree(s, 2);
    store_close(&s);
    s = open_store("k", 64 << 20);
    store_close(&s);
    assert_int_equal(counts_record("k", COUNTS_TOTAL), 2); /* the record itself, as the open rewrote it */
}


/* The write-ahead space: zeros laid past the store's end at open, commits
 * landing on them (the file does not grow), zeros laid again while the
 * store is idle, and never over a stored byte — across a reopen too. */
static uint64_t file_size(const char *sub)
{
    char p[700];
    snprintf(p, sizeof p, "%s/%s/data.mdb", tmpdir, sub);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    return (uint64_t)st.st_size;
}

static int zeros_from(const char *sub, uint64_t from, uint64_t to)
{
    char p[700];
    snprintf(p, sizeof p, "%s/%s/data.mdb", tmpdir, sub);
    FILE *fp = fopen(p, "rb");
    assert_non_null(fp);
    assert_int_equal(fseeko(fp, (off_t)from, SEEK_SET), 0);
    int c, all = 1;
    for (uint64_t i = from; i < to && (c = fgetc(fp)) != EOF; i++)
        all &= c == 0;
    fclose(fp);
    return all;
}

static void test_runway_is_laid_ahead_and_commits_land_on_it(void **state)
{
    (void)state;
    const uint64_t runway = 4 << 20;
    struct statvfs vfs; /* the store leaves the last GiB of free disk alone */
    assert_int_equal(statvfs(tmpdir, &vfs), 0);
    if ((uint64_t)vfs.f_bavail * vfs.f_frsize < ((uint64_t)3 << 30)) {
        fprintf(stderr, "skipped: less than 3 GiB free under %s\n", tmpdir);
        skip();
    }
    store *s = open_store_with("rw", 64 << 20, runway);
    store_stats ss;
    assert_int_equal(store_get_stats(s, &ss), 0);
    assert_int_equal(ss.runway_ahead, runway);
    uint64_t size = file_size("rw");
    assert_int_equal(size, ss.map_used + runway);
    assert_true(zeros_from("rw", ss.map_used, size));

    const char *rel[] = {"explicit_le/CT_small.dcm", "explicit_le/MR_small.dcm", "explicit_le/CT1_UNC.explicit_little_endian.dcm"};
    char sop[3][65];
    size_t n = 0;
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
        char p[1200];
        path_of(p, sizeof p, rel[i]);
        if (access(p, R_OK) != 0)
            continue;
        store_put_result r;
        assert_int_equal(store_put_file(s, p, "dicom:TEST", 1000, &r), 0);
        assert_int_equal(r.result, STORE_STORED);
        snprintf(sop[n++], sizeof sop[0], "%s", r.inst.sop_uid);
    }
    assert_true(n >= 2);
    assert_int_equal(store_get_stats(s, &ss), 0);
    assert_true(ss.runway_ahead < runway);          /* the commits took zeroed pages */
    assert_int_equal(file_size("rw"), size);        /* and the file did not grow */

    /* Idle: the space is laid again without a reopen. */
    for (int i = 0; i < 50 && ss.runway_ahead < runway; i++) {
        usleep(100 * 1000);
        assert_int_equal(store_get_stats(s, &ss), 0);
    }
    assert_int_equal(ss.runway_ahead, runway);
    assert_true(zeros_from("rw", ss.map_used, ss.map_used + runway));
    store_close(&s);

    /* Reopened: laid already, every instance intact. */
    s = open_store_with("rw", 64 << 20, runway);
    assert_int_equal(store_get_stats(s, &ss), 0);
    assert_int_equal(ss.runway_ahead, runway);
    for (size_t i = 0, j = 0; i < sizeof rel / sizeof rel[0]; i++) {
        char p[1200];
        path_of(p, sizeof p, rel[i]);
        if (access(p, R_OK) != 0)
            continue;
        size_t len;
        uint8_t *orig = slurp(p, &len);
        store_instance in;
        assert_int_equal(store_get_instance(s, sop[j++], &in), 0);
        assert_int_equal(in.size, len);
        uint8_t *back = malloc(len);
        read_whole(s, &in, back);
        assert_memory_equal(back, orig, len);
        free(back);
        free(orig);
    }
    store_close(&s);
    /* LMDB's own tool opens it: the zeros past the end are nobody's pages. */
    assert_true(db_entries("rw", "inst") >= 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_then_read_back_identical_bytes),
        cmocka_unit_test(test_same_instance_twice_is_stored_once),
        cmocka_unit_test(test_early_chunks_become_the_instance),
        cmocka_unit_test(test_orphan_early_chunks_are_deleted_at_open),
        cmocka_unit_test(test_same_uid_other_bytes_is_kept_as_conflict),
        cmocka_unit_test(test_commits_by_another_process_are_told_from_own),
        cmocka_unit_test(test_opening_beside_the_hub_keeps_its_chunks_in_flight),
        cmocka_unit_test(test_invalid_file_is_refused_with_reason),
        cmocka_unit_test(test_map_full_refuses_then_recovers_after_eviction),
        cmocka_unit_test(test_audit_records_name_the_studys_patient),
        cmocka_unit_test(test_outbox_summary_counts_and_dates_what_waits),
        cmocka_unit_test(test_completeness_by_marker_and_quiet_time_survives_reopen),
        cmocka_unit_test(test_quiet_time_counts_from_now_after_the_clock_went_back),
        cmocka_unit_test(test_list_studies_filters_by_patient_and_modality),
        cmocka_unit_test(test_studies_by_state_are_counted_with_every_change),
        cmocka_unit_test(test_runway_is_laid_ahead_and_commits_land_on_it),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
