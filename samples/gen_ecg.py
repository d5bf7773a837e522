#!/usr/bin/python3
"""gen_ecg.py — deterministic synthetic 12-lead ECGs with exactly known intervals.

Writes DICOM 12-Lead ECG Waveform Storage files (PS3.3 A.34.3: 500 Hz,
10 s, 12 channels, 16-bit signed samples, 2.5 uV per count, Explicit VR
Little Endian) and, beside each, NAME.json with the truth the waveform was
built from: rate, RR intervals, PR, QRS, QT (ms), QTc, frontal QRS axis,
ST level of every lead at J+60 ms, which leads are flat or noisy, the
longest pause.

The heart is a moving dipole (x left, y down, z front).  Every wave is a
pulse with compact support, so its boundaries are exact:

  P    half-sine from P onset to P offset
  QRS  Q, R and S half-sines inside [QRS onset, J] (septal, main, terminal
       forces), each along its own direction: the QRS starts and ends with
       a corner in every lead
  ST   optional ST-segment vector (injury current): a ramp to full level
       inside the QRS, flat to the T peak, then falling with the T wave
  T    smooth rise (sin^2) to its peak, cosine fall that meets the baseline
       at T end = QRS onset + QT

Limb leads are the dipole's frontal projections (Einthoven, Goldberger:
III = II - I, aVR = -(I+II)/2, aVL = I - II/2, aVF = II - I/2, each computed
from I and II as a cart does, with their noise); precordial leads are its
horizontal projections with per-lead gains.  Every lead gets white noise
(6 uV), 50 Hz mains (6 uV) and baseline wander (~100 uV), and the beat
rate breathes (+-3 %).

Variants (all by default, or --only NAME ...):

  normal          sinus rhythm 72/min, PR 160, QRS 92, QT 384
  stemi_inferior  ST elevation ~0.3 mV in II, III, aVF (reciprocal in aVL)
  stemi_anterior  ST elevation 0.2-0.5 mV in V1-V4
  flat_lead       V3 disconnected: a flat line
  noisy_lead      V5 with muscle noise (100 uV RMS)
  brady           extreme bradycardia 36/min
  pause           sinus 70/min with a 3.6 s sinus pause
  wide_tachy      wide-complex tachycardia 170/min, QRS 164 ms, no P waves
  sweep01..12     normal morphology, random PR/QRS/QT/rate/axis (seeded)

    /usr/bin/python3 samples/gen_ecg.py --out build/ecg
    /usr/bin/python3 samples/gen_ecg.py --out DIR --only stemi_inferior --tag run2

--tag varies the UIDs (distinct studies of the same waveform); the same
options give byte-identical files.
"""
import argparse
import json
import math
import os
import sys
import uuid

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

TWELVE_LEAD_ECG = "1.2.840.10008.5.1.4.1.1.9.1.1"
NAMESPACE = uuid.UUID("3c0d5d8e-2b7a-5f1e-9a64-7d21c4e0b8a3")
RATE = 500.0
SECONDS = 10.0
UV_PER_COUNT = 2.5

# SCP-ECG lead codes (EN 1064 Table 4; DICOM CID 3001 "ECG Leads").
LEADS = [("I", 1), ("II", 2), ("III", 61), ("aVR", 62), ("aVL", 63), ("aVF", 64),
         ("V1", 3), ("V2", 4), ("V3", 5), ("V4", 6), ("V5", 7), ("V6", 8)]
# Precordial leads: angle in the horizontal plane from +x (left) towards
# +z (front), and gain (electrodes near the heart see more).
PRECORDIAL = {"V1": (115, 1.0), "V2": (92, 1.5), "V3": (75, 1.6), "V4": (58, 1.5), "V5": (35, 1.25),
              "V6": (10, 1.0)}


def uid(name):
    """A stable UID under 2.25 (PS3.5 §B.2: UUID as a decimal integer)."""
    return "2.25.%d" % uuid.uuid5(NAMESPACE, name).int


