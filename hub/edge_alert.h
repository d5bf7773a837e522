/* edge_alert.h — the clinic gateway's on-alert command (edge_alert.c says
 * what it is given and when it runs).  Hub-private. */
#ifndef DXHUB_EDGE_ALERT_H
#define DXHUB_EDGE_ALERT_H

#include <stdbool.h>
#include <stddef.h>
#include "hub/spool.h"

typedef struct edge_alerter edge_alerter;
/* A thread that runs cmd (through /bin/sh -c) once for each alert of sp's
 * inbox not yet announced; it looks at start, at each kick and every minute. */
int  edge_alerter_start(spool *sp, const char *cmd, edge_alerter **out, char *err, size_t errlen);
/* An alert arrived (the link, after it is durable in the spool).  NULL-safe. */
void edge_alerter_kick(edge_alerter *a);
/* Stops; a command under way is killed (its alert is announced at the next
 * start).  NULL-safe; NULLs *a. */
void edge_alerter_stop(edge_alerter **a);

#endif
