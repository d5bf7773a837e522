/* bench_worklist.c — the reading worklist under load (bench/worklist.sh).
 *
 *   bench_worklist --dxhub BIN --dir DIR [--tasks N] [--readers R] [--seconds S]
 *                  [--rate N] [--paced-seconds S] [--paced-threads T]
 *                  [--json OUT] STAT_ECG.dcm...
 *
 * 1. Populate: a hub data directory with N queued routine CT tasks (and
 *    their study records), written straight into the store by
 *    store_bench_add_tasks — the ingest path would take an hour for 100,000.
 * 2. Serve: `dxhub serve` on that directory (real process, real ports),
 *    with R readers (each its own CURVE keypair in the allow-list, role
 *    reader:rNNN, and a readers-file line) and one ECG reader.
 * 3. Assign: R readers over 127.0.0.1, each its own DEALER and CURVE key
 *    (the reader protocol of hub/hub.h, spoken over ZMTP by
 *    zmtp_curve.c, or through libzmq with --transport libzmq), all driven
 *    by one thread with epoll, loop TASK → CLAIM → CLAIMED for S seconds, each CLAIM carrying
 *    the next READY 1 (so the next TASK comes while the claim commits; a
 *    reader sends its next CLAIM once the last one is answered).  An
 *    "assignment" is that round: a lease the reader was told about, so
 *    durable (the hub answers CLAIM after its commit).  READY→TASK is
 *    measured from the message that gave the credit (READY, or CLAIM).  Measured: assignments per
 *    second, READY→TASK (the offer: sent before its record is committed)
 *    and CLAIM→CLAIMED (the lease: after the commit) separately.
 *    This closed loop gives the rate at saturation; its latencies are
 *    queueing at saturation (each commit answers ~40 claims at once and
 *    those readers' next requests come back together, and the last of
 *    such a burst waits behind the rest in the hub and in this process).
 * 3c. Paced (the target, a latency *at* a rate): the same readers
 *    start rounds READY 1 → TASK → CLAIM → CLAIMED on a fixed schedule of
 *    --rate rounds a second in all (each reader every R/rate s from its
 *    own random phase), over --paced-threads threads, for --paced-seconds.
 *    READY→TASK is timed from the round's scheduled start, so a late
 *    generator or a hub that falls behind counts against it (no
 *    coordinated omission); the rate counts the CLAIMEDs after the first
 *    second.  Also the hub's CPU per assignment by thread.
 * 3b. Offers alone: the same readers loop READY 1 → TASK for S/2 seconds
 *    (nothing claimed): the offer path's rate and latency by itself.
 * 4. STAT: `dxhub edge` runs; for each STAT ECG file (distinct study UIDs)
 *    the ECG reader says READY, `dxhub push --priority stat` queues it at
 *    the clinic, and the reader waits for the TASK.  After the hub stops,
 *    the store gives each study's completion time (the hub's clock, same
 *    host): study complete → offer received.
 * 5. Diagnostics on the stopped store: one worklist tick (lease expiry and
 *    escalation scan) and one offer to a reader nothing queued fits, each
 *    over the whole queue — both run on the hub's reader thread.
 *
 * Prints a table; writes the figures as JSON (a list of {"metric", "value",
 * "unit", "peer", "peer_value", "ratio"}; the "peer" is the target). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>
#include "hub/hub.h"
#include "hub/http_client.h"
#include "hub/keys.h"
#include "hub/metrics.h"
#include "hub/proto.h"
#include "hub/store.h"
#include "hub/store_bench.h"
#include "hub/store_tasks.h"
#include "bench/zmtp_curve.h"

#define MAX_READERS 1000

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t real_us(void) /* the kernel's receive timestamps are on this clock */
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* --- where the time goes ------------------------------------------------------------ */

static int cmp_u32(const void *a, const void *b);

/* A /proc .../stat file's command name (into name[n], when name) and CPU
 * seconds (user + system); 0, or -1 when it cannot be read. */
static int read_stat(const char *path, char *name, size_t n, double *cpu_s)
{
    char buf[1024];
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t k = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[k] = 0;
    char *l = strchr(buf, '('), *r = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long long ut = 0, stt = 0;
    if (!l || !r || sscanf(r + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &stt) != 2)
        return -1;
    if (name)
        snprintf(name, n, "%.*s", (int)(r - l - 1), l + 1);
    *cpu_s = (double)(ut + stt) / (double)sysconf(_SC_CLK_TCK);
    return 0;
}

/* CPU seconds (user + system) a process has used: /proc/PID/stat. */
static double proc_cpu_s(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    double s = 0;
    return read_stat(path, NULL, 0, &s) ? 0 : s;
}

/* CPU seconds this process (the simulated readers) has used. */
static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* CPU seconds of each of pid's threads, summed by thread name (the hub
 * names its reader link and committer threads): where an assignment's
 * CPU goes.  The number of names, at most max. */
typedef struct thread_cpu {
    char   name[32];
    double s;
    double wait_s; /* time runnable but waiting for a CPU (schedstat) */
} thread_cpu;

static int threads_cpu(pid_t pid, thread_cpu *out, int max)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        char sp[300], name[32];
        double cpu_s;
        snprintf(sp, sizeof sp, "/proc/%d/task/%s/stat", (int)pid, e->d_name);
        if (read_stat(sp, name, sizeof name, &cpu_s))
            continue;
        unsigned long long run_ns = 0, wait_ns = 0;
        snprintf(sp, sizeof sp, "/proc/%d/task/%s/schedstat", (int)pid, e->d_name);
        FILE *f = fopen(sp, "r");
        if (f) {
            if (fscanf(f, "%llu %llu", &run_ns, &wait_ns) != 2)
                wait_ns = 0;
            fclose(f);
        }
        int i = 0;
        while (i < n && strcmp(out[i].name, name))
            i++;
        if (i == n) {
            if (n == max)
                continue;
            snprintf(out[n].name, sizeof out[n].name, "%s", name);
            out[n].s = out[n].wait_s = 0;
            n++;
        }
        out[i].s += cpu_s;
        out[i].wait_s += (double)wait_ns / 1e9;
    }
    if (d)
        closedir(d);
    return n;
}

/* after - before, by name (a thread named only after is counted whole);
 * its run-queue wait in *wait. */
static double thread_delta(const thread_cpu *before, int nb, const thread_cpu *after, int i, double *wait)
{
    for (int j = 0; j < nb; j++)
        if (!strcmp(before[j].name, after[i].name)) {
            *wait = after[i].wait_s - before[j].wait_s;
            return after[i].s - before[j].s;
        }
    *wait = after[i].wait_s;
    return after[i].s;
}

/* The disk's floor: p50 of 4 KiB overwrites each followed by fdatasync, in
 * a file beside the store.  An LMDB commit pays two of these (data, then
 * the meta page), so a durable lease can never be answered faster. */
static double fdatasync_p50_ms(const char *dir)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/fdatasync.probe", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return 0;
    char block[4096];
    memset(block, 0x5a, sizeof block);
    uint32_t us[40];
    int n = 0;
    if (pwrite(fd, block, sizeof block, 0) == (ssize_t)sizeof block && fsync(fd) == 0)
        for (; n < 40; n++) {
            int64_t a = mono_us();
            if (pwrite(fd, block, sizeof block, 0) != (ssize_t)sizeof block || fdatasync(fd) != 0)
                break;
            us[n] = (uint32_t)(mono_us() - a);
        }
    close(fd);
    unlink(path);
    if (!n)
        return 0;
    qsort(us, (size_t)n, sizeof *us, cmp_u32);
    return us[n / 2] / 1000.0;
}

/* --- child processes (killed by their pid only) ------------------------------------- */

typedef struct child {
    pid_t pid;
    int   out; /* its stdout (pipe), -1 when not kept */
} child;

static child hub_proc = {0, -1}, edge_proc = {0, -1};

static void stop_child(child *c, int sig)
{
    if (c->pid <= 0)
        return;
    kill(c->pid, sig);
    for (int i = 0; i < 200; i++) {
        if (waitpid(c->pid, NULL, WNOHANG) == c->pid) {
            c->pid = 0;
            break;
        }
        usleep(50000);
    }
    if (c->pid > 0) {
        kill(c->pid, SIGKILL);
        waitpid(c->pid, NULL, 0);
        c->pid = 0;
    }
    if (c->out >= 0)
        close(c->out);
    c->out = -1;
}

static void cleanup(void)
{
    stop_child(&edge_proc, SIGTERM);
    stop_child(&hub_proc, SIGTERM);
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench_worklist: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    cleanup();
    exit(1);
}

