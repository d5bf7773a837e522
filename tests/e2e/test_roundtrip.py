"""`dxhub transcode` on every corpus DICOM file, checked with pydicom and
dcmdump: the same transfer syntax gives the same elements (odd lengths
padded, PS3.5 §7.1.1), a well-formed File Meta Information with our
Implementation Class UID; native files also go through every other native
syntax and back.
"""
import re
import struct

import numpy as np
import pydicom
import pytest
from pydicom.dataelem import DataElement_from_raw

from conftest import REPO, corpus_dicom_files, rel, run, run_many, split_dcmdump

# Our Implementation Class UID, as the library defines it.
IMPLEMENTATION_CLASS_UID = re.search(r'#define DXHUB_IMPLEMENTATION_CLASS_UID "([0-9.]+)"',
                                     (REPO / "codecs" / "codecs.h").read_text()).group(1)
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
NATIVE = [IMPLICIT_LE, EXPLICIT_LE, DEFLATED_LE, EXPLICIT_BE]
DCMCONV_TS = {IMPLICIT_LE: "+ti", EXPLICIT_LE: "+te", DEFLATED_LE: "+td", EXPLICIT_BE: "+tb"}

# Files dxhub cannot rewrite, on purpose: exit 2 and one stderr line that
# names the input and the reason.
REFUSED = {
    # A DICOMDIR's records hold byte offsets into its own file; dxhub refuses
    # to rewrite one rather than write a directory that no longer reads.
    "dicom/odd/DICOMDIR": "DICOMDIR (record offsets)",
    "dicom/odd/MR_truncated.dcm": "truncated (see test_dump_json)",
    "dicom/odd/rtplan_truncated.dcm": "truncated (see test_dump_json)",
    "dicom/odd/no_meta.dcm": "no DICOM data set (see test_dump_json)",
    # No SOP Class UID and/or SOP Instance UID in the dataset or the meta:
    # PS3.10 7.1 makes (0002,0002) and (0002,0003) Type 1, and dxhub does
    # not invent UIDs (DCMTK's dcmconv makes up new ones).
    "dicom/odd/meta_missing_tsyntax.dcm": "no SOP Class/Instance UID",
    "dicom/odd/nested_priv_SQ.dcm": "no SOP Class/Instance UID",
    "dicom/odd/empty_charset_LEI.dcm": "no SOP Class/Instance UID",
    "dicom/jpegls_near_81/JLSN_RGB_ILV0.dcm": "no SOP Instance UID",
    "dicom/jpegls_lossless_80/JLSL_RGB_ILV0.dcm": "no SOP Instance UID",
}


def read(path):
    return pydicom.dcmread(str(path), force=True)


def ts_of(ds):
    """The transfer syntax pydicom read the dataset with."""
    meta = getattr(ds, "file_meta", None)
    uid = str(getattr(meta, "TransferSyntaxUID", "") or "") if meta is not None else ""
    if uid:
        return uid
    if ds.is_implicit_VR:
        return IMPLICIT_LE
    return EXPLICIT_LE if ds.is_little_endian else EXPLICIT_BE


BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"} | {"US", "SS", "UL", "SL", "FL", "FD", "AT", "SV", "UV"}
# Bytes per value of the VRs whose values change with the byte order.
SWAP_WORD = {"US": 2, "SS": 2, "OW": 2, "AT": 2, "UL": 4, "SL": 4, "FL": 4, "OF": 4, "OL": 4,
             "FD": 8, "OD": 8, "SV": 8, "UV": 8, "OV": 8}


def swap(b, word):
    n = len(b) - len(b) % word
    return np.frombuffer(b[:n], dtype=np.uint8).reshape(-1, word)[:, ::-1].tobytes() + b[n:]


def same_bytes(a, b):
    """Equal, or b is a padded to even length (PS3.5 7.1.1: NUL or space)."""
    return a == b or (len(a) % 2 == 1 and len(b) == len(a) + 1 and b[:-1] == a and b[-1:] in (b"\0", b" "))


