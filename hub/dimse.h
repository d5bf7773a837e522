/* dimse.h — the hub's DICOM network adapter: a C-ECHO / C-STORE SCP.
 *
 * Hub-private. The only C++ in hub/ lives behind this header (hub/dimse.cc,
 * over DCMTK dcmnet); no C++ type crosses it and every entry point catches
 * all C++ exceptions.
 *
 * What it does
 *   - listens on cfg->bind_addr:cfg->port (that address only), TCP_NODELAY on
 *     every accepted socket whatever the environment says;
 *   - one thread per association, at most cfg->max_assocs at once; beyond
 *     that a request is rejected with A-ASSOCIATE-RJ "local limit exceeded"
 *     (transient; up to 4 such rejections in flight, further connections are
 *     closed at once);
 *   - accepts Verification and every storage SOP class DCMTK knows, and any
 *     other well-formed SOP class UID DCMTK does not know (private and newer
 *     storage classes); refuses SOP classes DCMTK knows as non-storage
 *     (query/retrieve, worklist, MPPS, commitment ...);
 *   - accepts, per presentation context, the first proposed transfer syntax
 *     that is in its table (implicit/explicit LE, explicit BE, deflated,
 *     JPEG .50 .51 .57 .70, JPEG-LS .80 .81, JPEG 2000 .90 .91, HTJ2K .201
 *     .202 .203, RLE .5, deflated image frame .8.1): the sender's own
 *     preference, never a conversion;
 *   - streams each C-STORE data set, bit for bit as it came off the wire, to
 *     <spool_dir>/rx-<random>.dcm.part behind a Part 10 meta header (one PDU
 *     in memory at a time), then calls cfg->store and only after it returns
 *     sends the C-STORE-RSP;
 *   - or, when cfg->mem_instance_max is set, collects the same bytes in a
 *     buffer of the association while they fit (a bigger instance spills
 *     to the spool file at that point and goes on there): no file written,
 *     read back and deleted per instance. The buffers of all associations
 *     together stay within cfg->mem_budget; an association that finds none
 *     left spools;
 *   - with cfg->digest_dataset, hashes the data set (SHA-256, digest.h) PDV by
 *     PDV as it arrives, so the store need not read it again for that;
 *   - with cfg->tls_cert, speaks DICOM TLS only (DCMTK dcmtls, BCP 195
 *     non-downgrading), asking callers for a certificate from cfg->tls_ca
 *     when given; a failed handshake is logged and costs no association;
 *   - cuts a connection that has not delivered its A-ASSOCIATE-RQ within
 *     cfg->acse_timeout_s (TLS handshake included), so silent callers
 *     cannot hold the max_assocs slots.
 *
 * Threads: cfg->accept and cfg->store run on the association's thread, up to
 * max_assocs of them at once; they must be thread-safe. cfg->log likewise.
 *
 * Process-wide side effects (DCMTK's, done once): SIGPIPE is ignored, DCMTK's
 * dcmnet logger is switched off (it would print AE titles and UIDs), reverse
 * DNS lookup of peers is disabled (dcmDisableGethostbyaddr). Incoming sockets
 * are handed to DCMTK through its process-global dcmExternalSocketHandle under
 * a lock held for a few system calls; another DCMTK *acceptor* in the same
 * process must not use that global at the same time (requestors are fine).
 */
#ifndef DXHUB_HUB_DIMSE_H
#define DXHUB_HUB_DIMSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes: 0 or negative. System errors pass through as -errno; the
 * adapter's own lie in [-4099, -4000]. */
enum {
    DIMSE_ELIB = -4001,    /* DCMTK failed, or threw, during start-up */
};
/* Message for a code returned by dimse_scp_start(); never NULL, static. */
const char *dimse_strerror(int code);

/* DIMSE status codes the store callback typically returns (PS3.4 B.2.3). */
enum {
    DIMSE_STATUS_SUCCESS           = 0x0000,
    DIMSE_STATUS_OUT_OF_RESOURCES  = 0xA700,
    DIMSE_STATUS_DATASET_MISMATCH  = 0xA900,  /* data set does not match SOP class */
    DIMSE_STATUS_CANNOT_UNDERSTAND = 0xC000,
};

/* What the accept callback returns (anything else non-zero: rejected
 * permanently, "no reason given"). */
