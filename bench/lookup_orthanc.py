"""lookup_orthanc.py — the same patient set in Orthanc, for bench/lookup.sh.

    lookup_orthanc.py load  --url http://127.0.0.1:PORT --patients N --studies M [--threads T]
    lookup_orthanc.py warm  --url http://127.0.0.1:PORT --patients N [--token T] [--expect M]

load: M studies, study i of patient i % N ("BP%05d"), one small DX image
each, dated within the last 100 days, sent to Orthanc with POST /instances
over keep-alive connections from T threads.  One data set is made with
pydicom; each study's copy differs only in fixed-width identifiers patched
into its bytes, so making 100,000 costs nothing next to Orthanc's ingest.

warm: one lookup per patient at dxhub (GET /api/v1/reports, bearer token)
and checks the totals: every exam found, every one recognised.  It also
fills the hub's verdict cache, so the timed runs measure lookups, not
first-time signature checks.
"""
import argparse
import datetime
import http.client
import io
import json
import sys
import threading
import time
import urllib.parse

ROOT = "1.2.826.0.1.3680043.9.7133.77"


def template():
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
    meta.MediaStorageSOPInstanceUID = f"{ROOT}.3.{'9' * 7}"
    meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    ds = Dataset()
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = f"{ROOT}.1.{'9' * 7}"
    ds.SeriesInstanceUID = f"{ROOT}.2.{'9' * 7}"
    ds.PatientID = "BP99999"
    ds.PatientName = "BENCH^PATIENT"
    ds.StudyDate = "19991231"
    ds.Modality = "DX"
    ds.AccessionNumber = "A9999999"
    ds.StudyDescription = "DX chest PA"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = 64
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.arange(64 * 64, dtype=np.uint16).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, write_like_original=False)
    return buf.getvalue()


def instance(tmpl, i, patients, today):
    day = (today - datetime.timedelta(days=i % 100)).strftime("%Y%m%d")
    out = tmpl.replace(b"9" * 7 + b"\0", f"{i:07d}".encode() + b"\0")  # UIDs are padded to even length
    out = out.replace(b"9" * 7, f"{i:07d}".encode())
    return (out.replace(b"BP99999", f"BP{i % patients:05d}".encode()).replace(b"19991231", day.encode())
            .replace(b"A9999999", f"A{i:07d}".encode()))


def load(args):
    tmpl = template()
    assert tmpl.count(b"9" * 7) >= 3 and b"BP99999" in tmpl
    u = urllib.parse.urlparse(args.url)
    today = datetime.date.today()
    failed, done = [], [0]
    lock = threading.Lock()

    def work(k):
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
        for i in range(k, args.studies, args.threads):
            c.request("POST", "/instances", body=instance(tmpl, i, args.patients, today),
                      headers={"Content-Type": "application/dicom"})
            r = c.getresponse()
            r.read()
            if r.status != 200:
                failed.append(r.status)
            with lock:
                done[0] += 1

    t0 = time.time()
    th = [threading.Thread(target=work, args=(k,)) for k in range(args.threads)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    if failed:
        sys.exit(f"lookup_orthanc.py: {len(failed)} instances refused by Orthanc (e.g. HTTP {failed[0]})")
    print(json.dumps({"loaded": done[0], "seconds": round(time.time() - t0, 1)}))


def warm(args):
    u = urllib.parse.urlparse(args.url)
    totals = {"exams": 0, "recognised": 0, "failed_requests": 0}
    lock = threading.Lock()

    def work(k):
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
        t = {"exams": 0, "recognised": 0, "failed_requests": 0}
        for i in range(k, args.patients, args.threads):
            c.request("GET", f"/api/v1/reports?PatientID=BP{i:05d}&scope=local",
                      headers={"Authorization": "Bearer " + args.token})
            r = c.getresponse()
            body = r.read()
            if r.status != 200:
                t["failed_requests"] += 1
                continue
            d = json.loads(body)
            t["exams"] += d["total"]
            t["recognised"] += d["recognised"]
        with lock:
            for key in t:
                totals[key] += t[key]

    t0 = time.time()
    th = [threading.Thread(target=work, args=(k,)) for k in range(args.threads)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    totals["seconds"] = round(time.time() - t0, 1)
    print(json.dumps(totals))
    if totals["failed_requests"] or (args.expect and (totals["exams"], totals["recognised"]) != (args.expect,) * 2):
        sys.exit(f"lookup_orthanc.py: the hub's answers are not what was loaded: {totals}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=("load", "warm"))
    p.add_argument("--url", required=True)
    p.add_argument("--patients", type=int, default=10000)
    p.add_argument("--studies", type=int, default=100000)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--token", default="")
    p.add_argument("--expect", type=int, default=0)
    args = p.parse_args()
    load(args) if args.mode == "load" else warm(args)


if __name__ == "__main__":
    main()