def unit(v):
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def half_sine(t, a, b):
    x = (t - a) / (b - a)
    return np.where((x >= 0) & (x <= 1), np.sin(np.pi * np.clip(x, 0, 1)), 0.0)


def t_wave(t, a, b, peak=0.62):
    """Smooth rise to the peak, cosine fall meeting the baseline at b."""
    x = (t - a) / (b - a)
    rise = np.sin(0.5 * np.pi * np.clip(x / peak, 0, 1)) ** 2
    fall = np.cos(0.5 * np.pi * np.clip((x - peak) / (1 - peak), 0, 1))
    return np.where((x >= 0) & (x <= 1), np.where(x < peak, rise, fall), 0.0)


def st_shape(t, q, j, tpeak, tend):
    """Injury current: raised-cosine ramp over the second half of the QRS,
    flat to the T peak, then down with the T wave's cosine to T end."""
    ramp_a = q + 0.4 * (j - q)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.clip((t - ramp_a) / (j - ramp_a), 0, 1))
    fall = np.cos(0.5 * np.pi * np.clip((t - tpeak) / (tend - tpeak), 0, 1))
    return np.where((t >= ramp_a) & (t <= tend), np.where(t < tpeak, ramp, fall), 0.0)


class Spec:
    """One synthetic ECG: rhythm, intervals (ms), morphology, faults."""

    def __init__(self, name, hr, pr, qrs, qt, axis=55.0, st=None, flat=(), noisy=(), pause_ms=None,
                 wide=False, seed=1):
        self.name, self.hr, self.pr, self.qrs, self.qt = name, hr, pr, qrs, qt
        self.axis, self.st, self.flat, self.noisy = axis, st, list(flat), list(noisy)
        self.pause_ms, self.wide, self.seed = pause_ms, wide, seed


def variants():
    v = [
        Spec("normal", 72, 160, 92, 384, seed=11),
        Spec("stemi_inferior", 84, 156, 96, 372, axis=70, st=((0.05, 1.0, 0.15), 350.0), seed=12),
        Spec("stemi_anterior", 96, 150, 100, 356, axis=40, st=((0.25, 0.1, 1.0), 300.0), seed=13),
        Spec("flat_lead", 66, 176, 88, 396, flat=["V3"], seed=14),
        Spec("noisy_lead", 78, 168, 90, 380, noisy=["V5"], seed=15),
        Spec("brady", 36, 204, 108, 488, axis=30, seed=16),
        Spec("pause", 70, 164, 94, 390, pause_ms=3600, seed=17),
        Spec("wide_tachy", 170, None, 164, 300, axis=-60, wide=True, seed=18),
    ]
    rng = np.random.default_rng(2024)
    for i in range(1, 13):
        hr = float(rng.uniform(48, 110))
        qrs = float(rng.uniform(70, 130))
        rr = 60000.0 / hr
        # QT by Fridericia around 400 ms corrected, kept inside the beat.
        qt = float(np.clip(rng.uniform(370, 450) * (rr / 1000.0) ** (1 / 3), qrs + 160, 0.75 * rr))
        pr = float(rng.uniform(120, 240))
        axis = float(rng.uniform(-30, 90))
        v.append(Spec("sweep%02d" % i, round(hr, 1), round(pr), round(qrs), round(qt), axis=round(axis),
                      seed=100 + i))
    return v


def beat_onsets(spec):
    """QRS onsets (s): breathing rate (+-3 %), first P inside the record;
    the pause variant drops beats to leave one long interval."""
    rr0 = 60.0 / spec.hr
    first = (spec.pr or 0) / 1000.0 + 0.25
    t, out = first, []
    while t < SECONDS:
        out.append(t)
        rr = rr0 * (1 + 0.03 * math.sin(2 * math.pi * t / 4.3))
        if spec.pause_ms and len(out) == 4:
            rr = spec.pause_ms / 1000.0
        t += rr
    return out