enum {
    DIMSE_ACCEPT = 0,
    DIMSE_REJECT_CALLING_AE = 1,   /* calling AE title not recognised */
    DIMSE_REJECT_CALLED_AE  = 2,   /* called AE title not recognised */
};

/* Our listeners' rule (dimse_accept.c): the called AE must be our_aet, the
 * calling AE in the comma-separated allow_list unless open.  Returns
 * DIMSE_ACCEPT or a DIMSE_REJECT_* with the reason. */
int dimse_check_aets(const char *our_aet, const char *allow_list, int open, const char *calling, const char *called,
                     char *reason, size_t reason_len);

/* The DICOM TLS settings (dimse_tls.c): none, or a certificate and its
 * key that pki_tls_server_load accepts, and, when given, a readable PEM
 * file of CA certificates.  0, or a negative code with the reason, naming
 * the setting (dicom-tls-cert, dicom-tls-key, dicom-tls-ca) and file.
 * *not_after (may be NULL): the certificate's end (Unix seconds), 0
 * without TLS; a certificate ending within DIMSE_TLS_WARN_DAYS is logged
 * as a warning. */
#define DIMSE_TLS_WARN_DAYS 30
int dimse_tls_check(const char *cert, const char *key, const char *ca, int64_t *not_after, char *err, size_t errlen);

/* The same three settings as rows of a role's option table (hub/config.h),
 * so the hub and the clinic edge name and describe them alike; each
 * argument is the offset of that setting in the role's settings. */
#define DIMSE_TLS_OPTIONS(cert_off, key_off, ca_off)                                                             \
    {"dicom", "dicom-tls-cert", CFG_STRING, cert_off, NULL, 0, 0, NULL, "FILE",                                 \
     "DICOM TLS (BCP 195) on the DICOM port with this certificate (PEM; ECDSA, RSA or Ed25519)"},               \
    {"dicom", "dicom-tls-key", CFG_STRING, key_off, NULL, 0, 0, NULL, "FILE",                                   \
     "its private key (PEM, unencrypted, not readable by other users)"},                                        \
    {"dicom", "dicom-tls-ca", CFG_STRING, ca_off, NULL, 0, 0, NULL, "FILE",                                     \
     "with TLS, callers must present a certificate from a CA in FILE (PEM): modalities authenticated by "       \
     "certificate"}

typedef struct dimse_scp dimse_scp;

/* One received instance. Every string is borrowed for the duration of the
 * callback only. AE titles have their padding spaces removed. */
typedef struct dimse_store_req {
    const char *calling_aet, *called_aet, *peer_ip;
    const char *sop_class_uid, *sop_instance_uid;   /* from the C-STORE-RQ */
    const char *transfer_syntax_uid;   /* as negotiated for the presentation context */
    const char *path;   /* a complete Part 10 file (meta header + the data set
                           exactly as sent) in spool_dir; the callback takes
                           ownership: it renames or deletes it. "" when the
                           file is in memory (data) */
    const unsigned char *data;   /* non-NULL: the same Part 10 file in memory
                                    (size bytes), borrowed for the callback */
    uint64_t    size;   /* bytes of that file */
    uint64_t    dataset_offset;   /* where the data set starts in it */
    const uint8_t *dataset_sha256;   /* SHA-256 of the data set bytes (from
                                        dataset_offset on) with
                                        cfg->digest_dataset, else NULL */
    void       *early_state;   /* what cfg->early kept for this instance */
} dimse_store_req;

/* Returns the DIMSE status for the C-STORE-RSP; may write a NUL-terminated
 * comment into comment[comment_len] (sent as Error Comment (0000,0902) with a
 * non-success status only: cut to 64 characters, backslash and controls
 * become spaces, non-ASCII bytes '?'). Not called when the data set could not
 * be received or spooled (the sender then gets 0xA700 or the association is
 * aborted, and the partial file is deleted). Runs on the
 * association's thread and may block: the response is sent after it returns,
 * so commit to durable storage before returning success. */
typedef uint16_t (*dimse_store_fn)(void *ctx, const dimse_store_req *req,
                                   char *comment, size_t comment_len);

/* Optional, with mem_instance_max: while an instance arrives in memory,
 * every further early_bytes of its file (from offset 0, meta header
 * included) are handed over at once, so that the callback may start
 * writing them; p stays valid and unchanged until cfg->early_end returns.
 * *state is NULL at the first call for an instance; the callback keeps
 * what it needs there (given back in dimse_store_req.early_state).  Once an
 * instance spills to the spool file, no more calls for it. */
