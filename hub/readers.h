/* readers.h — reader profiles (who reads what) from the hub's readers
 * file, one reader per line:
 *     # id      seniority  modalities   kinds        facilities  max
 *     dr-wang   attending  CT,DX,CR,MR  imaging      *           3
 *     dr-li     attending  ECG          ecg          *           2
 *     res-zhao  resident   DX,CR        imaging      clinic1     2
 * kinds: imaging, ecg or imaging,ecg.  The reader's CURVE key is allowed
 * separately (allow.txt, role reader:<id>).  Hub-private. */
#ifndef DXHUB_READERS_H
#define DXHUB_READERS_H

#include <stddef.h>
#include "worklist/worklist.h"

typedef struct readers readers;
readers *readers_new(void);
void     readers_free(readers **r);
/* (Re)load; keeps the old profiles on error.  Thread-safe. */
int      readers_load(readers *r, const char *path, char *err, size_t errlen);
/* Copy reader id's profile into out: 0, or -1 when unknown. */
int      readers_find(readers *r, const char *id, wl_reader *out);
size_t   readers_count(readers *r);

#endif
