/* main_signals.h — a role whose main loop takes its signals synchronously
 * (sigtimedwait/sigwaitinfo): serve and edge (hub/main_signals.c). */
#ifndef HUB_MAIN_SIGNALS_H
#define HUB_MAIN_SIGNALS_H

#include <signal.h>

/* Blocks SIGINT, SIGTERM and SIGHUP in the calling thread, sets SIGPIPE
 * to ignored, and fills sigs with the three for the main loop to wait on.
 * Call before the first thread starts: threads inherit the mask, and a
 * thread that had these unblocked would take one with the default action
 * (the end of the process) whenever the main loop was busy. */
void main_signals_block(sigset_t *sigs);

#endif
