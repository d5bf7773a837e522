"""What the workstation tests share (tests/e2e/test_workstation*.py): a hub
with reader keys, a readers file, a facility CA it trusts and readers'
signing certificates; studies made with pydicom and sent with storescu in
their own transfer syntaxes; `dxhub workstation` processes and their HTTP
API.  Every process is a Proc (edgeutil): ended by its PID only."""
import copy
import http.client
import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import hubutil
from edgeutil import Proc, allow, dxhub_bin, keygen, run, wait_for

FACILITY = "县医院影像中心"
PASS = "马 correct horse battery staple"

READY_RE = (r"dxhub workstation: ready url=(http://127\.0\.0\.1:(\d+)/#token=([0-9a-f]{64})) "
            r"reader=(\S+)")


class World:
    """The hub (short leases, studies complete after 1 s of quiet), reader
    CURVE keys allowed as reader:<id>, the readers file, the facility CA in
    the hub's trust list, and a signing certificate per reader."""

    HUB_READY = (r"dxhub serve: ready dicom=[0-9.]+:(\d+) .*http=[0-9.]+:(\d+) .*"
                 r"readers=(tcp://[0-9.]+:\d+) .*key=(\S+)")

    def __init__(self, base, readers, lease_seconds=3):
        self.base = Path(base)
        self.keys = self.base / "hubkeys"
        self.rkeys = self.base / "readerkeys"
        self.pki = self.base / "pki"
        self.pass_file = self.base / "pass.txt"
        self.pass_file.write_text(PASS + "\n", encoding="utf-8")
        lines = ["# id  seniority  modalities  kinds  facilities  max"]
        # a reader is (modalities, kinds, name[, seniority]); attending when not said
        readers = {rid: tuple(v) + ("attending",) * (4 - len(v)) for rid, v in readers.items()}
        for rid, (mods, kinds, name, seniority) in readers.items():
            lines.append(f"{rid} {seniority} {mods} {kinds} * 4")
            allow(self.keys, f"reader:{rid}", keygen(self.rkeys, rid))
        (self.base / "readers.conf").write_text("\n".join(lines) + "\n")
        r = run([dxhub_bin(), "keygen", "--ca", "--facility", FACILITY, "--keys", self.base / "ca"])
        assert r.returncode == 0, r.stderr.decode()
        for rid, (_, _, name, seniority) in readers.items():
            r = run([dxhub_bin(), "keygen", "--reader", rid, "--name", name, "--role", seniority, "--facility",
                     FACILITY, "--ca", self.base / "ca", "--keys", self.pki, "--passphrase-file", self.pass_file])
            assert r.returncode == 0, r.stderr.decode()
        (self.keys / "trust").mkdir(parents=True, exist_ok=True)
        for f in ("ca.pem", "crl.pem"):
            shutil.copyfile(self.base / "ca" / f, self.keys / "trust" / f)
        # a facility API key (the lookup routes need one; with keys, every patient-data route does)
        r = run([dxhub_bin(), "keygen", "--api-key", "tests", "--keys", self.keys], check=True)
        self.api_key = r.stdout.decode().strip()
        self.hub = Proc([dxhub_bin(), "serve", "--data", self.base / "hub", "--keys", self.keys, "--readers",
                         self.base / "readers.conf", "--lease-seconds", lease_seconds, "--stable-seconds", 1,
                         "--open-dicom", "--dicom-port", 0, "--http-port", 0, "--edge-port", 0, "--reader-port", 0]
                        + _peer_port(), self.base / "hub.log", self.HUB_READY)
        self.workstations = []

    def start(self):
        m = self.hub.start(30)
        self.dicom_port, self.http_port = int(m.group(1)), int(m.group(2))
        self.reader_ep, self.hub_key = m.group(3), self.keys / "hub.pub"
        return self

    def close(self):
        for w in self.workstations:
            w.proc.kill()
        self.hub.kill()

    def send(self, files):
        """storescu into the hub, every file in its own transfer syntax."""
        contexts = []
        for f in files:
            ds = pydicom.dcmread(str(f), stop_before_pixels=True)
            contexts.append((str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)))
        cfg = self.base / f"storescu-{time.monotonic_ns()}.cfg"
        res = hubutil.storescu(self.dicom_port, [str(f) for f in files], contexts=contexts, cfg_path=cfg)
        assert res.returncode == 0 and all(ok for _, _, ok in res.order), res.output[-2000:]

    def studies(self):
        """{study uid: state} at the hub."""
        c = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=10)
        try:
            c.request("GET", "/api/v1/studies?limit=1000", headers=self.auth())
            j = json.loads(c.getresponse().read())
        finally:
            c.close()
        return {s["0020000D"]["Value"][0]: s["dxhub"]["state"] for s in j["studies"]}

    def auth(self):
        return {"Authorization": f"Bearer {self.api_key}"}

    def lookup(self, patient_id):
        """GET /api/v1/reports?PatientID= with the tests' facility key."""
        c = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=30)
        try:
            c.request("GET", f"/api/v1/reports?PatientID={patient_id}", headers=self.auth())
            r = c.getresponse()
            body = r.read()
            assert r.status == 200, (r.status, body[:300])
            return json.loads(body)
        finally:
            c.close()

    def instance_file(self, sop):
        c = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=30)
        try:
            c.request("GET", f"/api/v1/instances/{sop}/file", headers=self.auth())
            r = c.getresponse()
            body = r.read()
            assert r.status == 200, (sop, r.status)
            return body
        finally:
            c.close()

    def workstation(self, rid, *extra, unlock=True, name=None, cache=None, env=None):
        w = Workstation(self, rid, *extra, unlock=unlock, name=name, cache=cache, env=env)
        self.workstations.append(w)
        return w.start()

    def reports(self):
        """The hub's stored reports {key: bytes} (mdb_dump of its store, a reader beside the running hub)."""
        r = subprocess.run(["mdb_dump", "-s", "report", str(self.base / "hub")], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        assert r.returncode == 0, r.stderr.decode()
        lines = r.stdout.decode().splitlines()
        body = lines[lines.index("HEADER=END") + 1:]
        out = {}
        for k, v in zip(body[0::2], body[1::2]):
            if k.strip() == "DATA=END":
                break
            out[bytes.fromhex(k.strip()).decode()] = bytes.fromhex(v.strip())
        return out


def _peer_port():
    return ["--peer-port", "0"] if "--peer-port" in hubutil.serve_options(dxhub_bin()) else []


class Workstation:
    def __init__(self, world, rid, *extra, unlock=True, name=None, cache=None, env=None):
        self.world, self.rid = world, rid
        self.cache = cache or world.base / f"cache-{name or rid}"
        args = [dxhub_bin(), "workstation", "--hub", world.reader_ep, "--hub-key", world.hub_key,
                "--keys", world.rkeys, "--name", rid, "--sign-key", world.pki / f"{rid}.key",
                "--cert", world.pki / f"{rid}.chain.pem", "--cache", self.cache, "--http-port", 0,
                "--web", world.base / "web", *extra]
        if unlock:
            args += ["--passphrase-file", world.pass_file]
        (world.base / "web").mkdir(exist_ok=True)
        self.proc = Proc(args, world.base / f"ws-{name or rid}.log", READY_RE, env=env)

    def start(self):
        m = self.proc.start(30)
        self.url, self.port, self.token, self.reader = m.group(1), int(m.group(2)), m.group(3), m.group(4)
        return self

    def request(self, method, path, body=None, token=True, headers=None, timeout=60):
        """(status, headers {lower: value}, body bytes)."""
        h = dict(headers or {})
        if token:
            h["X-Dxhub-Token"] = self.token if token is True else token
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body, ensure_ascii=False).encode()
            h["Content-Type"] = "application/json"
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()

    def json(self, method, path, body=None, expect=200):
        status, _, data = self.request(method, path, body)
        assert status == expect, f"{method} {path}: HTTP {status} (expected {expect}): {data[:400]!r}\n" \
                                 f"{self.proc.log_tail(2000)}"
        return json.loads(data)

    def tasks(self):
        return self.json("GET", "/api/tasks")["tasks"]

    def wait_tasks(self, studies, timeout=30, what="offers"):
        """The task list once every study in studies is in it."""
        want = set(studies)
        return wait_for(lambda: (lambda t: t if want <= {x["study"] for x in t} else None)(self.tasks()),
                        timeout, interval=0.1, what=f"{what} of {sorted(want)} in the workstation's list")

    def task_of(self, study):
        return next(t for t in self.tasks() if t["study"] == study)


