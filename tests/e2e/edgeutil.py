"""edgeutil — shared helpers for the edge↔hub tests, the fault soak and the
link bench: free ports, the hub and edge processes (started, waited for,
killed by PID only), CURVE keys and the allow-list, storescu and `dxhub push`
as senders, the hub's HTTP API, and network namespaces with a veth pair.

Nothing here touches an address other than 127.0.0.1 or the addresses of
namespaces this module created itself (198.18.0.0/30, the range RFC 2544
sets aside for benchmarking network devices).

Environment: DXHUB (default build/dxhub), DXHUB_CORPUS (default
../shared/corpus beside the repository).
"""
import json
import os
import random
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PY = "/usr/bin/python3"
os.environ.setdefault("TCP_NODELAY", "1")  # DCMTK's tools stall on Nagle's algorithm without it


def dxhub_bin():
    p = os.environ.get("DXHUB") or str(REPO / "build" / "dxhub")
    return str(Path(p).resolve()) if not os.path.isabs(p) else p


def corpus_root():
    return Path(os.environ.get("DXHUB_CORPUS") or (REPO.parent / "shared" / "corpus")).resolve()


# One port picker for all helpers, so ports picked by either are never picked twice.
from hubutil import free_port  # noqa: E402


def wait_for(pred, timeout, interval=0.2, what="condition"):
    """Poll pred() until it returns a truthy value; return it, or raise
    TimeoutError naming what was awaited."""
    end = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = pred()
        except (OSError, ValueError, KeyError, subprocess.SubprocessError) as e:
            last = None
            err = e
        else:
            err = None
        if last:
            return last
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}" + (f" ({err})" if err else ""))
        time.sleep(interval)


# --------------------------------------------------------------------------
# processes

def ns_prefix(ns):
    """`ip netns exec NS` execs the command in place: the PID we get is the
    command's own, so killing by PID reaches it."""
    return ["ip", "netns", "exec", ns] if ns else []


