"""One client cannot take every connection of the hub's HTTP API.

A client that opens connection after connection and keeps each alive (a
script gone wrong, or one trickling a byte now and then) would otherwise
hold every slot libmicrohttpd has, and nobody else could look an exam up.
With `http-max-per-address` (8 here; 128 by default) its next connection
is refused: closed without an answer, counted on /metrics, logged with
the address once per 10 s.  The rest of the API keeps serving, and the
address is served again as soon as one of its connections closes.
"""
import socket
import time
import urllib.error
import urllib.request

import pytest

from hubutil import Hub

LIMIT = 8


@pytest.fixture
def hub(tmp_path):
    h = Hub(tmp_path / "hub", tmp_path, extra=("--http-max-per-address", str(LIMIT)))
    h.start()
    yield h
    h.close()


def get(port, path):
    """(status, body), or (None, why) when the connection is closed without an answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (ConnectionError, urllib.error.URLError, OSError) as e:
        return None, repr(e)


def refused_count(port):
    status, body = get(port, "/metrics")
    assert status == 200, body
    for line in body.decode().splitlines():
        if line.startswith('dxhub_errors_total{kind="http_connections_per_address"}'):
            return float(line.split()[-1])
    raise AssertionError("no http_connections_per_address counter on /metrics")


def served_connection(port):
    """A keep-alive connection the hub has taken and answered once (so it
    counts against the address, however loaded the machine)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = s.recv(4096)
        assert chunk, "the hub closed a connection within the limit"
        got += chunk
    assert got.startswith(b"HTTP/1.1 200"), got[:200]
    head, _, body = got.partition(b"\r\n\r\n")
    length = int(next(l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")))
    while len(body) < length:
        body += s.recv(4096)
    return s


def eventually(fn, timeout=10):
    end = time.monotonic() + timeout
    while True:
        got = fn()
        if got or time.monotonic() > end:
            return got
        time.sleep(0.1)


def test_one_address_cannot_hold_every_connection(hub):
    port = hub.http_port
    assert refused_count(port) == 0
    held = []
    try:
        # LIMIT connections the hub has taken, the last one stopping halfway
        # through its next request, as a slow client would
        held = [served_connection(port) for _ in range(LIMIT)]
        held[-1].sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")  # never finished
        for _ in range(3):
            status, why = get(port, "/api/v1/health")
            assert status is None, f"a connection beyond the limit was served: {status}"
        log = eventually(lambda: (lambda t: t if "(http-max-per-address)" in t else "")(
            hub.err_path.read_text(errors="replace")))
        assert "127.0.0.1 already held 8 open (http-max-per-address)" in log, log[-2000:]
        # one of them goes away: the address is served again
        held.pop(0).close()
        status, body = eventually(lambda: (lambda r: r if r[0] == 200 else None)(get(port, "/api/v1/health")))
        assert status == 200, body
        # /metrics is asked over a connection of its own too: one more closed first
        held.pop(0).close()
        assert eventually(lambda: (lambda r: r[0] == 200)(get(port, "/api/v1/health")))
        assert refused_count(port) >= 3  # and any retry above that came before a close was seen
    finally:
        for s in held:
            s.close()
