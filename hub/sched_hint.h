/* sched_hint.h — how the hub's threads ask the kernel's scheduler for
 * latency or for patience (hub/sched_hint.c). */
#ifndef HUB_SCHED_HINT_H
#define HUB_SCHED_HINT_H

/* A request thread's time slice (sched_setattr's sched_runtime for a
 * SCHED_OTHER thread, Linux 6.12 and later; ignored before). */
#define SCHED_HINT_REQUEST_SLICE_NS 100000ULL

/* How much nicer than the rest of the hub the audit writer runs: a weight
 * of 110 against a request thread's 1024, so under full contention it
 * still gets a tenth of a CPU.  Relative, so a hub started at a nice of
 * its own (systemd's Nice=) keeps the same proportion. */
#define SCHED_HINT_BACKGROUND_NICE 10

/* The calling thread asks for a short time slice: woken by a request, it
 * preempts a thread of a longer slice at once instead of waiting for that
 * slice to end.  Its weight (nice) and so its fair share are unchanged.
 * Returns 0 or -errno; once per thread (later calls return at once). */
int sched_hint_request_thread(void);

/* The calling thread gives way to the others: SCHED_HINT_BACKGROUND_NICE
 * above its own nice, at most 19 (its share when the CPU is contended),
 * not SCHED_IDLE (no floor at all).  Returns 0 or -errno. */
int sched_hint_background_thread(void);

#endif
