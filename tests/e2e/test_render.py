"""`dxhub render` against DCMTK's dcm2pnm with the same window: within one
grey level on every pixel of every monochrome corpus image.

dcm2pnm reads native pixel data (its DCMTK build here has no JPEG 2000 or
HTJ2K decoder), so it is given a native copy: made by DCMTK's own
decompressors where they exist (dcmdjpeg, dcmdjpls, dcmdrle), by pydicom
(GDCM) for JPEG 2000, and by dxhub for HTJ2K and Deflated Image Frame
Compression (whose decoding test_pixels.py proves against ojph_expand and
zlib).  dxhub renders the original file.

Windows compared:
  --window C,W                 vs  dcm2pnm +Ww C W
  the file's first window      vs  dcm2pnm +Wi 1 (top level), or +Ww with the
                                   frame's window when it lives in a functional
                                   group (dcm2pnm 3.6.7 does not read those)
  automatic (no window in file) vs dcm2pnm +Wh 5 (histogram, 5% cut each end)
Overlays are off on both sides (dcm2pnm -O; dxhub draws none yet).
DCMTK cannot compute a histogram window for a 1-bit image (it renders 1 as
128): 1-bit images are compared with a given window only.
Colour images (RGB, YBR, PALETTE COLOR): within 2 levels (DCMTK's YBR_FULL
conversion rounds differently from its YBR_FULL_422 one; dxhub uses one
formula for both).  Segmented palettes, which dcm2pnm does not support, are
checked against pydicom's apply_color_lut.
"""
import numpy as np
import pytest
from PIL import Image

from conftest import rel, run
from test_pixels import (DEFLATED_FRAME, EXPLICIT_LE, HTJ2K_ALL, IMAGES, J2K, J2K_LOSSY, REFUSED, is_image,
                         read, transcode, ts_of)

DCMTK_DECOMPRESSOR = {"1.2.840.10008.1.2.4.50": "dcmdjpeg", "1.2.840.10008.1.2.4.51": "dcmdjpeg",
                      "1.2.840.10008.1.2.4.57": "dcmdjpeg", "1.2.840.10008.1.2.4.70": "dcmdjpeg",
                      "1.2.840.10008.1.2.4.80": "dcmdjpls", "1.2.840.10008.1.2.4.81": "dcmdjpls",
                      "1.2.840.10008.1.2.5": "dcmdrle"}


def native_copy(dxhub, src, tmp):
    ds = read(src, stop_before_pixels=True)
    ts = ts_of(ds)
    out = tmp / "native.dcm"
    if ts in DCMTK_DECOMPRESSOR:
        r = run([DCMTK_DECOMPRESSOR[ts], src, out])
        if r.returncode == 0:
            return out
        # DCMTK 3.6.7 rejects JPEG-LS below 8 bits (JLSL_08_07): GDCM decodes it.
    if ts in DCMTK_DECOMPRESSOR or ts in (J2K, J2K_LOSSY):
        full = read(src)
        arr = full.pixel_array
        if str(full.PhotometricInterpretation) in ("YBR_RCT", "YBR_ICT"):
            full.PhotometricInterpretation = "RGB"  # the codestream's inverse transform ran
        if int(full.SamplesPerPixel) == 3:
            full.PlanarConfiguration = 0
        full.PixelData = arr.tobytes()
        full["PixelData"].VR = "OW" if arr.dtype.itemsize > 1 else "OB"
        full.file_meta.TransferSyntaxUID = EXPLICIT_LE
        full.is_implicit_VR, full.is_little_endian = False, True
        full.save_as(str(out))
        return out
    if ts in HTJ2K_ALL or ts == DEFLATED_FRAME:
        r = transcode(dxhub, src, EXPLICIT_LE, out, tmp)
        assert r.returncode == 0, r.stderr.decode()
        return out
    return src


def png(path):
    return np.asarray(Image.open(path)).astype(np.int64)


def fg_window(ds):
    """The first frame's window from a functional group, or None."""
    for seq in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        for item in ds.get(seq, [])[:1]:
            for voi in item.get("FrameVOILUTSequence", []):
                if "WindowCenter" in voi:
                    c = voi.WindowCenter
                    w = voi.WindowWidth
                    c = c[0] if isinstance(c, pydicom_multi) else c
                    w = w[0] if isinstance(w, pydicom_multi) else w
                    return float(c), float(w)
    return None


from pydicom.multival import MultiValue as pydicom_multi  # noqa: E402


