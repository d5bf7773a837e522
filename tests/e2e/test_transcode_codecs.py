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

from conftest import rel, run, run_many
from test_pixels import (DEFLATED_FRAME, DEFLATED_LE, EXPLICIT_BE, EXPLICIT_LE, HTJ2K, HTJ2K_RPCL, IMAGES, frames_of,
                         IMPLICIT_LE, J2K, JLS, JLS_NEAR, JPEG_BASELINE, REFUSED, RLE, is_image, ojph_expand,
                         pixels, read, transcode, ts_of, with_uids)

# Native targets: what a compressed file decodes to (native to native is
# the writer's own round trip, tests/e2e/test_roundtrip.py).
# Round trips: every lossless encapsulated syntax, plus the native ones a
# compressed file decodes to (native to native, and Explicit VR Big Endian,
# are the writer's own round trip: tests/e2e/test_roundtrip.py).
LOSSLESS = [RLE, JLS, J2K, HTJ2K, HTJ2K_RPCL, DEFLATED_FRAME, EXPLICIT_LE, IMPLICIT_LE, DEFLATED_LE]
ENCAPSULATED = [RLE, JLS, J2K, HTJ2K, HTJ2K_RPCL, DEFLATED_FRAME]
PYDICOM_DECODES = {RLE, JLS, J2K}
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


def size_of(path):
    ds = read(path, stop_before_pixels=True)
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except ValueError:  # odd/badVR.dcm: "1A"
        frames = 1
    return int(ds.Rows) * int(ds.Columns) * frames


# The outside tools are checked on one image of each shape class of the
# corpus (depth, stored bits, colour, sign, multi-frame); the
# round trip itself runs on every image.
def shape_class(path):
    ds = read(path, stop_before_pixels=True)
    return (int(ds.BitsAllocated), int(ds.get("BitsStored", ds.BitsAllocated)), int(ds.SamplesPerPixel),
            int(ds.get("PixelRepresentation", 0)), str(ds.PhotometricInterpretation), size_of(path) > int(
                ds.Rows) * int(ds.Columns))


def representatives():
    """The smallest image of each shape class (depth, stored bits, samples,
    sign, photometric, multi-frame)."""
    best = {}
    for p, n in CASES:
        k = shape_class(p)
        if k not in best or size_of(p) < size_of(best[k][0]):
            best[k] = (p, n)
    return sorted(best.values(), key=lambda c: c[1])


SMALL = representatives()


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


def writable(src, tmp):
    """src, or a copy with SOP UIDs when it has none (the writer needs them)."""
    ds = read(src, stop_before_pixels=True)
    return src if ds.get("SOPInstanceUID") and ds.get("SOPClassUID") else with_uids(src, tmp)


@pytest.mark.parametrize("src", [p for p, _ in CASES], ids=[n for _, n in CASES])
def test_lossless_round_trips_are_pixel_identical(dxhub, src, tmp, decoded_originals):
    head = read(src, stop_before_pixels=True)
    _, ref = decoded_originals(src)
    src = writable(src, tmp)
    outs = {ts: tmp / f"{i}.dcm" for i, ts in enumerate(LOSSLESS)}
    fwd = dict(zip(LOSSLESS, run_many([[dxhub, "transcode", "--ts", ts, src, outs[ts]] for ts in LOSSLESS])))
    done = []
    for ts, r in fwd.items():
        if refusal_reason(head, ts):
            assert r.returncode == 2 and len(r.stderr.decode().strip().splitlines()) == 1, r.stderr
        else:
            assert r.returncode == 0, f"{ts}: {r.stderr.decode()}"
            done.append(ts)
    backs = run_many([[dxhub, "transcode", "--ts", EXPLICIT_LE, outs[ts], tmp / f"{ts}.back.dcm"] for ts in done])
    for ts, r in zip(done, backs):
        assert r.returncode == 0, f"{ts}: {r.stderr.decode()}"
        got = pixels(tmp / f"{ts}.back.dcm")[1]
        assert got.shape == ref.shape and np.array_equal(got, ref), f"round trip through {ts} changed pixels"


