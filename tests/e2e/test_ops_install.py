"""`make install`: into a staging DESTDIR, the binary (which runs), the
viewer's web files (which the installed workstation finds), example configurations (valid for their role, and
copied to PREFIX/etc/dxhub only when none is there, so reinstalling never
overwrites an operator's settings), hardened systemd units that name the
installed paths (never DESTDIR), and the system user.  Where systemd's
tools are installed, `systemd-analyze verify` accepts the units and
`systemd-analyze security` rates them."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNITS = ("dxhub-serve", "dxhub-edge", "dxhub-workstation", "dxhub-clinic-page")
HARDENING = ("ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes", "Restart=on-failure",
             "ExecReload=/bin/kill -HUP $MAINPID", "User=dxhub")


def make_install(**vars):
    build = os.environ.get("DXHUB_BUILD") or str(REPO / "build")
    args = ["make", "--no-print-directory", "-C", str(REPO), "install", f"BUILD={build}",
            f"SAN={os.environ.get('SAN', '0')}"] + [f"{k}={v}" for k, v in vars.items()]
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    assert r.returncode == 0, r.stdout.decode()[-3000:]


def test_make_install_into_destdir(tmp_path):
    dest = tmp_path / "stage"
    make_install(DESTDIR=dest)
    root = dest / "usr" / "local"
    binary = root / "bin" / "dxhub"
    assert os.access(binary, os.X_OK)
    r = subprocess.run([binary, "version"], stdout=subprocess.PIPE, timeout=30)
    assert r.returncode == 0 and r.stdout.startswith(b"dxhub ")
    # the pixel tools' library and the roles' one, each found under lib/dxhub
    for cmd in ("transcode", "status"):
        r = subprocess.run([binary, cmd, "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        assert r.returncode == 0 and b"cannot load" not in r.stderr, (cmd, r.stderr.decode())
    # example configurations, valid for their role
    data = {"serve": "data = /var/lib/dxhub/hub", "edge": "data = /var/lib/dxhub/edge",
            "workstation": "cache = /var/lib/dxhub/workstation/cache"}
    for role in ("serve", "edge", "workstation"):
        example = root / "share" / "dxhub" / "examples" / f"{role}.ini"
        etc = root / "etc" / "dxhub" / f"{role}.ini"
        assert example.read_bytes() == etc.read_bytes() == (REPO / "samples" / "config" / f"{role}.ini").read_bytes()
        r = subprocess.run([binary, role, "--config", etc, "--print-config"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30)
        assert r.returncode == 0, r.stderr.decode()
        assert data[role] in r.stdout.decode()
    # the viewer's web files, whatever is there
    web = REPO / "viewer" / "web"
    if web.is_dir():
        for f in web.rglob("*"):
            if f.is_file():
                assert (root / "share" / "dxhub" / "web" / f.relative_to(web)).read_bytes() == f.read_bytes()
    assert (root / "share" / "dxhub" / "web").is_dir()
    # the installed workstation finds them from its own place (bin/../share/dxhub/web), before
    # it stops at the example's signing certificate, which is not there
    r = subprocess.run([binary, "workstation", "--config", root / "etc" / "dxhub" / "workstation.ini"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    err = r.stderr.decode()
    assert r.returncode == 2 and "--cert:" in err, err
    assert f"viewer files in {os.path.realpath(root / 'share' / 'dxhub' / 'web')}\n" in err, err
    assert "no web UI" not in err, err
    # units: installed paths, hardening, one writable data directory each
    for unit in UNITS:
        text = (root / "lib" / "systemd" / "system" / f"{unit}.service").read_text()
        role = unit.split("-")[1]
        if unit == "dxhub-clinic-page":  # the nurses' page, on the gateway's data
            role = "edge"
            assert ("ExecStart=/usr/local/bin/dxhub reports --edge-data /var/lib/dxhub/edge --serve 8044 "
                    "--trust /usr/local/etc/dxhub/trust\n") in text, text
        else:
            assert f"ExecStart=/usr/local/bin/dxhub {role} --config /usr/local/etc/dxhub/{role}.ini" in text
        for line in HARDENING:
            if unit == "dxhub-clinic-page" and line.startswith("ExecReload="):
                continue  # it keeps no log file to reopen
            assert re.search(rf"^{re.escape(line)}$", text, re.M), f"{unit}: no {line}"
        data = "hub" if role == "serve" else role
        assert re.search(rf"^ReadWritePaths=/var/lib/dxhub/{data}\b", text, re.M)
        assert "@" not in text.replace("$MAINPID", "")  # every placeholder filled
    assert re.search(r"^u dxhub ", (root / "lib" / "sysusers.d" / "dxhub.conf").read_text(), re.M)
    for f in dest.rglob("*"):
        if f.is_file() and f != binary:
            assert str(dest) not in f.read_text(errors="replace"), f"{f} names the staging directory"
    # reinstalling keeps the operator's settings
    etc = root / "etc" / "dxhub" / "serve.ini"
    etc.write_text("[dicom]\naet = OURS\n")
    make_install(DESTDIR=dest)
    assert etc.read_text() == "[dicom]\naet = OURS\n"


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd's tools are not installed")
def test_installed_units_pass_systemd_analyze(tmp_path):
    prefix = tmp_path / "prefix"  # no DESTDIR: the units name a binary that exists
    make_install(PREFIX=prefix)
    for unit in UNITS:
        path = prefix / "lib" / "systemd" / "system" / f"{unit}.service"
        r = subprocess.run(["systemd-analyze", "verify", path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=60)
        assert r.returncode == 0 and not r.stdout.strip(), r.stdout.decode()
        r = subprocess.run(["systemd-analyze", "security", "--offline=true", path], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
        m = re.search(rb"Overall exposure level for \S+: ([\d.]+)", r.stdout)
        assert m and float(m.group(1)) <= 4.0, r.stdout.decode()[-1500:]