def components(spec):
    """Dipole directions and amplitudes (mV) of each wave."""
    a = math.radians(spec.axis)
    main = unit((0.85 * math.cos(a), 0.85 * math.sin(a), -0.15))
    if spec.wide:
        # Ventricular origin: broad main force, deep terminal force, no septal q.
        return {"Q": (unit((0.2, -0.3, 0.9)), 0.0), "R": (main, 1.2), "S": (unit((-0.4, -0.4, -0.8)), 0.9),
                "T": (unit((-0.8 * math.cos(a), -0.8 * math.sin(a), 0.4)), 0.45), "P": (unit((0.5, 0.8, 0.2)), 0.0)}
    return {"Q": (unit((-0.5, 0.2, 0.84)), 0.12), "R": (main, 1.3), "S": (unit((-0.45, -0.5, -0.74)), 0.45),
            "T": (unit((0.7, 0.55, 0.45)), 0.32), "P": (unit((0.55, 0.8, 0.2)), 0.16)}


def dipole(spec, t, onsets):
    """H(t): 3 x len(t) in mV."""
    c = components(spec)
    H = np.zeros((3, len(t)))
    q_d = spec.qrs / 1000.0
    qt = spec.qt / 1000.0
    for q in onsets:
        j = q + q_d
        if spec.pr:
            pd = float(np.clip(spec.pr - 60, 70, 110)) / 1000.0
            p_on = q - spec.pr / 1000.0
            H += np.outer(c["P"][0], c["P"][1] * half_sine(t, p_on, p_on + pd))
        if spec.wide:
            parts = {"R": (0.0, 0.6), "S": (0.45, 1.0)}
        else:
            parts = {"Q": (0.0, 0.25), "R": (0.15, 0.7), "S": (0.55, 1.0)}
        for k, (a, b) in parts.items():
            H += np.outer(c[k][0], c[k][1] * half_sine(t, q + a * q_d, q + b * q_d))
        t_end = q + qt
        t_on = j + 0.25 * (qt - q_d)
        tpeak = t_on + 0.62 * (t_end - t_on)
        H += np.outer(c["T"][0], c["T"][1] * t_wave(t, t_on, t_end))
        if spec.st:
            direction, uv = spec.st
            H += np.outer(unit(direction), uv / 1000.0 * st_shape(t, q, j, tpeak, t_end))
    return H


def leads_from_dipole(H):
    """{lead: mV}: limb leads from the frontal projection, precordial from
    the horizontal one."""
    hx, hy, hz = H
    s3 = math.sqrt(3) / 2
    out = {"I": hx, "II": 0.5 * hx + s3 * hy}
    for name, (ang, gain) in PRECORDIAL.items():
        a = math.radians(ang)
        out[name] = gain * (math.cos(a) * hx + math.sin(a) * hz) + 0.1 * hy
    return out


def derive_limb(v):
    v["III"] = v["II"] - v["I"]
    v["aVR"] = -(v["I"] + v["II"]) / 2
    v["aVL"] = v["I"] - v["II"] / 2
    v["aVF"] = v["II"] - v["I"] / 2
    return v


