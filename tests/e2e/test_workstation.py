"""The reading workstation daemon (`dxhub workstation`) against a real hub:
studies sent with storescu become reading tasks, the workstation is
offered them, the reader claims, reads and signs through its HTTP API
(viewer/API.md).  Oracles: pydicom for headers, pixels and waveforms;
`dxhub verify` and the hub's own store for the signed report.

Readers are kept apart by modality (see test_workstation_faults.py for
the SIGKILL and cache-bound tests, on their own hub)."""
import json
import math
import re
import signal
import socket
import subprocess
import time

import numpy as np
import pydicom
import pytest

from edgeutil import corpus_root, dxhub_bin, run, wait_for
from wsutil import FACILITY, PASS, Workstation, World, ct_study, restudy

NAME = "王伟"
RESIDENT = "李娜"
REVIEWER = "赵强"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("ws")
    w = World(base, {"ws-att": ("CT,MR,ECG", "imaging,ecg", NAME), "ws-res": ("US", "imaging", RESIDENT, "resident"),
                     "ws-usatt": ("US", "imaging", REVIEWER)}, lease_seconds=10)
    try:
        w.start()
        root = corpus_root()
        w.ct, ct_files = ct_study(root / "dicom" / "explicit_le" / "CT_small.dcm", base / "ct")
        w.mr, mr_files = restudy([root / "dicom" / "jpegls_lossless_80" / "MR_small_jpeg_ls_lossless.dcm",
                                  root / "dicom" / "j2k_lossless_90" / "MR_small_jp2klossless.dcm"], base / "mr")
        w.ecg, ecg_files = restudy([root / "ecg" / "dicom" / "waveform_ecg.dcm"], base / "ecg")
        w.files = {"ct": ct_files, "mr": mr_files, "ecg": ecg_files}
        w.send(ct_files + mr_files + ecg_files)
        wait_for(lambda: all(w.studies().get(s) == "queued" for s in (w.ct, w.mr, w.ecg)), 30, interval=0.1,
                 what="the three studies queued at the hub")
        w.ws = w.workstation("ws-att", "--prefetch", "2", unlock=False)
        yield w
    finally:
        w.close()


def test_api_needs_the_token_and_listens_on_loopback_only(world):
    ws = world.ws
    for token in (False, "0" * 64, ws.token[:-1]):
        status, headers, body = ws.request("GET", "/api/tasks", token=token)
        assert status == 401 and headers["content-type"].startswith("application/json"), (token, status)
        assert "X-Dxhub-Token" in json.loads(body)["error"]
    assert ws.request("GET", "/api/session")[0] == 200
    # the listening socket is bound to 127.0.0.1 (kernel's view: /proc/net/tcp, state 0A = LISTEN)
    listen = [l.split() for l in open("/proc/net/tcp").read().splitlines()[1:]]
    mine = [l[1] for l in listen if l[3] == "0A" and int(l[1].split(":")[1], 16) == ws.port]
    assert mine == [f"0100007F:{ws.port:04X}"], mine
    s = ws.json("GET", "/api/session")
    assert s["reader"] == "ws-att" and s["name"] == NAME and s["facility"] == FACILITY
    assert s["hub"] == "connected" and s["unlocked"] is False and "CT" in s["modalities"]

    # and no other address may be given: the page takes the signing passphrase
    w = Workstation(world, "ws-att", "--bind", "0.0.0.0", name="wide")
    with pytest.raises(Exception):
        w.start()
    log = w.proc.log_path.read_text(errors="replace")
    assert "--bind 0.0.0.0: the viewer serves patient images and takes the signing passphrase over plain HTTP" in log


def test_offers_listed_by_priority_and_claimed(world):
    ws = world.ws
    tasks = ws.wait_tasks([world.ct, world.mr, world.ecg])
    ranks = [{"STAT": 2, "URGENT": 1, "ROUTINE": 0}[t["priority"]] for t in tasks]
    assert ranks == sorted(ranks, reverse=True), tasks
    ct = ws.task_of(world.ct)
    assert ct["state"] == "offered" and ct["mine"] is False and ct["modality"] == "CT" and ct["patient_id"] == "WS0001"
    events = EventStream(ws)
    first = events.next()
    got = ws.json("POST", f"/api/tasks/{ct['id']}/claim")["task"]
    assert got["id"] == ct["id"] and got["mine"] is True and got["state"] == "claimed"
    # the event stream announced the change (what the UI uses for STAT arrivals)
    assert events.next()["gen"] > first["gen"]
    events.close()
    for study in (world.mr, world.ecg):
        ws.json("POST", f"/api/tasks/{ws.task_of(study)['id']}/claim")
    assert all(t["mine"] for t in ws.tasks() if t["study"] in (world.ct, world.mr, world.ecg))
    # a task nobody offered us cannot be claimed; the hub's reason comes back
    status, _, body = ws.request("POST", "/api/tasks/999999/claim")
    assert status == 409 and "claim refused" in json.loads(body)["error"]
    # claimed studies are prefetched into the cache
    wait_for(lambda: all(ws.task_of(s)["prefetched"] == 1 for s in (world.ct, world.mr, world.ecg)), 30,
             interval=0.1, what="the claimed studies prefetched")


