"""Prefetch (预热): `ocimirror prefetch` and the config's prefetch section.

The command pulls images through a mirror (one started in-process on the
config's storage, one already running at the config's listen address, or
--mirror URL) so that the mirror caches them; the config's prefetch section
does the same from a background thread of the server, at start-up and then
every interval.  Each test checks the effect on the cache the way it
matters: with the upstream stopped afterwards, what was prefetched is still
served and what was not is not; or a later pull costs the upstream no blob.

Run: cd tests/e2e && OCIMIRROR_BIN=... ../../scripts/netns-run python3 -u test_prefetch.py
"""

import os
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lib.images import ACCEPT_ALL               # noqa: E402
from lib.mirror import mirror_bin               # noqa: E402
from lib.world import WorldTestCase, canonical_name  # noqa: E402

CLI_TIMEOUT = 120     # one prefetch run, upper bound


class Run:
    """A finished (or running) `ocimirror prefetch`."""

    def __init__(self, argv):
        self.argv = argv
        self.rc = None
        self.out = ""
        self.err = ""

    def __repr__(self):
        return "<prefetch rc=%s argv=%r>\n--- stdout ---\n%s\n--- stderr ---\n%s" % (
            self.rc, self.argv, self.out, self.err[-4000:])


def _kill_group(proc):
    try:
        os.killpg(proc.pid, 9)
    except (ProcessLookupError, PermissionError):
        pass


