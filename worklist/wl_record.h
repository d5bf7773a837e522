/* wl_record.h — how a task and a history event are laid out in LMDB
 * (worklist-private: worklist.c).
 *
 * Compact: the numbers, then each text as its bytes and a NUL, so a task
 * takes ~150 bytes instead of its 1.1 KiB struct and an event ~30 instead
 * of 232.  Every lease rewrites its task and appends events, and a commit
 * writes (and flushes) every page it touched: small records put the tasks
 * of one batch on a few pages.  Records written before (the raw structs)
 * are still read. */
#ifndef DXHUB_WL_RECORD_H
#define DXHUB_WL_RECORD_H

#include <stddef.h>
#include <stdint.h>
#include "worklist/worklist.h"

/* The largest encodings, for the caller's buffers. */
#define WL_TASK_REC_MAX  (1 + 64 + sizeof(wl_task) + 64)
#define WL_EVENT_REC_MAX (sizeof(wl_event))

/* Encode into buf (WL_TASK_REC_MAX / WL_EVENT_REC_MAX bytes): the length. */
size_t wl_task_encode(const wl_task *t, uint8_t *buf);
size_t wl_event_encode(const wl_event *e, uint8_t *buf);
/* Decode a stored record of n bytes, either layout: 0, or -1 when it is
 * neither (the caller treats that as a storage failure). */
int wl_task_decode(const void *p, size_t n, wl_task *t);
int wl_event_decode(const void *p, size_t n, wl_event *e);

#endif
