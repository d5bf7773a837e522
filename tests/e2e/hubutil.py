"""Helpers of the hub's end-to-end tests (tests/e2e/test_hub_*.py and the
fault tests in tests/fault/): start and stop `dxhub serve`,
talk to its HTTP API, send DICOM with DCMTK's storescu (and, for what
storescu refuses to send, a minimal C-STORE SCU written here), and make
synthetic instances with pydicom.

Environment (tests/run-all sets both; defaults relative to the repository):
  DXHUB         the binary (default: build/dxhub)
  DXHUB_CORPUS  the corpus (default: ../shared/corpus beside the repository)

Every process started here is remembered by PID and ended by the owner's
finalizer (Hub.close, or `with Hub(...)`); nothing is killed by name.
"""
import hashlib
import http.client
import json
import os
import re
import signal
import random
import socket
import struct
import subprocess
import time
import urllib.parse
from pathlib import Path

os.environ.setdefault("TCP_NODELAY", "1")  # DCMTK's tools stall on Nagle's algorithm without it

REPO = Path(__file__).resolve().parents[2]

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
EXPLICIT_BE = "1.2.840.10008.1.2.2"


def dxhub_path():
    p = os.environ.get("DXHUB")
    return Path(p) if p else REPO / "build" / "dxhub"


def corpus_path():
    p = os.environ.get("DXHUB_CORPUS")
    return (Path(p) if p else REPO.parent / "shared" / "corpus").resolve()


def free_port():
    """A TCP port free on 127.0.0.1 now.  Chosen at random below the
    kernel's ephemeral range (32768-60999): a port the kernel hands out can
    be taken again by any outgoing connection (storescu, ZeroMQ, HTTP) before
    our server binds it, and parallel test workers pick from a wide range
    rather than the kernel's next few."""
    rng = random.SystemRandom()
    lo, hi = _worker_ports()
    for _ in range(200):
        port = rng.randrange(lo, hi)
        if port in _PICKED:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _PICKED.add(port)
        return port
    raise RuntimeError(f"no free TCP port found in {lo}-{hi}")


_PICKED = set()


