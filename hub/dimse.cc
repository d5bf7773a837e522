/* dimse.cc — C-ECHO / C-STORE SCP over DCMTK dcmnet (see hub/dimse.h).
 *
 * Division of labour with DCMTK 3.6.7:
 *   - DCMTK (ASC_*, DUL_*) does association negotiation and PDU framing:
 *     A-ASSOCIATE-RQ/AC/RJ, P-DATA-TF, A-RELEASE, A-ABORT, PDU size limits.
 *   - This file owns the socket (bind to one address, TCP_NODELAY), the
 *     threads, and the two DIMSE exchanges it serves. It reads and writes the
 *     DIMSE command sets itself (PS3.7 §9.3, §E: implicit VR little endian,
 *     a handful of group 0000 elements) instead of calling DIMSE_receiveCommand
 *     / DIMSE_storeProvider, because those refuse any presentation context
 *     whose transfer syntax DCMTK 3.6.7 does not know ("DIMSE Unsupported
 *     transfer syntax"): HTJ2K (.4.201-.203) and Deflated Image Frame (.8.1)
 *     could not be received at all. Data set PDVs go to the spool file
 *     untouched, which is also what storescp --bit-preserving does.
 *
 * Handing an accepted socket to DCMTK: 3.6.7's ASC_initializeNetwork can only
 * listen on INADDR_ANY, so we listen ourselves and pass each accepted socket
 * through DCMTK's global dcmExternalSocketHandle (the inetd/fork hand-over).
 * The global is read once, at the start of DUL's receiveTransportConnectionTCP,
 * which then calls the network's transport layer createConnection(); our
 * layer clears the global and drops the lock there. So the lock covers a few
 * system calls (getpeername, setsockopt), not the peer's A-ASSOCIATE-RQ.
 */
#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmnet/assoc.h"
#include "dcmtk/dcmnet/cond.h"
#include "dcmtk/dcmnet/dcmlayer.h"
#include "dcmtk/dcmnet/dcmtrans.h"
#include "dcmtk/dcmnet/dul.h"
#include "dcmtk/dcmtls/tlslayer.h"
#include <openssl/err.h>
#include <openssl/ssl.h>
#include "dcmtk/oflog/oflog.h"

#include "hub/dimse.h"
extern "C" {
#include "hub/digest.h"
#include "hub/disk.h"
#include "hub/pki.h"
}

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <new>

/* ---- limits and defaults ------------------------------------------------ */

enum {
    DIMSE_DEFAULT_ASSOCS   = 16,
    DIMSE_MAX_ASSOCS       = 1024,
    DIMSE_REJECT_SLOTS     = 4,       /* threads that only send "local limit exceeded" */
    DIMSE_DEFAULT_PDU      = 116794,  /* storescp's default */
    DIMSE_DEFAULT_ACSE_S   = 30,
    DIMSE_DEFAULT_DIMSE_S  = 120,
    DIMSE_DEFAULT_GRACE_MS = 5000,
    DIMSE_DROP_WAIT_S      = 2,       /* after release: let the peer close first */
    DIMSE_LISTEN_BACKLOG   = 64,
    DIMSE_THREAD_STACK     = 1 << 20,
    DIMSE_CMD_MAX          = 16384,   /* a command set is a few hundred bytes */
    DIMSE_UID_MAX          = 64,      /* PS3.5 §9.1 */
    DIMSE_AE_MAX           = 16,
    DIMSE_COMMENT_MAX      = 64,      /* Error Comment is LO */
    DIMSE_META_MAX         = 1024,
    DIMSE_PATH_MAX         = 4096,
    DIMSE_SPOOL_DIR_MAX    = DIMSE_PATH_MAX - 64,
};

#define DIMSE_DEFAULT_BIND "127.0.0.1"

/* dxhub's implementation class UID for files it writes (PS3.5 §B.2: UUID
 * derived), and its version name (SH, at most 16 characters). */
static const char DIMSE_IMPL_CLASS_UID[] = "2.25.195486485352944700671938280730139929525";
static const char DIMSE_IMPL_VERSION[] = "DXHUB_DIMSE_1";

/* Transfer syntaxes accepted as proposed (PS3.5 §10, Annex A). Stored bytes
 * are what the sender sent; decoding them is codecs/' business. */
static const struct { const char *uid, *name; } dimse_ts_table[] = {
    { "1.2.840.10008.1.2",        "Implicit VR Little Endian" },
    { "1.2.840.10008.1.2.1",      "Explicit VR Little Endian" },
    { "1.2.840.10008.1.2.2",      "Explicit VR Big Endian (retired)" },
    { "1.2.840.10008.1.2.1.99",   "Deflated Explicit VR Little Endian" },
    { "1.2.840.10008.1.2.4.50",   "JPEG Baseline (Process 1)" },
    { "1.2.840.10008.1.2.4.51",   "JPEG Extended (Process 2 & 4)" },
    { "1.2.840.10008.1.2.4.57",   "JPEG Lossless (Process 14)" },
    { "1.2.840.10008.1.2.4.70",   "JPEG Lossless SV1" },
    { "1.2.840.10008.1.2.4.80",   "JPEG-LS Lossless" },
    { "1.2.840.10008.1.2.4.81",   "JPEG-LS Near-Lossless" },
    { "1.2.840.10008.1.2.4.90",   "JPEG 2000 Lossless" },
    { "1.2.840.10008.1.2.4.91",   "JPEG 2000" },
    { "1.2.840.10008.1.2.4.201",  "HTJ2K Lossless" },
    { "1.2.840.10008.1.2.4.202",  "HTJ2K Lossless RPCL" },
    { "1.2.840.10008.1.2.4.203",  "HTJ2K" },
    { "1.2.840.10008.1.2.5",      "RLE Lossless" },
    { "1.2.840.10008.1.2.8.1",    "Deflated Image Frame Compression" },
};

/* DIMSE command fields and statuses used here (PS3.7 §E.1, Annex C). */
enum {
    DIMSE_CF_STORE_RQ  = 0x0001,
    DIMSE_CF_ECHO_RQ   = 0x0030,
    DIMSE_CF_CANCEL_RQ = 0x0FFF,
    DIMSE_CF_RSP_BIT   = 0x8000,
    DIMSE_NO_DATASET   = 0x0101,   /* Command Data Set Type: none */
    DIMSE_STATUS_SOP_CLASS_NOT_SUPPORTED = 0x0122,
    DIMSE_STATUS_UNRECOGNIZED_OPERATION  = 0x0211,
};

/* ---- small helpers ------------------------------------------------------ */

