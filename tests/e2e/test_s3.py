"""Content in an S3-compatible bucket (storage.backend: s3) against a real
Ceph RADOS Gateway, which checks every SigV4 signature, payload hash,
presigned URL, range and multipart upload the mirror sends.

One World and one Ceph (memstore, ~2 s) for the file; a bucket per test.
  - pulls (and skopeo, a real client) through an s3-backed mirror; content at
    its content-addressed keys, nothing else in the bucket; a second pull
    costs the upstream no blob; Range from the bucket; HEAD from metadata;
    _catalog, tags/list, the admin API's used bytes, /metrics, the UI;
  - a restart on an empty storage.path serves everything cached with zero
    upstream blob transfers;
  - redirect: true → 307 to a presigned URL of the RGW that the client
    follows (and skopeo, through a logging proxy in front of the RGW that
    shows no Authorization on those GETs) and verifies;
  - the gateway stopped → 503 with an OCI error (HEAD still from metadata),
    nothing half-written when it is back;
  - a digest mismatch during a download leaves no object and no multipart
    upload; a mirror killed mid-upload aborts its upload at the next start;
  - gc eviction to max_size frees bucket space; fsck on s3 finds and
    repairs a corrupt object and aborts a stale foreign upload;
  - the store's own unit cases (tests/unit/cache/test_store_s3.c) against
    this gateway.

Run: cd tests/e2e && OCIMIRROR_BIN=... ../../scripts/netns-run python3 -u test_s3.py
"""

import hashlib
import http.client
import http.server
import json
import os
import shutil
import signal
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

from lib.ceph import Ceph, ceph_available
from lib.faultproxy import FaultProxy
from lib.images import ACCEPT_ALL, sha256_digest
from lib.mirror import mirror_bin, to_yaml
from lib.world import WorldTestCase, canonical_name

PART = 5 * 1024 * 1024


def bucket_key(digest, prefix="mirror/"):
    h = digest.split(":", 1)[1]
    return "%sblobs/sha256/%s/%s" % (prefix, h[:2], h)


