"""A signed report leaves dxhub for people and other systems, every part a
real process: a hub (with the consortium trust list), a clinic's edge, a
reader who takes the task, fetches the study, writes a critical-value report
in Chinese, signs it (SM2/SM3) and submits it; the report reaches the edge.

Then, at the clinic, `dxhub reports --export` writes the three files that
`dxhub verify` and `openssl` take as they are, and the printable page as
HTML and PDF (pdftotext, from poppler, is the PDF's oracle); a trust list
without the signer's CA gets nothing exported.  And `dxhub sr` turns the
report and the fetched study into a Basic Text SR that dsrdump, dcmdump and
pydicom read, whose references are the study's instances, whose patient
module came from the study (GB18030 there, UTF-8 here), and which storescu
sends to the hub like any other instance.
"""
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest

from edgeutil import Edge, Proc, allow, dxhub_bin, keygen, run, wait_for
from hubutil import synth_instance, _synth_base, uid_root

FACILITY = "县医院影像中心"
READER = "wangwei"
NAME = "王伟"
PATIENT = "张^三丰"
FINDINGS = "右肺上叶见团片状高密度影，边界不清。<b>不是标记</b> & 其余肺野清晰。"
IMPRESSION = "右肺上叶肺炎，建议抗感染治疗后复查。"
PASS = "correct horse battery staple"
READY = (r"dxhub serve: ready dicom=[0-9.]+:(\d+) .*http=[0-9.]+:(\d+) edge=(tcp://[0-9.]+:\d+) "
         r"readers=(tcp://[0-9.]+:\d+) .*key=(\S+)")


def dx(*args, timeout=60):
    return run([dxhub_bin(), *args], timeout=timeout)


class World:
    pass


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("export")
    w = World()
    w.base = base
    keys = base / "hubkeys"
    (base / "pass.txt").write_text(PASS + "\n")
    for args in (["--ca", "--facility", FACILITY, "--keys", base / "ca"],
                 ["--reader", READER, "--name", NAME, "--role", "attending", "--facility", FACILITY, "--ca",
                  base / "ca", "--keys", base / "pki", "--passphrase-file", base / "pass.txt"]):
        r = dx("keygen", *args)
        assert r.returncode == 0, r.stderr.decode()
    w.trust = keys / "trust"
    w.trust.mkdir(parents=True)
    for f in ("ca.pem", "crl.pem"):
        shutil.copyfile(base / "ca" / f, w.trust / f)
    (base / "readers.conf").write_text(f"{READER} attending CT imaging * 3\n")
    allow(keys, f"reader:{READER}", keygen(base / "rkeys", READER))
    (base / "edge").mkdir()
    allow(keys, "edge:clinic1", keygen(base / "edge" / "keys", "edge"))
    hub = Proc([dxhub_bin(), "serve", "--data", base / "hub", "--keys", keys, "--readers", base / "readers.conf",
                "--stable-seconds", 600, "--open-dicom", "--dicom-port", 0, "--http-port", 0, "--edge-port", 0,
                "--reader-port", 0, "--peer-port", 0], base / "hub.log", READY)
    edge = None
    try:
        m = hub.start(30)
        w.dicom_port, w.http_port, edge_ep, w.reader_ep = int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)
        w.hub_key = keys / "hub.pub"
        edge = Edge(base / "edge", edge_ep, w.hub_key, base, extra=("--facility", "clinic1"))
        edge.start()

        # a three-instance CT study whose patient name is GB18030 (as Chinese modalities write it)
        study = uid_root("report-export")
        ds = _synth_base(32, 32, "CT", "X", "20250601")
        ds.SpecificCharacterSet = "GB18030"
        ds.PatientName = PATIENT
        src = base / "src"
        src.mkdir()
        files = [synth_instance(src / f"{k}.dcm", study, f"{study}.1", f"{study}.1.{k}", k, patient_id="P0001",
                                rows=32, cols=32, _base=ds) for k in (1, 2, 3)]
        rc, _, out = edge.push(files, priority="stat")
        assert rc == 0, out

        r = dx("reader", "--hub", w.reader_ep, "--hub-key", w.hub_key, "--keys", base / "rkeys", "--name", READER,
               "--json", "--take", "1", "--wait", "30", "--fetch-to", base / "fetched", timeout=90)
        assert r.returncode == 0, r.stderr.decode()
        task = json.loads(r.stdout.decode().strip().splitlines()[-1])
        assert task["study"] == study and task["fetched"]["fetched"] == 3, task
        w.study_uid, w.study_dir = study, Path(task["fetched"]["dir"])

        w.report = base / "r1.json"
        r = dx("report", "--study-dir", w.study_dir, "--report-id", "rpt-exp-1", "--reader", READER, "--name", NAME,
               "--origin", "clinic1", "--reading-facility", FACILITY, "--findings", FINDINGS, "--impression",
               IMPRESSION, "--critical", "--exam-type", "CT chest", "--scope", "HR", "--valid-until", "2030-01-01",
               w.report)
        assert r.returncode == 0, r.stderr.decode()
        r = dx("sign", "--key", base / "pki" / f"{READER}.key", "--cert", base / "pki" / f"{READER}.chain.pem",
               "--passphrase-file", base / "pass.txt", w.report)
        assert r.returncode == 0, r.stderr.decode()
        r = dx("reader", "--hub", w.reader_ep, "--hub-key", w.hub_key, "--keys", base / "rkeys", "--name", READER,
               "--json", "--task", str(task["task"]), "--action", "sign", "--report-id", "rpt-exp-1", "--submit",
               w.report, "--sig", f"{w.report}.sig", "--chain", f"{w.report}.chain.pem")
        assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()

        w.edge_data = base / "edge"
        wait_for(lambda: "rpt-exp-1" in dx("reports", "--edge-data", w.edge_data).stdout.decode(), 20,
                 what="the report at the clinic's edge")
        yield w
    finally:
        if edge:
            edge.kill()
        hub.stop()


