#!/usr/bin/python3
"""ingest_run.py — the measurements of bench/ingest.sh (see there).

C-STORE ingest of the same files, by DCMTK's storescu over 127.0.0.1, into
three receivers side by side, in alternating order, several runs, medians:

  dxhub     `dxhub serve`, fresh data directory per run; acknowledges each
            instance after its LMDB group commit (fsync'd)
  Orthanc   Debian's Orthanc, own configuration in a temporary directory,
            SyncStorageArea true (its default: each file fsync'd before the
            answer), SQLite index
  storescp  DCMTK's storescp writing the received bytes to files (+B), no
            sync: what the network and DCMTK's DIMSE allow, not durable

All three advertise the same maximum PDU (116794 bytes, dxhub's), so the
network framing is the same.  A send is timed from storescu's association
request to its release, read off storescu's own log dated to the
microsecond: the transfer, as dd's figure is its own transfer by its own
clock.  The whole storescu process (its start loads DCMTK's data
dictionary, about 45 ms here, and reads the files' headers: 40-60 ms a
send for every receiver alike) is timed too and printed beside it.  The data directory filesystem's synchronous
write bandwidth (dd conv=fdatasync), the yardstick of the MB/s target, is
measured the same way: as a fourth member of the rotation, once per run,
median; beside it, in the same step, dd writing one instance's size at a
time with each write durable before the next (oflag=dsync), the yardstick
of a sender that waits for every answer, printed as context.  From
storescp's time an instance and that dd, the bench prints the ceiling of
any receiver that answers each instance only once it is durable: the two
in series (one_at_a_time_ceiling), and dxhub's fraction of it.  Prints a
table; writes a JSON list of {"metric", "value", "unit",
"peer", "peer_value", "ratio"}.

Every timed step (each receiver, and dd) starts from the same settled
state, untimed: the previous step's files deleted, everything dirty
written back (sync; it also waits for the journal commit that discards
the deleted files' blocks, this filesystem being mounted with online
discard), then the disk idle (no request completed) for half a second.
Why: a step measured differently by which step ran right before it
(e.g. dxhub's DX 0.29-0.35 s right after dd or Orthanc, 0.38-0.49 s
right after storescp; dd 565 MB/s right after storescp, 345-358 after
the others), and the one dd at the start measured only one position.
So the order of each run is a row of a balanced design (every step
first, and right after every other step, equally often over a multiple
of 4 runs; 6 without Orthanc), not a rotation, which put dd right
before dxhub in every run.  Traced (block-layer and syscall tracepoints, /proc/diskstats):
the receivers' own writes, flushes and discards are the same in either
position and nothing of the previous step reaches the disk during the
next (storescp's unsynced files are deleted before write-back and never
reach it; the others' discards finish inside the sync); what differs is
CPU time in the kernel (page-cache and memory first touch on this virtual
machine), which dd pays too, so it is measured in the same positions.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PDU = 116794


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def wait_until(pred, timeout, what, proc=None, log=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = Path(log).read_text(errors="replace")[-2000:] if log else ""
            raise RuntimeError(f"{what}: the process exited with {proc.returncode}\n{tail}")
        try:
            if pred():
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what}: not ready after {timeout} s")


def stop_pid(proc, timeout=30):
    """SIGTERM the process we started (by its PID), SIGKILL if it lingers."""
    if proc and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Dxhub:
    name, label, aec = "dxhub", "dxhub", "DXHUB"

    def __init__(self, binary):
        self.binary = binary
        help_text = subprocess.run([binary, "serve", "--help"], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT).stdout.decode()
        self.extra = [a for o in ("--reader-port", "--peer-port") if o in help_text for a in (o, "0")]

    def start(self, d):
        self.data = d / "data"
        self.log = d / "dxhub.log"
        out = d / "dxhub.out"
        with open(out, "wb") as o, open(self.log, "wb") as e:
            env = {k: v for k, v in os.environ.items() if k != "DXHUB_RUNWAY"}  # the product's default
            self.proc = subprocess.Popen([self.binary, "serve", "--data", str(self.data), "--dicom-port", "0",
                                          "--http-port", "0", "--edge-port", "0", "--open-dicom",
                                          "--stable-seconds", "3600"] + self.extra,
                                         stdout=o, stderr=e, stdin=subprocess.DEVNULL, env=env)
        wait_until(lambda: "ready" in out.read_text(), 30, "dxhub serve", self.proc, self.log)
        line = out.read_text()
        self.port = int(re.search(r"dicom=[0-9.]+:(\d+)", line).group(1))
        self.http = int(re.search(r"http=[0-9.]+:(\d+)", line).group(1))

    def count(self):
        return http_json(f"http://127.0.0.1:{self.http}/api/v1/health")["instances"]

    def stop(self):
        stop_pid(self.proc)


class Orthanc:
    name, label, aec = "orthanc", "Orthanc", "ORTHANC"

    def start(self, d):
        self.port, self.http = free_port(), free_port()
        cfg = {
            "Name": "dxhub-bench-ingest",
            "StorageDirectory": str(d / "storage"), "IndexDirectory": str(d / "index"),
            "DicomPort": self.port, "HttpPort": self.http, "DicomAet": "ORTHANC",
            "DicomCheckCalledAet": False, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
            "SyncStorageArea": True, "StorageCompression": False, "MaximumPduLength": PDU,
            "Plugins": [], "SaveJobs": False,
        }
        (d / "orthanc.json").write_text(json.dumps(cfg, indent=1))
        self.log = d / "orthanc.log"
        with open(self.log, "wb") as e:
            self.proc = subprocess.Popen(["Orthanc", str(d / "orthanc.json")], stdout=e, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        wait_until(lambda: http_json(f"http://127.0.0.1:{self.http}/system"), 60, "Orthanc", self.proc, self.log)

    def count(self):
        return http_json(f"http://127.0.0.1:{self.http}/statistics")["CountInstances"]

    def stop(self):
        stop_pid(self.proc)


class Storescp:
    name, label, aec = "storescp", "storescp (no sync)", "STORESCP"

    def start(self, d):
        self.port = free_port()
        self.od = d / "files"
        self.od.mkdir()
        self.log = d / "storescp.log"
        with open(self.log, "wb") as e:
            self.proc = subprocess.Popen(["storescp", "+B", "-pdu", str(PDU), "-aet", "STORESCP", "-od", str(self.od),
                                          str(self.port)], stdout=e, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)

        def up():
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        wait_until(up, 30, "storescp", self.proc, self.log)

    def count(self):
        return sum(1 for _ in self.od.iterdir())

    def stop(self):
        stop_pid(self.proc)


def proc_cpu(pid):
    """CPU seconds (user + system) a process used so far, its exited threads included."""
    f = Path(f"/proc/{pid}/stat").read_text()
    f = f[f.rindex(")") + 2:].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


# storescu's log with microsecond timestamps (DCMTK's log4cplus layout),
# at the level of -v: the association's request and release are dated.
STORESCU_LOG_CONFIG = """log4cplus.rootLogger = INFO, console
log4cplus.appender.console = log4cplus::ConsoleAppender
log4cplus.appender.console.layout = log4cplus::PatternLayout
log4cplus.appender.console.layout.ConversionPattern = %D{%H:%M:%S.%Q} %m%n
"""
STAMP = re.compile(rb"^(\d\d):(\d\d):(\d\d)\.(\d{3})\.(\d{3}) (Requesting Association|Releasing Association)",
                   re.M)


def association_seconds(log):
    """Seconds from storescu's association request to its release, from its
    dated log: the transfer itself, without storescu's own start (loading
    DCMTK's data dictionary, about 45 ms here, the same for every receiver)
    and exit.  None if the log lacks either line."""
    at = {}
    for m in STAMP.finditer(log):
        h, mi, sec, ms, us = (int(x) for x in m.groups()[:5])
        at.setdefault(m.group(6), ((h * 60 + mi) * 60 + sec) + ms / 1e3 + us / 1e6)
    if len(at) != 2:
        return None
    return (at[b"Releasing Association"] - at[b"Requesting Association"]) % 86400


def send(target, files, log, log_config):
    """Sends files with storescu; (wall seconds of the storescu process,
    seconds of its association)."""
    t0 = time.monotonic()
    r = subprocess.run(["storescu", "-R", "-lc", str(log_config), "-aet", "BENCH", "-aec", target.aec, "127.0.0.1",
                        str(target.port)] + [str(f) for f in files], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=1800)
    dt = time.monotonic() - t0
    Path(log).write_bytes(r.stdout)
    if r.returncode != 0:
        raise RuntimeError(f"storescu to {target.label} failed (exit {r.returncode}): "
                           f"{r.stdout.decode(errors='replace')[-1000:]}")
    assoc = association_seconds(r.stdout)
    if assoc is None or not 0 < assoc <= dt:
        raise RuntimeError(f"storescu to {target.label}: no dated association request and release in its log {log}")
    return dt, assoc


def device_of(directory):
    """The /proc/diskstats name of the block device holding directory, or None."""
    st = os.stat(directory)
    want = (os.major(st.st_dev), os.minor(st.st_dev))
    for line in Path("/proc/diskstats").read_text().splitlines():
        f = line.split()
        if (int(f[0]), int(f[1])) == want:
            return f[2]
    return None


def settle(directory, quiet=0.5, limit=10.0):
    """Untimed, before every timed step: write everything dirty back, then
    wait until the disk holding directory completed no request (read,
    write, discard, flush) for `quiet` seconds (at most `limit`)."""
    os.sync()
    dev = device_of(directory)
    if dev is None:
        return

    def done():
        for line in Path("/proc/diskstats").read_text().splitlines():
            f = line.split()
            if f[2] == dev:
                return [int(f[i]) for i in (3, 7, 14, 18) if i < len(f)], int(f[11])
        return [], 0
    deadline = time.monotonic() + limit
    last, since = done(), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet:
        time.sleep(0.05)
        cur = done()
        if cur != last or cur[1]:  # something completed, or is in flight
            last, since = cur, time.monotonic()


def balanced_orders(n):
    """Orders of n steps in which every step comes first equally often and
    right after every other step equally often (a Williams design: n
    orders for even n, 2n for odd), so no step always follows the same one."""
    first = [0]
    lo, hi = 1, n - 1
    while len(first) < n:
        first.append(lo)
        lo += 1
        if len(first) < n:
            first.append(hi)
            hi -= 1
    orders = [[(x + i) % n for x in first] for i in range(n)]
    return orders if n % 2 == 0 else orders + [o[::-1] for o in orders]


class Dd:
    """The yardstick, measured as a member of the rotation."""
    name, label = "dd", "dd conv=fdatasync"

    def __init__(self, mb):
        self.mb = mb


def dd_mb_per_s(directory, block, count, flag):
    """MB/s of `dd if=/dev/zero bs=block count=count flag` into a file in
    directory, by dd's own clock (its transfer, not its start)."""
    f = Path(directory) / "dd-sync.tmp"
    try:
        t0 = time.monotonic()
        r = subprocess.run(["dd", "if=/dev/zero", f"of={f}", f"bs={block}", f"count={count}", flag],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=900)
        dt = time.monotonic() - t0
        if r.returncode != 0:
            raise RuntimeError(f"dd: {r.stderr.decode(errors='replace')}")
        m = re.search(r"copied, ([0-9.,]+) s", r.stderr.decode())
        secs = float(m.group(1).replace(",", ".")) if m else dt
        return block * count / secs / 1e6
    finally:
        f.unlink(missing_ok=True)


