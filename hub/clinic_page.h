/* clinic_page.h — the clinic's page: the reports and alerts the hub sent
 * back, for the nurse's browser (`dxhub reports --serve`).  A critical
 * value (危急值) stays at the top until a person confirms reading it on the
 * page, which the gateway then tells the hub; a signed report opens only
 * once its signature verifies against the clinic's trust list.
 *
 * It listens on a 127.x.x.x address only (plain HTTP carrying patient
 * data), answers only a browser that opened the page's link (a random
 * token kept in the gateway's data folder, then a same-site cookie), and
 * records each item it shows in the gateway's audit trail before showing
 * it.  One thread answers every request, so the spool is used from one
 * thread.  Hub-private. */
#ifndef DXHUB_CLINIC_PAGE_H
#define DXHUB_CLINIC_PAGE_H

typedef struct clinic_page_opts {
    const char *edge_data; /* the gateway's --data */
    const char *trust_dir; /* the consortium's CA certificates and CRLs, read afresh for each report shown */
    const char *bind;      /* a 127.x.x.x address */
    int         port;      /* 0: any free port */
    int         days;      /* the list shows what arrived in the last days (and every unread alert) */
} clinic_page_opts;

/* Serves until SIGINT or SIGTERM: the exit status (0, or 1 with the
 * reason on stderr when it cannot start). */
int clinic_page_serve(const clinic_page_opts *o);

#endif
