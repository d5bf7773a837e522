/* store_runway.c — zeroed space kept written ahead of the store's end.
 *
 * Why: a commit that writes past the end of data.mdb makes the file
 * system allocate blocks and grow the file, so its fdatasync also commits
 * the file system's journal (one more write and cache flush).  A store
 * that grows, as a new hub's does, paid that on every commit: about a
 * quarter of a radiograph's ingest here.  Space that was written once
 * (zeros) and flushed is overwritten in place: its fdatasync writes data
 * only.  PostgreSQL fills its WAL segments with zeros for the same reason.
 * The price is each byte of growth written twice, once as zeros while the
 * hub is idle, and up to runway bytes of disk held ahead (never the
 * last GiB of free disk).
 *
 * Safety: zeros are written only past LMDB's last used page, while this
 * thread holds a write transaction (LMDB's writer lock, across processes),
 * so no commit can take those pages meanwhile; the transaction is then
 * aborted, having written nothing through LMDB. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include "hub/log.h"
#include "hub/store_private.h"
#include "codecs/banned.h"

#define RUNWAY_STEP      ((uint64_t)8 << 20) /* zeros per writer-lock hold: a few ms of disk */
#define RUNWAY_IDLE_MS   500                 /* no commit for this long: the hub is idle */
#define RUNWAY_POLL_MS   200
#define RUNWAY_RETRY_MS  60000               /* after a failure */
/* Free disk left to everything else: zeros never take the last of it,
 * or a store on a nearly full disk would fill it for a moment at every
 * try, and a commit or a log line in that moment would fail. */
#define RUNWAY_DISK_KEEP ((uint64_t)1 << 30)

static const unsigned char zeros[1 << 16];

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int write_zeros(int fd, uint64_t from, uint64_t n)
{
    while (n) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        ssize_t w = pwrite(fd, zeros, k, (off_t)from);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? -errno : -EIO;
        from += (uint64_t)w;
        n -= (uint64_t)w;
    }
    return 0;
}

/* Where the space should end (never past the map), with *end the end of
 * the latest commit's pages, from info and st. */
static uint64_t runway_want(const store *s, const MDB_envinfo *info, const MDB_stat *st, uint64_t *end)
{
    *end = ((uint64_t)info->me_last_pgno + 1) * st->ms_psize;
    uint64_t want = *end + s->runway_bytes;
    return want > info->me_mapsize ? info->me_mapsize : want;
}

/* Lays at most one step: 1 laid some, 0 nothing (left) to lay, -errno.
 * *ahead gets the zeroed bytes past the end. */
static int runway_step(store *s, uint64_t *ahead)
{
    MDB_envinfo info;
    MDB_stat st;
    struct stat fst;
    uint64_t end;
    /* Most turns find the space laid already (a commit reused free pages):
     * say so without the writer lock, which the commits want.  A commit
     * under way can only move the end further, and the next turn sees it. */
    mdb_env_info(s->env, &info);
    mdb_env_stat(s->env, &st);
    uint64_t want = runway_want(s, &info, &st, &end);
    if (fstat(s->runway_fd, &fst) == 0 && (uint64_t)fst.st_size >= want) {
        *ahead = (uint64_t)fst.st_size - end;
        return 0;
    }
    MDB_txn *txn;
    int rc = store_write_begin(s, &txn);
    if (rc)
        return rc == ENOMEM ? -ENOMEM : -EIO;
    mdb_env_info(s->env, &info); /* again, under the lock: the end cannot move now */
    mdb_env_stat(s->env, &st);
    want = runway_want(s, &info, &st, &end);
    if (fstat(s->runway_fd, &fst) != 0) {
        rc = -errno;
        mdb_txn_abort(txn);
        return rc;
    }
    uint64_t from = (uint64_t)fst.st_size > end ? (uint64_t)fst.st_size : end;
    uint64_t n = want > from ? want - from : 0;
    if (n > RUNWAY_STEP)
        n = RUNWAY_STEP;
    struct statvfs vfs;
    if (n && fstatvfs(s->runway_fd, &vfs) == 0) {
        uint64_t avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
        n = avail > RUNWAY_DISK_KEEP + n ? n : 0; /* nothing to lay until there is room */
    }
    rc = n ? write_zeros(s->runway_fd, from, n) : 0;
    if (rc && ftruncate(s->runway_fd, (off_t)from) != 0) /* give back what a full disk let us write */
        log_warn("store: write-ahead space: cannot truncate back: %s", strerror(errno));
    mdb_txn_abort(txn);
    if (rc)
        return rc;
    if (n && fdatasync(s->runway_fd) != 0)
        return -errno;
    *ahead = from + n - end;
    return n ? 1 : 0;
}

