"""`dxhub serve` ingests the whole corpus by C-STORE (DCMTK storescu) and
gives back, through its HTTP API, exactly what it was sent.

Every file of $DXHUB_CORPUS/dicom/ and ecg/dicom/ whose data set has a SOP
Class UID (pydicom) is sent, each in its own transfer syntax (see below),
in batches: batch k holds the k-th file of each SOP Instance UID, so the
first batch stores one copy of every instance and the later ones are
duplicates or conflicts (the corpus has several encodings of MR_small, CT1,
emri_small ... under one UID).  The same batches go to DCMTK's storescp in
bit-preserving mode, which shows the bytes storescu actually put on the
wire: storescu parses each file and writes its data set again, dropping
group lengths and Data Set Trailing Padding and giving sequences explicit
lengths, so "the bytes sent" are storescp's, not the file's.

How storescu is made to send each file in its own syntax: `storescu -R`
proposes only the uncompressed syntaxes (or the one compressed syntax named
with -x?), so it would decompress or give up on the compressed files; an
association profile (-xf, written by hubutil.storescu_config) proposes one
context per (SOP class, transfer syntax) of the batch instead.  storescu
logs "Converting transfer syntax: A -> B" for every file; A == B is checked.

Checked per stored instance: the API's file is a valid Part 10 file (DICM,
meta with the right SOP Class/Instance and transfer syntax; pydicom reads
it without force), its data set bytes are exactly the bytes storescu sent,
its data set equals the original file's element for element (pydicom;
pixel data byte for byte) and line for line (dcmdump), with only storescu's
documented re-encodings allowed; the study API lists every study with the
patient ID, modalities, series and instance counts, and conflict count
derived from the files with pydicom.
"""
import hashlib
import re
import warnings
from concurrent.futures import ThreadPoolExecutor

import pydicom
import pytest

from hubutil import (Hub, RawSCU, Storescp, attr, corpus_path, detail_instances, split_part10, storescu,
                     transfer_syntax_of)

# pydicom warns about the corpus's odd values (that is what they are for).
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

# Corpus files that have a SOP Class UID but that storescu cannot send, and
# why.  Exactly these: the test fails when the list changes either way.
NOT_SENDABLE = {
    "dicom/htj2k_201/HTJ2KLossless_08_RGB.dcm":
        "HTJ2K Lossless (1.2.840.10008.1.2.4.201) is unknown to DCMTK 3.6.7: 'Store Failed'",
    "dicom/deflate/liver_deflate.dcm":
        "Deflated Image Frame Compression (1.2.840.10008.1.2.8.1) is unknown to DCMTK 3.6.7: 'Store Failed'",
    "dicom/jpegls_lossless_80/JLSL_RGB_ILV0.dcm": "no SOP Instance UID: storescu skips it",
    "dicom/jpegls_near_81/JLSN_RGB_ILV0.dcm": "no SOP Instance UID: storescu skips it",
    "dicom/odd/explicit_VR-UN.dcm":
        "DCMTK misreads it (Pixel Data as OW of odd length) and finds no SOP Class/Instance UID",
    "dicom/rle_5/rtdose_rle.dcm":
        "DCMTK misreads it (Pixel Data as OW of odd length) and finds no SOP Class/Instance UID",
    "dicom/odd/rtplan_truncated.dcm": "truncated inside a value: DCMTK refuses to read it ('Bad DICOM file')",
    "dicom/odd/MR_truncated.dcm": "truncated inside Pixel Data: DCMTK refuses to read it ('Bad DICOM file')",
}
# Sent, and refused by the hub with 0xC000 and a comment naming the reason.
REFUSED_BY_HUB = {
    "dicom/jpegls_lossless_80/JLSL_08_07_0_1F.dcm": "Study Instance UID",  # Type 1, absent: cannot be filed
}
# What storescu's re-encoding may change in a data set (besides lengths):
# group length elements (gggg,0000) and Data Set Trailing Padding are dropped,
# encapsulated Pixel Data is written as OB (PS3.5 A.4) even when read as OW,
# an odd-length value or pixel data fragment is padded to even length.
TRAILING_PADDING = pydicom.tag.Tag(0xFFFC, 0xFFFC)
PIXEL_DATA = pydicom.tag.Tag(0x7FE0, 0x0010)


