"""The hub's HTTP API and `dxhub status` against a real `dxhub serve` fed
by DCMTK's storescu.  Oracles from outside: pydicom (the instances' own
attributes), prometheus_client's text parser (the exposition format),
LMDB's mdb_dump (the audit trail as stored), Python's http.client.

The ingest tests (test_hub_ingest.py) check that what is stored is what
was sent; these check what the API says about it and how."""
import http.client
import json
import subprocess

import pydicom
import pytest

from hubutil import Hub, attr, audit_records, corpus_path, detail_instances, free_port, storescu

prometheus_parser = pytest.importorskip("prometheus_client.parser",
                                        reason="python3-prometheus-client (Debian) is the format's oracle")

FILES = ["dicom/explicit_le/CT_small.dcm", "dicom/explicit_le/MR_small.dcm", "dicom/charset/chrX1.dcm",
         "dicom/explicit_le/MR-SIEMENS-DICOM-WithOverlays.dcm"]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    work = tmp_path_factory.mktemp("api")
    h = Hub(work / "hub", log_dir=work, stable_seconds=3600)
    h.start()
    try:
        paths = [corpus_path() / f for f in FILES]
        run = storescu(h.dicom_port, paths)
        assert all(ok for _, _, ok in run.order) and len(run.order) == len(paths), run.output[-2000:]
        yield h
    finally:
        h.close()


def datasets():
    return [pydicom.dcmread(str(corpus_path() / f), stop_before_pixels=True) for f in FILES]


def test_list_and_detail_carry_the_instances_attributes(hub):
    for ds in datasets():
        page = hub.get_json("/api/v1/studies", {"StudyInstanceUID": ds.StudyInstanceUID})
        assert page["total"] == 1
        study = page["studies"][0]
        assert attr(study, "00100020", "") == str(ds.get("PatientID", ""))
        assert attr(study, "00201208") == 1 and attr(study, "00201206") == 1
        assert study["00080061"]["Value"] == [ds.Modality]
        detail = hub.study(ds.StudyInstanceUID)
        (inst,) = detail_instances(detail)
        assert attr(inst, "00080018") == ds.SOPInstanceUID
        assert attr(detail["series"][0], "0020000E") == ds.SeriesInstanceUID
        # Every top-level attribute pydicom reads before Pixel Data is there (group 2 is not: PS3.18 F).
        want = {f"{el.tag:08X}" for el in ds if el.tag.group != 2}
        assert want <= set(inst) - {"dxhub"}, sorted(want - set(inst))
        assert "7FE00010" not in inst
        assert inst["dxhub"]["size"] > 0 and len(inst["dxhub"]["digest"]) == 64


def test_patient_names_come_as_component_groups(hub):
    ds = pydicom.dcmread(str(corpus_path() / "dicom/charset/chrX1.dcm"), stop_before_pixels=True)
    study = hub.studies(PatientID=ds.PatientID)[0]
    name = study["00100010"]["Value"][0]
    groups = ds.PatientName.components  # pydicom decodes ISO 2022 IR 87 itself
    assert name["Alphabetic"] == groups[0]
    assert name["Ideographic"] == groups[1]


def test_metrics_parse_as_prometheus_text(hub):
    status, headers, body = hub.request("/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in prometheus_parser.text_string_to_metric_families(body.decode())}
    # prometheus_client names counters without their _total suffix.
    for name, kind in [("dxhub_instances_received", "counter"), ("dxhub_store_results", "counter"),
                       ("dxhub_commit_duration_seconds", "histogram"), ("dxhub_studies", "gauge"),
                       ("dxhub_errors", "counter"), ("dxhub_lmdb_map_used_bytes", "gauge"),
                       ("dxhub_lmdb_map_size_bytes", "gauge"), ("dxhub_http_requests", "counter"),
                       ("dxhub_up", "gauge"), ("dxhub_commits", "counter"), ("dxhub_bytes_received", "counter")]:
        assert name in families and families[name].type == kind, name
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert samples[("dxhub_store_results_total", (("result", "stored"),))] == len(FILES)
    assert samples[("dxhub_studies", (("state", "receiving"),))] == len(FILES)
    assert samples[("dxhub_up", ())] == 1
    buckets = [s for s in families["dxhub_commit_duration_seconds"].samples if s.name.endswith("_bucket")]
    assert buckets[-1].labels["le"] == "+Inf"
    assert [b.value for b in buckets] == sorted(b.value for b in buckets)
    assert buckets[-1].value == samples[("dxhub_commit_duration_seconds_count", ())] >= 1


def test_every_read_is_on_the_audit_trail(hub):
    ds = datasets()[1]
    hub.study(ds.StudyInstanceUID)
    status, body = hub.instance_file(ds.SOPInstanceUID)
    assert status == 200 and body[128:132] == b"DICM"

    def reads():
        recs = [a for a in audit_records(hub.data) if a["who"] == "http:127.0.0.1"]
        kinds = {a["what"] for a in recs if a["study"] == ds.StudyInstanceUID}
        return recs if {"read-study", "read-instance"} <= kinds else None
    recs = hub.wait_for(reads, 10, "read-study and read-instance audit records")
    names = [str(d.PatientName) for d in datasets()]
    for a in recs:
        assert not any(n and n in json.dumps(a, ensure_ascii=False) for n in names), a


def test_errors_are_json_with_the_right_status(hub):
    status, _, body = hub.request("/api/v1/studies", {"limit": "5000"})
    assert status == 400 and json.loads(body)["parameter"] == "limit"
    status, _, body = hub.request("/api/v1/nothing")
    assert status == 404 and json.loads(body)["path"] == "/api/v1/nothing"
    c = http.client.HTTPConnection("127.0.0.1", hub.http_port, timeout=10)
    c.request("PUT", "/api/v1/studies", body=b"{}")
    r = c.getresponse()
    assert r.status == 405 and r.getheader("Allow") == "GET, HEAD"
    c.close()


def test_status_command_reads_the_hub_and_says_when_there_is_none(hub, dxhub):
    url = f"http://127.0.0.1:{hub.http_port}"
    r = subprocess.run([dxhub, "status", "--hub", url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr
    assert f"instances  {len(FILES)}" in out and "receiving" in out and " used (" in out
    r = subprocess.run([dxhub, "status", "--hub", url, "--json"], stdout=subprocess.PIPE, timeout=30)
    health = json.loads(r.stdout)
    assert health["status"] == "ok" and health["instances"] == len(FILES)
    gone = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    r = subprocess.run([dxhub, "status", "--hub", gone], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert r.returncode == 1 and b"cannot reach the hub" in r.stderr
