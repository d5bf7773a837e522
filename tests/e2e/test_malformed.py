"""Bad input to `dxhub dump` and `dxhub transcode`: every malformed file,
built here from a real corpus file, gets exit status 2 and exactly one line
on stderr naming the file, the byte offset and the reason (DESIGN.md 8-9);
nothing crashes, and the other files of the same command are still shown.
Also the command-line usage errors.
"""
import json
import os
import random
import re
import struct
from pathlib import Path

import pytest

from conftest import run

SOURCE = ("dicom", "explicit_le", "CT_small.dcm")
LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"}


@pytest.fixture(scope="module")
def source(corpus):
    return corpus.joinpath(*SOURCE)


@pytest.fixture(scope="module")
def layout(source):
    """The bytes of the source file and its top-level elements, walked by
    hand (explicit VR little endian): [(tag, vr, header offset, value offset, length)]."""
    data = source.read_bytes()
    assert data[128:132] == b"DICM"
    pos, elems = 132, []
    while pos < len(data):
        group, elem = struct.unpack_from("<HH", data, pos)
        vr = data[pos + 4: pos + 6]
        if vr in LONG_VRS:
            (length,) = struct.unpack_from("<I", data, pos + 8)
            hdr = 12
        else:
            (length,) = struct.unpack_from("<H", data, pos + 6)
            hdr = 8
        assert length != 0xFFFFFFFF, "the walker needs defined lengths"
        elems.append(((group << 16) | elem, vr.decode(), pos, pos + hdr, length))
        pos += hdr + length
    return data, elems


def find(elems, tag):
    return next(e for e in elems if e[0] == tag)


def check_rejected(dxhub, path, *, offset=True, json_mode=False):
    """dxhub dump rejects path: exit 2, no output, one stderr line naming
    the file (and, for a parse error, the offset) and a reason."""
    args = [dxhub, "dump"] + (["--json"] if json_mode else []) + [path]
    r = run(args, timeout=30)
    err = r.stderr.decode("utf-8", "replace")
    assert r.returncode == 2, f"{path}: exit {r.returncode} (negative: killed by a signal); stderr {err!r}"
    assert r.stdout == b"", f"{path}: output for a rejected file: {r.stdout[:200]!r}"
    lines = err.splitlines()
    assert len(lines) == 1, f"one stderr line, got {lines!r}"
    prefix = f"dxhub dump: {path}: "
    assert lines[0].startswith(prefix), f"{lines[0]!r} does not start with {prefix!r}"
    reason = lines[0][len(prefix):]
    if offset:
        assert re.fullmatch(r"offset \d+: \S.{3,}", reason), f"no 'offset N: reason' in {lines[0]!r}"
    else:
        assert len(reason.strip()) > 3, f"no reason in {lines[0]!r}"
    return reason


def check_transcode_rejected(dxhub, path, tmp):
    out = tmp / "never.dcm"
    r = run([dxhub, "transcode", path, out], timeout=30)
    err = r.stderr.decode("utf-8", "replace")
    assert r.returncode == 2, f"transcode {path}: exit {r.returncode}: {err!r}"
    assert len(err.splitlines()) == 1 and str(path) in err, err
    assert not out.exists(), "no output file for rejected input"
    assert not [p for p in tmp.iterdir() if p.name.startswith("never")], "no temporary file left"


def write(tmp, name, data):
    p = tmp / name
    p.write_bytes(data)
    return p


