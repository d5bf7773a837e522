"""Logs of a full ingest carry no patient names or IDs at info level, and
every line is one event: time, level, role, message.

Every DICOM file of the corpus goes to a clinic edge (`dxhub push`) and on
to the hub; the uncompressed ones also reach both by C-STORE (storescu), so
the DICOM listeners' paths log too, and the edge's watch folder takes two
files named after a patient (one DICOM, one not).  Then every patient name (whole, and
each name component of four letters or more) and every patient ID that
pydicom reads from the corpus is looked for in both roles' logs.  Purely
numeric IDs shorter than six digits are left out: "0010" or "99000" occur
in tag numbers and port numbers without being anybody's ID.  Words are
matched as the files spell them (case counts: the test's calling AE title
MODALITY is not the name component "Modality").
"""
import re
import warnings

import pydicom
import pytest

from conftest import corpus_dicom_files
from edgeutil import Edge, Hub, allow, corpus_root, run, storescu, wait_for

warnings.filterwarnings("ignore")
LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (error|warn|info|debug) (serve|edge): \S")


def patient_words():
    names, ids = set(), set()
    for path, _ in corpus_dicom_files():
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            name, pid = str(ds.get("PatientName", "") or ""), str(ds.get("PatientID", "") or "").strip()
        except Exception:
            continue
        if name.strip("^= "):
            names.add(name)
            names.update(w for w in re.split(r"[\^=]", name) if len(w.strip()) >= 4)
        if pid and not (pid.isdigit() and len(pid) < 6) and len(pid) >= 3:
            ids.add(pid)
    return names, ids


def test_full_ingest_logs_one_line_per_event_without_patient_names_or_ids(tmp_path):
    names, ids = patient_words()
    assert len(names) > 20 and len(ids) > 15  # the corpus has them: the search means something
    hub = Hub(tmp_path / "hub", tmp_path, stable_seconds=1)
    watch = tmp_path / "watch"
    watch.mkdir()
    edge = Edge(tmp_path / "clinic", hub.endpoint, hub.key_file, tmp_path, watch=watch)
    hub.start()
    try:
        allow(hub.keys_dir, "edge:clinic", edge.make_key())
        hub.hup()
        edge.start()
        files = [p for p, _ in corpus_dicom_files()]
        rc, queued, out = edge.push(files)
        assert len(queued) > 80, out
        plain = sorted((corpus_root() / "dicom" / "explicit_le").iterdir())
        storescu("127.0.0.1", edge.dicom_port, plain, required=False)
        storescu("127.0.0.1", hub.dicom_port, plain, aec="DXHUB", required=False)
        # a modality that names its files after the patient, one of them not DICOM
        named = corpus_root() / "dicom" / "charset" / "chrX1.dcm"
        ds = pydicom.dcmread(named, stop_before_pixels=True)
        stem = f"{str(ds.PatientName).replace('^', '_')}_{ds.PatientID}"
        (watch / f".{stem}.dcm").write_bytes(named.read_bytes())
        (watch / f".{stem}.dcm").rename(watch / f"{stem}.dcm")
        (watch / f"{stem}.txt").write_text("not DICOM")
        wait_for(lambda: (watch / "done" / f"{stem}.dcm").exists() and (watch / "failed" / f"{stem}.txt").exists(),
                 30, what="the watch folder's files taken")
        names.add(stem)
        wait_for(edge.drained, 120, what="the edge's queue empty")
        wait_for(lambda: "study complete" in hub.proc.log_tail(10 ** 7), 20, what="a completed study logged")
    finally:
        edge.stop()
        hub.stop()
    logs = {"hub": hub.proc.log_path.read_text("utf-8", "replace"),
            "edge": edge.proc.log_path.read_text("utf-8", "replace")}
    for role, text in logs.items():
        events = [l for l in text.splitlines() if l and not l.startswith(("=== start", "dxhub serve: ready",
                                                                          "dxhub edge: ready"))]
        assert len(events) > 3, text
        for line in events:
            assert LINE.match(line), f"{role} log line not one event: {line!r}"
            assert " debug " not in line[:40]
        for word in sorted(names | ids):
            # as the file writes it; a number must not be part of a longer one (a UID, a time)
            fence = r"[A-Za-z0-9.]" if word.isdigit() else r"[A-Za-z0-9]"
            pat = re.compile(rf"(?<!{fence})" + re.escape(word) + rf"(?!{fence})")
            hit = pat.search(text)
            assert not hit, f"{role} log shows patient data {word!r}: ...{text[max(0, hit.start() - 100):hit.end() + 50]}"
