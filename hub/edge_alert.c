/* edge_alert.c — the clinic gateway's on-alert command: a critical value
 * (危急值) or a request to repeat an exam must reach a person at the
 * clinic, and nobody there reads the gateway's log.  So for each alert the
 * hub delivers, the command the clinic configured (a speaker, a pop-up on
 * the nurses' PC, an SMS modem) runs once, with the alert in its
 * environment:
 *
 *   DXHUB_ALERT_ID, DXHUB_ALERT_KIND (critical | request),
 *   DXHUB_ALERT_RECEIVED (UTC), DXHUB_PATIENT_ID, DXHUB_PATIENT_NAME,
 *   DXHUB_EXAM, DXHUB_ALERT_TEXT (the impression, or what is asked), and
 *   DXHUB_ALERT_SUMMARY (all of it on one line).
 *
 * Once it exits 0 the spool records it, so a restart does not announce the
 * alert again; a command that fails (or runs past EDGE_ALERT_TIMEOUT_MS) is
 * logged and run again every EDGE_ALERT_RETRY_MS until it succeeds.
 * Alerts received more than EDGE_ALERT_MAX_AGE_MS ago are not announced:
 * a command configured today must not replay a year of alerts.  The log
 * names the alert's id, never the patient. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "hub/clock.h"
#include "hub/edge_alert.h"
#include "hub/inbox_summary.h"
#include "hub/log.h"

extern char **environ;

#define EDGE_ALERT_RETRY_MS   5000
#define EDGE_ALERT_TIMEOUT_MS 60000
#define EDGE_ALERT_MAX_AGE_MS (24LL * 3600 * 1000)

struct edge_alerter {
    spool          *sp;
    char           *cmd;
    pthread_t       thread;
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    bool            kicked;
    _Atomic bool    stop; /* read by a run under way, without the lock: the gateway stops, the command goes */
    log_repeat      told; /* a failing command: said when its reason changes, or once a minute */
};

typedef struct pending {
    char          id[256];
    int64_t       received_ms;
    inbox_summary sum;
} pending;

typedef struct round_ctx {
    edge_alerter *a;
    pending      *p;
    size_t        n, cap;
} round_ctx;

static int collect(void *ctx, const char *id, const char *kind, int64_t received_ms, const void *data, size_t len)
{
    round_ctx *r = ctx;
    int64_t when;
    if (strcmp(kind, "alert") || clock_wall_ms() - received_ms > EDGE_ALERT_MAX_AGE_MS ||
        spool_alert_announced(r->a->sp, id, &when) == 0)
        return 0;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 8;
        pending *p = realloc(r->p, cap * sizeof *p);
        if (!p)
            return 1;
        r->p = p;
        r->cap = cap;
    }
    pending *p = &r->p[r->n++];
    snprintf(p->id, sizeof p->id, "%s", id);
    p->received_ms = received_ms;
    inbox_summary_read(kind, data, len, &p->sum);
    return 0;
}

/* The environment of one run: ours, then the alert's. */
static char **alert_env(const pending *p, char vars[8][1400])
{
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + 9, sizeof *env);
    if (!env)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "DXHUB_ALERT_", 12) && strncmp(environ[i], "DXHUB_PATIENT_", 14) &&
            strncmp(environ[i], "DXHUB_EXAM=", 11))
            env[k++] = environ[i];
    const inbox_summary *s = &p->sum;
    char received[32] = "?";
    time_t t = (time_t)(p->received_ms / 1000);
    struct tm tm;
    if (gmtime_r(&t, &tm))
        strftime(received, sizeof received, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(vars[0], 1400, "DXHUB_ALERT_ID=%s", p->id);
    snprintf(vars[1], 1400, "DXHUB_ALERT_KIND=%s", s->critical ? "critical" : "request");
    snprintf(vars[2], 1400, "DXHUB_ALERT_RECEIVED=%s", received);
    snprintf(vars[3], 1400, "DXHUB_PATIENT_ID=%s", s->patient_id);
    snprintf(vars[4], 1400, "DXHUB_PATIENT_NAME=%s", s->patient_name);
    snprintf(vars[5], 1400, "DXHUB_EXAM=%s", s->exam);
    snprintf(vars[6], 1400, "DXHUB_ALERT_TEXT=%s", s->text);
    snprintf(vars[7], 1400, "DXHUB_ALERT_SUMMARY=%s: %s%s%s%s%s: %s", s->critical ? "CRITICAL VALUE" : "REQUEST",
             s->patient_id[0] ? s->patient_id : "", s->patient_name[0] ? " " : "", s->patient_name,
             s->exam[0] ? " · " : "", s->exam, s->text);
    for (int i = 0; i < 8; i++)
        env[k++] = vars[i];
    env[k] = NULL;
    return env;
}