def read(path_or_bytes, force=True):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if isinstance(path_or_bytes, (bytes, bytearray)):
            from io import BytesIO
            return pydicom.dcmread(BytesIO(path_or_bytes), force=force)
        return pydicom.dcmread(str(path_or_bytes), force=force)


class Corpus:
    """The corpus files with a SOP Class UID, their batches and what pydicom
    says about each."""

    def __init__(self):
        self.root = corpus_path()
        files = sorted([p for p in (self.root / "dicom").rglob("*") if p.is_file()]
                       + [p for p in (self.root / "ecg" / "dicom").iterdir() if p.is_file()])
        self.info = {}
        for p in files:
            try:
                ds = read(p)
                ds.SOPClassUID  # noqa: B018 (raises when absent)
            except Exception:
                continue
            self.info[p] = {
                "rel": p.relative_to(self.root).as_posix(), "ds": ds, "sop_class": str(ds.SOPClassUID),
                "sop": str(ds.get("SOPInstanceUID", "") or ""), "ts": transfer_syntax_of(ds),
                "study": str(ds.get("StudyInstanceUID", "") or ""), "series": str(ds.get("SeriesInstanceUID", "") or ""),
                "patient": str(ds.get("PatientID", "") or ""), "modality": str(ds.get("Modality", "") or ""),
            }
        occurrences, self.batches = {}, []
        for p, i in self.info.items():
            k = occurrences.get(i["sop"], 0) if i["sop"] else 0
            occurrences[i["sop"]] = k + 1
            while len(self.batches) <= k:
                self.batches.append([])
            self.batches[k].append(p)

    def rel(self, p):
        return self.info[p]["rel"]


@pytest.fixture(scope="module")
def ingest(tmp_path_factory):
    """Sends the corpus to a hub and to storescp +B, batch by batch; returns
    everything the tests compare."""
    work = tmp_path_factory.mktemp("hub_ingest")
    c = Corpus()
    hub = Hub(work / "hub", log_dir=work, stable_seconds=600)
    scp = Storescp(work / "scp", contexts=[(i["sop_class"], i["ts"]) for i in c.info.values()])
    try:
        hub.start()
        scp.start()
        runs, sent = [], []  # per batch: the hub's StoreRun; {SOP UID: storescp file}
        for k, batch in enumerate(c.batches):
            contexts = [(c.info[p]["sop_class"], c.info[p]["ts"]) for p in batch]
            r = storescu(hub.dicom_port, batch, contexts=contexts, cfg_path=work / f"hub{k}.cfg")
            o = storescu(scp.port, batch, contexts=contexts, cfg_path=work / f"scp{k}.cfg")
            runs.append((r, o))
            sent.append(scp.take(work / "scp" / f"batch{k}"))
        yield {"corpus": c, "hub": hub, "runs": runs, "sent": sent, "work": work}
    finally:
        scp.close()
        hub.close()


def outcome(ingest):
    """{path: (batch, status text or None, ok, conversion)} of every file tried."""
    c, out = ingest["corpus"], {}
    for k, (r, _) in enumerate(ingest["runs"]):
        for p in c.batches[k]:
            res = r.results.get(str(p))
            st, ok = res[0] if res else (None, False)
            out[p] = (k, st, ok, r.conversions.get(str(p)))
    return out


def winners(ingest):
    """{SOP UID: path} of the first stored copy of each instance."""
    c, w = ingest["corpus"], {}
    for k, (r, _) in enumerate(ingest["runs"]):
        for p in c.batches[k]:
            res = r.results.get(str(p))
            if res and res[0][1] and c.info[p]["sop"] not in w:
                w[c.info[p]["sop"]] = p
    return w


