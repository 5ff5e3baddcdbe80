"""An upstream registry for the e2e tests: CNCF distribution 2.8
(`/usr/bin/docker-registry`, Debian package docker-registry) on a free
127.0.0.1 port, TLS with a certificate from the test CA, filesystem storage,
optionally Docker-Hub-style bearer token auth, and its access log turned on
so tests can count what the mirror asked for.

    r = Registry('hub', workdir, log_dir, ca, token_service=ts)
    r.start(); r.url; r.host_port
    r.count('GET', r'/blobs/sha256:ab..')   # from the access log
    r.reset_counts(); r.stop(); r.start()   # same data, same port

Access log lines (gorilla's combined format, one per completed request):
    127.0.0.1 - - [29/Nov/2026:02:29:13 +0000] "GET /v2/ HTTP/2.0" 200 2 "" "curl/7.88.1"
They are written when the handler returns, which can be a moment after the
client read the last byte: count() waits `settle` seconds first.
"""

import os
import re
import signal
import socket
import ssl
import subprocess
import time
import http.client

__all__ = ["Registry", "free_port"]

REGISTRY_BIN = os.environ.get("OM_REGISTRY_BIN", "/usr/bin/docker-registry")
ACCESS_RE = re.compile(r'^\S+ \S+ \S+ \[[^\]]*\] "([A-Z]+) (\S+) HTTP/[0-9.]+" (\d{3}) (\d+|-)')


def free_port():
    """A port that was free a moment ago (the caller retries on a clash)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    def __init__(self, name, workdir, log_dir, ca, token_service=None, port=None):
        self.name = name
        self.workdir = workdir
        self.data_dir = os.path.join(workdir, "data")
        os.makedirs(self.data_dir, exist_ok=True)
        self.log_path = os.path.join(log_dir, "registry-%s.log" % name)
        self.ca_file = ca.cert
        self.cert, self.key = ca.issue("registry-" + name)
        self.tokens = token_service
        self.port = port or free_port()
        self.config_path = os.path.join(workdir, "config.yml")
        self.proc = None
        self._ever_up = False
        self._count_offset = 0
        self._ctx = ssl.create_default_context(cafile=self.ca_file)

    @property
    def host_port(self):
        return "127.0.0.1:%d" % self.port

    @property
    def url(self):
        return "https://127.0.0.1:%d" % self.port

    @property
    def storage_root(self):
        return self.data_dir

    def _write_config(self):
        lines = [
            "version: 0.1",
            "log:",
            "  level: info",
            "  formatter: text",
            "  accesslog:",
            "    disabled: false",
            "storage:",
            "  filesystem:",
            "    rootdirectory: %s" % self.data_dir,
            "  delete:",
            "    enabled: true",
            "  maintenance:",
            "    uploadpurging:",
            "      enabled: false",
            "http:",
            "  addr: 127.0.0.1:%d" % self.port,
            "  secret: om-e2e-%s" % self.name,
            "  tls:",
            "    certificate: %s" % self.cert,
            "    key: %s" % self.key,
        ]
        if self.tokens is not None:
            lines += [
                "auth:",
                "  token:",
                "    realm: %s" % self.tokens.realm,
                "    service: %s" % self.tokens.service,
                "    issuer: %s" % self.tokens.issuer,
                "    rootcertbundle: %s" % self.ca_file,
            ]
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self, timeout=10):
        """Start (or restart after stop()) and wait until /v2/ answers."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        for attempt in range(3):
            self._write_config()
            with open(self.log_path, "ab") as logf:
                logf.write(b"=== harness: starting registry %s on %s\n" % (
                    self.name.encode(), self.host_port.encode()))
                logf.flush()
                self.proc = subprocess.Popen(
                    [REGISTRY_BIN, "serve", self.config_path],
                    stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True)
            if self._wait_ready(timeout):
                self._ever_up = True
                return self
            died = self.proc.poll() is not None
            log = _tail(self.log_path)
            self._kill()
            # Lost a race for a fresh port: take another, but never move a
            # registry that mirrors already point at.
            if died and "address already in use" in log and attempt < 2 and not self._ever_up:
                self.port = free_port()   # lost a race for the port
                continue
            raise RuntimeError("registry %s did not come up on %s:\n%s" % (
                self.name, self.host_port, log))
        return self

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                conn = http.client.HTTPSConnection("127.0.0.1", self.port,
                                                   context=self._ctx, timeout=2)
                conn.request("GET", "/v2/", headers={"User-Agent": "om-e2e-harness-ping"})
                status = conn.getresponse().status
                conn.close()
                if status in (200, 401):
                    return True
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.05)
        return False

    def _kill(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.proc = None

    def stop(self, timeout=10):
        """SIGTERM the registry (its whole process group) and wait; the data
        directory and the port are kept for start()."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        self._kill()

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    # -- access log --------------------------------------------------------
    def requests(self, settle=0.3):
        """[(method, path, status)] from the access log since reset_counts()."""
        if settle:
            time.sleep(settle)
        out = []
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._count_offset)
                data = f.read()
        except FileNotFoundError:
            return out
        for line in data.decode(errors="replace").splitlines():
            m = ACCESS_RE.match(line)
            if m and "om-e2e-harness" not in line:
                out.append((m.group(1), m.group(2), int(m.group(3))))
        return out

    def count(self, method="GET", path_re=r"/blobs/", status=None, settle=0.3):
        """How many requests with this method (None = any) whose path matches
        path_re (re.search; None = any) and, if given, this status."""
        rx = re.compile(path_re) if path_re is not None else None
        n = 0
        for m, p, s in self.requests(settle=settle):
            if method is not None and m != method:
                continue
            if rx is not None and not rx.search(p):
                continue
            if status is not None and s != status:
                continue
            n += 1
        return n

    def reset_counts(self):
        """Count only requests logged after this call (bytes already in the
        log are skipped; waits briefly so in-flight lines land first)."""
        time.sleep(0.2)
        try:
            self._count_offset = os.path.getsize(self.log_path)
        except FileNotFoundError:
            self._count_offset = 0


def _tail(path, n=4000):
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - n))
            return f.read().decode(errors="replace")
    except OSError as e:
        return "(no log: %s)" % e
