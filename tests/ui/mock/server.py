#!/usr/bin/env python3
"""A stand-in for the mirror's admin API, for developing the web UI and for
the browser tests that need data a real mirror cannot easily hold: 10,000
repositories, hostile strings (HTML in labels and error messages), a
mirror without /api/v1/client-config, a token-protected API.

    python3 tests/ui/mock/server.py [--port 0] [--repos 10000] [--protect TOKEN]
                                    [--no-client-config]

Serves ui/ from the source tree (with the {{v:NAME}} placeholders filled
like cmake/embed.cmake does) at / and /ui/, and canned JSON that follows
docs/admin-api.md at /api/v1/....  Prints "MOCK_URL http://127.0.0.1:PORT"
on stdout once it listens; stops on SIGTERM/SIGINT.  Standard library only;
listens on 127.0.0.1 only.
"""

import argparse
import hashlib
import json
import os
import re
import signal
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

UI_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "ui")
UI_DIR = os.path.normpath(UI_DIR)
TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}
EVIL = '<img src=x onerror="window.__pwned=1">'
UPSTREAMS = ["docker.io", "registry.k8s.io", "quay.io", "ghcr.io", "gcr.io"]
NOW = lambda: int(time.time() * 1000)  # noqa: E731


def sha(s):
    return "sha256:" + hashlib.sha256(s.encode()).hexdigest()


def ui_file(rel):
    """(bytes, content type) of ui/rel, HTML with {{v:NAME}} filled, or None."""
    if not re.fullmatch(r"[A-Za-z0-9._/-]+", rel) or ".." in rel:
        return None
    path = os.path.join(UI_DIR, rel)
    if not os.path.isfile(path):
        return None
    data = open(path, "rb").read()
    ext = os.path.splitext(rel)[1]
    if ext == ".html":
        def fill(m):
            p = os.path.join(UI_DIR, m.group(1).decode())
            return hashlib.sha256(open(p, "rb").read()).hexdigest()[:16].encode()
        data = re.sub(rb"\{\{v:([^}]+)\}\}", fill, data)
    return data, TYPES.get(ext, "application/octet-stream")