def test_ingest_sends_every_file_but_a_known_few(ingest):
    c = ingest["corpus"]
    assert len(c.info) >= 80, "the corpus shrank: fewer files with a SOP Class UID than expected"
    assert len(c.batches) >= 3, "the corpus should hold several copies of one SOP Instance UID"
    failed = {}
    for p, (k, st, ok, conv) in outcome(ingest).items():
        if not ok:
            failed[c.rel(p)] = st
        elif conv is not None:
            assert conv[0] == conv[1], f"{c.rel(p)}: storescu converted {conv[0]} -> {conv[1]}"
    expected = set(NOT_SENDABLE) | set(REFUSED_BY_HUB)
    assert set(failed) == expected, (
        f"unexpected failures: { {k: v for k, v in failed.items() if k not in expected} }; "
        f"expected failures that succeeded: {sorted(expected - set(failed))}")
    for rel in REFUSED_BY_HUB:
        assert failed[rel] == "Error: CannotUnderstand", f"{rel}: {failed[rel]}"
    for rel in NOT_SENDABLE:
        assert failed[rel] in (None, "Store Failed"), f"{rel} reached the hub: {failed[rel]}"
    # storescp (the oracle) took every file the hub took.
    for k, (r, o) in enumerate(ingest["runs"]):
        for p in c.batches[k]:
            if r.results.get(str(p), [(None, False)])[0][1]:
                assert o.results[str(p)][0][1], f"storescp refused {c.rel(p)}"


def test_refused_instance_comment_names_the_reason(ingest):
    """The hub's refusal of an instance it cannot file carries a comment
    (0000,0902) naming what is missing; sent as storescu sent it."""
    c, hub = ingest["corpus"], ingest["hub"]
    for rel, reason in REFUSED_BY_HUB.items():
        p = c.root / rel
        i = c.info[p]
        oracle = next(s[i["sop"]] for s in ingest["sent"] if i["sop"] in s)
        with RawSCU(hub.dicom_port, [(i["sop_class"], i["ts"])], calling="STORESCU") as scu:
            status, comment = scu.store(i["sop_class"], i["sop"], i["ts"], split_part10(oracle.read_bytes())[1])
        assert status == 0xC000, f"{rel}: status {status:#06x}"
        assert reason in comment, f"{rel}: comment {comment!r} does not name {reason!r}"
        assert hub.instance_file(i["sop"])[0] == 404


def test_stored_files_are_part10_with_the_bytes_sent(ingest):
    c, hub = ingest["corpus"], ingest["hub"]
    w = winners(ingest)
    oracle = ingest["sent"][0]
    assert len(w) >= 50
    problems = []
    for sop, p in w.items():
        rel, i = c.rel(p), c.info[p]
        status, body = hub.instance_file(sop)
        if status != 200:
            problems.append(f"{rel}: HTTP {status}")
            continue
        meta, data = split_part10(body)
        ds = read(body, force=False)  # a valid Part 10 file: no force needed
        fm = ds.file_meta
        if (str(fm.MediaStorageSOPClassUID), str(fm.MediaStorageSOPInstanceUID), str(fm.TransferSyntaxUID)) != \
                (i["sop_class"], sop, i["ts"]):
            problems.append(f"{rel}: meta says {fm.MediaStorageSOPClassUID} {fm.MediaStorageSOPInstanceUID} "
                            f"{fm.TransferSyntaxUID}, expected {i['sop_class']} {sop} {i['ts']}")
        wire = split_part10(oracle[sop].read_bytes())[1]
        if data != wire:
            n = next((k for k in range(min(len(data), len(wire))) if data[k] != wire[k]), min(len(data), len(wire)))
            problems.append(f"{rel}: stored data set ({len(data)} bytes) differs from the {len(wire)} bytes "
                            f"storescu sent, first at byte {n}")
    assert not problems, "\n".join(problems)


def same_bytes(a, b):
    """Equal, or b is a padded to even length (PS3.5 7.1.1)."""
    return a == b or (len(a) % 2 == 1 and len(b) == len(a) + 1 and b[:-1] == a and b[-1:] in (b"\0", b" "))


def fragments(value):
    """The items of encapsulated pixel data, offset table first (PS3.5 A.4)."""
    from pydicom.encaps import decode_data_sequence
    return decode_data_sequence(value)


