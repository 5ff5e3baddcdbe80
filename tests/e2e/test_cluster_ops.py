"""The operations side of a cluster: two ocimirror replicas started directly
(no load balancer) on one Ceph RGW bucket and one redis-server.

  - heartbeats: GET /api/v1/cluster on each replica lists both (and a
    download lease planted by hand, with its owner and time left); a
    replica killed disappears within the heartbeat expiry; /metrics says
    how many replicas and leases there are; with Redis stopped the view
    says so and the beats resume when it is back; the UI has the Cluster
    page; a replica alone says "alone";
  - one GC leader: POST /api/v1/gc on both replicas at the same instant
    (the bucket listing slowed by a proxy, so the runs overlap): exactly
    one runs, the other skips (its answer, its log), the lease is released
    after; `ocimirror gc` works on the Redis index and aborts a planted
    stale multipart upload;
  - eviction to storage.max_size on the shared bucket frees bucket space,
    keeps an image another replica pulls while GC runs, keeps a blob whose
    download lease om:fl:<digest> exists (until the lease goes), keeps the
    counters of om:stats exact; the evicted image is fetched again with the
    right bytes; an object the index knows but the bucket lost is a miss.

Run: cd tests/e2e && OCIMIRROR_BIN=... ../../scripts/netns-run python3 -u test_cluster_ops.py
"""

import http.client
import http.server
import json
import os
import re
import socketserver
import subprocess
import sys
import threading
import time
import unittest
import urllib.parse

from lib.ceph import Ceph, ceph_available
from lib.mirror import mirror_bin
from lib.world import WorldTestCase, canonical_name
from test_redis import REDIS, RedisServer

TOKEN = "cluster-ops-admin-token"
AUTH = {"Authorization": "Bearer " + TOKEN}
EXPIRY_S = 6          # OM_CLUSTER_EXPIRY_MS: 3 heartbeats of 2 s
CLUSTER_GRACE_S = 5   # OM_GC_CLUSTER_GRACE_MIN_MS


def bucket_key(digest, prefix="mirror/"):
    h = digest.split(":", 1)[1]
    return "%sblobs/sha256/%s/%s" % (prefix, h[:2], h)


def footprint(*imgs):
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