/* Runs the command for p; 0 when it exited 0, else why into why. */
static int run_one(edge_alerter *a, const pending *p, char *why, size_t whylen)
{
    char vars[8][1400];
    char **env = alert_env(p, vars);
    if (!env) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    char *argv[] = {"sh", "-c", a->cmd, NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, "/bin/sh", &fa, NULL, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    free(env);
    if (rc) {
        snprintf(why, whylen, "cannot start /bin/sh: %s", strerror(rc));
        return -1;
    }
    int status = 0;
    int64_t end = clock_mono_ms() + EDGE_ALERT_TIMEOUT_MS;
    pid_t got;
    while ((got = waitpid(pid, &status, WNOHANG)) == 0 && clock_mono_ms() < end && !atomic_load(&a->stop)) {
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (got == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        if (atomic_load(&a->stop))
            snprintf(why, whylen, "stopped with the gateway");
        else
            snprintf(why, whylen, "still running after %d s: killed", EDGE_ALERT_TIMEOUT_MS / 1000);
        return -1;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    if (WIFEXITED(status))
        snprintf(why, whylen, "exit status %d%s", WEXITSTATUS(status),
                 WEXITSTATUS(status) == 127 ? " (command not found)" : "");
    else
        snprintf(why, whylen, "killed by signal %d", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    return -1;
}

/* One pass over the inbox: true when something is left to retry. */
static bool announce_round(edge_alerter *a)
{
    round_ctx r = {a, NULL, 0, 0};
    spool_inbox_list(a->sp, collect, &r);
    bool left = false;
    for (size_t i = 0; i < r.n && !atomic_load(&a->stop); i++) {
        char why[160];
        if (run_one(a, &r.p[i], why, sizeof why) == 0) {
            int rc = spool_alert_set_announced(a->sp, r.p[i].id, clock_wall_ms());
            log_info("on-alert: announced alert %s%s", r.p[i].id,
                     rc < 0 ? " (not recorded in the spool: it may be announced again)" : "");
            continue;
        }
        left = true;
        if (atomic_load(&a->stop))
            break; /* not a failure of the command: announced at the next start */
        char reason[448];
        snprintf(reason, sizeof reason, "%s: %s", r.p[i].id, why);
        if (log_repeat_due(&a->told, reason, 60000))
            log_error("on-alert: the command failed for alert %s (%s); trying again every %d s — until it works, "
                      "nobody at the clinic is told of this alert by it ('dxhub reports' lists it)",
                      r.p[i].id, why, EDGE_ALERT_RETRY_MS / 1000);
    }
    free(r.p);
    return left;
}

static void *alert_main(void *arg)
{
    edge_alerter *a = arg;
    pthread_mutex_lock(&a->mu);
    while (!a->stop) {
        a->kicked = false;
        pthread_mutex_unlock(&a->mu);
        bool left = announce_round(a);
        pthread_mutex_lock(&a->mu);
        /* a retry after a failure, else the next alert (or a minute: a kick lost costs no more) */
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += left ? EDGE_ALERT_RETRY_MS / 1000 : 60;
        while (!a->kicked && !a->stop)
            if (pthread_cond_timedwait(&a->cv, &a->mu, &until) == ETIMEDOUT)
                break;
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

int edge_alerter_start(spool *sp, const char *cmd, edge_alerter **out, char *err, size_t errlen)
{
    edge_alerter *a = calloc(1, sizeof *a);
    if (!a || !(a->cmd = strdup(cmd))) {
        free(a);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    a->sp = sp;
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    if (pthread_create(&a->thread, NULL, alert_main, a) != 0) {
        snprintf(err, errlen, "cannot start the on-alert thread");
        pthread_mutex_destroy(&a->mu);
        pthread_cond_destroy(&a->cv);
        free(a->cmd);
        free(a);
        return -EAGAIN;
    }
    *out = a;
    return 0;
}

void edge_alerter_kick(edge_alerter *a)
{
    if (!a)
        return;
    pthread_mutex_lock(&a->mu);
    a->kicked = true;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

void edge_alerter_stop(edge_alerter **ap)
{
    if (!ap || !*ap)
        return;
    edge_alerter *a = *ap;
    pthread_mutex_lock(&a->mu);
    a->stop = true;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
    pthread_join(a->thread, NULL);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    free(a->cmd);
    free(a);
    *ap = NULL;
}
