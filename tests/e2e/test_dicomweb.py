"""DICOMweb (PS3.18) at the hub: a standard viewer or PACS finds and reads
its studies without knowing dxhub's own API.

Real corpus files in five transfer syntaxes are sent with DCMTK's storescu
to a hub that has a facility API key.  The oracles are pydicom (QIDO-RS
answers and metadata read as DICOM JSON, compared with the files
themselves) and Orthanc's DICOMweb plugin (Debian orthanc-dicomweb), a
DICOMweb client nobody here wrote, which retrieves every study through
WADO-RS with the key: what it stores must be the hub's bytes exactly, and
the same pixels as the files sent (the hub's test of ingest already
checks its stored data sets element for element)."""
import io
import json
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy
import pydicom
import pytest

from hubutil import Hub, audit_records, corpus_path, dxhub_path, free_port, storescu, transfer_syntax_of

FILES = ["dicom/explicit_le/CT_small.dcm", "dicom/explicit_le/MR-SIEMENS-DICOM-WithOverlays.dcm",
         "dicom/jpegls_lossless_80/CT0012.not_fragmented_bot_jpeg_ls.80.dcm", "dicom/j2k_lossless_90/US1_J2KR.dcm",
         "dicom/rle_5/SC_rgb_rle_2frame.dcm"]
ORTHANC = Path("/usr/sbin/Orthanc")
PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
DICOM_JSON = "application/dicom+json"
VIEWER = "https://viewer.lead-hospital.example"  # a web viewer's origin the hub's operator listed