class EventStream:
    """GET /api/events on a raw socket: next() is the data of the next `tasks` event."""

    def __init__(self, ws):
        # as a browser's EventSource asks (it cannot set headers): the token in the query
        self.sock = socket.create_connection(("127.0.0.1", ws.port), timeout=20)
        self.sock.sendall(f"GET /api/events?token={ws.token} HTTP/1.1\r\nHost: 127.0.0.1:{ws.port}\r\n\r\n".encode())
        self.buf = b""
        head = self._until(b"\r\n\r\n")
        assert b" 200 " in head.split(b"\r\n")[0] and b"text/event-stream" in head, head

    def _until(self, sep):
        while sep not in self.buf:
            chunk = self.sock.recv(4096)
            assert chunk, "the event stream closed"
            self.buf += chunk
        out, self.buf = self.buf.split(sep, 1)
        return out

    def next(self):
        while True:
            block = self._until(b"\n\n").decode()
            # chunked transfer: drop the chunk-size lines around the event text
            lines = [l for l in block.replace("\r", "").split("\n") if ":" in l]
            data = [l[5:].strip() for l in lines if l.startswith("data:")]
            if any(l.startswith("event: tasks") for l in lines) and data:
                return json.loads(data[0])

    def close(self):
        self.sock.close()


def pydicom_window_list(ds):
    c, w = ds.WindowCenter, ds.WindowWidth
    c = list(c) if isinstance(c, pydicom.multival.MultiValue) else [c]
    w = list(w) if isinstance(w, pydicom.multival.MultiValue) else [w]
    return [{"center": float(a), "width": float(b)} for a, b in zip(c, w)]


def test_study_json_matches_pydicom(world):
    ws = world.ws
    tid = ws.task_of(world.ct)["id"]
    j = ws.json("GET", f"/api/tasks/{tid}/study")
    dss = [pydicom.dcmread(str(p)) for p in world.files["ct"]]
    assert j["study_uid"] == world.ct
    assert j["patient"]["name"] == str(dss[0].PatientName) == "王^伟"
    assert j["patient"]["id"] == "WS0001" and j["study"]["modalities"] == ["CT"]
    # series by Series Number; slices by position along the normal (z here), not Instance Number
    want = {}
    for ds in dss:
        want.setdefault(int(ds.SeriesNumber), []).append(ds)
    assert [s["number"] for s in j["series"]] == sorted(want)
    for s in j["series"]:
        expect = sorted(want[s["number"]], key=lambda d: float(d.ImagePositionPatient[2]))
        assert [i["sop"] for i in s["instances"]] == [str(d.SOPInstanceUID) for d in expect]
        for i, d in zip(s["instances"], expect):
            assert i["pixel_spacing"] == [float(x) for x in d.PixelSpacing]
            assert i["windows"] == pydicom_window_list(d)
            assert i["rescale"] == {"slope": float(d.RescaleSlope), "intercept": float(d.RescaleIntercept)}
            assert (i["rows"], i["columns"], i["bits_allocated"], i["signed"]) == \
                (d.Rows, d.Columns, d.BitsAllocated, d.PixelRepresentation == 1)
            assert i["image_position"] == [float(x) for x in d.ImagePositionPatient]
            assert i["slice_location"] == float(d.SliceLocation) and i["number"] == d.InstanceNumber
            assert i["frames"] == 1 and i["photometric"] == "MONOCHROME2" and i["waveform"] is False
    # the task list names the image the study opens on, for the page to fetch beside this listing
    assert ws.task_of(world.ct)["first_image"] == j["series"][0]["instances"][0]["sop"]
    # a task not held: 409; an unknown one: 404; not a number: 400
    assert ws.request("GET", "/api/tasks/424242/study")[0] == 404
    assert ws.request("GET", "/api/tasks/x1/study")[0] == 400


