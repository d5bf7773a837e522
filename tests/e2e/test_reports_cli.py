"""Signed reports from the command line: `dxhub keygen` (facility CA,
reader certificate, revocation), `dxhub sign`, `dxhub verify` — and the
`openssl` command line alone, as an outside verifier, accepting what dxhub
produced (the commands of docs/verify-with-openssl.md) and dxhub accepting
what `openssl pkeyutl` signed.

The report document is written here by Python's json module (indented, UTF-8
as is), not by dxhub: only its exact bytes are signed, so any writer works.
Instance digests are SHA-256 of the data set bytes after the File Meta group,
computed here from the corpus files without dxhub.
"""
import hashlib
import json
import os
import re
import shutil
import stat
import struct
import subprocess

import pydicom
import pytest

from conftest import run

SM2_ID = "distid:1234567812345678"
FACILITY = "县医院影像中心"
NAME = "王伟"
PASS = "马 correct horse battery staple"


def openssl(*args, **kw):
    return run(["openssl", *args], **kw)


def dataset_offset(raw):
    """Where the data set starts: after the File Meta group (PS3.10 §7.1),
    whose (0002,0000) group length follows the 128-byte preamble and DICM."""
    assert raw[128:132] == b"DICM" and raw[132:136] == b"\x02\x00\x00\x00" and raw[136:138] == b"UL"
    (glen,) = struct.unpack("<I", raw[140:144])
    return 144 + glen


def study_files(corpus, tmp, n=3):
    """n corpus files with a plain meta group, copied into tmp/study:
    {sop uid: (path, hex digest)}."""
    src = sorted((corpus / "dicom" / "explicit_le").glob("*.dcm"))
    out = tmp / "study"
    out.mkdir()
    got = {}
    for p in src:
        raw = p.read_bytes()
        try:
            off = dataset_offset(raw)
        except AssertionError:
            continue
        sop = str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
        if sop in got:
            continue
        dst = out / p.name
        shutil.copyfile(p, dst)
        got[sop] = (dst, hashlib.sha256(raw[off:]).hexdigest())
        if len(got) == n:
            break
    assert len(got) == n
    return got


def write_report(path, instances, reader="wangwei", facility=FACILITY, study="1.2.826.0.1.3680043.8.498.77"):
    doc = {
        "format": "dxhub-report/1",
        "report_id": "rpt-20250601-0001",
        "version": 1,
        "supersedes": None,
        "study_uid": study,
        "patient_id": "P0001",
        "origin_facility": "乡镇卫生院",
        "reading_facility": facility,
        "reader": {"id": reader, "role": "attending", "name": NAME},
        "findings": "双肺纹理清晰，心影不大，膈面光整。",
        "impression": "胸部正位片未见明显异常。",
        "critical": False,
        "instances": {sop: dg for sop, dg in instances.items()},
        "times": {"reported": "2025-06-01T08:30:00Z", "exam": "20250601T074500"},
        "recognition": {"exam_type": "DX chest PA", "scope": "HR", "valid_until": "2025-12-01"},
    }
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return path


def make_pki(dxhub, tmp, alg):
    """A CA in tmp/ca and reader wangwei in tmp/reader (key encrypted
    with PASS from a passphrase file)."""
    (tmp / "pass.txt").write_text(PASS + "\n", encoding="utf-8")
    r = run([dxhub, "keygen", "--ca", "--facility", FACILITY, "--keys", tmp / "ca", "--alg", alg])
    assert r.returncode == 0, r.stderr
    r = run([dxhub, "keygen", "--reader", "wangwei", "--name", NAME, "--role", "attending", "--facility", FACILITY,
             "--ca", tmp / "ca", "--keys", tmp / "reader", "--passphrase-file", tmp / "pass.txt"])
    assert r.returncode == 0, r.stderr
    return tmp / "ca", tmp / "reader"


