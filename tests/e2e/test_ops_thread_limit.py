"""A hub or edge that cannot start one of its threads says so and stops.

`dxhub serve` and `dxhub edge` run as an unprivileged user under a process limit
(`prlimit --nproc`, which counts threads) from one thread up to more than
it needs.  At every limit it either

- fails: exit 1 with an error line naming what could not start and why, or
  (libzmq's own I/O threads, whose failure libzmq turns into an abort)
  libzmq's message naming the reason; or
- says ready: then it runs every thread an unlimited one runs (and the hub
  answers its HTTP API).

Never "ready" with a link whose thread never started: the hub would look
healthy while no thread took the edges' studies or the readers' requests,
the edge while no thread forwarded the clinic's.
"""
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request

import pytest

from edgeutil import dxhub_bin

NOBODY = 65534


def start(role, data, nproc=None, hub_key=None):
    limit = ["prlimit", f"--nproc={nproc}"] if nproc else []
    if role == "serve":
        opts = ["--http-port", "0", "--dicom-port", "0", "--edge-port", "0", "--reader-port", "0", "--peer-port", "0"]
    else:  # a hub that is not there: the edge starts and queues all the same
        opts = ["--dicom-port", "0", "--hub", "tcp://127.0.0.1:9", "--hub-key", hub_key]
    args = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *limit, dxhub_bin(), role,
            "--data", data, *opts]
    return subprocess.Popen([str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def outcome(p, timeout=30):
    """('ready', http port) or ('exit', returncode, stderr)."""
    if not select.select([p.stdout], [], [], timeout)[0]:
        p.kill()
        pytest.fail(f"neither ready nor stopped in {timeout} s")
    line = p.stdout.readline()  # the ready line, or '' once it exits
    m = re.search(r"dxhub (?:serve|edge): ready (?:.*http=127\.0\.0\.1:(\d+))?", line)
    if m:
        return "ready", int(m.group(1) or 0)
    rc = p.wait(timeout)
    return "exit", rc, p.stderr.read()


def threads_of(pid):
    # the hub's threads start before its ready line; give a late one a moment
    time.sleep(0.3)
    return len(os.listdir(f"/proc/{pid}/task"))


def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        return p.wait(20)
    finally:
        if p.poll() is None:
            p.kill()


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv") or not shutil.which("prlimit"),
                    reason="needs root to run the hub as another user under a process limit")
def test_short_of_threads_the_hub_and_the_edge_say_which_and_stop():
    # one test, one role after the other: the limit counts every process
    # of the user, so two runs at once would take each other's threads
    for role in ("serve", "edge"):
        check_role(role)


def check_role(role):
    root = tempfile.mkdtemp(prefix="dxhub-nproc-")
    os.chmod(root, 0o777)  # written by the unprivileged user
    hub_key = None
    if role == "edge":
        subprocess.run([dxhub_bin(), "keygen", "--keys", f"{root}/hubkeys", "--name", "hub"], check=True,
                       stdout=subprocess.DEVNULL)
        os.chmod(f"{root}/hubkeys", 0o755)
        hub_key = f"{root}/hubkeys/hub.pub"
    try:
        p = start(role, f"{root}/full", hub_key=hub_key)
        got = outcome(p)
        assert got[0] == "ready", got
        full = threads_of(p.pid)
        assert stop(p) == 0

        ready_in_a_row = 0
        for nproc in range(1, full + 8):
            data = f"{root}/n{nproc}"
            p = start(role, data, nproc, hub_key)
            got = outcome(p)
            if got[0] == "ready":
                assert threads_of(p.pid) == full, f"ready under --nproc={nproc} with threads missing"
                if got[1]:
                    with urllib.request.urlopen(f"http://127.0.0.1:{got[1]}/api/v1/health", timeout=10) as r:
                        assert r.status == 200
                assert stop(p) == 0
                ready_in_a_row += 1
                if ready_in_a_row == 2:
                    break
                continue
            _, rc, err = got
            assert ready_in_a_row == 0, f"--nproc={nproc} failed after a smaller limit was ready:\n{err}"
            if rc == -signal.SIGABRT:
                assert "Resource temporarily unavailable (src/thread.cpp" in err, err  # libzmq's assertion
            else:
                assert rc == 1, (nproc, rc, err)
                errors = [line for line in err.splitlines() if f" error {role}: " in line]
                assert errors and "Resource temporarily unavailable" in errors[-1], (nproc, err)
        assert ready_in_a_row == 2, f"never ready up to --nproc={full + 7}"
    finally:
        shutil.rmtree(root, ignore_errors=True)
