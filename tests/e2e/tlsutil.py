"""TLS fixtures for the tests: a facility CA (ECDSA P-256) made with
OpenSSL's command line and the server or client certificates it issues."""
import subprocess
from pathlib import Path


def openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout.decode()


class Pki:
    """A facility CA (ECDSA P-256) and the certificates it issues (servers' and modalities')."""

    def __init__(self, d: Path, name="ca"):
        self.d = d
        d.mkdir(parents=True, exist_ok=True)
        self.ca = d / f"{name}.pem"
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{name}.key", "-out", self.ca.name, "-days", "30", "-subj", f"/CN={name} test CA", cwd=d)
        self.ca_key = d / f"{name}.key"

    def server(self, stem, san="IP:127.0.0.1,DNS:localhost", days="20", keytype=("ec", "ec_paramgen_curve:P-256")):
        algo, opt = keytype
        args = ["req", "-newkey", algo] + (["-pkeyopt", opt] if opt else []) + \
            ["-nodes", "-keyout", f"{stem}.key", "-out", f"{stem}.csr", "-subj", f"/CN={stem}"]
        openssl(*args, cwd=self.d)
        (self.d / f"{stem}.ext").write_text(f"subjectAltName={san}\n")
        openssl("x509", "-req", "-in", f"{stem}.csr", "-CA", self.ca.name, "-CAkey", self.ca_key.name,
                "-CAcreateserial", "-out", f"{stem}.pem", "-days", days, "-extfile", f"{stem}.ext", cwd=self.d)
        key = self.d / f"{stem}.key"
        key.chmod(0o600)
        return self.d / f"{stem}.pem", key

    def intermediate(self, name):
        """A CA this one signs (as a hospital's issuing CA under the
        consortium's root); its own certificates go out with it appended
        (chained())."""
        sub = Pki.__new__(Pki)
        sub.d = self.d
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f"{name}.key",
                "-out", f"{name}.csr", "-subj", f"/CN={name} issuing CA", cwd=self.d)
        (self.d / f"{name}.ext").write_text("basicConstraints=critical,CA:TRUE\n"
                                            "keyUsage=critical,keyCertSign,cRLSign\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", self.ca.name, "-CAkey", self.ca_key.name,
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "30", "-extfile", f"{name}.ext", cwd=self.d)
        sub.ca, sub.ca_key = self.d / f"{name}.pem", self.d / f"{name}.key"
        return sub

    def chained(self, stem, **kw):
        """server(), its certificate file followed by this CA's."""
        cert, key = self.server(stem, **kw)
        chain = self.d / f"{stem}.chain.pem"
        chain.write_bytes(cert.read_bytes() + self.ca.read_bytes())
        return chain, key
