/* store_state.c — a study's state by name, as the API and the logs spell
 * it (see store.h); alone so code that only reads names (the API's query
 * parser, its fuzz target) needs nothing of LMDB. */
#include <string.h>
#include "hub/store.h"
#include "codecs/banned.h"

static const char *const state_names[STUDY_STATE_COUNT] = {
    "receiving", "complete", "queued", "reading", "reported", "signed"};

const char *study_state_name(study_state st)
{
    return (unsigned)st < STUDY_STATE_COUNT ? state_names[st] : "unknown";
}

int study_state_parse(const char *name)
{
    for (int i = 0; i < STUDY_STATE_COUNT; i++)
        if (!strcmp(state_names[i], name))
            return i;
    return -1;
}
