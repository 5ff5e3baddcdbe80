#!/usr/bin/env python3
"""The cluster benchmarks (issue 11, part 4): ocimirror replicas on one
S3 bucket (a throwaway Ceph RADOS Gateway) and one Redis, side by side with
what they are compared to, all in ONE run on one machine.  Ratios are what
to read; nothing here is pass/fail.

Run it through bench/run.sh --cluster (builds RelWithDebInfo, enters a
loopback-only network namespace); by hand:

    scripts/netns-run python3 -u bench/cluster.py [--quick] [--only C1,C4] [--runs N]

  C1  upstream bytes per blob for 12 concurrent cold GETs of one 32 MiB
      blob spread over 3 replicas (4 each), against 3 distribution proxies
      on one bucket the same way: upstream bytes / blob size (target 1.00x)
  C2  time to first byte of a cold 512 MiB blob asked of two replicas at
      the same instant: on the one that does not own the download (it
      streams from the owner) minus on the owner (target <= 10 ms)
  C3  warm 512 MiB blob, 1 and 8 clients: a replica streaming it from the
      bucket vs the gateway serving it directly (a presigned GET; target
      >= 0.9x); the replica's CPU seconds per GB streamed and with
      storage.redirect (307 to the gateway: target ~0)
  C4  manifest GET by tag (within tag_ttl), wrk -c64: a replica in the
      cluster (Redis index, S3) vs the same replica alone (SQLite index,
      S3) and vs a plain filesystem mirror (target >= 0.8x)
  C5  peak RSS of one replica while 100 clients download cold blobs at
      5 MB/s each (target <= 64 MiB)

Packages (Debian 12): ceph-mon ceph-osd radosgw (the bucket), redis-server,
docker-registry (the upstream and the anchor), wrk, curl.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

import bench as B                                   # noqa: E402  (the P1-P6 helpers)
from lib.ceph import Ceph, ceph_available           # noqa: E402
from lib.pki import CA                              # noqa: E402
from lib.registry import Registry, free_port        # noqa: E402
from lib.mirror import to_yaml                      # noqa: E402
from lib.bench_soak import proc_status, reset_hwm   # noqa: E402

MiB = B.MiB
MB = B.MB
REDIS_BIN = "/usr/bin/redis-server"
N_REPLICAS = 3


class Redis:
    """One throwaway redis-server on a unix socket, stopped by its PID."""

    def __init__(self, workdir):
        self.dir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.sock = os.path.join(workdir, "redis.sock")
        self.proc = None

    def start(self):
        conf = os.path.join(self.dir, "redis.conf")
        with open(conf, "w") as f:
            f.write("port 0\nunixsocket %s\nunixsocketperm 700\nsave \"\"\nappendonly no\n"
                    "dir %s\nlogfile %s/redis.log\n" % (self.sock, self.dir, self.dir))
        self.proc = subprocess.Popen([REDIS_BIN, conf], start_new_session=True,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        B._register(self.proc)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.cli("PING") == "PONG":
                return self
            time.sleep(0.02)
        raise RuntimeError("redis-server did not come up")

    def cli(self, *args):
        r = subprocess.run(["redis-cli", "-s", self.sock] + list(args), capture_output=True,
                           text=True, timeout=10)
        return r.stdout.strip()

    @property
    def url(self):
        return "unix://" + self.sock

    def stop(self):
        B.killpg(self.proc)
        self.proc = None


class DistS3:
    """docker-registry 2.8 in proxy mode on an S3 bucket (its s3aws driver,
    path style because regionendpoint is set)."""

    def __init__(self, workdir, upstream_url, ca_file, ceph, bucket):
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.port = free_port()
        self.upstream_url, self.ca_file, self.ceph, self.bucket = upstream_url, ca_file, ceph, bucket
        self.log_path = os.path.join(workdir, "distribution.log")
        self.config_path = os.path.join(workdir, "config.yml")
        self.proc = None

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self):
        cfg = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
            "storage": {"cache": {"blobdescriptor": "inmemory"},
                        "s3": {"accesskey": self.ceph.access_key, "secretkey": self.ceph.secret_key,
                               "region": "us-east-1", "regionendpoint": self.ceph.endpoint,
                               "bucket": self.bucket, "secure": False, "v4auth": True,
                               "rootdirectory": "/dist"},
                        "delete": {"enabled": True},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": {"addr": "127.0.0.1:%d" % self.port, "secret": "om-bench"},
            "proxy": {"remoteurl": self.upstream_url},
        }
        with open(self.config_path, "w") as f:
            f.write(to_yaml(cfg))
        env = dict(os.environ, SSL_CERT_FILE=self.ca_file)
        # the AWS SDK would load AWS_CA_BUNDLE into distribution's own
        # transport and panic ("transport unsupported type"); the gateway
        # is plain http anyway
        env.pop("AWS_CA_BUNDLE", None)
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen([B.DIST_BIN, "serve", self.config_path], stdout=logf,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, start_new_session=True)
        B._register(self.proc)
        if not B.wait_http(self.port):
            raise RuntimeError("distribution on s3 did not come up; see %s" % self.log_path)
        return self

    def stop(self):
        B.killpg(self.proc)
        self.proc = None


class ClusterBench:
    def __init__(self, args):
        self.args = args
        self.runs = args.runs
        self.dir = tempfile.mkdtemp(prefix="om-cbench-", dir=args.tmpdir)
        self.res = {"targets": []}
        self.replicas = []
        self.n_buckets = 0

    # -- setup -------------------------------------------------------------
    def setup(self):
        B.log("work dir %s" % self.dir)
        self.ca = CA(os.path.join(self.dir, "pki"))
        self.up = Registry("upstream", os.path.join(self.dir, "upstream"), self.dir, self.ca)
        self.up.start()
        B._register(self.up.proc)
        gendir = os.path.join(self.dir, "gen")
        os.makedirs(gendir)
        self.big = B.make_bench_image(gendir, "bench/big", "1", [512 * MiB], seed=512)
        self.mid = B.make_bench_image(gendir, "bench/mid", "1", [32 * MiB], seed=32)
        self.many = B.make_bench_image(gendir, "bench/many", "1", [4 * MiB] * 25, seed=25)
        for img in (self.big, self.mid, self.many):
            B.push_image(self.up.port, self.ca.cert, img)
        self.ceph = Ceph(self.dir, self.dir, osd_store=os.environ.get("OM_BENCH_OSD_STORE", "memstore")).start()
        self.s3 = self.ceph.client()
        self.redis = Redis(os.path.join(self.dir, "redis")).start()
        self.token_file = os.path.join(self.dir, "peer.token")
        with open(self.token_file, "w") as f:
            f.write("om-bench-peer-token\n")
        os.chmod(self.token_file, 0o600)

    def new_bucket(self):
        self.n_buckets += 1
        name = "om-cbench-%d" % self.n_buckets
        self.s3.create_bucket(name)
        return name

    def mirror_config(self, storage, bucket=None, cluster=False, port=None, extra=None):
        cfg = {
            "listen": "127.0.0.1:%d" % (port or free_port()),
            "storage": {"path": storage},
            "upstreams": [{"name": B.UPSTREAM_NAME, "url": self.up.url, "ca_file": self.ca.cert}],
            "search_order": [B.UPSTREAM_NAME],
            "tag_ttl": "1h",
            "log": {"level": "info", "format": "text"},
        }
        if bucket is not None:
            cfg["storage"].update({
                "backend": "s3",
                "s3": {"endpoint": self.ceph.endpoint, "bucket": bucket, "prefix": "mirror",
                       "access_key": self.ceph.access_key, "secret_key": self.ceph.secret_key,
                       "path_style": True}})
        if cluster:
            cfg["cluster"] = {"redis": self.redis.url,
                              "peer_url": "http://" + cfg["listen"],
                              "peer_token_file": self.token_file}
        for k, v in (extra or {}).items():
            if isinstance(v, dict) and isinstance(cfg.get(k), dict):
                cfg[k].update(v)
            else:
                cfg[k] = v
        return cfg

    def start_mirror(self, name, **kw):
        wd = os.path.join(self.dir, name)
        shutil.rmtree(wd, ignore_errors=True)
        m = B.BenchMirror(self.mirror_config(os.path.join(wd, "storage"), **kw), wd,
                          os.path.join(self.dir, name + ".log"), binary=self.args.bin)
        m.start(timeout=30)
        B._register(m.proc)
        return m

    def start_cluster(self, bucket, extra=None):
        """N_REPLICAS fresh replicas (empty storage.path) on bucket, Redis
        flushed: nothing cached anywhere."""
        self.stop_cluster()
        self.redis.cli("FLUSHALL")
        self.replicas = [self.start_mirror("replica%d" % i, bucket=bucket, cluster=True,
                                           extra=extra)
                         for i in range(N_REPLICAS)]
        return self.replicas

    def stop_cluster(self):
        for m in self.replicas:
            m.stop()
        self.replicas = []

    def close(self):
        self.stop_cluster()
        for s in ("redis", "ceph", "up"):
            obj = getattr(self, s, None)
            if obj is not None:
                try:
                    obj.stop()
                except Exception:
                    pass
        B._cleanup_all()
        if self.args.keep:
            B.log("kept %s" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def target(self, pid, what, value, target, met, note=""):
        self.res["targets"].append({"p": pid, "what": what, "value": value, "target": target,
                                    "met": met, "note": note})

    def blob_path(self, img, i=-1):
        return "/v2/%s/blobs/%s" % (img.repo, img.blobs[i][0])

    # -- C1: upstream bytes per blob across the cluster ----------------------
    def concurrent_cold(self, bases, img, per_base=4):
        """per_base clients on each base URL GET img's layer at once; returns
        (upstream body bytes, GETs) and checks every client got the whole blob."""
        digest, _, size = img.blobs[-1]
        off = B.log_size(self.up.log_path)
        urls = [b + self.blob_path(img) for b in bases for _ in range(per_base)]
        procs = [subprocess.Popen([B.CURL, "-sS", "--http1.1", "--max-time", "300", "-o",
                                   "/dev/null", "-w", "%{http_code} %{size_download}", u],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for u in urls]
        for p in procs:
            out, _ = p.communicate(timeout=330)
            code, got = out.decode().split()
            if code != "200" or int(got) != size:
                raise B.PullError("cold GET: %s %s (want 200 %d)" % (code, got, size))
        n, body, _heads = B.upstream_bytes(self.up.log_path, off, settle=1.5, repo=img.repo)
        return body, n

    def c1(self):
        img = self.mid
        size = img.blobs[-1][2]
        om, dist = [], []
        for _ in range(self.runs):
            self.start_cluster(self.new_bucket())
            body, n = self.concurrent_cold([m.url for m in self.replicas], img)
            om.append(body / size)
            B.log("C1 ocimirror: %d upstream GETs, %.2fx the blob" % (n, body / size))
            self.stop_cluster()
            bucket = self.new_bucket()
            ds = [DistS3(os.path.join(self.dir, "dist%d" % i), self.up.url, self.ca.cert,
                         self.ceph, bucket).start() for i in range(N_REPLICAS)]
            try:
                body, n = self.concurrent_cold([d.url for d in ds], img)
            finally:
                for d in ds:
                    d.stop()
            dist.append(body / size)
            B.log("C1 distribution: %d upstream GETs, %.2fx the blob" % (n, body / size))
        out = {"ocimirror": B.median(om), "distribution": B.median(dist), "runs_om": om,
               "runs_dist": dist, "clients": 4 * N_REPLICAS, "blob_mib": size / MiB}
        self.res["C1"] = out
        self.target("C1", "upstream bytes per blob, %d cold GETs over %d replicas: ocimirror"
                    % (4 * N_REPLICAS, N_REPLICAS), "%.2f×" % out["ocimirror"], "1.00×",
                    out["ocimirror"] <= 1.005)
        self.target("C1", "the same, distribution proxies on one bucket",
                    "%.2f×" % out["distribution"], "(anchor)", None)

    # -- C2: TTFB on a non-owner -------------------------------------------
    def c2(self):
        """Two replicas asked for the same cold blob at the same instant: one
        wins the lease and fetches from upstream, the other streams from it.
        Which is which is read from their lease counters afterwards."""
        img = self.big
        owner_t, other_t = [], []
        for _ in range(self.runs):
            a, b = self.start_cluster(self.new_bucket())[:2]
            got = {}
            go = threading.Barrier(2)

            def client(m):
                go.wait()
                got[m.port] = B.curl_get(m.url + self.blob_path(img))
            ts = [threading.Thread(target=client, args=(m,)) for m in (a, b)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(600)
            for m in (a, b):
                x = got.get(m.port)
                if x is None or x["code"] != 200 or x["size"] != img.blobs[-1][2]:
                    raise B.PullError("C2 GET: %r" % x)
            won = {m.port: self.metric(m, "ocimirror_cluster_leases_won_total") for m in (a, b)}
            if sorted(won.values()) != [0, 1]:
                raise B.PullError("C2: leases won %r (want one each way)" % won)
            owner = a if won[a.port] == 1 else b
            other = b if owner is a else a
            owner_t.append(got[owner.port]["ttfb"])
            other_t.append(got[other.port]["ttfb"])
        out = {"owner_ms": B.median(owner_t) * 1000, "other_ms": B.median(other_t) * 1000,
               "runs_owner_ms": [x * 1000 for x in owner_t],
               "runs_other_ms": [x * 1000 for x in other_t]}
        out["delta_ms"] = out["other_ms"] - out["owner_ms"]
        self.res["C2"] = out
        self.target("C2", "TTFB of a cold 512 MiB blob asked of two replicas at once, non-owner − owner",
                    "%+.1f ms" % out["delta_ms"], "≤ 10 ms", out["delta_ms"] <= 10)

    def metric(self, m, name):
        r = subprocess.run([B.CURL, "-sS", m.url + "/metrics"], capture_output=True, text=True,
                           timeout=30).stdout
        for line in r.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return 0.0

    # -- C3: warm throughput from the bucket -------------------------------
    def c3(self):
        img = self.big
        digest, _, size = img.blobs[-1]
        bucket = self.new_bucket()
        m = self.start_mirror("c3", bucket=bucket)
        r = B.curl_get(m.url + self.blob_path(img))          # cold: now in the bucket
        if r["code"] != 200:
            raise B.PullError("C3 warm-up: %r" % r)
        m.stop()
        red = self.start_mirror("c3r", bucket=bucket, extra={"storage": {"redirect": True}})
        st = subprocess.run([B.CURL, "-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                             red.url + self.blob_path(img)], capture_output=True, text=True,
                            timeout=60).stdout.split(" ", 1)
        if st[0] != "307":
            raise B.PullError("C3: redirect answered %r" % st)
        presigned = st[1]
        out = {}
        for clients in (1, 8):
            om, direct = [], []
            m.start(timeout=30)
            for _ in range(self.runs):
                c0 = B.cpu_seconds(m.proc.pid)
                om.append(B.parallel_get(m.url + self.blob_path(img), clients, size))
                cpu = B.cpu_seconds(m.proc.pid) - c0
                direct.append(B.parallel_get(presigned, clients, size))
            m.stop()
            c0 = B.cpu_seconds(red.proc.pid)
            redir = B.parallel_get(red.url + self.blob_path(img), clients, size, extra=("-L",))
            rcpu = B.cpu_seconds(red.proc.pid) - c0
            gb = clients * size / 1e9
            out[clients] = {"ocimirror_mbs": B.median(om), "gateway_mbs": B.median(direct),
                            "redirect_mbs": redir, "cpu_s_per_gb": cpu / gb,
                            "redirect_cpu_s_per_gb": rcpu / gb}
            ratio = out[clients]["ocimirror_mbs"] / out[clients]["gateway_mbs"]
            out[clients]["ratio"] = ratio
            self.target("C3", "%d client(s), warm 512 MiB: replica streaming / gateway direct"
                        % clients, "%.2f×" % ratio, "≥ 0.9×", ratio >= 0.9)
            self.target("C3", "%d client(s): replica CPU per GB, streamed / redirected" % clients,
                        "%.2f / %.3f s" % (cpu / gb, rcpu / gb), "redirected ≈ 0", None)
        red.stop()
        self.res["C3"] = out

    # -- C4: manifest GET by tag -------------------------------------------
    def c4(self):
        """The three servers up at once, wrk runs interleaved (case by case
        within each run), so that load from elsewhere hits them alike."""
        img = self.many
        self.redis.cli("FLUSHALL")
        cases = [("cluster", dict(bucket=self.new_bucket(), cluster=True)),
                 ("alone_s3", dict(bucket=self.new_bucket())),
                 ("alone_fs", dict())]
        path = "/v2/%s/manifests/%s" % (img.repo, img.tag)
        ms = {}
        rps = {name: [] for name, _ in cases}
        try:
            for name, kw in cases:
                ms[name] = self.start_mirror("c4-" + name, **kw)
                r = B.curl_get(ms[name].url + path, extra=("-H", "Accept: " + B.ACCEPT))
                if r["code"] != 200:
                    raise B.PullError("C4 %s warm-up: %r" % (name, r))
            for _ in range(self.runs):
                for name, _kw in cases:
                    w = B.wrk(ms[name].url + path, headers=("Accept: " + B.ACCEPT,),
                              duration=self.args.wrk_s)
                    if w["rps"] is None or w["non2xx"] or w["errors"]:
                        raise B.PullError("C4 %s: %r" % (name, w))
                    rps[name].append(w["rps"])
        finally:
            for m in ms.values():
                m.stop()
        out = {name: B.median(v) for name, v in rps.items()}
        out["runs"] = rps
        self.res["C4"] = out
        r = out["cluster"] / out["alone_s3"]
        self.target("C4", "manifest by tag: replica in a cluster / alone (both on S3)", "%.2f×" % r,
                    "≥ 0.8×", r >= 0.8)
        r = out["cluster"] / out["alone_fs"]
        self.target("C4", "manifest by tag: replica in a cluster / filesystem mirror", "%.2f×" % r,
                    "≥ 0.8×", r >= 0.8)

    # -- C5: RSS with 100 clients on cold blobs ------------------------------
    def c5(self):
        img = self.many
        m = self.start_cluster(self.new_bucket())[0]
        n = 100
        reset_hwm(m.proc.pid)
        urls = [m.url + "/v2/%s/blobs/%s" % (img.repo, img.blobs[1 + i % 25][0]) for i in range(n)]
        procs = [subprocess.Popen([B.CURL, "-sS", "--http1.1", "--limit-rate", "5M", "--max-time",
                                   "6", "-o", "/dev/null", u], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL) for u in urls]
        peak = 0
        deadline = time.monotonic() + 7
        while time.monotonic() < deadline:
            st = proc_status(m.proc.pid)
            peak = max(peak, st.get("VmHWM", 0))
            time.sleep(0.1)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        st = proc_status(m.proc.pid)
        peak = max(peak, st.get("VmHWM", 0)) / 1024.0
        self.stop_cluster()
        self.res["C5"] = {"peak_mib": peak, "clients": n}
        self.target("C5", "peak RSS of a replica, %d clients on cold blobs" % n, "%.1f MiB" % peak,
                    "≤ 64 MiB", peak <= 64)


def report(res):
    lines = ["# Cluster benchmarks (bench/cluster.py)", "",
             "Machine: %s; load at start %s, at end %s" % (
                 res.get("machine", "?"), " ".join(res.get("load_start", [])),
                 " ".join(res.get("load_end", []))), "",
             "| | what | value | target | met |", "|---|---|---|---|---|"]
    for t in res["targets"]:
        met = "—" if t["met"] is None else ("yes" if t["met"] else "**no**")
        lines.append("| %s | %s | %s | %s | %s |" % (t["p"], t["what"], t["value"], t["target"], met))
    for k in ("C1", "C2", "C3", "C4", "C5"):
        if k in res:
            lines += ["", "%s: `%s`" % (k, json.dumps(res[k], default=str))]
    for e in res.get("errors", []):
        lines += ["", "ERROR: " + e]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1 run each, 3 s wrk runs")
    ap.add_argument("--only", default="", help="e.g. C1,C4")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--tmpdir", default=None)
    ap.add_argument("--bin", default=os.environ.get("OCIMIRROR_BIN", os.path.join(ROOT, "build", "ocimirror")))
    ap.add_argument("--out", default=os.path.join(HERE, "out", "cluster-" + time.strftime("%Y%m%d-%H%M%S")))
    args = ap.parse_args()
    args.wrk_s = 3 if args.quick else 5
    if args.quick:
        args.runs = 1
    if not ceph_available() or not os.access(REDIS_BIN, os.X_OK):
        sys.stderr.write("cluster.py needs ceph-mon ceph-osd radosgw and redis-server\n")
        return 2
    os.makedirs(args.out, exist_ok=True)
    only = [x.strip().upper() for x in args.only.split(",") if x.strip()]
    cb = ClusterBench(args)
    res = cb.res
    res["errors"] = []
    res["load_start"] = open("/proc/loadavg").read().split()[:3]
    res["machine"] = "%d CPUs" % os.cpu_count()
    rc = 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        cb.setup()
        for p in ("C1", "C2", "C3", "C4", "C5"):
            if only and p not in only:
                continue
            t0 = time.monotonic()
            B.log("%s ..." % p)
            try:
                getattr(cb, p.lower())()
            except Exception:
                import traceback
                res["errors"].append("%s failed:\n%s" % (p, traceback.format_exc()))
                B.log("%s FAILED:\n%s" % (p, traceback.format_exc()))
                rc = 1
            B.log("%s done in %.0f s" % (p, time.monotonic() - t0))
    finally:
        cb.close()
        res["load_end"] = open("/proc/loadavg").read().split()[:3]
    text = report(res)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(res, f, indent=1, default=str)
    with open(os.path.join(args.out, "report.md"), "w") as f:
        f.write(text)
    sys.stdout.write(text)
    return rc


if __name__ == "__main__":
    sys.exit(main())