static void dimse_fmt(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void dimse_fmt(char *buf, size_t len, const char *fmt, ...)
{
    if (!buf || len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

static void dimse_copy(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

/* Copies an AE title without its padding spaces (PS3.5 §6.2: AE). */
static void dimse_copy_ae(char *dst, size_t cap, const char *src)
{
    while (*src == ' ')
        src++;
    size_t n = strlen(src);
    while (n > 0 && src[n - 1] == ' ')
        n--;
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static bool dimse_ae_valid(const char *ae)
{
    size_t n = ae ? strlen(ae) : 0;
    if (n == 0 || n > DIMSE_AE_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)ae[i] < 0x20 || ae[i] == '\\' || (unsigned char)ae[i] > 0x7e)
            return false;
    return true;
}

/* PS3.5 §9.1: digits and dots, no empty component, no leading zero. */
static bool dimse_uid_wellformed(const char *uid)
{
    size_t n = strlen(uid);
    if (n == 0 || n > DIMSE_UID_MAX)
        return false;
    size_t comp = 0;   /* length of the current component */
    for (size_t i = 0; i <= n; i++) {
        char ch = uid[i];
        if (ch == '.' || ch == '\0') {
            if (comp == 0)
                return false;
            comp = 0;
        } else if (ch >= '0' && ch <= '9') {
            if (comp == 1 && uid[i - 1] == '0')
                return false;
            comp++;
        } else {
            return false;
        }
    }
    return true;
}

/* A SOP Instance UID from the wire: only the character set and length are
 * checked (leading zeros are a common, harmless violation). */
static bool dimse_uid_plausible(const char *uid)
{
    size_t n = strlen(uid);
    if (n == 0 || n > DIMSE_UID_MAX)
        return false;
    return strspn(uid, "0123456789.") == n;
}

static const char *dimse_ts_lookup(const char *uid)
{
    for (size_t i = 0; i < sizeof dimse_ts_table / sizeof dimse_ts_table[0]; i++)
        if (strcmp(uid, dimse_ts_table[i].uid) == 0)
            return dimse_ts_table[i].uid;
    return NULL;
}

/* Verification, every storage class DCMTK knows, and - promiscuous, as
 * storescp -pm - any well-formed UID DCMTK does not know at all (private or
 * newer storage classes). What DCMTK knows as something else (Q/R, worklist,
 * MPPS, commitment, transfer syntaxes ...) is refused. */
static bool dimse_sop_class_accepted(const char *uid)
{
    if (!dimse_uid_wellformed(uid))
        return false;
    if (strcmp(uid, UID_VerificationSOPClass) == 0)
        return true;
    if (dcmIsaStorageSOPClassUID(uid, ESSC_All))
        return true;
    return dcmFindNameOfUID(uid, NULL) == NULL;
}

static int dimse_write_all(int fd, const void *p, size_t n)
{
    const unsigned char *b = (const unsigned char *)p;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

static void dimse_put16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)(v & 0xff);
    p[1] = (unsigned char)(v >> 8);
}

static void dimse_put32(unsigned char *p, uint32_t v)
{
    dimse_put16(p, (uint16_t)(v & 0xffff));
    dimse_put16(p + 2, (uint16_t)(v >> 16));
}

static uint16_t dimse_get16(const unsigned char *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t dimse_get32(const unsigned char *p)
{
    return (uint32_t)dimse_get16(p) | ((uint32_t)dimse_get16(p + 2) << 16);
}

/* ---- the handle --------------------------------------------------------- */

struct dimse_conn {
    struct dimse_conn *prev, *next;
    struct dimse_scp *scp;
    int fd;            /* the accepted socket, DCMTK's once taken */
    int ctl;           /* our duplicate of it, for shutdown() at stop; closed
                          after the record leaves scp->conns (under scp->mu) */
    bool taken;        /* DCMTK owns fd and closes it */
    bool over_limit;   /* only here to be told "local limit exceeded" */
    /* Until the A-ASSOCIATE-RQ has been read (under scp->mu): the listener
     * cuts the connection at negotiate_by (CLOCK_MONOTONIC ms). */
    bool negotiating;
    int64_t negotiate_by;
    char peer_ip[INET6_ADDRSTRLEN];
};

/* Buffers kept for the next association, at most (the budget bounds them too). */
#define DIMSE_IDLE_MEM_MAX 8

struct dimse_scp {
    char *bind_addr, *aet, *spool_dir;
    int max_assocs;
    uint32_t max_pdu;
    int acse_timeout_s, dimse_timeout_s, stop_grace_ms;
    dimse_accept_fn accept;
    dimse_store_fn store;
    dimse_log_fn log;
    dimse_spool_failed_fn spool_failed;
    void *ctx;
    size_t mem_instance_max, mem_budget;
    bool digest_dataset;
    size_t early_bytes;
    dimse_early_fn early;
    dimse_early_end_fn early_end;
    DcmTLSTransportLayer *tls;   /* DICOM TLS: every association's SSL comes from it */
    bool tls_verify_peer;        /* callers must present a certificate from tls_ca */

    int listen_fd;
    int wake[2];       /* pipe: stop wakes the listener */
    uint16_t port;
    pthread_t listener;
    bool listener_started;

    pthread_mutex_t mu;   /* guards everything below */
    pthread_cond_t cv;    /* signalled when threads drops */
    bool stopping;
    int active, rejecting, threads;
    size_t mem_used;   /* bytes of association buffers (mem_instance_max each), idle ones too */
    unsigned char *idle_mem[DIMSE_IDLE_MEM_MAX]; /* buffers of ended associations, pages in */
    unsigned n_idle_mem;
    struct dimse_conn *conns;
};

static void dimse_log(const dimse_scp *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void dimse_log(const dimse_scp *s, const char *fmt, ...)
{
    if (!s->log)
        return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    s->log(s->ctx, buf);
}

/* ---- process-wide DCMTK state ------------------------------------------- */

/* The only mutable statics: DCMTK's own process-wide settings are set once,
 * and its process-wide socket hand-over slot needs one process-wide lock. */
static pthread_once_t dimse_once = PTHREAD_ONCE_INIT;
static int dimse_once_rc = DIMSE_ELIB;
static pthread_mutex_t dimse_handover_mu = PTHREAD_MUTEX_INITIALIZER;

static void dimse_global_init(void)
{
    try {
        /* dcmnet logs AE titles, UIDs and dumps; the operator gets cfg->log. */
        OFLog::getLogger("dcmtk.dcmnet").setLogLevel(OFLogger::OFF_LOG_LEVEL);
        /* peer_ip stays numeric and no accept waits on DNS. */
        dcmDisableGethostbyaddr.set(OFTrue);
        /* DUL's first ASC_initializeNetwork sets up its state machine tables
         * and SIGPIPE without a lock: do it here, once. A requestor network
         * opens no socket. */
        T_ASC_Network *net = NULL;
        if (ASC_initializeNetwork(NET_REQUESTOR, 0, DIMSE_DEFAULT_ACSE_S, &net).bad())
            return;
        ASC_dropNetwork(&net);
        dimse_once_rc = 0;
    } catch (...) {
        dimse_once_rc = DIMSE_ELIB;
    }
}

/* Lock held from publishing the socket in dcmExternalSocketHandle until DCMTK
 * has read it (or failed before reading it). */
struct dimse_handover {
    bool locked;
    bool taken;   /* DCMTK created its connection object: it owns the fd */
};

static void dimse_handover_begin(dimse_handover *h, int fd)
{
    pthread_mutex_lock(&dimse_handover_mu);
    h->locked = true;
    h->taken = false;
    dcmExternalSocketHandle.set(fd);
}

static void dimse_handover_end(dimse_handover *h)
{
    if (!h->locked)
        return;
    dcmExternalSocketHandle.set(DCMNET_INVALID_SOCKET);
    h->locked = false;
    pthread_mutex_unlock(&dimse_handover_mu);
}

/* DUL calls createConnection() right after it has taken the socket from
 * dcmExternalSocketHandle: the point where the next hand-over may start. */
class DimseHandoverLayer : public DcmTransportLayer {
public:
    /* tls: the listener's TLS layer (its one SSL_CTX), NULL for plain TCP. */
    DimseHandoverLayer(dimse_handover *h, DcmTLSTransportLayer *tls) : h_(h), tls_(tls) {}
    DcmTransportConnection *createConnection(DcmNativeSocketType sock, OFBool secure) override
    {
        dimse_handover_end(h_);
        h_->taken = true;   /* from here DCMTK closes sock, whatever happens */
        return tls_ ? tls_->createConnection(sock, OFTrue) : DcmTransportLayer::createConnection(sock, secure);
    }

private:
    dimse_handover *h_;
    DcmTLSTransportLayer *tls_;
};

/* Every blocking read and write on fd gives up after seconds of silence. */
static void dimse_socket_timeout(int fd, int seconds)
{
    struct timeval tv = { seconds, 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static int64_t dimse_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- one association ---------------------------------------------------- */

struct dimse_assoc {
    dimse_scp *scp;
    dimse_conn *conn;
    T_ASC_Network *net;
    T_ASC_Association *as;
    char calling[DIMSE_AE_MAX + 1], called[DIMSE_AE_MAX + 1];
    char why[160];   /* last DCMTK condition text, for the log */
    unsigned char *mem;   /* scp->mem_instance_max bytes, charged to
                             scp->mem_used, kept for the association's life
                             and then for the next one (scp->idle_mem) */
    bool mem_tried;       /* asked for mem once (none left: spool) */
};

struct dimse_cmd {
    unsigned char pcid;
    uint16_t field, msg_id, ds_type;
    unsigned seen;   /* DIMSE_SEEN_* */
    char sop_class[DIMSE_UID_MAX + 1], sop_instance[DIMSE_UID_MAX + 1];
};

enum { DIMSE_SEEN_FIELD = 1, DIMSE_SEEN_MSGID = 2, DIMSE_SEEN_DSTYPE = 4 };

enum dimse_rx { DIMSE_RX_OK, DIMSE_RX_RELEASE, DIMSE_RX_ABORT, DIMSE_RX_TIMEOUT, DIMSE_RX_ERROR };

static void dimse_note(dimse_assoc *a, const OFCondition &cond)
{
    dimse_copy(a->why, sizeof a->why, cond.text());
}

/* Next PDV of the association, reading a PDU when none is buffered. */
static dimse_rx dimse_next_pdv(dimse_assoc *a, DUL_PDV *pdv)
{
    if (DUL_NextPDV(&a->as->DULassociation, pdv).good())
        return DIMSE_RX_OK;
    if (!ASC_dataWaiting(a->as, a->scp->dimse_timeout_s))
        return DIMSE_RX_TIMEOUT;
    OFCondition cond = DUL_ReadPDVs(&a->as->DULassociation, NULL, DUL_NOBLOCK,
                                    a->scp->dimse_timeout_s);
    if (cond == DUL_PDATAPDUARRIVED) {
        cond = DUL_NextPDV(&a->as->DULassociation, pdv);
        if (cond.good())
            return DIMSE_RX_OK;
    }
    if (cond == DUL_PEERREQUESTEDRELEASE)
        return DIMSE_RX_RELEASE;
    if (cond == DUL_PEERABORTEDASSOCIATION)
        return DIMSE_RX_ABORT;
    if (cond == DUL_READTIMEOUT)
        return DIMSE_RX_TIMEOUT;
    dimse_note(a, cond);
    return DIMSE_RX_ERROR;
}

/* The group 0000 elements we read (PS3.7 §E.1); all else is skipped. */
static const struct {
    uint16_t elem;
    bool uid;        /* UI into a char[DIMSE_UID_MAX + 1], else US into a uint16_t */
    size_t off;      /* within dimse_cmd */
    unsigned seen;
} dimse_cmd_fields[] = {
    { 0x0002, true,  offsetof(dimse_cmd, sop_class),    0 },                  /* Affected SOP Class UID */
    { 0x0100, false, offsetof(dimse_cmd, field),        DIMSE_SEEN_FIELD },   /* Command Field */
    { 0x0110, false, offsetof(dimse_cmd, msg_id),       DIMSE_SEEN_MSGID },   /* Message ID */
    { 0x0800, false, offsetof(dimse_cmd, ds_type),      DIMSE_SEEN_DSTYPE },  /* Command Data Set Type */
    { 0x1000, true,  offsetof(dimse_cmd, sop_instance), 0 },                  /* Affected SOP Instance UID */
};

static bool dimse_cmd_store_field(dimse_cmd *cmd, uint16_t elem, const unsigned char *v, uint32_t len)
{
    for (size_t i = 0; i < sizeof dimse_cmd_fields / sizeof dimse_cmd_fields[0]; i++) {
        if (dimse_cmd_fields[i].elem != elem)
            continue;
        char *dst = (char *)cmd + dimse_cmd_fields[i].off;
        if (dimse_cmd_fields[i].uid) {
            while (len > 0 && (v[len - 1] == '\0' || v[len - 1] == ' '))
                len--;   /* UI padding; some senders pad with a space */
            if (len > DIMSE_UID_MAX)
                return false;
            memcpy(dst, v, len);
            dst[len] = '\0';
        } else {
            if (len != 2)
                return false;
            uint16_t val = dimse_get16(v);
            memcpy(dst, &val, sizeof val);
        }
        cmd->seen |= dimse_cmd_fields[i].seen;
        return true;
    }
    return true;
}

/* A command set: implicit VR little endian, group 0000 only (PS3.7 §6.3.1). */
static bool dimse_cmd_parse(const unsigned char *b, size_t n, dimse_cmd *cmd)
{
    size_t off = 0;
    while (off < n) {
        if (n - off < 8)
            return false;
        uint16_t group = dimse_get16(b + off), elem = dimse_get16(b + off + 2);
        uint32_t len = dimse_get32(b + off + 4);
        off += 8;
        if (group != 0x0000 || len > n - off)
            return false;
        if (!dimse_cmd_store_field(cmd, elem, b + off, len))
            return false;
        off += len;
    }
    return (cmd->seen & DIMSE_SEEN_FIELD) != 0;
}

/* Reads one command's PDVs (all on one presentation context) and parses it. */
static dimse_rx dimse_read_command(dimse_assoc *a, dimse_cmd *cmd)
{
    unsigned char buf[DIMSE_CMD_MAX];
    size_t len = 0;
    bool first = true;
    memset(cmd, 0, sizeof *cmd);
    for (;;) {
        DUL_PDV pdv;
        dimse_rx rx = dimse_next_pdv(a, &pdv);
        if (rx != DIMSE_RX_OK)
            return rx;
        if (pdv.pdvType != DUL_COMMANDPDV || (!first && pdv.presentationContextID != cmd->pcid)) {
            dimse_copy(a->why, sizeof a->why, "data set PDV or second context inside a command");
            return DIMSE_RX_ERROR;
        }
        if (pdv.fragmentLength > sizeof buf - len) {
            dimse_copy(a->why, sizeof a->why, "command set too long");
            return DIMSE_RX_ERROR;
        }
        cmd->pcid = pdv.presentationContextID;
        first = false;
        memcpy(buf + len, pdv.data, pdv.fragmentLength);
        len += pdv.fragmentLength;
        if (pdv.lastPDV)
            break;
    }
    if (!dimse_cmd_parse(buf, len, cmd)) {
        dimse_copy(a->why, sizeof a->why, "malformed command set");
        return DIMSE_RX_ERROR;
    }
    return DIMSE_RX_OK;
}

/* ---- response command sets ---------------------------------------------- */

struct dimse_out {
    unsigned char b[512];
    size_t n;
};

/* One implicit VR LE element of group 0000, value padded to even length. */
static void dimse_out_elem(dimse_out *o, uint16_t elem, const void *v, size_t len, unsigned char pad)
{
    size_t padded = len + (len & 1);
    if (o->n + 8 + padded > sizeof o->b)
        return;   /* cannot happen: sizes below are bounded */
    dimse_put16(o->b + o->n, 0x0000);
    dimse_put16(o->b + o->n + 2, elem);
    dimse_put32(o->b + o->n + 4, (uint32_t)padded);
    memcpy(o->b + o->n + 8, v, len);
    if (padded != len)
        o->b[o->n + 8 + len] = pad;
    o->n += 8 + padded;
}

static void dimse_out_us(dimse_out *o, uint16_t elem, uint16_t v)
{
    unsigned char b[2];
    dimse_put16(b, v);
    dimse_out_elem(o, elem, b, 2, 0);
}

/* Error Comment (LO, default repertoire: a command set has no Specific
 * Character Set): at most 64 characters, no backslash, controls or non-ASCII. */
static void dimse_sanitize_comment(char *c)
{
    size_t n = strnlen(c, DIMSE_COMMENT_MAX);
    c[n] = '\0';
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)c[i];
        if (ch >= 0x7f)
            c[i] = '?';
        else if (ch < 0x20 || ch == '\\')
            c[i] = ' ';
    }
}

/* PS3.7 §9.3.1.2 (C-STORE-RSP), §9.3.5.2 (C-ECHO-RSP), elements ascending. */
static void dimse_build_rsp(dimse_out *o, const dimse_cmd *rq, uint16_t status, const char *comment)
{
    o->n = 12;   /* (0000,0000) group length, filled in last */
    if (rq->sop_class[0])
        dimse_out_elem(o, 0x0002, rq->sop_class, strlen(rq->sop_class), '\0');
    dimse_out_us(o, 0x0100, (uint16_t)(rq->field | DIMSE_CF_RSP_BIT));
    dimse_out_us(o, 0x0120, rq->msg_id);
    dimse_out_us(o, 0x0800, DIMSE_NO_DATASET);
    dimse_out_us(o, 0x0900, status);
    if (status != DIMSE_STATUS_SUCCESS && comment && comment[0])
        dimse_out_elem(o, 0x0902, comment, strlen(comment), ' ');
    if (rq->field == DIMSE_CF_STORE_RQ && rq->sop_instance[0])
        dimse_out_elem(o, 0x1000, rq->sop_instance, strlen(rq->sop_instance), '\0');
    dimse_put16(o->b, 0x0000);
    dimse_put16(o->b + 2, 0x0000);
    dimse_put32(o->b + 4, 4);
    dimse_put32(o->b + 8, (uint32_t)(o->n - 12));
}

static bool dimse_send_command(dimse_assoc *a, unsigned char pcid, const dimse_out *o)
{
    unsigned long max = a->as->sendPDVLength & ~1UL;
    if (max == 0 || max > o->n)
        max = o->n;
    for (size_t off = 0; off < o->n;) {
        size_t frag = o->n - off < max ? o->n - off : max;
        DUL_PDV pdv;
        pdv.fragmentLength = frag;
        pdv.presentationContextID = pcid;
        pdv.pdvType = DUL_COMMANDPDV;
        pdv.lastPDV = off + frag == o->n;
        pdv.data = (void *)(o->b + off);
        DUL_PDVLIST list;
        memset(&list, 0, sizeof list);
        list.count = 1;
        list.pdv = &pdv;
        OFCondition cond = DUL_WritePDVs(&a->as->DULassociation, &list);
        if (cond.bad()) {
            dimse_note(a, cond);
            return false;
        }
        off += frag;
    }
    return true;
}

static bool dimse_respond(dimse_assoc *a, const dimse_cmd *rq, uint16_t status, const char *comment)
{
    dimse_out o;
    dimse_build_rsp(&o, rq, status, comment);
    return dimse_send_command(a, rq->pcid, &o);
}

/* ---- C-STORE ------------------------------------------------------------ */

static size_t dimse_meta_elem(unsigned char *b, size_t n, uint16_t elem, const char *vr,
                              const void *v, size_t len, unsigned char pad)
{
    size_t padded = len + (len & 1);
    dimse_put16(b + n, 0x0002);
    dimse_put16(b + n + 2, elem);
    memcpy(b + n + 4, vr, 2);
    if (vr[0] == 'O') {   /* OB: 2 reserved bytes, 32-bit length */
        dimse_put16(b + n + 6, 0);
        dimse_put32(b + n + 8, (uint32_t)padded);
        n += 12;
    } else {
        dimse_put16(b + n + 6, (uint16_t)padded);
        n += 8;
    }
    memcpy(b + n, v, len);
    if (padded != len)
        b[n + len] = pad;
    return n + padded;
}

/* Preamble, "DICM" and the File Meta Information (PS3.10 §7.1), explicit VR
 * LE. Every value is at most 64 bytes, so DIMSE_META_MAX is never reached. */
static size_t dimse_build_meta(unsigned char *b, const char *sop_class, const char *sop_instance,
                               const char *ts, const char *source_ae)
{
    static const unsigned char version[2] = { 0x00, 0x01 };
    memset(b, 0, 128);
    memcpy(b + 128, "DICM", 4);
    size_t n = 132 + 12;   /* (0002,0000) UL written last */
    n = dimse_meta_elem(b, n, 0x0001, "OB", version, 2, 0);
    n = dimse_meta_elem(b, n, 0x0002, "UI", sop_class, strlen(sop_class), '\0');
    n = dimse_meta_elem(b, n, 0x0003, "UI", sop_instance, strlen(sop_instance), '\0');
    n = dimse_meta_elem(b, n, 0x0010, "UI", ts, strlen(ts), '\0');
    n = dimse_meta_elem(b, n, 0x0012, "UI", DIMSE_IMPL_CLASS_UID, strlen(DIMSE_IMPL_CLASS_UID), '\0');
    n = dimse_meta_elem(b, n, 0x0013, "SH", DIMSE_IMPL_VERSION, strlen(DIMSE_IMPL_VERSION), ' ');
    if (source_ae[0])
        n = dimse_meta_elem(b, n, 0x0016, "AE", source_ae, strlen(source_ae), ' ');
    unsigned char gl[4];
    dimse_put32(gl, (uint32_t)(n - 132 - 12));
    dimse_meta_elem(b, 132, 0x0000, "UL", gl, 4, 0);
    return n;
}

/* Creates <spool>/rx-<random>.dcm.part exclusively; returns fd or -errno. */
static int dimse_spool_open(const dimse_scp *s, char *path, size_t cap)
{
    for (int attempt = 0; attempt < 8; attempt++) {
        unsigned long long r = 0;
        if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            r = ((unsigned long long)ts.tv_sec << 30) ^ (unsigned long long)ts.tv_nsec ^
                ((unsigned long long)(uintptr_t)path << 7) ^ (unsigned long long)attempt;
        }
        snprintf(path, cap, "%s/rx-%016llx.dcm.part", s->spool_dir, r);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0)
            return fd;
        if (errno != EEXIST)
            return -errno;
    }
    return -EEXIST;
}

/* Where the data set goes while it arrives. */
struct dimse_sink {
    int fd;             /* the spool file, or -1 */
    unsigned char *mem; /* the association's buffer while the file fits, or NULL;
                           neither fd nor mem: discarding */
    char path[DIMSE_PATH_MAX];
    uint64_t size, meta_len;
    uint64_t early_done;   /* bytes of mem handed to scp->early */
    void *early_state;
    digest_ctx *dg;     /* SHA-256 of the data set, or NULL */
    uint16_t status;    /* non-zero: refuse with this after draining */
    char comment[DIMSE_COMMENT_MAX + 1];
    const char *calling; /* the association's calling AE title */
};

#ifdef MADV_POPULATE_WRITE
#define DIMSE_MADV_POPULATE_WRITE MADV_POPULATE_WRITE
#else
#define DIMSE_MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

/* The association's buffer, taken from the budget on first use. */
static unsigned char *dimse_assoc_mem(dimse_assoc *a)
{
    dimse_scp *s = a->scp;
    if (a->mem || a->mem_tried || !s->mem_instance_max)
        return a->mem;
    a->mem_tried = true;
    pthread_mutex_lock(&s->mu);
    if (s->n_idle_mem) { /* an ended association's: its pages are in */
        a->mem = s->idle_mem[--s->n_idle_mem];
        pthread_mutex_unlock(&s->mu);
        return a->mem;
    }
    bool room = s->mem_used + s->mem_instance_max <= s->mem_budget;
    if (room)
        s->mem_used += s->mem_instance_max;
    pthread_mutex_unlock(&s->mu);
    if (!room)
        return NULL;
    /* Reserved, not committed: pages exist once written. */
    void *p = mmap(NULL, s->mem_instance_max, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p != MAP_FAILED) {
        /* In 2 MiB pages where the kernel allows: a radiograph's first
         * arrival otherwise faults its 10 MB in one 4 KiB page at a time,
         * which cost 45 ms of a 60 ms receive on a virtual machine. */
        madvise(p, s->mem_instance_max, MADV_HUGEPAGE);
        /* All its pages now, in one call, and kept for later associations
         * (dimse_assoc_mem_release): touched one fault at a time while it
         * arrived, an association's first radiograph took 20-38 ms to
         * receive on this virtual machine, 14-20 with the pages in (later
         * ones 12-16).  Linux 5.14 and later; older kernels fault them in
         * as before. */
        (void)madvise(p, s->mem_instance_max, DIMSE_MADV_POPULATE_WRITE);
        a->mem = (unsigned char *)p;
        return a->mem;
    }
    pthread_mutex_lock(&s->mu);
    s->mem_used -= s->mem_instance_max;
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static void dimse_assoc_mem_release(dimse_assoc *a)
{
    if (!a->mem)
        return;
    pthread_mutex_lock(&a->scp->mu);
    bool kept = a->scp->n_idle_mem < DIMSE_IDLE_MEM_MAX;
    if (kept)
        a->scp->idle_mem[a->scp->n_idle_mem++] = a->mem;
    pthread_mutex_unlock(&a->scp->mu);
    if (kept) {
        a->mem = NULL;
        return;
    }
    munmap(a->mem, a->scp->mem_instance_max);
    a->mem = NULL;
    pthread_mutex_lock(&a->scp->mu);
    a->scp->mem_used -= a->scp->mem_instance_max;
    pthread_mutex_unlock(&a->scp->mu);
}

static void dimse_sink_fail(dimse_sink *k, const dimse_scp *s, int err, const char *what)
{
    if (k->fd >= 0) {
        close(k->fd);
        unlink(k->path);
        k->fd = -1;
    }
    k->mem = NULL;
    k->status = DIMSE_STATUS_OUT_OF_RESOURCES;
    /* The file is gone, its space given back: what it was writing counts. */
    bool full = disk_full_error(s->spool_dir, -err, k->size + s->max_pdu);
    dimse_copy(k->comment, sizeof k->comment, full ? "disk full; retry later" : "cannot write spool file");
    char msg[DIMSE_PATH_MAX + 128];
    snprintf(msg, sizeof msg, "C-STORE: %s %s: %s", what, k->path, strerror(-err));
    if (s->spool_failed)
        s->spool_failed(s->ctx, k->calling, full, msg);
    else
        dimse_log(s, "%s", msg);
}

/* Opens the spool file and writes what is in memory so far into it. */
static void dimse_sink_spill(dimse_sink *k, const dimse_scp *s)
{
    int fd = dimse_spool_open(s, k->path, sizeof k->path);
    if (fd < 0) {
        dimse_sink_fail(k, s, fd, "create");
        return;
    }
    k->fd = fd;
    int rc = dimse_write_all(k->fd, k->mem, (size_t)k->size);
    k->mem = NULL;
    if (rc < 0)
        dimse_sink_fail(k, s, rc, "write");
}

/* Starts the file (in the association's buffer, else in a spool file) with
 * the meta header, unless already refused. */
static void dimse_sink_open(dimse_sink *k, dimse_assoc *a, const dimse_cmd *cmd, const char *ts)
{
    dimse_scp *s = a->scp;
    k->fd = -1;
    k->mem = NULL;
    k->dg = NULL;
    k->calling = a->calling;
    k->size = k->meta_len = k->early_done = 0;
    k->early_state = NULL;
    if (k->status)
        return;
    if (s->digest_dataset && !(k->dg = digest_new())) {
        k->status = DIMSE_STATUS_OUT_OF_RESOURCES;
        dimse_copy(k->comment, sizeof k->comment, "out of memory");
        return;
    }
    unsigned char meta[DIMSE_META_MAX];
    size_t n = dimse_build_meta(meta, cmd->sop_class, cmd->sop_instance, ts, a->calling);
    k->mem = dimse_assoc_mem(a);
    if (k->mem && n <= s->mem_instance_max) {
        memcpy(k->mem, meta, n);
        k->size = k->meta_len = n;
        return;
    }
    k->mem = NULL;
    int fd = dimse_spool_open(s, k->path, sizeof k->path);
    if (fd < 0) {
        dimse_sink_fail(k, s, fd, "create");
        return;
    }
    k->fd = fd;
    int rc = dimse_write_all(k->fd, meta, n);
    if (rc < 0) {
        dimse_sink_fail(k, s, rc, "write");
        return;
    }
    k->size = k->meta_len = n;
}

/* One PDV of the data set: hashed, then kept in memory while the file fits
 * there, else written to the spool file. */
static void dimse_sink_put(dimse_sink *k, const dimse_scp *s, const void *p, size_t n)
{
    if ((k->fd < 0 && !k->mem) || n == 0)
        return;   /* discarding, or an empty PDV (whose data may be NULL) */
    if (k->dg)
        digest_update(k->dg, p, n);
    if (k->mem && k->size + n > s->mem_instance_max)
        dimse_sink_spill(k, s);
    if (k->mem) {
        memcpy(k->mem + k->size, p, n);
        k->size += n;
        while (s->early && k->size - k->early_done >= s->early_bytes) {
            s->early(s->ctx, &k->early_state, k->mem + k->early_done, k->early_done, s->early_bytes);
            k->early_done += s->early_bytes;
        }
    } else if (k->fd >= 0) {
        int rc = dimse_write_all(k->fd, p, n);
        if (rc < 0)
            dimse_sink_fail(k, s, rc, "write");
        else
            k->size += n;
    }
}

/* Tells the owner of early hand-overs that the instance is done with. */
static void dimse_sink_early_end(dimse_sink *k, const dimse_scp *s)
{
    if (k->early_state && s->early_end)
        s->early_end(s->ctx, k->early_state);
    k->early_state = NULL;
}

static void dimse_sink_discard(dimse_sink *k)
{
    if (k->fd >= 0) {
        close(k->fd);
        unlink(k->path);
        k->fd = -1;
    }
    k->mem = NULL;
    if (k->dg) {
        uint8_t ignored[32];
        digest_final(&k->dg, ignored);
    }
}

/* Streams the data set's PDVs to the sink, one PDU in memory at a time. The
 * data set is drained even when it cannot be written, to keep the
 * association in step. */
static dimse_rx dimse_receive_dataset(dimse_assoc *a, const dimse_cmd *cmd, dimse_sink *k)
{
    for (;;) {
        DUL_PDV pdv;
        dimse_rx rx = dimse_next_pdv(a, &pdv);
        if (rx != DIMSE_RX_OK)
            return rx;
        if (pdv.pdvType != DUL_DATASETPDV || pdv.presentationContextID != cmd->pcid) {
            dimse_copy(a->why, sizeof a->why, "command PDV or other context inside a data set");
            return DIMSE_RX_ERROR;
        }
        dimse_sink_put(k, a->scp, pdv.data, pdv.fragmentLength);
        if (pdv.lastPDV)
            return DIMSE_RX_OK;
    }
}

/* Decides, before the data set arrives, whether it can be accepted at all. */
static void dimse_store_precheck(const dimse_assoc *a, const dimse_cmd *cmd,
                                 const T_ASC_PresentationContext *pc, dimse_sink *k)
{
    k->status = 0;
    k->comment[0] = '\0';
    if (strcmp(cmd->sop_class, pc->abstractSyntax) != 0) {
        k->status = DIMSE_STATUS_SOP_CLASS_NOT_SUPPORTED;
        dimse_copy(k->comment, sizeof k->comment, "SOP class differs from the presentation context");
    } else if (!dimse_uid_plausible(cmd->sop_instance)) {
        k->status = DIMSE_STATUS_CANNOT_UNDERSTAND;
        dimse_copy(k->comment, sizeof k->comment, "invalid Affected SOP Instance UID");
    }
    if (k->status)
        dimse_log(a->scp, "C-STORE from %s refused (0x%04X): %s", a->calling, k->status, k->comment);
}

static dimse_rx dimse_handle_store(dimse_assoc *a, const dimse_cmd *cmd)
{
    T_ASC_PresentationContext pc;
    if (ASC_findAcceptedPresentationContext(a->as->params, cmd->pcid, &pc).bad() ||
        !(cmd->seen & DIMSE_SEEN_DSTYPE) || cmd->ds_type == DIMSE_NO_DATASET) {
        dimse_copy(a->why, sizeof a->why, "C-STORE-RQ without data set or accepted context");
        return DIMSE_RX_ERROR;
    }
    dimse_sink k;
    k.path[0] = '\0';
    dimse_store_precheck(a, cmd, &pc, &k);
    dimse_sink_open(&k, a, cmd, pc.acceptedTransferSyntax);

    dimse_rx rx = dimse_receive_dataset(a, cmd, &k);
    if (rx != DIMSE_RX_OK) {   /* broken mid data set: nothing is stored */
        dimse_sink_discard(&k);
        dimse_sink_early_end(&k, a->scp);
        return rx;
    }
    uint8_t sha[32];
    bool hashed = false;
    if (k.dg) {
        digest_final(&k.dg, sha);
        hashed = true;
    }
    if (k.fd >= 0) {
        int fd = k.fd;
        k.fd = -1;   /* closed either way; a failed close loses written data */
        if (close(fd) != 0) {
            int err = -errno;
            unlink(k.path);
            dimse_sink_fail(&k, a->scp, err, "close");
        }
    }

    uint16_t status = k.status;
    char comment[256] = "";
    if (!status) {
        dimse_store_req req;
        req.calling_aet = a->calling;
        req.called_aet = a->called;
        req.peer_ip = a->conn->peer_ip;
        req.sop_class_uid = cmd->sop_class;
        req.sop_instance_uid = cmd->sop_instance;
        req.transfer_syntax_uid = pc.acceptedTransferSyntax;
        req.path = k.mem ? "" : k.path;
        req.data = k.mem;
        req.size = k.size;
        req.dataset_offset = k.meta_len;
        req.dataset_sha256 = hashed ? sha : NULL;
        req.early_state = k.early_state;
        status = a->scp->store(a->scp->ctx, &req, comment, sizeof comment);
        comment[sizeof comment - 1] = '\0';
    } else {
        dimse_copy(comment, sizeof comment, k.comment);
    }
    dimse_sink_early_end(&k, a->scp);
    dimse_sanitize_comment(comment);
    if (!dimse_respond(a, cmd, status, comment))
        return DIMSE_RX_ERROR;
    return DIMSE_RX_OK;
}

/* Requests we do not serve: drain any data set, answer "unrecognized". */
static dimse_rx dimse_handle_other(dimse_assoc *a, const dimse_cmd *cmd)
{
    if (cmd->field & DIMSE_CF_RSP_BIT) {
        dimse_copy(a->why, sizeof a->why, "unexpected DIMSE response");
        return DIMSE_RX_ERROR;
    }
    if (cmd->field == DIMSE_CF_CANCEL_RQ)
        return DIMSE_RX_OK;   /* nothing of ours to cancel; no response (PS3.7 §9.3.2.3) */
    if ((cmd->seen & DIMSE_SEEN_DSTYPE) && cmd->ds_type != DIMSE_NO_DATASET) {
        dimse_sink k;
        memset(&k, 0, sizeof k);
        k.fd = -1;
        k.status = DIMSE_STATUS_UNRECOGNIZED_OPERATION;
        dimse_rx rx = dimse_receive_dataset(a, cmd, &k);
        if (rx != DIMSE_RX_OK)
            return rx;
    }
    dimse_log(a->scp, "DIMSE command 0x%04X from %s not supported", cmd->field, a->calling);
    if (!dimse_respond(a, cmd, DIMSE_STATUS_UNRECOGNIZED_OPERATION, NULL))
        return DIMSE_RX_ERROR;
    return DIMSE_RX_OK;
}

/* Serves DIMSE requests until release, abort, silence or error. */
static void dimse_serve(dimse_assoc *a)
{
    unsigned stored = 0;
    for (;;) {
        dimse_cmd cmd;
        dimse_rx rx = dimse_read_command(a, &cmd);
        if (rx == DIMSE_RX_OK) {
            if (cmd.field == DIMSE_CF_ECHO_RQ)
                rx = dimse_respond(a, &cmd, DIMSE_STATUS_SUCCESS, NULL) ? DIMSE_RX_OK : DIMSE_RX_ERROR;
            else if (cmd.field == DIMSE_CF_STORE_RQ) {
                rx = dimse_handle_store(a, &cmd);
                stored++;
            } else
                rx = dimse_handle_other(a, &cmd);
        }
        switch (rx) {
        case DIMSE_RX_OK:
            continue;
        case DIMSE_RX_RELEASE:
            ASC_acknowledgeRelease(a->as);
            dimse_log(a->scp, "association %s -> %s released after %u C-STORE", a->calling, a->called, stored);
            return;
        case DIMSE_RX_ABORT:
            dimse_log(a->scp, "association %s -> %s aborted by peer", a->calling, a->called);
            return;
        case DIMSE_RX_TIMEOUT:
            dimse_log(a->scp, "association %s -> %s: no data for %d s, aborting",
                      a->calling, a->called, a->scp->dimse_timeout_s);
            ASC_abortAssociation(a->as);
            return;
        case DIMSE_RX_ERROR:
            dimse_log(a->scp, "association %s -> %s: %s, aborting", a->calling, a->called, a->why);
            ASC_abortAssociation(a->as);
            return;
        }
    }
}

/* ---- association negotiation -------------------------------------------- */

static void dimse_negotiate_contexts(T_ASC_Parameters *params)
{
    int count = ASC_countPresentationContexts(params);
    for (int i = 0; i < count; i++) {
        T_ASC_PresentationContext pc;
        if (ASC_getPresentationContext(params, i, &pc).bad())
            continue;
        if (!dimse_sop_class_accepted(pc.abstractSyntax)) {
            ASC_refusePresentationContext(params, pc.presentationContextID, ASC_P_ABSTRACTSYNTAXNOTSUPPORTED);
            continue;
        }
        const char *ts = NULL;   /* the sender's order is its preference */
        for (int k = 0; k < pc.transferSyntaxCount && !ts; k++)
            ts = dimse_ts_lookup(pc.proposedTransferSyntaxes[k]);
        if (ts)
            ASC_acceptPresentationContext(params, pc.presentationContextID, ts, ASC_SC_ROLE_DEFAULT);
        else
            ASC_refusePresentationContext(params, pc.presentationContextID, ASC_P_TRANSFERSYNTAXESNOTSUPPORTED);
    }
}

static void dimse_reject(dimse_assoc *a, T_ASC_RejectParametersResult result,
                         T_ASC_RejectParametersSource source, T_ASC_RejectParametersReason reason,
                         const char *why)
{
    T_ASC_RejectParameters rej = { result, source, reason };
    ASC_rejectAssociation(a->as, &rej);
    dimse_log(a->scp, "association %s -> %s from %s rejected: %s",
              a->calling, a->called, a->conn->peer_ip, why);
}

/* Returns true when the association was accepted. */
static bool dimse_negotiate(dimse_assoc *a)
{
    dimse_scp *s = a->scp;
    T_ASC_Parameters *params = a->as->params;
    char calling[64] = "", called[64] = "", ctx_name[128] = "";
    ASC_getAPTitles(params, calling, sizeof calling, called, sizeof called, NULL, 0);
    dimse_copy_ae(a->calling, sizeof a->calling, calling);
    dimse_copy_ae(a->called, sizeof a->called, called);

    if (a->conn->over_limit) {
        dimse_reject(a, ASC_RESULT_REJECTEDTRANSIENT, ASC_SOURCE_SERVICEPROVIDER_PRESENTATION_RELATED,
                     ASC_REASON_SP_PRES_LOCALLIMITEXCEEDED, "local limit exceeded");
        return false;
    }
    ASC_getApplicationContextName(params, ctx_name, sizeof ctx_name);
    if (strcmp(ctx_name, UID_StandardApplicationContext) != 0) {
        dimse_reject(a, ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER,
                     ASC_REASON_SU_APPCONTEXTNAMENOTSUPPORTED, "application context not supported");
        return false;
    }

    char reason[128] = "";
    int verdict;
    if (s->accept) {
        verdict = s->accept(s->ctx, a->calling, a->called, a->conn->peer_ip, reason, sizeof reason);
        reason[sizeof reason - 1] = '\0';
    } else {
        verdict = strcmp(a->called, s->aet) == 0 ? DIMSE_ACCEPT : DIMSE_REJECT_CALLED_AE;
    }
    if (verdict != DIMSE_ACCEPT) {
        T_ASC_RejectParametersReason why = verdict == DIMSE_REJECT_CALLING_AE ? ASC_REASON_SU_CALLINGAETITLENOTRECOGNIZED
                                         : verdict == DIMSE_REJECT_CALLED_AE  ? ASC_REASON_SU_CALLEDAETITLENOTRECOGNIZED
                                                                              : ASC_REASON_SU_NOREASON;
        const char *text = reason[0] ? reason
                         : verdict == DIMSE_REJECT_CALLING_AE ? "calling AE title not recognised"
                         : verdict == DIMSE_REJECT_CALLED_AE  ? "called AE title not recognised"
                                                              : "no reason given";
        dimse_reject(a, ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER, why, text);
        return false;
    }

    dimse_negotiate_contexts(params);
    ASC_setAPTitles(params, NULL, NULL, a->called);   /* PS3.8 Table 9-17: the AC repeats the called AE */
    OFCondition cond = ASC_acknowledgeAssociation(a->as);
    if (cond.bad()) {
        dimse_note(a, cond);
        dimse_log(s, "association %s -> %s: acknowledge failed: %s", a->calling, a->called, a->why);
        return false;
    }
    dimse_socket_timeout(a->conn->ctl, s->dimse_timeout_s);   /* negotiated: the DIMSE timeout from here */
    /* Which certificate the caller showed: what ties a modality to its
     * associations for the auditor, beyond the AE title it claims. */
    char peer_cert[200] = "";
    unsigned long der_len = s->tls_verify_peer ? ASC_getPeerCertificateLength(a->as) : 0;
    if (der_len && der_len < 65536) {
        unsigned char *der = (unsigned char *)malloc(der_len);
        if (der && ASC_getPeerCertificate(a->as, der, der_len) == der_len)
            pki_der_subject(der, der_len, peer_cert, sizeof peer_cert);
        free(der);
    }
    dimse_log(s, "association %s -> %s from %s accepted (%d of %d contexts)%s%s", a->calling, a->called,
              a->conn->peer_ip, ASC_countAcceptedPresentationContexts(params), ASC_countPresentationContexts(params),
              !s->tls ? "" : s->tls_verify_peer ? " over TLS, its certificate verified: " : " over TLS", peer_cert);
    return true;
}

/* Hands the socket to DCMTK and reads the A-ASSOCIATE-RQ. */
static bool dimse_receive(dimse_assoc *a)
{
    dimse_scp *s = a->scp;
    dimse_handover h = { false, false };
    OFCondition cond = EC_Normal;
    try {
        dimse_handover_begin(&h, a->conn->fd);
        /* With dcmExternalSocketHandle set, an acceptor network opens no
         * listening socket of its own. */
        cond = ASC_initializeNetwork(NET_ACCEPTOR, 0, s->acse_timeout_s, &a->net);
        DimseHandoverLayer *layer = NULL;
        if (cond.good()) {
            layer = new DimseHandoverLayer(&h, s->tls);
            cond = ASC_setTransportLayer(a->net, layer, 1);
            if (cond.bad())
                delete layer;
        }
        if (cond.good())
            cond = ASC_receiveAssociation(a->net, &a->as, (long)s->max_pdu, NULL, NULL, s->tls ? OFTrue : OFFalse,
                                          DUL_BLOCK, 0);
    } catch (...) {
        cond = EC_IllegalParameter;
        dimse_copy(a->why, sizeof a->why, "C++ exception");
    }
    dimse_handover_end(&h);
    a->conn->taken = h.taken;
    if (cond.bad()) {
        if (!a->why[0])
            dimse_note(a, cond);
        /* OpenSSL's word for a caller that sent plain DICOM: say it plainly. */
        bool plain = s->tls && strstr(a->why, "wrong version number");
        dimse_log(s, "connection from %s: no association: %s%s", a->conn->peer_ip, a->why,
                  plain ? " (the caller does not speak DICOM TLS)" : "");
        return false;
    }
    return true;
}

static void dimse_assoc_run(dimse_conn *c)
{
    dimse_assoc a;
    memset(&a, 0, sizeof a);
    a.scp = c->scp;
    a.conn = c;
    try {
        bool received = dimse_receive(&a);
        pthread_mutex_lock(&c->scp->mu);
        c->negotiating = false;
        pthread_mutex_unlock(&c->scp->mu);
        if (received && dimse_negotiate(&a))
            dimse_serve(&a);
    } catch (...) {
        dimse_log(a.scp, "association %s -> %s: C++ exception, dropped", a.calling, a.called);
    }
    dimse_assoc_mem_release(&a);
    try {
        if (a.as) {
            ASC_dropSCPAssociation(a.as, DIMSE_DROP_WAIT_S);
            ASC_destroyAssociation(&a.as);
        }
        if (a.net)
            ASC_dropNetwork(&a.net);
    } catch (...) {
    }
}

/* ---- threads ------------------------------------------------------------ */

static void dimse_conn_unlink(dimse_scp *s, dimse_conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
}

static void *dimse_conn_main(void *arg)
{
    dimse_conn *c = (dimse_conn *)arg;
    dimse_scp *s = c->scp;
    dimse_assoc_run(c);
    if (!c->taken)
        close(c->fd);
    pthread_mutex_lock(&s->mu);
    dimse_conn_unlink(s, c);
    close(c->ctl);
    if (c->over_limit)
        s->rejecting--;
    else
        s->active--;
    s->threads--;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);   /* s may be freed from here on */
    free(c);
    return NULL;
}

static void dimse_tune_socket(const dimse_scp *s, int fd)
{
    int one = 1;
    /* Always, whatever TCP_NODELAY in the environment says: DCMTK only
     * touches the option when that variable is set to non-zero. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    /* Until the association is accepted, the ACSE timeout: a TLS handshake
     * blocks in OpenSSL, beyond DCMTK's own timer, and a caller that says
     * nothing must not hold one of the max_assocs slots any longer. */
    dimse_socket_timeout(fd, s->acse_timeout_s);
}

static void dimse_peer_ip(const struct sockaddr_storage *ss, socklen_t len, char *out, size_t cap)
{
    if (getnameinfo((const struct sockaddr *)ss, len, out, (socklen_t)cap, NULL, 0, NI_NUMERICHOST) != 0)
        dimse_copy(out, cap, "?");
    if (strncmp(out, "::ffff:", 7) == 0 && strchr(out, '.'))
        memmove(out, out + 7, strlen(out + 7) + 1);   /* IPv4-mapped */
}

static void dimse_conn_start(dimse_scp *s, int fd, const struct sockaddr_storage *ss, socklen_t sl)
{
    if (fd < 3) {   /* DCMTK takes a hand-over socket only when > 0 */
        int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        close(fd);
        if (moved < 0)
            return;
        fd = moved;
    }
    dimse_tune_socket(s, fd);
    dimse_conn *c = (dimse_conn *)calloc(1, sizeof *c);
    int ctl = c ? fcntl(fd, F_DUPFD_CLOEXEC, 3) : -1;
    if (ctl < 0) {
        close(fd);
        free(c);
        return;
    }
    c->scp = s;
    c->fd = fd;
    c->ctl = ctl;
    dimse_peer_ip(ss, sl, c->peer_ip, sizeof c->peer_ip);

    pthread_mutex_lock(&s->mu);
    c->over_limit = s->active >= s->max_assocs;
    if (s->stopping || (c->over_limit && s->rejecting >= DIMSE_REJECT_SLOTS)) {
        pthread_mutex_unlock(&s->mu);
        dimse_log(s, "connection from %s closed: too many associations", c->peer_ip);
        close(fd);
        close(ctl);
        free(c);
        return;
    }
    if (c->over_limit)
        s->rejecting++;
    else
        s->active++;
    s->threads++;
    c->negotiating = true;
    c->negotiate_by = dimse_mono_ms() + (int64_t)s->acse_timeout_s * 1000;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    pthread_mutex_unlock(&s->mu);

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, DIMSE_THREAD_STACK);
    pthread_t tid;
    int rc = pthread_create(&tid, &attr, dimse_conn_main, c);
    pthread_attr_destroy(&attr);
    if (rc == 0)
        return;
    dimse_log(s, "connection from %s closed: cannot start thread: %s", c->peer_ip, strerror(rc));
    pthread_mutex_lock(&s->mu);
    dimse_conn_unlink(s, c);
    if (c->over_limit)
        s->rejecting--;
    else
        s->active--;
    s->threads--;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    close(fd);
    close(ctl);
    free(c);
}

/* Cuts the connections still negotiating past their deadline: DCMTK's
 * ACSE timer does not run during a TLS handshake (OpenSSL's accept is
 * retried on every read timeout), so a caller that connects and says
 * nothing would hold one of the max_assocs slots for good.  Returns how
 * long the listener may sleep before the next deadline (-1: none). */
static int dimse_cut_silent(dimse_scp *s)
{
    int64_t now = dimse_mono_ms(), next = -1;
    pthread_mutex_lock(&s->mu);
    for (dimse_conn *c = s->conns; c; c = c->next) {
        if (!c->negotiating)
            continue;
        if (c->negotiate_by <= now) {
            shutdown(c->ctl, SHUT_RDWR);
            c->negotiating = false;
            dimse_log(s, "connection from %s: nothing negotiated within %d s: closed", c->peer_ip,
                      s->acse_timeout_s);
        } else if (next < 0 || c->negotiate_by - now < next) {
            next = c->negotiate_by - now;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return next < 0 ? -1 : (int)next + 1;
}

static void *dimse_listener_main(void *arg)
{
    dimse_scp *s = (dimse_scp *)arg;
    for (;;) {
        struct pollfd p[2] = { { s->listen_fd, POLLIN, 0 }, { s->wake[0], POLLIN, 0 } };
        if (poll(p, 2, dimse_cut_silent(s)) < 0) {
            if (errno == EINTR)
                continue;
            dimse_log(s, "listener: poll: %s", strerror(errno));
            return NULL;
        }
        if (p[1].revents)
            return NULL;
        if (p[0].revents & (POLLERR | POLLNVAL)) {
            dimse_log(s, "listener: socket error");
            struct pollfd w = { s->wake[0], POLLIN, 0 };
            poll(&w, 1, 100);   /* back off rather than spin */
            continue;
        }
        if (!(p[0].revents & POLLIN))
            continue;
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(s->listen_fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                dimse_log(s, "listener: accept: %s", strerror(errno));
                struct pollfd w = { s->wake[0], POLLIN, 0 };
                poll(&w, 1, 100);   /* back off rather than spin */
            }
            continue;
        }
        try {
            dimse_conn_start(s, fd, &ss, sl);
        } catch (...) {
            close(fd);
        }
    }
}

/* ---- start / stop ------------------------------------------------------- */

static int dimse_bind(dimse_scp *s, uint16_t port, char *err, size_t errlen)
{
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%u", (unsigned)port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(s->bind_addr, portstr, &hints, &res);
    if (gai != 0) {
        dimse_fmt(err, errlen, "bind address %s: %s", s->bind_addr, gai_strerror(gai));
        return -EADDRNOTAVAIL;
    }
    int rc = -EADDRNOTAVAIL;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0) {
            rc = -errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, DIMSE_LISTEN_BACKLOG) == 0) {
            struct sockaddr_storage ss;
            socklen_t sl = sizeof ss;
            getsockname(fd, (struct sockaddr *)&ss, &sl);
            s->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                     : ((struct sockaddr_in *)&ss)->sin_port);
            s->listen_fd = fd;
            freeaddrinfo(res);
            return 0;
        }
        rc = -errno;
        close(fd);
    }
    freeaddrinfo(res);
    dimse_fmt(err, errlen, "listen on %s:%u: %s", s->bind_addr, (unsigned)port, strerror(-rc));
    return rc;
}

