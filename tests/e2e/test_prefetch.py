"""Prefetch (预热): `ocimirror prefetch` and the config's prefetch section.

The command pulls images through a mirror (one started in-process on the
config's storage, one already running at the config's listen address, or
--mirror URL) so that the mirror caches them; a running mirror that takes
the admin token runs the list as its own job (listed by /api/v1/prefetch
and in its events, "already cached" known in-process) and the command
prints that job's progress; one that does not is pulled through as a
client, and the command then says "pulled", never "fetched".  The config's
prefetch section does the same from a background thread of the server, at
start-up and then every interval.  Each test checks the effect on the cache the way it
matters: with the upstream stopped afterwards, what was prefetched is still
served and what was not is not; or a later pull costs the upstream no blob.

Run: cd tests/e2e && OCIMIRROR_BIN=... ../../scripts/netns-run python3 -u test_prefetch.py
"""

import json
import os
import re
import signal
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
TOKEN = "pf-admin-token"


def blob_lines(out):
    """The per-blob result lines of a run: [(digest prefix, word)]."""
    return re.findall(r"blob \d+/\d+ (sha256:[0-9a-f]+): \S+ \S+ (fetched|already cached|pulled)",
                      out)


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
        self.last_proc = proc
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

    # -- beside a running mirror: one of its jobs --------------------------
    def test_beside_a_running_mirror_the_run_is_its_job_and_cached_blobs_are_reported_cached(self):
        alpine = self.w.fx["alpine"]
        hub = self.w.reg["hub"]
        m = self.mirror(extra={"admin": {"token": TOKEN}})
        hub.reset_counts()
        run = self.prefetch("-c", m.config_path, "alpine:3.19")
        self.assertEqual(run.rc, 0, run)
        self.assertRegex(run.out, r"through the mirror already running at \S+, as its prefetch "
                                  r"job (pf-\d+)", run)
        first = re.search(r"as its prefetch job (pf-\d+)", run.out).group(1)
        self.assertEqual(hub.count("GET", r"/blobs/"), len(alpine.blobs))
        self.assertEqual([w for _, w in blob_lines(run.out)], ["fetched"] * len(alpine.blobs), run)
        # The second run: the mirror had every blob, and says so.
        hub.reset_counts()
        run = self.prefetch("-c", m.config_path, "alpine:3.19")
        self.assertEqual(run.rc, 0, run)
        self.assertEqual(hub.count("GET", r"/blobs/"), 0)
        self.assertEqual([w for _, w in blob_lines(run.out)],
                         ["already cached"] * len(alpine.blobs), run)
        self.assertIn("0 blobs fetched (0 B), %d already cached" % len(alpine.blobs), run.out)
        second = re.search(r"as its prefetch job (pf-\d+)", run.out).group(1)
        # Both runs are the server's jobs, in its prefetch list and events.
        jobs = {j["id"]: j for j in m.get("/api/v1/prefetch").json()["jobs"]}
        for jid, cached in ((first, 0), (second, len(alpine.blobs))):
            self.assertEqual(jobs[jid]["kind"], "cli", jobs[jid])
            self.assertEqual(jobs[jid]["state"], "done", jobs[jid])
            self.assertEqual(jobs[jid]["images"], ["alpine:3.19"])
            self.assertEqual((jobs[jid]["blobs"], jobs[jid]["blobs_cached"]),
                             (len(alpine.blobs), cached), jobs[jid])
        evs = m.get("/api/v1/events?kind=prefetch").json()["events"]
        done = [e for e in evs if e["code"] == "prefetch_image_done"]
        self.assertEqual(sorted(e["values"]["job"] for e in done), sorted([first, second]), evs)
        self.assertEqual({e["values"]["job"]: e["values"]["cached"] for e in done},
                         {first: 0, second: len(alpine.blobs)})
        self.assertTrue(any(e["code"] == "prefetch_job_finished" and e["values"]["job"] == second
                            and e["values"]["kind"] == "cli" for e in evs), evs)

    def test_a_job_beside_the_mirror_takes_a_token_file_and_reports_failures_per_image(self):
        pause = self.w.fx["pause"]
        m = self.mirror(extra={"admin": {"token": TOKEN}})
        with tempfile.NamedTemporaryFile("w", suffix=".token", delete=False) as f:
            f.write(TOKEN + "\n")
        self.addCleanup(os.unlink, f.name)
        run = self.prefetch("--mirror", m.url, "--admin-token-file", f.name, "--platform",
                            "linux/amd64", "registry.k8s.io/pause:3.9", "quay.io/nope/nothing:1",
                            "Not/A/Valid:Name")
        self.assertEqual(run.rc, 1, run)
        self.assertRegex(run.out, r"2 images for linux/amd64 through the mirror at \S+, as its "
                                  r"prefetch job pf-\d+", run)
        self.assertIn("1 of 3 images done, 2 failed", run.out, run)
        self.assertIn("ocimirror: prefetch failed: quay.io/nope/nothing:1", run.err, run)
        self.assertIn("ocimirror: prefetch failed: Not/A/Valid:Name", run.err, run)
        self.assertIn("not retried", run.out, run)       # a 404 is permanent
        self.assertNotIn("pause", run.err)
        job = m.get("/api/v1/prefetch").json()["jobs"][0]
        self.assertEqual(job["state"], "failed", job)
        self.assertEqual([(f["image"], f["code"], f["values"].get("status")) for f in job["failures"]],
                         [("quay.io/nope/nothing:1", "http_status", 404)], job)
        self.w.reg["k8s"].reset_counts()
        self.pull(m, pause, platforms=["linux/amd64"])
        self.assertEqual(self.w.reg["k8s"].count("GET", r"/blobs/"), 0)

    def test_without_the_admin_token_it_pulls_through_v2_and_never_claims_fetched(self):
        alpine = self.w.fx["alpine"]
        for extra in ({"admin": {"token": TOKEN}}, {}):     # token elsewhere; none at all
            with self.subTest(extra=extra):
                m = self.mirror(extra=extra)
                for _ in range(2):                           # cold, then warm
                    run = self.prefetch("--mirror", m.url, "alpine:3.19",
                                        "--retries", "1")
                    self.assertEqual(run.rc, 0, run)
                    self.assertIn("does not run it as its own job (HTTP %d"
                                  % (401 if extra else 403), run.out, run)
                    self.assertIn("pulling through its /v2/ instead", run.out)
                    self.assertEqual([w for _, w in blob_lines(run.out)],
                                     ["pulled"] * len(alpine.blobs), run)
                    self.assertNotIn("blobs fetched", run.out)
                    self.assertIn("%d blobs pulled (" % len(alpine.blobs), run.out)
                    self.assertIn("fetched or already cached, the mirror does not say", run.out)
                self.assertEqual(m.get("/api/v1/prefetch").json()["jobs"], [])

    def test_a_storage_owned_by_a_server_elsewhere_is_not_opened_and_the_command_says_where_to_go(self):
        m = self.mirror()
        # The same storage, but a listen address where nothing answers.
        other = self.mirror(start=False, storage=m.storage)
        other.write_config()
        run = self.prefetch("-c", other.config_path, "alpine:3.19")
        self.assertEqual(run.rc, 1, run)
        self.assertIn("belongs to a running ocimirror", run.err, run)
        self.assertIn("--mirror", run.err, run)
        self.assertEqual(m.get("/v2/").status, 200)

    def test_ctrl_c_cancels_the_job_on_the_mirror(self):
        m = self.mirror(extra={"admin": {"token": TOKEN}})
        self.w.reg["quay"].stop()
        self.addCleanup(self.w.ensure_upstreams_running)
        sent = []

        def on_line(line):
            if line.startswith("retrying") and not sent:
                os.kill(self.last_proc.pid, signal.SIGINT)
                sent.append(line)
        run = self.prefetch("-c", m.config_path, "--retries", "3", "--retry-interval", "1h",
                            "quay.io/coreos/etcd:v3.5.0", on_line=on_line)
        self.assertTrue(sent, run)
        self.assertEqual(run.rc, 1, run)
        self.assertIn("interrupted", run.err)
        self.assertIn("prefetch failed: quay.io/coreos/etcd:v3.5.0 (", run.err, run)
        jid = re.search(r"as its prefetch job (pf-\d+)", run.out).group(1)
        job = m.get("/api/v1/prefetch/" + jid).json()["job"]
        self.assertEqual(job["state"], "cancelled", job)
        self.assertEqual((job["done"], job["failed"]), (0, 1), job)
        evs = m.get("/api/v1/events?kind=prefetch").json()["events"]
        self.assertTrue(any(e["code"] == "prefetch_job_cancelled" and e["values"]["job"] == jid
                            for e in evs), evs)

    def test_a_job_can_be_cancelled_queued_or_while_it_waits_to_retry(self):
        m = self.mirror(extra={"admin": {"token": TOKEN}})
        good = {"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"}
        self.w.reg["quay"].stop()
        self.addCleanup(self.w.ensure_upstreams_running)
        r = m.get("/api/v1/prefetch", method="POST", headers=good, body=json.dumps(
            {"images": ["quay.io/coreos/etcd:v3.5.0"], "retries": 3, "retry_interval": "1h"}))
        self.assertEqual(r.status, 202, r)
        waiting = r.json()["id"]
        r = m.get("/api/v1/prefetch", method="POST", headers=good,
                  body=json.dumps({"images": ["alpine:3.19"]}))
        queued = r.json()["id"]
        deadline = time.monotonic() + 30
        job = {}
        while time.monotonic() < deadline and job.get("state") != "waiting":
            job = m.get("/api/v1/prefetch/" + waiting).json()["job"]
            time.sleep(0.2)
        self.assertEqual(job["state"], "waiting", job)
        self.assertEqual((job["tries"], job["retry_interval_ms"]), (3, 3600000))
        # The queued one never runs; the waiting one stops at once.
        self.assertErrorJSON(m.get("/api/v1/prefetch/%s/cancel" % queued, method="POST"), 401)
        for jid in (queued, waiting):
            r = m.get("/api/v1/prefetch/%s/cancel" % jid, method="POST", headers=good)
            self.assertEqual(r.status, 200, r)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and job["state"] != "cancelled":
            job = m.get("/api/v1/prefetch/" + waiting).json()["job"]
            time.sleep(0.1)
        self.assertEqual(job["state"], "cancelled", job)
        self.assertEqual(m.get("/api/v1/prefetch/" + queued).json()["job"]["state"], "cancelled")
        # Its records: the failed first try, the wait.
        doc = m.get("/api/v1/prefetch/%s?since=0" % waiting).json()
        types = [rec["type"] for rec in doc["log"]]
        self.assertEqual(types[:2], ["image_start", "image_end"], doc)
        self.assertIn("waiting", types)
        self.assertEqual(doc["log"][1]["state"], "retry")
        self.assertEqual(doc["log"][1]["error"]["code"], "http_status", doc["log"][1])
        later = m.get("/api/v1/prefetch/%s?since=%d" % (waiting, doc["since"])).json()
        self.assertEqual(later["log"], [])
        self.assertErrorJSON(m.get("/api/v1/prefetch/pf-999"), 404)
        self.assertErrorJSON(m.get("/api/v1/prefetch/pf-999/cancel", method="POST",
                                   headers=good), 404)
        for bad in ({"images": ["alpine"], "retries": 0}, {"images": ["alpine"], "kind": "x"},
                    {"images": ["alpine"], "retry_interval": "soon"}):
            self.assertErrorJSON(m.get("/api/v1/prefetch", method="POST", headers=good,
                                       body=json.dumps(bad)), 400)

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