class LoggingProxy:
    """HTTP in front of the RGW that passes every request through unchanged
    (Host included, so signatures hold) and records (method, path+query,
    whether it carried Authorization)."""

    def __init__(self, upstream_host_port):
        self.upstream = upstream_host_port
        self.log = []
        self.lock = threading.Lock()
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _do(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                with outer.lock:
                    outer.log.append((self.command, self.path, "authorization" in
                                      {k.lower() for k in self.headers.keys()}))
                c = http.client.HTTPConnection(outer.upstream, timeout=60)
                c.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for k, v in self.headers.items():
                    c.putheader(k, v)
                c.endheaders(body)
                r = c.getresponse()
                data = r.read()
                self.send_response(r.status, r.reason)
                for k, v in r.getheaders():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                # a HEAD keeps the gateway's own Content-Length (the size)
                clen = r.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", clen if clen is not None else str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                c.close()

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _do

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def presigned(self):
        with self.lock:
            return [e for e in self.log if "X-Amz-Signature=" in e[1]]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@unittest.skipUnless(ceph_available(), "ceph-mon, ceph-osd and radosgw are not installed")
class S3Test(WorldTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        t0 = time.monotonic()
        cls.ceph = Ceph(cls.w.dir, cls.w.log_dir).start()
        cls.addClassCleanup(cls.ceph.stop)
        sys.stderr.write("ceph rgw up in %.1fs at %s\n" % (time.monotonic() - t0, cls.ceph.endpoint))
        cls.s3 = cls.ceph.client()
        cls.n_buckets = 0

    @classmethod
    def tearDownClass(cls):
        cls.ceph.stop()   # before the World removes the directory Ceph lives in
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        for r in self.w.reg.values():
            r.reset_counts()

    # -- helpers -------------------------------------------------------------
    def new_bucket(self):
        cls = type(self)
        cls.n_buckets += 1
        name = "om-e2e-%d-%d" % (os.getpid(), cls.n_buckets)
        self.s3.create_bucket(name)
        return name

    def s3_config(self, bucket, endpoint=None, **storage):
        st = {"backend": "s3",
              "s3": {"endpoint": endpoint or self.ceph.endpoint, "bucket": bucket,
                     "prefix": "mirror", "access_key": self.ceph.access_key,
                     "secret_key": self.ceph.secret_key, "path_style": True,
                     "part_size": "5MiB"}}
        st.update(storage)
        return {"storage": st}

    def s3_mirror(self, bucket=None, endpoint=None, extra=None, **storage):
        bucket = bucket or self.new_bucket()
        cfg = self.s3_config(bucket, endpoint, **storage)
        for k, v in (extra or {}).items():
            cfg[k] = v
        m = self.mirror(extra=cfg)
        m.bucket = bucket
        return m

    def objects(self, bucket):
        return self.s3.list_objects(bucket, "mirror/")

    def assertBucketHolds(self, bucket, digests_sizes):
        """Exactly these objects, each whose bytes hash to its key."""
        objs = self.objects(bucket)
        want = {bucket_key(d): n for d, n in digests_sizes.items()}
        self.assertEqual(objs, want)
        for d in digests_sizes:
            st, _, body = self.s3.get(bucket, bucket_key(d))
            self.assertEqual(st, 200)
            self.assertEqual(sha256_digest(body), d)
        self.assertEqual(self.s3.list_uploads(bucket), [], "multipart uploads left behind")

    def footprint(self, *imgs):
        objs = {}
        for img in imgs:
            stack = [img]
            while stack:
                i = stack.pop()
                objs[i.digest] = len(i.manifest_bytes)
                for d in i.blobs:
                    objs[d] = len(i.layer_bytes[d])
                stack.extend((i.children or {}).values())
        return objs

    def upstream_blob_gets(self):
        return sum(r.count("GET", r"/blobs/sha256:", status=None) for r in self.w.reg.values())

    def run_cli(self, m, *args, timeout=120):
        return subprocess.run([mirror_bin()] + list(args) + ["-c", m.config_path],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)

    # -- pulls ----------------------------------------------------------------
    def test_pulls_store_content_at_content_keys_and_a_second_pull_costs_no_blob(self):
        m = self.s3_mirror()
        imgs = [self.w.fx[k] for k in ("alpine", "multi", "etcd", "big")]
        for img in imgs:
            self.pull(m, img)
        self.assertBucketHolds(m.bucket, self.footprint(*imgs))
        self.assertGreater(self.upstream_blob_gets(), 0)
        for r in self.w.reg.values():
            r.reset_counts()
        for img in imgs:
            self.pull(m, img)
        self.assertEqual(self.upstream_blob_gets(), 0)

        # Range, passed through to the bucket (big has parts of 5 MiB)
        big = self.w.fx["big"]
        layer = big.layers[0]
        want = big.layer_bytes[layer]
        name = canonical_name(big)
        for first, last in ((0, 0), (PART - 3, PART + 2), (len(want) - 10, len(want) - 1)):
            r = m.get("/v2/%s/blobs/%s" % (name, layer), {"Range": "bytes=%d-%d" % (first, last)})
            self.assertEqual(r.status, 206, r)
            self.assertEqual(r.body, want[first:last + 1])
            self.assertEqual(r.headers.get("Content-Range"), "bytes %d-%d/%d" % (first, last, len(want)))
        r = m.get("/v2/%s/blobs/%s" % (name, layer), {"Range": "bytes=%d-" % (len(want) + 5)})
        self.assertEqual(r.status, 416, r)

        # _catalog, tags/list, the admin API, /metrics and the UI on this backend
        cat = m.get("/v2/_catalog")
        self.assertEqual(cat.status, 200, cat)
        self.assertIn(canonical_name(self.w.fx["etcd"]), cat.json()["repositories"])
        tags = m.get("/v2/%s/tags/list" % canonical_name(self.w.fx["alpine"]))
        self.assertEqual(tags.status, 200, tags)
        self.assertIn("3.19", tags.json()["tags"])
        stats = m.get("/api/v1/stats")
        self.assertEqual(stats.status, 200, stats)
        used = stats.json()["storage"]["used_bytes"]
        self.assertEqual(used, sum(self.objects(m.bucket).values()))
        met = m.get("/metrics")
        self.assertEqual(met.status, 200, met)
        self.assertRegex(met.text, r"(?m)^ocimirror_storage_used_bytes %d$" % used)
        self.assertEqual(m.get("/").status, 200)

    def test_skopeo_copies_an_image_through_an_s3_backed_mirror(self):
        if shutil.which("skopeo") is None:
            self.skipTest("skopeo is not installed")
        m = self.s3_mirror()
        img = self.w.fx["etcd"]
        for attempt in ("cold", "warm"):
            out = tempfile.mkdtemp(dir=self.w.dir)
            r = subprocess.run(["skopeo", "copy", "--src-tls-verify=false",
                                "docker://%s/%s:%s" % (m.host_port, canonical_name(img), img.tag),
                                "dir:" + out], capture_output=True, text=True, timeout=120)
            self.assertEqual(r.returncode, 0, "%s: %s" % (attempt, r.stderr))
            for d in img.blobs:
                with open(os.path.join(out, d.split(":", 1)[1]), "rb") as f:
                    self.assertEqual(sha256_digest(f.read()), d)
        self.assertBucketHolds(m.bucket, self.footprint(img))

    def test_a_restart_with_an_empty_storage_path_serves_everything_from_the_bucket(self):
        bucket = self.new_bucket()
        first = self.s3_mirror(bucket)
        imgs = [self.w.fx[k] for k in ("alpine", "ocimulti", "apiserver", "big")]
        for img in imgs:
            self.pull(first, img)
        first.stop()
        for r in self.w.reg.values():
            r.reset_counts()
        fresh = os.path.join(tempfile.mkdtemp(dir=self.w.dir), "empty")
        second = self.s3_mirror(bucket, extra={}, path=fresh)
        self.assertFalse(os.path.exists(os.path.join(fresh, "blobs")))
        for img in imgs:
            self.pull(second, img)
        self.assertEqual(self.upstream_blob_gets(), 0,
                         "a mirror on an empty storage.path fetched blobs the bucket holds")
        self.assertBucketHolds(bucket, self.footprint(*imgs))

    def test_a_manifest_read_from_a_stalled_bucket_holds_no_http_thread(self):
        """A cached manifest that is not in memory is read from the bucket by
        a job, not by the HTTP thread: with one HTTP thread and the gateway
        frozen (SIGSTOP), other requests are still answered; the manifest
        comes once the gateway thaws, and a fresh tag asks no upstream."""
        m = self.s3_mirror(extra={"tag_ttl": "10m", "limits": {"threads": 1}})
        alpine = self.w.fx["alpine"]
        self.pull(m, alpine)
        m.restart()                        # the memory cache is gone; the index stays
        for r in self.w.reg.values():
            r.reset_counts()
        rgw = self.ceph.pids.get("client.rgw")
        self.assertIsNotNone(rgw, "no radosgw PID")
        got = {}

        def get_manifest():
            got["r"] = m.get("/v2/%s/manifests/%s" % (canonical_name(alpine), alpine.tag),
                             {"Accept": ACCEPT_ALL}, timeout=90)
        os.kill(rgw, signal.SIGSTOP)
        try:
            t = threading.Thread(target=get_manifest, daemon=True)
            t.start()
            time.sleep(0.5)                # it is waiting on the frozen gateway now
            # the one HTTP thread is free: a blocked one would not answer
            # within the 10 s (the bucket's request timeout is 30 s)
            r = m.get("/v2/", timeout=10)
            self.assertEqual(r.status, 200, r)
            self.assertTrue(t.is_alive(), "the manifest did not wait for the gateway")
        finally:
            os.kill(rgw, signal.SIGCONT)
        t.join(90)
        self.assertFalse(t.is_alive())
        self.assertManifest(got["r"], alpine)
        self.assertEqual(sum(r.count(None, r"/manifests/") for r in self.w.reg.values()), 0,
                         "a fresh tag asked the upstream")

    # -- redirect -------------------------------------------------------------
    def test_redirect_answers_307_to_a_presigned_url_that_clients_follow_without_credentials(self):
        proxy = LoggingProxy("127.0.0.1:%d" % urllib.parse.urlsplit(self.ceph.endpoint).port)
        self.addCleanup(proxy.stop)
        m = self.s3_mirror(endpoint=proxy.url, redirect=True, redirect_ttl="2m")
        img = self.w.fx["alpine"]
        self.pull(m, img)                 # cold: streamed from the download
        name = canonical_name(img)
        layer = img.layers[0]
        r = m.get("/v2/%s/blobs/%s" % (name, layer), {"Authorization": "Bearer secret-token"})
        self.assertEqual(r.status, 307, r)
        loc = r.headers["Location"]
        self.assertTrue(loc.startswith(proxy.url + "/%s/mirror/blobs/sha256/" % m.bucket), loc)
        self.assertIn("X-Amz-Expires=120", loc)
        self.assertEqual(r.headers.get("Cache-Control"), "no-store")
        self.assertEqual(r.headers.get("Docker-Content-Digest"), layer)
        u = urllib.parse.urlsplit(loc)
        c = http.client.HTTPConnection(u.netloc, timeout=30)
        c.request("GET", u.path + "?" + u.query)
        got = c.getresponse()
        body = got.read()
        self.assertEqual(got.status, 200)
        self.assertEqual(sha256_digest(body), layer)
        # a range on the presigned URL (what a resuming client does)
        c.request("GET", u.path + "?" + u.query, headers={"Range": "bytes=10-19"})
        got = c.getresponse()
        self.assertEqual((got.status, got.read()), (206, img.layer_bytes[layer][10:20]))
        c.close()
        # HEAD: from metadata, no redirect
        h = m.get("/v2/%s/blobs/%s" % (name, layer), method="HEAD")
        self.assertEqual((h.status, h.headers.get("Content-Length")),
                         (200, str(len(img.layer_bytes[layer]))))
        # a real client follows it and checks the digest, sending no credentials there
        if shutil.which("skopeo"):
            before = len(proxy.presigned())
            out = tempfile.mkdtemp(dir=self.w.dir)
            r = subprocess.run(["skopeo", "copy", "--src-tls-verify=false",
                                "--src-creds", "someone:secret",
                                "docker://%s/%s:%s" % (m.host_port, name, img.tag),
                                "dir:" + out], capture_output=True, text=True, timeout=120)
            self.assertEqual(r.returncode, 0, r.stderr)
            followed = proxy.presigned()[before:]
            self.assertGreaterEqual(len(followed), len(img.blobs), proxy.log)
            self.assertEqual([e for e in followed if e[2]], [],
                             "a client sent Authorization to the bucket")
        # every request the mirror itself made to the bucket was signed
        unsigned = [e for e in proxy.log if "X-Amz-Signature=" not in e[1] and not e[2]]
        self.assertEqual(unsigned, [])

    # -- failures --------------------------------------------------------------
    def test_the_gateway_stopped_gives_503_with_an_oci_error_and_no_partial_state(self):
        m = self.s3_mirror()
        alpine, etcd = self.w.fx["alpine"], self.w.fx["etcd"]
        self.pull(m, alpine)
        layer = alpine.layers[0]
        self.ceph.stop_rgw()
        try:
            h = m.get("/v2/%s/blobs/%s" % (canonical_name(alpine), layer), method="HEAD")
            self.assertEqual(h.status, 200, "HEAD answers from metadata: %r" % h)
            r = m.get("/v2/%s/blobs/%s" % (canonical_name(alpine), layer), timeout=30)
            self.assertErrorJSON(r, 503, "UNAVAILABLE")
            r = m.get("/v2/%s/blobs/%s" % (canonical_name(etcd), etcd.layers[0]), timeout=30)
            self.assertErrorJSON(r, 503, "UNAVAILABLE")
        finally:
            self.ceph.start_rgw()
        self.pull(m, alpine)
        self.pull(m, etcd)
        self.assertBucketHolds(m.bucket, self.footprint(alpine, etcd))

    def test_a_digest_mismatch_leaves_no_object_and_no_multipart_upload(self):
        w = self.w
        cert, key = w.ca.issue("faultproxy-s3")
        proxy = FaultProxy(w.reg["quay"].url, w.ca_file, cert, key,
                           log_path=os.path.join(w.log_dir, "faultproxy.log")).start()
        self.addCleanup(proxy.stop)
        bucket = self.new_bucket()
        cfg = self.s3_config(bucket)
        m = self.mirror(upstream_url={"quay": proxy.url}, extra=cfg)
        big = w.fx["big"]
        layer = big.layers[0]
        proxy.add_rule("corrupt", path=r"^/v2/big/blob/blobs/", offset=28 << 20)
        try:
            r = m.get("/v2/%s/blobs/%s" % (canonical_name(big), layer), timeout=60)
            self.assertFalse(r.status == 200 and sha256_digest(r.body) == layer,
                             "the corrupt blob was served whole")
        except http.client.IncompleteRead:
            pass  # what it should be: the connection cut before the last byte
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.s3.list_uploads(bucket):
            time.sleep(0.2)
        self.assertEqual(self.s3.list_uploads(bucket), [], "the multipart upload was not aborted")
        self.assertNotIn(bucket_key(layer), self.objects(bucket))
        log = m.log_text()
        self.assertIn("blob digest mismatch", log)
        key = bucket_key(layer)
        started = [l for l in log.splitlines() if "multipart upload started" in l and key in l]
        aborted = [l for l in log.splitlines() if "multipart upload aborted" in l and key in l]
        self.assertTrue(started and aborted, "parts went to the bucket before the digest "
                        "check, and the upload was aborted: %r %r" % (started, aborted))
        self.assertNotIn('"parts":"0"', aborted[-1])
        proxy.clear()
        r = m.get("/v2/%s/blobs/%s" % (canonical_name(big), layer), timeout=60)
        self.assertBlob(r, layer)
        self.assertIn(bucket_key(layer), self.objects(bucket))

    def test_a_mirror_killed_mid_upload_aborts_its_upload_at_the_next_start(self):
        w = self.w
        cert, key = w.ca.issue("faultproxy-s3b")
        proxy = FaultProxy(w.reg["quay"].url, w.ca_file, cert, key,
                           log_path=os.path.join(w.log_dir, "faultproxy.log")).start()
        self.addCleanup(proxy.stop)
        bucket = self.new_bucket()
        m = self.mirror(upstream_url={"quay": proxy.url}, extra=self.s3_config(bucket))
        big = w.fx["big"]
        # slow enough that the mirror is killed between parts
        proxy.add_rule("throttle", path=r"^/v2/big/blob/blobs/", rate=4 << 20)
        def pull():
            try:
                m.get("/v2/%s/blobs/%s" % (canonical_name(big), big.layers[0]), timeout=60)
            except (OSError, http.client.HTTPException):
                pass  # the mirror is killed under it
        t = threading.Thread(target=pull, daemon=True)
        t.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not self.s3.list_uploads(bucket):
            time.sleep(0.1)
        self.assertTrue(self.s3.list_uploads(bucket), "no multipart upload seen in progress")
        m.kill9()
        self.assertTrue(self.s3.list_uploads(bucket))      # left behind by the crash
        proxy.clear()
        m.start()
        self.assertEqual(self.s3.list_uploads(bucket), [], "not aborted at the next start")
        self.assertEqual(self.objects(bucket), {})

    # -- gc, fsck ----------------------------------------------------------------
    def test_gc_evicts_to_max_size_and_frees_bucket_space(self):
        alpine, etcd, apiserver = self.w.fx["alpine"], self.w.fx["etcd"], self.w.fx["apiserver"]
        quota = sum(self.footprint(alpine, etcd).values()) + 1000
        m = self.s3_mirror(max_size=str(quota), high_water=95, low_water=85, gc_interval="1s")
        self.pull(m, alpine)
        self.pull(m, etcd)
        time.sleep(1.5)  # alpine and etcd older than the grace period
        self.pull(m, apiserver)
        low = quota // 100 * 85
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sum(self.objects(m.bucket).values()) > low:
            time.sleep(0.3)
        left = self.objects(m.bucket)
        self.assertLessEqual(sum(left.values()), low, left)
        self.assertNotIn(bucket_key(alpine.digest), left, "the least recently used image stays")
        self.assertIn(bucket_key(apiserver.digest), left)
        st = m.get("/api/v1/stats").json()["storage"]["used_bytes"]
        self.assertEqual(st, sum(left.values()))
        # evicted content comes back from upstream
        self.pull(m, alpine)
        # `ocimirror gc` beside the server, on the same bucket
        r = self.run_cli(m, "gc", "--dry-run")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(b"dry run", r.stdout.lower() + r.stderr.lower())

    def test_fsck_on_s3_repairs_a_corrupt_object_and_aborts_a_stale_foreign_upload(self):
        m = self.s3_mirror()
        img = self.w.fx["etcd"]
        self.pull(m, img)
        m.stop()
        victim = img.layers[1]
        size = len(img.layer_bytes[victim])
        self.s3.put(m.bucket, bucket_key(victim), b"x" * size)   # same size, wrong bytes
        self.s3.create_upload(m.bucket, "mirror/blobs/sha256/00/foreign")
        r = self.run_cli(m, "fsck", "--json", "--ingest-age", "0")
        self.assertEqual(r.returncode, 1, r.stderr)
        rep = json.loads(r.stdout)
        kinds = [p["kind"] for p in rep["problems"]]
        self.assertIn("corrupt_blob", kinds, rep)
        self.assertIn("stale_ingest", kinds, rep)
        self.assertEqual(len(self.s3.list_uploads(m.bucket)), 1, "fsck without --repair changed it")
        r = self.run_cli(m, "fsck", "--repair", "--ingest-age", "0")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(self.s3.list_uploads(m.bucket), [])
        self.assertNotIn(bucket_key(victim), self.objects(m.bucket))
        self.assertEqual(self.run_cli(m, "fsck").returncode, 0)
        m.start()
        self.pull(m, img)   # the removed blob is fetched again
        self.assertBucketHolds(m.bucket, self.footprint(img))

    # -- the store's own cases -------------------------------------------------
    def test_the_store_unit_cases_pass_against_the_gateway(self):
        exe = os.path.abspath(os.path.join(os.environ.get("OM_BUILD_DIR", ""), "test_store_s3"))
        if not os.path.exists(exe):
            self.skipTest("no test_store_s3 binary in OM_BUILD_DIR")
        env = dict(os.environ, OM_TEST_S3_ENDPOINT=self.ceph.endpoint,
                   OM_TEST_S3_ACCESS_KEY=self.ceph.access_key,
                   OM_TEST_S3_SECRET_KEY=self.ceph.secret_key)
        r = subprocess.run([exe], env=env, capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stdout[-4000:] + r.stderr[-8000:])
        self.assertNotIn("skipped", r.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
