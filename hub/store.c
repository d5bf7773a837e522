/* store.c — the LMDB environment and ingest with group commit.
 *
 * Callers (one thread per DICOM association or edge) parse and digest their
 * instance outside any lock, then commit it: on their own thread when
 * nobody is committing, else by queueing a job that the committer thread
 * applies with everything else queued in one write transaction (default
 * sync), waking every caller of the batch.  Durability costs one fsync per
 * batch, not per instance.  A large instance's first chunks may come
 * earlier, as chunk jobs nobody waits for (store_blob, store.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "codecs/codecs.h"
#include "hub/digest.h"
#include "hub/disk.h"
#include "hub/lmdb_stamp.h"
#include "hub/log.h"
#include "hub/store_private.h"

typedef enum job_kind {
    JOB_PUT = 0, /* index and store an instance (the caller waits) */
    JOB_CHUNK,   /* write one early chunk of a store_blob (nobody waits; freed by the committer) */
    JOB_DROP,    /* delete a store_blob's early chunks (the caller waits) */
} job_kind;

/* Early chunks of one instance (store.h).  Counters under s->mu. */
struct store_blob {
    uint64_t id;
    uint32_t queued;   /* chunks 0..queued-1 handed over */
    uint32_t pending;  /* of those, not yet through a commit */
    bool     failed;   /* one was refused or its commit failed */
    bool     settled;  /* a JOB_PUT using it committed: referenced or deleted */
};

struct put_job {
    put_job         *next;
    job_kind         kind;
    store_blob      *blob;     /* JOB_PUT: early chunks, or NULL; JOB_CHUNK, JOB_DROP: whose */
    uint32_t         chunk;    /* JOB_CHUNK */
    const uint8_t   *file;     /* the Part 10 file's bytes (in.size of them); JOB_CHUNK: the chunk's */
    const char      *source;
    int64_t          now_ms;
    store_instance   in;
    store_study      st;       /* study fields from this instance's header */
    char             series_modality[17], series_desc[65];
    int32_t          series_number;
    store_put_result *res;
    bool             done;
};

int store_lmdb_err(int rc)
{
    if (rc == 0)
        return 0;
    if (rc == MDB_NOTFOUND)
        return -ENOENT;
    if (rc == MDB_MAP_FULL)
        return -ENOSPC;
    if (rc > 0)
        return -rc; /* errno */
    return -EIO;
}

/* A write transaction begun with write_mu held; *txn NULL on failure. */
static int write_begin_held(store *s, MDB_txn **txn)
{
    int rc = mdb_txn_begin(s->env, NULL, 0, txn);
    if (rc)
        *txn = NULL;
    return rc;
}

int store_write_begin(store *s, MDB_txn **txn)
{
    pthread_mutex_lock(&s->write_mu);
    int rc = write_begin_held(s, txn);
    pthread_mutex_unlock(&s->write_mu);
    return rc;
}

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void *committer_main(void *arg);
static void commit_batch(store *s, put_job **jobs, unsigned n);
static int run_job(store *s, put_job *job);
static int apply_drop(store *s, MDB_txn *txn, const store_blob *b);
static void enqueue(store *s, put_job *job);

static int mkdir_p(const char *dir)
{
    char buf[4096];
    size_t n = strlen(dir);
    if (n >= sizeof buf)
        return -ENAMETOOLONG;
    memcpy(buf, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, 0700) < 0 && errno != EEXIST)
                return -errno;
            buf[i] = c;
        }
    }
    return 0;
}

/* Deletes every chunk keyed by blob id `id` (blob id ‖ n keys, 12 bytes). */
static int drop_chunks(store *s, MDB_txn *txn, uint64_t id)
{
    store_instance in = {.blob_id = id};
    uint8_t key[36];
    MDB_val k = {store_blob_key(&in, 0, key), key}, v;
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, s->blob, &c);
    if (rc)
        return rc;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 12 || memcmp(k.mv_data, key, 8))
            break;
        if ((rc = mdb_cursor_del(c, 0)))
            break;
    }
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Chunks written early for instances whose receiving never completed
 * (the process stopped meanwhile): nothing refers to them. */