static int runway_lay(store *s)
{
    uint64_t ahead = 0;
    int rc;
    while ((rc = runway_step(s, &ahead)) > 0)
        ;
    return rc;
}

static void *runway_main(void *arg)
{
    store *s = arg;
    MDB_envinfo info;
    mdb_env_info(s->env, &info);
    uint64_t seen = s->commits, seen_txn = info.me_last_txnid;
    int64_t idle_since = now_ms(), retry_at = 0;
    bool full = false; /* laid to the end: nothing to do until something is committed */
    pthread_mutex_lock(&s->runway_mu);
    while (!s->runway_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts); /* runway_cv waits on it */
        ts.tv_nsec += RUNWAY_POLL_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->runway_cv, &s->runway_mu, &ts);
        int64_t now = now_ms();
        uint64_t c = s->commits;
        if (c != seen) { /* ingest under way: keep the disk for it */
            seen = c;
            idle_since = now;
            full = false;
            continue;
        }
        mdb_env_info(s->env, &info); /* reports, tasks, audit records grow the store too */
        if (info.me_last_txnid != seen_txn) {
            seen_txn = info.me_last_txnid;
            full = false;
        }
        if (full || s->runway_stop || now - idle_since < RUNWAY_IDLE_MS || now < retry_at)
            continue;
        pthread_mutex_unlock(&s->runway_mu);
        uint64_t ahead = 0;
        int rc = runway_step(s, &ahead);
        pthread_mutex_lock(&s->runway_mu);
        if (rc == 0) {
            full = true;
        } else if (rc < 0) {
            log_warn("store: write-ahead space not laid: %s; trying again in %d s", strerror(-rc),
                     RUNWAY_RETRY_MS / 1000);
            retry_at = now + RUNWAY_RETRY_MS;
        }
    }
    pthread_mutex_unlock(&s->runway_mu);
    return NULL;
}

int store_runway_start(store *s, const char *dir)
{
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/data.mdb", dir) >= sizeof path)
        return -ENAMETOOLONG;
    s->runway_fd = open(path, O_WRONLY | O_CLOEXEC);
    if (s->runway_fd < 0)
        return -errno;
    pthread_mutex_init(&s->runway_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* waits immune to the wall clock's steps */
    pthread_cond_init(&s->runway_cv, &ca);
    pthread_condattr_destroy(&ca);
    int rc = runway_lay(s);
    if (rc < 0) /* not fatal: commits only flush a little more */
        log_warn("store: write-ahead space not laid: %s", strerror(-rc));
    if ((rc = pthread_create(&s->runway_thread, NULL, runway_main, s))) {
        close(s->runway_fd);
        s->runway_fd = -1;
        return -rc;
    }
    pthread_setname_np(s->runway_thread, "dxhub-runway");
    s->runway_on = true;
    return 0;
}

void store_runway_stop(store *s)
{
    if (!s->runway_on)
        return;
    pthread_mutex_lock(&s->runway_mu);
    s->runway_stop = true;
    pthread_cond_broadcast(&s->runway_cv);
    pthread_mutex_unlock(&s->runway_mu);
    pthread_join(s->runway_thread, NULL);
    close(s->runway_fd);
    s->runway_fd = -1;
    s->runway_on = false;
    pthread_mutex_destroy(&s->runway_mu);
    pthread_cond_destroy(&s->runway_cv);
}

uint64_t store_runway_ahead(store *s, uint64_t end)
{
    struct stat fst;
    if (!s->runway_on || fstat(s->runway_fd, &fst) != 0 || (uint64_t)fst.st_size <= end)
        return 0;
    return (uint64_t)fst.st_size - end;
}