def frame(ws, sop, n=1):
    status, h, body = ws.request("GET", f"/api/instances/{sop}/frames/{n}")
    assert status == 200, body[:300]
    dtype = {(16, 1): "<i2", (16, 0): "<u2", (8, 0): "u1"}[(int(h["x-bits-allocated"]), int(h["x-signed"]))]
    arr = np.frombuffer(body, dtype=dtype)
    return arr.reshape(int(h["x-rows"]), int(h["x-columns"]), int(h["x-samples"]))[..., 0] \
        if h["x-samples"] == "1" else arr.reshape(int(h["x-rows"]), int(h["x-columns"]), 3)


@pytest.mark.parametrize("which", ["ct", "mr"])
def test_frames_equal_pydicom_pixels(world, which):
    """Native CT, JPEG-LS lossless and JPEG 2000 lossless MR: the decoded
    frame is pydicom's pixel array, value for value.  The compressed frames
    of a held study are decoded ahead, before the reader asks for them."""
    ws = world.ws
    ahead = sum(d.Rows * d.Columns * 2 for d in (pydicom.dcmread(str(p)) for p in world.files[which])
                if d.file_meta.TransferSyntaxUID.is_compressed)
    wait_for(lambda: ws.json("GET", "/api/session")["frames"]["bytes"] >= ahead, 15, interval=0.1,
             what=f"the {which} frames decoded ahead")
    for p in world.files[which]:
        ds = pydicom.dcmread(str(p))
        before = ws.json("GET", "/api/session")["frames"]
        got = frame(ws, str(ds.SOPInstanceUID))
        assert got.shape == ds.pixel_array.shape
        assert np.array_equal(got, ds.pixel_array), f"{p.name} ({ds.file_meta.TransferSyntaxUID})"
        # again: a compressed frame comes from the decoded-frame cache both times, the same values
        assert np.array_equal(frame(ws, str(ds.SOPInstanceUID)), ds.pixel_array)
        after = ws.json("GET", "/api/session")["frames"]
        compressed = ds.file_meta.TransferSyntaxUID.is_compressed
        assert after["hits"] - before["hits"] == (2 if compressed else 0), (p.name, before, after)
    sop = str(pydicom.dcmread(str(world.files[which][0])).SOPInstanceUID)
    assert ws.request("GET", f"/api/instances/{sop}/frames/2")[0] == 404
    assert ws.request("GET", f"/api/instances/{sop}/frames/0")[0] == 400
    assert ws.request("GET", "/api/instances/1.2.3.4.5/frames/1")[0] == 404


def test_ecg_json_equals_pydicom_waveform_and_dxhub_ecg(world):
    ws = world.ws
    p = world.files["ecg"][0]
    ds = pydicom.dcmread(str(p))
    j = ws.json("GET", f"/api/instances/{ds.SOPInstanceUID}/ecg")
    wf = ds.WaveformSequence[0]
    assert j["sampling_rate"] == float(wf.SamplingFrequency) and j["samples"] == wf.NumberOfWaveformSamples
    arr = ds.waveform_array(0)  # in the channels' units, sensitivity and baseline applied
    units = [ch.ChannelSensitivityUnitsSequence[0].CodeValue for ch in wf.ChannelDefinitionSequence]
    scale = {"uV": 1, "mV": 1000}
    assert len(j["leads"]) == arr.shape[1]
    for k, lead in enumerate(j["leads"]):
        want = np.rint(arr[:, k] * scale[units[k]]).astype(np.int64)
        assert np.max(np.abs(np.asarray(lead["uv"]) - want)) <= 1, lead["name"]
    # lead names and the measurements as `dxhub ecg` gives them
    r = run([dxhub_bin(), "ecg", "--json", p])
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert [l["name"] for l in j["leads"]] == [l["name"] for l in summary["leads"]]
    r = run([dxhub_bin(), "ecg", "--measure", "--json", p])
    assert r.returncode == 0, r.stderr
    assert j["measurements"] == json.loads(r.stdout)


def test_draft_kept_in_the_cache(world):
    ws = world.ws
    tid = ws.task_of(world.ct)["id"]
    empty = ws.json("GET", f"/api/tasks/{tid}/draft")
    assert empty["findings"] == "" and empty["saved"] is None
    d = {"findings": "右肺上叶见一结节，直径约 8 mm。", "impression": "右肺上叶结节，建议随访。", "critical": True}
    saved = ws.json("PUT", f"/api/tasks/{tid}/draft", d)
    assert saved["saved"] > 0
    # a new connection (the browser closed and opened again) finds it
    again = ws.json("GET", f"/api/tasks/{tid}/draft")
    assert {k: again[k] for k in d} == d
    status, _, body = ws.request("PUT", f"/api/tasks/{tid}/draft", b"{not json")
    assert status == 400 and "not JSON" in json.loads(body)["error"]
    status, _, body = ws.request("PUT", f"/api/tasks/{tid}/draft", {"findings": 5})
    assert status == 400
    assert ws.json("GET", f"/api/tasks/{tid}/draft")["findings"] == d["findings"]