# ------------------------------------------------------------------ studies


def fresh(ds, study, series=None):
    ds = copy.deepcopy(ds)
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series or generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def ct_study(src, out, patient="王^伟", pid="WS0001"):
    """Two CT series (numbers 2 then 1 as written), slices whose Instance
    Numbers run against their positions: sorting must use the positions.
    Chinese patient name in UTF-8 (ISO_IR 192), two windows each."""
    out.mkdir(parents=True, exist_ok=True)
    orig = pydicom.dcmread(str(src))
    study = generate_uid()
    files = []
    for series_no, zs in ((2, [10.0, 0.0]), (1, [-20.0, 5.0, -7.5])):
        series = generate_uid()
        for k, z in enumerate(zs):
            ds = fresh(orig, study, series)
            ds.SpecificCharacterSet = "ISO_IR 192"
            ds.PatientName = patient
            ds.PatientID = pid
            ds.SeriesNumber = series_no
            ds.InstanceNumber = k + 1
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.ImagePositionPatient = [-100.0, -120.0, z]
            ds.SliceLocation = z
            ds.PixelSpacing = [0.7, 0.8]
            ds.WindowCenter = [40, -600]
            ds.WindowWidth = [400, 1500]
            ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
            arr = ds.pixel_array.copy()
            arr[0, 0] = int(z * 10)  # each slice differs
            ds.PixelData = arr.tobytes()
            p = out / f"s{series_no}-{k}.dcm"
            ds.save_as(str(p), write_like_original=False)
            files.append(p)
    return study, files


