"""DICOM TLS (PS3.15 Annex B) on the hub's and the edge's DICOM ports.

A modality on the hospital or clinic LAN is otherwise known only by the AE
title it claims.  With dicom-tls-cert/-key the port speaks TLS (BCP 195,
TLS 1.2 or later); with dicom-tls-ca a caller must also present a
certificate from that CA.  DCMTK's storescu is the modality: with its
certificate, without one, from another CA, and without TLS at all.
"""
import re
import subprocess
import time

import pytest

from edgeutil import Edge, free_port, keygen
from hubutil import Hub, dataset_bytes, synth_instance, uid_root
from tlsutil import Pki, openssl


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("dicom-pki"))


def send(port, files, *tls, aec="DXHUB"):
    """storescu with its TLS options; (returncode, output)."""
    args = ["storescu", "-v", "-nh", "-aet", "CT1", "-aec", aec, "-to", "20", "-ta", "20", "-td", "20", *map(str, tls),
            "127.0.0.1", str(port), *map(str, files)]
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    return r.returncode, r.stdout.decode(errors="replace")


def dicom_tls(cert, key, ca=None):
    """The role's options for DICOM TLS (ca: callers must show a certificate)."""
    return ["--dicom-tls-cert", cert, "--dicom-tls-key", key] + (["--dicom-tls-ca", ca] if ca else [])


def with_certificate(cert, key, ca):
    """storescu's options for a modality with its certificate, trusting ca."""
    return ("+tls", key, cert, "+cf", ca)


def instance(tmp_path, name):
    root = uid_root(f"dicom-tls-{name}")
    return synth_instance(tmp_path / f"{name}.dcm", f"{root}.1", f"{root}.2", f"{root}.3", 1), f"{root}.3"


def test_a_modality_with_its_certificate_stores_and_every_other_caller_is_turned_away(pki, tmp_path):
    hub_cert, hub_key = pki.server("dicom-hub")
    ct_cert, ct_key = pki.server("ct1", san="DNS:ct1.example")
    stranger = tmp_path / "stranger"
    other = Pki(stranger, name="other")
    odd_cert, odd_key = other.server("odd", san="DNS:odd.example")
    with Hub(tmp_path / "hub", extra=dicom_tls(hub_cert, hub_key, pki.ca)) as hub:
        good, sop = instance(tmp_path, "good")
        rc, out = send(hub.dicom_port, [good], *with_certificate(ct_cert, ct_key, pki.ca))
        assert rc == 0, out
        status, _, body = hub.request(f"/api/v1/instances/{sop}/file")
        assert status == 200 and dataset_bytes(body) == dataset_bytes(good), "stored as sent"

        refused = [
            ("plain DICOM", (), "(the caller does not speak DICOM TLS)"),
            ("TLS without a certificate", ("+tla", "+cf", pki.ca), "peer did not return a certificate"),
            ("a certificate from another CA", with_certificate(odd_cert, odd_key, pki.ca),
             "TLS error: certificate verify failed"),
        ]
        for what, tls, _ in refused:
            f, sop_x = instance(tmp_path, what.replace(" ", "-"))
            rc, out = send(hub.dicom_port, [f], *tls)
            assert rc != 0, f"{what}: {out}"
            status, _, _ = hub.request(f"/api/v1/instances/{sop_x}/file")
            assert status == 404, f"{what} was stored"
        log = hub.err_path.read_text()
        serial = openssl("x509", "-in", str(ct_cert), "-noout", "-serial", cwd=tmp_path).strip().split("=")[1]
        assert re.search(r"CT1 -> DXHUB from 127\.0\.0\.1 accepted \(\d+ of \d+ contexts\) over TLS, "
                         rf"its certificate verified: CN=ct1, serial {serial}\n", log), log
        for what, _, why in refused:
            assert why in log, f"{what}: {log[-2000:]}"
        # and the port keeps serving the modality it knows
        again, sop2 = instance(tmp_path, "again")
        rc, out = send(hub.dicom_port, [again], *with_certificate(ct_cert, ct_key, pki.ca))
        assert rc == 0, out


def test_a_certificate_from_an_issuing_ca_goes_out_with_its_chain(pki, tmp_path):
    """The modality trusts the consortium's root only: the hub must send the
    issuing CA's certificate after its own (the file holds both)."""
    issuing = pki.intermediate("hospital")
    chain, key = issuing.chained("dicom-hub-chained")
    ct_cert, ct_key = pki.server("ct-chain", san="DNS:ct.example")
    with Hub(tmp_path / "hub", extra=dicom_tls(chain, key, pki.ca)) as hub:
        f, sop = instance(tmp_path, "chained")
        rc, out = send(hub.dicom_port, [f], *with_certificate(ct_cert, ct_key, pki.ca))
        assert rc == 0, out
        assert hub.request(f"/api/v1/instances/{sop}/file")[0] == 200