static int drop_orphan_chunks(store *s, MDB_txn *txn)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, s->early, &c);
    if (rc)
        return rc;
    MDB_val k, v;
    while ((rc = mdb_cursor_get(c, &k, &v, MDB_FIRST)) == 0) {
        uint64_t id = 0;
        if (k.mv_size == sizeof id)
            memcpy(&id, k.mv_data, sizeof id);
        if ((id && (rc = drop_chunks(s, txn, id))) || (rc = mdb_cursor_del(c, 0)))
            break;
    }
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int store_open(const store_config *cfg, store **out, char *err, size_t errlen)
{
    *out = NULL;
    store *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    s->dir = strdup(cfg->dir);
    s->batch_max = cfg->batch_max ? cfg->batch_max : 64;
    s->map_size = cfg->map_size ? cfg->map_size : (uint64_t)16 << 30;
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->audit_mu, NULL);
    pthread_mutex_init(&s->write_mu, NULL);
    pthread_mutex_init(&s->outside_mu, NULL);
    pthread_mutex_init(&s->rpool_mu, NULL);
    pthread_cond_init(&s->wake, NULL);
    pthread_cond_init(&s->done, NULL);
    int rc = mkdir_p(cfg->dir);
    if (rc < 0) {
        snprintf(err, errlen, "cannot create data directory %s: %s", cfg->dir, strerror(-rc));
        goto fail;
    }
    if ((rc = mdb_env_create(&s->env)) || (rc = mdb_env_set_maxdbs(s->env, 32)) ||
        (rc = mdb_env_set_mapsize(s->env, s->map_size)) || (rc = mdb_env_set_maxreaders(s->env, 256)) ||
        (rc = mdb_env_open(s->env, cfg->dir, MDB_NOTLS, 0600))) {
        snprintf(err, errlen, "cannot open LMDB environment in %s: %s", cfg->dir, mdb_strerror(rc));
        rc = store_lmdb_err(rc);
        goto fail;
    }
    /* The map size of an existing environment may be larger than asked. */
    MDB_envinfo info;
    mdb_env_info(s->env, &info);
    s->map_size = info.me_mapsize;
    store_outside_init(s);
    MDB_txn *txn;
    if ((rc = store_write_begin(s, &txn))) {
        snprintf(err, errlen, "LMDB: %s", mdb_strerror(rc));
        rc = store_lmdb_err(rc);
        goto fail;
    }
    struct { const char *name; unsigned flags; MDB_dbi *dbi; } dbs[] = {
        {"inst", 0, &s->inst},       {"blob", 0, &s->blob},         {"study", 0, &s->study},
        {"series", 0, &s->series},   {"sinst", 0, &s->sinst},
        {"patient", MDB_DUPSORT, &s->patient}, {"pending", 0, &s->pending},
        {"conflict", 0, &s->conflict}, {"audit", MDB_INTEGERKEY, &s->audit}, {"meta", 0, &s->meta},
        {"outbox", 0, &s->outbox},   {"report", 0, &s->report},     {"report_idx", 0, &s->report_idx},
        {"report_pat", 0, &s->report_pat}, {"report_ref", 0, &s->report_ref}, {"repeat", 0, &s->repeat},
        {"early", 0, &s->early},     {"outbox_at", 0, &s->outbox_at}, {"alert_open", 0, &s->alert_open},
    };
    /* Refused before anything is made in it: an edge's spool, a cache, a
     * store of another record layout (lmdb_stamp.h). */
    static const char *const wl_names[] = {WL_DB_NAMES};
    const char *names[sizeof dbs / sizeof dbs[0] + sizeof wl_names / sizeof wl_names[0] + 1];
    size_t n_names = 0;
    for (size_t i = 0; i < sizeof dbs / sizeof dbs[0]; i++)
        names[n_names++] = dbs[i].name;
    for (size_t i = 0; i < sizeof wl_names / sizeof wl_names[0]; i++)
        names[n_names++] = wl_names[i];
    names[n_names] = NULL;
    const size_t sizes[] = {RECORD_VERSION, sizeof(inst_rec), sizeof(study_rec)};
    const lmdb_stamp stamp = {"hub store", lmdb_stamp_layout(sizes, 3), names};
    if ((rc = lmdb_stamp_check(txn, &stamp, cfg->dir, err, errlen))) {
        mdb_txn_abort(txn);
        if (rc > 0) {
            snprintf(err, errlen, "LMDB: %s", mdb_strerror(rc));
            rc = store_lmdb_err(rc);
        }
        goto fail;
    }
    for (size_t i = 0; i < sizeof dbs / sizeof dbs[0]; i++) {
        if ((rc = mdb_dbi_open(txn, dbs[i].name, dbs[i].flags | MDB_CREATE, dbs[i].dbi))) {
            mdb_txn_abort(txn);
            snprintf(err, errlen, "LMDB: cannot open database %s: %s", dbs[i].name, mdb_strerror(rc));
            rc = store_lmdb_err(rc);
            goto fail;
        }
    }
    if (!cfg->attach && (rc = drop_orphan_chunks(s, txn))) {
        mdb_txn_abort(txn);
        snprintf(err, errlen, "LMDB: deleting chunks of instances never completed: %s", mdb_strerror(rc));
        rc = store_lmdb_err(rc);
        goto fail;
    }
    if (!cfg->attach && (rc = store_counts_ensure(s, txn))) {
        mdb_txn_abort(txn);
        snprintf(err, errlen, "LMDB: counting studies by state: %s", mdb_strerror(rc));
        rc = store_lmdb_err(rc);
        goto fail;
    }
    if ((rc = wl_open(txn, cfg->worklist, &s->wl))) {
        mdb_txn_abort(txn);
        snprintf(err, errlen, "cannot open the worklist: %s", wl_strerror(rc));
        rc = -EIO;
        goto fail;
    }
    s->on_tasks = cfg->on_tasks;
    s->on_tasks_ctx = cfg->on_tasks_ctx;
    if ((rc = store_txn_commit(s, txn))) {
        snprintf(err, errlen, "LMDB: %s", mdb_strerror(rc));
        rc = store_lmdb_err(rc);
        goto fail;
    }
    if ((rc = pthread_create(&s->committer, NULL, committer_main, s))) {
        snprintf(err, errlen, "cannot start committer thread: %s", strerror(rc));
        rc = -rc;
        goto fail;
    }
    s->runway_fd = -1;
    s->runway_bytes = cfg->attach ? 0 : cfg->runway_bytes;
    if (s->runway_bytes && (rc = store_runway_start(s, cfg->dir)) < 0) /* commits only flush more */
        log_warn("store: no write-ahead space: %s", strerror(-rc));
    *out = s;
    return 0;
