"""Start and drive ocimirror for an e2e test.

    m = Mirror(config, workdir, log_path, ca_file=..., tls=False)
    m.start()                 # waits until GET /v2/ answers 200 (10 s)
    r = m.get('/v2/library/alpine/manifests/3.19', {'Accept': ...})
    r.status, r.headers['docker-content-digest'], r.body, r.json()
    m.stop() / m.kill9() / m.start() / m.restart()

The binary is $OCIMIRROR_BIN (default /work/main/build/ocimirror), run as
`ocimirror serve -c CONFIG` with stdout and stderr appended to m.log_path.
The config is written as block-style YAML (strings double-quoted) by a tiny
emitter: the stdlib has no YAML writer.
"""

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import time

__all__ = ["Mirror", "Resp", "CIDict", "to_yaml", "mirror_bin", "deep_merge"]

DEFAULT_BIN = "/work/main/build/ocimirror"


def mirror_bin():
    return os.environ.get("OCIMIRROR_BIN") or DEFAULT_BIN


class CIDict:
    """Case-insensitive, read-mostly header map built from (name, value)
    pairs; a repeated header reads as its values joined with ', ', and
    get_all() returns them one by one."""

    def __init__(self, pairs=()):
        self._items = []
        self._map = {}
        for k, v in pairs:
            self.add(k, v)

    def add(self, k, v):
        self._items.append((k, v))
        lk = k.lower()
        self._map[lk] = (self._map[lk] + ", " + v) if lk in self._map else v

    def __getitem__(self, k):
        return self._map[k.lower()]

    def __contains__(self, k):
        return k.lower() in self._map

    def get(self, k, default=None):
        return self._map.get(k.lower(), default)

    def get_all(self, k):
        lk = k.lower()
        return [v for kk, v in self._items if kk.lower() == lk]

    def items(self):
        return list(self._items)

    def keys(self):
        return [k for k, _ in self._items]

    def __iter__(self):
        return iter(self.keys())

    def __len__(self):
        return len(self._items)

    def __repr__(self):
        return "CIDict(%r)" % (self._items,)


class Resp:
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    @property
    def text(self):
        return self.body.decode(errors="replace")

    def __repr__(self):
        b = self.body[:300]
        return "<Resp %d %s headers=%r body=%r%s>" % (
            self.status, self.reason, self.headers.items(), b,
            "..." if len(self.body) > 300 else "")


def _yaml_scalar(v):
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (int, float)):
        return str(v)
    return json.dumps(str(v))   # a JSON string is a valid YAML double-quoted scalar


def to_yaml(obj, indent=0):
    """Block-style YAML for dicts, lists and scalars."""
    pad = "  " * indent
    out = []
    if isinstance(obj, dict):
        if not obj:
            return pad + "{}\n"
        for k, v in obj.items():
            if isinstance(v, dict) and v:
                out.append("%s%s:\n%s" % (pad, k, to_yaml(v, indent + 1)))
            elif isinstance(v, list) and v:
                out.append("%s%s:\n%s" % (pad, k, to_yaml(v, indent + 1)))
            elif isinstance(v, (dict, list)):
                out.append("%s%s: %s\n" % (pad, k, "{}" if isinstance(v, dict) else "[]"))
            else:
                out.append("%s%s: %s\n" % (pad, k, _yaml_scalar(v)))
        return "".join(out)
    if isinstance(obj, list):
        if not obj:
            return pad + "[]\n"
        for v in obj:
            if isinstance(v, (dict, list)) and v:
                sub = to_yaml(v, indent + 1)
                # "- " takes the place of the first line's indentation
                first, _, rest = sub.partition("\n")
                out.append("%s- %s\n%s" % (pad, first.lstrip(), rest))
            else:
                out.append("%s- %s\n" % (pad, _yaml_scalar(v) if not isinstance(v, (dict, list))
                                         else ("{}" if isinstance(v, dict) else "[]")))
        return "".join(out)
    return pad + _yaml_scalar(obj) + "\n"


def deep_merge(base, extra):
    """extra merged into a copy of base: dicts merge recursively, anything
    else (lists included) replaces."""
    out = dict(base)
    for k, v in (extra or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path, n=6000):
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - n))
            return f.read().decode(errors="replace")
    except OSError as e:
        return "(no log: %s)" % e


