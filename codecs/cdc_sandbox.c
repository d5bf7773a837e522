/* cdc_sandbox.c — decoding a frame in a child process, for codecs whose
 * library can abort or corrupt memory on crafted input (OpenJPH 0.9
 * asserts inside its packet-header parser; no check before the call can
 * rule every case out).  A crash, a hang or a runaway allocation then
 * costs the child, never the caller: the caller gets CDC_ECODEC naming
 * the signal, and the next decode starts a new child.
 *
 * The child is a fork of the caller (no exec), so the codec's decode
 * function is at the same address there; it serves one request at a time
 * over a SOCK_SEQPACKET socketpair: a request names the function, the
 * frame's shape and sizes; input and output travel through one shared
 * memfd that the parent grows and the child remaps when its size changes.
 * A second memfd is the caller's frame buffer (cdc_sandbox_frame_buffer):
 * a frame decoded into it is written there by the child, and the copy of
 * the decoded frame out of the first memfd is saved (10 MB for a 5-MP
 * radiograph, a tenth of the frame's decode time).
 * Bounds in the child: address space (RLIMIT_AS: its size at the request
 * plus a budget for that frame), no core dumps, SIGKILL when the parent
 * dies; in the parent: a wall-clock timeout per frame, after which the
 * child is killed.  The child's stderr is a pipe to the parent: what a
 * library prints as it dies (an assert's message) joins the caller's one
 * error line instead of reaching the terminal on its own.
 *
 * A cdc_sandbox keeps its child between frames (the workstation decodes
 * many) and forks it when it opens, while the caller is still small;
 * decoding with none forks a child for that frame alone.  Per frame the
 * kept child costs one message each way (about 20 us of CPU) and the copy
 * of the codestream in; what a frame's first decode costs beyond that is
 * faulting in fresh memory, so the child keeps its codec's freed memory
 * (in transparent huge pages) for the next frame, and gives it back after
 * a second without work. */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "codecs/cdc_private.h"
#include "codecs/banned.h"

#if defined(__SANITIZE_ADDRESS__)
#define SANDBOX_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANDBOX_UNDER_ASAN 1
#endif
#endif

/* Memory a child may take for one frame beyond what it has mapped: the
 * codec's working set is a few times the frame, plus a fixed margin. */
#define SANDBOX_MEM_MARGIN ((size_t)256 << 20)
/* A frame gets this long, plus a second per SANDBOX_BYTES_PER_S of output
 * (OpenJPH decodes well over 100 MB/s; a loaded machine is slower). */
#define SANDBOX_TIMEOUT_MS 5000
#define SANDBOX_BYTES_PER_S ((size_t)16 << 20)
/* A child idle this long returns its codec's freed memory to the system. */
#define SANDBOX_IDLE_TRIM_S 1
/* Heap the child keeps in huge pages (a 5-MP radiograph's decode uses 8 MB);
 * below glibc's largest mmap threshold (32 MB), so it comes from the heap. */
#define SANDBOX_HEAP_WARM ((size_t)24 << 20)

struct cdc_sandbox {
    pthread_mutex_t lock; /* one frame at a time through the child */
    pid_t    pid;         /* 0: no child (none yet, or it died) */
    int      sock;        /* parent's end of the socketpair, -1 without a child */
    int      said;        /* read end of the child's stderr, -1 without a child */
    int      memfd;       /* the codestream in, the frame out (copied to the caller) */
    uint8_t *map;
    size_t   map_len;
    int      frame_fd;    /* the caller's frame buffer, written by the child directly */
    uint8_t *frame_map;
    size_t   frame_len;
};

typedef struct request {
    cdc_decode_fn fn;     /* valid in the child: a fork of this process */
    cdc_fmt       fmt;
    uint64_t      n, out_len, map_len;
    uint64_t      frame_len; /* nonzero: decode into the frame memfd, mapped this long */
} request;

typedef struct reply {
    int32_t rc;
    dcm_err err;
} reply;

#define IN_OFF ((size_t)0)
static size_t out_off(size_t n)
{
    return (n + 63) & ~(size_t)63;
}