class Side:
    """One file read lazily by pydicom: elements stay raw (bytes as stored,
    VR as encoded, None in implicit VR) until a sequence is opened."""

    def __init__(self, path):
        self.ds = read(path)
        self.be = not self.ds.is_little_endian
        self.implicit = self.ds.is_implicit_VR

    def le_value(self, ds, tag):
        """(encoded VR, value bytes in little endian) of a non-sequence element.
        UN values are little endian whatever the syntax (PS3.5 6.2.2)."""
        raw = ds.get_item(tag)
        vr, v = raw.VR, raw.value
        if not isinstance(raw, tuple):  # decoded while reading (Specific Character Set)
            if raw.is_empty:
                v = b""
            elif isinstance(v, str) or raw.VM > 1:
                v = "\\".join(v if raw.VM > 1 else [v]).encode("ascii")
                v += b" " * (len(v) % 2)
        if v is None:
            v = b""
        if not isinstance(v, bytes):
            raise AssertionError(f"{tag}: pydicom gives no bytes ({type(v).__name__})")
        if self.be and vr in SWAP_WORD:
            v = swap(v, SWAP_WORD[vr])
        return (None if self.implicit else vr), v


def is_sequence(ds, tag):
    """Whether pydicom reads the element as a sequence, without decoding a
    non-sequence element in ds (its raw bytes are compared)."""
    raw = ds.get_item(tag)
    if not isinstance(raw, tuple):
        return raw.VR == "SQ"
    if raw.VR in (None, "UN"):
        try:
            return DataElement_from_raw(raw, dataset=ds).VR == "SQ"
        except Exception:  # noqa: BLE001 - not decodable: not a sequence
            return False
    return raw.VR == "SQ"


def vr_compatible(tag, va, vb):
    """Encoded VRs agree: equal, or one side has none (implicit VR) or UN
    (unknown, PS3.5 6.2.2), or both are allowed by the dictionary ("OB or OW",
    "US or SS"...)."""
    if va == vb or None in (va, vb) or "UN" in (va, vb):
        return True
    try:
        allowed = pydicom.datadict.dictionary_VR(tag)
    except KeyError:
        return False
    return va in allowed and vb in allowed


def same_text(a, b):
    """Text values equal up to trailing padding (PS3.5 6.2: not significant)."""
    return a.rstrip(b" \0") == b.rstrip(b" \0")


def compare(sa, sb, a, b, where, diffs, skip_group_lengths, lenient=False):
    """Element-for-element equality of the datasets a (of side sa) and b
    (of side sb), recursively: same tags, compatible VRs, the same value
    bytes once both are in little endian (padding aside)."""
    ta, tb = set(a.keys()), set(b.keys())
    if skip_group_lengths:
        # Group lengths (gggg,0000) other than the meta's are retired (PS3.5
        # 7.2) and wrong once re-encoded: dxhub drops them when it re-encodes.
        ta = {t for t in ta if t.element != 0}
        tb = {t for t in tb if t.element != 0}
    for t in sorted(ta ^ tb):
        diffs.append(f"{where}{t}: only in {'input' if t in ta else 'output'}")
    for t in sorted(ta & tb):
        here = f"{where}{t}"
        qa, qb = is_sequence(a, t), is_sequence(b, t)
        if qa != qb:
            diffs.append(f"{here}: {'a sequence' if qa else 'no sequence'} became {'a sequence' if qb else 'no sequence'}")
            continue
        if qa:
            ia, ib = a[t].value, b[t].value
            if len(ia) != len(ib):
                diffs.append(f"{here}: {len(ia)} items became {len(ib)}")
                continue
            for k, (xa, xb) in enumerate(zip(ia, ib)):
                compare(sa, sb, xa, xb, f"{here}[{k}].", diffs, skip_group_lengths, lenient)
            continue
        try:
            (va, ba), (vb, bb) = sa.le_value(a, t), sb.le_value(b, t)
        except AssertionError as e:
            diffs.append(f"{here}: {e}")
            continue
        if not vr_compatible(t, va, vb):
            diffs.append(f"{here}: VR {va} became {vb}")
        elif not same_bytes(ba, bb) and not (lenient and (va or vb) not in BINARY_VRS and same_text(ba, bb)):
            diffs.append(f"{here} {va or vb}: {len(ba)} bytes {ba[:16]!r}.. became {len(bb)} bytes {bb[:16]!r}..")