class SlowListProxy:
    """HTTP in front of the RGW that passes everything through unchanged
    (Host included, so signatures hold) and holds each bucket listing
    (ListObjectsV2) for `delay` seconds: a GC run then lasts long enough
    that a second replica's run certainly starts while the first holds
    the lease."""

    def __init__(self, upstream_host_port, delay):
        outer = self
        self.upstream, self.delay = upstream_host_port, delay

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _do(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                if self.command == "GET" and "list-type=2" in self.path:
                    time.sleep(outer.delay)
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
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                c.close()

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _do

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.server.server_address[1]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@unittest.skipUnless(ceph_available() and os.access(REDIS, os.X_OK),
                     "needs ceph-mon, ceph-osd, radosgw and redis-server")
class ClusterOpsTest(WorldTestCase):

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
        cls.ceph.stop()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.redis = RedisServer()
        self.redis.start()
        self.addCleanup(self.redis.close)
        for r in self.w.reg.values():
            r.reset_counts()

    # -- helpers ---------------------------------------------------------------
    def new_bucket(self):
        cls = type(self)
        cls.n_buckets += 1
        name = "om-ops-%d-%d" % (os.getpid(), cls.n_buckets)
        self.s3.create_bucket(name)
        return name

    def replica(self, bucket, name, endpoint=None, **storage):
        st = {"backend": "s3",
              "s3": {"endpoint": endpoint or self.ceph.endpoint, "bucket": bucket,
                     "prefix": "mirror", "access_key": self.ceph.access_key,
                     "secret_key": self.ceph.secret_key, "path_style": True,
                     "part_size": "5MiB"}}
        st.update(storage)
        token = os.path.join(self.redis.dir, "peer-token")
        if not os.path.exists(token):
            with open(token, "w") as f:
                f.write("cluster-ops-test-token\n")
            os.chmod(token, 0o600)
        cfg = {"storage": st, "admin": {"token": TOKEN},
               "cluster": {"redis": "unix://%s?db=0" % self.redis.sock,
                           "peer_url": self.peer(name), "peer_token_file": token}}
        m = self.mirror(extra=cfg)
        m.bucket = bucket
        return m

    @staticmethod
    def peer(name):
        return "http://replica-%s.test:5000" % name

    def cluster(self, m):
        r = m.get("/api/v1/cluster")
        self.assertEqual(r.status, 200, r)
        return r.json()

    def wait_for(self, what, fn, timeout):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = fn()
            if last:
                return last
            time.sleep(0.2)
        self.fail("timed out waiting for %s (last: %r)" % (what, last))

    def ids(self, m):
        return sorted(r["id"] for r in self.cluster(m)["replicas"])

    def metric(self, m, name):
        mt = re.search(r"(?m)^%s (\d+)$" % name, m.get("/metrics").text)
        return int(mt.group(1)) if mt else None

    def objects(self, bucket):
        return self.s3.list_objects(bucket, "mirror/")

    def upstream_blob_gets(self):
        return sum(r.count("GET", r"/blobs/sha256:", status=None) for r in self.w.reg.values())

    # -- heartbeats and the cluster view -----------------------------------------
    def test_replicas_list_each_other_and_a_killed_one_expires(self):
        bucket = self.new_bucket()
        a = self.replica(bucket, "a", gc_interval="1h")
        b = self.replica(bucket, "b", gc_interval="1h")
        both = sorted([self.peer("a"), self.peer("b")])
        for m, me in ((a, "a"), (b, "b")):
            self.wait_for("both replicas on " + me, lambda: self.ids(m) == both, 10)
            c = self.cluster(m)
            self.assertEqual(c["mode"], "cluster")
            self.assertEqual(c["replica_id"], self.peer(me))
            self.assertTrue(c["redis"]["up"], c)
            self.assertTrue(c["bucket"]["up"], c)
            self.assertEqual(c["bucket"]["backend"], "s3")
            mine = [r for r in c["replicas"] if r["self"]]
            self.assertEqual([r["id"] for r in mine], [self.peer(me)])
            for r in c["replicas"]:
                self.assertTrue(r["index_ok"] and r["bucket_ok"], r)
                self.assertLess(r["last_seen_age_ms"], EXPIRY_S * 1000)
        # the heartbeat record itself, with its expiry
        hb = json.loads(self.redis.command("GET", "om:rp:" + self.peer("a")))
        self.assertEqual(hb["peer_url"], self.peer("a"))
        ttl = self.redis.command("PTTL", "om:rp:" + self.peer("a"))
        self.assertTrue(0 < ttl <= EXPIRY_S * 1000, ttl)
        # a download lease (as the download path writes it) is listed with its owner
        alpine = self.w.fx["alpine"]
        d = alpine.layers[0]
        self.redis.command("SET", "om:fl:" + d, "%s|%s|7" % (self.peer("b"), self.peer("b")),
                           "PX", "30000")
        fl = self.cluster(a)["downloads"]
        self.assertEqual(len(fl), 1, fl)
        self.assertEqual((fl[0]["digest"], fl[0]["owner"], fl[0]["peer_url"], fl[0]["epoch"]),
                         (d, self.peer("b"), self.peer("b"), "7"))
        self.assertTrue(0 < fl[0]["ttl_ms"] <= 30000)
        self.wait_for("metrics", lambda: self.metric(a, "ocimirror_cluster_replicas") == 2 and
                      self.metric(a, "ocimirror_cluster_downloads_in_flight") == 1, 10)
        self.assertEqual(self.metric(a, "ocimirror_gc_leader"), 0)
        self.redis.command("DEL", "om:fl:" + d)
        # killed (no goodbye): gone once its heartbeat expires
        b.kill9()
        self.wait_for("b to expire", lambda: self.ids(a) == [self.peer("a")], EXPIRY_S + 6)
        self.wait_for("metrics after b died",
                      lambda: self.metric(a, "ocimirror_cluster_replicas") == 1, 6)
        # Redis down: the beats pause (nothing logged for them), the view says
        # so; back (empty): the beats resume by themselves
        self.redis.stop()
        c = self.wait_for("redis down in the view",
                          lambda: (lambda c: c if not c["redis"]["up"] else None)(self.cluster(a)), 10)
        self.assertEqual(c["replicas"], [])
        self.assertIsNotNone(c["redis"]["error"])
        self.wait_for("no replicas counted", lambda: self.metric(a, "ocimirror_cluster_replicas") == 0, 8)
        self.redis.start()
        self.wait_for("a back in the view", lambda: self.ids(a) == [self.peer("a")], 15)
        self.assertNotIn("redis: cluster:", a.log_text())   # no line per failed beat
        # the UI has the page; a replica alone says so
        self.assertEqual(a.get("/ui/cluster.js").status, 200)
        self.assertIn(b'href="#/cluster"', a.get("/").body)
        alone = self.mirror()
        c = self.cluster(alone)
        self.assertEqual(c["mode"], "alone")
        self.assertIsNone(c["redis"])
        self.assertEqual(len(c["replicas"]), 1)
        self.assertTrue(c["replicas"][0]["self"])
        self.assertEqual(c["bucket"]["backend"], "fs")
        self.assertEqual(self.metric(alone, "ocimirror_cluster_replicas"), 1)

    # -- one GC leader -------------------------------------------------------------
    def test_gc_started_at_once_on_two_replicas_runs_once(self):
        proxy = SlowListProxy("127.0.0.1:%d" % urllib.parse.urlsplit(self.ceph.endpoint).port,
                              delay=1.0)
        self.addCleanup(proxy.stop)
        bucket = self.new_bucket()
        a = self.replica(bucket, "a", endpoint=proxy.url, gc_interval="1h")
        b = self.replica(bucket, "b", endpoint=proxy.url, gc_interval="1h")
        alpine = self.w.fx["alpine"]
        self.pull(a, alpine)
        before = self.objects(bucket)
        go = threading.Barrier(2)
        answers = {}

        def run(m, key):
            go.wait(timeout=10)
            answers[key] = m.get("/api/v1/gc", AUTH, method="POST", body=b"", timeout=60)

        ts = [threading.Thread(target=run, args=(m, k)) for m, k in ((a, "a"), (b, "b"))]
        for t in ts:
            t.start()
        for t in ts:
            t.join(timeout=60)
        self.assertEqual(sorted(answers), ["a", "b"])
        for r in answers.values():
            self.assertEqual(r.status, 200, r)
        skipped = {k: r.json()["skipped"] for k, r in answers.items()}
        self.assertEqual(sorted(skipped.values()), [False, True], answers)
        loser = a if skipped["a"] else b
        winner = b if loser is a else a
        self.assertTrue(answers["a" if loser is a else "b"].json()["leader"]
                        .startswith(self.peer("b" if loser is a else "a") + "|"))
        skip_line = "gc: skipped: another replica holds the gc lease"
        self.assertIn(skip_line, loser.log_text())
        self.assertNotIn(skip_line, winner.log_text())
        self.assertIsNone(self.redis.command("GET", "om:lock:gc"), "the lease was not released")
        self.assertEqual(self.objects(bucket), before, "GC removed content within the grace period")
        st = self.cluster(winner)["gc"]
        self.assertEqual((st["running"], st["leader"], st["lease_holder"]), (True, False, None))

        # `ocimirror gc` on the Redis index: it takes the same lease, and
        # aborts a stale multipart upload (one nobody sends parts to)
        self.s3.create_upload(bucket, "mirror/blobs/sha256/00/" + "0" * 64)
        self.assertEqual(len(self.s3.list_uploads(bucket)), 1)
        p = subprocess.run([mirror_bin(), "gc", "--ingest-age", "0", "-c", a.config_path],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("aborted 1 stale multipart upload", p.stdout)
        self.assertEqual(self.s3.list_uploads(bucket), [])
        self.assertEqual(self.objects(bucket), before)
        # while a replica holds the lease the command skips its round
        self.redis.command("SET", "om:lock:gc", "someone-else|1", "PX", "30000")
        p = subprocess.run([mirror_bin(), "gc", "-c", a.config_path],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("skipped: another replica holds the gc lease (someone-else|1)", p.stdout)
        r = a.get("/api/v1/gc", AUTH, method="POST", body=b"", timeout=60)
        self.assertEqual((r.status, r.json()["skipped"], r.json()["leader"]),
                         (200, True, "someone-else|1"))

    # -- eviction on the shared bucket ---------------------------------------------
    def test_eviction_frees_bucket_space_and_keeps_what_is_in_use(self):
        alpine, etcd, apiserver = self.w.fx["alpine"], self.w.fx["etcd"], self.w.fx["apiserver"]
        quota = sum(footprint(alpine, etcd).values()) + 1000
        bucket = self.new_bucket()
        opts = dict(max_size=str(quota), high_water=95, low_water=85, gc_interval="1s")
        a = self.replica(bucket, "a", **opts)
        b = self.replica(bucket, "b", **opts)
        self.pull(a, alpine)
        self.pull(b, etcd)
        keep = set(footprint(etcd, apiserver))
        leased = [d for d in alpine.blobs if d not in keep][0]
        gone = [d for d in footprint(alpine) if d not in keep and d != leased]
        self.assertTrue(gone)
        # a replica (not these two) is fetching `leased` again right now
        self.redis.command("SET", "om:fl:" + leased, "replica-x|http://x.test:1|1", "PX", "120000")
        time.sleep(CLUSTER_GRACE_S + 0.5)   # alpine and etcd idle longer than the grace period

        stop, errors = threading.Event(), []

        def keep_pulling():   # etcd stays in use on b while GC runs
            while not stop.is_set():
                try:
                    self.pull(b, etcd)
                except Exception as e:  # noqa: BLE001 (reported below)
                    errors.append(e)
                    return
                stop.wait(0.3)

        t = threading.Thread(target=keep_pulling, daemon=True)
        t.start()
        try:
            self.pull(a, apiserver)           # over the quota now
            self.wait_for("alpine to be evicted from the bucket",
                          lambda: not any(bucket_key(d) in self.objects(bucket) for d in gone), 40)
            time.sleep(2.5)                   # a few more GC rounds while etcd is pulled
        finally:
            stop.set()
            t.join(timeout=30)
        self.assertEqual(errors, [])
        objs = self.objects(bucket)
        for d in keep:
            self.assertIn(bucket_key(d), objs, "an object in use was evicted")
        self.assertIn(bucket_key(leased), objs, "a blob with a download lease was deleted")
        # exactly what is in use (and the leased blob) is left: space was freed
        want = {bucket_key(d): n for d, n in footprint(etcd, apiserver).items()}
        want[bucket_key(leased)] = len(alpine.layer_bytes[leased])
        self.assertEqual(objs, want)
        self.assertLess(sum(objs.values()), sum(footprint(alpine, etcd, apiserver).values()))
        # the counters stay exact: what the index says it holds is what the bucket holds
        stats = self.redis.command("HGETALL", "om:stats")
        stats = dict(zip(stats[::2], stats[1::2]))
        self.assertEqual(int(stats["blob_bytes"]) + int(stats["manifest_bytes"]),
                         sum(objs.values()), stats)
        # who ran: one of the two, each round; in the logs of at least one
        log = a.log_text() + b.log_text()
        self.assertIn("gc: image evicted", log)
        # without the lease the blob is an orphan and goes in a later round
        self.redis.command("DEL", "om:fl:" + leased)
        self.wait_for("the orphan to go",
                      lambda: bucket_key(leased) not in self.objects(bucket), CLUSTER_GRACE_S + 15)
        # the evicted image is fetched again, with the right bytes
        for r in self.w.reg.values():
            r.reset_counts()
        self.pull(b, alpine)
        self.assertGreater(self.upstream_blob_gets(), 0)
        self.assertIn(bucket_key(leased), self.objects(bucket))
        # an object the index knows but the bucket lost is a miss, not an error
        lost = etcd.layers[0]
        self.assertEqual(self.s3.delete(bucket, bucket_key(lost)), 204)
        r = a.get("/v2/%s/blobs/%s" % (canonical_name(etcd), lost), timeout=60)
        self.assertBlob(r, lost)


if __name__ == "__main__":
    unittest.main(verbosity=2)