def _worker_ports():
    """This test worker's share of 20000-32000: each pytest-xdist worker
    (PYTEST_XDIST_WORKER gw0, gw1 ...) picks from its own slice, so two
    workers never both find a port free and both take it (seen: a hub's
    edge port taken by the other worker's edge a moment later)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if not worker.startswith("gw") or count <= 1:
        return 20000, 32000
    k = int(worker[2:]) % count
    width = 12000 // count
    return 20000 + k * width, 20000 + (k + 1) * width


# ---------------------------------------------------------------- the hub


_HELP = {}


def serve_options(binary):
    """The options `dxhub serve --help` lists (the role grows listeners)."""
    binary = str(binary)
    if binary not in _HELP:
        r = subprocess.run([binary, "serve", "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        _HELP[binary] = set(re.findall(r"(--[a-z][a-z-]*)", r.stdout.decode(errors="replace")))
    return _HELP[binary]


def parse_ready(line):
    """{'dicom': port, 'http': port, 'edge': port, ...} from the ready line
    ("dxhub serve: ready dicom=127.0.0.1:P aet=.. http=127.0.0.1:H edge=tcp://127.0.0.1:E ...")."""
    if not line.startswith("dxhub serve: ready "):
        raise ValueError(line)
    out = {}
    for tok in line[len("dxhub serve: ready "):].split():
        k, _, v = tok.partition("=")
        m = re.match(r"^(?:tcp://)?[0-9.]+:(\d+)$", v)
        out[k] = int(m.group(1)) if m else v
    for k in ("dicom", "http"):
        if not isinstance(out.get(k), int):
            raise ValueError(f"no {k} port in {line!r}")
    return out


class HubError(Exception):
    pass


class Hub:
    """One `dxhub serve` process on ephemeral ports (port 0: the hub binds
    what the kernel gives and prints it in its ready line).  stdout and
    stderr go to files in log_dir, so nothing blocks on a full pipe and a
    failure can show the hub's log."""

    def __init__(self, data, log_dir=None, stable_seconds=60, retain_days=None, map_size=None,
                 aet="DXHUB", extra=(), binary=None, env=None):
        self.data = Path(data)
        self.env = dict(os.environ, **env) if env else None  # added to the environment
        self.log_dir = Path(log_dir) if log_dir else self.data.parent
        binary = str(binary or dxhub_path())
        self.args = [binary, "serve", "--data", str(self.data),
                     "--dicom-port", "0", "--http-port", "0", "--edge-port", "0", "--open-dicom",
                     "--stable-seconds", str(stable_seconds), "--aet", aet]
        # Every listener on an ephemeral port, so that tests run side by side.
        for opt in ("--reader-port", "--peer-port"):
            if opt in serve_options(binary):
                self.args += [opt, "0"]
        if retain_days is not None:
            self.args += ["--retain-days", str(retain_days)]
        if map_size is not None:
            self.args += ["--map-size", str(map_size)]
        self.args += list(extra)
        self.aet = aet
        self.proc = None
        self.starts = 0
        self.dicom_port = self.http_port = self.edge_port = None

    # -- life cycle

    def start(self, timeout=20):
        if self.proc and self.proc.poll() is None:
            raise HubError("hub already running")
        self.starts += 1
        n = 1
        while (self.log_dir / f"hub-{n}.out").exists():  # one log per start, never overwritten
            n += 1
        self.out_path = self.log_dir / f"hub-{n}.out"
        self.err_path = self.log_dir / f"hub-{n}.err"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=self.env)
        deadline = time.monotonic() + timeout
        while True:
            text = self.out_path.read_text(errors="replace")
            line = next((l for l in text.splitlines() if l.startswith("dxhub serve: ready")), None)
            if line:
                try:
                    self.ready = parse_ready(line)
                except ValueError:
                    self.kill()
                    raise HubError(f"unexpected ready line: {line!r}")
                self.dicom_port, self.http_port = self.ready["dicom"], self.ready["http"]
                self.edge_port = self.ready.get("edge")
                return self
            if self.proc.poll() is not None:
                raise HubError(f"hub exited with {self.proc.returncode} before ready: {self.log_tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise HubError(f"hub not ready after {timeout} s: {self.log_tail()}")
            time.sleep(0.02)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=20):
        """SIGTERM and wait; returns the exit status (SIGKILL after timeout)."""
        if not self.proc:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise HubError(f"hub did not stop within {timeout} s of SIGTERM")
        return self.proc.returncode

    def kill(self):
        """SIGKILL (a crash: nothing is flushed, no handler runs) and reap."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self):
        """Finalizer: whatever state the test left it in, end the process."""
        if self.proc and self.proc.poll() is None:
            try:
                self.stop(timeout=10)
            except HubError:
                pass
            self.kill()

    def __enter__(self):
        return self.start() if not self.running() else self

    def __exit__(self, *exc):
        self.close()

    def log_tail(self, lines=30):
        try:
            text = self.err_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])

    # -- HTTP

    def request(self, path, params=None, timeout=30, headers=None):
        """GET path; returns (status, headers dict, body bytes)."""
        if params:
            path += "?" + urllib.parse.urlencode(params)
        c = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=timeout)
        try:
            c.request("GET", path, headers=headers or {})
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()

    def get_json(self, path, params=None, expect=200):
        status, _, body = self.request(path, params)
        if expect is not None and status != expect:
            raise HubError(f"GET {path} {params or ''}: HTTP {status} (expected {expect}): {body[:300]!r}")
        return json.loads(body)

    def studies(self, **params):
        """Every study matching params (follows the paging)."""
        out, offset = [], 0
        while True:
            page = self.get_json("/api/v1/studies", dict(params, offset=offset, limit=100))
            out += page["studies"]
            offset += len(page["studies"])
            if not page["studies"] or offset >= page["total"]:
                return out

    def study(self, uid, expect=200):
        return self.get_json(f"/api/v1/studies/{uid}", expect=expect)

    def instance_file(self, sop_uid):
        """(HTTP status, bytes) of an instance's stored Part 10 file."""
        status, _, body = self.request(f"/api/v1/instances/{sop_uid}/file")
        return status, body

    def health(self):
        return self.request("/api/v1/health")

    def metrics(self):
        """/metrics as {'name{labels}': value}."""
        status, _, body = self.request("/metrics")
        if status != 200:
            raise HubError(f"/metrics: HTTP {status}")
        out = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                out[k] = float(v)
        return out

    def wait_for(self, predicate, timeout, what, interval=0.1):
        """Poll predicate() until it returns something truthy; fail naming what."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(interval)
        raise HubError(f"timed out after {timeout} s waiting for {what} (last: {last!r}); hub log:\n"
                       + self.log_tail())


def attr(obj, tag, default=None):
    """The first value of a DICOM JSON attribute."""
    v = obj.get(tag, {}).get("Value")
    return v[0] if v else default


def detail_instances(detail):
    """Every instance object of a study detail, in order."""
    return [i for s in detail["series"] for i in s["instances"]]


# ---------------------------------------------------------------- Part 10 bytes


def split_part10(data):
    """(meta bytes, data set bytes) of a Part 10 file with preamble and a
    File Meta Information group that carries its group length."""
    if len(data) < 144 or data[128:132] != b"DICM":
        raise ValueError("no DICM preamble")
    if data[132:136] != b"\x02\x00\x00\x00" or data[136:138] != b"UL":
        raise ValueError("meta does not start with (0002,0000) UL")
    glen = struct.unpack_from("<I", data, 140)[0]
    end = 144 + glen
    return data[:end], data[end:]


def dataset_bytes(path_or_bytes):
    data = Path(path_or_bytes).read_bytes() if not isinstance(path_or_bytes, (bytes, bytearray)) else path_or_bytes
    return split_part10(data)[1]


# ---------------------------------------------------------------- storescu


def storescu_config(contexts, path):
    """A storescu association profile (-xf path Hub) proposing one
    presentation context per (SOP class, transfer syntax) pair, so that
    every file travels in its own transfer syntax, plus one Explicit VR
    Little Endian context per SOP class as a fallback.  (storescu -R only
    proposes the uncompressed syntaxes, or one compressed syntax chosen
    with -x?: it would decompress or refuse the other files.)"""
    contexts = sorted(set(contexts))
    classes = sorted({c for c, _ in contexts})
    syntaxes = sorted({t for _, t in contexts} | {EXPLICIT_LE})
    pcs = [(c, t) for c, t in contexts] + [(c, EXPLICIT_LE) for c in classes if (c, EXPLICIT_LE) not in contexts]
    if len(pcs) > 128:
        raise ValueError(f"{len(pcs)} presentation contexts: more than an association can carry (128)")
    ts_name = {t: f"TS{i}" for i, t in enumerate(syntaxes)}
    lines = ["[[TransferSyntaxes]]"]
    for t in syntaxes:
        lines += [f"[{ts_name[t]}]", f"TransferSyntax1 = {t}"]
    lines += ["[[PresentationContexts]]", "[Contexts]"]
    for i, (c, t) in enumerate(pcs, 1):
        lines.append(f"PresentationContext{i} = {c}\\{ts_name[t]}")
    lines += ["[[Profiles]]", "[Hub]", "PresentationContexts = Contexts", ""]
    Path(path).write_text("\n".join(lines))
    return str(path)


def storescp_config(contexts, path):
    """A storescp profile accepting, for each SOP class of contexts, every
    transfer syntax of contexts (an SCP profile lists a class once)."""
    classes = sorted({c for c, _ in contexts})
    syntaxes = sorted({t for _, t in contexts} | {EXPLICIT_LE, IMPLICIT_LE})
    lines = ["[[TransferSyntaxes]]", "[All]"]
    lines += [f"TransferSyntax{i} = {t}" for i, t in enumerate(syntaxes, 1)]
    lines += ["[[PresentationContexts]]", "[Contexts]"]
    lines += [f"PresentationContext{i} = {c}\\All" for i, c in enumerate(classes, 1)]
    lines += ["[[Profiles]]", "[Accept]", "PresentationContexts = Contexts", ""]
    Path(path).write_text("\n".join(lines))
    return str(path)


class StoreRun:
    """What storescu -v said about each file it tried: results[path] is a
    list (a path may be given twice) of (status text, ok bool)."""

    def __init__(self, proc_or_text, returncode=None):
        if isinstance(proc_or_text, str):
            self.output, self.returncode = proc_or_text, returncode
        else:
            self.output = proc_or_text.stdout.decode(errors="replace") + proc_or_text.stderr.decode(errors="replace")
            self.returncode = proc_or_text.returncode
        self.order = []       # [(path, status text, ok)] in sending order
        self.ignored = []     # paths storescu refused to send at all ("ignoring file")
        self.conversions = {}  # path -> (from syntax, to syntax) as storescu logged it
        cur = None
        for line in self.output.splitlines():
            m = re.match(r"^I: Sending file: (.*)$", line)
            if m:
                cur = [m.group(1), None, False]
                self.order.append(cur)
                continue
            m = re.match(r"^W: .*ignoring file$", line)
            m2 = re.search(r"(?:in file|file): (.*?), ignoring file$", line)
            if m and m2:
                self.ignored.append(m2.group(1))
                continue
            m = re.match(r"^I: Converting transfer syntax: (.*) -> (.*)$", line)
            if m and cur is not None:
                self.conversions[cur[0]] = (m.group(1).strip(), m.group(2).strip())
                continue
            m = re.search(r"Received Store Response \((.*)\)\s*$", line)
            if m and cur is not None and cur[1] is None:
                cur[1] = m.group(1)
                cur[2] = m.group(1) == "Success"
                continue
            m = re.match(r"^E: Store Failed, file: (.*):$", line)
            if m and cur is not None and cur[1] is None:
                cur[1] = "Store Failed"
                continue
        self.order = [tuple(x) for x in self.order]
        self.results = {}
        for p, st, ok in self.order:
            self.results.setdefault(p, []).append((st, ok))

    def succeeded(self):
        """Paths that got a Success response (in sending order, once each)."""
        seen, out = set(), []
        for p, _, ok in self.order:
            if ok and p not in seen:
                seen.add(p)
                out.append(p)
        return out

    def statuses(self):
        return [st for _, st, _ in self.order]


def storescu(port, files, contexts=None, cfg_path=None, aet="STORESCU", aec="DXHUB", halt=False, timeout=120,
             extra=(), popen=False):
    """Send files with storescu -v in one association.  With contexts
    [(SOP class, TS)] (see storescu_config) every file is proposed in its
    own syntax; without, storescu -R proposes the required SOP classes in
    the uncompressed syntaxes.  Returns a StoreRun (or the Popen when
    popen: the caller waits and parses)."""
    args = ["storescu", "-v", "-aet", aet, "-aec", aec]
    if contexts is not None:
        args += ["-xf", storescu_config(contexts, cfg_path), "Hub"]
    else:
        args += ["-R"]
    if not halt:
        args += ["-nh"]
    args += list(extra) + ["127.0.0.1", str(port)] + [str(f) for f in files]
    if popen:
        return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    return StoreRun(r)


def transfer_syntax_of(ds):
    meta = getattr(ds, "file_meta", None)
    uid = str(getattr(meta, "TransferSyntaxUID", "") or "") if meta is not None else ""
    if uid:
        return uid
    if ds.is_implicit_VR:
        return IMPLICIT_LE
    return EXPLICIT_LE if ds.is_little_endian else EXPLICIT_BE


# ---------------------------------------------------------------- a raw C-STORE SCU
#
# storescu parses every file and re-encodes its data set before sending, so
# it cannot send a broken one.  This one sends the bytes it is given: PS3.8
# (association, P-DATA) and PS3.7 (the C-STORE command set, implicit VR LE).

APP_CONTEXT = "1.2.840.10008.3.1.1.1"


def _uid_bytes(uid):
    b = uid.encode()
    return b + b"\0" if len(b) % 2 else b


def _item(t, payload):
    return struct.pack(">BBH", t, 0, len(payload)) + payload


def _elem(group, elem, value):
    return struct.pack("<HHI", group, elem, len(value)) + value


class DimseError(Exception):
    pass


class RawSCU:
    """One association to a C-STORE SCP; store() sends a data set given as
    bytes in the accepted transfer syntax and returns (status, comment)."""

    def __init__(self, port, contexts, calling="RAWSCU", called="DXHUB", host="127.0.0.1", timeout=30):
        self.s = socket.create_connection((host, port), timeout=timeout)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.msg_id = 0
        self.max_pdu = 16384
        pcs = b""
        self.proposed = {}
        for i, (sop_class, ts) in enumerate(contexts):
            pcid = 2 * i + 1
            self.proposed[pcid] = (sop_class, ts)
            pcs += _item(0x20, bytes([pcid, 0, 0, 0]) + _item(0x30, sop_class.encode()) + _item(0x40, ts.encode()))
        user = _item(0x51, struct.pack(">I", 65536)) + _item(0x52, b"1.2.826.0.1.3680043.9.7133.1")
        body = (struct.pack(">HH", 1, 0) + called.encode().ljust(16) + calling.encode().ljust(16) + bytes(32)
                + _item(0x10, APP_CONTEXT.encode()) + pcs + _item(0x50, user))
        self._send_pdu(0x01, body)
        t, pdu = self._recv_pdu()
        if t != 0x02:
            raise DimseError(f"association not accepted (PDU type {t:#x}: {pdu[:8].hex()})")
        self.accepted = {}
        off = 68
        while off < len(pdu):
            it, _, ln = struct.unpack_from(">BBH", pdu, off)
            val = pdu[off + 4: off + 4 + ln]
            if it == 0x21 and val[2] == 0:
                pcid = val[0]
                sub = val[4:]
                _, _, tl = struct.unpack_from(">BBH", sub, 0)
                self.accepted[pcid] = sub[4:4 + tl].decode().rstrip("\0 ")
            elif it == 0x50:
                so = 0
                while so < len(val):
                    st, _, sl = struct.unpack_from(">BBH", val, so)
                    if st == 0x51:
                        mx = struct.unpack_from(">I", val, so + 4)[0]
                        self.max_pdu = mx if mx else 1 << 20
                    so += 4 + sl
            off += 4 + ln

    def _send_pdu(self, t, body):
        self.s.sendall(struct.pack(">BBI", t, 0, len(body)) + body)

    def _recv_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.s.recv(n - len(buf))
            if not chunk:
                raise DimseError("connection closed by the peer")
            buf += chunk
        return bytes(buf)

    def _recv_pdu(self):
        t, _, ln = struct.unpack(">BBI", self._recv_exact(6))
        return t, self._recv_exact(ln)

    def _send_pdvs(self, pcid, data, command):
        room = max(self.max_pdu - 6, 1024)  # PDV item header (4 + 2) inside the PDU
        room -= room % 2
        off = 0
        while True:
            frag = data[off:off + room]
            last = off + len(frag) >= len(data)
            mch = (1 if command else 0) | (2 if last else 0)
            item = struct.pack(">IBB", len(frag) + 2, pcid, mch) + frag
            self._send_pdu(0x04, item)
            off += len(frag)
            if last:
                return

    def pcid_for(self, sop_class, ts):
        for pcid, (c, t) in self.proposed.items():
            if c == sop_class and t == ts and self.accepted.get(pcid) == ts:
                return pcid
        raise DimseError(f"no accepted context for {sop_class} in {ts}")

    def store(self, sop_class, sop_uid, ts, dataset):
        pcid = self.pcid_for(sop_class, ts)
        self.msg_id += 1
        cmd = (_elem(0, 0x0002, _uid_bytes(sop_class)) + _elem(0, 0x0100, struct.pack("<H", 0x0001))
               + _elem(0, 0x0110, struct.pack("<H", self.msg_id)) + _elem(0, 0x0700, struct.pack("<H", 0))
               + _elem(0, 0x0800, struct.pack("<H", 0x0000)) + _elem(0, 0x1000, _uid_bytes(sop_uid)))
        cmd = _elem(0, 0x0000, struct.pack("<I", len(cmd))) + cmd
        self._send_pdvs(pcid, cmd, True)
        self._send_pdvs(pcid, dataset, False)
        rsp = b""
        while True:
            t, pdu = self._recv_pdu()
            if t != 0x04:
                raise DimseError(f"expected P-DATA, got PDU type {t:#x}")
            off, last = 0, False
            while off < len(pdu):
                ln, _, mch = struct.unpack_from(">IBB", pdu, off)
                rsp += pdu[off + 6: off + 4 + ln]
                last = last or bool(mch & 2)
                off += 4 + ln
            if last:
                break
        fields, off = {}, 0
        while off + 8 <= len(rsp):
            g, e, ln = struct.unpack_from("<HHI", rsp, off)
            fields[(g, e)] = rsp[off + 8: off + 8 + ln]
            off += 8 + ln
        status = struct.unpack("<H", fields[(0, 0x0900)])[0]
        comment = fields.get((0, 0x0902), b"").decode(errors="replace").rstrip(" \0")
        return status, comment

    def release(self):
        try:
            self._send_pdu(0x05, bytes(4))
            self._recv_pdu()
        finally:
            self.s.close()

    def abort(self):
        try:
            self._send_pdu(0x07, bytes(4))
        finally:
            self.s.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *rest):
        if exc_type:
            self.abort()
        else:
            self.release()


# ---------------------------------------------------------------- synthetic instances

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def uid_root(name, prefix="2.25"):
    """A UID root derived from a name (2.25: a UUID as a decimal integer)."""
    import uuid
    return f"{prefix}.{uuid.uuid5(uuid.NAMESPACE_URL, 'dxhub-tests/' + name).int}"


def _synth_base(rows, cols, modality, patient_name, study_date):
    from pydicom.dataset import Dataset, FileMetaDataset
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = "1.2"
    meta.TransferSyntaxUID = EXPLICIT_LE
    meta.ImplementationClassUID = "1.2.826.0.1.3680043.9.7133.2"
    ds = Dataset()
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = "1.2"
    ds.StudyDate = study_date
    ds.StudyTime = "120000"
    ds.AccessionNumber = ""
    ds.Modality = modality
    ds.PatientName = patient_name
    ds.PatientID = ""
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = "1.2"
    ds.SeriesInstanceUID = "1.2"
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope = "-1024", "1"
    ds.PixelData = b""
    return ds


def synth_instance(path, study_uid, series_uid, sop_uid, number, patient_id="PAT1", rows=64, cols=64,
                   seed=0, modality="CT", patient_name="TEST^HUB", study_date="20240101", _base=None):
    """Writes a small CT image (Explicit VR Little Endian, no sequences, no
    group lengths; pydicom pads odd values) with pydicom: a file whose
    data set storescu sends unchanged, so the bytes after its meta header
    are the bytes on the wire.  Pixel values derive from seed and number."""
    import numpy as np
    ds = _base if _base is not None else _synth_base(rows, cols, modality, patient_name, study_date)
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.InstanceNumber = number
    ds.PatientID = patient_id
    ds.AccessionNumber = "A" + hashlib.sha1(study_uid.encode()).hexdigest()[:8].upper()
    rng = np.random.default_rng([seed, number])
    ds.PixelData = rng.integers(0, 4096, size=(rows, cols), dtype=np.uint16).tobytes()
    ds.save_as(str(path), write_like_original=False)
    return Path(path)


def synth_studies(out_dir, name, studies, per_study, rows=64, cols=64, series_per_study=1):
    """{study_uid: [paths in instance order]} of synthetic instances under
    UIDs derived from name (same arguments, same files and UIDs).  The SOP
    Instance UID of instance k (from 1) of series j is f"{study}.{j}.{k}"."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    root = uid_root(name)
    base = _synth_base(rows, cols, "CT", "TEST^HUB", "20240101")
    made = {}
    for s in range(studies):
        study = f"{root}.{s + 1}"
        made[study] = []
        for k in range(per_study):
            series = f"{study}.{k * series_per_study // per_study + 1}"
            p = out_dir / f"{name}_s{s + 1}_{k + 1:04d}.dcm"
            synth_instance(p, study, series, f"{series}.{k + 1}", k + 1, patient_id=f"{name[:8].upper()}{s + 1}",
                           rows=rows, cols=cols, seed=s, _base=base)
            made[study].append(p)
    return made


