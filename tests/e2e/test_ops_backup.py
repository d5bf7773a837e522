"""`dxhub backup` while the hub ingests under load: three storescu
processes send new instances continuously, and backups taken meanwhile
are each a consistent store.  For every copy:

- `dxhub check --data COPY` passes (every stored digest re-hashed);
- a hub started on the copy (the restore procedure) serves instances whose
  digest is the SHA-256 of exactly the data set bytes storescu sent (the
  synthetic files' bytes after their meta header: hashlib as the oracle),
  and only instances that were sent;
- a copy taken once the load is over holds every instance.
"""
import hashlib
import re
import subprocess
import time

import pytest

from hubutil import Hub, dataset_bytes, dxhub_path, storescu, synth_studies

SENDERS = 3
STUDIES_PER_SENDER = 4
PER_STUDY = 25


def run(*args, timeout=120):
    return subprocess.run([str(dxhub_path()), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout)


def instances_served(hub):
    """{SOP Instance UID: digest hex} of every instance the hub lists."""
    found = {}
    for st in hub.studies():
        uid = st["0020000D"]["Value"][0]

        def walk(o):
            if isinstance(o, dict):
                d = o.get("dxhub")
                if isinstance(d, dict) and "sop_instance_uid" in d:
                    found[d["sop_instance_uid"]] = d["digest"]
                for v in o.values():
                    walk(v)
            elif isinstance(o, list):
                for v in o:
                    walk(v)
        walk(hub.study(uid))
    return found


def check_copy(copy, expected, tmp_path, name):
    r = run("check", "--data", copy)
    out = r.stdout.decode()
    assert r.returncode == 0, out + r.stderr.decode()
    m = re.search(r"^(\d+) instances verified, 0 damaged$", out, re.M)
    assert m, out
    with Hub(copy, log_dir=tmp_path, stable_seconds=600) as restored:
        served = instances_served(restored)
    assert len(served) == int(m.group(1))
    for sop, digest in served.items():
        assert sop in expected, f"{name}: {sop} was never sent"
        assert digest == expected[sop], f"{name}: {sop} digest differs from the bytes sent"
    return len(served)


def test_backups_taken_under_ingest_load_are_consistent(tmp_path):
    sets = [synth_studies(tmp_path / f"in{i}", f"load{i}", STUDIES_PER_SENDER, PER_STUDY, rows=128, cols=128)
            for i in range(SENDERS)]
    files = [[p for paths in s.values() for p in paths] for s in sets]
    expected = {}  # synth_studies names instance k of a one-series study STUDY.1.k
    for s in sets:
        for study, paths in s.items():
            for k, p in enumerate(paths):
                series = f"{study}.1"
                expected[f"{series}.{k + 1}"] = hashlib.sha256(dataset_bytes(p)).hexdigest()
    with Hub(tmp_path / "hub", log_dir=tmp_path, stable_seconds=600) as hub:
        senders = [storescu(hub.dicom_port, group, popen=True) for group in files]
        copies, during = [], 0
        try:
            while any(s.poll() is None for s in senders) and len(copies) < 20:
                dest = tmp_path / f"copy{len(copies)}"
                busy = all(s.poll() is None for s in senders)
                r = run("backup", "--data", hub.data, dest)
                assert r.returncode == 0, r.stderr.decode()
                copies.append(dest)
                during += busy and all(s.poll() is None for s in senders)
        finally:
            for s in senders:
                out = s.communicate(timeout=120)[0].decode(errors="replace")
                assert s.returncode == 0, out[-2000:]
        assert during >= 1, "no backup was taken while every sender was still sending"
        final = tmp_path / "final"
        assert run("backup", "--data", hub.data, final).returncode == 0
    mid = copies[:during]
    mid = [mid[0], mid[len(mid) // 2], mid[-1]] if len(mid) > 3 else mid  # the first, one between, the last
    counts = [check_copy(c, expected, tmp_path, c.name) for c in mid]
    print("copies taken under load:", during, "checked:", counts, "of", len(expected))
    assert check_copy(final, expected, tmp_path, "final") == len(expected)
    assert min(counts) < len(expected), counts  # a copy taken mid-ingest, still consistent
