"""`dxhub transcode --ts UID` between compressed and native syntaxes.

Round trip: every corpus image, transcoded to each lossless syntax and back
to Explicit VR Little Endian, has exactly the pixels dxhub decodes from the
original.  The compressed files are accepted by the outside tools:
dcmdump reads them without error, pydicom reads them (and decodes RLE,
JPEG-LS and JPEG 2000 to the same pixels, through its own RLE decoder and
GDCM), DCMTK's decompressors (dcmdrle, dcmdjpls, dcmdjpeg) turn them into
the same pixels, and OpenJPH's ojph_expand decodes our HTJ2K codestreams to
the same pixels (no other HTJ2K decoder is installed here).

Lossy targets: JPEG-LS near-lossless keeps every sample within NEAR (2) of
the original (the JPEG-LS guarantee); JPEG Baseline (8-bit previews, q90)
stays within a mean absolute error of 3 and is accepted by dcmdjpeg.
"""
import numpy as np
import pytest

from conftest import rel, run
from test_pixels import (DEFLATED_FRAME, DEFLATED_LE, EXPLICIT_BE, EXPLICIT_LE, HTJ2K, HTJ2K_RPCL, IMAGES,
                         IMPLICIT_LE, J2K, JLS, JLS_NEAR, JPEG_BASELINE, REFUSED, RLE, is_image, ojph_expand,
                         pixels, read, transcode)

# Native targets: what a compressed file decodes to (native to native is
# the writer's own round trip, tests/e2e/test_roundtrip.py).
LOSSLESS = [RLE, JLS, J2K, HTJ2K, HTJ2K_RPCL, DEFLATED_FRAME, EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE, DEFLATED_LE]
PYDICOM_DECODES = {RLE, JLS, J2K, EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE, DEFLATED_LE}
DCMTK_DECOMPRESSOR = {RLE: "dcmdrle", JLS: "dcmdjpls", JLS_NEAR: "dcmdjpls", JPEG_BASELINE: "dcmdjpeg"}
NEAR = 2


def refusal_reason(ds, ts):
    """Why dxhub must refuse this image in this syntax (None: it must not)."""
    ba, bs = int(ds.BitsAllocated), int(ds.get("BitsStored", ds.BitsAllocated))
    if ba == 1 and ts not in (DEFLATED_FRAME, EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE, DEFLATED_LE):
        return "1-bit"
    if ts in (JLS, JLS_NEAR) and not 2 <= bs <= 16:
        return "JPEG-LS holds 2 to 16 bits"
    if ts in (J2K, HTJ2K, HTJ2K_RPCL) and bs > 16:
        return "up to 16 bits"
    if ts == JPEG_BASELINE and (ba != 8 or ds.PhotometricInterpretation == "PALETTE COLOR"):
        return "8-bit"
    return None


def cases():
    out = []
    for path, name in IMAGES:
        if name in REFUSED:
            continue
        head = read(path, stop_before_pixels=True)
        if not is_image(head) or "FloatPixelData" in read(path):
            continue
        out.append((path, name))
    return out


CASES = cases()


@pytest.fixture(scope="module")
def decoded_originals(dxhub, tmp_path_factory):
    """dxhub's decode of each original (Explicit VR LE), computed once."""
    cache = {}

    def get(src):
        if src not in cache:
            tmp = tmp_path_factory.mktemp("orig")
            out = tmp / "native.dcm"
            r = transcode(dxhub, src, EXPLICIT_LE, out, tmp)
            assert r.returncode == 0, r.stderr.decode()
            cache[src] = pixels(out)
        return cache[src]
    return get


def dcmdump_clean(path):
    r = run(["dcmdump", "-q", path])
    assert r.returncode == 0 and b"E:" not in r.stderr, r.stderr.decode()[:300]


@pytest.mark.parametrize("ts", LOSSLESS)
@pytest.mark.parametrize("src", [p for p, _ in CASES], ids=[n for _, n in CASES])
def test_lossless_round_trip_is_pixel_identical(dxhub, src, ts, tmp, decoded_originals):
    head = read(src, stop_before_pixels=True)
    out = tmp / "out.dcm"
    r = transcode(dxhub, src, ts, out, tmp)
    reason = refusal_reason(head, ts)
    if reason:
        assert r.returncode == 2 and len(r.stderr.decode().strip().splitlines()) == 1, r.stderr
        return
    assert r.returncode == 0, r.stderr.decode()
    ref_ds, ref = decoded_originals(src)
    back = tmp / "back.dcm"
    r = transcode(dxhub, out, EXPLICIT_LE, back, tmp)
    assert r.returncode == 0, r.stderr.decode()
    back_ds, got = pixels(back)
    assert got.shape == ref.shape and np.array_equal(got, ref), f"round trip through {ts} changed pixels"
    dcmdump_clean(out)
    ds = read(out)
    assert str(ds.file_meta.TransferSyntaxUID) == ts
    if ts in PYDICOM_DECODES:
        if ts == EXPLICIT_BE and int(head.BitsAllocated) != 16:
            # The Part 10 writer (dcm_write, native path) swaps OW per 16-bit
            # word; pydicom reads 8-bit OW unswapped and 32-bit per 32-bit word.
            pytest.xfail("Explicit VR BE of 8/32-bit pixels: writer and pydicom disagree (dcm_write)")
        _, theirs = pixels(out)
        if ts == J2K and str(ds.PhotometricInterpretation) == "YBR_RCT":
            assert str(back_ds.PhotometricInterpretation) == "RGB"
        assert np.array_equal(theirs, ref), f"pydicom decodes our {ts} differently"
    if ts in DCMTK_DECOMPRESSOR:
        plain = tmp / "dcmtk.dcm"
        r = run([DCMTK_DECOMPRESSOR[ts], out, plain])
        assert r.returncode == 0, r.stderr.decode()
        assert np.array_equal(pixels(plain)[1], ref), f"{DCMTK_DECOMPRESSOR[ts]} decodes our {ts} differently"
    if ts in (HTJ2K, HTJ2K_RPCL):
        # ojph_expand's raw and PGM writers clamp negative samples to 0.
        assert np.array_equal(ojph_expand(ds, tmp), np.maximum(ref, 0)), "ojph_expand decodes our HTJ2K differently"