/* Start argv with stdout on a pipe (keep_out) or log, stderr on log. */
static child spawn(char *const argv[], const char *log, int keep_out)
{
    int p[2] = {-1, -1};
    if (keep_out && pipe(p) < 0)
        die("pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            if (!keep_out)
                dup2(fd, 1);
        }
        if (keep_out) {
            dup2(p[1], 1);
            close(p[0]);
            close(p[1]);
        }
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0)
            dup2(null, 0);
        execv(argv[0], argv);
        _exit(127);
    }
    if (keep_out)
        close(p[1]);
    return (child){pid, keep_out ? p[0] : -1};
}

/* Read c's stdout until a line starting with prefix; copy it to line. */
static void wait_line(child *c, const char *prefix, char *line, size_t n, int timeout_ms)
{
    char buf[8192];
    size_t have = 0;
    int64_t end = mono_us() + (int64_t)timeout_ms * 1000;
    for (;;) {
        int64_t left = (end - mono_us()) / 1000;
        struct pollfd pf = {c->out, POLLIN, 0};
        if (left <= 0 || poll(&pf, 1, (int)left) <= 0)
            die("no '%s' line within %d ms", prefix, timeout_ms);
        ssize_t r = read(c->out, buf + have, sizeof buf - 1 - have);
        if (r <= 0)
            die("the process exited before '%s'", prefix);
        have += (size_t)r;
        buf[have] = '\0';
        char *l = strstr(buf, prefix);
        if (l && strchr(l, '\n')) {
            *strchr(l, '\n') = '\0';
            snprintf(line, n, "%s", l);
            return;
        }
        if (have == sizeof buf - 1)
            have = 0;
    }
}

static void field(const char *line, const char *key, char *out, size_t n)
{
    const char *p = strstr(line, key);
    if (!p)
        die("no %s in '%s'", key, line);
    p += strlen(key);
    size_t l = strcspn(p, " \n");
    snprintf(out, n, "%.*s", (int)l, p);
}

/* The last line of the log at path holding what (the committer's summary
 * at stop: commits, requests a commit, time a commit), or "". */
static void last_log_line(const char *path, const char *what, char *out, size_t n)
{
    FILE *f = fopen(path, "r");
    char line[1024];
    out[0] = '\0';
    while (f && fgets(line, sizeof line, f))
        if (strstr(line, what)) {
            line[strcspn(line, "\n")] = '\0';
            snprintf(out, n, "%s", line);
        }
    if (f)
        fclose(f);
}

/* --- the assignment phase ---------------------------------------------------------- */

/* The simulated readers all live on this one thread, each a DEALER with
 * its own CURVE key, driven by epoll.  A thread per reader (a blocking
 * hub_client each) cost more CPU than the hub itself — two thread
 * wake-ups per message — on the same 2 cores, so the simulation was part
 * of what it measured.  So did one libzmq context for all of them (one
 * I/O thread, epoll on their ZMQ_FDs; --transport libzmq): 75–90 µs of
 * CPU per assignment against the hub's ~90, half of it in that I/O
 * thread.  By default each reader speaks ZMTP 3.1 + CURVE itself on its
 * TCP socket (zmtp_curve.h), about a third of that. */
/* A reader waits for a TASK (R_WAIT_TASK: credit outstanding), has
 * nothing outstanding (R_IDLE), or has stopped (R_DONE); apart from that it
 * may have one CLAIM outstanding (claiming).  Its CLAIM carries the next
 * READY ("ready": 1), so the next offer comes while the claim commits: a
 * round is three messages (CLAIM, TASK, CLAIMED), and a reader claims the
 * next task once the last claim was answered (one CLAIM at a time). */
typedef enum { R_IDLE, R_WAIT_TASK, R_DONE } rstate;

typedef struct rdr {
    int         index;
    keypair     kp;
    void       *sock;      /* through libzmq (--transport libzmq), or */
    zc          z;         /* ZMTP spoken here (the default; zmtp_curve.h says why) */
    bool        read_once; /* this drain read z's socket already */
    int         fd;        /* ZMQ_FD (readable when the socket's events may have changed), or z's socket */
    rstate      st;
    uint64_t    req;       /* the last request's number */
    int64_t     t0, t1;    /* credit asked (READY, or CLAIM with ready), CLAIM sent (µs) */
    bool        claiming;  /* a CLAIM is outstanding: its number is claim_req */
    uint64_t    claim_req;
    uint32_t    claim_lat; /* READY→TASK of the task being claimed */
    uint64_t    next_id;   /* a TASK that came while claiming (0: none), and its READY→TASK */
    uint32_t    next_lat;
    int64_t     last_us;   /* the last answer kept: a reader left waiting when the queue ran dry stops there */
    uint32_t   *lat_us, *claim_us;
    size_t      n, cap;
    int         timeouts, refused;
} rdr;

static const char *g_endpoint;
static char        g_hub_pub[41];
static bool        g_libzmq; /* the readers go through libzmq */

/* The simulated readers write and read headers as text: one thread plays
 * 100 workstations on the hub's two cores, and jansson trees for every
 * message were a fifth of its CPU.  A workstation parses the whole header;
 * here only "req" and the task's "id" are needed. */
static void send_text(rdr *r, const char *cmd, const char *fmt, long long a, long long b)
{
    char h[160];
    int len = snprintf(h, sizeof h, fmt, (long long)++r->req, a, b);
    if (g_libzmq) {
        if (proto_send_text(r->sock, NULL, cmd, h, (size_t)len) < 0)
            die("reader %d: sending %s: %s", r->index, cmd, zmq_strerror(zmq_errno()));
        return;
    }
    struct iovec f[2] = {{(void *)cmd, strlen(cmd)}, {h, (size_t)len}};
    int rc = zc_send(&r->z, f, 2);
    if (rc < 0)
        die("reader %d: sending %s: %s", r->index, cmd, strerror(-rc));
}

typedef struct answer {
    char      cmd[16];
    long long req, id; /* -1: absent */
    int64_t   rx_ns;   /* its receive time in the kernel (zc_msg.rx_ns), 0 unknown (libzmq) */
    char      hdr[512]; /* the header's start, for an ERROR's message */
} answer;

static long long number_after(const char *text, size_t len, const char *key)
{
    const char *k = memmem(text, len, key, strlen(key));
    return k ? strtoll(k + strlen(key), NULL, 10) : -1;
}

static void parse_header(answer *a, const char *h, size_t len)
{
    a->req = number_after(h, len, "\"req\":");
    a->id = number_after(h, len, "\"id\":"); /* the task's: no other key is "id" */
    size_t k = len < sizeof a->hdr ? len : sizeof a->hdr - 1;
    memcpy(a->hdr, h, k);
    a->hdr[k] = '\0';
}

/* The next message r has, from its own ZMTP: 1, or 0 when there is none. */
static int recv_zmtp(rdr *r, answer *a)
{
    zc_msg m;
    int rc = r->z.out_len ? zc_flush(&r->z) : 0; /* what a full socket held back */
    if (!rc)
        rc = zc_recv(&r->z, &m);
    if (!rc && !r->read_once) { /* one read a drain: epoll says when there is more */
        r->read_once = true;
        rc = zc_fill(&r->z);
        if (rc > 0)
            rc = zc_recv(&r->z, &m);
    }
    if (rc < 0)
        die("reader %d: receiving: %s", r->index, strerror(-rc));
    if (!rc)
        return 0;
    size_t n = m.off[1] - m.off[0];
    n = n < sizeof a->cmd ? n : sizeof a->cmd - 1;
    memcpy(a->cmd, m.data + m.off[0], n);
    a->cmd[n] = '\0';
    a->req = a->id = -1;
    a->hdr[0] = '\0';
    a->rx_ns = m.rx_ns;
    if (m.frames > 1)
        parse_header(a, (const char *)m.data + m.off[1], m.off[2] - m.off[1]);
    return 1;
}

/* The next message r has: 1, or 0 when there is none (EAGAIN). */
static int recv_answer(rdr *r, answer *a)
{
    if (!g_libzmq)
        return recv_zmtp(r, a);
    zmq_msg_t f;
    zmq_msg_init(&f);
    if (zmq_msg_recv(&f, r->sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&f);
        if (zmq_errno() == EAGAIN)
            return 0;
        die("reader %d: receiving: %s", r->index, zmq_strerror(zmq_errno()));
    }
    size_t n = zmq_msg_size(&f) < sizeof a->cmd ? zmq_msg_size(&f) : sizeof a->cmd - 1;
    memcpy(a->cmd, zmq_msg_data(&f), n);
    a->cmd[n] = '\0';
    a->req = a->id = -1;
    a->rx_ns = 0; /* libzmq does not say when the kernel received it */
    a->hdr[0] = '\0';
    for (int frame = 1; zmq_msg_more(&f); frame++) { /* a multipart message arrives whole */
        zmq_msg_close(&f);
        zmq_msg_init(&f);
        if (zmq_msg_recv(&f, r->sock, 0) < 0)
            die("reader %d: receiving: %s", r->index, zmq_strerror(zmq_errno()));
        if (frame == 1)
            parse_header(a, zmq_msg_data(&f), zmq_msg_size(&f));
    }
    zmq_msg_close(&f);
    return 1;
}

