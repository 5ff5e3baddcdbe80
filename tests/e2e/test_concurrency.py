"""Concurrency in ocimirror: many clients asking for the same cold content
cause exactly one upstream download (single-flight), all of them get the
right bytes while it streams, and a Range request that arrives during the
download is answered from it.

The upstream (quay) is reached through a small bandwidth-throttling TCP
proxy (TLS passes through untouched) so downloads last long enough for the
requests to overlap for certain.

Run: cd tests/e2e && OCIMIRROR_BIN=... ../../scripts/netns-run python3 -u test_concurrency.py
"""

import hashlib
import socket
import threading
import time
import unittest
from concurrent.futures import ThreadPoolExecutor

from lib.world import WorldTestCase, canonical_name

N_CLIENTS = 20


class ThrottleProxy:
    """TCP forwarder 127.0.0.1:<port> → target, with the target→client
    direction limited to `rate` bytes/s per connection.  Bounded: every
    socket has a timeout, close() stops everything."""

    def __init__(self, target_port, rate):
        self.target_port = target_port
        self.rate = rate
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self.stopping = False
        self.socks = []
        self.lock = threading.Lock()
        self.connections = 0
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "https://127.0.0.1:%d" % self.port

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                u = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
            except OSError:
                c.close()
                continue
            for s in (c, u):
                s.settimeout(120)
            with self.lock:
                self.socks += [c, u]
                self.connections += 1
            threading.Thread(target=self._pump, args=(c, u, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c, self.rate), daemon=True).start()

    def _pump(self, src, dst, rate):
        t0 = time.monotonic()
        sent = 0
        try:
            while not self.stopping:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
                sent += len(data)
                if rate:
                    ahead = sent / rate - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.stopping = True
        try:
            self.lsock.close()
        except OSError:
            pass
        with self.lock:
            for s in self.socks:
                try:
                    s.close()
                except OSError:
                    pass
        self.thread.join(5)


def stream_get(m, path, headers=None, on_bytes=None, timeout=120):
    """GET through a fresh connection, hashing the body as it arrives.
    Returns (status, headers CIDict-like dict, sha256 digest, length, body
    prefix of at most 1 MiB)."""
    conn = m.connection(timeout)
    try:
        conn.request("GET", path, headers=dict({"User-Agent": "om-e2e"}, **(headers or {})))
        r = conn.getresponse()
        h = hashlib.sha256()
        n = 0
        keep = bytearray()
        while True:
            chunk = r.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
            if len(keep) < (1 << 20):
                keep += chunk[: (1 << 20) - len(keep)]
            if on_bytes:
                on_bytes(n)
        return r.status, {k.lower(): v for k, v in r.getheaders()}, "sha256:" + h.hexdigest(), n, bytes(keep)
    finally:
        conn.close()