def test_sign_and_submit_then_the_hub_has_it_and_dxhub_verify_accepts(world, tmp_path):
    ws = world.ws
    tid = ws.task_of(world.ct)["id"]
    body = {"action": "sign", "findings": "双肺纹理清晰。", "impression": "未见明显异常。", "critical": False}
    status, _, data = ws.request("POST", f"/api/tasks/{tid}/submit", body)
    assert status == 403 and "unlock" in json.loads(data)["error"]
    status, _, data = ws.request("POST", "/api/unlock", {"passphrase": "wrong " + PASS})
    assert status == 403 and "passphrase" in json.loads(data)["error"]
    assert ws.json("POST", "/api/unlock", {"passphrase": PASS}) == {"unlocked": True}
    assert ws.json("GET", "/api/session")["unlocked"] is True
    res = ws.json("POST", f"/api/tasks/{tid}/submit", body)
    world.ct_task = tid
    assert res["state"] == "signed" and res["instances"] == len(world.files["ct"])
    assert res["signer"]["name"] == NAME and res["signer"]["reader"] == "ws-att"
    assert res["signer"]["facility"] == FACILITY and re.fullmatch(r"[0-9A-F]+", res["signer"]["serial"], re.I)
    # what was signed, and by whom
    status, h, signed = ws.request("GET", f"/api/tasks/{tid}/signed")
    assert status == 200 and json.loads(h["x-signer"])["name"] == NAME
    doc = json.loads(signed)
    assert doc["report_id"] == res["report_id"] and doc["study_uid"] == world.ct
    assert doc["findings"] == body["findings"] and doc["reader"]["id"] == "ws-att"
    # the hub stored these exact bytes, with the signature and chain: dxhub verify accepts them
    reports = world.reports()
    rid = res["report_id"]
    assert reports[rid] == signed
    (tmp_path / "r.json").write_bytes(reports[rid])
    (tmp_path / "r.json.sig").write_bytes(reports[rid + ".sig"])
    (tmp_path / "r.json.chain.pem").write_bytes(reports[rid + ".chain"])
    # the instances as the hub stored them (storescu re-encodes what it sends)
    stored = tmp_path / "stored"
    stored.mkdir()
    for sop in doc["instances"]:
        stored.joinpath(f"{sop}.dcm").write_bytes(world.instance_file(sop))
    r = run([dxhub_bin(), "verify", tmp_path / "r.json", "--trust", world.keys / "trust", "--study-dir", stored])
    assert r.returncode == 0, r.stderr.decode()
    assert f"all {len(world.files['ct'])} match" in r.stdout.decode()
    assert world.studies()[world.ct] == "signed"
    t = ws.task_of(world.ct)
    assert t["state"] == "signed" and t["mine"] is False


def test_ecg_drafted_then_signed(world):
    """An attending's "draft" keeps the task (drafted, still held); "sign"
    then closes it; the ECG report names the ECG exam."""
    ws = world.ws
    tid = ws.task_of(world.ecg)["id"]
    body = {"action": "draft", "findings": "窦性心律，心率 72 次/分。", "impression": "正常心电图。", "critical": False}
    res = ws.json("POST", f"/api/tasks/{tid}/submit", body)
    assert res["state"] == "drafted" and res["signer"] is None
    assert ws.task_of(world.ecg)["mine"] is True
    draft_id = res["report_id"]
    res = ws.json("POST", f"/api/tasks/{tid}/submit", dict(body, action="sign"))
    assert res["state"] == "signed" and res["report_id"] != draft_id
    reports = world.reports()
    assert draft_id in reports and draft_id + ".sig" not in reports
    doc = json.loads(reports[res["report_id"]])
    assert doc["recognition"]["exam_type"] == "ECG" and doc["impression"] == body["impression"]
    status, _, data = ws.request("POST", f"/api/tasks/{tid}/submit", dict(body, action="sign"))
    assert status == 409 and "not held" in json.loads(data)["error"]