static void send_ready(rdr *r, int credit)
{
    send_text(r, "READY", "{\"req\":%lld,\"credit\":%lld,\"v\":1}", credit, 0);
    r->st = credit ? R_WAIT_TASK : R_DONE;
    r->t0 = mono_us();
}

static void keep(rdr *r, uint32_t lat, uint32_t claim)
{
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 4096;
        r->lat_us = realloc(r->lat_us, r->cap * sizeof *r->lat_us);
        r->claim_us = realloc(r->claim_us, r->cap * sizeof *r->claim_us);
        if (!r->lat_us || !r->claim_us)
            die("out of memory");
    }
    r->lat_us[r->n] = lat;
    r->claim_us[r->n] = claim;
    r->n++;
    r->last_us = mono_us();
}

/* CLAIM task id, asking for the next offer with it until the end. */
static void claim_task(rdr *r, uint64_t id, uint32_t lat, int64_t now, int64_t end_us)
{
    bool more = now < end_us;
    send_text(r, "CLAIM", "{\"req\":%lld,\"task\":%lld,\"ready\":%lld,\"v\":1}", (long long)id, more);
    r->claiming = true;
    r->claim_req = r->req;
    r->claim_lat = lat;
    r->t1 = now;
    r->st = more ? R_WAIT_TASK : R_IDLE;
    if (more)
        r->t0 = now;
}

/* One message from the hub to r: the next step of its loop. */
static void on_answer(rdr *r, const answer *m, bool claim, int64_t end_us)
{
    int64_t now = mono_us();
    if (!strcmp(m->cmd, "TASK") && r->st == R_WAIT_TASK) {
        if (m->id <= 0)
            die("reader %d: a TASK without an id: %s", r->index, m->hdr);
        uint32_t lat = (uint32_t)(now - r->t0);
        if (!claim) {
            keep(r, lat, 0);
            send_ready(r, now < end_us);
            return;
        }
        r->st = R_IDLE;
        if (r->claiming) {
            r->next_id = (uint64_t)m->id;
            r->next_lat = lat;
        } else {
            claim_task(r, (uint64_t)m->id, lat, now, end_us);
        }
        return;
    }
    if (r->claiming && m->req == (long long)r->claim_req) {
        r->claiming = false;
        if (!strcmp(m->cmd, "CLAIMED"))
            keep(r, r->claim_lat, (uint32_t)(now - r->t1));
        else
            r->refused++;
        if (r->next_id) {
            claim_task(r, r->next_id, r->next_lat, now, end_us);
            r->next_id = 0;
        } else if (r->st == R_IDLE) {
            if (now < end_us)
                send_ready(r, 1); /* after a refused claim that asked for nothing more */
            else
                r->st = R_DONE;
        }
        return;
    }
    if (!strcmp(m->cmd, "ERROR"))
        die("reader %d: the hub refused a request: %s", r->index, m->hdr);
    /* anything else (WELCOME, a late answer) needs no step */
}

/* Read everything r has waiting (until EAGAIN, which also resets what
 * its ZMQ_FD says); true when it got something. */
static bool drain(rdr *r, bool claim, int64_t end_us, bool *welcomed)
{
    bool got = false;
    answer m;
    r->read_once = false;
    while (recv_answer(r, &m)) {
        got = true;
        if (welcomed && !strcmp(m.cmd, "WELCOME"))
            *welcomed = true;
        else if (!welcomed)
            on_answer(r, &m, claim, end_us);
    }
    return got;
}

static void readers_open(rdr *rs, int n, void *zctx, int ep)
{
    for (int i = 0; i < n; i++) {
        rdr *r = &rs[i];
        if (g_libzmq) {
            r->sock = zmq_socket(zctx, ZMQ_DEALER);
            if (!r->sock)
                die("zmq_socket: %s", zmq_strerror(zmq_errno()));
            proto_tune(r->sock);
            if (proto_curve_client(r->sock, r->kp.pub, r->kp.sec, g_hub_pub) < 0 ||
                zmq_connect(r->sock, g_endpoint) < 0)
                die("reader %d: %s", r->index, zmq_strerror(zmq_errno()));
            size_t len = sizeof r->fd;
            zmq_getsockopt(r->sock, ZMQ_FD, &r->fd, &len);
        } else {
            uint8_t pub[32], sec[32], server[32];
            unsigned port = 0;
            char err[256];
            if (sscanf(g_endpoint, "tcp://127.0.0.1:%u", &port) != 1 || !zmq_z85_decode(pub, r->kp.pub) ||
                !zmq_z85_decode(sec, r->kp.sec) || !zmq_z85_decode(server, g_hub_pub))
                die("reader %d: cannot use endpoint %s or its keys", r->index, g_endpoint);
            if (zc_connect(&r->z, "127.0.0.1", (uint16_t)port, pub, sec, server, 10000, err, sizeof err) < 0)
                die("reader %d: %s", r->index, err);
            r->fd = r->z.fd;
        }
        struct epoll_event e = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, r->fd, &e) < 0)
            die("epoll_ctl: %s", strerror(errno));
        send_text(r, "HELLO", "{\"req\":%lld,\"v\":1}", 0, 0);
    }
    /* every reader welcomed before the clock starts */
    int welcomed = 0;
    bool *ok = calloc((size_t)n, sizeof *ok);
    for (int64_t end = mono_us() + 30000000; welcomed < n;) {
        if (mono_us() > end)
            die("only %d of %d readers were welcomed within 30 s", welcomed, n);
        struct epoll_event evs[64];
        epoll_wait(ep, evs, 64, 50);
        for (int i = 0; i < n; i++)
            if (!ok[i] && (drain(&rs[i], false, 0, &ok[i]), ok[i]))
                welcomed++;
    }
    free(ok);
}

/* Every reader loops READY 1 → TASK (→ CLAIM → CLAIMED when claim) until
 * the end; a reader that waits 10 s for an answer stops (a timeout). */
static void readers_run(rdr *rs, int n, int ep, bool claim, int64_t end_us)
{
    for (int i = 0; i < n; i++) {
        rs[i].n = 0;
        rs[i].timeouts = 0;
        rs[i].claiming = false;
        rs[i].next_id = 0;
        send_ready(&rs[i], 1);
    }
    int active = n;
    int64_t last_sweep = 0;
    while (active > 0) {
        struct epoll_event evs[128];
        int k = epoll_wait(ep, evs, 128, 5);
        for (int j = 0; j < k; j++) {
            rdr *r = &rs[evs[j].data.u32];
            if (r->st != R_DONE)
                drain(r, claim, end_us, NULL);
        }
        /* ZMQ_FD only says "look": a send can consume its signal.  drain
         * looks again after every send it makes, so this sweep is only a
         * safety net (and stops the stragglers): every 100 ms, as each look
         * at a socket with nothing is two system calls (poll, getpid), and
         * every 5 ms for 100 readers was 40,000 of them a second. */
        int64_t now = mono_us();
        if (now - last_sweep >= 100000) {
            last_sweep = now;
            active = 0;
            for (int i = 0; i < n; i++) {
                rdr *r = &rs[i];
                if (r->st == R_DONE)
                    continue;
                drain(r, claim, end_us, NULL);
                int64_t since = r->claiming ? r->t1 : r->t0;
                if (r->st != R_DONE && now - since > 10000000) {
                    r->timeouts++;
                    r->claiming = false;
                    send_ready(r, 0);
                } else if (r->st == R_WAIT_TASK && !r->claiming && now >= end_us) {
                    send_ready(r, 0); /* the end: no more offers wanted */
                }
                active += r->st != R_DONE;
            }
        }
    }
}

/* --- the paced run: assignments at a set rate ------------------------------------
 * The closed loop above measures latency at saturation: every commit
 * answers ~40 claims at once and those readers' next requests come back
 * together, so the last offer of such a burst waits behind the whole burst
 * — in the hub and in this process, whose one thread takes each message
 * in turn.  The target is a latency *at* a rate (10,000
 * assignments/s with READY→TASK p99 < 2 ms).  Here each reader starts its
 * rounds on its own fixed schedule — every R/rate seconds from a random
 * phase, so the readers together start `rate` rounds a second, spread
 * apart and not released by commits — and a round is the whole
 * assignment: READY 1 → TASK → CLAIM → CLAIMED (the lease durable, as
 * before).  READY→TASK is timed from the round's *scheduled* start, so a
 * late generator or a hub that falls behind counts against the figure (no
 * coordinated omission): a round whose READY could not leave on time
 * (its reader still waits for the last TASK) leaves when it can, timed
 * from its schedule.  A reader does not wait for CLAIMED before its next
 * round (up to PACED_CLAIMS claims outstanding); the readers are split
 * over `threads` threads, each its own epoll over its readers' sockets
 * (the sockets move to them). */