def sign(dxhub, tmp, report, reader_dir, who="wangwei"):
    return run([dxhub, "sign", "--key", reader_dir / f"{who}.key", "--cert", reader_dir / f"{who}.chain.pem",
                "--passphrase-file", tmp / "pass.txt", report])


def verify(dxhub, report, trust, *extra):
    return run([dxhub, "verify", report, "--trust", trust, *extra])


def pubkey(tmp, cert):
    pub = tmp / "signer.pub.pem"
    r = openssl("x509", "-pubkey", "-noout", "-in", cert)
    assert r.returncode == 0, r.stderr
    pub.write_bytes(r.stdout)
    return pub


def openssl_verify_sig(tmp, alg, report, sig, chain):
    pub = pubkey(tmp, chain)
    if alg == "sm2":
        args = ["pkeyutl", "-verify", "-rawin", "-digest", "sm3", "-pkeyopt", SM2_ID]
    else:
        args = ["pkeyutl", "-verify", "-rawin"]
    return openssl(*args, "-pubin", "-inkey", pub, "-sigfile", sig, "-in", report)


def openssl_verify_chain(ca, chain, sm2=True):
    """`openssl verify` of the signer's certificate (the first of chain)
    with the CRL.  -vfyopt distid only for an SM2-signed certificate: on an
    Ed25519 one OpenSSL 3.0 fails setting it."""
    opt = ["-vfyopt", SM2_ID] if sm2 else []
    return openssl("verify", *opt, "-CAfile", ca / "ca.pem", "-CRLfile", ca / "crl.pem", "-crl_check", chain)


@pytest.mark.parametrize("alg", ["sm2", "ed25519"])
def test_sign_then_dxhub_and_openssl_verify_and_tamper_refused(dxhub, corpus, tmp, alg):
    ca, rd = make_pki(dxhub, tmp, alg)
    inst = study_files(corpus, tmp)
    report = write_report(tmp / "report.json", {s: d for s, (_, d) in inst.items()})
    r = sign(dxhub, tmp, report, rd)
    assert r.returncode == 0, r.stderr
    sig, chain = tmp / "report.json.sig", tmp / "report.json.chain.pem"
    assert sig.exists() and chain.read_bytes() == (rd / "wangwei.chain.pem").read_bytes()
    if alg == "ed25519":
        assert sig.stat().st_size == 64

    r = verify(dxhub, report, ca, "--study-dir", tmp / "study")
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert f"{NAME} (reader wangwei, attending, {FACILITY})" in out
    assert ("sm2-sm3" if alg == "sm2" else "ed25519") in out
    assert "2025-06-01T08:30:00Z" in out and "all 3 match" in out

    # openssl alone: the chain (with the CRL) and the signature over the bytes
    r = openssl_verify_chain(ca, chain, sm2=alg == "sm2")
    assert r.returncode == 0 and b": OK" in r.stdout, r.stderr
    r = openssl_verify_sig(tmp, alg, report, sig, chain)
    assert r.returncode == 0 and b"Signature Verified Successfully" in r.stdout, r.stderr

    # one byte changed in the report: both refuse
    data = bytearray(report.read_bytes())
    i = data.index("未见".encode())
    data[i + 1] ^= 0x01
    report.write_bytes(bytes(data))
    r = verify(dxhub, report, ca)
    assert r.returncode == 1
    assert b"signature does not verify" in r.stderr and len(r.stderr.splitlines()) == 1
    assert openssl_verify_sig(tmp, alg, report, sig, chain).returncode != 0