class Data:
    def __init__(self, n_repos):
        words = ["alpine", "nginx", "redis", "postgres", "busybox", "node", "python", "golang",
                 "traefik", "grafana", "prometheus", "etcd", "coredns", "pause", "kube-proxy"]
        self.repos = []
        for i in range(n_repos):
            up = UPSTREAMS[i % len(UPSTREAMS)]
            w = words[i % len(words)]
            ns = "library" if up == "docker.io" and i % 3 == 0 else "team%d" % (i % 97)
            name = "%s/%s/%s-%05d" % (up, ns, w, i)
            self.repos.append({"name": name, "upstream": up, "tags": 1 + i % 4,
                               "size_bytes": 1000000 + i * 7919, "last_pulled_ms": NOW() - i * 60000,
                               "pull_count": i % 50})
        self.repos.insert(0, {"name": "docker.io/library/alpine", "upstream": "docker.io", "tags": 2,
                              "size_bytes": 3400000, "last_pulled_ms": NOW() - 5000, "pull_count": 42})
        self.repos.sort(key=lambda r: r["name"])
        self.started = NOW() - 3 * 3600 * 1000
        self.t0 = time.time()

    def stats(self):
        hist = []
        now = NOW()
        for i in range(60):
            hits = (i * 7) % 23
            misses = (i * 3) % 5
            hist.append({"t_ms": now - (59 - i) * 60000, "hits": hits, "misses": misses,
                         "bytes_cache": hits * 3100000, "bytes_upstream": misses * 2900000})
        return {"started_ms": self.started, "uptime_s": 3 * 3600 + 125, "version": "0.1.0-mock",
                "requests": 123456, "cache": {"hit": 9000, "miss": 1000, "stale": 12, "coalesced": 77},
                "cache_bytes": {"hit": 9 * 2**30, "miss": 2**30, "stale": 0, "coalesced": 5 * 2**20},
                "hit_ratio": {"since_start": 0.9, "last_hour": 0.8123},
                "bytes_served": {"cache": 9 * 2**30 + 123, "upstream": 2**30 + 5},
                "storage": {"used_bytes": 46 * 2**30, "quota_bytes": 50 * 2**30, "blobs": 53211,
                            "manifests": 20480, "repositories": len(self.repos), "tags": 25000},
                "inflight": 2, "history": hist}

    def inflight(self):
        el = time.time() - self.t0
        total = 64 * 2**20
        done = int((el * 5 * 2**20) % total)
        return {"downloads": [
            {"repository": "docker.io/library/alpine", "digest": sha("layer1"), "bytes": done,
             "total": total, "rate_bps": 5 * 2**20, "waiters": 3, "started_ms": NOW() - 12000},
            {"repository": "quay.io/coreos/etcd", "digest": sha("layer2"), "bytes": 1234567,
             "total": -1, "rate_bps": 800000, "waiters": 1, "started_ms": NOW() - 3000}]}

    def upstreams(self):
        out = []
        for i, n in enumerate(UPSTREAMS):
            out.append({"name": n, "url": "https://" + n, "aliases": ["k8s.gcr.io"] if n == "registry.k8s.io" else [],
                        "healthy": i != 3, "last_ok_ms": NOW() - 2000, "last_error_ms": NOW() - 60000 if i == 3 else 0,
                        "last_error": ("connect failed: " + EVIL) if i == 3 else "", "latency_ms": 40 + i * 10,
                        "requests": 1000 * (i + 1), "errors": 3 if i == 3 else 0,
                        "ratelimit_remaining": 87 if n == "docker.io" else -1,
                        "recent_errors": [{"t_ms": NOW() - 60000, "message": "timeout " + EVIL}] if i == 3 else [],
                        "urls": [{"url": "https://" + n, "healthy": True, "requests": 1000 * (i + 1),
                                  "errors": 0, "failures": 0, "last_ok_ms": NOW() - 2000,
                                  "last_error_ms": None, "last_error": None, "backoff_until_ms": None}]})
        # docker.io: the official registry down and backing off, a mirror of
        # it serving; a pool of two accounts, one rate limited.
        hub = out[0]
        hub["urls"] = [
            {"url": "https://registry-1.docker.io", "healthy": False, "requests": 40, "errors": 7,
             "failures": 3, "last_ok_ms": NOW() - 600000, "last_error_ms": NOW() - 5000,
             "last_error": "connect failed: " + EVIL, "backoff_until_ms": NOW() + 8000},
            {"url": "https://mirror.gcr.io", "healthy": True, "requests": 960, "errors": 0,
             "failures": 0, "last_ok_ms": NOW() - 1000, "last_error_ms": None, "last_error": None,
             "backoff_until_ms": None}]
        hub["accounts"] = [
            {"username": "puller1", "requests": 600, "rate_limited": 0, "ratelimit_remaining": 87,
             "limited_until_ms": None, "last_used_ms": NOW() - 1000},
            {"username": "puller2", "requests": 400, "rate_limited": 1, "ratelimit_remaining": 0,
             "limited_until_ms": NOW() + 3600000, "last_used_ms": NOW() - 90000}]
        return {"upstreams": out}

    def events(self, limit):
        """Events as the server sends them: codes and values (the English
        message beside them is not for the page), a hostile tag among them,
        and grouped blob rows as ?group=pull makes them."""
        kinds = [("fetch", "blob_fetched", {}), ("evict", "image_evicted",
                  {"tag": "1" + EVIL, "why": "lru", "idle_s": 3600, "objects": 4}),
                 ("error", "blob_failed", {"error": "upstream"}),
                 ("prefetch", "prefetch_image_failed", {"job": "pf-1", "error": "http_status",
                                                        "ref": "x" + EVIL, "status": 404}),
                 ("gc", "gc_finished", {"images": 1, "objects": 4, "ingest": 0, "used_before": 2 << 30,
                                        "used_after": 1 << 30, "max_size": 0})]
        ev = []
        for i in range(40):
            kind, code, values = kinds[i % 5]
            e = {"t_ms": NOW() - i * 30000, "kind": kind, "code": code,
                 "repository": "docker.io/library/alpine", "digest": sha("e%d" % i),
                 "message": "English for API users %d" % i, "bytes": i * 100000, "values": values,
                 "count": 1}
            if code == "blob_fetched" and i % 10 == 0:
                e.update(count=3, digest=None, first_ms=e["t_ms"] - 2000,
                         events=[{"t_ms": e["t_ms"] - k * 1000, "digest": sha("g%d-%d" % (i, k)),
                                  "bytes": 1000 * (k + 1)} for k in range(3)])
            ev.append(e)
        return {"events": ev[:limit]}

    def tags(self, name):
        if not any(r["name"] == name for r in self.repos):
            return None
        return {"name": name, "tags": [
            {"tag": "3.19", "digest": sha(name + "3.19"), "media_type": "application/vnd.oci.image.index.v1+json",
             "size": 1638, "platforms": ["linux/amd64", "linux/arm64"], "fetched_ms": NOW() - 3600000,
             "checked_ms": NOW() - 60000, "last_pulled_ms": NOW() - 5000, "pull_count": 40, "stale": False},
            {"tag": "latest", "digest": sha(name + "latest"),
             "media_type": "application/vnd.docker.distribution.manifest.v2+json", "size": 528, "platforms": [],
             "fetched_ms": NOW() - 86400000, "checked_ms": NOW() - 86400000, "last_pulled_ms": 0,
             "pull_count": 2, "stale": True}]}

    def image(self, name, digest, host):
        if digest == sha(name + "3.19"):
            return {"name": name, "digest": digest, "media_type": "application/vnd.oci.image.index.v1+json",
                    "size": 1638, "kind": "index",
                    "platforms": [{"platform": "linux/amd64", "digest": sha(name + "amd64"),
                                   "media_type": "application/vnd.oci.image.manifest.v1+json", "size": 480, "cached": True},
                                  {"platform": "linux/arm64/v8", "digest": sha(name + "arm64"),
                                   "media_type": "application/vnd.oci.image.manifest.v1+json", "size": 480, "cached": False}],
                    "pull": self.pull(host, name, digest)}
        return {"name": name, "digest": digest, "media_type": "application/vnd.oci.image.manifest.v1+json",
                "size": 480, "kind": "manifest",
                "layers": [{"digest": sha("l1"), "media_type": "application/vnd.oci.image.layer.v1.tar+gzip",
                            "size": 3400000, "cached": True},
                           {"digest": sha("l2"), "media_type": "application/vnd.oci.image.layer.v1.tar+gzip",
                            "size": 1200, "cached": False}],
                "config": {"digest": sha("cfg"), "created": "2024-01-01T00:00:00Z", "os": "linux",
                           "architecture": "amd64", "entrypoint": ["/docker-entrypoint.sh"], "cmd": ["nginx", "-g", "daemon off;"],
                           "env": ["PATH=/usr/bin:/bin", "EVIL=" + EVIL],
                           "labels": {"org.opencontainers.image.title": "demo", "evil": EVIL},
                           "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "/bin/sh -c #(nop) ADD file:abc in / ", "empty_layer": False},
                                       {"created": "2024-01-01T00:00:01Z", "created_by": "CMD [\"sh\"] " + EVIL, "empty_layer": True}]},
                "pull": self.pull(host, name, digest)}

    @staticmethod
    def pull(host, name, digest):
        return {"docker": "docker pull %s/%s@%s" % (host, name, digest),
                "podman": "podman pull %s/%s@%s" % (host, name, digest),
                "ctr": "ctr images pull %s/%s@%s" % (host, name, digest)}

    @staticmethod
    def route(name, ns):
        if name.startswith(("quay.io/", "registry.k8s.io/", "k8s.gcr.io/")):
            up = "registry.k8s.io" if "k8s" in name.split("/")[0] else "quay.io"
            rest = name.split("/", 1)[1]
            c = up + "/" + rest
            return {"name": name, "ns": ns, "kind": "fixed", "why": "explicit prefix",
                    "why_code": "prefix", "why_values": {"upstream": up},
                    "candidates": [{"upstream": up, "remote": rest, "canonical": c, "negative": False}],
                    "decided": {"upstream": up, "canonical": c}}
        rest = name if "/" in name else "library/" + name
        return {"name": name, "ns": ns, "kind": "search", "why": "search order", "why_code": "search",
                "why_values": {},
                "candidates": [{"upstream": "docker.io", "remote": rest, "canonical": "docker.io/" + rest, "negative": False},
                               {"upstream": "registry.k8s.io", "remote": name, "canonical": "registry.k8s.io/" + name, "negative": True}],
                "decided": None}