@pytest.mark.parametrize("src", [p for p, _ in CASES], ids=[n for _, n in CASES])
def test_jpegls_near_lossless_stays_within_near(dxhub, src, tmp, decoded_originals):
    head = read(src, stop_before_pixels=True)
    out = tmp / "near.dcm"
    r = transcode(dxhub, src, JLS_NEAR, out, tmp)
    if refusal_reason(head, JLS_NEAR):
        assert r.returncode == 2, r.stderr
        return
    assert r.returncode == 0, r.stderr.decode()
    _, ref = decoded_originals(src)
    plain = tmp / "plain.dcm"
    assert run(["dcmdjpls", out, plain]).returncode == 0
    theirs = pixels(plain)[1]
    err = np.abs(theirs - ref)
    if int(head.get("PixelRepresentation", 0)) == 1:
        # JPEG-LS works on the unsigned bit patterns: compare modulo 2^BitsStored
        m = 1 << int(head.BitsStored)
        err = np.minimum(err % m, m - err % m)
    assert err.max() <= NEAR
    assert read(out).LossyImageCompression == "01"


EIGHT_BIT = [(p, n) for p, n in CASES if int(read(p, stop_before_pixels=True).BitsAllocated) == 8
             and read(p, stop_before_pixels=True).PhotometricInterpretation != "PALETTE COLOR"]


@pytest.mark.parametrize("src", [p for p, _ in EIGHT_BIT], ids=[n for _, n in EIGHT_BIT])
def test_jpeg_baseline_preview_is_close_and_accepted(dxhub, src, tmp, decoded_originals):
    out = tmp / "preview.dcm"
    r = transcode(dxhub, src, JPEG_BASELINE, out, tmp)
    assert r.returncode == 0, r.stderr.decode()
    ref_ds, ref = decoded_originals(src)
    plain = tmp / "plain.dcm"
    r = run(["dcmdjpeg", out, plain])
    assert r.returncode == 0, r.stderr.decode()
    ds, theirs = pixels(plain)
    if str(ref_ds.PhotometricInterpretation).startswith("YBR"):
        from pydicom.pixel_data_handlers.util import convert_color_space
        ref = convert_color_space(ref.astype(np.uint8), "YBR_FULL", "RGB").astype(np.int64)
    assert np.abs(theirs - ref).mean() < 3
    assert read(out).LossyImageCompression == "01"


def test_refuses_unknown_syntax_and_lossy_of_palette(dxhub, corpus, tmp):
    src = corpus / "dicom/explicit_le/OBXXXX1A_2frame.dcm"
    r = run([dxhub, "transcode", "--ts", "1.2.3.4", src, tmp / "x.dcm"])
    assert r.returncode == 2 and b"unknown transfer syntax" in r.stderr
    r = run([dxhub, "transcode", "--ts", JPEG_BASELINE, src, tmp / "x.dcm"])
    assert r.returncode == 2 and b"PALETTE COLOR" in r.stderr
    assert not (tmp / "x.dcm").exists()


def test_multiframe_output_has_one_fragment_per_frame(dxhub, corpus, tmp):
    src = corpus / "dicom/explicit_le/emri_small.dcm"
    out = tmp / "jls.dcm"
    assert transcode(dxhub, src, JLS, out, tmp).returncode == 0
    from pydicom.encaps import generate_pixel_data_fragment
    ds = read(out)
    frags = list(generate_pixel_data_fragment(pydicom_fp(ds.PixelData)))
    assert len(frags) == int(ds.NumberOfFrames) == 10
    assert all(f[:2] == b"\xff\xd8" for f in frags)


def pydicom_fp(data):
    from pydicom.filebase import DicomBytesIO
    fp = DicomBytesIO(data)
    fp.is_little_endian = True
    tag = fp.read_tag()
    assert tag == 0xFFFEE000
    fp.seek(fp.read_UL(), 1)  # skip the Basic Offset Table
    return fp
