/* clock.h — the two clocks, and which one to read.
 *
 * The wall clock (CLOCK_REALTIME) says when something happened: times
 * stored, shown or sent (arrivals, due times, the leases readers are
 * told).  It steps whenever NTP or an operator corrects it, back or
 * forward, by seconds or hours.  So intervals — timeouts, keep-alives,
 * retries, idle limits, cache ages — are measured on the monotonic clock,
 * which neither goes back nor jumps: measured on the wall clock, a step
 * back of an hour stops every one of them for that hour.  Hub-private. */
#ifndef DXHUB_CLOCK_H
#define DXHUB_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t clock_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int64_t clock_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