def clients():
    """GET /api/v1/clients (docs/admin-api.md): one client limited now, a
    user, and a hostile client key."""
    now = NOW()

    def c(key, b, r, user=False, limited=None):
        return {"client": key, "is_user": user, "bytes_24h": b, "requests_24h": r,
                "rejected_24h": 7 if limited else 0, "downloads": 1, "last_seen_ms": now - 3000,
                "limited_by": limited, "limited_until_ms": now + 30000 if limited else None}
    heavy = c("198.51.100.7", 52 << 30, 120000, limited="bytes_per_day")
    ci = c("ci-bot", 3 << 30, 900000, user=True)
    odd = c('<img src=x onerror="window.__pwned=1">', 10, 1)
    return {"now_ms": now, "clients": 3, "max_clients": 100000, "evictions": 0,
            "rejections": {"requests_per_second": 12, "downloads": 0, "bytes_per_day": 7,
                           "upstream_fetches": 3},
            "per_client": {"requests_per_second": 20, "burst": 100, "downloads": 4,
                           "bytes_per_day": 50 << 30, "upstream_fetches_per_minute": 30},
            "per_user_count": 1, "trusted_proxies": ["10.0.0.0/8"],
            "top_by_bytes": [heavy, ci, odd], "top_by_requests": [ci, heavy, odd],
            "limited": [heavy]}


