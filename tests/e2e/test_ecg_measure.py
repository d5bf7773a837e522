"""`dxhub ecg --measure [--json]`: intervals, rhythm and triage flags
against ECGs whose answers are known from outside dxhub's C code.

(a) samples/gen_ecg.py writes 12-lead DICOM ECGs (500 Hz, 10 s) from a
    heart dipole whose waves have exact boundaries; its JSON truth gives PR,
    QRS, QT, the beats and the axis.  Measured: PR and QRS within 10 ms, QT
    within 20 ms, every beat found, rate within 1/min, axis within 10 deg,
    and the triage flags the variant was made for (STEMI pattern in
    contiguous leads, a flat lead, extreme bradycardia, a pause, a
    wide-complex tachycardia, a noisy lead) — and none on the others.
    pydicom and DCMTK's dcmdump read the files (they are proper DICOM).
(b) real ECGs carry their cart's own measurements: the Mortara 12-lead of
    the corpus (Waveform Annotation Sequence, read with pydicom) and the
    FDA's HL7 aECG example (annotations in the XML).  dxhub must agree
    within 15 ms on PR, QRS and QT, and find the beats the cart marked.
"""
import json
import re
import subprocess
from pathlib import Path

import pydicom
import pytest

from conftest import REPO, run

PY = "/usr/bin/python3"
GEN = REPO / "samples" / "gen_ecg.py"


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("ecg")
    r = subprocess.run([PY, str(GEN), "--out", str(out)], capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    return out


def measure(dxhub, path):
    r = run([dxhub, "ecg", "--measure", "--json", path])
    assert r.returncode == 0, r.stderr.decode()
    return json.loads(r.stdout)


def variants():
    r = subprocess.run([PY, str(GEN), "--list"], capture_output=True, text=True, timeout=60)
    return r.stdout.split()


EXPECTED_FLAGS = {
    "stemi_inferior": ["stemi"],
    "stemi_anterior": ["stemi"],
    "flat_lead": ["lead-flat"],
    "noisy_lead": ["lead-noisy"],
    "brady": ["rate-low"],
    "pause": ["pause"],
    "wide_tachy": ["rate-high", "wide-complex-tachycardia"],
}


@pytest.mark.parametrize("variant", variants())
def test_intervals_and_flags_match_the_synthetic_truth(dxhub, synth, variant):
    truth = json.loads((synth / f"{variant}.json").read_text())
    m = measure(dxhub, synth / f"{variant}.dcm")
    # beats: every complete one, each where it was made (R near QRS onset + 40 % of the QRS)
    onsets = truth["qrs_onsets_ms"]
    beats_ms = [b * 1000.0 / m["rate"] for b in m["beats"]]
    assert len(beats_ms) >= len(onsets) and len(beats_ms) <= len(onsets) + 1, (beats_ms, onsets)
    for on in onsets:
        assert min(abs(b - on) for b in beats_ms) < truth["qrs_ms"] + 20, (on, beats_ms)
    assert abs(m["hr_bpm"] - truth["hr_bpm"]) < 1.0
    assert abs(m["qrs_ms"] - truth["qrs_ms"]) <= 10, (m["qrs_ms"], truth["qrs_ms"])
    assert abs(m["qt_ms"] - truth["qt_ms"]) <= 20, (m["qt_ms"], truth["qt_ms"])
    if truth["pr_ms"] is None:
        assert m["pr_ms"] is None and not m["p_wave"]
    else:
        assert abs(m["pr_ms"] - truth["pr_ms"]) <= 10, (m["pr_ms"], truth["pr_ms"])
    assert abs(m["axis_deg"] - truth["axis_deg"]) <= 10
    rr = truth["rr_ms"]
    assert abs(m["qtc_bazett_ms"] - m["qt_ms"] / (sum(rr) / len(rr) / 1000.0) ** 0.5) < 2
    assert m["triage"]["flags"] == EXPECTED_FLAGS.get(variant, []), m["triage"]
    if m["triage"]["flags"]:
        assert "not a diagnosis" in m["triage"]["text"]
    else:
        assert m["triage"]["text"] == ""
    if variant.startswith("stemi"):
        named = set(m["triage"]["st_leads"].split(","))
        assert named <= set(truth["st_elevated_leads"]) | {"-aVR"}, (named, truth["st_elevated_leads"])
        for lead in m["leads"]:
            if lead["name"] in truth["st_elevated_leads"]:
                assert abs(lead["st_uv"] - truth["st60_uv"][lead["name"]]) < 40, lead
    for lead in m["leads"]:
        want = "flat" if lead["name"] in truth["flat_leads"] else "noisy" if lead["name"] in truth["noisy_leads"] \
            else "ok"
        assert lead["quality"] == want, lead
    if truth["longest_pause_ms"] and truth["longest_pause_ms"] > 3000:
        assert abs(m["longest_pause_ms"] - truth["longest_pause_ms"]) < 20


def test_synthetic_files_are_proper_dicom_waveforms(synth):
    files = sorted(synth.glob("*.dcm"))
    r = run(["dcmdump", "-q", *files], timeout=120)
    assert r.returncode == 0 and not r.stderr, r.stderr.decode()
    for f in files:
        ds = pydicom.dcmread(str(f))
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.9.1.1"  # 12-Lead ECG Waveform Storage
        mg = ds.WaveformSequence[0]
        assert (mg.NumberOfWaveformChannels, mg.NumberOfWaveformSamples, float(mg.SamplingFrequency)) == (12, 5000, 500)
        assert len(mg.WaveformData) == 12 * 5000 * 2


def cart_values(ds):
    """{name: value} of the cart's global measurements, and its beat
    fiducials (sample positions in the rhythm group)."""
    values, fiducials = {}, []
    for it in ds.WaveformAnnotationSequence:
        if "ConceptNameCodeSequence" not in it:
            continue
        name = it.ConceptNameCodeSequence[0].CodeMeaning
        if "NumericValue" in it:
            values[name] = float(it.NumericValue)
        elif name == "Fiducial Point" and int(it.AnnotationGroupNumber) >= 100:
            fiducials.append(int(it.ReferencedSamplePositions))
    return values, sorted(fiducials)


def test_real_12_lead_agrees_with_its_carts_measurements(dxhub, corpus):
    path = corpus / "ecg" / "dicom" / "waveform_ecg.dcm"
    cart, fiducials = cart_values(pydicom.dcmread(str(path)))
    m = measure(dxhub, path)
    for key, name in (("pr_ms", "PR Interval"), ("qrs_ms", "QRS Duration"), ("qt_ms", "QT Interval")):
        assert abs(m[key] - cart[name]) <= 15, (key, m[key], cart[name])
    assert abs(m["rr_mean_ms"] - cart["RR Interval"]) <= 10
    assert abs(m["axis_deg"] - cart["QRS Axis"]) <= 15
    assert len(fiducials) == 10 and len(m["beats"]) == 10
    assert all(abs(a - b) <= 20 for a, b in zip(m["beats"], fiducials)), (m["beats"], fiducials)
    assert m["triage"]["flags"] == []
    # the cart's own median beat (multiplex group 2, 1.2 s): one complex, measured the same
    r = run([dxhub, "ecg", "--measure", "--json", "--group", "1", path])
    assert r.returncode == 0, r.stderr.decode()
    med = json.loads(r.stdout)
    assert med["n_beats"] == 1 and med["median_beats"] == 1
    for key, name in (("pr_ms", "PR Interval"), ("qrs_ms", "QRS Duration"), ("qt_ms", "QT Interval")):
        assert abs(med[key] - cart[name]) <= 15, (key, med[key], cart[name])


def test_fda_aecg_example_agrees_with_its_annotations(dxhub, corpus):
    path = corpus / "ecg" / "hl7aecg" / "subject1_0.xml"
    xml = path.read_text()

    def annotated(code):
        m = re.search(r'code="%s".{0,400}?<value[^>]*value="([-0-9.]+)"' % code, xml, re.S)
        return float(m.group(1))

    m = measure(dxhub, path)
    for key, code in (("pr_ms", "MDC_ECG_TIME_PD_PR"), ("qrs_ms", "MDC_ECG_TIME_PD_QRS"),
                      ("qt_ms", "MDC_ECG_TIME_PD_QT")):
        assert abs(m[key] - annotated(code)) <= 15, (key, m[key], annotated(code))
    assert m["triage"]["flags"] == []


def test_text_output_names_every_measurement(dxhub, synth):
    r = run([dxhub, "ecg", "--measure", synth / "stemi_inferior.dcm"])
    assert r.returncode == 0, r.stderr.decode()
    out = r.stdout.decode()
    for word in ("heart rate", "PR", "QRS", "QT", "QTc Bazett", "Fridericia", "axis", "ST60_uV",
                 "suspected STEMI pattern", "not a diagnosis"):
        assert word in out, word


def test_too_short_to_measure_is_bad_input(dxhub, corpus):
    r = run([dxhub, "ecg", "--measure", corpus / "ecg" / "hl7aecg" / "minimum_aecg.xml"])
    assert r.returncode == 2
    assert b"at least one second" in r.stderr