static int dimse_check_config(const dimse_config *cfg, char *err, size_t errlen)
{
    if (!cfg->store) {
        dimse_fmt(err, errlen, "no store callback");
        return -EINVAL;
    }
    if (!dimse_ae_valid(cfg->aet)) {
        dimse_fmt(err, errlen, "AE title must be 1 to 16 printable characters without backslash");
        return -EINVAL;
    }
    if (cfg->max_assocs < 0 || cfg->max_assocs > DIMSE_MAX_ASSOCS || cfg->acse_timeout_s < 0 ||
        cfg->dimse_timeout_s < 0 || cfg->stop_grace_ms < 0) {
        dimse_fmt(err, errlen, "max_assocs (0..%d) or a timeout out of range", DIMSE_MAX_ASSOCS);
        return -EINVAL;
    }
    struct stat st;
    if (!cfg->spool_dir || strlen(cfg->spool_dir) > DIMSE_SPOOL_DIR_MAX) {
        dimse_fmt(err, errlen, "spool directory missing or path too long");
        return -EINVAL;
    }
    if (stat(cfg->spool_dir, &st) != 0 || access(cfg->spool_dir, W_OK | X_OK) != 0) {
        int e = errno;
        dimse_fmt(err, errlen, "spool directory %s: %s", cfg->spool_dir, strerror(e));
        return -e;
    }
    if (!S_ISDIR(st.st_mode)) {
        dimse_fmt(err, errlen, "spool directory %s: not a directory", cfg->spool_dir);
        return -ENOTDIR;
    }
    return 0;
}

