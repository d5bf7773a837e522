"""The hub's C-STORE answers (DESIGN.md §4): idempotent by SOP Instance UID
+ digest, conflicts kept apart and audited, a broken data set refused with
a reason while the hub keeps serving, and a full LMDB map as an operating
condition (0xA700, reads keep working, eviction by retention recovers).

The peers are DCMTK's storescu and, for what storescu would not send (a
data set it cannot parse), hubutil.RawSCU, a minimal C-STORE SCU that sends
the bytes it is given.
"""
import hashlib
import re
import struct
import subprocess
import time

import pytest

from hubutil import (CT_IMAGE_STORAGE, EXPLICIT_LE, Hub, RawSCU, attr, audit_records, dataset_bytes,
                     detail_instances, split_part10, storescu, synth_instance, synth_studies, uid_root)


@pytest.fixture
def hub(tmp_path):
    h = Hub(tmp_path / "hub", log_dir=tmp_path, stable_seconds=600)
    try:
        yield h.start()
    finally:
        h.close()


def results(hub):
    m = hub.metrics()
    return {r: m.get(f'dxhub_store_results_total{{result="{r}"}}', 0)
            for r in ("stored", "duplicate", "conflict", "full", "invalid", "failed")}


def stored_dataset(hub, sop):
    status, body = hub.instance_file(sop)
    assert status == 200, f"{sop}: HTTP {status}"
    return split_part10(body)[1]


# ---------------------------------------------------------------- duplicates and conflicts


def test_same_instance_twice_is_stored_once(hub, tmp_path):
    root = uid_root("dup")
    study, sop = f"{root}.1", f"{root}.1.1.1"
    f = synth_instance(tmp_path / "a.dcm", study, f"{root}.1.1", sop, 1)
    r1 = storescu(hub.dicom_port, [f, f])  # twice in one association
    r2 = storescu(hub.dicom_port, [f])     # and again in another
    assert r1.statuses() == ["Success", "Success"] and r2.statuses() == ["Success"], r1.output + r2.output
    assert results(hub) == {"stored": 1, "duplicate": 2, "conflict": 0, "full": 0, "invalid": 0, "failed": 0}
    st = hub.studies(StudyInstanceUID=study)
    assert len(st) == 1 and attr(st[0], "00201208") == 1 and st[0]["dxhub"]["conflicts"] == 0
    assert stored_dataset(hub, sop) == dataset_bytes(f)
    stores = [a for a in audit_records(hub.data) if a["what"] == "store" and a["detail"] == sop]
    assert len(stores) == 1, stores


def test_same_uid_other_content_keeps_the_first(hub, tmp_path):
    root = uid_root("conflict")
    study, series, sop = f"{root}.1", f"{root}.1.1", f"{root}.1.1.1"
    first = synth_instance(tmp_path / "first.dcm", study, series, sop, 1, seed=1)
    other = synth_instance(tmp_path / "other.dcm", study, series, sop, 1, seed=2)  # other pixels
    third = synth_instance(tmp_path / "third.dcm", study, series, sop, 1, seed=1, patient_name="OTHER^NAME")
    assert len({dataset_bytes(p) for p in (first, other, third)}) == 3
    r = storescu(hub.dicom_port, [first, other, other, third])
    # A conflicting copy is durable (kept apart): the sender must not retry.
    assert r.statuses() == ["Success"] * 4, r.output
    assert stored_dataset(hub, sop) == dataset_bytes(first)
    st = hub.study(study)["study"]
    assert st["dxhub"]["conflicts"] == 2, st["dxhub"]  # two other contents, each kept once
    assert attr(st, "00201208") == 1
    assert attr(st, "00100010")["Alphabetic"] == "TEST^HUB"  # the first copy's patient name
    (inst,) = detail_instances(hub.study(study))
    assert inst["dxhub"]["digest"] == hashlib.sha256(dataset_bytes(first)).hexdigest()
    assert inst["dxhub"]["conflict"] is False
    assert results(hub) == {"stored": 1, "duplicate": 0, "conflict": 3, "full": 0, "invalid": 0, "failed": 0}
    assert hub.metrics()["dxhub_conflicts"] == 2
    conflicts = [a for a in audit_records(hub.data) if a["what"] == "conflict"]
    assert [(a["study"], a["detail"], a["who"]) for a in conflicts] == [(study, sop, "dicom:STORESCU")] * 2


# ---------------------------------------------------------------- a broken data set


