/* offer_set.h — the offers the reader link has sent whose record is not
 * durable yet: task id → the connection it was offered to.  While a task
 * is here the link offers it to no one else, though the store still shows
 * it queued.  A fixed-size open-addressing table (bounded memory: when it
 * is full the link waits for commits before offering more).
 * Hub-private (reader_link.c). */
#ifndef DXHUB_OFFER_SET_H
#define DXHUB_OFFER_SET_H

#include <stddef.h>
#include <stdint.h>

typedef struct offer_set offer_set;

/* Room for at least max offers; NULL when out of memory. */
offer_set *offer_set_new(size_t max);
void       offer_set_free(offer_set **s);
/* 0, or -1 when the set is full or id is 0 or already there. */
int        offer_set_add(offer_set *s, uint64_t id, int conn);
/* The connection task id was offered to, or -1. */
int        offer_set_conn(const offer_set *s, uint64_t id);
void       offer_set_remove(offer_set *s, uint64_t id);
size_t     offer_set_count(const offer_set *s);
/* How many ids have left the set so far: a pick's memo of the tasks it
 * passes over (wl_skip_memo) holds until this changes. */
uint64_t   offer_set_removals(const offer_set *s);

#endif
