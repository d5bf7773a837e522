/* b64.h — base64 (RFC 4648) for carrying exact bytes inside JSON. */
#ifndef DXHUB_B64_H
#define DXHUB_B64_H

#include <stddef.h>
#include <stdint.h>

/* NUL-terminated, malloc'd; NULL on allocation failure. */
char *base64_encode(const uint8_t *p, size_t n);
/* Decode into a malloc'd buffer (*out, *n); -1 on invalid input. */
int   base64_decode(const char *s, size_t len, uint8_t **out, size_t *n);

#endif