def compare(a, b, where, diffs):
    """Element for element, recursively; allowed: the re-encodings above."""
    ka = [t for t in a.keys() if t.element != 0 and not (where == "" and t == TRAILING_PADDING)]
    kb = [t for t in b.keys() if t.element != 0]
    if ka != kb:
        diffs.append(f"{where or 'top'}: tags only in the original {sorted(set(ka) - set(kb))[:5]}, "
                     f"only stored {sorted(set(kb) - set(ka))[:5]}")
        return
    for t in ka:
        ea, eb = a[t], b[t]
        if ea.VR != eb.VR and not (t == PIXEL_DATA and {ea.VR, eb.VR} == {"OB", "OW"}
                                   and getattr(ea, "is_undefined_length", False)):
            diffs.append(f"{where}{t}: VR {ea.VR} stored as {eb.VR}")
            continue
        if ea.VR == "SQ":
            if len(ea.value) != len(eb.value):
                diffs.append(f"{where}{t}: {len(ea.value)} items stored as {len(eb.value)}")
                continue
            for n, (ia, ib) in enumerate(zip(ea.value, eb.value)):
                compare(ia, ib, f"{where}{t}[{n}].", diffs)
            continue
        va, vb = ea.value, eb.value
        if t == PIXEL_DATA and getattr(ea, "is_undefined_length", False):
            fa, fb = fragments(va), fragments(vb)
            if len(fa) != len(fb) or not all(same_bytes(x, y) for x, y in zip(fa, fb)):
                diffs.append(f"{where}{t}: {len(fa)} fragments stored as {len(fb)} other fragments")
        elif isinstance(va, bytes) and isinstance(vb, bytes):
            if not same_bytes(va, vb):
                diffs.append(f"{where}{t} {ea.VR}: {len(va)} bytes stored as {len(vb)} other bytes")
        elif va != vb:
            diffs.append(f"{where}{t} {ea.VR}: {str(va)[:40]!r} stored as {str(vb)[:40]!r}")


def test_stored_data_sets_equal_the_originals_pydicom(ingest):
    c, hub = ingest["corpus"], ingest["hub"]
    problems = []
    for sop, p in winners(ingest).items():
        status, body = hub.instance_file(sop)
        assert status == 200
        stored = read(body)
        diffs = []
        compare(c.info[p]["ds"], stored, "", diffs)  # pixel data included, byte for byte
        if diffs:
            problems.append(f"{c.rel(p)}: " + "; ".join(diffs[:5]))
    assert not problems, "\n".join(problems)


