#!/usr/bin/python3
"""gen_dx_images.py — deterministic synthetic large projection radiographs.

Writes three 2500x2048 images, 12 bits stored in 16 (Bits Stored 12,
unsigned), Explicit VR Little Endian, into --out:

  CR_chest_PA.dcm  CR Image Storage, MONOCHROME1 (high values dark, as many
                   CR readers store them): chest PA with lungs, mediastinum,
                   spine, ribs, clavicles, diaphragm
  DX_hand.dcm      Digital X-Ray Image Storage - For Presentation, MONOCHROME2:
                   a hand (palm, five rays of phalanges, carpal bones)
  DX_pelvis.dcm    Digital X-Ray Image Storage - For Presentation, MONOCHROME2:
                   pelvis AP (iliac wings, sacrum, femoral heads and necks)

Attenuation maps are drawn with numpy shapes, softened with a box blur and
given quantum noise; same options, same bytes (fixed seed, dates and UIDs
under the 2.25 UUID root).

    /usr/bin/python3 samples/gen_dx_images.py --out build/bench/dx
"""
import argparse
import os
import sys
import uuid

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
DX_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
NAMESPACE = uuid.UUID("0d9b6c52-7f0e-5a31-8c44-2e6b1f3a9d70")
ROWS, COLS = 2500, 2048
SPACING = 0.168  # mm, typical CR/DX detector pitch
MAXV = 4095  # 12 bits


def uid(name):
    return "2.25.%d" % uuid.uuid5(NAMESPACE, name).int


class Canvas:
    def __init__(self):
        yy, xx = np.mgrid[0:ROWS, 0:COLS]
        self.yy = yy.astype(np.float32) / ROWS  # 0..1 top to bottom
        self.xx = xx.astype(np.float32) / COLS  # 0..1 left to right
        self.a = np.zeros((ROWS, COLS), np.float32)  # attenuation, ~0..1

    def ellipse(self, cy, cx, ry, rx, value, angle=0.0):
        """Add value inside an ellipse (coordinates as fractions of the image)."""
        y0, y1 = max(int((cy - max(ry, rx)) * ROWS) - 2, 0), min(int((cy + max(ry, rx)) * ROWS) + 2, ROWS)
        x0, x1 = max(int((cx - max(ry, rx)) * COLS) - 2, 0), min(int((cx + max(ry, rx)) * COLS) + 2, COLS)
        if y0 >= y1 or x0 >= x1:
            return
        yy, xx = self.yy[y0:y1, x0:x1] - cy, self.xx[y0:y1, x0:x1] - cx
        c, s = np.cos(angle), np.sin(angle)
        u, v = c * yy + s * xx, -s * yy + c * xx
        m = (u / ry) ** 2 + (v / rx) ** 2 <= 1.0
        self.a[y0:y1, x0:x1][m] += value

    def bone(self, cy, cx, ry, rx, angle=0.0, cortex=0.35, marrow=0.18):
        """A bone: dense cortex around a lighter medulla."""
        self.ellipse(cy, cx, ry, rx, cortex, angle)
        self.ellipse(cy, cx, ry * 0.8, rx * 0.55, marrow - cortex, angle)

    def blur(self, k=9):
        """Separable box blur (cumulative sums): soft edges like a real focal spot."""
        a = self.a
        for axis in (0, 1):
            c = np.cumsum(np.pad(a, [(k, k) if ax == axis else (0, 0) for ax in (0, 1)], mode="edge"),
                          axis=axis, dtype=np.float64)
            hi = np.take(c, np.arange(2 * k, c.shape[axis]), axis=axis)
            lo = np.take(c, np.arange(0, c.shape[axis] - 2 * k), axis=axis)
            a = ((hi - lo) / (2 * k)).astype(np.float32)[: ROWS, : COLS]
        self.a = a

    def pixels(self, rng, monochrome1):
        a = np.clip(self.a, 0.0, 1.4) / 1.4
        v = 250.0 + a * 3500.0
        v += rng.normal(0.0, 1.0, v.shape).astype(np.float32) * (6.0 + 0.01 * v)
        v = np.clip(np.rint(v), 0, MAXV)
        if monochrome1:
            v = MAXV - v  # high attenuation stored low: displayed white under MONOCHROME1
        return v.astype("<u2")


