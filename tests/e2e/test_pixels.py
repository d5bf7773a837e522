"""Every image of the corpus decodes, and its pixels equal an oracle that
nobody here wrote.

dxhub's decoder is reached through the product's own command:
`dxhub transcode --ts <Explicit VR LE>` for compressed files (the decoded
frames land in native pixel data that pydicom reads without any codec),
and `dxhub transcode --ts <RLE Lossless>` for native files (so dxhub's
native path - byte order, planar configuration, YBR_FULL_422, bit masks -
runs, and pydicom's own RLE decoder reads the result).  Bits Allocated 1
goes through Deflated Image Frame Compression and back instead (RLE cannot
hold it).

Oracles, per transfer syntax:
  native, RLE, JPEG (all), JPEG-LS lossless, JPEG 2000   pydicom 2.3.1 (its
        GDCM handler for the compressed ones)
  JPEG-LS near-lossless (.81)   DCMTK dcmdjpls: GDCM 3.0.21 decodes
        CT0012.fragmented_no_bot_jpeg_ls.81 wrongly (the MANIFEST marks it)
  HTJ2K (.201 .202 .203)        OpenJPH's ojph_expand, one codestream per frame
        (pydicom 2.3.1 and DCMTK 3.6.7 have no HTJ2K decoder)
  Deflated Image Frame (.8.1)   Python's zlib, frame by frame, then pydicom
  files pydicom cannot parse    DCMTK dcmconv +te, then pydicom

Tolerances (max absolute difference per sample), documented per syntax:
  lossless syntaxes and native: 0 - exactly equal.
  JPEG Baseline / Extended, monochrome: 0 (libjpeg-turbo and GDCM's IJG
        both use the accurate integer IDCT).
  JPEG Baseline / Extended, colour: 2.  dxhub returns RGB (libjpeg's
        fixed-point YCbCr->RGB, as dcmdjpeg does); pydicom returns YCbCr, which
        the test converts with pydicom's floating-point convert_color_space:
        the two conversions round differently by up to 1, plus 1 of slack.
  JPEG 2000 lossy (.91): 1 (ISO 15444-4 allows decoders a difference of 1;
        GDCM's OpenJPEG and ours measure 0).
  JPEG-LS near-lossless vs dcmdjpls: 0 (JPEG-LS decoding is exact integer
        arithmetic: both decoders reconstruct the same values).
Pixel values are compared after Bits Stored normalisation (mask, or
sign-extend for Pixel Representation 1), which codecs.h promises and
pydicom 2.3.1 does not do for native data.
"""
import os
import shutil
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import generate_pixel_data_frame
from pydicom.pixel_data_handlers.util import convert_color_space

from conftest import corpus_dicom_files, rel, run

warnings.filterwarnings("ignore")

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
NATIVE = {IMPLICIT_LE, EXPLICIT_LE, DEFLATED_LE, EXPLICIT_BE}
RLE = "1.2.840.10008.1.2.5"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.57"
JPEG_SV1 = "1.2.840.10008.1.2.4.70"
JLS = "1.2.840.10008.1.2.4.80"
JLS_NEAR = "1.2.840.10008.1.2.4.81"
J2K = "1.2.840.10008.1.2.4.90"
J2K_LOSSY = "1.2.840.10008.1.2.4.91"
HTJ2K = "1.2.840.10008.1.2.4.201"
HTJ2K_RPCL = "1.2.840.10008.1.2.4.202"
HTJ2K_LOSSY = "1.2.840.10008.1.2.4.203"
DEFLATED_FRAME = "1.2.840.10008.1.2.8.1"
HTJ2K_ALL = {HTJ2K, HTJ2K_RPCL, HTJ2K_LOSSY}
DCMTK_DECOMPRESSOR = {JPEG_BASELINE: "dcmdjpeg", JPEG_EXTENDED: "dcmdjpeg", JPEG_LOSSLESS: "dcmdjpeg",
                      JPEG_SV1: "dcmdjpeg", JLS: "dcmdjpls", JLS_NEAR: "dcmdjpls", RLE: "dcmdrle"}
TOLERANCE = {JPEG_BASELINE: 0, JPEG_EXTENDED: 0, J2K_LOSSY: 1}
COLOUR_JPEG_TOLERANCE = 2

# Files with pixel data that must be refused (exit 2, one line naming the reason).
REFUSED = {"dicom/odd/MR_truncated.dcm": "truncated pixel data"}


# --- reading -------------------------------------------------------------