def dd_sync_bandwidth(directory, mb):
    """The yardstick: mb MiB and one flush at the end (conv=fdatasync)."""
    return dd_mb_per_s(directory, 1048576, mb, "conv=fdatasync")


def dd_per_instance_bandwidth(directory, size, count):
    """count blocks of one instance's size, each durable before the next is
    written (oflag=dsync): the disk's synchronous bandwidth at one instance
    per flush, as a sender that waits for each answer needs."""
    return dd_mb_per_s(directory, size, count, "oflag=dsync")


def one_at_a_time_ceiling(instance_bytes, transfer_s, dsync_mb_per_s):
    """MB/s of a receiver that answers each instance after one durable write
    of it, to a sender that waits for each answer: the transfer (storescp's
    time an instance, which writes nothing durable) and the write (dd
    oflag=dsync at the instance's size) happen one after the other."""
    write_s = instance_bytes / (dsync_mb_per_s * 1e6)
    return instance_bytes / 1e6 / (transfer_s + write_s)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dxhub", required=True)
    ap.add_argument("--ct", required=True)
    ap.add_argument("--dx", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dd-mb", type=int, default=1000)
    ap.add_argument("--no-orthanc", action="store_true")
    a = ap.parse_args()
    work = Path(a.work)
    stage = stage_in_memory({"CT": Path(a.ct), "DX": Path(a.dx)})
    try:
        run_all(a, work, stage)
    finally:
        shutil.rmtree(stage["root"], ignore_errors=True)


def stage_in_memory(dirs):
    """Copies of the input files in memory (tmpfs, /dev/shm), the sender's
    reads never reaching the disk under test.  Why: files read once into
    the page cache did not stay there.  The kernel's proactive reclaim
    (DAMON pageout, as on this machine) dropped them within a minute:
    traced, storescu's first reads of a slice took 0.1-0.3 ms from the disk
    (1 ms of a 4 ms slice), competing with the receiver's flushes on the
    disk measured.  A sender on another machine reads its own disk.  tmpfs
    pages are not reclaimed without swap.  Falls back to the files as they
    are (warmed) when /dev/shm is missing or too small."""
    need = sum(f.stat().st_size for d in dirs.values() for f in d.glob("*.dcm"))
    shm = Path("/dev/shm")
    if shm.is_dir() and shutil.disk_usage(shm).free > 2 * need:
        root = Path(tempfile.mkdtemp(prefix="dxhub-bench-ingest-", dir=shm))
        out = {"root": root}
        for k, d in dirs.items():
            (root / k).mkdir()
            out[k] = sorted(Path(shutil.copyfile(f, root / k / f.name)) for f in d.glob("*.dcm"))
        return out
    print("ingest_run.py: /dev/shm missing or too small: the sender reads the files from the disk under test",
          file=sys.stderr)
    out = {"root": Path(tempfile.mkdtemp(prefix="dxhub-bench-ingest-"))}
    for k, d in dirs.items():
        out[k] = sorted(d.glob("*.dcm"))
        for f in out[k]:  # into the page cache, as warm as it will stay
            f.read_bytes()
    return out


def run_all(a, work, stage):
    sets = {"CT": stage["CT"], "DX": stage["DX"]}
    size = {k: sum(f.stat().st_size for f in v) for k, v in sets.items()}
    for k, v in sets.items():
        if not v:
            sys.exit(f"ingest_run.py: no {k} files")
    targets = [Dxhub(a.dxhub)] + ([] if a.no_orthanc else [Orthanc()]) + [Storescp()]
    rotation = targets + [Dd(a.dd_mb)]
    print(f"input: CT {len(sets['CT'])} files {size['CT'] / 1e6:.1f} MB, DX {len(sets['DX'])} files "
          f"{size['DX'] / 1e6:.1f} MB; {a.runs} runs over {', '.join(t.label for t in rotation)} "
          f"(dd: {a.dd_mb} MiB in {work})", flush=True)
    dds = []
    dsyncs = {k: [] for k in sets}  # dd oflag=dsync, one instance's size per write
    times = {t.name: {k: [] for k in sets} for t in targets}  # association request to release
    walls = {t.name: {k: [] for k in sets} for t in targets}  # storescu process start to exit
    log_config = work / "storescu-log.cfg"
    log_config.write_text(STORESCU_LOG_CONFIG)
    cpu = {t.name: {k: [] for k in sets} for t in targets}  # the receiver's CPU seconds per set (load-independent)
    n_all = sum(len(v) for v in sets.values())
    orders = balanced_orders(len(rotation))
    for run in range(a.runs):
        order = [rotation[i] for i in orders[run % len(orders)]]
        for t in order:
            d = work / f"run{run + 1}-{t.name}"
            d.mkdir(parents=True)
            settle(work)  # the same starting state for every step (see above)
            if isinstance(t, Dd):
                dds.append(dd_sync_bandwidth(d, t.mb))
                for k in sets:
                    settle(work)
                    dsyncs[k].append(dd_per_instance_bandwidth(d, size[k] // len(sets[k]), len(sets[k])))
                shutil.rmtree(d, ignore_errors=True)
                print(f"run {run + 1} {t.label:20s} {dds[-1]:6.1f} MB/s; oflag=dsync by instance: " +
                      ", ".join(f"{k} {dsyncs[k][-1]:.1f} MB/s" for k in sets), flush=True)
                continue
            try:
                t.start(d)
                for k, files in sets.items():
                    c0 = proc_cpu(t.proc.pid)
                    wall, assoc = send(t, files, d / f"storescu-{k}.log", log_config)
                    walls[t.name][k].append(wall)
                    times[t.name][k].append(assoc)
                    cpu[t.name][k].append(proc_cpu(t.proc.pid) - c0)
                got = t.count()
                if got != n_all:
                    raise RuntimeError(f"{t.label} holds {got} instances after the run, {n_all} were sent")
            finally:
                t.stop()
            shutil.rmtree(d, ignore_errors=True)
            print(f"run {run + 1} {t.label:20s} " + "  ".join(
                f"{k} {times[t.name][k][-1]:6.3f} s (process {walls[t.name][k][-1]:5.3f} s, CPU {cpu[t.name][k][-1]:5.2f} s)"
                for k in sets), flush=True)

    dd = statistics.median(dds)
    rows = []

    def row(metric, value, unit, peer=None, peer_value=None):
        rows.append({"metric": metric, "value": round(value, 3), "unit": unit, "peer": peer,
                     "peer_value": None if peer_value is None else round(peer_value, 3),
                     "ratio": None if not peer_value else round(value / peer_value, 4)})

    med = {t.name: {k: statistics.median(v) for k, v in times[t.name].items()} for t in targets}
    rate = {t: {k: {"inst": len(sets[k]) / med[t][k], "mb": size[k] / 1e6 / med[t][k]} for k in sets} for t in med}
    wall_mb = {t.name: {k: size[k] / 1e6 / statistics.median(walls[t.name][k]) for k in sets} for t in targets}
    for k in sets:
        what = f"{k} ({len(sets[k])} x {size[k] / len(sets[k]) / 1e6:.1f} MB)"
        for peer in targets[1:]:
            row(f"C-STORE {what}: instances/s", rate["dxhub"][k]["inst"], "instances/s", peer.label,
                rate[peer.name][k]["inst"])
            row(f"C-STORE {what}: MB/s", rate["dxhub"][k]["mb"], "MB/s", peer.label, rate[peer.name][k]["mb"])
            row(f"C-STORE {what}: MB/s, storescu process", wall_mb["dxhub"][k], "MB/s", peer.label,
                wall_mb[peer.name][k])
            row(f"C-STORE {what}: receiver CPU per instance", 1000 * statistics.median(cpu["dxhub"][k]) / len(sets[k]),
                "ms", peer.label, 1000 * statistics.median(cpu[peer.name][k]) / len(sets[k]))
    row("disk synchronous write bandwidth (dd conv=fdatasync, median)", dd, "MB/s")
    for k in sets:
        row(f"dxhub {k} MB/s / disk sync bandwidth", rate["dxhub"][k]["mb"] / dd, "fraction", "dd conv=fdatasync",
            dd)
        rows[-1]["ratio"] = rows[-1]["value"]
        row(f"dxhub {k} MB/s, storescu process / disk sync bandwidth", wall_mb["dxhub"][k] / dd, "fraction",
            "dd conv=fdatasync", dd)
        rows[-1]["ratio"] = rows[-1]["value"]
        dsync = statistics.median(dsyncs[k])
        row(f"dxhub {k} MB/s / disk sync bandwidth by instance", rate["dxhub"][k]["mb"] / dsync, "fraction",
            f"dd oflag=dsync bs={size[k] // len(sets[k])}", dsync)
        rows[-1]["ratio"] = rows[-1]["value"]
    ceiling = {k: one_at_a_time_ceiling(size[k] / len(sets[k]), med["storescp"][k] / len(sets[k]),
                                        statistics.median(dsyncs[k])) for k in sets}
    for k in sets:
        row(f"{k} ceiling answering each after a durable write", ceiling[k], "MB/s", "dd conv=fdatasync", dd)
        row(f"dxhub {k} MB/s / that ceiling", rate["dxhub"][k]["mb"] / ceiling[k], "fraction",
            f"ceiling {k}", ceiling[k])
        rows[-1]["ratio"] = rows[-1]["value"]
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(rows, indent=1) + "\n")

    print(f"\nC-STORE ingest by storescu over 127.0.0.1 (TCP_NODELAY=1), median of {a.runs} runs in balanced orders, "
          f"max PDU {PDU}.\nTimes are storescu's association, request to release, from its dated log; "
          f"'storescu process' rows time the whole process, its own start and exit included.")
    print("%-52s %10s %12s %20s %9s" % ("metric", "dxhub", "peer value", "peer", "ratio"))
    for r in rows:
        pv = "%12.3f" % r["peer_value"] if r["peer_value"] is not None else "%12s" % "-"
        ra = "%9.3f" % r["ratio"] if r["ratio"] is not None else "%9s" % "-"
        print("%-52s %10.3f %s %20s %s  %s" % (r["metric"], r["value"], pv, r["peer"] or "-", ra, r["unit"]))
    print("\n'by instance': dd writing one instance's size at a time, each write durable before the next (oflag=dsync),"
          "\nas a sender waiting for each answer needs; context for the target below, which is against conv=fdatasync.")
    print("\n'ceiling': the most any receiver can reach when storescu waits for each answer and the answer waits"
          "\nfor the instance to be durable: per instance, storescp's time (the transfer, no write) plus one durable"
          "\nwrite of the instance (dd oflag=dsync), in series.  It counts the copy into the page cache twice (about"
          "\n0.1 ms of a CT slice's 2 ms), so it is a little low; nothing else of a store (index, commit) is in it.")
    print("\ntargets (printed, not asserted):")
    if not a.no_orthanc:
        x = rate["dxhub"]["CT"]["inst"] / rate["orthanc"]["CT"]["inst"]
        print(f"  CT instances/s >= 2x Orthanc at equal durability: {x:.2f}x  {'met' if x >= 2 else 'NOT met'}")
    for k in sets:
        f = rate["dxhub"][k]["mb"] / dd
        print(f"  {k} MB/s >= 80% of the disk's sync bandwidth: {100 * f:.0f}%  {'met' if f >= 0.8 else 'NOT met'}"
              f"  (storescu process start to exit: {100 * wall_mb['dxhub'][k] / dd:.0f}%;"
              f" ceiling {100 * ceiling[k] / dd:.0f}%, dxhub at {100 * rate['dxhub'][k]['mb'] / ceiling[k]:.0f}% of it)")
    print(f"written to {a.out}")


if __name__ == "__main__":
    main()