def export(w, out, *extra):
    return dx("reports", "--edge-data", w.edge_data, "--export", out, "--trust", w.trust, *extra)


def test_clinic_exports_verifiable_files_and_printable_pages(world, tmp_path):
    out = tmp_path / "out"
    r = export(world, out)
    assert r.returncode == 0, r.stderr.decode()
    assert "exported rpt-exp-1" in r.stdout.decode() and NAME in r.stdout.decode()
    d = out / "rpt-exp-1"
    # (a) the exact bytes the reader signed, with signature and chain: verified as they are
    assert (d / "report.json").read_bytes() == world.report.read_bytes()
    assert (d / "report.json.sig").read_bytes() == Path(f"{world.report}.sig").read_bytes()
    r = dx("verify", d / "report.json", "--trust", world.trust, "--study-dir", world.study_dir)
    assert r.returncode == 0 and "all 3 match" in r.stdout.decode(), r.stderr.decode()
    pub = tmp_path / "pub.pem"
    pub.write_bytes(run(["openssl", "x509", "-pubkey", "-noout", "-in", d / "report.json.chain.pem"]).stdout)
    r = run(["openssl", "pkeyutl", "-verify", "-rawin", "-digest", "sm3", "-pkeyopt", "distid:1234567812345678",
             "-pubin", "-inkey", pub, "-sigfile", d / "report.json.sig", "-in", d / "report.json"])
    assert r.returncode == 0 and b"Signature Verified Successfully" in r.stdout, r.stderr

    serial = re.search(r"serial=(\w+)", run(["openssl", "x509", "-noout", "-serial", "-in",
                                             d / "report.json.chain.pem"]).stdout.decode()).group(1)
    # (b) the page: header, text, flag, signer, certificate, verification line
    html = (d / "report.html").read_text("utf-8")
    assert '<meta charset="utf-8">' in html and "<script" not in html and "http" not in html.replace(
        "https://", "").split("<body>")[0]
    assert "&lt;b&gt;不是标记&lt;/b&gt; &amp; 其余" in html and "<b>不是" not in html  # the reader's text is data
    for want in ("张三丰", "1970-01-01", "2025-06-01, accession A", "P0001", "CT chest", "clinic1", world.study_uid, IMPRESSION, "CRITICAL VALUE", NAME, READER,
                 FACILITY, "2030-01-01", "Signature verified at export", "dxhub verify report.json",
                 "verify-with-openssl.md"):
        assert want in html, want
    assert serial.lower() in html.lower()
    assert re.search(r"Signed at</th><td>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ<", html)

    r = run(["pdftotext", "-enc", "UTF-8", d / "report.pdf", "-"])
    assert r.returncode == 0, r.stderr
    text = re.sub(r"\s+", "", r.stdout.decode("utf-8"))
    for want in (NAME, FACILITY, "张三丰", "右肺上叶见团片状高密度影", IMPRESSION, "CRITICALVALUE", "危急值", "P0001",
                 "Signatureverifiedatexport", READER, serial.upper()[:12]):
        assert want in text or want.lower() in text.lower(), want
    info = run(["pdfinfo", d / "report.pdf"]).stdout.decode()
    assert "A4" in info and "rpt-exp-1" in info

    # --format and --id choose what is written; exporting again rewrites in place
    out2 = tmp_path / "only-json"
    r = export(world, out2, "--id", "rpt-exp-1", "--format", "json")
    assert r.returncode == 0, r.stderr.decode()
    assert sorted(p.name for p in (out2 / "rpt-exp-1").iterdir()) == [
        "report.json", "report.json.chain.pem", "report.json.sig"]
    r = export(world, out2, "--id", "no-such-report")
    assert r.returncode == 1 and b"no signed report no-such-report" in r.stderr