def test_openssl_signature_is_accepted_by_dxhub(dxhub, tmp):
    """The other direction: `openssl pkeyutl` signs with the reader's key
    (decrypted with the passphrase), dxhub verifies."""
    ca, rd = make_pki(dxhub, tmp, "sm2")
    report = write_report(tmp / "r.json", {"1.2.3.4": "ab" * 32})
    sig = tmp / "r.json.sig"
    r = openssl("pkeyutl", "-sign", "-rawin", "-digest", "sm3", "-pkeyopt", SM2_ID, "-inkey", rd / "wangwei.key",
                "-passin", f"file:{tmp / 'pass.txt'}", "-in", report, "-out", sig)
    assert r.returncode == 0, r.stderr
    shutil.copyfile(rd / "wangwei.chain.pem", tmp / "r.json.chain.pem")
    r = verify(dxhub, report, ca)
    assert r.returncode == 0, r.stderr
    # without the GM/T ID, OpenSSL 3.0 hashes an empty one: a different signature, refused
    r = openssl("pkeyutl", "-sign", "-rawin", "-digest", "sm3", "-inkey", rd / "wangwei.key",
                "-passin", f"file:{tmp / 'pass.txt'}", "-in", report, "-out", sig)
    assert r.returncode == 0, r.stderr
    r = verify(dxhub, report, ca)
    assert r.returncode == 1 and b"signature does not verify" in r.stderr


def test_revoked_certificate_refused_by_dxhub_and_openssl(dxhub, tmp):
    ca, rd = make_pki(dxhub, tmp, "sm2")
    report = write_report(tmp / "r.json", {"1.2.3.4": "cd" * 32})
    assert sign(dxhub, tmp, report, rd).returncode == 0
    assert verify(dxhub, report, ca).returncode == 0
    r = run([dxhub, "keygen", "--revoke", rd / "wangwei.pem", "--ca", ca])
    assert r.returncode == 0, r.stderr
    r = verify(dxhub, report, ca)
    assert r.returncode == 1
    assert r.stderr.decode().strip().endswith("not verified: certificate revoked")
    r = openssl_verify_chain(ca, tmp / "r.json.chain.pem")
    assert r.returncode != 0 and b"certificate revoked" in r.stdout + r.stderr
    # the CRL is signed so that `openssl crl -verify` accepts it
    r = openssl("crl", "-in", ca / "crl.pem", "-noout", "-verify", "-CAfile", ca / "ca.pem")
    assert r.returncode == 0 and b"verify OK" in r.stdout + r.stderr
    # a fresh CRL keeps the revocation
    assert run([dxhub, "keygen", "--crl", "--ca", ca]).returncode == 0
    assert verify(dxhub, report, ca).returncode == 1


def test_expired_certificate_refused_with_its_own_reason(dxhub, tmp):
    ca, rd = make_pki(dxhub, tmp, "ed25519")
    r = run([dxhub, "keygen", "--reader", "old", "--name", "Dr Old", "--role", "attending", "--ca", ca,
             "--keys", rd, "--passphrase-file", tmp / "pass.txt", "--days", "-1"])
    assert r.returncode == 0, r.stderr
    report = write_report(tmp / "r.json", {"1.2.3.4": "ef" * 32}, reader="old")
    r = sign(dxhub, tmp, report, rd, who="old")
    assert r.returncode == 0 and b"expired" in r.stderr  # a warning; it still signs
    r = verify(dxhub, report, ca)
    assert r.returncode == 1 and r.stderr.decode().strip().endswith("not verified: certificate expired")
    r = openssl_verify_chain(ca, tmp / "r.json.chain.pem", sm2=False)
    assert r.returncode != 0 and b"expired" in r.stdout + r.stderr
    # --at: a valid certificate checked at a time past its notAfter
    report = write_report(tmp / "n.json", {"1.2.3.4": "ef" * 32})
    assert sign(dxhub, tmp, report, rd).returncode == 0
    assert verify(dxhub, report, ca).returncode == 0
    later = subprocess.run(["date", "-u", "-d", "+400 days", "+%Y-%m-%d"], capture_output=True, text=True).stdout.strip()
    r = verify(dxhub, report, ca, "--at", later)
    assert r.returncode == 1 and r.stderr.decode().strip().endswith("not verified: certificate expired")


