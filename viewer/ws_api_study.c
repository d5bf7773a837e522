/* ws_api_study.c — GET /api/tasks/{id}/study: the study as the viewer lays
 * it out (ws_view.c builds it once per task and keeps it). */
#include <stdlib.h>
#include "viewer/ws_http.h"
#include "codecs/banned.h"

void ws_api_study(ws_req *r, ws_resp *o)
{
    ws *w = r->w;
    int i = ws_api_task(r, o, 1); /* offers too: the page loads the best ones ahead of a claim */
    if (i < 0)
        return;
    uint64_t id = w->tasks[i].t.id;
    pthread_mutex_unlock(&w->mu);
    char *json, err[600];
    size_t len;
    int status = ws_view_get(w, id, &json, &len, err, sizeof err);
    if (status) {
        ws_error(o, status, "%s", err);
        return;
    }
    ws_bytes(o, 200, "application/json; charset=utf-8", json, len);
}