#define PACED_CLAIMS 16

typedef struct samples {
    uint32_t *v;
    size_t    n, cap;
} samples;

static void sample(samples *s, int64_t us)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 4096;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        if (!s->v)
            die("out of memory");
    }
    s->v[s->n++] = (uint32_t)(us < 0 ? 0 : us);
}

/* The machine's own part of a latency: a thread that sleeps 1 ms at a
 * time, and how late each wake-up is.  Run on the idle machine first, then
 * beside the paced run: no offer can come back sooner than the machine
 * lets a woken thread run (each round wakes four threads).  Here a kernel
 * thread (kdamond: DAMON's memory monitor, proactive reclaim) samples the
 * pages every 0.5 s, 2–7 ms on a CPU each time. */
typedef struct wake_probe {
    int64_t   end;
    samples   late;
    pthread_t tid;
} wake_probe;

static void *wake_probe_main(void *arg)
{
    wake_probe *w = arg;
    while (mono_us() < w->end) {
        int64_t a = mono_us();
        clock_nanosleep(CLOCK_MONOTONIC, 0, &(struct timespec){0, 1000000}, NULL);
        sample(&w->late, mono_us() - a - 1000);
    }
    return NULL;
}

static void wake_probe_start(wake_probe *w, int64_t end)
{
    *w = (wake_probe){.end = end};
    if (pthread_create(&w->tid, NULL, wake_probe_main, w))
        die("pthread_create failed");
    pthread_setname_np(w->tid, "bench-probe");
}

static void wake_probe_join(wake_probe *w)
{
    pthread_join(w->tid, NULL);
    qsort(w->late.v, w->late.n, sizeof *w->late.v, cmp_u32);
}

/* CPU seconds of the kernel's threads named prefix* (kdamond). */
static double kthreads_cpu_s(const char *prefix)
{
    double total = 0;
    DIR *d = opendir("/proc");
    if (!d)
        return 0;
    for (struct dirent *e; (e = readdir(d));) {
        char path[300], name[64];
        double s;
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        if (read_stat(path, name, sizeof name, &s) == 0 && !strncmp(name, prefix, strlen(prefix)))
            total += s;
    }
    closedir(d);
    return total;
}

/* The hub's own part of each offer: its dxhub_reader_offer_seconds
 * histogram (GET /metrics), bucket counts in the order of
 * hub_http_bucket_ms (+Inf last); 0, or -1 when it cannot be read. */
static int offer_histogram(const char *http_ep, uint64_t counts[HUB_HTTP_BUCKETS])
{
    http_url u;
    http_reply r = {0};
    if (http_url_parse(http_ep, &u) || http_get_json(&u, "/metrics", NULL, NULL, 10000, 1 << 20, &r, NULL, 0) || r.status != 200) {
        free(r.body);
        return -1;
    }
    char *text = r.body;
    /* cumulative bucket counts, in order: back to counts per bucket */
    int k = 0;
    uint64_t prev = 0;
    static const char key[] = "dxhub_reader_offer_seconds_bucket{le=";
    for (char *p = strstr(text, key); p && k < HUB_HTTP_BUCKETS; p = strstr(p + 1, key)) {
        char *sp = strchr(p, ' ');
        uint64_t cum = sp ? strtoull(sp + 1, NULL, 10) : 0;
        counts[k++] = cum - prev;
        prev = cum;
    }
    free(text);
    return k == HUB_HTTP_BUCKETS ? 0 : -1;
}

/* The upper bound (ms) of the bucket where the q-th of the offers counted
 * between two histograms falls; -1 when none were counted or the last
 * (unbounded) bucket holds it. */
static double offer_quantile_ms(const uint64_t before[HUB_HTTP_BUCKETS], const uint64_t after[HUB_HTTP_BUCKETS],
                                double q, uint64_t *total)
{
    uint64_t n = 0, cum = 0;
    for (int i = 0; i < HUB_HTTP_BUCKETS; i++)
        n += after[i] - before[i];
    *total = n;
    for (int i = 0; i < HUB_HTTP_BUCKETS - 1 && n; i++) {
        cum += after[i] - before[i];
        if ((double)cum >= q * (double)n)
            return hub_http_bucket_ms[i];
    }
    return -1;
}

typedef struct paced_rdr {
    rdr    *r;
    int64_t next;       /* the next round's scheduled start (µs) */
    int64_t wait_sched; /* the round whose READY is outstanding: its schedule; 0 none */
    int64_t wait_sent;  /* and when that READY actually left */
    struct {
        uint64_t req;
        int64_t  sched, sent;
    } claims[PACED_CLAIMS];
    int n_claims;
} paced_rdr;

typedef struct pacer {
    paced_rdr *ps;
    int        n, ep;
    int64_t    start, end, period, count_from;
    samples    task, sent_task, arrived_task, claim, round, late;
    size_t     claimed, claimed_counted, refused, rounds_started;
    int64_t    last_claimed;
    double     cpu_s, wait_s; /* this thread's CPU and run-queue wait, taken as it ends (gone from /proc after) */
} pacer;

static void paced_ready(pacer *p, paced_rdr *q, int64_t now)
{
    q->wait_sched = q->next;
    q->wait_sent = now;
    q->next += p->period;
    p->rounds_started++;
    sample(&p->late, now - q->wait_sched);
    send_text(q->r, "READY", "{\"req\":%lld,\"credit\":%lld,\"v\":1}", 1, 0);
}

static void paced_answer(pacer *p, paced_rdr *q, const answer *m);

static void paced_drain(pacer *p, paced_rdr *q)
{
    answer m;
    q->r->read_once = false;
    while (recv_answer(q->r, &m))
        paced_answer(p, q, &m);
}

/* Start every round that is due and may start; the next time one is due. */
static int64_t paced_due(pacer *p, int64_t now)
{
    int64_t next = INT64_MAX;
    for (int i = 0; i < p->n; i++) {
        paced_rdr *q = &p->ps[i];
        if (q->wait_sched || q->n_claims == PACED_CLAIMS || q->next >= p->end)
            continue;
        if (q->next <= now) {
            paced_ready(p, q, now);
            paced_drain(p, q); /* a send can take the socket's signal: look now */
        }
        if (!q->wait_sched && q->next < next)
            next = q->next;
    }
    return next;
}

static void paced_answer(pacer *p, paced_rdr *q, const answer *m)
{
    int64_t now = mono_us();
    rdr *r = q->r;
    if (!strcmp(m->cmd, "TASK") && q->wait_sched) {
        if (m->id <= 0)
            die("reader %d: a TASK without an id: %s", r->index, m->hdr);
        sample(&p->task, now - q->wait_sched);
        sample(&p->sent_task, now - q->wait_sent);
        if (m->rx_ns) /* the TASK's arrival in this host's kernel, on the monotonic clock */
            sample(&p->arrived_task, m->rx_ns / 1000 - (real_us() - mono_us()) - q->wait_sent);
        send_text(r, "CLAIM", "{\"req\":%lld,\"task\":%lld,\"v\":1}", m->id, 0);
        q->claims[q->n_claims].req = r->req;
        q->claims[q->n_claims].sched = q->wait_sched;
        q->claims[q->n_claims].sent = now;
        q->n_claims++;
        q->wait_sched = 0;
        return;
    }
    for (int i = 0; i < q->n_claims; i++)
        if ((long long)q->claims[i].req == m->req) {
            if (!strcmp(m->cmd, "CLAIMED")) {
                sample(&p->claim, now - q->claims[i].sent);
                sample(&p->round, now - q->claims[i].sched);
                p->claimed++;
                p->last_claimed = now;
                if (now >= p->count_from && now < p->end)
                    p->claimed_counted++;
            } else {
                p->refused++;
            }
            q->claims[i] = q->claims[--q->n_claims];
            return;
        }
    if (!strcmp(m->cmd, "ERROR"))
        die("reader %d: the hub refused a request: %s", r->index, m->hdr);
}

