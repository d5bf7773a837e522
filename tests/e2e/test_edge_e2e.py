"""End to end through the clinic gateway: a modality (DCMTK's storescu) →
`dxhub edge` (C-STORE SCP, spool, JPEG-LS for the link) → CURVE/ZeroMQ →
`dxhub serve` → the hub's HTTP API.

What this proves, for every corpus file that has a SOP class and instance
(dicom/** and ecg/dicom/*):

- the edge accepts it from storescu (-R: only the file's own presentation
  context; compressed files are proposed in their own syntax so nothing is
  decompressed on the way in) — or, for the few files storescu itself cannot
  read, from `dxhub push`;
- it arrives at the hub exactly once (one instance per SOP Instance UID,
  the spool empty afterwards);
- the hub's stored file decodes to exactly the original pixels: native
  originals were JPEG-LS-compressed (or deflated, for shapes JPEG-LS cannot
  hold) by the edge and are decoded by pydicom+GDCM, with DCMTK's dcmdjpls
  as the oracle where GDCM cannot; encapsulated originals travel as they are,
  so their Pixel Data bytes (every fragment) must be identical;
- its data set is the original's except for what lossless transcoding is
  allowed to change (EXCEPTIONS below, each with its reason);
- the hub's digest (dxhub.digest in the study API) is the SHA-256 of the
  data set bytes it serves, i.e. what the edge offered (the hub refuses a
  COMMIT whose bytes do not hash to the offered digest).

The corpus reuses SOP Instance UIDs across files (the same image in several
syntaxes); a hub keeps a second copy with the same UID apart as a conflict,
so files are spread over a few hub+edge pairs ("rounds") in which every UID
is unique.  They run side by side.

`dxhub push --priority stat --referral --note` is checked separately: the
study arrives with its priority, referral flag and note, complete at once
by the study marker (the hub's quiet-time completion is set to 10 minutes).
"""
import collections
import os
import re
import shutil
import subprocess
import hashlib
import struct
import threading
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from edgeutil import Edge, Hub, allow, corpus_root, dxhub_bin, run, storescu, study_instances, wait_for

warnings.filterwarnings("ignore")