def broken_variants(good):
    """(name, bytes, what the refusal must name) made from a good data set."""
    pn = good.index(b"\x10\x00\x10\x00PN")          # (0010,0010) PN, 2-byte length after it
    px = good.index(b"\xe0\x7f\x10\x00OW")          # (7FE0,0010) OW, 4-byte length at +8
    too_long = bytearray(good)
    too_long[pn + 6:pn + 8] = struct.pack("<H", 0xFFF0)
    bad_vr = bytearray(good)
    bad_vr[pn + 4:pn + 6] = b"\x01Z"
    # Big enough (2.5 MB) that its first chunks reach LMDB while it arrives.
    big_cut = bytearray(good[:px + 12]) + bytes(2_500_000)
    big_cut[px + 8:px + 12] = struct.pack("<I", 16_000_000)
    # UIDs the API, the reader and the workstation would refuse later
    se = good.index(b"\x20\x00\x0e\x00UI")          # (0020,000E) UI, 2-byte length after it
    uid_letter, uid_not_ascii = bytearray(good), bytearray(good)
    uid_letter[se + 8] = ord("x")
    uid_not_ascii[se + 9] = 0xFF
    return [
        ("Series Instance UID with a letter", bytes(uid_letter), r"\(0020,000E\) is not a valid UID"),
        ("Series Instance UID not ASCII", bytes(uid_not_ascii), r"\(0020,000E\) is not a valid UID"),
        ("2.5 MB, pixel data cut short", bytes(big_cut), r"(?i)\(7FE0,0010\).*(length|exceed|truncat)"),
        ("value length beyond the end", bytes(too_long), r"(?i)\(0010,0010\).*length"),
        ("pixel data cut short", good[:px + 12 + 100], r"(?i)\(7FE0,0010\).*(length|exceed|truncat)"),
        ("cut inside an element header", good[:px + 5], r"(?i)header.*\b5\b|truncat"),
        ("invalid VR", bytes(bad_vr), r"(?i)\(0010,0010\).*VR"),
        ("not DICOM at all", b"\xff" * 200, r"\S"),
    ]