def test_garbage_requests_get_clear_4xx_and_the_daemon_keeps_serving(world):
    ws = world.ws
    (world.base / "web" / "index.html").write_text("<!doctype html><title>dxhub</title>")
    status, h, body = ws.request("GET", "/", token=False)
    assert status == 200 and h["content-type"].startswith("text/html") and b"dxhub" in body
    for path in ("/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/.hidden", "/a//b", "/x\\y"):
        c = socket.create_connection(("127.0.0.1", ws.port), timeout=10)
        c.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        resp = b""
        while True:
            chunk = c.recv(65536)
            if not chunk:
                break
            resp += chunk
        c.close()
        code = int(resp.split(b" ", 2)[1])
        assert code in (400, 404) and b"root:" not in resp, (path, resp[:200])
    assert ws.request("GET", "/nope.js", token=False)[0] == 404
    cases = [("POST", "/api/unlock", b"\xff\xfe"), ("POST", "/api/unlock", b"[1,2]"),
             ("POST", "/api/tasks/1/submit", b"{}"), ("GET", "/api/nothing", None),
             ("DELETE", "/api/tasks", None), ("GET", "/api/tasks/18446744073709551616/draft", None),
             ("PUT", "/api/tasks/1/draft", b"x" * (2 << 20))]
    for method, path, body in cases:
        status, h, data = ws.request(method, path, body)
        assert 400 <= status < 500, (method, path, status)
        assert json.loads(data)["error"], (method, path)
    # another site's name pointing here (DNS rebinding) is refused, files and API alike
    for path in ("/", "/api/session"):
        status, _, data = ws.request("GET", path, headers={"Host": f"evil.example:{ws.port}"})
        assert status == 421 and "localhost" in json.loads(data)["error"]
    assert ws.request("GET", "/api/session", headers={"Host": f"localhost:{ws.port}"})[0] == 200
    # the token in the query counts for the event stream only
    assert ws.request("GET", f"/api/session?token={ws.token}", token=False)[0] == 401
    assert ws.json("GET", "/api/session")["hub"] == "connected"
    assert ws.json("GET", "/api/templates")["templates"]
    assert ws.request("GET", "/api/priors?patient=NOBODY")[0] == 404
    assert ws.request("GET", "/api/priors")[0] == 400


def test_restarted_workstation_takes_up_its_tasks_and_drafts(world, tmp_path):
    """Killed and started again while its leases last (10 s here): the tasks
    it held are its own again, drafts and cached studies with them; the task
    it signed is not taken up.  The second run reads part of its settings
    from a file (--config) and logs where the file says; SIGHUP (systemctl
    reload) reopens that log after logrotate moved it, and it keeps serving."""
    ws = world.ws
    mr = ws.task_of(world.mr)["id"]
    d = {"findings": "左侧顶叶小片状长T2信号。", "impression": "建议复查。", "critical": False}
    ws.json("PUT", f"/api/tasks/{mr}/draft", d)
    ws.proc.kill()
    log = tmp_path / "ws.log"
    cfg = tmp_path / "ws.ini"
    cfg.write_text(f"[workstation]\nlog = {log}\nlog-level = info\n[hub]\nprefetch = 1\n")
    ws2 = world.workstation("ws-att", "--config", cfg, name="ws-att-2", cache=ws.cache, unlock=False)
    world.ws = ws2
    t = ws2.task_of(world.mr)
    assert t["mine"] is True and t["state"] == "claimed" and t["modality"] == "MR"
    wait_for(lambda: ws2.task_of(world.mr)["prefetched"] == 1, 10, interval=0.05, what="the MR study found cached")
    assert world.ct not in [x["study"] for x in ws2.tasks() if x["mine"]]
    got = ws2.json("GET", f"/api/tasks/{mr}/draft")
    assert {k: got[k] for k in d} == d
    j = ws2.json("GET", f"/api/tasks/{mr}/study")
    assert len([i for s in j["series"] for i in s["instances"]]) == len(world.files["mr"])
    # and it is still ours at the hub: another claim of it is refused as held
    assert ws2.request("POST", f"/api/tasks/{mr}/claim")[0] == 409
    # its log is the file's; logrotate moves it, SIGHUP opens a new one
    assert re.search(r"^\S+Z info workstation: viewer files in \S+$", log.read_text(), re.M), log.read_text()
    log.rename(tmp_path / "ws.log.1")
    ws2.proc.signal(signal.SIGHUP)
    wait_for(lambda: log.exists() and "SIGHUP: log file reopened" in log.read_text(), 10,
             what="a new log file after SIGHUP")
    assert ws2.json("GET", "/api/session")["hub"] == "connected"


def verify_stored(world, reports, rid, tmp_path, doc):
    """`dxhub verify` on the hub's stored bytes of report rid, against the hub's copies of its instances."""
    out = tmp_path / rid
    out.mkdir()
    (out / "r.json").write_bytes(reports[rid])
    (out / "r.json.sig").write_bytes(reports[rid + ".sig"])
    (out / "r.json.chain.pem").write_bytes(reports[rid + ".chain"])
    for sop in doc["instances"]:
        out.joinpath(f"{sop}.dcm").write_bytes(world.instance_file(sop))
    r = run([dxhub_bin(), "verify", out / "r.json", "--trust", world.keys / "trust", "--study-dir", out])
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout.decode()