def assert_same_dataset(in_path, out_path, name, reencoded=False, lenient=False, decode=True):
    """lenient: text values may differ in trailing padding (DCMTK trims it).
    decode: also have pydicom decode every element and the pixels."""
    sa = Side(in_path)
    try:
        sb = Side(out_path)
    except Exception as e:  # noqa: BLE001 - pydicom's failure is the finding
        hint = ""
        if str(sa.ds.get("SOPClassUID", "")) == "1.2.840.10008.1.3.10":
            hint = (" (a DICOMDIR: its record offsets (0004,1200/1202/1400/1420) are byte offsets"
                    " in the file and must follow the records when the file is rewritten)")
        raise AssertionError(f"{name}: pydicom cannot read the output: {e!r}{hint}") from e
    diffs = []
    compare(sa, sb, sa.ds, sb.ds, "", diffs, reencoded, lenient)
    assert not diffs, f"{name}: {len(diffs)} elements differ:\n  " + "\n  ".join(diffs[:30])
    if not decode:
        return
    # pydicom decodes every element of the output.
    for elem in read(out_path).iterall():
        elem.value  # noqa: B018 - decoding is the check
    # Pixels: the same array (pydicom's BE decoding is right for > 8 bits only).
    a = read(in_path)
    # pydicom decodes big endian OW correctly for 16-bit samples only: OW is
    # swapped per 16-bit word (PS3.5 7.3, and DCMTK's dcmconv agrees), which
    # pydicom reads back wrongly for 8- and 32-bit samples.  Files whose
    # attributes pydicom cannot use for pixels (badVR) are compared as bytes
    # above only.
    if reencoded and "PixelData" in a and a.get("BitsAllocated", 0) == 16:
        try:
            want = a.pixel_array
        except Exception:  # noqa: BLE001 - the oracle cannot decode the input
            return
        b = read(out_path)
        assert np.array_equal(want, b.pixel_array), f"{name}: pixel arrays differ"


def parse_meta(path):
    """File Meta Information (explicit VR LE, PS3.10 7.1) read by hand:
    {tag: value bytes}, the group length value and the bytes it should count."""
    data = open(path, "rb").read()
    assert data[128:132] == b"DICM", "no preamble + DICM prefix"
    pos, elems, start_after_gl, end = 132, {}, None, None
    while pos + 8 <= len(data):
        group, elem = struct.unpack_from("<HH", data, pos)
        if group != 2:
            break
        vr = data[pos + 4: pos + 6].decode("ascii")
        if vr in ("OB", "OW", "OF", "SQ", "UT", "UN", "UC", "UR", "OD", "OL", "OV", "SV", "UV"):
            (length,) = struct.unpack_from("<I", data, pos + 8)
            hdr = 12
        else:
            (length,) = struct.unpack_from("<H", data, pos + 6)
            hdr = 8
        elems[(group << 16) | elem] = data[pos + hdr: pos + hdr + length]
        pos += hdr + length
        if elem == 0:
            start_after_gl = pos
        end = pos
    assert 0x00020000 in elems, "no (0002,0000) group length"
    (gl,) = struct.unpack("<I", elems[0x00020000])
    return elems, gl, end - start_after_gl


def ui(b):
    return b.rstrip(b"\0 ").decode("ascii")


def assert_meta(out_path, ts, ds_in):
    elems, gl, counted = parse_meta(out_path)
    assert gl == counted, f"(0002,0000) says {gl} bytes, the meta group has {counted}"
    assert ui(elems.get(0x00020012, b"")) == IMPLEMENTATION_CLASS_UID, "(0002,0012) is not our Implementation Class UID"
    assert ui(elems.get(0x00020010, b"")) == ts, "(0002,0010) is not the transfer syntax asked for"
    assert elems.get(0x00020001) == b"\0\1", "(0002,0001) File Meta Information Version is not 00\\01"
    sop_class = str(ds_in.get("SOPClassUID", "") or ds_in.file_meta.get("MediaStorageSOPClassUID", ""))
    sop_inst = str(ds_in.get("SOPInstanceUID", "") or ds_in.file_meta.get("MediaStorageSOPInstanceUID", ""))
    # PS3.10 7.1: the meta identifies the SOP Instance in the file, so the
    # dataset's SOP Class/Instance UIDs win over a stale input meta (as
    # DCMTK's dcmconv does).
    got = ui(elems.get(0x00020002, b""))
    assert got == sop_class, f"(0002,0002) is {got}, the dataset's SOP Class UID is {sop_class}"
    got = ui(elems.get(0x00020003, b""))
    assert got == sop_inst, f"(0002,0003) is {got}, the dataset's SOP Instance UID is {sop_inst}"


DUMP_LINE = re.compile(r"^(\s*\([0-9a-f]{4},[0-9a-f]{4}\) \S\S )(.*?)\s*#\s*(\S+),\s*(\d+)\s+(.*)$")


DCMDUMP = ["dcmdump", "+L", "-M", "+R", "4"]  # long values not loaded (pixel data); errors on stderr


def dataset_lines(r, path):
    """The dataset lines of a dcmdump run on path."""
    assert r.returncode == 0, f"dcmdump cannot read {path}: {r.stderr.decode(errors='replace')}"
    text = r.stdout.decode("utf-8", "replace")
    assert "# Dicom-Data-Set" in text
    body = text.split("# Dicom-Data-Set", 1)[1].splitlines()
    return [ln for ln in body if ln.strip() and not ln.startswith("#")]