def test_ca_outside_the_trust_list_refused(dxhub, tmp):
    ca, rd = make_pki(dxhub, tmp, "sm2")
    other = tmp / "other"
    assert run([dxhub, "keygen", "--ca", "--facility", FACILITY, "--keys", other]).returncode == 0
    report = write_report(tmp / "r.json", {"1.2.3.4": "01" * 32})
    assert sign(dxhub, tmp, report, rd).returncode == 0
    r = verify(dxhub, report, other)
    assert r.returncode == 1 and b"issuer not in the consortium trust list" in r.stderr
    # a trust folder holding both CAs (as a consortium's would) accepts it
    trust = tmp / "trust"
    for name, d in (("hosp", ca), ("other", other)):
        (trust / name).mkdir(parents=True)
        shutil.copyfile(d / "ca.pem", trust / name / "ca.pem")
        shutil.copyfile(d / "crl.pem", trust / name / "crl.pem")
    assert verify(dxhub, report, trust).returncode == 0


def test_study_folder_digests_changed_or_missing_refused(dxhub, corpus, tmp):
    ca, rd = make_pki(dxhub, tmp, "sm2")
    inst = study_files(corpus, tmp)
    report = write_report(tmp / "r.json", {s: d for s, (_, d) in inst.items()})
    assert sign(dxhub, tmp, report, rd).returncode == 0
    assert verify(dxhub, report, ca, "--study-dir", tmp / "study").returncode == 0
    path, _ = next(iter(inst.values()))
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF  # the last byte of the data set
    path.write_bytes(bytes(raw))
    r = verify(dxhub, report, ca, "--study-dir", tmp / "study")
    assert r.returncode == 1
    assert b"instance digests do not match the study folder (1 of 3 differ, 0 missing)" in r.stderr
    path.unlink()
    r = verify(dxhub, report, ca, "--study-dir", tmp / "study")
    assert r.returncode == 1 and b"(0 of 3 differ, 1 missing)" in r.stderr
    # the meta group does not count: a rewritten meta keeps the digest
    p2, _ = list(inst.values())[1]
    raw2 = p2.read_bytes()
    off = dataset_offset(raw2)
    p2.write_bytes(b"\x01" * 128 + raw2[128:off] + raw2[off:])
    assert b"(0 of 3 differ, 1 missing)" in verify(dxhub, report, ca, "--study-dir", tmp / "study").stderr


