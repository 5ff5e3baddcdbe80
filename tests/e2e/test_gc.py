"""GC in ocimirror: a mirror with a small storage quota evicts the least
recently pulled image first and keeps shared base layers while another
image uses them; an evicted image is fetched from the upstream again;
`ocimirror gc` applies the quota on demand beside a running server (and
--dry-run changes nothing); a download in progress and a blob being served
both finish with the right bytes while GC removes content around them.

Four small images on the k8s registry (repositories gc/a .. gc/d):
    A = base + own layer, B = base + own, C = own only, D = base + own
with the quota set to exactly what all four need together, high water
95 %, low water 85 %: A, B, C fit; D pushes usage over the high mark;
evicting B alone (its own layer, config, manifest — not the base, which A
and D use) brings it under the low mark.

Run: cd tests/e2e && OCIMIRROR_BIN=... ../../scripts/netns-run python3 -u test_gc.py
"""

import copy
import hashlib
import os
import random
import re
import subprocess
import sys
import threading
import time
import unittest

from lib.world import WorldTestCase, canonical_name
from lib.images import _single, make_layer, sha256_digest
from lib.mirror import mirror_bin, to_yaml, deep_merge
from lib.faultproxy import FaultProxy

GC_INTERVAL = "1s"      # and so a grace period of 1 s
GRACE = 1.0
HIGH, LOW = 95, 85
OWN_LAYER = 300 * 1000
BASE_LAYER = 60 * 1000


def percent_of(n, pct):
    """The mirror's integer arithmetic (gc.c percent_of)."""
    return n // 100 * pct + n % 100 * pct // 100


def footprint(*imgs):
    """Bytes the images take in the store: manifests and blobs, each once."""
    objs = {}
    for img in imgs:
        objs[img.digest] = len(img.manifest_bytes)
        for d in img.blobs:
            objs[d] = len(img.layer_bytes[d])
    return sum(objs.values())


def blob_path(m, digest):
    hexd = digest.split(":", 1)[1]
    return os.path.join(m.storage, "blobs", "sha256", hexd[:2], hexd)


def stored(m, digest):
    return os.path.exists(blob_path(m, digest))


def store_used(m):
    total = 0
    root = os.path.join(m.storage, "blobs", "sha256")
    for dirpath, _, files in os.walk(root):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, f))
            except FileNotFoundError:
                pass
    return total


