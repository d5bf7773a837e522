/* sched_hint.c — scheduling hints for the hub's threads.
 *
 * Why: a lookup's answer is ready in a fraction of a millisecond, but a
 * request thread woken while the audit writer (or any other thread) runs
 * waited for that thread's time slice (1.4 ms by default on two CPUs,
 * more under EEVDF's run-to-parity), which was the tail of the lookups'
 * latency.  A request thread now asks for a 0.1 ms slice, which lets its
 * wake-up preempt a thread of a longer slice (EEVDF's PREEMPT_SHORT), and
 * the audit writer runs 10 nice levels below the rest of the hub (nice 10
 * for a hub started at 0).  Neither changes what work is done:
 * the writer keeps a tenth of a CPU under full contention (it needs about
 * 0.75 us of CPU per record, so 130,000 records a second, above what one
 * CPU of request threads can ask of it) and all of it otherwise. */
#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "hub/sched_hint.h"
#include "codecs/banned.h"

/* The kernel's struct sched_attr as of its first version (48 bytes);
 * our own name, as newer C libraries declare theirs in <sched.h>. */
typedef struct hint_sched_attr {
    uint32_t size, sched_policy;
    uint64_t sched_flags;
    int32_t  sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime, sched_deadline, sched_period;
} hint_sched_attr;

static _Thread_local bool request_hinted;

int sched_hint_request_thread(void)
{
    if (request_hinted)
        return 0;
    request_hinted = true;
    pid_t tid = (pid_t)syscall(SYS_gettid);
    errno = 0;
    int nice = getpriority(PRIO_PROCESS, (id_t)tid);
    if (nice == -1 && errno)
        return -errno;
    /* SCHED_OTHER with the thread's own nice: only the slice changes. */
    hint_sched_attr attr = {.size = sizeof attr, .sched_policy = SCHED_OTHER, .sched_nice = nice,
                              .sched_runtime = SCHED_HINT_REQUEST_SLICE_NS};
    return syscall(SYS_sched_setattr, tid, &attr, 0) ? -errno : 0;
}

int sched_hint_background_thread(void)
{
    pid_t tid = (pid_t)syscall(SYS_gettid);
    errno = 0;
    int nice = getpriority(PRIO_PROCESS, (id_t)tid);
    if (nice == -1 && errno)
        return -errno;
    nice += SCHED_HINT_BACKGROUND_NICE;
    return setpriority(PRIO_PROCESS, (id_t)tid, nice < 19 ? nice : 19) ? -errno : 0;
}