fail:
    if (s->env)
        mdb_env_close(s->env);
    wl_close(&s->wl);
    free(s->dir);
    free(s);
    return rc < 0 ? rc : -EIO;
}

void store_close(store **sp)
{
    if (!sp || !*sp)
        return;
    store *s = *sp;
    store_runway_stop(s);
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->wake);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->committer, NULL);
    for (unsigned i = 0; i < s->rpool_n; i++)
        mdb_txn_abort(s->rpool[i]);
    mdb_env_close(s->env);
    wl_close(&s->wl);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->audit_mu);
    pthread_mutex_destroy(&s->write_mu);
    pthread_mutex_destroy(&s->outside_mu);
    pthread_mutex_destroy(&s->rpool_mu);
    pthread_cond_destroy(&s->wake);
    pthread_cond_destroy(&s->done);
    free(s->dir);
    free(s);
    *sp = NULL;
}

const char *store_dir(const store *s) { return s->dir; }

/* --- indexing a received file (caller's thread, no lock) ------------- */

static void top(const dcm_file *f, uint32_t tag, char *buf, size_t n)
{
    if (dcm_top_str(f, tag, buf, n) < 0)
        buf[0] = '\0';
}

static int32_t top_int(const dcm_file *f, uint32_t tag)
{
    int32_t i = dcm_find(f, -1, tag);
    uint32_t v;
    if (i < 0 || dcm_get_u32(f, dcm_at(f, i), 0, &v) < 0)
        return 0;
    return (int32_t)v;
}

/* Parses the file in place (job->file, in.size bytes) for its index fields;
 * digests its data set unless the receiver already did (digest of the bytes
 * from digest_from on: a data set that begins with stray group 0002
 * elements starts later than the receiver thought). */
static int index_file(put_job *job, const uint8_t *digest, uint64_t digest_from, store_put_result *res)
{
    dcm_file *f = NULL;
    dcm_err err = {0};
    int rc = dcm_parse(job->file, (size_t)job->in.size, NULL, &f, &err);
    if (rc < 0) {
        res->result = STORE_INVALID;
        snprintf(res->reason, sizeof res->reason, "%s", err.msg[0] ? err.msg : dcm_strerror(rc));
        return rc;
    }
    store_instance *in = &job->in;
    store_study *st = &job->st;
    top(f, DCM_TAG(0x0008, 0x0016), in->sop_class, sizeof in->sop_class);
    const char *why = dcm_uids_why(f, in->sop_uid, in->study_uid, in->series_uid);
    if (why) {
        res->result = STORE_INVALID;
        snprintf(res->reason, sizeof res->reason, "%s", why);
        dcm_free(&f);
        return DCM_EVALUE;
    }
    snprintf(in->ts_uid, sizeof in->ts_uid, "%s", dcm_file_ts(f)->uid);
    in->instance_number = top_int(f, DCM_TAG(0x0020, 0x0013));
    in->dataset_offset = dcm_dataset_offset(f);
    memcpy(st->study_uid, in->study_uid, sizeof st->study_uid);
    top(f, DCM_TAG(0x0010, 0x0020), st->patient_id, sizeof st->patient_id);
    int32_t pn = dcm_find(f, -1, DCM_TAG(0x0010, 0x0010));
    if (pn >= 0) {
        char *u = NULL;
        size_t ul = 0;
        if (dcm_get_utf8(f, dcm_at(f, pn), &u, &ul, &err) == 0) {
            while (ul && (u[ul - 1] == ' ' || u[ul - 1] == '\0'))
                ul--;
            snprintf(st->patient_name, sizeof st->patient_name, "%.*s", (int)ul, u);
        }
        free(u);
    }
    top(f, DCM_TAG(0x0010, 0x0030), st->patient_birth_date, sizeof st->patient_birth_date);
    top(f, DCM_TAG(0x0010, 0x0040), st->patient_sex, sizeof st->patient_sex);
    top(f, DCM_TAG(0x0008, 0x0050), st->accession, sizeof st->accession);
    top(f, DCM_TAG(0x0008, 0x0020), st->study_date, sizeof st->study_date);
    top(f, DCM_TAG(0x0008, 0x0030), st->study_time, sizeof st->study_time);
    top(f, DCM_TAG(0x0008, 0x1030), st->description, sizeof st->description);
    top(f, DCM_TAG(0x0018, 0x0015), st->body_part, sizeof st->body_part);
    top(f, DCM_TAG(0x0008, 0x0060), job->series_modality, sizeof job->series_modality);
    top(f, DCM_TAG(0x0008, 0x103E), job->series_desc, sizeof job->series_desc);
    job->series_number = top_int(f, DCM_TAG(0x0020, 0x0011));

    dcm_free(&f);
    /* Digest of the data set bytes as received (digest.h). */
    if (digest && digest_from == in->dataset_offset) {
        memcpy(in->digest, digest, 32);
        return 0;
    }
    digest_ctx *d = digest_new();
    if (!d) {
        res->result = STORE_FAILED;
        snprintf(res->reason, sizeof res->reason, "out of memory");
        return -ENOMEM;
    }
    digest_update(d, job->file + in->dataset_offset, (size_t)(in->size - in->dataset_offset));
    digest_final(&d, in->digest);
    return 0;
}