/* --- the child ------------------------------------------------------- */

#ifndef SANDBOX_UNDER_ASAN
/* Bytes of address space this process has mapped now. */
static size_t mapped_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    if (f) {
        if (fscanf(f, "%lu", &pages) != 1)
            pages = 0;
        fclose(f);
    }
    return (size_t)pages * (size_t)sysconf(_SC_PAGESIZE);
}
#endif

static void limit_memory(size_t frame_bytes)
{
#ifndef SANDBOX_UNDER_ASAN /* ASan reserves terabytes of shadow up front */
    size_t cap = mapped_bytes() + SANDBOX_MEM_MARGIN + 4 * frame_bytes;
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && (rl.rlim_max == RLIM_INFINITY || cap < rl.rlim_max)) {
        rl.rlim_cur = cap;
        setrlimit(RLIMIT_AS, &rl);
    }
#else
    (void)frame_bytes;
#endif
}

static void remap(int memfd, uint8_t **map, size_t *map_len, size_t want)
{
    if (*map && *map_len == want)
        return;
    if (*map)
        munmap(*map, *map_len);
    *map_len = want;
    /* Populated in one call rather than faulted in page by page (a 10 MB
     * frame is 2,560 faults in its first decode). */
    *map = mmap(NULL, want, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, memfd, 0);
    if (*map == MAP_FAILED)
        _exit(3);
}

/* The child holds no descriptor of the parent's but its three: a
 * listening socket or a store's file must not outlive the parent in it. */
static void close_others(int a, int b, int c)
{
    int keep[3] = {a, b, c};
    for (int i = 1; i < 3; i++) /* sort three */
        for (int j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
            int t = keep[j];
            keep[j] = keep[j - 1];
            keep[j - 1] = t;
        }
    int from = 3;
    for (int i = 0; i < 3; i++) {
        if (keep[i] > from)
            close_range((unsigned)from, (unsigned)keep[i] - 1, 0);
        if (keep[i] + 1 > from)
            from = keep[i] + 1;
    }
    close_range((unsigned)from, ~0u, 0);
}

/* Grow the heap by SANDBOX_HEAP_WARM bytes and ask for transparent huge
 * pages there: a codec's first frame then faults its working memory in
 * 2 MB at a time instead of 4 kB (each fault costs microseconds, more
 * under some hypervisors).  Virtual only until touched; given back to
 * malloc at once, where it stays (no trimming, see child_serve). */
static void heap_reserve(void)
{
#ifndef SANDBOX_UNDER_ASAN
    uint8_t *p = malloc(SANDBOX_HEAP_WARM);
    if (!p)
        return;
    const uintptr_t huge = (uintptr_t)2 << 20;
    uintptr_t a = ((uintptr_t)p + huge - 1) & ~(huge - 1), e = ((uintptr_t)p + SANDBOX_HEAP_WARM) & ~(huge - 1);
    if (e > a)
        madvise((void *)a, e - a, MADV_HUGEPAGE);
    free(p);
#endif
}

/* Receive on sock with a timeout of s seconds (0: none); true if set. */
static bool idle_timeout(int sock, int s)
{
    struct timeval tv = {s, 0};
    return setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0 && s > 0;
}