def read(path, **kw):
    ds = pydicom.dcmread(str(path), force=True, **kw)
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" not in meta:
        # no File Meta (raw data sets): pydicom needs the syntax it parsed with
        meta.TransferSyntaxUID = IMPLICIT_LE if ds.is_implicit_VR else (
            EXPLICIT_LE if ds.is_little_endian else EXPLICIT_BE)
    return ds


def ts_of(ds):
    return str(ds.file_meta.TransferSyntaxUID)


def normalise(ds, a):
    """(frames, rows, cols, samples), Bits Stored applied, int64 (floats kept)."""
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    spp = int(ds.get("SamplesPerPixel", 1))
    a = np.asarray(a).reshape(frames, int(ds.Rows), int(ds.Columns), spp)
    if a.dtype.kind == "f":
        return a
    a = a.astype(np.int64)
    ba = int(ds.BitsAllocated)
    bs = int(ds.get("BitsStored", ba) or ba)
    if 1 < bs < ba:
        a &= (1 << bs) - 1
        if int(ds.get("PixelRepresentation", 0)) == 1:
            s = 1 << (bs - 1)
            a = (a ^ s) - s
    return a


def pixels(path):
    ds = read(path)
    try:
        int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):  # odd/badVR.dcm says "1A"; dxhub (as DCMTK) reads 1
        ds.NumberOfFrames = 1
    return ds, normalise(ds, ds.pixel_array)


IMAGE_PIXEL = ("Rows", "Columns", "BitsAllocated", "PhotometricInterpretation")


def has_pixels(path):
    try:
        ds = read(path, specific_tags=["PixelData", "FloatPixelData", *IMAGE_PIXEL])
    except Exception:
        return False
    return "PixelData" in ds or "FloatPixelData" in ds


def is_image(ds):
    return all(k in ds for k in IMAGE_PIXEL)


# --- dxhub's decode through its own transcode ---------------------------------

def with_uids(src, tmp):
    """A copy with SOP Class/Instance UIDs added (the writer needs them);
    pixel data bytes untouched."""
    ds = read(src)
    ds.SOPClassUID = ds.get("SOPClassUID", "1.2.840.10008.5.1.4.1.1.7") or "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = ds.get("SOPInstanceUID", "") or "2.25.1234567890"
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = tmp / "with_uids.dcm"
    ds.save_as(str(out), write_like_original=False)
    return out


def transcode(dxhub, src, ts, out, tmp=None):
    r = run([dxhub, "transcode", "--ts", ts, src, out])
    if r.returncode and tmp is not None and b"SOP Class/Instance UID" in r.stderr:
        r = run([dxhub, "transcode", "--ts", ts, with_uids(src, tmp), out])
    return r


def dxhub_decode(dxhub, src, tmp):
    """(dataset of dxhub's output, its normalised pixels)."""
    ds = read(src, stop_before_pixels=True)
    ts = ts_of(ds)
    out = tmp / "decoded.dcm"
    if ts in NATIVE:
        if int(ds.BitsAllocated) == 1:
            mid = tmp / "frames.dcm"
            r = transcode(dxhub, src, DEFLATED_FRAME, mid, tmp)
            assert r.returncode == 0, r.stderr.decode()
            r = transcode(dxhub, mid, EXPLICIT_LE, out, tmp)
        else:
            r = transcode(dxhub, src, RLE, out, tmp)
    else:
        r = transcode(dxhub, src, EXPLICIT_LE, out, tmp)
    assert r.returncode == 0, r.stderr.decode()
    return pixels(out)


# --- oracles ---------------------------------------------------------------------

def frames_of(ds):
    n = int(ds.get("NumberOfFrames", 1) or 1)
    return list(generate_pixel_data_frame(ds.PixelData, n))


def ojph_expand(ds, tmp):
    """Decode each frame with OpenJPH's command-line tool: PPM for colour,
    raw (little-endian samples, signed as the codestream says) for grey."""
    spp, signed = int(ds.SamplesPerPixel), int(ds.get("PixelRepresentation", 0)) == 1
    rows, cols, bs = int(ds.Rows), int(ds.Columns), int(ds.BitsStored)
    out = []
    for i, fr in enumerate(frames_of(ds)):
        j2c, dst = tmp / f"f{i}.j2c", tmp / (f"f{i}.ppm" if spp == 3 else f"f{i}.raw")
        j2c.write_bytes(fr)
        r = run(["ojph_expand", "-i", j2c, "-o", dst])
        assert r.returncode == 0, r.stderr.decode()
        data = dst.read_bytes()
        if spp == 3:
            magic, rest = data.split(b"\n", 1)
            dims, rest = rest.split(b"\n", 1)
            maxv, raw = rest.split(b"\n", 1)
            dt = np.uint8 if int(maxv) < 256 else np.dtype(">u2")
            out.append(np.frombuffer(raw, dtype=dt).reshape(rows, cols, 3))
        else:
            dt = ("<i2" if signed else "<u2") if bs > 8 else (np.int8 if signed else np.uint8)
            out.append(np.frombuffer(data, dtype=dt).reshape(rows, cols, 1))
    return np.stack(out).astype(np.int64)


