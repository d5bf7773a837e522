/* test_dimse.c — the DICOM network adapter (hub/dimse.h) against real peers:
 * DCMTK's echoscu and storescu as subprocesses, and a minimal hand-written
 * SCU (PS3.8 PDUs, PS3.7 command sets) that sends a file's data set bytes
 * verbatim, so that bit preservation can be checked byte for byte and
 * transfer syntaxes DCMTK 3.6.7 does not know (HTJ2K, Deflated Image Frame)
 * can be sent at all. Oracles: DCMTK's dcmdump and the corpus files' bytes.
 *
 * The corpus comes from $DXHUB_CORPUS (default ../shared/corpus, tests run
 * from the repository root). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "hub/dimse.h"

#define OUR_AET "DXHUB"
#define MAX_RECORDS 64
#define UID_CT "1.2.840.10008.5.1.4.1.1.2"
#define UID_EXPLICIT_LE "1.2.840.10008.1.2.1"

/* ---- fixture ------------------------------------------------------------ */

typedef struct record {
    char sop_class[65], sop_instance[65], ts[65], calling[17], called[17], peer[64];
    char path[512];   /* where the callback moved the file */
    uint64_t size, dataset_offset;
    bool in_memory, hashed;
    unsigned char sha256[32];
} record;

typedef struct fixture {
    char root[256], spool[300], out[300], corpus[512];
    dimse_scp *scp;
    uint16_t port;
    pthread_mutex_t mu;
    int count;
    record rec[MAX_RECORDS];
    uint16_t status;          /* what the store callback answers */
    char comment[128];
} fixture;

static uint16_t fx_store(void *ctx, const dimse_store_req *req, char *comment, size_t comment_len)
{
    fixture *fx = ctx;
    pthread_mutex_lock(&fx->mu);
    int n = fx->count;
    uint16_t status = fx->status;
    if (n < MAX_RECORDS) {
        record *r = &fx->rec[n];
        snprintf(r->sop_class, sizeof r->sop_class, "%s", req->sop_class_uid);
        snprintf(r->sop_instance, sizeof r->sop_instance, "%s", req->sop_instance_uid);
        snprintf(r->ts, sizeof r->ts, "%s", req->transfer_syntax_uid);
        snprintf(r->calling, sizeof r->calling, "%s", req->calling_aet);
        snprintf(r->called, sizeof r->called, "%s", req->called_aet);
        snprintf(r->peer, sizeof r->peer, "%s", req->peer_ip);
        snprintf(r->path, sizeof r->path, "%s/%03d.dcm", fx->out, n);
        r->size = req->size;
        r->dataset_offset = req->dataset_offset;
        r->in_memory = req->data != NULL;
        r->hashed = req->dataset_sha256 != NULL;
        if (r->hashed)
            memcpy(r->sha256, req->dataset_sha256, 32);
        if (req->data) {   /* in memory: no spool file; keep a copy to compare */
            FILE *fp = fopen(r->path, "wb");
            if (!fp || fwrite(req->data, 1, (size_t)req->size, fp) != req->size)
                r->path[0] = '\0';
            if (fp)
                fclose(fp);
        } else if (rename(req->path, r->path) != 0) {
            r->path[0] = '\0';
        }
        fx->count = n + 1;
    } else if (!req->data) {
        unlink(req->path);
    }
    if (status != DIMSE_STATUS_SUCCESS)
        snprintf(comment, comment_len, "%s", fx->comment);
    pthread_mutex_unlock(&fx->mu);
    return status;
}

static int fx_accept(void *ctx, const char *calling, const char *called, const char *peer_ip,
                     char *reason, size_t reason_len)
{
    if (strcmp(calling, "BADSCU") == 0)
        return DIMSE_REJECT_CALLING_AE;
    if (strcmp(called, OUR_AET) != 0)
        return DIMSE_REJECT_CALLED_AE;
    return DIMSE_ACCEPT;
}

