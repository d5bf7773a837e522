"""One client cannot take every connection of the hub's HTTP API.

A client that opens connection after connection and keeps each alive (a
script gone wrong, or one trickling a byte now and then) would otherwise
hold every slot libmicrohttpd has, and nobody else could look an exam up.
With `http-max-per-address` (8 here; 128 by default) its next connection
is refused: closed without an answer, counted on /metrics, logged with
the address once per 10 s.  The rest of the API keeps serving, and the
address is served again as soon as one of its connections closes.
"""
import http.client

import pytest

from hubutil import Hub

LIMIT = 8


@pytest.fixture
def hub(tmp_path):
    h = Hub(tmp_path / "hub", tmp_path, extra=("--http-max-per-address", str(LIMIT)))
    h.start()
    yield h
    h.close()


def health(hub):
    """/api/v1/health's status, or None when the connection is closed without an answer."""
    try:
        return hub.health()[0]
    except (ConnectionError, http.client.HTTPException, OSError):
        return None


def refused(hub):
    return hub.metrics()['dxhub_errors_total{kind="http_connections_per_address"}']


def served_connection(hub):
    """A keep-alive connection the hub has taken and answered once (so it
    counts against the address, however loaded the machine)."""
    c = http.client.HTTPConnection("127.0.0.1", hub.http_port, timeout=10)
    c.request("GET", "/api/v1/health")
    r = c.getresponse()
    assert r.status == 200, r.status
    r.read()
    return c


def test_one_address_cannot_hold_every_connection(hub):
    assert refused(hub) == 0
    held = []
    try:
        # LIMIT connections the hub has taken, the last one stopping halfway
        # through its next request, as a slow client would
        held = [served_connection(hub) for _ in range(LIMIT)]
        held[-1].sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")  # never finished
        for _ in range(3):
            status = health(hub)
            assert status is None, f"a connection beyond the limit was served: {status}"
        hub.wait_for(lambda: "127.0.0.1 already held 8 open (http-max-per-address)" in
                     hub.err_path.read_text(errors="replace"), 10, "the refusal in the hub's log")
        # one of them goes away: the address is served again
        held.pop(0).close()
        hub.wait_for(lambda: health(hub) == 200, 10, "the address served again")
        # /metrics is asked over a connection of its own too: one more closed first
        held.pop(0).close()
        hub.wait_for(lambda: health(hub) == 200, 10, "room for /metrics")
        assert refused(hub) >= 3  # and any retry above that came before a close was seen
    finally:
        for c in held:
            c.close()