def inflate_frames(ds):
    raw = b"".join(zlib.decompress(fr, -15) for fr in frames_of(ds))
    native = pydicom.Dataset()
    native.update(ds)
    native.file_meta = ds.file_meta
    native.file_meta.TransferSyntaxUID = EXPLICIT_LE
    native.is_implicit_VR, native.is_little_endian = False, True
    native.PixelData = raw + (b"\0" if len(raw) % 2 else b"")
    return normalise(native, native.pixel_array)


def via_dcmtk(tool, src, tmp):
    out = tmp / "dcmtk.dcm"
    r = run([tool, src, out])
    assert r.returncode == 0, f"{tool}: {r.stderr.decode()}"
    return pixels(out)[1]


def oracle(src, tmp):
    """(pixels, photometric the oracle's pixels are in, which oracle)."""
    ds = read(src)
    ts = ts_of(ds)
    pi = str(ds.PhotometricInterpretation)
    if ts in HTJ2K_ALL:
        return ojph_expand(ds, tmp), "RGB" if pi in ("YBR_RCT", "YBR_ICT") else pi, "ojph_expand"
    if ts == DEFLATED_FRAME:
        return inflate_frames(ds), pi, "zlib"
    if ts == JLS_NEAR:
        return via_dcmtk("dcmdjpls", src, tmp), pi, "dcmdjpls"
    try:
        a = normalise(ds, ds.pixel_array)
        return a, "RGB" if pi in ("YBR_RCT", "YBR_ICT") else pi, "pydicom"
    except Exception:
        pass
    if ts in DCMTK_DECOMPRESSOR:
        return via_dcmtk(DCMTK_DECOMPRESSOR[ts], src, tmp), pi, DCMTK_DECOMPRESSOR[ts]
    copy = tmp / "dcmconv.dcm"
    r = run(["dcmconv", "+te", src, copy])
    assert r.returncode == 0, r.stderr.decode()
    return pixels(copy)[1], pi, "dcmconv+pydicom"


# --- the tests ------------------------------------------------------------------

def image_files():
    return [(p, i) for p, i in corpus_dicom_files() if has_pixels(p)]


IMAGES = image_files()


@pytest.mark.parametrize("src", [p for p, _ in IMAGES], ids=[i for _, i in IMAGES])
def test_decoded_pixels_equal_the_oracle(dxhub, src, tmp):
    name = rel(src)
    if name in REFUSED:
        r = run([dxhub, "transcode", "--ts", EXPLICIT_LE, src, tmp / "x.dcm"])
        assert r.returncode == 2 and len(r.stderr.decode().strip().splitlines()) == 1, r.stderr
        return
    head = read(src, stop_before_pixels=True)
    if not is_image(head):
        # Pixel Data without the Image Pixel module: not an image; refused.
        r = run([dxhub, "render", src, tmp / "x.png"])
        assert r.returncode == 2 and len(r.stderr.decode().strip().splitlines()) == 1, r.stderr
        return
    if "FloatPixelData" in read(src) or "DoubleFloatPixelData" in read(src):
        pytest.skip("Float Pixel Data: native only, nothing to decode")
    ts = ts_of(head)
    expect, expect_pi, who = oracle(src, tmp)
    out_ds, got = dxhub_decode(dxhub, src, tmp)
    got_pi = str(out_ds.PhotometricInterpretation)
    tol = TOLERANCE.get(ts, 0)
    if ts in (JPEG_BASELINE, JPEG_EXTENDED) and got.shape[-1] == 3:
        # dxhub gives RGB like dcmdjpeg; pydicom keeps YCbCr: convert the oracle.
        assert got_pi == "RGB"
        if expect_pi.startswith("YBR") and who == "pydicom":
            expect = convert_color_space(expect.astype(np.uint8), "YBR_FULL", "RGB").astype(np.int64)
        tol = COLOUR_JPEG_TOLERANCE
    elif expect_pi == "YBR_FULL_422":
        assert got_pi == "YBR_FULL"  # upsampled, as pydicom does
    else:
        assert got_pi == expect_pi, f"photometric {got_pi}, oracle ({who}) {expect_pi}"
    assert got.shape == expect.shape, f"{got.shape} vs {who} {expect.shape}"
    diff = np.abs(got.astype(np.float64) - expect.astype(np.float64))
    assert diff.max() <= tol, f"max difference {diff.max()} > {tol} against {who} ({ts})"