@pytest.mark.parametrize("ts", ENCAPSULATED)
def test_outside_tools_accept_our_files(dxhub, ts, tmp, decoded_originals):
    """dcmdump, pydicom, DCMTK's decompressors and ojph_expand read what we
    write, and decode the same pixels."""
    checked = 0
    for i, (src, name) in enumerate(SMALL):
        head = read(src, stop_before_pixels=True)
        if refusal_reason(head, ts) or ts_of(head) == ts:
            continue  # refused, or the same syntax: dxhub copies the original bytes
        _, ref = decoded_originals(src)
        out = tmp / f"{i}.dcm"
        r = transcode(dxhub, src, ts, out, tmp)
        assert r.returncode == 0, f"{name}: {r.stderr.decode()}"
        r = run(["dcmdump", "-q", out])
        assert r.returncode == 0 and b"E:" not in r.stderr, f"{name}: dcmdump: {r.stderr.decode()[:300]}"
        ds = read(out)
        assert str(ds.file_meta.TransferSyntaxUID) == ts
        if ts in PYDICOM_DECODES:
            assert np.array_equal(pixels(out)[1], ref), f"{name}: pydicom decodes our {ts} differently"
        if ts in DCMTK_DECOMPRESSOR:
            plain = tmp / f"{i}.dcmtk.dcm"
            r = run([DCMTK_DECOMPRESSOR[ts], out, plain])
            assert r.returncode == 0, f"{name}: {r.stderr.decode()}"
            assert np.array_equal(pixels(plain)[1], ref), f"{name}: {DCMTK_DECOMPRESSOR[ts]} decodes differently"
        if ts in (HTJ2K, HTJ2K_RPCL):
            # ojph_expand's raw and PGM writers clamp negative samples to 0.
            assert np.array_equal(ojph_expand(ds, tmp), np.maximum(ref, 0)), f"{name}: ojph_expand differs"
        checked += 1
    assert checked >= 10


@pytest.mark.parametrize("src", [p for p, _ in CASES], ids=[n for _, n in CASES])
def test_jpegls_near_lossless_stays_within_near(dxhub, src, tmp, decoded_originals):
    head = read(src, stop_before_pixels=True)
    if ts_of(head) == JLS_NEAR:
        pytest.skip("already near-lossless: dxhub copies it")
    out = tmp / "near.dcm"
    r = transcode(dxhub, src, JLS_NEAR, out, tmp)
    if refusal_reason(head, JLS_NEAR):
        assert r.returncode == 2, r.stderr
        return
    assert r.returncode == 0, r.stderr.decode()
    _, ref = decoded_originals(src)
    if int(head.get("BitsStored", head.BitsAllocated)) >= 8:
        plain = tmp / "plain.dcm"
        assert run(["dcmdjpls", out, plain]).returncode == 0
        theirs = pixels(plain)[1]
    else:  # DCMTK 3.6.7 rejects JPEG-LS below 8 bits (the corpus' own JLSL_08_07 too): GDCM
        theirs = pixels(out)[1]
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
    # The yardstick: Pillow's libjpeg at the same quality (90) and 4:2:2 subsampling.
    import io
    from PIL import Image
    pil_err = []
    for frame in ref.astype(np.uint8):
        buf = io.BytesIO()
        Image.fromarray(frame[..., 0] if frame.shape[-1] == 1 else frame).save(buf, "JPEG", quality=90,
                                                                                 subsampling=1)
        buf.seek(0)
        back = np.asarray(Image.open(buf)).astype(np.int64).reshape(frame.shape)
        pil_err.append(np.abs(back - frame).mean())
    assert np.abs(theirs - ref).mean() <= np.mean(pil_err) + 1
    if ts_of(read(src, stop_before_pixels=True)) != JPEG_BASELINE:
        assert read(out).LossyImageCompression == "01"