typedef struct put_known {
    const uint8_t *digest, *expect;
    uint64_t       digest_from;
    store_blob    *early;
} put_known;

static int put_file(store *s, const char *path, const put_known *kn, const char *source, int64_t now_ms,
                    store_put_result *res);

int store_put_file(store *s, const char *path, const char *source, int64_t now_ms, store_put_result *res)
{
    put_known kn = {0};
    return put_file(s, path, &kn, source, now_ms, res);
}

int store_put_file_expect(store *s, const char *path, const char *source, int64_t now_ms,
                          const uint8_t expect[32], store_put_result *res)
{
    put_known kn = {.expect = expect};
    return put_file(s, path, &kn, source, now_ms, res);
}

int store_put_file_early(store *s, const char *path, const uint8_t digest[32], uint64_t digest_from,
                         store_blob *early, const char *source, int64_t now_ms, store_put_result *res)
{
    put_known kn = {.digest = digest, .digest_from = digest_from, .early = early};
    return put_file(s, path, &kn, source, now_ms, res);
}

/* The file is mapped, not read: parsing, digest and the copy into LMDB's
 * pages all read the page cache in place (the caller owns the file, so
 * nobody truncates it under the mapping). */
static int put_file(store *s, const char *path, const put_known *kn, const char *source, int64_t now_ms,
                    store_put_result *res)
{
    memset(res, 0, sizeof *res);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        res->result = STORE_FAILED;
        snprintf(res->reason, sizeof res->reason, "cannot open received file: %s", strerror(e));
        s->put_failed++;
        return -e;
    }
    size_t len = (size_t)sb.st_size;
    void *map = len ? mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    int e = errno;
    close(fd);
    if (map == MAP_FAILED) {
        res->result = STORE_FAILED;
        snprintf(res->reason, sizeof res->reason, "cannot map received file: %s", strerror(e));
        s->put_failed++;
        return -e;
    }
    if (map)
        madvise(map, len, MADV_SEQUENTIAL);
    int rc = store_put_mem(s, map ? map : "", len, kn->digest, kn->digest_from, kn->expect, kn->early, source,
                           now_ms, res);
    if (map)
        munmap(map, len);
    return rc;
}

int store_put_mem(store *s, const void *file, size_t len, const uint8_t digest[32], uint64_t digest_from,
                  const uint8_t expect[32], store_blob *early, const char *source, int64_t now_ms,
                  store_put_result *res)
{
    memset(res, 0, sizeof *res);
    put_job job = {.file = file, .source = source, .now_ms = now_ms, .res = res, .blob = early};
    job.in.size = len;
    int rc = index_file(&job, digest, digest_from, res);
    if (rc < 0) {
        __atomic_fetch_add(res->result == STORE_INVALID ? &s->put_invalid : &s->put_failed, 1, __ATOMIC_RELAXED);
        return rc;
    }
    if (expect && memcmp(expect, job.in.digest, 32)) {
        res->result = STORE_INVALID;
        snprintf(res->reason, sizeof res->reason, "digest mismatch: the bytes received are not the bytes offered");
        s->put_invalid++;
        return -EBADMSG;
    }
    snprintf(job.in.source, sizeof job.in.source, "%s", source ? source : "");
    job.in.received_ms = now_ms;
    if (run_job(s, &job) < 0)
        return -ESHUTDOWN;
    res->inst = job.in;
    return res->result == STORE_STORED || res->result == STORE_DUPLICATE || res->result == STORE_CONFLICT ? 0 : -EIO;
}

/* Commits job (on this thread when nobody else is committing, else through
 * the committer) and returns once it is through; -ESHUTDOWN when closing. */
