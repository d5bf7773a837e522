/* banned.h — functions we do not call (git's idea): an unbounded copy or
 * format is a buffer overflow waiting for an odd DICOM file.  Included
 * last by every private header, after the system headers. */
#ifndef DXHUB_BANNED_H
#define DXHUB_BANNED_H
#define BANNED(func) sorry_##func##_is_banned_use_snprintf_or_memcpy
#undef strcpy
#define strcpy(x, y) BANNED(strcpy)
#undef strcat
#define strcat(x, y) BANNED(strcat)
#undef sprintf
#define sprintf(...) BANNED(sprintf)
#undef vsprintf
#define vsprintf(...) BANNED(vsprintf)
#undef gets
#define gets(x) BANNED(gets)
#undef strtok
#define strtok(x, y) BANNED(strtok)
#endif