def draw_chest(cv):
    cv.ellipse(0.55, 0.5, 0.52, 0.47, 0.35)  # soft tissue of the trunk
    cv.ellipse(0.12, 0.2, 0.12, 0.14, 0.2)  # shoulders
    cv.ellipse(0.12, 0.8, 0.12, 0.14, 0.2)
    for side in (-1, 1):  # lungs are air: subtract
        cv.ellipse(0.45, 0.5 + side * 0.19, 0.3, 0.15, -0.28)
    cv.ellipse(0.6, 0.55, 0.17, 0.16, 0.22)  # heart shadow, left of the patient
    cv.ellipse(0.38, 0.5, 0.2, 0.05, 0.2)  # mediastinum
    cv.ellipse(0.82, 0.5, 0.1, 0.46, 0.3)  # diaphragm / abdomen
    for i in range(12):  # spine: stacked vertebral bodies
        cv.bone(0.1 + i * 0.065, 0.5, 0.028, 0.035, cortex=0.3, marrow=0.2)
    for i in range(10):  # posterior ribs: arcs of thin tilted ellipses
        y = 0.2 + i * 0.055
        for side in (-1, 1):
            for j in range(6):
                x = 0.5 + side * (0.05 + j * 0.045)
                cv.ellipse(y + j * j * 0.004, x, 0.008, 0.03, 0.16, angle=side * (0.25 + 0.1 * j))
    for side in (-1, 1):  # clavicles
        cv.ellipse(0.16, 0.5 + side * 0.17, 0.015, 0.16, 0.3, angle=-side * 0.2)
        cv.bone(0.12, 0.5 + side * 0.36, 0.06, 0.05)  # humeral heads


