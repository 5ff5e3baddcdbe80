"""Three replicas, one cluster (issue 11): one upstream transfer per blob for
the whole cluster, every client streaming, and its faults.

The rig (lib/cluster.py): one Ceph RGW for the class (lib/ceph.py), one
redis-server, three replicas on random loopback ports sharing the bucket
(a fresh one per test: every blob cold) and Redis, each its own empty
storage.path; haproxy in front where a test wants it; the World's real
docker-registry upstreams, behind lib/faultproxy.py where a blob must be
slow (counted there: every GET of a blob and the bytes it sent).
  - 12 concurrent cold pulls of the same blobs spread over the replicas:
    each blob leaves the upstream exactly once, every client gets verified
    bytes (upstream bytes per blob and the TTFB of non-owner minus owner
    are printed, never asserted);
  - 6 concurrent cold GETs of a manifest by tag over the replicas: one
    resolution upstream for the cluster (the tag lease);
  - a second pull through haproxy, and a replica restarted on an empty
    storage.path, cost zero upstream blob transfers;
  - SIGKILL of the owning replica mid-transfer of the 32 MiB blob: clients
    on the other replicas finish with the right digest, one takes the lease
    over and resumes from upstream with Range (upstream bytes printed,
    asserted <= 2x the blob);
  - an owner alive (renewing its lease) but unreachable: the other replica
    goes upstream itself after the lease time;
  - Redis stopped: cached pulls work through each replica, /healthz and
    /metrics say so; back: a new cold blob is fetched once again;
  - the internal endpoint refuses requests without and with a wrong token
    (and is 404 on a replica alone);
  - skopeo copies an image end to end through haproxy.

Run: cd tests/e2e && OCIMIRROR_BIN=... ../../scripts/netns-run python3 -u test_cluster.py
"""

import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from lib.ceph import Ceph, ceph_available
from lib.cluster import Cluster, haproxy_available
from lib.faultproxy import FaultProxy
from lib.images import ACCEPT_ALL, sha256_digest
from lib.mirror import mirror_bin
from lib.redisserver import REDIS, RedisServer
from lib.registry import free_port
from lib.world import WorldTestCase, canonical_name


def fetch(host_port, path, headers=None, timeout=120):
    """GET → (status, body, ttfb seconds, headers)."""
    h, p = host_port.rsplit(":", 1)
    c = http.client.HTTPConnection(h, int(p), timeout=timeout)
    try:
        t0 = time.monotonic()
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        first = r.read(1)
        ttfb = time.monotonic() - t0
        body = first + r.read()
        return r.status, body, ttfb, dict((k.lower(), v) for k, v in r.getheaders())
    finally:
        c.close()