static void child_serve(int sock, int memfd, int frame_fd, pid_t parent)
{
    /* SIGKILL when the parent goes, and no core of a crafted frame. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(0);
    struct rlimit nocore = {0, 0};
    setrlimit(RLIMIT_CORE, &nocore);
    signal(SIGPIPE, SIG_IGN);
    /* The parent's crash handlers (a backtrace printer, a test harness's
     * longjmp) must not run here: a crash ends this process, nothing else. */
    const int crash[] = {SIGSEGV, SIGBUS, SIGABRT, SIGILL, SIGFPE};
    for (size_t i = 0; i < sizeof crash / sizeof crash[0]; i++)
        signal(crash[i], SIG_DFL);
    close_others(sock, memfd, frame_fd);
    /* The codec's working memory stays in the heap between frames: freed
     * blocks are neither unmapped nor trimmed, so the next frame of a
     * series reuses pages already faulted in (RLIMIT_AS still bounds it). */
    mallopt(M_MMAP_THRESHOLD, SANDBOX_HEAP_WARM + (1 << 20));
    mallopt(M_TRIM_THRESHOLD, 512 << 20);
    heap_reserve();
    uint8_t *map = NULL, *frame = NULL;
    size_t map_len = 0, frame_len = 0, limited_for = 0;
    /* ...until the child has been idle a while: then it gives that memory
     * back and waits without a timeout until the next frame. */
    bool timed = idle_timeout(sock, SANDBOX_IDLE_TRIM_S);
    for (;;) {
        request rq;
        ssize_t r = recv(sock, &rq, sizeof rq, 0);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            malloc_trim(0);
            heap_reserve();
            timed = idle_timeout(sock, 0);
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r != (ssize_t)sizeof rq) /* the parent closed its end */
            _exit(0);
        if (!timed)
            timed = idle_timeout(sock, SANDBOX_IDLE_TRIM_S);
        remap(memfd, &map, &map_len, rq.map_len);
        if (rq.frame_len)
            remap(frame_fd, &frame, &frame_len, rq.frame_len);
        /* Frames of one series share a size: the limit (a read of
         * /proc/self/statm) is set again only when that or a mapping changes. */
        size_t key = rq.out_len + map_len + frame_len;
        if (key != limited_for)
            limit_memory(rq.out_len + rq.n), limited_for = key;
        reply rp;
        memset(&rp, 0, sizeof rp);
        uint8_t *out = rq.frame_len ? frame : map + out_off(rq.n);
        rp.rc = rq.fn(&rq.fmt, map + IN_OFF, rq.n, out, rq.out_len, &rp.err);
        if (send(sock, &rp, sizeof rp, MSG_NOSIGNAL) != (ssize_t)sizeof rp)
            _exit(0);
    }
}

/* --- the parent ------------------------------------------------------ */

static void stop_child(cdc_sandbox *sb, int *status)
{
    if (sb->sock >= 0)
        close(sb->sock);
    sb->sock = -1;
    if (sb->pid > 0) {
        kill(sb->pid, SIGKILL);
        int st = 0;
        while (waitpid(sb->pid, &st, 0) < 0 && errno == EINTR)
            ;
        if (status)
            *status = st;
    }
    sb->pid = 0;
}

/* The last line the dead child wrote to stderr, trimmed, into line[n]
 * ("" when it said nothing); then the pipe is closed. */
static void child_last_words(cdc_sandbox *sb, char *line, size_t n)
{
    char buf[4096];
    size_t len = 0;
    line[0] = 0;
    if (sb->said < 0)
        return;
    for (;;) { /* keep the tail of whatever it wrote */
        ssize_t r = read(sb->said, buf + len, sizeof buf - 1 - len);
        if (r <= 0)
            break;
        len += (size_t)r;
        if (len == sizeof buf - 1) {
            memmove(buf, buf + len / 2, len - len / 2);
            len -= len / 2;
        }
    }
    close(sb->said);
    sb->said = -1;
    while (len && (buf[len - 1] == '\n' || buf[len - 1] == ' '))
        len--;
    buf[len] = 0;
    char *start = memrchr(buf, '\n', len);
    start = start ? start + 1 : buf;
    size_t sl = strlen(start);
    memcpy(line, start, sl < n ? sl + 1 : n - 1);
    line[n - 1] = 0;
    if (sl >= n && n > 4) /* cut: say so */
        memcpy(line + n - 4, "...", 4);
}