def test_priors_list_the_patients_earlier_signed_exam_with_its_recognition(world, tmp_path):
    """A new CT of the patient whose CT was signed above: the workstation's
    priors (PRIORS over the reader link, the hub's lookup) list the signed
    exam with its recognition verdict, and its report opens (PRIOR)."""
    ws = world.ws
    uid, files = ct_study(corpus_root() / "dicom" / "explicit_le" / "CT_small.dcm", world.base / "ct2")
    world.send(files[:1])
    ws.wait_tasks([uid], what="the patient's new CT")
    tid = ws.task_of(uid)["id"]
    j = ws.json("GET", f"/api/priors?task={tid}")
    assert j["source"] == "hub" and j["patient_id"] == "WS0001"
    prior = [p for p in j["priors"] if p["study"] == world.ct]
    assert len(prior) == 1, j
    p = prior[0]
    signed = json.loads(world.reports()[p["report_id"]])
    assert signed["study_uid"] == world.ct and p["modality"] == "CT"
    # the verdict and its reasons: every failed rule has its sentence
    assert isinstance(p["recognised"], bool) and p["recognised"] == (not p["failed"])
    assert len(p["reasons"]) == len(p["failed"]) and all(p["reasons"])
    assert {r["rule"] for r in p["rules"]} >= {"signature", "images_intact"}
    # by patient too (a task of ours for that patient), the same list
    assert [x["report_id"] for x in ws.json("GET", "/api/priors?patient=WS0001")["priors"]] == \
        [x["report_id"] for x in j["priors"]]
    # the prior's report opens: the signed document's text
    got = ws.json("GET", f"/api/tasks/{tid}/priors/{p['report_id']}")
    assert got["document"]["findings"] == signed["findings"] and got["document"]["report_id"] == p["report_id"]
    assert got["prior"]["recognised"] == p["recognised"]
    assert ws.request("GET", f"/api/tasks/{tid}/priors/no-such-report")[0] == 404


def hub_audit(world, what):
    r = run([dxhub_bin(), "audit", "--data", world.base / "hub", "--json", "--what", what], check=True)
    return [json.loads(x) for x in r.stdout.decode().splitlines()]


