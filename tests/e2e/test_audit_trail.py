"""`dxhub audit`: the hub's audit trail as an auditor reads it, beside a
running `dxhub serve` fed by DCMTK's storescu and read over its HTTP API.
Oracles from outside: LMDB's mdb_dump (the trail as stored), pydicom (each
instance's patient), Python's datetime (the times)."""
import json
import signal
import subprocess
import time
from datetime import datetime, timezone

import pydicom
import pytest

from hubutil import Hub, audit_records, corpus_path, storescu

FILES = ["dicom/explicit_le/CT_small.dcm", "dicom/explicit_le/MR_small.dcm", "dicom/charset/chrX1.dcm"]


def datasets():
    return [pydicom.dcmread(str(corpus_path() / f), stop_before_pixels=True) for f in FILES]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    work = tmp_path_factory.mktemp("audit")
    h = Hub(work / "hub", log_dir=work, stable_seconds=3600)
    h.start()
    try:
        run = storescu(h.dicom_port, [corpus_path() / f for f in FILES])
        assert all(ok for _, _, ok in run.order) and len(run.order) == len(FILES), run.output[-2000:]
        ct, mr, _ = datasets()
        h.study(ct.StudyInstanceUID)
        status, _ = h.instance_file(ct.SOPInstanceUID)
        assert status == 200
        h.studies(PatientID=mr.PatientID)
        h.wait_for(lambda: sum(a["who"].startswith("http:") for a in audit_records(h.data)) >= 3, 10,
                   "the three reads on the audit trail")
        yield h
    finally:
        h.close()


def audit(hub, dxhub, *args, expect=0):
    r = subprocess.run([dxhub, "audit", "--data", str(hub.data), *args], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    assert r.returncode == expect, r.stderr.decode()
    return r


def audit_json(hub, dxhub, *args):
    out = audit(hub, dxhub, "--json", *args).stdout.decode()
    return [json.loads(line) for line in out.splitlines()]


def test_json_export_is_the_trail_as_stored_and_writes_nothing(hub, dxhub):
    outside = hub.metrics()["dxhub_store_outside_commits_total"]
    stored = audit_records(hub.data)
    shown = audit_json(hub, dxhub)
    # everything stored, in order, field for field
    assert len(shown) == len(stored)
    assert [s["seq"] for s in shown] == list(range(1, len(shown) + 1))
    for s, a in zip(shown, stored):
        assert {k: s[k] for k in a} == a
        utc = datetime.fromtimestamp(a["t"] / 1000, timezone.utc)
        assert s["time"] == utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{a['t'] % 1000:03d}Z"
    # it only read: the hub, which alerts on any other writer, saw none
    assert audit_records(hub.data) == stored
    time.sleep(1.2)  # the hub looks for others' commits at least once a second
    assert hub.metrics()["dxhub_store_outside_commits_total"] == outside


def test_records_about_a_study_name_its_patient(hub):
    patient_of = {d.StudyInstanceUID: str(d.PatientID) for d in datasets()}
    about = [a for a in audit_records(hub.data) if a["study"]]
    assert {a["what"] for a in about} >= {"store", "read-study", "read-instance"}
    for a in about:
        assert a["patient"] == patient_of[a["study"]], a
    assert all("patient" not in a for a in audit_records(hub.data) if not a["study"])


def test_a_patients_records_are_its_studies_and_the_searches_for_it(hub, dxhub):
    ct, mr, _ = datasets()
    for d in (ct, mr):
        shown = audit_json(hub, dxhub, "--patient", str(d.PatientID))
        want = [a for a in audit_records(hub.data) if a.get("patient") == str(d.PatientID)
                or f"PatientID={d.PatientID}" in a["detail"].split()]
        assert shown and [s["t"] for s in shown] == [a["t"] for a in want]
        assert {s["study"] for s in shown} <= {d.StudyInstanceUID, ""}
    mr_shown = audit_json(hub, dxhub, "--patient", str(mr.PatientID), "--what", "list-studies")
    assert len(mr_shown) == 1 and mr_shown[0]["study"] == ""  # the search, found by its detail
    ct_reads = audit_json(hub, dxhub, "--patient", str(ct.PatientID), "--who", "http")
    assert {s["what"] for s in ct_reads} == {"read-study", "read-instance"}


def test_who_what_and_time_bounds(hub, dxhub):
    stored = audit_records(hub.data)
    assert {a["who"] for a in audit_json(hub, dxhub, "--who", "http")} == {"http:127.0.0.1"}
    assert audit_json(hub, dxhub, "--who", "htt") == []
    reads = audit_json(hub, dxhub, "--what", "read-study,read-instance")
    assert sorted(s["what"] for s in reads) == ["read-instance", "read-study"]
    # --until names a whole second (or day); --since its start; an offset is the same instant
    t = stored[len(stored) // 2]["t"]
    z = datetime.fromtimestamp(t // 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    plus8 = datetime.fromtimestamp(t // 1000 + 8 * 3600, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+08:00")
    end = (t // 1000 + 1) * 1000
    for until in (z, plus8):
        shown = [s["t"] for s in audit_json(hub, dxhub, "--until", until)]
        assert shown == [a["t"] for a in stored if a["t"] < end] and t in shown
    shown = [s["t"] for s in audit_json(hub, dxhub, "--since", z)]
    assert shown == [a["t"] for a in stored if a["t"] >= end - 1000] and t in shown
    day = datetime.fromtimestamp(t // 1000, timezone.utc).strftime("%Y-%m-%d")
    shown = [s["t"] for s in audit_json(hub, dxhub, "--since", day, "--until", day)]
    assert t in shown and all(datetime.fromtimestamp(x / 1000, timezone.utc).strftime("%Y-%m-%d") == day
                              for x in shown)


def test_follow_prints_new_records_as_they_are_written(hub, dxhub):
    last = audit_records(hub.data)[-1]
    seq = len(audit_records(hub.data))
    ct = datasets()[0]
    p = subprocess.Popen([dxhub, "audit", "--data", str(hub.data), "--json", "--follow", "--after", str(seq),
                          "--what", "read-study"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(0.5)
        hub.study(ct.StudyInstanceUID)  # the hub writes it after this process started
        line = p.stdout.readline()
        rec = json.loads(line)
        assert rec["what"] == "read-study" and rec["study"] == ct.StudyInstanceUID and rec["t"] > last["t"]
        assert rec["seq"] > seq
        p.send_signal(signal.SIGTERM)
        assert p.wait(5) == 0
        assert b"records shown" in p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_bad_requests_are_refused_naming_what(hub, dxhub, tmp_path):
    for args, says in [(["--since", "2026-02-30"], "--since 2026-02-30: expected YYYY-MM-DD"),
                       (["--until", "yesterday"], "--until yesterday: expected"),
                       (["--since", "2026-11-25", "--until", "2026-11-24"], "is not after --since"),
                       (["--patient", ""], "--patient: an empty value"),
                       (["--limit", "-1"], "--limit -1: expected a whole number"),
                       (["extra"], "unexpected argument extra")]:
        r = audit(hub, dxhub, *args, expect=2)
        assert says in r.stderr.decode() and r.stdout == b"", args
    r = subprocess.run([dxhub, "audit", "--data", str(tmp_path)], stderr=subprocess.PIPE, timeout=30)
    assert r.returncode == 2 and b"holds no hub data" in r.stderr
    r = audit(hub, dxhub, "--what", "read-instances,read-study")
    assert b"no record has the action read-instances;" in r.stderr and b"read-instance" in r.stderr
    assert b"read-study" in r.stdout