def draw_hand(cv):
    cv.ellipse(0.68, 0.5, 0.2, 0.22, 0.35)  # palm
    cv.ellipse(0.92, 0.5, 0.14, 0.14, 0.35)  # wrist / forearm
    for i in range(8):  # carpal bones
        cv.bone(0.82 + (i // 4) * 0.045, 0.41 + (i % 4) * 0.06, 0.025, 0.028)
    cv.bone(0.97, 0.44, 0.06, 0.035)  # radius
    cv.bone(0.97, 0.57, 0.06, 0.03)  # ulna
    rays = [(-0.5, 0.3, 3), (-0.12, 0.42, 3), (0.0, 0.5, 3), (0.1, 0.58, 3), (0.25, 0.66, 3)]
    for ang, x, n in rays:
        # finger soft tissue, metacarpal, phalanges along the ray
        base_y = 0.62 if x > 0.35 else 0.72
        dy, dx = -np.cos(ang), np.sin(ang)
        cv.ellipse(base_y - 0.15 * np.cos(ang), x + 0.15 * dx * ROWS / COLS, 0.17, 0.045, 0.3, angle=-ang)
        cv.bone(0.72 + 0.03 * (x < 0.35), x - 0.02 * dx, 0.08, 0.02, angle=-ang)
        y, xx = base_y, x
        for k in range(n):
            ln = 0.12 - 0.025 * k  # proximal, middle, distal phalanx
            cy, cx = y + dy * ln / 2, xx + dx * ln / 2 * ROWS / COLS
            cv.bone(cy, cx, ln * 0.45, 0.018 - 0.002 * k, angle=-ang)
            y, xx = y + dy * ln, xx + dx * ln * ROWS / COLS


def draw_pelvis(cv):
    cv.ellipse(0.5, 0.5, 0.55, 0.5, 0.4)  # soft tissue
    for side in (-1, 1):
        cv.bone(0.3, 0.5 + side * 0.22, 0.17, 0.17, angle=side * 0.5, cortex=0.3, marrow=0.2)  # iliac wings
        cv.ellipse(0.3, 0.5 + side * 0.22, 0.1, 0.1, -0.1)
        cv.bone(0.62, 0.5 + side * 0.25, 0.07, 0.07, cortex=0.45, marrow=0.3)  # femoral heads
        cv.bone(0.7, 0.5 + side * 0.3, 0.09, 0.035, angle=-side * 0.7)  # femoral necks
        cv.bone(0.85, 0.5 + side * 0.33, 0.2, 0.06, angle=side * 0.08)  # femoral shafts
        cv.ellipse(0.72, 0.5 + side * 0.1, 0.06, 0.05, -0.15)  # obturator foramina
        cv.bone(0.72, 0.5 + side * 0.1, 0.08, 0.08, cortex=0.15, marrow=0.15)
    cv.bone(0.35, 0.5, 0.15, 0.07, cortex=0.3, marrow=0.22)  # sacrum
    for i in range(3):  # lumbar vertebrae
        cv.bone(0.05 + i * 0.07, 0.5, 0.03, 0.06)
    cv.ellipse(0.4, 0.4, 0.05, 0.06, -0.15)  # bowel gas
    cv.ellipse(0.45, 0.62, 0.04, 0.05, -0.12)


IMAGES = [
    # file, SOP class, modality, monochrome1, body part, view, laterality, draw
    ("CR_chest_PA.dcm", CR_STORAGE, "CR", True, "CHEST", "PA", None, draw_chest),
    ("DX_hand.dcm", DX_PRESENTATION, "DX", False, "HAND", "PA", "L", draw_hand),
    ("DX_pelvis.dcm", DX_PRESENTATION, "DX", False, "PELVIS", "AP", "U", draw_pelvis),
]


def make_dataset(i, spec, pixels, date="20240116"):
    name, sop_class, modality, mono1, part, view, laterality, _ = spec
    sop_uid = uid("dxhub-sample-dx/%s" % name)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = date
    ds.StudyTime = "141500"
    ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = "14%02d00" % (16 + i)
    ds.AccessionNumber = "DXS%04d" % (10 + i)
    ds.Modality = modality
    if sop_class == DX_PRESENTATION:
        ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Manufacturer = "dxhub synthetic phantom"
    ds.InstitutionName = "dxhub samples"
    ds.ReferringPhysicianName = "Suzuki^Hanako=鈴木^花子"
    ds.StudyDescription = "Radiographs (synthetic)"
    ds.SeriesDescription = "%s %s" % (part, view)
    ds.ManufacturerModelName = "gen_dx_images.py"
    ds.PatientName = "Yamada^Tarou=山田^太郎"
    ds.PatientID = "DXSAMPLE-DX-1"
    ds.PatientBirthDate = "19811203"
    ds.PatientSex = "M"
    ds.BodyPartExamined = part
    ds.KVP = "125" if part == "CHEST" else "60"
    ds.ExposureTime = "8"
    ds.XRayTubeCurrent = "320"
    ds.DistanceSourceToDetector = "1800" if part == "CHEST" else "1100"
    ds.ImagerPixelSpacing = [SPACING, SPACING]
    if modality == "DX":
        ds.DetectorType = "SCINTILLATOR"
        ds.PixelSpacing = [SPACING, SPACING]
    ds.ViewPosition = view
    ds.PatientOrientation = ["L", "F"] if part != "HAND" else ["R", "F"]
    ds.StudyInstanceUID = uid("dxhub-sample-dx/study")
    ds.SeriesInstanceUID = uid("dxhub-sample-dx/series/%d" % i)
    ds.StudyID = "2"
    ds.SeriesNumber = i + 1
    ds.InstanceNumber = 1
    if laterality:
        ds.ImageLaterality = laterality
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if mono1 else "MONOCHROME2"
    ds.Rows = ROWS
    ds.Columns = COLS
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.BurnedInAnnotation = "NO"
    if modality == "DX":
        ds.PixelIntensityRelationship = "LOG"
        ds.PixelIntensityRelationshipSign = 1
        ds.RescaleIntercept = "0"
        ds.RescaleSlope = "1"
        ds.RescaleType = "US"
    ds.WindowCenter = 2048
    ds.WindowWidth = 4096
    ds.LossyImageCompression = "00"
    ds.PixelData = pixels.tobytes()
    ds["PixelData"].VR = "OW"
    ds.is_little_endian = True
    ds.is_implicit_VR = False
    return ds


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output directory (created)")
    ap.add_argument("--seed", type=int, default=1453)
    ap.add_argument("--date", default="20240116", help="study date YYYYMMDD (a demo dates its exams today)")
    ap.add_argument("--only", nargs="*", help="file names to write (default: all)")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    for i, spec in enumerate(IMAGES):
        if args.only and spec[0] not in args.only:
            continue
        rng = np.random.default_rng([args.seed, i])  # per image, so --only gives the same bytes
        cv = Canvas()
        spec[7](cv)
        cv.blur()
        ds = make_dataset(i, spec, cv.pixels(rng, spec[3]), args.date)
        ds.save_as(os.path.join(args.out, spec[0]), write_like_original=False)
    n = sum(1 for spec in IMAGES if not args.only or spec[0] in args.only)
    print("gen_dx_images: %d images in %s" % (n, args.out), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