def test_a_prior_study_opens_beside_the_task_to_compare(world):
    """A new CT of patient WS0001 compared with an earlier study of theirs
    that this workstation never had (a DX nobody here reads): the hub lists
    and sends it (STUDY and FETCH with "prior"), the workstation lays it
    out as it lays a task's study, its frames are pydicom's pixels, and the
    hub's trail records the reader's read of that study for that task.
    Another patient's study, one under the same Patient ID with another
    birth date, one the hub does not hold, and the task's own are refused."""
    ws = world.ws
    src = corpus_root() / "dicom" / "explicit_le" / "CT_small.dcm"
    def restamp(files, modality=None, birth="19700101"):
        for p in files:
            ds = pydicom.dcmread(str(p))
            ds.Modality = modality or ds.Modality
            ds.PatientBirthDate = birth
            ds.save_as(str(p), write_like_original=False)
    prior, pfiles = ct_study(src, world.base / "cmp-prior")
    restamp(pfiles, "DX")
    # someone else under the same Patient ID (a reused or mistyped ID): another birth date
    other, ofiles = ct_study(src, world.base / "cmp-other")
    restamp(ofiles, "DX", birth="19450505")
    cur, cfiles = ct_study(src, world.base / "cmp-cur")
    restamp(cfiles)
    world.send(pfiles + ofiles + cfiles)
    ws.wait_tasks([cur], what="the patient's new CT")
    wait_for(lambda: all(world.studies().get(s) == "queued" for s in (prior, other)), 30, interval=0.1,
             what="the DX studies queued")
    tid = ws.task_of(cur)["id"]
    assert prior not in {t["study"] for t in ws.tasks()}
    # the priors panel lists the patient's other studies here, reported or not, not someone else's
    studies = {x["study"]: x for x in ws.json("GET", f"/api/priors?task={tid}")["studies"]}
    assert prior in studies and other not in studies and cur not in studies, studies
    assert studies[prior]["modalities"] == "DX" and studies[prior]["state"] == "queued"
    assert studies[prior]["instances"] == len(pfiles)
    assert world.ct in studies  # the patient's first CT, signed earlier in this module

    j = ws.json("GET", f"/api/tasks/{tid}/compare/{prior}")
    by_sop = {str(d.SOPInstanceUID): d for d in (pydicom.dcmread(str(p)) for p in pfiles)}
    assert j["study_uid"] == prior and j["patient"]["id"] == "WS0001" and j["task"] == tid
    assert sorted(i["sop"] for s in j["series"] for i in s["instances"]) == sorted(by_sop)
    # laid out as a task's study: series by number, slices by position along the normal
    assert [s["number"] for s in j["series"]] == [1, 2]
    assert [i["slice_location"] for i in j["series"][0]["instances"]] == [-20.0, -7.5, 5.0]
    assert j["study"]["modalities"] == ["DX"]
    for sop, d in by_sop.items():
        assert np.array_equal(frame(ws, sop), d.pixel_array), sop
    assert ws.json("GET", f"/api/tasks/{tid}/compare/{prior}") == j  # kept: the same answer again

    # the hub's trail: this reader read that study, for that task, and each of its instances
    # (records are written behind the answers: waited for)
    reads = wait_for(lambda: (lambda rs: rs if {r["detail"] for r in rs} >= set(by_sop) else None)(
        [r for r in hub_audit(world, "read-instance") if r["study"] == prior]), 20, interval=0.2,
        what="the prior's instance reads on the hub's trail")
    assert {r["detail"] for r in reads} == set(by_sop) and {r["who"] for r in reads} == {"reader:ws-att"}
    listing = [r for r in hub_audit(world, "read-study") if r["study"] == prior]
    assert listing and {r["who"] for r in listing} == {"reader:ws-att"}, listing
    assert all(r["detail"] == f"prior, compared in task {tid}" for r in listing), listing

    # another patient's study (the MR), one the hub does not hold, the task's own, not a UID
    status, _, body = ws.request("GET", f"/api/tasks/{tid}/compare/{world.mr}")
    assert status == 409 and "not of this task's patient" in body.decode(), body
    status, _, body = ws.request("GET", f"/api/tasks/{tid}/compare/{other}")
    assert status == 409 and "another birth date" in body.decode(), body
    status, _, body = ws.request("GET", f"/api/tasks/{tid}/compare/1.2.826.0.1.3680043.99.1")
    assert status == 409 and "not held at this hub" in body.decode(), body
    assert ws.request("GET", f"/api/tasks/{tid}/compare/{cur}")[0] == 400
    assert ws.request("GET", f"/api/tasks/{tid}/compare/1..2")[0] == 400
    assert ws.request("GET", f"/api/tasks/424242/compare/{prior}")[0] == 404
    # the refusals left the comparison as it was
    assert ws.json("GET", f"/api/tasks/{tid}/compare/{prior}") == j


