"""The cache of ocimirror: a second pull costs the upstream nothing, HEAD
answers carry what clients need, cached content outlives the upstream, a
restart, a SIGKILL and a lost index.db; Range requests on cached blobs;
a tag that moves upstream is seen after tag_ttl.  A crowd asking for one
uncached blob costs the upstream one request (HEADs too, and a blob the
upstream does not have); a blob truncated on disk is never served, but
quarantined and fetched again — also after a restart and an index
rebuild — and fsck reports it.  Repository isolation: content stored once
is served by digest only under a repository known to hold it (a manifest
pulled through it, a download through it, or one HEAD upstream that
confirmed it), never under any other name, also while it downloads.

Run: cd tests/e2e && OCIMIRROR_BIN=... ../../scripts/netns-run python3 -u test_cache.py
"""

import glob
import json
import os
import re
import subprocess
import time
import unittest
from concurrent.futures import ThreadPoolExecutor

from lib.world import WorldTestCase, canonical_name
from lib.faultproxy import FaultProxy
from lib.images import ACCEPT_ALL, make_image, sha256_digest
from lib.mirror import mirror_bin

TAG_TTL = 2.0   # the World's mirror config: tag_ttl "2s"


def parse_multipart_byteranges(content_type, body):
    """[(start, end, total, bytes)] from a multipart/byteranges body."""
    m = re.search(r'boundary="?([^";]+)"?', content_type)
    if not m:
        raise ValueError("no boundary in %r" % content_type)
    delim = b"--" + m.group(1).encode()
    parts = []
    chunks = body.split(delim)
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break                       # closing delimiter
        chunk = chunk[2:] if chunk.startswith(b"\r\n") else chunk
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("part without a blank line: %r" % chunk[:200])
        if data.endswith(b"\r\n"):
            data = data[:-2]
        cr = re.search(rb"(?im)^content-range:\s*bytes\s+(\d+)-(\d+)/(\d+|\*)", head)
        if not cr:
            raise ValueError("part without Content-Range: %r" % head)
        parts.append((int(cr.group(1)), int(cr.group(2)),
                      cr.group(3).decode(), data))
    return parts