static int start_child(cdc_sandbox *sb, dcm_err *err)
{
    int sv[2], ep[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return dcm_fail(err, -errno, 0, "decoder process: socketpair: %s", strerror(errno));
    if (pipe2(ep, O_CLOEXEC | O_NONBLOCK) < 0) {
        int e = errno;
        close(sv[0]), close(sv[1]);
        return dcm_fail(err, -e, 0, "decoder process: pipe: %s", strerror(e));
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(sv[0]), close(sv[1]), close(ep[0]), close(ep[1]);
        return dcm_fail(err, -e, 0, "decoder process: fork: %s", strerror(e));
    }
    if (pid == 0) {
        close(sv[0]);
        dup2(ep[1], STDERR_FILENO); /* non-blocking: a chatty library loses words, never blocks */
        child_serve(sv[1], sb->memfd, sb->frame_fd, parent);
        _exit(0);
    }
    close(sv[1]);
    close(ep[1]);
    if (sb->said >= 0)
        close(sb->said);
    sb->pid = pid;
    sb->sock = sv[0];
    sb->said = ep[0];
    return 0;
}

int cdc_sandbox_open(cdc_sandbox **out, dcm_err *err)
{
    *out = NULL;
    cdc_sandbox *sb = calloc(1, sizeof *sb);
    if (!sb)
        return dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
    sb->sock = -1;
    sb->said = -1;
    sb->memfd = memfd_create("dxhub-decode", MFD_CLOEXEC);
    sb->frame_fd = sb->memfd < 0 ? -1 : memfd_create("dxhub-frame", MFD_CLOEXEC);
    if (sb->frame_fd < 0) {
        int e = errno;
        if (sb->memfd >= 0)
            close(sb->memfd);
        free(sb);
        return dcm_fail(err, -e, 0, "decoder process: memfd_create: %s", strerror(e));
    }
    pthread_mutex_init(&sb->lock, NULL);
    /* The child starts now, while the caller is usually small (a server
     * opens its sandbox at start): forking a process that has since grown
     * to hundreds of MB costs milliseconds, and both sides then take
     * copy-on-write faults.  If it fails, the first frame tries again. */
    start_child(sb, &(dcm_err){{0}, 0});
    *out = sb;
    return 0;
}

void cdc_sandbox_close(cdc_sandbox **psb)
{
    cdc_sandbox *sb = psb ? *psb : NULL;
    if (!sb)
        return;
    stop_child(sb, NULL);
    if (sb->said >= 0)
        close(sb->said);
    if (sb->map)
        munmap(sb->map, sb->map_len);
    if (sb->frame_map)
        munmap(sb->frame_map, sb->frame_len);
    close(sb->memfd);
    close(sb->frame_fd);
    pthread_mutex_destroy(&sb->lock);
    free(sb);
    *psb = NULL;
}

int cdc_sandbox_pid(const cdc_sandbox *sb)
{
    return sb ? (int)sb->pid : 0;
}

/* At least need bytes of memfd fd mapped at *map (*map_len long), in
 * whole MiB; what was there stays (the file keeps its pages).  Not grown by
 * doubling: the mapping is populated, so every byte of it is memory. */
static int grow(int fd, uint8_t **map, size_t *map_len, size_t need, dcm_err *err)
{
    if (*map && need <= *map_len)
        return 0;
    size_t len = (need + ((size_t)1 << 20) - 1) & ~(((size_t)1 << 20) - 1);
    if (len == 0)
        len = (size_t)1 << 20;
    if (ftruncate(fd, (off_t)len) < 0)
        return dcm_fail(err, -errno, 0, "decoder process: %zu bytes of shared memory: %s", len, strerror(errno));
    uint8_t *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (m == MAP_FAILED)
        return dcm_fail(err, DCM_ENOMEM, 0, "decoder process: mapping %zu bytes: %s", len, strerror(errno));
    if (*map)
        munmap(*map, *map_len);
    *map = m;
    *map_len = len;
    return 0;
}

/* Room for n input and out_len output bytes in the shared memory. */
static int reserve(cdc_sandbox *sb, size_t n, size_t out_len, dcm_err *err)
{
    return grow(sb->memfd, &sb->map, &sb->map_len, out_off(n) + out_len, err);
}

uint8_t *cdc_sandbox_frame_buffer(cdc_sandbox *sb, size_t len, dcm_err *err)
{
    pthread_mutex_lock(&sb->lock);
    int rc = grow(sb->frame_fd, &sb->frame_map, &sb->frame_len, len ? len : 1, err);
    uint8_t *p = rc < 0 ? NULL : sb->frame_map;
    pthread_mutex_unlock(&sb->lock);
    return p;
}

static long long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Wait for the child's reply: 1 when it came, 0 on timeout, -1 when the
 * child closed its end (it died). */
static int await_reply(cdc_sandbox *sb, reply *rp, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    for (;;) {
        struct pollfd pf = {sb->sock, POLLIN, 0};
        long long left = deadline - now_ms();
        if (left <= 0)
            return 0;
        int pr = poll(&pf, 1, (int)left);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            return 0;
        ssize_t r = recv(sb->sock, rp, sizeof *rp, 0);
        if (r < 0 && errno == EINTR)
            continue;
        return r == (ssize_t)sizeof *rp ? 1 : -1;
    }
}

/* Why the child is gone, for the caller's message. */
static int child_failed(cdc_sandbox *sb, const char *what, int timed_out, int timeout_ms, dcm_err *err)
{
    int st = 0;
    stop_child(sb, &st);
    char said[112], why[128] = "";
    child_last_words(sb, said, sizeof said);
    if (said[0])
        snprintf(why, sizeof why, "; it said: %s", said);
    if (timed_out)
        return dcm_fail(err, CDC_ECODEC, 0, "%s decoder gave no answer in %d ms on this frame; stopped it",
                        what, timeout_ms);
    if (WIFSIGNALED(st))
        return dcm_fail(err, CDC_ECODEC, 0, "%s decoder crashed on this frame (signal %d, %s): malformed data%s",
                        what, WTERMSIG(st), strsignal(WTERMSIG(st)), why);
    return dcm_fail(err, CDC_ECODEC, 0, "%s decoder process ended on this frame (exit %d): malformed data "
                    "or out of memory%s", what, WIFEXITED(st) ? WEXITSTATUS(st) : -1, why);
}

static int decode_locked(cdc_sandbox *sb, cdc_decode_fn fn, const char *what, const cdc_fmt *fmt,
                         const uint8_t *src, size_t n, uint8_t *out, size_t out_len, dcm_err *err)
{
    /* Into the caller's shared frame buffer: the child writes the frame
     * there and nothing is copied out. */
    bool direct = sb->frame_map && out == sb->frame_map && out_len <= sb->frame_len;
    int rc = reserve(sb, n, direct ? 0 : out_len, err);
    if (rc < 0)
        return rc;
    if (sb->pid == 0 && (rc = start_child(sb, err)) < 0)
        return rc;
    memcpy(sb->map + IN_OFF, src, n);
    request rq = {fn, *fmt, n, out_len, sb->map_len, direct ? sb->frame_len : 0};
    if (send(sb->sock, &rq, sizeof rq, MSG_NOSIGNAL) != (ssize_t)sizeof rq)
        return child_failed(sb, what, 0, 0, err);
    int timeout_ms = SANDBOX_TIMEOUT_MS + (int)(out_len / SANDBOX_BYTES_PER_S) * 1000;
    reply rp;
    int got = await_reply(sb, &rp, timeout_ms);
    if (got <= 0)
        return child_failed(sb, what, got == 0, timeout_ms, err);
    if (rp.rc < 0) {
        if (err)
            *err = rp.err;
        return rp.rc;
    }
    if (!direct)
        memcpy(out, sb->map + out_off(n), out_len);
    return rp.rc;
}

int cdc_sandbox_decode(cdc_sandbox *sb, cdc_decode_fn fn, const char *what, const cdc_fmt *fmt,
                       const uint8_t *src, size_t n, uint8_t *out, size_t out_len, dcm_err *err)
{
    if (sb) {
        pthread_mutex_lock(&sb->lock);
        int rc = decode_locked(sb, fn, what, fmt, src, n, out, out_len, err);
        pthread_mutex_unlock(&sb->lock);
        return rc;
    }
    /* No sandbox of the caller's: a child for this frame alone. */
    cdc_sandbox *one;
    int rc = cdc_sandbox_open(&one, err);
    if (rc < 0)
        return rc;
    rc = decode_locked(one, fn, what, fmt, src, n, out, out_len, err);
    cdc_sandbox_close(&one);
    return rc;
}
