/* api_file.h — instance bytes over HTTP (hub/api_file.c).  Private to the
 * HTTP API's files; libmicrohttpd's response type is only named here. */
#ifndef DXHUB_API_FILE_H
#define DXHUB_API_FILE_H

#include <stdint.h>
#include "hub/store.h"

struct MHD_Response;

/* A Range header against a file of size bytes.  Returns 1 with the one
 * range to send in *off and *len; 0 when the header is absent, malformed or
 * asks for several ranges (send the whole file, as RFC 9110 allows);
 * -1 when unsatisfiable (answer 416). */
int api_parse_range(const char *hdr, uint64_t size, uint64_t *off, uint64_t *len);

/* A response that streams len bytes of the instance from off, one block
 * at a time through store_read_instance.  The instance record is copied;
 * the store is borrowed until the response is destroyed.  NULL on OOM. */
struct MHD_Response *api_file_response(store *st, const store_instance *in, uint64_t off, uint64_t len);

#endif