static void *pacer_main(void *arg)
{
    pacer *p = arg;
    int64_t give_up = p->end + 10000000, last_sweep = mono_us();
    for (;;) {
        int64_t now = mono_us();
        int64_t next = paced_due(p, now);
        bool busy = next != INT64_MAX;
        for (int i = 0; i < p->n && !busy; i++)
            busy = p->ps[i].wait_sched || p->ps[i].n_claims;
        if (!busy || now > give_up)
            break;
        /* Wake for the next round on time (to the microsecond), or for an
         * answer; 100 ms at most, for the sweep. */
        int64_t wait = next == INT64_MAX ? 100000 : next - now;
        if (wait > 100000)
            wait = 100000;
        struct timespec ts = {(time_t)(wait / 1000000), (long)(wait % 1000000) * 1000};
        struct epoll_event evs[128];
        int k = epoll_pwait2(p->ep, evs, 128, wait > 0 ? &ts : &(struct timespec){0, 0}, NULL);
        for (int j = 0; j < k; j++)
            paced_drain(p, &p->ps[evs[j].data.u32]);
        if (mono_us() - last_sweep >= 100000) { /* the safety net, as in readers_run */
            last_sweep = mono_us();
            for (int i = 0; i < p->n; i++)
                paced_drain(p, &p->ps[i]);
        }
    }
    /* stragglers (a timeout): no more offers wanted */
    for (int i = 0; i < p->n; i++)
        if (p->ps[i].wait_sched)
            send_text(p->ps[i].r, "READY", "{\"req\":%lld,\"credit\":%lld,\"v\":1}", 0, 0);
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    p->cpu_s = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
               ru.ru_stime.tv_usec / 1e6;
    FILE *f = fopen("/proc/thread-self/schedstat", "r");
    unsigned long long run_ns, wait_ns;
    if (f && fscanf(f, "%llu %llu", &run_ns, &wait_ns) == 2)
        p->wait_s = (double)wait_ns / 1e9;
    if (f)
        fclose(f);
    return NULL;
}

typedef struct paced_result {
    double  rate;          /* CLAIMEDs a second after the first second */
    size_t  rounds, claimed, refused;
    double  pacer_cpu_s, pacer_wait_s; /* the generator threads' CPU and run-queue wait */
    samples task, sent_task, arrived_task, claim, round, late;
} paced_result;

static void merge(samples *into, samples *from)
{
    for (size_t i = 0; i < from->n; i++)
        sample(into, from->v[i]);
    free(from->v);
    if (into->n) /* into->v is NULL while empty */
        qsort(into->v, into->n, sizeof *into->v, cmp_u32);
}

/* Run rate rounds a second for seconds over the readers rs (all connected
 * and welcomed), on threads threads.  The rate counts the CLAIMEDs that
 * arrive after the first second (start-up) until the end. */
static paced_result paced_run(rdr *rs, int n, int threads, double rate, int seconds)
{
    paced_result res = {0};
    paced_rdr *ps = calloc((size_t)n, sizeof *ps);
    pacer *pc = calloc((size_t)threads, sizeof *pc);
    pthread_t *tid = calloc((size_t)threads, sizeof *tid);
    if (!ps || !pc || !tid)
        die("out of memory");
    int64_t period = (int64_t)((double)n / rate * 1e6), start = mono_us() + 20000;
    int64_t end = start + (int64_t)seconds * 1000000;
    unsigned seed = (unsigned)start;
    for (int i = 0; i < n; i++) {
        ps[i].r = &rs[i];
        ps[i].next = start + (int64_t)(rand_r(&seed) % (unsigned)period); /* its own phase */
    }
    for (int t = 0; t < threads; t++) {
        pacer *p = &pc[t];
        int from = n * t / threads, to = n * (t + 1) / threads;
        *p = (pacer){.ps = ps + from, .n = to - from, .start = start, .end = end, .period = period,
                     .count_from = start + 1000000};
        p->ep = epoll_create1(EPOLL_CLOEXEC);
        if (p->ep < 0)
            die("epoll_create1: %s", strerror(errno));
        for (int i = 0; i < p->n; i++) {
            struct epoll_event e = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
            if (epoll_ctl(p->ep, EPOLL_CTL_ADD, p->ps[i].r->fd, &e) < 0)
                die("epoll_ctl: %s", strerror(errno));
        }
        if (pthread_create(&tid[t], NULL, pacer_main, p))
            die("pthread_create failed");
        pthread_setname_np(tid[t], "bench-pacer");
    }
    for (int t = 0; t < threads; t++) {
        pthread_join(tid[t], NULL);
        pacer *p = &pc[t];
        close(p->ep);
        res.rounds += p->rounds_started;
        res.claimed += p->claimed;
        res.refused += p->refused;
        res.pacer_cpu_s += p->cpu_s;
        res.pacer_wait_s += p->wait_s / threads;
        res.rate += (double)p->claimed_counted;
        merge(&res.task, &p->task);
        merge(&res.sent_task, &p->sent_task);
        merge(&res.arrived_task, &p->arrived_task);
        merge(&res.claim, &p->claim);
        merge(&res.round, &p->round);
        merge(&res.late, &p->late);
    }
    res.rate /= (double)(end - start - 1000000) / 1e6;
    free(ps);
    free(pc);
    free(tid);
    return res;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(const uint32_t *v, size_t n, double p)
{
    if (!n)
        return 0;
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i] / 1000.0;
}

/* --- results ------------------------------------------------------------------------ */

static json_t *results;

static void metric(const char *name, double value, const char *unit, const char *peer, double peer_value,
                   int lower_is_better)
{
    json_t *m = json_pack("{s:s,s:f,s:s}", "metric", name, "value", value, "unit", unit);
    if (peer) {
        json_object_set_new(m, "peer", json_string(peer));
        json_object_set_new(m, "peer_value", json_real(peer_value));
        json_object_set_new(m, "ratio", peer_value ? json_real(value / peer_value) : json_null());
    } else {
        json_object_set_new(m, "peer", json_null());
        json_object_set_new(m, "peer_value", json_null());
        json_object_set_new(m, "ratio", json_null());
    }
    json_array_append_new(results, m);
    const char *verdict = "";
    if (peer)
        verdict = (lower_is_better ? value <= peer_value : value >= peer_value) ? "meets target" : "MISSES target";
    if (peer)
        printf("  %-44s %12.2f %-6s  target %s%g  %s\n", name, value, unit, lower_is_better ? "<= " : ">= ", peer_value,
               verdict);
    else
        printf("  %-44s %12.2f %-6s\n", name, value, unit);
}

