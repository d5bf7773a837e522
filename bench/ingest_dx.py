#!/usr/bin/python3
"""ingest_dx.py — N large projection radiographs for bench/ingest.sh.

samples/gen_dx_images.py makes three 2500x2048 images under fixed UIDs;
this copies them round-robin into N files, each its own study with its own
patient, series and SOP Instance UIDs (derived from the index, so the same
N gives the same files), written as Explicit VR Little Endian.

    /usr/bin/python3 bench/ingest_dx.py --from DIR --count 10 --out DIR
"""
import argparse
import sys
import uuid
from pathlib import Path

import pydicom

NAMESPACE = uuid.UUID("5b0f8a0e-6c1d-4f7e-9a2b-3c4d5e6f7081")


def uid(name):
    return "2.25.%d" % uuid.uuid5(NAMESPACE, name).int


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--from", dest="src", required=True, help="gen_dx_images.py output")
    ap.add_argument("--count", type=int, default=10)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    templates = sorted(Path(a.src).glob("*.dcm"))
    if not templates:
        sys.exit(f"ingest_dx.py: no .dcm files in {a.src}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(a.count):
        ds = pydicom.dcmread(str(templates[i % len(templates)]))
        ds.StudyInstanceUID = uid(f"study/{i}")
        ds.SeriesInstanceUID = uid(f"series/{i}")
        ds.SOPInstanceUID = uid(f"sop/{i}")
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientID = f"BENCHDX{i + 1:03d}"
        ds.AccessionNumber = f"BDX{i + 1:05d}"
        ds.save_as(str(out / f"dx_{i + 1:03d}.dcm"), write_like_original=False)
    print(f"ingest_dx: {a.count} images in {out}")


if __name__ == "__main__":
    main()
