#!/usr/bin/python3
"""oracle.py — what the viewer should show, computed from the DICOM files by
pydicom and numpy (not by the viewer's code), for tests/browser.

    oracle.py window FILE CENTER WIDTH OUT.raw
        the 8-bit image of FILE's pixels through Modality LUT (rescale) and
        the linear VOI window of PS3.3 C.11.2.1.2.1; writes rows*columns
        bytes to OUT.raw and prints {"rows", "columns", "mean", "std",
        "pixel_spacing", "sop"} as JSON.
    oracle.py windows DIR SOP OUTDIR CENTER,WIDTH...
        the same for the file of DIR whose SOP Instance UID is SOP, for each
        window, to OUTDIR/CENTER_WIDTH.raw; prints a JSON list of the
        objects above (one process: pydicom and numpy load once).
    oracle.py roi DIR SOP X0 Y0 X1 Y1 [X Y]
        the modality values (rescaled) of the pixels whose centres lie in
        the ellipse inscribed in the box X0,Y0–X1,Y1 (image coordinates):
        {"n", "mean", "sd" (n - 1), "min", "max"}, and with X Y the value
        of the pixel there as "value".
"""
import json
import os
import sys

import numpy as np
import pydicom


def window(path, center, width, out):
    ds = pydicom.dcmread(path)
    x = ds.pixel_array.astype(np.float64) * float(getattr(ds, "RescaleSlope", 1)) + float(getattr(ds, "RescaleIntercept", 0))
    c, w = float(center), max(float(width), 1.0)
    lo, hi = c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2
    y = ((x - (c - 0.5)) / max(w - 1, 1e-9) + 0.5) * 255.0
    y = np.where(x <= lo, 0.0, np.where(x > hi, 255.0, np.floor(y + 0.5)))
    y = np.clip(y, 0, 255).astype(np.uint8)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        y = 255 - y
    y.tofile(out)
    spacing = [float(v) for v in ds.PixelSpacing] if "PixelSpacing" in ds else None
    return {"rows": int(ds.Rows), "columns": int(ds.Columns), "mean": float(y.mean()), "std": float(y.std()),
            "pixel_spacing": spacing, "sop": ds.SOPInstanceUID, "center": float(center), "width": float(width)}


def find(d, sop):
    for name in sorted(os.listdir(d)):
        p = os.path.join(d, name)
        try:
            if pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID == sop:
                return p
        except Exception:  # not DICOM (truth files, stamps)
            continue
    sys.exit(f"oracle.py: no file with SOP Instance UID {sop} in {d}")


def windows(d, sop, outdir, *cws):
    path = find(d, sop)
    out = []
    for cw in cws:
        c, w = cw.split(",")
        out.append(window(path, c, w, os.path.join(outdir, f"{c}_{w}.raw")))
    print(json.dumps(out))


def roi(d, sop, x0, y0, x1, y1, px=None, py=None):
    ds = pydicom.dcmread(find(d, sop))
    v = ds.pixel_array.astype(np.float64) * float(getattr(ds, "RescaleSlope", 1)) + float(getattr(ds, "RescaleIntercept", 0))
    x0, y0, x1, y1 = (float(a) for a in (x0, y0, x1, y1))
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    yy, xx = np.mgrid[0:v.shape[0], 0:v.shape[1]]
    inside = ((xx + 0.5 - cx) / rx) ** 2 + ((yy + 0.5 - cy) / ry) ** 2 <= 1
    sel = v[inside]
    out = {"n": int(sel.size), "mean": float(sel.mean()), "sd": float(sel.std(ddof=1)), "min": float(sel.min()),
           "max": float(sel.max())}
    if px is not None:
        out["value"] = float(v[int(float(py)), int(float(px))])
    print(json.dumps(out))


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "window":
        print(json.dumps(window(*sys.argv[2:])))
    elif len(sys.argv) >= 6 and sys.argv[1] == "windows":
        windows(*sys.argv[2:])
    elif len(sys.argv) in (8, 10) and sys.argv[1] == "roi":
        roi(*sys.argv[2:])
    else:
        sys.exit(__doc__)
