// cdc_dcmtk.cc — the one C++ adapter of codecs/ onto DCMTK's dcmjpeg: the
// JPEG processes libjpeg-turbo 2.1 lacks (12-bit Extended, lossless Process
// 14 and its SV1 selection, any precision up to 16).  DCMTK's IJG decoders
// are used directly on a frame's bytes (no DcmDataset, no codec registry).
// Every entry point catches all exceptions; DCMTK's logger for dcmjpeg is
// quietened once, under pthread_once.
#include <pthread.h>
#include <new>
#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmjpeg/djcparam.h"
#include "dcmtk/dcmjpeg/djdijg8.h"
#include "dcmtk/dcmjpeg/djdijg12.h"
#include "dcmtk/dcmjpeg/djdijg16.h"
#include "dcmtk/oflog/oflog.h"
#include "codecs/cdc_private.h"

namespace {

pthread_once_t dcmtk_once = PTHREAD_ONCE_INIT;

void dcmtk_setup()
{
    // dcmjpeg reports libjpeg warnings through its logger; we return errors instead.
    OFLog::getLogger("dcmtk.dcmjpeg").setLogLevel(OFLogger::FATAL_LOG_LEVEL);
}

int decode(const cdc_fmt *fmt, const uint8_t *src, size_t n, uint8_t *out, size_t out_len, dcm_err *err)
{
    cdc_jpeg_sof sof;
    int rc = cdc_jpeg_scan_sof(src, n, &sof, err);
    if (rc < 0)
        return rc;
    rc = cdc_check_dims(fmt, sof.rows, sof.cols, sof.components, "JPEG", err);
    if (rc < 0)
        return rc;
    if (sof.precision < 2 || sof.precision > 16)
        return dcm_fail(err, CDC_ECODEC, 0, "JPEG precision %u", sof.precision);
    if (n > UINT32_MAX)
        return dcm_fail(err, DCM_ETOOBIG, 0, "JPEG frame over 4 GiB");
    pthread_once(&dcmtk_once, dcmtk_setup);
    bool lossless = sof.marker == 0xC3 || sof.marker == 0xC7 || sof.marker == 0xCB || sof.marker == 0xCF;
    bool ybr = !lossless && (fmt->photometric == CDC_PI_YBR_FULL || fmt->photometric == CDC_PI_YBR_FULL_422 ||
                             fmt->photometric == CDC_PI_YBR_PARTIAL_420);
    // Lossy colour comes out as RGB (as TurboJPEG's path); lossless as stored.
    DJCodecParameter cp(ECC_lossyYCbCr, lossless ? EDC_never : EDC_photometricInterpretation, EUC_never, EPC_default);
    DJDecoder *dec;
    if (sof.precision <= 8)
        dec = new (std::nothrow) DJDecompressIJG8Bit(cp, ybr);
    else if (sof.precision <= 12)
        dec = new (std::nothrow) DJDecompressIJG12Bit(cp, ybr);
    else
        dec = new (std::nothrow) DJDecompressIJG16Bit(cp, ybr);
    if (!dec)
        return dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
    size_t px = (size_t)fmt->rows * fmt->cols * fmt->samples;
    unsigned bps = dec->bytesPerSample();
    size_t tmp_len = px * bps;
    uint8_t *tmp = bps == fmt->bytes ? out : static_cast<uint8_t *>(malloc(tmp_len));
    if (!tmp) {
        delete dec;
        return dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
    }
    OFCondition c = dec->init();
    if (c.good())
        c = dec->decode(const_cast<Uint8 *>(src), static_cast<Uint32>(n), tmp, static_cast<Uint32>(tmp_len),
                        fmt->is_signed ? OFTrue : OFFalse);
    if (c.bad())
        rc = dcm_fail(err, CDC_ECODEC, 0, "JPEG (DCMTK %u-bit): %s", bps * 8, c.text());
    else if (tmp != out) {
        // The stream's precision does not fill the container: widen or narrow.
        for (size_t i = 0; i < px; i++) {
            uint32_t v = bps == 1 ? tmp[i] : reinterpret_cast<uint16_t *>(tmp)[i];
            if (fmt->bytes == 1)
                out[i] = static_cast<uint8_t>(v);
            else if (fmt->bytes == 2)
                reinterpret_cast<uint16_t *>(out)[i] = static_cast<uint16_t>(v);
            else
                reinterpret_cast<uint32_t *>(out)[i] = v;
        }
    }
    if (tmp != out)
        free(tmp);
    delete dec;
    if (rc == 0 && !fmt->is_signed && sof.precision <= fmt->bits_stored)
        rc = CDC_NORMALISED; /* unsigned samples of at most Bits Stored bits */
    (void)out_len;
    return rc;
}

} // namespace

extern "C" int cdc_dcmtk_jpeg_decode(const cdc_fmt *fmt, const uint8_t *src, size_t n, uint8_t *out,
                                     size_t out_len, dcm_err *err)
{
    try {
        return decode(fmt, src, n, out, out_len, err);
    } catch (const std::bad_alloc &) {
        return dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
    } catch (...) {
        return dcm_fail(err, CDC_ECODEC, 0, "JPEG (DCMTK): decoder failed");
    }
}