def test_refuses_unknown_syntax_and_lossy_of_palette(dxhub, corpus, tmp):
    src = corpus / "dicom/explicit_le/OBXXXX1A_2frame.dcm"
    r = run([dxhub, "transcode", "--ts", "1.2.3.4", src, tmp / "x.dcm"])
    assert r.returncode == 2 and b"unknown transfer syntax" in r.stderr
    r = run([dxhub, "transcode", "--ts", JPEG_BASELINE, src, tmp / "x.dcm"])
    assert r.returncode == 2 and b"PALETTE COLOR" in r.stderr
    assert not (tmp / "x.dcm").exists()


def test_multiframe_output_has_one_fragment_per_frame(dxhub, corpus, tmp):
    from pydicom.encaps import generate_pixel_data_fragment, get_frame_offsets
    from pydicom.filebase import DicomBytesIO
    src = corpus / "dicom/explicit_le/emri_small.dcm"
    out = tmp / "jls.dcm"
    assert transcode(dxhub, src, JLS, out, tmp).returncode == 0
    ds = read(out)
    fp = DicomBytesIO(ds.PixelData)
    fp.is_little_endian = True
    has_bot, offsets = get_frame_offsets(fp)
    frags = list(generate_pixel_data_fragment(fp))
    assert not has_bot and len(frags) == int(ds.NumberOfFrames) == 10
    assert all(f[:2] == b"\xff\xd8" for f in frags)


# --- JPEG 2000 lazy coding ------------------------------------------------------

def grey12(path, pixels_):
    """A native 12-bit MONOCHROME2 secondary capture of pixels_ (uint16)."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import generate_uid
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = EXPLICIT_LE
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels_.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels_.astype("<u2").tobytes()
    ds.save_as(str(path), write_like_original=False)


def cod_style(codestream):
    """The code-block style byte of the main header's COD (ISO 15444-1 A.6.1):
    after FF52, Lcod(2), Scod, SGcod(4), levels, xcb, ycb."""
    at = codestream.index(b"\xff\x52")
    return codestream[at + 12]


def grk_decompress(codestream, shape, tmp):
    """Grok's decoder (its own block decoder, not OpenJPEG's) on one grey
    frame: a 16-bit PGM, whose samples are its last rows x cols x 2 bytes."""
    j2c, pgm = tmp / "grk.j2k", tmp / "grk.pgm"
    j2c.write_bytes(codestream)
    r = run(["grk_decompress", "-H", "1", "-i", j2c, "-o", pgm])
    assert r.returncode == 0, r.stderr.decode()
    data = pgm.read_bytes()
    assert data.startswith(b"P5"), data[:20]
    return np.frombuffer(data[len(data) - shape[0] * shape[1] * 2:], dtype=">u2").reshape(shape)


def test_j2k_lazy_coding_only_where_low_bits_are_noise_and_outsiders_decode_it(dxhub, tmp):
    """A noisy radiograph-like image is coded with the arithmetic-coder
    bypass (code-block style bit 0), a smooth one without; both decode to
    the original pixels through GDCM (pydicom) and Grok."""
    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:256, 0:320]
    smooth = (1000 + 3 * x + 2 * y).astype(np.uint16)
    noisy = np.clip(smooth + rng.normal(0, 40, smooth.shape), 0, 4095).astype(np.uint16)
    for name, img, lazy in (("noisy", noisy, True), ("smooth", smooth, False)):
        src, out = tmp / f"{name}.dcm", tmp / f"{name}.j2k.dcm"
        grey12(src, img)
        r = transcode(dxhub, src, J2K, out, tmp)
        assert r.returncode == 0, r.stderr.decode()
        ds = read(out)
        (cs,) = frames_of(ds)
        assert bool(cod_style(cs) & 1) == lazy, f"{name}: code-block style {cod_style(cs):#x}"
        assert np.array_equal(pixels(out)[1].reshape(img.shape), img), f"{name}: GDCM decodes differently"
        assert np.array_equal(grk_decompress(cs, img.shape, tmp), img), f"{name}: Grok decodes differently"
