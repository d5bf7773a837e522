/* main_signals.c — see main_signals.h. */
#include <pthread.h>
#include "hub/main_signals.h"
#include "codecs/banned.h"

void main_signals_block(sigset_t *sigs)
{
    sigemptyset(sigs);
    sigaddset(sigs, SIGINT);
    sigaddset(sigs, SIGTERM);
    sigaddset(sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
}
