/* ws_cache.h — the workstation's local LMDB cache (private to viewer/).
 *
 * One LMDB environment in the cache folder holds:
 *   inst    SOP UID → the instance's Part 10 bytes as the hub stored them
 *   imeta   SOP UID → its study UID (eviction, and which study a frame is of)
 *   study   study UID → {bytes, instances, last used (ms)}: the LRU list
 *   sinst   study UID → SOP UIDs (duplicates sorted): what to drop together
 *   draft   task id → the reader's draft (JSON), kept while the daemon runs and after
 *   signed  task id → the exact report bytes last signed and acknowledged
 *   signer  task id → who signed them (JSON)
 *   held    task id → a task this reader claimed (JSON), to take up again after a restart
 *
 * Instances count against the size limit (rounded up to LMDB pages); when a
 * new one does not fit, whole studies are evicted least recently used
 * first, except the studies the caller pins (held or about to be read).
 * Reading is zero-copy: ws_cache_get hands out a pointer into the map that
 * stays valid until ws_read_end.
 *
 * Errors: 0 or a negative code: -ENOENT (absent), -ENOSPC (does not fit
 * even after evicting everything not pinned), -EIO (LMDB failed; the
 * reason in err where there is one). */
#ifndef DXHUB_WS_CACHE_H
#define DXHUB_WS_CACHE_H

#include <stddef.h>
#include <stdint.h>

typedef struct ws_cache ws_cache;
typedef struct ws_read  ws_read;

int  ws_cache_open(const char *dir, uint64_t limit_bytes, ws_cache **out, char *err, size_t errlen);
void ws_cache_close(ws_cache **c); /* NULL-safe; NULLs *c */

/* 1 when the instance is cached. */
int ws_cache_has(ws_cache *c, const char *sop);
/* How many instances of the study are cached. */
size_t ws_cache_study_count(ws_cache *c, const char *study);

/* 1 when the study must not be evicted now. */
typedef int (*ws_pinned_fn)(void *ctx, const char *study);

/* 1 when size more bytes would fit once every study not pinned were evicted. */
int ws_cache_room(ws_cache *c, uint64_t size, ws_pinned_fn pinned, void *pctx);

/* Copies size bytes read from fd (from offset 0) into the cache as sop of
 * study, evicting unpinned studies as needed.  One write transaction. */
int ws_cache_put_fd(ws_cache *c, const char *study, const char *sop, int fd, uint64_t size, ws_pinned_fn pinned,
                    void *pctx, char *err, size_t errlen);

/* The cached bytes of sop (borrowed until ws_read_end); *study_out (may
 * be NULL, 65 bytes) gets its study. */
int  ws_cache_get(ws_cache *c, const char *sop, ws_read **r, const uint8_t **p, size_t *n, char *study_out);
void ws_read_end(ws_read **r); /* NULL-safe */

/* Marks the study used now (LRU); written at most once a minute per study. */
void ws_cache_touch(ws_cache *c, const char *study);

typedef struct ws_cache_stats {
    uint64_t bytes, limit, studies, instances, evicted_studies;
} ws_cache_stats;
void ws_cache_stats_get(ws_cache *c, ws_cache_stats *out);

/* Small records (db: "draft", "signed", "signer", "held"), durable (synced) at return. */
int ws_cache_kv_put(ws_cache *c, const char *db, const char *key, const void *p, size_t n);
int ws_cache_kv_del(ws_cache *c, const char *db, const char *key); /* 0, also when absent */
/* Every record of db in key order: cb(ctx, key, value, len) (NUL-terminated copies); stops on non-zero. */
int ws_cache_kv_each(ws_cache *c, const char *db, int (*cb)(void *ctx, const char *key, const char *v, size_t n),
                     void *ctx);
/* A malloc'd copy (NUL-terminated; *n without the NUL); -ENOENT when absent. */
int ws_cache_kv_get(ws_cache *c, const char *db, const char *key, char **p, size_t *n);

#endif