typedef void (*dimse_early_fn)(void *ctx, void **state, const unsigned char *p, uint64_t offset, size_t n);
/* The instance whose early calls set state is done with (stored, refused
 * or broken off; after cfg->store when that was called): release state. */
typedef void (*dimse_early_end_fn)(void *ctx, void *state);

/* Decides on an association request: DIMSE_ACCEPT or a DIMSE_REJECT_*; may
 * write a reason into reason[reason_len] for the log. */
typedef int (*dimse_accept_fn)(void *ctx, const char *calling_aet,
                               const char *called_aet, const char *peer_ip,
                               char *reason, size_t reason_len);

/* Association events for the operator (accepted, rejected and why, aborted,
 * receive failures). One line, no patient data: AE titles, addresses, DIMSE
 * statuses and DCMTK's condition texts only. */
typedef void (*dimse_log_fn)(void *ctx, const char *msg);

/* An instance that could not be written to spool_dir (cfg->store is not
 * called for it; the sender gets 0xA700).  disk_full: for want of room on
 * its file system (disk.h), else another failure; msg names the file and
 * the error.  For the operator's counters and log. */
typedef void (*dimse_spool_failed_fn)(void *ctx, const char *calling_aet, bool disk_full, const char *msg);

typedef struct dimse_config {
    const char *bind_addr;   /* numeric address or host name; NULL or "": "127.0.0.1" */
    uint16_t    port;        /* 0: an ephemeral port, see dimse_scp_port() */
    const char *aet;         /* our AE title, 1..16 characters */
    const char *spool_dir;   /* must exist; received files are written here */
    int         max_assocs;  /* concurrent associations; 0: 16 (max 1024) */
    uint32_t    max_pdu;     /* max PDU we receive; 0: 116794; clamped to
                                DCMTK's 4096..131072 */
    int         acse_timeout_s;   /* association negotiation; 0: 30 */
    int         dimse_timeout_s;  /* silence tolerated between or within
                                     messages before aborting; 0: 120 */
    int         stop_grace_ms;    /* dimse_scp_stop() waits this long for
                                     peers to finish before cutting them
                                     off; 0: 5000 */
    size_t      mem_instance_max; /* instances up to this many bytes (meta
                                     header included) reach cfg->store in
                                     memory; 0: always spooled */
    size_t      mem_budget;       /* bytes of such buffers at once, all
                                     associations together (each holds
                                     mem_instance_max while it lasts);
                                     0: 4 x mem_instance_max */
    int         digest_dataset;   /* non-zero: fill dataset_sha256 */
    size_t      early_bytes;      /* with early: hand-over unit, > 0 */
    dimse_early_fn     early;     /* optional */
    dimse_early_end_fn early_end; /* required with early */
    /* NULL accept: every calling AE, called AE must equal aet. */
    dimse_accept_fn accept;
    dimse_store_fn  store;   /* required */
    dimse_log_fn    log;     /* optional */
    dimse_spool_failed_fn spool_failed; /* optional; without it, cfg->log hears of it */
    void           *ctx;     /* passed to the callbacks */
    /* DICOM TLS (PS3.15 Annex B; BCP 195, TLS 1.2 or later): with
     * tls_cert and tls_key (PEM, the key unencrypted) every association is
     * TLS; with tls_ca too, a caller must present a certificate that
     * chains to a CA in that PEM file. */
    const char     *tls_cert, *tls_key, *tls_ca;
} dimse_config;

/* Validates cfg, initialises DCMTK once, binds and starts the listener
 * thread; returns once connections are being accepted. The strings of cfg
 * are copied. Returns 0 and *out, or a negative code with a message in
 * err[errlen] (err may be NULL). */
int dimse_scp_start(const dimse_config *cfg, dimse_scp **out, char *err, size_t errlen);

/* The TCP port actually bound (the ephemeral one when cfg->port was 0). */
uint16_t dimse_scp_port(const dimse_scp *s);

/* Closes the listening socket, gives running associations stop_grace_ms to
 * finish, then shuts their sockets down (a data set being received is
 * discarded; a store callback already running is waited for), frees the
 * handle and sets *s to NULL. NULL or *s == NULL: no-op. Never call it from
 * one of the callbacks: it waits for them. */
void dimse_scp_stop(dimse_scp **s);

#ifdef __cplusplus
}
#endif

#endif /* DXHUB_HUB_DIMSE_H */
