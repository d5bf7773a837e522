"""The hub's HTTP API over TLS, and plain HTTP kept on this machine.

Another hospital's HIS/EMR, `dxhub lookup` and the monitoring reach the API
across the consortium's network with a facility API key: both the key and
the patient data must travel encrypted.  Checked here with real TLS on
127.0.0.1: OpenSSL's CLI makes the CA and certificates, curl and Python's
ssl module are the clients beside dxhub's own.
"""
import calendar
import os
import ssl
import subprocess
import time
import http.client

import pytest

from hubutil import Hub, HubError, dataset_bytes, dxhub_path, storescu, synth_instance, uid_root
from tlsutil import Pki, openssl


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("pki"))


def dxhub(*args, env=None, timeout=60):
    return subprocess.run([str(dxhub_path()), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout, env={**os.environ, **(env or {})})


def https_get(port, path, ca, token=None, headers=None):
    ctx = ssl.create_default_context(cafile=str(ca))
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=20)
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {token}"
    try:
        c.request("GET", path, headers=h)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def not_after(cert):
    text = openssl("x509", "-in", str(cert), "-noout", "-enddate", cwd=cert.parent).strip()
    return calendar.timegm(time.strptime(text.split("=", 1)[1], "%b %d %H:%M:%S %Y GMT"))


def test_the_api_serves_https_to_its_clients_and_the_key_travels_encrypted(pki, tmp_path):
    cert, key = pki.server("hub")
    data = tmp_path / "hub"
    token = dxhub("keygen", "--api-key", "county", "--keys", data / "keys").stdout.decode().strip()
    with Hub(data, extra=["--tls-cert", cert, "--tls-key", key]) as hub:
        assert hub.ready["api"] == f"https://127.0.0.1:{hub.http_port}/"
        # Python's TLS client, checking the chain and the address
        status, body = https_get(hub.http_port, "/api/v1/studies", pki.ca, token)
        assert status == 200 and b'"studies"' in body
        status, _ = https_get(hub.http_port, "/api/v1/studies", pki.ca)
        assert status == 401, "TLS does not replace the API key"
        # an instance's bytes, whole and by range, come through TLS unchanged
        root = uid_root("tls")
        src = synth_instance(tmp_path / "ct.dcm", f"{root}.1", f"{root}.2", f"{root}.3", 1, rows=256, cols=256)
        assert storescu(hub.dicom_port, [src]).succeeded() == [str(src)]
        status, whole = https_get(hub.http_port, f"/api/v1/instances/{root}.3/file", pki.ca, token)
        assert status == 200 and dataset_bytes(whole) == dataset_bytes(src)
        status, part = https_get(hub.http_port, f"/api/v1/instances/{root}.3/file", pki.ca, token,
                                 {"Range": "bytes=1000-70999"})
        assert status == 206 and part == whole[1000:71000]
        # curl, as an HIS would
        r = subprocess.run(["curl", "-s", "--cacert", str(pki.ca), "-o", "/dev/null", "-w", "%{http_code}",
                            f"https://127.0.0.1:{hub.http_port}/api/v1/health"], stdout=subprocess.PIPE, timeout=30)
        assert r.stdout == b"200"
        # plain HTTP on the same port gets no answer at all
        with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
            hub.request("/api/v1/health", timeout=5)
        # the operator's monitoring sees when the certificate ends
        _, metrics = https_get(hub.http_port, "/metrics", pki.ca)
        line = next(l for l in metrics.decode().splitlines()
                    if l.startswith("dxhub_tls_certificate_expiry_timestamp_seconds "))
        assert int(line.split()[1]) == not_after(cert)
        # dxhub's own clients, with the CA given
        r = dxhub("status", "--hub", f"https://127.0.0.1:{hub.http_port}", "--ca", pki.ca)
        assert r.returncode == 0, r.stderr.decode()
        assert "certificate valid 19 more days -- RENEW IT" in r.stdout.decode() or \
            "certificate valid 20 more days -- RENEW IT" in r.stdout.decode()
        r = dxhub("lookup", "--hub", f"https://localhost:{hub.http_port}", "--ca", pki.ca, "--patient", "P1",
                  "--local", env={"DXHUB_API_KEY": token})
        assert r.returncode == 0, r.stderr.decode()
        assert r.stdout.decode().startswith("patient P1: 0 exams")
        # asked over http:// by mistake: said so, not "not HTTP"
        r = dxhub("status", "--hub", f"http://127.0.0.1:{hub.http_port}")
        assert r.returncode == 1
        assert "closed without an answer (is it an https:// address?)" in r.stderr.decode()
    assert "HTTPS 127.0.0.1" in hub.err_path.read_text()