class Mirror:
    """One ocimirror process with its config, storage and log.

    config: a dict written as YAML; its `listen` is filled in with a free
    port on 127.0.0.1 when absent.  tls: serve HTTPS (config must then
    carry tls.cert/key) and verify it with ca_file.  argv_prefix: a command
    that execs the mirror (e.g. prlimit), so the pid stays the mirror's."""

    def __init__(self, config, workdir, log_path, ca_file=None, tls=False, binary=None,
                 argv_prefix=()):
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        # listen first: the file reads better that way
        self.config = {"listen": config.get("listen") or "127.0.0.1:%d" % _free_port()}
        self.config.update((k, v) for k, v in config.items() if k != "listen")
        self.tls = tls
        self.ca_file = ca_file
        self.log_path = log_path
        self.binary = binary or mirror_bin()
        self.argv_prefix = list(argv_prefix)
        self.config_path = os.path.join(workdir, "ocimirror.yaml")
        self.proc = None
        self.starts = 0
        self.last_rc = None
        self.unexpected_exits = []   # exit statuses of deaths the harness did not cause
        self._ever_up = False
        self._ctx = None
        if tls:
            self._ctx = ssl.create_default_context(cafile=ca_file)

    # -- addresses ---------------------------------------------------------
    @property
    def host_port(self):
        return self.config["listen"]

    @property
    def port(self):
        return int(self.host_port.rsplit(":", 1)[1])

    @property
    def url(self):
        return ("https://" if self.tls else "http://") + self.host_port

    @property
    def storage(self):
        return self.config["storage"]["path"]

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    @property
    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    # -- process -----------------------------------------------------------
    def write_config(self):
        with open(self.config_path, "w") as f:
            f.write(to_yaml(self.config))

    def start(self, timeout=10):
        if self.alive:
            return self
        if not os.path.exists(self.binary):
            raise RuntimeError("ocimirror binary not found at %s (set OCIMIRROR_BIN)" % self.binary)
        for attempt in range(3):
            self.write_config()
            self.starts += 1
            with open(self.log_path, "ab") as logf:
                logf.write(("=== harness: start #%d of %s serve -c %s (listen %s)\n" % (
                    self.starts, self.binary, self.config_path, self.host_port)).encode())
                logf.flush()
                self.proc = subprocess.Popen(
                    self.argv_prefix + [self.binary, "serve", "-c", self.config_path],
                    stdout=logf, stderr=logf, stdin=subprocess.DEVNULL,
                    cwd=self.workdir, start_new_session=True)
            err = self._wait_ready(timeout)
            if err is None:
                self._ever_up = True
                return self
            died = self.proc.poll() is not None
            log = _tail(self.log_path)
            self._kill()
            # Lost a race for the port: move only if clients never saw it.
            if (died and not self._ever_up and attempt < 2 and
                    ("in use" in log.lower() or "eaddrinuse" in log.lower())):
                self.config["listen"] = "127.0.0.1:%d" % _free_port()
                continue
            raise RuntimeError("ocimirror did not come up (%s); log tail:\n%s" % (err, log))
        return self

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return "process exited with status %s" % self.proc.returncode
            try:
                r = self.get("/v2/", timeout=2)
                # 401 with the mirror's own Basic challenge: serving, with
                # access.anonymous false (test_public_auth.py)
                if r.status == 200 or (r.status == 401 and r.headers.get(
                        "WWW-Authenticate") == 'Basic realm="ocimirror"'):
                    return None
                last = "GET /v2/ answered %d" % r.status
            except (OSError, http.client.HTTPException) as e:
                last = repr(e)
            time.sleep(0.05)
        return "not ready after %ss: %s" % (timeout, last)

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
        self.last_rc = self.proc.returncode
        self.proc = None

    def stop(self, timeout=40):
        """SIGTERM to the process group, wait (then SIGKILL). Returns the exit
        status (None if it had to be killed)."""
        if self.proc is None:
            return None
        rc = self.proc.poll()
        if rc is not None:
            # it was gone before we asked it to stop: a crash, unless the
            # test meant it (then it would have used kill9())
            self.unexpected_exits.append(rc)
            self._note("found dead with status %s" % rc)
        else:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                rc = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._note("did not exit %ss after SIGTERM; SIGKILL" % timeout)
                rc = None
        self._kill()
        return rc

    def kill9(self):
        if self.proc is not None and self.proc.poll() is None:
            self._note("SIGKILL")
        self._kill()

    def restart(self, timeout=10):
        self.stop()
        return self.start(timeout)

    def _note(self, text):
        with open(self.log_path, "ab") as f:
            f.write(("=== harness: %s\n" % text).encode())

    # -- requests ----------------------------------------------------------
    def connection(self, timeout=60):
        if self.tls:
            return http.client.HTTPSConnection("127.0.0.1", self.port, context=self._ctx,
                                               timeout=timeout)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def get(self, path, headers=None, method="GET", body=None, timeout=60):
        """One request on a fresh connection → Resp."""
        conn = self.connection(timeout)
        try:
            hdrs = {"User-Agent": "om-e2e"}
            hdrs.update(headers or {})
            conn.request(method, path, body=body, headers=hdrs)
            r = conn.getresponse()
            data = r.read()
            return Resp(r.status, r.reason, CIDict(r.getheaders()), data)
        finally:
            conn.close()

    # -- log ---------------------------------------------------------------
    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def log_json(self):
        """The log's JSON lines, parsed (other lines skipped)."""
        out = []
        for line in self.log_text().splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def log_tail(self, n=6000):
        return _tail(self.log_path, n)

    def sanitizer_reports(self):
        """Lines around AddressSanitizer / UBSan / LeakSanitizer reports in
        the log (empty when the binary is not sanitized or all is well)."""
        text = self.log_text()
        out = []
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if ("ERROR: AddressSanitizer" in line or "ERROR: LeakSanitizer" in line or
                    "runtime error:" in line or "WARNING: ThreadSanitizer" in line):
                out.append("\n".join(lines[i:i + 25]))
        return out
