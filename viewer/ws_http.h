/* ws_http.h — the workstation's HTTP layer (private to viewer/): ws_http.c
 * owns libmicrohttpd (listening on 127.0.0.1, the token, request bodies,
 * static files); handlers (ws_api*.c) see only a ws_req and fill a ws_resp.
 * The routes and their answers are viewer/API.md. */
#ifndef DXHUB_WS_HTTP_H
#define DXHUB_WS_HTTP_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include "viewer/ws.h"

#define WS_BODY_MAX   (1u << 20) /* a request body (JSON) */
#define WS_MAX_ARGS   3
#define WS_MAX_HEADERS 8

typedef struct ws_req {
    ws         *w;
    const char *method, *path;
    const char *args[WS_MAX_ARGS]; /* the {..} segments of the route, NUL-terminated */
    const char *body;              /* NUL-terminated; body_len without the NUL */
    size_t      body_len;
    void       *conn;              /* for ws_req_query */
} ws_req;

/* A streamed body (text/event-stream): fills buf, returns bytes, 0 to
 * wait again, -1 at the end.  free_ctx releases ctx. */
typedef long (*ws_stream_fn)(void *ctx, char *buf, size_t max);

typedef struct ws_resp {
    int         status;
    const char *type;               /* static string */
    char       *body;               /* malloc'd, or NULL */
    size_t      len;
    int         n_headers;
    char        headers[WS_MAX_HEADERS][2][1024];
    ws_stream_fn stream;
    void        *stream_ctx;
    void        (*stream_free)(void *ctx);
} ws_resp;

/* A query parameter ("" when absent). */
const char *ws_req_query(const ws_req *r, const char *name);

/* Responses: JSON (takes the reference of j), an error {"error": why}, bytes. */
void ws_json(ws_resp *o, int status, json_t *j);
void ws_error(ws_resp *o, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void ws_bytes(ws_resp *o, int status, const char *type, void *p, size_t n); /* takes p (malloc'd) */
void ws_header(ws_resp *o, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The body parsed as a JSON object, or NULL with a 400 already in o. */
json_t *ws_body_json(const ws_req *r, ws_resp *o);

/* The route table (ws_api.c): fills o; 404 when no route matches. */
void ws_api_route(ws_req *r, ws_resp *o);

/* Handlers by file. */
void ws_api_session(ws_req *r, ws_resp *o);
void ws_api_unlock(ws_req *r, ws_resp *o);
void ws_api_tasks(ws_req *r, ws_resp *o);
void ws_api_claim(ws_req *r, ws_resp *o);
void ws_api_release(ws_req *r, ws_resp *o);
void ws_api_templates(ws_req *r, ws_resp *o);
void ws_api_priors(ws_req *r, ws_resp *o);   /* ws_api_review.c */
void ws_api_prior(ws_req *r, ws_resp *o);
void ws_api_review(ws_req *r, ws_resp *o);
void ws_api_events(ws_req *r, ws_resp *o);
void ws_api_study(ws_req *r, ws_resp *o);     /* ws_api_study.c */
void ws_api_compare(ws_req *r, ws_resp *o);   /* ws_compare.c */
void ws_api_frame(ws_req *r, ws_resp *o);     /* ws_api_pixels.c */
void ws_api_ecg(ws_req *r, ws_resp *o);       /* ws_api_pixels.c */
void ws_api_draft_get(ws_req *r, ws_resp *o); /* ws_api_report.c */
void ws_api_draft_put(ws_req *r, ws_resp *o);
void ws_api_submit(ws_req *r, ws_resp *o);
void ws_api_signed(ws_req *r, ws_resp *o);
void ws_api_alert(ws_req *r, ws_resp *o);

/* A held (or offered, with offered_ok) task's id from args[0]: the index
 * in w->tasks with mu held (the caller unlocks), or -1 with o filled. */
int ws_api_task(ws_req *r, ws_resp *o, int offered_ok);
/* args[0] as a task id: 0, or -1 with a 400 in o. */
int ws_api_task_id(ws_req *r, ws_resp *o, uint64_t *id);

/* The HTTP server. */
typedef struct ws_http ws_http;
/* 0 when bind is an address the viewer may listen on (IPv4 loopback:
 * its plain HTTP carries patient data and the signing passphrase), else
 * a negative errno with the reason in err. */
int  ws_http_bind_check(const char *bind, char *err, size_t errlen);
int  ws_http_start(ws *w, const char *bind, int port, const char *web_dir, ws_http **out, int *port_out, char *err,
                   size_t errlen);
void ws_http_stop(ws_http **h);

#endif