def test_resident_draft_reviewed_returned_resubmitted_cosigned_then_an_addendum(world, tmp_path):
    """Two-level review end to end: the resident drafts; the attending sees
    the draft's text and the resident's name, returns it with a reason; the
    resident's workstation takes the task back with that reason, the
    resident revises and resubmits; the attending signs a report naming the
    resident, then adds a signed addendum that `dxhub verify` accepts."""
    uid, files = restudy([corpus_root() / "dicom" / "explicit_le" / "CT_small.dcm"], world.base / "us", modality="US")
    res = world.workstation("ws-res")
    world.send(files)
    res.wait_tasks([uid], what="the US study")
    tid = res.task_of(uid)["id"]
    res.json("POST", f"/api/tasks/{tid}/claim")
    first = {"findings": "肝脏大小形态正常。", "impression": "肝脏未见异常。", "critical": False}
    assert res.json("POST", f"/api/tasks/{tid}/submit", dict(first, action="draft"))["state"] == "review"

    att = world.workstation("ws-usatt")
    att.wait_tasks([uid], what="the draft for review")
    assert att.task_of(uid)["review"] is True and att.task_of(uid)["drafted_by"] == "ws-res"
    att.json("POST", f"/api/tasks/{tid}/claim")
    rv = att.json("GET", f"/api/tasks/{tid}/review")
    assert rv["findings"] == first["findings"] and rv["impression"] == first["impression"]
    assert rv["drafted_by"] == {"id": "ws-res", "name": RESIDENT, "role": "resident"} and rv["returned"] is None
    assert att.request("POST", f"/api/tasks/{tid}/submit", {"action": "return"})[0] == 400  # no reason
    why = "请补充胆囊及胰腺的描述。"
    assert att.json("POST", f"/api/tasks/{tid}/submit", {"action": "return", "reason": why})["state"] == "returned"
    assert att.task_of(uid)["mine"] is False

    # the resident's workstation asks the hub every second (HELD): back promptly, not at a 5-s probe
    back = wait_for(lambda: (lambda t: t if t["mine"] and t.get("returned") == why else None)(res.task_of(uid)),
                    3.5, interval=0.1, what="the returned task back in the resident's list with the reason")
    assert back["state"] == "claimed" and back["returned_by"] == "ws-usatt"
    revised = dict(first, findings=first["findings"] + "胆囊壁光滑，胰腺显示清晰。")
    assert res.json("POST", f"/api/tasks/{tid}/submit", dict(revised, action="draft"))["state"] == "review"

    wait_for(lambda: any(t["id"] == tid and t["state"] == "offered" for t in att.tasks()), 15, interval=0.1,
             what="the revised draft offered for review again")
    att.json("POST", f"/api/tasks/{tid}/claim")
    rv = att.json("GET", f"/api/tasks/{tid}/review")
    assert rv["findings"] == revised["findings"] and rv["returned"] is None
    done = att.json("POST", f"/api/tasks/{tid}/submit", dict(revised, action="sign"))
    assert done["state"] == "signed" and done["drafted_by"] == {"id": "ws-res", "name": RESIDENT}
    reports = world.reports()
    doc = json.loads(reports[done["report_id"]])
    assert doc["reader"]["id"] == "ws-usatt" and doc["drafted_by"] == {"id": "ws-res", "name": RESIDENT}
    assert doc["findings"] == revised["findings"]
    out = verify_stored(world, reports, done["report_id"], tmp_path, doc)
    assert "drafted by" in out and "ws-res" in out

    # an addendum: its own signed document after the report, which stays as signed
    add = att.json("POST", f"/api/tasks/{tid}/submit",
                   {"action": "addendum", "findings": "补充：肝内未见占位。", "impression": ""})
    assert add["state"] == "signed" and add["supersedes"] == done["report_id"] and add["version"] == 2
    original = reports[done["report_id"]]
    reports = world.reports()
    assert reports[done["report_id"]] == original
    adoc = json.loads(reports[add["report_id"]])
    assert adoc["supersedes"] == done["report_id"] and adoc["version"] == 2 and adoc["study_uid"] == uid
    out = verify_stored(world, reports, add["report_id"], tmp_path, adoc)
    assert f"addendum    to report {done['report_id']}" in out
    # a lookup shows the addendum with the report it follows
    exams = [e for e in world.lookup(doc["patient_id"])["exams"] if e["study_uid"] == uid]
    assert sorted((e["report_id"], e["version"], e["supersedes"]) for e in exams) == \
        sorted([(done["report_id"], 1, None), (add["report_id"], 2, done["report_id"])])
    # a second "sign" of the original is refused; an addendum to an unsigned task too
    assert att.request("POST", f"/api/tasks/{tid}/submit", dict(revised, action="sign"))[0] == 409


def test_the_signer_follows_a_critical_value_to_the_clinic(world, tmp_path):
    """危急值 closed loop: the reader who signed a critical value asks the
    hub what became of it.  These studies came to the hub over DICOM with
    no clinic gateway to take the alert, so it waits in the outbox; a
    report that was not critical says so; only the signer may ask."""
    ws = world.ws
    study, files = ct_study(corpus_root() / "dicom" / "explicit_le" / "CT_small.dcm", tmp_path / "ct-critical")
    world.send(files)
    task = wait_for(lambda: next((t for t in ws.tasks() if t["study"] == study), None), 30, what="the new CT offered")
    if not task["mine"]:
        ws.json("POST", f"/api/tasks/{task['id']}/claim")
    ws.json("POST", "/api/unlock", {"passphrase": PASS})
    before = time.time()
    body = {"action": "sign", "findings": "主动脉弓旁见新月形低密度影。", "impression": "主动脉夹层可能，请立即处理。",
            "critical": True}
    res = ws.json("POST", f"/api/tasks/{task['id']}/submit", body)
    assert res["state"] == "signed", res
    a = ws.json("GET", f"/api/tasks/{task['id']}/alert")
    assert a["state"] == "waiting" and a["report_id"] == res["report_id"] and a["facility"], a
    assert before - 5 <= a["since"] / 1000 <= time.time() + 1, a
    assert ws.json("GET", f"/api/tasks/{world.ct_task}/alert")["state"] == "not-critical"  # signed earlier
    status, _, data = ws.request("GET", "/api/tasks/999999/alert")
    assert status == 409 and "no such task" in json.loads(data)["error"], data
    status, _, data = ws.request("GET", "/api/tasks/x1/alert")
    assert status == 400, data
    # another reader may not follow it
    other = world.workstation("ws-usatt")
    status, _, data = other.request("GET", f"/api/tasks/{task['id']}/alert")
    assert status == 409 and "not a task whose report you signed" in json.loads(data)["error"], data