LINE_TAG = re.compile(r"^(\s*)\(([0-9a-f]{4},[0-9a-f]{4})\) (\S\S)")


def decoded_un_sequences(a, b):
    """Drop, from the input's and output's dcmdump lines, the elements the
    input encodes as UN and the output as SQ: dxhub writes a UN element whose
    content is a sequence as the SQ it is (PS3.5 6.2.2; the element values are
    compared with pydicom, which decodes the UN sequence too)."""
    def parse(lines):
        return [(m.group(1), m.group(2), m.group(3)) if m else (None, None, None)
                for m in map(LINE_TAG.match, lines)]
    pa, pb = parse(a), parse(b)
    un = {(ind, tag) for ind, tag, vr in pa if vr == "UN"}
    sq = {(ind, tag) for ind, tag, vr in pb if vr == "SQ"} & un
    if not sq:
        return a, b
    a = [ln for ln, (ind, tag, _) in zip(a, pa) if (ind, tag) not in sq]
    keep, skip = [], None
    for ln, (ind, tag, _) in zip(b, pb):
        if skip is not None:
            if ind is not None and len(ind) > len(skip):
                continue
            if ind == skip and tag == "fffe,e0dd":
                continue
            skip = None
        if (ind, tag) in sq:
            skip = ind
            continue
        keep.append(ln)
    return a, keep


def same_dump_line(a, b):
    """Equal dcmdump lines, or the same element whose value was padded to an
    even length (length +1, a trailing pad shown as \\00 or a space)."""
    if a == b:
        return True
    ma, mb = DUMP_LINE.match(a), DUMP_LINE.match(b)
    if not (ma and mb) or (ma.group(1), ma.group(4), ma.group(5)) != (mb.group(1), mb.group(4), mb.group(5)):
        return False
    la, lb = ma.group(3), mb.group(3)
    if not (la.isdigit() and lb.isdigit() and int(la) % 2 == 1 and int(lb) == int(la) + 1):
        return False
    va, vb = ma.group(2), mb.group(2)
    return va == vb or vb in (va + "\\00", va.rstrip("]") + " ]") or vb.rstrip("\\00") == va


def transcode_args(dxhub, src, dst, ts=None):
    return [dxhub, "transcode"] + (["--ts", ts] if ts else []) + [src, dst]


def transcode(dxhub, src, dst, ts=None):
    return run(transcode_args(dxhub, src, dst, ts))


@pytest.fixture(scope="module")
def same_syntax(dxhub, tmp_path_factory):
    """Every corpus file transcoded in its own syntax, and dcmdump of input
    and output: processes run a few at a time up front."""
    d = tmp_path_factory.mktemp("same-syntax")
    files = [p for p, _ in corpus_dicom_files()]
    outs = [d / f"{k:03d}.dcm" for k in range(len(files))]
    runs = run_many([transcode_args(dxhub, p, o) for p, o in zip(files, outs)])
    din, dout = run_many([DCMDUMP + ["+F"] + files, DCMDUMP + ["+F"] + outs], timeout=300)
    din, dout = split_dcmdump(din, files), split_dcmdump(dout, outs)
    return {p: (outs[k], runs[k], din[p], dout[outs[k]]) for k, p in enumerate(files)}


def test_transcode_same_syntax(same_syntax, dicom_file):
    name = rel(dicom_file)
    out, r, dump_in, dump_out = same_syntax[dicom_file]
    err = r.stderr.decode("utf-8", "replace")
    if name in REFUSED:
        assert r.returncode == 2, f"{name}: refused with exit {r.returncode} (bad input is 2): {err}"
        lines = err.splitlines()
        assert len(lines) == 1 and str(dicom_file) in lines[0], f"one stderr line naming the input: {err!r}"
        assert not out.exists()
        return
    assert r.returncode == 0, f"dxhub transcode {name}: exit {r.returncode}: {err}"
    assert err == ""
    a, b = decoded_un_sequences(dataset_lines(dump_in, dicom_file), dataset_lines(dump_out, out))
    ds_in = read(dicom_file)
    assert_meta(out, ts_of(ds_in), ds_in)
    assert_same_dataset(dicom_file, out, name)
    diffs = [f"- {x}\n+ {y}" for x, y in zip(a, b) if not same_dump_line(x, y)]
    assert len(a) == len(b) and not diffs, \
        f"{name}: dcmdump shows {len(a)} vs {len(b)} lines; first differences:\n" + "\n".join(diffs[:10])