class World:
    def get(self, path, accept=None, token=True, origin=None, method="GET"):
        req = urllib.request.Request(f"http://127.0.0.1:{self.hub.http_port}{path}", method=method)
        if token:
            req.add_header("Authorization", f"Bearer {self.token}")
        if accept:
            req.add_header("Accept", accept)
        if origin:
            req.add_header("Origin", origin)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def json(self, path):
        status, headers, body = self.get(path)
        assert status == 200, (path, status, body[:300])
        assert headers["Content-Type"].startswith(DICOM_JSON), headers["Content-Type"]
        return json.loads(body)

    def orthanc(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{self.orthanc_port}{path}", data=data, method=method)
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.read()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    assert ORTHANC.exists() and PLUGIN.exists(), "Orthanc and orthanc-dicomweb are installed by make deps"
    base = tmp_path_factory.mktemp("dicomweb")
    w = World()
    w.files = [corpus_path() / f for f in FILES]
    w.ds = {}
    for f in w.files:
        ds = pydicom.dcmread(f)
        assert ds.SOPInstanceUID not in w.ds, f"{f}: the corpus files must be distinct instances"
        w.ds[ds.SOPInstanceUID] = ds
    data = base / "hub"
    (data / "keys").mkdir(parents=True)
    r = subprocess.run([str(dxhub_path()), "keygen", "--api-key", "pacs", "--keys", data / "keys"],
                       stdout=subprocess.PIPE, check=True)
    w.token = r.stdout.decode().strip()
    w.hub = Hub(data, log_dir=base, stable_seconds=600, extra=("--dicomweb-origins", VIEWER))
    w.hub.start()
    w.orthanc_proc, log = None, None
    try:  # whatever fails below, the hub and Orthanc started here are stopped (by their PIDs)
        contexts = [(str(w.ds[pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID].SOPClassUID),
                     transfer_syntax_of(pydicom.dcmread(f, stop_before_pixels=True))) for f in w.files]
        run = storescu(w.hub.dicom_port, w.files, contexts=contexts, cfg_path=base / "scu.cfg")
        assert run.returncode == 0 and len(run.succeeded()) == len(w.files), run.output[-2000:]
        # Orthanc, its DICOMweb plugin pointed at the hub with the facility's key
        w.orthanc_port = free_port()
        conf = {"Name": "oracle", "StorageDirectory": str(base / "orthanc"),
                "IndexDirectory": str(base / "orthanc"), "HttpPort": w.orthanc_port, "DicomPort": free_port(),
                "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "Plugins": [str(PLUGIN)],
                "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "Servers": {"dxhub": {
                    "Url": f"http://127.0.0.1:{w.hub.http_port}/dicom-web/",
                    "HttpHeaders": {"Authorization": f"Bearer {w.token}"}}}}}
        (base / "orthanc.json").write_text(json.dumps(conf))
        log = open(base / "orthanc.log", "wb")
        w.orthanc_proc = subprocess.Popen([str(ORTHANC), str(base / "orthanc.json")], stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while True:
            try:
                w.orthanc("GET", "/system")
                break
            except (urllib.error.URLError, ConnectionError):
                assert w.orthanc_proc.poll() is None and time.monotonic() < deadline, \
                    (base / "orthanc.log").read_text()[-2000:]
                time.sleep(0.2)
        yield w
    finally:
        if w.orthanc_proc:
            w.orthanc_proc.send_signal(signal.SIGTERM)
            try:
                w.orthanc_proc.wait(20)
            except subprocess.TimeoutExpired:
                w.orthanc_proc.kill()
                w.orthanc_proc.wait()
        if log:
            log.close()
        w.hub.stop()
        shutil.rmtree(base / "orthanc", ignore_errors=True)


def ds_of(obj):
    return pydicom.Dataset.from_json(obj)


def test_qido_finds_the_studies_with_the_attributes_the_files_hold(world):
    studies = world.json("/dicom-web/studies?includefield=00081030&includefield=00080060&fuzzymatching=false")
    got = {ds_of(o).StudyInstanceUID: ds_of(o) for o in studies}
    want = {}
    for ds in world.ds.values():
        want.setdefault(ds.StudyInstanceUID, []).append(ds)
    assert set(got) == set(want)
    for uid, dss in want.items():
        s = got[uid]
        assert s.PatientID == dss[0].PatientID and str(s.PatientName) == str(dss[0].PatientName)
        assert s.StudyDate == dss[0].get("StudyDate", "")
        assert int(s.NumberOfStudyRelatedInstances) == len(dss)
        mods = s.ModalitiesInStudy
        assert set([mods] if isinstance(mods, str) else mods) == {d.Modality for d in dss}
        assert s.RetrieveURL == f"http://127.0.0.1:{world.hub.http_port}/dicom-web/studies/{uid}"
    ct = world.ds_ct = next(d for d in world.ds.values() if d.Modality == "CT")
    one = world.json(f"/dicom-web/studies?PatientID={ct.PatientID}")
    assert [ds_of(o).StudyInstanceUID for o in one] == [ct.StudyInstanceUID]
    assert [ds_of(o).StudyInstanceUID for o in world.json(f"/dicom-web/studies?00100020={ct.PatientID}")] == \
        [ct.StudyInstanceUID]  # a tag as QIDO-RS allows
    assert ct.StudyInstanceUID in [ds_of(o).StudyInstanceUID for o in world.json("/dicom-web/studies?ModalitiesInStudy=CT")]
    assert world.json("/dicom-web/studies?PatientID=nobody-here") == []
    # PatientName with QIDO-RS's wildcards, letters without case (OHIF's study list searches this way)
    assert str(ct.PatientName) == "CompressedSamples^CT1"
    for pattern in ("compressedsamples^ct1", "*SAMPLES*", "Compressed?amples*", "*^CT?"):
        got = [ds_of(o).StudyInstanceUID for o in world.json(
            f"/dicom-web/studies?PatientName={urllib.parse.quote(pattern)}&ModalitiesInStudy=CT")]
        assert got == [ct.StudyInstanceUID], (pattern, got)
    assert world.json("/dicom-web/studies?PatientName=Compressed") == []  # no wildcard: the whole name
    assert len(world.json("/dicom-web/studies?PatientName=*")) == len(got_all := world.json("/dicom-web/studies"))
    assert got_all
    assert world.json("/dicom-web/studies?PatientName=*^CT?&ModalitiesInStudy=MR") == []
    # the audit trail says a name was searched, never the name
    named = lambda: [r for r in audit_records(world.hub.data)  # noqa: E731  (written behind the answers)
                     if r["what"] == "list-studies" and "PatientName" in r["detail"]]
    deadline = time.monotonic() + 10
    while not any("ModalitiesInStudy=MR" in r["detail"] for r in named()) and time.monotonic() < deadline:
        time.sleep(0.1)  # the last search's record (identical searches share one, "accesses=N")
    recs = named()
    assert len(recs) >= 3 and all("(a name: not recorded)" in r["detail"] and "amples" not in r["detail"].lower()
                        for r in recs), recs
    assert len(world.json("/dicom-web/studies?limit=2")) == 2
    status, _, body = world.get("/dicom-web/studies?PatientId=x")  # a typo must not widen the search
    assert status == 400 and json.loads(body)["parameter"] == "PatientId"


def test_qido_lists_each_studys_series_and_instances(world):
    for uid in {d.StudyInstanceUID for d in world.ds.values()}:
        dss = [d for d in world.ds.values() if d.StudyInstanceUID == uid]
        series = [ds_of(o) for o in world.json(f"/dicom-web/studies/{uid}/series")]
        assert {s.SeriesInstanceUID for s in series} == {d.SeriesInstanceUID for d in dss}
        for s in series:
            members = [d for d in dss if d.SeriesInstanceUID == s.SeriesInstanceUID]
            assert s.Modality == members[0].Modality and int(s.NumberOfSeriesRelatedInstances) == len(members)
            inst = [ds_of(o) for o in world.json(f"/dicom-web/studies/{uid}/series/{s.SeriesInstanceUID}/instances")]
            assert {i.SOPInstanceUID for i in inst} == {d.SOPInstanceUID for d in members}
            for i in inst:
                d = world.ds[i.SOPInstanceUID]
                assert i.SOPClassUID == d.SOPClassUID
                assert i.AvailableTransferSyntaxUID == d.file_meta.TransferSyntaxUID
        everything = [ds_of(o).SOPInstanceUID for o in world.json(f"/dicom-web/studies/{uid}/instances")]
        assert sorted(everything) == sorted(d.SOPInstanceUID for d in dss)
    assert world.json("/dicom-web/studies/1.2.3.4/series") == []


def test_wado_metadata_is_each_instances_header_as_dicom_json(world):
    checked = 0
    for uid in {d.StudyInstanceUID for d in world.ds.values()}:
        for o in world.json(f"/dicom-web/studies/{uid}/metadata"):
            got = pydicom.Dataset.from_json({k: v for k, v in o.items() if "BulkDataURI" not in v})
            d = world.ds[got.SOPInstanceUID]
            for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID", "Modality", "Rows", "Columns",
                       "BitsAllocated", "PhotometricInterpretation", "PatientID", "InstanceNumber"):
                if kw in d:
                    assert got[kw].value == d[kw].value, (kw, got.get(kw), d.get(kw))
            assert str(got.PatientName) == str(d.PatientName)
            assert "7FE00010" not in o  # pixel data stays out of metadata (instances carry it)
            checked += 1
    assert checked == len(world.ds)
    sop = world.ds_ct.SOPInstanceUID
    one = world.json(f"/dicom-web/studies/{world.ds_ct.StudyInstanceUID}/series/{world.ds_ct.SeriesInstanceUID}"
                     f"/instances/{sop}/metadata")
    assert [ds_of({k: v for k, v in one[0].items() if "BulkDataURI" not in v}).SOPInstanceUID] == [sop]


