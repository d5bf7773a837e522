/* edge_watch.c — the clinic's watch folder: DICOM files dropped into a
 * directory are queued for the hub and moved to done/, or to failed/ when
 * the file itself is unusable.  A file the gateway cannot keep for now (its
 * disk or queue is full) stays in the folder and is tried again.
 *
 * A file is taken only when no writer has it open: on IN_CLOSE_WRITE or
 * IN_MOVED_TO (a writer closed it, or it was renamed in whole), and, for
 * files already there when we start, only when the kernel grants us a write
 * lease, which it does only if no other descriptor is open on the file.  A
 * file still open from before we started is left alone; its writer's close
 * raises IN_CLOSE_WRITE, which we are already watching for.  Where leases
 * are not supported (some network filesystems) a stable size and mtime
 * over two seconds is the fallback. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "hub/clock.h"
#include "hub/edge.h"
#include "hub/log.h"

struct edge_watch {
    char         dir[4096];
    spool       *sp;
    const char  *link_ts;
    pthread_t    thread;
    volatile int stop;
    int          fd;       /* inotify */
    int64_t      retry_at; /* monotonic ms: look at the folder again (files kept for a retry); 0 none */
    bool         no_room;  /* one was kept for want of room: the others wait for the round too */
    log_repeat   kept_told; /* the last reason logged for a kept file; zeroed once none is kept */
};

/* While a file is kept, the folder is looked at again this often.  When it
 * was kept for want of room, a round stops at the first file kept again and
 * files closed meanwhile wait for the round (nothing else is compressed in
 * vain); a file kept for another reason holds up nothing else. */
#define WATCH_RETRY_MS 10000
#define WATCH_TELL_MS  60000 /* the same reason is logged again after this */

typedef struct one_result {
    char         err[256];
    edge_outcome outcome;
} one_result;

static void one_report(void *ctx, const char *path, const spool_item *it, edge_outcome outcome, const char *error)
{
    one_result *r = ctx;
    (void)path;
    (void)it;
    r->outcome = outcome;
    snprintf(r->err, sizeof r->err, "%s", error ? error : "");
}

static int is_ours(const char *name)
{
    return name[0] == '.' || !strcmp(name, "done") || !strcmp(name, "failed");
}

static void take_file(edge_watch *w, const char *name)
{
    if (is_ours(name))
        return;
    char path[8400], dest[8400];
    snprintf(path, sizeof path, "%s/%s", w->dir, name);
    struct stat st;
    if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
        return;
    one_result r = {.outcome = EDGE_FAILED};
    const char *paths[1] = {path};
    edge_queue(w->sp, paths, 1, PRIO_ROUTINE, 0, NULL, "watch", w->link_ts, 0, one_report, NULL, &r);
    /* A modality may name files after the patient: names go to debug only. */
    if (r.outcome == EDGE_NO_ROOM || r.outcome == EDGE_FAILED) {
        /* Ours, not the file's: it stays where it is for the next round. */
        log_debug("watch: %s kept for a retry", name);
        if (!w->retry_at)
            w->retry_at = clock_mono_ms() + WATCH_RETRY_MS;
        w->no_room |= r.outcome == EDGE_NO_ROOM;
        if (log_repeat_due(&w->kept_told, r.err, WATCH_TELL_MS)) /* not every round */
            log_error("watch: a file cannot be queued now (%s); it stays in the watch folder and is tried again "
                      "every %d s", r.err, WATCH_RETRY_MS / 1000);
        return;
    }
    bool ok = r.outcome == EDGE_QUEUED;
    snprintf(dest, sizeof dest, "%s/%s/%s", w->dir, ok ? "done" : "failed", name);
    log_debug("watch: %s %s", name, ok ? "queued" : "refused");
    if (rename(path, dest) < 0)
        log_error("watch: cannot move a file into %s/: %s", ok ? "done" : "failed", strerror(errno));
    else if (ok)
        log_info("watch: a file queued and moved to done/");
    else
        log_warn("watch: a file is not a DICOM file we can send (%s); moved to failed/", r.err);
}

/* A folder put in the watch folder: only files are taken, so say so
 * rather than leave its files unsent without a word. */
static void folder_put_in(const char *name)
{
    if (is_ours(name))
        return;
    log_debug("watch: folder %s", name); /* may be named after the patient */
    log_warn("watch: a folder was put in the watch folder; only files are taken, so its files are not sent "
             "(queue a folder with 'dxhub push')");
}

/* 1: nobody else has the file open; 0: somebody does; -1: cannot tell. */
static int nobody_has_it_open(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return 0;
    int rc;
    if (fcntl(fd, F_SETLEASE, F_WRLCK) == 0) {
        fcntl(fd, F_SETLEASE, F_UNLCK);
        rc = 1;
    } else {
        rc = (errno == EAGAIN || errno == EBUSY) ? 0 : -1;
    }
    close(fd);
    return rc;
}

