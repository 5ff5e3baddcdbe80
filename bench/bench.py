#!/usr/bin/env python3
"""The ocimirror benchmark suite: P1-P6 of issue 3, side by side with
Debian's docker-registry (CNCF distribution 2.8) in proxy mode and nginx
serving the same files with sendfile, all in ONE run on one machine.

Run it through bench/run.sh (builds RelWithDebInfo, enters a loopback-only
network namespace); by hand:

    scripts/netns-run python3 -u bench/bench.py [--quick] [--only P1,P4]
        [--runs N] [--perf] [--update-results] [--keep]

What it sets up (under a temp dir, removed at the end unless --keep):
  - a CA and ONE upstream: docker-registry 2.8 on 127.0.0.1 with TLS and
    no auth, its access log on (upstream bytes are counted from it);
  - generated images (random, incompressible blobs, like gzip'd layers):
      bench/thirty:1  30 layers, 100 MiB in all (16 MiB .. 256 KiB)
      bench/big:1     one 512 MiB layer
      bench/mid:1     one 32 MiB layer (P5: RSS must not grow with size)
  - ocimirror (OCIMIRROR_BIN, default build/ocimirror) with that upstream
    as its only one, in its search order, so clients use the same paths
    (/v2/bench/thirty/...) on the mirror and on distribution;
  - docker-registry in proxy mode (proxy.remoteurl = the upstream), own
    storage, SSL_CERT_FILE = the CA;
  - nginx (`sendfile on`, 2 workers) whose root is the mirror's storage,
    so it serves the very blob and manifest files the mirror serves.

Load generators: curl (one process per client; pulls use one curl with
--parallel-max 3, like docker's 3 concurrent layer downloads, HTTP/1.1
everywhere), wrk for P4, a Python keep-alive client for P6.  They share
the machine's cores with the servers: on a 2-core machine that caps
every figure, and ratios are what to read.

Every wait is bounded; every process is started in its own session and
stopped by process group; Ctrl-C and SIGTERM clean up.
"""

import argparse
import datetime
import hashlib
import http.client
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from urllib.parse import urlsplit, urlencode

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

from lib.pki import CA                          # noqa: E402
from lib.registry import Registry, free_port    # noqa: E402
from lib.mirror import Mirror, to_yaml          # noqa: E402
from lib.bench_soak import proc_status, fd_count, reset_hwm   # noqa: E402

MiB = 1 << 20
MB = 1000 * 1000
UPSTREAM_NAME = "registry.bench"
ACCEPT = ("application/vnd.oci.image.index.v1+json, "
          "application/vnd.docker.distribution.manifest.list.v2+json, "
          "application/vnd.oci.image.manifest.v1+json, "
          "application/vnd.docker.distribution.manifest.v2+json")
MT_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
CURL = "curl"
DIST_BIN = os.environ.get("OM_REGISTRY_BIN", "/usr/bin/docker-registry")
NGINX_BIN = os.environ.get("OM_NGINX_BIN", "/usr/sbin/nginx")

# Sizes of the 30 layers of bench/thirty, MiB: a few big ones, many small
# ones, like a real application image; 100 MiB in all.
THIRTY_MIB = [16, 12, 10, 8, 7, 6, 5, 5, 4, 4, 3, 3, 2, 2, 2, 1.5, 1.5, 1, 1, 1,
              0.75, 0.75, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25]

_procs = []          # every server we started, for the cleanup on exit
_procs_lock = threading.Lock()


