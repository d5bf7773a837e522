/* pn_match.h — a Person Name matched against a QIDO-RS pattern: DICOM's
 * wildcard matching (PS3.4 C.2.2.2.4): '*' any run of characters, '?' one
 * character (a whole UTF-8 sequence), ASCII letters compared without
 * case, everything else as it is.  Pure; hub-private. */
#ifndef DXHUB_PN_MATCH_H
#define DXHUB_PN_MATCH_H

#include <stdbool.h>

bool pn_match(const char *pattern, const char *name);

#endif
