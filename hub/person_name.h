/* person_name.h — a DICOM PN (PS3.5 6.2) as people read it, on the
 * printed report and the clinic's list alike: 张^三丰=Zhang^Sanfeng reads
 * "张三丰 / Zhang Sanfeng".  Hub-private. */
#ifndef DXHUB_PERSON_NAME_H
#define DXHUB_PERSON_NAME_H

#include <stddef.h>

/* Components joined by spaces, except between two CJK characters;
 * representations by " / ".  out is always NUL-terminated. */
void person_name_readable(const char *pn, char *out, size_t n);

#endif
