"""The download lease is renewed while the owner's transfer does not move
(issue 11, "Faults"): the owner renews from the cluster's renewer thread
(cluster.h, "Renewal"), not from the transfer's progress, so an upstream
that makes the owner wait longer than cluster.lease before the first byte
does not let another replica take the lease over and start a second,
duplicate upstream transfer.

The rig (lib/cluster.py): Ceph RGW for the class, redis-server, two
replicas with cluster.lease 2s, the quay upstream behind lib/faultproxy.py.
The proxy answers the first GET of the blob 503 with Retry-After: 5, so the
owner sits in om_upstream_do's retry backoff for 5 s — no byte, no progress
tick — then gets the blob.  A client on replica 0 starts the download (its
lease seen in Redis); once the 503 went out and more than a lease time has
passed, a client on replica 1 asks for the same blob: it must find the
lease still held and stream from the owner.  Exactly one answer of the blob
with its bytes left the proxy (counted there), both clients verified.  On
the old code (renewal only from the transfer's tick) the lease expired
during the backoff, replica 1 took it over and fetched the blob itself.

Run: cd tests/e2e && OCIMIRROR_BIN=... ../../scripts/netns-run python3 -u test_cluster_lease.py
"""

import os
import threading
import time
import unittest

from lib.ceph import ceph_available
from lib.cluster import Cluster, haproxy_available
from lib.faultproxy import FaultProxy
from lib.images import sha256_digest
from lib.redisserver import REDIS
from lib.world import canonical_name

from test_cluster import ClusterRig, fetch


@unittest.skipUnless(ceph_available() and os.access(REDIS, os.X_OK) and haproxy_available(),
                     "needs ceph (mon, osd, radosgw), redis-server and haproxy")
class ClusterLeaseTest(ClusterRig):

    def test_the_lease_outlives_a_retry_backoff_longer_than_itself(self):
        cert, key = self.w.ca.issue("faultproxy-lease")
        p = FaultProxy(self.w.reg["quay"].url, self.w.ca_file, cert, key,
                       log_path=os.path.join(self.w.log_dir, "faultproxy.log")).start()
        self.addCleanup(p.stop)
        img = self.w.fx["etcd"]
        d = img.layers[0]
        rule = p.add_rule("status", path=r"/blobs/" + d, method="GET", times=1, status=503,
                          retry_after=5)
        cl = Cluster(self, self.ceph, self.redis, n=2, upstream_url={"quay": p.url},
                     lease="2s")
        path = "/v2/%s/blobs/%s" % (canonical_name(img), d)
        out = {}

        def client(i):
            try:
                st, body, _, _ = fetch(cl.replicas[i].host_port, path, timeout=60)
                out[i] = (st, sha256_digest(body))
            except Exception as e:           # noqa: BLE001 - reported below
                out[i] = repr(e)
        t0 = threading.Thread(target=client, args=(0,))
        t0.start()
        owner = cl.replicas[0].host_port
        self.wait(lambda: owner in (self.redis.command("GET", "om:fl:" + d) or ""), 20,
                  "replica 0 to own the download")
        self.wait(lambda: p.applied(rule) == 1, 20, "the 503 to go out")
        time.sleep(3.0)                      # > cluster.lease, < the 5 s backoff
        held = self.redis.command("GET", "om:fl:" + d) or ""
        client(1)
        t0.join(60)
        self.assertEqual(out, {0: (200, d), 1: (200, d)})
        # every GET of the blob the proxy answered: the 503, then one transfer
        time.sleep(0.3)                      # the proxy logs an answer once it is sent
        got = [e.get("status") for e in p.requests(path_re=r"/blobs/" + d, method="GET")]
        self.assertEqual(sorted(got, key=str), sorted([503, 200], key=str), got)
        self.assertIn(owner, held, "the owner's lease lapsed during its retry backoff")
        self.assertIn("streaming from the owner's download", cl.replicas[1].log_text())


if __name__ == "__main__":
    unittest.main(verbosity=2)