def truncations(layout):
    """(id, cut offset) inside each part of the file."""
    data, elems = layout
    name = find(elems, 0x00100010)
    pixel = find(elems, 0x7FE00010)
    meta_end = max(e[3] + e[4] for e in elems if e[0] >> 16 == 2)
    return [
        ("in-preamble", 100),
        ("after-DICM", 132),
        ("in-meta", (132 + meta_end) // 2),
        ("in-element-header", name[2] + 5),
        ("in-value", name[3] + 3),
        ("in-pixel-data", pixel[3] + 1000),
        ("in-pixel-data-last-byte", pixel[3] + pixel[4] - 1),
    ]


@pytest.mark.parametrize("where", ["in-preamble", "after-DICM", "in-meta", "in-element-header", "in-value",
                                   "in-pixel-data", "in-pixel-data-last-byte"])
@pytest.mark.parametrize("json_mode", [False, True], ids=["text", "json"])
def test_truncated(dxhub, layout, tmp, where, json_mode):
    data, _ = layout
    cut = dict(truncations(layout))[where]
    p = write(tmp, f"trunc-{where}.dcm", data[:cut])
    check_rejected(dxhub, p, json_mode=json_mode)


def test_truncated_transcode(dxhub, layout, tmp):
    data, elems = layout
    p = write(tmp, "trunc.dcm", data[: find(elems, 0x7FE00010)[3] + 1000])
    check_transcode_rejected(dxhub, p, tmp)


def patch_length(data, e, length):
    """Set the length field of top-level element e."""
    b = bytearray(data)
    if e[3] - e[2] == 12:
        struct.pack_into("<I", b, e[2] + 8, length)
    else:
        struct.pack_into("<H", b, e[2] + 6, length)
    return bytes(b)


@pytest.mark.parametrize("json_mode", [False, True], ids=["text", "json"])
def test_length_past_the_end(dxhub, layout, tmp, json_mode):
    data, elems = layout
    pixel = find(elems, 0x7FE00010)
    left = len(data) - pixel[3]
    p = write(tmp, "past-end.dcm", patch_length(data, pixel, left + 2))
    reason = check_rejected(dxhub, p, json_mode=json_mode)
    assert f"offset {pixel[2]}:" in reason, f"the offset of the Pixel Data header ({pixel[2]}): {reason}"


def test_short_length_past_the_end(dxhub, layout, tmp):
    """A 16-bit length past the end of a small file (the file cut after the element)."""
    data, elems = layout
    e = find(elems, 0x00100010)
    p = write(tmp, "short-past-end.dcm", patch_length(data[: e[3] + e[4]], e, e[4] + 200))
    check_rejected(dxhub, p)


@pytest.mark.parametrize("json_mode", [False, True], ids=["text", "json"])
def test_absurd_length(dxhub, layout, tmp, json_mode):
    data, elems = layout
    pixel = find(elems, 0x7FE00010)
    p = write(tmp, "absurd.dcm", patch_length(data, pixel, 0xFFFFFFF0))
    check_rejected(dxhub, p, json_mode=json_mode)
    check_transcode_rejected(dxhub, p, tmp)


def test_absurd_sequence_length(dxhub, layout, tmp):
    data, elems = layout
    sq = find(elems, 0x00101002)  # Other Patient IDs Sequence, defined length
    p = write(tmp, "absurd-sq.dcm", patch_length(data, sq, 0xFFFFFFF0))
    check_rejected(dxhub, p)


def deep_sequences(layout, depth):
    """The source's preamble and meta, then sequences nested depth deep
    (SQ undefined length -> item undefined length -> SQ ...), all closed."""
    data, elems = layout
    meta_end = max(e[3] + e[4] for e in elems if e[0] >> 16 == 2)
    open_ = struct.pack("<HH2sHI", 0x0040, 0xA730, b"SQ", 0, 0xFFFFFFFF) + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    close = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return data[:meta_end] + open_ * depth + close * depth


@pytest.mark.parametrize("json_mode", [False, True], ids=["text", "json"])
def test_sequences_nested_5000_deep(dxhub, layout, tmp, json_mode):
    p = write(tmp, "deep.dcm", deep_sequences(layout, 5000))
    reason = check_rejected(dxhub, p, json_mode=json_mode)
    assert "deep" in reason or "nest" in reason, reason
    check_transcode_rejected(dxhub, p, tmp)


def test_sequences_nested_a_little_are_fine(dxhub, layout, tmp):
    """Ten levels is real-world nesting (SR trees): read, not rejected."""
    p = write(tmp, "ten.dcm", deep_sequences(layout, 10))
    r = run([dxhub, "dump", "--json", p])
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    for _ in range(10):
        d = d["0040A730"]["Value"][0]
    assert d == {}


@pytest.mark.parametrize("json_mode", [False, True], ids=["text", "json"])
def test_wrong_vr_bytes(dxhub, layout, tmp, json_mode):
    data, elems = layout
    e = find(elems, 0x00100010)
    b = bytearray(data)
    b[e[2] + 4: e[2] + 6] = b"ZZ"
    p = write(tmp, "zz.dcm", bytes(b))
    reason = check_rejected(dxhub, p, json_mode=json_mode)
    assert f"offset {e[2]}:" in reason, f"offset of the element with VR ZZ ({e[2]}): {reason}"


@pytest.mark.parametrize("json_mode", [False, True], ids=["text", "json"])
def test_garbage_after_dicm(dxhub, tmp, json_mode):
    rnd = random.Random(1453)
    p = write(tmp, "garbage.dcm", bytes(128) + b"DICM" + bytes(rnd.getrandbits(8) for _ in range(4000)))
    check_rejected(dxhub, p, json_mode=json_mode)


@pytest.mark.parametrize("json_mode", [False, True], ids=["text", "json"])
def test_empty_file(dxhub, tmp, json_mode):
    p = write(tmp, "empty.dcm", b"")
    check_rejected(dxhub, p, json_mode=json_mode)


def test_directory(dxhub, tmp):
    d = tmp / "a-directory"
    d.mkdir()
    check_rejected(dxhub, d, offset=False)


def test_nonexistent_file(dxhub, tmp):
    reason = check_rejected(dxhub, tmp / "no-such-file.dcm", offset=False)
    assert "No such file" in reason or "not found" in reason.lower(), reason


def test_unreadable_file(dxhub, source, tmp):
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    p = write(tmp, "unreadable.dcm", source.read_bytes())
    p.chmod(0)
    check_rejected(dxhub, p, offset=False)


@pytest.mark.parametrize("json_mode", [False, True], ids=["text", "json"])
def test_bad_file_between_good_ones(dxhub, source, layout, tmp, json_mode):
    """dump good bad good: both good files are printed, one error line, exit 2."""
    data, elems = layout
    bad = write(tmp, "bad.dcm", data[: find(elems, 0x7FE00010)[3] + 10])
    good2 = write(tmp, "good2.dcm", data)
    args = [dxhub, "dump"] + (["--json"] if json_mode else []) + [source, bad, good2]
    r = run(args)
    err = r.stderr.decode()
    assert r.returncode == 2
    assert len(err.splitlines()) == 1 and str(bad) in err and "offset" in err, err
    out = r.stdout.decode("utf-8")
    if json_mode:
        lines = out.splitlines()
        assert len(lines) == 2
        for ln in lines:
            assert json.loads(ln)["00100010"]["Value"][0]["Alphabetic"] == "CompressedSamples^CT1"
    else:
        assert out.count("CompressedSamples^CT1") == 2
        assert str(source) in out and str(good2) in out and str(bad) not in out


# ---------------------------------------------------------------- usage

def test_unknown_command(dxhub):
    r = run([dxhub, "nosuchcmd"])
    assert r.returncode == 2
    assert len(r.stderr.decode().splitlines()) == 1 and "nosuchcmd" in r.stderr.decode()


def test_dump_without_files(dxhub):
    r = run([dxhub, "dump"])
    assert r.returncode == 2 and len(r.stderr.decode().splitlines()) == 1
    r = run([dxhub, "dump", "--json"])
    assert r.returncode == 2 and len(r.stderr.decode().splitlines()) == 1


def test_dump_unknown_option(dxhub, source):
    r = run([dxhub, "dump", "--no-such-option", source])
    assert r.returncode == 2 and r.stdout == b""


def test_transcode_unknown_syntax(dxhub, tmp):
    r = run([dxhub, "transcode", "--ts", "1.2.3", "a", "b"], cwd=tmp)
    assert r.returncode == 2
    assert len(r.stderr.decode().splitlines()) == 1 and "1.2.3" in r.stderr.decode()
    assert not (tmp / "b").exists()


def test_transcode_wrong_argument_count(dxhub, source):
    for args in ([], [source], [source, "x", "y"]):
        r = run([dxhub, "transcode"] + args)
        assert r.returncode == 2 and len(r.stderr.decode().splitlines()) == 1


def test_help_lists_dump_and_transcode(dxhub):
    r = run([dxhub, "help"])
    assert r.returncode == 0
    out = r.stdout.decode()
    assert re.search(r"^\s+dump\s", out, re.M) and re.search(r"^\s+transcode\s", out, re.M)
    for cmd in ("dump", "transcode"):
        r = run([dxhub, cmd, "--help"])
        assert r.returncode == 0 and b"usage: dxhub " + cmd.encode() in r.stdout


# Codestreams on which OpenJPH 0.9 (Debian) fails an assertion or throws,
# found by fuzz_cdc_htj2k: each wrapped as a one-frame HTJ2K image of the
# shape its first four bytes give (tests/fuzz/cdc_decoder_fuzz.h).  HTJ2K
# frames decode in a child process, so each is one clear error.
HTJ2K_CRASHERS = sorted((Path(__file__).resolve().parents[1] / "fuzz" / "crashers" / "fuzz_cdc_htj2k").iterdir())


MPEG2 = "1.2.840.10008.1.2.4.100"


def htj2k_image(data):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    rows, cols, flags = data[0] + 1, data[1] + 1, data[2]
    samples, bits = (3 if flags & 1 else 1), (16 if flags & 2 else 8)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = "2.25.5150"
    # pydicom 2.3 does not know HTJ2K: write as MPEG2 (a UID of the same
    # length, also encapsulated), then swap the UID in the bytes.
    meta.TransferSyntaxUID = MPEG2
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, cols, samples
    ds.PhotometricInterpretation = "RGB" if samples == 3 else "MONOCHROME2"
    if samples == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, data[3] % bits + 1, data[3] % bits
    ds.PixelRepresentation = 1 if flags & 4 else 0
    ds.PixelData = encapsulate([data[4:] + (b"\0" if len(data) % 2 else b"")])
    ds["PixelData"].VR = "OB"
    ds.is_little_endian, ds.is_implicit_VR = True, False
    return ds


def test_openjph_crashers_are_clear_errors(dxhub, tmp):
    for c in HTJ2K_CRASHERS:
        p = tmp / f"{c.name}.dcm"
        htj2k_image(c.read_bytes()).save_as(p, write_like_original=False)
        raw = p.read_bytes()
        assert raw.count(MPEG2.encode()) == 1
        p.write_bytes(raw.replace(MPEG2.encode(), b"1.2.840.10008.1.2.4.201"))
        out = tmp / "never.dcm"
        r = run([dxhub, "transcode", "--ts", "1.2.840.10008.1.2.1", p, out], timeout=30)
        err = r.stderr.decode("utf-8", "replace")
        assert r.returncode == 2, f"{c.name}: exit {r.returncode}: {err!r}"
        assert len(err.splitlines()) == 1 and str(p) in err and "HTJ2K" in err, err
        assert not out.exists()
