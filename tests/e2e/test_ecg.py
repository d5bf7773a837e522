"""`dxhub ecg` on every ECG of the corpus, checked against oracles nobody
here wrote: pydicom for DICOM waveforms, the WFDB header and the signal
bytes decoded here with numpy for PhysioNet records, xml.etree for HL7
aECG, BioSig for SCP-ECG.  Every record also goes through the lossless
codec (--encode) and must come back sample for sample.

Environment: DXHUB (the binary), DXHUB_CORPUS (the corpus).
"""
import json
import os
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.waveforms.numpy_handler import multiplex_array

REPO = Path(__file__).resolve().parents[2]

# SCP-ECG lead numbers (EN 1064; MDC uses the same) -> standard names.
SCP_LEADS = {1: "I", 2: "II", 3: "V1", 4: "V2", 5: "V3", 6: "V4", 7: "V5", 8: "V6",
             61: "III", 62: "aVR", 63: "aVL", 64: "aVF"}
STANDARD = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


@pytest.fixture(scope="module")
def ecg_bin():
    path = Path(os.environ.get("DXHUB") or REPO / "build" / "dxhub")
    if not path.exists():
        pytest.skip(f"{path} not built")
    return path


@pytest.fixture(scope="module")
def ecg_dir():
    root = Path(os.environ.get("DXHUB_CORPUS") or REPO.parent / "shared" / "corpus") / "ecg"
    if not root.is_dir():
        pytest.skip(f"no ECG corpus at {root}")
    return root