def restudy(srcs, out, modality=None):
    """Copies of srcs in one new study (encapsulated pixel data kept as is)."""
    out.mkdir(parents=True, exist_ok=True)
    study, files = generate_uid(), []
    for i, src in enumerate(srcs):
        ds = fresh(pydicom.dcmread(str(src)), study)
        if modality:
            ds.Modality = modality
        p = out / f"{i}.dcm"
        ds.save_as(str(p), write_like_original=True)
        files.append(p)
    return study, files


def many_instances_study(out, n, modality="NM"):
    """n tiny 8x8 instances in one series of one study."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    out.mkdir(parents=True, exist_ok=True)
    study, series, files = generate_uid(), generate_uid(), []
    for i in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        p = out / f"{i:04d}.dcm"
        ds = FileDataset(str(p), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.PatientName, ds.PatientID, ds.Modality = "Many^Slices", "MANY1", modality
        ds.SeriesNumber, ds.InstanceNumber = 1, i + 1
        ds.Rows = ds.Columns = 8
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = bytes([i % 256]) * 64
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(str(p), write_like_original=False)
        files.append(p)
    return study, files


def big_ot_study(out, rows, cols, seed):
    """One 16-bit secondary capture of rows x cols noise (modality OT)."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    out.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    p = out / f"ot-{seed}.dcm"
    ds = FileDataset(str(p), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "Cache^Test", f"OT{seed}", "OT"
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, cols, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.random.default_rng(seed).integers(0, 4096, (rows, cols), dtype=np.uint16).tobytes()
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.save_as(str(p), write_like_original=False)
    return str(ds.StudyInstanceUID), [p]