def wait_until(cond, timeout, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def run_gc(*args, timeout=120):
    return subprocess.run([mirror_bin(), "gc"] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=timeout)


def kv_line(out):
    """The `key=value ...` summary line of `ocimirror gc`."""
    for line in out.splitlines():
        if line.startswith("evicted_images="):
            return dict(p.split("=", 1) for p in line.split())
    raise AssertionError("no summary line in:\n" + out)


def note(text):
    sys.stderr.write("  [figures] %s\n" % text)


class GCTest(WorldTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        rng = random.Random(4242)
        base = make_layer(rng, [("gc/base.bin", BASE_LAYER)], level=0)

        def image(name, layers):
            return _single("gc-" + name, "gc/" + name, "1", "k8s", "docker", layers)

        def own(name):
            return make_layer(rng, [("gc/%s.bin" % name, OWN_LAYER)], level=0)
        cls.A = image("a", [base, own("a")])
        cls.B = image("b", [base, own("b")])
        cls.C = image("c", [own("c")])
        cls.D = image("d", [base, own("d")])
        cls.base = base.digest
        for img in (cls.A, cls.B, cls.C, cls.D):
            cls.w.push(img)
        cls.max_size = footprint(cls.A, cls.B, cls.C, cls.D)
        cls.high = percent_of(cls.max_size, HIGH)
        cls.low = percent_of(cls.max_size, LOW)

    def setUp(self):
        super().setUp()
        for r in self.w.reg.values():
            r.reset_counts()
        # The arithmetic the scenario relies on (see the module doc).
        A, B, C, D = self.A, self.B, self.C, self.D
        self.assertLessEqual(footprint(A, B, C), self.high)
        self.assertGreater(footprint(A, B, C, D), self.high)
        self.assertLessEqual(footprint(A, C, D), self.low)

    def quota(self, **more):
        q = {"max_size": str(self.max_size), "high_water": HIGH, "low_water": LOW,
             "gc_interval": GC_INTERVAL}
        q.update(more)
        return {"storage": q}

    def cli_config(self, m, **quota):
        """A config for `ocimirror gc`: the mirror's own plus a quota."""
        cfg = deep_merge(copy.deepcopy(m.config), self.quota(**quota))
        path = os.path.join(os.path.dirname(m.config_path), "gc-cli.yaml")
        with open(path, "w") as f:
            f.write(to_yaml(cfg))
        return path

    def own_layer(self, img):
        return [d for d in img.layers if d != self.base][0]

    def assertImageStored(self, m, img):
        for d in [img.digest] + img.blobs:
            self.assertTrue(stored(m, d), "%s of %r should be in the store" % (d, img))

    def assertImageGone(self, m, img, except_=()):
        for d in [img.digest] + img.blobs:
            if d in except_:
                continue
            self.assertFalse(stored(m, d), "%s of %r should have been evicted" % (d, img))

    def evictions_logged(self, m):
        return [e.get("image", "") for e in m.log_json() if e.get("msg") == "gc: image evicted"]

    def k8s_gets(self, img, path_part):
        return self.w.reg["k8s"].count("GET", r"^/v2/%s/%s" % (re.escape(img.repo), path_part))

    def pull_in_lru_order(self, m):
        """A, B, C, A again, D — each more than the grace period apart, so
        that the order of last pulls is B < C < A < D."""
        for img in (self.A, self.B, self.C, self.A):
            self.pull(m, img)
            time.sleep(GRACE + 0.2)
        self.pull(m, self.D)

    # -- the quota in the background -----------------------------------------
    def test_least_recently_pulled_image_is_evicted_and_shared_base_layers_stay(self):
        A, B, C, D = self.A, self.B, self.C, self.D
        # tag_ttl 1h: B's tag record and manifest are still fresh in the
        # mirror's memory (mcache) when GC evicts B; eviction must drop them,
        # or B's return below is served from memory and never stored again.
        extra = self.quota()
        extra["tag_ttl"] = "1h"
        m = self.mirror(extra=extra)
        self.pull_in_lru_order(m)
        t0 = time.monotonic()
        self.assertTrue(wait_until(lambda: not stored(m, B.digest), 20),
                        "B (least recently pulled) was not evicted; used %d, high %d" % (
                            store_used(m), self.high))
        took = time.monotonic() - t0
        # Settle: a run in progress finishes its image.
        time.sleep(GRACE + 0.5)
        self.assertImageGone(m, B, except_=(self.base,))
        self.assertTrue(stored(m, self.base), "the base layer is still used by A and D")
        for img in (A, C, D):
            self.assertImageStored(m, img)
        used = store_used(m)
        self.assertLessEqual(used, self.low)
        evicted = self.evictions_logged(m)
        self.assertEqual(evicted, [canonical_name(B) + ":1"], evicted)
        note("quota %d bytes (4 images), high %d, low %d; after A,B,C %d; after D %d; "
             "B evicted %.1f s after D's pull; used now %d (%.1f %% of quota)" % (
                 self.max_size, self.high, self.low, footprint(A, B, C),
                 footprint(A, B, C, D), took, used, 100.0 * used / self.max_size))

        # Evicted means gone: B comes from the upstream again — its own
        # layer, not the base layer the mirror still holds.
        for r in self.w.reg.values():
            r.reset_counts()
        self.pull(m, B)
        self.assertGreaterEqual(self.k8s_gets(B, "manifests/"), 1)
        self.assertEqual(self.k8s_gets(B, "blobs/" + self.own_layer(B)), 1)
        self.assertEqual(self.k8s_gets(B, "blobs/" + self.base), 0)
        # And B's return pushes usage over again: C is now the least
        # recently pulled, so C goes and A, B, D stay.
        self.assertTrue(wait_until(lambda: not stored(m, C.digest), 20),
                        "C was not evicted after B came back")
        time.sleep(GRACE + 0.5)
        for img in (A, B, D):
            self.assertImageStored(m, img)
        self.assertImageGone(m, C)
        self.assertLessEqual(store_used(m), self.low)
        self.assertEqual(self.evictions_logged(m),
                         [canonical_name(B) + ":1", canonical_name(C) + ":1"])

    # -- on demand ----------------------------------------------------------
    def test_gc_command_applies_the_quota_beside_a_running_server(self):
        A, B, C, D = self.A, self.B, self.C, self.D
        m = self.mirror()   # no quota of its own: only the command evicts
        self.pull_in_lru_order(m)
        ingest = os.path.join(m.storage, "ingest")
        fresh, stale = os.path.join(ingest, "gc-test-fresh"), os.path.join(ingest, "gc-test-stale")
        for p in (fresh, stale):
            with open(p, "wb") as f:
                f.write(b"x" * 1000)
        two_hours_ago = time.time() - 7200
        os.utime(stale, (two_hours_ago, two_hours_ago))
        time.sleep(GRACE + 0.3)
        cfg = self.cli_config(m)
        before = store_used(m)
        self.assertGreater(before, self.high)

        p = run_gc("-c", cfg, "--dry-run")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("would evict %s:1 %s" % (canonical_name(B), B.digest), p.stdout)
        kv = kv_line(p.stdout)
        self.assertEqual(kv["dry_run"], "true")
        self.assertEqual(kv["evicted_images"], "1")
        self.assertEqual(store_used(m), before)
        self.assertTrue(stored(m, B.digest))
        self.assertTrue(os.path.exists(stale))

        p = run_gc("-c", cfg)
        self.assertEqual(p.returncode, 0, p.stderr)
        kv = kv_line(p.stdout)
        self.assertEqual(kv["evicted_images"], "1", p.stdout)
        self.assertEqual(kv["removed_ingest"], "1", p.stdout)
        self.assertEqual(int(kv["used_before"]), before)
        self.assertEqual(int(kv["used_after"]), store_used(m))
        self.assertLessEqual(store_used(m), self.low)
        self.assertImageGone(m, B, except_=(self.base,))
        for img in (A, C, D):
            self.assertImageStored(m, img)
        self.assertFalse(os.path.exists(stale), "a stale ingest file should be removed")
        self.assertTrue(os.path.exists(fresh), "a live ingest file must stay")
        note("ocimirror gc: used %d → %s (low %d), freed %s bytes in one eviction" % (
            before, kv["used_after"], self.low, kv["freed_bytes"]))

        # The server sees it: B comes from the upstream again, A from cache.
        for r in self.w.reg.values():
            r.reset_counts()
        self.pull(m, B)
        self.pull(m, A)
        self.assertEqual(self.k8s_gets(B, "blobs/" + self.own_layer(B)), 1)
        self.assertEqual(self.k8s_gets(A, "blobs/"), 0)
        # B's return took usage over the high mark again: the next run takes
        # C, now the least recently pulled (--storage overrides the file's).
        p = run_gc("--storage", m.storage, "-c", cfg)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("evicted %s:1 %s" % (canonical_name(C), C.digest), p.stdout)
        self.assertEqual(kv_line(p.stdout)["evicted_images"], "1", p.stdout)
        for img in (A, B, D):
            self.assertImageStored(m, img)
        # A bad argument is a usage error; a storage that is not one, an error.
        p = run_gc("--no-such-option")
        self.assertEqual(p.returncode, 2)
        p = run_gc("--storage", os.path.join(m.storage, "nope"))
        self.assertEqual(p.returncode, 1)
        os.unlink(fresh)

    # -- what GC must never break ------------------------------------------------
    def test_a_download_in_progress_completes_while_gc_evicts(self):
        w = self.w
        big = w.fx["big"]
        layer = big.layers[0]
        cert, key = w.ca.issue("gc-faultproxy")
        proxy = FaultProxy(w.reg["quay"].url, w.ca_file, cert, key,
                           log_path=os.path.join(w.log_dir, "gc-faultproxy.log")).start()
        self.addCleanup(proxy.stop)
        rate = 2 * 1024 * 1024
        proxy.add_rule("throttle", path=r"/blobs/", rate=rate)  # 32 MiB: ~16 s
        m = self.mirror(upstream_url={"quay": proxy.url}, extra=self.quota())
        result = {}

        def download():
            try:
                result["r"] = m.get("/v2/%s/blobs/%s" % (canonical_name(big), layer), timeout=240)
            except Exception as e:  # reported by the main thread
                result["e"] = e
        t = threading.Thread(target=download, daemon=True)
        t0 = time.monotonic()
        t.start()
        self.pull_in_lru_order(m)
        self.assertTrue(wait_until(lambda: not stored(m, self.B.digest), 20))
        self.assertTrue(t.is_alive(), "the download should still run while GC evicts")
        p = run_gc("-c", self.cli_config(m))   # and on demand, at the same time
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(t.is_alive(), "the download should still run during `ocimirror gc`")
        t.join(240)
        self.assertFalse(t.is_alive())
        self.assertNotIn("e", result, result.get("e"))
        r = result["r"]
        self.assertEqual(r.status, 200, r)
        self.assertEqual(sha256_digest(r.body), layer)
        note("a %d-byte download at %d B/s ran %.1f s across the eviction of B and an "
             "`ocimirror gc` run, and arrived intact" % (len(r.body), rate,
                                                        time.monotonic() - t0))

    def test_a_blob_being_served_stays_readable_after_gc_removes_it(self):
        big = self.w.fx["big"]
        layer = big.layers[0]
        m = self.mirror()
        self.pull(m, big)
        time.sleep(GRACE + 0.3)
        conn = m.connection(timeout=60)
        try:
            conn.request("GET", "/v2/%s/blobs/%s" % (canonical_name(big), layer))
            r = conn.getresponse()
            self.assertEqual(r.status, 200)
            h = hashlib.sha256()
            h.update(r.read(1 << 20))
            # The pull of this GET touched the blob; wait out the grace
            # period, then evict everything (a 1 MiB quota).
            time.sleep(GRACE + 0.3)
            p = run_gc("-c", self.cli_config(m, max_size="1MiB"))
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertFalse(stored(m, layer), "the big layer should have been removed:\n" +
                             p.stdout)
            self.assertFalse(stored(m, big.digest))
            rest = r.read()
            h.update(rest)
            self.assertEqual(len(rest) + (1 << 20), len(big.layer_bytes[layer]))
            self.assertEqual("sha256:" + h.hexdigest(), layer)
        finally:
            conn.close()
        # And the next request fetches it again.
        rb = m.get("/v2/%s/blobs/%s" % (canonical_name(big), layer), timeout=120)
        self.assertBlob(rb, layer)


if __name__ == "__main__":
    unittest.main(verbosity=2)