EXPLICIT_LE = "1.2.840.10008.1.2.1"
NATIVE = {"1.2.840.10008.1.2", EXPLICIT_LE, "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}
JLS = "1.2.840.10008.1.2.4.80"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"

# storescu's own option proposing a compressed syntax (with -R: only the
# file's context).  Syntaxes DCMTK's storescu has no option for are proposed
# through a generated configuration file (-xf; storescu forbids -R with it).
STORESCU_TS_OPTION = {
    "1.2.840.10008.1.2": [], EXPLICIT_LE: [], "1.2.840.10008.1.2.2": [],
    DEFLATED_LE: ["-xd"], "1.2.840.10008.1.2.4.50": ["-xy"], "1.2.840.10008.1.2.4.51": ["-xx"],
    "1.2.840.10008.1.2.4.70": ["-xs"], JLS: ["-xt"], "1.2.840.10008.1.2.4.81": ["-xu"],
    "1.2.840.10008.1.2.4.90": ["-xv"], "1.2.840.10008.1.2.4.91": ["-xw"], "1.2.840.10008.1.2.5": ["-xr"],
}

# Attributes that may legitimately differ between the original and the
# hub's copy, and why:
#   (0028,0006) PlanarConfiguration — JPEG-LS and the other compressed
#       syntaxes carry colour interleaved; the edge writes 0 for a
#       colour-by-plane (1) native original.
#   (0028,0004) PhotometricInterpretation — only YBR_FULL_422 → YBR_FULL:
#       native YBR_FULL_422 is stored subsampled; the JPEG-LS encoder takes
#       the upsampled (full) samples, which is what pydicom decodes the
#       original to as well.
#   (0008,2111) DerivationDescription / (0028,2110) LossyImageCompression —
#       must NOT change (lossless): not exceptions, listed to say so.
#   File Meta Information (group 0002) — not part of the data set a C-STORE
#       carries: every receiver writes its own (Implementation Class UID,
#       Source AE, Transfer Syntax); only MediaStorageSOPClassUID and
#       MediaStorageSOPInstanceUID are compared.
#   Group lengths (gggg,0000) — retired outside group 0002; writers drop them.
#   Data set trailing padding (FFFC,FFFC) — not an attribute; writers drop it.
PLANAR, PHOTOMETRIC = 0x00280006, 0x00280004

N_EDGE_START_TIMEOUT = 20


def read(path, **kw):
    ds = pydicom.dcmread(str(path), force=True, **kw)
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" not in meta:
        meta.TransferSyntaxUID = "1.2.840.10008.1.2" if ds.is_implicit_VR else (
            EXPLICIT_LE if ds.is_little_endian else "1.2.840.10008.1.2.2")
    return ds


def corpus_plan():
    """[(path, id, sop uid, sop class, transfer syntax)] of every corpus file
    pydicom finds a SOP class, a SOP Instance UID and a Study Instance UID in
    (DICOMDIR excluded: a media directory, not an instance), plus [(path, id)]
    of files that have a SOP class but lack one of those UIDs (Type 1: the
    edge has nothing to file them under and must refuse them, saying why)."""
    root = corpus_root()
    files = sorted([p for p in (root / "dicom").rglob("*") if p.is_file()] +
                   [p for p in (root / "ecg" / "dicom").iterdir() if p.is_file()])
    plan, no_uid = [], []
    for p in files:
        try:
            ds = read(p, stop_before_pixels=True)
            cls, sop, study = ds.get("SOPClassUID"), ds.get("SOPInstanceUID"), ds.get("StudyInstanceUID")
            ts = str(ds.file_meta.TransferSyntaxUID) if "TransferSyntaxUID" in ds.file_meta else ""
        except Exception:
            continue
        ident = p.relative_to(root).as_posix()
        if not cls or str(cls) == MEDIA_STORAGE_DIRECTORY:
            continue
        if not sop or not study:
            no_uid.append((p, ident))
            continue
        plan.append((p, ident, str(sop), str(cls), ts))
    return plan, no_uid


PLAN, NO_UID = corpus_plan()


def storescu_config(tmp, ts, classes):
    """A storescu configuration proposing exactly `ts` for each SOP class."""
    lines = ["[[TransferSyntaxes]]", "[TS]", f"TransferSyntax1 = {ts}", "", "[[PresentationContexts]]", "[PC]"]
    for i, c in enumerate(sorted(classes), 1):
        lines.append(f"PresentationContext{i} = {c}\\TS")
    lines += ["", "[[Profiles]]", "[P]", "PresentationContexts = PC", ""]
    p = Path(tmp) / f"storescu-{ts}.cfg"
    p.write_text("\n".join(lines))
    return p


def send_round(edge, items, tmp):
    """storescu each transfer-syntax group of items to the edge; files storescu
    cannot read go through `dxhub push`.  Returns {path: how} for the files the
    edge acknowledged ("storescu" or "push") and {path: why} for the others."""
    groups = collections.defaultdict(list)
    for p, _, _, cls, ts in items:
        groups[ts].append((p, cls))
    acked, refused = {}, {}
    for ts, group in groups.items():
        paths = [p for p, _ in group]
        if ts in STORESCU_TS_OPTION:
            ok, r = storescu("127.0.0.1", edge.dicom_port, paths, extra=STORESCU_TS_OPTION[ts])
        else:
            cfg = storescu_config(tmp, ts or EXPLICIT_LE, {c for _, c in group})
            ok, r = storescu("127.0.0.1", edge.dicom_port, paths, extra=["-xf", cfg, "P"], required=False)
        text = (r.stdout + r.stderr).decode("utf-8", "replace")
        for p in paths:
            if ok[str(p)]:
                acked[p] = "storescu"
            elif f"in file: {p}, ignoring file" in text or f"Unsupported transfer syntax: {ts}" in text:
                # storescu cannot read it (odd files), or DCMTK 3.6.7 has no
                # network support for its syntax (HTJ2K, Deflated Image Frame
                # Compression): the clinic would drop it in the watch folder
                # or push it
                rc, queued, out = edge.push([p])
                if queued:
                    acked[p] = "push"
                else:
                    refused[p] = out.strip()
            else:
                refused[p] = "storescu: " + "\n".join(l for l in text.splitlines() if str(p) in l or l.startswith("E:"))
    return acked, refused


class Round:
    def __init__(self, k, base):
        self.k = k
        self.dir = base / f"round{k}"
        self.dir.mkdir()
        self.hub = Hub(self.dir / "hub", self.dir, stable_seconds=600)
        (self.dir / "hub" / "keys").mkdir(parents=True)
        self.edge = Edge(self.dir / "edge", self.hub.endpoint, self.hub.key_file, self.dir)
        allow(self.hub.keys_dir, f"edge:clinic{k}", self.edge.make_key())
        self.items, self.acked, self.refused = [], {}, {}


@pytest.fixture(scope="module")
def delivered(tmp_path_factory):
    base = tmp_path_factory.mktemp("edge_e2e")
    seen = collections.Counter()
    rounds = {}
    for item in PLAN:
        k = seen[item[2]]
        seen[item[2]] += 1
        if k not in rounds:
            rounds[k] = Round(k, base)
        rounds[k].items.append(item)
    try:
        for r in rounds.values():
            r.hub.start()
        for r in rounds.values():
            r.edge.start(N_EDGE_START_TIMEOUT)

        def go(r):
            r.acked, r.refused = send_round(r.edge, r.items, r.dir)

        threads = [threading.Thread(target=go, args=(r,)) for r in rounds.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for r in rounds.values():
            wait_for(r.edge.drained, 60, what=f"round {r.k}: the edge's spool to empty\n{r.edge.status_text()}")
        yield rounds, base
    finally:
        for r in rounds.values():
            r.edge.stop()
            r.hub.stop()


def test_every_file_with_a_sop_class_is_acknowledged_by_the_edge(delivered):
    rounds, _ = delivered
    refused = {str(p): why for r in rounds.values() for p, why in r.refused.items()}
    # The corpus files the edge must refuse, saying why: cut short.
    expected_refusals = {"dicom/odd/MR_truncated.dcm", "dicom/odd/rtplan_truncated.dcm"}
    root = corpus_root()
    unexpected = {k: v for k, v in refused.items() if Path(k).relative_to(root).as_posix() not in expected_refusals}
    assert not unexpected, "\n".join(f"{k}: {v}" for k, v in unexpected.items())
    acked = sum(len(r.acked) for r in rounds.values())
    assert acked >= len(PLAN) - len(expected_refusals)
    via_push = sorted(Path(p).relative_to(root).as_posix() for r in rounds.values() for p, h in r.acked.items()
                      if h == "push")
    # storescu must carry the overwhelming majority; push only what storescu cannot read
    assert len(via_push) <= 10, via_push


def test_truncated_files_are_refused_with_a_reason(delivered):
    rounds, _ = delivered
    root = corpus_root()
    why = {Path(p).relative_to(root).as_posix(): w for r in rounds.values() for p, w in r.refused.items()}
    assert "exceeds" in why["dicom/odd/rtplan_truncated.dcm"], why
    assert "(7FE0,0010)" in why["dicom/odd/MR_truncated.dcm"] and "exceeds" in why["dicom/odd/MR_truncated.dcm"], why


def test_files_without_instance_or_study_uid_are_refused_with_a_reason(delivered):
    rounds, _ = delivered
    edge = rounds[0].edge
    assert NO_UID, "the corpus has such files (JLSL_RGB_ILV0, JLSL_08_07_0_1F ...)"
    for p, ident in NO_UID:
        rc, queued, out = edge.push([p])
        assert rc == 2 and not queued, (ident, out)
        assert re.search(r"(SOP|Study) .*Instance UID", out), (ident, out)
    # and from a modality: the C-STORE is answered with an error status, not Success
    ok, r = storescu("127.0.0.1", edge.dicom_port, [p for p, _ in NO_UID], extra=["-xt"])
    text = (r.stdout + r.stderr).decode("utf-8", "replace")
    assert not any(ok.values()), text
    assert "CannotUnderstand" in text or "ignoring file" in text, text


def test_a_file_with_a_uid_the_hub_would_refuse_is_refused_at_the_clinic(delivered, tmp_path):
    """Refused where the nurse sees it, not later at the hub: a UID of
    letters or bytes that are not ASCII (digits and dots: PS3.5 9.1)."""
    edge = delivered[0][0].edge
    src = corpus_root() / "dicom" / "explicit_le" / "CT_small.dcm"
    for name, uid in (("letters", "1.2.826.0.1.ABC"), ("spaces", "1.2.826.0.1 2")):
        ds = read(src)
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "2.25.4711" + str(len(name))
        p = tmp_path / f"{name}.dcm"
        ds.save_as(str(p))
        rc, queued, out = edge.push([p])
        assert rc == 2 and not queued, (name, out)
        assert "Series Instance UID (0020,000E) is not a valid UID" in out, (name, out)


def test_each_instance_is_at_the_hub_exactly_once_and_the_spool_is_empty(delivered):
    rounds, _ = delivered
    for r in rounds.values():
        sops = {sop for p, _, sop, _, _ in r.items if p in r.acked}
        studies = r.hub.studies()
        listed = collections.Counter()
        for st in studies:
            uid = st["0020000D"]["Value"][0]
            detail = r.hub.study(uid)
            for sop, d in study_instances(detail):
                listed[sop] += 1
                assert not d.get("conflict"), (sop, d)
        assert set(listed) == sops, (r.k, sorted(set(listed) ^ sops))
        assert all(n == 1 for n in listed.values()), [s for s, n in listed.items() if n != 1]
        assert sum(st["00201208"]["Value"][0] for st in studies) == len(sops)
        s = r.edge.status()
        assert s["waiting"] == 0 and s["refused"] == 0 and s["delivered"] == len(sops), s["text"]


# --- per file: pixels, metadata, digest ------------------------------------------

def dataset_offset(raw):
    """Where the data set starts in a Part 10 file (after the meta group)."""
    assert raw[128:132] == b"DICM"
    assert raw[132:136] == b"\x02\x00\x00\x00" and raw[136:138] == b"UL"
    (glen,) = struct.unpack("<I", raw[140:144])
    return 144 + glen


def normalise(ds, a):
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    spp = int(ds.get("SamplesPerPixel", 1))
    a = np.asarray(a).reshape(frames, int(ds.Rows), int(ds.Columns), spp)
    if a.dtype.kind == "f":
        return a
    a = a.astype(np.int64)
    ba = int(ds.BitsAllocated)
    bs = int(ds.get("BitsStored", ba) or ba)
    if 1 < bs < ba:
        a &= (1 << bs) - 1
        if int(ds.get("PixelRepresentation", 0)) == 1:
            s = 1 << (bs - 1)
            a = (a ^ s) - s
    return a


def frames_of(ds):
    try:
        return int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        return 1  # odd/badVR.dcm says "1A"; DCMTK and dxhub read 1


def decode(path, tmp, tag):
    """Pixels of a file: pydicom (GDCM for compressed data); where that
    fails, DCMTK's decompressor for the syntax, then pydicom on its output;
    finally dxhub's own decoder (`dxhub transcode` to Explicit VR LE)."""
    ds = read(path)
    ds.NumberOfFrames = frames_of(ds)
    try:
        return normalise(ds, ds.pixel_array), "pydicom"
    except Exception as e:
        first = e
    ts = str(ds.file_meta.TransferSyntaxUID)
    tool = {JLS: "dcmdjpls", "1.2.840.10008.1.2.4.81": "dcmdjpls", "1.2.840.10008.1.2.5": "dcmdrle"}.get(ts)
    if ts.startswith("1.2.840.10008.1.2.4.5") or ts.startswith("1.2.840.10008.1.2.4.7"):
        tool = "dcmdjpeg"
    out = Path(tmp) / f"{tag}-native.dcm"
    if tool:
        r = run([tool, path, out])
        if r.returncode == 0:
            d2 = read(out)
            d2.NumberOfFrames = frames_of(d2)
            return normalise(d2, d2.pixel_array), tool
    r = run([dxhub_bin(), "transcode", "--ts", EXPLICIT_LE, path, out])
    assert r.returncode == 0, f"no decoder could read {path}: pydicom said {first}; dxhub: {r.stderr.decode()}"
    d2 = read(out)
    d2.NumberOfFrames = frames_of(d2)
    return normalise(d2, d2.pixel_array), "dxhub transcode"


def fragments(ds):
    """The Pixel Data items of an encapsulated data set (offset table first)."""
    return _items(bytes(ds.PixelData))


def _items(b):
    """Split encapsulated Pixel Data into its items' values."""
    out, i = [], 0
    while i + 8 <= len(b):
        tag, n = struct.unpack("<II", b[i:i + 8])
        if tag == 0xE0DDFFFE:  # sequence delimiter
            break
        assert tag == 0xE000FFFE, f"not an item at {i}"
        out.append(b[i + 8:i + 8 + n])
        i += 8 + n
    return out


def element_map(ds):
    """{tag: (VR-insensitive comparable value)} of a data set, recursively."""
    out = {}
    for el in ds:
        t = int(el.tag)
        if el.tag.group == 0x0002 or el.tag.element == 0 or t in (0x7FE00010, 0xFFFCFFFC):
            continue
        if el.VR == "SQ":
            out[t] = ("SQ", tuple(tuple(sorted(element_map(item).items(), key=lambda kv: kv[0]))
                                  for item in el.value))
        else:
            v = el.value
            if isinstance(v, (bytes, bytearray)):
                v = bytes(v).rstrip(b"\x00 ")
            elif isinstance(v, (list, tuple, pydicom.multival.MultiValue)):
                v = tuple(str(x) for x in v)
            else:
                v = str(v).rstrip("\x00 ")
            out[t] = v
    return out


def hub_copy(rounds, path):
    for r in rounds.values():
        if path in r.acked:
            sop = next(sop for p, _, sop, _, _ in r.items if p == path)
            return r, sop
    return None, None


def in_scope():
    return [pytest.param(p, id=ident) for p, ident, _, _, _ in PLAN]


@pytest.mark.parametrize("path", in_scope())
def test_hub_copy_has_the_original_pixels_metadata_and_digest(delivered, path, tmp_path):
    rounds, _ = delivered
    r, sop = hub_copy(rounds, path)
    if r is None:
        pytest.skip("refused by the edge (checked above)")
    raw = r.hub.instance_file(sop)
    assert raw, f"the hub has no file for {sop}"
    got = tmp_path / "hub.dcm"
    got.write_bytes(raw)

    # digest: what the hub says it stored is the SHA-256 of the data set it serves
    orig = read(path)
    detail = dict(study_instances(r.hub.study(str(orig.StudyInstanceUID))))[sop]
    off = dataset_offset(raw)
    assert hashlib.sha256(raw[off:]).hexdigest() == detail["digest"]
    assert detail["source"].startswith("edge:clinic")

    hub = read(got)
    ts_in, ts_out = str(orig.file_meta.TransferSyntaxUID), str(hub.file_meta.TransferSyntaxUID)
    assert str(hub.file_meta.MediaStorageSOPInstanceUID) == sop
    assert str(hub.file_meta.MediaStorageSOPClassUID) == str(orig.SOPClassUID)

    has_pixels = "PixelData" in orig
    if has_pixels and ts_in not in NATIVE:
        # encapsulated: sent as it is, every fragment byte-identical
        assert ts_out == ts_in
        fa, fb = fragments(orig), fragments(hub)
        assert len(fa) == len(fb)
        for i, (x, y) in enumerate(zip(fa, fb)):
            # PS3.5 §A.4: an item has an even length; a writer pads an odd one
            assert x == y or (len(x) % 2 == 1 and y == x + b"\x00"), f"fragment {i} differs"
    elif has_pixels:
        # native: compressed losslessly for the link (JPEG-LS, or deflated
        # when JPEG-LS cannot hold the shape, e.g. 1-bit or 32-bit samples)
        assert ts_out in (JLS, DEFLATED_LE), ts_out
        a, how_a = decode(path, tmp_path, "orig")
        b, how_b = decode(got, tmp_path, "hub")
        assert a.shape == b.shape, (a.shape, b.shape, how_a, how_b)
        assert np.array_equal(a, b), f"pixels differ ({how_a} vs {how_b}): max |d| = {np.abs(a - b).max()}"
    else:
        assert ts_out in (DEFLATED_LE, ts_in, EXPLICIT_LE), ts_out

    # metadata: equal but for the documented exceptions
    ea, eb = element_map(orig), element_map(hub)
    allowed = set()
    if ts_out != ts_in:
        allowed.add(PLANAR)
        if str(orig.get("PhotometricInterpretation", "")) == "YBR_FULL_422":
            allowed.add(PHOTOMETRIC)
            assert str(hub.PhotometricInterpretation) == "YBR_FULL"
    diffs = sorted(t for t in set(ea) | set(eb) if ea.get(t) != eb.get(t) and t not in allowed)
    assert not diffs, "\n".join(f"({t >> 16:04X},{t & 0xFFFF:04X}) {ea.get(t)!r:.120} → {eb.get(t)!r:.120}"
                                for t in diffs)
    if PLANAR in ea and PLANAR in eb and ea[PLANAR] != eb[PLANAR]:
        assert str(eb[PLANAR]) == "0"


# --- push: priority, referral, note; complete at once by the marker ------------

def test_push_stat_referral_note_arrives_complete_with_its_flags(tmp_path):
    root = corpus_root()
    hub = Hub(tmp_path / "hub", tmp_path, stable_seconds=600)
    (tmp_path / "hub" / "keys").mkdir(parents=True)
    edge = Edge(tmp_path / "edge", hub.endpoint, hub.key_file, tmp_path)
    allow(hub.keys_dir, "edge:clinic9", edge.make_key())
    # a three-instance study: the same CT image under three instance UIDs
    study = "1.2.826.0.1.3680043.8.498.1"
    files = []
    for i in range(3):
        ds = read(root / "dicom" / "explicit_le" / "CT_small.dcm")
        ds.StudyInstanceUID = study
        ds.SOPInstanceUID = f"{study}.{i + 1}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = i + 1
        f = tmp_path / f"ct{i}.dcm"
        ds.save_as(f, write_like_original=True)
        files.append(f)
    note = "胸痛 2h, ST elevation V2-V4 — please read first"
    try:
        hub.start()
        rc, queued, out = edge.push(files, priority="stat", referral=True, note=note)
        assert rc == 0 and len(queued) == 3, out
        assert "queued as stat referral" in out
        edge.start()
        st = wait_for(lambda: (lambda s: s["study"] if s and s["study"]["dxhub"]["completed"] else None)(
            hub.study(study)), 30, what="the pushed study to be complete")
        # complete, and already past it when the hub queued its reading task
        assert st["dxhub"]["state"] in ("complete", "queued"), st["dxhub"]
        d = st["dxhub"]
        assert d["priority"] == "stat" and d["referral"] is True and d["expected"] == 3
        assert st["00201208"]["Value"][0] == 3
        wait_for(edge.drained, 20, what="the spool to empty")
        assert d["note"] == note
    finally:
        edge.stop()
        hub.stop()


def test_push_walks_a_folder_with_links_once_and_names_what_it_cannot_take(tmp_path):
    """A USB stick or a PACS export may hold a link back up its tree, two
    links to one file, or a FIFO: each file is queued once, the walk ends,
    and whatever is not taken is named, with exit status 2."""
    src = corpus_root() / "dicom" / "explicit_le" / "CT_small.dcm"
    top = tmp_path / "export"
    (top / "a").mkdir(parents=True)
    shutil.copy(src, top / "a" / "one.dcm")
    (top / "a" / "up").symlink_to("..")            # a loop
    (top / "again.dcm").symlink_to("a/one.dcm")    # the same file twice
    os.mkfifo(top / "a" / "pipe")                   # would block a reader
    r = subprocess.run([dxhub_bin(), "push", "--edge-data", tmp_path / "spool", "--quiet", top],
                       capture_output=True, timeout=60)
    out, err = r.stdout.decode(), r.stderr.decode()
    assert r.returncode == 2, (out, err)
    assert out.count("queued  ") == 1 and "1 file(s) queued" in out, out
    assert f"{top}/a/up: skipped, the same folder as one already taken (a link)" in err, err
    assert "again.dcm: skipped, the same file as one already taken (a link)" in err, err
    assert f"{top}/a/pipe: neither a file nor a folder" in err, err
    assert "1 path(s) could not be taken" in out, out
    # the folder held no gateway queue: a mistyped --edge-data is pointed out
    assert f"{tmp_path / 'spool'} held no gateway queue, so a new one was made there" in err, err
    r = subprocess.run([dxhub_bin(), "push", "--edge-data", tmp_path / "spool", "--quiet", top / "a" / "one.dcm"],
                       capture_output=True, timeout=60)
    assert r.returncode == 0 and b"held no gateway queue" not in r.stderr, r
