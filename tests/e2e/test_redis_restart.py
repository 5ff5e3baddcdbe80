"""A Redis restarted quickly under a replica (cluster.redis): the mirror's
pooled connections to the old server are all dead, and none of them may
turn the index's state unavailable once the new server answers (redis.h,
"Retries": a pooled connection is checked before its command goes out).

The test restarts redis-server (same socket; empty: no persistence) twice,
and after each restart, once the mirror's /healthz says ok (a watchdog PING
that fell into the restart's window is a real outage, and it heals first),
lists the catalog and pulls a new image and a cached one (so the index
runs commands): every answer right, no 5xx, /healthz never degraded, and
the log has no "redis: unavailable" from after the restart, and the
emptied index is rebuilt from the store (the catalog lists every image).  On the old
code the first command on each stale connection failed on the wire and
turned the state unavailable (unless the watchdog's PING happened to land
in the short window, which is why there are two rounds).

Run: cd tests/e2e && OCIMIRROR_BIN=... ../../scripts/netns-run python3 -u test_redis_restart.py
"""

import os
import time
import unittest

from lib.world import WorldTestCase, canonical_name
from lib.redisserver import REDIS, RedisServer


@unittest.skipUnless(os.access(REDIS, os.X_OK), "redis-server is not installed")
class RedisRestartTest(WorldTestCase):

    def setUp(self):
        super().setUp()
        self.redis = RedisServer()
        self.redis.start()
        self.addCleanup(self.redis.close)

    def wait_healthy(self, m, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if m.get("/healthz").body == b"ok\n":
                return
            time.sleep(0.05)
        self.fail("/healthz did not come back to ok")

    def test_a_quick_restart_does_not_take_the_index_down(self):
        m = self.mirror(extra={"cluster": {"redis": self.redis.url}})
        imgs = [self.w.fx["alpine"], self.w.fx["etcd"]]
        cold = [self.w.fx["pause"], self.w.fx["coredns"]]
        self.pull(m, imgs[0])                 # cached; the pool holds connections
        self.pull(m, imgs[1])
        for rnd in range(2):
            self.redis.stop()                 # by PID; then again on the same socket
            self.redis.start()
            self.wait_healthy(m)
            start = len(m.log_text())
            # commands on the index now (a cached pull may touch only the
            # memory cache): a listing, a cold pull that records its tag
            r = m.get("/v2/_catalog")
            self.assertEqual(r.status, 200, "round %d: %r" % (rnd, r))
            self.pull(m, cold[rnd])
            self.pull(m, imgs[rnd])
            for _ in range(10):
                h = m.get("/healthz")
                self.assertEqual(h.body, b"ok\n", "round %d: %r" % (rnd, h.body))
                time.sleep(0.02)
            after = m.log_text()[start:]
            down = [l for l in after.splitlines() if "redis: unavailable" in l]
            self.assertEqual(down, [], "round %d" % rnd)
            # the emptied index is noticed and rebuilt from the store
            want = {canonical_name(i) for i in imgs + cold[:rnd + 1]}
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                r = m.get("/v2/_catalog")
                self.assertEqual(r.status, 200, r)
                if want <= set(r.json()["repositories"]):
                    break
                time.sleep(0.05)
            else:
                self.fail("round %d: the catalog lacks %s" % (
                    rnd, want - set(r.json()["repositories"])))


if __name__ == "__main__":
    unittest.main(verbosity=2)
