/* ws.h — the reading workstation daemon's shared state (private to
 * viewer/).  `dxhub workstation` (ws_main.c) connects to the hub as a
 * reader, keeps the tasks it is offered and holds (ws_hub.c), prefetches
 * their studies into the LMDB cache (ws_fetch.c, ws_cache.c) and serves the
 * reader's browser on 127.0.0.1 (ws_http.c routes; ws_api_*.c answer; the
 * contract is viewer/API.md).
 *
 * Threads and locks, always taken in this order, never the reverse:
 *   fetch_mu  one instance fetch at a time (the prefetcher or a request)
 *   hub_mu    the hub client (ZeroMQ: one thread at a time)
 *   mu        the task list, the signer, the connection state
 * The cache's own write lock may be taken under fetch_mu; mu is never held
 * while waiting for the hub or the cache. */
#ifndef DXHUB_WS_H
#define DXHUB_WS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include "hub/hub.h"
#include "viewer/ws_cache.h"
#include "viewer/ws_frames.h"

#define WS_MAX_TASKS 64

typedef struct ws_config {
    const char *hub, *hub_key, *keys_dir, *name;
    const char *sign_key, *cert, *chain, *passphrase_file;
    const char *cache_dir, *web_dir, *bind;
    uint64_t    cache_bytes;
    int         http_port, prefetch, offers, timeout_ms;
    int         prefetch_prior; /* fetch each held task's relevant prior ahead */
} ws_config;

/* A prior study of the task's patient opened beside it to compare
 * (ws_compare.c): one per task, replaced when another is opened. */
typedef struct ws_compare {
    char          study[65];   /* its Study Instance UID; "" none */
    char          hub[64];     /* a peer hub's exam: that hub, "" this one */
    char          report_id[64]; /* and its report there, which lists it */
    hub_instance *inst;        /* the hub's listing of it */
    size_t        n_inst;
    char         *view;        /* as /compare answers it, once wholly cached; NULL until */
    size_t        view_len;
    int           ahead;       /* the hub's relevant prior, fetched before it is opened */
    size_t        n_cached;    /* instances of the listing in the cache (by the fetches' count) */
    int           fails;       /* fetched ahead: failed steps (given up after WS_AHEAD_TRIES) */
} ws_compare;

typedef struct ws_task {
    hub_task      t;
    int           held;        /* claimed by us (or given back to us) */
    int64_t       offered_ms;  /* monotonic time of the offer (0: held) */
    hub_instance *inst;        /* the study listing, NULL until asked */
    size_t        n_inst;
    size_t        n_cached;    /* instances of the listing in the cache */
    int64_t       retry_ms;    /* a prefetch failed: not again before this (monotonic) */
    int           done;        /* submitted and no longer ours (kept to show its state) */
    char         *view;        /* the study as /study answers it (ws_view.c), once wholly cached; NULL until */
    size_t        view_len;
    char        (*images)[65]; /* with the view: the images in the order the viewer shows them */
    size_t        n_images;
    size_t        n_ahead;     /* of those, decoded ahead (or found decoded) so far */
    int           view_failed; /* the background could not build the view: built on request */
    ws_compare    cmp;         /* the prior opened beside it, if any */
    int           prior_asked; /* held: the hub was asked which prior to fetch ahead */
} ws_task;

typedef struct ws {
    ws_config cfg;
    char      token[65];
    char      reader_id[64];
    hub_reader_profile  profile;
    hub_signer_identity cert;  /* who --cert names (before unlocking) */

    pthread_mutex_t fetch_mu, hub_mu, mu;
    pthread_cond_t  changed;   /* mu: the task list changed (events) or work for the prefetcher */
    hub_client *hc;
    int         connected;     /* the last request reached the hub */
    int         key_revoked;   /* the hub refused this workstation's key as revoked (hub_client_key_revoked) */
    int         credit_sent;   /* credit last sent with READY */
    int64_t     ready_ms;      /* when READY was last sent (monotonic) */
    int64_t     held_ms;       /* when HELD was last asked (monotonic) */
    ws_task     tasks[WS_MAX_TASKS];
    size_t      n_tasks;
    uint64_t    gen;           /* bumped whenever the task list changes */
    hub_signer *signer;        /* NULL until unlocked */
    ws_cache   *cache;
    ws_frames  *frames;        /* decoded frames of compressed instances */
    struct cdc_sandbox *decoder; /* the child process HTJ2K frames decode in */
    volatile int stop;
} ws;

int64_t ws_now_ms(void);  /* wall clock, ms since epoch */
int64_t ws_mono_ms(void); /* monotonic, ms */

/* --- ws_hub.c: the hub side ------------------------------------------------------- */

/* One round of the background thread: take offers, renew credit, expire
 * old offers, keep leases alive.  Takes hub_mu and mu as it needs. */
void ws_hub_poll(ws *w);
int  ws_hub_claim(ws *w, uint64_t id, char *err, size_t errlen);   /* 0, or -1 with the hub's reason */
int  ws_hub_release(ws *w, uint64_t id, char *err, size_t errlen);
/* At start, after HELLO: take up the tasks a previous run of this
 * workstation held and whose leases have not lapsed; returns how many. */
int  ws_adopt(ws *w);
/* Ask the hub which tasks we hold and take up those a reviewer returned
 * to us (with the reason).  Takes hub_mu and mu as it needs. */