/* Files present before the watch started. */
static void take_existing(edge_watch *w)
{
    DIR *d = opendir(w->dir);
    if (!d)
        return;
    char **unsure = NULL;
    size_t n_unsure = 0;
    struct dirent *de;
    while (!w->no_room && (de = readdir(d)) && !w->stop) {
        char path[8400];
        snprintf(path, sizeof path, "%s/%s", w->dir, de->d_name);
        struct stat st;
        if (is_ours(de->d_name) || stat(path, &st) < 0)
            continue;
        if (S_ISDIR(st.st_mode))
            folder_put_in(de->d_name);
        if (!S_ISREG(st.st_mode))
            continue;
        int open_state = nobody_has_it_open(path);
        if (open_state == 1) {
            take_file(w, de->d_name);
        } else if (open_state < 0) {
            char **grown = realloc(unsure, (n_unsure + 1) * sizeof *unsure);
            if (grown && (grown[n_unsure] = strdup(de->d_name)))
                n_unsure++;
            if (grown)
                unsure = grown;
        } /* else: a writer has it open; its close will raise an event */
    }
    closedir(d);
    if (n_unsure) {
        struct stat *before = calloc(n_unsure, sizeof *before);
        for (size_t i = 0; before && i < n_unsure; i++) {
            char path[8400];
            snprintf(path, sizeof path, "%s/%s", w->dir, unsure[i]);
            stat(path, &before[i]);
        }
        sleep(2);
        for (size_t i = 0; before && i < n_unsure && !w->stop && !w->no_room; i++) {
            char path[8400];
            snprintf(path, sizeof path, "%s/%s", w->dir, unsure[i]);
            struct stat after;
            if (stat(path, &after) == 0 && after.st_size == before[i].st_size &&
                after.st_mtim.tv_sec == before[i].st_mtim.tv_sec &&
                after.st_mtim.tv_nsec == before[i].st_mtim.tv_nsec)
                take_file(w, unsure[i]);
        }
        free(before);
    }
    for (size_t i = 0; i < n_unsure; i++)
        free(unsure[i]);
    free(unsure);
}

static void *watch_main(void *arg)
{
    edge_watch *w = arg;
    take_existing(w);
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    while (!w->stop) {
        if (w->retry_at && clock_mono_ms() >= w->retry_at) {
            w->retry_at = 0; /* set again by a file still kept */
            w->no_room = false;
            take_existing(w);
            if (!w->retry_at) {
                log_info("watch: no file waits for a retry any more");
                w->kept_told = (log_repeat){0};
            }
        }
        struct pollfd p = {w->fd, POLLIN, 0};
        if (poll(&p, 1, 300) <= 0)
            continue;
        ssize_t len = read(w->fd, buf, sizeof buf);
        for (char *q = buf; len > 0 && q < buf + len;) {
            struct inotify_event *ev = (struct inotify_event *)q;
            if (ev->len && (ev->mask & IN_ISDIR))
                folder_put_in(ev->name);
            else if (ev->len && (ev->mask & (IN_CLOSE_WRITE | IN_MOVED_TO)) && !w->no_room) /* written whole */
                take_file(w, ev->name);
            q += sizeof *ev + ev->len;
        }
    }
    return NULL;
}

int edge_watch_start(const char *dir, spool *sp, const char *link_ts, edge_watch **out, char *err, size_t errlen)
{
    edge_watch *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    snprintf(w->dir, sizeof w->dir, "%s", dir);
    w->sp = sp;
    w->link_ts = link_ts;
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/done", dir);
    mkdir(sub, 0755);
    snprintf(sub, sizeof sub, "%s/failed", dir);
    mkdir(sub, 0755);
    /* The watch is in place before the scan of what is there, so a file
     * closed in between is seen by one or the other. */
    w->fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    if (w->fd < 0 || inotify_add_watch(w->fd, dir, IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE) < 0) {
        snprintf(err, errlen, "cannot watch %s: %s", dir, strerror(errno));
        if (w->fd >= 0)
            close(w->fd);
        free(w);
        return -1;
    }
    if (pthread_create(&w->thread, NULL, watch_main, w) != 0) {
        snprintf(err, errlen, "cannot start the watch thread");
        close(w->fd);
        free(w);
        return -1;
    }
    *out = w;
    return 0;
}

void edge_watch_stop(edge_watch **wp)
{
    edge_watch *w = *wp;
    if (!w)
        return;
    w->stop = 1;
    pthread_join(w->thread, NULL);
    close(w->fd);
    free(w);
    *wp = NULL;
}