def test_export_refuses_a_report_that_does_not_verify(world, tmp_path):
    """Another consortium's trust list: the signer's CA is not in it."""
    other = tmp_path / "other-ca"
    r = dx("keygen", "--ca", "--facility", "elsewhere", "--keys", other)
    assert r.returncode == 0, r.stderr.decode()
    out = tmp_path / "out"
    r = dx("reports", "--edge-data", world.edge_data, "--export", out, "--trust", other)
    err = r.stderr.decode()
    assert r.returncode == 1, err
    assert "rpt-exp-1: not verified, not exported" in err and len(err.splitlines()) == 1
    assert not (out / "rpt-exp-1").exists()
    for bad in (["--export", out], ["--trust", world.trust], ["--export", out, "--trust", world.trust,
                                                               "--format", "doc"]):
        assert dx("reports", "--edge-data", world.edge_data, *bad).returncode == 2


def sr_evidence(ds):
    refs = set()
    for st in ds.CurrentRequestedProcedureEvidenceSequence:
        for se in st.ReferencedSeriesSequence:
            for sop in se.ReferencedSOPSequence:
                refs.add((st.StudyInstanceUID, se.SeriesInstanceUID, sop.ReferencedSOPClassUID,
                          sop.ReferencedSOPInstanceUID))
    return refs


def test_sr_export_is_read_by_dcmtk_and_pydicom_and_taken_by_the_hub(world, tmp_path):
    sr = tmp_path / "report-sr.dcm"
    r = dx("sr", world.report, "--trust", world.trust, "--study-dir", world.study_dir, "-o", sr)
    assert r.returncode == 0, r.stderr.decode()

    r = run(["dsrdump", "+U8", sr])
    out = r.stdout.decode("utf-8")
    # (DCMTK 3.6.7's VR checker warns that it cannot check ISO_IR 192 values; no errors)
    assert r.returncode == 0 and b"E:" not in r.stderr, r.stderr
    assert "Basic Text SR" in out and "VERIFIED" in out and "COMPLETE" in out and NAME in out, out
    r = run(["dcmdump", "+U8", "-q", sr])
    assert r.returncode == 0 and "BasicTextSRStorage" in r.stdout.decode("utf-8")

    ds = pydicom.dcmread(sr)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.11" and ds.Modality == "SR"
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    # the patient and study modules came from the study (GB18030 there)
    study = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(world.study_dir.glob("*.dcm"))]
    assert study[0].SpecificCharacterSet == "GB18030" and str(study[0].PatientName) == PATIENT
    assert str(ds.PatientName) == PATIENT and ds.PatientID == "P0001" and ds.StudyInstanceUID == world.study_uid
    assert ds.AccessionNumber == study[0].AccessionNumber and ds.StudyDate == study[0].StudyDate
    assert ds.SeriesInstanceUID != study[0].SeriesInstanceUID
    # the evidence is exactly the instances the report's digests cover
    doc = json.loads(world.report.read_bytes())
    assert sr_evidence(ds) == {(s.StudyInstanceUID, s.SeriesInstanceUID, s.SOPClassUID, s.SOPInstanceUID)
                               for s in study}
    assert {s.SOPInstanceUID for s in study} == set(doc["instances"])
    # findings and impression as TEXT items, word for word
    texts = {}
    for section in ds.ContentSequence:
        for item in section.ContentSequence:
            assert item.ValueType == "TEXT"
            texts[item.ConceptNameCodeSequence[0].CodeValue] = item.TextValue
    assert texts == {"121071": FINDINGS, "121073": IMPRESSION}
    assert ds.ConceptNameCodeSequence[0].CodeValue == "18748-4"
    # signed: complete, verified by the certificate's name and organisation at the signing time
    assert ds.CompletionFlag == "COMPLETE" and ds.VerificationFlag == "VERIFIED"
    vo = ds.VerifyingObserverSequence[0]
    assert str(vo.VerifyingObserverName) == NAME and vo.VerifyingOrganization == FACILITY
    assert vo.VerificationDateTime == re.sub(r"[-:TZ]", "", doc["times"]["reported"]) + "+0000"

    # the same report gives the same SR, so a PACS never gets it twice
    again = tmp_path / "again.dcm"
    assert dx("sr", world.report, "--trust", world.trust, "--study-dir", world.study_dir, "-o",
              again).returncode == 0
    assert again.read_bytes() == sr.read_bytes()

    # a PACS takes it in: here the hub, over DICOM C-STORE
    r = run(["storescu", "-v", "-aet", "PACSFEED", "-aec", "DXHUB", "127.0.0.1", str(world.dicom_port), sr],
            env=dict(os.environ, TCP_NODELAY="1"))
    assert r.returncode == 0 and b"Received Store Response (Success)" in r.stdout + r.stderr, r.stdout + r.stderr
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{world.http_port}/api/v1/studies/{world.study_uid}",
                                timeout=10) as resp:
        detail = resp.read().decode("utf-8")
    assert ds.SOPInstanceUID in detail
    # the reading of record joins its study without reopening it for reading
    assert re.search(r'"dxhub":\{"state":"signed"', detail), detail[:400]


