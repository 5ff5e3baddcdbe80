"""A Docker-Hub-style token service for the e2e upstream registries.

The server itself is tokensvc_main.py, run as its own process (so a test can
see the mirror talk to a real, separate realm host).  This module holds:

  * sign_jwt(): RS256 JWT signing through `openssl dgst -sha256 -sign`
    (shared by the server and by tests that want to forge tokens);
  * TokenService: starts/stops the server process and reads its counters.

Protocol (what distribution 2.8 and Docker Hub do):
  GET /token?service=registry.docker.io&scope=repository:library/x:pull[,push]
      [&scope=...] [Authorization: Basic user:password]
  → 200 {"token": JWT, "access_token": JWT, "expires_in": 300,
         "issued_at": "2024-...Z"}
  The JWT header is {"typ":"JWT","alg":"RS256","x5c":[DER of the signing
  cert]}; the signing cert is issued by the test CA, which is the registry's
  rootcertbundle.  Claims: iss, sub, aud (= service), exp, nbf, iat, jti,
  access: [{type, name, actions}].

  Anonymous pull of a repository that does not exist (no _manifests directory
  in the registry's storage) or that is listed as private → a token granting
  nothing, so the registry answers 401 like Docker Hub.  Users from the config
  log in with Basic auth; a user with access "*" (the harness's 'pusher') gets
  every action it asks for; wrong credentials → 401.

  GET /stats → {"count": N, "requests": [{"user","service","scopes",
  "granted"}...]}; POST /stats/reset clears them.
  POST /control {"fail_status": 503|0, "delay": seconds} → fault injection.
"""

import base64
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request

__all__ = ["TokenService", "sign_jwt", "b64url"]

HERE = os.path.dirname(os.path.abspath(__file__))


def b64url(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_jwt(claims, key_path, x5c_b64):
    """An RS256 JWT over `claims`, header carrying x5c=[x5c_b64]."""
    header = {"typ": "JWT", "alg": "RS256", "x5c": [x5c_b64]}
    signing_input = (b64url(json.dumps(header, separators=(",", ":"))) + "." +
                     b64url(json.dumps(claims, separators=(",", ":"))))
    proc = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key_path],
                          input=signing_input.encode(), capture_output=True,
                          timeout=30)
    if proc.returncode != 0:
        raise RuntimeError("openssl dgst -sign failed: " + proc.stderr.decode(errors="replace"))
    return signing_input + "." + b64url(proc.stdout)


class TokenService:
    """The token service process.  Attributes: url, realm (url + '/token'),
    host_port, issuer, service, log_path."""

    def __init__(self, workdir, log_dir, ca, storage_root, issuer="om-e2e-tokens",
                 service="registry.docker.io", users=None, private=()):
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.ca_file = ca.cert
        self.issuer = issuer
        self.service = service
        self.log_path = os.path.join(log_dir, "tokensvc.log")
        tls_cert, tls_key = ca.issue("tokensvc")
        sign_cert, sign_key = ca.issue_signing("tokensigner")
        self.sign_cert, self.sign_key = sign_cert, sign_key
        self.users = users if users is not None else {
            "pusher": {"password": "pusher-secret", "access": "*"}}
        self.config_path = os.path.join(workdir, "tokensvc.json")
        self.port_file = os.path.join(workdir, "tokensvc.port")
        with open(self.config_path, "w") as f:
            json.dump({
                "listen": "127.0.0.1",
                "port": 0,
                "port_file": self.port_file,
                "tls_cert": tls_cert, "tls_key": tls_key,
                "sign_cert": sign_cert, "sign_key": sign_key,
                "issuer": issuer,
                "users": self.users,
                "private": list(private),
                "storage_root": storage_root,
            }, f, indent=1)
        self.proc = None
        self.port = None
        self._ctx = ssl.create_default_context(cafile=self.ca_file)

    # -- process ----------------------------------------------------------
    def start(self, timeout=10):
        if os.path.exists(self.port_file):
            os.unlink(self.port_file)
        logf = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-u", os.path.join(HERE, "tokensvc_main.py"), self.config_path],
                stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        finally:
            logf.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("token service died:\n" + _tail(self.log_path))
            try:
                with open(self.port_file) as f:
                    text = f.read().strip()
                if text:
                    self.port = int(text)
                    break
            except (FileNotFoundError, ValueError):
                pass
            time.sleep(0.05)
        else:
            self.stop()
            raise RuntimeError("token service did not start in %ss:\n%s" % (timeout, _tail(self.log_path)))
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self.proc = None

    @property
    def host_port(self):
        return "127.0.0.1:%d" % self.port

    @property
    def url(self):
        return "https://127.0.0.1:%d" % self.port

    @property
    def realm(self):
        return self.url + "/token"

    # -- client side -------------------------------------------------------
    def _call(self, method, path, body=None):
        req = urllib.request.Request(self.url + path, method=method, data=body)
        with urllib.request.urlopen(req, context=self._ctx, timeout=10) as resp:
            return json.loads(resp.read() or b"{}")

    def stats(self):
        """{"count": N, "requests": [...]} since the last reset."""
        return self._call("GET", "/stats")

    def count(self, scope_re=None, user=None):
        """Token requests since the last reset, optionally only those with a
        scope matching the regex and/or from the given user ('' = anonymous)."""
        import re
        n = 0
        for r in self.stats()["requests"]:
            if user is not None and r["user"] != user:
                continue
            if scope_re is not None and not any(re.search(scope_re, s) for s in r["scopes"]):
                continue
            n += 1
        return n

    def reset_counts(self):
        self._call("POST", "/stats/reset", b"")

    def set_fault(self, fail_status=0, delay=0.0):
        """Make every /token answer fail_status (0 = normal) after delay s."""
        self._call("POST", "/control", json.dumps(
            {"fail_status": fail_status, "delay": delay}).encode())

    def token(self, scope, user=None, password=None, service=None):
        """Ask for a token as a client would; returns the parsed JSON."""
        from urllib.parse import urlencode
        q = urlencode({"service": service or self.service, "scope": scope})
        req = urllib.request.Request(self.realm + "?" + q)
        if user is not None:
            req.add_header("Authorization", "Basic " + base64.b64encode(
                ("%s:%s" % (user, password)).encode()).decode())
        with urllib.request.urlopen(req, context=self._ctx, timeout=10) as resp:
            return json.loads(resp.read())


def _tail(path, n=4000):
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - n))
            return f.read().decode(errors="replace")
    except OSError as e:
        return "(no log: %s)" % e