static void dimse_free(dimse_scp *s)
{
    for (unsigned i = 0; i < s->n_idle_mem; i++)
        munmap(s->idle_mem[i], s->mem_instance_max);
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    if (s->wake[0] >= 0)
        close(s->wake[0]);
    if (s->wake[1] >= 0)
        close(s->wake[1]);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    delete s->tls;
    free(s->bind_addr);
    free(s->aet);
    free(s->spool_dir);
    free(s);
}

/* DICOM TLS (PS3.15 Annex B) with BCP 195's non-downgrading profile: TLS
 * 1.2 or later and its cipher suites.  One layer for the listener; each
 * association takes an SSL from its context (SSL_new is thread-safe). */
static int dimse_tls_setup(dimse_scp *s, const dimse_config *cfg, char *err, size_t errlen)
{
    DcmTLSTransportLayer *t = new DcmTLSTransportLayer(NET_ACCEPTOR, NULL, OFTrue);
    /* An encrypted key must fail, not prompt on a console nobody watches. */
    t->setPrivateKeyPasswd("");
    const char *step = "TLS profile";
    OFCondition c = t->setTLSProfile(TSP_Profile_BCP195_ND);
    if (c.good())
        c = t->activateCipherSuites();
    /* The certificate with the chain after it in the file (callers that
     * trust only the consortium's root need the issuing CA's); set through
     * OpenSSL, since DCMTK 3.6.7's setCertificateFile leaks what it
     * reads.  Then its key. */
    if (c.good() && SSL_CTX_use_certificate_chain_file(t->getNativeHandle(), cfg->tls_cert) != 1) {
        unsigned long e = ERR_get_error();
        ERR_clear_error();
        dimse_fmt(err, errlen, "TLS: %s: %s", cfg->tls_cert, e ? ERR_reason_error_string(e) : "not a PEM certificate");
        delete t;
        return -EINVAL;
    }
    if (c.good())
        (step = cfg->tls_key, c = t->setPrivateKeyFile(cfg->tls_key, DCF_Filetype_PEM));
    if (c.good() && !t->checkPrivateKeyMatchesCertificate()) {
        dimse_fmt(err, errlen, "TLS: the key in %s is not the key of the certificate in %s", cfg->tls_key,
                  cfg->tls_cert);
        delete t;
        return -EINVAL;
    }
    if (c.good() && cfg->tls_ca && cfg->tls_ca[0])
        (step = cfg->tls_ca, c = t->addTrustedCertificateFile(cfg->tls_ca, DCF_Filetype_PEM));
    if (c.bad()) {
        dimse_fmt(err, errlen, "TLS: %s: %s", step, c.text());
        delete t;
        return -EINVAL;
    }
    s->tls_verify_peer = cfg->tls_ca && cfg->tls_ca[0];
    t->setCertificateVerification(s->tls_verify_peer ? DCV_requireCertificate : DCV_ignoreCertificate);
    s->tls = t;
    return 0;
}