class ConcurrencyTest(WorldTestCase):

    def setUp(self):
        super().setUp()
        for r in self.w.reg.values():
            r.reset_counts()

    def throttled_mirror(self, rate):
        proxy = ThrottleProxy(self.w.reg["quay"].port, rate)
        self.addCleanup(proxy.close)
        return self.mirror(upstream_url={"quay": proxy.url}), proxy

    def test_twenty_cold_gets_of_one_big_blob_make_one_upstream_download(self):
        m, _ = self.throttled_mirror(16 << 20)      # 32 MiB take ~2 s upstream
        img = self.w.fx["big"]
        d = img.layers[0]
        size = img.blob_size(d)
        path = "/v2/%s/blobs/%s" % (canonical_name(img), d)
        barrier = threading.Barrier(N_CLIENTS)

        def one(_):
            barrier.wait(10)
            return stream_get(m, path)
        t0 = time.monotonic()
        with ThreadPoolExecutor(N_CLIENTS) as ex:
            results = list(ex.map(one, range(N_CLIENTS)))
        took = time.monotonic() - t0
        for i, (status, hdrs, got, n, _) in enumerate(results):
            with self.subTest(client=i):
                self.assertEqual(status, 200)
                self.assertEqual(n, size)
                self.assertEqual(got, d)
        self.assertEqual(self.w.reg["quay"].count("GET", r"/blobs/" + d), 1,
                         "20 clients should share one upstream download (took %.1fs)" % took)
        self.assertTrue(m.alive)

    def test_twenty_cold_pulls_of_one_image_fetch_each_manifest_and_blob_once(self):
        m, _ = self.throttled_mirror(1 << 20)
        img = self.w.fx["etcd"]
        barrier = threading.Barrier(N_CLIENTS)

        def one(_):
            barrier.wait(10)
            self.pull(m, img)
            return True
        with ThreadPoolExecutor(N_CLIENTS) as ex:
            self.assertTrue(all(ex.map(one, range(N_CLIENTS))))
        quay = self.w.reg["quay"]
        reqs = quay.requests()
        for d in img.blobs:
            with self.subTest(blob=d):
                self.assertEqual(sum(1 for meth, p, _ in reqs if meth == "GET" and d in p), 1)
        manifest_gets = [p for meth, p, _ in reqs if meth == "GET" and "/manifests/" in p]
        self.assertEqual(len(manifest_gets), 1, manifest_gets)

    def test_range_request_during_a_cold_download_gets_the_right_bytes(self):
        m, _ = self.throttled_mirror(8 << 20)       # ~4 s for 32 MiB
        img = self.w.fx["big"]
        d = img.layers[0]
        data = img.layer_bytes[d]
        path = "/v2/%s/blobs/%s" % (canonical_name(img), d)
        started = threading.Event()
        done = threading.Event()
        full = {}

        def downloader():
            try:
                full["r"] = stream_get(m, path, on_bytes=lambda n: n >= 65536 and started.set())
            finally:
                done.set()
                started.set()
        t = threading.Thread(target=downloader, daemon=True)
        t.start()
        self.assertTrue(started.wait(30), "the first client got no bytes")
        in_flight = not done.is_set()
        r = m.get(path, {"Range": "bytes=1000-1999"}, timeout=120)
        answered_in_flight = not done.is_set()
        self.assertEqual(r.status, 206, r)
        self.assertEqual(r.headers.get("Content-Range"), "bytes 1000-1999/%d" % len(data))
        self.assertEqual(r.body, data[1000:2000])
        t.join(120)
        status, _, got, n, _ = full["r"]
        self.assertEqual((status, n, got), (200, len(data), d))
        self.assertTrue(in_flight, "the download finished before the Range request was sent; "
                        "the test did not test what it should")
        self.assertEqual(self.w.reg["quay"].count("GET", r"/blobs/" + d), 1,
                         "the Range request should have been served from the download in flight")
        if not answered_in_flight:
            print("note: the Range answer came only after the whole download finished")

    def test_range_request_on_a_cold_blob_with_nothing_in_flight(self):
        m = self.mirror()
        img = self.w.fx["etcd"]
        d = max(img.layers, key=img.blob_size)
        data = img.layer_bytes[d]
        r = m.get("/v2/%s/blobs/%s" % (canonical_name(img), d), {"Range": "bytes=1000-1999"})
        self.assertEqual(r.status, 206, r)
        self.assertEqual(r.headers.get("Content-Range"), "bytes 1000-1999/%d" % len(data))
        self.assertEqual(r.body, data[1000:2000])
        # and the whole blob is there afterwards
        self.assertBlob(m.get("/v2/%s/blobs/%s" % (canonical_name(img), d)), d)

    def test_many_concurrent_requests_for_different_content_all_succeed(self):
        m = self.mirror()
        jobs = []
        for key in ("alpine", "app", "multi", "ocimulti", "apiserver", "pause", "coredns", "etcd"):
            jobs += [self.w.fx[key]] * 3

        def one(img):
            self.pull(m, img)
            return True
        with ThreadPoolExecutor(len(jobs)) as ex:
            self.assertTrue(all(ex.map(one, jobs)))
        self.assertTrue(m.alive)


if __name__ == "__main__":
    unittest.main(verbosity=2)
