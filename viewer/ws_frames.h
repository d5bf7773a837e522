/* ws_frames.h — an in-memory LRU of decoded frames (private to viewer/):
 * what /frames answered for a compressed instance, so scrolling back over
 * a JPEG-LS or JPEG 2000 series does not decode again.  Bounded in bytes;
 * thread-safe. */
#ifndef DXHUB_WS_FRAMES_H
#define DXHUB_WS_FRAMES_H

#include <stddef.h>
#include <stdint.h>

typedef struct ws_frame_info {
    uint32_t rows, cols;
    uint8_t  bits, samples, is_signed;
    char     photometric[24];
} ws_frame_info;

typedef struct ws_frames ws_frames;

ws_frames *ws_frames_new(size_t max_bytes); /* NULL on no memory */
void       ws_frames_free(ws_frames **f);   /* NULL-safe; NULLs *f */
/* A malloc'd copy of the frame (the caller frees *copy), or -1 when absent. */
int  ws_frames_get(ws_frames *f, const char *sop, uint32_t frame, ws_frame_info *info, void **copy, size_t *len);
void ws_frames_put(ws_frames *f, const char *sop, uint32_t frame, const ws_frame_info *info, const void *p,
                   size_t len);
/* 1 when the frame is kept. */
int  ws_frames_has(ws_frames *f, const char *sop, uint32_t frame);
/* 1 when len more bytes fit without evicting anything. */
int  ws_frames_room(ws_frames *f, size_t len);
void ws_frames_stats(ws_frames *f, uint64_t *hits, uint64_t *misses, size_t *bytes);

#endif