def test_a_dicomweb_client_retrieves_every_study_byte_for_byte(world):
    """Orthanc's DICOMweb plugin, with the facility's key, pulls each study
    through WADO-RS (multipart/related): what it stores is the hub's stored
    file exactly, and its data set the file's that was sent."""
    for uid in {d.StudyInstanceUID for d in world.ds.values()}:
        world.orthanc("POST", "/dicom-web/servers/dxhub/retrieve", {"Resources": [{"Study": uid}]})
    ids = json.loads(world.orthanc("GET", "/instances"))
    assert len(ids) == len(world.ds)
    for oid in ids:
        got = world.orthanc("GET", f"/instances/{oid}/file")
        sop = pydicom.dcmread(io.BytesIO(got), stop_before_pixels=True).SOPInstanceUID
        status, _, stored = world.get(f"/api/v1/instances/{sop}/file")
        assert status == 200 and got == stored, sop
        sent = next(f for f in world.files if pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID == sop)
        a, b = pydicom.dcmread(io.BytesIO(got)), pydicom.dcmread(sent)
        assert a.file_meta.TransferSyntaxUID == b.file_meta.TransferSyntaxUID  # sent as it came
        assert (a.PatientID, a.StudyInstanceUID, a.SeriesInstanceUID) == (b.PatientID, b.StudyInstanceUID,
                                                                           b.SeriesInstanceUID)
        assert numpy.array_equal(a.pixel_array, b.pixel_array), sop  # pydicom (gdcm) decodes both
    recs = [r for r in audit_records(world.hub.data) if r["what"] == "read-instance" and "dicomweb retrieve" in
            r.get("detail", "")]
    assert len(recs) >= len({d.StudyInstanceUID for d in world.ds.values()})
    assert all(r["who"] == "facility:pacs" for r in recs), recs