def dcmdump_datasets(paths):
    """dcmdump's data set lines of each file (one dcmdump run: its start-up
    costs more than a small file's dump), normalised for storescu's
    re-encoding: no lengths, no explicit/undefined length wording, no
    delimitation items, no group lengths, no trailing padding, whitespace
    collapsed.  [] for a file dcmdump cannot read."""
    import subprocess
    r = subprocess.run(["dcmdump", "-q", "+uc", "+F"] + [str(p) for p in paths],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    heads = {f"# dcmdump ({k + 1}/{len(paths)}): {p}": k for k, p in enumerate(paths)}
    sections, cur = [[] for _ in paths], None
    for line in r.stdout.decode("utf-8", "replace").splitlines():
        if line in heads:
            cur = heads[line]
        elif cur is not None:
            sections[cur].append(line)
    out = []
    for lines in sections:
        if "# Dicom-Data-Set" not in lines:
            out.append([])
            continue
        norm = []
        for line in lines[lines.index("# Dicom-Data-Set") + 2:]:
            s = line.strip()
            if not s or re.match(r"\((fffe,e00d|fffe,e0dd|fffc,fffc|[0-9a-f]{4},0000)\)", s):
                continue
            s = re.sub(r"(Sequence|Item) with (undefined|explicit) length", r"\1", s)
            s = re.sub(r"#\s*(u/l|\d+),", "#", s)
            norm.append(" ".join(s.split()))
        out.append(norm)
    return out


def test_stored_data_sets_equal_the_originals_dcmdump(ingest):
    c, hub, work = ingest["corpus"], ingest["hub"], ingest["work"]
    out = work / "fetched"
    out.mkdir(exist_ok=True)
    originals, stored = [], []
    for sop, p in winners(ingest).items():
        status, body = hub.instance_file(sop)
        f = out / (sop + ".dcm")
        f.write_bytes(body)
        originals.append(p)
        stored.append(f)
    with ThreadPoolExecutor(2) as pool:
        dumps_o, dumps_s = pool.map(dcmdump_datasets, [originals, stored])
    problems = []
    for p, orig, got in zip(originals, dumps_o, dumps_s):
        if not got:
            problems.append(f"{c.rel(p)}: dcmdump cannot read the stored file")
        elif orig != got:
            d = next(k for k in range(max(len(orig), len(got)))
                     if k >= len(orig) or k >= len(got) or orig[k] != got[k])
            problems.append(f"{c.rel(p)}: line {d}: {orig[d] if d < len(orig) else None!r} "
                            f"vs {got[d] if d < len(got) else None!r}")
    assert not problems, "\n".join(problems)


def expected_studies(ingest):
    """Per Study Instance UID, from pydicom and the store's rules: first
    stored wins; a later copy with the same bytes sent is a duplicate, with
    other bytes a conflict (counted once per distinct content, in the
    conflicting copy's study)."""
    c = ingest["corpus"]
    w = winners(ingest)
    exp = {}
    for sop, p in w.items():
        i = c.info[p]
        e = exp.setdefault(i["study"], {"patient": i["patient"], "modalities": set(), "series": set(),
                                        "instances": 0, "conflicts": 0, "sops": set()})
        e["series"].add(i["series"])
        e["instances"] += 1
        e["sops"].add(sop)
        if i["modality"]:
            e["modalities"].add(i["modality"])
    first_digest = {sop: hashlib.sha256(split_part10(ingest["sent"][0][sop].read_bytes())[1]).digest() for sop in w}
    conflicts, duplicates = set(), []
    for k, (r, _) in enumerate(ingest["runs"]):
        if k == 0:
            continue
        for p in c.batches[k]:
            res = r.results.get(str(p))
            if not (res and res[0][1]):
                continue
            i = c.info[p]
            dg = hashlib.sha256(split_part10(ingest["sent"][k][i["sop"]].read_bytes())[1]).digest()
            if dg == first_digest[i["sop"]]:
                duplicates.append(p)
            elif (i["sop"], dg) not in conflicts:
                conflicts.add((i["sop"], dg))
                if i["study"] in exp:
                    exp[i["study"]]["conflicts"] += 1
    return exp, conflicts, duplicates


def test_study_api_lists_what_was_sent(ingest):
    hub = ingest["hub"]
    exp, conflicts, _ = expected_studies(ingest)
    assert len(conflicts) >= 5, "the corpus's copies under one UID should give several conflicts"
    listed = {attr(s, "0020000D"): s for s in hub.studies()}
    assert set(listed) == set(exp)
    problems = []
    for uid, e in exp.items():
        s = listed[uid]
        got = {"patient": attr(s, "00100020", ""), "modalities": set(s.get("00080061", {}).get("Value", [])),
               "series": attr(s, "00201206"), "instances": attr(s, "00201208"),
               "conflicts": s["dxhub"]["conflicts"], "state": s["dxhub"]["state"]}
        want = {"patient": e["patient"], "modalities": e["modalities"], "series": len(e["series"]),
                "instances": e["instances"], "conflicts": e["conflicts"], "state": "receiving"}
        if got != want:
            problems.append(f"study {uid}: API {got}, expected {want}")
            continue
        d = hub.study(uid)
        insts = detail_instances(d)
        if {x["dxhub"]["sop_instance_uid"] for x in insts} != e["sops"] or len(insts) != e["instances"]:
            problems.append(f"study {uid}: detail lists {len(insts)} instances, expected {e['instances']}")
        if len(d["series"]) != len(e["series"]):
            problems.append(f"study {uid}: detail lists {len(d['series'])} series, expected {len(e['series'])}")
    assert not problems, "\n".join(problems)


def test_instance_records_match_the_bytes(ingest):
    """dxhub.size, digest (SHA-256 of the data set as received) and
    transfer_syntax of every instance in the study details."""
    c, hub = ingest["corpus"], ingest["hub"]
    w = winners(ingest)
    by_study = {}
    for sop, p in w.items():
        by_study.setdefault(c.info[p]["study"], []).append(sop)
    problems = []
    for study, sops in by_study.items():
        for x in detail_instances(hub.study(study)):
            sop = x["dxhub"]["sop_instance_uid"]
            status, body = hub.instance_file(sop)
            dg = hashlib.sha256(split_part10(body)[1]).hexdigest()
            want = (len(body), dg, c.info[w[sop]]["ts"], False)
            got = (x["dxhub"]["size"], x["dxhub"]["digest"], x["dxhub"]["transfer_syntax"], x["dxhub"]["conflict"])
            if got != want:
                problems.append(f"{c.rel(w[sop])}: {got} != {want}")
    assert not problems, "\n".join(problems)


def test_conflicts_keep_the_first_copy(ingest):
    """Every later copy got Success; the API still returns the first
    copy's bytes; the store counted each conflicting content once."""
    hub = ingest["hub"]
    exp, conflicts, duplicates = expected_studies(ingest)
    w = winners(ingest)
    oracle = ingest["sent"][0]
    for sop, _ in conflicts:
        status, body = hub.instance_file(sop)
        assert status == 200 and split_part10(body)[1] == split_part10(oracle[sop].read_bytes())[1], \
            f"{sop}: the stored bytes are not the first copy's"
    m = hub.metrics()
    assert m['dxhub_store_results_total{result="conflict"}'] >= len(conflicts)
    assert m["dxhub_conflicts"] == len(conflicts)
    assert m["dxhub_instances"] == len(w)


def test_api_lists_each_conflicting_copy(ingest):
    """GET /api/v1/instances/{uid}/conflicts gives the copy kept and every
    other content received under the UID (digest of the data set sent, a
    size that holds it); the kept instance's entry in its study detail lists the same
    digests; an instance without conflicts lists none; an unknown UID is
    404."""
    hub, c = ingest["hub"], ingest["corpus"]
    _, conflicts, _ = expected_studies(ingest)
    w = winners(ingest)
    oracle = ingest["sent"][0]
    want = {}  # SOP UID -> {digest hex: bytes of the data set sent}
    for k, (r, _) in enumerate(ingest["runs"]):
        for p in c.batches[k] if k else []:
            sop = c.info[p]["sop"]
            f = ingest["sent"][k].get(sop)
            if f is None:
                continue
            ds = split_part10(f.read_bytes())[1]
            dg = hashlib.sha256(ds).hexdigest()
            if (sop, bytes.fromhex(dg)) in conflicts:
                want.setdefault(sop, {})[dg] = len(ds)
    assert want and sum(len(v) for v in want.values()) == len(conflicts)
    for sop, copies in want.items():
        j = hub.get_json(f"/api/v1/instances/{sop}/conflicts")
        kept = hashlib.sha256(split_part10(oracle[sop].read_bytes())[1]).hexdigest()
        assert j["sop_instance_uid"] == sop and j["kept"]["digest"] == kept and not j["kept"]["conflict"], j
        got = {x["digest"]: x for x in j["conflicts"]}
        assert set(got) == set(copies), (sop, j)
        for dg, x in got.items():
            assert x["conflict"] is True and x["sop_instance_uid"] == sop and x["size"] > copies[dg], x
        study = c.info[w[sop]]["study"]
        entry = next(x["dxhub"] for x in detail_instances(hub.study(study)) if x["dxhub"]["sop_instance_uid"] == sop)
        assert sorted(x["digest"] for x in entry["conflicts"]) == sorted(copies), entry
    plain = next(sop for sop in w if sop not in want)
    j = hub.get_json(f"/api/v1/instances/{plain}/conflicts")
    assert j["kept"]["sop_instance_uid"] == plain and j["conflicts"] == []
    study = c.info[w[plain]]["study"]
    entry = next(x["dxhub"] for x in detail_instances(hub.study(study)) if x["dxhub"]["sop_instance_uid"] == plain)
    assert "conflicts" not in entry
    assert hub.get_json("/api/v1/instances/1.2.3.999999/conflicts", expect=404)["error"] == "no such instance"
    assert hub.get_json("/api/v1/instances/not-a-uid/conflicts", expect=400)["parameter"] == "SOPInstanceUID"