static int run_job(store *s, put_job *job)
{
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        job->res->result = STORE_FAILED;
        snprintf(job->res->reason, sizeof job->res->reason, "store is shutting down");
        return -ESHUTDOWN;
    }
    if (!s->committing && !s->queue_head) {
        /* Nobody is committing: commit on this thread. A lone sender waits
         * for each commit in turn; handing every instance to the committer
         * thread and back cost two thread switches per instance, and on a
         * busy machine each is a wait for a CPU. Jobs queued meanwhile are
         * batched by the committer thread. */
        s->committing = true;
        pthread_mutex_unlock(&s->mu);
        commit_batch(s, &job, 1);
        pthread_mutex_lock(&s->mu);
        s->committing = false;
        pthread_cond_signal(&s->wake);
    } else {
        enqueue(s, job);
        while (!job->done)
            pthread_cond_wait(&s->done, &s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return 0;
}

static void enqueue(store *s, put_job *job) /* under s->mu */
{
    if (s->queue_tail)
        s->queue_tail->next = job;
    else
        s->queue_head = job;
    s->queue_tail = job;
    pthread_cond_signal(&s->wake);
}

store_blob *store_blob_new(store *s)
{
    (void)s;
    store_blob *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    /* Random: unique among the few in flight and the orphans of a crash. */
    while (!b->id)
        if (getrandom(&b->id, sizeof b->id, 0) != (ssize_t)sizeof b->id)
            b->id = (uint64_t)mono_us() * 0x9E3779B97F4A7C15u;
    return b;
}

int store_blob_chunk(store *s, store_blob *b, uint32_t n, const void *p)
{
    put_job *job = calloc(1, sizeof *job);
    if (!job)
        return -ENOMEM;
    job->kind = JOB_CHUNK;
    job->blob = b;
    job->chunk = n;
    job->file = p;
    pthread_mutex_lock(&s->mu);
    if (s->stopping || n != b->queued) {
        pthread_mutex_unlock(&s->mu);
        free(job);
        return -EINVAL;
    }
    b->queued++;
    b->pending++;
    enqueue(s, job);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

void store_blob_free(store *s, store_blob **bp)
{
    store_blob *b = bp ? *bp : NULL;
    if (!b)
        return;
    pthread_mutex_lock(&s->mu);
    while (b->pending)
        pthread_cond_wait(&s->done, &s->mu);
    bool drop = b->queued && !b->settled;
    pthread_mutex_unlock(&s->mu);
    if (drop) {
        store_put_result res;
        put_job job = {.kind = JOB_DROP, .blob = b, .res = &res};
        run_job(s, &job); /* failing that, store_open deletes them */
    }
    free(b);
    *bp = NULL;
}

/* --- the committer --------------------------------------------------- */

/* The instance's bytes, chunk by chunk; with early chunks, only those not
 * yet written, and under its blob id. */
static int put_blob(store *s, MDB_txn *txn, put_job *job)
{
    uint8_t key[36];
    uint64_t size = job->in.size;
    uint32_t first = 0;
    if (job->blob) {
        job->in.blob_id = job->blob->id;
        first = job->blob->queued;
        MDB_val ek = {sizeof job->blob->id, &job->blob->id};
        int rc = mdb_del(txn, s->early, &ek, NULL); /* an instance's from now on */
        if (rc && rc != MDB_NOTFOUND)
            return rc;
    }
    for (uint32_t chunk = first; (uint64_t)chunk * STORE_CHUNK < size || (size == 0 && chunk == 0); chunk++) {
        uint64_t off = (uint64_t)chunk * STORE_CHUNK;
        size_t n = size - off < STORE_CHUNK ? (size_t)(size - off) : STORE_CHUNK;
        MDB_val k = {store_blob_key(&job->in, chunk, key), key}, v = {n, NULL};
        int rc = mdb_put(txn, s->blob, &k, &v, MDB_RESERVE);
        if (rc)
            return rc;
        /* Straight into the pages LMDB reserved: the one copy of the bytes. */
        memcpy(v.mv_data, job->file + off, n);
        if (size == 0)
            break;
    }
    return 0;
}

static size_t series_key(char *key, size_t n, const char *study, const char *series)
{
    return (size_t)snprintf(key, n, "%s%c%s", study, '\0', series) + 1;
}

typedef struct series_rec {
    uint8_t  version;
    char     modality[17], description[65];
    int32_t  number;
    uint32_t n_instances;
} series_rec;

static void add_modality(char *list, size_t n, const char *mod)
{
    if (!mod[0])
        return;
    for (const char *p = list; *p;) {
        size_t l = strcspn(p, "\\");
        if (l == strlen(mod) && !strncmp(p, mod, l))
            return;
        p += l + (p[l] == '\\');
    }
    size_t used = strlen(list);
    snprintf(list + used, n - used, "%s%s", used ? "\\" : "", mod);
}

static int apply_new_instance(store *s, MDB_txn *txn, put_job *job)
{
    int rc = put_blob(s, txn, job);
    if (rc)
        return rc;
    inst_rec ir = {.version = RECORD_VERSION, .in = job->in};
    MDB_val k = {strlen(job->in.sop_uid), job->in.sop_uid}, v = {sizeof ir, &ir};
    if ((rc = mdb_put(txn, s->inst, &k, &v, 0)))
        return rc;
    /* series */
    char skey[2 * STORE_UID_MAX + 2];
    size_t sk = series_key(skey, sizeof skey, job->in.study_uid, job->in.series_uid);
    MDB_val sk_v = {sk, skey}, sv;
    series_rec sr = {.version = RECORD_VERSION};
    bool new_series = mdb_get(txn, s->series, &sk_v, &sv) != 0;
    if (!new_series && sv.mv_size == sizeof sr)
        memcpy(&sr, sv.mv_data, sizeof sr);
    if (new_series) {
        snprintf(sr.modality, sizeof sr.modality, "%s", job->series_modality);
        snprintf(sr.description, sizeof sr.description, "%s", job->series_desc);
        sr.number = job->series_number;
    }
    sr.n_instances++;
    sv = (MDB_val){sizeof sr, &sr};
    if ((rc = mdb_put(txn, s->series, &sk_v, &sv, 0)))
        return rc;
    /* study → series → instance order index */
    char ikey[3 * STORE_UID_MAX + 8];
    size_t il = series_key(ikey, sizeof ikey, job->in.study_uid, job->in.series_uid);
    uint32_t num = (uint32_t)job->in.instance_number ^ 0x80000000u; /* signed order as unsigned BE */
    ikey[il++] = (char)(num >> 24);
    ikey[il++] = (char)(num >> 16);
    ikey[il++] = (char)(num >> 8);
    ikey[il++] = (char)num;
    il += (size_t)snprintf(ikey + il, sizeof ikey - il, "%s", job->in.sop_uid);
    MDB_val ik = {il, ikey}, iv = {strlen(job->in.sop_uid), job->in.sop_uid};
    if ((rc = mdb_put(txn, s->sinst, &ik, &iv, 0)))
        return rc;
    /* study */
    store_study st;
    bool new_study = store_txn_get_study(s, txn, job->in.study_uid, &st) != 0;
    if (new_study || st.n_instances == 0) {
        /* New, or only a marker so far (it often arrives first): the
         * study's identity comes from its first instance; the marker's
         * count, priority, referral and note stay. */
        store_study marker = st;
        st = job->st;
        if (!new_study) {
            st.expected = marker.expected;
            st.priority = marker.priority;
            st.referral = marker.referral;
            memcpy(st.note, marker.note, sizeof st.note);
        }
        st.state = STUDY_RECEIVING;
        st.first_ms = job->now_ms;
        snprintf(st.origin, sizeof st.origin, "%s", job->in.source);
    } else if (st.state != STUDY_RECEIVING) {
        /* Late arrival: a complete (or queued) study is reopened; one
         * already being read or reported keeps its state, the arrival is
         * recorded either way. */
        st.late_arrivals++;
        if (st.state <= STUDY_QUEUED)
            st.state = STUDY_RECEIVING;
        store_txn_audit_of(s, txn, job->now_ms, job->in.source, "late-arrival", &st, job->in.sop_uid);
    }
    add_modality(st.modalities, sizeof st.modalities, job->series_modality);
    st.n_instances++;
    st.n_series += new_series;
    st.bytes += job->in.size;
    st.last_ms = job->now_ms;
    if (st.state == STUDY_RECEIVING && st.expected && st.n_instances >= st.expected) {
        st.state = STUDY_COMPLETE;
        st.completed_ms = job->now_ms;
        if ((rc = store_txn_audit_of(s, txn, job->now_ms, "hub", "study-complete", &st, "marker count reached")) ||
            (rc = store_txn_study_completed(s, txn, &st, job->now_ms)))
            return rc;
    }
    if ((rc = store_txn_put_study(s, txn, &st)))
        return rc;
    MDB_val pk = {strlen(st.study_uid), st.study_uid}, pv = {sizeof st.last_ms, &st.last_ms};
    rc = st.state == STUDY_RECEIVING ? mdb_put(txn, s->pending, &pk, &pv, 0) : mdb_del(txn, s->pending, &pk, NULL);
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    if (st.patient_id[0]) {
        MDB_val patk = {strlen(st.patient_id), st.patient_id}, patv = {strlen(st.study_uid), st.study_uid};
        rc = mdb_put(txn, s->patient, &patk, &patv, MDB_NODUPDATA);
        if (rc && rc != MDB_KEYEXIST)
            return rc;
    }
    return store_txn_audit_of(s, txn, job->now_ms, job->in.source, "store", &st, job->in.sop_uid);
}

static int apply_conflict(store *s, MDB_txn *txn, put_job *job)
{
    char key[STORE_UID_MAX + 65];
    int kl = snprintf(key, sizeof key, "%s/", job->in.sop_uid);
    for (int i = 0; i < 32; i++)
        kl += snprintf(key + kl, sizeof key - (size_t)kl, "%02x", job->in.digest[i]);
    MDB_val k = {(size_t)kl, key}, v;
    if (mdb_get(txn, s->conflict, &k, &v) == 0) /* this conflicting copy is already kept */
        return job->blob ? apply_drop(s, txn, job->blob) : 0;
    int rc = put_blob(s, txn, job);
    if (rc)
        return rc;
    inst_rec ir = {.version = RECORD_VERSION, .in = job->in};
    ir.in.conflict = 1;
    v = (MDB_val){sizeof ir, &ir};
    if ((rc = mdb_put(txn, s->conflict, &k, &v, 0)))
        return rc;
    store_study st;
    if (store_txn_get_study(s, txn, job->in.study_uid, &st) == 0) {
        st.conflicts++;
        if ((rc = store_txn_put_study(s, txn, &st)))
            return rc;
    }
    return store_txn_audit(s, txn, job->now_ms, job->in.source, "conflict", job->in.study_uid,
                           job->in.sop_uid);
}

/* An early chunk: its bytes under the blob id, and the id in `early` until
 * an instance takes it (or store_open drops it). */
static int apply_chunk(store *s, MDB_txn *txn, put_job *job)
{
    store_instance in = {.blob_id = job->blob->id};
    uint8_t key[36];
    MDB_val ek = {sizeof in.blob_id, &in.blob_id}, ev = {0, ""};
    int rc = mdb_put(txn, s->early, &ek, &ev, 0);
    if (rc)
        return rc;
    MDB_val k = {store_blob_key(&in, job->chunk, key), key}, v = {STORE_CHUNK, NULL};
    if ((rc = mdb_put(txn, s->blob, &k, &v, MDB_RESERVE)))
        return rc;
    memcpy(v.mv_data, job->file, STORE_CHUNK);
    return 0;
}

/* Early chunks nobody will refer to: gone with their `early` record. */
static int apply_drop(store *s, MDB_txn *txn, const store_blob *b)
{
    MDB_val ek = {sizeof b->id, (void *)&b->id};
    int rc = mdb_del(txn, s->early, &ek, NULL);
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    return drop_chunks(s, txn, b->id);
}

static int apply_job(store *s, MDB_txn *txn, put_job *job)
{
    if (job->kind == JOB_CHUNK)
        return apply_chunk(s, txn, job);
    if (job->kind == JOB_DROP)
        return apply_drop(s, txn, job->blob);
    if (job->blob && job->blob->failed) {
        /* An early chunk did not fit: neither does the instance. */
        job->res->result = STORE_FULL;
        return apply_drop(s, txn, job->blob);
    }
    MDB_val k = {strlen(job->in.sop_uid), job->in.sop_uid}, v;
    int rc = mdb_get(txn, s->inst, &k, &v);
    if (rc == 0) {
        inst_rec ir;
        memset(&ir, 0, sizeof ir);
        memcpy(&ir, v.mv_data, v.mv_size < sizeof ir ? v.mv_size : sizeof ir);
        if (!memcmp(ir.in.digest, job->in.digest, 32)) {
            job->res->result = STORE_DUPLICATE;
            job->in = ir.in;
            return job->blob ? apply_drop(s, txn, job->blob) : 0;
        }
        job->res->result = STORE_CONFLICT;
        return apply_conflict(s, txn, job);
    }
    if (rc != MDB_NOTFOUND)
        return rc;
    job->res->result = STORE_STORED;
    return apply_new_instance(s, txn, job);
}

static void finish(store *s, put_job *job, store_result r, const char *why)
{
    job->res->result = r;
    if (why)
        snprintf(job->res->reason, sizeof job->res->reason, "%s", why);
    _Atomic uint64_t *c = r == STORE_STORED ? &s->put_stored : r == STORE_DUPLICATE ? &s->put_duplicate
                        : r == STORE_CONFLICT ? &s->put_conflict : r == STORE_FULL ? &s->put_full
                        : &s->put_failed;
    (*c)++;
    if (r == STORE_STORED)
        s->bytes_received += job->in.size;
}

/* A batch's write transaction (see commit_batch on nometa).  On failure
 * *txn stays NULL and nothing is held. */
static int batch_begin(store *s, bool nometa, MDB_txn **txn)
{
    if (!nometa)
        return store_write_begin(s, txn);
    pthread_mutex_lock(&s->write_mu); /* kept until batch_end */
    int rc = write_begin_held(s, txn);
    if (rc)
        pthread_mutex_unlock(&s->write_mu);
    return rc;
}

/* Commits (or aborts) what batch_begin began; an LMDB code. */
static int batch_end(store *s, bool nometa, MDB_txn *txn, bool commit)
{
    int rc = 0;
    if (!commit)
        mdb_txn_abort(txn);
    else if (!nometa)
        rc = store_txn_commit(s, txn);
    else {
        mdb_env_set_flags(s->env, MDB_NOMETASYNC, 1);
        rc = store_txn_commit(s, txn);
        mdb_env_set_flags(s->env, MDB_NOMETASYNC, 0);
    }
    if (nometa)
        pthread_mutex_unlock(&s->write_mu);
    return rc;
}

/* The bytes a batch writes (its files and chunks), for disk_full_error. */
static uint64_t batch_bytes(put_job *const *jobs, unsigned n)
{
    uint64_t sum = 0;
    for (unsigned i = 0; i < n; i++)
        sum += jobs[i]->kind == JOB_CHUNK ? STORE_CHUNK : jobs[i]->kind == JOB_PUT ? jobs[i]->in.size : 0;
    return sum;
}

/* Apply jobs[0..n) in one transaction.  A job that does not fit (map full)
 * is refused alone and the others are applied again without it. */
static void commit_batch(store *s, put_job **jobs, unsigned n)
{
    bool refused[n];
    memset(refused, 0, sizeof refused);
    /* Early chunks alone: nobody waits for this commit and nothing is
     * acknowledged by it, so it flushes once (the data pages) and writes
     * its meta page without a flush of its own (MDB_NOMETASYNC): the next
     * commit's flush carries it.  LMDB keeps the environment intact that
     * way (the data pages are durable before the meta page names them);
     * a power loss may only undo this commit, whose chunks store_open
     * would delete anyway.  Every commit that answers somebody keeps both
     * flushes.  The flag is environment-wide: write_mu, held from this
     * transaction's begin until the flag is off again, keeps every other
     * write transaction from beginning meanwhile, and one begun before
     * ours has ended before ours begins (LMDB's writer lock). */
    bool chunks_only = true;
    for (unsigned i = 0; i < n; i++)
        chunks_only &= jobs[i]->kind == JOB_CHUNK;
    for (;;) {
        int64_t t0 = mono_us();
        MDB_txn *txn = NULL;
        int rc = batch_begin(s, chunks_only, &txn);
        unsigned bad = n;
        for (unsigned i = 0; rc == 0 && i < n; i++) {
            if (refused[i])
                continue;
            if ((rc = apply_job(s, txn, jobs[i])))
                bad = i;
        }
        if (rc == MDB_MAP_FULL && bad < n) {
            batch_end(s, chunks_only, txn, false);
            refused[bad] = true;
            if (jobs[bad]->kind == JOB_CHUNK)
                jobs[bad]->blob->failed = true; /* its instance's put, later in this batch or not, is refused */
            continue;
        }
        uint64_t txn_id = txn ? mdb_txn_id(txn) : 0;
        if (txn) {
            int end = batch_end(s, chunks_only, txn, rc == 0);
            if (rc == 0)
                rc = end;
        }
        /* A full disk is a full store too: the sender keeps the instance
         * and tries again, and retention may free pages for reuse. */
        char disk_why[160] = "";
        if (rc && rc != MDB_MAP_FULL && disk_full_error(s->dir, rc, batch_bytes(jobs, n)))
            disk_full_reason(s->dir, disk_why, sizeof disk_why);
        unsigned applied = 0;
        for (unsigned i = 0; i < n; i++) {
            if (jobs[i]->kind == JOB_CHUNK) {
                if (rc || refused[i])
                    jobs[i]->blob->failed = true;
                continue;
            }
            if (jobs[i]->kind == JOB_DROP)
                continue;
            if (rc == 0 && !refused[i] && jobs[i]->blob)
                jobs[i]->blob->settled = true;
            if (refused[i]) {
                finish(s, jobs[i], STORE_FULL, "storage full (LMDB map full): retry later");
            } else if (rc == MDB_MAP_FULL) {
                finish(s, jobs[i], STORE_FULL, "storage full (LMDB map full): retry later");
            } else if (disk_why[0]) {
                finish(s, jobs[i], STORE_FULL, disk_why);
            } else if (rc) {
                char why[96];
                snprintf(why, sizeof why, "storage failure: %s", mdb_strerror(rc));
                finish(s, jobs[i], STORE_FAILED, why);
            } else {
                finish(s, jobs[i], jobs[i]->res->result, NULL);
                applied++;
            }
        }
        if (rc == 0)
            store_count_commit(s, (uint64_t)(mono_us() - t0), applied);
        if (rc == 0)
            store_notify_tasks(s, txn_id);
        return;
    }
}

void store_count_refused_full(store *s)
{
    s->put_full++;
}

void store_count_commit(store *s, uint64_t us, unsigned n)
{
    s->commits++;
    s->commit_instances += n;
    s->commit_us_sum += us;
    size_t b = 0;
    while (b < 11 && (double)us / 1000.0 > store_commit_bucket_ms[b])
        b++;
    s->commit_us_buckets[b]++;
}

const double store_commit_bucket_ms[11] = {0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000};

/* LMDB takes the pages of each value it writes from the committing
 * thread's malloc arena: a commit of early chunks, several 1 MiB runs.
 * Faulted in one page at a time during a fresh hub's first radiograph,
 * they cost its first commits 5-17 ms each on this virtual machine; now
 * once, at start.  The serving roles' allocator settings
 * (dx_tune_malloc_for_store) keep them in the arena once freed. */
static void warm_chunk_pages(void)
{
    enum { RUNS = 8 };
    void *run[RUNS];
    for (unsigned i = 0; i < RUNS; i++)
        if ((run[i] = malloc(STORE_CHUNK + 2 * 4096)))
            memset(run[i], 0, STORE_CHUNK + 2 * 4096);
    for (unsigned i = RUNS; i-- > 0;)
        free(run[i]);
}

static void *committer_main(void *arg)
{
    store *s = arg;
    warm_chunk_pages();
    put_job *one[1];
    unsigned cap = s->batch_max;
    put_job **batch = calloc(cap, sizeof *batch);
    if (!batch) { /* out of memory: one job per commit, slower but on */
        batch = one;
        cap = 1;
    }
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (s->committing || (!s->queue_head && !s->stopping))
            pthread_cond_wait(&s->wake, &s->mu);
        if (!s->queue_head) /* stopping, nothing queued, nobody committing */
            break;
        s->committing = true;
        unsigned n = 0;
        while (s->queue_head && n < cap) {
            batch[n++] = s->queue_head;
            s->queue_head = s->queue_head->next;
        }
        if (!s->queue_head)
            s->queue_tail = NULL;
        pthread_mutex_unlock(&s->mu);
        commit_batch(s, batch, n);
        pthread_mutex_lock(&s->mu);
        s->committing = false;
        for (unsigned i = 0; i < n; i++) {
            if (batch[i]->kind == JOB_CHUNK) { /* nobody waits for it but its blob */
                batch[i]->blob->pending--;
                free(batch[i]);
            } else {
                batch[i]->done = true;
            }
        }
        pthread_cond_broadcast(&s->done);
    }
    pthread_mutex_unlock(&s->mu);
    if (batch != one)
        free(batch);
    return NULL;
}
