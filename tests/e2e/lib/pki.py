"""A throwaway certificate authority for the e2e tests, driven through the
`openssl` command line (the stdlib has no X.509 or RSA).

    ca = CA(directory)                  # creates ca.key + ca.pem
    cert, key = ca.issue('registry')    # leaf for 127.0.0.1 and localhost
    cert, key = ca.issue_signing('tokens')  # leaf for signing JWTs

Everything is RSA 2048 (fast enough: ~50 ms per key) and valid for a few
days, so clock skew between processes never matters.
"""

import os
import subprocess

__all__ = ["CA", "openssl"]


def openssl(*args, input=None, timeout=60):
    """Run `openssl ARGS`; raise with its stderr when it fails."""
    proc = subprocess.run(["openssl", *args], input=input, capture_output=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (" ".join(args),
                                                      proc.stderr.decode(errors="replace")))
    return proc.stdout


class CA:
    """A self-signed root in `directory` (ca.key, ca.pem) that issues leaves."""

    def __init__(self, directory, name="ocimirror e2e test CA"):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.key = os.path.join(directory, "ca.key")
        self.cert = os.path.join(directory, "ca.pem")
        self._serial = 1
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
                "-keyout", self.key, "-out", self.cert, "-days", "7",
                "-subj", "/CN=" + name,
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    @property
    def ca_file(self):
        return self.cert

    def _sign(self, name, ext_lines):
        key = os.path.join(self.dir, name + ".key")
        csr = os.path.join(self.dir, name + ".csr")
        cert = os.path.join(self.dir, name + ".pem")
        ext = os.path.join(self.dir, name + ".ext")
        with open(ext, "w") as f:
            f.write("\n".join(ext_lines) + "\n")
        openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-sha256",
                "-keyout", key, "-out", csr, "-subj", "/CN=" + name)
        self._serial += 1
        openssl("x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key,
                "-set_serial", str(self._serial), "-days", "7", "-sha256",
                "-extfile", ext, "-out", cert)
        return cert, key

    def issue(self, name, sans=("127.0.0.1", "localhost")):
        """A TLS server leaf; returns (cert path, key path)."""
        alt = ",".join(("IP:" + s) if s[0].isdigit() or ":" in s else ("DNS:" + s)
                       for s in sans)
        return self._sign(name, [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            "extendedKeyUsage=serverAuth,clientAuth",
            "subjectAltName=" + alt,
        ])

    def issue_signing(self, name):
        """A leaf for signing tokens (goes in a JWT's x5c); (cert, key)."""
        return self._sign(name, [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature",
        ])


def cert_der_b64(cert_path):
    """Standard base64 of the certificate's DER (the form x5c wants)."""
    import base64
    der = openssl("x509", "-in", cert_path, "-outform", "DER")
    return base64.b64encode(der).decode()