class PrefetchTest(WorldTestCase):

    def prefetch(self, *args, timeout=CLI_TIMEOUT, on_line=None):
        """Run `ocimirror prefetch ARGS` (own session, bounded); on_line(line)
        is called for every stdout line as it arrives."""
        run = Run([mirror_bin(), "prefetch", *args])
        proc = subprocess.Popen(run.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, start_new_session=True, text=True)
        self.addCleanup(_kill_group, proc)
        err_chunks = []
        t = threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()), daemon=True)
        t.start()
        timer = threading.Timer(timeout, _kill_group, args=(proc,))
        timer.start()
        lines = []
        try:
            for line in proc.stdout:
                lines.append(line)
                if on_line:
                    on_line(line)
            proc.wait(timeout=30)
        finally:
            timer.cancel()
            t.join(30)
        proc.stdout.close()
        proc.stderr.close()
        run.rc = proc.returncode
        run.out = "".join(lines)
        run.err = "".join(err_chunks)
        sys.stderr.write("[prefetch] %s -> %s\n" % (" ".join(args), run.rc))
        return run

    def stopped_mirror(self, **opts):
        """A mirror that is configured (its file written) but not running, so
        that `prefetch -c` starts one in-process on the same storage."""
        m = self.mirror(start=False, **opts)
        m.write_config()
        return m

    # -- the command -------------------------------------------------------
    def test_one_platform_prefetched_is_served_with_the_upstream_stopped_and_the_other_is_not(self):
        multi = self.w.fx["multi"]
        hub = self.w.reg["hub"]
        m = self.stopped_mirror()
        hub.reset_counts()
        run = self.prefetch("-c", m.config_path, "--platform", "linux/amd64",
                            "docker.io/library/multi:1")
        self.assertEqual(run.rc, 0, run)
        self.assertIn("in this process", run.out, run)
        self.assertIn("1 of 1 image done, 0 failed", run.out, run)
        amd64 = multi.children["linux/amd64"]
        arm64 = multi.children["linux/arm64/v8"]
        self.assertEqual(hub.count("GET", r"/blobs/"), len(amd64.blobs), run)

        m.start()
        hub.stop()
        # Everything of linux/amd64 comes from the cache...
        self.pull(m, multi, platforms=["linux/amd64"])
        # ...and nothing of linux/arm64 was fetched.
        name = canonical_name(multi)
        r = m.get("/v2/%s/manifests/%s" % (name, arm64.digest), {"Accept": ACCEPT_ALL})
        self.assertNotEqual(r.status, 200, r)
        own = [d for d in arm64.blobs if d not in amd64.blobs]
        self.assertTrue(own)
        # One is enough: each takes the mirror ~15 s to give up on the
        # stopped upstream.
        self.assertNotEqual(m.get("/v2/%s/blobs/%s" % (name, own[0])).status, 200, own[0])

    def test_a_nonexistent_image_fails_at_once_with_a_non_zero_exit_naming_it(self):
        m = self.stopped_mirror()
        run = self.prefetch("-c", m.config_path, "--platform", "linux/amd64",
                            "quay.io/nope/nothing:1", "docker.io/library/alpine:3.19",
                            "Not/A/Valid:Name")
        self.assertEqual(run.rc, 1, run)
        self.assertIn("ocimirror: prefetch failed: quay.io/nope/nothing:1", run.err, run)
        self.assertIn("ocimirror: prefetch failed: Not/A/Valid:Name", run.err, run)
        self.assertNotIn("alpine", run.err, run)
        # A 404 is not retried (the default is 3 tries 5 minutes apart).
        self.assertIn("not retried", run.out, run)
        self.assertNotIn("retrying", run.out, run)
        self.assertIn("1 of 3 images done, 2 failed", run.out, run)

    def test_a_running_mirror_of_the_same_config_is_used_instead_of_its_storage(self):
        alpine = self.w.fx["alpine"]
        m = self.mirror()
        self.w.reg["hub"].reset_counts()
        run = self.prefetch("-c", m.config_path, "alpine:3.19")
        self.assertEqual(run.rc, 0, run)
        self.assertIn("already running at http://%s" % m.host_port, run.out, run)
        self.assertEqual(self.w.reg["hub"].count("GET", r"/blobs/"), len(alpine.blobs))
        # The running mirror served it (its log has the requests).
        paths = [e.get("path", "") for e in m.log_json() if e.get("msg") == "request"]
        self.assertIn("/v2/alpine/manifests/3.19", paths)
        # A second run has nothing left to fetch upstream.
        self.w.reg["hub"].reset_counts()
        run = self.prefetch("-c", m.config_path, "alpine:3.19")
        self.assertEqual(run.rc, 0, run)
        self.assertEqual(self.w.reg["hub"].count("GET", r"/blobs/"), 0)

    def test_a_list_file_through_mirror_url_with_comments_and_blank_lines(self):
        etcd, pause = self.w.fx["etcd"], self.w.fx["pause"]
        m = self.mirror()
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write("# images for the rollout\n\n  quay.io/coreos/etcd:v3.5.0  \n"
                    "registry.k8s.io/pause:3.9   # the sandbox image\n")
        self.addCleanup(os.unlink, f.name)
        # No -c: the embedded defaults, whose upstreams are never contacted
        # here because --mirror names the mirror to pull through.
        run = self.prefetch("--mirror", m.url + "/", "-f", f.name)
        self.assertEqual(run.rc, 0, run)
        self.assertIn("2 images for linux/amd64, linux/arm64 through the mirror at %s" % m.url,
                      run.out, run)
        for img in (etcd, pause):
            self.w.reg[img.registry].reset_counts()
            self.pull(m, img)
            self.assertEqual(self.w.reg[img.registry].count("GET", r"/blobs/"), 0, img)

    def test_retries_with_a_short_interval_outlast_an_upstream_that_comes_back(self):
        etcd = self.w.fx["etcd"]
        quay = self.w.reg["quay"]
        m = self.stopped_mirror()
        quay.stop()
        restarted = []

        def on_line(line):
            # Bring the upstream back while the command waits for its last try.
            if "(try 3/3)" in line and line.startswith("retrying") and not restarted:
                quay.start()
                restarted.append(time.monotonic())
        run = self.prefetch("-c", m.config_path, "--retries", "3", "--retry-interval", "4s",
                            "quay.io/coreos/etcd:v3.5.0", on_line=on_line)
        self.assertTrue(restarted, run)
        self.assertEqual(run.rc, 0, run)
        self.assertIn("failed (try 1/3, will retry)", run.out, run)
        self.assertIn("failed (try 2/3, will retry)", run.out, run)
        self.assertIn("1 of 1 image done", run.out, run)
        m.start()
        quay.stop()
        self.pull(m, etcd)

    def test_retries_give_up_after_the_last_try_and_name_the_image(self):
        m = self.stopped_mirror()
        self.w.reg["quay"].stop()
        run = self.prefetch("-c", m.config_path, "--retries", "2", "--retry-interval", "1s",
                            "quay.io/coreos/etcd:v3.5.0")
        self.assertEqual(run.rc, 1, run)
        self.assertIn("failed (try 2/2)", run.out, run)
        self.assertIn("prefetch failed: quay.io/coreos/etcd:v3.5.0", run.err, run)

    def test_bad_usage_exits_2(self):
        for args in (["--platform", "Linux/AMD64", "alpine"], ["--retries", "0", "alpine"],
                     ["--mirror", "ftp://x", "alpine"], ["--mirror", "http://x/path", "alpine"],
                     ["--bogus"]):
            run = self.prefetch(*args)
            self.assertEqual(run.rc, 2, run)

    # -- the config's prefetch section ------------------------------------
    def test_the_config_prefetch_section_warms_the_cache_in_the_background_and_resyncs(self):
        etcd = self.w.fx["etcd"]
        quay = self.w.reg["quay"]
        quay.reset_counts()
        m = self.mirror(extra={"prefetch": {"images": ["quay.io/coreos/etcd:v3.5.0"],
                                            "platforms": ["linux/amd64"], "interval": "1s",
                                            "retries": 2, "retry_interval": "1s"}})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and quay.count("GET", r"/blobs/") < len(etcd.blobs):
            time.sleep(0.2)
        self.assertEqual(quay.count("GET", r"/blobs/"), len(etcd.blobs))
        # It keeps re-syncing: the tag (tag_ttl 2 s) is revalidated upstream again.
        quay.reset_counts()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and quay.count(None, r"/manifests/v3\.5\.0") == 0:
            time.sleep(0.3)
        self.assertGreater(quay.count(None, r"/manifests/v3\.5\.0"), 0)
        self.assertEqual(quay.count("GET", r"/blobs/"), 0, "a re-sync fetched blobs again")
        # A client's pull is a hit: no blob from upstream.
        quay.reset_counts()
        self.pull(m, etcd)
        self.assertEqual(quay.count("GET", r"/blobs/"), 0)
        msgs = [e.get("msg") for e in m.log_json()]
        self.assertIn("prefetch: image done", msgs)
        self.assertIn("prefetch: job finished", msgs)
        # When the admin API is there, it lists the config job.
        r = m.get("/api/v1/prefetch")
        if r.status == 200:
            jobs = r.json()["jobs"]
            self.assertTrue(any(j["kind"] == "config" and j["state"] == "done" for j in jobs),
                            jobs)

    def test_an_admin_job_runs_on_the_prefetch_thread_and_reports_its_progress(self):
        import json
        pause, etcd = self.w.fx["pause"], self.w.fx["etcd"]
        m = self.mirror(extra={"admin": {"token": "s3cret"}})
        r = m.get("/api/v1/prefetch", method="POST", headers={
            "Authorization": "Bearer s3cret", "Content-Type": "application/json"},
            body=json.dumps({"images": ["registry.k8s.io/pause:3.9", "quay.io/nope/x:1",
                                        "quay.io/coreos/etcd:v3.5.0"],
                             "platforms": ["linux/amd64"]}))
        if r.status == 404:
            self.skipTest("no admin API in this build")
        self.assertEqual(r.status, 202, r)
        job_id = r.json()["id"]
        job = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            jobs = m.get("/api/v1/prefetch").json()["jobs"]
            job = next(j for j in jobs if j["id"] == job_id)
            if job["state"] in ("done", "failed"):
                break
            time.sleep(0.2)
        self.assertEqual(job["state"], "failed", job)      # one image does not exist
        self.assertEqual((job["done"], job["failed"]), (2, 1), job)
        self.assertEqual(len(job["errors"]), 1, job)
        self.assertTrue(job["errors"][0].startswith("quay.io/nope/x:1: "), job)
        self.assertEqual(job["kind"], "admin")
        self.assertEqual(job["platforms"], ["linux/amd64"])
        self.assertIsNone(job["current"])
        self.assertGreater(job["bytes"], 0)
        self.assertGreater(job["finished_ms"], 0)
        for img in (pause, etcd):
            self.w.reg[img.registry].reset_counts()
            self.pull(m, img)
            self.assertEqual(self.w.reg[img.registry].count("GET", r"/blobs/"), 0, img)
        ev = m.get("/api/v1/events").json()["events"]
        self.assertTrue(any(e["kind"] == "prefetch" and e["repository"] == "registry.k8s.io/pause:3.9"
                            for e in ev), ev)
        # Bad input is refused before anything is queued.
        r = m.get("/api/v1/prefetch", method="POST", headers={
            "Authorization": "Bearer s3cret", "Content-Type": "application/json"},
            body=json.dumps({"images": ["Bad:Name"]}))
        self.assertEqual(r.status, 400, r)

    def test_a_background_prefetch_of_a_missing_image_is_logged_as_failed(self):
        m = self.mirror(extra={"prefetch": {"images": ["quay.io/nope/nothing:1"],
                                            "interval": "1h", "retries": 3,
                                            "retry_interval": "1h"}})
        deadline = time.monotonic() + 20
        failed = []
        while time.monotonic() < deadline and not failed:
            failed = [e for e in m.log_json() if e.get("msg") == "prefetch: image failed"]
            time.sleep(0.2)
        self.assertTrue(failed, m.log_tail())
        self.assertEqual(failed[0].get("image"), "quay.io/nope/nothing:1")
        # The server is fine and stops promptly although the 1 h interval is pending.
        t0 = time.monotonic()
        self.assertEqual(m.stop(), 0)
        self.assertLess(time.monotonic() - t0, 10)


if __name__ == "__main__":
    unittest.main(verbosity=2)
