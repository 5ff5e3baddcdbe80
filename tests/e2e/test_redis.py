"""Replicas sharing their metadata in Redis (cluster.redis): what one
replica records the other lists; with Redis stopped, cached content is
still served, cold pulls still work, and the log says so; when Redis comes
back (empty: no persistence) the replica picks up again by itself.
check-config refuses a bad cluster.redis and never prints the password.

redis-server is started by the test on a unix socket in a temp dir, with
setsid, and stopped by its PID (it rewrites its command line).  Skipped
when redis-server is not installed.

Run: cd tests/e2e && OCIMIRROR_BIN=... ../../scripts/netns-run python3 -u test_redis.py
"""

import os
import shutil
import subprocess
import tempfile
import time
import unittest

from lib.world import WorldTestCase, canonical_name
from lib.images import ACCEPT_ALL
from lib.mirror import mirror_bin

from lib.redisserver import REDIS, RedisServer


@unittest.skipUnless(os.access(REDIS, os.X_OK), "redis-server is not installed")
class RedisClusterTest(WorldTestCase):

    def setUp(self):
        super().setUp()
        self.redis = RedisServer()
        self.redis.start()
        self.addCleanup(self.redis.close)

    def cluster(self):
        return {"cluster": {"redis": "unix://%s?db=0" % self.redis.sock}}

    def catalog(self, m):
        r = m.get("/v2/_catalog")
        self.assertEqual(r.status, 200, r)
        return r.json()["repositories"]

    def wait_log(self, m, text, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in m.log_text():
                return
            time.sleep(0.05)
        self.fail("%r not in the log" % text)

    def test_two_replicas_share_tag_records_and_the_catalog(self):
        a = self.mirror(extra=self.cluster())
        b = self.mirror(extra=self.cluster())
        alpine = self.w.fx["alpine"]
        self.pull(a, alpine)
        name = canonical_name(alpine)
        self.assertIn(name, self.catalog(b))
        # the tag record a stored is in Redis, with its check time
        key = "om:tag:%s:%s" % (name, alpine.tag)
        self.assertEqual(self.redis.command("HGET", key, "d"), alpine.digest)
        self.assertEqual(self.redis.command("HGET", "om:meta", "schema"), "1")
        # b serves the same image (from its own store: it fetches the bytes)
        self.pull(b, alpine)
        # neither keeps an index.db; GC runs on the shared index (one leader
        # at a time: test_cluster_ops.py)
        self.assertFalse(os.path.exists(os.path.join(a.storage, "index.db")))
        self.assertIn("gc: started", a.log_text())

    def test_with_redis_down_cached_content_is_served_and_it_heals(self):
        m = self.mirror(extra=self.cluster())
        alpine, etcd = self.w.fx["alpine"], self.w.fx["etcd"]
        self.pull(m, alpine)
        self.redis.stop()
        t0 = time.monotonic()
        self.pull(m, alpine)                      # by tag, by digest, every blob
        r = m.get("/v2/%s/manifests/%s" % (canonical_name(alpine), alpine.digest),
                  {"Accept": ACCEPT_ALL})
        self.assertManifest(r, alpine)
        self.assertLess(time.monotonic() - t0, 5, "serving must not wait on the dead Redis")
        self.wait_log(m, "redis: unavailable")
        self.pull(m, etcd)                        # a cold pull still works
        h = m.get("/healthz")
        self.assertEqual(h.status, 200)           # the replica still serves: keep it
        self.assertTrue(h.body.startswith(b"degraded\n"), h.body)
        self.assertIn(b"index redis", h.body)
        self.assertIn('ocimirror_index_up{backend="redis"} 0', m.get("/metrics").body.decode())
        self.redis.start()                        # back, and empty
        self.wait_log(m, "redis: available again")
        self.assertEqual(m.get("/healthz").body, b"ok\n")
        self.assertIn('ocimirror_index_up{backend="redis"} 1', m.get("/metrics").body.decode())
        self.pull(m, self.w.fx["pause"])
        self.assertIn(canonical_name(self.w.fx["pause"]), self.catalog(m))

    def test_check_config_refuses_a_bad_url_and_hides_the_password(self):
        d = tempfile.mkdtemp(prefix="om-e2e-cfg-")
        self.addCleanup(shutil.rmtree, d, True)
        bad = os.path.join(d, "bad.yaml")
        with open(bad, "w") as f:
            f.write("cluster:\n  redis: rediss://h:6379\n")
        p = subprocess.run([mirror_bin(), "check-config", "-c", bad], capture_output=True,
                           text=True, timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("bad.yaml:2:10", p.stderr + p.stdout)
        self.assertIn("TLS", p.stderr + p.stdout)
        good = os.path.join(d, "good.yaml")
        with open(good, "w") as f:
            f.write("cluster:\n  redis: redis://:hunter2@10.0.0.2:6379/1\n")
        p = subprocess.run([mirror_bin(), "check-config", "-c", good], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertNotIn("hunter2", p.stdout + p.stderr)
        self.assertIn("redis://:<redacted>@10.0.0.2:6379/1", p.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