def test_every_transfer_syntax_of_the_corpus_is_covered():
    seen = {ts_of(read(p, stop_before_pixels=True)) for p, _ in IMAGES}
    for ts in (EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE, DEFLATED_LE, RLE, JPEG_BASELINE, JPEG_EXTENDED,
               JPEG_LOSSLESS, JPEG_SV1, JLS, JLS_NEAR, J2K, J2K_LOSSY, HTJ2K, DEFLATED_FRAME):
        assert ts in seen, f"no corpus image in {ts}"


def test_frame_is_decoded_alone(dxhub, corpus, tmp):
    """A frame renders from its own fragments: frame 2 of a two-frame JPEG-LS
    file with the other frame's fragment corrupted still matches."""
    src = corpus / "dicom/jpegls_lossless_80/CT0012.not_fragmented_bot_jpeg_ls.80.dcm"
    ds = read(src)
    frames = frames_of(ds)
    broken = bytearray(frames[0])
    broken[len(broken) // 2:] = b"\0" * (len(broken) - len(broken) // 2)
    from pydicom.encaps import encapsulate
    ds.PixelData = encapsulate([bytes(broken), frames[1]], has_bot=True)
    bad = tmp / "frame0_broken.dcm"
    ds.save_as(str(bad))
    a = run([dxhub, "render", "--frame", "2", "--window", "500,1000", bad, tmp / "bad.png"])
    b = run([dxhub, "render", "--frame", "2", "--window", "500,1000", src, tmp / "good.png"])
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    assert (tmp / "bad.png").read_bytes() == (tmp / "good.png").read_bytes()
    c = run([dxhub, "render", "--frame", "1", bad, tmp / "f1.png"])
    assert c.returncode == 2 and b"frame" in c.stderr.lower() or b"JPEG-LS" in c.stderr


def test_decompression_bomb_is_refused_before_allocation(dxhub, tmp):
    """A header claiming 65535 x 65535 x 3 samples x 16 bits x 1000 frames,
    with a few bytes of pixel data: refused at once, in little memory."""
    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = JLS
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = "2.25.42"
    ds.Rows = ds.Columns = 65535
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.NumberOfFrames = 1000
    from pydicom.encaps import encapsulate
    # JPEG-LS SOF55 claiming 65535 x 65535 x 3 at 16 bits, then SOS and EOI.
    sof = bytes.fromhex("fff70011" "10ffffffff03" "011100" "021100" "031100")
    sos = bytes.fromhex("ffda000c03" "0100" "0200" "0300" "000000")
    ds.PixelData = encapsulate([b"\xff\xd8" + sof + sos + b"\x00\x00\xff\xd9"])
    ds.is_implicit_VR, ds.is_little_endian = False, True
    bomb = tmp / "bomb.dcm"
    ds.save_as(str(bomb), write_like_original=False)
    # Each run under a fresh Python parent, so the peak RSS is dxhub's alone.
    probe = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True); "
             "sys.stderr.write(r.stderr.decode()); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")
    for args in (["render", bomb, tmp / "b.png"], ["transcode", "--ts", EXPLICIT_LE, bomb, tmp / "b.dcm"]):
        r = run([sys.executable, "-c", probe, dxhub, *args], timeout=20)
        assert r.returncode == 2, r.stderr
        msg = r.stderr.decode()
        assert len(msg.strip().splitlines()) == 1 and "limit" in msg, msg
        peak_kib = int(r.stdout.decode().split()[-1])
        assert peak_kib < 64 * 1024, f"peak RSS {peak_kib} KiB"
    # 16384 x 16384 8-bit mono passes the frame limit but 1000 frames are not there.
    ds.Rows = ds.Columns = 16384
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    del ds.PlanarConfiguration
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.save_as(str(bomb), write_like_original=False)
    r = run([dxhub, "render", bomb, tmp / "b.png"], timeout=20)
    assert r.returncode == 2 and b"1000 frames" in r.stderr, r.stderr
    # One frame claimed: the codestream's own header (65535 x 65535 x 3) disagrees.
    ds.NumberOfFrames = 1
    ds.Rows = ds.Columns = 64
    ds.save_as(str(bomb), write_like_original=False)
    r = run([dxhub, "render", bomb, tmp / "b.png"], timeout=20)
    assert r.returncode == 2 and b"codestream" in r.stderr, r.stderr
