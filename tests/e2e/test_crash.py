"""Crash safety: SIGKILL the mirror while 50 downloads are in flight, 20
times, restarting it each time; afterwards `ocimirror fsck` finds 0 corrupt
blobs, 0 leaked ingest files and an index consistent with the store, and a
full re-pull of everything returns the right bytes.  Also: `fsck --repair`
run next to a live server leaves its downloads alone.

Each round pushes fresh images (lib.images.make_image) to the quay
registry, so every request is cold and the kills hit downloads, not cache
hits.  The upstream is reached through lib.faultproxy throttling blob and
manifest bodies, so transfers last long enough to be in flight when the
kill comes at a random moment (seeded: OM_CRASH_SEED reproduces a run).

Run: cd tests/e2e && OCIMIRROR_BIN=... ../../scripts/netns-run python3 -u test_crash.py
"""

import hashlib
import http.client
import json
import os
import random
import subprocess
import sys
import threading
import time
import unittest
from concurrent.futures import ThreadPoolExecutor

from lib.faultproxy import FaultProxy
from lib.images import ACCEPT_ALL, make_image, make_layer
from lib.mirror import mirror_bin
from lib.world import WorldTestCase, canonical_name

ROUNDS = 20
CLIENTS = 50
BIG_LAYER = 6 << 20          # bytes of random data in a "big" layer
BLOB_RATE = 3 << 20          # bytes/s per upstream connection for blob bodies
MANIFEST_RATE = 4096         # bytes/s for manifest bodies: ~0.3 s per manifest
KILL_AFTER = (0.05, 1.5)     # seconds after the clients start
CLIENT_TIMEOUT = 60