/* --- main ----------------------------------------------------------------------------- */

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    if (!fp || fputs(text, fp) < 0 || fclose(fp) != 0)
        die("cannot write %s", path);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"dxhub", required_argument, NULL, 'b'}, {"dir", required_argument, NULL, 'd'},
                                         {"tasks", required_argument, NULL, 'n'}, {"readers", required_argument, NULL, 'r'},
                                         {"seconds", required_argument, NULL, 's'}, {"json", required_argument, NULL, 'j'},
                                         {"rate", required_argument, NULL, 'R'}, {"paced-seconds", required_argument, NULL, 'P'},
                                         {"paced-threads", required_argument, NULL, 'T'},
                                         {"transport", required_argument, NULL, 't'}, {0, 0, 0, 0}};
    const char *bin = NULL, *dir = NULL, *json_out = NULL;
    int n_tasks = 100000, n_readers = 100, seconds = 10, paced_s = -1, paced_threads = 2, o;
    double rate = 10000;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'b': bin = optarg; break;
        case 'd': dir = optarg; break;
        case 'n': n_tasks = atoi(optarg); break;
        case 'r': n_readers = atoi(optarg); break;
        case 's': seconds = atoi(optarg); break;
        case 'j': json_out = optarg; break;
        case 'R': rate = atof(optarg); break;
        case 'P': paced_s = atoi(optarg); break;
        case 'T': paced_threads = atoi(optarg); break;
        case 't':
            if (strcmp(optarg, "zmtp") && strcmp(optarg, "libzmq"))
                die("--transport is zmtp or libzmq, not '%s'", optarg);
            g_libzmq = !strcmp(optarg, "libzmq");
            break;
        default: return 2;
        }
    }
    if (paced_s < 0)
        paced_s = seconds;
    if (!bin || !dir || n_tasks < 1 || n_readers < 1 || n_readers > MAX_READERS || seconds < 1 || rate <= 0 ||
        (paced_s > 0 && paced_s < 2) || paced_threads < 1 || paced_threads > n_readers) {
        fprintf(stderr, "usage: bench_worklist --dxhub BIN --dir DIR [--tasks N] [--readers R] [--seconds S] "
                        "[--rate N] [--paced-seconds S (0: none, else >= 2)] [--paced-threads T] "
                        "[--transport zmtp|libzmq] [--json OUT] STAT_ECG.dcm...\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    atexit(cleanup);
    results = json_array();
    char p[4300], q[4300], err[512];
    mkdir(dir, 0755);

    /* keys: the hub's, R readers', the ECG reader's, the clinic's */
    keypair hub_kp, ecg_kp, edge_kp;
    snprintf(p, sizeof p, "%s/keys", dir);
    if (keys_load_or_create(p, "hub", &hub_kp, err, sizeof err) < 0)
        die("%s", err);
    snprintf(g_hub_pub, sizeof g_hub_pub, "%s", hub_kp.pub);
    snprintf(q, sizeof q, "%s/edge/keys", dir);
    mkdir(q, 0700);
    snprintf(q, sizeof q, "%s/edge", dir);
    mkdir(q, 0700);
    snprintf(q, sizeof q, "%s/edge/keys", dir);
    if (keys_load_or_create(q, "edge", &edge_kp, err, sizeof err) < 0)
        die("%s", err);
    rdr *rs = calloc((size_t)n_readers, sizeof *rs);
    size_t cap = (size_t)n_readers * 120 + 4096;
    char *allow = malloc(cap), *conf = malloc(cap);
    size_t al = 0, cl = 0;
    for (int i = 0; i < n_readers; i++) {
        rs[i].index = i;
        if (zmq_curve_keypair(rs[i].kp.pub, rs[i].kp.sec))
            die("no CURVE in this libzmq");
        al += (size_t)snprintf(allow + al, cap - al, "%s reader:r%03d\n", rs[i].kp.pub, i);
        cl += (size_t)snprintf(conf + cl, cap - cl, "r%03d attending CT imaging * 60000\n", i);
    }
    zmq_curve_keypair(ecg_kp.pub, ecg_kp.sec);
    al += (size_t)snprintf(allow + al, cap - al, "%s reader:ecg\n%s edge:benchclinic\n", ecg_kp.pub, edge_kp.pub);
    cl += (size_t)snprintf(conf + cl, cap - cl, "ecg attending ECG ecg * 100\n");
    snprintf(p, sizeof p, "%s/keys/allow.txt", dir);
    write_file(p, allow);
    snprintf(p, sizeof p, "%s/readers.conf", dir);
    write_file(p, conf);
    free(allow);
    free(conf);

    /* 0. the idle machine's wake-up lateness, for the paced run's beside it */
    wake_probe idle_probe;
    wake_probe_start(&idle_probe, mono_us() + 2000000);
    wake_probe_join(&idle_probe);

    /* 1. populate */
    printf("worklist: %d queued tasks, %d readers (%s), %d s of assignments, %d STAT studies\n", n_tasks, n_readers,
           g_libzmq ? "through libzmq" : "speaking ZMTP themselves", seconds, argc - optind);
    snprintf(p, sizeof p, "%s/hub", dir);
    store *st = NULL;
    /* The worklist as the hub below has it (--lease-seconds 3600): the
     * diagnostics' tick on the stopped store would otherwise cut every
     * lease to the default 60 s (clamp_ahead) and time that instead. */
    wl_config wcfg = {.lease_ms = 3600 * 1000LL};
    store_config sc = {.dir = p, .worklist = &wcfg};
    if (store_open(&sc, &st, err, sizeof err) < 0)
        die("%s", err);
    int64_t t0 = mono_us();
    int added = store_bench_add_tasks(st, n_tasks, "2.25.424242", "CT", 0 /* imaging */, 0 /* routine */, "benchclinic",
                                      real_ms() - 60000, err, sizeof err);
    if (added < 0)
        die("populating: %s", err);
    double pop_s = (double)(mono_us() - t0) / 1e6;
    store_close(&st);

    /* 2. serve */
    char hub_data[4300], keys[4300], readers[4300], log[4300], line[1024];
    snprintf(hub_data, sizeof hub_data, "%s/hub", dir);
    snprintf(keys, sizeof keys, "%s/keys", dir);
    snprintf(readers, sizeof readers, "%s/readers.conf", dir);
    snprintf(log, sizeof log, "%s/hub.log", dir);
    char *hub_argv[] = {(char *)bin, "serve", "--data", hub_data, "--keys", keys, "--readers", readers,
                        "--lease-seconds", "3600", "--stable-seconds", "600", "--dicom-port", "0", "--http-port", "0",
                        "--edge-port", "0", "--reader-port", "0", "--peer-port", "0", NULL};
    hub_proc = spawn(hub_argv, log, 1);
    wait_line(&hub_proc, "dxhub serve: ready", line, sizeof line, 60000);
    char reader_ep[128], edge_ep[128];
    double first_scan_ms = 0;
    field(line, "readers=", reader_ep, sizeof reader_ep);
    field(line, "edge=", edge_ep, sizeof edge_ep);
    g_endpoint = reader_ep;
    char http_ep[64];
    field(line, "http=", http_ep, sizeof http_ep);

    /* An ECG reader waits (READY 1) through the whole run, as an ECG
     * physician would while CTs are read: nothing queued fits it. */
    hub_client *ecg = NULL;
    {
        hub_client_config cfg = {.endpoint = reader_ep, .hub_public = g_hub_pub, .public_key = ecg_kp.pub,
                                 .secret_key = ecg_kp.sec, .timeout_ms = 30000};
        char id[64];
        if (hub_client_open(&cfg, &ecg, err, sizeof err) < 0 || hub_client_hello(ecg, id, sizeof id))
            die("ECG reader: %s", ecg ? hub_client_error(ecg) : err);
        int64_t a0 = mono_us();
        hub_client_ready(ecg, 1);
        int leases;
        hub_client_heartbeat(ecg, &leases); /* answered after the hub looked for an ECG task */
        first_scan_ms = (double)(mono_us() - a0) / 1000.0;
    }

    /* 3a. one reader alone: READY→TASK without queueing behind others */
    uint32_t solo[50];
    int n_solo = 0;
    {
        hub_client *c = NULL;
        hub_client_config cfg = {.endpoint = reader_ep, .hub_public = g_hub_pub, .public_key = rs[0].kp.pub,
                                 .secret_key = rs[0].kp.sec, .timeout_ms = 20000};
        char id[64];
        if (hub_client_open(&cfg, &c, err, sizeof err) < 0 || hub_client_hello(c, id, sizeof id))
            die("solo reader: %s", c ? hub_client_error(c) : err);
        hub_client_keepalive(c, -1);
        for (; n_solo < 50; n_solo++) {
            int64_t a0 = mono_us();
            hub_task t;
            if (hub_client_ready(c, 1) || hub_client_next_offer(c, 10000, &t))
                die("solo reader: %s", hub_client_error(c));
            solo[n_solo] = (uint32_t)(mono_us() - a0);
            if (hub_client_claim(c, t.id, NULL))
                die("solo reader: %s", hub_client_error(c));
        }
        hub_client_ready(c, 0);
        hub_client_close(&c);
        qsort(solo, (size_t)n_solo, sizeof *solo, cmp_u32);
    }

    /* 3. assign */
    void *zctx = zmq_ctx_new();
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (!zctx || ep < 0)
        die("no ZeroMQ context or epoll");
    readers_open(rs, n_readers, zctx, ep); /* all said HELLO and were welcomed */
    double hub_cpu0 = proc_cpu_s(hub_proc.pid), self_cpu0 = self_cpu_s();
    int64_t start = mono_us();
    readers_run(rs, n_readers, ep, true, start + (int64_t)seconds * 1000000);
    double elapsed = (double)(mono_us() - start) / 1e6;
    /* Is the reader simulation the bottleneck?  Both sides' CPU, in cores. */
    double hub_cores = (proc_cpu_s(hub_proc.pid) - hub_cpu0) / elapsed, sim_cores = (self_cpu_s() - self_cpu0) / elapsed;
    size_t total = 0;
    int timeouts = 0, refused = 0;
    for (int i = 0; i < n_readers; i++)
        total += rs[i].n, timeouts += rs[i].timeouts, refused += rs[i].refused;
    uint32_t *lat = malloc((total ? total : 1) * sizeof *lat), *clat = malloc((total ? total : 1) * sizeof *clat);
    size_t k = 0;
    for (int i = 0; i < n_readers; i++) {
        memcpy(lat + k, rs[i].lat_us, rs[i].n * sizeof *lat);
        memcpy(clat + k, rs[i].claim_us, rs[i].n * sizeof *clat);
        k += rs[i].n;
    }
    qsort(lat, total, sizeof *lat, cmp_u32);
    qsort(clat, total, sizeof *clat, cmp_u32);

    /* 3c. paced: rate assignments a second, latency from the schedule */
    paced_result pr = {0};
    thread_cpu tc0[32], tc1[32], sc0[8], sc1[8];
    int n_tc0 = 0, n_tc1 = 0, n_sc0 = 0, n_sc1 = 0;
    double p_hub_cores = 0, p_sim_cores = 0, p_elapsed = 0, kd0 = 0, kd_cores = 0;
    wake_probe busy_probe = {0};
    uint64_t hist0[HUB_HTTP_BUCKETS] = {0}, hist1[HUB_HTTP_BUCKETS] = {0};
    bool hub_hist_ok = false;
    if (paced_s > 0) {
        n_tc0 = threads_cpu(hub_proc.pid, tc0, 32);
        n_sc0 = threads_cpu(getpid(), sc0, 8);
        double h0 = proc_cpu_s(hub_proc.pid), s0 = self_cpu_s();
        int64_t pstart = mono_us();
        kd0 = kthreads_cpu_s("kdamond");
        hub_hist_ok = offer_histogram(http_ep, hist0) == 0;
        wake_probe_start(&busy_probe, pstart + (int64_t)paced_s * 1000000);
        pr = paced_run(rs, n_readers, paced_threads, rate, paced_s);
        wake_probe_join(&busy_probe);
        hub_hist_ok = hub_hist_ok && offer_histogram(http_ep, hist1) == 0;
        kd_cores = (kthreads_cpu_s("kdamond") - kd0) / ((double)(mono_us() - pstart) / 1e6);
        p_elapsed = (double)(mono_us() - pstart) / 1e6;
        p_hub_cores = (proc_cpu_s(hub_proc.pid) - h0) / p_elapsed;
        p_sim_cores = (self_cpu_s() - s0) / p_elapsed;
        n_tc1 = threads_cpu(hub_proc.pid, tc1, 32);
        n_sc1 = threads_cpu(getpid(), sc1, 8);
    }

    /* 3b. offers alone, half as long */
    int offer_s = seconds > 1 ? seconds / 2 : 1;
    int64_t ostart = mono_us();
    readers_run(rs, n_readers, ep, false, ostart + (int64_t)offer_s * 1000000);
    double oelapsed = (double)(mono_us() - ostart) / 1e6;
    size_t ototal = 0;
    int otimeouts = 0;
    int64_t olast = ostart;
    for (int i = 0; i < n_readers; i++) {
        ototal += rs[i].n, otimeouts += rs[i].timeouts;
        if (rs[i].n && rs[i].last_us > olast)
            olast = rs[i].last_us;
    }
    /* Readers that timed out waited on an empty queue (the assignments took
     * the rest of it): the rate counts up to the last offer, not the wait. */
    if (otimeouts)
        oelapsed = (double)(olast - ostart) / 1e6;
    uint32_t *olat = malloc((ototal ? ototal : 1) * sizeof *olat);
    k = 0;
    for (int i = 0; i < n_readers; i++) {
        memcpy(olat + k, rs[i].lat_us, rs[i].n * sizeof *olat);
        k += rs[i].n;
        if (g_libzmq)
            zmq_close(rs[i].sock);
        else
            zc_close(&rs[i].z);
        free(rs[i].lat_us);
        free(rs[i].claim_us);
    }
    close(ep);
    zmq_ctx_term(zctx);
    qsort(olat, ototal, sizeof *olat, cmp_u32);

    /* 4. STAT: complete → offered, through a real clinic gateway */
    int n_stat = argc - optind;
    char stat_uid[64][65];
    int64_t stat_offer_ms[64];
    int got_stat = 0;
    if (n_stat > 64)
        n_stat = 64;
    if (n_stat > 0) {
        char edge_data[4300], hub_key[4300], elog[4300];
        snprintf(edge_data, sizeof edge_data, "%s/edge", dir);
        snprintf(hub_key, sizeof hub_key, "%s/keys/hub.pub", dir);
        snprintf(elog, sizeof elog, "%s/edge.log", dir);
        char *edge_argv[] = {(char *)bin, "edge", "--data", edge_data, "--hub", edge_ep, "--hub-key", hub_key,
                             "--dicom-port", "0", "--facility", "benchclinic", NULL};
        edge_proc = spawn(edge_argv, elog, 1);
        wait_line(&edge_proc, "dxhub edge: ready", line, sizeof line, 30000);
        hub_client *c = ecg;
        for (int i = 0; i < n_stat; i++) {
            hub_task dummy;
            if (i > 0)
                hub_client_ready(c, 1);
            if (hub_client_next_offer(c, 0, &dummy) == 0)
                die("an ECG task was offered before any was pushed");
            char *push_argv[] = {(char *)bin, "push", "--edge-data", edge_data, "--priority", "stat", argv[optind + i],
                                 NULL};
            child pc = spawn(push_argv, elog, 0);
            int status;
            waitpid(pc.pid, &status, 0);
            if (!WIFEXITED(status) || WEXITSTATUS(status))
                die("dxhub push %s failed (see %s)", argv[optind + i], elog);
            hub_task t;
            if (hub_client_next_offer(c, 30000, &t))
                die("STAT study %d: %s", i, hub_client_error(c));
            stat_offer_ms[got_stat] = real_ms();
            snprintf(stat_uid[got_stat], sizeof stat_uid[got_stat], "%s", t.study_uid);
            got_stat++;
            if (hub_client_claim(c, t.id, NULL))
                die("claiming the STAT task: %s", hub_client_error(c));
        }
        stop_child(&edge_proc, SIGTERM);
    }
    hub_client_close(&ecg);
    stop_child(&hub_proc, SIGTERM);
    char commit_line[1024] = "";
    last_log_line(log, "worklist commits", commit_line, sizeof commit_line);

    /* 5. the stopped store: completion times, and the two whole-queue scans */
    if (store_open(&sc, &st, err, sizeof err) < 0)
        die("%s", err);
    uint32_t stat_lat[64];
    int n_lat = 0;
    for (int i = 0; i < got_stat; i++) {
        store_study s;
        if (store_get_study(st, stat_uid[i], &s) == 0 && s.completed_ms > 0) {
            int64_t d = stat_offer_ms[i] - s.completed_ms;
            stat_lat[n_lat++] = (uint32_t)(d < 0 ? 0 : d) * 1000u;
        }
    }
    qsort(stat_lat, (size_t)n_lat, sizeof *stat_lat, cmp_u32);
    int64_t a = mono_us();
    store_task_tick(st, real_ms());
    double tick_ms = (double)(mono_us() - a) / 1000.0;
    wl_reader nobody = {.id = "nobody", .modalities = "XA", .facilities = "*", .kinds = 1, .seniority = 1,
                        .max_tasks = 1};
    wl_task t;
    a = mono_us();
    int orc = store_task_offer(st, &nobody, real_ms(), &t);
    double scan_ms = (double)(mono_us() - a) / 1000.0;
    (void)orc;
    /* one offer txn on its own: what each assignment pays at least */
    wl_reader one = {.id = "probe", .modalities = "CT", .facilities = "*", .kinds = 1, .seniority = 1,
                     .max_tasks = 10};
    double offer_ms = 1e9;
    for (int i = 0; i < 5; i++) {
        a = mono_us();
        if (store_task_offer(st, &one, real_ms(), &t) == 0) {
            double d = (double)(mono_us() - a) / 1000.0;
            offer_ms = d < offer_ms ? d : offer_ms;
        }
    }
    /* the same offers, 100 to a transaction (group commit) */
    wl_reader many = one;
    snprintf(many.id, sizeof many.id, "probe-many");
    many.max_tasks = 1000;
    a = mono_us();
    int batched = store_bench_offer_batch(st, &many, 100, real_ms());
    double batch_ms = (double)(mono_us() - a) / 1000.0;
    store_close(&st);
    double sync_ms = fdatasync_p50_ms(dir);

    printf("\n  %-44s %12s %-6s\n", "metric", "value", "unit");
    metric("idle machine: a thread sleeping 1 ms wakes late by, p99", pct(idle_probe.late.v, idle_probe.late.n, 0.99),
           "ms", NULL, 0, 1);
    metric("idle machine: a thread sleeping 1 ms wakes late by, max",
           idle_probe.late.n ? idle_probe.late.v[idle_probe.late.n - 1] / 1000.0 : 0, "ms", NULL, 0, 1);
    metric("populate: tasks written directly", pop_s ? added / pop_s : 0, "1/s", NULL, 0, 0);
    if (paced_s > 0) {
        char name[96];
        snprintf(name, sizeof name, "paced at %.0f/s: assignments per second", rate);
        metric(name, pr.rate, "1/s", "target", 10000, 0);
        metric("paced: READY→TASK from the schedule, p50", pct(pr.task.v, pr.task.n, 0.50), "ms", NULL, 0, 1);
        metric("paced: READY→TASK from the schedule, p99", pct(pr.task.v, pr.task.n, 0.99), "ms", "target", 2, 1);
        metric("paced: READY→TASK from the schedule, max", pr.task.n ? pr.task.v[pr.task.n - 1] / 1000.0 : 0, "ms",
               NULL, 0, 1);
        metric("paced: READY sent after its schedule, p99", pct(pr.late.v, pr.late.n, 0.99), "ms", NULL, 0, 1);
        /* the same offers timed from the READY's actual send: the hub and
         * both sides' I/O without the generator's lateness (not the target's
         * measure: a late send is the loaded system's too) */
        metric("paced: READY→TASK from the actual send, p50", pct(pr.sent_task.v, pr.sent_task.n, 0.50), "ms", NULL,
               0, 1);
        metric("paced: READY→TASK from the actual send, p99", pct(pr.sent_task.v, pr.sent_task.n, 0.99), "ms", NULL,
               0, 1);
        /* ... and to the TASK's arrival in the reader's kernel (its receive
         * timestamp): the hub's part and the network's, without the
         * simulated reader's own wait for a CPU to read it (a reader on
         * another machine does not share the hub's cores) */
        if (pr.arrived_task.n) {
            metric("paced: READY sent→TASK in the reader's kernel, p50", pct(pr.arrived_task.v, pr.arrived_task.n, 0.50),
                   "ms", NULL, 0, 1);
            metric("paced: READY sent→TASK in the reader's kernel, p99", pct(pr.arrived_task.v, pr.arrived_task.n, 0.99),
                   "ms", NULL, 0, 1);
        }
        metric("paced: CLAIM→CLAIMED (durable lease), p50", pct(pr.claim.v, pr.claim.n, 0.50), "ms", NULL, 0, 1);
        metric("paced: CLAIM→CLAIMED (durable lease), p99", pct(pr.claim.v, pr.claim.n, 0.99), "ms", NULL, 0, 1);
        metric("paced: whole round, schedule→CLAIMED, p99", pct(pr.round.v, pr.round.n, 0.99), "ms", NULL, 0, 1);
        if (hub_hist_ok) {
            /* the hub's own part (READY in → TASK out, its /metrics histogram):
             * a bucket's upper bound, so "at most" */
            uint64_t counted;
            double p50 = offer_quantile_ms(hist0, hist1, 0.50, &counted), p99 = offer_quantile_ms(hist0, hist1, 0.99, &counted);
            metric("paced: the hub's own READY→TASK, p50 at most", p50, "ms", NULL, 0, 1);
            metric("paced: the hub's own READY→TASK, p99 at most", p99, "ms", NULL, 0, 1);
            metric("paced: offers the hub timed", (double)counted, "", NULL, 0, 0);
        }
        metric("paced: a thread sleeping 1 ms wakes late by, p99", pct(busy_probe.late.v, busy_probe.late.n, 0.99),
               "ms", NULL, 0, 1);
        metric("paced: a thread sleeping 1 ms wakes late by, max",
               busy_probe.late.n ? busy_probe.late.v[busy_probe.late.n - 1] / 1000.0 : 0, "ms", NULL, 0, 1);
        metric("paced: CPU of the kernel's memory monitor (kdamond)", kd_cores, "cores", NULL, 0, 0);
        metric("paced: CPU of the hub", p_hub_cores, "cores", NULL, 0, 0);
        metric("paced: CPU of the simulated readers", p_sim_cores, "cores", NULL, 0, 0);
        if (pr.claimed) {
            metric("paced: hub CPU per assignment", p_hub_cores * p_elapsed / (double)pr.claimed * 1e6, "us", NULL, 0, 0);
            metric("paced: simulated readers' CPU per assignment", p_sim_cores * p_elapsed / (double)pr.claimed * 1e6,
                   "us", NULL, 0, 0);
            /* A thread's run-queue wait: the time it was ready to run
             * while the CPUs were busy (with anything, others' work too). */
            for (int i = 0; i < n_tc1; i++) {
                double w, d = thread_delta(tc0, n_tc0, tc1, i, &w);
                if (d * 1e6 / (double)pr.claimed < 1)
                    continue; /* idle threads */
                snprintf(name, sizeof name, "paced: hub thread %.31s, CPU per assignment", tc1[i].name);
                metric(name, d * 1e6 / (double)pr.claimed, "us", NULL, 0, 0);
                snprintf(name, sizeof name, "paced: hub thread %.31s, run-queue wait", tc1[i].name);
                metric(name, w / p_elapsed * 100, "%", NULL, 0, 1);
            }
            for (int i = 0; i < n_sc1; i++) {
                double w, d = thread_delta(sc0, n_sc0, sc1, i, &w);
                if (d * 1e6 / (double)pr.claimed < 1)
                    continue;
                snprintf(name, sizeof name, "paced: readers' thread %.31s, CPU per assignment", sc1[i].name);
                metric(name, d * 1e6 / (double)pr.claimed, "us", NULL, 0, 0);
                snprintf(name, sizeof name, "paced: readers' thread %.31s, run-queue wait", sc1[i].name);
                metric(name, w / p_elapsed * 100, "%", NULL, 0, 1);
            }
            metric("paced: readers' generator threads, CPU per assignment", pr.pacer_cpu_s * 1e6 / (double)pr.claimed,
                   "us", NULL, 0, 0);
            metric("paced: readers' generator threads, run-queue wait", pr.pacer_wait_s / p_elapsed * 100, "%", NULL,
                   0, 1);
        }
    }
    /* The closed loop: each reader always has a request outstanding, so
     * this is the rate at saturation, and its latencies are queueing at
     * saturation (see the paced run's comment). */
    metric("closed loop: assignments (CLAIM+READY→TASK→CLAIMED) per second", elapsed ? total / elapsed : 0, "1/s",
           "target", 10000, 0);
    metric("READY→TASK, one reader alone, p50", pct(solo, (size_t)n_solo, 0.50), "ms", NULL, 0, 1);
    metric("READY→TASK, one reader alone, p99", pct(solo, (size_t)n_solo, 0.99), "ms", NULL, 0, 1);
    metric("closed loop: READY→TASK, all readers, p50", pct(lat, total, 0.50), "ms", NULL, 0, 1);
    metric("closed loop: READY→TASK, all readers, p99", pct(lat, total, 0.99), "ms", NULL, 0, 1);
    metric("closed loop: READY→TASK, all readers, max", total ? lat[total - 1] / 1000.0 : 0, "ms", NULL, 0, 1);
    metric("closed loop: CLAIM→CLAIMED (durable lease), p50", pct(clat, total, 0.50), "ms", NULL, 0, 1);
    metric("closed loop: CLAIM→CLAIMED (durable lease), p99", pct(clat, total, 0.99), "ms", NULL, 0, 1);
    metric("offers alone (READY→TASK, no CLAIM) per second", oelapsed ? ototal / oelapsed : 0, "1/s", NULL, 0, 0);
    metric("offers alone, READY→TASK p50", pct(olat, ototal, 0.50), "ms", NULL, 0, 1);
    metric("offers alone, READY→TASK p99", pct(olat, ototal, 0.99), "ms", NULL, 0, 1);
    if (n_lat) {
        metric("STAT study complete→offer p50", pct(stat_lat, (size_t)n_lat, 0.5), "ms", NULL, 0, 1);
        metric("STAT study complete→offer max", stat_lat[n_lat - 1] / 1000.0, "ms", "target", 50, 1);
    }
    metric("one offer transaction (fsync), best of 5", offer_ms < 1e9 ? offer_ms : 0, "ms", NULL, 0, 1);
    if (batched > 0)
        metric("offers/s, 100 offers to one transaction", batched / (batch_ms / 1000.0), "1/s", NULL, 0, 0);
    metric("closed loop: CPU of the hub", hub_cores, "cores", NULL, 0, 0);
    metric("closed loop: CPU of the simulated readers", sim_cores, "cores", NULL, 0, 0);
    /* The figures to compare between runs on a shared machine: CPU time an
     * assignment, which load moves far less than the rate. */
    metric("closed loop: hub CPU per assignment", total ? hub_cores * elapsed / (double)total * 1e6 : 0, "us", NULL, 0, 0);
    metric("closed loop: simulated readers' CPU per assignment", total ? sim_cores * elapsed / (double)total * 1e6 : 0, "us", NULL,
           0, 0);
    metric("4 KiB write + fdatasync beside the store, p50", sync_ms, "ms", NULL, 0, 1);
    metric("worklist tick over the queue (every 500 ms)", tick_ms, "ms", NULL, 0, 1);
    metric("offer scan for a reader nothing fits", scan_ms, "ms", NULL, 0, 1);
    if (first_scan_ms)
        metric("  an ECG reader's READY→HEARTBEAT answered", first_scan_ms, "ms", NULL, 0, 1);
    if (paced_s > 0)
        printf("  (paced: %zu rounds started on schedule in %d s over %d threads, %zu CLAIMED, %zu claims refused)\n",
               pr.rounds, paced_s, paced_threads, pr.claimed, pr.refused);
    printf("  (closed loop: %zu assignments in %.1f s by %d readers; %d readers stopped on a timeout, %d claims refused; "
           "%zu offers alone in %.1f s, %d readers left waiting on an empty queue; %d STAT studies timed)\n",
           total, elapsed, n_readers, timeouts, refused, ototal, oelapsed, otimeouts, n_lat);
    if (commit_line[0])
        printf("  hub %s\n", strstr(commit_line, "readers:") ? strstr(commit_line, "readers:") : commit_line);
    if (json_out) {
        if (json_dump_file(results, json_out, JSON_INDENT(1) | JSON_REAL_PRECISION(6)) != 0)
            die("cannot write %s", json_out);
    }
    json_decref(results);
    free(pr.task.v);
    free(pr.sent_task.v);
    free(pr.arrived_task.v);
    free(pr.claim.v);
    free(pr.round.v);
    free(pr.late.v);
    free(idle_probe.late.v);
    free(busy_probe.late.v);
    free(lat);
    free(clat);
    free(olat);
    free(rs);
    return 0;
}
