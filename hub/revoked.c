/* revoked.c — see revoked.h. */
#include <stdio.h>
#include <string.h>
#include "hub/clock.h"
#include "hub/revoked.h"

#define REVOKED_TELL_MS 60000

static unsigned slot_of(const char *s, unsigned n)
{
    unsigned h = 2166136261u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % n;
}

static void tell(revoked_watch *w, const proto_msg *m)
{
    hub_count_error(w->metrics, HUB_ERR_AUTH);
    log_repeat *r = &w->told[slot_of(m->role, REVOKED_TOLD)];
    if (!log_repeat_due(r, m->role, REVOKED_TELL_MS))
        return;
    log_warn("%s: refused %s from %s at %s: its key %s was revoked after it connected", w->port, m->cmd, m->role,
             m->peer[0] ? m->peer : "?", m->key);
    if (w->st) {
        char detail[160];
        snprintf(detail, sizeof detail, "%s port: key %s, %s", w->port, m->key, m->cmd);
        store_audit(w->st, clock_wall_ms(), m->role, "revoked-key", "", detail);
    }
}

bool revoked_refuse(revoked_watch *w, const proto_msg *m)
{
    if (!w->allow || !m->role[0])
        return false; /* no allow-list here, or no ZAP role: the role checks refuse it */
    uint64_t gen = allowlist_gen(w->allow);
    if (gen != w->gen) { /* reloaded: every verdict is taken again */
        memset(w->allowed, 0, sizeof w->allowed);
        w->gen = gen;
    }
    unsigned i = slot_of(m->key, REVOKED_CACHE);
    if (m->key[0] && !strcmp(w->allowed[i].key, m->key) && !strcmp(w->allowed[i].role, m->role))
        return false;
    if (m->key[0] && allowlist_allows(w->allow, m->key, m->role)) {
        snprintf(w->allowed[i].key, sizeof w->allowed[i].key, "%s", m->key);
        snprintf(w->allowed[i].role, sizeof w->allowed[i].role, "%s", m->role);
        return false;
    }
    tell(w, m);
    return true;
}

void revoked_answer(void *router, proto_msg *m)
{
    if (!m->has_route)
        return;
    json_t *h = json_pack("{s:s,s:s,s:b}", "error", REVOKED_REASON, "to", m->cmd, "revoked", 1);
    static const char *const echoed[] = {"req", "id"};
    for (size_t i = 0; h && m->hdr && i < 2; i++) {
        json_t *v = json_object_get(m->hdr, echoed[i]);
        if (json_is_integer(v))
            json_object_set(h, echoed[i], v);
    }
    if (h)
        proto_send(router, &m->route, "ERROR", h, NULL, 0);
    json_decref(h);
}