def make(spec):
    """(counts int16 [samples x 12], truth dict)."""
    n = int(RATE * SECONDS)
    t = np.arange(n) / RATE
    onsets = beat_onsets(spec)
    H = dipole(spec, t, onsets)
    clean = derive_limb(leads_from_dipole(H))
    rng = np.random.default_rng(spec.seed)
    noisy = {}
    for name in ["I", "II"] + list(PRECORDIAL):
        uv = clean[name] * 1000.0
        uv = uv + rng.normal(0, 6.0, n)
        uv = uv + 6.0 * np.sin(2 * np.pi * 50.0 * t + rng.uniform(0, 2 * np.pi))
        uv = uv + 60.0 * np.sin(2 * np.pi * 0.15 * t + rng.uniform(0, 6.3)) \
            + 40.0 * np.sin(2 * np.pi * 0.33 * t + rng.uniform(0, 6.3))
        if name in spec.noisy:
            # Muscle tremor: white noise band-limited to ~20-150 Hz.
            w = rng.normal(0, 1.0, n + 64)
            k = np.sin(np.pi * np.arange(1, 8) / 8) * np.cos(np.pi * 0.45 * (np.arange(1, 8) - 4))
            emg = np.convolve(w, k, "same")[:n]
            uv = uv + emg / emg.std() * 100.0
        noisy[name] = uv
    noisy = derive_limb(noisy)
    counts = np.zeros((n, len(LEADS)), "<i2")
    for i, (name, _) in enumerate(LEADS):
        if name in spec.flat:
            continue  # electrode off: the cart writes a flat line
        counts[:, i] = np.clip(np.rint(noisy[name] / UV_PER_COUNT), -32768, 32767)

    # Truth.
    in_record = [q for q in onsets if q + spec.qrs / 1000.0 < SECONDS - 0.01]
    rr = np.diff(in_record) * 1000.0
    rr_mean = float(rr.mean()) if len(rr) else None
    c = components(spec)
    net = np.zeros(3)  # QRS area (mV s) of each force: half-sine area = 2/pi x duration
    parts = {"R": (0.0, 0.6), "S": (0.45, 1.0)} if spec.wide else {"Q": (0.0, 0.25), "R": (0.15, 0.7),
                                                                   "S": (0.55, 1.0)}
    for k, (a, b) in parts.items():
        net += c[k][0] * c[k][1] * (2 / np.pi) * (b - a) * spec.qrs / 1000.0
    axis = math.degrees(math.atan2(net[1], net[0]))
    q0 = onsets[1]
    j60 = int(round((q0 + spec.qrs / 1000.0 + 0.060) * RATE))
    st60 = {name: (0.0 if name in spec.flat else round(float(clean[name][j60]) * 1000.0, 1))
            for name, _ in LEADS}
    gaps = np.diff([0.0] + list(onsets) + [SECONDS]) * 1000.0
    truth = {
        "variant": spec.name, "rate": RATE, "seconds": SECONDS, "uv_per_count": UV_PER_COUNT,
        "hr_bpm": round(60000.0 / rr_mean, 2) if rr_mean else None,
        "rr_ms": [round(float(x), 2) for x in rr],
        "qrs_onsets_ms": [round(q * 1000.0, 2) for q in in_record],
        "pr_ms": spec.pr, "qrs_ms": spec.qrs, "qt_ms": spec.qt,
        "qtc_bazett_ms": round(spec.qt / math.sqrt(rr_mean / 1000.0), 1) if rr_mean else None,
        "qtc_fridericia_ms": round(spec.qt / (rr_mean / 1000.0) ** (1 / 3), 1) if rr_mean else None,
        "axis_deg": round(axis, 1),
        "st60_uv": st60,
        "st_elevated_leads": [name for name, v in st60.items() if v >= 100.0] if spec.st else [],
        "flat_leads": spec.flat, "noisy_leads": spec.noisy,
        "longest_pause_ms": round(float(max(np.diff(onsets)) * 1000.0), 1) if len(onsets) > 1 else None,
        "p_waves": bool(spec.pr),
        "edge_gaps_ms": [round(float(gaps[0]), 1), round(float(gaps[-1]), 1)],
    }
    return counts, truth


def code_item(value, scheme, meaning, version=None):
    it = Dataset()
    it.CodeValue = value
    it.CodingSchemeDesignator = scheme
    if version:
        it.CodingSchemeVersion = version
    it.CodeMeaning = meaning
    return it


