"""The four real clients against the 3-replica cluster (issue 11, tests):
skopeo, podman, containerd's ctr and Docker pull through haproxy in front of
three s3-backed replicas (lib/cluster.py: Ceph RGW + Redis + 3 replicas +
haproxy), each configured the way it is in the field (lib/clients.py, as in
test_clients.py: a mirror host in the reference, a path-prefixed
registries.conf mirror, hosts.toml, Docker's registry-mirrors).

  - all four clients pull one image through the load balancer: skopeo cold
    (the blobs leave the upstream), then podman, ctr and dockerd warm, each
    with a fresh store of its own; the warm pulls cost zero upstream blob
    GETs (counted at the World's docker-registry upstreams) while haproxy
    spreads their requests over the replicas (which replica served what is
    printed, and more than one must have served blobs). Every client checks
    each digest itself; the test also checks the manifest digest each one
    recorded and that the layers landed (skopeo's dir re-hashed, the
    rootfs diff_ids in podman's and Docker's image, every blob in
    containerd's content store).
    The image is docker.io/library/alpine:3.19 for all four: Docker sends
    only Docker Hub names to registry-mirrors.
  - storage.redirect: true, the replicas behind a password (access.anonymous
    false) so the clients do send Authorization to the mirror: after a cold
    pull, skopeo, podman, ctr and docker (by the mirror's host after docker
    login: registry-mirrors never get the mirror's credentials) pull again
    with zero upstream blob GETs, get 307 to a presigned URL of
    the RGW from the replicas, follow it and verify; a recording proxy in
    front of the RGW (as in test_s3.py) shows the presigned GETs of every
    blob and no Authorization on any of them -- though the gateway has the
    mirror's host name (127.0.0.1, another port), the strict case: a client
    that kept credentials for the same host would send them there.

One Ceph RGW for the class (the expensive part); each test its own Redis,
bucket, replicas and haproxy.
Run: cd tests/e2e && OCIMIRROR_BIN=... ../../scripts/netns-run python3 -u test_cluster_clients.py
"""

import http.client
import http.server
import json
import os
import re
import shutil
import socketserver
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

from lib import clients
from lib.ceph import Ceph, ceph_available
from lib.cluster import Cluster, haproxy_available
from lib.redisserver import REDIS, RedisServer
from lib.world import WorldTestCase

USER, PASSWORD = "alice", "alice-pw"
GATEWAY_HOST = "127.0.0.1"      # the RGW's recording proxy: the mirror's host, another port


def need(*binaries):
    missing = [b for b in binaries if shutil.which(b) is None and not os.path.exists(b)]
    if missing:
        raise unittest.SkipTest("not installed: " + ", ".join(missing))


def note(text):
    sys.stderr.write("[cluster-clients] %s\n" % text)


def diff_ids(img):
    return json.loads(img.layer_bytes[img.config_digest])["rootfs"]["diff_ids"]