class ClusterRig(WorldTestCase):
    """One Ceph RGW for the class, a fresh redis-server for each test, and a
    bounded wait: the base of the cluster suites (no tests of its own)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        t0 = time.monotonic()
        cls.ceph = Ceph(cls.w.dir, cls.w.log_dir).start()
        cls.addClassCleanup(cls.ceph.stop)
        sys.stderr.write("ceph rgw up in %.1fs\n" % (time.monotonic() - t0))

    @classmethod
    def tearDownClass(cls):
        cls.ceph.stop()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.redis = RedisServer()
        self.redis.start()
        self.addCleanup(self.redis.close)

    def wait(self, cond, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return
            time.sleep(0.05)
        self.fail("timed out waiting for " + what)


@unittest.skipUnless(ceph_available() and os.access(REDIS, os.X_OK) and haproxy_available(),
                     "needs ceph (mon, osd, radosgw), redis-server and haproxy")
class ClusterTest(ClusterRig):

    def setUp(self):
        super().setUp()
        for r in self.w.reg.values():
            r.reset_counts()

    def proxy(self, reg="quay"):
        cert, key = self.w.ca.issue("faultproxy-cluster")
        p = FaultProxy(self.w.reg[reg].url, self.w.ca_file, cert, key,
                       log_path=os.path.join(self.w.log_dir, "faultproxy.log")).start()
        self.addCleanup(p.stop)
        return p

    def upstream_blob_gets(self):
        return sum(r.count("GET", r"/blobs/sha256:", status=None) for r in self.w.reg.values())

    def blob_gets_at(self, proxy, want=()):
        """digest -> [bytes sent] of every GET of a blob the proxy saw.  The
        proxy logs a request when its answer is sent: wait (bounded) until
        each digest of `want` shows, then a little longer for stragglers."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            got = {e["path"].rsplit("/", 1)[1] for e in
                   proxy.requests(path_re=r"/blobs/sha256:", method="GET")}
            if all(d in got for d in want):
                break
            time.sleep(0.05)
        time.sleep(0.3)
        out = {}
        for e in proxy.requests(path_re=r"/blobs/sha256:", method="GET"):
            d = e["path"].rsplit("/", 1)[1].split("?")[0]
            out.setdefault(d, []).append(e.get("sent") or 0)
        return out

    def owners(self, cl, digest):
        """Indexes of the replicas whose log says they took d's lease."""
        return [i for i, m in enumerate(cl.replicas)
                if any("download lease taken" in l and digest in l
                       for l in m.log_text().splitlines())]

    # -- one transfer per blob ----------------------------------------------
    def test_12_concurrent_cold_pulls_leave_the_upstream_once_per_blob(self):
        p = self.proxy()
        p.add_rule("throttle", path=r"/blobs/sha256:", rate=1 << 20)
        cl = Cluster(self, self.ceph, self.redis, upstream_url={"quay": p.url})
        img = self.w.fx["etcd"]
        name = canonical_name(img)
        sizes = {d: len(img.layer_bytes[d]) for d in img.blobs}
        results, errors = [], []
        start = threading.Barrier(12)

        def client(k):
            m = cl.replicas[k % 3]
            order = list(img.blobs)[k % len(img.blobs):] + list(img.blobs)[:k % len(img.blobs)]
            try:
                start.wait(10)
                for d in order:
                    st, body, ttfb, _ = fetch(m.host_port, "/v2/%s/blobs/%s" % (name, d))
                    results.append((k % 3, d, st, sha256_digest(body), ttfb))
            except Exception as e:  # reported below
                errors.append(repr(e))
        ts = [threading.Thread(target=client, args=(k,)) for k in range(12)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        self.assertEqual(errors, [])
        self.assertEqual(len(results), 12 * len(img.blobs))
        for r, d, st, got, _ in results:
            self.assertEqual((st, got), (200, d), "replica %d, blob %s" % (r, d))
        gets = self.blob_gets_at(p, img.blobs)
        for d in img.blobs:
            self.assertEqual(len(gets.get(d, [])), 1, "blob %s left the upstream %d times" % (
                d, len(gets.get(d, []))))
        up_bytes = sum(sum(v) for v in gets.values())
        sys.stderr.write("cluster: 12 concurrent cold pulls over 3 replicas: upstream bytes per "
                         "blob %.2fx (%d of %d)\n" % (up_bytes / sum(sizes.values()), up_bytes,
                                                      sum(sizes.values())))
        # TTFB: a client on the owner vs one on a non-owner, per blob
        diffs = []
        for d in img.blobs:
            own = self.owners(cl, d)
            if len(own) != 1:
                continue
            o = [t for r, dd, _, _, t in results if dd == d and r == own[0]]
            n = [t for r, dd, _, _, t in results if dd == d and r != own[0]]
            if o and n:
                diffs.append((sum(n) / len(n) - sum(o) / len(o)) * 1000)
        if diffs:
            sys.stderr.write("cluster: TTFB non-owner minus owner, mean over %d blobs: %.1f ms "
                             "(%s)\n" % (len(diffs), sum(diffs) / len(diffs),
                                         ", ".join("%.1f" % x for x in diffs)))
        # at least one lease per blob (a replica that wins one for an object
        # committed meanwhile reads it from the bucket: counted, no transfer)
        leases = sum(cl.metric(m, "ocimirror_cluster_leases_won_total") for m in cl.replicas)
        self.assertGreaterEqual(leases, len(img.blobs))
        # released once the commit is visible (just after the last byte)
        self.wait(lambda: all(self.redis.command("GET", "om:fl:" + d) is None
                              for d in img.blobs), 10, "the leases to be released")

    def test_a_second_pull_and_a_restart_on_an_empty_path_cost_no_upstream_blob(self):
        cl = Cluster(self, self.ceph, self.redis)
        imgs = [self.w.fx["alpine"], self.w.fx["apiserver"]]
        for img in imgs:
            self.pull(cl.replicas[0], img)
        self.assertGreater(self.upstream_blob_gets(), 0)
        for r in self.w.reg.values():
            r.reset_counts()
        lb = cl.start_haproxy()
        for _ in range(3):             # roundrobin: every replica once
            for img in imgs:
                self.pull(_Via(lb.host_port), img)
        cl.restart(1, empty=True)
        for img in imgs:
            self.pull(cl.replicas[1], img)
        self.assertEqual(self.upstream_blob_gets(), 0, "a warm pull cost upstream blob GETs")

    def test_concurrent_cold_manifest_by_tag_is_resolved_once_for_the_cluster(self):
        cl = Cluster(self, self.ceph, self.redis)
        img = self.w.fx["app"]
        path = "/v2/%s/manifests/%s" % (canonical_name(img), img.tag)
        start = threading.Barrier(6)
        got, errors = [], []

        def client(k):
            try:
                start.wait(10)
                st, body, _, h = fetch(cl.replicas[k % 3].host_port, path,
                                       {"Accept": ACCEPT_ALL})
                got.append((st, h.get("docker-content-digest"), body == img.manifest_bytes))
            except Exception as e:
                errors.append(repr(e))
        ts = [threading.Thread(target=client, args=(k,)) for k in range(6)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        self.assertEqual(errors, [])
        self.assertEqual(got, [(200, img.digest, True)] * 6)
        hub = self.w.reg["hub"]
        by_tag = r"/manifests/%s$" % img.tag
        # answered requests only (a 401 challenge before each is the token dance)
        self.assertEqual(hub.count("GET", by_tag, status=200) +
                         hub.count("HEAD", by_tag, status=200), 1,
                         "the tag was resolved upstream more than once for the cluster")

    # -- the owner killed ----------------------------------------------------
    def test_sigkill_of_the_owner_mid_transfer_and_the_others_finish(self):
        p = self.proxy()
        p.add_rule("throttle", path=r"/blobs/sha256:", rate=4 << 20)
        cl = Cluster(self, self.ceph, self.redis, upstream_url={"quay": p.url}, lease="2s")
        big = self.w.fx["big"]
        layer = big.layers[0]
        size = len(big.layer_bytes[layer])
        path = "/v2/%s/blobs/%s" % (canonical_name(big), layer)
        out = {}

        def client(i):
            try:
                st, body, _, _ = fetch(cl.replicas[i].host_port, path, timeout=120)
                out[i] = (st, sha256_digest(body))
            except Exception as e:
                out[i] = ("error", repr(e))
        t0 = threading.Thread(target=client, args=(0,))
        t0.start()
        owner_url = "http://%s|" % cl.replicas[0].host_port
        self.wait(lambda: (self.redis.command("GET", "om:fl:" + layer) or "").find(
            owner_url) >= 0, 20, "replica 0 to own the download")
        others = [threading.Thread(target=client, args=(i,)) for i in (1, 2)]
        for t in others:
            t.start()
        # the others stream from the owner for a while, then it dies
        self.wait(lambda: all(cl.metric(cl.replicas[i], "ocimirror_download_peer_bytes_total")
                              > (2 << 20) for i in (1, 2)), 30, "the peer streams")
        cl.replicas[0].kill9()
        for t in others:
            t.join(120)
        t0.join(30)
        for i in (1, 2):
            self.assertEqual(out.get(i), (200, layer), "client of replica %d" % i)
        gets = self.blob_gets_at(p, [layer]).get(layer, [])
        up = sum(gets)
        sys.stderr.write("cluster: owner SIGKILLed mid-transfer: upstream bytes %.2fx the blob "
                         "(%d GETs, %d bytes of %d)\n" % (up / size, len(gets), up, size))
        # 1x the blob plus what was in flight at the kill (the proxy's sent
        # counts what left it, some of which died in the killed replica)
        self.assertLessEqual(up, 2 * size)
        self.assertGreaterEqual(len(gets), 2, "nobody resumed from upstream")
        takeovers = sum(cl.metric(cl.replicas[i], "ocimirror_cluster_takeovers_total")
                        for i in (1, 2))
        self.assertEqual(takeovers, 1)
        # in the bucket now: a cold client of the restarted replica gets it
        for r in self.w.reg.values():
            r.reset_counts()
        p.clear_log()
        m0 = cl.restart(0, empty=True)
        st, body, _, _ = fetch(m0.host_port, path)
        self.assertEqual((st, sha256_digest(body)), (200, layer))
        self.assertEqual(self.blob_gets_at(p).get(layer, []), [])
        # whatever multipart upload the killed owner left in the bucket, GC
        # (the command, on a survivor's config) aborts it: nothing stale stays
        left = len(self.ceph.client().list_uploads(cl.bucket))
        g = subprocess.run([mirror_bin(), "gc", "--ingest-age", "0", "-c",
                            cl.replicas[1].config_path], capture_output=True, text=True,
                           timeout=120)
        self.assertEqual(g.returncode, 0, g.stdout + g.stderr)
        self.assertEqual(self.ceph.client().list_uploads(cl.bucket), [],
                         "stale multipart uploads after GC (%d before)" % left)
        sys.stderr.write("cluster: %d multipart upload(s) left by the killed owner, aborted by GC\n"
                         % left)

    def test_an_owner_alive_but_unreachable_is_bypassed_after_the_lease_time(self):
        p = self.proxy()
        p.add_rule("throttle", path=r"/blobs/sha256:", rate=8 << 20)
        dead = "http://127.0.0.1:%d" % free_port()   # nobody listens there
        cl = Cluster(self, self.ceph, self.redis, n=2, upstream_url={"quay": p.url},
                     lease="1s", peer_urls={0: dead})
        img = self.w.fx["big"]
        d = img.layers[0]            # 32 MiB: ~4 s, longer than the lease time
        path = "/v2/%s/blobs/%s" % (canonical_name(img), d)
        out = {}

        def client(i):
            st, body, _, _ = fetch(cl.replicas[i].host_port, path)
            out[i] = (st, sha256_digest(body))
        t0 = threading.Thread(target=client, args=(0,))
        t0.start()
        self.wait(lambda: (self.redis.command("GET", "om:fl:" + d) or "").find(dead) >= 0, 20,
                  "replica 0 to own the download")
        client(1)
        t0.join(60)
        self.assertEqual(out, {0: (200, d), 1: (200, d)})
        self.assertIn("peer endpoint does not answer", cl.replicas[1].log_text())

    # -- Redis down ----------------------------------------------------------
    def test_with_redis_stopped_cached_pulls_work_and_coordination_resumes(self):
        p = self.proxy("k8s")
        cl = Cluster(self, self.ceph, self.redis, upstream_url={"k8s": p.url})
        pause, coredns = self.w.fx["pause"], self.w.fx["coredns"]
        self.pull(cl.replicas[0], pause)
        self.redis.stop()
        for m in cl.replicas:
            self.pull(m, pause)
        self.wait(lambda: b"cluster redis" in cl.replicas[1].get("/healthz").body, 10,
                  "/healthz to say the cluster's redis is down")
        h = cl.replicas[1].get("/healthz")
        self.assertEqual(h.status, 200)
        self.assertTrue(h.body.startswith(b"degraded\n"), h.body)
        self.assertEqual(cl.metric(cl.replicas[1], "ocimirror_cluster_redis_up"), 0)
        self.redis.start()
        self.wait(lambda: all(cl.metric(m, "ocimirror_cluster_redis_up") == 1
                              for m in cl.replicas), 20, "the replicas to see redis again")
        p.clear_log()
        p.add_rule("throttle", path=r"/blobs/sha256:", rate=1 << 20)
        errors = []

        def client(m):
            try:
                for d in coredns.blobs:
                    st, body, _, _ = fetch(m.host_port, "/v2/%s/blobs/%s" % (
                        canonical_name(coredns), d))
                    if (st, sha256_digest(body)) != (200, d):
                        errors.append((m.port, d, st))
            except Exception as e:
                errors.append(repr(e))
        ts = [threading.Thread(target=client, args=(m,)) for m in cl.replicas]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        self.assertEqual(errors, [])
        gets = self.blob_gets_at(p, coredns.blobs)
        for d in coredns.blobs:
            self.assertEqual(len(gets.get(d, [])), 1, "after redis came back, %s left the "
                             "upstream %d times" % (d, len(gets.get(d, []))))

    # -- the internal endpoint ------------------------------------------------
    def test_the_internal_endpoint_needs_the_peer_token(self):
        cl = Cluster(self, self.ceph, self.redis, n=1)
        m = cl.replicas[0]
        img = self.w.fx["pause"]
        self.pull(m, img)
        d = img.blobs[0]
        path = "/internal/v1/blobs/" + d
        r = m.get(path)
        self.assertErrorJSON(r, 401, "UNAUTHORIZED")
        r = m.get(path, {"Authorization": "Bearer wrong-" + cl.token})
        self.assertErrorJSON(r, 403, "DENIED")
        r = m.get(path, {"Authorization": "Bearer " + cl.token})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(sha256_digest(r.body), d)
        r = m.get(path, {"Authorization": "Bearer " + cl.token, "Range": "bytes=10-"})
        self.assertEqual(r.status, 206, r)
        self.assertEqual(r.body, img.layer_bytes[d][10:])
        r = m.get("/internal/v1/blobs/sha256:" + "0" * 64,
                  {"Authorization": "Bearer " + cl.token})
        self.assertErrorJSON(r, 404, "BLOB_UNKNOWN")
        alone = self.mirror()
        self.assertErrorJSON(alone.get(path, {"Authorization": "Bearer " + cl.token}), 404)

    # -- a real client ----------------------------------------------------------
    def test_skopeo_copies_an_image_through_haproxy(self):
        if shutil.which("skopeo") is None:
            self.skipTest("skopeo is not installed")
        cl = Cluster(self, self.ceph, self.redis)
        lb = cl.start_haproxy()
        img = self.w.fx["apiserver"]
        out = tempfile.mkdtemp(dir=self.w.dir)
        r = subprocess.run(["skopeo", "copy", "--src-tls-verify=false",
                            "docker://%s/%s:%s" % (lb.host_port, canonical_name(img), img.tag),
                            "dir:" + out], capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        for d in img.blobs:
            with open(os.path.join(out, d.split(":", 1)[1]), "rb") as f:
                self.assertEqual(sha256_digest(f.read()), d)


class _Via:
    """A mirror-like object for WorldTestCase.pull through haproxy."""

    def __init__(self, host_port):
        self.host_port = host_port

    def get(self, path, headers=None, method="GET", body=None, timeout=60):
        from lib.mirror import CIDict, Resp
        h, p = self.host_port.rsplit(":", 1)
        c = http.client.HTTPConnection(h, int(p), timeout=timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
            return Resp(r.status, r.reason, CIDict(r.getheaders()), data)
        finally:
            c.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