def run_fsck(m, *args):
    """`ocimirror fsck -c <m's config> --json ARGS` → (exit status, report)."""
    p = subprocess.run([mirror_bin(), "fsck", "-c", m.config_path, "--json"] + list(args),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    err = p.stderr.decode(errors="replace")
    if "Sanitizer" in err or "runtime error:" in err:
        raise AssertionError("sanitizer report from fsck:\n" + err[:6000])
    try:
        report = json.loads(p.stdout)
    except ValueError:
        report = None
    if report is None or p.returncode not in (0, 1):
        sys.stderr.write("fsck stderr:\n%s\nstdout:\n%s\n" % (
            p.stderr.decode(errors="replace"), p.stdout.decode(errors="replace")))
    return p.returncode, report


def fetch(m, path, headers=None, timeout=CLIENT_TIMEOUT):
    """GET on a fresh connection, hashing the body as it arrives.  Returns a
    dict: status, clen (Content-Length or None), n (body bytes), digest,
    header_digest, error (repr of the exception that ended it, or None)."""
    out = {"path": path, "status": None, "clen": None, "n": 0, "digest": None,
           "header_digest": None, "error": None}
    conn = m.connection(timeout)
    h = hashlib.sha256()
    try:
        conn.request("GET", path, headers=dict({"User-Agent": "om-e2e-crash"}, **(headers or {})))
        r = conn.getresponse()
        out["status"] = r.status
        cl = r.getheader("Content-Length")
        out["clen"] = int(cl) if cl is not None else None
        out["header_digest"] = r.getheader("Docker-Content-Digest")
        while True:
            chunk = r.read(1 << 16)
            if not chunk:
                break
            h.update(chunk)
            out["n"] += len(chunk)
    except (OSError, http.client.HTTPException) as e:
        out["error"] = repr(e)
    finally:
        conn.close()
    out["digest"] = "sha256:" + h.hexdigest()
    return out


def targets_of(imgs):
    """[(path, headers, expected digest)] for every manifest (by tag and by
    digest) and blob of the images, as a client would ask for them."""
    out = []
    for img in imgs:
        name = canonical_name(img)
        out.append(("/v2/%s/manifests/%s" % (name, img.tag), {"Accept": ACCEPT_ALL}, img.digest))
        out.append(("/v2/%s/manifests/%s" % (name, img.digest), {"Accept": ACCEPT_ALL},
                    img.digest))
        for d in img.blobs:
            out.append(("/v2/%s/blobs/%s" % (name, d), None, d))
    return out


class CrashTest(WorldTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        w = cls.w
        cert, key = w.ca.issue("faultproxy")
        cls.proxy = FaultProxy(w.reg["quay"].url, w.ca_file, cert, key,
                               log_path=os.path.join(w.log_dir, "faultproxy.log")).start()
        cls.addClassCleanup(cls.proxy.stop)
        cls.seed = int(os.environ.get("OM_CRASH_SEED") or random.SystemRandom().randrange(1 << 30))
        sys.stderr.write("test_crash: OM_CRASH_SEED=%d\n" % cls.seed)
        cls.rng = random.Random(cls.seed)
        cls.serial = 0

    def setUp(self):
        super().setUp()
        self.proxy.clear()

    def throttle(self):
        self.proxy.add_rule("throttle", path=r"/blobs/", rate=BLOB_RATE)
        self.proxy.add_rule("throttle", path=r"/manifests/", rate=MANIFEST_RATE)

    def new_images(self, n_big, n_small):
        """Fresh images on quay (never seen by the mirror): n_big with one
        BIG_LAYER random layer + one small layer, n_small with two small
        layers; OCI and Docker media types mixed."""
        imgs = []
        for i in range(n_big + n_small):
            cls = type(self)
            cls.serial += 1
            k = cls.serial
            seed = self.seed * 1000 + k
            base = []
            if i < n_big:
                brng = random.Random(seed)
                base = [make_layer(brng, [("data/big.bin", BIG_LAYER)], level=0)]
            img = make_image("crash%d" % k, "crash/img%d" % k, "v1", "quay",
                             kind="oci" if k % 2 else "docker", seed=seed,
                             n_layers=1 if base else 2, base_layers=base)
            self.w.push(img)
            imgs.append(img)
        return imgs

    def start_clients(self, m, targets):
        """CLIENTS threads, each GETting one target (round robin over the
        targets, shuffled).  Returns (threads, results list)."""
        order = [targets[i % len(targets)] for i in range(CLIENTS)]
        self.rng.shuffle(order)
        results = []
        lock = threading.Lock()

        def one(t):
            res = fetch(m, t[0], t[1])
            res["want"] = t[2]
            with lock:
                results.append(res)
        threads = [threading.Thread(target=one, args=(t,), daemon=True) for t in order]
        for th in threads:
            th.start()
        return threads, results

    def join(self, threads):
        deadline = time.monotonic() + CLIENT_TIMEOUT + 10
        for th in threads:
            th.join(max(0.1, deadline - time.monotonic()))
        self.assertFalse(any(th.is_alive() for th in threads), "clients still running")

    def assertNoWrongBytes(self, results):
        """A body that arrived complete is the right one: whatever the kill
        interrupted, no client ever got all the bytes of the wrong content."""
        for r in results:
            if r["status"] != 200 or r["error"] is not None:
                continue
            if r["clen"] is not None and r["n"] != r["clen"]:
                continue
            self.assertEqual(r["digest"], r["want"], "complete body with wrong bytes: %r" % (r,))
            if r["header_digest"] is not None:
                self.assertEqual(r["header_digest"], r["want"], r)

    def ingest_files(self, m):
        d = os.path.join(m.storage, "ingest")
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def assertFsckClean(self, m, report):
        self.assertIsNotNone(report, "fsck printed no JSON")
        msg = json.dumps(report, indent=1)[:4000]
        self.assertEqual(report["blobs"]["corrupt"], 0, msg)
        self.assertEqual(report["blobs"]["unreadable"], 0, msg)
        self.assertEqual(report["ingest"]["files"], 0, msg)
        self.assertEqual(report["index"]["state"], "ok", msg)
        self.assertEqual(report["index"]["dangling_tags"], 0, msg)
        self.assertEqual(report["index"]["missing_manifests"], 0, msg)
        self.assertEqual(report["index"]["missing_blobs"], 0, msg)
        self.assertEqual(report["problems_found"], 0, msg)

    def test_twenty_sigkills_during_fifty_downloads_leave_a_consistent_store(self):
        m = self.mirror(upstream_url={"quay": self.proxy.url})
        self.throttle()
        all_imgs = []
        ingest_at_kill = []
        stats = {"complete": 0, "broken": 0, "error_status": 0}
        t0 = time.monotonic()
        for rnd in range(ROUNDS):
            imgs = self.new_images(n_big=2, n_small=6)
            all_imgs += imgs
            threads, results = self.start_clients(m, targets_of(imgs))
            time.sleep(self.rng.uniform(*KILL_AFTER))
            m.kill9()
            ingest_at_kill.append(len(self.ingest_files(m)))
            self.join(threads)
            self.assertNoWrongBytes(results)
            for r in results:
                if r["status"] == 200 and r["error"] is None and r["n"] == r["clen"]:
                    stats["complete"] += 1
                elif r["error"] is not None or r["status"] == 200:
                    stats["broken"] += 1   # reset, or a body cut short
                else:
                    stats["error_status"] += 1
            if rnd == ROUNDS - 1:
                # Before the restart: what the kill left behind is stale
                # (no process holds the storage) and reported as such.
                rc, report = run_fsck(m)
                self.assertIsNotNone(report)
                self.assertFalse(report["in_use"], report)
                self.assertEqual(report["ingest"]["stale"], ingest_at_kill[-1], report)
                self.assertEqual(report["blobs"]["corrupt"], 0, report)
                self.assertEqual(rc, 0 if ingest_at_kill[-1] == 0 else 1, report)
            m.start()
        sys.stderr.write("test_crash: %d rounds in %.1fs; ingest files at each kill %s; "
                         "client requests %r\n" % (ROUNDS, time.monotonic() - t0,
                                                   ingest_at_kill, stats))
        # The kills did hit downloads in flight (else this test proves little).
        self.assertGreaterEqual(sum(1 for n in ingest_at_kill if n > 0), ROUNDS // 2,
                                "kills rarely hit an in-flight download: %r" % ingest_at_kill)
        self.assertGreater(stats["broken"], 0, stats)

        # The restart removed the leftovers; nothing corrupt, index consistent.
        self.assertEqual(self.ingest_files(m), [])
        rc, report = run_fsck(m)
        self.assertFsckClean(m, report)
        self.assertEqual(rc, 0, report)
        self.assertTrue(report["in_use"], "fsck did not notice the running server: %r" % report)
        sys.stderr.write("test_crash: after the restarts: %d objects, %d not in the index "
                         "(committed, then killed before the index update)\n" % (
                             report["blobs"]["checked"], report["index"]["unindexed_objects"]))

        # Everything pulls again, with the right bytes, at full speed.
        self.proxy.clear()
        with ThreadPoolExecutor(8) as ex:
            for f in [ex.submit(self.pull, m, img) for img in all_imgs]:
                f.result(timeout=300)
        rc, report = run_fsck(m)
        self.assertFsckClean(m, report)
        self.assertEqual(rc, 0, report)
        n_objects = len({d for img in all_imgs for d in img.blobs} |
                        {img.digest for img in all_imgs})
        self.assertGreaterEqual(report["blobs"]["checked"], n_objects, report)

    def test_a_power_cut_after_cold_pulls_never_serves_wrong_bytes(self):
        """Issue 13: the last byte of a cold pull no longer waits for fsync;
        what a crash of the machine could lose is listed in the journal
        <storage>/unsynced.  Simulated here: SIGKILL right after a set of cold
        pulls, then the data of the journalled blobs zeroed or cut short
        (what a lost page cache leaves), then a restart."""
        m = self.mirror(upstream_url={"quay": self.proxy.url})
        imgs = self.new_images(n_big=1, n_small=3)
        for img in imgs:
            self.pull(m, img)
        m.kill9()
        journal = os.path.join(m.storage, "unsynced")
        with open(journal) as f:
            listed = [l.strip() for l in f if l.startswith("sha256:")]
        self.assertTrue(listed, "nothing journalled right after the pulls")
        damaged = []
        for i, d in enumerate(sorted(set(listed))):
            path = os.path.join(m.storage, "blobs", "sha256", d[7:9], d[7:])
            if not os.path.exists(path):
                continue
            size = os.path.getsize(path)
            with open(path, "r+b") as f:
                if i % 2:
                    f.truncate(size // 2)       # cut short
                else:
                    f.write(b"\0" * size)       # zeroed
            damaged.append(d)
        self.assertTrue(damaged)
        self.proxy.clear_log()
        m.start()
        log = m.log_text()
        self.assertIn("the last shutdown was not clean", log)
        for d in damaged:
            self.assertIn(d, log)
        # Nothing wrong is served, and what was damaged comes again from upstream.
        for img in imgs:
            self.pull(m, img)
        fetched = {p.rsplit("/", 1)[-1] for p in
                   (r["path"] for r in self.proxy.requests(path_re=r"/blobs/", method="GET"))}
        blob_digests = {d for img in imgs for d in img.blobs}
        for d in damaged:
            if d in blob_digests:
                self.assertIn(d, fetched, "a damaged blob was not fetched again")
        rc, report = run_fsck(m)
        self.assertFsckClean(m, report)
        self.assertEqual(rc, 0, report)

    def test_fsck_repair_next_to_a_live_server_leaves_its_downloads_alone(self):
        m = self.mirror(upstream_url={"quay": self.proxy.url})
        self.proxy.add_rule("throttle", path=r"/blobs/", rate=2 << 20)
        imgs = self.new_images(n_big=3, n_small=0)
        targets = [("/v2/%s/blobs/%s" % (canonical_name(i), i.layers[0]), None, i.layers[0])
                   for i in imgs]
        results = []
        threads = []
        for t in targets:
            def one(t=t):
                res = fetch(m, t[0], t[1])
                res["want"] = t[2]
                results.append(res)
            threads.append(threading.Thread(target=one, daemon=True))
            threads[-1].start()
        # Wait until all three downloads are writing their ingest files.
        deadline = time.monotonic() + 15
        while len(self.ingest_files(m)) < len(targets) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertEqual(len(self.ingest_files(m)), len(targets))
        rc, report = run_fsck(m, "--repair")
        self.assertIsNotNone(report)
        self.assertTrue(report["in_use"], report)
        self.assertEqual(report["ingest"]["stale"], 0, report)
        self.assertEqual(report["ingest"]["removed"], 0, report)
        self.assertGreaterEqual(report["ingest"]["in_flight"], 1, report)
        self.assertEqual(report["problems_found"], 0, report)
        self.assertEqual(rc, 0, report)
        self.join(threads)
        self.assertEqual(len(results), len(targets))
        for r in results:
            self.assertIsNone(r["error"], r)
            self.assertEqual(r["status"], 200, r)
            self.assertEqual(r["digest"], r["want"], r)
        for i in imgs:
            d = i.layers[0]
            self.assertTrue(os.path.exists(os.path.join(m.storage, "blobs", "sha256", d[7:9], d[7:])),
                            "download was not committed after fsck ran beside it")


if __name__ == "__main__":
    unittest.main(verbosity=2)
