#!/usr/bin/python3
"""gen_ct_series.py — a deterministic synthetic CT series for tests and benchmarks.

Writes N axial slices (default 300) of 512x512, 16-bit signed CT images
(Rescale Intercept -1024, Slope 1, so stored value = HU + 1024) as CT Image
Storage, Explicit VR Little Endian, one Part 10 file per slice, into --out.

The anatomy is a phantom built from ellipses along z: body outline with a fat
layer, lungs (thorax slices only), heart, aorta, liver and kidneys (abdomen),
a spine (vertebral body, canal, posterior elements), ribs that come and go
with z, a patient table, and Gaussian noise (sigma ~12 HU).  Every run with
the same options gives byte-identical files: fixed seed, fixed dates, UIDs
derived from fixed names under the 2.25 (UUID) root.

    /usr/bin/python3 samples/gen_ct_series.py --slices 300 --out build/bench/ct
"""
import argparse
import os
import sys
import uuid

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
NAMESPACE = uuid.UUID("6f1c7f0e-3a4b-5c2d-9e8f-0a1b2c3d4e5f")
ROWS = COLS = 512
PIXEL_MM = 0.78125  # 400 mm field of view


def uid(name):
    """A stable UID under 2.25 (PS3.5 §B.2: UUID as a decimal integer)."""
    return "2.25.%d" % uuid.uuid5(NAMESPACE, name).int


def ellipse(yy, xx, cy, cx, ry, rx):
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def bump(z, centre, half):
    """1 at centre, falling to 0 at centre +- half (smooth organ extents)."""
    t = 1.0 - ((z - centre) / half) ** 2
    return np.sqrt(t) if t > 0 else 0.0


class Phantom:
    def __init__(self, slices, seed):
        self.slices = slices
        yy, xx = np.mgrid[0:ROWS, 0:COLS].astype(np.float32)
        self.yy, self.xx = yy, xx
        rng = np.random.default_rng(seed)
        # A small bank of noise fields, rolled per slice: fast and deterministic.
        self.noise = [rng.normal(0.0, 12.0, (ROWS, COLS)).astype(np.float32) for _ in range(4)]
        # Slow texture for soft tissue: a few random low-frequency waves.
        tex = np.zeros((ROWS, COLS), np.float32)
        for _ in range(8):
            fy, fx = rng.uniform(-0.08, 0.08, 2)
            tex += np.sin(fy * yy + fx * xx + rng.uniform(0, 2 * np.pi)).astype(np.float32)
        self.texture = tex * 2.5

    def slice_hu(self, k):
        """Hounsfield units of slice k (k = 0 at the feet end, last at the head end)."""
        z = k / max(self.slices - 1, 1)  # 0 pelvis/abdomen .. 1 upper thorax
        yy, xx = self.yy, self.xx
        img = np.full((ROWS, COLS), -1000.0, np.float32)  # air
        cy, cx = 250.0, 256.0
        # Body outline: wider in the abdomen, slightly narrower in the thorax.
        ry, rx = 150.0 - 10.0 * z, 215.0 - 20.0 * z
        body = ellipse(yy, xx, cy, cx, ry, rx)
        img[body] = -100.0  # subcutaneous fat
        inner = ellipse(yy, xx, cy, cx, ry - 14.0, rx - 16.0)
        img[inner] = 40.0 + self.texture[inner]  # muscle / soft tissue
        # Lungs: thorax slices (z > 0.45), growing towards the apex region.
        lung = bump(z, 0.75, 0.32)
        if lung > 0:
            for side in (-1.0, 1.0):
                m = ellipse(yy, xx, cy - 10.0, cx + side * 85.0, 95.0 * lung, 62.0 * lung)
                img[m] = -850.0 + 0.5 * self.texture[m] * 5.0
            # Heart and aorta between the lungs, lower thorax.
            heart = bump(z, 0.62, 0.2)
            if heart > 0:
                m = ellipse(yy, xx, cy - 20.0, cx + 25.0, 70.0 * heart, 80.0 * heart)
                img[m] = 45.0 + self.texture[m]
            m = ellipse(yy, xx, cy + 45.0, cx - 20.0, 14.0, 14.0)
            img[m] = 160.0  # contrast-enhanced descending aorta
        else:
            m = ellipse(yy, xx, cy + 40.0, cx - 20.0, 13.0, 13.0)
            img[m] = 160.0  # abdominal aorta
        # Liver (right side of the patient = image left), upper abdomen.
        liver = bump(z, 0.38, 0.18)
        if liver > 0:
            m = ellipse(yy, xx, cy - 20.0, cx - 80.0, 85.0 * liver, 95.0 * liver)
            img[m & inner] = 60.0 + self.texture[m & inner]
        # Kidneys, mid abdomen.
        kid = bump(z, 0.25, 0.1)
        if kid > 0:
            for side in (-1.0, 1.0):
                m = ellipse(yy, xx, cy + 55.0, cx + side * 90.0, 35.0 * kid, 22.0 * kid)
                img[m] = 150.0
                m2 = ellipse(yy, xx, cy + 55.0, cx + side * 85.0, 12.0 * kid, 7.0 * kid)
                img[m2] = 20.0  # renal pelvis
        # Spine: vertebral body (cancellous bone + cortex), canal, posterior arch.
        vb_y = cy + 72.0
        body_v = ellipse(yy, xx, vb_y, cx, 24.0, 27.0)
        img[body_v] = 700.0
        img[ellipse(yy, xx, vb_y, cx, 19.0, 22.0)] = 250.0
        img[ellipse(yy, xx, vb_y + 38.0, cx, 11.0, 12.0)] = 10.0  # spinal canal (CSF)
        arch = ellipse(yy, xx, vb_y + 40.0, cx, 20.0, 24.0) & ~ellipse(yy, xx, vb_y + 38.0, cx, 11.0, 12.0)
        arch &= yy > vb_y + 25.0
        img[arch] = 900.0
        img[ellipse(yy, xx, vb_y + 62.0, cx, 10.0, 5.0)] = 850.0  # spinous process
        # Vertebral discs: every ~30 mm the body drops to disc density.
        if (k * 2) % 30 < 4:
            img[ellipse(yy, xx, vb_y, cx, 22.0, 25.0)] = 80.0
        # Ribs: thorax slices, appearing periodically along z (oblique ribs).
        if z > 0.42:
            phase = (k * 5) % 25
            if phase < 10:
                for ang in np.linspace(0.35, 2.8, 7):
                    for side in (-1.0, 1.0):
                        ry2, rx2 = ry - 8.0, rx - 10.0
                        py = cy - np.cos(ang) * ry2 * 0.9 + 10.0
                        px = cx + side * np.sin(ang) * rx2 * 0.95
                        m = ellipse(yy, xx, py, px, 6.0, 8.0)
                        img[m] = 1100.0
                        img[ellipse(yy, xx, py, px, 3.0, 4.5)] = 300.0
        # Table under the patient (curved carbon-fibre top).
        table = (yy > cy + ry + 12.0) & (yy < cy + ry + 20.0) & (np.abs(xx - cx) < 230.0)
        img[table] = 200.0
        # Noise everywhere except pure air outside the table (a little there too).
        n = np.roll(self.noise[k % 4], (k * 37) % ROWS, axis=0)
        inside = img > -990.0
        img[inside] += n[inside]
        img[~inside] += n[~inside] * 0.3
        return img