def log(msg):
    sys.stderr.write("[%s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# ---------------------------------------------------------------------------
# processes

def killpg(proc, sig=signal.SIGTERM, timeout=15):
    """Stop a process started with start_new_session=True and its group."""
    if proc is None:
        return None
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
    return proc.returncode


CLK_TCK = os.sysconf("SC_CLK_TCK")


def _all_stats():
    """{pid: (ppid, pgrp, utime+stime ticks, comm)} of every process."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                data = f.read()
        except OSError:
            continue
        comm = data[data.index("(") + 1:data.rindex(")")]
        f = data[data.rindex(")") + 2:].split()
        out[int(d)] = (int(f[1]), int(f[2]), int(f[11]) + int(f[12]), comm)
    return out


def cpu_seconds(pgid):
    """CPU time (user + system, all threads) of the processes in group pgid:
    a server started with start_new_session=True and its workers."""
    return sum(v[2] for v in _all_stats().values() if v[1] == pgid) / CLK_TCK


def other_load(seconds=1.0):
    """Processes outside this bench that used more than 5% of a CPU over
    `seconds`: 'name 37%' strings, busiest first (the machine is shared)."""
    me = os.getpid()
    a = _all_stats()
    time.sleep(seconds)
    b = _all_stats()

    def mine(pid, st):
        for _ in range(64):            # walk up to init (bounded)
            if pid == me:
                return True
            if pid not in st or pid <= 1:
                return False
            pid = st[pid][0]
        return False
    out = []
    for pid, v in b.items():
        if pid in a and not mine(pid, b):
            pct = (v[2] - a[pid][2]) / CLK_TCK / seconds * 100
            if pct > 5:
                out.append((pct, v[3]))
    return ["%s %.0f%%" % (c, p) for p, c in sorted(out, reverse=True)]


def wait_http(port, path="/v2/", timeout=20, ok=(200, 401)):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", path)
            st = c.getresponse().status
            c.close()
            if st in ok:
                return True
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.01)
    return False


class BenchMirror(Mirror):
    """lib.mirror.Mirror that polls readiness every 2 ms and remembers the
    start-up time (exec .. first 200 on GET /v2/)."""

    startup_s = None

    def start(self, timeout=10):
        t0 = time.monotonic()
        self._ready_at = None
        super().start(timeout)
        if self._ready_at is not None:
            self.startup_s = self._ready_at - t0
        return self

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return "process exited with status %s" % self.proc.returncode
            try:
                r = self.get("/v2/", timeout=2)
                if r.status == 200:
                    self._ready_at = time.monotonic()
                    return None
                last = "GET /v2/ answered %d" % r.status
            except (OSError, http.client.HTTPException) as e:
                last = repr(e)
            time.sleep(0.002)
        return "not ready after %ss: %s" % (timeout, last)

    def wipe_and_start(self):
        self.stop()
        shutil.rmtree(self.storage, ignore_errors=True)
        return self.start()


class DistProxy:
    """docker-registry 2.8 in proxy mode: its own storage, the upstream as
    proxy.remoteurl, the CA trusted through SSL_CERT_FILE."""

    def __init__(self, workdir, upstream_url, ca_file):
        self.workdir = workdir
        self.storage = os.path.join(workdir, "storage")
        self.port = free_port()
        self.upstream_url = upstream_url
        self.ca_file = ca_file
        self.log_path = os.path.join(workdir, "distribution.log")
        self.config_path = os.path.join(workdir, "config.yml")
        self.proc = None
        os.makedirs(workdir, exist_ok=True)

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def start(self):
        cfg = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
            "storage": {"cache": {"blobdescriptor": "inmemory"},
                        "filesystem": {"rootdirectory": self.storage},
                        "delete": {"enabled": True},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": {"addr": "127.0.0.1:%d" % self.port, "secret": "om-bench"},
            "proxy": {"remoteurl": self.upstream_url},
        }
        with open(self.config_path, "w") as f:
            f.write(to_yaml(cfg))
        env = dict(os.environ, SSL_CERT_FILE=self.ca_file)
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen([DIST_BIN, "serve", self.config_path], stdout=logf,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, start_new_session=True)
        _register(self.proc)
        if not wait_http(self.port):
            raise RuntimeError("distribution proxy did not come up; see %s" % self.log_path)
        return self

    def stop(self):
        killpg(self.proc)
        self.proc = None

    def wipe_and_start(self):
        self.stop()
        shutil.rmtree(self.storage, ignore_errors=True)
        return self.start()


class Nginx:
    """nginx (Debian nginx-light) with sendfile on, root = a directory."""

    def __init__(self, workdir, root):
        self.workdir = workdir
        self.root = root
        self.port = free_port()
        self.proc = None
        os.makedirs(os.path.join(workdir, "tmp"), exist_ok=True)
        self.conf = os.path.join(workdir, "nginx.conf")

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    @property
    def pid(self):
        """The master's pid = the process group of master and workers."""
        return self.proc.pid if self.proc else None

    def start(self):
        w = self.workdir
        tmp = os.path.join(w, "tmp")
        conf = """
worker_processes 2;
user root;
daemon off;
pid %(w)s/nginx.pid;
error_log %(w)s/error.log warn;
events { worker_connections 4096; use epoll; }
http {
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65;
    keepalive_requests 10000000;
    access_log %(w)s/access.log;
    client_body_temp_path %(tmp)s/body;
    proxy_temp_path %(tmp)s/proxy;
    fastcgi_temp_path %(tmp)s/fastcgi;
    uwsgi_temp_path %(tmp)s/uwsgi;
    scgi_temp_path %(tmp)s/scgi;
    types { }
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:%(port)d;
        root %(root)s;
        location / { }
    }
}
""" % {"w": w, "tmp": tmp, "port": self.port, "root": self.root}
        with open(self.conf, "w") as f:
            f.write(conf)
        logf = open(os.path.join(w, "stderr.log"), "ab")
        self.proc = subprocess.Popen([NGINX_BIN, "-p", w, "-c", self.conf, "-e",
                                      os.path.join(w, "error.log")],
                                     stdout=logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        logf.close()
        _register(self.proc)
        if not wait_http(self.port, "/", ok=(200, 403, 404)):
            raise RuntimeError("nginx did not come up; see %s" % w)
        return self

    def stop(self):
        killpg(self.proc, signal.SIGQUIT)
        self.proc = None


def _register(proc):
    with _procs_lock:
        _procs.append(proc)


def _cleanup_all():
    with _procs_lock:
        procs = list(_procs)
    for p in procs:
        try:
            killpg(p, signal.SIGKILL, timeout=5)
        except Exception:
            pass


# ---------------------------------------------------------------------------
# images on the upstream

class BenchImage:
    def __init__(self, repo, tag):
        self.repo, self.tag = repo, tag
        self.blobs = []          # [(digest, path, size)]: config first
        self.manifest = None
        self.digest = None

    @property
    def size(self):
        """Bytes of one whole pull: manifest + config + layers."""
        return len(self.manifest) + sum(s for _, _, s in self.blobs)

    def blob(self, i):
        return self.blobs[i]


def gen_blob(dirpath, size, rng):
    """A file of `size` random bytes (incompressible, like a gzip'd layer)."""
    h = hashlib.sha256()
    tmp = os.path.join(dirpath, "tmp-%d" % rng.getrandbits(48))
    with open(tmp, "wb") as f:
        left = size
        while left > 0:
            n = min(left, 4 * MiB)
            b = rng.randbytes(n)
            f.write(b)
            h.update(b)
            left -= n
    d = "sha256:" + h.hexdigest()
    path = os.path.join(dirpath, h.hexdigest())
    os.rename(tmp, path)
    return d, path, size


def make_bench_image(gendir, repo, tag, layer_sizes, seed):
    rng = random.Random(seed)
    img = BenchImage(repo, tag)
    layers = [gen_blob(gendir, int(s), rng) for s in layer_sizes]
    cfg = {"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
           "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/sh"],
                      "Labels": {"om.bench": repo}},
           "rootfs": {"type": "layers", "diff_ids": [d for d, _, _ in layers]},
           "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "bench %d" % i}
                       for i in range(len(layers))]}
    cfg_bytes = json.dumps(cfg, indent=3).encode()
    cfg_digest = "sha256:" + hashlib.sha256(cfg_bytes).hexdigest()
    cfg_path = os.path.join(gendir, cfg_digest[7:])
    with open(cfg_path, "wb") as f:
        f.write(cfg_bytes)
    img.blobs = [(cfg_digest, cfg_path, len(cfg_bytes))] + layers
    man = {"schemaVersion": 2, "mediaType": MT_MANIFEST,
           "config": {"mediaType": MT_CONFIG, "size": len(cfg_bytes), "digest": cfg_digest},
           "layers": [{"mediaType": MT_LAYER, "size": s, "digest": d} for d, _, s in layers]}
    img.manifest = json.dumps(man, indent=3).encode()
    img.digest = "sha256:" + hashlib.sha256(img.manifest).hexdigest()
    return img


def push_image(reg_port, ca_file, img):
    """Monolithic uploads (POST, PUT ?digest=) streamed from the files, then
    the manifest under its tag.  The upstream has no auth."""
    ctx = ssl.create_default_context(cafile=ca_file)

    def conn():
        return http.client.HTTPSConnection("127.0.0.1", reg_port, context=ctx, timeout=120,
                                           blocksize=1 * MiB)
    c = conn()
    try:
        for d, path, size in img.blobs:
            c.request("POST", "/v2/%s/blobs/uploads/" % img.repo, body=b"",
                      headers={"Content-Length": "0"})
            r = c.getresponse()
            r.read()
            if r.status != 202:
                raise RuntimeError("POST upload: %d" % r.status)
            loc = urlsplit(r.getheader("Location"))
            p = loc.path + "?" + (loc.query + "&" if loc.query else "") + urlencode({"digest": d})
            with open(path, "rb") as f:
                c.request("PUT", p, body=f, headers={"Content-Length": str(size),
                                                     "Content-Type": "application/octet-stream"})
                r = c.getresponse()
                r.read()
            if r.status != 201:
                raise RuntimeError("PUT blob %s: %d" % (d, r.status))
        c.request("PUT", "/v2/%s/manifests/%s" % (img.repo, img.tag), body=img.manifest,
                  headers={"Content-Type": MT_MANIFEST})
        r = c.getresponse()
        r.read()
        if r.status != 201:
            raise RuntimeError("PUT manifest: %d" % r.status)
    finally:
        c.close()


# ---------------------------------------------------------------------------
# clients

CURL_FMT = "%{http_code} %{size_download} %{time_starttransfer} %{time_total} %{url_effective}\\n"


def _curl_base(cacert):
    a = [CURL, "-sS", "--http1.1", "--max-time", "600"]
    if cacert:
        a += ["--cacert", cacert]
    return a


class PullError(Exception):
    pass


def pull(base, img, cacert=None, parallel=3, tmpdir="/tmp"):
    """A client pull of img from base (http://mirror or https://upstream):
    GET the manifest by tag, then every blob, `parallel` at a time (one
    curl process, --parallel-max).  Returns {wall, ttfb: {digest: s},
    bytes}.  Raises PullError on any wrong status or size."""
    fd, mf = tempfile.mkstemp(dir=tmpdir, prefix="manifest-")
    os.close(fd)
    try:
        t0 = time.perf_counter()
        out = subprocess.run(_curl_base(cacert) + [
            "-H", "Accept: " + ACCEPT, "-o", mf, "-w", "%{http_code}",
            "%s/v2/%s/manifests/%s" % (base, img.repo, img.tag)],
            capture_output=True, timeout=660)
        if out.stdout.strip() != b"200":
            raise PullError("manifest: %r %r" % (out.stdout, out.stderr[-300:]))
        with open(mf, "rb") as f:
            body = f.read()
        if body != img.manifest:
            raise PullError("manifest bytes differ")
        m = json.loads(body)
        want = {m["config"]["digest"]: m["config"]["size"]}
        want.update((l["digest"], l["size"]) for l in m["layers"])
        args = _curl_base(cacert) + ["-Z", "--parallel-max", str(parallel), "-w", CURL_FMT]
        for d in want:
            args += ["%s/v2/%s/blobs/%s" % (base, img.repo, d), "-o", "/dev/null"]
        out = subprocess.run(args, capture_output=True, timeout=660)
        t1 = time.perf_counter()
    finally:
        os.unlink(mf)
    res = {"wall": t1 - t0, "ttfb": {}, "bytes": len(body)}
    seen = set()
    for line in out.stdout.decode().splitlines():
        code, size, ttfb, _total, url = line.split(" ", 4)
        d = url.rsplit("/", 1)[1]
        if code != "200" or int(size) != want.get(d, -1):
            raise PullError("blob %s: status %s, %s bytes (want %s)" % (d, code, size, want.get(d)))
        seen.add(d)
        res["ttfb"][d] = float(ttfb)
        res["bytes"] += int(size)
    if seen != set(want):
        raise PullError("missing blobs: %s; curl: %r" % (set(want) - seen, out.stderr[-500:]))
    return res