static int fx_count(fixture *fx)
{
    pthread_mutex_lock(&fx->mu);
    int n = fx->count;
    pthread_mutex_unlock(&fx->mu);
    return n;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void fx_start_mem(fixture *fx, const char *bind, int max_assocs, int grace_ms, size_t mem_max)
{
    dimse_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.mem_instance_max = mem_max;
    cfg.digest_dataset = mem_max != 0;
    cfg.bind_addr = bind;
    cfg.aet = OUR_AET;
    cfg.spool_dir = fx->spool;
    cfg.max_assocs = max_assocs;
    cfg.stop_grace_ms = grace_ms;
    cfg.accept = fx_accept;
    cfg.store = fx_store;
    cfg.ctx = fx;
    char err[256];
    int rc = dimse_scp_start(&cfg, &fx->scp, err, sizeof err);
    if (rc != 0)
        fail_msg("dimse_scp_start: %d %s", rc, err);
    fx->port = dimse_scp_port(fx->scp);
    assert_true(fx->port != 0);
}

static void fx_start(fixture *fx, const char *bind, int max_assocs, int grace_ms)
{
    fx_start_mem(fx, bind, max_assocs, grace_ms, 0);
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    if (!fx)
        return -1;
    pthread_mutex_init(&fx->mu, NULL);
    const char *tmp = getenv("TMPDIR");
    snprintf(fx->root, sizeof fx->root, "%s/dxhub-dimse-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (!mkdtemp(fx->root))
        return -1;
    snprintf(fx->spool, sizeof fx->spool, "%s/spool", fx->root);
    snprintf(fx->out, sizeof fx->out, "%s/out", fx->root);
    if (mkdir(fx->spool, 0700) != 0 || mkdir(fx->out, 0700) != 0)
        return -1;
    const char *corpus = getenv("DXHUB_CORPUS");
    snprintf(fx->corpus, sizeof fx->corpus, "%s", corpus && corpus[0] ? corpus : "../shared/corpus");
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    dimse_scp_stop(&fx->scp);
    nftw(fx->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    pthread_mutex_destroy(&fx->mu);
    free(fx);
    return 0;
}

/* ---- files -------------------------------------------------------------- */

typedef struct dfile {
    unsigned char *b;
    size_t n, ds;   /* ds: offset of the data set, after the meta header */
    char sop_class[65], sop_instance[65], ts[65];
} dfile;

static uint16_t le16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const unsigned char *p) { return le16(p) | (uint32_t)le16(p + 2) << 16; }

static void meta_string(char *dst, size_t cap, const unsigned char *v, size_t len)
{
    while (len > 0 && (v[len - 1] == '\0' || v[len - 1] == ' '))
        len--;
    if (len >= cap)
        len = cap - 1;
    memcpy(dst, v, len);
    dst[len] = '\0';
}

/* Reads a Part 10 file and walks its meta group (explicit VR LE) ourselves. */
static bool dfile_read(dfile *f, const char *path)
{
    memset(f, 0, sizeof *f);
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return false;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    f->b = malloc((size_t)n + 1);
    bool ok = f->b && fread(f->b, 1, (size_t)n, fp) == (size_t)n;
    fclose(fp);
    if (!ok || n < 144 || memcmp(f->b + 128, "DICM", 4) != 0)
        return false;
    f->n = (size_t)n;
    size_t off = 132;
    while (off + 8 <= f->n && le16(f->b + off) == 0x0002) {
        uint16_t elem = le16(f->b + off + 2);
        const char *vr = (const char *)f->b + off + 4;
        size_t hdr = 8, len = le16(f->b + off + 6);
        if (!memcmp(vr, "OB", 2) || !memcmp(vr, "UN", 2) || !memcmp(vr, "SQ", 2) || !memcmp(vr, "UT", 2)) {
            hdr = 12;
            len = le32(f->b + off + 8);
        }
        if (off + hdr + len > f->n)
            return false;
        const unsigned char *v = f->b + off + hdr;
        if (elem == 0x0002)
            meta_string(f->sop_class, sizeof f->sop_class, v, len);
        else if (elem == 0x0003)
            meta_string(f->sop_instance, sizeof f->sop_instance, v, len);
        else if (elem == 0x0010)
            meta_string(f->ts, sizeof f->ts, v, len);
        off += hdr + len;
    }
    f->ds = off;
    return f->ts[0] && f->sop_class[0] && f->sop_instance[0];
}

static void dfile_free(dfile *f)
{
    free(f->b);
    f->b = NULL;
}

static void corpus_path(const fixture *fx, const char *rel, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", fx->corpus, rel);
}

static void require_corpus(const fixture *fx)
{
    char p[600];
    corpus_path(fx, "dicom/explicit_le/CT_small.dcm", p, sizeof p);
    if (access(p, R_OK) != 0)
        fail_msg("corpus not found at %s (set DXHUB_CORPUS)", fx->corpus);
}

/* ---- subprocesses ------------------------------------------------------- */

/* Runs argv with TCP_NODELAY=1 (DCMTK's tools stall on Nagle's algorithm
 * otherwise), output to log (or /dev/null). Returns the exit status, 127
 * when the tool is missing, -1 on a signal. */
static pid_t spawn(char *const argv[], const char *log)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    setenv("TCP_NODELAY", "1", 1);
    int fd = open(log ? log : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
    }
    execvp(argv[0], argv);
    _exit(127);
}

static int reap(pid_t pid)
{
    int st;
    if (pid < 0 || waitpid(pid, &st, 0) != pid)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int run(char *const argv[], const char *log)
{
    return reap(spawn(argv, log));
}

static void require_tool(const char *tool)
{
    char *argv[] = { (char *)tool, (char *)"--version", NULL };
    if (run(argv, NULL) == 127)
        fail_msg("%s not installed (Debian package dcmtk, make deps)", tool);
}

/* ---- a minimal SCU: PS3.8 §9.3 PDUs ------------------------------------- */

typedef struct scu {
    int fd;
    unsigned char pcid;   /* the context to send on */
} scu;

static void be16(unsigned char *p, uint16_t v) { p[0] = (unsigned char)(v >> 8); p[1] = (unsigned char)v; }
static void be32(unsigned char *p, uint32_t v) { be16(p, (uint16_t)(v >> 16)); be16(p + 2, (uint16_t)v); }
static uint32_t rbe32(const unsigned char *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static uint16_t rbe16(const unsigned char *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static bool send_all(int fd, const void *p, size_t n)
{
    const unsigned char *b = p;
    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w <= 0)
            return false;
        b += w;
        n -= (size_t)w;
    }
    return true;
}

static bool recv_all(int fd, void *p, size_t n)
{
    unsigned char *b = p;
    while (n > 0) {
        ssize_t r = recv(fd, b, n, 0);
        if (r <= 0)
            return false;
        b += r;
        n -= (size_t)r;
    }
    return true;
}

/* One PDU: type and body (malloc'd). */
static bool read_pdu(int fd, unsigned char *type, unsigned char **body, uint32_t *len)
{
    unsigned char h[6];
    if (!recv_all(fd, h, 6))
        return false;
    *type = h[0];
    *len = rbe32(h + 2);
    if (*len > (1u << 24))
        return false;
    *body = malloc(*len + 1);
    return *body && recv_all(fd, *body, *len);
}

static size_t put_item(unsigned char *b, unsigned char type, const void *v, size_t len)
{
    b[0] = type;
    b[1] = 0;
    be16(b + 2, (uint16_t)len);
    memcpy(b + 4, v, len);
    return 4 + len;
}

typedef struct pctx {
    const char *abstract;
    const char *ts[3];
} pctx;

typedef struct assoc_result {
    unsigned char type;     /* 0x02 AC, 0x03 RJ, 0 nothing */
    unsigned char rj[3];    /* result, source, reason */
    unsigned char pc_result[8];
} assoc_result;

static int tcp_connect(const char *ip, uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    inet_pton(AF_INET, ip, &sa.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    struct timeval tv = { 20, 0 };   /* never hang the suite */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* A-ASSOCIATE-RQ with contexts 1, 3, 5 ...; returns what came back. */
static assoc_result scu_associate(scu *u, uint16_t port, const char *calling, const pctx *pcs, int npc)
{
    assoc_result res;
    memset(&res, 0, sizeof res);
    u->fd = tcp_connect("127.0.0.1", port);
    u->pcid = 1;
    assert_true(u->fd >= 0);

    unsigned char b[4096];
    size_t n = 6;
    be16(b + n, 1);          /* protocol version */
    be16(b + n + 2, 0);
    memset(b + n + 4, ' ', 32);
    memcpy(b + n + 4, OUR_AET, strlen(OUR_AET));
    memcpy(b + n + 20, calling, strlen(calling));
    memset(b + n + 36, 0, 32);
    n += 68;
    n += put_item(b + n, 0x10, "1.2.840.10008.3.1.1.1", 21);
    for (int i = 0; i < npc; i++) {
        unsigned char pc[1024];
        size_t m = 4;
        pc[0] = (unsigned char)(1 + 2 * i);
        pc[1] = pc[2] = pc[3] = 0;
        m += put_item(pc + m, 0x30, pcs[i].abstract, strlen(pcs[i].abstract));
        for (int k = 0; k < 3 && pcs[i].ts[k]; k++)
            m += put_item(pc + m, 0x40, pcs[i].ts[k], strlen(pcs[i].ts[k]));
        n += put_item(b + n, 0x20, pc, m);
    }
    unsigned char ui[128];
    size_t m = 0;
    unsigned char maxlen[4];
    be32(maxlen, 16384);
    m += put_item(ui + m, 0x51, maxlen, 4);
    m += put_item(ui + m, 0x52, "1.2.826.0.1.3680043.9.9999.1", 28);
    n += put_item(b + n, 0x50, ui, m);
    b[0] = 0x01;
    b[1] = 0;
    be32(b + 2, (uint32_t)(n - 6));
    assert_true(send_all(u->fd, b, n));

    unsigned char type, *body = NULL;
    uint32_t len;
    if (!read_pdu(u->fd, &type, &body, &len)) {
        free(body);
        return res;
    }
    res.type = type;
    if (type == 0x03 && len >= 4)
        memcpy(res.rj, body + 1, 3);
    for (size_t off = 68; type == 0x02 && off + 4 <= len;) {
        uint16_t ilen = rbe16(body + off + 2);
        if (body[off] == 0x21 && ilen >= 4) {
            int idx = (body[off + 4] - 1) / 2;
            if (idx >= 0 && idx < 8)
                res.pc_result[idx] = body[off + 6];
        }
        off += 4 + ilen;
    }
    free(body);
    return res;
}

/* P-DATA-TF PDUs of one PDV each; fragments of at most frag bytes. */
static bool scu_send_pdvs(scu *u, bool command, const unsigned char *p, size_t n, size_t frag, bool last)
{
    do {
        size_t k = n < frag ? n : frag;
        unsigned char h[12];
        h[0] = 0x04;
        h[1] = 0;
        be32(h + 2, (uint32_t)(k + 6));
        be32(h + 6, (uint32_t)(k + 2));
        h[10] = u->pcid;
        h[11] = (unsigned char)((command ? 1 : 0) | ((last && k == n) ? 2 : 0));
        if (!send_all(u->fd, h, 12) || !send_all(u->fd, p, k))
            return false;
        p += k;
        n -= k;
    } while (n > 0);
    return true;
}

static size_t cmd_elem(unsigned char *b, uint16_t elem, const void *v, size_t len)
{
    size_t padded = len + (len & 1);
    b[0] = b[1] = 0;
    b[2] = (unsigned char)elem;
    b[3] = (unsigned char)(elem >> 8);
    b[4] = (unsigned char)padded;
    b[5] = (unsigned char)(padded >> 8);
    b[6] = b[7] = 0;
    memcpy(b + 8, v, len);
    if (padded != len)
        b[8 + len] = 0;
    return 8 + padded;
}

static size_t cmd_us(unsigned char *b, uint16_t elem, uint16_t v)
{
    unsigned char x[2] = { (unsigned char)v, (unsigned char)(v >> 8) };
    return cmd_elem(b, elem, x, 2);
}

/* C-STORE-RQ (PS3.7 §9.3.1.1), implicit VR LE with its group length. */
static bool scu_send_store_rq(scu *u, const char *sop_class, const char *sop_instance)
{
    unsigned char b[512];
    size_t n = 12;
    n += cmd_elem(b + n, 0x0002, sop_class, strlen(sop_class));
    n += cmd_us(b + n, 0x0100, 0x0001);
    n += cmd_us(b + n, 0x0110, 7);
    n += cmd_us(b + n, 0x0700, 0);
    n += cmd_us(b + n, 0x0800, 0x0000);
    n += cmd_elem(b + n, 0x1000, sop_instance, strlen(sop_instance));
    unsigned char gl[4] = { (unsigned char)(n - 12), (unsigned char)((n - 12) >> 8), 0, 0 };
    cmd_elem(b, 0x0000, gl, 4);
    return scu_send_pdvs(u, true, b, n, 16000, true);
}

typedef struct rsp {
    bool ok;
    uint16_t field, status;
    char comment[128], sop_instance[65];
} rsp;

/* Reads the response command set and picks out a few elements. */
static rsp scu_read_rsp(scu *u)
{
    rsp r;
    memset(&r, 0, sizeof r);
    unsigned char cmd[4096];
    size_t n = 0;
    bool last = false;
    while (!last) {
        unsigned char type, *body = NULL;
        uint32_t len;
        if (!read_pdu(u->fd, &type, &body, &len) || type != 0x04) {
            free(body);
            return r;
        }
        for (size_t off = 0; off + 6 <= len;) {
            uint32_t plen = rbe32(body + off);
            if (plen < 2 || off + 4 + plen > len || n + plen - 2 > sizeof cmd)
                break;
            memcpy(cmd + n, body + off + 6, plen - 2);
            n += plen - 2;
            last = body[off + 5] & 2;
            off += 4 + plen;
        }
        free(body);
    }
    for (size_t off = 0; off + 8 <= n;) {
        uint16_t elem = le16(cmd + off + 2);
        uint32_t len = le32(cmd + off + 4);
        const unsigned char *v = cmd + off + 8;
        if (off + 8 + len > n)
            return r;
        if (elem == 0x0100)
            r.field = le16(v);
        else if (elem == 0x0900)
            r.status = le16(v);
        else if (elem == 0x0902)
            meta_string(r.comment, sizeof r.comment, v, len);
        else if (elem == 0x1000)
            meta_string(r.sop_instance, sizeof r.sop_instance, v, len);
        off += 8 + len;
    }
    r.ok = true;
    return r;
}

static void scu_release(scu *u)
{
    unsigned char rq[10] = { 0x05, 0, 0, 0, 0, 4, 0, 0, 0, 0 };
    assert_true(send_all(u->fd, rq, sizeof rq));
    unsigned char type, *body = NULL;
    uint32_t len;
    assert_true(read_pdu(u->fd, &type, &body, &len));
    assert_int_equal(type, 0x06);
    free(body);
    close(u->fd);
    u->fd = -1;
}

/* Stores one corpus file through the raw SCU; returns the response. */
static rsp scu_store_file(fixture *fx, const dfile *f)
{
    scu u;
    pctx pc = { f->sop_class, { f->ts, NULL, NULL } };
    assoc_result ar = scu_associate(&u, fx->port, "RAWSCU", &pc, 1);
    assert_int_equal(ar.type, 0x02);
    assert_int_equal(ar.pc_result[0], 0);
    assert_true(scu_send_store_rq(&u, f->sop_class, f->sop_instance));
    assert_true(scu_send_pdvs(&u, false, f->b + f->ds, f->n - f->ds, 16372, true));
    rsp r = scu_read_rsp(&u);
    scu_release(&u);
    return r;
}

/* ---- dcmdump as the oracle for storescu transfers ----------------------- */

/* dcmdump's listing of a file, keeping only what must survive a network
 * transfer: no group 0002, no group lengths, no trailing padding, no
 * delimitation items, no length annotations (storescu re-encodes lengths). */
static char *dump_normalized(const fixture *fx, const char *path)
{
    char log[600];
    snprintf(log, sizeof log, "%s/dump.txt", fx->root);
    char *argv[] = { (char *)"dcmdump", (char *)"-q", (char *)"+L", (char *)"-Un", (char *)path, NULL };
    if (run(argv, log) != 0)
        return NULL;
    FILE *fp = fopen(log, "r");
    if (!fp)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *out = malloc(cap), line[1 << 16];
    while (out && fgets(line, sizeof line, fp)) {
        char *t = line + strspn(line, " ");
        unsigned g, e;
        if (sscanf(t, "(%4x,%4x)", &g, &e) != 2)
            continue;
        if (g == 0x0002 || e == 0x0000 || (g == 0xfffc && e == 0xfffc) || (g == 0xfffe && e != 0xe000))
            continue;
        char *hash = strchr(t, '#');
        if (strstr(t, " SQ (") || (g == 0xfffe && e == 0xe000))
            hash = t + 14;   /* "(gggg,eeee) VR": drop "(Sequence with undefined length #=1)" */
        if (hash)
            *hash = '\0';
        size_t len = strlen(t);
        while (len > 0 && (t[len - 1] == ' ' || t[len - 1] == '\n'))
            t[--len] = '\0';
        if (n + len + 2 > cap) {
            cap = (cap + len) * 2;
            char *grown = realloc(out, cap);
            if (!grown) {
                free(out);
                out = NULL;
                break;
            }
            out = grown;
        }
        memcpy(out + n, t, len);
        n += len;
        out[n++] = '\n';
        out[n] = '\0';
    }
    fclose(fp);
    return out;
}

/* ---- tests -------------------------------------------------------------- */

static void test_dimse_echoscu_succeeds(void **state)
{
    fixture *fx = *state;
    require_tool("echoscu");
    fx_start(fx, NULL, 0, 0);
    char port[8];
    snprintf(port, sizeof port, "%u", fx->port);
    char *argv[] = { "echoscu", "-aet", "ECHOSCU", "-aec", OUR_AET, "127.0.0.1", port, NULL };
    assert_int_equal(run(argv, NULL), 0);
    assert_int_equal(fx_count(fx), 0);
}

/* One file per transfer syntax, with the storescu option that proposes it. */
static const struct { const char *rel, *propose; } storescu_files[] = {
    { "dicom/explicit_le/CT_small.dcm",                   "-xe" },
    { "dicom/implicit_le/MR_small_implicit.dcm",          "-xi" },
    { "dicom/explicit_be/MR_small_bigendian.dcm",         "-xb" },
    { "dicom/jpeg_baseline_50/SC_rgb_jpeg_dcmtk.dcm",     "-xy" },
    { "dicom/jpeg_lossless_sv1_70/CT0012.fragmented_no_bot_jpeg_lossless.70.dcm", "-xs" },
    { "dicom/jpegls_lossless_80/JLSL_08_07_0_1F.dcm",     "-xt" },
    { "dicom/jpegls_near_81/CT1_JLSN.dcm",                "-xu" },
    { "dicom/j2k_lossless_90/MR_small_jp2klossless.dcm",  "-xv" },
    { "dicom/j2k_91/693_J2KI.dcm",                        "-xw" },
    { "dicom/rle_5/MR_small_RLE.dcm",                     "-xr" },
    { "dicom/deflate/image_dfl.dcm",                      "-xd" },
    { "ecg/dicom/waveform_ecg.dcm",                       "-xe" },
    { "dicom/sr/reportsi.dcm",                            "-xe" },
    { "dicom/sr/99+PhoenixDocument+00001.dcm",            "-xi" },
};

static void test_dimse_storescu_files_arrive_in_their_transfer_syntax(void **state)
{
    fixture *fx = *state;
    require_tool("storescu");
    require_tool("dcmdump");
    require_corpus(fx);
    fx_start(fx, "127.0.0.1", 0, 0);
    char port[8], log[600];
    snprintf(port, sizeof port, "%u", fx->port);
    snprintf(log, sizeof log, "%s/storescu.log", fx->root);
    size_t nfiles = sizeof storescu_files / sizeof storescu_files[0];
    for (size_t i = 0; i < nfiles; i++) {
        char path[600];
        corpus_path(fx, storescu_files[i].rel, path, sizeof path);
        char *argv[] = { "storescu", "-R", (char *)storescu_files[i].propose, "-aet", "STORESCU",
                         "-aec", OUR_AET, "127.0.0.1", port, path, NULL };
        int rc = run(argv, log);
        if (rc != 0)
            fail_msg("storescu %s %s: exit %d (see %s)", storescu_files[i].propose, path, rc, log);
        assert_int_equal(fx_count(fx), (int)i + 1);

        dfile orig, got;
        assert_true(dfile_read(&orig, path));
        const record *r = &fx->rec[i];
        assert_true(dfile_read(&got, r->path));
        assert_string_equal(r->ts, orig.ts);            /* negotiated as proposed */
        assert_string_equal(got.ts, orig.ts);           /* and said so in the meta header */
        assert_string_equal(r->sop_class, orig.sop_class);
        assert_string_equal(r->sop_instance, orig.sop_instance);
        assert_string_equal(got.sop_instance, orig.sop_instance);
        assert_string_equal(r->calling, "STORESCU");
        assert_string_equal(r->called, OUR_AET);
        assert_string_equal(r->peer, "127.0.0.1");
        assert_int_equal(r->size, got.n);
        char *a = dump_normalized(fx, path), *b = dump_normalized(fx, r->path);
        assert_non_null(a);
        assert_non_null(b);
        assert_true(strlen(a) > 200);   /* the oracle saw a real data set */
        if (strcmp(a, b) != 0)
            fail_msg("%s: received data set differs from the original (dcmdump)", storescu_files[i].rel);
        free(a);
        free(b);
        dfile_free(&orig);
        dfile_free(&got);
    }
    DIR *d = opendir(fx->spool);   /* nothing left behind */
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.')
            fail_msg("left in spool: %s", e->d_name);
    closedir(d);
}

/* Data set bytes as sent, for every syntax, including those DCMTK 3.6.7
 * does not know; several-megabyte multi-frame instances span many PDUs. */
static const char *const raw_files[] = {
    "dicom/explicit_le/CT_small.dcm",
    "dicom/explicit_be/MR_small_bigendian.dcm",
    "dicom/jpeg_baseline_50/SC_rgb_jpeg_dcmtk.dcm",
    "dicom/jpeg_extended_51/JPGExtended.dcm",
    "dicom/jpeg_lossless_57/CT0012.fragmented_no_bot_jpeg_lossless.57.dcm",
    "dicom/jpeg_lossless_sv1_70/CT0012.fragmented_no_bot_jpeg_lossless.70.dcm",
    "dicom/jpegls_lossless_80/CT1_UNC.fragmented_bot_jpeg_ls.80.dcm",
    "dicom/jpegls_near_81/CT1_JLSN.dcm",
    "dicom/j2k_lossless_90/NM_Kakadu44_SOTmarkerincons.dcm",
    "dicom/j2k_91/RG1_J2KI.dcm",
    "dicom/htj2k_201/HTJ2KLossless_08_RGB.dcm",
    "dicom/rle_5/OBXXXX1A_rle_2frame.dcm",
    "dicom/deflate/image_dfl.dcm",
    "dicom/deflate/liver_deflate.dcm",
    "ecg/dicom/waveform_ecg.dcm",
    "ecg/dicom/wave_dfl",
    "dicom/sr/99+PhoenixDocument+00001.dcm",
};

static void test_dimse_stores_data_set_bytes_exactly_as_sent(void **state)
{
    fixture *fx = *state;
    require_corpus(fx);
    fx_start(fx, NULL, 0, 0);
    size_t nfiles = sizeof raw_files / sizeof raw_files[0];
    for (size_t i = 0; i < nfiles; i++) {
        char path[600];
        corpus_path(fx, raw_files[i], path, sizeof path);
        dfile orig, got;
        if (!dfile_read(&orig, path))
            fail_msg("cannot read %s", path);
        rsp r = scu_store_file(fx, &orig);
        assert_true(r.ok);
        assert_int_equal(r.field, 0x8001);
        assert_int_equal(r.status, 0x0000);
        assert_string_equal(r.sop_instance, orig.sop_instance);
        assert_int_equal(fx_count(fx), (int)i + 1);
        const record *rec = &fx->rec[i];
        assert_string_equal(rec->ts, orig.ts);
        assert_true(dfile_read(&got, rec->path));
        assert_string_equal(got.ts, orig.ts);
        assert_string_equal(got.sop_class, orig.sop_class);
        assert_int_equal(rec->size, got.n);
        if (got.n - got.ds != orig.n - orig.ds || memcmp(got.b + got.ds, orig.b + orig.ds, orig.n - orig.ds) != 0)
            fail_msg("%s: data set bytes differ", raw_files[i]);
        dfile_free(&orig);
        dfile_free(&got);
    }
}

/* In memory while the file fits, spilled to the spool file from the PDV
 * that does not fit; either way the same bytes, and the data set's SHA-256
 * (OpenSSL's one-shot SHA256 as the oracle) computed on the way. */
static void test_dimse_memory_mode_keeps_small_spills_large_and_hashes(void **state)
{
    fixture *fx = *state;
    require_corpus(fx);
    enum { MEM_MAX = 256 * 1024 };
    fx_start_mem(fx, NULL, 0, 0, MEM_MAX);
    size_t nfiles = sizeof raw_files / sizeof raw_files[0];
    int in_memory = 0, spilled = 0;
    for (size_t i = 0; i < nfiles; i++) {
        char path[600];
        corpus_path(fx, raw_files[i], path, sizeof path);
        dfile orig, got;
        if (!dfile_read(&orig, path))
            fail_msg("cannot read %s", path);
        rsp r = scu_store_file(fx, &orig);
        assert_true(r.ok);
        assert_int_equal(r.status, 0x0000);
        const record *rec = &fx->rec[i];
        assert_true(dfile_read(&got, rec->path));
        assert_int_equal(rec->dataset_offset, got.ds);
        if (got.n - got.ds != orig.n - orig.ds || memcmp(got.b + got.ds, orig.b + orig.ds, orig.n - orig.ds) != 0)
            fail_msg("%s: data set bytes differ", raw_files[i]);
        unsigned char want[32];
        SHA256(orig.b + orig.ds, orig.n - orig.ds, want);
        assert_true(rec->hashed);
        assert_memory_equal(rec->sha256, want, 32);
        assert_int_equal(rec->in_memory, got.n <= MEM_MAX);
        in_memory += rec->in_memory;
        spilled += !rec->in_memory;
        dfile_free(&orig);
        dfile_free(&got);
    }
    assert_true(in_memory > 0 && spilled > 0);   /* both paths taken */
    DIR *d = opendir(fx->spool);   /* spilled files were handed over, none left */
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.')
            fail_msg("left in spool: %s", e->d_name);
    closedir(d);
}

static void test_dimse_failure_status_and_comment_reach_the_sender(void **state)
{
    fixture *fx = *state;
    require_corpus(fx);
    fx->status = DIMSE_STATUS_OUT_OF_RESOURCES;
    snprintf(fx->comment, sizeof fx->comment, "store full\\ please retry later");
    fx_start(fx, NULL, 0, 0);
    char path[600];
    corpus_path(fx, "dicom/explicit_le/CT_small.dcm", path, sizeof path);
    dfile f;
    assert_true(dfile_read(&f, path));
    rsp r = scu_store_file(fx, &f);
    assert_true(r.ok);
    assert_int_equal(r.status, 0xA700);
    assert_string_equal(r.comment, "store full  please retry later");   /* LO: no backslash */
    dfile_free(&f);

    require_tool("storescu");
    char port[8];
    snprintf(port, sizeof port, "%u", fx->port);
    char *argv[] = { "storescu", "-R", "-xe", "-aec", OUR_AET, "127.0.0.1", port, path, NULL };
    assert_int_not_equal(run(argv, NULL), 0);
    assert_int_equal(fx_count(fx), 2);   /* the callback ran; it said no */
}

static void test_dimse_unwritable_spool_answers_out_of_resources(void **state)
{
    fixture *fx = *state;
    require_corpus(fx);
    fx_start(fx, NULL, 0, 0);
    assert_int_equal(rmdir(fx->spool), 0);   /* the spool disappears under us */
    char path[600];
    corpus_path(fx, "dicom/explicit_le/CT_small.dcm", path, sizeof path);
    dfile f;
    assert_true(dfile_read(&f, path));
    rsp r = scu_store_file(fx, &f);   /* the data set is drained, the association survives */
    assert_true(r.ok);
    assert_int_equal(r.status, 0xA700);
    assert_string_equal(r.comment, "cannot write spool file");
    assert_int_equal(fx_count(fx), 0);
    assert_int_equal(mkdir(fx->spool, 0700), 0);
    r = scu_store_file(fx, &f);
    assert_int_equal(r.status, 0x0000);
    assert_int_equal(fx_count(fx), 1);
    dfile_free(&f);
}

static void test_dimse_rejects_unknown_calling_and_called_ae(void **state)
{
    fixture *fx = *state;
    require_tool("storescu");
    require_corpus(fx);
    fx_start(fx, NULL, 0, 0);
    char port[8], path[600];
    snprintf(port, sizeof port, "%u", fx->port);
    corpus_path(fx, "dicom/explicit_le/CT_small.dcm", path, sizeof path);
    char *argv[] = { "storescu", "-R", "-aet", "BADSCU", "-aec", OUR_AET, "127.0.0.1", port, path, NULL };
    assert_int_not_equal(run(argv, NULL), 0);
    char *argv2[] = { "storescu", "-R", "-aet", "GOODSCU", "-aec", "NOTUS", "127.0.0.1", port, path, NULL };
    assert_int_not_equal(run(argv2, NULL), 0);
    assert_int_equal(fx_count(fx), 0);

    scu u;
    pctx pc = { UID_CT, { UID_EXPLICIT_LE, NULL, NULL } };
    assoc_result ar = scu_associate(&u, fx->port, "BADSCU", &pc, 1);
    close(u.fd);
    assert_int_equal(ar.type, 0x03);
    assert_int_equal(ar.rj[0], 1);   /* rejected permanent */
    assert_int_equal(ar.rj[1], 1);   /* by the service user */
    assert_int_equal(ar.rj[2], 3);   /* calling AE title not recognised */
}

static void test_dimse_refuses_non_storage_accepts_unknown_sop_classes(void **state)
{
    fixture *fx = *state;
    fx_start(fx, NULL, 0, 0);
    scu u;
    pctx pcs[] = {
        { "1.2.840.10008.5.1.4.31", { UID_EXPLICIT_LE, NULL, NULL } },            /* worklist FIND */
        { "1.2.826.0.1.3680043.9.9999.77.1", { UID_EXPLICIT_LE, NULL, NULL } },   /* unknown: maybe storage */
        { UID_CT, { "1.2.3.4.5", NULL, NULL } },                                  /* no syntax we know */
        { UID_CT, { "1.2.3.4.5", "1.2.840.10008.1.2.4.203", UID_EXPLICIT_LE } },  /* first known wins */
        { "1.2.840.10008.1.1", { "1.2.840.10008.1.2", NULL, NULL } },             /* verification */
        { "1.2.840.10008.5.1.4.1.1.9.1.1", { "1.2.840.10008.1.2", NULL, NULL } }, /* 12-lead ECG */
        { "1.2.840.10008.5.1.4.1.1.104.1", { UID_EXPLICIT_LE, NULL, NULL } },     /* encapsulated PDF */
        { "01.2.3", { UID_EXPLICIT_LE, NULL, NULL } },                            /* malformed UID */
    };
    assoc_result ar = scu_associate(&u, fx->port, "RAWSCU", pcs, 8);
    assert_int_equal(ar.type, 0x02);
    assert_int_equal(ar.pc_result[0], 3);   /* abstract syntax not supported */
    assert_int_equal(ar.pc_result[1], 0);
    assert_int_equal(ar.pc_result[2], 4);   /* transfer syntaxes not supported */
    assert_int_equal(ar.pc_result[3], 0);
    assert_int_equal(ar.pc_result[4], 0);
    assert_int_equal(ar.pc_result[5], 0);
    assert_int_equal(ar.pc_result[6], 0);
    assert_int_equal(ar.pc_result[7], 3);
    scu_release(&u);
}

static void test_dimse_rejects_associations_beyond_the_limit(void **state)
{
    fixture *fx = *state;
    fx_start(fx, NULL, 1, 0);
    pctx pc = { UID_CT, { UID_EXPLICIT_LE, NULL, NULL } };
    scu a, b, c;
    assoc_result ra = scu_associate(&a, fx->port, "FIRST", &pc, 1);
    assert_int_equal(ra.type, 0x02);
    assoc_result rb = scu_associate(&b, fx->port, "SECOND", &pc, 1);
    close(b.fd);
    assert_int_equal(rb.type, 0x03);
    assert_int_equal(rb.rj[0], 2);   /* rejected transient */
    assert_int_equal(rb.rj[1], 3);   /* service provider, presentation related */
    assert_int_equal(rb.rj[2], 2);   /* local limit exceeded */
    scu_release(&a);
    /* The slot frees once the first association's thread has finished. */
    assoc_result rc = { 0 };
    for (int tries = 0; tries < 50; tries++) {
        rc = scu_associate(&c, fx->port, "THIRD", &pc, 1);
        if (rc.type == 0x02)
            break;
        close(c.fd);
        usleep(100 * 1000);
    }
    assert_int_equal(rc.type, 0x02);
    scu_release(&c);
}

static int spool_parts(const fixture *fx)
{
    int n = 0;
    DIR *d = opendir(fx->spool);
    if (!d)
        return -1;
    for (struct dirent *e; (e = readdir(d));)
        if (strncmp(e->d_name, "rx-", 3) == 0)
            n++;
    closedir(d);
    return n;
}

static void test_dimse_broken_transfer_leaves_no_file_and_no_call(void **state)
{
    fixture *fx = *state;
    require_corpus(fx);
    fx_start(fx, NULL, 0, 0);
    char path[600];
    corpus_path(fx, "dicom/j2k_lossless_90/NM_Kakadu44_SOTmarkerincons.dcm", path, sizeof path);
    dfile f;
    assert_true(dfile_read(&f, path));
    scu u;
    pctx pc = { f.sop_class, { f.ts, NULL, NULL } };
    assert_int_equal(scu_associate(&u, fx->port, "RAWSCU", &pc, 1).type, 0x02);
    assert_true(scu_send_store_rq(&u, f.sop_class, f.sop_instance));
    assert_true(scu_send_pdvs(&u, false, f.b + f.ds, (f.n - f.ds) / 2, 16372, false));
    int tries = 0;
    while (spool_parts(fx) == 0 && tries++ < 100)
        usleep(50 * 1000);
    assert_int_equal(spool_parts(fx), 1);   /* the partial file exists ... */
    close(u.fd);                            /* ... until the link drops */
    tries = 0;
    while (spool_parts(fx) != 0 && tries++ < 100)
        usleep(50 * 1000);
    assert_int_equal(spool_parts(fx), 0);
    assert_int_equal(fx_count(fx), 0);
    dfile_free(&f);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void test_dimse_stop_cuts_idle_associations_after_grace(void **state)
{
    fixture *fx = *state;
    fx_start(fx, NULL, 0, 200);
    pctx pc = { UID_CT, { UID_EXPLICIT_LE, NULL, NULL } };
    scu u;
    assert_int_equal(scu_associate(&u, fx->port, "IDLE", &pc, 1).type, 0x02);
    double t0 = now_s();
    dimse_scp_stop(&fx->scp);
    double took = now_s() - t0;
    assert_null(fx->scp);
    assert_true(took < 3.0);
    unsigned char type, *body = NULL;   /* the peer sees the association end */
    uint32_t len;
    bool got = read_pdu(u.fd, &type, &body, &len);
    assert_true(!got || type == 0x07);
    free(body);
    close(u.fd);
}

static void test_dimse_serves_concurrent_storescu(void **state)
{
    fixture *fx = *state;
    require_tool("storescu");
    require_corpus(fx);
    fx_start(fx, NULL, 4, 0);
    char port[8], p1[600], p2[600], p3[600];
    snprintf(port, sizeof port, "%u", fx->port);
    corpus_path(fx, "dicom/explicit_le/CT_small.dcm", p1, sizeof p1);
    corpus_path(fx, "ecg/dicom/waveform_ecg.dcm", p2, sizeof p2);
    corpus_path(fx, "dicom/sr/reportsi.dcm", p3, sizeof p3);
    enum { N = 4 };
    pid_t pids[N];
    for (int i = 0; i < N; i++) {
        char *argv[] = { "storescu", "-R", "-xe", "-aec", OUR_AET, "127.0.0.1", port, p1, p2, p3, NULL };
        pids[i] = spawn(argv, NULL);
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(reap(pids[i]), 0);
    assert_int_equal(fx_count(fx), 3 * N);
}

static void test_dimse_binds_only_the_requested_address(void **state)
{
    fixture *fx = *state;
    fx_start(fx, "127.0.0.2", 0, 0);   /* all of 127/8 is loopback on Linux */
    int fd = tcp_connect("127.0.0.1", fx->port);
    if (fd >= 0)
        close(fd);
    assert_true(fd < 0);
    fd = tcp_connect("127.0.0.2", fx->port);
    assert_true(fd >= 0);
    close(fd);
}

/* The SCP's end of a connection lives in this process: find it by its peer
 * address among our descriptors. */
static int find_server_socket(const struct sockaddr_in *client)
{
    for (int fd = 3; fd < 1024; fd++) {
        struct sockaddr_in peer;
        socklen_t len = sizeof peer;
        if (getpeername(fd, (struct sockaddr *)&peer, &len) == 0 && peer.sin_family == AF_INET &&
            peer.sin_port == client->sin_port && peer.sin_addr.s_addr == client->sin_addr.s_addr)
            return fd;
    }
    return -1;
}

static void test_dimse_sets_tcp_nodelay_whatever_the_environment(void **state)
{
    fixture *fx = *state;
    const char *saved = getenv("TCP_NODELAY");
    char *keep = saved ? strdup(saved) : NULL;
    setenv("TCP_NODELAY", "0", 1);   /* DCMTK would leave Nagle on */
    fx_start(fx, NULL, 0, 0);
    pctx pc = { UID_CT, { UID_EXPLICIT_LE, NULL, NULL } };
    scu u;
    assert_int_equal(scu_associate(&u, fx->port, "NAGLE", &pc, 1).type, 0x02);
    struct sockaddr_in me;
    socklen_t len = sizeof me;
    assert_int_equal(getsockname(u.fd, (struct sockaddr *)&me, &len), 0);
    int fd = find_server_socket(&me);
    assert_true(fd >= 0);
    int nodelay = 0;
    len = sizeof nodelay;
    assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &len), 0);
    assert_int_equal(nodelay, 1);
    scu_release(&u);
    dimse_scp_stop(&fx->scp);
    if (keep)
        setenv("TCP_NODELAY", keep, 1);
    else
        unsetenv("TCP_NODELAY");
    free(keep);
}

/* A caller that connects and says nothing, in clear or before its TLS
 * handshake, holds one of the max_assocs slots only for the ACSE timeout. */
static void silent_caller_dropped(fixture *fx, bool tls)
{
    char cert[700], key[700], cmd[2400];
    snprintf(cert, sizeof cert, "%s/scp.pem", fx->root);
    snprintf(key, sizeof key, "%s/scp.key", fx->root);
    if (tls) {
        snprintf(cmd, sizeof cmd,
                 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout %s -out %s "
                 "-days 1 -subj /CN=scp >/dev/null 2>&1",
                 key, cert);
        assert_int_equal(system(cmd), 0);
    }
    dimse_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.aet = OUR_AET;
    cfg.spool_dir = fx->spool;
    cfg.acse_timeout_s = 1;
    cfg.accept = fx_accept;
    cfg.store = fx_store;
    cfg.ctx = fx;
    cfg.tls_cert = tls ? cert : NULL;
    cfg.tls_key = tls ? key : NULL;
    char err[256];
    if (dimse_scp_start(&cfg, &fx->scp, err, sizeof err) != 0)
        fail_msg("dimse_scp_start: %s", err);
    int fd = tcp_connect("127.0.0.1", dimse_scp_port(fx->scp));
    assert_true(fd >= 0);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    double t0 = now_s();
    char b[64];
    ssize_t r = read(fd, b, sizeof b);   /* the SCP closes: 0, or a reset */
    double took = now_s() - t0;
    assert_true(r <= 0 && !(r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)));
    assert_true(took > 0.5 && took < 4.0);
    close(fd);
}

static void test_dimse_silent_caller_is_dropped_after_the_acse_timeout(void **state)
{
    silent_caller_dropped(*state, false);
}

static void test_dimse_silent_tls_caller_is_dropped_after_the_acse_timeout(void **state)
{
    silent_caller_dropped(*state, true);
}

static void test_dimse_start_rejects_bad_configuration(void **state)
{
    fixture *fx = *state;
    dimse_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.aet = OUR_AET;
    cfg.spool_dir = fx->spool;
    char err[256];
    dimse_scp *s = NULL;
    assert_int_equal(dimse_scp_start(&cfg, &s, err, sizeof err), -EINVAL);   /* no store callback */
    assert_true(err[0] != '\0');
    assert_null(s);
    cfg.store = fx_store;
    cfg.aet = "AN_AE_TITLE_TOO_LONG";
    assert_int_equal(dimse_scp_start(&cfg, &s, err, sizeof err), -EINVAL);
    cfg.aet = OUR_AET;
    cfg.spool_dir = "/nonexistent/dxhub-spool";
    assert_int_equal(dimse_scp_start(&cfg, &s, err, sizeof err), -ENOENT);
    assert_non_null(strstr(err, "/nonexistent/dxhub-spool"));
    cfg.spool_dir = fx->spool;
    cfg.bind_addr = "not an address";
    assert_true(dimse_scp_start(&cfg, &s, err, sizeof err) < 0);
    assert_null(s);
    assert_string_equal(dimse_strerror(-ENOENT), strerror(ENOENT));
    assert_non_null(dimse_strerror(DIMSE_ELIB));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_dimse_echoscu_succeeds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dimse_storescu_files_arrive_in_their_transfer_syntax, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dimse_stores_data_set_bytes_exactly_as_sent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dimse_failure_status_and_comment_reach_the_sender, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dimse_unwritable_spool_answers_out_of_resources, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dimse_rejects_unknown_calling_and_called_ae, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dimse_refuses_non_storage_accepts_unknown_sop_classes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dimse_rejects_associations_beyond_the_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dimse_broken_transfer_leaves_no_file_and_no_call, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dimse_stop_cuts_idle_associations_after_grace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dimse_serves_concurrent_storescu, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dimse_memory_mode_keeps_small_spills_large_and_hashes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dimse_binds_only_the_requested_address, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dimse_sets_tcp_nodelay_whatever_the_environment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dimse_silent_caller_is_dropped_after_the_acse_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dimse_silent_tls_caller_is_dropped_after_the_acse_timeout, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_dimse_start_rejects_bad_configuration, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