def test_keys_on_disk_are_0600_encrypted_and_readable_by_openssl(dxhub, tmp):
    ca, rd = make_pki(dxhub, tmp, "sm2")
    for k in (ca / "ca.key", rd / "wangwei.key"):
        assert stat.S_IMODE(k.stat().st_mode) == 0o600
    assert b"BEGIN ENCRYPTED PRIVATE KEY" in (rd / "wangwei.key").read_bytes()
    assert PASS.encode() not in (rd / "wangwei.key").read_bytes()
    r = openssl("pkey", "-in", rd / "wangwei.key", "-passin", f"file:{tmp / 'pass.txt'}", "-noout", "-text")
    assert r.returncode == 0, r.stderr
    r = openssl("pkcs8", "-in", rd / "wangwei.key", "-nocrypt", "-topk8", "-passin", "pass:wrong")
    assert r.returncode != 0
    # the subject: CN in UTF-8, O, UID, title
    r = openssl("x509", "-in", rd / "wangwei.pem", "-noout", "-subject", "-nameopt", "utf8,sep_comma_plus")
    subject = r.stdout.decode("utf-8")
    for part in (f"O={FACILITY}", "title=attending", "UID=wangwei", f"CN={NAME}"):
        assert part in subject, subject
    r = openssl("x509", "-in", rd / "wangwei.pem", "-noout", "-text")
    assert b"SM2-with-SM3" in r.stdout
    # a CA key encrypted when a passphrase file is given
    r = run([dxhub, "keygen", "--ca", "--facility", "HOSP2", "--keys", tmp / "ca2", "--passphrase-file",
             tmp / "pass.txt", "--alg", "ed25519"])
    assert r.returncode == 0 and b"BEGIN ENCRYPTED PRIVATE KEY" in (tmp / "ca2" / "ca.key").read_bytes()
    # issuing from it needs that passphrase (no terminal here)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DXHUB_")}
    args = [dxhub, "keygen", "--reader", "li", "--name", "Li", "--role", "resident", "--ca", tmp / "ca2",
            "--keys", tmp / "rd2", "--passphrase-file", tmp / "pass.txt"]
    r = run(args, env=env, stdin=subprocess.DEVNULL)
    assert r.returncode != 0 and b"passphrase" in r.stderr
    r = run(args + ["--ca-passphrase-file", tmp / "pass.txt"], env=env, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr


def test_sign_with_a_wrong_passphrase_or_foreign_report_fails(dxhub, tmp):
    ca, rd = make_pki(dxhub, tmp, "sm2")
    report = write_report(tmp / "r.json", {"1.2.3.4": "02" * 32})
    (tmp / "wrong.txt").write_text("nope\n")
    r = run([dxhub, "sign", "--key", rd / "wangwei.key", "--cert", rd / "wangwei.chain.pem", "--passphrase-file",
             tmp / "wrong.txt", report], stdin=subprocess.DEVNULL)
    assert r.returncode == 1 and b"wrong passphrase" in r.stderr and b"nope" not in r.stderr
    assert not (tmp / "r.json.sig").exists()
    other = write_report(tmp / "o.json", {"1.2.3.4": "02" * 32}, reader="liming")
    r = sign(dxhub, tmp, other, rd)
    assert r.returncode == 2 and b"names reader liming" in r.stderr


def test_passphrase_from_a_pipe_signs_and_an_empty_one_says_so_once(dxhub, tmp):
    """--passphrase-file <(pass show ...) is a pipe, not a regular file: it
    was refused as "Invalid argument".  An empty source says "empty
    passphrase", without OpenSSL's reason appended (twice, before)."""
    ca, rd = make_pki(dxhub, tmp, "sm2")
    report = write_report(tmp / "r.json", {"1.2.3.4": "04" * 32})
    args = [dxhub, "sign", "--key", rd / "wangwei.key", "--cert", rd / "wangwei.chain.pem", "--passphrase-file"]
    r = run(args + ["/dev/null", report], stdin=subprocess.DEVNULL)
    assert r.returncode == 1, r.stderr
    assert r.stderr.decode().strip().endswith("/dev/null: empty passphrase"), r.stderr
    rfd, wfd = os.pipe()
    os.write(wfd, (PASS + "\n").encode())
    os.close(wfd)
    try:
        r = run(args + [f"/dev/fd/{rfd}", report], stdin=subprocess.DEVNULL, pass_fds=(rfd,))
    finally:
        os.close(rfd)
    assert r.returncode == 0, r.stderr
    assert verify(dxhub, report, ca).returncode == 0


def test_bad_input_exits_2_and_keys_are_never_replaced(dxhub, tmp):
    ca, rd = make_pki(dxhub, tmp, "sm2")
    report = write_report(tmp / "r.json", {"1.2.3.4": "03" * 32})
    assert verify(dxhub, report, ca).returncode == 2  # no .sig yet
    assert sign(dxhub, tmp, report, rd).returncode == 0
    assert verify(dxhub, report, tmp / "no-such-dir").returncode == 2
    assert run([dxhub, "verify", report]).returncode == 2
    assert verify(dxhub, report, ca, "--at", "yesterday").returncode == 2
    # a damaged chain is "not verified", not bad input
    (tmp / "bad.pem").write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    r = verify(dxhub, report, ca, "--chain", tmp / "bad.pem")
    assert r.returncode == 1 and b"chain unreadable" in r.stderr
    key_before = (rd / "wangwei.key").read_bytes()
    r = run([dxhub, "keygen", "--reader", "wangwei", "--name", NAME, "--role", "attending", "--ca", ca,
             "--keys", rd, "--passphrase-file", tmp / "pass.txt"])
    assert r.returncode == 2 and b"refusing to replace" in r.stderr
    assert (rd / "wangwei.key").read_bytes() == key_before
    r = run([dxhub, "keygen", "--ca", "--facility", "X", "--keys", ca])
    assert r.returncode == 2 and b"refusing to replace" in r.stderr
    assert run([dxhub, "keygen", "--ca", "--keys", tmp / "x"]).returncode == 2  # no facility
    assert run([dxhub, "keygen", "--reader", "../evil", "--name", "x", "--role", "r", "--ca", ca, "--keys", rd,
                "--passphrase-file", tmp / "pass.txt"]).returncode == 2
    # the CURVE keypair behaviour is unchanged
    r = run([dxhub, "keygen", "--keys", tmp / "curve", "--name", "edge"])
    assert r.returncode == 0 and (tmp / "curve" / "edge.pub").exists()


def doc_blocks():
    """The ```sh blocks of docs/verify-with-openssl.md, in order."""
    from conftest import REPO
    text = (REPO / "docs" / "verify-with-openssl.md").read_text(encoding="utf-8")
    return re.findall(r"```sh\n(.*?)```", text, re.S)


def doc_block(*needles):
    found = [b for b in doc_blocks() if all(n in b for n in needles)]
    assert len(found) == 1, needles
    return found[0]


@pytest.mark.parametrize("alg", ["sm2", "ed25519"])
def test_the_documented_openssl_commands_verify_a_dxhub_report(dxhub, corpus, tmp, alg):
    """docs/verify-with-openssl.md, run as written (bash), on a report
    dxhub signed: the documentation cannot drift from what works."""
    ca, rd = make_pki(dxhub, tmp, alg)
    work = tmp / "work"
    work.mkdir()
    report = write_report(work / "report.json", {"1.2.3.4": "04" * 32})
    assert sign(dxhub, tmp, report, rd).returncode == 0
    shutil.copyfile(ca / "ca.pem", work / "ca.pem")
    shutil.copyfile(ca / "crl.pem", work / "crl.pem")
    if alg == "sm2":
        script = doc_block("openssl verify -vfyopt") + doc_block("pkeyutl -verify -rawin -digest sm3")
    else:
        script = doc_block("pkeyutl -verify -rawin -pubin")
    script += doc_block("openssl crl -in crl.pem -noout -verify")
    r = run(["bash", "-euc", script], cwd=work)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert b"report.json.chain.pem: OK" in out and b"Signature Verified Successfully" in out
    assert b"verify OK" in out
    # step 3 shows the signer
    r = run(["bash", "-euc", doc_block("openssl x509 -in report.json.chain.pem -noout -subject")], cwd=work)
    assert f"UID=wangwei,CN={NAME}".encode() in r.stdout
    # the digest recipe agrees with the report's definition
    src = next(p for p in sorted((corpus / "dicom" / "explicit_le").glob("*.dcm")))
    raw = src.read_bytes()
    shutil.copyfile(src, work / "image.dcm")
    r = run(["bash", "-euc", doc_block("od -An -tu4 -j140")], cwd=work)
    assert r.stdout.split()[0].decode() == hashlib.sha256(raw[dataset_offset(raw):]).hexdigest()
    # and a tampered report fails the documented signature check
    data = report.read_bytes()
    report.write_bytes(data.replace(b"P0001", b"P0002"))
    block = doc_block("pkeyutl -verify -rawin -digest sm3") if alg == "sm2" else doc_block("pkeyutl -verify -rawin -pubin")
    assert run(["bash", "-euc", block], cwd=work).returncode != 0