class RecordingProxy:
    """HTTP in front of the RGW on `host`: passes every request through
    unchanged (Host included, so signatures hold) and records (method,
    path+query, whether it carried Authorization)."""

    def __init__(self, upstream_host_port, host=GATEWAY_HOST):
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
                if n > (64 << 20):
                    self.send_error(413)
                    return
                body = self.rfile.read(n) if n else None
                with outer.lock:
                    outer.log.append((self.command, self.path, "authorization" in
                                      {k.lower() for k in self.headers.keys()}))
                c = http.client.HTTPConnection(outer.upstream, timeout=60)
                try:
                    c.putrequest(self.command, self.path, skip_host=True,
                                 skip_accept_encoding=True)
                    for k, v in self.headers.items():
                        c.putheader(k, v)
                    c.endheaders(body)
                    r = c.getresponse()
                    data = r.read()
                    self.send_response(r.status, r.reason)
                    for k, v in r.getheaders():
                        if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                            self.send_header(k, v)
                    # a HEAD keeps the object's length (its body is empty)
                    self.send_header("Content-Length", r.getheader("Content-Length", "0")
                                     if self.command == "HEAD" else str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    c.close()

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _do

        self.server = socketserver.ThreadingTCPServer((host, 0), H)
        self.server.daemon_threads = True
        self.host_port = "%s:%d" % (host, self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "http://" + self.host_port

    def presigned(self):
        with self.lock:
            return [e for e in self.log if "X-Amz-Signature=" in e[1]]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class RedirectCluster(Cluster):
    """The rig's cluster with its bucket reached through `endpoint` and
    storage.redirect: true (the rest of the config as lib/cluster.py has it)."""

    def __init__(self, *a, endpoint, **kw):
        self.endpoint = endpoint
        super().__init__(*a, **kw)

    def config(self, port, i=None):
        cfg = super().config(port, i)
        cfg["storage"]["s3"]["endpoint"] = self.endpoint
        cfg["storage"]["redirect"] = True
        cfg["storage"]["redirect_ttl"] = "2m"
        return cfg


@unittest.skipUnless(ceph_available() and os.access(REDIS, os.X_OK) and haproxy_available(),
                     "needs ceph (mon, osd, radosgw), redis-server and haproxy")
class ClusterClientsTest(WorldTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        t0 = time.monotonic()
        cls.ceph = Ceph(cls.w.dir, cls.w.log_dir).start()
        cls.addClassCleanup(cls.ceph.stop)
        note("ceph rgw up in %.1fs" % (time.monotonic() - t0))

    @classmethod
    def tearDownClass(cls):
        cls.ceph.stop()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="om-clcl-")
        self.addCleanup(clients.remove_tree, self.tmp)
        self.logs = os.path.join(self.w.log_dir, self._testMethodName)
        self.redis = RedisServer()
        self.redis.start()
        self.addCleanup(self.redis.close)
        self.reset_counts()

    # -- helpers -------------------------------------------------------------
    def reset_counts(self):
        for r in self.w.reg.values():
            r.reset_counts()

    def upstream_blob_gets(self):
        return sum(r.count("GET", r"/blobs/sha256:") for r in self.w.reg.values())

    def requests(self, m, path_re, since=0):
        """The request events (method, path, status, user) of replica m's
        JSON log from event number `since` on whose path matches."""
        ev = [e for e in m.log_json() if e.get("msg") == "request" and "path" in e][since:]
        return [e for e in ev if re.search(path_re, e["path"])]

    def marks(self, cl):
        return [len(self.requests(m, "")) for m in cl.replicas]

    def blob_gets_per_replica(self, cl, since, status=None):
        return [len([e for e in self.requests(m, r"/blobs/sha256:", since[i])
                     if e.get("method") == "GET" and (status is None or
                                                      str(e.get("status")) == str(status))])
                for i, m in enumerate(cl.replicas)]

    # -- all four clients, a second pull costs no upstream blob --------------
    def test_all_four_clients_pull_through_haproxy_and_warm_pulls_cost_no_upstream_blob(self):
        need("skopeo", "podman", "containerd", "ctr", "dockerd", clients.DOCKER_CLI)
        img = self.w.fx["alpine"]
        image = "docker.io/library/alpine:3.19"
        cl = Cluster(self, self.ceph, self.redis)
        lb = cl.start_haproxy()

        # cold: skopeo, the blobs leave the upstream
        res = clients.skopeo_copy("%s/%s" % (lb.host_port, image), os.path.join(self.tmp, "cold"))
        note("skopeo copy %s (cold): %.2fs" % (image, res.seconds))
        self.assertEqual((res.digest, res.dir_manifest_digest), (img.digest, img.digest))
        self.assertEqual(sorted(res.blobs), sorted(img.blobs))
        cold = self.upstream_blob_gets()
        self.assertGreater(cold, 0, "the cold pull fetched no blob upstream")
        hub = self.w.reg["hub"]
        for d in img.blobs:   # answered GETs (a 401 before one is the token dance)
            self.assertEqual(hub.count("GET", "/blobs/" + d, status=200), 1, d)
        self.reset_counts()
        since = self.marks(cl)

        # warm: podman, ctr, docker, each a fresh store
        conf = clients.podman_registries_conf(lb.host_port, ["docker.io"])
        with clients.Podman(conf) as p:
            res = p.pull(image)
            note("podman pull %s (warm): %.2fs" % (image, res.seconds))
            self.assertEqual(res.digest, img.digest)
            info = json.loads(p.podman("image", "inspect", image).out)[0]
            self.assertEqual(info["RootFS"]["Layers"], diff_ids(img))

        hosts = clients.write_hosts_dir(os.path.join(self.tmp, "hosts"), ["docker.io"], lb.url)
        with clients.Containerd(log_dir=self.logs) as c:
            res = c.pull(image, hosts)
            note("ctr image pull %s (warm): %.2fs" % (image, res.seconds))
            self.assertEqual(res.digest, img.digest)
            content = {line.split()[0] for line in c.ctr("content", "ls").out.splitlines()[1:]
                       if line.strip()}
            self.assertEqual(set(img.blobs) - content, set(), "blobs missing in containerd")

        with clients.Dockerd([lb.url], log_dir=self.logs) as d:
            note("dockerd start: %.2fs" % d.start_seconds)
            res = d.pull("alpine:3.19")
            note("docker pull alpine:3.19 (warm): %.2fs" % res.seconds)
            self.assertEqual(res.digest, img.digest, res.repo_digests)
            info = json.loads(d.docker("image", "inspect", "alpine:3.19").out)[0]
            self.assertEqual(info["RootFS"]["Layers"], diff_ids(img))

        warm = self.upstream_blob_gets()
        spread = self.blob_gets_per_replica(cl, since)
        note("upstream blob GETs: cold %d, warm (podman+ctr+docker) %d; warm blob GETs "
             "served per replica %s" % (cold, warm, spread))
        self.assertEqual(warm, 0, "a warm pull through the cluster cost upstream blob GETs")
        self.assertGreaterEqual(sum(spread), 3 * len(img.blobs) - 3,
                                "the warm clients fetched fewer blobs than expected")
        self.assertGreaterEqual(len([n for n in spread if n]), 2,
                                "haproxy sent every warm blob GET to one replica: %r" % spread)

    # -- redirect: true ------------------------------------------------------
    def test_redirect_the_clients_follow_presigned_urls_to_the_rgw_without_authorization(self):
        need("skopeo", "podman", "containerd", "ctr", "dockerd", clients.DOCKER_CLI, "htpasswd")
        pw = os.path.join(self.tmp, "htpasswd")
        clients.run(["htpasswd", "-cbB", pw, USER, PASSWORD], what="htpasswd")
        gw = RecordingProxy("127.0.0.1:%d" % urllib.parse.urlsplit(self.ceph.endpoint).port)
        self.addCleanup(gw.stop)
        cl = RedirectCluster(self, self.ceph, self.redis, endpoint=gw.url,
                             extra={"access": {"anonymous": False, "htpasswd_file": pw}})
        lb = cl.start_haproxy()
        img = self.w.fx["etcd"]
        image = "quay.io/coreos/etcd:v3.5.0"
        creds = "%s:%s" % (USER, PASSWORD)
        blob_keys = {d: "/%s/mirror/blobs/sha256/%s/%s" % (cl.bucket, d[7:9], d[7:])
                     for d in img.blobs}

        # cold: streamed from the download (nothing to redirect to yet)
        res = clients.skopeo_copy("%s/%s" % (lb.host_port, image), os.path.join(self.tmp, "cold"),
                                  creds=creds)
        self.assertEqual(res.digest, img.digest)
        self.assertEqual(sorted(res.blobs), sorted(img.blobs))
        since = self.marks(cl)
        before = len(gw.log)
        self.reset_counts()

        def followed(what, n_before):
            """The presigned GETs the gateway saw since n_before: every blob
            of the image at least once, none with Authorization."""
            with gw.lock:
                got = [e for e in gw.log[n_before:] if "X-Amz-Signature=" in e[1]]
            self.assertEqual([e for e in got if e[2]], [],
                             "%s sent Authorization to the bucket" % what)
            paths = {urllib.parse.urlsplit(e[1]).path for e in got if e[0] == "GET"}
            for d, key in blob_keys.items():
                self.assertIn(key, paths, "%s did not fetch %s from the bucket: %r" % (
                    what, d, got))
            return len(got)

        # warm: skopeo, podman, ctr get 307s, follow them and verify
        n = len(gw.log)
        res = clients.skopeo_copy("%s/%s" % (lb.host_port, image), os.path.join(self.tmp, "warm"),
                                  creds=creds)
        note("skopeo copy (redirected): %.2fs" % res.seconds)
        self.assertEqual((res.digest, res.dir_manifest_digest), (img.digest, img.digest))
        self.assertEqual(sorted(res.blobs), sorted(img.blobs))
        counts = {"skopeo": followed("skopeo", n)}

        n = len(gw.log)
        conf = clients.podman_registries_conf(lb.host_port, ["quay.io"])
        with clients.Podman(conf) as p:
            p.login(lb.host_port, USER, PASSWORD)
            res = p.pull(image)
            note("podman pull (redirected): %.2fs" % res.seconds)
            self.assertEqual(res.digest, img.digest)
            info = json.loads(p.podman("image", "inspect", image).out)[0]
            self.assertEqual(info["RootFS"]["Layers"], diff_ids(img))
        counts["podman"] = followed("podman", n)

        n = len(gw.log)
        hosts = clients.write_hosts_dir(os.path.join(self.tmp, "hosts"), ["quay.io"], lb.url)
        with clients.Containerd(log_dir=self.logs) as c:
            res = c.ctr("image", "pull", "--hosts-dir", hosts, "--snapshotter", "native",
                        "--user", creds, image, what="ctr image pull --user")
            note("ctr image pull (redirected): %.2fs" % res.seconds)
            self.assertEqual(c.image_digest(image), img.digest)
            content = {line.split()[0] for line in c.ctr("content", "ls").out.splitlines()[1:]
                       if line.strip()}
            self.assertEqual(set(img.blobs) - content, set(), "blobs missing in containerd")
        counts["ctr"] = followed("ctr", n)

        # docker: by the mirror host (registry-mirrors never get the
        # mirror's credentials), after docker login
        n = len(gw.log)
        with clients.Dockerd([], insecure_registries=[lb.host_port], log_dir=self.logs) as d:
            d.docker("login", "-u", USER, "-p", PASSWORD, lb.host_port, what="docker login")
            ref = "%s/%s" % (lb.host_port, image)
            res = d.pull(ref)
            note("docker pull (redirected): %.2fs" % res.seconds)
            self.assertIn("%s/quay.io/coreos/etcd@%s" % (lb.host_port, img.digest),
                          res.repo_digests)
            info = json.loads(d.docker("image", "inspect", ref).out)[0]
            self.assertEqual(info["RootFS"]["Layers"], diff_ids(img))
        counts["docker"] = followed("docker", n)
        self.assertEqual(self.upstream_blob_gets(), 0, "a redirected pull cost upstream blobs")

        # the replicas answered the blob GETs with 307, to the user who logged in
        r307 = self.blob_gets_per_replica(cl, since, status=307)
        note("presigned GETs at the gateway per client %r; 307s per replica %r; "
             "gateway requests %d (%d before the warm pulls)" % (counts, r307, len(gw.log), before))
        self.assertGreaterEqual(sum(r307), 4 * len(img.blobs))
        for i, m in enumerate(cl.replicas):
            for e in self.requests(m, r"/blobs/sha256:", since[i]):
                if str(e.get("status")) == "307":
                    self.assertEqual(e.get("user"), USER, e)
        # every request a replica itself made to the bucket was signed
        with gw.lock:
            unsigned = [e for e in gw.log if "X-Amz-Signature=" not in e[1] and not e[2]]
        self.assertEqual(unsigned, [])


if __name__ == "__main__":
    t0 = time.monotonic()
    try:
        unittest.main(verbosity=2)
    finally:
        note("total %.1fs" % (time.monotonic() - t0))