def modes(ds):
    """[(name, dxhub args, dcm2pnm args)] to compare for this image."""
    mono = str(ds.PhotometricInterpretation).startswith("MONOCHROME")
    if not mono:
        return [("colour", [], [])]
    out = [("given", ["--window", "40,400"], ["+Ww", "40", "400"])]
    if int(ds.BitsAllocated) == 1:
        return out
    if "WindowCenter" in ds:
        out.append(("file", [], ["+Wi", "1"]))
    elif "VOILUTSequence" in ds:
        out.append(("voi-lut", [], ["+Wl", "1"]))
    elif fg_window(ds):
        c, w = fg_window(ds)
        out.append(("functional-group", [], ["+Ww", repr(c), repr(w)]))
    else:
        out.append(("auto", [], ["+Wh", "5"]))
    return out


CASES = []
for path, name in IMAGES:
    if name in REFUSED:
        continue
    head = read(path, stop_before_pixels=True)
    if not is_image(head) or "FloatPixelData" in read(path):
        continue
    for mode in modes(head):
        CASES.append((path, mode, f"{name}-{mode[0]}"))


@pytest.mark.parametrize("src,mode", [(p, m) for p, m, _ in CASES], ids=[i for _, _, i in CASES])
def test_render_matches_dcm2pnm(dxhub, src, mode, tmp):
    name, dx_args, dcm_args = mode
    mine, theirs = tmp / "dxhub.png", tmp / "dcm2pnm.png"
    r = run([dxhub, "render", *dx_args, src, mine])
    assert r.returncode == 0, r.stderr.decode()
    a = png(mine)
    ds = read(src)
    if "SegmentedRedPaletteColorLookupTableData" in ds:
        # dcm2pnm: "segmented palettes not yet supported"; pydicom expands them.
        from pydicom.pixel_data_handlers.util import apply_color_lut
        lut = apply_color_lut(ds.pixel_array, ds).astype(np.int64)
        b = lut >> (int(ds.RedPaletteColorLookupTableDescriptor[2]) - 8)
    else:
        native = native_copy(dxhub, src, tmp)
        r = run(["dcm2pnm", "-O", "+on", *dcm_args, native, theirs])
        assert r.returncode == 0, r.stderr.decode()
        b = png(theirs)
    assert a.shape == b.shape
    tol = 2 if name == "colour" else 1
    diff = np.abs(a - b)
    assert diff.max() <= tol, f"{(diff > tol).sum()} pixels differ by more than {tol} (max {diff.max()})"


MULTI = "dicom/explicit_le/emri_small.dcm"


@pytest.mark.parametrize("frame", [1, 5, 10])
def test_render_frame_matches_dcm2pnm(dxhub, corpus, frame, tmp):
    src = corpus / MULTI
    r = run([dxhub, "render", "--frame", str(frame), "--window", "200,400", src, tmp / "a.png"])
    assert r.returncode == 0, r.stderr.decode()
    r = run(["dcm2pnm", "-O", "+on", "+F", str(frame), "+Ww", "200", "400", src, tmp / "b.png"])
    assert r.returncode == 0
    assert np.abs(png(tmp / "a.png") - png(tmp / "b.png")).max() <= 1


def test_render_jpeg_output_and_errors(dxhub, corpus, tmp):
    src = corpus / "dicom/explicit_le/CT_small.dcm"
    r = run([dxhub, "render", "--window", "40,400", src, tmp / "a.jpg"])
    assert r.returncode == 0 and (tmp / "a.jpg").read_bytes()[:2] == b"\xff\xd8"
    assert Image.open(tmp / "a.jpg").size == (128, 128)
    r = run([dxhub, "render", "--frame", "2", src, tmp / "b.png"])
    assert r.returncode == 2 and b"frame 2" in r.stderr and len(r.stderr.splitlines()) == 1
    r = run([dxhub, "render", "--window", "40", src, tmp / "c.png"])
    assert r.returncode == 2 and b"--window" in r.stderr
    r = run([dxhub, "render", src, tmp / "d.gif"])
    assert r.returncode == 2
    r = run([dxhub, "render", corpus / "dicom/sr/reportsi.dcm", tmp / "e.png"])
    assert r.returncode == 2 and b"no pixel data" in r.stderr
    assert not any(p.name.startswith(("b.png", "c.png", "d.gif", "e.png")) for p in tmp.iterdir())


def test_monochrome1_is_inverted(dxhub, corpus, tmp):
    """RG1 (MONOCHROME1): dark where the MONOCHROME2 rendering of the same
    values would be bright — checked on dcm2pnm's own output above; here the
    polarity is pinned: the brightest stored values render darkest."""
    src = corpus / "dicom/j2k_91/RG1_J2KI.dcm"
    r = run([dxhub, "render", "--window", "14000,20000", src, tmp / "a.png"])
    assert r.returncode == 0
    img = png(tmp / "a.png")
    ds = read(src)
    px = ds.pixel_array
    hi = px >= np.percentile(px, 99)
    lo = px <= np.percentile(px, 1)
    assert img[hi].mean() < img[lo].mean()