class CacheTest(WorldTestCase):

    def setUp(self):
        super().setUp()
        for r in self.w.reg.values():
            r.reset_counts()

    def upstream_blob_gets(self, reg):
        return self.w.reg[reg].count("GET", r"/blobs/sha256:", status=None)

    def upstream_digest_manifest_gets(self, reg):
        return self.w.reg[reg].count("GET", r"/manifests/sha256:")

    # -- second pull -------------------------------------------------------
    def test_second_pull_fetches_no_blob_and_no_manifest_by_digest_from_upstream(self):
        m = self.mirror()
        cases = [("alpine", "hub"), ("multi", "hub"), ("etcd", "quay"), ("apiserver", "k8s")]
        for key, _ in cases:
            self.pull(m, self.w.fx[key])
        first = {reg: self.upstream_blob_gets(reg) for _, reg in cases}
        self.assertGreater(first["hub"], 0, "the first pull should have fetched blobs upstream")
        for r in self.w.reg.values():
            r.reset_counts()
        for key, _ in cases:
            self.pull(m, self.w.fx[key])
        for reg in ("hub", "k8s", "quay"):
            self.assertEqual(self.upstream_blob_gets(reg), 0, reg)
            self.assertEqual(self.upstream_digest_manifest_gets(reg), 0, reg)

    def test_shared_layer_is_fetched_once_for_two_repositories(self):
        m = self.mirror()
        alpine, app = self.w.fx["alpine"], self.w.fx["app"]
        base = alpine.layers[0]
        self.assertIn(base, app.layers)
        self.pull(m, alpine)
        self.w.reg["hub"].reset_counts()
        self.pull(m, app)
        self.assertEqual(self.w.reg["hub"].count("GET", r"/blobs/" + base), 0,
                         "content is stored once per digest")

    def test_head_manifest_returns_digest_length_and_type(self):
        m = self.mirror()
        for key in ("alpine", "ocimulti", "etcd"):
            img = self.w.fx[key]
            name = canonical_name(img)
            with self.subTest(fixture=key, cold=True):
                # containerd resolves with a HEAD first, on a cold cache
                h = m.get("/v2/%s/manifests/%s" % (name, img.tag), {"Accept": ACCEPT_ALL},
                          method="HEAD")
                self.assertManifest(h, img, head=True)
                self.assertEqual(h.body, b"")
            with self.subTest(fixture=key, cold=False):
                self.assertManifest(m.get("/v2/%s/manifests/%s" % (name, img.tag),
                                          {"Accept": ACCEPT_ALL}), img)
                h = m.get("/v2/%s/manifests/%s" % (name, img.digest), {"Accept": ACCEPT_ALL},
                          method="HEAD")
                self.assertManifest(h, img, head=True)
        # HEAD on a blob: length and digest, no body
        img = self.w.fx["etcd"]
        d = img.layers[0]
        h = m.get("/v2/%s/blobs/%s" % (canonical_name(img), d), method="HEAD")
        self.assertEqual(h.status, 200, h)
        self.assertEqual(h.headers.get("Content-Length"), str(img.blob_size(d)))
        self.assertEqual(h.headers.get("Docker-Content-Digest"), d)
        self.assertEqual(h.body, b"")

    # -- upstream down -------------------------------------------------------
    def test_cached_content_is_served_while_the_upstream_is_down(self):
        m = self.mirror()
        pause, api = self.w.fx["pause"], self.w.fx["apiserver"]
        self.pull(m, pause)
        self.w.reg["k8s"].stop()
        time.sleep(TAG_TTL + 0.5)
        r = m.get("/v2/registry.k8s.io/pause/manifests/3.9", {"Accept": ACCEPT_ALL})
        self.assertManifest(r, pause)
        self.assertIsNotNone(r.headers.get("Warning"),
                             "a stale tag answer should say so in a Warning header: %r" % (r,))
        # by digest: immutable, no question asked
        self.assertManifest(m.get("/v2/registry.k8s.io/pause/manifests/" + pause.digest,
                                  {"Accept": ACCEPT_ALL}), pause)
        for d in pause.blobs:
            self.assertBlob(m.get("/v2/registry.k8s.io/pause/blobs/" + d), d)
        # never cached: a clean error, not a hang or a broken body
        for path in ("/v2/registry.k8s.io/kube-apiserver/manifests/v1.28.0",
                     "/v2/registry.k8s.io/kube-apiserver/manifests/" + api.digest,
                     "/v2/registry.k8s.io/kube-apiserver/blobs/" + api.layers[0]):
            with self.subTest(path=path):
                r = m.get(path, {"Accept": ACCEPT_ALL}, timeout=60)
                self.assertGreaterEqual(r.status, 400, r)
                self.assertErrorJSON(r)
        self.assertTrue(m.alive)

    # -- restarts ----------------------------------------------------------
    def _pull_then_count_after(self, m, imgs, action):
        for img in imgs:
            self.pull(m, img)
        action()
        for r in self.w.reg.values():
            r.reset_counts()
        for img in imgs:
            self.pull(m, img)
        for reg in ("hub", "k8s", "quay"):
            self.assertEqual(self.upstream_blob_gets(reg), 0, reg)
            self.assertEqual(self.upstream_digest_manifest_gets(reg), 0, reg)

    def test_cache_survives_a_restart(self):
        m = self.mirror()
        self._pull_then_count_after(m, [self.w.fx["etcd"], self.w.fx["alpine"]], m.restart)

    def test_cache_survives_sigkill(self):
        m = self.mirror()

        def kill_and_start():
            time.sleep(1.0)     # let the last commits land; SIGKILL keeps only committed content
            m.kill9()
            m.start()
        self._pull_then_count_after(m, [self.w.fx["etcd"], self.w.fx["multi"]], kill_and_start)

    def test_lost_index_db_is_rebuilt_and_cached_tags_are_still_served(self):
        m = self.mirror()
        api, alpine = self.w.fx["apiserver"], self.w.fx["alpine"]
        self.pull(m, api)
        self.pull(m, alpine)
        m.stop()
        removed = []
        for p in glob.glob(os.path.join(m.storage, "index.db*")):
            os.unlink(p)
            removed.append(os.path.basename(p))
        self.assertIn("index.db", removed)
        log_before = len(m.log_text())
        m.start()
        new_log = m.log_text()[log_before:]
        self.assertTrue(any(re.search(r"warn", line, re.I) and re.search(r"index|rebuil", line, re.I)
                            for line in new_log.splitlines()),
                        "no warning about rebuilding the index in the log:\n" + new_log[-3000:])
        self.w.reg["k8s"].stop()
        self.w.reg["hub"].stop()
        for img in (api, alpine):
            with self.subTest(fixture=img.name):
                r = m.get("/v2/%s/manifests/%s" % (canonical_name(img), img.tag),
                          {"Accept": ACCEPT_ALL})
                self.assertManifest(r, img)
                for d in img.blobs:
                    self.assertBlob(m.get("/v2/%s/blobs/%s" % (canonical_name(img), d)), d)
        r = m.get("/v2/_catalog")
        self.assertEqual(r.status, 200, r)
        self.assertIn("registry.k8s.io/kube-apiserver", r.json()["repositories"])

    # -- ranges ------------------------------------------------------------
    def _cached_layer(self, m):
        img = self.w.fx["etcd"]
        self.pull(m, img)
        d = max(img.layers, key=img.blob_size)
        return "/v2/%s/blobs/%s" % (canonical_name(img), d), img.layer_bytes[d]

    def test_range_on_a_cached_blob_is_206_with_the_right_bytes(self):
        m = self.mirror()
        path, data = self._cached_layer(m)
        r = m.get(path, {"Range": "bytes=10-99"})
        self.assertEqual(r.status, 206, r)
        self.assertEqual(r.headers.get("Content-Range"), "bytes 10-99/%d" % len(data))
        self.assertEqual(r.headers.get("Content-Length"), "90")
        self.assertEqual(r.body, data[10:100])
        # a resume from an offset to the end (what containers/image sends)
        r = m.get(path, {"Range": "bytes=%d-" % (len(data) - 1000)})
        self.assertEqual(r.status, 206, r)
        self.assertEqual(r.headers.get("Content-Range"),
                         "bytes %d-%d/%d" % (len(data) - 1000, len(data) - 1, len(data)))
        self.assertEqual(r.body, data[-1000:])

    def test_multi_range_on_a_cached_blob_is_multipart_or_the_whole_blob(self):
        m = self.mirror()
        path, data = self._cached_layer(m)
        r = m.get(path, {"Range": "bytes=0-9,20-29"})
        if r.status == 200:
            self.assertEqual(r.body, data)
            return
        self.assertEqual(r.status, 206, r)
        ct = r.headers.get("Content-Type", "")
        self.assertTrue(ct.startswith("multipart/byteranges"), r)
        parts = parse_multipart_byteranges(ct, r.body)
        self.assertEqual([(p[0], p[1]) for p in parts], [(0, 9), (20, 29)])
        self.assertEqual(parts[0][3], data[0:10])
        self.assertEqual(parts[1][3], data[20:30])
        for p in parts:
            self.assertEqual(p[2], str(len(data)))

    def test_unsatisfiable_range_is_416(self):
        m = self.mirror()
        path, data = self._cached_layer(m)
        r = m.get(path, {"Range": "bytes=%d-" % (len(data) + 10)})
        self.assertIn(r.status, (416, 200), r)
        if r.status == 416:
            self.assertEqual(r.headers.get("Content-Range"), "bytes */%d" % len(data))

    # -- freshness ---------------------------------------------------------
    def test_tag_moved_upstream_is_seen_after_tag_ttl(self):
        m = self.mirror()
        v1 = make_image("updating-v1", "library/updating", "1", "hub", seed=101)
        v2 = make_image("updating-v2", "library/updating", "1", "hub", seed=102)
        self.w.push(v1)
        t_pulled = time.monotonic()
        self.pull(m, v1, name="library/updating")
        self.w.push(v2)
        r = m.get("/v2/library/updating/manifests/1", {"Accept": ACCEPT_ALL})
        if time.monotonic() - t_pulled < TAG_TTL * 0.75:
            # still fresh: served from the cache without asking
            self.assertManifest(r, v1)
        time.sleep(TAG_TTL + 0.5)
        self.pull(m, v2, name="library/updating")
        # the old digest stays pullable by digest
        self.assertManifest(m.get("/v2/library/updating/manifests/" + v1.digest,
                                  {"Accept": ACCEPT_ALL}), v1)

    # -- crowds on one uncached blob ------------------------------------------
    def crowd(self, m, path, method, n=50):
        """n clients at once, each on its own connection → their Resps."""
        with ThreadPoolExecutor(n) as ex:
            return list(ex.map(lambda _: m.get(path, method=method, timeout=60), range(n)))

    def test_fifty_concurrent_heads_of_an_uncached_blob_cost_the_upstream_one_head(self):
        m = self.mirror()
        img = self.w.fx["etcd"]
        d = max(img.layers, key=img.blob_size)
        for r in self.crowd(m, "/v2/quay.io/coreos/etcd/blobs/" + d, "HEAD"):
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.headers.get("Content-Length"), str(img.blob_size(d)), r)
            self.assertEqual(r.headers.get("Docker-Content-Digest"), d, r)
        self.assertEqual(self.w.reg["quay"].count("HEAD", "/blobs/" + d), 1,
                         "50 concurrent HEADs should be one flight upstream")
        self.assertEqual(self.w.reg["quay"].count("GET", "/blobs/" + d), 0,
                         "a HEAD must not download the blob")
        self.assertBlob(m.get("/v2/quay.io/coreos/etcd/blobs/" + d), d)

    def test_fifty_gets_of_a_blob_the_upstream_lacks_cost_it_one_get(self):
        # negative_ttl long enough that no client can come after it expired
        m = self.mirror(extra={"negative_ttl": "60s"})
        missing = sha256_digest(b"no registry has this blob %f" % time.time())
        path = "/v2/quay.io/coreos/etcd/blobs/" + missing
        for r in self.crowd(m, path, "GET"):
            self.assertErrorJSON(r, status=404, codes="BLOB_UNKNOWN")
        for r in self.crowd(m, path, "HEAD", n=10) + [m.get(path) for _ in range(10)]:
            self.assertEqual(r.status, 404, r)
        seen = [x[0] for x in self.w.reg["quay"].requests() if missing in x[1]]
        self.assertEqual(len(seen), 1, "a 404 is an answer: one upstream request for every "
                         "client, not %d HEADs and %d GETs" % (seen.count("HEAD"), seen.count("GET")))

    # -- repository isolation ------------------------------------------------
    def test_cached_content_is_not_served_by_digest_under_a_repository_that_lacks_it(self):
        m = self.mirror()
        alpine, multi = self.w.fx["alpine"], self.w.fx["multi"]
        self.pull(m, alpine)
        self.pull(m, multi)
        hub = self.w.reg["hub"]
        own = alpine.layers[-1]                       # not the base app shares
        plat = next(iter(multi.children.values()))
        blobs = [own, alpine.config_digest, plat.layers[0]]
        manifests = [alpine.digest, multi.digest, plat.digest]
        hub.reset_counts()
        # library/shared exists upstream without any of these; nosuchrepo
        # does not exist (Docker Hub answers 401); "shared" is reached by
        # the search order; ?ns= as containerd sends it.
        for name, q in (("docker.io/library/shared", ""), ("docker.io/library/nosuchrepo", ""),
                        ("shared", ""), ("library/shared", "?ns=docker.io")):
            for d in blobs:
                with self.subTest(name=name, blob=d):
                    r = m.get("/v2/%s/blobs/%s%s" % (name, d, q))
                    self.assertErrorJSON(r, 404, "BLOB_UNKNOWN")
                    h = m.get("/v2/%s/blobs/%s%s" % (name, d, q), method="HEAD")
                    self.assertEqual(h.status, 404, h)
                    self.assertEqual(h.body, b"")
            for d in manifests:
                with self.subTest(name=name, manifest=d):
                    r = m.get("/v2/%s/manifests/%s%s" % (name, d, q), {"Accept": ACCEPT_ALL})
                    self.assertErrorJSON(r, 404, "MANIFEST_UNKNOWN")
        # Each answer is the upstream's for that repository: it was asked
        # (HEAD, with that repository's token), and sent no content.
        self.assertGreaterEqual(hub.count("HEAD", r"^/v2/library/shared/blobs/" + own), 1)
        self.assertGreaterEqual(hub.count("HEAD", r"^/v2/library/shared/manifests/" + plat.digest), 1)
        self.assertGreaterEqual(hub.count("HEAD", r"^/v2/library/nosuchrepo/blobs/" + own,
                                          status=401), 1)
        self.assertEqual(hub.count("GET", r"/blobs/"), 0)
        self.assertEqual(hub.count("GET", r"/manifests/sha256:"), 0)
        # Under the names that hold it: from the cache, the upstream not asked.
        hub.reset_counts()
        for name in ("docker.io/library/alpine", "library/alpine", "alpine"):
            with self.subTest(name=name):
                for d in alpine.blobs:
                    self.assertBlob(m.get("/v2/%s/blobs/%s" % (name, d)), d)
                self.assertManifest(m.get("/v2/%s/manifests/%s" % (name, alpine.digest),
                                          {"Accept": ACCEPT_ALL}), alpine)
        # An index's platform manifests and their layers are the index's
        # repository's, also on a HEAD before the GET (containerd).
        self.assertManifest(m.get("/v2/library/multi/manifests/" + plat.digest,
                                  {"Accept": ACCEPT_ALL}), plat)
        for d in plat.blobs:
            h = m.get("/v2/library/multi/blobs/" + d, method="HEAD")
            self.assertEqual(h.status, 200, h)
            self.assertBlob(m.get("/v2/library/multi/blobs/" + d), d)
        self.assertEqual(hub.count(None, r"/(alpine|multi)/(blobs|manifests)/"), 0)

    def test_a_second_repository_with_the_layer_upstream_is_confirmed_once_then_served_cached(self):
        m = self.mirror()
        alpine = self.w.fx["alpine"]
        self.pull(m, alpine)
        # The same image pushed to another repository: it holds every blob
        # and the manifest upstream, but nothing was pulled through it.
        self.w.push(alpine, repo="team/alpine-copy", tag="copy")
        hub = self.w.reg["hub"]
        hub.reset_counts()
        name = "docker.io/team/alpine-copy"
        for d in alpine.blobs:
            with self.subTest(blob=d):
                h = m.get("/v2/%s/blobs/%s" % (name, d), method="HEAD")
                self.assertEqual(h.status, 200, h)
                self.assertEqual(h.headers.get("Content-Length"), str(alpine.blob_size(d)), h)
                self.assertBlob(m.get("/v2/%s/blobs/%s" % (name, d)), d)
                # one HEAD (after the token challenge, which it also sees)
                self.assertEqual(hub.count("HEAD", r"^/v2/team/alpine-copy/blobs/" + d,
                                           status=200), 1)
        self.assertManifest(m.get("/v2/%s/manifests/%s" % (name, alpine.digest),
                                  {"Accept": ACCEPT_ALL}), alpine)
        self.assertEqual(hub.count("HEAD", r"^/v2/team/alpine-copy/manifests/" + alpine.digest,
                                   status=200), 1)
        self.assertEqual(hub.count("GET", r"/blobs/"), 0, "served from the cache")
        self.assertEqual(hub.count("GET", r"/manifests/"), 0, "served from the cache")
        # The answer was remembered in the index: not asked again, also
        # after a restart.
        m.restart()
        hub.reset_counts()
        for d in alpine.blobs:
            self.assertBlob(m.get("/v2/%s/blobs/%s" % (name, d)), d)
        self.assertManifest(m.get("/v2/%s/manifests/%s" % (name, alpine.digest),
                                  {"Accept": ACCEPT_ALL}), alpine)
        self.assertEqual(hub.count(None, r"/team/alpine-copy/"), 0)

    def test_a_download_in_flight_is_not_joined_under_a_repository_that_lacks_the_blob(self):
        big = self.w.fx["big"]
        layer = big.layers[0]
        cert, key = self.w.ca.issue("faultproxy-iso")
        proxy = FaultProxy(self.w.reg["quay"].url, self.w.ca_file, cert, key,
                           log_path=os.path.join(self.w.log_dir, "faultproxy-iso.log")).start()
        self.addCleanup(proxy.stop)
        rule = proxy.add_rule("stall", path=r"^/v2/big/blob/blobs/" + layer, method="GET",
                              times=1, after=1 << 20, seconds=20)
        m = self.mirror(upstream_url={"quay": proxy.url})
        with ThreadPoolExecutor(2) as ex:
            first = ex.submit(m.get, "/v2/quay.io/big/blob/blobs/" + layer, None, "GET", None, 90)
            deadline = time.monotonic() + 20
            while proxy.applied(rule) == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertEqual(proxy.applied(rule), 1, "the first download did not start")
            # coreos/etcd does not have the layer upstream: its answer, at
            # once, not the bytes of big/blob's download.
            t0 = time.monotonic()
            r = m.get("/v2/quay.io/coreos/etcd/blobs/" + layer, timeout=30)
            self.assertErrorJSON(r, 404, "BLOB_UNKNOWN")
            self.assertLess(time.monotonic() - t0, 10, "it waited for the stalled download")
            self.assertEqual(len(proxy.requests(r"^/v2/coreos/etcd/blobs/" + layer, "HEAD")), 1)
            proxy.clear()
            self.assertBlob(first.result(), layer)
        self.assertErrorJSON(m.get("/v2/quay.io/coreos/etcd/blobs/" + layer), 404, "BLOB_UNKNOWN")

    # -- a blob damaged on disk ------------------------------------------------
    def blob_file(self, m, d):
        return os.path.join(m.storage, "blobs", "sha256", d[7:9], d[7:])

    def run_fsck(self, m, *args):
        p = subprocess.run([mirror_bin(), "fsck", "-c", m.config_path, "--json"] + list(args),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        self.assertNotIn("Sanitizer", p.stderr.decode(errors="replace"))
        return p.returncode, json.loads(p.stdout)

    def test_a_blob_truncated_on_disk_is_never_served_but_quarantined_and_fetched_again(self):
        m = self.mirror()
        big = self.w.fx["big"]
        d = big.layers[0]
        size = big.blob_size(d)
        path = "/v2/quay.io/big/blob/blobs/" + d
        quay = self.w.reg["quay"]
        self.pull(m, big)
        f = self.blob_file(m, d)

        def damage():
            os.truncate(f, 1 << 20)

        # While the server runs: HEAD and GET see the right size and bytes.
        damage()
        quay.reset_counts()
        h = m.get(path, method="HEAD")
        self.assertEqual(h.status, 200, h)
        self.assertEqual(h.headers.get("Content-Length"), str(size), h)
        self.assertBlob(m.get(path), d)
        self.assertEqual(os.path.getsize(f), size, "the blob was not stored again")
        q = os.path.join(m.storage, "quarantine", d[7:])
        self.assertEqual(os.path.getsize(q), 1 << 20, "the damaged file was not quarantined")
        self.assertEqual(quay.count("GET", "/blobs/" + d), 1)
        self.assertRegex(m.log_text(), r"quarantined")
        self.assertBlob(m.get(path), d)     # a hit again: no new upstream GET
        self.assertEqual(quay.count("GET", "/blobs/" + d), 1)
        metrics = m.get("/metrics").body.decode()
        self.assertRegex(metrics, r"(?m)^ocimirror_blobs_quarantined_total 1$")
        # The store's byte total is what blobs/ holds (the quarantine not
        # counted), though the truncation happened behind its back.
        on_disk = sum(os.path.getsize(p) for p in glob.glob(
            os.path.join(m.storage, "blobs", "sha256", "*", "*")))
        self.assertRegex(metrics, r"(?m)^ocimirror_storage_used_bytes %d$" % on_disk)

        # Damaged while stopped, then the index lost and rebuilt: the rebuilt
        # index knows the size from the manifest, not from the damaged file.
        m.stop()
        damage()
        for p in glob.glob(os.path.join(m.storage, "index.db*")):
            os.unlink(p)
        m.start()
        h = m.get(path, method="HEAD")
        self.assertEqual(h.headers.get("Content-Length"), str(size), h)
        self.assertBlob(m.get(path), d)

        # fsck finds it (and --repair quarantines it) when the server is down.
        m.stop()
        damage()
        rc, rep = self.run_fsck(m)
        self.assertEqual(rc, 1, rep)
        self.assertEqual(rep["blobs"]["wrong_size"], 1, rep)
        self.assertIn({"kind": "wrong_size_blob", "repaired": False, "digest": d,
                       "size": 1 << 20, "index_size": size}, rep["problems"])
        rc, rep = self.run_fsck(m, "--repair")
        self.assertEqual(rc, 0, rep)
        self.assertEqual(rep["blobs"]["quarantined"], 1, rep)
        self.assertFalse(os.path.exists(f))
        rc, rep = self.run_fsck(m)
        self.assertEqual(rc, 0, rep)
        self.assertEqual(rep["quarantine"]["files"], 1, rep)
        m.start()
        self.pull(m, big)


if __name__ == "__main__":
    unittest.main(verbosity=2)