def curl_get(url, cacert=None, extra=()):
    out = subprocess.run(_curl_base(cacert) + list(extra) + ["-o", "/dev/null", "-w", CURL_FMT, url],
                         capture_output=True, timeout=660)
    code, size, ttfb, total, _ = out.stdout.decode().split(" ", 4)
    return {"code": int(code), "size": int(size), "ttfb": float(ttfb), "total": float(total)}


def parallel_get(url, n, expect_size, extra=()):
    """n curl processes GET url at once; returns total MB/s (bytes / wall)."""
    fmt = "%{http_code} %{size_download}\\n"
    t0 = time.perf_counter()
    procs = [subprocess.Popen([CURL, "-sS", "--http1.1", "--max-time", "600", *extra,
                               "-o", "/dev/null", "-w", fmt, url],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(n)]
    outs = [p.communicate(timeout=660) for p in procs]
    wall = time.perf_counter() - t0
    total = 0
    for o, _e in outs:
        code, size = o.decode().split()
        if code != "200" or int(size) != expect_size:
            raise PullError("GET %s: %s %s" % (url, code, size))
        total += int(size)
    return total / wall / MB


UNIT = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def wrk(url, headers=(), duration=5, conns=64, threads=2):
    """{'rps', 'p50_ms', 'p99_ms', 'non2xx', 'errors'} from one wrk run."""
    args = ["wrk", "-t%d" % threads, "-c%d" % conns, "-d%ds" % duration, "--latency",
            "--timeout", "5s"]
    for h in headers:
        args += ["-H", h]
    out = subprocess.run(args + [url], capture_output=True, timeout=duration + 60).stdout.decode()
    res = {"rps": None, "p50_ms": None, "p99_ms": None, "non2xx": 0, "errors": 0, "raw": out}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        res["rps"] = float(m.group(1))
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)\s*$" % pct, out, re.M)
        if m:
            res[key] = float(m.group(1)) * UNIT[m.group(2)]
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if m:
        res["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        res["errors"] = sum(int(x) for x in m.groups())
    return res


def upstream_bytes(log_path, offset, settle=0.7, repo=None):
    """(GET requests, body bytes) the upstream logged for /v2/.../blobs|manifests
    since byte `offset` of its access log; only of /v2/<repo>/ when repo is
    given.  (The upstream logs a request when it ends: a transfer of another
    phase still running — distribution's proxy goes on storing a blob after
    its client has it — would otherwise be booked to this one.)"""
    time.sleep(settle)
    rx = re.compile(r'"(GET|HEAD) (\S+) HTTP/[0-9.]+" (\d{3}) (\d+|-)')
    n = 0
    total = 0
    heads = 0
    with open(log_path, "rb") as f:
        f.seek(offset)
        for line in f.read().decode(errors="replace").splitlines():
            m = rx.search(line)
            if not m or not re.search(r"/(blobs|manifests)/", m.group(2)):
                continue
            if repo is not None and not m.group(2).startswith("/v2/%s/" % repo):
                continue
            if m.group(1) == "HEAD":
                heads += 1
                continue
            n += 1
            total += int(m.group(4)) if m.group(4) != "-" else 0
    return n, total, heads


def log_size(path):
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


# ---------------------------------------------------------------------------
# the bench

class Bench:
    def __init__(self, args):
        self.args = args
        self.runs = args.runs
        self.dir = tempfile.mkdtemp(prefix="om-bench-", dir=args.tmpdir)
        self.res = {"targets": []}
        self.mirror = None
        self.dist = None
        self.nginx = None
        self.perf_dir = None
        self.perf_reports = {}
        self.p5_reps = max(1, min(3, self.runs - 2))

    # -- setup -------------------------------------------------------------
    def setup(self):
        t0 = time.monotonic()
        log("work dir %s" % self.dir)
        self.ca = CA(os.path.join(self.dir, "pki"))
        self.up = Registry("upstream", os.path.join(self.dir, "upstream"), self.dir, self.ca)
        self.up.start()
        _register(self.up.proc)
        gendir = os.path.join(self.dir, "gen")
        os.makedirs(gendir)
        log("generating images (130 MiB + 512 MiB + 32 MiB of random bytes)")
        self.thirty = make_bench_image(gendir, "bench/thirty", "1",
                                       [s * MiB for s in THIRTY_MIB], seed=30)
        self.big = make_bench_image(gendir, "bench/big", "1", [512 * MiB], seed=512)
        self.mid = make_bench_image(gendir, "bench/mid", "1", [32 * MiB], seed=32)
        for img in (self.thirty, self.big, self.mid):
            push_image(self.up.port, self.ca.cert, img)
        log("upstream ready at %s (%.1f s)" % (self.up.url, time.monotonic() - t0))
        self.mirror = BenchMirror(self.mirror_config(os.path.join(self.dir, "mirror", "storage")),
                                  os.path.join(self.dir, "mirror"),
                                  os.path.join(self.dir, "mirror.log"),
                                  binary=self.args.bin)
        self.mirror.start()
        self.dist = DistProxy(os.path.join(self.dir, "dist"), self.up.url, self.ca.cert)
        self.dist.start()
        self.nginx = Nginx(os.path.join(self.dir, "nginx"), self.mirror.storage)
        self.nginx.start()
        if self.args.perf:
            self.perf_dir = os.path.join(self.args.out, "perf")
            os.makedirs(self.perf_dir, exist_ok=True)

    def mirror_config(self, storage, upstream_url=None, extra=None):
        cfg = {
            "storage": {"path": storage},
            "upstreams": [{"name": UPSTREAM_NAME, "url": upstream_url or self.up.url,
                           "ca_file": self.ca.cert}],
            "search_order": [UPSTREAM_NAME],
            "tag_ttl": "1h",
            "log": {"level": "info", "format": "text"},
        }
        cfg.update(extra or {})
        # OM_BENCH_MIRROR_EXTRA='{"limits": {...}}': merged into the mirror's
        # config (e.g. P4 with per-client limits on vs off).
        more = json.loads(os.environ.get("OM_BENCH_MIRROR_EXTRA") or "{}")
        for k, v in more.items():
            if isinstance(v, dict) and isinstance(cfg.get(k), dict):
                cfg[k] = dict(cfg[k], **v)
            else:
                cfg[k] = v
        return cfg

    def close(self):
        for s in (self.nginx, self.dist):
            if s is not None:
                s.stop()
        if self.mirror is not None:
            self.mirror.stop()
        if getattr(self, "up", None) is not None:
            self.up.stop()
        _cleanup_all()
        if self.args.keep:
            log("kept %s" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def blob_url(self, base, img, i=-1):
        return "%s/v2/%s/blobs/%s" % (base, img.repo, img.blobs[i][0])

    def store_path(self, digest):
        hexd = digest.split(":", 1)[1]
        return "/blobs/sha256/%s/%s" % (hexd[:2], hexd)

    def target(self, pid, what, value, target, met, note=""):
        self.res["targets"].append({"p": pid, "what": what, "value": value, "target": target,
                                    "met": met, "note": note})

    # -- perf --------------------------------------------------------------
    def perf_start(self, name):
        if not self.perf_dir or not self.mirror.alive:
            return None
        path = os.path.join(self.perf_dir, name + ".data")
        # DWARF unwinding: the RelWithDebInfo build has no frame pointers
        p = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "499",
                              "--call-graph", "dwarf,16384", "-o", path, "-p", str(self.mirror.pid)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
        _register(p)
        time.sleep(0.3)
        return (p, path, name)

    def perf_stop(self, h):
        if h is None:
            return
        p, path, name = h
        killpg(p, signal.SIGINT, timeout=30)
        flat = subprocess.run(["perf", "report", "-i", path, "--stdio", "--no-children",
                               "--percent-limit", "1.5", "-g", "none", "--sort", "dso,symbol"],
                              capture_output=True, timeout=600).stdout.decode(errors="replace")
        # inclusive time of the mirror's own functions (om_*, on_*, v2/fetch
        # helpers): where the time goes from the program's point of view
        incl = subprocess.run(["perf", "report", "-i", path, "--stdio", "--children",
                               "--percent-limit", "2", "-g", "none", "--sort", "symbol",
                               "--dsos", "ocimirror"],
                              capture_output=True, timeout=600).stdout.decode(errors="replace")
        top = [l for l in flat.splitlines() if l.strip() and not l.startswith("#")][:20]
        own = [l for l in incl.splitlines() if l.strip() and not l.startswith("#")][:20]
        self.perf_reports[name] = ("self time, top entries:\n" + "\n".join(top) +
                                   "\n\ninclusive time, ocimirror's own functions:\n" + "\n".join(own))
        with open(os.path.join(self.perf_dir, name + ".txt"), "w") as f:
            f.write(flat + "\n\n" + incl)

    # -- P1 ----------------------------------------------------------------
    def p1(self):
        log("P1: warm 512 MiB blob GET, 1 and 8 clients")
        big_d, _, big_size = self.big.blobs[-1]
        # warm both caches (one full pull each) and the page cache
        pull(self.mirror.url, self.big, tmpdir=self.dir)
        pull(self.dist.url, self.big, tmpdir=self.dir)
        targets = {"ocimirror": self.blob_url(self.mirror.url, self.big),
                   "distribution": self.blob_url(self.dist.url, self.big),
                   "nginx": self.nginx.url + self.store_path(big_d)}
        for name, url in targets.items():       # one untimed GET each
            r = curl_get(url)
            assert r["code"] == 200 and r["size"] == big_size, (name, r)
        one = {k: [] for k in targets}
        eight = {k: [] for k in targets}
        cpu = {k: 0.0 for k in targets}
        nbytes = {k: 0 for k in targets}
        pg = {"ocimirror": self.mirror.pid, "distribution": self.dist.pid, "nginx": self.nginx.pid}
        h = self.perf_start("p1-mirror-8clients")
        # cheap and noisy (short transfers on shared cores): more runs
        for run in range(2 * self.runs - 1):
            for name, url in targets.items():
                c0 = cpu_seconds(pg[name])
                r = curl_get(url)
                cpu[name] += cpu_seconds(pg[name]) - c0
                nbytes[name] += big_size
                if r["code"] != 200 or r["size"] != big_size:
                    raise PullError("P1 %s: %r" % (name, r))
                one[name].append(big_size / r["total"] / MB)
            for name, url in targets.items():
                c0 = cpu_seconds(pg[name])
                eight[name].append(parallel_get(url, 8, big_size))
                cpu[name] += cpu_seconds(pg[name]) - c0
                nbytes[name] += 8 * big_size
        self.perf_stop(h)
        out = {"1": {k: median(v) for k, v in one.items()},
               "8": {k: median(v) for k, v in eight.items()},
               "best_1": {k: max(v) for k, v in one.items()},
               "best_8": {k: max(v) for k, v in eight.items()},
               "cpu_s_per_gb": {k: cpu[k] / (nbytes[k] / 1e9) for k in targets},
               "samples_1": one, "samples_8": eight}
        self.res["P1"] = out
        for c in ("1", "8"):
            m = out[c]
            rn = m["ocimirror"] / m["nginx"]
            rd = m["ocimirror"] / m["distribution"]
            self.target("P1", "%s client(s): ocimirror / nginx" % c, "%.2f×" % rn, "≥ 0.9×", rn >= 0.9)
            self.target("P1", "%s client(s): ocimirror / distribution" % c, "%.2f×" % rd, "≥ 1.1×",
                        rd >= 1.1)

    # -- P2 ----------------------------------------------------------------
    def p2(self):
        log("P2: cold pulls (30 layers, 512 MiB) through each server vs direct")
        rows = {"ocimirror": {"thirty": [], "big": [], "ttfb": []},
                "distribution": {"thirty": [], "big": [], "ttfb": []},
                "direct": {"thirty": [], "big": [], "ttfb": []}}
        big_d = self.big.blobs[-1][0]
        for run in range(self.runs):
            for name in ("direct", "ocimirror", "distribution"):
                if name == "direct":
                    base, cacert = self.up.url, self.ca.cert
                elif name == "ocimirror":
                    self.mirror.wipe_and_start()
                    base, cacert = self.mirror.url, None
                else:
                    self.dist.wipe_and_start()
                    base, cacert = self.dist.url, None
                h = self.perf_start("p2-mirror-cold") if (name == "ocimirror" and run == 0) else None
                r30 = pull(base, self.thirty, cacert, tmpdir=self.dir)
                rbig = pull(base, self.big, cacert, tmpdir=self.dir)
                self.perf_stop(h)
                rows[name]["thirty"].append(r30["wall"])
                rows[name]["big"].append(rbig["wall"])
                rows[name]["ttfb"].append(rbig["ttfb"][big_d])
        # the bytes the mirror stored (and serves warm) are the upstream's
        self.verify_store(self.mirror, [self.thirty, self.big])
        out = {k: {kk: median(vv) for kk, vv in v.items()} for k, v in rows.items()}
        out["samples"] = rows
        self.res["P2"] = out
        d, m = out["direct"], out["ocimirror"]
        r = m["thirty"] / d["thirty"]
        self.target("P2", "cold pull, 30 layers: ocimirror / direct", "%.2f×" % r, "≤ 1.10×", r <= 1.10)
        r = m["big"] / d["big"]
        self.target("P2", "cold pull, 512 MiB: ocimirror / direct", "%.2f×" % r, "≤ 1.15×", r <= 1.15)
        dt = (m["ttfb"] - d["ttfb"]) * 1000
        self.target("P2", "TTFB of the uncached 512 MiB blob: ocimirror − upstream",
                    "%+.1f ms" % dt, "≤ +5 ms", dt <= 5.0)

    def verify_store(self, mirror, imgs):
        """Every blob of imgs, read back warm from the mirror, hashes to its digest."""
        for img in imgs:
            for d, _p, size in img.blobs:
                c = http.client.HTTPConnection("127.0.0.1", mirror.port, timeout=120)
                c.request("GET", "/v2/%s/blobs/%s" % (img.repo, d))
                r = c.getresponse()
                h = hashlib.sha256()
                n = 0
                while True:
                    b = r.read(4 * MiB)
                    if not b:
                        break
                    h.update(b)
                    n += len(b)
                c.close()
                if r.status != 200 or "sha256:" + h.hexdigest() != d or n != size:
                    raise PullError("mirror serves wrong bytes for %s" % d)

    # -- P3 ----------------------------------------------------------------
    def p3(self, n_clients=20):
        log("P3: %d concurrent cold pulls of bench/thirty" % n_clients)
        rows = {}
        for name in ("ocimirror", "distribution"):
            rows[name] = {"one": [], "cold": [], "warm": [], "up_bytes": [], "up_gets": [],
                          "up_heads": []}
        for run in range(max(3, self.runs - 2)):
            for name in ("ocimirror", "distribution"):
                srv = self.mirror if name == "ocimirror" else self.dist
                srv.wipe_and_start()
                rows[name]["one"].append(pull(srv.url, self.thirty, tmpdir=self.dir)["wall"])
                srv.wipe_and_start()
                off = log_size(self.up.log_path)
                h = self.perf_start("p3-mirror-20cold") if (name == "ocimirror" and run == 0) else None
                rows[name]["cold"].append(self._concurrent_pulls(srv.url, n_clients))
                self.perf_stop(h)
                gets, nbytes, heads = upstream_bytes(self.up.log_path, off, repo=self.thirty.repo)
                rows[name]["up_bytes"].append(nbytes)
                rows[name]["up_gets"].append(gets)
                rows[name]["up_heads"].append(heads)
                rows[name]["warm"].append(self._concurrent_pulls(srv.url, n_clients))
        out = {k: {kk: median(vv) for kk, vv in v.items()} for k, v in rows.items()}
        out["samples"] = rows
        out["image_bytes"] = self.thirty.size
        out["image_gets"] = 1 + len(self.thirty.blobs)
        self.res["P3"] = out
        m = out["ocimirror"]
        exact = all(b == self.thirty.size for b in rows["ocimirror"]["up_bytes"])
        self.target("P3", "upstream bytes for %d cold pulls / image size" % n_clients,
                    "%.3f× (%d GETs, %d HEADs)" % (m["up_bytes"] / self.thirty.size, m["up_gets"],
                                                   m["up_heads"]),
                    "exactly 1×", exact,
                    "distribution: %.3f×" % (out["distribution"]["up_bytes"] / self.thirty.size))
        r = m["cold"] / m["one"]
        self.target("P3", "wall of %d cold pulls / one cold pull" % n_clients, "%.2f×" % r, "≤ 1.2×",
                    r <= 1.2, "%d warm pulls take %.2f× one pull: the machine's floor (clients and "
                    "server share 2 cores); distribution: %.2f×" % (
                        n_clients, m["warm"] / m["one"],
                        out["distribution"]["cold"] / out["distribution"]["one"]))

    def _concurrent_pulls(self, base, n):
        errs = []
        go = threading.Barrier(n + 1, timeout=60)

        def one():
            try:
                go.wait()
                pull(base, self.thirty, tmpdir=self.dir)
            except Exception as e:
                errs.append(e)
        ts = [threading.Thread(target=one, daemon=True) for _ in range(n)]
        for t in ts:
            t.start()
        go.wait()
        t0 = time.perf_counter()
        for t in ts:
            t.join(600)
        wall = time.perf_counter() - t0
        if errs:
            raise PullError("concurrent pulls: %r" % errs[:3])
        return wall

    # -- P4 ----------------------------------------------------------------
    def p4(self):
        log("P4: warm manifest GET req/s and p99 (wrk -t2 -c64)")
        for srv in (self.mirror, self.dist):
            if srv is self.mirror and not self.mirror.alive:
                self.mirror.start()
            pull(srv.url, self.thirty, tmpdir=self.dir)
        acc = ["Accept: " + ACCEPT]
        man_tag = "/v2/%s/manifests/%s" % (self.thirty.repo, self.thirty.tag)
        man_dig = "/v2/%s/manifests/%s" % (self.thirty.repo, self.thirty.digest)
        targets = {
            "ocimirror by tag": (self.mirror.url + man_tag, acc),
            "ocimirror by digest": (self.mirror.url + man_dig, acc),
            "nginx static file": (self.nginx.url + self.store_path(self.thirty.digest), ()),
            "distribution by tag": (self.dist.url + man_tag, acc),
            "distribution by digest": (self.dist.url + man_dig, acc),
        }
        for name, (url, hdrs) in targets.items():
            r = curl_get(url, extra=[x for h in hdrs for x in ("-H", h)])
            if r["code"] != 200 or r["size"] != len(self.thirty.manifest):
                raise PullError("P4 %s: %r" % (name, r))
        rows = {k: [] for k in targets}
        pg = {"ocimirror": self.mirror.pid, "distribution": self.dist.pid, "nginx": self.nginx.pid}
        for run in range(max(3, self.runs - 2)):
            for name, (url, hdrs) in targets.items():
                h = self.perf_start("p4-mirror-tag") if (name == "ocimirror by tag" and run == 0) else None
                srv = pg[name.split()[0]]
                c0 = cpu_seconds(srv)
                r = wrk(url, hdrs, duration=self.args.wrk_seconds)
                r["cpu_us_per_req"] = ((cpu_seconds(srv) - c0) * 1e6 /
                                       max(1.0, (r["rps"] or 0) * self.args.wrk_seconds))
                rows[name].append(r)
                self.perf_stop(h)
        out = {}
        for name, rs in rows.items():
            out[name] = {"rps": median([r["rps"] for r in rs]),
                         "p99_ms": median([r["p99_ms"] for r in rs]),
                         "p50_ms": median([r["p50_ms"] for r in rs]),
                         "cpu_us_per_req": median([r["cpu_us_per_req"] for r in rs]),
                         "non2xx": sum(r["non2xx"] for r in rs),
                         "errors": sum(r["errors"] for r in rs)}
        out["manifest_bytes"] = len(self.thirty.manifest)
        self.res["P4"] = out
        for how in ("tag", "digest"):
            m = out["ocimirror by " + how]
            rn = m["rps"] / out["nginx static file"]["rps"]
            rd = m["rps"] / out["distribution by " + how]["rps"]
            ok = m["non2xx"] == 0
            self.target("P4", "by %s: ocimirror / nginx (req/s)" % how, "%.2f×" % rn, "≥ 0.8×",
                        rn >= 0.8 and ok)
            self.target("P4", "by %s: ocimirror / distribution (req/s)" % how, "%.1f×" % rd, "≥ 20×",
                        rd >= 20 and ok)

    # -- P5 ----------------------------------------------------------------
    def p5(self, n_clients=100, seconds=6, rate="5M"):
        log("P5: RSS idle and with %d clients downloading" % n_clients)
        out = {"ocimirror": {}, "distribution": {}}
        for name in ("ocimirror", "distribution"):
            srv = self.mirror if name == "ocimirror" else self.dist
            srv.wipe_and_start()
            time.sleep(2)
            st = proc_status(srv.pid)
            out[name]["idle"] = {"rss_kib": st["VmRSS"], "hwm_kib": st["VmHWM"],
                                 "fds": fd_count(srv.pid)}
            for state in ("warm", "cold"):
                for img in (self.mid, self.big):
                    label = "%s %d MiB" % (state, img.blobs[-1][2] // MiB)
                    reps = []
                    for _ in range(self.p5_reps):
                        if state == "cold":
                            srv.wipe_and_start()
                            time.sleep(0.5)
                        # the manifest first, as a client does (the blob is left cold)
                        curl_get("%s/v2/%s/manifests/%s" % (srv.url, img.repo, img.tag),
                                 extra=["-H", "Accept: " + ACCEPT])
                        if state == "warm":
                            pull(srv.url, img, tmpdir=self.dir)
                        reps.append(self._rss_under_load(srv, self.blob_url(srv.url, img),
                                                         img.blobs[-1][2], n_clients, seconds, rate))
                    # the run with the median peak
                    reps.sort(key=lambda r: r["hwm_kib"])
                    out[name][label] = dict(reps[len(reps) // 2],
                                            hwm_samples=[r["hwm_kib"] for r in reps])
            st = proc_status(srv.pid)
            out[name]["after"] = {"rss_kib": st["VmRSS"], "fds": fd_count(srv.pid)}
        self.res["P5"] = out
        m = out["ocimirror"]
        idle = m["idle"]["rss_kib"] / 1024
        self.target("P5", "idle RSS", "%.1f MiB" % idle, "≤ 16 MiB", idle <= 16)
        peak = max(v["hwm_kib"] for k, v in m.items() if k.startswith(("warm", "cold"))) / 1024
        self.target("P5", "peak RSS, %d clients downloading" % n_clients, "%.1f MiB" % peak,
                    "≤ 64 MiB", peak <= 64)
        grow = (m["warm 512 MiB"]["hwm_kib"] - m["warm 32 MiB"]["hwm_kib"]) / 1024
        self.target("P5", "peak RSS, warm blob of 512 MiB minus 32 MiB", "%+.1f MiB" % grow,
                    "not growing (≤ +4 MiB)", grow <= 4)
        c = m["cold 512 MiB"]
        ok = c["rss_late_kib"] is not None and c["rss_early_kib"] is not None
        grow = ((c["rss_late_kib"] or 0) - (c["rss_early_kib"] or 0)) / 1024
        streamed = c["mb_per_s"] * (seconds - (c["attached_s"] or 0) - 0.5) / 1000
        self.target("P5", "RSS, cold 512 MiB blob: peak while ≈ %.1f GB stream after all %d clients "
                    "are attached, minus the peak until then" % (streamed, n_clients),
                    "%+.1f MiB" % grow if ok else "—", "not growing (≤ +4 MiB)", ok and grow <= 4,
            "cold 512 MiB peaks %.1f MiB above cold 32 MiB: there every client attaches to the "
            "download in flight (a streaming buffer each), with 32 MiB most arrive after the commit "
            "and get sendfile" % ((c["hwm_kib"] - m["cold 32 MiB"]["hwm_kib"]) / 1024))

    def _rss_under_load(self, srv, url, size, n, seconds, rate):
        pid = srv.pid
        base_fds = fd_count(pid)
        reset_hwm(pid)
        samples = []
        stop = threading.Event()

        t0 = time.monotonic()

        def sample():
            while not stop.is_set():
                try:
                    st = proc_status(pid)
                    samples.append((st["VmRSS"], fd_count(pid), time.monotonic() - t0))
                except (OSError, KeyError):
                    pass
                stop.wait(0.05)
        t = threading.Thread(target=sample, daemon=True)
        t.start()
        fmt = "%{http_code} %{size_download}\\n"
        procs = [subprocess.Popen([CURL, "-sS", "--http1.1", "--limit-rate", rate, "--max-time",
                                   str(seconds), "-o", "/dev/null", "-w", fmt, url],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
                 for _ in range(n)]
        outs = [p.communicate(timeout=seconds + 60)[0].decode() for p in procs]
        stop.set()
        t.join(5)
        got = 0
        for o in outs:
            parts = o.split()
            if len(parts) != 2 or parts[0] != "200" or int(parts[1]) == 0:
                raise PullError("P5 client: %r" % o)
            got += int(parts[1])
        st = proc_status(pid)
        # RSS until every client is attached (its socket open: fds reach
        # base + n) plus 0.5 s, and afterwards, while the bytes flow: a
        # growth with the bytes sent would show in the second part
        att = next((x[2] for x in samples if x[1] >= base_fds + n), None)
        early = [x[0] for x in samples if att is not None and x[2] <= att + 0.5]
        late = [x[0] for x in samples if att is not None and x[2] > att + 0.5]
        return {"hwm_kib": st["VmHWM"], "max_rss_kib": max(s[0] for s in samples) if samples else None,
                "max_fds": max(s[1] for s in samples) if samples else None,
                "attached_s": att,
                "rss_early_kib": max(early) if early else None,
                "rss_late_kib": max(late) if late else None,
                "mb_per_s": got / seconds / MB}

    # -- P6 ----------------------------------------------------------------
    def p6(self):
        n_blobs, n_tags = self.args.p6_blobs, self.args.p6_tags
        many = min(5000, n_tags // 2)     # tags in the one big repository
        log("P6: generated index of %d blobs and %d tags" % (n_blobs, n_tags))
        if self.mirror.alive:
            self.mirror.stop()
        storage = os.path.join(self.dir, "p6", "storage")
        t0 = time.monotonic()
        gen = generate_store(storage, n_blobs, n_tags, many)
        gen_s = time.monotonic() - t0
        log("P6: store generated in %.1f s; first start rebuilds the index" % gen_s)
        # The upstream is a refused port: tags/list answers from the index
        # (stale, with a Warning) and nothing can be fetched.
        cfg = self.mirror_config(storage, upstream_url="https://127.0.0.1:1",
                                 extra={"retries": {"max": 1, "backoff": "10ms"}})
        m = BenchMirror(cfg, os.path.join(self.dir, "p6"), os.path.join(self.dir, "mirror-p6.log"),
                        binary=self.args.bin)
        out = {"generate_s": gen_s, "blobs": n_blobs + n_tags, "tags": n_tags}
        try:
            m.start(timeout=600)
            out["first_start_with_rebuild_s"] = m.startup_s
            m.stop()
            starts = []
            for _ in range(self.runs):
                m.start(timeout=120)
                starts.append(m.startup_s)
                m.stop()
            out["startup_s"] = median(starts)
            out["startup_samples"] = starts
            m.start(timeout=120)
            st = proc_status(m.pid)
            out["rss_kib"] = st["VmRSS"]
            eps = {
                "_catalog (first page)": "/v2/_catalog",
                "tags/list, %d tags (stale: upstream down)" % many: "/v2/bench/many/tags/list",
                "tags/list, 5 tags (stale: upstream down)": "/v2/bench/r0000/tags/list",
                "manifest by tag (within tag_ttl)": "/v2/bench/many/manifests/t%05d" % (many // 2),
                "/api/v1/stats": "/api/v1/stats",
            }
            out["endpoints"] = {}
            for name, path in eps.items():
                out["endpoints"][name] = time_endpoint(m.port, path, n=20)
        finally:
            m.stop()
        self.res["P6"] = out
        s = out["startup_s"]
        self.target("P6", "start-up with %d blobs + %d manifests" % (n_blobs, n_tags), "%.0f ms" % (s * 1000),
                    "< 1 s", s < 1.0, "first start (index rebuilt from the store): %.1f s" %
                    out["first_start_with_rebuild_s"])
        for name, e in out["endpoints"].items():
            if e.get("skipped"):
                self.target("P6", name, "—", "< 50 ms", None, e["skipped"])
                continue
            if name.startswith("manifest"):
                continue
            worst = max(e["first_ms"], e["median_ms"])
            self.target("P6", name, "%.1f ms (first %.1f, p-max %.1f)" % (
                e["median_ms"], e["first_ms"], e["max_ms"]), "< 50 ms", worst < 50,
                "%d bytes, status %d" % (e["bytes"], e["status"]))


def time_endpoint(port, path, n=20):
    """First call on a new connection, then n more on one keep-alive
    connection; ms."""
    def once(c):
        t = time.perf_counter()
        c.request("GET", path, headers={"Accept": ACCEPT})
        r = c.getresponse()
        body = r.read()
        return (time.perf_counter() - t) * 1000, r.status, len(body)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        first, status, nbytes = once(c)
        if status in (404, 501) and path.startswith("/api/"):
            return {"skipped": "%s answered %d: the admin API is not there yet" % (path, status)}
        if status != 200:
            return {"skipped": "%s answered %d" % (path, status)}
        ts = [once(c)[0] for _ in range(n)]
    finally:
        c.close()
    return {"first_ms": first, "median_ms": median(ts), "max_ms": max(ts), "status": status,
            "bytes": nbytes}


def generate_store(storage, n_blobs, n_tags, many):
    """A storage directory the mirror opens as if it had cached it: n_blobs
    small blob files and n_tags Docker schema-2 manifests (each referencing
    a config + 9 layers of those blobs) under blobs/sha256/xx/, and a
    tags.log naming every tag: `many` tags in registry.bench/bench/many and
    5 tags in each of (n_tags - many) / 5 repositories bench/rNNNN.  No
    index.db: the mirror's own rebuild (src/cache/index_rebuild.c) creates it on the
    first start, so the schema and the rows are exactly the mirror's."""
    blobs_root = os.path.join(storage, "blobs", "sha256")
    for i in range(256):
        os.makedirs(os.path.join(blobs_root, "%02x" % i), exist_ok=True)
    os.makedirs(os.path.join(storage, "ingest"), exist_ok=True)

    def put(data):
        hexd = hashlib.sha256(data).hexdigest()
        with open(os.path.join(blobs_root, hexd[:2], hexd), "wb") as f:
            f.write(data)
        return "sha256:" + hexd, len(data)

    blobs = [put(b"om-bench-blob %08d " % i + b"x" * (i % 97)) for i in range(n_blobs)]
    per = max(1, n_blobs // n_tags)
    now_ms = int(time.time() * 1000)
    repos = ["bench/many"] * many + ["bench/r%04d" % ((i - many) // 5) for i in range(many, n_tags)]
    with open(os.path.join(storage, "tags.log"), "w") as logf:
        for i in range(n_tags):
            group = blobs[(i * per) % n_blobs:(i * per) % n_blobs + per] or blobs[:per]
            cfg, layers = group[0], group[1:]
            man = {"schemaVersion": 2, "mediaType": MT_MANIFEST,
                   "config": {"mediaType": MT_CONFIG, "size": cfg[1], "digest": cfg[0]},
                   "layers": [{"mediaType": MT_LAYER, "size": s, "digest": d} for d, s in layers]}
            data = json.dumps(man, indent=3).encode()
            d, size = put(data)
            tag = "t%05d" % i if repos[i] == "bench/many" else "v%d" % ((i - many) % 5)
            logf.write(json.dumps({"repo": UPSTREAM_NAME + "/" + repos[i], "tag": tag, "digest": d,
                                   "media_type": MT_MANIFEST, "size": size, "t": now_ms},
                                  separators=(",", ":")) + "\n")


# ---------------------------------------------------------------------------
# report

def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, timeout=30).stdout.decode(
            errors="replace").strip()
    except Exception:
        return "?"


def machine_info(binary):
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = sh("awk '/MemTotal/ {printf \"%.1f GiB\", $2/1048576}' /proc/meminfo")
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory": mem,
        "kernel": platform.release(),
        "os": "Debian " + sh("cat /etc/debian_version"),
        "ocimirror": sh("%s version 2>&1 || %s --version 2>&1" % (binary, binary)).splitlines()[0]
        if binary else "?",
        "git": sh("git -C %s rev-parse --short HEAD" % ROOT) + (
            " (+ uncommitted changes)" if sh("git -C %s status --porcelain -- src" % ROOT) else "") +
        (" at run time; the binary was built %s" % time.strftime(
            "%Y-%m-%d %H:%M UTC", time.gmtime(os.path.getmtime(binary)))
         if binary and os.path.exists(binary) else ""),
        "build": sh("grep -m1 CMAKE_BUILD_TYPE:STRING %s/CMakeCache.txt" % os.path.dirname(binary))
        .split("=")[-1] or "?",
        "distribution": sh("%s --version" % DIST_BIN),
        "nginx": sh("%s -v 2>&1" % NGINX_BIN),
        "curl": sh("curl --version").splitlines()[0] if sh("curl --version") else "?",
        "wrk": sh("wrk -v 2>&1 | head -1"),
        "python": platform.python_version(),
    }


def fmt_mbs(x):
    return "%.0f" % x if x is not None else "—"


def report(res, args):
    mi = res["machine"]
    L = []
    L.append("Run: %s, `%s`" % (mi["date"], res["command"]))
    L.append("")
    L.append("Machine: %s vCPU (%s), %s RAM, %s, kernel %s. ocimirror %s, git %s, build %s; %s; %s; %s; %s; "
             "Python %s. Load generators and servers share the same %s cores; every server has "
             "2 worker threads/processes (ocimirror `limits.threads` = CPUs, nginx "
             "`worker_processes 2`, Go GOMAXPROCS = 2)." % (
                 mi["nproc"], mi["cpu"], mi["memory"], mi["os"], mi["kernel"], mi["ocimirror"],
                 mi["git"], mi["build"], mi["distribution"], mi["nginx"], mi["curl"], mi["wrk"],
                 mi["python"], mi["nproc"]))
    L.append("")
    L.append("The machine is shared: the bench ran at nice %s (every server and client it starts "
             "inherits it). Other processes using > 5%% of a CPU at the start: %s; at the end: %s. "
             "Load average at the start: %s; at the end: %s." % (
                 res.get("nice", "?"), ", ".join(res.get("others_start") or []) or "none",
                 ", ".join(res.get("others_end") or []) or "none", res.get("load_start", "?"),
                 res.get("load_end", "?")))
    L.append("")
    L.append("### Targets")
    L.append("")
    L.append("| | what | measured | target | met |")
    L.append("|---|---|---|---|---|")
    for t in res["targets"]:
        met = "—" if t["met"] is None else ("yes" if t["met"] else "**no**")
        note = (" (%s)" % t["note"]) if t["note"] else ""
        L.append("| %s | %s%s | %s | %s | %s |" % (t["p"], t["what"], note, t["value"], t["target"], met))
    L.append("")
    if "P1" in res:
        p = res["P1"]
        L.append("### P1 warm 512 MiB blob GET (MB/s = 10^6 bytes/s, median of %d runs; best run in "
                 "brackets)" % (2 * args.runs - 1))
        L.append("")
        L.append("| clients | ocimirror | nginx sendfile | distribution proxy |")
        L.append("|---|---|---|---|")
        for c in ("1", "8"):
            b = p.get("best_" + c, {})
            L.append("| %s | %s (%s) | %s (%s) | %s (%s) |" % (
                c, fmt_mbs(p[c]["ocimirror"]), fmt_mbs(b.get("ocimirror")), fmt_mbs(p[c]["nginx"]),
                fmt_mbs(b.get("nginx")), fmt_mbs(p[c]["distribution"]), fmt_mbs(b.get("distribution"))))
        cg = p.get("cpu_s_per_gb", {})
        if cg:
            L.append("| server CPU s per GB sent (all runs) | %.3f | %.3f | %.3f |" % (
                cg["ocimirror"], cg["nginx"], cg["distribution"]))
        L.append("")
    if "P2" in res:
        p = res["P2"]
        L.append("### P2 cold pulls (seconds, median of %d; a pull = manifest, then blobs 3 at a time)"
                 % args.runs)
        L.append("")
        L.append("| | 30 layers (100 MiB) | one layer 512 MiB | TTFB of the 512 MiB blob |")
        L.append("|---|---|---|---|")
        for k in ("direct", "ocimirror", "distribution"):
            r = p[k]
            L.append("| %s | %.3f | %.3f | %.1f ms |" % (
                "directly from the upstream (TLS)" if k == "direct" else k + " (cold)",
                r["thirty"], r["big"], r["ttfb"] * 1000))
        L.append("")
    if "P3" in res:
        p = res["P3"]
        L.append("### P3 20 concurrent cold pulls of bench/thirty (%d bytes, %d GETs per pull)" % (
            p["image_bytes"], p["image_gets"]))
        L.append("")
        L.append("| | one cold pull s | 20 cold pulls s | 20 warm pulls s | upstream GETs | upstream bytes | × image |")
        L.append("|---|---|---|---|---|---|---|")
        for k in ("ocimirror", "distribution"):
            r = p[k]
            L.append("| %s | %.3f | %.3f | %.3f | %d | %d | %.3f |" % (
                k, r["one"], r["cold"], r["warm"], r["up_gets"], r["up_bytes"],
                r["up_bytes"] / p["image_bytes"]))
        L.append("")
    if "P4" in res:
        p = res["P4"]
        L.append("### P4 warm manifest GET (%d-byte manifest; wrk -t2 -c64 -d%ds, median of %d)" % (
            p["manifest_bytes"], args.wrk_seconds, max(3, args.runs - 2)))
        L.append("")
        L.append("| | req/s | p50 ms | p99 ms | server CPU µs/request | non-2xx | socket errors |")
        L.append("|---|---|---|---|---|---|---|")
        for k, r in p.items():
            if not isinstance(r, dict):
                continue
            L.append("| %s | %.0f | %.2f | %.2f | %.1f | %d | %d |" % (
                k, r["rps"] or 0, r["p50_ms"] or 0, r["p99_ms"] or 0, r.get("cpu_us_per_req") or 0,
                r["non2xx"], r["errors"]))
        L.append("")
    if "P5" in res:
        p = res["P5"]
        L.append("### P5 memory (KiB; 100 curl clients at 5 MB/s each for 6 s; VmHWM reset before each "
                 "run; the median of %d runs)" % max(1, min(3, args.runs - 2)))
        L.append("")
        L.append("| | ocimirror VmHWM | ocimirror max fds | distribution VmHWM |")
        L.append("|---|---|---|---|")
        m, d = p["ocimirror"], p["distribution"]
        L.append("| idle after start (VmRSS) | %d | %d | %d |" % (m["idle"]["rss_kib"], m["idle"]["fds"],
                                                                d["idle"]["rss_kib"]))
        for k in m:
            if k.startswith(("warm", "cold")):
                L.append("| %s blob, 100 clients | %d | %d | %d |" % (k, m[k]["hwm_kib"], m[k]["max_fds"] or 0,
                                                                     d[k]["hwm_kib"]))
        L.append("")
    if "P6" in res:
        p = res["P6"]
        L.append("### P6 generated index: %d blobs (100k + %d manifests), %d tags" % (
            p["blobs"], p["tags"], p["tags"]))
        L.append("")
        L.append("Start-up (exec → first 200 on /v2/), median of %d: %.0f ms (%s); first start, "
                 "rebuilding index.db from the store: %.1f s. RSS after start: %d KiB." % (
                     len(p["startup_samples"]), p["startup_s"] * 1000,
                     ", ".join("%.0f" % (s * 1000) for s in p["startup_samples"]),
                     p["first_start_with_rebuild_s"], p["rss_kib"]))
        L.append("")
        L.append("| request | first (new connection) ms | median of 20 ms | max ms | bytes |")
        L.append("|---|---|---|---|---|")
        for k, e in p["endpoints"].items():
            if e.get("skipped"):
                L.append("| %s | skipped: %s | | | |" % (k, e["skipped"]))
            else:
                L.append("| %s | %.2f | %.2f | %.2f | %d |" % (k, e["first_ms"], e["median_ms"],
                                                              e["max_ms"], e["bytes"]))
        L.append("")
    if res.get("perf"):
        L.append("### perf (ocimirror only; `perf record -e cpu-clock -g -p PID`)")
        L.append("")
        for k, v in res["perf"].items():
            L.append("%s:\n```\n%s\n```" % (k, v))
        L.append("")
    if res.get("errors"):
        L.append("### Errors")
        L.append("")
        for e in res["errors"]:
            L.append("```\n%s\n```" % e)
    return "\n".join(L) + "\n"


BEGIN = "<!-- bench:begin (generated by bench/bench.py --update-results) -->"
END = "<!-- bench:end -->"


def update_results(path, text):
    try:
        with open(path) as f:
            old = f.read()
    except FileNotFoundError:
        old = "# Benchmark results\n\n%s\n%s\n" % (BEGIN, END)
    if BEGIN not in old or END not in old:
        old = old.rstrip("\n") + "\n\n%s\n%s\n" % (BEGIN, END)
    head, rest = old.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(path, "w") as f:
        f.write(head + BEGIN + "\n" + text + END + tail)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="runs per figure (median); default 5")
    ap.add_argument("--quick", action="store_true", help="3 runs, 3 s wrk runs (a smoke run)")
    ap.add_argument("--only", default="P1,P2,P3,P4,P5,P6", help="comma-separated subset")
    ap.add_argument("--wrk-seconds", type=int, default=5)
    ap.add_argument("--perf", action="store_true",
                    help="perf record the mirror in P1/P2/P3/P4 (figures then include perf's cost)")
    ap.add_argument("--bin", default=os.environ.get("OCIMIRROR_BIN") or os.path.join(ROOT, "build", "ocimirror"))
    ap.add_argument("--out", default=None, help="directory for report.md, results.json (default bench/out/<time>)")
    ap.add_argument("--update-results", action="store_true", help="replace the generated part of bench/RESULTS.md")
    ap.add_argument("--tmpdir", default=None, help="where the work dir goes (default $TMPDIR or /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    ap.add_argument("--p6-blobs", type=int, default=100000, help="P6: blobs in the generated store")
    ap.add_argument("--p6-tags", type=int, default=10000,
                    help="P6: tags (= manifests); half, at most 5000, in one repository")
    args = ap.parse_args()
    if args.quick:
        args.runs = min(args.runs, 3)
        args.wrk_seconds = 3
    args.bin = os.path.abspath(args.bin)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    args.out = args.out or os.path.join(HERE, "out", stamp)
    os.makedirs(args.out, exist_ok=True)
    if os.environ.get("OM_IN_NETNS") != "1":
        log("warning: not inside scripts/netns-run (use bench/run.sh)")
    if not os.path.exists(args.bin):
        sys.exit("no ocimirror binary at %s (build it, or set OCIMIRROR_BIN / --bin)" % args.bin)
    for tool in (CURL, "wrk", DIST_BIN, NGINX_BIN):
        if shutil.which(tool) is None:
            sys.exit("missing %s (apt-get install curl wrk docker-registry nginx-light)" % tool)

    def on_term(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    only = [s.strip().upper() for s in args.only.split(",") if s.strip()]
    b = Bench(args)
    res = b.res
    res["command"] = ("" if os.environ.get("OM_BENCH_BUILT") == "1" else
                      "OCIMIRROR_BIN=%s " % args.bin) + "bench/run.sh " + " ".join(sys.argv[1:])
    res["machine"] = machine_info(args.bin)
    res["errors"] = []
    res["nice"] = os.nice(0)
    res["load_start"] = open("/proc/loadavg").read().split()[:3]
    res["others_start"] = other_load()
    rc = 0
    try:
        b.setup()
        for p in ("P1", "P2", "P3", "P4", "P5", "P6"):
            if p not in only:
                continue
            t0 = time.monotonic()
            try:
                getattr(b, p.lower())()
            except KeyboardInterrupt:
                raise
            except Exception:
                rc = 1
                res["errors"].append("%s failed:\n%s" % (p, traceback.format_exc()))
                log("%s FAILED:\n%s" % (p, traceback.format_exc()))
                if not b.mirror.alive:
                    try:
                        b.mirror.start()
                    except Exception:
                        pass
            log("%s done in %.0f s" % (p, time.monotonic() - t0))
    except KeyboardInterrupt:
        rc = 130
        res["errors"].append("interrupted")
    finally:
        res["perf"] = b.perf_reports
        b.close()
        res["load_end"] = open("/proc/loadavg").read().split()[:3]
        res["others_end"] = other_load()
    text = report(res, args)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(res, f, indent=1, default=str)
    with open(os.path.join(args.out, "report.md"), "w") as f:
        f.write(text)
    if args.update_results:
        update_results(os.path.join(HERE, "RESULTS.md"), text)
    sys.stdout.write(text)
    log("report: %s" % os.path.join(args.out, "report.md"))
    return rc


if __name__ == "__main__":
    sys.exit(main())