class Proc:
    """A long-running dxhub role: started in its own session, its stdout
    scanned for the ready line, stdout+stderr kept in a log file; stopped or
    killed by its PID only."""

    def __init__(self, args, log_path, ready_re, ns=None, env=None):
        self.args = [str(a) for a in args]
        self.log_path = Path(log_path)
        self.ready_re = re.compile(ready_re)
        self.ns = ns
        self.env = env
        self.p = None
        self.match = None

    def start(self, timeout=20):
        self.match = None
        ready = threading.Event()
        log = open(self.log_path, "ab")
        log.write(f"\n=== start {' '.join(self.args)}\n".encode())
        log.flush()
        env = dict(os.environ)
        env.update(self.env or {})
        self.p = subprocess.Popen(ns_prefix(self.ns) + self.args, stdout=subprocess.PIPE, stderr=log,
                                  stdin=subprocess.DEVNULL, start_new_session=True, env=env)
        p = self.p

        def pump():
            for line in p.stdout:
                log.write(line)
                log.flush()
                if self.match is None:
                    m = self.ready_re.search(line.decode("utf-8", "replace"))
                    if m:
                        self.match = m
                        ready.set()
            log.close()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(timeout) or self.match is None:
            self.kill()
            raise RuntimeError(f"{self.args[0]} {self.args[1]} did not become ready; log:\n{self.log_tail()}")
        return self.match

    @property
    def pid(self):
        return self.p.pid if self.p else None

    def alive(self):
        return self.p is not None and self.p.poll() is None

    def signal(self, sig):
        if self.alive():
            os.kill(self.p.pid, sig)

    def kill(self):
        """SIGKILL, as a power cut would, and reap."""
        if self.p is None:
            return
        if self.p.poll() is None:
            try:
                os.kill(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def stop(self, timeout=15):
        """SIGTERM, then SIGKILL if it does not leave in time."""
        if self.p is None:
            return None
        if self.p.poll() is None:
            try:
                os.kill(self.p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.p.returncode

    def log_tail(self, n=4000):
        try:
            return self.log_path.read_text("utf-8", "replace")[-n:]
        except OSError:
            return ""


def run(args, timeout=120, ns=None, check=False, **kw):
    r = subprocess.run(ns_prefix(ns) + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} → {r.returncode}\n{r.stdout.decode()[-2000:]}"
                           f"\n{r.stderr.decode()[-2000:]}")
    return r


def keygen(keys_dir, name):
    run([dxhub_bin(), "keygen", "--keys", keys_dir, "--name", name], check=True)
    return Path(keys_dir) / f"{name}.pub"


def allow(hub_keys_dir, role, pub_file, revoke=False):
    args = [dxhub_bin(), "allow", "--keys", hub_keys_dir]
    args += ["--revoke"] if revoke else ["--role", role]
    run(args + [pub_file], check=True)


# --------------------------------------------------------------------------
# the hub

_PORT_OPTIONS = None


def serve_port_options():
    """The --*-port options `dxhub serve --help` lists (more arrive with new
    roles; each gets a port of its own so parallel hubs never collide)."""
    global _PORT_OPTIONS
    if _PORT_OPTIONS is None:
        r = run([dxhub_bin(), "serve", "--help"], timeout=30)
        _PORT_OPTIONS = sorted(set(re.findall(r"(--[a-z]+-port)\b", r.stdout.decode() + r.stderr.decode())))
    return _PORT_OPTIONS

class Hub:
    """`dxhub serve` on fixed ports (so a restart after SIGKILL comes back
    where the edges expect it).  In a namespace, `bind` is the address the
    edge port listens on and the HTTP API (on the namespace's loopback) is
    reached through curl run inside the namespace."""

    def __init__(self, data, log_dir, stable_seconds=3, ns=None, bind="127.0.0.1", ports=None):
        self.data = Path(data)
        self.ns = ns
        self.bind = bind
        if ports is None:
            ports = (free_port(), free_port(), free_port()) if not ns else (11112, 8410, 5570)
        self.dicom_port, self.http_port, self.edge_port = ports
        # the other listeners the hub has (readers, peer hubs ...) are not used
        # here: off, since a random free port can be taken by another test
        # worker's process before the hub binds it (the hub then stops)
        other = []
        for opt in serve_port_options():
            if opt not in ("--dicom-port", "--http-port", "--edge-port"):
                other += [opt, 0]
        # The HTTP API stays on loopback (plain HTTP may not leave the
        # machine); in a namespace, curl asks it from inside.
        self.proc = Proc([dxhub_bin(), "serve", "--data", self.data, "--bind", bind, "--dicom-port", self.dicom_port,
                          "--http-bind", "127.0.0.1",
                          "--http-port", self.http_port, "--edge-port", self.edge_port, "--open-dicom",
                          "--stable-seconds", stable_seconds] + other,
                         Path(log_dir) / f"hub-{self.data.name}.log", r"dxhub serve: ready .*key=(\S+)", ns=ns)

    @property
    def endpoint(self):
        return f"tcp://{self.bind}:{self.edge_port}"

    @property
    def key_file(self):
        return self.data / "keys" / "hub.pub"

    @property
    def keys_dir(self):
        return self.data / "keys"

    def start(self, timeout=20):
        self.api_key()
        self.proc.start(timeout)
        return self

    def api_key(self):
        """The facility API key these tests read the hub's HTTP API with,
        made before the first start (a hub serves patient data without
        keys to 127.0.0.1 only; in a namespace the client is elsewhere)."""
        if getattr(self, "_api_key", None) is None:
            r = run([dxhub_bin(), "keygen", "--api-key", "tests", "--keys", self.data / "keys"], check=True)
            self._api_key = r.stdout.decode().strip()
        return self._api_key

    def kill(self):
        self.proc.kill()

    def stop(self):
        return self.proc.stop()

    def hup(self):
        self.proc.signal(signal.SIGHUP)

    def get(self, path, timeout=10):
        """(status, body bytes) of GET path on the hub's HTTP API."""
        url = f"http://127.0.0.1:{self.http_port}{path}"
        auth = f"Authorization: Bearer {self.api_key()}"
        if self.ns:
            r = run(["curl", "-s", "-m", str(timeout), "-H", auth, "-o", "/dev/stdout", "-w", "\n%{http_code}", url],
                    ns=self.ns, timeout=timeout + 5)
            body, _, code = r.stdout.rpartition(b"\n")
            return int(code or 0), body
        try:
            req = urllib.request.Request(url, headers={"Authorization": auth.split(": ", 1)[1]})
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def get_json(self, path):
        code, body = self.get(path)
        if code != 200:
            raise ValueError(f"GET {path} → {code}: {body[:200]!r}")
        return json.loads(body)

    def studies(self):
        """Every study (paged through the list API)."""
        out, off = [], 0
        while True:
            j = self.get_json(f"/api/v1/studies?limit=1000&offset={off}")
            out += j["studies"]
            off += len(j["studies"])
            if not j["studies"] or off >= j["total"]:
                return out

    def study(self, uid):
        code, body = self.get(f"/api/v1/studies/{uid}")
        return json.loads(body) if code == 200 else None

    def instance_file(self, sop):
        code, body = self.get(f"/api/v1/instances/{sop}/file", timeout=60)
        return body if code == 200 else None

    def instance_count(self):
        return sum(s["00201208"]["Value"][0] for s in self.studies())

    def metrics(self):
        code, body = self.get("/metrics")
        return body.decode() if code == 200 else ""

    def metric(self, name, labels=""):
        """A counter's value from /metrics (0 when absent)."""
        pat = re.compile(r"^" + re.escape(name + labels) + r"\s+([0-9.eE+-]+)$", re.M)
        m = pat.search(self.metrics())
        return float(m.group(1)) if m else 0.0

    def error_count(self, kind):
        return self.metric("dxhub_errors_total", '{kind="%s"}' % kind)


def study_instances(study_json):
    """[(sop uid, dxhub member)] of a study detail answer, whatever its nesting
    (series → instances): every object with a dxhub.sop_instance_uid."""
    found = []

    def walk(o):
        if isinstance(o, dict):
            d = o.get("dxhub")
            if isinstance(d, dict) and "sop_instance_uid" in d:
                found.append((d["sop_instance_uid"], d))
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    walk(study_json)
    return found


# --------------------------------------------------------------------------
# the edge

class Edge:
    """`dxhub edge` with its own data directory; its keypair lives in
    DATA/keys (made before the first start by keygen, so the hub can allow
    it before the edge ever connects)."""

    def __init__(self, data, hub_endpoint, hub_key, log_dir, ns=None, bind="127.0.0.1", dicom_port=None,
                 watch=None, extra=(), env=None):
        self.data = Path(data)
        self.ns = ns
        self.bind = bind
        self.dicom_port = dicom_port or (free_port() if not ns else 11113)
        args = [dxhub_bin(), "edge", "--data", self.data, "--hub", hub_endpoint, "--hub-key", hub_key,
                "--bind", bind, "--dicom-port", self.dicom_port, "--open-dicom"]
        if watch:
            args += ["--watch", watch]
        args += list(extra)
        self.proc = Proc(args, Path(log_dir) / f"edge-{self.data.name}.log", r"dxhub edge: ready .*key=(\S+)", ns=ns,
                         env=env)

    @property
    def key_file(self):
        return self.data / "keys" / "edge.pub"

    def make_key(self):
        self.data.mkdir(parents=True, exist_ok=True)
        if not self.key_file.exists():
            keygen(self.data / "keys", "edge")
        return self.key_file

    def start(self, timeout=20):
        self.proc.start(timeout)
        return self

    def kill(self):
        self.proc.kill()

    def stop(self):
        return self.proc.stop()

    def status_text(self):
        r = run([dxhub_bin(), "edge", "--status", "--data", self.data], timeout=30)
        return r.stdout.decode("utf-8", "replace")

    def status(self):
        """{'waiting': n, 'delivered': n, 'refused': n, 'state': ..., 'markers': bool}."""
        t = self.status_text()
        m = re.search(r"waiting to be sent: (\d+) instances", t)
        d = re.search(r"delivered to the hub so far: (\d+) instances", t)
        f = re.search(r"REFUSED by the hub .*: (\d+)", t)
        s = re.search(r"link to the hub: (.*) \(for", t)
        return {"waiting": int(m.group(1)) if m else -1, "delivered": int(d.group(1)) if d else -1,
                "refused": int(f.group(1)) if f else 0, "state": s.group(1) if s else "?",
                "markers": "study marker" in t, "text": t}

    def push(self, files, priority=None, referral=False, note=None, timeout=300):
        """`dxhub push`; returns (returncode, [files reported queued], stdout)."""
        args = [dxhub_bin(), "push", "--edge-data", self.data]
        if priority:
            args += ["--priority", priority]
        if referral:
            args += ["--referral"]
        if note is not None:
            args += ["--note", note]
        r = run(args + [str(f) for f in files], timeout=timeout)
        out = r.stdout.decode("utf-8", "replace")
        queued = re.findall(r"^queued  (.*)  \(", out, re.M)
        return r.returncode, queued, out + r.stderr.decode("utf-8", "replace")

    def drained(self):
        s = self.status()
        return s["waiting"] == 0 and not s["markers"] and s["refused"] == 0


def storescu(host, port, files, ns=None, aec="DXEDGE", timeout=600, required=True, extra=()):
    """Send files in one association (storescu -R -nh -v); returns
    ({file: True when the peer answered Success}, CompletedProcess).
    A file storescu could not even read counts as not sent."""
    files = [str(f) for f in files]
    args = ["storescu", "-v", "-nh", "-aec", aec, "-aet", "MODALITY", "-to", "30", "-ta", "30", "-td", "60"]
    if required:
        args.append("-R")
    args += [str(a) for a in extra]
    r = run(args + [host, str(port)] + files, ns=ns, timeout=timeout)
    text = (r.stdout + r.stderr).decode("utf-8", "replace")
    ok = {f: False for f in files}
    cur = None
    for line in text.splitlines():
        m = re.match(r"I: Sending file: (.*)$", line)
        if m:
            cur = m.group(1).strip()
            continue
        if cur and "Received Store Response" in line:
            ok[cur] = "(Success)" in line
            cur = None
    return ok, r


# --------------------------------------------------------------------------
# network namespaces (root only): clinic ⟷ veth (tbf) ⟷ hub

class NetPair:
    """Two namespaces joined by a veth pair: `clinic` (198.18.0.1) and `hub`
    (198.18.0.2), each with its own loopback.  Optionally a tbf bandwidth
    limit on both ends.  cut()/restore() set the clinic end down/up.
    delete() removes both namespaces (and with them the veth) — always call
    it (it is idempotent)."""

    CLINIC_IP, HUB_IP = "198.18.0.1", "198.18.0.2"

    def __init__(self, tag=None):
        # the creator's full PID (and two random digits): sweep_stale() tells
        # a live run's namespaces from those of a run that was killed
        tag = tag or f"{os.getpid()}{random.randrange(100):02d}"
        self.clinic, self.hub = f"dxc{tag}", f"dxh{tag}"
        self.vc, self.vh = f"dxvc{tag}", f"dxvh{tag}"
        self.created = False

    @staticmethod
    def sweep_stale():
        """Delete namespaces an earlier run of ours left behind when it was
        killed before its cleanup (their creator's PID is gone)."""
        r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
        for line in r.stdout.splitlines():
            name = line.split()[0] if line.split() else ""
            m = re.fullmatch(r"dx[ch](\d{3,9})", name)
            if m and not os.path.exists(f"/proc/{int(m.group(1)[:-2])}"):
                kill_ns_processes(name)
                subprocess.run(["ip", "netns", "del", name], capture_output=True)

    @staticmethod
    def available():
        if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("tc"):
            return False
        probe = f"dxprobe{os.getpid()}"
        r = subprocess.run(["ip", "netns", "add", probe], capture_output=True)
        if r.returncode != 0:
            return False
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
        return True

    def _ip(self, *args):
        run(["ip"] + list(args), check=True, timeout=30)

    def create(self, rate_mbit=None, burst="32kb", latency="100ms"):
        self.sweep_stale()
        self.created = True
        self._ip("netns", "add", self.clinic)
        self._ip("netns", "add", self.hub)
        self._ip("link", "add", self.vc, "type", "veth", "peer", "name", self.vh)
        self._ip("link", "set", self.vc, "netns", self.clinic)
        self._ip("link", "set", self.vh, "netns", self.hub)
        self._ip("-n", self.clinic, "addr", "add", f"{self.CLINIC_IP}/30", "dev", self.vc)
        self._ip("-n", self.hub, "addr", "add", f"{self.HUB_IP}/30", "dev", self.vh)
        for ns, dev in ((self.clinic, self.vc), (self.hub, self.vh)):
            self._ip("-n", ns, "link", "set", "lo", "up")
            self._ip("-n", ns, "link", "set", dev, "up")
        if rate_mbit:
            self.shape(rate_mbit, burst, latency)
        return self

    def shape(self, rate_mbit, burst="32kb", latency="100ms"):
        for ns, dev in ((self.clinic, self.vc), (self.hub, self.vh)):
            run(["tc", "-n", ns, "qdisc", "replace", "dev", dev, "root", "tbf", "rate", f"{rate_mbit}mbit",
                 "burst", burst, "latency", latency], check=True)

    def cut(self):
        self._ip("-n", self.clinic, "link", "set", self.vc, "down")

    def restore(self):
        self._ip("-n", self.clinic, "link", "set", self.vc, "up")

    def tx_bytes(self, side="clinic"):
        ns, dev = (self.clinic, self.vc) if side == "clinic" else (self.hub, self.vh)
        r = run(["cat", f"/sys/class/net/{dev}/statistics/tx_bytes"], ns=ns)
        # /sys shows the namespace of the process that mounted it; use ip -s instead when unsure
        if r.returncode == 0 and r.stdout.strip().isdigit():
            return int(r.stdout)
        r = run(["ip", "-n", ns, "-s", "-j", "link", "show", dev], check=True)
        return json.loads(r.stdout)[0]["stats64"]["tx"]["bytes"]

    def delete(self):
        for ns in (self.clinic, self.hub):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        # a veth whose namespace went away goes with it; make sure anyway
        subprocess.run(["ip", "link", "del", self.vc], capture_output=True)


def kill_ns_processes(ns):
    """SIGKILL every process still running inside a namespace WE created
    (by their PIDs, from `ip netns pids`), before deleting it."""
    r = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
    for pid in r.stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


# --------------------------------------------------------------------------
# the fault proxy (tests/fault/faultproxy.py), started as a process

FAULTPROXY = REPO / "tests" / "fault" / "faultproxy.py"


class FaultProxy(Proc):
    """tests/fault/faultproxy.py as a child process; its options are the
    script's (see its --help).  listen/target are host:port."""

    def __init__(self, listen, target, log_dir, ns=None, name="proxy", **opts):
        args = [PY, FAULTPROXY, "--listen", listen, "--target", target]
        for k, v in opts.items():
            if v is None or v is False:
                continue
            flag = "--" + k.replace("_", "-")
            args += [flag] if v is True else [flag, v]
        super().__init__(args, Path(log_dir) / f"{name}.log", r"faultproxy: ready on (\S+):(\d+)", ns=ns)

    @property
    def port(self):
        return int(self.match.group(2))