static int dimse_start(const dimse_config *cfg, dimse_scp **out, char *err, size_t errlen)
{
    int rc = dimse_check_config(cfg, err, errlen);
    if (rc)
        return rc;
    pthread_once(&dimse_once, dimse_global_init);
    if (dimse_once_rc) {
        dimse_fmt(err, errlen, "DCMTK network initialisation failed");
        return dimse_once_rc;
    }

    dimse_scp *s = (dimse_scp *)calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->listen_fd = s->wake[0] = s->wake[1] = -1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);

    s->bind_addr = strdup(cfg->bind_addr && cfg->bind_addr[0] ? cfg->bind_addr : DIMSE_DEFAULT_BIND);
    s->aet = strdup(cfg->aet);
    s->spool_dir = strdup(cfg->spool_dir);
    s->max_assocs = cfg->max_assocs ? cfg->max_assocs : DIMSE_DEFAULT_ASSOCS;
    uint32_t pdu = cfg->max_pdu ? cfg->max_pdu : (uint32_t)DIMSE_DEFAULT_PDU;
    s->max_pdu = pdu < ASC_MINIMUMPDUSIZE ? ASC_MINIMUMPDUSIZE : pdu > ASC_MAXIMUMPDUSIZE ? ASC_MAXIMUMPDUSIZE : pdu;
    s->acse_timeout_s = cfg->acse_timeout_s ? cfg->acse_timeout_s : DIMSE_DEFAULT_ACSE_S;
    s->dimse_timeout_s = cfg->dimse_timeout_s ? cfg->dimse_timeout_s : DIMSE_DEFAULT_DIMSE_S;
    s->stop_grace_ms = cfg->stop_grace_ms ? cfg->stop_grace_ms : DIMSE_DEFAULT_GRACE_MS;
    s->mem_instance_max = cfg->mem_instance_max;
    s->mem_budget = cfg->mem_budget ? cfg->mem_budget : 4 * cfg->mem_instance_max;
    s->digest_dataset = cfg->digest_dataset != 0;
    s->early = cfg->mem_instance_max && cfg->early_bytes && cfg->early_end ? cfg->early : NULL;
    s->early_bytes = cfg->early_bytes;
    s->early_end = cfg->early_end;
    s->accept = cfg->accept;
    s->store = cfg->store;
    s->log = cfg->log;
    s->spool_failed = cfg->spool_failed;
    s->ctx = cfg->ctx;
    if (!s->bind_addr || !s->aet || !s->spool_dir) {
        dimse_free(s);
        return -ENOMEM;
    }
    if (cfg->tls_cert && cfg->tls_cert[0] && (rc = dimse_tls_setup(s, cfg, err, errlen)) != 0) {
        dimse_free(s);
        return rc;
    }
    if (pipe2(s->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        rc = -errno;
        dimse_fmt(err, errlen, "pipe: %s", strerror(-rc));
        dimse_free(s);
        return rc;
    }
    rc = dimse_bind(s, cfg->port, err, errlen);
    if (rc) {
        dimse_free(s);
        return rc;
    }
    rc = pthread_create(&s->listener, NULL, dimse_listener_main, s);
    if (rc != 0) {
        dimse_fmt(err, errlen, "listener thread: %s", strerror(rc));
        dimse_free(s);
        return -rc;
    }
    s->listener_started = true;
    *out = s;
    return 0;
}