# ---------------------------------------------------------------- DCMTK storescp as the oracle


class Storescp:
    """DCMTK's storescp in bit-preserving mode (+B): each file it writes
    holds exactly the data set bytes it received, after its own meta
    header.  Sent the same files as the hub, it shows what storescu put on
    the wire.  take(dest) moves what it received so far into dest and
    returns {SOP Instance UID: path}."""

    def __init__(self, work, aet="DXHUB", contexts=None, extra=()):
        self.work = Path(work)
        self.od = self.work / "incoming"
        self.od.mkdir(parents=True, exist_ok=True)
        self.aet, self.extra = aet, list(extra)
        self.proc = None
        # storescp +xa accepts only the syntaxes it can convert (not JPEG
        # Lossless .57, for one): given contexts, accept exactly those.
        self.accept = ["+xa", "-pm"]
        if contexts:
            self.accept = ["-xf", storescp_config(contexts, self.work / "storescp.cfg"), "Accept"]

    def start(self, attempts=5):
        for _ in range(attempts):
            self.port = free_port()
            self.log = open(self.work / "storescp.log", "ab")
            self.proc = subprocess.Popen(["storescp", "+B"] + self.accept + ["-aet", self.aet, "-od", str(self.od)]
                                         + self.extra + [str(self.port)],
                                         stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    return self
                except OSError:
                    time.sleep(0.02)
            self.close()
        raise RuntimeError("storescp did not start")

    def take(self, dest):
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        out = {}
        for f in sorted(self.od.iterdir()):
            uid = f.name.split(".", 1)[1] if "." in f.name else f.name
            f.rename(dest / f.name)
            out[uid] = dest / f.name
        return out

    def close(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()


# ---------------------------------------------------------------- the store on disk


def audit_records(data_dir):
    """The hub's audit trail as LMDB holds it (mdb_dump of the `audit`
    database; a reader, safe beside the running hub): [dict] in order."""
    r = subprocess.run(["mdb_dump", "-p", "-s", "audit", str(data_dir)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"mdb_dump: {r.stderr.decode(errors='replace')}")
    out = []
    for line in r.stdout.decode(errors="replace").splitlines():
        if line.startswith(" {"):
            out.append(json.loads(line[1:].replace("\\\\", "\\")))
    return out


def mdb_stat(data_dir):
    """mdb_stat -e -a on the environment: (exit status, output)."""
    r = subprocess.run(["mdb_stat", "-e", "-a", str(data_dir)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=60)
    return r.returncode, r.stdout.decode(errors="replace")


# ---------------------------------------------------------------- crash rounds


COMPLETED_STATES = ("complete", "queued")


def check_store_contents(hub, data, acked):
    """After a crash and restart: every acknowledged instance is there with
    the bytes sent; every instance the store lists (acknowledged or not)
    is whole and byte-identical; each study's count matches its listing.
    Returns the set of SOP UIDs present.  data: {sop: data set bytes}."""
    problems, present = [], set()
    for st in hub.studies():
        study = attr(st, "0020000D")
        insts = detail_instances(hub.study(study))
        if attr(st, "00201208") != len(insts):
            problems.append(f"study {study}: counts {attr(st, '00201208')} instances, lists {len(insts)}")
        for x in insts:
            present.add(x["dxhub"]["sop_instance_uid"])
    for sop in sorted(present | set(acked)):
        status, body = hub.instance_file(sop)
        if status != 200:
            problems.append(f"{sop}: HTTP {status}" + (" (acknowledged!)" if sop in acked else ""))
        elif sop not in data:
            problems.append(f"{sop}: an instance nobody sent")
        elif split_part10(body)[1] != data[sop]:
            problems.append(f"{sop}: stored bytes differ from the bytes sent")
    missing = set(acked) - present
    if missing:
        problems.append(f"{len(missing)} acknowledged instances not listed in their study, e.g. {sorted(missing)[:3]}")
    if problems:
        raise AssertionError("after restart:\n" + "\n".join(problems[:20]) + "\nhub log:\n" + hub.log_tail())
    return present


class _Watch:
    """Reads a storescu's output as it comes, counting Store Responses."""

    def __init__(self, proc):
        import threading
        self.proc, self.chunks, self.responses = proc, [], 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        for line in iter(self.proc.stdout.readline, b""):
            self.chunks.append(line)
            if b"Received Store Response" in line:
                self.responses += 1

    def result(self, timeout=120):
        self.proc.wait(timeout)
        self.thread.join(timeout)
        return StoreRun(b"".join(self.chunks).decode(errors="replace"), self.proc.returncode)


def crash_rounds(work, rounds=5, studies=3, per_study=100, seed=None, stable=2, rows=64, cols=64, note=print,
                 extra=()):
    """SIGKILL the hub at a random moment while one storescu per study
    sends, `rounds` times.  The moment: after a random number of store
    responses (0 to 70 % of what is left: the kill lands mid-stream on a
    fast machine as on a slow one) plus a random 0-50 ms, so it falls
    inside a data set, a commit or an answer.  After each: mdb_stat opens the environment
    cleanly, the restarted hub has every acknowledged instance byte for
    byte (check_store_contents); the spool holds no leftovers.  Then the
    rest is sent without a kill, and after the quiet time no study is left
    receiving.  Returns a summary dict; raises AssertionError on failure.
    Each round sends what was not acknowledged yet (an instance stored but
    not acknowledged before a kill comes back as a duplicate), or, once
    less than a fifth is left, everything again."""
    import random
    seed = seed if seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    note(f"crash rounds: seed {seed} (set DXHUB_CRASH_SEED={seed} to replay)")
    work = Path(work)
    made = synth_studies(work / "in", "crash", studies, per_study, rows=rows, cols=cols)
    sop = {p: f"{study}.1.{k + 1}" for study, files in made.items() for k, p in enumerate(files)}
    data = {sop[p]: dataset_bytes(p) for p in sop}
    acked, kills, spawned = set(), [], []
    hub = Hub(work / "hub", log_dir=work, stable_seconds=stable, extra=extra)
    try:
        hub.start()
        for rnd in range(rounds):
            pending = {s: [p for p in files if sop[p] not in acked] for s, files in made.items()}
            if sum(len(f) for f in pending.values()) < 0.2 * len(sop):
                # Little left: send everything again (duplicates are killed mid-stream too).
                pending = {s: list(files) for s, files in made.items()}
            left = sum(len(f) for f in pending.values())
            target = rng.randint(0, int(left * 0.7))
            jitter = rng.uniform(0, 0.05)
            watches = [_Watch(storescu(hub.dicom_port, files, popen=True)) for files in pending.values() if files]
            spawned += [w.proc for w in watches]
            deadline = time.monotonic() + 120
            while sum(w.responses for w in watches) < target and time.monotonic() < deadline \
                    and any(w.proc.poll() is None for w in watches):
                time.sleep(0.002)
            time.sleep(jitter)
            seen = sum(w.responses for w in watches)
            hub.kill()
            got = 0
            for w in watches:
                run = w.result()
                for p in run.succeeded():
                    if sop[Path(p)] not in acked:
                        got += 1
                    acked.add(sop[Path(p)])
            rc, text = mdb_stat(hub.data)
            if rc != 0 or "Status of inst" not in text:
                raise AssertionError(f"round {rnd + 1}: mdb_stat on the crashed environment: exit {rc}\n{text[-2000:]}")
            hub.start()
            present = check_store_contents(hub, data, acked)
            leftovers = list((hub.data / "spool").iterdir())
            if leftovers:
                raise AssertionError(f"round {rnd + 1}: spool leftovers after restart: {leftovers[:3]}")
            kills.append({"round": rnd + 1, "left": left, "target": target, "responses_at_kill": seen,
                          "new_acks": got, "acked": len(acked), "present": len(present)})
            note(f"round {rnd + 1}: SIGKILL {jitter * 1000:.0f} ms after response {target} of {left} "
                 f"({seen} seen): {got} newly acknowledged, {len(acked)} acknowledged, {len(present)} present")
        pending = [p for files in made.values() for p in files if sop[p] not in acked]
        if pending:
            run = storescu(hub.dicom_port, pending)
            if run.statuses() != ["Success"] * len(pending):
                raise AssertionError(f"final send: {run.statuses()}\n{run.output[-2000:]}")
            acked.update(sop[p] for p in pending)
        present = check_store_contents(hub, data, acked)
        if present != set(data):
            raise AssertionError(f"{len(set(data) - present)} instances missing at the end")
        hub.wait_for(lambda: not hub.studies(state="receiving"), stable + 15, "no study left receiving")
        for st in hub.studies():
            if st["dxhub"]["state"] not in COMPLETED_STATES or attr(st, "00201208") != per_study:
                raise AssertionError(f"study {attr(st, '0020000D')}: {st['dxhub']['state']}, "
                                     f"{attr(st, '00201208')} instances")
        return {"seed": seed, "rounds": kills, "instances": len(data)}
    finally:
        hub.close()
        for proc in spawned:  # storescu ends with its connection; in case it did not
            if proc.poll() is None:
                proc.kill()
                proc.wait()