def make_handler(data, opts):
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            if opts.verbose:
                sys.stderr.write("mock: " + (fmt % args) + "\n")

        def send(self, status, body, ctype="application/json; charset=utf-8"):
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def err(self, status, code, msg):
            self.send(status, {"errors": [{"code": code, "message": msg}]})

        def do_HEAD(self):
            self.do_GET()

        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(min(n, 65536))
            if not self.authorized(write=True):
                return
            if self.path.startswith("/api/v1/prefetch"):
                self.send(202, {"id": "pf-1", "state": "queued"})
            else:
                self.err(404, "NOT_FOUND", "no such endpoint")

        def authorized(self, write=False):
            if opts.protect or write:
                want = "Bearer " + (opts.protect or "mock-token")
                if self.headers.get("Authorization") != want:
                    self.err(401, "UNAUTHORIZED", "admin token required")
                    return False
            return True

        def do_GET(self):
            u = urllib.parse.urlsplit(self.path)
            q = urllib.parse.parse_qs(u.query)
            arg = lambda k, d="": q.get(k, [d])[0]  # noqa: E731
            path = u.path
            if path in ("/", "/ui/"):
                path = "/ui/index.html"
            if path.startswith("/ui/"):
                f = ui_file(path[4:])
                return self.send(200, f[0], f[1]) if f else self.err(404, "NOT_FOUND", "no such page")
            if not path.startswith("/api/v1/"):
                return self.err(404, "NOT_FOUND", "no such page")
            if not self.authorized():
                return
            if opts.delay:
                time.sleep(opts.delay)
            ep = path[len("/api/v1/"):]
            host = self.headers.get("Host", "127.0.0.1")
            if ep == "stats":
                return self.send(200, data.stats())
            if ep == "inflight":
                return self.send(200, data.inflight())
            if ep == "upstreams":
                return self.send(200, data.upstreams())
            if ep == "events":
                return self.send(200, data.events(int(arg("limit", "100"))))
            if ep == "prefetch":
                return self.send(200, {"jobs": [{"id": "pf-1", "state": "running", "images": ["nginx:1.25", "alpine:3.19"],
                                                 "done": 1, "failed": 0, "errors": [], "started_ms": NOW() - 4000,
                                                 "finished_ms": 0}]})
            if ep == "repositories":
                sub = arg("q").lower()
                up = arg("upstream")
                page = max(1, int(arg("page", "1") or 1))
                per = min(500, max(1, int(arg("per_page", "50") or 50)))
                rows = [r for r in data.repos if sub in r["name"].lower() and (not up or r["upstream"] == up)]
                return self.send(200, {"page": page, "per_page": per, "total": len(rows),
                                       "repositories": rows[(page - 1) * per: page * per]})
            m = re.fullmatch(r"repositories/(.+)/tags", ep)
            if m:
                t = data.tags(m.group(1))
                return self.send(200, t) if t else self.err(404, "NAME_UNKNOWN", "not cached")
            m = re.fullmatch(r"images/(.+)@(sha256:[0-9a-f]{64})", ep)
            if m:
                return self.send(200, data.image(m.group(1), m.group(2), host))
            if ep == "route":
                return self.send(200, data.route(arg("name"), arg("ns")))
            if ep == "clients":
                return self.send(200, clients())
            if ep == "client-config" and not opts.no_client_config:
                return self.send(200, {"for": arg("for"), "files": [{"path": "/etc/docker/daemon.json",
                                                                     "content": '{"registry-mirrors": ["http://%s"]}\n' % host}],
                                       "commands": ["systemctl restart docker"]})
            return self.err(404, "NOT_FOUND", "no such endpoint")
    return H


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--repos", type=int, default=10000)
    ap.add_argument("--protect", default="")
    ap.add_argument("--no-client-config", action="store_true")
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--verbose", action="store_true")
    opts = ap.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", opts.port), make_handler(Data(opts.repos), opts))
    srv.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=srv.shutdown).start())
    print("MOCK_URL http://127.0.0.1:%d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
