/* fuzz_hub_messages.c — what the hub parses from its peers before any of
 * its own state is touched: a ZeroMQ message's frames (proto_recv: the
 * command, the JSON header, the data frames; every request of the reader
 * and link protocols starts here) and a signed report's document
 * (report_parse, then every field and instance read back, as a lookup
 * answer from another hub is read); and, at a clinic's gateway, what the
 * hub sent back as a person reads it (inbox_summary_read: a report bundle
 * with its base64 document, or an ECG repeat request).
 *
 * Input: byte 0 chooses (bit 0: a report document; else bit 1: an inbox
 * item, bit 2 saying "report" rather than "alert"; else frames); for
 * frames, the rest is split at each "\xff\xfe" into frames sent as one
 * multipart message over an inproc PAIR.
 *
 * fuzz-objects: hub/proto.c hub/report.c hub/errbuf.c hub/digest.c hub/pki_key.c hub/pki_pass.c
 * fuzz-objects: hub/inbox_summary.c hub/person_name.c hub/b64.c */
#include <string.h>
#include <zmq.h>
#include <stdlib.h>
#include "hub/inbox_summary.h"
#include "hub/proto.h"
#include "hub/report.h"

static void *ctx, *tx, *rx;

static int open_pair(void)
{
    if (rx)
        return 0;
    ctx = zmq_ctx_new();
    tx = zmq_socket(ctx, ZMQ_PAIR);
    rx = zmq_socket(ctx, ZMQ_PAIR);
    if (!ctx || !tx || !rx || zmq_bind(rx, "inproc://fuzz") || zmq_connect(tx, "inproc://fuzz"))
        return -1;
    return 0;
}

static void frames(const uint8_t *p, size_t n)
{
    if (open_pair() < 0)
        return;
    for (;;) {
        const uint8_t *sep = memmem(p, n, "\xff\xfe", 2);
        size_t len = sep ? (size_t)(sep - p) : n;
        zmq_send(tx, p, len, sep ? ZMQ_SNDMORE : 0);
        if (!sep)
            break;
        p = sep + 2;
        n -= len + 2;
    }
    proto_msg m;
    char err[256];
    if (proto_recv(rx, false, 0, &m, err, sizeof err) == PROTO_OK) {
        /* what every handler reads first */
        (void)proto_str(&m, "task");
        (void)proto_str(&m, "action");
        (void)proto_int(&m, "req", -1);
        (void)proto_int(&m, "credit", 0);
    }
    proto_msg_close(&m);
}

static void report(const uint8_t *p, size_t n)
{
    report_doc *d = NULL;
    char err[256];
    if (report_parse(p, n, &d, err, sizeof err) != 0)
        return;
    const report_info *in = report_doc_info(d);
    size_t total = strlen(in->report_id) + strlen(in->study_uid);
    report_instance inst;
    for (size_t i = 0; report_doc_instance(d, i, &inst) == 0; i++)
        total += strlen(inst.sop);
    (void)total;
    report_free(&d);
}

static void inbox(const char *kind, const uint8_t *p, size_t n)
{
    inbox_summary sum;
    if (inbox_summary_read(kind, p, n, &sum) == 0 &&
        (!memchr(sum.patient_id, 0, sizeof sum.patient_id) || !memchr(sum.text, 0, sizeof sum.text) ||
         !memchr(sum.exam, 0, sizeof sum.exam)))
        abort(); /* every field a terminated string */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] & 1)
        report(data + 1, size - 1);
    else if (data[0] & 2)
        inbox(data[0] & 4 ? "report" : "alert", data + 1, size - 1);
    else
        frames(data + 1, size - 1);
    return 0;
}