def run(binary, *args, check=True):
    p = subprocess.run([str(binary), "ecg", *map(str, args)], capture_output=True, text=True, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError(f"dxhub ecg {args} exited {p.returncode}: {p.stderr}")
    return p


def summary(binary, path, *extra):
    return json.loads(run(binary, "--json", *extra, path).stdout)


def samples(binary, path, tmp_path, n_leads, *extra):
    out = tmp_path / "samples.raw"
    run(binary, "--raw", out, *extra, path)
    return np.fromfile(out, dtype="<i4").reshape(-1, n_leads)


def check_ranges(js, arr):
    for k, lead in enumerate(js["leads"]):
        assert lead["min"] == int(arr[:, k].min()), lead["name"]
        assert lead["max"] == int(arr[:, k].max()), lead["name"]
        phys = (arr[:, k].astype(float) - lead["baseline"]) * lead["scale"]
        assert lead["min_physical"] == pytest.approx(phys.min(), rel=1e-9, abs=1e-12)
        assert lead["max_physical"] == pytest.approx(phys.max(), rel=1e-9, abs=1e-12)


def roundtrip(binary, path, tmp_path, js, arr, *extra):
    """--encode writes a dxhub ECG stream; reading it back gives the same
    samples and the same metadata (the source format included)."""
    stream = tmp_path / "rec.dxecg"
    run(binary, "--encode", stream, *extra, path)
    raw_bytes = arr.size * 2
    assert stream.stat().st_size < raw_bytes + 1024
    back = samples(binary, stream, tmp_path, js["leads"].__len__())
    assert np.array_equal(back, arr)
    js2 = summary(binary, stream)
    for key in ("source", "rate", "samples", "duration", "group", "groups", "label", "leads"):
        assert js2[key] == js[key], key


# ---- DICOM ----------------------------------------------------------------

def dicom_oracle(ds, group):
    item = ds.WaveformSequence[group]
    names, units, scales = [], [], []
    for ch in item.ChannelDefinitionSequence:
        src = ch.ChannelSourceSequence[0]
        m = re.fullmatch(r"5\.6\.3-9-(\d+)", src.CodeValue)
        names.append(SCP_LEADS[int(m.group(1))])
        units.append(ch.ChannelSensitivityUnitsSequence[0].CodeValue)
        scales.append(float(ch.ChannelSensitivity) * float(ch.get("ChannelSensitivityCorrectionFactor", 1)))
        # pydicom adds the baseline before scaling, PS3.3 adds it after: equal only at 0,
        # which is what the corpus has; the unit tests cover a non-zero baseline.
        assert float(ch.get("ChannelBaseline", 0)) == 0
    return item, names, units, scales


@pytest.mark.parametrize("name,groups", [("waveform_ecg.dcm", 2), ("wave_dfl", 1)])
def test_dicom_waveform_matches_pydicom(ecg_bin, ecg_dir, tmp_path, name, groups):
    path = ecg_dir / "dicom" / name
    ds = pydicom.dcmread(str(path))
    assert len(ds.WaveformSequence) == groups
    for g in range(groups):
        item, names, units, scales = dicom_oracle(ds, g)
        js = summary(ecg_bin, path, "--group", g)
        assert js["source"] == "DICOM"
        assert js["groups"] == groups and js["group"] == g
        assert js["rate"] == float(item.SamplingFrequency)
        assert js["samples"] == item.NumberOfWaveformSamples
        assert js["duration"] == pytest.approx(item.NumberOfWaveformSamples / float(item.SamplingFrequency))
        assert [l["name"] for l in js["leads"]] == names == STANDARD
        assert [l["unit"] for l in js["leads"]] == units
        assert [l["scale"] for l in js["leads"]] == pytest.approx(scales)
        raw = multiplex_array(ds, g, as_raw=True).astype(np.int32)
        arr = samples(ecg_bin, path, tmp_path, item.NumberOfWaveformChannels, "--group", g)
        assert np.array_equal(arr, raw)
        check_ranges(js, arr)
        # physical values as pydicom computes them
        phys = multiplex_array(ds, g, as_raw=False)
        for k, lead in enumerate(js["leads"]):
            ours = (arr[:, k] - lead["baseline"]) * lead["scale"]
            assert np.allclose(ours, phys[:, k], rtol=1e-12, atol=1e-9)
        roundtrip(ecg_bin, path, tmp_path, js, arr, "--group", g)


def test_dicom_group_out_of_range_is_bad_input(ecg_bin, ecg_dir):
    p = run(ecg_bin, "--group", 5, ecg_dir / "dicom" / "wave_dfl", check=False)
    assert p.returncode == 2
    assert "group 5" in p.stderr


# ---- WFDB -----------------------------------------------------------------

def wfdb_header(hea):
    lines = [l for l in hea.read_text().splitlines() if l.strip() and not l.startswith("#")]
    rec = lines[0].split()
    nsig, fs, nsamp = int(rec[1]), float(rec[2]), int(rec[3])
    sigs = []
    for l in lines[1:1 + nsig]:
        f = l.split()
        gain = re.match(r"([0-9.]+)(?:\((-?\d+)\))?(?:/(\S+))?", f[2])
        sigs.append(dict(file=f[0], fmt=int(f[1]), gain=float(gain.group(1)),
                         baseline=int(gain.group(2)) if gain.group(2) else int(f[4]),
                         units=gain.group(3) or "mV", adcres=int(f[3]), initval=int(f[5]),
                         checksum=int(f[6]), desc=" ".join(f[8:])))
    return fs, nsamp, sigs


def decode_212(data, count):
    b = np.frombuffer(data, dtype=np.uint8)
    b = b[: len(b) // 3 * 3].reshape(-1, 3).astype(np.int32)
    a = b[:, 0] | ((b[:, 1] & 0x0F) << 8)
    c = b[:, 2] | ((b[:, 1] & 0xF0) << 4)
    s = np.empty(2 * len(a), dtype=np.int32)
    s[0::2], s[1::2] = a, c
    s[s > 2047] -= 4096
    return s.reshape(-1, count)


def wfdb_oracle(hea):
    fs, nsamp, sigs = wfdb_header(hea)
    cols = []
    i = 0
    while i < len(sigs):
        group = [s for s in sigs[i:] if s["file"] == sigs[i]["file"]]
        data = (hea.parent / sigs[i]["file"]).read_bytes()
        if sigs[i]["fmt"] == 212:
            arr = decode_212(data, len(group))
        else:
            assert sigs[i]["fmt"] == 16
            arr = np.frombuffer(data, dtype="<i2").reshape(-1, len(group)).astype(np.int32)
        cols.append(arr[:nsamp])
        i += len(group)
    return fs, nsamp, sigs, np.concatenate(cols, axis=1)


@pytest.mark.parametrize("rel,names", [
    ("wfdb/mitdb/100.hea", ["MLII", "V5"]),
    ("wfdb/ptbdb/s0010_re.hea", STANDARD + ["vx", "vy", "vz"]),
])
def test_wfdb_record_matches_header_and_bytes(ecg_bin, ecg_dir, tmp_path, rel, names):
    hea = ecg_dir / rel
    fs, nsamp, sigs, oracle = wfdb_oracle(hea)
    # the oracle agrees with the header's own checks
    for k, s in enumerate(sigs):
        assert oracle[0, k] == s["initval"]
        assert np.int16(np.uint16(oracle[:, k].astype(np.int64).sum() & 0xFFFF)) == s["checksum"]
    js = summary(ecg_bin, hea)
    assert js["source"] == "WFDB"
    assert js["rate"] == fs and js["samples"] == nsamp
    assert js["duration"] == pytest.approx(nsamp / fs)
    assert [l["name"] for l in js["leads"]] == names
    for lead, s in zip(js["leads"], sigs):
        assert lead["scale"] == pytest.approx(1 / s["gain"], rel=1e-15)
        assert lead["baseline"] == s["baseline"]
        assert lead["unit"] == s["units"]
        assert lead["bits"] == s["adcres"]
    arr = samples(ecg_bin, hea, tmp_path, len(sigs))
    assert np.array_equal(arr, oracle)
    check_ranges(js, arr)
    roundtrip(ecg_bin, hea, tmp_path, js, arr)


def test_wfdb_record_opens_by_name_dat_or_hea(ecg_bin, ecg_dir):
    base = ecg_dir / "wfdb" / "mitdb" / "100"
    outs = [summary(ecg_bin, p) for p in (base, base.with_suffix(".dat"), base.with_suffix(".hea"))]
    assert outs[0] == outs[1] == outs[2]


# ---- HL7 aECG -------------------------------------------------------------

NS = "{urn:hl7-org:v3}"


def aecg_oracle(path, group):
    root = ET.parse(path).getroot()
    sets = list(root.iter(NS + "sequenceSet"))
    rate, leads = None, []
    for seq in sets[group].iter(NS + "sequence"):
        value = seq.find(NS + "value")
        inc = value.find(NS + "increment")
        if inc is not None:
            step = float(inc.get("value")) * {"s": 1.0, "ms": 1e-3}[inc.get("unit")]
            rate = 1 / step
            continue
        code = seq.find(NS + "code").get("code")
        short = code.replace("MDC_ECG_LEAD_", "")
        name = next((s for s in STANDARD if s.lower() == short.lower()), short)
        digits = np.array([int(x) for x in value.find(NS + "digits").text.split()], dtype=np.int32)
        origin = float(value.find(NS + "origin").get("value"))
        scale = float(value.find(NS + "scale").get("value"))
        leads.append((name, digits, origin, scale, value.find(NS + "scale").get("unit")))
    return len(sets), rate, leads


@pytest.mark.parametrize("name", ["subject1_0.xml", "minimum_aecg.xml"])
def test_aecg_matches_xml(ecg_bin, ecg_dir, tmp_path, name):
    path = ecg_dir / "hl7aecg" / name
    n_sets = len(list(ET.parse(path).getroot().iter(NS + "sequenceSet")))
    for g in range(n_sets):
        _, rate, leads = aecg_oracle(path, g)
        js = summary(ecg_bin, path, "--group", g)
        assert js["source"] == "HL7 aECG"
        assert js["groups"] == n_sets
        assert js["rate"] == pytest.approx(rate, rel=1e-12)
        assert js["samples"] == len(leads[0][1])
        assert [l["name"] for l in js["leads"]] == [l[0] for l in leads]
        for lead, (nm, d, origin, scale, unit) in zip(js["leads"], leads):
            assert lead["scale"] == scale and lead["unit"] == unit
            assert -lead["baseline"] * lead["scale"] == pytest.approx(origin, abs=1e-12)
        arr = samples(ecg_bin, path, tmp_path, len(leads), "--group", g)
        assert np.array_equal(arr, np.stack([l[1] for l in leads], axis=1))
        check_ranges(js, arr)
        roundtrip(ecg_bin, path, tmp_path, js, arr, "--group", g)


def test_aecg_fda_example_holds_the_twelve_standard_leads(ecg_bin, ecg_dir):
    js = summary(ecg_bin, ecg_dir / "hl7aecg" / "subject1_0.xml")
    assert sorted(l["name"] for l in js["leads"]) == sorted(STANDARD)
    assert js["label"] == "RHYTHM" and js["rate"] == 500 and js["duration"] == 10


# ---- refusals and the text table ------------------------------------------

# ---- SCP-ECG --------------------------------------------------------------

def test_scp_ecg_matches_biosig(ecg_bin, ecg_dir, tmp_path):
    """BioSig (Debian's python3-biosig) decodes the same file to microvolts."""
    biosig = pytest.importorskip("biosig")
    path = ecg_dir / "scp" / "Example.scp"
    phys = biosig.data(str(path))  # (samples, leads), physical units
    js = summary(ecg_bin, path)
    assert js["source"] == "SCP-ECG"
    assert js["rate"] == 500 and js["samples"] == phys.shape[0] == 5000
    assert [l["name"] for l in js["leads"]] == ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6",
                                               "III", "aVR", "aVL", "aVF"]
    assert all(l["unit"] == "uV" for l in js["leads"])
    arr = samples(ecg_bin, path, tmp_path, 12)
    for k, lead in enumerate(js["leads"]):
        assert np.array_equal((arr[:, k] - lead["baseline"]) * lead["scale"], phys[:, k]), lead["name"]
    check_ranges(js, arr)
    roundtrip(ecg_bin, path, tmp_path, js, arr)


def test_scp_example_is_the_fda_aecg_example(ecg_bin, ecg_dir, tmp_path):
    """Example.scp and subject1_0.xml carry the same recording: two readers
    of two formats must agree sample for sample."""
    scp = samples(ecg_bin, ecg_dir / "scp" / "Example.scp", tmp_path, 12)
    xml = samples(ecg_bin, ecg_dir / "hl7aecg" / "subject1_0.xml", tmp_path, 12)
    assert np.array_equal(scp, xml)


def test_scp_variants_we_do_not_read_are_refused_clearly(ecg_bin, ecg_dir, tmp_path):
    data = bytearray((ecg_dir / "scp" / "Example.scp").read_bytes())
    # section 3 (lead definitions) starts at byte index 329 (1-based); flag byte 1 of its body
    data[328 + 16 + 1] |= 1  # "reference beat subtraction used"
    f = tmp_path / "refbeat.scp"
    f.write_bytes(bytes(data))
    p = run(ecg_bin, f, check=False)
    assert p.returncode == 2
    assert "SCP-ECG" in p.stderr and "reference-beat subtraction is not supported" in p.stderr
    assert p.stderr.count("\n") == 1


def test_unreadable_inputs_are_bad_input(ecg_bin, ecg_dir, tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"neither DICOM nor XML nor WFDB" * 10)
    for args in ([junk], [tmp_path / "missing.dcm"], [], ["--group", "x", junk]):
        p = run(ecg_bin, *args, check=False)
        assert p.returncode == 2, args
        assert p.stderr.startswith("dxhub ecg: ")
    damaged = tmp_path / "damaged.dxecg"
    rec = tmp_path / "ok.dxecg"
    run(ecg_bin, "--encode", rec, ecg_dir / "hl7aecg" / "minimum_aecg.xml")
    data = bytearray(rec.read_bytes())
    data[len(data) // 2] ^= 0x40
    damaged.write_bytes(bytes(data))
    p = run(ecg_bin, damaged, check=False)
    assert p.returncode == 2 and "CRC-32" in p.stderr


def test_text_table_lists_every_lead(ecg_bin, ecg_dir):
    out = run(ecg_bin, ecg_dir / "dicom" / "waveform_ecg.dcm").stdout
    assert "12 leads, 1000 Hz, 10000 samples, 10.000 s" in out
    rows = [l.split()[0] for l in out.splitlines()[3:]]
    assert rows == STANDARD