def test_without_a_ca_the_port_is_encrypted_and_any_caller_may_store(pki, tmp_path):
    hub_cert, hub_key = pki.server("dicom-hub-open")
    with Hub(tmp_path / "hub", extra=dicom_tls(hub_cert, hub_key)) as hub:
        f, sop = instance(tmp_path, "anon")
        # the modality checks the hub's certificate; the hub asks for none
        rc, out = send(hub.dicom_port, [f], "+tla", "+cf", pki.ca)
        assert rc == 0, out
        assert hub.request(f"/api/v1/instances/{sop}/file")[0] == 200
        assert "over TLS" in hub.err_path.read_text()
        # The certificate's end is said ahead (it is good for 20 days here): log, /metrics, dxhub status.
        assert re.search(rf"warn serve: DICOM listener: dicom-tls-cert {re.escape(str(hub_cert))} expires in "
                         r"(19|20) days: modalities cannot send after that", hub.err_path.read_text())
        end = hub.metrics()["dxhub_dicom_tls_certificate_expiry_timestamp_seconds"]
        assert abs(end - (time.time() + 20 * 86400)) < 3600, end
        st = subprocess.run([str(hub.args[0]), "status", "--hub", f"http://127.0.0.1:{hub.http_port}"],
                            capture_output=True, text=True, timeout=30).stdout
        assert re.search(r"dicom tls\s+certificate valid (19|20) more days -- RENEW IT", st), st


def test_the_clinic_edge_takes_dicom_tls_too(pki, tmp_path):
    edge_cert, edge_key = pki.server("dicom-edge")
    ct_cert, ct_key = pki.server("clinic-dr", san="DNS:dr.example")
    hubkeys = tmp_path / "hubkeys"
    keygen(hubkeys, "hub")
    edge = Edge(tmp_path / "edge", f"tcp://127.0.0.1:{free_port()}", hubkeys / "hub.pub", tmp_path,
                extra=dicom_tls(edge_cert, edge_key, pki.ca))
    edge.make_key()
    edge.start()
    try:
        f, _ = instance(tmp_path, "clinic")
        rc, out = send(edge.dicom_port, [f], *with_certificate(ct_cert, ct_key, pki.ca), aec="DXEDGE")
        assert rc == 0, out
        rc, out = send(edge.dicom_port, [instance(tmp_path, "clinic-plain")[0]], aec="DXEDGE")
        assert rc != 0
        assert edge.status()["waiting"] == 1, edge.status_text()
    finally:
        edge.stop()


@pytest.mark.parametrize("role", ["serve", "edge"])
def test_wrong_dicom_tls_settings_stop_the_role_naming_the_file(pki, tmp_path, role):
    cert, key = pki.server(f"bad-{role}")
    hubkeys = tmp_path / "hubkeys"
    keygen(hubkeys, "hub")
    cases = [
        (["--dicom-tls-key", key], "dicom-tls-cert and dicom-tls-key go together (dicom-tls-cert is missing)"),
        (dicom_tls(cert, key, tmp_path / "no-ca.pem"),
         "dicom-tls-ca " + str(tmp_path / "no-ca.pem") + ": No such file or directory"),
        (dicom_tls(cert, key, key), "not a PEM certificate chain"),
        (dicom_tls(pki.ca, key), "is not the key of the certificate in dicom-tls-cert"),
    ]
    for i, (opts, why) in enumerate(cases):
        data = tmp_path / f"{role}-{i}"
        if role == "serve":
            args = ["serve", "--data", data, "--dicom-port", 0, "--http-port", 0, "--edge-port", 0,
                    "--reader-port", 0, "--peer-port", 0]
        else:
            args = ["edge", "--data", data, "--hub", "tcp://127.0.0.1:1", "--hub-key", hubkeys / "hub.pub",
                    "--dicom-port", 0]
        r = subprocess.run([str(a) for a in [Hub(data).args[0]] + args + opts], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        err = r.stderr.decode()
        assert r.returncode != 0 and why in err, (opts, err)
        assert not (data / "data.mdb").exists(), "the store was opened before the settings were checked"