extern "C" int dimse_scp_start(const dimse_config *cfg, dimse_scp **out, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!cfg || !out) {
        dimse_fmt(err, errlen, "no configuration or result pointer");
        return -EINVAL;
    }
    *out = NULL;
    try {
        return dimse_start(cfg, out, err, errlen);
    } catch (...) {
        dimse_fmt(err, errlen, "C++ exception while starting");
        return DIMSE_ELIB;
    }
}

extern "C" uint16_t dimse_scp_port(const dimse_scp *s)
{
    return s ? s->port : 0;
}

static void dimse_deadline(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

extern "C" void dimse_scp_stop(dimse_scp **sp)
{
    if (!sp || !*sp)
        return;
    dimse_scp *s = *sp;
    *sp = NULL;
    try {
        pthread_mutex_lock(&s->mu);
        s->stopping = true;
        pthread_mutex_unlock(&s->mu);
        if (write(s->wake[1], "x", 1) < 0) {
            /* the pipe is non-blocking and empty: cannot fail */
        }
        if (s->listener_started)
            pthread_join(s->listener, NULL);
        close(s->listen_fd);
        s->listen_fd = -1;

        struct timespec until;
        dimse_deadline(&until, s->stop_grace_ms);
        pthread_mutex_lock(&s->mu);
        while (s->threads > 0 && pthread_cond_timedwait(&s->cv, &s->mu, &until) != ETIMEDOUT) {
        }
        /* Peers still connected: cut them off. Reads fail at once, a data set
         * in flight is discarded, a running store callback is waited for. */
        for (dimse_conn *c = s->conns; c; c = c->next)
            shutdown(c->ctl, SHUT_RDWR);
        while (s->threads > 0)
            pthread_cond_wait(&s->cv, &s->mu);
        pthread_mutex_unlock(&s->mu);
    } catch (...) {
    }
    dimse_free(s);
}

static const struct { int code; const char *msg; } dimse_errors[] = {
    { DIMSE_ELIB, "DCMTK failed during start-up" },
};

extern "C" const char *dimse_strerror(int code)
{
    if (code == 0)
        return "success";
    for (size_t i = 0; i < sizeof dimse_errors / sizeof dimse_errors[0]; i++)
        if (dimse_errors[i].code == code)
            return dimse_errors[i].msg;
    if (code < 0 && code > -4000)
        return strerror(-code);
    return "unknown dimse error";
}