def make_dataset(k, args, study_uid, series_uid, frame_uid, hu):
    stored = np.clip(np.rint(hu + 1024.0), -2048, 4095).astype("<i2")
    sop_uid = uid("dxhub-sample-ct/%s/%d" % (args.name, k + 1))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = args.date
    ds.StudyTime = "093000"
    ds.SeriesTime = "093512"
    ds.AcquisitionTime = "093514.%06d" % (k * 1000)
    ds.ContentTime = "093520"
    ds.AccessionNumber = "DXS0001"
    ds.Modality = "CT"
    ds.Manufacturer = "dxhub synthetic phantom"
    ds.InstitutionName = "dxhub samples"
    ds.ReferringPhysicianName = "Li^Wei=李^伟"
    ds.StudyDescription = "CT chest abdomen (synthetic)"
    ds.SeriesDescription = "Axial 1.0 mm"
    ds.ManufacturerModelName = "gen_ct_series.py"
    ds.PatientName = "Zhang^San=张^三"
    ds.PatientID = "DXSAMPLE-CT-1"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "M"
    ds.PatientAge = "054Y"
    ds.BodyPartExamined = "CHEST"
    ds.SliceThickness = "1.0"
    ds.KVP = "120"
    ds.DataCollectionDiameter = "500.0"
    ds.ReconstructionDiameter = "400.0"
    ds.GantryDetectorTilt = "0.0"
    ds.TableHeight = "150.0"
    ds.RotationDirection = "CW"
    ds.ExposureTime = "500"
    ds.XRayTubeCurrent = "200"
    ds.Exposure = "100"
    ds.ConvolutionKernel = "STANDARD"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = 2
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = k + 1
    # Slices run from the feet end (z = -300) up towards the head.
    zpos = -300.0 + k * 1.0
    ds.ImagePositionPatient = [-200.0 + PIXEL_MM / 2, -200.0 + PIXEL_MM / 2, zpos]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.FrameOfReferenceUID = frame_uid
    ds.PositionReferenceIndicator = ""
    ds.SliceLocation = zpos
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ROWS
    ds.Columns = COLS
    ds.PixelSpacing = [PIXEL_MM, PIXEL_MM]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.WindowCenter = [40, -600]
    ds.WindowWidth = [400, 1500]
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.PixelData = stored.tobytes()
    ds["PixelData"].VR = "OW"
    ds.is_little_endian = True
    ds.is_implicit_VR = False
    return ds


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--out", required=True, help="output directory (created)")
    ap.add_argument("--seed", type=int, default=1453)
    ap.add_argument("--name", default="series1", help="varies the UIDs (several distinct series)")
    ap.add_argument("--date", default="20240115", help="study date YYYYMMDD (a demo dates its exams today)")
    args = ap.parse_args(argv)
    if args.slices < 1:
        ap.error("--slices must be >= 1")
    os.makedirs(args.out, exist_ok=True)
    study_uid = uid("dxhub-sample-ct/%s/study" % args.name)
    series_uid = uid("dxhub-sample-ct/%s/series" % args.name)
    frame_uid = uid("dxhub-sample-ct/%s/frame" % args.name)
    ph = Phantom(args.slices, args.seed)
    for k in range(args.slices):
        ds = make_dataset(k, args, study_uid, series_uid, frame_uid, ph.slice_hu(k))
        path = os.path.join(args.out, "CT%04d.dcm" % (k + 1))
        ds.save_as(path, write_like_original=False)
    print("gen_ct_series: %d slices in %s" % (args.slices, args.out), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