def test_retrieval_answers_as_stored_or_says_why_not(world):
    d = next(x for x in world.ds.values() if x.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.80")
    path = f"/dicom-web/studies/{d.StudyInstanceUID}/series/{d.SeriesInstanceUID}/instances/{d.SOPInstanceUID}"
    status, headers, body = world.get(path, accept='multipart/related; type="application/dicom"; transfer-syntax=*')
    assert status == 200 and headers["Content-Type"].startswith('multipart/related; type="application/dicom"')
    boundary = headers["Content-Type"].split("boundary=")[1]
    parts = body.split(b"--" + boundary.encode())
    assert len(parts) == 3 and parts[2].startswith(b"--"), body[:200]
    head, _, payload = parts[1].partition(b"\r\n\r\n")
    assert b"transfer-syntax=1.2.840.10008.1.2.4.80" in head
    assert payload[:-2] == world.get(f"/api/v1/instances/{d.SOPInstanceUID}/file")[2]
    status, _, body = world.get(path, accept='multipart/related; type="application/dicom"; '
                                              'transfer-syntax=1.2.840.10008.1.2.1')
    assert status == 406 and b"is stored in 1.2.840.10008.1.2.4.80" in body, body
    status, _, body = world.get(path, accept='multipart/related; type="application/octet-stream"')
    assert status == 406
    status, _, body = world.get(path + "/frames/1/x")
    assert status == 404 and b"not a DICOMweb path here" in body
    status, _, body = world.get("/dicom-web/studies/1.2.3.4")
    assert status == 404
    status, _, body = world.get("/dicom-web/studies/not-a-uid/series")
    assert status == 400 and json.loads(body)["parameter"] == "StudyInstanceUID"


def test_without_the_facility_key_nothing_is_answered(world):
    status, _, _ = world.get("/dicom-web/studies", token=False)
    assert status == 401


def parts_of(status, headers, body):
    assert status == 200, body[:300]
    ctype = headers["Content-Type"]
    assert ctype.startswith('multipart/related; type="application/octet-stream"'), ctype
    boundary = ("--" + ctype.split("boundary=")[1]).encode()
    chunks = body.split(b"\r\n" + boundary)
    assert body.startswith(boundary) and chunks[-1].startswith(b"--"), body[-100:]
    out = []
    for c in [chunks[0][len(boundary):]] + chunks[1:-1]:
        head, _, payload = c.partition(b"\r\n\r\n")
        out.append((head.decode(), payload))
    return out


def frames_path(d, frames):
    return (f"/dicom-web/studies/{d.StudyInstanceUID}/series/{d.SeriesInstanceUID}/instances/{d.SOPInstanceUID}"
            f"/frames/{frames}")


@pytest.mark.parametrize("name", ["CT0012.not_fragmented_bot_jpeg_ls.80.dcm", "MR-SIEMENS-DICOM-WithOverlays.dcm",
                                  "SC_rgb_rle_2frame.dcm", "US1_J2KR.dcm"])
def test_frames_come_uncompressed_as_pydicom_decodes_them(world, name):
    """What a viewer that draws from bulk data asks (WADO-RS frames, the
    default: uncompressed): pydicom's pixels, byte for byte."""
    d = next(x for x in world.ds.values() if Path(x.filename).name == name)
    n = int(d.get("NumberOfFrames", 1) or 1)
    want = d.pixel_array.reshape((n,) + d.pixel_array.shape[-3 if n > 1 and d.SamplesPerPixel > 1 else -2:]
                                 if n > 1 else d.pixel_array.shape)
    parts = parts_of(*world.get(frames_path(d, ",".join(str(i + 1) for i in range(n))),
                                accept='multipart/related; type="application/octet-stream"'))
    assert len(parts) == n
    for i, (head, payload) in enumerate(parts):
        assert "transfer-syntax=1.2.840.10008.1.2.1" in head, head
        frame = want[i] if n > 1 else want
        assert payload == frame.astype(frame.dtype.newbyteorder("<")).tobytes(), (name, i, len(payload))


def test_frames_as_stored_are_the_compressed_bitstream(world):
    import pydicom.encaps
    d = next(x for x in world.ds.values() if x.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.80")
    parts = parts_of(*world.get(frames_path(d, "1"),
                                accept='multipart/related; type="application/octet-stream"; transfer-syntax=*'))
    assert len(parts) == 1 and "transfer-syntax=1.2.840.10008.1.2.4.80" in parts[0][0]
    want = next(pydicom.encaps.generate_pixel_data_frame(d.PixelData, 1))
    assert parts[0][1] == want or parts[0][1].rstrip(b"\0") == want.rstrip(b"\0")
    n = int(d.get("NumberOfFrames", 1) or 1)
    status, _, body = world.get(frames_path(d, str(n + 1)))
    assert status == 404 and f"frame {n + 1}: the instance has {n}".encode() in body, body
    status, _, body = world.get(frames_path(d, "1"), accept='multipart/related; type="application/octet-stream"; '
                                                            'transfer-syntax=1.2.840.10008.1.2.4.90')
    assert status == 406 and b"sent as stored (1.2.840.10008.1.2.4.80" in body
    status, _, body = world.get(frames_path(d, "0"))
    assert status == 404


def test_a_listed_web_viewer_may_read_dicomweb_from_a_browser_and_no_other(world):
    """CORS: the page of a viewer served from another origin may read
    /dicom-web/ once the operator lists that origin; any other origin's
    page gets the answer without the header, so its browser withholds it;
    the API's own paths never carry it."""
    status, h, _ = world.get("/dicom-web/studies", origin=VIEWER)
    assert status == 200 and h["Access-Control-Allow-Origin"] == VIEWER and h["Vary"] == "Origin"
    status, h, _ = world.get("/dicom-web/studies", origin="https://elsewhere.example")
    assert status == 200 and "Access-Control-Allow-Origin" not in h
    status, h, _ = world.get("/api/v1/studies", origin=VIEWER)
    assert status == 200 and "Access-Control-Allow-Origin" not in h
    # the browser's preflight (no key: it carries none) for a GET with Authorization
    status, h, _ = world.get("/dicom-web/studies", origin=VIEWER, method="OPTIONS", token=False)
    assert status == 204 and h["Access-Control-Allow-Origin"] == VIEWER, dict(h)
    assert h["Access-Control-Allow-Methods"] == "GET, HEAD" and h["Access-Control-Allow-Headers"] == \
        "Authorization, Accept"
    status, h, _ = world.get("/dicom-web/studies", origin="https://elsewhere.example", method="OPTIONS",
                             token=False)
    assert status == 405 and "Access-Control-Allow-Origin" not in h
    status, _, _ = world.get("/dicom-web/studies", origin=VIEWER, token=False)
    assert status == 401  # the key is still needed


def rendered_path(d, frame=None):
    base = f"/dicom-web/studies/{d.StudyInstanceUID}/series/{d.SeriesInstanceUID}/instances/{d.SOPInstanceUID}"
    return base + (f"/frames/{frame}/rendered" if frame else "/rendered")


@pytest.mark.parametrize("name,frame", [("MR-SIEMENS-DICOM-WithOverlays.dcm", None), ("SC_rgb_rle_2frame.dcm", 2)])
def test_rendered_frames_are_dcm2pnms_picture(world, name, frame, tmp_path):
    """WADO-RS Retrieve Rendered (a PACS's or portal's thumbnail): the frame
    through the display pipeline at the file's own window or the one given,
    as DCMTK's dcm2pnm draws it (within one grey level, two for colour), as
    PNG when asked, JPEG by default at the quality given; the read is audited
    as any other."""
    from PIL import Image
    d = next(x for x in world.ds.values() if Path(x.filename).name == name)
    theirs = tmp_path / "dcmtk.png"
    args = ["+F", str(frame)] if frame else ["+Wi", "1"]
    r = subprocess.run(["dcm2pnm", "-O", "+on", *args, d.filename, str(theirs)], stderr=subprocess.PIPE)
    assert r.returncode == 0, r.stderr.decode()
    want = numpy.asarray(Image.open(theirs)).astype(int)
    status, headers, body = world.get(rendered_path(d, frame), accept="image/png")
    assert status == 200 and headers["Content-Type"] == "image/png", (status, body[:200])
    got = numpy.asarray(Image.open(io.BytesIO(body))).astype(int)
    assert got.shape == want.shape and numpy.abs(got - want).max() <= (2 if got.ndim == 3 else 1)
    # JPEG unless PNG is asked: the same picture within JPEG's loss
    status, headers, body = world.get(rendered_path(d, frame))
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
    jpeg = numpy.asarray(Image.open(io.BytesIO(body))).astype(int)
    assert jpeg.shape == want.shape and numpy.abs(jpeg - want).mean() < 3
    # a frame the instance lacks, an image type the hub does not write, a rendered list of frames
    n = int(d.get("NumberOfFrames", 1) or 1)
    assert world.get(rendered_path(d, n + 1))[0] == 404
    assert world.get(rendered_path(d, frame), accept="image/gif")[0] == 406
    # a window given (PS3.18's window=center,width,linear): dcm2pnm's +Ww on grey images; a JPEG quality
    if not frame:
        r = subprocess.run(["dcm2pnm", "-O", "+on", "+Ww", "300", "600", d.filename, str(theirs)],
                           stderr=subprocess.PIPE)
        assert r.returncode == 0, r.stderr.decode()
        status, _, body = world.get(rendered_path(d) + "?window=300,600,LINEAR", accept="image/png")
        assert status == 200, body[:200]
        windowed = numpy.asarray(Image.open(io.BytesIO(body))).astype(int)
        assert numpy.abs(windowed - numpy.asarray(Image.open(theirs)).astype(int)).max() <= 1
        assert numpy.abs(windowed - got).mean() > 5  # another window: another picture
    small, q90 = world.get(rendered_path(d, frame) + "?quality=20"), world.get(rendered_path(d, frame))
    assert small[0] == 200 and small[1]["Content-Type"] == "image/jpeg" and len(small[2]) < len(q90[2])
    for bad in ("window=40", "window=40,0", "window=40,400,sigmoid", "window=a,b", "quality=0", "quality=101"):
        status, _, body = world.get(rendered_path(d, frame) + "?" + bad)
        assert status == 400 and bad.split("=")[0].encode() in body, (bad, status, body)
    assert world.get(frames_path(d, frame or 1) + "?window=40,400")[0] == 400  # a picture's parameter only
    assert world.get(rendered_path(d).replace("/rendered", "/frames/1,2/rendered"))[0] == 404
    # each rendering is a read of the patient's instance on the trail (written behind the answer)
    what = f"dicomweb rendered frame {frame or 1} of {d.SOPInstanceUID}"
    deadline = time.monotonic() + 10
    while not any(r["what"] == "read-instance" and what in r["detail"] for r in audit_records(world.hub.data)):
        assert time.monotonic() < deadline, f"no audit record '{what}'"
        time.sleep(0.1)
