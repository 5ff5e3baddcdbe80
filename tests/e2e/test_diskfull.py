"""A full disk: the mirror's storage lives on a small tmpfs the test mounts
(48 MiB; we are root), filled with a filler file the test controls.

- A cold blob bigger than the free space: the client gets a clean error (an
  OCI error JSON before the body, or a connection cut short mid-body: never
  a complete body with the wrong bytes), nothing corrupt is committed and
  no ingest file is left (fsck), cached content and other requests are
  still served; once the filler is deleted the same pull succeeds and is
  cached.
- A manifest that cannot be stored because the disk is full: a clean OCI
  error JSON; cached content is still served; after freeing space it works.

tmpfs reports ENOSPC exactly like a disk filesystem does for write(2), and
needs no image file or loop device.

Run: cd tests/e2e && OCIMIRROR_BIN=... ../../scripts/netns-run python3 -u test_diskfull.py
"""

import atexit
import hashlib
import http.client
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest

from lib.images import ACCEPT_ALL
from lib.mirror import mirror_bin
from lib.world import WorldTestCase, canonical_name

FS_SIZE = "48m"
CHUNK = 1 << 20


def fetch(m, path, headers=None, timeout=60):
    """GET on a fresh connection; the body is hashed as it arrives and its
    first 64 KiB kept.  Returns a dict: status, clen, n, digest, head
    (bytes), error (repr of the exception that ended the body, or None)."""
    out = {"path": path, "status": None, "clen": None, "n": 0, "head": b"", "error": None}
    h = hashlib.sha256()
    conn = m.connection(timeout)
    try:
        conn.request("GET", path, headers=dict({"User-Agent": "om-e2e-diskfull"}, **(headers or {})))
        r = conn.getresponse()
        out["status"] = r.status
        cl = r.getheader("Content-Length")
        out["clen"] = int(cl) if cl is not None else None
        out["headers"] = {k.lower(): v for k, v in r.getheaders()}
        while True:
            chunk = r.read(CHUNK)
            if not chunk:
                break
            h.update(chunk)
            if len(out["head"]) < 65536:
                out["head"] += chunk[:65536 - len(out["head"])]
            out["n"] += len(chunk)
    except (OSError, http.client.HTTPException) as e:
        out["error"] = repr(e)
    finally:
        conn.close()
    out["digest"] = "sha256:" + h.hexdigest()
    out["complete"] = (out["error"] is None and
                       (out["clen"] is None or out["n"] == out["clen"]))
    return out


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def run_fsck(m, *args):
    p = subprocess.run([mirror_bin(), "fsck", "-c", m.config_path, "--json"] + list(args),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    err = p.stderr.decode(errors="replace")
    if "Sanitizer" in err or "runtime error:" in err:
        raise AssertionError("sanitizer report from fsck:\n" + err[:6000])
    try:
        return p.returncode, json.loads(p.stdout)
    except ValueError:
        sys.stderr.write("fsck: %s %s\n" % (p.stdout[:2000], p.stderr[:2000]))
        return p.returncode, None


class DiskFullTest(WorldTestCase):

    def small_fs(self):
        """Mount a fresh tmpfs of FS_SIZE; unmounted after the test (after
        the mirror on it has been stopped)."""
        mnt = tempfile.mkdtemp(prefix="om-e2e-diskfull-")
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + FS_SIZE, "tmpfs", mnt],
                       check=True, timeout=30)
        self.addCleanup(self._unmount, mnt)
        atexit.register(self._unmount, mnt)   # a SIGTERM'd run skips the cleanups
        return mnt

    @staticmethod
    def _unmount(mnt):
        if not os.path.isdir(mnt):
            return
        if os.path.ismount(mnt) and subprocess.run(["umount", mnt], timeout=30).returncode != 0:
            subprocess.run(["umount", "-l", mnt], timeout=30)   # something still holds it
        try:
            os.rmdir(mnt)
        except OSError as e:
            sys.stderr.write("diskfull cleanup: %s: %s\n" % (mnt, e))

    def mirror_on(self, mnt):
        m = self.mirror(storage=os.path.join(mnt, "storage"))
        # Stop it before the unmount (cleanups run last-in first-out); the
        # harness's own after-test checks still run and see no running process.
        self.addCleanup(m.stop)
        return m

    def fill(self, mnt, leave):
        """Grow mnt/filler until at most `leave` bytes are free (0: until
        write fails with ENOSPC).  Returns the filler's path."""
        path = os.path.join(mnt, "filler")
        zeros = b"\0" * CHUNK
        with open(path, "ab") as f:
            while True:
                want = free_bytes(mnt) - leave
                if want <= 0:
                    break
                try:
                    f.write(zeros[:min(CHUNK, want)])
                    f.flush()
                except OSError:
                    break
        return path

    def blob_path(self, m, d):
        return os.path.join(m.storage, "blobs", "sha256", d[7:9], d[7:])

    def ingest_files(self, m):
        d = os.path.join(m.storage, "ingest")
        return os.listdir(d) if os.path.isdir(d) else []

    def wait_no_ingest(self, m, timeout=10):
        deadline = time.monotonic() + timeout
        while self.ingest_files(m) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.ingest_files(m), [], "ingest files left behind")

    def index_tags(self, m, repo, timeout=5):
        """Tags of repo in the index, read by a connection of our own."""
        db = sqlite3.connect("file:%s?mode=ro" % os.path.join(m.storage, "index.db"), uri=True,
                             timeout=timeout)
        try:
            return [r[0] for r in db.execute("SELECT tag FROM tags WHERE repo = ? ORDER BY tag",
                                             (repo,))]
        finally:
            db.close()

    def assertCleanFailure(self, r, want):
        """Not a complete body with the wrong bytes: either an OCI error JSON
        (no blob bytes at all), or a 200 cut short."""
        if r["status"] == 200:
            self.assertFalse(r["complete"] and r["digest"] != want,
                             "complete body with wrong bytes: %r" % {k: v for k, v in r.items()
                                                                   if k != "head"})
            self.assertFalse(r["complete"], "the download cannot have succeeded: %r" % (
                {k: v for k, v in r.items() if k != "head"},))
            return "cut short after %d of %s bytes (%s)" % (r["n"], r["clen"], r["error"])
        self.assertIsNotNone(r["status"], r)
        self.assertGreaterEqual(r["status"], 400, r)
        doc = json.loads(r["head"])
        self.assertIsInstance(doc.get("errors"), list, r)
        return "status %d %s" % (r["status"], doc["errors"][0].get("code"))

    def assertFsckClean(self, m):
        rc, rep = run_fsck(m)
        self.assertIsNotNone(rep)
        msg = json.dumps(rep)[:3000]
        self.assertEqual(rep["blobs"]["corrupt"], 0, msg)
        self.assertEqual(rep["ingest"]["files"], 0, msg)
        self.assertEqual(rep["index"]["state"], "ok", msg)
        self.assertEqual(rep["problems_found"], 0, msg)
        self.assertEqual(rc, 0, msg)
        return rep

    def test_a_cold_blob_bigger_than_the_free_space_fails_cleanly_then_caches_once_freed(self):
        mnt = self.small_fs()
        m = self.mirror_on(mnt)
        alpine, big, pause = self.w.fx["alpine"], self.w.fx["big"], self.w.fx["pause"]
        self.pull(m, alpine)                              # cached before the disk fills
        filler = self.fill(mnt, 8 << 20)                  # 8 MiB left for a 32 MiB blob
        d = big.layers[0]
        path = "/v2/%s/blobs/%s" % (canonical_name(big), d)

        r = fetch(m, path)
        how = self.assertCleanFailure(r, d)
        sys.stderr.write("diskfull: 32 MiB blob with 8 MiB free: %s\n" % how)
        self.wait_no_ingest(m)
        self.assertFalse(os.path.exists(self.blob_path(m, d)))
        self.assertFsckClean(m)

        # Still serving: cached content, the API, and a small cold pull.
        self.assertEqual(m.get("/v2/").status, 200)
        self.pull(m, alpine)
        self.pull(m, pause)

        # Space comes back: the same pull now succeeds and is cached.
        os.unlink(filler)
        r = fetch(m, path)
        self.assertEqual(r["status"], 200, r)
        self.assertTrue(r["complete"], r)
        self.assertEqual(r["digest"], d)
        self.assertTrue(os.path.exists(self.blob_path(m, d)))
        quay = self.w.reg["quay"]
        before = quay.count("GET", r"/blobs/" + d)
        r = fetch(m, path)
        self.assertEqual((r["status"], r["digest"]), (200, d))
        self.assertEqual(quay.count("GET", r"/blobs/" + d), before, "not served from the cache")
        self.assertFsckClean(m)

    def assertUncachedManifestOrCleanError(self, r, img):
        """A verified manifest that cannot be stored is served uncached
        (200, the right bytes, a Warning) — or, failing that, a clean
        error JSON.  Never wrong bytes."""
        if r.status == 200:
            self.assertEqual(r.headers["Docker-Content-Digest"], img.digest)
            self.assertEqual(r.body, img.manifest_bytes)
            self.assertIn("not cached", r.headers.get("Warning", ""))
            return "200 uncached"
        errs = self.assertErrorJSON(r)
        self.assertGreaterEqual(r.status, 400, r)
        return "%d %s" % (r.status, errs[0]["code"])

    def test_a_manifest_that_cannot_be_stored_on_a_full_disk_is_served_uncached(self):
        mnt = self.small_fs()
        m = self.mirror_on(mnt)
        alpine, etcd = self.w.fx["alpine"], self.w.fx["etcd"]
        self.pull(m, alpine)
        filler = self.fill(mnt, 0)                        # not one block left
        self.assertLess(free_bytes(mnt), 64 << 10)

        name = canonical_name(etcd)
        r = m.get("/v2/%s/manifests/%s" % (name, etcd.tag), {"Accept": ACCEPT_ALL})
        sys.stderr.write("diskfull: manifest on a full disk: %s\n"
                         % self.assertUncachedManifestOrCleanError(r, etcd))
        r = m.get("/v2/%s/manifests/%s" % (name, etcd.digest), {"Accept": ACCEPT_ALL})
        self.assertUncachedManifestOrCleanError(r, etcd)
        self.assertFalse(os.path.exists(self.blob_path(m, etcd.digest)))

        # A cold blob on a full disk: clean failure too.
        d = etcd.layers[0]
        r = fetch(m, "/v2/%s/blobs/%s" % (name, d))
        sys.stderr.write("diskfull: blob on a full disk: %s\n" % self.assertCleanFailure(r, d))
        self.wait_no_ingest(m)

        # Cached content is still served, by digest and (tag_ttl 2 s, so
        # after a revalidation that cannot be recorded) by tag.
        self.pull(m, alpine, ref=alpine.digest)
        time.sleep(2.1)
        self.pull(m, alpine)
        self.assertEqual(m.get("/v2/").status, 200)

        os.unlink(filler)
        self.pull(m, etcd)
        self.assertTrue(os.path.exists(self.blob_path(m, etcd.digest)))
        # ... and recorded in the index where another process (fsck, gc,
        # the next start) can see it: no transaction left open by the
        # failures while the disk was full.
        self.assertEqual(self.index_tags(m, name), [etcd.tag])
        self.assertFsckClean(m)


if __name__ == "__main__":
    unittest.main(verbosity=2)