def test_a_client_refuses_a_hub_it_cannot_trust(pki, tmp_path):
    cert, key = pki.server("elsewhere", san="DNS:hub.elsewhere.example")
    other = Pki(tmp_path / "other", name="other")
    with Hub(tmp_path / "hub", extra=["--tls-cert", cert, "--tls-key", key]) as hub:
        url = f"https://127.0.0.1:{hub.http_port}"
        r = dxhub("status", "--hub", url, "--ca", other.ca)
        assert r.returncode == 1
        assert "certificate is not trusted: unable to get local issuer certificate" in r.stderr.decode()
        r = dxhub("status", "--hub", url)  # the system's CAs: not ours
        assert r.returncode == 1
        assert "(give the CA that issued it with --ca FILE)" in r.stderr.decode()
        # the right CA, but the certificate names another host
        r = dxhub("lookup", "--hub", url, "--ca", pki.ca, "--patient", "P1", env={"DXHUB_API_KEY": "x" * 43})
        assert r.returncode == 1
        assert "mismatch" in r.stderr.decode(), r.stderr.decode()
        r = dxhub("status", "--hub", url, "--ca", tmp_path / "missing.pem")
        assert r.returncode == 1 and "cannot read the CA certificates in" in r.stderr.decode()


def test_an_issuing_cas_certificate_goes_out_with_the_hubs(pki, tmp_path):
    issuing = pki.intermediate("hospital-http")
    chain, key = issuing.chained("hub-chained")
    with Hub(tmp_path / "hub", extra=["--tls-cert", chain, "--tls-key", key]) as hub:
        r = dxhub("status", "--hub", f"https://127.0.0.1:{hub.http_port}", "--ca", pki.ca)
        assert r.returncode == 0, r.stderr.decode()
        assert https_get(hub.http_port, "/api/v1/health", pki.ca)[0] == 200


def test_plain_http_beyond_loopback_is_refused(tmp_path):
    hub = Hub(tmp_path / "hub", extra=["--http-bind", "0.0.0.0"])
    with pytest.raises(HubError):
        hub.start()
    log = hub.err_path.read_text()
    assert "plain HTTP on 0.0.0.0 would send patient data and API keys unencrypted" in log
    assert "tls-cert and tls-key" in log


def bad_files(pki, tmp_path):
    """(name, cert, key, what the log must say) for every way the pair can be wrong."""
    good_cert, good_key = pki.server("good")
    other_cert, _ = pki.server("other")
    expired_cert, expired_key = pki.server("expired", days="-1")
    loose = tmp_path / "loose.key"
    loose.write_bytes(good_key.read_bytes())
    loose.chmod(0o644)
    sm2 = tmp_path / "sm2.key"
    openssl("genpkey", "-algorithm", "SM2", "-out", str(sm2), cwd=tmp_path)
    sm2.chmod(0o600)
    enc = tmp_path / "enc.key"
    openssl("pkey", "-in", str(good_key), "-aes256", "-passout", "pass:secret", "-out", str(enc), cwd=tmp_path)
    enc.chmod(0o600)
    return [
        ("loose", good_cert, loose, "is readable by every user of this machine (mode 0644)"),
        ("other", other_cert, good_key, "is not the key of the certificate in tls-cert"),
        ("expired", expired_cert, expired_key, "expired on"),
        ("sm2", good_cert, sm2, "is an SM2 key"),
        ("encrypted", good_cert, enc, "not an unencrypted PEM private key"),
        ("not-a-cert", good_key, good_key, "no PEM certificate in it"),
        ("missing", tmp_path / "nope.pem", good_key, "nope.pem: No such file or directory"),
    ]


def test_a_wrong_certificate_or_key_stops_the_hub_before_it_takes_data(pki, tmp_path):
    for name, cert, key, why in bad_files(pki, tmp_path):
        data = tmp_path / f"hub-{name}"
        hub = Hub(data, extra=["--tls-cert", cert, "--tls-key", key])
        with pytest.raises(HubError):
            hub.start()
        log = hub.err_path.read_text()
        assert why in log, f"{name}: {log}"
        assert not (data / "data.mdb").exists(), f"{name}: the store was opened"
    hub = Hub(tmp_path / "hub-half", extra=["--tls-cert", pki.server("half")[0]])
    with pytest.raises(HubError):
        hub.start()
    assert "tls-cert and tls-key go together (tls-key is missing)" in hub.err_path.read_text()