def native_files():
    """(path, id, transfer syntax) of the corpus files in a native syntax."""
    out = []
    for p, i in corpus_dicom_files():
        if i in REFUSED:
            continue
        try:
            ds = pydicom.dcmread(str(p), force=True, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - not readable by pydicom: not a candidate
            continue
        if ts_of(ds) in NATIVE:
            out.append((p, i, ts_of(ds)))
    return out


NATIVE_FILES = native_files()


@pytest.fixture(scope="module")
def native(dxhub, tmp_path_factory):
    """Each native file to each other native syntax (dxhub and DCMTK's
    dcmconv), then dxhub's output back to the original syntax."""
    d = tmp_path_factory.mktemp("native")
    jobs = [(p, orig, ts, d / f"{k:03d}-{ts}") for k, (p, _, orig) in enumerate(NATIVE_FILES)
            for ts in NATIVE if ts != orig]
    first = run_many([transcode_args(dxhub, p, f"{stem}.there.dcm", ts) for p, _, ts, stem in jobs]
                     + [["dcmconv", DCMCONV_TS[ts], p, f"{stem}.dcmconv.dcm"] for p, _, ts, stem in jobs])
    back = run_many([transcode_args(dxhub, f"{stem}.there.dcm", f"{stem}.back.dcm", orig)
                     for p, orig, ts, stem in jobs])
    n = len(jobs)
    res = {}
    for k, (p, orig, ts, stem) in enumerate(jobs):
        res.setdefault(p, []).append((ts, orig, stem, first[k], first[n + k], back[k]))
    return res


@pytest.mark.parametrize("native_file", [pytest.param(p, id=i) for p, i, _ in NATIVE_FILES])
def test_transcode_native_syntaxes(native, native_file):
    name = rel(native_file)
    ds_in = read(native_file)
    for ts, orig, stem, r_there, r_peer, r_back in native[native_file]:
        there, peer, back = (stem.with_name(f"{stem.name}.{x}.dcm") for x in ("there", "dcmconv", "back"))
        assert r_there.returncode == 0, \
            f"{name} -> {ts}: exit {r_there.returncode}: {r_there.stderr.decode(errors='replace')}"
        assert_meta(there, ts, ds_in)
        assert ts_of(read(there)) == ts
        assert_same_dataset(native_file, there, f"{name} -> {ts}", reencoded=True)
        # DCMTK's dcmconv, asked for the same syntax, writes the same dataset.
        if r_peer.returncode == 0:
            assert_same_dataset(peer, there, f"{name} -> {ts} (dxhub vs dcmconv)",
                                reencoded=True, lenient=True, decode=False)
        assert r_back.returncode == 0, \
            f"{name} -> {ts} -> {orig}: exit {r_back.returncode}: {r_back.stderr.decode(errors='replace')}"
        assert_meta(back, orig, ds_in)
        assert_same_dataset(native_file, back, f"{name} -> {ts} -> back", reencoded=True, decode=False)


def rle_files():
    return [pytest.param(p, id=i) for p, i in corpus_dicom_files() if i.startswith("dicom/rle_5/")]


@pytest.mark.parametrize("rle_file", rle_files())
def test_transcode_rle_to_native(dxhub, rle_file, tmp):
    """Compressed to native: pydicom's own RLE decoder (numpy) is the oracle
    for the pixels; every other element is kept."""
    name = rel(rle_file)
    out = tmp / "out.dcm"
    r = transcode(dxhub, rle_file, out, EXPLICIT_LE)
    assert r.returncode == 0, f"{name}: exit {r.returncode}: {r.stderr.decode(errors='replace')}"
    a, b = read(rle_file), read(out)
    assert ts_of(b) == EXPLICIT_LE
    assert_meta(out, EXPLICIT_LE, a)
    assert np.array_equal(a.pixel_array, b.pixel_array), f"{name}: decoded pixels differ from pydicom's"
    sa, sb = Side(rle_file), Side(out)
    for s_ in (sa, sb):
        del s_.ds[0x7FE00010]
    diffs = []
    compare(sa, sb, sa.ds, sb.ds, "", diffs, True)
    assert not diffs, f"{name}: {len(diffs)} elements differ:\n  " + "\n  ".join(diffs[:30])


def test_transcode_unknown_syntax_is_usage_error(dxhub, corpus, tmp):
    r = transcode(dxhub, corpus / "dicom" / "explicit_le" / "CT_small.dcm", tmp / "o.dcm", "1.2.3")
    assert r.returncode == 2 and len(r.stderr.decode().splitlines()) == 1
    assert not (tmp / "o.dcm").exists()
