/* task_json.h — the reader link's TASK and CLAIMED headers as JSON text,
 * written straight into a buffer (task_json.c).  Hub-private. */
#ifndef DXHUB_TASK_JSON_H
#define DXHUB_TASK_JSON_H

#include <jansson.h>
#include <stddef.h>
#include "hub/store.h"
#include "worklist/worklist.h"

/* Room for any task's header: its texts escaped at worst six bytes a byte. */
#define TASK_JSON_MAX 8192

/* {"task":{...task_to_json's fields...}[,"lease_until":N][,"req":R],"v":1}
 * into out (cap bytes, NUL-terminated); st may be NULL, lease_until < 0
 * leaves it out, req (any JSON value) may be NULL.  The length, or -1 when
 * a text is not valid UTF-8 or it does not fit: then build the header with
 * task_to_json, which says what is wrong. */
int task_json_header(char *out, size_t cap, const wl_task *t, const store_study *st, int64_t lease_until,
                     const json_t *req);

#endif