def test_sr_refused_unless_the_report_verifies_against_the_study(world, tmp_path):
    sr = tmp_path / "sr.dcm"
    # a changed byte in the report
    bad = tmp_path / "r.json"
    data = bytearray(world.report.read_bytes())
    i = data.index("肺炎".encode())
    data[i + 1] ^= 1
    bad.write_bytes(bytes(data))
    r = dx("sr", bad, "--trust", world.trust, "--study-dir", world.study_dir, "--sig", f"{world.report}.sig",
           "--chain", f"{world.report}.chain.pem", "-o", sr)
    assert r.returncode == 1 and b"not verified, no SR written" in r.stderr and b"signature" in r.stderr
    # a study folder that lacks one of the instances read
    part = tmp_path / "part"
    part.mkdir()
    for p in sorted(world.study_dir.glob("*.dcm"))[:2]:
        shutil.copyfile(p, part / p.name)
    (part / "notes.txt").write_text("not DICOM")
    r = dx("sr", world.report, "--trust", world.trust, "--study-dir", part, "-o", sr)
    assert r.returncode == 1 and b"1 missing" in r.stderr, r.stderr
    # an instance whose bytes changed after the reading
    changed = tmp_path / "changed"
    shutil.copytree(world.study_dir, changed)
    victim = sorted(changed.glob("*.dcm"))[0]
    raw = bytearray(victim.read_bytes())
    raw[-1] ^= 0xFF
    victim.write_bytes(bytes(raw))
    r = dx("sr", world.report, "--trust", world.trust, "--study-dir", changed, "-o", sr)
    assert r.returncode == 1 and b"1 of 3 differ" in r.stderr, r.stderr
    assert not sr.exists()
    # usage
    assert dx("sr", world.report, "--trust", world.trust, "-o", sr).returncode == 2
    r = dx("sr", tmp_path / "missing.json", "--trust", world.trust, "--study-dir", world.study_dir, "-o", sr)
    assert r.returncode == 2 and b"missing.json" in r.stderr


def test_reports_on_a_mistyped_folder_says_so_and_creates_nothing(tmp_path):
    """'no reports or alerts yet' from a folder that is not the gateway's
    would hide an alert waiting in the real one."""
    wrong = tmp_path / "var" / "egde"
    r = dx("reports", "--edge-data", wrong)
    assert r.returncode == 1, r
    assert f"no clinic gateway data in {wrong}" in r.stderr.decode() and b"no reports" not in r.stdout, r
    assert not wrong.exists()