void ws_sync_held(ws *w);
/* The task is no longer ours: not to be taken up after a restart. */
void ws_forget(ws *w, uint64_t id);
/* Index of task id in w->tasks (mu held), or -1. */
int  ws_task_find(ws *w, uint64_t id);
/* Marks the list changed and wakes the waiters (mu held). */
void ws_changed(ws *w);
/* Eviction guards (ws_pinned_fn, take mu): 1 when a task we hold is of
 * this study or compares with it; ws_study_listed also when a task offered
 * to us is.  Fetching
 * for a held task may evict offered studies; prefetching an offer never
 * evicts another offer's study (no thrashing when offers do not all fit). */
int  ws_study_held(void *w, const char *study);
int  ws_study_listed(void *w, const char *study);
/* 2 STAT, 1 URGENT, 0 ROUTINE (the hub's lower-case names). */
int  ws_priority_rank(const char *p);

/* --- ws_view.c: the study as the viewer lays it out --------------------------------- */

/* The study JSON of task id (a malloc'd copy in *json, NUL-terminated):
 * the one kept with the task, else built now from the cache (fetching
 * what is missing) and kept when the whole study was read.  0, or an HTTP
 * status (500, 502) with the reason in err. */
int  ws_view_get(ws *w, uint64_t id, char **json, size_t *len, char *err, size_t errlen);
/* One step of work after prefetching: the view of a wholly cached study
 * (held tasks first, then offers) with the image it opens on decoded, else
 * one more image of a held study decoded ahead of the reader while the
 * frame cache has room.  1 if it did something, 0 when there was nothing. */
int  ws_view_step(ws *w);
/* The view of the listed instances of study (the task's own, or a prior
 * to compare) read from the cache: *json malloc'd and NUL-terminated,
 * *complete when every listed instance was read.  0, or an HTTP status
 * with the reason in err. */
int  ws_view_of(ws *w, uint64_t id, const char *study, const hub_instance *list, size_t n, char **json, size_t *len,
                int *complete, char *err, size_t errlen);
/* Frees what a task keeps (listing, view, comparison); the task is out of reach. */
void ws_task_release(ws_task *t);

/* --- ws_compare.c: a prior opened beside the task's study ---------------------------- */

/* Every instance of the prior task id compares with in the cache (fetching
 * what is not): 0, or -1 with the reason. */
int ws_compare_fetch(ws *w, uint64_t id, char *err, size_t errlen);
/* Does held task t (mu held) still have its prior to fetch ahead
 * (--prefetch-prior)?  Asked once its own study is wholly cached. */
int ws_compare_ahead_due(const ws *w, const ws_task *t);
/* One step of that: ask the hub which prior (once), list it, or fetch one
 * more of its instances, not evicting what the offers keep.  0, or -1
 * with the reason (tried again later, given up after WS_AHEAD_TRIES). */
int ws_compare_ahead_step(ws *w, uint64_t id, char *err, size_t errlen);
#define WS_AHEAD_TRIES 3

/* --- ws_api_pixels.c: decoding ahead ----------------------------------------------- */

/* Frame n (1-based) of the cached instance sop decoded into w->frames, when
 * it is of a compressed syntax and not there yet: 1 when decoded, 0 when
 * there was nothing to do, -ENOSPC when the frame cache is full (nothing
 * is evicted for it), another negative code when it cannot be decoded. */
int ws_frame_ahead(ws *w, const char *sop, uint32_t n);

/* --- ws_cert.c: the signing certificate's end, told ahead --------------------------- */

#define WS_CERT_WARN_DAYS 30 /* a certificate ending sooner is said at start and on the page */

/* Whole days from now_s (seconds since the epoch) to the certificate's
 * end, rounded down: negative once it has ended. */
int64_t ws_cert_days_left(const hub_signer_identity *c, int64_t now_s);
/* Its end as a UTC date, "2027-03-01", into buf[11]. */
void ws_cert_end_date(const hub_signer_identity *c, char buf[11]);
/* Why a signature by it would be refused now ("your signing certificate
 * ended on ..."), into why; 0 while it is valid. */
int ws_cert_refuses(const hub_signer_identity *c, int64_t now_s, char *why, size_t whylen);

/* --- ws_fetch.c: prefetching into the cache ---------------------------------------- */

/* The study listing of task id (asked once, kept); a malloc'd copy in
 * *out.  -1 with a reason when the hub refuses. */
int ws_study_listing(ws *w, uint64_t id, hub_instance **out, size_t *n, char *study, char *err, size_t errlen);
/* One listed instance into the cache (nothing when it is there): of the
 * task's study, or of the prior it compares with (prior non-NULL; a peer
 * hub's is listed without sizes: its digest vouches for it).
 * held: for a task we hold (may evict offered studies), else for an offer. */
int ws_fetch_instance(ws *w, uint64_t id, const hub_prior *prior, const char *study, const hub_instance *in, int held,
                      char *err, size_t errlen);
/* Every instance of the task's study in the cache (fetching what is not). */
int ws_fetch_study(ws *w, uint64_t id, char *err, size_t errlen);
/* One prefetch step (held tasks first, then the best offers): 1 if it
 * did something, 0 when there was nothing to do. */
int ws_prefetch_step(ws *w);

#endif