def dataset(spec, counts, tag, date="20240301"):
    base = "dxhub-sample-ecg/%s/%s" % (tag, spec.name)
    sop_uid = uid(base + "/sop")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = TWELVE_LEAD_ECG
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = TWELVE_LEAD_ECG
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = date
    ds.StudyTime = ds.SeriesTime = "081500"
    ds.ContentTime = "081512"
    ds.AcquisitionDateTime = date + "081502"
    ds.AccessionNumber = ("E" + uuid.uuid5(NAMESPACE, base).hex[:12]).upper()
    ds.Modality = "ECG"
    ds.Manufacturer = "dxhub synthetic ECG"
    ds.ManufacturerModelName = "gen_ecg.py"
    ds.InstitutionName = "dxhub samples"
    ds.ReferringPhysicianName = "Chen^Jing=陈^静"
    ds.StudyDescription = "Resting 12-lead ECG (synthetic: %s)" % spec.name
    ds.SeriesDescription = "12-lead rhythm"
    ds.PatientName = "Wang^Fang=王^芳"
    ds.PatientID = "DXSAMPLE-ECG-%s" % spec.name.upper()
    ds.PatientBirthDate = "19660512"
    ds.PatientSex = "M"
    ds.PatientAge = "057Y"
    ds.StudyInstanceUID = uid(base + "/study")
    ds.SeriesInstanceUID = uid(base + "/series")
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    # PS3.3 C.7.6.14 Acquisition Context: type 2 (present, may be empty).
    ds.AcquisitionContextSequence = Sequence([])

    n, nch = counts.shape
    mg = Dataset()
    mg.MultiplexGroupTimeOffset = "0"
    mg.WaveformOriginality = "ORIGINAL"
    mg.NumberOfWaveformChannels = nch
    mg.NumberOfWaveformSamples = n
    mg.SamplingFrequency = "%g" % RATE
    mg.MultiplexGroupLabel = "RHYTHM"
    chans = []
    for name, code in LEADS:
        ch = Dataset()
        ch.ChannelSourceSequence = Sequence([code_item("5.6.3-9-%d" % code, "SCPECG", "Lead " + name, "1.3")])
        ch.ChannelSensitivity = "%g" % UV_PER_COUNT
        ch.ChannelSensitivityUnitsSequence = Sequence([code_item("uV", "UCUM", "microvolt", "1.4")])
        ch.ChannelSensitivityCorrectionFactor = "1"
        ch.ChannelBaseline = "0"
        ch.ChannelTimeSkew = "0"
        ch.WaveformBitsStored = 16
        ch.FilterLowFrequency = "0.05"
        ch.FilterHighFrequency = "150"
        chans.append(ch)
    mg.ChannelDefinitionSequence = Sequence(chans)
    mg.WaveformBitsAllocated = 16
    mg.WaveformSampleInterpretation = "SS"
    mg.WaveformData = counts.astype("<i2").tobytes()  # interleaved: C1S1 C2S1 ... (PS3.3 C.10.9.1.7)
    mg["WaveformData"].VR = "OW"
    ds.WaveformSequence = Sequence([mg])
    ds.is_little_endian = True
    ds.is_implicit_VR = False
    return ds


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", help="output directory (created)")
    ap.add_argument("--only", nargs="*", help="variant names (default: all)")
    ap.add_argument("--tag", default="set1", help="varies the UIDs (distinct studies of the same ECG)")
    ap.add_argument("--date", default="20240301", help="study date YYYYMMDD (a demo dates its exams today)")
    ap.add_argument("--list", action="store_true", help="list the variants and exit")
    args = ap.parse_args(argv)
    specs = variants()
    if args.list:
        for s in specs:
            print(s.name)
        return 0
    if not args.out:
        ap.error("--out is required")
    if args.only:
        known = {s.name for s in specs}
        bad = [n for n in args.only if n not in known]
        if bad:
            ap.error("unknown variant(s): %s (see --list)" % ", ".join(bad))
        specs = [s for s in specs if s.name in args.only]
    os.makedirs(args.out, exist_ok=True)
    for spec in specs:
        counts, truth = make(spec)
        ds = dataset(spec, counts, args.tag, args.date)
        path = os.path.join(args.out, spec.name + ".dcm")
        ds.save_as(path, write_like_original=False)
        truth["study_uid"] = str(ds.StudyInstanceUID)
        truth["file"] = spec.name + ".dcm"
        with open(os.path.join(args.out, spec.name + ".json"), "w") as f:
            json.dump(truth, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