def test_broken_data_set_is_refused_with_its_reason(hub, tmp_path):
    import re
    root = uid_root("broken")
    study, sop = f"{root}.1", f"{root}.1.1.1"
    good_file = synth_instance(tmp_path / "good.dcm", study, f"{root}.1.1", sop, 1)
    good = dataset_bytes(good_file)
    variants = broken_variants(good)
    with RawSCU(hub.dicom_port, [(CT_IMAGE_STORAGE, EXPLICIT_LE)], calling="BROKENSCU") as scu:
        for name, data, reason in variants:
            status, comment = scu.store(CT_IMAGE_STORAGE, sop, EXPLICIT_LE, data)
            assert status == 0xC000, f"{name}: status {status:#06x} ({comment!r})"
            assert re.search(reason, comment), f"{name}: error comment {comment!r} does not name the reason"
            assert hub.running(), f"{name}: the hub died:\n{hub.log_tail()}"
            assert hub.instance_file(sop)[0] == 404, f"{name}: something was stored"
        # The same association goes on: the good data set is stored.
        assert scu.store(CT_IMAGE_STORAGE, sop, EXPLICIT_LE, good) == (0, "")
    assert stored_dataset(hub, sop) == good
    # And the hub keeps serving new associations.
    other = synth_instance(tmp_path / "other.dcm", study, f"{root}.1.1", f"{root}.1.1.2", 2)
    assert storescu(hub.dicom_port, [other]).statuses() == ["Success"]
    assert hub.health()[0] == 200
    assert attr(hub.study(study)["study"], "00201208") == 2
    assert results(hub)["invalid"] == len(variants)
    invalid = [a for a in audit_records(hub.data) if a["what"] == "invalid-instance"]
    assert len(invalid) == len(variants) and all(a["who"] == "dicom:BROKENSCU" and a["detail"] for a in invalid)
    assert not list((hub.data / "spool").iterdir()), "refused data left in the spool"
    # Nor in LMDB: the refused 2.5 MB one's early chunks are gone.
    chunks = sum(-(-len(hub.instance_file(u)[1]) // 2**20) for u in (sop, f"{root}.1.1.2"))
    assert db_entries(hub.data, "early") == 0
    assert db_entries(hub.data, "blob") == chunks


def db_entries(data_dir, db):
    """Entries of one LMDB database, as LMDB's own mdb_stat counts them."""
    out = subprocess.run(["mdb_stat", "-s", db, str(data_dir)], stdout=subprocess.PIPE, check=True).stdout.decode()
    return int(re.search(r"Entries: (\d+)", out).group(1))


# ---------------------------------------------------------------- map full


def test_map_full_refuses_then_recovers(tmp_path):
    """Fill a 4 MiB map: 0xA700 with a comment, reads keep working.  Then
    restart with --retain-days 0 --stable-seconds 1: the study completes
    although the map is full; when retention may evict it, a new store
    succeeds; when it may not (the store keeps studies nobody has read:
    only signed ones, or complete ones without a reading task, are
    evictable), the hub keeps refusing with 0xA700 and loses nothing.
    Finally, restart with a larger map (DESIGN.md §4 "grow the map if
    configured"): new data is stored and the old data is intact."""
    made = synth_studies(tmp_path / "big", "mapfull", 1, 14, rows=512, cols=512)  # 14 x 512 KiB > 4 MiB
    (study, files), = made.items()
    sops = [f"{study}.1.{k + 1}" for k in range(len(files))]
    fresh = synth_studies(tmp_path / "fresh", "afterfull", 1, 3, rows=512, cols=512)
    (study2, files2), = fresh.items()
    hub = Hub(tmp_path / "hub", log_dir=tmp_path, stable_seconds=600, map_size="4M")
    try:
        hub.start()
        r = storescu(hub.dicom_port, files, halt=True)  # storescu stops at the first refusal
        st = r.statuses()
        assert "Refused: OutOfResources" in st, r.output
        n_ok = st.index("Refused: OutOfResources")
        assert n_ok >= 2 and st[:n_ok] == ["Success"] * n_ok, st
        # The exact answer: 0xA700 with a comment saying why.
        with RawSCU(hub.dicom_port, [(CT_IMAGE_STORAGE, EXPLICIT_LE)]) as scu:
            status, comment = scu.store(CT_IMAGE_STORAGE, sops[-1], EXPLICIT_LE, dataset_bytes(files[-1]))
        assert status == 0xA700 and "full" in comment.lower(), (hex(status), comment)
        # Reads keep working.
        status, _, body = hub.health()
        assert status == 200, body
        for k in range(n_ok):
            assert stored_dataset(hub, sops[k]) == dataset_bytes(files[k])
        assert hub.instance_file(sops[n_ok])[0] == 404
        assert attr(hub.study(study)["study"], "00201208") == n_ok
        assert results(hub)["full"] >= 2 and results(hub)["stored"] == n_ok
        assert hub.stop() == 0

        # Retention on a full map.
        hub = Hub(tmp_path / "hub", log_dir=tmp_path, stable_seconds=1, retain_days=0, map_size="4M")
        hub.start()

        def settled():
            d = hub.study(study, expect=None)
            if d.get("error") == "no such study":
                return "evicted"
            return d["study"]["dxhub"]["state"] != "receiving" and d["study"]["dxhub"]["state"]
        state = hub.wait_for(settled, 15, "the full study to complete after its quiet time")
        time.sleep(1.5)  # a few housekeeping passes: eviction, if retention may evict it
        evicted = [a["study"] for a in audit_records(hub.data) if a["what"] == "evict"]
        r = storescu(hub.dicom_port, files2[:1])
        if evicted:
            assert evicted == [study] and hub.instance_file(sops[0])[0] == 404
            assert r.statuses() == ["Success"], r.output
            assert stored_dataset(hub, f"{study2}.1.1") == dataset_bytes(files2[0])
        else:
            assert state in ("complete", "queued"), state
            assert r.statuses() == ["Refused: OutOfResources"], r.output
            for k in range(n_ok):
                assert stored_dataset(hub, sops[k]) == dataset_bytes(files[k])
        assert hub.stop() == 0

        # A larger map: LMDB grows the environment, new data fits.
        hub = Hub(tmp_path / "hub", log_dir=tmp_path, stable_seconds=600, map_size="8M")
        hub.start()
        assert storescu(hub.dicom_port, files2).statuses() == ["Success"] * 3
        for k, f in enumerate(files2):
            assert stored_dataset(hub, f"{study2}.1.{k + 1}") == dataset_bytes(f)
        if not evicted:
            for k in range(n_ok):
                assert stored_dataset(hub, sops[k]) == dataset_bytes(files[k])
        m = hub.metrics()
        assert m["dxhub_lmdb_map_size_bytes"] == 8 << 20
    finally:
        hub.close()
