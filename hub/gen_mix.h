/* gen_mix.h — generation counters folded into one cache key.
 *
 * A kept answer is valid while every counter it was made under is
 * unchanged, and the counters are folded into one 64-bit value to compare.
 * Folding by XOR lets two counters that move together cancel out: the
 * instance generation and the verdict-change count both rising by one (an
 * outside commit seen, and a report's verdict changed by it) gave the same
 * key as before whenever both were even, and a lookup then served the
 * answer kept from before the change.  Each counter goes through a full
 * 64-bit mix (SplitMix64's finaliser) before it is folded in, so no simple
 * pattern of increments cancels. */
#ifndef DXHUB_GEN_MIX_H
#define DXHUB_GEN_MIX_H

#include <stdint.h>

static inline uint64_t gen_mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* h with counter v folded in; start from 0. */
static inline uint64_t gen_fold(uint64_t h, uint64_t v) { return gen_mix64(h ^ gen_mix64(v)); }

#endif
